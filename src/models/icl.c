/* In-context linear regression with stacked linear self-attention: model,
 * hand-written backward, data, Adam training, evaluation with ridge baselines.
 * See include/lina/icl.h for the math. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../core/internal.h"
#include "lina/icl.h"

#define ICL_MAX_D 64

struct lina_icl_model {
    lina_icl_config c;
    int D;          /* d + 1 */
    int per_layer;  /* FULL: 2 D^2 (P then Q); DIAG/GDPP: 4 (w_xx, w_xy, w_yx, w_yy) */
    int n_params;
    float *params;
    int threads;
    int skipped; /* steps skipped for an overflowing loss in the last training */
};

lina_icl_config lina_icl_config_default(void) {
    lina_icl_config c;
    memset(&c, 0, sizeof c);
    c.d = 10;
    c.n_ctx = 20;
    c.layers = 1;
    c.param = LINA_ICL_DIAG;
    c.init_std = 0; /* automatic */
    return c;
}

lina_status lina_icl_config_check(const lina_icl_config *c) {
    if (!c) return lina_fail(LINA_ERR_INVALID_ARG, "icl: config is NULL");
    if (c->d < 1 || c->d + 1 > ICL_MAX_D)
        return lina_fail(LINA_ERR_INVALID_ARG, "icl: d = %d out of range [1, %d]", c->d, ICL_MAX_D - 1);
    if (c->n_ctx < 1 || c->n_ctx > 100000)
        return lina_fail(LINA_ERR_INVALID_ARG, "icl: N = %d context pairs out of range [1, 100000]",
                         c->n_ctx);
    if (c->layers < 1 || c->layers > 64)
        return lina_fail(LINA_ERR_INVALID_ARG, "icl: layers = %d out of range [1, 64]", c->layers);
    if ((unsigned)c->param > LINA_ICL_GDPP)
        return lina_fail(LINA_ERR_INVALID_ARG, "icl: param = %d unknown", (int)c->param);
    if (!(c->sigma_max >= 0) || !isfinite(c->sigma_max) || c->sigma_max > 1e6)
        return lina_fail(LINA_ERR_INVALID_ARG, "icl: sigma_max = %g must be in [0, 1e6]", c->sigma_max);
    if (c->n_sigmas < 0 || c->n_sigmas > 8)
        return lina_fail(LINA_ERR_INVALID_ARG, "icl: %d noise levels, at most 8", c->n_sigmas);
    for (int i = 0; i < c->n_sigmas; i++)
        if (!(c->sigmas[i] >= 0) || !isfinite(c->sigmas[i]))
            return lina_fail(LINA_ERR_INVALID_ARG, "icl: sigma[%d] = %g must be >= 0", i, c->sigmas[i]);
    if (!(c->init_std >= 0) || !isfinite(c->init_std))
        return lina_fail(LINA_ERR_INVALID_ARG, "icl: init_std = %g", c->init_std);
    if (!(c->init_gd_step >= 0) || !(c->init_gd_step <= 100))
        return lina_fail(LINA_ERR_INVALID_ARG, "icl: init_gd_step = %g must be in [0, 100]",
                         c->init_gd_step);
    return LINA_OK;
}

