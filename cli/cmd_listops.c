/* lina listops: Long Range Arena ListOps. Generates train/val/test splits from
 * seeds, trains a bidirectional encoder classifier (linear or softmax
 * attention) with AdamW, validates periodically, reports the test accuracy. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <omp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "cli.h"
#include "lina.h"
#include "progress.h"

#define CMD "lina listops"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lina listops [options]\n\n"
            "Long Range Arena ListOps (Tay et al. 2020): the value 0-9 of a nested\n"
            "expression of MIN, MAX, MED, SM (sum mod 10) over digits, e.g.\n"
            "[MAX 2 9 [MIN 4 7 ] 0 ] = 9, depth <= 10, 2-10 arguments per operator.\n"
            "Trains an encoder (embedding + learned positions, --layers x [RMSNorm,\n"
            "bidirectional mixer, RMSNorm, SwiGLU MLP], mean pooling, linear head) with\n"
            "AdamW (warm-up 5%%, cosine to lr/10) and prints the test accuracy.\n\n"
            "  --mixer NAME    linear (non-causal linear attention, elu+1) | softmax\n"
            "                  (bidirectional softmax attention) (default linear)\n"
            "  --dim N         model width (default 64)\n"
            "  --layers N      layers (default 2)\n"
            "  --heads N       heads, dim %% heads == 0 (default 2)\n"
            "  --no-pos        no position embeddings\n"
            "  --min-len N     shortest expression in tokens (default 500, as LRA)\n"
            "  --max-len N     longest expression in tokens (default 2000, as LRA)\n"
            "  --train N       training examples (default 96000, as LRA)\n"
            "  --val N         validation examples (default 2000)\n"
            "  --test N        test examples (default 2000)\n"
            "  --steps N       optimizer steps (default 2000; 0 = only score the initial\n"
            "                  or --init-from model on the validation and test splits)\n"
            "  --batch N       sequences per step (default 16)\n"
            "  --lr X          peak learning rate (default 1e-3)\n"
            "  --wd X          AdamW weight decay (default 0.01)\n"
            "  --clip X        gradient-norm clip, 0 = off (default 1)\n"
            "  --eval-every N  validate every N steps (default steps/10)\n"
            "  --seed N        seed: init and data (train/val/test use seed, seed+1, seed+2)\n"
            "  --threads N     OpenMP threads (default: all cores)\n"
            "  --init-from F   warm start from the weights F (--save of a run with the same\n"
            "                  mixer, dim, layers, heads, --no-pos, any lengths); learned\n"
            "                  positions the source has are copied, the rest keep their\n"
            "                  fresh N(0, 0.02^2) initialization\n"
            "  --save F        write the trained weights to F (safetensors, atomic)\n"
            "  --checkpoint D  save model + AdamW + step + data order to D every --every\n"
            "                  steps (atomic); rerunning the same command resumes from it\n"
            "                  bit-exactly; a checkpoint of other settings is refused\n"
            "  --every N       steps between checkpoints (default 100)\n"
            "  --stop-after N  stop after N steps of this process (checkpointed first), as\n"
            "                  an interruption would; rerun to continue\n"
            "  --json          print one JSON object\n"
            "  --quiet         no progress bar\n");
}

/* A float as the shortest decimal that names it (1e-3f prints 0.001). */
static double short_float(float x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%g", x);
    return strtod(buf, NULL);
}

typedef struct { /* one generated split, layout of lina_listops_generate */
    int n;
    int32_t *tokens, *lengths, *labels;
} split;

static int make_split(const lina_listops_config *c, int n, uint64_t seed, split *s) {
    s->n = n;
    s->tokens = malloc(sizeof(int32_t) * (size_t)n * c->max_len);
    s->lengths = malloc(sizeof(int32_t) * n);
    s->labels = malloc(sizeof(int32_t) * n);
    if (!s->tokens || !s->lengths || !s->labels) {
        fprintf(stderr, "lina listops: out of memory for %d examples of up to %d tokens\n", n, c->max_len);
        return 0;
    }
    if (lina_listops_generate(c, n, seed, s->tokens, s->lengths, s->labels)) {
        fprintf(stderr, "lina %s\n", lina_last_error());
        return 0;
    }
    return 1;
}

static void free_split(split *s) { free(s->tokens), free(s->lengths), free(s->labels); }

