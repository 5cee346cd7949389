/* The decoder language model: parameter layout (one buffer, named tensors),
 * initialization, forward (trunk + head + cross-entropy) and backward.
 *
 *   x_0 = E[tokens]
 *   x_mid = x_l + mixer(RMSNorm(x_l));  x_{l+1} = x_mid + SwiGLU(RMSNorm(x_mid))
 *   logits = RMSNorm(x_L) W_head^T   (W_head = E when tied)
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "lm_internal.h"

#define TRY(x)                                                                                     \
    do {                                                                                           \
        lina_status st_ = (x);                                                                     \
        if (st_ != LINA_OK) return st_;                                                            \
    } while (0)

/* ---- random numbers (splitmix64) ---- */

uint64_t lina_sm64_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double lina_sm64_uniform(uint64_t *s) { return (lina_sm64_next(s) >> 11) * (1.0 / 9007199254740992.0); }

double lina_sm64_normal(uint64_t *s) {
    double u1 = lina_sm64_uniform(s), u2 = lina_sm64_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- parameter registry ---- */

void lina_param_declare(lina_param_registry *r, const char *name, int ndim, const int64_t *shape,
                        int decays, lina_init_kind init, lina_param *slot) {
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 64;
        lina_tensor_entry *t = realloc(r->t, sizeof *t * cap);
        if (!t) {
            r->oom = 1;
            return;
        }
        r->t = t;
        r->cap = cap;
    }
    lina_tensor_entry *e = &r->t[r->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        e->numel *= (size_t)shape[i];
    }
    e->offset = r->total;
    /* keep every tensor 16-float aligned inside the buffer */
    r->total += (e->numel + 15) & ~(size_t)15;
    e->decays = decays;
    e->init = init;
    e->slot = slot;
}

static void declare(lina_model *m, const char *name, int ndim, int64_t d0, int64_t d1, int decays,
                    lina_init_kind init, lina_param *slot) {
    int64_t shape[2] = {d0, d1};
    lina_param_declare(&m->reg, name, ndim, shape, decays, init, slot);
}

static void init_tensor(const lina_model *m, const lina_tensor_entry *e, uint64_t *rng) {
    float *w = m->params + e->offset;
    if (e->init == LINA_INIT_FAVOR || e->init == LINA_INIT_HEDGEHOG) { /* whole-matrix inits */
        lina_mixer_init_fmap_tensor(e->init, e->shape, lina_sm64_next(rng), w);
        return;
    }
    for (size_t i = 0; i < e->numel; i++) {
        double v;
        switch (e->init) {
        case LINA_INIT_NORMAL: v = m->cfg.init_std * lina_sm64_normal(rng); break;
        case LINA_INIT_ONES: v = 1.0; break;
        case LINA_INIT_ZEROS: v = 0.0; break;
        case LINA_INIT_CONV: {
            double bound = 1.0 / sqrt((double)m->cfg.conv_size);
            v = (2.0 * lina_sm64_uniform(rng) - 1.0) * bound;
            break;
        }
        case LINA_INIT_A_LOG: v = log(1.0 + 15.0 * lina_sm64_uniform(rng)); break;
        case LINA_INIT_DT_BIAS: {
            double dt = exp(log(1e-3) + (log(1e-1) - log(1e-3)) * lina_sm64_uniform(rng));
            if (dt < 1e-4) dt = 1e-4;
            v = dt + log(-expm1(-dt)); /* softplus^-1(dt) */
            break;
        }
        default: v = 0.0;
        }
        w[i] = (float)v;
    }
}

static void free_activations(lina_model *m) {
    free(m->act);
    free(m->tokens);
    m->act = NULL;
    m->tokens = NULL;
    m->targets = NULL;
    m->cap = 0;
}

static lina_status alloc_activations(lina_model *m, int rows) {
    if (rows <= m->cap) return LINA_OK;
    size_t N = (size_t)rows, D = m->cfg.dim, Hid = m->cfg.intermediate, Vb = m->cfg.vocab_size;
    size_t L = m->cfg.n_layers;
    size_t per_layer = 4 * N * D + 3 * N * Hid + 2 * N;
    size_t total = L * per_layer + 7 * N * D + N + N * Vb + 2 * N * Hid;
    float *act = malloc(sizeof(float) * total);
    int32_t *tok = malloc(sizeof(int32_t) * 2 * N);
    if (!act || !tok) {
        free(act);
        free(tok);
        return lina_fail(LINA_ERR_OOM, "model: out of memory for activations of %d tokens (%zu MB)",
                         rows, total * 4 >> 20);
    }
    free_activations(m);
    m->act = act;
    m->tokens = tok;
    m->targets = tok + N;
    m->cap = rows;
    float *p = act;
#define TAKE(ptr, n) (ptr = p, p += (n))
    for (size_t l = 0; l < L; l++) {
        lina_block *b = &m->layer[l];
        TAKE(b->x_in, N * D);
        TAKE(b->xn1, N * D);
        TAKE(b->xmid, N * D);
        TAKE(b->xn2, N * D);
        TAKE(b->a, N * Hid);
        TAKE(b->b, N * Hid);
        TAKE(b->h, N * Hid);
        TAKE(b->rstd1, N);
        TAKE(b->rstd2, N);
    }
    TAKE(m->x_out, N * D);
    TAKE(m->xf, N * D);
    TAKE(m->tmp, N * D);
    TAKE(m->dx, N * D);
    TAKE(m->dmid, N * D);
    TAKE(m->dxn, N * D);
    TAKE(m->dxf, N * D);
    TAKE(m->rstdf, N);
    TAKE(m->probs, N * Vb);
    TAKE(m->da, N * Hid);
    TAKE(m->db, N * Hid);
#undef TAKE
    return LINA_OK;
}

