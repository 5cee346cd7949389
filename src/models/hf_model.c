/* Hugging Face checkpoint runner: config.json -> architecture, weights,
 * the residual stack, states for decoding, greedy generation.
 *
 *   x = embed(ids)
 *   per layer: x += mixer(RMSNorm(x));  fla models also: x += SwiGLU(RMSNorm(x))
 *   logits = lm_head(RMSNorm(x))           (lm_head = embed when tied) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "hf_internal.h"


static lina_status positive(const char *path, const char *key, int v) {
    if (v < 1 || v > (1 << 24)) return lina_fail(LINA_ERR_FORMAT, "'%s': field '%s' = %d must be >= 1", path, key, v);
    return LINA_OK;
}

/* fla GatedMLP width: intermediate_size, or 2/3 * hidden_ratio * D rounded up to a multiple of 256. */
static lina_status fla_mlp_width(lina_hf_model *m, const cJSON *cfg, const char *path) {
    int ratio, inter;
    TRY(hf_cfg_int(cfg, path, "hidden_ratio", 0, 4, &ratio));
    TRY(hf_cfg_int(cfg, path, "intermediate_size", 0, 0, &inter));
    if (inter <= 0) {
        inter = (int)(m->D * (double)ratio * 2.0 / 3.0);
        inter = 256 * ((inter + 255) / 256);
    }
    TRY(positive(path, "intermediate_size", inter));
    m->I_mlp = inter;
    const char *act;
    TRY(hf_cfg_str(cfg, path, "hidden_act", "swish", &act));
    if (strcmp(act, "swish") && strcmp(act, "silu"))
        return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': hidden_act '%s' is not supported (swish only)", path, act);
    TRY(hf_cfg_require_null(cfg, path, "attn"));               /* hybrid softmax layers */
    TRY(hf_cfg_require_null(cfg, path, "attnres_block_size")); /* attention residuals */
    return LINA_OK;
}

/* head dims from expand_k / expand_v as fla computes them: int(D * expand) / heads */
static lina_status fla_heads(lina_hf_model *m, const cJSON *cfg, const char *path, double def_expand_k) {
    double ek, ev;
    TRY(hf_cfg_int(cfg, path, "num_heads", 1, 0, &m->H));
    TRY(positive(path, "num_heads", m->H));
    TRY(hf_cfg_float(cfg, path, "expand_k", 0, def_expand_k, &ek));
    TRY(hf_cfg_float(cfg, path, "expand_v", 0, 1.0, &ev));
    int key_dim = (int)(m->D * ek), value_dim = (int)(m->D * ev);
    if (key_dim < m->H || key_dim % m->H || value_dim < m->H || value_dim % m->H)
        return lina_fail(LINA_ERR_FORMAT, "'%s': key dim %d / value dim %d (expand_k %g, expand_v %g) not divisible by num_heads %d",
                         path, key_dim, value_dim, ek, ev, m->H);
    m->Kh = key_dim / m->H;
    m->Vh = value_dim / m->H;
    TRY(hf_cfg_bool(cfg, path, "use_short_conv", m->arch == HF_DELTA_NET, &m->use_short_conv));
    TRY(hf_cfg_int(cfg, path, "conv_size", 0, 4, &m->conv_size));
    TRY(positive(path, "conv_size", m->conv_size));
    double eps;
    TRY(hf_cfg_float(cfg, path, "norm_eps", 0, 1e-6, &eps));
    m->norm_eps = (float)eps;
    return LINA_OK;
}

static lina_status parse_gla(lina_hf_model *m, const cJSON *cfg, const char *path) {
    TRY(fla_heads(m, cfg, path, 0.5));
    TRY(hf_cfg_int(cfg, path, "num_kv_heads", 0, m->H, &m->Hkv));
    if (m->Hkv < 1 || m->H % m->Hkv)
        return lina_fail(LINA_ERR_FORMAT, "'%s': num_kv_heads = %d must divide num_heads = %d", path, m->Hkv, m->H);
    TRY(hf_cfg_bool(cfg, path, "use_output_gate", 1, &m->use_output_gate));
    TRY(hf_cfg_require_null(cfg, path, "feature_map"));
    double clamp;
    TRY(hf_cfg_float(cfg, path, "clamp_min", 0, -INFINITY, &clamp));
    m->clamp_min = (float)clamp;
    m->gate_logit_normalizer = 16.0f; /* fla's default; GLABlock never overrides it */
    return fla_mlp_width(m, cfg, path);
}

