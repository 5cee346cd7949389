/* flash-linear-attention MultiScaleRetention token mixer (model_type "retnet",
 * fla/layers/multiscale_retention.py), written from its published math.
 *
 * H query heads, Hkv = num_kv_heads key/value heads (query head h reads
 * key/value head h / (H / Hkv)), Kh = D expand_k / H, Vh = D expand_v / H:
 *   q, k, v = x Wq, x Wk, x Wv        (fla's RetNetBlock never turns on the short conv)
 *   q, k    = feature_map(q), feature_map(k)             (none by default)
 *   q, k    = rotary(q, k) at absolute positions t: per head, halves (x1, x2) of Kh,
 *             angle t / 10000^(2i / Kh):  [x1 cos - x2 sin, x2 cos + x1 sin]
 *   S_t     = gamma_h S_{t-1} + k_t v_t^T,  gamma_h = 1 - 2^(-5 - h),  o_t = Kh^-1/2 S_t^T q_t
 *   o       = RMSNorm_Vh(o) [* w] [* silu(x Wg) with use_output_gate],   out = o Wo
 * In lina's terms: CONST gate log(gamma_h), ADD update. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../layers/layers.h"
#include "hf_internal.h"


static lina_status get(hf_weights *w, lina_hf_model *m, int l, const char *suffix, int ndim, int64_t d0, int64_t d1,
                       int required, const float **out) {
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);
    int64_t shape[2] = {d0, d1};
    return hf_weights_get(w, m, name, ndim, shape, required, out);
}

lina_status hf_retnet_load_layer(lina_hf_model *m, hf_weights *w, int l) {
    hf_layer *L = &m->layers[l];
    int D = m->D, qk = m->H * m->Kh, vv = m->H * m->Vh, kvk = m->Hkv * m->Kh, kvv = m->Hkv * m->Vh;
    TRY(get(w, m, l, "attn_norm.weight", 1, D, 0, 1, &L->attn_norm));
    TRY(get(w, m, l, "attn.q_proj.weight", 2, qk, D, 1, &L->q_proj));
    TRY(get(w, m, l, "attn.k_proj.weight", 2, kvk, D, 1, &L->k_proj));
    TRY(get(w, m, l, "attn.v_proj.weight", 2, kvv, D, 1, &L->v_proj));
    if (m->use_output_gate) TRY(get(w, m, l, "attn.g_proj.weight", 2, vv, D, 1, &L->g_proj));
    if (m->norm_affine) { /* fused (g_norm_swish_gate) or separate (g_norm) norm: same math, two names */
        TRY(get(w, m, l, "attn.g_norm_swish_gate.weight", 1, m->Vh, 0, 0, &L->o_norm));
        if (!L->o_norm) TRY(get(w, m, l, "attn.g_norm.weight", 1, m->Vh, 0, 1, &L->o_norm));
    }
    TRY(get(w, m, l, "attn.o_proj.weight", 2, D, vv, 1, &L->o_proj));
    TRY(get(w, m, l, "mlp_norm.weight", 1, D, 0, 1, &L->mlp_norm));
    TRY(get(w, m, l, "mlp.gate_proj.weight", 2, m->I_mlp, D, 1, &L->mlp_gate));
    TRY(get(w, m, l, "mlp.up_proj.weight", 2, m->I_mlp, D, 1, &L->mlp_up));
    TRY(get(w, m, l, "mlp.down_proj.weight", 2, D, m->I_mlp, 1, &L->mlp_down));
    return LINA_OK;
}

lina_status hf_retnet_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st) {
    st->n_S = (size_t)B * m->H * m->Kh * m->Vh;
    st->S = calloc(st->n_S, sizeof(float));
    if (!st->S) return lina_fail(LINA_ERR_OOM, "hf state: out of memory");
    st->pos = 0;
    return LINA_OK;
}

/* rows (B, T, heads, Kh) rotated in place at positions pos0 + t (fla RotaryEmbedding,
 * non-interleaved; angles in f32 as fla computes its cos/sin tables) */
