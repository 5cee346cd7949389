/* In-context regression model: gradients by finite differences for every
 * parameterization, thread-count independence, training reaching the one-step
 * GD optimum, bad configurations rejected. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "util/check.h"

static void fd_gradients(lina_icl_param param, const char *name) {
    lina_icl_config c = lina_icl_config_default();
    c.d = 3, c.n_ctx = 5, c.layers = 3, c.param = param, c.sigma_max = 1, c.init_std = 0.1f;
    lina_icl_model *m;
    if (lina_icl_create(&c, 42, &m) != LINA_OK) {
        test_report(0, name, "%s", lina_last_error());
        return;
    }
    int B = 4, P = lina_icl_n_params(m);
    size_t tok = (size_t)(c.n_ctx + 1) * (c.d + 1);
    float *tokens = alloc_floats(tok * B), *targets = alloc_floats(B), *sig = alloc_floats(B);
    float *grad = alloc_floats(P), *fd = alloc_floats(P);
    uint64_t s = 9;
    lina_icl_sample(&c, &s, B, tokens, targets, sig);
    double l0;
    lina_icl_loss(m, B, tokens, targets, &l0, grad);
    float *p = lina_icl_params(m);
    for (int i = 0; i < P; i++) {
        float save = p[i];
        double lp, lm, h = 1e-3;
        p[i] = save + (float)h;
        lina_icl_loss(m, B, tokens, targets, &lp, NULL);
        p[i] = save - (float)h;
        lina_icl_loss(m, B, tokens, targets, &lm, NULL);
        p[i] = save;
        fd[i] = (float)((lp - lm) / (2 * h));
    }
    if (param == LINA_ICL_GDPP) /* w_xy and w_yy are fixed at 0 in GD++ */
        for (int l = 0; l < c.layers; l++) fd[l * 4 + 1] = fd[l * 4 + 3] = 0;
    check_close(name, grad, fd, P, 5e-3);
    free(tokens), free(targets), free(sig), free(grad), free(fd);
    lina_icl_free(m);
}

static void thread_independence(void) {
    lina_icl_config c = lina_icl_config_default();
    c.layers = 2, c.param = LINA_ICL_FULL, c.sigma_max = 2;
    double loss[2];
    float *params[2];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        lina_icl_model *m;
        lina_icl_create(&c, 3, &m);
        lina_icl_train(m, 20, 100, 1e-3f, 1.0f, 5, NULL, NULL);
        params[t] = alloc_floats(lina_icl_n_params(m));
        memcpy(params[t], lina_icl_params(m), sizeof(float) * lina_icl_n_params(m));
        lina_icl_eval_result r;
        lina_icl_eval(m, 200, 7, &r);
        loss[t] = r.loss;
        if (t == 1) {
            test_report(!memcmp(params[0], params[1], sizeof(float) * lina_icl_n_params(m)) &&
                            loss[0] == loss[1],
                        "icl training identical with 1 and 2 threads", "loss %.9g vs %.9g", loss[0],
                        loss[1]);
        }
        lina_icl_free(m);
    }
    free(params[0]), free(params[1]);
}

/* One layer at sigma = 0 learns one preconditioned GD step: with d = 4, N = 10
 * the optimal single GD step gives 1/2 d(d+1)/(N+d+1) = 0.667. */
static void one_layer_matches_gd(void) {
    lina_icl_config c = lina_icl_config_default();
    c.d = 4, c.n_ctx = 10, c.layers = 1, c.param = LINA_ICL_GDPP;
    lina_icl_model *m;
    lina_icl_create(&c, 1, &m);
    lina_icl_train(m, 600, 256, 5e-3f, 1.0f, 2, NULL, NULL);
    lina_icl_eval_result r;
    lina_icl_eval(m, 20000, 3, &r);
    double gd = 0.5 * 4 * 5 / 15.0;
    test_report(fabs(r.adjusted_loss - gd) < 0.05 * gd, "1-layer GD++ reaches the optimal GD step",
                "adjusted loss %.4f vs 1/2 d(d+1)/(N+d+1) = %.4f", r.adjusted_loss, gd);
    test_report(fabs(r.const_rr) < 1e-6 && fabs(r.ada_rr) < 1e-6,
                "ridge baselines are exact without noise", "ConstRR %.2e AdaRR %.2e", r.const_rr,
                r.ada_rr);
    lina_icl_free(m);
}

static void bad_config(void) {
    lina_icl_config c = lina_icl_config_default();
    lina_icl_model *m = NULL;
    c.d = 0;
    lina_status st = lina_icl_create(&c, 1, &m);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "d = 0"), "d = 0 rejected",
                "%s", lina_last_error());
    c = lina_icl_config_default(), c.n_ctx = -1;
    st = lina_icl_create(&c, 1, &m);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "N = -1"), "N < 1 rejected",
                "%s", lina_last_error());
    c = lina_icl_config_default(), c.sigma_max = NAN;
    st = lina_icl_create(&c, 1, &m);
    test_report(st == LINA_ERR_INVALID_ARG, "NaN sigma rejected", "%s", lina_last_error());
}

int main(void) {
    fd_gradients(LINA_ICL_FULL, "icl FULL gradients == finite differences");
    fd_gradients(LINA_ICL_DIAG, "icl DIAG gradients == finite differences");
    fd_gradients(LINA_ICL_GDPP, "icl GD++ gradients == finite differences");
    thread_independence();
    one_layer_matches_gd();
    bad_config();
    return test_finish();
}
