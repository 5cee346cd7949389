/* Internal helpers shared by all of liblina (not installed). */
#ifndef LINA_INTERNAL_H
#define LINA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "lina/core.h"

/* Record a formatted error message for lina_last_error() and return code. */
lina_status lina_fail(lina_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The default per-thread context used when an op receives ctx == NULL. */
lina_ctx *lina_ctx_default(void);
int lina_ctx_check_finite(const lina_ctx *ctx);

/* Per-thread scratch: reserve n_threads arenas of `floats` floats each before a
 * parallel region (grows, never shrinks; 64-byte aligned), then each thread
 * takes lina_ctx_thread_ws(ctx, tid). Shared scratch: lina_ctx_shared_ws. */
lina_status lina_ctx_reserve(lina_ctx *ctx, int n_threads, size_t floats);
float *lina_ctx_thread_ws(lina_ctx *ctx, int tid);
/* Shared buffers (slot 0..5) for whole-call copies: 0-3 normalization, 4 clamped gates. */
float *lina_ctx_shared_ws(lina_ctx *ctx, int slot, size_t floats);

/* Overflow-checked size products; return 0 on overflow. */
int lina_mul_size(size_t a, size_t b, size_t *out);

/* Packed varlen offsets: B == 1, 1 <= n_seqs, cu[0] == 0, non-decreasing, cu[n_seqs] == T. */
lina_status lina_check_varlen(const char *fn, int B, int T, const int64_t *cu, int n_seqs);
/* A float input of n values: NULL is an error when required (and n > 0); NaN/Inf
 * rejected when the context checks finiteness. Messages name fn, name, index, value. */
lina_status lina_check_buffer(const char *fn, const lina_ctx *ctx, const char *name, const float *x,
                              size_t n, int required);

/* 1 if all n values are finite. */
int lina_all_finite(const float *x, size_t n);

/* Deterministic RNG (xoshiro256**): same seed, same stream on every machine. */
typedef struct {
    uint64_t s[4];
    double spare;
    int has_spare;
} lina_rng;
void lina_rng_seed(lina_rng *r, uint64_t seed);
uint64_t lina_rng_u64(lina_rng *r);
double lina_rng_uniform(lina_rng *r);        /* [0, 1) */
double lina_rng_normal(lina_rng *r);         /* N(0, 1) */
uint64_t lina_rng_below(lina_rng *r, uint64_t n); /* uniform in [0, n), n >= 1 */

#endif
