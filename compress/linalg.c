/* linalg.c — the inverse-Hessian Cholesky factor that GPTQ propagates errors with.
 *
 * We need U upper triangular with H⁻¹ = UᵀU (GPTQ's "Cholesky of the inverse, upper"). Rather than
 * inverting H and factorising again (≈ 4n³/3 flops), use the reversed ("UL") factorisation:
 * with J the exchange matrix, factor JHJ = L Lᵀ (L lower), so H = V Vᵀ with V = J L J upper;
 * then H⁻¹ = V⁻ᵀ V⁻¹ = UᵀU for U = V⁻¹, an upper-triangular inverse (≈ 2n³/3 flops in all). */
#include "internal.h"

#include <lapacke.h>
#include <stdlib.h>
#include <string.h>

int spqr_inverse_cholesky_upper(double *H, uint64_t n, double *U) {
    /* U <- J H J (reverse rows and columns) */
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t j = 0; j < n; j++) U[i * n + j] = H[(n - 1 - i) * n + (n - 1 - j)];
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, U, (lapack_int)n);
    if (info != 0) return info > 0 ? (int)info : -1;
    /* V = J L J: V[i][j] = L[n-1-i][n-1-j], upper triangular; reuse H as storage */
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t j = 0; j < n; j++)
            H[i * n + j] = j >= i ? U[(n - 1 - i) * n + (n - 1 - j)] : 0.0;
    info = LAPACKE_dtrtri(LAPACK_ROW_MAJOR, 'U', 'N', (lapack_int)n, H, (lapack_int)n);
    if (info != 0) return info > 0 ? (int)info : -1;
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t j = 0; j < n; j++) U[i * n + j] = j >= i ? H[i * n + j] : 0.0;
    return 0;
}
