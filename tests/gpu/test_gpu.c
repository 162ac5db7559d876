/* test_gpu.c — GPU kernels against dequantize-then-multiply in double precision.
 * Random tensors of every supported configuration (w 2..8, beta 2..128, s 1..8 and 16, ragged
 * shapes, cols up to 40000, outlier density 0, 1%, 10%, with and without permutation; 300 k
 * outliers for the separate outlier pass), batch 1..16, fp16 and bf16 activations, fused and
 * cuSPARSE outlier paths; outputs poisoned with NaN before each run so an unwritten element fails.
 * Also: the dequantize kernel is bit-exact with the CPU decoder, tensors run on the tensor-core
 * kernel exactly when expected (statistics an fp16 decode cannot carry keep the stored layout and
 * fp32 kernels, checked the same way), bad arguments return errors, a whole-model upload holds
 * every SpQR tensor by name, and (when SPQR_REAL_SPQR names a file) every SpQR tensor of a real
 * compressed model is checked the same way; a matmul captured into a CUDA graph replays as the
 * direct call computes; the device memory a tensor reports matches the driver's count and is all
 * returned by spqr_gpu_free; calls chained on one stream (each output the next input) without a
 * sync give what synchronized calls give. Without a GPU it checks that the GPU entry points
 * return SPQR_E_UNSUPPORTED, then exits 77 (ctest: skipped). */
#define _POSIX_C_SOURCE 200809L
#include "../check.h"
#include "sample.h"
#include "spqr.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static float act_round(float v, spqr_act_type a) {
    return a == SPQR_ACT_F16 ? spqr_f16_to_f32(spqr_f32_to_f16(v))
                             : spqr_bf16_to_f32(spqr_f32_to_bf16(v));
}

/* Whether upload tiles a tensor of this configuration for the tensor-core kernels (when its
 * statistics suit the fp16 decode, as the sample statistics do): beta2 >= 16, or beta2 = 8 for
 * w = 2-4 with s-bit statistics (kernels/mma_layout.cuh mma_tiled_shape). */
static int tiled_config(const spqr_tensor_info *in) {
    return in->beta2 >= 16 || (in->beta2 == 8 && in->wbits <= 4 && in->stat_bits != 16);
}

/* An uploaded tensor whose exact weights are W (rows x cols, the CPU decoder's): GPU matmul for
 * several batches/activations/paths vs the double reference. expect_tc: 1/0 = the tensor must
 * (not) run on the tensor-core kernel; -1 = either. Frees t. */
static void check_uploaded(spqr_gpu_tensor *t, const float *W, uint64_t rows, uint64_t cols,
                           uint64_t seed, const char *label, int expect_tc) {
    spqr_error err = {0};
    if (expect_tc >= 0)
        CHECK(spqr_gpu_uses_tensor_cores(t) == expect_tc, "%s: tensor-core kernel %s expected",
              label, expect_tc ? "" : "not");
    /* dequantize kernel: bit-exact with the CPU decoder's fp32 -> fp16 */
    uint16_t *wg = malloc(rows * cols * 2), *wc = malloc(rows * cols * 2);
    void *dw;
    cudaMalloc(&dw, rows * cols * 2);
    spqr_status st = spqr_gpu_dequantize_f16(t, dw, NULL, &err);
    cudaMemcpy(wg, dw, rows * cols * 2, cudaMemcpyDeviceToHost);
    for (uint64_t i = 0; i < rows * cols; i++) wc[i] = spqr_f32_to_f16(W[i]); /* as the CPU's */
    CHECK(st == SPQR_OK && memcmp(wg, wc, rows * cols * 2) == 0,
          "%s: dequantize kernel differs from CPU", label);
    cudaFree(dw), free(wg), free(wc);
    const int batches[] = {1, 2, 3, 4, 5, 8, 12, 16};
    uint64_t rng = seed;
    for (int bi = 0; bi < 8; bi++)
        for (int a = 1; a <= 2; a++)
            for (int path = 0; path < 2; path++) {
                const int nb = batches[bi];
                if (path == 1 && (bi % 2)) continue; /* cuSPARSE on a subset of batches */
                const spqr_act_type act = (spqr_act_type)a;
                float *x = malloc((uint64_t)nb * cols * sizeof *x);
                uint16_t *xh = malloc((uint64_t)nb * cols * 2),
                         *yh = malloc((uint64_t)nb * rows * 2);
                for (uint64_t i = 0; i < (uint64_t)nb * cols; i++) {
                    x[i] = act_round(2.0f * spqr_rng_uniform(&rng) - 1.0f, act);
                    xh[i] = act == SPQR_ACT_F16 ? spqr_f32_to_f16(x[i]) : spqr_f32_to_bf16(x[i]);
                }
                void *dx, *dy;
                cudaMalloc(&dx, (uint64_t)nb * cols * 2);
                cudaMalloc(&dy, (uint64_t)nb * rows * 2);
                cudaMemcpy(dx, xh, (uint64_t)nb * cols * 2, cudaMemcpyHostToDevice);
                cudaMemset(dy, 0xff,
                           (uint64_t)nb * rows * 2); /* poison: 0xffff is NaN in f16 and bf16 */
                spqr_gpu_set_outlier_path(t, (spqr_outlier_path)path, &err);
                st = spqr_gpu_matmul(t, dx, dy, nb, act, NULL, &err);
                cudaError_t ce = cudaDeviceSynchronize();
                cudaMemcpy(yh, dy, (uint64_t)nb * rows * 2, cudaMemcpyDeviceToHost);
                double num = 0, den = 0;
                int nan = 0;
                for (int b = 0; b < nb; b++)
                    for (uint64_t r = 0; r < rows; r++) {
                        double ref = 0;
                        for (uint64_t c = 0; c < cols; c++)
                            ref += (double)W[r * cols + c] * x[(uint64_t)b * cols + c];
                        uint16_t h = yh[(uint64_t)b * rows + r];
                        double got = act == SPQR_ACT_F16 ? spqr_f16_to_f32(h) : spqr_bf16_to_f32(h);
                        if (isnan(got)) nan++;
                        num += (got - ref) * (got - ref), den += ref * ref;
                    }
                double rel = den > 0 ? sqrt(num / den) : sqrt(num);
                /* output rounding bounds the error: 2^-11 (f16), 2^-8 (bf16) per element */
                double tol = act == SPQR_ACT_F16 ? 1e-3 : 8e-3;
                CHECK(st == SPQR_OK && ce == cudaSuccess && !nan && rel < tol,
                      "%s batch %d %s %s: status %d (%s) cuda %d, %d unwritten, rel err %.3g (tol "
                      "%.0e)",
                      label, nb, act == SPQR_ACT_F16 ? "f16" : "bf16", path ? "cusparse" : "fused",
                      st, err.msg, ce, nan, rel, tol);
                cudaFree(dx), cudaFree(dy), free(x), free(xh), free(yh);
            }
    spqr_gpu_free(t);
}

/* Tensor ti of f, uploaded, checked by check_uploaded. */
static void check_tensor(const spqr_file *f, size_t ti, uint64_t seed, const char *label,
                         int expect_tc) {
    const spqr_tensor_info *in = spqr_file_tensor_info(f, ti);
    const uint64_t rows = in->dims[0], cols = in->dims[1];
    float *W = malloc(rows * cols * sizeof *W);
    spqr_error err = {0};
    spqr_file_dequantize(f, ti, W, &err);
    spqr_gpu_tensor *t;
    if (spqr_gpu_upload(f, ti, &t, &err))
        CHECK(0, "%s: upload: %s", label, err.msg);
    else
        check_uploaded(t, W, rows, cols, seed, label, expect_tc);
    free(W);
}

/* Tensors sel[0..n) of f uploaded as one (spqr_gpu_upload_stacked): checked by check_uploaded
 * against their own exact weights, one under the other. */
static void check_stacked(const spqr_file *f, const size_t *sel, size_t n, uint64_t seed,
                          const char *label, int expect_tc) {
    uint64_t rows = 0, cols = spqr_file_tensor_info(f, sel[0])->dims[1];
    for (size_t i = 0; i < n; i++) rows += spqr_file_tensor_info(f, sel[i])->dims[0];
    float *W = malloc(rows * cols * sizeof *W);
    spqr_error err = {0};
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        spqr_file_dequantize(f, sel[i], W + at, &err);
        at += spqr_file_tensor_info(f, sel[i])->dims[0] * cols;
    }
    spqr_gpu_tensor *t;
    if (spqr_gpu_upload_stacked(f, sel, n, &t, &err))
        CHECK(0, "%s: stacked upload: %s", label, err.msg);
    else
        check_uploaded(t, W, rows, cols, seed, label, expect_tc);
    free(W);
}

/* Projections of one input (q/k/v, gate/up) uploaded stacked, as one tensor: every kernel family
 * (tensor cores with outlier rounds, fp16 statistics, β2 = 8, the stored layout's fp32 kernels),
 * a ragged last tensor, GQA-like shapes; mismatched groups are refused through the GPU entry point
 * too. With real set, each layer's q/k/v and gate/up of a real compressed model. */
