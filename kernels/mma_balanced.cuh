// mma_balanced.cuh — batch 1 on a balanced grid (bench/NOTES.md v7g): one wave of resident
// blocks in which every warp takes the same number of macro tiles (to within one), wherever
// the strip grid of mma_kernel.cuh would give the busiest SM more tiles than the mean.
//
// Why: the kernel is issue-bound per SM, so a grid's time is that of its busiest SM (v7d:
// 8192x28672, 512 blocks on 528 resident slots, takes the time of 528; 28672x8192's 896 blocks
// deal 7 to some SMs, 6.8 on average). Here warp i of the W warps of one wave takes the tile
// records [⌊T·i/W⌋, ⌊T·(i+1)/W⌋) of the T = strips·mtiles in record order (strip-major). A run
// of at most mtiles records lies in one strip or two: a segment each, run by mma_strip_tiles
// (the records are contiguous, so the L2 prefetch runs on from the first into the second).
//
// Partial sums: a segment's 16 rows go to slot k of its strip in acc32 (acc32[k·rows + row],
// k = the warp's index among the warps that touch the strip, k < 16, kBalMaxSlots), and the
// warp whose tiles complete the strip (counters[S] counts them) adds the slots in the order of k,
// the same order every call, so the same bits every call. It writes y and zeroes its slots and
// the counter (acc32 and counters are zero between calls, as for split-K in mma_kernel.cuh).
#pragma once
#include "mma_kernel.cuh"

namespace spqr_cu {
namespace {

constexpr uint32_t kBalMaxSlots = 16; // acc32 holds rows x SPQR_MAX_BATCH floats

// First tile record of balanced warp i: ⌊T·i/W⌋.
__host__ __device__ __forceinline__ uint64_t bal_first_tile(uint64_t T, uint32_t W, uint32_t i) {
    return T * i / W;
}
// The balanced warp whose tiles include record X: the largest i with ⌊T·i/W⌋ <= X, i.e.
// ⌊((X + 1)·W − 1) / T⌋.
__host__ __device__ __forceinline__ uint32_t bal_warp_of(uint64_t T, uint32_t W, uint64_t X) {
    return (uint32_t)(((X + 1) * W - 1) / T);
}

// old + v at *a, device scope, acquire and release (atom.acq_rel.gpu).
__device__ __forceinline__ uint32_t atomic_add_acq_rel(uint32_t *a, uint32_t v) {
    uint32_t old;
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], %2;\n"
                 : "=r"(old)
                 : "l"(a), "r"(v)
                 : "memory");
    return old;
}

// The strip's last warp: row 16S + lane (lanes 0-15) is the sum of its slots in the order of k,
// all loaded at once; the slots are zeroed for the next call. Not inlined: its 16 loads would
// otherwise raise the tile loop's register pressure (spills).
template <typename Act>
__device__ __noinline__ void bal_strip_finish(const Params &p, uint32_t S, uint32_t i0, uint64_t T,
                                              uint32_t W, float *__restrict__ acc32,
                                              Act *__restrict__ y, float *__restrict__ y32) {
    const uint32_t lane = threadIdx.x & 31, row = 16 * S + lane;
    if (lane >= 16 || row >= p.rows) return;
    const uint32_t ns = bal_warp_of(T, W, (uint64_t)(S + 1) * p.mtiles - 1) - i0 + 1;
    float v[kBalMaxSlots];
#pragma unroll
    for (uint32_t j = 0; j < kBalMaxSlots; j++)
        v[j] = j < ns ? __ldcg(acc32 + (uint64_t)j * p.rows + row) : 0.f;
    float sum = 0.f;
#pragma unroll
    for (uint32_t j = 0; j < kBalMaxSlots; j++) sum += v[j];
#pragma unroll
    for (uint32_t j = 0; j < kBalMaxSlots; j++)
        if (j < ns) __stcg(acc32 + (uint64_t)j * p.rows + row, 0.f);
    if (y32)
        y32[row] = sum;
    else
        y[row] = from_f<Act>(sum);
}

