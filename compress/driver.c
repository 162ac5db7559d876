/* driver.c — compress a whole model, layer by layer (SpQR / GPTQ procedure).
 *
 * Calibration: nsamples windows of seqlen tokens at reproducible random offsets (seed). For each
 * block i, in the true-sequential order of the method:
 *   h = RMSNorm(x)            -> H = 2/N hᵀh   -> quantize q, k, v   (weights replaced by their
 *   attn(q, k, v)             -> H             -> quantize o          dequantized values, so later
 *   h2 = RMSNorm(x + o(attn)) -> H             -> quantize gate, up   groups see the inputs the
 *   silu(gate h2) ⊙ up h2     -> H             -> quantize down       quantized model produces)
 *   x = block output with quantized weights: the input of block i+1.
 * State after each block lives in OUT.resume/: the block's tensors as a small .spqr shard and the
 * activations x, both written atomically; --resume continues from the last finished block. The
 * final file is always assembled from the shards, so a resumed run writes the same bytes as an
 * uninterrupted one. Activations larger than --max-memory live in a scratch file (mmap). */
#define _POSIX_C_SOURCE 200809L
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t peak_rss(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_maxrss * 1024;
}

/* Activation buffer: heap when it fits the budget, else a file-backed mapping in the state dir. */
typedef struct {
    float *p;
    uint64_t bytes;
    int mapped;
} actbuf;

static spqr_status actbuf_alloc(actbuf *a, uint64_t bytes, uint64_t budget, const char *dir,
                                spqr_error *err) {
    a->bytes = bytes, a->mapped = 0;
    if (!budget || bytes <= budget) {
        a->p = malloc(bytes);
        if (a->p) return SPQR_OK;
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/scratch.XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0)
        return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: cannot create scratch file",
                              path);
    unlink(path);
    if (ftruncate(fd, (off_t)bytes) != 0) {
        close(fd);
        return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "scratch file of %llu bytes: %s",
                              (unsigned long long)bytes, strerror(errno));
    }
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "mmap scratch: %s", strerror(errno));
    a->p = m, a->mapped = 1;
    return SPQR_OK;
}

static void actbuf_free(actbuf *a) {
    if (a->mapped)
        munmap(a->p, a->bytes);
    else
        free(a->p);
    a->p = NULL;
}

static spqr_status write_atomic(const char *path, const void *data, uint64_t n, spqr_error *err) {
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fflush(f) || fsync(fileno(f)) || fclose(f)) {
        if (f) fclose(f);
        return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: write failed", tmp);
    }
    if (rename(tmp, path))
        return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "rename %s failed", tmp);
    return SPQR_OK;
}

/* fp16 when every value fits, else fp32 (plain tensors are stored unquantized). */
static spqr_status add_plain_f16(spqr_writer *w, const char *name, uint32_t ndim,
                                 const uint64_t *dims, const float *v, spqr_error *err) {
    uint64_t n = 1;
    for (uint32_t i = 0; i < ndim; i++) n *= dims[i];
    uint16_t *h = malloc(n * 2);
    if (!h) return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    int fits = 1;
    for (uint64_t i = 0; i < n && fits; i++) fits = fabsf(v[i]) <= 65504.0f;
    for (uint64_t i = 0; i < n && fits; i++) h[i] = spqr_f32_to_f16(v[i]);
    spqr_status st = fits ? spqr_writer_add_plain(w, name, SPQR_DTYPE_F16, ndim, dims, h, err)
                          : spqr_writer_add_plain(w, name, SPQR_DTYPE_F32, ndim, dims, v, err);
    free(h);
    return st;
}

static spqr_status add_plain_from(spqr_weights *src, spqr_writer *w, const char *name,
                                  uint32_t ndim, const uint64_t *dims, spqr_error *err) {
    uint64_t n;
    float *v = spqr_weights_get(src, name, &n, err);
    if (!v) return err->code;
    spqr_status st = add_plain_f16(w, name, ndim, dims, v, err);
    free(v);
    return st;
}

