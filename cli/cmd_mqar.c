/* lina mqar: multi-query associative recall (Zoology). Generates a training
 * and a test set from seeds, trains a 2-layer lina model with one mixer kind,
 * reports the exact-match accuracy on the test answers (summary or JSON). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
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
            "  --train-mix T:K[:N],...  train on a mix of settings (seq:pairs[:examples],\n"
            "                 N defaults to --train); each step is one batch of one setting,\n"
            "                 drawn with probability N / sum N from (seed, step); the test set\n"
            "                 stays --seq/--pairs. Zoology: 64:4:100000,128:8:20000,\n"
            "                 256:16:20000,256:32:20000,256:64:20000\n"
            "  --tie          tie the LM head to the embedding (as Zoology does)\n"
            "  --conv         a short convolution on q, k, v in every linear mixer (Zoology's\n"
            "                 models; default: only DeltaNet and Gated DeltaNet have one)\n"
            "  --init-from DIR  start from the weights of a model directory (a finished\n"
            "                 run's --checkpoint DIR/cur) of the same architecture, with a\n"
            "                 fresh optimizer and schedule (warm start: curriculum stage 2)\n"
            "  --test N       test examples (default 300; Zoology: 3000)\n"
            "  --steps N      optimizer steps (default 600)\n"
            "  --batch N      examples per step (default 16)\n"
            "  --lr X         peak learning rate (default 1e-3; warm-up 5%%, cosine to lr/10)\n"
            "  --wd X         AdamW weight decay (default 0.1)\n"
            "  --clip X       gradient-norm clip, 0 = off (default 1)\n"
            "  --seed N       seed: model init, training set, order; test set = seed + 10\n"
            "  --threads N    OpenMP threads (default: all cores)\n"
            "  --device D     cpu (default) or cuda: train and evaluate on the GPU (fp32;\n"
            "                 mixers gated_deltanet, deltanet, gla, mamba2, retnet, linear,\n"
            "                 softmax); checkpoints are the same files either way\n"
            "  --dense-head   compute the LM head at every position (the old, slow path;\n"
            "                 default: only at the scored answer positions, same gradients)\n"
            "  --checkpoint DIR  save model + optimizer + progress to DIR every --every\n"
            "                 steps and resume from it if it holds this run (interrupt-safe)\n"
            "  --every N      steps between progress lines / checkpoints (default 100)\n"
            "  --eval-n N     test examples scored at every progress line (default 0: none)\n"
            "  --target-acc X stop early once that accuracy reaches X (needs --eval-n)\n"
            "  --json         print one JSON object\n"
            "  --quiet        no progress bar\n");
}

/* A float as the shortest decimal that names it (1e-3f prints 0.001, not 0.0010000000474974513). */
static double short_float(float x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%g", x);
    return strtod(buf, NULL);
}


/* ---- checkpoints: DIR/cur/{config.json, model.safetensors, adamw.safetensors,
 * state.json}; written to DIR/next, then swapped in with renames, so a kill at
 * any moment leaves a whole checkpoint (cur, or old while swapping). ---- */

typedef struct {
    int step;          /* optimizer steps done */
    double tail_sum;   /* sum of the losses of the steps in the final-loss window so far */
    double seconds;    /* training seconds spent before this process */
    char run[1024];    /* the run's settings; a checkpoint of another run is refused */
} mqar_state;

static int write_state(const char *path, const mqar_state *s) {
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    int ok = fprintf(f, "{\"step\": %d, \"tail_sum\": %.17g, \"seconds\": %.3f, \"run\": \"%s\"}\n",
                     s->step, s->tail_sum, s->seconds, s->run) > 0;
    return fclose(f) == 0 && ok;
}

static int read_state(const char *path, mqar_state *s) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *o = cJSON_Parse(buf);
    if (!o) return 0;
    cJSON *st = cJSON_GetObjectItem(o, "step"), *ts = cJSON_GetObjectItem(o, "tail_sum");
    cJSON *sec = cJSON_GetObjectItem(o, "seconds"), *run = cJSON_GetObjectItem(o, "run");
    int ok = cJSON_IsNumber(st) && cJSON_IsNumber(ts) && cJSON_IsNumber(sec) && cJSON_IsString(run);
    if (ok) {
        s->step = st->valueint;
        s->tail_sum = ts->valuedouble;
        s->seconds = sec->valuedouble;
        snprintf(s->run, sizeof s->run, "%s", run->valuestring);
    }
    cJSON_Delete(o);
    return ok;
}

