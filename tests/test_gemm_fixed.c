/* lina_sgemm_fixed, lina_strsm_fixed, lina_sgemv_fixed (src/ops/gemm_fixed.c): the products
 * against a double-precision reference (relative RMS <= 1e-5; the solves <= 1e-4), and the
 * same bits for 1 and 2 OpenMP threads and when called from inside an active parallel region
 * (the point of these wrappers: OpenBLAS's own threading changes the last bits with the
 * thread count on AVX2 machines). Odd sizes, all transposes, beta != 0. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops/gemm_fixed.h"
#include "util/check.h"

static float *randm(test_rng *r, size_t n) {
    float *x = alloc_floats(n);
    fill_normal(r, x, n, 1.0f);
    return x;
}

/* C (M x N) = alpha op(A) op(B) + beta C0 in double */
static void ref_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, const float *C0, float *C) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                     (tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
            C[(size_t)i * N + j] = (float)(alpha * s + beta * (double)C0[(size_t)i * N + j]);
        }
}

/* run f with `threads` OpenMP threads, or (threads == 0) from thread 0 of an active region of 2 */
#define RUN(threads, call)                                                                                        \
    do {                                                                                                       \
        int before_ = omp_get_max_threads();                                                                   \
        if (threads) {                                                                                         \
            omp_set_num_threads(threads);                                                                      \
            call;                                                                                              \
        } else {                                                                                               \
            _Pragma("omp parallel num_threads(2)") { if (omp_get_thread_num() == 0) { call; } }                \
        }                                                                                                      \
        omp_set_num_threads(before_);                                                                          \
    } while (0)

static void test_gemm(int ta, int tb, int M, int N, int K) {
    test_rng r;
    rng_seed(&r, (uint64_t)(M * 7 + N * 3 + K + ta * 2 + tb));
    int lda = ta ? M : K, ldb = tb ? K : N;
    float *A = randm(&r, (size_t)M * K), *B = randm(&r, (size_t)K * N), *C0 = randm(&r, (size_t)M * N);
    float *ref = alloc_floats((size_t)M * N), *got[3];
    ref_gemm(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.5f, C0, ref);
    for (int v = 0; v < 3; v++) {
        got[v] = alloc_floats((size_t)M * N);
        memcpy(got[v], C0, sizeof(float) * M * N);
        RUN((v == 2 ? 0 : v + 1), lina_sgemm_fixed(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                                                    M, N, K, 0.7f, A, lda, B, ldb, 0.5f, got[v], N));
    }
    char name[128];
    snprintf(name, sizeof name, "sgemm_fixed ta=%d tb=%d M%d N%d K%d vs double", ta, tb, M, N, K);
    check_close(name, got[0], ref, (size_t)M * N, 1e-5);
    snprintf(name, sizeof name, "sgemm_fixed ta=%d tb=%d M%d N%d K%d: same bits for 1, 2 threads, nested", ta, tb, M,
             N, K);
    int same = !memcmp(got[0], got[1], sizeof(float) * M * N) && !memcmp(got[0], got[2], sizeof(float) * M * N);
    test_report(same, name, "%s", same ? "bit-identical" : "results differ");
    free(A), free(B), free(C0), free(ref), free(got[0]), free(got[1]), free(got[2]);
}

static void test_trsm(int trans, int T, int N) {
    test_rng r;
    rng_seed(&r, (uint64_t)(T * 5 + N + trans));
    float *L = alloc_floats((size_t)T * T), *B = randm(&r, (size_t)T * N), *got[3];
    for (int i = 0; i < T; i++)
        for (int j = 0; j < i; j++) L[(size_t)i * T + j] = 0.3f * rng_normal(&r) / sqrtf((float)T);
    for (int i = 0; i < T; i++) L[(size_t)i * T + i] = 99.0f; /* unit diagonal: never read */
    for (int v = 0; v < 3; v++) {
        got[v] = alloc_floats((size_t)T * N);
        memcpy(got[v], B, sizeof(float) * T * N);
        RUN((v == 2 ? 0 : v + 1), lina_strsm_fixed(trans ? CblasTrans : CblasNoTrans, T, N, 2.0f, L, T, got[v], N));
    }
    /* residual: op(L) X must equal 2 B, with L's unit diagonal */
    float *lhs = alloc_floats((size_t)T * N), *want = alloc_floats((size_t)T * N);
    for (int i = 0; i < T; i++)
        for (int c = 0; c < N; c++) {
            double s = got[0][(size_t)i * N + c];
            for (int k = 0; k < T; k++)
                if (k != i && (trans ? k > i : k < i))
                    s += (double)(trans ? L[(size_t)k * T + i] : L[(size_t)i * T + k]) * got[0][(size_t)k * N + c];
            lhs[(size_t)i * N + c] = (float)s;
            want[(size_t)i * N + c] = 2.0f * B[(size_t)i * N + c];
        }
    char name[128];
    snprintf(name, sizeof name, "strsm_fixed trans=%d T%d N%d: op(L) X = alpha B", trans, T, N);
    check_close(name, lhs, want, (size_t)T * N, 1e-4);
    snprintf(name, sizeof name, "strsm_fixed trans=%d T%d N%d: same bits for 1, 2 threads, nested", trans, T, N);
    int same = !memcmp(got[0], got[1], sizeof(float) * T * N) && !memcmp(got[0], got[2], sizeof(float) * T * N);
    test_report(same, name, "%s", same ? "bit-identical" : "results differ");
    free(L), free(B), free(lhs), free(want), free(got[0]), free(got[1]), free(got[2]);
}

static void test_gemv(int M, int K) {
    test_rng r;
    rng_seed(&r, (uint64_t)(M + K));
    int lda = K + 3; /* a padded leading dimension */
    float *A = randm(&r, (size_t)M * lda), *x = randm(&r, (size_t)K), *ref = alloc_floats(M), *got[3];
    for (int i = 0; i < M; i++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += (double)A[(size_t)i * lda + k] * x[k];
        ref[i] = (float)s;
    }
    for (int v = 0; v < 3; v++) {
        got[v] = alloc_floats(M);
        RUN((v == 2 ? 0 : v + 1), lina_sgemv_fixed(M, K, A, lda, x, got[v]));
    }
    char name[128];
    snprintf(name, sizeof name, "sgemv_fixed M%d K%d vs double", M, K);
    check_close(name, got[0], ref, M, 1e-5);
    snprintf(name, sizeof name, "sgemv_fixed M%d K%d: same bits for 1, 2 threads, nested", M, K);
    int same = !memcmp(got[0], got[1], sizeof(float) * M) && !memcmp(got[0], got[2], sizeof(float) * M);
    test_report(same, name, "%s", same ? "bit-identical" : "results differ");
    free(A), free(x), free(ref), free(got[0]), free(got[1]), free(got[2]);
}

int main(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            test_gemm(ta, tb, 300, 257, 129); /* tiled: 3 x 3 tiles, ragged edges */
            test_gemm(ta, tb, 7, 33, 65);     /* one direct call */
        }
    test_gemm(0, 1, 1, 1000, 700); /* a decode-like row */
    for (int trans = 0; trans < 2; trans++) {
        test_trsm(trans, 300, 130); /* blocks of 64 columns, ragged */
        test_trsm(trans, 1024, 64); /* one block; raw OpenBLAS differs here (bench/blas_threads.sh) */
        test_trsm(trans, 20, 9);    /* one direct call */
    }
    test_gemv(5003, 771);
    test_gemv(100, 50);
    return test_finish();
}
