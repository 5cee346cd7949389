/* Shared math of the Hugging Face runner: linear layers, RMSNorm, the causal
 * depthwise short convolution with carried history, the SwiGLU MLP. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../ops/gemm_fixed.h"
#include "../core/internal.h"
#include "hf_internal.h"

float hf_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
float hf_silu(float x) { return x * hf_sigmoid(x); }
float hf_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

/* dot product with 8 partial sums (vectorizes without -ffast-math) */
static float dot(const float *a, const float *b, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Products below this many multiply-adds (a decoding step of a small model)
 * run in this thread: waking BLAS's thread team costs more than the work. */
#define SMALL_LINEAR_MACS ((size_t)1 << 22)

void hf_linear(int N, int in, int out, const float *x, const float *W, const float *b, float *y) {
    if (N <= 0) return;
    if ((size_t)N * in * out <= SMALL_LINEAR_MACS) {
        for (int r = 0; r < N; r++)
            for (int o = 0; o < out; o++) y[(size_t)r * out + o] = dot(x + (size_t)r * in, W + (size_t)o * in, in);
    } else if (N == 1) {
        lina_sgemv_fixed(out, in, W, in, x, y);
    } else {
        lina_sgemm_fixed(CblasNoTrans, CblasTrans, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    }
    if (b)
        for (int r = 0; r < N; r++)
            for (int o = 0; o < out; o++) y[(size_t)r * out + o] += b[o];
}

void hf_rmsnorm(int N, int D, const float *x, const float *w, float eps, float *y) {
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * D;
        float *yr = y + (size_t)r * D;
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        float rstd = (float)(1.0 / sqrt(ss / D + eps));
        for (int i = 0; i < D; i++) yr[i] = xr[i] * rstd * (w ? w[i] : 1.0f);
    }
}

void hf_conv_forward(int B, int T, const hf_conv *cv, int W, const float *x, float *hist, int act_silu, float *y) {
    int C = cv->C, Wm1 = W - 1;
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * T * C;
        float *yb = y + (size_t)b * T * C;
        float *hb = hist + (size_t)b * Wm1 * C; /* (W-1, C), oldest first */
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                float acc = cv->b ? cv->b[c] : 0.0f;
                for (int i = 0; i < W; i++) {
                    int src = t - Wm1 + i; /* input position; < 0 reads the history */
                    float xv = src >= 0 ? xb[(size_t)src * C + c] : hb[(size_t)(Wm1 + src) * C + c];
                    acc += cv->w[(size_t)c * W + i] * xv;
                }
                yb[(size_t)t * C + c] = act_silu ? hf_silu(acc) : acc;
            }
        /* new history: the last W-1 rows of [hist; x] */
        if (T >= Wm1) {
            memcpy(hb, xb + (size_t)(T - Wm1) * C, (size_t)Wm1 * C * sizeof *hb);
        } else {
            memmove(hb, hb + (size_t)T * C, (size_t)(Wm1 - T) * C * sizeof *hb);
            memcpy(hb + (size_t)(Wm1 - T) * C, xb, (size_t)T * C * sizeof *hb);
        }
    }
}

void hf_swiglu(int N, int D, int width, const float *x, const float *Wg, const float *Wu, const float *Wd, float *tmp,
               float *out) {
    float *g = tmp, *u = tmp + (size_t)N * width; /* (N, width) each */
    hf_linear(N, D, width, x, Wg, NULL, g);
    hf_linear(N, D, width, x, Wu, NULL, u);
    for (size_t i = 0; i < (size_t)N * width; i++) g[i] = hf_silu(g[i]) * u[i];
    hf_linear(N, width, D, g, Wd, NULL, out);
}

lina_attn_desc hf_attn_desc(int B, int T, int H, int HV, int K, int V, lina_gate gate, lina_update update) {
    lina_attn_desc d = lina_attn_desc_default(); /* scale 0: 1/sqrt(K); form AUTO */
    d.B = B;
    d.T = T;
    d.H = H;
    d.HV = HV;
    d.K = K;
    d.V = V;
    d.gate = gate;
    d.update = update;
    return d;
}

lina_status hf_attn_run(lina_ctx *ctx, const lina_attn_desc *d, int layer, const float *q,
                        const float *k, const float *v, const float *g, const float *beta, float *S,
                        float *o) {
    lina_attn_fwd_args a = {q, k, v, g, beta, S, o, S};
    lina_status st = lina_attn_forward(ctx, d, &a);
    if (st) {
        char why[400];
        snprintf(why, sizeof why, "%s", lina_last_error());
        return lina_fail(st, "layer %d attention: %s", layer, why);
    }
    return LINA_OK;
}

void hf_norm_gate_out(const lina_hf_model *m, const hf_layer *L, int N, int heads, int Vh, const float *xn, float *o,
                      float *gate, float *pre, float *x) {
    const int D = m->D, vv = heads * Vh;
    hf_rmsnorm(N * heads, Vh, o, L->o_norm, m->norm_eps, o);
    if (L->g_proj) {
        hf_linear(N, D, vv, xn, L->g_proj, NULL, gate);
        for (size_t i = 0; i < (size_t)N * vv; i++) o[i] *= hf_silu(gate[i]);
    }
    hf_linear(N, vv, D, o, L->o_proj, NULL, pre);
    for (size_t i = 0; i < (size_t)N * D; i++) x[i] += pre[i];
}
