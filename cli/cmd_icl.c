/* lina icl: in-context linear regression with stacked linear self-attention
 * (Vladymyrov et al. 2024). Trains one model and evaluates it against ridge
 * baselines; prints a summary or one JSON object. */
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

#define CMD "lina icl"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lina icl [options]\n\n"
            "Train a stack of linear self-attention layers to do in-context linear regression\n"
            "(d = 10, N = 20 pairs, y = <w,x> + sigma*noise, sigma drawn once per sequence) and\n"
            "report the adjusted loss (model loss minus ridge with the true sigma; loss = MSE/2).\n\n"
            "  --layers N        attention layers, 1..64 (default 1)\n"
            "  --param P         full | diag | gdpp (default diag)\n"
            "  --sigma-max X     sigma ~ U(0, X) (default 0)\n"
            "  --sigmas A,B,...  categorical sigma (instead of --sigma-max)\n"
            "  --d N             input dimension (default 10)\n"
            "  --n N             context pairs (default 20)\n"
            "  --steps N         Adam steps (default 2000)\n"
            "  --batch N         sequences per step (default 512)\n"
            "  --lr X            peak learning rate (default 2e-3; warm-up, cosine decay)\n"
            "  --clip X          clip the global gradient norm at X, 0 = off (default 1)\n"
            "  --init-std X      initial parameter scale (default 0: automatic, by depth;\n"
            "                    with --init-gd: noise added to the GD start, 0 = none)\n"
            "  --init-gd X       start every layer as one GD step of size X on the context\n"
            "                    (w_yx = -X; stable for deep stacks; default 0: random start)\n"
            "  --seed N          seed for initialisation and data (default 1)\n"
            "  --eval N          fresh evaluation sequences (default 20000)\n"
            "  --threads N       OpenMP threads (default: all cores)\n"
            "  --json            print one JSON object\n"
            "  --quiet           no progress bar\n");
}

static void on_progress(void *user, int step, int steps, double loss) {
    cli_progress *p = user;
    char info[64];
    snprintf(info, sizeof info, "loss %.4f", loss);
    if (step == steps) cli_progress_finish(p, info);
    else cli_progress_update(p, step, info);
}

