/* flash-linear-attention HGRN2 token mixer (model_type "hgrn2",
 * fla/layers/hgrn2.py and fla/models/hgrn2), written from its published math.
 *
 * H = D / expand_ratio heads, Kh = expand_ratio forget channels, Vh = D / H input channels:
 *   q, f, i = conv(x Wq), conv(x Wf), conv(x Wi)        (plain convs, only with use_short_conv)
 *   q       = silu(q)
 *   g       = logsigmoid(f), or with the layer's lower bound lb (layers > 0):
 *             g = log(lb + (1 - lb) sigmoid(f))
 *   k       = 1 - exp(g)
 *   S_t     = diag(exp(g_t)) S_{t-1} + k_t i_t^T,  o_t = Kh^-1/2 S_t^T q_t     (GLA recurrence)
 *   out     = RMSNorm_D(o) [* w] Wo                       (one norm over all heads, eps 1e-5)
 * Lower bounds: P = model.lower_bounds (L, D); s = softmax of P over layers (per channel);
 * lb_l = sum_{j <= l} s_j - s_0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "hf_internal.h"

#define HGRN2_G_NORM_EPS 1e-5f


/* model.lower_bounds (L, D) -> per-layer lower bounds, in place in the model's own f32 copy */
static lina_status load_lower_bounds(lina_hf_model *m, hf_weights *w) {
    int64_t shape[2] = {m->L, m->D};
    const float *raw;
    TRY(hf_weights_get(w, m, "model.lower_bounds", 2, shape, 1, &raw));
    float *lb = (float *)raw; /* a buffer this model owns (hf_weights_get copies) */
    for (int c = 0; c < m->D; c++) {
        double mx = -INFINITY, sum = 0;
        for (int l = 0; l < m->L; l++) mx = fmax(mx, lb[(size_t)l * m->D + c]);
        for (int l = 0; l < m->L; l++) sum += exp(lb[(size_t)l * m->D + c] - mx);
        double first = exp(lb[c] - mx) / sum, acc = 0;
        for (int l = 0; l < m->L; l++) {
            acc += exp(lb[(size_t)l * m->D + c] - mx) / sum;
            lb[(size_t)l * m->D + c] = (float)(acc - first);
        }
    }
    for (int l = 1; l < m->L; l++) m->layers[l].lower_bound = lb + (size_t)l * m->D;
    return LINA_OK;
}

lina_status hf_hgrn2_load_layer(lina_hf_model *m, hf_weights *w, int l) {
    hf_layer *L = &m->layers[l];
    int D = m->D, fd = m->H * m->Kh;
    if (l == 0 && m->use_lower_bound) TRY(load_lower_bounds(m, w));
    TRY(hf_layer_get(w, m, l, "attn_norm.weight", 1, D, 0, 0, 1, &L->attn_norm));
    TRY(hf_layer_get(w, m, l, "attn.q_proj.weight", 2, fd, D, 0, 1, &L->q_proj));
    TRY(hf_layer_get(w, m, l, "attn.f_proj.weight", 2, fd, D, 0, 1, &L->f_proj));
    TRY(hf_layer_get(w, m, l, "attn.i_proj.weight", 2, D, D, 0, 1, &L->i_proj));
    if (m->use_short_conv) {
        TRY(hf_layer_conv(w, m, l, "q", fd, &L->q_conv));
        TRY(hf_layer_conv(w, m, l, "f", fd, &L->f_conv));
        TRY(hf_layer_conv(w, m, l, "i", D, &L->i_conv));
    }
    if (m->norm_affine) TRY(hf_layer_get(w, m, l, "attn.g_norm.weight", 1, D, 0, 0, 1, &L->o_norm));
    return hf_layer_out_mlp(w, m, l, D, L);
}

