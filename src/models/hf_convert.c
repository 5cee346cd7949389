/* Checkpoint conversion between lina's own models (config.json "model_type":
 * "lina", include/lina/model.h) and flash-linear-attention layouts of the same
 * architecture: gated_deltanet, delta_net, gla. lina already names its tensors
 * as fla does, so the weights carry over unchanged; only config.json differs:
 *
 *   lina mixer       fla model_type   fla config
 *   gated_deltanet   gated_deltanet   head_dim = head_k_dim, expand_v = head_v_dim / head_k_dim,
 *                                     use_gate, use_short_conv, no neg. eigenvalues
 *   deltanet         delta_net        expand_k = H head_k_dim / D, expand_v = H head_v_dim / D,
 *                                     use_beta, short conv, silu + l2 q/k, no output gate
 *   gla              gla              expand_k, expand_v as above, output gate, no short conv,
 *                                     gate_low_rank_dim 16 (fla's fixed rank)
 *   retnet           retnet           expand_k, expand_v as above, output gate, no feature map,
 *                                     rotary base 10000 (fla's fixed base)
 * Every layer must use the same mixer (fla models are homogeneous). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/internal.h"
#include "../io/io_internal.h"
#include "hf_internal.h"
#include "lina/model.h"


static lina_status write_json(const char *dir, cJSON *j) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = cJSON_Print(j);
    if (!text) return lina_fail(LINA_ERR_OOM, "config.json: out of memory");
    lina_status st = lina_write_file_atomic(path, text, strlen(text));
    free(text);
    return st;
}

/* ---- lina -> fla ---- */

