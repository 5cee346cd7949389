/* Whole public checkpoints against their reference implementations:
 * ../shared/golden/{fla_gla, fla_delta_net, hf_mamba2}/ hold a tiny random
 * checkpoint and golden.safetensors with the reference's logits for
 * input_ids [2, 300] and its greedy continuation of greedy_prompt [1, 64]
 * (greedy_output [1, 88] = prompt + 24 tokens).
 * Checks: logits relative RMS <= 1e-3, greedy continuation exact, prompt fed in
 * pieces (state carried) == whole prompt, and bad inputs give clear errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lina.h"
#include "util/check.h"
#include "util/fixture.h"

/* dir holds config.json, model.safetensors and golden.safetensors; name prefixes the
 * test names; fla_generate_quirk: the stored greedy continuation came from fla's
 * generate() under transformers 5.17 (see 3. below) */
static void check_model(const char *dir, const char *name, int fla_generate_quirk) {
    char path[1200], tname[128];
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    lina_hf_model *m = NULL;
    snprintf(tname, sizeof tname, "%s_load", name);
    lina_status st = lina_hf_load(dir, &m);
    test_report(st == LINA_OK, tname, "%s", st ? lina_last_error() : "");
    if (st) return;
    fixture_ref r;
    snprintf(tname, sizeof tname, "%s_golden_file", name);
    int ok = fixture_ref_open(path, lina_hf_vocab_size(m), 1, &r);
    test_report(ok, tname, "%s", ok ? "" : r.why);
    if (!ok) {
        lina_hf_free(m);
        return;
    }
    const lina_tensor_view *prompt = r.prompt, *want = r.greedy;
    const int B = r.B, T = r.T, V = r.vocab;
    const size_t n = (size_t)B * T * V;
    const int64_t *id = r.ids;
    const float *expect = r.logits;
    float *logits = alloc_floats(n);

    /* 1. logits of the whole batch (chunkwise form) */
    st = lina_hf_forward(NULL, m, NULL, B, T, id, logits);
    snprintf(tname, sizeof tname, "%s_logits_rel_rms_1e-3", name);
    if (st) test_report(0, tname, "%s", lina_last_error());
    else {
        double e = rel_rms(logits, expect, n);
        test_report(e <= 1e-3, tname, "rel rms %.3g over [%d, %d, %d]", e, B, T, V);
    }

    /* 2. the same tokens fed in pieces of 1, 17 and the rest, state carried (step + chunk forms) */
    lina_hf_state *s = NULL;
    float *piece = alloc_floats(n);
    int64_t *row = malloc((size_t)T * sizeof *row);
    st = lina_hf_state_create(m, 1, &s);
    int cuts[4] = {0, 1, 18, T};
    for (int c = 0; c < 3 && !st; c++) {
        int len = cuts[c + 1] - cuts[c];
        memcpy(row, id + cuts[c], (size_t)len * sizeof *row); /* batch row 0 */
        st = lina_hf_forward(NULL, m, s, 1, len, row, piece + (size_t)cuts[c] * V);
    }
    snprintf(tname, sizeof tname, "%s_pieces_match_whole", name);
    if (st) test_report(0, tname, "%s", lina_last_error());
    else check_close(tname, piece, logits, (size_t)T * V, 1e-5);
    lina_hf_state_free(s);

    /* 3. greedy continuation, exact. fla's references were generated with fla's
     * generate() under transformers 5.17, whose prepare_inputs_for_generation
     * finds a fresh, non-empty cache object and keeps only input_ids[:, -1:]:
     * the reference conditioned on the LAST prompt token alone (verified: the
     * stored continuations are exactly lina's greedy continuations of that one
     * token). So for fla: (a) the reference's continuation from the last token,
     * exact, 24 tokens through the recurrent step; (b) the first token of the
     * full-prompt continuation equals the argmax of the reference logits at the
     * last prompt position (greedy_prompt is input_ids[0, :64]). */
    int np = (int)prompt->shape[1], nw = (int)want->shape[1], n_new = nw - np;
    int reference_used_last_token = fla_generate_quirk;
    int64_t *p = fixture_ids(prompt), *w = fixture_ids(want), *got = calloc((size_t)(n_new > 0 ? n_new : 1), sizeof *got);
    const int64_t *cond = reference_used_last_token ? p + np - 1 : p;
    st = lina_hf_generate_greedy(NULL, m, cond, reference_used_last_token ? 1 : np, n_new, got);
    int first_diff = -1;
    for (int i = 0; i < n_new && first_diff < 0 && !st; i++)
        if (got[i] != w[np + i]) first_diff = i;
    snprintf(tname, sizeof tname, "%s_greedy_%d_tokens_exact%s", name, n_new,
             reference_used_last_token ? "_from_last_prompt_token" : "");
    test_report(!st && first_diff < 0 && n_new > 0 && !memcmp(p, w, (size_t)np * sizeof *p), tname,
                "%s first difference at new token %d (-1: none): got %lld want %lld", st ? lina_last_error() : "", first_diff,
                first_diff >= 0 ? (long long)got[first_diff] : 0LL,
                first_diff >= 0 ? (long long)w[np + first_diff] : 0LL);
    if (reference_used_last_token && np <= T && !memcmp(p, id, (size_t)np * sizeof *p)) {
        int64_t first = -1;
        st = lina_hf_generate_greedy(NULL, m, p, np, 1, &first);
        const float *ref_row = expect + (size_t)(np - 1) * V;
        int best = 0;
        for (int i = 1; i < V; i++)
            if (ref_row[i] > ref_row[best]) best = i;
        snprintf(tname, sizeof tname, "%s_greedy_full_prompt_first_token", name);
        test_report(!st && first == best, tname, "got %lld, argmax of reference logits %d", (long long)first, best);
    }

    /* 4. a token id out of range is an error naming the value */
    int64_t bad[3] = {1, V, 2};
    st = lina_hf_forward(NULL, m, NULL, 1, 3, bad, logits);
    char needle[32];
    snprintf(needle, sizeof needle, "%d", V);
    snprintf(tname, sizeof tname, "%s_bad_token_id", name);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), needle), tname, "%s", lina_last_error());

    free(p);
    free(w);
    free(got);
    free(row);
    free(piece);
    free(logits);
    fixture_ref_close(&r);
    lina_hf_free(m);
}

