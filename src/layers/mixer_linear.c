/* The linear-attention mixers (Gated DeltaNet, DeltaNet, GLA, Mamba2-style
 * simple GLA, RetNet, feature-map linear attention, HGRN2): forward and
 * backward side by side. N = B*T rows, Ck = H*K, Cv = H*V.
 *
 * Forward, per kind (fla's reference layers):
 *   qp, kp, vp = x Wq^T, x Wk^T, x Wv^T                   (N, Ck), (N, Ck), (N, Cv)
 *   qs = silu(conv(qp)) [conv kinds] | silu(qp) [HGRN2] | qp          (same for k, v)
 *   q  = l2(qs) [delta kinds] | phi(qs) [feature-map kinds] | rope(qs) [RetNet] | qs
 *        phi: elu+1 [linear]; [relu cos, relu sin](pi t / 2 max_seq) [cosFormer];
 *        FAVOR+(qs K^(-1/4)) with the fixed favor_proj [Performer];
 *        [softmax(qs Wq), softmax(-qs Wq)] with learnable Wq (Wk for k) [Hedgehog];
 *        the attention then runs on F = phi's output dim per head, normalized
 *   HGRN2: k = 1 - f = sigmoid(-kp), g = log f = logsigmoid(kp)      (vector gate)
 *   beta = sigmoid(x Wb^T)                                (N, H)   delta kinds
 *   g = -exp(A_log) softplus(x Wa^T + dt_bias)            (N, H)   GDN, Mamba2
 *   g = logsigmoid((x W0^T) W1^T + b1) / 16               (N, Ck)  GLA
 *   g = log(1 - 2^(-5-h))                                 (H)      RetNet
 *   o = lina_attn(q, k, v, g, beta)                       (N, Cv)
 *   y = RMSNorm_V(o) w [* silu(x Wg^T)],  out = y Wo^T    (N, D)
 * The backward runs the same chain in reverse; lina_attn_backward supplies
 * dq, dk, dv, dg, dbeta.
 */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "layers.h"
#include "lina/fmap.h"
#include "mixer.h"

#define TRY(x)                                                                                     \
    do {                                                                                           \
        lina_status st_ = (x);                                                                     \
        if (st_ != LINA_OK) return st_;                                                            \
    } while (0)

#define GLA_GATE_NORMALIZER 16.0f

lina_status lina_mixer_linear_alloc(lina_mixer *mx, int rows) {
    if (rows <= mx->cap) return LINA_OK;
    size_t N = (size_t)rows, Ck = (size_t)mx->H * mx->K, Cv = (size_t)mx->H * mx->V;
    size_t C = Ck > Cv ? Ck : Cv, H = mx->H, R = mx->R > 0 ? mx->R : 1;
    size_t Cf = (size_t)mx->H * mx->F; /* q, k after a feature map */
    if (R > C) C = R;
    if (Cf > C) C = Cf;
    /* 24 wide (N, C) buffers, 8 narrow (N, H) buffers */
    size_t total = N * (24 * C + 8 * H);
    float *buf = malloc(sizeof(float) * total);
    if (!buf) return lina_fail(LINA_ERR_OOM, "linear mixer: out of memory for %d rows", rows);
    free(mx->buf);
    mx->buf = buf;
    mx->cap = rows;
    float *p = buf;
    float **wide[] = {&mx->qp, &mx->kp, &mx->vp, &mx->qc, &mx->kc, &mx->vc, &mx->qs, &mx->ks,
                      &mx->vs, &mx->q,  &mx->k,  &mx->v,  &mx->g,  &mx->gz, &mx->gl, &mx->o,
                      &mx->z,  &mx->y,  &mx->dq, &mx->dk, &mx->dv, &mx->dg, &mx->t1, &mx->t2};
    for (size_t i = 0; i < sizeof wide / sizeof *wide; i++, p += N * C) *wide[i] = p;
    float **narrow[] = {&mx->rq, &mx->rk, &mx->bl, &mx->beta_v, &mx->a, &mx->orstd, &mx->dbeta, &mx->lse};
    for (size_t i = 0; i < sizeof narrow / sizeof *narrow; i++, p += N * H) *narrow[i] = p;
    mx->t3 = mx->gz; /* t3 is only used after gz has been consumed; see backward */
    return LINA_OK;
}

