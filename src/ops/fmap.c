/* Feature maps: descriptors, names, validation, and the dispatcher that runs a
 * family (fmap_elementwise.c, fmap_expand.c, fmap_proj.c) over chunks of rows
 * of x (B*T*H, D) in parallel. Each chunk is computed by one thread in a fixed
 * way, so results never depend on the thread count; Hedgehog's dW is one sum
 * over all rows, split across threads by columns of W. */
#include <math.h>
#include <string.h>
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm_fixed.h"
#include "../core/internal.h"
#include "fmap_internal.h"

#define LINA_FMAP_MAX_DIM 65536

static const char *const names[] = {"identity", "elu1",   "relu", "l2norm",  "cosformer",
                                    "favor",    "taylor", "dpfp", "hedgehog"};
#define N_KINDS ((int)(sizeof names / sizeof names[0]))

#define TRY(x)                                                                                     \
    do {                                                                                           \
        lina_status st_ = (x);                                                                     \
        if (st_ != LINA_OK) return st_;                                                            \
    } while (0)

lina_fmap_desc lina_fmap_desc_default(lina_fmap_kind kind, int D) {
    lina_fmap_desc d;
    memset(&d, 0, sizeof d);
    d.kind = kind;
    d.D = D;
    d.nu = 1;
    d.eps = 1e-6f;
    if (kind == LINA_FMAP_FAVOR) { /* Performer: M = D log D random features */
        int m = D > 1 ? (int)(D * log((double)D)) : 1;
        d.M = m > D ? m : D;
    } else if (kind == LINA_FMAP_HEDGEHOG) {
        d.M = D;
    }
    return d;
}

int lina_fmap_out_dim(const lina_fmap_desc *d) {
    if (!d) return 0;
    switch (d->kind) {
    case LINA_FMAP_IDENTITY:
    case LINA_FMAP_ELU1:
    case LINA_FMAP_RELU:
    case LINA_FMAP_L2NORM: return d->D;
    case LINA_FMAP_COSFORMER: return 2 * d->D;
    case LINA_FMAP_FAVOR: return d->M;
    case LINA_FMAP_TAYLOR: return 1 + d->D + d->D * d->D;
    case LINA_FMAP_DPFP: return 2 * d->D * d->nu;
    case LINA_FMAP_HEDGEHOG: return 2 * d->M;
    }
    return 0;
}

int lina_fmap_n_params(const lina_fmap_desc *d) {
    if (!d) return 0;
    if (d->kind == LINA_FMAP_FAVOR || d->kind == LINA_FMAP_HEDGEHOG) return d->M * d->D;
    return 0;
}

lina_fmap_kind lina_fmap_parse(const char *name, int *ok) {
    for (int i = 0; name && i < N_KINDS; i++)
        if (!strcmp(name, names[i])) {
            if (ok) *ok = 1;
            return (lina_fmap_kind)i;
        }
    if (ok) *ok = 0;
    return LINA_FMAP_IDENTITY;
}

const char *lina_fmap_name(lina_fmap_kind kind) {
    return (unsigned)kind < (unsigned)N_KINDS ? names[kind] : "unknown";
}

/* ---- validation ---- */

static int has_params(const lina_fmap_desc *d) {
    return d->kind == LINA_FMAP_FAVOR || d->kind == LINA_FMAP_HEDGEHOG;
}

static lina_status check_desc(const char *fn, const lina_fmap_desc *d) {
    if (!d) return lina_fail(LINA_ERR_INVALID_ARG, "%s: descriptor is NULL", fn);
    if ((unsigned)d->kind >= (unsigned)N_KINDS)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: kind = %d unknown", fn, (int)d->kind);
    int max_d = d->kind == LINA_FMAP_TAYLOR ? 1024 : LINA_FMAP_MAX_DIM;
    if (d->D < 1 || d->D > max_d)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: D = %d out of range [1, %d] for %s", fn, d->D,
                         max_d, names[d->kind]);
    if (has_params(d) && (d->M < 1 || d->M > LINA_FMAP_MAX_DIM))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: M = %d out of range [1, %d] for %s", fn, d->M,
                         LINA_FMAP_MAX_DIM, names[d->kind]);
    if (d->kind == LINA_FMAP_COSFORMER && d->M < 0)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: M = %d must be >= 0 (0: T) for cosformer", fn,
                         d->M);
    if (d->kind == LINA_FMAP_DPFP && (d->nu < 1 || d->nu > 2 * d->D - 1))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: nu = %d out of range [1, 2D - 1 = %d] for dpfp",
                         fn, d->nu, 2 * d->D - 1);
    if (d->kind == LINA_FMAP_L2NORM && (!isfinite(d->eps) || d->eps < 0))
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: eps = %g must be finite and >= 0", fn, d->eps);
    return LINA_OK;
}