static lina_status lina_to_fla(const char *src, const char *dst) {
    lina_model *lm = NULL;
    TRY(lina_model_load(src, &lm));
    const lina_model_config *c = lina_model_get_config(lm);
    lina_mixer_kind kind = c->mixer[0];
    lina_status st = LINA_OK;
    for (int l = 1; l < c->n_layers && !st; l++)
        if (c->mixer[l] != kind)
            st = lina_fail(LINA_ERR_UNSUPPORTED,
                           "'%s': layer %d mixer '%s' differs from layer 0 '%s'; fla models use one mixer throughout",
                           src, l, lina_mixer_name(c->mixer[l]), lina_mixer_name(kind));
    if (!st && kind != LINA_MIXER_GATED_DELTANET && kind != LINA_MIXER_DELTANET && kind != LINA_MIXER_GLA &&
        kind != LINA_MIXER_RETNET)
        st = lina_fail(LINA_ERR_UNSUPPORTED,
                       "'%s': mixer '%s' has no fla counterpart here (gated_deltanet, deltanet, gla, retnet convert)",
                       src, lina_mixer_name(kind));
    if (!st && kind == LINA_MIXER_RETNET && c->rope_theta != 10000.0f)
        st = lina_fail(LINA_ERR_UNSUPPORTED, "'%s': rope_theta = %g, but fla's RetNet fixes the rotary base at 10000",
                       src, c->rope_theta);
    if (!st && kind == LINA_MIXER_GLA && c->gate_low_rank != 16)
        st = lina_fail(LINA_ERR_UNSUPPORTED, "'%s': gate_low_rank_dim = %d, but fla's GLA layer fixes it at 16", src,
                       c->gate_low_rank);
    cJSON *j = st ? NULL : cJSON_CreateObject();
    if (!st && !j) st = lina_fail(LINA_ERR_OOM, "out of memory");
    if (!st) {
        int H = c->n_heads, D = c->dim;
        double ek = (double)H * c->head_k_dim / D, ev = (double)H * c->head_v_dim / D;
        if (kind == LINA_MIXER_GATED_DELTANET) {
            cJSON_AddStringToObject(j, "model_type", "gated_deltanet");
            cJSON_AddNumberToObject(j, "head_dim", c->head_k_dim);
            double ev_gdn = (double)c->head_v_dim / c->head_k_dim;
            cJSON_AddNumberToObject(j, "expand_v", ev_gdn);
            if ((int)(c->head_k_dim * ev_gdn) != c->head_v_dim) /* fla: int(head_dim * expand_v) */
                st = lina_fail(LINA_ERR_UNSUPPORTED,
                               "'%s': head_v_dim %d is not int(head_k_dim %d * expand_v %.17g) as fla computes it",
                               src, c->head_v_dim, c->head_k_dim, ev_gdn);
            cJSON_AddBoolToObject(j, "use_gate", 1);
            cJSON_AddBoolToObject(j, "use_short_conv", 1);
            cJSON_AddBoolToObject(j, "allow_neg_eigval", 0);
        } else if (kind == LINA_MIXER_DELTANET) {
            cJSON_AddStringToObject(j, "model_type", "delta_net");
            cJSON_AddNumberToObject(j, "expand_k", ek);
            cJSON_AddNumberToObject(j, "expand_v", ev);
            cJSON_AddBoolToObject(j, "use_beta", 1);
            cJSON_AddBoolToObject(j, "use_gate", 0);
            cJSON_AddBoolToObject(j, "use_short_conv", 1);
            cJSON_AddStringToObject(j, "qk_activation", "silu");
            cJSON_AddStringToObject(j, "qk_norm", "l2");
        } else if (kind == LINA_MIXER_RETNET) {
            cJSON_AddStringToObject(j, "model_type", "retnet");
            cJSON_AddNumberToObject(j, "expand_k", ek);
            cJSON_AddNumberToObject(j, "expand_v", ev);
            cJSON_AddBoolToObject(j, "use_output_gate", 1);
            cJSON_AddBoolToObject(j, "elementwise_affine", 1);
            cJSON_AddNullToObject(j, "num_kv_heads");
            cJSON_AddNullToObject(j, "feature_map");
        } else {
            cJSON_AddStringToObject(j, "model_type", "gla");
            cJSON_AddNumberToObject(j, "expand_k", ek);
            cJSON_AddNumberToObject(j, "expand_v", ev);
            cJSON_AddBoolToObject(j, "use_output_gate", 1);
            cJSON_AddBoolToObject(j, "use_short_conv", 0);
            cJSON_AddNullToObject(j, "num_kv_heads");
            cJSON_AddNullToObject(j, "clamp_min");
            cJSON_AddNullToObject(j, "feature_map");
        }
        if (!st && kind != LINA_MIXER_GATED_DELTANET && /* the others: int(hidden_size * expand) / heads */
            ((int)(D * ek) != H * c->head_k_dim || (int)(D * ev) != H * c->head_v_dim))
            st = lina_fail(LINA_ERR_UNSUPPORTED, "'%s': head dims %d, %d x %d heads are not expressible as expand_k/v of %d",
                           src, c->head_k_dim, c->head_v_dim, H, D);
        cJSON_AddNumberToObject(j, "num_heads", H);
        cJSON_AddNumberToObject(j, "conv_size", c->conv_size);
        cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(j, "hidden_size", D);
        cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
        cJSON_AddNumberToObject(j, "intermediate_size", c->intermediate);
        cJSON_AddStringToObject(j, "hidden_act", "swish");
        cJSON_AddNumberToObject(j, "norm_eps", c->norm_eps);
        cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_embeddings);
        cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_seq);
        cJSON_AddNullToObject(j, "attn");
    }
    if (!st) st = lina_make_dirs(dst);
    if (!st) st = write_json(dst, j);
    cJSON_Delete(j);
    /* the tensors, unchanged (lina already uses fla's names) */
    lina_st_writer *w = NULL;
    if (!st) st = lina_st_writer_create(&w);
    for (int i = 0; !st && i < lina_model_n_tensors(lm); i++) {
        const char *name;
        int64_t shape[4];
        size_t off;
        int nd = lina_model_tensor_info(lm, i, &name, shape, &off);
        st = lina_st_writer_add(w, name, LINA_DTYPE_F32, nd, shape, lina_model_params(lm) + off);
    }
    if (!st) st = lina_st_writer_set_metadata(w, "format", "pt");
    if (!st) {
        char path[4096];
        snprintf(path, sizeof path, "%s/model.safetensors", dst);
        st = lina_st_writer_save(w, path);
    }
    lina_st_writer_free(w);
    lina_model_free(lm);
    return st;
}

/* ---- fla -> lina ---- */

static lina_status require_bool(const cJSON *cfg, const char *path, const char *key, int def, int want) {
    int v;
    TRY(hf_cfg_bool(cfg, path, key, def, &v));
    if (v != want)
        return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': field '%s' = %s, lina's mixer needs %s", path, key,
                         v ? "true" : "false", want ? "true" : "false");
    return LINA_OK;
}

