/* tokenizer.c — Hugging Face tokenizer.json BPE models, encode only.
 *
 * Two families, as LLaMA-family checkpoints ship them:
 * - byte-level BPE (GPT-2 / Llama-3 / Qwen2 style): pre_tokenizer ByteLevel (or a Sequence holding
 *   one); text is split by the GPT-2 pattern
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   each piece's bytes are mapped to the printable byte alphabet (bytes_to_unicode) and merged.
 * - sentencepiece-style BPE (Llama-1/2 style): spaces become U+2581 '▁' (and one is prepended),
 *   characters missing from the vocabulary fall back to <0xXX> byte tokens.
 * Merging: repeatedly merge the adjacent pair of lowest merge rank (a min-heap over pairs with lazy
 * invalidation, O(n log n) per piece). Special added tokens are matched literally first.
 * Unicode classes: ASCII exactly; beyond ASCII, letters/digits/spaces by the main Unicode blocks
 * (an approximation of \p{L} / \p{N} / \s documented in the README; exact on the shared texts). */
#define _POSIX_C_SOURCE 200809L
#include "spqr_compress.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- hash maps ---------------- */
typedef struct {
    char **key;
    uint32_t *klen, *val;
    uint64_t cap;
} strmap;

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int strmap_init(strmap *m, uint64_t n) {
    m->cap = 16;
    while (m->cap < 2 * n + 16) m->cap *= 2;
    m->key = calloc(m->cap, sizeof *m->key);
    m->klen = calloc(m->cap, sizeof *m->klen);
    m->val = calloc(m->cap, sizeof *m->val);
    return m->key && m->klen && m->val ? 0 : -1;
}

static void strmap_put(strmap *m, const char *k, size_t n, uint32_t v) {
    uint64_t i = fnv(k, n) & (m->cap - 1);
    while (m->key[i] && !(m->klen[i] == n && !memcmp(m->key[i], k, n))) i = (i + 1) & (m->cap - 1);
    if (!m->key[i]) {
        m->key[i] = malloc(n + 1);
        memcpy(m->key[i], k, n);
        m->key[i][n] = 0;
        m->klen[i] = (uint32_t)n;
    }
    m->val[i] = v;
}

