// spqr_kernels.cu — CUDA kernels of libspqr: fused dense+sparse SpQR matvec/matmul (batch 1..16),
// dequantize-to-fp16, outlier corrections, and the cuSPARSE alternative for the sparse part.
//
// Dispatch: tensors with β2 >= 16 whose statistics suit an fp16 decode are re-tiled at upload and
// run the tensor-core kernel (v6, mma_kernel.cuh) for every batch; the others keep the stored
// layout described below and run the fp32 kernels: v5 (stream_kernel.cuh) for batch 1..4 and v3
// for 8..16 when β2 is 16 or 32, the generic kernel otherwise.
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
//
// Outliers: at upload, delta_k = v_k − ŵ(r, c_k) is computed in fp32 (outliers replace the dense
// value, spec §7.2 step 3), so the sparse part is a plain CSR product y += Δ·x, fused into the same
// kernel (each warp adds its row's outliers) or done by cuSPARSE SpMV/SpMM.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cusparse.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <type_traits>

#include "spqr.h"

namespace {

constexpr int kWarps = 16; // warps per block
constexpr int kThreads = kWarps * 32;
constexpr int kStride = 36;               // floats of shared x per 32 columns (4 floats of padding)
constexpr size_t kSmemBudget = 96 * 1024; // shared x tile budget per block (two blocks per SM)

struct Params {
    const uint32_t *codes, *scale, *zero, *rowptr, *perm;
    const uint16_t *stat2, *scale16, *zero16;
    const float *delta;
    const void *colidx;
    const uint32_t *tcodes; // tile records (mma_kernel.cuh); null: stored layout only
    uint32_t rows, cols, wbits, sbits, beta1, beta2, groups;
    uint32_t code_words, stat_words, chunks, sub, log2beta2, log2beta1;
    uint32_t strips, mtiles, tstat_words; // tiled layout: 16-row strips, 64-column macro tiles
    uint32_t rec_words, rec_s2, tgpt; // words per tile record, its stat2 offset (0: none), groups
    int wide, has_perm, fuse_outliers;
};

__device__ __forceinline__ float h2f(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}

// Stored-order column of outlier k: u16 indices, or u32 when cols > 65536 (spec table 3).
__device__ __forceinline__ uint32_t outlier_col(const Params &p, uint32_t k) {
    return p.wide ? __ldg((const uint32_t *)p.colidx + k) : __ldg((const uint16_t *)p.colidx + k);
}

__device__ __forceinline__ uint32_t pack_get(const uint32_t *w, uint64_t i, uint32_t b) {
    uint64_t bit = i * b;
    uint32_t wi = (uint32_t)(bit >> 5), sh = (uint32_t)(bit & 31);
    uint64_t pair = w[wi];
    if (sh + b > 32) pair |= (uint64_t)w[wi + 1] << 32;
    return (uint32_t)(pair >> sh) & ((1u << b) - 1u);
}

// Dequantized statistics of (r, g), bit-exact with spec §7.2 (no FMA contraction).
__device__ __forceinline__ void stats_of(const Params &p, uint32_t r, uint32_t g, float &scale,
                                         float &zero) {
    if (p.sbits == 16) {
        scale = h2f(p.scale16[(uint64_t)r * p.groups + g]);
        zero = h2f(p.zero16[(uint64_t)r * p.groups + g]);
        return;
    }
    const uint2 s2 =
        *reinterpret_cast<const uint2 *>(p.stat2 + 4 * ((uint64_t)(r / p.beta1) * p.groups + g));
    uint32_t qs = pack_get(p.scale + (uint64_t)r * p.stat_words, g, p.sbits);
    uint32_t qz = pack_get(p.zero + (uint64_t)r * p.stat_words, g, p.sbits);
    scale = __fmul_rn(h2f((uint16_t)(s2.x & 0xffff)),
                      __fsub_rn((float)qs, h2f((uint16_t)(s2.x >> 16))));
    zero = __fmul_rn(h2f((uint16_t)(s2.y & 0xffff)),
                     __fsub_rn((float)qz, h2f((uint16_t)(s2.y >> 16))));
}

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<__half>(__half v) {
    return __half2float(v);
}
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) {
    return __bfloat162float(v);
}
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ __half from_f<__half>(float v) {
    return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

__device__ __forceinline__ uint32_t xs_index(uint32_t c) {
    return (c >> 5) * kStride + (c & 31);
}

// Loads w words of one chunk (vectorised where the width allows).
template <int WB> __device__ __forceinline__ void load_chunk(const uint32_t *src, uint32_t *w) {
    if constexpr (WB == 4) {
        uint4 v = __ldg(reinterpret_cast<const uint4 *>(src));
        w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
    } else if constexpr (WB == 2) {
        uint2 v = __ldg(reinterpret_cast<const uint2 *>(src));
        w[0] = v.x, w[1] = v.y;
    } else {
#pragma unroll
        for (int i = 0; i < WB; i++) w[i] = __ldg(src + i);
    }
}

// Code k (0..31) of a chunk as an exact float.
template <int WB> __device__ __forceinline__ float code_f(const uint32_t *w, int k) {
    const int bit = k * WB, wi = bit >> 5, sh = bit & 31;
    uint32_t v = w[wi] >> sh;
    if (sh + WB > 32) v |= w[wi + 1] << (32 - sh);
    return __uint_as_float((v & ((1u << WB) - 1u)) | 0x4B000000u) - 8388608.0f;
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
        for (int b = 0; b < BATCH; b++) {
            float v = acc[r][b];
#pragma unroll
            for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            acc[r][b] = v;
        }
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

#include "stream_kernel.cuh" // v5: batch 1..4
#include "mma_kernel.cuh"    // v6: tensor cores, batch 1..16

// delta_k = v_k − ŵ(r, c_k): one warp per row.
__global__ void delta_kernel(Params p, const uint16_t *values, float *delta) {
    const uint32_t lane = threadIdx.x & 31;
    for (uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < p.rows;
         row += (gridDim.x * blockDim.x) >> 5) {
        for (uint32_t k = p.rowptr[row] + lane; k < p.rowptr[row + 1]; k += 32) {
            const uint32_t c = outlier_col(p, k);
            float scale, zero;
            stats_of(p, row, c >> p.log2beta2, scale, zero);
            const uint32_t q = pack_get(p.codes + (uint64_t)row * p.code_words, c, p.wbits);
            delta[k] = h2f(values[k]) - __fmul_rn(scale, __fsub_rn((float)q, zero));
        }
    }
}

// Dequantize to fp16 in the original column order: thread per (row, chunk); outliers after.
__global__ void dequant_kernel(Params p, __half *out) {
    const uint64_t total = (uint64_t)p.rows * p.chunks;
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < total;
         i += (uint64_t)gridDim.x * blockDim.x) {
        const uint32_t row = (uint32_t)(i / p.chunks), ch = (uint32_t)(i % p.chunks);
        const uint32_t *crow = p.codes + (uint64_t)row * p.code_words;
        for (uint32_t k = 0; k < 32; k++) {
            const uint32_t c = ch * 32 + k;
            if (c >= p.cols) break;
            float scale, zero;
            stats_of(p, row, c >> p.log2beta2, scale, zero);
            const float v = __fmul_rn(scale, __fsub_rn((float)pack_get(crow, c, p.wbits), zero));
            out[(uint64_t)row * p.cols + (p.has_perm ? p.perm[c] : c)] = __float2half_rn(v);
        }
    }
}
__global__ void dequant_outliers_kernel(Params p, const uint16_t *values, __half *out) {
    const uint32_t lane = threadIdx.x & 31;
    for (uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < p.rows;
         row += (gridDim.x * blockDim.x) >> 5)
        for (uint32_t k = p.rowptr[row] + lane; k < p.rowptr[row + 1]; k += 32) {
            const uint32_t c = outlier_col(p, k);
            out[(uint64_t)row * p.cols + (p.has_perm ? p.perm[c] : c)] =
                __ushort_as_half(values[k]);
        }
}

template <typename Act> __global__ void convert_kernel(const float *in, Act *out, uint64_t n) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
         i += (uint64_t)gridDim.x * blockDim.x)
        out[i] = from_f<Act>(in[i]);
}

