/* cpu_avx512.c — the AVX-512 path of spqr_cpu_matmul (CPUs with AVX-512 VBMI: Ice Lake and later,
 * Zen 4 and later): 16 codes per vector, decoded with one byte permute, one shift and one mask.
 *
 * Codes (spec §6): a chunk of 32 columns is exactly w 32-bit words (w <= 8, so at most 32 bytes,
 * one ymm load). Its half h (codes 16h..16h+15) starts at bit 16·w·h, a whole byte (2·w·h), so
 * code j of the half starts at byte 2wh + (jw >> 3), bit (jw & 7), and spans at most 2 bytes
 * (7 + w <= 15 bits). For the 16 codes of a half at once:
 *   d = vpermb(chunk, bytes 2wh + (jw >> 3), +1 into dword lane j)
 *   q = (d >> (jw & 7)) & (2^w − 1)
 * then ŵ = q·scale + bias (bias = −scale·zero, one FMA as the scalar path, spec §7.2) with the
 * statistics of the half's group (beta2 % 16 == 0: a half never straddles two groups), and one FMA
 * per vector of x: y += ŵ·x. The statistics of a row are decoded 16 groups at a time the same way
 * (16 s-bit values starting at a multiple of 16 begin on a whole byte). Outliers are corrections
 * y += (v − ŵ(r, c))·x[c], ŵ by the same FMA, as in cpu_avx2.c, 16 at a time with gathers.
 * Batch 2-16 would stream x from L2 (one 64-byte load per FMA): rows go in tiles of 16 and columns
 * in blocks whose x (packed by 16-column halves) stays in L1, each row's partial sums kept as
 * vectors between blocks (bench/NOTES.md, "CPU AVX-512 path"). */
#include "cpu_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AVX512_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx2,fma,f16c"

int spqr_cpu_have_avx512(void) {
    __builtin_cpu_init();
    return spqr_cpu_have_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vbmi");
}

/* The permute index and shifts that bring 16 b-bit values, the first at byte `byte0` of a 64-byte
 * table, into the low bits of 16 dword lanes (value j: bytes byte0 + (jb >> 3) and the next). */
typedef struct {
    __m512i idx, shift, mask;
} unpack16;

__attribute__((target(AVX512_TARGET))) static unpack16 unpack16_make(uint32_t b, uint32_t byte0) {
    uint8_t idx[64];
    int32_t sh[16];
    for (uint32_t j = 0; j < 16; j++) {
        const uint32_t byte = byte0 + ((j * b) >> 3);
        idx[4 * j] = (uint8_t)byte;
        idx[4 * j + 1] = idx[4 * j + 2] = idx[4 * j + 3] = (uint8_t)((byte + 1) & 63);
        sh[j] = (int32_t)((j * b) & 7);
    }
    unpack16 u;
    u.idx = _mm512_loadu_si512(idx);
    u.shift = _mm512_loadu_si512(sh);
    u.mask = _mm512_set1_epi32((int)((1u << b) - 1u));
    return u;
}

/* the 16 values as floats (exact: < 2^8) */
__attribute__((target(AVX512_TARGET), always_inline)) static inline __m512
unpack16_ps(const unpack16 *u, __m512i table) {
    const __m512i d = _mm512_permutexvar_epi8(u->idx, table);
    return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(d, u->shift), u->mask));
}

/* scale[g], bias[g] = −scale·zero of every group of row r (spec §7.2, each operation rounded
 * separately as the spec says, no FMA), 16 groups at a time; s2 holds the row's block from
 * spqr_cpu_block_stat2. Entries past the last group are left alone (the caller keeps them zero). */
