/* test_cpu_matmul.c — spqr_cpu_matmul against dequantize-then-multiply in double precision.
 * Random tensors over w 2..8, beta pairs with beta2 a multiple of 16 (the AVX-512 path), of 8 (the
 * AVX2 path) and neither (scalar), s 1..8 and 16, ragged shapes up to 70000 columns (u32 outlier
 * columns), outlier density 0 / 1% / 10%, with and without permutation; batch 1, 2, 5, 16; 1 and
 * 2 threads; every tensor once per path cap (SPQR_CPU_ISA unset, avx2, scalar), asserting the
 * path taken. Y is poisoned with NaN first, so an unwritten element fails. Bound: relative L2
 * error < 1e-5 (fp32 accumulation of products of fp32 weights; the reference is exact to double).
 */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "cpu_internal.h"
#include "sample.h"
#include "spqr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double urand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static const char *const caps[] = {NULL, "avx2", "scalar"};

/* the path spqr_cpu_matmul must take for this tensor under cap */
static const char *expected_path(const spqr_tensor_info *in, const char *cap) {
    if (in->wbits <= 8 && !cap && in->beta2 % 16 == 0 && spqr_cpu_have_avx512()) return "avx512";
    if (in->wbits <= 8 && (!cap || !strcmp(cap, "avx2")) && in->beta2 % 8 == 0 &&
        spqr_cpu_have_avx2())
        return "avx2";
    return "scalar";
}

static void check_path(const spqr_file *f, const char *label, uint64_t seed);

/* every path cap in turn */
static void check_tensor(const spqr_file *f, const char *label, uint64_t seed) {
    for (int ci = 0; ci < 3; ci++) {
        if (caps[ci])
            setenv("SPQR_CPU_ISA", caps[ci], 1);
        else
            unsetenv("SPQR_CPU_ISA");
        const char *want = expected_path(spqr_file_tensor_info(f, 0), caps[ci]);
        const char *got = spqr_cpu_matmul_path(f, 0);
        CHECK(got && !strcmp(got, want), "%s cap %s: path %s, expected %s", label,
              caps[ci] ? caps[ci] : "none", got ? got : "NULL", want);
        char full[256];
        snprintf(full, sizeof full, "%s [%s]", label, want);
        check_path(f, full, seed);
    }
    unsetenv("SPQR_CPU_ISA");
}

static void check_path(const spqr_file *f, const char *label, uint64_t seed) {
    const spqr_tensor_info *in = spqr_file_tensor_info(f, 0);
    const uint64_t rows = in->dims[0], cols = in->dims[1];
    float *W = malloc(rows * cols * sizeof *W);
    spqr_error err = {0};
    CHECK(spqr_file_dequantize(f, 0, W, &err) == SPQR_OK, "%s: dequantize: %s", label, err.msg);
    static const int batches[] = {1, 2, 5, 16};
    for (int bi = 0; bi < 4; bi++)
        for (int threads = 1; threads <= 2; threads++) {
            const int nb = batches[bi];
            float *X = malloc((uint64_t)nb * cols * sizeof *X);
            float *Y = malloc((uint64_t)nb * rows * sizeof *Y);
            for (uint64_t i = 0; i < (uint64_t)nb * cols; i++) X[i] = (float)urand(&seed);
            for (uint64_t i = 0; i < (uint64_t)nb * rows; i++) Y[i] = NAN;
            spqr_status st = spqr_cpu_matmul(f, 0, X, nb, Y, threads, &err);
            double num = 0, den = 0;
            int unwritten = 0;
            for (int b = 0; b < nb; b++)
                for (uint64_t r = 0; r < rows; r++) {
                    double ref = 0;
                    for (uint64_t c = 0; c < cols; c++)
                        ref += (double)W[r * cols + c] * X[(uint64_t)b * cols + c];
                    const double got = Y[(uint64_t)b * rows + r];
                    if (isnan(got)) unwritten++;
                    num += (got - ref) * (got - ref), den += ref * ref;
                }
            const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
            CHECK(st == SPQR_OK && !unwritten && rel < 1e-5,
                  "%s batch %d threads %d: status %d (%s), %d unwritten, rel err %.3g", label, nb,
                  threads, (int)st, err.msg, unwritten, rel);
            free(X), free(Y);
        }
    free(W);
}

