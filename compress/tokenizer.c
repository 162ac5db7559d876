/* tokenizer.c — placeholder until the BPE tokenizer lands: text input is refused with a clear
 * message; token files (.u32/.u16/.npy) work. */
#include "spqr_compress.h"

spqr_status spqr_tokenize(const char *tokenizer_json, size_t len, const char *text, size_t n, uint32_t **ids,
                          uint64_t *count, spqr_error *err) {
    (void)tokenizer_json, (void)len, (void)text, (void)n, (void)ids, (void)count;
    return spqr_set_error(err, SPQR_E_UNSUPPORTED, 0, UINT64_MAX,
                          "text tokenization is not available in this build: pass a .u32/.u16/.npy token file");
}
