/* layout.c — the parameter rules (R10, R11) and the exact section sizes of spec §5, table 3. */
#include "spqr_format.h"

static int is_pow2_in(uint32_t v, uint32_t lo, uint32_t hi) {
    return v >= lo && v <= hi && (v & (v - 1u)) == 0;
}

static int dtype_size(spqr_dtype d) {
    switch (d) {
    case SPQR_DTYPE_F32:
        return 4;
    case SPQR_DTYPE_F16:
        return 2;
    case SPQR_DTYPE_BF16:
        return 2;
    }
    return 0;
}

uint64_t spqr_info_numel(const spqr_tensor_info *info) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < info->ndim && d < 4; d++) n *= info->dims[d];
    return n;
}

spqr_status spqr_check_info(const spqr_tensor_info *in, spqr_error *err) {
    const uint64_t lim = 1ull << 31;
    if (in->kind == SPQR_KIND_PLAIN) {
        if (!dtype_size(in->dtype))
            return spqr_set_error(err, SPQR_E_FORMAT, 10, UINT64_MAX, "unknown dtype %d",
                                  (int)in->dtype);
        if (in->ndim < 1 || in->ndim > 4)
            return spqr_set_error(err, SPQR_E_FORMAT, 10, UINT64_MAX, "ndim %u not in 1..4",
                                  in->ndim);
        uint64_t n = 1;
        for (uint32_t d = 0; d < 4; d++) {
            if (d < in->ndim) {
                if (in->dims[d] == 0 || in->dims[d] > (1ull << 40))
                    return spqr_set_error(err, SPQR_E_FORMAT, 10, UINT64_MAX,
                                          "dimension %u is %llu (must be 1..2^40)", d,
                                          (unsigned long long)in->dims[d]);
                if (n > (1ull << 60) / in->dims[d])
                    return spqr_set_error(err, SPQR_E_FORMAT, 10, UINT64_MAX,
                                          "element count overflows 2^60");
                n *= in->dims[d];
            } else if (in->dims[d] != 0) {
                return spqr_set_error(err, SPQR_E_FORMAT, 10, UINT64_MAX,
                                      "unused dimension %u is %llu, must be 0", d,
                                      (unsigned long long)in->dims[d]);
            }
        }
        if (in->wbits || in->stat_bits || in->beta1 || in->beta2 || in->flags || in->nnz)
            return spqr_set_error(err, SPQR_E_FORMAT, 10, UINT64_MAX,
                                  "plain tensor has non-zero SpQR parameter fields");
        return SPQR_OK;
    }
    if (in->kind != SPQR_KIND_SPQR)
        return spqr_set_error(err, SPQR_E_FORMAT, 10, UINT64_MAX, "unknown tensor kind %d",
                              (int)in->kind);
    if (in->ndim != 2 || in->dims[2] || in->dims[3])
        return spqr_set_error(err, SPQR_E_FORMAT, 11, UINT64_MAX, "SpQR tensor must be 2-D");
    if (in->dtype != 0)
        return spqr_set_error(err, SPQR_E_FORMAT, 11, UINT64_MAX, "SpQR tensor dtype must be 0");
    if (in->dims[0] < 1 || in->dims[0] >= lim || in->dims[1] < 1 || in->dims[1] >= lim)
        return spqr_set_error(err, SPQR_E_FORMAT, 11, UINT64_MAX,
                              "rows %llu / cols %llu not in 1..2^31-1",
                              (unsigned long long)in->dims[0], (unsigned long long)in->dims[1]);
    if (in->wbits < 2 || in->wbits > 8)
        return spqr_set_error(err, SPQR_E_FORMAT, 11, UINT64_MAX, "wbits %u not in 2..8",
                              in->wbits);
    if (!((in->stat_bits >= 1 && in->stat_bits <= 8) || in->stat_bits == 16))
        return spqr_set_error(err, SPQR_E_FORMAT, 11, UINT64_MAX, "stat_bits %u not in 1..8 or 16",
                              in->stat_bits);
    if (!is_pow2_in(in->beta1, 2, 4096) || !is_pow2_in(in->beta2, 2, 4096))
        return spqr_set_error(err, SPQR_E_FORMAT, 11, UINT64_MAX,
                              "beta1 %u / beta2 %u must be powers of two in 2..4096", in->beta1,
                              in->beta2);
    if (in->flags & ~SPQR_FLAG_PERM)
        return spqr_set_error(err, SPQR_E_FORMAT, 11, UINT64_MAX, "unknown flags 0x%x", in->flags);
    if (in->nnz > in->dims[0] * in->dims[1] || in->nnz >= (1ull << 32))
        return spqr_set_error(err, SPQR_E_FORMAT, 11, UINT64_MAX,
                              "nnz %llu exceeds rows*cols or 2^32-1", (unsigned long long)in->nnz);
    return SPQR_OK;
}

spqr_status spqr_section_sizes(const spqr_tensor_info *in, uint64_t s[SPQR_SEC_COUNT],
                               spqr_error *err) {
    for (int i = 0; i < SPQR_SEC_COUNT; i++) s[i] = 0;
    spqr_status st = spqr_check_info(in, err);
    if (st) return st;
    if (in->kind == SPQR_KIND_PLAIN) {
        s[0] = spqr_info_numel(in) * (uint64_t)dtype_size(in->dtype);
        return SPQR_OK;
    }
    /* all products below are < 2^31 * 2^31 * 8 and cannot overflow 64 bits */
    uint64_t rows = in->dims[0], cols = in->dims[1];
    uint64_t groups = (cols + in->beta2 - 1) / in->beta2;
    uint64_t blocks = (rows + in->beta1 - 1) / in->beta1;
    s[SPQR_SEC_CODES] = rows * spqr_packed_row_words(cols, in->wbits) * 4;
    if (in->stat_bits == 16) {
        s[SPQR_SEC_SCALE] = s[SPQR_SEC_ZERO] = rows * groups * 2;
        s[SPQR_SEC_STAT2] = 0;
    } else {
        s[SPQR_SEC_SCALE] = s[SPQR_SEC_ZERO] = rows * spqr_stat_row_words(in, groups) * 4;
        s[SPQR_SEC_STAT2] = blocks * groups * 8;
    }
    s[SPQR_SEC_ROWPTR] = (rows + 1) * 4;
    s[SPQR_SEC_COLIDX] = in->nnz * (cols <= 65536 ? 2 : 4);
    s[SPQR_SEC_VALUES] = in->nnz * 2;
    s[SPQR_SEC_PERM] = (in->flags & SPQR_FLAG_PERM) ? cols * 4 : 0;
    return SPQR_OK;
}
