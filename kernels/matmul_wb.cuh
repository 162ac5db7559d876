// matmul_wb.cuh — the matmul launcher of one bit width, SPQR_WB (defined by the including
// matmul_wN.cu): the tensor-core kernel for tiled tensors, else the stored-layout kernels (fast
// paths for w 2..4), else the generic kernel. One translation unit per width, so the ~40 kernel
// variants of each width compile in parallel.
#include "launch_mma.cuh"
#include "launch_stored.cuh"

#ifndef SPQR_WB
#error "matmul_wb.cuh: define SPQR_WB (2..8) before including it"
#endif

namespace spqr_cu {

template <int WB, typename Act>
cudaError_t launch_wbits(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                         cudaStream_t s) {
    if (t->p.tcodes) return launch_mma_w<WB, Act>(t, x, y, y32, nb, s);
    if constexpr (WB <= 4) return launch_sub<WB, Act>(t, x, y, y32, nb, s);
    return launch_generic_any<Act>(t, x, y, y32, nb, s);
}

template cudaError_t launch_wbits<SPQR_WB, __half>(spqr_gpu_tensor *, const __half *, __half *,
                                                   float *, int, cudaStream_t);
template cudaError_t launch_wbits<SPQR_WB, __nv_bfloat16>(spqr_gpu_tensor *, const __nv_bfloat16 *,
                                                          __nv_bfloat16 *, float *, int,
                                                          cudaStream_t);

} // namespace spqr_cu
