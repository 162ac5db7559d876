/* bench_gpu.h — shared by the GPU benchmark's files, internal to tools/: cmd_bench_gpu.c (the
 * method, synthetic and file tensors, the options) and cmd_bench_gpu_stack.c (groups of tensors of
 * one input, called separately and stacked). */
#ifndef SPQR_BENCH_GPU_H
#define SPQR_BENCH_GPU_H
#include "spqr.h"

#define MAX_GROUP 8
/* What to run: the options' selection of shapes, configurations and groups */
typedef struct {
    int quick, only_cfg, nsel, sel[16][2];
    int ngroups, group_n[8], group_cols[8], group_rows[8][MAX_GROUP];
} bench_select;

#if SPQR_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

/* One side of a row: nt spqr tensors or nw dense fp16 matrices, x and y rotated over 8 buffers.
 * group > 0: a call is group multiplies, by members k = 0..group-1 of one copy (t and W hold the
 * copies one after another), of rows grows[k], each output at row yrow[k] of y (batch-major). */
typedef struct {
    spqr_gpu_tensor **t;
    int nt;
    void **W;
    int nw;
    void *x[8], *y[8];
    int rows, cols, batch;
    int group, grows[MAX_GROUP], yrow[MAX_GROUP];
    cublasHandle_t h;
    cudaStream_t s; /* NULL, or the --graph capture stream */
} bench_row;

/* One run of the benchmark: its options, the device's figures, the shared handles */
typedef struct {
    int graph, bytes_only, nbatch, batches[3];
    double copy_bw;
    uint64_t l2_bytes;
    cublasHandle_t h;
    cudaStream_t s;
    double sum_spqr[3], sum_cublas[3]; /* --file: per batch, over the tensors */
    float (*tensor_us)[3];             /* --file: each tensor's spqr time per batch */
} bench_run;

/* 0, or 1 after printing what failed */
int bench_cuda_failed(cudaError_t e, const char *what);
/* One timed call of a row (call i of a sequence: rotates over the copies); 0 or 1 (printed) */
typedef int (*call_fn)(bench_row *c, int i);
int bench_call_spqr(bench_row *c, int i);
int bench_call_cublas(bench_row *c, int i);
/* *us = the median over the repeats of the mean time of the calls (see cmd_bench_gpu.c) */
int bench_time_calls(call_fn fn, bench_row *c, int graph, float *us);
void bench_row_free(bench_row *c);
/* copies of `bytes` that make the rotated working set exceed L2 (1..32) */
int bench_copies_for(uint64_t bytes);
/* x and y buffers of a row (16 vectors of cols and of rows fp16 values, 8 of each) */
int bench_row_buffers(bench_row *c, uint64_t rows);
/* The synthetic configuration cfg for a rows x cols tensor, its label, a temporary path */
spqr_tensor_info bench_synthetic_info(int rows, int cols, int cfg);
void bench_synthetic_label(const spqr_tensor_info *in, int cfg, char *buf, size_t n);
void bench_synthetic_path(char *path, size_t n, int rows, int cols, int cfg);
/* Tensors sel[0..n) of f, which share one input: per batch, the n calls one after another
 * ("separate") against one call on them uploaded stacked (spqr_gpu_upload_stacked), and cuBLAS
 * fp16 the same two ways (n GEMVs, or one on the stacked weights; the tensors' own weights, or with
 * dense_fill a constant pattern). Times are per group; one row per batch after `label` (the row's
 * first cells); us[bi] (if not NULL) gets the separate and stacked spqr times. */
int bench_group(bench_run *R, const spqr_file *f, const size_t *sel, int n, const char *label,
                int dense_fill, float us[][2]);
/* --stack: a group of n synthetic tensors rows[k] x cols of configuration cfg (tensor 0's
 * permutation for all, as act-order gives a layer's q/k/v or gate/up), through bench_group */
int bench_group_synthetic(bench_run *R, int n, const int *rows, int cols, int cfg);
/* --file: the decode step as an app runs it, every tensor of an spqr_gpu_model once back to back
 * on one stream, the model uploaded as stored and with SPQR_GPU_MODEL_STACK_INPUTS (copies of each
 * rotated beyond L2); one table row per batch */
#define MAX_COPIES_MODEL 16
int bench_model_step(bench_run *R, const spqr_file *f);
#endif
#endif
