/* model_plan.c — which device tensors a model upload makes of a file's SpQR tensors: one per tensor
 * in file order, or, when asked, one per group of linears of one input (spqr_file_input_group:
 * q/k/v, gate/up) that spqr_tensor_stack_check accepts, placed where the group's first member
 * (in file order) stands. A group that does not stack (say, compressed with a Hessian per linear,
 * so its permutations differ) stays one tensor per member. Host code; gpu_model.c uploads the plan.
 */
#include "gpu_internal.h"

#include <stdlib.h>
#include <string.h>

spqr_status spqr_model_plan(const spqr_file *f, int stack, spqr_model_entry **out, size_t *count,
                            spqr_error *err) {
    *out = NULL, *count = 0;
    const size_t n = spqr_file_tensor_count(f);
    spqr_model_entry *entries = calloc(n ? n : 1, sizeof *entries);
    size_t *group_of = malloc((n ? n : 1) * sizeof *group_of); /* head of i's stacked group */
    if (!entries || !group_of) {
        free(entries), free(group_of);
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "%s: out of memory",
                              spqr_file_path(f));
    }
    for (size_t i = 0; i < n; i++) group_of[i] = SIZE_MAX;
    for (size_t i = 0; stack && i < n; i++) {
        size_t g[SPQR_MAX_GROUP];
        const size_t ng = spqr_file_input_group(f, i, g);
        if (ng < 2) continue;
        int taken = 0; /* a tensor in two groups (a file with odd names) stacks in the first */
        for (size_t k = 0; k < ng; k++) taken |= group_of[g[k]] != SIZE_MAX;
        spqr_error e = {0};
        const spqr_status st = taken ? SPQR_E_ARG : spqr_tensor_stack_check(f, g, ng, &e);
        if (st == SPQR_E_ARG) continue; /* does not stack: its members go one by one */
        if (st) {
            free(entries), free(group_of);
            return spqr_set_error(err, st, e.rule, e.offset, "%s", e.msg);
        }
        for (size_t k = 0; k < ng; k++) group_of[g[k]] = i;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (spqr_file_tensor_info(f, i)->kind != SPQR_KIND_SPQR) continue;
        const size_t head = group_of[i];
        if (head == SIZE_MAX) {
            entries[m].n = 1, entries[m++].member[0] = i;
        } else if (head != SIZE_MAX - 1) { /* the group's entry stands at its first member */
            entries[m].n = spqr_file_input_group(f, head, entries[m].member);
            m++;
            for (size_t j = i; j < n; j++) /* its members are placed: mark them done */
                if (group_of[j] == head) group_of[j] = SIZE_MAX - 1;
        }
    }
    free(group_of);
    *out = entries, *count = m;
    return SPQR_OK;
}
