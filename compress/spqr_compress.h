/* spqr_compress.h — the SpQR matrix quantizer (GPTQ with small groups, quantized statistics and
 * unstructured outliers; Dettmers et al. 2023, Alg. 1) and the Hessian accumulator.
 *
 * One weight matrix W [rows = outputs, cols = inputs] and its Hessian H = 2/N · XᵀX in; one SpQR
 * tensor out, laid out exactly as the .spqr format stores it (spec/SPEC.md §5-§7). */
#ifndef SPQR_COMPRESS_H
#define SPQR_COMPRESS_H

#include "spqr_format.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SPQR_MODE_RTN = 0,  /* round-to-nearest with per-group min-max statistics, no Hessian */
    SPQR_MODE_GPTQ = 1, /* GPTQ error feedback, groups, fp16 statistics, no outliers */
    SPQR_MODE_SPQR = 2, /* the full method */
} spqr_mode;

typedef enum { SPQR_PERM_IDENTITY = 0, SPQR_PERM_ACT_ORDER = 1 } spqr_perm_kind;

typedef struct {
    spqr_mode mode;
    uint32_t wbits;           /* weight bits, 2..8 */
    uint32_t beta1;           /* rows per second-order statistics block (power of two) */
    uint32_t beta2;           /* columns per group (power of two) */
    uint32_t stat_bits;       /* bits of the quantized statistics, 1..8, or 16 = fp16 */
    double outlier_threshold; /* tau; INFINITY disables outliers */
    int simplified_outliers;  /* skip the leave-one-out pre-selection of outliers */
    spqr_perm_kind perm;      /* input-column order */
    double percdamp;          /* lambda: H += lambda * mean(diag H) * I */
    uint32_t blocksize;       /* GPTQ lazy-batch block (power of two) */
    int compute_loss;         /* compute the relative proxy loss (one extra GEMM) */
    int return_dequantized;   /* fill spqr_quantized.dequantized with the quantizer's own view */
} spqr_quant_params;

/* The paper's defaults for each mode (spqr: w 3, beta1 = beta2 = 16, s 3, tau 0.2, act_order,
 * percdamp 1.0; gptq: w 3, beta2 16, fp16 stats, act_order, percdamp 0.01; rtn: w 3, beta2 16,
 * fp16 stats, identity). */
void spqr_quant_params_default(spqr_quant_params *p, spqr_mode mode);
/* Rejects parameters outside their ranges with a message naming the parameter. */
spqr_status spqr_quant_params_check(const spqr_quant_params *p, spqr_error *err);

/* A quantized matrix: the tensor description and its sections (owned), plus statistics. */
typedef struct {
    spqr_tensor_info info;
    void *sec[SPQR_SEC_COUNT];
    uint64_t size[SPQR_SEC_COUNT];
    uint64_t n_outliers;
    double outlier_fraction; /* n_outliers / (rows * cols) */
    double bits_per_param;   /* exact, from the section sizes (spec §8) */
    double proxy_loss;     /* tr(D H D^T) / tr(W H W^T), D = W - dequant(Q); NaN if not computed */
    double damp_used;      /* the lambda finally used (raised if H was not positive definite) */
    int damp_retries;      /* how many times lambda was raised */
    uint32_t dead_columns; /* inputs with diag(H) = 0 */
    float *dequantized;    /* rows x cols, original order: the weights as the quantizer computed
                              them (only with return_dequantized; freed by spqr_quantized_free) */
} spqr_quantized;

/* Quantizes W (row-major rows x cols, fp32) with Hessian H (cols x cols, row-major, double,
 * symmetric; may be NULL in rtn mode). W and H are not modified. */
spqr_status spqr_quantize(const float *W, uint64_t rows, uint64_t cols, const double *H,
                          const spqr_quant_params *p, spqr_quantized *out, spqr_error *err);
void spqr_quantized_free(spqr_quantized *q);
/* The dequantized matrix (rows x cols, original column order), computed exactly as a .spqr
 * reader computes it (spec §7). */
spqr_status spqr_quantized_dequantize(const spqr_quantized *q, float *out, spqr_error *err);

/* Relative proxy loss tr(D H D^T) / tr(W H W^T) with D = W - Wq (all rows x cols, H cols x cols).
 */
double spqr_proxy_loss(const float *W, const float *Wq, uint64_t rows, uint64_t cols,
                       const double *H);

/* ---- Hessian accumulator: H = 2/N · Σ xᵀx over all N input rows, streamed ---- */
typedef struct spqr_hessian spqr_hessian;
spqr_hessian *spqr_hessian_new(uint64_t cols, spqr_error *err);
/* Adds n input rows X [n x cols] (row-major fp32). */
spqr_status spqr_hessian_add(spqr_hessian *h, const float *X, uint64_t n, spqr_error *err);
/* The current H (cols x cols, full symmetric, double); valid until the next add. NULL if N = 0. */
const double *spqr_hessian_get(spqr_hessian *h, uint64_t *n_rows);
void spqr_hessian_reset(spqr_hessian *h);
void spqr_hessian_free(spqr_hessian *h);

