/* test_stack.c — spqr_tensor_stack: tensors that share an input, stacked row-wise. The stacked
 * tensor must dequantize to the tensors' own dequantizations one under the other, bit for bit, be
 * a valid tensor (the writer's data rules and a verified reopen), and every mismatch must be
 * refused with an error naming the tensor and the rule. */
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gpu_internal.h"
#include "sample.h"
#include "spqr.h"

static char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tu_tmpdir(), name);
    return p;
}

/* Stacks sel[0..n) of f and checks it against the tensors' own dequantization, then writes it to
 * a file of its own, reopens it with full verification and checks that copy too. */
static void check_stack(const spqr_file *f, const size_t *sel, size_t n) {
    spqr_error err = {0};
    spqr_tensor_data d;
    assert_int_equal(spqr_tensor_stack(f, sel, n, &d, &err), SPQR_OK);
    const uint64_t cols = spqr_file_tensor_info(f, sel[0])->dims[1];
    uint64_t rows = 0, nnz = 0;
    for (size_t i = 0; i < n; i++)
        rows += spqr_file_tensor_info(f, sel[i])->dims[0],
            nnz += spqr_file_tensor_info(f, sel[i])->nnz;
    assert_int_equal(d.info.dims[0], rows);
    assert_int_equal(d.info.dims[1], cols);
    assert_int_equal(d.info.nnz, nnz);
    float *want = malloc(rows * cols * 4), *got = malloc(rows * cols * 4);
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(spqr_file_dequantize(f, sel[i], want + at, &err), SPQR_OK);
        at += spqr_info_numel(spqr_file_tensor_info(f, sel[i]));
    }
    spqr_dequantize_sections(&d.info, (const void *const *)d.sec, got);
    assert_memory_equal(want, got, rows * cols * 4);
    /* the stacked tensor is valid: the writer checks the data rules (R17, R18, R20), the reader
     * every rule and checksum */
    const char *path = tmp_path("stacked.spqr");
    spqr_writer *w = spqr_writer_open(path, 0, &err);
    assert_non_null(w);
    assert_int_equal(spqr_writer_add_spqr(w, "qkv", &d.info, (const void *const *)d.sec, &err),
                     SPQR_OK);
    assert_int_equal(spqr_writer_finish(w, &err), SPQR_OK);
    spqr_file *g = spqr_file_open(path, SPQR_OPEN_VERIFY, &err);
    assert_non_null(g);
    memset(got, 0, rows * cols * 4);
    assert_int_equal(spqr_file_dequantize(g, 0, got, &err), SPQR_OK);
    assert_memory_equal(want, got, rows * cols * 4);
    spqr_file_close(g);
    spqr_tensor_data_free(&d);
    for (int s = 0; s < SPQR_SEC_COUNT; s++) assert_null(d.sec[s]);
    free(want), free(got);
}

/* q/k/v-like groups: several configurations (s-bit and fp16 statistics, β1 from 2 to 64, with and
 * without permutation, u32 column indices past 65536 columns), a ragged last tensor, a tensor
 * without outliers in the middle, a tensor stacked twice, a single tensor, raw and zstd files. */
static void stack_decodes_to_the_tensors_stacked(void **state) {
    (void)state;
    static const struct {
        uint32_t w, s, b1, b2, perm;
        uint64_t cols;
    } cfg[] = {{3, 3, 16, 16, 1, 100}, {4, 16, 16, 8, 0, 48}, {2, 2, 4, 32, 1, 77},
               {3, 5, 64, 16, 1, 130}, {8, 8, 2, 2, 1, 9},    {2, 4, 8, 128, 1, 70000}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++)
        for (int level = 0; level <= 3; level += 3) {
            const uint64_t b1 = cfg[c].b1, wide = cfg[c].cols > 65536;
            const uint64_t rows[] = {3 * b1, wide ? b1 : 5 * b1, b1 + 1}; /* last one ragged */
            const uint64_t nnz[] = {7 * b1, 0, wide ? 3 : b1 + 5};
            spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                                   .ndim = 2,
                                   .dims = {0, cfg[c].cols},
                                   .wbits = cfg[c].w,
                                   .stat_bits = cfg[c].s,
                                   .beta1 = cfg[c].b1,
                                   .beta2 = cfg[c].b2,
                                   .flags = cfg[c].perm ? SPQR_FLAG_PERM : 0};
            spqr_error err = {0};
            spqr_file *f = spqr_sample_open_shared_input(tmp_path("group.spqr"), &in, 3, rows, nnz,
                                                         40 + c, level, &err);
            assert_non_null(f);
            check_stack(f, (const size_t[]){0, 1, 2}, 3);
            check_stack(f, (const size_t[]){1, 0}, 2);
            check_stack(f, (const size_t[]){0, 0, 2}, 3);
            check_stack(f, (const size_t[]){2}, 1);
            spqr_file_close(f);
        }
}

