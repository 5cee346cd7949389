/* `lina bench ops --device cuda`: one attention op on device buffers through
 * lina_cuda_attn_forward / lina_cuda_attn_backward, timed with CUDA events.
 * Only the public API (include/lina/cuda.h): no CUDA headers here, so this
 * file builds the same with and without CUDA (then the first call reports
 * "built without CUDA"). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_ops.h"
#include "lina.h"

#define L2_FLUSH_BYTES ((size_t)256 << 20) /* written before every repetition: evicts the L2 (50 MB on an H200) */
#define H200_TFLOPS 790.0                  /* measured bf16 dense mma ceiling of the H200 (DESIGN.md section 5) */
#define H200_TBS 4.3                       /* measured copy bandwidth of the H200, TB/s */

static const char *dtype_name(lina_dtype t) {
    return t == LINA_DTYPE_BF16 ? "bf16" : t == LINA_DTYPE_F16 ? "fp16" : "fp32";
}

/* Every device buffer of one run; NULL where the op has no such tensor. */
typedef struct {
    size_t nqk, nv, ng, nb; /* elements of q (= k), v (= o), gates, beta */
    size_t esize;           /* bytes per element of q, k, v, o (dtype) */
    void *q, *k, *v, *o, *dout, *dq, *dk, *dv;
    float *g, *beta, *dg, *dbeta;
    void *flush;
} dev_buffers;

static void dev_buffers_free(dev_buffers *b) {
    void *all[] = {b->q, b->k, b->v, b->o, b->dout, b->dq, b->dk, b->dv, b->g, b->beta, b->dg, b->dbeta, b->flush};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) lina_cuda_free(all[i]);
    memset(b, 0, sizeof *b);
}

/* Allocate every buffer the run needs; the first failure names the tensor. */
static lina_status dev_buffers_alloc(dev_buffers *b, const bench_opts *o) {
    memset(b, 0, sizeof *b);
    b->esize = o->dtype == LINA_DTYPE_F32 ? 4 : 2;
    const bench_sizes sz = bench_op_sizes(o);
    b->nqk = sz.nqk, b->nv = sz.nv, b->ng = sz.ng, b->nb = sz.nb;
    struct {
        void **p;
        size_t bytes;
        int needed;
    } plan[] = {
        {&b->q, b->nqk * b->esize, 1},
        {&b->k, b->nqk * b->esize, 1},
        {&b->v, b->nv * b->esize, 1},
        {&b->o, b->nv * b->esize, 1},
        {(void **)&b->g, b->ng * 4, 1},
        {(void **)&b->beta, b->nb * 4, 1},
        {&b->flush, L2_FLUSH_BYTES, 1},
        {&b->dout, b->nv * b->esize, o->backward},
        {&b->dq, b->nqk * b->esize, o->backward},
        {&b->dk, b->nqk * b->esize, o->backward},
        {&b->dv, b->nv * b->esize, o->backward},
        {(void **)&b->dg, b->ng * 4, o->backward},
        {(void **)&b->dbeta, b->nb * 4, o->backward},
    };
    for (size_t i = 0; i < sizeof plan / sizeof *plan; i++) {
        if (!plan[i].needed) continue;
        lina_status st = lina_cuda_malloc(plan[i].p, plan[i].bytes);
        if (st != LINA_OK) return st;
    }
    return LINA_OK;
}

/* The CPU path's distributions, drawn on the device: q, k, v, dout ~ N(0,1);
 * delta ops get L2-normalized q, k rows and beta = sigmoid(N(0,1)); scalar and
 * vector log gates ~ U[-0.1, 0); RetNet's constant decay is log(1 - 2^(-5-h)). */
