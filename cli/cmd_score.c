/* lina score / lina generate for Hugging Face checkpoint directories
 * (config.json + model.safetensors; the model types of include/lina/hf.h).
 *
 *   lina score DIR --ids IDS.safetensors --out LOGITS.safetensors [--threads N]
 *       input_ids int64 [B, T] -> logits f32 [B, T, vocab], written atomically
 *   lina generate DIR --prompt-ids 1,2,3 --max-new N [--temperature 0] [--seed S] [--threads N]
 *       prints the new token ids, space-separated, on one line
 *   lina generate DIR --prompt "text" [--tokenizer FILE] ...
 *       encodes the prompt with the tokenizer (default: DIR/tokenizer.json, else the RWKV world
 *       vocabulary DIR/rwkv_vocab_v20230424.txt), prints the new text */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "cli.h"

static int fail(const char *cmd, lina_status st) {
    fprintf(stderr, "lina %s: %s: %s\n", cmd, lina_status_str(st), lina_last_error());
    return 1;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static lina_ctx *make_ctx(long threads) {
    lina_ctx *ctx = NULL;
    if (lina_ctx_create(&ctx) != LINA_OK) return NULL;
    lina_ctx_set_threads(ctx, (int)threads);
    return ctx;
}

static void score_usage(FILE *f) {
    fprintf(f, "usage: lina score DIR --ids IDS.safetensors --out LOGITS.safetensors [--threads N]\n"
               "  DIR: Hugging Face checkpoint (config.json + model.safetensors), model_type gla | delta_net | gated_deltanet | retnet |\n"
               "       hgrn2 | linear_attn | rwkv7 (fla), mamba2 | qwen3_next (transformers)\n"
               "  IDS: int64 tensor 'input_ids' [B, T]; writes f32 'logits' [B, T, vocab]\n");
}

int cmd_score(int argc, char **argv) {
    const char *dir = NULL, *ids_path = NULL, *out_path = NULL;
    long threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            score_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--ids") && i + 1 < argc) {
            ids_path = argv[++i];
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out_path = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            if (!parse_long(argv[++i], 0, 4096, &threads)) {
                fprintf(stderr, "lina score: --threads '%s' is not a count\n", argv[i]);
                return 2;
            }
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "lina score: unexpected argument '%s'\n", argv[i]);
            score_usage(stderr);
            return 2;
        }
    }
    if (!dir || !ids_path || !out_path) {
        score_usage(stderr);
        return 2;
    }
    lina_hf_model *m = NULL;
    lina_st_file *f = NULL;
    lina_st_writer *w = NULL;
    lina_ctx *ctx = make_ctx(threads);
    int64_t *ids = NULL;
    float *logits = NULL;
    int rc = 1;
    lina_status st = ctx ? lina_hf_load(dir, &m) : LINA_ERR_OOM;
    if (st) goto done;
    if ((st = lina_st_open(ids_path, &f))) goto done;
    const lina_tensor_view *t = lina_st_find(f, "input_ids");
    if (!t || t->dtype != LINA_DTYPE_I64 || t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1 ||
        t->shape[0] > (1 << 20) || t->shape[1] > (1 << 24)) {
        fprintf(stderr, "lina score: '%s' has no int64 tensor 'input_ids' [B, T] with B, T >= 1\n", ids_path);
        goto done;
    }
    int B = (int)t->shape[0], T = (int)t->shape[1], V = lina_hf_vocab_size(m);
    ids = malloc((size_t)t->numel * sizeof *ids);
    logits = malloc((size_t)B * T * V * sizeof *logits);
    if (!ids || !logits) {
        fprintf(stderr, "lina score: out of memory for [%d, %d, %d] logits\n", B, T, V);
        goto done;
    }
    memcpy(ids, t->data, (size_t)t->numel * sizeof *ids);
    if ((st = lina_hf_forward(ctx, m, NULL, B, T, ids, logits))) goto done;
    int64_t shape[3] = {B, T, V};
    if ((st = lina_st_writer_create(&w)) || (st = lina_st_writer_add(w, "logits", LINA_DTYPE_F32, 3, shape, logits)) ||
        (st = lina_st_writer_set_metadata(w, "model_type", lina_hf_model_type(m))) ||
        (st = lina_st_writer_save(w, out_path)))
        goto done;
    printf("lina score: %s (%s) -> %s: logits [%d, %d, %d]\n", dir, lina_hf_model_type(m), out_path, B, T, V);
    rc = 0;
done:
    if (st) rc = fail("score", st);
    lina_st_writer_free(w);
    lina_st_close(f);
    lina_hf_free(m);
    lina_ctx_free(ctx);
    free(ids);
    free(logits);
    return rc;
}

/* "1,2,3" -> ids; returns the count or -1 */
static int parse_ids(const char *s, int64_t **out) {
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    int64_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (errno || end == p || (*end != ',' && *end != 0)) {
            free(ids);
            return -1;
        }
        ids[i] = v;
        p = end + (*end == ',');
    }
    *out = ids;
    return n;
}

/* Sample from softmax(logits / temperature) with a xorshift stream. */
static int64_t sample(const float *logits, int V, double temperature, uint64_t *rng) {
    double mx = logits[0], total = 0;
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < V; i++) total += exp((logits[i] - mx) / temperature);
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    double u = (double)(*rng >> 11) * 0x1p-53 * total, acc = 0;
    for (int i = 0; i < V; i++) {
        acc += exp((logits[i] - mx) / temperature);
        if (u < acc) return i;
    }
    return V - 1;
}

