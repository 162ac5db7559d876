/* test_format.c — writer/reader round trips, metadata, zstd sections and the atomic writer. */
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "sample.h"
#include "spqr_format.h"

static char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tu_tmpdir(), name);
    return p;
}

/* Sections read back are byte-identical to what was written, raw or zstd. */
static void roundtrip_sections(void **state) {
    (void)state;
    spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                           .ndim = 2,
                           .dims = {45, 130},
                           .wbits = 3,
                           .stat_bits = 3,
                           .beta1 = 16,
                           .beta2 = 16,
                           .nnz = 77,
                           .flags = SPQR_FLAG_PERM};
    spqr_sample_tensor t;
    spqr_error err = {0};
    assert_int_equal(spqr_sample_tensor_make(&in, 5, &t, &err), SPQR_OK);
    for (int level = 0; level <= 3; level += 3) {
        const char *path = tmp_path(level ? "rt_z.spqr" : "rt.spqr");
        spqr_writer *w = spqr_writer_open(path, level, &err);
        assert_non_null(w);
        assert_int_equal(spqr_writer_meta_str(w, "name", "x\xc3\xa9y", 4, &err), SPQR_OK);
        assert_int_equal(spqr_writer_meta_i64(w, "answer", -42, &err), SPQR_OK);
        assert_int_equal(spqr_writer_meta_f64(w, "pi", 3.25, &err), SPQR_OK);
        assert_int_equal(spqr_writer_add_spqr(w, "t", &in, (const void *const *)t.sec, &err),
                         SPQR_OK);
        assert_int_equal(spqr_writer_finish(w, &err), SPQR_OK);
        spqr_file *f = spqr_file_open(path, SPQR_OPEN_VERIFY, &err);
        if (!f) fail_msg("%s", err.msg);
        assert_int_equal(spqr_file_tensor_count(f), 1);
        assert_int_equal(spqr_file_find(f, "t"), 0);
        assert_int_equal(spqr_file_find(f, "nope"), -1);
        const spqr_tensor_info *got = spqr_file_tensor_info(f, 0);
        assert_memory_equal(got->dims, in.dims, sizeof in.dims);
        assert_int_equal(got->nnz, 77);
        for (int s = 0; s < SPQR_SEC_COUNT; s++) {
            uint64_t size;
            const void *p = spqr_file_section(f, 0, (spqr_section_id)s, &size);
            assert_int_equal(size, t.size[s]);
            assert_memory_equal(p, t.sec[s], size);
            uint64_t off, stored;
            spqr_codec codec;
            spqr_file_section_stored(f, 0, (spqr_section_id)s, &off, &stored, &codec);
            if (size) assert_int_equal(off % spqr_file_alignment(f), 0);
            if (level && s == SPQR_SEC_PERM) assert_int_equal(codec, SPQR_CODEC_ZSTD);
        }
        long k = spqr_file_meta_find(f, "name");
        size_t len;
        assert_true(k >= 0);
        assert_int_equal(spqr_file_meta_type(f, (size_t)k), SPQR_META_STR);
        assert_memory_equal(spqr_file_meta_str(f, (size_t)k, &len), "x\xc3\xa9y", 4);
        assert_int_equal(len, 4);
        assert_int_equal(spqr_file_meta_i64(f, (size_t)spqr_file_meta_find(f, "answer")), -42);
        assert_true(spqr_file_meta_f64(f, (size_t)spqr_file_meta_find(f, "pi")) == 3.25);
        spqr_file_close(f);
    }
    spqr_sample_tensor_free(&t);
}

/* The writer never leaves a partial file under the final name. */
static void writer_is_atomic(void **state) {
    (void)state;
    spqr_error err = {0};
    const char *path = tmp_path("atomic.spqr");
    unlink(path);
    spqr_writer *w = spqr_writer_open(path, 0, &err);
    float x[4] = {1, 2, 3, 4};
    assert_int_equal(spqr_writer_add_plain(w, "x", SPQR_DTYPE_F32, 1, (uint64_t[]){4}, x, &err),
                     SPQR_OK);
    assert_false(tu_exists(path)); /* not visible before finish */
    spqr_writer_abort(w);
    assert_false(tu_exists(path));
    /* invalid data is refused before anything is written, and the file never appears */
    w = spqr_writer_open(path, 0, &err);
    x[2] = 1.0f / 0.0f;
    assert_int_not_equal(spqr_writer_add_plain(w, "x", SPQR_DTYPE_F32, 1, (uint64_t[]){4}, x, &err),
                         SPQR_OK);
    assert_non_null(strstr(err.msg, "R21"));
    x[2] = 3;
    assert_int_equal(spqr_writer_add_plain(w, "x", SPQR_DTYPE_F32, 1, (uint64_t[]){4}, x, &err),
                     SPQR_OK);
    assert_int_not_equal(spqr_writer_add_plain(w, "x", SPQR_DTYPE_F32, 1, (uint64_t[]){4}, x, &err),
                         SPQR_OK);
    assert_non_null(strstr(err.msg, "duplicate"));
    assert_int_not_equal(spqr_writer_meta_i64(w, "bad key", 1, &err), SPQR_OK);
    assert_int_equal(spqr_writer_finish(w, &err), SPQR_OK);
    assert_true(tu_exists(path));
    /* no temporary left behind */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp >/dev/null", tu_tmpdir());
    assert_int_not_equal(system(cmd), 0);
}

