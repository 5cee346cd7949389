/* Private interface of the chunkwise delta-rule form (attn_chunk_delta*.c).
 *
 * Math of one chunk of n tokens r = 0..n-1 (local indices), state S_0 (K x V)
 * at the chunk start, log-gates cumulated inside the chunk, inclusive:
 *   b_r = g_0 + ... + g_r            (scalar, or a K-vector for VECTOR gates)
 *   Gam_r = diag(e^{b_r})            (Gam_r = e^{b_r} I for SCALAR, I for NONE)
 * Unrolling S_r = G_r S_{r-1} + beta_r k_r (v_r - (G_r S_{r-1})^T k_r)^T gives
 *   S_r = Gam_r (S_0 + sum_{s<=r} Gam_s^-1 k_s u_s^T)
 * with pseudo-values u_r = beta_r (v_r - S_0^T Gam_r k_r - sum_{s<r} M_rs u_s),
 *   M_rs  = k_r^T Gam_r Gam_s^-1 k_s   (s < r)   intra-chunk key scores
 *   Mq_rs = q_r^T Gam_r Gam_s^-1 k_s   (s <= r)  intra-chunk query scores
 * In matrix form (rows = tokens), the WY/UT representation with
 *   L = tril(diag(beta) M, -1),  T = (I + L)^-1 diag(beta):
 *   [W | Ut] = T [Kg | V],  U = Ut - W S_0          (Kg = rows k_r e^{b_r})
 * computed as the unit-lower triangular solve (I + L) X = diag(beta) [Kg | V]
 * by blocks of CD_SUB rows (a GEMM for the rows above the block, substitution
 * inside it), so T is never formed; the backward solves with (I + L)^T the
 * same way.
 *   O  = scale (Qg S_0 + Mq U)                       (Qg = rows q_r e^{b_r})
 *   S_n = Gam_last S_0 + Kd^T U                      (Kd = rows k_r e^{b_last - b_r})
 * Only differences b_r - b_s with s <= r, or b_r alone, are exponentiated:
 * every factor is <= 1 and nothing overflows. For VECTOR gates the scores are
 * built per sub-chunk of CD_SUB rows with the reference point b_ref = b_{I0}
 * (first row of the sub-chunk): e^{b_r - b_s} = e^{b_r - b_ref} e^{b_ref - b_s},
 * both factors <= 1 for s < I0 <= r. The diagonal sub-block uses the same
 * factorization when the gate range inside it is <= CD_SAFE_RANGE (factors
 * within e^{+-60}, far from float limits), else exact per-element exponentials.
 */
#ifndef LINA_ATTN_CHUNK_DELTA_H
#define LINA_ATTN_CHUNK_DELTA_H

#include "attn_internal.h"

#define CD_SUB 16
#define CD_SAFE_RANGE 60.0

/* Buffers of one chunk; C is the chunk capacity (rows), matrices are row-major
 * with leading dimension K, V or C as noted. */
typedef struct {
    int C, backward;
    int keys_only; /* set by the caller: cd_prep may skip Mq (left undefined) */
    int reverse;   /* set by the caller: chunks are visited backwards (prefetch direction) */
    double *b;   /* (C) SCALAR or (C, K) VECTOR: cumulative log-gate b_r */
    float *gam;  /* (C) or (C, K): e^{b_r} */
    float *dec;  /* (C) or (C, K): e^{b_last - b_r} */
    float *gl;   /* (K): e^{b_last} (SCALAR: gl[0]) */
    float *Qg, *Kg, *Kd; /* (C, K): q e^{b_r}, k e^{b_r}, k e^{b_last - b_r} */
    float *E;    /* (C, C) SCALAR: e^{b_r - b_s} for s <= r, else 0 */
    float *KdT;  /* (K, C): Kd transposed */
    float *KT;   /* (K, C) NONE / SCALAR: raw keys transposed */
    float *M;    /* (C, C) strictly lower: M_rs */
    float *Mq;   /* (C, C) lower with diagonal: Mq_rs */
    float *L;    /* (C, C) strictly lower: beta_r M_rs */
    float *LT;   /* (C, C) backward: L transposed */
    float *X;    /* (C, K + V): [W | Ut]; W = X (ld K+V), Ut = X + K (ld K+V) */
    float *U;    /* (C, V): Ut - W S_0 */
    /* VECTOR scratch for one sub-chunk I = [I0, I1) */
    float *Fr;   /* (CD_SUB, K): e^{b_r - b_ref}, r in I */
    float *R;    /* (2 CD_SUB, K): rows [k_r; q_r] * Fr */
    float *Fc;   /* (C, K): e^{b_ref - b_s}, s < cols */
    float *Kc;   /* (C, K): k_s * Fc */
    float *KcT;  /* (K, C): Kc transposed */
    float *Z;    /* (2 CD_SUB, C): [M; Mq] rows of I, or their gradients */
    float *dR;   /* (2 CD_SUB, K) backward: gradient of R */
    float *dKc;  /* (C, K) backward: gradient of Kc */
} cd_chunk;

