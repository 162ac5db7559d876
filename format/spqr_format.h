/* spqr_format.h — the .spqr container: writer, reader and validator (format version 2; version 1
 * files are read too).
 *
 * spec/SPEC.md is the normative description of every byte; this header is the C view of it.
 * All functions report failure through an spqr_error filled by the callee (no global state). */
#ifndef SPQR_FORMAT_H
#define SPQR_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPQR_FORMAT_VERSION 2u     /* the version written */
#define SPQR_FORMAT_VERSION_MIN 1u /* the oldest version read */
#define SPQR_HEADER_SIZE 80u
#define SPQR_DEFAULT_ALIGNMENT 256u
#define SPQR_MAX_NAME 1024u
#define SPQR_MAX_KEY 255u

typedef enum {
    SPQR_OK = 0,
    SPQR_E_IO = 1,          /* open/read/write/rename failed */
    SPQR_E_FORMAT = 2,      /* the file breaks a validity rule of the spec */
    SPQR_E_NOMEM = 3,       /* allocation failed */
    SPQR_E_ARG = 4,         /* caller passed an invalid argument */
    SPQR_E_NOTFOUND = 5,    /* no tensor / key of that name */
    SPQR_E_NUMERIC = 6,     /* NaN/Inf or a numerical failure */
    SPQR_E_UNSUPPORTED = 7, /* valid but not supported by this build (e.g. no CUDA) */
    SPQR_E_CUDA = 8,        /* a CUDA runtime / library call failed */
    SPQR_E_INTERRUPTED = 9, /* stopped on request (state saved where the operation supports it) */
} spqr_status;

/* Error report: code, the spec rule broken (0 if none applies), the byte offset in the file
 * (UINT64_MAX if none) and a human-readable message naming file / tensor / rule. */
typedef struct {
    spqr_status code;
    int rule;
    uint64_t offset;
    char msg[640];
} spqr_error;

