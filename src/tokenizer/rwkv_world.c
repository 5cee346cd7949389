/* The RWKV "world" tokenizer (rwkv_vocab_v20230424.txt, BlinkDL/ChatRWKV):
 * 65,529 byte strings, every single byte among them; encoding is a greedy
 * longest match from left to right over the bytes (no pre-tokenizer, no
 * merges), decoding concatenates bytes.
 *
 * Vocabulary lines: `id repr bytelen`, repr a Python literal: 'str' or "str"
 * (UTF-8 of the code points; escapes \\ \' \" \n \r \t \xHH \uHHHH \UHHHHHHHH)
 * or b'bytes' (\xHH is a byte). bytelen checks the parse.
 * The longest match walks a byte trie: node children as sibling lists, the
 * root's 256 children indexed directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "lina/tokenizer.h"

typedef struct {
    int32_t first_child, next_sibling; /* -1: none */
    int32_t id;                        /* token ending here, or -1 */
    uint8_t byte;
} trie_node;

struct lina_rwkv_tokenizer {
    int n_ids;         /* largest id + 1 */
    int cap_ids;       /* allocated entries of bytes and lens */
    uint8_t **bytes;   /* (n_ids) token bytes or NULL */
    int *lens;         /* (n_ids) */
    trie_node *nodes;  /* nodes[0] is the root */
    int n_nodes, cap_nodes;
    int32_t root[256]; /* child of the root per first byte, or -1 */
};

static int32_t new_node(lina_rwkv_tokenizer *t, uint8_t byte) {
    if (t->n_nodes == t->cap_nodes) {
        int cap = t->cap_nodes ? 2 * t->cap_nodes : 1 << 16;
        trie_node *n = realloc(t->nodes, (size_t)cap * sizeof *n);
        if (!n) return -1;
        t->nodes = n;
        t->cap_nodes = cap;
    }
    trie_node *n = &t->nodes[t->n_nodes];
    n->first_child = n->next_sibling = n->id = -1;
    n->byte = byte;
    return t->n_nodes++;
}

static int32_t child(const lina_rwkv_tokenizer *t, int32_t node, uint8_t byte) {
    if (node < 0) return t->root[byte];
    for (int32_t c = t->nodes[node].first_child; c >= 0; c = t->nodes[c].next_sibling)
        if (t->nodes[c].byte == byte) return c;
    return -1;
}

static lina_status insert(lina_rwkv_tokenizer *t, const uint8_t *b, int len, int id) {
    int32_t node = -1;
    for (int i = 0; i < len; i++) {
        int32_t c = child(t, node, b[i]);
        if (c < 0) {
            if ((c = new_node(t, b[i])) < 0) return lina_fail(LINA_ERR_OOM, "rwkv tokenizer: out of memory");
            if (node < 0) {
                t->root[b[i]] = c;
            } else {
                t->nodes[c].next_sibling = t->nodes[node].first_child;
                t->nodes[node].first_child = c;
            }
        }
        node = c;
    }
    if (t->nodes[node].id >= 0)
        return lina_fail(LINA_ERR_FORMAT, "rwkv tokenizer: ids %d and %d have the same bytes", t->nodes[node].id, id);
    t->nodes[node].id = id;
    return LINA_OK;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int put_utf8(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) return out[0] = (uint8_t)cp, 1;
    if (cp < 0x800) return out[0] = (uint8_t)(0xC0 | cp >> 6), out[1] = (uint8_t)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12), out[1] = (uint8_t)(0x80 | (cp >> 6 & 63));
        out[2] = (uint8_t)(0x80 | (cp & 63));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18), out[1] = (uint8_t)(0x80 | (cp >> 12 & 63));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 63)), out[3] = (uint8_t)(0x80 | (cp & 63));
    return 4;
}

/* Parse the Python literal s[0..n) into out (capacity >= 4 n); returns the byte
 * count or -1. */
