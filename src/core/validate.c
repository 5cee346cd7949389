/* Input checks shared by the ops: packed varlen offsets and float buffers. */
#include <math.h>

#include "internal.h"

lina_status lina_check_varlen(const char *fn, int B, int T, const int64_t *cu, int n_seqs) {
    if (B != 1) return lina_fail(LINA_ERR_INVALID_ARG, "%s: B = %d must be 1 with cu_seqlens", fn, B);
    if (n_seqs < 1 || n_seqs > (1 << 24))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: n_seqs = %d out of range [1, %d]", fn, n_seqs,
                         1 << 24);
    if (cu[0] != 0)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: cu_seqlens[0] = %lld must be 0", fn,
                         (long long)cu[0]);
    for (int n = 0; n < n_seqs; n++)
        if (cu[n + 1] < cu[n])
            return lina_fail(LINA_ERR_INVALID_ARG,
                             "%s: cu_seqlens not monotonic: cu_seqlens[%d] = %lld < cu_seqlens[%d] = %lld",
                             fn, n + 1, (long long)cu[n + 1], n, (long long)cu[n]);
    if (cu[n_seqs] != T)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: cu_seqlens[%d] = %lld must equal T = %d", fn,
                         n_seqs, (long long)cu[n_seqs], T);
    return LINA_OK;
}

lina_status lina_check_buffer(const char *fn, const lina_ctx *ctx, const char *name, const float *x,
                              size_t n, int required) {
    if (!x) {
        if (required && n) return lina_fail(LINA_ERR_INVALID_ARG, "%s: buffer %s is NULL", fn, name);
        return LINA_OK;
    }
    if (lina_ctx_check_finite(ctx) && !lina_all_finite(x, n)) {
        for (size_t i = 0; i < n; i++)
            if (!isfinite(x[i]))
                return lina_fail(LINA_ERR_NONFINITE, "%s: %s[%zu] = %g is not finite", fn, name, i,
                                 x[i]);
    }
    return LINA_OK;
}
