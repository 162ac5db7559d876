// spqr_kernels.cu — the public GPU API of libspqr (spqr.h): upload a tensor (sections copied as
// they are; outlier corrections; the tiled layout for the tensor-core kernel), matmul dispatch by
// bit width (matmul_wN.cu), the cuSPARSE alternative for the sparse part, dequantize-to-fp16.
// kernels/gpu_common.cuh describes the files and the dispatch.
//
// Outliers: at upload, delta_k = v_k − ŵ(r, c_k) is computed in fp32 (outliers replace the dense
// value, spec §7.2 step 3), so the sparse part is a plain CSR product y += Δ·x, fused into the same
// kernel (each warp adds its row's outliers) or done by cuSPARSE SpMV/SpMM.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "gpu_common.cuh"
#include "gpu_internal.h"
#include "mma_upload.cuh"

namespace spqr_cu {
namespace {

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
} // namespace spqr_cu

using namespace spqr_cu;

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

// Every device allocation a tensor holds goes through dev_alloc and, when released before the
// tensor is freed, dev_release, so dev_bytes (spqr_gpu_device_bytes) is their exact sum, in bytes
// as requested (the driver rounds each allocation up to its own granularity).
template <typename T> static cudaError_t dev_alloc(spqr_gpu_tensor *t, T **ptr, uint64_t n) {
    void *v = nullptr;
    const cudaError_t e = cudaMalloc(&v, n);
    *ptr = static_cast<T *>(v);
    if (e == cudaSuccess) t->dev_bytes += n;
    return e;
}
template <typename T> static void dev_release(spqr_gpu_tensor *t, T **ptr, uint64_t n) {
    if (!*ptr) return;
    cudaFree(*ptr);
    t->dev_bytes -= n;
    *ptr = nullptr;
}
// Bytes of a tensor's ybuf and of its acc32: rows x SPQR_MAX_BATCH fp32.
static uint64_t y_scratch_bytes(const Params &p) {
    return (uint64_t)p.rows * SPQR_MAX_BATCH * sizeof(float);
}

extern "C" void spqr_gpu_free(spqr_gpu_tensor *t) {
    if (!t) return;
    for (int i = 0; i < SPQR_SEC_COUNT; i++) cudaFree(t->sec[i]);
    if (!t->scratch_shared) cudaFree(t->acc32), cudaFree(t->xbuf), cudaFree(t->ybuf);
    cudaFree(t->tcodes), cudaFree(t->counters);
    cudaFree(t->delta), cudaFree(t->colidx32);
    cudaFree(t->sp_one), cudaFree(t->sp_ws), cudaFree(t->rounds), cudaFree(t->rptr);
    if (t->sp) cusparseDestroy(t->sp);
    delete t;
}

// Whether the fused path adds the tensor's outliers by its rounds at every batch 1..16, so that
// only the cuSPARSE path reads the fp32 corrections (mma_layout.cuh mma_rounds).
static bool rounds_serve_every_batch(const spqr_gpu_tensor *t) {
    if (!t->rounds) return false;
    for (int nb = 1; nb <= SPQR_MAX_BATCH; nb++)
        if (!mma_rounds(t, nb)) return false;
    return true;
}

// Releases the fp32 corrections where the fused path reads none (rounds_serve_every_batch); the
// cuSPARSE path makes them again when first selected (sp_init).
static void release_unread_corrections(spqr_gpu_tensor *t) {
    if (!rounds_serve_every_batch(t)) return;
    dev_release(t, &t->delta, (t->nnz ? t->nnz : 1) * sizeof(float));
    t->p.delta = nullptr;
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
    // for s-bit statistics with β1 >= 8 their stat2 pairs (8-byte aligned; β1 = 8: two blocks'),
    // padded to SPQR_MMA_REC_ALIGN words (mma_layout.cuh)
    p.tgpt = p.log2beta2 >= 6 ? 1 : 64u >> p.log2beta2;
    uint32_t rw = p.wbits * 32 + p.tgpt * p.tstat_words;
    p.rec_s2 = 0;
    if (rec_s2_blocks(p)) {
        rw = p.tgpt >= 8 ? (rw + 3) & ~3u : (rw + 1) & ~1u; // β2 = 8: 16-byte pairs of pairs
        p.rec_s2 = rw, rw += 2 * p.tgpt * rec_s2_blocks(p);
    }
    p.rec_words = (rw + SPQR_MMA_REC_ALIGN - 1) & ~(SPQR_MMA_REC_ALIGN - 1u);
    t->tcodes_size = (uint64_t)p.strips * p.mtiles * p.rec_words * 4;
    e = dev_alloc(t, &t->tcodes, t->tcodes_size + 16);
    if (e == cudaSuccess) e = cudaMemset(t->tcodes, 0, t->tcodes_size + 16);
    if (e == cudaSuccess) e = dev_alloc(t, &t->acc32, y_scratch_bytes(p));
    if (e == cudaSuccess) e = cudaMemset(t->acc32, 0, y_scratch_bytes(p));
    if (e == cudaSuccess) e = dev_alloc(t, &t->counters, (uint64_t)p.strips * 4);
    if (e == cudaSuccess) e = cudaMemset(t->counters, 0, (uint64_t)p.strips * 4);
    if (e != cudaSuccess) return e;
    tile_codes_kernel<<<t->sms * 8, 256>>>(p, t->tcodes);
    tile_stats_kernel<<<t->sms * 4, 128>>>(p, t->tcodes);
    e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) return e;
    for (int s : {SPQR_SEC_CODES, SPQR_SEC_SCALE, SPQR_SEC_ZERO})
        dev_release(t, &t->sec[s], t->size[s] + 16);
    p.codes = p.scale = p.zero = nullptr;
    if (p.rec_s2) { // stat2 too where the records hold it (tiled_stats_of reads it there)
        dev_release(t, &t->sec[SPQR_SEC_STAT2], t->size[SPQR_SEC_STAT2] + 16);
        p.stat2 = nullptr;
    }
    p.scale16 = p.zero16 = nullptr;
    p.tcodes = t->tcodes;
    return cudaSuccess;
}

