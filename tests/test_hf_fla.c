/* fla-layout checkpoints of the architectures fla runs only on GPUs
 * (tests/data/hf_fla_oracle/, make.py there: tiny random checkpoints with
 * logits and greedy continuations from a self-written float64 PyTorch oracle
 * of fla's layer math). Checks per model:
 *   - logits of input_ids [2, T] (prompt forms), relative RMS <= 1e-4
 *   - the same fed as 3 single-token steps then one chunk (state carried)
 *   - greedy continuation of greedy_prompt, exact
 * and that malformed configs fail naming the field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lina/hf.h"
#include "lina/io.h"
#include "util/check.h"
#include "util/fixture.h"

static void data_dir(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/hf_fla_oracle/%s", fixture_data_dir(), name);
}

static void check_steps(const char *name, lina_hf_model *m, int B, int T, const int64_t *id, const float *want) {
    char tname[128];
    int V = lina_hf_vocab_size(m);
    size_t n = (size_t)B * T * V;
    float *steps = alloc_floats(n), *lg = alloc_floats(n);
    int64_t *part = malloc((size_t)B * T * sizeof *part);
    lina_hf_state *s = NULL;
    lina_status st = part ? lina_hf_state_create(m, B, &s) : LINA_ERR_OOM;
    int cuts[5] = {0, 1, 2, 3, T};
    for (int c = 0; c < 4 && !st; c++) {
        int len = cuts[c + 1] - cuts[c];
        for (int b = 0; b < B; b++) memcpy(part + (size_t)b * len, id + (size_t)b * T + cuts[c], (size_t)len * sizeof *part);
        st = lina_hf_forward(NULL, m, s, B, len, part, lg);
        for (int b = 0; b < B && !st; b++)
            memcpy(steps + ((size_t)b * T + cuts[c]) * V, lg + (size_t)b * len * V, (size_t)len * V * sizeof *lg);
    }
    snprintf(tname, sizeof tname, "%s_steps_then_chunk", name);
    if (st) test_report(0, tname, "%s", lina_last_error());
    else check_close(tname, steps, want, n, 1e-4);
    /* a reset state gives the first token's logits again */
    if (!st) {
        lina_hf_state_reset(s);
        for (int b = 0; b < B; b++) part[b] = id[(size_t)b * T];
        st = lina_hf_forward(NULL, m, s, B, 1, part, lg);
        for (int b = 0; b < B && !st; b++) memcpy(steps + (size_t)b * V, want + (size_t)b * T * V, (size_t)V * sizeof *lg);
        snprintf(tname, sizeof tname, "%s_reset_state", name);
        if (st) test_report(0, tname, "%s", lina_last_error());
        else check_close(tname, lg, steps, (size_t)B * V, 1e-4);
    }
    lina_hf_state_free(s);
    free(part);
    free(lg);
    free(steps);
}

static void check_model(const char *name) {
    char dir[1200], path[1300], tname[128];
    data_dir(dir, sizeof dir, name);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    lina_hf_model *m = NULL;
    fixture_ref r;
    lina_status st = lina_hf_load(dir, &m);
    snprintf(tname, sizeof tname, "%s_load", name);
    int ok = !st && fixture_ref_open(path, lina_hf_vocab_size(m), 1, &r);
    test_report(ok, tname, "%s", ok ? "" : st ? lina_last_error() : r.why);
    if (!ok) {
        lina_hf_free(m);
        return;
    }
    const lina_tensor_view *prompt = r.prompt, *greedy = r.greedy;
    const int B = r.B, T = r.T, V = r.vocab;
    const size_t n = (size_t)B * T * V;
    float *got = alloc_floats(n), *want = r.logits;
    int64_t *id = r.ids;
    st = lina_hf_forward(NULL, m, NULL, B, T, id, got);
    snprintf(tname, sizeof tname, "%s_logits_rel_rms_1e-4", name);
    if (st) test_report(0, tname, "%s", lina_last_error());
    else check_close(tname, got, want, n, 1e-4);
    check_steps(name, m, B, T, id, want);

    int np = (int)prompt->shape[1], n_new = (int)greedy->shape[1] - np;
    int64_t *p = fixture_ids(prompt), *g = fixture_ids(greedy), *out = calloc((size_t)n_new + 1, sizeof *out);
    st = lina_hf_generate_greedy(NULL, m, p, np, n_new, out);
    int same = !st && !memcmp(out, g + np, (size_t)n_new * sizeof *out);
    snprintf(tname, sizeof tname, "%s_greedy_%d_tokens_exact", name, n_new);
    test_report(same, tname, "%s", st ? lina_last_error() : same ? "" : "continuation differs");
    free(p);
    free(g);
    free(out);
    free(got);
    fixture_ref_close(&r);
    lina_hf_free(m);
}

