/* Chunkwise delta rule, the state-independent part of a chunk: cumulative
 * gates, the intra-chunk scores M and Mq (and their backward), the WY/UT
 * representation [W | Ut] = (I + tril(diag(beta) M, -1))^-1 diag(beta) [Kg | V]
 * by a blocked triangular solve (and its transpose for the backward), and
 * the small-GEMM helpers. The math is in attn_chunk_delta.h; the forward and
 * backward drivers are attn_chunk_delta_fwd.c and attn_chunk_delta_bwd.c. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "attn_chunk_delta.h"

int cd_chunk_rows(const lina_attn_job *j) {
    int C = j->chunk > 0 ? j->chunk : 64;
    if (C > j->T) C = j->T;
    return C < 1 ? 1 : C;
}

void cd_gemm(int ta, int tb, int M, int N, int Kd, float alpha, const float *A, ptrdiff_t lda,
             const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc) {
    if (M <= 0 || N <= 0) return;
    if ((double)M * N * Kd > 262144.0 && (M > 1 || N > 1)) {
        if (M >= N) { /* rows of C: rows of op(A) */
            int h = M / 2 >= 16 ? (M / 2 + 15) / 16 * 16 : M / 2;
            cd_gemm(ta, tb, h, N, Kd, alpha, A, lda, B, ldb, beta, C, ldc);
            cd_gemm(ta, tb, M - h, N, Kd, alpha, ta ? A + h : A + (ptrdiff_t)h * lda, lda, B, ldb,
                    beta, C + (ptrdiff_t)h * ldc, ldc);
        } else { /* columns of C: columns of op(B) */
            int h = N / 2 >= 16 ? (N / 2 + 15) / 16 * 16 : N / 2;
            cd_gemm(ta, tb, M, h, Kd, alpha, A, lda, B, ldb, beta, C, ldc);
            cd_gemm(ta, tb, M, N - h, Kd, alpha, A, lda, tb ? B + (ptrdiff_t)h * ldb : B + h, ldb,
                    beta, C + h, ldc);
        }
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                Kd, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

void cd_gemm_tri(int ta, int n, int N, float alpha, const float *T, ptrdiff_t ldt, const float *B,
                 ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc) {
    int h = (n + 1) / 2;
    if (!ta) { /* rows [0, h) of T B only see T[0:h, 0:h] */
        cd_gemm(0, 0, h, N, h, alpha, T, ldt, B, ldb, beta, C, ldc);
        cd_gemm(0, 0, n - h, N, n, alpha, T + (ptrdiff_t)h * ldt, ldt, B, ldb, beta,
                C + (ptrdiff_t)h * ldc, ldc);
    } else { /* rows [h, n) of T^T B only see T[h:n, h:n] */
        cd_gemm(1, 0, h, N, n, alpha, T, ldt, B, ldb, beta, C, ldc);
        cd_gemm(1, 0, n - h, N, n - h, alpha, T + (ptrdiff_t)h * ldt + h, ldt,
                B + (ptrdiff_t)h * ldb, ldb, beta, C + (ptrdiff_t)h * ldc, ldc);
    }
}

void cd_gemm_lower_out(int n, int Kd, float alpha, const float *A, ptrdiff_t lda, const float *B,
                       ptrdiff_t ldb, float *C, ptrdiff_t ldc) {
    int h = (n + 1) / 2;
    cd_gemm(0, 1, h, h, Kd, alpha, A, lda, B, ldb, 0.0f, C, ldc);
    cd_gemm(0, 1, n - h, n, Kd, alpha, A + (ptrdiff_t)h * lda, lda, B, ldb, 0.0f,
            C + (ptrdiff_t)h * ldc, ldc);
}

size_t lina_chunk_delta_ws_floats(const lina_attn_job *j, int backward) {
    return backward ? cd_backward_floats(j) : cd_forward_floats(j);
}

