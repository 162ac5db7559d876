/* real_layers.c — writes OUT.spqr with layer 0's q/k/v/gate/up projections of the shared model,
 * compressed in spqr mode (paper defaults) with Hessians from real layer-0 activations: real
 * compressed tensors for the GPU correctness test and benchmarks. Usage: real_layers OUT.spqr */
#include "layers.h"

int main(int argc, char **argv) {
    if (argc != 2) return fprintf(stderr, "usage: real_layers OUT.spqr\n"), 2;
    const char *projs[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                           "mlp.gate_proj", "mlp.up_proj"};
    spqr_error err = {0};
    spqr_writer *w = spqr_writer_open(argv[1], 0, &err);
    if (!w) return fprintf(stderr, "%s\n", err.msg), 1;
    for (int i = 0; i < 5; i++) {
        test_layer L = {0};
        int rc = tl_real_layer0(&L, projs[i], 16384);
        if (rc) return fprintf(stderr, "shared model not found (%d)\n", rc), 1;
        spqr_quant_params p;
        spqr_quant_params_default(&p, SPQR_MODE_SPQR);
        spqr_quantized q;
        if (spqr_quantize(L.W, L.rows, L.cols, L.H, &p, &q, &err))
            return fprintf(stderr, "%s\n", err.msg), 1;
        char name[128];
        snprintf(name, sizeof name, "model.layers.0.%s.weight", projs[i]);
        if (spqr_writer_add_spqr(w, name, &q.info, (const void *const *)q.sec, &err))
            return fprintf(stderr, "%s\n", err.msg), 1;
        printf("%s: %llux%llu, %.3f%% outliers, %.3f bits/param, proxy loss %.5f\n", name,
               (unsigned long long)L.rows, (unsigned long long)L.cols, 100 * q.outlier_fraction,
               q.bits_per_param, q.proxy_loss);
        spqr_quantized_free(&q);
        tl_free(&L);
    }
    return spqr_writer_finish(w, &err) ? (fprintf(stderr, "%s\n", err.msg), 1) : 0;
}
