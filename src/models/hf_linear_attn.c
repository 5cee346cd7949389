/* flash-linear-attention LinearAttention token mixer (model_type "linear_attn",
 * fla/layers/linear_attn.py with fla/modules/feature_map.py), written from its math.
 *
 * H query heads, Hkv = num_kv_heads key/value heads (query head h reads h / (H / Hkv)),
 * Kh = D expand_k / H, Vh = D expand_v / H:
 *   q, k, v = x Wq, x Wk, x Wv
 *   q, k    = phi_q(q), phi_k(k) per head, Kh -> Kf channels:
 *     identity, relu, elu (elu(x) + 1), elementwise_product (x A1^T + a1) * (x A2^T + a2),
 *     t2r relu(x A^T), hedgehog softmax([2 y, -2 y]) with y = x A^T + a (Kf = 2 Kh),
 *     dpfp (nu = 4): x' = [relu(x), relu(-x)], y[(j-1) 2Kh + i] = x'_i x'_{(i - j) mod 2Kh} (Kf = 8 Kh)
 *   q, k    = q / (sum q + 1e-4), k / (sum k + 1e-4)       (norm_q / norm_k)
 *   S_t     = S_{t-1} + k_t v_t^T,  o_t = Kf^-1/2 S_t^T q_t
 *             [/ (Kf^-1/2 q_t . z_t + 1e-10), z_t = z_{t-1} + k_t   with norm_feature_map]
 *   out     = RMSNorm_Vh(o) [* w] Wo
 * In lina's terms: no gate, ADD update, normalize with eps 1e-10. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "hf_internal.h"

typedef enum { LA_IDENTITY, LA_RELU, LA_ELU1, LA_HADAMARD, LA_T2R, LA_HEDGEHOG, LA_DPFP } hf_la_fmap;

#define DPFP_NU 4 /* fla's DPFPFeatureMap default; LinearAttention never overrides it */


lina_status hf_la_parse(lina_hf_model *m, const cJSON *cfg, const char *path) {
    double ek, ev, eps;
    TRY(hf_cfg_int(cfg, path, "num_heads", 0, 4, &m->H));
    if (m->H < 1) return lina_fail(LINA_ERR_FORMAT, "'%s': field 'num_heads' = %d must be >= 1", path, m->H);
    TRY(hf_cfg_int(cfg, path, "num_kv_heads", 0, m->H, &m->Hkv));
    if (m->Hkv < 1 || m->H % m->Hkv)
        return lina_fail(LINA_ERR_FORMAT, "'%s': num_kv_heads = %d must divide num_heads = %d", path, m->Hkv, m->H);
    TRY(hf_cfg_float(cfg, path, "expand_k", 0, 1.0, &ek));
    TRY(hf_cfg_float(cfg, path, "expand_v", 0, 1.0, &ev));
    int key_dim = (int)(m->D * ek), value_dim = (int)(m->D * ev);
    if (key_dim < m->H || key_dim % m->H || value_dim < m->H || value_dim % m->H)
        return lina_fail(LINA_ERR_FORMAT,
                         "'%s': key dim %d / value dim %d (expand_k %g, expand_v %g) not divisible by num_heads %d",
                         path, key_dim, value_dim, ek, ev, m->H);
    m->Kh = key_dim / m->H;
    m->Vh = value_dim / m->H;
    m->HV = m->H;
    const char *fm;
    TRY(hf_cfg_str(cfg, path, "feature_map", "elementwise_product", &fm));
    static const struct {
        const char *name;
        hf_la_fmap kind;
        int mult; /* Kf / Kh */
    } maps[] = {{"identity", LA_IDENTITY, 1}, {"relu", LA_RELU, 1},    {"elu", LA_ELU1, 1},
                {"elementwise_product", LA_HADAMARD, 1}, {"t2r", LA_T2R, 1}, {"hedgehog", LA_HEDGEHOG, 2},
                {"dpfp", LA_DPFP, 2 * DPFP_NU}};
    m->la_fmap = -1;
    for (size_t i = 0; i < sizeof maps / sizeof *maps; i++)
        if (!strcmp(fm, maps[i].name)) {
            m->la_fmap = maps[i].kind;
            m->la_Kf = m->Kh * maps[i].mult;
        }
    if (m->la_fmap < 0)
        return lina_fail(LINA_ERR_UNSUPPORTED,
                         "'%s': feature_map '%s' is not one of identity, relu, elu, elementwise_product, t2r, "
                         "hedgehog, dpfp",
                         path, fm);
    TRY(hf_cfg_bool(cfg, path, "tie_feature_map_qk", 0, &m->la_tie_fmap));
    TRY(hf_cfg_bool(cfg, path, "norm_q", 0, &m->la_norm_q));
    TRY(hf_cfg_bool(cfg, path, "norm_k", 0, &m->la_norm_k));
    TRY(hf_cfg_bool(cfg, path, "norm_feature_map", 0, &m->la_normalize));
    TRY(hf_cfg_bool(cfg, path, "elementwise_affine", 1, &m->norm_affine));
    TRY(hf_cfg_float(cfg, path, "norm_eps", 0, 1e-6, &eps));
    m->norm_eps = (float)eps;
    m->use_short_conv = 0;
    m->conv_size = 1;
    return LINA_OK;
}

