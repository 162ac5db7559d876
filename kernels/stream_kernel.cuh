// stream_kernel.cuh — v5, the batch 1..4 kernel for tensors in the stored layout (w 2..4, β2 16
// or 32). See bench/NOTES.md "v5".
//
// Why a second kernel: v3 ties parallelism to rows (a warp per 2 rows, all columns) and gathers
// x into shared memory per block, so 4096-row layers launch one wave of 25%-occupied SMs and
// stall on latency. v5 separates the two:
//   1. prep_x_kernel writes xp = x[perm] (fp32, rows padded to whole chunks with zeros) once per
//      call into the tensor's scratch; every block then reads x through L1/L2, no gather, no
//      __syncthreads in the main loop. xp is stored "chunk-transposed": float4 j (columns
//      4j..4j+3) of chunk ch is float4 number j·chunks + ch, so when the 32 lanes of a warp read
//      float4 j of 32 consecutive chunks they read 512 contiguous bytes (one access per 128-byte
//      line) — in the plain layout each lane hit its own line, 8x the L1 wavefronts (v5a).
//   2. a block of 8 warps owns `sets` row sets of R rows; the kw = 8/sets warps of a set split
//      the row's chunks (lane-interleaved, so each step of a warp reads one contiguous span of the
//      row) and their partial sums meet in shared memory at the end.
//   3. the next chunk's code words and raw statistics are loaded before the current chunk is
//      computed (two buffers), so two chunk loads per row are in flight per lane.
//
// Arithmetic (spec §7.2, regrouped per run of SUB columns sharing one (scale, zero)):
//   Σ_k ŵ_k x_k = scale · (Σ_k q_k x_k − zero · Σ_k x_k).
// Codes become floats without a conversion instruction: placing the WB-bit code q in the top
// mantissa bits of 2^WB gives the float 2^WB + q exactly (one shift + one LOP3), so
//   Σ_k q_k x_k − zero·Σ_k x_k = Σ_k (2^WB + q_k) x_k − (2^WB + zero)·Σ_k x_k,
// and each weight costs one FMA for each vector. The products (2^WB+q)·x are exact in fp32 for
// fp16/bf16 x; the regrouping cancels at most a factor (2^WB+q)/|q−zero| of the fp32 sum's
// relative precision — ~1e-6 relative, far below the fp16 rounding of y (tested against a
// double-precision reference in tests/gpu).

#pragma once
#include "gpu_common.cuh"

