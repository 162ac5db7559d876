/* cmd_bench_gpu_stack.c — `spqr bench --gpu --stack/--stacked`: tensors that share one input (a
 * layer's q/k/v or gate/up) called one after another against one call on them uploaded stacked
 * (spqr_gpu_upload_stacked), and cuBLAS fp16 the same two ways; with --file, also the decode step
 * through spqr_gpu_model uploaded both ways. The method is cmd_bench_gpu.c's. */
#define _POSIX_C_SOURCE 200809L
#include "bench_gpu.h"
#include "sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#if SPQR_HAVE_CUDA
/* The dense side: `copies` copies of the group (sep: its members one after another; one: the
 * members stacked), each member rows[k] x cols fp16: the tensors' own weights dequantized
 * (spqr_gpu_dequantize_f16 of copy 0) or, with dense_fill, memset 0x11 (a small normal fp16, as
 * the synthetic rows' cuBLAS side) */
static int dense_copies(bench_row *c, int n, const int *rows, int copies, int dense_fill) {
    spqr_error err;
    for (c->nw = 0; c->nw < n * copies; c->nw++) {
        const uint64_t wbytes = (uint64_t)rows[c->nw % n] * (uint64_t)c->cols * 2;
        if (bench_cuda_failed(cudaMalloc(&c->W[c->nw], wbytes), "cuBLAS weights")) return 1;
        if (dense_fill) {
            if (bench_cuda_failed(cudaMemset(c->W[c->nw], 0x11, wbytes), "memset")) return 1;
        } else if (spqr_gpu_dequantize_f16(c->t[c->nw % n], c->W[c->nw], NULL, &err)) {
            fprintf(stderr, "spqr bench --gpu: %s\n", err.msg);
            return 1;
        }
    }
    return 0;
}

int bench_group(bench_run *R, const spqr_file *f, const size_t *sel, int n, const char *label,
                int dense_fill, float us[][2]) {
    const int cols = (int)spqr_file_tensor_info(f, sel[0])->dims[1];
    bench_row sep = {.cols = cols, .h = R->h, .s = R->s, .group = n},
              one = {.cols = cols, .h = R->h, .s = R->s};
    uint64_t bytes = 0; /* the group's section bytes */
    for (int k = 0; k < n; k++) {
        sep.grows[k] = (int)spqr_file_tensor_info(f, sel[k])->dims[0];
        sep.yrow[k] = k ? sep.yrow[k - 1] + sep.grows[k - 1] : 0;
        one.rows += sep.grows[k];
        for (int s = 0; s < SPQR_SEC_COUNT; s++) {
            uint64_t z = 0;
            spqr_file_section(f, sel[k], (spqr_section_id)s, &z);
            bytes += z;
        }
    }
    const int copies = bench_copies_for(bytes),
              wcopies = bench_copies_for((uint64_t)one.rows * (uint64_t)cols * 2);
    int rc = 1;
    spqr_error err = {0};
    sep.t = calloc((size_t)(n * copies), sizeof *sep.t),
    one.t = calloc((size_t)copies, sizeof *one.t);
    sep.W = calloc((size_t)(n * wcopies), sizeof *sep.W),
    one.W = calloc((size_t)wcopies, sizeof *one.W);
    if (!sep.t || !one.t || !sep.W || !one.W) {
        fprintf(stderr, "spqr bench --gpu: out of memory\n");
        goto done;
    }
    for (; sep.nt < n * copies; sep.nt++)
        if (spqr_gpu_upload(f, sel[sep.nt % n], &sep.t[sep.nt], &err)) goto spqr_error;
    for (; one.nt < copies; one.nt++)
        if (spqr_gpu_upload_stacked(f, sel, (size_t)n, &one.t[one.nt], &err)) goto spqr_error;
    if (dense_copies(&sep, n, sep.grows, wcopies, dense_fill) ||
        dense_copies(&one, 1, &one.rows, wcopies, dense_fill) ||
        bench_row_buffers(&sep, (uint64_t)one.rows) || bench_row_buffers(&one, (uint64_t)one.rows))
        goto done;
    for (int bi = 0; bi < R->nbatch; bi++) {
        sep.batch = one.batch = R->batches[bi];
        float ts, to, tcs, tco;
        if (bench_time_calls(bench_call_spqr, &sep, R->graph, &ts) ||
            bench_time_calls(bench_call_spqr, &one, R->graph, &to) ||
            bench_time_calls(bench_call_cublas, &sep, R->graph, &tcs) ||
            bench_time_calls(bench_call_cublas, &one, R->graph, &tco))
            goto done;
        const double b = (double)spqr_gpu_matmul_bytes(one.t[0], one.batch);
        printf("| %s | %d | %.1f | %.1f | %.2fx | %.0f%% | %.1f | %.1f | %.2fx | %.2fx |\n", label,
               one.batch, ts, to, ts / to, 100.0 * b / (to * 1e-6) / R->copy_bw, tcs, tco, tco / to,
               tcs / to);
        fflush(stdout);
        if (us) us[bi][0] = ts, us[bi][1] = to;
    }
    rc = 0;
    goto done;
spqr_error:
    fprintf(stderr, "spqr bench --gpu: %s\n", err.msg);
done:
    bench_row_free(&sep);
    bench_row_free(&one);
    return rc;
}

