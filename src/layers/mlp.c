/* SwiGLU MLP (fla GatedMLP): a = x Wg^T, b = x Wu^T, h = silu(a) b, out = h Wd^T.
 * Backward: dh = dout Wd; da = dh b silu'(a); db = dh silu(a); dx += da Wg + db Wu. */
#include "layers.h"

void lina_mlp_forward(const lina_mlp *p, int N, const float *x, float *a, float *b, float *h,
                      float *out, int threads) {
    lina_linear_forward(N, p->D, p->hidden, x, p->Wg, NULL, a);
    lina_linear_forward(N, p->D, p->hidden, x, p->Wu, NULL, b);
    size_t n = (size_t)N * p->hidden;
#pragma omp parallel for num_threads(threads) if (threads > 1 && n > 65536)
    for (size_t i = 0; i < n; i++) h[i] = lina_siluf(a[i]) * b[i];
    lina_linear_forward(N, p->hidden, p->D, h, p->Wd, NULL, out);
}

void lina_mlp_backward(const lina_mlp *p, int N, const float *x, const float *a, const float *b,
                       const float *h, const float *dout, float *da, float *db, float *dx,
                       int threads) {
    float *dh = da; /* dh computed into da, then turned into da in place */
    lina_linear_backward(N, p->hidden, p->D, h, p->Wd, dout, dh, 1, p->dWd, NULL);
    size_t n = (size_t)N * p->hidden;
#pragma omp parallel for num_threads(threads) if (threads > 1 && n > 65536)
    for (size_t i = 0; i < n; i++) {
        float g = dh[i];
        db[i] = g * lina_siluf(a[i]);
        da[i] = g * b[i] * lina_silu_grad(a[i]);
    }
    lina_linear_backward(N, p->D, p->hidden, x, p->Wg, da, dx, 0, p->dWg, NULL);
    lina_linear_backward(N, p->D, p->hidden, x, p->Wu, db, dx, 0, p->dWu, NULL);
}