static void remove_ckpt_dir(const char *d) {
    static const char *files[] = {"config.json", "model.safetensors", "adamw.safetensors", "state.json"};
    char p[4200];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", d, files[i]);
        unlink(p);
    }
    rmdir(d);
}

/* Returns 1, or 0 after printing why not. */
static int save_ckpt(const char *dir, lina_model *m, lina_adamw *opt, const mqar_state *s) {
    char next[4096], cur[4096], old[4096], p[4200];
    snprintf(next, sizeof next, "%s/next", dir);
    snprintf(cur, sizeof cur, "%s/cur", dir);
    snprintf(old, sizeof old, "%s/old", dir);
    remove_ckpt_dir(next);
    snprintf(p, sizeof p, "%s/adamw.safetensors", next);
    if (lina_model_sync_host(m, opt) != LINA_OK || lina_model_save(m, next) != LINA_OK ||
        lina_adamw_save(opt, p) != LINA_OK) {
        fprintf(stderr, "lina mqar: checkpoint %s: %s\n", next, lina_last_error());
        return 0;
    }
    snprintf(p, sizeof p, "%s/state.json", next);
    if (!write_state(p, s)) {
        fprintf(stderr, "lina mqar: cannot write %s: %s\n", p, strerror(errno));
        return 0;
    }
    remove_ckpt_dir(old);
    if ((access(cur, F_OK) == 0 && rename(cur, old) != 0) || rename(next, cur) != 0) {
        fprintf(stderr, "lina mqar: cannot swap checkpoint %s into %s: %s\n", next, cur,
                strerror(errno));
        return 0;
    }
    remove_ckpt_dir(old);
    return 1;
}

/* Load DIR/cur (or DIR/old, left by a kill during the swap). Returns 1 if
 * resumed, 0 if there is no checkpoint, -1 on an error (message printed). */
static int load_ckpt(const char *dir, const char *run, int threads, lina_model **m,
                     lina_adamw **opt, const lina_mqar_train_config *tc, mqar_state *s) {
    const char *subs[] = {"cur", "old"};
    for (int i = 0; i < 2; i++) {
        char d[4096], p[4200];
        snprintf(d, sizeof d, "%s/%s", dir, subs[i]);
        snprintf(p, sizeof p, "%s/state.json", d);
        if (access(p, F_OK) != 0) continue;
        if (!read_state(p, s)) {
            fprintf(stderr, "lina mqar: cannot read %s\n", p);
            return -1;
        }
        if (strcmp(s->run, run)) {
            fprintf(stderr, "lina mqar: %s holds another run:\n  %s\nthis run:\n  %s\n", d, s->run, run);
            return -1;
        }
        lina_model *lm = NULL;
        lina_adamw *lo = NULL;
        snprintf(p, sizeof p, "%s/adamw.safetensors", d);
        if (lina_model_load(d, &lm) != LINA_OK || lina_mqar_optimizer(lm, tc, &lo) != LINA_OK ||
            lina_adamw_load(lo, p) != LINA_OK) {
            fprintf(stderr, "lina mqar: resuming from %s: %s\n", d, lina_last_error());
            lina_adamw_free(lo);
            lina_model_free(lm);
            return -1;
        }
        if (threads > 0) lina_model_set_threads(lm, threads);
        lina_model_free(*m);
        lina_adamw_free(*opt);
        *m = lm;
        *opt = lo;
        return 1;
    }
    return 0;
}

typedef struct {
    cli_progress *bar;
    int quiet;
    int tail_from;     /* steps after this count towards the final loss */
    double tail_sum;   /* sum of those steps' losses */
    double chunk_sum;  /* sum of the losses since the last progress line */
    int chunk_n;
} mqar_progress;

static void on_progress(void *user, int step, int steps, double loss) {
    mqar_progress *p = user;
    if (step > p->tail_from) p->tail_sum += loss;
    p->chunk_sum += loss;
    p->chunk_n++;
    if (p->quiet) return;
    char info[64];
    snprintf(info, sizeof info, "loss %.4f", loss);
    if (step == steps) cli_progress_finish(p->bar, info);
    else cli_progress_update(p->bar, step, info);
}

