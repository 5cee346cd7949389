/* Thread-count independent sgemm and triangular solve (gemm_fixed.h).
 *
 * OpenBLAS 0.3.21 (OpenMP build) threads a large sgemm called outside an active parallel region
 * over omp_get_max_threads(), and on AVX2 machines the last bits then change with that count
 * (e.g. M 512 N 128 K 128: 7426 of 65536 entries differ between 1 and 2 threads; the parallel
 * form of the attention at T 1024, one head: 27321 of 65536 outputs). Here every tile of C is
 * the same single-threaded call for any thread count: OpenBLAS runs on one thread inside an
 * active parallel region (ours, or the caller's when this is nested). */
#include "gemm_fixed.h"

#include <stddef.h>

#define TILE 128
/* up to OpenBLAS 0.3's single-thread threshold (M N K <= 65536 x GEMM_MULTITHREAD_THRESHOLD,
 * 4 by default) one direct call, which OpenBLAS runs on one thread for any thread count: no
 * parallel region to wake for small products (decode steps' M = 1) */
#define SMALL_MNK 262144.0

void lina_sgemm_fixed(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if ((double)M * N * K <= SMALL_MNK) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const int tn = (N + TILE - 1) / TILE, tiles = (M + TILE - 1) / TILE * tn;
    /* a parallel region even for one tile: OpenBLAS must not thread the call itself */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < tiles; t++) {
        const int i0 = t / tn * TILE, j0 = t % tn * TILE;
        const int m = M - i0 < TILE ? M - i0 : TILE, n = N - j0 < TILE ? N - j0 : TILE;
        /* rows i0.. of op(A), columns j0.. of op(B) */
        const float *a = ta == CblasNoTrans ? A + (size_t)i0 * lda : A + i0;
        const float *b = tb == CblasNoTrans ? B + j0 : B + (size_t)j0 * ldb;
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, K, alpha, a, lda, b, ldb, beta, C + (size_t)i0 * ldc + j0, ldc);
    }
}

#define GEMV_ROWS 256

void lina_sgemv_fixed(int M, int K, const float *A, int lda, const float *x, float *y) {
    if (M <= 0) return;
    const int blocks = (M + GEMV_ROWS - 1) / GEMV_ROWS;
    /* a parallel region even for one block: OpenBLAS must not thread the call itself */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < blocks; b++) {
        const int r0 = b * GEMV_ROWS, m = M - r0 < GEMV_ROWS ? M - r0 : GEMV_ROWS;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, K, 1.0f, A + (size_t)r0 * lda, lda, x, 1, 0.0f, y + r0, 1);
    }
}

#define SOLVE_COLS 64

void lina_strsm_fixed(CBLAS_TRANSPOSE trans, int T, int N, float alpha, const float *L, int ldl, float *B,
                      int ldb) {
    if (T <= 0 || N <= 0) return;
    if ((double)T * T * N <= SMALL_MNK) {
        cblas_strsm(CblasRowMajor, CblasLeft, CblasLower, trans, CblasUnit, T, N, alpha, L, ldl, B, ldb);
        return;
    }
    const int blocks = (N + SOLVE_COLS - 1) / SOLVE_COLS;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < blocks; b++) {
        const int c0 = b * SOLVE_COLS, n = N - c0 < SOLVE_COLS ? N - c0 : SOLVE_COLS;
        cblas_strsm(CblasRowMajor, CblasLeft, CblasLower, trans, CblasUnit, T, n, alpha, L, ldl, B + c0, ldb);
    }
}
