/* lina model: a decoder-only language model built from linear-attention (and
 * softmax) token mixers, trainable in C (hand-written backward) and decodable
 * with constant memory per token.
 *
 *   tokens -> embedding -> N x [ x += mixer(RMSNorm(x)); x += SwiGLU(RMSNorm(x)) ]
 *          -> RMSNorm -> LM head (tied to the embedding or not) -> logits
 *
 * Parameters live in one contiguous float buffer carved into named tensors
 * with fla's names ("model.layers.0.attn.q_proj.weight", ...); gradients use
 * a second buffer with the same layout. Checkpoints are config.json +
 * model.safetensors (docs/MODELS.md).
 */
#ifndef LINA_MODEL_H
#define LINA_MODEL_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LINA_MODEL_MAX_LAYERS 64

/* Token mixers (one per layer, so hybrids are a list). */
typedef enum {
    LINA_MIXER_GATED_DELTANET = 0, /* conv+silu q/k/v, L2 q/k, beta, g = -exp(A_log) softplus(a + dt_bias), gated o_norm */
    LINA_MIXER_SOFTMAX,            /* causal softmax attention with rotary embeddings */
    LINA_MIXER_DELTANET,           /* conv+silu q/k/v, L2 q/k, beta, o_norm (no gate) */
    LINA_MIXER_GLA,                /* vector gate logsigmoid(gk_proj x)/16, low-rank gk_proj, gated o_norm */
    LINA_MIXER_MAMBA2,             /* scalar decay g = -exp(A_log) softplus(a + dt_bias), gated o_norm (simple GLA) */
    LINA_MIXER_RETNET,             /* constant decay log(1 - 2^(-5-h)), rotary q/k, gated o_norm */
    LINA_MIXER_LINEAR,             /* feature map phi(q), phi(k) (elu+1), normalized, o_norm */
    LINA_MIXER_HGRN2,              /* q = silu, k = 1 - f, vector gate log f, f = sigmoid(f_proj x); o_norm */
    LINA_MIXER_COSFORMER,          /* [relu(x) cos(pi t / 2M), relu(x) sin(pi t / 2M)] on q, k, M = max_seq; normalized */
    LINA_MIXER_PERFORMER,          /* FAVOR+ positive random features (fixed favor_proj, K log K rows); normalized */
    LINA_MIXER_HEDGEHOG,           /* [softmax(x W), softmax(-x W)], learnable W per q / k (K, K); normalized */
    LINA_MIXER_COUNT
} lina_mixer_kind;

const char *lina_mixer_name(lina_mixer_kind k); /* "gated_deltanet", "softmax", ... */
/* Parse a name; returns -1 if unknown. */
int lina_mixer_parse(const char *name);

typedef struct {
    int vocab_size;        /* 256 for byte-level */
    int dim;               /* hidden size */
    int n_layers;
    int n_heads;
    int head_k_dim;        /* 0 means dim / n_heads */
    int head_v_dim;        /* 0 means head_k_dim */
    int intermediate;      /* SwiGLU width; 0 means 8/3 dim rounded up to a multiple of 32 */
    int conv_size;         /* short convolution width (default 4) */
    int gate_low_rank;     /* GLA gk_proj rank (default 16) */
    int max_seq;           /* longest sequence a softmax layer accepts when decoding (default 2048) */
    int tie_embeddings;    /* LM head shares the embedding matrix */
    int short_conv_all;    /* 1: a short convolution (+ SiLU) on q, k, v in every linear mixer but
                            * HGRN2, as Zoology's MQAR models have; 0: fla's defaults (only the
                            * delta-rule mixers have one) */
    float norm_eps;        /* RMSNorm epsilon (default 1e-6) */
    float rope_theta;      /* rotary base (default 10000) */
    float init_std;        /* weight init standard deviation (default 0.02) */
    lina_mixer_kind mixer[LINA_MODEL_MAX_LAYERS];
} lina_model_config;

/* Defaults: byte vocab, dim 64, 2 layers, 4 heads, Gated DeltaNet everywhere. */
lina_model_config lina_model_config_default(void);
/* Named presets: "tiny" (dim 64, 2 layers), "small" (dim 128, 4 layers),
 * "base" (dim 256, 6 layers). Keeps the mixers of *c. */
lina_status lina_model_config_preset(lina_model_config *c, const char *name);
/* Fill the zeros with defaults and check everything; errors name the field. */
lina_status lina_model_config_validate(lina_model_config *c);
/* config.json text (Hugging Face style, "model_type": "lina") and back. */
lina_status lina_model_config_to_json(const lina_model_config *c, char **json_out); /* free() it */
lina_status lina_model_config_from_json(const char *json, lina_model_config *c);
lina_status lina_model_config_load(const char *path, lina_model_config *c);

