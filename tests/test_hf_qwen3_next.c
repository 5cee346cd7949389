/* Hugging Face Qwen3NextForCausalLM (tests/data/hf_qwen3_next/, make.py there:
 * a tiny random model saved by transformers, with logits and a greedy
 * continuation from transformers' own CPU path). Checks:
 *   - logits of input_ids [2, T], relative RMS <= 1e-3
 *   - the same fed as 3 single-token steps then one chunk (DeltaNet states and
 *     the softmax layers' key/value history carried), and after a state reset
 *   - greedy continuation (model.generate with its cache) exact
 *   - malformed configs and tensors fail naming the field or tensor */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lina/hf.h"
#include "lina/io.h"
#include "util/check.h"
#include "util/fixture.h"

static const char *fixture_dir(void) {
    static char dir[1200];
    snprintf(dir, sizeof dir, "%s/hf_qwen3_next", fixture_data_dir());
    return dir;
}

static void check_golden(void) {
    char path[1300];
    snprintf(path, sizeof path, "%s/golden.safetensors", fixture_dir());
    lina_hf_model *m = NULL;
    fixture_ref r;
    lina_status st = lina_hf_load(fixture_dir(), &m);
    int ok = !st && fixture_ref_open(path, lina_hf_vocab_size(m), 1, &r);
    test_report(ok, "qwen3_next_load", "%s", ok ? "" : st ? lina_last_error() : r.why);
    if (!ok) {
        lina_hf_free(m);
        return;
    }
    const lina_tensor_view *prompt = r.prompt, *greedy = r.greedy;
    const int B = r.B, T = r.T, V = r.vocab;
    const size_t n = (size_t)B * T * V;
    float *got = alloc_floats(n), *want = r.logits, *lg = alloc_floats(n);
    int64_t *id = r.ids, *part = malloc((size_t)B * T * sizeof *part);
    st = lina_hf_forward(NULL, m, NULL, B, T, id, got);
    if (st) test_report(0, "qwen3_next_logits_rel_rms_1e-3", "%s", lina_last_error());
    else check_close("qwen3_next_logits_rel_rms_1e-3", got, want, n, 1e-3);

    /* 3 single-token steps, then the rest as one chunk; twice, with a reset between */
    lina_hf_state *s = NULL;
    st = lina_hf_state_create(m, B, &s);
    for (int pass = 0; pass < 2 && !st; pass++) {
        int cuts[5] = {0, 1, 2, 3, T};
        memset(got, 0, n * sizeof *got);
        for (int c = 0; c < 4 && !st; c++) {
            int len = cuts[c + 1] - cuts[c];
            for (int b = 0; b < B; b++)
                memcpy(part + (size_t)b * len, id + (size_t)b * T + cuts[c], (size_t)len * sizeof *part);
            st = lina_hf_forward(NULL, m, s, B, len, part, lg);
            for (int b = 0; b < B && !st; b++)
                memcpy(got + ((size_t)b * T + cuts[c]) * V, lg + (size_t)b * len * V, (size_t)len * V * sizeof *lg);
        }
        const char *tname = pass ? "qwen3_next_after_reset" : "qwen3_next_steps_then_chunk";
        if (st) test_report(0, tname, "%s", lina_last_error());
        else check_close(tname, got, want, n, 1e-3);
        lina_hf_state_reset(s);
    }
    lina_hf_state_free(s);

    int np = (int)prompt->shape[1], n_new = (int)greedy->shape[1] - np;
    int64_t *p = fixture_ids(prompt), *g = fixture_ids(greedy), *out = calloc((size_t)n_new + 1, sizeof *out);
    st = lina_hf_generate_greedy(NULL, m, p, np, n_new, out);
    int same = !st && !memcmp(out, g + np, (size_t)n_new * sizeof *out);
    test_report(same, "qwen3_next_greedy_24_tokens_exact", "%s", st ? lina_last_error() : same ? "" : "differs");
    free(p);
    free(g);
    free(out);
    free(part);
    free(got);
    free(lg);
    fixture_ref_close(&r);
    lina_hf_free(m);
}

/* a copy of the fixture with `from` replaced by `to` in config.json */
static char tmpdir[256];

static int edited_copy(const char *from, const char *to) {
    char path[1400], cmd[3000];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lina_test_q3n_%d", (int)getpid());
    mkdir(tmpdir, 0700);
    snprintf(cmd, sizeof cmd, "cp '%s/model.safetensors' '%s/'", fixture_dir(), tmpdir);
    if (system(cmd) != 0) return 0;
    snprintf(path, sizeof path, "%s/config.json", fixture_dir());
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    char buf[16384];
    size_t len = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[len] = 0;
    char *at = strstr(buf, from);
    if (!at) return 0;
    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    if (!(fp = fopen(path, "wb"))) return 0;
    fwrite(buf, 1, (size_t)(at - buf), fp);
    fputs(to, fp);
    fputs(at + strlen(from), fp);
    fclose(fp);
    return 1;
}

