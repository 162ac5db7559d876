/* writer.c — streams tensors into a temporary file beside the destination and renames it into
 * place only when complete (spec §3: data sections first, then metadata, directory, header). */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf_t;

struct spqr_writer {
    char path[512], tmp[540];
    int fd;
    uint64_t pos;
    int zstd_level;
    buf_t meta, dir;
    uint32_t n_meta, n_tensors;
    char **names; /* tensor names then keys, for uniqueness checks */
    size_t n_names, cap_names;
};

static int buf_put(buf_t *b, const void *src, size_t n) {
    if (n == 0) return 0;
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap * 2 : 4096;
        while (c < b->n + n) c *= 2;
        uint8_t *q = realloc(b->p, c);
        if (!q) return -1;
        b->p = q, b->cap = c;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

static int remember(spqr_writer *w, const char *prefix, const char *s) {
    size_t need = strlen(prefix) + strlen(s) + 1;
    for (size_t i = 0; i < w->n_names; i++)
        if (strncmp(w->names[i], prefix, strlen(prefix)) == 0 &&
            strcmp(w->names[i] + strlen(prefix), s) == 0)
            return 1;
    if (w->n_names == w->cap_names) {
        size_t c = w->cap_names ? w->cap_names * 2 : 64;
        char **q = realloc(w->names, c * sizeof *q);
        if (!q) return -1;
        w->names = q, w->cap_names = c;
    }
    char *copy = malloc(need);
    if (!copy) return -1;
    snprintf(copy, need, "%s%s", prefix, s);
    w->names[w->n_names++] = copy;
    return 0;
}

static spqr_status write_all(spqr_writer *w, const void *p, size_t n, spqr_error *err) {
    const uint8_t *c = p;
    while (n) {
        ssize_t k = write(w->fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return spqr_set_error(err, SPQR_E_IO, 0, w->pos, "%s: write failed: %s", w->tmp,
                                  strerror(errno));
        c += k, n -= (size_t)k, w->pos += (uint64_t)k;
    }
    return SPQR_OK;
}

static spqr_status pad_to(spqr_writer *w, uint64_t align, spqr_error *err) {
    static const uint8_t zeros[256];
    while (w->pos % align) {
        uint64_t k = align - w->pos % align;
        spqr_status st = write_all(w, zeros, k > sizeof zeros ? sizeof zeros : k, err);
        if (st) return st;
    }
    return SPQR_OK;
}

spqr_writer *spqr_writer_open(const char *path, int zstd_level, spqr_error *err) {
    if (!path || strlen(path) >= 500) {
        spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "output path missing or too long");
        return NULL;
    }
    if (zstd_level < 0 || zstd_level > 19) {
        spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "zstd level %d not in 0..19", zstd_level);
        return NULL;
    }
    spqr_writer *w = calloc(1, sizeof *w);
    if (!w) {
        spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
        return NULL;
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.XXXXXX", path);
    w->fd = mkstemp(w->tmp);
    if (w->fd < 0) {
        spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: cannot create temporary file: %s",
                       w->tmp, strerror(errno));
        free(w);
        return NULL;
    }
    w->zstd_level = zstd_level;
    uint8_t hdr[SPQR_HEADER_SIZE] = {0};
    if (write_all(w, hdr, sizeof hdr, err)) {
        spqr_writer_abort(w);
        return NULL;
    }
    return w;
}

static spqr_status meta_key(spqr_writer *w, const char *key, uint8_t type, spqr_error *err) {
    size_t n = key ? strlen(key) : 0;
    if (n < 1 || n > SPQR_MAX_KEY)
        return spqr_set_error(err, SPQR_E_ARG, 8, UINT64_MAX,
                              "metadata key length %zu not in 1..255", n);
    for (size_t i = 0; i < n; i++)
        if (key[i] < 0x21 || key[i] > 0x7e)
            return spqr_set_error(err, SPQR_E_ARG, 8, UINT64_MAX,
                                  "metadata key '%s' has a byte outside printable ASCII", key);
    int r = remember(w, "k:", key);
    if (r > 0)
        return spqr_set_error(err, SPQR_E_ARG, 8, UINT64_MAX, "duplicate metadata key '%s'", key);
    uint8_t kl = (uint8_t)n;
    if (r < 0 || buf_put(&w->meta, &kl, 1) || buf_put(&w->meta, key, n) ||
        buf_put(&w->meta, &type, 1))
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    w->n_meta++;
    return SPQR_OK;
}

spqr_status spqr_writer_meta_str(spqr_writer *w, const char *key, const char *value, size_t len,
                                 spqr_error *err) {
    if (!spqr_utf8_valid((const uint8_t *)value, len))
        return spqr_set_error(err, SPQR_E_ARG, 8, UINT64_MAX,
                              "metadata '%s': value is not valid UTF-8", key);
    spqr_status st = meta_key(w, key, SPQR_META_STR, err);
    if (st) return st;
    uint8_t l[8];
    put_u64(l, len);
    if (buf_put(&w->meta, l, 8) || buf_put(&w->meta, value, len))
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    return SPQR_OK;
}

