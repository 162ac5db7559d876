/* parse.c — the untrusted-input parser: header, metadata, directory and section checks.
 * Every offset, size and count is checked before it is used (spec §9 lists the rules R1-R23).
 * The reader stops at the first defect; the validator collects them all. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>
#include <zstd.h>

void spqr_defect_report(spqr_sink *s, int rule, uint64_t offset, const char *tensor,
                        const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->failed = 1;
    if (s->v) {
        spqr_validation *v = s->v;
        if (v->n_stored < sizeof v->defects / sizeof v->defects[0]) {
            spqr_defect *d = &v->defects[v->n_stored++];
            d->rule = rule;
            d->offset = offset;
            snprintf(d->tensor, sizeof d->tensor, "%s", tensor ? tensor : "");
            snprintf(d->msg, sizeof d->msg, "%s", msg);
        }
        v->n_defects++;
        return;
    }
    char where[64] = "";
    if (offset != UINT64_MAX)
        snprintf(where, sizeof where, " at byte %llu", (unsigned long long)offset);
    spqr_set_error(s->err, SPQR_E_FORMAT, rule, offset, "%s%s%s%s%s: rule R%d: %s",
                   s->file ? s->file : "<memory>", where, tensor ? ", tensor '" : "",
                   tensor ? tensor : "", tensor ? "'" : "", rule, msg);
}

/* Report a defect; the reader (no collection) stops at the first one. */
#define DEFECT(s, ...)                                                                             \
    do {                                                                                           \
        spqr_defect_report((s), __VA_ARGS__);                                                      \
        if (!(s)->v) return -1;                                                                    \
    } while (0)

int spqr_utf8_valid(const uint8_t *s, uint64_t n) {
    uint64_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0) return 0;
            i++;
            continue;
        }
        int len;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0)
            len = 2, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
            len = 3, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
            len = 4, cp = c & 0x07;
        else
            return 0;
        if (i + (uint64_t)len > n) return 0;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += (uint64_t)len;
    }
    return 1;
}

static int range_ok(uint64_t off, uint64_t size, uint64_t file_size) {
    return off <= file_size && size <= file_size - off;
}

static int f16_finite(uint16_t h) {
    return (h & 0x7c00u) != 0x7c00u;
}

/* ---------------- data rules of one tensor (R17-R23) ---------------- */

static uint64_t sec_off(const spqr_tensor_entry *t, int sec, uint64_t byte) {
    if (t->sec[sec].offset == 0 && t->sec[sec].stored_size == 0) return UINT64_MAX;
    return t->sec[sec].codec == SPQR_CODEC_RAW ? t->sec[sec].offset + byte : t->sec[sec].offset;
}

/* Bits past n values in each of `rows` packed rows of b-bit values must be zero (R23). */
static int check_padding(const spqr_tensor_entry *t, int sec, uint64_t rows, uint64_t n, uint32_t b,
                         uint64_t words, spqr_sink *s) {
    const uint32_t *w = (const uint32_t *)t->data[sec];
    uint64_t used_bits = n * b;
    if (used_bits == words * 32) return 0;
    for (uint64_t r = 0; r < rows; r++) {
        const uint32_t *row = w + r * words;
        for (uint64_t wi = used_bits / 32; wi < words; wi++) {
            uint32_t v;
            memcpy(&v, &row[wi], 4);
            uint64_t first = wi * 32;
            uint32_t mask = first >= used_bits ? 0xffffffffu : ~((1u << (used_bits - first)) - 1u);
            if (v & mask)
                DEFECT(s, 23, sec_off(t, sec, (r * words + wi) * 4), t->name,
                       "row %llu: padding bits after value %llu of section %d are not zero",
                       (unsigned long long)r, (unsigned long long)n, sec);
        }
    }
    return 0;
}

static int check_f16_finite(const spqr_tensor_entry *t, int sec, uint64_t count, int rule,
                            const char *what, spqr_sink *s) {
    const uint8_t *p = t->data[sec];
    for (uint64_t i = 0; i < count; i++)
        if (!f16_finite(get_u16(p + 2 * i)))
            DEFECT(s, rule, sec_off(t, sec, 2 * i), t->name, "%s %llu is not finite", what,
                   (unsigned long long)i);
    return 0;
}