static int parse_literal(const char *s, size_t n, uint8_t *out) {
    int is_bytes = 0;
    size_t i = 0;
    if (n && s[0] == 'b') is_bytes = 1, i = 1;
    if (n < i + 2 || (s[i] != '\'' && s[i] != '"') || s[n - 1] != s[i]) return -1;
    char q = s[i++];
    int len = 0;
    for (; i < n - 1; i++) {
        char c = s[i];
        if (c == q) return -1;
        if (c != '\\') { /* literal characters: their UTF-8 bytes as they are in the file */
            out[len++] = (uint8_t)c;
            continue;
        }
        if (++i >= n - 1) return -1;
        c = s[i];
        uint32_t cp;
        int digits = 0;
        switch (c) {
        case '\\': case '\'': case '"': out[len++] = (uint8_t)c; continue;
        case 'n': out[len++] = '\n'; continue;
        case 'r': out[len++] = '\r'; continue;
        case 't': out[len++] = '\t'; continue;
        case 'x': digits = 2; break;
        case 'u': digits = is_bytes ? 0 : 4; break;
        case 'U': digits = is_bytes ? 0 : 8; break;
        default: return -1;
        }
        if (!digits) return -1;
        if (i + digits >= n) return -1;
        cp = 0;
        for (int d = 1; d <= digits; d++) {
            int h = hexval(s[i + d]);
            if (h < 0) return -1;
            cp = cp * 16 + (uint32_t)h;
        }
        i += digits;
        if (is_bytes) out[len++] = (uint8_t)cp; /* \xHH: one byte */
        else if (cp > 0x10FFFF) return -1;
        else len += put_utf8(cp, out + len); /* a code point: its UTF-8 */
    }
    return len;
}

void lina_rwkv_tokenizer_free(lina_rwkv_tokenizer *t) {
    if (!t) return;
    for (int i = 0; t->bytes && i < t->cap_ids; i++) free(t->bytes[i]);
    free(t->bytes);
    free(t->lens);
    free(t->nodes);
    free(t);
}

static lina_status add_token(lina_rwkv_tokenizer *t, int id, const uint8_t *b, int len) {
    if (id >= t->cap_ids) {
        int n = id + 1 > 2 * t->cap_ids ? id + 1 : 2 * t->cap_ids;
        uint8_t **nb = realloc(t->bytes, (size_t)n * sizeof *nb);
        if (nb) t->bytes = nb;
        int *nl = realloc(t->lens, (size_t)n * sizeof *nl);
        if (nl) t->lens = nl;
        if (!nb || !nl) return lina_fail(LINA_ERR_OOM, "rwkv tokenizer: out of memory");
        for (int i = t->cap_ids; i < n; i++) t->bytes[i] = NULL, t->lens[i] = 0;
        t->cap_ids = n;
    }
    if (id >= t->n_ids) t->n_ids = id + 1;
    if (t->bytes[id]) return lina_fail(LINA_ERR_FORMAT, "rwkv tokenizer: id %d appears twice", id);
    if (!(t->bytes[id] = malloc((size_t)len))) return lina_fail(LINA_ERR_OOM, "rwkv tokenizer: out of memory");
    memcpy(t->bytes[id], b, (size_t)len);
    t->lens[id] = len;
    return insert(t, b, len, id);
}

static lina_status load(lina_rwkv_tokenizer *t, FILE *f, const char *path) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int lineno = 0;
    uint8_t *buf = NULL;
    size_t buf_cap = 0;
    lina_status st = LINA_OK;
    while (!st && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (!got) continue;
        char *sp1 = strchr(line, ' '), *sp2 = strrchr(line, ' ');
        char *end1, *end2;
        long id = sp1 ? strtol(line, &end1, 10) : -1, bytelen = sp2 ? strtol(sp2 + 1, &end2, 10) : -1;
        if (!sp1 || sp2 == sp1 || end1 != sp1 || *end2 || id < 0 || id > (1 << 24) || bytelen < 1) {
            st = lina_fail(LINA_ERR_FORMAT, "'%s' line %d: not 'id literal bytelen'", path, lineno);
            break;
        }
        size_t n = (size_t)(sp2 - sp1 - 1);
        if (4 * n > buf_cap) {
            buf_cap = 4 * n;
            uint8_t *nb = realloc(buf, buf_cap);
            if (!nb) {
                st = lina_fail(LINA_ERR_OOM, "rwkv tokenizer: out of memory");
                break;
            }
            buf = nb;
        }
        int len = parse_literal(sp1 + 1, n, buf);
        if (len != bytelen) {
            st = lina_fail(LINA_ERR_FORMAT, "'%s' line %d: literal %.*s gives %d bytes, the line says %ld", path, lineno,
                           (int)n, sp1 + 1, len, bytelen);
            break;
        }
        st = add_token(t, (int)id, buf, len);
    }
    free(line);
    free(buf);
    if (!st)
        for (int b = 0; b < 256; b++) {
            int32_t c = t->root[b];
            if (c < 0 || t->nodes[c].id < 0) {
                st = lina_fail(LINA_ERR_FORMAT, "'%s': byte 0x%02x has no token (every byte needs one)", path, b);
                break;
            }
        }
    return st;
}

