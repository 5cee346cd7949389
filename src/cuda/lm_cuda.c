/* The language model's forward, backward and optimizer step on the GPU, fp32:
 * the chain of src/models/lm.c, lm_head_at.c, src/layers/mixer_linear.c and
 * mixer_softmax.c with device buffers. GEMMs on cuBLAS (FP32, no TF32), the
 * attention on lina_cuda_attn_forward / _backward, everything else on the
 * launchers of lm_kernels.h. One stream; the host waits only where it needs a
 * number (the loss, the gradient norm) or copies logits back.
 *
 * Row-major GEMMs through column-major cuBLAS: a row-major (r, c) matrix is a
 * column-major (c, r) one with leading dimension c, so
 *   y (N, out) = x (N, in) W^T     is  Y = W^T X        gemm(T, N, out, N, in)
 *   dx (N, in) (+)= dy (N, out) W  is  dX = W dY         gemm(N, N, in, N, out)
 *   dW (out, in) += dy^T x         is  dW = X dY^T       gemm(N, T, in, out, N)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../models/lm_internal.h"
#include "lina/cuda.h"
#include "lm_cuda.h"
#include "lm_kernels.h"

#define GLA_GATE_NORMALIZER 16.0f

/* Device twins of one layer's mixer: parameter pointers and saved activations. */
typedef struct {
    lina_mixer *mx;
    float *const_g; /* (H) RetNet log-decays on the device */
    /* saved activations (cap rows) */
    float *qp, *kp, *vp, *qc, *kc, *vc, *qs, *ks, *vs, *q, *k, *v, *rq, *rk;
    float *bl, *beta, *a, *g, *gz, *gl, *o, *oaug, *vaug, *z, *y, *orstd, *lse;
} gpu_mixer;

typedef struct {
    float *x_in, *xn1, *rstd1, *xmid, *xn2, *rstd2, *a, *b, *h;
    gpu_mixer mx;
} gpu_block;

struct lina_cuda_lm {
    lina_model *m;
    cudaStream_t s;
    cublasHandle_t blas;
    int blas_failed;
    float *dp, *dg; /* parameters, gradients (n_params) */
    float *am, *av; /* AdamW moments (n_params), of optimizer adam_key at step adam_t */
    uint8_t *decay;
    const void *adam_key;
    int64_t adam_t;
    double *sumsq;

    /* activations, capacity `cap` rows; one allocation */
    int cap, B, T, S, have_targets;
    float *act;
    gpu_block layer[LINA_MODEL_MAX_LAYERS];
    float *x_out, *xf, *rstdf, *tmp, *dx, *dmid, *dxn, *dxf, *da, *db;
    /* mixer scratch of the backward (shared by the layers) */
    float *sdq, *sdk, *sdv, *sdg, *sdbeta, *st1, *st2, *sdc, *sdz, *sdvaug, *sdoaug;
    int32_t *tok; /* (cap) tokens, then (cap) head rows, (cap) head targets */
    int32_t *rows, *targets;
    float *xs, *logits, *rowloss; /* (cap, D), (cap, V), (cap) */
    float *hrowloss;              /* host (cap) */
    int32_t *hrows, *htargets;    /* host (cap) each */
    float *sm_ws;                 /* softmax attention workspace */
    size_t sm_ws_floats;
};

static lina_status cuda_check(const char *what) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return lina_fail(LINA_ERR_INTERNAL, "cuda model: %s: %s", what, cudaGetErrorString(e));
    return LINA_OK;
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        lina_status st_ = (x);                                                                     \
        if (st_ != LINA_OK) return st_;                                                            \
    } while (0)

/* Device address of a host parameter (or its gradient). */
static float *DW(const lina_cuda_lm *g, const lina_param *p) { return g->dp + (p->w - g->m->params); }
static float *DG(const lina_cuda_lm *g, const lina_param *p) { return g->dg + (p->w - g->m->params); }

/* ---- GEMMs (see the header comment) ---- */

static void gemm(lina_cuda_lm *g, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (m <= 0 || n <= 0) return;
    const float one = 1.0f;
    if (k <= 0) { /* C = beta C; every caller has ldc == m */
        if (beta == 0.0f) cudaMemsetAsync(C, 0, sizeof(float) * m * n, g->s);
        return;
    }
    if (cublasSgemm(g->blas, ta, tb, m, n, k, &one, A, lda, B, ldb, &beta, C, ldc) != CUBLAS_STATUS_SUCCESS)
        g->blas_failed = 1;
}

/* y (N, out) = x (N, in) W^T (+ b) */
static void linear_fwd(lina_cuda_lm *g, int N, int in, int out, const float *x, const float *W,
                       const float *b, float *y) {
    gemm(g, CUBLAS_OP_T, CUBLAS_OP_N, out, N, in, W, in, x, in, 0.0f, y, out);
    if (b) lk_add_bias(N, out, b, y, g->s);
}

/* dW += dy^T x; db += colsum dy; dx (+)= dy W */
static void linear_bwd(lina_cuda_lm *g, int N, int in, int out, const float *x, const float *W,
                       const float *dy, float *dx, int dx_overwrite, float *dW, float *db) {
    if (dx) gemm(g, CUBLAS_OP_N, CUBLAS_OP_N, in, N, out, W, in, dy, out, dx_overwrite ? 0.0f : 1.0f, dx, in);
    gemm(g, CUBLAS_OP_N, CUBLAS_OP_T, in, out, N, x, in, dy, out, 1.0f, dW, in);
    if (db) lk_bias_backward(N, out, dy, db, g->s);
}

