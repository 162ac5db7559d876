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
 * Statistics (spec §7.2) are decoded once per row into scale/bias arrays (fp16 by F16C); a group is
 * whole octets (beta2 % 8 == 0, else the caller uses the scalar path). Outliers are applied as
 * corrections y += (v − ŵ(r,c))·x[c] with ŵ(r,c) computed by the same FMA, so the dense term they
 * replace cancels exactly. */
#include "cpu_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int spqr_cpu_have_avx2(void) {
    __builtin_cpu_init();
    /* F16C: CPUID leaf 1, ECX bit 29 (clang 14's __builtin_cpu_supports does not know "f16c") */
    unsigned a, b, c, d;
    const int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
}

/* The second-order statistics of row block blk as four float arrays over the groups (F16C,
 * exact): decoded once per beta1 rows instead of once per row. Shared with cpu_avx512.c. */
__attribute__((target("avx2,fma,f16c"))) void
spqr_cpu_block_stat2(const cpu_view *v, uint64_t blk, float *ss, float *zs, float *sz, float *zz) {
    const uint64_t G = v->groups;
    const uint8_t *st2 = v->s2 + 8 * blk * G;
    for (uint64_t g = 0; g < G; g++) {
        float f[4];
        _mm_storeu_ps(f, _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(st2 + 8 * g))));
        ss[g] = f[0], zs[g] = f[1], sz[g] = f[2], zz[g] = f[3];
    }
}

/* Eight s-bit codes g0..g0+7 (g0 a multiple of 8) of a packed statistic row as floats. Their
 * 8·s <= 64 bits start at byte g0·s/8 (§6: value i at bit i·s, in both layouts); near the row's end
 * the bytes are copied first so nothing past the row is read. */
__attribute__((target("avx2,fma,f16c"))) static inline __m256
stat_codes8(const uint8_t *row, uint64_t row_bytes, uint64_t g0, uint32_t s, __m256i idx_lo,
            __m256i idx_hi, __m256i shr, __m256i shl, __m256i mask) {
    const uint64_t at = g0 * s / 8;
    uint64_t u = 0;
    memcpy(&u, row + at, row_bytes - at < 8 ? row_bytes - at : 8);
    const __m256i w = _mm256_castsi128_si256(_mm_cvtsi64_si128((long long)u));
    const __m256i lo = _mm256_srlv_epi32(_mm256_permutevar8x32_epi32(w, idx_lo), shr);
    const __m256i hi = _mm256_sllv_epi32(_mm256_permutevar8x32_epi32(w, idx_hi), shl);
    return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_or_si256(lo, hi), mask));
}

/* scale[g] and bias[g] (= −scale·zero) of every group of row r, spec §7.2, eight groups at a time:
 * scale = ss·(qs − zs), zero = sz·(qz − zz), each operation rounded separately as the spec says
 * (no FMA). s2 holds the row's block from block_stat2; entries past the last group are left
 * alone (the caller keeps them zero). */
__attribute__((target("avx2,fma,f16c"))) static void
row_stats(const cpu_view *v, uint64_t r, const float *const s2[4], float *scale, float *bias) {
    const uint64_t G = v->groups;
    if (v->in->stat_bits == 16) {
        for (uint64_t g = 0; g < G; g++) {
            const float s = _cvtsh_ss(cpu_rd16(v->sc + 2 * (r * G + g)));
            const float z = _cvtsh_ss(cpu_rd16(v->zc + 2 * (r * G + g)));
            scale[g] = s, bias[g] = -s * z;
        }
        return;
    }
    const uint32_t sb = v->in->stat_bits;
    int32_t li[8], hi[8], sr_[8], sl[8];
    for (int j = 0; j < 8; j++) {
        const int bit = j * (int)sb;
        li[j] = bit >> 5, hi[j] = (bit >> 5) + 1, sr_[j] = bit & 31, sl[j] = 32 - (bit & 31);
    }
    const __m256i idx_lo = _mm256_loadu_si256((const __m256i *)li),
                  idx_hi = _mm256_loadu_si256((const __m256i *)hi),
                  shr = _mm256_loadu_si256((const __m256i *)sr_),
                  shl = _mm256_loadu_si256((const __m256i *)sl),
                  mask = _mm256_set1_epi32((int)((1u << sb) - 1u));
    const uint64_t row_bytes = v->sw * 4;
    const uint8_t *sr = v->sc + r * row_bytes, *zr = v->zc + r * row_bytes;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    uint64_t g = 0;
    for (; g + 8 <= G; g += 8) {
        const __m256 qs = stat_codes8(sr, row_bytes, g, sb, idx_lo, idx_hi, shr, shl, mask);
        const __m256 qz = stat_codes8(zr, row_bytes, g, sb, idx_lo, idx_hi, shr, shl, mask);
        const __m256 sc = _mm256_mul_ps(_mm256_loadu_ps(s2[0] + g),
                                        _mm256_sub_ps(qs, _mm256_loadu_ps(s2[1] + g)));
        const __m256 ze = _mm256_mul_ps(_mm256_loadu_ps(s2[2] + g),
                                        _mm256_sub_ps(qz, _mm256_loadu_ps(s2[3] + g)));
        _mm256_storeu_ps(scale + g, sc);
        _mm256_storeu_ps(bias + g, _mm256_xor_ps(_mm256_mul_ps(sc, ze), sign));
    }
    for (; g < G; g++) {
        const float s = s2[0][g] * ((float)cpu_packed_get((const uint32_t *)sr, g, sb) - s2[1][g]);
        const float z = s2[2][g] * ((float)cpu_packed_get((const uint32_t *)zr, g, sb) - s2[3][g]);
        scale[g] = s, bias[g] = -s * z;
    }
}

