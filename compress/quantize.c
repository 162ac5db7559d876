/* quantize.c — GPTQ with small groups, quantized statistics and outliers (SpQR Alg. 1).
 *
 * Notation: W [rows x cols] (outputs x inputs), H [cols x cols]. Columns are visited left to right
 * (after the optional act-order permutation). For column j with dequantized statistics (scale,
 * zero) of its group:
 *   q = clamp(round(w / scale + zero), 0, 2^w - 1),   ŵ = scale · (q - zero)       (spec §7.2)
 *   e = (w - ŵ) / U_jj                                                              (GPTQ eq. 4)
 * and e is pushed into the not-yet-quantized columns: W[:, k] -= e · U_jk, immediately inside the
 * current block and with one GEMM for all later columns at the block's end (lazy batch updates).
 * In spqr mode a weight whose e² exceeds tau·sigma is kept as an fp16 outlier instead (its error
 * is then only the fp16 rounding). U is the upper Cholesky factor of H⁻¹ (linalg.c). */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint32_t row, col;
    uint16_t value;
} outlier_t;

typedef struct {
    outlier_t *v;
    size_t n, cap;
} outlier_list;

static int outlier_push(outlier_list *l, uint32_t r, uint32_t c, uint16_t v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        outlier_t *p = realloc(l->v, cap * sizeof *p);
        if (!p) return -1;
        l->v = p, l->cap = cap;
    }
    l->v[l->n++] = (outlier_t){r, c, v};
    return 0;
}

void spqr_quantized_free(spqr_quantized *q) {
    if (!q) return;
    for (int i = 0; i < SPQR_SEC_COUNT; i++) free(q->sec[i]), q->sec[i] = NULL;
    free(q->dequantized);
    q->dequantized = NULL;
}

