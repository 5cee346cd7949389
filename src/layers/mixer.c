/* Token mixers: declare each kind's tensors (fla names and shapes), dispatch
 * forward/backward to the linear family or softmax attention, and manage the
 * per-sequence decoding state. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "mixer.h"

static const char *const mixer_names[LINA_MIXER_COUNT] = {
    "gated_deltanet", "softmax", "deltanet", "gla",      "mamba2",
    "retnet",         "linear",  "hgrn2",    "cosformer", "performer", "hedgehog"};

const char *lina_mixer_name(lina_mixer_kind k) {
    return (unsigned)k < LINA_MIXER_COUNT ? mixer_names[k] : "unknown";
}

int lina_mixer_parse(const char *name) {
    for (int i = 0; i < LINA_MIXER_COUNT; i++)
        if (name && !strcmp(name, mixer_names[i])) return i;
    if (name && (!strcmp(name, "gdn") || !strcmp(name, "gated_delta_net"))) return LINA_MIXER_GATED_DELTANET;
    if (name && (!strcmp(name, "attn") || !strcmp(name, "attention"))) return LINA_MIXER_SOFTMAX;
    if (name && (!strcmp(name, "delta_net"))) return LINA_MIXER_DELTANET;
    if (name && (!strcmp(name, "simple_gla"))) return LINA_MIXER_MAMBA2;
    if (name && (!strcmp(name, "linear_attn"))) return LINA_MIXER_LINEAR;
    if (name && (!strcmp(name, "favor"))) return LINA_MIXER_PERFORMER;
    return -1;
}

static void declare(lina_param_registry *r, const char *prefix, const char *name, int ndim,
                    int64_t d0, int64_t d1, int64_t d2, int decays, lina_init_kind init,
                    lina_param *slot) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    int64_t shape[3] = {d0, d1, d2};
    lina_param_declare(r, full, ndim, shape, decays, init, slot);
}

static lina_fmap_kind k_fmap(lina_mixer_kind k) {
    return k == LINA_MIXER_COSFORMER   ? LINA_FMAP_COSFORMER
           : k == LINA_MIXER_PERFORMER ? LINA_FMAP_FAVOR
           : k == LINA_MIXER_HEDGEHOG  ? LINA_FMAP_HEDGEHOG
                                       : LINA_FMAP_ELU1;
}

int lina_init_trained(lina_init_kind init) { return init != LINA_INIT_FAVOR; }

lina_status lina_mixer_init_fmap_tensor(lina_init_kind init, const int64_t *shape, uint64_t seed,
                                        float *w) {
    /* FAVOR W is (M, D), Hedgehog W is (D, M) */
    lina_fmap_kind kind = init == LINA_INIT_FAVOR ? LINA_FMAP_FAVOR : LINA_FMAP_HEDGEHOG;
    if (init != LINA_INIT_FAVOR && init != LINA_INIT_HEDGEHOG)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_mixer_init_fmap_tensor: init kind %d is not a feature map",
                         (int)init);
    lina_fmap_desc d = lina_fmap_desc_default(kind, (int)(kind == LINA_FMAP_FAVOR ? shape[1] : shape[0]));
    d.M = (int)(kind == LINA_FMAP_FAVOR ? shape[0] : shape[1]);
    return lina_fmap_init_params(&d, seed, w);
}

static void set_flags(lina_mixer *mx, int short_conv_all) {
    lina_mixer_kind k = mx->kind;
    int delta = k == LINA_MIXER_GATED_DELTANET || k == LINA_MIXER_DELTANET;
    mx->conv = delta || (short_conv_all && k != LINA_MIXER_HGRN2 && k != LINA_MIXER_SOFTMAX);
    mx->l2 = delta;
    mx->beta = delta;
    mx->rope = k == LINA_MIXER_RETNET || k == LINA_MIXER_SOFTMAX;
    mx->fmap = k == LINA_MIXER_LINEAR || k == LINA_MIXER_COSFORMER || k == LINA_MIXER_PERFORMER ||
               k == LINA_MIXER_HEDGEHOG;
    mx->silu_q = k == LINA_MIXER_HGRN2;
    mx->out_gate = k == LINA_MIXER_GATED_DELTANET || k == LINA_MIXER_GLA ||
                   k == LINA_MIXER_MAMBA2 || k == LINA_MIXER_RETNET;
    mx->gate = (k == LINA_MIXER_GATED_DELTANET || k == LINA_MIXER_MAMBA2) ? LINA_GATE_SCALAR
               : (k == LINA_MIXER_GLA || k == LINA_MIXER_HGRN2)          ? LINA_GATE_VECTOR
               : k == LINA_MIXER_RETNET                                   ? LINA_GATE_CONST
                                                                          : LINA_GATE_NONE;
}