static void stacked_upload(const char *real) {
    static const struct {
        uint32_t w, s, b1, b2, perm;
        uint64_t cols, rows[3], nnz_pm; /* outliers per mille */
    } g[] = {{3, 3, 16, 16, 1, 512, {64, 32, 32}, 10},
             {4, 16, 16, 16, 0, 4097, {48, 37, 0}, 100},
             {2, 2, 8, 8, 1, 333, {40, 24, 9}, 10},
             {5, 4, 16, 2, 1, 100, {32, 16, 0}, 10},
             {3, 3, 16, 16, 1, 4096, {1024, 256, 256}, 10}};
    char path[256];
    snprintf(path, sizeof path, "/tmp/spqr_gpu_stack_%d.spqr", (int)getpid());
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        const size_t n = g[i].rows[2] ? 3 : 2;
        uint64_t nnz[3];
        for (size_t k = 0; k < n; k++) nnz[k] = g[i].rows[k] * g[i].cols * g[i].nnz_pm / 1000;
        spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                               .ndim = 2,
                               .dims = {g[i].rows[0], g[i].cols},
                               .wbits = g[i].w,
                               .stat_bits = g[i].s,
                               .beta1 = g[i].b1,
                               .beta2 = g[i].b2,
                               .flags = g[i].perm ? SPQR_FLAG_PERM : 0};
        spqr_error err = {0};
        spqr_file *f = spqr_sample_open_shared_input(path, &in, n, g[i].rows, nnz, 60 + i, 0, &err);
        if (!f) {
            CHECK(0, "stacked group %zu: building it: %s", i, err.msg);
            continue;
        }
        char label[200];
        spqr_sample_describe(&in, label, sizeof label);
        snprintf(label + strlen(label), sizeof label - strlen(label), " stacked %zu", n);
        check_stacked(f, (const size_t[]){0, 1, 2}, n, 1100 + i, label, tiled_config(&in));
        if (i == 0) { /* nothing to stack; an index out of range */
            spqr_gpu_tensor *t = NULL;
            CHECK(spqr_gpu_upload_stacked(f, NULL, 0, &t, &err) == SPQR_E_ARG && !t,
                  "stacking nothing must fail");
            CHECK(spqr_gpu_upload_stacked(f, (const size_t[]){0, 5}, 2, &t, &err) ==
                          SPQR_E_NOTFOUND &&
                      !t,
                  "stacking a missing tensor must fail");
        }
        spqr_file_close(f);
    }
    /* the demo file's q_proj (100 columns) and o_proj (48): no shared input */
    spqr_error err = {0};
    spqr_file *f = spqr_sample_write_file(path, 5, 0, &err) ? NULL : spqr_file_open(path, 0, &err);
    CHECK(f != NULL, "demo file: %s", err.msg);
    if (f) {
        const size_t qo[] = {(size_t)spqr_file_find(f, "layer0.q_proj"),
                             (size_t)spqr_file_find(f, "layer0.o_proj")};
        spqr_gpu_tensor *t = NULL;
        const spqr_status st = spqr_gpu_upload_stacked(f, qo, 2, &t, &err);
        CHECK(st == SPQR_E_ARG && !t && strstr(err.msg, "columns differ"),
              "stacking q_proj and o_proj must fail naming the rule: %d %s", st, err.msg);
        spqr_file_close(f);
    }
    unlink(path);
    if (!real || !*real) return;
    f = spqr_file_open(real, 0, &err);
    CHECK(f != NULL, "%s: %s", real, err.msg);
    int groups = 0;
    for (size_t i = 0; f && i < spqr_file_tensor_count(f); i++) {
        size_t sel[SPQR_MAX_GROUP];
        const size_t n = spqr_file_input_group(f, i, sel);
        if (!n) continue;
        char label[300];
        snprintf(label, sizeof label, "%s and the rest of its group of %zu, stacked",
                 spqr_file_tensor_name(f, i), n);
        check_stacked(f, sel, n, 1200 + i, label, -1);
        groups++;
    }
    CHECK(!f || groups > 0, "%s: no q/k/v or gate/up groups found", real);
    printf("stacked: %d real groups checked\n", groups);
    spqr_file_close(f);
}

static void random_configs(void) {
    static const uint32_t betas[][2] = {{16, 16},   {8, 8},  {16, 8}, {32, 64},
                                        {128, 128}, {16, 2}, {2, 32}};
    enum { kBetas = sizeof betas / sizeof betas[0] };
    static const uint64_t shapes[][2] = {{37, 100}, {256, 4097}, {1000, 333},
                                         {1, 1},    {64, 40000}, {3, 70000}};
    static const double dens[] = {0.0, 0.01, 0.10};
    int k = 0, quick = getenv("SPQR_GPU_QUICK") != NULL; /* e.g. under compute-sanitizer */
    char path[256];
    snprintf(path, sizeof path, "/tmp/spqr_gpu_test_%d.spqr", (int)getpid());
    for (uint32_t w = 2; w <= 8; w++)
        for (int bi = 0; bi < kBetas; bi++, k++) {
            if (quick && (w > 4 || bi > 3)) continue;
            const uint64_t *sh = shapes[k % 6];
            spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                                   .ndim = 2,
                                   .dims = {sh[0], sh[1]},
                                   .wbits = w,
                                   .stat_bits = (k % 3 == 2) ? 16 : 1 + (uint32_t)(k % 8),
                                   .beta1 = betas[bi][0],
                                   .beta2 = betas[bi][1],
                                   .nnz = (uint64_t)(dens[k % 3] * (double)(sh[0] * sh[1])),
                                   .flags = (k % 2) ? SPQR_FLAG_PERM : 0};
            spqr_error err = {0};
            char label[160];
            spqr_sample_describe(&in, label, sizeof label);
            spqr_file *f = spqr_sample_open_tensor(path, &in, 1000 + (uint64_t)k, &err);
            if (!f) {
                CHECK(0, "%s: building tensor: %s", label, err.msg);
                continue;
            }
            /* the sample statistics suit the fp16 decode, so every tiled_config is tiled; but
             * with s = 1 a scale ss·(qs − zs) may fall below 2^-14 (ss down to 1e-4, qs − zs
             * down to 0.2), which keeps the stored layout: either then */
            check_tensor(f, 0, (uint64_t)k, label,
                         in.stat_bits == 1 && tiled_config(&in) ? -1 : tiled_config(&in));
            spqr_file_close(f);
        }
    unlink(path);
}

/* Statistics set through the second-order pairs (scale = ss·(qs − zs), zero = sz·(qz − zz)):
 * those the fp16 decode of the tensor-core kernel cannot carry (zero ≈ 600; for w = 3 a scale up
 * to 1, whose fp16 multiplier scale·2^17 would overflow; w = 2 up to 1.4, against 2^16) keep the
 * stored layout and run the fp32 kernels (v3/v5 for beta2 16 and 32); those at the edge of what
 * it carries (w = 3: scales up to 0.42, zeros near -400, where the offset-free decode's rounding
 * of scale·zero is largest; w = 2: scales up to 0.84) stay tiled. Either way the result must agree
 * with the reference just the same. */
static void fp16_fallback(void) {
    static const struct {
        uint32_t w, beta2;
        float ss, zs, sz, zz; /* NAN: as sampled */
        int tiled;
        const char *what;
    } cases[] = {{3, 16, NAN, NAN, 1.0f, -600.0f, 0, "zero~600"},
                 {4, 32, NAN, NAN, 1.0f, -600.0f, 0, "zero~600"},
                 {3, 16, 0.1f, -3.0f, NAN, NAN, 0, "scale 0.3..1"},
                 {3, 16, 0.06f, 0.0f, NAN, NAN, 1, "scale 0..0.42"},
                 {3, 16, NAN, NAN, 1.0f, 400.0f, 1, "zero~-400"},
                 {2, 16, 0.2f, 0.0f, NAN, NAN, 0, "scale 0..1.4"},
                 {2, 16, 0.12f, 0.0f, NAN, NAN, 1, "scale 0..0.84"},
                 {3, 8, NAN, NAN, 1.0f, -600.0f, 0, "zero~600"},
                 {3, 8, 0.06f, 0.0f, NAN, NAN, 1, "scale 0..0.42"},
                 {4, 8, NAN, NAN, 1.0f, 400.0f, 1, "zero~-400"}};
    char path[256];
    snprintf(path, sizeof path, "/tmp/spqr_gpu_fb_%d.spqr", (int)getpid());
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                               .ndim = 2,
                               .dims = {300, 1000},
                               .wbits = cases[i].w,
                               .stat_bits = 3,
                               .beta1 = 16,
                               .beta2 = cases[i].beta2,
                               .nnz = 3000,
                               .flags = SPQR_FLAG_PERM};
        spqr_error err = {0};
        spqr_sample_tensor st;
        char label[160];
        spqr_sample_describe(&in, label, sizeof label);
        if (spqr_sample_tensor_make(&in, 77 + (uint64_t)i, &st, &err)) {
            CHECK(0, "%s: %s", label, err.msg);
            continue;
        }
        const float set[4] = {cases[i].ss, cases[i].zs, cases[i].sz, cases[i].zz};
        uint16_t *s2 = st.sec[SPQR_SEC_STAT2];
        for (uint64_t k = 0; k < st.size[SPQR_SEC_STAT2] / 8; k++)
            for (int j = 0; j < 4; j++)
                if (!isnan(set[j])) s2[4 * k + j] = spqr_f32_to_f16(set[j]);
        spqr_writer *w = spqr_writer_open(path, 0, &err);
        spqr_file *f = NULL;
        if (w && spqr_writer_add_spqr(w, "t", &in, (const void *const *)st.sec, &err))
            spqr_writer_abort(w);
        else if (w && !spqr_writer_finish(w, &err))
            f = spqr_file_open(path, 0, &err);
        spqr_sample_tensor_free(&st);
        if (!f) {
            CHECK(0, "%s: building tensor: %s", label, err.msg);
            continue;
        }
        strncat(label, " ", sizeof label - strlen(label) - 1);
        strncat(label, cases[i].what, sizeof label - strlen(label) - 1);
        check_tensor(f, 0, 500 + (uint64_t)i, label, cases[i].tiled);
        spqr_file_close(f);
    }
    unlink(path);
}

