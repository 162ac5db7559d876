/* sample.h — deterministic synthetic .spqr content: the demo file, test vectors and fuzz seeds. */
#ifndef SPQR_SAMPLE_H
#define SPQR_SAMPLE_H
#include "spqr_format.h"

typedef struct {
    void *sec[SPQR_SEC_COUNT];
    uint64_t size[SPQR_SEC_COUNT];
} spqr_sample_tensor;

/* splitmix64 step: the project's reproducible PRNG for synthetic data. */
uint64_t spqr_rng_next(uint64_t *state);
/* Uniform float in [0, 1). */
float spqr_rng_uniform(uint64_t *state);

/* Fills random but valid sections for info (info->nnz is honoured; perm if flagged). */
spqr_status spqr_sample_tensor_make(const spqr_tensor_info *info, uint64_t seed,
                                    spqr_sample_tensor *t, spqr_error *err);
void spqr_sample_tensor_free(spqr_sample_tensor *t);
/* Writes a small file with plain f32/f16/bf16 tensors and SpQR tensors covering ragged shapes,
 * permutation, outliers, s = 16 and cols > 65536. */
spqr_status spqr_sample_write_file(const char *path, uint64_t seed, int zstd_level,
                                   spqr_error *err);
/* Writes a file at path holding one SpQR tensor "t" with sample sections for info, and opens
 * it: the unit of the decoder tests' random configurations. NULL (err set) on failure. */
spqr_file *spqr_sample_open_tensor(const char *path, const spqr_tensor_info *info, uint64_t seed,
                                   spqr_error *err);
/* Writes a file at path holding n SpQR tensors "t0".."t<n-1>" that share one input: rows[i] x
 * info->dims[1], nnz[i] outliers (NULL: none), the other fields from info, and (if flagged) all
 * with tensor 0's permutation, as act-order gives a layer's projections of one input. zstd_level
 * as spqr_writer_open. Opens it; NULL (err set) on failure. */
spqr_file *spqr_sample_open_shared_input(const char *path, const spqr_tensor_info *info, size_t n,
                                         const uint64_t *rows, const uint64_t *nnz, uint64_t seed,
                                         int zstd_level, spqr_error *err);
/* "ROWSxCOLS wW sS b1=B1 b2=B2 nnz=N perm=P": a test label for info. */
void spqr_sample_describe(const spqr_tensor_info *info, char *buf, size_t n);
#endif
