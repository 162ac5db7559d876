/* gpu_model.c — a whole model on the GPU: the device tensors of spqr_model_plan (every SpQR tensor
 * of a file, or with SPQR_GPU_MODEL_STACK_INPUTS the groups of one input stacked), uploaded with
 * spqr_gpu_upload or spqr_gpu_upload_stacked and kept in plan order; every linear is found by name
 * through a sorted index that says which tensor holds it and at which output rows. The tensors
 * share one set of per-call scratch. Host code only: in a build without CUDA the upload fails as
 * spqr_gpu_upload does.
 */
#include "gpu_internal.h"
#include "spqr.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;    /* the model's copy */
    size_t index;        /* the model tensor that holds it */
    uint64_t row0, rows; /* its output rows within that tensor's */
} name_entry;

struct spqr_gpu_model {
    size_t count, linears;     /* device tensors; linears in them */
    spqr_gpu_tensor **tensors; /* plan order */
    size_t *first;             /* tensor i's linears: by_linear[first[i] .. first[i + 1]) */
    name_entry *by_linear;     /* plan order, members in stacking order; names owned */
    name_entry *by_name;       /* the same, sorted by name (strcmp) */
    spqr_gpu_scratch *scratch; /* the tensors' one set of per-call scratch */
};

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const name_entry *)a)->name, ((const name_entry *)b)->name);
}

void spqr_gpu_model_free(spqr_gpu_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->count; i++) spqr_gpu_free(m->tensors[i]);
    for (size_t i = 0; m->by_linear && i < m->linears; i++) free((char *)m->by_linear[i].name);
    spqr_gpu_scratch_free(m->scratch); /* after the tensors that use it */
    free(m->tensors), free(m->first), free(m->by_linear), free(m->by_name), free(m);
}

/* Uploads plan entry e as the model's next tensor, and its linears' names. */
static spqr_status upload_entry(spqr_gpu_model *m, const spqr_file *f, const spqr_model_entry *e,
                                spqr_error *err) {
    spqr_gpu_tensor *t = NULL;
    spqr_error e2 = {0};
    spqr_status st = e->n == 1 ? spqr_gpu_upload(f, e->member[0], &t, &e2)
                               : spqr_gpu_upload_stacked(f, e->member, e->n, &t, &e2);
    const char *head = spqr_file_tensor_name(f, e->member[0]);
    if (st)
        return spqr_set_error(err, st, e2.rule, e2.offset, "%s: tensor '%s'%s: %s",
                              spqr_file_path(f), head, e->n > 1 ? " (stacked)" : "", e2.msg);
    m->tensors[m->count] = t;
    uint64_t row0 = 0;
    for (size_t k = 0; k < e->n; k++) {
        const char *name = spqr_file_tensor_name(f, e->member[k]);
        const size_t len = strlen(name) + 1;
        char *copy = malloc(len);
        if (!copy) { /* the tensor is the model's now: freed with it */
            m->count++;
            return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "%s: out of memory",
                                  spqr_file_path(f));
        }
        memcpy(copy, name, len);
        const uint64_t rows = spqr_file_tensor_info(f, e->member[k])->dims[0];
        m->by_linear[m->linears++] = (name_entry){copy, m->count, row0, rows};
        row0 += rows;
    }
    m->first[++m->count] = m->linears;
    return SPQR_OK;
}

