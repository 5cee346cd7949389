/* Chunkwise form of the additive update (DESIGN.md §2), forward and backward:
 *   S_t = G_t S_{t-1} + k_t v_t^T,   o_t = scale S_t^T q_t,
 * gate NONE, SCALAR (a CONST gate arrives as SCALAR with sg == 0) or VECTOR
 * (diagonal over K).
 *
 * Per chunk of L <= C tokens with chunk-local cumulative log-gates
 * b_i = g_0 + ... + g_i (per channel k for VECTOR) and S the state before it:
 *   O      = scale (Q * e^b) S + A V,   A_ij = scale sum_k q_ik k_jk e^{b_ik - b_jk}  (j <= i)
 *   S_next = e^{b_last} S + (K * e^{b_last - b})^T V
 * Cumulative sums are kept in double and only differences are exponentiated:
 * every exponent is <= 0, except in the VECTOR score factorization, whose
 * factors are bounded by e^SPAN_MAX (see vector_factors).
 *
 * Threads: with inner_threads > 1 a job runs in phases: per-chunk state
 * contributions in parallel, a sequential scan over chunk states, then
 * per-chunk outputs (or gradients) in parallel. With one thread the same
 * per-chunk functions run fused in one sequential loop; the arithmetic is the
 * same, so results are bitwise independent of the thread count.
 */
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "attn_internal.h"
#include "gemm_tiles.h"

#define SUB_CHUNK 16  /* VECTOR scores: sub-chunk length when a chunk decays too much */
#define SPAN_MAX 60.0 /* largest log-gate drop a factorized VECTOR score may span */

typedef struct {
    const float *p;
    ptrdiff_t ld;
} cmat; /* a read-only row-major matrix view */

/* Per-thread scratch for one chunk. Kg = K (VECTOR) or 1 (SCALAR). */
typedef struct {
    double *b;        /* (C, Kg) chunk-local cumulative log-gates */
    double *db;       /* (C, Kg) gradient w.r.t. b */
    double *dlast;    /* (Kg) state terms of the gradient w.r.t. b_last */
    float *eb;        /* (C, Kg) e^{b} */
    float *ed;        /* (C, Kg) e^{b_last - b} */
    float *el;        /* (Kg) e^{b_last}: the chunk's decay of the state */
    float *Qg;        /* (C, K) q * e^{b} */
    float *Kd;        /* (C, K) k * e^{b_last - b} */
    float *Qr, *Fr;   /* (C, K) VECTOR scores: q * e^{b - b_r} and the factors e^{b - b_r} */
    float *Kr, *Er;   /* (C, K) VECTOR scores: k * e^{b_r - b} and the factors e^{b_r - b}
                         (whole chunks, SCALAR too: Er = e^{-b}) */
    float *A;         /* (C, C) scores: scaled, decayed, causal-masked */
    float *dA;        /* (C, C) gradient of the scores: dO V^T, then scaled, decayed, masked */
    float *dS;        /* (K, V) a chunk's contribution to a state or state gradient */
    float *dQc, *dKc; /* (C, K) this chunk's contributions to dq, dk */
    float *tmp;       /* (C, max(K, V)) */
    float *ddiag;     /* (C) diagonal of dA */
    float *erow, *erow_lo; /* (C) one row of decays e^{b_i - b_j}; low parts of its exponents */
    double *row, *col; /* (C) SCALAR: sums of G_ij = dA_ij A_ij over j < i (row) and i > j (col) */
    double *inter, *state; /* (C) SCALAR: q_i . dq_inter_i and k_i . dk_state_i */
    int fact_s, fact_e, fact_jend; /* sub-chunk whose VECTOR factors Qr, Fr, Kr, Er hold, or -1 */
    int whole;        /* the chunk's log-gates drop by at most SPAN_MAX (gate_prep) */
    float *pack;      /* (max(K, V), max(C, K)) transposed GEMM operand */
    float *Qc, *Kc;   /* (C, K) the chunk's q, k rows, contiguous */
    float *Vc, *dOc;  /* (C, V) its v, dout rows */
    float *Oc;        /* (C, V) its output (or dv) before it is stored */
} chunk_ws;

/* Workspace layout of one job, shared by ws_floats and the carving below. */
typedef struct {
    int C, nC, Kg, threads;
    size_t states, dstates, decays, chunk; /* floats of each part (chunk: per thread) */
} layout;

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static int gate_width(const lina_attn_job *j) { return j->gate == LINA_GATE_VECTOR ? j->K : 1; }

/* A double exponent as two floats for lina_exp_split: hi = (float)d, lo = d - hi. */
static inline void split(double d, float *hi, float *lo) {
    *hi = (float)d;
    *lo = (float)(d - (double)*hi);
}

/* Carves one thread's chunk scratch from base, or only measures it when base is
 * NULL; returns its size in floats (every part 64-byte aligned). */
static size_t carve_chunk_ws(float *base, int C, int K, int V, int Kg, chunk_ws *w) {
    size_t off = 0, c = (size_t)C, mx = K > V ? K : V, pk = mx * (size_t)(C > K ? C : K);
#define TAKE(n) (off += round16(n), base ? base + off - round16(n) : NULL)
    w->b = (double *)TAKE(2 * c * Kg);
    w->db = (double *)TAKE(2 * c * Kg);
    w->dlast = (double *)TAKE(2 * (size_t)Kg);
    w->row = (double *)TAKE(2 * c);
    w->col = (double *)TAKE(2 * c);
    w->inter = (double *)TAKE(2 * c);
    w->state = (double *)TAKE(2 * c);
    w->eb = TAKE(c * Kg);
    w->ed = TAKE(c * Kg);
    w->el = TAKE((size_t)Kg);
    w->Qg = TAKE(c * K);
    w->Kd = TAKE(c * K);
    w->Qr = TAKE(c * K);
    w->Fr = TAKE(c * K);
    w->Kr = TAKE(c * K);
    w->Er = TAKE(c * K);
    w->A = TAKE(c * c);
    w->dA = TAKE(c * c);
    w->dS = TAKE((size_t)K * V);
    w->dQc = TAKE(c * K);
    w->dKc = TAKE(c * K);
    w->tmp = TAKE(c * mx);
    w->ddiag = TAKE(c);
    w->erow = TAKE(c);
    w->erow_lo = TAKE(c);
    w->pack = TAKE(pk);
    w->Qc = TAKE(c * K);
    w->Kc = TAKE(c * K);
    w->Vc = TAKE(c * V);
    w->dOc = TAKE(c * V);
    w->Oc = TAKE(c * V);
#undef TAKE
    w->fact_s = w->fact_e = w->fact_jend = -1;
    return off;
}

