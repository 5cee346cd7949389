/* Internal structures of the Hugging Face checkpoint runner (src/models/hf_*.c).
 *
 * Every architecture is a stack of pre-norm residual blocks:
 *   x = embed(ids)
 *   per layer: x += mixer(norm(x)) [; x += SwiGLU(mlp_norm(x))]   (fla models have the MLP)
 *   logits = lm_head(final_norm(x))
 * Activations are row-major (N, D) with N = B*T token rows. */
#ifndef LINA_HF_INTERNAL_H
#define LINA_HF_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "lina/hf.h"
#include "lina/io.h"
#include "lina/ops.h"

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        lina_status st_ = (x);                                                                                         \
        if (st_) return st_;                                                                                           \
    } while (0)

typedef enum { HF_GLA, HF_DELTA_NET, HF_MAMBA2, HF_GATED_DELTANET, HF_RETNET, HF_HGRN2, HF_LINEAR_ATTN, HF_RWKV7,
               HF_QWEN3_NEXT } hf_arch;

/* fla activations of q/k before the recurrence (DeltaNet qk_activation). */
typedef enum { HF_ACT_SILU, HF_ACT_RELU, HF_ACT_ELU_P1, HF_ACT_IDENTITY } hf_act;

typedef struct {
    const float *w; /* (C, W) depthwise taps, oldest input first */
    const float *b; /* (C) or NULL */
    int C;
} hf_conv;

typedef struct {
    /* shared by all: pre-mixer norm */
    const float *attn_norm; /* (D) */
    /* fla GLA / DeltaNet */
    const float *q_proj, *k_proj, *v_proj; /* (H*Kh, D), (Hkv*Kh, D), (Hkv*Vh, D) */
    hf_conv q_conv, k_conv, v_conv;        /* when use_short_conv */
    const float *gk0, *gk1, *gk1_b;        /* GLA gate: (r, D), (Hkv*Kh, r), (Hkv*Kh) */
    const float *g_proj;                   /* output gate (H*Vh, D) or NULL */
    const float *b_proj;                   /* DeltaNet beta (H, D) or NULL; Gated DeltaNet (HV, D) */
    const float *a_proj;                   /* Gated DeltaNet decay input (HV, D) */
    const float *f_proj, *i_proj;          /* HGRN2 forget (H*Kh, D) and input (D, D) projections (q in q_proj) */
    hf_conv f_conv, i_conv;                /* HGRN2 short convs (no activation) */
    const float *lower_bound;              /* HGRN2 forget-gate lower bound of this layer (H*Kh) or NULL */
    const float *fmap_w[2][2], *fmap_b[2][2]; /* linear_attn feature maps [q | k][layer1 | layer2] */
    /* Qwen3-Next (hf_qwen3_next.c); norm weights are stored as 1 + w */
    int q3n_full_attn;                     /* 1: gated softmax attention, 0: Gated DeltaNet */
    const float *in_qkvz, *in_ba;          /* GDN (2 Kd + 2 Vd, D), (2 HV, D), grouped per key head */
    const float *q_norm, *k_norm;          /* attention (hd) each */
    int mlp_width;                         /* dense MLP or shared-expert width */
    int n_experts;                         /* 0: dense MLP (mlp_gate/up/down) */
    const float *router, *shared_gate;     /* (E, D), (1, D) */
    const float **ex_gate, **ex_up, **ex_down; /* (E) pointers to (I, D), (I, D), (D, I); array owned by the model */
    const float *o_norm;                   /* (Vh) or NULL (no affine weight) */
    const float *o_proj;                   /* (D, H*Vh) */
    const float *mlp_norm, *mlp_gate, *mlp_up, *mlp_down; /* (D), (I, D), (I, D), (D, I) */
    /* Mamba2 */
    const float *in_proj;   /* (P, D), P = 2 d_mlp + I + conv_dim + H */
    hf_conv conv;           /* over conv_dim = I + 2 G N channels */
    const float *dt_bias;   /* (H); Gated DeltaNet (HV) */
    const float *A_log;     /* (H); Gated DeltaNet (HV) */
    const float *Dskip;     /* (H), or (I) with D_has_hdim */
    const float *gnorm;     /* (I) gated RMSNorm weight */
    const float *out_proj;  /* (D, I) */
} hf_layer;

