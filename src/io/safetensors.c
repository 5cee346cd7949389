/* safetensors reader: the file is memory-mapped read-only and its header is
 * validated completely on open.
 *
 * Layout: u64 little-endian N | N bytes of JSON (UTF-8, may end in spaces) | data.
 * JSON: {"__metadata__": {"k": "v", ...}?,
 *        "name": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ...}
 * with offsets relative to the start of the data area. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/internal.h"
#include "io_internal.h"

/* Larger headers are refused (the reference implementation uses the same cap). */
#define MAX_HEADER_BYTES ((uint64_t)100 << 20)
/* Integers in the JSON header are doubles in cJSON: exact up to 2^53. */
#define MAX_EXACT_INT 9007199254740992.0

typedef struct {
    char *key, *value;
} st_meta;

struct lina_st_file {
    char *path;
    void *map;       /* whole file, PROT_READ */
    size_t map_size; /* file size */
    int n;
    lina_tensor_view *tensors;      /* in header order */
    const lina_tensor_view **by_name; /* sorted by name for lina_st_find */
    int n_meta;
    st_meta *meta;
};

static int cmp_view_name(const void *a, const void *b) {
    const lina_tensor_view *x = *(const lina_tensor_view *const *)a, *y = *(const lina_tensor_view *const *)b;
    return strcmp(x->name, y->name);
}

typedef struct {
    const lina_tensor_view *t;
    uint64_t begin, end;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* A JSON number that is a non-negative integer exactly representable. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0) || d > MAX_EXACT_INT || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static void describe_json(const cJSON *j, char *buf, size_t n) {
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    snprintf(buf, n, "%s", s ? s : "(missing)");
    if (strlen(buf) == n - 1 && n > 4) strcpy(buf + n - 4, "...");
    free(s);
}

static lina_status parse_metadata(lina_st_file *f, const cJSON *meta) {
    if (!cJSON_IsObject(meta))
        return lina_fail(LINA_ERR_FORMAT, "safetensors '%s': __metadata__ is not a JSON object", f->path);
    int n = cJSON_GetArraySize(meta);
    f->meta = calloc(n ? (size_t)n : 1, sizeof *f->meta);
    if (!f->meta) return lina_fail(LINA_ERR_OOM, "safetensors '%s': out of memory for metadata", f->path);
    for (const cJSON *e = meta->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return lina_fail(LINA_ERR_FORMAT, "safetensors '%s': __metadata__ value of '%s' is not a string", f->path,
                             e->string);
        st_meta *m = &f->meta[f->n_meta];
        m->key = strdup(e->string);
        m->value = strdup(e->valuestring);
        if (!m->key || !m->value) {
            free(m->key);
            free(m->value);
            return lina_fail(LINA_ERR_OOM, "safetensors '%s': out of memory for metadata", f->path);
        }
        f->n_meta++;
    }
    return LINA_OK;
}

