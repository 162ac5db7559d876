/* test_model.c — checkpoints, tokenizer, forward pass, perplexity and the compression pipeline.
 * Real-data checks (logits and perplexity of the shared model against the Hugging Face reference,
 * tokenizations of the shared texts) skip when ../shared is absent; the pipeline, resume and error
 * checks run on a small generated LLaMA checkpoint. */
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "spqr_compress.h"

#include <math.h>

static const char *shared(void) {
    const char *d = getenv("SPQR_SHARED_DIR");
    return d ? d : "../shared";
}
static int slow_ok(void) {
    return getenv("SPQR_SANITIZED") == NULL;
} /* 10x slower under ASan */

static char *path_in(const char *dir, const char *name) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 1024, "%.500s/%.500s", dir, name);
    return p;
}

static void config_parsing(void **state) {
    (void)state;
    spqr_model_config c;
    spqr_error err;
    const char *a = "{\"model_type\":\"llama\",\"hidden_size\":512,\"intermediate_size\":1376,"
                    "\"num_hidden_layers\":8,"
                    "\"num_attention_heads\":8,\"num_key_value_heads\":4,\"vocab_size\":4096,"
                    "\"rope_theta\":500000.0}";
    assert_int_equal(spqr_config_parse(a, strlen(a), "a.json", &c, &err), SPQR_OK);
    assert_true(c.rope_theta == 500000.0 && c.head_dim == 64 && c.kv_heads == 4 && !c.qkv_bias);
    const char *b = "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,\"num_"
                    "hidden_layers\":2,"
                    "\"num_attention_heads\":4,\"vocab_size\":100,\"rope_parameters\":{\"rope_"
                    "theta\":1000000.0,"
                    "\"rope_type\":\"default\"}}";
    assert_int_equal(spqr_config_parse(b, strlen(b), "b.json", &c, &err), SPQR_OK);
    assert_true(c.rope_theta == 1000000.0 && c.qkv_bias && c.tie_embeddings && c.kv_heads == 4);
    const char *d = "{\"model_type\":\"gpt2\",\"hidden_size\":64}";
    assert_int_equal(spqr_config_parse(d, strlen(d), "d.json", &c, &err), SPQR_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "gpt2"));
    assert_non_null(strstr(err.msg, "d.json"));
    const char *e = "{\"model_type\":\"llama\",\"hidden_size\":64}";
    assert_int_equal(spqr_config_parse(e, strlen(e), "e.json", &c, &err), SPQR_E_FORMAT);
    assert_non_null(strstr(err.msg, "intermediate_size"));
    const char *f =
        "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_"
        "layers\":2,"
        "\"num_attention_heads\":4,\"vocab_size\":100,\"rope_scaling\":{\"rope_type\":\"yarn\"}}";
    assert_int_equal(spqr_config_parse(f, strlen(f), "f.json", &c, &err), SPQR_E_UNSUPPORTED);
}

/* Broken safetensors headers are rejected with the file, the tensor and the rule in the message. */
static void safetensors_errors(void **state) {
    (void)state;
    struct {
        const char *json;
        uint64_t data;
        const char *word;
    } cases[] = {
        {"{\"a\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [0, 8]}}", 8, NULL},
        {"{\"a\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}", 8,
         "outside"},
        {"{\"a\": {\"dtype\": \"F16\", \"shape\": [2, 3], \"data_offsets\": [0, 8]}}", 8,
         "elements"},
        {"{\"a\": {\"dtype\": \"X9\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 8,
         "unknown dtype"},
        {"{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]}, \"b\": "
         "{\"dtype\": \"F16\", \"shape\": [2], "
         "\"data_offsets\": [2, 6]}}",
         8, "overlap"},
        {"{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]}, \"a\": "
         "{\"dtype\": \"F16\", \"shape\": [2], "
         "\"data_offsets\": [4, 8]}}",
         8, "JSON"},
        {"{\"a\": {\"dtype\": \"F16\", \"shape\": [-2], \"data_offsets\": [0, 4]}}", 8, "shape"},
        {"{\"a\": [1, 2", 8, "JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t hl = strlen(cases[i].json), n = 8 + hl + cases[i].data;
        uint8_t *b = calloc(1, n);
        for (int k = 0; k < 8; k++) b[k] = (uint8_t)((uint64_t)hl >> (8 * k));
        memcpy(b + 8, cases[i].json, hl);
        spqr_error err = {0};
        spqr_safetensors *st = spqr_st_open_memory(b, n, "x.safetensors", &err);
        if (!cases[i].word) {
            assert_non_null(st);
            assert_int_equal(spqr_st_count(st), 1);
            spqr_st_close(st);
        } else {
            if (st) fail_msg("case %zu accepted", i);
            if (!strstr(err.msg, cases[i].word))
                fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].word);
            assert_non_null(strstr(err.msg, "x.safetensors"));
        }
        free(b);
    }
    uint8_t big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    spqr_error err;
    assert_null(spqr_st_open_memory(big, sizeof big, "big", &err));
    assert_non_null(strstr(err.msg, "header length"));
}

