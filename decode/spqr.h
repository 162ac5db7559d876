/* spqr.h — the spqr runtime library (libspqr): load .spqr files and run their linear layers.
 *
 * Files are opened through the format library (spqr_format.h, included): memory-mapped, zero copy,
 * structural checks on open and full checksum verification with SPQR_OPEN_VERIFY; tensors by name
 * or index; metadata. A spqr_file is immutable after open: any number of threads may read it.
 *
 * CPU: fused decode-and-multiply for 1..16 vectors, multithreaded.
 * GPU (when built with CUDA): upload tensors or a whole model (sections copied as stored; where the
 * tensor-core kernel applies, codes and first-order statistics are then re-tiled on the device into
 * a layout of the same size, see spqr_gpu_uses_tensor_cores), fused dense+sparse matvec/matmul for
 * batch 1..16 with fp16 or bf16 activations (fp32 accumulation), and dequantize-to-fp16 for large
 * batches through cuBLAS. Every function returns an error code; nothing prints or aborts. */
#ifndef SPQR_H
#define SPQR_H

#include "spqr_format.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SPQR_MAX_BATCH 16
#define SPQR_MAX_GROUP 8 /* tensors in one input group (spqr_file_input_group) */

/* ---- CPU ---- */
/* Y[b][r] = Σ_c W[r][c] · X[b][c] for b < batch (1..16): X is batch x cols, Y batch x rows, fp32,
 * in the original column order (the permutation is applied inside). nthreads <= 0: all cores.
 * The vector path is chosen per call from the CPU and the tensor: "avx512" (AVX-512 with VBMI,
 * beta2 % 16 == 0), "avx2" (AVX2+FMA+F16C, beta2 % 8 == 0) or "scalar"; the environment variable
 * SPQR_CPU_ISA=avx2|scalar caps the choice. */
spqr_status spqr_cpu_matmul(const spqr_file *f, size_t tensor, const float *X, int batch, float *Y,
                            int nthreads, spqr_error *err);
/* The path spqr_cpu_matmul takes for this tensor now ("avx512", "avx2", "scalar"); NULL when the
 * index is out of range or the tensor is not an SpQR tensor. */
const char *spqr_cpu_matmul_path(const spqr_file *f, size_t tensor);
/* The dequantized tensor as fp16 (original order), rounded to nearest even from the exact fp32. */
spqr_status spqr_cpu_dequantize_f16(const spqr_file *f, size_t tensor, uint16_t *out,
                                    spqr_error *err);

/* The tensors that multiply the same input as tensor `first`, by the names of a Hugging Face
 * Llama-family checkpoint: for "<prefix>q_proj.weight" the prefix's q, k and v projections, for
 * "<prefix>gate_proj.weight" gate and up. Their indices go to out (out[0] = first) and their
 * number is returned; 0 when first heads no such group or a member is missing or not an SpQR
 * tensor. Whether they can be stacked is spqr_tensor_stack's to say (spqr_gpu_upload_stacked). */
size_t spqr_file_input_group(const spqr_file *f, size_t first, size_t out[SPQR_MAX_GROUP]);

/* ---- GPU ---- */
typedef enum { SPQR_ACT_F16 = 1, SPQR_ACT_BF16 = 2 } spqr_act_type;
typedef enum { SPQR_OUTLIERS_FUSED = 0, SPQR_OUTLIERS_CUSPARSE = 1 } spqr_outlier_path;
typedef struct spqr_gpu_tensor spqr_gpu_tensor;

/* SPQR_OK when a CUDA device is usable; SPQR_E_UNSUPPORTED without CUDA support or device. */
spqr_status spqr_gpu_available(spqr_error *err);
/* Copies an SpQR tensor's sections to the current device as they are stored (plus the outliers'
 * fp32 corrections, computed on the device), then re-tiles codes and first-order statistics for
 * the tensor-core kernel where it applies (the stored copies of those, and of the second-order
 * statistics where the tiles hold them, are released; while both exist, device memory peaks at
 * about twice the tensor's code bytes) and builds the outlier rounds (spqr_gpu_outlier_rounds;
 * where they serve every batch, the corrections are released until the cuSPARSE path is
 * selected). */
spqr_status spqr_gpu_upload(const spqr_file *f, size_t tensor, spqr_gpu_tensor **out,
                            spqr_error *err);