/* A decode step through spqr_gpu_model: call i runs every tensor of model copy i % copies once,
 * in model order on one stream, each into its own rows of y; the cuBLAS side runs the same
 * tensors' fp16 weights (row.W: wcopies copies of the model's count matrices). */
typedef struct {
    bench_row row; /* x, y, batch, stream, W; first, so that a call gets its address */
    spqr_gpu_model *m[MAX_COPIES_MODEL];
    int copies, wcopies;
    size_t count;   /* tensors of the model */
    uint64_t *cols; /* tensor k's columns */
    uint64_t *yrow; /* tensor k's output starts at row yrow[k] of each y vector block; its rows
                     * are yrow[k + 1] - yrow[k] */
} model_step;

static int call_model_step(bench_row *c, int i) {
    model_step *ms = (model_step *)c;
    const spqr_gpu_model *m = ms->m[i % ms->copies];
    for (size_t k = 0; k < ms->count; k++) {
        spqr_error err;
        void *y = (char *)c->y[i % 8] + 2ull * (uint64_t)c->batch * ms->yrow[k];
        if (spqr_gpu_matmul(spqr_gpu_model_tensor(m, k), c->x[i % 8], y, c->batch, SPQR_ACT_F16,
                            c->s, &err)) {
            fprintf(stderr, "spqr bench --gpu: %s\n", err.msg);
            return 1;
        }
    }
    return 0;
}

static int call_model_step_cublas(bench_row *c, int i) {
    model_step *ms = (model_step *)c;
    for (size_t k = 0; k < ms->count; k++) {
        const size_t w = (size_t)(i % ms->wcopies) * ms->count + k;
        const int rows = (int)(ms->yrow[k + 1] - ms->yrow[k]);
        /* bench_call_cublas's multiply, one member at tensor k's rows of y */
        bench_row one = *c;
        one.group = 1, one.grows[0] = rows, one.yrow[0] = (int)ms->yrow[k], one.W = &c->W[w],
        one.nw = 1, one.cols = (int)ms->cols[k];
        if (bench_call_cublas(&one, i)) return 1;
    }
    return 0;
}

/* f's model uploaded with options opts, in copies that make the working set exceed L2 (and the
 * same for its fp16 weights): us[bi][0] the step's time at batch bi of R, us[bi][1] cuBLAS's;
 * *tensors the model's tensor count. */
static int time_model_step(bench_run *R, const spqr_file *f, unsigned opts, float (*us)[2],
                           size_t *tensors) {
    model_step ms = {.row = {.h = R->h, .s = R->s}};
    spqr_error err = {0};
    int rc = 1;
    uint64_t maxcols = 0, dense = 0;
    if (spqr_gpu_model_upload_opts(f, opts, &ms.m[0], &err)) goto spqr_error;
    ms.copies = bench_copies_for(spqr_gpu_model_device_bytes(ms.m[0]));
    if (ms.copies > MAX_COPIES_MODEL) ms.copies = MAX_COPIES_MODEL;
    for (int c = 1; c < ms.copies; c++)
        if (spqr_gpu_model_upload_opts(f, opts, &ms.m[c], &err)) goto spqr_error;
    ms.count = *tensors = spqr_gpu_model_count(ms.m[0]);
    ms.yrow = calloc(ms.count + 1, sizeof *ms.yrow);
    ms.cols = calloc(ms.count + 1, sizeof *ms.cols);
    if (!ms.yrow || !ms.cols) goto done;
    for (size_t k = 0; k < ms.count; k++) {
        ms.yrow[k + 1] = ms.yrow[k];
        for (size_t j = 0; j < spqr_gpu_model_members(ms.m[0], k); j++) {
            const spqr_tensor_info *in = spqr_file_tensor_info(
                f, (size_t)spqr_file_find(f, spqr_gpu_model_member_name(ms.m[0], k, j)));
            ms.yrow[k + 1] += in->dims[0], ms.cols[k] = in->dims[1];
        }
        dense += (ms.yrow[k + 1] - ms.yrow[k]) * ms.cols[k] * 2;
        if (ms.cols[k] > maxcols) maxcols = ms.cols[k];
    }
    ms.wcopies = bench_copies_for(dense);
    if (!(ms.row.W = calloc((size_t)ms.wcopies * ms.count, sizeof *ms.row.W))) goto done;
    for (; ms.row.nw < ms.wcopies * (int)ms.count; ms.row.nw++) {
        const size_t k = (size_t)ms.row.nw % ms.count;
        if (bench_cuda_failed(
                cudaMalloc(&ms.row.W[ms.row.nw], (ms.yrow[k + 1] - ms.yrow[k]) * ms.cols[k] * 2),
                "cuBLAS weights"))
            goto done;
        if (spqr_gpu_dequantize_f16(spqr_gpu_model_tensor(ms.m[0], k), ms.row.W[ms.row.nw], NULL,
                                    &err))
            goto spqr_error;
    }
    ms.row.cols = (int)maxcols;
    if (bench_row_buffers(&ms.row, ms.yrow[ms.count])) goto done;
    for (int bi = 0; bi < R->nbatch; bi++) {
        ms.row.batch = R->batches[bi];
        if (bench_time_calls(call_model_step, &ms.row, R->graph, &us[bi][0]) ||
            bench_time_calls(call_model_step_cublas, &ms.row, R->graph, &us[bi][1]))
            goto done;
    }
    rc = 0;
    goto done;
spqr_error:
    fprintf(stderr, "spqr bench --gpu: %s\n", err.msg);
done:
    for (int c = 0; c < MAX_COPIES_MODEL; c++) spqr_gpu_model_free(ms.m[c]);
    free(ms.yrow), free(ms.cols);
    bench_row_free(&ms.row);
    return rc;
}

