/* Causal softmax attention with rotary embeddings (fla's Attention layer):
 *   q, k, v = x Wq^T, x Wk^T, x Wv^T;  q, k = rope(q), rope(k)
 *   o = softmax(q k^T / sqrt(K), causal) v   (lina_softmax_forward, lse saved)
 *   out = o Wo^T
 * Backward: do = dout Wo; lina_softmax_backward -> dq, dk, dv; inverse rope;
 * projections. Decoding keeps rotated keys and values in a cache of max_seq
 * tokens and attends the new query over it. */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "layers.h"
#include "lina/softmax.h"
#include "mixer.h"

#define TRY(x)                                                                                     \
    do {                                                                                           \
        lina_status st_ = (x);                                                                     \
        if (st_ != LINA_OK) return st_;                                                            \
    } while (0)

lina_status lina_mixer_softmax_alloc(lina_mixer *mx, int rows) {
    return lina_mixer_linear_alloc(mx, rows); /* same buffer set, a subset is used */
}

static lina_softmax_desc sm_desc(const lina_mixer *mx, int B, int T) {
    lina_softmax_desc d = lina_softmax_desc_default();
    d.B = B;
    d.T = T;
    d.H = mx->H;
    d.HKV = mx->H;
    d.K = mx->K;
    d.V = mx->V;
    return d;
}

/* One query row q (H, K) over cached keys/values [0, len): o (H, V).
 * Two passes per head: scores s_j = q . k_j / sqrt(K) into scratch (len), then
 * p_j = exp(s_j - max) and o = sum p_j v_j / sum p_j. */
static void attend_cache(const lina_mixer *mx, const lina_mixer_state *st, const float *q,
                         float *scores, float *o) {
    int H = mx->H, K = mx->K, V = mx->V, L = st->len;
    float scale = 1.0f / sqrtf((float)K);
    for (int h = 0; h < H; h++) {
        const float *qh = q + (size_t)h * K;
        float mx_s = -INFINITY;
        for (int j = 0; j < L; j++) {
            const float *kj = st->kc + ((size_t)j * H + h) * K;
            float s = 0;
            for (int i = 0; i < K; i++) s += qh[i] * kj[i];
            scores[j] = s * scale;
            mx_s = scores[j] > mx_s ? scores[j] : mx_s;
        }
        float *oh = o + (size_t)h * V;
        for (int c = 0; c < V; c++) oh[c] = 0;
        double sum = 0;
        for (int j = 0; j < L; j++) {
            float p = expf(scores[j] - mx_s);
            sum += p;
            const float *vj = st->vc + ((size_t)j * H + h) * V;
            for (int c = 0; c < V; c++) oh[c] += p * vj[c];
        }
        float inv = (float)(1.0 / sum);
        for (int c = 0; c < V; c++) oh[c] *= inv;
    }
}

lina_status lina_mixer_softmax_forward(lina_mixer *mx, lina_ctx *ctx, int B, int T, const float *x,
                                       float *out, lina_mixer_state *st, int pos0) {
    int N = B * T, D = mx->D, H = mx->H, K = mx->K, V = mx->V, Ck = H * K, Cv = H * V;
    TRY(lina_mixer_softmax_alloc(mx, N));
    if (st && st->len + T > mx->max_seq)
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "softmax attention: %d cached + %d new tokens exceed max_seq = %d "
                         "(the longest context this model accepts)",
                         st->len, T, mx->max_seq);
    mx->B = B;
    mx->T = T;
    mx->x = x;
    mx->pos0 = pos0;
    lina_linear_forward(N, D, Ck, x, mx->q_proj.w, NULL, mx->q);
    lina_linear_forward(N, D, Ck, x, mx->k_proj.w, NULL, mx->k);
    lina_linear_forward(N, D, Cv, x, mx->v_proj.w, NULL, mx->v);
    lina_rotary_apply(B, T, H, K, mx->theta, pos0, mx->q, 0, mx->threads);
    lina_rotary_apply(B, T, H, K, mx->theta, pos0, mx->k, 0, mx->threads);
    if (!st || st->len == 0) {
        lina_softmax_desc d = sm_desc(mx, B, T);
        TRY(lina_softmax_forward(ctx, &d, mx->q, mx->k, mx->v, mx->o, mx->lse));
        if (st) {
            memcpy(st->kc, mx->k, sizeof(float) * N * Ck);
            memcpy(st->vc, mx->v, sizeof(float) * N * Cv);
            st->len = T;
        }
    } else {
        if (!mx->scores) {
            mx->scores = malloc(sizeof(float) * mx->max_seq);
            if (!mx->scores) return lina_fail(LINA_ERR_OOM, "softmax decoding: out of memory");
        }
        for (int t = 0; t < T; t++) {
            memcpy(st->kc + (size_t)st->len * Ck, mx->k + (size_t)t * Ck, sizeof(float) * Ck);
            memcpy(st->vc + (size_t)st->len * Cv, mx->v + (size_t)t * Cv, sizeof(float) * Cv);
            st->len++;
            attend_cache(mx, st, mx->q + (size_t)t * Ck, mx->scores, mx->o + (size_t)t * Cv);
        }
    }
    lina_linear_forward(N, Cv, D, mx->o, mx->o_proj.w, NULL, out);
    return LINA_OK;
}

lina_status lina_mixer_softmax_backward(lina_mixer *mx, lina_ctx *ctx, const float *dout,
                                        float *dx) {
    int B = mx->B, T = mx->T, N = B * T, D = mx->D, H = mx->H, K = mx->K, V = mx->V;
    int Ck = H * K, Cv = H * V;
    const float *x = mx->x;
    float *d_o = mx->t1;
    lina_linear_backward(N, Cv, D, mx->o, mx->o_proj.w, dout, d_o, 1, mx->o_proj.g, NULL);
    lina_softmax_desc d = sm_desc(mx, B, T);
    TRY(lina_softmax_backward(ctx, &d, mx->q, mx->k, mx->v, mx->o, mx->lse, d_o, mx->dq, mx->dk,
                              mx->dv));
    lina_rotary_apply(B, T, H, K, mx->theta, mx->pos0, mx->dq, 1, mx->threads);
    lina_rotary_apply(B, T, H, K, mx->theta, mx->pos0, mx->dk, 1, mx->threads);
    lina_linear_backward(N, D, Ck, x, mx->q_proj.w, mx->dq, dx, 0, mx->q_proj.g, NULL);
    lina_linear_backward(N, D, Ck, x, mx->k_proj.w, mx->dk, dx, 0, mx->k_proj.g, NULL);
    lina_linear_backward(N, D, Cv, x, mx->v_proj.w, mx->dv, dx, 0, mx->v_proj.g, NULL);
    return LINA_OK;
}
