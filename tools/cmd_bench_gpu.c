/* cmd_bench_gpu.c — `spqr bench --gpu` (also the bench/gpu/bench_gpu program): the fused GPU
 * matmul against cuBLAS fp16 GEMV/GEMM, same process, same shapes (bench/NOTES.md, METHOD).
 *
 * Tensors: synthetic ones by default (shapes 4096², 11008x4096, 4096x11008, 8192², 28672x8192,
 * 8192x28672; config 0 = w3 s3 β16 1 % outliers act-order, 1 = w4 s3 β16 no outliers; only when
 * asked for: 2 = w3 no outliers, 3 = w2 no outliers, 4 = w3 1 % β2 = 8, 5 = the same with β1 = 8),
 * or with --file every SpQR tensor of a .spqr file (each timed alone, then their sum: the linears
 * of one decode step), the cuBLAS side multiplying the tensor's own weights dequantized to fp16.
 * With --stack (or --stacked, four groups of Llama shapes): groups of synthetic tensors that share
 * one input, like a layer's q/k/v or gate/up, called one after another against one call on the
 * group uploaded stacked (spqr_gpu_upload_stacked), and cuBLAS the same two ways.
 *
 * Method, the same for every row: a clock warm-up (150 fp16 GEMMs of 8192³) first; per row the
 * median over 7 repeats of the mean of 50 calls timed with events, launched from the host or
 * (--graph) captured into one CUDA graph; both sides rotate over copies of their buffers so that
 * the working set exceeds L2 (about 200 MB; at most 32 copies, rows where even that stays within
 * twice the L2 are marked "L2"); effective bandwidth = spqr_gpu_matmul_bytes / time, as a % of the
 * device-to-device copy bandwidth measured at start (bytes read + written).
 * Exit status: 0, 1 on an error (named on stderr), 2 on a usage error, 77 where no GPU is usable
 * ("SKIP: ..." on stdout). */
#define _POSIX_C_SOURCE 200809L
#include "bench_gpu.h"
#include "cli.h"
#include "sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROTATE_BYTES (200ull << 20) /* working set each side rotates over */
#define MAX_COPIES 32
#define CALLS 50
#define REPEATS 7

static const char *const usage_text =
    "usage: spqr bench --gpu [--quick] [--graph|--bytes] [--batch N] [--config 0..5]\n"
    "                        [--shape ROWSxCOLS]... [--file MODEL.spqr]\n"
    "                        [--stack R1xC,R2xC,...]... [--stacked]\n"
    "  --quick: the first two shapes; --batch: one batch of 1..16 (default 1, 4, 16);\n"
    "  --config: one synthetic configuration; --shape (repeatable, up to 16): these shapes;\n"
    "  --file: every SpQR tensor of MODEL.spqr instead of synthetic ones, then their sum;\n"
    "  --stack (repeatable, up to 8 groups of up to 8): tensors of one input, called\n"
    "  separately and stacked into one; --stacked: Llama-7B and -70B q/k/v and gate/up;\n"
    "  --graph: the calls captured into one CUDA graph; --bytes: no timing, one line\n"
    "  \"BYTES n\" per tensor (spqr_gpu_matmul_bytes at the batch)\n";

#if SPQR_HAVE_CUDA

int bench_cuda_failed(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    fprintf(stderr, "spqr bench --gpu: %s: %s\n", what, cudaGetErrorString(e));
    return 1;
}
static int cublas_failed(cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    fprintf(stderr, "spqr bench --gpu: %s: cuBLAS status %d\n", what, (int)s);
    return 1;
}

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int bench_call_spqr(bench_row *c, int i) {
    const int n = c->group ? c->group : 1;
    for (int k = 0; k < n; k++) {
        spqr_error err;
        void *y = (char *)c->y[i % 8] + 2ull * (uint64_t)c->batch * (uint64_t)c->yrow[k];
        if (spqr_gpu_matmul(c->t[(i * n + k) % c->nt], c->x[i % 8], y, c->batch, SPQR_ACT_F16, c->s,
                            &err)) {
            fprintf(stderr, "spqr bench --gpu: %s\n", err.msg);
            return 1;
        }
    }
    return 0;
}