/* Performer: FAVOR+ on x K^(-1/4) makes phi(q).phi(k) estimate exp(q.k / sqrt(K)). */
static float favor_input_scale(const lina_mixer *mx) { return powf((float)mx->K, -0.25f); }

/* The feature map's parameters for q (is_k = 0) or k: Performer shares one fixed W. */
static const lina_param *fmap_param(const lina_mixer *mx, int is_k) {
    if (mx->kind == LINA_MIXER_HEDGEHOG) return is_k ? &mx->fmap_k : &mx->fmap_q;
    if (mx->kind == LINA_MIXER_PERFORMER) return &mx->fmap_q;
    return NULL;
}

/* cosFormer positions pos0 .. pos0 + T - 1 (the horizon is max_seq). */
static lina_status fill_positions(lina_mixer *mx, int T, int pos0) {
    if (mx->kind != LINA_MIXER_COSFORMER) return LINA_OK;
    if (pos0 < 0 || pos0 + T - 1 > mx->fd.M)
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "cosformer: positions %d..%d exceed its horizon max_seq = %d "
                         "(the longest context this model accepts)",
                         pos0, pos0 + T - 1, mx->fd.M);
    if (T > mx->pos_cap) {
        int32_t *p = realloc(mx->pos, sizeof(int32_t) * T);
        if (!p) return lina_fail(LINA_ERR_OOM, "cosformer: out of memory for %d positions", T);
        mx->pos = p;
        mx->pos_cap = T;
    }
    for (int t = 0; t < T; t++) mx->pos[t] = pos0 + t;
    return LINA_OK;
}

lina_attn_desc lina_mixer_attn_desc(const lina_mixer *mx, int B, int T) {
    lina_attn_desc d = lina_attn_desc_default();
    d.B = B;
    d.T = T;
    d.H = mx->H;
    d.K = mx->F;
    d.V = mx->V;
    d.gate = mx->gate;
    d.update = mx->beta ? LINA_UPDATE_DELTA : LINA_UPDATE_ADD;
    d.normalize = mx->fmap;
    d.form = LINA_FORM_AUTO;
    return d;
}

/* qs -> q for the q/k path (l2 | feature map | rotary | copy). */
static lina_status qk_finish(lina_mixer *mx, lina_ctx *ctx, int B, int T, float *xs, float *x,
                             float *rnorm, int pos0, int is_k) {
    int N = B * T, H = mx->H, K = mx->K;
    if (mx->l2) {
        lina_l2norm_forward(N * H, K, xs, 1e-6f, x, rnorm, mx->threads);
    } else if (mx->fmap) {
        if (mx->kind == LINA_MIXER_PERFORMER) { /* xs is a copy of the projection: scaled in place */
            float s = favor_input_scale(mx);
            for (size_t i = 0; i < (size_t)N * H * K; i++) xs[i] *= s;
        }
        const lina_param *w = fmap_param(mx, is_k);
        TRY(lina_fmap_forward(ctx, &mx->fd, B, T, H, xs, w ? w->w : NULL,
                              mx->kind == LINA_MIXER_COSFORMER ? mx->pos : NULL, x));
    } else {
        memcpy(x, xs, sizeof(float) * N * H * K);
        if (mx->rope) lina_rotary_apply(B, T, H, K, mx->theta, pos0, x, 0, mx->threads);
    }
    return LINA_OK;
}

