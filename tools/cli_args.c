/* cli_args.c — strict parsing of numeric command-line values: the whole string must be a number
 * in range, otherwise the option is named in an error (never a silent 0). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t lo, uint64_t hi,
                  uint64_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = s[0] == '-' ? 0 : strtoull(s, &end, 10);
    if (s[0] == '-' || !end || end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "spqr %s: %s '%s': expected an integer from %llu to %llu\n", cmd, opt, s,
                (unsigned long long)lo, (unsigned long long)hi);
        return 2;
    }
    *out = v;
    return 0;
}

int cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     int allow_inf, double *out) {
    if (allow_inf && !strcmp(s, "inf")) {
        *out = INFINITY;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "spqr %s: %s '%s': expected a number from %g to %g%s\n", cmd, opt, s, lo,
                hi, allow_inf ? " or inf" : "");
        return 2;
    }
    *out = v;
    return 0;
}

int cli_parse_size(const char *cmd, const char *opt, const char *s, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    double unit = 1;
    if (end != s && *end) {
        unit = strchr("Kk", *end)   ? 1024.0
               : strchr("Mm", *end) ? 1048576.0
               : strchr("Gg", *end) ? 1073741824.0
               : strchr("Tt", *end) ? 1099511627776.0
                                    : 0;
        if (unit != 0) end++;
        if (*end == 'B' || *end == 'b') end++;
    }
    if (end == s || *end || errno || unit == 0 || !(v > 0) || v * unit > 1.8e19) {
        fprintf(stderr, "spqr %s: %s '%s': expected a positive size such as 512M or 8G\n", cmd, opt,
                s);
        return 2;
    }
    *out = (uint64_t)(v * unit);
    return 0;
}
