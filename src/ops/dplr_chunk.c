/* DPLR chunkwise form, forward, and the per-chunk pieces shared with the
 * backward (dplr_chunk_bwd.c). The math is in dplr_internal.h. Dense products
 * go through cblas_sgemm; the four intra-chunk score matrices carry a decay
 * per key channel and pair (e^{G_t - G_s}, always <= 1), so they are summed
 * explicitly within 16-row blocks (from one table of decays) and as GEMMs of
 * decay-scaled rows below them. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "dplr_internal.h"

int lina_dplr_chunk_rows(const lina_dplr_job *j) {
    int C = j->chunk > 0 ? j->chunk : 64;
    if (C > j->T) C = j->T;
    return C < 1 ? 1 : C;
}

void lina_dplr_gemm(int ta, int tb, int M, int N, int Kd, float alpha, const float *A, ptrdiff_t lda,
                    const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (Kd <= 0) { /* empty sum: C = beta C */
        for (int i = 0; i < M; i++)
            for (int c = 0; c < N; c++) C[i * ldc + c] = beta == 0.0f ? 0.0f : beta * C[i * ldc + c];
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                Kd, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

static size_t round16(size_t n) { return (n + 15) / 16 * 16; }

size_t lina_dplr_pair_table_floats(size_t C, size_t K) {
    size_t blocks = (C + PAIR_BLOCK - 1) / PAIR_BLOCK;
    return blocks * (PAIR_BLOCK * (PAIR_BLOCK + 1) / 2) * K;
}

/* E (see dplr_internal.h) for the n rows of the chunk: E[s][s] = 1 and
 * E[t][s] = E[t-1][s] e^{w_t}, one exponential per row and channel (at most 15
 * roundings per entry; every factor <= 1, so nothing overflows). */
static void pair_table(const lina_dplr_job *j, int t0, int n, float *E) {
    int K = j->K;
    for (int j0 = 0; j0 < n; j0 += PAIR_BLOCK) {
        int j1 = j0 + PAIR_BLOCK < n ? j0 + PAIR_BLOCK : n;
        float *Eb = E + (size_t)(j0 / PAIR_BLOCK) * (PAIR_BLOCK * (PAIR_BLOCK + 1) / 2) * K;
        for (int t = j0; t < j1; t++) {
            const float *w = j->w + (ptrdiff_t)(t0 + t) * j->sk;
            float *diag = Eb + (size_t)(PAIR_TRI(t - j0) + t - j0) * K;
            for (int c = 0; c < K; c++) diag[c] = 1.0f;
            if (t == j0) continue;
            float *dec = diag; /* e^{w_t} first, in the diagonal slot (rewritten below) */
            for (int c = 0; c < K; c++) dec[c] = expf(lina_dplr_w(w[c]));
            const float *prev = Eb + (size_t)PAIR_TRI(t - 1 - j0) * K;
            float *row = Eb + (size_t)PAIR_TRI(t - j0) * K;
            for (int s = j0; s < t; s++) {
                const float *p = prev + (size_t)(s - j0) * K;
                float *e = row + (size_t)(s - j0) * K;
                for (int c = 0; c < K; c++) e[c] = p[c] * dec[c];
            }
            for (int c = 0; c < K; c++) diag[c] = 1.0f;
        }
    }
}

size_t lina_dplr_chunk_carve(const lina_dplr_job *j, float *ws, lina_dplr_chunk *c) {
    size_t C = lina_dplr_chunk_rows(j), ck = round16(C * j->K), cc = round16(C * C);
    size_t used = 0;
#define TAKE(field, n)                                                                             \
    do {                                                                                           \
        if (c) c->field = (void *)(ws + used);                                                     \
        used += (n);                                                                               \
    } while (0)
    TAKE(G, 2 * ck); /* doubles */
    TAKE(Gp, 2 * ck);
    TAKE(GC, 2 * round16(j->K));
    TAKE(Qt, ck);
    TAKE(At, ck);
    TAKE(Kc, ck);
    TAKE(Bc, ck);
    TAKE(Aqk, cc);
    TAKE(Aqb, cc);
    TAKE(Aak, cc);
    TAKE(Aab, cc);
    TAKE(U, round16(C * j->V));
    TAKE(scratch, 8 * ck);
    TAKE(E, round16(lina_dplr_pair_table_floats(C, j->K)));
#undef TAKE
    return used;
}

/* A1[t,s] = sum_c X_t[c] Y1_s[c] e^{Gx_t[c] - G_s[c]}, A2 likewise with Y2, for
 * s < t (strict) or s <= t; zero above. Rows of X, Y1, Y2 have stride ld; Gx, G
 * are (n, K); A1, A2 (n, C); scratch (3 C K). Blocks of PAIR_BLOCK rows: the
 * diagonal block explicitly from the table E, the
 * rectangle left of it as GEMMs (dplr_internal.h). */