int cmd_mqar(int argc, char **argv) {
    lina_mqar_config c = lina_mqar_config_default();
    lina_mqar_train_config tc = lina_mqar_train_default();
    int dim = 64, heads = 0, layers = 2, n_train = 2000, n_test = 300, seed = 1, threads = 0;
    int json = 0, quiet = 0, mixer = LINA_MIXER_DELTANET, every = 100, eval_n = 0, tie = 0, conv = 0;
    const char *mix_spec = NULL, *init_from = NULL, *device = "cpu";
    float target_acc = 0;
    const char *ckpt = NULL;
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
        } else if (!strcmp(a, "--dense-head")) {
            tc.dense_head = 1;
            continue;
        } else if (!strcmp(a, "--tie")) {
            tie = 1;
            continue;
        } else if (!strcmp(a, "--conv")) {
            conv = 1;
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
        else if (!strcmp(a, "--every")) ok = cli_int(CMD, a, v, 1, 100000000, &every);
        else if (!strcmp(a, "--eval-n")) ok = cli_int(CMD, a, v, 0, 100000000, &eval_n);
        else if (!strcmp(a, "--target-acc")) ok = cli_float(CMD, a, v, 0, 1, &target_acc);
        else if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--train-mix")) mix_spec = v;
        else if (!strcmp(a, "--init-from")) init_from = v;
        else if (!strcmp(a, "--device")) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda")) {
                fprintf(stderr, "lina mqar: --device '%s' (want cpu or cuda)\n", v);
                return 2;
            }
            device = v;
        } else {
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
    /* the training settings: the mix, or the test setting alone */
    lina_mqar_config set_cfg[LINA_MQAR_MAX_MIX];
    int set_n[LINA_MQAR_MAX_MIX], n_sets = 1, max_seq = c.seq;
    set_cfg[0] = c;
    set_n[0] = n_train;
    if (mix_spec && lina_mqar_mix_parse(mix_spec, &c, n_train, set_cfg, set_n, &n_sets) != LINA_OK) {
        fprintf(stderr, "lina --train-mix: %s\n", lina_last_error());
        return 2;
    }
    for (int i = 0; i < n_sets; i++)
        if (set_cfg[i].seq > max_seq) max_seq = set_cfg[i].seq;
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
    mc.max_seq = max_seq > 2048 ? max_seq : 2048;
    mc.tie_embeddings = tie;
    mc.short_conv_all = conv;
    for (int l = 0; l < layers; l++) mc.mixer[l] = (lina_mixer_kind)mixer;
    if (lina_model_config_validate(&mc) != LINA_OK) {
        fprintf(stderr, "lina mqar: %s\n", lina_last_error());
        return 2;
    }

    size_t te = (size_t)n_test * c.seq;
    int32_t *x_train[LINA_MQAR_MAX_MIX] = {0}, *y_train[LINA_MQAR_MAX_MIX] = {0};
    int32_t *x_test = malloc(sizeof(int32_t) * te), *y_test = malloc(sizeof(int32_t) * te);
    lina_mqar_set sets[LINA_MQAR_MAX_MIX];
    lina_model *m = NULL;
    lina_adamw *opt = NULL;
    int rc = 1, oom = !x_test || !y_test;
    for (int i = 0; i < n_sets; i++) {
        size_t tr = (size_t)set_n[i] * set_cfg[i].seq;
        oom |= !(x_train[i] = malloc(sizeof(int32_t) * tr)) || !(y_train[i] = malloc(sizeof(int32_t) * tr));
        /* the plain run's training set comes from the seed; mix setting i from seed + 1000 + i
         * (the test set from seed + 10) */
        if (!oom && lina_mqar_generate(&set_cfg[i], set_n[i],
                                       (uint64_t)seed + (mix_spec ? 1000 + i : 0), x_train[i],
                                       y_train[i]) != LINA_OK) {
            fprintf(stderr, "lina mqar: %s\n", lina_last_error());
            goto done;
        }
        sets[i] = (lina_mqar_set){.seq = set_cfg[i].seq, .pairs = set_cfg[i].pairs,
                                  .n_train = set_n[i], .inputs = x_train[i], .targets = y_train[i]};
    }
    if (oom) {
        fprintf(stderr, "lina mqar: out of memory for the training sets + %d test examples of %d tokens\n",
                n_test, c.seq);
        goto done;
    }
    if (lina_mqar_generate(&c, n_test, (uint64_t)seed + 10, x_test, y_test) != LINA_OK ||
        lina_model_create(&mc, (uint64_t)seed, &m) != LINA_OK) {
        fprintf(stderr, "lina mqar: %s\n", lina_last_error());
        goto done;
    }
    if (init_from) { /* warm start: the weights of another run, same architecture */
        lina_model *w = NULL;
        if (lina_model_load(init_from, &w) != LINA_OK) {
            fprintf(stderr, "lina mqar: --init-from %s: %s\n", init_from, lina_last_error());
            goto done;
        }
        const lina_model_config *wc = lina_model_get_config(w);
        int same = wc->vocab_size == mc.vocab_size && wc->dim == mc.dim &&
                   wc->n_layers == mc.n_layers && wc->n_heads == mc.n_heads &&
                   wc->tie_embeddings == mc.tie_embeddings && wc->short_conv_all == mc.short_conv_all &&
                   lina_model_n_params(w) == lina_model_n_params(m);
        for (int l = 0; same && l < layers; l++) same = wc->mixer[l] == mc.mixer[l];
        if (!same) {
            fprintf(stderr,
                    "lina mqar: --init-from %s holds another architecture (vocab %d, dim %d, %d "
                    "layers, %d heads, tie %d, %s) than this run's (vocab %d, dim %d, %d layers, "
                    "%d heads, tie %d, %s)\n",
                    init_from, wc->vocab_size, wc->dim, wc->n_layers, wc->n_heads,
                    wc->tie_embeddings, lina_mixer_name(wc->mixer[0]), mc.vocab_size, mc.dim,
                    mc.n_layers, mc.n_heads, mc.tie_embeddings, lina_mixer_name(mc.mixer[0]));
            lina_model_free(w);
            goto done;
        }
        memcpy(lina_model_params(m), lina_model_params(w), sizeof(float) * lina_model_n_params(m));
        lina_model_free(w);
    }
    if (threads > 0) lina_model_set_threads(m, threads);

    const char *mname = lina_mixer_name((lina_mixer_kind)mixer);
    /* the settings that define the run: a checkpoint resumes only the same run */
    char run[1024];
    int run_len = snprintf(run, sizeof run,
             "%s d=%d heads=%d layers=%d seq=%d pairs=%d vocab=%d a=%g train=%d steps=%d batch=%d "
             "lr=%g wd=%g clip=%g seed=%d",
             mname, dim, mc.n_heads, layers, c.seq, c.pairs, c.vocab, c.power_a, n_train, tc.steps,
             tc.batch, tc.lr, tc.weight_decay, tc.clip, seed);
    /* mix and tie only when used, so checkpoints of earlier plain runs still resume */
    char mix_norm[LINA_MQAR_MAX_MIX * 32] = ""; /* the mix as T:K:N,... */
    for (int i = 0, len = 0; mix_spec && i < n_sets; i++)
        len += snprintf(mix_norm + len, sizeof mix_norm - len, "%s%d:%d:%d", i ? "," : "",
                        set_cfg[i].seq, set_cfg[i].pairs, set_n[i]);
    snprintf(run + run_len, sizeof run - run_len, "%s%s%s%s%s%s", mix_spec ? " mix=" : "", mix_norm,
             tie ? " tie=1" : "", conv ? " conv=1" : "", init_from ? " init=" : "", init_from ? init_from : "");
    mqar_state state = {0};
    snprintf(state.run, sizeof state.run, "%s", run);
    if (lina_mqar_optimizer(m, &tc, &opt) != LINA_OK) {
        fprintf(stderr, "lina mqar: %s\n", lina_last_error());
        goto done;
    }
    if (ckpt) {
        if (mkdir(ckpt, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "lina mqar: cannot create --checkpoint %s: %s\n", ckpt, strerror(errno));
            goto done;
        }
        int r = load_ckpt(ckpt, run, threads, &m, &opt, &tc, &state);
        if (r < 0) goto done;
        if (r > 0 && !quiet)
            fprintf(stderr, "lina mqar: resuming %s at step %d\n", ckpt, state.step);
    }
    if (!strcmp(device, "cuda") && lina_model_use_cuda(m) != LINA_OK) {
        fprintf(stderr, "lina mqar: --device cuda: %s\n", lina_last_error());
        goto done;
    }

    int use_bar = !quiet && isatty(2);
    cli_progress bar;
    char label[96];
    snprintf(label, sizeof label, "mqar %s d=%d T=%d K=%d", mname, dim, c.seq, c.pairs);
    if (use_bar) cli_progress_start(&bar, label, tc.steps);
    int tail = tc.steps < 50 ? tc.steps : 50, step0 = state.step, stopped_at = 0;
    mqar_progress prog = {&bar, !use_bar, tc.steps - tail, state.tail_sum, 0, 0};
    double t0 = cli_now(), train_loss = 0, acc = 0, test_loss = 0, eval_acc = -1;
    for (int s = state.step; s < tc.steps && !stopped_at;) {
        int s1 = s + every < tc.steps ? s + every : tc.steps;
        prog.chunk_sum = 0;
        prog.chunk_n = 0;
        if (lina_mqar_train_steps_mix(m, opt, n_sets, sets, &tc, s, s1, on_progress, &prog) !=
            LINA_OK) {
            fprintf(stderr, "lina mqar: %s\n", lina_last_error());
            goto done;
        }
        s = s1;
        int n_eval = eval_n < n_test ? eval_n : n_test;
        if (n_eval > 0 &&
            lina_mqar_accuracy(m, c.seq, n_eval, x_test, y_test, 8, &eval_acc, NULL) != LINA_OK) {
            fprintf(stderr, "lina mqar: %s\n", lina_last_error());
            goto done;
        }
        state.step = s;
        state.tail_sum = prog.tail_sum;
        double secs = state.seconds + cli_now() - t0;
        if (ckpt) {
            mqar_state saved = state;
            saved.seconds = secs;
            if (!save_ckpt(ckpt, m, opt, &saved)) goto done;
            char p[4200];
            snprintf(p, sizeof p, "%s/curve.tsv", ckpt);
            FILE *f = fopen(p, "a");
            if (f) {
                fprintf(f, "%d\t%.6f\t%.6f\t%.1f\n", s, prog.chunk_sum / prog.chunk_n, eval_acc, secs);
                fclose(f);
            }
        }
        if (!quiet && !use_bar)
            fprintf(stderr, "mqar %s d=%d step %d/%d loss %.4f%s%.2f%% %.0f s\n", mname, dim, s,
                    tc.steps, prog.chunk_sum / prog.chunk_n, n_eval ? " eval acc " : "",
                    n_eval ? 100 * eval_acc : 0.0, secs);
        if (target_acc > 0 && n_eval > 0 && eval_acc >= target_acc && s < tc.steps) stopped_at = s;
    }
    if (use_bar) cli_progress_finish(&bar, "done");
    double train_s = cli_now() - t0, total_s = state.seconds + train_s;
    int steps_here = state.step - step0;
    train_loss = stopped_at ? prog.chunk_sum / prog.chunk_n : tail ? prog.tail_sum / tail : NAN;
    if (lina_mqar_accuracy(m, c.seq, n_test, x_test, y_test, 4, &acc, &test_loss) != LINA_OK) {
        fprintf(stderr, "lina mqar: %s\n", lina_last_error());
        goto done;
    }
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
        if (mix_spec) cJSON_AddStringToObject(o, "train_mix", mix_norm);
        cJSON_AddBoolToObject(o, "tie", tie);
        cJSON_AddBoolToObject(o, "conv", conv);
        if (init_from) cJSON_AddStringToObject(o, "init_from", init_from);
        cJSON_AddNumberToObject(o, "test", n_test);
        cJSON_AddNumberToObject(o, "steps", tc.steps);
        cJSON_AddNumberToObject(o, "batch", tc.batch);
        cJSON_AddNumberToObject(o, "lr", short_float(tc.lr));
        cJSON_AddNumberToObject(o, "seed", seed);
        cJSON_AddNumberToObject(o, "params", (double)lina_model_n_params(m));
        cJSON_AddNumberToObject(o, "accuracy", acc);
        cJSON_AddNumberToObject(o, "test_loss", test_loss);
        cJSON_AddNumberToObject(o, "train_loss", train_loss);
        cJSON_AddNumberToObject(o, "train_seconds", total_s);
        cJSON_AddStringToObject(o, "head", tc.dense_head ? "dense" : "scored");
        cJSON_AddStringToObject(o, "device", device);
        cJSON_AddNumberToObject(o, "threads", threads > 0 ? threads : omp_get_max_threads());
        cJSON_AddNumberToObject(o, "steps_this_process", steps_here);
        cJSON_AddNumberToObject(o, "step_seconds", steps_here ? train_s / steps_here : 0);
        if (stopped_at) cJSON_AddNumberToObject(o, "stopped_at_step", stopped_at);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("mqar: %s, %d layers, d=%d, %d heads, T=%d, K=%d pairs, V=%d, %zu params\n", mname,
               layers, dim, mc.n_heads, c.seq, c.pairs, c.vocab, lina_model_n_params(m));
        printf("  trained %d steps x %d on %d examples (lr %g) in %.1f s, final loss %.4f\n",
               stopped_at ? stopped_at : tc.steps, tc.batch, n_train, tc.lr, total_s, train_loss);
        printf("  test accuracy %.2f%% on %d examples (%d answers), answer loss %.4f\n",
               100.0 * acc, n_test, n_test * c.pairs, test_loss);
    }
    rc = 0;
done:
    lina_adamw_free(opt);
    lina_model_free(m);
    for (int i = 0; i < n_sets; i++) {
        free(x_train[i]);
        free(y_train[i]);
    }
    free(x_test);
    free(y_test);
    return rc;
}
