/* model.c — LLaMA-family config, weight sources (HF safetensors directories, sharded or not, and
 * .spqr files) and the staged CPU forward pass of a transformer block (OpenBLAS GEMMs).
 *
 * Block (HF LlamaDecoderLayer): x += o_proj(attn(RoPE(q_proj h), RoPE(k_proj h), v_proj h)),
 * h = RMSNorm(x)·w_in; then x += down_proj(silu(gate_proj h2) ⊙ up_proj h2), h2 =
 * RMSNorm(x)·w_post. RMSNorm(x) = x / sqrt(mean(x²) + eps). RoPE (rotate-half form): for i < d/2,
 * angle = p·θ^(-2i/d), (a, b) = (x_i, x_{i+d/2}) -> (a cos − b sin, b cos + a sin). Attention:
 * causal softmax(q kᵀ/√d) v, key/value head = query head / (heads / kv_heads) (grouped-query
 * attention). */
#define _POSIX_C_SOURCE 200809L
#include "model.h"

#include <cblas.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const spqr_linear_names[LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

/* ---------------- config ---------------- */

static int get_uint(json_t *o, const char *key, uint32_t *v) {
    json_t *x = json_object_get(o, key);
    if (!json_is_integer(x) || json_integer_value(x) <= 0 || json_integer_value(x) > (1 << 24))
        return 0;
    *v = (uint32_t)json_integer_value(x);
    return 1;
}

spqr_status spqr_config_parse(const char *json, size_t len, const char *origin,
                              spqr_model_config *c, spqr_error *err) {
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *o = json_loadb(json, len, 0, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return spqr_set_error(err, SPQR_E_FORMAT, 0, UINT64_MAX, "%s: invalid JSON at line %d: %s",
                              origin, je.line, je.text);
    }
    spqr_status st = SPQR_OK;
    const char *mt = json_string_value(json_object_get(o, "model_type"));
    if (!mt || (strcmp(mt, "llama") && strcmp(mt, "mistral") && strcmp(mt, "qwen2"))) {
        st = spqr_set_error(
            err, SPQR_E_UNSUPPORTED, 0, UINT64_MAX,
            "%s: model_type '%s' is not supported (supported: llama, mistral, qwen2)", origin,
            mt ? mt : "(missing)");
        goto out;
    }
    snprintf(c->arch, sizeof c->arch, "%s", mt);
    static const char *req[] = {"hidden_size", "intermediate_size", "num_hidden_layers",
                                "num_attention_heads", "vocab_size"};
    uint32_t *dst[] = {&c->hidden, &c->intermediate, &c->layers, &c->heads, &c->vocab};
    for (int i = 0; i < 5; i++)
        if (!get_uint(o, req[i], dst[i])) {
            st = spqr_set_error(err, SPQR_E_FORMAT, 0, UINT64_MAX,
                                "%s: '%s' missing or not a positive integer", origin, req[i]);
            goto out;
        }
    if (!get_uint(o, "num_key_value_heads", &c->kv_heads)) c->kv_heads = c->heads;
    if (!get_uint(o, "head_dim", &c->head_dim)) c->head_dim = c->hidden / c->heads;
    if (!get_uint(o, "max_position_embeddings", &c->max_pos)) c->max_pos = 2048;
    if (c->heads % c->kv_heads || c->head_dim % 2) {
        st = spqr_set_error(err, SPQR_E_FORMAT, 0, UINT64_MAX,
                            "%s: heads %u not a multiple of kv heads %u, or odd head_dim %u",
                            origin, c->heads, c->kv_heads, c->head_dim);
        goto out;
    }
    json_t *eps = json_object_get(o, "rms_norm_eps");
    c->rms_eps = json_is_number(eps) ? json_number_value(eps) : 1e-6;
    json_t *rp = json_object_get(o, "rope_parameters"), *rs = json_object_get(o, "rope_scaling");
    json_t *th = json_object_get(o, "rope_theta");
    if (!json_is_number(th) && json_is_object(rp)) th = json_object_get(rp, "rope_theta");
    c->rope_theta = json_is_number(th) ? json_number_value(th) : 10000.0;
    json_t *rt = json_is_object(rp)
                     ? json_object_get(rp, "rope_type")
                     : (json_is_object(rs) ? json_object_get(rs, "rope_type") : NULL);
    if (!rt && json_is_object(rs)) rt = json_object_get(rs, "type");
    if (json_is_string(rt) && strcmp(json_string_value(rt), "default")) {
        st = spqr_set_error(err, SPQR_E_UNSUPPORTED, 0, UINT64_MAX,
                            "%s: rope_type '%s' is not supported", origin, json_string_value(rt));
        goto out;
    }
    json_t *tie = json_object_get(o, "tie_word_embeddings");
    c->tie_embeddings = json_is_boolean(tie) ? json_is_true(tie) : !strcmp(mt, "qwen2") ? 1 : 0;
    json_t *ab = json_object_get(o, "attention_bias");
    c->qkv_bias = !strcmp(mt, "qwen2") || (json_is_boolean(ab) && json_is_true(ab));
out:
    json_decref(o);
    return st;
}

