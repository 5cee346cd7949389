/* `lina bench ops`: time one attention op (forward, optionally forward+backward)
 * on random inputs, report median ms, GFLOP/s (lina_attn_flops) and the ratio to
 * this machine's sgemm GFLOP/s measured in the same run with the same threads.
 * --device cuda runs cli/bench_ops_cuda.c instead (device buffers, CUDA events). */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "bench_ops.h"
#include "cli.h"
#include "lina.h"

#define CMD "lina bench ops"

/* ---- options ---- */

const bench_op_info BENCH_OPS[N_BENCH_OPS] = {
    [OP_LINEAR] = {"linear", LINA_GATE_NONE, LINA_UPDATE_ADD, "linear attention, no gate"},
    [OP_RETENTION] = {"retention", LINA_GATE_CONST, LINA_UPDATE_ADD, "RetNet: constant decay log(1-2^(-5-h))"},
    [OP_SIMPLE_GLA] = {"simple_gla", LINA_GATE_SCALAR, LINA_UPDATE_ADD, "scalar gate per token and head"},
    [OP_GLA] = {"gla", LINA_GATE_VECTOR, LINA_UPDATE_ADD, "vector gate over K"},
    [OP_DELTA] = {"delta", LINA_GATE_NONE, LINA_UPDATE_DELTA, "DeltaNet"},
    [OP_GATED_DELTA] = {"gated_delta", LINA_GATE_SCALAR, LINA_UPDATE_DELTA, "Gated DeltaNet"},
    [OP_KDA] = {"kda", LINA_GATE_VECTOR, LINA_UPDATE_DELTA, "Kimi delta attention (vector gate)"},
    [OP_SOFTMAX] = {"softmax", LINA_GATE_NONE, LINA_UPDATE_ADD, "causal softmax attention (form ignored)"},
};
const char *const BENCH_FORM_NAMES[4] = {"auto", "recurrent", "chunk", "parallel"};

static const struct {
    const char *name;
    lina_dtype dtype;
} DTYPES[] = {{"fp32", LINA_DTYPE_F32}, {"bf16", LINA_DTYPE_BF16}, {"fp16", LINA_DTYPE_F16}};

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: lina bench ops --op OP [options]\n\n"
            "Times one attention op on random inputs (median over repeats after warm-up) and\n"
            "compares its GFLOP/s with cblas_sgemm 1024^3 measured in the same run (the\n"
            "better of one measurement before and one after the op).\n\n"
            "  --op OP         one of:\n");
    for (int i = 0; i < N_BENCH_OPS; i++)
        fprintf(f, "                    %-12s %s\n", BENCH_OPS[i].name, BENCH_OPS[i].what);
    fprintf(f,
            "  --form F        chunk | recurrent | parallel | auto (default auto)\n"
            "  --B N --T N --H N --K N --V N   sizes (default 1 4096 8 64 64)\n"
            "  --HV N          value heads, a multiple of H (grouped heads; default H)\n"
            "  --chunk N       chunk size of the chunkwise form (default 64)\n"
            "  --threads N     lina_ctx threads and sgemm threads (default 1)\n"
            "  --repeat N      timed repetitions (default 5); --warmup N untimed (default 1)\n"
            "  --backward      also time forward+backward\n"
            "  --fixed-gates   with --device cuda: the backward does not compute the gates'\n"
            "                  gradient (dg = NULL: fixed decays, the faster path)\n"
            "  --json          print one JSON object instead of text\n"
            "  --device D      cpu | cuda (default cpu)\n"
            "  --dtype T       fp32 | bf16 | fp16 for q, k, v, o (default fp32; bf16 and fp16\n"
            "                  need --device cuda); gates, beta and states are fp32\n\n"
            "With --device cuda the inputs are drawn on the GPU (same distributions), every\n"
            "repetition is timed with CUDA events after a 256 MB write that evicts the L2\n"
            "cache (as triton's do_bench), and the report gives TFLOP/s (lina_attn_flops of\n"
            "the form the kernels run: chunk, with --chunk only used for that count, or\n"
            "recurrent for --form recurrent, kda, and gla in fp32) and GB/s of the minimum\n"
            "traffic: forward reads q, k, v, gates, beta and writes o; forward+backward adds\n"
            "reading them and dout again and writing dq, dk, dv, dgates, dbeta. softmax has\n"
            "no CUDA kernel; --threads is ignored.\n");
}