static int strmap_get(const strmap *m, const char *k, size_t n, uint32_t *v) {
    uint64_t i = fnv(k, n) & (m->cap - 1);
    while (m->key[i]) {
        if (m->klen[i] == n && !memcmp(m->key[i], k, n)) {
            *v = m->val[i];
            return 1;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return 0;
}

static void strmap_free(strmap *m) {
    for (uint64_t i = 0; i < m->cap; i++) free(m->key[i]);
    free(m->key), free(m->klen), free(m->val);
}

typedef struct { /* (left id, right id) -> rank, merged id */
    uint64_t *key;
    uint32_t *rank, *merged;
    uint64_t cap;
} pairmap;

static uint64_t mix(uint64_t x) {
    x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33;
    return x;
}

static int pairmap_get(const pairmap *m, uint32_t a, uint32_t b, uint32_t *rank, uint32_t *merged) {
    uint64_t k = ((uint64_t)a << 32 | b) + 1, i = mix(k) & (m->cap - 1);
    while (m->key[i]) {
        if (m->key[i] == k) {
            *rank = m->rank[i], *merged = m->merged[i];
            return 1;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return 0;
}

static void pairmap_put(pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t merged) {
    uint64_t k = ((uint64_t)a << 32 | b) + 1, i = mix(k) & (m->cap - 1);
    while (m->key[i] && m->key[i] != k) i = (i + 1) & (m->cap - 1);
    if (m->key[i]) return; /* first (lowest-rank) definition wins */
    m->key[i] = k, m->rank[i] = rank, m->merged[i] = merged;
}

/* ---------------- tokenizer ---------------- */
typedef struct {
    strmap vocab;
    pairmap merges;
    int byte_level, byte_fallback, prepend_space;
    uint32_t byte_tok[256];     /* byte-level: id of each byte's mapped character */
    uint32_t fallback_tok[256]; /* sentencepiece: id of <0xXX> */
    char **special;
    uint32_t *special_id, n_special;
} tokenizer;

static int put_utf8(uint32_t cp, char *o) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
               o[2] = (char)(0x80 | (cp & 0x3f)), 3;
    o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to 256 + k. */
static uint32_t byte_to_cp(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
        return (uint32_t)b;
    int k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff))) k++;
    return 256u + (uint32_t)k;
}

static void tok_free(tokenizer *t) {
    strmap_free(&t->vocab);
    free(t->merges.key), free(t->merges.rank), free(t->merges.merged);
    for (uint32_t i = 0; i < t->n_special; i++) free(t->special[i]);
    free(t->special), free(t->special_id);
}

static spqr_status tok_load(tokenizer *t, const char *json, size_t len, spqr_error *err) {
    memset(t, 0, sizeof *t);
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    spqr_status st = SPQR_OK;
    json_t *model = json_object_get(root, "model"), *vocab = json_object_get(model, "vocab"),
           *merges = json_object_get(model, "merges");
    if (!root || !json_is_object(model) ||
        strcmp(json_string_value(json_object_get(model, "type"))
                   ? json_string_value(json_object_get(model, "type"))
                   : "",
               "BPE") ||
        !json_is_object(vocab) || !json_is_array(merges)) {
        st = spqr_set_error(
            err, SPQR_E_UNSUPPORTED, 0, UINT64_MAX,
            "tokenizer.json: only BPE models with vocab and merges are supported%s%s",
            root ? "" : ": ", root ? "" : je.text);
        json_decref(root);
        return st;
    }
    strmap_init(&t->vocab, json_object_size(vocab) + 64);
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v)
        strmap_put(&t->vocab, key, strlen(key), (uint32_t)json_integer_value(v));
    json_t *added = json_object_get(root, "added_tokens");
    size_t ai;
    t->special = calloc(json_array_size(added) + 1, sizeof *t->special);
    t->special_id = calloc(json_array_size(added) + 1, sizeof *t->special_id);
    json_array_foreach(added, ai, v) {
        const char *c = json_string_value(json_object_get(v, "content"));
        if (!c) continue;
        t->special[t->n_special] = strdup(c);
        t->special_id[t->n_special++] = (uint32_t)json_integer_value(json_object_get(v, "id"));
        strmap_put(&t->vocab, c, strlen(c), (uint32_t)json_integer_value(json_object_get(v, "id")));
    }
    t->merges.cap = 16;
    while (t->merges.cap < 2 * json_array_size(merges) + 16) t->merges.cap *= 2;
    t->merges.key = calloc(t->merges.cap, 8), t->merges.rank = calloc(t->merges.cap, 4);
    t->merges.merged = calloc(t->merges.cap, 4);
    json_array_foreach(merges, ai, v) {
        const char *a, *b;
        char buf[1024];
        if (json_is_array(v)) {
            a = json_string_value(json_array_get(v, 0)),
            b = json_string_value(json_array_get(v, 1));
        } else {
            const char *s = json_string_value(v), *sp = s ? strchr(s, ' ') : NULL;
            if (!sp || (size_t)(sp - s) >= sizeof buf) continue;
            memcpy(buf, s, (size_t)(sp - s));
            buf[sp - s] = 0;
            a = buf, b = sp + 1;
        }
        if (!a || !b) continue;
        uint32_t ia, ib, im;
        char cat[2048];
        size_t la = strlen(a), lb = strlen(b);
        if (la + lb >= sizeof cat) continue;
        memcpy(cat, a, la), memcpy(cat + la, b, lb);
        if (strmap_get(&t->vocab, a, la, &ia) && strmap_get(&t->vocab, b, lb, &ib) &&
            strmap_get(&t->vocab, cat, la + lb, &im))
            pairmap_put(&t->merges, ia, ib, (uint32_t)ai, im);
    }
    /* which family */
    json_t *pre = json_object_get(root, "pre_tokenizer");
    char *pre_s = pre ? json_dumps(pre, 0) : NULL;
    t->byte_level = pre_s && strstr(pre_s, "\"ByteLevel\"") != NULL;
    free(pre_s);
    json_t *fb = json_object_get(model, "byte_fallback");
    t->byte_fallback = json_is_true(fb);
    json_t *norm = json_object_get(root, "normalizer");
    char *norm_s = norm ? json_dumps(norm, 0) : NULL;
    t->prepend_space = !t->byte_level && (!norm_s || strstr(norm_s, "Prepend") || pre);
    free(norm_s);
    if (t->byte_level) {
        for (int b = 0; b < 256; b++) {
            char u[4];
            int n = put_utf8(byte_to_cp(b), u);
            if (!strmap_get(&t->vocab, u, (size_t)n, &t->byte_tok[b])) {
                st = spqr_set_error(err, SPQR_E_FORMAT, 0, UINT64_MAX,
                                    "tokenizer.json: byte-level vocab lacks byte 0x%02x", b);
                break;
            }
        }
    } else {
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            if (!strmap_get(&t->vocab, name, 6, &t->fallback_tok[b]))
                t->fallback_tok[b] = UINT32_MAX;
        }
    }
    json_decref(root);
    if (st) tok_free(t);
    return st;
}

