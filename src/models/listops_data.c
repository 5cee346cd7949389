/* LRA ListOps generator (see include/lina/listops.h for the process). */
#include <stdlib.h>

#include "../core/internal.h"
#include "lina/listops.h"

lina_listops_config lina_listops_config_default(void) {
    lina_listops_config c = {500, 2000, 10, 10};
    return c;
}

lina_status lina_listops_config_check(const lina_listops_config *c) {
    if (!c) return lina_fail(LINA_ERR_INVALID_ARG, "listops: config is NULL");
    if (c->max_depth < 2 || c->max_depth > 20)
        return lina_fail(LINA_ERR_INVALID_ARG, "listops: max_depth = %d must be in [2, 20]", c->max_depth);
    if (c->max_args < 2 || c->max_args > 10)
        return lina_fail(LINA_ERR_INVALID_ARG, "listops: max_args = %d must be in [2, 10]", c->max_args);
    /* the shortest expression is [OP d d ] (4 tokens) */
    if (c->min_len < 4)
        return lina_fail(LINA_ERR_INVALID_ARG, "listops: min_len = %d must be >= 4 ([OP d d ])", c->min_len);
    if (c->max_len < c->min_len)
        return lina_fail(LINA_ERR_INVALID_ARG, "listops: max_len = %d must be >= min_len = %d", c->max_len,
                         c->min_len);
    if (c->max_len > 100000)
        return lina_fail(LINA_ERR_INVALID_ARG, "listops: max_len = %d must be <= 100000", c->max_len);
    /* the largest tree: every node an operator of max_args arguments down to max_depth */
    double most = 1;
    for (int d = 1; d < c->max_depth; d++) most = most * c->max_args + 2;
    if (most < c->min_len)
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "listops: min_len = %d is longer than any tree of depth %d with %d arguments (%.0f)",
                         c->min_len, c->max_depth, c->max_args, most);
    return LINA_OK;
}

const char *lina_listops_token_name(int t) {
    static const char *names[] = {"0", "1", "2", "3", "4", "5", "6", "7",
                                  "8", "9", "[MIN", "[MAX", "[MED", "[SM", "]"};
    return t >= 0 && t < LINA_LISTOPS_VOCAB ? names[t] : "?";
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double uniform01(uint64_t *s) { return (splitmix64(s) >> 11) * (1.0 / 9007199254740992.0); }
static int uniform_int(uint64_t *s, int n) { return (int)(uniform01(s) * n); }

typedef struct {
    const lina_listops_config *c;
    uint64_t rng;
    int32_t *out; /* (max_len) */
    int len;      /* tokens emitted so far; > max_len means "too long, stop" */
} tree_writer;

static void emit(tree_writer *w, int32_t t) {
    if (w->len < w->c->max_len) w->out[w->len] = t;
    w->len++;
}

/* Writes one node at `depth` and returns its value (meaningless once too long). */
static int write_node(tree_writer *w, int depth) {
    if (w->len > w->c->max_len) return 0;
    double r = depth < w->c->max_depth ? uniform01(&w->rng) : 1.0;
    if (r > 0.25) {
        int v = uniform_int(&w->rng, 10);
        emit(w, v);
        return v;
    }
    int op = LINA_LISTOPS_MIN + uniform_int(&w->rng, 4);
    int nargs = 2 + uniform_int(&w->rng, w->c->max_args - 1);
    emit(w, op);
    int vals[10], count[10] = {0};
    for (int a = 0; a < nargs; a++) {
        vals[a] = write_node(w, depth + 1);
        if (w->len > w->c->max_len) return 0;
        count[vals[a]]++;
    }
    emit(w, LINA_LISTOPS_END);
    int v = 0, sum = 0, seen = 0, lo = -1, hi = -1;
    switch (op) {
    case LINA_LISTOPS_MIN:
        v = 9;
        for (int a = 0; a < nargs; a++) v = vals[a] < v ? vals[a] : v;
        return v;
    case LINA_LISTOPS_MAX:
        for (int a = 0; a < nargs; a++) v = vals[a] > v ? vals[a] : v;
        return v;
    case LINA_LISTOPS_SM:
        for (int a = 0; a < nargs; a++) sum += vals[a];
        return sum % 10;
    default: /* MED: sorted ranks (nargs-1)/2 and nargs/2 via the digit histogram */
        for (int d = 0; d < 10; d++) {
            if (lo < 0 && seen + count[d] > (nargs - 1) / 2) lo = d;
            if (hi < 0 && seen + count[d] > nargs / 2) hi = d;
            seen += count[d];
        }
        return (lo + hi) / 2;
    }
}

lina_status lina_listops_generate(const lina_listops_config *c, int n, uint64_t seed,
                                  int32_t *tokens, int32_t *lengths, int32_t *labels) {
    lina_status st = lina_listops_config_check(c);
    if (st) return st;
    if (n < 0) return lina_fail(LINA_ERR_INVALID_ARG, "listops_generate: n = %d must be >= 0", n);
    if (n && (!tokens || !lengths || !labels))
        return lina_fail(LINA_ERR_INVALID_ARG, "listops_generate: NULL output");
    int gave_up = 0; /* an example that found no tree in the range after 10^6 draws */
#pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < n; i++) {
        /* example i's stream starts at a hash of (seed, i): the streams of
         * neighbouring examples must not be shifted copies of each other */
        uint64_t h = seed;
        h = splitmix64(&h) ^ (uint64_t)i;
        tree_writer w = {c, splitmix64(&h), tokens + (size_t)i * c->max_len, 0};
        lengths[i] = 0;
        labels[i] = -1;
        for (int attempt = 0; attempt < 1000000; attempt++) {
            w.len = 0;
            int v = write_node(&w, 1);
            if (w.len >= c->min_len && w.len <= c->max_len) {
                lengths[i] = w.len;
                labels[i] = v;
                break;
            }
        }
        if (!lengths[i]) {
#pragma omp atomic write
            gave_up = 1;
        }
        for (int t = lengths[i]; t < c->max_len; t++) w.out[t] = -1;
    }
    if (gave_up)
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "listops_generate: no tree with %d..%d tokens in 10^6 draws (range too narrow)",
                         c->min_len, c->max_len);
    return LINA_OK;
}
