/* Hugging Face transformers Qwen3NextForCausalLM (model_type "qwen3_next",
 * models/qwen3_next/modeling_qwen3_next.py), written from its math.
 *
 * Block l:  x += mixer_l(RMSNorm'(x));  x += mlp_l(RMSNorm'(x))
 * RMSNorm' scales by (1 + w) (weights are converted to 1 + w once at load).
 * mixer, by layer_types[l] (or every full_attention_interval-th layer full):
 *   "linear_attention": Gated DeltaNet, Hk key heads of dk, HV value heads of dv, r = HV / Hk:
 *       x W_qkvz = per key head g: [q_g (dk), k_g (dk), v (r dv), z (r dv)];  x W_ba = per g: [b (r), a (r)]
 *       [q, k, v] = silu(causal depthwise conv([q, k, v]))    (no bias)
 *       q, k L2-normalized (eps 1e-6), beta = sigmoid(b), g = -exp(A_log) softplus(a + dt_bias)
 *       S_t = e^{g_t} S_{t-1} + beta_t k_t (v_t - e^{g_t} S_{t-1}^T k_t)^T,  o_t = dk^-1/2 S_t^T q_t
 *       out = (RMSNorm_dv(o) * w * silu(z)) W_out
 *   "full_attention": gated softmax attention, H heads of hd, Hkv key/value heads:
 *       x Wq = per head [q (hd), gate (hd)];  q, k = RMSNorm'_hd(q), RMSNorm'_hd(k)
 *       rotary on the first rot = hd * partial_rotary_factor dims (halves), positions 0, 1, ...
 *       o = softmax(q k^T hd^-1/2, causal) v;  out = (o * sigmoid(gate)) Wo
 * mlp: sparse MoE where (l + 1) % decoder_sparse_step == 0 and l not in mlp_only_layers:
 *       p = softmax(x Wr^T) over E experts, top-k (renormalized with norm_topk_prob),
 *       out = sum_k p_k SwiGLU_k(x) + sigmoid(x w_sg) SwiGLU_shared(x);   else a dense SwiGLU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../layers/layers.h"
#include "hf_internal.h"
#include "lina/softmax.h"


/* an int array field (mlp_only_layers): is v in it? */
static lina_status int_in_list(const cJSON *cfg, const char *path, const char *key, int v, int *found) {
    *found = 0;
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!j || cJSON_IsNull(j)) return LINA_OK;
    if (!cJSON_IsArray(j)) return lina_fail(LINA_ERR_FORMAT, "'%s': field '%s' is not a list", path, key);
    for (const cJSON *e = j->child; e; e = e->next) {
        if (!cJSON_IsNumber(e)) return lina_fail(LINA_ERR_FORMAT, "'%s': field '%s' holds a non-number", path, key);
        if ((int)e->valuedouble == v) *found = 1;
    }
    return LINA_OK;
}

