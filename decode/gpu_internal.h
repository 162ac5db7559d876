/* gpu_internal.h — between the GPU kernels library (kernels/spqr_kernels.cu) and the model code
 * (gpu_model.c, model_plan.c); not part of the public API. */
#ifndef SPQR_GPU_INTERNAL_H
#define SPQR_GPU_INTERNAL_H
#include "spqr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One set of per-call scratch (permuted x, fp32 y or outlier sums, split-K partial sums) for the
 * n tensors of a model, whose calls are therefore ordered: sized for the largest, zeroed where it
 * must start zero; each tensor's own scratch is released and spqr_gpu_device_bytes no longer
 * counts it. *out: the shared set, freed with spqr_gpu_scratch_free after the tensors. On an
 * error the tensors keep their own scratch and *out is NULL. */
typedef struct spqr_gpu_scratch spqr_gpu_scratch;
spqr_status spqr_gpu_share_scratch(spqr_gpu_tensor *const *ts, size_t n, spqr_gpu_scratch **out,
                                   spqr_error *err);
void spqr_gpu_scratch_free(spqr_gpu_scratch *s);
/* Device bytes of the shared set (0 for NULL). */
uint64_t spqr_gpu_scratch_bytes(const spqr_gpu_scratch *s);

/* One device tensor of a model: the file's SpQR tensor member[0], or n > 1 of them stacked in
 * that order (spqr_gpu_upload_stacked). */
typedef struct {
    size_t n;
    size_t member[SPQR_MAX_GROUP];
} spqr_model_entry;
/* The model's tensors (model_plan.c): every SpQR tensor of f in file order, one entry each; with
 * stack, each group of one input (spqr_file_input_group) that spqr_tensor_stack_check accepts is
 * one entry instead, where its first member stands in file order (groups that do not stack stay
 * one entry per member). *out (free()) holds *count entries. Errors: out of memory. */
spqr_status spqr_model_plan(const spqr_file *f, int stack, spqr_model_entry **out, size_t *count,
                            spqr_error *err);

#ifdef __cplusplus
}
#endif
#endif