/* n SpQR tensors of f that multiply the same input (a layer's q/k/v projections, or gate/up)
 * uploaded as one tensor: their rows stacked in the order given (spqr_tensor_stack, which says what
 * must match: columns, bit widths, betas, the permutation; all but the last a multiple of beta1
 * rows), so that one spqr_gpu_matmul writes all their outputs, y[b] = [W_t0 x[b]; W_t1 x[b]; ...]
 * (batch b's block of sum-of-rows entries). One call permutes x once and fills the GPU with one
 * grid where n calls would each pay a launch, a permute and a partial last wave (bench/NOTES.md
 * v7o). The host holds a stacked copy of the sections during the upload. */
spqr_status spqr_gpu_upload_stacked(const spqr_file *f, const size_t *tensors, size_t n,
                                    spqr_gpu_tensor **out, spqr_error *err);
void spqr_gpu_free(spqr_gpu_tensor *t);
/* Default SPQR_OUTLIERS_FUSED (measured faster; see bench/NOTES.md). Selecting
 * SPQR_OUTLIERS_CUSPARSE the first time makes that path's state (handle, int32 indices, the SpMM
 * workspace, the largest over batch 1..16, and the fp32 corrections where upload released them),
 * so a matmul call itself allocates nothing. */
spqr_status spqr_gpu_set_outlier_path(spqr_gpu_tensor *t, spqr_outlier_path path, spqr_error *err);
/* y = W x for batch 1..16: x device pointer batch x cols, y batch x rows, both of type act.
 * stream: a cudaStream_t or NULL. Calls on one tensor use its device scratch (the permuted x,
 * partial sums), so they must be ordered (one stream, or synchronised); so must calls on the
 * tensors of one spqr_gpu_model, which share one scratch; other tensors are independent. A call may
 * be captured into a CUDA graph (stream capture on a non-default stream, on either outlier path);
 * each replay computes with the x its buffer holds then. Precision: the tensor-core kernel decodes
 * weights to fp16 (a few fp16 roundings of the group's terms, e.g. ŵ = (q·2^-17)·fp16(scale·2^17) +
 * fp16(−scale·zero) for w = 3, 2^-16 and 2^16 for w = 2; with outlier rounds, each outlier's
 * correction to ŵ rounded to fp16) and accumulates in fp32; tests/gpu bound the relative RMS error
 * against the exact product by 1e-3 (f16) and 8e-3 (bf16).
 */
spqr_status spqr_gpu_matmul(spqr_gpu_tensor *t, const void *x, void *y, int batch,
                            spqr_act_type act, void *stream, spqr_error *err);
/* Dequantizes into w (device, rows x cols fp16, original column order) for cuBLAS GEMM. */
spqr_status spqr_gpu_dequantize_f16(spqr_gpu_tensor *t, void *w, void *stream, spqr_error *err);
/* 1 when the tensor runs on the tensor-core kernel (its codes and first-order statistics were
 * re-tiled on the device at upload, bench/NOTES.md v6), 0 when it kept the stored layout (β2 < 8;
 * β2 = 8 with fp16 statistics, β1 < 16 or w > 4; or statistics outside what an fp16 decode
 * represents faithfully: |ŵ| bound >= 60000,
 * |zero| > 512, a nonzero |scale| < 2^-14, or |scale| >= 0.4997 for w = 3, 0.9995 for w = 2),
 * which the fp32 kernels run. */
int spqr_gpu_uses_tensor_cores(const spqr_gpu_tensor *t);
/* Outlier rounds built at upload (0: none). A round adds up to 16 outliers of each pair of rows
 * (r, r + 8) of a 16-row strip by tensor-core multiplies (one at batch 1, eight at batch 2-8, 16
 * at batch 9-16). The fused path uses them at batch 1-8, and at batch 9-16 while cols <= 8192 or
 * where the statistics have β1 >= 16 and β2 >= 16. Built for
 * tensor-core tensors with s-bit statistics and at most 32768 columns, while they take
 * at most 16 bytes per outlier (at least a quarter of the slots used) and each outlier's
 * correction fits fp16; otherwise the kernels walk the CSR outliers. 512 bytes of device memory
 * each, on top of the CSR outliers (fp16 values and indices, which dequantize reads). The fp32
 * corrections (4 bytes per outlier, which the batches without rounds and cuSPARSE read) are kept
 * only where some batch of the fused path has no rounds, or once the cuSPARSE path is selected. */
