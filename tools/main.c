/* main.c — `spqr` command dispatcher. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} command;

static const command commands[] = {
    {"inspect", cmd_inspect,
     "inspect FILE [--json]          metadata, tensors, bits per parameter"},
    {"validate", cmd_validate,
     "validate FILE [--json]         check every rule and checksum (exit 0/1/2)"},
    {"compress", cmd_compress,
     "compress MODEL_DIR --calib FILE -o OUT.spqr [options]   (--help for options)"},
    {"eval", cmd_eval,
     "eval MODEL --text FILE [--seqlen N] [--max-windows N] [--json]   perplexity"},
    {"bench", cmd_bench,
     "bench [--quick]                CPU fused matmul vs OpenBLAS fp32\n"
     "  bench --gpu [--file M.spqr]    GPU fused matmul vs cuBLAS fp16 (--gpu --help)"},
    {"make-tiny-model", cmd_make_tiny,
     "make-tiny-model DIR            write a small random LLaMA checkpoint (pipeline demo)"},
    {"demo", cmd_demo, "demo [OUT.spqr]                write, validate and inspect a sample file"},
};

static void usage(FILE *o) {
    fprintf(o, "usage: spqr COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(o, "  %s\n", commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "spqr: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
