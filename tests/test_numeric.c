/* test_numeric.c — half/bfloat16 conversions, the packed bitstream (spec §6, §7.1), and the
 * float identities the GPU kernels' statistics decode relies on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "sample.h"
#include "spqr_format.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Every binary16 value survives f16 -> f32 -> f16 exactly (NaNs stay NaN). */
static void f16_exhaustive_roundtrip(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = spqr_f16_to_f32((uint16_t)h);
        uint16_t back = spqr_f32_to_f16(f);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            assert_true(isnan(f));
            assert_int_equal(back & 0x7c00, 0x7c00);
            assert_true(back & 0x3ff);
        } else {
            assert_int_equal(back, h);
        }
    }
    /* spot values */
    assert_true(spqr_f16_to_f32(0x3c00) == 1.0f);
    assert_true(spqr_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(spqr_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(spqr_f16_to_f32(0xc000) == -2.0f);
}

__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

/* f32 -> f16 rounds to nearest even: compared with the CPU's F16C instruction on 2^24 values
 * spread over every exponent, including ties and the overflow / subnormal boundaries. */
static void f16_rounding_matches_hardware(void **state) {
    (void)state;
    unsigned a, b, c, d;
    int has_f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)); /* CPUID.1:ECX.F16C */
    if (!has_f16c) {
        print_message("SKIP part: CPU has no F16C; checking ties by hand only\n");
    } else {
        uint64_t rng = 7;
        for (uint32_t i = 0; i < (1u << 24); i++) {
            uint32_t u = i < (1u << 23) ? (uint32_t)spqr_rng_next(&rng) : (i << 8) ^ (i & 0xff);
            float f = from_bits(u);
            if (isnan(f)) continue;
            uint16_t a = spqr_f32_to_f16(f), b = hw_f32_to_f16(f);
            if (a != b) fail_msg("f32 0x%08x: spqr 0x%04x, F16C 0x%04x", u, a, b);
        }
    }
    /* ties: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 -> even (1.0) */
    assert_int_equal(spqr_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(spqr_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(spqr_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(spqr_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(spqr_f32_to_f16(0x1p-25f), 0x0000); /* tie to even zero */
    assert_int_equal(spqr_f32_to_f16(0x1p-25f * 1.0001f), 0x0001);
}

static void bf16_conversions(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = spqr_bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        assert_int_equal(spqr_f32_to_bf16(f), h);
    }
    assert_int_equal(spqr_f32_to_bf16(from_bits(0x3f808000u)), 0x3f80); /* tie -> even */
    assert_int_equal(spqr_f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);
    assert_int_equal(spqr_f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);
    (void)bits;
}

/* The bitstream: value i at bits [i*b, i*b+b), LSB first, straddling words. */
static void pack_layout(void **state) {
    (void)state;
    uint32_t w[3] = {0};
    for (int i = 0; i < 32; i++) spqr_pack_put(w, (uint64_t)i, 3, (uint32_t)(i & 7));
    /* values 0..7 repeating: bits of value i at 3i. Word 0 = 0,1,..,7,0,1 and 2 bits of value 10 */
    uint32_t expect0 = 0;
    for (int i = 0; i < 11; i++) {
        uint32_t v = (uint32_t)(i & 7);
        int at = 3 * i;
        if (at < 32) expect0 |= v << at;
    }
    assert_int_equal(w[0], expect0);
    for (int i = 0; i < 32; i++)
        assert_int_equal(spqr_pack_get(w, (uint64_t)i, 3), (uint32_t)(i & 7));
    for (uint32_t b = 1; b <= 8; b++) {
        uint32_t buf[64] = {0};
        uint32_t vals[200];
        uint64_t rng = b;
        uint64_t n = spqr_packed_row_words(200, b) * 32 / b; /* all fit */
        assert_true(n >= 200);
        for (int i = 0; i < 200; i++) {
            vals[i] = (uint32_t)(spqr_rng_next(&rng) & ((1u << b) - 1));
            spqr_pack_put(buf, (uint64_t)i, b, vals[i]);
        }
        /* overwrite a few to check put clears old bits */
        for (int i = 0; i < 200; i += 7) {
            vals[i] ^= (1u << b) - 1;
            spqr_pack_put(buf, (uint64_t)i, b, vals[i]);
        }
        for (int i = 0; i < 200; i++) assert_int_equal(spqr_pack_get(buf, (uint64_t)i, b), vals[i]);
        assert_int_equal(spqr_packed_row_words(200, b), 7 * b);
    }
}

/* Spec §7.2: stat = s2*(q - z2) with two roundings, never a fused multiply-add. */
static void dequant_affine_is_two_roundings(void **state) {
    (void)state;
    uint64_t rng = 3;
    for (int i = 0; i < 100000; i++) {
        float s = spqr_f16_to_f32((uint16_t)(spqr_rng_next(&rng) & 0x7bff));
        float z = spqr_f16_to_f32((uint16_t)(spqr_rng_next(&rng) & 0xfbff));
        uint32_t q = (uint32_t)(spqr_rng_next(&rng) & 255);
        volatile float d = (float)q - z;
        volatile float p = s * d;
        float got = spqr_dequant_affine(s, z, q);
        assert_true(bits(got) == bits(p));
    }
}

/* The tensor-core kernel's direct decode (w = 2, 3; kernels/mma_decode.cuh direct_stats_folded,
 * SPQR_MMA_STATFOLD 2) must give the same fp16 pair (b, c) as the per-row decode it replaced:
 *   per row:  scale = ss·((float)qs − zs), b = f16(scale·2^(14+w)),
 *             zero = sz·((float)qz − zz), c = f16(−(f32(b)·2^-(14+w))·zero);
 *   folded:   b = f16((ss·2^(14+w))·((2^23 + qs) − 2^23 − zs)),
 *             c = f16(−f32(b)·((sz·2^-(14+w))·fma((2^23 + qz·2^s) − 2^23, 2^-s, −zz))),
 * where 2^23 + q is the float whose bits are 0x4B000000 | q. Every statistics width s = 1..8,
 * random fp16 statistics of both signs (all exponents, subnormals included; every other draw with
 * ss small, as on real tensors), random codes; pairs whose b overflows fp16 are skipped (upload
 * keeps those tensors off this kernel). */
static void direct_stats_fold_is_bit_identical(void **state) {
    (void)state;
    uint64_t rng = 17;
    long compared = 0;
    for (int w = 2; w <= 3; w++) {
        const float up = ldexpf(1.f, 14 + w), down = ldexpf(1.f, -(14 + w));
        for (uint32_t s = 1; s <= 8; s++) {
            const uint32_t m = (1u << s) - 1u;
            const float zstep = ldexpf(1.f, -(int)s);
            for (int i = 0; i < 40000; i++) {
                /* odd draws: ss < 2^(−s−1)·2, as on real tensors (scale·2^(14+w) < 65504) */
                const uint32_t sb = (uint32_t)spqr_rng_next(&rng);
                const uint16_t ss_bits =
                    (i & 1) ? (uint16_t)((sb & 0x83ffu) | ((sb >> 16) % (15 - s)) << 10)
                            : (uint16_t)(sb & 0xfbffu);
                const float ss = spqr_f16_to_f32(ss_bits);
                const float zs = spqr_f16_to_f32((uint16_t)(spqr_rng_next(&rng) & 0xfbff));
                const float sz = spqr_f16_to_f32((uint16_t)(spqr_rng_next(&rng) & 0xfbff));
                const float zz = spqr_f16_to_f32((uint16_t)(spqr_rng_next(&rng) & 0xfbff));
                const uint32_t e = (uint32_t)spqr_rng_next(&rng); /* qs | qz << s, then junk */
                const uint32_t qs = e & m, qz = (e >> s) & m;
                /* per row */
                const float scale = ss * ((float)qs - zs);
                const uint16_t b = spqr_f32_to_f16(scale * up);
                const float zero = sz * ((float)qz - zz);
                const uint16_t c = spqr_f32_to_f16(-(spqr_f16_to_f32(b) * down) * zero);
                if (isinf(spqr_f16_to_f32(b))) continue;
                /* folded */
                const float ss_up = ss * up, sz_down = sz * down;
                const float dq_s = (from_bits((e & m) | 0x4B000000u) - 8388608.f) - zs;
                const float dq_z =
                    fmaf(from_bits((e & (m << s)) | 0x4B000000u) - 8388608.f, zstep, -zz);
                const uint16_t b2 = spqr_f32_to_f16(ss_up * dq_s);
                const uint16_t c2 = spqr_f32_to_f16(-spqr_f16_to_f32(b2) * (sz_down * dq_z));
                if (b != b2 || c != c2)
                    fail_msg("w %d s %u: ss %a zs %a sz %a zz %a qs %u qz %u: (b, c) %04x %04x, "
                             "folded %04x %04x",
                             w, s, ss, zs, sz, zz, qs, qz, b, c, b2, c2);
                compared++;
            }
        }
    }
    print_message("%ld of %d draws compared (b finite)\n", compared, 2 * 8 * 40000);
    assert_true(compared > 2 * 8 * 40000 / 2); /* most small-ss draws and some others */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(f16_exhaustive_roundtrip),
        cmocka_unit_test(f16_rounding_matches_hardware),
        cmocka_unit_test(bf16_conversions),
        cmocka_unit_test(pack_layout),
        cmocka_unit_test(dequant_affine_is_two_roundings),
        cmocka_unit_test(direct_stats_fold_is_bit_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
