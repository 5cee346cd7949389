/* Does a result depend on the thread count? For OpenBLAS called directly and for lina's
 * wrappers (src/ops/gemm_fixed.c), and for the parallel form of the attention through the
 * public API: the number of entries that differ between 1 and 2 OpenMP threads, as one JSON
 * line per case. Build and run: bash bench/blas_threads.sh [BUILD=build]. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "lina.h"
#include "ops/gemm_fixed.h"

static float *rnd(size_t n, unsigned seed) {
    float *x = malloc(sizeof(float) * n);
    srand(seed);
    for (size_t i = 0; i < n; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    return x;
}

static size_t ndiff(const float *a, const float *b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(a + i, b + i, sizeof(float)) != 0;
    return d;
}

static void report(const char *what, const char *how, size_t differ, size_t n) {
    printf("{\"case\":\"%s\",\"calls\":\"%s\",\"differ\":%zu,\"of\":%zu}\n", what, how, differ, n);
}

int main(void) {
    const int M = 512, N = 128, K = 128, R = 50257, C = 768, T = 1024, V = 64;
    float *A = rnd((size_t)M * K, 1), *B = rnd((size_t)K * N, 2), *W = rnd((size_t)R * C, 3), *x = rnd(C, 4);
    float *L = rnd((size_t)T * T, 5), *rhs = rnd((size_t)T * V, 6);
    for (size_t i = 0; i < (size_t)T * T; i++) L[i] *= 0.03f; /* a well-conditioned unit lower L */
    float *out[2][4];
    for (int fixed = 0; fixed < 2; fixed++) {
        for (int r = 0; r < 2; r++) {
            omp_set_num_threads(r + 1);
            float *c = out[r][0] = calloc((size_t)M * N, sizeof(float)), *y = out[r][1] = malloc(sizeof(float) * R);
            float *s = out[r][2] = malloc(sizeof(float) * T * V);
            memcpy(s, rhs, sizeof(float) * T * V);
            if (fixed) {
                lina_sgemm_fixed(CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, c, N);
                lina_sgemv_fixed(R, C, W, C, x, y);
                lina_strsm_fixed(CblasNoTrans, T, V, 1.0f, L, T, s, V);
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, c, N);
                cblas_sgemv(CblasRowMajor, CblasNoTrans, R, C, 1.0f, W, C, x, 1, 0.0f, y, 1);
                cblas_strsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, T, V, 1.0f, L, T, s, V);
            }
        }
        const char *how = fixed ? "lina_*_fixed" : "cblas";
        report("sgemm M512 N128 K128", how, ndiff(out[0][0], out[1][0], (size_t)M * N), (size_t)M * N);
        report("sgemv 50257 x 768", how, ndiff(out[0][1], out[1][1], R), R);
        report("strsm T1024 N64", how, ndiff(out[0][2], out[1][2], (size_t)T * V), (size_t)T * V);
        for (int r = 0; r < 2; r++)
            for (int i = 0; i < 3; i++) free(out[r][i]);
    }
    /* the parallel form, one (sequence, head), delta rule, through lina_attn_forward */
    size_t nq = (size_t)T * V;
    float *q = rnd(nq, 7), *k = rnd(nq, 8), *v = rnd(nq, 9), *beta = rnd(T, 10), *o[2];
    for (int i = 0; i < T; i++) beta[i] += 0.5f;
    for (int i = 0; i < T; i++) { /* unit-norm keys */
        double s = 0;
        for (int c = 0; c < V; c++) s += (double)k[i * V + c] * k[i * V + c];
        for (int c = 0; c < V; c++) k[i * V + c] /= (float)sqrt(s);
    }
    for (int r = 0; r < 2; r++) {
        omp_set_num_threads(r + 1);
        lina_ctx *ctx = NULL;
        lina_ctx_create(&ctx);
        lina_ctx_set_threads(ctx, r + 1);
        lina_attn_desc d = lina_attn_desc_default();
        d.B = 1, d.T = T, d.H = 1, d.K = V, d.V = V, d.update = LINA_UPDATE_DELTA, d.form = LINA_FORM_PARALLEL;
        o[r] = calloc(nq, sizeof(float));
        lina_attn_fwd_args a = {q, k, v, NULL, beta, NULL, o[r], NULL};
        if (lina_attn_forward(ctx, &d, &a) != LINA_OK) fprintf(stderr, "%s\n", lina_last_error());
        lina_ctx_free(ctx);
    }
    report("attention parallel form, delta, T1024 H1 K=V=64", "lina_attn_forward", ndiff(o[0], o[1], nq), nq);
    return 0;
}
