/* GPU tests of the language model's training path (lina_model_use_cuda,
 * src/cuda/lm_cuda.c) against the same model on the CPU: for every mixer with
 * a GPU path, with and without short convolutions and a tied head, at odd
 * sizes and sequences longer than one chunk:
 *   - loss and scored logits of lina_model_forward_scored: relative 1e-5;
 *   - every parameter's gradient after lina_model_backward: relative RMS
 *     <= 1e-4 per tensor (the GPU sums in another order, the attention runs
 *     chunkwise with another chunking);
 *   - the parameters after three AdamW steps with clipping: relative RMS
 *     <= 1e-3 (Adam divides by sqrt(v): where a gradient is near 0 its
 *     update is ~lr sign(g), so gradient differences of 1e-6 can move a few
 *     entries by lr; seen up to 2e-4);
 * plus the refusals (a mixer without a GPU path, logits from the dense
 * forward). Needs a CUDA device. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_util.h"

static lina_model *make_model(lina_mixer_kind kind, int conv, int tie, uint64_t seed, int dim) {
    lina_model_config c = lina_model_config_default();
    c.vocab_size = 97;
    c.dim = dim;
    c.n_layers = 2;
    c.n_heads = 2; /* K = V = dim / 2 */
    c.tie_embeddings = tie;
    c.short_conv_all = conv;
    for (int l = 0; l < c.n_layers; l++) c.mixer[l] = kind;
    lina_model *m = NULL;
    if (lina_model_create(&c, seed, &m) != LINA_OK) {
        printf("FAIL create %s: %s\n", lina_mixer_name(kind), lina_last_error());
        exit(1);
    }
    lina_model_set_threads(m, 1);
    return m;
}

/* Every tensor's gradient (or value, params = 1): relative RMS per tensor. */
static void compare_tensors(const char *what, lina_model *gpu, lina_model *cpu, int params, double tol) {
    const float *a = params ? lina_model_params(gpu) : lina_model_grads(gpu);
    const float *b = params ? lina_model_params(cpu) : lina_model_grads(cpu);
    double worst = 0;
    const char *worst_name = "";
    int n = lina_model_n_tensors(cpu), bad = 0;
    for (int i = 0; i < n; i++) {
        const char *name;
        int64_t shape[4];
        size_t off;
        lina_model_tensor_info(cpu, i, &name, shape, &off);
        size_t numel = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
        double e = rel_rms(a + off, b + off, numel);
        if (!(e <= worst)) {
            worst = e;
            worst_name = name;
        }
        bad += !(e <= tol);
    }
    test_report(bad == 0, what, "%d of %d tensors above %g; worst %s: %.3g", bad, n, tol, worst_name, worst);
}

static void fill_batch(test_rng *r, int N, int V, int32_t *x, int32_t *y) {
    for (int i = 0; i < N; i++) {
        x[i] = (int32_t)(rng_uniform(r) * V) % V;
        y[i] = rng_uniform(r) < 0.3f ? (int32_t)(rng_uniform(r) * V) % V : -1;
    }
    y[0] = 1; /* at least one scored row */
}

static void run_case(lina_mixer_kind kind, int conv, int tie, int B, int T, int dim) {
    char name[160];
    snprintf(name, sizeof name, "%s conv=%d tie=%d B=%d T=%d d=%d", lina_mixer_name(kind), conv, tie, B, T, dim);
    lina_model *cpu = make_model(kind, conv, tie, 7, dim), *gpu = make_model(kind, conv, tie, 7, dim);
    if (lina_model_use_cuda(gpu) != LINA_OK) {
        test_report(0, name, "use_cuda: %s", lina_last_error());
        lina_model_free(cpu);
        lina_model_free(gpu);
        return;
    }
    const int N = B * T, V = lina_model_get_config(cpu)->vocab_size;
    int32_t *x = malloc(sizeof(int32_t) * N), *y = malloc(sizeof(int32_t) * N);
    float *lc = alloc_floats((size_t)N * V), *lg = alloc_floats((size_t)N * V);
    test_rng r;
    rng_seed(&r, 1000 + kind * 10 + conv * 2 + tie);
    fill_batch(&r, N, V, x, y);

    /* one forward + backward */
    float loss_c = 0, loss_g = 0;
    int sc = 0, sg = 0;
    lina_model_zero_grads(cpu);
    lina_model_zero_grads(gpu);
    lina_status st = lina_model_forward_scored(cpu, B, T, x, y, lc, &loss_c, &sc);
    if (!st) st = lina_model_forward_scored(gpu, B, T, x, y, lg, &loss_g, &sg);
    if (!st) st = lina_model_backward(cpu, 1.0f);
    if (!st) st = lina_model_backward(gpu, 1.0f);
    if (!st) st = lina_model_sync_host(gpu, NULL);
    if (st) {
        test_report(0, name, "%s", lina_last_error());
        goto done;
    }
    char sub[256];
    snprintf(sub, sizeof sub, "%s: loss", name);
    test_report(sc == sg && fabsf(loss_g - loss_c) <= 1e-5f * fabsf(loss_c), sub, "gpu %.8g cpu %.8g (S %d %d)",
                loss_g, loss_c, sg, sc);
    snprintf(sub, sizeof sub, "%s: scored logits", name);
    check_close(sub, lg, lc, (size_t)sc * V, 1e-5);
    snprintf(sub, sizeof sub, "%s: gradients", name);
    compare_tensors(sub, gpu, cpu, 0, 1e-4);

    /* three AdamW steps with clipping (the clip is hit: max norm 0.5) */
    lina_adamw *oc = NULL, *og = NULL;
    lina_adamw_config ac = lina_adamw_default();
    ac.lr = 3e-3f;
    lina_adamw_create(cpu, &ac, &oc);
    lina_adamw_create(gpu, &ac, &og);
    for (int step = 0; step < 3 && !st; step++) {
        fill_batch(&r, N, V, x, y);
        float l1, l2;
        lina_model_zero_grads(cpu);
        lina_model_zero_grads(gpu);
        st = lina_model_forward_scored(cpu, B, T, x, y, NULL, &l1, NULL);
        if (!st) st = lina_model_forward_scored(gpu, B, T, x, y, NULL, &l2, NULL);
        if (!st) st = lina_model_backward(cpu, 1.0f);
        if (!st) st = lina_model_backward(gpu, 1.0f);
        float n1 = lina_clip_grad_norm(cpu, 0.5f), n2 = lina_clip_grad_norm(gpu, 0.5f);
        if (!st && !(fabsf(n1 - n2) <= 1e-4f * n1)) {
            snprintf(sub, sizeof sub, "%s: gradient norm at step %d", name, step);
            test_report(0, sub, "gpu %.8g cpu %.8g", n2, n1);
        }
        if (!st) st = lina_adamw_step(oc, cpu, ac.lr);
        if (!st) st = lina_adamw_step(og, gpu, ac.lr);
    }
    if (!st) st = lina_model_sync_host(gpu, og);
    snprintf(sub, sizeof sub, "%s: parameters after 3 AdamW steps", name);
    if (st) test_report(0, sub, "%s", lina_last_error());
    else compare_tensors(sub, gpu, cpu, 1, 1e-3);
    lina_adamw_free(oc);
    lina_adamw_free(og);
done:
    free(x);
    free(y);
    free(lc);
    free(lg);
    lina_model_free(cpu);
    lina_model_free(gpu);
}

