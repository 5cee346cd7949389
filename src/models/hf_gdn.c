/* flash-linear-attention GatedDeltaNet token mixer (model_type "gated_deltanet",
 * fla/layers/gated_deltanet.py), written from its published math.
 *
 * H q/k heads of Kh = head_dim channels, HV = num_v_heads value heads of
 * Vh = head_dim * expand_v channels; value head i reads q/k head i / (HV / H).
 *   q, k, v = silu(conv(x Wq)), silu(conv(x Wk)), silu(conv(x Wv))   (silu only without short conv)
 *   q, k    = L2-normalized per head: x / sqrt(|x|^2 + 1e-6)
 *   beta    = sigmoid(x Wb)            (times 2 with allow_neg_eigval)       (HV)
 *   g       = -exp(A_log) softplus(x Wa + dt_bias)   log decay per value head (HV)
 *   S_t     = e^{g_t} S_{t-1} + beta_t k_t (v_t - e^{g_t} S_{t-1}^T k_t)^T,  o_t = Kh^-1/2 S_t^T q_t
 *   o       = RMSNorm_Vh(o) * w [* silu(x Wg) with use_gate],   out = o Wo
 * In lina's terms: SCALAR gate, DELTA update, H key heads shared by HV value heads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "hf_internal.h"


lina_status hf_gdn_load_layer(lina_hf_model *m, hf_weights *w, int l) {
    hf_layer *L = &m->layers[l];
    int D = m->D, qk = m->H * m->Kh, vv = m->HV * m->Vh;
    TRY(hf_layer_get(w, m, l, "attn_norm.weight", 1, D, 0, 0, 1, &L->attn_norm));
    TRY(hf_layer_get(w, m, l, "attn.q_proj.weight", 2, qk, D, 0, 1, &L->q_proj));
    TRY(hf_layer_get(w, m, l, "attn.k_proj.weight", 2, qk, D, 0, 1, &L->k_proj));
    TRY(hf_layer_get(w, m, l, "attn.v_proj.weight", 2, vv, D, 0, 1, &L->v_proj));
    TRY(hf_layer_get(w, m, l, "attn.a_proj.weight", 2, m->HV, D, 0, 1, &L->a_proj));
    TRY(hf_layer_get(w, m, l, "attn.b_proj.weight", 2, m->HV, D, 0, 1, &L->b_proj));
    TRY(hf_layer_get(w, m, l, "attn.A_log", 1, m->HV, 0, 0, 1, &L->A_log));
    TRY(hf_layer_get(w, m, l, "attn.dt_bias", 1, m->HV, 0, 0, 1, &L->dt_bias));
    if (m->use_short_conv) {
        TRY(hf_layer_conv(w, m, l, "q", qk, &L->q_conv));
        TRY(hf_layer_conv(w, m, l, "k", qk, &L->k_conv));
        TRY(hf_layer_conv(w, m, l, "v", vv, &L->v_conv));
    }
    if (m->use_gate) TRY(hf_layer_get(w, m, l, "attn.g_proj.weight", 2, vv, D, 0, 1, &L->g_proj));
    TRY(hf_layer_get(w, m, l, "attn.o_norm.weight", 1, m->Vh, 0, 0, 1, &L->o_norm));
    return hf_layer_out_mlp(w, m, l, vv, L);
}

lina_status hf_gdn_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st) {
    size_t Wm1 = m->use_short_conv ? (size_t)m->conv_size - 1 : 0;
    size_t qk = (size_t)m->H * m->Kh, vv = (size_t)m->HV * m->Vh;
    if (Wm1 > 0) {
        st->n_conv_q = st->n_conv_k = (size_t)B * Wm1 * qk;
        st->n_conv_v = (size_t)B * Wm1 * vv;
        st->conv_q = calloc(st->n_conv_q, sizeof(float));
        st->conv_k = calloc(st->n_conv_k, sizeof(float));
        st->conv_v = calloc(st->n_conv_v, sizeof(float));
        if (!st->conv_q || !st->conv_k || !st->conv_v) return lina_fail(LINA_ERR_OOM, "hf state: out of memory");
    }
    st->n_S = (size_t)B * m->HV * m->Kh * m->Vh;
    st->S = calloc(st->n_S, sizeof(float));
    if (!st->S) return lina_fail(LINA_ERR_OOM, "hf state: out of memory");
    return LINA_OK;
}

/* rows of n: x / sqrt(sum x^2 + 1e-6) */
static void l2_normalize_rows(size_t rows, int n, float *x) {
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * n;
        double s = 0;
        for (int i = 0; i < n; i++) s += (double)xr[i] * xr[i];
        float f = (float)(1.0 / sqrt(s + 1e-6));
        for (int i = 0; i < n; i++) xr[i] *= f;
    }
}