spqr_status spqr_writer_meta_i64(spqr_writer *w, const char *key, int64_t value, spqr_error *err) {
    spqr_status st = meta_key(w, key, SPQR_META_I64, err);
    if (st) return st;
    uint8_t l[8];
    put_u64(l, (uint64_t)value);
    return buf_put(&w->meta, l, 8) ? spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "oom") : 0;
}

spqr_status spqr_writer_meta_f64(spqr_writer *w, const char *key, double value, spqr_error *err) {
    if (!(value - value == 0.0))
        return spqr_set_error(err, SPQR_E_ARG, 8, UINT64_MAX, "metadata '%s' is not finite", key);
    spqr_status st = meta_key(w, key, SPQR_META_F64, err);
    if (st) return st;
    uint64_t u;
    memcpy(&u, &value, 8);
    uint8_t l[8];
    put_u64(l, u);
    return buf_put(&w->meta, l, 8) ? spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "oom") : 0;
}

/* Appends one section (compressed when that shrinks it) and fills its descriptor. */
static spqr_status write_section(spqr_writer *w, const void *data, uint64_t size,
                                 spqr_section_desc *d, spqr_error *err) {
    memset(d, 0, sizeof *d);
    if (size == 0) return SPQR_OK;
    const void *out = data;
    uint64_t out_size = size;
    void *z = NULL;
    if (w->zstd_level > 0) {
        size_t bound = ZSTD_compressBound(size);
        z = malloc(bound);
        if (!z) return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
        size_t zn = ZSTD_compress(z, bound, data, size, w->zstd_level);
        if (!ZSTD_isError(zn) && zn < size) {
            out = z, out_size = zn;
            d->codec = SPQR_CODEC_ZSTD;
        }
    }
    spqr_status st = pad_to(w, SPQR_DEFAULT_ALIGNMENT, err);
    if (!st) {
        d->offset = w->pos;
        d->stored_size = out_size;
        d->raw_size = size;
        d->checksum = XXH64(out, out_size, 0);
        st = write_all(w, out, out_size, err);
    }
    free(z);
    return st;
}

static spqr_status add_entry(spqr_writer *w, const char *name, const spqr_tensor_info *info,
                             const void *const sections[SPQR_SEC_COUNT], spqr_error *err) {
    size_t nl = name ? strlen(name) : 0;
    if (nl < 1 || nl > SPQR_MAX_NAME || !spqr_utf8_valid((const uint8_t *)name, nl))
        return spqr_set_error(err, SPQR_E_ARG, 9, UINT64_MAX,
                              "tensor name must be 1..1024 bytes of UTF-8");
    uint64_t sizes[SPQR_SEC_COUNT];
    spqr_status st = spqr_section_sizes(info, sizes, err);
    if (st) return st;
    /* Refuse to write data that a reader would reject (R17-R23). */
    spqr_tensor_entry te;
    memset(&te, 0, sizeof te);
    te.name = (char *)name;
    te.info = *info;
    int nsec = info->kind == SPQR_KIND_PLAIN ? 1 : SPQR_SEC_COUNT;
    for (int i = 0; i < nsec; i++) {
        te.data[i] = sections[i];
        if (sizes[i] && !sections[i])
            return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "tensor '%s': section %d missing",
                                  name, i);
    }
    spqr_sink sink = {.v = NULL, .err = err, .file = w->path};
    if (spqr_check_tensor_data(&te, &sink, 1)) {
        err->code = SPQR_E_ARG;
        return SPQR_E_ARG;
    }
    int r = remember(w, "t:", name);
    if (r)
        return r > 0 ? spqr_set_error(err, SPQR_E_ARG, 9, UINT64_MAX, "duplicate tensor name '%s'",
                                      name)
                     : spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    spqr_section_desc d[SPQR_SEC_COUNT];
    for (int i = 0; i < nsec; i++)
        if ((st = write_section(w, sections[i], sizes[i], &d[i], err))) return st;
    uint8_t e[2 + SPQR_MAX_NAME + SPQR_ENTRY_FIXED_SIZE + SPQR_SEC_COUNT * SPQR_SECTION_DESC_SIZE];
    memset(e, 0, sizeof e);
    put_u16(e, (uint16_t)nl);
    memcpy(e + 2, name, nl);
    uint8_t *p = e + 2 + nl;
    p[0] = (uint8_t)info->kind;
    p[1] = (uint8_t)info->dtype;
    p[2] = (uint8_t)info->ndim;
    p[3] = (uint8_t)info->wbits;
    p[4] = (uint8_t)info->stat_bits;
    p[5] = 0;
    put_u16(p + 6, (uint16_t)info->flags);
    put_u32(p + 8, info->beta1);
    put_u32(p + 12, info->beta2);
    for (int i = 0; i < 4; i++) put_u64(p + 16 + 8 * i, info->dims[i]);
    put_u64(p + 48, info->nnz);
    p[56] = (uint8_t)nsec;
    p += SPQR_ENTRY_FIXED_SIZE;
    for (int i = 0; i < nsec; i++, p += SPQR_SECTION_DESC_SIZE) {
        put_u64(p, d[i].offset);
        put_u64(p + 8, d[i].stored_size);
        put_u64(p + 16, d[i].raw_size);
        put_u64(p + 24, d[i].checksum);
        p[32] = (uint8_t)d[i].codec;
    }
    if (buf_put(&w->dir, e, (size_t)(p - e)))
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    w->n_tensors++;
    return SPQR_OK;
}