/* Walk the buffer list once for sizing (base == NULL) and once for carving. */
static size_t layout(const lina_attn_job *j, int C, int backward, cd_chunk *c, float *base) {
    size_t K = j->K, V = j->V, CC = (size_t)C * C, at = 0;
    size_t gates = j->gate == LINA_GATE_VECTOR ? (size_t)C * K : (size_t)C;
    int vec = j->gate == LINA_GATE_VECTOR;
#define PIECE(field, type, count)                                                                  \
    do {                                                                                           \
        size_t n_ = cd_round((count) * (sizeof(type) / sizeof(float)));                            \
        if (base) c->field = (type *)(base + at);                                                  \
        at += n_;                                                                                  \
    } while (0)
    PIECE(b, double, gates);
    PIECE(gam, float, gates);
    PIECE(dec, float, gates);
    PIECE(gl, float, K);
    PIECE(Qg, float, C * K);
    PIECE(Kg, float, C * K);
    PIECE(Kd, float, C * K);
    PIECE(KdT, float, K * C);
    PIECE(KT, float, vec ? 1 : K * C);
    PIECE(E, float, j->gate == LINA_GATE_SCALAR ? CC : 1);
    PIECE(M, float, CC);
    PIECE(Mq, float, CC);
    PIECE(L, float, CC);
    PIECE(LT, float, backward ? CC : 1);
    PIECE(X, float, C * (K + V));
    PIECE(U, float, C * V);
    PIECE(Fr, float, vec ? CD_SUB * K : 1);
    PIECE(R, float, vec ? 2 * CD_SUB * K : 1);
    PIECE(Fc, float, vec ? C * K : 1);
    PIECE(Kc, float, vec ? C * K : 1);
    PIECE(KcT, float, vec ? K * C : 1);
    PIECE(Z, float, vec ? 2 * CD_SUB * (size_t)C : 1);
    PIECE(dR, float, vec && backward ? 2 * CD_SUB * K : 1);
    PIECE(dKc, float, vec && backward ? C * K : 1);
#undef PIECE
    if (base) c->C = C, c->backward = backward, c->keys_only = 0, c->reverse = 0;
    return at;
}

size_t cd_chunk_floats(const lina_attn_job *j, int C, int backward) {
    return layout(j, C, backward, NULL, NULL);
}

float *cd_chunk_carve(const lina_attn_job *j, int C, int backward, cd_chunk *c, float *ws) {
    return ws + layout(j, C, backward, c, ws);
}

/* b, gam, dec, gl and the gated copies Qg, Kg, Kd. Cumulative sums in double
 * so that small differences of large sums stay exact. Token rows are strided
 * (one or two rows per page with many heads), which defeats the hardware
 * prefetchers: the rows of the chunk processed next (after it, or before it
 * when c->reverse) are prefetched on the way. */
static void next_chunk_rows(const lina_attn_job *j, const cd_chunk *c, int t0, int n, int *p0,
                            int *p1) {
    if (c->reverse) {
        *p0 = t0 - c->C > 0 ? t0 - c->C : 0;
        *p1 = t0;
    } else {
        *p0 = t0 + n;
        *p1 = t0 + n + c->C < j->T ? t0 + n + c->C : j->T;
    }
}

