/* Model checkpoints: dir/config.json + dir/model.safetensors (F32, fla names).
 * Each file is written atomically (temp + fsync + rename by src/io); the
 * weights go first, so a crash leaves either the old pair or new weights
 * next to an equal config (the config only changes with the architecture). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/internal.h"
#include "../io/io_internal.h"
#include "lina/io.h"
#include "lm_internal.h"

#define TRY(x)                                                                                     \
    do {                                                                                           \
        lina_status st_ = (x);                                                                     \
        if (st_ != LINA_OK) return st_;                                                            \
    } while (0)

lina_status lina_model_save(const lina_model *m, const char *dir) {
    if (!m || !dir) return lina_fail(LINA_ERR_INVALID_ARG, "lina_model_save: NULL argument");
    /* a model training on the GPU: its current parameters (the host copy is refreshed, not changed) */
    if (m->cuda) TRY(lina_model_sync_host((lina_model *)m, NULL));
    TRY(lina_make_dirs(dir));
    char path[4096];
    lina_st_writer *w = NULL;
    TRY(lina_st_writer_create(&w));
    lina_status st = LINA_OK;
    for (int i = 0; i < m->reg.n && st == LINA_OK; i++) {
        const lina_tensor_entry *e = &m->reg.t[i];
        st = lina_st_writer_add(w, e->name, LINA_DTYPE_F32, e->ndim, e->shape, m->params + e->offset);
    }
    if (st == LINA_OK) st = lina_st_writer_set_metadata(w, "format", "pt");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st == LINA_OK) st = lina_st_writer_save(w, path);
    lina_st_writer_free(w);
    TRY(st);
    char *json = NULL;
    TRY(lina_model_config_to_json(&m->cfg, &json));
    snprintf(path, sizeof path, "%s/config.json", dir);
    st = lina_write_file_atomic(path, json, strlen(json));
    free(json);
    return st;
}

lina_status lina_model_load(const char *dir, lina_model **out) {
    if (!dir || !out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_model_load: NULL argument");
    *out = NULL;
    char path[4096];
    lina_model_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    TRY(lina_model_config_load(path, &cfg));
    lina_model *m = NULL;
    TRY(lina_lm_create(&cfg, 0, 0, &m));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    lina_st_file *f = NULL;
    lina_status st = lina_st_open(path, &f);
    for (int i = 0; i < m->reg.n && st == LINA_OK; i++) {
        const lina_tensor_entry *e = &m->reg.t[i];
        if (!lina_st_find(f, e->name))
            st = lina_fail(LINA_ERR_FORMAT, "%s: tensor %s is missing (does config.json match?)",
                           path, e->name);
        else
            st = lina_st_read_f32(f, e->name, e->ndim, e->shape, m->params + e->offset);
    }
    if (st == LINA_OK && !lina_all_finite(m->params, m->n_params))
        st = lina_fail(LINA_ERR_FORMAT, "%s: weights contain NaN or Inf", path);
    lina_st_close(f);
    if (st != LINA_OK) {
        lina_model_free(m);
        return st;
    }
    *out = m;
    return LINA_OK;
}
