/* Chunkwise delta rule: the sweep over the chunks of one job, on one thread
 * or on the job's inner threads (the schedule is described in
 * attn_chunk_delta.h). The per-chunk work is the same function call in both
 * cases; only its order and its thread change, so results do not depend on
 * the thread count.
 *
 * The threaded schedule stays inside one parallel region (a barrier per
 * round, no team wake-up per chunk) and gives every thread work in every
 * round: on this 2-core machine an idle OpenMP worker spins against the busy
 * one (a previous version, parallel prep then a serial state pass, was 5x
 * slower under load). Jobs with fewer than CD_MIN_THREADED_CHUNKS chunks run
 * on one thread. */
#include "attn_chunk_delta.h"

#define CD_COL_BLOCK 64             /* widest column block of the state passes */
#define CD_ROUND_PER_THREAD 2       /* chunks per round and thread */
#define CD_MIN_THREADED_CHUNKS 8    /* fewer chunks: one thread */

int cd_col_blocks(int V) { return V <= CD_COL_BLOCK ? 1 : (V + CD_COL_BLOCK - 1) / CD_COL_BLOCK; }

void cd_col_range(int V, int cb, int *v0, int *v1) {
    int nb = cd_col_blocks(V), w = ((V + nb - 1) / nb + 7) / 8 * 8;
    *v0 = cb * w < V ? cb * w : V;
    *v1 = (cb + 1) * w < V ? (cb + 1) * w : V;
}

static int n_chunks_of(const lina_attn_job *j) {
    int C = cd_chunk_rows(j);
    return (j->T + C - 1) / C;
}

int cd_sweep_threads(const lina_attn_job *j) {
    if (j->inner_threads <= 1 || n_chunks_of(j) < CD_MIN_THREADED_CHUNKS) return 1;
    return j->inner_threads;
}

static int round_chunks(int threads) { return CD_ROUND_PER_THREAD * threads; }

int cd_sweep_slots(const lina_attn_job *j, int with_post) {
    int threads = cd_sweep_threads(j);
    if (threads <= 1) return 1;
    /* rounds in flight: prep of r, step of r-1 (and post of r-2) */
    return (with_post ? 3 : 2) * round_chunks(threads);
}

/* Chunk visited at position p of the sweep. */
static int chunk_at(const cd_sweep *s, int n_chunks, int p) {
    return s->reverse ? n_chunks - 1 - p : p;
}

static void sweep_serial(const cd_sweep *s, int n_chunks, float *slot) {
    int V = s->j->V, ncb = cd_col_blocks(V);
    for (int p = 0; p < n_chunks; p++) {
        int i = chunk_at(s, n_chunks, p);
        s->prep(s, i, slot);
        for (int cb = 0; cb < ncb; cb++) {
            int v0, v1;
            cd_col_range(V, cb, &v0, &v1);
            s->step(s, i, v0, v1, slot);
        }
        if (s->post) s->post(s, i, slot);
    }
}

static void sweep_threaded(const cd_sweep *s, int n_chunks, int threads, float *slots,
                           size_t slot_floats) {
    int V = s->j->V, ncb = cd_col_blocks(V), R = round_chunks(threads);
    int n_sets = s->post ? 3 : 2, n_blocks = (n_chunks + R - 1) / R;
    int rounds = n_blocks + (s->post ? 2 : 1);
#define SLOT(p) (slots + (size_t)(((p) / R) % n_sets * R + (p) % R) * slot_floats)
#define BLOCK_LEN(b) ((b) >= 0 && (b) < n_blocks ? ((b) + 1) * R < n_chunks ? R : n_chunks - (b) * R : 0)
#pragma omp parallel num_threads(threads)
    for (int r = 0; r < rounds; r++) {
        int b_step = r - 1, b_post = r - 2;
        int n_step = BLOCK_LEN(b_step) ? ncb : 0;
        int n_post = s->post ? BLOCK_LEN(b_post) : 0, n_prep = BLOCK_LEN(r);
        /* the column-block tasks are the longest: listed first */
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < n_step + n_post + n_prep; task++) {
            if (task < n_step) {
                int v0, v1;
                cd_col_range(V, task, &v0, &v1);
                for (int p = b_step * R; p < b_step * R + BLOCK_LEN(b_step); p++)
                    s->step(s, chunk_at(s, n_chunks, p), v0, v1, SLOT(p));
            } else if (task < n_step + n_post) {
                int p = b_post * R + task - n_step;
                s->post(s, chunk_at(s, n_chunks, p), SLOT(p));
            } else {
                int p = r * R + task - n_step - n_post;
                s->prep(s, chunk_at(s, n_chunks, p), SLOT(p));
            }
        }
    }
#undef SLOT
#undef BLOCK_LEN
}

void cd_sweep_run(const cd_sweep *s, float *slots, size_t slot_floats) {
    int n_chunks = n_chunks_of(s->j), threads = cd_sweep_threads(s->j);
    if (n_chunks == 0) return;
    if (threads <= 1) sweep_serial(s, n_chunks, slots);
    else sweep_threaded(s, n_chunks, threads, slots, slot_floats);
}
