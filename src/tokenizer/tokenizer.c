/* Byte-level BPE tokenizers: loaders (tokenizer.json, tiktoken rank files,
 * GPT-2 encoder.json + vocab.bpe), encode and decode. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "tok_internal.h"

/* ---- files ---- */

static lina_status read_file(const char *path, char **out, size_t *n_out) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return lina_fail(LINA_ERR_IO, "tokenizer: cannot open '%s'", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t got = 1; buf && got;) {
        if (n == cap) {
            char *p = cap < ((size_t)1 << 30) ? realloc(buf, 2 * cap + 1) : NULL;
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
        got = fread(buf + n, 1, cap - n, fp);
        n += got;
    }
    int err = ferror(fp);
    fclose(fp);
    if (!buf) return lina_fail(LINA_ERR_OOM, "tokenizer: '%s' is too large", path);
    if (err) {
        free(buf);
        return lina_fail(LINA_ERR_IO, "tokenizer: reading '%s' failed", path);
    }
    buf[n] = 0;
    *out = buf;
    *n_out = n;
    return LINA_OK;
}

static lina_status read_json(const char *path, cJSON **out) {
    char *buf;
    size_t n;
    lina_status st = read_file(path, &buf, &n);
    if (st) return st;
    *out = cJSON_ParseWithLength(buf, n);
    free(buf);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return lina_fail(LINA_ERR_FORMAT, "tokenizer: '%s' is not a JSON object", path);
    }
    return LINA_OK;
}

/* ---- GPT-2's byte <-> printable code point map ----
 * Bytes 0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF stand for themselves; the other 68
 * bytes map, in order, to U+0100, U+0101, ... */
static int byte_is_printable(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

static int unicode_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable((int)cp) ? (int)cp : -1;
    int k = (int)cp - 256;
    for (int b = 0; b < 256; b++)
        if (!byte_is_printable(b) && k-- == 0) return b;
    return -1;
}

/* "Ġhello" -> " hello"; returns the byte count or -1 when a code point is outside the map */
static int unmap_bytes(const char *s, unsigned char *out, size_t cap) {
    size_t n = strlen(s), i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        i += (size_t)lina_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        int b = unicode_to_byte(cp);
        if (b < 0 || o >= cap) return -1;
        out[o++] = (unsigned char)b;
    }
    return (int)o;
}

/* ---- shared loading steps ---- */

static lina_status new_tokenizer(lina_tokenizer **out, int hint) {
    lina_tokenizer *t = malloc(sizeof *t);
    if (!t) return lina_fail(LINA_ERR_OOM, "tokenizer: out of memory");
    lina_status st = tok_init(t, hint);
    if (st) {
        lina_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LINA_OK;
}

/* vocab object { "Ġtoken": id } */
static lina_status load_vocab(lina_tokenizer *t, const cJSON *vocab, const char *path) {
    if (!cJSON_IsObject(vocab)) return lina_fail(LINA_ERR_FORMAT, "tokenizer '%s': vocab is not an object", path);
    unsigned char buf[4096];
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int n = unmap_bytes(e->string, buf, sizeof buf);
        double id = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (n <= 0 || id < 0 || id != (double)(int64_t)id)
            return lina_fail(LINA_ERR_FORMAT, "tokenizer '%s': vocab entry '%s' is not a byte-level token with an id",
                             path, e->string);
        lina_status st = tok_set(t, (int64_t)id, buf, (size_t)n, 1);
        if (st) return lina_fail(st, "tokenizer '%s': vocab entry '%s': %s", path, e->string, lina_last_error());
    }
    return LINA_OK;
}

/* one merge "a b" (or the two strings a, b) of the given rank */
static lina_status add_merge_strings(lina_tokenizer *t, const char *a, const char *b, int rank, const char *path) {
    unsigned char ba[4096], bb[4096];
    int na = unmap_bytes(a, ba, sizeof ba), nb = unmap_bytes(b, bb, sizeof bb);
    int32_t ia = na > 0 ? tok_lookup(t, ba, (size_t)na) : -1, ib = nb > 0 ? tok_lookup(t, bb, (size_t)nb) : -1;
    if (ia < 0 || ib < 0)
        return lina_fail(LINA_ERR_FORMAT, "tokenizer '%s': merge %d '%s %s' names a token not in the vocab", path, rank,
                         a, b);
    return tok_add_merge(t, ia, ib, rank);
}

