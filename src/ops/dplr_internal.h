/* Internal interface between the DPLR dispatcher (dplr.c) and its forms.
 * One job per (sequence, head): T tokens seen through strided pointers in the
 * [B, T, H, D] layout (stride = floats between consecutive tokens). */
#ifndef LINA_DPLR_INTERNAL_H
#define LINA_DPLR_INTERNAL_H

#include <stddef.h>

#include "lina/dplr.h"

/* Log-decays below this are read as this: exp(-1000) is 0 either way, and a
 * chunk-local cumulative sum of -1e30 would erase its neighbours' bits. */
#define LINA_DPLR_W_FLOOR (-1000.0f)

typedef struct {
    int T, K, V, chunk;
    float scale;
    const float *r, *k, *a, *b, *w; /* token t at x + t*sk, K floats */
    ptrdiff_t sk;
    const float *v; /* token t at v + t*sv, V floats */
    ptrdiff_t sv;
    const float *h0; /* (K, V) or NULL */
    float *o;        /* like v (forward) or NULL */
    float *ht;       /* (K, V) or NULL */

    /* backward only: dout like v, dht (K, V) or NULL; gradients WRITTEN */
    const float *dout, *dht;
    float *dr, *dk, *da, *db, *dw; /* stride sk */
    float *dv;                     /* stride sv */
    float *dh0;                    /* (K, V) or NULL */

    float *ws; /* at least the form's ws_floats() */
} lina_dplr_job;

static inline float lina_dplr_w(float w) { return w < LINA_DPLR_W_FLOOR ? LINA_DPLR_W_FLOOR : w; }

size_t lina_dplr_recurrent_ws_floats(const lina_dplr_job *j, int backward);
void lina_dplr_recurrent_forward(const lina_dplr_job *j);
void lina_dplr_recurrent_backward(const lina_dplr_job *j);

/* Chunkwise form (dplr_chunk.c forward, dplr_chunk_bwd.c backward). Within a
 * chunk of n <= C tokens starting from state S0, with chunk-local cumulative
 * log-decays G_t = sum_{s<=t} w_s, G'_t = G_{t-1} (G'_1 = 0), GC = G_n:
 *   S_t = e^{G_t} o S0 + sum_{s<=t} e^{G_t - G_s} o (k_s v_s^T + b_s u_s^T)   (o: row scaling)
 *   u_t = sum_{s<t} Aak[t,s] v_s + Aab[t,s] u_s + (a_t o e^{G'_t})^T S0
 * hence, with At = a o e^{G'}, Qt = r o e^{G}, Kc = k o e^{GC-G}, Bc = b o e^{GC-G},
 *   U = (I - Aab)^{-1} (Aak V + At S0)              (forward substitution)
 *   O = scale (Qt S0 + Aqk V + Aqb U)
 *   S_n = e^{GC} o S0 + Kc^T V + Bc^T U
 * where Axy[t,s] = sum_c x_t[c] y_s[c] e^{Gx_t[c] - G_s[c]} over s <= t (qk, qb:
 * Gx = G) or s < t (ak, ab: Gx = G'). Every exponent is <= 0: nothing overflows.
 * The score matrices are summed explicitly within blocks of 16 rows; below
 * them, with R = G_{r-1} at the first row r of the block of t,
 *   e^{Gx_t - G_s} = e^{Gx_t - R} e^{R - G_s}   (both factors <= 1),
 * so those rectangles are GEMMs of decay-scaled rows. Inside the blocks,
 * e^{G'_t - G_s} = e^{G_{t-1} - G_s}: one table E serves all four matrices. */
#define PAIR_BLOCK 16 /* rows of the explicitly summed diagonal blocks of the score matrices */
#define PAIR_TRI(tt) ((tt) * ((tt) + 1) / 2)

typedef struct {
    double *G, *Gp, *GC;     /* (C, K), (C, K), (K): double, so that differences of
                                sums of magnitude ~1000 keep their low bits */
    float *Qt, *At, *Kc, *Bc; /* (C, K) each */
    float *Aqk, *Aqb, *Aak, *Aab; /* (C, C) each, row t, column s */
    float *U;                /* (C, V) */
    float *scratch;          /* (8 C K) for the blocked score matrices */
    float *E;                /* e^{G_t - G_s} for s <= t inside each 16-row block: block b,
                                pair (t, s) at ((b PB(PB+1)/2) + tt(tt+1)/2 + ss) K, tt, ss
                                the rows inside the block (PB = PAIR_BLOCK) */
} lina_dplr_chunk;

int lina_dplr_chunk_rows(const lina_dplr_job *j);
/* Floats of the table E for chunks of C rows. */
size_t lina_dplr_pair_table_floats(size_t C, size_t K);
/* Carve a lina_dplr_chunk out of ws; returns the floats used. */
size_t lina_dplr_chunk_carve(const lina_dplr_job *j, float *ws, lina_dplr_chunk *c);
/* Gates, scaled rows and the four score matrices of rows [t0, t0+n). */
void lina_dplr_chunk_prepare(const lina_dplr_job *j, int t0, int n, lina_dplr_chunk *c);
/* U from S0 (K x V). */
void lina_dplr_chunk_solve_u(const lina_dplr_job *j, int t0, int n, const float *S0, lina_dplr_chunk *c);
/* Forward pass storing the state before each chunk in starts (n_chunks, K, V);
 * S (K, V) scratch ends as the final state. */
void lina_dplr_chunk_start_states(const lina_dplr_job *j, lina_dplr_chunk *c, float *S,
                                  float *starts);
/* Row-major C = alpha op(A) op(B) + beta C. */
void lina_dplr_gemm(int ta, int tb, int M, int N, int Kd, float alpha, const float *A, ptrdiff_t lda,
                    const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc);

size_t lina_dplr_chunk_ws_floats(const lina_dplr_job *j, int backward);
void lina_dplr_chunk_forward(const lina_dplr_job *j);
void lina_dplr_chunk_backward(const lina_dplr_job *j);

#endif
