/* MQAR (Zoology): the generator's layout (keys/values in their halves, every
 * key queried once after the pairs at an even offset, only answers scored,
 * power-law gaps favour short ones, seeds reproduce), config errors, the LM
 * head at the scored rows only against the dense head (loss, logits, every
 * gradient), training split into resumed pieces equal to one piece, and a
 * small DeltaNet / Gated DeltaNet that learns recall far above chance. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lina.h"
#include "util/check.h"
#include "util/fixture.h"

#ifndef MIX_LEARN_STEPS
#define MIX_LEARN_STEPS 800
#endif
#define MIX_LEARN_MIN 0.5

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

/* lina_model_forward_scored + backward against lina_model_forward + backward
 * with the same targets (-1 = loss weight 0): loss, the scored rows' logits
 * and every parameter's gradient. Odd sizes: vocab 37, B 3, T 13, dim 24. */
static void check_scored_head(lina_mixer_kind mixer, int tie, int every_row) {
    lina_model_config mc = lina_model_config_default();
    mc.vocab_size = 37;
    mc.dim = 24;
    mc.n_layers = 2;
    mc.n_heads = 2;
    mc.tie_embeddings = tie;
    for (int l = 0; l < 2; l++) mc.mixer[l] = mixer;
    enum { B = 3, T = 13, N = B * T };
    int32_t x[N], y[N];
    test_rng r;
    rng_seed(&r, 5 + tie + 2 * every_row);
    int S = 0;
    for (int n = 0; n < N; n++) {
        x[n] = (int32_t)(rng_uniform(&r) * mc.vocab_size);
        y[n] = every_row || rng_uniform(&r) < 0.3f ? (int32_t)(rng_uniform(&r) * mc.vocab_size) : -1;
        S += y[n] >= 0;
    }
    lina_model *m = NULL;
    int ok = lina_model_create(&mc, 3, &m) == LINA_OK;
    if (ok) lina_model_set_threads(m, 1);
    size_t P = ok ? lina_model_n_params(m) : 1;
    float *g_dense = alloc_floats(P), *logits_dense = alloc_floats((size_t)N * mc.vocab_size);
    float *logits = alloc_floats((size_t)N * mc.vocab_size), *dense_rows = alloc_floats((size_t)N * mc.vocab_size);
    float loss_dense = 0, loss = 0;
    int n_scored = 0;
    if (ok) {
        lina_model_zero_grads(m);
        ok = lina_model_forward(m, B, T, x, y, logits_dense, &loss_dense) == LINA_OK &&
             lina_model_backward(m, 0.7f) == LINA_OK;
        memcpy(g_dense, lina_model_grads(m), sizeof(float) * P);
        lina_model_zero_grads(m);
        ok = ok && lina_model_forward_scored(m, B, T, x, y, logits, &loss, &n_scored) == LINA_OK &&
             lina_model_backward(m, 0.7f) == LINA_OK;
    }
    for (int n = 0, s = 0; n < N; n++)
        if (y[n] >= 0)
            memcpy(dense_rows + (size_t)s++ * mc.vocab_size, logits_dense + (size_t)n * mc.vocab_size,
                   sizeof(float) * mc.vocab_size);
    char name[160];
    snprintf(name, sizeof name, "scored head %s %s, %s: ", lina_mixer_name(mixer),
             tie ? "tied" : "untied", every_row ? "every row scored" : "a subset scored");
    size_t len = strlen(name);
    snprintf(name + len, sizeof name - len, "loss");
    test_report(ok && n_scored == S && fabsf(loss - loss_dense) <= 1e-5f * fabsf(loss_dense), name,
                "%s; loss %.8g vs dense %.8g, %d of %d rows scored (expected %d)",
                ok ? "" : lina_last_error(), loss, loss_dense, n_scored, N, S);
    snprintf(name + len, sizeof name - len, "logits of the scored rows");
    check_close(name, logits, dense_rows, (size_t)S * mc.vocab_size, 1e-5);
    snprintf(name + len, sizeof name - len, "all gradients");
    if (ok) check_close(name, lina_model_grads(m), g_dense, P, 1e-5);
    /* per tensor too: a wrong small tensor would hide in the global norm */
    int worst = -1;
    double worst_err = 0;
    for (int i = 0; ok && i < lina_model_n_tensors(m); i++) {
        const char *tn;
        int64_t shape[4];
        size_t off;
        lina_model_tensor_info(m, i, &tn, shape, &off);
        size_t numel = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
        double e = rel_rms(lina_model_grads(m) + off, g_dense + off, numel);
        if (e > worst_err) worst_err = e, worst = i;
    }
    const char *worst_name = "";
    if (worst >= 0) lina_model_tensor_info(m, worst, &worst_name, NULL, NULL);
    snprintf(name + len, sizeof name - len, "every tensor's gradient");
    test_report(ok && worst_err <= 1e-5, name, "%s rel RMS %.3g", worst_name, worst_err);
    lina_model_free(m);
    free(g_dense);
    free(logits_dense);
    free(logits);
    free(dense_rows);
}

