// gpu_common.cuh — what every CUDA translation unit of libspqr shares: the tensor's parameters as
// the kernels see them (Params), the device-side tensor (spqr_gpu_tensor), the bit and number
// helpers of spec §7.2, and the per-bit-width launchers that spqr_kernels.cu dispatches to.
//
// Files (kernels/): spqr_kernels.cu — the public GPU API (upload, matmul dispatch, the cuSPARSE
// path, dequantize); matmul_w2.cu .. matmul_w8.cu — one bit width's matmul kernels each
// (matmul_wb.cuh), so that a build compiles them in parallel; matmul_generic.cu — the any-β
// fallback. Kernels: stored_kernels.cuh (v3 and generic, stored layout), stream_kernel.cuh (v5),
// mma_kernel.cuh (v6, tensor cores; tiled layout in mma_layout.cuh, built by mma_upload.cuh).
// Their launchers (grid geometry, variants): launch_stored.cuh (v3, v5), launch_mma.cuh (v6).
//
// Dispatch: tensors with β2 >= 16 whose statistics suit an fp16 decode are re-tiled at upload and
// run the tensor-core kernel (v6, mma_kernel.cuh) for every batch; the others keep the stored
// layout and run the fp32 kernels: v5 (stream_kernel.cuh) for batch 1..4 and v3 for 8..16 when
// β2 is 16 or 32 (w 2..4), the generic kernel otherwise.
//
// Kernels live in an anonymous namespace inside spqr_cu in each header: every translation unit
// compiles its own copies of the ones it launches (no relocatable device code).
#pragma once
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

namespace spqr_cu {

struct Params {
    const uint32_t *codes, *scale, *zero, *rowptr, *perm;
    const uint16_t *stat2, *scale16, *zero16;
    const float *delta;
    const void *colidx;
    const uint32_t *tcodes; // tile records (mma_kernel.cuh); null: stored layout only
    const uint4 *rounds;    // outlier rounds (mma_kernel.cuh, OS = 8); null: none
    const uint32_t *rptr;   // first round of strip S at rptr[S] (strips + 1 entries)
    uint32_t rows, cols, wbits, sbits, beta1, beta2, groups;
    uint32_t code_words, stat_words, chunks, sub, log2beta2, log2beta1;
    uint32_t strips, mtiles, tstat_words; // tiled layout: 16-row strips, 64-column macro tiles
    uint32_t rec_words, rec_s2, tgpt; // words per tile record, its stat2 offset (0: none), groups
    // s-bit statistics (sbits <= 8): an entry's scale field mask, its zero field mask in place
    // (mask << sbits) and 2^-sbits; kernel operands from the constant bank (mma_kernel.cuh)
    uint32_t smask, zmask;
    float zstep;
    int wide, has_perm, fuse_outliers;
    int outl_tail;     // per launch: the tensor-core kernel adds the CSR outliers after its tiles
    int trigger_early; // per launch: the kernel lets its dependents launch after its wait
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

// Σ of v over the warp's 32 lanes, in every lane (butterfly of shuffles).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
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

} // namespace spqr_cu

struct spqr_gpu_tensor {
    spqr_cu::Params p;
    void *sec[SPQR_SEC_COUNT];
    uint64_t size[SPQR_SEC_COUNT];
    float *delta; // fp32 outlier corrections (null while rounds serve every batch: upload, sp_init)
    uint32_t *tcodes; // tile records for the tensor-core kernel (null: stored layout)
    uint64_t tcodes_size;
    uint4 *rounds;      // outlier rounds for batch 1-8 (make_rounds; null: the CSR walk)
    uint32_t *rptr;     // their per-strip offsets
    uint64_t nrounds;   // rounds in all (512 bytes each)
    float *acc32;       // tensor-core kernel: split-K partial sums, rows x 16, zero between calls
    uint32_t *counters; // tensor-core kernel: blocks arrived per strip, zero between calls
    int *colidx32;      // cuSPARSE path (int32 column indices)
    float *xbuf, *ybuf; // scratch: permuted x; fp32 y of the cuSPARSE path, or o32 of the
                        // tensor-core path's batch 9-16 outliers (SPQR_MAX_BATCH wide)
    uint64_t nnz;
    int sms;
    size_t smem_optin;
    spqr_outlier_path path;
    cusparseHandle_t sp;    // cuSPARSE path: the handle (device pointer mode), its scalars and
    float *sp_one;          // workspace, made once so that a call does nothing a CUDA graph could
    void *sp_ws;            // not replay (no host scalars read later, no per-call allocation)
    uint8_t mma_blocks[28]; // tensor-core kernel variants' resident blocks per SM (0: not asked)
    size_t sp_ws_size;      // bytes of sp_ws
    uint64_t xbuf_bytes;    // bytes of xbuf this tensor needs
    uint64_t dev_bytes;     // device bytes held now (dev_alloc / dev_release, spqr_kernels.cu)
    bool scratch_shared;    // xbuf, ybuf, acc32 belong to a model's spqr_gpu_scratch
};

namespace spqr_cu {
// Launches kern on stream s (smem bytes of dynamic shared memory); pdl: as a programmatic dependent
// of the kernel before it on s, so it may start while that one runs (it waits with
// griddepcontrol.wait before it reads what that kernel writes). A launch error is returned and
// cleared, not left for a later check.
template <typename... KernelParams, typename... Args>
inline cudaError_t launch_dependent(dim3 grid, dim3 block, size_t smem, cudaStream_t s, bool pdl,
                                    void (*kern)(KernelParams...), Args... args) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t c = {};
    c.gridDim = grid, c.blockDim = block, c.dynamicSmemBytes = smem, c.stream = s;
    c.attrs = attr, c.numAttrs = pdl ? 1 : 0;
    const cudaError_t e = cudaLaunchKernelEx(&c, kern, args...);
    if (e != cudaSuccess) (void)cudaGetLastError();
    return e;
}
// The wait a kernel launched by launch_dependent (pdl) makes before it reads what the kernel
// before it writes, or writes what that kernel reads; it returns once that kernel has completed
// and its writes are visible (a no-op for a plain launch). Trigger: let the kernel after this one
// launch now (it waits the same way).
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::);
#endif
}
// y = W·x for nb vectors with w = WB (matmul_wb.cuh; one translation unit per WB), and the
// generic kernel for any configuration (matmul_generic.cu). cudaSuccess or the launch's error.
template <int WB, typename Act>
cudaError_t launch_wbits(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                         cudaStream_t s);
template <typename Act>
cudaError_t launch_generic_any(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                               cudaStream_t s);
} // namespace spqr_cu
