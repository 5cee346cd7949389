/* Internal interface between the CUDA host code (cuda_attn.cu: validation,
 * workspace, dispatch) and the kernels (attn_chunk.cu, attn_recurrent.cu).
 *
 * One thread block per (sequence n, value head hv, tile of value columns):
 * blockIdx.x = n * HV + hv, blockIdx.y = value tile. Offsets are 64-bit, so
 * tensors may exceed 2^31 elements; the host checks the grid limits.
 */
#ifndef LINA_CUDA_INTERNAL_H
#define LINA_CUDA_INTERNAL_H

#include <stdint.h>

#include "lina/cuda.h"

typedef struct {
    int K, V;     /* head dims (<= LINA_CUDA_MAX_HEAD_DIM) */
    int H, HV;    /* q/k heads, value heads (HV multiple of H) */
    int T;        /* tokens per batch row (without varlen) */
    int n_seqs;   /* N: batch rows, or varlen sequences */
    const int64_t *cu; /* device (n_seqs + 1) offsets, or NULL: sequence n starts at n*T */
    /* chunk tables of the split kernels (attn_chunk_add.cu), chunk size LINA_CUDA_SPLIT_CHUNK:
     * without varlen chunk i is computed from i; with varlen, device tables from the host */
    int n_chunks;               /* chunks over all sequences */
    const int64_t *chunk_tab;   /* varlen: (n_chunks, 2) first token, length */
    const int64_t *seq_chunk0;  /* varlen: (n_seqs) index of each sequence's first chunk */
    void *ws;                   /* (n_chunks, HV, K, V) element type: state at each chunk start */
    /* chunk window (equal-length sequences only): win_nc > 0 restricts the delta rule's WY,
     * states and output launches to chunks win_c0 .. win_c0 + win_nc - 1 of every sequence */
    int win_c0, win_nc;
    /* one-pass kernel (attn_chunk_fused_mma.cu): sequences cut into n_segs segments of
     * seg_chunks chunks; seg_state (n_seqs, HV, n_segs, K, V) fp32 and seg_logdecay
     * (n_seqs, HV, n_segs) when n_segs > 1 */
    int n_segs, seg_chunks;
    float *seg_state, *seg_logdecay;
    void *wy_w, *wy_u;          /* delta rule, 16-bit (attn_chunk_delta_mma.cu): W (tokens, HV, K) and
                                 * U (tokens, HV, V) in the element type; U becomes U - W S in place */
    int gate;     /* lina_gate: NONE, CONST, SCALAR, VECTOR */
    int delta;    /* 1: delta update (uses beta) */
    float scale;
    int vec_qk;   /* 1: rows of q and k may be read as 16-byte vectors */
    int vec_v;    /* 1: rows of v and o may be read/written as 16-byte vectors */
    const void *q, *k, *v; /* element type of the kernel instantiation */
    const float *g, *beta, *h0;
    void *o;      /* NULL: outputs not written (the backward's checkpoint sweep) */
    float *ht;
    /* recurrent kernel only: the state before every LINA_CUDA_CKPT_EVERY-th token of each
     * sequence, (checkpoints, HV, K, V) fp32; sequence n's first checkpoint is ckpt0[n]
     * (varlen, device) or n * ceil(T / LINA_CUDA_CKPT_EVERY) */
    float *ckpt;
    const int64_t *ckpt0;
} lina_cuda_attn_params;

#define LINA_CUDA_CKPT_EVERY 16

/* Backward (attn_recurrent_bwd.cu): every gate, both updates, any input dtype. */
typedef struct {
    lina_cuda_attn_params f; /* shape, q, k, v, g, beta, h0 and the checkpoints of the forward sweep */
    const void *dout;        /* (tokens, HV, V) in the element type */
    const float *dht;        /* (N, HV, K, V) or NULL */
    float *dq_acc, *dk_acc;  /* (tokens, H, K) fp32, zeroed: sums over value tiles and grouped heads */
    void *dv;                /* (tokens, HV, V) in the element type */
    float *dg, *dbeta;       /* like g, (tokens, HV); zeroed */
    float *dh0;              /* (N, HV, K, V) or NULL */
    float *scratch;          /* per block: LINA_CUDA_CKPT_EVERY x 256 threads x ceil(K / 8) fp32 */
} lina_cuda_attn_bwd_params;