lina_status hf_q3n_parse(lina_hf_model *m, const cJSON *cfg, const char *path) {
    double eps, theta, partial;
    TRY(hf_cfg_float(cfg, path, "rms_norm_eps", 0, 1e-6, &eps));
    m->norm_eps = (float)eps;
    const char *act;
    TRY(hf_cfg_str(cfg, path, "hidden_act", "silu", &act));
    if (strcmp(act, "silu") && strcmp(act, "swish"))
        return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': hidden_act '%s' is not supported (silu only)", path, act);
    int bias;
    TRY(hf_cfg_bool(cfg, path, "attention_bias", 0, &bias));
    if (bias) return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': attention_bias = true is not supported", path);
    /* softmax attention */
    TRY(hf_cfg_int(cfg, path, "num_attention_heads", 1, 0, &m->qa_H));
    TRY(hf_cfg_int(cfg, path, "num_key_value_heads", 0, m->qa_H, &m->qa_Hkv));
    if (m->qa_H < 1 || m->qa_Hkv < 1 || m->qa_H % m->qa_Hkv)
        return lina_fail(LINA_ERR_FORMAT, "'%s': num_key_value_heads = %d must divide num_attention_heads = %d", path,
                         m->qa_Hkv, m->qa_H);
    TRY(hf_cfg_int(cfg, path, "head_dim", 0, m->D / m->qa_H, &m->qa_hd));
    if (m->qa_hd < 2) return lina_fail(LINA_ERR_FORMAT, "'%s': head_dim = %d must be >= 2", path, m->qa_hd);
    /* rotary: rope_parameters {rope_type, rope_theta, partial_rotary_factor} or the older top-level fields */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(cfg, "rope_parameters");
    const cJSON *rsrc = cJSON_IsObject(rp) ? rp : cfg;
    const char *rtype;
    TRY(hf_cfg_str(rsrc, path, "rope_type", "default", &rtype));
    if (strcmp(rtype, "default"))
        return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': rope_type '%s' is not supported (default only)", path, rtype);
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': rope_scaling is not supported", path);
    TRY(hf_cfg_float(rsrc, path, "rope_theta", 0, 10000.0, &theta));
    TRY(hf_cfg_float(rsrc, path, "partial_rotary_factor", 0, 0.25, &partial));
    m->qa_theta = (float)theta;
    m->qa_rot = (int)(m->qa_hd * partial);
    if (m->qa_rot % 2 || m->qa_rot < 0 || m->qa_rot > m->qa_hd)
        return lina_fail(LINA_ERR_FORMAT, "'%s': head_dim %d * partial_rotary_factor %g = %d rotary dims is not even",
                         path, m->qa_hd, partial, m->qa_rot);
    /* Gated DeltaNet */
    TRY(hf_cfg_int(cfg, path, "linear_num_key_heads", 0, 16, &m->ql_Hk));
    TRY(hf_cfg_int(cfg, path, "linear_num_value_heads", 0, 32, &m->ql_HV));
    TRY(hf_cfg_int(cfg, path, "linear_key_head_dim", 0, 128, &m->ql_dk));
    TRY(hf_cfg_int(cfg, path, "linear_value_head_dim", 0, 128, &m->ql_dv));
    TRY(hf_cfg_int(cfg, path, "linear_conv_kernel_dim", 0, 4, &m->conv_size));
    if (m->ql_Hk < 1 || m->ql_HV < 1 || m->ql_HV % m->ql_Hk || m->ql_dk < 1 || m->ql_dv < 1 || m->conv_size < 1)
        return lina_fail(LINA_ERR_FORMAT,
                         "'%s': linear_num_value_heads = %d must be a multiple of linear_num_key_heads = %d (head dims "
                         "%d, %d, conv %d must be >= 1)",
                         path, m->ql_HV, m->ql_Hk, m->ql_dk, m->ql_dv, m->conv_size);
    /* MLPs */
    int sparse_step;
    TRY(hf_cfg_int(cfg, path, "intermediate_size", 1, 0, &m->I_mlp));
    TRY(hf_cfg_int(cfg, path, "num_experts", 0, 0, &m->moe_E));
    TRY(hf_cfg_int(cfg, path, "num_experts_per_tok", 0, 1, &m->moe_topk));
    TRY(hf_cfg_int(cfg, path, "moe_intermediate_size", 0, 0, &m->moe_I));
    TRY(hf_cfg_int(cfg, path, "decoder_sparse_step", 0, 1, &sparse_step));
    TRY(hf_cfg_bool(cfg, path, "norm_topk_prob", 1, &m->moe_norm_topk));
    int shared;
    TRY(hf_cfg_int(cfg, path, "shared_expert_intermediate_size", 0, 0, &shared));
    if (m->moe_E > 0 && (m->moe_topk < 1 || m->moe_topk > m->moe_E || m->moe_I < 1 || shared < 1 || sparse_step < 1))
        return lina_fail(LINA_ERR_FORMAT,
                         "'%s': num_experts_per_tok = %d must be in [1, num_experts = %d]; moe_intermediate_size %d, "
                         "shared_expert_intermediate_size %d, decoder_sparse_step %d must be >= 1",
                         path, m->moe_topk, m->moe_E, m->moe_I, shared, sparse_step);
    /* per layer: mixer type and MLP kind */
    m->layers = calloc((size_t)m->L, sizeof *m->layers);
    if (!m->layers) return lina_fail(LINA_ERR_OOM, "out of memory for %d layers", m->L);
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(cfg, "layer_types");
    int interval;
    TRY(hf_cfg_int(cfg, path, "full_attention_interval", 0, 4, &interval));
    if (types && !cJSON_IsNull(types) && (!cJSON_IsArray(types) || cJSON_GetArraySize(types) != m->L))
        return lina_fail(LINA_ERR_FORMAT, "'%s': layer_types is not a list of num_hidden_layers = %d entries", path,
                         m->L);
    if ((!types || cJSON_IsNull(types)) && interval < 1)
        return lina_fail(LINA_ERR_FORMAT, "'%s': full_attention_interval = %d must be >= 1", path, interval);
    for (int l = 0; l < m->L; l++) {
        hf_layer *L = &m->layers[l];
        if (types && !cJSON_IsNull(types)) {
            const cJSON *t = cJSON_GetArrayItem(types, l);
            const char *s = cJSON_IsString(t) ? t->valuestring : "(not a string)";
            if (!strcmp(s, "full_attention")) L->q3n_full_attn = 1;
            else if (!strcmp(s, "linear_attention")) L->q3n_full_attn = 0;
            else
                return lina_fail(LINA_ERR_UNSUPPORTED,
                                 "'%s': layer_types[%d] = '%s' is not full_attention or linear_attention", path, l, s);
        } else {
            L->q3n_full_attn = (l + 1) % interval == 0;
        }
        int dense_only;
        TRY(int_in_list(cfg, path, "mlp_only_layers", l, &dense_only));
        L->n_experts = !dense_only && m->moe_E > 0 && (l + 1) % sparse_step == 0 ? m->moe_E : 0;
        L->mlp_width = L->n_experts ? shared : m->I_mlp;
    }
    return LINA_OK;
}

