/* Warp-level tensor-core primitives (sm_80+ PTX) for the 16-bit chunk kernels:
 * mma.sync m16n8k16 with fp32 accumulators, ldmatrix (plain and transposed)
 * from shared memory, and cp.async 16-byte copies with zero fill. CUDA C++ only.
 *
 * Fragment layouts of mma.m16n8k16.row.col (g = lane / 4, c = 2 * (lane % 4)):
 *   A (16 x 16), 4 registers of 2 elements: a0 = A[g][c..c+1], a1 = A[g+8][c..c+1],
 *                                           a2 = A[g][c+8..c+9], a3 = A[g+8][c+8..c+9]
 *   B (16 x 8),  2 registers:               b0 = B[c..c+1][g],   b1 = B[c+8..c+9][g]
 *   C (16 x 8),  4 fp32:                    C[g][c], C[g][c+1], C[g+8][c], C[g+8][c+1]
 * The accumulators of two adjacent n-tiles (C0 | C1) are, packed to 16 bits,
 * exactly the A fragment (a0..a3) = (C0[0..1], C0[2..3], C1[0..1], C1[2..3]).
 */
#ifndef LINA_CUDA_MMA_H
#define LINA_CUDA_MMA_H

#include <stdint.h>

#include <type_traits>

#include "cuda_types.h"

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* d (16x8 fp32) += a (16x16) b (16x8), T = __nv_bfloat16 or __half */
template <typename T>
__device__ __forceinline__ void mma16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    if constexpr (std::is_same<T, __nv_bfloat16>::value)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* fp32 x = hi + lo as two tf32 values (hi = x rounded to tf32, lo = the rest rounded). */
__device__ __forceinline__ void split_tf32(float x, uint32_t &hi, uint32_t &lo) {
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(hi) : "f"(x));
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(lo) : "f"(x - __uint_as_float(hi)));
}

/* d (16x8 fp32) += a (16x8) b (8x8) on tf32 tensor cores, with fp32 operands in the m16n8k8
 * fragment layout (g = lane / 4, t = lane % 4): a = (a[g][t], a[g+8][t], a[g][t+4], a[g+8][t+4]),
 * b = (b[t][g], b[t+4][g]); fp32-grade by 3xTF32: a_lo b_hi + a_hi b_lo + a_hi b_hi (the
 * dropped a_lo b_lo is ~2^-22 relative). */
__device__ __forceinline__ void mma1688_3xtf32(float d[4], const float a[4], float b0, float b1) {
    uint32_t ah[4], al[4], bh[2], bl[2];
#pragma unroll
    for (int e = 0; e < 4; e++) split_tf32(a[e], ah[e], al[e]);
    split_tf32(b0, bh[0], bl[0]);
    split_tf32(b1, bh[1], bl[1]);
    const uint32_t *as[3] = {al, ah, ah}, *bs[3] = {bh, bl, bh};
#pragma unroll
    for (int m = 0; m < 3; m++)
        asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(as[m][0]), "r"(as[m][1]), "r"(as[m][2]), "r"(as[m][3]), "r"(bs[m][0]), "r"(bs[m][1]));
}

/* Four 8x8 16-bit matrices; lane l gives the row address of matrix l / 8.
 * Plain: r[i] = M_i[g][c..c+1]. Transposed: r[i] = (M_i[c][g], M_i[c+1][g]). */
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(row)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(row)));
}

/* 16 bytes global -> shared, asynchronously; bytes < 16 fills the rest with
 * zeros (bytes = 0 reads nothing, src must still be a valid address). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(bytes));
}
/* 4 bytes global -> shared (bytes = 0 writes a zero; src must still be valid). */
__device__ __forceinline__ void cp_async4(void *dst, const void *src, int bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Two fp32 <-> one register of two 16-bit elements (low half first). */
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
    __nv_bfloat162 x = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&x;
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
    __half2 x = __floats2half2_rn(lo, hi);
    return *(uint32_t *)&x;
}
template <typename T> __device__ __forceinline__ float2 unpack2(uint32_t r);
template <> __device__ __forceinline__ float2 unpack2<__nv_bfloat16>(uint32_t r) {
    return __bfloat1622float2(*(__nv_bfloat162 *)&r);
}
template <> __device__ __forceinline__ float2 unpack2<__half>(uint32_t r) { return __half22float2(*(__half2 *)&r); }

