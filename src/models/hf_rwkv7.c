/* flash-linear-attention RWKV-7 (model_type "rwkv7" / "rwkv7_fla",
 * fla/models/rwkv7/modeling_rwkv7.py, fla/layers/rwkv7.py), written from its
 * published math. D = hidden_size, H heads of hd = head_dim channels (key and
 * value dims both D), LayerNorms with bias (norm_bias):
 *
 *   x = embed(ids);  layer 0 first: x = ln0(x)              (pre_norm, norm_first)
 *   per layer:
 *     h = LN_attn(x);  delta_t = h_{t-1} - h_t  (h_{-1}: the carried token-shift state)
 *     x_c = h + delta * mu_c  for c in r, w, k, v, a, g
 *     r, k, v = Wr x_r, Wk x_k, Wv x_v
 *     logw = -e^{-1/2} sigmoid(W2 tanh(W1 x_w) + b)          (log-decay in (-0.61, 0))
 *     layer 0: v_first = v;  else v += (v_first - v) sigmoid(V2 V1 x_v + b)
 *     a = sigmoid(A2 A1 x_a + b);  g = G2 sigmoid(G1 x_g)
 *     kk = normalize_per_head(k * k_k);  k = k (1 + (a - 1) k_a)
 *          (fuse_norm: k / sqrt(|k|^2 + 1e-6) as fla's l2_norm; else F.normalize)
 *     o = DPLR(r, logw, k, v, a = -kk, b = kk * a), scale 1    (lina/dplr.h)
 *     o = (GroupNorm_H(o) [eps = hd norm_eps] + sum_head(r k r_k) v) * g;  x += Wo o
 *     h = LN_ffn(x);  x += Wvalue relu(Wkey (h + delta_h mu_k))^2    (own token shift)
 *   logits = lm_head(LN(x))
 * Version-1 checkpoints (one packed attn.x_x) load too, as fla migrates them.
 * State per layer: the DPLR state (B, H, hd, hd) in S, the attention and FFN
 * token-shift rows (B, D) in conv_q and conv_k. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "hf_internal.h"
#include "lina/dplr.h"


typedef struct {
    const float *pre_w, *pre_b, *attn_w, *attn_b, *ffn_w, *ffn_b; /* LayerNorms (D); biases NULL without norm_bias */
    const float *mu[6];                                            /* x_r x_w x_k x_v x_a x_g (D) */
    const float *k_k, *k_a, *r_k;                                  /* (D), (D), (H, hd) */
    const float *Wr, *Wk, *Wv, *Wo;                                /* (D, D) */
    const float *w1, *w2, *wb, *a1, *a2, *ab, *v1, *v2, *vb, *g1, *g2; /* LoRAs: (rank, D), (D, rank), (D) */
    const float *gn_w, *gn_b;                                      /* GroupNorm (D) */
    const float *ffn_mu, *Wkey, *Wval;                             /* (D), (I, D), (D, I) */
} rwkv7_layer;

struct hf_rwkv7_model {
    int rank_w, rank_a, rank_v, rank_g;
    int norm_bias, norm_first;
    int fuse_norm; /* kk: fla l2_norm x / sqrt(|x|^2 + 1e-6) (true) or F.normalize x / max(|x|, 1e-12) */
    const float *norm_f_b; /* final LayerNorm bias or NULL */
    rwkv7_layer *layers;   /* (L), in the same allocation */
};

/* The block is owned by m->bufs (freed with the weights by lina_hf_free). */
static lina_status keep(lina_hf_model *m, void *p) {
    if (m->n_bufs == m->cap_bufs) {
        int cap = m->cap_bufs ? 2 * m->cap_bufs : 64;
        float **b = realloc(m->bufs, (size_t)cap * sizeof *b);
        if (!b) return lina_fail(LINA_ERR_OOM, "out of memory");
        m->bufs = b;
        m->cap_bufs = cap;
    }
    m->bufs[m->n_bufs++] = p;
    return LINA_OK;
}

/* fla RWKV7Attention's default LoRA width when the config gives null:
 * max(32, round(mult sqrt(D) factor / 32) * 32), Python's round (half to even). */
static int default_rank(double mult, int D, double factor) {
    int r = (int)nearbyint(mult * sqrt((double)D) * factor / 32.0) * 32;
    return r < 32 ? 32 : r;
}