/* ---- buffers ---- */

static void free_activations(lina_cuda_lm *g) {
    cudaFree(g->act);
    cudaFree(g->tok);
    cudaFree(g->sm_ws);
    free(g->hrowloss);
    free(g->hrows);
    g->act = NULL;
    g->tok = NULL;
    g->sm_ws = NULL;
    g->sm_ws_floats = 0;
    g->hrowloss = NULL;
    g->hrows = NULL;
    g->cap = 0;
}

/* Widest per-row mixer buffer: max over layers of H F, H (V + 1), R. */
static size_t mixer_width(const lina_model *m) {
    size_t C = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const lina_mixer *mx = m->layer[l].mixer;
        size_t c[3] = {(size_t)mx->H * mx->F, (size_t)mx->H * (mx->V + 1), (size_t)(mx->R > 0 ? mx->R : 1)};
        for (int i = 0; i < 3; i++) C = c[i] > C ? c[i] : C;
    }
    return C;
}

static size_t max_heads(const lina_model *m) {
    size_t H = 1;
    for (int l = 0; l < m->cfg.n_layers; l++)
        if ((size_t)m->layer[l].mixer->H > H) H = m->layer[l].mixer->H;
    return H;
}

static lina_status alloc_activations(lina_cuda_lm *g, int rows) {
    if (rows <= g->cap) return LINA_OK;
    free_activations(g);
    const lina_model_config *c = &g->m->cfg;
    size_t N = (size_t)rows, D = c->dim, I = c->intermediate, V = c->vocab_size, L = c->n_layers;
    size_t C = mixer_width(g->m), H = max_heads(g->m);
    /* per layer: 4 (N, D) + 3 (N, I) + 2 (N) trunk; 20 wide + 7 narrow mixer buffers */
    size_t per_layer = 4 * N * D + 3 * N * I + 2 * N + 20 * N * C + 7 * N * H;
    size_t model = 7 * N * D + N + 2 * N * I + 11 * N * C + N * D + N * V + N;
    size_t total = L * per_layer + model;
    if (cudaMalloc((void **)&g->act, sizeof(float) * total) != cudaSuccess ||
        cudaMalloc((void **)&g->tok, sizeof(int32_t) * 3 * N) != cudaSuccess) {
        cudaGetLastError();
        free_activations(g);
        return lina_fail(LINA_ERR_OOM, "cuda model: out of device memory for the activations of %d tokens (%zu MB)",
                         rows, total * 4 >> 20);
    }
    g->hrowloss = malloc(sizeof(float) * N);
    g->hrows = malloc(sizeof(int32_t) * 2 * N);
    if (!g->hrowloss || !g->hrows) {
        free_activations(g);
        return lina_fail(LINA_ERR_OOM, "cuda model: out of memory for %d rows", rows);
    }
    g->htargets = g->hrows + N;
    g->rows = g->tok + N;
    g->targets = g->tok + 2 * N;
    float *p = g->act;
#define TAKE(ptr, n) (ptr = p, p += (n))
    for (size_t l = 0; l < L; l++) {
        gpu_block *b = &g->layer[l];
        gpu_mixer *x = &b->mx;
        TAKE(b->x_in, N * D);
        TAKE(b->xn1, N * D);
        TAKE(b->xmid, N * D);
        TAKE(b->xn2, N * D);
        TAKE(b->a, N * I);
        TAKE(b->b, N * I);
        TAKE(b->h, N * I);
        TAKE(b->rstd1, N);
        TAKE(b->rstd2, N);
        float **wide[] = {&x->qp, &x->kp, &x->vp, &x->qc, &x->kc, &x->vc, &x->qs, &x->ks, &x->vs, &x->q, &x->k,
                          &x->v,  &x->g,  &x->gz, &x->gl, &x->o,  &x->oaug, &x->vaug, &x->z, &x->y};
        for (size_t i = 0; i < sizeof wide / sizeof *wide; i++) TAKE(*wide[i], N * C);
        float **narrow[] = {&x->rq, &x->rk, &x->bl, &x->beta, &x->orstd, &x->lse, &x->a};
        for (size_t i = 0; i < sizeof narrow / sizeof *narrow; i++) TAKE(*narrow[i], N * H);
    }
    TAKE(g->x_out, N * D);
    TAKE(g->xf, N * D);
    TAKE(g->tmp, N * D);
    TAKE(g->dx, N * D);
    TAKE(g->dmid, N * D);
    TAKE(g->dxn, N * D);
    TAKE(g->dxf, N * D);
    TAKE(g->rstdf, N);
    TAKE(g->da, N * I);
    TAKE(g->db, N * I);
    float **scratch[] = {&g->sdq, &g->sdk, &g->sdv, &g->sdg, &g->sdbeta, &g->st1, &g->st2, &g->sdc, &g->sdz,
                         &g->sdvaug, &g->sdoaug};
    for (size_t i = 0; i < sizeof scratch / sizeof *scratch; i++) TAKE(*scratch[i], N * C);
    TAKE(g->xs, N * D);
    TAKE(g->logits, N * V);
    TAKE(g->rowloss, N);
#undef TAKE
    g->cap = rows;
    return LINA_OK;
}

