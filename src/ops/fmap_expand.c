/* Polynomial feature expansions.
 *
 * Taylor (Based, Arora et al. 2024), out 1 + D + D^2:
 *   phi(x) = [1, x / D^(1/4), vec(x x^T) / (sqrt(2) sqrt(D))]      (x_i x_j at 1 + D + i D + j)
 * so that phi(q) . phi(k) = 1 + q.k / sqrt(D) + (q.k)^2 / (2 D), the second-order
 * Taylor expansion of exp(q.k / sqrt(D)).
 *
 * DPFP (Schlag et al. 2021), out 2 D nu: with x' = [relu(x), relu(-x)] (2D),
 *   phi(x)[(j-1) 2D + i] = x'_i x'_{(i - j) mod 2D},   j = 1..nu
 * (the paper's code: x' repeated nu times times x' rolled by 1..nu).
 */
#include <math.h>
#include <string.h>

#include "fmap_internal.h"

static void taylor_consts(int D, float *c1, float *c2) {
    *c1 = (float)pow((double)D, -0.25);
    *c2 = (float)(1.0 / (sqrt(2.0) * sqrt((double)D)));
}

static void taylor_forward(int D, const float *x, float *y) {
    float c1, c2;
    taylor_consts(D, &c1, &c2);
    y[0] = 1.0f;
    for (int i = 0; i < D; i++)
        y[1 + i] = x[i] * c1;
    float *yy = y + 1 + D; // (D, D) outer product
    for (int i = 0; i < D; i++) {
        float xi = x[i] * c2;
        for (int j = 0; j < D; j++)
            yy[(size_t)i * D + j] = xi * x[j];
    }
}

/* dx_i = c1 dy1_i + c2 sum_j (dyy_ij + dyy_ji) x_j */
static void taylor_backward(int D, const float *x, const float *dy, float *dx) {
    float c1, c2;
    taylor_consts(D, &c1, &c2);
    const float *dyy = dy + 1 + D;
    for (int i = 0; i < D; i++) {
        float acc = 0.0f;
        for (int j = 0; j < D; j++)
            acc += (dyy[(size_t)i * D + j] + dyy[(size_t)j * D + i]) * x[j];
        dx[i] = c1 * dy[1 + i] + c2 * acc;
    }
}

static void dpfp_signed(int D, const float *x, float *xp) {
    for (int i = 0; i < D; i++) {
        xp[i] = x[i] > 0 ? x[i] : 0.0f;
        xp[D + i] = x[i] < 0 ? -x[i] : 0.0f;
    }
}

/* xp: (2D) scratch */
static void dpfp_forward(int D, int nu, const float *x, float *y, float *xp) {
    int D2 = 2 * D;
    dpfp_signed(D, x, xp);
    for (int j = 1; j <= nu; j++) {
        float *yj = y + (size_t)(j - 1) * D2;
        for (int i = 0; i < D2; i++)
            yj[i] = xp[i] * xp[((i - j) % D2 + D2) % D2];
    }
}

/* xp, dxp: (2D) scratch each */
static void dpfp_backward(int D, int nu, const float *x, const float *dy, float *dx, float *xp,
                          float *dxp) {
    int D2 = 2 * D;
    dpfp_signed(D, x, xp);
    memset(dxp, 0, sizeof(float) * D2);
    for (int j = 1; j <= nu; j++) {
        const float *dyj = dy + (size_t)(j - 1) * D2;
        for (int i = 0; i < D2; i++) {
            int s = ((i - j) % D2 + D2) % D2;
            dxp[i] += dyj[i] * xp[s];
            dxp[s] += dyj[i] * xp[i];
        }
    }
    for (int i = 0; i < D; i++)
        dx[i] = (x[i] > 0 ? dxp[i] : 0.0f) - (x[i] < 0 ? dxp[D + i] : 0.0f);
}

void lina_fmap_expand_forward(const lina_fmap_chunk *c) {
    int D = c->d->D;
    for (int r = 0; r < c->rows; r++) {
        const float *x = c->x + (size_t)r * D;
        float *y = c->y + (size_t)r * c->out;
        if (c->d->kind == LINA_FMAP_TAYLOR)
            taylor_forward(D, x, y);
        else
            dpfp_forward(D, c->d->nu, x, y, c->ws);
    }
}

void lina_fmap_expand_backward(const lina_fmap_chunk *c) {
    int D = c->d->D;
    for (int r = 0; r < c->rows; r++) {
        const float *x = c->x + (size_t)r * D, *dy = c->dy + (size_t)r * c->out;
        float *dx = c->dx + (size_t)r * D;
        if (c->d->kind == LINA_FMAP_TAYLOR)
            taylor_backward(D, x, dy, dx);
        else
            dpfp_backward(D, c->d->nu, x, dy, dx, c->ws, c->ws + 2 * D);
    }
}
