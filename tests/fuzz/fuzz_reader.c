/* fuzz_reader.c — libFuzzer target for the .spqr reader and validator.
 * Any input must be rejected with an error or parsed into a file whose every tensor dequantizes
 * without touching memory outside the input; the validator must agree with the reader. */
#include "spqr_format.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the reader aligns nothing itself: give it an aligned copy as mmap would */
    uint8_t *buf = aligned_alloc(4096, (size + 4095) & ~(size_t)4095);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    spqr_error err;
    spqr_validation *v = malloc(sizeof *v);
    spqr_status vs = spqr_validate_memory(buf, size, v);
    spqr_file *f = spqr_file_open_memory(buf, size, "fuzz", SPQR_OPEN_VERIFY, &err);
    /* the verifying reader and the validator must agree on validity */
    if ((f != NULL) != (vs == SPQR_OK)) abort();
    if (f) {
        for (size_t i = 0; i < spqr_file_tensor_count(f); i++) {
            uint64_t n = spqr_info_numel(spqr_file_tensor_info(f, i));
            if (n > (1u << 22)) continue;
            float *out = malloc(n * sizeof *out);
            if (out && spqr_file_dequantize(f, i, out, &err)) abort();
            free(out);
            spqr_tensor_bits tb;
            spqr_file_tensor_bits(f, i, &tb);
        }
        for (size_t i = 0; i < spqr_file_meta_count(f); i++) (void)spqr_file_meta_key(f, i);
        spqr_file_close(f);
    }
    f = spqr_file_open_memory(buf, size, "fuzz", 0, &err);
    spqr_file_close(f);
    free(v);
    free(buf);
    return 0;
}
