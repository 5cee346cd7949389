/* Chunkwise delta rule, forward (math in attn_chunk_delta.h). Per chunk:
 *   prep (state-independent): b, Qg, Kg, Kd, M, Mq, L, X = [W | Ut] (blocked solve)
 * then per column block [v0, v1) of V (the sweep's step, attn_chunk_delta_sweep.c):
 *   U   = Ut - W S                 (n, V) pseudo-values
 *   O   = scale (Qg S + Mq U)      (n, V), written in place with stride so
 *   S  <- Gam_last S + Kd^T U      (K, V)
 * On one thread chunk by chunk; on inner threads the preps of later chunks
 * run beside the column blocks of earlier ones. */
#include <string.h>

#include "attn_chunk_delta.h"

typedef struct {
    int C;
    float *S; /* (K, V) running state */
} fwd_sweep;

static size_t slot_floats(const lina_attn_job *j) { return cd_chunk_floats(j, cd_chunk_rows(j), 0); }

size_t cd_forward_floats(const lina_attn_job *j) {
    return cd_round((size_t)j->K * j->V) + (size_t)cd_sweep_slots(j, 0) * slot_floats(j);
}

static int chunk_len(const lina_attn_job *j, int C, int i) {
    return j->T - i * C < C ? j->T - i * C : C;
}

static void fwd_prep(const cd_sweep *s, int i, float *slot) {
    const fwd_sweep *f = s->arg;
    cd_chunk c;
    cd_chunk_carve(s->j, f->C, 0, &c, slot);
    c.keys_only = s->j->o == NULL; /* Mq only serves the output */
    cd_prep(s->j, &c, i * f->C, chunk_len(s->j, f->C, i));
}

static void fwd_step(const cd_sweep *s, int i, int v0, int v1, float *slot) {
    const lina_attn_job *j = s->j;
    const fwd_sweep *f = s->arg;
    int K = j->K, V = j->V, t0 = i * f->C, n = chunk_len(j, f->C, i), w = v1 - v0;
    cd_chunk c;
    cd_chunk_carve(j, f->C, 0, &c, slot);
    cd_pseudo_values(j, &c, n, f->S, v0, v1);
    if (j->o) {
        float *o = j->o + (ptrdiff_t)t0 * j->so + v0;
        cd_gemm(0, 0, n, w, K, j->scale, c.Qg, K, f->S + v0, V, 0.0f, o, j->so);
        cd_gemm_tri(0, n, w, j->scale, c.Mq, c.C, c.U + v0, V, 1.0f, o, j->so);
    }
    cd_state_update(j, &c, n, f->S, v0, v1);
}

void lina_chunk_delta_forward(const lina_attn_job *j) {
    size_t kv = (size_t)j->K * j->V;
    fwd_sweep f = {cd_chunk_rows(j), j->ws};
    if (j->h0) memcpy(f.S, j->h0, sizeof(float) * kv);
    else memset(f.S, 0, sizeof(float) * kv);
    cd_sweep s = {j, 0, fwd_prep, fwd_step, NULL, &f};
    cd_sweep_run(&s, j->ws + cd_round(kv), slot_floats(j));
    if (j->ht) memcpy(j->ht, f.S, sizeof(float) * kv);
}