/* Outlier rounds (kernels/spqr_kernels.cu make_rounds, mma_outliers.cuh OS = 8, 9): strip S
 * takes max over its row pairs (g, g + 8) of ceil(outliers / 16) rounds, and a tensor has them
 * exactly when it is tiled with s-bit statistics, cols <= 32768, and they average at
 * most 16 bytes per outlier (at least a quarter of the slots used). The count is checked against
 * the tensor's own row pointers, and each tensor against the reference as every other (batch 1,
 * batch 2-8 while batch x cols <= 131072 and batch 9-16 while cols <= 8192 take the rounds where
 * there are any). Ragged rows leave a strip's last pairs short; 40 outliers
 * in 2048 rows fill 1/128 of their rounds' slots (none built); 10 % of 4097 columns gives 52
 * rounds a strip. The eighth case keeps the stored layout (β2 = 8 with fp16 statistics: the v3
 * kernel at every batch, kernels/launch_stored.cuh); the rest are β2 = 8 tensors that are tiled
 * (the SK = 3 kernels, two groups per lane, kernels/mma_decode.cuh): with rounds, beyond 32768
 * columns (the CSR walks: OS = 1 at batch 1, OS = 4 at batch 3-4, OS = 2), with s = 5 and 7
 * (entries straddling words) and without outliers (OS = 0); the last three β2 = 8 cases have beta1
 * < 16 (the SK = 4 kernels: stat2 per row, from the tile records at beta1 = 8 and from the stored
 * array at beta1 = 4); with the seventh case and beta1 = 2 they check the rounds of beta1 < 16
 * tensors (since v7c). The last case has 30000 columns: its batch 5 rounds gather x from xt (5 ·
 * 30000 values are past L1; lanes past nb read zeros there), as every tensor's batch 8 rounds do,
 * and batch 9-16 take its rounds inside the tile loop (the OS = 10 kernels, v7e). */
static void outlier_rounds(void) {
    static const struct {
        uint64_t rows, cols;
        uint32_t w, s, b1, b2;
        double density;
        int expect; /* rounds expected (1) or not (0) */
        const char *what;
    } cases[] = {
        {512, 4096, 3, 3, 16, 16, 0.01, 1, " (1 %)"},
        {257, 4097, 4, 4, 16, 16, 0.10, 1, " (10 %, ragged)"},
        {1000, 333, 2, 2, 32, 64, 0.01, 1, " (ragged, partial tiles)"},
        {2048, 4096, 3, 3, 16, 16, 40.0 / (2048.0 * 4096.0), 0, " (slots 1/128 used)"},
        {64, 40000, 3, 3, 16, 16, 0.01, 0, " (cols > 32768)"},
        {256, 4096, 3, 16, 16, 16, 0.01, 0, " (fp16 statistics)"},
        {256, 4096, 3, 3, 8, 16, 0.01, 1, " (beta1 8)"},
        {256, 4097, 3, 16, 16, 8, 0.01, 0, " (fp16 statistics, beta2 8: stored layout)"},
        {512, 4096, 3, 3, 16, 8, 0.01, 1, " (beta2 8, 1 %)"},
        {257, 4097, 4, 4, 16, 8, 0.10, 1, " (beta2 8, 10 %, ragged)"},
        {1000, 333, 2, 2, 32, 8, 0.01, 1, " (beta2 8, ragged, partial tiles)"},
        {64, 40000, 3, 5, 16, 8, 0.01, 0, " (beta2 8, cols > 32768)"},
        {300, 1000, 3, 7, 16, 8, 0.0, 0, " (beta2 8, s 7, no outliers)"},
        {4096, 5400, 3, 3, 16, 8, 0.02, 1, " (beta2 8, many outliers)"},
        {512, 4096, 3, 3, 8, 8, 0.01, 1, " (beta1 8, beta2 8)"},
        {257, 4097, 4, 2, 4, 8, 0.10, 1, " (beta1 4, beta2 8, 10 %, ragged)"},
        {1000, 333, 2, 7, 8, 8, 0.01, 1, " (beta1 8, beta2 8, s 7, partial tiles)"},
        {300, 2000, 3, 3, 2, 32, 0.01, 1, " (beta1 2)"},
        {64, 30000, 3, 3, 16, 16, 0.01, 1, " (5 x 30000 past L1: batch 5 rounds from xt)"},
    };
    char path[256];
    snprintf(path, sizeof path, "/tmp/spqr_gpu_rounds_%d.spqr", (int)getpid());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (getenv("SPQR_GPU_QUICK") && i > 2 && i != 8 && i != 14) continue;
        spqr_tensor_info in = {
            .kind = SPQR_KIND_SPQR,
            .ndim = 2,
            .dims = {cases[i].rows, cases[i].cols},
            .wbits = cases[i].w,
            .stat_bits = cases[i].s,
            .beta1 = cases[i].b1,
            .beta2 = cases[i].b2,
            .nnz = (uint64_t)(cases[i].density * (double)(cases[i].rows * cases[i].cols)),
            .flags = (i % 2) ? SPQR_FLAG_PERM : 0};
        spqr_error err = {0};
        char label[200];
        spqr_sample_describe(&in, label, sizeof label);
        strncat(label, cases[i].what, sizeof label - strlen(label) - 1);
        spqr_file *f = spqr_sample_open_tensor(path, &in, 700 + (uint64_t)i, &err);
        if (!f) {
            CHECK(0, "%s: building tensor: %s", label, err.msg);
            continue;
        }
        uint64_t want = 0, size = 0;
        const uint8_t *rp = spqr_file_section(f, 0, SPQR_SEC_ROWPTR, &size);
        for (uint64_t S = 0; cases[i].expect && S * 16 < in.dims[0]; S++) {
            uint64_t most = 0;
            for (uint64_t g = 0; g < 8; g++) {
                uint64_t n = 0;
                for (uint64_t r = 16 * S + g; r < 16 * S + 16 && r < in.dims[0]; r += 8) {
                    uint32_t a, b;
                    memcpy(&a, rp + 4 * r, 4), memcpy(&b, rp + 4 * r + 4, 4);
                    n += b - a;
                }
                most = n > most ? n : most;
            }
            want += (most + 15) / 16;
        }
        spqr_gpu_tensor *t;
        if (spqr_gpu_upload(f, 0, &t, &err) == SPQR_OK) {
            const uint64_t got = spqr_gpu_outlier_rounds(t);
            CHECK(got == want && (want > 0) == cases[i].expect,
                  "%s: %llu outlier rounds, expected %llu", label, (unsigned long long)got,
                  (unsigned long long)want);
            spqr_gpu_free(t);
        } else {
            CHECK(0, "%s: upload: %s", label, err.msg);
        }
        check_tensor(f, 0, 800 + (uint64_t)i, label, tiled_config(&in));
        spqr_file_close(f);
    }
    unlink(path);
}

/* Tensors with many outliers (at least SPQR_MMA_OUTL_ROWS_MIN_NNZ = 2^18) and no outlier rounds
 * for the batch have them summed row by row at batch 9-16 (5-16 in a SPQR_MMA_OUTL_ROWS_MIN_BATCH=4
 * build), and those with at least SPQR_MMA_OUTL_ROWS_MID_NNZ = 2^21 from batch 5
 * (kernels/mma_outliers.cuh, outlier_row_sum): at batch 9-16 inside the tensor-core kernel after
 * its tiles where a warp has at most two rows of its strip, otherwise by the separate pass
 * (outlier_rows_kernel; batch 5-8). Batch 9-16 take rounds instead where the tensor has them and
 * cols <= 8192 (s-bit statistics: 1001x3000 w3, 4096x5400, 25600x512 at batch 9-16, with 16
 * vectors, kernels/mma_outliers.cuh outlier_round_n2), or inside the tile loop past 8192 columns
 * with β1 >= 16 (300x9000 β1 16: the OS = 10 kernels); the sums row by row there with fp16
 * statistics (1001x3000 w4 s16) and past 8192 columns with β1 < 16 (300x9000 β1 8, after the
 * tiles). Ragged rows (1001: the pass's last block of 8 rows is partial). The 2^21 tensor
 * (4096x5400 at 9.95 %) and the 25600-row one are left out of the quick subset. */