int bench_call_cublas(bench_row *c, int i) {
    const float one = 1.f, zero = 0.f;
    const int n = c->group ? c->group : 1;
    for (int k = 0; k < n; k++) {
        const int rows = c->group ? c->grows[k] : c->rows;
        void *y = (char *)c->y[i % 8] + 2ull * (uint64_t)c->batch * (uint64_t)c->yrow[k];
        /* row-major W [rows x cols] is column-major Wᵀ: y = op(A) x, A = W (cols x rows), op = T */
        if (cublas_failed(cublasGemmEx(c->h, CUBLAS_OP_T, CUBLAS_OP_N, rows, c->batch, c->cols,
                                       &one, c->W[(i * n + k) % c->nw], CUDA_R_16F, c->cols,
                                       c->x[i % 8], CUDA_R_16F, c->cols, &zero, y, CUDA_R_16F, rows,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                          "cublasGemmEx"))
            return 1;
    }
    return 0;
}

/* *us = the median over REPEATS of the mean time of CALLS calls on c->s; 0, or 1 (printed) */
int bench_time_calls(call_fn fn, bench_row *c, int graph, float *us) {
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    cudaEvent_t a = NULL, b = NULL;
    float t[REPEATS];
    int rc = 1;
    if (graph) {
        if (bench_cuda_failed(cudaStreamBeginCapture(c->s, cudaStreamCaptureModeThreadLocal),
                              "stream capture"))
            return 1;
        int bad = 0;
        for (int i = 0; i < CALLS && !bad; i++) bad = fn(c, i);
        const cudaError_t e = cudaStreamEndCapture(c->s, &g);
        if (bad || bench_cuda_failed(e, "stream capture") ||
            bench_cuda_failed(cudaGraphInstantiate(&ge, g, 0), "graph instantiate") ||
            bench_cuda_failed(cudaGraphLaunch(ge, c->s), "graph launch"))
            goto done;
    } else {
        for (int i = 0; i < 10; i++)
            if (fn(c, i)) goto done;
    }
    if (bench_cuda_failed(cudaDeviceSynchronize(), "warm-up calls") ||
        bench_cuda_failed(cudaEventCreate(&a), "event") ||
        bench_cuda_failed(cudaEventCreate(&b), "event"))
        goto done;
    for (int r = 0; r < REPEATS; r++) {
        cudaEventRecord(a, c->s);
        if (graph) {
            if (bench_cuda_failed(cudaGraphLaunch(ge, c->s), "graph launch")) goto done;
        } else {
            for (int i = 0; i < CALLS; i++)
                if (fn(c, i)) goto done;
        }
        cudaEventRecord(b, c->s);
        float ms = 0;
        if (bench_cuda_failed(cudaEventSynchronize(b), "timed calls") ||
            bench_cuda_failed(cudaEventElapsedTime(&ms, a, b), "event time"))
            goto done;
        t[r] = ms * 1000.0f / (float)CALLS;
    }
    qsort(t, REPEATS, sizeof t[0], cmpf);
    *us = t[REPEATS / 2];
    rc = 0;
done:
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    return rc;
}

/* bytes read + written per second by device-to-device copies of 1 GiB; 0 on failure */
static double copy_bandwidth(void) {
    const size_t n = 1ull << 30;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double bw = 0;
    float ms = 0;
    if (bench_cuda_failed(cudaMalloc(&a, n), "copy bandwidth buffer") ||
        bench_cuda_failed(cudaMalloc(&b, n), "copy bandwidth buffer") ||
        bench_cuda_failed(cudaMemset(a, 1, n), "memset") ||
        bench_cuda_failed(cudaEventCreate(&e0), "event") ||
        bench_cuda_failed(cudaEventCreate(&e1), "event") ||
        bench_cuda_failed(cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice), "copy"))
        goto done;
    cudaEventRecord(e0, 0);
    for (int i = 0; i < 10; i++) cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0);
    cudaEventRecord(e1, 0);
    if (bench_cuda_failed(cudaEventSynchronize(e1), "copy") ||
        bench_cuda_failed(cudaEventElapsedTime(&ms, e0, e1), "event time"))
        goto done;
    bw = 2.0 * 10 * (double)n / (ms * 1e-3);
done:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a), cudaFree(b);
    return bw;
}

/* Clocks up before the first measurement: ~0.3 s of fp16 GEMMs (8192³, compute-bound). Without it
 * the first shape's rows (spqr and cuBLAS alike) measured up to 20 % slow on the H100. */