static lina_status get(hf_weights *w, lina_hf_model *m, const char *name, int ndim, int64_t d0, int64_t d1,
                       int required, const float **out) {
    int64_t shape[2] = {d0, d1};
    return hf_weights_get(w, m, name, ndim, shape, required, out);
}

/* feature map parameters of q (which = 0) or k (1): attn.feature_map_{q,k}.layer{,1,2}.{weight,bias}.
 * With tie_feature_map_qk both share one module, which a deduplicating save may keep under either name. */
static lina_status load_fmap(lina_hf_model *m, hf_weights *w, int l, int which) {
    hf_layer *L = &m->layers[l];
    int Kh = m->Kh;
    static const char *layer_names[2][2] = {{"layer", ""}, {"layer1", "layer2"}};
    int n_layers = m->la_fmap == LA_HADAMARD ? 2 : m->la_fmap == LA_HEDGEHOG || m->la_fmap == LA_T2R ? 1 : 0;
    int has_bias = m->la_fmap != LA_T2R;
    for (int j = 0; j < n_layers; j++) {
        const char *ln = layer_names[m->la_fmap == LA_HADAMARD][j];
        char name[256], other[256];
        snprintf(name, sizeof name, "model.layers.%d.attn.feature_map_%c.%s.weight", l, which ? 'k' : 'q', ln);
        snprintf(other, sizeof other, "model.layers.%d.attn.feature_map_%c.%s.weight", l, which ? 'q' : 'k', ln);
        const char *use = m->la_tie_fmap && !hf_weights_has(w, name) ? other : name;
        TRY(get(w, m, use, 2, Kh, Kh, 1, &L->fmap_w[which][j]));
        if (has_bias) {
            char bias[256];
            snprintf(bias, sizeof bias, "%.*s.bias", (int)(strlen(use) - strlen(".weight")), use);
            TRY(get(w, m, bias, 1, Kh, 0, 1, &L->fmap_b[which][j]));
        }
    }
    return LINA_OK;
}

