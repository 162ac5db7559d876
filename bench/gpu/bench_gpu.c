/* bench_gpu.c — SpQR GPU matmul vs cuBLAS fp16, same process, same shapes (not a test).
 * Usage: bench_gpu [--quick] [--graph|--bytes] [--batch N] [--config 0..5] [--shape ROWSxCOLS]...
 *   --quick: the first two shapes; --batch: any of 1..16; --config: one configuration; --shape
 *   (repeatable): these shapes, any ROWSxCOLS, instead of the default six.
 *   Config 0 = w3 1% outliers, 1 = w4 no outliers; only when asked for: 2 = w3 no outliers (it
 *   splits config 0's time between the codes and the outliers), 3 = w2 no outliers, 4 = w3 1%
 *   outliers with beta2 = 8 (two groups per lane in the tensor-core layout, bench/NOTES.md v7c;
 *   the stored-layout kernels in a -DSPQR_MMA_BETA2_8=0 build), 5 = the same with beta1 = 8 too
 *   (stat2 per row from the stored array).
 *   --graph: the 50 calls (spqr and cuBLAS alike) are captured into one CUDA graph on a stream and
 *   the graph is launched, as serving runtimes run a decode step: no host launch overhead between
 *   calls. --bytes: no timing; one line "BYTES n" per shape and configuration, n =
 *   spqr_gpu_matmul_bytes at the batch (default 1), the byte counts whose pure-read time read_bw
 *   --floor measures.
 * For each shape (4096², 11008x4096, 4096x11008, 8192², 28672x8192, 8192x28672), configuration
 * (w3 s3 beta16 1% outliers act-order; w4 s3 beta16 no outliers act-order) and batch (1, 4, 16):
 * median µs per call (7 repeats of 50 calls timed with events, buffers rotated so the working set
 * exceeds L2), effective bandwidth = bytes the kernel must read and write / time, as % of the
 * measured device-to-device copy bandwidth (bytes read + written), and speedup vs cuBLAS GemmEx
 * fp16 (fp32 accumulate) on the same shape and batch. */
#define _POSIX_C_SOURCE 200809L
#include "sample.h"
#include "spqr.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

typedef void (*call_fn)(void *ctx, int i);

/* median over 7 repeats of the mean time of `iters` calls on stream s, in µs: launched from the
 * host, or (graph) captured once into one CUDA graph that each repeat launches */
static float time_calls(call_fn fn, void *ctx, int iters, cudaStream_t s, int graph) {
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    if (graph) {
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
        for (int i = 0; i < iters; i++) fn(ctx, i);
        CK(cudaStreamEndCapture(s, &g));
        CK(cudaGraphInstantiate(&ge, g, 0));
        CK(cudaGraphLaunch(ge, s)); /* warm-up */
    } else {
        for (int i = 0; i < 10; i++) fn(ctx, i);
    }
    CK(cudaDeviceSynchronize());
    cudaEvent_t a, b;
    cudaEventCreate(&a), cudaEventCreate(&b);
    float t[7];
    for (int r = 0; r < 7; r++) {
        cudaEventRecord(a, s);
        if (graph)
            CK(cudaGraphLaunch(ge, s));
        else
            for (int i = 0; i < iters; i++) fn(ctx, i);
        cudaEventRecord(b, s);
        CK(cudaEventSynchronize(b));
        float ms;
        cudaEventElapsedTime(&ms, a, b);
        t[r] = ms * 1000.0f / (float)iters;
    }
    qsort(t, 7, sizeof t[0], cmpf);
    cudaEventDestroy(a), cudaEventDestroy(b);
    if (graph) cudaGraphExecDestroy(ge), cudaGraphDestroy(g);
    return t[3];
}

typedef struct {
    spqr_gpu_tensor **t;
    int nt;
    void **x, **y;
    int nx, batch;
    cublasHandle_t h;
    void **W;
    int nw;
    int rows, cols;
    cudaStream_t s; /* NULL, or the --graph capture stream */
} ctx_t;

static void call_spqr(void *p, int i) {
    ctx_t *c = p;
    spqr_error err;
    if (spqr_gpu_matmul(c->t[i % c->nt], c->x[i % c->nx], c->y[i % c->nx], c->batch, SPQR_ACT_F16,
                        c->s, &err)) {
        fprintf(stderr, "spqr: %s\n", err.msg);
        exit(1);
    }
}

static void call_cublas(void *p, int i) {
    ctx_t *c = p;
    const float one = 1.f, zero = 0.f;
    /* row-major W [rows x cols] is column-major Wᵀ: y = op(A) x with A = W (cols x rows), op = T */
    cublasStatus_t s = cublasGemmEx(c->h, CUBLAS_OP_T, CUBLAS_OP_N, c->rows, c->batch, c->cols,
                                    &one, c->W[i % c->nw], CUDA_R_16F, c->cols, c->x[i % c->nx],
                                    CUDA_R_16F, c->cols, &zero, c->y[i % c->nx], CUDA_R_16F,
                                    c->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublas failed %d\n", (int)s);
        exit(1);
    }
}

