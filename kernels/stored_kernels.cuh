// stored_kernels.cuh — v3 and the generic kernel: the fp32 matmul kernels that read the tensor in
// its stored layout (tensors the tensor-core kernel does not take: β2 < 8; β2 = 8 with fp16
// statistics or w > 4, mma_layout.cuh mma_tiled_shape; or statistics that do not suit an fp16
// decode).
//
// Layout read as stored (spec §5-§6): row r of the codes is ceil(cols/32)·w 32-bit words; each
// run of 32 columns ("chunk") is exactly w words. A warp owns a row; lane l decodes chunks
// l, l+32, ... (w-word loads, coalesced across the warp).
//
// Arithmetic per group (spec §7.2): Σ_k w_k x_k = scale·(Σ_k q_k x_k − zero·Σ_k x_k). The group
// sums of x (per run of min(β2, 32) columns) are computed once per block, so each weight costs one
// FMA. Codes become floats through the exponent trick (0x4B000000 | q is 2^23 + q exactly;
// subtracting 2^23 is exact), which runs at full rate where I2F runs at quarter rate.
//
// x is gathered through the permutation into shared memory as fp32 with a stride of 36 floats per
// 32 columns, so the 16-byte loads of 8 consecutive lanes (chunks 32 floats apart) hit distinct
// banks. When batch·cols does not fit the shared-memory budget, a gather kernel writes the permuted
// x to a global buffer instead and the main kernel reads it through L1/L2: no cap on cols.
#pragma once
#include "gpu_common.cuh"

