/* Linear layer y = x W^T + b with W (out, in) as in torch.
 * Backward: dx = dy W (N, in), dW += dy^T x (out, in), db += column sums of dy.
 * The GEMMs go through lina_sgemm_fixed: results do not depend on the thread count. */
#include "../ops/gemm_fixed.h"
#include "layers.h"

void lina_linear_forward(int N, int in, int out, const float *x, const float *W, const float *b,
                         float *y) {
    if (b)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) y[(size_t)n * out + o] = b[o];
    lina_sgemm_fixed(CblasNoTrans, CblasTrans, N, out, in, 1.0f, x, in, W, in, b ? 1.0f : 0.0f, y, out);
}

void lina_linear_backward(int N, int in, int out, const float *x, const float *W, const float *dy,
                          float *dx, int dx_overwrite, float *dW, float *db) {
    if (dx)
        lina_sgemm_fixed(CblasNoTrans, CblasNoTrans, N, in, out, 1.0f, dy, out, W, in,
                         dx_overwrite ? 0.0f : 1.0f, dx, in);
    if (dW)
        lina_sgemm_fixed(CblasTrans, CblasNoTrans, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
    if (db)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) db[o] += dy[(size_t)n * out + o];
}
