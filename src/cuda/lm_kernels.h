/* Device kernels of the language model's training path (lm_kernels.cu,
 * lm_softmax.cu), fp32, for the model glue in lm_cuda.c.
 *
 * Each launcher mirrors a CPU layer function of src/layers (same arguments,
 * same math, same "accumulated" / "overwritten" conventions; see layers.h),
 * with every pointer a DEVICE pointer and the work queued on `s`. Launchers
 * do not synchronize and do not check errors: the caller checks
 * cudaGetLastError() after a sequence of launches. N, D, ... may be 0 (no
 * launch). Parameter gradients (dw, dE, ...) are accumulated with fp32
 * atomics or per-block partial sums, so their last bits may differ from the
 * CPU's sequential sums and between runs.
 */
#ifndef LINA_LM_KERNELS_H
#define LINA_LM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- rows (layers.h: embedding.c, norm.c) ---- */
void lk_embedding_forward(int N, int D, const int32_t *tok, const float *E, float *x, cudaStream_t s);
void lk_embedding_backward(int N, int D, const int32_t *tok, const float *dx, float *dE, cudaStream_t s);
void lk_rmsnorm_forward(int N, int D, const float *x, const float *w, float eps, float *y, float *rstd,
                        cudaStream_t s);
void lk_rmsnorm_backward(int N, int D, const float *x, const float *w, const float *rstd, const float *dy,
                         float *dx, float *dw, cudaStream_t s);
void lk_gated_rmsnorm_forward(int N, int D, const float *o, const float *z, const float *w, float eps,
                              float *y, float *rstd, cudaStream_t s);
void lk_gated_rmsnorm_backward(int N, int D, const float *o, const float *z, const float *w,
                               const float *rstd, const float *dy, float *d_o, float *dz, float *dw,
                               cudaStream_t s);
void lk_l2norm_forward(int N, int D, const float *x, float eps, float *y, float *rnorm, cudaStream_t s);
void lk_l2norm_backward(int N, int D, const float *y, const float *rnorm, const float *dy, float *dx,
                        cudaStream_t s);

/* ---- sequence ops (conv.c without history, rotary.c) ---- */
void lk_conv_forward(int B, int T, int C, int W, const float *x, const float *w, float *c, float *y,
                     cudaStream_t s);
void lk_conv_backward(int B, int T, int C, int W, const float *x, const float *w, const float *c,
                      const float *dy, float *dc, float *dx, float *dw, cudaStream_t s);
void lk_rotary_apply(int B, int T, int H, int D, float theta, int pos0, float *x, int inverse,
                     cudaStream_t s);

/* ---- elementwise ---- */
void lk_add(size_t n, const float *a, const float *b, float *y, cudaStream_t s); /* y = a + b (y may alias) */
void lk_scale(size_t n, float alpha, float *x, cudaStream_t s);                  /* x *= alpha */
/* SwiGLU (mlp.c): h = silu(a) b;  backward: db = dh silu(a), da = dh b silu'(a) (da may alias dh) */
void lk_swiglu_forward(size_t n, const float *a, const float *b, float *h, cudaStream_t s);
void lk_swiglu_backward(size_t n, const float *a, const float *b, const float *dh, float *da, float *db,
                        cudaStream_t s);
/* beta = sigmoid(x);  dx = dbeta beta (1 - beta) (overwritten) */
void lk_sigmoid_forward(size_t n, const float *x, float *y, cudaStream_t s);
void lk_sigmoid_backward(size_t n, const float *y, const float *dy, float *dx, cudaStream_t s);
/* elu + 1 (fmap.c LINA_FMAP_ELU1): y = x > 0 ? x + 1 : exp(x);  dx = dy (x > 0 ? 1 : exp(x)) */
void lk_elu1_forward(size_t n, const float *x, float *y, cudaStream_t s);
void lk_elu1_backward(size_t n, const float *x, const float *dy, float *dx, cudaStream_t s);
/* y (N, out) += b (out) per row;  db (out) += column sums of dy (N, out) */
void lk_add_bias(int N, int out, const float *b, float *y, cudaStream_t s);
void lk_bias_backward(int N, int out, const float *dy, float *db, cudaStream_t s);

