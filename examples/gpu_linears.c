/* gpu_linears.c — example app: load a .spqr model with libspqr, upload all of its SpQR linears to
 * the GPU at once (spqr_gpu_model_upload), and multiply a fixed fp16 vector through each (looked
 * up by name), checking each result against the CPU decoder. Then the linears that share an input
 * (each layer's q/k/v and gate/up, spqr_file_input_group) uploaded stacked, one call per group
 * (spqr_gpu_upload_stacked), checked the same way.
 * Build against an installed libspqr:
 *   cc gpu_linears.c $(pkg-config --cflags --libs spqr) -o gpu_linears
 * Usage: gpu_linears MODEL.spqr */
#include <spqr.h>

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static uint16_t *fixed_x(uint64_t cols, float *x) { /* the fixed vector, fp16 and its fp32 */
    uint16_t *xh = malloc(cols * 2);
    for (uint64_t c = 0; c < cols; c++) {
        xh[c] = spqr_f32_to_f16((float)((c * 2654435761u) % 1000) / 1000.0f - 0.5f);
        x[c] = spqr_f16_to_f32(xh[c]);
    }
    return xh;
}

/* One call of t on the fixed vector (after a warm-up): its relative error against y_cpu, and its
 * time in *us. */
static double run_once(spqr_gpu_tensor *t, uint64_t rows, uint64_t cols, const float *y_cpu,
                       float *us, spqr_status *st) {
    float *x = malloc(cols * 4);
    uint16_t *xh = fixed_x(cols, x), *yh = malloc(rows * 2);
    void *dx, *dy;
    spqr_error err;
    cudaMalloc(&dx, cols * 2), cudaMalloc(&dy, rows * 2);
    cudaMemcpy(dx, xh, cols * 2, cudaMemcpyHostToDevice);
    cudaEvent_t a, b;
    cudaEventCreate(&a), cudaEventCreate(&b);
    spqr_gpu_matmul(t, dx, dy, 1, SPQR_ACT_F16, NULL, &err); /* warm-up */
    cudaEventRecord(a, 0);
    *st = spqr_gpu_matmul(t, dx, dy, 1, SPQR_ACT_F16, NULL, &err);
    cudaEventRecord(b, 0);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    *us = ms * 1e3f;
    cudaMemcpy(yh, dy, rows * 2, cudaMemcpyDeviceToHost);
    double num = 0, den = 0;
    for (uint64_t r = 0; r < rows; r++) {
        double d = spqr_f16_to_f32(yh[r]) - y_cpu[r];
        num += d * d, den += (double)y_cpu[r] * y_cpu[r];
    }
    cudaEventDestroy(a), cudaEventDestroy(b);
    cudaFree(dx), cudaFree(dy), free(xh), free(yh), free(x);
    return sqrt(num / (den > 0 ? den : 1));
}