/* the experts: per-expert tensors (mlp.experts.E.{gate,up,down}_proj.weight, as save_pretrained writes
 * them) or fused (mlp.experts.gate_up_proj (E, 2I, D), mlp.experts.down_proj (E, D, I)) */
static lina_status load_experts(lina_hf_model *m, hf_weights *w, int l) {
    hf_layer *L = &m->layers[l];
    int E = L->n_experts, I = m->moe_I, D = m->D;
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.mlp.gate.weight", l);
    int64_t rshape[2] = {E, D};
    TRY(hf_weights_get(w, m, name, 2, rshape, 1, &L->router));
    /* the 3 E expert pointers live in a buffer registered with the model's owned buffers (m->bufs) */
    if (m->n_bufs == m->cap_bufs) {
        int cap = m->cap_bufs ? 2 * m->cap_bufs : 64;
        float **b = realloc(m->bufs, (size_t)cap * sizeof *b);
        if (!b) return lina_fail(LINA_ERR_OOM, "out of memory");
        m->bufs = b;
        m->cap_bufs = cap;
    }
    const float **ptrs = calloc(3 * (size_t)E, sizeof *ptrs);
    if (!ptrs) return lina_fail(LINA_ERR_OOM, "layer %d: out of memory for %d experts", l, E);
    m->bufs[m->n_bufs++] = (float *)(void *)ptrs;
    L->ex_gate = ptrs;
    L->ex_up = ptrs + E;
    L->ex_down = ptrs + 2 * E;
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.gate_up_proj", l);
    if (hf_weights_has(w, name)) {
        const float *gu, *dn;
        int64_t s1[3] = {E, 2 * I, D}, s2[3] = {E, D, I};
        TRY(hf_weights_get(w, m, name, 3, s1, 1, &gu));
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.down_proj", l);
        TRY(hf_weights_get(w, m, name, 3, s2, 1, &dn));
        for (int e = 0; e < E; e++) {
            L->ex_gate[e] = gu + (size_t)e * 2 * I * D;
            L->ex_up[e] = gu + ((size_t)e * 2 + 1) * I * D;
            L->ex_down[e] = dn + (size_t)e * D * I;
        }
        return LINA_OK;
    }
    for (int e = 0; e < E; e++) {
        char suffix[128];
        snprintf(suffix, sizeof suffix, "mlp.experts.%d.gate_proj.weight", e);
        TRY(hf_layer_get(w, m, l, suffix, 2, I, D, 0, 1, &L->ex_gate[e]));
        snprintf(suffix, sizeof suffix, "mlp.experts.%d.up_proj.weight", e);
        TRY(hf_layer_get(w, m, l, suffix, 2, I, D, 0, 1, &L->ex_up[e]));
        snprintf(suffix, sizeof suffix, "mlp.experts.%d.down_proj.weight", e);
        TRY(hf_layer_get(w, m, l, suffix, 2, D, I, 0, 1, &L->ex_down[e]));
    }
    return LINA_OK;
}