lina_status lina_model_create(const lina_model_config *c, uint64_t seed, lina_model **out) {
    return lina_lm_create(c, seed, 1, out);
}

lina_status lina_lm_create(const lina_model_config *c, uint64_t seed, int init, lina_model **out) {
    if (!c || !out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_model_create: NULL argument");
    *out = NULL;
    lina_model *m = calloc(1, sizeof *m);
    if (!m) return lina_fail(LINA_ERR_OOM, "lina_model_create: out of memory");
    m->cfg = *c;
    lina_status st = lina_model_config_validate(&m->cfg);
    if (st != LINA_OK) {
        free(m);
        return st;
    }
    const lina_model_config *cfg = &m->cfg;
    int D = cfg->dim, Hid = cfg->intermediate;
    declare(m, "model.embeddings.weight", 2, cfg->vocab_size, D, 1, LINA_INIT_NORMAL, &m->embed);
    for (int l = 0; l < cfg->n_layers && st == LINA_OK; l++) {
        lina_block *b = &m->layer[l];
        char prefix[96], name[160];
        snprintf(prefix, sizeof prefix, "model.layers.%d.", l);
#define NAME(s) (snprintf(name, sizeof name, "%s%s", prefix, s), name)
        declare(m, NAME("attn_norm.weight"), 1, D, 0, 0, LINA_INIT_ONES, &b->attn_norm);
        snprintf(name, sizeof name, "%sattn.", prefix);
        st = lina_mixer_create(cfg, l, name, &m->reg, &b->mixer);
        declare(m, NAME("mlp_norm.weight"), 1, D, 0, 0, LINA_INIT_ONES, &b->mlp_norm);
        declare(m, NAME("mlp.gate_proj.weight"), 2, Hid, D, 1, LINA_INIT_NORMAL, &b->gate_proj);
        declare(m, NAME("mlp.up_proj.weight"), 2, Hid, D, 1, LINA_INIT_NORMAL, &b->up_proj);
        declare(m, NAME("mlp.down_proj.weight"), 2, D, Hid, 1, LINA_INIT_NORMAL, &b->down_proj);
#undef NAME
    }
    declare(m, "model.norm.weight", 1, D, 0, 0, LINA_INIT_ONES, &m->final_norm);
    if (!cfg->tie_embeddings)
        declare(m, "lm_head.weight", 2, cfg->vocab_size, D, 1, LINA_INIT_NORMAL, &m->lm_head);
    if (st == LINA_OK && m->reg.oom) st = lina_fail(LINA_ERR_OOM, "lina_model_create: out of memory");
    if (st == LINA_OK) {
        m->n_params = m->reg.total;
        m->params = aligned_alloc(64, sizeof(float) * ((m->n_params + 15) & ~(size_t)15));
        m->grads = aligned_alloc(64, sizeof(float) * ((m->n_params + 15) & ~(size_t)15));
        if (!m->params || !m->grads)
            st = lina_fail(LINA_ERR_OOM, "lina_model_create: out of memory for %zu parameters",
                           m->n_params);
    }
    if (st == LINA_OK) st = lina_ctx_create(&m->ctx);
    if (st != LINA_OK) {
        lina_model_free(m);
        return st;
    }
    memset(m->params, 0, sizeof(float) * m->n_params);
    memset(m->grads, 0, sizeof(float) * m->n_params);
    uint64_t rng = seed;
    for (int i = 0; i < m->reg.n; i++) {
        lina_tensor_entry *e = &m->reg.t[i];
        e->slot->w = m->params + e->offset;
        e->slot->g = m->grads + e->offset;
        if (init) init_tensor(m, e, &rng);
    }
    if (cfg->tie_embeddings) m->lm_head = m->embed;
    m->threads = lina_ctx_threads(m->ctx);
    *out = m;
    return LINA_OK;
}

void lina_model_free(lina_model *m) {
    if (!m) return;
    lina_model_release_cuda(m);
    for (int l = 0; l < LINA_MODEL_MAX_LAYERS; l++) lina_mixer_free(m->layer[l].mixer);
    free_activations(m);
    free(m->head_rows);
    free(m->params);
    free(m->grads);
    free(m->reg.t);
    lina_ctx_free(m->ctx);
    free(m);
}

const lina_model_config *lina_model_get_config(const lina_model *m) { return &m->cfg; }

lina_status lina_model_set_threads(lina_model *m, int n) {
    TRY(lina_ctx_set_threads(m->ctx, n));
    m->threads = lina_ctx_threads(m->ctx);
    openblas_set_num_threads(m->threads);
    return LINA_OK;
}

size_t lina_model_n_params(const lina_model *m) { return m->n_params; }
float *lina_model_params(lina_model *m) { return m->params; }
float *lina_model_grads(lina_model *m) { return m->grads; }
int lina_model_n_tensors(const lina_model *m) { return m->reg.n; }

int lina_model_tensor_info(const lina_model *m, int i, const char **name, int64_t shape[4],
                           size_t *offset) {
    if (i < 0 || i >= m->reg.n) return 0;
    const lina_tensor_entry *e = &m->reg.t[i];
    if (name) *name = e->name;
    if (shape)
        for (int d = 0; d < 4; d++) shape[d] = d < e->ndim ? e->shape[d] : 1;
    if (offset) *offset = e->offset;
    return e->ndim;
}

int lina_model_tensor_decays(const lina_model *m, int i) {
    return i >= 0 && i < m->reg.n && m->reg.t[i].decays;
}

float *lina_model_find(lina_model *m, const char *name, size_t *numel) {
    for (int i = 0; i < m->reg.n; i++)
        if (!strcmp(m->reg.t[i].name, name)) {
            if (numel) *numel = m->reg.t[i].numel;
            return m->params + m->reg.t[i].offset;
        }
    return NULL;
}

void lina_model_zero_grads(lina_model *m) {
    if (m->cuda) {
        lina_cuda_lm_zero_grads(m->cuda); /* a failure shows at the next forward */
        return;
    }
    memset(m->grads, 0, sizeof(float) * m->n_params);
}

/* ---- forward ---- */

static lina_mlp mlp_of(const lina_model *m, const lina_block *b) {
    lina_mlp p = {m->cfg.dim, m->cfg.intermediate, b->gate_proj.w, b->up_proj.w, b->down_proj.w,
                  b->gate_proj.g, b->up_proj.g, b->down_proj.g};
    return p;
}

lina_status lina_lm_trunk(lina_model *m, int B, int T, const int32_t *tokens,
                          lina_mixer_state *states, int pos0) {
    const lina_model_config *c = &m->cfg;
    int N = B * T, D = c->dim, th = m->threads;
    if (m->host_stale)
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "model: the host parameters are older than the GPU copy being trained "
                         "(lina_model_use_cuda); call lina_model_sync_host or lina_model_release_cuda first");
    for (int n = 0; n < N; n++)
        if (tokens[n] < 0 || tokens[n] >= c->vocab_size)
            return lina_fail(LINA_ERR_INVALID_ARG, "model: token[%d] = %d outside [0, %d)", n,
                             tokens[n], c->vocab_size);
    TRY(alloc_activations(m, N));
    m->B = B;
    m->T = T;
    m->have_targets = 0;
    m->n_head_rows = 0; /* dense head unless lina_model_forward_scored says otherwise */
    memcpy(m->tokens, tokens, sizeof(int32_t) * N);
    lina_embedding_forward(N, D, m->tokens, m->embed.w, m->layer[0].x_in);
    for (int l = 0; l < c->n_layers; l++) {
        lina_block *b = &m->layer[l];
        float *next = l + 1 < c->n_layers ? m->layer[l + 1].x_in : m->x_out;
        lina_rmsnorm_forward(N, D, b->x_in, b->attn_norm.w, c->norm_eps, b->xn1, b->rstd1, th);
        TRY(lina_mixer_forward(b->mixer, m->ctx, B, T, b->xn1, m->tmp, states ? &states[l] : NULL,
                               pos0));
        for (size_t i = 0; i < (size_t)N * D; i++) b->xmid[i] = b->x_in[i] + m->tmp[i];
        lina_rmsnorm_forward(N, D, b->xmid, b->mlp_norm.w, c->norm_eps, b->xn2, b->rstd2, th);
        lina_mlp p = mlp_of(m, b);
        lina_mlp_forward(&p, N, b->xn2, b->a, b->b, b->h, m->tmp, th);
        for (size_t i = 0; i < (size_t)N * D; i++) next[i] = b->xmid[i] + m->tmp[i];
    }
    lina_rmsnorm_forward(N, D, m->x_out, m->final_norm.w, c->norm_eps, m->xf, m->rstdf, th);
    return LINA_OK;
}