static void expect_error(const char *tname, const char *from, const char *to, const char *needle) {
    lina_hf_model *m = NULL;
    int copied = edited_copy(from, to);
    lina_status st = copied ? lina_hf_load(tmpdir, &m) : LINA_ERR_IO;
    const char *why = st ? lina_last_error() : "";
    test_report(copied && st && strstr(why, needle), tname, "status %d, '%s' (want '%s')", (int)st, why, needle);
    lina_hf_free(m);
    char path[400];
    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    remove(path);
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    remove(path);
    remove(tmpdir);
}

static void check_bad_ids(void) {
    lina_hf_model *m = NULL;
    lina_status st = lina_hf_load(fixture_dir(), &m);
    int64_t ids[3] = {1, 256, 2};
    float logits[3 * 256];
    if (!st) st = lina_hf_forward(NULL, m, NULL, 1, 3, ids, logits);
    const char *why = st ? lina_last_error() : "";
    test_report(st && strstr(why, "256"), "qwen3_next_id_out_of_range", "'%s'", why);
    lina_hf_free(m);
}

/* The same model with the experts saved fused (transformers' in-memory layout:
 * mlp.experts.gate_up_proj (E, 2I, D) = [gate; up] per expert, mlp.experts.down_proj
 * (E, D, I)) gives bit-identical logits. */