int spqr_check_tensor_data(const spqr_tensor_entry *t, spqr_sink *s, int full) {
    const spqr_tensor_info *in = &t->info;
    int before = s->failed;
    if (in->kind == SPQR_KIND_PLAIN) {
        if (!full) return 0;
        uint64_t n = spqr_info_numel(in);
        const uint8_t *p = t->data[0];
        for (uint64_t i = 0; i < n; i++) {
            int bad;
            if (in->dtype == SPQR_DTYPE_F32)
                bad = (get_u32(p + 4 * i) & 0x7f800000u) == 0x7f800000u;
            else if (in->dtype == SPQR_DTYPE_F16)
                bad = !f16_finite(get_u16(p + 2 * i));
            else
                bad = (get_u16(p + 2 * i) & 0x7f80u) == 0x7f80u;
            if (bad) {
                DEFECT(s, 21, sec_off(t, 0, i * (in->dtype == SPQR_DTYPE_F32 ? 4 : 2)), t->name,
                       "element %llu is not finite", (unsigned long long)i);
                break;
            }
        }
        return s->failed != before;
    }
    uint64_t rows = in->dims[0], cols = in->dims[1], nnz = in->nnz;
    /* R17: CSR row pointers */
    const uint8_t *rp = t->data[SPQR_SEC_ROWPTR];
    int csr_ok = 1;
    if (get_u32(rp) != 0) {
        csr_ok = 0;
        DEFECT(s, 17, sec_off(t, SPQR_SEC_ROWPTR, 0), t->name, "row_ptr[0] = %u, must be 0",
               get_u32(rp));
    }
    for (uint64_t r = 0; r < rows && csr_ok; r++)
        if (get_u32(rp + 4 * (r + 1)) < get_u32(rp + 4 * r)) {
            csr_ok = 0;
            DEFECT(s, 17, sec_off(t, SPQR_SEC_ROWPTR, 4 * (r + 1)), t->name,
                   "row_ptr decreases at row %llu (%u < %u)", (unsigned long long)r,
                   get_u32(rp + 4 * (r + 1)), get_u32(rp + 4 * r));
        }
    if (csr_ok && get_u32(rp + 4 * rows) != nnz) {
        csr_ok = 0;
        DEFECT(s, 17, sec_off(t, SPQR_SEC_ROWPTR, 4 * rows), t->name,
               "row_ptr[rows] = %u, must equal nnz = %llu", get_u32(rp + 4 * rows),
               (unsigned long long)nnz);
    }
    /* R18: column indices in range and strictly increasing within a row */
    if (csr_ok) {
        const uint8_t *ci = t->data[SPQR_SEC_COLIDX];
        int wide = cols > 65536;
        for (uint64_t r = 0; r < rows; r++) {
            uint64_t prev = 0;
            for (uint64_t k = get_u32(rp + 4 * r); k < get_u32(rp + 4 * (r + 1)); k++) {
                uint64_t c = wide ? get_u32(ci + 4 * k) : get_u16(ci + 2 * k);
                if (c >= cols || (k > get_u32(rp + 4 * r) && c <= prev)) {
                    DEFECT(s, 18, sec_off(t, SPQR_SEC_COLIDX, k * (wide ? 4 : 2)), t->name,
                           "outlier %llu of row %llu: column %llu %s", (unsigned long long)k,
                           (unsigned long long)r, (unsigned long long)c,
                           c >= cols ? "out of range" : "not increasing");
                    r = rows; /* one report per tensor */
                    break;
                }
                prev = c;
            }
        }
    }
    /* R20: permutation */
    if (in->flags & SPQR_FLAG_PERM) {
        uint8_t *seen = calloc((size_t)cols, 1);
        if (!seen) {
            spqr_set_error(s->err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory");
            s->failed = 1;
            return -1;
        }
        const uint8_t *pp = t->data[SPQR_SEC_PERM];
        for (uint64_t j = 0; j < cols; j++) {
            uint32_t v = get_u32(pp + 4 * j);
            if (v >= cols || seen[v]) {
                spqr_defect_report(s, 20, sec_off(t, SPQR_SEC_PERM, 4 * j), t->name,
                                   "perm[%llu] = %u is %s", (unsigned long long)j, v,
                                   v >= cols ? "out of range" : "a repeat");
                break;
            }
            seen[v] = 1;
        }
        free(seen);
        if (s->failed && !s->v) return -1;
    }
    if (!full) return s->failed != before;
    /* R19: outlier values finite */
    if (check_f16_finite(t, SPQR_SEC_VALUES, nnz, 19, "outlier value", s)) return -1;
    /* R22: fp16 statistics finite */
    uint64_t groups = (cols + in->beta2 - 1) / in->beta2;
    if (in->stat_bits == 16) {
        if (check_f16_finite(t, SPQR_SEC_SCALE, rows * groups, 22, "scale", s)) return -1;
        if (check_f16_finite(t, SPQR_SEC_ZERO, rows * groups, 22, "zero", s)) return -1;
    } else {
        uint64_t blocks = (rows + in->beta1 - 1) / in->beta1;
        if (check_f16_finite(t, SPQR_SEC_STAT2, blocks * groups * 4, 22, "second-order statistic",
                             s))
            return -1;
        const uint64_t sw = spqr_stat_row_words(in, groups);
        if (check_padding(t, SPQR_SEC_SCALE, rows, groups, in->stat_bits, sw, s)) return -1;
        if (check_padding(t, SPQR_SEC_ZERO, rows, groups, in->stat_bits, sw, s)) return -1;
    }
    /* R23: code padding */
    if (check_padding(t, SPQR_SEC_CODES, rows, cols, in->wbits,
                      spqr_packed_row_words(cols, in->wbits), s))
        return -1;
    return s->failed != before;
}

/* ---------------- header, metadata, directory ---------------- */

static int parse_meta(struct spqr_file *f, spqr_sink *s) {
    const uint8_t *b = f->base + f->meta_offset;
    uint64_t n = f->meta_size, off = f->meta_offset;
    if (n < 4)
        DEFECT(s, 8, off, NULL, "metadata block is %llu bytes, needs at least 4",
               (unsigned long long)n);
    if (n < 4) return -1;
    uint32_t count = get_u32(b);
    if (count > (n - 4) / 11) {
        DEFECT(s, 8, off, NULL, "metadata count %u cannot fit in %llu bytes", count,
               (unsigned long long)n);
        return -1;
    }
    f->meta = calloc(count ? count : 1, sizeof *f->meta);
    if (!f->meta)
        return spqr_set_error(s->err, SPQR_E_NOMEM, 0, UINT64_MAX, "oom"), s->failed = 1, -1;
    uint64_t p = 4;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t at = off + p;
        if (p + 1 > n) DEFECT(s, 8, at, NULL, "metadata entry %u truncated", i);
        if (p + 1 > n) return -1;
        uint32_t kl = b[p];
        if (kl < 1 || p + 1 + kl + 1 > n) {
            DEFECT(s, 8, at, NULL, "metadata entry %u: key length %u invalid or truncated", i, kl);
            return -1;
        }
        const uint8_t *key = b + p + 1;
        for (uint32_t k = 0; k < kl; k++)
            if (key[k] < 0x21 || key[k] > 0x7e) {
                DEFECT(s, 8, at + 1 + k, NULL, "metadata key %u has byte 0x%02x outside 0x21..0x7e",
                       i, key[k]);
                break;
            }
        spqr_meta_entry *m = &f->meta[i];
        m->key = malloc(kl + 1);
        if (!m->key)
            return spqr_set_error(s->err, SPQR_E_NOMEM, 0, UINT64_MAX, "oom"), s->failed = 1, -1;
        memcpy(m->key, key, kl);
        m->key[kl] = 0;
        f->n_meta = i + 1;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(f->meta[j].key, m->key) == 0)
                DEFECT(s, 8, at, NULL, "duplicate metadata key '%s'", m->key);
        p += 1 + kl;
        uint8_t type = b[p++];
        if (type == SPQR_META_STR) {
            if (p + 8 > n)
                DEFECT(s, 8, off + p, NULL, "metadata '%s': string length truncated", m->key);
            if (p + 8 > n) return -1;
            uint64_t len = get_u64(b + p);
            p += 8;
            if (len > n - p) {
                DEFECT(s, 8, off + p - 8, NULL,
                       "metadata '%s': string of %llu bytes overruns the block", m->key,
                       (unsigned long long)len);
                return -1;
            }
            if (!spqr_utf8_valid(b + p, len))
                DEFECT(s, 8, off + p, NULL, "metadata '%s': string is not valid UTF-8 (or has NUL)",
                       m->key);
            m->type = SPQR_META_STR, m->str = (const char *)(b + p), m->len = len;
            p += len;
        } else if (type == SPQR_META_I64 || type == SPQR_META_F64) {
            if (p + 8 > n) DEFECT(s, 8, off + p, NULL, "metadata '%s': value truncated", m->key);
            if (p + 8 > n) return -1;
            uint64_t u = get_u64(b + p);
            m->type = (spqr_meta_type)type;
            m->i64 = (int64_t)u;
            memcpy(&m->f64, &u, 8);
            if (type == SPQR_META_F64 && !(m->f64 - m->f64 == 0.0))
                DEFECT(s, 8, off + p, NULL, "metadata '%s': f64 value is not finite", m->key);
            p += 8;
        } else {
            DEFECT(s, 8, off + p - 1, NULL, "metadata '%s': unknown value type %u", m->key, type);
            return -1;
        }
    }
    if (p != n)
        DEFECT(s, 8, off + p, NULL, "metadata block has %llu trailing bytes",
               (unsigned long long)(n - p));
    return 0;
}

