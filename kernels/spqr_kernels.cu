// spqr_kernels.cu — CUDA kernels of libspqr: fused dense+sparse SpQR matvec/matmul (batch 1..16),
// dequantize-to-fp16, outlier corrections, and the cuSPARSE alternative for the sparse part.
//
// Layout read as stored (spec §5-§6): row r of the codes is ceil(cols/32)·w 32-bit words; each
// run of 32 columns ("chunk") is exactly w words. A warp owns a row; lane l decodes chunks
// l, l+32, ... (w-word loads, coalesced across the warp).
//
// Arithmetic per group (spec §7.2): Σ_k w_k x_k = scale·(Σ_k q_k x_k − zero·Σ_k x_k). The group sums
// of x (per run of min(β2, 32) columns) are computed once per block, so each weight costs one FMA.
// Codes become floats through the exponent trick (0x4B000000 | q is 2^23 + q exactly; subtracting
// 2^23 is exact), which runs at full rate where I2F runs at quarter rate.
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

#include "spqr.h"

namespace {

constexpr int kWarps = 8;                 // warps per block
constexpr int kThreads = kWarps * 32;
constexpr int kStride = 36;               // floats of shared x per 32 columns (4 floats of padding)
constexpr size_t kSmemBudget = 48 * 1024; // above this, x goes through a global buffer

struct Params {
    const uint32_t *codes, *scale, *zero, *rowptr, *perm;
    const uint16_t *stat2, *scale16, *zero16;
    const float *delta;
    const void *colidx;
    uint32_t rows, cols, wbits, sbits, beta1, beta2, groups;
    uint32_t code_words, stat_words, chunks, sub, log2beta2;
    int wide, has_perm, fuse_outliers;
};

__device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }

__device__ __forceinline__ uint32_t pack_get(const uint32_t *w, uint64_t i, uint32_t b) {
    uint64_t bit = i * b;
    uint32_t wi = (uint32_t)(bit >> 5), sh = (uint32_t)(bit & 31);
    uint64_t pair = w[wi];
    if (sh + b > 32) pair |= (uint64_t)w[wi + 1] << 32;
    return (uint32_t)(pair >> sh) & ((1u << b) - 1u);
}

// Dequantized statistics of (r, g), bit-exact with spec §7.2 (no FMA contraction).
__device__ __forceinline__ void stats_of(const Params &p, uint32_t r, uint32_t g, float &scale, float &zero) {
    if (p.sbits == 16) {
        scale = h2f(p.scale16[(uint64_t)r * p.groups + g]);
        zero = h2f(p.zero16[(uint64_t)r * p.groups + g]);
        return;
    }
    const uint2 s2 = *reinterpret_cast<const uint2 *>(p.stat2 + 4 * ((uint64_t)(r / p.beta1) * p.groups + g));
    uint32_t qs = pack_get(p.scale + (uint64_t)r * p.stat_words, g, p.sbits);
    uint32_t qz = pack_get(p.zero + (uint64_t)r * p.stat_words, g, p.sbits);
    scale = __fmul_rn(h2f((uint16_t)(s2.x & 0xffff)), __fsub_rn((float)qs, h2f((uint16_t)(s2.x >> 16))));
    zero = __fmul_rn(h2f((uint16_t)(s2.y & 0xffff)), __fsub_rn((float)qz, h2f((uint16_t)(s2.y >> 16))));
}

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ uint32_t xs_index(uint32_t c) { return (c >> 5) * kStride + (c & 31); }

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

// Gathers x (batch x cols, activation type) through the permutation into fp32 at xs_index
// positions (zero padding to whole chunks), and the per-run sums of x.
template <typename Act>
__device__ void gather_x(const Params &p, const Act *x, int nb, int BATCHP, float *xs, float *xsum,
                         uint32_t xs_len, uint32_t nsum, uint32_t tid, uint32_t nthreads) {
    for (uint32_t i = tid; i < (uint32_t)BATCHP * p.chunks * 32; i += nthreads) {
        uint32_t b = i / (p.chunks * 32), c = i % (p.chunks * 32);
        float v = 0.f;
        if ((int)b < nb && c < p.cols) v = to_f<Act>(x[(uint64_t)b * p.cols + (p.has_perm ? p.perm[c] : c)]);
        xs[(uint64_t)b * xs_len + xs_index(c)] = v;
    }
    (void)nsum;
    (void)xsum;
}

