/* flash-linear-attention token mixers: GatedLinearAttention (model_type "gla")
 * and DeltaNet ("delta_net"), written from their published math.
 *
 * GLA, per head (Kh = key dim, Vh = value dim):
 *   q, k, v = x Wq, x Wk, x Wv            (optional short conv + silu on each)
 *   gk      = logsigmoid((x W0) W1 + b1) / 16   (clamped below at clamp_min if set)
 *   S_t     = diag(exp(gk_t)) S_{t-1} + k_t v_t^T,  o_t = Kh^-1/2 S_t^T q_t
 *   o       = RMSNorm_Vh(o) * w * silu(x Wg)     (without output gate: RMSNorm only)
 * DeltaNet:
 *   q, k, v = conv+silu(x Wq), conv+silu(x Wk), conv+silu(x Wv)
 *   q, k    = L2-normalized per head (x / sqrt(|x|^2 + 1e-6)),  beta = sigmoid(x Wb)
 *   S_t     = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T,  o_t = Kh^-1/2 S_t^T q_t
 *   o       = RMSNorm_Vh(o) * w  [* silu(x Wg) with use_gate]
 * then out = o Wo. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "hf_internal.h"

#define GLA_GATE_RANK 16 /* fla's gate_low_rank_dim (GLABlock never overrides it) */


lina_status hf_fla_load_layer(lina_hf_model *m, hf_weights *w, int l) {
    hf_layer *L = &m->layers[l];
    int D = m->D, qk = m->H * m->Kh, kvk = m->Hkv * m->Kh, kvv = m->Hkv * m->Vh, vv = m->H * m->Vh;
    TRY(hf_layer_get(w, m, l, "attn_norm.weight", 1, D, 0, 0, 1, &L->attn_norm));
    TRY(hf_layer_get(w, m, l, "attn.q_proj.weight", 2, qk, D, 0, 1, &L->q_proj));
    TRY(hf_layer_get(w, m, l, "attn.k_proj.weight", 2, kvk, D, 0, 1, &L->k_proj));
    TRY(hf_layer_get(w, m, l, "attn.v_proj.weight", 2, kvv, D, 0, 1, &L->v_proj));
    if (m->use_short_conv) {
        TRY(hf_layer_conv(w, m, l, "q", qk, &L->q_conv));
        TRY(hf_layer_conv(w, m, l, "k", kvk, &L->k_conv));
        TRY(hf_layer_conv(w, m, l, "v", kvv, &L->v_conv));
    }
    if (m->arch == HF_GLA) {
        TRY(hf_layer_get(w, m, l, "attn.gk_proj.0.weight", 2, GLA_GATE_RANK, D, 0, 1, &L->gk0));
        TRY(hf_layer_get(w, m, l, "attn.gk_proj.1.weight", 2, kvk, GLA_GATE_RANK, 0, 1, &L->gk1));
        TRY(hf_layer_get(w, m, l, "attn.gk_proj.1.bias", 1, kvk, 0, 0, 1, &L->gk1_b));
        if (m->use_output_gate) TRY(hf_layer_get(w, m, l, "attn.g_proj.weight", 2, vv, D, 0, 1, &L->g_proj));
        /* fused (g_norm_swish_gate) or separate (g_norm) norm: same math, two names */
        TRY(hf_layer_get(w, m, l, "attn.g_norm_swish_gate.weight", 1, m->Vh, 0, 0, 0, &L->o_norm));
        if (!L->o_norm) TRY(hf_layer_get(w, m, l, "attn.g_norm.weight", 1, m->Vh, 0, 0, 0, &L->o_norm));
    } else {
        if (m->use_beta) TRY(hf_layer_get(w, m, l, "attn.b_proj.weight", 2, m->H, D, 0, 1, &L->b_proj));
        if (m->use_gate) TRY(hf_layer_get(w, m, l, "attn.g_proj.weight", 2, vv, D, 0, 1, &L->g_proj));
        TRY(hf_layer_get(w, m, l, "attn.o_norm.weight", 1, m->Vh, 0, 0, 1, &L->o_norm));
    }
    return hf_layer_out_mlp(w, m, l, vv, L);
}