// Permuted x, densely packed [nb][cols] fp32 (the cuSPARSE path's dense operand).
template <typename Act>
__global__ void gather_plain_kernel(Params q, const Act *x, int nb, float *xp) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < (uint64_t)nb * q.cols;
         i += (uint64_t)gridDim.x * blockDim.x) {
        uint32_t b = (uint32_t)(i / q.cols), c = (uint32_t)(i % q.cols);
        xp[i] = to_f<Act>(x[(uint64_t)b * q.cols + (q.has_perm ? q.perm[c] : c)]);
    }
}

__global__ void widen_colidx_kernel(const uint16_t *in, int *out, uint64_t n) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
         i += (uint64_t)gridDim.x * blockDim.x)
        out[i] = in[i];
}

} // namespace

struct spqr_gpu_tensor {
    Params p;
    void *sec[SPQR_SEC_COUNT];
    uint64_t size[SPQR_SEC_COUNT];
    float *delta;
    uint32_t *tcodes; // tile records for the tensor-core kernel (null: stored layout)
    uint64_t tcodes_size;
    float *acc32;       // tensor-core kernel: split-K partial sums, rows x 16, zero between calls
    uint32_t *counters; // tensor-core kernel: blocks arrived per strip, zero between calls
    int *colidx32;      // cuSPARSE path (int32 column indices)
    float *xbuf, *ybuf; // scratch: permuted x; fp32 y of the cuSPARSE path, or o32 of the
                        // tensor-core path's batch 9-16 outliers (SPQR_MAX_BATCH wide)
    uint64_t nnz;
    int sms;
    size_t smem_optin;
    spqr_outlier_path path;
    cusparseHandle_t sp;
};

static spqr_status cuda_fail(spqr_error *err, cudaError_t e, const char *what) {
    return spqr_set_error(err, e == cudaErrorMemoryAllocation ? SPQR_E_NOMEM : SPQR_E_CUDA, 0,
                          UINT64_MAX, "%s: %s", what, cudaGetErrorString(e));
}
#define CK(call, what)                                                                             \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) return cuda_fail(err, e_, what);                                    \
    } while (0)

