/* Chunkwise delta rule, backward (math in attn_chunk_delta.h).
 *
 * Pass 1 recomputes the state at every chunk start (n_chunks x (K, V)); pass 2
 * walks the chunks in reverse, recomputes the chunk's prep (M, Mq, L, X, ...)
 * and carries dS = dL/dS_n (the state after the chunk) back to dL/dS_0. With
 * dO' = scale dO and X = [W | Ut] = (I + L)^-1 B, B = diag(beta) [Kg | V]:
 *   U    = Ut - W S_0
 *   dU   = Kd dS + Mq^T dO'             (n, V)  (S_n = .. + Kd^T U,  O = .. + Mq U)
 *   dKd  = U dS^T                        (n, K)
 *   dQg  = dO' S_0^T                     (n, K)
 *   dMq  = tril(dO' U^T)                 (n, n)
 *   dW   = -dU S_0^T,  dUt = dU          (U = Ut - W S_0)
 *   dS_0 = Gam_last dS + Qg^T dO' - W^T dU
 *   dB   = (I + L)^-T [dW | dUt]         (cd_solve_transposed)
 *   dL   = -tril(dB X^T, -1)
 *   dbeta_r = dB_r . [Kg_r | v_r] + sum_s dL_rs M_rs
 *   dKg  = diag(beta) dB[:, :K],  dV = diag(beta) dB[:, K:],  dM = diag(beta) dL
 * Then the scores backward (cd_scores_backward) and the gated copies:
 *   dq  += dQg o gam,  dk(row role) += dKg o gam,  dk(column role) += dKd o dec
 * Gate gradient w.r.t. the cumulative b (elementwise; summed over K for SCALAR):
 *   db_r     = q_r dq_r + k_r dkp_r - k_r dkn_r
 *   db_last += sum_r k_r (dKd o dec)_r + gl o rowsum(dS o S_0)
 * and dg_s = sum_{r >= s} db_r (b is a chunk-local cumulative sum).
 *
 * As sweeps (attn_chunk_delta_sweep.c): pass 1 (forward order) the states by
 * column blocks; pass 2 (reverse) preps each chunk, runs the dS recurrence by
 * column blocks (U, dU and dS_0 are column by column), then the rest of the
 * chunk's backward as post work, which needs only S_0, the dS after the chunk
 * (kept in the slot), U and dU. */
#include <string.h>

#include "attn_chunk_delta.h"

/* Per chunk in flight (one slot of the sweep, after its cd_chunk buffers). */
typedef struct {
    float *dSa;         /* (K, V): gradient w.r.t. the state after the chunk */
    float *dX;          /* (C, K + V): [dW | dU], then dB */
    float *dQg, *dKd, *dKg;      /* (C, K) */
    float *dMq, *dM;             /* (C, C) */
    float *dq, *dkp, *dkn;       /* (C, K): dq, dk (row role), dk (column role) of the chunk */
    float *diag;                 /* (C): diagonal of dMq */
    double *acc;                 /* (K) running gate gradient, reverse cumulative sum */
} bwd_bufs;

static size_t bwd_layout(const lina_attn_job *j, int C, bwd_bufs *w, float *base) {
    size_t K = j->K, V = j->V, kv = K * V, CC = (size_t)C * C, at = 0;
#define PIECE(field, count)                                                                        \
    do {                                                                                           \
        if (base) w->field = (void *)(base + at);                                                  \
        at += cd_round(count);                                                                     \
    } while (0)
    PIECE(dSa, kv);
    PIECE(dX, C * (K + V));
    PIECE(dQg, C * K);
    PIECE(dKd, C * K);
    PIECE(dKg, C * K);
    PIECE(dMq, CC);
    PIECE(dM, CC);
    PIECE(dq, C * K);
    PIECE(dkp, C * K);
    PIECE(dkn, C * K);
    PIECE(diag, C);
    PIECE(acc, 2 * K);
#undef PIECE
    return at;
}