lina_status hf_fla_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st) {
    size_t Wm1 = m->use_short_conv ? (size_t)m->conv_size - 1 : 0;
    if (Wm1 > 0) {
        st->conv_q = calloc((size_t)B * Wm1 * m->H * m->Kh, sizeof(float));
        st->conv_k = calloc((size_t)B * Wm1 * m->Hkv * m->Kh, sizeof(float));
        st->conv_v = calloc((size_t)B * Wm1 * m->Hkv * m->Vh, sizeof(float));
        if (!st->conv_q || !st->conv_k || !st->conv_v) return lina_fail(LINA_ERR_OOM, "hf state: out of memory");
    }
    st->S = calloc((size_t)B * m->H * m->Kh * m->Vh, sizeof(float));
    if (!st->S) return lina_fail(LINA_ERR_OOM, "hf state: out of memory");
    return LINA_OK;
}

static float apply_act(hf_act a, float x) {
    switch (a) {
    case HF_ACT_SILU: return hf_silu(x);
    case HF_ACT_RELU: return x > 0 ? x : 0;
    case HF_ACT_ELU_P1: return x > 0 ? x + 1.0f : expf(x); /* elu(x) + 1 */
    default: return x;
    }
}

/* rows of n: x / sqrt(sum x^2 + 1e-6) (fla l2norm) or x / sum x (fla sum_norm) */
static void normalize_rows(size_t rows, int n, int l2, float *x) {
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * n;
        double s = 0;
        for (int i = 0; i < n; i++) s += l2 ? (double)xr[i] * xr[i] : xr[i];
        float f = l2 ? (float)(1.0 / sqrt(s + 1e-6)) : (float)(1.0 / s);
        for (int i = 0; i < n; i++) xr[i] *= f;
    }
}

/* (N, Hkv, d) -> (N, Hkv*G, d): query head i reads key/value head i / G. */
static void repeat_heads(size_t N, int Hkv, int G, int d, const float *src, float *dst) {
    for (size_t r = 0; r < N; r++)
        for (int h = 0; h < Hkv * G; h++)
            memcpy(dst + (r * Hkv * G + h) * d, src + (r * Hkv + h / G) * d, (size_t)d * sizeof *dst);
}

