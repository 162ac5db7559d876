/* loss.c — relative proxy loss of a quantized layer:
 *   L = tr(D H Dᵀ) / tr(W H Wᵀ),  D = W - Wq,
 * the layer-output error on the calibration inputs (H = 2/N XᵀX, so tr(D H Dᵀ) = 2/N ‖X Dᵀ‖²)
 * relative to the output energy. Computed in row chunks with one fp32 GEMM per chunk against an
 * fp32 copy of H, accumulated in double. */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#define LOSS_CHUNK 256

double spqr_proxy_loss(const float *W, const float *Wq, uint64_t rows, uint64_t cols,
                       const double *H) {
    float *Hf = malloc(cols * cols * sizeof *Hf);
    float *M = malloc(2 * LOSS_CHUNK * cols * sizeof *M),
          *P = malloc(2 * LOSS_CHUNK * cols * sizeof *P);
    if (!Hf || !M || !P) {
        free(Hf), free(M), free(P);
        return NAN;
    }
    for (uint64_t i = 0; i < cols * cols; i++) Hf[i] = (float)H[i];
    double num = 0, den = 0;
    for (uint64_t r0 = 0; r0 < rows; r0 += LOSS_CHUNK) {
        uint64_t m = rows - r0 < LOSS_CHUNK ? rows - r0 : LOSS_CHUNK;
        /* M = [D_chunk; W_chunk] (2m x cols), P = M H */
        for (uint64_t r = 0; r < m; r++)
            for (uint64_t c = 0; c < cols; c++) {
                M[r * cols + c] = W[(r0 + r) * cols + c] - Wq[(r0 + r) * cols + c];
                M[(m + r) * cols + c] = W[(r0 + r) * cols + c];
            }
        cblas_ssymm(CblasRowMajor, CblasRight, CblasUpper, (int)(2 * m), (int)cols, 1.0f, Hf,
                    (int)cols, M, (int)cols, 0.0f, P, (int)cols);
        for (uint64_t r = 0; r < m; r++) {
            double a = 0, b = 0;
            for (uint64_t c = 0; c < cols; c++) {
                a += (double)P[r * cols + c] * M[r * cols + c];
                b += (double)P[(m + r) * cols + c] * M[(m + r) * cols + c];
            }
            num += a, den += b;
        }
    }
    free(Hf), free(M), free(P);
    return den > 0 ? num / den : NAN;
}

spqr_status spqr_quantized_dequantize(const spqr_quantized *q, float *out, spqr_error *err) {
    (void)err;
    spqr_dequantize_sections(&q->info, (const void *const *)q->sec, out);
    return SPQR_OK;
}