extern "C" spqr_status spqr_gpu_available(spqr_error *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        return spqr_set_error(err, SPQR_E_UNSUPPORTED, 0, UINT64_MAX, "no CUDA device: %s",
                              e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0");
    return SPQR_OK;
}

extern "C" void spqr_gpu_free(spqr_gpu_tensor *t) {
    if (!t) return;
    for (int i = 0; i < SPQR_SEC_COUNT; i++) cudaFree(t->sec[i]);
    cudaFree(t->tcodes), cudaFree(t->acc32), cudaFree(t->counters);
    cudaFree(t->delta), cudaFree(t->colidx32), cudaFree(t->xbuf), cudaFree(t->ybuf);
    if (t->sp) cusparseDestroy(t->sp);
    delete t;
}

// Builds the tiled layout of mma_kernel.cuh from the stored sections and releases the stored
// codes and first-order statistics (the tiled copy has the same bytes up to tile padding). Keeps
// the stored layout (and the generic kernels) when the fp16 decode could overflow.
static cudaError_t make_tiled(spqr_gpu_tensor *t) {
    Params &p = t->p;
    unsigned int *dbad = nullptr, hbad = 0;
    cudaError_t e = cudaMalloc(&dbad, sizeof *dbad);
    if (e == cudaSuccess) e = cudaMemset(dbad, 0, sizeof *dbad);
    if (e == cudaSuccess) {
        fp16_range_kernel<<<t->sms * 4, 256>>>(p, dbad);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpy(&hbad, dbad, sizeof hbad, cudaMemcpyDeviceToHost);
    cudaFree(dbad);
    if (e != cudaSuccess) return e;
    if (hbad) return cudaSuccess; // stays in the stored layout
    // tile record (mma_kernel.cuh): w·32 code words, the statistics blocks of the tile's groups,
    // for s-bit statistics with β1 >= 16 their stat2 pairs (8-byte aligned), padded to 32 bytes
    p.tgpt = p.log2beta2 >= 6 ? 1 : 64u >> p.log2beta2;
    uint32_t rw = p.wbits * 32 + p.tgpt * p.tstat_words;
    p.rec_s2 = 0;
    if (p.sbits != 16 && p.log2beta1 >= 4) rw = (rw + 1) & ~1u, p.rec_s2 = rw, rw += 2 * p.tgpt;
    p.rec_words = (rw + 7) & ~7u;
    t->tcodes_size = (uint64_t)p.strips * p.mtiles * p.rec_words * 4;
    e = cudaMalloc(&t->tcodes, t->tcodes_size + 16);
    if (e == cudaSuccess) e = cudaMemset(t->tcodes, 0, t->tcodes_size + 16);
    if (e == cudaSuccess) e = cudaMalloc(&t->acc32, (uint64_t)p.rows * SPQR_MAX_BATCH * 4);
    if (e == cudaSuccess) e = cudaMemset(t->acc32, 0, (uint64_t)p.rows * SPQR_MAX_BATCH * 4);
    if (e == cudaSuccess) e = cudaMalloc(&t->counters, (uint64_t)p.strips * 4);
    if (e == cudaSuccess) e = cudaMemset(t->counters, 0, (uint64_t)p.strips * 4);
    if (e != cudaSuccess) return e;
    tile_codes_kernel<<<t->sms * 8, 256>>>(p, t->tcodes);
    tile_stats_kernel<<<t->sms * 4, 128>>>(p, t->tcodes);
    e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) return e;
    for (int s : {SPQR_SEC_CODES, SPQR_SEC_SCALE, SPQR_SEC_ZERO}) {
        cudaFree(t->sec[s]);
        t->sec[s] = nullptr;
    }
    p.codes = p.scale = p.zero = nullptr;
    p.scale16 = p.zero16 = nullptr;
    p.tcodes = t->tcodes;
    return cudaSuccess;
}

extern "C" spqr_status spqr_gpu_upload(const spqr_file *f, size_t ti, spqr_gpu_tensor **out,
                                       spqr_error *err) {
    *out = nullptr;
    if (ti >= spqr_file_tensor_count(f))
        return spqr_set_error(err, SPQR_E_NOTFOUND, 0, UINT64_MAX, "tensor index %zu out of range",
                              ti);
    const spqr_tensor_info *in = spqr_file_tensor_info(f, ti);
    if (in->kind != SPQR_KIND_SPQR)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "tensor '%s' is not an SpQR tensor",
                              spqr_file_tensor_name(f, ti));
    spqr_status st = spqr_gpu_available(err);
    if (st) return st;
    spqr_gpu_tensor *t = new (std::nothrow) spqr_gpu_tensor();
    if (!t) return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    Params &p = t->p;
    p.rows = (uint32_t)in->dims[0], p.cols = (uint32_t)in->dims[1];
    p.wbits = in->wbits, p.sbits = in->stat_bits, p.beta1 = in->beta1, p.beta2 = in->beta2;
    p.groups = (p.cols + p.beta2 - 1) / p.beta2;
    p.code_words = (uint32_t)spqr_packed_row_words(p.cols, p.wbits);
    p.stat_words = p.sbits == 16 ? 0 : (uint32_t)spqr_stat_row_words(in, p.groups);
    p.chunks = (p.cols + 31) / 32;
    p.sub = p.beta2 < 32 ? p.beta2 : 32;
    p.log2beta2 = 0;
    while ((1u << p.log2beta2) < p.beta2) p.log2beta2++;
    p.log2beta1 = 0;
    while ((1u << p.log2beta1) < p.beta1) p.log2beta1++;
    p.strips = (p.rows + 15) / 16, p.mtiles = (p.cols + 63) / 64;
    p.tstat_words = p.sbits == 16 ? 16 : p.sbits;
    p.wide = p.cols > 65536;
    p.has_perm = (in->flags & SPQR_FLAG_PERM) != 0;
    p.fuse_outliers = 1;
    t->nnz = in->nnz;
    t->path = SPQR_OUTLIERS_FUSED;
    int dev;
    cudaDeviceProp prop;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        spqr_gpu_free(t);
        return spqr_set_error(err, SPQR_E_CUDA, 0, UINT64_MAX, "cannot query the CUDA device");
    }
    t->sms = prop.multiProcessorCount;
    t->smem_optin = prop.sharedMemPerBlockOptin;
    for (int s = 0; s < SPQR_SEC_COUNT; s++) {
        uint64_t size;
        const void *h = spqr_file_section(f, ti, (spqr_section_id)s, &size);
        t->size[s] = size;
        cudaError_t e =
            cudaMalloc(&t->sec[s], size + 16); // +16: word-pair loads past a row end stay in bounds
        if (e == cudaSuccess && size) e = cudaMemcpy(t->sec[s], h, size, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            spqr_gpu_free(t);
            return cuda_fail(err, e, "uploading a section");
        }
    }
    p.codes = (const uint32_t *)t->sec[SPQR_SEC_CODES];
    p.scale = (const uint32_t *)t->sec[SPQR_SEC_SCALE],
    p.zero = (const uint32_t *)t->sec[SPQR_SEC_ZERO];
    p.scale16 = (const uint16_t *)t->sec[SPQR_SEC_SCALE],
    p.zero16 = (const uint16_t *)t->sec[SPQR_SEC_ZERO];
    p.stat2 = (const uint16_t *)t->sec[SPQR_SEC_STAT2];
    p.rowptr = (const uint32_t *)t->sec[SPQR_SEC_ROWPTR];
    p.colidx = t->sec[SPQR_SEC_COLIDX];
    p.perm = (const uint32_t *)t->sec[SPQR_SEC_PERM];
    // x scratch: the stream kernel's xp (whole chunks) and half-chunk sums, and the cuSPARSE
    // path's permuted x
    // and the tensor-core kernel's xh (16 vectors at a stride of whole 64-column tiles) followed
    // by xt (x transposed, 16 values per column), both 2-byte activations
    const uint64_t x_mma =
        ((uint64_t)SPQR_MAX_BATCH * ((p.cols + 63) / 64 * 64) + 16ull * p.cols) / 2;
    const uint64_t x_stream = (uint64_t)p.chunks * 34 * SPQR_MAX_BATCH;
    const uint64_t xlen = x_stream > x_mma + 16 ? x_stream : x_mma + 16;
    cudaError_t e = cudaMalloc(&t->delta, (t->nnz ? t->nnz : 1) * sizeof(float));
    if (e == cudaSuccess) e = cudaMalloc(&t->xbuf, xlen * sizeof(float));
    if (e == cudaSuccess)
        e = cudaMalloc(&t->ybuf, (uint64_t)p.rows * SPQR_MAX_BATCH * sizeof(float));
    if (e != cudaSuccess) {
        spqr_gpu_free(t);
        return cuda_fail(err, e, "allocating scratch");
    }
    p.delta = t->delta;
    if (t->nnz) {
        delta_kernel<<<(p.rows + 7) / 8, 256>>>(p, (const uint16_t *)t->sec[SPQR_SEC_VALUES],
                                                t->delta);
        e = cudaGetLastError();
        if (e == cudaSuccess) e = cudaDeviceSynchronize();
        if (e != cudaSuccess) {
            spqr_gpu_free(t);
            return cuda_fail(err, e, "computing outlier corrections");
        }
    }
    if (p.beta2 >= 16) {
        e = make_tiled(t);
        if (e != cudaSuccess) {
            spqr_gpu_free(t);
            return cuda_fail(err, e, "tiling the codes for the tensor-core kernel");
        }
    }
    *out = t;
    return SPQR_OK;
}

