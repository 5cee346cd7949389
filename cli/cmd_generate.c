/* lina generate DIR: sample text from a checkpoint. The prompt is prefilled
 * with the chunkwise forms, then each new byte costs one recurrent step
 * (constant time and memory for linear mixers; softmax layers use a KV cache).
 * The decoding state can be saved, loaded and forked (--save-state/--load-state). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <cjson/cJSON.h>

#include "cli.h"
#include "lina.h"

static void gen_usage(FILE *f) {
    fprintf(f,
            "usage: lina generate DIR [options]\n"
            "Generate bytes from the checkpoint in DIR (config.json + model.safetensors).\n"
            "Checkpoints of other model types (Hugging Face / fla) go to the HF loader: there --prompt TEXT\n"
            "is encoded with the tokenizer in DIR (tokenizer.json, or the RWKV world vocabulary\n"
            "rwkv_vocab_v20230424.txt) or --tokenizer FILE, --prompt-ids 1,2,3 takes ids, and the\n"
            "new text (or ids) is printed.\n\n"
            "  --prompt TEXT       text to start from (default: a newline)\n"
            "  --max-new N         bytes to generate (default 200)\n"
            "  --temperature X     0 = greedy (default 0.8)\n"
            "  --top-k N           keep the N most likely bytes (default 0 = off)\n"
            "  --top-p X           nucleus sampling (default 1 = off)\n"
            "  --seed N            sampling seed (default 1)\n"
            "  --threads N         threads (default 1: one token is too little work to share)\n"
            "  --load-state FILE   continue from a saved decoding state (the prompt is appended)\n"
            "  --save-state FILE   save the decoding state at the end (bit-exact; fork by loading twice)\n"
            "  --no-echo           do not print the prompt\n"
            "  --stats             print prefill and per-token speed and the state size to stderr\n");
}

/* 1 if DIR/config.json names a model_type other than lina's own. */
static int is_foreign(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    int foreign = cJSON_IsString(mt) && strcmp(mt->valuestring, "lina") != 0;
    cJSON_Delete(j);
    return foreign;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int num_arg(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    double x = v ? strtod(v, &end) : 0;
    if (!v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "lina generate: %s needs a number in [%g, %g], got '%s'\n", flag, lo, hi, v ? v : "");
        return 0;
    }
    *out = x;
    return 1;
}

int cmd_generate(int argc, char **argv) {
    const char *dir = NULL, *prompt = "\n", *save = NULL, *load = NULL;
    double max_new = 200, temp = 0.8, top_k = 0, top_p = 1, seed = 1, threads = 1;
    int echo = 1, stats = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            gen_usage(stdout);
            return 0;
        }
    }
    if (argc >= 2 && argv[1][0] != '-' && is_foreign(argv[1])) return cmd_generate_hf(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "--prompt")) prompt = v, i++, ok = v != NULL;
        else if (!strcmp(a, "--save-state")) save = v, i++, ok = v != NULL;
        else if (!strcmp(a, "--load-state")) load = v, i++, ok = v != NULL;
        else if (!strcmp(a, "--max-new")) ok = num_arg(a, v, 0, 1e9, &max_new), i++;
        else if (!strcmp(a, "--temperature")) ok = num_arg(a, v, 0, 100, &temp), i++;
        else if (!strcmp(a, "--top-k")) ok = num_arg(a, v, 0, 1 << 24, &top_k), i++;
        else if (!strcmp(a, "--top-p")) ok = num_arg(a, v, 0, 1, &top_p), i++;
        else if (!strcmp(a, "--seed")) ok = num_arg(a, v, 0, 9e15, &seed), i++;
        else if (!strcmp(a, "--threads")) ok = num_arg(a, v, 1, 256, &threads), i++;
        else if (!strcmp(a, "--no-echo")) echo = 0;
        else if (!strcmp(a, "--stats")) stats = 1;
        else if (a[0] != '-' && !dir) dir = a;
        else {
            fprintf(stderr, "lina generate: unknown option '%s' (lina generate --help)\n", a);
            return 2;
        }
        if (!ok) {
            if (!v) fprintf(stderr, "lina generate: %s needs a value\n", a);
            return 2;
        }
    }
    if (!dir) {
        gen_usage(stderr);
        return 2;
    }
    if (threads > 0) {
#ifdef _OPENMP
        omp_set_num_threads((int)threads);
#endif
    }
    lina_model *m = NULL;
    lina_gen_state *s = NULL;
    int rc = 1;
    if (lina_model_load(dir, &m) != LINA_OK) {
        fprintf(stderr, "lina generate: %s\n", lina_last_error());
        return 1;
    }
    if (threads > 0) lina_model_set_threads(m, (int)threads);
    int vocab = lina_model_get_config(m)->vocab_size;
    lina_status st = load ? lina_gen_state_load(m, load, &s) : lina_gen_state_create(m, &s);
    if (st != LINA_OK) {
        fprintf(stderr, "lina generate: %s\n", lina_last_error());
        goto done;
    }
    size_t n_prompt = strlen(prompt);
    if (n_prompt == 0 && !lina_gen_state_logits(s)) {
        fprintf(stderr, "lina generate: empty --prompt needs a --load-state to continue from\n");
        goto done;
    }
    float *logits = malloc(sizeof(float) * vocab);
    int32_t *tok = malloc(sizeof(int32_t) * (n_prompt ? n_prompt : 1));
    if (!logits || !tok) {
        fprintf(stderr, "lina generate: out of memory\n");
        free(logits);
        free(tok);
        goto done;
    }
    for (size_t i = 0; i < n_prompt; i++) tok[i] = (unsigned char)prompt[i];
    if (echo) {
        fwrite(prompt, 1, n_prompt, stdout);
        fflush(stdout);
    }
    double t0 = now_s();
    if (n_prompt) st = lina_model_prefill(m, s, (int)n_prompt, tok, logits);
    else memcpy(logits, lina_gen_state_logits(s), sizeof(float) * vocab);
    double t_prefill = now_s() - t0;
    if (st != LINA_OK) {
        fprintf(stderr, "\nlina generate: prompt of %zu bytes: %s\n", n_prompt, lina_last_error());
        free(logits);
        free(tok);
        goto done;
    }
    lina_sampler sm = {(float)temp, (int)top_k, (float)top_p};
    uint64_t rng = (uint64_t)seed;
    t0 = now_s();
    int produced = 0;
    for (; produced < (int)max_new; produced++) {
        int next = lina_sample(&sm, logits, vocab, &rng);
        putchar(next < 256 ? next : '?');
        fflush(stdout);
        if (lina_model_step(m, s, next, logits) != LINA_OK) {
            fprintf(stderr, "\nlina generate: step %d: %s\n", produced, lina_last_error());
            break;
        }
    }
    double t_gen = now_s() - t0;
    putchar('\n');
    free(logits);
    free(tok);
    if (produced < (int)max_new) goto done;
    if (stats)
        fprintf(stderr, "lina generate: prefill %zu bytes in %.3f s (%.0f tok/s); %d steps in %.3f s (%.1f tok/s); state %zu bytes\n",
                n_prompt, t_prefill, n_prompt / (t_prefill > 0 ? t_prefill : 1e-9), produced, t_gen,
                produced / (t_gen > 0 ? t_gen : 1e-9), lina_gen_state_bytes(s));
    if (save && lina_gen_state_save(s, save) != LINA_OK) {
        fprintf(stderr, "lina generate: saving the state: %s\n", lina_last_error());
        goto done;
    }
    rc = 0;
done:
    lina_gen_state_free(s);
    lina_model_free(m);
    return rc;
}
