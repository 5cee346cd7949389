/* lina mqar: multi-query associative recall (Zoology). Generates a training
 * and a test set from seeds, trains a 2-layer lina model with one mixer kind,
 * reports the exact-match accuracy on the test answers (summary or JSON). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <omp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "lina.h"
#include "progress.h"

#define CMD "lina mqar"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lina mqar [options]\n\n"
            "Multi-query associative recall (Arora et al. 2023, Zoology): K key-value pairs,\n"
            "then every key queried once at a power-law distributed gap, noise elsewhere;\n"
            "keys in [1, V/2), values in [V/2, V); only the answers are scored. Trains a\n"
            "model of --layers layers (mixer + SwiGLU MLP each) with AdamW and prints the\n"
            "test accuracy (fraction of answers whose argmax is the value).\n\n"
            "  --mixer NAME   gated_deltanet | deltanet | gla | mamba2 | retnet | linear |\n"
            "                 hgrn2 | softmax (default deltanet)\n"
            "  --dim N        model width d_model (default 64)\n"
            "  --heads N      heads (default max(1, dim/64): head dim 64)\n"
            "  --layers N     layers (default 2)\n"
            "  --seq N        sequence length T, even (default 512)\n"
            "  --pairs N      key-value pairs K, 4K <= T (default 64)\n"
            "  --vocab N      vocabulary V > T (default 8192)\n"
            "  --power-a X    gap power law exponent (default 0.01, as Zoology)\n"
            "  --train N      training examples (default 2000; Zoology: 100000)\n"
            "  --test N       test examples (default 300; Zoology: 3000)\n"
            "  --steps N      optimizer steps (default 600)\n"
            "  --batch N      examples per step (default 16)\n"
            "  --lr X         peak learning rate (default 1e-3; warm-up 5%%, cosine to lr/10)\n"
            "  --wd X         AdamW weight decay (default 0.1)\n"
            "  --clip X       gradient-norm clip, 0 = off (default 1)\n"
            "  --seed N       seed: model init, training set, order; test set = seed + 10\n"
            "  --threads N    OpenMP threads (default: all cores)\n"
            "  --json         print one JSON object\n"
            "  --quiet        no progress bar\n");
}

/* A float as the shortest decimal that names it (1e-3f prints 0.001, not 0.0010000000474974513). */
static double short_float(float x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%g", x);
    return strtod(buf, NULL);
}

static void on_progress(void *user, int step, int steps, double loss) {
    cli_progress *p = user;
    char info[64];
    snprintf(info, sizeof info, "loss %.4f", loss);
    if (step == steps) cli_progress_finish(p, info);
    else cli_progress_update(p, step, info);
}