extern "C" spqr_status spqr_gpu_set_outlier_path(spqr_gpu_tensor *t, spqr_outlier_path path,
                                                 spqr_error *err) {
    if (path != SPQR_OUTLIERS_FUSED && path != SPQR_OUTLIERS_CUSPARSE)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "unknown outlier path %d", (int)path);
    if (path == SPQR_OUTLIERS_CUSPARSE && !t->sp) {
        if (cusparseCreate(&t->sp) != CUSPARSE_STATUS_SUCCESS)
            return spqr_set_error(err, SPQR_E_CUDA, 0, UINT64_MAX, "cusparseCreate failed");
        const uint64_t n = t->nnz ? t->nnz : 1;
        CK(cudaMalloc(&t->colidx32, n * sizeof(int)), "allocating int32 column indices");
        if (t->nnz) {
            if (t->p.wide)
                CK(cudaMemcpy(t->colidx32, t->p.colidx, t->nnz * 4, cudaMemcpyDeviceToDevice),
                   "copying indices");
            else
                widen_colidx_kernel<<<256, 256>>>((const uint16_t *)t->p.colidx, t->colidx32,
                                                  t->nnz);
            CK(cudaGetLastError(), "widening indices");
        }
    }
    t->path = path;
    return SPQR_OK;
}

extern "C" int spqr_gpu_uses_tensor_cores(const spqr_gpu_tensor *t) {
    return t && t->tcodes != nullptr;
}

extern "C" uint64_t spqr_gpu_matmul_bytes(const spqr_gpu_tensor *t, int batch) {
    uint64_t b = 0;
    for (int s = 0; s < SPQR_SEC_COUNT; s++) {
        if (s == SPQR_SEC_VALUES) continue; // values are read as fp32 deltas instead
        if (t->tcodes && (s == SPQR_SEC_CODES || s == SPQR_SEC_SCALE || s == SPQR_SEC_ZERO ||
                          (s == SPQR_SEC_STAT2 && t->p.rec_s2)))
            continue; // read in their tiled form instead (counted below, padding included)
        b += t->size[s];
    }
    if (t->tcodes) b += t->tcodes_size;
    b += t->nnz * 4;                                    // deltas
    b += (uint64_t)batch * (t->p.cols + t->p.rows) * 2; // x in, y out (16-bit)
    return b;
}

static uint32_t tile_for(const Params &p, int batch, size_t *smem) {
    const size_t per_chunk = (size_t)batch * kStride * sizeof(float);
    uint32_t tile = (uint32_t)(kSmemBudget / per_chunk);
    if (tile > p.chunks) tile = p.chunks;
    if (tile < 1) tile = 1;
    *smem = tile * per_chunk;
    return tile;
}

template <typename K> static cudaError_t allow_smem(K kern, size_t smem) {
    if (smem <= 48 * 1024) return cudaSuccess;
    return cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
}

template <int WB, int SUB, int BATCH, int R, typename Act>
static cudaError_t launch_r(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                            cudaStream_t s) {
    size_t smem;
    const uint32_t tile = tile_for(t->p, BATCH, &smem);
    auto kern = matmul_kernel<WB, SUB, BATCH, R, Act>;
    cudaError_t e = allow_smem(kern, smem);
    if (e != cudaSuccess) return e;
    const uint32_t blocks = (t->p.rows + kWarps * R - 1) / (kWarps * R);
    kern<<<blocks, kThreads, smem, s>>>(t->p, x, y, y32, nb, tile);
    return cudaGetLastError();
}

