/* safetensors.c — reader for Hugging Face safetensors files, mapped read-only.
 * Layout: u64 LE header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, ...,
 * "__metadata__": {...}}, then the data buffer; offsets are relative to the buffer. The header
 * is untrusted: its length, every offset pair, dtype size × shape and overlaps are checked. */
#define _POSIX_C_SOURCE 200809L
#include "spqr_compress.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct spqr_safetensors {
    char path[512];
    const uint8_t *base;
    uint64_t size;
    int mapped;
    spqr_st_tensor *t;
    size_t n;
    json_t *root; /* owns the name strings */
};

static int dtype_info(const char *s, spqr_dtype *d) {
    static const struct {
        const char *name;
        int size;
        spqr_dtype d;
    } tab[] = {{"F32", 4, SPQR_DTYPE_F32},
               {"F16", 2, SPQR_DTYPE_F16},
               {"BF16", 2, SPQR_DTYPE_BF16},
               {"F64", 8, 0},
               {"I64", 8, 0},
               {"I32", 4, 0},
               {"I16", 2, 0},
               {"I8", 1, 0},
               {"U8", 1, 0},
               {"BOOL", 1, 0},
               {"U16", 2, 0},
               {"U32", 4, 0},
               {"U64", 8, 0},
               {"F8_E4M3", 1, 0},
               {"F8_E5M2", 1, 0}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(s, tab[i].name)) {
            *d = tab[i].d;
            return tab[i].size;
        }
    return 0;
}

typedef struct {
    uint64_t b, e;
    size_t i;
} span;
static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->b < y->b ? -1 : (x->b > y->b);
}

static spqr_safetensors *parse(spqr_safetensors *st, spqr_error *err) {
#define BAD(...)                                                                                   \
    do {                                                                                           \
        spqr_set_error(err, SPQR_E_FORMAT, 0, UINT64_MAX, __VA_ARGS__);                            \
        spqr_st_close(st);                                                                         \
        return NULL;                                                                               \
    } while (0)
    if (st->size < 8)
        BAD("%s: not a safetensors file: %llu bytes, needs an 8-byte header length", st->path,
            (unsigned long long)st->size);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | st->base[i];
    if (hl < 2 || hl > st->size - 8 || hl > (100u << 20))
        BAD("%s: header length %llu does not fit the %llu-byte file (or exceeds 100 MiB)", st->path,
            (unsigned long long)hl, (unsigned long long)st->size);
    json_error_t je;
    st->root = json_loadb((const char *)st->base + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    if (!st->root || !json_is_object(st->root))
        BAD("%s: header JSON invalid at byte %d: %s", st->path, je.position + 8,
            st->root ? "not an object" : je.text);
    uint64_t data0 = 8 + hl, dsize = st->size - data0;
    size_t cap = json_object_size(st->root);
    st->t = calloc(cap ? cap : 1, sizeof *st->t);
    span *sp = calloc(cap ? cap : 1, sizeof *sp);
    if (!st->t || !sp) {
        free(sp);
        spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
        spqr_st_close(st);
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(st->root, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        spqr_st_tensor *t = &st->t[st->n];
        json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
               *of = json_object_get(v, "data_offsets");
        if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(sh) || !json_is_array(of) ||
            json_array_size(of) != 2 || json_array_size(sh) > 8) {
            free(sp);
            BAD("%s: tensor '%s': entry needs dtype, shape (<= 8 dims) and data_offsets [begin, "
                "end]",
                st->path, key);
        }
        t->name = key;
        snprintf(t->dtype_str, sizeof t->dtype_str, "%s", json_string_value(dt));
        int es = dtype_info(json_string_value(dt), &t->dtype);
        if (!es) {
            free(sp);
            BAD("%s: tensor '%s': unknown dtype '%s'", st->path, key, json_string_value(dt));
        }
        t->ndim = (uint32_t)json_array_size(sh);
        t->numel = 1;
        for (uint32_t d = 0; d < t->ndim; d++) {
            json_t *x = json_array_get(sh, d);
            if (!json_is_integer(x) || json_integer_value(x) < 0 ||
                json_integer_value(x) > (1ll << 40)) {
                free(sp);
                BAD("%s: tensor '%s': shape[%u] is not an integer in 0..2^40", st->path, key, d);
            }
            t->shape[d] = (uint64_t)json_integer_value(x);
            if (t->shape[d] && t->numel > (1ull << 50) / t->shape[d]) {
                free(sp);
                BAD("%s: tensor '%s': element count overflows", st->path, key);
            }
            t->numel *= t->shape[d];
        }
        json_t *b = json_array_get(of, 0), *e = json_array_get(of, 1);
        if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
            json_integer_value(e) < json_integer_value(b) ||
            (uint64_t)json_integer_value(e) > dsize) {
            free(sp);
            BAD("%s: tensor '%s': data_offsets outside the %llu-byte data buffer", st->path, key,
                (unsigned long long)dsize);
        }
        uint64_t bo = (uint64_t)json_integer_value(b), eo = (uint64_t)json_integer_value(e);
        if (eo - bo != t->numel * (uint64_t)es) {
            free(sp);
            BAD("%s: tensor '%s': %llu bytes for %llu elements of %s", st->path, key,
                (unsigned long long)(eo - bo), (unsigned long long)t->numel, t->dtype_str);
        }
        t->data = st->base + data0 + bo;
        t->nbytes = eo - bo;
        sp[st->n] = (span){bo, eo, st->n};
        st->n++;
    }
    qsort(sp, st->n, sizeof *sp, cmp_span);
    for (size_t i = 1; i < st->n; i++)
        if (sp[i].b < sp[i - 1].e) {
            const char *a = st->t[sp[i].i].name, *c = st->t[sp[i - 1].i].name;
            free(sp);
            BAD("%s: tensors '%s' and '%s' overlap in the data buffer", st->path, a, c);
        }
    free(sp);
    return st;
#undef BAD
}

