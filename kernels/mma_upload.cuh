// mma_upload.cuh — the upload-time kernels of the tiled layout (mma_layout.cuh): tile records
// from the stored sections, the fp16-range check that decides whether a tensor is tiled, and the
// dequantize-to-fp16 kernel that reads the tiled layout. Included by spqr_kernels.cu only.
#pragma once
#include "mma_layout.cuh"

namespace spqr_cu {
namespace {

// Code (pair p, half h) of one lane's words, any w (upload-time and dequantize use).
__device__ __forceinline__ uint32_t tiled_code(const uint32_t *w, uint32_t stride, uint32_t wb,
                                               uint32_t p, uint32_t h) {
    uint32_t q = 0;
    for (uint32_t b = 0; b < wb; b++) {
        q |= ((w[code_word(wb, p, b) * stride] >> (code_bit(wb, p, b) + 16 * h)) & 1u) << b;
    }
    return q;
}

// Stored statistics codes of (row r, group g) (s <= 8) or fp16 bits (s = 16).
__device__ __forceinline__ void stored_stat_codes(const Params &p, uint32_t r, uint32_t g,
                                                  uint32_t &qs, uint32_t &qz) {
    if (p.sbits == 16) {
        qs = p.scale16[(uint64_t)r * p.groups + g], qz = p.zero16[(uint64_t)r * p.groups + g];
        return;
    }
    qs = pack_get(p.scale + (uint64_t)r * p.stat_words, g, p.sbits);
    qz = pack_get(p.zero + (uint64_t)r * p.stat_words, g, p.sbits);
}

// Upload: the outlier rounds (mma_kernel.cuh, OS = 8), one thread per (strip S, row pair
// g): the pair's outliers (row g's, then row g + 8's, in CSR order) fill slots i = 0, 1, ... of
// rounds rptr[S] + i / 16 (zeroed before: empty slots add 0·x[0]). Slot i mod 16 = 4t + s is
// lane 4g + t's 16-bit halves s (fp16 correction) and 4 + s (column | row bit << 15), i.e. the
// mma's k = 2t + (s & 1) + 8·(s >> 1). Corrections outside fp16 set *bad.
__global__ void rounds_kernel(Params p, const uint32_t *__restrict__ rptr, uint16_t *rounds,
                              unsigned int *bad) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < 8ull * p.strips;
         i += (uint64_t)gridDim.x * blockDim.x) {
        const uint32_t S = (uint32_t)(i >> 3), g = (uint32_t)(i & 7);
        const uint64_t first = rptr[S];
        uint32_t n = 0;
        for (uint32_t h = 0; h < 2; h++) {
            const uint32_t row = 16 * S + g + 8 * h;
            if (row >= p.rows) break;
            for (uint32_t k = p.rowptr[row]; k < p.rowptr[row + 1]; k++, n++) {
                const __half d = __float2half_rn(p.delta[k]);
                if (__hisinf(d) || __hisnan(d)) atomicOr(bad, 1u);
                const uint32_t slot = n & 15, s = slot & 3;
                uint16_t *u = rounds + ((first + (n >> 4)) * 32 + 4 * g + (slot >> 2)) * 8;
                u[s] = __half_as_ushort(d);
                u[4 + s] = (uint16_t)(outlier_col(p, k) | h << 15);
            }
        }
    }
}

// Upload: one thread per (strip, macro tile, lane) writes the lane's w code words.
__global__ void tile_codes_kernel(Params p, uint32_t *tcodes) {
    const uint64_t total = (uint64_t)p.strips * p.mtiles * 32;
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < total;
         i += (uint64_t)gridDim.x * blockDim.x) {
        const uint32_t lane = (uint32_t)(i & 31), g = lane >> 2, t = lane & 3;
        const uint64_t sm = i >> 5; // S·mtiles + M
        const uint32_t S = (uint32_t)(sm / p.mtiles), M = (uint32_t)(sm % p.mtiles);
        uint32_t w[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (uint32_t pr = 0; pr < 16; pr++)
            for (uint32_t h = 0; h < 2; h++) {
                const uint32_t r = 16 * S + tile_row(g, pr), c = 64 * M + tile_col(t, pr, h);
                const uint32_t q = (r < p.rows && c < p.cols)
                                       ? pack_get(p.codes + (uint64_t)r * p.code_words, c, p.wbits)
                                       : 0;
                for (uint32_t b = 0; b < p.wbits; b++) {
                    w[code_word(p.wbits, pr, b)] |= ((q >> b) & 1u)
                                                    << (code_bit(p.wbits, pr, b) + 16 * h);
                }
            }
        for (uint32_t k = 0; k < p.wbits; k++) tcodes[sm * p.rec_words + k * 32 + lane] = w[k];
    }
}

