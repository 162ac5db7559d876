/* cmd_eval.c — `spqr eval MODEL --text FILE [--seqlen N] [--max-windows N] [--json]`. */
#include "cli.h"
#include "spqr_compress.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The tokenizer of MODEL: tokenizer.json in an HF directory, or the metadata of a .spqr file. */
char *spqr_cli_tokenizer_json(const char *model, size_t *len) {
    spqr_error err;
    spqr_file *f = spqr_file_open(model, 0, &err);
    if (f) {
        long k = spqr_file_meta_find(f, "tokenizer.json");
        char *out = NULL;
        if (k >= 0) {
            const char *s = spqr_file_meta_str(f, (size_t)k, len);
            out = malloc(*len + 1);
            memcpy(out, s, *len);
            out[*len] = 0;
        }
        spqr_file_close(f);
        return out;
    }
    char p[1100];
    snprintf(p, sizeof p, "%s/tokenizer.json", model);
    FILE *fp = fopen(p, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc(*len + 1);
    if (b && fread(b, 1, *len, fp) != *len) free(b), b = NULL;
    fclose(fp);
    if (b) b[*len] = 0;
    return b;
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *text = NULL;
    uint64_t seqlen = 2048, maxw = 0;
    int json = 0, seqlen_set = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--text") && i + 1 < argc)
            text = argv[++i];
        else if (!strcmp(argv[i], "--seqlen") && i + 1 < argc) {
            if (cli_parse_u64("eval", "--seqlen", argv[++i], 2, 1u << 24, &seqlen)) return 2;
            seqlen_set = 1;
        } else if (!strcmp(argv[i], "--max-windows") && i + 1 < argc) {
            if (cli_parse_u64("eval", "--max-windows", argv[++i], 1, UINT64_MAX, &maxw)) return 2;
        } else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (argv[i][0] != '-' && !model)
            model = argv[i];
        else {
            fprintf(stderr, "spqr eval: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!model || !text) {
        fprintf(stderr, "usage: spqr eval MODEL(.spqr or HF dir) --text FILE [--seqlen N] "
                        "[--max-windows N] [--json]\n");
        return 2;
    }
    (void)seqlen_set;
    size_t tl = 0;
    char *tj = spqr_cli_tokenizer_json(model, &tl);
    uint32_t *ids;
    uint64_t n;
    spqr_error err = {0};
    if (spqr_tokens_load(text, tj, tl, &ids, &n, &err)) {
        fprintf(stderr, "spqr eval: %s\n", err.msg);
        free(tj);
        return 2;
    }
    free(tj);
    spqr_eval_result r;
    spqr_status st = spqr_eval_perplexity(model, ids, n, seqlen, maxw, &r, &err);
    free(ids);
    if (st) {
        fprintf(stderr, "spqr eval: %s\n", err.msg);
        return 1;
    }
    if (json) {
        json_t *o = json_pack("{s:s,s:s,s:f,s:f,s:I,s:I,s:I,s:f}", "model", model, "text", text,
                              "perplexity", r.perplexity, "nll", r.nll, "tokens",
                              (json_int_t)r.tokens, "windows", (json_int_t)r.windows, "seqlen",
                              (json_int_t)seqlen, "seconds", r.seconds);
        char *s = json_dumps(o, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("%s: perplexity %.4f on %s (%llu windows of %llu, %llu predicted tokens, %.1f s)\n",
               model, r.perplexity, text, (unsigned long long)r.windows, (unsigned long long)seqlen,
               (unsigned long long)r.tokens, r.seconds);
    }
    return 0;
}