static void outlier_pass(void) {
    static const struct {
        uint64_t rows, cols, nnz;
        uint32_t w, s, beta1;
    } cases[] = {{1001, 3000, 300000, 3, 3, 16},  {1001, 3000, 300000, 4, 16, 16},
                 {4096, 5400, 2200000, 3, 3, 16}, {25600, 512, 300000, 3, 3, 16},
                 {300, 9000, 270000, 3, 3, 16},   {300, 9000, 270000, 3, 3, 8}};
    const int quick = getenv("SPQR_GPU_QUICK") != NULL;
    char path[256];
    snprintf(path, sizeof path, "/tmp/spqr_gpu_op_%d.spqr", (int)getpid());
    for (uint32_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (quick && (cases[i].nnz >= (1u << 21) || cases[i].rows > 4096)) continue;
        const uint32_t w = cases[i].w;
        spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                               .ndim = 2,
                               .dims = {cases[i].rows, cases[i].cols},
                               .wbits = w,
                               .stat_bits = cases[i].s,
                               .beta1 = cases[i].beta1,
                               .beta2 = 16,
                               .nnz = cases[i].nnz,
                               .flags = SPQR_FLAG_PERM};
        spqr_error err = {0};
        char label[160];
        spqr_sample_describe(&in, label, sizeof label);
        const uint64_t seed = i < 2 ? 900 + w : 1000 + i;
        spqr_file *f = spqr_sample_open_tensor(path, &in, seed, &err);
        if (!f) {
            CHECK(0, "%s: building tensor: %s", label, err.msg);
            continue;
        }
        check_tensor(f, 0, seed, label, 1);
        spqr_file_close(f);
    }
    unlink(path);
}

/* CUDA graphs: a spqr_gpu_matmul captured on a stream (as serving runtimes capture a decode step)
 * and replayed gives what the direct call gives, for each replay with new x in the same buffer
 * (nothing of the first x is baked into the graph): the same kernels, so bit-exact except where
 * split-K blocks add partial sums with atomics in a varying order (then within 2^-10 of the
 * element). Covers the tensor-core kernels with and without fused outliers, split-K, the outlier
 * pass (batch 16, 300 k outliers), the stored-layout kernels (β2 = 8) and the cuSPARSE path.
 * At batch 1 with at most 2048 columns a direct call is one kernel that permutes x itself
 * (launch_mma.cuh), while a captured one keeps prep_xh_kernel: there (`exact`) the fused
 * batch-1 outputs must be the same bits. */
static void graph_capture(void) {
    static const struct {
        uint64_t rows, cols, nnz;
        uint32_t w, b1, b2;
        int exact;
    } cases[] = {{1000, 3000, 30000, 3, 16, 16, 0},  {64, 40000, 0, 4, 16, 16, 0},
                 {1001, 3000, 300000, 3, 16, 16, 0}, {300, 1000, 3000, 3, 8, 8, 1},
                 {1000, 2000, 20000, 3, 16, 16, 1},  {513, 1376, 0, 4, 16, 16, 1},
                 {200, 700, 1400, 2, 16, 16, 1}};
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    char path[256];
    snprintf(path, sizeof path, "/tmp/spqr_gpu_graph_%d.spqr", (int)getpid());
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    for (int ci = 0; ci < ncases; ci++) {
        spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                               .ndim = 2,
                               .dims = {cases[ci].rows, cases[ci].cols},
                               .wbits = cases[ci].w,
                               .stat_bits = 3,
                               .beta1 = cases[ci].b1,
                               .beta2 = cases[ci].b2,
                               .nnz = cases[ci].nnz,
                               .flags = SPQR_FLAG_PERM};
        spqr_error err = {0};
        char label[160];
        spqr_sample_describe(&in, label, sizeof label);
        spqr_file *f = spqr_sample_open_tensor(path, &in, 2000 + (uint64_t)ci, &err);
        spqr_gpu_tensor *t = NULL;
        if (!f || spqr_gpu_upload(f, 0, &t, &err)) {
            CHECK(0, "%s: building/uploading tensor: %s", label, err.msg);
            spqr_file_close(f);
            continue;
        }
        const uint64_t rows = in.dims[0], cols = in.dims[1];
        static const int batches[] = {1, 4, 16};
        uint64_t rng = 77 + (uint64_t)ci;
        for (int bi = 0; bi < 3; bi++)
            for (int path_i = 0; path_i < (in.nnz ? 2 : 1); path_i++) {
                const int nb = batches[bi];
                const uint64_t nx = (uint64_t)nb * cols, ny = (uint64_t)nb * rows;
                uint16_t *xs[2], *yd[2], *yg = malloc(ny * 2);
                void *dx, *dy;
                cudaMalloc(&dx, nx * 2), cudaMalloc(&dy, ny * 2);
                spqr_gpu_set_outlier_path(t, (spqr_outlier_path)path_i, &err);
                int ok = 1;
                /* captured first: a tensor's first call (per kernel variant) may be the captured
                 * one */
                cudaGraph_t g = NULL;
                cudaGraphExec_t ge = NULL;
                cudaError_t ce = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
                spqr_error cerr = {0};
                spqr_status st = spqr_gpu_matmul(t, dx, dy, nb, SPQR_ACT_F16, s, &cerr);
                const cudaError_t ce_end = cudaStreamEndCapture(s, &g);
                if (ce == cudaSuccess) ce = ce_end;
                if (ce == cudaSuccess) ce = cudaGraphInstantiate(&ge, g, 0);
                for (int v = 0; v < 2; v++) { /* direct calls: the expected outputs */
                    xs[v] = malloc(nx * 2), yd[v] = malloc(ny * 2);
                    for (uint64_t i = 0; i < nx; i++)
                        xs[v][i] = spqr_f32_to_f16(2.0f * spqr_rng_uniform(&rng) - 1.0f);
                    cudaMemcpy(dx, xs[v], nx * 2, cudaMemcpyHostToDevice);
                    cudaMemset(dy, 0xff, ny * 2);
                    ok &= spqr_gpu_matmul(t, dx, dy, nb, SPQR_ACT_F16, NULL, &err) == SPQR_OK;
                    ok &= cudaDeviceSynchronize() == cudaSuccess;
                    cudaMemcpy(yd[v], dy, ny * 2, cudaMemcpyDeviceToHost);
                }
                CHECK(ok && st == SPQR_OK && ce == cudaSuccess,
                      "%s batch %d %s: capture: status %d (%s), cuda %s; direct calls %s", label,
                      nb, path_i ? "cusparse" : "fused", st, cerr.msg, cudaGetErrorString(ce),
                      ok ? "ok" : err.msg);
                for (int v = 0; v < 2 && ce == cudaSuccess && st == SPQR_OK; v++) {
                    cudaMemcpy(dx, xs[v], nx * 2, cudaMemcpyHostToDevice);
                    cudaMemset(dy, 0xff, ny * 2);
                    /* s does not wait for the legacy stream (cudaStreamNonBlocking), and the
                     * memset is asynchronous: without this the poison could land after the
                     * replay's outputs (seen once: 64 NaN outputs) */
                    cudaDeviceSynchronize();
                    cudaError_t le = cudaGraphLaunch(ge, s);
                    if (le == cudaSuccess) le = cudaStreamSynchronize(s);
                    cudaMemcpy(yg, dy, ny * 2, cudaMemcpyDeviceToHost);
                    uint64_t differ = 0, bad = 0;
                    for (uint64_t i = 0; i < ny; i++) {
                        if (yg[i] == yd[v][i]) continue;
                        differ++;
                        const float a = spqr_f16_to_f32(yg[i]), b = spqr_f16_to_f32(yd[v][i]);
                        if (!(fabsf(a - b) <= ldexpf(fabsf(b), -10) + 1e-6f)) bad++;
                    }
                    const int exact = cases[ci].exact && nb == 1 && path_i == 0;
                    CHECK(le == cudaSuccess && bad == 0 && (!exact || differ == 0),
                          "%s batch %d %s: graph replay %d: cuda %s, %llu of %llu outputs differ "
                          "from the direct call (%llu beyond 2^-10%s)",
                          label, nb, path_i ? "cusparse" : "fused", v, cudaGetErrorString(le),
                          (unsigned long long)differ, (unsigned long long)ny,
                          (unsigned long long)bad, exact ? "; must be 0" : "");
                }
                if (ge) cudaGraphExecDestroy(ge);
                if (g) cudaGraphDestroy(g);
                (void)cudaGetLastError();
                cudaFree(dx), cudaFree(dy), free(yg);
                for (int v = 0; v < 2; v++) free(xs[v]), free(yd[v]);
            }
        spqr_gpu_free(t);
        spqr_file_close(f);
    }
    cudaStreamDestroy(s);
    unlink(path);
}