static lina_status parse_delta_net(lina_hf_model *m, const cJSON *cfg, const char *path) {
    TRY(fla_heads(m, cfg, path, 1.0));
    m->Hkv = m->H;
    TRY(hf_cfg_bool(cfg, path, "use_beta", 1, &m->use_beta));
    TRY(hf_cfg_bool(cfg, path, "use_gate", 0, &m->use_gate));
    TRY(hf_cfg_bool(cfg, path, "allow_neg_eigval", 0, &m->allow_neg_eigval));
    const char *norm, *act;
    TRY(hf_cfg_str(cfg, path, "qk_norm", "l2", &norm));
    TRY(hf_cfg_str(cfg, path, "qk_activation", "silu", &act));
    if (!strcmp(norm, "l2")) m->qk_l2 = 1;
    else if (!strcmp(norm, "sum")) m->qk_l2 = 0;
    else return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': qk_norm '%s' is not one of l2, sum", path, norm);
    if (!strcmp(act, "silu")) m->qk_act = HF_ACT_SILU;
    else if (!strcmp(act, "relu")) m->qk_act = HF_ACT_RELU;
    else if (!strcmp(act, "elu")) m->qk_act = HF_ACT_ELU_P1;
    else if (!strcmp(act, "identity")) m->qk_act = HF_ACT_IDENTITY;
    else return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': qk_activation '%s' is not one of silu, relu, elu, identity", path, act);
    return fla_mlp_width(m, cfg, path);
}

/* fla GatedDeltaNetConfig: head_dim, num_heads, num_v_heads, expand_v, use_gate, use_short_conv */
static lina_status parse_gated_deltanet(lina_hf_model *m, const cJSON *cfg, const char *path) {
    double ev, eps;
    TRY(hf_cfg_int(cfg, path, "num_heads", 0, 6, &m->H));
    TRY(positive(path, "num_heads", m->H));
    TRY(hf_cfg_int(cfg, path, "head_dim", 0, 256, &m->Kh));
    TRY(positive(path, "head_dim", m->Kh));
    TRY(hf_cfg_int(cfg, path, "num_v_heads", 0, m->H, &m->HV));
    TRY(positive(path, "num_v_heads", m->HV));
    if (m->HV % m->H)
        return lina_fail(LINA_ERR_FORMAT, "'%s': num_v_heads = %d must be a multiple of num_heads = %d", path, m->HV,
                         m->H);
    TRY(hf_cfg_float(cfg, path, "expand_v", 0, 2.0, &ev));
    double vh = m->Kh * ev;
    if (!(vh >= 1) || fabs(vh - floor(vh + 0.5)) > 1e-5 * vh)
        return lina_fail(LINA_ERR_FORMAT, "'%s': head_dim %d * expand_v %g is not a whole number of channels", path,
                         m->Kh, ev);
    m->Vh = (int)floor(vh + 0.5);
    m->Hkv = m->H;
    TRY(hf_cfg_bool(cfg, path, "use_gate", 1, &m->use_gate));
    TRY(hf_cfg_bool(cfg, path, "use_short_conv", 1, &m->use_short_conv));
    TRY(hf_cfg_bool(cfg, path, "allow_neg_eigval", 0, &m->allow_neg_eigval));
    TRY(hf_cfg_int(cfg, path, "conv_size", 0, 4, &m->conv_size));
    TRY(positive(path, "conv_size", m->conv_size));
    TRY(hf_cfg_float(cfg, path, "norm_eps", 0, 1e-6, &eps));
    m->norm_eps = (float)eps;
    return fla_mlp_width(m, cfg, path);
}

/* fla RetNetConfig. Its RetNetBlock passes neither use_short_conv nor conv_size
 * to MultiScaleRetention, so public RetNet checkpoints never have short convs. */
