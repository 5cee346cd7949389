/* Chunkwise delta rule: the sweep over the chunks of one job, on one thread
 * or on the job's inner threads (the schedule is described in
 * attn_chunk_delta.h). The per-chunk work is the same function call in both
 * cases; only its order and its thread change, so results do not depend on
 * the thread count.
 *
 * Threaded schedule, without barriers: the chunks in flight live in a ring of
 * slots, and every thread loops over "what can be done now", in this order:
 *   step   the next chunk of a column block nobody holds, once it is prepared
 *          (the state recurrence: the critical path);
 *   post   the next chunk whose column blocks are all stepped;
 *   prep   the next chunk, once its slot is free (the chunk n_slots earlier
 *          is finished).
 * A descheduled thread (this machine has 2 cores and many users) stalls only
 * the work that depends on it; the others keep working. A previous version
 * (parallel preps, then the state pass on one thread while the other waited)
 * was 5x slower under load. Jobs with fewer than CD_MIN_THREADED_CHUNKS
 * chunks run on one thread, and so does every job unless
 * LINA_DELTA_INNER_THREADS=1 (see inner_threads_enabled). */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "attn_chunk_delta.h"

#define CD_COL_BLOCK 64 /* widest column block of the state passes */
#ifndef CD_SLOTS_PER_THREAD
#define CD_SLOTS_PER_THREAD 4 /* chunks in flight per thread */
#endif
#ifndef CD_MIN_THREADED_CHUNKS
#define CD_MIN_THREADED_CHUNKS 8 /* fewer chunks: one thread */
#endif
#define CD_MAX_SLOTS 64
#define CD_MAX_COL_BLOCKS ((65536 + CD_COL_BLOCK - 1) / CD_COL_BLOCK)
#define CD_SPINS 64 /* polls with nothing to do before yielding the core */

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

/* Threads the job's shape allows (the workspace is sized for these). */
static int shape_threads(const lina_attn_job *j) {
    if (j->inner_threads <= 1 || n_chunks_of(j) < CD_MIN_THREADED_CHUNKS ||
        cd_col_blocks(j->V) > CD_MAX_COL_BLOCKS)
        return 1;
    return j->inner_threads < CD_MAX_SLOTS / CD_SLOTS_PER_THREAD ? j->inner_threads
                                                                  : CD_MAX_SLOTS / CD_SLOTS_PER_THREAD;
}

/* Opt-in: LINA_DELTA_INNER_THREADS=1. On the shared 2-core machine (load
 * average 6-13 while measured) the threaded sweep was 1.7-2x slower than one
 * thread at B*H = 1, T = 16384, K = V = 128 (docs/BENCHMARKS.md, "delta rule,
 * one long sequence"): the state recurrence is a chain, so a descheduled
 * thread stalls its partner. It was never measured on an idle machine. The
 * switch changes speed only, never results (the tests run both ways). */
static int inner_threads_enabled(void) {
    const char *e = getenv("LINA_DELTA_INNER_THREADS");
    return e && e[0] == '1';
}

int cd_sweep_threads(const lina_attn_job *j) {
    int threads = shape_threads(j);
    return threads > 1 && inner_threads_enabled() ? threads : 1;
}