/* r with its low element scaled by lo and its high element by hi */
template <typename T>
__device__ __forceinline__ uint32_t scale2(uint32_t r, float lo, float hi) {
    const float2 f = unpack2<T>(r);
    return pack2<T>(f.x * lo, f.y * hi);
}

/* o (16 x 64 fp32: eight accumulator n-tiles) += a (a 16 x 16 A fragment) B, with B the 16 x 64
 * tile at b in shared memory (row-major, leading dim ld elements; read with transposed ldmatrix):
 * the Q S and P V products of the output kernels. All 32 lanes of the warp call. */
template <typename T>
__device__ __forceinline__ void mma_tile_16x64(float (&o)[8][4], const uint32_t a[4], const T *b, int ld) {
    const int lane = threadIdx.x & 31, mi = lane >> 3, mr = lane & 7;
    const T *row = b + (mr + ((mi & 1) << 3)) * ld + ((mi >> 1) << 3);
#pragma unroll
    for (int np = 0; np < 4; np++) {
        uint32_t bb[4];
        ldsm_x4_t(bb, row + np * 16);
        mma16816<T>(o[2 * np], a, bb[0], bb[1]);
        mma16816<T>(o[2 * np + 1], a, bb[2], bb[3]);
    }
}

/* Copy rows [0, R) x columns [0, CW) of a 16-bit tile into shared memory
 * (leading dim ldd elements), from src (row r at src + r * stride); rows >=
 * rows_valid and columns >= cols_valid become zeros. vec: 16-byte cp.async
 * (src 16-byte aligned, stride and cols_valid multiples of 8; the caller
 * commits and waits); else plain element copies (visible after a barrier).
 * CW multiple of 8. All NT threads of the block call. */
template <typename T, int NT>
__device__ __forceinline__ void tile_to_smem(T *dst, int ldd, const T *src, int64_t stride, int R, int CW,
                                             int rows_valid, int cols_valid, bool vec) {
    const int tid = threadIdx.x;
    if (vec) {
        const int units = CW / 8;
        for (int u = tid; u < R * units; u += NT) {
            const int r = u / units, c = (u % units) * 8;
            const bool ok = r < rows_valid && c < cols_valid;
            cp_async16(dst + r * ldd + c, ok ? (const void *)(src + r * stride + c) : (const void *)src, ok ? 16 : 0);
        }
    } else {
        for (int e = tid; e < R * CW; e += NT) {
            const int r = e / CW, c = e % CW;
            dst[r * ldd + c] = (r < rows_valid && c < cols_valid) ? src[r * stride + c] : from_f<T>(0.f);
        }
    }
}

/* tile_to_smem for a full tile (R rows x CW columns all valid, 16-byte aligned rows): each
 * thread's 16-byte units sit at fixed offsets, so a copy costs ~3 instructions instead of
 * the general loop's ~18 (index arithmetic, bounds, selects); per-chunk loaders of the
 * sequential kernels were issue-bound on it. */
template <typename T, int NT, int R, int CW>
__device__ __forceinline__ void tile_to_smem_full(T *dst, int ldd, const T *src, int64_t stride) {
    constexpr int EPU = 16 / (int)sizeof(T), UPR = CW / EPU, ROWS = NT / UPR; /* elements per unit, units per row */
    static_assert(CW % EPU == 0 && NT % UPR == 0 && R % ROWS == 0, "tile_to_smem_full: units do not tile the block");
    const int r = threadIdx.x / UPR, c = threadIdx.x % UPR * EPU;
    dst += r * ldd + c;
    src += r * stride + c;
#pragma unroll
    for (int i = 0; i < R / ROWS; i++) cp_async16(dst + i * ROWS * ldd, src + i * ROWS * stride, 16);
}

/* The fp32 version of tile_to_smem (16-byte units of 4 floats; vec needs
 * src 16-byte aligned, stride and cols_valid multiples of 4). CW multiple of 4. */