static lina_status parse_retnet(lina_hf_model *m, const cJSON *cfg, const char *path) {
    double ek, ev, eps;
    TRY(hf_cfg_int(cfg, path, "num_heads", 0, 8, &m->H));
    TRY(positive(path, "num_heads", m->H));
    TRY(hf_cfg_int(cfg, path, "num_kv_heads", 0, m->H, &m->Hkv));
    if (m->Hkv < 1 || m->H % m->Hkv)
        return lina_fail(LINA_ERR_FORMAT, "'%s': num_kv_heads = %d must divide num_heads = %d", path, m->Hkv, m->H);
    TRY(hf_cfg_float(cfg, path, "expand_k", 0, 1.0, &ek));
    TRY(hf_cfg_float(cfg, path, "expand_v", 0, 2.0, &ev));
    int key_dim = (int)(m->D * ek), value_dim = (int)(m->D * ev);
    if (key_dim < m->H || key_dim % m->H || value_dim < m->H || value_dim % m->H)
        return lina_fail(LINA_ERR_FORMAT,
                         "'%s': key dim %d / value dim %d (expand_k %g, expand_v %g) not divisible by num_heads %d",
                         path, key_dim, value_dim, ek, ev, m->H);
    m->Kh = key_dim / m->H;
    m->Vh = value_dim / m->H;
    if (m->Kh % 2)
        return lina_fail(LINA_ERR_FORMAT, "'%s': head key dim %d (expand_k %g) must be even for the rotary embedding",
                         path, m->Kh, ek);
    m->HV = m->H;
    m->use_short_conv = 0;
    m->conv_size = 1;
    m->rope_base = 10000.0f;
    TRY(hf_cfg_bool(cfg, path, "use_output_gate", 1, &m->use_output_gate));
    TRY(hf_cfg_bool(cfg, path, "elementwise_affine", 1, &m->norm_affine));
    const char *fmap;
    TRY(hf_cfg_str(cfg, path, "feature_map", NULL, &fmap));
    if (!fmap) m->qk_act = HF_ACT_IDENTITY;
    else if (!strcmp(fmap, "relu")) m->qk_act = HF_ACT_RELU;
    else if (!strcmp(fmap, "swish") || !strcmp(fmap, "silu")) m->qk_act = HF_ACT_SILU;
    else return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': feature_map '%s' is not one of null, relu, swish", path, fmap);
    TRY(hf_cfg_float(cfg, path, "norm_eps", 0, 1e-6, &eps));
    m->norm_eps = (float)eps;
    return fla_mlp_width(m, cfg, path);
}

/* fla HGRN2Config: expand_ratio (head forget dim) wins over num_heads, as in HGRN2Attention */
static lina_status parse_hgrn2(lina_hf_model *m, const cJSON *cfg, const char *path) {
    int ratio, heads;
    double eps;
    TRY(hf_cfg_int(cfg, path, "expand_ratio", 0, 128, &ratio));
    TRY(hf_cfg_int(cfg, path, "num_heads", 0, 0, &heads));
    const cJSON *er = cJSON_GetObjectItemCaseSensitive(cfg, "expand_ratio");
    if (er && cJSON_IsNull(er)) { /* explicitly null: derived from num_heads */
        if (heads < 1)
            return lina_fail(LINA_ERR_FORMAT, "'%s': expand_ratio is null and num_heads = %d is not >= 1", path, heads);
        ratio = m->D / heads;
    }
    TRY(positive(path, "expand_ratio", ratio));
    m->H = m->D / ratio;
    if (m->H < 1 || m->D % m->H)
        return lina_fail(LINA_ERR_FORMAT, "'%s': hidden_size %d / expand_ratio %d gives %d heads, which must divide it",
                         path, m->D, ratio, m->H);
    m->Kh = ratio;
    m->Vh = m->D / m->H;
    m->Hkv = m->HV = m->H;
    TRY(hf_cfg_bool(cfg, path, "use_short_conv", 0, &m->use_short_conv));
    TRY(hf_cfg_int(cfg, path, "conv_size", 0, 4, &m->conv_size));
    TRY(positive(path, "conv_size", m->conv_size));
    TRY(hf_cfg_bool(cfg, path, "use_lower_bound", 1, &m->use_lower_bound));
    if (m->use_lower_bound && m->H * m->Kh != m->D)
        return lina_fail(LINA_ERR_FORMAT, "'%s': use_lower_bound needs heads %d * expand_ratio %d == hidden_size %d",
                         path, m->H, m->Kh, m->D);
    TRY(hf_cfg_bool(cfg, path, "elementwise_affine", 1, &m->norm_affine));
    TRY(hf_cfg_float(cfg, path, "norm_eps", 0, 1e-6, &eps));
    m->norm_eps = (float)eps;
    return fla_mlp_width(m, cfg, path);
}

static lina_status parse_linear_attn(lina_hf_model *m, const cJSON *cfg, const char *path) {
    TRY(hf_la_parse(m, cfg, path));
    return fla_mlp_width(m, cfg, path);
}

