/* The CUDA API (include/lina/cuda.h) in a build without CUDA: every call
 * reports LINA_ERR_UNSUPPORTED, so callers can probe for the GPU path. */
#include "lina/cuda.h"

#ifndef LINA_HAVE_CUDA
#include "../core/internal.h"

int lina_cuda_available(void) { return 0; }

lina_status lina_cuda_attn_forward(const lina_attn_desc *d, lina_dtype dtype,
                                   const lina_cuda_attn_fwd_args *a, void *stream) {
    (void)d, (void)dtype, (void)a, (void)stream;
    return lina_fail(LINA_ERR_UNSUPPORTED,
                     "lina_cuda_attn_forward: this liblina was built without CUDA (make CUDA=1)");
}

lina_status lina_cuda_attn_backward(const lina_attn_desc *d, lina_dtype dtype,
                                    const lina_cuda_attn_bwd_args *a, void *stream) {
    (void)d, (void)dtype, (void)a, (void)stream;
    return lina_fail(LINA_ERR_UNSUPPORTED,
                     "lina_cuda_attn_backward: this liblina was built without CUDA (make CUDA=1)");
}

lina_status lina_cuda_attn_step(const lina_attn_desc *d, lina_dtype dtype, const void *q,
                                const void *k, const void *v, const float *g, const float *beta,
                                float *state, void *o, void *stream) {
    (void)d, (void)dtype, (void)q, (void)k, (void)v, (void)g, (void)beta, (void)state, (void)o,
        (void)stream;
    return lina_fail(LINA_ERR_UNSUPPORTED,
                     "lina_cuda_attn_step: this liblina was built without CUDA (make CUDA=1)");
}
#endif
