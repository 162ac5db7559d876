/* cmd_inspect.c — `spqr inspect FILE [--json]`: metadata, per-tensor table and size totals. */
#include "cli.h"
#include "spqr_format.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_name(const spqr_tensor_info *in) {
    if (in->kind == SPQR_KIND_SPQR) return "spqr";
    return in->dtype == SPQR_DTYPE_F32 ? "f32" : in->dtype == SPQR_DTYPE_F16 ? "f16" : "bf16";
}

static void shape_str(const spqr_tensor_info *in, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (uint32_t d = 0; d < in->ndim && k < n; d++)
        k +=
            (size_t)snprintf(buf + k, n - k, d ? "x%llu" : "%llu", (unsigned long long)in->dims[d]);
}

static json_t *meta_json(const spqr_file *f, size_t i) {
    switch (spqr_file_meta_type(f, i)) {
    case SPQR_META_STR: {
        size_t len;
        const char *s = spqr_file_meta_str(f, i, &len);
        if (len > 4096) return json_pack("{s:I}", "bytes", (json_int_t)len);
        return json_stringn(s, len);
    }
    case SPQR_META_I64:
        return json_integer(spqr_file_meta_i64(f, i));
    case SPQR_META_F64:
        return json_real(spqr_file_meta_f64(f, i));
    }
    return json_null();
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    if (cli_file_json_args(argc, argv, "inspect", &path, &json)) return 2;
    spqr_error err = {0};
    spqr_file *f = spqr_file_open(path, 0, &err);
    if (!f) {
        fprintf(stderr, "spqr inspect: %s\n", err.msg);
        return err.code == SPQR_E_FORMAT ? 1 : 2;
    }
    size_t nt = spqr_file_tensor_count(f), nm = spqr_file_meta_count(f);
    uint64_t params = 0, qparams = 0, bits = 0, qbits = 0, nnz = 0;
    json_t *root = json ? json_object() : NULL, *jt = json ? json_array() : NULL;
    if (!json) {
        printf("file: %s\nformat version %u, %llu bytes, alignment %u, %zu tensors\n\nmetadata:\n",
               path, spqr_file_version(f), (unsigned long long)spqr_file_size(f),
               spqr_file_alignment(f), nt);
        for (size_t i = 0; i < nm; i++) {
            printf("  %-32s = ", spqr_file_meta_key(f, i));
            if (spqr_file_meta_type(f, i) == SPQR_META_STR) {
                size_t len;
                const char *s = spqr_file_meta_str(f, i, &len);
                if (len > 60 || memchr(s, '\n', len))
                    printf("<string, %zu bytes>\n", len);
                else
                    printf("\"%.*s\"\n", (int)len, s);
            } else if (spqr_file_meta_type(f, i) == SPQR_META_I64) {
                printf("%lld\n", (long long)spqr_file_meta_i64(f, i));
            } else {
                printf("%g\n", spqr_file_meta_f64(f, i));
            }
        }
        printf("\n%-40s %-5s %-13s %2s %4s %4s %2s %9s %7s %8s\n", "tensor", "kind", "shape", "w",
               "b1", "b2", "s", "outliers", "out%", "bits/par");
    }
    for (size_t i = 0; i < nt; i++) {
        const spqr_tensor_info *in = spqr_file_tensor_info(f, i);
        spqr_tensor_bits tb;
        spqr_file_tensor_bits(f, i, &tb);
        char shape[96];
        shape_str(in, shape, sizeof shape);
        double bpp = tb.params ? (double)tb.bits_total / (double)tb.params : 0;
        double opct = tb.params ? 100.0 * (double)in->nnz / (double)tb.params : 0;
        params += tb.params, bits += tb.bits_total;
        if (in->kind == SPQR_KIND_SPQR)
            qparams += tb.params, qbits += tb.bits_total, nnz += in->nnz;
        if (json) {
            json_t *e = json_object(), *dims = json_array();
            for (uint32_t d = 0; d < in->ndim; d++)
                json_array_append_new(dims, json_integer((json_int_t)in->dims[d]));
            json_object_set_new(e, "name", json_string(spqr_file_tensor_name(f, i)));
            json_object_set_new(e, "kind", json_string(kind_name(in)));
            json_object_set_new(e, "shape", dims);
            if (in->kind == SPQR_KIND_SPQR) {
                json_object_set_new(e, "wbits", json_integer(in->wbits));
                json_object_set_new(e, "beta1", json_integer(in->beta1));
                json_object_set_new(e, "beta2", json_integer(in->beta2));
                json_object_set_new(e, "stat_bits", json_integer(in->stat_bits));
                json_object_set_new(e, "outliers", json_integer((json_int_t)in->nnz));
                json_object_set_new(e, "outlier_percent", json_real(opct));
                json_object_set_new(e, "permuted", json_boolean(in->flags & SPQR_FLAG_PERM));
            }
            json_object_set_new(e, "parameters", json_integer((json_int_t)tb.params));
            json_object_set_new(
                e, "bits",
                json_pack("{s:I,s:I,s:I,s:I,s:I}", "codes", (json_int_t)tb.bits_codes, "stats",
                          (json_int_t)tb.bits_stats, "outliers", (json_int_t)tb.bits_outliers,
                          "perm", (json_int_t)tb.bits_perm, "total", (json_int_t)tb.bits_total));
            json_object_set_new(e, "bits_per_parameter", json_real(bpp));
            json_array_append_new(jt, e);
        } else if (in->kind == SPQR_KIND_SPQR) {
            printf("%-40.40s %-5s %-13s %2u %4u %4u %2u %9llu %6.3f%% %8.4f\n",
                   spqr_file_tensor_name(f, i), kind_name(in), shape, in->wbits, in->beta1,
                   in->beta2, in->stat_bits, (unsigned long long)in->nnz, opct, bpp);
        } else {
            printf("%-40.40s %-5s %-13s %2s %4s %4s %2s %9s %7s %8.4f\n",
                   spqr_file_tensor_name(f, i), kind_name(in), shape, "-", "-", "-", "-", "-", "-",
                   bpp);
        }
    }
    uint64_t fsize = spqr_file_size(f);
    double qbpp = qparams ? (double)qbits / (double)qparams : 0,
           obpp = params ? (double)bits / (double)params : 0;
    double ratio = fsize ? 2.0 * (double)params / (double)fsize : 0;
    if (json) {
        json_t *meta = json_object();
        for (size_t i = 0; i < nm; i++)
            json_object_set_new(meta, spqr_file_meta_key(f, i), meta_json(f, i));
        json_object_set_new(root, "file", json_string(path));
        json_object_set_new(root, "format_version", json_integer(spqr_file_version(f)));
        json_object_set_new(root, "file_bytes", json_integer((json_int_t)fsize));
        json_object_set_new(root, "alignment", json_integer(spqr_file_alignment(f)));
        json_object_set_new(root, "metadata", meta);
        json_object_set_new(root, "tensors", jt);
        json_object_set_new(root, "totals",
                            json_pack("{s:I,s:I,s:I,s:f}", "parameters", (json_int_t)params,
                                      "quantized_parameters", (json_int_t)qparams, "outliers",
                                      (json_int_t)nnz, "compression_ratio_vs_fp16", ratio));
        json_object_set_new(root, "bits_per_parameter",
                            json_pack("{s:f,s:f,s:f}", "quantized", qbpp, "overall", obpp, "file",
                                      params ? 8.0 * (double)fsize / (double)params : 0.0));
        char *s = json_dumps(root, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(root);
    } else {
        printf("\ntotals: %llu parameters (%llu quantized, %llu outliers = %.3f%%)\n",
               (unsigned long long)params, (unsigned long long)qparams, (unsigned long long)nnz,
               qparams ? 100.0 * (double)nnz / (double)qparams : 0.0);
        printf("bits per parameter: %.4f quantized tensors, %.4f overall (%.4f counting the whole "
               "file)\n",
               qbpp, obpp, params ? 8.0 * (double)fsize / (double)params : 0.0);
        printf("file: %llu bytes, compression ratio vs fp16: %.2fx\n", (unsigned long long)fsize,
               ratio);
    }
    spqr_file_close(f);
    return 0;
}
