/* lina ops: the linear-attention recurrence in recurrent, chunkwise and
 * parallel form, forward and backward (DESIGN.md §2-3).
 *
 * Per sequence and value head, state S_t is K x V (fp32):
 *   S_t = G_t S_{t-1} [ - beta_t k_t (k_t^T G_t S_{t-1}) ] + beta_t k_t v_t^T     (delta term if DELTA)
 *   o_t = scale * S_t^T q_t    [ / (scale * q_t . z_t + eps) if normalize ]
 * G_t = exp(g_t): a scalar (CONST, SCALAR) or diag(exp(g_t)) over K (VECTOR).
 * With the additive update beta is not used (beta_t = 1).
 */
#ifndef LINA_OPS_H
#define LINA_OPS_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LINA_GATE_NONE = 0,
    LINA_GATE_CONST = 1,  /* one log-decay per value head: g (HV) */
    LINA_GATE_SCALAR = 2, /* per token and value head: g (B, T, HV) */
    LINA_GATE_VECTOR = 3  /* per token, value head and key channel: g (B, T, HV, K) */
} lina_gate;

typedef enum {
    LINA_UPDATE_ADD = 0,  /* S += k v^T */
    LINA_UPDATE_DELTA = 1 /* S += beta k (v - S^T k)^T (after gating) */
} lina_update;

typedef enum {
    LINA_FORM_AUTO = 0,
    LINA_FORM_RECURRENT = 1, /* token by token: the readable reference, O(T K V) */
    LINA_FORM_CHUNK = 2,     /* chunkwise, GEMM-based, O(T C (K+V) + T K V) */
    LINA_FORM_PARALLEL = 3   /* quadratic, O(T^2 (K+V)) */
} lina_form;

typedef struct {
    int B;  /* batch; must be 1 when cu_seqlens is given */
    int T;  /* tokens per batch row (total packed tokens with cu_seqlens) */
    int H;  /* q/k heads */
    int HV; /* value heads, a multiple of H (grouped heads); 0 means H */
    int K;  /* key dim */
    int V;  /* value dim */
    lina_gate gate;
    lina_update update;
    int normalize; /* additive only: divide by scale*q.z + eps, z_t = G_t z_{t-1} + k_t.
                      The state then has V+1 columns, the last one holding z. */
    float eps;     /* denominator epsilon (default 1e-6) */
    float scale;   /* 0 means 1/sqrt(K) */
    lina_form form;
    int chunk;                 /* chunk size of the chunkwise form (0 means 64) */
    const int64_t *cu_seqlens; /* (n_seqs+1) packed offsets, 0 = cu[0] <= ... <= cu[n] = T, or NULL */
    int n_seqs;
} lina_attn_desc;

lina_attn_desc lina_attn_desc_default(void);

/* Number of states N (n_seqs with cu_seqlens, else B) and state columns
 * (V, or V+1 when normalize). States are (N, HV, K, state_cols) fp32. */
int lina_attn_n_states(const lina_attn_desc *d);
int lina_attn_state_cols(const lina_attn_desc *d);
/* Elements of g for this descriptor's gate: CONST HV, SCALAR B*T*HV, VECTOR
 * B*T*HV*K, NONE 0. */
size_t lina_attn_gate_numel(const lina_attn_desc *d);
/* The form AUTO resolves to for this descriptor. */
lina_form lina_attn_resolve_form(const lina_attn_desc *d);

typedef struct {
    const float *q;    /* (B, T, H, K) */
    const float *k;    /* (B, T, H, K) */
    const float *v;    /* (B, T, HV, V) */
    const float *g;    /* log gates (<= 0 expected; any finite value accepted): see lina_gate, NULL for NONE */
    const float *beta; /* (B, T, HV), DELTA only */
    const float *h0;   /* (N, HV, K, state_cols) initial state, or NULL for zeros */
    float *o;          /* (B, T, HV, V) */
    float *ht;         /* (N, HV, K, state_cols) final state, or NULL; may alias h0 */
} lina_attn_fwd_args;

lina_status lina_attn_forward(lina_ctx *ctx, const lina_attn_desc *d, const lina_attn_fwd_args *a);

/* Backward: recomputes what it needs from the inputs (nothing is saved by the
 * forward). Gradients are overwritten, never accumulated. dg has the shape of
 * g (for CONST: (HV), summed over batch and time). dbeta is required for
 * DELTA, dg for any gate; dh0 may be NULL; dht may be NULL (zero). */
typedef struct {
    const float *q, *k, *v, *g, *beta, *h0;
    const float *dout; /* (B, T, HV, V) */
    const float *dht;  /* (N, HV, K, state_cols) or NULL */
    float *dq, *dk;    /* (B, T, H, K) */
    float *dv;         /* (B, T, HV, V) */
    float *dg;         /* like g */
    float *dbeta;      /* (B, T, HV) */
    float *dh0;        /* (N, HV, K, state_cols) or NULL */
} lina_attn_bwd_args;

lina_status lina_attn_backward(lina_ctx *ctx, const lina_attn_desc *d, const lina_attn_bwd_args *a);

/* Single-token decoding step for N = d->B sequences (d->T and cu_seqlens are
 * ignored): q, k (N, H, K), v (N, HV, V), g (HV) | (N, HV) | (N, HV, K),
 * beta (N, HV); state (N, HV, K, state_cols) is updated in place; o (N, HV, V). */
lina_status lina_attn_step(lina_ctx *ctx, const lina_attn_desc *d, const float *q, const float *k,
                           const float *v, const float *g, const float *beta, float *state, float *o);

/* FLOP count of one forward call in the given form (for benchmarks). */
double lina_attn_flops(const lina_attn_desc *d, lina_form form);

#ifdef __cplusplus
}
#endif
#endif