__attribute__((target("avx2,fma,f16c"))) static inline float hsum(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

typedef struct {
    __m256i lo_idx[4], hi_idx[4], shr[4], shl[4]; /* per octet of a chunk: word and shifts */
    __m256i load_mask, code_mask;
} unpack_consts;

/* ŵ of octet o (codes 8o..8o+7) of the chunk at cp (its words also held in w): unpack, then
 * q·scale + bias with the statistics of the octet's group (g_shift = log2 beta2; octets past the
 * last column read padded zero statistics and zero codes, and meet zero x). KIND (a constant after
 * inlining) is w when no code straddles two words (w = 2, 4, 8): the octet's codes then lie in one
 * word (w = 2, 4: broadcast it, shift each lane) or are its bytes (w = 8: zero-extend), 1-2
 * instructions instead of 6; KIND 0 is any width (two permutes, two shifts, or, and). */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline __m256
octet_weights(const int KIND, const unpack_consts *k, const int32_t *cp, __m256i w, int o,
              uint64_t c0, uint32_t g_shift, const float *scale, const float *biases) {
    __m256i q;
    if (KIND == 8) {
        q = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)((const uint8_t *)cp + 8 * o)));
    } else if (KIND == 4 || KIND == 2) {
        const __m256i word = _mm256_set1_epi32(cp[KIND == 4 ? o : o >> 1]);
        q = _mm256_and_si256(_mm256_srlv_epi32(word, k->shr[o]), k->code_mask);
    } else {
        const __m256i lo =
            _mm256_srlv_epi32(_mm256_permutevar8x32_epi32(w, k->lo_idx[o]), k->shr[o]);
        const __m256i hi =
            _mm256_sllv_epi32(_mm256_permutevar8x32_epi32(w, k->hi_idx[o]), k->shl[o]);
        q = _mm256_and_si256(_mm256_or_si256(lo, hi), k->code_mask);
    }
    const uint64_t g = c0 >> g_shift;
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), _mm256_broadcast_ss(scale + g),
                           _mm256_broadcast_ss(biases + g));
}

/* y[0..NB) = Σ_c ŵ(r, c)·xp[b][c] over the dense codes of one row, for NB = 1, 2, 4 or 8 vectors
 * (a constant after inlining). Accumulators in named registers, at least four chains: NB = 1
 * gives each octet of a chunk its own chain, NB = 2 two chains per vector, NB = 4 and 8 one, so
 * consecutive FMAs do not wait on each other's 4-cycle latency. (An accumulator array indexed in
 * a loop that the compiler did not unroll lived on the stack: 3x slower.) */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
