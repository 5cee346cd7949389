#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local char last_error[512];

const char *lina_status_str(lina_status s) {
    switch (s) {
    case LINA_OK: return "ok";
    case LINA_ERR_INVALID_ARG: return "invalid argument";
    case LINA_ERR_UNSUPPORTED: return "unsupported";
    case LINA_ERR_NONFINITE: return "non-finite input";
    case LINA_ERR_OOM: return "out of memory";
    case LINA_ERR_IO: return "i/o error";
    case LINA_ERR_FORMAT: return "malformed input";
    case LINA_ERR_CUDA: return "cuda error";
    case LINA_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *lina_last_error(void) { return last_error; }
void lina_clear_error(void) { last_error[0] = 0; }

lina_status lina_fail(lina_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

int lina_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int lina_all_finite(const float *x, size_t n) {
    /* Inf - Inf and NaN - NaN are NaN; a sum catches both without branches. */
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++) acc += x[i] * 0.0f;
    return acc == 0.0f;
}

const char *lina_features(void) {
    return "openblas"
#ifdef _OPENMP
           " openmp"
#endif
#ifdef __AVX512F__
           " avx512"
#elif defined(__AVX2__)
           " avx2"
#endif
#ifdef LINA_HAVE_CUDA
           " cuda"
#endif
        ;
}
