/* Byte-level BPE: the token table (bytes <-> id), the merge table, and the
 * merge loop that encodes one pre-tokenized piece.
 *
 * MERGES mode (Hugging Face, GPT-2): start from single bytes; repeatedly merge
 * the adjacent pair with the lowest merge rank (leftmost on ties).
 * RANKS mode (tiktoken): a piece that is a token is that token; otherwise
 * repeatedly merge the adjacent pair whose concatenation is the token with the
 * lowest id (leftmost on ties). */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "tok_internal.h"

static uint64_t hash_bytes(const unsigned char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

lina_status tok_init(lina_tokenizer *t, int n_ids_hint) {
    memset(t, 0, sizeof *t);
    t->arena_cap = 1 << 20;
    t->arena = malloc(t->arena_cap);
    t->n_ids = 0;
    t->tok = calloc((size_t)(n_ids_hint > 0 ? n_ids_hint : 1), sizeof *t->tok);
    t->byte_cap = 1;
    while (t->byte_cap < 2 * (size_t)(n_ids_hint > 16 ? n_ids_hint : 16)) t->byte_cap *= 2;
    t->byte_map = malloc(t->byte_cap * sizeof *t->byte_map);
    if (!t->arena || !t->tok || !t->byte_map) return lina_fail(LINA_ERR_OOM, "tokenizer: out of memory");
    memset(t->byte_map, 0xff, t->byte_cap * sizeof *t->byte_map);
    t->ids_cap = n_ids_hint > 0 ? n_ids_hint : 1;
    return LINA_OK;
}

int32_t tok_lookup(const lina_tokenizer *t, const unsigned char *b, size_t n) {
    size_t mask = t->byte_cap - 1, i = (size_t)hash_bytes(b, n) & mask;
    for (; t->byte_map[i] >= 0; i = (i + 1) & mask) {
        const tok_entry *e = &t->tok[t->byte_map[i]];
        if (e->len == n && !memcmp(t->arena + e->off, b, n)) return t->byte_map[i];
    }
    return -1;
}

static lina_status grow_byte_map(lina_tokenizer *t) {
    size_t cap = t->byte_cap * 2;
    int32_t *m = malloc(cap * sizeof *m);
    if (!m) return lina_fail(LINA_ERR_OOM, "tokenizer: out of memory");
    memset(m, 0xff, cap * sizeof *m);
    for (size_t j = 0; j < t->byte_cap; j++) {
        int32_t id = t->byte_map[j];
        if (id < 0) continue;
        size_t i = (size_t)hash_bytes(t->arena + t->tok[id].off, t->tok[id].len) & (cap - 1);
        while (m[i] >= 0) i = (i + 1) & (cap - 1);
        m[i] = id;
    }
    free(t->byte_map);
    t->byte_map = m;
    t->byte_cap = cap;
    return LINA_OK;
}

lina_status tok_set(lina_tokenizer *t, int64_t id, const unsigned char *b, size_t n, int index) {
    if (id < 0 || id >= (1 << 30)) return lina_fail(LINA_ERR_FORMAT, "tokenizer: token id %lld out of range", (long long)id);
    if (n == 0 || n > (1 << 20)) return lina_fail(LINA_ERR_FORMAT, "tokenizer: token %lld has %zu bytes", (long long)id, n);
    if (id >= t->ids_cap) {
        int cap = t->ids_cap;
        while (cap <= id) cap *= 2;
        tok_entry *e = realloc(t->tok, (size_t)cap * sizeof *e);
        if (!e) return lina_fail(LINA_ERR_OOM, "tokenizer: out of memory");
        memset(e + t->ids_cap, 0, (size_t)(cap - t->ids_cap) * sizeof *e);
        t->tok = e;
        t->ids_cap = cap;
    }
    if (t->tok[id].len) return lina_fail(LINA_ERR_FORMAT, "tokenizer: token id %lld defined twice", (long long)id);
    int32_t other = index ? tok_lookup(t, b, n) : -1;
    if (other >= 0)
        return lina_fail(LINA_ERR_FORMAT, "tokenizer: ids %d and %lld have the same bytes", other, (long long)id);
    if (t->arena_len + n > t->arena_cap) {
        size_t cap = t->arena_cap;
        while (t->arena_len + n > cap) cap *= 2;
        unsigned char *a = realloc(t->arena, cap);
        if (!a) return lina_fail(LINA_ERR_OOM, "tokenizer: out of memory");
        t->arena = a;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, b, n);
    t->tok[id].off = (uint32_t)t->arena_len;
    t->tok[id].len = (uint32_t)n;
    t->arena_len += n;
    if (id >= t->n_ids) t->n_ids = (int)id + 1;
    if (!index) return LINA_OK;
    if (++t->n_set * 2 > t->byte_cap) {
        lina_status st = grow_byte_map(t);
        if (st) return st;
    }
    size_t mask = t->byte_cap - 1, i = (size_t)hash_bytes(b, n) & mask;
    while (t->byte_map[i] >= 0) i = (i + 1) & mask;
    t->byte_map[i] = (int32_t)id;
    return LINA_OK;
}

static const tok_merge *find_merge(const lina_tokenizer *t, uint64_t key) {
    if (!t->merge_cap) return NULL;
    size_t mask = t->merge_cap - 1;
    for (size_t i = (size_t)hash_u64(key) & mask; t->merges[i].key != UINT64_MAX; i = (i + 1) & mask)
        if (t->merges[i].key == key) return &t->merges[i];
    return NULL;
}

static void put_merge(tok_merge *tab, size_t cap, tok_merge m) {
    size_t i = (size_t)hash_u64(m.key) & (cap - 1);
    while (tab[i].key != UINT64_MAX && tab[i].key != m.key) i = (i + 1) & (cap - 1);
    tab[i] = m;
}

lina_status tok_add_merge(lina_tokenizer *t, int32_t left, int32_t right, int32_t rank) {
    const tok_entry *l = &t->tok[left], *r = &t->tok[right];
    unsigned char small[512], *buf = small;
    if (l->len + r->len > sizeof small && !(buf = malloc(l->len + r->len)))
        return lina_fail(LINA_ERR_OOM, "tokenizer: out of memory");
    memcpy(buf, t->arena + l->off, l->len);
    memcpy(buf + l->len, t->arena + r->off, r->len);
    int32_t result = tok_lookup(t, buf, l->len + r->len);
    if (buf != small) free(buf);
    if (result < 0) return lina_fail(LINA_ERR_FORMAT, "tokenizer: merge %d of ids %d + %d makes no token", rank, left, right);
    if ((t->n_merges + 1) * 2 > t->merge_cap) {
        size_t cap = t->merge_cap ? 2 * t->merge_cap : 1024;
        tok_merge *m = malloc(cap * sizeof *m);
        if (!m) return lina_fail(LINA_ERR_OOM, "tokenizer: out of memory");
        for (size_t i = 0; i < cap; i++) m[i].key = UINT64_MAX;
        for (size_t i = 0; i < t->merge_cap; i++)
            if (t->merges[i].key != UINT64_MAX) put_merge(m, cap, t->merges[i]);
        free(t->merges);
        t->merges = m;
        t->merge_cap = cap;
    }
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    if (find_merge(t, key)) return LINA_OK; /* a repeated merge keeps its first (lowest) rank */
    put_merge(t->merges, t->merge_cap, (tok_merge){key, rank, result});
    t->n_merges++;
    return LINA_OK;
}

lina_status tok_finish(lina_tokenizer *t) {
    /* every ASCII byte must be a token; bytes that never occur in UTF-8 (0xC0, 0xC1, 0xF5-0xFF) may be
     * missing (GPT-NeoX drops them): encoding such a byte is then an error */
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        t->byte_id[b] = tok_lookup(t, &c, 1);
        if (t->byte_id[b] < 0 && b < 0x80)
            return lina_fail(LINA_ERR_FORMAT, "tokenizer: byte 0x%02x has no token (not a byte-level vocabulary)", b);
    }
    return LINA_OK;
}