static lina_status qk_finish_backward(lina_mixer *mx, lina_ctx *ctx, const float *xs,
                                      const float *x, const float *rnorm, float *dx, float *dxs,
                                      int is_k) {
    int B = mx->B, T = mx->T, N = B * T, H = mx->H, K = mx->K;
    if (mx->l2) {
        lina_l2norm_backward(N * H, K, x, rnorm, dx, dxs, mx->threads);
    } else if (mx->fmap) {
        /* Hedgehog accumulates dW; Performer's projection is fixed (no dW) */
        const lina_param *w = fmap_param(mx, is_k);
        float *dW = mx->kind == LINA_MIXER_HEDGEHOG ? w->g : NULL;
        TRY(lina_fmap_backward(ctx, &mx->fd, B, T, H, xs, w ? w->w : NULL,
                               mx->kind == LINA_MIXER_COSFORMER ? mx->pos : NULL, dx, dxs, dW));
        if (mx->kind == LINA_MIXER_PERFORMER) { /* xs = projection K^(-1/4) */
            float s = favor_input_scale(mx);
            for (size_t i = 0; i < (size_t)N * H * K; i++) dxs[i] *= s;
        }
    } else {
        memcpy(dxs, dx, sizeof(float) * N * H * K);
        if (mx->rope) lina_rotary_apply(B, T, H, K, mx->theta, mx->pos0, dxs, 1, mx->threads);
    }
    return LINA_OK;
}

/* p -> s: short conv + silu | silu | copy */
static void activate(lina_mixer *mx, int B, int T, int C, const float *p, const float *w,
                     float *hist, float *c, float *s, int use_silu) {
    size_t n = (size_t)B * T * C;
    if (mx->conv) {
        lina_conv_forward(B, T, C, mx->W, p, w, hist, c, s, mx->threads);
        if (hist) lina_conv_update_history(T, C, mx->W, p, hist);
    } else if (use_silu) {
        for (size_t i = 0; i < n; i++) s[i] = lina_siluf(p[i]);
    } else {
        memcpy(s, p, sizeof(float) * n);
    }
}

static void activate_backward(lina_mixer *mx, int C, const float *p, const float *c,
                              const lina_param *conv, const float *ds, float *dc, float *dp,
                              int use_silu) {
    int B = mx->B, T = mx->T;
    size_t n = (size_t)B * T * C;
    if (mx->conv) {
        lina_conv_backward(B, T, C, mx->W, p, conv->w, NULL, c, ds, dc, dp, conv->g, mx->threads);
    } else if (use_silu) {
        for (size_t i = 0; i < n; i++) dp[i] = ds[i] * lina_silu_grad(p[i]);
    } else {
        memcpy(dp, ds, sizeof(float) * n);
    }
}

