/* Long Range Arena ListOps (Tay et al. 2020; Nangia & Bowman 2018): classify
 * the value 0-9 of a nested expression such as [MAX 2 9 [MIN 4 7 ] 0 ].
 *
 * Generator (same process as LRA lra_benchmarks/data/listops.py): a node at
 * depth d < max_depth is an operator with probability 1/4, else a digit
 * (depth max_depth is always a digit); an operator takes 2..max_args
 * arguments (uniform), each a node at depth d + 1; operators MIN, MAX,
 * MED (median, the mean of the two middle values truncated), SM (sum mod 10).
 * Trees are drawn until min_len <= tokens <= max_len (rejection sampling).
 * Tokens: 0..9 digits, 10 [MIN, 11 [MAX, 12 [MED, 13 [SM, 14 ]  (vocab 15).
 *
 * Classifier: embedding (+ learned positions), N layers of
 *   x += Wo mix(RMSNorm(x));  x += MLP(RMSNorm(x))   (SwiGLU MLP, hidden 2D)
 * with a bidirectional token mixer, a final RMSNorm, mean pooling over each
 * sequence's tokens, a linear head to 10 classes and cross-entropy. Batches
 * are packed (no padding): tokens (N) and cu_seqlens (B + 1).
 * Mixers: LINEAR  non-causal linear attention per head,
 *           o_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i) . sum_j phi(k_j)),
 *           phi = elu + 1 (Katharopoulos et al. 2020; LION's bidirectional form
 *           without decay);
 *         SOFTMAX bidirectional softmax attention (lina_softmax, causal = 0). */
#ifndef LINA_LISTOPS_H
#define LINA_LISTOPS_H

#include "core.h"
#include "io.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    LINA_LISTOPS_MIN = 10,
    LINA_LISTOPS_MAX = 11,
    LINA_LISTOPS_MED = 12,
    LINA_LISTOPS_SM = 13,
    LINA_LISTOPS_END = 14,
    LINA_LISTOPS_VOCAB = 15,
    LINA_LISTOPS_CLASSES = 10
};

typedef struct {
    int min_len, max_len; /* token count range, inclusive (LRA: 500, 2000) */
    int max_depth;        /* deepest node level, root = 1 (LRA: 10) */
    int max_args;         /* arguments per operator, 2..max_args (LRA: 10) */
} lina_listops_config;

lina_listops_config lina_listops_config_default(void); /* 500, 2000, 10, 10 */
/* Checks ranges; the message names the offending value. */
lina_status lina_listops_config_check(const lina_listops_config *c);

/* Token text ("[MAX", "]", "7"). */
const char *lina_listops_token_name(int token);

/* n examples from seed into tokens (n, max_len) (unused tail = -1), lengths (n)
 * and labels (n). Example i depends only on (seed, i). */
lina_status lina_listops_generate(const lina_listops_config *c, int n, uint64_t seed,
                                  int32_t *tokens, int32_t *lengths, int32_t *labels);

typedef enum { LINA_LISTOPS_LINEAR = 0, LINA_LISTOPS_SOFTMAX = 1 } lina_listops_mixer;

typedef struct {
    lina_listops_mixer mixer;
    int dim, layers, heads; /* dim % heads == 0 */
    int max_len;            /* learned positions 0..max_len-1; 0 = no positions */
} lina_listops_model_config;

typedef struct lina_listops_model lina_listops_model;

lina_status lina_listops_model_create(const lina_listops_model_config *c, uint64_t seed,
                                      lina_listops_model **out);
void lina_listops_model_free(lina_listops_model *m);
lina_status lina_listops_model_set_threads(lina_listops_model *m, int threads);
int64_t lina_listops_model_n_params(const lina_listops_model *m);
/* All parameters / gradients as one flat array (for tests and the optimizer). */
float *lina_listops_model_params(lina_listops_model *m);
float *lina_listops_model_grads(lina_listops_model *m);

/* Forward over a packed batch of B sequences: tokens (N), cu_seqlens (B + 1),
 * cu[0] = 0, cu[B] = N. logits (B, 10) if non-NULL. With labels (B) returns
 * the mean cross-entropy in *loss; with backward = 1 also ACCUMULATES the
 * parameter gradients of that loss. */
lina_status lina_listops_model_forward(lina_listops_model *m, int B, const int64_t *cu,
                                       const int32_t *tokens, const int32_t *labels, int backward,
                                       float *logits, double *loss);

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, clip; /* clip <= 0: off */
} lina_listops_adamw;

/* One AdamW step on the accumulated gradients (clipped to the global norm
 * clip), then zeroes them. Weight decay skips norms, biases and positions.
 * *grad_norm (may be NULL): the norm before clipping. */
lina_status lina_listops_model_step(lina_listops_model *m, const lina_listops_adamw *o,
                                    float *grad_norm);

/* Accuracy and mean cross-entropy over n generated examples (layout of
 * lina_listops_generate), `batch` sequences at a time. loss may be NULL. */
lina_status lina_listops_accuracy(lina_listops_model *m, int n, int stride,
                                  const int32_t *tokens, const int32_t *lengths,
                                  const int32_t *labels, int batch, double *accuracy,
                                  double *loss);

/* Safetensors I/O (src/models/listops_io.c). Tensors (F32): embed (15, D),
 * pos (max_len, D) (absent without positions), layers.<i>.{norm1 (D), wq, wk,
 * wv, wo (D, D), norm2 (D), w_gate, w_up (2D, D), w_down (D, 2D)}, norm (D),
 * head.weight (10, D), head.bias (10); metadata listops.{mixer, dim, layers,
 * heads, max_len}. With optimizer = 1 also adamw.m1, adamw.m2 (n_params, the
 * flat order of lina_listops_model_params) and metadata adamw.t (steps taken). */
lina_status lina_listops_model_write(const lina_listops_model *m, int optimizer, lina_st_writer *w);
/* The weights (optimizer = 0) to path, atomically (temp file + rename). */
lina_status lina_listops_model_save(const lina_listops_model *m, const char *path);
/* Exact restore of a file written by lina_listops_model_write: mixer, dim,
 * layers, heads and max_len must equal m's (the error names the first that
 * differs); optimizer = 1 also restores the AdamW moments and step count. */
lina_status lina_listops_model_restore(lina_listops_model *m, const lina_st_file *f, int optimizer);
/* Warm start from the weights of a model trained at other lengths: mixer,
 * dim, layers and heads must match (the error names the first that differs);
 * every weight is copied. Positions: rows 0..min(source, m)-1 are copied, rows
 * the source never trained keep m's initialization N(0, 0.02^2); a source
 * with positions into m without (or the reverse) is refused. The optimizer
 * state stays fresh. */
lina_status lina_listops_model_warm_start(lina_listops_model *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif
