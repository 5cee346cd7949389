/* lina softmax attention: the causal baseline, in the same [B, T, H, D] layout.
 * Streams over keys (online softmax) so memory stays O(T*D); the backward
 * recomputes probabilities from the saved log-sum-exp. */
#ifndef LINA_SOFTMAX_H
#define LINA_SOFTMAX_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int B, T;
    int H;       /* query heads */
    int HKV;     /* key/value heads, H % HKV == 0 (grouped-query attention); 0 means H */
    int K, V;    /* head dims of q/k and v */
    float scale; /* 0 means 1/sqrt(K) */
    int causal;  /* 1 (default): token t attends to s <= t; 0: bidirectional (encoders) */
    int window;  /* 0: unlimited; w > 0: attend to the last w keys only (sliding window),
                    t - w < s <= t; bidirectional: |t - s| < w */
    const int64_t *cu_seqlens; /* packed varlen batch (B must be 1), or NULL */
    int n_seqs;
} lina_softmax_desc;

lina_softmax_desc lina_softmax_desc_default(void);

/* q (B,T,H,K), k (B,T,HKV,K), v (B,T,HKV,V) -> o (B,T,H,V); lse (B,T,H) natural-log
 * sum of exp(scores), saved for the backward (may be NULL). */
lina_status lina_softmax_forward(lina_ctx *ctx, const lina_softmax_desc *d, const float *q,
                                 const float *k, const float *v, float *o, float *lse);

/* Gradients (overwritten). o and lse are the forward's outputs. */
lina_status lina_softmax_backward(lina_ctx *ctx, const lina_softmax_desc *d, const float *q,
                                  const float *k, const float *v, const float *o, const float *lse,
                                  const float *dout, float *dq, float *dk, float *dv);

/* KV cache for decoding: n_seqs independent sequences, each up to capacity tokens. */
typedef struct lina_kv_cache lina_kv_cache;

lina_status lina_kv_cache_create(int n_seqs, int HKV, int K, int V, int capacity,
                                 lina_kv_cache **out);
void lina_kv_cache_free(lina_kv_cache *c);
int lina_kv_cache_len(const lina_kv_cache *c, int seq);
void lina_kv_cache_reset(lina_kv_cache *c);
/* Append tokens to the cache of one sequence: k (n, HKV, K), v (n, HKV, V). */
lina_status lina_kv_cache_append(lina_kv_cache *c, int seq, int n, const float *k, const float *v);

/* One decoding step for every sequence: appends k (N,HKV,K), v (N,HKV,V) and
 * attends q (N,H,K) over the whole cache -> o (N,H,V). Errors when full. */
lina_status lina_softmax_decode(lina_ctx *ctx, lina_kv_cache *c, int H, float scale, const float *q,
                                const float *k, const float *v, float *o);

#ifdef __cplusplus
}
#endif
#endif
