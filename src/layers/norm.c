/* Normalizations: RMSNorm (block pre-norm and final norm), gated RMSNorm
 * (fla FusedRMSNormGated with swish: output norm of the mixers), and the L2
 * normalization of q/k (fla l2norm). Forward and backward side by side.
 *
 * RMSNorm: n = x r, r = (mean(x^2) + eps)^-1/2, y = n w.
 *   dn = dy w;  dx = r (dn - n mean(dn n));  dw += sum_rows dy n.
 * Gated: y = n w silu(z): dn = dy w silu(z), dz = dy n w silu'(z).
 * L2: y = x r, r = (sum(x^2) + eps)^-1/2:  dx = r (dy - y (dy . y)).
 */
#include "layers.h"

void lina_rmsnorm_forward(int N, int D, const float *x, const float *w, float eps, float *y,
                          float *rstd, int threads) {
    lina_gated_rmsnorm_forward(N, D, x, NULL, w, eps, y, rstd, threads);
}

void lina_rmsnorm_backward(int N, int D, const float *x, const float *w, const float *rstd,
                           const float *dy, float *dx, float *dw, int threads) {
#pragma omp parallel for num_threads(threads) if (threads > 1 && N > 64)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D, *dyr = dy + (size_t)n * D;
        float r = rstd[n];
        double dot = 0;
        for (int i = 0; i < D; i++) dot += (double)dyr[i] * w[i] * xr[i] * r;
        float m = (float)(dot / D);
        float *dxr = dx + (size_t)n * D;
        for (int i = 0; i < D; i++) dxr[i] += r * (dyr[i] * w[i] - xr[i] * r * m);
    }
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D, *dyr = dy + (size_t)n * D;
        for (int i = 0; i < D; i++) dw[i] += dyr[i] * xr[i] * rstd[n];
    }
}

void lina_gated_rmsnorm_forward(int N, int D, const float *o, const float *z, const float *w,
                                float eps, float *y, float *rstd, int threads) {
#pragma omp parallel for num_threads(threads) if (threads > 1 && N > 64)
    for (int n = 0; n < N; n++) {
        const float *xr = o + (size_t)n * D;
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / D + eps));
        rstd[n] = r;
        float *yr = y + (size_t)n * D;
        if (z) {
            const float *zr = z + (size_t)n * D;
            for (int i = 0; i < D; i++) yr[i] = xr[i] * r * w[i] * lina_siluf(zr[i]);
        } else {
            for (int i = 0; i < D; i++) yr[i] = xr[i] * r * w[i];
        }
    }
}

void lina_gated_rmsnorm_backward(int N, int D, const float *o, const float *z, const float *w,
                                 const float *rstd, const float *dy, float *d_o, float *dz,
                                 float *dw, int threads) {
#pragma omp parallel for num_threads(threads) if (threads > 1 && N > 64)
    for (int n = 0; n < N; n++) {
        const float *xr = o + (size_t)n * D, *dyr = dy + (size_t)n * D;
        const float *zr = z ? z + (size_t)n * D : NULL;
        float r = rstd[n];
        double dot = 0;
        for (int i = 0; i < D; i++) {
            float gate = zr ? lina_siluf(zr[i]) : 1.0f;
            dot += (double)dyr[i] * w[i] * gate * xr[i] * r;
        }
        float m = (float)(dot / D);
        float *dor = d_o + (size_t)n * D;
        for (int i = 0; i < D; i++) {
            float gate = zr ? lina_siluf(zr[i]) : 1.0f;
            dor[i] = r * (dyr[i] * w[i] * gate - xr[i] * r * m);
        }
        if (zr) {
            float *dzr = dz + (size_t)n * D;
            for (int i = 0; i < D; i++) dzr[i] = dyr[i] * xr[i] * r * w[i] * lina_silu_grad(zr[i]);
        }
    }
    for (int n = 0; n < N; n++) {
        const float *xr = o + (size_t)n * D, *dyr = dy + (size_t)n * D;
        const float *zr = z ? z + (size_t)n * D : NULL;
        for (int i = 0; i < D; i++) dw[i] += dyr[i] * xr[i] * rstd[n] * (zr ? lina_siluf(zr[i]) : 1.0f);
    }
}

void lina_l2norm_forward(int N, int D, const float *x, float eps, float *y, float *rnorm,
                         int threads) {
#pragma omp parallel for num_threads(threads) if (threads > 1 && N > 64)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss + eps));
        rnorm[n] = r;
        for (int i = 0; i < D; i++) y[(size_t)n * D + i] = xr[i] * r;
    }
}

void lina_l2norm_backward(int N, int D, const float *y, const float *rnorm, const float *dy,
                          float *dx, int threads) {
#pragma omp parallel for num_threads(threads) if (threads > 1 && N > 64)
    for (int n = 0; n < N; n++) {
        const float *yr = y + (size_t)n * D, *dyr = dy + (size_t)n * D;
        double dot = 0;
        for (int i = 0; i < D; i++) dot += (double)dyr[i] * yr[i];
        for (int i = 0; i < D; i++)
            dx[(size_t)n * D + i] = rnorm[n] * (dyr[i] - yr[i] * (float)dot);
    }
}