// Outlier rounds for batch 1-8 (mma_kernel.cuh, OS = 8; bench/NOTES.md v6w) from the CSR outliers
// and their fp32 corrections, for a tiled tensor whose kernels have an OS = 8 variant (s-bit
// statistics) and whose columns fit a slot's 15 bits. Strip S takes R_S = max over its
// row pairs (g, g + 8) of ⌈outliers / 16⌉ rounds of 512 bytes (128 slots). Kept while they
// average at most kRoundBytes bytes per outlier (at least a quarter of the slots used; the CSR walk
// reads 6 and its row pointers; the shared model's tensors use 34-68 %) and every correction is a
// finite fp16; otherwise batch 1 walks the CSR outliers as before. An error is the
// device's (allocation, launch).
static constexpr uint64_t kRoundBytes = 16;
static cudaError_t make_rounds(spqr_gpu_tensor *t) {
    Params &p = t->p;
    if (!SPQR_MMA_ROUNDS || !t->tcodes || !t->nnz || p.cols > 32768 || p.sbits == 16)
        return cudaSuccess;
    uint32_t *rowptr = (uint32_t *)malloc((p.rows + 1ull + p.strips + 1ull) * 4);
    if (!rowptr) return cudaErrorMemoryAllocation;
    uint32_t *rptr = rowptr + p.rows + 1;
    cudaError_t e = cudaMemcpy(rowptr, p.rowptr, (p.rows + 1ull) * 4, cudaMemcpyDeviceToHost);
    uint64_t total = 0;
    for (uint32_t S = 0; e == cudaSuccess && S < p.strips; S++) {
        rptr[S] = (uint32_t)total;
        uint64_t most = 0;
        for (uint32_t g = 0; g < 8; g++) {
            uint64_t n = 0;
            for (uint32_t r = 16 * S + g; r < 16 * S + 16 && r < p.rows; r += 8)
                n += rowptr[r + 1] > rowptr[r] ? rowptr[r + 1] - rowptr[r] : 0;
            most = n > most ? n : most;
        }
        total += (most + 15) / 16;
        if (total > UINT32_MAX) break; // (far past the byte rule below)
    }
    rptr[p.strips] = (uint32_t)total;
    if (e != cudaSuccess || total * 512 > kRoundBytes * t->nnz) {
        free(rowptr);
        return e;
    }
    unsigned int *dbad = nullptr, hbad = 0;
    e = dev_alloc(t, &t->rounds, total * 512);
    if (e == cudaSuccess) e = cudaMemset(t->rounds, 0, total * 512);
    if (e == cudaSuccess) e = dev_alloc(t, &t->rptr, (p.strips + 1ull) * 4);
    if (e == cudaSuccess)
        e = cudaMemcpy(t->rptr, rptr, (p.strips + 1ull) * 4, cudaMemcpyHostToDevice);
    free(rowptr);
    if (e == cudaSuccess) e = cudaMalloc(&dbad, sizeof *dbad);
    if (e == cudaSuccess) e = cudaMemset(dbad, 0, sizeof *dbad);
    if (e == cudaSuccess) {
        rounds_kernel<<<t->sms * 4, 256>>>(p, t->rptr, (uint16_t *)t->rounds, dbad);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpy(&hbad, dbad, sizeof hbad, cudaMemcpyDeviceToHost);
    cudaFree(dbad);
    if (e != cudaSuccess || hbad) { // (spqr_gpu_free frees them on an error)
        if (hbad) {
            dev_release(t, &t->rounds, total * 512);
            dev_release(t, &t->rptr, (p.strips + 1ull) * 4);
        }
        return e;
    }
    p.rounds = t->rounds, p.rptr = t->rptr, t->nrounds = total;
    return cudaSuccess;
}

// An SpQR tensor described by in, its raw sections sec[s] of size[s] bytes in host memory (a
// file's, or a stack of a file's, spqr_tensor_stack), to the device: spqr_gpu_upload's work.
static spqr_status upload_sections(const spqr_tensor_info *in,
                                   const void *const sec[SPQR_SEC_COUNT],
                                   const uint64_t size[SPQR_SEC_COUNT], spqr_gpu_tensor **out,
                                   spqr_error *err) {
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
    if (p.sbits < 16) {
        p.smask = (1u << p.sbits) - 1u, p.zmask = p.smask << p.sbits;
        p.zstep = ldexpf(1.f, -(int)p.sbits);
    }
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
        t->size[s] = size[s];
        // +16: word-pair loads past a row end stay in bounds
        cudaError_t e = dev_alloc(t, &t->sec[s], size[s] + 16);
        if (e == cudaSuccess && size[s])
            e = cudaMemcpy(t->sec[s], sec[s], size[s], cudaMemcpyHostToDevice);
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
    // (xp: 32 per chunk and vector; its sums: 2 half chunks, or 4 quarters at β2 = 8)
    const uint64_t x_stream = (uint64_t)p.chunks * (p.sub == 8 ? 36 : 34) * SPQR_MAX_BATCH;
    const uint64_t xlen = x_stream > x_mma + 16 ? x_stream : x_mma + 16;
    cudaError_t e = dev_alloc(t, &t->delta, (t->nnz ? t->nnz : 1) * sizeof(float));
    t->xbuf_bytes = xlen * sizeof(float);
    if (e == cudaSuccess) e = dev_alloc(t, &t->xbuf, t->xbuf_bytes);
    if (e == cudaSuccess) e = dev_alloc(t, &t->ybuf, y_scratch_bytes(p));
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
    if (mma_tiled_shape(p)) {
        e = make_tiled(t);
        if (e != cudaSuccess) {
            spqr_gpu_free(t);
            return cuda_fail(err, e, "tiling the codes for the tensor-core kernel");
        }
        e = make_rounds(t);
        if (e != cudaSuccess) {
            spqr_gpu_free(t);
            return cuda_fail(err, e, "building the outlier rounds");
        }
        // then only the cuSPARSE path reads the fp32 corrections (4 bytes an outlier): made again
        // from the tiles when that path is first selected (sp_init)
        release_unread_corrections(t);
    }
    *out = t;
    return SPQR_OK;
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
    const void *sec[SPQR_SEC_COUNT];
    uint64_t size[SPQR_SEC_COUNT];
    for (int s = 0; s < SPQR_SEC_COUNT; s++)
        sec[s] = spqr_file_section(f, ti, (spqr_section_id)s, &size[s]);
    return upload_sections(in, sec, size, out, err);
}

extern "C" spqr_status spqr_gpu_upload_stacked(const spqr_file *f, const size_t *tensors, size_t n,
                                               spqr_gpu_tensor **out, spqr_error *err) {
    *out = nullptr;
    spqr_tensor_data d;
    spqr_status st = spqr_tensor_stack(f, tensors, n, &d, err);
    if (st) return st;
    st = upload_sections(&d.info, d.sec, d.size, out, err);
    spqr_tensor_data_free(&d);
    return st;
}

// ybuf[nb][rows] += Δ · xbuf[nb][cols] (fp32, column-major dense matrices) with cuSPARSE on the
// handle's stream; size_only: only the workspace size into *ws.
static cusparseStatus_t sp_spmm(spqr_gpu_tensor *t, int nb, void *stream, bool size_only,
                                size_t *ws) {
    const spqr_cu::Params &p = t->p;
    cusparseSpMatDescr_t A;
    cusparseDnMatDescr_t X, Y;
    cusparseStatus_t cs = cusparseCreateCsr(
        &A, p.rows, p.cols, (int64_t)t->nnz, (void *)p.rowptr, t->colidx32, (void *)t->delta,
        CUSPARSE_INDEX_32I, CUSPARSE_INDEX_32I, CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F);
    if (cs != CUSPARSE_STATUS_SUCCESS) return cs;
    cusparseCreateDnMat(&X, p.cols, nb, p.cols, t->xbuf, CUDA_R_32F, CUSPARSE_ORDER_COL);
    cusparseCreateDnMat(&Y, p.rows, nb, p.rows, t->ybuf, CUDA_R_32F, CUSPARSE_ORDER_COL);
    if (size_only)
        cs = cusparseSpMM_bufferSize(t->sp, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                     CUSPARSE_OPERATION_NON_TRANSPOSE, t->sp_one, A, X, t->sp_one,
                                     Y, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, ws);
    else {
        cusparseSetStream(t->sp, (cudaStream_t)stream);
        cs = cusparseSpMM(t->sp, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE,
                          t->sp_one, A, X, t->sp_one, Y, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT,
                          t->sp_ws);
    }
    cusparseDestroySpMat(A), cusparseDestroyDnMat(X), cusparseDestroyDnMat(Y);
    return cs;
}

// The cuSPARSE path's state, made when the path is first selected: the handle, int32 column
// indices, alpha = beta = 1 in device memory (device pointer mode: a host scalar's address may be
// read again by a CUDA graph replay, long after the call returned) and one workspace for every
// batch, so that a call allocates nothing. With &one on the caller's stack and a workspace from
// cudaMallocAsync per call, a captured batch-16 SpMM replayed wrong sums (test_gpu graph_capture);
// with both changed it replays the direct call's.
static spqr_status sp_init(spqr_gpu_tensor *t, spqr_error *err) {
    if (t->nnz && !t->delta) { // released at upload (rounds_serve_every_batch)
        CK(dev_alloc(t, &t->delta, t->nnz * sizeof(float)), "allocating outlier corrections");
        delta_tiled_kernel<<<(t->p.rows + 7) / 8, 256>>>(
            t->p, (const uint16_t *)t->sec[SPQR_SEC_VALUES], t->delta);
        CK(cudaGetLastError(), "computing outlier corrections");
        t->p.delta = t->delta;
    }
    if (cusparseCreate(&t->sp) != CUSPARSE_STATUS_SUCCESS) {
        t->sp = nullptr;
        return spqr_set_error(err, SPQR_E_CUDA, 0, UINT64_MAX, "cusparseCreate failed");
    }
    cusparseSetPointerMode(t->sp, CUSPARSE_POINTER_MODE_DEVICE);
    const uint64_t n = t->nnz ? t->nnz : 1;
    CK(dev_alloc(t, &t->colidx32, n * sizeof(int)), "allocating int32 column indices");
    if (t->nnz) {
        if (t->p.wide)
            CK(cudaMemcpy(t->colidx32, t->p.colidx, t->nnz * 4, cudaMemcpyDeviceToDevice),
               "copying indices");
        else
            widen_colidx_kernel<<<256, 256>>>((const uint16_t *)t->p.colidx, t->colidx32, t->nnz);
        CK(cudaGetLastError(), "widening indices");
    }
    const float one = 1.f;
    CK(dev_alloc(t, &t->sp_one, sizeof(float)), "allocating cuSPARSE scalars");
    CK(cudaMemcpy(t->sp_one, &one, sizeof one, cudaMemcpyHostToDevice), "cuSPARSE scalars");
    size_t ws = 0;
    for (int nb = 1; nb <= SPQR_MAX_BATCH; nb++) {
        size_t w = 0;
        if (sp_spmm(t, nb, nullptr, true, &w) != CUSPARSE_STATUS_SUCCESS)
            return spqr_set_error(err, SPQR_E_CUDA, 0, UINT64_MAX,
                                  "cusparseSpMM_bufferSize failed (batch %d)", nb);
        if (w > ws) ws = w;
    }
    if (ws) CK(dev_alloc(t, &t->sp_ws, ws), "allocating the cuSPARSE workspace");
    t->sp_ws_size = ws;
    // the corrections and indices made above on the default stream are complete before a call
    // on any stream reads them
    CK(cudaDeviceSynchronize(), "making the cuSPARSE path's state");
    return SPQR_OK;
}

extern "C" spqr_status spqr_gpu_set_outlier_path(spqr_gpu_tensor *t, spqr_outlier_path path,
                                                 spqr_error *err) {
    if (path != SPQR_OUTLIERS_FUSED && path != SPQR_OUTLIERS_CUSPARSE)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "unknown outlier path %d", (int)path);
    if (path == SPQR_OUTLIERS_CUSPARSE && !t->sp) {
        const spqr_status st = sp_init(t, err);
        if (st != SPQR_OK) { // nothing half made stays behind: the next selection starts over
            dev_release(t, &t->colidx32, (t->nnz ? t->nnz : 1) * sizeof(int));
            dev_release(t, &t->sp_one, sizeof(float));
            dev_release(t, &t->sp_ws, t->sp_ws_size);
            release_unread_corrections(t); // (where sp_init made them)
            if (t->sp) cusparseDestroy(t->sp);
            t->sp = nullptr;
            return st;
        }
    }
    t->path = path;
    return SPQR_OK;
}

