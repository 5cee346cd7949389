/* ListOps: generator checked by an independent evaluator and tree parser;
 * classifier gradients against central finite differences (both mixers);
 * linear-attention mixer against a direct O(T^2) reference; config errors;
 * a tiny training run that must lower the loss; saving/restoring (exact,
 * with AdamW state) and warm starts across lengths; the CLI's --checkpoint
 * resume (after --stop-after and after a SIGKILL) equals the uninterrupted
 * run bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lina.h"
#include "models/listops_internal.h"
#include "util/check.h"
#include "util/fixture.h"

/* Recursive-descent evaluator over the token list: returns the value of the
 * node at *pos, advances *pos; tracks depth and argument counts. -1 on a
 * malformed expression. */
typedef struct {
    int max_depth, min_args, max_args;
} tree_stats;

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static int eval_node(const int32_t *t, int n, int *pos, int depth, tree_stats *st) {
    if (*pos >= n) return -1;
    if (depth > st->max_depth) st->max_depth = depth;
    int tok = t[(*pos)++];
    if (tok >= 0 && tok <= 9) return tok;
    if (tok < LINA_LISTOPS_MIN || tok > LINA_LISTOPS_SM) return -1;
    int vals[64], k = 0;
    while (*pos < n && t[*pos] != LINA_LISTOPS_END) {
        if (k == 64) return -1;
        int v = eval_node(t, n, pos, depth + 1, st);
        if (v < 0) return -1;
        vals[k++] = v;
    }
    if (*pos >= n) return -1;
    (*pos)++; /* ] */
    if (k < st->min_args) st->min_args = k;
    if (k > st->max_args) st->max_args = k;
    if (k == 0) return -1;
    qsort(vals, k, sizeof(int), cmp_int);
    int sum = 0;
    for (int i = 0; i < k; i++) sum += vals[i];
    switch (tok) {
    case LINA_LISTOPS_MIN: return vals[0];
    case LINA_LISTOPS_MAX: return vals[k - 1];
    case LINA_LISTOPS_SM: return sum % 10;
    default: return (int)floor((vals[(k - 1) / 2] + vals[k / 2]) / 2.0); /* int(np.median) */
    }
}

static void test_generator(void) {
    lina_listops_config c = lina_listops_config_default();
    c.min_len = 60, c.max_len = 300;
    int n = 400;
    int32_t *tok = malloc(sizeof(int32_t) * n * c.max_len), len[400], lab[400];
    lina_status s = lina_listops_generate(&c, n, 7, tok, len, lab);
    test_report(s == LINA_OK, "listops_generate_ok", "%s", lina_last_error());
    int bad_label = 0, bad_len = 0, bad_tree = 0, max_depth = 0, min_args = 99, max_args = 0;
    int hist[10] = {0}, used[LINA_LISTOPS_VOCAB] = {0};
    for (int i = 0; i < n; i++) {
        const int32_t *t = tok + (size_t)i * c.max_len;
        tree_stats st = {0, 99, 0};
        int pos = 0, v = eval_node(t, len[i], &pos, 1, &st);
        if (v < 0 || pos != len[i] || (len[i] < c.max_len && t[len[i]] != -1)) bad_tree++;
        if (v != lab[i]) bad_label++;
        if (len[i] < c.min_len || len[i] > c.max_len) bad_len++;
        if (st.max_depth > max_depth) max_depth = st.max_depth;
        if (st.min_args < min_args) min_args = st.min_args;
        if (st.max_args > max_args) max_args = st.max_args;
        if (lab[i] >= 0 && lab[i] < 10) hist[lab[i]]++;
        for (int j = 0; j < len[i]; j++) used[t[j]]++;
    }
    test_report(!bad_tree, "listops_trees_parse", "%d malformed", bad_tree);
    test_report(!bad_label, "listops_label_equals_evaluator", "%d of %d differ", bad_label, n);
    test_report(!bad_len, "listops_length_in_range", "%d outside [%d, %d]", bad_len, c.min_len, c.max_len);
    test_report(max_depth <= 10 && max_depth >= 5, "listops_depth_le_10", "max depth %d", max_depth);
    test_report(min_args >= 2 && max_args <= 10 && max_args >= 8, "listops_args_2_10", "args %d..%d",
                min_args, max_args);
    int all_tokens = 1, classes = 0;
    for (int v = 0; v < LINA_LISTOPS_VOCAB; v++) all_tokens &= used[v] > 0;
    for (int v = 0; v < 10; v++) classes += hist[v] > 0;
    test_report(all_tokens && classes == 10, "listops_all_tokens_and_labels", "%d classes", classes);
    /* determinism: example i depends on (seed, i) only */
    int32_t *tok2 = malloc(sizeof(int32_t) * 3 * c.max_len), len2[3], lab2[3];
    lina_listops_generate(&c, 3, 7, tok2, len2, lab2);
    test_report(!memcmp(tok2, tok, sizeof(int32_t) * 3 * c.max_len) && lab2[2] == lab[2],
                "listops_deterministic", "prefix differs");
    /* the default LRA range works too */
    lina_listops_config d = lina_listops_config_default();
    int32_t *tok3 = malloc(sizeof(int32_t) * 4 * d.max_len), len3[4], lab3[4];
    s = lina_listops_generate(&d, 4, 1, tok3, len3, lab3);
    int ok = s == LINA_OK;
    for (int i = 0; i < 4 && ok; i++) ok = len3[i] >= 500 && len3[i] <= 2000;
    test_report(ok, "listops_lra_lengths", "%s", lina_last_error());
    free(tok), free(tok2), free(tok3);
}