lina_status lina_mixer_create(const lina_model_config *c, int layer, const char *prefix,
                              lina_param_registry *r, lina_mixer **out) {
    lina_mixer *mx = calloc(1, sizeof *mx);
    if (!mx) return lina_fail(LINA_ERR_OOM, "lina_mixer_create: out of memory");
    mx->kind = c->mixer[layer];
    mx->D = c->dim;
    mx->H = c->n_heads;
    mx->K = c->head_k_dim;
    mx->V = c->head_v_dim;
    mx->W = c->conv_size;
    mx->R = c->gate_low_rank;
    mx->max_seq = c->max_seq;
    mx->eps = c->norm_eps;
    mx->theta = c->rope_theta;
    mx->threads = 1;
    set_flags(mx, c->short_conv_all);
    /* feature maps on each head's K-vector; the attention runs on F = out_dim features */
    mx->fd = lina_fmap_desc_default(k_fmap(mx->kind), mx->K);
    if (mx->kind == LINA_MIXER_COSFORMER) mx->fd.M = mx->max_seq; /* fixed horizon: decodable */
    mx->F = mx->fmap ? lina_fmap_out_dim(&mx->fd) : mx->K;
    int D = mx->D, H = mx->H, Ck = H * mx->K, Cv = H * mx->V;
    lina_mixer_kind k = mx->kind;
    int hgrn = k == LINA_MIXER_HGRN2;
    declare(r, prefix, "q_proj.weight", 2, Ck, D, 0, 1, LINA_INIT_NORMAL, &mx->q_proj);
    declare(r, prefix, hgrn ? "f_proj.weight" : "k_proj.weight", 2, Ck, D, 0, 1, LINA_INIT_NORMAL,
            &mx->k_proj);
    declare(r, prefix, hgrn ? "i_proj.weight" : "v_proj.weight", 2, Cv, D, 0, 1, LINA_INIT_NORMAL,
            &mx->v_proj);
    if (mx->beta) declare(r, prefix, "b_proj.weight", 2, H, D, 0, 1, LINA_INIT_NORMAL, &mx->b_proj);
    if (mx->gate == LINA_GATE_SCALAR) {
        declare(r, prefix, "a_proj.weight", 2, H, D, 0, 1, LINA_INIT_NORMAL, &mx->a_proj);
        declare(r, prefix, "A_log", 1, H, 0, 0, 0, LINA_INIT_A_LOG, &mx->A_log);
        declare(r, prefix, "dt_bias", 1, H, 0, 0, 0, LINA_INIT_DT_BIAS, &mx->dt_bias);
    }
    if (k == LINA_MIXER_GLA) {
        declare(r, prefix, "gk_proj.0.weight", 2, mx->R, D, 0, 1, LINA_INIT_NORMAL, &mx->gk0);
        declare(r, prefix, "gk_proj.1.weight", 2, Ck, mx->R, 0, 1, LINA_INIT_NORMAL, &mx->gk1);
        declare(r, prefix, "gk_proj.1.bias", 1, Ck, 0, 0, 0, LINA_INIT_ZEROS, &mx->gk1_b);
    }
    if (mx->conv) {
        declare(r, prefix, "q_conv1d.weight", 3, Ck, 1, mx->W, 0, LINA_INIT_CONV, &mx->q_conv);
        declare(r, prefix, "k_conv1d.weight", 3, Ck, 1, mx->W, 0, LINA_INIT_CONV, &mx->k_conv);
        declare(r, prefix, "v_conv1d.weight", 3, Cv, 1, mx->W, 0, LINA_INIT_CONV, &mx->v_conv);
    }
    if (k == LINA_MIXER_PERFORMER) /* one fixed random projection per layer, shared by q, k and heads */
        declare(r, prefix, "favor_proj.weight", 2, mx->fd.M, mx->K, 0, 0, LINA_INIT_FAVOR, &mx->fmap_q);
    if (k == LINA_MIXER_HEDGEHOG) { /* z = x W per head (shared by the heads), one map for q, one for k */
        declare(r, prefix, "feature_map_q.weight", 2, mx->K, mx->fd.M, 0, 0, LINA_INIT_HEDGEHOG, &mx->fmap_q);
        declare(r, prefix, "feature_map_k.weight", 2, mx->K, mx->fd.M, 0, 0, LINA_INIT_HEDGEHOG, &mx->fmap_k);
    }
    if (mx->out_gate) declare(r, prefix, "g_proj.weight", 2, Cv, D, 0, 1, LINA_INIT_NORMAL, &mx->g_proj);
    if (k != LINA_MIXER_SOFTMAX) {
        const char *norm = (k == LINA_MIXER_GLA || k == LINA_MIXER_RETNET) ? "g_norm_swish_gate.weight"
                           : mx->fmap                                      ? "norm.weight"
                           : hgrn                                          ? "g_norm.weight"
                                                                           : "o_norm.weight";
        declare(r, prefix, norm, 1, mx->V, 0, 0, 0, LINA_INIT_ONES, &mx->o_norm);
    }
    declare(r, prefix, "o_proj.weight", 2, D, Cv, 0, 1, LINA_INIT_NORMAL, &mx->o_proj);
    if (mx->gate == LINA_GATE_CONST) {
        mx->const_g = malloc(sizeof(float) * H);
        if (!mx->const_g) {
            free(mx);
            return lina_fail(LINA_ERR_OOM, "lina_mixer_create: out of memory");
        }
        /* RetNet: gamma_h = 1 - 2^(-5-h) */
        for (int h = 0; h < H; h++) mx->const_g[h] = (float)log1p(-pow(2.0, -5.0 - h));
    }
    *out = mx;
    return LINA_OK;
}