static void gates_and_copies(const lina_attn_job *j, cd_chunk *c, int t0, int n) {
    int K = j->K, p0, p1;
    next_chunk_rows(j, c, t0, n, &p0, &p1);
    for (int t = p0; t < p1; t++) {
        cd_prefetch_row(cd_q(j, t), K);
        cd_prefetch_row(cd_k(j, t), K);
        if (j->gate == LINA_GATE_VECTOR) cd_prefetch_row(j->g + (ptrdiff_t)t * j->sg, K);
    }
    if (j->gate == LINA_GATE_NONE) {
        for (int r = 0; r < n; r++) {
            memcpy(c->Qg + (size_t)r * K, cd_q(j, t0 + r), sizeof(float) * K);
            memcpy(c->Kg + (size_t)r * K, cd_k(j, t0 + r), sizeof(float) * K);
        }
        memcpy(c->Kd, c->Kg, sizeof(float) * n * K);
        for (int kk = 0; kk < K; kk++) c->gl[kk] = 1.0f;
        return;
    }
    if (j->gate == LINA_GATE_SCALAR) {
        double acc = 0;
        for (int r = 0; r < n; r++) c->b[r] = acc += j->g[(ptrdiff_t)(t0 + r) * j->sg];
        for (int r = 0; r < n; r++) {
            float e = cd_expf((float)c->b[r]), d = cd_expf((float)(acc - c->b[r]));
            const float *restrict q = cd_q(j, t0 + r), *restrict k = cd_k(j, t0 + r);
            float *restrict qg = c->Qg + (size_t)r * K, *restrict kg = c->Kg + (size_t)r * K;
            float *restrict kd = c->Kd + (size_t)r * K;
            c->gam[r] = e, c->dec[r] = d;
#pragma omp simd
            for (int kk = 0; kk < K; kk++) qg[kk] = q[kk] * e, kg[kk] = k[kk] * e, kd[kk] = k[kk] * d;
        }
        c->gl[0] = (float)exp(acc);
        return;
    }
    for (int r = 0; r < n; r++) {
        const float *restrict g = j->g + (ptrdiff_t)(t0 + r) * j->sg;
        double *restrict b = c->b + (size_t)r * K;
        const double *restrict prev = r ? b - K : NULL;
        if (r) {
#pragma omp simd
            for (int kk = 0; kk < K; kk++) b[kk] = prev[kk] + g[kk];
        } else {
#pragma omp simd
            for (int kk = 0; kk < K; kk++) b[kk] = g[kk];
        }
    }
    const double *bl = c->b + (size_t)(n - 1) * K;
    for (int r = 0; r < n; r++) {
        const double *restrict b = c->b + (size_t)r * K;
        const float *restrict q = cd_q(j, t0 + r), *restrict k = cd_k(j, t0 + r);
        size_t o = (size_t)r * K;
        float *restrict gam = c->gam + o, *restrict dec = c->dec + o;
        float *restrict qg = c->Qg + o, *restrict kg = c->Kg + o, *restrict kd = c->Kd + o;
#pragma omp simd
        for (int kk = 0; kk < K; kk++) {
            float e = cd_expf((float)b[kk]), d = cd_expf((float)(bl[kk] - b[kk]));
            gam[kk] = e, dec[kk] = d;
            qg[kk] = q[kk] * e, kg[kk] = k[kk] * e, kd[kk] = k[kk] * d;
        }
    }
    for (int kk = 0; kk < K; kk++) c->gl[kk] = cd_expf((float)bl[kk]);
}

/* NONE / SCALAR: M = K K^T, Mq = Q K^T, times E_rs = e^{b_r - b_s}, masked. */
static void scores_dense(const lina_attn_job *j, cd_chunk *c, int t0, int n) {
    int C = c->C, K = j->K;
    const float *q = cd_q(j, t0), *k = cd_k(j, t0);
    cd_transpose(k, j->sqk, n, K, c->KT, C);
    /* only the lower triangle is used: rows [0, h) need columns [0, h) */
    int h = (n + 1) / 2;
    for (int half = 0; half < 2; half++) {
        int r0 = half ? h : 0, rows = half ? n - h : h, cols = half ? n : h;
        if (rows == 0) continue;
        cd_gemm(0, 0, rows, cols, K, 1.0f, k + (ptrdiff_t)r0 * j->sqk, j->sqk, c->KT, C, 0.0f,
                c->M + (size_t)r0 * C, C);
        if (!c->keys_only)
            cd_gemm(0, 0, rows, cols, K, 1.0f, q + (ptrdiff_t)r0 * j->sqk, j->sqk, c->KT, C, 0.0f,
                    c->Mq + (size_t)r0 * C, C);
    }
    for (int r = 0; r < n; r++) {
        float *restrict m = c->M + (size_t)r * C, *restrict mq = c->Mq + (size_t)r * C;
        if (j->gate == LINA_GATE_SCALAR) {
            float *restrict e = c->E + (size_t)r * C;
            const double *restrict b = c->b, br = c->b[r];
#pragma omp simd
            for (int s = 0; s <= r; s++) {
                e[s] = cd_expf((float)(br - b[s]));
                mq[s] *= e[s];
                m[s] *= e[s];
            }
            m[r] = 0.0f;
            for (int s = r + 1; s < n; s++) e[s] = m[s] = mq[s] = 0.0f;
        } else {
            m[r] = 0.0f;
            for (int s = r + 1; s < n; s++) m[s] = mq[s] = 0.0f;
        }
    }
}

