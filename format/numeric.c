/* numeric.c — half/bfloat16 conversions, bit packing and the dequantization arithmetic
 * (spec §6 and §7). Everything here is bit-exact by construction: integer manipulation of
 * IEEE-754 encodings, and fp32 arithmetic compiled with -ffp-contract=off. */
#include "spqr_format.h"

#include <string.h>

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float spqr_f16_to_f32(uint16_t h) {
    return spqr_f16_to_f32_inline(h);
}

/* binary32 -> binary16 with round-to-nearest, ties to even (IEEE default). */
uint16_t spqr_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* Inf or NaN (NaN stays quiet NaN) */
        return (uint16_t)(sign | (ax > 0x7f800000u ? 0x7e00u | ((ax >> 13) & 0x3ffu) : 0x7c00u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to Inf */
    if (ax < 0x38800000u) {                                   /* below 2^-14: subnormal half */
        uint32_t e = ax >> 23;
        if (e == 0) return sign; /* zero or binary32 subnormal: far below half's range */
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* value in units of 2^-24 is m >> shift */
        if (shift > 24) return sign;
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u); /* round mantissa to 10 bits, ties to even */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

float spqr_bf16_to_f32(uint16_t h) {
    return bits_f32((uint32_t)h << 16);
}

uint16_t spqr_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* Spec §7.2: value = scale * ((float)q - zero), two separately rounded fp32 operations. */
float spqr_dequant_affine(float scale, float zero, uint32_t q) {
    volatile float diff = (float)q - zero; /* volatile: forbid contraction into an FMA */
    return scale * diff;
}

/* Spec §6: value i of a b-bit stream occupies bits [i*b, i*b + b) counted from bit 0 (LSB) of
 * 32-bit little-endian word 0; a value may straddle two words. */
void spqr_pack_put(uint32_t *words, uint64_t i, uint32_t b, uint32_t v) {
    uint64_t bit = i * b;
    uint64_t wi = bit >> 5;
    uint32_t sh = (uint32_t)(bit & 31u);
    uint32_t mask = (b == 32) ? 0xffffffffu : ((1u << b) - 1u);
    v &= mask;
    words[wi] = (words[wi] & ~(mask << sh)) | (v << sh);
    if (sh + b > 32) {
        uint32_t hi = sh + b - 32;
        uint32_t hmask = (1u << hi) - 1u;
        words[wi + 1] = (words[wi + 1] & ~hmask) | (v >> (b - hi));
    }
}

uint32_t spqr_pack_get(const uint32_t *words, uint64_t i, uint32_t b) {
    uint64_t bit = i * b;
    uint64_t wi = bit >> 5;
    uint32_t sh = (uint32_t)(bit & 31u);
    uint64_t pair = words[wi];
    if (sh + b > 32) pair |= (uint64_t)words[wi + 1] << 32;
    return (uint32_t)((pair >> sh) & ((1ull << b) - 1ull));
}