/* Calls chained on one stream, each call's output the next call's input (as a forward pass
 * runs): launched back to back without a sync they must give, bit for bit, what the same calls
 * give with the stream synchronized after each. Two n² w3 tensors with 1 % outliers and a
 * permutation, one tiled (β2 = 16: the tensor-core kernels) and one in the stored layout (β2 = 8
 * with fp16 statistics: the fp32 matmul kernel v3), eight calls alternating between them (or,
 * `same`, all on the tiled one: its calls back to back), batch 1, 4 and 16, ten chained runs each
 * (x in ±2^-7, ±2^-10 at 3072: the outputs grow about 5x a call at 2048, faster at 3072, and
 * stay finite in fp16). n = 2048 takes the batch-1 kernel that permutes x itself from the host
 * (XS); 3072 prep_xh_kernel before the matmul (and, in bench/experiments/
 * xt_ticket_permute_v7n.patch, the matmul's own first blocks). Every kernel of both paths
 * is launched as a programmatic dependent of the kernel before it (bench/NOTES.md v7a, v7b), so its
 * griddepcontrol.wait is what orders it after that kernel's writes. This test passed without that
 * wait too (H100, session 19): the matmul lets its dependents launch only as its blocks exit. The
 * wait is kept because the PDL contract guarantees nothing without it (a kernel before may trigger
 * early). */
static void chained_calls(uint64_t n, int same) {
    enum { kSteps = 8, kRuns = 10 };
    /* (at 3072, x in ±2^-7 overflowed fp16 in the synchronized reference: x starts 8x smaller) */
    const float x_scale = n > 2048 ? 1.0f / 1024.0f : 1.0f / 128.0f;
    char path[256];
    spqr_gpu_tensor *t[2] = {NULL, NULL};
    spqr_file *f[2] = {NULL, NULL};
    spqr_error err = {0};
    for (int k = 0; k < 2; k++) {
        spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                               .ndim = 2,
                               .dims = {n, n},
                               .wbits = 3,
                               .stat_bits = k ? 16 : 3,
                               .beta1 = 16,
                               .beta2 = k ? 8 : 16,
                               .nnz = n * n / 100,
                               .flags = SPQR_FLAG_PERM};
        snprintf(path, sizeof path, "/tmp/spqr_gpu_chain_%d_%d.spqr", (int)getpid(), k);
        f[k] = spqr_sample_open_tensor(path, &in, 3000 + (uint64_t)k, &err);
        if (!f[k] || spqr_gpu_upload(f[k], 0, &t[k], &err) != SPQR_OK) {
            CHECK(0, "chained calls: building/uploading tensor %d: %s", k, err.msg);
            goto done;
        }
        CHECK(spqr_gpu_uses_tensor_cores(t[k]) == !k, "chained calls: tensor %d (beta2 %u) %s", k,
              in.beta2, k ? "tiled, expected the stored layout" : "not tiled");
    }
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    static const int batches[] = {1, 4, 16};
    for (int bi = 0; bi < 3; bi++) {
        const int nb = batches[bi];
        const uint64_t len = (uint64_t)nb * n;
        void *d[kSteps + 1];
        for (int i = 0; i <= kSteps; i++) cudaMalloc(&d[i], len * 2);
        uint16_t *x = malloc(len * 2), *ref = malloc(kSteps * len * 2), *got = malloc(len * 2);
        uint64_t rng = 31 + (uint64_t)nb;
        for (uint64_t i = 0; i < len; i++)
            x[i] = spqr_f32_to_f16((2.0f * spqr_rng_uniform(&rng) - 1.0f) * x_scale);
        cudaMemcpy(d[0], x, len * 2, cudaMemcpyHostToDevice);
        /* the reference: the stream synchronized after every call */
        int ok = 1;
        for (int i = 0; i < kSteps; i++) {
            ok &= spqr_gpu_matmul(t[same ? 0 : i % 2], d[i], d[i + 1], nb, SPQR_ACT_F16, s, &err) ==
                  SPQR_OK;
            ok &= cudaStreamSynchronize(s) == cudaSuccess;
            cudaMemcpy(ref + (uint64_t)i * len, d[i + 1], len * 2, cudaMemcpyDeviceToHost);
        }
        uint64_t nonfinite = 0;
        for (uint64_t i = 0; i < kSteps * len; i++) nonfinite += (ref[i] & 0x7c00) == 0x7c00;
        CHECK(ok && nonfinite == 0,
              "chained calls %llu²%s batch %d: synchronized reference: %s, %llu non-finite outputs",
              (unsigned long long)n, same ? " (one tensor)" : "", nb, ok ? "ok" : err.msg,
              (unsigned long long)nonfinite);
        for (int run = 0; run < kRuns && ok && !nonfinite; run++) {
            for (int i = 1; i <= kSteps; i++) cudaMemsetAsync(d[i], 0xff, len * 2, s); /* NaN */
            for (int i = 0; i < kSteps; i++)
                ok &= spqr_gpu_matmul(t[same ? 0 : i % 2], d[i], d[i + 1], nb, SPQR_ACT_F16, s,
                                      &err) == SPQR_OK;
            ok &= cudaStreamSynchronize(s) == cudaSuccess;
            uint64_t differ = 0;
            int first = -1;
            for (int i = 0; i < kSteps; i++) {
                cudaMemcpy(got, d[i + 1], len * 2, cudaMemcpyDeviceToHost);
                for (uint64_t j = 0; j < len; j++)
                    if (got[j] != ref[(uint64_t)i * len + j]) {
                        differ++;
                        if (first < 0) first = i;
                    }
            }
            CHECK(ok && differ == 0,
                  "chained calls %llu²%s batch %d run %d: %s; %llu of %llu outputs differ from the "
                  "synchronized calls (first at call %d)",
                  (unsigned long long)n, same ? " (one tensor)" : "", nb, run, ok ? "ok" : err.msg,
                  (unsigned long long)differ, (unsigned long long)(kSteps * len), first);
        }
        for (int i = 0; i <= kSteps; i++) cudaFree(d[i]);
        free(x), free(ref), free(got);
    }
    cudaStreamDestroy(s);
done:
    for (int k = 0; k < 2; k++) {
        spqr_gpu_free(t[k]);
        spqr_file_close(f[k]);
        snprintf(path, sizeof path, "/tmp/spqr_gpu_chain_%d_%d.spqr", (int)getpid(), k);
        unlink(path);
    }
}

/* Batch 1 after wider batches on the same scratch. A tensor's calls share its device scratch (the
 * permuted x, xt, partial sums), which a batch-16 call fills in every row; a batch-1 call must
 * read nothing of it that it did not write itself. So a batch-1 call after a batch-16 call (other
 * x) must give, bit for bit, what the same batch-1 call gave before it, and stay within the
 * tolerance of check_tensor against the exact product. Batch-1 kernels covered: the outlier
 * rounds (OS = 8), no outliers (OS = 0), and past 32768 columns the CSR outliers (OS = 1). (Written
 * for bench/experiments/scale_out_v7f.patch, whose batch-1 kernels read a zero row and x's chunk
 * sums from that scratch; kept as a property of every batch-1 kernel.) */
static void batch1_after_wider(void) {
    static const struct {
        uint64_t rows, cols;
        uint32_t w;
        double density;
    } cases[] = {{1000, 3000, 3, 0.01}, {512, 2048, 2, 0.0}, {64, 40000, 3, 0.01}};
    char path[256];
    snprintf(path, sizeof path, "/tmp/spqr_gpu_b1_%d.spqr", (int)getpid());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint64_t rows = cases[i].rows, cols = cases[i].cols;
        spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                               .ndim = 2,
                               .dims = {rows, cols},
                               .wbits = cases[i].w,
                               .stat_bits = 3,
                               .beta1 = 16,
                               .beta2 = 16,
                               .nnz = (uint64_t)(cases[i].density * (double)(rows * cols)),
                               .flags = SPQR_FLAG_PERM};
        spqr_error err = {0};
        char label[200];
        spqr_sample_describe(&in, label, sizeof label);
        spqr_file *f = spqr_sample_open_tensor(path, &in, 900 + (uint64_t)i, &err);
        spqr_gpu_tensor *t = NULL;
        if (!f || spqr_gpu_upload(f, 0, &t, &err) != SPQR_OK) {
            CHECK(0, "batch 1 after 16, %s: building/uploading: %s", label, err.msg);
            if (f) spqr_file_close(f);
            continue;
        }
        uint16_t *x = malloc(16 * cols * 2), *y1 = malloc(rows * 2), *y2 = malloc(rows * 2);
        uint64_t rng = 77 + i;
        for (uint64_t j = 0; j < 16 * cols; j++)
            x[j] = spqr_f32_to_f16(2.0f * spqr_rng_uniform(&rng) - 1.0f);
        void *dx1, *dx16, *dy;
        cudaMalloc(&dx1, cols * 2), cudaMalloc(&dx16, 16 * cols * 2),
            cudaMalloc(&dy, 16 * rows * 2);
        cudaMemcpy(dx16, x, 16 * cols * 2, cudaMemcpyHostToDevice);
        cudaMemcpy(dx1, x + 5 * cols, cols * 2, cudaMemcpyHostToDevice); /* not vector 0 */
        int ok = spqr_gpu_matmul(t, dx1, dy, 1, SPQR_ACT_F16, NULL, &err) == SPQR_OK;
        ok &= cudaMemcpy(y1, dy, rows * 2, cudaMemcpyDeviceToHost) == cudaSuccess;
        ok &= spqr_gpu_matmul(t, dx16, dy, 16, SPQR_ACT_F16, NULL, &err) == SPQR_OK;
        cudaMemset(dy, 0xff, rows * 2); /* poison */
        ok &= spqr_gpu_matmul(t, dx1, dy, 1, SPQR_ACT_F16, NULL, &err) == SPQR_OK;
        ok &= cudaMemcpy(y2, dy, rows * 2, cudaMemcpyDeviceToHost) == cudaSuccess;
        uint64_t differ = 0;
        for (uint64_t r = 0; r < rows; r++) differ += y1[r] != y2[r];
        CHECK(ok && differ == 0,
              "batch 1 after 16, %s: %s; %llu of %llu outputs differ from the call before", label,
              ok ? "ok" : err.msg, (unsigned long long)differ, (unsigned long long)rows);
        cudaFree(dx1), cudaFree(dx16), cudaFree(dy), free(x), free(y1), free(y2);
        spqr_gpu_free(t);
        check_tensor(f, 0, 950 + (uint64_t)i, label, 1);
        spqr_file_close(f);
    }
    unlink(path);
}