extern "C" int spqr_gpu_uses_tensor_cores(const spqr_gpu_tensor *t) {
    return t && t->tcodes != nullptr;
}

struct spqr_gpu_scratch {
    float *xbuf, *ybuf, *acc32;
    uint64_t bytes;
};

extern "C" void spqr_gpu_scratch_free(spqr_gpu_scratch *s) {
    if (!s) return;
    cudaFree(s->xbuf), cudaFree(s->ybuf), cudaFree(s->acc32);
    delete s;
}

extern "C" uint64_t spqr_gpu_scratch_bytes(const spqr_gpu_scratch *s) {
    return s ? s->bytes : 0;
}

// The scratch of a call (xbuf: permuted x; ybuf: fp32 y or outlier sums; acc32: split-K sums,
// zero between calls, each kernel leaving it so) is used only while the call runs, so tensors
// whose calls are ordered can share one set sized for the largest.
extern "C" spqr_status spqr_gpu_share_scratch(spqr_gpu_tensor *const *ts, size_t n,
                                              spqr_gpu_scratch **out, spqr_error *err) {
    *out = nullptr;
    uint64_t xb = 0, yb = 0, ab = 0;
    for (size_t i = 0; i < n; i++) {
        if (ts[i]->scratch_shared)
            return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "scratch already shared");
        const uint64_t y = y_scratch_bytes(ts[i]->p);
        xb = ts[i]->xbuf_bytes > xb ? ts[i]->xbuf_bytes : xb;
        yb = y > yb ? y : yb;
        if (ts[i]->acc32) ab = y > ab ? y : ab;
    }
    spqr_gpu_scratch *s = new (std::nothrow) spqr_gpu_scratch();
    if (!s) return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    cudaError_t e = cudaSuccess;
    if (xb) e = cudaMalloc(&s->xbuf, xb);
    if (e == cudaSuccess && yb) e = cudaMalloc(&s->ybuf, yb);
    if (e == cudaSuccess && ab) e = cudaMalloc(&s->acc32, ab);
    if (e == cudaSuccess && ab) e = cudaMemset(s->acc32, 0, ab);
    if (e != cudaSuccess) {
        spqr_gpu_scratch_free(s);
        return cuda_fail(err, e, "allocating a model's shared scratch");
    }
    s->bytes = xb + yb + ab;
    for (size_t i = 0; i < n; i++) {
        spqr_gpu_tensor *t = ts[i];
        const uint64_t y = y_scratch_bytes(t->p);
        dev_release(t, &t->xbuf, t->xbuf_bytes);
        dev_release(t, &t->ybuf, y);
        t->xbuf = s->xbuf, t->ybuf = s->ybuf;
        if (t->acc32) {
            dev_release(t, &t->acc32, y);
            t->acc32 = s->acc32;
        }
        t->scratch_shared = true;
    }
    *out = s;
    return SPQR_OK;
}