lina_status lina_rwkv_tokenizer_load(const char *vocab_txt, lina_rwkv_tokenizer **out) {
    if (!vocab_txt || !out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_rwkv_tokenizer_load: NULL argument");
    *out = NULL;
    FILE *f = fopen(vocab_txt, "r");
    if (!f) return lina_fail(LINA_ERR_IO, "'%s': cannot open", vocab_txt);
    lina_rwkv_tokenizer *t = calloc(1, sizeof *t);
    lina_status st = t ? LINA_OK : lina_fail(LINA_ERR_OOM, "rwkv tokenizer: out of memory");
    if (t) {
        for (int b = 0; b < 256; b++) t->root[b] = -1;
        st = load(t, f, vocab_txt);
    }
    fclose(f);
    if (st) {
        lina_rwkv_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LINA_OK;
}

int lina_rwkv_tokenizer_vocab_size(const lina_rwkv_tokenizer *t) { return t ? t->n_ids : 0; }

lina_status lina_rwkv_tokenizer_encode(const lina_rwkv_tokenizer *t, const char *text, size_t len, int64_t **ids,
                                       size_t *n_ids) {
    if (!t || (!text && len) || !ids || !n_ids)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_rwkv_tokenizer_encode: NULL argument");
    const uint8_t *b = (const uint8_t *)text;
    int64_t *out = malloc((len ? len : 1) * sizeof *out); /* at most one token per byte */
    if (!out) return lina_fail(LINA_ERR_OOM, "lina_rwkv_tokenizer_encode: out of memory for %zu bytes", len);
    size_t n = 0, i = 0;
    while (i < len) { /* longest token starting at i */
        int32_t node = t->root[b[i]];
        int32_t best = t->nodes[node].id;
        size_t best_len = 1, j = i + 1;
        while (j < len && (node = child(t, node, b[j])) >= 0) {
            j++;
            if (t->nodes[node].id >= 0) best = t->nodes[node].id, best_len = j - i;
        }
        out[n++] = best;
        i += best_len;
    }
    *ids = out;
    *n_ids = n;
    return LINA_OK;
}

lina_status lina_rwkv_tokenizer_decode(const lina_rwkv_tokenizer *t, const int64_t *ids, size_t n_ids, char **text,
                                       size_t *len) {
    if (!t || (!ids && n_ids) || !text || !len)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_rwkv_tokenizer_decode: NULL argument");
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || !t->bytes[ids[i]])
            return lina_fail(LINA_ERR_INVALID_ARG, "lina_rwkv_tokenizer_decode: id %lld at position %zu is not in the vocabulary",
                             (long long)ids[i], i);
        total += (size_t)t->lens[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out) return lina_fail(LINA_ERR_OOM, "lina_rwkv_tokenizer_decode: out of memory for %zu bytes", total);
    size_t pos = 0;
    for (size_t i = 0; i < n_ids; i++) {
        memcpy(out + pos, t->bytes[ids[i]], (size_t)t->lens[ids[i]]);
        pos += (size_t)t->lens[ids[i]];
    }
    out[pos] = 0;
    *text = out;
    *len = pos;
    return LINA_OK;
}