/* The writer refuses SpQR data that breaks the data rules. */
static void writer_rejects_bad_tensors(void **state) {
    (void)state;
    spqr_error err = {0};
    spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                           .ndim = 2,
                           .dims = {8, 40},
                           .wbits = 4,
                           .stat_bits = 3,
                           .beta1 = 4,
                           .beta2 = 8,
                           .nnz = 10,
                           .flags = SPQR_FLAG_PERM};
    spqr_sample_tensor t;
    assert_int_equal(spqr_sample_tensor_make(&in, 9, &t, &err), SPQR_OK);
    spqr_writer *w = spqr_writer_open(tmp_path("rej.spqr"), 0, &err);
    uint8_t *perm = t.sec[SPQR_SEC_PERM];
    uint32_t saved = tu_get32(perm);
    tu_put32(perm, tu_get32(perm + 4)); /* repeat */
    assert_int_not_equal(spqr_writer_add_spqr(w, "a", &in, (const void *const *)t.sec, &err),
                         SPQR_OK);
    assert_int_equal(err.rule, 20);
    tu_put32(perm, saved);
    spqr_tensor_info bad = in;
    bad.wbits = 9;
    assert_int_not_equal(spqr_writer_add_spqr(w, "a", &bad, (const void *const *)t.sec, &err),
                         SPQR_OK);
    assert_int_equal(err.rule, 11);
    bad = in, bad.beta2 = 24;
    assert_int_not_equal(spqr_writer_add_spqr(w, "a", &bad, (const void *const *)t.sec, &err),
                         SPQR_OK);
    assert_int_equal(spqr_writer_add_spqr(w, "a", &in, (const void *const *)t.sec, &err), SPQR_OK);
    spqr_writer_abort(w);
    spqr_sample_tensor_free(&t);
}

/* zstd and raw files dequantize to identical values; dequantization follows the permutation. */
static void zstd_and_raw_decode_identically(void **state) {
    (void)state;
    spqr_error err = {0};
    const char *a = tmp_path("s_raw.spqr"), *b = tmp_path("s_zstd.spqr");
    assert_int_equal(spqr_sample_write_file(a, 11, 0, &err), SPQR_OK);
    assert_int_equal(spqr_sample_write_file(b, 11, 5, &err), SPQR_OK);
    spqr_file *fa = spqr_file_open(a, SPQR_OPEN_VERIFY, &err),
              *fb = spqr_file_open(b, SPQR_OPEN_VERIFY, &err);
    assert_non_null(fa);
    assert_non_null(fb);
    assert_true(spqr_file_size(fb) < spqr_file_size(fa));
    for (size_t i = 0; i < spqr_file_tensor_count(fa); i++) {
        uint64_t n = spqr_info_numel(spqr_file_tensor_info(fa, i));
        float *x = malloc(n * 4), *y = malloc(n * 4);
        assert_int_equal(spqr_file_dequantize(fa, i, x, &err), SPQR_OK);
        assert_int_equal(spqr_file_dequantize(fb, i, y, &err), SPQR_OK);
        assert_memory_equal(x, y, n * 4);
        free(x), free(y);
    }
    spqr_file_close(fa);
    spqr_file_close(fb);
    spqr_validation *v = malloc(sizeof *v);
    assert_int_equal(spqr_validate_file(b, v, &err), SPQR_OK);
    assert_int_equal(v->n_defects, 0);
    assert_int_equal(spqr_validate_file(tmp_path("does-not-exist"), v, &err), SPQR_E_IO);
    assert_int_equal(v->readable, 0);
    free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip_sections),
        cmocka_unit_test(writer_is_atomic),
        cmocka_unit_test(writer_rejects_bad_tensors),
        cmocka_unit_test(zstd_and_raw_decode_identically),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
