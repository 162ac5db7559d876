/* groupstats.c — per-group statistics (SpQR Alg. 1, steps 4-5).
 *
 * First order: for each row, min-max asymmetric statistics over the group's columns,
 *   scale = (max - min) / (2^w - 1),  zero = -min / scale,
 * in spqr mode after replacing likely outliers (leave-one-out test below) by the mean of the
 * row's remaining weights.
 * Second order: per block of beta1 rows, the scales (and separately the zeros) are themselves
 * min-max quantized to s bits, with fp16 second-order scale/zero; the weights are then quantized
 * with the *dequantized* statistics, computed with exactly the decoder's arithmetic (spec §7.2). */
#include "internal.h"

#include <math.h>

/* min-max fit; a degenerate range is widened to include 0 (constant c -> [0, c]); an all-zero
 * group gets scale 1, zero 0, which represents 0 exactly. */
static void minmax_fit(double mn, double mx, uint32_t maxq, double *scale, double *zero) {
    if (!(mx - mn > 1e-12 * fmax(1.0, fmax(fabs(mn), fabs(mx))))) {
        mn = fmin(mn, 0.0), mx = fmax(mx, 0.0);
        if (mx == mn) {
            *scale = 1.0, *zero = 0.0;
            return;
        }
    }
    *scale = (mx - mn) / maxq;
    *zero = -mn / *scale;
}

static double quant_err(double x, double scale, double zero, uint32_t maxq) {
    double q = nearbyint(x / scale + zero);
    q = q < 0 ? 0 : (q > maxq ? maxq : q);
    return scale * (q - zero) - x;
}

/* Leave-one-out outlier pre-selection for one row of n weights x with U-diagonal d:
 * reduction_i = E(all) - E(all but i), E = Σ_k ((quant(x_k) - x_k) / d_k)² with statistics fit on
 * the weights included; weight i is a likely outlier when reduction_i > thresh. */
static void loo_mask(const double *x, const double *d, uint32_t n, uint32_t maxq, double thresh,
                     unsigned char *mask) {
    for (uint32_t i = 0; i < n; i++) mask[i] = 0;
    if (n < 3) return;
    /* two smallest and two largest, to get min/max without i in O(1) */
    uint32_t a0 = 0, a1 = 1, b0 = 0, b1 = 1;
    if (x[1] < x[0]) a0 = 1, a1 = 0;
    if (x[1] > x[0]) b0 = 1, b1 = 0;
    for (uint32_t k = 2; k < n; k++) {
        if (x[k] < x[a0])
            a1 = a0, a0 = k;
        else if (x[k] < x[a1])
            a1 = k;
        if (x[k] > x[b0])
            b1 = b0, b0 = k;
        else if (x[k] > x[b1])
            b1 = k;
    }
    double s, z, base = 0;
    minmax_fit(x[a0], x[b0], maxq, &s, &z);
    for (uint32_t k = 0; k < n; k++) {
        double e = quant_err(x[k], s, z, maxq) / d[k];
        base += e * e;
    }
    for (uint32_t i = 0; i < n; i++) {
        double mn = x[i == a0 ? a1 : a0], mx = x[i == b0 ? b1 : b0], err = 0;
        minmax_fit(mn, mx, maxq, &s, &z);
        for (uint32_t k = 0; k < n; k++) {
            if (k == i) continue;
            double e = quant_err(x[k], s, z, maxq) / d[k];
            err += e * e;
        }
        mask[i] = (base - err) > thresh;
    }
}

/* Min-max quantization of m statistics v to s bits with fp16 second-order scale/zero.
 * Writes codes, the dequantized values (decoder arithmetic) and the two fp16 parameters. */
