// matmul_generic.cu — the generic kernel's launcher (stored_kernels.cuh): any w 2..8 and any β,
// for tensors in the stored layout that no fast path takes.
#include "launch_stored.cuh"

namespace spqr_cu {
namespace {

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

} // namespace

template <typename Act>
cudaError_t launch_generic_any(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                               cudaStream_t s) {
    if (nb == 1) return launch_generic<1, Act>(t, x, y, y32, nb, s);
    if (nb == 2) return launch_generic<2, Act>(t, x, y, y32, nb, s);
    if (nb <= 4) return launch_generic<4, Act>(t, x, y, y32, nb, s);
    if (nb <= 8) return launch_generic<8, Act>(t, x, y, y32, nb, s);
    return launch_generic<16, Act>(t, x, y, y32, nb, s);
}

template cudaError_t launch_generic_any<__half>(spqr_gpu_tensor *, const __half *, __half *,
                                                float *, int, cudaStream_t);
template cudaError_t launch_generic_any<__nv_bfloat16>(spqr_gpu_tensor *, const __nv_bfloat16 *,
                                                       __nv_bfloat16 *, float *, int, cudaStream_t);
} // namespace spqr_cu