/* Parse a whole decimal int in [lo, hi] or print a message naming the value. */
/* Returns 0 on success, 1 after --help, 2 on a bad flag. */
static int parse_opts(int argc, char **argv, bench_opts *o) {
    memset(o, 0, sizeof *o);
    o->op = -1;
    o->B = 1, o->T = 4096, o->H = 8, o->K = 64, o->V = 64, o->chunk = 64;
    o->threads = 1, o->repeat = 5, o->warmup = 1;
    o->device = BENCH_CPU, o->dtype = LINA_DTYPE_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        struct {
            const char *flag;
            int *dst, lo, hi;
        } ints[] = {{"--B", &o->B, 1, 1 << 16},       {"--T", &o->T, 1, 1 << 24},
                    {"--H", &o->H, 1, 4096},          {"--HV", &o->HV, 1, 4096},
                    {"--K", &o->K, 1, 4096},          {"--V", &o->V, 1, 4096},
                    {"--chunk", &o->chunk, 1, 1024},  {"--threads", &o->threads, 1, 256},
                    {"--repeat", &o->repeat, 1, 100000}, {"--warmup", &o->warmup, 0, 100000}};
        int matched = 0;
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !matched; k++)
            if (!strcmp(a, ints[k].flag)) {
                if (!cli_int(CMD, a, val, ints[k].lo, ints[k].hi, ints[k].dst)) return 2;
                matched = 1, i++;
            }
        if (matched) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            bench_usage(stdout);
            return 1;
        } else if (!strcmp(a, "--backward")) {
            o->backward = 1;
        } else if (!strcmp(a, "--fixed-gates")) {
            o->fixed_gates = 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--op")) {
            for (int k = 0; k < N_BENCH_OPS && val; k++)
                if (!strcmp(val, BENCH_OPS[k].name)) o->op = (bench_op)k;
            if ((int)o->op < 0) {
                fprintf(stderr, "lina bench ops: --op '%s' is not one of linear, retention, "
                        "simple_gla, gla, delta, gated_delta, kda, softmax\n", val ? val : "(missing)");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--device")) {
            if (val && !strcmp(val, "cpu")) o->device = BENCH_CPU;
            else if (val && !strcmp(val, "cuda")) o->device = BENCH_CUDA;
            else {
                fprintf(stderr, "lina bench ops: --device '%s' is not one of cpu, cuda\n", val ? val : "(missing)");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--dtype")) {
            int t = -1;
            for (int k = 0; k < (int)(sizeof DTYPES / sizeof *DTYPES) && val; k++)
                if (!strcmp(val, DTYPES[k].name)) t = k;
            if (t < 0) {
                fprintf(stderr, "lina bench ops: --dtype '%s' is not one of fp32, bf16, fp16\n",
                        val ? val : "(missing)");
                return 2;
            }
            o->dtype = DTYPES[t].dtype;
            i++;
        } else if (!strcmp(a, "--form")) {
            int f = -1;
            for (int k = 0; k < 4 && val; k++)
                if (!strcmp(val, BENCH_FORM_NAMES[k])) f = k;
            if (f < 0) {
                fprintf(stderr, "lina bench ops: --form '%s' is not one of chunk, recurrent, "
                        "parallel, auto\n", val ? val : "(missing)");
                return 2;
            }
            o->form = (lina_form)f;
            i++;
        } else {
            fprintf(stderr, "lina bench ops: unknown option '%s' (lina bench ops --help)\n", a);
            return 2;
        }
    }
    if ((int)o->op < 0) {
        fprintf(stderr, "lina bench ops: --op is required (lina bench ops --help)\n");
        return 2;
    }
    if (o->fixed_gates && o->device != BENCH_CUDA) {
        fprintf(stderr, "lina bench ops: --fixed-gates needs --device cuda (the CPU backward always computes dg)\n");
        return 2;
    }
    if (o->dtype != LINA_DTYPE_F32 && o->device != BENCH_CUDA) {
        fprintf(stderr, "lina bench ops: --dtype %s needs --device cuda (the CPU ops run in fp32)\n",
                o->dtype == LINA_DTYPE_BF16 ? "bf16" : "fp16");
        return 2;
    }
    if (!o->HV) o->HV = o->H;
    if (o->HV % o->H) {
        fprintf(stderr, "lina bench ops: --HV %d must be a multiple of --H %d\n", o->HV, o->H);
        return 2;
    }
    return 0;
}

