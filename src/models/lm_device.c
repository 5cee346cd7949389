/* Attaching a model to the GPU for training (include/lina/model.h): the
 * device copy lives in m->cuda (src/cuda/lm_cuda.c); lm.c, lm_head_at.c,
 * adamw.c and schedule.c dispatch to it while it exists. */
#include "../core/internal.h"
#include "lm_internal.h"

#ifdef LINA_HAVE_CUDA

lina_status lina_model_use_cuda(lina_model *m) {
    if (!m) return lina_fail(LINA_ERR_INVALID_ARG, "lina_model_use_cuda: NULL model");
    if (m->cuda) return LINA_OK;
    return lina_cuda_lm_create(m, &m->cuda);
}

lina_status lina_model_sync_host(lina_model *m, lina_adamw *opt) {
    if (!m) return lina_fail(LINA_ERR_INVALID_ARG, "lina_model_sync_host: NULL model");
    if (!m->cuda) return LINA_OK;
    float *mom = NULL, *var = NULL;
    if (opt) lina_adamw_moments(opt, &mom, &var);
    lina_status st = lina_cuda_lm_download(m->cuda, m->params, m->grads, opt, mom, var);
    if (st == LINA_OK) m->host_stale = 0;
    return st;
}

lina_status lina_model_release_cuda(lina_model *m) {
    if (!m || !m->cuda) return LINA_OK;
    lina_status st = lina_model_sync_host(m, NULL);
    lina_cuda_lm_free(m->cuda);
    m->cuda = NULL;
    return st;
}

#else

lina_status lina_model_use_cuda(lina_model *m) {
    (void)m;
    return lina_fail(LINA_ERR_UNSUPPORTED, "lina_model_use_cuda: this lina was built without CUDA (make CUDA=1)");
}

lina_status lina_model_sync_host(lina_model *m, lina_adamw *opt) {
    (void)m;
    (void)opt;
    return LINA_OK;
}

lina_status lina_model_release_cuda(lina_model *m) {
    (void)m;
    return LINA_OK;
}

/* never called: m->cuda stays NULL without CUDA */
lina_status lina_cuda_lm_forward_scored(lina_cuda_lm *g, int B, int T, const int32_t *tokens,
                                        const int32_t *targets, float *logits, float *loss, int *n_scored) {
    (void)g, (void)B, (void)T, (void)tokens, (void)targets, (void)logits, (void)loss, (void)n_scored;
    return lina_fail(LINA_ERR_UNSUPPORTED, "built without CUDA");
}
lina_status lina_cuda_lm_backward(lina_cuda_lm *g, float grad_scale) {
    (void)g, (void)grad_scale;
    return lina_fail(LINA_ERR_UNSUPPORTED, "built without CUDA");
}
lina_status lina_cuda_lm_zero_grads(lina_cuda_lm *g) {
    (void)g;
    return lina_fail(LINA_ERR_UNSUPPORTED, "built without CUDA");
}
lina_status lina_cuda_lm_clip(lina_cuda_lm *g, float max_norm, float *norm) {
    (void)g, (void)max_norm, (void)norm;
    return lina_fail(LINA_ERR_UNSUPPORTED, "built without CUDA");
}
lina_status lina_cuda_lm_adamw(lina_cuda_lm *g, const void *key, float *m, float *v, const uint8_t *decay,
                               size_t n, const float cfg[4], int64_t t, float lr) {
    (void)g, (void)key, (void)m, (void)v, (void)decay, (void)n, (void)cfg, (void)t, (void)lr;
    return lina_fail(LINA_ERR_UNSUPPORTED, "built without CUDA");
}

#endif

int lina_model_on_cuda(const lina_model *m) { return m && m->cuda != NULL; }