static void errors(void) {
    spqr_error err = {0};
    char path[256];
    snprintf(path, sizeof path, "/tmp/spqr_gpu_err_%d.spqr", (int)getpid());
    spqr_sample_write_file(path, 1, 0, &err);
    spqr_file *f = spqr_file_open(path, 0, &err);
    spqr_gpu_tensor *t = NULL;
    CHECK(spqr_gpu_upload(f, 0, &t, &err) == SPQR_E_ARG && !t,
          "upload of a plain tensor must fail");
    CHECK(spqr_gpu_upload(f, 99, &t, &err) == SPQR_E_NOTFOUND,
          "upload of a missing tensor must fail");
    long q = spqr_file_find(f, "layer0.q_proj");
    CHECK(spqr_gpu_upload(f, (size_t)q, &t, &err) == SPQR_OK, "upload: %s", err.msg);
    void *d;
    cudaMalloc(&d, 1 << 20);
    CHECK(spqr_gpu_matmul(t, d, d, 0, SPQR_ACT_F16, NULL, &err) == SPQR_E_ARG, "batch 0 must fail");
    CHECK(spqr_gpu_matmul(t, d, d, 17, SPQR_ACT_F16, NULL, &err) == SPQR_E_ARG,
          "batch 17 must fail");
    CHECK(spqr_gpu_matmul(t, d, d, 1, (spqr_act_type)9, NULL, &err) == SPQR_E_ARG,
          "bad act must fail");
    cudaFree(d);
    spqr_gpu_free(t);
    spqr_file_close(f);
    unlink(path);
}

/* Whole-model upload: every SpQR tensor of a file, in file order, found by name; each model
 * tensor multiplies as a separately uploaded copy of it does (same kernels; within fp16 rounding
 * of the larger output, since split-K sums may add in another order); a missing name is
 * SPQR_E_NOTFOUND naming it. With real set, the same for a real compressed model's file. */
static void model_upload(const char *real) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/spqr_gpu_model_%d.spqr", (int)getpid());
    spqr_error err = {0};
    spqr_file *f = NULL;
    if (real && *real)
        f = spqr_file_open(real, 0, &err);
    else if (spqr_sample_write_file(path, 5, 0, &err) == SPQR_OK)
        f = spqr_file_open(path, 0, &err);
    if (!f) {
        CHECK(0, "model: %s", err.msg);
        unlink(path);
        return;
    }
    spqr_gpu_model *m = NULL;
    CHECK(spqr_gpu_model_upload(f, &m, &err) == SPQR_OK && m, "model upload: %s", err.msg);
    /* first every model tensor's matmul back to back on one stream (batch 1 and 16 in turn, each
     * into its own output), as a forward pass runs them through the shared scratch; then each
     * against its own upload of the tensor */
    const size_t nt = spqr_file_tensor_count(f);
    void **dy = calloc(nt ? nt : 1, sizeof *dy), *dx = NULL;
    uint64_t maxcols = 0;
    for (size_t i = 0; i < nt; i++) {
        const spqr_tensor_info *in = spqr_file_tensor_info(f, i);
        if (in->kind == SPQR_KIND_SPQR && in->dims[1] > maxcols) maxcols = in->dims[1];
    }
    uint16_t *xh = malloc(16 * maxcols * 2 + 2);
    for (uint64_t c = 0; c < 16 * maxcols; c++)
        xh[c] = spqr_f32_to_f16((float)((c * 2654435761u) % 1000) / 1000.0f - 0.5f);
    cudaMalloc(&dx, 16 * maxcols * 2 + 2);
    cudaMemcpy(dx, xh, 16 * maxcols * 2, cudaMemcpyHostToDevice);
    size_t k = 0;
    for (size_t i = 0; m && i < nt; i++) {
        const spqr_tensor_info *in = spqr_file_tensor_info(f, i);
        if (in->kind != SPQR_KIND_SPQR) continue;
        const int nb = k % 2 ? 16 : 1;
        cudaMalloc(&dy[i], (uint64_t)nb * in->dims[0] * 2);
        const spqr_status s1 =
            spqr_gpu_matmul(spqr_gpu_model_tensor(m, k), dx, dy[i], nb, SPQR_ACT_F16, NULL, &err);
        CHECK(s1 == SPQR_OK, "model tensor %zu matmul: %s", k, err.msg);
        k++;
    }
    cudaDeviceSynchronize();
    k = 0;
    uint64_t own_bytes = 0;
    for (size_t i = 0; m && i < nt; i++) {
        const spqr_tensor_info *in = spqr_file_tensor_info(f, i);
        if (in->kind != SPQR_KIND_SPQR) continue;
        const char *name = spqr_file_tensor_name(f, i);
        CHECK(spqr_gpu_model_name(m, k) && !strcmp(spqr_gpu_model_name(m, k), name),
              "model tensor %zu: name '%s', file has '%s'", k, spqr_gpu_model_name(m, k), name);
        spqr_gpu_tensor *found = NULL, *own = NULL;
        CHECK(spqr_gpu_model_find(m, name, &found, &err) == SPQR_OK &&
                  found == spqr_gpu_model_tensor(m, k),
              "model find '%s': %s", name, err.msg);
        const int nb = k % 2 ? 16 : 1;
        const uint64_t n = (uint64_t)nb * in->dims[0];
        uint16_t *ym = malloc(n * 2), *yo = malloc(n * 2);
        void *dyo;
        cudaMalloc(&dyo, n * 2);
        cudaMemcpy(ym, dy[i], n * 2, cudaMemcpyDeviceToHost);
        spqr_status s2 = spqr_gpu_upload(f, i, &own, &err);
        if (!s2) s2 = spqr_gpu_matmul(own, dx, dyo, nb, SPQR_ACT_F16, NULL, &err);
        own_bytes += spqr_gpu_device_bytes(own);
        cudaMemcpy(yo, dyo, n * 2, cudaMemcpyDeviceToHost);
        double dmax = 0, ymax = 0;
        for (uint64_t r = 0; r < n; r++) {
            const double a = spqr_f16_to_f32(ym[r]), b = spqr_f16_to_f32(yo[r]);
            dmax = fmax(dmax, fabs(a - b)), ymax = fmax(ymax, fabs(b));
        }
        CHECK(s2 == SPQR_OK && dmax <= ymax / 1024,
              "model tensor '%s' batch %d: max |model - own upload| %.3g (max |y| %.3g): %s", name,
              nb, dmax, ymax, err.msg);
        spqr_gpu_free(own);
        cudaFree(dyo), free(ym), free(yo);
        k++;
    }
    for (size_t i = 0; i < nt; i++) cudaFree(dy[i]);
    cudaFree(dx), free(dy), free(xh);
    uint64_t sum = 0;
    for (size_t i = 0; i < k; i++) sum += spqr_gpu_device_bytes(spqr_gpu_model_tensor(m, i));
    /* the model's count is its tensors' plus one shared scratch: more than theirs, and (with two
     * or more tensors) less than the same tensors uploaded one by one, each with its own */
    const uint64_t mb = spqr_gpu_model_device_bytes(m);
    CHECK(m && sum > 0 && mb > sum && (k < 2 || mb < own_bytes),
          "model device bytes %llu: its tensors' %llu, uploaded one by one %llu",
          (unsigned long long)mb, (unsigned long long)sum, (unsigned long long)own_bytes);
    if (m)
        printf("model device memory: %.2f MiB (%zu tensors; %.2f MiB uploaded one by one)\n",
               mb / 1048576.0, k, own_bytes / 1048576.0);
    spqr_gpu_tensor *t = (spqr_gpu_tensor *)&err;
    const spqr_status st = spqr_gpu_model_find(m, "no.such.tensor", &t, &err);
    CHECK(st == SPQR_E_NOTFOUND && !t && strstr(err.msg, "no.such.tensor"),
          "model find of a missing name: status %d, message '%s'", (int)st, err.msg);
    CHECK(!spqr_gpu_model_tensor(m, k) && !spqr_gpu_model_name(m, k),
          "model tensor past the end must be NULL");
    spqr_gpu_model_free(m);
    spqr_file_close(f);
    unlink(path);
}

