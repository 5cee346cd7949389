/* Chunkwise delta rule, the state-independent part of a chunk: cumulative
 * gates, the intra-chunk scores M and Mq (and their backward), the WY/UT
 * representation T = (I + tril(diag(beta) M, -1))^-1 diag(beta), W = T Kg,
 * Ut = T V. The math is in attn_chunk_delta.h; forward and backward drivers
 * are attn_chunk_delta_fwd.c and attn_chunk_delta_bwd.c. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "attn_chunk_delta.h"

int cd_chunk_rows(const lina_attn_job *j) {
    int C = j->chunk > 0 ? j->chunk : 64;
    if (C > j->T) C = j->T;
    return C < 1 ? 1 : C;
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
    PIECE(E, float, j->gate == LINA_GATE_SCALAR ? CC : 1);
    PIECE(M, float, CC);
    PIECE(Mq, float, CC);
    PIECE(N, float, CC);
    PIECE(Tm, float, CC);
    PIECE(W, float, C * K);
    PIECE(Ut, float, C * V);
    PIECE(U, float, C * V);
    PIECE(Fr, float, vec ? CD_SUB * K : 1);
    PIECE(R, float, vec ? 2 * CD_SUB * K : 1);
    PIECE(Fc, float, vec ? C * K : 1);
    PIECE(Kc, float, vec ? C * K : 1);
    PIECE(Z, float, vec ? 2 * CD_SUB * (size_t)C : 1);
    PIECE(dR, float, vec && backward ? 2 * CD_SUB * K : 1);
    PIECE(dKc, float, vec && backward ? C * K : 1);
#undef PIECE
    if (base) c->C = C;
    return at;
}

size_t cd_chunk_floats(const lina_attn_job *j, int C, int backward) {
    return layout(j, C, backward, NULL, NULL);
}

float *cd_chunk_carve(const lina_attn_job *j, int C, int backward, cd_chunk *c, float *ws) {
    return ws + layout(j, C, backward, c, ws);
}

/* b, gam, dec, gl and the gated copies Qg, Kg, Kd. Cumulative sums in double
 * so that small differences of large sums stay exact. */
static void gates_and_copies(const lina_attn_job *j, cd_chunk *c, int t0, int n) {
    int K = j->K;
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
            float e = (float)exp(c->b[r]), d = (float)exp(acc - c->b[r]);
            const float *q = cd_q(j, t0 + r), *k = cd_k(j, t0 + r);
            float *qg = c->Qg + (size_t)r * K, *kg = c->Kg + (size_t)r * K, *kd = c->Kd + (size_t)r * K;
            c->gam[r] = e, c->dec[r] = d;
            for (int kk = 0; kk < K; kk++) qg[kk] = q[kk] * e, kg[kk] = k[kk] * e, kd[kk] = k[kk] * d;
        }
        c->gl[0] = (float)exp(acc);
        return;
    }
    for (int r = 0; r < n; r++) {
        const float *g = j->g + (ptrdiff_t)(t0 + r) * j->sg;
        double *b = c->b + (size_t)r * K;
        for (int kk = 0; kk < K; kk++) b[kk] = (r ? b[kk - K] : 0.0) + g[kk];
    }
    const double *bl = c->b + (size_t)(n - 1) * K;
    for (int r = 0; r < n; r++) {
        const double *b = c->b + (size_t)r * K;
        const float *q = cd_q(j, t0 + r), *k = cd_k(j, t0 + r);
        size_t o = (size_t)r * K;
        for (int kk = 0; kk < K; kk++) {
            float e = (float)exp(b[kk]), d = (float)exp(bl[kk] - b[kk]);
            c->gam[o + kk] = e, c->dec[o + kk] = d;
            c->Qg[o + kk] = q[kk] * e, c->Kg[o + kk] = k[kk] * e, c->Kd[o + kk] = k[kk] * d;
        }
    }
    for (int kk = 0; kk < K; kk++) c->gl[kk] = (float)exp(bl[kk]);
}

