/* reader.c — memory-mapped .spqr reader: open, accessors, size accounting and dequantization. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static spqr_file *open_common(spqr_file *f, unsigned flags, spqr_error *err) {
    spqr_sink sink = {.v = NULL, .err = err, .file = f->path};
    if (spqr_parse(f, &sink, (flags & SPQR_OPEN_VERIFY) != 0)) {
        spqr_file_close(f);
        return NULL;
    }
    return f;
}

spqr_file *spqr_file_open_memory(const void *data, size_t size, const char *name, unsigned flags,
                                 spqr_error *err) {
    spqr_file *f = calloc(1, sizeof *f);
    if (!f) {
        spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
        return NULL;
    }
    snprintf(f->path, sizeof f->path, "%s", name ? name : "<memory>");
    f->base = data;
    f->size = size;
    return open_common(f, flags, err);
}

spqr_file *spqr_file_open(const char *path, unsigned flags, spqr_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: not a regular file", path);
        return NULL;
    }
    spqr_file *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
        return NULL;
    }
    snprintf(f->path, sizeof f->path, "%s", path);
    f->size = (uint64_t)st.st_size;
    if (f->size > 0) {
        void *m = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            free(f);
            spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: mmap failed: %s", path,
                           strerror(errno));
            return NULL;
        }
        f->base = m;
        f->mapped = 1;
    } else {
        static const uint8_t nothing[1];
        f->base = nothing;
    }
    close(fd);
    return open_common(f, flags, err);
}

void spqr_file_close(spqr_file *f) {
    if (!f) return;
    spqr_file_free_contents(f);
    if (f->mapped) munmap((void *)f->base, (size_t)f->size);
    free(f);
}

const char *spqr_file_path(const spqr_file *f) {
    return f->path;
}
uint64_t spqr_file_size(const spqr_file *f) {
    return f->size;
}
uint32_t spqr_file_alignment(const spqr_file *f) {
    return f->alignment;
}
uint32_t spqr_file_version(const spqr_file *f) {
    return f->version;
}
size_t spqr_file_tensor_count(const spqr_file *f) {
    return f->n_t;
}
const char *spqr_file_tensor_name(const spqr_file *f, size_t i) {
    return f->t[i].name;
}
const spqr_tensor_info *spqr_file_tensor_info(const spqr_file *f, size_t i) {
    return &f->t[i].info;
}

long spqr_file_find(const spqr_file *f, const char *name) {
    for (size_t i = 0; i < f->n_t; i++)
        if (strcmp(f->t[i].name, name) == 0) return (long)i;
    return -1;
}

const void *spqr_file_section(const spqr_file *f, size_t i, spqr_section_id s, uint64_t *size) {
    if (size) *size = f->t[i].sec[s].raw_size;
    return f->t[i].data[s];
}

void spqr_file_section_stored(const spqr_file *f, size_t i, spqr_section_id s, uint64_t *offset,
                              uint64_t *stored_size, spqr_codec *codec) {
    const spqr_section_desc *d = &f->t[i].sec[s];
    if (offset) *offset = d->offset;
    if (stored_size) *stored_size = d->stored_size;
    if (codec) *codec = (spqr_codec)d->codec;
}

size_t spqr_file_meta_count(const spqr_file *f) {
    return f->n_meta;
}
const char *spqr_file_meta_key(const spqr_file *f, size_t i) {
    return f->meta[i].key;
}
spqr_meta_type spqr_file_meta_type(const spqr_file *f, size_t i) {
    return f->meta[i].type;
}
long spqr_file_meta_find(const spqr_file *f, const char *key) {
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return (long)i;
    return -1;
}
const char *spqr_file_meta_str(const spqr_file *f, size_t i, size_t *len) {
    if (len) *len = (size_t)f->meta[i].len;
    return f->meta[i].str;
}
int64_t spqr_file_meta_i64(const spqr_file *f, size_t i) {
    return f->meta[i].i64;
}
double spqr_file_meta_f64(const spqr_file *f, size_t i) {
    return f->meta[i].f64;
}

/* Spec §8: bits are counted from raw section sizes (what a decoder holds in memory). */
void spqr_file_tensor_bits(const spqr_file *f, size_t i, spqr_tensor_bits *o) {
    const spqr_tensor_entry *t = &f->t[i];
    memset(o, 0, sizeof *o);
    o->params = spqr_info_numel(&t->info);
    if (t->info.kind == SPQR_KIND_PLAIN) {
        o->bits_codes = t->sec[0].raw_size * 8;
    } else {
        o->bits_codes = t->sec[SPQR_SEC_CODES].raw_size * 8;
        o->bits_stats = (t->sec[SPQR_SEC_SCALE].raw_size + t->sec[SPQR_SEC_ZERO].raw_size +
                         t->sec[SPQR_SEC_STAT2].raw_size) *
                        8;
        o->bits_outliers = (t->sec[SPQR_SEC_ROWPTR].raw_size + t->sec[SPQR_SEC_COLIDX].raw_size +
                            t->sec[SPQR_SEC_VALUES].raw_size) *
                           8;
        o->bits_perm = t->sec[SPQR_SEC_PERM].raw_size * 8;
    }
    o->bits_total = o->bits_codes + o->bits_stats + o->bits_outliers + o->bits_perm;
}

spqr_status spqr_file_dequantize(const spqr_file *f, size_t i, float *out, spqr_error *err) {
    if (i >= f->n_t)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "tensor index %zu out of range", i);
    spqr_dequantize_sections(&f->t[i].info, (const void *const *)f->t[i].data, out);
    return SPQR_OK;
}
