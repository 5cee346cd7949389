/* Pre-tokenizers: the regexes of GPT-2, cl100k_base and Qwen2, hand-compiled.
 * Each call returns the length of the leftmost-first match at the start of
 * the text, trying the alternatives in the pattern's order:
 *
 * GPT-2:   's|'t|'re|'ve|'m|'ll|'d | ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+ | \s+(?!\S) | \s+
 * cl100k:  (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,3}
 *          | ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
 * Qwen2:   as cl100k with \p{N} instead of \p{N}{1,3}
 */
#include <ctype.h>
#include <string.h>

#include "tok_internal.h"

typedef struct {
    const unsigned char *s;
    size_t n;
} text;

/* code point at byte i (i < n) and its length */
static uint32_t at(const text *t, size_t i, int *len) {
    uint32_t cp;
    *len = lina_utf8_decode(t->s + i, t->n - i, &cp);
    return cp;
}

static int is_other(uint32_t cp) { return !lina_cp_is_space(cp) && !lina_cp_is_letter(cp) && !lina_cp_is_number(cp); }

/* end of the longest run starting at i of code points satisfying pred (max_count < 0: unbounded) */
static size_t run(const text *t, size_t i, int (*pred)(uint32_t), int max_count) {
    int count = 0, len;
    while (i < t->n && (max_count < 0 || count < max_count) && pred(at(t, i, &len))) {
        i += len;
        count++;
    }
    return i;
}

/* 's 't 're 've 'm 'll 'd, optionally case-insensitive; returns the match length or 0 */
static size_t contraction(const text *t, int icase) {
    static const char *suffixes[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    if (t->n < 2 || t->s[0] != '\'') return 0;
    for (int k = 0; k < 7; k++) {
        size_t m = strlen(suffixes[k]);
        if (1 + m > t->n) continue;
        size_t j = 0;
        for (; j < m; j++) {
            unsigned char c = t->s[1 + j];
            if (!(c == (unsigned char)suffixes[k][j] || (icase && tolower(c) == suffixes[k][j]))) break;
        }
        if (j == m) return 1 + m;
    }
    return 0;
}

/* " ?X+" : an optional ASCII space, then one or more X */
static size_t space_then_run(const text *t, int (*pred)(uint32_t), int max_count) {
    int len;
    size_t start = t->s[0] == ' ' && t->n > 1 && pred(at(t, 1, &len)) ? 1 : 0;
    if (!pred(at(t, start, &len))) return 0;
    return run(t, start, pred, max_count);
}

static int is_space(uint32_t cp) { return lina_cp_is_space(cp); }
static int is_newline(uint32_t cp) { return cp == '\r' || cp == '\n'; }

/* \s+(?!\S) | \s+ : a whitespace run; when a non-space follows, leave its last
 * code point to the next piece (unless the run is a single code point). */
static size_t whitespace(const text *t) {
    size_t end = run(t, 0, is_space, -1);
    if (end == 0) return 0;
    if (end == t->n) return end;
    /* back off one code point: find the start of the last code point of the run */
    size_t last = 0, i = 0;
    int len;
    while (i < end) {
        last = i;
        at(t, i, &len);
        i += len;
    }
    return last > 0 ? last : end;
}

static size_t gpt2(const text *t) {
    size_t m;
    if ((m = contraction(t, 0))) return m;
    if ((m = space_then_run(t, lina_cp_is_letter, -1))) return m;
    if ((m = space_then_run(t, lina_cp_is_number, -1))) return m;
    if ((m = space_then_run(t, is_other, -1))) return m;
    if ((m = whitespace(t))) return m;
    int len;
    at(t, 0, &len);
    return (size_t)len;
}

static int not_newline_letter_number(uint32_t cp) {
    return !is_newline(cp) && !lina_cp_is_letter(cp) && !lina_cp_is_number(cp);
}

static size_t cl100k(const text *t, int max_digits) {
    size_t m;
    int len, len2;
    if ((m = contraction(t, 1))) return m;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    uint32_t c0 = at(t, 0, &len);
    if (not_newline_letter_number(c0) && (size_t)len < t->n && lina_cp_is_letter(at(t, (size_t)len, &len2)))
        return run(t, (size_t)len, lina_cp_is_letter, -1);
    if (lina_cp_is_letter(c0)) return run(t, 0, lina_cp_is_letter, -1);
    /* \p{N}{1,max} */
    if (lina_cp_is_number(c0)) return run(t, 0, lina_cp_is_number, max_digits);
    /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    if ((m = space_then_run(t, is_other, -1))) return run(t, m, is_newline, -1);
    /* \s*[\r\n]+ : the whitespace run up to and including its last newline */
    size_t end = run(t, 0, is_space, -1), last_nl = 0;
    for (size_t i = 0; i < end; i++)
        if (t->s[i] == '\r' || t->s[i] == '\n') last_nl = i + 1;
    if (last_nl) return last_nl;
    if ((m = whitespace(t))) return m;
    return (size_t)len;
}

size_t lina_pretok_next(lina_pretok p, const unsigned char *s, size_t n) {
    text t = {s, n};
    switch (p) {
    case LINA_PRETOK_CL100K: return cl100k(&t, 3);
    case LINA_PRETOK_QWEN2: return cl100k(&t, 1);
    default: return gpt2(&t);
    }
}
