/* Token mixers (internal): the linear-attention family (mixer_linear.c) and
 * causal softmax attention with rotary embeddings (mixer_softmax.c), with fla's
 * parameter names. mixer.c declares the parameters and dispatches.
 *
 * Linear mixers, per token x (D) with H heads, key dim K, value dim V:
 *   q, k, v  = projections of x, then per kind: short conv + SiLU, L2 norm,
 *              rotary, feature map phi (see mixer_linear.c): elu+1, cosFormer,
 *              FAVOR+ (Performer), Hedgehog; the attention then runs on F =
 *              phi's output dim per head (K, 2K, K ln K, 2K), normalized
 *   beta     = sigmoid(b_proj x)                                 (delta rule)
 *   g        = log-decay: -exp(A_log) softplus(a_proj x + dt_bias) | logsigmoid(gk)/16 | const
 *   o        = lina_attn (recurrence of DESIGN.md §2)
 *   y        = RMSNorm_V(o) * w [* silu(g_proj x)],   out = o_proj y
 */
#ifndef LINA_MIXER_H
#define LINA_MIXER_H

#include <stdint.h>

#include "lina/model.h"
#include "lina/fmap.h"
#include "lina/ops.h"

/* A parameter tensor: its values and its gradient (both inside the model's buffers). */
typedef struct {
    float *w, *g;
} lina_param;

/* How the model initializes a tensor. */
typedef enum {
    LINA_INIT_NORMAL = 0, /* N(0, init_std) */
    LINA_INIT_ONES,
    LINA_INIT_ZEROS,
    LINA_INIT_CONV,    /* U(-1/sqrt(W), 1/sqrt(W)) as torch's conv1d default */
    LINA_INIT_A_LOG,   /* log U(1, 16) */
    LINA_INIT_DT_BIAS, /* softplus^-1(dt), dt = exp U(log 1e-3, log 1e-1) */
    LINA_INIT_FAVOR,   /* (M, K) orthogonal Gaussian rows (lina_fmap_init_params); never trained */
    LINA_INIT_HEDGEHOG /* (K, M) identity plus N(0, 0.02^2) noise (lina_fmap_init_params) */
} lina_init_kind;

/* Fill a whole tensor of init kind LINA_INIT_FAVOR or LINA_INIT_HEDGEHOG (shape
 * as declared) from a seed; other kinds are initialized element by element. */
lina_status lina_mixer_init_fmap_tensor(lina_init_kind init, const int64_t *shape, uint64_t seed,
                                        float *w);
/* 1 if the tensor is trained (gets gradients); 0 for FAVOR's fixed projection. */
int lina_init_trained(lina_init_kind init);

/* The model's parameter registry: called once per tensor while the layout is
 * built; *slot is filled when the buffers exist. */
typedef struct lina_param_registry lina_param_registry;
void lina_param_declare(lina_param_registry *r, const char *name, int ndim, const int64_t *shape,
                        int decays, lina_init_kind init, lina_param *slot);

/* Decoding state of one mixer for one sequence. */
typedef struct {
    float *S;          /* linear: (H, K, V or V+1) matrix state */
    float *hq, *hk, *hv; /* linear with conv: (W-1, C) last pre-conv inputs */
    float *kc, *vc;    /* softmax: (max_seq, H, K), (max_seq, H, V) rotated keys, values */
    int len;           /* softmax: cached tokens */
    size_t n_floats;   /* all of the above, contiguous in one allocation at S or kc */
} lina_mixer_state;

typedef struct lina_mixer lina_mixer;

/* Create the mixer of layer `layer` (declares its tensors under prefix, e.g.
 * "model.layers.0.attn."). */
lina_status lina_mixer_create(const lina_model_config *c, int layer, const char *prefix,
                              lina_param_registry *r, lina_mixer **out);
void lina_mixer_free(lina_mixer *mx);

/* Forward of B sequences of T tokens: x, out (B*T, D); activations saved for
 * the backward. With st (B == 1) the sequence continues the state, which is
 * updated; pos0 is the position of the first token. */
lina_status lina_mixer_forward(lina_mixer *mx, lina_ctx *ctx, int B, int T, const float *x,
                               float *out, lina_mixer_state *st, int pos0);
/* Backward of the last forward (without state): dx (B*T, D) accumulated,
 * parameter gradients accumulated. */
lina_status lina_mixer_backward(lina_mixer *mx, lina_ctx *ctx, const float *dout, float *dx);

/* State: allocate (zeroed), free, copy. */
lina_status lina_mixer_state_init(const lina_mixer *mx, lina_mixer_state *st);
void lina_mixer_state_free(lina_mixer_state *st);
lina_status lina_mixer_state_copy(const lina_mixer_state *src, lina_mixer_state *dst);
/* The state's contiguous floats (for save/load). */
float *lina_mixer_state_data(lina_mixer_state *st);

/* ---- per-family implementations (mixer.c dispatches) ---- */
struct lina_mixer {
    lina_mixer_kind kind;
    int D, H, K, V, W, R; /* model dim, heads, key/value head dims, conv width, GLA rank */
    int max_seq;
    float eps, theta;
    int threads;
    /* flags derived from kind */
    int conv, l2, rope, fmap, silu_q, beta, out_gate;
    lina_fmap_desc fd; /* feature map of the fmap kinds (elu1, cosformer, favor, hedgehog) */
    int F;             /* attention key dim: fd's output dim for fmap kinds, else K */
    int32_t *pos;      /* (pos_cap) cosFormer positions pos0 + t */
    int pos_cap;
    lina_gate gate;
    float *const_g; /* (H) RetNet log-decays */
    float *scores;  /* (max_seq) softmax decoding scratch, allocated on first use */

    lina_param q_proj, k_proj, v_proj, o_proj, b_proj, a_proj, A_log, dt_bias, gk0, gk1, gk1_b,
        q_conv, k_conv, v_conv, g_proj, o_norm,
        fmap_q, fmap_k; /* Performer: fmap_q is the shared fixed projection; Hedgehog: q and k maps */

    /* saved activations, capacity rows (see mixer_linear.c / mixer_softmax.c) */
    int cap, B, T, pos0;
    const float *x;
    float *buf;
    float *qp, *kp, *vp, *qc, *kc, *vc, *qs, *ks, *vs, *q, *k, *v, *rq, *rk;
    float *bl, *beta_v, *a, *g, *gz, *gl, *o, *lse, *orstd, *z, *y;
    float *dq, *dk, *dv, *dg, *dbeta, *t1, *t2, *t3;
};

lina_status lina_mixer_linear_alloc(lina_mixer *mx, int rows);
/* The attention descriptor of a linear mixer over B sequences of T tokens. */
lina_attn_desc lina_mixer_attn_desc(const lina_mixer *mx, int B, int T);
lina_status lina_mixer_linear_forward(lina_mixer *mx, lina_ctx *ctx, int B, int T, const float *x,
                                      float *out, lina_mixer_state *st, int pos0);
lina_status lina_mixer_linear_backward(lina_mixer *mx, lina_ctx *ctx, const float *dout, float *dx);
lina_status lina_mixer_softmax_alloc(lina_mixer *mx, int rows);
lina_status lina_mixer_softmax_forward(lina_mixer *mx, lina_ctx *ctx, int B, int T, const float *x,
                                       float *out, lina_mixer_state *st, int pos0);
lina_status lina_mixer_softmax_backward(lina_mixer *mx, lina_ctx *ctx, const float *dout,
                                        float *dx);

#endif