/* ---- checkpoints: DIR/checkpoint.safetensors, one file written atomically
 * (temp + fsync + rename): the model and AdamW state, the data order (the
 * current epoch's permutation, its position and the shuffle RNG), the running
 * statistics and the validation curve, and the run's settings (a checkpoint
 * of other settings is refused, naming the first that differs). ---- */

typedef struct {
    int step, pos;
    uint64_t rng;
    double loss_avg, val_acc, val_loss, best_val, seconds;
    long tokens_seen;
} train_state;

static int save_ckpt(const char *path, const lina_listops_model *m, const char *run, const train_state *t,
                     const int *order, int n_train, cJSON *curve) {
    lina_st_writer *w = NULL;
    char v[64];
    int64_t shape[1] = {n_train};
    lina_status st = lina_st_writer_create(&w);
    if (!st) st = lina_listops_model_write(m, 1, w);
    if (!st) st = lina_st_writer_add(w, "data.order", LINA_DTYPE_I32, 1, shape, order);
    if (!st) st = lina_st_writer_set_metadata(w, "listops.run", run);
#define META(key, fmt, value)                                          \
    if (!st) {                                                         \
        snprintf(v, sizeof v, fmt, value);                             \
        st = lina_st_writer_set_metadata(w, key, v);                   \
    }
    META("train.step", "%d", t->step);
    META("train.pos", "%d", t->pos);
    META("train.rng", "%llu", (unsigned long long)t->rng);
    META("train.loss_avg", "%.17g", t->loss_avg);
    META("train.val_acc", "%.17g", t->val_acc);
    META("train.val_loss", "%.17g", t->val_loss);
    META("train.best_val", "%.17g", t->best_val);
    META("train.seconds", "%.17g", t->seconds);
    META("train.tokens_seen", "%ld", t->tokens_seen);
#undef META
    char *c = cJSON_PrintUnformatted(curve);
    if (!c) {
        lina_st_writer_free(w);
        fprintf(stderr, "\nlina listops: checkpoint %s: out of memory for the curve\n", path);
        return 0;
    }
    if (!st) st = lina_st_writer_set_metadata(w, "train.curve", c);
    free(c);
    if (!st) st = lina_st_writer_save(w, path);
    lina_st_writer_free(w);
    if (st) fprintf(stderr, "\nlina listops: checkpoint %s: %s\n", path, lina_last_error());
    return !st;
}

/* "key=value key=value ...": names the first key whose value differs. */
static void explain_mismatch(const char *path, const char *saved, const char *run) {
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s", saved);
    snprintf(b, sizeof b, "%s", run);
    char *sa = NULL, *sb = NULL, *ta = strtok_r(a, " ", &sa), *tb = strtok_r(b, " ", &sb);
    while (ta && tb && !strcmp(ta, tb)) ta = strtok_r(NULL, " ", &sa), tb = strtok_r(NULL, " ", &sb);
    fprintf(stderr,
            "lina listops: %s was made by another run: it has %s, this run has %s\n"
            "  (use the same settings to resume, or another --checkpoint directory)\n",
            path, ta ? ta : "(nothing more)", tb ? tb : "(nothing more)");
}

static int meta_double(const lina_st_file *f, const char *key, double *out) {
    const char *s = lina_st_metadata(f, key);
    char *end = NULL;
    if (!s) return 0;
    *out = strtod(s, &end);
    return *end == 0;
}