int bench_model_step(bench_run *R, const spqr_file *f) {
    float sep[3][2], one[3][2];
    size_t nsep = 0, none = 0;
    if (time_model_step(R, f, 0, sep, &nsep) ||
        time_model_step(R, f, SPQR_GPU_MODEL_STACK_INPUTS, one, &none))
        return 1;
    printf("\nThe decode step as an app runs it: every tensor of an spqr_gpu_model once, back to "
           "back on one stream, whole copies of the model rotated beyond L2 (as stored: %zu "
           "tensors; with SPQR_GPU_MODEL_STACK_INPUTS: %zu), and cuBLAS fp16 on the same tensors' "
           "weights:\n\n| batch | spqr µs, as stored | spqr µs, inputs stacked | gain | cuBLAS µs, "
           "as stored | cuBLAS µs, stacked | speedup (stacked vs stacked) |\n"
           "|---|---|---|---|---|---|---|\n",
           nsep, none);
    for (int bi = 0; bi < R->nbatch; bi++)
        printf("| %d | %.1f | %.1f | %.2fx | %.1f | %.1f | %.2fx |\n", R->batches[bi], sep[bi][0],
               one[bi][0], one[bi][0] > 0 ? sep[bi][0] / one[bi][0] : 0, sep[bi][1], one[bi][1],
               one[bi][0] > 0 ? one[bi][1] / one[bi][0] : 0);
    return 0;
}

int bench_group_synthetic(bench_run *R, int n, const int *rows, int cols, int cfg) {
    spqr_tensor_info in = bench_synthetic_info(rows[0], cols, cfg);
    uint64_t r64[MAX_GROUP], nnz[MAX_GROUP], sum_rows = 0;
    size_t sel[MAX_GROUP];
    for (int k = 0; k < n; k++)
        r64[k] = (uint64_t)rows[k], nnz[k] = in.nnz ? r64[k] * (uint64_t)cols / 100 : 0,
        sum_rows += r64[k], sel[k] = (size_t)k;
    char path[512];
    bench_synthetic_path(path, sizeof path, (int)sum_rows, cols, cfg);
    spqr_error err = {0};
    spqr_file *f = spqr_sample_open_shared_input(path, &in, (size_t)n, r64, nnz, 7, 0, &err);
    unlink(path); /* (mapped: stays readable until closed) */
    if (!f) {
        fprintf(stderr, "spqr bench --gpu: %s\n", err.msg);
        return 1;
    }
    char label[240], cl[48];
    int at = 0;
    for (int k = 0; k < n && at < 150; k++)
        at += snprintf(label + at, sizeof label - (size_t)at, "%s%dx%d", k ? " + " : "", rows[k],
                       cols);
    bench_synthetic_label(&in, cfg, cl, sizeof cl);
    snprintf(label + at, sizeof label - (size_t)at, " | %s", cl);
    const int rc = bench_group(R, f, sel, n, label, 1, NULL);
    spqr_file_close(f);
    return rc;
}
#endif