static void progress(const spqr_compress_job *job, double t0, double frac, const char *what) {
    if (!job->verbose) return;
    double el = now_s() - t0, eta = frac > 0.001 ? el / frac - el : 0;
    int width = 30, fill = (int)(frac * width + 0.5);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '-';
    bar[width] = 0;
    int tty = isatty(2);
    fprintf(stderr, "%s[%s] %5.1f%%  %-36s elapsed %4.0fs  ETA %4.0fs%s", tty ? "\r" : "", bar,
            100 * frac, what, el, eta, tty ? "" : "\n");
    fflush(stderr);
}

/* Quantizes linear li of block b with Hessian H; writes it to the shard and replaces the block's
 * weight by its dequantized value. */
static spqr_status quantize_linear(const spqr_compress_job *job, spqr_block *b, int layer, int li,
                                   uint64_t rows, uint64_t cols, const double *H,
                                   spqr_writer *shard, spqr_compress_result *res, double *loss,
                                   double *outl, spqr_error *err) {
    spqr_quantized q;
    spqr_status st = spqr_quantize(b->w[li], rows, cols, H, &job->q, &q, err);
    if (st) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "layer %d %s: %.560s", layer, spqr_linear_names[li], err->msg);
        snprintf(err->msg, sizeof err->msg, "%s", msg);
        return st;
    }
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, spqr_linear_names[li]);
    st = spqr_writer_add_spqr(shard, name, &q.info, (const void *const *)q.sec, err);
    if (!st) st = spqr_quantized_dequantize(&q, b->w[li], err);
    *loss = q.proxy_loss, *outl = q.outlier_fraction;
    res->outliers += q.n_outliers;
    spqr_quantized_free(&q);
    return st;
}

static spqr_status hessian_of(spqr_hessian *h, const float *X, uint64_t n, spqr_error *err,
                              const double **H) {
    spqr_hessian_reset(h);
    spqr_status st = spqr_hessian_add(h, X, n, err);
    *H = st ? NULL : spqr_hessian_get(h, NULL);
    return st;
}

static spqr_status compress_block(const spqr_compress_job *job, spqr_weights *src,
                                  const spqr_model_config *c, int layer, spqr_fwd *f,
                                  const char *shard_path, double t0, spqr_compress_result *res,
                                  spqr_error *err) {
    spqr_block b;
    spqr_status st = spqr_block_load(src, c, layer, &b, err);
    if (st) return st;
    const uint64_t N = f->n_seq * f->T, H = c->hidden, INTER = c->intermediate;
    const uint64_t q = (uint64_t)c->heads * c->head_dim, kv = (uint64_t)c->kv_heads * c->head_dim;
    const uint64_t rows[LIN_COUNT] = {q, kv, kv, H, INTER, INTER, H},
                   cols[LIN_COUNT] = {H, H, H, q, H, H, INTER};
    spqr_writer *shard = spqr_writer_open(shard_path, 0, err);
    spqr_hessian *hh = spqr_hessian_new(H, err), *hq = spqr_hessian_new(q, err),
                 *hi = spqr_hessian_new(INTER, err);
    double loss[LIN_COUNT], outl[LIN_COUNT], tl[LIN_COUNT];
    const double *Hm;
    if (!shard || !hh || !hq || !hi) {
        st = err->code ? err->code : SPQR_E_NOMEM;
        goto done;
    }
    /* stage s leaves the inputs of the linears with stage_of == s; quantize them, then go on */
    static const int stage_of[LIN_COUNT] = {0, 0, 0, 1, 2, 2, 3};
    for (int stage = 0; stage < 5; stage++) {
        spqr_fwd_stage(f, &b, stage);
        if (stage == 4) break;
        const float *X = stage == 1 ? f->attn : stage == 3 ? f->act : f->h;
        spqr_hessian *h = stage == 1 ? hq : stage == 3 ? hi : hh;
        if ((st = hessian_of(h, X, N, err, &Hm))) goto done;
        for (int li = 0; li < LIN_COUNT; li++) {
            if (stage_of[li] != stage) continue;
            double ts = now_s();
            if ((st = quantize_linear(job, &b, layer, li, rows[li], cols[li], Hm, shard, res,
                                      &loss[li], &outl[li], err)))
                goto done;
            tl[li] = now_s() - ts;
            char what[64];
            snprintf(what, sizeof what, "block %d/%u %s", layer + 1, c->layers,
                     spqr_linear_names[li]);
            progress(job, t0, ((double)layer + (li + 1) / 7.0) / c->layers, what);
        }
    }
    /* the norms travel with the block */
    char name[256];
    uint64_t dims[1] = {H};
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", layer);
    if ((st = add_plain_f16(shard, name, 1, dims, b.norm_in, err))) goto done;
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", layer);
    if ((st = add_plain_f16(shard, name, 1, dims, b.norm_post, err))) goto done;
    if (c->qkv_bias)
        for (int i = 0; i < 3; i++) {
            uint64_t bd[1] = {i ? kv : q};
            snprintf(name, sizeof name, "model.layers.%d.%s.bias", layer, spqr_linear_names[i]);
            if ((st = add_plain_f16(shard, name, 1, bd, b.bias[i], err))) goto done;
        }
    st = spqr_writer_finish(shard, err);
    shard = NULL;
    if (!st && job->verbose) {
        if (isatty(2)) fprintf(stderr, "\n");
        fprintf(stderr, "block %2d:", layer);
        for (int li = 0; li < LIN_COUNT; li++)
            fprintf(stderr, " %s loss %.4f out %.2f%% %.1fs%s",
                    strchr(spqr_linear_names[li], '.') + 1, loss[li], 100 * outl[li], tl[li],
                    li == LIN_COUNT - 1 ? "\n" : ";");
    }
done:
    if (shard) spqr_writer_abort(shard);
    spqr_hessian_free(hh), spqr_hessian_free(hq), spqr_hessian_free(hi);
    spqr_block_free(&b);
    return st;
}

