/* model.h — LLaMA-family model pieces shared by the compressor and the evaluator (private to
 * compress/; the public entry points are in spqr_compress.h). */
#ifndef SPQR_MODEL_H
#define SPQR_MODEL_H
#include "spqr_compress.h"

/* Where weights come from: a Hugging Face directory (safetensors, sharded or not) or a .spqr file.
 * Weights are converted to fp32 one tensor at a time; nothing holds the whole model. */
typedef struct spqr_weights spqr_weights;
spqr_weights *spqr_weights_open(const char *path, spqr_model_config *cfg, spqr_error *err);
void spqr_weights_close(spqr_weights *w);
/* The tensor as fp32 (malloc'd, numel values); *numel set. NULL with err on failure/missing. */
float *spqr_weights_get(spqr_weights *w, const char *name, uint64_t *numel, spqr_error *err);
int spqr_weights_has(spqr_weights *w, const char *name);
/* Raw config.json / tokenizer.json text of the source (NULL if none). */
const char *spqr_weights_config_json(spqr_weights *w, size_t *len);
const char *spqr_weights_tokenizer_json(spqr_weights *w, size_t *len);

/* The seven linears of a block, in true-sequential order. */
enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_COUNT };
extern const char *const spqr_linear_names[LIN_COUNT]; /* "self_attn.q_proj", ... */

/* One transformer block's fp32 weights (W row-major [out][in]). */
typedef struct {
    float *w[LIN_COUNT];
    float *bias[3]; /* q, k, v biases (qwen2) or NULL */
    float *norm_in, *norm_post;
} spqr_block;

spqr_status spqr_block_load(spqr_weights *w, const spqr_model_config *c, int layer, spqr_block *b,
                            spqr_error *err);
void spqr_block_free(spqr_block *b);

/* Staged block forward over n sequences of T tokens, x [n*T][hidden] updated in place.
 * Between stages the caller may inspect (and quantize for) the inputs of the next linears:
 *   stage 0 -> h    = RMSNorm(x)·norm_in           (input of q, k, v)
 *   stage 1 -> attn = attention(q, k, v)          (input of o)
 *   stage 2 -> h2   = RMSNorm(x + attn·Woᵀ)·norm_post (input of gate, up); x updated
 *   stage 3 -> act  = silu(h2·Wgᵀ) ⊙ (h2·Wuᵀ)       (input of down)
 *   stage 4 -> x   += act·Wdᵀ
 * Each stage uses the block weights as they are at that moment. */
typedef struct {
    const spqr_model_config *c;
    uint64_t n_seq, T;
    float *x;               /* [n*T][hidden] residual stream */
    float *h, *attn, *act;  /* stage outputs: [n*T][hidden], [n*T][hidden], [n*T][inter] */
    float *q, *k, *v, *tmp; /* scratch */
} spqr_fwd;

spqr_status spqr_fwd_init(spqr_fwd *f, const spqr_model_config *c, uint64_t n_seq, uint64_t T,
                          float *x, spqr_error *err);
void spqr_fwd_free(spqr_fwd *f);
void spqr_fwd_stage(spqr_fwd *f, const spqr_block *b, int stage);

/* Final norm + lm_head logits for T positions of one sequence: out [T][vocab]. */
void spqr_lm_head(const spqr_model_config *c, const float *x, uint64_t T, const float *norm_w,
                  const float *lm_head, float *out);
void spqr_rmsnorm(const float *x, const float *w, uint64_t n, uint64_t dim, double eps, float *out);
#endif
