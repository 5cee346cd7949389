/* Model configuration: defaults, presets, validation, config.json (cJSON). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "lm_internal.h"

lina_model_config lina_model_config_default(void) {
    lina_model_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 256;
    c.dim = 64;
    c.n_layers = 2;
    c.n_heads = 4;
    c.conv_size = 4;
    c.gate_low_rank = 16;
    c.max_seq = 2048;
    c.norm_eps = 1e-6f;
    c.rope_theta = 10000.0f;
    c.init_std = 0.02f;
    for (int i = 0; i < LINA_MODEL_MAX_LAYERS; i++) c.mixer[i] = LINA_MIXER_GATED_DELTANET;
    return c;
}

lina_status lina_model_config_preset(lina_model_config *c, const char *name) {
    static const struct {
        const char *name;
        int dim, layers, heads;
    } presets[] = {{"tiny", 64, 2, 4}, {"small", 128, 4, 4}, {"base", 256, 6, 4}};
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (name && !strcmp(name, presets[i].name)) {
            c->dim = presets[i].dim;
            c->n_layers = presets[i].layers;
            c->n_heads = presets[i].heads;
            c->head_k_dim = c->head_v_dim = c->intermediate = 0;
            return LINA_OK;
        }
    return lina_fail(LINA_ERR_INVALID_ARG, "unknown preset '%s' (tiny, small, base)",
                     name ? name : "(null)");
}

#define RANGE(field, lo, hi)                                                                       \
    if (c->field < (lo) || c->field > (hi))                                                        \
        return lina_fail(LINA_ERR_INVALID_ARG, "model config: " #field " = %d out of range [%d, %d]", \
                         (int)c->field, (int)(lo), (int)(hi));

lina_status lina_model_config_validate(lina_model_config *c) {
    if (!c) return lina_fail(LINA_ERR_INVALID_ARG, "model config is NULL");
    RANGE(vocab_size, 2, 1 << 22);
    RANGE(dim, 1, 1 << 16);
    RANGE(n_layers, 1, LINA_MODEL_MAX_LAYERS);
    RANGE(n_heads, 1, 4096);
    if (!c->head_k_dim) {
        if (c->dim % c->n_heads)
            return lina_fail(LINA_ERR_INVALID_ARG,
                             "model config: dim = %d is not a multiple of n_heads = %d", c->dim,
                             c->n_heads);
        c->head_k_dim = c->dim / c->n_heads;
    }
    if (!c->head_v_dim) c->head_v_dim = c->head_k_dim;
    if (!c->intermediate) c->intermediate = ((c->dim * 8 / 3) + 31) / 32 * 32;
    if (!c->conv_size) c->conv_size = 4;
    if (!c->gate_low_rank) c->gate_low_rank = 16;
    if (!c->max_seq) c->max_seq = 2048;
    if (c->norm_eps == 0) c->norm_eps = 1e-6f;
    if (c->rope_theta == 0) c->rope_theta = 10000.0f;
    if (c->init_std == 0) c->init_std = 0.02f;
    RANGE(head_k_dim, 1, 1024);
    RANGE(head_v_dim, 1, 1024);
    RANGE(intermediate, 1, 1 << 20);
    RANGE(conv_size, 1, 64);
    RANGE(short_conv_all, 0, 1);
    RANGE(gate_low_rank, 1, 4096);
    RANGE(max_seq, 1, 1 << 24);
    if (!(c->norm_eps > 0) || !(c->rope_theta > 1) || !(c->init_std > 0))
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "model config: norm_eps = %g, rope_theta = %g, init_std = %g must be > 0 (theta > 1)",
                         c->norm_eps, c->rope_theta, c->init_std);
    for (int l = 0; l < c->n_layers; l++) {
        if ((unsigned)c->mixer[l] >= LINA_MIXER_COUNT)
            return lina_fail(LINA_ERR_INVALID_ARG, "model config: mixer of layer %d = %d unknown", l,
                             (int)c->mixer[l]);
        int rope = c->mixer[l] == LINA_MIXER_SOFTMAX || c->mixer[l] == LINA_MIXER_RETNET;
        if (rope && c->head_k_dim % 2)
            return lina_fail(LINA_ERR_INVALID_ARG,
                             "model config: rotary embeddings (layer %d, %s) need an even head_k_dim, got %d",
                             l, lina_mixer_name(c->mixer[l]), c->head_k_dim);
    }
    return LINA_OK;
}

lina_status lina_model_config_to_json(const lina_model_config *c, char **json_out) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return lina_fail(LINA_ERR_OOM, "config json: out of memory");
    cJSON_AddStringToObject(j, "model_type", "lina");
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "hidden_size", c->dim);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "num_heads", c->n_heads);
    cJSON_AddNumberToObject(j, "head_k_dim", c->head_k_dim);
    cJSON_AddNumberToObject(j, "head_v_dim", c->head_v_dim);
    cJSON_AddNumberToObject(j, "intermediate_size", c->intermediate);
    cJSON_AddNumberToObject(j, "conv_size", c->conv_size);
    cJSON_AddNumberToObject(j, "gate_low_rank_dim", c->gate_low_rank);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_seq);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_embeddings);
    if (c->short_conv_all) cJSON_AddBoolToObject(j, "short_conv_all", 1);
    cJSON_AddNumberToObject(j, "norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta);
    cJSON_AddNumberToObject(j, "initializer_range", c->init_std);
    cJSON *arr = cJSON_AddArrayToObject(j, "mixers");
    for (int l = 0; arr && l < c->n_layers; l++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(lina_mixer_name(c->mixer[l])));
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    if (!s) return lina_fail(LINA_ERR_OOM, "config json: out of memory");
    *json_out = s;
    return LINA_OK;
}

static int get_int(const cJSON *j, const char *key, int *dst, int required) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v) return !required;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble) return 0;
    *dst = (int)v->valuedouble;
    return 1;
}

static int get_float(const cJSON *j, const char *key, float *dst) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v) return 1;
    if (!cJSON_IsNumber(v)) return 0;
    *dst = (float)v->valuedouble;
    return 1;
}

lina_status lina_model_config_from_json(const char *json, lina_model_config *c) {
    cJSON *j = cJSON_Parse(json);
    if (!j) {
        const char *where = cJSON_GetErrorPtr();
        return lina_fail(LINA_ERR_FORMAT, "config.json: malformed JSON near '%.20s'",
                         where ? where : "?");
    }
    lina_status st = LINA_OK;
    *c = lina_model_config_default();
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "lina"))) {
        st = lina_fail(LINA_ERR_UNSUPPORTED, "config.json: model_type '%s' is not lina's own",
                       cJSON_IsString(mt) ? mt->valuestring : "?");
        goto done;
    }
    static const struct {
        const char *key;
        size_t off;
        int required;
    } ints[] = {
        {"vocab_size", offsetof(lina_model_config, vocab_size), 1},
        {"hidden_size", offsetof(lina_model_config, dim), 1},
        {"num_hidden_layers", offsetof(lina_model_config, n_layers), 1},
        {"num_heads", offsetof(lina_model_config, n_heads), 1},
        {"head_k_dim", offsetof(lina_model_config, head_k_dim), 0},
        {"head_v_dim", offsetof(lina_model_config, head_v_dim), 0},
        {"intermediate_size", offsetof(lina_model_config, intermediate), 0},
        {"conv_size", offsetof(lina_model_config, conv_size), 0},
        {"gate_low_rank_dim", offsetof(lina_model_config, gate_low_rank), 0},
        {"max_position_embeddings", offsetof(lina_model_config, max_seq), 0},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if (!get_int(j, ints[i].key, (int *)((char *)c + ints[i].off), ints[i].required)) {
            st = lina_fail(LINA_ERR_FORMAT, "config.json: \"%s\" is %s (an integer is needed)",
                           ints[i].key,
                           cJSON_GetObjectItemCaseSensitive(j, ints[i].key) ? "not an integer" : "missing");
            goto done;
        }
    if (!get_float(j, "norm_eps", &c->norm_eps) || !get_float(j, "rope_theta", &c->rope_theta) ||
        !get_float(j, "initializer_range", &c->init_std)) {
        st = lina_fail(LINA_ERR_FORMAT, "config.json: norm_eps, rope_theta, initializer_range must be numbers");
        goto done;
    }
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    if (tie) c->tie_embeddings = cJSON_IsTrue(tie);
    const cJSON *conv_all = cJSON_GetObjectItemCaseSensitive(j, "short_conv_all");
    if (conv_all && !cJSON_IsBool(conv_all)) {
        st = lina_fail(LINA_ERR_FORMAT, "config.json: \"short_conv_all\" must be true or false");
        goto done;
    }
    if (conv_all) c->short_conv_all = cJSON_IsTrue(conv_all);
    const cJSON *mixers = cJSON_GetObjectItemCaseSensitive(j, "mixers");
    if (!cJSON_IsArray(mixers) || cJSON_GetArraySize(mixers) != c->n_layers) {
        st = lina_fail(LINA_ERR_FORMAT, "config.json: \"mixers\" must be a list of %d mixer names",
                       c->n_layers);
        goto done;
    }
    for (int l = 0; l < c->n_layers && l < LINA_MODEL_MAX_LAYERS; l++) {
        const cJSON *it = cJSON_GetArrayItem(mixers, l);
        int k = cJSON_IsString(it) ? lina_mixer_parse(it->valuestring) : -1;
        if (k < 0) {
            st = lina_fail(LINA_ERR_FORMAT, "config.json: mixers[%d] = '%s' is not a known mixer", l,
                           cJSON_IsString(it) ? it->valuestring : "?");
            goto done;
        }
        c->mixer[l] = (lina_mixer_kind)k;
    }
    st = lina_model_config_validate(c);
done:
    cJSON_Delete(j);
    return st;
}

lina_status lina_model_config_load(const char *path, lina_model_config *c) {
    FILE *f = fopen(path, "rb");
    if (!f) return lina_fail(LINA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            if (cap > (64u << 20)) {
                free(buf);
                fclose(f);
                return lina_fail(LINA_ERR_FORMAT, "%s: larger than 64 MB, not a config", path);
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return lina_fail(LINA_ERR_OOM, "reading %s: out of memory", path);
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r < 4096) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return lina_fail(LINA_ERR_IO, "reading %s failed", path);
    }
    buf[n] = 0;
    lina_status st = lina_model_config_from_json(buf, c);
    free(buf);
    if (st != LINA_OK) {
        /* prefix the message with the path */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", lina_last_error());
        return lina_fail(st, "%s: %s", path, msg);
    }
    return LINA_OK;
}