/* The model uploaded with its groups of one input stacked (SPQR_GPU_MODEL_STACK_INPUTS), from a
 * real compressed model's file: one tensor per group, members in q/k/v (gate/up) order; every
 * linear located (tensor, rows) gives, run back to back with the other tensors on one stream, its
 * rows of the stacked output equal to the separately uploaded model's output within fp16 rounding
 * (the stacked grid may split sums otherwise); find refuses a stacked member, naming locate. */
static void model_upload_stacked(const char *real) {
    spqr_error err = {0};
    spqr_file *f = spqr_file_open(real, 0, &err);
    CHECK(f != NULL, "%s: %s", real, err.msg);
    if (!f) return;
    spqr_gpu_model *ms = NULL, *m1 = NULL;
    CHECK(spqr_gpu_model_upload_opts(f, SPQR_GPU_MODEL_STACK_INPUTS, &ms, &err) == SPQR_OK && ms,
          "stacked model upload: %s", err.msg);
    CHECK(spqr_gpu_model_upload(f, &m1, &err) == SPQR_OK && m1, "model upload: %s", err.msg);
    if (!ms || !m1) {
        spqr_gpu_model_free(ms), spqr_gpu_model_free(m1), spqr_file_close(f);
        return;
    }
    const size_t nt = spqr_gpu_model_count(ms);
    /* the real model's groups all stack (one Hessian per input at compression) */
    size_t linears = 0, groups = 0, expect_groups = 0, expect_linears = 0, expect_nt = 0;
    for (size_t i = 0; i < spqr_file_tensor_count(f); i++) {
        size_t g[SPQR_MAX_GROUP];
        const size_t ng = spqr_file_input_group(f, i, g);
        expect_groups += ng > 1, expect_nt -= ng > 1 ? ng - 1 : 0;
        expect_linears += spqr_file_tensor_info(f, i)->kind == SPQR_KIND_SPQR;
    }
    expect_nt += expect_linears;
    uint64_t maxcols = 0, *out_rows = calloc(nt, sizeof *out_rows);
    for (size_t i = 0; i < nt; i++) {
        const size_t nm = spqr_gpu_model_members(ms, i);
        linears += nm, groups += nm > 1;
        CHECK(nm >= 1 && spqr_gpu_model_member_name(ms, i, 0) &&
                  !strcmp(spqr_gpu_model_member_name(ms, i, 0), spqr_gpu_model_name(ms, i)) &&
                  !spqr_gpu_model_member_name(ms, i, nm),
              "stacked model tensor %zu: %zu members, names", i, nm);
        for (size_t k = 0; k < nm; k++) { /* members in stacking order, rows one after another */
            const char *name = spqr_gpu_model_member_name(ms, i, k);
            spqr_gpu_tensor *t = NULL;
            uint64_t row0 = 1, rows = 0;
            const long fi = spqr_file_find(f, name);
            CHECK(fi >= 0 && spqr_gpu_model_locate(ms, name, &t, &row0, &rows, &err) == SPQR_OK &&
                      t == spqr_gpu_model_tensor(ms, i) && row0 == out_rows[i] &&
                      rows == spqr_file_tensor_info(f, (size_t)fi)->dims[0],
                  "locate '%s': tensor %p of %p, rows %llu + %llu: %s", name, (void *)t,
                  (void *)spqr_gpu_model_tensor(ms, i), (unsigned long long)row0,
                  (unsigned long long)rows, err.msg);
            out_rows[i] += rows;
            if (fi >= 0 && spqr_file_tensor_info(f, (size_t)fi)->dims[1] > maxcols)
                maxcols = spqr_file_tensor_info(f, (size_t)fi)->dims[1];
            spqr_gpu_tensor *found = (spqr_gpu_tensor *)&err;
            const spqr_status st = spqr_gpu_model_find(ms, name, &found, &err);
            CHECK(nm > 1 ? st == SPQR_E_ARG && !found && strstr(err.msg, "spqr_gpu_model_locate")
                         : st == SPQR_OK && found == t,
                  "find '%s' in the stacked model (%zu members): status %d, %s", name, nm, (int)st,
                  err.msg);
        }
    }
    CHECK(linears == expect_linears && groups == expect_groups && groups > 0 && nt == expect_nt &&
              spqr_gpu_model_count(m1) == linears,
          "stacked model: %zu tensors (%zu expected), %zu linears (file: %zu), %zu groups (file: "
          "%zu)",
          nt, expect_nt, linears, expect_linears, groups, expect_groups);
    /* every tensor of each model back to back (batch 1 and 16 alternating), then compared */
    uint16_t *xh = malloc(16 * maxcols * 2 + 2);
    for (uint64_t c = 0; c < 16 * maxcols; c++)
        xh[c] = spqr_f32_to_f16((float)((c * 2654435761u) % 1000) / 1000.0f - 0.5f);
    void *dx = NULL, **dys = calloc(nt, sizeof *dys), **dy1 = calloc(linears, sizeof *dy1);
    cudaMalloc(&dx, 16 * maxcols * 2 + 2);
    cudaMemcpy(dx, xh, 16 * maxcols * 2, cudaMemcpyHostToDevice);
    for (size_t i = 0; i < nt; i++) {
        const int nb = i % 2 ? 16 : 1;
        cudaMalloc(&dys[i], (uint64_t)nb * out_rows[i] * 2);
        CHECK(spqr_gpu_matmul(spqr_gpu_model_tensor(ms, i), dx, dys[i], nb, SPQR_ACT_F16, NULL,
                              &err) == SPQR_OK,
              "stacked model tensor %zu: %s", i, err.msg);
    }
    for (size_t i = 0, l = 0; i < nt; i++)
        for (size_t k = 0; k < spqr_gpu_model_members(ms, i); k++, l++) {
            spqr_gpu_tensor *t = NULL;
            uint64_t row0, rows;
            spqr_gpu_model_locate(m1, spqr_gpu_model_member_name(ms, i, k), &t, &row0, &rows, &err);
            const int nb = i % 2 ? 16 : 1;
            cudaMalloc(&dy1[l], (uint64_t)nb * rows * 2);
            CHECK(t && spqr_gpu_matmul(t, dx, dy1[l], nb, SPQR_ACT_F16, NULL, &err) == SPQR_OK,
                  "model tensor '%s': %s", spqr_gpu_model_member_name(ms, i, k), err.msg);
        }
    cudaDeviceSynchronize();
    for (size_t i = 0, l = 0; i < nt; i++) {
        const int nb = i % 2 ? 16 : 1;
        uint16_t *ys = malloc((uint64_t)nb * out_rows[i] * 2);
        cudaMemcpy(ys, dys[i], (uint64_t)nb * out_rows[i] * 2, cudaMemcpyDeviceToHost);
        for (size_t k = 0; k < spqr_gpu_model_members(ms, i); k++, l++) {
            const char *name = spqr_gpu_model_member_name(ms, i, k);
            spqr_gpu_tensor *t;
            uint64_t row0 = 0, rows = 0;
            spqr_gpu_model_locate(ms, name, &t, &row0, &rows, &err);
            uint16_t *y1 = malloc((uint64_t)nb * rows * 2);
            cudaMemcpy(y1, dy1[l], (uint64_t)nb * rows * 2, cudaMemcpyDeviceToHost);
            double dmax = 0, ymax = 0;
            for (int b = 0; b < nb; b++)
                for (uint64_t r = 0; r < rows; r++) {
                    const double a = spqr_f16_to_f32(ys[b * out_rows[i] + row0 + r]),
                                 c = spqr_f16_to_f32(y1[b * rows + r]);
                    dmax = fmax(dmax, fabs(a - c)), ymax = fmax(ymax, fabs(c));
                }
            CHECK(ymax > 0 && dmax <= ymax / 1024,
                  "stacked model '%s' batch %d: max |stacked - separate| %.3g (max |y| %.3g)", name,
                  nb, dmax, ymax);
            free(y1), cudaFree(dy1[l]);
        }
        free(ys), cudaFree(dys[i]);
    }
    printf("stacked model: %zu tensors for %zu linears (%zu groups); %.2f MiB on the device, "
           "%.2f MiB unstacked\n",
           nt, linears, groups, spqr_gpu_model_device_bytes(ms) / 1048576.0,
           spqr_gpu_model_device_bytes(m1) / 1048576.0);
    spqr_gpu_tensor *t = (spqr_gpu_tensor *)&err;
    uint64_t row0, rows;
    const spqr_status st = spqr_gpu_model_locate(ms, "no.such.tensor", &t, &row0, &rows, &err);
    CHECK(st == SPQR_E_NOTFOUND && !t && strstr(err.msg, "no.such.tensor"),
          "locate of a missing name: status %d, '%s'", (int)st, err.msg);
    CHECK(spqr_gpu_model_members(ms, nt) == 0 && !spqr_gpu_model_member_name(ms, nt, 0),
          "members past the end");
    cudaFree(dx), free(xh), free(dys), free(dy1), free(out_rows);
    spqr_gpu_model_free(ms), spqr_gpu_model_free(m1);
    spqr_file_close(f);
}

