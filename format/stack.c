/* stack.c — SpQR tensors that multiply the same input, stacked row-wise into one tensor.
 *
 * W = [W_0; W_1; ...; W_{n-1}] (rows of W_0 first): y = W x is then [W_0 x; W_1 x; ...], one
 * matmul for what were n (a layer's q/k/v or gate/up projections). Every section of spec §5 is
 * laid out row by row or by row block, so stacking concatenates them:
 * - codes, scale, zero: one packed row per matrix row (§6), same row length since the tensors share
 *   C, w, s and the layout version;
 * - stat2: one entry per (row block of β1 rows, group), block-major; a block may not span two
 *   tensors, so every tensor but the last must have a multiple of β1 rows;
 * - row_ptr: tensor i's pointers shifted by the outliers of the tensors before it; col_idx and
 *   values concatenated (same C, so the same index width);
 * - perm: the input permutation, which must be the same for all (it acts on the shared input).
 * The stacked tensor's element (R_0 + ... + R_{i-1} + r, j) is element (r, j) of tensor i: the
 * same statistics, the same second-order block entries, the same outliers, so spec §7 decodes it
 * to the same bits. */
#include "internal.h"

#include <stdlib.h>

void spqr_tensor_data_free(spqr_tensor_data *d) {
    if (!d) return;
    for (int s = 0; s < SPQR_SEC_COUNT; s++) free(d->sec[s]), d->sec[s] = NULL, d->size[s] = 0;
}

/* The rule that tensor i breaks against tensor 0 (which the others must match), or NULL. */
static const char *mismatch(const spqr_file *f, size_t t0, size_t ti) {
    const spqr_tensor_info *a = spqr_file_tensor_info(f, t0), *b = spqr_file_tensor_info(f, ti);
    if (b->dims[1] != a->dims[1]) return "columns differ (the tensors must share their input)";
    if (b->wbits != a->wbits || b->stat_bits != a->stat_bits)
        return "code or statistic bit widths differ";
    if (b->beta1 != a->beta1 || b->beta2 != a->beta2) return "beta1 or beta2 differ";
    if (b->version != a->version) return "layout versions differ";
    if ((b->flags & SPQR_FLAG_PERM) != (a->flags & SPQR_FLAG_PERM))
        return "one has an input permutation and the other not";
    if (a->flags & SPQR_FLAG_PERM) {
        uint64_t za, zb;
        const void *pa = spqr_file_section(f, t0, SPQR_SEC_PERM, &za),
                   *pb = spqr_file_section(f, ti, SPQR_SEC_PERM, &zb);
        if (za != zb || memcmp(pa, pb, za))
            return "input permutations differ (act-order from different Hessians: not one input)";
    }
    return NULL;
}

/* The checks of spqr_tensor_stack; on success *stacked holds the stacked tensor's description and
 * sizes its section sizes. */