lina_status hf_la_load_layer(lina_hf_model *m, hf_weights *w, int l) {
    hf_layer *L = &m->layers[l];
    int D = m->D, qk = m->H * m->Kh, vv = m->H * m->Vh, kvk = m->Hkv * m->Kh, kvv = m->Hkv * m->Vh;
    char name[256];
#define NAME(suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), name)
    TRY(get(w, m, NAME("attn_norm.weight"), 1, D, 0, 1, &L->attn_norm));
    TRY(get(w, m, NAME("attn.q_proj.weight"), 2, qk, D, 1, &L->q_proj));
    TRY(get(w, m, NAME("attn.k_proj.weight"), 2, kvk, D, 1, &L->k_proj));
    TRY(get(w, m, NAME("attn.v_proj.weight"), 2, kvv, D, 1, &L->v_proj));
    TRY(load_fmap(m, w, l, 0));
    TRY(load_fmap(m, w, l, 1));
    if (m->norm_affine) TRY(get(w, m, NAME("attn.norm.weight"), 1, m->Vh, 0, 1, &L->o_norm));
    TRY(get(w, m, NAME("attn.o_proj.weight"), 2, D, vv, 1, &L->o_proj));
    TRY(get(w, m, NAME("mlp_norm.weight"), 1, D, 0, 1, &L->mlp_norm));
    TRY(get(w, m, NAME("mlp.gate_proj.weight"), 2, m->I_mlp, D, 1, &L->mlp_gate));
    TRY(get(w, m, NAME("mlp.up_proj.weight"), 2, m->I_mlp, D, 1, &L->mlp_up));
    TRY(get(w, m, NAME("mlp.down_proj.weight"), 2, D, m->I_mlp, 1, &L->mlp_down));
#undef NAME
    return LINA_OK;
}

lina_status hf_la_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st) {
    st->n_S = (size_t)B * m->H * m->la_Kf * (m->Vh + (m->la_normalize ? 1 : 0));
    st->S = calloc(st->n_S, sizeof(float));
    if (!st->S) return lina_fail(LINA_ERR_OOM, "hf state: out of memory");
    return LINA_OK;
}

/* y (Kf) = phi(x (Kh)) for one head; W/b the map's layers (row-major (Kh, Kh) as nn.Linear); tmp (2 Kh) */
static void feature_map(hf_la_fmap kind, int Kh, const float *x, const float *const W[2], const float *const b[2],
                        float *tmp, float *y) {
    switch (kind) {
    case LA_IDENTITY: memcpy(y, x, (size_t)Kh * sizeof *y); break;
    case LA_RELU:
        for (int i = 0; i < Kh; i++) y[i] = x[i] > 0 ? x[i] : 0;
        break;
    case LA_ELU1:
        for (int i = 0; i < Kh; i++) y[i] = x[i] > 0 ? x[i] + 1.0f : expf(x[i]);
        break;
    case LA_HADAMARD:
        hf_linear(1, Kh, Kh, x, W[0], b[0], tmp);
        hf_linear(1, Kh, Kh, x, W[1], b[1], tmp + Kh);
        for (int i = 0; i < Kh; i++) y[i] = tmp[i] * tmp[Kh + i];
        break;
    case LA_T2R:
        hf_linear(1, Kh, Kh, x, W[0], NULL, y);
        for (int i = 0; i < Kh; i++) y[i] = y[i] > 0 ? y[i] : 0;
        break;
    case LA_HEDGEHOG: { /* one softmax over the 2 Kh entries [2 u, -2 u] */
        hf_linear(1, Kh, Kh, x, W[0], b[0], tmp);
        float mx = 0;
        for (int i = 0; i < Kh; i++) mx = fmaxf(mx, fabsf(2 * tmp[i]));
        double sum = 0;
        for (int i = 0; i < Kh; i++) {
            y[i] = expf(2 * tmp[i] - mx);
            y[Kh + i] = expf(-2 * tmp[i] - mx);
            sum += (double)y[i] + y[Kh + i];
        }
        float inv = (float)(1.0 / sum);
        for (int i = 0; i < 2 * Kh; i++) y[i] *= inv;
        break;
    }
    case LA_DPFP: {
        int n = 2 * Kh;
        for (int i = 0; i < Kh; i++) {
            tmp[i] = x[i] > 0 ? x[i] : 0;
            tmp[Kh + i] = x[i] < 0 ? -x[i] : 0; /* fla >= 0.6 (checked on the H200); older fla had -relu(x) */
        }
        for (int j = 1; j <= DPFP_NU; j++)
            for (int i = 0; i < n; i++) y[(j - 1) * n + i] = tmp[i] * tmp[((i - j) % n + n) % n];
        break;
    }
    }
}