static layout layout_of(const lina_attn_job *j, int backward) {
    layout l;
    l.C = j->chunk > 0 ? j->chunk : 64;
    l.nC = (j->T + l.C - 1) / l.C;
    l.Kg = gate_width(j);
    l.threads = j->inner_threads > 1 ? j->inner_threads : 1;
    size_t kv = (size_t)j->K * j->V;
    /* the fused single-thread forward keeps one state; everything else one per chunk boundary */
    l.states = round16(kv * (backward || l.threads > 1 ? (size_t)l.nC + 1 : 1));
    l.dstates = backward ? round16(kv * ((size_t)l.nC + 1)) : 0;
    l.decays = round16((size_t)l.nC * l.Kg + 1);
    chunk_ws measure;
    l.chunk = carve_chunk_ws(NULL, l.C, j->K, j->V, l.Kg, &measure);
    return l;
}

size_t lina_chunk_add_ws_floats(const lina_attn_job *j, int backward) {
    layout l = layout_of(j, backward);
    return l.states + l.dstates + l.decays + l.chunk * l.threads + 16;
}

/* ---- gates ---- */

/* b, e^{b}, e^{b_last - b}, e^{b_last} of the chunk at t0 (nothing for NONE); when the
 * chunk decays by at most SPAN_MAX (whole), also Er = e^{-b} (C, Kg). */
static void gate_prep(const lina_attn_job *j, int t0, int L, chunk_ws *w, int dir) {
    w->fact_s = -1; /* the VECTOR score factors are stale */
    if (j->gate == LINA_GATE_NONE) return;
    int Kg = gate_width(j);
    /* VECTOR: the rows of the chunk this thread takes next, as load_chunk */
    int C = j->chunk > 0 ? j->chunk : 64, next = dir > 0 ? L : -C;
    int Ln = Kg == 1 ? 0 : dir > 0 ? j->T - (t0 + L) : t0;
    for (int i = 0; i < L; i++) {
        const float *g = j->g + (ptrdiff_t)(t0 + i) * j->sg;
        double *b = w->b + (size_t)i * Kg;
        if (i < Ln)
            for (int c = 0; c < Kg; c += 16) __builtin_prefetch(g + (ptrdiff_t)next * j->sg + c, 0, 2);
        if (i == 0)
            for (int c = 0; c < Kg; c++) b[c] = g[c];
        else
#pragma omp simd
            for (int c = 0; c < Kg; c++) b[c] = b[c - Kg] + g[c];
    }
    const double *last = w->b + (size_t)(L - 1) * Kg;
    size_t n = (size_t)L * Kg;
    w->whole = 1;
    float *lo = w->tmp; /* (L, Kg) low parts of the exponents */
    for (int c = 0; c < Kg; c++) {
        split(last[c], &w->el[c], &lo[c]);
        if (-last[c] > SPAN_MAX) w->whole = 0;
    }
    lina_exp_split(w->el, lo, Kg);
#pragma omp simd
    for (size_t x = 0; x < n; x++) split(w->b[x], &w->eb[x], &lo[x]);
    if (w->whole) { /* e^{b_last - b} = e^{b_last} e^{-b}, with e^{-b} <= e^SPAN_MAX */
#pragma omp simd
        for (size_t x = 0; x < n; x++) w->Er[x] = -w->eb[x]; /* -b split as (-hi, -lo) */
        lina_exp_split(w->eb, lo, n);
#pragma omp simd
        for (size_t x = 0; x < n; x++) lo[x] = -lo[x];
        lina_exp_split(w->Er, lo, n);
        for (int i = 0; i < L; i++)
#pragma omp simd
            for (int c = 0; c < Kg; c++)
                w->ed[(size_t)i * Kg + c] = w->el[c] * w->Er[(size_t)i * Kg + c];
    } else {
        lina_exp_split(w->eb, lo, n);
        for (int i = 0; i < L; i++)
#pragma omp simd
            for (int c = 0; c < Kg; c++) {
                size_t x = (size_t)i * Kg + c;
                split(last[c] - w->b[x], &w->ed[x], &lo[x]);
            }
        lina_exp_split(w->ed, lo, n);
    }
}

/* X (L, K) * f row-wise (SCALAR: f is (L)) or element-wise (VECTOR: f is (L, K)) into
 * out (L, K); without a gate, X itself. */
static cmat gated_rows(const lina_attn_job *j, const float *x, const float *f, int L, float *out) {
    int K = j->K;
    if (j->gate == LINA_GATE_NONE) return (cmat){x, K};
    for (int i = 0; i < L; i++) {
        const float *xi = x + (size_t)i * K;
        float *oi = out + (size_t)i * K;
        if (j->gate == LINA_GATE_VECTOR) {
            const float *fi = f + (size_t)i * K;
#pragma omp simd
            for (int c = 0; c < K; c++) oi[c] = xi[c] * fi[c];
        } else {
#pragma omp simd
            for (int c = 0; c < K; c++) oi[c] = xi[c] * f[i];
        }
    }
    return (cmat){out, K};
}

/* In place: X (L, K) *= f, row-wise or element-wise as above. */
static void scale_rows(const lina_attn_job *j, float *x, const float *f, int L) {
    int K = j->K;
    if (j->gate == LINA_GATE_NONE) return;
    for (int i = 0; i < L; i++) {
        float *xi = x + (size_t)i * K;
        if (j->gate == LINA_GATE_VECTOR)
            for (int c = 0; c < K; c++) xi[c] *= f[(size_t)i * K + c];
        else
            for (int c = 0; c < K; c++) xi[c] *= f[i];
    }
}

/* S_next = diag(el) S_prev + dS over (K, V); any of the three may alias. */
static void state_advance(const lina_attn_job *j, const float *el, const float *S_prev,
                          const float *dS, float *S_next) {
    int K = j->K, V = j->V;
    for (int a = 0; a < K; a++) {
        float d = j->gate == LINA_GATE_NONE ? 1.0f : el[j->gate == LINA_GATE_VECTOR ? a : 0];
#pragma omp simd
        for (int c = 0; c < V; c++)
            S_next[(size_t)a * V + c] = d * S_prev[(size_t)a * V + c] + dS[(size_t)a * V + c];
    }
}

/* ---- intra-chunk scores ---- */

/* VECTOR scores of sub-chunk I = [s, e) against keys [0, jend), with the
 * reference point r = s - 1 (b_r = 0 when s = 0):
 *   A[I, j] = scale (q_I e^{b_I - b_r}) . (k_j e^{b_r - b_j}),
 * exact because the two exponents add up to b_I - b_j. For j < s both factors
 * are <= 1. The diagonal block (j in I) joins when the log-gates drop by at most
 * SPAN_MAX across I, so its key factor stays <= e^SPAN_MAX; then jend = e, else
 * jend = s and the diagonal block is summed directly (vector_diag_*).
 * Fills Qr, Fr on rows [s, e) and Kr, Er on rows [0, jend); returns jend. */
static int vector_factors(const lina_attn_job *j, chunk_ws *w, const float *q, const float *k,
                          int s, int e) {
    int K = j->K;
    if (w->fact_s == s && w->fact_e == e) return w->fact_jend; /* computed for this chunk already */
    const double *br = s ? w->b + (size_t)(s - 1) * K : NULL, *be = w->b + (size_t)(e - 1) * K;
    int diag = 1;
    for (int c = 0; c < K; c++)
        if ((br ? br[c] : 0.0) - be[c] > SPAN_MAX) diag = 0;
    int jend = diag ? e : s;
    size_t r0 = (size_t)s * K, r1 = (size_t)e * K, nk = (size_t)jend * K;
    float *lo = w->tmp; /* low parts of the exponents */
    if (!br) { /* reference before the chunk: e^{b - 0} is e^b, already in eb */
        memcpy(w->Fr, w->eb, sizeof(float) * r1);
        if (!w->whole) { /* (else gate_prep left e^{-b} in Er) */
#pragma omp simd
            for (size_t x = 0; x < nk; x++) split(-w->b[x], &w->Er[x], &lo[x]);
            lina_exp_split(w->Er, lo, nk);
        }
    } else {
        for (int i = s; i < e; i++) {
            const double *bi = w->b + (size_t)i * K;
            float *f = w->Fr + (size_t)i * K, *l = lo + (size_t)(i - s) * K;
#pragma omp simd
            for (int c = 0; c < K; c++) split(bi[c] - br[c], &f[c], &l[c]);
        }
        lina_exp_split(w->Fr + r0, lo, r1 - r0);
        for (int jj = 0; jj < jend; jj++) {
            const double *bj = w->b + (size_t)jj * K;
            float *f = w->Er + (size_t)jj * K, *l = lo + (size_t)jj * K;
#pragma omp simd
            for (int c = 0; c < K; c++) split(br[c] - bj[c], &f[c], &l[c]);
        }
        lina_exp_split(w->Er, lo, nk);
    }
#pragma omp simd
    for (size_t x = r0; x < r1; x++) w->Qr[x] = q[x] * w->Fr[x];
#pragma omp simd
    for (size_t x = 0; x < nk; x++) w->Kr[x] = k[x] * w->Er[x];
    w->fact_s = s, w->fact_e = e, w->fact_jend = jend;
    return jend;
}

/* One sub-chunk per chunk unless the whole chunk decays by more than SPAN_MAX. */
static int vector_sub_len(const lina_attn_job *j, const chunk_ws *w, int L) {
    const double *last = w->b + (size_t)(L - 1) * j->K;
    for (int c = 0; c < j->K; c++)
        if (-last[c] > SPAN_MAX) return SUB_CHUNK;
    return L;
}

/* Diagonal block [s, e) summed term by term: A_ij = scale sum_k q_ik k_jk e^{b_ik - b_jk}. */
static void vector_diag_scores(const lina_attn_job *j, chunk_ws *w, const float *q, const float *k,
                               int s, int e, int C) {
    int K = j->K;
    for (int i = s; i < e; i++)
        for (int jj = s; jj <= i; jj++) {
            const double *bi = w->b + (size_t)i * K, *bj = w->b + (size_t)jj * K;
            const float *qi = q + (ptrdiff_t)i * j->K, *kj = k + (ptrdiff_t)jj * j->K;
            float acc = 0;
            for (int c = 0; c < K; c++) acc += qi[c] * kj[c] * expf((float)(bi[c] - bj[c]));
            w->A[(size_t)i * C + jj] = j->scale * acc;
        }
}

/* Its backward: with M = dA on the block, dq_ik += sum_j M_ij k_jk e^{..}, dk_jk += sum_i M_ij q_ik e^{..}. */
static void vector_diag_backward(const lina_attn_job *j, chunk_ws *w, const float *q,
                                 const float *k, int s, int e, int C) {
    int K = j->K;
    for (int i = s; i < e; i++)
        for (int jj = s; jj <= i; jj++) {
            float m = w->dA[(size_t)i * C + jj];
            const double *bi = w->b + (size_t)i * K, *bj = w->b + (size_t)jj * K;
            const float *qi = q + (ptrdiff_t)i * j->K, *kj = k + (ptrdiff_t)jj * j->K;
            float *dqi = w->dQc + (size_t)i * K, *dkj = w->dKc + (size_t)jj * K;
            for (int c = 0; c < K; c++) {
                float f = m * expf((float)(bi[c] - bj[c]));
                dqi[c] += f * kj[c];
                dkj[c] += f * qi[c];
            }
        }
}

