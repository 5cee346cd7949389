/* The language model end to end: loss, logits and EVERY parameter gradient of
 * tiny models (each mixer kind, hybrids, tied/untied head) against a PyTorch
 * autograd oracle (scripts/model_oracle.py, fixtures in tests/data/model_*);
 * prefill + recurrent steps == full forward; state save/load/fork bit-exact;
 * gradients identical for 1 and 2 threads; checkpoint round trip; bad input.
 *
 * Regenerate the fixtures: LINA_WRITE_FIXTURES=1 build/tests/test_model, then
 * /usr/bin/python3 scripts/model_oracle.py tests/data/model_*
 * (LINA_WRITE_FIXTURES=NAME writes only fixture NAME, e.g. "hedgehog"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lina.h"
#include "util/check.h"
#include "util/fixture.h"

#define B_TEST 2
#define T_TEST 67 /* > 64: the chunkwise forms run */

typedef struct {
    const char *name;
    const char *mixers[2];
    int tie;
    int conv_all; /* short_conv_all: a short convolution in every linear mixer */
} fixture;

static const fixture fixtures[] = {
    {"gdn", {"gated_deltanet", "gated_deltanet"}, 0, 0},
    {"softmax", {"softmax", "softmax"}, 1, 0},
    {"hybrid", {"gated_deltanet", "softmax"}, 0, 0},
    {"deltanet_gla", {"deltanet", "gla"}, 1, 0},
    {"mamba2_retnet", {"mamba2", "retnet"}, 0, 0},
    {"linear_hgrn2", {"linear", "hgrn2"}, 0, 0},
    {"cosformer_performer", {"cosformer", "performer"}, 0, 0},
    {"hedgehog", {"hedgehog", "hedgehog"}, 1, 0},
    {"conv_gla_retnet", {"gla", "retnet"}, 0, 1},
    {"conv_linear_mamba2", {"linear", "mamba2"}, 1, 1},
};

static char data_dir[1024];

static void fixture_dir(const fixture *f, char *out, size_t n) {
    snprintf(out, n, "%s/model_%s", data_dir, f->name);
}

static lina_model_config tiny_config(const fixture *f) {
    lina_model_config c = lina_model_config_default();
    c.dim = 32;
    c.n_layers = 2;
    c.n_heads = 2;
    c.intermediate = 64;
    c.init_std = 0.2f;
    c.max_seq = 128;
    c.tie_embeddings = f->tie;
    c.short_conv_all = f->conv_all;
    for (int l = 0; l < 2; l++) c.mixer[l] = (lina_mixer_kind)lina_mixer_parse(f->mixers[l]);
    return c;
}

/* Random model (norm weights and biases perturbed too) + tokens, saved for the oracle. */
static int write_fixture(const fixture *f) {
    char dir[1200], path[1300];
    fixture_dir(f, dir, sizeof dir);
    lina_model_config c = tiny_config(f);
    lina_model *m = NULL;
    if (lina_model_create(&c, 1234, &m) != LINA_OK) return 0;
    test_rng r;
    rng_seed(&r, 99);
    for (int i = 0; i < lina_model_n_tensors(m); i++) {
        const char *name;
        int64_t shape[4];
        size_t off;
        lina_model_tensor_info(m, i, &name, shape, &off);
        if (lina_model_tensor_decays(m, i) || strstr(name, "conv1d")) continue;
        size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
        float *w = lina_model_params(m) + off;
        for (size_t j = 0; j < n; j++) w[j] += 0.3f * rng_normal(&r);
    }
    int ok = lina_model_save(m, dir) == LINA_OK;
    int32_t tok[B_TEST * (T_TEST + 1)];
    for (int i = 0; i < B_TEST * (T_TEST + 1); i++) tok[i] = (int32_t)(rng_uniform(&r) * 256);
    lina_st_writer *w = NULL;
    int64_t shape[2] = {B_TEST, T_TEST + 1};
    snprintf(path, sizeof path, "%s/tokens.safetensors", dir);
    ok = ok && lina_st_writer_create(&w) == LINA_OK &&
         lina_st_writer_add(w, "tokens", LINA_DTYPE_I32, 2, shape, tok) == LINA_OK &&
         lina_st_writer_save(w, path) == LINA_OK;
    lina_st_writer_free(w);
    lina_model_free(m);
    printf("wrote %s: %s\n", dir, ok ? "ok" : lina_last_error());
    return ok;
}