/* ---- gates (mixer_linear.c) ---- */
/* Mamba2 / Gated DeltaNet, a (N, H) in place: a += dt_bias[h]; g = -exp(A_log[h]) softplus(a) */
void lk_scalar_gate_forward(int N, int H, float *a, const float *dt_bias, const float *A_log, float *g,
                            cudaStream_t s);
/* dA_log[h] += sum_n dg g;  da = dg (-exp(A_log)) sigmoid(a) (overwritten);  ddt_bias[h] += sum_n da */
void lk_scalar_gate_backward(int N, int H, const float *dg, const float *g, const float *a,
                             const float *A_log, float *da, float *dA_log, float *ddt_bias, cudaStream_t s);
/* GLA: g = logsigmoid(gl) / 16;  dgl = dg sigmoid(-gl) / 16 (overwritten) */
void lk_gla_gate_forward(size_t n, const float *gl, float *g, cudaStream_t s);
void lk_gla_gate_backward(size_t n, const float *gl, const float *dg, float *dgl, cudaStream_t s);

/* ---- normalized linear attention (ops.h normalize) through a ones column ----
 * v (R, V) -> vaug (R, V + 1) = [v, 1]; R = N H rows.
 * oaug (R, V + 1) = [num, den] -> o = num / (den + eps).
 * backward: doaug[:, :V] = do / (den + eps), doaug[:, V] = -(do . o) / (den + eps);
 * dv (R, V) = dvaug[:, :V]. */
void lk_append_ones(int R, int V, const float *v, float *vaug, cudaStream_t s);
void lk_normalize_forward(int R, int V, const float *oaug, float eps, float *o, cudaStream_t s);
void lk_normalize_backward(int R, int V, const float *oaug, float eps, const float *o, const float *d_o,
                           float *doaug, cudaStream_t s);
void lk_drop_last_column(int R, int V, const float *xaug, float *x, cudaStream_t s);

/* ---- LM head at scored rows (lm_head_at.c, loss.c) ---- */
void lk_gather_rows(int S, int D, const int32_t *rows, const float *x, float *xs, cudaStream_t s);
/* x[rows[i]] = xs[i] (x zeroed by the caller) */
void lk_scatter_rows(int S, int D, const int32_t *rows, const float *xs, float *x, cudaStream_t s);
/* logits (S, V) -> softmax probs in place; loss[i] = -log p(target_i) (targets all in [0, V)) */
void lk_cross_entropy_forward(int S, int V, float *logits, const int32_t *targets, float *loss,
                              cudaStream_t s);
/* probs (S, V) -> dlogits = scale (probs - onehot) in place */
void lk_cross_entropy_backward(int S, int V, float *probs, const int32_t *targets, float scale,
                               cudaStream_t s);

/* ---- optimizer (adamw.c, schedule.c) ---- */
/* *out = sum x^2 in double (out: one device double, overwritten) */
void lk_sum_squares(size_t n, const float *x, double *out, cudaStream_t s);
/* m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr ((m/bc1) / (sqrt(v/bc2) + eps) + wd p [decay]) */
void lk_adamw_step(size_t n, float *p, const float *g, float *m, float *v, const uint8_t *decay, float lr,
                   float b1, float b2, float eps, float wd, float bc1, float bc2, cudaStream_t s);

/* ---- causal softmax attention (lm_softmax.cu; lina_softmax_forward / _backward, one group per head) ----
 * q, k (B, T, H, K), v, o (B, T, H, V), lse (B, T, H) natural-log sum of exp of the scaled scores,
 * scale 1/sqrt(K). ws: lk_softmax_ws_floats(B, T, H) floats of device workspace.
 * Backward: dq, dk, dv overwritten. Uses cuBLAS strided-batched GEMMs on `blas` (whose stream
 * the caller set to s). */
size_t lk_softmax_ws_floats(int B, int T, int H);
void lk_softmax_forward(cublasHandle_t blas, int B, int T, int H, int K, int V, const float *q,
                        const float *k, const float *v, float *o, float *lse, float *ws, cudaStream_t s);
void lk_softmax_backward(cublasHandle_t blas, int B, int T, int H, int K, int V, const float *q,
                         const float *k, const float *v, const float *o, const float *lse,
                         const float *d_o, float *dq, float *dk, float *dv, float *ws, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
