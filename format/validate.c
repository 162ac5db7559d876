/* validate.c — full validation: every rule of spec §9 and every checksum, collecting defects. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static spqr_status validate(const void *data, size_t size, const char *name, spqr_validation *v) {
    struct spqr_file f;
    memset(&f, 0, sizeof f);
    snprintf(f.path, sizeof f.path, "%s", name);
    f.base = data;
    f.size = size;
    spqr_error err = {0};
    spqr_sink sink = {.v = v, .err = &err, .file = name};
    spqr_parse(&f, &sink, 1);
    spqr_file_free_contents(&f);
    if (err.code == SPQR_E_NOMEM) {
        spqr_defect_report(&sink, 0, UINT64_MAX, NULL, "out of memory while validating: %s",
                           err.msg);
    }
    return v->n_defects ? SPQR_E_FORMAT : SPQR_OK;
}

spqr_status spqr_validate_memory(const void *data, size_t size, spqr_validation *v) {
    memset(v, 0, sizeof *v);
    v->readable = 1;
    static const uint8_t nothing[1];
    return validate(size ? data : nothing, size, "<memory>", v);
}

spqr_status spqr_validate_file(const char *path, spqr_validation *v, spqr_error *err) {
    memset(v, 0, sizeof *v);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: cannot read: %s", path,
                              fd < 0 ? strerror(errno) : "not a regular file");
    }
    v->readable = 1;
    size_t size = (size_t)st.st_size;
    void *m = NULL;
    if (size) {
        m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            v->readable = 0;
            return spqr_set_error(err, SPQR_E_IO, 0, UINT64_MAX, "%s: mmap failed: %s", path,
                                  strerror(errno));
        }
    }
    close(fd);
    static const uint8_t nothing[1];
    spqr_status s = validate(size ? m : nothing, size, path, v);
    if (m) munmap(m, size);
    if (s)
        spqr_set_error(err, s, v->n_stored ? v->defects[0].rule : 0,
                       v->n_stored ? v->defects[0].offset : UINT64_MAX, "%s: %zu defect(s)", path,
                       v->n_defects);
    return s;
}