/* ---------------- BPE merge (heap of candidate pairs, lazy invalidation) ---------------- */
typedef struct {
    uint32_t rank, pos, left_id, right_id;
} cand;

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    h[i] = c;
    while (i && (h[(i - 1) / 2].rank > h[i].rank ||
                 (h[(i - 1) / 2].rank == h[i].rank && h[(i - 1) / 2].pos > h[i].pos))) {
        cand x = h[i];
        h[i] = h[(i - 1) / 2], h[(i - 1) / 2] = x;
        i = (i - 1) / 2;
    }
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0];
    h[0] = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && (h[l].rank < h[m].rank || (h[l].rank == h[m].rank && h[l].pos < h[m].pos)))
            m = l;
        if (r < *n && (h[r].rank < h[m].rank || (h[r].rank == h[m].rank && h[r].pos < h[m].pos)))
            m = r;
        if (m == i) break;
        cand x = h[i];
        h[i] = h[m], h[m] = x;
        i = m;
    }
    return top;
}

typedef struct {
    uint32_t *v;
    uint64_t n, cap;
} idvec;

static int push_id(idvec *o, uint32_t id) {
    if (o->n == o->cap) {
        uint64_t c = o->cap ? 2 * o->cap : 4096;
        uint32_t *p = realloc(o->v, c * 4);
        if (!p) return -1;
        o->v = p, o->cap = c;
    }
    o->v[o->n++] = id;
    return 0;
}

/* Merges the symbol sequence ids[0..n) in place and appends the result to out. */
static int bpe(const tokenizer *t, uint32_t *ids, uint32_t n, idvec *out) {
    if (n == 0) return 0;
    int32_t *next = malloc(n * 4), *prev = malloc(n * 4);
    cand *heap = malloc((size_t)n * 2 * sizeof *heap + sizeof *heap);
    if (!next || !prev || !heap) return free(next), free(prev), free(heap), -1;
    size_t hn = 0;
    for (uint32_t i = 0; i < n; i++)
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1, prev[i] = (int32_t)i - 1;
    for (uint32_t i = 0; i + 1 < n; i++) {
        uint32_t r = 0, m = 0;
        if (pairmap_get(&t->merges, ids[i], ids[i + 1], &r, &m))
            heap_push(heap, &hn, (cand){r, i, ids[i], ids[i + 1]});
    }
    while (hn) {
        cand c = heap_pop(heap, &hn);
        int32_t nx = next[c.pos];
        /* stale: the left symbol changed or was absorbed, or its neighbour changed */
        if (ids[c.pos] != c.left_id || nx < 0 || ids[nx] != c.right_id || ids[c.pos] == UINT32_MAX)
            continue;
        uint32_t r = 0, merged = 0, unused = 0;
        pairmap_get(&t->merges, c.left_id, c.right_id, &r, &merged);
        ids[c.pos] = merged;
        ids[nx] = UINT32_MAX; /* absorbed */
        next[c.pos] = next[nx];
        if (next[nx] >= 0) prev[next[nx]] = (int32_t)c.pos;
        if (prev[c.pos] >= 0 && pairmap_get(&t->merges, ids[prev[c.pos]], merged, &r, &unused))
            heap_push(heap, &hn, (cand){r, (uint32_t)prev[c.pos], ids[prev[c.pos]], merged});
        if (next[c.pos] >= 0 && pairmap_get(&t->merges, merged, ids[next[c.pos]], &r, &unused))
            heap_push(heap, &hn, (cand){r, c.pos, merged, ids[next[c.pos]]});
    }
    int rc = 0;
    for (int32_t i = 0; i >= 0 && !rc; i = next[i]) rc = push_id(out, ids[i]);
    free(next), free(prev), free(heap);
    return rc;
}

