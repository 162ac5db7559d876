/* bench_quantize.c — wall time and peak memory of the quantizer on one layer (not a test).
 * Usage: bench_quantize [ROWSxCOLS ...]   (default 4096x4096 4096x11008 11008x4096)
 * Each (shape, mode) runs in a forked child so that its peak RSS (getrusage) is its own; inputs
 * are a synthetic W and H = 2/N XᵀX from N = 4096 rows with outlier channels (built before the
 * clock starts). Prints quantize time (without the proxy-loss GEMM), the loss's own time, the
 * proxy loss, bits per parameter and outlier share. */
#define _POSIX_C_SOURCE 200809L
#include "layers.h"

#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void child(uint64_t rows, uint64_t cols, spqr_mode mode) {
    test_layer L;
    if (tl_synthetic(&L, rows, cols, 4096, 1)) exit(2);
    spqr_quant_params p;
    spqr_quant_params_default(&p, mode);
    p.compute_loss = 0;
    spqr_quantized q;
    spqr_error err;
    double t0 = now();
    if (spqr_quantize(L.W, rows, cols, mode == SPQR_MODE_RTN ? NULL : L.H, &p, &q, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    double t1 = now();
    float *Wq = malloc(rows * cols * sizeof *Wq);
    spqr_quantized_dequantize(&q, Wq, &err);
    double loss = spqr_proxy_loss(L.W, Wq, rows, cols, L.H);
    double t2 = now();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    static const char *names[] = {"rtn", "gptq", "spqr"};
    printf("%5llux%-6llu %-5s %8.2f s %7.2f s %9.0f MiB %9.0f MiB  %.6f  %6.3f  %6.3f%%\n",
           (unsigned long long)rows, (unsigned long long)cols, names[mode], t1 - t0, t2 - t1,
           (double)ru.ru_maxrss / 1024.0, (rows * cols * 4.0 + cols * cols * 8.0) / (1 << 20), loss,
           q.bits_per_param, 100 * q.outlier_fraction);
    fflush(stdout);
    exit(0);
}

int main(int argc, char **argv) {
    const char *defaults[] = {"4096x4096", "4096x11008", "11008x4096"};
    int n = argc > 1 ? argc - 1 : 3;
    printf("shape        mode   quantize   loss    peak RSS   inputs(W+H)  proxy loss  bits/par "
           "outliers\n");
    for (int i = 0; i < n; i++) {
        unsigned long long r, c;
        if (sscanf(argc > 1 ? argv[i + 1] : defaults[i], "%llux%llu", &r, &c) != 2) return 2;
        for (int m = 2; m >= 0; m--) {
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) child(r, c, (spqr_mode)m);
            int stt;
            waitpid(pid, &stt, 0);
            if (!WIFEXITED(stt) || WEXITSTATUS(stt)) return 1;
        }
    }
    return 0;
}
