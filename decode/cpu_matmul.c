/* cpu_matmul.c — fused decode-and-multiply on the CPU: y = W x for 1..16 vectors.
 *
 * Each row is dequantized once into an L1-resident fp32 buffer (spec §7.2: codes unpacked with
 * the bit width as a compile-time constant, statistics decoded once per group, then
 * w = scale·q − scale·zero, one multiply-add per weight), outliers replace their weights, and the
 * row is dotted with every vector using 8 independent partial sums (vectorizable without
 * reassociating one sum). x is gathered through the permutation once (xp[j] = x[perm[j]]). Rows
 * are split across threads. Measured 0.1-0.3x of OpenBLAS sgemv on fp32 weights (bench/RESULTS.md):
 * still compute-bound at ~3 cycles per weight. */
#define _POSIX_C_SOURCE 200809L
#include "spqr.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline uint16_t rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Unpacks n b-bit values of a packed row (spec §6), 32 at a time with constant shifts. */
#define UNPACK_CASE(B)                                                                             \
    case B:                                                                                        \
        for (uint64_t c = 0; c < chunks; c++) {                                                    \
            const uint32_t *w = words + c * B;                                                     \
            uint8_t *o = out + c * 32;                                                             \
            _Pragma("GCC unroll 32") for (int k = 0; k < 32; k++) {                                \
                const int bit = k * B, wi = bit >> 5, sh = bit & 31;                               \
                uint32_t v = w[wi] >> sh;                                                          \
                if (sh + B > 32) v |= w[wi + 1] << (32 - sh);                                      \
                o[k] = (uint8_t)(v & ((1u << B) - 1));                                             \
            }                                                                                      \
        }                                                                                          \
        break;

static void unpack_row(const uint32_t *words, uint64_t n, uint32_t b, uint8_t *out) {
    uint64_t chunks = (n + 31) / 32;
    switch (b) {
        UNPACK_CASE(1)
        UNPACK_CASE(2)
        UNPACK_CASE(3)
        UNPACK_CASE(4)
        UNPACK_CASE(5)
        UNPACK_CASE(6)
        UNPACK_CASE(7)
        UNPACK_CASE(8)
    }
}

typedef struct {
    const spqr_file *f;
    size_t t;
    const float *xp; /* batch x cols, gathered through the permutation */
    int batch;
    float *Y;
    uint64_t r0, r1;
    int failed;
} job_t;

/* Row r dequantized into w[0..cols) (spec §7.2, stored column order, outliers excluded): codes
 * unpacked once, statistics decoded once per group, then w = scale·q − scale·zero per weight. */
static void dequant_row(const spqr_tensor_info *in, const uint32_t *codes, const uint8_t *sc,
                        const uint8_t *zc, const uint8_t *s2, uint64_t G, uint64_t cw, uint64_t sw,
                        uint64_t r, uint8_t *q, float *w) {
    const uint64_t cols = in->dims[1];
    const uint32_t beta2 = in->beta2;
    unpack_row(codes + r * cw, cols, in->wbits, q);
    for (uint64_t g = 0; g < G; g++) {
        float scale, zero;
        if (in->stat_bits == 16) {
            scale = spqr_f16_to_f32_inline(rd16(sc + 2 * (r * G + g))),
            zero = spqr_f16_to_f32_inline(rd16(zc + 2 * (r * G + g)));
        } else {
            const uint8_t *st = s2 + 8 * ((r / in->beta1) * G + g);
            uint32_t qs = spqr_pack_get((const uint32_t *)sc + r * sw, g, in->stat_bits);
            uint32_t qz = spqr_pack_get((const uint32_t *)zc + r * sw, g, in->stat_bits);
            scale = spqr_f16_to_f32_inline(rd16(st)) *
                    ((float)qs - spqr_f16_to_f32_inline(rd16(st + 2)));
            zero = spqr_f16_to_f32_inline(rd16(st + 4)) *
                   ((float)qz - spqr_f16_to_f32_inline(rd16(st + 6)));
        }
        const float bias = -scale * zero;
        const uint64_t c0 = g * beta2, n = cols - c0 < beta2 ? cols - c0 : beta2;
        const uint8_t *qg = q + c0;
        float *wg = w + c0;
        for (uint64_t k = 0; k < n; k++) wg[k] = (float)qg[k] * scale + bias;
    }
}

/* Σ_c w[c]·x[c] with 8 independent partial sums (vectorizable without reassociation). */
static float dot8(const float *w, const float *x, uint64_t n) {
    float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint64_t c = 0;
    for (; c + 8 <= n; c += 8)
        for (int j = 0; j < 8; j++) p[j] += w[c + j] * x[c + j];
    float t = 0;
    for (; c < n; c++) t += w[c] * x[c];
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7])) + t;
}