static void expect_refused(const spqr_file *f, const size_t *sel, size_t n, spqr_status code,
                           const char *needle) {
    spqr_error err = {0};
    spqr_tensor_data d;
    assert_int_equal(spqr_tensor_stack(f, sel, n, &d, &err), code);
    if (!strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
    for (int s = 0; s < SPQR_SEC_COUNT; s++) assert_null(d.sec[s]);
}

/* Tensors that do not share an input, or cannot be stacked, are refused by name. */
static void stack_refuses_mismatches(void **state) {
    (void)state;
    spqr_error err = {0};
    const char *path = tmp_path("mixed.spqr");
    uint8_t perm_a[64 * 4];
    spqr_writer *w = spqr_writer_open(path, 0, &err);
    assert_non_null(w);
    /* a: the reference; b: another permutation; c: no permutation; d: other columns; e: w4;
     * f: β2 8; g: 37 rows (not a multiple of β1 = 16) */
    struct {
        const char *name;
        uint64_t rows, cols;
        uint32_t w, b2, perm;
        uint64_t seed;
    } t[] = {{"a", 32, 64, 3, 16, 1, 1}, {"b", 32, 64, 3, 16, 1, 2}, {"c", 32, 64, 3, 16, 0, 1},
             {"d", 32, 65, 3, 16, 1, 1}, {"e", 32, 64, 4, 16, 1, 1}, {"f", 32, 64, 3, 8, 1, 1},
             {"g", 37, 64, 3, 16, 1, 1}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                               .ndim = 2,
                               .dims = {t[i].rows, t[i].cols},
                               .wbits = t[i].w,
                               .stat_bits = 3,
                               .beta1 = 16,
                               .beta2 = t[i].b2,
                               .nnz = 9,
                               .flags = t[i].perm ? SPQR_FLAG_PERM : 0};
        spqr_sample_tensor s;
        assert_int_equal(spqr_sample_tensor_make(&in, t[i].seed, &s, &err), SPQR_OK);
        if (i == 0) {
            memcpy(perm_a, s.sec[SPQR_SEC_PERM], sizeof perm_a);
        } else if (t[i].perm && t[i].cols == 64 && t[i].seed == 1) { /* all but b: a's input */
            memcpy(s.sec[SPQR_SEC_PERM], perm_a, sizeof perm_a);
        }
        assert_int_equal(spqr_writer_add_spqr(w, t[i].name, &in, (const void *const *)s.sec, &err),
                         SPQR_OK);
        spqr_sample_tensor_free(&s);
    }
    float one = 1.f;
    assert_int_equal(
        spqr_writer_add_plain(w, "norm", SPQR_DTYPE_F32, 1, (uint64_t[]){1}, &one, &err), SPQR_OK);
    assert_int_equal(spqr_writer_finish(w, &err), SPQR_OK);
    spqr_file *f = spqr_file_open(path, 0, &err);
    assert_non_null(f);
    expect_refused(f, (const size_t[]){0, 1}, 2, SPQR_E_ARG, "'b' under 'a': input permutations");
    expect_refused(f, (const size_t[]){0, 2}, 2, SPQR_E_ARG, "'c' under 'a': one has");
    expect_refused(f, (const size_t[]){0, 3}, 2, SPQR_E_ARG, "columns differ");
    expect_refused(f, (const size_t[]){0, 4}, 2, SPQR_E_ARG, "bit widths differ");
    expect_refused(f, (const size_t[]){0, 5}, 2, SPQR_E_ARG, "beta1 or beta2 differ");
    expect_refused(f, (const size_t[]){6, 0}, 2, SPQR_E_ARG, "'g': 37 rows, not a multiple");
    expect_refused(f, (const size_t[]){0, 7}, 2, SPQR_E_ARG, "'norm' is not an SpQR tensor");
    expect_refused(f, (const size_t[]){0, 8}, 2, SPQR_E_NOTFOUND, "index 8 out of range");
    expect_refused(f, (const size_t[]){0}, 0, SPQR_E_ARG, "no tensors");
    expect_refused(f, (const size_t[]){0}, 0, SPQR_E_ARG, "mixed.spqr");
    /* a mismatch anywhere is named before a ragged first tensor */
    expect_refused(f, (const size_t[]){6, 3}, 2, SPQR_E_ARG, "'d' under 'g': columns differ");
    check_stack(f, (const size_t[]){0, 6}, 2); /* the ragged tensor may come last */
    check_stack(f, (const size_t[]){0, 0, 6}, 3);
    spqr_file_close(f);
}