struct lina_hf_model {
    char *dir;
    char model_type[32];
    hf_arch arch;
    int vocab, D, L;
    float norm_eps; /* block norms and final norm */

    /* fla mixers */
    int H, Hkv, Kh, Vh; /* heads, key/value heads (GLA MQA), head dims */
    int use_short_conv, conv_size;
    int use_output_gate; /* GLA */
    float gate_logit_normalizer, clamp_min; /* GLA; clamp_min = -INFINITY when unset */
    int use_beta, allow_neg_eigval, use_gate, qk_l2; /* DeltaNet */
    hf_act qk_act;
    int I_mlp; /* SwiGLU width */
    int HV;    /* Gated DeltaNet value heads (num_v_heads, a multiple of H) */
    int norm_affine; /* RetNet elementwise_affine: the per-head output norm has a weight */
    float rope_base; /* RetNet rotary base (fla RotaryEmbedding: 10000) */
    int use_lower_bound; /* HGRN2: model.lower_bounds (L, D) */
    /* linear_attn: feature map (hf_la_fmap in hf_linear_attn.c), its output dim, q/k sum
     * normalization, normalized attention (norm_feature_map) */
    int la_fmap, la_Kf, la_norm_q, la_norm_k, la_normalize, la_tie_fmap;
    /* Qwen3-Next: attention heads/kv heads/head dim, rotary dims and base; GDN heads; MoE */
    int qa_H, qa_Hkv, qa_hd, qa_rot;
    float qa_theta;
    int ql_Hk, ql_HV, ql_dk, ql_dv;
    int moe_E, moe_topk, moe_I, moe_norm_topk;

    /* Mamba2 */
    int m_I, m_G, m_N, m_P, m_dmlp, m_conv_dim, m_heads, m_head_dim;
    float dt_min, dt_max; /* time_step_limit (transformers) or dt_limit (fla) */
    int m_gated_norm;       /* rms_norm / rmsnorm: RMSNorm(y * silu(z)); else y * silu(z) */
    int m_norm_before_gate; /* fla: RMSNorm(y) * silu(z) */
    int m_norm_group;       /* channels per RMS: I (transformers) or I / n_groups (fla) */
    int m_D_hdim;           /* fla D_has_hdim: D skip per channel (I) instead of per head */

    struct hf_rwkv7_model *rwkv7; /* RWKV-7 weights and config (hf_rwkv7.c), owned through bufs */

    const float *embed;   /* (vocab, D) */
    const float *norm_f;  /* (D) */
    const float *lm_head; /* (vocab, D), may equal embed (tied) */
    hf_layer *layers;

    /* all f32 weights, owned */
    float **bufs;
    int n_bufs, cap_bufs;
};

/* Per-layer recurrent state of B sequences. */
typedef struct {
    float *conv_q, *conv_k, *conv_v; /* (B, W-1, C) history of the pre-conv inputs, oldest first */
    float *conv;                     /* Mamba2: (B, W-1, conv_dim) */
    float *S;                        /* (B, HV, K, V) attention state */
    /* element counts of the buffers above, set by the allocators that reset
     * generically (0: lina_hf_state_reset uses the architecture's shapes) */
    size_t n_conv_q, n_conv_k, n_conv_v, n_S;
    int64_t pos; /* tokens seen so far (rotary position of the next one; RetNet, Qwen3-Next) */
    float *kc, *vc; /* Qwen3-Next softmax layers: (B, kv_cap, Hkv, hd) keys and values so far */
    int64_t kv_cap;
} hf_layer_state;

struct lina_hf_state {
    const lina_hf_model *model;
    int B, n_layers;
    hf_layer_state *layers; /* (n_layers) */
    /* one-thread context for single-token steps: their work (B x heads small
     * states) is far below what pays for waking a thread team */
    lina_ctx *step_ctx;
};

