/* fuzz_safetensors.c — libFuzzer target for the safetensors header parser (untrusted checkpoints):
 * any input is rejected with an error or yields tensors whose data lies inside the input. */
#include "spqr_compress.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    spqr_error err;
    spqr_safetensors *st = spqr_st_open_memory(data, size, "fuzz", &err);
    if (!st) return 0;
    for (size_t i = 0; i < spqr_st_count(st); i++) {
        const spqr_st_tensor *t = spqr_st_get(st, i);
        const uint8_t *p = t->data;
        if (p < data || p + t->nbytes > data + size) abort();
        if (t->dtype && t->numel <= (1u << 16)) {
            float *out = malloc(t->numel * sizeof *out + 1);
            if (out && spqr_st_to_f32(t, out, &err)) abort();
            free(out);
        }
    }
    spqr_st_close(st);
    return 0;
}
