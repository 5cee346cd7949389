/* Non-causal linear attention over a packed batch, forward and backward.
 * Per sequence s and head h, with fq = phi(q), fk = phi(k) (N, H, d):
 *   S = sum_j fk_j v_j^T (d, d),  z = sum_j fk_j (d)
 *   num_i = S^T fq_i,  den_i = fq_i . z,  o_i = num_i / den_i
 * Backward, given do_i:
 *   g_i = do_i / den_i,  c_i = -(do_i . o_i) / den_i
 *   dfq_i = S g_i + c_i z,  dS = sum_i fq_i g_i^T,  dz = sum_i c_i fq_i
 *   dfk_j = dS v_j + dz,    dv_j = dS^T fk_j */
#include <stdlib.h>
#include <string.h>

#include "listops_internal.h"

void listops_linear_attn_forward(int B, const int64_t *cu, int H, int d, const float *fq,
                                 const float *fk, const float *v, float *den, float *o,
                                 int threads) {
    int D = H * d;
#pragma omp parallel for collapse(2) schedule(dynamic) num_threads(threads)
    for (int s = 0; s < B; s++)
        for (int h = 0; h < H; h++) {
            float S[LISTOPS_MAX_HEAD * LISTOPS_MAX_HEAD] = {0}, z[LISTOPS_MAX_HEAD] = {0};
            for (int64_t j = cu[s]; j < cu[s + 1]; j++) {
                const float *kj = fk + j * D + h * d, *vj = v + j * D + h * d;
                for (int a = 0; a < d; a++) {
                    z[a] += kj[a];
                    for (int b = 0; b < d; b++) S[a * d + b] += kj[a] * vj[b];
                }
            }
            for (int64_t i = cu[s]; i < cu[s + 1]; i++) {
                const float *qi = fq + i * D + h * d;
                float *oi = o + i * D + h * d, dn = 0;
                for (int a = 0; a < d; a++) dn += qi[a] * z[a];
                for (int b = 0; b < d; b++) oi[b] = 0;
                for (int a = 0; a < d; a++)
                    for (int b = 0; b < d; b++) oi[b] += qi[a] * S[a * d + b];
                for (int b = 0; b < d; b++) oi[b] /= dn;
                den[i * H + h] = dn;
            }
        }
}

void listops_linear_attn_backward(int B, const int64_t *cu, int H, int d, const float *fq,
                                  const float *fk, const float *v, const float *den,
                                  const float *o, const float *dout, float *dfq, float *dfk,
                                  float *dv, int threads) {
    int D = H * d;
#pragma omp parallel for collapse(2) schedule(dynamic) num_threads(threads)
    for (int s = 0; s < B; s++)
        for (int h = 0; h < H; h++) {
            float S[LISTOPS_MAX_HEAD * LISTOPS_MAX_HEAD] = {0}, z[LISTOPS_MAX_HEAD] = {0};
            float dS[LISTOPS_MAX_HEAD * LISTOPS_MAX_HEAD] = {0}, dz[LISTOPS_MAX_HEAD] = {0};
            for (int64_t j = cu[s]; j < cu[s + 1]; j++) {
                const float *kj = fk + j * D + h * d, *vj = v + j * D + h * d;
                for (int a = 0; a < d; a++) {
                    z[a] += kj[a];
                    for (int b = 0; b < d; b++) S[a * d + b] += kj[a] * vj[b];
                }
            }
            for (int64_t i = cu[s]; i < cu[s + 1]; i++) {
                const float *qi = fq + i * D + h * d, *oi = o + i * D + h * d;
                const float *di = dout + i * D + h * d;
                float *dqi = dfq + i * D + h * d, g[LISTOPS_MAX_HEAD], c = 0;
                float dn = den[i * H + h];
                for (int b = 0; b < d; b++) {
                    g[b] = di[b] / dn;
                    c -= di[b] * oi[b];
                }
                c /= dn;
                for (int a = 0; a < d; a++) {
                    float acc = c * z[a];
                    for (int b = 0; b < d; b++) acc += S[a * d + b] * g[b];
                    dqi[a] = acc;
                    dz[a] += c * qi[a];
                    for (int b = 0; b < d; b++) dS[a * d + b] += qi[a] * g[b];
                }
            }
            for (int64_t j = cu[s]; j < cu[s + 1]; j++) {
                const float *kj = fk + j * D + h * d, *vj = v + j * D + h * d;
                float *dkj = dfk + j * D + h * d, *dvj = dv + j * D + h * d;
                for (int b = 0; b < d; b++) dvj[b] = 0;
                for (int a = 0; a < d; a++) {
                    float acc = dz[a];
                    for (int b = 0; b < d; b++) {
                        acc += dS[a * d + b] * vj[b];
                        dvj[b] += dS[a * d + b] * kj[a];
                    }
                    dkj[a] = acc;
                }
            }
        }
}
