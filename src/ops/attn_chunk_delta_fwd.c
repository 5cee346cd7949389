/* Chunkwise delta rule, forward (math in attn_chunk_delta.h). Per chunk:
 *   prep (state-independent): b, Qg, Kg, Kd, M, Mq, L, X = [W | Ut] (blocked solve)
 *   U   = Ut - W S                 (n, V) pseudo-values
 *   O   = scale (Qg S + Mq U)      (n, V), written in place with stride so
 *   S  <- Gam_last S + Kd^T U      (K, V)
 * With inner_threads > 1 the prep of a block of chunks runs in parallel (one
 * chunk per slot, the same code path per chunk, so results do not depend on
 * the thread count); the state recurrence then walks the block in order. */
#include <string.h>

#include "attn_chunk_delta.h"

#define CD_MAX_SLOTS 32 /* chunks prepared in parallel per block */

static int n_slots(const lina_attn_job *j, int C) {
    int n_chunks = (j->T + C - 1) / C;
    int slots = j->inner_threads > 1 ? 2 * j->inner_threads : 1;
    if (slots > CD_MAX_SLOTS) slots = CD_MAX_SLOTS;
    if (slots > n_chunks) slots = n_chunks;
    return slots < 1 ? 1 : slots;
}

size_t cd_forward_floats(const lina_attn_job *j) {
    int C = cd_chunk_rows(j);
    return (size_t)n_slots(j, C) * cd_chunk_floats(j, C, 0) + cd_round((size_t)j->K * j->V);
}

/* O for the chunk at t0 from the state S before it (c->U already computed). */
static void chunk_output(const lina_attn_job *j, const cd_chunk *c, int t0, int n, const float *S) {
    int K = j->K, V = j->V;
    float *o = j->o + (ptrdiff_t)t0 * j->so;
    cd_gemm(0, 0, n, V, K, j->scale, c->Qg, K, S, V, 0.0f, o, j->so);
    /* Mq is lower triangular: rows [0, h) only need U rows [0, h) */
    int h = (n + 1) / 2;
    cd_gemm(0, 0, h, V, h, j->scale, c->Mq, c->C, c->U, V, 1.0f, o, j->so);
    if (n > h)
        cd_gemm(0, 0, n - h, V, n, j->scale, c->Mq + (size_t)h * c->C, c->C, c->U, V, 1.0f,
                o + (ptrdiff_t)h * j->so, j->so);
}

void lina_chunk_delta_forward(const lina_attn_job *j) {
    int C = cd_chunk_rows(j), slots = n_slots(j, C), K = j->K, V = j->V;
    size_t kv = (size_t)K * V;
    cd_chunk c[CD_MAX_SLOTS];
    float *p = j->ws;
    for (int i = 0; i < slots; i++) p = cd_chunk_carve(j, C, 0, &c[i], p);
    float *S = p; /* (K, V) running state */
    if (j->h0) memcpy(S, j->h0, sizeof(float) * kv);
    else memset(S, 0, sizeof(float) * kv);

    for (int t_block = 0; t_block < j->T; t_block += slots * C) {
        int in_block = (j->T - t_block + C - 1) / C;
        if (in_block > slots) in_block = slots;
#pragma omp parallel for schedule(static, 1) num_threads(j->inner_threads) if (in_block > 1)
        for (int i = 0; i < in_block; i++) {
            int t0 = t_block + i * C, n = j->T - t0 < C ? j->T - t0 : C;
            cd_prep(j, &c[i], t0, n);
        }
        for (int i = 0; i < in_block; i++) {
            int t0 = t_block + i * C, n = j->T - t0 < C ? j->T - t0 : C;
            cd_pseudo_values(j, &c[i], n, S);
            if (j->o) chunk_output(j, &c[i], t0, n, S);
            cd_state_update(j, &c[i], n, S);
        }
    }
    if (j->ht) memcpy(j->ht, S, sizeof(float) * kv);
}
