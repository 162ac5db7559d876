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

/* `spqr make-tiny-model DIR`: a small random LLaMA checkpoint (HF layout) with token files. */
#include "spqr_compress.h"
int cmd_make_tiny(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: spqr make-tiny-model DIR\n");
        return 2;
    }
    spqr_error err = {0};
    if (spqr_write_tiny_llama(argv[1], 1, &err)) {
        fprintf(stderr, "spqr make-tiny-model: %s\n", err.msg);
        return 1;
    }
    printf("wrote a random 2-layer LLaMA checkpoint to %s (config.json, model.safetensors, "
           "calib.u32, eval.u32)\n",
           argv[1]);
    return 0;
}