static void check_scored_errors(void) {
    lina_model_config mc = lina_model_config_default();
    mc.vocab_size = 16;
    mc.dim = 16;
    mc.n_heads = 1;
    lina_model *m = NULL;
    int32_t x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, none[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    int32_t big[8] = {-1, -1, 16, -1, -1, -1, -1, -1};
    int ok = lina_model_create(&mc, 1, &m) == LINA_OK;
    float loss;
    test_report(ok && lina_model_forward_scored(m, 2, 4, x, none, NULL, &loss, NULL) ==
                          LINA_ERR_INVALID_ARG,
                "scored head rejects a batch with no scored row", "accepted");
    test_report(ok && lina_model_forward_scored(m, 2, 4, x, big, NULL, &loss, NULL) ==
                          LINA_ERR_INVALID_ARG &&
                          strstr(lina_last_error(), "16"),
                "scored head rejects a target >= vocab, naming it", "%s", lina_last_error());
    lina_model_free(m);
}

/* Steps [0, 12) at once vs [0, 5) + [5, 12) with the same optimizer (what a
 * resume from a checkpoint does): the same parameters, bit for bit. */
static void check_resume_split(void) {
    lina_mqar_config c = {.vocab = 64, .seq = 32, .pairs = 4, .power_a = 0.01f};
    int n_train = 40, T = c.seq;
    int32_t *x = malloc(sizeof(int32_t) * n_train * T), *y = malloc(sizeof(int32_t) * n_train * T);
    lina_mqar_generate(&c, n_train, 2, x, y);
    lina_model_config mc = lina_model_config_default();
    mc.vocab_size = c.vocab;
    mc.dim = 32;
    mc.n_heads = 1;
    mc.mixer[0] = mc.mixer[1] = LINA_MIXER_DELTANET;
    lina_mqar_train_config tc = lina_mqar_train_default();
    tc.steps = 12;
    tc.batch = 7; /* 12 x 7 = 84 examples: crosses two epoch boundaries */
    tc.warmup = 2;
    tc.lr = 3e-3f;
    lina_model *a = NULL, *b = NULL;
    lina_adamw *oa = NULL, *ob = NULL;
    int ok = lina_model_create(&mc, 4, &a) == LINA_OK && lina_model_create(&mc, 4, &b) == LINA_OK &&
             lina_mqar_optimizer(a, &tc, &oa) == LINA_OK && lina_mqar_optimizer(b, &tc, &ob) == LINA_OK;
    ok = ok && lina_mqar_train_steps(a, oa, T, n_train, x, y, &tc, 0, 12, NULL, NULL) == LINA_OK;
    ok = ok && lina_mqar_train_steps(b, ob, T, n_train, x, y, &tc, 0, 5, NULL, NULL) == LINA_OK;
    ok = ok && lina_mqar_train_steps(b, ob, T, n_train, x, y, &tc, 5, 12, NULL, NULL) == LINA_OK;
    int same = ok && !memcmp(lina_model_params(a), lina_model_params(b),
                             sizeof(float) * lina_model_n_params(a));
    float *p0 = NULL;
    lina_model *init = NULL;
    int moved = ok && lina_model_create(&mc, 4, &init) == LINA_OK &&
                (p0 = lina_model_params(init)) &&
                rel_rms(lina_model_params(a), p0, lina_model_n_params(a)) > 1e-4;
    test_report(same && moved, "mqar training split in two pieces = one piece (resume)",
                "%s; identical %d, parameters moved %d", ok ? "" : lina_last_error(), same, moved);
    test_report(lina_mqar_train_steps(a, oa, T, n_train, x, y, &tc, 5, 13, NULL, NULL) ==
                    LINA_ERR_INVALID_ARG,
                "mqar training rejects steps past the schedule", "accepted");
    lina_model_free(a);
    lina_model_free(b);
    lina_model_free(init);
    lina_adamw_free(oa);
    lina_adamw_free(ob);
    free(x);
    free(y);
}

/* --train-mix parsing: accepted lists and the errors, each naming the bad entry. */
static void check_mix_parse(void) {
    lina_mqar_config base = {.vocab = 300, .seq = 256, .pairs = 16, .power_a = 0.01f};
    lina_mqar_config cfgs[LINA_MQAR_MAX_MIX];
    int n_train[LINA_MQAR_MAX_MIX], n = 0;
    lina_status st = lina_mqar_mix_parse("64:4:100,128:8,256:64:7", &base, 33, cfgs, n_train, &n);
    test_report(st == LINA_OK && n == 3 && cfgs[0].seq == 64 && cfgs[0].pairs == 4 &&
                    n_train[0] == 100 && cfgs[1].seq == 128 && cfgs[1].pairs == 8 &&
                    n_train[1] == 33 && cfgs[2].seq == 256 && cfgs[2].pairs == 64 &&
                    n_train[2] == 7 && cfgs[2].vocab == 300 && cfgs[2].power_a == 0.01f,
                "mqar mix parses T:K[:N] lists (N defaults to --train)", "%s; n = %d",
                st ? lina_last_error() : "", n);
    static const struct {
        const char *spec, *named, *why;
    } bad[] = {
        {"63:4", "63", "odd seq"},
        {"64:4,64:17", "64:17", "4K > seq"},
        {"64:4,400:8", "400", "vocab <= seq"},
        {"64:4,", "ends with a comma", "trailing comma"},
        {"64:4,,128:8", "entry 2", "empty entry"},
        {"64", "'64'", "no pairs"},
        {"64:4:0", "64:4:0", "0 examples"},
        {"64:4x", "64:4x", "junk after the pairs"},
        {"", "empty", "empty list"},
        {"8:1,8:1,8:1,8:1,8:1,8:1,8:1,8:1,8:1,8:1,8:1,8:1,8:1,8:1,8:1,8:1,8:1", "more than 16",
         "17 settings"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        n = -1;
        st = lina_mqar_mix_parse(bad[i].spec, &base, 10, cfgs, n_train, &n);
        char name[96];
        snprintf(name, sizeof name, "mqar mix rejects %s, naming it", bad[i].why);
        test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), bad[i].named) && n == -1,
                    name, "status %d: %s", st, lina_last_error());
    }
}