__attribute__((target(AVX512_TARGET))) static void row_stats16(const cpu_view *v, uint64_t r,
                                                               const unpack16 *us,
                                                               const float *const s2[4],
                                                               float *scale, float *bias) {
    const uint64_t G = v->groups;
    const __m512 sign = _mm512_set1_ps(-0.0f);
    if (v->in->stat_bits == 16) {
        const uint8_t *sr = v->sc + 2 * r * G, *zr = v->zc + 2 * r * G;
        for (uint64_t g = 0; g < G; g += 16) {
            const __mmask16 m = G - g >= 16 ? 0xffff : (__mmask16)((1u << (G - g)) - 1u);
            const __m512 s = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, sr + 2 * g));
            const __m512 z = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, zr + 2 * g));
            _mm512_mask_storeu_ps(scale + g, m, s);
            _mm512_mask_storeu_ps(bias + g, m, _mm512_xor_ps(_mm512_mul_ps(s, z), sign));
        }
        return;
    }
    const uint32_t sb = v->in->stat_bits;
    const uint64_t row_bytes = v->sw * 4;
    const uint8_t *sr = v->sc + r * row_bytes, *zr = v->zc + r * row_bytes;
    for (uint64_t g = 0; g < G; g += 16) {
        /* 16 values from group g (a multiple of 16) start at byte g·s/8 and take 2s bytes */
        const uint64_t at = g * sb / 8, n = row_bytes - at < 16 ? row_bytes - at : 16;
        const __mmask16 lm = (__mmask16)((1u << n) - 1u);
        const __m512i ts = _mm512_zextsi128_si512(_mm_maskz_loadu_epi8(lm, sr + at));
        const __m512i tz = _mm512_zextsi128_si512(_mm_maskz_loadu_epi8(lm, zr + at));
        const __mmask16 m = G - g >= 16 ? 0xffff : (__mmask16)((1u << (G - g)) - 1u);
        const __m512 sc =
            _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s2[0] + g),
                          _mm512_sub_ps(unpack16_ps(us, ts), _mm512_maskz_loadu_ps(m, s2[1] + g)));
        const __m512 ze =
            _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s2[2] + g),
                          _mm512_sub_ps(unpack16_ps(us, tz), _mm512_maskz_loadu_ps(m, s2[3] + g)));
        _mm512_mask_storeu_ps(scale + g, m, sc);
        _mm512_mask_storeu_ps(bias + g, m, _mm512_xor_ps(_mm512_mul_ps(sc, ze), sign));
    }
}

/* scale16/bias16[i] = the statistics of half i (columns 16i..16i+15) from the per-group arrays:
 * the same arrays when beta2 = 16, else each group's entry repeated beta2/16 times (one permute
 * per 16 halves: half i reads group i >> k, k = log2(beta2/16)). */
__attribute__((target(AVX512_TARGET))) static void
expand_halves(const float *per_group, uint64_t halves, uint32_t k, float *per_half) {
    int32_t ix[16];
    for (int i = 0; i < 16; i++) ix[i] = i >> k;
    const __m512i idx = _mm512_loadu_si512(ix);
    for (uint64_t i = 0; i < halves; i += 16) /* the group arrays are padded to whole vectors */
        _mm512_storeu_ps(per_half + i,
                         _mm512_permutexvar_ps(idx, _mm512_loadu_ps(per_group + (i >> k))));
}

/* ŵ of half h of a chunk (its bytes in `table`): codes, then q·scale + bias of the half */
#define HALF_WEIGHTS(h)                                                                            \
    _mm512_fmadd_ps(unpack16_ps(&uc[h], table), _mm512_set1_ps(sp[h]), _mm512_set1_ps(bp[h]))

/* acc[b] += Σ_c ŵ(r, c)·xp[b][c] over chunks [ch0, ch1) of one row's dense codes, NB vectors (a
 * literal: the loops over b unroll and the accumulators stay in registers; 32 zmm registers hold
 * 16 accumulators). acc[b] is a vector of 16 partial sums, reduced by the caller once the row's
 * last column block is done. Up to NB = 8 each half of a chunk has its own accumulators, so an
 * accumulator takes one FMA per chunk; NB = 1 also alternates two chunks (four chains over the
 * 4-cycle FMA). Chunks below `full` are read with plain 32-byte loads (inside the row); the rest,
 * the row's last one or two, with masked loads of the words that exist. */