/* ---- hf_config.c: config.json fields; errors name the file and the field ---- */
lina_status hf_cfg_int(const cJSON *cfg, const char *path, const char *key, int required, int def, int *out);
lina_status hf_cfg_float(const cJSON *cfg, const char *path, const char *key, int required, double def, double *out);
lina_status hf_cfg_bool(const cJSON *cfg, const char *path, const char *key, int def, int *out);
/* String or null (-> def); the result points into cfg or is def. */
lina_status hf_cfg_str(const cJSON *cfg, const char *path, const char *key, const char *def, const char **out);
int hf_cfg_has(const cJSON *cfg, const char *key);
/* LINA_ERR_UNSUPPORTED naming the field unless it is absent or null */
lina_status hf_cfg_require_null(const cJSON *cfg, const char *path, const char *key);
lina_status hf_read_json(const char *path, cJSON **out);

/* ---- hf_weights.c: the model's tensors (single file or shards) ---- */
typedef struct hf_weights hf_weights;
lina_status hf_weights_open(const char *dir, hf_weights **out);
void hf_weights_close(hf_weights *w);
int hf_weights_has(const hf_weights *w, const char *name);
/* Convert tensor `name` of the given shape to an f32 buffer owned by m.
 * required == 0 and the tensor absent: *out = NULL, LINA_OK. */
/* "model.layers.L.SUFFIX" with shape (d0[, d1[, d2]]) as hf_weights_get. */
lina_status hf_layer_get(hf_weights *w, lina_hf_model *m, int l, const char *suffix, int ndim, int64_t d0,
                         int64_t d1, int64_t d2, int required, const float **out);
/* The tail every fla block shares: attn.o_proj (D, vv), mlp_norm (D) and the SwiGLU
 * MLP (mlp.gate_proj, mlp.up_proj (I_mlp, D), mlp.down_proj (D, I_mlp)). */
lina_status hf_layer_out_mlp(hf_weights *w, lina_hf_model *m, int l, int64_t vv, hf_layer *L);
/* A short conv "attn.WHICH_conv1d.weight" (C, 1, conv_size) and optional bias (C). */
lina_status hf_layer_conv(hf_weights *w, lina_hf_model *m, int l, const char *which, int C, hf_conv *cv);
lina_status hf_weights_get(hf_weights *w, lina_hf_model *m, const char *name, int ndim, const int64_t *shape,
                           int required, const float **out);

/* ---- hf_blocks.c: the shared math ---- */
/* y (N, out) = x (N, in) W^T, W (out, in) as in torch.nn.Linear; b (out) or NULL. */
void hf_linear(int N, int in, int out, const float *x, const float *W, const float *b, float *y);
/* y = x / sqrt(mean(x^2) + eps) * w (w may be NULL) over rows of D; y may alias x. */
void hf_rmsnorm(int N, int D, const float *x, const float *w, float eps, float *y);
/* Causal depthwise conv over T tokens of B sequences, x (B, T, C) -> y (B, T, C),
 * y[t] = b + sum_i w[i] x[t - (W-1) + i], inputs before t = 0 from hist
 * (B, W-1, C), which is then advanced by T tokens. silu applied when act. */
void hf_conv_forward(int B, int T, const hf_conv *cv, int W, const float *x, float *hist, int act_silu, float *y);
/* out = down(silu(gate x) * up x) for N rows of D, hidden width; tmp (2 N width) scratch. */
void hf_swiglu(int N, int D, int width, const float *x, const float *Wg, const float *Wu, const float *Wd, float *tmp,
               float *out);
float hf_silu(float x);
float hf_sigmoid(float x);
float hf_softplus(float x); /* torch: x for x > 20 */
/* The output of an fla-style mixer, added to the residual x (N, D):
 * x += (RMSNorm_Vh(o) * o_norm [* silu(xn Wg)]) Wo over N rows of `heads` heads of Vh;
 * o (N, heads*Vh) is overwritten; gate (N, heads*Vh) and pre (N, D) are scratch. */
void hf_norm_gate_out(const lina_hf_model *m, const hf_layer *L, int N, int heads, int Vh, const float *xn, float *o,
                      float *gate, float *pre, float *x);
