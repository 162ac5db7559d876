/* cmd_demo.c — `spqr demo [OUT]`: write a synthetic sample file, validate it, inspect it. */
#include "cli.h"
#include "sample.h"

#include <stdio.h>

int cmd_demo(int argc, char **argv) {
    const char *out = argc > 1 ? argv[1] : "demo.spqr";
    spqr_error err = {0};
    if (spqr_sample_write_file(out, 42, 0, &err)) {
        fprintf(stderr, "spqr demo: %s\n", err.msg);
        return 2;
    }
    printf("wrote sample file %s\n\n", out);
    char *v[] = {"validate", (char *)out, NULL};
    int rc = cmd_validate(2, v);
    if (rc) return rc;
    printf("\n");
    char *i[] = {"inspect", (char *)out, NULL};
    return cmd_inspect(2, i);
}
