// launch_mma.cuh — the launcher of the tensor-core kernel (mma_kernel.cuh) for one bit width: x
// permute, the batch 5-16 outlier pass, grid geometry (warps per strip, split-K, wave fill) and
// the choice of kernel variant (outlier state OS, statistics kind SK, vectors NH).
#pragma once
#include "mma_kernel.cuh"

namespace spqr_cu {
namespace {

// Warps per strip (kw, each over its own columns) grow until this many warps per SM exist (split-K
// has its own rule, SPQR_MMA_GEOM below). 48 (was 32, bench/NOTES.md v6q):
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
// SPQR_MMA_OUTL_TAIL 1: at batch 9-16 the same sums are made inside the tensor-core kernel, after
// each warp's tile loop (outlier_rows_tail), instead of by a pass the kernel waits for, where a
// warp has at most two of its strip's rows to do (kw·ksplit >= 8): w3 1 % batch 16 8192x28672
// 107.5 → 100.2 µs, 4096x11008 29.1 → 26.4, 8192² 37.9 → 35.3 (37.8 → 37.7 in a later call);
// with four rows a warp (28672x8192, kw = 4) 105.9 → 112.8, so the pass there (bench/NOTES.md
// v6z). 0: the pass always (a measurement build). Batch 5-8 keep the pass.
#ifndef SPQR_MMA_OUTL_TAIL
#define SPQR_MMA_OUTL_TAIL 1
#endif
#ifndef SPQR_MMA_TAIL_MIN_WARPS // fewest warps per strip (kw·ksplit) that take the tail
#define SPQR_MMA_TAIL_MIN_WARPS 8
#endif
// Batch 5-8: the pass from this many outliers, the matmul then running the OS = 0 kernel (bench/
// NOTES.md v6r; same call, w3 1 % batch 8, µs in-kernel / pass: 28672x8192 (2.35 M outliers)
// 104.7 / 87.4, 8192x28672 135.9 / 101.2; 8192² (671 k) 36.5 / 46.3, 11008x4096 24.6 / 31.3).
#ifndef SPQR_MMA_OUTL_ROWS_MID_NNZ
#define SPQR_MMA_OUTL_ROWS_MID_NNZ (1u << 21)
#endif
// Batch 1 with fused outliers (s-bit statistics): the OS = 1 kernels, whose lanes walk
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
// Geometry by the kernel's measured residency (bench/NOTES.md v6s): 1 counts the blocks the
// occupancy calculator finds resident (ptxas gives the variants 56-80 registers, so 3 or 4 blocks
// of 8 warps), splits a strip's columns over blocks only while the grid would fill less than
// SPQR_MMA_KSPLIT_FILL tenths of one wave, and halves kw for wave fill only for warps of fewer
// than 2·SPQR_MMA_MIN_TILES macro tiles. 0: v6r's rule (counts mma_min_blocks; splits below
// SPQR_MMA_WARPS_PER_SM warps per SM; a measurement build).
#ifndef SPQR_MMA_GEOM
#define SPQR_MMA_GEOM 1
#endif
#ifndef SPQR_MMA_KSPLIT_FILL
#define SPQR_MMA_KSPLIT_FILL 9
#endif
#ifndef SPQR_MMA_WAVE_FILL
#define SPQR_MMA_WAVE_FILL 20 // tenths of a wave: grids of 1 wave to this many get half the warps
#endif
#ifndef SPQR_MMA_MIN_TILES
#define SPQR_MMA_MIN_TILES 16 // fewest macro tiles per warp before blocks split a strip
#endif
// SPQR_PDL_PREP 1: the x permute (prep_xh_kernel) is launched as a programmatic dependent of
// whatever ran before it on the stream (it waits with griddepcontrol.wait before it reads x or
// writes xh), so its launch, and the matmul's, are made while that kernel drains. Same call,
// H100, 50 calls back to back, batch 1 w3 1 % µs plain / PDL: 4096² 9.6 / 8.0, 8192² 19.9 /
// 18.3, 28672x8192 51.5 / 50.1, 8192x28672 53.0 / 51.3 (bench/NOTES.md v7a). Letting the next
// call launch earlier still (the matmul's blocks trigger at their start) placed that call's
// blocks on whichever SMs were free: 8192² once took 54.2 µs. 0: a plain launch (measurement).
#ifndef SPQR_PDL_PREP
#define SPQR_PDL_PREP 1
#endif
// Whether a call's outliers take their own pass (outlier_rows_kernel) before the matmul.
static bool mma_outlier_pass(const spqr_gpu_tensor *t, int nb) {
    return SPQR_MMA_OUTL_ROWS && t->p.fuse_outliers && !mma_rounds(t, nb) &&
           ((nb > SPQR_MMA_OUTL_ROWS_MIN_BATCH && t->nnz >= SPQR_MMA_OUTL_ROWS_MIN_NNZ) ||
            (nb > 4 && t->nnz >= SPQR_MMA_OUTL_ROWS_MID_NNZ));
}
// Index of a kernel variant in spqr_gpu_tensor::mma_blocks (the tensor fixes WB and SK).
template <int NH, typename Act, int OS> constexpr int mma_variant() {
    return (std::is_same<Act, __half>::value ? 0 : 14) + (NH - 1) * 7 +
           (OS == 0   ? 0
            : OS == 1 ? 1
            : OS == 2 ? 2
            : OS == 4 ? 3
            : OS == 8 ? 4
            : OS == 9 ? 5
                      : 6);
}
// Blocks of a kernel variant resident per SM, from the occupancy calculator (registers and
// shared memory as compiled), asked once per tensor and variant; mma_min_blocks if it fails.
template <int NH, int OS, int SK, typename K>
static uint32_t mma_resident_blocks(spqr_gpu_tensor *t, K kern, int variant) {
    if (!t->mma_blocks[variant]) {
        int n = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kern, kMmaThreads, 0) !=
                cudaSuccess ||
            n < 1) {
            (void)cudaGetLastError();
            n = mma_min_blocks<NH, OS, SK>();
        }
        t->mma_blocks[variant] = (uint8_t)(n < 255 ? n : 255);
    }
    return t->mma_blocks[variant];
}
// v6: x permuted once into the tensor's scratch (activation type), then the tensor-core kernel.
// Geometry (bench/NOTES.md v6, v6n, v6s): kw warps per strip, the smallest of 1, 2, 4, 8 giving
// SPQR_MMA_WARPS_PER_SM warps per SM; if 8 leave the grid under 0.9 of a wave of resident warps,
// ksplit blocks per strip (while each warp keeps >= SPQR_MMA_MIN_TILES macro tiles: short warps
// spend their time filling the pipeline); then half that kw where the grid would be 1 to
// SPQR_MMA_WAVE_FILL / 10 waves and its warps have fewer than 32 tiles.
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
    // batch 2-8 rounds (OS = 9, NH = 1) gather from xt where mma_layout.cuh mma_rounds_xt, paired
    static_assert(SPQR_MMA_XT_PAIRED || !SPQR_MMA_ROUNDS_XT, "round_b<16> reads xt paired");
    const bool xt_nh1 = OS == 9 && NH == 1 && mma_rounds_xt(t, nb);
    Act *xt = (nb > 8 && p.fuse_outliers && t->nnz) || outl_pass || xt_nh1
                  ? xh + (uint64_t)SPQR_MAX_BATCH * stride
                  : nullptr;
    // the batch 9-16 rounds read xt paired (outlier_round_n2)
    const int xt_paired = SPQR_MMA_XT_PAIRED && OS >= 9 && (NH == 2 || xt_nh1) && mma_rounds(t, nb);
    const auto kern = mma_kernel<WB, NH, SK, Act, OS, false>;
    const uint64_t resident =
        (uint64_t)t->sms * kMmaWarps *
        (SPQR_MMA_RESIDENT_FIXED ? SPQR_MMA_RESIDENT_FIXED
         : SPQR_MMA_GEOM ? mma_resident_blocks<NH, OS, SK>(t, kern, mma_variant<NH, Act, OS>())
                         : mma_min_blocks<NH, OS, SK>());
    const uint64_t target = (uint64_t)t->sms * SPQR_MMA_WARPS_PER_SM;
    int kwl = 0;
    while (kwl < 3 && ((uint64_t)p.strips << kwl) < target && (2u << kwl) <= p.mtiles) kwl++;
    // split-K: v6r split while the grid had fewer than SPQR_MMA_WARPS_PER_SM warps per SM, which
    // split 8192x28672 (4096 warps, 0.97 of a wave of the 4-block kernels) in two: batch 1 w4 61.4
    // µs split, 55.8 not (same call, H100); now only grids under 0.9 of a wave are split
    uint32_t ksplit = 1;
    if (kwl == 3)
        while ((SPQR_MMA_GEOM
                    ? 10 * (uint64_t)p.strips * 8 * ksplit < SPQR_MMA_KSPLIT_FILL * resident
                    : (uint64_t)p.strips * 8 * ksplit < target) &&
               p.mtiles / (8 * (ksplit + 1)) >= SPQR_MMA_MIN_TILES)
            ksplit++;
    // wave fill (bench/NOTES.md v6n): a grid of 1 to 2 waves of resident warps ends with a
    // partial last wave, so half the warps per strip (one wave or less, twice the tiles each) is
    // faster there (batch 1 8192² w3 1 %: 30.1 → 27.4 µs, 11008x4096 22.2 → 20.6; batch 16 8192²
    // 46.8 → 44.5); 2.26 waves → 1.13 is slower (28672 rows: 75.6 → 91.2 µs), so not past 2; and
    // for warps of 32 tiles or more it is slower at 1.7 waves as well (28672x8192, 4-block
    // kernels, w4 65.3 vs 58.4 µs, w3 1 % 69.8 vs 63.2): the tail costs less than the latency that
    // half the warps fail to hide (v6s)
    const uint64_t warps = (uint64_t)p.strips << kwl;
    if (ksplit == 1 && kwl > 0 && warps > resident && 10 * warps < SPQR_MMA_WAVE_FILL * resident &&
        (!SPQR_MMA_GEOM || (p.mtiles >> kwl) < 2 * SPQR_MMA_MIN_TILES))
        kwl--;
    // Batch 1 launched from the host: one kernel. Where the tensor's columns are few (stored
    // stride <= SPQR_MMA_XSMEM_MAXCOLS) and its grid is one wave, the matmul permutes x itself
    // into each block's shared memory (mma_kernel.cuh, xraw) instead of prep_xh_kernel before it:
    // a launch less, which from the host costs more than the gather (H100, µs host-launched, two
    // kernels → one: w3 1 % 512² 7.4-9.0 → 3.5-4.7, 2048² 9.0 → 5.5, w4 512² 7.5-9.3 → 4.8-5.2;
    // the real 27M model's 56 linears summed 345-488 → 251-262). Captured into a CUDA graph,
    // launches cost little and the permute overlapping the matmul's start (PDL) is faster (w3 1 %
    // 512² 2.9 against 3.3, the 56 linears 170 against 190), so a capturing stream keeps two
    // kernels; so do wider tensors, whose blocks would each gather all of x (4096² 8.9 → 9.5,
    // 14336x4096 17.7 → 19.7 at 4096 columns) and larger ones, whose time the gather's latency adds
    // to (w3 1 % 8192x2048 8.1 → 9.1; 5632x2048 7.1 → 8.0 in one call, 8.6 → 7.9 in another). Only
    // the batch-1 kernels (OS 0, 1, 8) have such a variant (XS). bench/NOTES.md v7i.
    constexpr bool kXsVariant = SPQR_MMA_XSMEM && NH == 1 && (OS == 0 || OS == 1 || OS == 8);
    const uint32_t blocks = (p.strips + (kMmaWarps >> kwl) - 1) / (kMmaWarps >> kwl) * ksplit;
    bool xsmem = kXsVariant && nb == 1 && !xt && stride <= SPQR_MMA_XSMEM_MAXCOLS &&
                 (uint64_t)p.rows * stride <= SPQR_MMA_XSMEM_MAXWEIGHTS &&
                 (uint64_t)blocks * kMmaWarps <= resident;
    bool capturing = false;
    if ((xsmem || SPQR_MMA_GRAPH_TRIGGER) && s) { // (the legacy stream cannot be capturing)
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        capturing =
            cudaStreamIsCapturing(s, &cs) == cudaSuccess && cs != cudaStreamCaptureStatusNone;
        xsmem = xsmem && !capturing;
    }
    if (!xsmem) {
        const cudaError_t pe =
            launch_dependent(dim3((uint32_t)pb), dim3(256), 0, s, SPQR_PDL_PREP,
                             prep_xh_kernel<Act>, p, x, nb, xh, stride, xt, xt_paired);
        if (pe != cudaSuccess) return pe;
    }
    // batch 9-16, many outliers: their own pass into o32 (t->ybuf, the cuSPARSE path's scratch),
    // added by the tensor-core kernel's epilogue (mma_kernel.cuh, outlier_rows_kernel)
    Params pk = p;
    const float *o32 = nullptr;
    // batch 9-16 with at most two rows per warp (kw·ksplit >= 8): in the kernel, after each
    // warp's tiles (SPQR_MMA_OUTL_TAIL)
    if (outl_pass && NH == 2 && SPQR_MMA_OUTL_TAIL && (ksplit << kwl) >= SPQR_MMA_TAIL_MIN_WARPS) {
        pk.fuse_outliers = 0, pk.outl_tail = 1;
    } else if (outl_pass) {
        const cudaError_t oe =
            launch_dependent(dim3((p.rows + 7) / 8), dim3(256), 0, s, true,
                             outlier_rows_kernel<Act>, p, (const Act *)xt, nb, t->ybuf);
        if (oe != cudaSuccess) return oe;
        pk.fuse_outliers = 0, o32 = t->ybuf;
    }
    // captured into a graph, a one-wave grid lets the next kernels launch early where they find
    // no room beside it (it fills 90 % of the resident warps) or it is small (at most 2^22
    // weights): where the next call's blocks could sit beside a long call, they slowed it (H100
    // graphs, w3 1 %: 4096x11008 13.1 → 15.2 µs, 11008x4096 13.2 → 14.9; bench/NOTES.md v7p)
    const uint64_t warps_used = (uint64_t)blocks * kMmaWarps;
    if (SPQR_MMA_GRAPH_TRIGGER && capturing && warps_used <= resident &&
        (10 * warps_used >= 9 * resident || (uint64_t)p.rows * stride <= SPQR_MMA_XSMEM_MAXWEIGHTS))
        pk.trigger_early = 1;
    const uint32_t sets = (uint32_t)kMmaWarps >> kwl;
    auto run = kern;
    if constexpr (kXsVariant)
        if (xsmem) run = mma_kernel<WB, NH, SK, Act, OS, true>;
    return launch_dependent(dim3((p.strips + sets - 1) / sets * ksplit), dim3(kMmaThreads),
                            xsmem ? stride * sizeof(Act) : 0, s, true, run, pk, (const Act *)xh,
                            (const Act *)xt, stride, y, y32, nb, kwl, ksplit, t->acc32, t->counters,
                            kMagic2, o32, xsmem ? x : nullptr);
}
// The kernel variants of one statistics kind SK; sbit: the kinds whose tensors may have outlier
// rounds and run the OS = 0, 1 kernels (s-bit statistics: SK 0, 1, 3, 4; β1 < 16 since v7c).
// fp16 statistics (SK 2) take the CSR walks, to bound the kernel count.
template <int WB, int SK, typename Act>
static cudaError_t launch_mma_sk(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                                 cudaStream_t s) {
    constexpr bool sbit = SK != 2;
    if constexpr (sbit) {
        // fused outliers in rounds (only these tensors have them): the OS = 8 kernels for batch
        // 1, OS = 9 for batch 2-16 (NH = 2 from batch 9), OS = 10 for batch 9-16 past 8192
        // columns (SK = 0 only)
        if constexpr (SPQR_MMA_ROUNDS != 0)
            if (t->p.fuse_outliers && mma_rounds(t, nb)) {
                if constexpr (SK == 0)
                    if (mma_rounds16_loop(t, nb))
                        return launch_mma_t<WB, 2, SK, Act, 10>(t, x, y, y32, nb, s);
                return nb == 1   ? launch_mma_t<WB, 1, SK, Act, 8>(t, x, y, y32, nb, s)
                       : nb <= 8 ? launch_mma_t<WB, 1, SK, Act, 9>(t, x, y, y32, nb, s)
                                 : launch_mma_t<WB, 2, SK, Act, 9>(t, x, y, y32, nb, s);
            }
        // no fused outliers (none in the tensor, or the cuSPARSE path or their own pass adds
        // them): kernels without the outlier state (OS = 0)
        if (SPQR_MMA_NOOUTL && nb <= 8 &&
            (t->nnz == 0 || !t->p.fuse_outliers || mma_outlier_pass(t, nb)))
            return launch_mma_t<WB, 1, SK, Act, 0>(t, x, y, y32, nb, s);
        // batch 1 with fused outliers: the OS = 1 kernels (one row per lane)
        if constexpr (SPQR_MMA_OS1 != 0)
            if (nb == 1 && t->nnz && t->p.fuse_outliers)
                return launch_mma_t<WB, 1, SK, Act, 1>(t, x, y, y32, nb, s);
    }
    // batch 3-4 with fused outliers: kernels whose four lanes of a row split the outliers for all
    // four vectors (SPQR_MMA_SPREAD4; bench/NOTES.md v6n)
    if (SPQR_MMA_SPREAD4 && nb >= 3 && nb <= 4 && t->nnz && t->p.fuse_outliers)
        return launch_mma_t<WB, 1, SK, Act, 4>(t, x, y, y32, nb, s);
    if (nb <= 8) return launch_mma_t<WB, 1, SK, Act>(t, x, y, y32, nb, s);
    return launch_mma_t<WB, 2, SK, Act>(t, x, y, y32, nb, s);
}
// The tensor's kernels by its statistics kind (mma_layout.cuh mma_stat_kind).
template <int WB, typename Act>
static cudaError_t launch_mma_w(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                                cudaStream_t s) {
    const int sk = mma_stat_kind(t->p);
    if constexpr (WB <= 4) { // (β2 = 8 is tiled only for w <= 4)
        if (sk == 4) return launch_mma_sk<WB, 4, Act>(t, x, y, y32, nb, s);
        if (sk == 3) return launch_mma_sk<WB, 3, Act>(t, x, y, y32, nb, s);
    }
    if (sk == 2) return launch_mma_sk<WB, 2, Act>(t, x, y, y32, nb, s);
    if (sk == 1 || sk == 4) return launch_mma_sk<WB, 1, Act>(t, x, y, y32, nb, s);
    return launch_mma_sk<WB, 0, Act>(t, x, y, y32, nb, s);
}

} // namespace
} // namespace spqr_cu