static lina_status rank_of(const cJSON *cfg, const char *path, const char *key, double mult, int D, double factor,
                           int *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (j && cJSON_IsNull(j)) {
        *out = default_rank(mult, D, factor);
        return LINA_OK;
    }
    TRY(hf_cfg_int(cfg, path, key, 0, *out, out));
    if (*out < 1) return lina_fail(LINA_ERR_FORMAT, "'%s': field '%s' = %d must be >= 1", path, key, *out);
    return LINA_OK;
}

lina_status hf_rwkv7_parse(lina_hf_model *m, const cJSON *cfg, const char *path) {
    int D = m->D, hd, heads;
    TRY(hf_cfg_int(cfg, path, "head_dim", 0, 64, &hd));
    TRY(hf_cfg_int(cfg, path, "num_heads", 0, 0, &heads));
    const cJSON *hj = cJSON_GetObjectItemCaseSensitive(cfg, "head_dim");
    if (hj && cJSON_IsNull(hj)) { /* head_dim null: from num_heads */
        if (heads < 1) return lina_fail(LINA_ERR_FORMAT, "'%s': head_dim is null and num_heads = %d", path, heads);
        hd = D / heads;
    }
    if (hd < 1 || D % hd)
        return lina_fail(LINA_ERR_FORMAT, "'%s': head_dim = %d must divide hidden_size = %d", path, hd, D);
    m->Kh = m->Vh = hd;
    m->H = m->Hkv = m->HV = D / hd;
    const cJSON *vd = cJSON_GetObjectItemCaseSensitive(cfg, "value_dim");
    if (vd && !cJSON_IsNull(vd)) {
        int n = cJSON_IsArray(vd) ? cJSON_GetArraySize(vd) : 1;
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_IsArray(vd) ? cJSON_GetArrayItem(vd, i) : vd;
            if (!cJSON_IsNumber(e) || (int)e->valuedouble != D)
                return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': value_dim must equal hidden_size = %d", path, D);
        }
    }
    const cJSON *attn = cJSON_GetObjectItemCaseSensitive(cfg, "attn");
    if (attn && !cJSON_IsNull(attn))
        return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': field 'attn' (hybrid softmax layers) is set; only null is supported",
                         path);
    const char *act;
    TRY(hf_cfg_str(cfg, path, "hidden_act", "sqrelu", &act));
    if (strcmp(act, "sqrelu"))
        return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': hidden_act '%s' is not supported (sqrelu only)", path, act);
    int inter;
    double ratio;
    TRY(hf_cfg_float(cfg, path, "hidden_ratio", 0, 4.0, &ratio));
    TRY(hf_cfg_int(cfg, path, "intermediate_size", 0, 0, &inter));
    if (inter <= 0) { /* RWKV7FeedForward: int(D * hidden_ratio) rounded up to a multiple of 32 */
        if (!(ratio > 0 && ratio < 1e6))
            return lina_fail(LINA_ERR_FORMAT, "'%s': hidden_ratio = %g must be > 0", path, ratio);
        inter = 32 * (((int)(D * ratio) + 31) / 32);
    }
    if (inter < 1) return lina_fail(LINA_ERR_FORMAT, "'%s': intermediate_size = %d must be >= 1", path, inter);
    m->I_mlp = inter;
    double eps;
    TRY(hf_cfg_float(cfg, path, "norm_eps", 0, 1e-5, &eps));
    m->norm_eps = (float)eps;

    size_t bytes = sizeof(struct hf_rwkv7_model) + (size_t)m->L * sizeof(rwkv7_layer);
    struct hf_rwkv7_model *r = calloc(1, bytes);
    if (!r || keep(m, r)) {
        free(r);
        return lina_fail(LINA_ERR_OOM, "'%s': out of memory for %d RWKV-7 layers", path, m->L);
    }
    r->layers = (rwkv7_layer *)(r + 1);
    m->rwkv7 = r;
    double factor = hd / 64.0;
    r->rank_w = 64, r->rank_a = 64, r->rank_v = 16, r->rank_g = 128; /* RWKV7Config defaults */
    TRY(rank_of(cfg, path, "decay_low_rank_dim", 2.5, D, factor, &r->rank_w));
    TRY(rank_of(cfg, path, "a_low_rank_dim", 2.5, D, factor, &r->rank_a));
    TRY(rank_of(cfg, path, "v_low_rank_dim", 1.7, D, factor, &r->rank_v));
    TRY(rank_of(cfg, path, "gate_low_rank_dim", 5.0, D, 1.0, &r->rank_g));
    TRY(hf_cfg_bool(cfg, path, "norm_bias", 1, &r->norm_bias));
    TRY(hf_cfg_bool(cfg, path, "norm_first", 1, &r->norm_first));
    TRY(hf_cfg_bool(cfg, path, "fuse_norm", 1, &r->fuse_norm));
    m->conv_size = 2; /* the token shift is a width-2 history (for lina_hf_state_reset's generic path) */
    return LINA_OK;
}

