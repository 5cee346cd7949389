#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"

#define LINA_MAX_THREADS 256
#define LINA_SHARED_SLOTS 6

struct lina_ctx {
    int threads;
    int check_finite;
    float *ws[LINA_MAX_THREADS]; /* per-thread arenas */
    size_t ws_floats;            /* size of each arena */
    int ws_count;
    float *shared[LINA_SHARED_SLOTS];
    size_t shared_floats[LINA_SHARED_SLOTS];
};

static int hw_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

lina_status lina_ctx_create(lina_ctx **out) {
    if (!out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_ctx_create: out is NULL");
    lina_ctx *c = calloc(1, sizeof *c);
    if (!c) return lina_fail(LINA_ERR_OOM, "lina_ctx_create: out of memory");
    c->threads = hw_threads();
    if (c->threads > LINA_MAX_THREADS) c->threads = LINA_MAX_THREADS;
    c->check_finite = 1;
    *out = c;
    return LINA_OK;
}

void lina_ctx_free(lina_ctx *c) {
    if (!c) return;
    for (int i = 0; i < c->ws_count; i++) free(c->ws[i]);
    for (int i = 0; i < LINA_SHARED_SLOTS; i++) free(c->shared[i]);
    free(c);
}

lina_status lina_ctx_set_threads(lina_ctx *c, int n) {
    if (!c) return lina_fail(LINA_ERR_INVALID_ARG, "lina_ctx_set_threads: ctx is NULL");
    if (n > LINA_MAX_THREADS)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_ctx_set_threads: n = %d exceeds %d", n,
                         LINA_MAX_THREADS);
    c->threads = n <= 0 ? hw_threads() : n;
    if (c->threads > LINA_MAX_THREADS) c->threads = LINA_MAX_THREADS;
    return LINA_OK;
}

int lina_ctx_threads(const lina_ctx *c) { return c ? c->threads : 1; }
void lina_ctx_set_check_finite(lina_ctx *c, int on) {
    if (c) c->check_finite = on;
}
int lina_ctx_check_finite(const lina_ctx *c) { return c ? c->check_finite : 1; }

static _Thread_local lina_ctx *default_ctx;

lina_ctx *lina_ctx_default(void) {
    if (!default_ctx) lina_ctx_create(&default_ctx);
    return default_ctx;
}

static float *aligned_floats(size_t n) {
    size_t bytes;
    if (!lina_mul_size(n ? n : 1, sizeof(float), &bytes)) return NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes);
}

lina_status lina_ctx_reserve(lina_ctx *c, int n_threads, size_t floats) {
    if (n_threads > LINA_MAX_THREADS) n_threads = LINA_MAX_THREADS;
    if (floats > c->ws_floats) {
        for (int i = 0; i < c->ws_count; i++) {
            free(c->ws[i]);
            c->ws[i] = NULL;
        }
        c->ws_count = 0;
        c->ws_floats = floats + floats / 4; /* headroom for the next, slightly larger call */
    }
    for (int i = c->ws_count; i < n_threads; i++) {
        c->ws[i] = aligned_floats(c->ws_floats);
        if (!c->ws[i])
            return lina_fail(LINA_ERR_OOM, "workspace of %zu floats per thread: out of memory",
                             c->ws_floats);
        c->ws_count = i + 1;
    }
    return LINA_OK;
}

float *lina_ctx_thread_ws(lina_ctx *c, int tid) { return tid < c->ws_count ? c->ws[tid] : NULL; }

float *lina_ctx_shared_ws(lina_ctx *c, int slot, size_t floats) {
    if (slot < 0 || slot >= LINA_SHARED_SLOTS) return NULL;
    if (floats > c->shared_floats[slot]) {
        free(c->shared[slot]);
        c->shared_floats[slot] = 0;
        c->shared[slot] = aligned_floats(floats);
        if (!c->shared[slot]) return NULL;
        c->shared_floats[slot] = floats;
    }
    return c->shared[slot];
}