/* ---------------- Unicode classes ---------------- */
static uint32_t decode_cp(const uint8_t *s, size_t n, size_t i, int *len) {
    uint8_t c = s[i];
    int l = c < 0x80             ? 1
            : (c & 0xe0) == 0xc0 ? 2
            : (c & 0xf0) == 0xe0 ? 3
            : (c & 0xf8) == 0xf0 ? 4
                                 : 1;
    if (i + (size_t)l > n) l = 1;
    uint32_t cp = l == 1 ? c : c & (0xff >> (l + 1));
    for (int k = 1; k < l; k++) cp = (cp << 6) | (s[i + k] & 0x3f);
    *len = l;
    return cp;
}

static int is_space(uint32_t c) {
    return c == ' ' || (c >= 9 && c <= 13) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}
static int is_digit(uint32_t c) {
    return (c >= '0' && c <= '9') || c == 0xb2 || c == 0xb3 || c == 0xb9 ||
           (c >= 0xbc && c <= 0xbe) || (c >= 0x660 && c <= 0x669) || (c >= 0x2070 && c <= 0x2079) ||
           (c >= 0x2080 && c <= 0x2089) || (c >= 0x2150 && c <= 0x218b) ||
           (c >= 0x2460 && c <= 0x249b) || (c >= 0xff10 && c <= 0xff19);
}
static int is_letter(uint32_t c) {
    if (c < 0x80) return (c | 32) >= 'a' && (c | 32) <= 'z';
    if (c == 0xaa || c == 0xb5 || c == 0xba) return 1;
    if (c >= 0xc0 && c <= 0x24f) return c != 0xd7 && c != 0xf7;
    if (c >= 0x250 && c <= 0x2c1) return 1;
    if (c >= 0x370 && c <= 0x3ff)
        return c != 0x375 && c != 0x37e && c != 0x384 && c != 0x385 && c != 0x387;
    if (c >= 0x400 && c <= 0x52f) return !(c >= 0x482 && c <= 0x489);
    if (c >= 0x531 && c <= 0x587) return 1;
    if (c >= 0x5d0 && c <= 0x5ea) return 1;
    if (c >= 0x620 && c <= 0x64a) return 1;
    if (c >= 0x900 && c <= 0xdff) return 1; /* Indic scripts (marks included: approximate) */
    if (c >= 0xe00 && c <= 0xe30) return 1;
    if (c >= 0x10a0 && c <= 0x10ff) return 1;
    if (c >= 0x1e00 && c <= 0x1fff) return 1;
    if (c >= 0x3040 && c <= 0x30ff) return c != 0x30fb;
    if (c >= 0x3400 && c <= 0x4dbf) return 1;
    if (c >= 0x4e00 && c <= 0x9fff) return 1;
    if (c >= 0xac00 && c <= 0xd7a3) return 1;
    if (c >= 0xff21 && c <= 0xff3a) return 1;
    if (c >= 0xff41 && c <= 0xff5a) return 1;
    return 0;
}

enum { CL_SPACE, CL_LETTER, CL_DIGIT, CL_OTHER };
static int cls(uint32_t c) {
    return is_space(c) ? CL_SPACE : is_letter(c) ? CL_LETTER : is_digit(c) ? CL_DIGIT : CL_OTHER;
}