/* Two settings' training sets (T 16, K 2, 14 examples) and (T 32, K 4, 10 examples), V 64. */
typedef struct {
    lina_mqar_set sets[2];
    int32_t *buf[4];
} mix_data;

static void mix_data_make(mix_data *d) {
    lina_mqar_config c[2] = {{.vocab = 64, .seq = 16, .pairs = 2, .power_a = 0.01f},
                             {.vocab = 64, .seq = 32, .pairs = 4, .power_a = 0.01f}};
    int n[2] = {14, 10};
    for (int i = 0; i < 2; i++) {
        d->buf[2 * i] = malloc(sizeof(int32_t) * n[i] * c[i].seq);
        d->buf[2 * i + 1] = malloc(sizeof(int32_t) * n[i] * c[i].seq);
        lina_mqar_generate(&c[i], n[i], 20 + i, d->buf[2 * i], d->buf[2 * i + 1]);
        d->sets[i] = (lina_mqar_set){.seq = c[i].seq, .pairs = c[i].pairs, .n_train = n[i],
                                     .inputs = d->buf[2 * i], .targets = d->buf[2 * i + 1]};
    }
}

static void mix_data_free(mix_data *d) {
    for (int i = 0; i < 4; i++) free(d->buf[i]);
}

/* The step -> setting draw: a function of (seed, step), frequencies ~ n_train. */
static void check_mix_pick(void) {
    mix_data d;
    mix_data_make(&d);
    int count[2] = {0, 0}, same = 1, other_seed_differs = 0;
    for (int s = 0; s < 4000; s++) {
        int i = lina_mqar_mix_pick(d.sets, 2, 9, s);
        count[i]++;
        same &= i == lina_mqar_mix_pick(d.sets, 2, 9, s);
        other_seed_differs |= i != lina_mqar_mix_pick(d.sets, 2, 10, s);
    }
    /* P(setting 0) = 14 / 24: 2333 of 4000 expected, sd ~31 */
    test_report(same && other_seed_differs && count[0] > 2180 && count[0] < 2490 &&
                    lina_mqar_mix_pick(d.sets, 1, 9, 5) == 0,
                "mqar mix picks settings by (seed, step) with probability ~ examples",
                "same %d, other seed differs %d, setting 0 in %d of 4000 steps (expect ~2333)", same,
                other_seed_differs, count[0]);
    mix_data_free(&d);
}