#ifdef __cplusplus
extern "C" {
#endif
/* Kernel launchers; return the cudaError_t of the launch as int. */
int lina_cuda_chunk_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream);
int lina_cuda_recurrent_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream);
/* The decode step kernel (attn_step.cu): T = 1, K <= 128, V % 4 == 0, 16-byte aligned states */
int lina_cuda_step_applies(const lina_cuda_attn_params *p);
int lina_cuda_step_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream);
#define LINA_CUDA_SPLIT_CHUNK 64
/* Additive update (gates NONE / CONST / SCALAR) in two launches: chunk states
 * (sequential over chunks) into p->ws, then outputs (parallel over chunks). */
int lina_cuda_chunk_add_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream);
/* The same for 16-bit inputs on tensor cores (mma.sync): states kernel per
 * (sequence, head, 64x64 state tile), outputs per (chunk, head, 64 values). */
int lina_cuda_chunk_add_mma_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream);
/* Only the output kernel of the 16-bit split path: O = scale e^{b_t} Q ws[c] +
 * (scale Q K^T o e^{b_t - b_s} [s <= t]) V (the delta rule passes V = U - W S). */
int lina_cuda_mma_outputs(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream);
/* Delta rule (gates NONE / CONST / SCALAR), 16-bit inputs: chunk-parallel WY
 * (W, U into p->wy_w, p->wy_u), sequential states (U - W S, S update, p->ws),
 * then lina_cuda_mma_outputs. */
int lina_cuda_chunk_delta_mma_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream);
/* Time segments of the delta path's overlapped schedule (equal-length sequences): the states
 * pass of segment s (on a highest-priority side stream) runs beside the WY of later segments
 * (a side stream) and the outputs of earlier ones (the caller's stream). LINA_CUDA_DELTA_SEGS
 * if set (at most 8), else 4 when the states pass leaves the multiprocessors room (one block or
 * fewer each) and the sequences have >= 64 chunks, else 1. */
int lina_cuda_delta_segments(int64_t n_seqs, int HV, int K, int V, int max_chunks);
/* Only the WY kernel of the delta path (W, U into p->wy_w, p->wy_u). */
int lina_cuda_delta_wy(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream);
/* One pass over the sequence with the state in registers (attn_chunk_fused_mma.cu):
 * 16-bit, gates NONE / CONST / SCALAR, additive (segments: p->n_segs, p->seg_chunks,
 * p->seg_state, p->seg_logdecay) or delta (WY first; p->wy_w, p->wy_u), K <= 128. */
int lina_cuda_chunk_fused_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream);
/* Segments per sequence for the additive one-pass kernel: LINA_CUDA_FUSED_SEGS if set, else
 * enough for ~2 blocks per multiprocessor (segments of >= 16 chunks). */
int lina_cuda_fused_segments(int64_t n_seqs, int HV, int V, int max_chunks);
/* The delta rule has no segments: the one-pass kernel only with >= 1.5 blocks per
 * multiprocessor (1), else the split kernels are faster (0; runs 13-16: 1.49 vs 1.74 ms). */
int lina_cuda_fused_delta_ok(int64_t n_seqs, int HV, int V);
/* Additive update with VECTOR gates (GLA), 16-bit inputs: states and outputs
 * with per-key-dim decays (attn_chunk_vec_mma.cu); opt-in, LINA_CUDA_VECTOR_IMPL=chunk. */
int lina_cuda_chunk_vec_mma_forward(const lina_cuda_attn_params *p, lina_dtype dtype, void *stream);
/* Backward: the forward sweep writes checkpoints (p->f.ckpt), then the reverse sweep
 * recomputes each stretch of LINA_CUDA_CKPT_EVERY states from its checkpoint and walks it
 * backwards; dq/dk are accumulated in fp32 (converted by lina_cuda_convert_f32). */
