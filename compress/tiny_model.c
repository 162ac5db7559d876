/* tiny_model.c — writes a small random LLaMA checkpoint in Hugging Face layout (config.json +
 * model.safetensors in fp16) and random token files: the embedded default of the quickstart when
 * no real model is at hand, and the fixture of the pipeline tests. */
#define _POSIX_C_SOURCE 200809L
#include "spqr_compress.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static uint64_t rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float gauss(uint64_t *s) {
    double u = ((double)(rnd(s) >> 11) + 1.0) * 0x1p-53, v = (double)(rnd(s) >> 11) * 0x1p-53;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

spqr_status spqr_write_tiny_llama(const char *dir, uint64_t seed, spqr_error *err) {
    const int H = 64, I = 160, L = 2, NH = 4, KV = 2, D = 16, V = 256;
    mkdir(dir, 0755);
    char p[1100];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    if (!f) return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: cannot write", p);
    fprintf(f,
            "{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"], "
            "\"hidden_size\": %d, "
            "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
            "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, \"rms_norm_eps\": "
            "1e-05, "
            "\"rope_parameters\": {\"rope_theta\": 10000.0, \"rope_type\": \"default\"}, "
            "\"max_position_embeddings\": 256, \"tie_word_embeddings\": false}\n",
            H, I, L, NH, KV, D, V);
    fclose(f);
    /* tensors: name, rows, cols (cols 0 = 1-D) */
    struct {
        char name[96];
        int r, c;
    } t[64];
    int nt = 0;
#define T(nm, R, C)                                                                                \
    snprintf(t[nt].name, sizeof t[nt].name, "%s", nm), t[nt].r = R, t[nt].c = C, nt++
    T("model.embed_tokens.weight", V, H);
    for (int l = 0; l < L; l++) {
        char nm[96];
        const char *lin[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                             "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                             "mlp.down_proj"};
        const int rows[] = {NH * D, KV * D, KV * D, H, I, I, H},
                  cols[] = {H, H, H, NH * D, H, H, I};
        for (int k = 0; k < 7; k++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, lin[k]);
            T(nm, rows[k], cols[k]);
        }
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        T(nm, H, 0);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        T(nm, H, 0);
    }
    T("model.norm.weight", H, 0);
    T("lm_head.weight", V, H);
#undef T
    char *hdr = malloc(16384);
    size_t hl = 0;
    uint64_t off = 0;
    hl += (size_t)snprintf(hdr + hl, 16384 - hl, "{");
    for (int i = 0; i < nt; i++) {
        uint64_t n = (uint64_t)t[i].r * (uint64_t)(t[i].c ? t[i].c : 1);
        if (t[i].c)
            hl += (size_t)snprintf(hdr + hl, 16384 - hl,
                                   "%s\"%s\": {\"dtype\": \"F16\", \"shape\": [%d, %d], "
                                   "\"data_offsets\": [%llu, %llu]}",
                                   i ? ", " : "", t[i].name, t[i].r, t[i].c,
                                   (unsigned long long)off, (unsigned long long)(off + 2 * n));
        else
            hl += (size_t)snprintf(
                hdr + hl, 16384 - hl,
                "%s\"%s\": {\"dtype\": \"F16\", \"shape\": [%d], \"data_offsets\": [%llu, %llu]}",
                i ? ", " : "", t[i].name, t[i].r, (unsigned long long)off,
                (unsigned long long)(off + 2 * n));
        off += 2 * n;
    }
    hl += (size_t)snprintf(hdr + hl, 16384 - hl, "}");
    while (hl % 8) hdr[hl++] = ' ';
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    f = fopen(p, "wb");
    if (!f) {
        free(hdr);
        return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: cannot write", p);
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(hdr, 1, hl, f);
    free(hdr);
    uint64_t s = seed;
    for (int i = 0; i < nt; i++) {
        uint64_t n = (uint64_t)t[i].r * (uint64_t)(t[i].c ? t[i].c : 1);
        float scale = t[i].c ? 1.0f / sqrtf((float)t[i].c) : 0.0f;
        for (uint64_t k = 0; k < n; k++) {
            float v = t[i].c ? scale * gauss(&s) : 1.0f + 0.1f * gauss(&s);
            uint16_t h = spqr_f32_to_f16(v);
            fwrite(&h, 2, 1, f);
        }
    }
    fclose(f);
    /* token files: a repetitive random "language" so there is something to learn from */
    const char *files[] = {"calib.u32", "eval.u32"};
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[k]);
        f = fopen(p, "wb");
        if (!f) return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: cannot write", p);
        for (int i = 0; i < 40000; i++) {
            uint32_t id = (uint32_t)((rnd(&s) % 8) * 31 + (uint64_t)(i % 17)) % (uint32_t)V;
            fwrite(&id, 4, 1, f);
        }
        fclose(f);
    }
    return SPQR_OK;
}