static lina_model *mix_model(int tie) {
    lina_model_config mc = lina_model_config_default();
    mc.vocab_size = 64;
    mc.dim = 32;
    mc.n_heads = 1;
    mc.tie_embeddings = tie;
    mc.mixer[0] = mc.mixer[1] = LINA_MIXER_DELTANET;
    lina_model *m = NULL;
    if (lina_model_create(&mc, 4, &m) != LINA_OK) return NULL;
    lina_model_set_threads(m, 1);
    return m;
}

/* A mix run twice = the same parameters; split 5 + 9 = 14 at once (resume);
 * both settings used; a one-setting mix = lina_mqar_train_steps. */
static void check_mix_train(void) {
    mix_data d;
    mix_data_make(&d);
    lina_mqar_train_config tc = lina_mqar_train_default();
    tc.steps = 14;
    tc.batch = 7; /* each setting crosses epochs every one or two of its steps */
    tc.warmup = 2;
    tc.lr = 3e-3f;
    tc.seed = 2; /* both settings used: 7 + 7 steps */
    lina_model *m[4] = {mix_model(1), mix_model(1), mix_model(1), mix_model(1)};
    lina_adamw *o[4] = {0};
    int ok = 1;
    for (int i = 0; i < 4; i++) ok = ok && m[i] && lina_mqar_optimizer(m[i], &tc, &o[i]) == LINA_OK;
    ok = ok && lina_mqar_train_steps_mix(m[0], o[0], 2, d.sets, &tc, 0, 14, NULL, NULL) == LINA_OK;
    ok = ok && lina_mqar_train_steps_mix(m[1], o[1], 2, d.sets, &tc, 0, 14, NULL, NULL) == LINA_OK;
    ok = ok && lina_mqar_train_steps_mix(m[2], o[2], 2, d.sets, &tc, 0, 5, NULL, NULL) == LINA_OK;
    ok = ok && lina_mqar_train_steps_mix(m[2], o[2], 2, d.sets, &tc, 5, 14, NULL, NULL) == LINA_OK;
    size_t P = ok ? lina_model_n_params(m[0]) : 0;
    int deterministic = ok && !memcmp(lina_model_params(m[0]), lina_model_params(m[1]), sizeof(float) * P);
    int resumed = ok && !memcmp(lina_model_params(m[0]), lina_model_params(m[2]), sizeof(float) * P);
    int used[2] = {0, 0};
    for (int s = 0; s < 14; s++) used[lina_mqar_mix_pick(d.sets, 2, tc.seed, s)]++;
    test_report(deterministic && used[0] && used[1], "mqar mix training is deterministic",
                "%s; identical %d, steps per setting %d / %d", ok ? "" : lina_last_error(),
                deterministic, used[0], used[1]);
    test_report(resumed, "mqar mix training split 5 + 9 = 14 at once (resume)", "%s",
                ok ? "parameters differ" : lina_last_error());
    /* one setting: the mix path and the plain path agree bit for bit */
    lina_model *a = mix_model(0), *b = mix_model(0);
    lina_adamw *oa = NULL, *ob = NULL;
    int ok1 = a && b && lina_mqar_optimizer(a, &tc, &oa) == LINA_OK &&
              lina_mqar_optimizer(b, &tc, &ob) == LINA_OK &&
              lina_mqar_train_steps_mix(a, oa, 1, d.sets + 1, &tc, 0, 14, NULL, NULL) == LINA_OK &&
              lina_mqar_train_steps(b, ob, d.sets[1].seq, d.sets[1].n_train, d.sets[1].inputs,
                                    d.sets[1].targets, &tc, 0, 14, NULL, NULL) == LINA_OK;
    int same1 = ok1 && !memcmp(lina_model_params(a), lina_model_params(b),
                               sizeof(float) * lina_model_n_params(a));
    test_report(same1, "mqar one-setting mix = the plain training", "%s",
                ok1 ? "parameters differ" : lina_last_error());
    lina_mqar_set broken = d.sets[0];
    broken.n_train = 0;
    lina_mqar_set two[2] = {d.sets[0], broken};
    test_report(a && oa && lina_mqar_train_steps_mix(a, oa, 2, two, &tc, 0, 1, NULL, NULL) ==
                               LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "setting 1"),
                "mqar mix rejects a setting without examples, naming it", "%s", lina_last_error());
    for (int i = 0; i < 4; i++) {
        lina_model_free(m[i]);
        lina_adamw_free(o[i]);
    }
    lina_model_free(a);
    lina_model_free(b);
    lina_adamw_free(oa);
    lina_adamw_free(ob);
    mix_data_free(&d);
}

