/* cmd_compress.c — `spqr compress MODEL --calib FILE -o OUT.spqr [options]`. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "spqr_compress.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ctrl-C: the driver checkpoints after the current block and stops (a second Ctrl-C kills). */
static volatile int stop_requested;
static void on_sigint(int sig) {
    (void)sig;
    stop_requested = 1;
    signal(SIGINT, SIG_DFL);
}

static void usage(void) {
    fprintf(
        stderr,
        "usage: spqr compress MODEL_DIR --calib FILE -o OUT.spqr [options]\n"
        "  --calib FILE             calibration text (tokenized with the model's tokenizer) or "
        ".u32/.u16/.npy tokens\n"
        "  --mode rtn|gptq|spqr     (spqr)\n"
        "  --wbits N                weight bits 2..8 (3)\n"
        "  --groupsize N            beta2, columns per group (16)\n"
        "  --qq-groupsize N         beta1, rows per second-order block (16)\n"
        "  --stat-bits N            statistic bits 1..8, or 16 = fp16 (3 for spqr, 16 otherwise)\n"
        "  --outlier-threshold T    tau (0.2); inf disables outliers\n"
        "  --perm act_order|identity (act_order; identity for rtn)\n"
        "  --percdamp X             (1.0 for spqr, 0.01 for gptq)\n"
        "  --simplified-outliers    skip the leave-one-out outlier pre-selection\n"
        "  --nsamples N             calibration windows (128)\n"
        "  --seqlen N               window length (the model's context, at most 2048)\n"
        "  --seed N                 window sampling seed (0)\n"
        "  --max-memory SIZE        activations above SIZE (e.g. 8G) go to a scratch file\n"
        "  --resume                 continue an interrupted run from OUT.spqr.resume/\n"
        "  -q, --quiet              no progress output\n");
}

int cmd_compress(int argc, char **argv) {
    spqr_compress_job job = {0};
    const char *calib = NULL, *mode = "spqr";
    const char *opt_w = NULL, *opt_g = NULL, *opt_qq = NULL, *opt_s = NULL, *opt_t = NULL,
               *opt_p = NULL, *opt_d = NULL;
    job.nsamples = 128, job.seed = 0, job.verbose = 1;
    const char *opt_ns = NULL, *opt_sl = NULL, *opt_sd = NULL, *opt_mm = NULL;
    int simplified = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name, dst)                                                                             \
    if (!strcmp(a, name)) {                                                                        \
        if (!v) {                                                                                  \
            fprintf(stderr, "spqr compress: %s needs a value\n", name);                            \
            return 2;                                                                              \
        }                                                                                          \
        dst = v, i++;                                                                              \
        continue;                                                                                  \
    } else                                                                                         \
        (void)0
        OPT("--calib", calib);
        OPT("-o", job.out);
        OPT("--mode", mode);
        OPT("--wbits", opt_w);
        OPT("--groupsize", opt_g);
        OPT("--qq-groupsize", opt_qq);
        OPT("--stat-bits", opt_s);
        OPT("--outlier-threshold", opt_t);
        OPT("--perm", opt_p);
        OPT("--percdamp", opt_d);
        OPT("--nsamples", opt_ns);
        OPT("--seqlen", opt_sl);
        OPT("--seed", opt_sd);
        OPT("--max-memory", opt_mm);
        if (!strcmp(a, "--resume")) {
            job.resume = 1;
            continue;
        }
        if (!strcmp(a, "--simplified-outliers")) {
            simplified = 1;
            continue;
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            job.verbose = 0;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        }
        if (a[0] == '-') {
            fprintf(stderr, "spqr compress: unknown option '%s'\n", a);
            usage();
            return 2;
        }
        if (job.model) {
            fprintf(stderr, "spqr compress: unexpected argument '%s'\n", a);
            return 2;
        }
        job.model = a;
    }