static inline int lina_cuda_bwd_rows_per_thread(int K) { /* registers per thread per state: K / 8, rounded up */
    const int rows = (K + 7) / 8;
    return rows <= 8 ? 8 : rows <= 16 ? 16 : 32;
}
int lina_cuda_recurrent_backward(const lina_cuda_attn_bwd_params *p, lina_dtype dtype, void *stream);
/* Additive update, gates NONE / CONST / SCALAR, HV == H: gradients from three chunkwise
 * forward runs (attn_chunk_add_bwd.cu); the arguments are validated by the caller. */
lina_status lina_cuda_chunk_add_backward(const lina_attn_desc *d, lina_dtype dtype, const lina_cuda_attn_bwd_args *a,
                                         void *stream);
/* Chunkwise backward on cuBLAS batched GEMMs, every gate and update (attn_chunk_blas.cu);
 * validated by the caller. Groups of sequences within a workspace budget; LINA_ERR_OOM if a
 * group's workspace (about 1 MB per 64-token chunk and value head at K = V = 128) cannot be
 * allocated. */
lina_status lina_cuda_chunk_blas_backward(const lina_attn_desc *d, lina_dtype dtype, const lina_cuda_attn_bwd_args *a,
                                           void *stream);
/* Forward on the same machinery (cuBLAS batched GEMMs, fp32 or TF32): every gate and
 * update; used for KDA (VECTOR + delta), fp32 delta rules and fp32 VECTOR gates. */
lina_status lina_cuda_chunk_blas_forward(const lina_attn_desc *d, lina_dtype dtype, const lina_cuda_attn_fwd_args *a,
                                         void *stream);
/* Multiprocessors of the current device (132 if it cannot be queried). */
int lina_cuda_sm_count(void);
/* Side streams of the current device for fork/join schedules inside one call: two streams
 * (hi at the device's highest priority, lo at its lowest) and a pool of events, created once
 * per device. acquire returns them locked (release after the last record/wait) or NULL if
 * they cannot be created (the caller then runs everything on its own stream). */
typedef struct {
    void *hi, *lo;     /* cudaStream_t */
    void *events[32];  /* cudaEvent_t, timing disabled */
} lina_cuda_side_streams;
const lina_cuda_side_streams *lina_cuda_side_streams_acquire(void);
void lina_cuda_side_streams_release(void);
/* dst[i] = (dtype) src[i], i < n. */
int lina_cuda_convert_f32(const float *src, void *dst, size_t n, lina_dtype dtype, void *stream);
/* Shared memory bytes the chunk kernel needs for this shape, or 0 if no
 * configuration fits in the device's shared memory (set *value_tile). */
size_t lina_cuda_chunk_smem(const lina_cuda_attn_params *p, lina_dtype dtype, int max_smem,
                            int *value_tile, int *chunk);
#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
/* Chunk i (over all sequences) of the split kernels: first token and length. */
__device__ __forceinline__ void chunk_range(const lina_cuda_attn_params &p, int i, int64_t *start, int *len) {
    const int C = LINA_CUDA_SPLIT_CHUNK;
    if (p.chunk_tab) {
        *start = p.chunk_tab[2 * (int64_t)i];
        *len = (int)p.chunk_tab[2 * (int64_t)i + 1];
    } else {
        const int nc = (p.T + C - 1) / C, n = i / nc, c = i % nc;
        *start = (int64_t)n * p.T + (int64_t)c * C;
        *len = min(C, p.T - c * C);
    }
}
/* Global index of the j-th chunk of a chunk-parallel launch: j itself, or with a chunk window
 * (p.win_nc > 0, equal-length sequences) chunk win_c0 + j % win_nc of sequence j / win_nc. */
__device__ __forceinline__ int window_chunk(const lina_cuda_attn_params &p, int j) {
    if (p.win_nc == 0) return j;
    const int nc = (p.T + LINA_CUDA_SPLIT_CHUNK - 1) / LINA_CUDA_SPLIT_CHUNK;
    return (j / p.win_nc) * nc + p.win_c0 + j % p.win_nc;
}
#endif
/* Chunks a chunk-parallel launch covers (see window_chunk). */
static inline int64_t lina_cuda_launch_chunks(const lina_cuda_attn_params *p) {
    return p->win_nc ? (int64_t)p->n_seqs * p->win_nc : p->n_chunks;
}

#endif
