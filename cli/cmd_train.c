/* lina train: train a byte-level language model on a text file.
 * Progress on stderr, a CSV log + PNG curves (gnuplot) and checkpoints in --out. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <cjson/cJSON.h>

#include "args.h"
#include "cli.h"
#include "lina.h"

#define CMD "lina train"

#define MAX_CONSECUTIVE_NAN 5

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: lina train [options]\n"
            "Train a byte-level linear-transformer language model (docs/MODELS.md).\n\n"
            "data and output:\n"
            "  --data FILE        text file (default: $LINA_SHARED/data/tinyshakespeare.txt,\n"
            "                     ../shared/data/tinyshakespeare.txt, or the KJV Bible from\n"
            "                     Debian's bible-kjv, extracted to $TMPDIR/lina-kjv.txt)\n"
            "  --out DIR          checkpoints, log.csv, curves.png (default: out)\n"
            "  --resume           continue the run in --out bit-exactly\n"
            "model:\n"
            "  --config FILE      config.json to start from\n"
            "  --preset NAME      tiny (dim 64, 2 layers), small (128, 4), base (256, 6)\n"
            "  --mixer LIST       per-layer mixers, cycled: gated_deltanet, softmax, deltanet,\n"
            "                     gla, mamba2, retnet, linear, hgrn2, cosformer, performer,\n"
            "                     hedgehog (e.g. gated_deltanet,softmax)\n"
            "  --layers N --dim N --heads N   override the size\n"
            "  --tie              tie the LM head to the embedding\n"
            "optimization:\n"
            "  --steps N (1000)   --batch N (8)   --seq N (128)   --accum N (1)\n"
            "  --lr X (1e-3)      --min-lr X (lr/10)   --warmup N (steps/20)\n"
            "  --wd X (0.1)       --clip X (1.0, 0 = off)   --seed N (1)\n"
            "  --threads N        (default: all cores; results do not depend on it)\n"
            "  --eval-every N (100)  --eval-batches N (8)  --save-every N (500)\n"
            "  --stop-at N        stop after step N with a checkpoint (--resume continues)\n"
            "With --resume the run's hyperparameters come from DIR/train_state.json.\n");
}

typedef struct {
    const char *data, *out, *config, *preset, *mixers;
    int resume, layers, dim, heads, tie, threads;
    lina_train_config t;
    lina_adamw_config opt;
    int eval_every, eval_batches, save_every, warmup_set, min_lr_set;
    int64_t stop_at; /* stop (with a checkpoint) after this step; 0 = run to --steps */
    char data_buf[4096];
} train_opts;

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The repository root: two levels above the running binary (build/lina). */
static void repo_root(char *out, size_t n) {
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    out[0] = 0;
    if (len <= 0) return;
    exe[len] = 0;
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) return;
        *slash = 0;
    }
    snprintf(out, n, "%s", exe);
}

/* The King James Bible as plain text, extracted once with Debian's `bible`
 * program (package bible-kjv, which reads bible-kjv-text's compressed data)
 * into a cache file. */
static int kjv_text(char *out, size_t n) {
    if (!file_exists("/usr/bin/bible")) return 0;
    const char *tmp = getenv("TMPDIR");
    snprintf(out, n, "%s/lina-kjv.txt", tmp && *tmp ? tmp : "/tmp");
    if (file_exists(out)) return 1;
    char part[4200], cmd[8600];
    snprintf(part, sizeof part, "%s.%d.part", out, (int)getpid());
    snprintf(cmd, sizeof cmd, "/usr/bin/bible -f 'Genesis1:1-Revelation22:21' > '%s' 2>/dev/null", part);
    fprintf(stderr, "lina train: extracting the King James Bible (Debian bible-kjv) to %s\n", out);
    if (system(cmd) != 0 || rename(part, out) != 0) {
        remove(part);
        return 0;
    }
    return 1;
}