/* transformers' Mamba2Config and fla's Mamba2Config share model_type "mamba2" and the
 * weight names; fla's names its fields norm_eps, rmsnorm, dt_limit and adds
 * norm_before_gate and D_has_hdim, and its gated RMSNorm works on groups of I / n_groups. */
static lina_status parse_mamba2(lina_hf_model *m, const cJSON *cfg, const char *path) {
    int expand, use_bias, rms_norm;
    int fla = hf_cfg_has(cfg, "rmsnorm") || hf_cfg_has(cfg, "dt_limit") || hf_cfg_has(cfg, "D_has_hdim") ||
              (hf_cfg_has(cfg, "norm_eps") && !hf_cfg_has(cfg, "layer_norm_epsilon"));
    double eps;
    TRY(hf_cfg_int(cfg, path, "num_heads", 1, 0, &m->m_heads));
    TRY(hf_cfg_int(cfg, path, "head_dim", 1, 0, &m->m_head_dim));
    TRY(hf_cfg_int(cfg, path, "state_size", 1, 0, &m->m_N));
    TRY(hf_cfg_int(cfg, path, "n_groups", 0, 1, &m->m_G));
    TRY(hf_cfg_int(cfg, path, "expand", 0, 2, &expand));
    TRY(hf_cfg_int(cfg, path, "conv_kernel", 0, 4, &m->conv_size));
    TRY(positive(path, "num_heads", m->m_heads));
    TRY(positive(path, "head_dim", m->m_head_dim));
    TRY(positive(path, "state_size", m->m_N));
    TRY(positive(path, "n_groups", m->m_G));
    TRY(positive(path, "expand", expand));
    TRY(positive(path, "conv_kernel", m->conv_size));
    TRY(hf_cfg_float(cfg, path, fla ? "norm_eps" : "layer_norm_epsilon", 0, 1e-5, &eps));
    m->norm_eps = (float)eps;
    m->m_I = expand * m->D;
    if (m->m_heads * m->m_head_dim != m->m_I)
        return lina_fail(LINA_ERR_FORMAT, "'%s': num_heads %d * head_dim %d != expand %d * hidden_size %d", path,
                         m->m_heads, m->m_head_dim, expand, m->D);
    if (m->m_heads % m->m_G)
        return lina_fail(LINA_ERR_FORMAT, "'%s': n_groups = %d must divide num_heads = %d", path, m->m_G, m->m_heads);
    m->m_conv_dim = m->m_I + 2 * m->m_G * m->m_N;
    m->m_dmlp = 0;
    m->m_P = m->m_I + m->m_conv_dim + m->m_heads;
    TRY(hf_cfg_bool(cfg, path, "use_bias", 0, &use_bias));
    TRY(hf_cfg_bool(cfg, path, fla ? "rmsnorm" : "rms_norm", 1, &rms_norm));
    if (use_bias) return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': use_bias = true is not supported", path);
    m->m_gated_norm = rms_norm;
    TRY(hf_cfg_bool(cfg, path, "norm_before_gate", 0, &m->m_norm_before_gate));
    TRY(hf_cfg_bool(cfg, path, "D_has_hdim", 0, &m->m_D_hdim));
    m->m_norm_group = fla ? m->m_I / m->m_G : m->m_I;
    const char *act;
    TRY(hf_cfg_str(cfg, path, "hidden_act", "silu", &act));
    if (strcmp(act, "silu") && strcmp(act, "swish"))
        return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': hidden_act '%s' is not supported (silu only)", path, act);
    m->dt_min = 0.0f;
    m->dt_max = INFINITY;
    const char *lim_key = fla ? "dt_limit" : "time_step_limit";
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(cfg, lim_key);
    if (lim && !cJSON_IsNull(lim)) {
        cJSON *pair = cJSON_CreateObject();
        double lo = 0, hi = INFINITY;
        lina_status st = LINA_OK;
        if (!cJSON_IsArray(lim) || cJSON_GetArraySize(lim) != 2 || !pair) {
            st = lina_fail(LINA_ERR_FORMAT, "'%s': %s is not a [min, max] pair", path, lim_key);
        } else {
            cJSON_AddItemReferenceToObject(pair, "lo", cJSON_GetArrayItem(lim, 0));
            cJSON_AddItemReferenceToObject(pair, "hi", cJSON_GetArrayItem(lim, 1));
            st = hf_cfg_float(pair, path, "lo", 1, 0, &lo);
            if (!st) st = hf_cfg_float(pair, path, "hi", 1, 0, &hi);
            if (!st && !(lo <= hi))
                st = lina_fail(LINA_ERR_FORMAT, "'%s': %s [%g, %g] is empty", path, lim_key, lo, hi);
        }
        cJSON_Delete(pair);
        TRY(st);
        m->dt_min = (float)lo;
        m->dt_max = (float)hi;
    }
    return LINA_OK;
}