/* VECTOR, sub-chunk I = [I0, I1): Fr, R = [k; q] Fr for its rows, Fc and
 * Kc = k Fc for the columns s < cols. cols = I1 when the diagonal block can
 * use the factorization (gate range <= CD_SAFE_RANGE on every channel), else I0.
 * Returns cols. */
static int subchunk_factors(const lina_attn_job *j, cd_chunk *c, int t0, int I0, int I1) {
    int K = j->K, nI = I1 - I0;
    const double *ref = c->b + (size_t)I0 * K, *blast = c->b + (size_t)(I1 - 1) * K;
    int safe = 1;
    for (int kk = 0; kk < K; kk++)
        if (ref[kk] - blast[kk] > CD_SAFE_RANGE) safe = 0;
    int cols = safe ? I1 : I0;
    for (int r = I0; r < I1; r++) {
        const double *restrict b = c->b + (size_t)r * K;
        const float *restrict q = cd_q(j, t0 + r), *restrict k = cd_k(j, t0 + r);
        float *restrict fr = c->Fr + (size_t)(r - I0) * K, *restrict rk = c->R + (size_t)(r - I0) * K;
        float *restrict rq = c->R + (size_t)(nI + r - I0) * K;
#pragma omp simd
        for (int kk = 0; kk < K; kk++) {
            fr[kk] = cd_expf((float)(b[kk] - ref[kk]));
            rk[kk] = k[kk] * fr[kk], rq[kk] = q[kk] * fr[kk];
        }
    }
    for (int s = 0; s < cols; s++) {
        const double *restrict b = c->b + (size_t)s * K;
        const float *restrict k = cd_k(j, t0 + s);
        float *restrict fc = c->Fc + (size_t)s * K, *restrict kc = c->Kc + (size_t)s * K;
#pragma omp simd
        for (int kk = 0; kk < K; kk++) {
            fc[kk] = cd_expf((float)(ref[kk] - b[kk]));
            kc[kk] = k[kk] * fc[kk];
        }
    }
    return cols;
}

/* Exact diagonal block of sub-chunk [I0, I1) with per-element exponentials. */
static void diag_block_direct(const lina_attn_job *j, cd_chunk *c, int t0, int I0, int I1) {
    int K = j->K, C = c->C;
    for (int r = I0; r < I1; r++) {
        const double *br = c->b + (size_t)r * K;
        const float *q = cd_q(j, t0 + r), *kr = cd_k(j, t0 + r);
        for (int s = I0; s <= r; s++) {
            const double *bs = c->b + (size_t)s * K;
            const float *ks = cd_k(j, t0 + s);
            float m = 0, mq = 0;
#pragma omp simd reduction(+ : m, mq)
            for (int kk = 0; kk < K; kk++) {
                float e = cd_expf((float)(br[kk] - bs[kk]));
                m += kr[kk] * ks[kk] * e;
                mq += q[kk] * ks[kk] * e;
            }
            if (s < r) c->M[(size_t)r * C + s] = m;
            c->Mq[(size_t)r * C + s] = mq;
        }
    }
}

