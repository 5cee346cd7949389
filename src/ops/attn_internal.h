/* Internal interface between the attention dispatcher (attn.c) and the forms.
 *
 * The dispatcher validates the descriptor, resolves grouped heads, varlen
 * offsets, the CONST gate and the normalization, and hands each form one job
 * per (sequence, value head). A job sees one sequence of T tokens through
 * strided pointers (stride = floats between consecutive tokens), so the
 * [B, T, H, D] layout is used in place, without copies.
 *
 * Gate inside a job: NONE, SCALAR or VECTOR. A CONST gate arrives as SCALAR
 * with sg == 0 (every token reads the same value); its per-token gradient is
 * written to a private dg buffer (stride 1) that the dispatcher sums.
 * Normalization never reaches a job: the dispatcher appends a ones column to v.
 */
#ifndef LINA_ATTN_INTERNAL_H
#define LINA_ATTN_INTERNAL_H

#include <stddef.h>

#include "lina/ops.h"

typedef struct {
    int T, K, V;
    lina_gate gate;     /* NONE, SCALAR or VECTOR */
    lina_update update; /* ADD or DELTA */
    float scale;
    int chunk; /* chunk size for the chunkwise form */

    const float *q, *k; /* token t at q + t*sqk, K contiguous floats */
    ptrdiff_t sqk;
    const float *v; /* token t at v + t*sv, V floats */
    ptrdiff_t sv;
    const float *g; /* SCALAR: g[t*sg]; VECTOR: g + t*sg, K floats */
    ptrdiff_t sg;
    const float *beta; /* beta[t*sb], DELTA only */
    ptrdiff_t sb;
    const float *h0; /* (K, V) or NULL */

    /* forward outputs */
    float *o; /* token t at o + t*so, V floats */
    ptrdiff_t so;
    float *ht; /* (K, V) or NULL */

    /* backward inputs/outputs (backward jobs only) */
    const float *dout; /* like o */
    ptrdiff_t sdo;
    const float *dht; /* (K, V) or NULL */
    float *dq, *dk;   /* ACCUMULATED (+=): value heads of a group share q/k; stride sqk */
    float *dv;        /* written, stride sv_grad */
    ptrdiff_t sdv;
    float *dg; /* written; SCALAR: dg[t*sdg]; VECTOR: dg + t*sdg */
    ptrdiff_t sdg;
    float *dbeta; /* written, dbeta[t*sdb] */
    ptrdiff_t sdb;
    float *dh0; /* written (K, V), or NULL */

    float *ws; /* thread workspace of at least the form's ws_floats() */
    int inner_threads; /* >1: the form may parallelize inside this job (result must not change) */
} lina_attn_job;

/* Each form: workspace size (floats) for a job of this shape, forward, backward.
 * Forms may assume valid input (the dispatcher checked it). */
size_t lina_recurrent_ws_floats(const lina_attn_job *j, int backward);
void lina_recurrent_forward(const lina_attn_job *j);
void lina_recurrent_backward(const lina_attn_job *j);

size_t lina_chunk_add_ws_floats(const lina_attn_job *j, int backward);
void lina_chunk_add_forward(const lina_attn_job *j);
void lina_chunk_add_backward(const lina_attn_job *j);
/* Forward of n heads of one sequence in lock-step, chunk by chunk (one thread,
 * bitwise equal to n single-thread jobs); workspace jobs[0].ws of
 * lina_chunk_add_heads_ws_floats(shape, n) floats. */
size_t lina_chunk_add_heads_ws_floats(const lina_attn_job *j, int n);
void lina_chunk_add_forward_heads(const lina_attn_job *jobs, int n);

size_t lina_chunk_delta_ws_floats(const lina_attn_job *j, int backward);
void lina_chunk_delta_forward(const lina_attn_job *j);
void lina_chunk_delta_backward(const lina_attn_job *j);

/* Parallel (quadratic) forms. */
size_t lina_parallel_ws_floats(const lina_attn_job *j, int backward);
void lina_parallel_forward(const lina_attn_job *j);
void lina_parallel_backward(const lina_attn_job *j);

#endif
