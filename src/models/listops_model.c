/* ListOps encoder classifier: parameters, forward and hand-written backward
 * over packed batches (see include/lina/listops.h for the architecture). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../layers/layers.h"
#include "lina/fmap.h"
#include "lina/softmax.h"
#include "listops_internal.h"

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float normal(uint64_t *s) { /* Box-Muller */
    double u1 = ((splitmix64(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Lays out one tensor of n floats at *off; init: 0 zeros, 1 ones, else N(0, std). */
static float *tensor(lina_listops_model *m, float *base, int64_t *off, int64_t n, int decay,
                     int init, float std, uint64_t *rng) {
    float *p = base + *off;
    if (base && base == m->params) {
        for (int64_t i = 0; i < n; i++) {
            p[i] = init == 0 ? 0.0f : init == 1 ? 1.0f : std * normal(rng);
            m->decays[*off + i] = (uint8_t)decay;
        }
    }
    *off += n;
    return p;
}

/* Lays out all tensors in base (params or grads); returns the count. */
static int64_t layout(lina_listops_model *m, float *base, uint64_t *rng) {
    int D = m->D, I = m->hidden, L = m->c.layers;
    int64_t off = 0;
    float sd = 1.0f / sqrtf((float)D), so = sd / sqrtf(2.0f * L), si = 1.0f / sqrtf((float)I);
    float *E = tensor(m, base, &off, (int64_t)LINA_LISTOPS_VOCAB * D, 1, 2, 1.0f, rng);
    float *P = m->c.max_len ? tensor(m, base, &off, (int64_t)m->c.max_len * D, 0, 2, 0.02f, rng) : NULL;
    layer_params *l = base == m->params ? m->lp : m->lg;
    for (int i = 0; i < L; i++) {
        l[i].n1 = tensor(m, base, &off, D, 0, 1, 0, rng);
        l[i].Wq = tensor(m, base, &off, (int64_t)D * D, 1, 2, sd, rng);
        l[i].Wk = tensor(m, base, &off, (int64_t)D * D, 1, 2, sd, rng);
        l[i].Wv = tensor(m, base, &off, (int64_t)D * D, 1, 2, sd, rng);
        l[i].Wo = tensor(m, base, &off, (int64_t)D * D, 1, 2, so, rng);
        l[i].n2 = tensor(m, base, &off, D, 0, 1, 0, rng);
        l[i].Wg = tensor(m, base, &off, (int64_t)I * D, 1, 2, sd, rng);
        l[i].Wu = tensor(m, base, &off, (int64_t)I * D, 1, 2, sd, rng);
        l[i].Wd = tensor(m, base, &off, (int64_t)D * I, 1, 2, si / sqrtf(2.0f * L), rng);
    }
    float *nf = tensor(m, base, &off, D, 0, 1, 0, rng);
    float *Wh = tensor(m, base, &off, (int64_t)LINA_LISTOPS_CLASSES * D, 1, 2, sd, rng);
    float *bh = tensor(m, base, &off, LINA_LISTOPS_CLASSES, 0, 0, 0, rng);
    if (base && base == m->params) {
        m->E = E, m->P = P, m->nf = nf, m->Wh = Wh, m->bh = bh;
    }
    return off;
}

void lina_listops_model_free(lina_listops_model *m) {
    if (!m) return;
    free(m->params), free(m->grads), free(m->m1), free(m->m2), free(m->decays);
    free(m->lp), free(m->lg), free(m->lc), free(m->arena);
    lina_ctx_free(m->ctx);
    free(m);
}

lina_status lina_listops_model_create(const lina_listops_model_config *c, uint64_t seed,
                                      lina_listops_model **out) {
    if (!c || !out) return lina_fail(LINA_ERR_INVALID_ARG, "listops_model_create: NULL argument");
    *out = NULL;
    if (c->mixer != LINA_LISTOPS_LINEAR && c->mixer != LINA_LISTOPS_SOFTMAX)
        return lina_fail(LINA_ERR_INVALID_ARG, "listops_model_create: mixer = %d unknown", (int)c->mixer);
    if (c->dim < 1 || c->layers < 1 || c->heads < 1)
        return lina_fail(LINA_ERR_INVALID_ARG, "listops_model_create: dim = %d, layers = %d, heads = %d must be >= 1",
                         c->dim, c->layers, c->heads);
    if (c->dim % c->heads)
        return lina_fail(LINA_ERR_INVALID_ARG, "listops_model_create: dim = %d is not a multiple of heads = %d",
                         c->dim, c->heads);
    if (c->dim / c->heads > LISTOPS_MAX_HEAD)
        return lina_fail(LINA_ERR_INVALID_ARG, "listops_model_create: head dim %d must be <= %d",
                         c->dim / c->heads, LISTOPS_MAX_HEAD);
    if (c->max_len < 0)
        return lina_fail(LINA_ERR_INVALID_ARG, "listops_model_create: max_len = %d must be >= 0", c->max_len);
    lina_listops_model *m = calloc(1, sizeof *m);
    if (!m) return lina_fail(LINA_ERR_OOM, "listops_model_create: out of memory");
    m->c = *c;
    m->D = c->dim, m->H = c->heads, m->d = c->dim / c->heads, m->hidden = 2 * c->dim, m->threads = 1;
    m->lp = calloc(c->layers, sizeof *m->lp);
    m->lg = calloc(c->layers, sizeof *m->lg);
    m->lc = calloc(c->layers, sizeof *m->lc);
    uint64_t rng = seed;
    m->n_params = layout(m, NULL, &rng); /* count only: base NULL writes nothing */
    m->params = calloc(m->n_params, sizeof(float));
    m->grads = calloc(m->n_params, sizeof(float));
    m->m1 = calloc(m->n_params, sizeof(float));
    m->m2 = calloc(m->n_params, sizeof(float));
    m->decays = calloc(m->n_params, 1);
    if (!m->lp || !m->lg || !m->lc || !m->params || !m->grads || !m->m1 || !m->m2 || !m->decays ||
        lina_ctx_create(&m->ctx)) {
        lina_listops_model_free(m);
        return lina_fail(LINA_ERR_OOM, "listops_model_create: out of memory");
    }
    rng = seed * 0x9E3779B97F4A7C15ull + 12345;
    layout(m, m->params, &rng);
    layout(m, m->grads, &rng);
    lina_ctx_set_threads(m->ctx, 1);
    *out = m;
    return LINA_OK;
}

lina_status lina_listops_model_set_threads(lina_listops_model *m, int threads) {
    if (threads < 1) return lina_fail(LINA_ERR_INVALID_ARG, "listops: threads = %d must be >= 1", threads);
    m->threads = threads;
    return lina_ctx_set_threads(m->ctx, threads);
}
int64_t lina_listops_model_n_params(const lina_listops_model *m) { return m->n_params; }
float *lina_listops_model_params(lina_listops_model *m) { return m->params; }
float *lina_listops_model_grads(lina_listops_model *m) { return m->grads; }

/* Makes room for N tokens and B sequences of activations. */
static lina_status reserve(lina_listops_model *m, int64_t N, int B) {
    if (N <= m->cap_N && B <= m->cap_B) return LINA_OK;
    if (N < m->cap_N) N = m->cap_N;
    if (B < m->cap_B) B = m->cap_B;
    int D = m->D, H = m->H, I = m->hidden, L = m->c.layers;
    /* per layer: 11 (N,D) + 2 (N) + 1 (N,H) + 3 (N,I); final: 2 (N,D) + (N) + 4 (B, <=D);
     * backward scratch: 9 (N,D) + 2 (N,I) */
    size_t per_layer = (size_t)N * (11 * D + 2 + H + 3 * I);
    size_t total = L * per_layer + (size_t)N * (2 * D + 1) + 4 * (size_t)B * (D + 10) +
                   (size_t)N * (9 * D + 2 * I);
    float *a = malloc(total * sizeof(float));
    if (!a) return lina_fail(LINA_ERR_OOM, "listops: %zu floats of activations for N = %lld", total, (long long)N);
    free(m->arena);
    m->arena = a, m->cap_N = N, m->cap_B = B;
#define TAKE(n) (a += (n), a - (n))
    for (int l = 0; l < L; l++) {
        layer_cache *c = &m->lc[l];
        c->xin = TAKE(N * D), c->rstd1 = TAKE(N), c->h1 = TAKE(N * D), c->q = TAKE(N * D);
        c->k = TAKE(N * D), c->v = TAKE(N * D), c->fq = TAKE(N * D), c->fk = TAKE(N * D);
        c->aux = TAKE(N * H), c->att = TAKE(N * D), c->xmid = TAKE(N * D), c->rstd2 = TAKE(N);
        c->h2 = TAKE(N * D), c->a = TAKE(N * I), c->b = TAKE(N * I), c->hh = TAKE(N * I);
    }
    m->xout = TAKE(N * D), m->rstdf = TAKE(N), m->yf = TAKE(N * D);
    m->pooled = TAKE((size_t)B * (D + 10)), m->probs = TAKE((size_t)B * (D + 10));
    m->dlogits = TAKE((size_t)B * (D + 10)), m->dpooled = TAKE((size_t)B * (D + 10));
    m->dx = TAKE(N * D), m->dmid = TAKE(N * D), m->dh = TAKE(N * D), m->datt = TAKE(N * D);
    m->dq = TAKE(N * D), m->dk = TAKE(N * D), m->dv = TAKE(N * D), m->dfq = TAKE(N * D);
    m->dfk = TAKE(N * D), m->da = TAKE(N * I), m->db = TAKE(N * I);
#undef TAKE
    return LINA_OK;
}

static lina_status mixer_forward(lina_listops_model *m, int B, const int64_t *cu, int64_t N,
                                 layer_cache *c) {
    int H = m->H, d = m->d;
    if (m->c.mixer == LINA_LISTOPS_SOFTMAX) {
        lina_softmax_desc sd = lina_softmax_desc_default();
        sd.B = 1, sd.T = (int)N, sd.H = sd.HKV = H, sd.K = sd.V = d, sd.causal = 0;
        sd.cu_seqlens = cu, sd.n_seqs = B;
        return lina_softmax_forward(m->ctx, &sd, c->q, c->k, c->v, c->att, c->aux);
    }
    lina_fmap_desc fd = lina_fmap_desc_default(LINA_FMAP_ELU1, d);
    lina_status st = lina_fmap_forward(m->ctx, &fd, 1, (int)N, H, c->q, NULL, NULL, c->fq);
    if (!st) st = lina_fmap_forward(m->ctx, &fd, 1, (int)N, H, c->k, NULL, NULL, c->fk);
    if (!st) listops_linear_attn_forward(B, cu, H, d, c->fq, c->fk, c->v, c->aux, c->att, m->threads);
    return st;
}

/* datt -> dq, dk, dv (overwritten) */
static lina_status mixer_backward(lina_listops_model *m, int B, const int64_t *cu, int64_t N,
                                  const layer_cache *c) {
    int H = m->H, d = m->d;
    if (m->c.mixer == LINA_LISTOPS_SOFTMAX) {
        lina_softmax_desc sd = lina_softmax_desc_default();
        sd.B = 1, sd.T = (int)N, sd.H = sd.HKV = H, sd.K = sd.V = d, sd.causal = 0;
        sd.cu_seqlens = cu, sd.n_seqs = B;
        return lina_softmax_backward(m->ctx, &sd, c->q, c->k, c->v, c->att, c->aux, m->datt, m->dq,
                                     m->dk, m->dv);
    }
    listops_linear_attn_backward(B, cu, H, d, c->fq, c->fk, c->v, c->aux, c->att, m->datt, m->dfq,
                                 m->dfk, m->dv, m->threads);
    lina_fmap_desc fd = lina_fmap_desc_default(LINA_FMAP_ELU1, d);
    lina_status st = lina_fmap_backward(m->ctx, &fd, 1, (int)N, H, c->q, NULL, NULL, m->dfq, m->dq, NULL);
    if (!st) st = lina_fmap_backward(m->ctx, &fd, 1, (int)N, H, c->k, NULL, NULL, m->dfk, m->dk, NULL);
    return st;
}

static lina_mlp mlp_of(const lina_listops_model *m, int l) {
    lina_mlp p = {m->D, m->hidden, m->lp[l].Wg, m->lp[l].Wu, m->lp[l].Wd,
                  m->lg[l].Wg, m->lg[l].Wu, m->lg[l].Wd};
    return p;
}

lina_status lina_listops_model_forward(lina_listops_model *m, int B, const int64_t *cu,
                                       const int32_t *tokens, const int32_t *labels, int backward,
                                       float *logits, double *loss) {
    if (!m || !cu || !tokens || B < 1)
        return lina_fail(LINA_ERR_INVALID_ARG, "listops_forward: NULL argument or B = %d < 1", B);
    if (backward && !labels) return lina_fail(LINA_ERR_INVALID_ARG, "listops_forward: backward needs labels");
    if (cu[0] != 0) return lina_fail(LINA_ERR_INVALID_ARG, "listops_forward: cu_seqlens[0] = %lld must be 0", (long long)cu[0]);
    for (int s = 0; s < B; s++) {
        int64_t n = cu[s + 1] - cu[s];
        if (n < 1 || (m->c.max_len && n > m->c.max_len))
            return lina_fail(LINA_ERR_INVALID_ARG, "listops_forward: sequence %d has %lld tokens (must be 1..%d)", s,
                             (long long)n, m->c.max_len ? m->c.max_len : 1 << 30);
    }
    int64_t N = cu[B];
    if (N > (1 << 30)) return lina_fail(LINA_ERR_INVALID_ARG, "listops_forward: N = %lld tokens too many", (long long)N);
    for (int64_t i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= LINA_LISTOPS_VOCAB)
            return lina_fail(LINA_ERR_INVALID_ARG, "listops_forward: token %d at %lld outside [0, %d)", tokens[i],
                             (long long)i, LINA_LISTOPS_VOCAB);
    if (labels)
        for (int s = 0; s < B; s++)
            if (labels[s] < 0 || labels[s] >= LINA_LISTOPS_CLASSES)
                return lina_fail(LINA_ERR_INVALID_ARG, "listops_forward: label %d of sequence %d outside [0, 10)",
                                 labels[s], s);
    lina_status st = reserve(m, N, B);
    if (st) return st;
    int D = m->D, L = m->c.layers, T = m->threads, C = LINA_LISTOPS_CLASSES;
    float eps = 1e-6f;

    /* embedding + positions -> lc[0].xin (or xout when no layers follow) */
    float *x = m->lc[0].xin;
    lina_embedding_forward((int)N, D, tokens, m->E, x);
    if (m->P)
        for (int s = 0; s < B; s++)
            for (int64_t i = cu[s]; i < cu[s + 1]; i++)
                for (int j = 0; j < D; j++) x[i * D + j] += m->P[(i - cu[s]) * D + j];

    for (int l = 0; l < L; l++) {
        layer_cache *c = &m->lc[l];
        const layer_params *p = &m->lp[l];
        float *next = l + 1 < L ? m->lc[l + 1].xin : m->xout;
        lina_rmsnorm_forward((int)N, D, c->xin, p->n1, eps, c->h1, c->rstd1, T);
        lina_linear_forward((int)N, D, D, c->h1, p->Wq, NULL, c->q);
        lina_linear_forward((int)N, D, D, c->h1, p->Wk, NULL, c->k);
        lina_linear_forward((int)N, D, D, c->h1, p->Wv, NULL, c->v);
        if ((st = mixer_forward(m, B, cu, N, c))) return st;
        lina_linear_forward((int)N, D, D, c->att, p->Wo, NULL, c->xmid);
        for (int64_t i = 0; i < N * D; i++) c->xmid[i] += c->xin[i];
        lina_rmsnorm_forward((int)N, D, c->xmid, p->n2, eps, c->h2, c->rstd2, T);
        lina_mlp mp = mlp_of(m, l);
        lina_mlp_forward(&mp, (int)N, c->h2, c->a, c->b, c->hh, next, T);
        for (int64_t i = 0; i < N * D; i++) next[i] += c->xmid[i];
    }

    /* final norm, mean pooling per sequence, head */
    lina_rmsnorm_forward((int)N, D, m->xout, m->nf, eps, m->yf, m->rstdf, T);
    for (int s = 0; s < B; s++) {
        float *ps = m->pooled + (size_t)s * D, inv = 1.0f / (float)(cu[s + 1] - cu[s]);
        for (int j = 0; j < D; j++) ps[j] = 0;
        for (int64_t i = cu[s]; i < cu[s + 1]; i++)
            for (int j = 0; j < D; j++) ps[j] += m->yf[i * D + j];
        for (int j = 0; j < D; j++) ps[j] *= inv;
    }
    float *lg = m->dlogits; /* logits live here until the backward overwrites them */
    lina_linear_forward(B, D, C, m->pooled, m->Wh, m->bh, lg);
    if (logits) memcpy(logits, lg, sizeof(float) * B * C);
    if (!labels) return LINA_OK;
    int nv = 0;
    double ce = lina_cross_entropy_forward(B, C, lg, labels, m->probs, &nv, T);
    if (loss) *loss = ce;
    if (!backward) return LINA_OK;

    /* ---- backward ---- */
    lina_cross_entropy_backward(B, C, m->probs, labels, nv, 1.0f, m->dlogits, T);
    lina_linear_backward(B, D, C, m->pooled, m->Wh, m->dlogits, m->dpooled, 1,
                         m->grads + (m->Wh - m->params), m->grads + (m->bh - m->params));
    /* dyf_i = dpooled_s / n_s, written into dh; dx = rmsnorm backward */
    for (int s = 0; s < B; s++) {
        float inv = 1.0f / (float)(cu[s + 1] - cu[s]);
        for (int64_t i = cu[s]; i < cu[s + 1]; i++)
            for (int j = 0; j < D; j++) m->dh[i * D + j] = m->dpooled[(size_t)s * D + j] * inv;
    }
    memset(m->dx, 0, sizeof(float) * N * D);
    lina_rmsnorm_backward((int)N, D, m->xout, m->nf, m->rstdf, m->dh, m->dx,
                          m->grads + (m->nf - m->params), T);

    for (int l = L - 1; l >= 0; l--) {
        layer_cache *c = &m->lc[l];
        const layer_params *p = &m->lp[l];
        layer_params *g = &m->lg[l];
        /* next = xmid + mlp(norm2(xmid)) */
        memcpy(m->dmid, m->dx, sizeof(float) * N * D);
        memset(m->dh, 0, sizeof(float) * N * D);
        lina_mlp mp = mlp_of(m, l);
        lina_mlp_backward(&mp, (int)N, c->h2, c->a, c->b, c->hh, m->dx, m->da, m->db, m->dh, T);
        lina_rmsnorm_backward((int)N, D, c->xmid, p->n2, c->rstd2, m->dh, m->dmid, g->n2, T);
        /* xmid = xin + Wo att */
        lina_linear_backward((int)N, D, D, c->att, p->Wo, m->dmid, m->datt, 1, g->Wo, NULL);
        if ((st = mixer_backward(m, B, cu, N, c))) return st;
        memset(m->dh, 0, sizeof(float) * N * D);
        lina_linear_backward((int)N, D, D, c->h1, p->Wq, m->dq, m->dh, 0, g->Wq, NULL);
        lina_linear_backward((int)N, D, D, c->h1, p->Wk, m->dk, m->dh, 0, g->Wk, NULL);
        lina_linear_backward((int)N, D, D, c->h1, p->Wv, m->dv, m->dh, 0, g->Wv, NULL);
        lina_rmsnorm_backward((int)N, D, c->xin, p->n1, c->rstd1, m->dh, m->dmid, g->n1, T);
        float *t = m->dx;
        m->dx = m->dmid, m->dmid = t;
    }
    float *dE = m->grads + (m->E - m->params);
    lina_embedding_backward((int)N, D, tokens, m->dx, dE);
    if (m->P) {
        float *dP = m->grads + (m->P - m->params);
        for (int s = 0; s < B; s++)
            for (int64_t i = cu[s]; i < cu[s + 1]; i++)
                for (int j = 0; j < D; j++) dP[(i - cu[s]) * D + j] += m->dx[i * D + j];
    }
    return LINA_OK;
}

lina_status lina_listops_model_step(lina_listops_model *m, const lina_listops_adamw *o,
                                    float *grad_norm) {
    if (!m || !o) return lina_fail(LINA_ERR_INVALID_ARG, "listops_step: NULL argument");
    double ss = 0;
    for (int64_t i = 0; i < m->n_params; i++) ss += (double)m->grads[i] * m->grads[i];
    float norm = (float)sqrt(ss);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm)) {
        memset(m->grads, 0, sizeof(float) * m->n_params);
        return lina_fail(LINA_ERR_NONFINITE, "listops_step: gradient norm %g is not finite", norm);
    }
    float scale = o->clip > 0 && norm > o->clip ? o->clip / norm : 1.0f;
    m->t++;
    float c1 = 1.0f - powf(o->beta1, (float)m->t), c2 = 1.0f - powf(o->beta2, (float)m->t);
    for (int64_t i = 0; i < m->n_params; i++) {
        float g = m->grads[i] * scale;
        m->m1[i] = o->beta1 * m->m1[i] + (1 - o->beta1) * g;
        m->m2[i] = o->beta2 * m->m2[i] + (1 - o->beta2) * g * g;
        if (m->decays[i]) m->params[i] -= o->lr * o->weight_decay * m->params[i];
        m->params[i] -= o->lr * (m->m1[i] / c1) / (sqrtf(m->m2[i] / c2) + o->eps);
        m->grads[i] = 0;
    }
    return LINA_OK;
}

lina_status lina_listops_accuracy(lina_listops_model *m, int n, int stride,
                                  const int32_t *tokens, const int32_t *lengths,
                                  const int32_t *labels, int batch, double *accuracy,
                                  double *loss) {
    if (!m || n < 1 || batch < 1 || !tokens || !lengths || !labels || !accuracy)
        return lina_fail(LINA_ERR_INVALID_ARG, "listops_accuracy: n = %d, batch = %d must be >= 1 (and no NULL)", n,
                         batch);
    int64_t *cu = malloc(sizeof(int64_t) * (batch + 1));
    int32_t *packed = malloc(sizeof(int32_t) * (size_t)batch * stride);
    float *logits = malloc(sizeof(float) * batch * LINA_LISTOPS_CLASSES);
    lina_status st = LINA_OK;
    if (!cu || !packed || !logits) st = lina_fail(LINA_ERR_OOM, "listops_accuracy: out of memory");
    int correct = 0;
    double loss_sum = 0;
    for (int i0 = 0; !st && i0 < n; i0 += batch) {
        int B = n - i0 < batch ? n - i0 : batch;
        cu[0] = 0;
        for (int s = 0; s < B; s++) {
            memcpy(packed + cu[s], tokens + (size_t)(i0 + s) * stride, sizeof(int32_t) * lengths[i0 + s]);
            cu[s + 1] = cu[s] + lengths[i0 + s];
        }
        double l = 0;
        if ((st = lina_listops_model_forward(m, B, cu, packed, labels + i0, 0, logits, &l))) break;
        loss_sum += l * B;
        for (int s = 0; s < B; s++) {
            const float *z = logits + s * LINA_LISTOPS_CLASSES;
            int best = 0;
            for (int k = 1; k < LINA_LISTOPS_CLASSES; k++) best = z[k] > z[best] ? k : best;
            correct += best == labels[i0 + s];
        }
    }
    if (!st) {
        *accuracy = (double)correct / n;
        if (loss) *loss = loss_sum / n;
    }
    free(cu), free(packed), free(logits);
    return st;
}
