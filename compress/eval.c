/* eval.c — perplexity the standard way of the GPTQ/SpQR papers: non-overlapping windows of seqlen
 * tokens; in each window the model predicts tokens 2..seqlen from their prefixes; perplexity =
 * exp(mean negative log-likelihood over all predicted tokens). Windows go through the model in
 * chunks (bounded activation memory), layer by layer, one block's weights in memory at a time. */
#define _POSIX_C_SOURCE 200809L
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVAL_TOKENS_PER_CHUNK 65536 /* activations of ~64 K tokens at a time */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Runs n_seq sequences (ids [n_seq][T]) through the model; x out [n_seq*T][hidden] after the last
 * block. */
static spqr_status run_blocks(spqr_weights *w, const spqr_model_config *c, const uint32_t *ids,
                              uint64_t n_seq, uint64_t T, const float *embed, float *x,
                              spqr_error *err) {
    for (uint64_t i = 0; i < n_seq * T; i++) {
        if (ids[i] >= c->vocab)
            return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "token id %u >= vocab %u", ids[i],
                                  c->vocab);
        memcpy(x + i * c->hidden, embed + (uint64_t)ids[i] * c->hidden, c->hidden * sizeof *x);
    }
    spqr_fwd f;
    spqr_status st = spqr_fwd_init(&f, c, n_seq, T, x, err);
    if (st) return st;
    for (uint32_t l = 0; l < c->layers && !st; l++) {
        spqr_block b;
        if ((st = spqr_block_load(w, c, (int)l, &b, err))) break;
        for (int s = 0; s < 5; s++) spqr_fwd_stage(&f, &b, s);
        spqr_block_free(&b);
    }
    spqr_fwd_free(&f);
    return st;
}

typedef struct {
    spqr_weights *w;
    spqr_model_config c;
    float *embed, *norm, *head;
} model_t;

static spqr_status model_open(model_t *m, const char *path, spqr_error *err) {
    memset(m, 0, sizeof *m);
    if (!(m->w = spqr_weights_open(path, &m->c, err))) return err->code;
    uint64_t n;
    if (!(m->embed = spqr_weights_get(m->w, "model.embed_tokens.weight", &n, err)) ||
        !(m->norm = spqr_weights_get(m->w, "model.norm.weight", &n, err)) ||
        !(m->head = spqr_weights_get(m->w, "lm_head.weight", &n, err))) {
        spqr_weights_close(m->w);
        free(m->embed), free(m->norm);
        return err->code;
    }
    return SPQR_OK;
}

static void model_close(model_t *m) {
    spqr_weights_close(m->w);
    free(m->embed), free(m->norm), free(m->head);
}

spqr_status spqr_model_logits(const char *path, const uint32_t *ids, uint64_t T, float *logits,
                              spqr_error *err) {
    model_t m;
    spqr_status st = model_open(&m, path, err);
    if (st) return st;
    float *x = malloc(T * m.c.hidden * sizeof *x);
    if (!x) st = spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    if (!st) st = run_blocks(m.w, &m.c, ids, 1, T, m.embed, x, err);
    if (!st) spqr_lm_head(&m.c, x, T, m.norm, m.head, logits);
    free(x);
    model_close(&m);
    return st;
}

spqr_status spqr_eval_perplexity(const char *path, const uint32_t *ids, uint64_t n, uint64_t T,
                                 uint64_t max_windows, spqr_eval_result *out, spqr_error *err) {
    memset(out, 0, sizeof *out);
    if (T < 2)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "seqlen %llu: must be >= 2",
                              (unsigned long long)T);
    uint64_t windows = n / T;
    if (max_windows && windows > max_windows) windows = max_windows;
    if (!windows)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                              "%llu tokens: fewer than one window of %llu", (unsigned long long)n,
                              (unsigned long long)T);
    double t0 = now_s();
    model_t m;
    spqr_status st = model_open(&m, path, err);
    if (st) return st;
    uint64_t chunk = EVAL_TOKENS_PER_CHUNK / T;
    if (!chunk) chunk = 1;
    float *x = malloc(chunk * T * m.c.hidden * sizeof *x),
          *logits = malloc(T * m.c.vocab * sizeof *logits);
    if (!x || !logits) st = spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    double nll = 0;
    uint64_t count = 0;
    for (uint64_t w0 = 0; w0 < windows && !st; w0 += chunk) {
        uint64_t nw = windows - w0 < chunk ? windows - w0 : chunk;
        if ((st = run_blocks(m.w, &m.c, ids + w0 * T, nw, T, m.embed, x, err))) break;
        for (uint64_t s = 0; s < nw; s++) {
            spqr_lm_head(&m.c, x + s * T * m.c.hidden, T, m.norm, m.head, logits);
            const uint32_t *win = ids + (w0 + s) * T;
            for (uint64_t t = 0; t + 1 < T; t++) { /* position t predicts token t+1 */
                const float *l = logits + t * m.c.vocab;
                float mx = l[0];
                for (uint32_t v = 1; v < m.c.vocab; v++) mx = l[v] > mx ? l[v] : mx;
                double z = 0;
                for (uint32_t v = 0; v < m.c.vocab; v++) z += exp((double)(l[v] - mx));
                nll += log(z) + (double)mx - (double)l[win[t + 1]];
                count++;
            }
        }
    }
    free(x), free(logits);
    model_close(&m);
    if (st) return st;
    out->nll = nll / (double)count;
    out->perplexity = exp(out->nll);
    out->tokens = count;
    out->windows = windows;
    out->seconds = now_s() - t0;
    return SPQR_OK;
}
