/* In-context linear regression with stacked linear self-attention
 * ("Linear Transformers are Versatile In-Context Learners", Vladymyrov,
 * von Oswald, Sandler, Ge 2024).
 *
 * Tokens e_i = (x_i, y_i) in R^(d+1), i < N context pairs, query e_N = (x, 0).
 * Each layer: e_i <- e_i + A(S) e_i for every token, S = (1/N) sum_{j<N} e_j e_j^T
 * (attention over the context only, no softmax/MLP/norm), with
 *   FULL: A = P S Q                     (P, Q full (d+1)x(d+1))
 *   DIAG: A = Omega o S, Omega = [[w_xx 1, w_xy 1], [w_yx 1^T, w_yy]]
 *   GDPP: DIAG with w_xy = w_yy = 0     (preconditioner on x, GD step on y)
 * Prediction: minus the last coordinate of the query after the last layer.
 * Loss 1/2 (yhat - y)^2. */
#ifndef LINA_ICL_H
#define LINA_ICL_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LINA_ICL_FULL = 0, LINA_ICL_DIAG = 1, LINA_ICL_GDPP = 2 } lina_icl_param;

typedef struct {
    int d;       /* input dim (10) */
    int n_ctx;   /* context pairs N (20) */
    int layers;  /* 1..64 */
    lina_icl_param param;
    float sigma_max;   /* sigma ~ U(0, sigma_max) per sequence, unless n_sigmas > 0 */
    int n_sigmas;      /* categorical noise: sigma uniform over sigmas[0..n_sigmas) */
    float sigmas[8];
    float init_std;    /* initial parameter scale; 0: automatic (keeps every layer near identity) */
    /* > 0: start every layer as one gradient-descent step of this size on the
     * context regression (DIAG/GD++: w_yx = -init_gd_step, the rest 0; FULL:
     * P = -sqrt(step) e_y e_y^T, Q = sqrt(step) diag(1,..,1,0), so that
     * A(S) e = -step (Syx x) in the y coordinate), plus N(0, init_std^2) noise
     * on every parameter (init_std = 0: none). Deep stacks started at random
     * drift into w_xx, w_xy > 0, where S grows doubly exponentially with depth
     * (s <- s (1 + w s)^2) and the loss overflows; a GD start is stable. */
    float init_gd_step;
} lina_icl_config;

lina_icl_config lina_icl_config_default(void);
/* Checks ranges; the message names the offending value. */
lina_status lina_icl_config_check(const lina_icl_config *c);

typedef struct lina_icl_model lina_icl_model;

lina_status lina_icl_create(const lina_icl_config *c, uint64_t seed, lina_icl_model **out);
void lina_icl_free(lina_icl_model *m);
int lina_icl_n_params(const lina_icl_model *m);
float *lina_icl_params(lina_icl_model *m);

/* Draw B sequences: tokens (B, N+1, d+1) with the query's y zeroed, targets (B),
 * sigmas (B). rng_state is a 64-bit seed advanced by the call. */
void lina_icl_sample(const lina_icl_config *c, uint64_t *rng_state, int B, float *tokens,
                     float *targets, float *sigmas);

/* Mean loss over the batch; grad (n_params) overwritten when non-NULL. */
lina_status lina_icl_loss(lina_icl_model *m, int B, const float *tokens, const float *targets,
                          double *loss, float *grad);

/* Adam training on fresh batches (warm-up, cosine decay to lr/10, global
 * gradient-norm clipping at clip, 0 = off); progress callback may be NULL.
 * A batch whose loss overflows (a rare sequence with a huge Gram matrix) is
 * skipped without touching the parameters or Adam's moments; training fails
 * with LINA_ERR_NONFINITE once more than 10% of the steps (+10) were skipped. */
typedef void (*lina_icl_progress)(void *user, int step, int steps, double loss);
lina_status lina_icl_train(lina_icl_model *m, int steps, int batch, float lr, float clip,
                           uint64_t seed, lina_icl_progress cb, void *user);
/* Steps skipped for an overflowing loss in the last lina_icl_train call. */
int lina_icl_skipped_steps(const lina_icl_model *m);

typedef struct {
    double loss;          /* model */
    double oracle_loss;   /* ridge with the true sigma */
    double adjusted_loss; /* loss - oracle_loss */
    double const_rr;      /* adjusted losses of the baselines */
    double ada_rr;
    double tuned_rr;
    double const_rr_lambda, tuned_cap, tuned_mult;
} lina_icl_eval_result;

/* Evaluate on n fresh sequences (baselines tuned on a separate draw). */
lina_status lina_icl_eval(lina_icl_model *m, int n, uint64_t seed, lina_icl_eval_result *r);

#ifdef __cplusplus
}
#endif
#endif
