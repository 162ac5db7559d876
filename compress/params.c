/* params.c — quantizer parameter defaults (the SpQR paper's near-lossless settings) and checks. */
#include "spqr_compress.h"

#include <math.h>

void spqr_quant_params_default(spqr_quant_params *p, spqr_mode mode) {
    p->mode = mode;
    p->wbits = 3;
    p->beta1 = 16;
    p->beta2 = 16;
    p->stat_bits = mode == SPQR_MODE_SPQR ? 3 : 16;
    p->outlier_threshold = mode == SPQR_MODE_SPQR ? 0.2 : INFINITY;
    p->simplified_outliers = 0;
    p->perm = mode == SPQR_MODE_RTN ? SPQR_PERM_IDENTITY : SPQR_PERM_ACT_ORDER;
    p->percdamp = mode == SPQR_MODE_SPQR ? 1.0 : 0.01;
    p->blocksize = 128;
    p->compute_loss = 1;
    p->return_dequantized = 0;
}

static int pow2_in(uint32_t v, uint32_t lo, uint32_t hi) {
    return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

spqr_status spqr_quant_params_check(const spqr_quant_params *p, spqr_error *err) {
    if (p->mode != SPQR_MODE_RTN && p->mode != SPQR_MODE_GPTQ && p->mode != SPQR_MODE_SPQR)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "mode %d is not rtn, gptq or spqr",
                              (int)p->mode);
    if (p->wbits < 2 || p->wbits > 8)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "wbits %u: must be 2..8", p->wbits);
    if (!pow2_in(p->beta1, 2, 4096))
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                              "qq-groupsize (beta1) %u: must be a power of two in 2..4096",
                              p->beta1);
    if (!pow2_in(p->beta2, 2, 4096))
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                              "groupsize (beta2) %u: must be a power of two in 2..4096", p->beta2);
    if (!((p->stat_bits >= 1 && p->stat_bits <= 8) || p->stat_bits == 16))
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                              "stat-bits %u: must be 1..8 or 16 (fp16)", p->stat_bits);
    if (isnan(p->outlier_threshold) || p->outlier_threshold < 0)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                              "outlier-threshold (tau) must be >= 0 or inf");
    if (p->mode != SPQR_MODE_SPQR && !isinf(p->outlier_threshold))
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                              "outliers (finite tau) are only available in spqr mode");
    if (p->perm != SPQR_PERM_IDENTITY && p->perm != SPQR_PERM_ACT_ORDER)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "perm must be identity or act_order");
    if (p->mode == SPQR_MODE_RTN && p->perm != SPQR_PERM_IDENTITY)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                              "rtn uses no Hessian: perm must be identity");
    if (!(p->percdamp >= 0 && p->percdamp <= 100))
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "percdamp %g: must be in 0..100",
                              p->percdamp);
    if (!pow2_in(p->blocksize, 1, 4096))
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                              "blocksize %u: must be a power of two in 1..4096", p->blocksize);
    return SPQR_OK;
}