spqr_safetensors *spqr_st_open_memory(const void *data, size_t size, const char *name,
                                      spqr_error *err) {
    spqr_safetensors *st = calloc(1, sizeof *st);
    if (!st) return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory"), NULL;
    snprintf(st->path, sizeof st->path, "%s", name ? name : "<memory>");
    st->base = data;
    st->size = size;
    return parse(st, err);
}

spqr_safetensors *spqr_st_open(const char *path, spqr_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    spqr_safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        close(fd);
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory"), NULL;
    }
    snprintf(st->path, sizeof st->path, "%s", path);
    st->size = (uint64_t)sb.st_size;
    if (st->size) {
        void *m = mmap(NULL, (size_t)st->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            free(st);
            return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: mmap failed: %s", path,
                                  strerror(errno)),
                   NULL;
        }
        st->base = m;
        st->mapped = 1;
    }
    close(fd);
    return parse(st, err);
}

void spqr_st_close(spqr_safetensors *st) {
    if (!st) return;
    if (st->mapped) munmap((void *)st->base, (size_t)st->size);
    json_decref(st->root);
    free(st->t);
    free(st);
}

size_t spqr_st_count(const spqr_safetensors *st) {
    return st->n;
}
const spqr_st_tensor *spqr_st_get(const spqr_safetensors *st, size_t i) {
    return i < st->n ? &st->t[i] : NULL;
}
const spqr_st_tensor *spqr_st_find(const spqr_safetensors *st, const char *name) {
    for (size_t i = 0; i < st->n; i++)
        if (!strcmp(st->t[i].name, name)) return &st->t[i];
    return NULL;
}

spqr_status spqr_st_to_f32(const spqr_st_tensor *t, float *out, spqr_error *err) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case SPQR_DTYPE_F32:
        memcpy(out, p, t->numel * 4);
        break;
    case SPQR_DTYPE_F16:
        for (uint64_t i = 0; i < t->numel; i++)
            out[i] = spqr_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        break;
    case SPQR_DTYPE_BF16:
        for (uint64_t i = 0; i < t->numel; i++)
            out[i] = spqr_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        break;
    default:
        return spqr_set_error(err, SPQR_E_UNSUPPORTED, 0, UINT64_MAX,
                              "tensor '%s': dtype %s cannot be converted to f32", t->name,
                              t->dtype_str);
    }
    return SPQR_OK;
}