int cmd_icl(int argc, char **argv) {
    lina_icl_config c = lina_icl_config_default();
    int steps = 2000, batch = 512, eval_n = 20000, seed = 1, json = 0, quiet = 0, threads = 0;
    float lr = 2e-3f, clip = 1.0f;
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
            fprintf(stderr, "lina icl: %s needs a value (or unknown option)\n", a);
            return 2;
        } else if (!strcmp(a, "--layers")) ok = cli_int(CMD, a, v, 1, 64, &c.layers);
        else if (!strcmp(a, "--d")) ok = cli_int(CMD, a, v, 1, 63, &c.d);
        else if (!strcmp(a, "--n")) ok = cli_int(CMD, a, v, 1, 100000, &c.n_ctx);
        else if (!strcmp(a, "--steps")) ok = cli_int(CMD, a, v, 0, 100000000, &steps);
        else if (!strcmp(a, "--batch")) ok = cli_int(CMD, a, v, 1, 1 << 20, &batch);
        else if (!strcmp(a, "--eval")) ok = cli_int(CMD, a, v, 1, 10000000, &eval_n);
        else if (!strcmp(a, "--seed")) ok = cli_int(CMD, a, v, 0, 2147483647, &seed);
        else if (!strcmp(a, "--threads")) ok = cli_int(CMD, a, v, 1, 256, &threads);
        else if (!strcmp(a, "--lr")) ok = cli_float(CMD, a, v, -HUGE_VAL, HUGE_VAL, &lr);
        else if (!strcmp(a, "--clip")) ok = cli_float(CMD, a, v, -HUGE_VAL, HUGE_VAL, &clip);
        else if (!strcmp(a, "--init-std")) ok = cli_float(CMD, a, v, -HUGE_VAL, HUGE_VAL, &c.init_std);
        else if (!strcmp(a, "--init-gd")) ok = cli_float(CMD, a, v, -HUGE_VAL, HUGE_VAL, &c.init_gd_step);
        else if (!strcmp(a, "--sigma-max")) ok = cli_float(CMD, a, v, -HUGE_VAL, HUGE_VAL, &c.sigma_max);
        else if (!strcmp(a, "--param")) {
            if (!strcmp(v, "full")) c.param = LINA_ICL_FULL;
            else if (!strcmp(v, "diag")) c.param = LINA_ICL_DIAG;
            else if (!strcmp(v, "gdpp") || !strcmp(v, "gd++")) c.param = LINA_ICL_GDPP;
            else {
                fprintf(stderr, "lina icl: --param '%s' must be full, diag or gdpp\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--sigmas")) {
            char buf[256], *save = NULL;
            snprintf(buf, sizeof buf, "%s", v);
            c.n_sigmas = 0;
            for (char *t = strtok_r(buf, ",", &save); t && ok; t = strtok_r(NULL, ",", &save)) {
                if (c.n_sigmas == 8) {
                    fprintf(stderr, "lina icl: --sigmas takes at most 8 values\n");
                    return 2;
                }
                ok = cli_float(CMD, a, t, -HUGE_VAL, HUGE_VAL, &c.sigmas[c.n_sigmas++]);
            }
        } else {
            fprintf(stderr, "lina icl: unknown option '%s' (see lina icl --help)\n", a);
            return 2;
        }
        if (!ok) return 2;
        i++;
    }
    if (!(lr > 0)) {
        fprintf(stderr, "lina icl: --lr = %g must be > 0\n", lr);
        return 2;
    }
    if (c.n_ctx < c.d + 1)
        fprintf(stderr, "lina icl: note: N = %d <= d = %d, AdaRR's OLS noise estimate is undefined\n",
                c.n_ctx, c.d);
    if (threads > 0) omp_set_num_threads(threads);
    lina_icl_model *m;
    if (lina_icl_create(&c, (uint64_t)seed, &m) != LINA_OK) {
        fprintf(stderr, "lina icl: %s\n", lina_last_error());
        return 2;
    }
    cli_progress bar;
    cli_progress_start(&bar, "icl train", steps);
    double t0 = cli_now();
    lina_status st = lina_icl_train(m, steps, batch, lr, clip, (uint64_t)seed * 7919 + 1,
                                    quiet ? NULL : on_progress, &bar);
    double train_s = cli_now() - t0;
    lina_icl_eval_result r;
    if (st == LINA_OK) st = lina_icl_eval(m, eval_n, (uint64_t)seed + 1000003, &r);
    if (st != LINA_OK) {
        fprintf(stderr, "lina icl: %s\n", lina_last_error());
        lina_icl_free(m);
        return 1;
    }
    static const char *pname[] = {"full", "diag", "gdpp"};
    char noise[128] = "";
    if (c.n_sigmas) {
        int off = snprintf(noise, sizeof noise, "{");
        for (int i = 0; i < c.n_sigmas; i++)
            off += snprintf(noise + off, sizeof noise - off, "%s%g", i ? "," : "", c.sigmas[i]);
        snprintf(noise + off, sizeof noise - off, "}");
    } else {
        snprintf(noise, sizeof noise, "U(0,%g)", c.sigma_max);
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "param", pname[c.param]);
        cJSON_AddNumberToObject(o, "layers", c.layers);
        cJSON_AddStringToObject(o, "noise", noise);
        cJSON_AddNumberToObject(o, "d", c.d);
        cJSON_AddNumberToObject(o, "n", c.n_ctx);
        cJSON_AddNumberToObject(o, "steps", steps);
        cJSON_AddNumberToObject(o, "batch", batch);
        cJSON_AddNumberToObject(o, "lr", lr);
        cJSON_AddNumberToObject(o, "clip", clip);
        cJSON_AddNumberToObject(o, "seed", seed);
        cJSON_AddNumberToObject(o, "init_std", c.init_std);
        cJSON_AddNumberToObject(o, "init_gd", c.init_gd_step);
        cJSON_AddNumberToObject(o, "skipped_steps", lina_icl_skipped_steps(m));
        cJSON_AddNumberToObject(o, "eval", eval_n);
        cJSON_AddNumberToObject(o, "loss", r.loss);
        cJSON_AddNumberToObject(o, "oracle_loss", r.oracle_loss);
        cJSON_AddNumberToObject(o, "adjusted_loss", r.adjusted_loss);
        cJSON_AddNumberToObject(o, "const_rr", r.const_rr);
        cJSON_AddNumberToObject(o, "ada_rr", r.ada_rr);
        cJSON_AddNumberToObject(o, "tuned_rr", r.tuned_rr);
        cJSON_AddNumberToObject(o, "train_seconds", train_s);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("icl: %s, %d layer(s), d=%d, N=%d, noise %s, %d steps x %d, lr %g, seed %d\n",
               pname[c.param], c.layers, c.d, c.n_ctx, noise, steps, batch, lr, seed);
        printf("  model loss     %.5f\n  oracle loss    %.5f (ridge, true sigma)\n", r.loss,
               r.oracle_loss);
        printf("  adjusted loss  %.5f\n", r.adjusted_loss);
        printf("  baselines (adjusted): ConstRR %.5f (lambda %.3g)  AdaRR %.5f  TunedRR %.5f\n",
               r.const_rr, r.const_rr_lambda, r.ada_rr, r.tuned_rr);
        printf("  trained in %.1f s (%d overflowing batches skipped), evaluated on %d fresh sequences\n",
               train_s, lina_icl_skipped_steps(m), eval_n);
    }
    lina_icl_free(m);
    return 0;
}