static lina_status get(hf_weights *w, lina_hf_model *m, int l, const char *suffix, int ndim, int64_t d0, int64_t d1,
                       int64_t d2, int required, const float **out) {
    char name[256];
    if (l >= 0) snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);
    else snprintf(name, sizeof name, "model.%s", suffix);
    int64_t shape[3] = {d0, d1, d2};
    return hf_weights_get(w, m, name, ndim, shape, required, out);
}

static lina_status get_norm(hf_weights *w, lina_hf_model *m, int l, const char *which, const float **wt,
                            const float **b) {
    char n[64];
    snprintf(n, sizeof n, "%s.weight", which);
    TRY(get(w, m, l, n, 1, m->D, 0, 0, 1, wt));
    *b = NULL;
    if (!m->rwkv7->norm_bias) return LINA_OK;
    snprintf(n, sizeof n, "%s.bias", which);
    return get(w, m, l, n, 1, m->D, 0, 0, 1, b);
}

static lina_status get_lora(hf_weights *w, lina_hf_model *m, int l, char c, int rank, int bias, const float **w1,
                            const float **w2, const float **b) {
    char n[64];
    snprintf(n, sizeof n, "attn.%c_lora.lora.0.weight", c);
    TRY(get(w, m, l, n, 2, rank, m->D, 0, 1, w1));
    snprintf(n, sizeof n, "attn.%c_lora.lora.2.weight", c);
    TRY(get(w, m, l, n, 2, m->D, rank, 0, 1, w2));
    if (!bias) return LINA_OK;
    snprintf(n, sizeof n, "attn.%c_lora.lora.2.bias", c);
    return get(w, m, l, n, 1, m->D, 0, 0, 1, b);
}

lina_status hf_rwkv7_load_layer(lina_hf_model *m, hf_weights *w, int l) {
    struct hf_rwkv7_model *r = m->rwkv7;
    rwkv7_layer *L = &r->layers[l];
    int D = m->D;
    if (l == 0 && r->norm_bias) TRY(get(w, m, -1, "norm.bias", 1, D, 0, 0, 1, &r->norm_f_b));
    if (l == 0 && r->norm_first) TRY(get_norm(w, m, l, "pre_norm", &L->pre_w, &L->pre_b));
    TRY(get_norm(w, m, l, "attn_norm", &L->attn_w, &L->attn_b));
    TRY(get_norm(w, m, l, "ffn_norm", &L->ffn_w, &L->ffn_b));
    static const char mix[6] = {'r', 'w', 'k', 'v', 'a', 'g'};
    const float *packed = NULL; /* version-1 checkpoints: attn.x_x (6, 1, 1, D) packs x_r..x_g */
    char xname[64];
    snprintf(xname, sizeof xname, "model.layers.%d.attn.x_x", l);
    if (hf_weights_has(w, xname)) {
        int64_t shape[4] = {6, 1, 1, D};
        TRY(hf_weights_get(w, m, xname, 4, shape, 1, &packed));
    }
    for (int i = 0; i < 6; i++) {
        char n[32];
        snprintf(n, sizeof n, "attn.x_%c", mix[i]);
        if (packed) L->mu[i] = packed + (size_t)i * D;
        else TRY(get(w, m, l, n, 3, 1, 1, D, 1, &L->mu[i]));
    }
    TRY(get(w, m, l, "attn.k_k", 1, D, 0, 0, 1, &L->k_k));
    TRY(get(w, m, l, "attn.k_a", 1, D, 0, 0, 1, &L->k_a));
    TRY(get(w, m, l, "attn.r_k", 2, m->H, m->Kh, 0, 1, &L->r_k));
    TRY(get(w, m, l, "attn.r_proj.weight", 2, D, D, 0, 1, &L->Wr));
    TRY(get(w, m, l, "attn.k_proj.weight", 2, D, D, 0, 1, &L->Wk));
    TRY(get(w, m, l, "attn.v_proj.weight", 2, D, D, 0, 1, &L->Wv));
    TRY(get(w, m, l, "attn.o_proj.weight", 2, D, D, 0, 1, &L->Wo));
    TRY(get_lora(w, m, l, 'w', r->rank_w, 1, &L->w1, &L->w2, &L->wb));
    TRY(get_lora(w, m, l, 'a', r->rank_a, 1, &L->a1, &L->a2, &L->ab));
    if (l > 0) TRY(get_lora(w, m, l, 'v', r->rank_v, 1, &L->v1, &L->v2, &L->vb));
    TRY(get_lora(w, m, l, 'g', r->rank_g, 0, &L->g1, &L->g2, NULL));
    TRY(get(w, m, l, "attn.g_norm.weight", 1, D, 0, 0, 1, &L->gn_w));
    TRY(get(w, m, l, "attn.g_norm.bias", 1, D, 0, 0, 1, &L->gn_b));
    TRY(get(w, m, l, "ffn.x_k", 1, D, 0, 0, 1, &L->ffn_mu));
    TRY(get(w, m, l, "ffn.key.weight", 2, m->I_mlp, D, 0, 1, &L->Wkey));
    TRY(get(w, m, l, "ffn.value.weight", 2, D, m->I_mlp, 0, 1, &L->Wval));
    return LINA_OK;
}