/* Row-major C = alpha op(A) op(B) + beta C through cblas_sgemm, split along M
 * or N into products of at most 64^3 multiply-adds: above that OpenBLAS (the
 * OpenMP build) spawns its own threads when called outside a parallel region,
 * which costs far more than these small products (and spins on busy cores).
 * The split depends on the shapes only, never on threads. */
void cd_gemm(int ta, int tb, int M, int N, int Kd, float alpha, const float *A, ptrdiff_t lda,
             const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc);

/* C = alpha op(T) B + beta C for T (n, n) lower triangular, op(T) = T (ta = 0)
 * or T^T (ta = 1), B (n, N): the zero triangle of T is skipped (and not read). */
void cd_gemm_tri(int ta, int n, int N, float alpha, const float *T, ptrdiff_t ldt, const float *B,
                 ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc);
/* C = alpha A B^T (A, B: (n, Kd)) where only the lower triangle of the (n, n)
 * result is wanted: C[0:h, h:n] (h = ceil(n/2)) is left unwritten. */
void cd_gemm_lower_out(int n, int Kd, float alpha, const float *A, ptrdiff_t lda, const float *B,
                       ptrdiff_t ldb, float *C, ptrdiff_t ldc);

/* Workspace of the forward and backward drivers (floats). */
size_t cd_forward_floats(const lina_attn_job *j);
size_t cd_backward_floats(const lina_attn_job *j);

/* Chunk capacity for this job: min(j->chunk, T), at least 1. */
int cd_chunk_rows(const lina_attn_job *j);
/* Floats needed by cd_chunk_carve (64-byte aligned pieces). */
size_t cd_chunk_floats(const lina_attn_job *j, int C, int backward);
/* Carve the chunk buffers from ws; returns the first float after them. */
float *cd_chunk_carve(const lina_attn_job *j, int C, int backward, cd_chunk *c, float *ws);
/* Round a float count up to 16 (64 bytes). */
static inline size_t cd_round(size_t n) { return (n + 15) & ~(size_t)15; }

/* Everything that does not depend on the state: b, gam, dec, gl, Qg, Kg, Kd,
 * KdT, E, M, Mq, L (LT), X = [W | Ut] for tokens [t0, t0 + n). */
void cd_prep(const lina_attn_job *j, cd_chunk *c, int t0, int n);
/* Columns [v0, v1) of U = Ut - W S (S: (K, V), U: (n, V) ld V). */
void cd_pseudo_values(const lina_attn_job *j, cd_chunk *c, int n, const float *S, int v0, int v1);
/* Columns [v0, v1) of S <- Gam_last S + Kd^T U. */
void cd_state_update(const lina_attn_job *j, const cd_chunk *c, int n, float *S, int v0, int v1);

/* ---- threads inside one job (attn_chunk_delta_sweep.c) ----
 * The state recurrence S_{i+1} = Gam S_i + Kd^T (Ut - W S_i) and its backward
 * act on each column of S (a column of V) on its own: the state passes run by
 * column blocks, fixed by V alone (never by the thread count), so every
 * product is the same call with 1 or N threads and results are bitwise equal.
 * A sweep visits the chunks of a job in order (or reversed) with three kinds
 * of work per chunk i:
 *   prep(i)        state-independent (the WY part), any order
 *   step(i, v0, v1) the recurrence on columns [v0, v1), in chunk order per block
 *   post(i)        after step(i, every block), independent across chunks
 * One thread runs prep, step (block by block), post chunk by chunk. N threads
 * run rounds of cd_sweep_round() chunks inside one parallel region: round r
 * preps block r, steps block r-1 (one task per column block) and posts block
 * r-2, balanced by dynamic scheduling; slots hold the chunks in flight. */