static void test_config_errors(void) {
    lina_listops_config c = lina_listops_config_default();
    c.min_len = 3;
    test_report(lina_listops_config_check(&c) == LINA_ERR_INVALID_ARG, "listops_rejects_min_len_3", "accepted");
    c = lina_listops_config_default(), c.max_len = 400;
    test_report(lina_listops_config_check(&c) == LINA_ERR_INVALID_ARG, "listops_rejects_max_below_min", "accepted");
    c = lina_listops_config_default(), c.max_depth = 2, c.max_args = 2, c.min_len = 5;
    test_report(lina_listops_config_check(&c) == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "min_len"),
                "listops_rejects_unreachable_length", "%s", lina_last_error());
    lina_listops_model_config mc = {LINA_LISTOPS_LINEAR, 10, 1, 3, 0};
    lina_listops_model *m = NULL;
    test_report(lina_listops_model_create(&mc, 1, &m) == LINA_ERR_INVALID_ARG && !m,
                "listops_rejects_dim_not_multiple_of_heads", "accepted");
}

/* The mixer against the direct O(T^2) form o_i = sum_j (fq_i . fk_j) v_j / sum_j (fq_i . fk_j),
 * odd sizes: two sequences of 5 and 9 tokens, 3 heads of dim 7. */
static void test_linear_attn_reference(void) {
    int B = 2, H = 3, d = 7, D = H * d, N = 14;
    int64_t cu[3] = {0, 5, 14};
    test_rng r;
    rng_seed(&r, 9);
    float *fq = alloc_floats(N * D), *fk = alloc_floats(N * D), *v = alloc_floats(N * D);
    float *o = alloc_floats(N * D), *ref = alloc_floats(N * D), *den = alloc_floats(N * H);
    fill_uniform(&r, fq, N * D, 0.1f, 1.5f);
    fill_uniform(&r, fk, N * D, 0.1f, 1.5f);
    fill_normal(&r, v, N * D, 1.0f);
    listops_linear_attn_forward(B, cu, H, d, fq, fk, v, den, o, 1);
    for (int s = 0; s < B; s++)
        for (int h = 0; h < H; h++)
            for (int64_t i = cu[s]; i < cu[s + 1]; i++) {
                double num[7] = {0}, z = 0;
                for (int64_t j = cu[s]; j < cu[s + 1]; j++) {
                    double a = 0;
                    for (int c = 0; c < d; c++) a += (double)fq[i * D + h * d + c] * fk[j * D + h * d + c];
                    z += a;
                    for (int c = 0; c < d; c++) num[c] += a * v[j * D + h * d + c];
                }
                for (int c = 0; c < d; c++) ref[i * D + h * d + c] = (float)(num[c] / z);
            }
    check_close("listops_linear_attn_vs_quadratic", o, ref, N * D, 1e-5);
    free(fq), free(fk), free(v), free(o), free(ref), free(den);
}