// Upload: one thread per (strip, macro tile, group of the tile) writes the statistics block (and
// stat2 pair) of a tile record.
__global__ void tile_stats_kernel(Params p, uint32_t *tcodes) {
    const uint64_t total = (uint64_t)p.strips * p.mtiles * p.tgpt;
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < total;
         i += (uint64_t)gridDim.x * blockDim.x) {
        const uint64_t sm = i / p.tgpt;
        const uint32_t gi = (uint32_t)(i % p.tgpt);
        const uint32_t S = (uint32_t)(sm / p.mtiles), M = (uint32_t)(sm % p.mtiles);
        const uint32_t G = ((64 * M) >> p.log2beta2) + gi;
        if (G >= p.groups) continue; // past the last column: stays zero
        uint32_t *rec = tcodes + sm * p.rec_words;
        // the strip's second-order block (β1 = 8: its two blocks, rows 0-7 then 8-15)
        for (uint32_t b = 0; b < rec_s2_blocks(p); b++) {
            const uint32_t row = min(16 * S + 8 * b, p.rows - 1);
            const uint32_t *s2 = reinterpret_cast<const uint32_t *>(
                p.stat2 + 4 * ((uint64_t)(row >> p.log2beta1) * p.groups + G));
            uint32_t *d = rec + rec_s2_word(p, 8 * b, gi);
            d[0] = s2[0], d[1] = s2[1];
        }
        uint32_t *blk = rec + p.wbits * 32 + gi * p.tstat_words;
        uint32_t w[16] = {0};
        for (uint32_t r = 0; r < 16; r++) {
            if (16 * S + r >= p.rows) break;
            uint32_t qs, qz;
            stored_stat_codes(p, 16 * S + r, G, qs, qz);
            if (p.sbits == 16) {
                w[stat_slot(r)] = qs | qz << 16;
                continue;
            }
            const uint32_t e = qs | qz << p.sbits, bit = 2 * p.sbits * stat_slot(r);
            w[bit >> 5] |= e << (bit & 31);
            if ((bit & 31) + 2 * p.sbits > 32) w[(bit >> 5) + 1] |= e >> (32 - (bit & 31));
        }
        for (uint32_t k = 0; k < p.tstat_words; k++) blk[k] = w[k];
    }
}

// Upload: *bad = 1 when some group's statistics do not suit the fp16 decode of mma_compute:
// |scale|·(2^w − 1) + |scale·zero| >= 60000 (fp16 overflow), |zero| > 512 (1024 + round(zero)
// must be an exact fp16 in [512, 1536]), 0 < |scale| < 2^-14 (an fp16 subnormal scale would lose
// relative precision), w = 2, 3 with |scale|·2^(14 + w) >= 65504 (the fp16 multiplier of the
// offset-free decode, code_pair), or a NaN/inf.
__global__ void fp16_range_kernel(Params p, unsigned int *bad) {
    const uint64_t total = (uint64_t)p.rows * p.groups;
    unsigned int local = 0;
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < total;
         i += (uint64_t)gridDim.x * blockDim.x) {
        float scale, zero;
        stats_of(p, (uint32_t)(i / p.groups), (uint32_t)(i % p.groups), scale, zero);
        const float m = fabsf(scale) * (float)((1u << p.wbits) - 1u) + fabsf(scale * zero);
        // w = 2, 3 (direct_width) multiply by scale·2^(14 + w) as an fp16: |scale| < 0.9995,
        // 0.4997
        const bool direct_ok =
            !direct_width((int)p.wbits) || ldexpf(fabsf(scale), 14 + (int)p.wbits) < 65504.f;
        const bool ok = m < 60000.f && fabsf(zero) <= 512.f && direct_ok &&
                        (scale == 0.f || fabsf(scale) >= 6.103515625e-05f);
        if (!ok) local = 1; // NaN fails every comparison above
    }
    if (__syncthreads_or(local) && threadIdx.x == 0) atomicOr(bad, 1u);
}