static void rotary(int B, int T, int heads, int Kh, int64_t pos0, float base, float *x) {
    int half = Kh / 2;
    for (int t = 0; t < T; t++) {
        float pos = (float)(pos0 + t);
        for (int i = 0; i < half; i++) {
            float inv_freq = 1.0f / powf(base, (float)(2 * i) / (float)Kh);
            float ang = pos * inv_freq, c = cosf(ang), s = sinf(ang);
            lina_rotate_pairs(B, T, heads, Kh, t, i, half, c, s, x);
        }
    }
}

static float feature(hf_act a, float x) {
    switch (a) {
    case HF_ACT_SILU: return hf_silu(x);
    case HF_ACT_RELU: return x > 0 ? x : 0;
    default: return x;
    }
}

/* (N, Hkv, d) -> (N, Hkv*G, d): query head i reads key/value head i / G. */
static void repeat_heads(size_t N, int Hkv, int G, int d, const float *src, float *dst) {
    for (size_t r = 0; r < N; r++)
        for (int h = 0; h < Hkv * G; h++)
            memcpy(dst + (r * Hkv * G + h) * d, src + (r * Hkv + h / G) * d, (size_t)d * sizeof *dst);
}

lina_status hf_retnet_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                            const float *xn, float *x) {
    const hf_layer *L = &m->layers[l];
    int D = m->D, H = m->H, Hkv = m->Hkv, G = H / Hkv, Kh = m->Kh, Vh = m->Vh;
    size_t N = (size_t)B * T, qk = (size_t)H * Kh, vv = (size_t)H * Vh, kvk = (size_t)Hkv * Kh,
           kvv = (size_t)Hkv * Vh;
    size_t out_w = vv > (size_t)D ? vv : (size_t)D;
    /* scratch: q, k (N, qk), v, o (N, vv), gate / output rows (N, out_w), kv-head rows (N, kvk + kvv), g (H) */
    size_t total = N * (2 * qk + 2 * vv + out_w + kvk + kvv) + (size_t)H;
    float *buf = malloc(total * sizeof *buf);
    if (!buf) return lina_fail(LINA_ERR_OOM, "layer %d: out of memory for %zu floats of scratch", l, total);
    float *q = buf, *k = q + N * qk, *v = k + N * qk, *o = v + N * vv, *gate = o + N * vv, *kbuf = gate + N * out_w,
          *vbuf = kbuf + N * kvk, *g = vbuf + N * kvv;

    float *kdst = G > 1 ? kbuf : k, *vdst = G > 1 ? vbuf : v;
    hf_linear((int)N, D, (int)qk, xn, L->q_proj, NULL, q);
    hf_linear((int)N, D, (int)kvk, xn, L->k_proj, NULL, kdst);
    hf_linear((int)N, D, (int)kvv, xn, L->v_proj, NULL, vdst);
    if (m->qk_act != HF_ACT_IDENTITY) {
        for (size_t i = 0; i < N * qk; i++) q[i] = feature(m->qk_act, q[i]);
        for (size_t i = 0; i < N * kvk; i++) kdst[i] = feature(m->qk_act, kdst[i]);
    }
    rotary(B, T, H, Kh, st->pos, m->rope_base, q);
    rotary(B, T, Hkv, Kh, st->pos, m->rope_base, kdst);
    if (G > 1) {
        repeat_heads(N, Hkv, G, Kh, kbuf, k);
        repeat_heads(N, Hkv, G, Vh, vbuf, v);
    }
    for (int h = 0; h < H; h++) g[h] = (float)log1p(-pow(2.0, -5.0 - h)); /* log gamma_h */

    lina_attn_desc d = hf_attn_desc(B, T, H, H, Kh, Vh, LINA_GATE_CONST, LINA_UPDATE_ADD);
    lina_status st_attn = hf_attn_run(ctx, &d, l, q, k, v, g, NULL, st->S, o);
    if (st_attn) {
        free(buf);
        return st_attn;
    }
    st->pos += T;

    hf_rmsnorm((int)(N * H), Vh, o, L->o_norm, m->norm_eps, o);
    if (L->g_proj) {
        hf_linear((int)N, D, (int)vv, xn, L->g_proj, NULL, gate);
        for (size_t i = 0; i < N * vv; i++) o[i] *= hf_silu(gate[i]);
    }
    hf_linear((int)N, (int)vv, D, o, L->o_proj, NULL, gate);
    for (size_t i = 0; i < N * (size_t)D; i++) x[i] += gate[i];
    free(buf);
    return LINA_OK;
}