static lina_status dev_buffers_fill(dev_buffers *b, const bench_opts *o) {
    const lina_gate gate = BENCH_OPS[o->op].gate;
    const int delta = BENCH_OPS[o->op].update == LINA_UPDATE_DELTA;
    const size_t tokens = (size_t)o->B * o->T;
    lina_status st;
#define TRY(x)                                                                                                \
    do {                                                                                                      \
        if ((st = (x)) != LINA_OK) return st;                                                                 \
    } while (0)
    TRY(lina_cuda_fill_random(b->q, tokens * o->H, o->K, o->dtype, LINA_CUDA_RANDOM_NORMAL, 0, 0, delta, 1, NULL));
    TRY(lina_cuda_fill_random(b->k, tokens * o->H, o->K, o->dtype, LINA_CUDA_RANDOM_NORMAL, 0, 0, delta, 2, NULL));
    TRY(lina_cuda_fill_random(b->v, tokens * o->HV, o->V, o->dtype, LINA_CUDA_RANDOM_NORMAL, 0, 0, 0, 3, NULL));
    if (b->dout)
        TRY(lina_cuda_fill_random(b->dout, tokens * o->HV, o->V, o->dtype, LINA_CUDA_RANDOM_NORMAL, 0, 0, 0, 4, NULL));
    if (delta) TRY(lina_cuda_fill_random(b->beta, tokens, o->HV, LINA_DTYPE_F32, LINA_CUDA_RANDOM_SIGMOID, 0, 0, 0, 5, NULL));
    if (gate == LINA_GATE_CONST) {
        float g[4096]; /* HV <= 4096 (parse_opts) */
        for (int h = 0; h < o->HV; h++) g[h] = (float)log(1.0 - exp2(-5.0 - h));
        TRY(lina_cuda_memcpy_h2d(b->g, g, sizeof(float) * o->HV));
    } else if (gate != LINA_GATE_NONE) {
        TRY(lina_cuda_fill_random(b->g, b->ng, 1, LINA_DTYPE_F32, LINA_CUDA_RANDOM_UNIFORM, -0.1f, 0.0f, 0, 6, NULL));
    }
#undef TRY
    return lina_cuda_synchronize(); /* a failed fill kernel reports here */
}

typedef struct {
    const bench_opts *o;
    lina_attn_desc d;
    dev_buffers *b;
    lina_cuda_timer *timer;
    double *times; /* o->repeat */
} cuda_run;

static lina_status run_forward(cuda_run *r) {
    const dev_buffers *b = r->b;
    lina_cuda_attn_fwd_args a = {b->q, b->k, b->v, b->g, b->beta, NULL, b->o, NULL};
    return lina_cuda_attn_forward(&r->d, r->o->dtype, &a, NULL);
}

static lina_status run_forward_backward(cuda_run *r) {
    lina_status st = run_forward(r);
    if (st != LINA_OK) return st;
    const dev_buffers *b = r->b;
    lina_cuda_attn_bwd_args a = {b->q, b->k, b->v, b->g, b->beta, NULL, b->dout, NULL,
                                 b->dq, b->dk, b->dv, r->o->fixed_gates ? NULL : b->dg, b->dbeta, NULL};
    return lina_cuda_attn_backward(&r->d, r->o->dtype, &a, NULL);
}

/* Median and minimum ms of fn over o->repeat repetitions after o->warmup, each
 * one after the L2-evicting write and between two events on the default
 * stream. Returns the first error (its message is in lina_last_error()). */
static lina_status time_cuda(cuda_run *r, lina_status (*fn)(cuda_run *), double *median_ms, double *min_ms) {
    const int n = r->o->repeat;
    double *t = r->times;
    lina_status st = LINA_OK;
    for (int i = 0; i < r->o->warmup + n && st == LINA_OK; i++) {
        float ms = 0.0f;
        st = lina_cuda_memset(r->b->flush, i & 0xff, L2_FLUSH_BYTES, NULL);
        if (st == LINA_OK) st = lina_cuda_timer_start(r->timer, NULL);
        if (st == LINA_OK) st = fn(r);
        if (st == LINA_OK) st = lina_cuda_timer_stop(r->timer, NULL, &ms);
        if (st == LINA_OK && i >= r->o->warmup) t[i - r->o->warmup] = ms;
    }
    if (st == LINA_OK) {
        *min_ms = t[0];
        for (int i = 1; i < n; i++)
            if (t[i] < *min_ms) *min_ms = t[i];
        *median_ms = bench_median(t, n);
    }
    return st;
}