row_dense(const int NB, const int KIND, const unpack_consts *k, const int32_t *crow, uint32_t wb,
          uint64_t cw, uint64_t chunks, uint32_t g_shift, const float *scale, const float *biases,
          const float *xp, uint64_t xstride, float *y) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
           a3 = _mm256_setzero_ps(), a4 = _mm256_setzero_ps(), a5 = _mm256_setzero_ps(),
           a6 = _mm256_setzero_ps(), a7 = _mm256_setzero_ps();
    const float *x0 = xp, *x1 = xp + xstride, *x2 = xp + 2 * xstride, *x3 = xp + 3 * xstride;
    const float *x4 = xp + 4 * xstride, *x5 = xp + 5 * xstride, *x6 = xp + 6 * xstride,
                *x7 = xp + 7 * xstride;
    if (NB == 8) { /* one accumulator per vector; each octet's weights used at once */
        for (uint64_t ch = 0; ch < chunks; ch++) {
            const int32_t *cp = crow + ch * wb;
            const __m256i w = KIND                ? _mm256_setzero_si256()
                              : ch * wb + 8 <= cw ? _mm256_loadu_si256((const __m256i *)cp)
                                                  : _mm256_maskload_epi32(cp, k->load_mask);
            for (int o = 0; o < 4; o++) {
                const uint64_t c = ch * 32 + (uint64_t)o * 8;
                const __m256 wv = octet_weights(KIND, k, cp, w, o, c, g_shift, scale, biases);
#define FMA(acc, x) acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps((x) + c), acc)
                FMA(a0, x0), FMA(a1, x1), FMA(a2, x2), FMA(a3, x3);
                FMA(a4, x4), FMA(a5, x5), FMA(a6, x6), FMA(a7, x7);
#undef FMA
            }
        }
        y[0] = hsum(a0), y[1] = hsum(a1), y[2] = hsum(a2), y[3] = hsum(a3);
        y[4] = hsum(a4), y[5] = hsum(a5), y[6] = hsum(a6), y[7] = hsum(a7);
        return;
    }
    for (uint64_t ch = 0; ch < chunks; ch++) {
        /* a plain 32-byte load while it stays inside the row (masked loads cost ~4x here) */
        const int32_t *cp = crow + ch * wb;
        const __m256i w = KIND                ? _mm256_setzero_si256()
                          : ch * wb + 8 <= cw ? _mm256_loadu_si256((const __m256i *)cp)
                                              : _mm256_maskload_epi32(cp, k->load_mask);
        const uint64_t c = ch * 32;
        const __m256 w0 = octet_weights(KIND, k, cp, w, 0, c, g_shift, scale, biases);
        const __m256 w1 = octet_weights(KIND, k, cp, w, 1, c + 8, g_shift, scale, biases);
        const __m256 w2 = octet_weights(KIND, k, cp, w, 2, c + 16, g_shift, scale, biases);
        const __m256 w3 = octet_weights(KIND, k, cp, w, 3, c + 24, g_shift, scale, biases);
#define FMA(acc, wv, x, off) acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps((x) + c + (off)), acc)
        if (NB == 1) {
            FMA(a0, w0, x0, 0), FMA(a1, w1, x0, 8), FMA(a2, w2, x0, 16), FMA(a3, w3, x0, 24);
        } else if (NB == 2) {
            FMA(a0, w0, x0, 0), FMA(a1, w1, x0, 8), FMA(a2, w0, x1, 0), FMA(a3, w1, x1, 8);
            FMA(a0, w2, x0, 16), FMA(a1, w3, x0, 24), FMA(a2, w2, x1, 16), FMA(a3, w3, x1, 24);
        } else {
            FMA(a0, w0, x0, 0), FMA(a1, w0, x1, 0), FMA(a2, w0, x2, 0), FMA(a3, w0, x3, 0);
            FMA(a0, w1, x0, 8), FMA(a1, w1, x1, 8), FMA(a2, w1, x2, 8), FMA(a3, w1, x3, 8);
            FMA(a0, w2, x0, 16), FMA(a1, w2, x1, 16), FMA(a2, w2, x2, 16), FMA(a3, w2, x3, 16);
            FMA(a0, w3, x0, 24), FMA(a1, w3, x1, 24), FMA(a2, w3, x2, 24), FMA(a3, w3, x3, 24);
        }
#undef FMA
    }
    if (NB == 1) {
        y[0] = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    } else if (NB == 2) {
        y[0] = hsum(_mm256_add_ps(a0, a1)), y[1] = hsum(_mm256_add_ps(a2, a3));
    } else {
        y[0] = hsum(a0), y[1] = hsum(a1), y[2] = hsum(a2), y[3] = hsum(a3);
    }
}