typedef struct {
    lina_model *m;
    int32_t inp[B_TEST * T_TEST], tgt[B_TEST * T_TEST];
    lina_st_file *expected;
} loaded;

static int load_fixture(const fixture *f, loaded *L) {
    char dir[1200], path[1300];
    fixture_dir(f, dir, sizeof dir);
    memset(L, 0, sizeof *L);
    if (lina_model_load(dir, &L->m) != LINA_OK) {
        test_report(0, f->name, "load %s: %s", dir, lina_last_error());
        return 0;
    }
    lina_st_file *tf = NULL;
    snprintf(path, sizeof path, "%s/tokens.safetensors", dir);
    if (lina_st_open(path, &tf) != LINA_OK) {
        test_report(0, f->name, "%s", lina_last_error());
        return 0;
    }
    const lina_tensor_view *t = lina_st_find(tf, "tokens");
    const int32_t *tok = t ? t->data : NULL;
    for (int b = 0; tok && b < B_TEST; b++)
        for (int i = 0; i < T_TEST; i++) {
            L->inp[b * T_TEST + i] = tok[b * (T_TEST + 1) + i];
            L->tgt[b * T_TEST + i] = tok[b * (T_TEST + 1) + i + 1];
        }
    lina_st_close(tf);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (!tok || lina_st_open(path, &L->expected) != LINA_OK) {
        test_report(0, f->name, "fixture incomplete: %s", lina_last_error());
        return 0;
    }
    return 1;
}

/* Loss, logits and every gradient vs the oracle. */
static void test_oracle(const fixture *f, loaded *L) {
    char name[256];
    lina_model *m = L->m;
    size_t nl = (size_t)B_TEST * T_TEST * 256;
    float *logits = alloc_floats(nl), loss = 0, ref[1];
    lina_model_zero_grads(m);
    lina_status st = lina_model_forward(m, B_TEST, T_TEST, L->inp, L->tgt, logits, &loss);
    if (st == LINA_OK) st = lina_model_backward(m, 1.0f);
    snprintf(name, sizeof name, "%s forward+backward", f->name);
    test_report(st == LINA_OK, name, "%s", st == LINA_OK ? "" : lina_last_error());
    if (st != LINA_OK) goto done;
    int64_t one = 1;
    lina_st_read_f32(L->expected, "loss", 1, &one, ref);
    snprintf(name, sizeof name, "%s loss vs torch", f->name);
    test_report(fabsf(loss - ref[0]) <= 1e-4f * fabsf(ref[0]), name, "lina %.7f torch %.7f", loss, ref[0]);
    float *lref = alloc_floats(nl);
    int64_t lshape[3] = {B_TEST, T_TEST, 256};
    lina_st_read_f32(L->expected, "logits", 3, lshape, lref);
    snprintf(name, sizeof name, "%s logits vs torch", f->name);
    check_close(name, logits, lref, nl, 1e-4);
    free(lref);
    int bad = 0, n_t = lina_model_n_tensors(m);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < n_t; i++) {
        const char *tn;
        int64_t shape[4];
        size_t off;
        int nd = lina_model_tensor_info(m, i, &tn, shape, &off);
        size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
        float *g = alloc_floats(n);
        char gname[200];
        snprintf(gname, sizeof gname, "grad.%s", tn);
        if (lina_st_read_f32(L->expected, gname, nd, shape, g) != LINA_OK) {
            test_report(0, f->name, "oracle lacks %s: %s", gname, lina_last_error());
            bad++;
        } else {
            double e = rel_rms(lina_model_grads(m) + off, g, n);
            if (!(e <= 1e-4)) {
                printf("  %s: rel RMS %.3g\n", gname, e);
                bad++;
            }
            if (!(e <= worst)) {
                worst = e;
                worst_name = tn;
            }
        }
        free(g);
    }
    snprintf(name, sizeof name, "%s all %d gradients vs torch (rel RMS <= 1e-4)", f->name, n_t);
    test_report(bad == 0, name, "worst %.3g (%s)", worst, worst_name);