/* Logits of two sequences packed together equal those of each alone (the
 * mixers must not leak across cu_seqlens boundaries). */
static void test_packing(lina_listops_mixer mixer, const char *name) {
    lina_listops_model_config mc = {mixer, 8, 2, 2, 16};
    lina_listops_model *m = NULL;
    lina_listops_model_create(&mc, 3, &m);
    int32_t toks[16 + 9] = {11, 3, 4, 14, 10, 1, 2, 3, 5, 12, 7, 8, 9, 14, 0, 1,
                            13, 4, 5, 6, 7, 8, 9, 1, 14};
    int64_t cu2[3] = {0, 16, 25}, cu1a[2] = {0, 16}, cu1b[2] = {0, 9};
    float both[20], a[10], b[10];
    lina_listops_model_forward(m, 2, cu2, toks, NULL, 0, both, NULL);
    lina_listops_model_forward(m, 1, cu1a, toks, NULL, 0, a, NULL);
    lina_listops_model_forward(m, 1, cu1b, toks + 16, NULL, 0, b, NULL);
    char nm[80];
    snprintf(nm, sizeof nm, "listops_packing_%s_seq0", name);
    check_close(nm, both, a, 10, 1e-5);
    snprintf(nm, sizeof nm, "listops_packing_%s_seq1", name);
    check_close(nm, both + 10, b, 10, 1e-5);
    lina_listops_model_free(m);
}

static void test_gradients(lina_listops_mixer mixer, const char *name) {
    lina_listops_model_config mc = {mixer, 8, 2, 2, 12};
    lina_listops_model *m = NULL;
    lina_status s = lina_listops_model_create(&mc, 5, &m);
    if (s) {
        test_report(0, name, "create: %s", lina_last_error());
        return;
    }
    int32_t toks[26] = {11, 3, 4, 14, 10, 1, 2, 3, 5, 12, 7, 8, 14, 13, 4, 5, 6, 7, 8, 9, 1, 14, 2, 9, 0, 5};
    int64_t cu[4] = {0, 7, 19, 26};
    int32_t labels[3] = {4, 1, 7};
    double loss;
    lina_listops_model_forward(m, 3, cu, toks, labels, 1, NULL, &loss);
    int64_t P = lina_listops_model_n_params(m);
    float *p = lina_listops_model_params(m), *g = lina_listops_model_grads(m);
    /* every parameter tensor is hit: sample 300 indices spread over the flat array */
    int K = 300;
    float *an = alloc_floats(K), *fd = alloc_floats(K);
    float h = 1e-2f;
    for (int k = 0; k < K; k++) {
        int64_t i = (int64_t)((double)k / K * P + 7) % P;
        float save = p[i];
        double lp, lm;
        p[i] = save + h;
        lina_listops_model_forward(m, 3, cu, toks, labels, 0, NULL, &lp);
        p[i] = save - h;
        lina_listops_model_forward(m, 3, cu, toks, labels, 0, NULL, &lm);
        p[i] = save;
        fd[k] = (float)((lp - lm) / (2 * h));
        an[k] = g[i];
    }
    char nm[80];
    snprintf(nm, sizeof nm, "listops_grad_fd_%s", name);
    check_close(nm, an, fd, K, 2e-2);
    free(an), free(fd);
    lina_listops_model_free(m);
}

