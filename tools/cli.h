/* cli.h — the spqr command-line subcommands (each in its own file). */
#ifndef SPQR_CLI_H
#define SPQR_CLI_H
#include <stddef.h>
#include <stdint.h>
/* Parses `CMD FILE [--json]`; returns 0, or 2 after printing the problem to stderr. */
int cli_file_json_args(int argc, char **argv, const char *cmd, const char **path, int *json);
/* The tokenizer of MODEL (tokenizer.json of an HF directory, or a .spqr file's metadata); NULL if
 * none. */
char *spqr_cli_tokenizer_json(const char *model, size_t *len);
/* Strict numeric option values (cli_args.c): the whole string must parse and lie in [lo, hi];
 * otherwise they print "spqr CMD: OPT 'S': expected ..." and return 2. */
int cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t lo, uint64_t hi,
                  uint64_t *out);
int cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     int allow_inf, double *out);
/* A byte count with an optional K/M/G/T suffix (powers of 1024). */
int cli_parse_size(const char *cmd, const char *opt, const char *s, uint64_t *out);
int cmd_inspect(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_compress(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* `spqr bench --gpu ...` (cmd_bench_gpu.c; argv[0] is "--gpu" or the program's name) */
int cmd_bench_gpu(int argc, char **argv);
int cmd_make_tiny(int argc, char **argv);
#endif
