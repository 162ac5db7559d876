/* internal.h — private helpers of the quantizer. */
#ifndef SPQR_COMPRESS_INTERNAL_H
#define SPQR_COMPRESS_INTERNAL_H
#include "spqr_compress.h"

/* spec §7.2: two separately rounded fp32 operations (the build uses -ffp-contract=off). */
static inline float deq_affine(float scale, float zero, uint32_t q) {
    return scale * ((float)q - zero);
}

/* U, upper triangular with H⁻¹ = UᵀU, from a damped H (n x n, row-major; destroyed).
 * Returns 0 on success, the LAPACK info (> 0) when H is not positive definite. */
int spqr_inverse_cholesky_upper(double *H, uint64_t n, double *U);

/* Group statistics of one group of columns, for all rows (groupstats.c). */
typedef struct {
    uint64_t rows;
    uint32_t wbits, stat_bits, beta1;
    double outlier_thresh; /* tau * sigma, or INFINITY */
    int loo;               /* leave-one-out pre-selection of likely outliers */
} spqr_group_cfg;

/* cols_w[k] points at column k of the group (rows contiguous floats), k < n; udiag[k] = U_kk.
 * Outputs per row the dequantized scale and zero the weights must be quantized with, and writes
 * the stored statistics: s <= 8: codes into qs/qz, and the block's fp16 second-order stats into
 * stat2 (4 per block, stride 4*groups); s = 16: fp16 values into qs16/qz16. */
typedef struct {
    float *scale, *zero; /* [rows] dequantized statistics */
    uint32_t *qs, *qz;   /* [rows] codes (s <= 8) */
    uint16_t *s16, *z16; /* [rows] fp16 statistics (s = 16) */
    uint16_t *stat2;     /* [blocks][4] second-order stats of this group */
} spqr_group_out;

void spqr_group_stats(const spqr_group_cfg *cfg, const float *const *cols_w, const double *udiag,
                      uint32_t n, double *scratch, spqr_group_out *out);
#endif