template <int NT>
__device__ __forceinline__ void tile_to_smem_f32(float *dst, int ldd, const float *src, int64_t stride, int R,
                                                 int CW, int rows_valid, int cols_valid, bool vec) {
    const int tid = threadIdx.x;
    if (vec) {
        const int units = CW / 4;
        for (int u = tid; u < R * units; u += NT) {
            const int r = u / units, c = (u % units) * 4;
            const bool ok = r < rows_valid && c < cols_valid;
            cp_async16(dst + r * ldd + c, ok ? (const void *)(src + r * stride + c) : (const void *)src, ok ? 16 : 0);
        }
    } else {
        for (int e = tid; e < R * CW; e += NT) {
            const int r = e / CW, c = e % CW;
            dst[r * ldd + c] = (r < rows_valid && c < cols_valid) ? src[r * stride + c] : 0.f;
        }
    }
}

/* Chunk-local inclusive cumulative log gates, computed by every lane of a
 * warp for a chunk of 64 tokens: lane l returns b[2l] in b.x, b[2l+1] in b.y
 * (tokens >= lc contribute 0, so b stays at b[lc-1] after the chunk's end).
 * g2 = the raw gates of tokens 2l, 2l+1 (see load_gates2). CONST gates use
 * b_t = min(t+1, lc) g exactly. */
__device__ __forceinline__ float2 chunk_cumsum64(float2 g2, int gate, float gconst, int lc) {
    const int lane = threadIdx.x & 31;
    if (gate == LINA_GATE_CONST)
        return make_float2((float)min(2 * lane + 1, lc) * gconst, (float)min(2 * lane + 2, lc) * gconst);
    const float own = g2.x + g2.y;
    float incl = own;
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
        const float y = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += y;
    }
    const float excl = incl - own;
    return make_float2(excl + g2.x, excl + own);
}

/* Raw SCALAR log gates of tokens 2l, 2l+1 of a chunk (0 past lc or for other gates). */
__device__ __forceinline__ float2 load_gates2(const float *g, int gate, int64_t start, int lc, int HV, int hv) {
    const int t = 2 * (threadIdx.x & 31);
    float2 r = make_float2(0.f, 0.f);
    if (gate == LINA_GATE_SCALAR) {
        if (t < lc) r.x = g[(start + t) * HV + hv];
        if (t + 1 < lc) r.y = g[(start + t + 1) * HV + hv];
    }
    return r;
}

/* b[t] of a chunk from the lane pairs of chunk_cumsum64 (all lanes call). */
__device__ __forceinline__ float b_at(float2 b, int t) {
    const float x = __shfl_sync(0xffffffffu, b.x, t >> 1), y = __shfl_sync(0xffffffffu, b.y, t >> 1);
    return (t & 1) ? y : x;
}

/* A warp's 16 x 64 fp32 accumulator tile o (mma layout: lane = 4 g + c2 / 2) written to
 * global rows og (row stride sv, first `rows` rows and `vcols` columns), staged through
 * the warp's own shared-memory rows o_s (ld ldq) so the global stores are 16 bytes wide
 * when vec (row starts 16-byte aligned), element-wise otherwise. */
template <typename T>
__device__ __forceinline__ void store_warp_tile(const float (&o)[8][4], T *o_s, int ldq, T *og, int64_t sv,
                                                int rows, int vcols, bool vec, int lane) {
    const int g = lane >> 2, c2 = 2 * (lane & 3);
    __syncwarp();
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
        *(uint32_t *)(o_s + g * ldq + nt * 8 + c2) = pack2<T>(o[nt][0], o[nt][1]);
        *(uint32_t *)(o_s + (g + 8) * ldq + nt * 8 + c2) = pack2<T>(o[nt][2], o[nt][3]);
    }
    __syncwarp();
    if (vec) {
        for (int u = lane; u < 16 * 8; u += 32) {
            const int r = u >> 3, cc = (u & 7) * 8;
            if (r < rows && cc < vcols) *(uint4 *)(og + r * sv + cc) = *(const uint4 *)(o_s + r * ldq + cc);
        }
    } else {
        for (int e = lane; e < 16 * 64; e += 32) {
            const int r = e >> 6, cc = e & 63;
            if (r < rows && cc < vcols) og[r * sv + cc] = o_s[r * ldq + cc];
        }
    }
}

#endif