static void refusals(void) {
    lina_model *m = make_model(LINA_MIXER_HGRN2, 0, 0, 1, 80);
    lina_status st = lina_model_use_cuda(m);
    test_report(st == LINA_ERR_UNSUPPORTED && strstr(lina_last_error(), "hgrn2") && !lina_model_on_cuda(m),
                "use_cuda refuses hgrn2 by name", "status %d: %s", (int)st, lina_last_error());
    lina_model_free(m);
    m = make_model(LINA_MIXER_DELTANET, 0, 0, 1, 80);
    int32_t x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8] = {2, 3, 4, 5, 6, 7, 8, 9};
    float loss_cpu = 0, loss_gpu = 0, logits[8 * 97];
    lina_model_forward(m, 1, 8, x, y, NULL, &loss_cpu);
    st = lina_model_use_cuda(m);
    if (!st) st = lina_model_forward(m, 1, 8, x, y, NULL, &loss_gpu);
    test_report(!st && fabsf(loss_gpu - loss_cpu) <= 1e-5f * loss_cpu, "dense forward on the GPU: loss",
                "gpu %.8g cpu %.8g", loss_gpu, loss_cpu);
    st = lina_model_forward(m, 1, 8, x, y, logits, &loss_gpu);
    test_report(st == LINA_ERR_UNSUPPORTED, "dense forward on the GPU refuses logits", "status %d", (int)st);
    /* after a device step the host copy is stale: generation refuses until a sync */
    lina_adamw *opt = NULL;
    lina_adamw_config ac = lina_adamw_default();
    lina_adamw_create(m, &ac, &opt);
    lina_gen_state *gs = NULL;
    lina_gen_state_create(m, &gs);
    st = lina_model_forward_scored(m, 1, 8, x, y, NULL, &loss_gpu, NULL);
    if (!st) st = lina_model_backward(m, 1.0f);
    if (!st) st = lina_adamw_step(opt, m, 1e-3f);
    lina_status pre = lina_model_prefill(m, gs, 3, x, NULL);
    test_report(!st && pre == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "sync_host"),
                "generation refuses stale host parameters after a GPU step", "step %d prefill %d: %s", (int)st,
                (int)pre, lina_last_error());
    lina_gen_state_reset(gs);
    st = lina_model_sync_host(m, opt);
    if (!st) st = lina_model_prefill(m, gs, 3, x, NULL);
    test_report(!st, "generation runs after lina_model_sync_host", "%s", lina_last_error());
    lina_gen_state_free(gs);
    lina_adamw_free(opt);
    x[3] = 97;
    st = lina_model_forward_scored(m, 1, 8, x, y, NULL, &loss_gpu, NULL);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "token[3] = 97"),
                "token out of range on the GPU", "%s", lina_last_error());
    lina_model_free(m);
}

int main(void) {
    if (!lina_cuda_available()) {
        printf("FAIL no CUDA device\n");
        return 1;
    }
    const lina_mixer_kind kinds[] = {LINA_MIXER_GATED_DELTANET, LINA_MIXER_DELTANET, LINA_MIXER_GLA,
                                     LINA_MIXER_MAMBA2,         LINA_MIXER_RETNET,   LINA_MIXER_LINEAR,
                                     LINA_MIXER_SOFTMAX};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        run_case(kinds[i], 0, 0, 3, 37, 80);
        run_case(kinds[i], 1, 1, 2, 150, 80);
        run_case(kinds[i], 1, 1, 4, 512, 128); /* MQAR's longest setting, K = V = 64 */
    }
    refusals();
    return test_finish();
}