// Sums of x over each run of `sub` columns (sub = min(beta2, 32)).
__device__ void sum_x(const Params &p, int BATCHP, const float *xs, float *xsum, uint32_t xs_len, uint32_t nsum,
                      uint32_t tid, uint32_t nthreads) {
    for (uint32_t i = tid; i < (uint32_t)BATCHP * nsum; i += nthreads) {
        uint32_t b = i / nsum, s = i % nsum;
        float acc = 0.f;
        for (uint32_t k = 0; k < p.sub; k++) acc += xs[(uint64_t)b * xs_len + xs_index(s * p.sub + k)];
        xsum[(uint64_t)b * nsum + s] = acc;
    }
}

// WB: code bits (0 = any, read through pack_get); SUB: columns per statistics run, min(beta2, 32)
// (0 = any). Fast paths have both as compile-time constants so the decoded words stay in registers.
template <int WB, int SUB, int BATCH, typename Act>
__global__ void __launch_bounds__(kThreads) matmul_kernel(Params p, const Act *__restrict__ x, Act *__restrict__ y,
                                                          float *__restrict__ y32, int nb,
                                                          const float *__restrict__ xg, const float *__restrict__ xsg) {
    extern __shared__ float smem[];
    const uint32_t xs_len = p.chunks * kStride, nsum = p.chunks * (32 / p.sub);
    const float *xs = xg, *xsum = xsg;
    if (!xg) { // stage permuted x and its run sums in shared memory
        float *sx = smem, *ss = smem + (size_t)BATCH * xs_len;
        gather_x<Act>(p, x, nb, BATCH, sx, ss, xs_len, nsum, threadIdx.x, blockDim.x);
        __syncthreads();
        sum_x(p, BATCH, sx, ss, xs_len, nsum, threadIdx.x, blockDim.x);
        __syncthreads();
        xs = sx, xsum = ss;
    }
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (uint32_t row = blockIdx.x * kWarps + warp; row < p.rows; row += gridDim.x * kWarps) {
        float acc[BATCH];
#pragma unroll
        for (int b = 0; b < BATCH; b++) acc[b] = 0.f;
        const uint32_t *crow = p.codes + (uint64_t)row * p.code_words;
#pragma unroll 2
        for (uint32_t ch = lane; ch < p.chunks; ch += 32) {
            const uint32_t col0 = ch * 32;
            if constexpr (WB != 0 && SUB != 0) {
                uint32_t w[WB];
                load_chunk<WB>(crow + (uint64_t)ch * WB, w);
#pragma unroll
                for (int s = 0; s < 32 / SUB; s++) {
                    const uint32_t c = col0 + s * SUB;
                    if (c >= p.cols) break;
                    float scale, zero;
                    stats_of(p, row, c >> p.log2beta2, scale, zero);
                    float dot[BATCH];
#pragma unroll
                    for (int b = 0; b < BATCH; b++) dot[b] = 0.f;
#pragma unroll
                    for (int k = 0; k < SUB; k += 4) {
                        float q[4];
#pragma unroll
                        for (int t = 0; t < 4; t++) q[t] = code_f<WB>(w, s * SUB + k + t);
#pragma unroll
                        for (int b = 0; b < BATCH; b++) {
                            const float4 xv =
                                *reinterpret_cast<const float4 *>(xs + (uint64_t)b * xs_len + xs_index(c + k));
                            dot[b] = fmaf(q[0], xv.x, dot[b]);
                            dot[b] = fmaf(q[1], xv.y, dot[b]);
                            dot[b] = fmaf(q[2], xv.z, dot[b]);
                            dot[b] = fmaf(q[3], xv.w, dot[b]);
                        }
                    }
                    const uint32_t si = c / SUB;
#pragma unroll
                    for (int b = 0; b < BATCH; b++)
                        acc[b] = fmaf(scale, dot[b] - zero * xsum[(uint64_t)b * nsum + si], acc[b]);
                }
            } else { // any width, any run length: codes through pack_get
                for (uint32_t s = 0; s < 32 / p.sub; s++) {
                    const uint32_t c = col0 + s * p.sub;
                    if (c >= p.cols) break;
                    float scale, zero;
                    stats_of(p, row, c >> p.log2beta2, scale, zero);
                    float dot[BATCH];
#pragma unroll
                    for (int b = 0; b < BATCH; b++) dot[b] = 0.f;
                    for (uint32_t k = 0; k < p.sub; k++) {
                        const float q = (float)pack_get(crow, (uint64_t)c + k, p.wbits);
#pragma unroll
                        for (int b = 0; b < BATCH; b++)
                            dot[b] = fmaf(q, xs[(uint64_t)b * xs_len + xs_index(c + k)], dot[b]);
                    }
                    const uint32_t si = c / p.sub;
#pragma unroll
                    for (int b = 0; b < BATCH; b++)
                        acc[b] = fmaf(scale, dot[b] - zero * xsum[(uint64_t)b * nsum + si], acc[b]);
                }
            }
        }
        if (p.fuse_outliers) {
            const uint32_t k1 = p.rowptr[row + 1];
            for (uint32_t k = p.rowptr[row] + lane; k < k1; k += 32) {
                const uint32_t c = p.wide ? ((const uint32_t *)p.colidx)[k] : ((const uint16_t *)p.colidx)[k];
                const float d = p.delta[k];
#pragma unroll
                for (int b = 0; b < BATCH; b++) acc[b] = fmaf(d, xs[(uint64_t)b * xs_len + xs_index(c)], acc[b]);
            }
        }
#pragma unroll
        for (int b = 0; b < BATCH; b++) {
            float v = acc[b];
#pragma unroll
            for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            acc[b] = v;
        }
        if (lane == 0)
#pragma unroll
            for (int b = 0; b < BATCH; b++)
                if (b < nb) {
                    if (y32) y32[(uint64_t)b * p.rows + row] = acc[b];
                    else y[(uint64_t)b * p.rows + row] = from_f<Act>(acc[b]);
                }
    }
}

