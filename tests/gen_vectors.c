/* gen_vectors.c — writes the conformance vectors of spec/vectors and prints the worked example
 * of spec/SPEC.md §10. Usage: gen_vectors OUTDIR > example.md
 * Each NAME.spqr comes with NAME.expected.f32: every tensor dequantized (spec §7) in directory
 * order, original column order, little-endian float32, concatenated. */
#include "sample.h"
#include "spqr_format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static int write_expected(const char *spqr, const char *out) {
    spqr_error err = {0};
    spqr_file *f = spqr_file_open(spqr, SPQR_OPEN_VERIFY, &err);
    if (!f) return fprintf(stderr, "%s\n", err.msg), 1;
    FILE *fp = fopen(out, "wb");
    for (size_t i = 0; i < spqr_file_tensor_count(f); i++) {
        uint64_t n = spqr_info_numel(spqr_file_tensor_info(f, i));
        float *x = malloc(n * 4);
        spqr_file_dequantize(f, i, x, &err);
        fwrite(x, 4, n, fp);
        free(x);
    }
    fclose(fp);
    spqr_file_close(f);
    return 0;
}

static void hex(const char *label, const void *p, size_t n) {
    printf("%-8s", label);
    for (size_t i = 0; i < n; i++)
        printf("%s%02x", i && i % 4 == 0 ? " " : (i ? "" : " "), ((const uint8_t *)p)[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: gen_vectors OUTDIR\n"), 2;
    char path[600], exp[640];
    spqr_error err = {0};
    /* --- the worked example: 3 x 5, w = 2, s = 2, beta1 = 2, beta2 = 4, permutation, 2 outliers
     * --- */
    spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                           .ndim = 2,
                           .dims = {3, 5},
                           .wbits = 2,
                           .stat_bits = 2,
                           .beta1 = 2,
                           .beta2 = 4,
                           .nnz = 2,
                           .flags = SPQR_FLAG_PERM};
    uint64_t sz[SPQR_SEC_COUNT];
    spqr_section_sizes(&in, sz, &err);
    uint8_t *sec[SPQR_SEC_COUNT];
    for (int i = 0; i < SPQR_SEC_COUNT; i++) sec[i] = calloc(1, sz[i] + 1);
    static const uint32_t codes[3][5] = {{0, 1, 2, 3, 1}, {3, 3, 0, 1, 2}, {2, 0, 1, 3, 0}};
    static const uint32_t qs[3][2] = {{1, 2}, {3, 0}, {2, 1}}, qz[3][2] = {{1, 1}, {2, 0}, {0, 3}};
    static const float st2[2][2][4] = {{{0.25f, -1.0f, 0.5f, 0.0f}, {0.125f, 0.5f, 1.0f, 1.0f}},
                                       {{0.0625f, -2.0f, 0.75f, 0.5f}, {0.5f, 0.0f, 0.25f, -1.0f}}};
    static const uint32_t perm[5] = {2, 0, 4, 1, 3};
    const uint64_t sw = spqr_stat_row_words(&in, 2); /* 1 word (version 2) */
    for (int r = 0; r < 3; r++) {
        for (int c = 0; c < 5; c++)
            spqr_pack_put((uint32_t *)sec[0] + r * 2, (uint64_t)c, 2, codes[r][c]);
        for (int g = 0; g < 2; g++) {
            spqr_pack_put((uint32_t *)sec[1] + r * sw, (uint64_t)g, 2, qs[r][g]);
            spqr_pack_put((uint32_t *)sec[2] + r * sw, (uint64_t)g, 2, qz[r][g]);
        }
    }
    for (int b = 0; b < 2; b++)
        for (int g = 0; g < 2; g++)
            for (int k = 0; k < 4; k++)
                put16(sec[3] + 8 * (b * 2 + g) + 2 * k, spqr_f32_to_f16(st2[b][g][k]));
    put32(sec[4], 0), put32(sec[4] + 4, 1), put32(sec[4] + 8, 1), put32(sec[4] + 12, 2);
    put16(sec[5], 2), put16(sec[5] + 2, 4);
    put16(sec[6], spqr_f32_to_f16(3.5f)), put16(sec[6] + 2, spqr_f32_to_f16(-1.25f));
    for (int j = 0; j < 5; j++) put32(sec[7] + 4 * j, perm[j]);
    snprintf(path, sizeof path, "%s/example.spqr", argv[1]);
    spqr_writer *w = spqr_writer_open(path, 0, &err);
    if (!w || spqr_writer_meta_str(w, "general.name", "worked example", 14, &err) ||
        spqr_writer_add_spqr(w, "example", &in, (const void *const *)sec, &err) ||
        spqr_writer_finish(w, &err))
        return fprintf(stderr, "%s\n", err.msg), 1;
    snprintf(exp, sizeof exp, "%s/example.expected.f32", argv[1]);
    if (write_expected(path, exp)) return 1;
    printf("Section bytes of tensor `example` (hex, in file order; groups of 4 bytes):\n\n```\n");
    const char *names[] = {"codes",   "scale",   "zero",   "stat2",
                           "row_ptr", "col_idx", "values", "perm"};
    for (int i = 0; i < SPQR_SEC_COUNT; i++) hex(names[i], sec[i], sz[i]);
    printf("```\n\nDequantized (original column order):\n\n```\n");
    spqr_file *f = spqr_file_open(path, SPQR_OPEN_VERIFY, &err);
    float x[15];
    spqr_file_dequantize(f, 0, x, &err);
    for (int r = 0; r < 3; r++) {
        for (int c = 0; c < 5; c++) printf("%12.6g", (double)x[r * 5 + c]);
        printf("\n");
    }
    printf("```\n");
    spqr_file_close(f);
    for (int i = 0; i < SPQR_SEC_COUNT; i++) free(sec[i]);
    /* --- the synthetic sample, raw and zstd --- */
    const char *vec[] = {"sample", "sample_zstd"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s.spqr", argv[1], vec[k]);
        if (spqr_sample_write_file(path, 2024, k ? 3 : 0, &err))
            return fprintf(stderr, "%s\n", err.msg), 1;
        snprintf(exp, sizeof exp, "%s/%s.expected.f32", argv[1], vec[k]);
        if (write_expected(path, exp)) return 1;
    }
    return 0;
}
