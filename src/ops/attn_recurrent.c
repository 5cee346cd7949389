/* Recurrent form: the readable reference every other form is tested against.
 * One token at a time, the state S (K x V) held in double precision:
 *   S <- G_t S                           (G_t = exp(g_t), scalar or diagonal)
 *   S <- S + beta_t k_t (v_t - S^T k_t)^T   (DELTA)   |   S <- S + k_t v_t^T   (ADD)
 *   o_t = scale * S^T q_t
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

static void gate_state(const lina_attn_job *j, int t, double *S) {
    if (j->gate == LINA_GATE_SCALAR) {
        double a = exp((double)j->g[t * j->sg]);
        for (int i = 0; i < j->K * j->V; i++) S[i] *= a;
    } else if (j->gate == LINA_GATE_VECTOR) {
        const float *g = j->g + t * j->sg;
        for (int kk = 0; kk < j->K; kk++) {
            double a = exp((double)g[kk]);
            for (int c = 0; c < j->V; c++) S[kk * j->V + c] *= a;
        }
    }
}

/* S += beta k (v - S^T k)^T  or  S += k v^T; u (V) is scratch. */
static void update_state(const lina_attn_job *j, int t, double *S, double *u) {
    const float *k = j->k + t * j->sqk, *v = j->v + t * j->sv;
    int K = j->K, V = j->V;
    if (j->update == LINA_UPDATE_DELTA) {
        double beta = j->beta[t * j->sb];
        for (int c = 0; c < V; c++) u[c] = 0;
        for (int kk = 0; kk < K; kk++)
            for (int c = 0; c < V; c++) u[c] += S[kk * V + c] * k[kk];
        for (int c = 0; c < V; c++) u[c] = beta * (v[c] - u[c]);
        for (int kk = 0; kk < K; kk++)
            for (int c = 0; c < V; c++) S[kk * V + c] += k[kk] * u[c];
    } else {
        for (int kk = 0; kk < K; kk++)
            for (int c = 0; c < V; c++) S[kk * V + c] += (double)k[kk] * v[c];
    }
}

static void output(const lina_attn_job *j, int t, const double *S) {
    const float *q = j->q + t * j->sqk;
    float *o = j->o + t * j->so;
    for (int c = 0; c < j->V; c++) {
        double acc = 0;
        for (int kk = 0; kk < j->K; kk++) acc += S[kk * j->V + c] * q[kk];
        o[c] = (float)(j->scale * acc);
    }
}

/* The backward recomputes states segment by segment from checkpoints taken
 * every L = max(64, sqrt(T)) tokens: O(T K V) time, O(sqrt(T) K V) memory. */
static int segment_len(int T) {
    int L = (int)ceil(sqrt((double)T));
    return L < 64 ? 64 : L;
}

size_t lina_recurrent_ws_floats(const lina_attn_job *j, int backward) {
    size_t kv = (size_t)j->K * j->V, doubles = kv + j->V + 8;
    if (backward) {
        size_t L = segment_len(j->T), segments = ((size_t)j->T + L - 1) / L + 1;
        /* checkpoints, states of one segment, dS, A (gated previous state), vectors */
        doubles = (segments + L + 2) * kv + 4 * ((size_t)j->K + j->V) + 16;
    }
    return 2 * doubles + 16; /* in floats */
}

void lina_recurrent_forward(const lina_attn_job *j) {
    size_t kv = (size_t)j->K * j->V;
    double *S = (double *)j->ws, *u = S + kv;
    for (size_t i = 0; i < kv; i++) S[i] = j->h0 ? j->h0[i] : 0.0;
    for (int t = 0; t < j->T; t++) {
        gate_state(j, t, S);
        update_state(j, t, S, u);
        if (j->o) output(j, t, S);
    }
    if (j->ht)
        for (size_t i = 0; i < kv; i++) j->ht[i] = (float)S[i];
}

/* A = G_t S_prev: the gated previous state. */
static void gated_copy(const lina_attn_job *j, int t, const double *S_prev, double *A) {
    memcpy(A, S_prev, sizeof(double) * j->K * j->V);
    gate_state(j, t, A);
}

/* Backward through time. With dS the gradient w.r.t. S_t, per token (reverse order):
 *   dS    += scale q_t dout_t^T              dq_t = scale S_t dout_t
 *   ADD:   dk_t = dS v_t,  dv_t = dS^T k_t,  dA = dS
 *   DELTA: u = A^T k, w = beta (v - u), S_t = A + k w^T:
 *          dk_t = dS w + A du,  dw = dS^T k,  dbeta = dw . (v - u),  dv = beta dw,
 *          du = -beta dw,  dA = dS + k du^T
 *   dg_t = sum(dA o A) (SCALAR) or per row (VECTOR);  dS_{t-1} = G_t dA. */
