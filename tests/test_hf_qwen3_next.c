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

static const char *fixture_dir(void) {
    static char dir[1200];
    const char *data = getenv("LINA_TEST_DATA");
    snprintf(dir, sizeof dir, "%s/hf_qwen3_next", data && *data ? data : "tests/data");
    return dir;
}

static const lina_tensor_view *need(const lina_st_file *f, const char *name, lina_dtype dt, int ndim) {
    const lina_tensor_view *t = lina_st_find(f, name);
    return t && t->dtype == dt && t->ndim == ndim ? t : NULL;
}

static int64_t *copy_ids(const lina_tensor_view *t) {
    size_t n = (size_t)t->shape[0] * t->shape[1];
    int64_t *ids = malloc(n * sizeof *ids);
    if (ids) memcpy(ids, t->data, n * sizeof *ids);
    return ids;
}

static void check_golden(void) {
    char path[1300];
    snprintf(path, sizeof path, "%s/golden.safetensors", fixture_dir());
    lina_hf_model *m = NULL;
    lina_st_file *f = NULL;
    lina_status st = lina_hf_load(fixture_dir(), &m);
    if (!st) st = lina_st_open(path, &f);
    const lina_tensor_view *ids = f ? need(f, "input_ids", LINA_DTYPE_I64, 2) : NULL,
                           *ref = f ? need(f, "logits", LINA_DTYPE_F32, 3) : NULL,
                           *prompt = f ? need(f, "greedy_prompt", LINA_DTYPE_I64, 2) : NULL,
                           *greedy = f ? need(f, "greedy_output", LINA_DTYPE_I64, 2) : NULL;
    int ok = !st && ids && ref && prompt && greedy && ref->shape[2] == lina_hf_vocab_size(m);
    test_report(ok, "qwen3_next_load", "%s", ok ? "" : st ? lina_last_error() : "unexpected tensors");
    if (!ok) {
        lina_st_close(f);
        lina_hf_free(m);
        return;
    }
    int B = (int)ids->shape[0], T = (int)ids->shape[1], V = lina_hf_vocab_size(m);
    size_t n = (size_t)B * T * V;
    float *got = alloc_floats(n), *want = alloc_floats(n), *lg = alloc_floats(n);
    int64_t *id = copy_ids(ids), *part = malloc((size_t)B * T * sizeof *part);
    lina_tensor_to_f32(ref, want, (int64_t)n);
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
    int64_t *p = copy_ids(prompt), *g = copy_ids(greedy), *out = calloc((size_t)n_new + 1, sizeof *out);
    st = lina_hf_generate_greedy(NULL, m, p, np, n_new, out);
    int same = !st && !memcmp(out, g + np, (size_t)n_new * sizeof *out);
    test_report(same, "qwen3_next_greedy_24_tokens_exact", "%s", st ? lina_last_error() : same ? "" : "differs");
    free(p);
    free(g);
    free(out);
    free(part);
    free(got);
    free(want);
    free(lg);
    free(id);
    lina_st_close(f);
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

int main(void) {
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