lina_status hf_q3n_load_layer(lina_hf_model *m, hf_weights *w, int l) {
    hf_layer *L = &m->layers[l];
    int D = m->D;
    TRY(hf_layer_get(w, m, l, "input_layernorm.weight", 1, D, 0, 0, 1, &L->attn_norm));
    TRY(hf_layer_get(w, m, l, "post_attention_layernorm.weight", 1, D, 0, 0, 1, &L->mlp_norm));
    if (L->q3n_full_attn) {
        int H = m->qa_H, Hkv = m->qa_Hkv, hd = m->qa_hd;
        TRY(hf_layer_get(w, m, l, "self_attn.q_proj.weight", 2, (int64_t)H * hd * 2, D, 0, 1, &L->q_proj));
        TRY(hf_layer_get(w, m, l, "self_attn.k_proj.weight", 2, (int64_t)Hkv * hd, D, 0, 1, &L->k_proj));
        TRY(hf_layer_get(w, m, l, "self_attn.v_proj.weight", 2, (int64_t)Hkv * hd, D, 0, 1, &L->v_proj));
        TRY(hf_layer_get(w, m, l, "self_attn.o_proj.weight", 2, D, (int64_t)H * hd, 0, 1, &L->o_proj));
        TRY(hf_layer_get(w, m, l, "self_attn.q_norm.weight", 1, hd, 0, 0, 1, &L->q_norm));
        TRY(hf_layer_get(w, m, l, "self_attn.k_norm.weight", 1, hd, 0, 0, 1, &L->k_norm));
    } else {
        int Kd = m->ql_Hk * m->ql_dk, Vd = m->ql_HV * m->ql_dv, CD = 2 * Kd + Vd;
        TRY(hf_layer_get(w, m, l, "linear_attn.in_proj_qkvz.weight", 2, 2 * (int64_t)Kd + 2 * (int64_t)Vd, D, 0, 1,
                &L->in_qkvz));
        TRY(hf_layer_get(w, m, l, "linear_attn.in_proj_ba.weight", 2, 2 * (int64_t)m->ql_HV, D, 0, 1, &L->in_ba));
        L->conv.C = CD;
        TRY(hf_layer_get(w, m, l, "linear_attn.conv1d.weight", 3, CD, 1, m->conv_size, 1, &L->conv.w));
        TRY(hf_layer_get(w, m, l, "linear_attn.conv1d.bias", 1, CD, 0, 0, 0, &L->conv.b));
        TRY(hf_layer_get(w, m, l, "linear_attn.dt_bias", 1, m->ql_HV, 0, 0, 1, &L->dt_bias));
        TRY(hf_layer_get(w, m, l, "linear_attn.A_log", 1, m->ql_HV, 0, 0, 1, &L->A_log));
        TRY(hf_layer_get(w, m, l, "linear_attn.norm.weight", 1, m->ql_dv, 0, 0, 1, &L->o_norm));
        TRY(hf_layer_get(w, m, l, "linear_attn.out_proj.weight", 2, D, Vd, 0, 1, &L->out_proj));
    }
    if (L->n_experts) {
        TRY(load_experts(m, w, l));
        TRY(hf_layer_get(w, m, l, "mlp.shared_expert.gate_proj.weight", 2, L->mlp_width, D, 0, 1, &L->mlp_gate));
        TRY(hf_layer_get(w, m, l, "mlp.shared_expert.up_proj.weight", 2, L->mlp_width, D, 0, 1, &L->mlp_up));
        TRY(hf_layer_get(w, m, l, "mlp.shared_expert.down_proj.weight", 2, D, L->mlp_width, 0, 1, &L->mlp_down));
        TRY(hf_layer_get(w, m, l, "mlp.shared_expert_gate.weight", 2, 1, D, 0, 1, &L->shared_gate));
    } else {
        TRY(hf_layer_get(w, m, l, "mlp.gate_proj.weight", 2, L->mlp_width, D, 0, 1, &L->mlp_gate));
        TRY(hf_layer_get(w, m, l, "mlp.up_proj.weight", 2, L->mlp_width, D, 0, 1, &L->mlp_up));
        TRY(hf_layer_get(w, m, l, "mlp.down_proj.weight", 2, D, L->mlp_width, 0, 1, &L->mlp_down));
    }
    return LINA_OK;
}

static void one_plus(float *w, int n) {
    for (int i = 0; i < n; i++) w[i] += 1.0f;
}

void hf_q3n_fix_norms(lina_hf_model *m) {
    /* the model owns these f32 copies (hf_weights_get), so they may be rewritten */
    one_plus((float *)m->norm_f, m->D);
    for (int l = 0; l < m->L; l++) {
        hf_layer *L = &m->layers[l];
        one_plus((float *)L->attn_norm, m->D);
        one_plus((float *)L->mlp_norm, m->D);
        if (L->q3n_full_attn) {
            one_plus((float *)L->q_norm, m->qa_hd);
            one_plus((float *)L->k_norm, m->qa_hd);
        }
    }
}