/* ---- report ---- */

typedef struct {
    const char *form;
    double flops;                   /* forward, lina_attn_flops */
    double fwd_bytes, fwdbwd_bytes; /* minimum traffic */
    double fwd_ms, fwd_min_ms, fwdbwd_ms, fwdbwd_min_ms;
} cuda_result;

static void print_json(const bench_opts *o, const lina_cuda_device *dev, const cuda_result *r) {
    const double tflops = r->flops / (r->fwd_ms * 1e9), tbs = r->fwd_bytes / (r->fwd_ms * 1e9);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "op", BENCH_OPS[o->op].name);
    cJSON_AddStringToObject(j, "device", "cuda");
    cJSON_AddStringToObject(j, "device_name", dev->name);
    cJSON_AddNumberToObject(j, "sm_count", dev->sm_count);
    cJSON_AddStringToObject(j, "dtype", dtype_name(o->dtype));
    cJSON_AddStringToObject(j, "form", r->form);
    bench_json_sizes(j, o);
    cJSON_AddNumberToObject(j, "repeat", o->repeat);
    cJSON_AddNumberToObject(j, "warmup", o->warmup);
    cJSON_AddNumberToObject(j, "l2_flush_mb", (double)(L2_FLUSH_BYTES >> 20));
    cJSON_AddNumberToObject(j, "fwd_ms", r->fwd_ms);
    cJSON_AddNumberToObject(j, "fwd_min_ms", r->fwd_min_ms);
    cJSON_AddNumberToObject(j, "fwd_gflop", r->flops * 1e-9);
    cJSON_AddNumberToObject(j, "fwd_tflops", tflops);
    cJSON_AddNumberToObject(j, "fwd_bytes", r->fwd_bytes);
    cJSON_AddNumberToObject(j, "fwd_gbs", r->fwd_bytes / (r->fwd_ms * 1e6));
    if (o->backward) {
        cJSON_AddBoolToObject(j, "fixed_gates", o->fixed_gates);
        cJSON_AddNumberToObject(j, "fwdbwd_ms", r->fwdbwd_ms);
        cJSON_AddNumberToObject(j, "fwdbwd_min_ms", r->fwdbwd_min_ms);
        cJSON_AddNumberToObject(j, "fwdbwd_bytes", r->fwdbwd_bytes);
        cJSON_AddNumberToObject(j, "fwdbwd_gbs", r->fwdbwd_bytes / (r->fwdbwd_ms * 1e6));
    }
    if (strstr(dev->name, "H200")) { /* fractions of this card's measured ceilings */
        cJSON_AddNumberToObject(j, "h200_peak_tflops_bf16", H200_TFLOPS);
        cJSON_AddNumberToObject(j, "h200_peak_tbs", H200_TBS);
        if (o->dtype != LINA_DTYPE_F32) cJSON_AddNumberToObject(j, "fwd_frac_peak_tflops", tflops / H200_TFLOPS);
        cJSON_AddNumberToObject(j, "fwd_frac_peak_tbs", tbs / H200_TBS);
    }
    cJSON_AddStringToObject(j, "features", lina_features());
    char *s = cJSON_PrintUnformatted(j);
    if (s) puts(s);
    free(s);
    cJSON_Delete(j);
}

static void print_text(const bench_opts *o, const lina_cuda_device *dev, const cuda_result *r) {
    printf("op %s  form %s  dtype %s  B=%d T=%d H=%d HV=%d K=%d V=%d  %s (%d SMs)  (median of %d)\n",
           BENCH_OPS[o->op].name, r->form, dtype_name(o->dtype), o->B, o->T, o->H, o->HV, o->K, o->V, dev->name,
           dev->sm_count, o->repeat);
    printf("  forward           %10.4f ms (min %.4f)   %8.2f TFLOP/s   %8.1f GB/s\n", r->fwd_ms, r->fwd_min_ms,
           r->flops / (r->fwd_ms * 1e9), r->fwd_bytes / (r->fwd_ms * 1e6));
    if (o->backward)
        printf("  forward+backward  %10.4f ms (min %.4f)                     %8.1f GB/s\n", r->fwdbwd_ms,
               r->fwdbwd_min_ms, r->fwdbwd_bytes / (r->fwdbwd_ms * 1e6));
}