/* ---- models (LLaMA family: llama, mistral, qwen2) ---- */
typedef struct {
    char arch[32]; /* model_type */
    uint32_t hidden, intermediate, layers, heads, kv_heads, head_dim, vocab, max_pos;
    double rms_eps, rope_theta;
    int tie_embeddings, qkv_bias;
} spqr_model_config;

/* Parses a Hugging Face config.json (RoPE base as top-level rope_theta or rope_parameters). origin
 * names the file in messages. Unsupported architectures and missing fields are errors. */
spqr_status spqr_config_parse(const char *json, size_t len, const char *origin,
                              spqr_model_config *c, spqr_error *err);

/* Token ids for calibration/evaluation: a token file (raw little-endian .u32/.u16, or .npy of
 * uint16/uint32/int32/int64) or UTF-8 text tokenized with tokenizer_json (byte-level BPE or
 * sentencepiece-style BPE with byte fallback). */
spqr_status spqr_tokens_load(const char *path, const char *tokenizer_json, size_t tokenizer_len,
                             uint32_t **ids, uint64_t *n, spqr_error *err);

typedef struct {
    double perplexity, nll;
    uint64_t tokens, windows;
    double seconds;
} spqr_eval_result;
/* Perplexity of MODEL (HF directory or .spqr file) over non-overlapping windows of seqlen tokens,
 * loss on tokens 2..seqlen of each window, at most max_windows (0 = all). */
spqr_status spqr_eval_perplexity(const char *model, const uint32_t *ids, uint64_t n,
                                 uint64_t seqlen, uint64_t max_windows, spqr_eval_result *out,
                                 spqr_error *err);
/* Logits [T][vocab] of one sequence (for tests against reference logits). */
spqr_status spqr_model_logits(const char *model, const uint32_t *ids, uint64_t T, float *logits,
                              spqr_error *err);

typedef struct {
    const char *model;     /* HF directory (or .spqr is refused) */
    const char *out;       /* output .spqr */
    const uint32_t *calib; /* calibration token ids */
    uint64_t n_calib;
    uint64_t nsamples, seqlen, seed;
    spqr_quant_params q;
    uint64_t
        max_memory;     /* bytes for activations before spilling to a scratch file (0 = no limit) */
    int resume;         /* continue from OUT.resume/ */
    volatile int *stop; /* set asynchronously (Ctrl-C): checkpoint and return SPQR_E_INTERRUPTED */
    int verbose;        /* progress bar and per-block log on stderr */
    const char *calib_name; /* for metadata */
} spqr_compress_job;

typedef struct {
    double seconds;            /* wall time of the whole run */
    uint64_t quantized_params; /* parameters in SpQR tensors (bits per parameter: spqr inspect) */
    uint64_t outliers;         /* outliers written by this run */
    uint64_t peak_rss_bytes;
} spqr_compress_result;

spqr_status spqr_compress_model(const spqr_compress_job *job, spqr_compress_result *res,
                                spqr_error *err);

/* Writes a small random LLaMA checkpoint (HF layout: config.json, model.safetensors in fp16; 2
 * layers, hidden 64, GQA 4/2 heads, vocab 256) plus random token files calib.u32 and eval.u32. */
spqr_status spqr_write_tiny_llama(const char *dir, uint64_t seed, spqr_error *err);

/* ---- safetensors files (untrusted input: every offset and size checked) ---- */
typedef struct {
    const char *name;
    char dtype_str[8]; /* as written: "F32", "F16", "BF16", "I64", ... */
    spqr_dtype dtype;  /* SPQR_DTYPE_* for f32/f16/bf16, 0 for other dtypes */
    uint32_t ndim;
    uint64_t shape[8];
    uint64_t numel;
    const void *data; /* inside the mapping */
    uint64_t nbytes;
} spqr_st_tensor;

typedef struct spqr_safetensors spqr_safetensors;
spqr_safetensors *spqr_st_open(const char *path, spqr_error *err);
/* Over a caller-owned buffer (fuzzing, tests); name is used in messages. */
spqr_safetensors *spqr_st_open_memory(const void *data, size_t size, const char *name,
                                      spqr_error *err);
void spqr_st_close(spqr_safetensors *st);
size_t spqr_st_count(const spqr_safetensors *st);
const spqr_st_tensor *spqr_st_get(const spqr_safetensors *st, size_t i);
const spqr_st_tensor *spqr_st_find(const spqr_safetensors *st, const char *name);
/* Converts a f32/f16/bf16 tensor to f32 (numel values). */
spqr_status spqr_st_to_f32(const spqr_st_tensor *t, float *out, spqr_error *err);

#ifdef __cplusplus
}
#endif
#endif
