/* errors.c — status names and the error-filling helper shared by every spqr library. */
#include "spqr_format.h"

#include <stdarg.h>
#include <stdio.h>

const char *spqr_status_name(spqr_status s) {
    switch (s) {
    case SPQR_OK:
        return "ok";
    case SPQR_E_IO:
        return "i/o error";
    case SPQR_E_FORMAT:
        return "format error";
    case SPQR_E_NOMEM:
        return "out of memory";
    case SPQR_E_ARG:
        return "invalid argument";
    case SPQR_E_NOTFOUND:
        return "not found";
    case SPQR_E_NUMERIC:
        return "numerical error";
    case SPQR_E_UNSUPPORTED:
        return "unsupported";
    case SPQR_E_CUDA:
        return "cuda error";
    case SPQR_E_INTERRUPTED:
        return "interrupted";
    }
    return "unknown error";
}

spqr_status spqr_set_error(spqr_error *err, spqr_status code, int rule, uint64_t offset,
                           const char *fmt, ...) {
    if (err) {
        err->code = code;
        err->rule = rule;
        err->offset = offset;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}