/* Zero the upper triangle of X (L, L), row stride C; SCALAR: scale the rest by e^{b_i - b_j}. */
static void causal_decay_mask(const lina_attn_job *j, const chunk_ws *w, float *X, int L, int C,
                              float factor) {
    for (int i = 0; i < L; i++) {
        float *xi = X + (size_t)i * C;
        if (j->gate == LINA_GATE_SCALAR && w->whole) { /* e^{b_i - b_j} = e^{b_i} e^{-b_j} */
            float ebi = w->eb[i];
#pragma omp simd
            for (int jj = 0; jj <= i; jj++) xi[jj] = xi[jj] * (ebi * w->Er[jj]) * factor;
        } else if (j->gate == LINA_GATE_SCALAR) {
            for (int jj = 0; jj <= i; jj++) split(w->b[i] - w->b[jj], &w->erow[jj], &w->erow_lo[jj]);
            lina_exp_split(w->erow, w->erow_lo, (size_t)i + 1);
            for (int jj = 0; jj <= i; jj++) xi[jj] = xi[jj] * w->erow[jj] * factor;
        } else if (factor != 1.0f) {
            for (int jj = 0; jj <= i; jj++) xi[jj] *= factor;
        }
        for (int jj = i + 1; jj < L; jj++) xi[jj] = 0.0f;
    }
}

/* w->A = the chunk's scores (L, L), row stride C. */
static void chunk_scores(const lina_attn_job *j, chunk_ws *w, const float *q, const float *k, int L,
                         int C) {
    int K = j->K;
    if (j->gate != LINA_GATE_VECTOR) {
        lina_gemm_tri(LINA_TRI_C_LOWER, 0, 1, L, L, K, j->scale, q, j->K, k, j->K, 0.0f, w->A, C,
                      w->pack);
        causal_decay_mask(j, w, w->A, L, C, 1.0f);
        return;
    }
    int sub = vector_sub_len(j, w, L);
    for (int s = 0; s < L; s += sub) {
        int e = s + sub < L ? s + sub : L;
        int jend = vector_factors(j, w, q, k, s, e);
        if (jend > 0)
            lina_gemm_tri(s ? LINA_TRI_NONE : LINA_TRI_C_LOWER, 0, 1, e - s, jend, K, j->scale,
                          w->Qr + (size_t)s * K, K, w->Kr, K, 0.0f,
                           w->A + (size_t)s * C, C, w->pack);
        if (jend == s) vector_diag_scores(j, w, q, k, s, e, C);
    }
    causal_decay_mask(j, w, w->A, L, C, 1.0f);
}

/* Backward of the VECTOR scores: with M = w->dA (scaled, masked), add
 *   dq_I += e^{b_I - b_r} * (M[I, :jend] Kr),   dk_j += e^{b_r - b_j} * (M[I, :jend]^T Qr_I). */
static void vector_scores_backward(const lina_attn_job *j, chunk_ws *w, const float *q,
                                   const float *k, int L, int C) {
    int K = j->K;
    int sub = vector_sub_len(j, w, L);
    for (int s = 0; s < L; s += sub) {
        int e = s + sub < L ? s + sub : L;
        int jend = vector_factors(j, w, q, k, s, e);
        if (jend > 0) {
            lina_gemm_tri(s ? LINA_TRI_NONE : LINA_TRI_A_LOWER, 0, 0, e - s, K, jend, 1.0f,
                          w->dA + (size_t)s * C, C, w->Kr, K, 0.0f,
                           w->tmp, K, w->pack);
#pragma omp simd
            for (size_t x = (size_t)s * K; x < (size_t)e * K; x++)
                w->dQc[x] += w->Fr[x] * w->tmp[x - (size_t)s * K];
            lina_gemm_tri(s ? LINA_TRI_NONE : LINA_TRI_A_UPPER, 1, 0, jend, K, e - s, 1.0f,
                          w->dA + (size_t)s * C, C, w->Qr + (size_t)s * K,
                           K, 0.0f, w->tmp, K, w->pack);
#pragma omp simd
            for (size_t x = 0; x < (size_t)jend * K; x++) w->dKc[x] += w->Er[x] * w->tmp[x];
        }
        if (jend == s) vector_diag_backward(j, w, q, k, s, e, C);
    }
}

/* ---- chunk rows ---- */

/* dst (L, n) contiguous = L rows of n floats at src, row stride ls. Each copied row
 * asks for one row of the chunk this thread takes next (L_next rows from row `next`
 * relative to src), so the strided rows arrive while this chunk computes
 * (measured: -10% forward). */
static void load_rows(const float *src, ptrdiff_t ls, int L, int n, float *dst, ptrdiff_t next,
                      int L_next) {
    for (int i = 0; i < L; i++) {
        if (i < L_next)
            for (int c = 0; c < n; c += 16) __builtin_prefetch(src + (next + i) * ls + c, 0, 2);
        memcpy(dst + (size_t)i * n, src + i * ls, sizeof(float) * n);
    }
}

/* L rows of n floats from src (contiguous) to dst with row stride ld. */
static void store_rows(const float *src, int n, int L, float *dst, ptrdiff_t ld) {
    for (int i = 0; i < L; i++) memcpy(dst + i * ld, src + (size_t)i * n, sizeof(float) * n);
}

/* The chunk's q, k, v (and dout for the backward) into contiguous buffers: the
 * job's rows are H*K or HV*V floats apart, which would alias in L1 across a tile. */
enum { LOAD_Q = 1, LOAD_K = 2, LOAD_V = 4, LOAD_DOUT = 8 };