namespace spqr_cu {
namespace {

constexpr int kWarps = 16; // warps per block
constexpr int kThreads = kWarps * 32;
constexpr int kStride = 36;               // floats of shared x per 32 columns (4 floats of padding)
constexpr size_t kSmemBudget = 96 * 1024; // shared x tile budget per block (two blocks per SM)

__device__ __forceinline__ uint32_t xs_index(uint32_t c) {
    return (c >> 5) * kStride + (c & 31);
}

// v3. A warp owns R consecutive rows (x loaded once for R rows). Columns are processed in tiles
// that fit the shared budget (any batch, any cols). For each tile a lane first issues the loads of
// all its chunks' code words and raw statistics (up to kMaxChunks chunks per lane, R rows) and only
// then gathers x through the permutation and synchronises, so DRAM latency overlaps the gather.
// Each weight is dequantized once (w = q·scale − scale·zero, one FMA) and used for every vector.
// WB: code bits; SUB: min(beta2, 32). Fast paths (WB 2-4, SUB 16/32) keep everything in registers;
// other configurations take the generic kernel below.
constexpr int kMaxChunks = 4;

struct RawStats {                // one run's statistics as loaded (decoded after the gather)
    uint32_t sw0, sw1, zw0, zw1; // s-bit codes' words (or fp16 bits when s = 16)
    uint2 s2;                    // second-order fp16 x4
};

__device__ __forceinline__ void load_stats(const Params &p, uint32_t r, uint32_t g, RawStats &o) {
    if (p.sbits == 16) {
        o.sw0 = __ldg(p.scale16 + (uint64_t)r * p.groups + g),
        o.zw0 = __ldg(p.zero16 + (uint64_t)r * p.groups + g);
        o.sw1 = o.zw1 = 0, o.s2 = make_uint2(0, 0);
        return;
    }
    const uint32_t bit = g * p.sbits,
                   wi = bit >> 5; // rows are padded: wi + 1 is in bounds (+16 B slack at the end)
    const uint32_t *sr = p.scale + (uint64_t)r * p.stat_words + wi,
                   *zr = p.zero + (uint64_t)r * p.stat_words + wi;
    o.sw0 = __ldg(sr), o.sw1 = __ldg(sr + 1), o.zw0 = __ldg(zr), o.zw1 = __ldg(zr + 1);
    o.s2 = __ldg(
        reinterpret_cast<const uint2 *>(p.stat2 + 4 * ((uint64_t)(r / p.beta1) * p.groups + g)));
}

__device__ __forceinline__ void decode_stats(const Params &p, uint32_t g, const RawStats &o,
                                             float &scale, float &zero) {
    if (p.sbits == 16) {
        scale = h2f((uint16_t)o.sw0), zero = h2f((uint16_t)o.zw0);
        return;
    }
    const uint32_t sh = (g * p.sbits) & 31, m = (1u << p.sbits) - 1u;
    const uint32_t qs = (uint32_t)((((uint64_t)o.sw1 << 32) | o.sw0) >> sh) & m;
    const uint32_t qz = (uint32_t)((((uint64_t)o.zw1 << 32) | o.zw0) >> sh) & m;
    scale = __fmul_rn(h2f((uint16_t)(o.s2.x & 0xffff)),
                      __fsub_rn((float)qs, h2f((uint16_t)(o.s2.x >> 16))));
    zero = __fmul_rn(h2f((uint16_t)(o.s2.y & 0xffff)),
                     __fsub_rn((float)qz, h2f((uint16_t)(o.s2.y >> 16))));
}

template <typename Act>
__device__ __forceinline__ void gather_tile(const Params &p, const Act *x, int nb, int BATCH,
                                            uint32_t t0, uint32_t tcols, float *xs,
                                            uint32_t xs_len) {
    const uint32_t total = (uint32_t)BATCH * tcols;
    for (uint32_t i0 = threadIdx.x; i0 < total; i0 += 8 * kThreads) {
        uint32_t idx[8];
        bool ok[8];
#pragma unroll
        for (int u = 0; u < 8; u++) {
            const uint32_t i = i0 + u * kThreads, b = i / tcols, c = t0 * 32 + i % tcols;
            ok[u] = i < total && (int)b < nb && c < p.cols;
            idx[u] = (ok[u] ? (p.has_perm ? __ldg(p.perm + c) : c) : 0) + b * p.cols;
        }
        float v[8];
#pragma unroll
        for (int u = 0; u < 8; u++) v[u] = ok[u] ? to_f<Act>(x[idx[u]]) : 0.f;
#pragma unroll
        for (int u = 0; u < 8; u++) {
            const uint32_t i = i0 + u * kThreads;
            if (i < total) xs[(i / tcols) * xs_len + xs_index(i % tcols)] = v[u];
        }
    }
}

// Outliers (fused): y += Δ·x for the warp's rows, x read through the permutation from global.
template <int R, int BATCH, typename Act>
__device__ __forceinline__ void add_outliers(const Params &p, const Act *x, int nb, uint32_t row0,
                                             uint32_t lane, float (&acc)[R][BATCH]) {
#pragma unroll
    for (int r = 0; r < R; r++) {
        if (row0 + r >= p.rows) break;
        const uint32_t k1 = p.rowptr[row0 + r + 1];
        for (uint32_t k = p.rowptr[row0 + r] + lane; k < k1; k += 32) {
            const uint32_t c = outlier_col(p, k);
            const uint32_t xc = p.has_perm ? p.perm[c] : c;
            const float d = p.delta[k];
#pragma unroll
            for (int b = 0; b < BATCH; b++)
                if (b < nb) acc[r][b] = fmaf(d, to_f<Act>(x[(uint64_t)b * p.cols + xc]), acc[r][b]);
        }
    }
}

template <int R, int BATCH, typename Act>
__device__ __forceinline__ void write_rows(const Params &p, Act *y, float *y32, int nb,
                                           uint32_t row0, uint32_t lane, float (&acc)[R][BATCH]) {
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int b = 0; b < BATCH; b++) acc[r][b] = warp_sum(acc[r][b]);
    if (lane == 0)
#pragma unroll
        for (int r = 0; r < R; r++)
            if (row0 + r < p.rows)
#pragma unroll
                for (int b = 0; b < BATCH; b++)
                    if (b < nb) {
                        if (y32)
                            y32[(uint64_t)b * p.rows + row0 + r] = acc[r][b];
                        else
                            y[(uint64_t)b * p.rows + row0 + r] = from_f<Act>(acc[r][b]);
                    }
}

template <int WB, int SUB, int BATCH, int R, typename Act>
__global__ void __launch_bounds__(kThreads)
    matmul_kernel(Params p, const Act *__restrict__ x, Act *__restrict__ y, float *__restrict__ y32,
                  int nb, uint32_t tile_chunks) {
    extern __shared__ float xs[];
    pdl_wait(); // x may come from the kernel before, and y be read by it
    constexpr int RUNS = 32 / SUB;
    constexpr int NC =
        R >= 4 ? 1 : (R == 2 ? 2 : kMaxChunks); // chunks in flight per lane: bounded registers
    const uint32_t xs_len = tile_chunks * kStride;
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t row0 = (blockIdx.x * kWarps + warp) * R;
    uint32_t rowc[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        rowc[r] = min(row0 + r, p.rows - 1); // rows past the end: computed, never written
    float acc[R][BATCH];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int b = 0; b < BATCH; b++) acc[r][b] = 0.f;
    for (uint32_t t0 = 0; t0 < p.chunks; t0 += tile_chunks) {
        const uint32_t nch = min(tile_chunks, p.chunks - t0);
        for (uint32_t base = 0; base < nch; base += 32 * NC) {
            // 1. issue every load of this lane's chunks (codes + raw statistics) before touching x
            uint32_t w[NC][R][WB];
            RawStats st[NC][R][RUNS];
#pragma unroll
            for (int i = 0; i < NC; i++) {
                const uint32_t cl = min(base + lane + 32 * i, nch - 1), ch = t0 + cl;
#pragma unroll
                for (int r = 0; r < R; r++) {
                    load_chunk<WB>(p.codes + (uint64_t)rowc[r] * p.code_words + (uint64_t)ch * WB,
                                   w[i][r]);
#pragma unroll
                    for (int s = 0; s < RUNS; s++)
                        load_stats(p, rowc[r],
                                   min((ch * 32 + s * SUB) >> p.log2beta2, p.groups - 1),
                                   st[i][r][s]);
                }
            }
            // 2. the x tile (once per tile)
            if (base == 0) {
                __syncthreads();
                gather_tile<Act>(p, x, nb, BATCH, t0, nch * 32, xs, xs_len);
                __syncthreads();
            }
            // 3. decode and multiply
#pragma unroll
            for (int i = 0; i < NC; i++) {
                const uint32_t cl = base + lane + 32 * i;
                if (cl >= nch) break;
                const uint32_t ch = t0 + cl;
#pragma unroll
                for (int s = 0; s < RUNS; s++) {
                    const uint32_t g = min((ch * 32 + s * SUB) >> p.log2beta2, p.groups - 1);
                    float scale[R], bias[R];
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        float zero;
                        decode_stats(p, g, st[i][r][s], scale[r], zero);
                        bias[r] = -scale[r] * zero;
                    }
#pragma unroll
                    for (int k = 0; k < SUB; k += 4) {
                        float wv[R][4];
#pragma unroll
                        for (int r = 0; r < R; r++)
#pragma unroll
                            for (int t = 0; t < 4; t++)
                                wv[r][t] =
                                    fmaf(code_f<WB>(w[i][r], s * SUB + k + t), scale[r], bias[r]);
#pragma unroll
                        for (int b = 0; b < BATCH; b++) {
                            const float4 xv = *reinterpret_cast<const float4 *>(
                                xs + b * xs_len + xs_index(cl * 32 + s * SUB + k));
#pragma unroll
                            for (int r = 0; r < R; r++) {
                                acc[r][b] = fmaf(wv[r][0], xv.x, acc[r][b]);
                                acc[r][b] = fmaf(wv[r][1], xv.y, acc[r][b]);
                                acc[r][b] = fmaf(wv[r][2], xv.z, acc[r][b]);
                                acc[r][b] = fmaf(wv[r][3], xv.w, acc[r][b]);
                            }
                        }
                    }
                }
            }
        }
        __syncthreads(); // the tile is read by every warp before the next gather overwrites it
    }
    if (p.fuse_outliers) add_outliers<R, BATCH, Act>(p, x, nb, row0, lane, acc);
    write_rows<R, BATCH, Act>(p, y, y32, nb, row0, lane, acc);
}