static lina_status add_merge_line(lina_tokenizer *t, const char *line, int rank, const char *path) {
    const char *sp = strchr(line, ' ');
    if (!sp || strchr(sp + 1, ' ') || sp == line || !sp[1])
        return lina_fail(LINA_ERR_FORMAT, "tokenizer '%s': merge %d '%s' is not 'a b'", path, rank, line);
    char a[4096];
    size_t na = (size_t)(sp - line);
    if (na >= sizeof a) return lina_fail(LINA_ERR_FORMAT, "tokenizer '%s': merge %d is too long", path, rank);
    memcpy(a, line, na);
    a[na] = 0;
    return add_merge_strings(t, a, sp + 1, rank, path);
}

/* ---- tokenizer.json ---- */

static const char *const CL100K_PATTERN =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
static const char *const QWEN2_PATTERN =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
static const char *const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int json_true(const cJSON *o, const char *key, int def) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(j) ? cJSON_IsTrue(j) : def;
}

/* ByteLevel pre-tokenizer; *regex set when it splits with the GPT-2 pattern itself */
static lina_status byte_level(const cJSON *p, const char *path, int *regex) {
    if (json_true(p, "add_prefix_space", 0))
        return lina_fail(LINA_ERR_UNSUPPORTED, "tokenizer '%s': ByteLevel add_prefix_space = true is not supported", path);
    *regex = json_true(p, "use_regex", 1);
    return LINA_OK;
}

static lina_status parse_pretokenizer(lina_tokenizer *t, const cJSON *p, const char *path) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
    if (!cJSON_IsString(type)) return lina_fail(LINA_ERR_UNSUPPORTED, "tokenizer '%s': no pre_tokenizer type", path);
    int regex = 0;
    if (!strcmp(type->valuestring, "ByteLevel")) {
        lina_status st = byte_level(p, path, &regex);
        if (st) return st;
        if (!regex) return lina_fail(LINA_ERR_UNSUPPORTED, "tokenizer '%s': ByteLevel without a split pattern", path);
        t->pretok = LINA_PRETOK_GPT2;
        return LINA_OK;
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
    if (strcmp(type->valuestring, "Sequence") || !cJSON_IsArray(list) || cJSON_GetArraySize(list) != 2)
        return lina_fail(LINA_ERR_UNSUPPORTED, "tokenizer '%s': pre_tokenizer '%s' is not supported", path,
                         type->valuestring);
    /* Sequence [Split(Regex pattern, Isolated), ByteLevel(use_regex false)] */
    const cJSON *split = list->child, *bl = split->next;
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(split, "pattern"), "Regex");
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(split, "behavior");
    const cJSON *bl_type = cJSON_GetObjectItemCaseSensitive(bl, "type");
    if (!cJSON_IsString(pat) || !cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") ||
        json_true(split, "invert", 0) || !cJSON_IsString(bl_type) || strcmp(bl_type->valuestring, "ByteLevel"))
        return lina_fail(LINA_ERR_UNSUPPORTED, "tokenizer '%s': pre_tokenizer Sequence is not [Split(Regex, Isolated), ByteLevel]",
                         path);
    lina_status st = byte_level(bl, path, &regex);
    if (st) return st;
    if (regex) return lina_fail(LINA_ERR_UNSUPPORTED, "tokenizer '%s': ByteLevel use_regex after a Split", path);
    if (!strcmp(pat->valuestring, CL100K_PATTERN)) t->pretok = LINA_PRETOK_CL100K;
    else if (!strcmp(pat->valuestring, QWEN2_PATTERN)) t->pretok = LINA_PRETOK_QWEN2;
    else if (!strcmp(pat->valuestring, GPT2_PATTERN)) t->pretok = LINA_PRETOK_GPT2;
    else
        return lina_fail(LINA_ERR_UNSUPPORTED, "tokenizer '%s': split pattern '%.200s' is not one lina knows", path,
                         pat->valuestring);
    return LINA_OK;
}

