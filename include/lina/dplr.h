/* lina DPLR op: the generalized (diagonal plus rank-1) delta rule of RWKV-7,
 * in fla's convention (fla/ops/generalized_delta_rule/dplr, fla/ops/rwkv7).
 *
 * Per sequence and head, the state S_t is K x V (fp32 outside, lina's
 * orientation: rows are key channels). With w_t the per-channel log-decay:
 *   u_t = S_{t-1}^T a_t                                   (V)   read with a
 *   S_t = diag(exp(w_t)) S_{t-1} + b_t u_t^T + k_t v_t^T  (K x V)
 *   o_t = scale * S_t^T r_t                               (V)
 * The rank-1 term reads the UNGATED previous state. RWKV-7 uses a = -kk,
 * b = kk * iclr (kk the normalized key), so S_t = S_{t-1} (diag(exp(w_t)) -
 * kk kk^T iclr)-style transitions. fla's rwkv7 "w" is log_w = -exp(w); this
 * op takes log_w directly.
 *
 * Layout [B, T, H, D]: r, k, a, b, w are (B, T, H, K); v, o (B, T, H, V);
 * states (N, H, K, V) with N = B, or n_seqs with cu_seqlens (B must be 1,
 * sequences packed along T, empty sequences allowed).
 */
#ifndef LINA_DPLR_H
#define LINA_DPLR_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int B, T, H, K, V;
    float scale;    /* 0 means 1/sqrt(K); RWKV-7 uses 1 */
    lina_form form; /* AUTO (= CHUNK), RECURRENT (double-precision reference) or CHUNK */
    int chunk;      /* chunk size of the chunkwise form (0 means 64) */
    const int64_t *cu_seqlens; /* (n_seqs+1) packed offsets or NULL */
    int n_seqs;
} lina_dplr_desc;

lina_dplr_desc lina_dplr_desc_default(void);
int lina_dplr_n_states(const lina_dplr_desc *d);

typedef struct {
    const float *r, *k, *v, *a, *b;
    const float *w;  /* log-decays, finite and <= 0 (below -1000 treated as -1000) */
    const float *h0; /* (N, H, K, V) or NULL for zeros */
    float *o;        /* (B, T, H, V) */
    float *ht;       /* (N, H, K, V) or NULL; may alias h0 */
} lina_dplr_fwd_args;

lina_status lina_dplr_forward(lina_ctx *ctx, const lina_dplr_desc *d, const lina_dplr_fwd_args *a);

/* Backward: recomputes from the inputs; gradients are overwritten. dh0 and
 * dht may be NULL (dht NULL means zero). */
typedef struct {
    const float *r, *k, *v, *a, *b, *w, *h0;
    const float *dout; /* (B, T, H, V) */
    const float *dht;  /* (N, H, K, V) or NULL */
    float *dr, *dk, *dv, *da, *db, *dw;
    float *dh0; /* or NULL */
} lina_dplr_bwd_args;

lina_status lina_dplr_backward(lina_ctx *ctx, const lina_dplr_desc *d, const lina_dplr_bwd_args *a);

/* One decoding step for N = d->B sequences (T, cu_seqlens ignored):
 * r, k, a, b, w (N, H, K), v (N, H, V); state (N, H, K, V) updated in place;
 * o (N, H, V). */
lina_status lina_dplr_step(lina_ctx *ctx, const lina_dplr_desc *d, const float *r, const float *k,
                           const float *v, const float *a, const float *b, const float *w,
                           float *state, float *o);

#ifdef __cplusplus
}
#endif
#endif
