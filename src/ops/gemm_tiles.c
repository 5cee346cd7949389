/* Small row-major GEMMs for the chunkwise forms (see gemm_tiles.h). */
#include "gemm_tiles.h"

#include <cblas.h>

void lina_gemm_tile(int ta, int tb, int M, int N, int Kd, float alpha, const float *A, ptrdiff_t lda,
                    const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (Kd <= 0) {
        for (int i = 0; i < M; i++)
            for (int n = 0; n < N; n++) C[i * ldc + n] = beta == 0.0f ? 0.0f : beta * C[i * ldc + n];
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                Kd, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}