/* 1 resumed, 0 no checkpoint yet, -1 error (printed). */
static int load_ckpt(const char *path, lina_listops_model *m, const char *run, train_state *t, int *order,
                     int n_train, int steps, cJSON **curve) {
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    lina_st_file *f = NULL;
    if (lina_st_open(path, &f)) {
        fprintf(stderr, "lina listops: %s\n", lina_last_error());
        return -1;
    }
    int rc = -1;
    const char *saved = lina_st_metadata(f, "listops.run");
    double step = 0, pos = 0, rng = 0, tok = 0;
    const char *rng_s = lina_st_metadata(f, "train.rng"), *curve_s = lina_st_metadata(f, "train.curve");
    int64_t shape[1] = {n_train};
    const lina_tensor_view *ov = lina_st_find(f, "data.order");
    if (!saved) {
        fprintf(stderr, "lina listops: %s is not a listops checkpoint (no listops.run)\n", path);
    } else if (strcmp(saved, run)) {
        explain_mismatch(path, saved, run);
    } else if (!meta_double(f, "train.step", &step) || !meta_double(f, "train.pos", &pos) || !rng_s ||
               !meta_double(f, "train.loss_avg", &t->loss_avg) || !meta_double(f, "train.val_acc", &t->val_acc) ||
               !meta_double(f, "train.val_loss", &t->val_loss) || !meta_double(f, "train.best_val", &t->best_val) ||
               !meta_double(f, "train.seconds", &t->seconds) || !meta_double(f, "train.tokens_seen", &tok) ||
               !curve_s || !ov || ov->dtype != LINA_DTYPE_I32 || ov->ndim != 1 || ov->shape[0] != shape[0] ||
               step < 0 || step > steps || pos < 0 || pos > n_train) {
        fprintf(stderr, "lina listops: %s: missing or out-of-range training state\n", path);
    } else if (lina_listops_model_restore(m, f, 1)) {
        fprintf(stderr, "lina listops: resuming from %s: %s\n", path, lina_last_error());
    } else {
        (void)rng;
        t->step = (int)step, t->pos = (int)pos, t->tokens_seen = (long)tok;
        t->rng = strtoull(rng_s, NULL, 10);
        memcpy(order, ov->data, sizeof(int32_t) * (size_t)n_train);
        cJSON_Delete(*curve);
        *curve = cJSON_Parse(curve_s);
        rc = *curve && cJSON_IsArray(*curve) ? 1 : -1;
        if (rc < 0) fprintf(stderr, "lina listops: %s: unreadable train.curve\n", path);
    }
    lina_st_close(f);
    return rc;
}