static void scores_vector(const lina_attn_job *j, cd_chunk *c, int t0, int n) {
    int C = c->C, K = j->K;
    for (int I0 = 0; I0 < n; I0 += CD_SUB) {
        int I1 = I0 + CD_SUB < n ? I0 + CD_SUB : n, nI = I1 - I0;
        int cols = subchunk_factors(j, c, t0, I0, I1);
        if (cols > 0) {
            cd_transpose(c->Kc, K, cols, K, c->KcT, C);
            cd_gemm(0, 0, c->keys_only ? nI : 2 * nI, cols, K, 1.0f, c->R, K, c->KcT, C, 0.0f, c->Z,
                    C);
        }
        for (int r = I0; r < I1; r++) {
            float *m = c->M + (size_t)r * C, *mq = c->Mq + (size_t)r * C;
            const float *zm = c->Z + (size_t)(r - I0) * C, *zq = c->Z + (size_t)(nI + r - I0) * C;
            for (int s = 0; s < cols; s++) {
                m[s] = s < r ? zm[s] : 0.0f;
                mq[s] = s <= r ? zq[s] : 0.0f;
            }
            for (int s = cols; s < n; s++) m[s] = mq[s] = 0.0f;
        }
        if (cols == I0) diag_block_direct(j, c, t0, I0, I1);
    }
}

/* x_r -= sum_{s in [s0, s1)} l[s] x_s on rows of P floats (row stride P),
 * 32 columns at a time with the partial sums in registers (measured best of
 * 16, 32, 64, 128). */
static void rows_axpy(float *restrict xr, const float *restrict l, const float *X, int P, int s0,
                      int s1) {
    int e0 = 0;
    for (; e0 + 32 <= P; e0 += 32) {
        float acc[32];
        for (int e = 0; e < 32; e++) acc[e] = xr[e0 + e];
        for (int s = s0; s < s1; s++) {
            const float *restrict xs = X + (size_t)s * P + e0;
            float ls = l[s];
#pragma omp simd
            for (int e = 0; e < 32; e++) acc[e] -= ls * xs[e];
        }
        for (int e = 0; e < 32; e++) xr[e0 + e] = acc[e];
    }
    for (int s = s0; s < s1; s++) {
        const float *restrict xs = X + (size_t)s * P;
        float ls = l[s];
#pragma omp simd
        for (int e = e0; e < P; e++) xr[e] -= ls * xs[e];
    }
}

/* L = diag(beta) M (and LT = L^T for the backward); X = diag(beta) [Kg | V]
 * solved in place: (I + L) X = B by blocks I = [I0, I1) of CD_SUB rows,
 *   X_I -= L_{I, <I0} X_{<I0}                    (GEMM)
 *   X_r -= L_rs X_s,  I0 <= s < r                (substitution inside the block) */
static void wy_solve(const lina_attn_job *j, cd_chunk *c, int t0, int n) {
    int C = c->C, K = j->K, V = j->V, P = K + V, p0, p1;
    next_chunk_rows(j, c, t0, n, &p0, &p1);
    for (int r = 0; r < n; r++) {
        float beta = j->beta[(ptrdiff_t)(t0 + r) * j->sb];
        const float *restrict m = c->M + (size_t)r * C, *restrict kg = c->Kg + (size_t)r * K;
        const float *restrict v = cd_v(j, t0 + r);
        float *restrict l = c->L + (size_t)r * C, *restrict x = c->X + (size_t)r * P;
        if (p0 + r < p1) cd_prefetch_row(cd_v(j, p0 + r), V);
#pragma omp simd
        for (int s = 0; s < n; s++) l[s] = beta * m[s];
#pragma omp simd
        for (int kk = 0; kk < K; kk++) x[kk] = beta * kg[kk];
#pragma omp simd
        for (int e = 0; e < V; e++) x[K + e] = beta * v[e];
    }
    if (c->backward) cd_transpose(c->L, C, n, n, c->LT, C);
    for (int I0 = 0; I0 < n; I0 += CD_SUB) {
        int I1 = I0 + CD_SUB < n ? I0 + CD_SUB : n;
        if (I0 > 0)
            cd_gemm(0, 0, I1 - I0, P, I0, -1.0f, c->L + (size_t)I0 * C, C, c->X, P, 1.0f,
                    c->X + (size_t)I0 * P, P);
        for (int r = I0 + 1; r < I1; r++)
            rows_axpy(c->X + (size_t)r * P, c->L + (size_t)r * C, c->X, P, I0, r);
    }
}

