/* sample.c — deterministic synthetic tensors and files (see sample.h). */
#include "sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t spqr_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float spqr_rng_uniform(uint64_t *s) {
    return (float)(spqr_rng_next(s) >> 40) * 0x1p-24f;
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

void spqr_sample_tensor_free(spqr_sample_tensor *t) {
    for (int i = 0; i < SPQR_SEC_COUNT; i++) free(t->sec[i]), t->sec[i] = NULL;
}

spqr_status spqr_sample_tensor_make(const spqr_tensor_info *in, uint64_t seed,
                                    spqr_sample_tensor *t, spqr_error *err) {
    memset(t, 0, sizeof *t);
    spqr_status st = spqr_section_sizes(in, t->size, err);
    if (st) return st;
    for (int i = 0; i < SPQR_SEC_COUNT; i++) {
        t->sec[i] = calloc(1, t->size[i] ? t->size[i] : 1);
        if (!t->sec[i]) {
            spqr_sample_tensor_free(t);
            return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
        }
    }
    uint64_t rng = seed;
    uint64_t rows = in->dims[0], cols = in->dims[1];
    uint64_t groups = (cols + in->beta2 - 1) / in->beta2,
             blocks = (rows + in->beta1 - 1) / in->beta1;
    uint64_t cw = spqr_packed_row_words(cols, in->wbits);
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++)
            spqr_pack_put((uint32_t *)t->sec[SPQR_SEC_CODES] + r * cw, c, in->wbits,
                          (uint32_t)(spqr_rng_next(&rng) % (1u << in->wbits)));
    if (in->stat_bits == 16) {
        for (uint64_t k = 0; k < rows * groups; k++) {
            put16((uint8_t *)t->sec[SPQR_SEC_SCALE] + 2 * k,
                  spqr_f32_to_f16(0.002f + 0.02f * spqr_rng_uniform(&rng)));
            put16((uint8_t *)t->sec[SPQR_SEC_ZERO] + 2 * k,
                  spqr_f32_to_f16((float)((1u << in->wbits) - 1) * spqr_rng_uniform(&rng)));
        }
    } else {
        uint64_t sw = spqr_stat_row_words(in, groups);
        for (uint64_t r = 0; r < rows; r++)
            for (uint64_t g = 0; g < groups; g++) {
                spqr_pack_put((uint32_t *)t->sec[SPQR_SEC_SCALE] + r * sw, g, in->stat_bits,
                              (uint32_t)(spqr_rng_next(&rng) % (1u << in->stat_bits)));
                spqr_pack_put((uint32_t *)t->sec[SPQR_SEC_ZERO] + r * sw, g, in->stat_bits,
                              (uint32_t)(spqr_rng_next(&rng) % (1u << in->stat_bits)));
            }
        float qmax = (float)((1u << in->wbits) - 1), smax = (float)((1u << in->stat_bits) - 1);
        for (uint64_t k = 0; k < blocks * groups; k++) {
            uint8_t *p = (uint8_t *)t->sec[SPQR_SEC_STAT2] + 8 * k;
            float smin = 0.002f + 0.01f * spqr_rng_uniform(&rng);
            put16(p, spqr_f32_to_f16(0.01f * spqr_rng_uniform(&rng) / smax +
                                     1e-4f));                              /* scale of scales */
            put16(p + 2, spqr_f32_to_f16(-smin / (0.01f / smax + 1e-4f))); /* zero of scales */
            put16(p + 4, spqr_f32_to_f16(qmax / smax * (0.5f + spqr_rng_uniform(&rng))));
            put16(p + 6, spqr_f32_to_f16(spqr_rng_uniform(&rng)));
        }
    }
    /* outliers: spread nnz over rows, strictly increasing columns per row */
    uint8_t *rp = t->sec[SPQR_SEC_ROWPTR];
    uint64_t k = 0;
    int wide = cols > 65536;
    for (uint64_t r = 0; r < rows; r++) {
        put32(rp + 4 * r, (uint32_t)k);
        uint64_t want = (in->nnz * (r + 1)) / rows - (in->nnz * r) / rows;
        if (want > cols) want = cols;
        uint64_t c = 0;
        for (uint64_t j = 0; j < want; j++) {
            uint64_t room = cols - c - (want - j); /* columns we may skip and still fit the rest */
            c += room ? spqr_rng_next(&rng) % (room / (want - j) + 1) : 0;
            if (wide)
                put32((uint8_t *)t->sec[SPQR_SEC_COLIDX] + 4 * k, (uint32_t)c);
            else
                put16((uint8_t *)t->sec[SPQR_SEC_COLIDX] + 2 * k, (uint16_t)c);
            put16((uint8_t *)t->sec[SPQR_SEC_VALUES] + 2 * k,
                  spqr_f32_to_f16((spqr_rng_uniform(&rng) - 0.5f) * 4.0f));
            k++, c++;
        }
    }
    put32(rp + 4 * rows, (uint32_t)k);
    if (in->flags & SPQR_FLAG_PERM) {
        uint32_t *perm = malloc(cols * 4);
        if (!perm) {
            spqr_sample_tensor_free(t);
            return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
        }
        for (uint64_t j = 0; j < cols; j++) perm[j] = (uint32_t)j;
        for (uint64_t j = cols - 1; j > 0; j--) {
            uint64_t o = spqr_rng_next(&rng) % (j + 1);
            uint32_t x = perm[j];
            perm[j] = perm[o], perm[o] = x;
        }
        for (uint64_t j = 0; j < cols; j++)
            put32((uint8_t *)t->sec[SPQR_SEC_PERM] + 4 * j, perm[j]);
        free(perm);
    }
    return SPQR_OK;
}

