/* test_broken.c — deliberately broken files: each is rejected with the right rule, never a crash.
 * Every case patches a valid sample file; where the patch is inside the checksummed header,
 * metadata or directory the header checksum is recomputed so that the targeted rule is the one
 * that fires (otherwise R7 would mask it). */
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "cli.h"
#include "sample.h"
#include "spqr_format.h"

static uint8_t *good;
static size_t good_size;
static uint8_t *good_z;
static size_t good_z_size;

static int setup(void **state) {
    (void)state;
    char p[512];
    spqr_error err = {0};
    snprintf(p, sizeof p, "%s/good.spqr", tu_tmpdir());
    if (spqr_sample_write_file(p, 1234, 0, &err)) return -1;
    good = tu_read_file(p, &good_size);
    snprintf(p, sizeof p, "%s/good_z.spqr", tu_tmpdir());
    if (spqr_sample_write_file(p, 1234, 3, &err)) return -1;
    good_z = tu_read_file(p, &good_z_size);
    return good && good_z ? 0 : -1;
}

static int has_rule(const spqr_validation *v, int rule) {
    for (size_t i = 0; i < v->n_stored; i++)
        if (v->defects[i].rule == rule) return 1;
    return 0;
}

/* Writes buf, then checks: validate reports `rule`; open (with verification) fails with a message
 * naming the file and a rule; the CLI exits 1. */
static void expect_rule(const uint8_t *buf, size_t size, int rule, const char *what) {
    char path[512];
    snprintf(path, sizeof path, "%s/broken-R%d.spqr", tu_tmpdir(), rule);
    assert_int_equal(tu_write_file(path, buf, size), 0);
    spqr_validation *v = malloc(sizeof *v);
    spqr_error err = {0};
    spqr_status st = spqr_validate_file(path, v, &err);
    if (st != SPQR_E_FORMAT || !has_rule(v, rule)) {
        for (size_t i = 0; i < v->n_stored; i++)
            print_message("  got R%d: %s\n", v->defects[i].rule, v->defects[i].msg);
        fail_msg("%s: expected rule R%d (status %d)", what, rule, st);
    }
    free(v);
    spqr_file *f = spqr_file_open(path, SPQR_OPEN_VERIFY, &err);
    if (f) fail_msg("%s: open succeeded on a broken file", what);
    assert_int_equal(err.code, SPQR_E_FORMAT);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "rule R"));
    char *argv[] = {"validate", path, NULL};
    int saved = dup(1);
    freopen("/dev/null", "w", stdout);
    int rc = cmd_validate(2, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    assert_int_equal(rc, 1);
}

static uint8_t *copy(void) {
    uint8_t *b = malloc(good_size);
    memcpy(b, good, good_size);
    return b;
}

static void truncations_and_header(void **state) {
    (void)state;
    size_t cuts[] = {0, 1, 7, 8, 79, 80, 81, 255, 256, 1000, good_size / 2, good_size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        expect_rule(good, cuts[i], cuts[i] < 80 ? 1 : 4, "truncated");
    uint8_t *b = copy();
    b[0] = 'X';
    expect_rule(b, good_size, 1, "magic");
    memcpy(b, good, 80);
    tu_put32(b + 8, 3);
    expect_rule(b, good_size, 2, "version 3");
    memcpy(b, good, 80);
    tu_put32(b + 8, 0);
    expect_rule(b, good_size, 2, "version 0");
    memcpy(b, good, 80);
    tu_put32(b + 12, 100);
    expect_rule(b, good_size, 3, "alignment");
    memcpy(b, good, 80);
    b = realloc(b, good_size + 10);
    memset(b + good_size, 0, 10);
    expect_rule(b, good_size + 10, 4, "extended file");
    memcpy(b, good, good_size);
    b[66] = 1;
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 5, "reserved");
    memcpy(b, good, 80);
    tu_put64(b + 24, good_size - 2); /* metadata past the end */
    expect_rule(b, good_size, 6, "metadata range");
    memcpy(b, good, 80);
    tu_put64(b + 40, tu_get64(good + 24)); /* directory overlaps metadata */
    expect_rule(b, good_size, 6, "overlap meta/dir");
    memcpy(b, good, 80);
    b[tu_get64(good + 40) + 3] ^=
        0x01; /* flip a bit in a tensor name: only the checksum can tell */
    expect_rule(b, good_size, 7, "header checksum");
    free(b);
}