static size_t slot_floats(const lina_attn_job *j) {
    int C = cd_chunk_rows(j);
    return cd_chunk_floats(j, C, 1) + bwd_layout(j, C, NULL, NULL);
}

static int n_chunks_of(const lina_attn_job *j) {
    int C = cd_chunk_rows(j);
    return (j->T + C - 1) / C;
}

/* states (n_chunks, K, V), the running state / dS (K, V), then the slots. */
size_t cd_backward_floats(const lina_attn_job *j) {
    size_t kv = (size_t)j->K * j->V;
    return cd_round((size_t)n_chunks_of(j) * kv) + cd_round(kv) +
           (size_t)cd_sweep_slots(j, 1) * slot_floats(j);
}

/* Columns [v0, v1) of U = Ut - W S_0 (into c->U), dU = Kd dS + scale Mq^T dO
 * (into w->dX + K), dS saved into w->dSa, and the running dS <- dS_0 =
 * Gam_last dS + scale Qg^T dO - W^T dU. */
static void chunk_dstate_step(const lina_attn_job *j, cd_chunk *c, bwd_bufs *w, int t0, int n,
                              const float *S0, float *dS, int v0, int v1) {
    int K = j->K, V = j->V, C = c->C, P = K + V, cols = v1 - v0;
    const float *dout = j->dout + (ptrdiff_t)t0 * j->sdo + v0;
    float sc = j->scale, *dU = w->dX + K + v0;
    cd_pseudo_values(j, c, n, S0, v0, v1);
    cd_gemm(0, 0, n, cols, K, 1.0f, c->Kd, K, dS + v0, V, 0.0f, dU, P);
    cd_gemm_tri(1, n, cols, sc, c->Mq, C, dout, j->sdo, 1.0f, dU, P);
    int vec = j->gate == LINA_GATE_VECTOR;
    float a = j->gate == LINA_GATE_SCALAR ? c->gl[0] : 1.0f;
    for (int kk = 0; kk < K; kk++) {
        float *restrict ds = dS + (size_t)kk * V + v0, *restrict sa = w->dSa + (size_t)kk * V + v0;
        float ak = vec ? c->gl[kk] : a;
#pragma omp simd
        for (int x = 0; x < cols; x++) sa[x] = ds[x], ds[x] *= ak;
    }
    cd_gemm(1, 0, K, cols, n, sc, c->Qg, K, dout, j->sdo, 1.0f, dS + v0, V);
    cd_gemm(1, 0, K, cols, n, -1.0f, c->X, P, dU, P, 1.0f, dS + v0, V);
}

/* With U and dU from chunk_dstate_step and dS = w->dSa: dKd, dQg, dMq, dW,
 * dB, dL, dbeta, dV, dKg, dM. */