static spqr_status add_sample_spqr(spqr_writer *w, const char *name, uint64_t rows, uint64_t cols,
                                   uint32_t wbits, uint32_t sbits, uint32_t b1, uint32_t b2,
                                   uint64_t nnz, int perm, uint64_t seed, spqr_error *err) {
    spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                           .ndim = 2,
                           .dims = {rows, cols},
                           .wbits = wbits,
                           .stat_bits = sbits,
                           .beta1 = b1,
                           .beta2 = b2,
                           .nnz = nnz,
                           .flags = perm ? SPQR_FLAG_PERM : 0};
    spqr_sample_tensor t;
    spqr_status st = spqr_sample_tensor_make(&in, seed, &t, err);
    if (st) return st;
    st = spqr_writer_add_spqr(w, name, &in, (const void *const *)t.sec, err);
    spqr_sample_tensor_free(&t);
    return st;
}

spqr_status spqr_sample_write_file(const char *path, uint64_t seed, int zstd_level,
                                   spqr_error *err) {
    spqr_writer *w = spqr_writer_open(path, zstd_level, err);
    if (!w) return err->code;
    spqr_status st;
    static const char cfg[] = "{\"model_type\": \"demo\", \"hidden_size\": 100}";
    if ((st = spqr_writer_meta_str(w, "general.architecture", "demo", 4, err)) ||
        (st = spqr_writer_meta_str(w, "model.config_json", cfg, sizeof cfg - 1, err)) ||
        (st = spqr_writer_meta_str(w, "spqr.tool", "spqr demo", 9, err)) ||
        (st = spqr_writer_meta_i64(w, "compress.wbits", 3, err)) ||
        (st = spqr_writer_meta_f64(w, "compress.outlier_threshold", 0.2, err)))
        goto fail;
    float f32[2 * 5];
    uint16_t f16[7], bf16[3 * 4];
    uint64_t rng = seed;
    for (int i = 0; i < 10; i++) f32[i] = spqr_rng_uniform(&rng) - 0.5f;
    for (int i = 0; i < 7; i++) f16[i] = spqr_f32_to_f16(1.0f + spqr_rng_uniform(&rng));
    for (int i = 0; i < 12; i++) bf16[i] = spqr_f32_to_bf16(spqr_rng_uniform(&rng) * 8.0f);
    if ((st = spqr_writer_add_plain(w, "embed.weight", SPQR_DTYPE_F32, 2, (uint64_t[]){2, 5}, f32,
                                    err)) ||
        (st = spqr_writer_add_plain(w, "norm.weight", SPQR_DTYPE_F16, 1, (uint64_t[]){7}, f16,
                                    err)) ||
        (st = spqr_writer_add_plain(w, "head.weight", SPQR_DTYPE_BF16, 2, (uint64_t[]){3, 4}, bf16,
                                    err)) ||
        (st = add_sample_spqr(w, "layer0.q_proj", 37, 100, 3, 3, 16, 16, 111, 1, seed + 1, err)) ||
        (st = add_sample_spqr(w, "layer0.o_proj", 20, 48, 4, 16, 16, 16, 0, 0, seed + 2, err)) ||
        (st = add_sample_spqr(w, "layer0.wide", 2, 70000, 2, 4, 8, 128, 40, 1, seed + 3, err)))
        goto fail;
    return spqr_writer_finish(w, err);
fail:
    spqr_writer_abort(w);
    return st;
}