int cmd_mqar(int argc, char **argv) {
    lina_mqar_config c = lina_mqar_config_default();
    lina_mqar_train_config tc = lina_mqar_train_default();
    int dim = 64, heads = 0, layers = 2, n_train = 2000, n_test = 300, seed = 1, threads = 0;
    int json = 0, quiet = 0, mixer = LINA_MIXER_DELTANET;
    tc.steps = 600;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        } else if (!v) {
            fprintf(stderr, "lina mqar: %s needs a value (or unknown option)\n", a);
            return 2;
        } else if (!strcmp(a, "--mixer")) {
            mixer = lina_mixer_parse(v);
            if (mixer < 0) {
                fprintf(stderr, "lina mqar: unknown mixer '%s' (one of:", v);
                for (int k = 0; k < LINA_MIXER_COUNT; k++)
                    fprintf(stderr, " %s", lina_mixer_name((lina_mixer_kind)k));
                fprintf(stderr, ")\n");
                return 2;
            }
        } else if (!strcmp(a, "--dim")) ok = cli_int(CMD, a, v, -1000000, 1000000, &dim);
        else if (!strcmp(a, "--heads")) ok = cli_int(CMD, a, v, 1, 1024, &heads);
        else if (!strcmp(a, "--layers")) ok = cli_int(CMD, a, v, 1, LINA_MODEL_MAX_LAYERS, &layers);
        else if (!strcmp(a, "--seq")) ok = cli_int(CMD, a, v, -1000000, 1000000, &c.seq);
        else if (!strcmp(a, "--pairs")) ok = cli_int(CMD, a, v, -1000000, 1000000, &c.pairs);
        else if (!strcmp(a, "--vocab")) ok = cli_int(CMD, a, v, 2, 1 << 24, &c.vocab);
        else if (!strcmp(a, "--power-a")) ok = cli_float(CMD, a, v, -HUGE_VAL, HUGE_VAL, &c.power_a);
        else if (!strcmp(a, "--train")) ok = cli_int(CMD, a, v, 1, 100000000, &n_train);
        else if (!strcmp(a, "--test")) ok = cli_int(CMD, a, v, 1, 100000000, &n_test);
        else if (!strcmp(a, "--steps")) ok = cli_int(CMD, a, v, 0, 100000000, &tc.steps);
        else if (!strcmp(a, "--batch")) ok = cli_int(CMD, a, v, 1, 1 << 16, &tc.batch);
        else if (!strcmp(a, "--lr")) ok = cli_float(CMD, a, v, -HUGE_VAL, HUGE_VAL, &tc.lr);
        else if (!strcmp(a, "--wd")) ok = cli_float(CMD, a, v, -HUGE_VAL, HUGE_VAL, &tc.weight_decay);
        else if (!strcmp(a, "--clip")) ok = cli_float(CMD, a, v, -HUGE_VAL, HUGE_VAL, &tc.clip);
        else if (!strcmp(a, "--seed")) ok = cli_int(CMD, a, v, 0, 2147483647, &seed);
        else if (!strcmp(a, "--threads")) ok = cli_int(CMD, a, v, 1, 256, &threads);
        else {
            fprintf(stderr, "lina mqar: unknown option '%s' (see lina mqar --help)\n", a);
            return 2;
        }
        if (!ok) return 2;
        i++;
    }
    if (dim < 1) {
        fprintf(stderr, "lina mqar: --dim = %d must be >= 1\n", dim);
        return 2;
    }
    if (c.seq < 1) {
        fprintf(stderr, "lina mqar: --seq = %d must be >= 1\n", c.seq);
        return 2;
    }
    if (lina_mqar_config_check(&c) != LINA_OK) {
        fprintf(stderr, "lina %s\n", lina_last_error());
        return 2;
    }
    if (!(tc.lr > 0)) {
        fprintf(stderr, "lina mqar: --lr = %g must be > 0\n", tc.lr);
        return 2;
    }
    if (threads > 0) omp_set_num_threads(threads);
    tc.warmup = tc.steps / 20;
    tc.seed = (uint64_t)seed * 7919 + 3;

    lina_model_config mc = lina_model_config_default();
    mc.vocab_size = c.vocab;
    mc.dim = dim;
    mc.n_layers = layers;
    mc.n_heads = heads ? heads : (dim / 64 > 1 ? dim / 64 : 1);
    mc.max_seq = c.seq > 2048 ? c.seq : 2048;
    for (int l = 0; l < layers; l++) mc.mixer[l] = (lina_mixer_kind)mixer;
    if (lina_model_config_validate(&mc) != LINA_OK) {
        fprintf(stderr, "lina mqar: %s\n", lina_last_error());
        return 2;
    }

    size_t tr = (size_t)n_train * c.seq, te = (size_t)n_test * c.seq;
    int32_t *x_train = malloc(sizeof(int32_t) * tr), *y_train = malloc(sizeof(int32_t) * tr);
    int32_t *x_test = malloc(sizeof(int32_t) * te), *y_test = malloc(sizeof(int32_t) * te);
    lina_model *m = NULL;
    int rc = 1;
    if (!x_train || !y_train || !x_test || !y_test) {
        fprintf(stderr, "lina mqar: out of memory for %d + %d examples of %d tokens\n", n_train,
                n_test, c.seq);
        goto done;
    }
    if (lina_mqar_generate(&c, n_train, (uint64_t)seed, x_train, y_train) != LINA_OK ||
        lina_mqar_generate(&c, n_test, (uint64_t)seed + 10, x_test, y_test) != LINA_OK ||
        lina_model_create(&mc, (uint64_t)seed, &m) != LINA_OK) {
        fprintf(stderr, "lina mqar: %s\n", lina_last_error());
        goto done;
    }
    if (threads > 0) lina_model_set_threads(m, threads);

    cli_progress bar;
    char label[96];
    snprintf(label, sizeof label, "mqar %s d=%d T=%d K=%d", lina_mixer_name((lina_mixer_kind)mixer),
             dim, c.seq, c.pairs);
    cli_progress_start(&bar, label, tc.steps);
    double t0 = cli_now(), train_loss = 0, acc = 0, test_loss = 0;
    if (lina_mqar_train(m, c.seq, n_train, x_train, y_train, &tc, quiet ? NULL : on_progress, &bar,
                        &train_loss) != LINA_OK) {
        fprintf(stderr, "lina mqar: %s\n", lina_last_error());
        goto done;
    }
    double train_s = cli_now() - t0;
    if (lina_mqar_accuracy(m, c.seq, n_test, x_test, y_test, 4, &acc, &test_loss) != LINA_OK) {
        fprintf(stderr, "lina mqar: %s\n", lina_last_error());
        goto done;
    }
    const char *mname = lina_mixer_name((lina_mixer_kind)mixer);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "mixer", mname);
        cJSON_AddNumberToObject(o, "dim", dim);
        cJSON_AddNumberToObject(o, "heads", mc.n_heads);
        cJSON_AddNumberToObject(o, "layers", layers);
        cJSON_AddNumberToObject(o, "seq", c.seq);
        cJSON_AddNumberToObject(o, "pairs", c.pairs);
        cJSON_AddNumberToObject(o, "vocab", c.vocab);
        cJSON_AddNumberToObject(o, "power_a", short_float(c.power_a));
        cJSON_AddNumberToObject(o, "train", n_train);
        cJSON_AddNumberToObject(o, "test", n_test);
        cJSON_AddNumberToObject(o, "steps", tc.steps);
        cJSON_AddNumberToObject(o, "batch", tc.batch);
        cJSON_AddNumberToObject(o, "lr", short_float(tc.lr));
        cJSON_AddNumberToObject(o, "seed", seed);
        cJSON_AddNumberToObject(o, "params", (double)lina_model_n_params(m));
        cJSON_AddNumberToObject(o, "accuracy", acc);
        cJSON_AddNumberToObject(o, "test_loss", test_loss);
        cJSON_AddNumberToObject(o, "train_loss", train_loss);
        cJSON_AddNumberToObject(o, "train_seconds", train_s);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("mqar: %s, %d layers, d=%d, %d heads, T=%d, K=%d pairs, V=%d, %zu params\n", mname,
               layers, dim, mc.n_heads, c.seq, c.pairs, c.vocab, lina_model_n_params(m));
        printf("  trained %d steps x %d on %d examples (lr %g) in %.1f s, final loss %.4f\n",
               tc.steps, tc.batch, n_train, tc.lr, train_s, train_loss);
        printf("  test accuracy %.2f%% on %d examples (%d answers), answer loss %.4f\n",
               100.0 * acc, n_test, n_test * c.pairs, test_loss);
    }
    rc = 0;
done:
    lina_model_free(m);
    free(x_train);
    free(y_train);
    free(x_test);
    free(y_test);
    return rc;
}
