/* lina feature maps phi applied to q and k before a linear-attention op,
 * forward and backward. Layout x (B, T, H, D) -> y (B, T, H, out_dim). */
#ifndef LINA_FMAP_H
#define LINA_FMAP_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LINA_FMAP_IDENTITY = 0,
    LINA_FMAP_ELU1,      /* elu(x) + 1 (Transformers are RNNs) */
    LINA_FMAP_RELU,
    LINA_FMAP_L2NORM,    /* x / sqrt(||x||^2 + eps) (DeltaNet, Cottention) */
    LINA_FMAP_COSFORMER, /* [relu(x) cos(pi t / 2M), relu(x) sin(pi t / 2M)], out 2D */
    LINA_FMAP_FAVOR,     /* Performer FAVOR+ exp(W x - |x|^2/2) / sqrt(M), out M; phi(q).phi(k)
                            estimates exp(q.k): scale q, k by D^(-1/4) for softmax attention */
    LINA_FMAP_TAYLOR,    /* Based: [1, x / D^(1/4), vec(x x^T) / (sqrt(2) sqrt(D))], out 1+D+D^2 */
    LINA_FMAP_DPFP,      /* deterministic parameter-free projection, out 2 D nu:
                            x' = [relu(x), relu(-x)], y[(j-1) 2D + i] = x'_i x'_{(i-j) mod 2D} */
    LINA_FMAP_HEDGEHOG   /* [softmax(x W), softmax(-x W)] with learnable W (D, M), out 2M */
} lina_fmap_kind;

typedef struct {
    lina_fmap_kind kind;
    int D;       /* input dim */
    int M;       /* FAVOR: random features; HEDGEHOG: projection width; COSFORMER: horizon (0 = T) */
    int nu;      /* DPFP order (default 1) */
    float eps;   /* L2NORM epsilon (default 1e-6) */
} lina_fmap_desc;

lina_fmap_desc lina_fmap_desc_default(lina_fmap_kind kind, int D);
int lina_fmap_out_dim(const lina_fmap_desc *d);
/* Number of parameters in W (FAVOR: M*D fixed random matrix, HEDGEHOG: D*M learnable), else 0. */
int lina_fmap_n_params(const lina_fmap_desc *d);
/* Fill W for FAVOR (orthogonal Gaussian rows) or HEDGEHOG (identity-like init) from a seed. */
lina_status lina_fmap_init_params(const lina_fmap_desc *d, uint64_t seed, float *W);
lina_fmap_kind lina_fmap_parse(const char *name, int *ok);
const char *lina_fmap_name(lina_fmap_kind kind);

/* pos: (T) positions for COSFORMER in [0, M] (NULL means 0..T-1). W as above or NULL. */
lina_status lina_fmap_forward(lina_ctx *ctx, const lina_fmap_desc *d, int B, int T, int H,
                              const float *x, const float *W, const int32_t *pos, float *y);
/* dx is overwritten; dW (if the map has learnable params and dW != NULL) is accumulated. */
lina_status lina_fmap_backward(lina_ctx *ctx, const lina_fmap_desc *d, int B, int T, int H,
                               const float *x, const float *W, const int32_t *pos, const float *dy,
                               float *dx, float *dW);

#ifdef __cplusplus
}
#endif
#endif