static lina_status parse_added(lina_tokenizer *t, const cJSON *added, const char *path) {
    int n = cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0;
    if (!n) return LINA_OK;
    t->added = calloc((size_t)n, sizeof *t->added);
    t->added_special = calloc((size_t)n, 1);
    if (!t->added || !t->added_special) return lina_fail(LINA_ERR_OOM, "tokenizer: out of memory");
    for (const cJSON *e = added->child; e; e = e->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id"),
                    *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(content) || !content->valuestring[0] || id->valuedouble < 0)
            return lina_fail(LINA_ERR_FORMAT, "tokenizer '%s': added token %d has no id or content", path, t->n_added);
        int64_t i = (int64_t)id->valuedouble;
        const unsigned char *c = (const unsigned char *)content->valuestring;
        size_t len = strlen(content->valuestring);
        if (i < t->ids_cap && t->tok[i].len) { /* also in the vocab: must be the same bytes */
            if (t->tok[i].len != len || memcmp(t->arena + t->tok[i].off, c, len))
                return lina_fail(LINA_ERR_FORMAT, "tokenizer '%s': added token %lld '%s' differs from its vocab entry",
                                 path, (long long)i, content->valuestring);
        } else {
            lina_status st = tok_set(t, i, c, len, 0);
            if (st) return st;
        }
        t->added[t->n_added] = (int32_t)i;
        t->added_special[t->n_added] = (unsigned char)json_true(e, "special", 0);
        t->n_added++;
    }
    /* longest content first, so that the longest added token wins at a position */
    for (int a = 1; a < t->n_added; a++)
        for (int b = a; b > 0 && t->tok[t->added[b]].len > t->tok[t->added[b - 1]].len; b--) {
            int32_t x = t->added[b];
            t->added[b] = t->added[b - 1];
            t->added[b - 1] = x;
            unsigned char s = t->added_special[b];
            t->added_special[b] = t->added_special[b - 1];
            t->added_special[b - 1] = s;
        }
    return LINA_OK;
}

static lina_status load_hf(lina_tokenizer *t, const cJSON *j, const char *path) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE"))
        return lina_fail(LINA_ERR_UNSUPPORTED, "tokenizer '%s': model type %s is not BPE", path,
                         cJSON_IsString(type) ? type->valuestring : "(missing)");
    if (json_true(model, "byte_fallback", 0))
        return lina_fail(LINA_ERR_UNSUPPORTED, "tokenizer '%s': byte_fallback BPE is not byte-level", path);
    const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix"),
                *prefix = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
    if ((cJSON_IsString(suffix) && suffix->valuestring[0]) || (cJSON_IsString(prefix) && prefix->valuestring[0]))
        return lina_fail(LINA_ERR_UNSUPPORTED, "tokenizer '%s': subword prefixes/suffixes are not supported", path);
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(j, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        const cJSON *nt = cJSON_GetObjectItemCaseSensitive(norm, "type");
        if (!cJSON_IsString(nt) || strcmp(nt->valuestring, "NFC"))
            return lina_fail(LINA_ERR_UNSUPPORTED, "tokenizer '%s': normalizer %s is not supported (NFC or none)", path,
                             cJSON_IsString(nt) ? nt->valuestring : "?");
        t->nfc = 1;
    }
    lina_status st = parse_pretokenizer(t, cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer"), path);
    if (st) return st;
    t->mode = TOK_MERGES;
    if ((st = load_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), path))) return st;
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges)) return lina_fail(LINA_ERR_FORMAT, "tokenizer '%s': model.merges is not a list", path);
    int rank = 0;
    for (const cJSON *e = merges->child; e && !st; e = e->next, rank++) {
        if (cJSON_IsString(e)) {
            st = add_merge_line(t, e->valuestring, rank, path);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            st = add_merge_strings(t, e->child->valuestring, e->child->next->valuestring, rank, path);
        } else {
            st = lina_fail(LINA_ERR_FORMAT, "tokenizer '%s': merge %d is neither \"a b\" nor [a, b]", path, rank);
        }
    }
    if (st) return st;
    if ((st = tok_finish(t))) return st;
    return parse_added(t, cJSON_GetObjectItemCaseSensitive(j, "added_tokens"), path);
}