static void chunk_backward_wy(const lina_attn_job *j, cd_chunk *c, bwd_bufs *w, int t0, int n,
                              const float *S0) {
    int K = j->K, V = j->V, C = c->C, P = K + V;
    const float *dout = j->dout + (ptrdiff_t)t0 * j->sdo;
    float sc = j->scale, *dU = w->dX + K, *dW = w->dX;
    /* dKd = U dS^T, dQg = scale dO S_0^T, dMq = scale dO U^T (lower), dW = -dU S_0^T */
    cd_gemm(0, 1, n, K, V, 1.0f, c->U, V, w->dSa, V, 0.0f, w->dKd, K);
    cd_gemm(0, 1, n, K, V, sc, dout, j->sdo, S0, V, 0.0f, w->dQg, K);
    cd_gemm_lower_out(n, V, sc, dout, j->sdo, c->U, V, w->dMq, C);
    cd_gemm(0, 1, n, K, V, -1.0f, dU, P, S0, V, 0.0f, dW, P);
    for (int r = 0; r < n; r++)
        for (int s = r + 1; s < n; s++) w->dMq[(size_t)r * C + s] = 0.0f;
    /* dB = (I + L)^-T [dW | dU];  dL = -dB X^T (strictly lower, into dM) */
    cd_solve_transposed(j, c, n, w->dX);
    cd_gemm_lower_out(n, P, -1.0f, w->dX, P, c->X, P, w->dM, C);
    for (int r = 0; r < n; r++) {
        float beta = j->beta[(ptrdiff_t)(t0 + r) * j->sb];
        const float *restrict db = w->dX + (size_t)r * P, *restrict kg = c->Kg + (size_t)r * K;
        const float *restrict v = cd_v(j, t0 + r), *restrict m = c->M + (size_t)r * C;
        float *restrict dm = w->dM + (size_t)r * C, *restrict dkg = w->dKg + (size_t)r * K;
        float *restrict dv = j->dv + (ptrdiff_t)(t0 + r) * j->sdv;
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int s = 0; s < r; s++) {
            acc += (double)dm[s] * m[s];
            dm[s] *= beta;
        }
        for (int s = r; s < n; s++) dm[s] = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int kk = 0; kk < K; kk++) {
            acc += (double)db[kk] * kg[kk];
            dkg[kk] = beta * db[kk];
        }
#pragma omp simd reduction(+ : acc)
        for (int e = 0; e < V; e++) {
            acc += (double)db[K + e] * v[e];
            dv[e] = beta * db[K + e];
        }
        j->dbeta[(ptrdiff_t)(t0 + r) * j->sdb] = (float)acc;
    }
}

