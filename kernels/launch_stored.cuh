// launch_stored.cuh — launchers of the stored-layout kernels (stored_kernels.cuh v3,
// stream_kernel.cuh v5) for one bit width: grid geometry, shared-memory tiles, batch buckets.
#pragma once
#include "stored_kernels.cuh"
#include "stream_kernel.cuh"

namespace spqr_cu {
namespace {

// SPQR_PDL_STORED 1: these kernels are launched as programmatic dependents of the kernel before
// them on the stream, as the tensor-core path's (launch_mma.cuh, SPQR_PDL_PREP): each waits
// (pdl_wait) before it touches x, its scratch or y, and its launch is made while that kernel
// drains (bench/NOTES.md v7b). 0: plain launches (a measurement build).
#ifndef SPQR_PDL_STORED
#define SPQR_PDL_STORED 1
#endif
#ifndef SPQR_STORED_SUB8 // 0: β2 = 8 takes the generic kernel (a measurement build)
#define SPQR_STORED_SUB8 1
#endif

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
    return launch_dependent(dim3(blocks), dim3(kThreads), smem, s, SPQR_PDL_STORED, kern, t->p, x,
                            y, y32, nb, tile);
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
    float *xs = t->xbuf + (uint64_t)SPQR_MAX_BATCH * stride; // chunk part sums after xp
    const uint64_t total = (uint64_t)BATCH * stride;
    uint64_t pb = (total + 255) / 256;
    if (pb > (uint64_t)t->sms * 8) pb = (uint64_t)t->sms * 8;
    const cudaError_t pe =
        launch_dependent(dim3((uint32_t)pb), dim3(256), 0, s, SPQR_PDL_STORED, prep_x_kernel<Act>,
                         p, x, nb, BATCH, t->xbuf, stride, xs);
    if (pe != cudaSuccess) return pe;
    int kwl = 0;
    while (kwl < 3 && p.chunks > (32u * SPQR_STREAM_LANE_CHUNKS << kwl)) kwl++;
    const uint32_t rows_per_block = (uint32_t)(kStreamWarps >> kwl) * R;
    const uint32_t blocks = (p.rows + rows_per_block - 1) / rows_per_block;
    return launch_dependent(dim3(blocks), dim3(kStreamThreads), 0, s, SPQR_PDL_STORED,
                            stream_kernel<WB, SUB, BATCH, R, Act>, p, (const float *)t->xbuf,
                            stride, (const float *)xs, y, y32, nb, kwl);
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

// β2 = 8 (runs of 8 columns): the v3 kernel at every batch (the stream kernel's sums of x come
// in runs of 16). The generic kernel took these before; same call, H100, w3 1 %, µs generic / v3:
// batch 1 8192² 316.5 / 76.9, 28672x8192 1074 / 273; batch 16 8192² 1224 / 439 (bench/NOTES.md
// v7b). Still far from the tensor-core kernels, which need β2 >= 16.
// SPQR_STORED_SUB8_R: rows per warp at β2 = 8 (0: launch_one's rule; 1 slower everywhere, 2
// mixed: batch 16 faster, batch 4 28672x8192 slower; measurement builds)
#ifndef SPQR_STORED_SUB8_R
#define SPQR_STORED_SUB8_R 0
#endif
template <int WB, int BATCH, typename Act>
static cudaError_t launch_sub8_b(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                                 cudaStream_t s) {
    if constexpr (SPQR_STORED_SUB8_R > 0)
        return launch_r<WB, 8, BATCH, SPQR_STORED_SUB8_R, Act>(t, x, y, y32, nb, s);
    return launch_one<WB, 8, BATCH, Act>(t, x, y, y32, nb, s);
}
// SPQR_STORED_SUB8_STREAM 1: batch 1-4 of s-bit statistics take the stream kernel, its sums of x
// in quarter chunks (prep_x_kernel); fp16 statistics keep v3 (ChunkStats holds two runs' fp16).
// Same call, H100, w3 1 %, µs v3 / stream: batch 1 8192² 76.9 / 51.1, 28672x8192 272.1 / 151.3
// (1.07x cuBLAS); batch 4 8192² 131.8 / 74.6, 8192x28672 493.3 / 308.9 (bench/NOTES.md v7b).
#ifndef SPQR_STORED_SUB8_STREAM
#define SPQR_STORED_SUB8_STREAM 1
#endif
template <int WB, typename Act>
static cudaError_t launch_sub8(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                               cudaStream_t s) {
    if (SPQR_STORED_SUB8_STREAM && t->p.sbits != 16 && nb <= 4) {
        if (nb == 1) return launch_stream<WB, 8, 1, Act>(t, x, y, y32, nb, s);
        if (nb == 2) return launch_stream<WB, 8, 2, Act>(t, x, y, y32, nb, s);
        return launch_stream<WB, 8, 4, Act>(t, x, y, y32, nb, s);
    }
    if (nb == 1) return launch_sub8_b<WB, 1, Act>(t, x, y, y32, nb, s);
    if (nb == 2) return launch_sub8_b<WB, 2, Act>(t, x, y, y32, nb, s);
    if (nb <= 4) return launch_sub8_b<WB, 4, Act>(t, x, y, y32, nb, s);
    if (nb <= 8) return launch_sub8_b<WB, 8, Act>(t, x, y, y32, nb, s);
    return launch_sub8_b<WB, 16, Act>(t, x, y, y32, nb, s);
}

template <int WB, typename Act>
static cudaError_t launch_sub(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                              cudaStream_t s) {
    switch (t->p.sub) {
    case 8:
        return SPQR_STORED_SUB8 ? launch_sub8<WB, Act>(t, x, y, y32, nb, s)
                                : launch_generic_any<Act>(t, x, y, y32, nb, s);
    case 16:
        return launch_batch<WB, 16, Act>(t, x, y, y32, nb, s);
    case 32:
        return launch_batch<WB, 32, Act>(t, x, y, y32, nb, s);
    default:
        return launch_generic_any<Act>(t, x, y, y32, nb, s); // matmul_generic.cu
    }
}

} // namespace
} // namespace spqr_cu