static lina_status require_str(const cJSON *cfg, const char *path, const char *key, const char *def, const char *want) {
    const char *v;
    TRY(hf_cfg_str(cfg, path, key, def, &v));
    if (!v || strcmp(v, want))
        return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': field '%s' = '%s', lina's mixer needs '%s'", path, key,
                         v ? v : "null", want);
    return LINA_OK;
}

static lina_status fla_config(const cJSON *cfg, const char *path, lina_model_config *c) {
    const char *type;
    TRY(hf_cfg_str(cfg, path, "model_type", NULL, &type));
    if (strcmp(type, "gated_deltanet") && strcmp(type, "delta_net") && strcmp(type, "gla") && strcmp(type, "retnet"))
        return lina_fail(LINA_ERR_UNSUPPORTED,
                         "'%s': model_type '%s' does not convert to lina (gated_deltanet, delta_net, gla, retnet do)",
                         path, type);
    *c = lina_model_config_default();
    TRY(hf_cfg_int(cfg, path, "vocab_size", 1, 0, &c->vocab_size));
    TRY(hf_cfg_int(cfg, path, "hidden_size", 1, 0, &c->dim));
    TRY(hf_cfg_int(cfg, path, "num_hidden_layers", 1, 0, &c->n_layers));
    if (c->n_layers < 1 || c->n_layers > LINA_MODEL_MAX_LAYERS)
        return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': num_hidden_layers = %d is outside [1, %d]", path, c->n_layers,
                         LINA_MODEL_MAX_LAYERS);
    TRY(hf_cfg_bool(cfg, path, "tie_word_embeddings", 0, &c->tie_embeddings));
    TRY(hf_cfg_int(cfg, path, "conv_size", 0, 4, &c->conv_size));
    double eps;
    TRY(hf_cfg_float(cfg, path, "norm_eps", 0, 1e-6, &eps));
    c->norm_eps = (float)eps;
    TRY(require_str(cfg, path, "hidden_act", "swish", "swish"));
    TRY(hf_cfg_require_null(cfg, path, "attn"));
    TRY(hf_cfg_int(cfg, path, "max_position_embeddings", 0, 2048, &c->max_seq));
    int ratio, inter;
    TRY(hf_cfg_int(cfg, path, "hidden_ratio", 0, 4, &ratio));
    TRY(hf_cfg_int(cfg, path, "intermediate_size", 0, 0, &inter));
    if (inter <= 0) inter = 256 * (((int)(c->dim * (double)ratio * 2.0 / 3.0) + 255) / 256); /* fla GatedMLP */
    c->intermediate = inter;
    TRY(hf_cfg_int(cfg, path, "num_heads", 1, 0, &c->n_heads));
    if (c->n_heads < 1) return lina_fail(LINA_ERR_FORMAT, "'%s': num_heads = %d must be >= 1", path, c->n_heads);
    lina_mixer_kind kind;
    if (!strcmp(type, "gated_deltanet")) {
        kind = LINA_MIXER_GATED_DELTANET;
        double ev;
        TRY(hf_cfg_int(cfg, path, "head_dim", 0, 256, &c->head_k_dim));
        TRY(hf_cfg_float(cfg, path, "expand_v", 0, 2.0, &ev));
        c->head_v_dim = (int)lround(c->head_k_dim * ev);
        int hv;
        TRY(hf_cfg_int(cfg, path, "num_v_heads", 0, c->n_heads, &hv));
        if (hv != c->n_heads)
            return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': num_v_heads = %d != num_heads = %d (lina has no GVA)", path,
                             hv, c->n_heads);
        TRY(require_bool(cfg, path, "use_gate", 1, 1));
        TRY(require_bool(cfg, path, "use_short_conv", 1, 1));
        TRY(require_bool(cfg, path, "allow_neg_eigval", 0, 0));
        TRY(require_bool(cfg, path, "conv_bias", 0, 0));
    } else {
        int gla = !strcmp(type, "gla"), retnet = !strcmp(type, "retnet");
        kind = gla ? LINA_MIXER_GLA : retnet ? LINA_MIXER_RETNET : LINA_MIXER_DELTANET;
        double ek, ev;
        TRY(hf_cfg_float(cfg, path, "expand_k", 0, gla ? 0.5 : 1.0, &ek));
        TRY(hf_cfg_float(cfg, path, "expand_v", 0, retnet ? 2.0 : 1.0, &ev));
        int kd = (int)(c->dim * ek), vd = (int)(c->dim * ev);
        if (kd % c->n_heads || vd % c->n_heads || kd < c->n_heads || vd < c->n_heads)
            return lina_fail(LINA_ERR_FORMAT, "'%s': key dim %d / value dim %d not divisible by num_heads %d", path, kd,
                             vd, c->n_heads);
        c->head_k_dim = kd / c->n_heads;
        c->head_v_dim = vd / c->n_heads;
        if (retnet) {
            int kv;
            TRY(hf_cfg_int(cfg, path, "num_kv_heads", 0, c->n_heads, &kv));
            if (kv != c->n_heads)
                return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': num_kv_heads = %d != num_heads = %d", path, kv,
                                 c->n_heads);
            TRY(require_bool(cfg, path, "use_output_gate", 1, 1));
            TRY(require_bool(cfg, path, "elementwise_affine", 1, 1));
            TRY(hf_cfg_require_null(cfg, path, "feature_map"));
            c->rope_theta = 10000.0f;
        } else if (gla) {
            int kv;
            TRY(hf_cfg_int(cfg, path, "num_kv_heads", 0, c->n_heads, &kv));
            if (kv != c->n_heads)
                return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': num_kv_heads = %d != num_heads = %d", path, kv,
                                 c->n_heads);
            TRY(require_bool(cfg, path, "use_short_conv", 0, 0));
            TRY(require_bool(cfg, path, "use_output_gate", 1, 1));
            TRY(hf_cfg_require_null(cfg, path, "clamp_min"));
            TRY(hf_cfg_require_null(cfg, path, "feature_map"));
            c->gate_low_rank = 16;
        } else {
            TRY(require_bool(cfg, path, "use_beta", 1, 1));
            TRY(require_bool(cfg, path, "use_gate", 0, 0));
            TRY(require_bool(cfg, path, "use_short_conv", 1, 1));
            TRY(require_bool(cfg, path, "allow_neg_eigval", 0, 0));
            TRY(require_str(cfg, path, "qk_activation", "silu", "silu"));
            TRY(require_str(cfg, path, "qk_norm", "l2", "l2"));
        }
    }
    for (int l = 0; l < c->n_layers; l++) c->mixer[l] = kind;
    return lina_model_config_validate(c);
}