void lina_lm_head(lina_model *m, int row0, int rows, float *logits) {
    lina_linear_forward(rows, m->cfg.dim, m->cfg.vocab_size, m->xf + (size_t)row0 * m->cfg.dim,
                        m->lm_head.w, NULL, logits);
}

lina_status lina_model_forward(lina_model *m, int B, int T, const int32_t *tokens,
                               const int32_t *targets, float *logits, float *loss) {
    if (!m || !tokens) return lina_fail(LINA_ERR_INVALID_ARG, "lina_model_forward: NULL argument");
    if (B < 1 || T < 1 || (double)B * T > 1e8)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_model_forward: B = %d, T = %d out of range", B, T);
    int N = B * T, Vb = m->cfg.vocab_size;
    if (m->cuda) { /* the loss over rows with targets is the scored head's */
        if (logits || !targets)
            return lina_fail(LINA_ERR_UNSUPPORTED,
                             "lina_model_forward: on the GPU only the loss is computed (logits %s, targets %s); "
                             "use lina_model_forward_scored or lina_model_release_cuda",
                             logits ? "wanted" : "not wanted", targets ? "given" : "NULL");
        return lina_cuda_lm_forward_scored(m->cuda, B, T, tokens, targets, NULL, loss, NULL);
    }
    TRY(lina_lm_trunk(m, B, T, tokens, NULL, 0));
    lina_lm_head(m, 0, N, m->probs);
    if (logits) memcpy(logits, m->probs, sizeof(float) * N * Vb);
    if (targets) {
        for (int n = 0; n < N; n++)
            if (targets[n] >= Vb)
                return lina_fail(LINA_ERR_INVALID_ARG, "model: target[%d] = %d >= vocab %d", n,
                                 targets[n], Vb);
        memcpy(m->targets, targets, sizeof(int32_t) * N);
        double l = lina_cross_entropy_forward(N, Vb, m->probs, m->targets, m->probs, &m->n_valid,
                                              m->threads);
        if (loss) *loss = (float)l;
        m->have_targets = 1;
    }
    return LINA_OK;
}