/* Builds the random tensor `in` (seed build_seed) in a file at path and checks it. */
static void check_sample(const char *path, const spqr_tensor_info *in, uint64_t build_seed,
                         uint64_t check_seed) {
    spqr_error err = {0};
    char label[160];
    spqr_sample_describe(in, label, sizeof label);
    spqr_file *f = spqr_sample_open_tensor(path, in, build_seed, &err);
    if (!f) {
        CHECK(0, "%s: building tensor: %s", label, err.msg);
        return;
    }
    check_tensor(f, label, check_seed);
    spqr_file_close(f);
}

int main(void) {
    static const uint32_t betas[][2] = {{16, 16}, {8, 8},  {32, 64}, {128, 128},
                                        {16, 2},  {2, 32}, {8, 4}};
    static const uint64_t shapes[][2] = {{37, 100},   {256, 4097}, {300, 333}, {1, 1},
                                         {16, 40000}, {65, 64},    {7, 31}};
    static const double dens[] = {0.0, 0.01, 0.10};
    char path[256];
    snprintf(path, sizeof path, "/tmp/spqr_cpu_test_%d.spqr", (int)getpid());
    int k = 0;
    for (uint32_t w = 2; w <= 8; w++)
        for (int bi = 0; bi < 7; bi++, k++) {
            const uint64_t *sh = shapes[(k + w) % 7];
            spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                                   .ndim = 2,
                                   .dims = {sh[0], sh[1]},
                                   .wbits = w,
                                   .stat_bits = (k % 3 == 2) ? 16 : 1 + (uint32_t)(k % 8),
                                   .beta1 = betas[bi][0],
                                   .beta2 = betas[bi][1],
                                   .nnz = (uint64_t)(dens[k % 3] * (double)(sh[0] * sh[1])),
                                   .flags = (k % 2) ? SPQR_FLAG_PERM : 0};
            check_sample(path, &in, 2000 + (uint64_t)k, (uint64_t)k);
        }
    /* the vector paths' edges: u32 outlier columns (cols > 65536), row tiles of 16 with a
     * remainder, column blocks (batch 16 splits 4097 columns into blocks), beta2 > 16 halves,
     * s = 16, w = 8 and w = 2, 10 % outliers, a row shorter than one 32-byte code load */
    static const struct {
        uint64_t rows, cols;
        uint32_t w, s, b1, b2;
        double dens;
    } edges[] = {{3, 70000, 3, 3, 16, 16, 0.01}, {300, 4097, 4, 16, 16, 32, 0.10},
                 {33, 1000, 2, 8, 32, 64, 0.01}, {5, 2000, 8, 4, 8, 128, 0.10},
                 {17, 48, 3, 2, 16, 16, 0.10},   {40, 777, 5, 3, 64, 16, 0.0}};
    for (int e = 0; e < 6; e++) {
        spqr_tensor_info in = {
            .kind = SPQR_KIND_SPQR,
            .ndim = 2,
            .dims = {edges[e].rows, edges[e].cols},
            .wbits = edges[e].w,
            .stat_bits = edges[e].s,
            .beta1 = edges[e].b1,
            .beta2 = edges[e].b2,
            .nnz = (uint64_t)(edges[e].dens * (double)(edges[e].rows * edges[e].cols)),
            .flags = (e % 2) ? SPQR_FLAG_PERM : 0};
        check_sample(path, &in, 7000 + (uint64_t)e, 100 + (uint64_t)e);
    }
    unlink(path);
    if (!spqr_cpu_have_avx512())
        printf("SKIP the AVX-512 path: this CPU lacks AVX-512 F/BW/VL/DQ/VBMI\n");
    if (!spqr_cpu_have_avx2()) printf("SKIP the AVX2 path: this CPU lacks AVX2/FMA/F16C\n");
    printf("cpu matmul: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