static const char *default_data(train_opts *o) {
    const char *shared = getenv("LINA_SHARED");
    char root[4096];
    if (shared) {
        snprintf(o->data_buf, sizeof o->data_buf, "%s/data/tinyshakespeare.txt", shared);
        if (file_exists(o->data_buf)) return o->data_buf;
    }
    repo_root(root, sizeof root);
    snprintf(o->data_buf, sizeof o->data_buf, "%s/../shared/data/tinyshakespeare.txt", root);
    if (root[0] && file_exists(o->data_buf)) return o->data_buf;
    snprintf(o->data_buf, sizeof o->data_buf, "../shared/data/tinyshakespeare.txt");
    if (file_exists(o->data_buf)) return o->data_buf;
    if (kjv_text(o->data_buf, sizeof o->data_buf)) return o->data_buf;
    return NULL;
}

static int parse_args(int argc, char **argv, train_opts *o) {
    memset(o, 0, sizeof *o);
    o->out = "out";
    o->t.steps = 1000;
    o->t.batch = 8;
    o->t.seq = 128;
    o->t.accum = 1;
    o->t.lr = 1e-3f;
    o->t.clip = 1.0f;
    o->t.seed = 1;
    o->opt = lina_adamw_default();
    o->eval_every = 100;
    o->eval_batches = 8;
    o->save_every = 500;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int steps = 0, seed = 0;
#define VAL (i++, v)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            train_usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--data")) o->data = VAL;
        else if (!strcmp(a, "--out")) o->out = VAL;
        else if (!strcmp(a, "--config")) o->config = VAL;
        else if (!strcmp(a, "--preset")) o->preset = VAL;
        else if (!strcmp(a, "--mixer")) o->mixers = VAL;
        else if (!strcmp(a, "--resume")) o->resume = 1;
        else if (!strcmp(a, "--tie")) o->tie = 1;
        else if (!strcmp(a, "--layers")) { if (!cli_int(CMD, a, VAL, 1, LINA_MODEL_MAX_LAYERS, &o->layers)) return 0; }
        else if (!strcmp(a, "--dim")) { if (!cli_int(CMD, a, VAL, 1, 65536, &o->dim)) return 0; }
        else if (!strcmp(a, "--heads")) { if (!cli_int(CMD, a, VAL, 1, 4096, &o->heads)) return 0; }
        else if (!strcmp(a, "--steps")) { if (!cli_int(CMD, a, VAL, 0, 1 << 30, &steps)) return 0; o->t.steps = steps; }
        else if (!strcmp(a, "--batch")) { if (!cli_int(CMD, a, VAL, 1, 1 << 16, &o->t.batch)) return 0; }
        else if (!strcmp(a, "--seq")) { if (!cli_int(CMD, a, VAL, 1, 1 << 20, &o->t.seq)) return 0; }
        else if (!strcmp(a, "--accum")) { if (!cli_int(CMD, a, VAL, 1, 1 << 16, &o->t.accum)) return 0; }
        else if (!strcmp(a, "--warmup")) { if (!cli_int(CMD, a, VAL, 0, 1 << 30, &steps)) return 0; o->t.warmup = steps; o->warmup_set = 1; }
        else if (!strcmp(a, "--stop-at")) { if (!cli_int(CMD, a, VAL, 1, 1 << 30, &steps)) return 0; o->stop_at = steps; }
        else if (!strcmp(a, "--seed")) { if (!cli_int(CMD, a, VAL, 0, 2147483647, &seed)) return 0; o->t.seed = (uint64_t)seed; }
        else if (!strcmp(a, "--threads")) { if (!cli_int(CMD, a, VAL, 0, 256, &o->threads)) return 0; }
        else if (!strcmp(a, "--eval-every")) { if (!cli_int(CMD, a, VAL, 1, 1 << 30, &o->eval_every)) return 0; }
        else if (!strcmp(a, "--eval-batches")) { if (!cli_int(CMD, a, VAL, 1, 1 << 20, &o->eval_batches)) return 0; }
        else if (!strcmp(a, "--save-every")) { if (!cli_int(CMD, a, VAL, 1, 1 << 30, &o->save_every)) return 0; }
        else if (!strcmp(a, "--lr")) { if (!cli_float(CMD, a, VAL, 0, 10, &o->t.lr)) return 0; }
        else if (!strcmp(a, "--min-lr")) { if (!cli_float(CMD, a, VAL, 0, 10, &o->t.min_lr)) return 0; o->min_lr_set = 1; }
        else if (!strcmp(a, "--wd")) { if (!cli_float(CMD, a, VAL, 0, 10, &o->opt.weight_decay)) return 0; }
        else if (!strcmp(a, "--clip")) { if (!cli_float(CMD, a, VAL, 0, 1e9, &o->t.clip)) return 0; }
        else {
            fprintf(stderr, "lina train: unknown option '%s' (lina train --help)\n", a);
            return 0;
        }
#undef VAL
        if (i >= argc) {
            fprintf(stderr, "lina train: %s needs a value\n", a);
            return 0;
        }
    }
    if (!o->warmup_set) o->t.warmup = o->t.steps / 20;
    if (!o->min_lr_set) o->t.min_lr = o->t.lr / 10;
    o->opt.lr = o->t.lr;
    return 1;
}

