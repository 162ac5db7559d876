/* cpu_avx2.c — the AVX2+FMA path of spqr_cpu_matmul: rows decoded 8 codes at a time in vector
 * registers and multiplied without a dequantized row buffer.
 *
 * Codes (spec §6): a run of 32 columns ("chunk") is exactly w 32-bit words, w <= 8, so a chunk
 * fits one ymm register. Code k of the chunk sits at bit k·w: in word (k·w)>>5, shifted by
 * (k·w)&31, continued in the next word when it straddles. For 8 codes at once:
 *   lo = permute(chunk, word index), hi = permute(chunk, word index + 1)
 *   q  = ((lo >> sh) | (hi << (32 − sh))) & (2^w − 1)        (AVX2 shifts by 32 give 0)
 * and ŵ = q·scale + bias with bias = −scale·zero (one FMA, as the scalar path), then one FMA per
 * vector: y += ŵ·x. Eight lanes of partial sums per vector, reduced at the end of the row.
 * Statistics (spec §7.2) are decoded once per group (fp16 by F16C); a group is whole octets (beta2
 * % 8 == 0, else the caller uses the scalar path). Outliers are applied as corrections y += (v −
 * ŵ(r,c))·x[c] with ŵ(r,c) computed by the same FMA, so the dense term they replace cancels
 * exactly. */
#include "cpu_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <math.h>

int spqr_cpu_have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}

/* scale and bias (= −scale·zero) of group g of row r, spec §7.2; the fp16 statistics converted by
 * F16C (exact, like the scalar conversion), the arithmetic in the spec's order. */
__attribute__((target("avx2,fma,f16c"))) static inline void
group_stats(const cpu_view *v, uint64_t r, uint64_t g, float *scale, float *bias) {
    float s, z;
    if (v->in->stat_bits == 16) {
        s = _cvtsh_ss(cpu_rd16(v->sc + 2 * (r * v->groups + g)));
        z = _cvtsh_ss(cpu_rd16(v->zc + 2 * (r * v->groups + g)));
    } else {
        const __m128 st = _mm_cvtph_ps(
            _mm_loadl_epi64((const __m128i *)(v->s2 + 8 * ((r / v->in->beta1) * v->groups + g))));
        float f[4];
        _mm_storeu_ps(f, st);
        const uint32_t qs = spqr_pack_get((const uint32_t *)v->sc + r * v->sw, g, v->in->stat_bits);
        const uint32_t qz = spqr_pack_get((const uint32_t *)v->zc + r * v->sw, g, v->in->stat_bits);
        s = f[0] * ((float)qs - f[1]);
        z = f[2] * ((float)qz - f[3]);
    }
    *scale = s, *bias = -s * z;
}

__attribute__((target("avx2,fma,f16c"))) static inline float hsum(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma,f16c"))) void spqr_cpu_rows_avx2(const cpu_view *v, const float *xp,
                                                                 uint64_t xstride, int batch,
                                                                 uint64_t r0, uint64_t r1,
                                                                 float *Y) {
    const uint32_t wb = v->in->wbits, beta2 = v->in->beta2;
    const uint64_t rows = v->in->dims[0], cols = v->in->dims[1], chunks = (cols + 31) / 32;
    __m256i lo_idx[4], hi_idx[4], shr[4], shl[4];
    for (int o = 0; o < 4; o++) {
        int32_t li[8], hi[8], sr[8], sl[8];
        for (int j = 0; j < 8; j++) {
            const int bit = (o * 8 + j) * (int)wb;
            li[j] = bit >> 5, hi[j] = (bit >> 5) + 1, sr[j] = bit & 31, sl[j] = 32 - (bit & 31);
        }
        lo_idx[o] = _mm256_loadu_si256((const __m256i *)li);
        hi_idx[o] = _mm256_loadu_si256((const __m256i *)hi);
        shr[o] = _mm256_loadu_si256((const __m256i *)sr);
        shl[o] = _mm256_loadu_si256((const __m256i *)sl);
    }
    int32_t lm[8];
    for (int j = 0; j < 8; j++) lm[j] = j < (int)wb ? -1 : 0;
    const __m256i load_mask = _mm256_loadu_si256((const __m256i *)lm);
    const __m256i code_mask = _mm256_set1_epi32((int)((1u << wb) - 1u));
    const uint32_t octets_per_group = beta2 / 8;
    for (uint64_t r = r0; r < r1; r++) {
        const int32_t *crow = (const int32_t *)(v->codes + r * v->cw);
        __m256 acc[SPQR_MAX_BATCH];
        for (int b = 0; b < batch; b++) acc[b] = _mm256_setzero_ps();
        uint64_t g = 0;
        uint32_t left = 0; /* octets left in the current group */
        __m256 sv = _mm256_setzero_ps(), bv = _mm256_setzero_ps();
        for (uint64_t ch = 0; ch < chunks; ch++) {
            const __m256i w = _mm256_maskload_epi32(crow + ch * wb, load_mask);
            for (int o = 0; o < 4; o++) {
                const uint64_t c0 = ch * 32 + (uint64_t)o * 8;
                if (c0 >= cols) break;
                if (left == 0) {
                    float s, bias;
                    group_stats(v, r, g++, &s, &bias);
                    sv = _mm256_set1_ps(s), bv = _mm256_set1_ps(bias);
                    left = octets_per_group;
                }
                left--;
                const __m256i lo =
                    _mm256_srlv_epi32(_mm256_permutevar8x32_epi32(w, lo_idx[o]), shr[o]);
                const __m256i hi =
                    _mm256_sllv_epi32(_mm256_permutevar8x32_epi32(w, hi_idx[o]), shl[o]);
                const __m256i q = _mm256_and_si256(_mm256_or_si256(lo, hi), code_mask);
                const __m256 wv = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), sv, bv);
                for (int b = 0; b < batch; b++)
                    acc[b] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xp + b * xstride + c0), acc[b]);
            }
        }
        float y[SPQR_MAX_BATCH];
        for (int b = 0; b < batch; b++) y[b] = hsum(acc[b]);
        /* outliers: y += (v − ŵ(r, c))·x[c], ŵ by the same FMA as above */
        for (uint32_t k = cpu_view_rowptr(v, r); k < cpu_view_rowptr(v, r + 1); k++) {
            const uint64_t c = cpu_view_col(v, k);
            float s, bias;
            group_stats(v, r, c / beta2, &s, &bias);
            const float wq = fmaf((float)spqr_pack_get((const uint32_t *)crow, c, wb), s, bias);
            const float d = cpu_view_value(v, k) - wq;
            for (int b = 0; b < batch; b++) y[b] = fmaf(d, xp[b * xstride + c], y[b]);
        }
        for (int b = 0; b < batch; b++) Y[(uint64_t)b * rows + r] = y[b];
    }
}
#else
int spqr_cpu_have_avx2(void) {
    return 0;
}
void spqr_cpu_rows_avx2(const cpu_view *v, const float *xp, uint64_t xstride, int batch,
                        uint64_t r0, uint64_t r1, float *Y) {
    (void)v, (void)xp, (void)xstride, (void)batch, (void)r0, (void)r1, (void)Y;
}
#endif
