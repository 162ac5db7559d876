/* cpu_matmul.c — fused decode-and-multiply on the CPU: y = W x for 1..16 vectors.
 *
 * x is gathered through the permutation once (xp[j] = x[perm[j]], zero-padded to whole chunks,
 * vectors at a stride padded off multiples of 4 KB) and rows are split across threads. Rows go to
 * a vector path where the CPU and tensor allow (choose_path): AVX-512 VBMI for beta2 % 16 == 0
 * (cpu_avx512.c: 1.1-2.2x OpenBLAS sgemv on fp32 weights at batch 1, 2.4-6.8x sgemm at batch 4,
 * bench/RESULTS.md), AVX2+FMA+F16C for beta2 % 8 == 0 (cpu_avx2.c). Otherwise, the portable path
 * here: each row is dequantized once into an L1-resident fp32 buffer (spec §7.2: codes unpacked
 * with the bit width as a compile-time constant, statistics decoded once per group, then
 * w = scale·q − scale·zero, one multiply-add per weight), outliers replace their weights, and the
 * row is dotted with every vector using 8 independent partial sums (0.1-0.3x sgemv). */
#define _POSIX_C_SOURCE 200809L
#include "cpu_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* the row loop a call runs: chosen per tensor from the CPU's features and beta2 */
typedef enum { PATH_SCALAR, PATH_AVX2, PATH_AVX512 } cpu_path;

typedef struct {
    const spqr_file *f;
    size_t t;
    const float *xp; /* batch rows of xstride floats, gathered through the permutation, padded */
    uint64_t xstride;
    int batch;
    cpu_path path;
    float *Y;
    uint64_t r0, r1;
    int failed;
} job_t;

/* Row r dequantized into w[0..cols) (spec §7.2, stored column order, outliers excluded): codes
 * unpacked once, statistics decoded once per group, then w = scale·q − scale·zero per weight. */