static void pair_scores2(int n, int K, int C, const float *X, const double *Gx, const float *Y1,
                         const float *Y2, const double *G, ptrdiff_t ld, int strict, float *A1,
                         float *A2, const float *E, float *scratch) {
    float *Xs = scratch, *Ys1 = Xs + (size_t)C * K, *Ys2 = Ys1 + (size_t)C * K;
    for (int j0 = 0; j0 < n; j0 += PAIR_BLOCK) {
        int j1 = j0 + PAIR_BLOCK < n ? j0 + PAIR_BLOCK : n;
        const float *Eb = E + (size_t)(j0 / PAIR_BLOCK) * (PAIR_BLOCK * (PAIR_BLOCK + 1) / 2) * K;
        for (int t = j0; t < j1; t++) {
            int end = strict ? t : t + 1, te = t - strict - j0; /* strict: Gx_t = G_{t-1} */
            const float *x = X + t * ld;
            for (int s = j0; s < end; s++) {
                const float *y1 = Y1 + s * ld, *y2 = Y2 + s * ld;
                const float *e = Eb + (size_t)(PAIR_TRI(te) + s - j0) * K;
                float acc1 = 0, acc2 = 0;
                for (int c = 0; c < K; c++) {
                    float xe = x[c] * e[c];
                    acc1 += xe * y1[c];
                    acc2 += xe * y2[c];
                }
                A1[t * C + s] = acc1;
                A2[t * C + s] = acc2;
            }
            for (int s = end; s < C; s++) A1[t * C + s] = A2[t * C + s] = 0;
        }
        if (j0 == 0) continue;
        const double *R = G + (size_t)(j0 - 1) * K;
        for (int t = j0; t < j1; t++)
            for (int c = 0; c < K; c++)
                Xs[(size_t)(t - j0) * K + c] = X[t * ld + c] * expf((float)(Gx[(size_t)t * K + c] - R[c]));
        for (int s = 0; s < j0; s++)
            for (int c = 0; c < K; c++) {
                float e = expf((float)(R[c] - G[(size_t)s * K + c]));
                Ys1[(size_t)s * K + c] = Y1[s * ld + c] * e;
                Ys2[(size_t)s * K + c] = Y2[s * ld + c] * e;
            }
        lina_dplr_gemm(0, 1, j1 - j0, j0, K, 1.0f, Xs, K, Ys1, K, 0.0f, A1 + (size_t)j0 * C, C);
        lina_dplr_gemm(0, 1, j1 - j0, j0, K, 1.0f, Xs, K, Ys2, K, 0.0f, A2 + (size_t)j0 * C, C);
    }
}

void lina_dplr_chunk_prepare(const lina_dplr_job *j, int t0, int n, lina_dplr_chunk *c) {
    int K = j->K, C = lina_dplr_chunk_rows(j);
    ptrdiff_t ld = j->sk, off = (ptrdiff_t)t0 * ld;
    for (int i = 0; i < K; i++) { /* cumulative sums */
        double acc = 0;
        for (int t = 0; t < n; t++) {
            c->Gp[t * K + i] = acc;
            acc += lina_dplr_w(j->w[off + t * ld + i]);
            c->G[t * K + i] = acc;
        }
        c->GC[i] = c->G[(n - 1) * K + i];
    }
    for (int t = 0; t < n; t++) {
        const float *r = j->r + off + t * ld, *a = j->a + off + t * ld;
        const float *k = j->k + off + t * ld, *b = j->b + off + t * ld;
        const double *G = c->G + t * K, *Gp = c->Gp + t * K;
        for (int i = 0; i < K; i++) {
            float tail = expf((float)(c->GC[i] - G[i]));
            c->Qt[t * K + i] = r[i] * expf((float)G[i]);
            c->At[t * K + i] = a[i] * expf((float)Gp[i]);
            c->Kc[t * K + i] = k[i] * tail;
            c->Bc[t * K + i] = b[i] * tail;
        }
    }
    pair_table(j, t0, n, c->E);
    pair_scores2(n, K, C, j->r + off, c->G, j->k + off, j->b + off, c->G, ld, 0, c->Aqk, c->Aqb,
                 c->E, c->scratch);
    pair_scores2(n, K, C, j->a + off, c->Gp, j->k + off, j->b + off, c->G, ld, 1, c->Aak, c->Aab,
                 c->E, c->scratch);
}