static void metadata_and_directory(void **state) {
    (void)state;
    uint8_t *b = copy();
    uint64_t mo = tu_get64(b + 24);
    b[mo + 4 + 1 + 2] = ' '; /* byte of the first key */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 8, "key with a space");
    memcpy(b, good, good_size);
    tu_put32(b + mo, 0xffffffffu); /* metadata count overflow */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 8, "metadata count");
    memcpy(b, good, good_size);
    tu_put32(b + 56, 0x7fffffffu); /* tensor count that cannot fit */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 9, "tensor count");
    memcpy(b, good, good_size);
    size_t e = tu_entry_fixed(b, "norm.weight");
    b[e - 1] = 0xff; /* invalid UTF-8 in the name */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 9, "name utf-8");
    memcpy(b, good, good_size);
    e = tu_entry_fixed(b, "head.weight");
    memcpy(b + e - 11, "norm.weight", 11); /* same length: duplicate name */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 9, "duplicate name");
    memcpy(b, good, good_size);
    e = tu_entry_fixed(b, "norm.weight");
    tu_put64(b + e + 16, 1ull << 41); /* plain dims beyond 2^40 */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 10, "plain dims");
    memcpy(b, good, good_size);
    e = tu_entry_fixed(b, "layer0.q_proj");
    tu_put64(b + e + 16, 1ull << 40); /* rows beyond 2^31 (count overflow) */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 11, "spqr rows");
    memcpy(b, good, good_size);
    b[e + 3] = 1; /* wbits 1 */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 11, "wbits");
    memcpy(b, good, good_size);
    size_t d = tu_section_desc(b, "layer0.q_proj", 1);
    tu_put64(b + d + 16, tu_get64(b + d + 16) + 4); /* raw size wrong */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 12, "raw size");
    memcpy(b, good, good_size);
    b[d + 32] = 7; /* unknown codec */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 12, "codec");
    memcpy(b, good, good_size);
    tu_put64(b + d, (good_size + 4096) & ~255ull); /* offset past the end */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 13, "offset past end");
    memcpy(b, good, good_size);
    tu_put64(b + d, tu_get64(b + d) + 64); /* misaligned */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 13, "misaligned");
    memcpy(b, good, good_size);
    tu_put64(b + d, tu_get64(b + tu_section_desc(b, "layer0.q_proj", 0))); /* overlaps codes */
    tu_fix_header_checksum(b);
    expect_rule(b, good_size, 14, "overlapping sections");
    free(b);
}

/* Offset of section k's data for tensor name. */
static size_t sec_data(const uint8_t *b, const char *name, int k) {
    return (size_t)tu_get64(b + tu_section_desc(b, name, k));
}

static void data_rules(void **state) {
    (void)state;
    uint8_t *b = copy();
    b[sec_data(b, "layer0.q_proj", SPQR_SEC_CODES) + 5] ^=
        0x10; /* a code bit: only checksums tell */
    expect_rule(b, good_size, 15, "section checksum");
    memcpy(b, good, good_size);
    size_t rp = sec_data(b, "layer0.q_proj", SPQR_SEC_ROWPTR);
    tu_put32(b + rp + 4 * 5, tu_get32(b + rp + 4 * 6) + 1); /* row_ptr decreases */
    expect_rule(b, good_size, 17, "row_ptr decreasing");
    memcpy(b, good, good_size);
    tu_put32(b + rp, 1);
    expect_rule(b, good_size, 17, "row_ptr[0]");
    memcpy(b, good, good_size);
    size_t ci = sec_data(b, "layer0.q_proj", SPQR_SEC_COLIDX);
    b[ci] = 200, b[ci + 1] = 0; /* column 200 >= 100 */
    expect_rule(b, good_size, 18, "column out of range");
    memcpy(b, good, good_size);
    size_t wci = sec_data(b, "layer0.wide", SPQR_SEC_COLIDX); /* u32 indices (cols > 65536) */
    tu_put32(b + wci, 70000);
    expect_rule(b, good_size, 18, "wide column out of range");
    memcpy(b, good, good_size);
    size_t vv = sec_data(b, "layer0.q_proj", SPQR_SEC_VALUES);
    b[vv] = 0x00, b[vv + 1] = 0x7c; /* +Inf */
    expect_rule(b, good_size, 19, "outlier Inf");
    memcpy(b, good, good_size);
    size_t pp = sec_data(b, "layer0.q_proj", SPQR_SEC_PERM);
    tu_put32(b + pp, tu_get32(b + pp + 4));
    expect_rule(b, good_size, 20, "perm repeat");
    memcpy(b, good, good_size);
    size_t ew = sec_data(b, "embed.weight", 0);
    tu_put32(b + ew + 4, 0x7fc00000u); /* NaN */
    expect_rule(b, good_size, 21, "plain NaN");
    memcpy(b, good, good_size);
    size_t s2 = sec_data(b, "layer0.q_proj", SPQR_SEC_STAT2);
    b[s2 + 2] = 0x00, b[s2 + 3] = 0xfc; /* -Inf */
    expect_rule(b, good_size, 22, "stat2 Inf");
    memcpy(b, good, good_size);
    size_t os = sec_data(b, "layer0.o_proj", SPQR_SEC_SCALE); /* fp16 first-order stats (s = 16) */
    b[os + 1] = 0x7e;
    expect_rule(b, good_size, 22, "fp16 scale NaN");
    memcpy(b, good, good_size);
    size_t cd =
        sec_data(b, "layer0.q_proj", SPQR_SEC_CODES); /* row = 4 chunks x 3 words; 100 codes */
    b[cd + 47] |= 0x80; /* last byte of row 0: bit 383 >= 300 is padding */
    expect_rule(b, good_size, 23, "code padding");
    free(b);
}