#define ROW_DENSE(NB)                                                                              \
    __attribute__((target(AVX512_TARGET))) static void row_dense_##NB(                             \
        const unpack16 uc[2], const int32_t *crow, uint32_t wb, uint64_t cw, uint64_t full,        \
        uint64_t ch0, uint64_t ch1, uint64_t chunks_total, const float *scale16,                   \
        const float *bias16, const float *xpk, uint64_t batch, __m512 *acc_io) {                   \
        enum { H = NB <= 8 ? 2 : 1, P = NB == 1 ? 2 : 1 };                                         \
        __m512 acc[P][NB][H];                                                                      \
        _Pragma("GCC unroll 16") for (int p = 0; p < P; p++)                                       \
            _Pragma("GCC unroll 16") for (int b = 0; b < NB; b++)                                  \
                _Pragma("GCC unroll 2") for (int h = 0; h < H; h++) acc[p][b][h] =                 \
                    p + h == 0 ? acc_io[b] : _mm512_setzero_ps();                                  \
        /* the codes of this row's next block, read on the next pass over the tile: the rows of a  \
         * tile are read in short strided pieces that the hardware prefetchers do not follow */    \
        if (ch1 < chunks_total)                                                                    \
            for (uint64_t at = ch1 * wb * 4; at < (2 * ch1 - ch0) * wb * 4 && at < cw * 4;         \
                 at += 64)                                                                         \
                _mm_prefetch((const char *)crow + at, _MM_HINT_T0);                                \
        const float *sp = scale16 + 2 * ch0, *bp = bias16 + 2 * ch0;                               \
        const float *xc = xpk + 32 * batch * ch0; /* half i of vector b at (i·batch + b)·16 */   \
        const int32_t *cp = crow + ch0 * wb;                                                       \
        const uint64_t fast_end = full < ch1 ? full : ch1;                                         \
        uint64_t ch = ch0;                                                                         \
        for (; ch + P <= fast_end; ch += P) {                                                      \
            _Pragma("GCC unroll 2") for (int p = 0; p < P; p++) {                                  \
                const __m512i table =                                                              \
                    _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)cp));               \
                const __m512 w0 = HALF_WEIGHTS(0), w1 = HALF_WEIGHTS(1);                           \
                _Pragma("GCC unroll 16") for (int b = 0; b < NB; b++) acc[p][b][0] =               \
                    _mm512_fmadd_ps(w0, _mm512_load_ps(xc + 16 * b), acc[p][b][0]);                \
                _Pragma("GCC unroll 16") for (int b = 0; b < NB; b++) acc[p][b][H - 1] =           \
                    _mm512_fmadd_ps(w1, _mm512_load_ps(xc + 16 * (batch + b)), acc[p][b][H - 1]);  \
                cp += wb, sp += 2, bp += 2, xc += 32 * batch;                                      \
            }                                                                                      \
        }                                                                                          \
        for (; ch < ch1; ch++) {                                                                   \
            const uint64_t n = cw - ch * wb < wb ? cw - ch * wb : wb; /* words that exist */       \
            const __m512i table = _mm512_zextsi256_si512(                                          \
                ch < full ? _mm256_loadu_si256((const __m256i *)cp)                                \
                          : _mm256_maskz_loadu_epi32((__mmask8)((1u << n) - 1u), cp));             \
            const __m512 w0 = HALF_WEIGHTS(0), w1 = HALF_WEIGHTS(1);                               \
            _Pragma("GCC unroll 16") for (int b = 0; b < NB; b++) {                                \
                acc[0][b][0] = _mm512_fmadd_ps(w0, _mm512_load_ps(xc + 16 * b), acc[0][b][0]);     \
                acc[0][b][H - 1] =                                                                 \
                    _mm512_fmadd_ps(w1, _mm512_load_ps(xc + 16 * (batch + b)), acc[0][b][H - 1]);  \
            }                                                                                      \
            cp += wb, sp += 2, bp += 2, xc += 32 * batch;                                          \
        }                                                                                          \
        _Pragma("GCC unroll 16") for (int b = 0; b < NB; b++) {                                    \
            __m512 s = acc[0][b][0];                                                               \
            if (H == 2) s = _mm512_add_ps(s, acc[0][b][H - 1]);                                    \
            if (P == 2)                                                                            \
                s = _mm512_add_ps(s, _mm512_add_ps(acc[P - 1][b][0], acc[P - 1][b][H - 1]));       \
            acc_io[b] = s;                                                                         \
        }                                                                                          \
    }