/* ---------------- weight sources ---------------- */

struct spqr_weights {
    spqr_model_config cfg;
    spqr_safetensors *shard[64];
    int n_shards;
    spqr_file *spqr;
    char *config_json, *tokenizer_json;
    size_t config_len, tokenizer_len;
    char path[512];
};

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) free(b), b = NULL;
    fclose(f);
    if (b) b[n] = 0, *len = (size_t)n;
    return b;
}

void spqr_weights_close(spqr_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_shards; i++) spqr_st_close(w->shard[i]);
    spqr_file_close(w->spqr);
    free(w->config_json), free(w->tokenizer_json);
    free(w);
}

static spqr_status open_hf(spqr_weights *w, const char *dir, spqr_error *err) {
    char p[1100];
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (!(w->config_json = read_text(p, &w->config_len)))
        return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX,
                              "%s: no config.json (not a Hugging Face model directory)", dir);
    spqr_status st = spqr_config_parse(w->config_json, w->config_len, p, &w->cfg, err);
    if (st) return st;
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    w->tokenizer_json = read_text(p, &w->tokenizer_len);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    size_t ilen;
    char *index = read_text(p, &ilen);
    if (!index) {
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        if (!(w->shard[0] = spqr_st_open(p, err))) return err->code;
        w->n_shards = 1;
        return SPQR_OK;
    }
    json_error_t je;
    json_t *o = json_loadb(index, ilen, 0, &je), *map = json_object_get(o, "weight_map");
    free(index);
    if (!json_is_object(map)) {
        json_decref(o);
        return spqr_set_error(err, SPQR_E_FORMAT, 0, UINT64_MAX, "%s: no weight_map object", p);
    }
    const char *key;
    json_t *v;
    const char *files[64];
    int nf = 0;
    json_object_foreach(map, key, v) {
        const char *fn = json_string_value(v);
        if (!fn || strchr(fn, '/')) {
            json_decref(o);
            return spqr_set_error(err, SPQR_E_FORMAT, 0, UINT64_MAX,
                                  "%s: tensor '%s' maps to an invalid file name", p, key);
        }
        int seen = 0;
        for (int i = 0; i < nf; i++) seen |= !strcmp(files[i], fn);
        if (!seen) {
            if (nf == 64) {
                json_decref(o);
                return spqr_set_error(err, SPQR_E_UNSUPPORTED, 0, UINT64_MAX,
                                      "%s: more than 64 shards", p);
            }
            files[nf++] = fn;
        }
    }
    for (int i = 0; i < nf; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        if (!(w->shard[w->n_shards] = spqr_st_open(p, err))) {
            json_decref(o);
            return err->code;
        }
        w->n_shards++;
    }
    json_decref(o);
    return SPQR_OK;
}

static spqr_status open_spqr(spqr_weights *w, const char *path, spqr_error *err) {
    if (!(w->spqr = spqr_file_open(path, 0, err))) return err->code;
    long k = spqr_file_meta_find(w->spqr, "model.config_json");
    if (k < 0)
        return spqr_set_error(err, SPQR_E_FORMAT, 0, UINT64_MAX,
                              "%s: no model.config_json metadata", path);
    size_t len;
    const char *s = spqr_file_meta_str(w->spqr, (size_t)k, &len);
    w->config_json = malloc(len + 1);
    memcpy(w->config_json, s, len);
    w->config_json[len] = 0, w->config_len = len;
    k = spqr_file_meta_find(w->spqr, "tokenizer.json");
    if (k >= 0) {
        s = spqr_file_meta_str(w->spqr, (size_t)k, &len);
        w->tokenizer_json = malloc(len + 1);
        memcpy(w->tokenizer_json, s, len);
        w->tokenizer_json[len] = 0, w->tokenizer_len = len;
    }
    return spqr_config_parse(w->config_json, w->config_len, path, &w->cfg, err);
}