static void zstd_corruption(void **state) {
    (void)state;
    uint8_t *b = malloc(good_z_size);
    memcpy(b, good_z, good_z_size);
    size_t d = 0;
    for (int k = 0; k < SPQR_SEC_COUNT && !d; k++) /* the first zstd-coded section */
        if (b[tu_section_desc(b, "layer0.wide", k) + 32] == SPQR_CODEC_ZSTD)
            d = tu_section_desc(b, "layer0.wide", k);
    assert_int_not_equal(d, 0);
    size_t off = (size_t)tu_get64(b + d);
    memset(b + off + 4, 0xff, 16); /* wreck the frame; keep the checksum consistent */
    tu_put64(b + d + 24, XXH64(b + off, tu_get64(b + d + 8), 0));
    tu_fix_header_checksum(b);
    expect_rule(b, good_z_size, 16, "zstd frame");
    /* open without verification also refuses it (decompression is structural) */
    spqr_error err = {0};
    assert_null(spqr_file_open_memory(b, good_z_size, "mem", 0, &err));
    assert_int_equal(err.rule, 16);
    free(b);
}

static void structural_open_rejects_without_verify(void **state) {
    (void)state;
    /* CSR and permutation defects are memory-safety rules: checked even without SPQR_OPEN_VERIFY */
    uint8_t *b = copy();
    size_t ci = sec_data(b, "layer0.q_proj", SPQR_SEC_COLIDX);
    b[ci] = 200, b[ci + 1] = 0;
    spqr_error err = {0};
    assert_null(spqr_file_open_memory(b, good_size, "mem", 0, &err));
    assert_int_equal(err.rule, 18);
    assert_non_null(strstr(err.msg, "layer0.q_proj"));
    assert_non_null(strstr(err.msg, "at byte"));
    /* a checksum defect alone passes a structural open and fails a verifying one */
    memcpy(b, good, good_size);
    b[sec_data(b, "layer0.q_proj", SPQR_SEC_CODES) + 5] ^= 0x10;
    spqr_file *f = spqr_file_open_memory(b, good_size, "mem", 0, &err);
    assert_non_null(f);
    spqr_file_close(f);
    assert_null(spqr_file_open_memory(b, good_size, "mem", SPQR_OPEN_VERIFY, &err));
    assert_int_equal(err.rule, 15);
    free(b);
    /* unreadable file: CLI exit code 2 */
    char *argv[] = {"validate", "/nonexistent/x.spqr", NULL};
    int saved = dup(2);
    freopen("/dev/null", "w", stderr);
    int rc = cmd_validate(2, argv);
    dup2(saved, 2);
    close(saved);
    assert_int_equal(rc, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(truncations_and_header),
        cmocka_unit_test(metadata_and_directory),
        cmocka_unit_test(data_rules),
        cmocka_unit_test(zstd_corruption),
        cmocka_unit_test(structural_open_rejects_without_verify),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
