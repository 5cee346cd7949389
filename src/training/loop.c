/* One training step: gradient accumulation over micro-batches, global-norm
 * clipping, warmup + cosine learning rate, AdamW; non-finite loss or gradient
 * skips the update. Batches of step s come from (seed, s) only, so results are
 * reproducible across thread counts and resumes. */
#include <math.h>
#include <stdlib.h>

#include "../core/internal.h"
#include "lina/model.h"

#define EVAL_STREAM (1ull << 62)

static lina_status alloc_tokens(const lina_train_config *c, int32_t **inp, int32_t **tgt) {
    size_t n = (size_t)c->batch * c->seq;
    *inp = malloc(sizeof(int32_t) * n);
    *tgt = malloc(sizeof(int32_t) * n);
    if (!*inp || !*tgt) {
        free(*inp);
        free(*tgt);
        return lina_fail(LINA_ERR_OOM, "training: out of memory for a %d x %d batch", c->batch, c->seq);
    }
    return LINA_OK;
}

lina_status lina_train_step(lina_model *m, lina_adamw *opt, const lina_text_data *data,
                            const lina_train_config *c, int64_t step, lina_train_result *r) {
    if (c->batch < 1 || c->seq < 1 || c->accum < 1)
        return lina_fail(LINA_ERR_INVALID_ARG, "training: batch = %d, seq = %d, accum = %d must be >= 1",
                         c->batch, c->seq, c->accum);
    int32_t *inp, *tgt;
    lina_status st = alloc_tokens(c, &inp, &tgt);
    if (st != LINA_OK) return st;
    lina_model_zero_grads(m);
    double total = 0;
    int bad = 0;
    for (int micro = 0; micro < c->accum && st == LINA_OK && !bad; micro++) {
        uint64_t stream = (uint64_t)step * (uint64_t)c->accum + (uint64_t)micro;
        st = lina_text_data_batch(data, 0, c->batch, c->seq, c->seed, stream, inp, tgt);
        float loss = 0;
        if (st == LINA_OK) st = lina_model_forward(m, c->batch, c->seq, inp, tgt, NULL, &loss);
        if (st == LINA_ERR_NONFINITE) { /* an op met a NaN/Inf activation */
            bad = 1;
            st = LINA_OK;
            break;
        }
        if (st == LINA_OK && !isfinite(loss)) bad = 1;
        if (st == LINA_OK && !bad) st = lina_model_backward(m, 1.0f / c->accum);
        if (st == LINA_ERR_NONFINITE) {
            bad = 1;
            st = LINA_OK;
        }
        total += loss;
    }
    free(inp);
    free(tgt);
    if (st != LINA_OK) return st;
    r->lr = lina_lr_schedule(step, c->warmup, c->steps, c->lr, c->min_lr);
    r->loss = bad ? NAN : (float)(total / c->accum);
    r->grad_norm = bad ? NAN : lina_clip_grad_norm(m, c->clip);
    r->skipped = bad || !isfinite(r->grad_norm);
    if (r->skipped) {
        lina_model_zero_grads(m);
        return LINA_OK;
    }
    return lina_adamw_step(opt, m, r->lr);
}

lina_status lina_eval_loss(lina_model *m, const lina_text_data *data, const lina_train_config *c,
                           int n_batches, float *loss) {
    int32_t *inp, *tgt;
    lina_status st = alloc_tokens(c, &inp, &tgt);
    if (st != LINA_OK) return st;
    double total = 0;
    for (int i = 0; i < n_batches && st == LINA_OK; i++) {
        float l = 0;
        st = lina_text_data_batch(data, 1, c->batch, c->seq, c->seed, EVAL_STREAM + (uint64_t)i, inp, tgt);
        if (st == LINA_OK) st = lina_model_forward(m, c->batch, c->seq, inp, tgt, NULL, &l);
        total += l;
    }
    free(inp);
    free(tgt);
    if (st == LINA_OK) *loss = (float)(total / (n_batches > 0 ? n_batches : 1));
    return st;
}