spqr_file *spqr_sample_open_tensor(const char *path, const spqr_tensor_info *info, uint64_t seed,
                                   spqr_error *err) {
    spqr_sample_tensor t;
    if (spqr_sample_tensor_make(info, seed, &t, err)) return NULL;
    spqr_writer *w = spqr_writer_open(path, 0, err);
    spqr_status st =
        w ? spqr_writer_add_spqr(w, "t", info, (const void *const *)t.sec, err) : SPQR_E_IO;
    if (w && st) spqr_writer_abort(w);
    if (w && !st) st = spqr_writer_finish(w, err);
    spqr_sample_tensor_free(&t);
    return st ? NULL : spqr_file_open(path, 0, err);
}

void spqr_sample_describe(const spqr_tensor_info *info, char *buf, size_t n) {
    snprintf(buf, n, "%llux%llu w%u s%u b1=%u b2=%u nnz=%llu perm=%d",
             (unsigned long long)info->dims[0], (unsigned long long)info->dims[1], info->wbits,
             info->stat_bits, info->beta1, info->beta2, (unsigned long long)info->nnz,
             (int)(info->flags & SPQR_FLAG_PERM));
}

spqr_file *spqr_sample_open_shared_input(const char *path, const spqr_tensor_info *info, size_t n,
                                         const uint64_t *rows, const uint64_t *nnz, uint64_t seed,
                                         int zstd_level, spqr_error *err) {
    spqr_writer *w = spqr_writer_open(path, zstd_level, err);
    if (!w) return NULL;
    spqr_sample_tensor t0 = {0};
    spqr_status st = SPQR_OK;
    for (size_t i = 0; i < n && !st; i++) {
        spqr_tensor_info in = *info;
        in.dims[0] = rows[i], in.nnz = nnz ? nnz[i] : 0;
        spqr_sample_tensor t;
        if ((st = spqr_sample_tensor_make(&in, seed + i, &t, err))) break;
        if (i == 0) {
            t0 = t;
        } else if (t.size[SPQR_SEC_PERM]) { /* the input's permutation: tensor 0's */
            memcpy(t.sec[SPQR_SEC_PERM], t0.sec[SPQR_SEC_PERM], t.size[SPQR_SEC_PERM]);
        }
        char name[32];
        snprintf(name, sizeof name, "t%zu", i);
        st = spqr_writer_add_spqr(w, name, &in, (const void *const *)t.sec, err);
        if (i) spqr_sample_tensor_free(&t);
    }
    if (n) spqr_sample_tensor_free(&t0);
    if (st) {
        spqr_writer_abort(w);
        return NULL;
    }
    return spqr_writer_finish(w, err) ? NULL : spqr_file_open(path, 0, err);
}
