/* Learning-rate schedule (linear warmup, cosine decay) and gradient clipping. */
#include <math.h>

#include "../models/lm_internal.h"
#include "lina/model.h"

float lina_lr_schedule(int64_t step, int64_t warmup, int64_t total, float max_lr, float min_lr) {
    if (warmup > 0 && step < warmup) return max_lr * (float)(step + 1) / (float)warmup;
    if (step >= total || total <= warmup) return min_lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    return min_lr + (float)(0.5 * (1.0 + cos(M_PI * progress))) * (max_lr - min_lr);
}

/* Sum of squares in double, in index order: identical for any thread count. */
float lina_clip_grad_norm(lina_model *m, float max_norm) {
    if (m->cuda) {
        float norm = NAN; /* a device failure reads as a non-finite norm (the step is skipped) */
        lina_cuda_lm_clip(m->cuda, max_norm, &norm);
        return norm;
    }
    float *g = lina_model_grads(m);
    size_t n = lina_model_n_params(m);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    float norm = (float)sqrt(ss);
    if (max_norm > 0 && norm > max_norm && isfinite(norm)) {
        float s = max_norm / (norm + 1e-6f);
        for (size_t i = 0; i < n; i++) g[i] *= s;
    }
    return norm;
}