static int build_config(train_opts *o, lina_model_config *c) {
    *c = lina_model_config_default();
    if (o->config && lina_model_config_load(o->config, c) != LINA_OK) {
        fprintf(stderr, "lina train: %s\n", lina_last_error());
        return 0;
    }
    if (o->preset && lina_model_config_preset(c, o->preset) != LINA_OK) {
        fprintf(stderr, "lina train: %s\n", lina_last_error());
        return 0;
    }
    if (o->layers) c->n_layers = o->layers;
    if (o->dim) {
        c->dim = o->dim;
        c->head_k_dim = c->head_v_dim = c->intermediate = 0;
    }
    if (o->heads) {
        c->n_heads = o->heads;
        c->head_k_dim = c->head_v_dim = 0;
    }
    if (o->tie) c->tie_embeddings = 1;
    if (o->mixers) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", o->mixers);
        lina_mixer_kind list[LINA_MODEL_MAX_LAYERS];
        int n = 0;
        for (char *tok = strtok(buf, ","); tok && n < LINA_MODEL_MAX_LAYERS; tok = strtok(NULL, ",")) {
            int k = lina_mixer_parse(tok);
            if (k < 0) {
                fprintf(stderr, "lina train: unknown mixer '%s' (lina train --help lists them)\n", tok);
                return 0;
            }
            list[n++] = (lina_mixer_kind)k;
        }
        if (!n) {
            fprintf(stderr, "lina train: --mixer needs at least one name\n");
            return 0;
        }
        for (int l = 0; l < LINA_MODEL_MAX_LAYERS; l++) c->mixer[l] = list[l % n];
    }
    if (c->max_seq < o->t.seq) c->max_seq = o->t.seq;
    if (lina_model_config_validate(c) != LINA_OK) {
        fprintf(stderr, "lina train: %s\n", lina_last_error());
        return 0;
    }
    return 1;
}

/* ---- run state, log, plot ---- */

static int write_run_state(const char *out, int64_t step, int64_t skipped, const train_opts *o) {
    char path[4096], text[1024];
    snprintf(path, sizeof path, "%s/train_state.json", out);
    snprintf(text, sizeof text,
             "{\n  \"step\": %lld,\n  \"skipped\": %lld,\n  \"seed\": %llu,\n  \"steps\": %lld,\n"
             "  \"warmup\": %lld,\n  \"batch\": %d,\n  \"seq\": %d,\n  \"accum\": %d,\n"
             "  \"lr\": %.9g,\n  \"min_lr\": %.9g,\n  \"clip\": %.9g,\n  \"weight_decay\": %.9g\n}\n",
             (long long)step, (long long)skipped, (unsigned long long)o->t.seed,
             (long long)o->t.steps, (long long)o->t.warmup, o->t.batch, o->t.seq, o->t.accum,
             o->t.lr, o->t.min_lr, o->t.clip, o->opt.weight_decay);
    return lina_write_file_atomic(path, text, strlen(text)) == LINA_OK;
}

