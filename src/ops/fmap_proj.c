/* Feature maps built on a projection of x, one GEMM per chunk of rows.
 *
 * FAVOR+ (Performer, Choromanski et al. 2021), W (M, D), out M:
 *   phi(x)_m = exp(w_m . x - |x|^2 / 2) / sqrt(M)
 * E_w[phi(q) . phi(k)] = exp(q . k) for w ~ N(0, I): the caller scales q and k
 * by D^(-1/4) to approximate softmax attention's exp(q.k / sqrt(D)). The same
 * formula is used for q and for k (no per-row max stabilization, so the
 * estimate stays unbiased); the exponent is at most |w_m|^2 / 2 for any x,
 * which stays below float's limit (88) while |w_m|^2 < 176 (D up to ~128).
 *   d x = W^T g - x sum_m g_m,   g = dy * phi
 * W is a fixed random matrix: no dW.
 *
 * Hedgehog (Zhang et al. 2024), W (D, M) learnable, out 2M, z = x W:
 *   phi(x) = [softmax(z), softmax(-z)]
 *   dz = a (da - a.da) - b (db - b.db),  a, b the two halves;  dx = W dz,  dW += x^T dz
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>

#include "../core/internal.h"
#include "fmap_internal.h"

size_t lina_fmap_proj_ws_floats(const lina_fmap_desc *d) {
    return (size_t)LINA_FMAP_CHUNK * 2 * (d->M > 0 ? d->M : 1); /* phi of a chunk, out <= 2M */
}

/* softmax over n values in place */
static void softmax_inplace(float *z, int n) {
    float m = z[0];
    for (int i = 1; i < n; i++)
        m = z[i] > m ? z[i] : m;
    double s = 0;
    for (int i = 0; i < n; i++) {
        z[i] = expf(z[i] - m);
        s += z[i];
    }
    float inv = (float)(1.0 / s);
    for (int i = 0; i < n; i++)
        z[i] *= inv;
}

static float sq_norm_half(const float *x, int D) {
    double s = 0;
    for (int i = 0; i < D; i++)
        s += (double)x[i] * x[i];
    return (float)(0.5 * s);
}

void lina_fmap_proj_forward(const lina_fmap_chunk *c) {
    const lina_fmap_desc *d = c->d;
    int D = d->D, M = d->M, n = c->rows;
    if (d->kind == LINA_FMAP_FAVOR) {
        /* U = X W^T (n, M) straight into y */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, M, D, 1.0f, c->x, D, c->W, D, 0.0f,
                    c->y, c->out);
        float inv = 1.0f / sqrtf((float)M);
        for (int r = 0; r < n; r++) {
            float *y = c->y + (size_t)r * c->out, h = sq_norm_half(c->x + (size_t)r * D, D);
            for (int m = 0; m < M; m++)
                y[m] = expf(y[m] - h) * inv;
        }
    } else { /* HEDGEHOG: Z = X W (n, M) into the first half of y */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, M, D, 1.0f, c->x, D, c->W, M,
                    0.0f, c->y, c->out);
        for (int r = 0; r < n; r++) {
            float *y = c->y + (size_t)r * c->out;
            for (int m = 0; m < M; m++)
                y[M + m] = -y[m];
            softmax_inplace(y, M);
            softmax_inplace(y + M, M);
        }
    }
}

/* Backward needs phi again: recomputed into ws (n, out), then overwritten by
 * g = dy * phi (FAVOR) or read for dz (Hedgehog). */
