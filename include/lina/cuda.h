/* lina CUDA backend: the linear-attention op of ops.h on device memory.
 *
 * Usable everywhere: in a build without CUDA (no LINA_HAVE_CUDA) every
 * function here returns LINA_ERR_UNSUPPORTED with a message saying so.
 *
 * Same descriptor, same math and same layouts as lina_attn_forward (ops.h),
 * but every tensor pointer is a DEVICE pointer (cudaMalloc'd; host or
 * unregistered pointers are rejected with LINA_ERR_INVALID_ARG):
 *   q, k      (B, T, H, K)   in `dtype`
 *   v, o      (B, T, HV, V)  in `dtype`
 *   g         fp32 log gates: CONST (HV) | SCALAR (B, T, HV) | VECTOR (B, T, HV, K)
 *   beta      fp32 (B, T, HV), DELTA only
 *   h0, ht    fp32 states (N, HV, K, V); ht may alias h0
 * dtype is LINA_DTYPE_F32, LINA_DTYPE_BF16 or LINA_DTYPE_F16 (io.h); the state
 * and every accumulation are fp32. With bf16/fp16 the intra-chunk products run
 * on tensor cores from 16-bit operands (the state is rounded to 16 bits for
 * the Q S product, as in fla). d->cu_seqlens stays a HOST array (it is
 * validated on the host, then copied to the device on `stream`).
 * `stream` is a cudaStream_t passed as void* (NULL: the legacy default stream).
 * Calls are asynchronous with respect to the host, like any kernel launch.
 *
 * Memory: the additive chunk kernels take a stream-ordered workspace
 * (cudaMallocAsync, freed on the stream after the call) holding the state at
 * every chunk start, (chunks, HV, K, V) in dtype; the first call sets the
 * release threshold of the device's default memory pool to "keep", so later
 * calls reuse it. A failed allocation returns LINA_ERR_OOM naming the size.
 * Gates are not checked on the device (the CPU API rejects g > 0): log gates
 * must be finite and <= 0.
 * The backward (lina_cuda_attn_backward) runs token by token for every gate
 * and update; see there.
 *
 * Not supported on the GPU (LINA_ERR_UNSUPPORTED with a message): normalize,
 * form PARALLEL, K or V above 256. The chunk size is fixed by the kernels
 * (64, or 32 for the fp32 delta rule when shared memory is short) and
 * d->chunk is ignored: the result is the same function. VECTOR gates run
 * chunk kernels for the additive update with 16-bit inputs, the
 * token-by-token kernel otherwise (fp32, or the delta rule).
 */
#ifndef LINA_CUDA_H
#define LINA_CUDA_H

#include "core.h"
#include "io.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LINA_CUDA_MAX_HEAD_DIM 256

/* 1 if this build has CUDA and a device is visible, else 0 (never fails). */
int lina_cuda_available(void);

typedef struct {
    const void *q, *k, *v; /* dtype */
    const float *g;        /* log gates, NULL for NONE */
    const float *beta;     /* DELTA only */
    const float *h0;       /* or NULL for zeros */
    void *o;               /* dtype */
    float *ht;             /* or NULL */
} lina_cuda_attn_fwd_args;

/* Forward on the device. d->form: AUTO or CHUNK (chunkwise kernels where they
 * exist, see above), RECURRENT (token-by-token kernel). */
lina_status lina_cuda_attn_forward(const lina_attn_desc *d, lina_dtype dtype,
                                   const lina_cuda_attn_fwd_args *a, void *stream);

typedef struct {
    const void *q, *k, *v;   /* dtype */
    const float *g, *beta;   /* as the forward */
    const float *h0;         /* or NULL for zeros */
    const void *dout;        /* dtype, (B, T, HV, V) */
    const float *dht;        /* (N, HV, K, V) or NULL (zero) */
    void *dq, *dk, *dv;      /* dtype */
    float *dg;               /* like g (CONST: (HV), summed over batch and time), or NULL when
                              * the gates are fixed (no gradient wanted: the faster path) */
    float *dbeta;            /* (B, T, HV), DELTA */
    float *dh0;              /* (N, HV, K, V) or NULL */
} lina_cuda_attn_bwd_args;

