/* cli.h — the spqr command-line subcommands (each in its own file). */
#ifndef SPQR_CLI_H
#define SPQR_CLI_H
#include <stddef.h>
/* Parses `CMD FILE [--json]`; returns 0, or 2 after printing the problem to stderr. */
int cli_file_json_args(int argc, char **argv, const char *cmd, const char **path, int *json);
/* The tokenizer of MODEL (tokenizer.json of an HF directory, or a .spqr file's metadata); NULL if
 * none. */
char *spqr_cli_tokenizer_json(const char *model, size_t *len);
int cmd_inspect(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_compress(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_make_tiny(int argc, char **argv);
#endif