/* Validate one tensor entry and fill the view (data pointer set later). */
static lina_status parse_tensor(lina_st_file *f, const cJSON *e, uint64_t data_len, lina_tensor_view *t,
                                span *sp) {
    const char *name = e->string;
    char buf[96];
    if (!name[0]) return lina_fail(LINA_ERR_FORMAT, "safetensors '%s': tensor with an empty name", f->path);
    if (!cJSON_IsObject(e))
        return lina_fail(LINA_ERR_FORMAT, "safetensors '%s': tensor '%s': entry is not a JSON object", f->path, name);
    t->name = strdup(name);
    if (!t->name) return lina_fail(LINA_ERR_OOM, "safetensors '%s': out of memory", f->path);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt) || !lina_dtype_parse(dt->valuestring, &t->dtype)) {
        describe_json(dt, buf, sizeof buf);
        return lina_fail(LINA_ERR_FORMAT,
                         "safetensors '%s': tensor '%s': dtype %s is not one of F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL",
                         f->path, name, buf);
    }

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > LINA_MAX_NDIM) {
        describe_json(shape, buf, sizeof buf);
        return lina_fail(LINA_ERR_FORMAT, "safetensors '%s': tensor '%s': shape %s is not an array of at most %d dims",
                         f->path, name, buf, LINA_MAX_NDIM);
    }
    /* numel and nbytes with overflow checks; both must fit int64 / size_t */
    t->ndim = 0;
    int has_zero = 0;
    for (const cJSON *d = shape->child; d; d = d->next) {
        uint64_t v;
        if (!json_uint(d, &v)) {
            describe_json(d, buf, sizeof buf);
            return lina_fail(LINA_ERR_FORMAT,
                             "safetensors '%s': tensor '%s': dimension %d = %s is not a non-negative integer", f->path,
                             name, t->ndim, buf);
        }
        t->shape[t->ndim++] = (int64_t)v;
        if (v == 0) has_zero = 1;
    }
    uint64_t numel = has_zero ? 0 : 1;
    size_t esize = lina_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim && !has_zero; i++) {
        uint64_t v = (uint64_t)t->shape[i];
        if (numel > (uint64_t)INT64_MAX / v)
            return lina_fail(LINA_ERR_FORMAT, "safetensors '%s': tensor '%s': shape element count overflows 64 bits",
                             f->path, name);
        numel *= v;
    }
    if (numel > (uint64_t)INT64_MAX / esize || numel * esize > SIZE_MAX)
        return lina_fail(LINA_ERR_FORMAT, "safetensors '%s': tensor '%s': byte count of %llu elements overflows",
                         f->path, name, (unsigned long long)numel);
    t->numel = (int64_t)numel;
    uint64_t nbytes = numel * esize;

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &begin) ||
        !json_uint(off->child->next, &end) || end < begin) {
        describe_json(off, buf, sizeof buf);
        return lina_fail(LINA_ERR_FORMAT,
                         "safetensors '%s': tensor '%s': data_offsets %s is not [begin, end] with 0 <= begin <= end",
                         f->path, name, buf);
    }
    if (end > data_len)
        return lina_fail(LINA_ERR_FORMAT,
                         "safetensors '%s': tensor '%s': data_offsets [%llu, %llu] end past the data area of %llu bytes",
                         f->path, name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)data_len);
    if (end - begin != nbytes)
        return lina_fail(LINA_ERR_FORMAT,
                         "safetensors '%s': tensor '%s': %s shape with %lld elements needs %llu bytes but data_offsets "
                         "[%llu, %llu] span %llu",
                         f->path, name, lina_dtype_name(t->dtype), (long long)t->numel, (unsigned long long)nbytes,
                         (unsigned long long)begin, (unsigned long long)end, (unsigned long long)(end - begin));
    t->nbytes = (size_t)nbytes;
    sp->t = t;
    sp->begin = begin;
    sp->end = end;
    return LINA_OK;
}

static lina_status parse_header(lina_st_file *f, const char *json, size_t json_len, uint64_t data_len,
                                const unsigned char *data) {
    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, json_len, &parse_end, 0);
    if (!root) {
        size_t at = cJSON_GetErrorPtr() && cJSON_GetErrorPtr() >= json && cJSON_GetErrorPtr() <= json + json_len
                        ? (size_t)(cJSON_GetErrorPtr() - json)
                        : 0;
        return lina_fail(LINA_ERR_FORMAT, "safetensors '%s': header is not valid JSON (near byte %zu of %zu)", f->path,
                         at, json_len);
    }
    lina_status st = LINA_OK;
    span *spans = NULL;
    for (const char *p = parse_end; p && p < json + json_len; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t' && *p != 0) {
            st = lina_fail(LINA_ERR_FORMAT, "safetensors '%s': trailing bytes after the JSON header at byte %zu",
                           f->path, (size_t)(p - json));
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        st = lina_fail(LINA_ERR_FORMAT, "safetensors '%s': header is not a JSON object", f->path);
        goto done;
    }
    int n_entries = cJSON_GetArraySize(root);
    f->tensors = calloc(n_entries ? (size_t)n_entries : 1, sizeof *f->tensors);
    f->by_name = calloc(n_entries ? (size_t)n_entries : 1, sizeof *f->by_name);
    spans = calloc(n_entries ? (size_t)n_entries : 1, sizeof *spans);
    if (!f->tensors || !f->by_name || !spans) {
        st = lina_fail(LINA_ERR_OOM, "safetensors '%s': out of memory for %d header entries", f->path, n_entries);
        goto done;
    }
    int saw_meta = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (saw_meta++) {
                st = lina_fail(LINA_ERR_FORMAT, "safetensors '%s': __metadata__ appears twice", f->path);
                goto done;
            }
            if ((st = parse_metadata(f, e))) goto done;
            continue;
        }
        st = parse_tensor(f, e, data_len, &f->tensors[f->n], &spans[f->n]);
        f->n++; /* counted even on failure so that close frees the name */
        if (st) goto done;
    }
    /* duplicate names */
    for (int i = 0; i < f->n; i++) f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_view_name);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->by_name[i - 1]->name, f->by_name[i]->name)) {
            st = lina_fail(LINA_ERR_FORMAT, "safetensors '%s': tensor '%s' appears twice", f->path, f->by_name[i]->name);
            goto done;
        }
    /* overlaps: sorted by begin, each span must start at or after the previous end
     * (empty tensors occupy no bytes and never overlap) */
    qsort(spans, (size_t)f->n, sizeof *spans, cmp_span);
    const span *prev = NULL;
    for (int i = 0; i < f->n; i++) {
        if (spans[i].begin == spans[i].end) continue;
        if (prev && spans[i].begin < prev->end) {
            st = lina_fail(LINA_ERR_FORMAT,
                           "safetensors '%s': tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", f->path,
                           prev->t->name, (unsigned long long)prev->begin, (unsigned long long)prev->end,
                           spans[i].t->name, (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end);
            goto done;
        }
        prev = &spans[i];
    }
    for (int i = 0; i < f->n; i++) {
        lina_tensor_view *t = (lina_tensor_view *)spans[i].t;
        t->data = data + spans[i].begin;
    }
done:
    free(spans);
    cJSON_Delete(root);
    return st;
}

