/* Chunkwise delta rule, forward (math in attn_chunk_delta.h). Per chunk:
 *   prep (state-independent): b, Qg, Kg, Kd, M, Mq, L, X = [W | Ut] (blocked solve)
 *   U   = Ut - W S                 (n, V) pseudo-values
 *   O   = scale (Qg S + Mq U)      (n, V), written in place with stride so
 *   S  <- Gam_last S + Kd^T U      (K, V)
 * inner_threads is not used: parallel prep of blocks of chunks (the WY part
 * is state-independent) was bitwise identical but 5x slower on the shared
 * 2-core machine, where the waiting OpenMP worker spins against the thread
 * doing the state recurrence. */
#include <string.h>

#include "attn_chunk_delta.h"

size_t cd_forward_floats(const lina_attn_job *j) {
    return cd_chunk_floats(j, cd_chunk_rows(j), 0) + cd_round((size_t)j->K * j->V);
}

/* O for the chunk at t0 from the state S before it (c->U already computed). */
static void chunk_output(const lina_attn_job *j, const cd_chunk *c, int t0, int n, const float *S) {
    int K = j->K, V = j->V;
    float *o = j->o + (ptrdiff_t)t0 * j->so;
    cd_gemm(0, 0, n, V, K, j->scale, c->Qg, K, S, V, 0.0f, o, j->so);
    cd_gemm_tri(0, n, V, j->scale, c->Mq, c->C, c->U, V, 1.0f, o, j->so);
}

void lina_chunk_delta_forward(const lina_attn_job *j) {
    int C = cd_chunk_rows(j);
    size_t kv = (size_t)j->K * j->V;
    cd_chunk c;
    float *S = cd_chunk_carve(j, C, 0, &c, j->ws); /* (K, V) running state after the chunk buffers */
    if (j->h0) memcpy(S, j->h0, sizeof(float) * kv);
    else memset(S, 0, sizeof(float) * kv);
    for (int t0 = 0; t0 < j->T; t0 += C) {
        int n = j->T - t0 < C ? j->T - t0 : C;
        cd_prep(j, &c, t0, n);
        cd_pseudo_values(j, &c, n, S);
        if (j->o) chunk_output(j, &c, t0, n, S);
        cd_state_update(j, &c, n, S);
    }
    if (j->ht) memcpy(j->ht, S, sizeof(float) * kv);
}