// Global-buffer path: permuted x and run sums written once for all blocks.
template <typename Act>
__global__ void gather_kernel(Params p, const Act *x, int nb, int BATCHP, float *xs, float *xsum) {
    const uint32_t xs_len = p.chunks * kStride, nsum = p.chunks * (32 / p.sub);
    const uint32_t tid = blockIdx.x * blockDim.x + threadIdx.x, n = gridDim.x * blockDim.x;
    gather_x<Act>(p, x, nb, BATCHP, xs, xsum, xs_len, nsum, tid, n);
}
__global__ void sum_kernel(Params p, int BATCHP, const float *xs, float *xsum) {
    const uint32_t xs_len = p.chunks * kStride, nsum = p.chunks * (32 / p.sub);
    sum_x(p, BATCHP, xs, xsum, xs_len, nsum, blockIdx.x * blockDim.x + threadIdx.x, gridDim.x * blockDim.x);
}

// delta_k = v_k − ŵ(r, c_k): one warp per row.
__global__ void delta_kernel(Params p, const uint16_t *values, float *delta) {
    const uint32_t lane = threadIdx.x & 31;
    for (uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < p.rows; row += (gridDim.x * blockDim.x) >> 5) {
        for (uint32_t k = p.rowptr[row] + lane; k < p.rowptr[row + 1]; k += 32) {
            const uint32_t c = p.wide ? ((const uint32_t *)p.colidx)[k] : ((const uint16_t *)p.colidx)[k];
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
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < total; i += (uint64_t)gridDim.x * blockDim.x) {
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
    for (uint32_t row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < p.rows; row += (gridDim.x * blockDim.x) >> 5)
        for (uint32_t k = p.rowptr[row] + lane; k < p.rowptr[row + 1]; k += 32) {
            const uint32_t c = p.wide ? ((const uint32_t *)p.colidx)[k] : ((const uint16_t *)p.colidx)[k];
            out[(uint64_t)row * p.cols + (p.has_perm ? p.perm[c] : c)] = __ushort_as_half(values[k]);
        }
}

template <typename Act> __global__ void convert_kernel(const float *in, Act *out, uint64_t n) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
        out[i] = from_f<Act>(in[i]);
}

// Permuted x, densely packed [nb][cols] fp32 (the cuSPARSE path's dense operand).
template <typename Act> __global__ void gather_plain_kernel(Params q, const Act *x, int nb, float *xp) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < (uint64_t)nb * q.cols;
         i += (uint64_t)gridDim.x * blockDim.x) {
        uint32_t b = (uint32_t)(i / q.cols), c = (uint32_t)(i % q.cols);
        xp[i] = to_f<Act>(x[(uint64_t)b * q.cols + (q.has_perm ? q.perm[c] : c)]);
    }
}