const char *spqr_status_name(spqr_status s);
/* Fills err (if non-NULL) and returns code. printf-style. */
spqr_status spqr_set_error(spqr_error *err, spqr_status code, int rule, uint64_t offset,
                           const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

typedef enum { SPQR_KIND_PLAIN = 1, SPQR_KIND_SPQR = 2 } spqr_kind;
typedef enum { SPQR_DTYPE_F32 = 1, SPQR_DTYPE_F16 = 2, SPQR_DTYPE_BF16 = 3 } spqr_dtype;

/* Sections of an SpQR tensor, in directory order (spec §5). A plain tensor has one section (0). */
typedef enum {
    SPQR_SEC_CODES = 0, /* weight codes, w-bit packed rows */
    SPQR_SEC_SCALE = 1, /* first-order scales: s-bit packed rows, or fp16 when s = 16 */
    SPQR_SEC_ZERO = 2,  /* first-order zeros: same layout as scales */
    SPQR_SEC_STAT2 =
        3, /* second-order statistics: fp16 x4 per (row block, group); empty when s = 16 */
    SPQR_SEC_ROWPTR = 4, /* outlier CSR row pointers: u32 x (rows + 1) */
    SPQR_SEC_COLIDX = 5, /* outlier column indices: u16 (cols <= 65536) or u32 */
    SPQR_SEC_VALUES = 6, /* outlier values: fp16 */
    SPQR_SEC_PERM = 7,   /* input-column permutation: u32 x cols, or empty */
    SPQR_SEC_COUNT = 8
} spqr_section_id;

#define SPQR_FLAG_PERM 1u /* tensor flag: SPQR_SEC_PERM present */

typedef enum { SPQR_CODEC_RAW = 0, SPQR_CODEC_ZSTD = 1 } spqr_codec;

/* Description of one tensor. For SPQR tensors dims[0] = rows (outputs), dims[1] = cols (inputs). */
typedef struct {
    spqr_kind kind;
    spqr_dtype dtype; /* plain tensors only */
    uint32_t ndim;
    uint64_t dims[4];
    uint32_t wbits;     /* 2..8 */
    uint32_t stat_bits; /* 1..8, or 16 = unquantized fp16 statistics */
    uint32_t beta1;     /* rows per second-order block (power of two, 2..4096) */
    uint32_t beta2;     /* columns per group (power of two, 2..4096) */
    uint32_t flags;     /* SPQR_FLAG_* */
    uint64_t nnz;       /* number of outliers */
    uint32_t version;   /* layout version: 0 or 2 = current; 1 = from a version-1 file (set by the
                           reader; the writer writes the current version only) */
} spqr_tensor_info;

/* Exact sizes (bytes) of the raw sections of a tensor described by info (spec §5, table 3).
 * Returns SPQR_E_FORMAT (with rule) when the description itself is invalid or overflows. */
spqr_status spqr_section_sizes(const spqr_tensor_info *info, uint64_t sizes[SPQR_SEC_COUNT],
                               spqr_error *err);
/* Validates the parameter fields of info (rules R10-R12 of the spec). */
spqr_status spqr_check_info(const spqr_tensor_info *info, spqr_error *err);
/* Number of elements (product of dims). */
uint64_t spqr_info_numel(const spqr_tensor_info *info);

/* ---- packing helpers shared by writer, quantizer and decoders (spec §6) ---- */
/* 32-bit words in one packed row of n values of b bits: ceil(n / 32) * b. */
static inline uint64_t spqr_packed_row_words(uint64_t n, uint32_t b) {
    return ((n + 31) / 32) * b;
}
/* 32-bit words in one row of packed s-bit statistics (spec table 3): version 2 packs a row's
 * groups densely, ceil(groups·s / 32); version 1 padded them like codes, ceil(groups/32)·s. */
static inline uint64_t spqr_stat_row_words(const spqr_tensor_info *in, uint64_t groups) {
    return in->version == 1 ? ((groups + 31) / 32) * in->stat_bits
                            : (groups * in->stat_bits + 31) / 32;
}
/* Write value v (< 2^b) at index i of the LSB-first bitstream starting at words. */
void spqr_pack_put(uint32_t *words, uint64_t i, uint32_t b, uint32_t v);
/* Read value i of the LSB-first bitstream. */
uint32_t spqr_pack_get(const uint32_t *words, uint64_t i, uint32_t b);

/* ---- IEEE half / bfloat16 conversions, round-to-nearest-even (spec §7.1) ---- */
/* binary16 -> binary32 is exact: normal values re-bias the exponent (15 -> 127), subnormals are
 * man * 2^-24 (exact in binary32), Inf/NaN keep their payload. Inline for decode hot loops. */
static inline float spqr_f16_to_f32_inline(uint16_t h) {
    union {
        uint32_t u;
        float f;
    } v;
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) {
        v.f = (float)man * 0x1p-24f;
        v.u |= sign;
    } else if (exp == 31) {
        v.u = sign | 0x7f800000u | (man << 13);
    } else {
        v.u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    return v.f;
}
float spqr_f16_to_f32(uint16_t h);
uint16_t spqr_f32_to_f16(float f);
float spqr_bf16_to_f32(uint16_t h);
uint16_t spqr_f32_to_bf16(float f);

/* The dequantization arithmetic of spec §7.2, in fp32 with no fused multiply-add:
 * stat = s2 * ((float)q - z2); weight = scale * ((float)q - zero). */
float spqr_dequant_affine(float scale, float zero, uint32_t q);

/* Dequantizes one tensor from its decoded sections (spec §7) into out (numel floats, original
 * column order). The sections must satisfy the data rules R17, R18 and R20 (the reader and the
 * writer check them). This is the one dequantization code path of the project. */
void spqr_dequantize_sections(const spqr_tensor_info *info,
                              const void *const sections[SPQR_SEC_COUNT], float *out);

/* ---- metadata values ---- */
typedef enum { SPQR_META_STR = 1, SPQR_META_I64 = 2, SPQR_META_F64 = 3 } spqr_meta_type;

/* ---- writer ---- */
typedef struct spqr_writer spqr_writer;
/* Creates a temporary file beside path; nothing appears under path until spqr_writer_finish.
 * zstd_level: 0 = raw sections (memory-mappable), 1..19 = zstd-compress sections that shrink. */
spqr_writer *spqr_writer_open(const char *path, int zstd_level, spqr_error *err);
spqr_status spqr_writer_meta_str(spqr_writer *w, const char *key, const char *value, size_t len,
                                 spqr_error *err);
spqr_status spqr_writer_meta_i64(spqr_writer *w, const char *key, int64_t value, spqr_error *err);
spqr_status spqr_writer_meta_f64(spqr_writer *w, const char *key, double value, spqr_error *err);
/* Plain tensor: data holds numel elements of dtype, little-endian, row-major. */
spqr_status spqr_writer_add_plain(spqr_writer *w, const char *name, spqr_dtype dtype, uint32_t ndim,
                                  const uint64_t *dims, const void *data, spqr_error *err);
/* SpQR tensor: sections[i] holds exactly spqr_section_sizes(info)[i] bytes (NULL when 0). */
spqr_status spqr_writer_add_spqr(spqr_writer *w, const char *name, const spqr_tensor_info *info,
                                 const void *const sections[SPQR_SEC_COUNT], spqr_error *err);
/* Writes metadata, directory and header, fsyncs and renames into place. Frees w. */
spqr_status spqr_writer_finish(spqr_writer *w, spqr_error *err);
/* Discards everything written (removes the temporary file). Frees w. */
void spqr_writer_abort(spqr_writer *w);

/* ---- reader ---- */
typedef struct spqr_file spqr_file;
#define SPQR_OPEN_VERIFY 1u /* also verify every section checksum and all data rules on open */

/* Maps the file and checks the structure (header, metadata, directory, every offset, size and
 * alignment: rules R1-R16). Sections compressed with zstd are decompressed on open. */
spqr_file *spqr_file_open(const char *path, unsigned flags, spqr_error *err);
/* Same over a caller-owned buffer (not copied; must outlive the handle). name is used in messages.
 */
spqr_file *spqr_file_open_memory(const void *data, size_t size, const char *name, unsigned flags,
                                 spqr_error *err);
void spqr_file_close(spqr_file *f);

const char *spqr_file_path(const spqr_file *f);
uint64_t spqr_file_size(const spqr_file *f);
uint32_t spqr_file_alignment(const spqr_file *f);
/* Format version of the file (header field, 1 or 2). */
uint32_t spqr_file_version(const spqr_file *f);
size_t spqr_file_tensor_count(const spqr_file *f);
const char *spqr_file_tensor_name(const spqr_file *f, size_t i);
const spqr_tensor_info *spqr_file_tensor_info(const spqr_file *f, size_t i);
/* Index of the tensor called name, or -1. */
long spqr_file_find(const spqr_file *f, const char *name);
/* The decoded bytes of a section (points into the mapping for raw sections). */
const void *spqr_file_section(const spqr_file *f, size_t i, spqr_section_id s, uint64_t *size);
/* Section as stored: file offset, stored size, codec (for accounting and tools). */
void spqr_file_section_stored(const spqr_file *f, size_t i, spqr_section_id s, uint64_t *offset,
                              uint64_t *stored_size, spqr_codec *codec);

size_t spqr_file_meta_count(const spqr_file *f);
const char *spqr_file_meta_key(const spqr_file *f, size_t i);
spqr_meta_type spqr_file_meta_type(const spqr_file *f, size_t i);
long spqr_file_meta_find(const spqr_file *f, const char *key);
/* String value (not NUL-terminated in the file; returns pointer and length). */
const char *spqr_file_meta_str(const spqr_file *f, size_t i, size_t *len);
int64_t spqr_file_meta_i64(const spqr_file *f, size_t i);
double spqr_file_meta_f64(const spqr_file *f, size_t i);

/* ---- stacking tensors that share an input ---- */
/* An SpQR tensor held in memory: its description and its raw sections (malloc'ed, owned). */
typedef struct {
    spqr_tensor_info info;
    void *sec[SPQR_SEC_COUNT];
    uint64_t size[SPQR_SEC_COUNT];
} spqr_tensor_data;
/* Stacks n SpQR tensors of f that multiply the same input (a layer's q/k/v or gate/up
 * projections: GPTQ's act-order permutation comes from the Hessian of the input, so theirs is the
 * same) into one tensor whose rows are theirs in the order given, W = [W_t0; W_t1; ...]: one
 * matmul then gives all their outputs, y = [W_t0 x; W_t1 x; ...]. They must agree in columns, w,
 * s, beta1, beta2, layout version and permutation (flag and values); each but the last must have a
 * multiple of beta1 rows (a second-order block cannot span two tensors). The sections are
 * concatenated (row pointers shifted), so the result dequantizes (spec §7) to the tensors'
 * dequantizations stacked, bit for bit. SPQR_E_ARG naming the file, the tensor and the rule on a
 * mismatch; SPQR_E_NOTFOUND for an index out of range. Free with spqr_tensor_data_free. */
spqr_status spqr_tensor_stack(const spqr_file *f, const size_t *tensors, size_t n,
                              spqr_tensor_data *out, spqr_error *err);
void spqr_tensor_data_free(spqr_tensor_data *d);
/* The checks of spqr_tensor_stack alone (nothing is allocated): SPQR_OK when those tensors stack,
 * else the error spqr_tensor_stack would return. */
spqr_status spqr_tensor_stack_check(const spqr_file *f, const size_t *tensors, size_t n,
                                    spqr_error *err);

/* Bits spent on a tensor's stored sections, split as the spec's size accounting (§8). */
typedef struct {
    uint64_t params;
    uint64_t bits_codes, bits_stats, bits_outliers, bits_perm, bits_total;
} spqr_tensor_bits;
void spqr_file_tensor_bits(const spqr_file *f, size_t i, spqr_tensor_bits *out);

/* Dequantizes tensor i to f32 in the original (unpermuted) layout, rows x cols (spec §7).
 * For plain tensors converts to f32. out holds numel floats. */
spqr_status spqr_file_dequantize(const spqr_file *f, size_t i, float *out, spqr_error *err);

/* ---- validator ---- */
typedef struct {
    int rule;         /* R-number of the spec */
    uint64_t offset;  /* byte offset in the file, UINT64_MAX if none */
    char tensor[128]; /* tensor name, "" if none */
    char msg[384];
} spqr_defect;

typedef struct {
    int readable;     /* 0: the file could not be read at all (I/O) */
    size_t n_defects; /* total found */
    size_t n_stored;  /* stored in defects[] (at most 256) */
    spqr_defect defects[256];
} spqr_validation;

/* Checks every rule of the spec and every checksum. Returns SPQR_OK when valid, SPQR_E_FORMAT
 * when defects were found (listed in v), SPQR_E_IO when the file cannot be read. */
spqr_status spqr_validate_file(const char *path, spqr_validation *v, spqr_error *err);
spqr_status spqr_validate_memory(const void *data, size_t size, spqr_validation *v);

#ifdef __cplusplus
}
#endif
#endif
