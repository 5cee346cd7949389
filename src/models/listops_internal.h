/* ListOps classifier internals (src/models/listops_*.c). */
#ifndef LINA_LISTOPS_INTERNAL_H
#define LINA_LISTOPS_INTERNAL_H

#include <stdint.h>

#include "lina/core.h"
#include "lina/listops.h"

#define LISTOPS_MAX_HEAD 128 /* head dim limit of the linear-attention mixer */

/* Non-causal linear attention per sequence of a packed batch; fq, fk, v, o
 * (N, H, d) with fq/fk already feature-mapped; den (N, H) saved. */
void listops_linear_attn_forward(int B, const int64_t *cu, int H, int d, const float *fq,
                                 const float *fk, const float *v, float *den, float *o,
                                 int threads);
/* dfq, dfk, dv (N, H, d) overwritten. */
void listops_linear_attn_backward(int B, const int64_t *cu, int H, int d, const float *fq,
                                  const float *fk, const float *v, const float *den,
                                  const float *o, const float *dout, float *dfq, float *dfk,
                                  float *dv, int threads);

typedef struct {
    float *n1, *Wq, *Wk, *Wv, *Wo, *n2, *Wg, *Wu, *Wd; /* (D) (D,D)x4 (D) (I,D)x2 (D,I) */
} layer_params;

typedef struct { /* activations saved for the backward, N token rows */
    float *xin, *rstd1, *h1, *q, *k, *v, *fq, *fk, *aux, *att, *xmid, *rstd2, *h2, *a, *b, *hh;
} layer_cache;

struct lina_listops_model {
    lina_listops_model_config c;
    int D, H, d, hidden, threads; /* hidden = 2D, the MLP width */
    int64_t n_params;
    float *params, *grads, *m1, *m2; /* flat (n_params) */
    uint8_t *decays;                 /* (n_params) 1 where weight decay applies */
    int64_t t;                       /* AdamW steps taken */
    float *E, *P, *nf, *Wh, *bh;     /* (V,D) (max_len,D) (D) (10,D) (10) */
    layer_params *lp, *lg;           /* parameters, gradients per layer */
    /* activation arena for up to cap_N tokens and cap_B sequences */
    int64_t cap_N;
    int cap_B;
    float *arena;
    layer_cache *lc;
    float *xout, *rstdf, *yf, *pooled, *probs, *dlogits, *dpooled;
    float *dx, *dmid, *dh, *datt, *dq, *dk, *dv, *dfq, *dfk, *da, *db;
    lina_ctx *ctx;
};

#endif