/* a copy of a fixture directory whose config.json has `from` replaced by `to` */
static char tmpdir[256];

static int copy_with_config_edit(const char *name, const char *from, const char *to) {
    char src[1200], path[1400], cmd[3000];
    data_dir(src, sizeof src, name);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lina_test_hf_fla_%d", (int)getpid());
    mkdir(tmpdir, 0700);
    snprintf(cmd, sizeof cmd, "cp '%s/model.safetensors' '%s/model.safetensors'", src, tmpdir);
    if (system(cmd) != 0) return 0;
    snprintf(path, sizeof path, "%s/config.json", src);
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    char buf[8192];
    size_t len = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[len] = 0;
    char *at = strstr(buf, from);
    if (!at) return 0;
    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    fp = fopen(path, "wb");
    if (!fp) return 0;
    fwrite(buf, 1, (size_t)(at - buf), fp);
    fputs(to, fp);
    fputs(at + strlen(from), fp);
    fclose(fp);
    return 1;
}

static void cleanup_tmp(void) {
    char path[400];
    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    remove(path);
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    remove(path);
    remove(tmpdir);
}

static void expect_error(const char *tname, const char *fixture, const char *from, const char *to, const char *needle) {
    lina_hf_model *m = NULL;
    int copied = copy_with_config_edit(fixture, from, to);
    lina_status st = copied ? lina_hf_load(tmpdir, &m) : LINA_ERR_IO;
    const char *why = st ? lina_last_error() : "";
    int ok = copied && st != LINA_OK && strstr(why, needle);
    test_report(ok, tname, "status %d, message '%s' (want it to name '%s')", (int)st, why, needle);
    lina_hf_free(m);
    cleanup_tmp();
}

int main(void) {
    static const char *models[] = {"gdn_gva_conv", "gdn_nogate_negeig", "retnet_kv_gate", "retnet_relu_plain",
                                   "hgrn2_lb_conv", "hgrn2_plain", "la_hadamard_kv", "la_hedgehog_tied",
                                   "la_elu_sumnorm", "la_dpfp", "la_t2r"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) check_model(models[i]);
    expect_error("gdn_bad_num_v_heads", "gdn_gva_conv", "\"num_v_heads\": 4", "\"num_v_heads\": 3", "num_v_heads");
    expect_error("gdn_bad_expand_v", "gdn_gva_conv", "\"expand_v\": 1.5", "\"expand_v\": 1.25", "expand_v");
    expect_error("gdn_wrong_shape", "gdn_gva_conv", "\"num_heads\": 2", "\"num_heads\": 1", "q_proj");
    expect_error("gdn_missing_conv", "gdn_nogate_negeig", "\"use_short_conv\": false", "\"use_short_conv\": true",
                 "q_conv1d.weight");
    expect_error("unknown_model_type", "gdn_gva_conv", "\"gated_deltanet\"", "\"gated_deltanet_v9\"",
                 "gated_deltanet_v9");
    expect_error("retnet_bad_feature_map", "retnet_relu_plain", "\"relu\"", "\"hedgehog\"", "hedgehog");
    expect_error("retnet_odd_rotary_dim", "retnet_relu_plain", "\"num_heads\": 3", "\"num_heads\": 4", "rotary");
    expect_error("hgrn2_missing_lower_bounds", "hgrn2_plain", "\"use_lower_bound\": false", "\"use_lower_bound\": true",
                 "model.lower_bounds");
    expect_error("la_bad_feature_map", "la_t2r", "\"t2r\"", "\"rebased\"", "rebased");
    expect_error("la_untied_needs_k_map", "la_hedgehog_tied", "\"tie_feature_map_qk\": true",
                 "\"tie_feature_map_qk\": false", "feature_map_k.layer.weight");
    return test_finish();
}
