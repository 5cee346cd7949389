/* Building blocks of the language model (internal). Every layer has its
 * forward and its backward side by side in one file.
 *
 * Conventions: activations are row-major (N, D) with N = B*T token rows.
 * Parameter gradients are ACCUMULATED (+=). Input gradients dx are
 * accumulated too unless the function says "overwritten". Row loops are
 * parallelized over rows only (no cross-thread reductions), so results never
 * depend on the thread count.
 */
#ifndef LINA_LAYERS_H
#define LINA_LAYERS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "lina/core.h"

static inline float lina_sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline float lina_siluf(float x) { return x * lina_sigmoidf(x); }
/* d silu / dx = s (1 + x (1 - s)), s = sigmoid(x) */
static inline float lina_silu_grad(float x) {
    float s = lina_sigmoidf(x);
    return s * (1.0f + x * (1.0f - s));
}
static inline float lina_softplusf(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
/* log sigmoid(x) = -softplus(-x), computed without overflow */
static inline float lina_logsigmoidf(float x) { return -lina_softplusf(-x); }

/* ---- linear.c: y = x W^T (+ b), W (out, in) as in torch ---- */
void lina_linear_forward(int N, int in, int out, const float *x, const float *W, const float *b,
                         float *y);
/* dW += dy^T x; db += sum_rows dy (if db); dx += dy W (if dx; overwritten when dx_overwrite). */
void lina_linear_backward(int N, int in, int out, const float *x, const float *W, const float *dy,
                          float *dx, int dx_overwrite, float *dW, float *db);

/* ---- norm.c ---- */
/* RMSNorm over rows of D: y = x / sqrt(mean(x^2) + eps) * w; rstd (N) saved. */
void lina_rmsnorm_forward(int N, int D, const float *x, const float *w, float eps, float *y,
                          float *rstd, int threads);
/* dx += ..., dw += ... (dw summed over rows sequentially). */
void lina_rmsnorm_backward(int N, int D, const float *x, const float *w, const float *rstd,
                           const float *dy, float *dx, float *dw, int threads);
/* Gated RMSNorm (fla FusedRMSNormGated, swish): y = rmsnorm(o) * w * silu(z).
 * z == NULL: plain RMSNorm. o, z, y (N, D). */
void lina_gated_rmsnorm_forward(int N, int D, const float *o, const float *z, const float *w,
                                float eps, float *y, float *rstd, int threads);
/* do overwritten, dz overwritten (if z), dw accumulated. */
void lina_gated_rmsnorm_backward(int N, int D, const float *o, const float *z, const float *w,
                                 const float *rstd, const float *dy, float *d_o, float *dz,
                                 float *dw, int threads);
/* L2 normalization of rows (fla l2norm): y = x / sqrt(sum(x^2) + eps); rnorm (N) saved. */
void lina_l2norm_forward(int N, int D, const float *x, float eps, float *y, float *rnorm,
                         int threads);
/* dx overwritten: dx = r (dy - y (dy . y)). */
void lina_l2norm_backward(int N, int D, const float *y, const float *rnorm, const float *dy,
                          float *dx, int threads);

/* ---- conv.c: short causal depthwise convolution + SiLU (fla ShortConvolution) ----
 * x (B, T, C) pre-conv, w (C, W): c[t] = sum_i w[i] x[t - (W-1) + i], y = silu(c).
 * hist (W-1, C) (oldest first) supplies x[t < 0] when B == 1, else zeros. */
void lina_conv_forward(int B, int T, int C, int W, const float *x, const float *w,
                       const float *hist, float *c, float *y, int threads);
/* dc scratch (B, T, C); dx overwritten (no gradient flows into hist), dw accumulated. */
void lina_conv_backward(int B, int T, int C, int W, const float *x, const float *w,
                        const float *hist, const float *c, const float *dy, float *dc, float *dx,
                        float *dw, int threads);
/* Shift the last W-1 rows of [hist; x (T, C)] into hist. */
void lina_conv_update_history(int T, int C, int W, const float *x, float *hist);

/* ---- rotary.c: rotary embeddings, non-interleaved halves (GPT-NeoX / fla) ----
 * x (B, T, H, D) in place; token t of each row sits at position pos0 + t. */
void lina_rotary_apply(int B, int T, int H, int D, float theta, int pos0, float *x, int inverse,
                       int threads);

/* Rotate the pair of columns (i, i + half) of every row (b, t, h) of x (B, T, H, D) at position t
 * by the angle whose cosine and sine are c, s: the inner step of every rotary embedding here. */
static inline void lina_rotate_pairs(int B, int T, int H, int D, int t, int i, int half, float c, float s,
                                     float *x) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float *r = x + (((size_t)b * T + t) * H + h) * D;
            float x1 = r[i], x2 = r[i + half];
            r[i] = x1 * c - x2 * s;
            r[i + half] = x2 * c + x1 * s;
        }
}

/* ---- mlp.c: SwiGLU MLP, out = down(silu(gate(x)) * up(x)) ---- */
typedef struct {
    int D, hidden; /* model dim, intermediate width */
    const float *Wg, *Wu, *Wd; /* (hidden, D), (hidden, D), (D, hidden) */
    float *dWg, *dWu, *dWd;
} lina_mlp;
/* a, b, h (N, I) saved */
void lina_mlp_forward(const lina_mlp *p, int N, const float *x, float *a, float *b, float *h,
                      float *out, int threads);
/* dh scratch (N, I) x2; dx accumulated. */
void lina_mlp_backward(const lina_mlp *p, int N, const float *x, const float *a, const float *b,
                       const float *h, const float *dout, float *da, float *db, float *dx,
                       int threads);

/* ---- embedding.c ---- */
void lina_embedding_forward(int N, int D, const int32_t *tok, const float *E, float *x);
/* dE += (sequential over rows: deterministic) */
void lina_embedding_backward(int N, int D, const int32_t *tok, const float *dx, float *dE);

/* ---- loss.c: softmax cross-entropy over rows of V logits ---- */
/* Returns the mean loss over rows with target >= 0 (count in *n_valid); probs
 * (N, V) overwritten with softmax(logits) (may alias logits). */
double lina_cross_entropy_forward(int N, int V, const float *logits, const int32_t *targets,
                                  float *probs, int *n_valid, int threads);
/* dlogits = scale * (probs - onehot) / n_valid for valid rows, 0 otherwise (overwritten). */
void lina_cross_entropy_backward(int N, int V, const float *probs, const int32_t *targets,
                                 int n_valid, float scale, float *dlogits, int threads);

#endif