static void generate_usage(FILE *f) {
    fprintf(f, "usage: lina generate DIR --prompt-ids 1,2,3 --max-new N [--temperature T] [--seed S] [--threads N]\n"
               "       lina generate DIR --prompt TEXT [--tokenizer FILE] --max-new N ...\n"
               "  DIR: Hugging Face checkpoint (any model type lina score accepts); prints the new token ids,\n"
               "  or with --prompt the new text (tokenizer: --tokenizer tokenizer.json or an RWKV world .txt;\n"
               "  default DIR/tokenizer.json, else DIR/rwkv_vocab_v20230424.txt)\n"
               "  --temperature 0 (default) is greedy (argmax)\n");
}

int cmd_generate_hf(int argc, char **argv) {
    const char *dir = NULL, *prompt_s = NULL, *prompt_text = NULL, *tok_path = NULL;
    long max_new = 32, threads = 0, seed = 1;
    double temperature = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            generate_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--prompt-ids") && has) {
            prompt_s = argv[++i];
        } else if (!strcmp(a, "--prompt") && has) {
            prompt_text = argv[++i];
        } else if (!strcmp(a, "--tokenizer") && has) {
            tok_path = argv[++i];
        } else if (!strcmp(a, "--max-new") && has) {
            if (!parse_long(argv[++i], 0, 1 << 24, &max_new)) {
                fprintf(stderr, "lina generate: --max-new '%s' is not a count\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--threads") && has) {
            if (!parse_long(argv[++i], 0, 4096, &threads)) {
                fprintf(stderr, "lina generate: --threads '%s' is not a count\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--seed") && has) {
            if (!parse_long(argv[++i], 0, 0x7fffffffL, &seed)) {
                fprintf(stderr, "lina generate: --seed '%s' is not a non-negative integer\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--temperature") && has) {
            char *end;
            temperature = strtod(argv[++i], &end);
            if (*end || !(temperature >= 0) || !isfinite(temperature)) {
                fprintf(stderr, "lina generate: --temperature '%s' must be a number >= 0\n", argv[i]);
                return 2;
            }
        } else if (a[0] != '-' && !dir) {
            dir = a;
        } else {
            fprintf(stderr, "lina generate: unexpected argument '%s'\n", a);
            generate_usage(stderr);
            return 2;
        }
    }
    if (!dir || !prompt_s == !prompt_text) {
        generate_usage(stderr);
        return 2;
    }
    int64_t *prompt = NULL, *out = NULL;
    lina_tokenizer *tok = NULL;
    int n_prompt = -1;
    if (prompt_text) { /* text prompt: encode with the tokenizer */
        lina_status ts = tok_path ? lina_tokenizer_load_file(tok_path, &tok) : lina_tokenizer_load_dir(dir, &tok);
        size_t n_ids = 0;
        if (!ts) ts = lina_tokenizer_encode(tok, prompt_text, strlen(prompt_text), 1, &prompt, &n_ids);
        if (ts) {
            lina_tokenizer_free(tok);
            return fail("generate", ts);
        }
        n_prompt = n_ids > 0 && n_ids < (1u << 30) ? (int)n_ids : -1;
    } else {
        n_prompt = parse_ids(prompt_s, &prompt);
    }
    if (n_prompt < 1) {
        lina_tokenizer_free(tok);
        free(prompt);
        fprintf(stderr, "lina generate: %s '%s' gives no token ids (--prompt-ids takes a comma-separated list)\n",
                prompt_s ? "--prompt-ids" : "--prompt", prompt_s ? prompt_s : prompt_text);
        return 2;
    }
    lina_hf_model *m = NULL;
    lina_hf_state *s = NULL;
    lina_ctx *ctx = make_ctx(threads);
    float *logits = NULL;
    int rc = 1;
    lina_status st = ctx ? lina_hf_load(dir, &m) : LINA_ERR_OOM;
    if (st) goto done;
    out = malloc((size_t)(max_new ? max_new : 1) * sizeof *out);
    logits = malloc((size_t)lina_hf_vocab_size(m) * sizeof *logits);
    if (!out || !logits) {
        fprintf(stderr, "lina generate: out of memory\n");
        goto done;
    }
    if (temperature == 0) {
        st = lina_hf_generate_greedy(ctx, m, prompt, n_prompt, (int)max_new, out);
    } else { /* prefill through the chunk form, then one recurrent step per token */
        int V = lina_hf_vocab_size(m);
        uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)seed * 0xBF58476D1CE4E5B9ull;
        rng = rng ? rng : 1;
        float *all = malloc((size_t)n_prompt * V * sizeof *all);
        st = !all ? LINA_ERR_OOM : lina_hf_state_create(m, 1, &s);
        if (!st) st = lina_hf_forward(ctx, m, s, 1, n_prompt, prompt, all);
        if (!st) memcpy(logits, all + (size_t)(n_prompt - 1) * V, (size_t)V * sizeof *logits);
        free(all);
        for (long i = 0; i < max_new && !st; i++) {
            out[i] = sample(logits, V, temperature, &rng);
            if (i + 1 < max_new) st = lina_hf_forward(ctx, m, s, 1, 1, &out[i], logits);
        }
    }
    if (st) goto done;
    if (tok) {
        char *text = NULL;
        size_t len = 0;
        if ((st = lina_tokenizer_decode(tok, out, (size_t)max_new, &text, &len))) goto done;
        fwrite(text, 1, len, stdout);
        printf("\n");
        free(text);
    } else {
        for (long i = 0; i < max_new; i++) printf("%s%lld", i ? " " : "", (long long)out[i]);
        printf("\n");
    }
    rc = 0;
done:
    if (st) rc = fail("generate", st);
    lina_hf_state_free(s);
    lina_hf_free(m);
    lina_tokenizer_free(tok);
    lina_ctx_free(ctx);
    free(prompt);
    free(out);
    free(logits);
    return rc;
}