void lina_st_close(lina_st_file *f) {
    if (!f) return;
    if (f->map && f->map != MAP_FAILED) munmap(f->map, f->map_size);
    for (int i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    free(f->path);
    free(f);
}

lina_status lina_st_open(const char *path, lina_st_file **out) {
    if (!out || !path) return lina_fail(LINA_ERR_INVALID_ARG, "lina_st_open: NULL path or output");
    *out = NULL;
    lina_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return lina_fail(LINA_ERR_OOM, "safetensors '%s': out of memory", path);
    }
    lina_status st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = lina_fail(LINA_ERR_IO, "safetensors '%s': cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = lina_fail(LINA_ERR_IO, "safetensors '%s': not a regular file", path);
        close(fd);
        goto fail;
    }
    if (sb.st_size < 8) {
        close(fd);
        st = lina_fail(LINA_ERR_FORMAT, "safetensors '%s': file of %lld bytes is shorter than the 8-byte header length",
                       path, (long long)sb.st_size);
        goto fail;
    }
    f->map_size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        st = lina_fail(LINA_ERR_IO, "safetensors '%s': mmap of %zu bytes failed: %s", path, f->map_size,
                       strerror(map_errno));
        goto fail;
    }
    const unsigned char *base = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | base[i]; /* little-endian */
    uint64_t avail = (uint64_t)f->map_size - 8;
    if (hlen == 0 || hlen > avail || hlen > MAX_HEADER_BYTES) {
        st = lina_fail(LINA_ERR_FORMAT,
                       "safetensors '%s': header length %llu is %s (file has %llu bytes after the length field)", path,
                       (unsigned long long)hlen, hlen == 0 ? "zero" : hlen > avail ? "past the end of file" : "over 100 MiB",
                       (unsigned long long)avail);
        goto fail;
    }
    if (base[8] != '{') {
        st = lina_fail(LINA_ERR_FORMAT, "safetensors '%s': header does not start with '{'", path);
        goto fail;
    }
    if ((st = parse_header(f, (const char *)base + 8, (size_t)hlen, avail - hlen, base + 8 + hlen))) goto fail;
    *out = f;
    return LINA_OK;
fail:
    lina_st_close(f);
    return st;
}

int lina_st_count(const lina_st_file *f) { return f ? f->n : 0; }

const lina_tensor_view *lina_st_tensor(const lina_st_file *f, int i) {
    return f && i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const lina_tensor_view *lina_st_find(const lina_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->by_name[mid]->name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *lina_st_metadata(const lina_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[i].key, key)) return f->meta[i].value;
    return NULL;
}

static void format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

lina_status lina_st_read_f32(const lina_st_file *f, const char *name, int ndim, const int64_t *shape, float *dst) {
    if (!f || !name || ndim < 0 || ndim > LINA_MAX_NDIM || (ndim > 0 && !shape))
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_st_read_f32: bad arguments (ndim = %d)", ndim);
    const lina_tensor_view *t = lina_st_find(f, name);
    if (!t) return lina_fail(LINA_ERR_FORMAT, "safetensors '%s': tensor '%s' not found", f->path, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char want[160], got[160];
        format_shape(want, sizeof want, ndim, shape);
        format_shape(got, sizeof got, t->ndim, t->shape);
        return lina_fail(LINA_ERR_FORMAT, "safetensors '%s': tensor '%s' has shape %s, expected %s", f->path, name, got,
                         want);
    }
    lina_status st = lina_tensor_to_f32(t, dst, t->numel);
    if (st) {
        char why[400];
        snprintf(why, sizeof why, "%s", lina_last_error());
        return lina_fail(st, "safetensors '%s': %s", f->path, why);
    }
    return LINA_OK;
}
