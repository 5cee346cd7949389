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

/* Rows of the W = 4 fast paths (fla's default width): r[i] = source row of tap i, all present.
 * The sums run in the generic loops' order, so both paths give the same bits. */
static void rows4(const float *xb, const float *hist, int C, int t, const float *r[4]) {
    for (int i = 0; i < 4; i++) {
        int s = t - 3 + i;
        r[i] = s >= 0 ? xb + (size_t)s * C : hist + (size_t)(3 + s) * C;
    }
}

void lina_conv_forward(int B, int T, int C, int W, const float *x, const float *w,
                       const float *hist, float *c, float *y, int threads) {
#pragma omp parallel for num_threads(threads) if (threads > 1 && B * T > 64)
    for (int bt = 0; bt < B * T; bt++) {
        int b = bt / T, t = bt % T;
        const float *xb = x + (size_t)b * T * C, *hb = B == 1 ? hist : NULL;
        float *cr = c + (size_t)bt * C, *yr = y + (size_t)bt * C;
        if (W == 4 && (t >= 3 || hb)) {
            const float *r[4];
            rows4(xb, hb, C, t, r);
            for (int ch = 0; ch < C; ch++) {
                float acc = 0;
                acc += w[4 * ch] * r[0][ch];
                acc += w[4 * ch + 1] * r[1][ch];
                acc += w[4 * ch + 2] * r[2][ch];
                acc += w[4 * ch + 3] * r[3][ch];
                cr[ch] = acc;
                yr[ch] = lina_siluf(acc);
            }
            continue;
        }
        for (int ch = 0; ch < C; ch++) {
            float acc = 0;
            for (int i = 0; i < W; i++)
                acc += w[(size_t)ch * W + i] * x_at(T, C, W, xb, hb, t - (W - 1) + i, ch);
            cr[ch] = acc;
            yr[ch] = lina_siluf(acc);
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
        float *dxr = dx + (size_t)bs * C;
        if (W == 4 && s + 3 < T) {
            const float *d0 = dc + ((size_t)b * T + s + 3) * C, *d1 = d0 - C, *d2 = d1 - C, *d3 = d2 - C;
            for (int ch = 0; ch < C; ch++) {
                float acc = 0;
                acc += w[4 * ch] * d0[ch];
                acc += w[4 * ch + 1] * d1[ch];
                acc += w[4 * ch + 2] * d2[ch];
                acc += w[4 * ch + 3] * d3[ch];
                dxr[ch] = acc;
            }
            continue;
        }
        for (int ch = 0; ch < C; ch++) {
            float acc = 0;
            for (int i = 0; i < W; i++) {
                int t = s + (W - 1) - i;
                if (t < T) acc += w[(size_t)ch * W + i] * dc[((size_t)b * T + t) * C + ch];
            }
            dxr[ch] = acc;
        }
    }
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * T * C, *hb = B == 1 ? hist : NULL;
        for (int t = 0; t < T; t++) {
            const float *dr = dc + ((size_t)b * T + t) * C;
            if (W == 4 && (t >= 3 || hb)) {
                const float *r[4];
                rows4(xb, hb, C, t, r);
                for (int ch = 0; ch < C; ch++) {
                    float d = dr[ch];
                    dw[4 * ch] += d * r[0][ch];
                    dw[4 * ch + 1] += d * r[1][ch];
                    dw[4 * ch + 2] += d * r[2][ch];
                    dw[4 * ch + 3] += d * r[3][ch];
                }
                continue;
            }
            for (int ch = 0; ch < C; ch++)
                for (int i = 0; i < W; i++)
                    dw[(size_t)ch * W + i] += dr[ch] * x_at(T, C, W, xb, hb, t - (W - 1) + i, ch);
        }
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