/* The op descriptor of one layer: B rows of T tokens, H q/k heads, HV value
 * heads, head dims K and V, scale 1/sqrt(K), form AUTO. */
lina_attn_desc hf_attn_desc(int B, int T, int H, int HV, int K, int V, lina_gate gate, lina_update update);
/* The token mixing of one layer: lina_attn_forward over B rows of T tokens with
 * the layer's state S as initial and final state (T = 1 is a decoding step).
 * Errors name the layer. */
lina_status hf_attn_run(lina_ctx *ctx, const lina_attn_desc *d, int layer, const float *q,
                        const float *k, const float *v, const float *g, const float *beta, float *S,
                        float *o);

/* ---- hf_fla.c / hf_mamba2.c: one mixer over (B, T) rows of normalized input
 * xn (B*T, D), adding its output to x. ---- */
lina_status hf_fla_load_layer(lina_hf_model *m, hf_weights *w, int l);
lina_status hf_fla_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                         const float *xn, float *x);
lina_status hf_fla_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st);
lina_status hf_mamba2_load_layer(lina_hf_model *m, hf_weights *w, int l);
lina_status hf_mamba2_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                            const float *xn, float *x);
lina_status hf_mamba2_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st);
/* hf_gdn.c: fla GatedDeltaNet ("gated_deltanet") */
lina_status hf_gdn_load_layer(lina_hf_model *m, hf_weights *w, int l);
lina_status hf_gdn_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                         const float *xn, float *x);
lina_status hf_gdn_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st);
/* hf_retnet.c: fla MultiScaleRetention ("retnet"); q/k feature map in m->qk_act */
lina_status hf_retnet_load_layer(lina_hf_model *m, hf_weights *w, int l);
lina_status hf_retnet_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                            const float *xn, float *x);
lina_status hf_retnet_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st);
/* hf_hgrn2.c: fla HGRN2Attention ("hgrn2") */
lina_status hf_hgrn2_load_layer(lina_hf_model *m, hf_weights *w, int l);
lina_status hf_hgrn2_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                           const float *xn, float *x);
lina_status hf_hgrn2_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st);
/* hf_linear_attn.c: fla LinearAttention ("linear_attn") */
lina_status hf_la_parse(lina_hf_model *m, const cJSON *cfg, const char *path);
lina_status hf_la_load_layer(lina_hf_model *m, hf_weights *w, int l);
lina_status hf_la_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                        const float *xn, float *x);
lina_status hf_la_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st);
/* hf_rwkv7.c: fla RWKV-7 ("rwkv7", "rwkv7_fla"), a whole-model forward: its
 * blocks (LayerNorms, token shift, channel-mix FFN, v_first) differ from the
 * shared residual stack. */
lina_status hf_rwkv7_parse(lina_hf_model *m, const cJSON *cfg, const char *path);
lina_status hf_rwkv7_load_layer(lina_hf_model *m, hf_weights *w, int l);
lina_status hf_rwkv7_state_alloc(const lina_hf_model *m, int B, hf_layer_state *st);
lina_status hf_rwkv7_forward(lina_ctx *ctx, const lina_hf_model *m, lina_hf_state *s, int B, int T,
                             const int64_t *ids, float *logits, int last_only);
/* hf_qwen3_next.c: Hugging Face Qwen3NextForCausalLM ("qwen3_next") */
lina_status hf_q3n_parse(lina_hf_model *m, const cJSON *cfg, const char *path);
lina_status hf_q3n_load_layer(lina_hf_model *m, hf_weights *w, int l);
lina_status hf_q3n_mixer(lina_ctx *ctx, const lina_hf_model *m, int l, hf_layer_state *st, int B, int T,
                         const float *xn, float *x);
/* x += MoE or dense MLP of xn (N rows) */
lina_status hf_q3n_mlp(const lina_hf_model *m, int l, int N, const float *xn, float *x);
lina_status hf_q3n_state_alloc(const lina_hf_model *m, int l, int B, hf_layer_state *st);
/* after loading: norm weights w -> 1 + w (Qwen3NextRMSNorm) */
void hf_q3n_fix_norms(lina_hf_model *m);

#endif