int cd_sweep_slots(const lina_attn_job *j, int with_post) {
    (void)with_post;
    int threads = shape_threads(j);
    return threads <= 1 ? 1 : CD_SLOTS_PER_THREAD * threads;
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

/* Shared progress of a threaded sweep; positions p = 0 .. n-1 in visiting
 * order, position p in slot p % n_slots. */
typedef struct {
    const cd_sweep *s;
    int n, ncb, n_slots;
    float *slots;
    size_t slot_floats;
    atomic_int next_prep, next_post, finished;
    atomic_int prepped[CD_MAX_SLOTS];   /* position whose prep is complete in the slot */
    atomic_int stepped[CD_MAX_SLOTS];   /* column blocks stepped for that position */
    atomic_int done[CD_MAX_SLOTS];      /* last position finished in the slot */
    atomic_int step_pos[CD_MAX_COL_BLOCKS]; /* next position of each column block */
    atomic_int held[CD_MAX_COL_BLOCKS];     /* a thread is stepping the column block */
} progress;

static float *slot_of(const progress *g, int p) {
    return g->slots + (size_t)(p % g->n_slots) * g->slot_floats;
}

static void finish(progress *g, int p) {
    atomic_store_explicit(&g->done[p % g->n_slots], p, memory_order_release);
    atomic_fetch_add_explicit(&g->finished, 1, memory_order_release);
}

/* Steps of column block cb while its next position is prepared; 1 if any. */
static int try_steps(progress *g, int cb) {
    int expect = 0;
    if (atomic_load_explicit(&g->held[cb], memory_order_relaxed) ||
        !atomic_compare_exchange_strong_explicit(&g->held[cb], &expect, 1, memory_order_acquire,
                                                 memory_order_relaxed))
        return 0;
    int v0, v1, p = atomic_load_explicit(&g->step_pos[cb], memory_order_relaxed), worked = 0;
    cd_col_range(g->s->j->V, cb, &v0, &v1);
    while (p < g->n &&
           atomic_load_explicit(&g->prepped[p % g->n_slots], memory_order_acquire) == p) {
        g->s->step(g->s, chunk_at(g->s, g->n, p), v0, v1, slot_of(g, p));
        int n_stepped =
            atomic_fetch_add_explicit(&g->stepped[p % g->n_slots], 1, memory_order_acq_rel) + 1;
        if (n_stepped == g->ncb && !g->s->post) finish(g, p);
        p++, worked = 1;
    }
    atomic_store_explicit(&g->step_pos[cb], p, memory_order_relaxed);
    atomic_store_explicit(&g->held[cb], 0, memory_order_release);
    return worked;
}

static int try_post(progress *g) {
    int p = atomic_load_explicit(&g->next_post, memory_order_relaxed);
    if (p >= g->n || atomic_load_explicit(&g->prepped[p % g->n_slots], memory_order_acquire) != p ||
        atomic_load_explicit(&g->stepped[p % g->n_slots], memory_order_acquire) != g->ncb ||
        !atomic_compare_exchange_strong_explicit(&g->next_post, &p, p + 1, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return 0;
    g->s->post(g->s, chunk_at(g->s, g->n, p), slot_of(g, p));
    finish(g, p);
    return 1;
}

static int try_prep(progress *g) {
    int p = atomic_load_explicit(&g->next_prep, memory_order_relaxed);
    if (p >= g->n || atomic_load_explicit(&g->done[p % g->n_slots], memory_order_acquire) != p - g->n_slots ||
        !atomic_compare_exchange_strong_explicit(&g->next_prep, &p, p + 1, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return 0;
    g->s->prep(g->s, chunk_at(g->s, g->n, p), slot_of(g, p));
    atomic_store_explicit(&g->stepped[p % g->n_slots], 0, memory_order_relaxed);
    atomic_store_explicit(&g->prepped[p % g->n_slots], p, memory_order_release);
    return 1;
}

static void sweep_threaded(const cd_sweep *s, int n_chunks, int threads, float *slots,
                           size_t slot_floats) {
    progress g; /* ~8 KB, on the calling thread's stack; the team shares it */
    g.s = s, g.n = n_chunks, g.ncb = cd_col_blocks(s->j->V);
    g.n_slots = CD_SLOTS_PER_THREAD * threads;
    g.slots = slots, g.slot_floats = slot_floats;
    atomic_init(&g.next_prep, 0), atomic_init(&g.next_post, 0), atomic_init(&g.finished, 0);
    for (int i = 0; i < g.n_slots; i++) {
        atomic_init(&g.prepped[i], -1), atomic_init(&g.stepped[i], 0);
        atomic_init(&g.done[i], i - g.n_slots); /* free for position i */
    }
    for (int cb = 0; cb < g.ncb; cb++) atomic_init(&g.step_pos[cb], 0), atomic_init(&g.held[cb], 0);
#pragma omp parallel num_threads(threads)
    {
        int idle = 0;
        while (atomic_load_explicit(&g.finished, memory_order_acquire) < g.n) {
            int worked = 0;
            for (int cb = 0; cb < g.ncb; cb++) worked |= try_steps(&g, cb);
            if (!worked && s->post) worked = try_post(&g);
            if (!worked) worked = try_prep(&g);
            if (worked) {
                idle = 0;
            } else if (++idle >= CD_SPINS) {
                sched_yield(); /* let the thread we wait for (or anyone) run */
                idle = 0;
            } else {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            }
        }
    }
}

void cd_sweep_run(const cd_sweep *s, float *slots, size_t slot_floats) {
    int n_chunks = n_chunks_of(s->j), threads = cd_sweep_threads(s->j);
    if (n_chunks == 0) return;
    if (threads <= 1) sweep_serial(s, n_chunks, slots);
    else sweep_threaded(s, n_chunks, threads, slots, slot_floats);
}