static void dequant_row(const cpu_view *v, uint64_t r, uint8_t *q, float *w) {
    const uint64_t cols = v->in->dims[1];
    const uint32_t beta2 = v->in->beta2;
    unpack_row(v->codes + r * v->cw, cols, v->in->wbits, q);
    for (uint64_t g = 0; g < v->groups; g++) {
        float scale, zero;
        cpu_view_stats(v, r, g, &scale, &zero);
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
    cpu_view v = {
        .in = in,
        .codes = spqr_file_section(j->f, j->t, SPQR_SEC_CODES, NULL),
        .sc = spqr_file_section(j->f, j->t, SPQR_SEC_SCALE, NULL),
        .zc = spqr_file_section(j->f, j->t, SPQR_SEC_ZERO, NULL),
        .s2 = spqr_file_section(j->f, j->t, SPQR_SEC_STAT2, NULL),
        .rp = spqr_file_section(j->f, j->t, SPQR_SEC_ROWPTR, NULL),
        .ci = spqr_file_section(j->f, j->t, SPQR_SEC_COLIDX, NULL),
        .vals = spqr_file_section(j->f, j->t, SPQR_SEC_VALUES, NULL),
        .groups = G,
        .cw = spqr_packed_row_words(cols, in->wbits),
        .sw = in->stat_bits == 16 ? 0 : spqr_stat_row_words(in, G),
        .wide = cols > 65536,
    };
    if (j->path == PATH_AVX512) {
        j->failed = spqr_cpu_rows_avx512(&v, j->xp, j->xstride, j->batch, j->r0, j->r1, j->Y);
        return NULL;
    }
    if (j->path == PATH_AVX2) {
        j->failed = spqr_cpu_rows_avx2(&v, j->xp, j->xstride, j->batch, j->r0, j->r1, j->Y);
        return NULL;
    }
    const int B = j->batch;
    uint8_t *q = malloc(((cols + 31) / 32) * 32);
    float *w = malloc(cols * sizeof *w);
    if (!q || !w) {
        free(q), free(w);
        j->failed = 1;
        return NULL;
    }
    for (uint64_t r = j->r0; r < j->r1; r++) {
        dequant_row(&v, r, q, w);
        /* outliers replace their weight (spec §7.2 step 3) */
        for (uint32_t k = cpu_view_rowptr(&v, r); k < cpu_view_rowptr(&v, r + 1); k++)
            w[cpu_view_col(&v, k)] = cpu_view_value(&v, k);
        for (int b = 0; b < B; b++)
            j->Y[(uint64_t)b * rows + r] = dot8(w, j->xp + (uint64_t)b * j->xstride, cols);
    }
    free(q), free(w);
    return NULL;
}

/* Floats between the gathered vectors: whole chunks of 32, plus padding so that the stride is an
 * odd multiple of 256 bytes modulo 4 KB. The vector paths read the same columns of every vector
 * together; at a stride that is a multiple of 4 KB (cols 4096) those 16 lines fall into one L1
 * set, which holds 12: batch 16 ran 2.5x slower. An odd multiple of 256 B puts vector b's
 * 128-byte piece in its own pair of sets for b < 16. */
static uint64_t x_stride(uint64_t cols) {
    uint64_t s = (cols + 31) / 32 * 32;
    while ((s * 4 / 128) % 4 != 2) s += 32;
    return s;
}

/* The fastest path the CPU and the tensor allow: AVX-512 (VBMI) for groups of whole 16-column
 * halves, AVX2 for whole octets, else scalar. SPQR_CPU_ISA=scalar|avx2 in the environment caps it
 * (read on every call, like OpenBLAS's OPENBLAS_CORETYPE; for benchmarks and tests of the slower
 * paths on a CPU that has the faster one). */
static cpu_path choose_path(const spqr_tensor_info *in) {
    const char *cap = getenv("SPQR_CPU_ISA");
    const int max = !cap                     ? PATH_AVX512
                    : !strcmp(cap, "scalar") ? PATH_SCALAR
                    : !strcmp(cap, "avx2")   ? PATH_AVX2
                                             : PATH_AVX512;
    if (in->wbits > 8) return PATH_SCALAR;
    if (max >= PATH_AVX512 && in->beta2 % 16 == 0 && spqr_cpu_have_avx512()) return PATH_AVX512;
    if (max >= PATH_AVX2 && in->beta2 % 8 == 0 && spqr_cpu_have_avx2()) return PATH_AVX2;
    return PATH_SCALAR;
}

const char *spqr_cpu_matmul_path(const spqr_file *f, size_t tensor) {
    if (tensor >= spqr_file_tensor_count(f)) return NULL;
    const spqr_tensor_info *in = spqr_file_tensor_info(f, tensor);
    if (in->kind != SPQR_KIND_SPQR) return NULL;
    static const char *const names[] = {"scalar", "avx2", "avx512"};
    return names[choose_path(in)];
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
    const uint64_t rows = in->dims[0], cols = in->dims[1], xstride = x_stride(cols);
    float *xp = calloc((uint64_t)batch * xstride, sizeof *xp); /* zero padding past cols */
    if (!xp) {
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    }
    const uint8_t *perm =
        (in->flags & SPQR_FLAG_PERM) ? spqr_file_section(f, tensor, SPQR_SEC_PERM, NULL) : NULL;
    for (int b = 0; b < batch; b++)
        for (uint64_t c = 0; c < cols; c++) {
            float v = X[(uint64_t)b * cols + (perm ? cpu_rd32(perm + 4 * c) : c)];
            xp[(uint64_t)b * xstride + c] = v;
        }
    if (nthreads <= 0) nthreads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    if ((uint64_t)nthreads > rows) nthreads = (int)rows;
    const cpu_path path = choose_path(in);
    job_t jobs[64];
    pthread_t th[64];
    int started[64] = {0};
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = (job_t){.f = f,
                          .t = tensor,
                          .xp = xp,
                          .xstride = xstride,
                          .batch = batch,
                          .path = path,
                          .Y = Y,
                          .r0 = rows * (uint64_t)i / (uint64_t)nthreads,
                          .r1 = rows * (uint64_t)(i + 1) / (uint64_t)nthreads};
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