// Batch 1 (nb = 1, NH = 1): OS = 0 (no fused outliers) or 8 (outlier rounds, after each
// segment's tiles, a segment taking its share of the strip's rounds in proportion to its tiles).
// Four blocks per SM (64 registers): the strip grid's OS = 0 kernel takes 62 at its bound of three
// blocks, this one 70-73 there.
template <int WB, int SK, typename Act, int OS>
__global__ void __launch_bounds__(kMmaThreads, 4)
    mma_kernel_bal(Params p, const Act *__restrict__ xh, uint32_t xstride, Act *__restrict__ y,
                   float *__restrict__ y32, float *__restrict__ acc32,
                   uint32_t *__restrict__ counters, uint32_t magic, uint32_t W) {
    static_assert(OS == 0 || OS == 8, "batch 1 kernels without outlier state or with rounds");
    const uint32_t lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint32_t i = blockIdx.x * kMmaWarps + (threadIdx.x >> 5);
    const uint64_t T = (uint64_t)p.strips * p.mtiles;
    uint64_t r0 = bal_first_tile(T, W, i);
    const uint64_t r1 = bal_first_tile(T, W, i + 1);
    while (r0 < r1) { // (the same in every lane of the warp)
        const uint32_t S = (uint32_t)(r0 / p.mtiles), a = (uint32_t)(r0 - (uint64_t)S * p.mtiles);
        const uint32_t n = (uint32_t)min((uint64_t)(p.mtiles - a), r1 - r0);
        float acc[1][4] = {{0.f, 0.f, 0.f, 0.f}};
        OutlierState<OS> os;
        if constexpr (OS == 8) {
            // the strip's R rounds [k0, k0 + R): this segment's are ⌊R·a/M⌋ .. ⌊R·(a + n)/M⌋
            os.k = os.end = 0;
            if (p.fuse_outliers) {
                const uint32_t k0 = __ldg(p.rptr + S), R = __ldg(p.rptr + S + 1) - k0;
                os.k = k0 + (uint32_t)((uint64_t)R * a / p.mtiles);
                os.end = k0 + (uint32_t)((uint64_t)R * (a + n) / p.mtiles);
                if (SPQR_MMA_ROUND_AT != 2 && os.k < os.end) // (rounds in the loop: v6w's build)
                    os.d = __ldg(p.rounds + (uint64_t)os.k * 32 + lane);
            }
        }
#if SPQR_MMA_BAL_PROBE_X // timing probe (wrong results): the tile loop's x from columns (a mod
                         // 64)..
        const Act *xt_probe = xh - 64 * (a - (a & 63));
#else
        const Act *xt_probe = xh;
#endif
        mma_strip_tiles<WB, 1, SK, Act, OS>(p, xt_probe, nullptr, xstride, 1, S, a, n, 1,
                                            (uint32_t)(r1 - r0), magic, 1, os, acc, [] {});
        if constexpr (OS == 8 && SPQR_MMA_ROUND_AT == 2)
            outlier_rounds_all<1, OS, Act>(p, xh, nullptr, xstride, 1, 1, os, acc);
        else if constexpr (OS == 8) // (v6w's build: the rounds left after the loop, if any)
            while (os.entries_left())
                outlier_step<1, OS, Act>(p, xh, nullptr, xstride, 1, t, 1, os, acc);
#if SPQR_MMA_BAL_PROBE_EPI // timing probes (wrong results): no partial sums written, no counters
        // (1: the code below left out; 2: compiled, skipped at run time)
        if (SPQR_MMA_BAL_PROBE_EPI == 1 || p.rows != 0xffffffffu) {
            if (acc[0][0] + acc[0][1] + acc[0][2] + acc[0][3] == 1.2345e-30f) acc32[lane] = 1.f;
            r0 += n;
            continue;
        }
#endif
        // C fragment at batch 1: row r's sum in column r mod 8 (OS = 8 adds row r's outliers
        // there; OS = 0 has x in every column), i.e. rows g and g + 8 in lane (g, t = g / 2)'s
        // acc[0][g mod 2] and acc[0][2 + g mod 2]
        const uint32_t i0 = bal_warp_of(T, W, (uint64_t)S * p.mtiles), k = i - i0;
        if (t == g >> 1) {
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const uint32_t row = 16 * S + g + 8 * h;
                if (row < p.rows)
                    __stcg(acc32 + (uint64_t)k * p.rows + row, acc[0][2 * h + (g & 1)]);
            }
        }
        // the slots before the count: the lanes' stores are ordered before lane 0's release by
        // the warp barrier; the acquire orders the last warp's slot loads after every count (no
        // __threadfence: with fences and the slots read one by one this tail cost 7-13 µs a call)
        __syncwarp();
        uint32_t done = 0;
        if (lane == 0) done = atomic_add_acq_rel(counters + S, n) + n;
        done = __shfl_sync(0xffffffffu, done, 0);
        __syncwarp();
        if (done == p.mtiles) { // the strip's last segment: its slots, all loaded, in order of k
            bal_strip_finish<Act>(p, S, i0, T, W, acc32, y, y32);
            if (lane == 0) counters[S] = 0;
        }
        r0 += n;
    }
}

} // namespace
} // namespace spqr_cu
