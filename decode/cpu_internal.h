/* cpu_internal.h — what the CPU matmul paths (cpu_matmul.c scalar, cpu_avx2.c vector) share:
 * a view of one SpQR tensor's sections and its per-element accessors (spec §5-§7.2). */
#ifndef SPQR_CPU_INTERNAL_H
#define SPQR_CPU_INTERNAL_H
#include "spqr.h"

typedef struct {
    const spqr_tensor_info *in;
    const uint32_t *codes;
    const uint8_t *sc, *zc, *s2, *rp, *ci, *vals;
    uint64_t groups, cw, sw; /* groups per row, code words per row, statistic words per row */
    int wide;                /* u32 column indices (cols > 65536) */
} cpu_view;

static inline uint16_t cpu_rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t cpu_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Dequantized (scale, zero) of group g of row r, spec §7.2 (separate roundings, as the spec). */
static inline void cpu_view_stats(const cpu_view *v, uint64_t r, uint64_t g, float *scale,
                                  float *zero) {
    if (v->in->stat_bits == 16) {
        *scale = spqr_f16_to_f32_inline(cpu_rd16(v->sc + 2 * (r * v->groups + g)));
        *zero = spqr_f16_to_f32_inline(cpu_rd16(v->zc + 2 * (r * v->groups + g)));
        return;
    }
    const uint8_t *st = v->s2 + 8 * ((r / v->in->beta1) * v->groups + g);
    const uint32_t qs = spqr_pack_get((const uint32_t *)v->sc + r * v->sw, g, v->in->stat_bits);
    const uint32_t qz = spqr_pack_get((const uint32_t *)v->zc + r * v->sw, g, v->in->stat_bits);
    *scale = spqr_f16_to_f32_inline(cpu_rd16(st)) *
             ((float)qs - spqr_f16_to_f32_inline(cpu_rd16(st + 2)));
    *zero = spqr_f16_to_f32_inline(cpu_rd16(st + 4)) *
            ((float)qz - spqr_f16_to_f32_inline(cpu_rd16(st + 6)));
}
static inline uint32_t cpu_view_rowptr(const cpu_view *v, uint64_t r) {
    return cpu_rd32(v->rp + 4 * r);
}
static inline uint64_t cpu_view_col(const cpu_view *v, uint64_t k) {
    return v->wide ? cpu_rd32(v->ci + 4 * k) : cpu_rd16(v->ci + 2 * k);
}
static inline float cpu_view_value(const cpu_view *v, uint64_t k) {
    return spqr_f16_to_f32_inline(cpu_rd16(v->vals + 2 * k));
}

/* value g of a packed row of b-bit values (spec §6), inline for the vector paths' outlier loops */
static inline uint32_t cpu_packed_get(const uint32_t *row, uint64_t g, uint32_t b) {
    const uint64_t bit = g * b;
    const uint32_t sh = (uint32_t)(bit & 31);
    uint64_t v = row[bit >> 5];
    if (sh + b > 32) v |= (uint64_t)row[(bit >> 5) + 1] << 32;
    return (uint32_t)(v >> sh) & ((1u << b) - 1u);
}

/* cpu_avx2.c: 1 when the CPU has AVX2, FMA and F16C; rows r0..r1 of Y (batch x rows) from xp (batch
 * rows of xstride floats, permuted, zero-padded to whole chunks). Needs beta2 % 8 == 0. Returns 0,
 * or 1 when out of memory. */
int spqr_cpu_have_avx2(void);
int spqr_cpu_rows_avx2(const cpu_view *v, const float *xp, uint64_t xstride, int batch, uint64_t r0,
                       uint64_t r1, float *Y);
/* cpu_avx2.c: the second-order statistics (spec §7.2: ss, zs, sz, zz) of row block blk as four
 * float arrays of v->groups entries (F16C). Needs AVX2+F16C. */
void spqr_cpu_block_stat2(const cpu_view *v, uint64_t blk, float *ss, float *zs, float *sz,
                          float *zz);

/* cpu_avx512.c: 1 when the CPU has AVX-512 F/BW/VL/DQ and VBMI (vpermb) besides AVX2+FMA+F16C;
 * rows r0..r1 as spqr_cpu_rows_avx2, 16 codes per vector. Needs beta2 % 16 == 0. */
int spqr_cpu_have_avx512(void);
int spqr_cpu_rows_avx512(const cpu_view *v, const float *xp, uint64_t xstride, int batch,
                         uint64_t r0, uint64_t r1, float *Y);
#endif
