/* MQAR (Zoology): the generator's layout (keys/values in their halves, every
 * key queried once after the pairs at an even offset, only answers scored,
 * power-law gaps favour short ones, seeds reproduce), config errors, and a
 * small DeltaNet / Gated DeltaNet that learns recall far above chance. */
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "util/check.h"

static void check_layout(const lina_mqar_config *c, int n, uint64_t seed) {
    int T = c->seq, K = c->pairs, V = c->vocab, half = V / 2;
    int32_t *x = malloc(sizeof(int32_t) * n * T), *y = malloc(sizeof(int32_t) * n * T);
    int ok_gen = lina_mqar_generate(c, n, seed, x, y) == LINA_OK;
    int ok_kv = 1, ok_q = 1, ok_scored = 1, ok_range = 1;
    long gap_small = 0, gap_large = 0, S = (T - 2 * K) / 2;
    for (int e = 0; ok_gen && e < n; e++) {
        const int32_t *xe = x + (size_t)e * T, *ye = y + (size_t)e * T;
        for (int t = 0; t < T; t++) ok_range &= xe[t] >= 0 && xe[t] < V;
        for (int i = 0; i < K; i++) {
            int32_t k = xe[2 * i], v = xe[2 * i + 1];
            ok_kv &= k >= 1 && k < half && v >= half && v < V;
            for (int j = 0; j < i; j++) ok_kv &= xe[2 * j] != k && xe[2 * j + 1] != v;
            ok_scored &= ye[2 * i] == -1 && ye[2 * i + 1] == -1;
            /* exactly one scored query of key i, after the pairs, at an even offset */
            int found = 0;
            for (int t = 2 * K; t < T; t++)
                if (ye[t] >= 0 && xe[t] == k) {
                    found++;
                    ok_q &= ye[t] == v && (t - 2 * K) % 2 == 0;
                    long g = (t - 2 * K) / 2;
                    if (g < S / 4) gap_small++;
                    else if (g >= 3 * S / 4) gap_large++;
                }
            ok_q &= found == 1;
        }
        int answers = 0;
        for (int t = 0; t < T; t++) answers += ye[t] >= 0;
        ok_scored &= answers == K;
    }
    char name[96];
    snprintf(name, sizeof name, "mqar generate T=%d K=%d V=%d", T, K, V);
    test_report(ok_gen, name, "%s", lina_last_error());
    test_report(ok_range, "mqar tokens in [0, V)", "a token outside the vocabulary");
    test_report(ok_kv, "mqar keys in [1, V/2), values in [V/2, V), distinct", "bad key/value");
    test_report(ok_q, "mqar every key queried once after the pairs, answer = its value",
                "bad query");
    test_report(ok_scored, "mqar only the K answer positions are scored", "bad targets");
    /* power law a = 0.01: P(g) ~ (g+1)^-0.99, the first quarter of gaps much likelier */
    test_report(gap_small > 3 * gap_large, "mqar gaps follow the power law",
                "%ld gaps in the first quarter vs %ld in the last", gap_small, gap_large);
    /* the same seed gives the same data, another seed other data */
    int32_t *x2 = malloc(sizeof(int32_t) * n * T), *y2 = malloc(sizeof(int32_t) * n * T);
    lina_mqar_generate(c, n, seed, x2, y2);
    int same = !memcmp(x, x2, sizeof(int32_t) * n * T) && !memcmp(y, y2, sizeof(int32_t) * n * T);
    lina_mqar_generate(c, n, seed + 1, x2, y2);
    int differ = memcmp(x, x2, sizeof(int32_t) * n * T) != 0;
    test_report(same && differ, "mqar seeded", "same seed same data %d, new seed new data %d",
                same, differ);
    free(x);
    free(y);
    free(x2);
    free(y2);
}

static void check_errors(void) {
    lina_mqar_config c = lina_mqar_config_default();
    c.pairs = 129; /* 4 * 129 > 512 */
    test_report(lina_mqar_config_check(&c) == LINA_ERR_INVALID_ARG, "mqar rejects too many pairs",
                "accepted");
    c = lina_mqar_config_default();
    c.seq = 0;
    test_report(lina_mqar_config_check(&c) == LINA_ERR_INVALID_ARG, "mqar rejects seq 0", "accepted");
    c = lina_mqar_config_default();
    c.vocab = 500; /* <= seq */
    test_report(lina_mqar_config_check(&c) == LINA_ERR_INVALID_ARG, "mqar rejects vocab <= seq",
                "accepted");
    c.vocab = 1000, c.seq = 16, c.pairs = 4;
    test_report(lina_mqar_config_check(&c) == LINA_OK, "mqar accepts a small valid config", "%s",
                lina_last_error());
}

/* Train a 2-layer model on (T 32, K 4, V 64) and check the test accuracy. */
static void check_learns(lina_mixer_kind mixer, double min_acc) {
    lina_mqar_config c = {.vocab = 64, .seq = 32, .pairs = 4, .power_a = 0.01f};
    int n_train = 2000, n_test = 100, T = c.seq;
    int32_t *xtr = malloc(sizeof(int32_t) * n_train * T), *ytr = malloc(sizeof(int32_t) * n_train * T);
    int32_t *xte = malloc(sizeof(int32_t) * n_test * T), *yte = malloc(sizeof(int32_t) * n_test * T);
    lina_mqar_generate(&c, n_train, 1, xtr, ytr);
    lina_mqar_generate(&c, n_test, 11, xte, yte);
    lina_model_config mc = lina_model_config_default();
    mc.vocab_size = c.vocab;
    mc.dim = 32;
    mc.n_layers = 2;
    mc.n_heads = 1;
    for (int l = 0; l < 2; l++) mc.mixer[l] = mixer;
    lina_model *m = NULL;
    double acc0 = 0, acc = 0;
    int ok = lina_model_create(&mc, 1, &m) == LINA_OK;
    if (ok) lina_model_set_threads(m, 1);
    ok = ok && lina_mqar_accuracy(m, T, n_test, xte, yte, 8, &acc0, NULL) == LINA_OK;
    lina_mqar_train_config tc = lina_mqar_train_default();
    tc.steps = 800;
    tc.batch = 16;
    tc.warmup = 40;
    tc.lr = 3e-3f;
    ok = ok && lina_mqar_train(m, T, n_train, xtr, ytr, &tc, NULL, NULL, NULL) == LINA_OK;
    ok = ok && lina_mqar_accuracy(m, T, n_test, xte, yte, 8, &acc, NULL) == LINA_OK;
    char name[96];
    snprintf(name, sizeof name, "mqar %s learns recall (chance 1/32)", lina_mixer_name(mixer));
    test_report(ok && acc0 < 0.15 && acc >= min_acc, name,
                "%s; accuracy %.3f before, %.3f after training (need >= %.2f)",
                ok ? "" : lina_last_error(), acc0, acc, min_acc);
    lina_model_free(m);
    free(xtr);
    free(ytr);
    free(xte);
    free(yte);
}

int main(void) {
    lina_mqar_config main_cfg = lina_mqar_config_default(); /* T 512, K 64, V 8192 */
    check_layout(&main_cfg, 20, 7);
    lina_mqar_config small = {.vocab = 8192, .seq = 64, .pairs = 4, .power_a = 0.01f};
    check_layout(&small, 200, 3);
    check_errors();
    check_learns(LINA_MIXER_DELTANET, 0.6);
    check_learns(LINA_MIXER_GATED_DELTANET, 0.6);
    return test_finish();
}