static void tokenizer_matches_reference(void **state) {
    (void)state;
    const char *tok = path_in(shared(), "models/manpage-llama-27m/tokenizer.json");
    size_t tl;
    char *tj = (char *)tu_read_file(tok, &tl);
    if (!tj) skip();
    const char *texts[] = {"man_heldout", "wikitext-2-test"};
    for (int k = 0; k < 2; k++) {
        char t[1024], r[1024];
        snprintf(t, sizeof t, "%s/text/%s.txt", shared(), texts[k]);
        snprintf(r, sizeof r, "%s/text/%s.tokens.u32", shared(), texts[k]);
        uint32_t *a, *b;
        uint64_t na, nb;
        spqr_error err;
        assert_int_equal(spqr_tokens_load(t, tj, tl, &a, &na, &err), SPQR_OK);
        assert_int_equal(spqr_tokens_load(r, NULL, 0, &b, &nb, &err), SPQR_OK);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * 4);
        print_message("%s: %llu tokens identical to the Hugging Face tokenization\n", texts[k],
                      (unsigned long long)na);
        free(a), free(b);
    }
    /* a text file without a tokenizer is a clear error */
    uint32_t *x;
    uint64_t nx;
    spqr_error err;
    assert_int_equal(
        spqr_tokens_load(path_in(shared(), "text/man_heldout.txt"), NULL, 0, &x, &nx, &err),
        SPQR_E_ARG);
    free(tj);
}

static void logits_match_reference(void **state) {
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/manpage-llama-27m", shared());
    size_t n1, n2;
    uint8_t *ids = tu_read_file(path_in(dir, "reference_input_ids.u32"), &n1);
    float *ref = (float *)tu_read_file(path_in(dir, "reference_logits.f32"), &n2);
    if (!ids || !ref) {
        free(ids), free(ref);
        skip();
    }
    float *got = malloc(n2);
    spqr_error err;
    assert_int_equal(spqr_model_logits(dir, (const uint32_t *)ids, n1 / 4, got, &err), SPQR_OK);
    double num = 0, den = 0;
    for (size_t i = 0; i < n2 / 4; i++)
        num += (got[i] - ref[i]) * (double)(got[i] - ref[i]), den += (double)ref[i] * ref[i];
    double rel = sqrt(num / den);
    print_message("logits vs Hugging Face fp32: relative error %.3g\n", rel);
    /* the reference is itself fp32 with another summation order: ~1e-4 is the floor */
    assert_true(rel < 2e-4);
    free(ids), free(ref), free(got);
}

static void perplexity_matches_reference(void **state) {
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/manpage-llama-27m", shared());
    size_t n;
    uint32_t *ids = (uint32_t *)tu_read_file(path_in(shared(), "text/man_heldout.tokens.u32"), &n);
    if (!ids || !slow_ok()) {
        free(ids);
        skip();
    }
    spqr_eval_result r;
    spqr_error err;
    assert_int_equal(spqr_eval_perplexity(dir, ids, n / 4, 512, 200, &r, &err), SPQR_OK);
    print_message("perplexity %.4f (reference 24.53), %llu windows, %.1f s\n", r.perplexity,
                  (unsigned long long)r.windows, r.seconds);
    assert_int_equal(r.windows, 200);
    assert_int_equal(r.tokens, 200 * 511);
    assert_true(fabs(r.perplexity - 24.53) <= 0.05);
    free(ids);
}

/* Splits DIR/model.safetensors into two shards (the first re-encoded as bf16, the second as f32)
 * with a model.safetensors.index.json, in OUT (config copied). */