/* dq, dk of the chunk (through scores and gated copies), then dg. */
static void chunk_backward_qkg(const lina_attn_job *j, cd_chunk *c, bwd_bufs *w, int t0, int n,
                               const float *S0) {
    int K = j->K, V = j->V;
    size_t nk = (size_t)n * K;
    memset(w->dq, 0, sizeof(float) * nk);
    memset(w->dkp, 0, sizeof(float) * nk);
    memset(w->dkn, 0, sizeof(float) * nk);
    /* The diagonal Mq_rr = q_r . k_r does not depend on the gates; kept out of
     * the scores backward so that its two equal and opposite gate terms do not
     * leave float rounding in dg (visible when the true dg is tiny). */
    for (int r = 0; r < n; r++) {
        w->diag[r] = w->dMq[(size_t)r * c->C + r];
        w->dMq[(size_t)r * c->C + r] = 0.0f;
    }
    cd_scores_backward(j, c, t0, n, w->dM, w->dMq, w->dq, w->dkp, w->dkn);
    /* gated copies: Qg = q o gam, Kg = k o gam, Kd = k o dec */
    int vec = j->gate == LINA_GATE_VECTOR, gated = j->gate != LINA_GATE_NONE;
    for (int r = 0; r < n; r++) {
        size_t o = (size_t)r * K;
        float *restrict dq = w->dq + o, *restrict dkp = w->dkp + o, *restrict dkd = w->dKd + o;
        const float *restrict dqg = w->dQg + o, *restrict dkg = w->dKg + o;
        if (vec) {
            const float *restrict gam = c->gam + o, *restrict dec = c->dec + o;
#pragma omp simd
            for (int kk = 0; kk < K; kk++) {
                dq[kk] += dqg[kk] * gam[kk];
                dkp[kk] += dkg[kk] * gam[kk];
                dkd[kk] *= dec[kk]; /* now the column-role dk through Kd */
            }
        } else {
            float gam = gated ? c->gam[r] : 1.0f, dec = gated ? c->dec[r] : 1.0f;
#pragma omp simd
            for (int kk = 0; kk < K; kk++) {
                dq[kk] += dqg[kk] * gam;
                dkp[kk] += dkg[kk] * gam;
                dkd[kk] *= dec;
            }
        }
    }
    if (gated) {
        /* db_last seeds: gl o rowsum(dS o S_0) + sum_r k_r o dKd_r, then the
         * reverse cumulative sum of db_r = q dq + k dkp - k dkn - k dKd. */
        double *restrict acc = w->acc; /* (K) per channel; SCALAR sums them */
        for (int kk = 0; kk < K; kk++) {
            const float *restrict ds = w->dSa + (size_t)kk * V, *restrict s0 = S0 + (size_t)kk * V;
            double rs = 0;
#pragma omp simd reduction(+ : rs)
            for (int x = 0; x < V; x++) rs += (double)ds[x] * s0[x];
            acc[kk] = (vec ? c->gl[kk] : c->gl[0]) * rs;
        }
        for (int r = 0; r < n; r++) {
            const float *restrict k = cd_k(j, t0 + r), *restrict dkd = w->dKd + (size_t)r * K;
#pragma omp simd
            for (int kk = 0; kk < K; kk++) acc[kk] += (double)k[kk] * dkd[kk];
        }
        double acc_s = 0;
        if (!vec)
            for (int kk = 0; kk < K; kk++) acc_s += acc[kk];
        for (int r = n - 1; r >= 0; r--) {
            const float *restrict q = cd_q(j, t0 + r), *restrict k = cd_k(j, t0 + r);
            size_t o = (size_t)r * K;
            const float *restrict dq = w->dq + o, *restrict dkp = w->dkp + o;
            const float *restrict dkn = w->dkn + o, *restrict dkd = w->dKd + o;
            float *restrict dg = j->dg + (ptrdiff_t)(t0 + r) * j->sdg;
            if (vec) {
#pragma omp simd
                for (int kk = 0; kk < K; kk++) {
                    acc[kk] += (double)q[kk] * dq[kk] + (double)k[kk] * dkp[kk] -
                               (double)k[kk] * dkn[kk] - (double)k[kk] * dkd[kk];
                    dg[kk] = (float)acc[kk];
                }
            } else {
                double db = 0;
#pragma omp simd reduction(+ : db)
                for (int kk = 0; kk < K; kk++)
                    db += (double)q[kk] * dq[kk] + (double)k[kk] * dkp[kk] -
                          (double)k[kk] * dkn[kk] - (double)k[kk] * dkd[kk];
                acc_s += db;
                dg[0] = (float)acc_s;
            }
        }
    }
    for (int r = 0; r < n; r++) {
        float *restrict dq = j->dq + (ptrdiff_t)(t0 + r) * j->sqk;
        float *restrict dk = j->dk + (ptrdiff_t)(t0 + r) * j->sqk;
        const float *restrict q = cd_q(j, t0 + r), *restrict k = cd_k(j, t0 + r);
        size_t o = (size_t)r * K;
        const float *restrict wdq = w->dq + o, *restrict dkp = w->dkp + o;
        const float *restrict dkn = w->dkn + o, *restrict dkd = w->dKd + o;
        float d = w->diag[r];
#pragma omp simd
        for (int kk = 0; kk < K; kk++) {
            dq[kk] += wdq[kk] + d * k[kk];
            dk[kk] += dkp[kk] + dkn[kk] + dkd[kk] + d * q[kk];
        }
    }
}

typedef struct {
    int C, n_chunks;
    float *states; /* (n_chunks, K, V): state at each chunk start */
    float *run;    /* (K, V): running state (pass 1), then running dS (pass 2) */
} bwd_sweep;

static int chunk_len(const lina_attn_job *j, int C, int i) {
    return j->T - i * C < C ? j->T - i * C : C;
}

/* The slot: its cd_chunk, then its bwd_bufs. */
static void carve_slot(const lina_attn_job *j, int C, float *slot, cd_chunk *c, bwd_bufs *w) {
    bwd_layout(j, C, w, cd_chunk_carve(j, C, 1, c, slot));
}