template <int BATCH, typename Act>
static cudaError_t launch_generic(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                                  cudaStream_t s) {
    size_t smem;
    const uint32_t tile = tile_for(t->p, BATCH, &smem);
    auto kern = matmul_generic_kernel<BATCH, Act>;
    cudaError_t e = allow_smem(kern, smem);
    if (e != cudaSuccess) return e;
    kern<<<(t->p.rows + kWarps - 1) / kWarps, kThreads, smem, s>>>(t->p, x, y, y32, nb, tile);
    return cudaGetLastError();
}

// Rows per warp: 2 for batch <= 4 (4 when there are rows enough for two blocks per SM), 4 for
// batch 8 and 16 (x reuse matters more than the number of blocks there).
template <int WB, int SUB, int BATCH, typename Act>
static cudaError_t launch_one(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                              cudaStream_t s) {
    if constexpr (BATCH >= 8) return launch_r<WB, SUB, BATCH, 4, Act>(t, x, y, y32, nb, s);
    if (t->p.rows >= 2u * (uint32_t)t->sms * kWarps * 4)
        return launch_r<WB, SUB, BATCH, 4, Act>(t, x, y, y32, nb, s);
    return launch_r<WB, SUB, BATCH, 2, Act>(t, x, y, y32, nb, s);
}

#ifndef SPQR_STREAM_ROWS
#define SPQR_STREAM_ROWS 2 // rows per warp of the stream kernel (bench/NOTES.md v5)
#endif
#ifndef SPQR_STREAM_LANE_CHUNKS
#define SPQR_STREAM_LANE_CHUNKS 2 // fewest chunks per lane and row before warps split a row
#endif
// v5 for batch 1..4: x permuted once into the tensor's scratch, then the stream kernel with kw
// warps per row set, kw the smallest of 1, 2, 4, 8 that leaves each lane <= SPQR_STREAM_LANE_CHUNKS
// chunks per row.
template <int WB, int SUB, int BATCH, typename Act>
static cudaError_t launch_stream(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                                 cudaStream_t s) {
    constexpr int R = SPQR_STREAM_ROWS;
    const Params &p = t->p;
    const uint32_t stride = p.chunks * 32;
    float *xs = t->xbuf + (uint64_t)SPQR_MAX_BATCH * stride; // half-chunk sums after xp
    const uint64_t total = (uint64_t)BATCH * stride;
    uint64_t pb = (total + 255) / 256;
    if (pb > (uint64_t)t->sms * 8) pb = (uint64_t)t->sms * 8;
    prep_x_kernel<Act><<<(uint32_t)pb, 256, 0, s>>>(p, x, nb, BATCH, t->xbuf, stride, xs);
    int kwl = 0;
    while (kwl < 3 && p.chunks > (32u * SPQR_STREAM_LANE_CHUNKS << kwl)) kwl++;
    const uint32_t rows_per_block = (uint32_t)(kStreamWarps >> kwl) * R;
    const uint32_t blocks = (p.rows + rows_per_block - 1) / rows_per_block;
    stream_kernel<WB, SUB, BATCH, R, Act>
        <<<blocks, kStreamThreads, 0, s>>>(p, t->xbuf, stride, xs, y, y32, nb, kwl);
    return cudaGetLastError();
}

template <int WB, int SUB, typename Act>
static cudaError_t launch_batch(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                                cudaStream_t s) {
    if (nb == 1) return launch_stream<WB, SUB, 1, Act>(t, x, y, y32, nb, s);
    if (nb == 2) return launch_stream<WB, SUB, 2, Act>(t, x, y, y32, nb, s);
    if (nb <= 4) return launch_stream<WB, SUB, 4, Act>(t, x, y, y32, nb, s);
    if (nb <= 8) return launch_one<WB, SUB, 8, Act>(t, x, y, y32, nb, s);
    return launch_one<WB, SUB, 16, Act>(t, x, y, y32, nb, s);
}

template <typename Act>
static cudaError_t launch_any(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                              cudaStream_t s) {
    if (nb == 1) return launch_generic<1, Act>(t, x, y, y32, nb, s);
    if (nb == 2) return launch_generic<2, Act>(t, x, y, y32, nb, s);
    if (nb <= 4) return launch_generic<4, Act>(t, x, y, y32, nb, s);
    if (nb <= 8) return launch_generic<8, Act>(t, x, y, y32, nb, s);
    return launch_generic<16, Act>(t, x, y, y32, nb, s);
}

template <int WB, typename Act>
static cudaError_t launch_sub(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                              cudaStream_t s) {
    switch (t->p.sub) {
    case 16:
        return launch_batch<WB, 16, Act>(t, x, y, y32, nb, s);
    case 32:
        return launch_batch<WB, 32, Act>(t, x, y, y32, nb, s);
    default:
        return launch_any<Act>(t, x, y, y32, nb, s);
    }
}