__global__ void widen_colidx_kernel(const uint16_t *in, int *out, uint64_t n) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
        out[i] = in[i];
}

} // namespace

struct spqr_gpu_tensor {
    Params p;
    void *sec[SPQR_SEC_COUNT];
    uint64_t size[SPQR_SEC_COUNT];
    float *delta;
    int *colidx32;                       // cuSPARSE path (int32 column indices)
    float *xbuf, *xsbuf, *ybuf;          // global x path / cuSPARSE scratch (SPQR_MAX_BATCH wide)
    uint64_t nnz;
    int sms;
    size_t smem_optin;
    spqr_outlier_path path;
    cusparseHandle_t sp;
};

static spqr_status cuda_fail(spqr_error *err, cudaError_t e, const char *what) {
    return spqr_set_error(err, e == cudaErrorMemoryAllocation ? SPQR_E_NOMEM : SPQR_E_CUDA, 0, UINT64_MAX,
                          "%s: %s", what, cudaGetErrorString(e));
}
#define CK(call, what)                                                                                         \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess) return cuda_fail(err, e_, what);                                                \
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
    cudaFree(t->delta), cudaFree(t->colidx32), cudaFree(t->xbuf), cudaFree(t->xsbuf), cudaFree(t->ybuf);
    if (t->sp) cusparseDestroy(t->sp);
    delete t;
}

extern "C" spqr_status spqr_gpu_upload(const spqr_file *f, size_t ti, spqr_gpu_tensor **out, spqr_error *err) {
    *out = nullptr;
    if (ti >= spqr_file_tensor_count(f))
        return spqr_set_error(err, SPQR_E_NOTFOUND, 0, UINT64_MAX, "tensor index %zu out of range", ti);
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
    p.stat_words = p.sbits == 16 ? 0 : (uint32_t)spqr_packed_row_words(p.groups, p.sbits);
    p.chunks = (p.cols + 31) / 32;
    p.sub = p.beta2 < 32 ? p.beta2 : 32;
    p.log2beta2 = 0;
    while ((1u << p.log2beta2) < p.beta2) p.log2beta2++;
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
        cudaError_t e = cudaMalloc(&t->sec[s], size ? size : 16);
        if (e == cudaSuccess && size) e = cudaMemcpy(t->sec[s], h, size, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            spqr_gpu_free(t);
            return cuda_fail(err, e, "uploading a section");
        }
    }
    p.codes = (const uint32_t *)t->sec[SPQR_SEC_CODES];
    p.scale = (const uint32_t *)t->sec[SPQR_SEC_SCALE], p.zero = (const uint32_t *)t->sec[SPQR_SEC_ZERO];
    p.scale16 = (const uint16_t *)t->sec[SPQR_SEC_SCALE], p.zero16 = (const uint16_t *)t->sec[SPQR_SEC_ZERO];
    p.stat2 = (const uint16_t *)t->sec[SPQR_SEC_STAT2];
    p.rowptr = (const uint32_t *)t->sec[SPQR_SEC_ROWPTR];
    p.colidx = t->sec[SPQR_SEC_COLIDX];
    p.perm = (const uint32_t *)t->sec[SPQR_SEC_PERM];
    const uint64_t xlen = (uint64_t)p.chunks * kStride * SPQR_MAX_BATCH;
    const uint64_t slen = (uint64_t)p.chunks * (32 / p.sub) * SPQR_MAX_BATCH;
    cudaError_t e = cudaMalloc(&t->delta, (t->nnz ? t->nnz : 1) * sizeof(float));
    if (e == cudaSuccess) e = cudaMalloc(&t->xbuf, xlen * sizeof(float));
    if (e == cudaSuccess) e = cudaMalloc(&t->xsbuf, slen * sizeof(float));
    if (e == cudaSuccess) e = cudaMalloc(&t->ybuf, (uint64_t)p.rows * SPQR_MAX_BATCH * sizeof(float));
    if (e != cudaSuccess) {
        spqr_gpu_free(t);
        return cuda_fail(err, e, "allocating scratch");
    }
    p.delta = t->delta;
    if (t->nnz) {
        delta_kernel<<<(p.rows + 7) / 8, 256>>>(p, (const uint16_t *)t->sec[SPQR_SEC_VALUES], t->delta);
        e = cudaGetLastError();
        if (e == cudaSuccess) e = cudaDeviceSynchronize();
        if (e != cudaSuccess) {
            spqr_gpu_free(t);
            return cuda_fail(err, e, "computing outlier corrections");
        }
    }
    *out = t;
    return SPQR_OK;
}

