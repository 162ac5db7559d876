/* hessian.c — streaming Hessian accumulator: H = 2/N · Σ_n x_nᵀ x_n (the GPTQ/SpQR proxy
 * objective's curvature), without storing X. Each batch goes through BLAS ssyrk (upper triangle)
 * into an fp32 scratch and is then added into a double accumulator, so precision does not decay
 * with the number of batches. */
#include "spqr_compress.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HESSIAN_CHUNK 2048 /* rows per ssyrk call: bounds the fp32 partial sums */

struct spqr_hessian {
    uint64_t cols, n;
    double *acc;  /* upper triangle of Σ xᵀx */
    float *tmp;   /* one chunk's ssyrk result */
    double *full; /* 2/N · acc, symmetrised, returned by get */
};

spqr_hessian *spqr_hessian_new(uint64_t cols, spqr_error *err) {
    if (cols == 0 || cols > (1u << 17)) {
        spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "hessian: %llu columns not in 1..131072",
                       (unsigned long long)cols);
        return NULL;
    }
    spqr_hessian *h = calloc(1, sizeof *h);
    if (h) {
        h->cols = cols;
        h->acc = calloc(cols * cols, sizeof *h->acc);
        h->tmp = malloc(cols * cols * sizeof *h->tmp);
        h->full = malloc(cols * cols * sizeof *h->full);
    }
    if (!h || !h->acc || !h->tmp || !h->full) {
        spqr_hessian_free(h);
        spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "hessian: out of memory for %llu x %llu",
                       (unsigned long long)cols, (unsigned long long)cols);
        return NULL;
    }
    return h;
}

spqr_status spqr_hessian_add(spqr_hessian *h, const float *X, uint64_t n, spqr_error *err) {
    const uint64_t c = h->cols;
    for (uint64_t i = 0; i < n * c; i++)
        if (!isfinite(X[i]))
            return spqr_set_error(err, SPQR_E_NUMERIC, 0, UINT64_MAX,
                                  "hessian: input row %llu column %llu is not finite",
                                  (unsigned long long)(i / c), (unsigned long long)(i % c));
    for (uint64_t r0 = 0; r0 < n; r0 += HESSIAN_CHUNK) {
        uint64_t k = n - r0 < HESSIAN_CHUNK ? n - r0 : HESSIAN_CHUNK;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)c, (int)k, 1.0f, X + r0 * c, (int)c,
                    0.0f, h->tmp, (int)c);
        for (uint64_t i = 0; i < c; i++)
            for (uint64_t j = i; j < c; j++) h->acc[i * c + j] += (double)h->tmp[i * c + j];
    }
    h->n += n;
    return SPQR_OK;
}

const double *spqr_hessian_get(spqr_hessian *h, uint64_t *n_rows) {
    if (n_rows) *n_rows = h->n;
    if (h->n == 0) return NULL;
    const uint64_t c = h->cols;
    double s = 2.0 / (double)h->n;
    for (uint64_t i = 0; i < c; i++)
        for (uint64_t j = i; j < c; j++)
            h->full[i * c + j] = h->full[j * c + i] = s * h->acc[i * c + j];
    return h->full;
}

void spqr_hessian_reset(spqr_hessian *h) {
    memset(h->acc, 0, h->cols * h->cols * sizeof *h->acc);
    h->n = 0;
}

void spqr_hessian_free(spqr_hessian *h) {
    if (!h) return;
    free(h->acc);
    free(h->tmp);
    free(h->full);
    free(h);
}
