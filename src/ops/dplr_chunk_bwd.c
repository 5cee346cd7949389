/* DPLR chunkwise form, backward. One forward pass stores the chunk-start
 * states; then chunk by chunk in reverse, with dS the gradient w.r.t. the
 * state after the chunk (math of the forward in dplr_internal.h):
 *   dQt = scale dO S0^T      dAqk = scale dO V^T (s<=t)   dAqb = scale dO U^T (s<=t)
 *   dU  = scale Aqb^T dO + Bc dS          dR = (I - Aab)^{-T} dU
 *   dAab = dR U^T (s<t)   dAak = dR V^T (s<t)   dAt = dR S0^T   dKc = V dS^T   dBc = U dS^T
 *   dV  = scale Aqk^T dO + Aak^T dR + Kc dS
 *   dS0 = e^{GC} o dS + scale Qt^T dO + At^T dR
 * and for every factor x e^{G_x - G_y} the gate gradient is dG_x += x dx, dG_y -= x dx.
 * dw_s = sum_{t>=s} dG_t + sum_{t>s} dG'_t + dGC. */
#include <math.h>
#include <string.h>

#include "dplr_internal.h"

static size_t round16(size_t n) { return (n + 15) / 16 * 16; }

/* Backward of pair_scores2 (dplr_chunk.c), in the same blocks: accumulates into
 * dX, dGx, dY1, dY2, dG (all (n, K), stride K); scratch (8 C K). For the
 * rectangles A = Xs Ys^T with Xs = X e^{Gx - R}, Ys = Y e^{R - G}, R = G_{r-1}:
 *   dXs = dA1 Ys1 + dA2 Ys2,  dYs = dA^T Xs,  and each factor's exponent gets
 *   +-(its row times its gradient), R's share going to dG_{r-1}. */
static void pair_scores2_bwd(int n, int K, int C, const float *X, const double *Gx,
                             const float *Y1, const float *Y2, const double *G, ptrdiff_t ld,
                             int strict, const float *dA1, const float *dA2, float *dX, float *dGx,
                             float *dY1, float *dY2, float *dG, const float *E, float *scratch) {
    size_t ck = (size_t)C * K;
    float *Ex = scratch, *Ey = Ex + ck, *Xs = Ey + ck, *Ys1 = Xs + ck, *Ys2 = Ys1 + ck;
    float *dXs = Ys2 + ck, *dYs1 = dXs + ck, *dYs2 = dYs1 + ck;
    for (int j0 = 0; j0 < n; j0 += PAIR_BLOCK) {
        int j1 = j0 + PAIR_BLOCK < n ? j0 + PAIR_BLOCK : n, nb = j1 - j0;
        const float *Eb = E + (size_t)(j0 / PAIR_BLOCK) * (PAIR_BLOCK * (PAIR_BLOCK + 1) / 2) * K;
        for (int t = j0; t < j1; t++) { /* the diagonal block */
            int end = strict ? t : t + 1, te = t - strict - j0;
            const float *x = X + t * ld;
            float *dx = dX + (size_t)t * K, *dgx = dGx + (size_t)t * K;
            for (int s = j0; s < end; s++) {
                float d1 = dA1[t * C + s], d2 = dA2[t * C + s];
                if (d1 == 0.0f && d2 == 0.0f) continue;
                const float *y1 = Y1 + s * ld, *y2 = Y2 + s * ld;
                const float *e = Eb + (size_t)(PAIR_TRI(te) + s - j0) * K;
                float *dy1 = dY1 + (size_t)s * K, *dy2 = dY2 + (size_t)s * K, *dg = dG + (size_t)s * K;
                for (int c = 0; c < K; c++) {
                    float xe = x[c] * e[c], dy = d1 * y1[c] + d2 * y2[c];
                    float p = xe * dy;
                    dx[c] += e[c] * dy;
                    dy1[c] += d1 * xe;
                    dy2[c] += d2 * xe;
                    dgx[c] += p;
                    dg[c] -= p;
                }
            }
        }
        if (j0 == 0) continue;
        const double *R = G + (size_t)(j0 - 1) * K;
        float *dR = dG + (size_t)(j0 - 1) * K;
        for (int t = j0; t < j1; t++)
            for (int c = 0; c < K; c++) {
                size_t i = (size_t)(t - j0) * K + c;
                Ex[i] = expf((float)(Gx[(size_t)t * K + c] - R[c]));
                Xs[i] = X[t * ld + c] * Ex[i];
            }
        for (int s = 0; s < j0; s++)
            for (int c = 0; c < K; c++) {
                size_t i = (size_t)s * K + c;
                Ey[i] = expf((float)(R[c] - G[i]));
                Ys1[i] = Y1[s * ld + c] * Ey[i];
                Ys2[i] = Y2[s * ld + c] * Ey[i];
            }
        const float *d1 = dA1 + (size_t)j0 * C, *d2 = dA2 + (size_t)j0 * C; /* (nb, j0) blocks */
        lina_dplr_gemm(0, 0, nb, K, j0, 1.0f, d1, C, Ys1, K, 0.0f, dXs, K);
        lina_dplr_gemm(0, 0, nb, K, j0, 1.0f, d2, C, Ys2, K, 1.0f, dXs, K);
        lina_dplr_gemm(1, 0, j0, K, nb, 1.0f, d1, C, Xs, K, 0.0f, dYs1, K);
        lina_dplr_gemm(1, 0, j0, K, nb, 1.0f, d2, C, Xs, K, 0.0f, dYs2, K);
        for (int t = j0; t < j1; t++)
            for (int c = 0; c < K; c++) {
                size_t i = (size_t)(t - j0) * K + c, o = (size_t)t * K + c;
                float p = dXs[i] * Xs[i];
                dX[o] += dXs[i] * Ex[i];
                dGx[o] += p;
                dR[c] -= p;
            }
        for (int s = 0; s < j0; s++)
            for (int c = 0; c < K; c++) {
                size_t i = (size_t)s * K + c;
                float p = dYs1[i] * Ys1[i] + dYs2[i] * Ys2[i];
                dY1[i] += dYs1[i] * Ey[i];
                dY2[i] += dYs2[i] * Ey[i];
                dG[i] -= p;
                dR[c] += p;
            }
    }
}