spqr_weights *spqr_weights_open(const char *path, spqr_model_config *cfg, spqr_error *err) {
    spqr_weights *w = calloc(1, sizeof *w);
    if (!w) return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory"), NULL;
    snprintf(w->path, sizeof w->path, "%s", path);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: no such file or directory", path);
        free(w);
        return NULL;
    }
    spqr_status st = S_ISDIR(sb.st_mode) ? open_hf(w, path, err) : open_spqr(w, path, err);
    if (st) {
        spqr_weights_close(w);
        return NULL;
    }
    *cfg = w->cfg;
    return w;
}

static const char *alias(spqr_weights *w, const char *name) {
    if (w->cfg.tie_embeddings && !strcmp(name, "lm_head.weight"))
        return "model.embed_tokens.weight";
    return name;
}

int spqr_weights_has(spqr_weights *w, const char *name) {
    name = alias(w, name);
    if (w->spqr) return spqr_file_find(w->spqr, name) >= 0;
    for (int i = 0; i < w->n_shards; i++)
        if (spqr_st_find(w->shard[i], name)) return 1;
    return 0;
}

float *spqr_weights_get(spqr_weights *w, const char *name, uint64_t *numel, spqr_error *err) {
    const char *n2 = alias(w, name);
    if (w->spqr) {
        long k = spqr_file_find(w->spqr, n2);
        if (k < 0)
            return spqr_set_error(err, SPQR_E_NOTFOUND, 0, UINT64_MAX, "%s: tensor '%s' missing",
                                  w->path, name),
                   NULL;
        *numel = spqr_info_numel(spqr_file_tensor_info(w->spqr, (size_t)k));
        float *out = malloc(*numel * sizeof *out);
        if (!out) return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory"), NULL;
        spqr_file_dequantize(w->spqr, (size_t)k, out, err);
        return out;
    }
    for (int i = 0; i < w->n_shards; i++) {
        const spqr_st_tensor *t = spqr_st_find(w->shard[i], n2);
        if (!t) continue;
        *numel = t->numel;
        float *out = malloc(t->numel * sizeof *out + 1);
        if (!out) return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory"), NULL;
        if (spqr_st_to_f32(t, out, err)) return free(out), NULL;
        return out;
    }
    spqr_set_error(err, SPQR_E_NOTFOUND, 0, UINT64_MAX,
                   "%s: tensor '%s' missing from the checkpoint", w->path, name);
    return NULL;
}

const char *spqr_weights_config_json(spqr_weights *w, size_t *len) {
    *len = w->config_len;
    return w->config_json;
}
const char *spqr_weights_tokenizer_json(spqr_weights *w, size_t *len) {
    *len = w->tokenizer_len;
    return w->tokenizer_json;
}

/* ---------------- blocks ---------------- */

void spqr_block_free(spqr_block *b) {
    for (int i = 0; i < LIN_COUNT; i++) free(b->w[i]);
    for (int i = 0; i < 3; i++) free(b->bias[i]);
    free(b->norm_in), free(b->norm_post);
    memset(b, 0, sizeof *b);
}

static float *get_checked(spqr_weights *w, const char *name, uint64_t want, spqr_error *err) {
    uint64_t n;
    float *p = spqr_weights_get(w, name, &n, err);
    if (p && n != want) {
        spqr_set_error(err, SPQR_E_FORMAT, 0, UINT64_MAX,
                       "tensor '%s' has %llu elements, config implies %llu", name,
                       (unsigned long long)n, (unsigned long long)want);
        free(p);
        return NULL;
    }
    return p;
}