static void *worker(void *arg) {
    job_t *j = arg;
    const spqr_tensor_info *in = spqr_file_tensor_info(j->f, j->t);
    const uint64_t rows = in->dims[0], cols = in->dims[1], G = (cols + in->beta2 - 1) / in->beta2;
    const uint64_t cw = spqr_packed_row_words(cols, in->wbits);
    const uint64_t sw = in->stat_bits == 16 ? 0 : spqr_packed_row_words(G, in->stat_bits);
    const uint32_t *codes = spqr_file_section(j->f, j->t, SPQR_SEC_CODES, NULL);
    const uint8_t *sc = spqr_file_section(j->f, j->t, SPQR_SEC_SCALE, NULL);
    const uint8_t *zc = spqr_file_section(j->f, j->t, SPQR_SEC_ZERO, NULL);
    const uint8_t *s2 = spqr_file_section(j->f, j->t, SPQR_SEC_STAT2, NULL);
    const uint8_t *rp = spqr_file_section(j->f, j->t, SPQR_SEC_ROWPTR, NULL);
    const uint8_t *ci = spqr_file_section(j->f, j->t, SPQR_SEC_COLIDX, NULL);
    const uint8_t *vals = spqr_file_section(j->f, j->t, SPQR_SEC_VALUES, NULL);
    const int wide = cols > 65536, B = j->batch;
    uint8_t *q = malloc(((cols + 31) / 32) * 32);
    float *w = malloc(cols * sizeof *w);
    if (!q || !w) {
        free(q), free(w);
        j->failed = 1;
        return NULL;
    }
    for (uint64_t r = j->r0; r < j->r1; r++) {
        dequant_row(in, codes, sc, zc, s2, G, cw, sw, r, q, w);
        /* outliers replace their weight (spec §7.2 step 3) */
        for (uint32_t k = rd32(rp + 4 * r); k < rd32(rp + 4 * (r + 1)); k++) {
            uint64_t c = wide ? rd32(ci + 4 * (uint64_t)k) : rd16(ci + 2 * (uint64_t)k);
            w[c] = spqr_f16_to_f32_inline(rd16(vals + 2 * (uint64_t)k));
        }
        for (int b = 0; b < B; b++)
            j->Y[(uint64_t)b * rows + r] = dot8(w, j->xp + (uint64_t)b * cols, cols);
    }
    free(q), free(w);
    return NULL;
}

spqr_status spqr_cpu_matmul(const spqr_file *f, size_t tensor, const float *X, int batch, float *Y,
                            int nthreads, spqr_error *err) {
    if (tensor >= spqr_file_tensor_count(f))
        return spqr_set_error(err, SPQR_E_NOTFOUND, 0, UINT64_MAX, "tensor index %zu out of range",
                              tensor);
    const spqr_tensor_info *in = spqr_file_tensor_info(f, tensor);
    if (in->kind != SPQR_KIND_SPQR)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "tensor '%s' is not an SpQR tensor",
                              spqr_file_tensor_name(f, tensor));
    if (batch < 1 || batch > SPQR_MAX_BATCH)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "batch %d not in 1..%d", batch,
                              SPQR_MAX_BATCH);
    const uint64_t rows = in->dims[0], cols = in->dims[1];
    float *xp = malloc((uint64_t)batch * cols * sizeof *xp);
    if (!xp) {
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    }
    const uint8_t *perm =
        (in->flags & SPQR_FLAG_PERM) ? spqr_file_section(f, tensor, SPQR_SEC_PERM, NULL) : NULL;
    for (int b = 0; b < batch; b++)
        for (uint64_t c = 0; c < cols; c++) {
            float v = X[(uint64_t)b * cols + (perm ? rd32(perm + 4 * c) : c)];
            xp[(uint64_t)b * cols + c] = v;
        }
    if (nthreads <= 0) nthreads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    if ((uint64_t)nthreads > rows) nthreads = (int)rows;
    job_t jobs[64];
    pthread_t th[64];
    int started[64] = {0};
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = (job_t){f,
                          tensor,
                          xp,
                          batch,
                          Y,
                          rows * (uint64_t)i / (uint64_t)nthreads,
                          rows * (uint64_t)(i + 1) / (uint64_t)nthreads,
                          0};
        if (i > 0) started[i] = pthread_create(&th[i], NULL, worker, &jobs[i]) == 0;
        if (i > 0 && !started[i]) worker(&jobs[i]); /* could not start a thread: do it here */
    }
    worker(&jobs[0]);
    int failed = jobs[0].failed;
    for (int i = 1; i < nthreads; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        failed |= jobs[i].failed;
    }
    free(xp);
    if (failed)
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory in a worker");
    return SPQR_OK;
}

spqr_status spqr_cpu_dequantize_f16(const spqr_file *f, size_t tensor, uint16_t *out,
                                    spqr_error *err) {
    if (tensor >= spqr_file_tensor_count(f))
        return spqr_set_error(err, SPQR_E_NOTFOUND, 0, UINT64_MAX, "tensor index %zu out of range",
                              tensor);
    uint64_t n = spqr_info_numel(spqr_file_tensor_info(f, tensor));
    float *tmp = malloc(n * sizeof *tmp);
    if (!tmp) return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    spqr_status st = spqr_file_dequantize(f, tensor, tmp, err);
    for (uint64_t i = 0; !st && i < n; i++) out[i] = spqr_f32_to_f16(tmp[i]);
    free(tmp);
    return st;
}
