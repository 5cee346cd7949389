/* ListOps classifier <-> safetensors: named weights with the model config in
 * the metadata, optionally the AdamW state (exact resume), and a warm start
 * from a model trained at other sequence lengths (see include/lina/listops.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "listops_internal.h"

typedef struct {
    char name[48];
    int ndim;
    int64_t shape[2];
    float *data; /* into m->params */
} named_tensor;

/* The weights in the flat order of layout() (listops_model.c); returns the
 * count (out may be NULL to count only). */
static int named_tensors(const lina_listops_model *m, named_tensor *out) {
    int n = 0, D = m->D, I = m->hidden;
#define ADD(nm, nd, s0, s1, ptr)                                         \
    do {                                                                 \
        if (out) {                                                       \
            named_tensor *t = &out[n];                                   \
            snprintf(t->name, sizeof t->name, "%s", nm);                 \
            t->ndim = nd, t->shape[0] = s0, t->shape[1] = s1, t->data = ptr; \
        }                                                                \
        n++;                                                             \
    } while (0)
    ADD("embed", 2, LINA_LISTOPS_VOCAB, D, m->E);
    if (m->P) ADD("pos", 2, m->c.max_len, D, m->P);
    for (int l = 0; l < m->c.layers; l++) {
        const layer_params *p = &m->lp[l];
        char nm[48];
#define LAYER(suffix, nd, s0, s1, ptr)                              \
    do {                                                            \
        snprintf(nm, sizeof nm, "layers.%d.%s", l, suffix);        \
        ADD(nm, nd, s0, s1, ptr);                                   \
    } while (0)
        LAYER("norm1", 1, D, 0, p->n1);
        LAYER("wq", 2, D, D, p->Wq);
        LAYER("wk", 2, D, D, p->Wk);
        LAYER("wv", 2, D, D, p->Wv);
        LAYER("wo", 2, D, D, p->Wo);
        LAYER("norm2", 1, D, 0, p->n2);
        LAYER("w_gate", 2, I, D, p->Wg);
        LAYER("w_up", 2, I, D, p->Wu);
        LAYER("w_down", 2, D, I, p->Wd);
#undef LAYER
    }
    ADD("norm", 1, D, 0, m->nf);
    ADD("head.weight", 2, LINA_LISTOPS_CLASSES, D, m->Wh);
    ADD("head.bias", 1, LINA_LISTOPS_CLASSES, 0, m->bh);
#undef ADD
    return n;
}

static const char *mixer_name(lina_listops_mixer x) { return x == LINA_LISTOPS_SOFTMAX ? "softmax" : "linear"; }

lina_status lina_listops_model_write(const lina_listops_model *m, int optimizer, lina_st_writer *w) {
    if (!m || !w) return lina_fail(LINA_ERR_INVALID_ARG, "listops_model_write: NULL argument");
    int n = named_tensors(m, NULL);
    named_tensor *t = malloc(sizeof *t * n);
    if (!t) return lina_fail(LINA_ERR_OOM, "listops_model_write: out of memory");
    named_tensors(m, t);
    lina_status st = LINA_OK;
    for (int i = 0; i < n && !st; i++) st = lina_st_writer_add(w, t[i].name, LINA_DTYPE_F32, t[i].ndim, t[i].shape, t[i].data);
    free(t);
    char v[32];
    const struct { const char *key; long long value; } meta[] = {
        {"listops.dim", m->c.dim}, {"listops.layers", m->c.layers}, {"listops.heads", m->c.heads},
        {"listops.max_len", m->c.max_len}};
    if (!st) st = lina_st_writer_set_metadata(w, "listops.mixer", mixer_name(m->c.mixer));
    for (int i = 0; i < 4 && !st; i++) {
        snprintf(v, sizeof v, "%lld", meta[i].value);
        st = lina_st_writer_set_metadata(w, meta[i].key, v);
    }
    if (optimizer && !st) {
        int64_t shape[1] = {m->n_params};
        st = lina_st_writer_add(w, "adamw.m1", LINA_DTYPE_F32, 1, shape, m->m1);
        if (!st) st = lina_st_writer_add(w, "adamw.m2", LINA_DTYPE_F32, 1, shape, m->m2);
        snprintf(v, sizeof v, "%lld", (long long)m->t);
        if (!st) st = lina_st_writer_set_metadata(w, "adamw.t", v);
    }
    return st;
}

lina_status lina_listops_model_save(const lina_listops_model *m, const char *path) {
    if (!m || !path) return lina_fail(LINA_ERR_INVALID_ARG, "listops_model_save: NULL argument");
    lina_st_writer *w = NULL;
    lina_status st = lina_st_writer_create(&w);
    if (!st) st = lina_listops_model_write(m, 0, w);
    if (!st) st = lina_st_writer_save(w, path);
    lina_st_writer_free(w);
    return st;
}