namespace spqr_cu {
namespace {

constexpr int kStreamWarps = 8;
constexpr int kStreamThreads = kStreamWarps * 32;

// One chunk's raw statistics for its RUNS runs: the s-bit scale/zero code words covering the
// chunk's groups (two words: the codes may straddle), or the fp16 statistics when s = 16, and the
// second-order fp16 quadruples (scale-of-scale, zero-of-scale, scale-of-zero, zero-of-zero).
template <int RUNS> struct ChunkStats {
    uint32_t s0, s1, z0, z1;
    uint2 s2[RUNS];
};

template <int RUNS>
__device__ __forceinline__ void load_chunk_stats(const Params &p, uint32_t row, uint32_t rb,
                                                 uint32_t g0, ChunkStats<RUNS> &o) {
    if (p.sbits == 16) {
        const uint16_t *sr = p.scale16 + (uint64_t)row * p.groups,
                       *zr = p.zero16 + (uint64_t)row * p.groups;
        const uint32_t g1 = RUNS > 1 ? min(g0 + 1, p.groups - 1) : g0;
        o.s0 = __ldg(sr + g0), o.z0 = __ldg(zr + g0), o.s1 = __ldg(sr + g1), o.z1 = __ldg(zr + g1);
#pragma unroll
        for (int i = 0; i < RUNS; i++) o.s2[i] = make_uint2(0, 0);
        return;
    }
    // rows of statistic codes are padded to whole words and the section has 16 B of slack, so
    // word wi + 1 is always readable
    const uint32_t wi = (g0 * p.sbits) >> 5;
    const uint32_t *sr = p.scale + (uint64_t)row * p.stat_words + wi,
                   *zr = p.zero + (uint64_t)row * p.stat_words + wi;
    o.s0 = __ldg(sr), o.s1 = __ldg(sr + 1), o.z0 = __ldg(zr), o.z1 = __ldg(zr + 1);
#pragma unroll
    for (int i = 0; i < RUNS; i++)
        o.s2[i] = __ldg(reinterpret_cast<const uint2 *>(
            p.stat2 + 4 * ((uint64_t)rb * p.groups + min(g0 + i, p.groups - 1))));
}

// Dequantized (scale, zero) of run i of the chunk whose first group is g0, bit-exact with §7.2.
template <int RUNS>
__device__ __forceinline__ void decode_run_stats(const Params &p, uint32_t g0, int i,
                                                 const ChunkStats<RUNS> &o, float &scale,
                                                 float &zero) {
    if (p.sbits == 16) {
        scale = h2f((uint16_t)(i ? o.s1 : o.s0)), zero = h2f((uint16_t)(i ? o.z1 : o.z0));
        return;
    }
    const uint32_t sh = ((g0 * p.sbits) & 31) + (uint32_t)i * p.sbits, m = (1u << p.sbits) - 1u;
    const uint32_t qs = (uint32_t)((((uint64_t)o.s1 << 32) | o.s0) >> sh) & m;
    const uint32_t qz = (uint32_t)((((uint64_t)o.z1 << 32) | o.z0) >> sh) & m;
    const uint2 s2 = o.s2[i];
    scale = __fmul_rn(h2f((uint16_t)(s2.x & 0xffff)),
                      __fsub_rn((float)qs, h2f((uint16_t)(s2.x >> 16))));
    zero = __fmul_rn(h2f((uint16_t)(s2.y & 0xffff)),
                     __fsub_rn((float)qz, h2f((uint16_t)(s2.y >> 16))));
}

// Code k (0..31) of a chunk's WB words as the float 2^WB + q (exact; see the header comment).
// k is a constant after unrolling, so the branches and shifts fold: one SHF + one LOP3. E is the
// exponent word (127 + WB) << 23 passed in a register: with both mask and exponent as immediates
// ptxas emits two LOP3s (one immediate per LOP3), with E in a register one LOP3 does (v & M) | E.
template <int WB>
__device__ __forceinline__ float code_plus_bias(const uint32_t *w, int k, uint32_t E) {
    constexpr int P = 23 - WB; // the code's lowest bit in the mantissa
    constexpr uint32_t M = ((1u << WB) - 1u) << P;
    const int bit = k * WB, wi = bit >> 5, sh = bit & 31;
    uint32_t v;
    if (sh + WB > 32)
        v = __funnelshift_r(w[wi], w[wi + 1], sh - P); // straddles two words (sh > P here)
    else if (sh >= P)
        v = w[wi] >> (sh - P);
    else
        v = w[wi] << (P - sh);
    return __uint_as_float((v & M) | E);
}

template <int WB, int R, int RUNS>
__device__ __forceinline__ void load_chunk_rows(const Params &p, const uint32_t (&rowc)[R],
                                                const uint32_t (&rb)[R], uint32_t ch,
                                                uint32_t (&w)[R][WB], ChunkStats<RUNS> (&st)[R]) {
    const uint32_t g0 = min((ch * 32) >> p.log2beta2, p.groups - 1);
#pragma unroll
    for (int r = 0; r < R; r++) {
        load_chunk<WB>(p.codes + (uint64_t)rowc[r] * p.code_words + (uint64_t)ch * WB, w[r]);
        load_chunk_stats<RUNS>(p, rowc[r], rb[r], g0, st[r]);
    }
}

// acc[r][b] += Σ over the chunk's 32 columns of ŵ(row r) · xp[b]; xs: the sums of xp per half
// chunk (16 columns), [b][half·chunks + ch], or per quarter at SUB = 8 (s-bit statistics only:
// decode_run_stats reads fp16 statistics of two runs); E: the exponent word of code_plus_bias.
template <int WB, int SUB, int BATCH, int R>
__device__ __forceinline__ void
compute_chunk(const Params &p, const float *__restrict__ xp, uint32_t xp_stride,
              const float *__restrict__ xs, uint32_t E, uint32_t ch, const uint32_t (&w)[R][WB],
              const ChunkStats<32 / SUB> (&st)[R], float (&acc)[R][BATCH]) {
    constexpr int RUNS = 32 / SUB;
    constexpr float BIAS = (float)(1 << WB);
    const uint32_t g0 = min((ch * 32) >> p.log2beta2, p.groups - 1);
#pragma unroll
    for (int s = 0; s < RUNS; s++) {
        float dot[R][BATCH], xsum[BATCH];
#pragma unroll
        for (int b = 0; b < BATCH; b++) {
            const float *xsb = xs + (uint64_t)b * (SUB == 8 ? 4 : 2) * p.chunks;
            xsum[b] = SUB == 32 ? __ldg(xsb + ch) + __ldg(xsb + p.chunks + ch)
                                : __ldg(xsb + s * p.chunks + ch);
#pragma unroll
            for (int r = 0; r < R; r++) dot[r][b] = 0.f;
        }
#pragma unroll
        for (int k4 = 0; k4 < SUB; k4 += 4) {
            float4 xv[BATCH];
#pragma unroll
            for (int b = 0; b < BATCH; b++) {
                xv[b] = __ldg(reinterpret_cast<const float4 *>(xp + (uint64_t)b * xp_stride) +
                              (uint64_t)((s * SUB + k4) >> 2) * p.chunks + ch);
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                float f[4];
                f[0] = code_plus_bias<WB>(w[r], s * SUB + k4 + 0, E);
                f[1] = code_plus_bias<WB>(w[r], s * SUB + k4 + 1, E);
                f[2] = code_plus_bias<WB>(w[r], s * SUB + k4 + 2, E);
                f[3] = code_plus_bias<WB>(w[r], s * SUB + k4 + 3, E);
#pragma unroll
                for (int b = 0; b < BATCH; b++) {
                    dot[r][b] = fmaf(f[0], xv[b].x, dot[r][b]);
                    dot[r][b] = fmaf(f[1], xv[b].y, dot[r][b]);
                    dot[r][b] = fmaf(f[2], xv[b].z, dot[r][b]);
                    dot[r][b] = fmaf(f[3], xv[b].w, dot[r][b]);
                }
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            float scale, zero;
            decode_run_stats<RUNS>(p, g0, s, st[r], scale, zero);
            const float zb = zero + BIAS;
#pragma unroll
            for (int b = 0; b < BATCH; b++)
                acc[r][b] = fmaf(scale, fmaf(-zb, xsum[b], dot[r][b]), acc[r][b]);
        }
    }
}

// Position of permuted column c in a chunk-transposed xp row (see the header comment).
__device__ __forceinline__ uint32_t xp_index(const Params &p, uint32_t c) {
    return (((c & 31) >> 2) * p.chunks + (c >> 5)) * 4 + (c & 3);
}

// xp[b][xp_index(c)] = x[b][perm[c]] as fp32 for b < batch, c < stride = 32·chunks (zeros past
// cols and for b >= nb), and xs[b][h·chunks + ch] = the sum of the 16 values of half h of chunk
// ch (β2 = 8: xs[b][q·chunks + ch], the 8 values of quarter q). One thread per element, so a warp
// holds exactly one chunk (stride, the block size and the grid stride are multiples of 32) and the
// part sums are shuffle reductions.
// (A thread per half chunk, gathering 16 values serially, was 5 µs slower at 4096 columns.)
template <typename Act>
__global__ void prep_x_kernel(Params p, const Act *__restrict__ x, int nb, int batch,
                              float *__restrict__ xp, uint32_t stride, float *__restrict__ xs) {
    pdl_trigger(); // the stream kernel may launch now; it waits for xp
    pdl_wait();    // x may come from the kernel before; the stream kernel before may still read xp
    const uint64_t total = (uint64_t)batch * stride;
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < total;
         i += (uint64_t)gridDim.x * blockDim.x) {
        const uint32_t b = (uint32_t)(i / stride), c = (uint32_t)(i % stride);
        float v = 0.f;
        if ((int)b < nb && c < p.cols)
            v = to_f<Act>(x[(uint64_t)b * p.cols + (p.has_perm ? __ldg(p.perm + c) : c)]);
        xp[(uint64_t)b * stride + xp_index(p, c)] = v;
#pragma unroll
        for (int o = 4; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (p.sub == 8 && (c & 7) == 0) // β2 = 8: quarter chunks
            xs[(uint64_t)b * 4 * p.chunks + ((c >> 3) & 3) * p.chunks + (c >> 5)] = v;
        v += __shfl_xor_sync(0xffffffffu, v, 8);
        if (p.sub != 8 && (c & 15) == 0)
            xs[(uint64_t)b * 2 * p.chunks + ((c >> 4) & 1) * p.chunks + (c >> 5)] = v;
    }
}

#ifndef SPQR_STREAM_MINBLOCKS
#define SPQR_STREAM_MINBLOCKS 3 // resident blocks per SM asked of ptxas (bench/NOTES.md v5)
#endif
template <int WB, int SUB, int BATCH, int R, typename Act>
__global__ void __launch_bounds__(kStreamThreads, BATCH <= 2 ? SPQR_STREAM_MINBLOCKS : 2)
    stream_kernel(Params p, const float *__restrict__ xp, uint32_t xp_stride,
                  const float *__restrict__ xs, Act *__restrict__ y, float *__restrict__ y32,
                  int nb, int kw_log2) {
    constexpr int RUNS = 32 / SUB;
    __shared__ float red[kStreamWarps][R][BATCH];
    pdl_wait(); // xp, xs from prep_x_kernel; y may be read by a kernel before it
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t kw = 1u << kw_log2, kwi = warp & (kw - 1), set = warp >> kw_log2;
    const uint32_t sets = kStreamWarps >> kw_log2;
    const uint32_t row0 = (blockIdx.x * sets + set) * R;
    uint32_t rowc[R], rb[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        rowc[r] = min(row0 + r, p.rows - 1); // rows past the end: computed, never written
        rb[r] = rowc[r] / p.beta1;
    }
    float acc[R][BATCH];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int b = 0; b < BATCH; b++) acc[r][b] = 0.f;
    const uint32_t E = (127u + p.wbits) << 23; // == (127 + WB) << 23, kept in a register

    // outliers, first round: this lane's first CSR entry of each row is loaded before the main
    // loop (rowptr -> colidx/delta are two dependent round trips that would otherwise sit in the
    // block's tail); the x lookup and any further rounds come after the loop
    const uint32_t step = kw * 32;
    uint32_t ok[R], oend[R], oc[R];
    float od[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        ok[r] = oend[r] = 0, oc[r] = 0, od[r] = 0.f;
        if (p.fuse_outliers && row0 + r < p.rows) {
            ok[r] = __ldg(p.rowptr + row0 + r) + kwi * 32 + lane;
            oend[r] = __ldg(p.rowptr + row0 + r + 1);
            if (ok[r] < oend[r]) {
                oc[r] = outlier_col(p, ok[r]);
                od[r] = __ldg(p.delta + ok[r]);
            }
        }
    }

    // chunks kwi*32 + lane, + kw*32, ...: two buffers, the next chunk loading while this one runs
    uint32_t ch = kwi * 32 + lane;
    uint32_t wa[R][WB], wb[R][WB];
    ChunkStats<RUNS> sa[R], sb[R];
    if (ch < p.chunks) load_chunk_rows<WB, R, RUNS>(p, rowc, rb, ch, wa, sa);
    while (ch < p.chunks) {
        uint32_t next = ch + step;
        if (next < p.chunks) load_chunk_rows<WB, R, RUNS>(p, rowc, rb, next, wb, sb);
        compute_chunk<WB, SUB, BATCH, R>(p, xp, xp_stride, xs, E, ch, wa, sa, acc);
        ch = next;
        if (ch >= p.chunks) break;
        next = ch + step;
        if (next < p.chunks) load_chunk_rows<WB, R, RUNS>(p, rowc, rb, next, wa, sa);
        compute_chunk<WB, SUB, BATCH, R>(p, xp, xp_stride, xs, E, ch, wb, sb, acc);
        ch = next;
    }

    // outliers: y += Δ·xp over the row's CSR entries, shared among the set's kw warps
#pragma unroll
    for (int r = 0; r < R; r++)
        for (uint32_t k = ok[r]; k < oend[r]; k += step) {
            if (k != ok[r]) {
                oc[r] = outlier_col(p, k);
                od[r] = __ldg(p.delta + k);
            }
#pragma unroll
            for (int b = 0; b < BATCH; b++)
                acc[r][b] = fmaf(od[r], __ldg(xp + (uint64_t)b * xp_stride + xp_index(p, oc[r])),
                                 acc[r][b]);
        }

        // reduce: lanes by shuffles, then the set's warps through shared memory
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int b = 0; b < BATCH; b++) {
            const float v = warp_sum(acc[r][b]);
            if (lane == 0) red[warp][r][b] = v;
        }
    __syncthreads();
    for (uint32_t i = threadIdx.x; i < sets * R * BATCH; i += kStreamThreads) {
        const uint32_t st = i / (R * BATCH), r = (i / BATCH) % R, b = i % BATCH;
        const uint32_t row = (blockIdx.x * sets + st) * R + r;
        if (row >= p.rows || (int)b >= nb) continue;
        float v = 0.f;
        for (uint32_t j = 0; j < kw; j++) v += red[st * kw + j][r][b];
        if (y32)
            y32[(uint64_t)b * p.rows + row] = v;
        else
            y[(uint64_t)b * p.rows + row] = from_f<Act>(v);
    }
}

} // namespace
} // namespace spqr_cu