static int threads_max(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Omega's entry for position (a, b): which of w_xx, w_xy, w_yx, w_yy applies. */
static int omega_index(int a, int b, int d) { return (a == d) * 2 + (b == d); }

/* Adds one GD step of size eta per layer to the parameters: the query's y
 * coordinate gains -eta (1/n) sum_j y_j x_j^T x, i.e. the prediction -y moves
 * by eta times the gradient step on (1/2n) sum_j (y_j - w^T x_j)^2 from w = 0,
 * and each context y_j becomes its residual (the next layer's step). */
static void gd_start(lina_icl_model *m, double eta) {
    int D = m->D, d = m->c.d;
    for (int l = 0; l < m->c.layers; l++) {
        float *p = m->params + (size_t)l * m->per_layer;
        if (m->c.param == LINA_ICL_FULL) {
            float *P = p, *Q = p + D * D; /* A = P S Q: row y of A = -eta S[y, x] */
            P[d * D + d] += (float)-sqrt(eta);
            for (int i = 0; i < d; i++) Q[i * D + i] += (float)sqrt(eta);
        } else {
            p[omega_index(d, 0, d)] += (float)-eta; /* w_yx */
        }
    }
}

lina_status lina_icl_create(const lina_icl_config *c, uint64_t seed, lina_icl_model **out) {
    lina_status st = lina_icl_config_check(c);
    if (st) return st;
    lina_icl_model *m = calloc(1, sizeof *m);
    if (!m) return lina_fail(LINA_ERR_OOM, "icl: out of memory");
    m->c = *c;
    m->D = c->d + 1;
    m->per_layer = c->param == LINA_ICL_FULL ? 2 * m->D * m->D : 4;
    m->n_params = m->per_layer * c->layers;
    m->threads = threads_max();
    m->params = calloc(m->n_params, sizeof(float));
    if (!m->params) {
        lina_icl_free(m);
        return lina_fail(LINA_ERR_OOM, "icl: out of memory");
    }
    lina_rng r;
    lina_rng_seed(&r, seed);
    /* Automatic scale: keep each layer's A(S) near 0.1/L in norm (S ~ 1 per entry),
     * or deep stacks blow up at the first step: |w| ~ 0.1/(D L) for DIAG/GD++,
     * |P|,|Q| ~ sqrt(0.1/(D L)) for FULL. */
    double std = c->init_std;
    if (std == 0 && c->init_gd_step == 0) {
        std = 0.1 / ((double)m->D * c->layers);
        if (c->param == LINA_ICL_FULL) std = sqrt(std);
    }
    for (int i = 0; i < m->n_params; i++) m->params[i] = (float)(std * lina_rng_normal(&r));
    if (c->init_gd_step > 0) gd_start(m, c->init_gd_step);
    if (c->param == LINA_ICL_GDPP)
        for (int l = 0; l < c->layers; l++) m->params[l * 4 + 1] = m->params[l * 4 + 3] = 0;
    *out = m;
    return LINA_OK;
}

void lina_icl_free(lina_icl_model *m) {
    if (!m) return;
    free(m->params);
    free(m);
}

int lina_icl_n_params(const lina_icl_model *m) { return m->n_params; }
int lina_icl_skipped_steps(const lina_icl_model *m) { return m->skipped; }
float *lina_icl_params(lina_icl_model *m) { return m->params; }

/* ---- data ---- */

void lina_icl_sample(const lina_icl_config *c, uint64_t *rng_state, int B, float *tokens,
                     float *targets, float *sigmas) {
    lina_rng r;
    lina_rng_seed(&r, *rng_state);
    *rng_state = lina_rng_u64(&r);
    int d = c->d, D = d + 1, n = c->n_ctx;
    double w[ICL_MAX_D];
    for (int b = 0; b < B; b++) {
        float *e = tokens + (size_t)b * (n + 1) * D;
        for (int i = 0; i < d; i++) w[i] = lina_rng_normal(&r);
        double sigma = c->n_sigmas > 0 ? c->sigmas[lina_rng_below(&r, c->n_sigmas)]
                                       : c->sigma_max * lina_rng_uniform(&r);
        sigmas[b] = (float)sigma;
        for (int t = 0; t <= n; t++) {
            double y = 0;
            for (int i = 0; i < d; i++) {
                e[t * D + i] = (float)lina_rng_normal(&r);
                y += w[i] * e[t * D + i];
            }
            if (t < n) {
                e[t * D + d] = (float)(y + sigma * lina_rng_normal(&r));
            } else {
                e[t * D + d] = 0;
                targets[b] = (float)y;
            }
        }
    }
}

/* ---- model ---- */

/* S = (1/n) sum_{j<n} e_j e_j^T; (D, D). The 1/n only rescales the
 * parameters (the function class is the paper's) and keeps them O(1), so one
 * Adam learning rate suits every depth. */
static void context_gram(const float *E, int n, int D, float *S) {
    memset(S, 0, sizeof(float) * D * D);
    for (int j = 0; j < n; j++)
        for (int a = 0; a < D; a++) {
            float ea = E[j * D + a] / n;
            for (int b = 0; b < D; b++) S[a * D + b] += ea * E[j * D + b];
        }
}

static void matmul(const float *X, const float *Y, int D, float *Z) { /* Z = X Y, (D,D) */
    memset(Z, 0, sizeof(float) * D * D);
    for (int a = 0; a < D; a++)
        for (int k = 0; k < D; k++) {
            float x = X[a * D + k];
            for (int b = 0; b < D; b++) Z[a * D + b] += x * Y[k * D + b];
        }
}

/* A(S) for layer parameters p; SQ = S Q (FULL only, kept for the backward). */
static void layer_matrix(const lina_icl_model *m, const float *p, const float *S, float *A,
                         float *SQ) {
    int D = m->D, d = m->c.d;
    if (m->c.param == LINA_ICL_FULL) {
        matmul(S, p + D * D, D, SQ);
        matmul(p, SQ, D, A);
    } else {
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++) A[a * D + b] = p[omega_index(a, b, d)] * S[a * D + b];
    }
}