lina_status hf_rwkv7_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st) {
    st->n_S = (size_t)B * m->H * m->Kh * m->Vh;
    st->n_conv_q = st->n_conv_k = (size_t)B * m->D;
    st->S = calloc(st->n_S, sizeof(float));
    st->conv_q = calloc(st->n_conv_q, sizeof(float));
    st->conv_k = calloc(st->n_conv_k, sizeof(float));
    if (!st->S || !st->conv_q || !st->conv_k) return lina_fail(LINA_ERR_OOM, "hf state: out of memory");
    return LINA_OK;
}

/* y = (x - mean) / sqrt(var + eps) * w [+ b] over rows of n; y may alias x. */
static void layernorm(size_t rows, int n, const float *x, const float *w, const float *b, float eps, float *y) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double mean = 0, var = 0;
        for (int i = 0; i < n; i++) mean += xr[i];
        mean /= n;
        for (int i = 0; i < n; i++) var += (xr[i] - mean) * (xr[i] - mean);
        float inv = (float)(1.0 / sqrt(var / n + eps));
        for (int i = 0; i < n; i++) {
            float v = (float)(xr[i] - mean) * inv;
            if (w) v *= w[i];
            if (b) v += b[i];
            yr[i] = v;
        }
    }
}

/* delta (B, T, D) = h_{t-1} - h_t with h_{-1} = prev (B, D); prev becomes h_{T-1}. */
static void token_shift(int B, int T, int D, const float *h, float *prev, float *delta) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *cur = h + ((size_t)b * T + t) * D;
            const float *p = t ? cur - D : prev + (size_t)b * D;
            float *d = delta + ((size_t)b * T + t) * D;
            for (int i = 0; i < D; i++) d[i] = p[i] - cur[i];
        }
        memcpy(prev + (size_t)b * D, h + ((size_t)b * T + T - 1) * D, sizeof(float) * D);
    }
}

/* y (N, D) = W2 act(W1 x) [+ b]; act 0 none, 1 tanh, 2 sigmoid; tmp (N, rank). */
static void lora(size_t N, int D, int rank, const float *x, const float *W1, const float *W2, const float *b, int act,
                 float *tmp, float *y) {
    hf_linear((int)N, D, rank, x, W1, NULL, tmp);
    if (act)
        for (size_t i = 0; i < N * rank; i++) tmp[i] = act == 1 ? tanhf(tmp[i]) : hf_sigmoid(tmp[i]);
    hf_linear((int)N, rank, D, tmp, W2, b, y);
}

typedef struct {
    float *h, *delta, *xc, *r, *k, *v, *w, *a, *g, *kk, *aa, *bb, *o, *vfirst, *tmp, *ffn;
} rwkv7_bufs;