spqr_status spqr_gpu_model_upload_opts(const spqr_file *f, unsigned opts, spqr_gpu_model **out,
                                       spqr_error *err) {
    if (!out) return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "null output pointer");
    *out = NULL;
    if (!f) return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "null file");
    if (opts & ~SPQR_GPU_MODEL_STACK_INPUTS)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "unknown model upload options 0x%x",
                              opts);
    spqr_status st = spqr_gpu_available(err);
    if (st) return st;
    spqr_model_entry *plan;
    size_t entries;
    st = spqr_model_plan(f, (opts & SPQR_GPU_MODEL_STACK_INPUTS) != 0, &plan, &entries, err);
    if (st) return st;
    size_t linears = 0;
    for (size_t i = 0; i < entries; i++) linears += plan[i].n;
    spqr_gpu_model *m = calloc(1, sizeof *m);
    if (m) {
        m->tensors = calloc(entries ? entries : 1, sizeof *m->tensors);
        m->first = calloc(entries + 1, sizeof *m->first);
        m->by_linear = calloc(linears ? linears : 1, sizeof *m->by_linear);
        m->by_name = calloc(linears ? linears : 1, sizeof *m->by_name);
    }
    if (!m || !m->tensors || !m->first || !m->by_linear || !m->by_name) {
        free(plan), spqr_gpu_model_free(m);
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "%s: out of memory",
                              spqr_file_path(f));
    }
    for (size_t i = 0; i < entries && !st; i++) st = upload_entry(m, f, &plan[i], err);
    free(plan);
    if (st) {
        spqr_gpu_model_free(m); /* everything uploaded so far goes back */
        return st;
    }
    /* a model's calls are ordered (spqr.h), so its tensors share one scratch */
    spqr_error e = {0};
    st = spqr_gpu_share_scratch(m->tensors, m->count, &m->scratch, &e);
    if (st) {
        spqr_gpu_model_free(m);
        return spqr_set_error(err, st, e.rule, e.offset, "%s: %s", spqr_file_path(f), e.msg);
    }
    memcpy(m->by_name, m->by_linear, m->linears * sizeof *m->by_name);
    qsort(m->by_name, m->linears, sizeof *m->by_name, cmp_entry);
    *out = m;
    return SPQR_OK;
}

spqr_status spqr_gpu_model_upload(const spqr_file *f, spqr_gpu_model **out, spqr_error *err) {
    return spqr_gpu_model_upload_opts(f, 0, out, err);
}

size_t spqr_gpu_model_count(const spqr_gpu_model *m) {
    return m ? m->count : 0;
}

uint64_t spqr_gpu_model_device_bytes(const spqr_gpu_model *m) {
    uint64_t n = m ? spqr_gpu_scratch_bytes(m->scratch) : 0;
    for (size_t i = 0; m && i < m->count; i++) n += spqr_gpu_device_bytes(m->tensors[i]);
    return n;
}

spqr_gpu_tensor *spqr_gpu_model_tensor(const spqr_gpu_model *m, size_t i) {
    return m && i < m->count ? m->tensors[i] : NULL;
}

const char *spqr_gpu_model_name(const spqr_gpu_model *m, size_t i) {
    return m && i < m->count ? m->by_linear[m->first[i]].name : NULL;
}

size_t spqr_gpu_model_members(const spqr_gpu_model *m, size_t i) {
    return m && i < m->count ? m->first[i + 1] - m->first[i] : 0;
}

const char *spqr_gpu_model_member_name(const spqr_gpu_model *m, size_t i, size_t k) {
    return k < spqr_gpu_model_members(m, i) ? m->by_linear[m->first[i] + k].name : NULL;
}

static const name_entry *lookup(const spqr_gpu_model *m, const char *name, spqr_error *err) {
    const name_entry key = {.name = name};
    const name_entry *hit = bsearch(&key, m->by_name, m->linears, sizeof key, cmp_entry);
    if (!hit)
        spqr_set_error(err, SPQR_E_NOTFOUND, 0, UINT64_MAX,
                       "no SpQR tensor named '%s' in the model (%zu linears)", name, m->linears);
    return hit;
}

spqr_status spqr_gpu_model_find(const spqr_gpu_model *m, const char *name, spqr_gpu_tensor **out,
                                spqr_error *err) {
    if (out) *out = NULL;
    if (!m || !name || !out)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "null model, name or output");
    const name_entry *hit = lookup(m, name, err);
    if (!hit) return SPQR_E_NOTFOUND;
    if (spqr_gpu_model_members(m, hit->index) > 1) /* its tensor writes more rows than its own */
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                              "'%s' is stacked with %zu more linears in the model's tensor %zu "
                              "(from '%s'): spqr_gpu_model_locate gives that tensor and its rows",
                              name, spqr_gpu_model_members(m, hit->index) - 1, hit->index,
                              spqr_gpu_model_name(m, hit->index));
    *out = m->tensors[hit->index];
    return SPQR_OK;
}

spqr_status spqr_gpu_model_locate(const spqr_gpu_model *m, const char *name, spqr_gpu_tensor **t,
                                  uint64_t *row0, uint64_t *rows, spqr_error *err) {
    if (t) *t = NULL;
    if (!m || !name || !t || !row0 || !rows)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "null model, name or output");
    const name_entry *hit = lookup(m, name, err);
    if (!hit) return SPQR_E_NOTFOUND;
    *t = m->tensors[hit->index], *row0 = hit->row0, *rows = hit->rows;
    return SPQR_OK;
}