static int warm_up(cublasHandle_t h) {
    const int n = 8192;
    void *m = NULL;
    if (bench_cuda_failed(cudaMalloc(&m, 3ull * n * n * 2), "warm-up buffer")) return 1;
    int rc = bench_cuda_failed(cudaMemset(m, 0, 3ull * n * n * 2), "memset");
    const char *a = m, *b = a + (size_t)n * n * 2;
    char *c = (char *)m + 2ull * n * n * 2;
    const float one = 1.f, zero = 0.f;
    for (int i = 0; i < 150 && !rc; i++)
        rc = cublas_failed(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16F,
                                        n, b, CUDA_R_16F, n, &zero, c, CUDA_R_16F, n,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                           "warm-up GEMM");
    if (!rc) rc = bench_cuda_failed(cudaDeviceSynchronize(), "warm-up");
    cudaFree(m);
    return rc;
}

void bench_row_free(bench_row *c) {
    for (int i = 0; i < c->nt && c->t; i++) spqr_gpu_free(c->t[i]);
    for (int i = 0; i < c->nw && c->W; i++) cudaFree(c->W[i]);
    for (int i = 0; i < 8; i++) cudaFree(c->x[i]), cudaFree(c->y[i]);
    free(c->t), free(c->W);
}

/* copies of `bytes` that make the rotated working set about ROTATE_BYTES (1..MAX_COPIES) */
int bench_copies_for(uint64_t bytes) {
    const uint64_t n = ROTATE_BYTES / (bytes ? bytes : 1) + 1;
    return n > MAX_COPIES ? MAX_COPIES : (int)n;
}

/* Times tensor ti of f at every batch of R against cuBLAS on its own weights (dense: with
 * `dense_fill`, a constant fp16 pattern instead of the dequantized weights, as for the synthetic
 * tensors) and prints one row per batch after `label` (the row's first cells). */
static int bench_tensor(bench_run *R, const spqr_file *f, size_t ti, const char *label,
                        int dense_fill) {
    const spqr_tensor_info *in = spqr_file_tensor_info(f, ti);
    bench_row c = {0};
    spqr_error err = {0};
    int rc = 1;
    if (in->dims[0] > (1u << 30) || in->dims[1] > (1u << 30)) { /* (cuBLAS takes int sizes) */
        fprintf(stderr, "spqr bench --gpu: tensor %zu: %llux%llu is past this benchmark's 2^30\n",
                ti, (unsigned long long)in->dims[0], (unsigned long long)in->dims[1]);
        return 1;
    }
    c.rows = (int)in->dims[0], c.cols = (int)in->dims[1], c.h = R->h, c.s = R->s;
    c.t = calloc(MAX_COPIES, sizeof *c.t);
    c.W = calloc(MAX_COPIES, sizeof *c.W);
    if (!c.t || !c.W) {
        fprintf(stderr, "spqr bench --gpu: out of memory\n");
        goto done;
    }
    if (spqr_gpu_upload(f, ti, &c.t[0], &err)) goto spqr_error;
    c.nt = 1;
    if (R->bytes_only) {
        printf("BYTES %llu\n", (unsigned long long)spqr_gpu_matmul_bytes(c.t[0], R->batches[0]));
        rc = 0;
        goto done;
    }
    uint64_t tbytes = 0; /* the tensor's section bytes: the copies of it to rotate over */
    for (int sec = 0; sec < SPQR_SEC_COUNT; sec++) {
        uint64_t z = 0;
        spqr_file_section(f, ti, (spqr_section_id)sec, &z);
        tbytes += z;
    }
    const int nt = bench_copies_for(tbytes);
    for (; c.nt < nt; c.nt++)
        if (spqr_gpu_upload(f, ti, &c.t[c.nt], &err)) goto spqr_error;
    const uint64_t wbytes = (uint64_t)c.rows * (uint64_t)c.cols * 2;
    const int nw = bench_copies_for(wbytes);
    for (; c.nw < nw; c.nw++) {
        if (bench_cuda_failed(cudaMalloc(&c.W[c.nw], wbytes), "cuBLAS weights")) goto done;
        if (c.nw == 0 && !dense_fill) {
            if (spqr_gpu_dequantize_f16(c.t[0], c.W[0], NULL, &err)) goto spqr_error;
        } else if (c.nw == 0) { /* 0x1111: a small normal fp16, not zero */
            if (bench_cuda_failed(cudaMemset(c.W[0], 0x11, wbytes), "memset")) goto done;
        } else if (bench_cuda_failed(
                       cudaMemcpy(c.W[c.nw], c.W[0], wbytes, cudaMemcpyDeviceToDevice), "copy")) {
            goto done;
        }
    }
    if (bench_row_buffers(&c, (uint64_t)c.rows)) goto done;
    /* within twice the L2 even rotated: the row's times include L2 hits */
    const int l2 = (uint64_t)c.nt * tbytes < 2 * R->l2_bytes;
    for (int bi = 0; bi < R->nbatch; bi++) {
        c.batch = R->batches[bi];
        float ts, tsp = -1, tc;
        for (int i = 0; i < c.nt; i++) spqr_gpu_set_outlier_path(c.t[i], SPQR_OUTLIERS_FUSED, &err);
        if (bench_time_calls(bench_call_spqr, &c, R->graph, &ts)) goto done;
        if (in->nnz) {
            for (int i = 0; i < c.nt; i++)
                if (spqr_gpu_set_outlier_path(c.t[i], SPQR_OUTLIERS_CUSPARSE, &err))
                    goto spqr_error;
            if (bench_time_calls(bench_call_spqr, &c, R->graph, &tsp)) goto done;
            for (int i = 0; i < c.nt; i++)
                spqr_gpu_set_outlier_path(c.t[i], SPQR_OUTLIERS_FUSED, &err);
        }
        if (bench_time_calls(bench_call_cublas, &c, R->graph, &tc)) goto done;
        const double bytes = (double)spqr_gpu_matmul_bytes(c.t[0], c.batch);
        char spbuf[32] = "-";
        if (tsp > 0) snprintf(spbuf, sizeof spbuf, "%.1f", tsp);
        printf("| %s | %d | %.1f%s | %.0f | %.0f%% | %s | %.1f | %.2fx |\n", label, c.batch, ts,
               l2 ? " L2" : "", bytes / (ts * 1e-6) / 1e9, 100.0 * bytes / (ts * 1e-6) / R->copy_bw,
               spbuf, tc, tc / ts);
        fflush(stdout);
        R->sum_spqr[bi] += ts, R->sum_cublas[bi] += tc;
        if (R->tensor_us) R->tensor_us[ti][bi] = ts;
    }
    rc = 0;
    goto done;
spqr_error:
    fprintf(stderr, "spqr bench --gpu: %s\n", err.msg);
done:
    bench_row_free(&c);
    return rc;
}