/* --resume: the step reached and the run's hyperparameters (they define the
 * batches and the schedule, so they are not taken from the command line). */
static int read_run_state(const char *out, int64_t *step, int64_t *skipped, train_opts *o) {
    char path[4096], buf[4096];
    snprintf(path, sizeof path, "%s/train_state.json", out);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    const char *keys[] = {"step", "skipped", "seed", "steps", "warmup", "batch", "seq", "accum",
                          "lr", "min_lr", "clip", "weight_decay"};
    double v[12];
    int ok = j != NULL;
    for (int i = 0; i < 12 && ok; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
        ok = cJSON_IsNumber(it) && it->valuedouble >= 0;
        if (ok) v[i] = it->valuedouble;
    }
    cJSON_Delete(j);
    if (!ok || v[5] < 1 || v[6] < 1 || v[7] < 1) return 0;
    *step = (int64_t)v[0];
    *skipped = (int64_t)v[1];
    o->t.seed = (uint64_t)v[2];
    o->t.steps = (int64_t)v[3];
    o->t.warmup = (int64_t)v[4];
    o->t.batch = (int)v[5];
    o->t.seq = (int)v[6];
    o->t.accum = (int)v[7];
    o->t.lr = (float)v[8];
    o->t.min_lr = (float)v[9];
    o->t.clip = (float)v[10];
    o->opt.weight_decay = (float)v[11];
    o->opt.lr = o->t.lr;
    return 1;
}

static int save_checkpoint(const char *out, lina_model *m, lina_adamw *opt, int64_t step,
                           int64_t skipped, const train_opts *o) {
    char path[4096];
    if (lina_model_save(m, out) != LINA_OK) {
        fprintf(stderr, "\nlina train: saving the checkpoint failed: %s\n", lina_last_error());
        return 0;
    }
    snprintf(path, sizeof path, "%s/optimizer.safetensors", out);
    if (lina_adamw_save(opt, path) != LINA_OK) {
        fprintf(stderr, "\nlina train: saving the optimizer state failed: %s\n", lina_last_error());
        return 0;
    }
    if (!write_run_state(out, step, skipped, o)) {
        fprintf(stderr, "\nlina train: saving train_state.json failed: %s\n", lina_last_error());
        return 0;
    }
    return 1;
}

static void plot(const char *out) {
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "lina train: gnuplot not found, no curves.png (apt-get install gnuplot-nox)\n");
        return;
    }
    char cmd[8400];
    snprintf(cmd, sizeof cmd,
             "gnuplot -e \"set terminal png size 900,500; set output '%s/curves.png'; "
             "set datafile separator ','; set key autotitle columnhead; set xlabel 'step'; "
             "set ylabel 'loss (nats/byte)'; set grid; "
             "plot '%s/log.csv' using 1:3 with lines title 'train', "
             "'' using 1:4 with linespoints title 'validation'\" 2>/dev/null",
             out, out);
    if (system(cmd) == 0) fprintf(stderr, "lina train: curves in %s/curves.png\n", out);
    else fprintf(stderr, "lina train: gnuplot failed, no curves.png\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress(int64_t step, int64_t total, float loss, double tok_s, double eta, int tty) {
    int width = 24, filled = total ? (int)(width * (double)step / total) : width;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '=' : ' ';
    bar[width] = 0;
    fprintf(stderr, "%sstep %lld/%lld [%s] loss %.4f | %.0f tok/s | ETA %dm%02ds%s",
            tty ? "\r" : "", (long long)step, (long long)total, bar, loss, tok_s, (int)(eta / 60),
            (int)fmod(eta, 60), tty ? "   " : "\n");
    fflush(stderr);
}

