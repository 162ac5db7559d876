/* internal.h — private structures of the format library (not installed). */
#ifndef SPQR_FORMAT_INTERNAL_H
#define SPQR_FORMAT_INTERNAL_H

#include "spqr_format.h"

#include <string.h>

#define SPQR_MAGIC "SPQR\r\n\x1a\n"
#define SPQR_SECTION_DESC_SIZE 40u
#define SPQR_ENTRY_FIXED_SIZE 57u

static inline void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}
static inline void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t get_u16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t get_u64(const uint8_t *p) {
    return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32);
}

typedef struct {
    uint64_t offset, stored_size, raw_size, checksum;
    uint32_t codec;
} spqr_section_desc;

typedef struct {
    char *name;
    spqr_tensor_info info;
    spqr_section_desc sec[SPQR_SEC_COUNT];
    uint64_t entry_offset;               /* file offset of this directory entry */
    const uint8_t *data[SPQR_SEC_COUNT]; /* decoded bytes (mapping or owned) */
    uint8_t *owned[SPQR_SEC_COUNT];      /* decompressed copies to free */
} spqr_tensor_entry;

typedef struct {
    char *key;
    spqr_meta_type type;
    const char *str;
    uint64_t len;
    int64_t i64;
    double f64;
} spqr_meta_entry;

struct spqr_file {
    char path[512];
    const uint8_t *base;
    uint64_t size;
    int mapped;
    uint32_t alignment;
    uint32_t version; /* format version of the file (1 or 2) */
    uint64_t meta_offset, meta_size, dir_offset, dir_size;
    spqr_meta_entry *meta;
    size_t n_meta;
    spqr_tensor_entry *t;
    size_t n_t;
};

/* Defect sink: the reader stops at the first defect (err filled), the validator collects all. */
typedef struct {
    spqr_validation *v; /* NULL: stop at first defect */
    spqr_error *err;
    const char *file;
    int failed;
} spqr_sink;

void spqr_defect_report(spqr_sink *s, int rule, uint64_t offset, const char *tensor,
                        const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* Parses header, metadata and directory, checks R1-R14 and R16-R18, R20 and (with full) all data
 * rules and checksums. Returns 0 if the structure is usable (it may still have data defects
 * collected in the sink when full != 0). */
int spqr_parse(struct spqr_file *f, spqr_sink *sink, int full);
void spqr_file_free_contents(struct spqr_file *f);
int spqr_utf8_valid(const uint8_t *s, uint64_t n);
/* Data rules R17-R23 of one tensor whose sections are in t->data (R17, R18, R20 always; the rest
 * only when full). Returns 0 when no defect was reported. */
int spqr_check_tensor_data(const spqr_tensor_entry *t, spqr_sink *s, int full);

#endif