typedef struct lina_model lina_model;

/* A model with randomly initialized weights (deterministic for a seed). */
lina_status lina_model_create(const lina_model_config *c, uint64_t seed, lina_model **out);
void lina_model_free(lina_model *m);
const lina_model_config *lina_model_get_config(const lina_model *m);
/* Thread count for all the model's work (<= 0: all cores). Results never depend on it. */
lina_status lina_model_set_threads(lina_model *m, int n);

/* The parameter and gradient buffers (n_params floats each) and the named tensors. */
size_t lina_model_n_params(const lina_model *m);
float *lina_model_params(lina_model *m);
float *lina_model_grads(lina_model *m);
int lina_model_n_tensors(const lina_model *m);
/* Name, shape and offset (in floats) of tensor i; returns its number of dims. */
int lina_model_tensor_info(const lina_model *m, int i, const char **name, int64_t shape[4],
                           size_t *offset);
/* 1 if tensor i should get weight decay (matrices and embeddings, not norms/biases/gate params). */
int lina_model_tensor_decays(const lina_model *m, int i);
/* Pointer to a named parameter tensor, or NULL. */
float *lina_model_find(lina_model *m, const char *name, size_t *numel);

/* Forward over B sequences of T tokens (B*T int32 in [0, vocab)). With
 * targets (B*T) returns the mean cross-entropy in *loss (targets < 0 are
 * ignored); logits (B, T, vocab) are written if non-NULL. */
lina_status lina_model_forward(lina_model *m, int B, int T, const int32_t *tokens,
                               const int32_t *targets, float *logits, float *loss);
/* The same loss with the LM head computed only at the S positions whose target
 * is >= 0 (error if there are none): gathers their final hidden rows, head GEMM
 * and softmax-CE on S rows; lina_model_backward then scatters the gradient
 * back and gives the dense path's gradients. logits (S, vocab), scored rows in
 * order, are written if non-NULL; *n_scored = S if non-NULL. For tasks that
 * score few positions (MQAR). */
lina_status lina_model_forward_scored(lina_model *m, int B, int T, const int32_t *tokens,
                                      const int32_t *targets, float *logits, float *loss,
                                      int *n_scored);
/* Backward of the last forward (which must have had targets): ACCUMULATES
 * grad_scale * d(loss)/d(params) into the gradient buffer. */
lina_status lina_model_backward(lina_model *m, float grad_scale);
void lina_model_zero_grads(lina_model *m);

/* ---- training on the GPU (CUDA builds; lm_device.c, src/cuda/lm_cuda.c) ----
 * lina_model_use_cuda copies the parameters to the device; from then on
 * lina_model_forward_scored, lina_model_forward (with targets, without
 * logits), lina_model_backward, lina_model_zero_grads, lina_clip_grad_norm and
 * lina_adamw_step run there in fp32 (cuBLAS FP32 GEMMs; LINA_CUDA_TF32=1 allows
 * TF32 for the projections), and lina_model_params / lina_model_grads are
 * stale until lina_model_sync_host (after a device optimizer step, the CPU
 * paths (generation) refuse to run until then). lina_model_save syncs the parameters
 * itself; an optimizer's moments reach the host through lina_model_sync_host
 * (call it before lina_adamw_save). Mixers: gated_deltanet, deltanet, gla,
 * mamba2, retnet, linear (elu+1) and softmax; others get LINA_ERR_UNSUPPORTED.
 * Builds without CUDA return LINA_ERR_UNSUPPORTED. */
struct lina_adamw;
lina_status lina_model_use_cuda(lina_model *m);
int lina_model_on_cuda(const lina_model *m);
/* Parameters (and, if opt is not NULL, its moments) device -> host. */
lina_status lina_model_sync_host(lina_model *m, struct lina_adamw *opt);
/* Sync the parameters to the host and free the device copy (no-op when not attached). */
lina_status lina_model_release_cuda(lina_model *m);

/* Checkpoints: dir/config.json + dir/model.safetensors, each written atomically. */
lina_status lina_model_save(const lina_model *m, const char *dir);
lina_status lina_model_load(const char *dir, lina_model **out);

/* ---- generation: constant memory per token for linear mixers ---- */

/* Decoding state of one sequence: per linear layer the matrix state (H, K, V)
 * and the last conv_size-1 conv inputs; per softmax layer a KV cache (max_seq). */
typedef struct lina_gen_state lina_gen_state;

