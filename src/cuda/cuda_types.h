/* Element types of the CUDA kernels (fp32, bf16, fp16): conversions and
 * 16-byte row copies between device memory and shared memory. CUDA C++ only. */
#ifndef LINA_CUDA_TYPES_H
#define LINA_CUDA_TYPES_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) {
    return __bfloat162float(x);
}
template <> __device__ __forceinline__ float to_f<__half>(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }

/* Copy a (R x CP) tile of rows into shared memory (leading dim ldd), reading
 * rows_valid rows of cols_valid elements from src (row r at src + r*stride)
 * and writing zeros elsewhere. vec: 16-byte loads (the caller checked that
 * cols_valid, stride and src are multiples/aligned for it). All threads call. */
template <typename T>
__device__ __forceinline__ void load_tile(T *dst, int ldd, const T *src, int64_t stride, int R,
                                          int CP, int rows_valid, int cols_valid, bool vec) {
    const int nt = blockDim.x * blockDim.y, tid = threadIdx.y * blockDim.x + threadIdx.x;
    if (vec) {
        constexpr int VEC = 16 / sizeof(T), GROUP = 8; /* GROUP loads in flight per thread */
        const int units = CP / VEC, total = R * units;
        for (int base = tid; base < total; base += GROUP * nt) {
            uint4 x[GROUP];
#pragma unroll
            for (int u = 0; u < GROUP; u++) {
                const int i = base + u * nt, r = i / units, c = (i % units) * VEC;
                x[u] = make_uint4(0, 0, 0, 0);
                if (i < total && r < rows_valid && c < cols_valid) x[u] = *(const uint4 *)(src + r * stride + c);
            }
#pragma unroll
            for (int u = 0; u < GROUP; u++) {
                const int i = base + u * nt;
                if (i < total) *(uint4 *)(dst + (i / units) * ldd + (i % units) * VEC) = x[u];
            }
        }
    } else {
        for (int i = tid; i < R * CP; i += nt) {
            const int r = i / CP, c = i % CP;
            dst[r * ldd + c] = (r < rows_valid && c < cols_valid) ? src[r * stride + c] : from_f<T>(0.f);
        }
    }
}

/* Write rows_valid x cols_valid of an fp32 shared tile (leading dim lds) to
 * dst (row r at dst + r*stride), converted to T. vec as in load_tile. */
template <typename T>
__device__ __forceinline__ void store_tile(T *dst, int64_t stride, const float *src, int lds,
                                           int rows_valid, int cols_valid, bool vec) {
    const int nt = blockDim.x * blockDim.y, tid = threadIdx.y * blockDim.x + threadIdx.x;
    if (vec) {
        constexpr int VEC = 16 / sizeof(T);
        const int units = cols_valid / VEC;
        for (int i = tid; i < rows_valid * units; i += nt) {
            const int r = i / units, c = (i % units) * VEC;
            union {
                uint4 u;
                T e[VEC];
            } pack;
#pragma unroll
            for (int e = 0; e < VEC; e++) pack.e[e] = from_f<T>(src[r * lds + c + e]);
            *(uint4 *)(dst + r * stride + c) = pack.u;
        }
    } else {
        for (int i = tid; i < rows_valid * cols_valid; i += nt) {
            const int r = i / cols_valid, c = i % cols_valid;
            dst[r * stride + c] = from_f<T>(src[r * lds + c]);
        }
    }
}

/* Inclusive prefix sum of C (32 or 64) values in shared memory by warp 0
 * (lane l holds C/32 consecutive values); the caller adds the barrier. */
template <int C>
__device__ __forceinline__ void warp0_cumsum(float *b) {
    static_assert(C == 32 || C == 64, "chunk must be 32 or 64");
    constexpr int PER = C / 32;
    if (threadIdx.x >= 32 || threadIdx.y != 0) return;
    const int lane = threadIdx.x;
    float x[PER], own = 0.f;
#pragma unroll
    for (int j = 0; j < PER; j++) own += (x[j] = b[lane * PER + j]);
    float incl = own;
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
        const float y = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += y;
    }
    float acc = incl - own;
#pragma unroll
    for (int j = 0; j < PER; j++) b[lane * PER + j] = acc += x[j];
}

/* Sequence n of the batch: first token and length. */
__device__ __forceinline__ void seq_range(const int64_t *cu, int T, int n, int64_t *bos, int *len) {
    if (cu) {
        *bos = cu[n];
        *len = (int)(cu[n + 1] - cu[n]);
    } else {
        *bos = (int64_t)n * T;
        *len = T;
    }
}

#endif
