/* Small row-major GEMMs for the chunkwise forms (see gemm_tiles.h).
 *
 * AVX-512 path: C is computed in register tiles of MR = 6 rows x NR = 64
 * columns (24 zmm accumulators). For every k-step the tile loads one row of B
 * (4 vectors, masked at the right edge) and broadcasts one element of A per
 * row, so A may be read in either orientation through two strides
 * (a_row, a_col) and needs no packing. B must have contiguous rows; a
 * transposed B is first packed (transposed) into the caller's scratch.
 * Each element of C is one fixed-order sum over k in one lane, so results
 * never depend on threads or on the position of a tile. Without AVX-512 the
 * same interface calls OpenBLAS. */
#include "gemm_tiles.h"

#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>

#define MR 6
#define NV 4 /* vectors of 16 floats per tile row */
#define NR (16 * NV)

/* One tile: rows [0, m) (m <= MR) and columns [0, n) with n <= 16 nv (nv <= NV);
 * m and nv are compile-time constants after inlining. */
static inline __attribute__((always_inline)) void tile(int m, int nv, int n, int Kd, float alpha,
                                                       const float *a, ptrdiff_t a_row,
                                                       ptrdiff_t a_col, const float *b,
                                                       ptrdiff_t ldb, float beta, float *c,
                                                       ptrdiff_t ldc) {
    __m512 acc[MR][NV];
    __mmask16 mask[NV];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        int cols = n - 16 * v;
        mask[v] = cols >= 16 ? (__mmask16)0xFFFF : cols > 0 ? (__mmask16)((1u << cols) - 1) : 0;
#pragma GCC unroll 6
        for (int i = 0; i < m; i++) acc[i][v] = _mm512_setzero_ps();
    }
    for (int p = 0; p < Kd; p++) {
        const float *bp = b + p * ldb;
        __m512 bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) bv[v] = _mm512_maskz_loadu_ps(mask[v], bp + 16 * v);
        const float *ap = a + p * a_col;
#pragma GCC unroll 6
        for (int i = 0; i < m; i++) {
            __m512 ai = _mm512_set1_ps(ap[i * a_row]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < m; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            float *ci = c + i * ldc + 16 * v;
            __m512 r = _mm512_mul_ps(va, acc[i][v]);
            if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], ci), r);
            _mm512_mask_storeu_ps(ci, mask[v], r);
        }
}

/* dst (8 x 8, row stride ld) = src (8 x 8, row stride ls) transposed. */
static inline void transpose8(const float *src, ptrdiff_t ls, float *dst, ptrdiff_t ld) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ls);
    __m256 r2 = _mm256_loadu_ps(src + 2 * ls), r3 = _mm256_loadu_ps(src + 3 * ls);
    __m256 r4 = _mm256_loadu_ps(src + 4 * ls), r5 = _mm256_loadu_ps(src + 5 * ls);
    __m256 r6 = _mm256_loadu_ps(src + 6 * ls), r7 = _mm256_loadu_ps(src + 7 * ls);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + ld, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ld, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ld, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ld, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ld, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ld, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* pack (Kd, N) = B^T for B (N, Kd) with row stride ldb: 8 x 8 blocks, scalar edges. */
static void pack_transposed(const float *B, ptrdiff_t ldb, int N, int Kd, float *pack) {
    int n8 = N & ~7, k8 = Kd & ~7;
    for (int nn = 0; nn < n8; nn += 8)
        for (int p = 0; p < k8; p += 8) transpose8(B + nn * ldb + p, ldb, pack + (size_t)p * N + nn, N);
    for (int nn = 0; nn < N; nn++)
        for (int p = nn < n8 ? k8 : 0; p < Kd; p++) pack[(size_t)p * N + nn] = B[nn * ldb + p];
}