#undef OPT
    if (!job.model || !calib || !job.out) {
        usage();
        return 2;
    }
    spqr_mode m = !strcmp(mode, "rtn")    ? SPQR_MODE_RTN
                  : !strcmp(mode, "gptq") ? SPQR_MODE_GPTQ
                  : !strcmp(mode, "spqr") ? SPQR_MODE_SPQR
                                          : (spqr_mode)-1;
    if ((int)m < 0) {
        fprintf(stderr, "spqr compress: --mode '%s': expected rtn, gptq or spqr\n", mode);
        return 2;
    }
    spqr_quant_params_default(&job.q, m);
    uint64_t u;
    double d;
    /* ranges here are syntax only; spqr_quant_params_check enforces the method's limits */
    if (opt_w && cli_parse_u64("compress", "--wbits", opt_w, 1, 16, &u)) return 2;
    if (opt_w) job.q.wbits = (uint32_t)u;
    if (opt_g && cli_parse_u64("compress", "--groupsize", opt_g, 1, 1u << 30, &u)) return 2;
    if (opt_g) job.q.beta2 = (uint32_t)u;
    if (opt_qq && cli_parse_u64("compress", "--qq-groupsize", opt_qq, 1, 1u << 30, &u)) return 2;
    if (opt_qq) job.q.beta1 = (uint32_t)u;
    if (opt_s && cli_parse_u64("compress", "--stat-bits", opt_s, 1, 16, &u)) return 2;
    if (opt_s) job.q.stat_bits = (uint32_t)u;
    if (opt_t && cli_parse_double("compress", "--outlier-threshold", opt_t, 0, 1e30, 1, &d))
        return 2;
    if (opt_t) job.q.outlier_threshold = d;
    if (opt_p) {
        if (strcmp(opt_p, "act_order") && strcmp(opt_p, "identity")) {
            fprintf(stderr, "spqr compress: --perm '%s': expected act_order or identity\n", opt_p);
            return 2;
        }
        job.q.perm = strcmp(opt_p, "act_order") ? SPQR_PERM_IDENTITY : SPQR_PERM_ACT_ORDER;
    }
    if (opt_d && cli_parse_double("compress", "--percdamp", opt_d, 0, 1e6, 0, &d)) return 2;
    if (opt_d) job.q.percdamp = d;
    if (opt_ns && cli_parse_u64("compress", "--nsamples", opt_ns, 1, 1u << 30, &job.nsamples))
        return 2;
    if (opt_sl && cli_parse_u64("compress", "--seqlen", opt_sl, 2, 1u << 24, &job.seqlen)) return 2;
    if (opt_sd && cli_parse_u64("compress", "--seed", opt_sd, 0, UINT64_MAX, &job.seed)) return 2;
    if (opt_mm && cli_parse_size("compress", "--max-memory", opt_mm, &job.max_memory)) return 2;
    job.q.simplified_outliers = simplified;
    job.q.compute_loss = 1;
    spqr_error err = {0};
    if (spqr_quant_params_check(&job.q, &err)) {
        fprintf(stderr, "spqr compress: %s\n", err.msg);
        return 2;
    }
    /* tokenizer and context from the model directory */
    char p[1100];
    FILE *f;
    size_t tl = 0;
    char *tj = spqr_cli_tokenizer_json(job.model, &tl);
    uint32_t *ids = NULL;
    uint64_t n = 0;
    if (spqr_tokens_load(calib, tj, tl, &ids, &n, &err)) {
        fprintf(stderr, "spqr compress: %s\n", err.msg);
        free(tj);
        return 2;
    }
    free(tj);
    if (!job.seqlen) {
        snprintf(p, sizeof p, "%s/config.json", job.model);
        spqr_model_config c;
        char *cj = NULL;
        f = fopen(p, "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            long cl = ftell(f);
            fseek(f, 0, SEEK_SET);
            cj = malloc((size_t)cl + 1);
            if (fread(cj, 1, (size_t)cl, f) == (size_t)cl &&
                !spqr_config_parse(cj, (size_t)cl, p, &c, &err))
                job.seqlen = c.max_pos < 2048 ? c.max_pos : 2048;
            fclose(f);
            free(cj);
        }
        if (!job.seqlen) job.seqlen = 2048;
    }
    job.calib = ids, job.n_calib = n, job.calib_name = calib;
    job.stop = &stop_requested;
    signal(SIGINT, on_sigint);
    if (job.verbose)
        fprintf(stderr,
                "spqr compress: %s -> %s: mode %s, w%u, beta1 %u, beta2 %u, s%u, tau %g, %s, "
                "percdamp %g; "
                "%llu x %llu calibration tokens from %s (%llu available)\n",
                job.model, job.out, mode, job.q.wbits, job.q.beta1, job.q.beta2, job.q.stat_bits,
                job.q.outlier_threshold, job.q.perm ? "act_order" : "identity", job.q.percdamp,
                (unsigned long long)job.nsamples, (unsigned long long)job.seqlen, calib,
                (unsigned long long)n);
    spqr_compress_result r;
    spqr_status st = spqr_compress_model(&job, &r, &err);
    free(ids);
    if (st) {
        fprintf(stderr, "spqr compress: %s\n", err.msg);
        return st == SPQR_E_INTERRUPTED ? 130 : 1;
    }
    spqr_file *out = spqr_file_open(job.out, 0, &err);
    if (!out) {
        fprintf(stderr, "spqr compress: reopening %s: %s\n", job.out, err.msg);
        return 1;
    }
    uint64_t qbits = 0, qparams = 0, bits = 0, params = 0;
    for (size_t i = 0; i < spqr_file_tensor_count(out); i++) {
        spqr_tensor_bits tb;
        spqr_file_tensor_bits(out, i, &tb);
        bits += tb.bits_total, params += tb.params;
        if (spqr_file_tensor_info(out, i)->kind == SPQR_KIND_SPQR)
            qbits += tb.bits_total, qparams += tb.params;
    }
    printf(
        "wrote %s: %llu bytes, %.4f bits/param on quantized linears (%llu params), %.4f overall, "
        "compression ratio vs fp16 %.2fx, %.1f s, peak RSS %.0f MiB\n",
        job.out, (unsigned long long)spqr_file_size(out), (double)qbits / (double)qparams,
        (unsigned long long)qparams, (double)bits / (double)params,
        2.0 * (double)params / (double)spqr_file_size(out), r.seconds,
        (double)r.peak_rss_bytes / (1 << 20));
    spqr_file_close(out);
    return 0;
}
