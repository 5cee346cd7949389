/* lina core: status codes, error messages, execution contexts. */
#ifndef LINA_CORE_H
#define LINA_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LINA_VERSION_MAJOR 0
#define LINA_VERSION_MINOR 1
#define LINA_VERSION_PATCH 0
#define LINA_VERSION_STRING "0.1.0"

typedef enum {
    LINA_OK = 0,
    LINA_ERR_INVALID_ARG = 1, /* a size, pointer or option is wrong */
    LINA_ERR_UNSUPPORTED = 2, /* valid, but this form/device cannot do it */
    LINA_ERR_NONFINITE = 3,   /* NaN or Inf in an input */
    LINA_ERR_OOM = 4,         /* allocation failed or size overflows */
    LINA_ERR_IO = 5,          /* file system error */
    LINA_ERR_FORMAT = 6,      /* malformed file contents */
    LINA_ERR_CUDA = 7,        /* CUDA runtime / cuBLAS error */
    LINA_ERR_INTERNAL = 8
} lina_status;

/* Short fixed description of a status code ("invalid argument", ...). */
const char *lina_status_str(lina_status s);

/* The message of the last error raised on this thread, naming the offending
 * value (e.g. "lina_attn_forward: K = 0 must be >= 1"). Empty if none. */
const char *lina_last_error(void);
void lina_clear_error(void);

/* Build-time features: a static string such as "openblas openmp avx512". */
const char *lina_features(void);

/* An execution context: thread count and a reusable workspace. Ops allocate
 * their scratch memory from it once and reuse it across calls (first touch of
 * fresh pages is expensive). A context is used by one caller thread at a time.
 * Passing NULL to an op uses a per-thread default context. */
typedef struct lina_ctx lina_ctx;

lina_status lina_ctx_create(lina_ctx **out);
void lina_ctx_free(lina_ctx *ctx);
/* n <= 0 means "all cores" (omp_get_max_threads()). Results never depend on it. */
lina_status lina_ctx_set_threads(lina_ctx *ctx, int n);
int lina_ctx_threads(const lina_ctx *ctx);
/* Reject NaN/Inf inputs to ops (default on; costs one pass over the inputs). */
void lina_ctx_set_check_finite(lina_ctx *ctx, int on);

#ifdef __cplusplus
}
#endif
#endif