static void tile_any(int m, int n, int Kd, float alpha, const float *a, ptrdiff_t a_row,
                     ptrdiff_t a_col, const float *b, ptrdiff_t ldb, float beta, float *c,
                     ptrdiff_t ldc) {
    int nv = (n + 15) / 16;
    switch (m * 8 + nv) {
#define CASE(mm, vv)                                                                               \
    case mm * 8 + vv: tile(mm, vv, n, Kd, alpha, a, a_row, a_col, b, ldb, beta, c, ldc); break;
#define ROW(mm) CASE(mm, 1) CASE(mm, 2) CASE(mm, 3) CASE(mm, 4)
        ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6)
#undef ROW
#undef CASE
    }
}

void lina_gemm_tile(int ta, int tb, int M, int N, int Kd, float alpha, const float *A, ptrdiff_t lda,
                    const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc, float *pack) {
    lina_gemm_tri(LINA_TRI_NONE, ta, tb, M, N, Kd, alpha, A, lda, B, ldb, beta, C, ldc, pack);
}

void lina_gemm_tri(lina_tri tri, int ta, int tb, int M, int N, int Kd, float alpha, const float *A,
                   ptrdiff_t lda, const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc,
                   float *pack) {
    if (M <= 0 || N <= 0) return;
    if (tb) { /* pack B^T: (Kd, N) row-major */
        pack_transposed(B, ldb, N, Kd, pack);
        B = pack;
        ldb = N;
    }
    ptrdiff_t a_row = ta ? 1 : lda, a_col = ta ? lda : 1;
    for (int i0 = 0; i0 < M; i0 += MR) {
        int m = M - i0 < MR ? M - i0 : MR;
        int p0 = 0, p1 = Kd, n_end = N;
        if (tri == LINA_TRI_A_LOWER && p1 > i0 + m) p1 = i0 + m;
        if (tri == LINA_TRI_A_UPPER) p0 = i0 < Kd ? i0 : Kd;
        if (tri == LINA_TRI_C_LOWER && n_end > i0 + m) n_end = i0 + m;
        for (int n0 = 0; n0 < n_end; n0 += NR) {
            int n = n_end - n0 < NR ? n_end - n0 : NR;
            tile_any(m, n, p1 - p0, alpha, A + i0 * a_row + p0 * a_col, a_row, a_col,
                     B + p0 * ldb + n0, ldb, beta, C + i0 * ldc + n0, ldc);
        }
    }
}

static inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x - n ln2, ln2 split so that n * hi is exact */
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n); /* p 2^n */
}

void lina_exp_inplace(float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, exp16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

void lina_exp_split(float *hi, const float *lo, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp16(_mm512_loadu_ps(hi + i));
        _mm512_storeu_ps(hi + i, _mm512_fmadd_ps(e, _mm512_loadu_ps(lo + i), e));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp16(_mm512_maskz_loadu_ps(m, hi + i));
        _mm512_mask_storeu_ps(hi + i, m, _mm512_fmadd_ps(e, _mm512_maskz_loadu_ps(m, lo + i), e));
    }
}

#else
#include <cblas.h>
#include <math.h>

void lina_exp_inplace(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = expf(x[i]);
}

void lina_exp_split(float *hi, const float *lo, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float e = expf(hi[i]);
        hi[i] = fmaf(e, lo[i], e);
    }
}

void lina_gemm_tri(lina_tri tri, int ta, int tb, int M, int N, int Kd, float alpha, const float *A,
                   ptrdiff_t lda, const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc,
                   float *pack) {
    (void)tri; /* the full product is a valid result for every tri */
    lina_gemm_tile(ta, tb, M, N, Kd, alpha, A, lda, B, ldb, beta, C, ldc, pack);
}

void lina_gemm_tile(int ta, int tb, int M, int N, int Kd, float alpha, const float *A, ptrdiff_t lda,
                    const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc, float *pack) {
    (void)pack;
    if (M <= 0 || N <= 0) return;
    if (Kd <= 0) {
        for (int i = 0; i < M; i++)
            for (int n = 0; n < N; n++) C[i * ldc + n] = beta == 0.0f ? 0.0f : beta * C[i * ldc + n];
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                Kd, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}
#endif