static double copy_bandwidth(void) {
    const size_t n = 1ull << 30;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    cudaMemset(a, 1, n);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e0, 0);
    for (int i = 0; i < 10; i++) cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0);
    cudaEventRecord(e1, 0);
    cudaEventSynchronize(e1);
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    cudaFree(a), cudaFree(b);
    return 2.0 * 10 * (double)n / (ms * 1e-3); /* bytes read + written per second */
}

/* Clocks up before the first measurement: ~0.3 s of fp16 GEMMs (8192³, compute-bound). Without it
 * the first shape's rows (spqr and cuBLAS alike) measured up to 20 % slow on the H100. */
static void warm_up(cublasHandle_t h) {
    const int n = 8192;
    void *m;
    CK(cudaMalloc(&m, 3ull * n * n * 2));
    CK(cudaMemset(m, 0, 3ull * n * n * 2));
    const char *a = m, *b = a + (size_t)n * n * 2;
    char *c = (char *)m + 2ull * n * n * 2;
    const float one = 1.f, zero = 0.f;
    for (int i = 0; i < 150; i++)
        if (cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16F, n, b,
                         CUDA_R_16F, n, &zero, c, CUDA_R_16F, n, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
            fprintf(stderr, "cublas warm-up failed\n");
            exit(1);
        }
    CK(cudaDeviceSynchronize());
    cudaFree(m);
}

