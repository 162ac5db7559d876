/* testutil.h — small helpers shared by the tests (header-only). */
#ifndef SPQR_TESTUTIL_H
#define SPQR_TESTUTIL_H
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static inline uint8_t *tu_read_file(const char *path, size_t *size) {
    *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && n > 0 && fread(b, 1, (size_t)n, fp) != (size_t)n) free(b), b = NULL;
    fclose(fp);
    *size = (size_t)n;
    return b;
}

static inline int tu_write_file(const char *path, const void *data, size_t size) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t w = fwrite(data, 1, size, fp);
    fclose(fp);
    return w == size ? 0 : -1;
}

static inline int tu_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* A private temporary directory for this test process. */
static inline const char *tu_tmpdir(void) {
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/spqr-test-XXXXXX");
        if (!mkdtemp(dir)) abort();
    }
    return dir;
}

static inline uint64_t tu_get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline void tu_put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t tu_get32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline void tu_put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Recomputes the header checksum (spec §4) after a test patched header/metadata/directory. */
static inline void tu_fix_header_checksum(uint8_t *b) {
    uint64_t mo = tu_get64(b + 24), ms = tu_get64(b + 32), dof = tu_get64(b + 40),
             ds = tu_get64(b + 48);
    XXH64_state_t *s = XXH64_createState();
    XXH64_reset(s, 0);
    XXH64_update(s, b, 72);
    XXH64_update(s, b + mo, ms);
    XXH64_update(s, b + dof, ds);
    tu_put64(b + 72, XXH64_digest(s));
    XXH64_freeState(s);
}

/* Offset of the fixed part (kind byte) of the directory entry of tensor `name` (spec §5). */
static inline size_t tu_entry_fixed(const uint8_t *b, const char *name) {
    uint64_t p = tu_get64(b + 40), end = p + tu_get64(b + 48);
    while (p < end) {
        uint32_t nl = (uint32_t)(b[p] | (b[p + 1] << 8));
        size_t fixed = p + 2 + nl;
        uint32_t nsec = b[fixed + 56];
        if (nl == strlen(name) && memcmp(b + p + 2, name, nl) == 0) return fixed;
        p = fixed + 57 + 40ull * nsec;
    }
    return 0;
}
/* Offset of section descriptor k of that entry. */
static inline size_t tu_section_desc(const uint8_t *b, const char *name, int k) {
    return tu_entry_fixed(b, name) + 57 + 40 * (size_t)k;
}
#endif
