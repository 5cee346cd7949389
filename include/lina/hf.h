/* lina hf: run public linear-attention checkpoints in Hugging Face layout
 * (a directory with config.json and model.safetensors, or shards listed in
 * model.safetensors.index.json; F32, F16 or BF16 weights, computed in f32).
 *
 * Supported model_type values and the reference each one matches:
 *   "gla"       flash-linear-attention GLAForCausalLM
 *   "delta_net" flash-linear-attention DeltaNetForCausalLM
 *   "mamba2"    Hugging Face transformers Mamba2ForCausalLM
 *   "gated_deltanet" fla GatedDeltaNetForCausalLM
 *   "retnet"         fla RetNetForCausalLM (MultiScaleRetention)
 *   "hgrn2"          fla HGRN2ForCausalLM
 *   "linear_attn"    fla LinearAttentionForCausalLM
 *   "rwkv7"          fla RWKV7ForCausalLM (also "rwkv7_fla"; DPLR op of lina/dplr.h;
 *                    checked against a self-written float64 reference only)
 * (the last four are checked against self-written float64 oracles of fla's
 * math, tests/data/hf_fla_oracle/, since fla runs them only on GPUs)
 *   "qwen3_next"     Hugging Face transformers Qwen3NextForCausalLM (Gated DeltaNet +
 *                    gated softmax attention layers, sparse MoE with a shared expert)
 *
 * A model is read-only after loading; the recurrent state of a batch of
 * sequences (short-convolution history and attention states) lives in a
 * separate lina_hf_state, so one model can serve several generations. */
#ifndef LINA_HF_H
#define LINA_HF_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lina_hf_model lina_hf_model;
typedef struct lina_hf_state lina_hf_state;

/* Load and validate a model directory. Errors name the file, the config field
 * or the tensor, and the offending value. */
lina_status lina_hf_load(const char *dir, lina_hf_model **out);
void lina_hf_free(lina_hf_model *m);

const char *lina_hf_model_type(const lina_hf_model *m);
int lina_hf_vocab_size(const lina_hf_model *m);
int lina_hf_hidden_size(const lina_hf_model *m);
int lina_hf_num_layers(const lina_hf_model *m);

/* State of B sequences, all starting empty. */
lina_status lina_hf_state_create(const lina_hf_model *m, int B, lina_hf_state **out);
void lina_hf_state_free(lina_hf_state *s);
void lina_hf_state_reset(lina_hf_state *s);

/* Feed T tokens of each of the B sequences (ids (B, T), row-major), continuing
 * from and updating `state` (NULL: a fresh empty state, discarded after).
 * T > 1 runs the chunkwise/parallel attention forms; T == 1 the recurrent step.
 * logits (B, T, vocab) for every position, or NULL. Token ids outside
 * [0, vocab) are an error naming the position and value. */
lina_status lina_hf_forward(lina_ctx *ctx, const lina_hf_model *m, lina_hf_state *state, int B, int T,
                            const int64_t *ids, float *logits);

/* Greedy continuation of one prompt: prefill n_prompt tokens, then decode
 * max_new tokens one at a time (argmax, first index on ties). out receives the
 * max_new new ids. */
lina_status lina_hf_generate_greedy(lina_ctx *ctx, const lina_hf_model *m, const int64_t *prompt, int n_prompt,
                                    int max_new, int64_t *out);

/* Convert a checkpoint directory between lina's own format (config.json
 * "model_type": "lina", include/lina/model.h) and the fla layout of the same
 * architecture (gated_deltanet, delta_net, gla, retnet; one mixer in every layer),
 * either way by the source's model_type. dst is created; its config.json and
 * model.safetensors are written (f32). Options lina's mixers do not have
 * (GVA heads, kv heads, no short conv, ...) are errors naming the field. */
lina_status lina_hf_convert(const char *src, const char *dst);

#ifdef __cplusplus
}
#endif
#endif