// Decoded statistics of a tiled (row-in-strip r) entry, bit-exact with spec §7.2.
__device__ __forceinline__ void tiled_stats_of(const Params &p, uint32_t S, uint32_t G, uint32_t r,
                                               float &scale, float &zero) {
    // the record of the first tile holding group G
    const uint32_t M = (G << p.log2beta2) >> 6, gi = G - ((64 * M) >> p.log2beta2);
    const uint32_t *rec = p.tcodes + ((uint64_t)S * p.mtiles + M) * p.rec_words;
    const uint32_t *blk = rec + p.wbits * 32 + gi * p.tstat_words;
    if (p.sbits == 16) {
        const uint32_t v = blk[stat_slot(r)];
        scale = h2f((uint16_t)(v & 0xffff)), zero = h2f((uint16_t)(v >> 16));
        return;
    }
    const uint32_t bit = 2 * p.sbits * stat_slot(r), m = (1u << p.sbits) - 1u;
    const uint32_t e = __funnelshift_r(blk[bit >> 5], blk[(bit >> 5) + 1], bit & 31);
    const uint32_t row = min(16 * S + r, p.rows - 1);
    // stat2 from the record where it holds it (the stored array is then released, make_tiled)
    const uint32_t *rs2 = rec + rec_s2_word(p, r, gi);
    const uint2 s2 = p.rec_s2 ? make_uint2(rs2[0], rs2[1])
                              : *reinterpret_cast<const uint2 *>(
                                    p.stat2 + 4 * ((uint64_t)(row >> p.log2beta1) * p.groups + G));
    scale = __fmul_rn(h2f((uint16_t)(s2.x & 0xffff)),
                      __fsub_rn((float)(e & m), h2f((uint16_t)(s2.x >> 16))));
    zero = __fmul_rn(h2f((uint16_t)(s2.y & 0xffff)),
                     __fsub_rn((float)((e >> p.sbits) & m), h2f((uint16_t)(s2.y >> 16))));
}

// Dequantize from the tiled layout: one thread per (strip, macro tile, lane), bit-exact.
__global__ void dequant_tiled_kernel(Params p, __half *out) {
    const uint64_t total = (uint64_t)p.strips * p.mtiles * 32;
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < total;
         i += (uint64_t)gridDim.x * blockDim.x) {
        const uint32_t lane = (uint32_t)(i & 31), g = lane >> 2, t = lane & 3;
        const uint64_t sm = i >> 5;
        const uint32_t S = (uint32_t)(sm / p.mtiles), M = (uint32_t)(sm % p.mtiles);
        const uint32_t c0 = 64 * M + 16 * t;
        if (c0 >= p.cols) continue;
        // the chunk's groups: one, or two with β2 = 8 (columns c0 .. c0 + 7, c0 + 8 .. c0 + 15)
        const uint32_t G = c0 >> p.log2beta2, ng = p.log2beta2 < 4 && c0 + 8 < p.cols ? 2 : 1;
        float sc[2][2], ze[2][2];
        for (uint32_t k = 0; k < ng; k++) {
            tiled_stats_of(p, S, G + k, g, sc[k][0], ze[k][0]);
            tiled_stats_of(p, S, G + k, g + 8, sc[k][1], ze[k][1]);
        }
        const uint32_t *w = p.tcodes + sm * p.rec_words + lane;
        for (uint32_t pr = 0; pr < 16; pr++)
            for (uint32_t h = 0; h < 2; h++) {
                const uint32_t r = 16 * S + tile_row(g, pr), c = 64 * M + tile_col(t, pr, h);
                if (r >= p.rows || c >= p.cols) continue;
                const uint32_t k = (c >> p.log2beta2) - G;
                const float q = (float)tiled_code(w, 32, p.wbits, pr, h);
                const float v = __fmul_rn(sc[k][pr & 1], __fsub_rn(q, ze[k][pr & 1]));
                out[(uint64_t)r * p.cols + (p.has_perm ? p.perm[c] : c)] = __float2half_rn(v);
            }
    }
}

// delta_k = v_k − ŵ(r, c_k) from the tiled layout, bit-exact with delta_kernel (spqr_kernels.cu;
// the decode of dequant_tiled_kernel): for the cuSPARSE path of a tensor whose corrections upload
// released because its outlier rounds serve every batch of the fused path. One warp per row.
__global__ void delta_tiled_kernel(Params p, const uint16_t *values, float *delta) {
    const uint32_t lane = threadIdx.x & 31;
    for (uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < p.rows;
         row += (gridDim.x * blockDim.x) >> 5) {
        const uint32_t S = row >> 4, rr = row & 15;
        for (uint32_t k = p.rowptr[row] + lane; k < p.rowptr[row + 1]; k += 32) {
            // stored column c: macro tile c / 64, lane (g, t) = (rr mod 8, (c mod 64) / 16), and
            // the pair pr, half h with tile_row(g, pr) = rr and tile_col(t, pr, h) = c mod 64
            const uint32_t c = outlier_col(p, k), ci = c & 15, t = (c & 63) >> 4;
            const uint32_t pr = 4 * (ci >> 2) + 2 * ((ci >> 1) & 1) + (rr >> 3), h = ci & 1;
            float scale, zero;
            tiled_stats_of(p, S, c >> p.log2beta2, rr, scale, zero);
            const uint32_t *w =
                p.tcodes + ((uint64_t)S * p.mtiles + (c >> 6)) * p.rec_words + 4 * (rr & 7) + t;
            const float q = (float)tiled_code(w, 32, p.wbits, pr, h);
            delta[k] = h2f(values[k]) - __fmul_rn(scale, __fsub_rn(q, zero));
        }
    }
}

} // namespace
} // namespace spqr_cu
