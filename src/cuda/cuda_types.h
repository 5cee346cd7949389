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
        constexpr int VEC = 16 / sizeof(T);
        const int units = CP / VEC;
        for (int i = tid; i < R * units; i += nt) {
            const int r = i / units, c = (i % units) * VEC;
            uint4 x = make_uint4(0, 0, 0, 0);
            if (r < rows_valid && c < cols_valid) x = *(const uint4 *)(src + r * stride + c);
            *(uint4 *)(dst + r * ldd + c) = x;
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
