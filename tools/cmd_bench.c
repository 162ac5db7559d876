/* cmd_bench.c — `spqr bench [--quick]`: the CPU fused decode-and-multiply against OpenBLAS sgemv
 * (batch 1) / sgemm (batch 4, 16) on the dequantized fp32 weights, same shapes, same process.
 * Median of 5 runs each; `spqr bench --gpu` is the GPU benchmark (cmd_bench_gpu.c). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "sample.h"
#include "spqr.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* t[0..9): the durations of 9 calls of spqr_cpu_matmul on tensor 0 (all cores); the first
 * failing call's status (its message in *err) */
static spqr_status time_spqr(const spqr_file *f, const float *X, int batch, float *Y, double t[9],
                             spqr_error *err) {
    for (int r = 0; r < 9; r++) {
        const double t0 = now_s();
        const spqr_status st = spqr_cpu_matmul(f, 0, X, batch, Y, 0, err);
        t[r] = now_s() - t0;
        if (st) return st;
    }
    return SPQR_OK;
}

int cmd_bench(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--gpu")) return cmd_bench_gpu(argc - 1, argv + 1);
    const int quick = argc > 1 && !strcmp(argv[1], "--quick");
    if (argc > 1 + quick) { /* the first argument that is not a leading --quick */
        fprintf(stderr,
                "spqr bench: unknown option '%s'\nusage: spqr bench [--quick]  (CPU)\n"
                "       spqr bench --gpu [options]  (GPU; spqr bench --gpu --help)\n",
                argv[1 + quick]);
        return 2;
    }
    static const int shapes[][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008},
                                    {8192, 8192}, {28672, 8192}, {8192, 28672}};
    const int nshapes = quick ? 1 : 6;
    /* the fastest of 9 calls of each: this shared 2-core VM's timings have long upper tails, and
     * the minimum is the estimate least disturbed by other tenants (same rule for both sides) */
    printf("CPU: %ld cores. spqr fused matmul vs OpenBLAS sgemv/sgemm on fp32 weights (fastest of "
           "9 calls, ms)\n\n",
           sysconf(_SC_NPROCESSORS_ONLN));
    /* the caller's cap, restored after each AVX2 comparison run (setenv may move the string) */
    char cap_copy[32] = "";
    const char *isa_cap = getenv("SPQR_CPU_ISA");
    if (isa_cap) snprintf(cap_copy, sizeof cap_copy, "%s", isa_cap), isa_cap = cap_copy;
    printf("| shape | config | batch | spqr path | spqr ms | spqr AVX2 ms | OpenBLAS fp32 ms | "
           "speedup | spqr bytes read | fp32 bytes read |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int si = 0; si < nshapes; si++)
        for (int cfg = 0; cfg < 2; cfg++) {
            const uint64_t rows = (uint64_t)shapes[si][0], cols = (uint64_t)shapes[si][1];
            spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                                   .ndim = 2,
                                   .dims = {rows, cols},
                                   .wbits = cfg ? 4 : 3,
                                   .stat_bits = 3,
                                   .beta1 = 16,
                                   .beta2 = 16,
                                   .nnz = cfg ? 0 : rows * cols / 100,
                                   .flags = SPQR_FLAG_PERM};
            char path[128];
            snprintf(path, sizeof path, "/tmp/spqr_bench_%d.spqr", (int)getpid());
            spqr_error err = {0};
            spqr_sample_tensor st;
            spqr_writer *w = spqr_writer_open(path, 0, &err);
            if (!w || spqr_sample_tensor_make(&in, 5, &st, &err) ||
                spqr_writer_add_spqr(w, "w", &in, (const void *const *)st.sec, &err) ||
                spqr_writer_finish(w, &err)) {
                fprintf(stderr, "spqr bench: %s\n", err.msg);
                return 1;
            }
            uint64_t bytes = 0;
            for (int s = 0; s < SPQR_SEC_COUNT; s++) bytes += st.size[s];
            spqr_sample_tensor_free(&st);
            spqr_file *f = spqr_file_open(path, 0, &err);
            float *W = malloc(rows * cols * sizeof *W), *X = malloc(16 * cols * sizeof *X),
                  *Y = malloc(16 * rows * sizeof *Y);
            if (!f) {
                fprintf(stderr, "spqr bench: %s\n", err.msg);
                return 1;
            }
            if (!W || !X || !Y) {
                fprintf(stderr, "spqr bench: out of memory\n");
                return 1;
            }
            if (spqr_file_dequantize(f, 0, W, &err)) {
                fprintf(stderr, "spqr bench: %s\n", err.msg);
                return 1;
            }
            uint64_t rng = 9;
            for (uint64_t i = 0; i < 16 * cols; i++) X[i] = spqr_rng_uniform(&rng) - 0.5f;
            static const int batches[] = {1, 4, 16};
            for (int bi = 0; bi < (quick ? 1 : 3); bi++) {
                const int b = batches[bi];
                double ts[9], ta[9], tb[9];
                /* separate phases: OpenBLAS worker threads spin-yield for a while after each call
                 * and would steal the cores from spqr's threads if the two were interleaved */
                nanosleep(&(struct timespec){0, 300000000L}, NULL);
                spqr_status st = time_spqr(f, X, b, Y, ts, &err);
                /* the AVX2 path for comparison (the default where the CPU lacks AVX-512) */
                setenv("SPQR_CPU_ISA", "avx2", 1);
                if (!st) st = time_spqr(f, X, b, Y, ta, &err);
                if (isa_cap)
                    setenv("SPQR_CPU_ISA", isa_cap, 1);
                else
                    unsetenv("SPQR_CPU_ISA");
                if (st) {
                    fprintf(stderr, "spqr bench: %s\n", err.msg);
                    return 1;
                }
                for (int r = 0; r < 9; r++) {
                    double t0 = now_s();
                    if (b == 1)
                        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)cols, 1.0f, W,
                                    (int)cols, X, 1, 0.0f, Y, 1);
                    else
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, (int)rows,
                                    (int)cols, 1.0f, X, (int)cols, W, (int)cols, 0.0f, Y,
                                    (int)rows);
                    tb[r] = now_s() - t0;
                }
                qsort(ts, 9, sizeof ts[0], cmpd), qsort(ta, 9, sizeof ta[0], cmpd);
                qsort(tb, 9, sizeof tb[0], cmpd);
                printf("| %llux%llu | w%u s3 b16 %s | %d | %s | %.2f | %.2f | %.2f | %.2fx | "
                       "%.1f MB | %.1f MB |\n",
                       (unsigned long long)rows, (unsigned long long)cols, in.wbits,
                       in.nnz ? "1% outl" : "0 outl", b, spqr_cpu_matmul_path(f, 0), 1e3 * ts[0],
                       1e3 * ta[0], 1e3 * tb[0], tb[0] / ts[0], bytes / 1e6, rows * cols * 4 / 1e6);
                fflush(stdout);
            }
            free(W), free(X), free(Y);
            spqr_file_close(f);
            unlink(path);
        }
    return 0;
}

int cmd_make_tiny(int argc, char **argv);