/* The chunk at t0, and a prefetch of the one after it (dir > 0) or before it (dir < 0). */
static void load_chunk(const lina_attn_job *j, chunk_ws *w, int t0, int L, int which, int dir) {
    int C = j->chunk > 0 ? j->chunk : 64, next = dir > 0 ? L : -C;
    int Ln = dir > 0 ? j->T - (t0 + L) : t0;
    Ln = Ln < 0 ? 0 : Ln < C ? Ln : C;
    if (which & LOAD_Q) load_rows(j->q + (ptrdiff_t)t0 * j->sqk, j->sqk, L, j->K, w->Qc, next, Ln);
    if (which & LOAD_K) load_rows(j->k + (ptrdiff_t)t0 * j->sqk, j->sqk, L, j->K, w->Kc, next, Ln);
    if (which & LOAD_V) load_rows(j->v + (ptrdiff_t)t0 * j->sv, j->sv, L, j->V, w->Vc, next, Ln);
    if (which & LOAD_DOUT)
        load_rows(j->dout + (ptrdiff_t)t0 * j->sdo, j->sdo, L, j->V, w->dOc, next, Ln);
}

/* ---- forward pieces ---- */

/* dS = (K * e^{b_last - b})^T V: the chunk's contribution to the next state. (K, V) */
static void chunk_state_contrib(const lina_attn_job *j, chunk_ws *w, int t0, int L, float *dS) {
    cmat kd = gated_rows(j, w->Kc, w->ed, L, w->Kd);
    lina_gemm_tile(1, 0, j->K, j->V, L, 1.0f, kd.p, kd.ld, w->Vc, j->V, 0.0f,
                   dS, j->V, w->pack);
}

/* The chunk's outputs in two parts, O = A V + scale (Q * e^b) S_prev; the first
 * needs no state. Both leave O in w->Oc; fl(A V + fl(scale Q S)) comes out the
 * same whether the parts meet in Oc (fused) or through the job's o (phased). */
static void chunk_output_intra(const lina_attn_job *j, chunk_ws *w, int L, int C) {
    int V = j->V;
    chunk_scores(j, w, w->Qc, w->Kc, L, C);
    lina_gemm_tri(LINA_TRI_A_LOWER, 0, 0, L, V, L, 1.0f, w->A, C, w->Vc, V, 0.0f, w->Oc, V, w->pack);
}

static void chunk_output_inter(const lina_attn_job *j, chunk_ws *w, int L, const float *S_prev) {
    /* one VECTOR sub-chunk spanning the chunk has its reference at the chunk start: Qr is q e^b */
    cmat qg = w->fact_s == 0 && w->fact_e == L ? (cmat){w->Qr, j->K}
                                                : gated_rows(j, w->Qc, w->eb, L, w->Qg);
    lina_gemm_tile(0, 0, L, j->V, j->K, j->scale, qg.p, qg.ld, S_prev, j->V, 1.0f, w->Oc, j->V,
                   w->pack);
}

typedef struct {
    layout l;
    float *states;  /* (nC + 1, K, V) state before each chunk (fused forward: just one) */
    float *dstates; /* (nC + 1, K, V) gradient w.r.t. each of those states (backward) */
    float *decays;  /* (nC, Kg) e^{b_last} of each chunk */
    float *chunk;   /* threads x chunk_ws */
} job_ws;

static job_ws job_ws_of(const lina_attn_job *j, int backward) {
    job_ws s;
    s.l = layout_of(j, backward);
    s.states = j->ws;
    s.dstates = s.states + s.l.states;
    s.decays = s.dstates + s.l.dstates;
    s.chunk = s.decays + s.l.decays;
    return s;
}

