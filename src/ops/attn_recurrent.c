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

size_t lina_recurrent_ws_floats(const lina_attn_job *j, int backward) {
    /* doubles count twice: state S and u; the backward adds dS, dS_prev and
     * one state checkpoint per chunk of the sequence. */
    size_t kv = (size_t)j->K * j->V;
    size_t doubles = kv + j->V + 8;
    if (backward) {
        size_t segments = ((size_t)j->T + j->chunk - 1) / j->chunk + 1;
        doubles += 2 * kv + segments * kv + (size_t)j->chunk * kv + 4 * ((size_t)j->K + j->V);
    }
    return 2 * doubles + 16;
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

void lina_recurrent_backward(const lina_attn_job *j) { (void)j; /* TEMPORARY: being written */ }