int cmd_listops(int argc, char **argv) {
    lina_listops_config c = lina_listops_config_default();
    lina_listops_model_config mc = {LINA_LISTOPS_LINEAR, 64, 2, 2, 0};
    lina_listops_adamw opt = {1e-3f, 0.9f, 0.98f, 1e-8f, 0.01f, 1.0f};
    int n_train = 96000, n_val = 2000, n_test = 2000, steps = 2000, batch = 16, eval_every = 0;
    int seed = 1, threads = 0, json = 0, quiet = 0, no_pos = 0, every = 100, stop_after = 0;
    const char *save_path = NULL, *init_from = NULL, *ckpt_dir = NULL;
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
        } else if (!strcmp(a, "--no-pos")) {
            no_pos = 1;
            continue;
        } else if (!v) {
            fprintf(stderr, "lina listops: %s needs a value (or unknown option)\n", a);
            return 2;
        } else if (!strcmp(a, "--mixer")) {
            if (!strcmp(v, "linear")) mc.mixer = LINA_LISTOPS_LINEAR;
            else if (!strcmp(v, "softmax")) mc.mixer = LINA_LISTOPS_SOFTMAX;
            else {
                fprintf(stderr, "lina listops: unknown mixer '%s' (linear or softmax)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--dim")) ok = cli_int(CMD, a, v, 1, 4096, &mc.dim);
        else if (!strcmp(a, "--layers")) ok = cli_int(CMD, a, v, 1, 64, &mc.layers);
        else if (!strcmp(a, "--heads")) ok = cli_int(CMD, a, v, 1, 4096, &mc.heads);
        else if (!strcmp(a, "--min-len")) ok = cli_int(CMD, a, v, 4, 100000, &c.min_len);
        else if (!strcmp(a, "--max-len")) ok = cli_int(CMD, a, v, 4, 100000, &c.max_len);
        else if (!strcmp(a, "--train")) ok = cli_int(CMD, a, v, 1, 10000000, &n_train);
        else if (!strcmp(a, "--val")) ok = cli_int(CMD, a, v, 1, 10000000, &n_val);
        else if (!strcmp(a, "--test")) ok = cli_int(CMD, a, v, 1, 10000000, &n_test);
        else if (!strcmp(a, "--steps")) ok = cli_int(CMD, a, v, 0, 100000000, &steps);
        else if (!strcmp(a, "--batch")) ok = cli_int(CMD, a, v, 1, 65536, &batch);
        else if (!strcmp(a, "--eval-every")) ok = cli_int(CMD, a, v, 1, 100000000, &eval_every);
        else if (!strcmp(a, "--lr")) ok = cli_float(CMD, a, v, -HUGE_VAL, HUGE_VAL, &opt.lr);
        else if (!strcmp(a, "--wd")) ok = cli_float(CMD, a, v, -HUGE_VAL, HUGE_VAL, &opt.weight_decay);
        else if (!strcmp(a, "--clip")) ok = cli_float(CMD, a, v, -HUGE_VAL, HUGE_VAL, &opt.clip);
        else if (!strcmp(a, "--seed")) ok = cli_int(CMD, a, v, 0, 2147483647, &seed);
        else if (!strcmp(a, "--threads")) ok = cli_int(CMD, a, v, 1, 256, &threads);
        else if (!strcmp(a, "--every")) ok = cli_int(CMD, a, v, 1, 100000000, &every);
        else if (!strcmp(a, "--stop-after")) ok = cli_int(CMD, a, v, 1, 100000000, &stop_after);
        else if (!strcmp(a, "--save")) save_path = v;
        else if (!strcmp(a, "--init-from")) init_from = v;
        else if (!strcmp(a, "--checkpoint")) ckpt_dir = v;
        else {
            fprintf(stderr, "lina listops: unknown option '%s' (see lina listops --help)\n", a);
            return 2;
        }
        if (!ok) return 2;
        i++;
    }
    if (lina_listops_config_check(&c)) {
        fprintf(stderr, "lina %s (--min-len/--max-len)\n", lina_last_error());
        return 2;
    }
    if (!(opt.lr > 0) || !(opt.weight_decay >= 0)) {
        fprintf(stderr, "lina listops: --lr = %g must be > 0 and --wd = %g >= 0\n", opt.lr, opt.weight_decay);
        return 2;
    }
    if (mc.dim % mc.heads) {
        fprintf(stderr, "lina listops: --dim = %d is not a multiple of --heads = %d\n", mc.dim, mc.heads);
        return 2;
    }
    if (!eval_every) eval_every = steps >= 10 ? steps / 10 : 1;
    if (threads > 0) omp_set_num_threads(threads);
    else threads = omp_get_max_threads();
    mc.max_len = no_pos ? 0 : c.max_len;

    split tr = {0}, va = {0}, te = {0};
    lina_listops_model *m = NULL;
    int64_t *cu = malloc(sizeof(int64_t) * (batch + 1));
    int32_t *packed = malloc(sizeof(int32_t) * (size_t)batch * c.max_len), *y = malloc(sizeof(int32_t) * batch);
    int32_t *order = malloc(sizeof(int32_t) * n_train);
    cJSON *curve = NULL; /* validation points */
    int rc = 1;
    double t_gen = cli_now();
    if (!cu || !packed || !y || !order) {
        fprintf(stderr, "lina listops: out of memory\n");
        goto done;
    }
    if (!make_split(&c, n_train, (uint64_t)seed, &tr) || !make_split(&c, n_val, (uint64_t)seed + 1, &va) ||
        !make_split(&c, n_test, (uint64_t)seed + 2, &te))
        goto done;
    t_gen = cli_now() - t_gen;
    if (lina_listops_model_create(&mc, (uint64_t)seed, &m) || lina_listops_model_set_threads(m, threads) ||
        (init_from && lina_listops_model_warm_start(m, init_from))) {
        fprintf(stderr, "lina listops: %s\n", lina_last_error());
        goto done;
    }
    const char *mname = mc.mixer == LINA_LISTOPS_LINEAR ? "linear" : "softmax";
    if (!quiet && !json)
        fprintf(stderr, "listops: generated %d/%d/%d examples of %d..%d tokens in %.1f s\n", n_train, n_val,
                n_test, c.min_len, c.max_len, t_gen);

    /* the settings that define the run: a checkpoint resumes only the same run */
    char run[1024], ckpt[4200];
    snprintf(run, sizeof run,
             "mixer=%s dim=%d layers=%d heads=%d positions=%d min_len=%d max_len=%d train=%d val=%d test=%d "
             "steps=%d batch=%d lr=%g wd=%g clip=%g eval_every=%d seed=%d init_from=%s",
             mname, mc.dim, mc.layers, mc.heads, !no_pos, c.min_len, c.max_len, n_train, n_val, n_test, steps,
             batch, opt.lr, opt.weight_decay, opt.clip, eval_every, seed, init_from ? init_from : "none");

    /* training: a fresh seeded permutation of the training set per epoch */
    train_state ts = {0};
    ts.rng = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 77;
    ts.pos = n_train;
    for (int i = 0; i < n_train; i++) order[i] = i;
    curve = cJSON_CreateArray();
    if (ckpt_dir) {
        if (mkdir(ckpt_dir, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "lina listops: cannot create --checkpoint %s: %s\n", ckpt_dir, strerror(errno));
            goto done;
        }
        snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", ckpt_dir);
        int r = load_ckpt(ckpt, m, run, &ts, order, n_train, steps, &curve);
        if (r < 0) goto done;
        if (r > 0 && !quiet && !json) fprintf(stderr, "listops: resuming %s at step %d\n", ckpt, ts.step);
    }
    int pos = ts.pos, step0 = ts.step, stopped = 0;
    uint64_t rng = ts.rng;
    cli_progress bar;
    char label[96], info[128];
    snprintf(label, sizeof label, "listops %s d=%d L=%d", mname, mc.dim, mc.layers);
    cli_progress_start(&bar, label, steps);
    double t0 = cli_now(), loss_avg = ts.loss_avg, val_acc = ts.val_acc, val_loss = ts.val_loss,
           best_val = ts.best_val;
    long tokens_seen = ts.tokens_seen, tokens_here = 0;
    for (int step = step0; step < steps && !stopped; step++) {
        cu[0] = 0;
        for (int s = 0; s < batch; s++) {
            if (pos == n_train) {
                for (int i = 0; i < n_train; i++) order[i] = i;
                for (int i = n_train - 1; i > 0; i--) {
                    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                    int j = (int)((rng >> 33) % (uint64_t)(i + 1)), t = order[i];
                    order[i] = order[j], order[j] = t;
                }
                pos = 0;
            }
            int e = order[pos++];
            memcpy(packed + cu[s], tr.tokens + (size_t)e * c.max_len, sizeof(int32_t) * tr.lengths[e]);
            cu[s + 1] = cu[s] + tr.lengths[e];
            y[s] = tr.labels[e];
        }
        tokens_seen += cu[batch], tokens_here += cu[batch];
        double loss = 0;
        lina_listops_adamw o = opt;
        o.lr = lina_lr_schedule(step, steps / 20, steps, opt.lr, opt.lr * 0.1f);
        if (lina_listops_model_forward(m, batch, cu, packed, y, 1, NULL, &loss) ||
            lina_listops_model_step(m, &o, NULL)) {
            fprintf(stderr, "\nlina listops: step %d: %s\n", step + 1, lina_last_error());
            goto done;
        }
        loss_avg = step ? 0.98 * loss_avg + 0.02 * loss : loss;
        if ((step + 1) % eval_every == 0 || step + 1 == steps) {
            if (lina_listops_accuracy(m, n_val, c.max_len, va.tokens, va.lengths, va.labels, batch, &val_acc,
                                      &val_loss)) {
                fprintf(stderr, "\nlina listops: %s\n", lina_last_error());
                goto done;
            }
            if (val_acc > best_val) best_val = val_acc;
            cJSON *pt = cJSON_CreateObject();
            cJSON_AddNumberToObject(pt, "step", step + 1);
            cJSON_AddNumberToObject(pt, "train_loss", loss_avg);
            cJSON_AddNumberToObject(pt, "val_loss", val_loss);
            cJSON_AddNumberToObject(pt, "val_accuracy", val_acc);
            cJSON_AddNumberToObject(pt, "seconds", ts.seconds + cli_now() - t0);
            cJSON_AddItemToArray(curve, pt);
            if (!quiet && !json) {
                fprintf(stderr, "%sstep %d: train loss %.4f, val loss %.4f, val accuracy %.2f%%\n", bar.tty ? "\n" : "",
                        step + 1, loss_avg, val_loss, 100 * val_acc);
            }
        }
        stopped = stop_after && step + 1 - step0 >= stop_after && step + 1 < steps;
        if (ckpt_dir && ((step + 1) % every == 0 || step + 1 == steps || stopped)) {
            train_state now = {step + 1, pos, rng, loss_avg, val_acc, val_loss, best_val,
                               ts.seconds + cli_now() - t0, tokens_seen};
            if (!save_ckpt(ckpt, m, run, &now, order, n_train, curve)) goto done;
        }
        if (!quiet) {
            double el = cli_now() - t0;
            snprintf(info, sizeof info, "loss %.4f | val %.1f%% | %.0f tok/s", loss_avg, 100 * val_acc,
                     el > 0 ? tokens_here / el : 0);
            if (step + 1 == steps || stopped) cli_progress_finish(&bar, info);
            else cli_progress_update(&bar, step + 1, info);
        }
        if (stopped && !json)
            fprintf(stderr, "listops: stopped after step %d (--stop-after %d)%s\n", step + 1, stop_after,
                    ckpt_dir ? "; rerun the same command to continue" : "");
    }
    if (!steps) { /* scoring only: the validation point of the untrained / warm-started model */
        if (lina_listops_accuracy(m, n_val, c.max_len, va.tokens, va.lengths, va.labels, batch, &val_acc, &val_loss)) {
            fprintf(stderr, "lina listops: %s\n", lina_last_error());
            goto done;
        }
        best_val = val_acc;
    }
    double train_s = ts.seconds + cli_now() - t0, test_acc = 0, test_loss = 0;
    if (stopped) { /* interrupted on purpose: no test, the checkpoint holds the state */
        rc = 0;
        if (json) printf("{\"stopped_at_step\": %d}\n", step0 + stop_after);
        goto done;
    }
    if (save_path && lina_listops_model_save(m, save_path)) {
        fprintf(stderr, "lina listops: --save %s: %s\n", save_path, lina_last_error());
        goto done;
    }
    if (lina_listops_accuracy(m, n_test, c.max_len, te.tokens, te.lengths, te.labels, batch, &test_acc,
                              &test_loss)) {
        fprintf(stderr, "lina listops: %s\n", lina_last_error());
        goto done;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "mixer", mname);
        cJSON_AddNumberToObject(o, "dim", mc.dim);
        cJSON_AddNumberToObject(o, "layers", mc.layers);
        cJSON_AddNumberToObject(o, "heads", mc.heads);
        cJSON_AddBoolToObject(o, "positions", !no_pos);
        if (init_from) cJSON_AddStringToObject(o, "init_from", init_from);
        cJSON_AddNumberToObject(o, "min_len", c.min_len);
        cJSON_AddNumberToObject(o, "max_len", c.max_len);
        cJSON_AddNumberToObject(o, "train", n_train);
        cJSON_AddNumberToObject(o, "val", n_val);
        cJSON_AddNumberToObject(o, "test", n_test);
        cJSON_AddNumberToObject(o, "steps", steps);
        cJSON_AddNumberToObject(o, "batch", batch);
        cJSON_AddNumberToObject(o, "lr", short_float(opt.lr));
        cJSON_AddNumberToObject(o, "seed", seed);
        cJSON_AddNumberToObject(o, "params", (double)lina_listops_model_n_params(m));
        cJSON_AddNumberToObject(o, "accuracy", test_acc);
        cJSON_AddNumberToObject(o, "test_loss", test_loss);
        cJSON_AddNumberToObject(o, "val_accuracy", val_acc);
        cJSON_AddNumberToObject(o, "best_val_accuracy", best_val);
        cJSON_AddNumberToObject(o, "train_loss", loss_avg);
        cJSON_AddNumberToObject(o, "train_seconds", train_s);
        cJSON_AddNumberToObject(o, "generate_seconds", t_gen);
        cJSON_AddItemToObject(o, "curve", curve);
        curve = NULL;
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("listops: %s mixer, %d layers, d=%d, %d heads, %s, %lld params\n", mname, mc.layers, mc.dim,
               mc.heads, no_pos ? "no positions" : "learned positions",
               (long long)lina_listops_model_n_params(m));
        printf("  data: %d/%d/%d train/val/test expressions of %d..%d tokens\n", n_train, n_val, n_test,
               c.min_len, c.max_len);
        printf("  trained %d steps x %d (lr %g) in %.1f s, train loss %.4f, val accuracy %.2f%% (best %.2f%%)\n",
               steps, batch, opt.lr, train_s, loss_avg, 100 * val_acc, 100 * best_val);
        printf("  test accuracy %.2f%% on %d examples, test loss %.4f\n", 100 * test_acc, n_test, test_loss);
    }
    rc = 0;
done:
    cJSON_Delete(curve);
    lina_listops_model_free(m);
    free_split(&tr), free_split(&va), free_split(&te);
    free(cu), free(packed), free(y), free(order);
    return rc;
}