int cmd_train(int argc, char **argv) {
    train_opts o;
    if (!parse_args(argc, argv, &o)) return 2;
    if (o.threads > 0) {
#ifdef _OPENMP
        omp_set_num_threads(o.threads);
#endif
    }
    if (!o.data) o.data = default_data(&o);
    if (!o.data) {
        fprintf(stderr, "lina train: no --data given and no default corpus found (looked for "
                        "$LINA_SHARED/data/tinyshakespeare.txt, ../shared/data/tinyshakespeare.txt, "
                        "or the King James Bible (apt-get install bible-kjv)); pass --data FILE\n");
        return 1;
    }
    lina_text_data *data = NULL;
    if (lina_text_data_load(o.data, 0.1f, &data) != LINA_OK) {
        fprintf(stderr, "lina train: %s\n", lina_last_error());
        return 1;
    }
    if (lina_text_data_len(data, 0) < (size_t)o.t.seq + 1 || lina_text_data_len(data, 1) < (size_t)o.t.seq + 1) {
        fprintf(stderr, "lina train: %s is too small: %zu training / %zu validation bytes, need > --seq %d in each\n",
                o.data, lina_text_data_len(data, 0), lina_text_data_len(data, 1), o.t.seq);
        lina_text_data_free(data);
        return 1;
    }
    lina_model *m = NULL;
    lina_adamw *opt = NULL;
    int64_t start = 0, skipped = 0;
    int rc = 1;
    char path[4096];
    if (o.resume) {
        if (!read_run_state(o.out, &start, &skipped, &o)) {
            fprintf(stderr, "lina train: --resume: no readable %s/train_state.json\n", o.out);
            goto done;
        }
        if (lina_model_load(o.out, &m) != LINA_OK) {
            fprintf(stderr, "lina train: --resume: %s\n", lina_last_error());
            goto done;
        }
    } else {
        lina_model_config c;
        if (!build_config(&o, &c)) goto done;
        if (lina_model_create(&c, o.t.seed, &m) != LINA_OK) {
            fprintf(stderr, "lina train: %s\n", lina_last_error());
            goto done;
        }
    }
    if (lina_model_get_config(m)->vocab_size < 256) {
        fprintf(stderr, "lina train: byte-level data needs vocab_size >= 256, the model has %d\n",
                lina_model_get_config(m)->vocab_size);
        goto done;
    }
    if (o.threads > 0) lina_model_set_threads(m, o.threads);
    if (lina_adamw_create(m, &o.opt, &opt) != LINA_OK) {
        fprintf(stderr, "lina train: %s\n", lina_last_error());
        goto done;
    }
    if (o.resume) {
        snprintf(path, sizeof path, "%s/optimizer.safetensors", o.out);
        if (lina_adamw_load(opt, path) != LINA_OK) {
            fprintf(stderr, "lina train: --resume: %s\n", lina_last_error());
            goto done;
        }
    } else if (!save_checkpoint(o.out, m, opt, 0, 0, &o)) {
        goto done;
    }
    const lina_model_config *mc = lina_model_get_config(m);
    fprintf(stderr, "lina train: %s (%zu train / %zu val bytes) | %d layers [", o.data,
            lina_text_data_len(data, 0), lina_text_data_len(data, 1), mc->n_layers);
    for (int l = 0; l < mc->n_layers; l++) fprintf(stderr, "%s%s", l ? "," : "", lina_mixer_name(mc->mixer[l]));
    fprintf(stderr, "] dim %d heads %d | %zu params | batch %d x %d x %d | %s step %lld\n", mc->dim,
            mc->n_heads, lina_model_n_params(m), o.t.batch, o.t.seq, o.t.accum,
            o.resume ? "resuming at" : "from", (long long)start);
    snprintf(path, sizeof path, "%s/log.csv", o.out);
    FILE *log = fopen(path, o.resume ? "a" : "w");
    if (!log) {
        fprintf(stderr, "lina train: cannot write %s: %s\n", path, strerror(errno));
        goto done;
    }
    if (!o.resume) fprintf(log, "step,lr,train_loss,val_loss,grad_norm,tokens_per_s,elapsed_s\n");
    int tty = isatty(2), nan_run = 0, stopped = 0;
    double t0 = now_s(), tok_per_step = (double)o.t.batch * o.t.seq * o.t.accum;
    float last_loss = NAN;
    rc = 0;
    for (int64_t step = start; step < o.t.steps; step++) {
        lina_train_result r;
        double ts = now_s();
        if (lina_train_step(m, opt, data, &o.t, step, &r) != LINA_OK) {
            fprintf(stderr, "\nlina train: step %lld failed: %s\n", (long long)step, lina_last_error());
            rc = 1;
            break;
        }
        double dt = now_s() - ts, elapsed = now_s() - t0;
        double tok_s = tok_per_step / (dt > 0 ? dt : 1e-9);
        double eta = elapsed / (double)(step + 1 - start) * (double)(o.t.steps - step - 1);
        if (r.skipped) {
            skipped++;
            fprintf(stderr, "\nlina train: step %lld: non-finite loss/gradient (loss %g), update skipped\n",
                    (long long)step, r.loss);
            if (++nan_run >= MAX_CONSECUTIVE_NAN) {
                fprintf(stderr, "lina train: %d non-finite steps in a row, stopping (try a lower --lr)\n",
                        nan_run);
                rc = 1;
                break;
            }
        } else {
            nan_run = 0;
            last_loss = r.loss;
        }
        int64_t done_steps = step + 1;
        float val = NAN;
        if (done_steps % o.eval_every == 0 || done_steps == o.t.steps) {
            if (lina_eval_loss(m, data, &o.t, o.eval_batches, &val) != LINA_OK) {
                fprintf(stderr, "\nlina train: validation failed: %s\n", lina_last_error());
                rc = 1;
                break;
            }
            fprintf(stderr, "%sstep %lld: train loss %.4f, val loss %.4f, lr %.3g, grad norm %.3f\n",
                    tty ? "\r" : "", (long long)done_steps, last_loss, val, r.lr, r.grad_norm);
        }
        char val_s[32] = ""; /* empty when not evaluated at this step */
        if (isfinite(val)) snprintf(val_s, sizeof val_s, "%.6f", val);
        fprintf(log, "%lld,%.6g,%.6f,%s,%.4f,%.1f,%.2f\n", (long long)done_steps, r.lr, r.loss,
                val_s, r.grad_norm, tok_s, elapsed);
        if (done_steps % 10 == 0 || !tty) fflush(log);
        if (tty || done_steps % 10 == 0) progress(done_steps, o.t.steps, last_loss, tok_s, eta, tty);
        int stop = o.stop_at > 0 && done_steps >= o.stop_at;
        if (done_steps % o.save_every == 0 || done_steps == o.t.steps || stop) {
            if (!save_checkpoint(o.out, m, opt, done_steps, skipped, &o)) {
                rc = 1;
                break;
            }
        }
        if (stop) {
            fprintf(stderr, "%slina train: stopped after step %lld (--stop-at); --resume continues\n",
                    tty ? "\n" : "", (long long)done_steps);
            stopped = 1;
            break;
        }
    }
    if (tty) fprintf(stderr, "\n");
    fclose(log);
    if (rc == 0 && !stopped) {
        fprintf(stderr, "lina train: done, checkpoint in %s (%lld skipped steps)\n", o.out, (long long)skipped);
        plot(o.out);
    }
done:
    lina_adamw_free(opt);
    lina_model_free(m);
    lina_text_data_free(data);
    return rc;
}