void lina_hf_free(lina_hf_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_bufs; i++) free(m->bufs[i]);
    free(m->bufs);
    free(m->layers);
    free(m->dir);
    free(m);
}

static lina_status load(lina_hf_model *m, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *cfg = NULL;
    TRY(hf_read_json(path, &cfg));
    lina_status st;
    const char *type = NULL;
    int tie = 0;
    st = hf_cfg_str(cfg, path, "model_type", NULL, &type);
    if (!st && !type) st = lina_fail(LINA_ERR_FORMAT, "'%s': required field 'model_type' is missing", path);
    if (!st) {
        if (!strcmp(type, "gla")) m->arch = HF_GLA;
        else if (!strcmp(type, "delta_net")) m->arch = HF_DELTA_NET;
        else if (!strcmp(type, "mamba2")) m->arch = HF_MAMBA2;
        else if (!strcmp(type, "gated_deltanet")) m->arch = HF_GATED_DELTANET;
        else if (!strcmp(type, "retnet")) m->arch = HF_RETNET;
        else if (!strcmp(type, "rwkv7") || !strcmp(type, "rwkv7_fla")) m->arch = HF_RWKV7;
        else if (!strcmp(type, "hgrn2")) m->arch = HF_HGRN2;
        else if (!strcmp(type, "linear_attn")) m->arch = HF_LINEAR_ATTN;
        else if (!strcmp(type, "qwen3_next")) m->arch = HF_QWEN3_NEXT;
        else
            st = lina_fail(LINA_ERR_UNSUPPORTED,
                           "'%s': model_type '%s' is not supported (gla, delta_net, gated_deltanet, retnet, hgrn2, "
                           "linear_attn, mamba2, qwen3_next)",
                           path, type);
    }
    if (!st) snprintf(m->model_type, sizeof m->model_type, "%s", type);
    if (!st) st = hf_cfg_int(cfg, path, "vocab_size", 1, 0, &m->vocab);
    if (!st) st = positive(path, "vocab_size", m->vocab);
    if (!st) st = hf_cfg_int(cfg, path, "hidden_size", 1, 0, &m->D);
    if (!st) st = positive(path, "hidden_size", m->D);
    if (!st) st = hf_cfg_int(cfg, path, "num_hidden_layers", 1, 0, &m->L);
    if (!st) st = positive(path, "num_hidden_layers", m->L);
    if (!st) st = hf_cfg_bool(cfg, path, "tie_word_embeddings", 0, &tie);
    if (!st) st = m->arch == HF_GLA              ? parse_gla(m, cfg, path)
                  : m->arch == HF_DELTA_NET       ? parse_delta_net(m, cfg, path)
                  : m->arch == HF_GATED_DELTANET ? parse_gated_deltanet(m, cfg, path)
                  : m->arch == HF_RETNET          ? parse_retnet(m, cfg, path)
                  : m->arch == HF_RWKV7           ? hf_rwkv7_parse(m, cfg, path)
                  : m->arch == HF_HGRN2           ? parse_hgrn2(m, cfg, path)
                  : m->arch == HF_LINEAR_ATTN     ? parse_linear_attn(m, cfg, path)
                  : m->arch == HF_QWEN3_NEXT      ? hf_q3n_parse(m, cfg, path)
                                                  : parse_mamba2(m, cfg, path);
    cJSON_Delete(cfg);
    TRY(st);

    if (!m->layers) m->layers = calloc((size_t)m->L, sizeof *m->layers); /* qwen3_next's parse made them */
    if (!m->layers) return lina_fail(LINA_ERR_OOM, "out of memory for %d layers", m->L);
    hf_weights *w = NULL;
    TRY(hf_weights_open(dir, &w));
    int mamba = m->arch == HF_MAMBA2;
    const char *prefix = mamba ? "backbone" : "model";
    char name[256];
    int64_t emb[2] = {m->vocab, m->D}, d1[1] = {m->D};
    snprintf(name, sizeof name, m->arch == HF_QWEN3_NEXT ? "%s.embed_tokens.weight" : "%s.embeddings.weight", prefix);
    st = hf_weights_get(w, m, name, 2, emb, 1, &m->embed);
    snprintf(name, sizeof name, mamba ? "%s.norm_f.weight" : "%s.norm.weight", prefix);
    if (!st) st = hf_weights_get(w, m, name, 1, d1, 1, &m->norm_f);
    if (!st) {
        if (tie) m->lm_head = m->embed;
        else st = hf_weights_get(w, m, "lm_head.weight", 2, emb, 1, &m->lm_head);
    }
    for (int l = 0; l < m->L && !st; l++)
        st = mamba                           ? hf_mamba2_load_layer(m, w, l)
             : m->arch == HF_GATED_DELTANET ? hf_gdn_load_layer(m, w, l)
             : m->arch == HF_RETNET          ? hf_retnet_load_layer(m, w, l)
             : m->arch == HF_RWKV7           ? hf_rwkv7_load_layer(m, w, l)
             : m->arch == HF_HGRN2           ? hf_hgrn2_load_layer(m, w, l)
             : m->arch == HF_LINEAR_ATTN     ? hf_la_load_layer(m, w, l)
             : m->arch == HF_QWEN3_NEXT      ? hf_q3n_load_layer(m, w, l)
                                             : hf_fla_load_layer(m, w, l);
    hf_weights_close(w);
    if (!st && m->arch == HF_QWEN3_NEXT) hf_q3n_fix_norms(m);
    return st;
}