__attribute__((target("avx2,fma,f16c"))) int spqr_cpu_rows_avx2(const cpu_view *v, const float *xp,
                                                                uint64_t xstride, int batch,
                                                                uint64_t r0, uint64_t r1,
                                                                float *Y) {
    const uint32_t wb = v->in->wbits, beta2 = v->in->beta2;
    const uint64_t rows = v->in->dims[0], cols = v->in->dims[1];
    unpack_consts k;
    for (int o = 0; o < 4; o++) {
        int32_t li[8], hi[8], sr[8], sl[8];
        for (int j = 0; j < 8; j++) {
            const int bit = (o * 8 + j) * (int)wb;
            li[j] = bit >> 5, hi[j] = (bit >> 5) + 1, sr[j] = bit & 31, sl[j] = 32 - (bit & 31);
        }
        k.lo_idx[o] = _mm256_loadu_si256((const __m256i *)li);
        k.hi_idx[o] = _mm256_loadu_si256((const __m256i *)hi);
        k.shr[o] = _mm256_loadu_si256((const __m256i *)sr);
        k.shl[o] = _mm256_loadu_si256((const __m256i *)sl);
    }
    int32_t lm[8];
    for (int j = 0; j < 8; j++) lm[j] = j < (int)wb ? -1 : 0;
    k.load_mask = _mm256_loadu_si256((const __m256i *)lm);
    k.code_mask = _mm256_set1_epi32((int)((1u << wb) - 1u));
    const uint64_t chunks = (cols + 31) / 32;
    uint32_t g_shift = 0;
    while ((1u << g_shift) < beta2) g_shift++;
    /* statistics of every group the chunks touch; groups past the last column stay zero */
    const uint64_t gpad = ((chunks * 32) >> g_shift) + 1, G = v->groups;
    float *scale = calloc(2 * gpad + 4 * G, sizeof *scale);
    if (!scale) return 1;
    float *biases = scale + gpad;
    const float *const s2[4] = {biases + gpad, biases + gpad + G, biases + gpad + 2 * G,
                                biases + gpad + 3 * G};
    uint64_t blk = UINT64_MAX;
    for (uint64_t r = r0; r < r1; r++) {
        if (v->in->stat_bits != 16 && r / v->in->beta1 != blk) {
            blk = r / v->in->beta1;
            spqr_cpu_block_stat2(v, blk, (float *)s2[0], (float *)s2[1], (float *)s2[2],
                                 (float *)s2[3]);
        }
        row_stats(v, r, s2, scale, biases);
        const int32_t *crow = (const int32_t *)(v->codes + r * v->cw);
        float y[SPQR_MAX_BATCH];
        /* vectors in blocks of 8, 4, 2, 1: each block decodes the row once */
        for (int b = 0; b < batch;) {
            const float *xb = xp + (uint64_t)b * xstride;
            const int nb = batch - b >= 8 ? 8 : batch - b >= 4 ? 4 : batch - b >= 2 ? 2 : 1;
#define DENSE(NB, KIND)                                                                            \
    row_dense(NB, KIND, &k, crow, wb, v->cw, chunks, g_shift, scale, biases, xb, xstride, y + b)
#define DENSE_KIND(NB)                                                                             \
    (wb == 4 ? DENSE(NB, 4) : wb == 2 ? DENSE(NB, 2) : wb == 8 ? DENSE(NB, 8) : DENSE(NB, 0))
            if (nb == 8)
                DENSE_KIND(8);
            else if (nb == 4)
                DENSE_KIND(4);
            else if (nb == 2)
                DENSE_KIND(2);
            else
                DENSE_KIND(1);
#undef DENSE_KIND
#undef DENSE
            b += nb;
        }
        /* outliers: y += (v − ŵ(r, c))·x[c], ŵ by the same FMA as above */
        for (uint32_t kk = cpu_view_rowptr(v, r); kk < cpu_view_rowptr(v, r + 1); kk++) {
            const uint64_t c = cpu_view_col(v, kk);
            const float wq = fmaf((float)cpu_packed_get((const uint32_t *)crow, c, wb),
                                  scale[c / beta2], biases[c / beta2]);
            const float d = cpu_view_value(v, kk) - wq;
            for (int b = 0; b < batch; b++) y[b] = fmaf(d, xp[b * xstride + c], y[b]);
        }
        for (int b = 0; b < batch; b++) Y[(uint64_t)b * rows + r] = y[b];
    }
    free(scale);
    return 0;
}
#else
int spqr_cpu_have_avx2(void) {
    return 0;
}
int spqr_cpu_rows_avx2(const cpu_view *v, const float *xp, uint64_t xstride, int batch, uint64_t r0,
                       uint64_t r1, float *Y) {
    (void)v, (void)xp, (void)xstride, (void)batch, (void)r0, (void)r1, (void)Y;
    return 1;
}
#endif