lina_status hf_q3n_state_alloc(const lina_hf_model *m, int l, int B, hf_layer_state *st) {
    const hf_layer *L = &m->layers[l];
    st->pos = 0;
    if (L->q3n_full_attn) { /* key/value history, grown on demand (kv_reserve) */
        st->kv_cap = 64;
        size_t row = (size_t)m->qa_Hkv * m->qa_hd;
        st->kc = malloc((size_t)B * st->kv_cap * row * sizeof(float));
        st->vc = malloc((size_t)B * st->kv_cap * row * sizeof(float));
        if (!st->kc || !st->vc) return lina_fail(LINA_ERR_OOM, "hf state: out of memory");
        return LINA_OK;
    }
    size_t CD = 2 * (size_t)m->ql_Hk * m->ql_dk + (size_t)m->ql_HV * m->ql_dv;
    st->n_conv_q = (size_t)B * (m->conv_size - 1) * CD;
    st->conv_q = calloc(st->n_conv_q + 1, sizeof(float));
    st->n_S = (size_t)B * m->ql_HV * m->ql_dk * m->ql_dv;
    st->S = calloc(st->n_S, sizeof(float));
    if (!st->conv_q || !st->S) return lina_fail(LINA_ERR_OOM, "hf state: out of memory");
    return LINA_OK;
}

/* ---- Gated DeltaNet layer ---- */

static void l2_rows(size_t rows, int n, float *x) {
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * n;
        double s = 0;
        for (int i = 0; i < n; i++) s += (double)xr[i] * xr[i];
        float f = (float)(1.0 / sqrt(s + 1e-6));
        for (int i = 0; i < n; i++) xr[i] *= f;
    }
}

static lina_status gdn_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                             const float *xn, float *x) {
    const hf_layer *L = &m->layers[l];
    int D = m->D, Hk = m->ql_Hk, HV = m->ql_HV, dk = m->ql_dk, dv = m->ql_dv, r = HV / Hk;
    size_t N = (size_t)B * T, Kd = (size_t)Hk * dk, Vd = (size_t)HV * dv, CD = 2 * Kd + Vd, P = 2 * Kd + 2 * Vd;
    size_t out_w = Vd > (size_t)D ? Vd : (size_t)D;
    /* scratch: qkvz (N, P), ba (N, 2 HV), pre-conv and post-conv [q k v] (N, CD) x2, z, o (N, Vd),
     * beta, g (N, HV), output rows (N, out_w) */
    size_t total = N * (P + 2 * (size_t)HV + 2 * CD + 2 * Vd + 2 * (size_t)HV + out_w);
    float *buf = malloc(total * sizeof *buf);
    if (!buf) return lina_fail(LINA_ERR_OOM, "layer %d: out of memory for %zu floats of scratch", l, total);
    float *qkvz = buf, *ba = qkvz + N * P, *pre = ba + N * 2 * HV, *mix = pre + N * CD, *z = mix + N * CD,
          *o = z + N * Vd, *beta = o + N * Vd, *g = beta + N * HV, *out = g + N * HV;

    hf_linear((int)N, D, (int)P, xn, L->in_qkvz, NULL, qkvz);
    hf_linear((int)N, D, 2 * HV, xn, L->in_ba, NULL, ba);
    size_t grp = 2 * (size_t)dk + 2 * (size_t)r * dv; /* one key head's slice of qkvz */
    for (size_t row = 0; row < N; row++) {
        const float *src = qkvz + row * P, *bas = ba + row * 2 * HV;
        float *dst = pre + row * CD, *zr = z + row * Vd;
        for (int h = 0; h < Hk; h++) {
            const float *s = src + h * grp;
            memcpy(dst + (size_t)h * dk, s, (size_t)dk * sizeof *dst);                          /* q */
            memcpy(dst + Kd + (size_t)h * dk, s + dk, (size_t)dk * sizeof *dst);                 /* k */
            memcpy(dst + 2 * Kd + (size_t)h * r * dv, s + 2 * dk, (size_t)r * dv * sizeof *dst); /* v */
            memcpy(zr + (size_t)h * r * dv, s + 2 * dk + (size_t)r * dv, (size_t)r * dv * sizeof *zr);
            for (int j = 0; j < r; j++) {
                int vh = h * r + j;
                float b = bas[(size_t)h * 2 * r + j], a = bas[(size_t)h * 2 * r + r + j];
                beta[row * HV + vh] = hf_sigmoid(b);
                g[row * HV + vh] = -expf(L->A_log[vh]) * hf_softplus(a + L->dt_bias[vh]);
            }
        }
    }
    hf_conv_forward(B, T, &L->conv, m->conv_size, pre, st->conv_q, 1, mix);
    /* split [q k v] rows into contiguous q (N, Kd), k (N, Kd), v (N, Vd): reuse pre */
    float *q = pre, *k = pre + N * Kd, *v = pre + 2 * N * Kd;
    for (size_t row = 0; row < N; row++) {
        memcpy(q + row * Kd, mix + row * CD, Kd * sizeof *q);
        memcpy(k + row * Kd, mix + row * CD + Kd, Kd * sizeof *k);
        memcpy(v + row * Vd, mix + row * CD + 2 * Kd, Vd * sizeof *v);
    }
    l2_rows(N * Hk, dk, q);
    l2_rows(N * Hk, dk, k);

    lina_attn_desc d = hf_attn_desc(B, T, Hk, HV, dk, dv, LINA_GATE_SCALAR, LINA_UPDATE_DELTA);
    lina_status st_attn = hf_attn_run(ctx, &d, l, q, k, v, g, beta, st->S, o);
    if (st_attn) {
        free(buf);
        return st_attn;
    }
    hf_rmsnorm((int)(N * HV), dv, o, L->o_norm, m->norm_eps, o);
    for (size_t i = 0; i < N * Vd; i++) o[i] *= hf_silu(z[i]);
    hf_linear((int)N, (int)Vd, D, o, L->out_proj, NULL, out);
    for (size_t i = 0; i < N * (size_t)D; i++) x[i] += out[i];
    free(buf);
    return LINA_OK;
}