/* One sequence: forward through all layers (saving each layer's input),
 * loss, and, when g != NULL, the backward accumulating into g. */
static double sequence_loss(const lina_icl_model *m, const float *tokens, float target, float scale,
                            float *ws, float *g) {
    int D = m->D, d = m->c.d, n = m->c.n_ctx, L = m->c.layers, ntok = n + 1;
    size_t tok_sz = (size_t)ntok * D;
    float *E = ws;                            /* (L+1, ntok, D) layer inputs */
    float *S = E + (L + 1) * tok_sz;          /* (L, D, D) */
    float *A = S + (size_t)L * D * D;         /* (L, D, D) */
    float *SQ = A + (size_t)L * D * D;        /* (L, D, D) */
    float *dE = SQ + (size_t)L * D * D;       /* (ntok, D) */
    float *dA = dE + tok_sz, *dS = dA + D * D, *tmp = dS + D * D, *tmp2 = tmp + D * D;
    memcpy(E, tokens, sizeof(float) * tok_sz);
    for (int l = 0; l < L; l++) {
        const float *Ein = E + l * tok_sz;
        float *Eout = E + (l + 1) * tok_sz;
        float *Sl = S + (size_t)l * D * D, *Al = A + (size_t)l * D * D;
        context_gram(Ein, n, D, Sl);
        layer_matrix(m, m->params + (size_t)l * m->per_layer, Sl, Al, SQ + (size_t)l * D * D);
        for (int i = 0; i < ntok; i++)
            for (int a = 0; a < D; a++) {
                float acc = Ein[i * D + a];
                for (int b = 0; b < D; b++) acc += Al[a * D + b] * Ein[i * D + b];
                Eout[i * D + a] = acc;
            }
    }
    double err = -(double)E[L * tok_sz + (size_t)n * D + d] - target;
    if (!g) return 0.5 * err * err;

    memset(dE, 0, sizeof(float) * tok_sz);
    dE[n * D + d] = (float)(-err * scale);
    for (int l = L - 1; l >= 0; l--) {
        const float *Ein = E + l * tok_sz, *Sl = S + (size_t)l * D * D, *Al = A + (size_t)l * D * D;
        const float *p = m->params + (size_t)l * m->per_layer;
        float *gp = g + (size_t)l * m->per_layer;
        /* dA = sum_i dE_i e_i^T; dE_in = dE + A^T dE */
        memset(dA, 0, sizeof(float) * D * D);
        for (int i = 0; i < ntok; i++)
            for (int a = 0; a < D; a++) {
                float da = dE[i * D + a];
                if (da == 0) continue;
                for (int b = 0; b < D; b++) dA[a * D + b] += da * Ein[i * D + b];
            }
        for (int i = 0; i < ntok; i++) {
            float row[ICL_MAX_D];
            for (int b = 0; b < D; b++) {
                float acc = dE[i * D + b];
                for (int a = 0; a < D; a++) acc += Al[a * D + b] * dE[i * D + a];
                row[b] = acc;
            }
            memcpy(dE + i * D, row, sizeof(float) * D);
        }
        if (m->c.param == LINA_ICL_FULL) {
            /* A = P (S Q): dP = dA (SQ)^T, d(SQ) = P^T dA, dQ = S^T d(SQ), dS = d(SQ) Q^T */
            const float *P = p, *Q = p + D * D, *SQl = SQ + (size_t)l * D * D;
            for (int a = 0; a < D; a++)
                for (int b = 0; b < D; b++) {
                    float acc = 0;
                    for (int k = 0; k < D; k++) acc += dA[a * D + k] * SQl[b * D + k];
                    gp[a * D + b] += acc;
                }
            for (int a = 0; a < D; a++) /* tmp = P^T dA */
                for (int b = 0; b < D; b++) {
                    float acc = 0;
                    for (int k = 0; k < D; k++) acc += P[k * D + a] * dA[k * D + b];
                    tmp[a * D + b] = acc;
                }
            for (int a = 0; a < D; a++)
                for (int b = 0; b < D; b++) {
                    float acc = 0, acc2 = 0;
                    for (int k = 0; k < D; k++) {
                        acc += Sl[k * D + a] * tmp[k * D + b];  /* (S^T tmp)_ab */
                        acc2 += tmp[a * D + k] * Q[b * D + k]; /* (tmp Q^T)_ab */
                    }
                    gp[D * D + a * D + b] += acc;
                    tmp2[a * D + b] = acc2;
                }
            memcpy(dS, tmp2, sizeof(float) * D * D);
        } else {
            for (int a = 0; a < D; a++)
                for (int b = 0; b < D; b++) {
                    int w = omega_index(a, b, d);
                    gp[w] += dA[a * D + b] * Sl[a * D + b];
                    dS[a * D + b] = p[w] * dA[a * D + b];
                }
        }
        /* S = (1/n) sum_j e_j e_j^T over the context: dE_j += (dS + dS^T) e_j / n */
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++) tmp[a * D + b] = (dS[a * D + b] + dS[b * D + a]) / n;
        for (int j = 0; j < n; j++)
            for (int a = 0; a < D; a++) {
                float acc = 0;
                for (int b = 0; b < D; b++) acc += tmp[a * D + b] * Ein[j * D + b];
                dE[j * D + a] += acc;
            }
    }
    if (m->c.param == LINA_ICL_GDPP)
        for (int l = 0; l < L; l++) g[l * 4 + 1] = g[l * 4 + 3] = 0;
    return 0.5 * err * err;
}