typedef struct cd_sweep cd_sweep;
struct cd_sweep {
    const lina_attn_job *j;
    int reverse; /* visit chunks from the last to the first */
    void (*prep)(const cd_sweep *s, int i, float *slot);
    void (*step)(const cd_sweep *s, int i, int v0, int v1, float *slot);
    void (*post)(const cd_sweep *s, int i, float *slot); /* NULL: none */
    void *arg;
};

/* Column blocks of V: ceil(V / 64) blocks of equal width rounded up to 8. */
int cd_col_blocks(int V);
void cd_col_range(int V, int cb, int *v0, int *v1);
/* Threads a sweep of this job uses: inner_threads when the job has enough
 * chunks to feed them and LINA_DELTA_INNER_THREADS=1 is set, else 1. */
int cd_sweep_threads(const lina_attn_job *j);
/* Slots a sweep of this job needs (with or without post work). */
int cd_sweep_slots(const lina_attn_job *j, int with_post);
/* Run the sweep; slots: cd_sweep_slots() pieces of slot_floats floats. */
void cd_sweep_run(const cd_sweep *s, float *slots, size_t slot_floats);

/* dX (n, K+V) ld K+V -> (I + L)^-T dX in place (the backward of the solve). */
void cd_solve_transposed(const lina_attn_job *j, const cd_chunk *c, int n, float *dX);

/* Backward of the scores: given dM (strictly lower) and dMq (lower), both
 * (n, n) ld C and overwritten as scratch, accumulate into (n, K) buffers
 *   dq  += dL/dq through Mq,
 *   dkp += dL/dk through the row role of k in M (k_r of M_rs),
 *   dkn += dL/dk through the column role of k in M and Mq (k_s of M_rs, Mq_rs).
 * The split gives the gate gradient: dL/db_r = q_r dq_r + k_r dkp_r - k_r dkn_r
 * (elementwise; summed over K for SCALAR), because d/db_r e^{b_r - b_s} = e^{..}
 * and d/db_s e^{b_r - b_s} = -e^{..}. */
void cd_scores_backward(const lina_attn_job *j, cd_chunk *c, int t0, int n, float *dM, float *dMq,
                        float *dq, float *dkp, float *dkn);

/* e^x for x <= ~0 in plain C that vectorizes (no libm call): x = n ln2 + r
 * with |r| <= ln2/2 (Cody-Waite split of ln2), e^r by its degree-7 Taylor
 * polynomial (truncation < 5e-9), 2^n through the exponent bits. Relative
 * error ~2 ulp; x < -87 (below the normal range) gives 0. */
static inline float cd_expf(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;  /* ln2 = 0.693359375 - 2.12194440e-4 */
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        int i;
        float f;
    } two_n = {((int)n + 127) << 23};
    return x < -87.0f ? 0.0f : p * two_n.f;
}

/* t (cols, rows) ld ldt = a^T, a (rows, cols) ld lda. Plain products of
 * row-major matrices run OpenBLAS's small-matrix kernels; A B^T does not. */
static inline void cd_transpose(const float *a, ptrdiff_t lda, int rows, int cols, float *t,
                                ptrdiff_t ldt) {
    for (int r = 0; r < rows; r++)
        for (int x = 0; x < cols; x++) t[x * ldt + r] = a[r * lda + x];
}

static inline void cd_prefetch_row(const float *x, int floats) {
    for (int f = 0; f < floats; f += 16) __builtin_prefetch(x + f, 0, 2);
}

static inline const float *cd_q(const lina_attn_job *j, int t) { return j->q + (ptrdiff_t)t * j->sqk; }
static inline const float *cd_k(const lina_attn_job *j, int t) { return j->k + (ptrdiff_t)t * j->sqk; }
static inline const float *cd_v(const lina_attn_job *j, int t) { return j->v + (ptrdiff_t)t * j->sv; }

#endif