extern "C" uint64_t spqr_gpu_device_bytes(const spqr_gpu_tensor *t) {
    return t ? t->dev_bytes : 0;
}

extern "C" uint64_t spqr_gpu_outlier_rounds(const spqr_gpu_tensor *t) {
    return t ? t->nrounds : 0;
}

extern "C" uint64_t spqr_gpu_matmul_bytes(const spqr_gpu_tensor *t, int batch) {
    uint64_t b = 0;
    // the fused path reads the outlier rounds instead of the CSR outliers where it has them
    const bool rounds = mma_rounds(t, batch) && t->path == SPQR_OUTLIERS_FUSED;
    for (int s = 0; s < SPQR_SEC_COUNT; s++) {
        if (s == SPQR_SEC_VALUES) continue; // values are read as fp32 deltas instead
        if (rounds && (s == SPQR_SEC_ROWPTR || s == SPQR_SEC_COLIDX)) continue;
        if (t->tcodes && (s == SPQR_SEC_CODES || s == SPQR_SEC_SCALE || s == SPQR_SEC_ZERO ||
                          (s == SPQR_SEC_STAT2 && t->p.rec_s2)))
            continue; // read in their tiled form instead (counted below, padding included)
        b += t->size[s];
    }
    if (t->tcodes) b += t->tcodes_size;
    if (rounds)
        b += t->nrounds * 512 + (t->p.strips + 1ull) * 4; // rounds, rptr
    else
        b += t->nnz * 4;                                // deltas
    b += (uint64_t)batch * (t->p.cols + t->p.rows) * 2; // x in, y out (16-bit)
    return b;
}

// y = W·x: the launcher of the tensor's bit width (formats hold w 2..8).
template <typename Act>
static cudaError_t launch(spqr_gpu_tensor *t, const Act *x, Act *y, float *y32, int nb,
                          cudaStream_t s) {
    switch (t->p.wbits) {
    case 2:
        return launch_wbits<2, Act>(t, x, y, y32, nb, s);
    case 3:
        return launch_wbits<3, Act>(t, x, y, y32, nb, s);
    case 4:
        return launch_wbits<4, Act>(t, x, y, y32, nb, s);
    case 5:
        return launch_wbits<5, Act>(t, x, y, y32, nb, s);
    case 6:
        return launch_wbits<6, Act>(t, x, y, y32, nb, s);
    case 7:
        return launch_wbits<7, Act>(t, x, y, y32, nb, s);
    default:
        return launch_wbits<8, Act>(t, x, y, y32, nb, s);
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
    const cusparseStatus_t cs = sp_spmm(t, nb, s, false, nullptr);
    if (cs != CUSPARSE_STATUS_SUCCESS)
        return spqr_set_error(err, SPQR_E_CUDA, 0, UINT64_MAX, "cusparseSpMM failed: %s",
                              cusparseGetErrorString(cs));
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