/* The synthetic configuration cfg (see the top of this file) for a rows x cols tensor. */
spqr_tensor_info bench_synthetic_info(int rows, int cols, int cfg) {
    return (spqr_tensor_info){.kind = SPQR_KIND_SPQR,
                              .ndim = 2,
                              .dims = {(uint64_t)rows, (uint64_t)cols},
                              .wbits = cfg == 1   ? 4
                                       : cfg == 3 ? 2
                                                  : 3,
                              .stat_bits = 3,
                              .beta1 = cfg == 5 ? 8 : 16,
                              .beta2 = cfg >= 4 ? 8 : 16,
                              .nnz =
                                  cfg == 0 || cfg >= 4 ? (uint64_t)rows * (uint64_t)cols / 100 : 0,
                              .flags = SPQR_FLAG_PERM};
}
void bench_synthetic_label(const spqr_tensor_info *in, int cfg, char *buf, size_t n) {
    snprintf(buf, n, "w%u s3 b%s %s", in->wbits,
             cfg == 5   ? "8/8"
             : cfg == 4 ? "16/8"
                        : "16",
             in->nnz ? "1% outl" : "0 outl");
}
void bench_synthetic_path(char *path, size_t n, int rows, int cols, int cfg) {
    const char *tmp = getenv("TMPDIR");
    snprintf(path, n, "%s/spqr-bench-gpu-%ld-%dx%d-%d.spqr", tmp && *tmp ? tmp : "/tmp",
             (long)getpid(), rows, cols, cfg);
}

/* The synthetic tensor of shape rows x cols, configuration cfg, written to a temporary file. */
static int bench_synthetic(bench_run *R, int rows, int cols, int cfg) {
    spqr_tensor_info in = bench_synthetic_info(rows, cols, cfg);
    char path[512];
    bench_synthetic_path(path, sizeof path, rows, cols, cfg);
    spqr_error err = {0};
    spqr_file *f = spqr_sample_open_tensor(path, &in, 7, &err);
    if (!f) {
        fprintf(stderr, "spqr bench --gpu: %s\n", err.msg);
        unlink(path);
        return 1;
    }
    char label[96], cl[48];
    bench_synthetic_label(&in, cfg, cl, sizeof cl);
    snprintf(label, sizeof label, "%dx%d | %s", rows, cols, cl);
    const int rc = bench_tensor(R, f, 0, label, 1);
    spqr_file_close(f);
    unlink(path);
    return rc;
}

