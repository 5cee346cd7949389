/* The CUDA API (include/lina/cuda.h) in a build without CUDA: every call
 * reports LINA_ERR_UNSUPPORTED, so callers can probe for the GPU path. */
#include "lina/cuda.h"

#ifndef LINA_HAVE_CUDA
#include <string.h>

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

/* ---- device memory and timing (src/cuda/cuda_mem.cu) ---- */

#define NO_CUDA(fn) lina_fail(LINA_ERR_UNSUPPORTED, fn ": this liblina was built without CUDA (make CUDA=1)")

lina_status lina_cuda_device_info(lina_cuda_device *out) {
    if (out) memset(out, 0, sizeof *out);
    return NO_CUDA("lina_cuda_device_info");
}

lina_status lina_cuda_malloc(void **p, size_t bytes) {
    (void)bytes;
    if (p) *p = NULL;
    return NO_CUDA("lina_cuda_malloc");
}

void lina_cuda_free(void *p) { (void)p; }

lina_status lina_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes) {
    (void)dst, (void)src, (void)bytes;
    return NO_CUDA("lina_cuda_memcpy_h2d");
}

lina_status lina_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes) {
    (void)dst, (void)src, (void)bytes;
    return NO_CUDA("lina_cuda_memcpy_d2h");
}

lina_status lina_cuda_memset(void *p, int byte, size_t bytes, void *stream) {
    (void)p, (void)byte, (void)bytes, (void)stream;
    return NO_CUDA("lina_cuda_memset");
}

lina_status lina_cuda_synchronize(void) { return NO_CUDA("lina_cuda_synchronize"); }

lina_status lina_cuda_timer_create(lina_cuda_timer **out) {
    if (out) *out = NULL;
    return NO_CUDA("lina_cuda_timer_create");
}

lina_status lina_cuda_timer_start(lina_cuda_timer *t, void *stream) {
    (void)t, (void)stream;
    return NO_CUDA("lina_cuda_timer_start");
}

lina_status lina_cuda_timer_stop(lina_cuda_timer *t, void *stream, float *ms) {
    (void)t, (void)stream;
    if (ms) *ms = 0.0f;
    return NO_CUDA("lina_cuda_timer_stop");
}

void lina_cuda_timer_free(lina_cuda_timer *t) { (void)t; }

lina_status lina_cuda_fill_random(void *x, size_t rows, int cols, lina_dtype dtype, lina_cuda_random dist,
                                  float lo, float hi, int l2_rows, uint64_t seed, void *stream) {
    (void)x, (void)rows, (void)cols, (void)dtype, (void)dist, (void)lo, (void)hi, (void)l2_rows, (void)seed,
        (void)stream;
    return NO_CUDA("lina_cuda_fill_random");
}
#endif