/* A tiny training run on short expressions: the loss must drop (CI config). */
static void test_training(lina_listops_mixer mixer, const char *name) {
    lina_listops_config c = lina_listops_config_default();
    c.min_len = 8, c.max_len = 40, c.max_depth = 3, c.max_args = 4;
    int n = 256, B = 16;
    int32_t *tok = malloc(sizeof(int32_t) * n * c.max_len), len[256], lab[256];
    lina_listops_generate(&c, n, 11, tok, len, lab);
    lina_listops_model_config mc = {mixer, 32, 2, 2, c.max_len};
    lina_listops_model *m = NULL;
    lina_listops_model_create(&mc, 1, &m);
    lina_listops_adamw o = {3e-3f, 0.9f, 0.98f, 1e-8f, 0.01f, 1.0f};
    double loss0 = 0, loss1 = 0, acc = 0;
    lina_listops_accuracy(m, n, c.max_len, tok, len, lab, 64, &acc, &loss0);
    int32_t packed[16 * 40];
    int64_t cu[17];
    for (int step = 0; step < 150; step++) {
        cu[0] = 0;
        for (int s = 0; s < B; s++) {
            int i = (step * B + s) % n;
            memcpy(packed + cu[s], tok + (size_t)i * c.max_len, sizeof(int32_t) * len[i]);
            cu[s + 1] = cu[s] + len[i];
        }
        int32_t y[16];
        for (int s = 0; s < B; s++) y[s] = lab[(step * B + s) % n];
        double l;
        lina_listops_model_forward(m, B, cu, packed, y, 1, NULL, &l);
        lina_listops_model_step(m, &o, NULL);
    }
    lina_listops_accuracy(m, n, c.max_len, tok, len, lab, 64, &acc, &loss1);
    char nm[80];
    snprintf(nm, sizeof nm, "listops_train_%s_loss_drops", name);
    test_report(loss1 < 0.8 * loss0, nm, "train loss %.3f -> %.3f (acc %.3f)", loss0, loss1, acc);
    printf("  %s: train-set loss %.3f -> %.3f, accuracy %.3f\n", name, loss0, loss1, acc);
    lina_listops_model_free(m);
    free(tok);
}

/* One AdamW step of m on a fixed small batch. */
static void one_step(lina_listops_model *m) {
    int32_t toks[12] = {11, 3, 4, 14, 10, 1, 2, 3, 5, 14, 6, 9};
    int64_t cu[3] = {0, 4, 12};
    int32_t y[2] = {4, 1};
    lina_listops_adamw o = {1e-2f, 0.9f, 0.98f, 1e-8f, 0.01f, 1.0f};
    double loss;
    lina_listops_model_forward(m, 2, cu, toks, y, 1, NULL, &loss);
    lina_listops_model_step(m, &o, NULL);
}

static int same_bits(const float *a, const float *b, int64_t n) { return !memcmp(a, b, sizeof(float) * n); }

/* Write with the AdamW state, restore into a fresh model: the next step is
 * bit-identical (moments and step count came back); other configs refused. */
static void test_save_restore(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/lina_test_listops_%d.safetensors", (int)getpid());
    lina_listops_model_config mc = {LINA_LISTOPS_LINEAR, 8, 2, 2, 16};
    lina_listops_model *a = NULL, *b = NULL, *c = NULL;
    lina_listops_model_create(&mc, 1, &a);
    lina_listops_model_create(&mc, 2, &b);
    one_step(a), one_step(a);
    lina_st_writer *w = NULL;
    lina_st_file *f = NULL;
    lina_status st = lina_st_writer_create(&w);
    if (!st) st = lina_listops_model_write(a, 1, w);
    if (!st) st = lina_st_writer_save(w, path);
    lina_st_writer_free(w);
    if (!st) st = lina_st_open(path, &f);
    if (!st) st = lina_listops_model_restore(b, f, 1);
    test_report(!st, "listops_restore_ok", "%s", lina_last_error());
    int64_t n = lina_listops_model_n_params(a);
    int same0 = same_bits(lina_listops_model_params(a), lina_listops_model_params(b), n);
    one_step(a), one_step(b);
    int same1 = same_bits(lina_listops_model_params(a), lina_listops_model_params(b), n);
    test_report(same0 && same1, "listops_restore_then_step_bit_exact", "params %s, after a step %s",
                same0 ? "same" : "differ", same1 ? "same" : "differ");
    lina_listops_model_config other = mc;
    other.heads = 4;
    lina_listops_model_create(&other, 1, &c);
    st = f ? lina_listops_model_restore(c, f, 1) : LINA_ERR_IO;
    test_report(st && strstr(lina_last_error(), "heads = 2") != NULL, "listops_restore_refuses_other_heads", "%s",
                lina_last_error());
    lina_st_close(f);
    lina_listops_model_free(a), lina_listops_model_free(b), lina_listops_model_free(c);
    remove(path);
}