extern "C" spqr_status spqr_gpu_set_outlier_path(spqr_gpu_tensor *t, spqr_outlier_path path, spqr_error *err) {
    if (path != SPQR_OUTLIERS_FUSED && path != SPQR_OUTLIERS_CUSPARSE)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "unknown outlier path %d", (int)path);
    if (path == SPQR_OUTLIERS_CUSPARSE && !t->sp) {
        if (cusparseCreate(&t->sp) != CUSPARSE_STATUS_SUCCESS)
            return spqr_set_error(err, SPQR_E_CUDA, 0, UINT64_MAX, "cusparseCreate failed");
        const uint64_t n = t->nnz ? t->nnz : 1;
        CK(cudaMalloc(&t->colidx32, n * sizeof(int)), "allocating int32 column indices");
        if (t->nnz) {
            if (t->p.wide)
                CK(cudaMemcpy(t->colidx32, t->p.colidx, t->nnz * 4, cudaMemcpyDeviceToDevice), "copying indices");
            else
                widen_colidx_kernel<<<256, 256>>>((const uint16_t *)t->p.colidx, t->colidx32, t->nnz);
            CK(cudaGetLastError(), "widening indices");
        }
    }
    t->path = path;
    return SPQR_OK;
}

extern "C" uint64_t spqr_gpu_matmul_bytes(const spqr_gpu_tensor *t, int batch) {
    uint64_t b = 0;
    for (int s = 0; s < SPQR_SEC_COUNT; s++)
        if (s != SPQR_SEC_VALUES) b += t->size[s];          // values are read as fp32 deltas instead
    b += t->nnz * 4;                                        // deltas
    b += (uint64_t)batch * (t->p.cols + t->p.rows) * 2;     // x in, y out (16-bit)
    return b;
}

template <int WB, int SUB, int BATCH, typename Act>
static cudaError_t launch_one(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb, cudaStream_t s,
                              int use_global) {
    Params &p = t->p;
    const uint32_t xs_len = p.chunks * kStride, nsum = p.chunks * (32 / p.sub);
    const size_t smem = use_global ? 0 : (size_t)BATCH * (xs_len + nsum) * sizeof(float);
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(matmul_kernel<WB, SUB, BATCH, Act>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    if (use_global) {
        gather_kernel<Act><<<t->sms * 4, 256, 0, s>>>(p, x, nb, BATCH, t->xbuf, t->xsbuf);
        sum_kernel<<<t->sms * 2, 256, 0, s>>>(p, BATCH, t->xbuf, t->xsbuf);
    }
    int per_sm = 0;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, matmul_kernel<WB, SUB, BATCH, Act>, kThreads, smem);
    if (per_sm < 1) per_sm = 1;
    uint32_t blocks = (p.rows + kWarps - 1) / kWarps;
    uint32_t cap = (uint32_t)(t->sms * per_sm);
    if (blocks > cap) blocks = cap;
    matmul_kernel<WB, SUB, BATCH, Act><<<blocks, kThreads, smem, s>>>(p, x, y, y32, nb, use_global ? t->xbuf : nullptr,
                                                                use_global ? t->xsbuf : nullptr);
    return cudaGetLastError();
}