static spqr_status stack_check(const spqr_file *f, const size_t *tensors, size_t n,
                               spqr_tensor_info *stacked, uint64_t sizes[SPQR_SEC_COUNT],
                               spqr_error *err) {
    const char *path = spqr_file_path(f);
    if (n == 0 || !tensors)
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "%s: no tensors to stack", path);
    const size_t count = spqr_file_tensor_count(f);
    uint64_t rows = 0, nnz = 0;
    for (size_t i = 0; i < n; i++) {
        if (tensors[i] >= count)
            return spqr_set_error(err, SPQR_E_NOTFOUND, 0, UINT64_MAX,
                                  "%s: tensor index %zu out of range (%zu tensors)", path,
                                  tensors[i], count);
        const spqr_tensor_info *in = spqr_file_tensor_info(f, tensors[i]);
        const char *name = spqr_file_tensor_name(f, tensors[i]);
        if (in->kind != SPQR_KIND_SPQR)
            return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                                  "%s: tensor '%s' is not an SpQR tensor", path, name);
        const char *why = mismatch(f, tensors[0], tensors[i]);
        if (why)
            return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                                  "%s: cannot stack '%s' under '%s': %s", path, name,
                                  spqr_file_tensor_name(f, tensors[0]), why);
    }
    /* then (all of one input) the shapes: rows whole blocks, sums within the format's limits */
    for (size_t i = 0; i < n; i++) {
        const spqr_tensor_info *in = spqr_file_tensor_info(f, tensors[i]);
        const char *name = spqr_file_tensor_name(f, tensors[i]);
        if (i + 1 < n && in->dims[0] % in->beta1)
            return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX,
                                  "%s: cannot stack '%s': %llu rows, not a multiple of beta1 = %u "
                                  "(a second-order block would span two tensors; only the last "
                                  "tensor may have a ragged block)",
                                  path, name, (unsigned long long)in->dims[0], in->beta1);
        rows += in->dims[0], nnz += in->nnz;
    }
    *stacked = *spqr_file_tensor_info(f, tensors[0]);
    stacked->dims[0] = rows, stacked->nnz = nnz;
    spqr_error e2 = {0}; /* the stacked sizes must themselves be a valid tensor (R11: rows, nnz) */
    if (spqr_section_sizes(stacked, sizes, &e2))
        return spqr_set_error(err, SPQR_E_ARG, 0, UINT64_MAX, "%s: the stacked tensor: %s", path,
                              e2.msg);
    return SPQR_OK;
}

spqr_status spqr_tensor_stack_check(const spqr_file *f, const size_t *tensors, size_t n,
                                    spqr_error *err) {
    spqr_tensor_info info;
    uint64_t sizes[SPQR_SEC_COUNT];
    return stack_check(f, tensors, n, &info, sizes, err);
}

spqr_status spqr_tensor_stack(const spqr_file *f, const size_t *tensors, size_t n,
                              spqr_tensor_data *out, spqr_error *err) {
    memset(out, 0, sizeof *out);
    const char *path = spqr_file_path(f);
    spqr_tensor_data d = {0};
    spqr_status st = stack_check(f, tensors, n, &d.info, d.size, err);
    if (st) return st;
    const uint64_t rows = d.info.dims[0], nnz = d.info.nnz;
    for (int s = 0; s < SPQR_SEC_COUNT; s++)
        if (!(d.sec[s] = malloc(d.size[s] ? d.size[s] : 1))) {
            spqr_tensor_data_free(&d);
            return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "%s: out of memory", path);
        }
    uint64_t at[SPQR_SEC_COUNT] = {0}, row0 = 0, nnz0 = 0;
    for (size_t i = 0; i < n; i++) {
        const size_t ti = tensors[i];
        const spqr_tensor_info *in = spqr_file_tensor_info(f, ti);
        for (int s = 0; s < SPQR_SEC_COUNT; s++) {
            if (s == SPQR_SEC_PERM || s == SPQR_SEC_ROWPTR) continue;
            uint64_t z;
            const void *src = spqr_file_section(f, ti, (spqr_section_id)s, &z);
            if (z) memcpy((uint8_t *)d.sec[s] + at[s], src, z);
            at[s] += z;
        }
        /* row_ptr: stacked row row0 + r starts at the outliers before tensor i plus its own */
        uint64_t z;
        const uint8_t *rp = spqr_file_section(f, ti, SPQR_SEC_ROWPTR, &z);
        for (uint64_t r = 0; r < in->dims[0]; r++)
            put_u32((uint8_t *)d.sec[SPQR_SEC_ROWPTR] + 4 * (row0 + r),
                    (uint32_t)(get_u32(rp + 4 * r) + nnz0));
        row0 += in->dims[0], nnz0 += in->nnz;
    }
    put_u32((uint8_t *)d.sec[SPQR_SEC_ROWPTR] + 4 * rows, (uint32_t)nnz);
    if (d.size[SPQR_SEC_PERM])
        memcpy(d.sec[SPQR_SEC_PERM],
               spqr_file_section(f, tensors[0], SPQR_SEC_PERM, &(uint64_t){0}),
               d.size[SPQR_SEC_PERM]);
    *out = d;
    return SPQR_OK;
}