void lina_fmap_proj_backward(const lina_fmap_chunk *c) {
    const lina_fmap_desc *d = c->d;
    int D = d->D, M = d->M, n = c->rows;
    lina_fmap_chunk f = *c;
    f.y = c->ws;
    lina_fmap_proj_forward(&f); // phi (n, out) in ws
    float *G = c->ws;
    if (d->kind == LINA_FMAP_FAVOR) {
        /* g = dy * phi;  dx = G W - x * rowsum(G) */
        for (int r = 0; r < n; r++) {
            float *g = G + (size_t)r * M;
            const float *dy = c->dy + (size_t)r * c->out;
            for (int m = 0; m < M; m++)
                g[m] *= dy[m];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, M, 1.0f, G, M, c->W, D, 0.0f,
                    c->dx, D);
        for (int r = 0; r < n; r++) {
            const float *g = G + (size_t)r * M, *x = c->x + (size_t)r * D;
            double s = 0;
            for (int m = 0; m < M; m++)
                s += g[m];
            float *dx = c->dx + (size_t)r * D;
            for (int i = 0; i < D; i++)
                dx[i] -= (float)s * x[i];
        }
    } else {
        for (int r = 0; r < n; r++) {
            const float *a = G + (size_t)r * c->out, *b = a + M;
            const float *da = c->dy + (size_t)r * c->out, *db = da + M;
            double ada = 0, bdb = 0;
            for (int m = 0; m < M; m++)
                ada += a[m] * da[m], bdb += b[m] * db[m];
            float *dz = c->dz + (size_t)r * M;
            for (int m = 0; m < M; m++)
                dz[m] = a[m] * (da[m] - (float)ada) - b[m] * (db[m] - (float)bdb);
        }
        /* dx = dZ W^T (n, D) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, D, M, 1.0f, c->dz, M, c->W, M, 0.0f,
                    c->dx, D);
    }
}

/* ---- parameter initialization ---- */

typedef struct {
    uint64_t s;
} rng_t;

static uint64_t splitmix64(rng_t *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double normal(rng_t *r) { /* Box-Muller */
    double u1 = ((splitmix64(r) >> 11) + 1.0) * 0x1.0p-53, u2 = (splitmix64(r) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* FAVOR: blocks of D orthonormal rows (Gram-Schmidt of a Gaussian matrix), each
 * row rescaled by the norm of an independent Gaussian D-vector (chi(D)), so that
 * every row is marginally N(0, I) while rows within a block stay orthogonal. */
static lina_status favor_init(int M, int D, uint64_t seed, float *W) {
    rng_t r = {seed};
    double *blk = malloc(sizeof(double) * (size_t)D * D);
    if (!blk) return lina_fail(LINA_ERR_OOM, "lina_fmap_init_params: D = %d: out of memory", D);
    for (int m0 = 0; m0 < M; m0 += D) {
        for (size_t i = 0; i < (size_t)D * D; i++)
            blk[i] = normal(&r);
        for (int i = 0; i < D; i++) { /* modified Gram-Schmidt, twice for stability */
            double *bi = blk + (size_t)i * D;
            for (int pass = 0; pass < 2; pass++)
                for (int j = 0; j < i; j++) {
                    const double *bj = blk + (size_t)j * D;
                    double dot = 0;
                    for (int c = 0; c < D; c++)
                        dot += bi[c] * bj[c];
                    for (int c = 0; c < D; c++)
                        bi[c] -= dot * bj[c];
                }
            double nrm = 0;
            for (int c = 0; c < D; c++)
                nrm += bi[c] * bi[c];
            nrm = sqrt(nrm);
            for (int c = 0; c < D; c++)
                bi[c] /= nrm;
        }
        for (int i = 0; i < D && m0 + i < M; i++) {
            double chi = 0;
            for (int c = 0; c < D; c++) {
                double g = normal(&r);
                chi += g * g;
            }
            chi = sqrt(chi);
            for (int c = 0; c < D; c++)
                W[(size_t)(m0 + i) * D + c] = (float)(chi * blk[(size_t)i * D + c]);
        }
    }
    free(blk);
    return LINA_OK;
}

/* HEDGEHOG: identity on the leading min(D, M) block plus N(0, 0.02^2) noise
 * (so that columns beyond D, and duplicated features, differ). */
static void hedgehog_init(int D, int M, uint64_t seed, float *W) {
    rng_t r = {seed};
    for (int i = 0; i < D; i++)
        for (int m = 0; m < M; m++)
            W[(size_t)i * M + m] = (i == m ? 1.0f : 0.0f) + (float)(0.02 * normal(&r));
}

lina_status lina_fmap_proj_init(const lina_fmap_desc *d, uint64_t seed, float *W) {
    if (d->kind == LINA_FMAP_FAVOR) return favor_init(d->M, d->D, seed, W);
    hedgehog_init(d->D, d->M, seed, W);
    return LINA_OK;
}