spqr_status spqr_block_load(spqr_weights *w, const spqr_model_config *c, int layer, spqr_block *b,
                            spqr_error *err) {
    memset(b, 0, sizeof *b);
    const uint64_t H = c->hidden, INTER = c->intermediate, q = (uint64_t)c->heads * c->head_dim,
                   kv = (uint64_t)c->kv_heads * c->head_dim;
    const uint64_t sizes[LIN_COUNT] = {q * H,     kv * H,    kv * H,   H * q,
                                       INTER * H, INTER * H, H * INTER};
    char name[256];
    for (int i = 0; i < LIN_COUNT; i++) {
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, spqr_linear_names[i]);
        if (!(b->w[i] = get_checked(w, name, sizes[i], err))) goto fail;
    }
    if (c->qkv_bias)
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.bias", layer, spqr_linear_names[i]);
            if (!(b->bias[i] = get_checked(w, name, i ? kv : q, err))) goto fail;
        }
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", layer);
    if (!(b->norm_in = get_checked(w, name, H, err))) goto fail;
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", layer);
    if (!(b->norm_post = get_checked(w, name, H, err))) goto fail;
    return SPQR_OK;
fail:
    spqr_block_free(b);
    return err->code;
}

/* ---------------- forward ---------------- */

void spqr_rmsnorm(const float *x, const float *w, uint64_t n, uint64_t dim, double eps,
                  float *out) {
    for (uint64_t i = 0; i < n; i++) {
        const float *r = x + i * dim;
        double ss = 0;
        for (uint64_t j = 0; j < dim; j++) ss += (double)r[j] * r[j];
        float inv = (float)(1.0 / sqrt(ss / (double)dim + eps));
        for (uint64_t j = 0; j < dim; j++) out[i * dim + j] = w[j] * (r[j] * inv);
    }
}

/* Y[n][out] = X[n][in] · Wᵀ (+ bias) */
static void linear(const float *X, uint64_t n, uint64_t in, const float *W, uint64_t out,
                   const float *bias, float *Y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out, (int)in, 1.0f, X,
                (int)in, W, (int)in, 0.0f, Y, (int)out);
    if (bias)
        for (uint64_t i = 0; i < n; i++)
            for (uint64_t j = 0; j < out; j++) Y[i * out + j] += bias[j];
}

spqr_status spqr_fwd_init(spqr_fwd *f, const spqr_model_config *c, uint64_t n_seq, uint64_t T,
                          float *x, spqr_error *err) {
    memset(f, 0, sizeof *f);
    f->c = c, f->n_seq = n_seq, f->T = T, f->x = x;
    const uint64_t N = n_seq * T, q = (uint64_t)c->heads * c->head_dim,
                   kv = (uint64_t)c->kv_heads * c->head_dim;
    f->h = malloc(N * c->hidden * sizeof(float));
    f->attn = malloc(N * q * sizeof(float));
    f->act = malloc(N * c->intermediate * sizeof(float));
    f->q = malloc(N * q * sizeof(float));
    f->k = malloc(N * kv * sizeof(float));
    f->v = malloc(N * kv * sizeof(float));
    uint64_t tmp = N * (c->intermediate > c->hidden ? c->intermediate : c->hidden);
    if (tmp < T * T) tmp = T * T;
    f->tmp = malloc(tmp * sizeof(float));
    if (!f->h || !f->attn || !f->act || !f->q || !f->k || !f->v || !f->tmp) {
        spqr_fwd_free(f);
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX,
                              "out of memory for activations of %llu tokens",
                              (unsigned long long)N);
    }
    return SPQR_OK;
}

void spqr_fwd_free(spqr_fwd *f) {
    free(f->h), free(f->attn), free(f->act), free(f->q), free(f->k), free(f->v), free(f->tmp);
    f->h = f->attn = f->act = f->q = f->k = f->v = f->tmp = NULL;
}

/* As Hugging Face computes it: inv_freq = 1 / theta^(2i/d) rounded to fp32, angle = p · inv_freq in
 * fp32, cos/sin of that fp32 angle. */
static void rope(float *x, uint64_t T, uint64_t nheads, uint64_t d, double theta) {
    for (uint64_t t = 0; t < T; t++)
        for (uint64_t i = 0; i < d / 2; i++) {
            float inv_freq =
                (float)(1.0 / pow(theta, (double)(float)(2.0 * (double)i) / (double)d));
            float ang = (float)t * inv_freq;
            float cs = (float)cos((double)ang), sn = (float)sin((double)ang);
            for (uint64_t h = 0; h < nheads; h++) {
                float *p = x + (t * nheads + h) * d;
                float a = p[i], b = p[i + d / 2];
                p[i] = a * cs - b * sn;
                p[i + d / 2] = b * cs + a * sn;
            }
        }
}