// Split a strip's columns until this many warps per SM exist. 48 (was 32, bench/NOTES.md v6q):
// with 32, 19008x8192 took kw = 4 (1.5 waves), which the wave-fill rule below halved to 0.75 of a
// wave, and 34848x8192 kw = 2, halved to kw = 1 (0.69 of a wave, 128 tiles a warp): batch 1 w4
// 52.0 and 97.5 µs; with 48 they take kw = 8 (3.0 waves) and kw = 4 (2.75): 43.1 and 75.4 µs
// (same call, H100). The six benchmark shapes keep their geometry; 64 makes 28672x8192 and
// 8192x28672 3 % slower (kw = 8, ksplit 3).
#ifndef SPQR_MMA_WARPS_PER_SM
#define SPQR_MMA_WARPS_PER_SM 48
#endif
// Batch > SPQR_MMA_OUTL_ROWS_MIN_BATCH outliers in their own pass (outlier_rows_kernel) for
// tensors with at least SPQR_MMA_OUTL_ROWS_MIN_NNZ of them (bench/NOTES.md v6p; same call, w3 1 %
// batch 16, µs fused / own pass: 4096² (168 k outliers) 15.9 / 17.5, 11008x4096 (451 k) 36.4 /
// 35.0, 8192² 42.0 / 39.0, 28672x8192 140.8 / 108.1). At batch 5-8 it is mixed (batch 8: 8192²
// 36.3 / 43.0, 28672x8192 104.1 / 92.0, 8192x28672 135.4 / 106.2), so from batch 9, and from
// batch 5 for the largest tensors (SPQR_MMA_OUTL_ROWS_MID_NNZ below).
// SPQR_MMA_OUTL_ROWS 0: never (a measurement build).
#ifndef SPQR_MMA_OUTL_ROWS
#define SPQR_MMA_OUTL_ROWS 1
#endif
#ifndef SPQR_MMA_OUTL_ROWS_MIN_BATCH
#define SPQR_MMA_OUTL_ROWS_MIN_BATCH 8
#endif
#ifndef SPQR_MMA_OUTL_ROWS_MIN_NNZ
#define SPQR_MMA_OUTL_ROWS_MIN_NNZ (1u << 18)
#endif
#ifndef SPQR_MMA_NOOUTL
#define SPQR_MMA_NOOUTL 1 // 0: tensors without fused outliers run the OS = 2 kernels (measurement)
#endif
// Batch 5-8: the pass from this many outliers, the matmul then running the OS = 0 kernel (bench/
// NOTES.md v6r; same call, w3 1 % batch 8, µs in-kernel / pass: 28672x8192 (2.35 M outliers)
// 104.7 / 87.4, 8192x28672 135.9 / 101.2; 8192² (671 k) 36.5 / 46.3, 11008x4096 24.6 / 31.3).
#ifndef SPQR_MMA_OUTL_ROWS_MID_NNZ
#define SPQR_MMA_OUTL_ROWS_MID_NNZ (1u << 21)
#endif
// Batch 1 with fused outliers (s-bit statistics, β1 >= 16): the OS = 1 kernels, whose lanes walk
// one row's outliers each (bench/NOTES.md v6r; H100, w3 1 %, µs OS = 2 / OS = 1: 8192² 26.7 /
// 23.1, 8192x28672 78.1 / 70.9, 28672x8192 71.8 / 69.9). 0: the OS = 2 kernels (measurement).
#ifndef SPQR_MMA_OS1
#define SPQR_MMA_OS1 1
#endif
#ifndef SPQR_MMA_SPREAD4
#define SPQR_MMA_SPREAD4 1 // 0: batch 3-4 take the direct outlier path (a measurement build)
#endif
#ifndef SPQR_MMA_RESIDENT_FIXED // > 0: blocks per SM the geometry counts on (a measurement switch)
#define SPQR_MMA_RESIDENT_FIXED 0
#endif
#ifndef SPQR_MMA_WAVE_FILL
#define SPQR_MMA_WAVE_FILL 20 // tenths of a wave: grids of 1 wave to this many get half the warps
#endif
#ifndef SPQR_MMA_MIN_TILES
#define SPQR_MMA_MIN_TILES 16 // fewest macro tiles per warp before blocks split a strip
#endif
// Whether a call's outliers take their own pass (outlier_rows_kernel) before the matmul.
static bool mma_outlier_pass(const spqr_gpu_tensor *t, int nb) {
    return SPQR_MMA_OUTL_ROWS && t->p.fuse_outliers &&
           ((nb > SPQR_MMA_OUTL_ROWS_MIN_BATCH && t->nnz >= SPQR_MMA_OUTL_ROWS_MIN_NNZ) ||
            (nb > 4 && t->nnz >= SPQR_MMA_OUTL_ROWS_MID_NNZ));
}
// v6: x permuted once into the tensor's scratch (activation type), then the tensor-core kernel.
// Geometry (bench/NOTES.md v6): kw warps per strip, the smallest of 1, 2, 4, 8 giving
// SPQR_MMA_WARPS_PER_SM warps per SM; if 8 do not, ksplit blocks per strip (while each warp keeps
// >= SPQR_MMA_MIN_TILES macro tiles: short warps spend their time filling the pipeline); then
// half that kw where the grid would be 1 to SPQR_MMA_WAVE_FILL / 10 waves (v6n).
template <int WB, int NH, int SK, typename Act, int OS = 2>
static cudaError_t launch_mma_t(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                                cudaStream_t s) {
    const Params &p = t->p;
    const uint32_t stride = p.mtiles * 64;
    Act *xh = reinterpret_cast<Act *>(t->xbuf);
    uint64_t pb = ((uint64_t)nb * stride + 255) / 256;
    if (pb > (uint64_t)t->sms * 8) pb = (uint64_t)t->sms * 8;
    // batch > 8 (NH = 2) with fused outliers: x also transposed, after xh (xbuf has room: see
    // upload); each lane then reads its four vectors' x of an outlier column in two 4-byte loads
    // that a row's four lanes share in one sector (batch 3-8 keep the direct lookups: the
    // transposed copy cost more there than it saved, bench/NOTES.md v6k)
    // the outlier pass below reads xt too (with SPQR_MMA_OUTL_ROWS_MIN_BATCH < 8)
    const bool outl_pass = mma_outlier_pass(t, nb);
    Act *xt = (nb > 8 && p.fuse_outliers && t->nnz) || outl_pass
                  ? xh + (uint64_t)SPQR_MAX_BATCH * stride
                  : nullptr;
    prep_xh_kernel<Act><<<(uint32_t)pb, 256, 0, s>>>(p, x, nb, xh, stride, xt);
    // programmatic dependent launch: each next kernel may start while its predecessor runs (it
    // waits with griddepcontrol.wait before reading what the predecessor writes)
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    // batch 9-16, many outliers: their own pass into o32 (t->ybuf, the cuSPARSE path's scratch),
    // added by the tensor-core kernel's epilogue (mma_kernel.cuh, outlier_rows_kernel)
    Params pk = p;
    const float *o32 = nullptr;
    if (outl_pass) {
        cudaLaunchConfig_t oc = {};
        oc.gridDim = dim3((p.rows + 7) / 8), oc.blockDim = dim3(256), oc.stream = s;
        oc.attrs = attr, oc.numAttrs = 1;
        const cudaError_t e =
            cudaLaunchKernelEx(&oc, outlier_rows_kernel<Act>, p, (const Act *)xt, nb, t->ybuf);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return e;
        }
        pk.fuse_outliers = 0, o32 = t->ybuf;
    }
    const uint64_t target = (uint64_t)t->sms * SPQR_MMA_WARPS_PER_SM;
    int kwl = 0;
    while (kwl < 3 && ((uint64_t)p.strips << kwl) < target && (2u << kwl) <= p.mtiles) kwl++;
    uint32_t ksplit = 1;
    if (kwl == 3)
        while ((uint64_t)p.strips * 8 * ksplit < target &&
               p.mtiles / (8 * (ksplit + 1)) >= SPQR_MMA_MIN_TILES)
            ksplit++;
    // wave fill (bench/NOTES.md v6n): a grid of 1 to 2 waves of resident warps ends with a
    // partial last wave, so half the warps per strip (one wave or less, twice the tiles each) is
    // faster there (batch 1 8192² w3 1 %: 30.1 → 27.4 µs, 11008x4096 22.2 → 20.6; batch 16 8192²
    // 46.8 → 44.5); 2.26 waves → 1.13 is slower (28672 rows: 75.6 → 91.2 µs), so not past 2
    const uint64_t resident =
        (uint64_t)t->sms * kMmaWarps *
        (SPQR_MMA_RESIDENT_FIXED ? SPQR_MMA_RESIDENT_FIXED : mma_min_blocks<NH, OS>());
    const uint64_t warps = (uint64_t)p.strips << kwl;
    if (ksplit == 1 && kwl > 0 && warps > resident && 10 * warps < SPQR_MMA_WAVE_FILL * resident)
        kwl--;
    const uint32_t sets = (uint32_t)kMmaWarps >> kwl;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((p.strips + sets - 1) / sets * ksplit);
    cfg.blockDim = dim3(kMmaThreads);
    cfg.stream = s;
    cfg.attrs = attr, cfg.numAttrs = 1;
    const cudaError_t e = cudaLaunchKernelEx(&cfg, mma_kernel<WB, NH, SK, Act, OS>, pk,
                                             (const Act *)xh, (const Act *)xt, stride, y, y32, nb,
                                             kwl, ksplit, t->acc32, t->counters, kMagic2, o32);
    if (e != cudaSuccess) (void)cudaGetLastError(); // returned here: not left for a later check
    return e;
}
template <int WB, typename Act>
static cudaError_t launch_mma_w(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                                cudaStream_t s) {
    const int sk = t->p.sbits == 16 ? 2 : (t->p.log2beta1 >= 4 ? 0 : 1);
    // no fused outliers (none in the tensor, or the cuSPARSE path or their own pass adds them):
    // kernels without the outlier state (OS = 0; s-bit statistics with β1 >= 16 only, to bound the
    // kernel count)
    if (SPQR_MMA_NOOUTL && nb <= 8 && sk == 0 &&
        (t->nnz == 0 || !t->p.fuse_outliers || mma_outlier_pass(t, nb)))
        return launch_mma_t<WB, 1, 0, Act, 0>(t, x, y, y32, nb, s);
    // batch 1 with fused outliers: the OS = 1 kernels (one row per lane)
    if constexpr (SPQR_MMA_OS1 != 0)
        if (nb == 1 && sk == 0 && t->nnz && t->p.fuse_outliers)
            return launch_mma_t<WB, 1, 0, Act, 1>(t, x, y, y32, nb, s);
    // batch 3-4 with fused outliers: kernels whose four lanes of a row split the outliers for all
    // four vectors (SPQR_MMA_SPREAD4; bench/NOTES.md v6n)
    if (SPQR_MMA_SPREAD4 && nb >= 3 && nb <= 4 && t->nnz && t->p.fuse_outliers)
        return sk == 0   ? launch_mma_t<WB, 1, 0, Act, 4>(t, x, y, y32, nb, s)
               : sk == 1 ? launch_mma_t<WB, 1, 1, Act, 4>(t, x, y, y32, nb, s)
                         : launch_mma_t<WB, 1, 2, Act, 4>(t, x, y, y32, nb, s);
    if (nb <= 8)
        return sk == 0   ? launch_mma_t<WB, 1, 0, Act>(t, x, y, y32, nb, s)
               : sk == 1 ? launch_mma_t<WB, 1, 1, Act>(t, x, y, y32, nb, s)
                         : launch_mma_t<WB, 1, 2, Act>(t, x, y, y32, nb, s);
    return sk == 0   ? launch_mma_t<WB, 2, 0, Act>(t, x, y, y32, nb, s)
           : sk == 1 ? launch_mma_t<WB, 2, 1, Act>(t, x, y, y32, nb, s)
                     : launch_mma_t<WB, 2, 2, Act>(t, x, y, y32, nb, s);
}
template <typename Act>
static cudaError_t launch_mma(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                              cudaStream_t s) {
    switch (t->p.wbits) {
    case 2:
        return launch_mma_w<2, Act>(t, x, y, y32, nb, s);
    case 3:
        return launch_mma_w<3, Act>(t, x, y, y32, nb, s);
    case 4:
        return launch_mma_w<4, Act>(t, x, y, y32, nb, s);
    case 5:
        return launch_mma_w<5, Act>(t, x, y, y32, nb, s);
    case 6:
        return launch_mma_w<6, Act>(t, x, y, y32, nb, s);
    case 7:
        return launch_mma_w<7, Act>(t, x, y, y32, nb, s);
    default:
        return launch_mma_w<8, Act>(t, x, y, y32, nb, s);
    }
}

