/* Device memory, copies, event timing and random fills for C callers that
 * do not include the CUDA headers (the CLI's `bench ops --device cuda`, tests,
 * bindings): include/lina/cuda.h, "Device memory and timing". Every CUDA error
 * becomes a lina_status whose message names the call and the size. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include <mutex>

#include "cuda_internal.h"
#include "cuda_types.h"
#include "lina/cuda.h"

extern "C" lina_status lina_fail(lina_status code, const char *fmt, ...);

/* Map a CUDA error to a status: out of memory is LINA_ERR_OOM, anything else
 * (no device, no driver, a faulting kernel) LINA_ERR_CUDA. Clears a non-sticky
 * error so that later calls start clean. */
static lina_status mem_fail(cudaError_t e, const char *fmt_call, size_t bytes) {
    cudaGetLastError();
    return lina_fail(e == cudaErrorMemoryAllocation ? LINA_ERR_OOM : LINA_ERR_CUDA, "%s (%zu bytes): %s (%s)",
                     fmt_call, bytes, cudaGetErrorString(e), cudaGetErrorName(e));
}

extern "C" lina_status lina_cuda_device_info(lina_cuda_device *out) {
    if (!out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_cuda_device_info: out is NULL");
    memset(out, 0, sizeof *out);
    int n = 0, dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lina_fail(LINA_ERR_CUDA, "lina_cuda_device_info: no usable CUDA device: cudaGetDeviceCount: %s (%s)",
                         cudaGetErrorString(e), cudaGetErrorName(e));
    }
    if (n < 1) return lina_fail(LINA_ERR_CUDA, "lina_cuda_device_info: no usable CUDA device: none is visible");
    cudaDeviceProp prop;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, dev)) != cudaSuccess) {
        cudaGetLastError();
        return lina_fail(LINA_ERR_CUDA, "lina_cuda_device_info: cudaGetDeviceProperties(device %d): %s (%s)", dev,
                         cudaGetErrorString(e), cudaGetErrorName(e));
    }
    out->index = dev;
    snprintf(out->name, sizeof out->name, "%s", prop.name);
    out->cc_major = prop.major;
    out->cc_minor = prop.minor;
    out->sm_count = prop.multiProcessorCount;
    out->total_bytes = prop.totalGlobalMem;
    return LINA_OK;
}

extern "C" int lina_cuda_sm_count(void) {
    int dev = 0, sms = 132;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
        cudaGetLastError();
        sms = 132;
    }
    return sms;
}

/* Created on first use and kept for the process (streams and events are cheap; destroying
 * them at exit races with the driver's own teardown). The mutex is held from acquire to
 * release: the events are reused by every call, so two host threads must not interleave
 * their record/wait sequences. */
static std::mutex side_mutex;
static lina_cuda_side_streams side[64];
static bool side_ready[64], side_failed[64];

extern "C" const lina_cuda_side_streams *lina_cuda_side_streams_acquire(void) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        cudaGetLastError();
        return NULL;
    }
    side_mutex.lock();
    if (!side_ready[dev] && !side_failed[dev]) {
        int least = 0, greatest = 0;
        cudaStream_t hi = NULL, lo = NULL;
        bool ok = cudaDeviceGetStreamPriorityRange(&least, &greatest) == cudaSuccess &&
                  cudaStreamCreateWithPriority(&hi, cudaStreamNonBlocking, greatest) == cudaSuccess &&
                  cudaStreamCreateWithPriority(&lo, cudaStreamNonBlocking, least) == cudaSuccess;
        side[dev].hi = hi;
        side[dev].lo = lo;
        for (int i = 0; ok && i < 32; i++) {
            cudaEvent_t ev;
            ok = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) == cudaSuccess;
            side[dev].events[i] = ev;
        }
        if (!ok) cudaGetLastError();
        side_ready[dev] = ok;
        side_failed[dev] = !ok;
    }
    if (side_ready[dev]) return &side[dev];
    side_mutex.unlock();
    return NULL;
}

extern "C" void lina_cuda_side_streams_release(void) { side_mutex.unlock(); }

extern "C" lina_status lina_cuda_malloc(void **p, size_t bytes) {
    if (!p) return lina_fail(LINA_ERR_INVALID_ARG, "lina_cuda_malloc: p is NULL (%zu bytes)", bytes);
    *p = NULL;
    if (bytes == 0) return LINA_OK;
    void *d = NULL;
    cudaError_t e = cudaMalloc(&d, bytes);
    if (e != cudaSuccess) return mem_fail(e, "lina_cuda_malloc: cudaMalloc", bytes);
    *p = d;
    return LINA_OK;
}

extern "C" void lina_cuda_free(void *p) {
    if (p && cudaFree(p) != cudaSuccess) cudaGetLastError();
}