ROW_DENSE(1)
ROW_DENSE(2)
ROW_DENSE(4)
ROW_DENSE(8)
ROW_DENSE(16)
#undef ROW_DENSE
#undef HALF_WEIGHTS

/* The outliers of row r as corrections y[b] += Σ_k (v_k − ŵ(r, c_k))·x[b][c_k], 16 at a time:
 * column indices and values loaded, the code of column c read by a dword gather at byte c·w/8
 * (bits (c·w) & 7 ..; the offset clamped to the row's last dword, the shift moved with it, so
 * nothing past the row is read), ŵ by the same FMA as the dense part. The dense term the
 * correction removes is the one row_dense added, so the two cancel to fp32 rounding. Batch 1
 * gathers x; larger batches read xt (x transposed: column c's batch values at c·16), one FMA per
 * outlier for all vectors instead of one gather per vector. */
__attribute__((target(AVX512_TARGET))) static void
row_outliers(const cpu_view *v, uint64_t r, const int32_t *crow, const float *scale16,
             const float *bias16, const float *xp, const float *xt, int batch, float *y) {
    const uint32_t k0 = cpu_view_rowptr(v, r), k1 = cpu_view_rowptr(v, r + 1);
    if (k0 == k1) return;
    const uint32_t wb = v->in->wbits;
    const __m512i wv = _mm512_set1_epi32((int)wb), last = _mm512_set1_epi32((int)(4 * v->cw - 4)),
                  mask = _mm512_set1_epi32((int)((1u << wb) - 1u));
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (uint32_t k = k0; k < k1; k += 16) {
        const uint32_t n = k1 - k < 16 ? k1 - k : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1u);
        const __m512i c =
            v->wide ? _mm512_maskz_loadu_epi32(m, v->ci + 4 * (uint64_t)k)
                    : _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, v->ci + 2 * (uint64_t)k));
        const __m512i bit = _mm512_mullo_epi32(c, wv);
        const __m512i byte = _mm512_min_epi32(_mm512_srli_epi32(bit, 3), last);
        const __m512i dw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, byte, crow, 1);
        const __m512i sh = _mm512_sub_epi32(bit, _mm512_slli_epi32(byte, 3));
        const __m512 q = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(dw, sh), mask));
        const __m512i half = _mm512_srli_epi32(c, 4);
        const __m512 sc = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, half, scale16, 4);
        const __m512 bi = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, half, bias16, 4);
        const __m512 val = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, v->vals + 2 * (uint64_t)k));
        const __m512 d = _mm512_maskz_sub_ps(m, val, _mm512_fmadd_ps(q, sc, bi));
        if (!xt) { /* batch 1: lanes are outliers */
            acc0 = _mm512_fmadd_ps(d, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, c, xp, 4),
                                   acc0);
            continue;
        }
        float dk[16];
        uint32_t ck[16];
        _mm512_storeu_ps(dk, d);
        _mm512_storeu_si512(ck, c);
        uint32_t j = 0; /* lanes are vectors: two chains over the 4-cycle FMA */
        for (; j + 2 <= n; j += 2) {
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(dk[j]), _mm512_load_ps(xt + 16 * (uint64_t)ck[j]),
                                   acc0);
            acc1 = _mm512_fmadd_ps(_mm512_set1_ps(dk[j + 1]),
                                   _mm512_load_ps(xt + 16 * (uint64_t)ck[j + 1]), acc1);
        }
        if (j < n)
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(dk[j]), _mm512_load_ps(xt + 16 * (uint64_t)ck[j]),
                                   acc0);
    }
    if (!xt) {
        y[0] += _mm512_reduce_add_ps(acc0);
        return;
    }
    float sum[16];
    _mm512_storeu_ps(sum, _mm512_add_ps(acc0, acc1));
    for (int b = 0; b < batch; b++) y[b] += sum[b];
}