/* Writes SpQR tensors of 64 columns named names[i], with rows[i] rows and the permutation of a
 * 16 x 64 sample of seed[i] (equal seeds: one input), then a plain tensor called plain when it is
 * not NULL. */
static spqr_file *names_file(const char *file, const char *const *names, const uint64_t *rows,
                             const uint64_t *seed, size_t n, const char *plain) {
    spqr_error err = {0};
    const char *path = tmp_path(file);
    spqr_writer *w = spqr_writer_open(path, 0, &err);
    assert_non_null(w);
    for (size_t i = 0; i < n; i++) {
        spqr_tensor_info in = {.kind = SPQR_KIND_SPQR,
                               .ndim = 2,
                               .dims = {rows[i], 64},
                               .wbits = 3,
                               .stat_bits = 3,
                               .beta1 = 16,
                               .beta2 = 16,
                               .nnz = 5,
                               .flags = SPQR_FLAG_PERM};
        spqr_sample_tensor s, ref;
        assert_int_equal(spqr_sample_tensor_make(&in, seed[i], &s, &err), SPQR_OK);
        in.dims[0] = 16; /* the sample's permutation depends on its shape too */
        assert_int_equal(spqr_sample_tensor_make(&in, seed[i], &ref, &err), SPQR_OK);
        memcpy(s.sec[SPQR_SEC_PERM], ref.sec[SPQR_SEC_PERM], 64 * 4);
        in.dims[0] = rows[i];
        assert_int_equal(spqr_writer_add_spqr(w, names[i], &in, (const void *const *)s.sec, &err),
                         SPQR_OK);
        spqr_sample_tensor_free(&s), spqr_sample_tensor_free(&ref);
    }
    float one = 1.f;
    if (plain)
        assert_int_equal(
            spqr_writer_add_plain(w, plain, SPQR_DTYPE_F32, 1, (uint64_t[]){1}, &one, &err),
            SPQR_OK);
    assert_int_equal(spqr_writer_finish(w, &err), SPQR_OK);
    spqr_file *f = spqr_file_open(path, 0, &err);
    assert_non_null(f);
    return f;
}

/* spqr_file_input_group finds a layer's q/k/v and gate/up by their Hugging Face names, and only
 * whole groups of SpQR tensors; the groups it finds stack. */
