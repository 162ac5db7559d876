// mma_kernel.cuh — v6, the tensor-core kernel for batch 1..16: grid geometry, the tile loop and
// the epilogue (layout: mma_layout.cuh; a macro tile's loads and decode: mma_decode.cuh, which
// says why tensor cores; outliers: mma_outliers.cuh). See bench/NOTES.md "v6".
#pragma once
#include "mma_decode.cuh"
#include "mma_outliers.cuh"

namespace spqr_cu {
namespace {

#ifndef SPQR_MMA_MINBLOCKS
#define SPQR_MMA_MINBLOCKS 3 // resident 8-warp blocks per SM asked of ptxas (bench/NOTES.md v6)
#endif
#ifndef SPQR_MMA_MINBLOCKS_OS4 // the same for the batch 3-4 kernels with fused outliers (OS = 4)
#define SPQR_MMA_MINBLOCKS_OS4 3
#endif
#ifndef SPQR_MMA_MINBLOCKS_OS1 // the same for the OS = 1 kernels (SPQR_MMA_OS1)
#define SPQR_MMA_MINBLOCKS_OS1 4
#endif
// the same for the OS = 1, 8, 9 kernels at β2 = 8 (SK = 3: eight more registers of loads in
// flight and four of statistics; at 64 registers they spill 8-28 bytes)
#ifndef SPQR_MMA_MINBLOCKS_SK3
#define SPQR_MMA_MINBLOCKS_SK3 4
#endif
// the same for the batch 1-8 kernels at β2 = 8 with β1 < 16 (SK = 4: the OS = 2, 4 kernels): at
// 80 registers they spill 60-92 bytes; two blocks of up to 128 registers are faster (same call,
// H100, w3 1 % β1 = β2 = 8, µs three / two blocks: batch 1 8192² 38.8 / 29.8, 8192x28672 127.5 /
// 95.6; batch 4 8192² 46.3 / 31.2; bench/NOTES.md v7c)
#ifndef SPQR_MMA_MINBLOCKS_SK4
#define SPQR_MMA_MINBLOCKS_SK4 2
#endif
// and for its lean kernels (OS = 0, 1, 8, 9: 87-96 registers at two blocks; three measured
// mixed, batch 1 28672x8192 76.8 → 70.0 µs but 8192x28672 74.7 → 84.7, bench/NOTES.md v7c)
#ifndef SPQR_MMA_MINBLOCKS_SK4_LEAN
#define SPQR_MMA_MINBLOCKS_SK4_LEAN 2
#endif
#ifndef SPQR_MMA_MINBLOCKS_OS0 // the same for the kernels without outliers, SK = 0 (SPQR_MMA_PEEL)
#define SPQR_MMA_MINBLOCKS_OS0 4
#endif
template <int NH, int OS, int SK> constexpr int mma_min_blocks() {
    return NH == 2                           ? 2
           : SK == 4 && (OS <= 1 || OS >= 8) ? SPQR_MMA_MINBLOCKS_SK4_LEAN
           : SK == 4                         ? SPQR_MMA_MINBLOCKS_SK4
           : OS == 4                         ? SPQR_MMA_MINBLOCKS_OS4
           : (OS == 1 || OS >= 8) && SK == 3 ? SPQR_MMA_MINBLOCKS_SK3
           : OS == 1 || OS >= 8              ? SPQR_MMA_MINBLOCKS_OS1
           : OS == 0 && SK == 0              ? SPQR_MMA_MINBLOCKS_OS0
                                             : SPQR_MMA_MINBLOCKS;
}

// SPQR_MMA_PEEL 1: the tile loop runs its passes whose two loads are both certain (three or more
// tiles left) without the branch around each load; the last one or two tiles after. About 8 of a
// w3 tile's 114 instructions go (bench/NOTES.md v7j: batch 1 w3 1 % 28672x8192 50.0 → 48.1 µs
// with SPQR_MMA_PACK_STATS). Only the SK = 0 kernels held to 64 registers (four blocks per SM;
// SK 1 and 3 spill with it): where ptxas may use more, the unconditional loads take more
// (OS = 0 at three blocks: 62 → 79 registers), so the OS = 0 kernels are held to four blocks
// (SPQR_MMA_MINBLOCKS_OS0; 64 registers, no spills). 0: the branches (a measurement build).
#ifndef SPQR_MMA_PEEL
#define SPQR_MMA_PEEL 1
#endif
template <int NH, int OS, int SK> constexpr bool mma_peel() {
    return SPQR_MMA_PEEL && SK == 0 && mma_min_blocks<NH, OS, SK>() >= 4;
}
// SPQR_MMA_ESH_OPAQUE 1: the statistics shift (LaneCtx::esh) of the OS = 8, 9 kernels with SK = 0
// kept in a register (207 instead of 211 instructions per two w3 tiles; same call, H100, batch 1
// w3 1 % 28672x8192 48.4 → 47.9 µs, 8192x28672 47.9 → 47.3; the OS = 0 kernels measured within
// noise, so not there; bench/NOTES.md v7j). 0: never (a measurement build).
#ifndef SPQR_MMA_ESH_OPAQUE
#define SPQR_MMA_ESH_OPAQUE 1
#endif
template <int OS, int SK> constexpr bool esh_opaque() {
    return SPQR_MMA_ESH_OPAQUE && SK == 0 && (OS == 8 || OS == 9);
}
// The tile loop: a warp's ntiles macro tiles m0, m0 + step, .. of strip S, summed into acc (C
// fragments, mma_16816), with one tile's loads in flight while the other is decoded. First the
// lane's pointers (LaneCtx), then, before xh is ready, the first two tiles' code words pulled
// towards L2 and before_wait() (a prefetch of the caller's); then pdl_wait (a no-op when already
// waited) and, where the launch asks (p.trigger_early), the trigger of the kernels after this one.
template <int WB, int NH, int SK, typename Act, int OS, bool XS, typename BeforeWait>
__device__ __forceinline__ void
mma_strip_tiles(const Params &p, const Act *__restrict__ xh, const Act *__restrict__ xt,
                uint32_t xstride, int nb, uint32_t S, uint32_t m0, uint32_t ntiles, uint32_t step,
                uint32_t magic, uint32_t ostep, OutlierState<OS> &os, float (&acc)[NH][4],
                BeforeWait before_wait) {
    constexpr bool kRoundsInLoop = OS < 8 || OS == 10 || SPQR_MMA_ROUND_AT != 2;
    const uint32_t lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    LaneCtx L;
    L.step = step;
    L.codes = p.tcodes + ((uint64_t)S * p.mtiles + m0) * p.rec_words + lane;
    L.rec_step = step * p.rec_words;
    L.pf_left = (int)ntiles - mma_l2_prefetch<WB>();
    L.col = 64 * m0 + 16 * t;
    const uint32_t gi = (16 * t) >> p.log2beta2; // this lane's group in a tile record
    L.s2off = (int)(p.rec_s2 + 2 * gi) - (int)lane;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const uint32_t rr = g + 8 * r, row = min(16 * S + rr, p.rows - 1);
        L.s2[r] =
            reinterpret_cast<const uint2 *>(p.stat2) + (uint64_t)(row >> p.log2beta1) * p.groups;
        const uint32_t bit = (SK == 2 ? 32 : 2 * p.sbits) * stat_slot(rr);
        L.eoff[r] = (int)(WB * 32 + gi * p.tstat_words + (bit >> 5)) - (int)lane;
        L.esh[r] = bit & 31;
        // the rounds kernels (OS 8, 9) with SK = 0: the shift opaque to ptxas, which otherwise
        // rebuilds it from the thread index every other tile (S2R and six more instructions)
        if constexpr (esh_opaque<OS, SK>()) asm volatile("mov.b32 %0, %0;" : "+r"(L.esh[r]));
    }
    L.stat = L.codes + L.eoff[0], L.s2w = L.codes + L.s2off;
    // lane l prefetches line l of the record mma_l2_prefetch tiles ahead (lanes past the
    // record's lines repeat one: every lane issues the instruction anyway)
    L.pf = L.codes - lane + mma_l2_prefetch<WB>() * L.rec_step +
           32 * (lane % ((p.rec_words + 31) / 32));
#pragma unroll
    for (int n = 0; n < NH; n++) {
        L.x[n] = reinterpret_cast<const uint8_t *>(
            xh + (uint64_t)min((int)(8 * n + g), nb - 1) * xstride + 64 * m0 + 16 * t);
    }
    // before xh is ready (prep_xh_kernel, launched as our programmatic predecessor): pull the
    // first two tiles' code words towards L2, then wait for the predecessor's writes
#pragma unroll
    for (int i = 0; i < 2 * WB; i++)
        if ((uint32_t)(i / WB) < ntiles)
            asm volatile("prefetch.global.L2 [%0];\n" ::"l"(L.codes + (i / WB) * L.rec_step +
                                                            (i % WB) * 32));
    before_wait();
    pdl_wait();
#if SPQR_MMA_GRAPH_TRIGGER
    // (launch_mma_t: captured one-wave grids) the next call may launch now: after the wait, so
    // that at most one call ahead sits on the SMs waiting
    if (p.trigger_early) pdl_trigger();
#endif
    MmaRaw<WB, NH, SK, OS> ra, rb;
    // both magics derived from the argument, so they stay registers (see code_pair)
    const uint2 mg = make_uint2(magic, magic - (kMagic2 - kMagic2_64));
    // one tile: the next tile's loads into `next` (where there is a next tile), then the products
    // of `cur` and the outlier step of the loop (kRoundsInLoop)
    const auto tile = [&](const MmaRaw<WB, NH, SK, OS> &cur, MmaRaw<WB, NH, SK, OS> &next,
                          bool load_next) {
        if (load_next) mma_load<WB, NH, SK, OS>(p, L, next);
        mma_compute<WB, NH, SK, Act, OS, XS>(p, L, mg, cur, acc);
        if constexpr (kRoundsInLoop)
            outlier_step<NH, OS, Act, XS>(p, xh, xt, xstride, nb, t, ostep, os, acc);
    };
    uint32_t m = 0; // tiles done
    if (m < ntiles) mma_load<WB, NH, SK, OS>(p, L, ra);
    if constexpr (mma_peel<NH, OS, SK>()) {
        // while three or more tiles are left, both loads of a pass are certain: no branch
        // around them (predicates and reconvergence cost ~4 instructions a tile)
        for (; m + 2 < ntiles; m += 2) tile(ra, rb, true), tile(rb, ra, true);
    }
    while (m < ntiles) {
        tile(ra, rb, m + 1 < ntiles);
        if (++m >= ntiles) break;
        tile(rb, ra, m + 1 < ntiles);
        ++m;
    }
}

// Grid: a block of 8 warps owns 8/kw strips (kw = 1, 2, 4 or 8 warps per strip, each over a
// contiguous range of the strip's macro tiles); with ksplit > 1 (only with kw = 8, for layers with
// few rows and many columns) ksplit blocks share a strip. Partial sums meet in shared memory; with
// ksplit > 1 the blocks add theirs into acc32 (fp32, zero between calls) and the last block of the
// strip to arrive (a counter per strip) writes y and re-zeroes acc32 and the counter.
template <int WB, int NH, int SK, typename Act, int OS, bool XS>
__global__ void __launch_bounds__(kMmaThreads, mma_min_blocks<NH, OS, SK>())
    mma_kernel(Params p, const Act *__restrict__ xh, const Act *__restrict__ xt, uint32_t xstride,
               Act *__restrict__ y, float *__restrict__ y32, int nb, int kw_log2, uint32_t ksplit,
               float *__restrict__ acc32, uint32_t *__restrict__ counters, uint32_t magic,
               const float *__restrict__ o32, const Act *__restrict__ xraw) {
    // (Builds with other block sums, one per warp and row here or none at all, ran batch 1
    // 28672x8192 10 % slower, with or without PDL, at any carve-out asked and with the shared
    // memory padded back; their tile loops have the same instructions in the same order, with
    // other registers. Cause not found (bench/NOTES.md v7k): measure that shape after any change
    // to the epilogue.)
    __shared__ float red[kMmaWarps][16][8 * NH + 1];
    __shared__ uint32_t last_block;
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t kw = 1u << kw_log2, kwi = warp & (kw - 1), set = warp >> kw_log2;
    const uint32_t sets = kMmaWarps >> kw_log2;
    const uint32_t q = blockIdx.x % ksplit, S = (blockIdx.x / ksplit) * sets + set;
    const uint32_t g = lane >> 2, t = lane & 3;
    // XS (batch 1 from the host, launch_mma.cuh): no prep_xh_kernel before this kernel; the block
    // permutes x (xraw) into its shared memory itself, xh[c] = xraw[perm[c]], zero past cols
    if constexpr (XS) {
        extern __shared__ __align__(16) unsigned char xsm_bytes[];
        // perm entries of this thread's chunks of 8 columns (constant: read before the wait;
        // launch_mma_t takes this path only while 64·mtiles <= kXsmemChunks·8·kMmaThreads)
        uint32_t pc[kXsmemChunks][8];
#pragma unroll
        for (int u = 0; u < kXsmemChunks; u++) {
            const uint32_t c0 = 8 * (threadIdx.x + u * kMmaThreads);
            if (p.has_perm && c0 + 8 <= p.cols) {
                const uint4 a = __ldg(reinterpret_cast<const uint4 *>(p.perm + c0));
                const uint4 b = __ldg(reinterpret_cast<const uint4 *>(p.perm + c0 + 4));
                pc[u][0] = a.x, pc[u][1] = a.y, pc[u][2] = a.z, pc[u][3] = a.w;
                pc[u][4] = b.x, pc[u][5] = b.y, pc[u][6] = b.z, pc[u][7] = b.w;
            } else {
#pragma unroll
                for (int j = 0; j < 8; j++)
                    pc[u][j] =
                        c0 + j < p.cols ? (p.has_perm ? __ldg(p.perm + c0 + j) : c0 + j) : ~0u;
            }
        }
        if (S < p.strips) { // the first tile's code words towards L2 while the kernel before drains
            const uint32_t per_block = (p.mtiles + ksplit - 1) / ksplit;
            const uint32_t m0 = min(q * per_block + kwi, p.mtiles - 1);
            const uint32_t *c0 = p.tcodes + ((uint64_t)S * p.mtiles + m0) * p.rec_words;
#pragma unroll
            for (int i = 0; i < WB; i++)
                asm volatile("prefetch.global.L2 [%0];\n" ::"l"(c0 + 32 * i));
        }
        pdl_wait(); // x may come from the kernel before
        Act *xs = reinterpret_cast<Act *>(xsm_bytes);
        const uint16_t *xr = reinterpret_cast<const uint16_t *>(xraw); // (0: +0 in fp16, bf16)
#pragma unroll
        for (int u = 0; u < kXsmemChunks; u++) {
            const uint32_t c0 = 8 * (threadIdx.x + u * kMmaThreads);
            uint32_t v[8];
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] = pc[u][j] != ~0u ? xr[pc[u][j]] : 0u;
            if (c0 < xstride)
                *reinterpret_cast<uint4 *>(xs + c0) = make_uint4(
                    v[0] | v[1] << 16, v[2] | v[3] << 16, v[4] | v[5] << 16, v[6] | v[7] << 16);
        }
        __syncthreads();
        xh = xs;
    } else {
        (void)xraw;
    }
    float acc[NH][4];
#pragma unroll
    for (int n = 0; n < NH; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;

    OutlierState<OS> os;
    constexpr int orows = OutlierState<OS>::kRows;
    const bool spread = outl_spread<OS>(nb);
    // spread: the lanes of a row split its entries (4 lanes; OS = 1: the 2 lanes t, t ^ 1)
    const uint32_t olanes = orows == 2 ? 4 : 2, olane = orows == 2 ? t : t & 1;
    const uint32_t ostep = kw * ksplit * (spread && OS < 8 ? olanes : 1);
    const uint32_t ofirst = spread ? olane + olanes * (kwi + kw * q) : kwi + kw * q;
    if constexpr (OS >= 8) {
        os.k = os.end = 0;
        if (p.fuse_outliers && S < p.strips) {
            os.k = __ldg(p.rptr + S) + kwi + kw * q, os.end = __ldg(p.rptr + S + 1);
            if ((SPQR_MMA_ROUND_AT == 0 || OS == 10) && os.k < os.end)
                os.d = __ldg(p.rounds + (uint64_t)os.k * 32 + lane);
        }
    } else {
#pragma unroll
        for (int r = 0; r < orows; r++) {
            const uint32_t row = 16 * S + g + 8 * (orows == 2 ? r : t >> 1);
            os.k[r] = os.end[r] = 0, os.col[r] = 0, os.d[r] = 0.f;
#pragma unroll
            for (int h = 0; h < OS; h++) os.o[r][h] = 0.f;
            if (OS > 0 && p.fuse_outliers && S < p.strips && row < p.rows &&
                (spread || 2 * (int)t < nb)) {
                os.k[r] = __ldg(p.rowptr + row) + ofirst;
                os.end[r] = __ldg(p.rowptr + row + 1);
                if (os.k[r] < os.end[r])
                    os.col[r] = outlier_col(p, os.k[r]), os.d[r] = __ldg(p.delta + os.k[r]);
            }
        }
    }

    if (S < p.strips) {
        const uint32_t per_block = (p.mtiles + ksplit - 1) / ksplit;
        const uint32_t b0 = min(q * per_block, p.mtiles), b1 = min(b0 + per_block, p.mtiles);
#if SPQR_MMA_INTERLEAVE
        // the block's tiles dealt round-robin to the strip's kw warps: at any moment they read
        // neighbouring tiles, one DRAM stream per strip instead of kw (bench/NOTES.md v6j)
        const uint32_t m0 = min(b0 + kwi, b1), ntiles = (b1 - m0 + kw - 1) >> kw_log2;
        const uint32_t step = kw;
#else
        const uint32_t per_warp = (b1 - b0 + kw - 1) >> kw_log2;
        const uint32_t m0 = min(b0 + kwi * per_warp, b1), ntiles = min(m0 + per_warp, b1) - m0;
        const uint32_t step = 1;
#endif
        if constexpr (OS == 10) { // the warp's nr rounds spaced evenly over its ntiles tiles
            const uint32_t nr = os.k < os.end ? (os.end - os.k + ostep - 1) / ostep : 0;
            const uint32_t every = nr && ntiles > nr ? ntiles / nr - 1 : 0;
            os.sched = min(every, 0xffffu) << 16;
        }
        mma_strip_tiles<WB, NH, SK, Act, OS, XS>(
            p, xh, xt, xstride, nb, S, m0, ntiles, step, magic, ostep, os, acc, [&] {
                if constexpr (NH == 2 && SPQR_MMA_TAIL_PF)
                    if (p.outl_tail) outlier_rows_prefetch(p, S, kwi + kw * q, kw * ksplit);
            });
    }
    pdl_wait();                                      // (no-op when already waited)
    if constexpr (OS >= 8 && SPQR_MMA_ROUND_AT == 2) // (OS = 10: the rounds left, if any)
        outlier_rounds_all<NH, OS, Act, XS>(p, xh, xt, xstride, nb, ostep, os, acc);
    // rows with more entries than the warp had tiles
    while (os.entries_left())
        outlier_step<NH, OS, Act, XS>(p, xh, xt, xstride, nb, t, ostep, os, acc);
    if constexpr (OS == 1) { // lanes t = 0, 1 hold row g's halves, t = 2, 3 row g + 8's: to lane 0
        float v = os.o[0][0];
        v += __shfl_xor_sync(0xffffffffu, v, 1);
        const float v8 = __shfl_down_sync(0xffffffffu, v, 2);
        if (t == 0) acc[0][0] += v, acc[0][2] += v8;
    } else if constexpr (OS > 0 && OS < 8) {
        if (spread) {
            // fold the four lanes' sums into the lane holding vector h (t = h / 2)
#pragma unroll
            for (int r = 0; r < 2; r++)
#pragma unroll
                for (int h = 0; h < OS; h++) {
                    float v = os.o[r][h];
                    v += __shfl_xor_sync(0xffffffffu, v, 1);
                    v += __shfl_xor_sync(0xffffffffu, v, 2);
                    if (t == (uint32_t)(h >> 1)) acc[0][2 * r + (h & 1)] += v;
                }
        }
    }

    // C fragment: acc[n][0..1] = (row g, vectors 8n + 2t, +1), acc[n][2..3] = row g + 8
#pragma unroll
    for (int n = 0; n < NH; n++) {
        red[warp][g][8 * n + 2 * t] = acc[n][0], red[warp][g][8 * n + 2 * t + 1] = acc[n][1];
        red[warp][g + 8][8 * n + 2 * t] = acc[n][2];
        red[warp][g + 8][8 * n + 2 * t + 1] = acc[n][3];
    }
    if constexpr (NH == 2)
        if (p.outl_tail && S < p.strips) { // batch 9-16: the strip's CSR outliers, row by row
            __syncwarp();
            outlier_rows_tail<Act, 8 * NH + 1>(p, xt, nb, S, kwi + kw * q, kw * ksplit, red[warp]);
        }
    __syncthreads();
    const uint32_t items = sets * 16 * (uint32_t)nb;
    for (uint32_t i = threadIdx.x; i < items; i += kMmaThreads) {
        const uint32_t st = i / (16 * nb), rr = (i / nb) % 16, b = i % nb;
        const uint32_t row = ((blockIdx.x / ksplit) * sets + st) * 16 + rr;
        if (row >= p.rows) continue;
        float v = 0.f;
        const uint32_t n = OS == 8 ? (rr & 7) : b; // (OS = 8 batch 1: row r in C column r mod 8)
        for (uint32_t j = 0; j < kw; j++) v += red[st * kw + j][rr][n];
        if (o32 && ksplit == 1) v += o32[(uint64_t)b * p.rows + row]; // outlier_rows_kernel's
        if (ksplit > 1)
            atomicAdd(acc32 + (uint64_t)b * p.rows + row, v);
        else if (y32)
            y32[(uint64_t)b * p.rows + row] = v;
        else
            y[(uint64_t)b * p.rows + row] = from_f<Act>(v);
    }
    if (ksplit == 1) return;
    // ksplit > 1: sets == 1, S is the block's strip
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_block = atomicAdd(counters + S, 1u) == ksplit - 1;
    __syncthreads();
    if (!last_block) return;
    __threadfence();
    for (uint32_t i = threadIdx.x; i < 16 * (uint32_t)nb; i += kMmaThreads) {
        const uint32_t rr = i / nb, b = i % nb, row = 16 * S + rr;
        if (row >= p.rows) continue;
        float *a = acc32 + (uint64_t)b * p.rows + row;
        const float v = __ldcg(a) + (o32 ? o32[(uint64_t)b * p.rows + row] : 0.f);
        __stcg(a, 0.f);
        if (y32)
            y32[(uint64_t)b * p.rows + row] = v;
        else
            y[(uint64_t)b * p.rows + row] = from_f<Act>(v);
    }
    if (threadIdx.x == 0) counters[S] = 0;
}

} // namespace
} // namespace spqr_cu