template <int WB, int SUB, typename Act>
static cudaError_t launch_batch(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb, cudaStream_t s, int g) {
    if (nb == 1) return launch_one<WB, SUB, 1, Act>(t, x, y, y32, nb, s, g);
    if (nb == 2) return launch_one<WB, SUB, 2, Act>(t, x, y, y32, nb, s, g);
    if (nb <= 4) return launch_one<WB, SUB, 4, Act>(t, x, y, y32, nb, s, g);
    if (nb <= 8) return launch_one<WB, SUB, 8, Act>(t, x, y, y32, nb, s, g);
    return launch_one<WB, SUB, 16, Act>(t, x, y, y32, nb, s, g);
}

template <int WB, typename Act>
static cudaError_t launch_sub(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb, cudaStream_t s, int g) {
    switch (t->p.sub) {
    case 8: return launch_batch<WB, 8, Act>(t, x, y, y32, nb, s, g);
    case 16: return launch_batch<WB, 16, Act>(t, x, y, y32, nb, s, g);
    case 32: return launch_batch<WB, 32, Act>(t, x, y, y32, nb, s, g);
    default: return launch_batch<0, 0, Act>(t, x, y, y32, nb, s, g);
    }
}

template <typename Act>
static cudaError_t launch(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb, cudaStream_t s) {
    const int bp = nb == 1 ? 1 : nb == 2 ? 2 : nb <= 4 ? 4 : nb <= 8 ? 8 : 16;
    const size_t need = (size_t)bp * (t->p.chunks * kStride + t->p.chunks * (32 / t->p.sub)) * sizeof(float);
    const int g = need > kSmemBudget || need > t->smem_optin;
    switch (t->p.wbits) {
    case 2: return launch_sub<2, Act>(t, x, y, y32, nb, s, g);
    case 3: return launch_sub<3, Act>(t, x, y, y32, nb, s, g);
    case 4: return launch_sub<4, Act>(t, x, y, y32, nb, s, g);
    default: return launch_batch<0, 0, Act>(t, x, y, y32, nb, s, g);
    }
}

