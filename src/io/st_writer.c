/* safetensors writer: tensors are copied in, then written as one file
 * atomically. Tensors are laid out in insertion order, back to back; the
 * header is padded with spaces to a multiple of 8 bytes so that data stays
 * 8-byte aligned in the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "io_internal.h"

typedef struct {
    char *name;
    lina_dtype dtype;
    int ndim;
    int64_t shape[LINA_MAX_NDIM];
    void *data;
    size_t nbytes;
} w_tensor;

struct lina_st_writer {
    w_tensor *t;
    int n, cap;
    char **meta_keys, **meta_vals;
    int n_meta, cap_meta;
};

/* Growable text buffer for the JSON header. */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* JSON string literal with escapes for quotes, backslashes and control bytes. */
static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

lina_status lina_st_writer_create(lina_st_writer **out) {
    if (!out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_st_writer_create: NULL output");
    *out = calloc(1, sizeof **out);
    return *out ? LINA_OK : lina_fail(LINA_ERR_OOM, "lina_st_writer_create: out of memory");
}

void lina_st_writer_free(lina_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_vals[i]);
    }
    free(w->t);
    free(w->meta_keys);
    free(w->meta_vals);
    free(w);
}

lina_status lina_st_writer_add(lina_st_writer *w, const char *name, lina_dtype dtype, int ndim, const int64_t *shape,
                               const void *data) {
    if (!w || !name || !name[0])
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_st_writer_add: NULL writer or empty tensor name");
    if (!strcmp(name, "__metadata__"))
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_st_writer_add: '__metadata__' is reserved, not a tensor name");
    if (lina_dtype_size(dtype) == 0)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_st_writer_add: tensor '%s': unknown dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > LINA_MAX_NDIM || (ndim > 0 && !shape))
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_st_writer_add: tensor '%s': ndim = %d must be in [0, %d]", name,
                         ndim, LINA_MAX_NDIM);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return lina_fail(LINA_ERR_INVALID_ARG, "lina_st_writer_add: tensor '%s' added twice", name);
    size_t numel = 1, nbytes;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return lina_fail(LINA_ERR_INVALID_ARG, "lina_st_writer_add: tensor '%s': dimension %d = %lld is negative",
                             name, i, (long long)shape[i]);
        if (!lina_mul_size(numel, (size_t)shape[i], &numel) || numel > (size_t)INT64_MAX)
            return lina_fail(LINA_ERR_OOM, "lina_st_writer_add: tensor '%s': element count overflows", name);
    }
    if (!lina_mul_size(numel, lina_dtype_size(dtype), &nbytes))
        return lina_fail(LINA_ERR_OOM, "lina_st_writer_add: tensor '%s': byte count overflows", name);
    if (nbytes > 0 && !data)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_st_writer_add: tensor '%s': NULL data for %zu bytes", name, nbytes);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        w_tensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return lina_fail(LINA_ERR_OOM, "lina_st_writer_add: out of memory");
        w->t = t;
        w->cap = cap;
    }
    w_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = malloc(nbytes ? nbytes : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return lina_fail(LINA_ERR_OOM, "lina_st_writer_add: tensor '%s': out of memory for %zu bytes", name, nbytes);
    }
    if (nbytes) memcpy(t->data, data, nbytes);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    w->n++;
    return LINA_OK;
}

lina_status lina_st_writer_set_metadata(lina_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return lina_fail(LINA_ERR_INVALID_ARG, "lina_st_writer_set_metadata: NULL argument");
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta_keys[i], key)) {
            char *v = strdup(value);
            if (!v) return lina_fail(LINA_ERR_OOM, "lina_st_writer_set_metadata: out of memory");
            free(w->meta_vals[i]);
            w->meta_vals[i] = v;
            return LINA_OK;
        }
    if (w->n_meta == w->cap_meta) {
        int cap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **k = realloc(w->meta_keys, (size_t)cap * sizeof *k);
        if (!k) return lina_fail(LINA_ERR_OOM, "lina_st_writer_set_metadata: out of memory");
        w->meta_keys = k;
        char **v = realloc(w->meta_vals, (size_t)cap * sizeof *v);
        if (!v) return lina_fail(LINA_ERR_OOM, "lina_st_writer_set_metadata: out of memory");
        w->meta_vals = v;
        w->cap_meta = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return lina_fail(LINA_ERR_OOM, "lina_st_writer_set_metadata: out of memory");
    }
    w->meta_keys[w->n_meta] = k;
    w->meta_vals[w->n_meta] = v;
    w->n_meta++;
    return LINA_OK;
}

lina_status lina_st_writer_save(lina_st_writer *w, const char *path) {
    if (!w || !path) return lina_fail(LINA_ERR_INVALID_ARG, "lina_st_writer_save: NULL writer or path");
    sbuf h = {0};
    char num[64];
    sb_str(&h, "{");
    int first = 1;
    if (w->n_meta) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) sb_str(&h, ",");
            sb_json_string(&h, w->meta_keys[i]);
            sb_str(&h, ":");
            sb_json_string(&h, w->meta_vals[i]);
        }
        sb_str(&h, "}");
        first = 0;
    }
    uint64_t offset = 0;
    for (int i = 0; i < w->n; i++) {
        const w_tensor *t = &w->t[i];
        if (!first) sb_str(&h, ",");
        first = 0;
        sb_json_string(&h, t->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, lina_dtype_name(t->dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            sb_str(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                 (unsigned long long)(offset + t->nbytes));
        sb_str(&h, num);
        offset += t->nbytes;
    }
    sb_str(&h, "}");
    while (!h.oom && h.len % 8) sb_str(&h, " ");
    if (h.oom) {
        free(h.s);
        return lina_fail(LINA_ERR_OOM, "writing '%s': out of memory for the header", path);
    }
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    lina_chunk *chunks = malloc((size_t)(w->n + 2) * sizeof *chunks);
    if (!chunks) {
        free(h.s);
        return lina_fail(LINA_ERR_OOM, "writing '%s': out of memory", path);
    }
    chunks[0] = (lina_chunk){len_le, 8};
    chunks[1] = (lina_chunk){h.s, h.len};
    for (int i = 0; i < w->n; i++) chunks[i + 2] = (lina_chunk){w->t[i].data, w->t[i].nbytes};
    lina_status st = lina_write_chunks_atomic(path, chunks, w->n + 2);
    free(chunks);
    free(h.s);
    return st;
}