static lina_status reserve_softmax_ws(lina_cuda_lm *g, int B, int T, int H) {
    size_t need = lk_softmax_ws_floats(B, T, H);
    if (need <= g->sm_ws_floats) return LINA_OK;
    cudaFree(g->sm_ws);
    g->sm_ws = NULL;
    g->sm_ws_floats = 0;
    if (cudaMalloc((void **)&g->sm_ws, sizeof(float) * need) != cudaSuccess) {
        cudaGetLastError();
        return lina_fail(LINA_ERR_OOM, "cuda model: out of device memory for softmax attention (%zu MB)",
                         need * 4 >> 20);
    }
    g->sm_ws_floats = need;
    return LINA_OK;
}

/* ---- create / free ---- */

static int gpu_kind(const lina_mixer *mx) {
    switch (mx->kind) {
    case LINA_MIXER_GATED_DELTANET:
    case LINA_MIXER_DELTANET:
    case LINA_MIXER_GLA:
    case LINA_MIXER_MAMBA2:
    case LINA_MIXER_RETNET:
    case LINA_MIXER_SOFTMAX: return 1;
    case LINA_MIXER_LINEAR: return mx->fd.kind == LINA_FMAP_ELU1;
    default: return 0;
    }
}

void lina_cuda_lm_free(lina_cuda_lm *g) {
    if (!g) return;
    free_activations(g);
    for (int l = 0; l < LINA_MODEL_MAX_LAYERS; l++) cudaFree(g->layer[l].mx.const_g);
    cudaFree(g->dp);
    cudaFree(g->dg);
    cudaFree(g->am);
    cudaFree(g->av);
    cudaFree(g->decay);
    cudaFree(g->sumsq);
    if (g->blas) cublasDestroy(g->blas);
    if (g->s) cudaStreamDestroy(g->s);
    free(g);
}

