/* Internals of the byte-level BPE tokenizer (src/tokenizer). */
#ifndef LINA_TOK_INTERNAL_H
#define LINA_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "lina/tokenizer.h"

/* ---- unicode.c (+ generated unicode_tables.c) ---- */
typedef struct {
    uint32_t lo, hi;
} lina_cp_range;
extern const lina_cp_range lina_letter_ranges[], lina_number_ranges[];
extern const int lina_letter_ranges_count, lina_number_ranges_count;

/* NFC data: combining class (nonzero only), canonical decomposition (b == 0:
 * a singleton), primary composition a + b -> c; sorted by code point / pair. */
typedef struct {
    uint32_t cp, ccc;
} lina_cp_ccc;
typedef struct {
    uint32_t cp, a, b;
} lina_cp_decomp;
typedef struct {
    uint32_t a, b, cp;
} lina_cp_comp;
extern const lina_cp_ccc lina_ccc_table[];
extern const lina_cp_decomp lina_decomp_table[];
extern const lina_cp_comp lina_comp_table[];
extern const int lina_ccc_table_count, lina_decomp_table_count, lina_comp_table_count;

int lina_cp_is_letter(uint32_t cp); /* \p{L} */
int lina_cp_is_number(uint32_t cp); /* \p{N} */
int lina_cp_is_space(uint32_t cp);  /* \s: the White_Space property */
/* Decode the code point at s (n > 0 bytes available); returns its byte length.
 * Invalid or truncated sequences decode as one byte with cp = 0xFFFD. */
int lina_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* Append the UTF-8 encoding of cp to out (room for 4 bytes); returns the length. */
int lina_utf8_encode(uint32_t cp, unsigned char *out);

/* ---- pretokenize.c: byte length of the next piece at s (n > 0) ---- */
size_t lina_pretok_next(lina_pretok p, const unsigned char *s, size_t n);

/* ---- bpe.c ---- */
typedef struct {
    uint32_t off, len; /* bytes in the arena; len == 0: no token with this id */
} tok_entry;

typedef struct {
    uint64_t key; /* (left id << 32) | right id, UINT64_MAX = empty */
    int32_t rank, result;
} tok_merge;

typedef enum { TOK_MERGES, TOK_RANKS } tok_mode;

struct lina_tokenizer {
    tok_mode mode;     /* MERGES: a merge list (HF, GPT-2); RANKS: tiktoken (rank = id of the merged bytes) */
    lina_pretok pretok;
    int nfc;           /* normalize input to NFC first */
    int n_ids;         /* ids 0 .. n_ids-1 */
    int ids_cap;       /* allocated entries of tok */
    tok_entry *tok;    /* (ids_cap) */
    size_t n_set, n_merges;
    unsigned char *arena;
    size_t arena_len, arena_cap;
    int32_t *byte_map; /* (capacity) open-addressing table of ids, -1 empty: bytes -> id */
    size_t byte_cap;
    tok_merge *merges; /* open-addressing table of merges */
    size_t merge_cap;
    int32_t byte_id[256]; /* id of each single byte, -1 if none */
    /* added tokens matched in the raw text before pre-tokenization */
    int n_added;
    int32_t *added;        /* (n_added) ids, longest content first */
    unsigned char *added_special; /* (n_added) 1: only matched when special tokens are allowed */
    /* non-NULL: an RWKV "world" vocabulary (rwkv_world.c) encodes and decodes instead;
     * the BPE fields above are then empty (tokenizer_dir.c) */
    lina_rwkv_tokenizer *world;
};

/* building */
lina_status tok_init(lina_tokenizer *t, int n_ids_hint);
/* index == 0: bytes for decoding only (added tokens), not found by tok_lookup */
lina_status tok_set(lina_tokenizer *t, int64_t id, const unsigned char *bytes, size_t len, int index);
lina_status tok_add_merge(lina_tokenizer *t, int32_t left, int32_t right, int32_t rank);
lina_status tok_finish(lina_tokenizer *t); /* byte table, lookups; checks every byte has a token */
int32_t tok_lookup(const lina_tokenizer *t, const unsigned char *bytes, size_t len);
/* Encode one piece; appends ids to *out (growing *cap). */
lina_status tok_encode_piece(const lina_tokenizer *t, const unsigned char *s, size_t n, int64_t **out, size_t *n_out,
                             size_t *cap);

/* ---- nfc.c ---- */
/* NFC of s (n bytes) into a malloc'ed buffer, or NULL with *out_n = 0 when s already is NFC. */
lina_status lina_nfc(const unsigned char *s, size_t n, unsigned char **out, size_t *out_n);

#endif