lina_status lina_mixer_linear_forward(lina_mixer *mx, lina_ctx *ctx, int B, int T, const float *x,
                                      float *out, lina_mixer_state *st, int pos0) {
    int N = B * T, D = mx->D, H = mx->H, K = mx->K, V = mx->V, Ck = H * K, Cv = H * V;
    TRY(lina_mixer_linear_alloc(mx, N));
    TRY(fill_positions(mx, T, pos0));
    mx->B = B;
    mx->T = T;
    mx->x = x;
    mx->pos0 = pos0;
    int hgrn = mx->kind == LINA_MIXER_HGRN2;
    lina_linear_forward(N, D, Ck, x, mx->q_proj.w, NULL, mx->qp);
    lina_linear_forward(N, D, Ck, x, mx->k_proj.w, NULL, mx->kp);
    lina_linear_forward(N, D, Cv, x, mx->v_proj.w, NULL, mx->vp);
    activate(mx, B, T, Ck, mx->qp, mx->q_conv.w, st ? st->hq : NULL, mx->qc, mx->qs, mx->silu_q);
    activate(mx, B, T, Ck, mx->kp, mx->k_conv.w, st ? st->hk : NULL, mx->kc, mx->ks, 0);
    activate(mx, B, T, Cv, mx->vp, mx->v_conv.w, st ? st->hv : NULL, mx->vc, mx->vs, 0);
    TRY(qk_finish(mx, ctx, B, T, mx->qs, mx->q, mx->rq, pos0, 0));
    if (hgrn) {
        /* k = 1 - f = sigmoid(-kp), g = log f = logsigmoid(kp) */
        for (size_t i = 0; i < (size_t)N * Ck; i++) {
            mx->k[i] = lina_sigmoidf(-mx->kp[i]);
            mx->g[i] = lina_logsigmoidf(mx->kp[i]);
        }
    } else {
        TRY(qk_finish(mx, ctx, B, T, mx->ks, mx->k, mx->rk, pos0, 1));
    }
    memcpy(mx->v, mx->vs, sizeof(float) * N * Cv);
    if (mx->beta) {
        lina_linear_forward(N, D, H, x, mx->b_proj.w, NULL, mx->bl);
        for (int i = 0; i < N * H; i++) mx->beta_v[i] = lina_sigmoidf(mx->bl[i]);
    }
    const float *g = mx->g;
    if (mx->gate == LINA_GATE_SCALAR) {
        lina_linear_forward(N, D, H, x, mx->a_proj.w, NULL, mx->a);
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++) {
                float *a = mx->a + (size_t)n * H + h;
                *a += mx->dt_bias.w[h];
                mx->g[(size_t)n * H + h] = -expf(mx->A_log.w[h]) * lina_softplusf(*a);
            }
    } else if (mx->kind == LINA_MIXER_GLA) {
        lina_linear_forward(N, D, mx->R, x, mx->gk0.w, NULL, mx->gz);
        lina_linear_forward(N, mx->R, Ck, mx->gz, mx->gk1.w, mx->gk1_b.w, mx->gl);
        for (size_t i = 0; i < (size_t)N * Ck; i++)
            mx->g[i] = lina_logsigmoidf(mx->gl[i]) / GLA_GATE_NORMALIZER;
    } else if (mx->gate == LINA_GATE_CONST) {
        g = mx->const_g;
    }
    lina_attn_desc d = lina_mixer_attn_desc(mx, B, T);
    if (st && T == 1) {
        TRY(lina_attn_step(ctx, &d, mx->q, mx->k, mx->v, g, mx->beta ? mx->beta_v : NULL, st->S,
                           mx->o));
    } else {
        lina_attn_fwd_args a = {mx->q, mx->k, mx->v, g, mx->beta ? mx->beta_v : NULL,
                                st ? st->S : NULL, mx->o, st ? st->S : NULL};
        TRY(lina_attn_forward(ctx, &d, &a));
    }
    if (mx->out_gate) lina_linear_forward(N, D, Cv, x, mx->g_proj.w, NULL, mx->z);
    lina_gated_rmsnorm_forward(N * H, V, mx->o, mx->out_gate ? mx->z : NULL, mx->o_norm.w, mx->eps,
                               mx->y, mx->orstd, mx->threads);
    lina_linear_forward(N, Cv, D, mx->y, mx->o_proj.w, NULL, out);
    return LINA_OK;
}