lina_status hf_gdn_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                         const float *xn, float *x) {
    const hf_layer *L = &m->layers[l];
    int D = m->D, H = m->H, HV = m->HV, Kh = m->Kh, Vh = m->Vh, W = m->conv_size;
    size_t N = (size_t)B * T, qk = (size_t)H * Kh, vv = (size_t)HV * Vh;
    size_t widest = qk > vv ? qk : vv;
    if (widest < (size_t)D) widest = (size_t)D;
    /* scratch: q, k (N, qk), v, o, gate (N, vv), pre-conv / output rows (N, widest), beta, g (N, HV) */
    size_t total = N * (2 * qk + 3 * vv + widest + 2 * (size_t)HV);
    float *buf = malloc(total * sizeof *buf);
    if (!buf) return lina_fail(LINA_ERR_OOM, "layer %d: out of memory for %zu floats of scratch", l, total);
    float *q = buf, *k = q + N * qk, *v = k + N * qk, *o = v + N * vv, *gate = o + N * vv, *pre = gate + N * vv,
          *beta = pre + N * widest, *g = beta + N * HV;

    if (m->use_short_conv) {
        hf_linear((int)N, D, (int)qk, xn, L->q_proj, NULL, pre);
        hf_conv_forward(B, T, &L->q_conv, W, pre, st->conv_q, 1, q);
        hf_linear((int)N, D, (int)qk, xn, L->k_proj, NULL, pre);
        hf_conv_forward(B, T, &L->k_conv, W, pre, st->conv_k, 1, k);
        hf_linear((int)N, D, (int)vv, xn, L->v_proj, NULL, pre);
        hf_conv_forward(B, T, &L->v_conv, W, pre, st->conv_v, 1, v);
    } else {
        hf_linear((int)N, D, (int)qk, xn, L->q_proj, NULL, q);
        hf_linear((int)N, D, (int)qk, xn, L->k_proj, NULL, k);
        hf_linear((int)N, D, (int)vv, xn, L->v_proj, NULL, v);
        for (size_t i = 0; i < N * qk; i++) {
            q[i] = hf_silu(q[i]);
            k[i] = hf_silu(k[i]);
        }
        for (size_t i = 0; i < N * vv; i++) v[i] = hf_silu(v[i]);
    }
    l2_normalize_rows(N * H, Kh, q);
    l2_normalize_rows(N * H, Kh, k);
    hf_linear((int)N, D, HV, xn, L->b_proj, NULL, beta);
    hf_linear((int)N, D, HV, xn, L->a_proj, NULL, g);
    for (size_t r = 0; r < N; r++)
        for (int h = 0; h < HV; h++) {
            size_t i = r * HV + h;
            beta[i] = hf_sigmoid(beta[i]) * (m->allow_neg_eigval ? 2.0f : 1.0f);
            g[i] = -expf(L->A_log[h]) * hf_softplus(g[i] + L->dt_bias[h]);
        }

    lina_attn_desc d = hf_attn_desc(B, T, H, HV, Kh, Vh, LINA_GATE_SCALAR, LINA_UPDATE_DELTA);
    lina_status st_attn = hf_attn_run(ctx, &d, l, q, k, v, g, beta, st->S, o);
    if (st_attn) {
        free(buf);
        return st_attn;
    }

    hf_norm_gate_out(m, L, (int)N, HV, Vh, xn, o, gate, pre, x);
    free(buf);
    return LINA_OK;
}