done:
    free(logits);
}

/* Prefill (chunkwise) then recurrent steps reproduce the full forward's logits. */
static void test_generation(const fixture *f, loaded *L) {
    char name[256];
    lina_model *m = L->m;
    const int T = T_TEST, split = 40, V = 256;
    float *full = alloc_floats((size_t)T * V), *lg = alloc_floats((size_t)T * V);
    lina_model_forward(m, 1, T, L->inp, NULL, full, NULL);
    lina_gen_state *s = NULL;
    lina_status st = lina_gen_state_create(m, &s);
    if (st == LINA_OK) st = lina_model_prefill(m, s, split, L->inp, lg + (size_t)(split - 1) * V);
    for (int t = split; t < T && st == LINA_OK; t++) st = lina_model_step(m, s, L->inp[t], lg + (size_t)t * V);
    snprintf(name, sizeof name, "%s prefill(%d) + %d steps == forward", f->name, split, T - split);
    if (st != LINA_OK)
        test_report(0, name, "%s", lina_last_error());
    else
        check_close(name, lg + (size_t)(split - 1) * V, full + (size_t)(split - 1) * V,
                    (size_t)(T - split + 1) * V, 1e-4);

    /* the prompt in two pieces: the second prefill continues the state (h0, conv history, positions) */
    lina_gen_state_reset(s);
    float piece[256];
    st = lina_model_prefill(m, s, 25, L->inp, NULL);
    if (st == LINA_OK) st = lina_model_prefill(m, s, 15, L->inp + 25, piece);
    snprintf(name, sizeof name, "%s prefill(25) + prefill(15) == forward", f->name);
    if (st != LINA_OK)
        test_report(0, name, "%s", lina_last_error());
    else
        check_close(name, piece, full + (size_t)39 * V, V, 1e-4);

    /* save / load / fork: bit-exact continuations */
    char path[256];
    snprintf(path, sizeof path, "/tmp/lina_test_state_%d.safetensors", (int)getpid());
    lina_gen_state *s2 = NULL, *s3 = NULL;
    lina_gen_state_reset(s);
    st = lina_model_prefill(m, s, 20, L->inp, NULL);
    if (st == LINA_OK) st = lina_gen_state_save(s, path);
    if (st == LINA_OK) st = lina_gen_state_clone(s, &s3);
    float a[256], b[256], c[256];
    for (int t = 20; t < 26 && st == LINA_OK; t++) st = lina_model_step(m, s, L->inp[t], a);
    if (st == LINA_OK) st = lina_gen_state_load(m, path, &s2);
    for (int t = 20; t < 26 && st == LINA_OK; t++) st = lina_model_step(m, s2, L->inp[t], b);
    for (int t = 20; t < 26 && st == LINA_OK; t++) st = lina_model_step(m, s3, L->inp[t], c);
    snprintf(name, sizeof name, "%s state save/load/fork bit-exact", f->name);
    int same = st == LINA_OK && !memcmp(a, b, sizeof a) && !memcmp(a, c, sizeof a);
    test_report(same, name, "%s", same ? "" : st == LINA_OK ? "continuations differ" : lina_last_error());
    unlink(path);
    lina_gen_state_free(s);
    lina_gen_state_free(s2);
    lina_gen_state_free(s3);
    free(full);
    free(lg);
}

