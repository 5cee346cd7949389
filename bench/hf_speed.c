/* Prefill and decode speed of a Hugging Face / fla checkpoint directory in lina,
 * measured the way llama.cpp's llama-bench does (bench/hf_bench.sh builds and runs it):
 *
 *   hf_speed DIR [--threads N] [--prompt T]... [--decode N] [--repeat R]
 *
 * prefill T: one lina_hf_forward call over T random token ids from an empty
 *            state (the chunkwise forms), no LM head (llama-bench's pp test
 *            computes the logits of the last token only: one row of V x D)
 * decode N:  N single-token lina_hf_forward calls from an empty state, each
 *            with its logits (V) and the argmax fed back (llama-bench's tg test)
 * Each measurement runs R times (default 2) after one untimed warm-up; one JSON
 * object per line: {"dir", "model_type", "test", "tokens", "threads", "runs_s": [...],
 * "tok_s_best", "tok_s_mean", "load_s", "load1"}. tok_s_best uses the fastest run. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "lina.h"

void openblas_set_num_threads(int n); /* OpenBLAS (OpenMP build): threads of its sgemm/sgemv */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double load1(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

static int64_t argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* One timed run: prefill T tokens (decode = 0) or decode T tokens one at a time. */
static lina_status run_once(lina_ctx *ctx, const lina_hf_model *m, int T, int decode, double *seconds) {
    int V = lina_hf_vocab_size(m);
    int64_t *ids = malloc((size_t)T * sizeof *ids);
    float *logits = malloc((size_t)V * sizeof *logits);
    lina_hf_state *s = NULL;
    lina_status st = ids && logits ? lina_hf_state_create(m, 1, &s) : LINA_ERR_OOM;
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (int t = 0; ids && t < T; t++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        ids[t] = (int64_t)(r % (uint64_t)V);
    }
    double t0 = now_s();
    if (!st && !decode) st = lina_hf_forward(ctx, m, s, 1, T, ids, NULL);
    for (int t = 0; !st && decode && t < T; t++) {
        st = lina_hf_forward(ctx, m, s, 1, 1, &ids[t], logits);
        if (t + 1 < T) ids[t + 1] = argmax(logits, V);
    }
    *seconds = now_s() - t0;
    lina_hf_state_free(s);
    free(ids);
    free(logits);
    return st;
}

static int usage(void) {
    fprintf(stderr, "usage: hf_speed DIR [--threads N] [--prompt T]... [--decode N] [--repeat R]\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int threads = 1, decode = 128, repeat = 2, prompts[16], n_prompts = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int *dst = !strcmp(a, "--threads") ? &threads
                   : !strcmp(a, "--decode") ? &decode
                   : !strcmp(a, "--repeat") ? &repeat
                   : !strcmp(a, "--prompt") && n_prompts < 16 ? &prompts[n_prompts++]
                                                               : NULL;
        if (dst && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > (1 << 20)) {
                fprintf(stderr, "hf_speed: %s '%s' is not a count\n", a, argv[i]);
                return 2;
            }
            *dst = (int)v;
        } else if (a[0] != '-' && !dir) {
            dir = a;
        } else {
            return usage();
        }
    }
    if (!dir || threads < 1 || repeat < 1) return usage();
    if (!n_prompts) prompts[n_prompts++] = 512;
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    openblas_set_num_threads(threads);
    lina_ctx *ctx = NULL;
    lina_hf_model *m = NULL;
    double t0 = now_s();
    lina_status st = lina_ctx_create(&ctx);
    if (!st) st = lina_ctx_set_threads(ctx, threads);
    if (!st) st = lina_hf_load(dir, &m);
    double load_s = now_s() - t0;
    for (int k = 0; k <= n_prompts && !st; k++) {
        int is_decode = k == n_prompts, T = is_decode ? decode : prompts[k];
        if (T < 1) continue;
        double runs[64], warm;
        if ((st = run_once(ctx, m, is_decode ? 8 : (T < 64 ? T : 64), is_decode, &warm))) break;
        int R = repeat < 64 ? repeat : 64;
        double best = INFINITY, sum = 0;
        for (int r = 0; r < R && !st; r++) {
            st = run_once(ctx, m, T, is_decode, &runs[r]);
            best = runs[r] < best ? runs[r] : best;
            sum += runs[r];
        }
        if (st) break;
        printf("{\"dir\": \"%s\", \"model_type\": \"%s\", \"test\": \"%s\", \"tokens\": %d, \"threads\": %d, \"runs_s\": [",
               dir, lina_hf_model_type(m), is_decode ? "decode" : "prefill", T, threads);
        for (int r = 0; r < R; r++) printf("%s%.4f", r ? ", " : "", runs[r]);
        printf("], \"tok_s_best\": %.2f, \"tok_s_mean\": %.2f, \"load_s\": %.2f, \"load1\": %.2f}\n", T / best,
               T * R / sum, load_s, load1());
        fflush(stdout);
    }
    if (st) fprintf(stderr, "hf_speed: %s: %s: %s\n", dir, lina_status_str(st), lina_last_error());
    lina_hf_free(m);
    lina_ctx_free(ctx);
    return st ? 1 : 0;
}