/* ---- bad model directories ---- */

static char tmpdir[256];

static void write_text(const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    lina_write_file_atomic(p, text, strlen(text));
}

static void expect_load_error(const char *tname, lina_status want, const char *needle) {
    lina_hf_model *m = NULL;
    lina_status st = lina_hf_load(tmpdir, &m);
    test_report(st == want && !m && strstr(lina_last_error(), needle), tname, "status %d, message: %s", (int)st,
                lina_last_error());
    lina_hf_free(m);
}

/* A one-layer delta_net checkpoint with every tensor (then broken one way at a
 * time), stored as F32, or as BF16 / F16 in two shards with an index file.
 * Weights are N(0, 0.1) rounded to the storage dtype, so every variant holds
 * exactly the same numbers. */
static void write_tiny_delta_net(const char *skip, const char *wrong_shape, lina_dtype dtype, int sharded) {
    static const char *names[] = {"model.embeddings.weight", "model.norm.weight", "lm_head.weight",
                                  "model.layers.0.attn_norm.weight", "model.layers.0.attn.q_proj.weight",
                                  "model.layers.0.attn.k_proj.weight", "model.layers.0.attn.v_proj.weight",
                                  "model.layers.0.attn.b_proj.weight", "model.layers.0.attn.q_conv1d.weight",
                                  "model.layers.0.attn.k_conv1d.weight", "model.layers.0.attn.v_conv1d.weight",
                                  "model.layers.0.attn.o_norm.weight", "model.layers.0.attn.o_proj.weight",
                                  "model.layers.0.mlp_norm.weight", "model.layers.0.mlp.gate_proj.weight",
                                  "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight"};
    /* D = 8, H = 2, Kh = Vh = 4, vocab 16, conv 4, MLP width 256 */
    static const int64_t shapes[][3] = {{16, 8}, {8}, {16, 8}, {8}, {8, 8}, {8, 8}, {8, 8}, {2, 8}, {8, 1, 4},
                                        {8, 1, 4}, {8, 1, 4}, {4}, {8, 8}, {8}, {256, 8}, {256, 8}, {8, 256}};
    static const int ndims[] = {2, 1, 2, 1, 2, 2, 2, 2, 3, 3, 3, 1, 2, 1, 2, 2, 2};
    enum { NW = 4096 };
    float *vals = alloc_floats(NW);
    uint16_t *half = calloc(NW, sizeof *half);
    test_rng r;
    rng_seed(&r, 3);
    fill_normal(&r, vals, NW, 0.1f);
    for (int i = 0; i < NW; i++) { /* the same numbers in every dtype: bf16-representable */
        vals[i] = lina_bf16_to_f32(lina_f32_to_bf16(vals[i]));
        half[i] = dtype == LINA_DTYPE_F16 ? lina_f32_to_f16(vals[i]) : lina_f32_to_bf16(vals[i]);
    }
    const void *data = dtype == LINA_DTYPE_F32 ? (const void *)vals : (const void *)half;
    int n_files = sharded ? 2 : 1;
    lina_st_writer *w[2] = {NULL, NULL};
    char index[4096] = "{\"metadata\": {}, \"weight_map\": {", p[512];
    for (int f = 0; f < n_files; f++) lina_st_writer_create(&w[f]);
    int n_names = (int)(sizeof names / sizeof *names);
    for (int i = 0; i < n_names; i++) {
        if (skip && !strcmp(names[i], skip)) continue;
        int64_t sh[3] = {shapes[i][0], shapes[i][1], shapes[i][2]};
        if (wrong_shape && !strcmp(names[i], wrong_shape)) sh[0] += 1;
        int f = sharded ? i % 2 : 0;
        lina_st_writer_add(w[f], names[i], dtype, ndims[i], sh, data);
        snprintf(index + strlen(index), sizeof index - strlen(index), "%s\"%s\": \"model-%05d-of-00002.safetensors\"",
                 strlen(index) > 40 ? ", " : "", names[i], f + 1);
    }
    snprintf(index + strlen(index), sizeof index - strlen(index), "}}");
    const char *gone[] = {"model.safetensors", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                          "model-00002-of-00002.safetensors"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, gone[i]);
        remove(p);
    }
    for (int f = 0; f < n_files; f++) {
        if (sharded) snprintf(p, sizeof p, "%s/model-%05d-of-00002.safetensors", tmpdir, f + 1);
        else snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
        lina_st_writer_save(w[f], p);
        lina_st_writer_free(w[f]);
    }
    if (sharded) write_text("model.safetensors.index.json", index);
    free(vals);
    free(half);
}