/* Gradients do not depend on the thread count. */
static void test_threads(const fixture *f, loaded *L) {
    lina_model *m = L->m;
    size_t n = lina_model_n_params(m);
    float *g1 = alloc_floats(n), loss1, loss2;
    lina_model_set_threads(m, 1);
    lina_model_zero_grads(m);
    lina_model_forward(m, B_TEST, T_TEST, L->inp, L->tgt, NULL, &loss1);
    lina_model_backward(m, 1.0f);
    memcpy(g1, lina_model_grads(m), n * sizeof(float));
    lina_model_set_threads(m, 2);
    lina_model_zero_grads(m);
    lina_model_forward(m, B_TEST, T_TEST, L->inp, L->tgt, NULL, &loss2);
    lina_model_backward(m, 1.0f);
    char name[256];
    snprintf(name, sizeof name, "%s gradients identical for 1 and 2 threads", f->name);
    test_report(loss1 == loss2 && !memcmp(g1, lina_model_grads(m), n * sizeof(float)), name,
                "loss %.9g vs %.9g", loss1, loss2);
    free(g1);
}

static void test_checkpoint_roundtrip(loaded *L) {
    char root[256], dir[300], file_parent[320];
    snprintf(root, sizeof root, "/tmp/lina_test_ckpt_%d", (int)getpid());
    snprintf(dir, sizeof dir, "%s/runs/demo", root); /* parents missing, as `make demo`'s runs/demo */
    lina_model *m2 = NULL;
    lina_status st = lina_model_save(L->m, dir);
    if (st == LINA_OK) st = lina_model_load(dir, &m2);
    int same = st == LINA_OK && lina_model_n_params(m2) == lina_model_n_params(L->m) &&
               !memcmp(lina_model_params(m2), lina_model_params(L->m),
                       lina_model_n_params(m2) * sizeof(float));
    test_report(same, "checkpoint save/load round trip", "%s",
                same ? "" : st == LINA_OK ? "params differ" : lina_last_error());
    lina_model_free(m2);
    /* a parent that is a regular file: an error naming it */
    snprintf(file_parent, sizeof file_parent, "%s/config.json/sub", dir);
    st = lina_model_save(L->m, file_parent);
    snprintf(file_parent, sizeof file_parent, "%s/config.json", dir);
    test_report(st == LINA_ERR_IO && strstr(lina_last_error(), file_parent), "checkpoint dir under a file is an error",
                "status %d, '%s'", st, lina_last_error());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd)) {}
}

static void test_bad_input(void) {
    lina_model *m = NULL;
    lina_status st = lina_model_load("/nonexistent/lina_model", &m);
    test_report(st == LINA_ERR_IO && m == NULL, "load missing dir fails with IO error", "%s", lina_last_error());
    lina_model_config c;
    st = lina_model_config_from_json("{\"vocab_size\": 256, \"hidden_size\": ", &c);
    test_report(st == LINA_ERR_FORMAT, "malformed config.json rejected", "%s", lina_last_error());
    st = lina_model_config_from_json("{\"model_type\":\"lina\",\"vocab_size\":256,\"hidden_size\":30,"
                                     "\"num_hidden_layers\":1,\"num_heads\":4,\"mixers\":[\"gla\"]}", &c);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "n_heads"),
                "config with dim not divisible by heads rejected", "%s", lina_last_error());
    st = lina_model_config_from_json("{\"model_type\":\"lina\",\"vocab_size\":256,\"hidden_size\":32,"
                                     "\"num_hidden_layers\":1,\"num_heads\":4,\"short_conv_all\":2,"
                                     "\"mixers\":[\"gla\"]}", &c);
    test_report(st == LINA_ERR_FORMAT && strstr(lina_last_error(), "short_conv_all"),
                "config with a non-boolean short_conv_all rejected", "%s", lina_last_error());
    st = lina_model_config_from_json("{\"model_type\":\"lina\",\"vocab_size\":256,\"hidden_size\":32,"
                                     "\"num_hidden_layers\":1,\"num_heads\":4,\"mixers\":[\"bogus\"]}", &c);
    test_report(st == LINA_ERR_FORMAT && strstr(lina_last_error(), "bogus"), "unknown mixer rejected",
                "%s", lina_last_error());
    /* a softmax model refuses a context longer than max_seq */
    c = lina_model_config_default();
    c.dim = 16;
    c.n_layers = 1;
    c.n_heads = 2;
    c.max_seq = 8;
    c.mixer[0] = LINA_MIXER_SOFTMAX;
    lina_gen_state *s = NULL;
    int32_t tok[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    st = lina_model_create(&c, 1, &m);
    if (st == LINA_OK) st = lina_gen_state_create(m, &s);
    if (st == LINA_OK) st = lina_model_prefill(m, s, 9, tok, NULL);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "max_seq"),
                "softmax prompt longer than max_seq rejected", "%s", lina_last_error());
    int32_t bad = 300;
    st = lina_model_forward(m, 1, 1, &bad, NULL, NULL, NULL);
    test_report(st == LINA_ERR_INVALID_ARG, "token outside the vocabulary rejected", "%s", lina_last_error());
    lina_gen_state_free(s);
    lina_model_free(m);
}