lina_status lina_cuda_lm_create(lina_model *m, lina_cuda_lm **out) {
    *out = NULL;
    if (!lina_cuda_available())
        return lina_fail(LINA_ERR_UNSUPPORTED, "cuda model: no CUDA device is visible");
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (!gpu_kind(m->layer[l].mixer))
            return lina_fail(LINA_ERR_UNSUPPORTED,
                             "cuda model: layer %d's mixer '%s' has no GPU training path (have: gated_deltanet, "
                             "deltanet, gla, mamba2, retnet, linear, softmax)",
                             l, lina_mixer_name(m->layer[l].mixer->kind));
    lina_cuda_lm *g = calloc(1, sizeof *g);
    if (!g) return lina_fail(LINA_ERR_OOM, "cuda model: out of memory");
    g->m = m;
    size_t n = m->n_params;
    lina_status st = LINA_OK;
    /* LINA_CUDA_TF32=1: the projections' GEMMs on TF32 tensor cores (10-bit mantissas) */
    const char *tf32_env = getenv("LINA_CUDA_TF32");
    int tf32 = tf32_env && !strcmp(tf32_env, "1");
    if (cudaStreamCreateWithFlags(&g->s, cudaStreamNonBlocking) != cudaSuccess ||
        cublasCreate(&g->blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(g->blas, g->s) != CUBLAS_STATUS_SUCCESS ||
        cublasSetMathMode(g->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS)
        st = lina_fail(LINA_ERR_INTERNAL, "cuda model: cannot create a stream or a cuBLAS handle");
    if (!st && (cudaMalloc((void **)&g->dp, sizeof(float) * n) != cudaSuccess ||
                cudaMalloc((void **)&g->dg, sizeof(float) * n) != cudaSuccess ||
                cudaMalloc((void **)&g->am, sizeof(float) * n) != cudaSuccess ||
                cudaMalloc((void **)&g->av, sizeof(float) * n) != cudaSuccess ||
                cudaMalloc((void **)&g->decay, n) != cudaSuccess ||
                cudaMalloc((void **)&g->sumsq, sizeof(double)) != cudaSuccess))
        st = lina_fail(LINA_ERR_OOM, "cuda model: out of device memory for %zu parameters", n);
    if (!st && cudaMemcpy(g->dp, m->params, sizeof(float) * n, cudaMemcpyHostToDevice) != cudaSuccess)
        st = lina_fail(LINA_ERR_INTERNAL, "cuda model: parameter upload failed");
    if (!st && cudaMemcpy(g->dg, m->grads, sizeof(float) * n, cudaMemcpyHostToDevice) != cudaSuccess)
        st = lina_fail(LINA_ERR_INTERNAL, "cuda model: gradient upload failed");
    for (int l = 0; l < m->cfg.n_layers && !st; l++) {
        lina_mixer *mx = m->layer[l].mixer;
        gpu_mixer *x = &g->layer[l].mx;
        x->mx = mx;
        if (mx->gate == LINA_GATE_CONST) {
            if (cudaMalloc((void **)&x->const_g, sizeof(float) * mx->H) != cudaSuccess ||
                cudaMemcpy(x->const_g, mx->const_g, sizeof(float) * mx->H, cudaMemcpyHostToDevice) != cudaSuccess)
                st = lina_fail(LINA_ERR_OOM, "cuda model: cannot upload layer %d's decays", l);
        }
    }
    if (st) {
        cudaGetLastError();
        lina_cuda_lm_free(g);
        return st;
    }
    g->adam_t = -1;
    *out = g;
    return LINA_OK;
}

/* ---- the linear mixers ---- */

/* The CPU mixer's descriptor; a normalized one (linear attention) runs unnormalized on a ones
 * column of v, V + 1 wide (the CUDA op has no normalize): o = num / (den + d.eps). */
static lina_attn_desc device_desc(const lina_mixer *mx, int B, int T) {
    lina_attn_desc d = lina_mixer_attn_desc(mx, B, T);
    if (d.normalize) {
        d.normalize = 0;
        d.V++;
    }
    return d;
}

/* qs -> q: l2 | elu+1 | rotary on a copy | the same buffer. Returns the q buffer used. */
static float *qk_finish(lina_cuda_lm *g, const lina_mixer *mx, int B, int T, float *xs, float *x,
                        float *rnorm) {
    size_t n = (size_t)B * T * mx->H * mx->K;
    if (mx->l2) {
        lk_l2norm_forward(B * T * mx->H, mx->K, xs, 1e-6f, x, rnorm, g->s);
    } else if (mx->fmap) {
        lk_elu1_forward(n, xs, x, g->s);
    } else if (mx->rope) {
        cudaMemcpyAsync(x, xs, sizeof(float) * n, cudaMemcpyDeviceToDevice, g->s);
        lk_rotary_apply(B, T, mx->H, mx->K, mx->theta, 0, x, 0, g->s);
    } else {
        return xs;
    }
    return x;
}

/* d q -> d qs (into dxs, or dx itself when q is qs). Returns the buffer holding dqs. */
static float *qk_finish_backward(lina_cuda_lm *g, const lina_mixer *mx, const float *xs, const float *x,
                                 const float *rnorm, float *dx, float *dxs) {
    int B = mx->B, T = mx->T;
    size_t n = (size_t)B * T * mx->H * mx->K;
    if (mx->l2) {
        lk_l2norm_backward(B * T * mx->H, mx->K, x, rnorm, dx, dxs, g->s);
    } else if (mx->fmap) {
        lk_elu1_backward(n, xs, dx, dxs, g->s);
    } else if (mx->rope) {
        lk_rotary_apply(B, T, mx->H, mx->K, mx->theta, 0, dx, 1, g->s);
        return dx;
    } else {
        return dx;
    }
    return dxs;
}

/* p -> s: short conv + silu, or the same buffer */
static float *activate(lina_cuda_lm *g, const lina_mixer *mx, int B, int T, int C, float *p,
                       const lina_param *w, float *c, float *s) {
    if (!mx->conv) return p;
    lk_conv_forward(B, T, C, mx->W, p, DW(g, w), c, s, g->s);
    return s;
}

static float *activate_backward(lina_cuda_lm *g, const lina_mixer *mx, int C, const float *p, const float *c,
                                const lina_param *w, float *ds, float *dc, float *dp) {
    if (!mx->conv) return ds;
    lk_conv_backward(mx->B, mx->T, C, mx->W, p, DW(g, w), c, ds, dc, dp, DG(g, w), g->s);
    return dp;
}

static lina_status linear_mixer_forward(lina_cuda_lm *g, gpu_mixer *x, int B, int T, const float *in,
                                        float *out) {
    lina_mixer *mx = x->mx;
    int N = B * T, D = mx->D, H = mx->H, K = mx->K, V = mx->V, Ck = H * K, Cv = H * V;
    mx->B = B;
    mx->T = T;
    linear_fwd(g, N, D, Ck, in, DW(g, &mx->q_proj), NULL, x->qp);
    linear_fwd(g, N, D, Ck, in, DW(g, &mx->k_proj), NULL, x->kp);
    linear_fwd(g, N, D, Cv, in, DW(g, &mx->v_proj), NULL, x->vp);
    float *qs = activate(g, mx, B, T, Ck, x->qp, &mx->q_conv, x->qc, x->qs);
    float *ks = activate(g, mx, B, T, Ck, x->kp, &mx->k_conv, x->kc, x->ks);
    float *vs = activate(g, mx, B, T, Cv, x->vp, &mx->v_conv, x->vc, x->vs);
    float *q = qk_finish(g, mx, B, T, qs, x->q, x->rq);
    float *k = qk_finish(g, mx, B, T, ks, x->k, x->rk);
    if (mx->beta) {
        linear_fwd(g, N, D, H, in, DW(g, &mx->b_proj), NULL, x->bl);
        lk_sigmoid_forward((size_t)N * H, x->bl, x->beta, g->s);
    }
    const float *gate = NULL;
    if (mx->gate == LINA_GATE_SCALAR) {
        linear_fwd(g, N, D, H, in, DW(g, &mx->a_proj), NULL, x->a);
        lk_scalar_gate_forward(N, H, x->a, DW(g, &mx->dt_bias), DW(g, &mx->A_log), x->g, g->s);
        gate = x->g;
    } else if (mx->kind == LINA_MIXER_GLA) {
        linear_fwd(g, N, D, mx->R, in, DW(g, &mx->gk0), NULL, x->gz);
        linear_fwd(g, N, mx->R, Ck, x->gz, DW(g, &mx->gk1), DW(g, &mx->gk1_b), x->gl);
        lk_gla_gate_forward((size_t)N * Ck, x->gl, x->g, g->s);
        gate = x->g;
    } else if (mx->gate == LINA_GATE_CONST) {
        gate = x->const_g;
    }
    /* normalized attention: v gets a ones column, o = num / (den + eps) */
    lina_attn_desc d = device_desc(mx, B, T);
    const float *va = vs;
    float *oa = x->o;
    if (mx->fmap) {
        lk_append_ones(N * H, V, vs, x->vaug, g->s);
        va = x->vaug;
        oa = x->oaug;
    }
    TRY(cuda_check("mixer projections"));
    lina_cuda_attn_fwd_args a = {q, k, va, gate, mx->beta ? x->beta : NULL, NULL, oa, NULL};
    TRY(lina_cuda_attn_forward(&d, LINA_DTYPE_F32, &a, g->s));
    if (mx->fmap) lk_normalize_forward(N * H, V, x->oaug, d.eps, x->o, g->s);
    if (mx->out_gate) linear_fwd(g, N, D, Cv, in, DW(g, &mx->g_proj), NULL, x->z);
    lk_gated_rmsnorm_forward(N * H, V, x->o, mx->out_gate ? x->z : NULL, DW(g, &mx->o_norm), mx->eps, x->y,
                             x->orstd, g->s);
    linear_fwd(g, N, Cv, D, x->y, DW(g, &mx->o_proj), NULL, out);
    return cuda_check("mixer forward");
}

/* dx accumulated (the caller zeroes it) */
static lina_status linear_mixer_backward(lina_cuda_lm *g, gpu_mixer *x, const float *in, const float *dout,
                                         float *dx) {
    lina_mixer *mx = x->mx;
    int B = mx->B, T = mx->T, N = B * T, D = mx->D, H = mx->H, K = mx->K, V = mx->V;
    int Ck = H * K, Cv = H * V;
    float *t1 = g->st1, *t2 = g->st2;
    /* out = y Wo^T -> dy (t1); y = norm(o) [* silu(z)] -> do (t2), dz */
    linear_bwd(g, N, Cv, D, x->y, DW(g, &mx->o_proj), dout, t1, 1, DG(g, &mx->o_proj), NULL);
    lk_gated_rmsnorm_backward(N * H, V, x->o, mx->out_gate ? x->z : NULL, DW(g, &mx->o_norm), x->orstd, t1,
                              t2, mx->out_gate ? g->sdz : NULL, DG(g, &mx->o_norm), g->s);
    if (mx->out_gate) linear_bwd(g, N, D, Cv, in, DW(g, &mx->g_proj), g->sdz, dx, 0, DG(g, &mx->g_proj), NULL);

    /* the forward's buffers (which of qp / qs / q were distinct) */
    const float *qs = mx->conv ? x->qs : x->qp, *ks = mx->conv ? x->ks : x->kp;
    const float *vs = mx->conv ? x->vs : x->vp;
    const float *q = (mx->l2 || mx->fmap || mx->rope) ? x->q : qs;
    const float *k = (mx->l2 || mx->fmap || mx->rope) ? x->k : ks;
    const float *gate = mx->gate == LINA_GATE_CONST ? x->const_g : mx->gate == LINA_GATE_NONE ? NULL : x->g;
    int want_dg = mx->gate == LINA_GATE_SCALAR || mx->gate == LINA_GATE_VECTOR;
    lina_attn_desc d = device_desc(mx, B, T);
    const float *va = mx->fmap ? x->vaug : vs;
    const float *dO = t2;
    float *dva = g->sdv;
    if (mx->fmap) {
        lk_normalize_backward(N * H, V, x->oaug, d.eps, x->o, t2, g->sdoaug, g->s);
        dO = g->sdoaug;
        dva = g->sdvaug;
    }
    TRY(cuda_check("mixer output backward"));
    lina_cuda_attn_bwd_args a = {q,      k,      va,      gate,    mx->beta ? x->beta : NULL, NULL, dO, NULL,
                                 g->sdq, g->sdk, dva,     want_dg ? g->sdg : NULL,
                                 mx->beta ? g->sdbeta : NULL, NULL};
    TRY(lina_cuda_attn_backward(&d, LINA_DTYPE_F32, &a, g->s));
    if (mx->fmap) lk_drop_last_column(N * H, V, g->sdvaug, g->sdv, g->s);

    /* gates */
    if (mx->gate == LINA_GATE_SCALAR) {
        float *da = t1;
        lk_scalar_gate_backward(N, H, g->sdg, x->g, x->a, DW(g, &mx->A_log), da, DG(g, &mx->A_log),
                                DG(g, &mx->dt_bias), g->s);
        linear_bwd(g, N, D, H, in, DW(g, &mx->a_proj), da, dx, 0, DG(g, &mx->a_proj), NULL);
    } else if (mx->kind == LINA_MIXER_GLA) {
        float *dgl = t1, *dgz = t2;
        lk_gla_gate_backward((size_t)N * Ck, x->gl, g->sdg, dgl, g->s);
        linear_bwd(g, N, mx->R, Ck, x->gz, DW(g, &mx->gk1), dgl, dgz, 1, DG(g, &mx->gk1), DG(g, &mx->gk1_b));
        linear_bwd(g, N, D, mx->R, in, DW(g, &mx->gk0), dgz, dx, 0, DG(g, &mx->gk0), NULL);
    }
    if (mx->beta) {
        float *dbl = t1;
        lk_sigmoid_backward((size_t)N * H, x->beta, g->sdbeta, dbl, g->s);
        linear_bwd(g, N, D, H, in, DW(g, &mx->b_proj), dbl, dx, 0, DG(g, &mx->b_proj), NULL);
    }
    /* q, k, v paths: d(finish) -> d(activation) -> projection */
    float *dqs = qk_finish_backward(g, mx, qs, q, x->rq, g->sdq, t1);
    float *dqp = activate_backward(g, mx, Ck, x->qp, x->qc, &mx->q_conv, dqs, g->sdc, t2);
    linear_bwd(g, N, D, Ck, in, DW(g, &mx->q_proj), dqp, dx, 0, DG(g, &mx->q_proj), NULL);
    float *dks = qk_finish_backward(g, mx, ks, k, x->rk, g->sdk, t1);
    float *dkp = activate_backward(g, mx, Ck, x->kp, x->kc, &mx->k_conv, dks, g->sdc, t2);
    linear_bwd(g, N, D, Ck, in, DW(g, &mx->k_proj), dkp, dx, 0, DG(g, &mx->k_proj), NULL);
    float *dvp = activate_backward(g, mx, Cv, x->vp, x->vc, &mx->v_conv, g->sdv, g->sdc, t2);
    linear_bwd(g, N, D, Cv, in, DW(g, &mx->v_proj), dvp, dx, 0, DG(g, &mx->v_proj), NULL);
    return cuda_check("mixer backward");
}

/* ---- softmax attention with rotary embeddings ---- */

static lina_status softmax_mixer_forward(lina_cuda_lm *g, gpu_mixer *x, int B, int T, const float *in,
                                         float *out) {
    lina_mixer *mx = x->mx;
    int N = B * T, D = mx->D, H = mx->H, K = mx->K, V = mx->V;
    mx->B = B;
    mx->T = T;
    TRY(reserve_softmax_ws(g, B, T, H));
    linear_fwd(g, N, D, H * K, in, DW(g, &mx->q_proj), NULL, x->q);
    linear_fwd(g, N, D, H * K, in, DW(g, &mx->k_proj), NULL, x->k);
    linear_fwd(g, N, D, H * V, in, DW(g, &mx->v_proj), NULL, x->v);
    lk_rotary_apply(B, T, H, K, mx->theta, 0, x->q, 0, g->s);
    lk_rotary_apply(B, T, H, K, mx->theta, 0, x->k, 0, g->s);
    lk_softmax_forward(g->blas, B, T, H, K, V, x->q, x->k, x->v, x->o, x->lse, g->sm_ws, g->s);
    linear_fwd(g, N, H * V, D, x->o, DW(g, &mx->o_proj), NULL, out);
    return cuda_check("softmax attention forward");
}

static lina_status softmax_mixer_backward(lina_cuda_lm *g, gpu_mixer *x, const float *in, const float *dout,
                                          float *dx) {
    lina_mixer *mx = x->mx;
    int B = mx->B, T = mx->T, N = B * T, D = mx->D, H = mx->H, K = mx->K, V = mx->V;
    TRY(reserve_softmax_ws(g, B, T, H));
    float *d_o = g->st1;
    linear_bwd(g, N, H * V, D, x->o, DW(g, &mx->o_proj), dout, d_o, 1, DG(g, &mx->o_proj), NULL);
    lk_softmax_backward(g->blas, B, T, H, K, V, x->q, x->k, x->v, x->o, x->lse, d_o, g->sdq, g->sdk, g->sdv,
                        g->sm_ws, g->s);
    lk_rotary_apply(B, T, H, K, mx->theta, 0, g->sdq, 1, g->s);
    lk_rotary_apply(B, T, H, K, mx->theta, 0, g->sdk, 1, g->s);
    linear_bwd(g, N, D, H * K, in, DW(g, &mx->q_proj), g->sdq, dx, 0, DG(g, &mx->q_proj), NULL);
    linear_bwd(g, N, D, H * K, in, DW(g, &mx->k_proj), g->sdk, dx, 0, DG(g, &mx->k_proj), NULL);
    linear_bwd(g, N, D, H * V, in, DW(g, &mx->v_proj), g->sdv, dx, 0, DG(g, &mx->v_proj), NULL);
    return cuda_check("softmax attention backward");
}

static lina_status mixer_forward(lina_cuda_lm *g, gpu_mixer *x, int B, int T, const float *in, float *out) {
    return x->mx->kind == LINA_MIXER_SOFTMAX ? softmax_mixer_forward(g, x, B, T, in, out)
                                             : linear_mixer_forward(g, x, B, T, in, out);
}

static lina_status mixer_backward(lina_cuda_lm *g, gpu_mixer *x, const float *in, const float *dout, float *dx) {
    return x->mx->kind == LINA_MIXER_SOFTMAX ? softmax_mixer_backward(g, x, in, dout, dx)
                                             : linear_mixer_backward(g, x, in, dout, dx);
}

/* ---- the model ---- */

static lina_status blas_status(lina_cuda_lm *g, const char *what) {
    if (g->blas_failed) {
        g->blas_failed = 0;
        return lina_fail(LINA_ERR_INTERNAL, "cuda model: a cuBLAS call failed in the %s", what);
    }
    return cuda_check(what);
}

lina_status lina_cuda_lm_forward_scored(lina_cuda_lm *g, int B, int T, const int32_t *tokens,
                                        const int32_t *targets, float *logits, float *loss, int *n_scored) {
    lina_model *m = g->m;
    const lina_model_config *c = &m->cfg;
    int N = B * T, D = c->dim, Vb = c->vocab_size, I = c->intermediate;
    for (int n = 0; n < N; n++) {
        if (tokens[n] < 0 || tokens[n] >= Vb)
            return lina_fail(LINA_ERR_INVALID_ARG, "model: token[%d] = %d outside [0, %d)", n, tokens[n], Vb);
        if (targets[n] >= Vb)
            return lina_fail(LINA_ERR_INVALID_ARG, "model: target[%d] = %d >= vocab %d", n, targets[n], Vb);
    }
    TRY(alloc_activations(g, N));
    int S = 0;
    for (int n = 0; n < N; n++)
        if (targets[n] >= 0) {
            g->hrows[S] = n;
            g->htargets[S++] = targets[n];
        }
    if (S == 0)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_model_forward_scored: no target >= 0 among %d positions", N);
    g->B = B;
    g->T = T;
    g->S = S;
    g->have_targets = 0;
    cudaMemcpyAsync(g->tok, tokens, sizeof(int32_t) * N, cudaMemcpyHostToDevice, g->s);
    cudaMemcpyAsync(g->rows, g->hrows, sizeof(int32_t) * S, cudaMemcpyHostToDevice, g->s);
    cudaMemcpyAsync(g->targets, g->htargets, sizeof(int32_t) * S, cudaMemcpyHostToDevice, g->s);
    lk_embedding_forward(N, D, g->tok, DW(g, &m->embed), g->layer[0].x_in, g->s);
    for (int l = 0; l < c->n_layers; l++) {
        gpu_block *b = &g->layer[l];
        lina_block *hb = &m->layer[l];
        float *next = l + 1 < c->n_layers ? g->layer[l + 1].x_in : g->x_out;
        lk_rmsnorm_forward(N, D, b->x_in, DW(g, &hb->attn_norm), c->norm_eps, b->xn1, b->rstd1, g->s);
        TRY(mixer_forward(g, &b->mx, B, T, b->xn1, g->tmp));
        lk_add((size_t)N * D, b->x_in, g->tmp, b->xmid, g->s);
        lk_rmsnorm_forward(N, D, b->xmid, DW(g, &hb->mlp_norm), c->norm_eps, b->xn2, b->rstd2, g->s);
        linear_fwd(g, N, D, I, b->xn2, DW(g, &hb->gate_proj), NULL, b->a);
        linear_fwd(g, N, D, I, b->xn2, DW(g, &hb->up_proj), NULL, b->b);
        lk_swiglu_forward((size_t)N * I, b->a, b->b, b->h, g->s);
        linear_fwd(g, N, I, D, b->h, DW(g, &hb->down_proj), NULL, g->tmp);
        lk_add((size_t)N * D, b->xmid, g->tmp, next, g->s);
        TRY(blas_status(g, "trunk forward"));
    }
    lk_rmsnorm_forward(N, D, g->x_out, DW(g, &m->final_norm), c->norm_eps, g->xf, g->rstdf, g->s);
    lk_gather_rows(S, D, g->rows, g->xf, g->xs, g->s);
    linear_fwd(g, S, D, Vb, g->xs, DW(g, &m->lm_head), NULL, g->logits);
    TRY(blas_status(g, "head forward"));
    if (logits &&
        cudaMemcpyAsync(logits, g->logits, sizeof(float) * (size_t)S * Vb, cudaMemcpyDeviceToHost, g->s) != cudaSuccess)
        return cuda_check("logits download");
    lk_cross_entropy_forward(S, Vb, g->logits, g->targets, g->rowloss, g->s);
    cudaMemcpyAsync(g->hrowloss, g->rowloss, sizeof(float) * S, cudaMemcpyDeviceToHost, g->s);
    if (cudaStreamSynchronize(g->s) != cudaSuccess) return cuda_check("forward");
    TRY(cuda_check("forward"));
    double sum = 0;
    for (int i = 0; i < S; i++) sum += g->hrowloss[i];
    if (loss) *loss = (float)(sum / S);
    if (n_scored) *n_scored = S;
    g->have_targets = 1;
    return LINA_OK;
}

lina_status lina_cuda_lm_backward(lina_cuda_lm *g, float grad_scale) {
    if (!g->have_targets)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_model_backward: the last forward had no targets");
    lina_model *m = g->m;
    const lina_model_config *c = &m->cfg;
    int N = g->B * g->T, D = c->dim, Vb = c->vocab_size, I = c->intermediate, S = g->S;
    size_t ND = (size_t)N * D;
    /* head: dlogits = scale (p - onehot) / S; dW_head += dlogits^T xs; dxs = dlogits W_head -> rows */
    lk_cross_entropy_backward(S, Vb, g->logits, g->targets, grad_scale / S, g->s);
    float *dxs = g->dxn;
    linear_bwd(g, S, D, Vb, g->xs, DW(g, &m->lm_head), g->logits, dxs, 1, DG(g, &m->lm_head), NULL);
    cudaMemsetAsync(g->dxf, 0, sizeof(float) * ND, g->s);
    lk_scatter_rows(S, D, g->rows, dxs, g->dxf, g->s);
    cudaMemsetAsync(g->dx, 0, sizeof(float) * ND, g->s);
    lk_rmsnorm_backward(N, D, g->x_out, DW(g, &m->final_norm), g->rstdf, g->dxf, g->dx, DG(g, &m->final_norm),
                        g->s);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        gpu_block *b = &g->layer[l];
        lina_block *hb = &m->layer[l];
        /* x_{l+1} = x_mid + mlp(norm2(x_mid)) */
        cudaMemsetAsync(g->dxn, 0, sizeof(float) * ND, g->s);
        float *dh = g->da;
        linear_bwd(g, N, I, D, b->h, DW(g, &hb->down_proj), g->dx, dh, 1, DG(g, &hb->down_proj), NULL);
        lk_swiglu_backward((size_t)N * I, b->a, b->b, dh, g->da, g->db, g->s);
        linear_bwd(g, N, D, I, b->xn2, DW(g, &hb->gate_proj), g->da, g->dxn, 0, DG(g, &hb->gate_proj), NULL);
        linear_bwd(g, N, D, I, b->xn2, DW(g, &hb->up_proj), g->db, g->dxn, 0, DG(g, &hb->up_proj), NULL);
        cudaMemcpyAsync(g->dmid, g->dx, sizeof(float) * ND, cudaMemcpyDeviceToDevice, g->s);
        lk_rmsnorm_backward(N, D, b->xmid, DW(g, &hb->mlp_norm), b->rstd2, g->dxn, g->dmid, DG(g, &hb->mlp_norm),
                            g->s);
        /* x_mid = x_l + mixer(norm1(x_l)) */
        cudaMemsetAsync(g->dxn, 0, sizeof(float) * ND, g->s);
        TRY(mixer_backward(g, &b->mx, b->xn1, g->dmid, g->dxn));
        cudaMemcpyAsync(g->dx, g->dmid, sizeof(float) * ND, cudaMemcpyDeviceToDevice, g->s);
        lk_rmsnorm_backward(N, D, b->x_in, DW(g, &hb->attn_norm), b->rstd1, g->dxn, g->dx, DG(g, &hb->attn_norm),
                            g->s);
        TRY(blas_status(g, "trunk backward"));
    }
    lk_embedding_backward(N, D, g->tok, g->dx, DG(g, &m->embed), g->s);
    g->have_targets = 0;
    return blas_status(g, "backward");
}

lina_status lina_cuda_lm_zero_grads(lina_cuda_lm *g) {
    cudaMemsetAsync(g->dg, 0, sizeof(float) * g->m->n_params, g->s);
    return cuda_check("zero gradients");
}

lina_status lina_cuda_lm_clip(lina_cuda_lm *g, float max_norm, float *norm_out) {
    size_t n = g->m->n_params;
    double ss = 0;
    lk_sum_squares(n, g->dg, g->sumsq, g->s);
    cudaMemcpyAsync(&ss, g->sumsq, sizeof ss, cudaMemcpyDeviceToHost, g->s);
    if (cudaStreamSynchronize(g->s) != cudaSuccess) return cuda_check("gradient norm");
    float norm = (float)sqrt(ss);
    if (max_norm > 0 && norm > max_norm && isfinite(norm)) lk_scale(n, max_norm / (norm + 1e-6f), g->dg, g->s);
    *norm_out = norm;
    return cuda_check("gradient clipping");
}

lina_status lina_cuda_lm_adamw(lina_cuda_lm *g, const void *key, float *m, float *v, const uint8_t *decay,
                               size_t n, const float cfg[4], int64_t t, float lr) {
    if (n != g->m->n_params)
        return lina_fail(LINA_ERR_INVALID_ARG, "adamw: model has %zu parameters, optimizer %zu", g->m->n_params, n);
    if (g->adam_key != key || g->adam_t != t) { /* a new optimizer, or one loaded on the host */
        if (cudaMemcpyAsync(g->am, m, sizeof(float) * n, cudaMemcpyHostToDevice, g->s) != cudaSuccess ||
            cudaMemcpyAsync(g->av, v, sizeof(float) * n, cudaMemcpyHostToDevice, g->s) != cudaSuccess ||
            cudaMemcpyAsync(g->decay, decay, n, cudaMemcpyHostToDevice, g->s) != cudaSuccess ||
            cudaStreamSynchronize(g->s) != cudaSuccess)
            return cuda_check("optimizer upload");
        g->adam_key = key;
    }
    int64_t t1 = t + 1;
    float bc1 = 1.0f - powf(cfg[0], (float)t1), bc2 = 1.0f - powf(cfg[1], (float)t1);
    lk_adamw_step(n, g->dp, g->dg, g->am, g->av, g->decay, lr, cfg[0], cfg[1], cfg[2], cfg[3], bc1, bc2, g->s);
    g->adam_t = t1;
    return cuda_check("adamw step");
}

lina_status lina_cuda_lm_download(lina_cuda_lm *g, float *params, float *grads, const void *key, float *m,
                                  float *v) {
    size_t n = g->m->n_params, bytes = sizeof(float) * n;
    if (cudaStreamSynchronize(g->s) != cudaSuccess) return cuda_check("download");
    if ((params && cudaMemcpy(params, g->dp, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) ||
        (grads && cudaMemcpy(grads, g->dg, bytes, cudaMemcpyDeviceToHost) != cudaSuccess))
        return cuda_check("parameter download");
    if (key && key == g->adam_key && m && v &&
        (cudaMemcpy(m, g->am, bytes, cudaMemcpyDeviceToHost) != cudaSuccess ||
         cudaMemcpy(v, g->av, bytes, cudaMemcpyDeviceToHost) != cudaSuccess))
        return cuda_check("moment download");
    return LINA_OK;
}
