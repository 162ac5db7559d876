/* layers.h — test layers: real weights + real activations from ../shared, and synthetic layers
 * with outlier input channels (header-only helpers for the quantizer tests and benchmarks). */
#ifndef SPQR_TEST_LAYERS_H
#define SPQR_TEST_LAYERS_H
#include "sample.h"
#include "spqr_compress.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *W;
    double *H;
    uint64_t rows, cols;
} test_layer;

static inline float tl_gauss(uint64_t *rng) {
    float u = (spqr_rng_uniform(rng) + 1e-7f), v = spqr_rng_uniform(rng);
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* W ~ N(0, 0.02²) with 0.2% heavy weights; X [n x cols] ~ N(0,1) with 2% of the input channels
 * scaled by 8-20 (the outlier features of LLM activations); H = 2/n XᵀX. */
static inline int tl_synthetic(test_layer *L, uint64_t rows, uint64_t cols, uint64_t n,
                               uint64_t seed) {
    uint64_t rng = seed;
    L->rows = rows, L->cols = cols;
    L->W = malloc(rows * cols * sizeof *L->W);
    float *X = malloc(n * cols * sizeof *X), *chan = malloc(cols * sizeof *chan);
    if (!L->W || !X || !chan) return -1;
    for (uint64_t i = 0; i < rows * cols; i++) {
        L->W[i] = 0.02f * tl_gauss(&rng);
        if (spqr_rng_uniform(&rng) < 0.002f) L->W[i] *= 8.0f;
    }
    for (uint64_t c = 0; c < cols; c++)
        chan[c] = spqr_rng_uniform(&rng) < 0.02f ? 8.0f + 12.0f * spqr_rng_uniform(&rng) : 1.0f;
    for (uint64_t i = 0; i < n * cols; i++) X[i] = tl_gauss(&rng) * chan[i % cols];
    spqr_error err;
    spqr_hessian *h = spqr_hessian_new(cols, &err);
    if (!h || spqr_hessian_add(h, X, n, &err)) return -1;
    L->H = malloc(cols * cols * sizeof *L->H);
    memcpy(L->H, spqr_hessian_get(h, NULL), cols * cols * sizeof *L->H);
    spqr_hessian_free(h);
    free(X), free(chan);
    return 0;
}

static inline const char *tl_shared_dir(void) {
    const char *d = getenv("SPQR_SHARED_DIR");
    return d ? d : "../shared";
}

/* Layer 0 of the shared model: W = `proj` (e.g. "self_attn.q_proj"), inputs = the real layer-0
 * attention inputs RMSNorm(embed(tokens)) · input_layernorm for `ntok` calibration tokens.
 * Returns 1 when the shared data is absent (caller skips), -1 on error. */
static inline int tl_real_layer0(test_layer *L, const char *proj, uint64_t ntok) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/manpage-llama-27m/model.safetensors", tl_shared_dir());
    FILE *probe = fopen(path, "rb");
    if (!probe) return 1;
    fclose(probe);
    spqr_error err;
    spqr_safetensors *st = spqr_st_open(path, &err);
    if (!st) return -1;
    char name[256];
    snprintf(name, sizeof name, "model.layers.0.%s.weight", proj);
    const spqr_st_tensor *w = spqr_st_find(st, name),
                         *emb = spqr_st_find(st, "model.embed_tokens.weight"),
                         *g = spqr_st_find(st, "model.layers.0.input_layernorm.weight");
    if (!w || !emb || !g || w->ndim != 2) return -1;
    L->rows = w->shape[0], L->cols = w->shape[1];
    uint64_t hidden = emb->shape[1];
    if (L->cols != hidden) return -1;
    L->W = malloc(w->numel * sizeof *L->W);
    float *E = malloc(emb->numel * sizeof *E), *gw = malloc(hidden * sizeof *gw);
    float *X = malloc(ntok * hidden * sizeof *X);
    spqr_st_to_f32(w, L->W, &err), spqr_st_to_f32(emb, E, &err), spqr_st_to_f32(g, gw, &err);
    snprintf(path, sizeof path, "%s/text/man_calib.tokens.u32", tl_shared_dir());
    FILE *fp = fopen(path, "rb");
    if (!fp) return 1;
    uint32_t *tok = malloc(ntok * 4);
    if (fread(tok, 4, ntok, fp) != ntok) return -1;
    fclose(fp);
    for (uint64_t t = 0; t < ntok; t++) {
        const float *e = E + (uint64_t)tok[t] * hidden;
        double ss = 0;
        for (uint64_t c = 0; c < hidden; c++) ss += (double)e[c] * e[c];
        float inv = (float)(1.0 / sqrt(ss / (double)hidden + 1e-5));
        for (uint64_t c = 0; c < hidden; c++) X[t * hidden + c] = e[c] * inv * gw[c];
    }
    spqr_hessian *h = spqr_hessian_new(hidden, &err);
    spqr_hessian_add(h, X, ntok, &err);
    L->H = malloc(hidden * hidden * sizeof *L->H);
    memcpy(L->H, spqr_hessian_get(h, NULL), hidden * hidden * sizeof *L->H);
    spqr_hessian_free(h);
    free(E), free(gw), free(X), free(tok);
    spqr_st_close(st);
    return 0;
}

static inline void tl_free(test_layer *L) {
    free(L->W), free(L->H);
    L->W = NULL, L->H = NULL;
}
#endif
