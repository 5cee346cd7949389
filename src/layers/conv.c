/* Short causal depthwise convolution followed by SiLU (fla ShortConvolution,
 * weight (C, 1, W) stored as (C, W), no bias):
 *   c[t, ch] = sum_{i<W} w[ch, i] x[t - (W-1) + i, ch],   y = silu(c)
 * Backward: dc = dy silu'(c);  dx[t - (W-1) + i] += w[i] dc[t];  dw[i] += dc[t] x[t - (W-1) + i].
 * With a history (decoding, B == 1) x[t < 0] = hist[W-1+t]; otherwise zeros. */
#include <string.h>

#include "layers.h"

static float x_at(int T, int C, int W, const float *x, const float *hist, int t, int ch) {
    (void)T;
    if (t >= 0) return x[(size_t)t * C + ch];
    return hist ? hist[(size_t)(W - 1 + t) * C + ch] : 0.0f;
}

void lina_conv_forward(int B, int T, int C, int W, const float *x, const float *w,
                       const float *hist, float *c, float *y, int threads) {
#pragma omp parallel for num_threads(threads) if (threads > 1 && B * T > 64)
    for (int bt = 0; bt < B * T; bt++) {
        int b = bt / T, t = bt % T;
        const float *xb = x + (size_t)b * T * C;
        for (int ch = 0; ch < C; ch++) {
            float acc = 0;
            for (int i = 0; i < W; i++)
                acc += w[(size_t)ch * W + i] * x_at(T, C, W, xb, B == 1 ? hist : NULL, t - (W - 1) + i, ch);
            c[(size_t)bt * C + ch] = acc;
            y[(size_t)bt * C + ch] = lina_siluf(acc);
        }
    }
}

void lina_conv_backward(int B, int T, int C, int W, const float *x, const float *w,
                        const float *hist, const float *c, const float *dy, float *dc, float *dx,
                        float *dw, int threads) {
    size_t n = (size_t)B * T * C;
    for (size_t i = 0; i < n; i++) dc[i] = dy[i] * lina_silu_grad(c[i]);
    /* dx[s] = sum_i w[i] dc[s + (W-1) - i] (gather: each output row by one thread) */
#pragma omp parallel for num_threads(threads) if (threads > 1 && B * T > 64)
    for (int bs = 0; bs < B * T; bs++) {
        int b = bs / T, s = bs % T;
        for (int ch = 0; ch < C; ch++) {
            float acc = 0;
            for (int i = 0; i < W; i++) {
                int t = s + (W - 1) - i;
                if (t < T) acc += w[(size_t)ch * W + i] * dc[((size_t)b * T + t) * C + ch];
            }
            dx[(size_t)bs * C + ch] = acc;
        }
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int ch = 0; ch < C; ch++) {
                float d = dc[((size_t)b * T + t) * C + ch];
                for (int i = 0; i < W; i++)
                    dw[(size_t)ch * W + i] +=
                        d * x_at(T, C, W, x + (size_t)b * T * C, B == 1 ? hist : NULL, t - (W - 1) + i, ch);
            }
}

void lina_conv_update_history(int T, int C, int W, const float *x, float *hist) {
    int Hn = W - 1;
    if (Hn <= 0) return;
    if (T >= Hn) {
        memcpy(hist, x + (size_t)(T - Hn) * C, sizeof(float) * Hn * C);
    } else {
        memmove(hist, hist + (size_t)T * C, sizeof(float) * (Hn - T) * C);
        memcpy(hist + (size_t)(Hn - T) * C, x, sizeof(float) * T * C);
    }
}