static void write_sharded(const char *dir, const char *out) {
    char p[1024];
    snprintf(p, sizeof p, "%.500s/model.safetensors", dir);
    spqr_error err;
    spqr_safetensors *st = spqr_st_open(p, &err);
    assert_non_null(st);
    mkdir(out, 0755);
    size_t n = spqr_st_count(st);
    FILE *idx;
    snprintf(p, sizeof p, "%.500s/model.safetensors.index.json", out);
    idx = fopen(p, "w");
    fprintf(idx, "{\"metadata\": {}, \"weight_map\": {");
    for (int shard = 0; shard < 2; shard++) {
        char hdr[65536];
        size_t hl = 0;
        uint64_t off = 0;
        int es = shard == 0 ? 2 : 4;
        hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "{");
        int first = 1;
        for (size_t i = shard; i < n; i += 2) {
            const spqr_st_tensor *t = spqr_st_get(st, i);
            hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl,
                                   "%s\"%s\": {\"dtype\": \"%s\", \"shape\": [%llu",
                                   first ? "" : ", ", t->name, shard == 0 ? "BF16" : "F32",
                                   (unsigned long long)t->shape[0]);
            if (t->ndim == 2)
                hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, ", %llu",
                                       (unsigned long long)t->shape[1]);
            hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "], \"data_offsets\": [%llu, %llu]}",
                                   (unsigned long long)off,
                                   (unsigned long long)(off + t->numel * (uint64_t)es));
            off += t->numel * (uint64_t)es;
            fprintf(idx, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", (i == 0 ? "" : ", "),
                    t->name, shard + 1);
            first = 0;
        }
        hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "}");
        snprintf(p, sizeof p, "%.500s/model-0000%d-of-00002.safetensors", out, shard + 1);
        FILE *f = fopen(p, "wb");
        uint64_t hl64 = hl;
        fwrite(&hl64, 8, 1, f);
        fwrite(hdr, 1, hl, f);
        for (size_t i = shard; i < n; i += 2) {
            const spqr_st_tensor *t = spqr_st_get(st, i);
            float *v = malloc(t->numel * 4);
            spqr_st_to_f32(t, v, &err);
            for (uint64_t k = 0; k < t->numel; k++) {
                if (shard == 0) {
                    uint16_t b = spqr_f32_to_bf16(v[k]);
                    fwrite(&b, 2, 1, f);
                } else {
                    fwrite(&v[k], 4, 1, f);
                }
            }
            free(v);
        }
        fclose(f);
    }
    fprintf(idx, "}}\n");
    fclose(idx);
    spqr_st_close(st);
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "cp %.500s/config.json %.500s/calib.u32 %.500s/", dir, dir, out);
    assert_int_equal(system(cmd), 0);
}

static spqr_status compress_tiny_mem(const char *dir, const char *out, int resume,
                                     volatile int *stop, spqr_mode mode, uint64_t max_memory) {
    size_t n;
    uint32_t *ids = (uint32_t *)tu_read_file(path_in(dir, "calib.u32"), &n);
    spqr_compress_job job = {.model = dir,
                             .out = out,
                             .calib = ids,
                             .n_calib = n / 4,
                             .nsamples = 8,
                             .seqlen = 64,
                             .seed = 3,
                             .resume = resume,
                             .stop = stop,
                             .verbose = 0,
                             .max_memory = max_memory};
    spqr_quant_params_default(&job.q, mode);
    spqr_compress_result r;
    spqr_error err = {0};
    spqr_status st = spqr_compress_model(&job, &r, &err);
    if (st && st != SPQR_E_INTERRUPTED) print_message("compress: %s\n", err.msg);
    free(ids);
    return st;
}

static spqr_status compress_tiny(const char *dir, const char *out, int resume, volatile int *stop,
                                 spqr_mode mode) {
    return compress_tiny_mem(dir, out, resume, stop, mode, 0);
}

/* The whole pipeline on a generated checkpoint: a valid file whose perplexity is close to the
 * original's; an interrupted run resumed gives the same bytes as an uninterrupted one. */
