/* input_groups.c — which tensors of a file multiply one input, by the names of Hugging Face
 * Llama-family checkpoints (Llama, Mistral, Qwen2: self_attn.{q,k,v}_proj, mlp.{gate,up}_proj), so
 * an app can upload each group stacked (spqr_gpu_upload_stacked) without knowing the names. */
#include "spqr.h"

#include <stdio.h>
#include <string.h>

size_t spqr_file_input_group(const spqr_file *f, size_t first, size_t out[SPQR_MAX_GROUP]) {
    static const char *const qkv[] = {"q_proj.weight", "k_proj.weight", "v_proj.weight"},
                             *gate_up[] = {"gate_proj.weight", "up_proj.weight"};
    if (first >= spqr_file_tensor_count(f)) return 0;
    const char *name = spqr_file_tensor_name(f, first);
    const size_t len = strlen(name);
    const char *const *members = NULL;
    size_t n = 0;
    if (len >= strlen(qkv[0]) && !strcmp(name + len - strlen(qkv[0]), qkv[0]))
        members = qkv, n = 3;
    else if (len >= strlen(gate_up[0]) && !strcmp(name + len - strlen(gate_up[0]), gate_up[0]))
        members = gate_up, n = 2;
    if (!n) return 0;
    const size_t prefix = len - strlen(members[0]);
    for (size_t k = 0; k < n; k++) {
        char want[640];
        if (snprintf(want, sizeof want, "%.*s%s", (int)prefix, name, members[k]) >=
            (int)sizeof want)
            return 0;
        const long j = spqr_file_find(f, want);
        if (j < 0 || spqr_file_tensor_info(f, (size_t)j)->kind != SPQR_KIND_SPQR) return 0;
        out[k] = (size_t)j;
    }
    return n;
}
