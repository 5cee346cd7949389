/* Rotary position embeddings, non-interleaved halves (GPT-NeoX, fla's default):
 * for i < D/2, f_i = theta^(-2i/D), a = pos f_i:
 *   y_i = x_i cos a - x_{i+D/2} sin a,   y_{i+D/2} = x_{i+D/2} cos a + x_i sin a.
 * A rotation: its backward is the inverse rotation (angle -a) of dy. */
#include "layers.h"

void lina_rotary_apply(int B, int T, int H, int D, float theta, int pos0, float *x, int inverse,
                       int threads) {
    int half = D / 2;
    /* the angle depends on (t, i) only: one pow and sin/cos per position and frequency, applied
     * to every batch row and head (the B * H rows of a position stay in L1 over the i loop) */
#pragma omp parallel for num_threads(threads) if (threads > 1 && B * T > 64)
    for (int t = 0; t < T; t++) {
        double pos = pos0 + t;
        for (int i = 0; i < half; i++) {
            double a = pos * pow(theta, -2.0 * i / D);
            float c = (float)cos(a), s = (float)(inverse ? -sin(a) : sin(a));
            lina_rotate_pairs(B, T, H, D, t, i, half, c, s, x);
        }
    }
}