/* pass 1: W, Ut, Kd of the chunk (no prep for the last one: its state after is not needed) */
static void states_prep(const cd_sweep *s, int i, float *slot) {
    const bwd_sweep *b = s->arg;
    if (i + 1 == b->n_chunks) return;
    cd_chunk c;
    cd_chunk_carve(s->j, b->C, 1, &c, slot);
    c.keys_only = 1, c.backward = 0; /* no Mq, no L^T */
    cd_prep(s->j, &c, i * b->C, chunk_len(s->j, b->C, i));
}

static void states_step(const cd_sweep *s, int i, int v0, int v1, float *slot) {
    const lina_attn_job *j = s->j;
    const bwd_sweep *b = s->arg;
    int V = j->V, n = chunk_len(j, b->C, i);
    float *Si = b->states + (size_t)i * j->K * V;
    for (int kk = 0; kk < j->K; kk++)
        memcpy(Si + (size_t)kk * V + v0, b->run + (size_t)kk * V + v0, sizeof(float) * (v1 - v0));
    if (i + 1 == b->n_chunks) return;
    cd_chunk c;
    cd_chunk_carve(j, b->C, 1, &c, slot);
    cd_pseudo_values(j, &c, n, b->run, v0, v1);
    cd_state_update(j, &c, n, b->run, v0, v1);
}

/* pass 2 */
static void grads_prep(const cd_sweep *s, int i, float *slot) {
    const bwd_sweep *b = s->arg;
    cd_chunk c;
    bwd_bufs w;
    carve_slot(s->j, b->C, slot, &c, &w);
    c.reverse = 1;
    cd_prep(s->j, &c, i * b->C, chunk_len(s->j, b->C, i));
}

static void grads_step(const cd_sweep *s, int i, int v0, int v1, float *slot) {
    const bwd_sweep *b = s->arg;
    cd_chunk c;
    bwd_bufs w;
    carve_slot(s->j, b->C, slot, &c, &w);
    const float *S0 = b->states + (size_t)i * s->j->K * s->j->V;
    chunk_dstate_step(s->j, &c, &w, i * b->C, chunk_len(s->j, b->C, i), S0, b->run, v0, v1);
}

static void grads_post(const cd_sweep *s, int i, float *slot) {
    const lina_attn_job *j = s->j;
    const bwd_sweep *b = s->arg;
    int t0 = i * b->C, n = chunk_len(j, b->C, i);
    cd_chunk c;
    bwd_bufs w;
    carve_slot(j, b->C, slot, &c, &w);
    for (int t = t0 - b->C > 0 ? t0 - b->C : 0; t < t0; t++) /* rows of the chunk done next */
        cd_prefetch_row(j->dout + (ptrdiff_t)t * j->sdo, j->V);
    const float *S0 = b->states + (size_t)i * j->K * j->V;
    chunk_backward_wy(j, &c, &w, t0, n, S0);
    chunk_backward_qkg(j, &c, &w, t0, n, S0);
}

void lina_chunk_delta_backward(const lina_attn_job *j) {
    size_t kv = (size_t)j->K * j->V;
    bwd_sweep b = {cd_chunk_rows(j), n_chunks_of(j), j->ws, NULL};
    b.run = b.states + cd_round((size_t)b.n_chunks * kv);
    float *slots = b.run + cd_round(kv);
    if (j->h0) memcpy(b.run, j->h0, sizeof(float) * kv);
    else memset(b.run, 0, sizeof(float) * kv);
    cd_sweep s1 = {j, 0, states_prep, states_step, NULL, &b};
    cd_sweep_run(&s1, slots, slot_floats(j));
    if (j->dht) memcpy(b.run, j->dht, sizeof(float) * kv);
    else memset(b.run, 0, sizeof(float) * kv);
    cd_sweep s2 = {j, 1, grads_prep, grads_step, grads_post, &b};
    cd_sweep_run(&s2, slots, slot_floats(j));
    if (j->dh0) memcpy(j->dh0, b.run, sizeof(float) * kv);
}
