/* tokens.c — token ids from token files (raw little-endian .u32/.u16, NumPy .npy) or from text
 * through the model's tokenizer (tokenizer.c). */
#include "spqr_compress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

spqr_status spqr_tokenize(const char *tokenizer_json, size_t len, const char *text, size_t n,
                          uint32_t **ids, uint64_t *count, spqr_error *err);

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static spqr_status npy_tokens(const char *path, const uint8_t *b, size_t n, uint32_t **ids,
                              uint64_t *count, spqr_error *err) {
    if (n < 10 || memcmp(b, "\x93NUMPY", 6))
        return spqr_set_error(err, SPQR_E_FORMAT, 0, 0, "%s: not a .npy file (bad magic)", path);
    size_t hl =
        b[6] == 1
            ? (size_t)(b[8] | (b[9] << 8))
            : (n >= 12 ? (size_t)(b[8] | (b[9] << 8) | (b[10] << 16) | ((size_t)b[11] << 24)) : 0);
    size_t off = (b[6] == 1 ? 10 : 12) + hl;
    if (!hl || off > n)
        return spqr_set_error(err, SPQR_E_FORMAT, 0, 8, "%s: .npy header length invalid", path);
    char hdr[512] = {0};
    memcpy(hdr, b + (b[6] == 1 ? 10 : 12), hl < 511 ? hl : 511);
    if (strstr(hdr, "'fortran_order': True"))
        return spqr_set_error(err, SPQR_E_UNSUPPORTED, 0, 8,
                              "%s: Fortran-order arrays are not supported", path);
    int size = strstr(hdr, "<u2")                         ? 2
               : strstr(hdr, "<u4") || strstr(hdr, "<i4") ? 4
               : strstr(hdr, "<i8")                       ? 8
                                                          : 0;
    if (!size)
        return spqr_set_error(err, SPQR_E_UNSUPPORTED, 0, 8,
                              "%s: dtype must be <u2, <u4, <i4 or <i8 (header: %s)", path, hdr);
    uint64_t k = (n - off) / (uint64_t)size;
    *ids = malloc(k * 4 + 4);
    if (!*ids) return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    for (uint64_t i = 0; i < k; i++) {
        const uint8_t *p = b + off + i * (uint64_t)size;
        uint64_t v = 0;
        for (int j = size - 1; j >= 0; j--) v = (v << 8) | p[j];
        if (v >= (1ull << 31)) {
            free(*ids);
            return spqr_set_error(err, SPQR_E_FORMAT, 0, off + i * (uint64_t)size,
                                  "%s: token %llu is negative or too large", path,
                                  (unsigned long long)i);
        }
        (*ids)[i] = (uint32_t)v;
    }
    *count = k;
    return SPQR_OK;
}

spqr_status spqr_tokens_load(const char *path, const char *tok_json, size_t tok_len, uint32_t **ids,
                             uint64_t *count, spqr_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: cannot open", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(b);
        return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: cannot read (empty?)", path);
    }
    fclose(f);
    b[n] = 0;
    spqr_status st;
    if (ends_with(path, ".npy")) {
        st = npy_tokens(path, b, (size_t)n, ids, count, err);
    } else if (ends_with(path, ".u32") || ends_with(path, ".u16")) {
        int size = ends_with(path, ".u32") ? 4 : 2;
        if (n % size) {
            free(b);
            return spqr_set_error(err, SPQR_E_FORMAT, 0, (uint64_t)n,
                                  "%s: length %ld is not a multiple of %d", path, n, size);
        }
        *count = (uint64_t)n / (uint64_t)size;
        *ids = malloc(*count * 4 + 4);
        for (uint64_t i = 0; *ids && i < *count; i++)
            (*ids)[i] = size == 4
                            ? (uint32_t)(b[4 * i] | (b[4 * i + 1] << 8) | (b[4 * i + 2] << 16) |
                                         ((uint32_t)b[4 * i + 3] << 24))
                            : (uint32_t)(b[2 * i] | (b[2 * i + 1] << 8));
        st = *ids ? SPQR_OK : spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    } else {
        if (!tok_json) {
            free(b);
            return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                                  "%s: a text file needs the model's tokenizer.json (or pass a "
                                  ".u32/.u16/.npy token file)",
                                  path);
        }
        /* Text is read as Python reads text files (universal newlines: "\r\n" and a lone "\r"
         * become "\n"), which is what Hugging Face evaluation pipelines tokenize. */
        size_t m = 0;
        for (long i = 0; i < n; i++) {
            if (b[i] == '\r') {
                b[m++] = '\n';
                if (i + 1 < n && b[i + 1] == '\n') i++;
            } else {
                b[m++] = b[i];
            }
        }
        st = spqr_tokenize(tok_json, tok_len, (const char *)b, m, ids, count, err);
    }
    free(b);
    return st;
}