extern "C" lina_status lina_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return LINA_OK;
    if (!dst || !src)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_cuda_memcpy_h2d: NULL pointer (dst %p, src %p, %zu bytes)", dst,
                         src, bytes);
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? LINA_OK : mem_fail(e, "lina_cuda_memcpy_h2d: cudaMemcpy", bytes);
}

extern "C" lina_status lina_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return LINA_OK;
    if (!dst || !src)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_cuda_memcpy_d2h: NULL pointer (dst %p, src %p, %zu bytes)", dst,
                         src, bytes);
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? LINA_OK : mem_fail(e, "lina_cuda_memcpy_d2h: cudaMemcpy", bytes);
}

extern "C" lina_status lina_cuda_memset(void *p, int byte, size_t bytes, void *stream) {
    if (bytes == 0) return LINA_OK;
    if (!p) return lina_fail(LINA_ERR_INVALID_ARG, "lina_cuda_memset: p is NULL (%zu bytes)", bytes);
    cudaError_t e = cudaMemsetAsync(p, byte, bytes, (cudaStream_t)stream);
    return e == cudaSuccess ? LINA_OK : mem_fail(e, "lina_cuda_memset: cudaMemsetAsync", bytes);
}

extern "C" lina_status lina_cuda_synchronize(void) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) return LINA_OK;
    cudaGetLastError();
    return lina_fail(LINA_ERR_CUDA, "lina_cuda_synchronize: cudaDeviceSynchronize: %s (%s)", cudaGetErrorString(e),
                     cudaGetErrorName(e));
}

/* ---- timing: a pair of CUDA events ---- */

struct lina_cuda_timer {
    cudaEvent_t start, stop;
};

