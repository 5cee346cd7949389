/* DPLR recurrent form: the readable double-precision reference.
 *   u_t = S_{t-1}^T a_t
 *   S_t = diag(exp(w_t)) S_{t-1} + b_t u_t^T + k_t v_t^T
 *   o_t = scale S_t^T r_t
 */
#include <math.h>
#include <string.h>

#include "dplr_internal.h"

/* S (K x V) <- the state after token t; u (V) scratch. */
static void step(const lina_dplr_job *j, int t, double *S, double *u) {
    int K = j->K, V = j->V;
    const float *k = j->k + t * j->sk, *a = j->a + t * j->sk, *b = j->b + t * j->sk;
    const float *w = j->w + t * j->sk, *v = j->v + t * j->sv;
    for (int c = 0; c < V; c++) u[c] = 0;
    for (int i = 0; i < K; i++)
        for (int c = 0; c < V; c++) u[c] += S[i * V + c] * a[i];
    for (int i = 0; i < K; i++) {
        double decay = exp((double)lina_dplr_w(w[i]));
        for (int c = 0; c < V; c++)
            S[i * V + c] = decay * S[i * V + c] + (double)b[i] * u[c] + (double)k[i] * v[c];
    }
}

/* Backward recomputes states segment by segment from checkpoints every L tokens. */
static int segment_len(int T) {
    int L = (int)ceil(sqrt((double)T));
    return L < 64 ? 64 : L;
}

size_t lina_dplr_recurrent_ws_floats(const lina_dplr_job *j, int backward) {
    size_t kv = (size_t)j->K * j->V, doubles = kv + j->V + 8;
    if (backward) {
        size_t L = segment_len(j->T), segments = ((size_t)j->T + L - 1) / L + 1;
        /* checkpoints, states of one segment, dS, vectors */
        doubles = (segments + L + 1) * kv + 4 * ((size_t)j->K + j->V) + 16;
    }
    return 2 * doubles + 16;
}

void lina_dplr_recurrent_forward(const lina_dplr_job *j) {
    size_t kv = (size_t)j->K * j->V;
    double *S = (double *)j->ws, *u = S + kv;
    for (size_t i = 0; i < kv; i++) S[i] = j->h0 ? j->h0[i] : 0.0;
    for (int t = 0; t < j->T; t++) {
        step(j, t, S, u);
        if (!j->o) continue;
        const float *r = j->r + t * j->sk;
        float *o = j->o + t * j->sv;
        for (int c = 0; c < j->V; c++) {
            double acc = 0;
            for (int i = 0; i < j->K; i++) acc += S[i * j->V + c] * r[i];
            o[c] = (float)(j->scale * acc);
        }
    }
    if (j->ht)
        for (size_t i = 0; i < kv; i++) j->ht[i] = (float)S[i];
}

/* Per token in reverse, dS the gradient w.r.t. S_t, P = S_{t-1}, D = diag(exp(w_t)):
 *   dS += scale r_t dout_t^T            dr_t = scale S_t dout_t
 *   dk_t = dS v_t    dv_t = dS^T k_t    db_t = dS u_t    du = dS^T b_t
 *   da_t = P du      dw_t = exp(w_t) o rowsum(dS o P)
 *   dS_{t-1} = D dS + a_t du^T */
void lina_dplr_recurrent_backward(const lina_dplr_job *j) {
    int K = j->K, V = j->V, T = j->T, L = segment_len(T);
    size_t kv = (size_t)K * V;
    int n_seg = (T + L - 1) / L;
    double *ckpt = (double *)j->ws;                   /* (n_seg, K, V) state before each segment */
    double *states = ckpt + (size_t)(n_seg + 1) * kv; /* (L, K, V) S_t within a segment */
    double *dS = states + (size_t)L * kv;             /* (K, V) */
    double *u = dS + kv, *du = u + V;                 /* V, V */

    double *S = states;
    for (size_t i = 0; i < kv; i++) S[i] = j->h0 ? j->h0[i] : 0.0;
    for (int t = 0; t < T; t++) {
        if (t % L == 0) memcpy(ckpt + (size_t)(t / L) * kv, S, sizeof(double) * kv);
        step(j, t, S, u);
    }
    for (size_t i = 0; i < kv; i++) dS[i] = j->dht ? j->dht[i] : 0.0;

    for (int seg = n_seg - 1; seg >= 0; seg--) {
        int t0 = seg * L, t1 = t0 + L < T ? t0 + L : T;
        const double *prev = ckpt + (size_t)seg * kv;
        for (int t = t0; t < t1; t++) {
            double *St = states + (size_t)(t - t0) * kv;
            memcpy(St, prev, sizeof(double) * kv);
            step(j, t, St, u);
            prev = St;
        }
        for (int t = t1 - 1; t >= t0; t--) {
            const double *St = states + (size_t)(t - t0) * kv;
            const double *P = t == t0 ? ckpt + (size_t)seg * kv : St - kv;
            const float *r = j->r + t * j->sk, *k = j->k + t * j->sk, *a = j->a + t * j->sk;
            const float *b = j->b + t * j->sk, *w = j->w + t * j->sk, *v = j->v + t * j->sv;
            const float *dout = j->dout + t * j->sv;
            float *dr = j->dr + t * j->sk, *dk = j->dk + t * j->sk, *da = j->da + t * j->sk;
            float *db = j->db + t * j->sk, *dw = j->dw + t * j->sk, *dv = j->dv + t * j->sv;
            for (int i = 0; i < K; i++) {
                double acc = 0;
                for (int c = 0; c < V; c++) {
                    acc += St[i * V + c] * dout[c];
                    dS[i * V + c] += (double)j->scale * r[i] * dout[c];
                }
                dr[i] = (float)(j->scale * acc);
            }
            for (int c = 0; c < V; c++) u[c] = du[c] = 0;
            for (int i = 0; i < K; i++)
                for (int c = 0; c < V; c++) {
                    u[c] += P[i * V + c] * a[i];
                    du[c] += dS[i * V + c] * b[i];
                }
            for (int c = 0; c < V; c++) {
                double acc = 0;
                for (int i = 0; i < K; i++) acc += dS[i * V + c] * k[i];
                dv[c] = (float)acc;
            }
            for (int i = 0; i < K; i++) {
                double sk = 0, sb = 0, sa = 0, sw = 0;
                for (int c = 0; c < V; c++) {
                    sk += dS[i * V + c] * v[c];
                    sb += dS[i * V + c] * u[c];
                    sa += P[i * V + c] * du[c];
                    sw += dS[i * V + c] * P[i * V + c];
                }
                double decay = exp((double)lina_dplr_w(w[i]));
                dk[i] = (float)sk;
                db[i] = (float)sb;
                da[i] = (float)sa;
                dw[i] = w[i] < LINA_DPLR_W_FLOOR ? 0.0f : (float)(decay * sw);
                for (int c = 0; c < V; c++) dS[i * V + c] = decay * dS[i * V + c];
            }
            for (int i = 0; i < K; i++)
                for (int c = 0; c < V; c++) dS[i * V + c] += (double)a[i] * du[c];
        }
    }
    if (j->dh0)
        for (size_t i = 0; i < kv; i++) j->dh0[i] = (float)dS[i];
}