lina_status lina_mixer_linear_backward(lina_mixer *mx, lina_ctx *ctx, const float *dout, float *dx) {
    int B = mx->B, T = mx->T, N = B * T, D = mx->D, H = mx->H, K = mx->K, V = mx->V;
    int Ck = H * K, Cv = H * V, hgrn = mx->kind == LINA_MIXER_HGRN2;
    const float *x = mx->x;
    float *t1 = mx->t1, *t2 = mx->t2;
    /* out = y Wo^T -> dy (t1); y = norm(o) [* silu(z)] -> do (t2), dz (dk as scratch) */
    lina_linear_backward(N, Cv, D, mx->y, mx->o_proj.w, dout, t1, 1, mx->o_proj.g, NULL);
    float *dz = mx->dq; /* free until the attention backward */
    lina_gated_rmsnorm_backward(N * H, V, mx->o, mx->out_gate ? mx->z : NULL, mx->o_norm.w,
                                mx->orstd, t1, t2, dz, mx->o_norm.g, mx->threads);
    if (mx->out_gate) lina_linear_backward(N, D, Cv, x, mx->g_proj.w, dz, dx, 0, mx->g_proj.g, NULL);

    lina_attn_desc d = lina_mixer_attn_desc(mx, B, T);
    const float *g = mx->gate == LINA_GATE_CONST ? mx->const_g : mx->g;
    lina_attn_bwd_args a = {mx->q,  mx->k,  mx->v,  mx->gate == LINA_GATE_NONE ? NULL : g,
                            mx->beta ? mx->beta_v : NULL, NULL, t2, NULL, mx->dq, mx->dk, mx->dv,
                            mx->gate == LINA_GATE_NONE ? NULL : mx->dg,
                            mx->beta ? mx->dbeta : NULL, NULL};
    TRY(lina_attn_backward(ctx, &d, &a));

    /* gates */
    if (mx->gate == LINA_GATE_SCALAR) {
        /* g = -exp(A_log) softplus(a): dA_log += dg g, da = dg (-exp(A_log)) sigmoid(a) */
        float *da = t1;
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++) {
                size_t i = (size_t)n * H + h;
                mx->A_log.g[h] += mx->dg[i] * mx->g[i];
                da[i] = mx->dg[i] * -expf(mx->A_log.w[h]) * lina_sigmoidf(mx->a[i]);
                mx->dt_bias.g[h] += da[i];
            }
        lina_linear_backward(N, D, H, x, mx->a_proj.w, da, dx, 0, mx->a_proj.g, NULL);
    } else if (mx->kind == LINA_MIXER_GLA) {
        /* g = logsigmoid(gl) / 16: dgl = dg sigmoid(-gl) / 16 */
        float *dgl = t1, *dgz = t2;
        for (size_t i = 0; i < (size_t)N * Ck; i++)
            dgl[i] = mx->dg[i] * lina_sigmoidf(-mx->gl[i]) / GLA_GATE_NORMALIZER;
        lina_linear_backward(N, mx->R, Ck, mx->gz, mx->gk1.w, dgl, dgz, 1, mx->gk1.g, mx->gk1_b.g);
        lina_linear_backward(N, D, mx->R, x, mx->gk0.w, dgz, dx, 0, mx->gk0.g, NULL);
    }
    if (mx->beta) {
        float *dbl = t1;
        for (int i = 0; i < N * H; i++)
            dbl[i] = mx->dbeta[i] * mx->beta_v[i] * (1.0f - mx->beta_v[i]);
        lina_linear_backward(N, D, H, x, mx->b_proj.w, dbl, dx, 0, mx->b_proj.g, NULL);
    }

    /* q path: dq -> dqs (t1) -> dqp (t2, conv scratch dc in gz/t3) */
    float *dc = mx->gz, *dp = t2;
    TRY(qk_finish_backward(mx, ctx, mx->qs, mx->q, mx->rq, mx->dq, t1, 0));
    activate_backward(mx, Ck, mx->qp, mx->qc, &mx->q_conv, t1, dc, dp, mx->silu_q);
    lina_linear_backward(N, D, Ck, x, mx->q_proj.w, dp, dx, 0, mx->q_proj.g, NULL);
    /* k path */
    if (hgrn) {
        /* k = sigmoid(-kp), g = logsigmoid(kp): dkp = -dk s(-kp) s(kp) + dg s(-kp) */
        for (size_t i = 0; i < (size_t)N * Ck; i++) {
            float sm = lina_sigmoidf(-mx->kp[i]);
            dp[i] = sm * (mx->dg[i] - mx->dk[i] * (1.0f - sm));
        }
    } else {
        TRY(qk_finish_backward(mx, ctx, mx->ks, mx->k, mx->rk, mx->dk, t1, 1));
        activate_backward(mx, Ck, mx->kp, mx->kc, &mx->k_conv, t1, dc, dp, 0);
    }
    lina_linear_backward(N, D, Ck, x, mx->k_proj.w, dp, dx, 0, mx->k_proj.g, NULL);
    /* v path */
    activate_backward(mx, Cv, mx->vp, mx->vc, &mx->v_conv, mx->dv, dc, dp, 0);
    lina_linear_backward(N, D, Cv, x, mx->v_proj.w, dp, dx, 0, mx->v_proj.g, NULL);
    return LINA_OK;
}
