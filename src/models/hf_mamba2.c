/* Mamba2 mixer (model_type "mamba2", Hugging Face transformers
 * Mamba2ForCausalLM), written from the SSD math:
 *
 *   [_, _, z, xBC, dt] = x W_in                  widths d_mlp, d_mlp, I, I + 2 G N, Hm
 *   xBC  = silu(causal depthwise conv(xBC) + b)
 *   [xs, Bm, Cm] = xBC                           (I = Hm * P), (G N), (G N)
 *   dt   = clamp(softplus(dt + dt_bias), time_step_limit)
 *   per head h (group h / (Hm / G)), state S (N x P):
 *     S_t = exp(dt_t A_h) S_{t-1} + Bm_t (dt_t xs_t)^T,   A_h = -exp(A_log_h)
 *     y_t = S_t^T Cm_t + D_h xs_t
 *   y    = RMSNorm_I(y * silu(z)) * w              (gate applied before the norm; one RMS over all I
 *                                                  channels as transformers' MambaRMSNormGated computes it,
 *                                                  where mamba_ssm's Mamba2 takes one per group of I / G:
 *                                                  the same for n_groups = 1, which public Mamba2 checkpoints use)
 *   out  = y W_out
 * fla's Mamba2 (same model_type and weight names, its own config names) normalizes
 * groups of I / G channels and may set norm_before_gate (RMSNorm(y) * w * silu(z)),
 * rmsnorm = false (y * silu(z), no norm) and D_has_hdim (D per channel).
 *
 * In lina's terms that is the SCALAR gate g = dt A, ADD update, q = Cm, k = Bm,
 * v = dt xs, H = G key heads shared by HV = Hm value heads, scale 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "hf_internal.h"

static lina_status get(hf_weights *w, lina_hf_model *m, int l, const char *suffix, int ndim, int64_t d0, int64_t d1,
                       int64_t d2, int required, const float **out) {
    char name[256];
    snprintf(name, sizeof name, "backbone.layers.%d.%s", l, suffix);
    int64_t shape[3] = {d0, d1, d2};
    return hf_weights_get(w, m, name, ndim, shape, required, out);
}


lina_status hf_mamba2_load_layer(lina_hf_model *m, hf_weights *w, int l) {
    hf_layer *L = &m->layers[l];
    int D = m->D, Hm = m->m_heads;
    TRY(get(w, m, l, "norm.weight", 1, D, 0, 0, 1, &L->attn_norm));
    TRY(get(w, m, l, "mixer.in_proj.weight", 2, m->m_P, D, 0, 1, &L->in_proj));
    L->conv.C = m->m_conv_dim;
    TRY(get(w, m, l, "mixer.conv1d.weight", 3, m->m_conv_dim, 1, m->conv_size, 1, &L->conv.w));
    TRY(get(w, m, l, "mixer.conv1d.bias", 1, m->m_conv_dim, 0, 0, 0, &L->conv.b));
    TRY(get(w, m, l, "mixer.dt_bias", 1, Hm, 0, 0, 1, &L->dt_bias));
    TRY(get(w, m, l, "mixer.A_log", 1, Hm, 0, 0, 1, &L->A_log));
    TRY(get(w, m, l, "mixer.D", 1, m->m_D_hdim ? m->m_I : Hm, 0, 0, 1, &L->Dskip));
    L->gnorm = NULL;
    if (m->m_gated_norm) TRY(get(w, m, l, "mixer.norm.weight", 1, m->m_I, 0, 0, 1, &L->gnorm));
    TRY(get(w, m, l, "mixer.out_proj.weight", 2, D, m->m_I, 0, 1, &L->out_proj));
    return LINA_OK;
}

lina_status hf_mamba2_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st) {
    st->conv = calloc((size_t)B * (m->conv_size - 1) * m->m_conv_dim + 1, sizeof(float));
    st->S = calloc((size_t)B * m->m_heads * m->m_N * m->m_head_dim, sizeof(float));
    if (!st->conv || !st->S) return lina_fail(LINA_ERR_OOM, "hf state: out of memory");
    return LINA_OK;
}

lina_status hf_mamba2_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                            const float *xn, float *x) {
    const hf_layer *L = &m->layers[l];
    int D = m->D, I = m->m_I, G = m->m_G, Ns = m->m_N, Hm = m->m_heads, P = m->m_head_dim, CD = m->m_conv_dim;
    size_t N = (size_t)B * T, GN = (size_t)G * Ns;
    /* scratch: proj (N, Pin), xBC pre/post conv (N, CD) x2, q, k (N, G N), v, y (N, I), g (N, Hm), out (N, D) */
    size_t Pin = (size_t)m->m_P;
    size_t total = N * (Pin + 2 * (size_t)CD + 2 * GN + 2 * (size_t)I + Hm + D);
    float *buf = malloc(total * sizeof *buf);
    if (!buf) return lina_fail(LINA_ERR_OOM, "layer %d: out of memory for %zu floats of scratch", l, total);
    float *proj = buf, *pre = proj + N * Pin, *xbc = pre + N * CD, *q = xbc + N * CD, *k = q + N * GN,
          *v = k + N * GN, *y = v + N * I, *g = y + N * I, *out = g + N * Hm;

    hf_linear((int)N, D, (int)Pin, xn, L->in_proj, NULL, proj);
    size_t off_z = 2 * (size_t)m->m_dmlp, off_xbc = off_z + I, off_dt = off_xbc + CD;
    for (size_t r = 0; r < N; r++) memcpy(pre + r * CD, proj + r * Pin + off_xbc, (size_t)CD * sizeof *pre);
    hf_conv_forward(B, T, &L->conv, m->conv_size, pre, st->conv, 1, xbc);

    for (size_t r = 0; r < N; r++) {
        const float *row = xbc + r * CD, *dt_raw = proj + r * Pin + off_dt;
        memcpy(k + r * GN, row + I, GN * sizeof *k);
        memcpy(q + r * GN, row + I + GN, GN * sizeof *q);
        for (int h = 0; h < Hm; h++) {
            float dt = hf_softplus(dt_raw[h] + L->dt_bias[h]);
            dt = dt < m->dt_min ? m->dt_min : dt > m->dt_max ? m->dt_max : dt;
            g[r * Hm + h] = -expf(L->A_log[h]) * dt; /* log decay dt * A */
            for (int p = 0; p < P; p++) v[r * I + (size_t)h * P + p] = row[(size_t)h * P + p] * dt;
        }
    }

    lina_attn_desc d = hf_attn_desc(B, T, G, Hm, Ns, P, LINA_GATE_SCALAR, LINA_UPDATE_ADD);
    d.scale = 1.0f; /* the SSM has no 1/sqrt(K) */
    lina_status st_attn = hf_attn_run(ctx, &d, l, q, k, v, g, NULL, st->S, y);
    if (st_attn) {
        free(buf);
        return st_attn;
    }

    /* D skip, then the gate silu(z) and the gated RMSNorm (groups of m_norm_group channels):
     *   default           y = RMSNorm(y * silu(z)) * w
     *   norm_before_gate  y = RMSNorm(y) * w * silu(z)      (fla)
     *   no gated norm     y = y * silu(z)                  (fla rmsnorm = false) */
    int gs = m->m_norm_group, before = m->m_gated_norm && m->m_norm_before_gate;
    for (size_t r = 0; r < N; r++) {
        const float *xs = xbc + r * CD, *z = proj + r * Pin + off_z;
        float *yr = y + r * I;
        for (int c = 0; c < I; c++) {
            float dk = L->Dskip[m->m_D_hdim ? c : c / P];
            yr[c] += dk * xs[c];
            if (!before) yr[c] *= hf_silu(z[c]);
        }
        if (!m->m_gated_norm) continue;
        for (int g0 = 0; g0 < I; g0 += gs) hf_rmsnorm(1, gs, yr + g0, L->gnorm + g0, m->norm_eps, yr + g0);
        if (before)
            for (int c = 0; c < I; c++) yr[c] *= hf_silu(z[c]);
    }
    hf_linear((int)N, I, D, y, L->out_proj, NULL, out);
    for (size_t i = 0; i < N * (size_t)D; i++) x[i] += out[i];
    free(buf);
    return LINA_OK;
}