/* Identity of a run: everything that determines the output, so --resume refuses foreign state. */
static uint64_t job_key(const spqr_compress_job *j) {
    uint64_t h = 1469598103934665603ull;
    uint64_t tau, damp; /* doubles by their bits: tau may be inf */
    memcpy(&tau, &j->q.outlier_threshold, 8);
    memcpy(&damp, &j->q.percdamp, 8);
    const uint64_t v[] = {j->nsamples,
                          j->seqlen,
                          j->seed,
                          j->n_calib,
                          (uint64_t)j->q.mode,
                          j->q.wbits,
                          j->q.beta1,
                          j->q.beta2,
                          j->q.stat_bits,
                          (uint64_t)j->q.perm,
                          tau,
                          damp,
                          j->q.blocksize,
                          (uint64_t)j->q.simplified_outliers};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) h = (h ^ v[i]) * 1099511628211ull;
    for (uint64_t i = 0; i < j->n_calib; i += 997) h = (h ^ j->calib[i]) * 1099511628211ull;
    return h;
}

static spqr_status assemble(const spqr_compress_job *job, spqr_weights *src,
                            const spqr_model_config *c, const char *dir, spqr_compress_result *res,
                            spqr_error *err) {
    spqr_writer *w = spqr_writer_open(job->out, 0, err);
    if (!w) return err->code;
    spqr_status st = SPQR_OK;
    size_t len;
    const char *cj = spqr_weights_config_json(src, &len);
    st = spqr_writer_meta_str(w, "general.architecture", c->arch, strlen(c->arch), err);
    if (!st) st = spqr_writer_meta_str(w, "model.config_json", cj, len, err);
    const char *tj = spqr_weights_tokenizer_json(src, &len);
    if (!st && tj) st = spqr_writer_meta_str(w, "tokenizer.json", tj, len, err);
    if (!st) st = spqr_writer_meta_str(w, "spqr.tool_version", "spqr 0.1.0", 10, err);
    if (!st) st = spqr_writer_meta_str(w, "spqr.source", job->model, strlen(job->model), err);
    static const char *modes[] = {"rtn", "gptq", "spqr"};
    if (!st)
        st = spqr_writer_meta_str(w, "compress.mode", modes[job->q.mode],
                                  strlen(modes[job->q.mode]), err);
    if (!st) st = spqr_writer_meta_i64(w, "compress.wbits", job->q.wbits, err);
    if (!st) st = spqr_writer_meta_i64(w, "compress.groupsize", job->q.beta2, err);
    if (!st) st = spqr_writer_meta_i64(w, "compress.qq_groupsize", job->q.beta1, err);
    if (!st) st = spqr_writer_meta_i64(w, "compress.stat_bits", job->q.stat_bits, err);
    if (!st)
        st = spqr_writer_meta_f64(w, "compress.outlier_threshold",
                                  isinf(job->q.outlier_threshold) ? -1.0 : job->q.outlier_threshold,
                                  err);
    if (!st)
        st = spqr_writer_meta_str(w, "compress.perm", job->q.perm ? "act_order" : "identity",
                                  job->q.perm ? 9 : 8, err);
    if (!st) st = spqr_writer_meta_f64(w, "compress.percdamp", job->q.percdamp, err);
    if (!st) st = spqr_writer_meta_i64(w, "compress.nsamples", (int64_t)job->nsamples, err);
    if (!st) st = spqr_writer_meta_i64(w, "compress.seqlen", (int64_t)job->seqlen, err);
    if (!st) st = spqr_writer_meta_i64(w, "compress.seed", (int64_t)job->seed, err);
    if (!st && job->calib_name)
        st = spqr_writer_meta_str(w, "compress.calibration", job->calib_name,
                                  strlen(job->calib_name), err);
    uint64_t ed[2] = {c->vocab, c->hidden};
    if (!st) st = add_plain_from(src, w, "model.embed_tokens.weight", 2, ed, err);
    for (uint32_t l = 0; l < c->layers && !st; l++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/layer_%u.spqr", dir, l);
        spqr_file *sh = spqr_file_open(p, SPQR_OPEN_VERIFY, err);
        if (!sh) {
            st = err->code;
            break;
        }
        for (size_t i = 0; i < spqr_file_tensor_count(sh) && !st; i++) {
            const spqr_tensor_info *in = spqr_file_tensor_info(sh, i);
            const void *secs[SPQR_SEC_COUNT];
            for (int s = 0; s < SPQR_SEC_COUNT; s++)
                secs[s] = spqr_file_section(sh, i, (spqr_section_id)s, NULL);
            if (in->kind == SPQR_KIND_SPQR) {
                st = spqr_writer_add_spqr(w, spqr_file_tensor_name(sh, i), in, secs, err);
                res->quantized_params += in->dims[0] * in->dims[1];
            } else {
                st = spqr_writer_add_plain(w, spqr_file_tensor_name(sh, i), in->dtype, in->ndim,
                                           in->dims, secs[0], err);
            }
        }
        spqr_file_close(sh);
    }
    uint64_t nd[1] = {c->hidden};
    if (!st) st = add_plain_from(src, w, "model.norm.weight", 1, nd, err);
    if (!st && !c->tie_embeddings) st = add_plain_from(src, w, "lm_head.weight", 2, ed, err);
    if (st) {
        spqr_writer_abort(w);
        return st;
    }
    return spqr_writer_finish(w, err);
}