/* The source's config from the metadata; the error names the file and key. */
static lina_status read_config(const lina_st_file *f, const char *what, lina_listops_model_config *c) {
    const char *mx = lina_st_metadata(f, "listops.mixer");
    if (!mx || (strcmp(mx, "linear") && strcmp(mx, "softmax")))
        return lina_fail(LINA_ERR_FORMAT, "%s: metadata listops.mixer is %s%s%s (not a lina listops model)", what,
                         mx ? "'" : "", mx ? mx : "missing", mx ? "'" : "");
    c->mixer = strcmp(mx, "softmax") ? LINA_LISTOPS_LINEAR : LINA_LISTOPS_SOFTMAX;
    const char *keys[] = {"listops.dim", "listops.layers", "listops.heads", "listops.max_len"};
    int *vals[] = {&c->dim, &c->layers, &c->heads, &c->max_len};
    for (int i = 0; i < 4; i++) {
        const char *s = lina_st_metadata(f, keys[i]);
        char *end = NULL;
        long v = s ? strtol(s, &end, 10) : -1;
        if (!s || *end || v < 0 || v > 1 << 30)
            return lina_fail(LINA_ERR_FORMAT, "%s: metadata %s is %s%s%s", what, keys[i], s ? "'" : "",
                             s ? s : "missing", s ? "'" : "");
        *vals[i] = (int)v;
    }
    return LINA_OK;
}

/* Names the first of mixer/dim/layers/heads (and max_len if with_len) that differs. */
static lina_status same_shape(const lina_listops_model_config *src, const lina_listops_model_config *dst,
                              int with_len, const char *what) {
    if (src->mixer != dst->mixer)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s holds a %s model, this one is %s", what, mixer_name(src->mixer),
                         mixer_name(dst->mixer));
    const char *names[] = {"dim", "layers", "heads", "max_len"};
    int a[] = {src->dim, src->layers, src->heads, src->max_len}, b[] = {dst->dim, dst->layers, dst->heads, dst->max_len};
    for (int i = 0; i < (with_len ? 4 : 3); i++)
        if (a[i] != b[i])
            return lina_fail(LINA_ERR_INVALID_ARG, "%s holds a model with %s = %d, this one has %s = %d", what, names[i], a[i],
                             names[i], b[i]);
    return LINA_OK;
}

lina_status lina_listops_model_restore(lina_listops_model *m, const lina_st_file *f, int optimizer) {
    if (!m || !f) return lina_fail(LINA_ERR_INVALID_ARG, "listops_model_restore: NULL argument");
    lina_listops_model_config src;
    lina_status st = read_config(f, "listops checkpoint", &src);
    if (!st) st = same_shape(&src, &m->c, 1, "the checkpoint");
    if (st) return st;
    int n = named_tensors(m, NULL);
    named_tensor *t = malloc(sizeof *t * n);
    if (!t) return lina_fail(LINA_ERR_OOM, "listops_model_restore: out of memory");
    named_tensors(m, t);
    for (int i = 0; i < n && !st; i++) st = lina_st_read_f32(f, t[i].name, t[i].ndim, t[i].shape, t[i].data);
    free(t);
    if (st || !optimizer) return st;
    int64_t shape[1] = {m->n_params};
    const char *ts = lina_st_metadata(f, "adamw.t");
    char *end = NULL;
    long long steps = ts ? strtoll(ts, &end, 10) : -1;
    if (!ts || *end || steps < 0)
        return lina_fail(LINA_ERR_FORMAT, "listops checkpoint: metadata adamw.t is %s", ts ? ts : "missing");
    st = lina_st_read_f32(f, "adamw.m1", 1, shape, m->m1);
    if (!st) st = lina_st_read_f32(f, "adamw.m2", 1, shape, m->m2);
    if (!st) m->t = steps;
    return st;
}

lina_status lina_listops_model_warm_start(lina_listops_model *m, const char *path) {
    if (!m || !path) return lina_fail(LINA_ERR_INVALID_ARG, "listops_model_warm_start: NULL argument");
    lina_st_file *f = NULL;
    lina_status st = lina_st_open(path, &f);
    if (st) return st;
    lina_listops_model_config src;
    char what[600];
    snprintf(what, sizeof what, "--init-from %s", path);
    st = read_config(f, what, &src);
    if (!st) st = same_shape(&src, &m->c, 0, what);
    if (!st && (src.max_len > 0) != (m->c.max_len > 0))
        st = lina_fail(LINA_ERR_INVALID_ARG, "%s: the source %s learned positions, this model %s (--no-pos must match)", what,
                       src.max_len ? "has" : "has no", m->c.max_len ? "has them" : "has none");
    int n = st ? 0 : named_tensors(m, NULL);
    named_tensor *t = n ? malloc(sizeof *t * n) : NULL;
    if (n && !t) st = lina_fail(LINA_ERR_OOM, "listops_model_warm_start: out of memory");
    if (t) named_tensors(m, t);
    for (int i = 0; i < n && !st; i++) {
        if (t[i].data != m->P) {
            st = lina_st_read_f32(f, t[i].name, t[i].ndim, t[i].shape, t[i].data);
            continue;
        }
        /* positions: the rows both models have */
        int64_t src_shape[2] = {src.max_len, m->D};
        float *rows = malloc(sizeof(float) * (size_t)src.max_len * m->D);
        if (!rows) {
            st = lina_fail(LINA_ERR_OOM, "listops_model_warm_start: out of memory for %d positions", src.max_len);
            break;
        }
        st = lina_st_read_f32(f, "pos", 2, src_shape, rows);
        int common = src.max_len < m->c.max_len ? src.max_len : m->c.max_len;
        if (!st) memcpy(m->P, rows, sizeof(float) * (size_t)common * m->D);
        free(rows);
    }
    free(t);
    lina_st_close(f);
    return st;
}