/* ---- backward ---- */

lina_status lina_model_backward(lina_model *m, float grad_scale) {
    if (m && m->cuda) return lina_cuda_lm_backward(m->cuda, grad_scale);
    if (!m || !m->have_targets)
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "lina_model_backward: the last forward had no targets");
    const lina_model_config *c = &m->cfg;
    int N = m->B * m->T, D = c->dim, Vb = c->vocab_size, th = m->threads;
    size_t ND = (size_t)N * D;
    float *dlogits = m->probs; /* overwritten in place */
    if (m->n_head_rows > 0) {
        lina_lm_head_at_backward(m, grad_scale);
    } else {
        lina_cross_entropy_backward(N, Vb, m->probs, m->targets, m->n_valid, grad_scale, dlogits, th);
        lina_linear_backward(N, D, Vb, m->xf, m->lm_head.w, dlogits, m->dxf, 1, m->lm_head.g, NULL);
    }
    memset(m->dx, 0, sizeof(float) * ND);
    lina_rmsnorm_backward(N, D, m->x_out, m->final_norm.w, m->rstdf, m->dxf, m->dx, m->final_norm.g, th);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        lina_block *b = &m->layer[l];
        /* x_{l+1} = x_mid + mlp(norm2(x_mid)) */
        memset(m->dxn, 0, sizeof(float) * ND);
        lina_mlp p = mlp_of(m, b);
        lina_mlp_backward(&p, N, b->xn2, b->a, b->b, b->h, m->dx, m->da, m->db, m->dxn, th);
        memcpy(m->dmid, m->dx, sizeof(float) * ND);
        lina_rmsnorm_backward(N, D, b->xmid, b->mlp_norm.w, b->rstd2, m->dxn, m->dmid, b->mlp_norm.g, th);
        /* x_mid = x_l + mixer(norm1(x_l)) */
        memset(m->dxn, 0, sizeof(float) * ND);
        TRY(lina_mixer_backward(b->mixer, m->ctx, m->dmid, m->dxn));
        memcpy(m->dx, m->dmid, sizeof(float) * ND);
        lina_rmsnorm_backward(N, D, b->x_in, b->attn_norm.w, b->rstd1, m->dxn, m->dx, b->attn_norm.g, th);
    }
    lina_embedding_backward(N, D, m->tokens, m->dx, m->embed.g);
    m->have_targets = 0; /* probs were consumed */
    return LINA_OK;
}