static lina_status push(int64_t **out, size_t *n, size_t *cap, int64_t id) {
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        int64_t *p = realloc(*out, c * sizeof *p);
        if (!p) return lina_fail(LINA_ERR_OOM, "tokenizer: out of memory");
        *out = p;
        *cap = c;
    }
    (*out)[(*n)++] = id;
    return LINA_OK;
}

/* rank of merging parts (a, b) or INT32_MAX; *result the merged id */
static int32_t pair_rank(const lina_tokenizer *t, const unsigned char *s, const uint32_t *start, const int32_t *id,
                         int i, int j, int32_t *result) {
    if (t->mode == TOK_MERGES) {
        const tok_merge *m = find_merge(t, (uint64_t)(uint32_t)id[i] << 32 | (uint32_t)id[j]);
        if (!m) return INT32_MAX;
        *result = m->result;
        return m->rank;
    }
    /* RANKS: the concatenated bytes s[start[i] .. end of part j) */
    int32_t r = tok_lookup(t, s + start[i], start[j + 1] - start[i]);
    *result = r;
    return r < 0 ? INT32_MAX : r;
}

lina_status tok_encode_piece(const lina_tokenizer *t, const unsigned char *s, size_t n, int64_t **out, size_t *n_out,
                             size_t *cap) {
    if (n == 0) return LINA_OK;
    if (t->mode == TOK_RANKS || n == 1) { /* tiktoken: a piece that is a token stays whole */
        int32_t whole = tok_lookup(t, s, n);
        if (whole >= 0) return push(out, n_out, cap, whole);
    }
    int m = (int)n;
    uint32_t *start = malloc((size_t)(m + 1) * sizeof *start);
    int32_t *id = malloc((size_t)m * sizeof *id);
    if (!start || !id) {
        free(start);
        free(id);
        return lina_fail(LINA_ERR_OOM, "tokenizer: out of memory for a piece of %zu bytes", n);
    }
    /* a compact array of the live parts: start[k], id[k], k = 0..m-1, start[m] = n */
    for (int k = 0; k < m; k++) {
        start[k] = (uint32_t)k;
        id[k] = t->byte_id[s[k]];
        if (id[k] < 0) {
            free(start);
            free(id);
            return lina_fail(LINA_ERR_INVALID_ARG, "tokenizer: byte 0x%02x has no token in this vocabulary", s[k]);
        }
    }
    start[m] = (uint32_t)n;
    for (;;) {
        int best = -1;
        int32_t best_rank = INT32_MAX, best_result = -1, res;
        for (int k = 0; k + 1 < m; k++) {
            int32_t r = pair_rank(t, s, start, id, k, k + 1, &res);
            if (r < best_rank) {
                best_rank = r;
                best = k;
                best_result = res;
            }
        }
        if (best < 0) break;
        id[best] = best_result;
        memmove(id + best + 1, id + best + 2, (size_t)(m - best - 2) * sizeof *id);
        memmove(start + best + 1, start + best + 2, (size_t)(m - best - 1) * sizeof *start);
        m--;
    }
    lina_status st = LINA_OK;
    for (int k = 0; k < m && !st; k++) st = push(out, n_out, cap, id[k]);
    free(start);
    free(id);
    return st;
}