/* ---- the command ---- */

int bench_ops_cuda(const bench_opts *o) {
    if (o->op == OP_SOFTMAX) {
        fprintf(stderr, "lina bench ops: --op softmax is not supported on cuda (no CUDA softmax kernel; "
                        "use --device cpu)\n");
        return 2;
    }
    lina_cuda_device dev;
    if (lina_cuda_device_info(&dev) != LINA_OK) {
        fprintf(stderr, "lina bench ops: --device cuda: %s\n", lina_last_error());
        return 1;
    }
    cuda_run r = {o, lina_attn_desc_default(), NULL, NULL, NULL};
    lina_attn_desc *d = &r.d;
    d->B = o->B, d->T = o->T, d->H = o->H, d->HV = o->HV, d->K = o->K, d->V = o->V;
    d->gate = BENCH_OPS[o->op].gate, d->update = BENCH_OPS[o->op].update;
    d->form = o->form, d->chunk = o->chunk;
    /* the form the kernels run (the dispatch in src/cuda/cuda_attn.cu): chunkwise, except
     * --form recurrent and vector gates with fp32 inputs, with the delta rule (KDA) or with
     * LINA_CUDA_VECTOR_IMPL=recurrent (token by token); PARALLEL is refused by the library */
    const char *vec_env = getenv("LINA_CUDA_VECTOR_IMPL");
    const int vec_recurrent = d->gate == LINA_GATE_VECTOR &&
                              (o->dtype == LINA_DTYPE_F32 || d->update == LINA_UPDATE_DELTA ||
                               (vec_env && !strcmp(vec_env, "recurrent")));
    lina_form ran = LINA_FORM_CHUNK;
    if (o->form == LINA_FORM_RECURRENT || vec_recurrent)
        ran = LINA_FORM_RECURRENT;
    else if (o->form == LINA_FORM_PARALLEL)
        ran = LINA_FORM_PARALLEL;
    cuda_result res = {BENCH_FORM_NAMES[ran], lina_attn_flops(d, ran), 0, 0, NAN, NAN, NAN, NAN};

    r.times = malloc(sizeof(double) * o->repeat);
    if (!r.times) {
        fprintf(stderr, "lina bench ops: out of host memory for %d timings\n", o->repeat);
        return 1;
    }
    dev_buffers b;
    r.b = &b;
    int rc = 1;
    lina_status st = dev_buffers_alloc(&b, o);
    if (st == LINA_OK) st = dev_buffers_fill(&b, o);
    if (st == LINA_OK) st = lina_cuda_timer_create(&r.timer);
    if (st == LINA_OK) st = time_cuda(&r, run_forward, &res.fwd_ms, &res.fwd_min_ms);
    if (st == LINA_OK && o->backward) st = time_cuda(&r, run_forward_backward, &res.fwdbwd_ms, &res.fwdbwd_min_ms);
    if (st == LINA_OK) {
        /* forward: read q, k, v, g, beta, write o; backward: read q, k, v, g, beta, dout,
         * write dq, dk, dv, dg, dbeta */
        const double io16 = (double)b.esize * (2.0 * b.nqk + b.nv), io32 = 4.0 * (b.ng + b.nb);
        res.fwd_bytes = io16 + (double)b.esize * b.nv + io32;
        res.fwdbwd_bytes = res.fwd_bytes + (io16 + (double)b.esize * b.nv + io32) + (io16 + io32);
        if (o->json) print_json(o, &dev, &res);
        else print_text(o, &dev, &res);
        rc = 0;
    } else {
        fprintf(stderr, "lina bench ops: %s: %s\n", lina_status_str(st), lina_last_error());
    }
    lina_cuda_timer_free(r.timer);
    dev_buffers_free(&b);
    free(r.times);
    return rc;
}