/* A DeltaNet trained on the mix (T 16, K 2) + (T 32, K 4) recalls on fresh
 * (T 32, K 4) examples. */
static void check_mix_learns(void) {
    lina_mqar_config c[3] = {{.vocab = 64, .seq = 16, .pairs = 2, .power_a = 0.01f},
                             {.vocab = 64, .seq = 32, .pairs = 4, .power_a = 0.01f},
                             {.vocab = 64, .seq = 32, .pairs = 4, .power_a = 0.01f}};
    int n[3] = {1500, 1500, 100};
    int32_t *x[3], *y[3];
    lina_mqar_set sets[2];
    for (int i = 0; i < 3; i++) {
        x[i] = malloc(sizeof(int32_t) * n[i] * c[i].seq);
        y[i] = malloc(sizeof(int32_t) * n[i] * c[i].seq);
        lina_mqar_generate(&c[i], n[i], 30 + i, x[i], y[i]);
        if (i < 2)
            sets[i] = (lina_mqar_set){.seq = c[i].seq, .pairs = c[i].pairs, .n_train = n[i],
                                      .inputs = x[i], .targets = y[i]};
    }
    lina_model *m = mix_model(0);
    lina_adamw *o = NULL;
    lina_mqar_train_config tc = lina_mqar_train_default();
    tc.steps = MIX_LEARN_STEPS;
    tc.batch = 16;
    tc.warmup = tc.steps / 20;
    tc.lr = 3e-3f;
    double acc0 = 0, acc = 0;
    int ok = m && lina_mqar_accuracy(m, c[2].seq, n[2], x[2], y[2], 8, &acc0, NULL) == LINA_OK &&
             lina_mqar_optimizer(m, &tc, &o) == LINA_OK &&
             lina_mqar_train_steps_mix(m, o, 2, sets, &tc, 0, tc.steps, NULL, NULL) == LINA_OK &&
             lina_mqar_accuracy(m, c[2].seq, n[2], x[2], y[2], 8, &acc, NULL) == LINA_OK;
    test_report(ok && acc0 < 0.15 && acc >= MIX_LEARN_MIN,
                "mqar DeltaNet trained on the mix (16, 2) + (32, 4) recalls (chance 1/32)",
                "%s; accuracy %.3f before, %.3f after (need >= %.2f)", ok ? "" : lina_last_error(),
                acc0, acc, MIX_LEARN_MIN);
    lina_model_free(m);
    lina_adamw_free(o);
    for (int i = 0; i < 3; i++) {
        free(x[i]);
        free(y[i]);
    }
}