static lina_status check_input(const char *fn, const char *name, const float *x, size_t n) {
    if (!x) return lina_fail(LINA_ERR_INVALID_ARG, "%s: buffer %s is NULL", fn, name);
    if (!lina_all_finite(x, n))
        for (size_t i = 0; i < n; i++)
            if (!isfinite(x[i]))
                return lina_fail(LINA_ERR_NONFINITE, "%s: %s[%zu] = %g is not finite", fn, name, i,
                                 x[i]);
    return LINA_OK;
}

static lina_status check_call(const char *fn, lina_ctx *ctx, const lina_fmap_desc *d, int B, int T,
                              int H, const float *x, const float *W, const int32_t *pos) {
    TRY(check_desc(fn, d));
    if (B < 1 || T < 1 || H < 1 || B > (1 << 24) || T > (1 << 30) || H > LINA_FMAP_MAX_DIM)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: B = %d, T = %d, H = %d must be >= 1", fn, B, T,
                         H);
    double rows = (double)B * T * H, out = lina_fmap_out_dim(d);
    if (rows * (out > d->D ? out : d->D) > 1e15)
        return lina_fail(LINA_ERR_OOM, "%s: B*T*H*out_dim = %.3g elements is too large", fn,
                         rows * out);
    int check = lina_ctx_check_finite(ctx);
    if (!x) return lina_fail(LINA_ERR_INVALID_ARG, "%s: buffer x is NULL", fn);
    if (check) TRY(check_input(fn, "x", x, (size_t)rows * d->D));
    if (has_params(d)) {
        if (!W)
            return lina_fail(LINA_ERR_INVALID_ARG, "%s: W is required for %s", fn, names[d->kind]);
        if (check) TRY(check_input(fn, "W", W, (size_t)d->M * d->D));
    }
    if (d->kind == LINA_FMAP_COSFORMER && pos) {
        int horizon = d->M > 0 ? d->M : T;
        for (int t = 0; t < T; t++)
            if (pos[t] < 0 || pos[t] > horizon)
                return lina_fail(LINA_ERR_INVALID_ARG,
                                 "%s: pos[%d] = %d out of range [0, M = %d] for cosformer", fn, t,
                                 (int)pos[t], horizon);
    }
    return LINA_OK;
}

/* ---- dispatch ---- */

typedef struct {
    const lina_fmap_desc *d;
    int T, H, out;
    const float *x, *W;
    const int32_t *pos;
    float *y;
    const float *dy;
    float *dx, *dz; /* dz: HEDGEHOG backward (rows, M) */
} call_t;