/* Warm start 20 -> 30 positions: weights and rows 0..19 copied, rows 20..29
 * keep the target's initialization; shape mismatches refused by name. */
static void test_warm_start(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/lina_test_listops_ws_%d.safetensors", (int)getpid());
    lina_listops_model_config src = {LINA_LISTOPS_LINEAR, 8, 2, 2, 20}, dst = src;
    dst.max_len = 30;
    lina_listops_model *a = NULL, *b = NULL, *fresh = NULL;
    lina_listops_model_create(&src, 1, &a);
    one_step(a);
    lina_status st = lina_listops_model_save(a, path);
    lina_listops_model_create(&dst, 2, &b);
    lina_listops_model_create(&dst, 2, &fresh);
    if (!st) st = lina_listops_model_warm_start(b, path);
    test_report(!st, "listops_warm_start_ok", "%s", lina_last_error());
    int D = 8, V = LINA_LISTOPS_VOCAB;
    const float *pa = lina_listops_model_params(a), *pb = lina_listops_model_params(b);
    const float *pf = lina_listops_model_params(fresh);
    /* flat layout: embed (V, D), pos (max_len, D), then the rest */
    int64_t na = lina_listops_model_n_params(a), rest = na - (int64_t)(V + 20) * D;
    int embed = same_bits(pa, pb, (int64_t)V * D);
    int rows = same_bits(pa + V * D, pb + V * D, 20 * D);
    int new_rows = same_bits(pb + (V + 20) * D, pf + (V + 20) * D, 10 * D);
    int others = same_bits(pa + (V + 20) * D, pb + (V + 30) * D, rest);
    test_report(embed && rows && new_rows && others, "listops_warm_start_copies",
                "embed %d, rows 0..19 %d, rows 20..29 fresh %d, layers/head %d", embed, rows, new_rows, others);
    lina_listops_model_config wrong[3] = {dst, dst, dst};
    wrong[0].dim = 16, wrong[1].mixer = LINA_LISTOPS_SOFTMAX, wrong[2].max_len = 0;
    const char *names[3] = {"dim = 8", "linear", "positions"};
    for (int i = 0; i < 3; i++) {
        lina_listops_model *m = NULL;
        lina_listops_model_create(&wrong[i], 1, &m);
        st = lina_listops_model_warm_start(m, path);
        char nm[80];
        snprintf(nm, sizeof nm, "listops_warm_start_refuses_%d", i);
        test_report(st && strstr(lina_last_error(), names[i]) != NULL, nm, "%s", lina_last_error());
        lina_listops_model_free(m);
    }
    st = lina_listops_model_warm_start(b, "/nonexistent/listops.safetensors");
    test_report(st != LINA_OK, "listops_warm_start_missing_file", "%s", lina_last_error());
    lina_listops_model_free(a), lina_listops_model_free(b), lina_listops_model_free(fresh);
    remove(path);
}

static int run(const char *cmd) { return system(cmd); }

static int files_equal(const char *a, const char *b) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return run(cmd) == 0;
}

/* lina listops --checkpoint: 40 steps at once == 13 steps, stop, resume; and
 * == a run killed (SIGKILL) once its first checkpoint exists, then rerun.
 * A checkpoint of other settings is refused, naming the setting. */