/* Device memory: spqr_gpu_device_bytes against the driver's own count (cudaMemGetInfo) for a
 * large tensor (28672x8192 w3 1 %, ~150 MB on the device; 4096x4096 in the quick subset), within
 * the driver's rounding (each allocation rounded up to 2 MiB pages, at most 20 of them; small
 * ones may share a page already held: 8 MiB below); selecting the cuSPARSE path adds its int32
 * indices to the count and to the driver's; after spqr_gpu_free the memory is back within one
 * page, in each of three upload/free cycles after an unmeasured first one (nothing leaks, no
 * drift). */
static void device_memory(void) {
    const int quick = getenv("SPQR_GPU_QUICK") != NULL;
    const uint64_t rows = quick ? 4096 : 28672, cols = quick ? 4096 : 8192;
    const spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                                 .ndim = 2,
                                 .dims = {rows, cols},
                                 .wbits = 3,
                                 .stat_bits = 3,
                                 .beta1 = 16,
                                 .beta2 = 16,
                                 .nnz = rows * cols / 100,
                                 .flags = SPQR_FLAG_PERM};
    char path[256], label[200];
    snprintf(path, sizeof path, "/tmp/spqr_gpu_mem_%d.spqr", (int)getpid());
    spqr_sample_describe(&in, label, sizeof label);
    spqr_error err = {0};
    spqr_file *f = spqr_sample_open_tensor(path, &in, 901, &err);
    if (!f) {
        CHECK(0, "%s: building tensor: %s", label, err.msg);
        unlink(path);
        return;
    }
    uint64_t file_bytes = 0, size;
    for (int s = 0; s < SPQR_SEC_COUNT; s++)
        if (spqr_file_section(f, 0, (spqr_section_id)s, &size)) file_bytes += size;
    const double MiB = 1048576.0;
    size_t free0, free1, total;
    /* a first cycle unmeasured: modules the upload and cuSPARSE load lazily stay on the device */
    spqr_gpu_tensor *warm = NULL;
    if (spqr_gpu_upload(f, 0, &warm, &err) == SPQR_OK)
        spqr_gpu_set_outlier_path(warm, SPQR_OUTLIERS_CUSPARSE, &err);
    spqr_gpu_free(warm);
    cudaDeviceSynchronize();
    cudaMemGetInfo(&free0, &total);
    for (int cycle = 0; cycle < 3; cycle++) {
        spqr_gpu_tensor *t = NULL;
        if (spqr_gpu_upload(f, 0, &t, &err) != SPQR_OK) {
            CHECK(0, "%s: upload: %s", label, err.msg);
            break;
        }
        cudaMemGetInfo(&free1, &total);
        const double got = (double)spqr_gpu_device_bytes(t), held = (double)free0 - (double)free1;
        CHECK(got >= (double)file_bytes * 0.9 && got <= (double)file_bytes * 2,
              "%s: device bytes %.0f for %.0f file bytes", label, got, (double)file_bytes);
        if (!quick)
            CHECK(held >= got - 8 * MiB && held <= got + 40 * MiB,
                  "%s: device bytes %.1f MiB, the driver's count %.1f MiB", label, got / MiB,
                  held / MiB);
        if (cycle == 0) {
            printf("device memory, %s: %.2f MiB counted, %.2f MiB held by the driver, file %.2f "
                   "MiB\n",
                   label, got / MiB, held / MiB, (double)file_bytes / MiB);
            CHECK(spqr_gpu_set_outlier_path(t, SPQR_OUTLIERS_CUSPARSE, &err) == SPQR_OK,
                  "%s: cuSPARSE path: %s", label, err.msg);
            size_t free2;
            cudaMemGetInfo(&free2, &total);
            const double got2 = (double)spqr_gpu_device_bytes(t);
            const double held2 = (double)free0 - (double)free2;
            /* int32 indices and the fp32 corrections, which upload released: this tensor's
             * rounds serve every batch of the fused path */
            CHECK(spqr_gpu_outlier_rounds(t) > 0 && got2 >= got + 8.0 * (double)in.nnz,
                  "%s: the cuSPARSE path's state: %.0f -> %.0f", label, got, got2);
            if (!quick)
                CHECK(held2 >= got2 - 8 * MiB && held2 <= got2 + 44 * MiB,
                      "%s: cuSPARSE path: device bytes %.1f MiB, the driver's count %.1f MiB",
                      label, got2 / MiB, held2 / MiB);
        }
        spqr_gpu_free(t);
        cudaMemGetInfo(&free1, &total);
        CHECK(fabs((double)free1 - (double)free0) <= 2 * MiB,
              "%s: cycle %d: %.1f MiB not returned after spqr_gpu_free", label, cycle,
              ((double)free0 - (double)free1) / MiB);
    }
    CHECK(spqr_gpu_device_bytes(NULL) == 0, "device bytes of no tensor");
    spqr_file_close(f);
    unlink(path);
}

/* Without a usable GPU every GPU entry point returns an error (no crash, nothing allocated). */
static void no_gpu(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/spqr_gpu_none_%d.spqr", (int)getpid());
    spqr_error err = {0};
    spqr_sample_write_file(path, 1, 0, &err);
    spqr_file *f = spqr_file_open(path, 0, &err);
    CHECK(f != NULL, "%s", err.msg);
    if (!f) return;
    spqr_gpu_model *m = (spqr_gpu_model *)&err;
    spqr_status st = spqr_gpu_model_upload(f, &m, &err);
    CHECK(st == SPQR_E_UNSUPPORTED && !m, "model upload without a GPU: status %d", (int)st);
    m = (spqr_gpu_model *)&err;
    st = spqr_gpu_model_upload_opts(f, SPQR_GPU_MODEL_STACK_INPUTS, &m, &err);
    CHECK(st == SPQR_E_UNSUPPORTED && !m, "stacked model upload without a GPU: %d", (int)st);
    spqr_gpu_tensor *t = (spqr_gpu_tensor *)&err;
    const long q = spqr_file_find(f, "layer0.q_proj");
    st = spqr_gpu_upload(f, q >= 0 ? (size_t)q : 0, &t, &err);
    CHECK(st == SPQR_E_UNSUPPORTED && !t, "upload without a GPU: status %d", (int)st);
    t = (spqr_gpu_tensor *)&err;
    const size_t qq[] = {q >= 0 ? (size_t)q : 0}; /* (37 rows: only alone, or last) */
    st = spqr_gpu_upload_stacked(f, qq, 1, &t, &err);
    CHECK(st == SPQR_E_UNSUPPORTED && !t, "stacked upload without a GPU: status %d", (int)st);
    CHECK(spqr_gpu_model_count(NULL) == 0, "count of no model");
    CHECK(spqr_gpu_model_device_bytes(NULL) == 0 && spqr_gpu_device_bytes(NULL) == 0,
          "device bytes of no model or tensor");
    spqr_file_close(f);
    unlink(path);
}

int main(void) {
    spqr_error err = {0};
    if (spqr_gpu_available(&err) != SPQR_OK) {
        printf("SKIP: no usable CUDA device (%s): GPU tests not run\n", err.msg);
        no_gpu();
        printf("gpu (errors without a device): %d passed, %d failed\n", passed, failed);
        return failed ? 1 : 77;
    }
    const char *real = getenv("SPQR_REAL_SPQR");
    errors();
    random_configs();
    fp16_fallback();
    outlier_rounds();
    outlier_pass();
    graph_capture();
    chained_calls(2048, 0);
    chained_calls(3072, 0);
    chained_calls(3072, 1);
    stacked_upload(real);
    batch1_after_wider();
    device_memory();
    model_upload(NULL);
    if (real && *real) model_upload(real);
    if (real && *real) model_upload_stacked(real);
    if (real && *real) {
        spqr_file *f = spqr_file_open(real, SPQR_OPEN_VERIFY, &err);
        CHECK(f != NULL, "%s: %s", real, err.msg);
        for (size_t i = 0; f && i < spqr_file_tensor_count(f); i++)
            if (spqr_file_tensor_info(f, i)->kind == SPQR_KIND_SPQR)
                check_tensor(f, i, i, spqr_file_tensor_name(f, i), -1);
        spqr_file_close(f);
    } else {
        printf("note: SPQR_REAL_SPQR not set: real compressed tensors not checked\n");
    }
    printf("gpu: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