/* ---- gated softmax attention layer ---- */

/* rotate the first rot dims of rows (B, T, heads, hd) at positions pos0 + t (halves of rot) */
static void rotary(int B, int T, int heads, int hd, int rot, float theta, int64_t pos0, float *x) {
    int half = rot / 2;
    for (int i = 0; i < half; i++) {
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)rot);
        for (int t = 0; t < T; t++) {
            float ang = (float)(pos0 + t) * inv_freq, c = cosf(ang), s = sinf(ang);
            lina_rotate_pairs(B, T, heads, hd, t, i, half, c, s, x);
        }
    }
}

/* grow the key/value history to hold n tokens per sequence */
static lina_status kv_reserve(hf_layer_state *st, int B, size_t row, int64_t n) {
    if (n <= st->kv_cap) return LINA_OK;
    int64_t cap = st->kv_cap;
    while (cap < n) cap *= 2;
    float *kc = malloc((size_t)B * cap * row * sizeof *kc), *vc = malloc((size_t)B * cap * row * sizeof *vc);
    if (!kc || !vc) {
        free(kc);
        free(vc);
        return lina_fail(LINA_ERR_OOM, "hf state: out of memory for a key/value history of %lld tokens", (long long)n);
    }
    for (int b = 0; b < B; b++) {
        memcpy(kc + (size_t)b * cap * row, st->kc + (size_t)b * st->kv_cap * row, (size_t)st->pos * row * sizeof *kc);
        memcpy(vc + (size_t)b * cap * row, st->vc + (size_t)b * st->kv_cap * row, (size_t)st->pos * row * sizeof *vc);
    }
    free(st->kc);
    free(st->vc);
    st->kc = kc;
    st->vc = vc;
    st->kv_cap = cap;
    return LINA_OK;
}

/* queries (B, T, H, hd) at positions pos0..pos0+T-1 over the history (B, cap, Hkv, hd) up to their own position */
static lina_status attend_history(const hf_layer_state *st, int B, int T, int H, int Hkv, int hd, float scale,
                                  const float *q, float *o) {
    int G = H / Hkv;
    int64_t pos0 = st->pos - T;
    size_t row = (size_t)Hkv * hd;
    double *p = malloc((size_t)(st->pos) * sizeof *p); /* one query's scores, then weights */
    if (!p) return lina_fail(LINA_ERR_OOM, "softmax attention: out of memory for %lld scores", (long long)st->pos);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                const float *qv = q + (((size_t)b * T + t) * H + h) * hd;
                const float *kb = st->kc + (size_t)b * st->kv_cap * row + (size_t)(h / G) * hd;
                const float *vb = st->vc + (size_t)b * st->kv_cap * row + (size_t)(h / G) * hd;
                int64_t n = pos0 + t + 1;
                double mx = -INFINITY, sum = 0;
                for (int64_t s = 0; s < n; s++) {
                    double dot = 0;
                    for (int i = 0; i < hd; i++) dot += (double)qv[i] * kb[(size_t)s * row + i];
                    p[s] = dot * scale;
                    if (p[s] > mx) mx = p[s];
                }
                for (int64_t s = 0; s < n; s++) sum += (p[s] = exp(p[s] - mx));
                float *ov = o + (((size_t)b * T + t) * H + h) * hd;
                for (int i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int64_t s = 0; s < n; s++) acc += p[s] * vb[(size_t)s * row + i];
                    ov[i] = (float)(acc / sum);
                }
            }
    free(p);
    return LINA_OK;
}

