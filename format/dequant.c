/* dequant.c — the dequantization of spec §7, shared by the reader, the quantizer's self-check
 * and the CPU decoder: statistics from their codes and fp16 second-order values, then
 * value = scale * (q - zero) in fp32 with separate roundings, outliers replacing, permutation
 * applied on output. */
#include "internal.h"

void spqr_dequantize_sections(const spqr_tensor_info *in,
                              const void *const sections[SPQR_SEC_COUNT], float *out) {
    const uint8_t *const *data = (const uint8_t *const *)sections;
    if (in->kind == SPQR_KIND_PLAIN) {
        uint64_t n = spqr_info_numel(in);
        const uint8_t *p = data[0];
        for (uint64_t k = 0; k < n; k++) {
            if (in->dtype == SPQR_DTYPE_F32) {
                uint32_t u = get_u32(p + 4 * k);
                memcpy(&out[k], &u, 4);
            } else if (in->dtype == SPQR_DTYPE_F16) {
                out[k] = spqr_f16_to_f32(get_u16(p + 2 * k));
            } else {
                out[k] = spqr_bf16_to_f32(get_u16(p + 2 * k));
            }
        }
        return;
    }
    uint64_t rows = in->dims[0], cols = in->dims[1];
    uint64_t groups = (cols + in->beta2 - 1) / in->beta2;
    uint64_t code_words = spqr_packed_row_words(cols, in->wbits);
    uint64_t stat_words = in->stat_bits == 16 ? 0 : spqr_stat_row_words(in, groups);
    const uint32_t *codes = (const uint32_t *)data[SPQR_SEC_CODES];
    const uint8_t *sc = data[SPQR_SEC_SCALE], *zc = data[SPQR_SEC_ZERO];
    const uint8_t *s2 = data[SPQR_SEC_STAT2];
    const uint8_t *rp = data[SPQR_SEC_ROWPTR], *ci = data[SPQR_SEC_COLIDX];
    const uint8_t *vals = data[SPQR_SEC_VALUES], *perm = data[SPQR_SEC_PERM];
    int has_perm = (in->flags & SPQR_FLAG_PERM) != 0, wide = cols > 65536;
    for (uint64_t r = 0; r < rows; r++) {
        float *orow = out + r * cols;
        uint64_t blk = r / in->beta1;
        for (uint64_t g = 0; g < groups; g++) {
            float scale, zero;
            if (in->stat_bits == 16) {
                scale = spqr_f16_to_f32(get_u16(sc + 2 * (r * groups + g)));
                zero = spqr_f16_to_f32(get_u16(zc + 2 * (r * groups + g)));
            } else {
                const uint8_t *st = s2 + 8 * (blk * groups + g);
                uint32_t qs =
                    spqr_pack_get((const uint32_t *)sc + r * stat_words, g, in->stat_bits);
                uint32_t qz =
                    spqr_pack_get((const uint32_t *)zc + r * stat_words, g, in->stat_bits);
                scale = spqr_dequant_affine(spqr_f16_to_f32(get_u16(st)),
                                            spqr_f16_to_f32(get_u16(st + 2)), qs);
                zero = spqr_dequant_affine(spqr_f16_to_f32(get_u16(st + 4)),
                                           spqr_f16_to_f32(get_u16(st + 6)), qz);
            }
            uint64_t c1 = (g + 1) * in->beta2 < cols ? (g + 1) * in->beta2 : cols;
            for (uint64_t c = g * in->beta2; c < c1; c++) {
                uint32_t q = spqr_pack_get(codes + r * code_words, c, in->wbits);
                uint64_t oc = has_perm ? get_u32(perm + 4 * c) : c;
                orow[oc] = spqr_dequant_affine(scale, zero, q);
            }
        }
        for (uint32_t k = get_u32(rp + 4 * r); k < get_u32(rp + 4 * (r + 1)); k++) {
            uint64_t c = wide ? get_u32(ci + 4 * (uint64_t)k) : get_u16(ci + 2 * (uint64_t)k);
            uint64_t oc = has_perm ? get_u32(perm + 4 * c) : c;
            orow[oc] = spqr_f16_to_f32(get_u16(vals + 2 * (uint64_t)k));
        }
    }
}