lina_status hf_hgrn2_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st) {
    size_t Wm1 = m->use_short_conv ? (size_t)m->conv_size - 1 : 0, fd = (size_t)m->H * m->Kh;
    if (Wm1 > 0) {
        st->n_conv_q = st->n_conv_k = (size_t)B * Wm1 * fd; /* conv_k holds the forget-gate input */
        st->n_conv_v = (size_t)B * Wm1 * m->D;              /* conv_v the input i */
        st->conv_q = calloc(st->n_conv_q, sizeof(float));
        st->conv_k = calloc(st->n_conv_k, sizeof(float));
        st->conv_v = calloc(st->n_conv_v, sizeof(float));
        if (!st->conv_q || !st->conv_k || !st->conv_v) return lina_fail(LINA_ERR_OOM, "hf state: out of memory");
    }
    st->n_S = (size_t)B * m->H * m->Kh * m->Vh;
    st->S = calloc(st->n_S, sizeof(float));
    if (!st->S) return lina_fail(LINA_ERR_OOM, "hf state: out of memory");
    return LINA_OK;
}

lina_status hf_hgrn2_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                           const float *xn, float *x) {
    const hf_layer *L = &m->layers[l];
    int D = m->D, H = m->H, Kh = m->Kh, Vh = m->Vh, W = m->conv_size;
    size_t N = (size_t)B * T, fd = (size_t)H * Kh;
    size_t widest = fd > (size_t)D ? fd : (size_t)D;
    /* scratch: q, k, g (N, fd), i, o (N, D), pre-conv / output rows (N, widest) */
    size_t total = N * (3 * fd + 2 * (size_t)D + widest);
    float *buf = malloc(total * sizeof *buf);
    if (!buf) return lina_fail(LINA_ERR_OOM, "layer %d: out of memory for %zu floats of scratch", l, total);
    float *q = buf, *k = q + N * fd, *g = k + N * fd, *in = g + N * fd, *o = in + N * D, *pre = o + N * D;

    if (m->use_short_conv) {
        hf_linear((int)N, D, (int)fd, xn, L->q_proj, NULL, pre);
        hf_conv_forward(B, T, &L->q_conv, W, pre, st->conv_q, 0, q);
        hf_linear((int)N, D, (int)fd, xn, L->f_proj, NULL, pre);
        hf_conv_forward(B, T, &L->f_conv, W, pre, st->conv_k, 0, g);
        hf_linear((int)N, D, D, xn, L->i_proj, NULL, pre);
        hf_conv_forward(B, T, &L->i_conv, W, pre, st->conv_v, 0, in);
    } else {
        hf_linear((int)N, D, (int)fd, xn, L->q_proj, NULL, q);
        hf_linear((int)N, D, (int)fd, xn, L->f_proj, NULL, g);
        hf_linear((int)N, D, D, xn, L->i_proj, NULL, in);
    }
    for (size_t r = 0; r < N; r++)
        for (size_t c = 0; c < fd; c++) {
            size_t i = r * fd + c;
            q[i] = hf_silu(q[i]);
            float f = g[i], ls = -hf_softplus(-f); /* log sigmoid(f) */
            if (L->lower_bound) {
                double lb = L->lower_bound[c];
                ls = (float)log(lb + (1.0 - lb) * exp((double)ls));
            }
            g[i] = ls;
            k[i] = -expm1f(ls); /* 1 - e^g */
        }

    lina_attn_desc d = hf_attn_desc(B, T, H, H, Kh, Vh, LINA_GATE_VECTOR, LINA_UPDATE_ADD);
    lina_status st_attn = hf_attn_run(ctx, &d, l, q, k, in, g, NULL, st->S, o);
    if (st_attn) {
        free(buf);
        return st_attn;
    }

    /* over all heads: (N, H*Vh = D). fla fuses this norm into rms_norm_linear, whose eps is
     * its default 1e-5 whatever norm_eps says (found with fla's kernels in Triton's interpreter) */
    hf_rmsnorm((int)N, D, o, L->o_norm, HGRN2_G_NORM_EPS, o);
    hf_linear((int)N, D, D, o, L->o_proj, NULL, pre);
    for (size_t i = 0; i < N * (size_t)D; i++) x[i] += pre[i];
    free(buf);
    return LINA_OK;
}