static chunk_ws thread_chunk_ws(const lina_attn_job *j, const job_ws *s, int tid) {
    chunk_ws w;
    carve_chunk_ws(s->chunk + (size_t)tid * s->l.chunk, s->l.C, j->K, j->V, s->l.Kg, &w);
    return w;
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static void chunk_range(const lina_attn_job *j, const layout *l, int n, int *t0, int *L) {
    *t0 = n * l->C;
    *L = j->T - *t0 < l->C ? j->T - *t0 : l->C;
}

/* states[n] for every chunk n (and states[nC], the final state), chunks' decays,
 * in parallel phases: contributions, then a sequential scan. With_intra: the
 * chunks' intra-chunk outputs A V are written to o on the way. */
static void states_phased(const lina_attn_job *j, job_ws *s, int with_intra) {
    size_t kv = (size_t)j->K * j->V;
    const layout *l = &s->l;
#pragma omp parallel for schedule(static) num_threads(l->threads)
    for (int n = 0; n < l->nC; n++) {
        chunk_ws w = thread_chunk_ws(j, s, thread_id());
        int t0, L;
        chunk_range(j, l, n, &t0, &L);
        gate_prep(j, t0, L, &w, 1);
        load_chunk(j, &w, t0, L, with_intra ? LOAD_Q | LOAD_K | LOAD_V : LOAD_K | LOAD_V, 1);
        chunk_state_contrib(j, &w, t0, L, s->states + (size_t)(n + 1) * kv);
        memcpy(s->decays + (size_t)n * l->Kg, w.el, sizeof(float) * l->Kg);
        if (with_intra) {
            chunk_output_intra(j, &w, L, l->C);
            store_rows(w.Oc, j->V, L, j->o + (ptrdiff_t)t0 * j->so, j->so);
        }
    }
    for (int n = 0; n < l->nC; n++)
        state_advance(j, s->decays + (size_t)n * l->Kg, s->states + (size_t)n * kv,
                      s->states + (size_t)(n + 1) * kv, s->states + (size_t)(n + 1) * kv);
}

static void load_state(const float *src, float *dst, size_t n) {
    if (src) memmove(dst, src, sizeof(float) * n);
    else memset(dst, 0, sizeof(float) * n);
}

void lina_chunk_add_forward(const lina_attn_job *j) {
    job_ws s = job_ws_of(j, 0);
    const layout *l = &s.l;
    size_t kv = (size_t)j->K * j->V;
    load_state(j->h0, s.states, kv);
    float *final = s.states;
    if (l->threads <= 1) {
        chunk_ws w = thread_chunk_ws(j, &s, 0);
        for (int n = 0; n < l->nC; n++) {
            int t0, L;
            chunk_range(j, l, n, &t0, &L);
            gate_prep(j, t0, L, &w, 1);
            load_chunk(j, &w, t0, L, LOAD_Q | LOAD_K | LOAD_V, 1);
            chunk_state_contrib(j, &w, t0, L, w.dS);
            if (j->o) {
                chunk_output_intra(j, &w, L, l->C);
                chunk_output_inter(j, &w, L, s.states);
                store_rows(w.Oc, j->V, L, j->o + (ptrdiff_t)t0 * j->so, j->so);
            }
            state_advance(j, w.el, s.states, w.dS, s.states);
        }
    } else {
        /* the intra-chunk outputs go to o with the chunk state contributions */
        states_phased(j, &s, j->o != NULL);
        if (j->o) {
#pragma omp parallel for schedule(static) num_threads(l->threads)
            for (int n = 0; n < l->nC; n++) {
                chunk_ws w = thread_chunk_ws(j, &s, thread_id());
                int t0, L;
                chunk_range(j, l, n, &t0, &L);
                gate_prep(j, t0, L, &w, 1);
                load_chunk(j, &w, t0, L, LOAD_Q, 1);
                float *o = j->o + (ptrdiff_t)t0 * j->so;
                load_rows(o, j->so, L, j->V, w.Oc, 0, 0);
                chunk_output_inter(j, &w, L, s.states + (size_t)n * kv);
                store_rows(w.Oc, j->V, L, o, j->so);
            }
        }
        final = s.states + (size_t)l->nC * kv;
    }
    if (j->ht) memcpy(j->ht, final, sizeof(float) * kv);
}

/* ---- heads in lock-step ---- */

/* Workspace of lina_chunk_add_forward_heads over n jobs of this shape: one chunk
 * scratch shared by the heads, then one (K, V) state per head. */
size_t lina_chunk_add_heads_ws_floats(const lina_attn_job *j, int n) {
    chunk_ws measure;
    size_t C = (size_t)(j->chunk > 0 ? j->chunk : 64);
    return carve_chunk_ws(NULL, (int)C, j->K, j->V, gate_width(j), &measure) +
           round16((size_t)j->K * j->V) * (size_t)n + 16;
}

/* The single-thread fused forward of n jobs (heads of one sequence, equal T and
 * shape), walked chunk by chunk across the heads: chunk c of every head, then
 * chunk c + 1. Neighbouring heads' rows are neighbours in memory, so the group
 * reads whole stretches of each token row instead of one head's slice per pass.
 * Per head the arithmetic is that of lina_chunk_add_forward with one thread, so
 * results are bitwise the same. Workspace: jobs[0].ws, see above. */
void lina_chunk_add_forward_heads(const lina_attn_job *jobs, int n) {
    const lina_attn_job *j0 = &jobs[0];
    size_t kv = (size_t)j0->K * j0->V;
    int C = j0->chunk > 0 ? j0->chunk : 64, nC = (j0->T + C - 1) / C;
    chunk_ws w;
    float *states = j0->ws + carve_chunk_ws(j0->ws, C, j0->K, j0->V, gate_width(j0), &w);
    for (int h = 0; h < n; h++) load_state(jobs[h].h0, states + round16(kv) * h, kv);
    for (int c = 0; c < nC; c++) {
        int t0 = c * C, L = j0->T - t0 < C ? j0->T - t0 : C;
        for (int h = 0; h < n; h++) {
            const lina_attn_job *j = &jobs[h];
            float *S = states + round16(kv) * h;
            gate_prep(j, t0, L, &w, 1);
            load_chunk(j, &w, t0, L, LOAD_Q | LOAD_K | LOAD_V, 1);
            chunk_state_contrib(j, &w, t0, L, w.dS);
            if (j->o) {
                chunk_output_intra(j, &w, L, C);
                chunk_output_inter(j, &w, L, S);
                store_rows(w.Oc, j->V, L, j->o + (ptrdiff_t)t0 * j->so, j->so);
            }
            state_advance(j, w.el, S, w.dS, S);
        }
    }
    for (int h = 0; h < n; h++)
        if (jobs[h].ht) memcpy(jobs[h].ht, states + round16(kv) * h, sizeof(float) * kv);
}

/* ---- backward ---- */

/* dS = scale (Q * e^b)^T dO: the chunk's contribution to the gradient of the state before it. */
static void chunk_dstate_contrib(const lina_attn_job *j, chunk_ws *w, int t0, int L, float *dS) {
    cmat qg = gated_rows(j, w->Qc, w->eb, L, w->Qg);
    lina_gemm_tile(1, 0, j->K, j->V, L, j->scale, qg.p, qg.ld, w->dOc, j->V, 0.0f, dS, j->V, w->pack);
}

/* VECTOR gate gradient of the chunk: per channel, db_i = q_i * dq_i - k_i * dk_i
 * (this chunk's dq, dk), plus the state terms `last` (K) on the last token, then
 * dg_t = sum_{i >= t} db_i. */
static void vector_gate_grad(const lina_attn_job *j, chunk_ws *w, int t0, int L, const double *last) {
    int K = j->K, Kg = K;
    for (int i = 0; i < L; i++) {
        const float *qi = w->Qc + (size_t)i * K, *ki = w->Kc + (size_t)i * K;
        const float *dqi = w->dQc + (size_t)i * K, *dki = w->dKc + (size_t)i * K;
        double *db = w->db + (size_t)i * K;
#pragma omp simd
        for (int c = 0; c < K; c++) db[c] = (double)qi[c] * dqi[c] - (double)ki[c] * dki[c];
    }
    for (int c = 0; c < Kg; c++) w->db[(size_t)(L - 1) * Kg + c] += last[c];
    for (int i = L - 1; i >= 0; i--) {
        double *db = w->db + (size_t)i * Kg;
        float *dg = j->dg + (ptrdiff_t)(t0 + i) * j->sdg;
        if (i < L - 1)
#pragma omp simd
            for (int c = 0; c < Kg; c++) db[c] += db[c + Kg]; /* suffix sums over the chunk */
        for (int c = 0; c < Kg; c++) dg[c] = (float)db[c];
    }
}

/* SCALAR gate gradient, term by term so that nothing cancels needlessly. With
 * G_ij = dA_ij A_ij (j < i; dA the unscaled gradient of the scores), the gradient
 * w.r.t. the log-gate g_t of a token t in the chunk is
 *   dg_t = sum_{i >= t} q_i . dq_inter_i + sum_{j < t} k_j . dk_state_j
 *          + e^{b_last} sum(dSn * S_prev) + sum_{i >= t > j} G_ij
 * (the decays a token's gate enters: outputs at and after it, state
 * contributions before it, score pairs across it). */
static void scalar_pair_terms(chunk_ws *w, int L, int C) {
    for (int i = 0; i < L; i++) w->row[i] = w->col[i] = 0;
    for (int i = 1; i < L; i++) {
        const float *dai = w->dA + (size_t)i * C, *ai = w->A + (size_t)i * C;
        double acc = 0, *col = w->col;
#pragma omp simd reduction(+ : acc)
        for (int jj = 0; jj < i; jj++) {
            double gij = (double)dai[jj] * ai[jj];
            acc += gij;
            col[jj] += gij;
        }
        w->row[i] = acc;
    }
}

static void scalar_token_terms(const lina_attn_job *j, chunk_ws *w, int L) {
    int K = j->K;
    for (int i = 0; i < L; i++) {
        const float *qi = w->Qc + (size_t)i * K, *ki = w->Kc + (size_t)i * K;
        const float *dqi = w->dQc + (size_t)i * K, *dki = w->dKc + (size_t)i * K;
        double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
        for (int c = 0; c < K; c++) {
            a += (double)qi[c] * dqi[c];
            b += (double)ki[c] * dki[c];
        }
        w->inter[i] = a, w->state[i] = b;
    }
}

/* el_term: e^{b_last} sum(dSn * S_prev). */
static void scalar_gate_grad(const lina_attn_job *j, chunk_ws *w, int t0, int L, double el_term) {
    for (int i = L - 2; i >= 0; i--) w->inter[i] += w->inter[i + 1]; /* suffix sums */
    double prefix_state = 0, crossing = 0;
    for (int t = 0; t < L; t++) {
        j->dg[(ptrdiff_t)(t0 + t) * j->sdg] = (float)(w->inter[t] + prefix_state + el_term + crossing);
        prefix_state += w->state[t];
        crossing += w->col[t] - w->row[t];
    }
}

/* All gradients of the chunk at t0 given the state before it (S_prev) and the
 * gradient w.r.t. the state after it (dSn):
 *   dV  = A^T dO + Kd dSn
 *   dA  = scale (dO V^T) masked (SCALAR: * e^{b_i - b_j})
 *   dQ  = scale (dO S_prev^T) * e^{b} + intra(dA),   dK = (V dSn^T) * e^{b_last - b} + intra(dA)
 *   dg  from scalar_gate_grad or vector_gate_grad. dq, dk are accumulated into the job's
 *   buffers (value heads of a group share them). */
static void chunk_grads(const lina_attn_job *j, chunk_ws *w, int t0, int L, int C,
                        const float *S_prev, const float *dSn) {
    int K = j->K, V = j->V;
    const float *q = w->Qc, *k = w->Kc, *v = w->Vc, *dO = w->dOc;
    float *dv = w->Oc; /* (L, V) stored to the job's dv at the end */

    chunk_scores(j, w, q, k, L, C);
    lina_gemm_tri(LINA_TRI_A_UPPER, 1, 0, L, V, L, 1.0f, w->A, C, dO, V, 0.0f, dv, V, w->pack);
    cmat kd = gated_rows(j, k, w->ed, L, w->Kd);
    lina_gemm_tile(0, 0, L, V, K, 1.0f, kd.p, kd.ld, dSn, V, 1.0f, dv, V, w->pack);
    store_rows(dv, V, L, j->dv + (ptrdiff_t)t0 * j->sdv, j->sdv);

    lina_gemm_tri(LINA_TRI_C_LOWER, 0, 1, L, L, V, 1.0f, dO, V, v, V, 0.0f, w->dA, C, w->pack);
    if (j->gate == LINA_GATE_SCALAR) scalar_pair_terms(w, L, C);
    causal_decay_mask(j, w, w->dA, L, C, j->scale);

    lina_gemm_tile(0, 1, L, K, V, j->scale, dO, V, S_prev, V, 0.0f, w->dQc, K, w->pack);
    scale_rows(j, w->dQc, w->eb, L);
    lina_gemm_tile(0, 1, L, K, V, 1.0f, v, V, dSn, V, 0.0f, w->dKc, K, w->pack);
    scale_rows(j, w->dKc, w->ed, L);

    if (j->gate == LINA_GATE_SCALAR) scalar_token_terms(j, w, L);
    if (j->gate != LINA_GATE_NONE) {
        /* state terms of db_last: sum_j k_j . dk_state_j + el * sum(dSn * S_prev), per row
         * (VECTOR; taken before the intra-chunk part joins dKc), or just the latter (SCALAR) */
        int Kg = gate_width(j);
        double *dlast = w->dlast;
        for (int c = 0; c < Kg; c++) dlast[c] = 0;
        if (Kg > 1) { /* (SCALAR: scalar_gate_grad sums these as prefixes) */
            for (int i = 0; i < L; i++) {
                const float *ki = k + (size_t)i * K, *dki = w->dKc + (size_t)i * K;
#pragma omp simd
                for (int c = 0; c < K; c++) dlast[c] += (double)ki[c] * dki[c];
            }
        }
        for (int a = 0; a < K; a++) {
            const float *da = dSn + (size_t)a * V, *sa = S_prev + (size_t)a * V;
            double acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int c = 0; c < V; c++) acc += (double)da[c] * sa[c];
            dlast[Kg == 1 ? 0 : a] += w->el[Kg == 1 ? 0 : a] * acc;
        }
    }

    /* The diagonal of dA (no decay) adds q_i k_i dA_ii to both q_i * dq_i and k_i * dk_i,
     * which cancel in the VECTOR db_i; it joins dq, dk only after db is taken, so that
     * strong decays (tiny true db) do not drown in the rounding of that cancellation. */
    for (int i = 0; i < L; i++) {
        w->ddiag[i] = w->dA[(size_t)i * C + i];
        w->dA[(size_t)i * C + i] = 0.0f;
    }
    if (j->gate == LINA_GATE_VECTOR) {
        vector_scores_backward(j, w, q, k, L, C);
    } else {
        lina_gemm_tri(LINA_TRI_A_LOWER, 0, 0, L, K, L, 1.0f, w->dA, C, k, j->K, 1.0f, w->dQc, K,
                      w->pack);
        lina_gemm_tri(LINA_TRI_A_UPPER, 1, 0, L, K, L, 1.0f, w->dA, C, q, j->K, 1.0f, w->dKc, K,
                      w->pack);
    }
    if (j->gate == LINA_GATE_VECTOR) vector_gate_grad(j, w, t0, L, w->dlast);
    if (j->gate == LINA_GATE_SCALAR) scalar_gate_grad(j, w, t0, L, w->dlast[0]);
    for (int i = 0; i < L; i++) {
        const float *qi = q + (ptrdiff_t)i * j->K, *ki = k + (ptrdiff_t)i * j->K;
        float m = w->ddiag[i];
#pragma omp simd
        for (int c = 0; c < K; c++) {
            w->dQc[(size_t)i * K + c] += m * ki[c];
            w->dKc[(size_t)i * K + c] += m * qi[c];
        }
    }

    for (int i = 0; i < L; i++) {
        float *dq = j->dq + (ptrdiff_t)(t0 + i) * j->sqk, *dk = j->dk + (ptrdiff_t)(t0 + i) * j->sqk;
#pragma omp simd
        for (int c = 0; c < K; c++) {
            dq[c] += w->dQc[(size_t)i * K + c];
            dk[c] += w->dKc[(size_t)i * K + c];
        }
    }
}