int main(int argc, char **argv) {
    int quick = 0, graph = 0, bytes_only = 0, only_batch = 0, only_cfg = -1, nsel = 0, sel[16][2];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--graph"))
            graph = 1;
        else if (!strcmp(argv[i], "--bytes"))
            bytes_only = 1;
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc && atoi(argv[i + 1]) >= 1 &&
                 atoi(argv[i + 1]) <= 16)
            only_batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--config") && i + 1 < argc)
            only_cfg = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc && nsel < 16 &&
                 sscanf(argv[++i], "%dx%d", &sel[nsel][0], &sel[nsel][1]) == 2 &&
                 sel[nsel][0] > 0 && sel[nsel][1] > 0)
            nsel++;
        else {
            fprintf(stderr,
                    "usage: bench_gpu [--quick] [--graph|--bytes] [--batch N] [--config 0..5] "
                    "[--shape ROWSxCOLS]...\n");
            return 2;
        }
    }
    spqr_error err = {0};
    if (spqr_gpu_available(&err)) {
        printf("SKIP: %s\n", err.msg);
        return 77;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    double bw = copy_bandwidth();
    printf("device: %s, %d SMs, L2 %d MiB; measured copy bandwidth %.0f GB/s (read+write)\n",
           prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, bw / 1e9);
    static const int shapes[][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008},
                                    {8192, 8192}, {28672, 8192}, {8192, 28672}};
    static const int batches[] = {1, 4, 16};
    cublasHandle_t h;
    cublasCreate(&h);
    if (!bytes_only) warm_up(h);
    cudaStream_t gs = NULL;
    if (graph) {
        CK(cudaStreamCreateWithFlags(&gs, cudaStreamNonBlocking));
        cublasSetStream(h, gs);
    }
    printf("timing: %s\n", graph ? "50 calls captured into one CUDA graph, launched 7 times"
                                 : "50 calls launched from the host, 7 times");
    printf("\n| shape (rows x cols) | config | batch | spqr µs | eff. GB/s | %% of copy bw | "
           "cuSPARSE-path µs | cuBLAS fp16 µs | speedup |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    /* --shape: these shapes (any, e.g. row counts that fill a whole number of waves), in order */
    const int nshapes = nsel ? nsel : quick ? 2 : 6;
    for (int si = 0; si < nshapes; si++)
        for (int cfg = 0; cfg < 6; cfg++) {
            const int rows = nsel ? sel[si][0] : shapes[si][0];
            const int cols = nsel ? sel[si][1] : shapes[si][1];
            if (only_cfg < 0 ? cfg >= 2 : only_cfg != cfg) continue;
            const int wbits = cfg == 1 ? 4 : cfg == 3 ? 2 : 3;
            spqr_tensor_info in = {
                .kind = SPQR_KIND_SPQR,
                .ndim = 2,
                .dims = {(uint64_t)rows, (uint64_t)cols},
                .wbits = (uint32_t)wbits,
                .stat_bits = 3,
                .beta1 = cfg == 5 ? 8 : 16,
                .beta2 = cfg >= 4 ? 8 : 16,
                .nnz = cfg == 0 || cfg >= 4 ? (uint64_t)rows * (uint64_t)cols / 100 : 0,
                .flags = SPQR_FLAG_PERM};
            char path[128];
            snprintf(path, sizeof path, "/tmp/bench_gpu_%d_%d_%d.spqr", rows, cols, cfg);
            spqr_sample_tensor st;
            spqr_writer *w = spqr_writer_open(path, 0, &err);
            if (spqr_sample_tensor_make(&in, 7, &st, &err) ||
                spqr_writer_add_spqr(w, "w", &in, (const void *const *)st.sec, &err) ||
                spqr_writer_finish(w, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            spqr_sample_tensor_free(&st);
            spqr_file *f = spqr_file_open(path, 0, &err);
            if (bytes_only) {
                spqr_gpu_tensor *t;
                if (spqr_gpu_upload(f, 0, &t, &err)) {
                    fprintf(stderr, "%s\n", err.msg);
                    return 1;
                }
                printf("BYTES %llu\n",
                       (unsigned long long)spqr_gpu_matmul_bytes(t, only_batch ? only_batch : 1));
                spqr_gpu_free(t), spqr_file_close(f), unlink(path);
                continue;
            }
            uint64_t tbytes = 0;
            for (int s = 0; s < SPQR_SEC_COUNT; s++) {
                uint64_t z;
                spqr_file_section(f, 0, (spqr_section_id)s, &z);
                tbytes += z;
            }
            ctx_t c = {0};
            c.rows = rows, c.cols = cols, c.h = h, c.s = gs;
            c.nt = (int)((200ull << 20) / tbytes) + 1;
            if (c.nt > 32) c.nt = 32;
            c.t = calloc((size_t)c.nt, sizeof *c.t);
            for (int i = 0; i < c.nt; i++)
                if (spqr_gpu_upload(f, 0, &c.t[i], &err)) {
                    fprintf(stderr, "%s\n", err.msg);
                    return 1;
                }
            c.nw = (int)((200ull << 20) / ((uint64_t)rows * cols * 2)) + 1;
            c.W = calloc((size_t)c.nw, sizeof *c.W);
            for (int i = 0; i < c.nw; i++) {
                CK(cudaMalloc(&c.W[i], (uint64_t)rows * cols * 2));
                cudaMemset(c.W[i], 0x11,
                           (uint64_t)rows * cols * 2); /* 0x1111: a small normal fp16, not zero */
            }
            c.nx = 8;
            c.x = calloc(8, sizeof *c.x), c.y = calloc(8, sizeof *c.y);
            for (int i = 0; i < 8; i++) {
                CK(cudaMalloc(&c.x[i], 16ull * cols * 2));
                CK(cudaMalloc(&c.y[i], 16ull * rows * 2));
                cudaMemset(c.x[i], 0x22, 16ull * cols * 2);
            }
            for (int bi = 0; bi < (only_batch ? 1 : 3); bi++) {
                c.batch = only_batch ? only_batch : batches[bi]; /* --batch: any of 1..16 */
                for (int i = 0; i < c.nt; i++)
                    spqr_gpu_set_outlier_path(c.t[i], SPQR_OUTLIERS_FUSED, &err);
                float ts = time_calls(call_spqr, &c, 50, gs, graph);
                float tsp = -1;
                if (in.nnz) {
                    for (int i = 0; i < c.nt; i++)
                        spqr_gpu_set_outlier_path(c.t[i], SPQR_OUTLIERS_CUSPARSE, &err);
                    tsp = time_calls(call_spqr, &c, 50, gs, graph);
                    for (int i = 0; i < c.nt; i++)
                        spqr_gpu_set_outlier_path(c.t[i], SPQR_OUTLIERS_FUSED, &err);
                }
                float tc = time_calls(call_cublas, &c, 50, gs, graph);
                double bytes = (double)spqr_gpu_matmul_bytes(c.t[0], c.batch);
                char spbuf[32] = "-";
                if (tsp > 0) snprintf(spbuf, sizeof spbuf, "%.1f", tsp);
                printf(
                    "| %dx%d | w%d s3 b%s %s | %d | %.1f | %.0f | %.0f%% | %s | %.1f | %.2fx |\n",
                    rows, cols, wbits,
                    cfg == 5   ? "8/8"
                    : cfg == 4 ? "16/8"
                               : "16",
                    in.nnz ? "1% outl" : "0 outl", c.batch, ts, bytes / (ts * 1e-6) / 1e9,
                    100.0 * bytes / (ts * 1e-6) / bw, spbuf, tc, tc / ts);
                fflush(stdout);
            }
            for (int i = 0; i < c.nt; i++) spqr_gpu_free(c.t[i]);
            for (int i = 0; i < c.nw; i++) cudaFree(c.W[i]);
            for (int i = 0; i < 8; i++) cudaFree(c.x[i]), cudaFree(c.y[i]);
            free(c.t), free(c.W), free(c.x), free(c.y);
            spqr_file_close(f);
            unlink(path);
        }
    cublasDestroy(h);
    if (gs) cudaStreamDestroy(gs);
    return 0;
}