spqr_status spqr_writer_add_plain(spqr_writer *w, const char *name, spqr_dtype dtype, uint32_t ndim,
                                  const uint64_t *dims, const void *data, spqr_error *err) {
    spqr_tensor_info info;
    memset(&info, 0, sizeof info);
    info.kind = SPQR_KIND_PLAIN;
    info.dtype = dtype;
    info.ndim = ndim;
    for (uint32_t i = 0; i < ndim && i < 4; i++) info.dims[i] = dims[i];
    const void *secs[SPQR_SEC_COUNT] = {data};
    return add_entry(w, name, &info, secs, err);
}

spqr_status spqr_writer_add_spqr(spqr_writer *w, const char *name, const spqr_tensor_info *info,
                                 const void *const sections[SPQR_SEC_COUNT], spqr_error *err) {
    if (info->kind != SPQR_KIND_SPQR)
        return spqr_set_error(err, SPQR_E_ARG, 10, UINT64_MAX, "tensor '%s': kind must be SPQR",
                              name);
    if (info->version != 0 && info->version != SPQR_FORMAT_VERSION)
        return spqr_set_error(err, SPQR_E_ARG, 2, UINT64_MAX,
                              "tensor '%s': sections laid out for format version %u; the writer "
                              "writes version %u only",
                              name, info->version, SPQR_FORMAT_VERSION);
    return add_entry(w, name, info, sections, err);
}

static void writer_free(spqr_writer *w) {
    for (size_t i = 0; i < w->n_names; i++) free(w->names[i]);
    free(w->names);
    free(w->meta.p);
    free(w->dir.p);
    free(w);
}

void spqr_writer_abort(spqr_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    unlink(w->tmp);
    writer_free(w);
}

spqr_status spqr_writer_finish(spqr_writer *w, spqr_error *err) {
    spqr_status st;
    uint8_t cnt[4];
    put_u32(cnt, w->n_meta);
    /* metadata = u32 count followed by the entries */
    buf_t meta = {0};
    if (buf_put(&meta, cnt, 4) || buf_put(&meta, w->meta.p, w->meta.n)) {
        free(meta.p);
        spqr_writer_abort(w);
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
    }
    uint64_t meta_off, dir_off;
    if ((st = pad_to(w, 8, err))) goto fail;
    meta_off = w->pos;
    if ((st = write_all(w, meta.p, meta.n, err))) goto fail;
    dir_off = w->pos;
    if ((st = write_all(w, w->dir.p, w->dir.n, err))) goto fail;
    uint8_t h[SPQR_HEADER_SIZE] = {0};
    memcpy(h, SPQR_MAGIC, 8);
    put_u32(h + 8, SPQR_FORMAT_VERSION);
    put_u32(h + 12, SPQR_DEFAULT_ALIGNMENT);
    put_u64(h + 16, w->pos);
    put_u64(h + 24, meta_off);
    put_u64(h + 32, meta.n);
    put_u64(h + 40, dir_off);
    put_u64(h + 48, w->dir.n);
    put_u32(h + 56, w->n_tensors);
    XXH64_state_t *xs = XXH64_createState();
    XXH64_reset(xs, 0);
    XXH64_update(xs, h, 72);
    XXH64_update(xs, meta.p, meta.n);
    XXH64_update(xs, w->dir.p, w->dir.n);
    put_u64(h + 72, XXH64_digest(xs));
    XXH64_freeState(xs);
    if (pwrite(w->fd, h, sizeof h, 0) != (ssize_t)sizeof h) {
        st = spqr_set_error(err, SPQR_E_IO, 0, 0, "%s: writing header failed: %s", w->tmp,
                            strerror(errno));
        goto fail;
    }
    /* mkstemp creates 0600; a finished model file is an ordinary 0644 file */
    if (fchmod(w->fd, 0644) != 0 || fsync(w->fd) != 0 || close(w->fd) != 0) {
        w->fd = -1;
        st = spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: fsync/close failed: %s", w->tmp,
                            strerror(errno));
        goto fail;
    }
    w->fd = -1;
    if (rename(w->tmp, w->path) != 0) {
        st = spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "rename %s -> %s failed: %s", w->tmp,
                            w->path, strerror(errno));
        goto fail;
    }
    free(meta.p);
    writer_free(w);
    return SPQR_OK;
fail:
    free(meta.p);
    spqr_writer_abort(w);
    return st;
}