/* dB = (I + L)^-T dX in place: dB_r = dX_r - sum_{s>r} L_sr dB_s, by blocks
 * from the bottom: dB_I -= (L_{>=I1, I})^T dB_{>=I1} (GEMM on LT), then
 * backward substitution inside the block. */
void cd_solve_transposed(const lina_attn_job *j, const cd_chunk *c, int n, float *dX) {
    int C = c->C, P = j->K + j->V;
    int last = ((n - 1) / CD_SUB) * CD_SUB;
    for (int I0 = last; I0 >= 0; I0 -= CD_SUB) {
        int I1 = I0 + CD_SUB < n ? I0 + CD_SUB : n;
        if (I1 < n)
            cd_gemm(0, 0, I1 - I0, P, n - I1, -1.0f, c->LT + (size_t)I0 * C + I1, C,
                    dX + (size_t)I1 * P, P, 1.0f, dX + (size_t)I0 * P, P);
        for (int r = I1 - 2; r >= I0; r--)
            rows_axpy(dX + (size_t)r * P, c->LT + (size_t)r * C, dX, P, r + 1, I1);
    }
}

void cd_prep(const lina_attn_job *j, cd_chunk *c, int t0, int n) {
    int K = j->K;
    gates_and_copies(j, c, t0, n);
    if (j->gate == LINA_GATE_VECTOR) scores_vector(j, c, t0, n);
    else scores_dense(j, c, t0, n);
    wy_solve(j, c, t0, n);
    /* Kd transposed, for the state update S += Kd^T U as a plain product */
    for (int r = 0; r < n; r++)
        for (int kk = 0; kk < K; kk++) c->KdT[(size_t)kk * c->C + r] = c->Kd[(size_t)r * K + kk];
}

void cd_pseudo_values(const lina_attn_job *j, cd_chunk *c, int n, const float *S, int v0, int v1) {
    int K = j->K, V = j->V, w = v1 - v0;
    for (int r = 0; r < n; r++)
        memcpy(c->U + (size_t)r * V + v0, c->X + (size_t)r * (K + V) + K + v0, sizeof(float) * w);
    cd_gemm(0, 0, n, w, K, -1.0f, c->X, K + V, S + v0, V, 1.0f, c->U + v0, V);
}

void cd_state_update(const lina_attn_job *j, const cd_chunk *c, int n, float *S, int v0, int v1) {
    int K = j->K, V = j->V, w = v1 - v0;
    if (j->gate != LINA_GATE_NONE) {
        int vec = j->gate == LINA_GATE_VECTOR;
        for (int kk = 0; kk < K; kk++) {
            float a = c->gl[vec ? kk : 0], *restrict s = S + (size_t)kk * V + v0;
#pragma omp simd
            for (int x = 0; x < w; x++) s[x] *= a;
        }
    }
    cd_gemm(0, 0, K, w, n, 1.0f, c->KdT, c->C, c->U + v0, V, 1.0f, S + v0, V);
}

/* ---- backward of the scores ---- */

static void scores_dense_backward(const lina_attn_job *j, cd_chunk *c, int t0, int n, float *dM,
                                  float *dMq, float *dq, float *dkp, float *dkn) {
    int C = c->C, K = j->K;
    const float *q = cd_q(j, t0), *k = cd_k(j, t0);
    if (j->gate == LINA_GATE_SCALAR) /* through M_rs = E_rs k_r.k_s: use dM o E */
        for (int r = 0; r < n; r++)
            for (int s = 0; s <= r; s++) {
                dM[(size_t)r * C + s] *= c->E[(size_t)r * C + s];
                dMq[(size_t)r * C + s] *= c->E[(size_t)r * C + s];
            }
    cd_gemm_tri(0, n, K, 1.0f, dMq, C, k, j->sqk, 1.0f, dq, K);
    cd_gemm_tri(0, n, K, 1.0f, dM, C, k, j->sqk, 1.0f, dkp, K);
    cd_gemm_tri(1, n, K, 1.0f, dM, C, k, j->sqk, 1.0f, dkn, K);
    cd_gemm_tri(1, n, K, 1.0f, dMq, C, q, j->sqk, 1.0f, dkn, K);
}