size_t lina_fmap_ws_floats(const lina_fmap_desc *d) {
    switch (d->kind) {
    case LINA_FMAP_DPFP: return (size_t)4 * d->D;
    case LINA_FMAP_FAVOR:
    case LINA_FMAP_HEDGEHOG: return lina_fmap_proj_ws_floats(d);
    default: return 1;
    }
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static void run_chunk(const call_t *a, size_t r0, int rows, float *ws, int backward) {
    const lina_fmap_desc *d = a->d;
    int D = d->D;
    lina_fmap_chunk c;
    memset(&c, 0, sizeof c);
    c.d = d;
    c.rows = rows;
    c.out = a->out;
    c.x = a->x + r0 * D;
    c.W = a->W;
    c.ws = ws;
    if (backward) {
        c.dy = a->dy + r0 * a->out;
        c.dx = a->dx + r0 * D;
        c.dz = a->dz ? a->dz + r0 * d->M : NULL;
    } else {
        c.y = a->y + r0 * a->out;
    }
    if (d->kind == LINA_FMAP_COSFORMER) { /* angle pi pos / (2 horizon) of each row */
        float *cosv = ws, *sinv = ws + LINA_FMAP_CHUNK;
        double horizon = d->M > 0 ? d->M : a->T;
        for (int r = 0; r < rows; r++) {
            int t = (int)(((r0 + r) / a->H) % a->T);
            double ang = M_PI * (a->pos ? a->pos[t] : t) / (2.0 * horizon);
            cosv[r] = (float)cos(ang);
            sinv[r] = (float)sin(ang);
        }
        c.cosv = cosv;
        c.sinv = sinv;
    }
    switch (d->kind) {
    case LINA_FMAP_TAYLOR:
    case LINA_FMAP_DPFP:
        backward ? lina_fmap_expand_backward(&c) : lina_fmap_expand_forward(&c);
        break;
    case LINA_FMAP_FAVOR:
    case LINA_FMAP_HEDGEHOG:
        backward ? lina_fmap_proj_backward(&c) : lina_fmap_proj_forward(&c);
        break;
    default: backward ? lina_fmap_elementwise_backward(&c) : lina_fmap_elementwise_forward(&c);
    }
}

static lina_status run(lina_ctx *ctx, const call_t *a, size_t rows, int backward) {
    size_t n_chunks = (rows + LINA_FMAP_CHUNK - 1) / LINA_FMAP_CHUNK;
    int nt = lina_ctx_threads(ctx);
    if (nt < 1) nt = 1;
    if ((size_t)nt > n_chunks) nt = (int)n_chunks;
    size_t ws = lina_fmap_ws_floats(a->d);
    if (ws < 2 * LINA_FMAP_CHUNK) ws = 2 * LINA_FMAP_CHUNK; /* cosformer angles */
    TRY(lina_ctx_reserve(ctx, nt, ws));
#pragma omp parallel num_threads(nt)
    {
        lina_blas_one_thread();
        float *w = lina_ctx_thread_ws(ctx, thread_id());
#pragma omp for schedule(static)
        for (size_t ch = 0; ch < n_chunks; ch++) {
            size_t r0 = ch * LINA_FMAP_CHUNK;
            int n = rows - r0 < LINA_FMAP_CHUNK ? (int)(rows - r0) : LINA_FMAP_CHUNK;
            run_chunk(a, r0, n, w, backward);
        }
    }
    return LINA_OK;
}

lina_status lina_fmap_init_params(const lina_fmap_desc *d, uint64_t seed, float *W) {
    static const char fn[] = "lina_fmap_init_params";
    TRY(check_desc(fn, d));
    if (!has_params(d)) return LINA_OK; /* nothing to initialize */
    if (!W) return lina_fail(LINA_ERR_INVALID_ARG, "%s: W is NULL", fn);
    return lina_fmap_proj_init(d, seed, W);
}

lina_status lina_fmap_forward(lina_ctx *ctx, const lina_fmap_desc *d, int B, int T, int H,
                              const float *x, const float *W, const int32_t *pos, float *y) {
    static const char fn[] = "lina_fmap_forward";
    if (!ctx) ctx = lina_ctx_default();
    if (!ctx) return lina_fail(LINA_ERR_OOM, "%s: no context", fn);
    TRY(check_call(fn, ctx, d, B, T, H, x, W, pos));
    if (!y) return lina_fail(LINA_ERR_INVALID_ARG, "%s: buffer y is NULL", fn);
    call_t a = {d, T, H, lina_fmap_out_dim(d), x, W, pos, y, NULL, NULL, NULL};
    return run(ctx, &a, (size_t)B * T * H, 0);
}

lina_status lina_fmap_backward(lina_ctx *ctx, const lina_fmap_desc *d, int B, int T, int H,
                               const float *x, const float *W, const int32_t *pos, const float *dy,
                               float *dx, float *dW) {
    static const char fn[] = "lina_fmap_backward";
    if (!ctx) ctx = lina_ctx_default();
    if (!ctx) return lina_fail(LINA_ERR_OOM, "%s: no context", fn);
    TRY(check_call(fn, ctx, d, B, T, H, x, W, pos));
    size_t rows = (size_t)B * T * H;
    int out = lina_fmap_out_dim(d);
    if (lina_ctx_check_finite(ctx))
        TRY(check_input(fn, "dy", dy, rows * out));
    else if (!dy)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: buffer dy is NULL", fn);
    if (!dx) return lina_fail(LINA_ERR_INVALID_ARG, "%s: buffer dx is NULL", fn);
    call_t a = {d, T, H, out, x, W, pos, NULL, dy, dx, NULL};
    if (d->kind == LINA_FMAP_HEDGEHOG) {
        a.dz = lina_ctx_shared_ws(ctx, 0, rows * d->M); // (rows, M) d(x W), kept for dW
        if (!a.dz)
            return lina_fail(LINA_ERR_OOM, "%s: dz of %zu floats: out of memory", fn, rows * d->M);
    }
    TRY(run(ctx, &a, rows, 1));
    if (d->kind == LINA_FMAP_HEDGEHOG && dW) {
        /* dW (D, M) += X^T dZ, columns of dW split across threads */
        int D = d->D, M = d->M, n_blocks = (M + 63) / 64, nt = lina_ctx_threads(ctx);
        if (nt > n_blocks) nt = n_blocks;
        if (nt < 1) nt = 1;
#pragma omp parallel num_threads(nt)
        {
            lina_blas_one_thread();
#pragma omp for schedule(static)
            for (int b = 0; b < n_blocks; b++) {
                int m0 = b * 64, nm = M - m0 < 64 ? M - m0 : 64;
                for (size_t r0 = 0; r0 < rows; r0 += (size_t)1 << 30) {
                    int nr = rows - r0 < ((size_t)1 << 30) ? (int)(rows - r0) : 1 << 30;
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, nm, nr, 1.0f,
                                x + r0 * D, D, a.dz + r0 * M + m0, M, 1.0f, dW + m0, M);
                }
            }
        }
    }
    return LINA_OK;
}
