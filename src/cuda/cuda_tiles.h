/* Block-level tile products on shared memory for the chunk kernels: WMMA
 * 16x16x16 for bf16 / fp16 (fp32 accumulate), fp32 FMA for fp32. CUDA C++ only. */
#ifndef LINA_CUDA_TILES_H
#define LINA_CUDA_TILES_H

#include <mma.h>

#include <type_traits>

#include "cuda_types.h"

/* ---- tile GEMM on shared memory: c (M, N) fp32 [+]= a (M, Kd) b (Kd, N) ----
 * ACOL: a(i, kk) at a[kk*lda + i] (else a[i*lda + kk]); BCOL: b(kk, j) at
 * b[j*ldb + kk] (else b[kk*ldb + j]). M, N, Kd multiples of 16. */
template <typename T, bool ACOL, bool BCOL>
__device__ __forceinline__ void tile_mm(float *c, int ldc, const T *a, int lda, const T *b, int ldb,
                                        int M, int N, int Kd, bool acc) {
    if constexpr (std::is_same<T, float>::value) {
        for (int e = threadIdx.x; e < M * N; e += blockDim.x) {
            const int i = e / N, j = e % N;
            float s = acc ? c[i * ldc + j] : 0.f;
            for (int kk = 0; kk < Kd; kk++)
                s = fmaf(ACOL ? a[kk * lda + i] : a[i * lda + kk], BCOL ? b[j * ldb + kk] : b[kk * ldb + j], s);
            c[i * ldc + j] = s;
        }
    } else {
        using namespace nvcuda;
        typedef typename std::conditional<ACOL, wmma::col_major, wmma::row_major>::type LA;
        typedef typename std::conditional<BCOL, wmma::col_major, wmma::row_major>::type LB;
        const int warp = threadIdx.x / 32, nw = blockDim.x / 32, tn = N / 16;
        for (int tile = warp; tile < (M / 16) * tn; tile += nw) {
            const int i = (tile / tn) * 16, j = (tile % tn) * 16;
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> f;
            if (acc)
                wmma::load_matrix_sync(f, c + i * ldc + j, ldc, wmma::mem_row_major);
            else
                wmma::fill_fragment(f, 0.f);
            for (int kk = 0; kk < Kd; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, LA> fa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, LB> fb;
                wmma::load_matrix_sync(fa, ACOL ? a + kk * lda + i : a + i * lda + kk, lda);
                wmma::load_matrix_sync(fb, BCOL ? b + j * ldb + kk : b + kk * ldb + j, ldb);
                wmma::mma_sync(f, fa, fb, f);
            }
            wmma::store_matrix_sync(c + i * ldc + j, f, ldc, wmma::mem_row_major);
        }
    }
}

/* dst (R, N) in T = src (R, N) fp32 (no-op when they alias, i.e. fp32). */
template <typename T>
__device__ __forceinline__ void to_elem(T *dst, int ldd, const float *src, int lds, int R, int N) {
    if constexpr (std::is_same<T, float>::value) {
        if ((const void *)dst == (const void *)src) return;
    }
    for (int e = threadIdx.x; e < R * N; e += blockDim.x) {
        const int i = e / N, j = e % N;
        dst[i * ldd + j] = from_f<T>(src[i * lds + j]);
    }
}

#endif