static void input_groups_by_name(void **state) {
    (void)state;
    static const char *const names[] = {
        "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
        "model.layers.0.mlp.gate_proj.weight",    "model.layers.0.mlp.up_proj.weight",
        "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
        "model.layers.1.mlp.gate_proj.weight"};
    const uint64_t rows[] = {32, 32, 32, 32, 48, 48, 32, 32, 48},
                   seed[] = {77, 77, 77, 77, 77, 77, 77, 77, 77};
    /* layer 1's v_proj is plain: its q/k/v is no group */
    spqr_file *f =
        names_file("names.spqr", names, rows, seed, 9, "model.layers.1.self_attn.v_proj.weight");
    size_t g[SPQR_MAX_GROUP];
    assert_int_equal(spqr_file_input_group(f, 0, g), 3);
    assert_int_equal(g[0], 0), assert_int_equal(g[1], 1), assert_int_equal(g[2], 2);
    check_stack(f, g, 3);
    assert_int_equal(spqr_file_input_group(f, 4, g), 2);
    assert_int_equal(g[0], 4), assert_int_equal(g[1], 5);
    check_stack(f, g, 2);
    /* not a group's first member; layer 1's q/k/v lacks an SpQR v; gate without up; past the end */
    for (size_t i = 1; i < 4; i++) assert_int_equal(spqr_file_input_group(f, i, g), 0);
    assert_int_equal(spqr_file_input_group(f, 5, g), 0);
    assert_int_equal(spqr_file_input_group(f, 6, g), 0);
    assert_int_equal(spqr_file_input_group(f, 8, g), 0);
    assert_int_equal(spqr_file_input_group(f, 99, g), 0);
    spqr_file_close(f);
}

/* Checks a plan against the expected entries: want[e] lists entry e's members, ended by SIZE_MAX.
 */
static void expect_plan(const spqr_file *f, int stack, const size_t (*want)[4], size_t n_want) {
    spqr_error err = {0};
    spqr_model_entry *plan = NULL;
    size_t n = 99;
    assert_int_equal(spqr_model_plan(f, stack, &plan, &n, &err), SPQR_OK);
    assert_int_equal(n, n_want);
    for (size_t e = 0; e < n; e++) {
        size_t k = 0;
        for (; want[e][k] != SIZE_MAX; k++) assert_int_equal(plan[e].member[k], want[e][k]);
        assert_int_equal(plan[e].n, k);
    }
    free(plan);
}

/* The model upload's plan (spqr_gpu_model_upload_opts): one entry per SpQR tensor in file order,
 * or with stacking one per group of one input that stacks, where its first member stands in file
 * order, members in q/k/v (gate/up) order; groups that do not stack stay one entry per member. */
static void model_plan_stacks_groups(void **state) {
    (void)state;
    enum { X = SIZE_MAX };
    /* names sorted as a safetensors index sorts them: k, o, q, v; gate, up; layer 1's v differs
     * in permutation (seed 5), so its q/k/v does not stack; a plain tensor is no entry */
    static const char *const names[] = {
        "model.layers.0.mlp.down_proj.weight",    "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.mlp.up_proj.weight",      "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.o_proj.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.v_proj.weight", "model.layers.1.self_attn.k_proj.weight",
        "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight"};
    const uint64_t rows[] = {32, 48, 48, 16, 32, 32, 16, 16, 32, 16};
    const uint64_t seed[] = {3, 77, 77, 9, 4, 9, 9, 9, 9, 5};
    spqr_file *f = names_file("plan.spqr", names, rows, seed, 10, "model.norm.weight");
    const size_t separate[][4] = {{0, X}, {1, X}, {2, X}, {3, X}, {4, X},
                                  {5, X}, {6, X}, {7, X}, {8, X}, {9, X}};
    expect_plan(f, 0, separate, 10);
    const size_t stacked[][4] = {{0, X}, {1, 2, X}, {5, 3, 6, X}, {4, X}, {7, X}, {8, X}, {9, X}};
    expect_plan(f, 1, stacked, 7);
    spqr_file_close(f);
    /* a file of no SpQR tensors: no entries */
    f = names_file("plan_plain.spqr", names, rows, seed, 0, "model.norm.weight");
    expect_plan(f, 1, stacked, 0);
    spqr_file_close(f);
    /* an unknown upload option is refused before the device is asked for */
    spqr_error err = {0};
    spqr_gpu_model *m = (spqr_gpu_model *)&err;
    f = names_file("plan_one.spqr", names, rows, seed, 1, NULL);
    assert_int_equal(spqr_gpu_model_upload_opts(f, 2, &m, &err), SPQR_E_ARG);
    assert_null(m);
    assert_non_null(strstr(err.msg, "unknown model upload options 0x2"));
    spqr_file_close(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stack_decodes_to_the_tensors_stacked),
        cmocka_unit_test(stack_refuses_mismatches),
        cmocka_unit_test(input_groups_by_name),
        cmocka_unit_test(model_plan_stacks_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