static void sum_normalize(size_t rows, int n, float *x) {
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * n;
        double s = 0;
        for (int i = 0; i < n; i++) s += xr[i];
        float f = (float)(1.0 / (s + 1e-4));
        for (int i = 0; i < n; i++) xr[i] *= f;
    }
}

lina_status hf_la_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                        const float *xn, float *x) {
    const hf_layer *L = &m->layers[l];
    int D = m->D, H = m->H, Hkv = m->Hkv, G = H / Hkv, Kh = m->Kh, Vh = m->Vh, Kf = m->la_Kf;
    size_t N = (size_t)B * T, qk = (size_t)H * Kh, vv = (size_t)H * Vh, kvk = (size_t)Hkv * Kh,
           kvv = (size_t)Hkv * Vh, qf = (size_t)H * Kf;
    size_t out_w = vv > (size_t)D ? vv : (size_t)D;
    /* scratch: raw q (N, qk), raw kv-head k (N, kvk), v rows (N, kvv), v (N, vv), q, k features (N, qf),
     * o (N, vv), output rows (N, out_w), feature-map temp (2 Kh) */
    size_t total = N * (qk + kvk + kvv + vv + 2 * qf + vv + out_w) + 2 * (size_t)Kh;
    float *buf = malloc(total * sizeof *buf);
    if (!buf) return lina_fail(LINA_ERR_OOM, "layer %d: out of memory for %zu floats of scratch", l, total);
    float *qr = buf, *kr = qr + N * qk, *vr = kr + N * kvk, *v = vr + N * kvv, *q = v + N * vv, *k = q + N * qf,
          *o = k + N * qf, *out = o + N * vv, *tmp = out + N * out_w;

    hf_linear((int)N, D, (int)qk, xn, L->q_proj, NULL, qr);
    hf_linear((int)N, D, (int)kvk, xn, L->k_proj, NULL, kr);
    hf_linear((int)N, D, (int)kvv, xn, L->v_proj, NULL, vr);
    hf_la_fmap kind = (hf_la_fmap)m->la_fmap;
    for (size_t r = 0; r < N; r++)
        for (int h = 0; h < H; h++) {
            feature_map(kind, Kh, qr + (r * H + h) * Kh, L->fmap_w[0], L->fmap_b[0], tmp, q + (r * H + h) * Kf);
            feature_map(kind, Kh, kr + (r * Hkv + h / G) * Kh, L->fmap_w[1], L->fmap_b[1], tmp, k + (r * H + h) * Kf);
            memcpy(v + (r * H + h) * Vh, vr + (r * Hkv + h / G) * Vh, (size_t)Vh * sizeof *v);
        }
    if (m->la_norm_q) sum_normalize(N * H, Kf, q);
    if (m->la_norm_k) sum_normalize(N * H, Kf, k);

    lina_attn_desc d = hf_attn_desc(B, T, H, H, Kf, Vh, LINA_GATE_NONE, LINA_UPDATE_ADD);
    d.normalize = m->la_normalize;
    d.eps = 1e-10f;
    lina_status st_attn = hf_attn_run(ctx, &d, l, q, k, v, NULL, NULL, st->S, o);
    if (st_attn) {
        free(buf);
        return st_attn;
    }

    hf_rmsnorm((int)(N * H), Vh, o, L->o_norm, m->norm_eps, o);
    hf_linear((int)N, (int)vv, D, o, L->o_proj, NULL, out);
    for (size_t i = 0; i < N * (size_t)D; i++) x[i] += out[i];
    free(buf);
    return LINA_OK;
}
