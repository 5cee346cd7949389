/* The LM head at the scored positions only (rows whose target is >= 0).
 *
 * Tasks that score a few positions per sequence (MQAR: 64 answers in 512
 * tokens, vocabulary 8192) spend most of a dense step on the head GEMM and
 * the softmax over rows whose loss weight is 0. Here, with S scored rows out
 * of N = B T:
 *
 *   forward:  xs = xf[rows]                  (S, D)   gather
 *             logits = xs W_head^T           (S, V)
 *             loss = mean_s CE(logits_s, target_s)
 *   backward: dlogits = (softmax - onehot) / S         (S, V)
 *             dW_head += dlogits^T xs;  dxs = dlogits W_head   (S, D)
 *             dxf = 0;  dxf[rows] = dxs               scatter, then the trunk
 *
 * which is the dense path's loss and gradient exactly (the dense dlogits are
 * 0 on unscored rows) at S/N of the head's cost. The gathered rows live in
 * m->tmp and the gathered dx in m->dxn: both are free between the trunk's
 * forward and the head's backward. */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "lm_internal.h"

/* Room for N row indices and N targets. */
static lina_status reserve_rows(lina_model *m, int N) {
    if (N <= m->head_cap) return LINA_OK;
    int32_t *p = malloc(sizeof(int32_t) * 2 * (size_t)N);
    if (!p) return lina_fail(LINA_ERR_OOM, "model: out of memory for %d scored rows", N);
    free(m->head_rows);
    m->head_rows = p;
    m->head_targets = p + N;
    m->head_cap = N;
    return LINA_OK;
}

lina_status lina_model_forward_scored(lina_model *m, int B, int T, const int32_t *tokens,
                                      const int32_t *targets, float *logits, float *loss,
                                      int *n_scored) {
    if (!m || !tokens || !targets)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_model_forward_scored: NULL argument");
    if (B < 1 || T < 1 || (double)B * T > 1e8)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_model_forward_scored: B = %d, T = %d out of range",
                         B, T);
    if (m->cuda) return lina_cuda_lm_forward_scored(m->cuda, B, T, tokens, targets, logits, loss, n_scored);
    int N = B * T, D = m->cfg.dim, Vb = m->cfg.vocab_size, S = 0;
    for (int n = 0; n < N; n++) {
        if (targets[n] >= Vb)
            return lina_fail(LINA_ERR_INVALID_ARG, "model: target[%d] = %d >= vocab %d", n,
                             targets[n], Vb);
        S += targets[n] >= 0;
    }
    if (S == 0)
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "lina_model_forward_scored: no target >= 0 among %d positions", N);
    lina_status st = lina_lm_trunk(m, B, T, tokens, NULL, 0);
    if (st == LINA_OK) st = reserve_rows(m, N);
    if (st != LINA_OK) return st;
    float *xs = m->tmp; /* (S, D) gathered final hidden rows */
    for (int n = 0, s = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        m->head_rows[s] = n;
        m->head_targets[s] = targets[n];
        memcpy(xs + (size_t)s * D, m->xf + (size_t)n * D, sizeof(float) * D);
        s++;
    }
    lina_linear_forward(S, D, Vb, xs, m->lm_head.w, NULL, m->probs); /* (S, V) logits */
    if (logits) memcpy(logits, m->probs, sizeof(float) * (size_t)S * Vb);
    double l = lina_cross_entropy_forward(S, Vb, m->probs, m->head_targets, m->probs, &m->n_valid,
                                          m->threads);
    if (loss) *loss = (float)l;
    if (n_scored) *n_scored = S;
    m->n_head_rows = S;
    m->have_targets = 1;
    return LINA_OK;
}

/* The head's backward for a scored forward: leaves d(loss)/d(xf) in m->dxf. */
void lina_lm_head_at_backward(lina_model *m, float grad_scale) {
    int N = m->B * m->T, S = m->n_head_rows, D = m->cfg.dim, Vb = m->cfg.vocab_size;
    float *dlogits = m->probs, *dxs = m->dxn; /* (S, V), (S, D) */
    lina_cross_entropy_backward(S, Vb, m->probs, m->head_targets, m->n_valid, grad_scale, dlogits,
                                m->threads);
    lina_linear_backward(S, D, Vb, m->tmp, m->lm_head.w, dlogits, dxs, 1, m->lm_head.g, NULL);
    memset(m->dxf, 0, sizeof(float) * (size_t)N * D);
    for (int s = 0; s < S; s++)
        memcpy(m->dxf + (size_t)m->head_rows[s] * D, dxs + (size_t)s * D, sizeof(float) * D);
}