/* logits of the tiny model for 5 tokens, or NULL on error */
static int tiny_logits(float *out) {
    lina_hf_model *m = NULL;
    int64_t ids[5] = {1, 2, 3, 15, 0};
    int ok = lina_hf_load(tmpdir, &m) == LINA_OK && lina_hf_forward(NULL, m, NULL, 1, 5, ids, out) == LINA_OK;
    lina_hf_free(m);
    return ok;
}

static const char *tiny_config =
    "{\"model_type\": \"delta_net\", \"vocab_size\": 16, \"hidden_size\": 8, \"num_hidden_layers\": 1,"
    " \"num_heads\": 2, \"hidden_ratio\": 4, \"norm_eps\": 1e-6}";

static void test_bad_dirs(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/lina_golden_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        test_report(0, "mkdtemp", "%s", tmpdir);
        return;
    }
    expect_load_error("bad_dir_no_config", LINA_ERR_IO, "config.json");
    write_text("config.json", tiny_config);
    expect_load_error("bad_dir_no_weights", LINA_ERR_IO, "model.safetensors");

    write_tiny_delta_net(NULL, NULL, LINA_DTYPE_F32, 0);
    lina_hf_model *m = NULL;
    lina_status st = lina_hf_load(tmpdir, &m);
    test_report(st == LINA_OK, "tiny_delta_net_loads", "%s", st ? lina_last_error() : "");
    if (m) { /* tiny model runs and gives finite logits; prompt in pieces == whole */
        int64_t ids[5] = {1, 2, 3, 15, 0};
        float a[5 * 16], b[5 * 16];
        lina_hf_state *s = NULL;
        int ok = lina_hf_forward(NULL, m, NULL, 1, 5, ids, a) == LINA_OK && lina_hf_state_create(m, 1, &s) == LINA_OK;
        for (int t = 0; ok && t < 5; t++) ok = lina_hf_forward(NULL, m, s, 1, 1, ids + t, b + t * 16) == LINA_OK;
        ok = ok && check_finite("tiny_delta_net_finite", a, 5 * 16);
        if (ok) check_close("tiny_delta_net_steps_match_prompt", b, a, 5 * 16, 1e-5);
        else test_report(0, "tiny_delta_net_steps_match_prompt", "%s", lina_last_error());
        lina_hf_state_free(s);
        lina_hf_free(m);
    }

    /* the same weights as BF16 and F16 in two shards + index: identical logits */
    float ref[5 * 16], got[5 * 16];
    int ok = tiny_logits(ref);
    write_tiny_delta_net(NULL, NULL, LINA_DTYPE_BF16, 1);
    ok = ok && tiny_logits(got);
    test_report(ok && rel_rms(got, ref, 5 * 16) < 1e-6, "tiny_bf16_sharded_equals_f32", "%s rel rms %.3g",
                ok ? "" : lina_last_error(), ok ? rel_rms(got, ref, 5 * 16) : -1.0);
    write_tiny_delta_net(NULL, NULL, LINA_DTYPE_F16, 1);
    ok = ok && tiny_logits(got);
    test_report(ok && rel_rms(got, ref, 5 * 16) < 1e-6, "tiny_f16_sharded_equals_f32", "%s rel rms %.3g",
                ok ? "" : lina_last_error(), ok ? rel_rms(got, ref, 5 * 16) : -1.0);
    write_text("model.safetensors.index.json", "{\"weight_map\": {\"lm_head.weight\": \"../escape.safetensors\"}}");
    expect_load_error("bad_index_shard_path", LINA_ERR_FORMAT, "../escape");
    write_text("model.safetensors.index.json", "{\"weight_map\": {\"lm_head.weight\": \"missing.safetensors\"}}");
    expect_load_error("bad_index_missing_shard", LINA_ERR_IO, "missing.safetensors");

    write_tiny_delta_net("model.layers.0.attn.b_proj.weight", NULL, LINA_DTYPE_F32, 1);
    expect_load_error("bad_missing_tensor", LINA_ERR_FORMAT, "model.layers.0.attn.b_proj.weight");
    write_tiny_delta_net(NULL, "model.layers.0.attn.o_proj.weight", LINA_DTYPE_F32, 0);
    expect_load_error("bad_tensor_shape", LINA_ERR_FORMAT, "[9, 8]");
    write_tiny_delta_net(NULL, NULL, LINA_DTYPE_F32, 0);

    write_text("config.json", "{\"model_type\": \"rwkv9\", \"vocab_size\": 16}");
    expect_load_error("bad_unknown_model_type", LINA_ERR_UNSUPPORTED, "rwkv9");
    write_text("config.json", "{\"model_type\": \"delta_net\", \"vocab_size\": 16, \"num_hidden_layers\": 1}");
    expect_load_error("bad_missing_hidden_size", LINA_ERR_FORMAT, "hidden_size");
    write_text("config.json", "{\"model_type\": \"delta_net\", \"vocab_size\": 16, \"hidden_size\": 8.5,"
                              " \"num_hidden_layers\": 1, \"num_heads\": 2}");
    expect_load_error("bad_fractional_hidden_size", LINA_ERR_FORMAT, "8.5");
    write_text("config.json", "{\"model_type\": \"delta_net\", \"vocab_size\": 16, \"hidden_size\": 8,"
                              " \"num_hidden_layers\": 1, \"num_heads\": 3}");
    expect_load_error("bad_heads_do_not_divide", LINA_ERR_FORMAT, "num_heads 3");
    write_text("config.json", "{\"model_type\": \"delta_net\", \"vocab_size\": 16, \"hidden_size\": 8,"
                              " \"num_hidden_layers\": 1, \"num_heads\": 2, \"qk_norm\": \"max\"}");
    expect_load_error("bad_qk_norm", LINA_ERR_UNSUPPORTED, "max");
    write_text("config.json", "not json");
    expect_load_error("bad_config_json", LINA_ERR_FORMAT, "config.json");

    char p[512];
    const char *files[] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                           "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, files[i]);
        remove(p);
    }
    remove(tmpdir);
}