int main(int argc, char **argv) {
    if (argc != 2) return fprintf(stderr, "usage: gpu_linears MODEL.spqr\n"), 2;
    spqr_error err = {0};
    if (spqr_gpu_available(&err)) return fprintf(stderr, "%s\n", err.msg), 77;
    spqr_file *f = spqr_file_open(argv[1], SPQR_OPEN_VERIFY, &err);
    if (!f) return fprintf(stderr, "%s\n", err.msg), 1;
    spqr_gpu_model *m;
    if (spqr_gpu_model_upload(f, &m, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    uint64_t stored = 0; /* the SpQR tensors' section bytes, as the format stores them */
    for (size_t i = 0; i < spqr_file_tensor_count(f); i++) {
        uint64_t sizes[SPQR_SEC_COUNT];
        const spqr_tensor_info *in = spqr_file_tensor_info(f, i);
        if (in->kind == SPQR_KIND_SPQR && spqr_section_sizes(in, sizes, NULL) == SPQR_OK)
            for (int s = 0; s < SPQR_SEC_COUNT; s++) stored += sizes[s];
    }
    printf("%zu SpQR linears on the GPU: %.2f MiB of device memory (their sections: %.2f MiB)\n",
           spqr_gpu_model_count(m), spqr_gpu_model_device_bytes(m) / 1048576.0, stored / 1048576.0);
    int bad = 0;
    for (size_t i = 0; i < spqr_file_tensor_count(f); i++) {
        const spqr_tensor_info *in = spqr_file_tensor_info(f, i);
        if (in->kind != SPQR_KIND_SPQR) continue;
        const uint64_t rows = in->dims[0], cols = in->dims[1];
        spqr_gpu_tensor *t;
        if (spqr_gpu_model_find(m, spqr_file_tensor_name(f, i), &t, &err))
            return fprintf(stderr, "%s\n", err.msg), 1;
        float *x = malloc(cols * 4), *y = malloc(rows * 4), us;
        free(fixed_x(cols, x));
        spqr_cpu_matmul(f, i, x, 1, y, 0, &err);
        spqr_status st;
        const double rel = run_once(t, rows, cols, y, &us, &st);
        bad |= st != SPQR_OK || !(rel < 1e-3);
        printf("%-48s %6llux%-6llu %8.1f us  rel.err vs CPU %.2e  %s\n",
               spqr_file_tensor_name(f, i), (unsigned long long)rows, (unsigned long long)cols, us,
               rel, spqr_gpu_uses_tensor_cores(t) ? "tensor cores" : "fp32 kernels");
        free(x), free(y);
    }
    spqr_gpu_model_free(m); /* an app keeps one of the two forms on the device */
    /* the model with each group of linears of one input stacked: y = [W_0 x; W_1 x; ...] in one
     * call, each linear's rows found by name */
    spqr_gpu_model *ms;
    if (spqr_gpu_model_upload_opts(f, SPQR_GPU_MODEL_STACK_INPUTS, &ms, &err))
        return fprintf(stderr, "%s\n", err.msg), 1;
    printf("\nthe same, the linears of one input stacked: %zu tensors on the GPU, %.2f MiB\n",
           spqr_gpu_model_count(ms), spqr_gpu_model_device_bytes(ms) / 1048576.0);
    for (size_t i = 0; i < spqr_gpu_model_count(ms); i++) {
        const size_t n = spqr_gpu_model_members(ms, i);
        if (n < 2) continue;
        spqr_gpu_tensor *t;
        uint64_t row0, rows, all = 0;
        for (size_t k = 0; k < n; k++) /* the stacked output: every member's rows */
            spqr_gpu_model_locate(ms, spqr_gpu_model_member_name(ms, i, k), &t, &row0, &rows, &err),
                all += rows;
        const size_t first = (size_t)spqr_file_find(f, spqr_gpu_model_name(ms, i));
        const uint64_t cols = spqr_file_tensor_info(f, first)->dims[1];
        float *x = malloc(cols * 4), *y = malloc(all * 4), us;
        free(fixed_x(cols, x));
        for (size_t k = 0; k < n; k++) { /* each linear's CPU product, at its rows */
            const char *name = spqr_gpu_model_member_name(ms, i, k);
            spqr_gpu_model_locate(ms, name, &t, &row0, &rows, &err);
            spqr_cpu_matmul(f, (size_t)spqr_file_find(f, name), x, 1, y + row0, 0, &err);
        }
        spqr_status st;
        const double rel = run_once(t, all, cols, y, &us, &st);
        bad |= st != SPQR_OK || !(rel < 1e-3);
        printf("%-48s %6llux%-6llu %8.1f us  rel.err vs CPU %.2e  (%zu linears stacked)\n",
               spqr_gpu_model_name(ms, i), (unsigned long long)all, (unsigned long long)cols, us,
               rel, n);
        free(x), free(y);
    }
    spqr_gpu_model_free(ms);
    spqr_file_close(f);
    return bad;
}