uint64_t spqr_gpu_outlier_rounds(const spqr_gpu_tensor *t);
/* Device memory the tensor holds now, in bytes as allocated by the library (the driver rounds
 * each allocation up to its granularity; the cuSPARSE handle's own state is not counted): its
 * sections, tiles, outlier rounds and corrections, per-tensor scratch for up to 16 vectors (x,
 * partial sums: about 128·rows + 68·cols bytes, 72·cols at β2 = 8), and the cuSPARSE path's state
 * once selected. 0 for NULL. */
uint64_t spqr_gpu_device_bytes(const spqr_gpu_tensor *t);
/* Bytes the matmul must read from device memory for batch b (weights, statistics, outliers,
 * permutation, x, y): the denominator of effective bandwidth. */
uint64_t spqr_gpu_matmul_bytes(const spqr_gpu_tensor *t, int batch);

/* A whole model: every SpQR tensor of a file uploaded as spqr_gpu_upload does (file order),
 * found by name. Plain tensors (embeddings, norms) stay with the app. On an error nothing stays
 * on the device and the message names the file and tensor. The model does not refer to f once
 * uploaded; its tensors belong to it (spqr_gpu_model_free frees them). Its tensors share one set
 * of per-call scratch, sized for the largest (a tensor's own is about 128·rows + 68·cols bytes),
 * so their calls must be ordered (spqr_gpu_matmul): one stream, as a forward pass runs. */
typedef struct spqr_gpu_model spqr_gpu_model;
spqr_status spqr_gpu_model_upload(const spqr_file *f, spqr_gpu_model **out, spqr_error *err);
/* Options of spqr_gpu_model_upload_opts. STACK_INPUTS: each group of linears of one input
 * (spqr_file_input_group: a layer's q/k/v, its gate/up) that stacks (spqr_tensor_stack_check) is
 * one tensor of the model, uploaded as spqr_gpu_upload_stacked does, where its first member stands
 * in file order: one call then computes the whole group (bench/NOTES.md v7o: 1.1-1.7x faster at
 * batch 1). A group that does not stack (its permutations differ, say) stays one tensor per
 * linear. Find a linear's tensor and its output rows with spqr_gpu_model_locate. */
#define SPQR_GPU_MODEL_STACK_INPUTS 1u
/* spqr_gpu_model_upload with options (0: the same as it); SPQR_E_ARG for an unknown option. */
spqr_status spqr_gpu_model_upload_opts(const spqr_file *f, unsigned opts, spqr_gpu_model **out,
                                       spqr_error *err);
void spqr_gpu_model_free(spqr_gpu_model *m);
/* Number of the model's tensors (a stacked group counts once). */
size_t spqr_gpu_model_count(const spqr_gpu_model *m);
/* Device memory of the model: its tensors' (spqr_gpu_device_bytes, which for a model's tensor
 * leaves out the shared scratch) and the shared scratch. */
uint64_t spqr_gpu_model_device_bytes(const spqr_gpu_model *m);
/* The i-th tensor (upload order) and its name (a stacked tensor's: its first member's), NULL past
 * the end. */
spqr_gpu_tensor *spqr_gpu_model_tensor(const spqr_gpu_model *m, size_t i);
const char *spqr_gpu_model_name(const spqr_gpu_model *m, size_t i);
/* The linears in tensor i: 1, or a stacked group's members (0 past the end); member k's name
 * (NULL past the end), in stacking order: its output rows follow those of the members before it. */
size_t spqr_gpu_model_members(const spqr_gpu_model *m, size_t i);
const char *spqr_gpu_model_member_name(const spqr_gpu_model *m, size_t i, size_t k);
/* The tensor called name; SPQR_E_NOTFOUND (naming it) when the model has none, SPQR_E_ARG when it
 * is stacked with others (its tensor's output is more than its rows: use spqr_gpu_model_locate). */
spqr_status spqr_gpu_model_find(const spqr_gpu_model *m, const char *name, spqr_gpu_tensor **out,
                                spqr_error *err);
/* Where the linear called name runs: *t, the model tensor that computes it, whose output rows
 * [*row0, *row0 + *rows) of each batch vector's are this linear's (0 and all of them when it is
 * not stacked). SPQR_E_NOTFOUND (naming it) when the model has none. */
spqr_status spqr_gpu_model_locate(const spqr_gpu_model *m, const char *name, spqr_gpu_tensor **t,
                                  uint64_t *row0, uint64_t *rows, spqr_error *err);

#ifdef __cplusplus
}
#endif
#endif