/* ---- config variants: tests/data/hf_variants/ (make.py there: tiny checkpoints of
 * the branches the golden models do not take, with logits from a float64
 * PyTorch re-statement of each model's math) ---- */

static void check_variant(const char *name) {
    char dir[1200], path[1300], tname[128];
    snprintf(dir, sizeof dir, "%s/hf_variants/%s", fixture_data_dir(), name);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    lina_hf_model *m = NULL;
    fixture_ref r;
    lina_status st = lina_hf_load(dir, &m);
    snprintf(tname, sizeof tname, "variant_%s_load", name);
    int ok = !st && fixture_ref_open(path, lina_hf_vocab_size(m), 0, &r);
    test_report(ok, tname, "%s", ok ? "" : st ? lina_last_error() : r.why);
    if (ok) {
        const int B = r.B, T = r.T, V = r.vocab;
        const size_t n = (size_t)B * T * V;
        float *got = alloc_floats(n), *want = r.logits, *steps = alloc_floats(n);
        const int64_t *id = r.ids;
        st = lina_hf_forward(NULL, m, NULL, B, T, id, got);
        snprintf(tname, sizeof tname, "variant_%s_logits_rel_rms_1e-4", name);
        if (st) test_report(0, tname, "%s", lina_last_error());
        else check_close(tname, got, want, n, 1e-4);
        /* both rows at once, 3 single-token steps then the rest: state carried through step and chunk forms */
        lina_hf_state *s = NULL;
        int64_t *part = malloc((size_t)B * T * sizeof *part);
        float *lg = alloc_floats(n);
        st = lina_hf_state_create(m, B, &s);
        int cuts[5] = {0, 1, 2, 3, T};
        for (int c = 0; c < 4 && !st; c++) {
            int len = cuts[c + 1] - cuts[c];
            for (int b = 0; b < B; b++) memcpy(part + (size_t)b * len, id + (size_t)b * T + cuts[c], (size_t)len * sizeof *part);
            st = lina_hf_forward(NULL, m, s, B, len, part, lg);
            for (int b = 0; b < B && !st; b++)
                memcpy(steps + ((size_t)b * T + cuts[c]) * V, lg + (size_t)b * len * V, (size_t)len * V * sizeof *lg);
        }
        snprintf(tname, sizeof tname, "variant_%s_steps_then_chunk", name);
        if (st) test_report(0, tname, "%s", lina_last_error());
        else check_close(tname, steps, want, n, 1e-4);
        lina_hf_state_free(s);
        free(part);
        free(lg);
        free(got);
        free(steps);
        fixture_ref_close(&r);
    }
    lina_hf_free(m);
}