void lina_dplr_chunk_solve_u(const lina_dplr_job *j, int t0, int n, const float *S0,
                             lina_dplr_chunk *c) {
    int K = j->K, V = j->V, C = lina_dplr_chunk_rows(j);
    const float *v = j->v + (ptrdiff_t)t0 * j->sv;
    lina_dplr_gemm(0, 0, n, V, K, 1.0f, c->At, K, S0, V, 0.0f, c->U, V);
    lina_dplr_gemm(0, 0, n, V, n, 1.0f, c->Aak, C, v, j->sv, 1.0f, c->U, V);
    for (int t = 1; t < n; t++) { /* U_t += sum_{s<t} Aab[t,s] U_s */
        float *ut = c->U + (size_t)t * V;
        for (int s = 0; s < t; s++) {
            float m = c->Aab[t * C + s];
            const float *us = c->U + (size_t)s * V;
            for (int x = 0; x < V; x++) ut[x] += m * us[x];
        }
    }
}

size_t lina_dplr_chunk_ws_floats(const lina_dplr_job *j, int backward) {
    size_t C = lina_dplr_chunk_rows(j), kv = round16((size_t)j->K * j->V);
    size_t base = lina_dplr_chunk_carve(j, NULL, NULL) + kv + 16;
    if (!backward) return base;
    size_t n_chunks = ((size_t)j->T + C - 1) / C;
    size_t ck = round16(C * j->K), cc = round16(C * C), cv = round16(C * j->V);
    /* chunk-start states, dS and dS0, 4 dA, dU/dR, dQt dAt dKc dBc dG dGp dr dk da db, dGC */
    return base + n_chunks * kv + 2 * kv + 4 * cc + cv + 10 * ck + round16(j->K) + 16;
}

/* S <- e^{GC} o S + Kc^T V + Bc^T U (the state after the chunk). */
static void advance_state(const lina_dplr_job *j, int t0, int n, const lina_dplr_chunk *c,
                          float *S) {
    int K = j->K, V = j->V;
    for (int i = 0; i < K; i++) {
        float decay = expf((float)c->GC[i]);
        for (int x = 0; x < V; x++) S[i * V + x] *= decay;
    }
    lina_dplr_gemm(1, 0, K, V, n, 1.0f, c->Kc, K, j->v + (ptrdiff_t)t0 * j->sv, j->sv, 1.0f, S, V);
    lina_dplr_gemm(1, 0, K, V, n, 1.0f, c->Bc, K, c->U, V, 1.0f, S, V);
}

/* Chunk-start states of every chunk into starts (n_chunks, K, V), or only the
 * outputs and final state when starts is NULL. S is (K, V) scratch. */
static void run_forward(const lina_dplr_job *j, lina_dplr_chunk *c, float *S, float *starts) {
    int K = j->K, V = j->V, C = lina_dplr_chunk_rows(j);
    size_t kv = (size_t)K * V;
    for (size_t i = 0; i < kv; i++) S[i] = j->h0 ? j->h0[i] : 0.0f;
    for (int t0 = 0, ci = 0; t0 < j->T; t0 += C, ci++) {
        int n = j->T - t0 < C ? j->T - t0 : C;
        if (starts) memcpy(starts + (size_t)ci * kv, S, sizeof(float) * kv);
        lina_dplr_chunk_prepare(j, t0, n, c);
        lina_dplr_chunk_solve_u(j, t0, n, S, c);
        if (j->o && !starts) { /* O = scale (Qt S0 + Aqk V + Aqb U) */
            float *o = j->o + (ptrdiff_t)t0 * j->sv;
            lina_dplr_gemm(0, 0, n, V, K, j->scale, c->Qt, K, S, V, 0.0f, o, j->sv);
            lina_dplr_gemm(0, 0, n, V, n, j->scale, c->Aqk, C, j->v + (ptrdiff_t)t0 * j->sv, j->sv,
                           1.0f, o, j->sv);
            lina_dplr_gemm(0, 0, n, V, n, j->scale, c->Aqb, C, c->U, V, 1.0f, o, j->sv);
        }
        advance_state(j, t0, n, c, S);
    }
}

void lina_dplr_chunk_forward(const lina_dplr_job *j) {
    lina_dplr_chunk c;
    size_t used = lina_dplr_chunk_carve(j, j->ws, &c);
    float *S = j->ws + used;
    run_forward(j, &c, S, NULL);
    if (j->ht) memcpy(j->ht, S, sizeof(float) * j->K * j->V);
}

void lina_dplr_chunk_start_states(const lina_dplr_job *j, lina_dplr_chunk *c, float *S,
                                  float *starts) {
    run_forward(j, c, S, starts);
}