static lina_status event_fail(const char *what, cudaError_t e) {
    cudaGetLastError();
    return lina_fail(LINA_ERR_CUDA, "lina_cuda_timer: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

extern "C" lina_status lina_cuda_timer_create(lina_cuda_timer **out) {
    if (!out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_cuda_timer_create: out is NULL");
    *out = NULL;
    lina_cuda_timer *t = (lina_cuda_timer *)calloc(1, sizeof *t);
    if (!t) return lina_fail(LINA_ERR_OOM, "lina_cuda_timer_create: %zu host bytes", sizeof *t);
    cudaError_t e = cudaEventCreate(&t->start);
    if (e != cudaSuccess) {
        free(t);
        return event_fail("cudaEventCreate(start)", e);
    }
    e = cudaEventCreate(&t->stop);
    if (e != cudaSuccess) {
        cudaEventDestroy(t->start);
        free(t);
        return event_fail("cudaEventCreate(stop)", e);
    }
    *out = t;
    return LINA_OK;
}

extern "C" void lina_cuda_timer_free(lina_cuda_timer *t) {
    if (!t) return;
    cudaEventDestroy(t->start);
    cudaEventDestroy(t->stop);
    cudaGetLastError();
    free(t);
}

extern "C" lina_status lina_cuda_timer_start(lina_cuda_timer *t, void *stream) {
    if (!t) return lina_fail(LINA_ERR_INVALID_ARG, "lina_cuda_timer_start: timer is NULL");
    cudaError_t e = cudaEventRecord(t->start, (cudaStream_t)stream);
    return e == cudaSuccess ? LINA_OK : event_fail("cudaEventRecord(start)", e);
}

extern "C" lina_status lina_cuda_timer_stop(lina_cuda_timer *t, void *stream, float *ms) {
    if (!t || !ms) return lina_fail(LINA_ERR_INVALID_ARG, "lina_cuda_timer_stop: timer or ms is NULL");
    *ms = 0.0f;
    cudaError_t e = cudaEventRecord(t->stop, (cudaStream_t)stream);
    if (e != cudaSuccess) return event_fail("cudaEventRecord(stop)", e);
    /* waits for everything before the stop event; a kernel that faulted reports here */
    if ((e = cudaEventSynchronize(t->stop)) != cudaSuccess)
        return event_fail("cudaEventSynchronize(stop) (the timed work failed)", e);
    if ((e = cudaEventElapsedTime(ms, t->start, t->stop)) != cudaSuccess)
        return event_fail("cudaEventElapsedTime", e);
    return LINA_OK;
}

/* ---- random fills ---- */

/* splitmix64's output for the counter i: the hash of seed + (i + 1) * golden ratio. */
__device__ __forceinline__ uint64_t splitmix_at(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Element i's draw: two 24-bit uniforms u in (0, 1), w in [0, 1) from one hash;
 * NORMAL and SIGMOID use Box-Muller z = sqrt(-2 ln u) cos(2 pi w). */
__device__ __forceinline__ float draw(uint64_t seed, uint64_t i, int dist, float lo, float hi) {
    const uint64_t h = splitmix_at(seed, i);
    const float inv24 = 1.0f / 16777216.0f;
    const float u = ((float)(h >> 40) + 0.5f) * inv24, w = (float)(h & 0xFFFFFFu) * inv24;
    if (dist == LINA_CUDA_RANDOM_UNIFORM) return lo + (hi - lo) * w;
    const float z = sqrtf(-2.0f * logf(u)) * cospif(2.0f * w);
    return dist == LINA_CUDA_RANDOM_SIGMOID ? 1.0f / (1.0f + expf(-z)) : z;
}

/* x[i] = draw(i), i < n; grid-stride over elements. */
template <typename T>
__global__ void fill_kernel(T *x, uint64_t n, uint64_t seed, int dist, float lo, float hi) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
        x[i] = from_f<T>(draw(seed, i, dist, lo, hi));
}

/* One warp per row of `cols`: x[r, c] = draw(r cols + c) / ||draw(r cols + :)||_2.
 * The draws are recomputed for the write (counter-based, so identical). */
template <typename T>
__global__ void fill_l2_rows_kernel(T *x, uint64_t rows, int cols, uint64_t seed, int dist, float lo, float hi) {
    const int lane = threadIdx.x & 31;
    const uint64_t warps = (uint64_t)gridDim.x * (blockDim.x / 32);
    for (uint64_t r = blockIdx.x * (uint64_t)(blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
        const uint64_t base = r * (uint64_t)cols;
        float ss = 0.0f;
        for (int c = lane; c < cols; c += 32) {
            const float z = draw(seed, base + c, dist, lo, hi);
            ss += z * z;
        }
        for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
        const float inv = rsqrtf(ss + 1e-12f);
        for (int c = lane; c < cols; c += 32) x[base + c] = from_f<T>(draw(seed, base + c, dist, lo, hi) * inv);
    }
}

template <typename T>
static cudaError_t launch_fill(void *x, uint64_t rows, int cols, uint64_t seed, int dist, float lo, float hi,
                               int l2_rows, cudaStream_t st) {
    const int threads = 256;
    const uint64_t work = l2_rows ? (rows + threads / 32 - 1) / (threads / 32) : (rows * cols + threads - 1) / threads;
    const unsigned blocks = (unsigned)(work < 65536 ? (work ? work : 1) : 65536); /* grid-stride beyond */
    if (l2_rows)
        fill_l2_rows_kernel<T><<<blocks, threads, 0, st>>>((T *)x, rows, cols, seed, dist, lo, hi);
    else
        fill_kernel<T><<<blocks, threads, 0, st>>>((T *)x, rows * (uint64_t)cols, seed, dist, lo, hi);
    return cudaGetLastError();
}

extern "C" lina_status lina_cuda_fill_random(void *x, size_t rows, int cols, lina_dtype dtype,
                                             lina_cuda_random dist, float lo, float hi, int l2_rows,
                                             uint64_t seed, void *stream) {
    static const char fn[] = "lina_cuda_fill_random";
    if (cols < 1) return lina_fail(LINA_ERR_INVALID_ARG, "%s: cols = %d must be >= 1", fn, cols);
    if (dtype != LINA_DTYPE_F32 && dtype != LINA_DTYPE_BF16 && dtype != LINA_DTYPE_F16)
        return lina_fail(LINA_ERR_UNSUPPORTED, "%s: dtype = %d; only F32, BF16 and F16", fn, (int)dtype);
    if ((unsigned)dist > LINA_CUDA_RANDOM_SIGMOID)
        return lina_fail(LINA_ERR_INVALID_ARG, "%s: dist = %d unknown", fn, (int)dist);
    if (rows > SIZE_MAX / 4 / (size_t)cols)
        return lina_fail(LINA_ERR_OOM, "%s: rows = %zu x cols = %d overflows size_t", fn, rows, cols);
    const size_t bytes = rows * (size_t)cols * (dtype == LINA_DTYPE_F32 ? 4 : 2);
    if (rows == 0) return LINA_OK;
    if (!x) return lina_fail(LINA_ERR_INVALID_ARG, "%s: x is NULL (%zu bytes)", fn, bytes);
    cudaStream_t st = (cudaStream_t)stream;
    cudaError_t e = dtype == LINA_DTYPE_F32    ? launch_fill<float>(x, rows, cols, seed, dist, lo, hi, l2_rows, st)
                    : dtype == LINA_DTYPE_BF16 ? launch_fill<__nv_bfloat16>(x, rows, cols, seed, dist, lo, hi, l2_rows, st)
                                               : launch_fill<__half>(x, rows, cols, seed, dist, lo, hi, l2_rows, st);
    return e == cudaSuccess ? LINA_OK : mem_fail(e, "lina_cuda_fill_random: kernel launch", bytes);
}
