/* gpu_stub.c — the GPU entry points of a CPU-only build: each returns SPQR_E_UNSUPPORTED. */
#include "gpu_internal.h"
#include "spqr.h"

static spqr_status no_cuda(spqr_error *err) {
    return spqr_set_error(err, SPQR_E_UNSUPPORTED, 0, UINT64_MAX, "libspqr was built without CUDA");
}
spqr_status spqr_gpu_available(spqr_error *err) {
    return no_cuda(err);
}
spqr_status spqr_gpu_upload(const spqr_file *f, size_t i, spqr_gpu_tensor **out, spqr_error *err) {
    (void)f, (void)i;
    *out = NULL;
    return no_cuda(err);
}
spqr_status spqr_gpu_upload_stacked(const spqr_file *f, const size_t *tensors, size_t n,
                                    spqr_gpu_tensor **out, spqr_error *err) {
    (void)f, (void)tensors, (void)n;
    *out = NULL;
    return no_cuda(err);
}
void spqr_gpu_free(spqr_gpu_tensor *t) {
    (void)t;
}
spqr_status spqr_gpu_set_outlier_path(spqr_gpu_tensor *t, spqr_outlier_path p, spqr_error *err) {
    (void)t, (void)p;
    return no_cuda(err);
}
spqr_status spqr_gpu_matmul(spqr_gpu_tensor *t, const void *x, void *y, int b, spqr_act_type a,
                            void *s, spqr_error *err) {
    (void)t, (void)x, (void)y, (void)b, (void)a, (void)s;
    return no_cuda(err);
}
spqr_status spqr_gpu_dequantize_f16(spqr_gpu_tensor *t, void *w, void *s, spqr_error *err) {
    (void)t, (void)w, (void)s;
    return no_cuda(err);
}
uint64_t spqr_gpu_matmul_bytes(const spqr_gpu_tensor *t, int batch) {
    (void)t, (void)batch;
    return 0;
}
int spqr_gpu_uses_tensor_cores(const spqr_gpu_tensor *t) {
    (void)t;
    return 0;
}
uint64_t spqr_gpu_outlier_rounds(const spqr_gpu_tensor *t) {
    (void)t;
    return 0;
}
uint64_t spqr_gpu_device_bytes(const spqr_gpu_tensor *t) {
    (void)t;
    return 0;
}
spqr_status spqr_gpu_share_scratch(spqr_gpu_tensor *const *ts, size_t n, spqr_gpu_scratch **out,
                                   spqr_error *err) {
    (void)ts, (void)n;
    *out = NULL;
    return no_cuda(err);
}
void spqr_gpu_scratch_free(spqr_gpu_scratch *s) {
    (void)s;
}
uint64_t spqr_gpu_scratch_bytes(const spqr_gpu_scratch *s) {
    (void)s;
    return 0;
}
