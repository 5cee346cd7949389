/* lina convert (lina_hf_convert): lina checkpoints <-> fla layouts.
 * For each convertible mixer (gated_deltanet, deltanet, gla, retnet), on a random
 * model with uneven head dims:
 *   - lina -> fla: the fla checkpoint run by lina's Hugging Face runner gives the
 *     lina model's logits (relative RMS <= 1e-5; two independent code paths)
 *   - fla -> lina: the round trip restores every parameter bit for bit
 * and unconvertible inputs fail naming the layer, field or model_type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lina/hf.h"
#include "lina/model.h"
#include "util/check.h"

static char root[256];

static void rm_dir(const char *dir) {
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    remove(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    remove(p);
    remove(dir);
}

static void round_trip(lina_mixer_kind kind, int tie) {
    const char *mname = lina_mixer_name(kind);
    char d_lina[400], d_fla[400], d_back[400], tname[128];
    snprintf(d_lina, sizeof d_lina, "%s/%s_lina", root, mname);
    snprintf(d_fla, sizeof d_fla, "%s/%s_fla", root, mname);
    snprintf(d_back, sizeof d_back, "%s/%s_back", root, mname);
    lina_model_config c = lina_model_config_default();
    c.vocab_size = 97;
    c.dim = 48;
    c.n_layers = 2;
    c.n_heads = 2;
    c.head_k_dim = 12;
    c.head_v_dim = 18;
    c.intermediate = 72;
    c.tie_embeddings = tie;
    c.init_std = 0.1f;
    for (int l = 0; l < c.n_layers; l++) c.mixer[l] = kind;
    lina_model *lm = NULL, *back = NULL;
    lina_hf_model *hm = NULL;
    lina_status st = lina_model_config_validate(&c);
    if (!st) st = lina_model_create(&c, 11, &lm);
    if (!st) st = lina_model_save(lm, d_lina);
    if (!st) st = lina_hf_convert(d_lina, d_fla);
    if (!st) st = lina_hf_load(d_fla, &hm);
    snprintf(tname, sizeof tname, "convert_%s_to_fla_loads", mname);
    test_report(!st, tname, "%s", st ? lina_last_error() : "");
    if (!st) {
        enum { B = 2, T = 37 };
        int32_t tok[B * T];
        int64_t ids[B * T];
        for (int i = 0; i < B * T; i++) ids[i] = tok[i] = (int32_t)((i * 31 + 7) % c.vocab_size);
        float *ref = alloc_floats((size_t)B * T * c.vocab_size), *got = alloc_floats((size_t)B * T * c.vocab_size);
        st = lina_model_forward(lm, B, T, tok, NULL, ref, NULL);
        if (!st) st = lina_hf_forward(NULL, hm, NULL, B, T, ids, got);
        snprintf(tname, sizeof tname, "convert_%s_fla_logits_match_lina", mname);
        if (st) test_report(0, tname, "%s", lina_last_error());
        else check_close(tname, got, ref, (size_t)B * T * c.vocab_size, 1e-5);
        /* back to lina: every parameter bit for bit */
        st = lina_hf_convert(d_fla, d_back);
        if (!st) st = lina_model_load(d_back, &back);
        snprintf(tname, sizeof tname, "convert_%s_round_trip_bitwise", mname);
        int same = !st && lina_model_n_params(back) == lina_model_n_params(lm) &&
                   !memcmp(lina_model_params(back), lina_model_params(lm), lina_model_n_params(lm) * sizeof(float));
        test_report(same, tname, "%s", st ? lina_last_error() : same ? "" : "parameters differ");
        free(ref);
        free(got);
    }
    lina_model_free(lm);
    lina_model_free(back);
    lina_hf_free(hm);
    rm_dir(d_lina);
    rm_dir(d_fla);
    rm_dir(d_back);
}

/* head dims fla cannot express: int(11 * (15 / 11.0)) is 14 in double arithmetic */
static void inexpressible_heads(void) {
    char d_lina[400], d_fla[400];
    snprintf(d_lina, sizeof d_lina, "%s/odd_lina", root);
    snprintf(d_fla, sizeof d_fla, "%s/odd_fla", root);
    lina_model_config c = lina_model_config_default();
    c.dim = 22;
    c.n_heads = 2;
    c.head_k_dim = 11;
    c.head_v_dim = 15;
    lina_model *lm = NULL;
    lina_status st = lina_model_config_validate(&c);
    if (!st) st = lina_model_create(&c, 3, &lm);
    if (!st) st = lina_model_save(lm, d_lina);
    lina_status conv = st ? st : lina_hf_convert(d_lina, d_fla);
    const char *why = conv ? lina_last_error() : "";
    test_report(!st && conv && strstr(why, "head_v_dim 15"), "convert_inexpressible_head_dims", "%s",
                st ? lina_last_error() : why);
    lina_model_free(lm);
    rm_dir(d_lina);
    rm_dir(d_fla);
}

static void expect_error(const char *tname, const char *src, const char *needle) {
    char dst[400];
    snprintf(dst, sizeof dst, "%s/err", root);
    lina_status st = lina_hf_convert(src, dst);
    const char *why = st ? lina_last_error() : "";
    test_report(st && strstr(why, needle), tname, "status %d, '%s' (want '%s')", (int)st, why, needle);
    rm_dir(dst);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/lina_test_convert_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", root);
    if (system(cmd) != 0) return 1;
    round_trip(LINA_MIXER_GATED_DELTANET, 0);
    round_trip(LINA_MIXER_DELTANET, 1);
    round_trip(LINA_MIXER_GLA, 0);
    round_trip(LINA_MIXER_RETNET, 1);
    inexpressible_heads();
    const char *data = getenv("LINA_TEST_DATA");
    char p[600];
    snprintf(p, sizeof p, "%s/model_deltanet_gla", data && *data ? data : "tests/data");
    expect_error("convert_mixed_mixers", p, "layer 1 mixer 'gla'");
    snprintf(p, sizeof p, "%s/hf_fla_oracle/gdn_gva_conv", data && *data ? data : "tests/data");
    expect_error("convert_gva_heads", p, "num_v_heads");
    snprintf(p, sizeof p, "%s/hf_qwen3_next", data && *data ? data : "tests/data");
    expect_error("convert_unknown_type", p, "model_type 'qwen3_next' does not convert");
    expect_error("convert_missing_dir", "/nonexistent/lina", "/nonexistent/lina/config.json");
    remove(root);
    return test_finish();
}