lina_status hf_fla_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                         const float *xn, float *x) {
    const hf_layer *L = &m->layers[l];
    int D = m->D, H = m->H, Kh = m->Kh, Vh = m->Vh, G = m->H / m->Hkv, W = m->conv_size;
    int gla = m->arch == HF_GLA;
    size_t N = (size_t)B * T, qk = (size_t)H * Kh, vv = (size_t)H * Vh, kvk = (size_t)m->Hkv * Kh,
           kvv = (size_t)m->Hkv * Vh;
    /* scratch: q (N, qk), k, gk (N, qk), v, o, gate (N, vv), pre-conv (N, max), beta (N, H), low-rank (N, r),
     * kv-head copies (N, kvk | kvv); pre-conv / output rows are the widest of qk, vv, D */
    size_t widest = qk > vv ? qk : vv;
    if (widest < (size_t)D) widest = (size_t)D; /* pre also holds the (N, D) output projection */
    size_t total = N * (3 * qk + 3 * vv + widest + H + GLA_GATE_RANK + kvk + kvv);
    float *buf = malloc(total * sizeof *buf);
    if (!buf) return lina_fail(LINA_ERR_OOM, "layer %d: out of memory for %zu floats of scratch", l, total);
    float *q = buf, *k = q + N * qk, *gk = k + N * qk, *v = gk + N * qk, *o = v + N * vv, *gate = o + N * vv;
    float *pre = gate + N * vv, *beta = pre + N * widest, *low = beta + N * H, *kvk_buf = low + N * GLA_GATE_RANK,
          *kvv_buf = kvk_buf + N * kvk;

    /* projections (+ short convolutions), straight into the kv-head buffers when heads are shared */
    float *kdst = G > 1 ? kvk_buf : k, *vdst = G > 1 ? kvv_buf : v;
    int conv_silu_qk = gla || m->qk_act == HF_ACT_SILU;
    if (m->use_short_conv) {
        hf_linear((int)N, D, (int)qk, xn, L->q_proj, NULL, pre);
        hf_conv_forward(B, T, &L->q_conv, W, pre, st->conv_q, conv_silu_qk, q);
        hf_linear((int)N, D, (int)kvk, xn, L->k_proj, NULL, pre);
        hf_conv_forward(B, T, &L->k_conv, W, pre, st->conv_k, conv_silu_qk, kdst);
        hf_linear((int)N, D, (int)kvv, xn, L->v_proj, NULL, pre);
        hf_conv_forward(B, T, &L->v_conv, W, pre, st->conv_v, 1, vdst);
    } else {
        hf_linear((int)N, D, (int)qk, xn, L->q_proj, NULL, q);
        hf_linear((int)N, D, (int)kvk, xn, L->k_proj, NULL, kdst);
        hf_linear((int)N, D, (int)kvv, xn, L->v_proj, NULL, vdst);
        if (!gla) { /* DeltaNet without conv: silu on q, k (if silu) and always on v */
            for (size_t i = 0; i < N * kvv; i++) vdst[i] = hf_silu(vdst[i]);
            if (m->qk_act == HF_ACT_SILU) {
                for (size_t i = 0; i < N * qk; i++) q[i] = hf_silu(q[i]);
                for (size_t i = 0; i < N * kvk; i++) kdst[i] = hf_silu(kdst[i]);
            }
        }
    }
    if (gla) { /* gk = logsigmoid(W1 (W0 x) + b1) / normalizer, clamped below */
        float *gdst = G > 1 ? pre : gk;
        hf_linear((int)N, D, GLA_GATE_RANK, xn, L->gk0, NULL, low);
        hf_linear((int)N, GLA_GATE_RANK, (int)kvk, low, L->gk1, L->gk1_b, gdst);
        for (size_t i = 0; i < N * kvk; i++) {
            float z = gdst[i];
            float ls = -hf_softplus(-z); /* log sigmoid(z) */
            float g = ls / m->gate_logit_normalizer;
            gdst[i] = g < m->clamp_min ? m->clamp_min : g;
        }
        if (G > 1) repeat_heads(N, m->Hkv, G, Kh, pre, gk);
    }
    if (G > 1) {
        repeat_heads(N, m->Hkv, G, Kh, kvk_buf, k);
        repeat_heads(N, m->Hkv, G, Vh, kvv_buf, v);
    }
    if (!gla) {
        if (m->qk_act != HF_ACT_SILU)
            for (size_t i = 0; i < N * qk; i++) {
                q[i] = apply_act(m->qk_act, q[i]);
                k[i] = apply_act(m->qk_act, k[i]);
            }
        normalize_rows(N * H, Kh, m->qk_l2, q);
        normalize_rows(N * H, Kh, m->qk_l2, k);
        if (m->use_beta) {
            hf_linear((int)N, D, H, xn, L->b_proj, NULL, beta);
            for (size_t i = 0; i < N * H; i++) beta[i] = hf_sigmoid(beta[i]);
        } else {
            for (size_t i = 0; i < N * H; i++) beta[i] = 1.0f;
        }
        if (m->allow_neg_eigval)
            for (size_t i = 0; i < N * H; i++) beta[i] *= 2.0f;
    }

    /* the recurrence: chunkwise/parallel for a prompt, recurrent step for one token */
    lina_attn_desc d = hf_attn_desc(B, T, H, H, Kh, Vh, gla ? LINA_GATE_VECTOR : LINA_GATE_NONE, gla ? LINA_UPDATE_ADD : LINA_UPDATE_DELTA);
    const float *g_arg = gla ? gk : NULL, *b_arg = gla ? NULL : beta;
    lina_status st_attn = hf_attn_run(ctx, &d, l, q, k, v, g_arg, b_arg, st->S, o);
    if (st_attn) {
        free(buf);
        return st_attn;
    }

    hf_norm_gate_out(m, L, (int)N, H, Vh, xn, o, gate, pre, x);
    free(buf);
    return LINA_OK;
}