/* The time mix of layer l: x += Wo ((GroupNorm(DPLR) + bonus) * g). */
static lina_status time_mix(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                            rwkv7_bufs *u, float *x) {
    const struct hf_rwkv7_model *R = m->rwkv7;
    const rwkv7_layer *L = &R->layers[l];
    size_t N = (size_t)B * T;
    int D = m->D, H = m->H, hd = m->Kh;
    layernorm(N, D, x, L->attn_w, L->attn_b, m->norm_eps, u->h);
    token_shift(B, T, D, u->h, st->conv_q, u->delta);
    for (int c = 0; c < 6; c++) { /* x_c = h + delta mu_c, projected */
        for (size_t i = 0; i < N * D; i++) u->xc[i] = u->h[i] + u->delta[i] * L->mu[c][i % D];
        switch (c) {
        case 0: hf_linear((int)N, D, D, u->xc, L->Wr, NULL, u->r); break;
        case 1: lora(N, D, R->rank_w, u->xc, L->w1, L->w2, L->wb, 1, u->tmp, u->w); break;
        case 2: hf_linear((int)N, D, D, u->xc, L->Wk, NULL, u->k); break;
        case 3:
            hf_linear((int)N, D, D, u->xc, L->Wv, NULL, u->v);
            if (l == 0) {
                memcpy(u->vfirst, u->v, sizeof(float) * N * D);
            } else { /* v = lerp(v, v_first, sigmoid(lora_v)) */
                lora(N, D, R->rank_v, u->xc, L->v1, L->v2, L->vb, 0, u->tmp, u->o);
                for (size_t i = 0; i < N * D; i++) u->v[i] += (u->vfirst[i] - u->v[i]) * hf_sigmoid(u->o[i]);
            }
            break;
        case 4: lora(N, D, R->rank_a, u->xc, L->a1, L->a2, L->ab, 0, u->tmp, u->a); break;
        default: lora(N, D, R->rank_g, u->xc, L->g1, L->g2, NULL, 2, u->tmp, u->g); break;
        }
    }
    for (size_t i = 0; i < N * D; i++) {
        u->w[i] = -0.6065306597126334f * hf_sigmoid(u->w[i]);
        u->a[i] = hf_sigmoid(u->a[i]);
    }
    for (size_t row = 0; row < N * H; row++) { /* kk = normalize(k k_k) per head; k = k (1 + (a-1) k_a) */
        size_t o = row * hd;
        int c0 = (int)(o % D);
        double n2 = 0;
        for (int i = 0; i < hd; i++) {
            float z = u->k[o + i] * L->k_k[c0 + i];
            u->kk[o + i] = z;
            n2 += (double)z * z;
        }
        float inv = R->fuse_norm ? (float)(1.0 / sqrt(n2 + 1e-6)) : 1.0f / fmaxf((float)sqrt(n2), 1e-12f);
        for (int i = 0; i < hd; i++) {
            float kk = u->kk[o + i] * inv;
            u->aa[o + i] = -kk;
            u->bb[o + i] = kk * u->a[o + i];
            u->k[o + i] *= 1.0f + (u->a[o + i] - 1.0f) * L->k_a[c0 + i];
        }
    }
    lina_dplr_desc d = lina_dplr_desc_default();
    d.B = B, d.T = T, d.H = H, d.K = hd, d.V = hd, d.scale = 1.0f, d.form = LINA_FORM_CHUNK;
    lina_status s;
    if (T == 1) {
        s = lina_dplr_step(ctx, &d, u->r, u->k, u->v, u->aa, u->bb, u->w, st->S, u->o);
    } else {
        lina_dplr_fwd_args a = {u->r, u->k, u->v, u->aa, u->bb, u->w, st->S, u->o, st->S};
        s = lina_dplr_forward(ctx, &d, &a);
    }
    TRY(s);
    float eps = (float)hd * m->norm_eps;
    for (size_t row = 0; row < N * H; row++) { /* GroupNorm per head, bonus, gate */
        size_t o = row * hd;
        int c0 = (int)(o % D), h = c0 / hd;
        layernorm(1, hd, u->o + o, L->gn_w + c0, L->gn_b + c0, eps, u->o + o);
        double bonus = 0;
        for (int i = 0; i < hd; i++) bonus += (double)u->r[o + i] * u->k[o + i] * L->r_k[h * hd + i];
        for (int i = 0; i < hd; i++) u->o[o + i] = (u->o[o + i] + (float)bonus * u->v[o + i]) * u->g[o + i];
    }
    hf_linear((int)N, D, D, u->o, L->Wo, NULL, u->h);
    for (size_t i = 0; i < N * D; i++) x[i] += u->h[i];
    return LINA_OK;
}