static void diag_block_direct_backward(const lina_attn_job *j, cd_chunk *c, int t0, int I0, int I1,
                                       const float *dM, const float *dMq, float *dq, float *dkp,
                                       float *dkn) {
    int K = j->K, C = c->C;
    for (int r = I0; r < I1; r++) {
        const double *br = c->b + (size_t)r * K;
        const float *q = cd_q(j, t0 + r), *kr = cd_k(j, t0 + r);
        float *dqr = dq + (size_t)r * K, *dkpr = dkp + (size_t)r * K;
        for (int s = I0; s <= r; s++) {
            const double *bs = c->b + (size_t)s * K;
            const float *ks = cd_k(j, t0 + s);
            float *dkns = dkn + (size_t)s * K;
            float gm = s < r ? dM[(size_t)r * C + s] : 0.0f, gq = dMq[(size_t)r * C + s];
#pragma omp simd
            for (int kk = 0; kk < K; kk++) {
                float e = cd_expf((float)(br[kk] - bs[kk]));
                dkpr[kk] += gm * ks[kk] * e;
                dqr[kk] += gq * ks[kk] * e;
                dkns[kk] += (gm * kr[kk] + gq * q[kk]) * e;
            }
        }
    }
}

/* Per sub-chunk: Z = R Kc^T was the forward; dZ = [dM; dMq] rows of I, so
 * dR = dZ Kc, dKc = dZ^T R, and the factors Fr, Fc carry them back to k, q. */
static void scores_vector_backward(const lina_attn_job *j, cd_chunk *c, int t0, int n,
                                   const float *dM, const float *dMq, float *dq, float *dkp,
                                   float *dkn) {
    int C = c->C, K = j->K;
    for (int I0 = 0; I0 < n; I0 += CD_SUB) {
        int I1 = I0 + CD_SUB < n ? I0 + CD_SUB : n, nI = I1 - I0;
        int cols = subchunk_factors(j, c, t0, I0, I1);
        if (cols > 0) {
            for (int r = I0; r < I1; r++) {
                memcpy(c->Z + (size_t)(r - I0) * C, dM + (size_t)r * C, sizeof(float) * cols);
                memcpy(c->Z + (size_t)(nI + r - I0) * C, dMq + (size_t)r * C, sizeof(float) * cols);
            }
            cd_gemm(0, 0, 2 * nI, K, cols, 1.0f, c->Z, C, c->Kc, K, 0.0f, c->dR, K);
            cd_gemm(1, 0, cols, K, 2 * nI, 1.0f, c->Z, C, c->R, K, 0.0f, c->dKc, K);
            for (int r = I0; r < I1; r++) {
                const float *fr = c->Fr + (size_t)(r - I0) * K, *drk = c->dR + (size_t)(r - I0) * K;
                const float *drq = c->dR + (size_t)(nI + r - I0) * K;
                float *dkpr = dkp + (size_t)r * K, *dqr = dq + (size_t)r * K;
                for (int kk = 0; kk < K; kk++) dkpr[kk] += fr[kk] * drk[kk], dqr[kk] += fr[kk] * drq[kk];
            }
            for (int s = 0; s < cols; s++) {
                const float *fc = c->Fc + (size_t)s * K, *dkc = c->dKc + (size_t)s * K;
                float *dkns = dkn + (size_t)s * K;
                for (int kk = 0; kk < K; kk++) dkns[kk] += fc[kk] * dkc[kk];
            }
        }
        if (cols == I0) diag_block_direct_backward(j, c, t0, I0, I1, dM, dMq, dq, dkp, dkn);
    }
}

void cd_scores_backward(const lina_attn_job *j, cd_chunk *c, int t0, int n, float *dM, float *dMq,
                        float *dq, float *dkp, float *dkn) {
    if (j->gate == LINA_GATE_VECTOR) scores_vector_backward(j, c, t0, n, dM, dMq, dq, dkp, dkn);
    else scores_dense_backward(j, c, t0, n, dM, dMq, dq, dkp, dkn);
}
