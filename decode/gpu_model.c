/* gpu_model.c — a whole model on the GPU: every SpQR tensor of a file uploaded with
 * spqr_gpu_upload (sections copied as stored), kept in file order and looked up by name through a
 * sorted index; the tensors share one set of per-call scratch. Host code only: in a build without
 * CUDA the upload fails as spqr_gpu_upload does.
 */
#include "gpu_internal.h"
#include "spqr.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name; /* the model's copy */
    size_t index;     /* in file order of the model's tensors */
} name_entry;

struct spqr_gpu_model {
    size_t count;
    spqr_gpu_tensor **tensors; /* file order */
    char **names;              /* file order, owned */
    name_entry *by_name;       /* sorted by name (strcmp) */
    spqr_gpu_scratch *scratch; /* the tensors' one set of per-call scratch */
};

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const name_entry *)a)->name, ((const name_entry *)b)->name);
}

void spqr_gpu_model_free(spqr_gpu_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->count; i++) {
        spqr_gpu_free(m->tensors[i]);
        free(m->names[i]);
    }
    spqr_gpu_scratch_free(m->scratch); /* after the tensors that use it */
    free(m->tensors), free(m->names), free(m->by_name), free(m);
}

spqr_status spqr_gpu_model_upload(const spqr_file *f, spqr_gpu_model **out, spqr_error *err) {
    if (!out) return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "null output pointer");
    *out = NULL;
    if (!f) return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "null file");
    spqr_status st = spqr_gpu_available(err);
    if (st) return st;
    const size_t n = spqr_file_tensor_count(f);
    size_t spqr_count = 0;
    for (size_t i = 0; i < n; i++)
        if (spqr_file_tensor_info(f, i)->kind == SPQR_KIND_SPQR) spqr_count++;
    spqr_gpu_model *m = calloc(1, sizeof *m);
    const size_t slots = spqr_count ? spqr_count : 1;
    if (m) {
        m->tensors = calloc(slots, sizeof *m->tensors);
        m->names = calloc(slots, sizeof *m->names);
        m->by_name = calloc(slots, sizeof *m->by_name);
    }
    if (!m || !m->tensors || !m->names || !m->by_name) {
        spqr_gpu_model_free(m);
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "%s: out of memory",
                              spqr_file_path(f));
    }
    for (size_t i = 0; i < n; i++) {
        if (spqr_file_tensor_info(f, i)->kind != SPQR_KIND_SPQR) continue;
        const char *name = spqr_file_tensor_name(f, i);
        spqr_error e = {0};
        spqr_gpu_tensor *t = NULL;
        st = spqr_gpu_upload(f, i, &t, &e);
        const size_t len = strlen(name) + 1;
        char *copy = st ? NULL : malloc(len);
        if (copy) memcpy(copy, name, len);
        if (st || !copy) {
            spqr_gpu_free(t);
            spqr_gpu_model_free(m); /* everything uploaded so far goes back */
            if (!st) st = SPQR_E_NOMEM, strcpy(e.msg, "out of memory");
            return spqr_set_error(err, st, e.rule, e.offset, "%s: tensor '%s': %s",
                                  spqr_file_path(f), name, e.msg);
        }
        m->tensors[m->count] = t, m->names[m->count] = copy;
        m->by_name[m->count] = (name_entry){copy, m->count};
        m->count++;
    }
    /* a model's calls are ordered (spqr.h), so its tensors share one scratch */
    spqr_error e = {0};
    st = spqr_gpu_share_scratch(m->tensors, m->count, &m->scratch, &e);
    if (st) {
        spqr_gpu_model_free(m);
        return spqr_set_error(err, st, e.rule, e.offset, "%s: %s", spqr_file_path(f), e.msg);
    }
    qsort(m->by_name, m->count, sizeof *m->by_name, cmp_entry);
    *out = m;
    return SPQR_OK;
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
    return m && i < m->count ? m->names[i] : NULL;
}

spqr_status spqr_gpu_model_find(const spqr_gpu_model *m, const char *name, spqr_gpu_tensor **out,
                                spqr_error *err) {
    if (out) *out = NULL;
    if (!m || !name || !out)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "null model, name or output");
    const name_entry key = {name, 0};
    const name_entry *hit = bsearch(&key, m->by_name, m->count, sizeof key, cmp_entry);
    if (!hit)
        return spqr_set_error(err, SPQR_E_NOTFOUND, 0, UINT64_MAX,
                              "no SpQR tensor named '%s' in the model (%zu tensors)", name,
                              m->count);
    *out = m->tensors[hit->index];
    return SPQR_OK;
}