typedef struct {
    uint64_t start, end;
    const char *what;
    const char *tensor;
} range_t;

static int cmp_range(const void *a, const void *b) {
    const range_t *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Parses one directory entry at dir offset p; returns bytes consumed or 0 on fatal error. */
static uint64_t parse_entry(struct spqr_file *f, spqr_tensor_entry *t, uint64_t p, spqr_sink *s,
                            int *usable) {
    const uint8_t *b = f->base + f->dir_offset;
    uint64_t n = f->dir_size, at = f->dir_offset + p;
    *usable = 0;
    t->entry_offset = at;
    if (p + 2 > n) return spqr_defect_report(s, 9, at, NULL, "directory entry truncated"), 0;
    uint32_t nl = get_u16(b + p);
    if (nl < 1 || nl > SPQR_MAX_NAME || p + 2 + nl + SPQR_ENTRY_FIXED_SIZE > n)
        return spqr_defect_report(s, 9, at, NULL,
                                  "tensor name length %u invalid or entry truncated", nl),
               0;
    t->name = malloc(nl + 1);
    if (!t->name)
        return spqr_set_error(s->err, SPQR_E_NOMEM, 0, UINT64_MAX, "oom"), s->failed = 1, 0;
    memcpy(t->name, b + p + 2, nl);
    t->name[nl] = 0;
    int ok = 1;
    if (!spqr_utf8_valid(b + p + 2, nl)) {
        spqr_defect_report(s, 9, at + 2, NULL, "tensor name is not valid UTF-8 (or has NUL)");
        if (!s->v) return 0;
        snprintf(t->name, nl + 1, "%s", "<invalid name>");
    }
    const uint8_t *e = b + p + 2 + nl;
    uint64_t eoff = at + 2 + nl;
    spqr_tensor_info *in = &t->info;
    in->kind = (spqr_kind)e[0];
    in->dtype = (spqr_dtype)e[1];
    in->ndim = e[2];
    in->wbits = e[3];
    in->stat_bits = e[4];
    in->flags = get_u16(e + 6);
    in->beta1 = get_u32(e + 8);
    in->beta2 = get_u32(e + 12);
    in->version = f->version;
    for (int i = 0; i < 4; i++) in->dims[i] = get_u64(e + 16 + 8 * i);
    in->nnz = get_u64(e + 48);
    uint32_t nsec = e[56];
    uint64_t used = 2 + nl + SPQR_ENTRY_FIXED_SIZE + (uint64_t)nsec * SPQR_SECTION_DESC_SIZE;
    if (p + used > n)
        return spqr_defect_report(s, 9, eoff + 56, t->name,
                                  "entry's %u section descriptors overrun the directory", nsec),
               0;
    if (e[5] != 0) {
        spqr_defect_report(s, 10, eoff + 5, t->name, "reserved byte is %u, must be 0", e[5]);
        if (!s->v) return 0;
        ok = 0;
    }
    spqr_error ierr;
    uint64_t sizes[SPQR_SEC_COUNT];
    if (spqr_section_sizes(in, sizes, &ierr)) {
        spqr_defect_report(s, ierr.rule, eoff, t->name, "%s", ierr.msg);
        return s->v ? used : 0;
    }
    uint32_t want = in->kind == SPQR_KIND_PLAIN ? 1 : SPQR_SEC_COUNT;
    if (nsec != want) {
        spqr_defect_report(s, 12, eoff + 56, t->name, "section count %u, must be %u", nsec, want);
        return s->v ? used : 0;
    }
    const uint8_t *d = e + SPQR_ENTRY_FIXED_SIZE;
    for (uint32_t i = 0; i < nsec; i++, d += SPQR_SECTION_DESC_SIZE) {
        spqr_section_desc *sd = &t->sec[i];
        uint64_t doff = eoff + SPQR_ENTRY_FIXED_SIZE + (uint64_t)i * SPQR_SECTION_DESC_SIZE;
        sd->offset = get_u64(d);
        sd->stored_size = get_u64(d + 8);
        sd->raw_size = get_u64(d + 16);
        sd->checksum = get_u64(d + 24);
        sd->codec = d[32];
        int reserved_zero = 1;
        for (int k = 33; k < 40; k++) reserved_zero &= d[k] == 0;
        const char *bad = NULL;
        int rule = 12;
        if (!reserved_zero)
            bad = "reserved descriptor bytes are not zero";
        else if (sd->codec > SPQR_CODEC_ZSTD)
            bad = "unknown codec";
        else if (sd->raw_size != sizes[i])
            bad = "raw size differs from the size the shape implies";
        else if (sizes[i] == 0 && (sd->offset || sd->stored_size || sd->checksum || sd->codec))
            bad = "empty section must have offset, size, checksum and codec 0";
        else if (sd->codec == SPQR_CODEC_RAW && sd->stored_size != sd->raw_size)
            bad = "raw section's stored size differs from its raw size";
        else if (sd->codec == SPQR_CODEC_ZSTD &&
                 (sd->stored_size == 0 || sd->raw_size / 32768 > sd->stored_size))
            bad = "zstd section's sizes are impossible (raw > 32768 x stored)";
        else if (sizes[i] && (sd->offset < SPQR_HEADER_SIZE || sd->offset % f->alignment))
            rule = 13, bad = "offset is not a multiple of the alignment (or inside the header)";
        else if (sizes[i] && !range_ok(sd->offset, sd->stored_size, f->size))
            rule = 13, bad = "section extends past the end of the file";
        if (bad) {
            spqr_defect_report(
                s, rule, doff, t->name,
                "section %u (offset %llu, stored %llu, raw %llu, expected raw %llu): %s", i,
                (unsigned long long)sd->offset, (unsigned long long)sd->stored_size,
                (unsigned long long)sd->raw_size, (unsigned long long)sizes[i], bad);
            if (!s->v) return 0;
            ok = 0;
        }
    }
    *usable = ok;
    return used;
}

static int decode_sections(spqr_tensor_entry *t, const uint8_t *base, spqr_sink *s) {
    for (int i = 0; i < SPQR_SEC_COUNT; i++) {
        spqr_section_desc *sd = &t->sec[i];
        if (sd->raw_size == 0) {
            static const uint8_t empty[8];
            t->data[i] = empty;
            continue;
        }
        const uint8_t *src = base + sd->offset;
        if (sd->codec == SPQR_CODEC_RAW) {
            t->data[i] = src;
            continue;
        }
        unsigned long long fsz = ZSTD_getFrameContentSize(src, sd->stored_size);
        size_t whole = ZSTD_findFrameCompressedSize(src, sd->stored_size);
        if (fsz != sd->raw_size || ZSTD_isError(whole) || whole != sd->stored_size) {
            DEFECT(s, 16, sd->offset, t->name, "section %d is not one zstd frame of %llu bytes", i,
                   (unsigned long long)sd->raw_size);
            return -1;
        }
        uint8_t *dst = malloc(sd->raw_size);
        if (!dst) {
            spqr_set_error(s->err, SPQR_E_NOMEM, 0, sd->offset, "out of memory decompressing %s",
                           t->name);
            s->failed = 1;
            return -1;
        }
        size_t got = ZSTD_decompress(dst, sd->raw_size, src, sd->stored_size);
        if (ZSTD_isError(got) || got != sd->raw_size) {
            free(dst);
            DEFECT(s, 16, sd->offset, t->name, "section %d fails to decompress: %s", i,
                   ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short output");
            return -1;
        }
        t->owned[i] = dst;
        t->data[i] = dst;
    }
    return 0;
}

int spqr_parse(struct spqr_file *f, spqr_sink *s, int full) {
    const uint8_t *h = f->base;
    if (f->size < SPQR_HEADER_SIZE || memcmp(h, SPQR_MAGIC, 8) != 0) {
        spqr_defect_report(s, 1, 0, NULL,
                           f->size < SPQR_HEADER_SIZE ? "file is shorter than the 80-byte header"
                                                      : "bad magic (not a .spqr file)");
        return -1;
    }
    uint32_t version = get_u32(h + 8);
    if (version < SPQR_FORMAT_VERSION_MIN || version > SPQR_FORMAT_VERSION) {
        spqr_defect_report(s, 2, 8, NULL, "format version %u, this reader supports %u to %u",
                           version, SPQR_FORMAT_VERSION_MIN, SPQR_FORMAT_VERSION);
        return -1;
    }
    f->version = version;
    f->alignment = get_u32(h + 12);
    if (f->alignment < 64 || f->alignment > 65536 || (f->alignment & (f->alignment - 1))) {
        spqr_defect_report(s, 3, 12, NULL, "alignment %u is not a power of two in 64..65536",
                           f->alignment);
        return -1;
    }
    uint64_t fsize = get_u64(h + 16);
    if (fsize != f->size) {
        spqr_defect_report(s, 4, 16, NULL,
                           "header says %llu bytes, file has %llu (truncated or extended)",
                           (unsigned long long)fsize, (unsigned long long)f->size);
        return -1;
    }
    for (int i = 56 + 4; i < 72; i++)
        if (h[i]) DEFECT(s, 5, (uint64_t)i, NULL, "reserved header byte %d is not zero", i);
    f->meta_offset = get_u64(h + 24);
    f->meta_size = get_u64(h + 32);
    f->dir_offset = get_u64(h + 40);
    f->dir_size = get_u64(h + 48);
    uint32_t count = get_u32(h + 56);
    if (f->meta_offset < SPQR_HEADER_SIZE || !range_ok(f->meta_offset, f->meta_size, f->size) ||
        f->dir_offset < SPQR_HEADER_SIZE || !range_ok(f->dir_offset, f->dir_size, f->size) ||
        (f->meta_offset < f->dir_offset + f->dir_size &&
         f->dir_offset < f->meta_offset + f->meta_size)) {
        spqr_defect_report(
            s, 6, 24, NULL,
            "metadata [%llu,+%llu) / directory [%llu,+%llu) out of bounds or overlapping",
            (unsigned long long)f->meta_offset, (unsigned long long)f->meta_size,
            (unsigned long long)f->dir_offset, (unsigned long long)f->dir_size);
        return -1;
    }
    XXH64_state_t *xs = XXH64_createState();
    if (!xs) return spqr_set_error(s->err, SPQR_E_NOMEM, 0, UINT64_MAX, "oom"), s->failed = 1, -1;
    XXH64_reset(xs, 0);
    XXH64_update(xs, h, 72);
    XXH64_update(xs, f->base + f->meta_offset, f->meta_size);
    XXH64_update(xs, f->base + f->dir_offset, f->dir_size);
    uint64_t sum = XXH64_digest(xs);
    XXH64_freeState(xs);
    if (sum != get_u64(h + 72))
        DEFECT(s, 7, 72, NULL,
               "header checksum %016llx, computed %016llx (header, metadata or directory corrupt)",
               (unsigned long long)get_u64(h + 72), (unsigned long long)sum);
    if (parse_meta(f, s) && !s->v) return -1;
    /* directory */
    uint64_t min_entry = 2 + 1 + SPQR_ENTRY_FIXED_SIZE + SPQR_SECTION_DESC_SIZE;
    if (count > f->dir_size / min_entry) {
        spqr_defect_report(s, 9, 56, NULL, "tensor count %u cannot fit in a %llu-byte directory",
                           count, (unsigned long long)f->dir_size);
        return -1;
    }
    f->t = calloc(count ? count : 1, sizeof *f->t);
    int *usable = calloc(count ? count : 1, sizeof *usable);
    range_t *rg = calloc(3 + (size_t)count * SPQR_SEC_COUNT, sizeof *rg);
    if (!f->t || !usable || !rg) {
        free(usable), free(rg);
        return spqr_set_error(s->err, SPQR_E_NOMEM, 0, UINT64_MAX, "oom"), s->failed = 1, -1;
    }
    int rc = 0;
    uint64_t p = 0;
    size_t nr = 0;
    rg[nr++] = (range_t){0, SPQR_HEADER_SIZE, "header", NULL};
    rg[nr++] = (range_t){f->meta_offset, f->meta_offset + f->meta_size, "metadata", NULL};
    rg[nr++] = (range_t){f->dir_offset, f->dir_offset + f->dir_size, "directory", NULL};
    for (uint32_t i = 0; i < count; i++) {
        uint64_t used = parse_entry(f, &f->t[i], p, s, &usable[i]);
        f->n_t = i + 1;
        if (!used) {
            rc = -1;
            goto out;
        }
        p += used;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(f->t[j].name, f->t[i].name) == 0) {
                spqr_defect_report(s, 9, f->t[i].entry_offset, f->t[i].name,
                                   "duplicate tensor name");
                if (!s->v) {
                    rc = -1;
                    goto out;
                }
            }
        if (usable[i])
            for (int k = 0; k < SPQR_SEC_COUNT; k++)
                if (f->t[i].sec[k].stored_size)
                    rg[nr++] = (range_t){f->t[i].sec[k].offset,
                                         f->t[i].sec[k].offset + f->t[i].sec[k].stored_size,
                                         "section", f->t[i].name};
    }
    if (p != f->dir_size) {
        spqr_defect_report(s, 9, f->dir_offset + p, NULL, "directory has %llu trailing bytes",
                           (unsigned long long)(f->dir_size - p));
        if (!s->v) {
            rc = -1;
            goto out;
        }
    }
    qsort(rg, nr, sizeof *rg, cmp_range);
    for (size_t i = 1; i < nr; i++)
        if (rg[i].start < rg[i - 1].end) {
            spqr_defect_report(s, 14, rg[i].start, rg[i].tensor ? rg[i].tensor : rg[i - 1].tensor,
                               "%s overlaps the %s ending at %llu", rg[i].what, rg[i - 1].what,
                               (unsigned long long)rg[i - 1].end);
            if (!s->v) {
                rc = -1;
                goto out;
            }
            /* overlapping data is still bounded; keep checking */
        }
    for (uint32_t i = 0; i < count; i++) {
        spqr_tensor_entry *t = &f->t[i];
        if (!usable[i]) continue;
        if (full)
            for (int k = 0; k < SPQR_SEC_COUNT; k++) {
                spqr_section_desc *sd = &t->sec[k];
                if (!sd->stored_size) continue;
                uint64_t got = XXH64(f->base + sd->offset, sd->stored_size, 0);
                if (got != sd->checksum) {
                    spqr_defect_report(s, 15, sd->offset, t->name,
                                       "section %d checksum %016llx, computed %016llx", k,
                                       (unsigned long long)sd->checksum, (unsigned long long)got);
                    if (!s->v) {
                        rc = -1;
                        goto out;
                    }
                }
            }
        if (decode_sections(t, f->base, s)) {
            if (!s->v) {
                rc = -1;
                goto out;
            }
            usable[i] = 0;
            continue;
        }
        if (spqr_check_tensor_data(t, s, full) && !s->v) {
            rc = -1;
            goto out;
        }
    }
out:
    free(usable);
    free(rg);
    return rc ? rc : (s->failed && !s->v ? -1 : 0);
}

void spqr_file_free_contents(struct spqr_file *f) {
    for (size_t i = 0; i < f->n_meta; i++) free(f->meta[i].key);
    free(f->meta);
    for (size_t i = 0; i < f->n_t; i++) {
        free(f->t[i].name);
        for (int k = 0; k < SPQR_SEC_COUNT; k++) free(f->t[i].owned[k]);
    }
    free(f->t);
    f->meta = NULL, f->t = NULL, f->n_meta = f->n_t = 0;
}