/* Gradients of lina_cuda_attn_forward's outputs (o, and ht through dht), the
 * device twin of lina_attn_backward: overwritten, never accumulated. Every
 * gate and update, fp32 / bf16 / fp16, varlen, grouped heads. Paths:
 *  - additive update, gates NONE / CONST / SCALAR, HV == H, dg NULL or gate
 *    NONE: three chunkwise forward runs (dq directly, dk and dv on the
 *    sequences reversed) on the tensor cores;
 *  - everything else (delta rule, VECTOR gates, a wanted dg, grouped heads):
 *    chunkwise on cuBLAS batched GEMMs (fp32; TF32 for 16-bit inputs), about
 *    1 MB of workspace per 64-token chunk and value head at K = V = 128; a
 *    batch beyond the budget (LINA_CUDA_CHUNK_WS_MB, else half the free
 *    memory) runs as groups of whole sequences;
 *  - form RECURRENT, LINA_CUDA_BWD_IMPL=recurrent, or a single sequence whose
 *    workspace cannot be allocated: token by token from checkpoints (the
 *    state before every 16th token, fp32). Exact but slow (tens of ms at B8
 *    T4096 H16 K=V=128).
 * Sums over grouped heads use fp32 atomics (last bits may differ between
 * runs). Workspaces are stream-ordered (cudaMallocAsync); a failed one is
 * LINA_ERR_OOM. */
lina_status lina_cuda_attn_backward(const lina_attn_desc *d, lina_dtype dtype,
                                    const lina_cuda_attn_bwd_args *a, void *stream);

/* Single-token decode step for N = d->B sequences, as lina_attn_step:
 * q, k (N, H, K), v, o (N, HV, V) in dtype; g fp32 (HV) | (N, HV) | (N, HV, K);
 * beta fp32 (N, HV); state fp32 (N, HV, K, V) updated in place. */
lina_status lina_cuda_attn_step(const lina_attn_desc *d, lina_dtype dtype, const void *q,
                                const void *k, const void *v, const float *g, const float *beta,
                                float *state, void *o, void *stream);

/* ---- Device memory and timing (src/cuda/cuda_mem.cu) ----
 * For C callers without the CUDA headers (the CLI's `bench ops --device cuda`).
 * The current device of the calling thread; every CUDA error becomes a status
 * whose message names the call and the size (LINA_ERR_OOM for out of memory,
 * LINA_ERR_CUDA otherwise, e.g. no device or no driver). Without CUDA every
 * call returns LINA_ERR_UNSUPPORTED ("built without CUDA"). */

typedef struct {
    int index;           /* cudaGetDevice */
    char name[256];      /* e.g. "NVIDIA H200" */
    int cc_major, cc_minor;
    int sm_count;
    size_t total_bytes;  /* global memory */
} lina_cuda_device;

/* The current device, or an error saying why there is none. */
lina_status lina_cuda_device_info(lina_cuda_device *out);

/* cudaMalloc: *p = NULL on failure and for bytes == 0 (which succeeds). */
lina_status lina_cuda_malloc(void **p, size_t bytes);
void lina_cuda_free(void *p); /* NULL is fine; errors are dropped */
/* Synchronous copies (cudaMemcpy) between host and device memory. */
lina_status lina_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes);
lina_status lina_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes);
/* cudaMemsetAsync on `stream` (cudaStream_t as void*, NULL: legacy default). */
lina_status lina_cuda_memset(void *p, int byte, size_t bytes, void *stream);
/* cudaDeviceSynchronize: also reports an earlier asynchronous (kernel) error. */
lina_status lina_cuda_synchronize(void);

/* A pair of CUDA events. stop records the stop event, waits for it and returns
 * the milliseconds between the two events (GPU time of the work enqueued on
 * `stream` between start and stop, plus any idle gap there). */
typedef struct lina_cuda_timer lina_cuda_timer;
lina_status lina_cuda_timer_create(lina_cuda_timer **out);
lina_status lina_cuda_timer_start(lina_cuda_timer *t, void *stream);
lina_status lina_cuda_timer_stop(lina_cuda_timer *t, void *stream, float *ms);
void lina_cuda_timer_free(lina_cuda_timer *t); /* NULL is fine */

typedef enum {
    LINA_CUDA_RANDOM_NORMAL = 0,  /* N(0, 1) */
    LINA_CUDA_RANDOM_UNIFORM = 1, /* U[lo, hi) */
    LINA_CUDA_RANDOM_SIGMOID = 2  /* 1 / (1 + e^-z), z ~ N(0, 1): in (0, 1) */
} lina_cuda_random;

/* Fill the device array x, (rows, cols) in dtype (F32, BF16, F16), on `stream`
 * with draws from a counter-based hash of (seed, element index) (the same
 * values for the same seed, whatever the launch). l2_rows: each row is
 * scaled to unit L2 norm after drawing (norm computed in fp32 before the
 * rounding to dtype). lo, hi: UNIFORM only. */
lina_status lina_cuda_fill_random(void *x, size_t rows, int cols, lina_dtype dtype, lina_cuda_random dist,
                                  float lo, float hi, int l2_rows, uint64_t seed, void *stream);

#ifdef __cplusplus
}
#endif
#endif