/* NONE / SCALAR: M = K K^T, Mq = Q K^T, times E_rs = e^{b_r - b_s}, masked. */
static void scores_dense(const lina_attn_job *j, cd_chunk *c, int t0, int n) {
    int C = c->C, K = j->K;
    const float *q = cd_q(j, t0), *k = cd_k(j, t0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, K, 1.0f, k, j->sqk, k, j->sqk, 0.0f,
                c->M, C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, K, 1.0f, q, j->sqk, k, j->sqk, 0.0f,
                c->Mq, C);
    int scalar = j->gate == LINA_GATE_SCALAR;
    for (int r = 0; r < n; r++) {
        float *m = c->M + (size_t)r * C, *mq = c->Mq + (size_t)r * C, *e = c->E + (size_t)r * C;
        for (int s = 0; s <= r; s++) {
            float ers = scalar ? (float)exp(c->b[r] - c->b[s]) : 1.0f;
            if (scalar) e[s] = ers;
            m[s] = s < r ? m[s] * ers : 0.0f;
            mq[s] *= ers;
        }
        for (int s = r + 1; s < n; s++) m[s] = mq[s] = 0.0f;
        if (scalar)
            for (int s = r + 1; s < n; s++) e[s] = 0.0f;
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
        const double *b = c->b + (size_t)r * K;
        const float *q = cd_q(j, t0 + r), *k = cd_k(j, t0 + r);
        float *fr = c->Fr + (size_t)(r - I0) * K, *rk = c->R + (size_t)(r - I0) * K;
        float *rq = c->R + (size_t)(nI + r - I0) * K;
        for (int kk = 0; kk < K; kk++) {
            fr[kk] = (float)exp(b[kk] - ref[kk]);
            rk[kk] = k[kk] * fr[kk], rq[kk] = q[kk] * fr[kk];
        }
    }
    for (int s = 0; s < cols; s++) {
        const double *b = c->b + (size_t)s * K;
        const float *k = cd_k(j, t0 + s);
        float *fc = c->Fc + (size_t)s * K, *kc = c->Kc + (size_t)s * K;
        for (int kk = 0; kk < K; kk++) {
            fc[kk] = (float)exp(ref[kk] - b[kk]);
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
            for (int kk = 0; kk < K; kk++) {
                float e = expf((float)(br[kk] - bs[kk]));
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
        if (cols > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 2 * nI, cols, K, 1.0f, c->R, K,
                        c->Kc, K, 0.0f, c->Z, C);
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

/* N = (I + L)^-1 with L_rs = beta_r M_rs (s < r), by forward substitution on
 * rows: N_r = e_r - sum_{s<r} L_rs N_s; then Tm = N diag(beta). */
static void wy_inverse(const lina_attn_job *j, cd_chunk *c, int t0, int n) {
    int C = c->C;
    for (int r = 0; r < n; r++) {
        float *nr = c->N + (size_t)r * C, beta = j->beta[(ptrdiff_t)(t0 + r) * j->sb];
        memset(nr, 0, sizeof(float) * n);
        nr[r] = 1.0f;
        const float *m = c->M + (size_t)r * C;
        for (int s = 0; s < r; s++) {
            float l = beta * m[s];
            const float *ns = c->N + (size_t)s * C;
            for (int x = 0; x <= s; x++) nr[x] -= l * ns[x];
        }
    }
    for (int r = 0; r < n; r++) {
        const float *nr = c->N + (size_t)r * C;
        float *tr = c->Tm + (size_t)r * C;
        for (int s = 0; s <= r; s++) tr[s] = nr[s] * j->beta[(ptrdiff_t)(t0 + s) * j->sb];
        for (int s = r + 1; s < n; s++) tr[s] = 0.0f;
    }
}

void cd_prep(const lina_attn_job *j, cd_chunk *c, int t0, int n) {
    int C = c->C, K = j->K, V = j->V;
    gates_and_copies(j, c, t0, n);
    if (j->gate == LINA_GATE_VECTOR) scores_vector(j, c, t0, n);
    else scores_dense(j, c, t0, n);
    wy_inverse(j, c, t0, n);
    /* W = T Kg (n, K), Ut = T V (n, V) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, K, n, 1.0f, c->Tm, C, c->Kg, K, 0.0f,
                c->W, K);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, V, n, 1.0f, c->Tm, C, cd_v(j, t0),
                j->sv, 0.0f, c->Ut, V);
}

void cd_pseudo_values(const lina_attn_job *j, cd_chunk *c, int n, const float *S) {
    int K = j->K, V = j->V;
    memcpy(c->U, c->Ut, sizeof(float) * n * V);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, V, K, -1.0f, c->W, K, S, V, 1.0f,
                c->U, V);
}

void cd_state_update(const lina_attn_job *j, const cd_chunk *c, int n, float *S) {
    int K = j->K, V = j->V;
    if (j->gate == LINA_GATE_SCALAR) {
        float a = c->gl[0];
        for (size_t i = 0; i < (size_t)K * V; i++) S[i] *= a;
    } else if (j->gate == LINA_GATE_VECTOR) {
        for (int kk = 0; kk < K; kk++) {
            float a = c->gl[kk];
            for (int x = 0; x < V; x++) S[(size_t)kk * V + x] *= a;
        }
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, V, n, 1.0f, c->Kd, K, c->U, V, 1.0f, S,
                V);
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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, K, n, 1.0f, dMq, C, k, j->sqk, 1.0f,
                dq, K);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, K, n, 1.0f, dM, C, k, j->sqk, 1.0f,
                dkp, K);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, K, n, 1.0f, dM, C, k, j->sqk, 1.0f, dkn,
                K);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, K, n, 1.0f, dMq, C, q, j->sqk, 1.0f, dkn,
                K);
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
            for (int kk = 0; kk < K; kk++) {
                float e = expf((float)(br[kk] - bs[kk]));
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
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2 * nI, K, cols, 1.0f, c->Z, C,
                        c->Kc, K, 0.0f, c->dR, K);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, K, 2 * nI, 1.0f, c->Z, C,
                        c->R, K, 0.0f, c->dKc, K);
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