static void check_fused_experts(void) {
    char src[1400], dir[300], path[400], cmd[2000];
    snprintf(dir, sizeof dir, "/tmp/lina_test_q3n_fused_%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(cmd, sizeof cmd, "cp '%s/config.json' '%s/'", fixture_dir(), dir);
    int ok = system(cmd) == 0;
    snprintf(src, sizeof src, "%s/model.safetensors", fixture_dir());
    lina_st_file *f = NULL;
    lina_st_writer *w = NULL;
    lina_status st = lina_st_open(src, &f);
    if (!st) st = lina_st_writer_create(&w);
    float *fused[2][64] = {{0}};
    int n_fused = 0;
    for (int i = 0; !st && i < lina_st_count(f); i++) {
        const lina_tensor_view *t = lina_st_tensor(f, i);
        int l, e;
        char which[16];
        if (sscanf(t->name, "model.layers.%d.mlp.experts.%d.%15[a-z]_proj.weight", &l, &e, which) == 3) continue;
        st = lina_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    for (int l = 0; !st && l < 64; l++) {
        char name[160];
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.0.gate_proj.weight", l);
        const lina_tensor_view *g0 = lina_st_find(f, name);
        if (!g0) continue;
        int64_t I = g0->shape[0], D = g0->shape[1];
        int E = 0;
        for (;; E++) {
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, E);
            if (!lina_st_find(f, name)) break;
        }
        float *gu = alloc_floats((size_t)E * 2 * I * D), *dn = alloc_floats((size_t)E * D * I);
        fused[0][n_fused] = gu;
        fused[1][n_fused++] = dn;
        for (int e = 0; e < E && !st; e++) {
            static const char *parts[3] = {"gate", "up", "down"};
            for (int p = 0; p < 3 && !st; p++) {
                snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s_proj.weight", l, e, parts[p]);
                const lina_tensor_view *t = lina_st_find(f, name);
                float *dst = p == 2 ? dn + (size_t)e * D * I : gu + ((size_t)e * 2 + p) * I * D;
                st = t ? lina_tensor_to_f32(t, dst, I * D) : LINA_ERR_FORMAT;
            }
        }
        int64_t s1[3] = {E, 2 * I, D}, s2[3] = {E, D, I};
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.gate_up_proj", l);
        if (!st) st = lina_st_writer_add(w, name, LINA_DTYPE_F32, 3, s1, gu);
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.down_proj", l);
        if (!st) st = lina_st_writer_add(w, name, LINA_DTYPE_F32, 3, s2, dn);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!st) st = lina_st_writer_save(w, path);
    lina_st_writer_free(w);
    lina_st_close(f);
    for (int i = 0; i < n_fused; i++) {
        free(fused[0][i]);
        free(fused[1][i]);
    }
    lina_hf_model *a = NULL, *b = NULL;
    if (!st) st = lina_hf_load(fixture_dir(), &a);
    if (!st) st = lina_hf_load(dir, &b);
    int64_t ids[2 * 9];
    for (int i = 0; i < 18; i++) ids[i] = (i * 37 + 5) % 256;
    float *la = alloc_floats(18 * 256), *lb = alloc_floats(18 * 256);
    if (!st) st = lina_hf_forward(NULL, a, NULL, 2, 9, ids, la);
    if (!st) st = lina_hf_forward(NULL, b, NULL, 2, 9, ids, lb);
    int same = ok && !st && n_fused > 0 && !memcmp(la, lb, 18 * 256 * sizeof *la);
    test_report(same, "qwen3_next_fused_experts_identical", "%s", st ? lina_last_error() : same ? "" : "differ");
    free(la);
    free(lb);
    lina_hf_free(a);
    lina_hf_free(b);
    remove(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
    remove(dir);
}

/* layer_types derived from full_attention_interval give the same model */
static void check_interval(void) {
    lina_hf_model *a = NULL, *b = NULL;
    int copied = edited_copy("\"layer_types\": [\n    \"linear_attention\",\n    \"full_attention\",\n    "
                             "\"linear_attention\",\n    \"full_attention\"\n  ]",
                             "\"full_attention_interval\": 2");
    lina_status st = copied ? lina_hf_load(tmpdir, &b) : LINA_ERR_IO;
    if (!st) st = lina_hf_load(fixture_dir(), &a);
    int64_t ids[7] = {3, 1, 4, 1, 5, 9, 2};
    float la[7 * 256], lb[7 * 256];
    if (!st) st = lina_hf_forward(NULL, a, NULL, 1, 7, ids, la);
    if (!st) st = lina_hf_forward(NULL, b, NULL, 1, 7, ids, lb);
    int same = copied && !st && !memcmp(la, lb, sizeof la);
    test_report(same, "qwen3_next_full_attention_interval", "%s",
                !copied ? "could not edit the config" : st ? lina_last_error() : same ? "" : "differ");
    lina_hf_free(a);
    lina_hf_free(b);
    char path[400];
    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    remove(path);
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    remove(path);
    remove(tmpdir);
}

/* the older config layout (top-level rope_theta / partial_rotary_factor, rope_scaling null, as the
 * published Qwen3-Next configs have it) gives the same model with the same values, and another
 * model with another rotary fraction (so the fields are read) */
static void check_old_rope_fields(const char *tname, const char *partial, int expect_same) {
    char to[200];
    snprintf(to, sizeof to, "\"partial_rotary_factor\": %s, \"rope_theta\": 10000.0, \"rope_scaling\": null", partial);
    lina_hf_model *a = NULL, *b = NULL;
    int copied = edited_copy("\"rope_parameters\": {\n    \"partial_rotary_factor\": 0.25,\n    \"rope_theta\": "
                             "10000.0,\n    \"rope_type\": \"default\"\n  }",
                             to);
    lina_status st = copied ? lina_hf_load(tmpdir, &b) : LINA_ERR_IO;
    if (!st) st = lina_hf_load(fixture_dir(), &a);
    int64_t ids[7] = {2, 7, 1, 8, 2, 8, 1};
    float la[7 * 256], lb[7 * 256];
    if (!st) st = lina_hf_forward(NULL, a, NULL, 1, 7, ids, la);
    if (!st) st = lina_hf_forward(NULL, b, NULL, 1, 7, ids, lb);
    int same = !memcmp(la, lb, sizeof la);
    test_report(copied && !st && same == expect_same, tname, "%s",
                !copied ? "could not edit the config" : st ? lina_last_error() : same ? "same logits" : "logits differ");
    lina_hf_free(a);
    lina_hf_free(b);
    char path[400];
    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    remove(path);
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    remove(path);
    remove(tmpdir);
}

int main(void) {
    check_interval();
    check_old_rope_fields("qwen3_next_top_level_rope_fields", "0.25", 1);
    check_old_rope_fields("qwen3_next_top_level_rope_fields_are_read", "0.5", 0);
    expect_error("qwen3_next_rope_scaling", "\"rope_type\": \"default\"", "\"rope_type\": \"yarn\"", "rope_type 'yarn'");
    check_fused_experts();
    check_golden();
    check_bad_ids();
    expect_error("qwen3_next_bad_layer_type", "\"full_attention\"\n", "\"sliding_attention\"\n", "layer_types[3]");
    expect_error("qwen3_next_bad_kv_heads", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3",
                 "num_key_value_heads");
    expect_error("qwen3_next_wrong_expert_shape", "\"moe_intermediate_size\": 32", "\"moe_intermediate_size\": 30",
                 "experts.0.gate_proj");
    expect_error("qwen3_next_dense_layer_missing", "\"mlp_only_layers\": [\n    1\n  ]", "\"mlp_only_layers\": [0]",
                 "model.layers.0.mlp.gate_proj.weight");
    return test_finish();
}