void lina_mixer_free(lina_mixer *mx) {
    if (!mx) return;
    free(mx->buf);
    free(mx->const_g);
    free(mx->scores);
    free(mx->pos);
    free(mx);
}

lina_status lina_mixer_forward(lina_mixer *mx, lina_ctx *ctx, int B, int T, const float *x,
                               float *out, lina_mixer_state *st, int pos0) {
    mx->threads = lina_ctx_threads(ctx);
    if (mx->threads < 1) mx->threads = 1;
    if (mx->kind == LINA_MIXER_SOFTMAX)
        return lina_mixer_softmax_forward(mx, ctx, B, T, x, out, st, pos0);
    return lina_mixer_linear_forward(mx, ctx, B, T, x, out, st, pos0);
}

lina_status lina_mixer_backward(lina_mixer *mx, lina_ctx *ctx, const float *dout, float *dx) {
    mx->threads = lina_ctx_threads(ctx);
    if (mx->threads < 1) mx->threads = 1;
    if (mx->kind == LINA_MIXER_SOFTMAX) return lina_mixer_softmax_backward(mx, ctx, dout, dx);
    return lina_mixer_linear_backward(mx, ctx, dout, dx);
}

lina_status lina_mixer_state_init(const lina_mixer *mx, lina_mixer_state *st) {
    memset(st, 0, sizeof *st);
    size_t n;
    if (mx->kind == LINA_MIXER_SOFTMAX) {
        n = (size_t)mx->max_seq * mx->H * (mx->K + mx->V);
        st->kc = calloc(n ? n : 1, sizeof(float));
        if (!st->kc) return lina_fail(LINA_ERR_OOM, "decoding state: out of memory (%zu floats)", n);
        st->vc = st->kc + (size_t)mx->max_seq * mx->H * mx->K;
    } else {
        size_t cols = mx->V + (mx->fmap ? 1 : 0);
        size_t s = (size_t)mx->H * mx->F * cols;
        size_t hist = mx->conv ? (size_t)(mx->W - 1) * mx->H * (2 * mx->K + mx->V) : 0;
        n = s + hist;
        st->S = calloc(n ? n : 1, sizeof(float));
        if (!st->S) return lina_fail(LINA_ERR_OOM, "decoding state: out of memory (%zu floats)", n);
        if (mx->conv) {
            st->hq = st->S + s;
            st->hk = st->hq + (size_t)(mx->W - 1) * mx->H * mx->K;
            st->hv = st->hk + (size_t)(mx->W - 1) * mx->H * mx->K;
        }
    }
    st->n_floats = n;
    return LINA_OK;
}

void lina_mixer_state_free(lina_mixer_state *st) {
    if (!st) return;
    free(st->S ? st->S : st->kc);
    memset(st, 0, sizeof *st);
}

float *lina_mixer_state_data(lina_mixer_state *st) { return st->S ? st->S : st->kc; }

lina_status lina_mixer_state_copy(const lina_mixer_state *src, lina_mixer_state *dst) {
    if (dst->n_floats != src->n_floats)
        return lina_fail(LINA_ERR_INVALID_ARG, "state copy: sizes differ (%zu vs %zu floats)",
                         src->n_floats, dst->n_floats);
    memcpy(lina_mixer_state_data(dst), src->S ? src->S : src->kc, sizeof(float) * src->n_floats);
    dst->len = src->len;
    return LINA_OK;
}