lina_status lina_tokenizer_load_hf(const char *path, lina_tokenizer **out) {
    if (!path || !out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_tokenizer_load_hf: NULL argument");
    *out = NULL;
    cJSON *j = NULL;
    lina_status st = read_json(path, &j);
    if (st) return st;
    lina_tokenizer *t = NULL;
    if (!(st = new_tokenizer(&t, 1 << 16))) st = load_hf(t, j, path);
    cJSON_Delete(j);
    if (st) {
        lina_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LINA_OK;
}

/* ---- tiktoken rank files: "base64(token bytes) rank" per line ---- */

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* decode n base64 characters; returns the byte count or -1 */
static int b64_decode(const char *s, size_t n, unsigned char *out, size_t cap) {
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') break;
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap) return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (int)o;
}

lina_status lina_tokenizer_load_tiktoken(const char *path, lina_pretok pattern, lina_tokenizer **out) {
    if (!path || !out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_tokenizer_load_tiktoken: NULL argument");
    *out = NULL;
    char *buf;
    size_t n;
    lina_status st = read_file(path, &buf, &n);
    if (st) return st;
    lina_tokenizer *t = NULL;
    if ((st = new_tokenizer(&t, 1 << 17))) {
        free(buf);
        return st;
    }
    t->mode = TOK_RANKS;
    t->pretok = pattern;
    int line_no = 0;
    for (char *line = buf; !st && line < buf + n; line_no++) {
        char *end = memchr(line, '\n', (size_t)(buf + n - line));
        if (!end) end = buf + n;
        *end = 0;
        char *sp = strchr(line, ' '), *num_end;
        unsigned char bytes[4096];
        if (line == end) {
            line = end + 1;
            continue;
        }
        long long rank = sp ? strtoll(sp + 1, &num_end, 10) : -1;
        int nb = sp ? b64_decode(line, (size_t)(sp - line), bytes, sizeof bytes) : -1;
        if (!sp || nb <= 0 || rank < 0 || *num_end)
            st = lina_fail(LINA_ERR_FORMAT, "tokenizer '%s': line %d is not 'base64 rank'", path, line_no + 1);
        else
            st = tok_set(t, rank, bytes, (size_t)nb, 1);
        line = end + 1;
    }
    free(buf);
    if (!st) st = tok_finish(t);
    if (st) {
        lina_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LINA_OK;
}

/* ---- GPT-2 release files ---- */

lina_status lina_tokenizer_load_gpt2(const char *encoder_json, const char *vocab_bpe, lina_tokenizer **out) {
    if (!encoder_json || !vocab_bpe || !out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_tokenizer_load_gpt2: NULL argument");
    *out = NULL;
    cJSON *j = NULL;
    char *bpe = NULL;
    size_t n = 0;
    lina_tokenizer *t = NULL;
    lina_status st = read_json(encoder_json, &j);
    if (!st) st = read_file(vocab_bpe, &bpe, &n);
    if (!st) st = new_tokenizer(&t, 1 << 16);
    if (!st) {
        t->mode = TOK_MERGES;
        t->pretok = LINA_PRETOK_GPT2;
        st = load_vocab(t, j, encoder_json);
    }
    int rank = 0;
    for (char *line = bpe; !st && line && line < bpe + n;) {
        char *end = memchr(line, '\n', (size_t)(bpe + n - line));
        if (!end) end = bpe + n;
        *end = 0;
        if (end > line && end[-1] == '\r') end[-1] = 0;
        if (line[0] && strncmp(line, "#version", 8)) st = add_merge_line(t, line, rank++, vocab_bpe);
        line = end + 1;
    }
    if (!st) st = tok_finish(t);
    cJSON_Delete(j);
    free(bpe);
    if (st) {
        lina_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LINA_OK;
}

void lina_tokenizer_free(lina_tokenizer *t) {
    if (!t) return;
    free(t->tok);
    free(t->arena);
    free(t->byte_map);
    free(t->merges);
    free(t->added);
    free(t->added_special);
    lina_rwkv_tokenizer_free(t->world);
    free(t);
}

int lina_tokenizer_vocab_size(const lina_tokenizer *t) {
    return !t ? 0 : t->world ? lina_rwkv_tokenizer_vocab_size(t->world) : t->n_ids;
}

int64_t lina_tokenizer_token_id(const lina_tokenizer *t, const char *text) {
    if (!t || !text) return -1;
    size_t n = strlen(text);
    if (t->world) { /* the id whose bytes are exactly text: the longest match covers all of it */
        int64_t *ids = NULL, id = -1;
        size_t n_ids = 0;
        if (n && lina_rwkv_tokenizer_encode(t->world, text, n, &ids, &n_ids) == LINA_OK && n_ids == 1) id = ids[0];
        free(ids);
        return id;
    }
    for (int a = 0; a < t->n_added; a++) {
        const tok_entry *e = &t->tok[t->added[a]];
        if (e->len == n && !memcmp(t->arena + e->off, text, n)) return t->added[a];
    }
    return tok_lookup(t, (const unsigned char *)text, n);
}

/* ---- encode / decode ---- */

/* the added token starting at s (n bytes left), or -1 */
static int added_at(const lina_tokenizer *t, const unsigned char *s, size_t n, int allow_special, size_t *len) {
    for (int a = 0; a < t->n_added; a++) {
        if (t->added_special[a] && !allow_special) continue;
        const tok_entry *e = &t->tok[t->added[a]];
        if (e->len <= n && t->arena[e->off] == s[0] && !memcmp(t->arena + e->off, s, e->len)) {
            *len = e->len;
            return t->added[a];
        }
    }
    return -1;
}

static lina_status append_id(int64_t **ids, size_t *n, size_t *cap, int64_t id) {
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        int64_t *p = realloc(*ids, c * sizeof *p);
        if (!p) return lina_fail(LINA_ERR_OOM, "tokenizer: out of memory");
        *ids = p;
        *cap = c;
    }
    (*ids)[(*n)++] = id;
    return LINA_OK;
}

static lina_status encode_plain(const lina_tokenizer *t, const unsigned char *s, size_t n, int64_t **ids, size_t *n_ids,
                                size_t *cap) {
    lina_status st = LINA_OK;
    while (n > 0 && !st) {
        size_t piece = lina_pretok_next(t->pretok, s, n);
        st = tok_encode_piece(t, s, piece, ids, n_ids, cap);
        s += piece;
        n -= piece;
    }
    return st;
}

lina_status lina_tokenizer_encode(const lina_tokenizer *t, const char *text, size_t len, int allow_special,
                                  int64_t **ids, size_t *n_ids) {
    if (!t || (!text && len) || !ids || !n_ids) return lina_fail(LINA_ERR_INVALID_ARG, "lina_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (t->world) return lina_rwkv_tokenizer_encode(t->world, text, len, ids, n_ids); /* no special tokens */
    const unsigned char *s = (const unsigned char *)text;
    unsigned char *normalized = NULL;
    size_t cap = 0;
    lina_status st = LINA_OK;
    if (t->nfc) {
        size_t nn = 0;
        if ((st = lina_nfc(s, len, &normalized, &nn))) return st;
        if (normalized) {
            s = normalized;
            len = nn;
        }
    }
    size_t start = 0, i = 0;
    while (i < len && !st) {
        size_t alen = 0;
        int id = t->n_added ? added_at(t, s + i, len - i, allow_special, &alen) : -1;
        if (id < 0) {
            i++;
            continue;
        }
        st = encode_plain(t, s + start, i - start, ids, n_ids, &cap);
        if (!st) st = append_id(ids, n_ids, &cap, id);
        i += alen;
        start = i;
    }
    if (!st) st = encode_plain(t, s + start, len - start, ids, n_ids, &cap);
    free(normalized);
    if (st) {
        free(*ids);
        *ids = NULL;
        *n_ids = 0;
    }
    return st;
}

lina_status lina_tokenizer_decode(const lina_tokenizer *t, const int64_t *ids, size_t n_ids, char **text, size_t *len) {
    if (!t || (!ids && n_ids) || !text || !len) return lina_fail(LINA_ERR_INVALID_ARG, "lina_tokenizer_decode: NULL argument");
    *text = NULL;
    *len = 0;
    if (t->world) return lina_rwkv_tokenizer_decode(t->world, ids, n_ids, text, len);
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || !t->tok[ids[i]].len)
            return lina_fail(LINA_ERR_INVALID_ARG, "lina_tokenizer_decode: id %lld at position %zu is not a token",
                             (long long)ids[i], i);
        total += t->tok[ids[i]].len;
    }
    char *out = malloc(total + 1);
    if (!out) return lina_fail(LINA_ERR_OOM, "lina_tokenizer_decode: out of memory for %zu bytes", total);
    size_t o = 0;
    for (size_t i = 0; i < n_ids; i++) {
        const tok_entry *e = &t->tok[ids[i]];
        memcpy(out + o, t->arena + e->off, e->len);
        o += e->len;
    }
    out[o] = 0;
    *text = out;
    *len = o;
    return LINA_OK;
}