spqr_status spqr_compress_model(const spqr_compress_job *job, spqr_compress_result *res,
                                spqr_error *err) {
    memset(res, 0, sizeof *res);
    double t0 = now_s();
    spqr_status st = spqr_quant_params_check(&job->q, err);
    if (st) return st;
    if (!job->nsamples || job->seqlen < 2 || job->n_calib < job->seqlen)
        return spqr_set_error(
            err, SPQR_E_ARG, 0, UINT64_MAX,
            "calibration: %llu tokens cannot give windows of seqlen %llu (nsamples %llu)",
            (unsigned long long)job->n_calib, (unsigned long long)job->seqlen,
            (unsigned long long)job->nsamples);
    spqr_model_config c;
    spqr_weights *src = spqr_weights_open(job->model, &c, err);
    if (!src) return err->code;
    char dir[1100], statep[1200], xp[1200];
    snprintf(dir, sizeof dir, "%s.resume", job->out);
    snprintf(statep, sizeof statep, "%s/state.json", dir);
    snprintf(xp, sizeof xp, "%s/activations.f32", dir);
    const uint64_t key = job_key(job), n = job->nsamples, T = job->seqlen, N = n * T;
    uint32_t start = 0;
    actbuf x = {0};
    float *embed = NULL;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        st =
            spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: cannot create state directory", dir);
        goto out;
    }
    if ((st = actbuf_alloc(&x, N * c.hidden * sizeof(float), job->max_memory, dir, err))) goto out;
    if (job->resume) {
        json_error_t je;
        json_t *s = json_load_file(statep, 0, &je);
        if (!s) {
            st = spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "--resume: %s missing or unreadable",
                                statep);
            goto out;
        }
        char want[32];
        snprintf(want, sizeof want, "%016llx", (unsigned long long)key);
        const char *k = json_string_value(json_object_get(s, "job"));
        start = (uint32_t)json_integer_value(json_object_get(s, "next_layer"));
        int same = k && !strcmp(k, want);
        json_decref(s);
        if (!same) {
            st = spqr_set_error(
                err, SPQR_E_ARG, 0, UINT64_MAX,
                "--resume: %s belongs to a run with other parameters or calibration data", statep);
            goto out;
        }
        FILE *fx = fopen(xp, "rb");
        if (!fx || fread(x.p, 1, x.bytes, fx) != x.bytes) {
            if (fx) fclose(fx);
            st = spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "--resume: %s missing or short", xp);
            goto out;
        }
        fclose(fx);
        if (job->verbose) fprintf(stderr, "resuming at block %u of %u\n", start, c.layers);
    } else {
        /* calibration windows at reproducible random offsets */
        uint64_t e;
        if (!(embed = spqr_weights_get(src, "model.embed_tokens.weight", &e, err))) {
            st = err->code;
            goto out;
        }
        uint64_t rng = job->seed * 0x9e3779b97f4a7c15ull + 1;
        for (uint64_t s = 0; s < n; s++) {
            rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
            uint64_t off = (rng * 0x2545f4914f6cdd1dull) % (job->n_calib - T + 1);
            for (uint64_t t = 0; t < T; t++) {
                uint32_t id = job->calib[off + t];
                if (id >= c.vocab) {
                    st = spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                                        "calibration token %u >= vocab %u", id, c.vocab);
                    goto out;
                }
                memcpy(x.p + (s * T + t) * c.hidden, embed + (uint64_t)id * c.hidden,
                       c.hidden * sizeof(float));
            }
        }
        free(embed), embed = NULL;
    }
    spqr_fwd f;
    if ((st = spqr_fwd_init(&f, &c, n, T, x.p, err))) goto out;
    for (uint32_t l = start; l < c.layers; l++) {
        char shard[1200];
        snprintf(shard, sizeof shard, "%s/layer_%u.spqr", dir, l);
        if ((st = compress_block(job, src, &c, (int)l, &f, shard, t0, res, err))) break;
        if ((st = write_atomic(xp, x.p, x.bytes, err))) break;
        char js[128];
        int jl = snprintf(js, sizeof js, "{\"job\": \"%016llx\", \"next_layer\": %u}\n",
                          (unsigned long long)key, l + 1);
        if ((st = write_atomic(statep, js, (uint64_t)jl, err))) break;
        if (job->stop && *job->stop && l + 1 < c.layers) {
            st = spqr_set_error(
                err, SPQR_E_INTERRUPTED, 0, UINT64_MAX,
                "interrupted after block %u of %u: state saved in %s; rerun with --resume", l + 1,
                c.layers, dir);
            break;
        }
    }
    spqr_fwd_free(&f);
    if (!st) st = assemble(job, src, &c, dir, res, err);
    if (!st) { /* done: drop the state */
        for (uint32_t l = 0; l < c.layers; l++) {
            char p[1200];
            snprintf(p, sizeof p, "%s/layer_%u.spqr", dir, l);
            unlink(p);
        }
        unlink(xp), unlink(statep), rmdir(dir);
    }
out:
    free(embed);
    actbuf_free(&x);
    spqr_weights_close(src);
    res->seconds = now_s() - t0;
    res->peak_rss_bytes = peak_rss();
    if (job->verbose && isatty(2)) fprintf(stderr, "\n");
    return st;
}
