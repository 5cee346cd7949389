/* Linear layer y = x W^T + b with W (out, in) as in torch.
 * Backward: dx = dy W (N, in), dW += dy^T x (out, in), db += column sums of dy.
 *
 * The GEMMs run as fixed 128 x 128 tiles of the output, one single-threaded OpenBLAS call
 * each, spread over the OpenMP team: every tile is the same call for any thread count, so
 * results do not depend on it. (OpenBLAS 0.3.21 threading its own sgemm changes the last
 * bits with the thread count on AVX2 machines, e.g. M 512 N 128 K 128: 7426 of 65536 entries
 * differ between 1 and 2 threads; inside an active parallel region it runs single-threaded,
 * and in a team of one on OpenBLAS's own count, which lina_model_set_threads sets.) */
#include <cblas.h>

#include "layers.h"

#define TILE 128
/* up to OpenBLAS 0.3's single-thread threshold (M N K <= 65536 x GEMM_MULTITHREAD_THRESHOLD,
 * 4 by default) one direct call, which OpenBLAS runs on one thread for any thread count: no
 * parallel region to wake for the decode steps' M = 1 GEMMs */
#define SMALL_MNK 262144.0

/* C (M x N) = alpha op(A) op(B) + beta C, row-major; op(A) is M x K, op(B) K x N */
static void gemm_fixed_tiles(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                             const float *A, int lda, const float *B, int ldb, float beta, float *C,
                             int ldc) {
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

void lina_linear_forward(int N, int in, int out, const float *x, const float *W, const float *b,
                         float *y) {
    if (b)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) y[(size_t)n * out + o] = b[o];
    gemm_fixed_tiles(CblasNoTrans, CblasTrans, N, out, in, 1.0f, x, in, W, in, b ? 1.0f : 0.0f, y, out);
}

void lina_linear_backward(int N, int in, int out, const float *x, const float *W, const float *dy,
                          float *dx, int dx_overwrite, float *dW, float *db) {
    if (dx)
        gemm_fixed_tiles(CblasNoTrans, CblasNoTrans, N, in, out, 1.0f, dy, out, W, in,
                         dx_overwrite ? 0.0f : 1.0f, dx, in);
    if (dW)
        gemm_fixed_tiles(CblasTrans, CblasNoTrans, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
    if (db)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) db[o] += dy[(size_t)n * out + o];
}