/* ---- inputs ---- */

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rng_unit(uint64_t *s) { return (float)((rng_next(s) >> 40) * (1.0 / 16777216.0)); }
static float rng_gauss(uint64_t *s) { /* Box-Muller */
    float u = rng_unit(s) + 1e-7f, v = rng_unit(s);
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static float *alloc_or_null(size_t n) { return n ? malloc(sizeof(float) * n) : NULL; }

/* Rows of length d scaled to unit L2 norm (DeltaNet's q, k). */
static void l2_normalize_rows(float *x, size_t rows, int d) {
    for (size_t r = 0; r < rows; r++) {
        double n = 0;
        for (int i = 0; i < d; i++) n += (double)x[r * d + i] * x[r * d + i];
        float inv = (float)(1.0 / sqrt(n + 1e-12));
        for (int i = 0; i < d; i++) x[r * d + i] *= inv;
    }
}

typedef struct {
    size_t nqk, nv, ng, nb;
    float *q, *k, *v, *g, *beta, *o, *dout, *lse;
    float *dq, *dk, *dv, *dg, *dbeta;
} buffers;

static void buffers_free(buffers *b) {
    float *all[] = {b->q, b->k, b->v, b->g, b->beta, b->o, b->dout, b->lse,
                    b->dq, b->dk, b->dv, b->dg, b->dbeta};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

/* Random inputs with realistic statistics: q, k, v ~ N(0,1); delta ops get
 * L2-normalized q, k and beta = sigmoid(N(0,1)); gates are log-sigmoid-like
 * log-decays in [-0.1, 0]; RetNet's constant decay is log(1 - 2^(-5-h)). */
static int buffers_init(buffers *b, const bench_opts *o) {
    memset(b, 0, sizeof *b);
    const bench_sizes sz = bench_op_sizes(o);
    b->nqk = sz.nqk, b->nv = sz.nv, b->ng = sz.ng, b->nb = sz.nb;
    b->q = alloc_or_null(b->nqk), b->k = alloc_or_null(b->nqk), b->v = alloc_or_null(b->nv);
    b->o = alloc_or_null(b->nv), b->dout = alloc_or_null(b->nv);
    b->g = alloc_or_null(b->ng), b->beta = alloc_or_null(b->nb);
    b->lse = alloc_or_null((size_t)o->B * o->T * o->HV);
    if (o->backward) {
        b->dq = alloc_or_null(b->nqk), b->dk = alloc_or_null(b->nqk), b->dv = alloc_or_null(b->nv);
        b->dg = alloc_or_null(b->ng), b->dbeta = alloc_or_null(b->nb);
    }
    if (!b->q || !b->k || !b->v || !b->o || !b->dout || !b->lse || (b->ng && !b->g) ||
        (b->nb && !b->beta) ||
        (o->backward && (!b->dq || !b->dk || !b->dv || (b->ng && !b->dg) || (b->nb && !b->dbeta)))) {
        fprintf(stderr, "lina bench ops: out of memory for B=%d T=%d H=%d K=%d V=%d\n", o->B, o->T,
                o->H, o->K, o->V);
        return 0;
    }
    uint64_t s = 12345;
    for (size_t i = 0; i < b->nqk; i++) b->q[i] = rng_gauss(&s), b->k[i] = rng_gauss(&s);
    for (size_t i = 0; i < b->nv; i++) b->v[i] = rng_gauss(&s), b->dout[i] = rng_gauss(&s);
    if (b->nb) { /* delta rule */
        l2_normalize_rows(b->q, b->nqk / o->K, o->K);
        l2_normalize_rows(b->k, b->nqk / o->K, o->K);
        for (size_t i = 0; i < b->nb; i++) b->beta[i] = 1.0f / (1.0f + expf(-rng_gauss(&s)));
    }
    if (BENCH_OPS[o->op].gate == LINA_GATE_CONST)
        for (int h = 0; h < o->HV; h++) b->g[h] = (float)log(1.0 - exp2(-5.0 - h));
    else
        for (size_t i = 0; i < b->ng; i++) b->g[i] = -0.1f * rng_unit(&s);
    return 1;
}

/* ---- timing ---- */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bench_json_sizes(cJSON *j, const bench_opts *o) {
    cJSON_AddNumberToObject(j, "B", o->B);
    cJSON_AddNumberToObject(j, "T", o->T);
    cJSON_AddNumberToObject(j, "H", o->H);
    cJSON_AddNumberToObject(j, "HV", o->HV);
    cJSON_AddNumberToObject(j, "K", o->K);
    cJSON_AddNumberToObject(j, "V", o->V);
}

bench_sizes bench_op_sizes(const bench_opts *o) {
    const size_t tokens = (size_t)o->B * o->T;
    const lina_gate gate = BENCH_OPS[o->op].gate;
    bench_sizes z;
    z.nqk = tokens * o->H * o->K;
    z.nv = tokens * o->HV * o->V;
    z.ng = gate == LINA_GATE_CONST    ? (size_t)o->HV
           : gate == LINA_GATE_SCALAR ? tokens * o->HV
           : gate == LINA_GATE_VECTOR ? tokens * o->HV * o->K
                                      : 0;
    z.nb = BENCH_OPS[o->op].update == LINA_UPDATE_DELTA ? tokens * o->HV : 0;
    return z;
}

double bench_median(double *x, int n) {
    qsort(x, n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* GFLOP/s of cblas_sgemm n x n x n with the given OpenBLAS thread count (median of 5). */
static double sgemm_gflops(int n, int threads) {
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return NAN;
    }
    uint64_t s = 7;
    for (int i = 0; i < n * n; i++) a[i] = rng_gauss(&s), b[i] = rng_gauss(&s), c[i] = 0;
    int saved = openblas_get_num_threads();
    openblas_set_num_threads(threads);
    double t[5];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    for (int r = 0; r < 5; r++) {
        double t0 = now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t[r] = now_ms() - t0;
    }
    openblas_set_num_threads(saved);
    free(a), free(b), free(c);
    return 2.0 * n * n * n / (bench_median(t, 5) * 1e6);
}

typedef struct {
    lina_ctx *ctx;
    const bench_opts *o;
    lina_attn_desc attn;
    lina_softmax_desc sm;
    buffers *b;
} bench_run;

static lina_status run_forward(bench_run *r) {
    buffers *b = r->b;
    if (r->o->op == OP_SOFTMAX)
        return lina_softmax_forward(r->ctx, &r->sm, b->q, b->k, b->v, b->o, b->lse);
    lina_attn_fwd_args a = {b->q, b->k, b->v, b->g, b->beta, NULL, b->o, NULL};
    return lina_attn_forward(r->ctx, &r->attn, &a);
}

static lina_status run_forward_backward(bench_run *r) {
    lina_status st = run_forward(r);
    if (st != LINA_OK) return st;
    buffers *b = r->b;
    if (r->o->op == OP_SOFTMAX)
        return lina_softmax_backward(r->ctx, &r->sm, b->q, b->k, b->v, b->o, b->lse, b->dout,
                                     b->dq, b->dk, b->dv);
    lina_attn_bwd_args a = {b->q, b->k, b->v, b->g, b->beta, NULL, b->dout, NULL,
                            b->dq, b->dk, b->dv, b->dg, b->dbeta, NULL};
    return lina_attn_backward(r->ctx, &r->attn, &a);
}

/* Median ms of fn over o->repeat calls after o->warmup calls; NAN (message printed) on error. */
static double time_median(bench_run *r, lina_status (*fn)(bench_run *)) {
    int n = r->o->repeat;
    double *t = malloc(sizeof(double) * n);
    if (!t) return NAN;
    for (int i = 0; i < r->o->warmup + n; i++) {
        double t0 = now_ms();
        lina_status st = fn(r);
        double dt = now_ms() - t0;
        if (st != LINA_OK) {
            fprintf(stderr, "lina bench ops: %s: %s\n", lina_status_str(st), lina_last_error());
            free(t);
            return NAN;
        }
        if (i >= r->o->warmup) t[i - r->o->warmup] = dt;
    }
    double m = bench_median(t, n);
    free(t);
    return m;
}

/* ---- report ---- */

static void print_json(const bench_opts *o, const char *form, double fwd_ms, double fwdbwd_ms,
                       double flops, double gflops, double sgemm) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "op", BENCH_OPS[o->op].name);
    cJSON_AddStringToObject(j, "form", form);
    bench_json_sizes(j, o);
    cJSON_AddNumberToObject(j, "chunk", o->chunk);
    cJSON_AddNumberToObject(j, "threads", o->threads);
    cJSON_AddNumberToObject(j, "repeat", o->repeat);
    cJSON_AddNumberToObject(j, "fwd_ms", fwd_ms);
    if (o->backward) cJSON_AddNumberToObject(j, "fwdbwd_ms", fwdbwd_ms);
    cJSON_AddNumberToObject(j, "fwd_gflop", flops * 1e-9);
    cJSON_AddNumberToObject(j, "gflops", gflops);
    cJSON_AddNumberToObject(j, "sgemm_gflops", sgemm);
    cJSON_AddNumberToObject(j, "ratio_to_sgemm", gflops / sgemm);
    double load[1] = {NAN};
    if (getloadavg(load, 1) == 1) cJSON_AddNumberToObject(j, "loadavg", load[0]);
    cJSON_AddStringToObject(j, "features", lina_features());
    char *s = cJSON_PrintUnformatted(j);
    if (s) puts(s);
    free(s);
    cJSON_Delete(j);
}

static int bench_ops(int argc, char **argv) {
    bench_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : 2;
    if (o.device == BENCH_CUDA) return bench_ops_cuda(&o);

    lina_ctx *ctx = NULL;
    if (lina_ctx_create(&ctx) != LINA_OK || lina_ctx_set_threads(ctx, o.threads) != LINA_OK) {
        fprintf(stderr, "lina bench ops: context: %s\n", lina_last_error());
        lina_ctx_free(ctx);
        return 1;
    }
    lina_ctx_set_check_finite(ctx, 0); /* time the op, not the input scan */
    buffers b;
    if (!buffers_init(&b, &o)) {
        buffers_free(&b);
        lina_ctx_free(ctx);
        return 1;
    }
    bench_run r = {ctx, &o, lina_attn_desc_default(), lina_softmax_desc_default(), &b};
    double flops;
    const char *form;
    if (o.op == OP_SOFTMAX) {
        r.sm.B = o.B, r.sm.T = o.T, r.sm.H = o.HV, r.sm.HKV = o.HV, r.sm.K = o.K, r.sm.V = o.V;
        if (o.HV != o.H) {
            fprintf(stderr, "lina bench ops: softmax takes --H only (got --HV %d)\n", o.HV);
            buffers_free(&b);
            lina_ctx_free(ctx);
            return 2;
        }
        /* causal: half of the T x T scores, QK^T and PV at 2 flops per multiply-add */
        flops = 2.0 * o.T * (double)o.T / 2 * (o.K + o.V) * o.H * o.B;
        form = "softmax";
    } else {
        lina_attn_desc *d = &r.attn;
        d->B = o.B, d->T = o.T, d->H = o.H, d->HV = o.HV, d->K = o.K, d->V = o.V;
        d->gate = BENCH_OPS[o.op].gate, d->update = BENCH_OPS[o.op].update;
        d->form = o.form, d->chunk = o.chunk;
        lina_form resolved = lina_attn_resolve_form(d);
        flops = lina_attn_flops(d, resolved);
        form = BENCH_FORM_NAMES[resolved];
    }

    /* The ceiling: the better of two sgemm measurements, before and after the op
     * (on a shared machine a single one is easily caught by a neighbour's burst). */
    double sgemm = sgemm_gflops(1024, o.threads);
    double fwd_ms = time_median(&r, run_forward), fwdbwd_ms = NAN;
    if (!isnan(fwd_ms) && o.backward) fwdbwd_ms = time_median(&r, run_forward_backward);
    double sgemm_after = sgemm_gflops(1024, o.threads);
    if (sgemm_after > sgemm || isnan(sgemm)) sgemm = sgemm_after;
    int failed = isnan(fwd_ms) || (o.backward && isnan(fwdbwd_ms));
    if (!failed) {
        double gflops = flops / (fwd_ms * 1e6);
        if (o.json) {
            print_json(&o, form, fwd_ms, fwdbwd_ms, flops, gflops, sgemm);
        } else {
            printf("op %s  form %s  B=%d T=%d H=%d HV=%d K=%d V=%d  threads %d  (median of %d)\n",
                   BENCH_OPS[o.op].name, form, o.B, o.T, o.H, o.HV, o.K, o.V, o.threads, o.repeat);
            printf("  forward           %10.3f ms   %8.2f GFLOP/s\n", fwd_ms, gflops);
            if (o.backward) printf("  forward+backward  %10.3f ms\n", fwdbwd_ms);
            printf("  sgemm 1024^3      %10.2f GFLOP/s  -> forward at %.1f%% of sgemm\n", sgemm,
                   100.0 * gflops / sgemm);
        }
    }
    buffers_free(&b);
    lina_ctx_free(ctx);
    return failed ? 1 : 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "ops")) return bench_ops(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        bench_usage(stdout);
        return 0;
    }
    fprintf(stderr, "lina bench: expected a subcommand 'ops', got '%s'\n", argc >= 2 ? argv[1] : "(none)");
    bench_usage(stderr);
    return 2;
}