/* lina mqar --train-mix --checkpoint: the JSON names the mix; a checkpoint is
 * refused by a run with another mix or none, and resumed by the same run;
 * --init-from warm-starts from the finished run's weights. */
static void check_mix_cli(void) {
    char lina[4096], cmd[16384], tmp[256];
    if (!fixture_lina_exe(lina, sizeof lina)) return;
    snprintf(tmp, sizeof tmp, "/tmp/lina_test_mqar_cli_%d", (int)getpid());
    const char *common = "--vocab 64 --seq 32 --pairs 4 --dim 16 --steps 6 --batch 4 --every 2 "
                         "--test 10 --threads 1 --quiet --json --checkpoint ck";
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && mkdir -p %s && cd %s && %s mqar %s --train-mix 16:2:30,32:4 --train 20 "
             "> a.json && grep -q '\"train_mix\":\"16:2:30,32:4:20\"' a.json",
             tmp, tmp, tmp, lina, common);
    int rc = system(cmd);
    test_report(rc == 0, "mqar CLI --train-mix runs and reports the mix", "rc %d (%s)", rc, cmd);
    static const char *other[] = {"--train-mix 16:2:30 --train 20", "--train 20",
                                  "--train-mix 16:2:30,32:4 --train 21"};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "cd %s && %s mqar %s %s > b.json 2> b.err; r=$?; "
                                  "grep -q 'holds another run' b.err && [ $r -ne 0 ]",
                 tmp, lina, common, other[i]);
        char name[128];
        snprintf(name, sizeof name, "mqar CLI refuses a checkpoint of another mix (%s)", other[i]);
        test_report(system(cmd) == 0, name, "accepted or no message (%s)", cmd);
    }
    /* warm start: the finished run's weights with 0 steps give the run's test loss;
     * a model of another architecture (tied head) is refused */
    snprintf(cmd, sizeof cmd,
             "cd %s && %s mqar --vocab 64 --seq 32 --pairs 4 --dim 16 --steps 0 --test 10 --threads 1 "
             "--quiet --json --init-from ck/cur > w.json && "
             "a=$(grep -o '\"test_loss\":[0-9.e+-]*' a.json) && [ -n \"$a\" ] && grep -q \"$a\" w.json && "
             "! %s mqar --vocab 64 --seq 32 --pairs 4 --dim 16 --steps 0 --test 10 --tie --quiet "
             "--init-from ck/cur 2> w.err > /dev/null && grep -q 'another architecture' w.err",
             tmp, lina, lina);
    test_report(system(cmd) == 0, "mqar CLI --init-from starts from a run's weights, refuses another architecture",
                "(%s)", cmd);
    /* flags without values: each one counts, none swallows the next argument */
    snprintf(cmd, sizeof cmd,
             "cd %s && %s mqar --vocab 64 --seq 32 --pairs 4 --dim 16 --steps 1 --test 4 --threads 1 --tie --conv "
             "--json --quiet > f.json && grep -q '\"tie\":true' f.json && grep -q '\"conv\":true' f.json",
             tmp, lina);
    test_report(system(cmd) == 0, "mqar CLI --tie --conv --json --quiet all take effect", "(%s)", cmd);
    /* the same run again resumes at its end and reports the same accuracy */
    snprintf(cmd, sizeof cmd,
             "cd %s && %s mqar %s --train-mix 16:2:30,32:4 --train 20 > c.json && "
             "for f in a c; do sed -E 's/\"(train_seconds|step_seconds|steps_this_process)\":[0-9.e+-]+//g' "
             "$f.json > $f.cmp; done && cmp -s a.cmp c.cmp && rm -rf %s",
             tmp, lina, common, tmp);
    test_report(system(cmd) == 0, "mqar CLI resumes its own mix checkpoint", "(%s)", cmd);
}