lina_status lina_hf_load(const char *dir, lina_hf_model **out) {
    if (!dir || !out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_hf_load: NULL directory or output");
    *out = NULL;
    lina_hf_model *m = calloc(1, sizeof *m);
    if (!m || !(m->dir = strdup(dir))) {
        free(m);
        return lina_fail(LINA_ERR_OOM, "lina_hf_load: out of memory");
    }
    lina_status st = load(m, dir);
    if (st) {
        lina_hf_free(m);
        return st;
    }
    *out = m;
    return LINA_OK;
}

const char *lina_hf_model_type(const lina_hf_model *m) { return m ? m->model_type : ""; }
int lina_hf_vocab_size(const lina_hf_model *m) { return m ? m->vocab : 0; }
int lina_hf_hidden_size(const lina_hf_model *m) { return m ? m->D : 0; }
int lina_hf_num_layers(const lina_hf_model *m) { return m ? m->L : 0; }

/* ---- state ---- */

void lina_hf_state_free(lina_hf_state *s) {
    if (!s) return;
    for (int l = 0; s->layers && l < s->n_layers; l++) {
        hf_layer_state *ls = &s->layers[l];
        free(ls->conv_q);
        free(ls->conv_k);
        free(ls->conv_v);
        free(ls->conv);
        free(ls->S);
        free(ls->kc);
        free(ls->vc);
    }
    free(s->layers);
    lina_ctx_free(s->step_ctx);
    free(s);
}

lina_status lina_hf_state_create(const lina_hf_model *m, int B, lina_hf_state **out) {
    if (!m || !out || B < 1) return lina_fail(LINA_ERR_INVALID_ARG, "lina_hf_state_create: B = %d must be >= 1", B);
    *out = NULL;
    lina_hf_state *s = calloc(1, sizeof *s);
    if (!s || !(s->layers = calloc((size_t)m->L, sizeof *s->layers))) {
        free(s);
        return lina_fail(LINA_ERR_OOM, "lina_hf_state_create: out of memory");
    }
    s->B = B;
    s->n_layers = m->L;
    s->model = m;
    if (lina_ctx_create(&s->step_ctx) != LINA_OK || lina_ctx_set_threads(s->step_ctx, 1) != LINA_OK) {
        lina_hf_state_free(s);
        return lina_fail(LINA_ERR_OOM, "lina_hf_state_create: cannot create a context");
    }
    for (int l = 0; l < m->L; l++) {
        lina_status st = m->arch == HF_MAMBA2           ? hf_mamba2_state_alloc(m, B, &s->layers[l])
                         : m->arch == HF_GATED_DELTANET ? hf_gdn_state_alloc(m, B, &s->layers[l])
                         : m->arch == HF_RETNET          ? hf_retnet_state_alloc(m, B, &s->layers[l])
                         : m->arch == HF_RWKV7           ? hf_rwkv7_state_alloc(m, B, &s->layers[l])
                         : m->arch == HF_HGRN2           ? hf_hgrn2_state_alloc(m, B, &s->layers[l])
                         : m->arch == HF_LINEAR_ATTN     ? hf_la_state_alloc(m, B, &s->layers[l])
                         : m->arch == HF_QWEN3_NEXT      ? hf_q3n_state_alloc(m, l, B, &s->layers[l])
                                                         : hf_fla_state_alloc(m, B, &s->layers[l]);
        if (st) {
            lina_hf_state_free(s);
            return st;
        }
    }
    *out = s;
    return LINA_OK;
}

void lina_hf_state_reset(lina_hf_state *s) {
    if (!s) return;
    const lina_hf_model *m = s->model;
    size_t B = (size_t)s->B, Wm1 = (size_t)m->conv_size - 1;
    for (int l = 0; l < s->n_layers; l++) {
        hf_layer_state *ls = &s->layers[l];
        if (ls->kc) { /* key/value history: forgotten by its length */
            ls->pos = 0;
            continue;
        }
        if (ls->n_S) { /* allocators that record their sizes */
            if (ls->conv_q) memset(ls->conv_q, 0, ls->n_conv_q * sizeof(float));
            if (ls->conv_k) memset(ls->conv_k, 0, ls->n_conv_k * sizeof(float));
            if (ls->conv_v) memset(ls->conv_v, 0, ls->n_conv_v * sizeof(float));
            memset(ls->S, 0, ls->n_S * sizeof(float));
            ls->pos = 0;
        } else if (m->arch == HF_MAMBA2) {
            memset(ls->conv, 0, B * Wm1 * m->m_conv_dim * sizeof(float));
            memset(ls->S, 0, B * m->m_heads * m->m_N * m->m_head_dim * sizeof(float));
        } else {
            if (ls->conv_q) {
                memset(ls->conv_q, 0, B * Wm1 * m->H * m->Kh * sizeof(float));
                memset(ls->conv_k, 0, B * Wm1 * m->Hkv * m->Kh * sizeof(float));
                memset(ls->conv_v, 0, B * Wm1 * m->Hkv * m->Vh * sizeof(float));
            }
            memset(ls->S, 0, B * m->H * m->Kh * m->Vh * sizeof(float));
        }
    }
}

/* ---- forward ---- */

/* logits for every position (last_only == 0) or for the last position of each row (B, vocab). */
static lina_status forward(lina_ctx *ctx, const lina_hf_model *m, lina_hf_state *s, int B, int T, const int64_t *ids,
                           float *logits, int last_only) {
    if (m->arch == HF_RWKV7) return hf_rwkv7_forward(ctx, m, s, B, T, ids, logits, last_only);
    size_t N = (size_t)B * T, D = (size_t)m->D;
    int mlp = m->arch != HF_MAMBA2;
    size_t mlp_tmp = mlp ? 2 * N * m->I_mlp : 0;
    float *x = malloc((2 * N * D + mlp_tmp + N * D) * sizeof *x);
    if (!x) return lina_fail(LINA_ERR_OOM, "lina_hf_forward: out of memory for B*T = %zu tokens", N);
    float *xn = x + N * D, *tmp = xn + N * D, *out = tmp + mlp_tmp; /* (N, D), (N, D), (2 N I), (N, D) */
    for (size_t r = 0; r < N; r++) memcpy(x + r * D, m->embed + (size_t)ids[r] * D, D * sizeof *x);
    lina_status st = LINA_OK;
    if (T == 1 && B <= 4 && s->step_ctx) ctx = s->step_ctx;
    for (int l = 0; l < m->L && !st; l++) {
        const hf_layer *L = &m->layers[l];
        hf_rmsnorm((int)N, (int)D, x, L->attn_norm, m->norm_eps, xn);
        st = !mlp                           ? hf_mamba2_mixer(ctx, m, l, &s->layers[l], B, T, xn, x)
             : m->arch == HF_GATED_DELTANET ? hf_gdn_mixer(ctx, m, l, &s->layers[l], B, T, xn, x)
             : m->arch == HF_RETNET          ? hf_retnet_mixer(ctx, m, l, &s->layers[l], B, T, xn, x)
             : m->arch == HF_HGRN2           ? hf_hgrn2_mixer(ctx, m, l, &s->layers[l], B, T, xn, x)
             : m->arch == HF_LINEAR_ATTN     ? hf_la_mixer(ctx, m, l, &s->layers[l], B, T, xn, x)
             : m->arch == HF_QWEN3_NEXT      ? hf_q3n_mixer(ctx, m, l, &s->layers[l], B, T, xn, x)
                                             : hf_fla_mixer(ctx, m, l, &s->layers[l], B, T, xn, x);
        if (!st && m->arch == HF_QWEN3_NEXT) {
            hf_rmsnorm((int)N, (int)D, x, L->mlp_norm, m->norm_eps, xn);
            st = hf_q3n_mlp(m, l, (int)N, xn, x);
        } else if (!st && mlp) {
            hf_rmsnorm((int)N, (int)D, x, L->mlp_norm, m->norm_eps, xn);
            hf_swiglu((int)N, (int)D, m->I_mlp, xn, L->mlp_gate, L->mlp_up, L->mlp_down, tmp, out);
            for (size_t i = 0; i < N * D; i++) x[i] += out[i];
        }
    }
    if (!st && logits) {
        if (last_only) {
            for (int b = 0; b < B; b++)
                memcpy(xn + b * D, x + ((size_t)b * T + T - 1) * D, D * sizeof *x);
            hf_rmsnorm(B, (int)D, xn, m->norm_f, m->norm_eps, xn);
            hf_linear(B, (int)D, m->vocab, xn, m->lm_head, NULL, logits);
        } else {
            hf_rmsnorm((int)N, (int)D, x, m->norm_f, m->norm_eps, xn);
            hf_linear((int)N, (int)D, m->vocab, xn, m->lm_head, NULL, logits);
        }
    }
    free(x);
    return st;
}

static lina_status check_ids(const lina_hf_model *m, int B, int T, const int64_t *ids) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int64_t v = ids[(size_t)b * T + t];
            if (v < 0 || v >= m->vocab)
                return lina_fail(LINA_ERR_INVALID_ARG, "token id %lld at [%d, %d] is outside [0, %d) (vocab_size)",
                                 (long long)v, b, t, m->vocab);
        }
    return LINA_OK;
}