template <typename Act>
static cudaError_t launch(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                          cudaStream_t s) {
    if (t->p.tcodes) return launch_mma<Act>(t, x, y, y32, nb, s);
    switch (t->p.wbits) {
    case 2:
        return launch_sub<2, Act>(t, x, y, y32, nb, s);
    case 3:
        return launch_sub<3, Act>(t, x, y, y32, nb, s);
    case 4:
        return launch_sub<4, Act>(t, x, y, y32, nb, s);
    default:
        return launch_any<Act>(t, x, y, y32, nb, s);
    }
}

template <typename Act>
static spqr_status matmul_t(spqr_gpu_tensor *t, const Act *x, Act *y, int nb, cudaStream_t s,
                            spqr_error *err) {
    if (t->path == SPQR_OUTLIERS_FUSED || t->nnz == 0) {
        t->p.fuse_outliers = 1;
        CK(launch<Act>(t, x, y, nullptr, nb, s), "spqr matmul kernel");
        return SPQR_OK;
    }
    // cuSPARSE path: dense part to fp32, y32 += Δ · x_perm (SpMV / SpMM), convert.
    t->p.fuse_outliers = 0;
    const Params &p = t->p;
    cudaError_t e = cudaSuccess;
    // permuted x, densely packed (no padding) for cuSPARSE: gather into ybuf-sized scratch after
    // the dense pass
    e = launch<Act>(t, x, y, t->ybuf, nb, s);
    t->p.fuse_outliers = 1;
    CK(e, "spqr dense kernel");
    // x_perm contiguous [nb][cols] in xbuf (reuse the global buffer; its chunked layout is not
    // needed here)
    float *xp = t->xbuf;
    gather_plain_kernel<Act><<<t->sms * 4, 256, 0, s>>>(p, x, nb, xp);
    CK(cudaGetLastError(), "gather for cuSPARSE");
    cusparseSetStream(t->sp, s);
    cusparseSpMatDescr_t A;
    cusparseDnMatDescr_t X, Y;
    const float one = 1.f;
    if (cusparseCreateCsr(&A, p.rows, p.cols, (int64_t)t->nnz, (void *)p.rowptr, t->colidx32,
                          (void *)t->delta, CUSPARSE_INDEX_32I, CUSPARSE_INDEX_32I,
                          CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F) != CUSPARSE_STATUS_SUCCESS)
        return spqr_set_error(err, SPQR_E_CUDA, 0, UINT64_MAX, "cusparseCreateCsr failed");
    cusparseCreateDnMat(&X, p.cols, nb, p.cols, xp, CUDA_R_32F, CUSPARSE_ORDER_COL);
    cusparseCreateDnMat(&Y, p.rows, nb, p.rows, t->ybuf, CUDA_R_32F, CUSPARSE_ORDER_COL);
    size_t ws = 0;
    cusparseStatus_t cs = cusparseSpMM_bufferSize(
        t->sp, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE, &one, A, X, &one,
        Y, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, &ws);
    void *wbuf = nullptr;
    if (cs == CUSPARSE_STATUS_SUCCESS && ws) e = cudaMallocAsync(&wbuf, ws, s);
    if (cs == CUSPARSE_STATUS_SUCCESS && e == cudaSuccess)
        cs = cusparseSpMM(t->sp, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE,
                          &one, A, X, &one, Y, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, wbuf);
    if (wbuf) cudaFreeAsync(wbuf, s);
    cusparseDestroySpMat(A), cusparseDestroyDnMat(X), cusparseDestroyDnMat(Y);
    if (cs != CUSPARSE_STATUS_SUCCESS)
        return spqr_set_error(err, SPQR_E_CUDA, 0, UINT64_MAX, "cusparseSpMM failed: %s",
                              cusparseGetErrorString(cs));
    CK(e, "cuSPARSE workspace");
    convert_kernel<Act><<<t->sms * 4, 256, 0, s>>>(t->ybuf, y, (uint64_t)nb * p.rows);
    CK(cudaGetLastError(), "convert kernel");
    return SPQR_OK;
}

