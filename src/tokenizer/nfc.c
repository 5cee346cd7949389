/* Unicode normalization form C (canonical decomposition, canonical ordering,
 * canonical composition), as Hugging Face tokenizers' NFC normalizer applies
 * it before pre-tokenization. Hangul syllables are (de)composed by formula;
 * everything else comes from the generated tables in unicode_tables.c. */
#include <stdlib.h>

#include "../core/internal.h"
#include "tok_internal.h"

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21, TCOUNT = 28 };
enum { NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static uint32_t ccc_of(uint32_t cp) {
    int lo = 0, hi = lina_ccc_table_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < lina_ccc_table[mid].cp) hi = mid - 1;
        else if (cp > lina_ccc_table[mid].cp) lo = mid + 1;
        else return lina_ccc_table[mid].ccc;
    }
    return 0;
}

static const lina_cp_decomp *decomp_of(uint32_t cp) {
    int lo = 0, hi = lina_decomp_table_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < lina_decomp_table[mid].cp) hi = mid - 1;
        else if (cp > lina_decomp_table[mid].cp) lo = mid + 1;
        else return &lina_decomp_table[mid];
    }
    return NULL;
}

/* the primary composite of a + b, or 0 */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    int lo = 0, hi = lina_comp_table_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const lina_cp_comp *c = &lina_comp_table[mid];
        if (a < c->a || (a == c->a && b < c->b)) hi = mid - 1;
        else if (a > c->a || b > c->b) lo = mid + 1;
        else return c->cp;
    }
    return 0;
}

/* full canonical decomposition of cp appended to buf (room checked by the caller: <= 4 per level) */
static size_t decompose(uint32_t cp, uint32_t *buf, size_t n) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE;
        buf[n++] = LBASE + s / NCOUNT;
        buf[n++] = VBASE + (s % NCOUNT) / TCOUNT;
        if (s % TCOUNT) buf[n++] = TBASE + s % TCOUNT;
        return n;
    }
    const lina_cp_decomp *d = decomp_of(cp);
    if (!d) {
        buf[n++] = cp;
        return n;
    }
    n = decompose(d->a, buf, n);
    return d->b ? decompose(d->b, buf, n) : n;
}

lina_status lina_nfc(const unsigned char *s, size_t n, unsigned char **out, size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    size_t i = 0;
    while (i < n && s[i] < 0xCC) i++; /* everything below U+0300 is already NFC */
    if (i == n) return LINA_OK;
    /* a code point decomposes into at most 18 (Unicode's stated bound) */
    uint32_t *cps = malloc((n * 18 + 1) * sizeof *cps);
    unsigned char *o = malloc(n * 4 + 4);
    if (!cps || !o) {
        free(cps);
        free(o);
        return lina_fail(LINA_ERR_OOM, "NFC: out of memory for %zu bytes", n);
    }
    size_t m = 0;
    for (i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)lina_utf8_decode(s + i, n - i, &cp);
        m = decompose(cp, cps, m);
    }
    /* canonical ordering: stable sort of each run of non-starters by combining class */
    for (size_t k = 1; k < m; k++) {
        uint32_t c = cps[k], cc = ccc_of(c);
        if (!cc) continue;
        size_t j = k;
        while (j > 0 && ccc_of(cps[j - 1]) > cc) {
            cps[j] = cps[j - 1];
            j--;
        }
        cps[j] = c;
    }
    /* canonical composition */
    size_t r = 0;
    long starter = -1;
    uint32_t last_cc = 0;
    for (size_t k = 0; k < m; k++) {
        uint32_t c = cps[k], cc = ccc_of(c);
        if (starter >= 0) {
            int adjacent = (long)r - 1 == starter;
            if (adjacent || (last_cc != 0 && last_cc < cc)) {
                uint32_t composite = compose(cps[starter], c);
                if (composite) {
                    cps[starter] = composite;
                    continue;
                }
            }
        }
        if (cc == 0) starter = (long)r;
        last_cc = cc;
        cps[r++] = c;
    }
    size_t len = 0;
    for (size_t k = 0; k < r; k++) len += (size_t)lina_utf8_encode(cps[k], o + len);
    free(cps);
    *out = o;
    *out_n = len;
    return LINA_OK;
}