/* Zero the entries above the diagonal (strict: on and above). */
static void mask_upper(float *A, int n, int C, int strict) {
    for (int t = 0; t < n; t++)
        for (int s = strict ? t : t + 1; s < n; s++) A[t * C + s] = 0.0f;
}

void lina_dplr_chunk_backward(const lina_dplr_job *j) {
    int K = j->K, V = j->V, C = lina_dplr_chunk_rows(j);
    size_t kv = (size_t)K * V, kvr = round16(kv), ck = round16((size_t)C * K);
    size_t cc = round16((size_t)C * C);
    int n_chunks = (j->T + C - 1) / C;
    lina_dplr_chunk c;
    float *p = j->ws + lina_dplr_chunk_carve(j, j->ws, &c);
    float *S = p; p += kvr;
    float *starts = p; p += (size_t)n_chunks * kvr;
    float *dS = p; p += kvr;
    float *dSp = p; p += kvr;
    float *dAqk = p; p += cc;
    float *dAqb = p; p += cc;
    float *dAak = p; p += cc;
    float *dAab = p; p += cc;
    float *dU = p; p += round16((size_t)C * V); /* becomes dR in place */
    float *dQt = p; p += ck;
    float *dAt = p; p += ck;
    float *dKc = p; p += ck;
    float *dBc = p; p += ck;
    float *dG = p; p += ck;
    float *dGp = p; p += ck;
    float *dr = p; p += ck;
    float *dk = p; p += ck;
    float *da = p; p += ck;
    float *db = p; p += ck;
    float *dGC = p;

    lina_dplr_chunk_start_states(j, &c, S, starts);
    for (size_t i = 0; i < kv; i++) dS[i] = j->dht ? j->dht[i] : 0.0f;

    for (int ci = n_chunks - 1; ci >= 0; ci--) {
        int t0 = ci * C, n = j->T - t0 < C ? j->T - t0 : C;
        ptrdiff_t offk = (ptrdiff_t)t0 * j->sk, offv = (ptrdiff_t)t0 * j->sv;
        const float *S0 = starts + (size_t)ci * kv;
        const float *dO = j->dout + offv, *v = j->v + offv;
        float *dv = j->dv + offv;
        lina_dplr_chunk_prepare(j, t0, n, &c);
        lina_dplr_chunk_solve_u(j, t0, n, S0, &c);

        lina_dplr_gemm(0, 1, n, K, V, j->scale, dO, j->sv, S0, V, 0.0f, dQt, K);
        lina_dplr_gemm(0, 1, n, n, V, j->scale, dO, j->sv, v, j->sv, 0.0f, dAqk, C);
        lina_dplr_gemm(0, 1, n, n, V, j->scale, dO, j->sv, c.U, V, 0.0f, dAqb, C);
        mask_upper(dAqk, n, C, 0);
        mask_upper(dAqb, n, C, 0);
        lina_dplr_gemm(1, 0, n, V, n, j->scale, c.Aqk, C, dO, j->sv, 0.0f, dv, j->sv);
        lina_dplr_gemm(0, 0, n, V, K, 1.0f, c.Kc, K, dS, V, 1.0f, dv, j->sv);
        lina_dplr_gemm(1, 0, n, V, n, j->scale, c.Aqb, C, dO, j->sv, 0.0f, dU, V);
        lina_dplr_gemm(0, 0, n, V, K, 1.0f, c.Bc, K, dS, V, 1.0f, dU, V);
        for (int t = n - 2; t >= 0; t--) { /* dR_t = dU_t + sum_{s>t} Aab[s,t] dR_s */
            float *drt = dU + (size_t)t * V;
            for (int s = t + 1; s < n; s++) {
                float m = c.Aab[s * C + t];
                const float *drs = dU + (size_t)s * V;
                for (int x = 0; x < V; x++) drt[x] += m * drs[x];
            }
        }
        const float *dR = dU;
        lina_dplr_gemm(1, 0, n, V, n, 1.0f, c.Aak, C, dR, V, 1.0f, dv, j->sv);
        lina_dplr_gemm(0, 1, n, n, V, 1.0f, dR, V, c.U, V, 0.0f, dAab, C);
        lina_dplr_gemm(0, 1, n, n, V, 1.0f, dR, V, v, j->sv, 0.0f, dAak, C);
        mask_upper(dAab, n, C, 1);
        mask_upper(dAak, n, C, 1);
        lina_dplr_gemm(0, 1, n, K, V, 1.0f, dR, V, S0, V, 0.0f, dAt, K);
        lina_dplr_gemm(0, 1, n, K, V, 1.0f, v, j->sv, dS, V, 0.0f, dKc, K);
        lina_dplr_gemm(0, 1, n, K, V, 1.0f, c.U, V, dS, V, 0.0f, dBc, K);

        /* dS0 */
        for (int i = 0; i < K; i++) {
            float decay = expf((float)c.GC[i]);
            double acc = 0;
            for (int x = 0; x < V; x++) {
                acc += (double)dS[i * V + x] * S0[i * V + x];
                dSp[i * V + x] = decay * dS[i * V + x];
            }
            dGC[i] = (float)(decay * acc);
        }
        lina_dplr_gemm(1, 0, K, V, n, j->scale, c.Qt, K, dO, j->sv, 1.0f, dSp, V);
        lina_dplr_gemm(1, 0, K, V, n, 1.0f, c.At, K, dR, V, 1.0f, dSp, V);

        /* the row scalings */
        for (int t = 0; t < n; t++)
            for (int i = 0; i < K; i++) {
                size_t x = (size_t)t * K + i;
                float tail = expf((float)(c.GC[i] - c.G[x]));
                float kb = dKc[x] * c.Kc[x] + dBc[x] * c.Bc[x];
                dr[x] = dQt[x] * expf((float)c.G[x]);
                da[x] = dAt[x] * expf((float)c.Gp[x]);
                dk[x] = dKc[x] * tail;
                db[x] = dBc[x] * tail;
                dG[x] = dQt[x] * c.Qt[x] - kb;
                dGp[x] = dAt[x] * c.At[x];
                dGC[i] += kb;
            }
        /* the score matrices */
        pair_scores2_bwd(n, K, C, j->r + offk, c.G, j->k + offk, j->b + offk, c.G, j->sk, 0, dAqk,
                         dAqb, dr, dG, dk, db, dG, c.E, c.scratch);
        pair_scores2_bwd(n, K, C, j->a + offk, c.Gp, j->k + offk, j->b + offk, c.G, j->sk, 1, dAak,
                         dAab, da, dGp, dk, db, dG, c.E, c.scratch);

        for (int i = 0; i < K; i++) {
            double accG = 0, accGp = 0;
            for (int t = n - 1; t >= 0; t--) {
                accG += dG[(size_t)t * K + i];
                float *dw = j->dw + offk + t * j->sk;
                dw[i] = j->w[offk + t * j->sk + i] < LINA_DPLR_W_FLOOR
                            ? 0.0f
                            : (float)(accG + accGp + dGC[i]);
                accGp += dGp[(size_t)t * K + i];
            }
        }
        for (int t = 0; t < n; t++) {
            size_t row = (size_t)t * K;
            ptrdiff_t o = offk + t * j->sk;
            memcpy(j->dr + o, dr + row, sizeof(float) * K);
            memcpy(j->dk + o, dk + row, sizeof(float) * K);
            memcpy(j->da + o, da + row, sizeof(float) * K);
            memcpy(j->db + o, db + row, sizeof(float) * K);
        }
        float *tmp = dS;
        dS = dSp;
        dSp = tmp;
    }
    if (j->dh0) memcpy(j->dh0, dS, sizeof(float) * kv);
}
