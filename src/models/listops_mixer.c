/* Non-causal linear attention over a packed batch, forward and backward.
 * Per sequence s (n tokens) and head h, with Fq = phi(q), Fk = phi(k), V
 * (n, d) blocks of the (N, H, d) arrays (row stride D = H d):
 *   S = Fk^T V (d, d),  z = Fk^T 1 (d)
 *   num = Fq S (n, d),  den = Fq z (n),  O = num / den (row-wise)
 * Backward, given dO:
 *   G = dO / den (row-wise),  c_i = -(dO_i . O_i) / den_i
 *   dFq = G S^T + c z^T,  dS = Fq^T G,  dz = Fq^T c
 *   dFk = V dS^T + 1 dz^T,  dV = Fk dS
 * The products are sgemm calls on strided blocks, single-threaded inside the
 * (sequence, head) loop's region: results do not depend on the thread count. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/gemm_fixed.h"
#include "listops_internal.h"

/* S = Fk^T V and z = Fk^T 1 of one (sequence, head) block. */
static void kv_state(int n, int d, int D, const float *fk, const float *v, float *S, float *z) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, n, 1.0f, fk, D, v, D, 0.0f, S, d);
    for (int a = 0; a < d; a++) z[a] = 0;
    for (int i = 0; i < n; i++)
        for (int a = 0; a < d; a++) z[a] += fk[(size_t)i * D + a];
}

void listops_linear_attn_forward(int B, const int64_t *cu, int H, int d, const float *fq,
                                 const float *fk, const float *v, float *den, float *o,
                                 int threads) {
    int D = H * d;
#pragma omp parallel num_threads(threads)
    {
        lina_blas_one_thread();
#pragma omp for collapse(2) schedule(dynamic)
        for (int s = 0; s < B; s++)
            for (int h = 0; h < H; h++) {
                float S[LISTOPS_MAX_HEAD * LISTOPS_MAX_HEAD], z[LISTOPS_MAX_HEAD];
                int n = (int)(cu[s + 1] - cu[s]);
                size_t off = (size_t)cu[s] * D + (size_t)h * d;
                kv_state(n, d, D, fk + off, v + off, S, z);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, d, 1.0f, fq + off, D, S, d,
                            0.0f, o + off, D);
                for (int i = 0; i < n; i++) {
                    const float *qi = fq + off + (size_t)i * D;
                    float *oi = o + off + (size_t)i * D, dn = 0;
                    for (int a = 0; a < d; a++) dn += qi[a] * z[a];
                    for (int b = 0; b < d; b++) oi[b] /= dn;
                    den[(cu[s] + i) * H + h] = dn;
                }
            }
    }
}

void listops_linear_attn_backward(int B, const int64_t *cu, int H, int d, const float *fq,
                                  const float *fk, const float *v, const float *den,
                                  const float *o, const float *dout, float *dfq, float *dfk,
                                  float *dv, int threads) {
    int D = H * d;
#pragma omp parallel num_threads(threads)
    {
        lina_blas_one_thread();
#pragma omp for collapse(2) schedule(dynamic)
        for (int s = 0; s < B; s++)
            for (int h = 0; h < H; h++) {
                float S[LISTOPS_MAX_HEAD * LISTOPS_MAX_HEAD], z[LISTOPS_MAX_HEAD];
                float dS[LISTOPS_MAX_HEAD * LISTOPS_MAX_HEAD], dz[LISTOPS_MAX_HEAD];
                int n = (int)(cu[s + 1] - cu[s]);
                size_t off = (size_t)cu[s] * D + (size_t)h * d;
                kv_state(n, d, D, fk + off, v + off, S, z);
                /* G = dO / den is kept in dfq's block until dS = Fq^T G is formed; then each
                 * row is replaced by its dFq row (which needs only that row of G) */
                float *G = dfq + off;
                for (int b = 0; b < d; b++) dz[b] = 0;
                for (int i = 0; i < n; i++) {
                    const float *di = dout + off + (size_t)i * D, *oi = o + off + (size_t)i * D;
                    const float *qi = fq + off + (size_t)i * D;
                    float *gi = G + (size_t)i * D, dn = den[(cu[s] + i) * H + h], c = 0;
                    for (int b = 0; b < d; b++) {
                        gi[b] = di[b] / dn;
                        c -= di[b] * oi[b];
                    }
                    c /= dn;
                    for (int a = 0; a < d; a++) dz[a] += c * qi[a];
                }
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, n, 1.0f, fq + off, D, G, D,
                            0.0f, dS, d);
                /* dFk = V dS^T + 1 dz^T;  dV = Fk dS */
                for (int j = 0; j < n; j++) memcpy(dfk + off + (size_t)j * D, dz, sizeof(float) * d);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d, d, 1.0f, v + off, D, dS, d,
                            1.0f, dfk + off, D);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, d, 1.0f, fk + off, D, dS, d,
                            0.0f, dv + off, D);
                /* dFq = G S^T + c z^T, row by row in place (each row needs only its own G row) */
                for (int i = 0; i < n; i++) {
                    float *gi = G + (size_t)i * D, g[LISTOPS_MAX_HEAD], c = 0;
                    const float *di = dout + off + (size_t)i * D, *oi = o + off + (size_t)i * D;
                    float dn = den[(cu[s] + i) * H + h];
                    for (int b = 0; b < d; b++) c -= di[b] * oi[b];
                    c /= dn;
                    memcpy(g, gi, sizeof(float) * d);
                    for (int a = 0; a < d; a++) {
                        float acc = c * z[a];
                        for (int b = 0; b < d; b++) acc += S[a * d + b] * g[b];
                        gi[a] = acc;
                    }
                }
            }
    }
}
