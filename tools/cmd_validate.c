/* cmd_validate.c — `spqr validate FILE [--json]`: exit 0 valid, 1 invalid, 2 cannot read. */
#include "cli.h"
#include "spqr_format.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_validate(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    if (cli_file_json_args(argc, argv, "validate", &path, &json)) return 2;
    spqr_validation *v = malloc(sizeof *v);
    if (!v) return 2;
    spqr_error err = {0};
    spqr_status st = spqr_validate_file(path, v, &err);
    int rc = st == SPQR_OK ? 0 : (st == SPQR_E_FORMAT ? 1 : 2);
    if (json) {
        json_t *o = json_object(), *arr = json_array();
        json_object_set_new(o, "file", json_string(path));
        json_object_set_new(o, "valid", json_boolean(rc == 0));
        json_object_set_new(o, "readable", json_boolean(rc != 2));
        if (rc == 2) json_object_set_new(o, "error", json_string(err.msg));
        json_object_set_new(o, "defect_count", json_integer((json_int_t)v->n_defects));
        for (size_t i = 0; i < v->n_stored; i++) {
            const spqr_defect *d = &v->defects[i];
            json_t *e = json_object();
            json_object_set_new(e, "rule", json_sprintf("R%d", d->rule));
            json_object_set_new(e, "offset",
                                d->offset == UINT64_MAX ? json_null()
                                                        : json_integer((json_int_t)d->offset));
            json_object_set_new(e, "tensor", d->tensor[0] ? json_string(d->tensor) : json_null());
            json_object_set_new(e, "message", json_string(d->msg));
            json_array_append_new(arr, e);
        }
        json_object_set_new(o, "defects", arr);
        char *s = json_dumps(o, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(o);
    } else if (rc == 2) {
        fprintf(stderr, "spqr validate: %s\n", err.msg);
    } else if (rc == 0) {
        printf("%s: valid (every rule R1-R23 holds, every checksum matches)\n", path);
    } else {
        printf("%s: INVALID, %zu defect(s)\n", path, v->n_defects);
        for (size_t i = 0; i < v->n_stored; i++) {
            const spqr_defect *d = &v->defects[i];
            printf("  R%-2d", d->rule);
            if (d->offset != UINT64_MAX)
                printf(" byte %-10llu", (unsigned long long)d->offset);
            else
                printf(" %-15s", "");
            if (d->tensor[0]) printf(" tensor '%s':", d->tensor);
            printf(" %s\n", d->msg);
        }
        if (v->n_defects > v->n_stored) printf("  ... and %zu more\n", v->n_defects - v->n_stored);
    }
    free(v);
    return rc;
}

int cli_file_json_args(int argc, char **argv, const char *cmd, const char **path, int *json) {
    *path = NULL, *json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            *json = 1;
        else if (!*path)
            *path = argv[i];
        else {
            fprintf(stderr, "spqr %s: unexpected argument '%s'\n", cmd, argv[i]);
            return 2;
        }
    }
    if (!*path) {
        fprintf(stderr, "usage: spqr %s FILE [--json]\n", cmd);
        return 2;
    }
    return 0;
}
