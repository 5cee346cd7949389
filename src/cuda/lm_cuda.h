/* The language model's training path on the GPU (internal; lm_cuda.c).
 *
 * A lina_cuda_lm mirrors one host lina_model: the same flat parameter layout
 * (every tensor at its host offset) in device memory, plus the gradients, the
 * AdamW moments and the activations of the last forward. src/models/lm.c,
 * lm_head_at.c, src/training/adamw.c and schedule.c dispatch to it while the
 * model is attached (lina_model_use_cuda); the host parameters are refreshed
 * by lina_cuda_lm_download. Mixers: gated_deltanet, deltanet, gla, mamba2,
 * retnet, linear (elu+1) and softmax, with or without short convolutions.
 */
#ifndef LINA_LM_CUDA_H
#define LINA_LM_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "lina/model.h"

typedef struct lina_cuda_lm lina_cuda_lm;

/* Upload m's parameters; fails with LINA_ERR_UNSUPPORTED naming a mixer without a GPU path. */
lina_status lina_cuda_lm_create(lina_model *m, lina_cuda_lm **out);
void lina_cuda_lm_free(lina_cuda_lm *g);

/* lina_model_forward_scored on the device (same checks, same loss). logits (S, V) copied to the
 * host if not NULL. */
lina_status lina_cuda_lm_forward_scored(lina_cuda_lm *g, int B, int T, const int32_t *tokens,
                                        const int32_t *targets, float *logits, float *loss,
                                        int *n_scored);
lina_status lina_cuda_lm_backward(lina_cuda_lm *g, float grad_scale);
lina_status lina_cuda_lm_zero_grads(lina_cuda_lm *g);
/* Global gradient norm (double sum of squares, as lina_clip_grad_norm); scales by
 * max_norm / (norm + 1e-6) when above max_norm > 0. */
lina_status lina_cuda_lm_clip(lina_cuda_lm *g, float max_norm, float *norm);
/* One AdamW step of lina_adamw_step's math; m, v, decay are the optimizer's host arrays,
 * uploaded when `key` or the step count t (before this step) differ from what the
 * device holds. */
lina_status lina_cuda_lm_adamw(lina_cuda_lm *g, const void *key, float *m, float *v,
                               const uint8_t *decay, size_t n, const float cfg[4] /* b1 b2 eps wd */,
                               int64_t t, float lr);
/* Copy the device's parameters (and gradients, and the moments of optimizer `key`) to the
 * host arrays that are not NULL. Moments are copied only if the device holds key's. */
lina_status lina_cuda_lm_download(lina_cuda_lm *g, float *params, float *grads, const void *key,
                                  float *m, float *v);

#endif