/* x and y buffers of a row: 16 vectors of cols and of rows fp16 values, 8 of each */
int bench_row_buffers(bench_row *c, uint64_t rows) {
    for (int i = 0; i < 8; i++)
        if (bench_cuda_failed(cudaMalloc(&c->x[i], 16ull * c->cols * 2), "x") ||
            bench_cuda_failed(cudaMalloc(&c->y[i], 16ull * rows * 2), "y") ||
            bench_cuda_failed(cudaMemset(c->x[i], 0x22, 16ull * c->cols * 2), "memset"))
            return 1;
    return 0;
}

/* Every SpQR tensor of the file, then the sums per batch; then the file's groups of one input
 * stacked, and the sums with them stacked. */
static int bench_file(bench_run *R, const spqr_file *f) {
    size_t n = 0;
    int rc = 1;
    R->tensor_us = calloc(spqr_file_tensor_count(f) + 1, sizeof *R->tensor_us);
    if (!R->tensor_us) {
        fprintf(stderr, "spqr bench --gpu: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < spqr_file_tensor_count(f); i++) {
        const spqr_tensor_info *in = spqr_file_tensor_info(f, i);
        if (in->kind != SPQR_KIND_SPQR) continue;
        char label[320];
        snprintf(label, sizeof label, "%.160s | %llux%llu w%u s%u b%u/%u %.2f%% outl",
                 spqr_file_tensor_name(f, i), (unsigned long long)in->dims[0],
                 (unsigned long long)in->dims[1], in->wbits, in->stat_bits, in->beta1, in->beta2,
                 100.0 * (double)in->nnz / (double)(in->dims[0] * in->dims[1]));
        if (bench_tensor(R, f, i, label, 0)) goto out;
        n++;
    }
    rc = 0;
    if (R->bytes_only) goto out;
    printf("\nAll %zu SpQR tensors, each timed alone, summed (the linears of one decode step):\n\n"
           "| batch | spqr µs | cuBLAS fp16 µs | speedup |\n|---|---|---|---|\n",
           n);
    for (int bi = 0; bi < R->nbatch; bi++)
        printf("| %d | %.1f | %.1f | %.2fx |\n", R->batches[bi], R->sum_spqr[bi], R->sum_cublas[bi],
               R->sum_spqr[bi] > 0 ? R->sum_cublas[bi] / R->sum_spqr[bi] : 0);
    /* the tensors of one input (spqr_file_input_group: q/k/v, gate/up) stacked, one call each */
    double sep[3] = {0}, one[3] = {0};
    int groups = 0;
    for (size_t i = 0; i < spqr_file_tensor_count(f); i++) {
        size_t g[SPQR_MAX_GROUP];
        const size_t ng = spqr_file_input_group(f, i, g);
        if (!ng) continue;
        if (!groups)
            printf(
                "\nThe tensors of one input (q/k/v, gate/up), called separately and stacked "
                "(spqr_gpu_upload_stacked):\n\n"
                "| group | batch | spqr separate µs | spqr stacked µs | stacked gain | stacked %% "
                "of copy bw | cuBLAS separate µs | cuBLAS stacked µs | speedup (stacked vs "
                "stacked) | speedup (vs cuBLAS separate) |\n"
                "|---|---|---|---|---|---|---|---|---|---|\n");
        char label[320];
        snprintf(label, sizeof label, "%.160s and %zu more", spqr_file_tensor_name(f, i), ng - 1);
        float us[3][2];
        if (bench_group(R, f, g, (int)ng, label, 0, us)) {
            rc = 1;
            goto out;
        }
        for (int bi = 0; bi < R->nbatch; bi++) {
            for (size_t k = 0; k < ng; k++) sep[bi] += R->tensor_us[g[k]][bi];
            one[bi] += us[bi][1];
        }
        groups++;
    }
    if (groups) {
        printf(
            "\nThe decode step with its %d groups stacked: the sum above, less the groups' "
            "tensors (each timed alone), plus the groups' stacked calls:\n\n"
            "| batch | spqr µs, separate | spqr µs, groups stacked | gain |\n|---|---|---|---|\n",
            groups);
        for (int bi = 0; bi < R->nbatch; bi++) {
            const double st = R->sum_spqr[bi] - sep[bi] + one[bi];
            printf("| %d | %.1f | %.1f | %.2fx |\n", R->batches[bi], R->sum_spqr[bi], st,
                   st > 0 ? R->sum_spqr[bi] / st : 0);
        }
    }
    if (bench_model_step(R, f)) rc = 1;
out:
    free(R->tensor_us);
    R->tensor_us = NULL;
    return rc;
}

/* The benchmark proper, after the options and the file have been checked. */
static int run_gpu(bench_run *R, spqr_file *f, const bench_select *S) {
    const int quick = S->quick, only_cfg = S->only_cfg, nsel = S->nsel;
    const int(*sel)[2] = S->sel;
    spqr_error err = {0};
    if (spqr_gpu_available(&err)) {
        printf("SKIP: %s\n", err.msg);
        return 77;
    }
    int rc = 1;
    struct cudaDeviceProp prop;
    if (bench_cuda_failed(cudaGetDeviceProperties(&prop, 0), "device properties") ||
        cublas_failed(cublasCreate(&R->h), "cublasCreate"))
        return 1;
    R->l2_bytes = (uint64_t)prop.l2CacheSize;
    R->copy_bw = copy_bandwidth();
    if (R->copy_bw <= 0) goto done;
    printf("device: %s, %d SMs, L2 %d MiB; measured copy bandwidth %.0f GB/s (read+write)\n",
           prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, R->copy_bw / 1e9);
    if (!R->bytes_only && warm_up(R->h)) goto done;
    if (R->graph) {
        if (bench_cuda_failed(cudaStreamCreateWithFlags(&R->s, cudaStreamNonBlocking), "stream") ||
            cublas_failed(cublasSetStream(R->h, R->s), "cublasSetStream"))
            goto done;
    }
    printf("timing: %s\n", R->graph ? "50 calls captured into one CUDA graph, launched 7 times"
                                    : "50 calls launched from the host, 7 times");
    if (S->ngroups) { /* groups of one input: separate calls against one stacked call */
        printf("\n| group (rows x cols) | config | batch | spqr separate µs | spqr stacked µs | "
               "stacked gain | stacked %% of copy bw | cuBLAS separate µs | cuBLAS stacked µs | "
               "speedup (stacked vs stacked) | speedup (vs cuBLAS separate) |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|\n");
        rc = 0;
        for (int gi = 0; gi < S->ngroups && !rc; gi++)
            for (int cfg = 0; cfg < 6 && !rc; cfg++)
                if (only_cfg < 0 ? cfg == 0 : only_cfg == cfg)
                    rc = bench_group_synthetic(R, S->group_n[gi], S->group_rows[gi],
                                               S->group_cols[gi], cfg);
        goto done;
    }
    if (!R->bytes_only)
        printf("\n| %s | batch | spqr µs | eff. GB/s | %% of copy bw | cuSPARSE-path µs | "
               "cuBLAS fp16 µs | speedup |\n|---|---|---|---|---|---|---|---|---|\n",
               f ? "tensor | shape, config" : "shape (rows x cols) | config");
    if (f) {
        rc = bench_file(R, f);
    } else {
        static const int shapes[][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008},
                                        {8192, 8192}, {28672, 8192}, {8192, 28672}};
        const int nshapes = nsel ? nsel : quick ? 2 : 6;
        rc = 0;
        for (int si = 0; si < nshapes && !rc; si++)
            for (int cfg = 0; cfg < 6 && !rc; cfg++) {
                if (only_cfg < 0 ? cfg >= 2 : only_cfg != cfg) continue;
                rc = bench_synthetic(R, nsel ? sel[si][0] : shapes[si][0],
                                     nsel ? sel[si][1] : shapes[si][1], cfg);
            }
    }
done:
    cublasDestroy(R->h);
    if (R->s) cudaStreamDestroy(R->s);
    return rc;
}
#else
typedef struct {
    int graph, bytes_only, nbatch, batches[3];
} bench_run;
static int run_gpu(bench_run *R, spqr_file *f, const bench_select *S) {
    (void)R, (void)f, (void)S;
    printf("SKIP: this spqr was built without CUDA (no CUDA compiler when it was configured)\n");
    return 77;
}
#endif

