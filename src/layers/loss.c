/* Softmax cross-entropy: loss = mean over valid rows of logsumexp(z) - z[target].
 * Backward: dz = scale (softmax(z) - onehot(target)) / n_valid. */
#include "layers.h"

double lina_cross_entropy_forward(int N, int V, const float *logits, const int32_t *targets,
                                  float *probs, int *n_valid, int threads) {
    double total = 0;
    int valid = 0;
    for (int n = 0; n < N; n++) valid += targets[n] >= 0;
#pragma omp parallel for num_threads(threads) if (threads > 1 && N > 64)
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * V;
        float *p = probs + (size_t)n * V;
        float mx = z[0];
        for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
        /* one float exp per logit (z - max <= 0, so no overflow), summed in double: with large
         * vocabularies this loop is a visible part of a training step */
        double s = 0;
        for (int i = 0; i < V; i++) {
            p[i] = expf(z[i] - mx);
            s += p[i];
        }
        const float inv = (float)(1.0 / s);
        for (int i = 0; i < V; i++) p[i] *= inv;
    }
    /* -log p[target], summed in row order (independent of the thread count) */
    for (int n = 0; n < N; n++)
        if (targets[n] >= 0) {
            float pt = probs[(size_t)n * V + targets[n]];
            total += -log(pt > 1e-30f ? (double)pt : 1e-30);
        }
    *n_valid = valid;
    return valid ? total / valid : 0.0;
}

void lina_cross_entropy_backward(int N, int V, const float *probs, const int32_t *targets,
                                 int n_valid, float scale, float *dlogits, int threads) {
    float f = n_valid ? scale / n_valid : 0.0f;
#pragma omp parallel for num_threads(threads) if (threads > 1 && N > 64)
    for (int n = 0; n < N; n++) {
        float *d = dlogits + (size_t)n * V;
        const float *p = probs + (size_t)n * V;
        if (targets[n] < 0) {
            for (int i = 0; i < V; i++) d[i] = 0;
            continue;
        }
        for (int i = 0; i < V; i++) d[i] = f * p[i];
        d[targets[n]] -= f;
    }
}