static size_t sequence_ws_floats(const lina_icl_model *m) {
    size_t D = m->D, L = m->c.layers, tok = (size_t)(m->c.n_ctx + 1) * D;
    return (L + 1) * tok + 3 * L * D * D + tok + 4 * D * D;
}

/* Rows are summed in fixed blocks of ICL_BLOCK sequences, and the block sums
 * combined in order: the result does not depend on the thread count. */
#define ICL_BLOCK 32

lina_status lina_icl_loss(lina_icl_model *m, int B, const float *tokens, const float *targets,
                          double *loss, float *grad) {
    if (!m || !tokens || !targets || !loss || B < 1)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_icl_loss: bad arguments (B = %d)", B);
    size_t ws_n = sequence_ws_floats(m), tok = (size_t)(m->c.n_ctx + 1) * m->D;
    int T = m->threads, n_blocks = (B + ICL_BLOCK - 1) / ICL_BLOCK;
    size_t P = m->n_params;
    float *ws = malloc(sizeof(float) * ws_n * T);
    float *gb = grad ? calloc((size_t)n_blocks * P, sizeof(float)) : NULL;
    double *partial = calloc(n_blocks, sizeof(double));
    if (!ws || !partial || (grad && !gb)) {
        free(ws), free(gb), free(partial);
        return lina_fail(LINA_ERR_OOM, "lina_icl_loss: out of memory");
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(T)
    for (int blk = 0; blk < n_blocks; blk++) {
#ifdef _OPENMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        int hi = (blk + 1) * ICL_BLOCK < B ? (blk + 1) * ICL_BLOCK : B;
        double acc = 0;
        for (int b = blk * ICL_BLOCK; b < hi; b++)
            acc += sequence_loss(m, tokens + b * tok, targets[b], 1.0f / B, ws + ws_n * tid,
                                 gb ? gb + (size_t)blk * P : NULL);
        partial[blk] = acc;
    }
    double total = 0;
    for (int b = 0; b < n_blocks; b++) total += partial[b];
    *loss = total / B;
    if (grad) {
        memset(grad, 0, sizeof(float) * P);
        for (int b = 0; b < n_blocks; b++)
            for (size_t i = 0; i < P; i++) grad[i] += gb[(size_t)b * P + i];
    }
    free(partial), free(gb), free(ws);
    return LINA_OK;
}

lina_status lina_icl_train(lina_icl_model *m, int steps, int batch, float lr, float clip,
                           uint64_t seed, lina_icl_progress cb, void *user) {
    if (!m || steps < 0 || batch < 1 || !(lr > 0) || !isfinite(lr) || !(clip >= 0))
        return lina_fail(LINA_ERR_INVALID_ARG, "icl train: steps = %d, batch = %d, lr = %g, clip = %g",
                         steps, batch, lr, clip);
    size_t tok = (size_t)(m->c.n_ctx + 1) * m->D, P = m->n_params;
    float *tokens = malloc(sizeof(float) * tok * batch), *targets = malloc(sizeof(float) * batch);
    float *sig = malloc(sizeof(float) * batch), *g = malloc(sizeof(float) * P);
    double *mom = calloc(P, sizeof(double)), *var = calloc(P, sizeof(double));
    lina_status st = LINA_OK;
    if (!tokens || !targets || !sig || !g || !mom || !var) {
        st = lina_fail(LINA_ERR_OOM, "icl train: out of memory");
        goto done;
    }
    /* Adam (b1 0.9, b2 0.999), learning rate: 2% linear warm-up then cosine to 10%. */
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    uint64_t data_seed = seed;
    int warm = steps / 50 + 1, max_skipped = steps / 10 + 10;
    m->skipped = 0;
    for (int s = 0; s < steps; s++) {
        lina_icl_sample(&m->c, &data_seed, batch, tokens, targets, sig);
        double loss;
        st = lina_icl_loss(m, batch, tokens, targets, &loss, g);
        if (st) goto done;
        double norm = 0; /* global gradient-norm clipping: deep stacks see rare huge gradients */
        for (size_t i = 0; i < P; i++) norm += (double)g[i] * g[i];
        norm = sqrt(norm);
        if (!isfinite(loss) || !isfinite(norm)) { /* overflow: skip this batch */
            if (++m->skipped > max_skipped) {
                st = lina_fail(LINA_ERR_NONFINITE,
                               "icl train: loss = %g at step %d, %d steps overflowed (lower --lr)",
                               loss, s, m->skipped);
                goto done;
            }
            if (cb) cb(user, s + 1, steps, loss);
            continue;
        }
        if (clip > 0 && norm > clip)
            for (size_t i = 0; i < P; i++) g[i] *= (float)(clip / norm);
        double frac = (double)s / (steps > 1 ? steps - 1 : 1);
        double rate = s < warm ? lr * (s + 1.0) / warm : lr * (0.1 + 0.45 * (1 + cos(M_PI * frac)));
        int t = s + 1 - m->skipped; /* updates so far, this one included */
        double c1 = 1 - pow(b1, t), c2 = 1 - pow(b2, t);
        for (size_t i = 0; i < P; i++) {
            mom[i] = b1 * mom[i] + (1 - b1) * g[i];
            var[i] = b2 * var[i] + (1 - b2) * (double)g[i] * g[i];
            m->params[i] -= (float)(rate * (mom[i] / c1) / (sqrt(var[i] / c2) + eps));
        }
        if (cb) cb(user, s + 1, steps, loss);
    }
done:
    free(tokens), free(targets), free(sig), free(g), free(mom), free(var);
    return st;
}

/* ---- evaluation and ridge baselines ---- */

/* Solve (X^T X + lam I) w = X^T y for the context of one sequence (Cholesky). */
static int ridge(const double *G, const double *alpha, int d, double lam, double *w) {
    double Lm[ICL_MAX_D * ICL_MAX_D];
    for (int i = 0; i < d; i++)
        for (int j = 0; j <= i; j++) {
            double s = G[i * d + j] + (i == j ? lam : 0);
            for (int k = 0; k < j; k++) s -= Lm[i * d + k] * Lm[j * d + k];
            if (i == j) {
                if (s <= 0) return 0;
                Lm[i * d + i] = sqrt(s);
            } else {
                Lm[i * d + j] = s / Lm[j * d + j];
            }
        }
    double z[ICL_MAX_D];
    for (int i = 0; i < d; i++) {
        double s = alpha[i];
        for (int k = 0; k < i; k++) s -= Lm[i * d + k] * z[k];
        z[i] = s / Lm[i * d + i];
    }
    for (int i = d - 1; i >= 0; i--) {
        double s = z[i];
        for (int k = i + 1; k < d; k++) s -= Lm[k * d + i] * w[k];
        w[i] = s / Lm[i * d + i];
    }
    return 1;
}

typedef struct {
    double G[ICL_MAX_D * ICL_MAX_D], alpha[ICL_MAX_D], xq[ICL_MAX_D];
    double y, sigma2, s2hat; /* target, true noise variance, OLS residual estimate */
} seq_stats;

static void stats_of(const lina_icl_config *c, const float *e, float target, float sigma,
                     seq_stats *s) {
    int d = c->d, D = d + 1, n = c->n_ctx;
    memset(s->G, 0, sizeof(double) * d * d);
    memset(s->alpha, 0, sizeof(double) * d);
    for (int j = 0; j < n; j++)
        for (int a = 0; a < d; a++) {
            s->alpha[a] += (double)e[j * D + a] * e[j * D + d];
            for (int b = 0; b < d; b++) s->G[a * d + b] += (double)e[j * D + a] * e[j * D + b];
        }
    for (int a = 0; a < d; a++) s->xq[a] = e[n * D + a];
    s->y = target;
    s->sigma2 = (double)sigma * sigma;
    s->s2hat = 0;
    double w[ICL_MAX_D];
    if (n > d && ridge(s->G, s->alpha, d, 1e-9, w)) {
        double rss = 0;
        for (int j = 0; j < n; j++) {
            double r = e[j * D + d];
            for (int a = 0; a < d; a++) r -= w[a] * e[j * D + a];
            rss += r * r;
        }
        s->s2hat = rss / (n - d);
    }
}

static double ridge_loss(const seq_stats *s, int d, double lam) {
    double w[ICL_MAX_D];
    if (!ridge(s->G, s->alpha, d, lam, w)) return NAN;
    double yhat = 0;
    for (int a = 0; a < d; a++) yhat += w[a] * s->xq[a];
    return 0.5 * (yhat - s->y) * (yhat - s->y);
}

static double mean_ridge(const seq_stats *s, int n, int d, int mode, double p1, double p2) {
    double acc = 0;
    for (int i = 0; i < n; i++) {
        double lam = mode == 0   ? p1                                  /* ConstRR: fixed lambda */
                     : mode == 1 ? s[i].s2hat                          /* AdaRR */
                     : mode == 2 ? fmin(p1, p2 * s[i].s2hat)           /* TunedRR: cap, multiplier */
                                 : s[i].sigma2;                        /* oracle */
        acc += ridge_loss(&s[i], d, lam + 1e-9);
    }
    return acc / n;
}

static seq_stats *draw_stats(const lina_icl_config *c, int n, uint64_t seed, float **tokens_out,
                             float **targets_out) {
    size_t tok = (size_t)(c->n_ctx + 1) * (c->d + 1);
    float *tokens = malloc(sizeof(float) * tok * n), *targets = malloc(sizeof(float) * n);
    float *sig = malloc(sizeof(float) * n);
    seq_stats *s = malloc(sizeof(seq_stats) * n);
    if (!tokens || !targets || !sig || !s) {
        free(tokens), free(targets), free(sig), free(s);
        return NULL;
    }
    uint64_t st = seed;
    lina_icl_sample(c, &st, n, tokens, targets, sig);
    for (int i = 0; i < n; i++) stats_of(c, tokens + i * tok, targets[i], sig[i], &s[i]);
    free(sig);
    if (tokens_out) *tokens_out = tokens; else free(tokens);
    if (targets_out) *targets_out = targets; else free(targets);
    return s;
}

lina_status lina_icl_eval(lina_icl_model *m, int n, uint64_t seed, lina_icl_eval_result *r) {
    if (!m || !r || n < 1)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_icl_eval: n = %d must be >= 1", n);
    const lina_icl_config *c = &m->c;
    int d = c->d, n_tune = n < 4000 ? n : 4000;
    float *tokens = NULL, *targets = NULL;
    seq_stats *ev = draw_stats(c, n, seed, &tokens, &targets);
    seq_stats *tune = draw_stats(c, n_tune, seed ^ 0x5DEECE66Dull, NULL, NULL);
    lina_status st = LINA_OK;
    if (!ev || !tune) {
        st = lina_fail(LINA_ERR_OOM, "lina_icl_eval: out of memory");
        goto done;
    }
    st = lina_icl_loss(m, n, tokens, targets, &r->loss, NULL);
    if (st) goto done;
    r->oracle_loss = mean_ridge(ev, n, d, 3, 0, 0);
    r->adjusted_loss = r->loss - r->oracle_loss;
    /* baselines: hyper-parameters tuned on a separate draw, scored on the eval set */
    double best = INFINITY;
    for (int i = 0; i <= 60; i++) {
        double lam = pow(10.0, -4 + 7.0 * i / 60), l = mean_ridge(tune, n_tune, d, 0, lam, 0);
        if (l < best) best = l, r->const_rr_lambda = lam;
    }
    r->const_rr = mean_ridge(ev, n, d, 0, r->const_rr_lambda, 0) - r->oracle_loss;
    r->ada_rr = mean_ridge(ev, n, d, 1, 0, 0) - r->oracle_loss;
    best = INFINITY;
    for (int i = 0; i <= 36; i++) /* caps 1e-2..1e4, multipliers 0.1..3.16 (1 included) */
        for (int k = 0; k <= 24; k++) {
            double cap = pow(10.0, -2 + 6.0 * i / 36), mult = pow(10.0, -1 + k / 16.0);
            double l = mean_ridge(tune, n_tune, d, 2, cap, mult);
            if (l < best) best = l, r->tuned_cap = cap, r->tuned_mult = mult;
        }
    r->tuned_rr = mean_ridge(ev, n, d, 2, r->tuned_cap, r->tuned_mult) - r->oracle_loss;
done:
    free(tokens), free(targets), free(ev), free(tune);
    return st;
}