/* The channel mix: x += Wvalue relu(Wkey (h + delta mu_k))^2, h = LN_ffn(x). */
static void channel_mix(const lina_hf_model *m, int l, hf_layer_state *st, int B, int T, rwkv7_bufs *u, float *x) {
    const rwkv7_layer *L = &m->rwkv7->layers[l];
    size_t N = (size_t)B * T;
    int D = m->D, I = m->I_mlp;
    layernorm(N, D, x, L->ffn_w, L->ffn_b, m->norm_eps, u->h);
    token_shift(B, T, D, u->h, st->conv_k, u->delta);
    for (size_t i = 0; i < N * D; i++) u->xc[i] = u->h[i] + u->delta[i] * L->ffn_mu[i % D];
    hf_linear((int)N, D, I, u->xc, L->Wkey, NULL, u->ffn);
    for (size_t i = 0; i < N * I; i++) {
        float z = u->ffn[i] > 0 ? u->ffn[i] : 0.0f;
        u->ffn[i] = z * z;
    }
    hf_linear((int)N, I, D, u->ffn, L->Wval, NULL, u->h);
    for (size_t i = 0; i < N * D; i++) x[i] += u->h[i];
}

lina_status hf_rwkv7_forward(lina_ctx *ctx, const lina_hf_model *m, lina_hf_state *s, int B, int T,
                             const int64_t *ids, float *logits, int last_only) {
    const struct hf_rwkv7_model *R = m->rwkv7;
    size_t N = (size_t)B * T, D = (size_t)m->D;
    int rmax = R->rank_w;
    if (R->rank_a > rmax) rmax = R->rank_a;
    if (R->rank_v > rmax) rmax = R->rank_v;
    if (R->rank_g > rmax) rmax = R->rank_g;
    size_t total = 15 * N * D + N * (size_t)rmax + N * (size_t)m->I_mlp;
    float *mem = malloc(total * sizeof(float));
    if (!mem) return lina_fail(LINA_ERR_OOM, "lina_hf_forward: out of memory for B*T = %zu tokens", N);
    float *x = mem, *p = mem + N * D;
    rwkv7_bufs u;
    float **slots[14] = {&u.h, &u.delta, &u.xc, &u.r, &u.k, &u.v, &u.w, &u.a, &u.g, &u.kk, &u.aa, &u.bb, &u.o, &u.vfirst};
    for (int i = 0; i < 14; i++, p += N * D) *slots[i] = p;
    u.tmp = p;
    p += N * (size_t)rmax;
    u.ffn = p;
    for (size_t r = 0; r < N; r++) memcpy(x + r * D, m->embed + (size_t)ids[r] * D, D * sizeof *x);
    lina_status st = LINA_OK;
    if (T == 1 && B <= 4 && s->step_ctx) ctx = s->step_ctx;
    for (int l = 0; l < m->L && !st; l++) {
        const rwkv7_layer *L = &R->layers[l];
        if (l == 0 && L->pre_w) layernorm(N, (int)D, x, L->pre_w, L->pre_b, m->norm_eps, x);
        st = time_mix(ctx, m, l, &s->layers[l], B, T, &u, x);
        if (!st) channel_mix(m, l, &s->layers[l], B, T, &u, x);
    }
    if (!st && logits) {
        float *xn = u.h;
        if (last_only) {
            for (int b = 0; b < B; b++) memcpy(xn + b * D, x + ((size_t)b * T + T - 1) * D, D * sizeof *x);
            layernorm((size_t)B, (int)D, xn, m->norm_f, R->norm_f_b, m->norm_eps, xn);
            hf_linear(B, (int)D, m->vocab, xn, m->lm_head, NULL, logits);
        } else {
            layernorm(N, (int)D, x, m->norm_f, R->norm_f_b, m->norm_eps, xn);
            hf_linear((int)N, (int)D, m->vocab, xn, m->lm_head, NULL, logits);
        }
    }
    free(mem);
    return st;
}