/* A non-finite loss (NaN weight in the head) or a NaN inside a mixer (the op
 * rejects it) skips the update and leaves every other weight untouched. */
static void test_nan_skip(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/lina_test_nan_%d.txt", (int)getpid());
    FILE *f = fopen(path, "w");
    for (int i = 0; f && i < 300; i++) fprintf(f, "some text %d\n", i);
    if (f) fclose(f);
    lina_text_data *data = NULL;
    lina_model *m = NULL;
    lina_adamw *opt = NULL;
    lina_model_config c = lina_model_config_default();
    c.dim = 16;
    c.n_heads = 2;
    lina_adamw_config oc = lina_adamw_default();
    lina_train_config tc = {.batch = 2, .seq = 16, .accum = 2, .steps = 10, .warmup = 1, .lr = 1e-3f,
                            .min_lr = 1e-4f, .clip = 1.0f, .seed = 3};
    lina_status st = lina_text_data_load(path, 0.1f, &data);
    if (st == LINA_OK) st = lina_model_create(&c, 5, &m);
    if (st == LINA_OK) st = lina_adamw_create(m, &oc, &opt);
    const char *targets[2] = {"lm_head.weight", "model.layers.1.attn.q_proj.weight"};
    for (int i = 0; i < 2 && st == LINA_OK; i++) {
        size_t n, np = lina_model_n_params(m);
        float *w = lina_model_find(m, targets[i], &n), saved = w[3];
        w[3] = NAN;
        float *before = alloc_floats(np);
        memcpy(before, lina_model_params(m), np * sizeof(float));
        lina_train_result r;
        st = lina_train_step(m, opt, data, &tc, 0, &r);
        char name[200];
        snprintf(name, sizeof name, "NaN in %s: step skipped, weights untouched", targets[i]);
        int untouched = !memcmp(before, lina_model_params(m), np * sizeof(float));
        test_report(st == LINA_OK && r.skipped && untouched, name, "%s",
                    st != LINA_OK ? lina_last_error() : untouched ? "" : "weights changed");
        w[3] = saved;
        if (st == LINA_OK) st = lina_train_step(m, opt, data, &tc, 0, &r);
        snprintf(name, sizeof name, "after restoring %s the step runs", targets[i]);
        test_report(st == LINA_OK && !r.skipped && isfinite(r.loss), name, "loss %g", r.loss);
        free(before);
    }
    if (st != LINA_OK) test_report(0, "NaN skip", "%s", lina_last_error());
    lina_adamw_free(opt);
    lina_model_free(m);
    lina_text_data_free(data);
    unlink(path);
}

/* ---- the CLI: train, resume, generate, bad input (skipped if build/lina is absent) ---- */