static lina_status attn_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                              const float *xn, float *x) {
    const hf_layer *L = &m->layers[l];
    int D = m->D, H = m->qa_H, Hkv = m->qa_Hkv, hd = m->qa_hd;
    size_t N = (size_t)B * T, qw = (size_t)H * hd, kw = (size_t)Hkv * hd;
    size_t out_w = qw > (size_t)D ? qw : (size_t)D;
    /* scratch: q+gate (N, 2 qw), q, gate, o (N, qw), k, v (N, kw), output rows (N, out_w) */
    size_t total = N * (2 * qw + 3 * qw + 2 * kw + out_w);
    float *buf = malloc(total * sizeof *buf);
    if (!buf) return lina_fail(LINA_ERR_OOM, "layer %d: out of memory for %zu floats of scratch", l, total);
    float *qg = buf, *q = qg + N * 2 * qw, *gate = q + N * qw, *o = gate + N * qw, *k = o + N * qw, *v = k + N * kw,
          *out = v + N * kw;
    hf_linear((int)N, D, (int)(2 * qw), xn, L->q_proj, NULL, qg);
    for (size_t r = 0; r < N; r++)
        for (int h = 0; h < H; h++) {
            memcpy(q + (r * H + h) * hd, qg + r * 2 * qw + (size_t)h * 2 * hd, (size_t)hd * sizeof *q);
            memcpy(gate + (r * H + h) * hd, qg + r * 2 * qw + (size_t)h * 2 * hd + hd, (size_t)hd * sizeof *q);
        }
    hf_linear((int)N, D, (int)kw, xn, L->k_proj, NULL, k);
    hf_linear((int)N, D, (int)kw, xn, L->v_proj, NULL, v);
    hf_rmsnorm((int)(N * H), hd, q, L->q_norm, m->norm_eps, q);
    hf_rmsnorm((int)(N * Hkv), hd, k, L->k_norm, m->norm_eps, k);
    rotary(B, T, H, hd, m->qa_rot, m->qa_theta, st->pos, q);
    rotary(B, T, Hkv, hd, m->qa_rot, m->qa_theta, st->pos, k);

    lina_status s = kv_reserve(st, B, kw, st->pos + T);
    if (s) {
        free(buf);
        return s;
    }
    for (int b = 0; b < B; b++) {
        memcpy(st->kc + ((size_t)b * st->kv_cap + st->pos) * kw, k + (size_t)b * T * kw, (size_t)T * kw * sizeof *k);
        memcpy(st->vc + ((size_t)b * st->kv_cap + st->pos) * kw, v + (size_t)b * T * kw, (size_t)T * kw * sizeof *v);
    }
    float scale = 1.0f / sqrtf((float)hd);
    if (st->pos == 0) { /* a fresh prompt: the streaming causal kernel */
        lina_softmax_desc d = lina_softmax_desc_default();
        d.B = B;
        d.T = T;
        d.H = H;
        d.HKV = Hkv;
        d.K = hd;
        d.V = hd;
        d.scale = scale;
        d.causal = 1;
        s = lina_softmax_forward(ctx, &d, q, k, v, o, NULL);
        st->pos += T;
    } else { /* continuing: the new queries over the whole history */
        st->pos += T;
        s = attend_history(st, B, T, H, Hkv, hd, scale, q, o);
    }
    if (s) {
        char why[400];
        snprintf(why, sizeof why, "%s", lina_last_error());
        free(buf);
        return lina_fail(s, "layer %d softmax attention: %s", l, why);
    }
    for (size_t i = 0; i < N * qw; i++) o[i] *= hf_sigmoid(gate[i]);
    hf_linear((int)N, (int)qw, D, o, L->o_proj, NULL, out);
    for (size_t i = 0; i < N * (size_t)D; i++) x[i] += out[i];
    free(buf);
    return LINA_OK;
}

