/* test_vectors.c — the library decodes every committed vector of spec/vectors bit-exactly. */
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "spqr_format.h"

static void check_vector(const char *name) {
    char path[1024], exp[1024];
    const char *src = getenv("SPQR_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/spec/vectors/%s.spqr", src ? src : ".", name);
    snprintf(exp, sizeof exp, "%s/spec/vectors/%s.expected.f32", src ? src : ".", name);
    size_t esize;
    uint8_t *expected = tu_read_file(exp, &esize);
    assert_non_null(expected);
    spqr_error err = {0};
    spqr_file *f = spqr_file_open(path, SPQR_OPEN_VERIFY, &err);
    if (!f) fail_msg("%s", err.msg);
    assert_int_equal(spqr_file_version(f), strstr(name, "_v1") ? 1 : SPQR_FORMAT_VERSION);
    size_t at = 0;
    for (size_t i = 0; i < spqr_file_tensor_count(f); i++) {
        uint64_t n = spqr_info_numel(spqr_file_tensor_info(f, i));
        float *x = malloc(n * 4);
        assert_int_equal(spqr_file_dequantize(f, i, x, &err), SPQR_OK);
        assert_true(at + n * 4 <= esize);
        if (memcmp(x, expected + at, n * 4))
            fail_msg("%s: tensor %s differs", name, spqr_file_tensor_name(f, i));
        at += n * 4;
        free(x);
    }
    assert_int_equal(at, esize);
    spqr_file_close(f);
    free(expected);
}

static void example(void **s) {
    (void)s, check_vector("example");
}
static void sample(void **s) {
    (void)s, check_vector("sample");
}
static void sample_zstd(void **s) {
    (void)s, check_vector("sample_zstd");
}

/* version-1 files: same tensors, version-1 statistic rows (spec §6) */
static void version1(void **s) {
    (void)s, check_vector("example_v1"), check_vector("sample_v1"), check_vector("sample_zstd_v1");
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(example), cmocka_unit_test(sample),
                                       cmocka_unit_test(sample_zstd), cmocka_unit_test(version1)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