static lina_status run(lina_ctx *ctx, const lina_hf_model *m, lina_hf_state *state, int B, int T, const int64_t *ids,
                       float *logits, int last_only) {
    if (!m || !ids || B < 1 || T < 1)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_hf_forward: B = %d and T = %d must be >= 1 (and ids non-NULL)", B,
                         T);
    if ((double)B * T * (m->D > m->vocab ? m->D : m->vocab) > 4e9)
        return lina_fail(LINA_ERR_OOM, "lina_hf_forward: B*T = %lld tokens is too many at once", (long long)B * T);
    if (state && (state->B != B || state->model != m))
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_hf_forward: state made for B = %d (or another model), called with B = %d",
                         state->B, B);
    TRY(check_ids(m, B, T, ids));
    lina_hf_state *own = NULL;
    if (!state) {
        TRY(lina_hf_state_create(m, B, &own));
        state = own;
    }
    lina_status st = forward(ctx, m, state, B, T, ids, logits, last_only);
    lina_hf_state_free(own);
    return st;
}

lina_status lina_hf_forward(lina_ctx *ctx, const lina_hf_model *m, lina_hf_state *state, int B, int T,
                            const int64_t *ids, float *logits) {
    return run(ctx, m, state, B, T, ids, logits, 0);
}

static int64_t argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

lina_status lina_hf_generate_greedy(lina_ctx *ctx, const lina_hf_model *m, const int64_t *prompt, int n_prompt,
                                    int max_new, int64_t *out) {
    if (!m || !prompt || n_prompt < 1 || max_new < 0 || (max_new > 0 && !out))
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_hf_generate_greedy: n_prompt = %d must be >= 1, max_new = %d >= 0",
                         n_prompt, max_new);
    if (max_new == 0) return LINA_OK;
    lina_hf_state *s = NULL;
    TRY(lina_hf_state_create(m, 1, &s));
    float *logits = malloc((size_t)m->vocab * sizeof *logits);
    lina_status st = logits ? run(ctx, m, s, 1, n_prompt, prompt, logits, 1)
                            : lina_fail(LINA_ERR_OOM, "lina_hf_generate_greedy: out of memory");
    for (int i = 0; i < max_new && !st; i++) {
        out[i] = argmax(logits, m->vocab);
        if (i + 1 < max_new) st = run(ctx, m, s, 1, 1, &out[i], logits, 1);
    }
    free(logits);
    lina_hf_state_free(s);
    return st;
}