static void test_cli_resume(void) {
    char lina[1100], tmp[256], cmd[8192], a[400], b[400];
    if (!fixture_lina_exe(lina, sizeof lina)) return;
    snprintf(tmp, sizeof tmp, "/tmp/lina_test_listops_cli_%d", (int)getpid());
    const char *common = "--min-len 10 --max-len 40 --train 100 --val 20 --test 20 --steps 40 --batch 4 --dim 16 "
                         "--heads 2 --eval-every 10 --seed 5 --threads 1 --every 6 --quiet --json";
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && mkdir -p %s && cd %s && %s listops %s --checkpoint full --save full.st > full.json && "
             "%s listops %s --checkpoint part --stop-after 13 > /dev/null && "
             "%s listops %s --checkpoint part --save part.st > part.json",
             tmp, tmp, tmp, lina, common, lina, common, lina, common);
    int rc = run(cmd);
    snprintf(a, sizeof a, "%s/full.st", tmp);
    snprintf(b, sizeof b, "%s/part.st", tmp);
    int same = files_equal(a, b);
    /* the JSON (test accuracy, curve) agrees too, apart from the timings */
    snprintf(cmd, sizeof cmd,
             "cd %s && for f in full part; do sed -E 's/\"(train_seconds|generate_seconds|seconds)\":[0-9.e+-]+//g' "
             "$f.json > $f.cmp; done && cmp -s full.cmp part.cmp",
             tmp);
    int same_json = rc == 0 && run(cmd) == 0;
    test_report(rc == 0 && same && same_json, "listops_cli_stop_resume_bit_exact", "rc %d, weights %s, json %s", rc,
                same ? "same" : "differ", same_json ? "same" : "differs");
    /* a real interruption: SIGKILL once a checkpoint exists (the steps per
     * second make this land somewhere in the run; any point must resume) */
    snprintf(cmd, sizeof cmd,
             "cd %s && (%s listops %s --steps 400 --checkpoint kill > /dev/null & p=$!; "
             "while [ ! -e kill/checkpoint.safetensors ]; do sleep 0.005; done; kill -9 $p; wait $p; true) 2> /dev/null && "
             "%s listops %s --steps 400 --checkpoint kill --save kill.st > /dev/null && "
             "%s listops %s --steps 400 --save once.st > /dev/null",
             tmp, lina, common, lina, common, lina, common);
    rc = run(cmd);
    snprintf(a, sizeof a, "%s/kill.st", tmp);
    snprintf(b, sizeof b, "%s/once.st", tmp);
    same = files_equal(a, b);
    test_report(rc == 0 && same, "listops_cli_sigkill_resume_bit_exact", "rc %d, weights %s", rc,
                same ? "same" : "differ");
    /* other settings: refused with the setting named */
    snprintf(cmd, sizeof cmd, "cd %s && %s listops %s --lr 2e-3 --checkpoint part > /dev/null 2> refused.txt; "
             "test $? -ne 0 && grep -q 'it has lr=0.001, this run has lr=0.002' refused.txt", tmp, lina, common);
    test_report(run(cmd) == 0, "listops_cli_checkpoint_other_settings_refused", "%s", "see refused.txt");
    /* --init-from across lengths runs; a wrong width is refused */
    snprintf(cmd, sizeof cmd, "cd %s && %s listops %s --min-len 30 --max-len 80 --steps 4 --init-from full.st "
             "> /dev/null && ! %s listops %s --dim 32 --steps 4 --init-from full.st > /dev/null 2> dim.txt && "
             "grep -q 'dim = 16' dim.txt", tmp, lina, common, lina, common);
    test_report(run(cmd) == 0, "listops_cli_init_from", "%s", "warm start 10-40 -> 30-80, dim mismatch refused");
    /* --steps 0 scores the --init-from model: the trained run's test accuracy and loss again */
    snprintf(cmd, sizeof cmd, "cd %s && %s listops %s --steps 0 --init-from full.st > score.json && "
             "grep -o '\"accuracy\":[^,]*,\"test_loss\":[^,]*' full.json > a.txt && "
             "grep -o '\"accuracy\":[^,]*,\"test_loss\":[^,]*' score.json > b.txt && test -s a.txt && cmp -s a.txt b.txt",
             tmp, lina, common);
    test_report(run(cmd) == 0, "listops_cli_steps0_scores_init_from", "%s", "see a.txt b.txt");
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    run(cmd);
}

int main(void) {
    test_generator();
    test_config_errors();
    test_linear_attn_reference();
    test_packing(LINA_LISTOPS_LINEAR, "linear");
    test_packing(LINA_LISTOPS_SOFTMAX, "softmax");
    test_gradients(LINA_LISTOPS_LINEAR, "linear");
    test_gradients(LINA_LISTOPS_SOFTMAX, "softmax");
    test_training(LINA_LISTOPS_LINEAR, "linear");
    test_training(LINA_LISTOPS_SOFTMAX, "softmax");
    test_save_restore();
    test_warm_start();
    test_cli_resume();
    return test_finish();
}