static lina_status fla_to_lina(const char *src, const cJSON *cfg, const char *path, const char *dst) {
    lina_model_config c;
    TRY(fla_config(cfg, path, &c));
    lina_model *lm = NULL;
    TRY(lina_model_create(&c, 0, &lm));
    hf_weights *w = NULL;
    lina_hf_model *owner = calloc(1, sizeof *owner); /* holds the f32 copies while they are copied over */
    lina_status st = owner && (owner->dir = strdup(src)) ? hf_weights_open(src, &w)
                                                         : lina_fail(LINA_ERR_OOM, "out of memory");
    for (int i = 0; !st && i < lina_model_n_tensors(lm); i++) {
        const char *name;
        int64_t shape[4];
        size_t off;
        int nd = lina_model_tensor_info(lm, i, &name, shape, &off);
        const float *t;
        st = hf_weights_get(w, owner, name, nd, shape, 1, &t);
        if (!st) {
            size_t n = 1;
            for (int d = 0; d < nd; d++) n *= (size_t)shape[d];
            memcpy(lina_model_params(lm) + off, t, n * sizeof *t);
        }
    }
    hf_weights_close(w);
    lina_hf_free(owner);
    if (!st) st = lina_model_save(lm, dst);
    lina_model_free(lm);
    return st;
}

lina_status lina_hf_convert(const char *src, const char *dst) {
    if (!src || !dst) return lina_fail(LINA_ERR_INVALID_ARG, "lina_hf_convert: NULL source or destination");
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", src);
    cJSON *cfg = NULL;
    TRY(hf_read_json(path, &cfg));
    const char *type = NULL;
    lina_status st = hf_cfg_str(cfg, path, "model_type", NULL, &type);
    if (!st && !type) st = lina_fail(LINA_ERR_FORMAT, "'%s': required field 'model_type' is missing", path);
    if (!st) st = !strcmp(type, "lina") ? lina_to_fla(src, dst) : fla_to_lina(src, cfg, path, dst);
    cJSON_Delete(cfg);
    return st;
}