static void quantize_stats(const double *v, uint64_t m, uint32_t sbits, uint32_t *codes, float *deq,
                           uint16_t *s16, uint16_t *z16) {
    double mn = v[0], mx = v[0];
    for (uint64_t i = 1; i < m; i++) mn = fmin(mn, v[i]), mx = fmax(mx, v[i]);
    uint32_t smax = (1u << sbits) - 1;
    double ss, zs;
    if (mx - mn <= 1e-7 * fmax(fabs(mn), fabs(mx))) {
        /* (nearly) constant: stat = ss * (1 - 0) with ss = the value itself */
        ss = mn != 0 ? mn : 1.0;
        zs = 0.0;
    } else {
        ss = (mx - mn) / smax;
        ss = fmax(ss, fmax(fabs(mn) / 60000.0, 1e-7)); /* keep zs = -mn/ss inside fp16's range */
        zs = -mn / ss;
    }
    *s16 = spqr_f32_to_f16((float)ss);
    if ((*s16 & 0x7fff) == 0) *s16 = 0x0001; /* never a zero scale */
    float ssf = spqr_f16_to_f32(*s16);
    if (mx - mn > 1e-7 * fmax(fabs(mn), fabs(mx))) zs = -mn / ssf;
    *z16 = spqr_f32_to_f16((float)zs);
    float zsf = spqr_f16_to_f32(*z16);
    for (uint64_t i = 0; i < m; i++) {
        double q = nearbyint(v[i] / ssf + zsf);
        q = q < 0 ? 0 : (q > smax ? smax : q);
        /* the rounding of zs may make a neighbour code closer: pick the best of q-1, q, q+1 */
        uint32_t best = (uint32_t)q;
        double be = fabs(deq_affine(ssf, zsf, best) - v[i]);
        for (int dq = -1; dq <= 1; dq += 2) {
            double c = q + dq;
            if (c < 0 || c > smax) continue;
            double e = fabs(deq_affine(ssf, zsf, (uint32_t)c) - v[i]);
            if (e < be) be = e, best = (uint32_t)c;
        }
        codes[i] = best;
        deq[i] = deq_affine(ssf, zsf, best);
    }
}

void spqr_group_stats(const spqr_group_cfg *cfg, const float *const *cols_w, const double *udiag,
                      uint32_t n, double *scratch, spqr_group_out *out) {
    const uint64_t rows = cfg->rows;
    const uint32_t maxq = (1u << cfg->wbits) - 1;
    double *scale1 = scratch, *zero1 = scratch + rows, *x = scratch + 2 * rows;
    unsigned char mask[4096];
    for (uint64_t r = 0; r < rows; r++) {
        for (uint32_t k = 0; k < n; k++) x[k] = cols_w[k][r];
        if (cfg->loo && isfinite(cfg->outlier_thresh)) {
            loo_mask(x, udiag, n, maxq, cfg->outlier_thresh, mask);
            double sum = 0;
            uint32_t cnt = 0;
            for (uint32_t k = 0; k < n; k++)
                if (!mask[k]) sum += x[k], cnt++;
            double mean = cnt ? sum / cnt : 0.0;
            for (uint32_t k = 0; k < n; k++)
                if (mask[k]) x[k] = mean;
        }
        double mn = x[0], mx = x[0];
        for (uint32_t k = 1; k < n; k++) mn = fmin(mn, x[k]), mx = fmax(mx, x[k]);
        minmax_fit(mn, mx, maxq, &scale1[r], &zero1[r]);
    }
    if (cfg->stat_bits == 16) {
        for (uint64_t r = 0; r < rows; r++) {
            uint16_t s = spqr_f32_to_f16((float)scale1[r]);
            if ((s & 0x7fff) == 0) s = 0x0001;
            out->s16[r] = s;
            out->z16[r] = spqr_f32_to_f16((float)zero1[r]);
            out->scale[r] = spqr_f16_to_f32(s);
            out->zero[r] = spqr_f16_to_f32(out->z16[r]);
        }
        return;
    }
    for (uint64_t r0 = 0, b = 0; r0 < rows; r0 += cfg->beta1, b++) {
        uint64_t m = rows - r0 < cfg->beta1 ? rows - r0 : cfg->beta1;
        quantize_stats(scale1 + r0, m, cfg->stat_bits, out->qs + r0, out->scale + r0,
                       &out->stat2[4 * b], &out->stat2[4 * b + 1]);
        quantize_stats(zero1 + r0, m, cfg->stat_bits, out->qz + r0, out->zero + r0,
                       &out->stat2[4 * b + 2], &out->stat2[4 * b + 3]);
    }
}
