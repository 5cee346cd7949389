/* Feature maps that act on each coordinate (plus the L2 norm of the row):
 *   identity   y = x
 *   elu1       y = elu(x) + 1 = x + 1 (x > 0), e^x (x <= 0)
 *   relu       y = max(x, 0)
 *   l2norm     y = x / sqrt(|x|^2 + eps)
 *   cosformer  y = [relu(x) cos a, relu(x) sin a],  a = pi pos / (2 M)   (out 2D)
 */
#include <math.h>
#include <string.h>

#include "fmap_internal.h"

static void row_forward(const lina_fmap_desc *d, const float *x, float cosv, float sinv, float *y) {
    int D = d->D;
    switch (d->kind) {
    case LINA_FMAP_ELU1:
        for (int i = 0; i < D; i++)
            y[i] = x[i] > 0 ? x[i] + 1.0f : expf(x[i]);
        break;
    case LINA_FMAP_RELU:
        for (int i = 0; i < D; i++)
            y[i] = x[i] > 0 ? x[i] : 0.0f;
        break;
    case LINA_FMAP_L2NORM: {
        double ss = 0;
        for (int i = 0; i < D; i++)
            ss += (double)x[i] * x[i];
        float r = (float)(1.0 / sqrt(ss + d->eps));
        for (int i = 0; i < D; i++)
            y[i] = x[i] * r;
        break;
    }
    case LINA_FMAP_COSFORMER:
        for (int i = 0; i < D; i++) {
            float p = x[i] > 0 ? x[i] : 0.0f;
            y[i] = p * cosv;
            y[D + i] = p * sinv;
        }
        break;
    default: memcpy(y, x, sizeof(float) * D); break;
    }
}

static void row_backward(const lina_fmap_desc *d, const float *x, float cosv, float sinv,
                         const float *dy, float *dx) {
    int D = d->D;
    switch (d->kind) {
    case LINA_FMAP_ELU1:
        for (int i = 0; i < D; i++)
            dx[i] = dy[i] * (x[i] > 0 ? 1.0f : expf(x[i]));
        break;
    case LINA_FMAP_RELU:
        for (int i = 0; i < D; i++)
            dx[i] = x[i] > 0 ? dy[i] : 0.0f;
        break;
    case LINA_FMAP_L2NORM: {
        /* y = x r, r = (|x|^2 + eps)^-1/2:  dx = r (dy - y (y . dy)) */
        double ss = 0, ydy = 0;
        for (int i = 0; i < D; i++)
            ss += (double)x[i] * x[i];
        double r = 1.0 / sqrt(ss + d->eps);
        for (int i = 0; i < D; i++)
            ydy += x[i] * r * dy[i];
        for (int i = 0; i < D; i++)
            dx[i] = (float)(r * (dy[i] - x[i] * r * ydy));
        break;
    }
    case LINA_FMAP_COSFORMER:
        for (int i = 0; i < D; i++)
            dx[i] = x[i] > 0 ? dy[i] * cosv + dy[D + i] * sinv : 0.0f;
        break;
    default: memcpy(dx, dy, sizeof(float) * D); break;
    }
}

void lina_fmap_elementwise_forward(const lina_fmap_chunk *c) {
    int D = c->d->D;
    for (int r = 0; r < c->rows; r++)
        row_forward(c->d, c->x + (size_t)r * D, c->cosv ? c->cosv[r] : 0, c->sinv ? c->sinv[r] : 0,
                    c->y + (size_t)r * c->out);
}

void lina_fmap_elementwise_backward(const lina_fmap_chunk *c) {
    int D = c->d->D;
    for (int r = 0; r < c->rows; r++)
        row_backward(c->d, c->x + (size_t)r * D, c->cosv ? c->cosv[r] : 0, c->sinv ? c->sinv[r] : 0,
                     c->dy + (size_t)r * c->out, c->dx + (size_t)r * D);
}