/* Backward: recompute the chunk states (states_phased or a fused loop), then walk
 * the chunks backwards carrying dS (the gradient w.r.t. the state after the chunk):
 *   dS_before = diag(e^{b_last}) dS_after + scale (Q * e^b)^T dO. */
void lina_chunk_add_backward(const lina_attn_job *j) {
    job_ws s = job_ws_of(j, 1);
    const layout *l = &s.l;
    size_t kv = (size_t)j->K * j->V;
    load_state(j->h0, s.states, kv);
    load_state(j->dht, s.dstates + (size_t)l->nC * kv, kv);
    if (l->threads <= 1) {
        chunk_ws w = thread_chunk_ws(j, &s, 0);
        for (int n = 0; n < l->nC; n++) {
            int t0, L;
            chunk_range(j, l, n, &t0, &L);
            gate_prep(j, t0, L, &w, 1);
            load_chunk(j, &w, t0, L, LOAD_K | LOAD_V, 1);
            chunk_state_contrib(j, &w, t0, L, w.dS);
            memcpy(s.decays + (size_t)n * l->Kg, w.el, sizeof(float) * l->Kg);
            state_advance(j, w.el, s.states + (size_t)n * kv, w.dS, s.states + (size_t)(n + 1) * kv);
        }
        for (int n = l->nC - 1; n >= 0; n--) {
            int t0, L;
            chunk_range(j, l, n, &t0, &L);
            gate_prep(j, t0, L, &w, -1);
            load_chunk(j, &w, t0, L, LOAD_Q | LOAD_K | LOAD_V | LOAD_DOUT, -1);
            const float *dSn = s.dstates + (size_t)(n + 1) * kv;
            chunk_grads(j, &w, t0, L, l->C, s.states + (size_t)n * kv, dSn);
            chunk_dstate_contrib(j, &w, t0, L, w.dS);
            state_advance(j, w.el, dSn, w.dS, s.dstates + (size_t)n * kv);
        }
    } else {
        states_phased(j, &s, 0);
#pragma omp parallel for schedule(static) num_threads(l->threads)
        for (int n = 0; n < l->nC; n++) {
            chunk_ws w = thread_chunk_ws(j, &s, thread_id());
            int t0, L;
            chunk_range(j, l, n, &t0, &L);
            gate_prep(j, t0, L, &w, 1);
            load_chunk(j, &w, t0, L, LOAD_Q | LOAD_DOUT, 1);
            chunk_dstate_contrib(j, &w, t0, L, s.dstates + (size_t)n * kv);
        }
        for (int n = l->nC - 1; n >= 0; n--)
            state_advance(j, s.decays + (size_t)n * l->Kg, s.dstates + (size_t)(n + 1) * kv,
                          s.dstates + (size_t)n * kv, s.dstates + (size_t)n * kv);
#pragma omp parallel for schedule(static) num_threads(l->threads)
        for (int n = 0; n < l->nC; n++) {
            chunk_ws w = thread_chunk_ws(j, &s, thread_id());
            int t0, L;
            chunk_range(j, l, n, &t0, &L);
            gate_prep(j, t0, L, &w, 1);
            load_chunk(j, &w, t0, L, LOAD_Q | LOAD_K | LOAD_V | LOAD_DOUT, 1);
            chunk_grads(j, &w, t0, L, l->C, s.states + (size_t)n * kv, s.dstates + (size_t)(n + 1) * kv);
        }
    }
    if (j->dh0) memcpy(j->dh0, s.dstates, sizeof(float) * kv);
}