template <typename Act>
static spqr_status matmul_t(spqr_gpu_tensor *t, const Act *x, Act *y, int nb, cudaStream_t s, spqr_error *err) {
    if (t->path == SPQR_OUTLIERS_FUSED || t->nnz == 0) {
        t->p.fuse_outliers = 1;
        CK(launch<Act>(t, x, y, nullptr, nb, s), "spqr matmul kernel");
        return SPQR_OK;
    }
    // cuSPARSE path: dense part to fp32, y32 += Δ · x_perm (SpMV / SpMM), convert.
    t->p.fuse_outliers = 0;
    const Params &p = t->p;
    cudaError_t e = cudaSuccess;
    // permuted x, densely packed (no padding) for cuSPARSE: gather into ybuf-sized scratch after the dense pass
    e = launch<Act>(t, x, y, t->ybuf, nb, s);
    t->p.fuse_outliers = 1;
    CK(e, "spqr dense kernel");
    // x_perm contiguous [nb][cols] in xbuf (reuse the global buffer; its chunked layout is not needed here)
    float *xp = t->xbuf;
    gather_plain_kernel<Act><<<t->sms * 4, 256, 0, s>>>(p, x, nb, xp);
    CK(cudaGetLastError(), "gather for cuSPARSE");
    cusparseSetStream(t->sp, s);
    cusparseSpMatDescr_t A;
    cusparseDnMatDescr_t X, Y;
    const float one = 1.f;
    if (cusparseCreateCsr(&A, p.rows, p.cols, (int64_t)t->nnz, (void *)p.rowptr, t->colidx32, (void *)t->delta,
                          CUSPARSE_INDEX_32I, CUSPARSE_INDEX_32I, CUSPARSE_INDEX_BASE_ZERO,
                          CUDA_R_32F) != CUSPARSE_STATUS_SUCCESS)
        return spqr_set_error(err, SPQR_E_CUDA, 0, UINT64_MAX, "cusparseCreateCsr failed");
    cusparseCreateDnMat(&X, p.cols, nb, p.cols, xp, CUDA_R_32F, CUSPARSE_ORDER_COL);
    cusparseCreateDnMat(&Y, p.rows, nb, p.rows, t->ybuf, CUDA_R_32F, CUSPARSE_ORDER_COL);
    size_t ws = 0;
    cusparseStatus_t cs = cusparseSpMM_bufferSize(t->sp, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                                  CUSPARSE_OPERATION_NON_TRANSPOSE, &one, A, X, &one, Y, CUDA_R_32F,
                                                  CUSPARSE_SPMM_ALG_DEFAULT, &ws);
    void *wbuf = nullptr;
    if (cs == CUSPARSE_STATUS_SUCCESS && ws) e = cudaMallocAsync(&wbuf, ws, s);
    if (cs == CUSPARSE_STATUS_SUCCESS && e == cudaSuccess)
        cs = cusparseSpMM(t->sp, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE, &one, A, X, &one,
                          Y, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, wbuf);
    if (wbuf) cudaFreeAsync(wbuf, s);
    cusparseDestroySpMat(A), cusparseDestroyDnMat(X), cusparseDestroyDnMat(Y);
    if (cs != CUSPARSE_STATUS_SUCCESS)
        return spqr_set_error(err, SPQR_E_CUDA, 0, UINT64_MAX, "cusparseSpMM failed: %s", cusparseGetErrorString(cs));
    CK(e, "cuSPARSE workspace");
    convert_kernel<Act><<<t->sms * 4, 256, 0, s>>>(t->ybuf, y, (uint64_t)nb * p.rows);
    CK(cudaGetLastError(), "convert kernel");
    return SPQR_OK;
}

extern "C" spqr_status spqr_gpu_matmul(spqr_gpu_tensor *t, const void *x, void *y, int batch, spqr_act_type act,
                                       void *stream, spqr_error *err) {
    if (!t || !x || !y) return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "null tensor or buffer");
    if (batch < 1 || batch > SPQR_MAX_BATCH)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "batch %d not in 1..%d (use dequantize + GEMM)",
                              batch, SPQR_MAX_BATCH);
    cudaStream_t s = (cudaStream_t)stream;
    if (act == SPQR_ACT_F16) return matmul_t<__half>(t, (const __half *)x, (__half *)y, batch, s, err);
    if (act == SPQR_ACT_BF16)
        return matmul_t<__nv_bfloat16>(t, (const __nv_bfloat16 *)x, (__nv_bfloat16 *)y, batch, s, err);
    return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "unknown activation type %d", (int)act);
}

extern "C" spqr_status spqr_gpu_dequantize_f16(spqr_gpu_tensor *t, void *w, void *stream, spqr_error *err) {
    if (!t || !w) return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "null tensor or buffer");
    cudaStream_t s = (cudaStream_t)stream;
    dequant_kernel<<<t->sms * 8, 256, 0, s>>>(t->p, (__half *)w);
    CK(cudaGetLastError(), "dequantize kernel");
    if (t->nnz) {
        dequant_outliers_kernel<<<(t->p.rows + 7) / 8, 256, 0, s>>>(t->p, (const uint16_t *)t->sec[SPQR_SEC_VALUES],
                                                                     (__half *)w);
        CK(cudaGetLastError(), "dequantize outliers kernel");
    }
    return SPQR_OK;
}
