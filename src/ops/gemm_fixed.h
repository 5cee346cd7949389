/* Row-major OpenBLAS calls (sgemm, sgemv, strsm) whose results do not depend on the thread
 * count (gemm_fixed.c), and the guard for regions that call OpenBLAS directly. */
#ifndef LINA_GEMM_FIXED_H
#define LINA_GEMM_FIXED_H

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Called first in a parallel region of ours, even a team of one: OpenBLAS calls of this thread
 * then run single-threaded (the OpenMP build of OpenBLAS threads a call over
 * omp_get_max_threads() unless an enclosing region is active; the ICV set here ends with the
 * region). */
static inline void lina_blas_one_thread(void) {
#ifdef _OPENMP
    if (!omp_in_parallel()) omp_set_num_threads(1);
#endif
}

/* C (M x N) = alpha op(A) op(B) + beta C, as cblas_sgemm(CblasRowMajor, ...): op(A) is M x K,
 * op(B) K x N. Large products run as fixed 128 x 128 tiles of C, one single-threaded OpenBLAS
 * call each, spread over the OpenMP team (serially inside an active parallel region). */
void lina_sgemm_fixed(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* y (M) = A x for A (M x K, row-major, leading dimension lda): as cblas_sgemv(CblasRowMajor,
 * CblasNoTrans, ..., alpha 1, beta 0), in fixed blocks of 256 rows, one single-threaded call
 * each, spread over the OpenMP team (OpenBLAS threads sgemv from M K >= 9216 on, and its
 * results then depend on the thread count too: 2 of 50257 rows at K 768). */
void lina_sgemv_fixed(int M, int K, const float *A, int lda, const float *x, float *y);

/* Solve op(L) X = alpha B in place of B (T x N, row-major, leading dimension ldb) for L (T x T)
 * unit lower triangular, op(L) = L or L^T: as cblas_strsm(CblasRowMajor, CblasLeft, CblasLower,
 * trans, CblasUnit, ...), in fixed blocks of 64 columns (independent solves), one
 * single-threaded call each, spread over the OpenMP team. */
void lina_strsm_fixed(CBLAS_TRANSPOSE trans, int T, int N, float alpha, const float *L, int ldl, float *B,
                      int ldb);

#endif