/* Nearest code under the decoder's arithmetic; brute force when the statistics are degenerate. */
static inline uint32_t quantize_weight(float w, float scale, float inv_scale, float zero,
                                       uint32_t maxq) {
    if (scale > 0 && isfinite(inv_scale)) {
        float t = nearbyintf(w * inv_scale + zero);
        return t <= 0 ? 0 : (t >= (float)maxq ? maxq : (uint32_t)t);
    }
    uint32_t best = 0;
    float be = INFINITY;
    for (uint32_t q = 0; q <= maxq; q++) {
        float e = fabsf(deq_affine(scale, zero, q) - w);
        if (e < be) be = e, best = q;
    }
    return best;
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* act-order: columns by decreasing diag(H), ties by index (stable). */
typedef struct {
    double diag;
    uint32_t index;
} diag_entry;
static int cmp_desc_diag(const void *a, const void *b) {
    const diag_entry *x = a, *y = b;
    if (x->diag != y->diag) return x->diag > y->diag ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

#define FAIL(code, ...)                                                                            \
    do {                                                                                           \
        st = spqr_set_error(err, code, 0, UINT64_MAX, __VA_ARGS__);                                \
        goto done;                                                                                 \
    } while (0)

spqr_status spqr_quantize(const float *W, uint64_t rows, uint64_t cols, const double *H,
                          const spqr_quant_params *p, spqr_quantized *out, spqr_error *err) {
    memset(out, 0, sizeof *out);
    out->proxy_loss = NAN;
    spqr_status st = spqr_quant_params_check(p, err);
    if (st) return st;
    if (rows < 1 || cols < 1 || rows >= (1ull << 31) || cols >= (1ull << 31))
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                              "matrix %llu x %llu: dimensions must be 1..2^31-1",
                              (unsigned long long)rows, (unsigned long long)cols);
    int use_h = p->mode != SPQR_MODE_RTN;
    if (use_h && !H)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "mode needs a Hessian (H is NULL)");
    for (uint64_t i = 0; i < rows * cols; i++)
        if (!isfinite(W[i]))
            return spqr_set_error(err, SPQR_E_NUMERIC, 0, UINT64_MAX,
                                  "weight [%llu, %llu] is not finite",
                                  (unsigned long long)(i / cols), (unsigned long long)(i % cols));
    if (H)
        for (uint64_t i = 0; i < cols * cols; i++)
            if (!isfinite(H[i]))
                return spqr_set_error(
                    err, SPQR_E_NUMERIC, 0, UINT64_MAX, "Hessian [%llu, %llu] is not finite",
                    (unsigned long long)(i / cols), (unsigned long long)(i % cols));

    const uint64_t n = cols, G = (cols + p->beta2 - 1) / p->beta2,
                   B = (rows + p->beta1 - 1) / p->beta1;
    const uint32_t maxq = (1u << p->wbits) - 1;
    const int outliers_on = p->mode == SPQR_MODE_SPQR && isfinite(p->outlier_threshold);
    uint32_t *perm = malloc(n * sizeof *perm);
    float *Wt = malloc(n * rows * sizeof *Wt); /* Wt[j][r]: column j contiguous */
    double *Hp = use_h ? malloc(n * n * sizeof *Hp) : NULL,
           *U = use_h ? malloc(n * n * sizeof *U) : NULL;
    double *udiag = malloc(n * sizeof *udiag);
    float *err_blk = malloc((size_t)p->blocksize * rows * sizeof *err_blk);
    float *ublk = use_h ? malloc((size_t)p->blocksize * n * sizeof *ublk) : NULL;
    double *scratch = malloc((2 * rows + 4096) * sizeof *scratch);
    float *gscale = malloc(rows * sizeof *gscale), *gzero = malloc(rows * sizeof *gzero),
          *ginv = malloc(rows * 4);
    uint32_t *gqs = malloc(rows * 4), *gqz = malloc(rows * 4);
    uint16_t *g16s = malloc(rows * 2), *g16z = malloc(rows * 2), *gst2 = malloc(B * 4 * 2);
    const float **colp = malloc((size_t)p->beta2 * sizeof *colp);
    outlier_list ol = {0};
    if (!perm || !Wt || (use_h && (!Hp || !U || !ublk)) || !udiag || !err_blk || !scratch ||
        !gscale || !gzero || !ginv || !gqs || !gqz || !g16s || !g16z || !gst2 || !colp)
        FAIL(SPQR_E_NOMEM, "out of memory quantizing a %llu x %llu matrix",
             (unsigned long long)rows, (unsigned long long)cols);

    /* ---- output tensor and sections ---- */
    spqr_tensor_info *in = &out->info;
    in->kind = SPQR_KIND_SPQR;
    in->ndim = 2;
    in->dims[0] = rows, in->dims[1] = cols;
    in->wbits = p->wbits, in->stat_bits = p->stat_bits, in->beta1 = p->beta1, in->beta2 = p->beta2;
    in->flags = p->perm == SPQR_PERM_ACT_ORDER ? SPQR_FLAG_PERM : 0;
    in->nnz = 0;
    if ((st = spqr_section_sizes(in, out->size, err))) goto done;
    for (int s = 0; s < SPQR_SEC_COUNT; s++)
        if (s != SPQR_SEC_COLIDX && s != SPQR_SEC_VALUES &&
            !(out->sec[s] = calloc(1, out->size[s] + 1)))
            FAIL(SPQR_E_NOMEM, "out of memory");

    /* ---- 1. permutation ---- */
    for (uint32_t j = 0; j < n; j++) perm[j] = j;
    if (p->perm == SPQR_PERM_ACT_ORDER) {
        diag_entry *de = malloc(n * sizeof *de);
        if (!de) FAIL(SPQR_E_NOMEM, "out of memory");
        for (uint64_t j = 0; j < n; j++) de[j] = (diag_entry){H[j * n + j], (uint32_t)j};
        qsort(de, n, sizeof *de, cmp_desc_diag);
        for (uint64_t j = 0; j < n; j++) perm[j] = de[j].index;
        free(de);
        for (uint64_t j = 0; j < n; j++) put32((uint8_t *)out->sec[SPQR_SEC_PERM] + 4 * j, perm[j]);
    }
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t r = 0; r < rows; r++) Wt[j * rows + r] = W[r * cols + perm[j]];

    /* ---- 2-3. dead inputs, dampening, U = chol(H⁻¹) upper ---- */
    if (use_h) {
        double mean_diag = 0;
        for (uint64_t i = 0; i < n; i++) {
            for (uint64_t j = 0; j < n; j++) Hp[i * n + j] = H[(uint64_t)perm[i] * n + perm[j]];
            if (Hp[i * n + i] == 0) { /* dead input: H_ii = 1, W[:, i] = 0 */
                Hp[i * n + i] = 1.0;
                memset(Wt + i * rows, 0, rows * sizeof *Wt);
                out->dead_columns++;
            }
            mean_diag += Hp[i * n + i];
        }
        mean_diag /= (double)n;
        double damp = p->percdamp * mean_diag;
        if (damp <= 0) damp = 0;
        for (int attempt = 0;; attempt++) {
            double *Hd = U; /* scratch copy: U receives the factor */
            double *work = malloc(n * n * sizeof *work);
            if (!work) FAIL(SPQR_E_NOMEM, "out of memory");
            memcpy(work, Hp, n * n * sizeof *work);
            for (uint64_t i = 0; i < n; i++) work[i * n + i] += damp;
            int info = spqr_inverse_cholesky_upper(work, n, Hd);
            free(work);
            if (info == 0) break;
            if (attempt == 8)
                FAIL(SPQR_E_NUMERIC, "Hessian is not positive definite even with damping %g", damp);
            double next = damp > 0 ? damp * 10 : 1e-6 * (mean_diag > 0 ? mean_diag : 1.0);
            fprintf(
                stderr,
                "spqr: warning: Hessian not positive definite (LAPACK info %d) with damping %g; "
                "retrying with %g\n",
                info, damp, next);
            damp = next;
            out->damp_retries++;
        }
        out->damp_used = mean_diag > 0 ? damp / mean_diag : damp;
        for (uint64_t j = 0; j < n; j++) udiag[j] = U[j * n + j];
    } else {
        for (uint64_t j = 0; j < n; j++) udiag[j] = 1.0;
    }

    /* ---- outlier scale sigma = mean_j Var(W[:, j]) / U_jj² (unbiased variance over rows) ---- */
    double thresh = INFINITY;
    if (outliers_on) {
        double sigma = 0;
        for (uint64_t j = 0; j < n; j++) {
            const float *c = Wt + j * rows;
            double mean = 0, var = 0;
            for (uint64_t r = 0; r < rows; r++) mean += c[r];
            mean /= (double)rows;
            for (uint64_t r = 0; r < rows; r++) var += (c[r] - mean) * (c[r] - mean);
            var = rows > 1 ? var / (double)(rows - 1) : 0.0;
            sigma += var / (udiag[j] * udiag[j]);
        }
        sigma /= (double)n;
        thresh = p->outlier_threshold * sigma;
    }
    spqr_group_cfg gcfg = {.rows = rows,
                           .wbits = p->wbits,
                           .stat_bits = p->stat_bits,
                           .beta1 = p->beta1,
                           .outlier_thresh = thresh,
                           .loo = outliers_on && !p->simplified_outliers};
    spqr_group_out gout = {.scale = gscale,
                           .zero = gzero,
                           .qs = gqs,
                           .qz = gqz,
                           .s16 = g16s,
                           .z16 = g16z,
                           .stat2 = gst2};
    const uint64_t cw = spqr_packed_row_words(cols, p->wbits);
    const spqr_tensor_info layout = {.stat_bits = p->stat_bits}; /* current version */
    const uint64_t sw = p->stat_bits == 16 ? 0 : spqr_stat_row_words(&layout, G);
    uint32_t *codes = out->sec[SPQR_SEC_CODES];

    /* ---- 4-6. blocks of columns ---- */
    for (uint64_t b0 = 0; b0 < n; b0 += p->blocksize) {
        uint64_t b1 = b0 + p->blocksize < n ? b0 + p->blocksize : n;
        for (uint64_t j = b0; j < b1; j++) {
            if (j % p->beta2 == 0) { /* group statistics from the current (error-fed) weights */
                uint64_t g = j / p->beta2;
                uint32_t gn = (uint32_t)(j + p->beta2 < n ? p->beta2 : n - j);
                for (uint32_t k = 0; k < gn; k++) colp[k] = Wt + (j + k) * rows;
                spqr_group_stats(&gcfg, colp, udiag + j, gn, scratch, &gout);
                for (uint64_t r = 0; r < rows; r++) ginv[r] = 1.0f / gscale[r];
                if (p->stat_bits == 16) {
                    for (uint64_t r = 0; r < rows; r++) {
                        put16((uint8_t *)out->sec[SPQR_SEC_SCALE] + 2 * (r * G + g), g16s[r]);
                        put16((uint8_t *)out->sec[SPQR_SEC_ZERO] + 2 * (r * G + g), g16z[r]);
                    }
                } else {
                    for (uint64_t r = 0; r < rows; r++) {
                        spqr_pack_put((uint32_t *)out->sec[SPQR_SEC_SCALE] + r * sw, g,
                                      p->stat_bits, gqs[r]);
                        spqr_pack_put((uint32_t *)out->sec[SPQR_SEC_ZERO] + r * sw, g, p->stat_bits,
                                      gqz[r]);
                    }
                    for (uint64_t b = 0; b < B; b++)
                        for (int k = 0; k < 4; k++)
                            put16((uint8_t *)out->sec[SPQR_SEC_STAT2] + 8 * (b * G + g) + 2 * k,
                                  gst2[4 * b + k]);
                }
            }
            float *wc = Wt + j * rows, *ec = err_blk + (j - b0) * rows;
            const float ujj = (float)udiag[j];
            for (uint64_t r = 0; r < rows; r++) {
                float w = wc[r];
                uint32_t q = quantize_weight(w, gscale[r], ginv[r], gzero[r], maxq);
                float wq = deq_affine(gscale[r], gzero[r], q);
                float e = (w - wq) / ujj;
                if (outliers_on && (double)e * e > thresh) {
                    uint16_t v = spqr_f32_to_f16(w);
                    if (outlier_push(&ol, (uint32_t)r, (uint32_t)j, v))
                        FAIL(SPQR_E_NOMEM, "out of memory");
                    q = quantize_weight(0.0f, gscale[r], ginv[r], gzero[r], maxq);
                    wq = spqr_f16_to_f32(v);
                    e = (w - wq) / ujj;
                }
                spqr_pack_put(codes + r * cw, j, p->wbits, q);
                wc[r] = wq;
                ec[r] = e;
            }
            if (use_h) /* rank-1 update of the rest of the block: W[:, k] -= e · U_jk */
                for (uint64_t k = j + 1; k < b1; k++) {
                    float u = (float)U[j * n + k];
                    float *wk = Wt + k * rows;
                    for (uint64_t r = 0; r < rows; r++) wk[r] -= u * ec[r];
                }
        }
        if (use_h && b1 < n) { /* W[:, b1:] -= E_block · U[b0:b1, b1:]  (as Wt: Wt[b1:] -= Uᵀ E) */
            uint64_t m = n - b1, kb = b1 - b0;
            for (uint64_t i = 0; i < kb; i++)
                for (uint64_t c = 0; c < m; c++) ublk[i * m + c] = (float)U[(b0 + i) * n + b1 + c];
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)rows, (int)kb, -1.0f,
                        ublk, (int)m, err_blk, (int)rows, 1.0f, Wt + b1 * rows, (int)rows);
        }
    }

    /* ---- 7. outliers to CSR (stable counting sort by row keeps columns increasing) ---- */
    in->nnz = ol.n;
    out->n_outliers = ol.n;
    if ((st = spqr_section_sizes(in, out->size, err))) goto done;
    out->sec[SPQR_SEC_COLIDX] = malloc(out->size[SPQR_SEC_COLIDX] + 1);
    out->sec[SPQR_SEC_VALUES] = malloc(out->size[SPQR_SEC_VALUES] + 1);
    if (!out->sec[SPQR_SEC_COLIDX] || !out->sec[SPQR_SEC_VALUES])
        FAIL(SPQR_E_NOMEM, "out of memory");
    {
        uint8_t *rp = out->sec[SPQR_SEC_ROWPTR];
        uint32_t *count = calloc(rows + 1, sizeof *count);
        if (!count) FAIL(SPQR_E_NOMEM, "out of memory");
        for (size_t k = 0; k < ol.n; k++) count[ol.v[k].row + 1]++;
        for (uint64_t r = 0; r < rows; r++) count[r + 1] += count[r];
        for (uint64_t r = 0; r <= rows; r++) put32(rp + 4 * r, count[r]);
        int wide = cols > 65536;
        for (size_t k = 0; k < ol.n; k++) { /* ol is in column order: rows fill left to right */
            uint32_t at = count[ol.v[k].row]++;
            if (wide)
                put32((uint8_t *)out->sec[SPQR_SEC_COLIDX] + 4 * (uint64_t)at, ol.v[k].col);
            else
                put16((uint8_t *)out->sec[SPQR_SEC_COLIDX] + 2 * (uint64_t)at,
                      (uint16_t)ol.v[k].col);
            put16((uint8_t *)out->sec[SPQR_SEC_VALUES] + 2 * (uint64_t)at, ol.v[k].value);
        }
        free(count);
    }
    {
        uint64_t total = 0;
        for (int s = 0; s < SPQR_SEC_COUNT; s++) total += out->size[s];
        out->bits_per_param = 8.0 * (double)total / ((double)rows * (double)cols);
        out->outlier_fraction = (double)ol.n / ((double)rows * (double)cols);
    }
    if (p->return_dequantized) { /* Wt now holds every column's quantized value, in stored order */
        if (!(out->dequantized = malloc(rows * cols * sizeof *out->dequantized)))
            FAIL(SPQR_E_NOMEM, "out of memory");
        for (uint64_t j = 0; j < n; j++)
            for (uint64_t r = 0; r < rows; r++)
                out->dequantized[r * cols + perm[j]] = Wt[j * rows + r];
    }
    if (p->compute_loss && H) {
        float *Wq = malloc(rows * cols * sizeof *Wq);
        if (!Wq) FAIL(SPQR_E_NOMEM, "out of memory");
        if ((st = spqr_quantized_dequantize(out, Wq, err))) {
            free(Wq);
            goto done;
        }
        out->proxy_loss = spqr_proxy_loss(W, Wq, rows, cols, H);
        free(Wq);
    }
done:
    free(perm), free(Wt), free(Hp), free(U), free(udiag), free(err_blk), free(ublk), free(scratch);
    free(gscale), free(gzero), free(ginv), free(gqs), free(gqz), free(g16s), free(g16z), free(gst2),
        free(colp);
    free(ol.v);
    if (st) spqr_quantized_free(out);
    return st;
}
