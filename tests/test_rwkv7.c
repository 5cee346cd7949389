/* fla RWKV-7 through lina_hf_*: a tiny checkpoint (tests/data/rwkv7, made by
 * make.py there) against a SELF-WRITTEN float64 PyTorch re-statement of fla's
 * model math (fla itself needs a GPU): logits, state carried through
 * single-token steps and chunks, greedy continuation, config errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "util/check.h"
#include "util/fixture.h"

/* Feed the B rows in pieces cut at cuts[0..n] (state carried); logits of every position. */
static lina_status run_pieces(const lina_hf_model *m, int B, int T, const int64_t *ids, const int *cuts, int n,
                              float *out) {
    int V = lina_hf_vocab_size(m);
    lina_hf_state *s = NULL;
    lina_status st = lina_hf_state_create(m, B, &s);
    int64_t *part = malloc((size_t)B * T * sizeof *part);
    float *lg = malloc((size_t)B * T * V * sizeof *lg);
    for (int c = 0; c < n && !st; c++) {
        int len = cuts[c + 1] - cuts[c];
        for (int b = 0; b < B; b++)
            memcpy(part + (size_t)b * len, ids + (size_t)b * T + cuts[c], (size_t)len * sizeof *part);
        st = lina_hf_forward(NULL, m, s, B, len, part, lg);
        for (int b = 0; b < B && !st; b++)
            memcpy(out + ((size_t)b * T + cuts[c]) * V, lg + (size_t)b * len * V, (size_t)len * V * sizeof *lg);
    }
    free(part);
    free(lg);
    lina_hf_state_free(s);
    return st;
}

static void test_reference(const char *sub, const char *tag) {
    char dir[1024], path[1100], tname[160];
    snprintf(dir, sizeof dir, "%s/%s", fixture_data_dir(), sub);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    lina_hf_model *m = NULL;
    lina_st_file *f = NULL;
    lina_status st = lina_hf_load(dir, &m);
    if (!st) st = lina_st_open(path, &f);
    const lina_tensor_view *ids = f ? fixture_tensor(f, "input_ids", LINA_DTYPE_I64, 2) : NULL,
                           *ref = f ? fixture_tensor(f, "logits", LINA_DTYPE_F32, 3) : NULL,
                           *prompt = f ? fixture_tensor(f, "greedy_prompt", LINA_DTYPE_I64, 2) : NULL,
                           *greedy = f ? fixture_tensor(f, "greedy_output", LINA_DTYPE_I64, 2) : NULL;
    int ok = !st && ids && ref && prompt && greedy && ref->shape[2] == lina_hf_vocab_size(m);
    snprintf(tname, sizeof tname, "rwkv7 checkpoint and reference load [%s]", tag);
    test_report(ok, tname, "%s", ok ? "" : st ? lina_last_error() : "unexpected tensors");
    if (ok) {
        int B = (int)ids->shape[0], T = (int)ids->shape[1], V = lina_hf_vocab_size(m);
        size_t n = (size_t)B * T * V;
        float *got = alloc_floats(n), *want = alloc_floats(n);
        int64_t *id = fixture_ids(ids);
        lina_tensor_to_f32(ref, want, (int64_t)n);
        st = lina_hf_forward(NULL, m, NULL, B, T, id, got);
        snprintf(tname, sizeof tname, "rwkv7 logits == self-written float64 reference (B=2, T=70) [%s]", tag);
        if (st) test_report(0, tname, "%s", lina_last_error());
        else check_close(tname, got, want, n, 1e-3);
        /* single-token steps, then chunks: token shift, DPLR state and v_first carried */
        int cuts[6] = {0, 1, 2, 3, 40, T};
        st = run_pieces(m, B, T, id, cuts, 5, got);
        snprintf(tname, sizeof tname, "rwkv7 3 steps + 2 chunks == reference [%s]", tag);
        if (st) test_report(0, tname, "%s", lina_last_error());
        else check_close(tname, got, want, n, 1e-3);
        /* a reset state behaves as a fresh one (token shifts and DPLR states zeroed) */
        lina_hf_state *s = NULL;
        float *again = alloc_floats(n);
        st = lina_hf_state_create(m, B, &s);
        if (!st) st = lina_hf_forward(NULL, m, s, B, T, id, got);
        lina_hf_state_reset(s);
        if (!st) st = lina_hf_forward(NULL, m, s, B, T, id, again);
        snprintf(tname, sizeof tname, "rwkv7 state reset == fresh state [%s]", tag);
        test_report(!st && !memcmp(got, again, n * sizeof *got), tname, "%s",
                    st ? lina_last_error() : "");
        lina_hf_state_free(s);
        free(again);
        int np = (int)prompt->shape[1], n_new = (int)greedy->shape[1] - np;
        int64_t *out = calloc((size_t)n_new, sizeof *out);
        const int64_t *g = (const int64_t *)greedy->data;
        st = lina_hf_generate_greedy(NULL, m, (const int64_t *)prompt->data, np, n_new, out);
        int same = !st && !memcmp(out, g + np, (size_t)n_new * sizeof *out);
        char msg[256] = "";
        if (!same && !st)
            snprintf(msg, sizeof msg, "got %lld %lld %lld ..., want %lld %lld %lld ...", (long long)out[0],
                     (long long)out[1], (long long)out[2], (long long)g[np], (long long)g[np + 1], (long long)g[np + 2]);
        snprintf(tname, sizeof tname, "rwkv7 greedy continuation == reference (8 tokens) [%s]", tag);
        test_report(same, tname, "%s", st ? lina_last_error() : msg);
        free(out);
        free(got);
        free(want);
        free(id);
    }
    lina_st_close(f);
    lina_hf_free(m);
}

/* A config that the runner must refuse, with a message naming the field. */
static void expect_config_error(const char *tname, const char *json, const char *needle) {
    char dir[] = "/tmp/lina_rwkv7_cfg_XXXXXX";
    if (!mkdtemp(dir)) {
        test_report(0, tname, "mkdtemp failed");
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs(json, fp);
        fclose(fp);
    }
    lina_hf_model *m = NULL;
    lina_status st = lina_hf_load(dir, &m);
    const char *msg = lina_last_error();
    test_report(st != LINA_OK && strstr(msg, needle) != NULL, tname, "status %d, message \"%s\"", st, msg);
    lina_hf_free(m);
    remove(path);
    remove(dir);
}

int main(void) {
    test_reference("rwkv7", "fuse_norm, separate x_r..x_g");
    test_reference("rwkv7/v1", "rwkv7_fla, F.normalize, packed x_x, hidden_ratio 3.5, no norm bias");
    expect_config_error("rwkv7 hybrid attn layers refused",
                        "{\"model_type\": \"rwkv7\", \"vocab_size\": 8, \"hidden_size\": 16, \"num_hidden_layers\": 1, "
                        "\"head_dim\": 8, \"attn\": {\"layers\": [0], \"num_heads\": 2}}",
                        "attn");
    expect_config_error("rwkv7 head_dim not dividing hidden_size refused",
                        "{\"model_type\": \"rwkv7\", \"vocab_size\": 8, \"hidden_size\": 20, \"num_hidden_layers\": 1, "
                        "\"head_dim\": 8}",
                        "head_dim = 8");
    expect_config_error("rwkv7 other hidden_act refused",
                        "{\"model_type\": \"rwkv7\", \"vocab_size\": 8, \"hidden_size\": 16, \"num_hidden_layers\": 1, "
                        "\"head_dim\": 8, \"hidden_act\": \"gelu\"}",
                        "gelu");
    return test_finish();
}