// Any configuration (w 2..8, any beta): one row per warp, codes through pack_get.
template <int BATCH, typename Act>
__global__ void __launch_bounds__(kThreads)
    matmul_generic_kernel(Params p, const Act *__restrict__ x, Act *__restrict__ y,
                          float *__restrict__ y32, int nb, uint32_t tile_chunks) {
    extern __shared__ float xs[];
    const uint32_t xs_len = tile_chunks * kStride;
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t row0 = blockIdx.x * kWarps + warp, row = min(row0, p.rows - 1);
    float acc[1][BATCH];
#pragma unroll
    for (int b = 0; b < BATCH; b++) acc[0][b] = 0.f;
    const uint32_t *crow = p.codes + (uint64_t)row * p.code_words;
    for (uint32_t t0 = 0; t0 < p.chunks; t0 += tile_chunks) {
        const uint32_t nch = min(tile_chunks, p.chunks - t0);
        __syncthreads();
        gather_tile<Act>(p, x, nb, BATCH, t0, nch * 32, xs, xs_len);
        __syncthreads();
        for (uint32_t cl = lane; cl < nch; cl += 32)
            for (uint32_t k = 0; k < 32; k++) {
                const uint32_t c = (t0 + cl) * 32 + k;
                if (c >= p.cols) break;
                float scale, zero;
                stats_of(p, row, c >> p.log2beta2, scale, zero);
                const float wv = fmaf((float)pack_get(crow, c, p.wbits), scale, -scale * zero);
#pragma unroll
                for (int b = 0; b < BATCH; b++)
                    acc[0][b] = fmaf(wv, xs[b * xs_len + xs_index(cl * 32 + k)], acc[0][b]);
            }
    }
    if (p.fuse_outliers) add_outliers<1, BATCH, Act>(p, x, nb, row0, lane, acc);
    write_rows<1, BATCH, Act>(p, y, y32, nb, row0, lane, acc);
}

} // namespace
} // namespace spqr_cu