int main(void) {
    static const char *models[] = {"fla_gla", "fla_delta_net", "hf_mamba2"};
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/golden", fixture_shared_dir());
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        printf("SKIP golden: %s not found (set LINA_SHARED)\n", dir);
    } else {
        for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
            char d[1200];
            snprintf(d, sizeof d, "%s/%s", dir, models[i]);
            check_model(d, models[i], strncmp(models[i], "fla_", 4) == 0);
        }
    }
    static const char *variants[] = {"gla_kv_conv_tied", "delta_gate_elu_sum", "delta_relu_l2_conv", "mamba2_groups",
                                     "mamba2_fla_groups", "mamba2_fla_nonorm"};
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) check_variant(variants[i]);
    /* fla's models at default configurations, logits and greedy continuations from fla's
     * own kernels (tests/data/fla_ref/make.py) */
    static const char *fla_ref[] = {"gla",    "delta_net",   "gated_deltanet", "retnet",
                                    "hgrn2",  "linear_attn", "rwkv7",          "mamba2"};
    for (size_t i = 0; i < sizeof fla_ref / sizeof *fla_ref; i++) {
        char d[1200], name[64];
        snprintf(d, sizeof d, "%s/fla_ref/%s", fixture_data_dir(), fla_ref[i]);
        snprintf(name, sizeof name, "fla_ref_%s", fla_ref[i]);
        check_model(d, name, 0);
    }
    test_bad_dirs();
    return test_finish();
}