static int run(const char *cmd) {
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int files_equal(const char *a, const char *b) {
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    return run(cmd) == 0;
}

static void test_cli(void) {
    char lina[1100], tmp[256], cmd[4096], a[400], b[400];
    if (!fixture_lina_exe(lina, sizeof lina)) return;
    snprintf(tmp, sizeof tmp, "/tmp/lina_test_cli_%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cd %s && : > empty.txt && "
             "for i in $(seq 200); do echo \"line $i: the quick brown fox jumps over the lazy dog\"; done > data.txt",
             tmp, tmp);
    run(cmd);
    const char *common = "--data data.txt --steps 12 --batch 2 --seq 24 --eval-every 4 --eval-batches 2 "
                         "--dim 16 --heads 2 --mixer gated_deltanet,softmax";
    snprintf(cmd, sizeof cmd, "cd %s && %s train %s --out full --threads 1 2>/dev/null", tmp, lina, common);
    int rc1 = run(cmd);
    snprintf(cmd, sizeof cmd, "cd %s && %s train %s --out part --threads 2 --stop-at 5 2>/dev/null && "
             "%s train --data data.txt --out part --resume --threads 2 2>/dev/null", tmp, lina, common, lina);
    int rc2 = run(cmd);
    snprintf(a, sizeof a, "%s/full/model.safetensors", tmp);
    snprintf(b, sizeof b, "%s/part/model.safetensors", tmp);
    int same_model = files_equal(a, b);
    snprintf(a, sizeof a, "%s/full/optimizer.safetensors", tmp);
    snprintf(b, sizeof b, "%s/part/optimizer.safetensors", tmp);
    test_report(rc1 == 0 && rc2 == 0 && same_model && files_equal(a, b),
                "train --stop-at + --resume (2 threads) == uninterrupted run (1 thread), bit-exact",
                "rc %d %d, model %s", rc1, rc2, same_model ? "same" : "differs");
    snprintf(cmd, sizeof cmd, "cd %s && test -s full/log.csv && test -s full/config.json && "
             "test $(wc -l < full/log.csv) -eq 13", tmp);
    test_report(run(cmd) == 0, "train writes log.csv (header + 12 rows) and config.json", "%s", "");
    /* generate: greedy in two halves through a saved state == in one go */
    snprintf(cmd, sizeof cmd, "cd %s && %s generate full --prompt line --max-new 30 --temperature 0 > g1.txt && "
             "%s generate full --prompt line --max-new 12 --temperature 0 --save-state s.st > g2.txt && "
             "%s generate full --load-state s.st --prompt '' --max-new 18 --temperature 0 --no-echo > g3.txt && "
             "head -c -1 g2.txt > g23.txt && cat g3.txt >> g23.txt && cmp -s g1.txt g23.txt", tmp, lina, lina, lina);
    test_report(run(cmd) == 0, "generate: save-state + load-state continues exactly", "%s", "");
    struct {
        const char *args, *what;
    } bad[] = {
        {"train --data empty.txt --out x", "empty data file"},
        {"train --data missing.txt --out x", "missing data file"},
        {"train --data data.txt --out x --mixer bogus", "unknown mixer"},
        {"train --data data.txt --out x --steps -3", "negative --steps"},
        {"generate nothing_here", "missing checkpoint"},
        {"generate full --max-new 5 --prompt \"$(head -c 3000 data.txt)\"", "prompt longer than the softmax layer allows"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "cd %s && %s %s > /dev/null 2> err.txt", tmp, lina, bad[i].args);
        int rc = run(cmd);
        snprintf(cmd, sizeof cmd, "cd %s && test -s err.txt", tmp);
        char name[200];
        snprintf(name, sizeof name, "CLI rejects %s (exit != 0, message)", bad[i].what);
        test_report(rc != 0 && run(cmd) == 0, name, "rc %d", rc);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    run(cmd);
}

int main(void) {
    const char *d = getenv("LINA_TEST_DATA");
    snprintf(data_dir, sizeof data_dir, "%s", d ? d : "tests/data");
    int nf = (int)(sizeof fixtures / sizeof *fixtures);
    const char *which = getenv("LINA_WRITE_FIXTURES");
    if (which) {
        for (int i = 0; i < nf; i++)
            if (!strcmp(which, "1") || !strcmp(which, fixtures[i].name)) write_fixture(&fixtures[i]);
        return 0;
    }
    for (int i = 0; i < nf; i++) {
        loaded L;
        if (load_fixture(&fixtures[i], &L)) {
            test_oracle(&fixtures[i], &L);
            test_generation(&fixtures[i], &L);
            test_threads(&fixtures[i], &L);
            if (i == 2) test_checkpoint_roundtrip(&L);
        }
        lina_st_close(L.expected);
        lina_model_free(L.m);
    }
    test_bad_input();
    test_nan_skip();
    test_cli();
    return test_finish();
}