/* Length of the GPT-2 pattern match at s[i]. */
static size_t gpt2_piece(const uint8_t *s, size_t n, size_t i) {
    int l0;
    uint32_t c0 = decode_cp(s, n, i, &l0);
    if (c0 == '\'' && i + 1 < n) {
        static const char *ctr[] = {"s", "t", "re", "ve", "m", "ll", "d"};
        for (int k = 0; k < 7; k++) {
            size_t cl = strlen(ctr[k]);
            if (i + 1 + cl <= n && !memcmp(s + i + 1, ctr[k], cl)) return 1 + cl;
        }
    }
    size_t j = i;
    int cl0 = cls(c0);
    if (c0 == ' ' && i + 1 < n) { /* ' ?X+' with X the class of the next character */
        int l1;
        int c1 = cls(decode_cp(s, n, i + 1, &l1));
        if (c1 != CL_SPACE) cl0 = c1, j = i + 1;
    }
    if (cl0 != CL_SPACE) {
        while (j < n) {
            int l;
            if (cls(decode_cp(s, n, j, &l)) != cl0) break;
            j += (size_t)l;
        }
        return j - i;
    }
    /* whitespace: \s+(?!\S) | \s+ */
    size_t k = i, last = i;
    while (k < n) {
        int l;
        if (!is_space(decode_cp(s, n, k, &l))) break;
        last = k;
        k += (size_t)l;
    }
    if (k == n || last == i) return k - i; /* to the end, or a single whitespace character */
    return last - i;                       /* leave the last one to prefix the next piece */
}

static int encode_piece_bytelevel(const tokenizer *t, const uint8_t *s, size_t n, idvec *out,
                                  uint32_t *scratch) {
    for (size_t i = 0; i < n; i++) scratch[i] = t->byte_tok[s[i]];
    return bpe(t, scratch, (uint32_t)n, out);
}

/* sentencepiece-style: characters (▁ for spaces) to ids, unknown ones to <0xXX>, then merges. */
static int encode_sp(const tokenizer *t, const uint8_t *s, size_t n, idvec *out) {
    size_t cap = 3 * n + 8;
    uint32_t *ids = malloc(cap * 4);
    if (!ids) return -1;
    uint32_t k = 0, id;
    if (t->prepend_space) {
        if (strmap_get(&t->vocab, "\xe2\x96\x81", 3, &id)) ids[k++] = id;
    }
    for (size_t i = 0; i < n;) {
        int l;
        decode_cp(s, n, i, &l);
        const char *ch = (const char *)s + i;
        size_t cl = (size_t)l;
        if (s[i] == ' ') ch = "\xe2\x96\x81", cl = 3;
        if (strmap_get(&t->vocab, ch, cl, &id))
            ids[k++] = id;
        else
            for (int b = 0; b < l; b++)
                if (t->fallback_tok[s[i + b]] != UINT32_MAX) ids[k++] = t->fallback_tok[s[i + b]];
        i += (size_t)l;
    }
    int rc = bpe(t, ids, k, out);
    free(ids);
    return rc;
}

spqr_status spqr_tokenize(const char *json, size_t len, const char *text, size_t n,
                          uint32_t **ids_out, uint64_t *count, spqr_error *err) {
    tokenizer t;
    spqr_status st = tok_load(&t, json, len, err);
    if (st) return st;
    idvec out = {0};
    const uint8_t *s = (const uint8_t *)text;
    uint32_t *scratch = malloc((n + 1) * 4);
    int rc = scratch ? 0 : -1;
    size_t i = 0;
    while (i < n && !rc) {
        /* the next special token, if any, bounds this stretch of ordinary text */
        size_t end = n, sp_len = 0;
        uint32_t sp_id = 0;
        for (uint32_t k = 0; k < t.n_special; k++) {
            const char *hit = NULL;
            size_t sl = strlen(t.special[k]);
            for (size_t j = i; sl && j + sl <= end; j++)
                if (s[j] == (uint8_t)t.special[k][0] && !memcmp(s + j, t.special[k], sl)) {
                    hit = (const char *)s + j;
                    break;
                }
            if (hit) end = (size_t)((const uint8_t *)hit - s), sp_len = sl, sp_id = t.special_id[k];
        }
        if (t.byte_level) {
            for (size_t j = i; j < end && !rc;) {
                size_t pl = gpt2_piece(s, end, j);
                if (!pl) pl = 1;
                rc = encode_piece_bytelevel(&t, s + j, pl, &out, scratch);
                j += pl;
            }
        } else if (end > i) {
            rc = encode_sp(&t, s + i, end - i, &out);
        }
        if (sp_len && !rc) rc = push_id(&out, sp_id);
        i = end + sp_len;
    }
    free(scratch);
    tok_free(&t);
    if (rc) {
        free(out.v);
        return spqr_set_error(err, SPQR_E_NOMEM, 0, UINT64_MAX, "out of memory while tokenizing");
    }
    *ids_out = out.v ? out.v : malloc(4);
    *count = out.n;
    return SPQR_OK;
}