/* --device: an unknown name is refused; cuda without a device (or without CUDA
 * in the build) fails with a message instead of training on the CPU. */
static void check_device_cli(void) {
    char lina[4096], cmd[8192];
    if (!fixture_lina_exe(lina, sizeof lina)) return;
    const char *small = "--vocab 64 --seq 32 --pairs 4 --dim 16 --steps 1 --test 4 --threads 1 --quiet";
    snprintf(cmd, sizeof cmd, "%s mqar %s --device tpu 2> /tmp/lina_dev_$$.err; r=$?; "
             "grep -q \"device 'tpu'\" /tmp/lina_dev_$$.err; g=$?; rm -f /tmp/lina_dev_$$.err; [ $r -eq 2 ] && [ $g -eq 0 ]",
             lina, small);
    test_report(system(cmd) == 0, "mqar CLI refuses --device tpu by name", "(%s)", cmd);
    if (lina_cuda_available()) return; /* the GPU tests (tests/cuda/test_cuda_lm.c) cover the device */
    snprintf(cmd, sizeof cmd, "%s mqar %s --device cuda > /dev/null 2> /tmp/lina_dev_$$.err; r=$?; "
             "grep -q 'device cuda: .*CUDA' /tmp/lina_dev_$$.err; g=$?; rm -f /tmp/lina_dev_$$.err; [ $r -ne 0 ] && [ $g -eq 0 ]",
             lina, small);
    test_report(system(cmd) == 0, "mqar CLI --device cuda without a GPU fails with a message", "(%s)", cmd);
    lina_model_config mc = lina_model_config_default();
    mc.vocab_size = 32;
    mc.dim = 16;
    mc.n_layers = 1;
    lina_model *m = NULL;
    lina_status st = lina_model_create(&mc, 1, &m);
    if (!st) st = lina_model_use_cuda(m);
    test_report(st == LINA_ERR_UNSUPPORTED && !lina_model_on_cuda(m), "lina_model_use_cuda without a GPU: unsupported",
                "status %d: %s", (int)st, lina_last_error());
    lina_model_free(m);
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
    for (int tie = 0; tie < 2; tie++)
        for (int every_row = 0; every_row < 2; every_row++)
            check_scored_head(LINA_MIXER_DELTANET, tie, every_row);
    check_scored_head(LINA_MIXER_GLA, 0, 0);
    check_scored_head(LINA_MIXER_SOFTMAX, 1, 0);
    check_scored_errors();
    check_resume_split();
    check_mix_parse();
    check_mix_pick();
    check_mix_train();
    check_mix_learns();
    check_mix_cli();
    check_device_cli();
    check_learns(LINA_MIXER_DELTANET, 0.6);
    /* Gated DeltaNet leaves the plateau later at this lr: 0.53 with this data order
     * (0.8 with the order before epoch permutations became f(seed, epoch)); chance 0.03 */
    check_learns(LINA_MIXER_GATED_DELTANET, 0.4);
    return test_finish();
}
