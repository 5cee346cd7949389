/* The tensors of a Hugging Face model directory: model.safetensors, or the
 * shards named by model.safetensors.index.json ("weight_map": name -> file).
 * Tensors are converted to f32 copies owned by the model, so the files can be
 * closed after loading. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/internal.h"
#include "hf_internal.h"

struct hf_weights {
    int n;
    lina_st_file **files;
    char **paths;
};

void hf_weights_close(hf_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        lina_st_close(w->files[i]);
        free(w->paths[i]);
    }
    free(w->files);
    free(w->paths);
    free(w);
}

static lina_status add_file(hf_weights *w, const char *path) {
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->paths[i], path)) return LINA_OK;
    lina_st_file **f = realloc(w->files, (size_t)(w->n + 1) * sizeof *f);
    if (!f) return lina_fail(LINA_ERR_OOM, "out of memory");
    w->files = f;
    char **p = realloc(w->paths, (size_t)(w->n + 1) * sizeof *p);
    if (!p) return lina_fail(LINA_ERR_OOM, "out of memory");
    w->paths = p;
    if (!(w->paths[w->n] = strdup(path))) return lina_fail(LINA_ERR_OOM, "out of memory");
    lina_status st = lina_st_open(path, &w->files[w->n]);
    if (st) {
        free(w->paths[w->n]);
        return st;
    }
    w->n++;
    return LINA_OK;
}

lina_status hf_weights_open(const char *dir, hf_weights **out) {
    *out = NULL;
    hf_weights *w = calloc(1, sizeof *w);
    if (!w) return lina_fail(LINA_ERR_OOM, "out of memory");
    char path[4096];
    lina_status st = LINA_OK;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, F_OK) == 0) {
        st = add_file(w, path);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        if (access(path, F_OK) != 0) {
            hf_weights_close(w);
            return lina_fail(LINA_ERR_IO, "'%s': neither model.safetensors nor model.safetensors.index.json found",
                             dir);
        }
        cJSON *idx = NULL;
        if ((st = hf_read_json(path, &idx))) goto done;
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
        if (!cJSON_IsObject(map) || !map->child) {
            st = lina_fail(LINA_ERR_FORMAT, "'%s': 'weight_map' is missing or empty", path);
        } else {
            for (const cJSON *e = map->child; e && !st; e = e->next) {
                if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || !e->valuestring[0]) {
                    st = lina_fail(LINA_ERR_FORMAT, "'%s': weight_map entry '%s' = '%s' is not a file name in %s",
                                   path, e->string, cJSON_IsString(e) ? e->valuestring : "(not a string)", dir);
                    break;
                }
                char shard[4096];
                snprintf(shard, sizeof shard, "%s/%s", dir, e->valuestring);
                st = add_file(w, shard);
            }
        }
        cJSON_Delete(idx);
    }
done:
    if (st) {
        hf_weights_close(w);
        return st;
    }
    *out = w;
    return LINA_OK;
}

static const lina_tensor_view *find(const hf_weights *w, const char *name, int *file) {
    for (int i = 0; i < w->n; i++) {
        const lina_tensor_view *t = lina_st_find(w->files[i], name);
        if (t) {
            *file = i;
            return t;
        }
    }
    return NULL;
}

int hf_weights_has(const hf_weights *w, const char *name) {
    int i;
    return find(w, name, &i) != NULL;
}

static lina_status keep_buffer(lina_hf_model *m, float *p) {
    if (m->n_bufs == m->cap_bufs) {
        int cap = m->cap_bufs ? 2 * m->cap_bufs : 64;
        float **b = realloc(m->bufs, (size_t)cap * sizeof *b);
        if (!b) return lina_fail(LINA_ERR_OOM, "out of memory");
        m->bufs = b;
        m->cap_bufs = cap;
    }
    m->bufs[m->n_bufs++] = p;
    return LINA_OK;
}

lina_status hf_weights_get(hf_weights *w, lina_hf_model *m, const char *name, int ndim, const int64_t *shape,
                           int required, const float **out) {
    *out = NULL;
    int fi = 0;
    const lina_tensor_view *t = find(w, name, &fi);
    if (!t) {
        if (!required) return LINA_OK;
        return lina_fail(LINA_ERR_FORMAT, "'%s': tensor '%s' is missing", w->n == 1 ? w->paths[0] : m->dir, name);
    }
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (size_t)shape[i];
    float *buf = malloc((numel ? numel : 1) * sizeof *buf);
    if (!buf) return lina_fail(LINA_ERR_OOM, "tensor '%s': out of memory for %zu floats", name, numel);
    lina_status st = lina_st_read_f32(w->files[fi], name, ndim, shape, buf);
    if (st || (st = keep_buffer(m, buf))) {
        free(buf);
        return st;
    }
    *out = buf;
    return LINA_OK;
}

lina_status hf_layer_get(hf_weights *w, lina_hf_model *m, int l, const char *suffix, int ndim, int64_t d0,
                         int64_t d1, int64_t d2, int required, const float **out) {
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);
    int64_t shape[3] = {d0, d1, d2};
    return hf_weights_get(w, m, name, ndim, shape, required, out);
}

lina_status hf_layer_out_mlp(hf_weights *w, lina_hf_model *m, int l, int64_t vv, hf_layer *L) {
    const int64_t D = m->D;
    TRY(hf_layer_get(w, m, l, "attn.o_proj.weight", 2, D, vv, 0, 1, &L->o_proj));
    TRY(hf_layer_get(w, m, l, "mlp_norm.weight", 1, D, 0, 0, 1, &L->mlp_norm));
    TRY(hf_layer_get(w, m, l, "mlp.gate_proj.weight", 2, m->I_mlp, D, 0, 1, &L->mlp_gate));
    TRY(hf_layer_get(w, m, l, "mlp.up_proj.weight", 2, m->I_mlp, D, 0, 1, &L->mlp_up));
    return hf_layer_get(w, m, l, "mlp.down_proj.weight", 2, D, m->I_mlp, 0, 1, &L->mlp_down);
}

lina_status hf_layer_conv(hf_weights *w, lina_hf_model *m, int l, const char *which, int C, hf_conv *cv) {
    char suffix[96];
    cv->C = C;
    snprintf(suffix, sizeof suffix, "attn.%s_conv1d.weight", which);
    TRY(hf_layer_get(w, m, l, suffix, 3, C, 1, m->conv_size, 1, &cv->w));
    snprintf(suffix, sizeof suffix, "attn.%s_conv1d.bias", which); /* conv_bias: absent by default */
    return hf_layer_get(w, m, l, suffix, 1, C, 0, 0, 0, &cv->b);
}