lina_status lina_gen_state_create(const lina_model *m, lina_gen_state **out);
void lina_gen_state_free(lina_gen_state *s);
void lina_gen_state_reset(lina_gen_state *s);
int lina_gen_state_pos(const lina_gen_state *s); /* tokens consumed so far */
/* A deep copy (fork). */
lina_status lina_gen_state_clone(const lina_gen_state *s, lina_gen_state **out);
/* Save/load to a safetensors file, bit-exact. Load checks it fits the model. */
lina_status lina_gen_state_save(const lina_gen_state *s, const char *path);
lina_status lina_gen_state_load(const lina_model *m, const char *path, lina_gen_state **out);
/* Logits (vocab) after the last consumed token (saved with the state), or NULL. */
const float *lina_gen_state_logits(const lina_gen_state *s);
/* Bytes held by the state (constant for linear models, grows for softmax). */
size_t lina_gen_state_bytes(const lina_gen_state *s);

/* Consume n tokens (prefill with the chunkwise form when the state is fresh,
 * else token by token) and write the logits (vocab) after the last one. */
lina_status lina_model_prefill(lina_model *m, lina_gen_state *s, int n, const int32_t *tokens,
                               float *logits);
/* Consume one token with the recurrent step; logits (vocab) for the next. */
lina_status lina_model_step(lina_model *m, lina_gen_state *s, int32_t token, float *logits);

typedef struct {
    float temperature; /* 0: greedy (argmax); default 1 */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
} lina_sampler;

lina_sampler lina_sampler_default(void);
/* Pick a token from logits (vocab) with the random state *rng (advanced). */
int lina_sample(const lina_sampler *s, const float *logits, int vocab, uint64_t *rng);

/* ---- training ---- */

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} lina_adamw_config;

lina_adamw_config lina_adamw_default(void); /* lr 1e-3, 0.9, 0.95, 1e-8, wd 0.1 */

typedef struct lina_adamw lina_adamw;

lina_status lina_adamw_create(const lina_model *m, const lina_adamw_config *c, lina_adamw **out);
void lina_adamw_free(lina_adamw *o);
/* One step at learning rate lr: decoupled weight decay on the tensors that decay. */
lina_status lina_adamw_step(lina_adamw *o, lina_model *m, float lr);
int64_t lina_adamw_steps(const lina_adamw *o);
/* Moments + step count to/from a safetensors file (for --resume). */
lina_status lina_adamw_save(const lina_adamw *o, const char *path);
lina_status lina_adamw_load(lina_adamw *o, const char *path);

/* Global L2 norm of the gradients; if max_norm > 0 and it is larger, scale
 * the gradients down to max_norm. Returns the norm before clipping. */
float lina_clip_grad_norm(lina_model *m, float max_norm);

/* Linear warmup for `warmup` steps, then cosine decay to min_lr at `total`. */
float lina_lr_schedule(int64_t step, int64_t warmup, int64_t total, float max_lr, float min_lr);


/* ---- training data: a text file as byte tokens ---- */

typedef struct lina_text_data lina_text_data;

/* Read a whole file; the first (1 - val_frac) of it is the training split, the
 * rest validation. Errors on a missing or empty file. */
lina_status lina_text_data_load(const char *path, float val_frac, lina_text_data **out);
void lina_text_data_free(lina_text_data *d);
/* Bytes in split 0 (train) or 1 (validation). */
size_t lina_text_data_len(const lina_text_data *d, int split);
/* B windows of T+1 bytes from a split at offsets drawn from (seed, stream):
 * inputs (B, T), targets shifted by one. Errors if the split is shorter than T+1. */
lina_status lina_text_data_batch(const lina_text_data *d, int split, int B, int T, uint64_t seed,
                                 uint64_t stream, int32_t *inputs, int32_t *targets);

/* ---- one optimizer step: accumulation, clipping, schedule, AdamW ---- */

typedef struct {
    int batch, seq, accum;      /* micro-batch B x T, micro-batches per step */
    int64_t steps, warmup;      /* schedule length and warmup */
    float lr, min_lr, clip;     /* clip <= 0: off */
    uint64_t seed;              /* batches of step s depend only on (seed, s) */
} lina_train_config;

typedef struct {
    float loss;      /* mean over the micro-batches */
    float grad_norm; /* before clipping */
    float lr;
    int skipped;     /* 1 if the loss or gradient was not finite: no update */
} lina_train_result;

/* Step number `step` (0-based): identical results for any thread count and
 * when resumed from a checkpoint of model + optimizer. */
lina_status lina_train_step(lina_model *m, lina_adamw *opt, const lina_text_data *data,
                            const lina_train_config *c, int64_t step, lina_train_result *r);
/* Mean validation loss over n_batches fixed batches (the same every call). */
lina_status lina_eval_loss(lina_model *m, const lina_text_data *data, const lina_train_config *c,
                           int n_batches, float *loss);

#ifdef __cplusplus
}
#endif
#endif
