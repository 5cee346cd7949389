/* AdamW (Loshchilov & Hutter): decoupled weight decay.
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)  +  lr wd p   (wd only on decaying tensors)
 * Elementwise, so the result never depends on the thread count. The moments
 * and the step count save to a safetensors file for --resume. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "lina/io.h"
#include "../models/lm_internal.h"
#include "lina/model.h"

struct lina_adamw {
    lina_adamw_config c;
    size_t n;
    float *m, *v;   /* (n) first and second moments */
    uint8_t *decay; /* (n) 1 where weight decay applies */
    int64_t t;
};

lina_adamw_config lina_adamw_default(void) {
    lina_adamw_config c = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
    return c;
}

lina_status lina_adamw_create(const lina_model *m, const lina_adamw_config *c, lina_adamw **out) {
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1) || !(c->eps > 0) ||
        !(c->weight_decay >= 0))
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "adamw: beta1 = %g, beta2 = %g must be in [0, 1), eps = %g > 0, wd = %g >= 0",
                         c->beta1, c->beta2, c->eps, c->weight_decay);
    lina_adamw *o = calloc(1, sizeof *o);
    size_t n = lina_model_n_params(m);
    if (o) {
        o->m = calloc(n ? n : 1, sizeof(float));
        o->v = calloc(n ? n : 1, sizeof(float));
        o->decay = calloc(n ? n : 1, 1);
    }
    if (!o || !o->m || !o->v || !o->decay) {
        lina_adamw_free(o);
        return lina_fail(LINA_ERR_OOM, "adamw: out of memory for %zu parameters", n);
    }
    o->c = *c;
    o->n = n;
    for (int i = 0; i < lina_model_n_tensors(m); i++) {
        int64_t shape[4];
        size_t off;
        lina_model_tensor_info(m, i, NULL, shape, &off);
        size_t numel = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
        memset(o->decay + off, lina_model_tensor_decays(m, i) ? 1 : 0, numel);
    }
    *out = o;
    return LINA_OK;
}

void lina_adamw_free(lina_adamw *o) {
    if (!o) return;
    free(o->m);
    free(o->v);
    free(o->decay);
    free(o);
}

int64_t lina_adamw_steps(const lina_adamw *o) { return o->t; }

/* The host moments of o, for lina_model_sync_host (lm_device.c). */
void lina_adamw_moments(lina_adamw *o, float **m, float **v) {
    *m = o->m;
    *v = o->v;
}

lina_status lina_adamw_step(lina_adamw *o, lina_model *mdl, float lr) {
    if (lina_model_n_params(mdl) != o->n)
        return lina_fail(LINA_ERR_INVALID_ARG, "adamw: model has %zu parameters, optimizer %zu",
                         lina_model_n_params(mdl), o->n);
    if (mdl->cuda) {
        const float cfg[4] = {o->c.beta1, o->c.beta2, o->c.eps, o->c.weight_decay};
        lina_status st = lina_cuda_lm_adamw(mdl->cuda, o, o->m, o->v, o->decay, o->n, cfg, o->t, lr);
        if (st == LINA_OK) o->t++;
        mdl->host_stale = 1; /* even a failed step may have written part of the device copy */
        return st;
    }
    float *p = lina_model_params(mdl);
    const float *g = lina_model_grads(mdl);
    o->t++;
    const lina_adamw_config *c = &o->c;
    float bc1 = 1.0f - powf(c->beta1, (float)o->t), bc2 = 1.0f - powf(c->beta2, (float)o->t);
#pragma omp parallel for schedule(static) if (o->n > 100000)
    for (size_t i = 0; i < o->n; i++) {
        float gi = g[i];
        float m = o->m[i] = c->beta1 * o->m[i] + (1.0f - c->beta1) * gi;
        float v = o->v[i] = c->beta2 * o->v[i] + (1.0f - c->beta2) * gi * gi;
        float upd = (m / bc1) / (sqrtf(v / bc2) + c->eps);
        if (o->decay[i]) upd += c->weight_decay * p[i];
        p[i] -= lr * upd;
    }
    return LINA_OK;
}

lina_status lina_adamw_save(const lina_adamw *o, const char *path) {
    lina_st_writer *w = NULL;
    lina_status st = lina_st_writer_create(&w);
    if (st != LINA_OK) return st;
    int64_t shape[1] = {(int64_t)o->n};
    char t[32];
    snprintf(t, sizeof t, "%lld", (long long)o->t);
    st = lina_st_writer_add(w, "adamw.m", LINA_DTYPE_F32, 1, shape, o->m);
    if (st == LINA_OK) st = lina_st_writer_add(w, "adamw.v", LINA_DTYPE_F32, 1, shape, o->v);
    if (st == LINA_OK) st = lina_st_writer_set_metadata(w, "step", t);
    if (st == LINA_OK) st = lina_st_writer_save(w, path);
    lina_st_writer_free(w);
    return st;
}

lina_status lina_adamw_load(lina_adamw *o, const char *path) {
    lina_st_file *f = NULL;
    lina_status st = lina_st_open(path, &f);
    if (st != LINA_OK) return st;
    int64_t shape[1] = {(int64_t)o->n};
    st = lina_st_read_f32(f, "adamw.m", 1, shape, o->m);
    if (st == LINA_OK) st = lina_st_read_f32(f, "adamw.v", 1, shape, o->v);
    const char *t = lina_st_metadata(f, "step");
    char *end = NULL;
    long long steps = t ? strtoll(t, &end, 10) : -1;
    if (st == LINA_OK && (!t || *end || steps < 0))
        st = lina_fail(LINA_ERR_FORMAT, "%s: missing or bad metadata \"step\"", path);
    if (st == LINA_OK) o->t = steps;
    lina_st_close(f);
    return st;
}