/* "R1xC,R2xC,...": one group of tensors of one input (same C) into S; 0, or 2 (printed) */
static int parse_group(const char *s, bench_select *S) {
    const int g = S->ngroups;
    int n = 0, used = 0, r, c;
    const char *p = s;
    while (S->ngroups < 8 && n < MAX_GROUP && sscanf(p, "%dx%d%n", &r, &c, &used) == 2 && r > 0 &&
           c > 0 && (n == 0 || c == S->group_cols[g])) {
        S->group_rows[g][n++] = r, S->group_cols[g] = c, p += used;
        if (*p != ',') break;
        p++;
    }
    if (n == 0 || *p) {
        fprintf(stderr,
                "spqr bench --gpu: --stack '%s': expected R1xC,R2xC,... (rows and cols > 0, one C, "
                "at most %d tensors a group, 8 groups)\n",
                s, MAX_GROUP);
        return 2;
    }
    S->group_n[S->ngroups++] = n;
    return 0;
}

int cmd_bench_gpu(int argc, char **argv) {
    bench_select S = {.only_cfg = -1};
    int quick = 0, only_cfg = -1, nsel = 0, (*sel)[2] = S.sel;
    const char *file = NULL;
    bench_run R = {.nbatch = 3, .batches = {1, 4, 16}};
    for (int i = 1; i < argc; i++) {
        uint64_t v;
        if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (!strcmp(argv[i], "--graph")) {
            R.graph = 1;
        } else if (!strcmp(argv[i], "--bytes")) {
            R.bytes_only = 1;
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            if (cli_parse_u64("bench --gpu", "--batch", argv[++i], 1, 16, &v)) return 2;
            R.nbatch = 1, R.batches[0] = (int)v;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            if (cli_parse_u64("bench --gpu", "--config", argv[++i], 0, 5, &v)) return 2;
            only_cfg = (int)v;
        } else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            int r = 0, c = 0, used = 0;
            const char *s = argv[++i];
            if (nsel == 16 || sscanf(s, "%dx%d%n", &r, &c, &used) != 2 || s[used] || r <= 0 ||
                c <= 0) {
                fprintf(stderr,
                        "spqr bench --gpu: --shape '%s': expected ROWSxCOLS, both > 0 "
                        "(at most 16 shapes)\n",
                        s);
                return 2;
            }
            sel[nsel][0] = r, sel[nsel][1] = c, nsel++;
        } else if (!strcmp(argv[i], "--stack") && i + 1 < argc) {
            if (parse_group(argv[++i], &S)) return 2;
        } else if (!strcmp(argv[i], "--stacked")) {
            /* Llama-7B (hidden 4096, MHA) and -70B (hidden 8192, 8 KV heads of 128) */
            static const char *const llama[] = {
                "4096x4096,4096x4096,4096x4096", "11008x4096,11008x4096",
                "8192x8192,1024x8192,1024x8192", "28672x8192,28672x8192"};
            for (int k = 0; k < 4; k++)
                if (parse_group(llama[k], &S)) return 2;
        } else if (!strcmp(argv[i], "--file") && i + 1 < argc) {
            file = argv[++i];
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            fprintf(stderr, "spqr bench --gpu: unknown option or missing value '%s'\n%s", argv[i],
                    usage_text);
            return 2;
        }
    }
    if (R.graph && R.bytes_only) {
        fprintf(stderr, "spqr bench --gpu: --graph and --bytes exclude each other\n");
        return 2;
    }
    if (S.ngroups && (nsel || quick || file || R.bytes_only)) {
        fprintf(stderr, "spqr bench --gpu: --stack/--stacked run groups only: no --shape, --quick, "
                        "--file or --bytes with them\n");
        return 2;
    }
    if (file && (nsel || only_cfg >= 0 || quick)) {
        fprintf(stderr, "spqr bench --gpu: --file takes its tensors from the file: no --shape, "
                        "--config or --quick with it\n");
        return 2;
    }
    spqr_error err = {0};
    spqr_file *f = NULL;
    if (file) { /* the file's checks before the GPU's, so a bad file is named anywhere */
        f = spqr_file_open(file, 0, &err);
        if (!f) {
            fprintf(stderr, "spqr bench --gpu: %s\n", err.msg);
            return 1;
        }
    }
    S.quick = quick, S.only_cfg = only_cfg, S.nsel = nsel;
    const int rc = run_gpu(&R, f, &S);
    spqr_file_close(f);
    return rc;
}
