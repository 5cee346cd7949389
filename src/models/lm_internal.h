/* The language model's internals (src/models/lm*.c). */
#ifndef LINA_LM_INTERNAL_H
#define LINA_LM_INTERNAL_H

#include "../layers/layers.h"
#include "../cuda/lm_cuda.h"
#include "../layers/mixer.h"
#include "lina/model.h"

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[4];
    size_t numel, offset;
    int decays;
    lina_init_kind init;
    lina_param *slot;
} lina_tensor_entry;

struct lina_param_registry {
    lina_tensor_entry *t;
    int n, cap;
    size_t total;
    int oom;
};

typedef struct {
    lina_param attn_norm, mlp_norm, gate_proj, up_proj, down_proj;
    lina_mixer *mixer;
    /* saved activations (N rows) */
    float *x_in, *xn1, *rstd1, *xmid, *xn2, *rstd2, *a, *b, *h;
} lina_block;

struct lina_model {
    lina_model_config cfg;
    lina_ctx *ctx;
    int threads;
    float *params, *grads; /* n_params each */
    size_t n_params;
    lina_param_registry reg;
    lina_param embed, final_norm, lm_head; /* lm_head.w == embed.w when tied */
    lina_block layer[LINA_MODEL_MAX_LAYERS];

    /* activations of the last forward */
    int cap, B, T, n_valid, have_targets;
    float *act;                  /* one allocation for all below */
    float *x_out, *xf, *rstdf, *probs; /* (N, D), (N, D), (N), (N, vocab) */
    float *tmp, *dx, *dmid, *dxn, *dxf; /* (N, D) */
    float *da, *db;              /* (N, I) */
    int32_t *tokens, *targets;   /* (N) */
    /* scored-rows head (lm_head_at.c): n_head_rows > 0 after lina_model_forward_scored */
    int n_head_rows, head_cap;
    int32_t *head_rows, *head_targets; /* (head_cap) each, one allocation */
    lina_cuda_lm *cuda; /* the device copy training runs on (lina_model_use_cuda), or NULL */
    int host_stale;     /* 1 after a device optimizer step until lina_model_sync_host */
};

/* lina_model_create; init = 0 leaves the weights zero (a checkpoint fills them). */
lina_status lina_lm_create(const lina_model_config *c, uint64_t seed, int init, lina_model **out);

/* Run the trunk over B x T tokens (states: one per layer, or NULL; B == 1 with
 * states) and leave the final normed hidden rows in m->xf. */
lina_status lina_lm_trunk(lina_model *m, int B, int T, const int32_t *tokens,
                          lina_mixer_state *states, int pos0);
/* logits (rows, vocab) = xf[rows] W_head^T */
void lina_lm_head(lina_model *m, int row0, int rows, float *logits);
/* Backward of the scored-rows head (lm_head_at.c): d(loss)/d(xf) into m->dxf. */
void lina_lm_head_at_backward(lina_model *m, float grad_scale);

struct lina_gen_state {
    lina_model_config cfg;
    float *logits;   /* (vocab) logits after the last consumed token */
    int have_logits; /* 0 until a token was consumed */
    int pos;
    int n_layers;
    lina_mixer_state st[LINA_MODEL_MAX_LAYERS];
};

/* The host moments of an optimizer (adamw.c), for lina_model_sync_host. */
void lina_adamw_moments(lina_adamw *o, float **m, float **v);

/* splitmix64 stream shared by init and sampling */
uint64_t lina_sm64_next(uint64_t *s);
double lina_sm64_uniform(uint64_t *s);  /* [0, 1) */
double lina_sm64_normal(uint64_t *s);

#endif