extern "C" spqr_status spqr_gpu_matmul(spqr_gpu_tensor *t, const void *x, void *y, int batch,
                                       spqr_act_type act, void *stream, spqr_error *err) {
    if (!t || !x || !y)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "null tensor or buffer");
    if (batch < 1 || batch > SPQR_MAX_BATCH)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                              "batch %d not in 1..%d (use dequantize + GEMM)", batch,
                              SPQR_MAX_BATCH);
    cudaStream_t s = (cudaStream_t)stream;
    if (act == SPQR_ACT_F16)
        return matmul_t<__half>(t, (const __half *)x, (__half *)y, batch, s, err);
    if (act == SPQR_ACT_BF16)
        return matmul_t<__nv_bfloat16>(t, (const __nv_bfloat16 *)x, (__nv_bfloat16 *)y, batch, s,
                                       err);
    return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "unknown activation type %d", (int)act);
}

extern "C" spqr_status spqr_gpu_dequantize_f16(spqr_gpu_tensor *t, void *w, void *stream,
                                               spqr_error *err) {
    if (!t || !w) return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "null tensor or buffer");
    cudaStream_t s = (cudaStream_t)stream;
    if (t->p.tcodes)
        dequant_tiled_kernel<<<t->sms * 8, 256, 0, s>>>(t->p, (__half *)w);
    else
        dequant_kernel<<<t->sms * 8, 256, 0, s>>>(t->p, (__half *)w);
    CK(cudaGetLastError(), "dequantize kernel");
    if (t->nnz) {
        dequant_outliers_kernel<<<(t->p.rows + 7) / 8, 256, 0, s>>>(
            t->p, (const uint16_t *)t->sec[SPQR_SEC_VALUES], (__half *)w);
        CK(cudaGetLastError(), "dequantize outliers kernel");
    }
    return SPQR_OK;
}