static void attention(spqr_fwd *f) {
    const spqr_model_config *c = f->c;
    const uint64_t T = f->T, d = c->head_dim, nh = c->heads, nkv = c->kv_heads, qs = nh * d,
                   ks = nkv * d;
    const float scale = (float)(1.0 / sqrt((double)d));
    for (uint64_t s = 0; s < f->n_seq; s++) {
        float *q = f->q + s * T * qs, *k = f->k + s * T * ks, *v = f->v + s * T * ks,
              *o = f->attn + s * T * qs;
        for (uint64_t h = 0; h < nh; h++) {
            uint64_t g = h / (nh / nkv);
            float *S = f->tmp; /* [T][T] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)d, scale,
                        q + h * d, (int)qs, k + g * d, (int)ks, 0.0f, S, (int)T);
            for (uint64_t i = 0; i < T; i++) {
                float *row = S + i * T, mx = row[0];
                for (uint64_t j = 1; j <= i; j++) mx = row[j] > mx ? row[j] : mx;
                double sum = 0;
                for (uint64_t j = 0; j <= i; j++) sum += (row[j] = expf(row[j] - mx));
                float inv = (float)(1.0 / sum);
                for (uint64_t j = 0; j <= i; j++) row[j] *= inv;
                for (uint64_t j = i + 1; j < T; j++) row[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)d, (int)T, 1.0f, S,
                        (int)T, v + g * d, (int)ks, 0.0f, o + h * d, (int)qs);
        }
    }
}

void spqr_fwd_stage(spqr_fwd *f, const spqr_block *b, int stage) {
    const spqr_model_config *c = f->c;
    const uint64_t N = f->n_seq * f->T, H = c->hidden, INTER = c->intermediate;
    const uint64_t q = (uint64_t)c->heads * c->head_dim, kv = (uint64_t)c->kv_heads * c->head_dim;
    switch (stage) {
    case 0:
        spqr_rmsnorm(f->x, b->norm_in, N, H, c->rms_eps, f->h);
        break;
    case 1:
        linear(f->h, N, H, b->w[LIN_Q], q, b->bias[0], f->q);
        linear(f->h, N, H, b->w[LIN_K], kv, b->bias[1], f->k);
        linear(f->h, N, H, b->w[LIN_V], kv, b->bias[2], f->v);
        for (uint64_t s = 0; s < f->n_seq; s++) {
            rope(f->q + s * f->T * q, f->T, c->heads, c->head_dim, c->rope_theta);
            rope(f->k + s * f->T * kv, f->T, c->kv_heads, c->head_dim, c->rope_theta);
        }
        attention(f);
        break;
    case 2:
        linear(f->attn, N, q, b->w[LIN_O], H, NULL, f->tmp);
        for (uint64_t i = 0; i < N * H; i++) f->x[i] += f->tmp[i];
        spqr_rmsnorm(f->x, b->norm_post, N, H, c->rms_eps, f->h);
        break;
    case 3:
        linear(f->h, N, H, b->w[LIN_GATE], INTER, NULL, f->act);
        linear(f->h, N, H, b->w[LIN_UP], INTER, NULL, f->tmp);
        for (uint64_t i = 0; i < N * INTER; i++) {
            float g = f->act[i];
            f->act[i] = g / (1.0f + expf(-g)) * f->tmp[i];
        }
        break;
    case 4:
        linear(f->act, N, INTER, b->w[LIN_DOWN], H, NULL, f->tmp);
        for (uint64_t i = 0; i < N * H; i++) f->x[i] += f->tmp[i];
        break;
    }
}

void spqr_lm_head(const spqr_model_config *c, const float *x, uint64_t T, const float *norm_w,
                  const float *lm_head, float *out) {
    float *h = malloc(T * c->hidden * sizeof *h);
    spqr_rmsnorm(x, norm_w, T, c->hidden, c->rms_eps, h);
    linear(h, T, c->hidden, lm_head, c->vocab, NULL, out);
    free(h);
}