static void pipeline_and_resume(void **state) {
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tiny", tu_tmpdir());
    spqr_error err;
    assert_int_equal(spqr_write_tiny_llama(dir, 11, &err), SPQR_OK);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/a.spqr", tu_tmpdir());
    snprintf(b, sizeof b, "%s/b.spqr", tu_tmpdir());
    assert_int_equal(compress_tiny(dir, a, 0, NULL, SPQR_MODE_SPQR), SPQR_OK);
    spqr_validation *v = malloc(sizeof *v);
    assert_int_equal(spqr_validate_file(a, v, &err), SPQR_OK);
    free(v);
    spqr_file *f = spqr_file_open(a, 0, &err);
    assert_non_null(f);
    assert_true(spqr_file_find(f, "model.layers.1.mlp.down_proj.weight") >= 0);
    assert_int_equal(
        spqr_file_tensor_info(f, (size_t)spqr_file_find(f, "model.layers.1.mlp.down_proj.weight"))
            ->kind,
        SPQR_KIND_SPQR);
    assert_true(spqr_file_meta_find(f, "model.config_json") >= 0 &&
                spqr_file_meta_find(f, "compress.wbits") >= 0);
    spqr_file_close(f);
    /* perplexity of original vs compressed on the tiny model's eval tokens */
    size_t n;
    uint32_t *ids = (uint32_t *)tu_read_file(path_in(dir, "eval.u32"), &n);
    spqr_eval_result ro, rq;
    assert_int_equal(spqr_eval_perplexity(dir, ids, n / 4, 64, 20, &ro, &err), SPQR_OK);
    assert_int_equal(spqr_eval_perplexity(a, ids, n / 4, 64, 20, &rq, &err), SPQR_OK);
    print_message("tiny model: perplexity %.3f original, %.3f spqr\n", ro.perplexity,
                  rq.perplexity);
    assert_true(rq.perplexity < ro.perplexity * 1.10 && rq.perplexity > ro.perplexity * 0.90);
    free(ids);
    /* interrupted after the first block, then resumed: identical bytes */
    volatile int stop = 1;
    assert_int_equal(compress_tiny(dir, b, 0, &stop, SPQR_MODE_SPQR), SPQR_E_INTERRUPTED);
    assert_false(tu_exists(b));
    char state_file[700];
    snprintf(state_file, sizeof state_file, "%s.resume/state.json", b);
    assert_true(tu_exists(state_file));
    stop = 0;
    assert_int_equal(compress_tiny(dir, b, 1, &stop, SPQR_MODE_SPQR), SPQR_OK);
    size_t na, nb;
    uint8_t *fa = tu_read_file(a, &na), *fb = tu_read_file(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(fa, fb, na);
    assert_false(tu_exists(state_file));
    free(fa), free(fb);
    /* activations spilled to a scratch file (1-byte budget): same bytes */
    char c[600];
    snprintf(c, sizeof c, "%s/c.spqr", tu_tmpdir());
    assert_int_equal(compress_tiny_mem(dir, c, 0, NULL, SPQR_MODE_SPQR, 1), SPQR_OK);
    uint8_t *fc = tu_read_file(c, &nb);
    fa = tu_read_file(a, &na);
    assert_int_equal(na, nb);
    assert_memory_equal(fa, fc, na);
    free(fc);
    /* a sharded checkpoint (bf16 + f32 shards, index.json) gives the same model: logits agree with
     * the single-file fp16 original to bf16 precision */
    char sh[600];
    snprintf(sh, sizeof sh, "%s/sharded", tu_tmpdir());
    write_sharded(dir, sh);
    uint32_t toks[16];
    for (int i = 0; i < 16; i++) toks[i] = (uint32_t)(i * 13 % 256);
    float *l1 = malloc(16 * 256 * 4), *l2 = malloc(16 * 256 * 4);
    assert_int_equal(spqr_model_logits(dir, toks, 16, l1, &err), SPQR_OK);
    assert_int_equal(spqr_model_logits(sh, toks, 16, l2, &err), SPQR_OK);
    double num = 0, den = 0;
    for (int i = 0; i < 16 * 256; i++)
        num += (l1[i] - l2[i]) * (double)(l1[i] - l2[i]), den += (double)l1[i] * l1[i];
    print_message("sharded bf16/f32 checkpoint vs fp16 original: logits rel. diff %.3g\n",
                  sqrt(num / den));
    assert_true(sqrt(num / den) < 2e-2);
    free(l1), free(l2);
    snprintf(c, sizeof c, "%s/sharded.spqr", tu_tmpdir());
    assert_int_equal(compress_tiny(sh, c, 0, NULL, SPQR_MODE_GPTQ), SPQR_OK);
    free(fa);
    /* resume with different parameters is refused */
    stop = 1;
    assert_int_equal(compress_tiny(dir, b, 0, &stop, SPQR_MODE_SPQR), SPQR_E_INTERRUPTED);
    assert_int_equal(compress_tiny(dir, b, 1, NULL, SPQR_MODE_GPTQ), SPQR_E_ARG);
    /* missing tensor: a clear error naming it */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/missing", tu_tmpdir());
    assert_int_equal(spqr_write_tiny_llama(bad, 1, &err), SPQR_OK);
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/config.json", bad);
    size_t cl;
    char *cj = (char *)tu_read_file(cfg, &cl);
    char *p = strstr(cj, "\"num_hidden_layers\": 2");
    p[21] = '3'; /* claims a third layer the checkpoint lacks */
    tu_write_file(cfg, cj, cl);
    free(cj);
    ids = (uint32_t *)tu_read_file(path_in(dir, "calib.u32"), &n);
    spqr_compress_job job = {.model = bad,
                             .out = path_in(tu_tmpdir(), "bad.spqr"),
                             .calib = ids,
                             .n_calib = n / 4,
                             .nsamples = 2,
                             .seqlen = 32};
    spqr_quant_params_default(&job.q, SPQR_MODE_RTN);
    spqr_compress_result r;
    assert_int_equal(spqr_compress_model(&job, &r, &err), SPQR_E_NOTFOUND);
    assert_non_null(strstr(err.msg, "model.layers.2.self_attn.q_proj.weight"));
    free(ids);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_parsing),
        cmocka_unit_test(safetensors_errors),
        cmocka_unit_test(tokenizer_matches_reference),
        cmocka_unit_test(logits_match_reference),
        cmocka_unit_test(perplexity_matches_reference),
        cmocka_unit_test(pipeline_and_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