/* x of all vectors for one column block: at most this many bytes, so that it stays in the L1 data
 * cache (32-48 KB) beside the codes while every row of a tile passes over it. Without blocking,
 * batch 16 at 4096 columns streams 256 KB of x from L2 per row: one 64-byte L2 load per FMA
 * (41 cycles per 16 weights, against 8 when x is in L1). */
#ifndef X_BLOCK_BYTES
#define X_BLOCK_BYTES (24 * 1024)
#endif
#ifndef TILE_ROWS
#define TILE_ROWS 16 /* rows per tile when the columns are split into blocks */
#endif

__attribute__((target(AVX512_TARGET))) int spqr_cpu_rows_avx512(const cpu_view *v, const float *xp,
                                                                uint64_t xstride, int batch,
                                                                uint64_t r0, uint64_t r1,
                                                                float *Y) {
    const uint32_t wb = v->in->wbits, beta2 = v->in->beta2;
    const uint64_t rows = v->in->dims[0], cols = v->in->dims[1];
    const unpack16 uc[2] = {unpack16_make(wb, 0), unpack16_make(wb, 2 * wb)};
    const unpack16 us = unpack16_make(v->in->stat_bits == 16 ? 8 : v->in->stat_bits, 0);
    const uint64_t chunks = (cols + 31) / 32, halves = 2 * chunks;
    /* chunks a plain 32-byte load may read: those ending at least 32 bytes inside the row */
    const uint64_t full = v->cw >= 8 ? (v->cw - 8) / wb + 1 : 0;
    uint32_t k = 0; /* beta2 = 16 · 2^k */
    while ((16u << k) < beta2) k++;
    /* column blocks of block_chunks chunks; batch 1 keeps whole rows (its x loads are not what
     * bounds it) */
    uint64_t block_chunks = X_BLOCK_BYTES / (128 * (uint64_t)batch);
    if (batch == 1 || block_chunks >= chunks) block_chunks = chunks;
    const uint64_t tile_rows = block_chunks == chunks ? 1 : TILE_ROWS;
    /* per-group statistics of one row (padded to whole vectors, zero past the last group), the
     * per-half statistics of each row of a tile (halves past the last column stay zero), the
     * second-order block, and 16 partial-sum vectors per row of the tile */
    const uint64_t G = v->groups, gpad = (G + 15) / 16 * 16 + 16, hpad = (halves + 15) / 16 * 16;
    const uint64_t nfloats = 2 * gpad + 2 * hpad * tile_rows + 4 * G;
    float *buf = calloc(nfloats, sizeof *buf);
    __m512 *accs = aligned_alloc(64, tile_rows * SPQR_MAX_BATCH * sizeof(__m512));
    /* x packed by halves: half i of vector b at (i·batch + b)·16, so the vectors a chunk meets are
     * one contiguous run (addressed by constant offsets, no per-vector pointers to keep). Each
     * thread packs its own copy (batch·cols floats, next to its rows·cols·batch FMAs) so that the
     * layout stays this file's business. */
    float *xpk = aligned_alloc(64, halves * (uint64_t)batch * 16 * sizeof *xpk);
    /* batch > 1 with outliers: x transposed for row_outliers, zero past the batch */
    float *xt = batch > 1 && v->in->nnz ? aligned_alloc(64, cols * 16 * sizeof *xt) : NULL;
    if (!buf || !accs || !xpk || (batch > 1 && v->in->nnz && !xt)) {
        free(buf), free(accs), free(xpk), free(xt);
        return 1;
    }
    if (xt)
        for (uint64_t c = 0; c < cols; c++)
            for (int b = 0; b < 16; b++)
                xt[c * 16 + (uint64_t)b] = b < batch ? xp[(uint64_t)b * xstride + c] : 0.0f;
    for (uint64_t i = 0; i < halves; i++)
        for (int b = 0; b < batch; b++)
            memcpy(xpk + (i * (uint64_t)batch + (uint64_t)b) * 16,
                   xp + (uint64_t)b * xstride + 16 * i, 16 * sizeof *xpk);
    float *scale = buf, *bias = buf + gpad, *halfstat = buf + 2 * gpad;
    float *const s2[4] = {halfstat + 2 * hpad * tile_rows, halfstat + 2 * hpad * tile_rows + G,
                          halfstat + 2 * hpad * tile_rows + 2 * G,
                          halfstat + 2 * hpad * tile_rows + 3 * G};
    uint64_t blk = UINT64_MAX;
    for (uint64_t t0 = r0; t0 < r1; t0 += tile_rows) {
        const uint64_t nt = r1 - t0 < tile_rows ? r1 - t0 : tile_rows;
        for (uint64_t i = 0; i < nt; i++) {
            const uint64_t r = t0 + i;
            if (v->in->stat_bits != 16 && r / v->in->beta1 != blk) {
                blk = r / v->in->beta1;
                spqr_cpu_block_stat2(v, blk, s2[0], s2[1], s2[2], s2[3]);
            }
            float *s16 = halfstat + 2 * hpad * i, *b16 = s16 + hpad;
            if (k > 0) {
                row_stats16(v, r, &us, (const float *const *)s2, scale, bias);
                expand_halves(scale, halves, k, s16), expand_halves(bias, halves, k, b16);
            } else { /* beta2 = 16: groups are halves (entries past the last group stay zero) */
                row_stats16(v, r, &us, (const float *const *)s2, s16, b16);
            }
            for (int b = 0; b < batch; b++) accs[i * SPQR_MAX_BATCH + b] = _mm512_setzero_ps();
        }
        for (uint64_t ch0 = 0; ch0 < chunks; ch0 += block_chunks) {
            const uint64_t ch1 = chunks - ch0 < block_chunks ? chunks : ch0 + block_chunks;
            for (uint64_t i = 0; i < nt; i++) {
                const int32_t *crow = (const int32_t *)(v->codes + (t0 + i) * v->cw);
                const float *s16 = halfstat + 2 * hpad * i, *b16 = s16 + hpad;
                /* vectors in blocks of 16, 8, 4, 2, 1: each block decodes the row once */
                for (int b = 0; b < batch;) {
                    const int left = batch - b;
                    const int nb = left >= 16  ? 16
                                   : left >= 8 ? 8
                                   : left >= 4 ? 4
                                   : left >= 2 ? 2
                                               : 1;
                    __m512 *acc = accs + i * SPQR_MAX_BATCH + b;
#define DENSE(NB)                                                                                  \
    row_dense_##NB(uc, crow, wb, v->cw, full, ch0, ch1, chunks, s16, b16, xpk + 16 * b,            \
                   (uint64_t)batch, acc)
                    if (nb == 16)
                        DENSE(16);
                    else if (nb == 8)
                        DENSE(8);
                    else if (nb == 4)
                        DENSE(4);
                    else if (nb == 2)
                        DENSE(2);
                    else
                        DENSE(1);
#undef DENSE
                    b += nb;
                }
            }
        }
        for (uint64_t i = 0; i < nt; i++) {
            const uint64_t r = t0 + i;
            float y[SPQR_MAX_BATCH];
            for (int b = 0; b < batch; b++)
                y[b] = _mm512_reduce_add_ps(accs[i * SPQR_MAX_BATCH + b]);
            const float *s16 = halfstat + 2 * hpad * i, *b16 = s16 + hpad;
            row_outliers(v, r, (const int32_t *)(v->codes + r * v->cw), s16, b16, xp, xt, batch, y);
            for (int b = 0; b < batch; b++) Y[(uint64_t)b * rows + r] = y[b];
        }
    }
    free(buf), free(accs), free(xpk), free(xt);
    return 0;
}
#else
int spqr_cpu_have_avx512(void) {
    return 0;
}
int spqr_cpu_rows_avx512(const cpu_view *v, const float *xp, uint64_t xstride, int batch,
                         uint64_t r0, uint64_t r1, float *Y) {
    (void)v, (void)xp, (void)xstride, (void)batch, (void)r0, (void)r1, (void)Y;
    return 1;
}
#endif
