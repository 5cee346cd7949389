/* Small row-major GEMMs for the chunkwise forms (chunk-sized operands that
 * live in L1/L2): C = alpha * op(A) op(B) + beta * C.
 *
 * op(A) is M x Kd (A stored M x Kd with row stride lda, or Kd x M if ta),
 * op(B) is Kd x N (B stored Kd x N with row stride ldb, or N x Kd if tb),
 * C is M x N with row stride ldc. beta == 0 overwrites C (NaNs in C ignored).
 * pack: scratch of Kd * N floats, used when tb (B^T is packed there); may be
 * NULL when !tb.
 * Always single-threaded and deterministic: the result depends only on the
 * operands, never on the thread count or on where it runs. */
#ifndef LINA_GEMM_TILES_H
#define LINA_GEMM_TILES_H

#include <stddef.h>

void lina_gemm_tile(int ta, int tb, int M, int N, int Kd, float alpha, const float *A, ptrdiff_t lda,
                    const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc, float *pack);

/* The same with structure the caller knows (rows i, columns n, sum index p of
 * op(A) op(B)); skipped terms are exact zeros, so the result is the same:
 *   A_LOWER: op(A) is lower triangular (op(A)_ip = 0 for p > i),
 *   A_UPPER: op(A) is upper triangular (op(A)_ip = 0 for p < i),
 *   C_LOWER: only C's lower triangle (n <= i) is wanted; entries above are
 *            unspecified (some computed, some untouched). */
typedef enum { LINA_TRI_NONE, LINA_TRI_A_LOWER, LINA_TRI_A_UPPER, LINA_TRI_C_LOWER } lina_tri;
void lina_gemm_tri(lina_tri tri, int ta, int tb, int M, int N, int Kd, float alpha, const float *A,
                   ptrdiff_t lda, const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc,
                   float *pack);

/* x[i] = e^{x[i]} for n floats (AVX-512: a degree-7 polynomial after Cody-Waite
 * reduction, within 2 ulp of expf; arguments below -104 give 0). Elementwise
 * and position-independent, like the GEMMs. */
void lina_exp_inplace(float *x, size_t n);

/* hi[i] = e^{hi[i] + lo[i]} for an argument split in two floats (|lo| tiny, e.g.
 * a double d as hi = (float)d, lo = (float)(d - hi)): e^hi (1 + lo), so the
 * digits lost in rounding d to float do not become errors of the exponential. */
void lina_exp_split(float *hi, const float *lo, size_t n);

#endif