lina_status hf_q3n_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                         const float *xn, float *x) {
    const hf_layer *L = &m->layers[l];
    return L->q3n_full_attn ? attn_mixer(ctx, m, l, st, B, T, xn, x) : gdn_mixer(ctx, m, l, st, B, T, xn, x);
}

/* ---- MLPs ---- */

/* router: per row the top-k experts (largest probability first; the lower index on ties) and
 * their weights, renormalized to sum 1 with norm_topk_prob. prob (E) scratch. */
static void route(const lina_hf_model *m, const hf_layer *L, const float *xr, float *prob, int *chosen, float *wsel) {
    int D = m->D, E = L->n_experts, K = m->moe_topk;
    hf_linear(1, D, E, xr, L->router, NULL, prob);
    float mx = prob[0];
    for (int e = 1; e < E; e++) mx = fmaxf(mx, prob[e]);
    double sum = 0;
    for (int e = 0; e < E; e++) sum += (prob[e] = expf(prob[e] - mx));
    for (int e = 0; e < E; e++) prob[e] = (float)(prob[e] / sum);
    float wsum = 0;
    for (int kk = 0; kk < K; kk++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (prob[e] >= 0 && (best < 0 || prob[e] > prob[best])) best = e;
        chosen[kk] = best;
        wsel[kk] = prob[best];
        wsum += prob[best];
        prob[best] = -1.0f; /* taken */
    }
    if (m->moe_norm_topk)
        for (int kk = 0; kk < K; kk++) wsel[kk] /= wsum;
}

lina_status hf_q3n_mlp(const lina_hf_model *m, int l, int N, const float *xn, float *x) {
    const hf_layer *L = &m->layers[l];
    int D = m->D, E = L->n_experts, I = m->moe_I, W = L->mlp_width, K = E ? m->moe_topk : 0;
    int widest = W > I ? W : I;
    /* scratch: SwiGLU temp (2 N widest), out rows (N, D), gathered rows and their expert outputs (N, D) x2,
     * router probabilities (E), per row the chosen experts and weights (N, K), one expert's row list (N) */
    size_t nf = 2 * (size_t)N * widest + 3 * (size_t)N * D + (size_t)E + (size_t)N * K;
    float *buf = malloc(nf * sizeof *buf);
    int *ibuf = malloc(((size_t)N * K + (size_t)N + 1) * sizeof *ibuf);
    if (!buf || !ibuf) {
        free(buf);
        free(ibuf);
        return lina_fail(LINA_ERR_OOM, "layer %d MLP: out of memory for %zu floats", l, nf);
    }
    float *tmp = buf, *out = tmp + 2 * (size_t)N * widest, *xg = out + (size_t)N * D, *yg = xg + (size_t)N * D,
          *prob = yg + (size_t)N * D, *wsel = prob + E;
    int *chosen = ibuf, *rows = ibuf + (size_t)N * K;
    hf_swiglu(N, D, W, xn, L->mlp_gate, L->mlp_up, L->mlp_down, tmp, out); /* dense MLP or shared expert */
    if (E) {
        for (int r = 0; r < N; r++) {
            float zg;
            hf_linear(1, D, 1, xn + (size_t)r * D, L->shared_gate, NULL, &zg);
            float sg = hf_sigmoid(zg);
            for (int i = 0; i < D; i++) out[(size_t)r * D + i] *= sg;
            route(m, L, xn + (size_t)r * D, prob, chosen + (size_t)r * K, wsel + (size_t)r * K);
        }
        /* each expert once over the rows routed to it */
        for (int e = 0; e < E; e++) {
            int n = 0;
            for (int r = 0; r < N; r++)
                for (int kk = 0; kk < K; kk++)
                    if (chosen[(size_t)r * K + kk] == e) rows[n++] = r * K + kk;
            if (!n) continue;
            for (int j = 0; j < n; j++)
                memcpy(xg + (size_t)j * D, xn + (size_t)(rows[j] / K) * D, (size_t)D * sizeof *xg);
            hf_swiglu(n, D, I, xg, L->ex_gate[e], L->ex_up[e], L->ex_down[e], tmp, yg);
            for (int j = 0; j < n; j++) {
                float wk = wsel[rows[j]];
                float *o = out + (size_t)(rows[j] / K) * D;
                for (int i = 0; i < D; i++) o[i] += wk * yg[(size_t)j * D + i];
            }
        }
    }
    for (size_t i = 0; i < (size_t)N * D; i++) x[i] += out[i];
    free(buf);
    free(ibuf);
    return LINA_OK;
}