void lina_recurrent_backward(const lina_attn_job *j) {
    int K = j->K, V = j->V, T = j->T, L = segment_len(T);
    size_t kv = (size_t)K * V;
    int n_seg = (T + L - 1) / L;
    double *ckpt = (double *)j->ws;             /* (n_seg, K, V) state before each segment */
    double *states = ckpt + (size_t)(n_seg + 1) * kv; /* (L, K, V) S_t within a segment */
    double *dS = states + (size_t)L * kv;       /* (K, V) */
    double *A = dS + kv;                        /* (K, V) */
    double *u = A + kv, *w = u + V, *dw = w + V, *dk = dw + V; /* V, V, V, K */

    double *S = states; /* forward pass to take checkpoints, using the first state slot */
    for (size_t i = 0; i < kv; i++) S[i] = j->h0 ? j->h0[i] : 0.0;
    for (int t = 0; t < T; t++) {
        if (t % L == 0) memcpy(ckpt + (size_t)(t / L) * kv, S, sizeof(double) * kv);
        gate_state(j, t, S);
        update_state(j, t, S, u);
    }
    for (size_t i = 0; i < kv; i++) dS[i] = j->dht ? j->dht[i] : 0.0;

    for (int seg = n_seg - 1; seg >= 0; seg--) {
        int t0 = seg * L, t1 = t0 + L < T ? t0 + L : T;
        const double *prev = ckpt + (size_t)seg * kv;
        for (int t = t0; t < t1; t++) {
            double *St = states + (size_t)(t - t0) * kv;
            memcpy(St, prev, sizeof(double) * kv);
            gate_state(j, t, St);
            update_state(j, t, St, u);
            prev = St;
        }
        for (int t = t1 - 1; t >= t0; t--) {
            const double *St = states + (size_t)(t - t0) * kv;
            const double *Sp = t == t0 ? ckpt + (size_t)seg * kv : St - kv;
            const float *q = j->q + t * j->sqk, *k = j->k + t * j->sqk, *v = j->v + t * j->sv;
            const float *dout = j->dout + t * j->sdo;
            float *dq = j->dq + t * j->sqk, *dkt = j->dk + t * j->sqk, *dv = j->dv + t * j->sdv;
            for (int a = 0; a < K; a++) {
                double acc = 0;
                for (int c = 0; c < V; c++) {
                    acc += St[a * V + c] * dout[c];
                    dS[a * V + c] += (double)j->scale * q[a] * dout[c];
                }
                dq[a] += (float)(j->scale * acc);
            }
            gated_copy(j, t, Sp, A);
            for (int c = 0; c < V; c++) dw[c] = 0;
            for (int a = 0; a < K; a++)
                for (int c = 0; c < V; c++) dw[c] += dS[a * V + c] * k[a];
            if (j->update == LINA_UPDATE_DELTA) {
                double beta = j->beta[t * j->sb], dbeta = 0;
                for (int c = 0; c < V; c++) u[c] = 0;
                for (int a = 0; a < K; a++)
                    for (int c = 0; c < V; c++) u[c] += A[a * V + c] * k[a];
                for (int c = 0; c < V; c++) {
                    w[c] = beta * (v[c] - u[c]);
                    dbeta += dw[c] * (v[c] - u[c]);
                    dv[c] = (float)(beta * dw[c]);
                    u[c] = -beta * dw[c]; /* u now holds du */
                }
                j->dbeta[t * j->sdb] = (float)dbeta;
                for (int a = 0; a < K; a++) {
                    double acc = 0;
                    for (int c = 0; c < V; c++) acc += dS[a * V + c] * w[c] + A[a * V + c] * u[c];
                    dk[a] = acc;
                }
                for (int a = 0; a < K; a++)
                    for (int c = 0; c < V; c++) dS[a * V + c] += k[a] * u[c]; /* dS is now dA */
            } else {
                for (int a = 0; a < K; a++) {
                    double acc = 0;
                    for (int c = 0; c < V; c++) acc += dS[a * V + c] * v[c];
                    dk[a] = acc;
                }
                for (int c = 0; c < V; c++) dv[c] = (float)dw[c];
            }
            for (int a = 0; a < K; a++) dkt[a] += (float)dk[a];
            if (j->gate == LINA_GATE_SCALAR) {
                double acc = 0;
                for (size_t i = 0; i < kv; i++) acc += dS[i] * A[i];
                j->dg[t * j->sdg] = (float)acc;
            } else if (j->gate == LINA_GATE_VECTOR) {
                float *dg = j->dg + t * j->sdg;
                for (int a = 0; a < K; a++) {
                    double acc = 0;
                    for (int c = 0; c < V; c++) acc += dS[a * V + c] * A[a * V + c];
                    dg[a] = (float)acc;
                }
            }
            gate_state(j, t, dS); /* dS_{t-1} = G_t dA */
        }
    }
    if (j->dh0)
        for (size_t i = 0; i < kv; i++) j->dh0[i] = (float)dS[i];
}
