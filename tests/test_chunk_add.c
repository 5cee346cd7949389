/* The chunkwise form of the additive update against the recurrent reference,
 * through the public API: outputs, final states and every gradient on odd
 * sizes, gates from ~0 down to -20 per token, normalize, varlen with an empty
 * sequence, grouped heads, odd chunk sizes, thread-count independence
 * (bitwise), and a sequence fed in two pieces with the state carried. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "util/check.h"

#define TOL 1e-5

typedef struct {
    lina_attn_desc d;
    float *q, *k, *v, *g, *h0, *dout, *dht;
    size_t nqk, nv, ng, ns;
} problem;

/* What one run of a form produces: forward outputs and all gradients. */
typedef struct {
    float *o, *ht, *dq, *dk, *dv, *dg, *dh0;
    lina_status fwd, bwd;
} result;

static int value_heads(const lina_attn_desc *d) { return d->HV ? d->HV : d->H; }

/* Log-gates uniform in [gmin, 0]. */
static void problem_init(problem *p, lina_attn_desc d, uint64_t seed, float gmin) {
    test_rng r;
    rng_seed(&r, seed);
    p->d = d;
    int HV = value_heads(&d);
    size_t tokens = (size_t)d.B * d.T;
    p->nqk = tokens * d.H * d.K;
    p->nv = tokens * HV * d.V;
    p->ng = lina_attn_gate_numel(&d);
    p->ns = (size_t)lina_attn_n_states(&d) * HV * d.K * lina_attn_state_cols(&d);
    p->q = alloc_floats(p->nqk);
    p->k = alloc_floats(p->nqk);
    p->v = alloc_floats(p->nv);
    p->g = alloc_floats(p->ng);
    p->h0 = alloc_floats(p->ns);
    p->dout = alloc_floats(p->nv);
    p->dht = alloc_floats(p->ns);
    fill_normal(&r, p->q, p->nqk, 1.0f);
    fill_normal(&r, p->k, p->nqk, 1.0f);
    if (d.normalize) /* positive features keep the denominator away from 0 */
        for (size_t i = 0; i < p->nqk; i++) p->q[i] = fabsf(p->q[i]) + 0.1f, p->k[i] = fabsf(p->k[i]) + 0.1f;
    fill_normal(&r, p->v, p->nv, 1.0f);
    fill_uniform(&r, p->g, p->ng, gmin, 0.0f);
    fill_normal(&r, p->h0, p->ns, 0.5f);
    if (d.normalize)
        for (size_t i = d.V; i < p->ns; i += d.V + 1) p->h0[i] = fabsf(p->h0[i]) + 0.5f;
    fill_normal(&r, p->dout, p->nv, 1.0f);
    fill_normal(&r, p->dht, p->ns, 1.0f);
}

static void problem_free(problem *p) {
    free(p->q), free(p->k), free(p->v), free(p->g), free(p->h0), free(p->dout), free(p->dht);
}

static void result_free(result *r) {
    free(r->o), free(r->ht), free(r->dq), free(r->dk), free(r->dv), free(r->dg), free(r->dh0);
}

/* Forward and backward of p in the given form with `threads` threads. */
static result run(const problem *p, lina_form form, int threads, int backward) {
    result r;
    memset(&r, 0, sizeof r);
    lina_ctx *ctx = NULL;
    if (lina_ctx_create(&ctx) != LINA_OK) {
        r.fwd = r.bwd = LINA_ERR_OOM;
        return r;
    }
    lina_ctx_set_threads(ctx, threads);
    lina_attn_desc d = p->d;
    d.form = form;
    r.o = alloc_floats(p->nv), r.ht = alloc_floats(p->ns);
    lina_attn_fwd_args a = {p->q, p->k, p->v, p->g, NULL, p->h0, r.o, r.ht};
    r.fwd = lina_attn_forward(ctx, &d, &a);
    r.bwd = LINA_OK;
    if (backward) {
        r.dq = alloc_floats(p->nqk), r.dk = alloc_floats(p->nqk), r.dv = alloc_floats(p->nv);
        r.dg = alloc_floats(p->ng + 1), r.dh0 = alloc_floats(p->ns);
        lina_attn_bwd_args b = {p->q, p->k, p->v, p->g, NULL, p->h0, p->dout, p->dht,
                                r.dq, r.dk, r.dv, r.dg, NULL, r.dh0};
        r.bwd = lina_attn_backward(ctx, &d, &b);
    }
    lina_ctx_free(ctx);
    return r;
}

static const char *gate_name(lina_gate g) {
    static const char *names[] = {"none", "const", "scalar", "vector"};
    return names[g];
}

/* Chunk vs recurrent on p: o, ht, dq, dk, dv, dg, dh0 within TOL. */
static void compare_forms(const char *tag, const problem *p, int threads) {
    char name[200];
    result c = run(p, LINA_FORM_CHUNK, threads, 1), r = run(p, LINA_FORM_RECURRENT, 1, 1);
    snprintf(name, sizeof name, "chunk forward+backward run [%s]", tag);
    test_report(c.fwd == LINA_OK && c.bwd == LINA_OK && r.fwd == LINA_OK && r.bwd == LINA_OK, name,
                "%s", lina_last_error());
#define CMP(buf, n)                                                                                \
    snprintf(name, sizeof name, "chunk == recurrent: %s [%s]", #buf, tag);                         \
    check_close(name, c.buf, r.buf, n, TOL);
    CMP(o, p->nv) CMP(ht, p->ns) CMP(dq, p->nqk) CMP(dk, p->nqk) CMP(dv, p->nv) CMP(dh0, p->ns)
    if (p->d.gate != LINA_GATE_NONE) { CMP(dg, p->ng) }
#undef CMP
    result_free(&c), result_free(&r);
}

typedef struct {
    int B, T, H, HV, K, V, chunk;
    float gmin;
} shape;

static void sweep(void) {
    static const shape shapes[] = {
        {2, 1, 1, 0, 60, 64, 64, -1.0f},     /* one token */
        {1, 63, 2, 0, 64, 100, 64, -20.0f},  /* one partial chunk, strong decay */
        {2, 65, 1, 2, 100, 60, 16, -3.0f},   /* grouped heads, chunk 16 */
        {1, 65, 1, 0, 64, 64, 37, -0.05f},   /* odd chunk, gates near 0 */
        {1, 1000, 1, 0, 128, 128, 64, -1.0f}, /* long */
        {1, 1000, 1, 0, 64, 60, 64, -20.0f}, /* long, strong decay */
        {2, 9, 1, 0, 3, 5, 1, -1.0f},        /* tiny dims, chunk 1 */
        {1, 23, 1, 3, 7, 17, 5, -2.0f},      /* tiny dims, 3 value heads per key head */
        {1, 300, 1, 0, 33, 20, 128, -0.3f},  /* chunk 128 */
        {2, 67, 2, 0, 8, 8, 64, -0.5f},      /* the shape of the layer tests */
    };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int gate = LINA_GATE_NONE; gate <= LINA_GATE_VECTOR; gate++) {
            const shape *sh = &shapes[s];
            lina_attn_desc d = lina_attn_desc_default();
            d.B = sh->B, d.T = sh->T, d.H = sh->H, d.HV = sh->HV, d.K = sh->K, d.V = sh->V;
            d.chunk = sh->chunk, d.gate = (lina_gate)gate;
            problem p;
            problem_init(&p, d, 100 + s * 4 + gate, sh->gmin);
            char tag[160];
            snprintf(tag, sizeof tag, "%s B%d T%d H%d HV%d K%d V%d C%d g>=%g", gate_name(d.gate),
                     d.B, d.T, d.H, value_heads(&d), d.K, d.V, d.chunk, sh->gmin);
            compare_forms(tag, &p, 1);
            problem_free(&p);
        }
}

/* Vector gates whose chunks take each path of the score computation: one
 * factorized chunk (mild), factorized sub-chunks (medium), direct diagonal
 * blocks (strong), and a mix of channels. */
static void vector_paths(void) {
    static const float gmins[] = {-0.5f, -3.0f, -20.0f};
    for (int i = 0; i < 4; i++) {
        lina_attn_desc d = lina_attn_desc_default();
        d.T = 150, d.H = 1, d.K = 60, d.V = 64, d.gate = LINA_GATE_VECTOR;
        problem p;
        problem_init(&p, d, 300 + i, i < 3 ? gmins[i] : -1.0f);
        if (i == 3) /* channel c decays at most by 20 c / K per token */
            for (size_t t = 0; t < p.ng; t++) p.g[t] *= 20.0f * (float)(t % d.K) / d.K;
        char tag[80];
        snprintf(tag, sizeof tag, "vector paths %s", i < 3 ? (i == 0 ? "mild" : i == 1 ? "medium" : "strong") : "mixed channels");
        compare_forms(tag, &p, 1);
        problem_free(&p);
    }
}

static void normalized(void) {
    for (int gate = LINA_GATE_NONE; gate <= LINA_GATE_VECTOR; gate += 2) {
        lina_attn_desc d = lina_attn_desc_default();
        d.B = 2, d.T = 77, d.H = 2, d.K = 64, d.V = 60, d.normalize = 1, d.gate = (lina_gate)gate;
        d.chunk = 16;
        problem p;
        problem_init(&p, d, 500 + gate, -0.5f);
        char tag[64];
        snprintf(tag, sizeof tag, "normalize %s", gate_name(d.gate));
        compare_forms(tag, &p, 1);
        problem_free(&p);
    }
}

static void varlen(void) {
    static int64_t cu[5] = {0, 70, 70, 71, 200};
    for (int gate = LINA_GATE_NONE; gate <= LINA_GATE_VECTOR; gate++) {
        lina_attn_desc d = lina_attn_desc_default();
        d.T = 200, d.H = 2, d.HV = 4, d.K = 64, d.V = 64, d.gate = (lina_gate)gate;
        d.cu_seqlens = cu, d.n_seqs = 4;
        problem p;
        problem_init(&p, d, 600 + gate, -2.0f);
        char tag[64];
        snprintf(tag, sizeof tag, "varlen with empty sequence, %s", gate_name(d.gate));
        compare_forms(tag, &p, 2);
        problem_free(&p);
    }
}

static int same_bits(const float *a, const float *b, size_t n) {
    return (a == NULL && b == NULL) || (a && b && memcmp(a, b, sizeof(float) * n) == 0);
}

/* One empty sequence on two threads (the job parallelizes inside): ht = h0, dh0 = dht. */
static void empty_alone(void) {
    static int64_t cu[2] = {0, 0};
    lina_attn_desc d = lina_attn_desc_default();
    d.T = 0, d.H = 1, d.K = 16, d.V = 8, d.gate = LINA_GATE_VECTOR, d.form = LINA_FORM_CHUNK;
    d.cu_seqlens = cu, d.n_seqs = 1;
    problem p;
    problem_init(&p, d, 650, -1.0f);
    result r = run(&p, LINA_FORM_CHUNK, 2, 1);
    test_report(r.fwd == LINA_OK && r.bwd == LINA_OK && same_bits(r.ht, p.h0, p.ns) &&
                    same_bits(r.dh0, p.dht, p.ns),
                "empty sequence alone: ht == h0, dh0 == dht", "%s", lina_last_error());
    result_free(&r);
    problem_free(&p);
}

/* 1 vs 2 threads: bitwise identical (one job: chunks in parallel; four jobs: jobs in parallel). */
static void thread_independence(void) {
    for (int H = 1; H <= 4; H += 3)
        for (int gate = LINA_GATE_NONE; gate <= LINA_GATE_VECTOR; gate++) {
            lina_attn_desc d = lina_attn_desc_default();
            d.T = 333, d.H = H, d.K = 64, d.V = 48, d.gate = (lina_gate)gate;
            problem p;
            problem_init(&p, d, 700 + gate, -1.5f);
            result a = run(&p, LINA_FORM_CHUNK, 1, 1), b = run(&p, LINA_FORM_CHUNK, 2, 1);
            int ok = a.fwd == LINA_OK && b.fwd == LINA_OK && a.bwd == LINA_OK && b.bwd == LINA_OK &&
                     same_bits(a.o, b.o, p.nv) && same_bits(a.ht, b.ht, p.ns) &&
                     same_bits(a.dq, b.dq, p.nqk) && same_bits(a.dk, b.dk, p.nqk) &&
                     same_bits(a.dv, b.dv, p.nv) && same_bits(a.dh0, b.dh0, p.ns) &&
                     same_bits(a.dg, b.dg, p.ng);
            char name[96];
            snprintf(name, sizeof name, "1 thread == 2 threads bitwise [%s H%d]", gate_name(d.gate), H);
            test_report(ok, name, "outputs or gradients differ");
            result_free(&a), result_free(&b);
            problem_free(&p);
        }
}

/* VECTOR gates, many heads (the dispatcher walks up to 16 heads in lock-step,
 * so 17 heads make two groups): bitwise equal to each head run on its own. */
static void heads_lockstep(void) {
    lina_attn_desc d = lina_attn_desc_default();
    d.B = 2, d.T = 150, d.H = 17, d.K = 12, d.V = 10, d.chunk = 37, d.gate = LINA_GATE_VECTOR;
    d.form = LINA_FORM_CHUNK;
    problem p;
    problem_init(&p, d, 950, -2.0f);
    result all = run(&p, LINA_FORM_CHUNK, 1, 0);
    int ok = all.fwd == LINA_OK, H = d.H, K = d.K, V = d.V;
    size_t tokens = (size_t)d.B * d.T;
    for (int h = 0; h < H && ok; h++) {
        lina_attn_desc d1 = d;
        d1.H = 1;
        problem one;
        problem_init(&one, d1, 951, -2.0f); /* right sizes; filled with head h below */
        for (size_t t = 0; t < tokens; t++) {
            memcpy(one.q + t * K, p.q + (t * H + h) * K, sizeof(float) * K);
            memcpy(one.k + t * K, p.k + (t * H + h) * K, sizeof(float) * K);
            memcpy(one.g + t * K, p.g + (t * H + h) * K, sizeof(float) * K);
            memcpy(one.v + t * V, p.v + (t * H + h) * V, sizeof(float) * V);
        }
        for (int b = 0; b < d.B; b++)
            memcpy(one.h0 + (size_t)b * K * V, p.h0 + ((size_t)b * H + h) * K * V,
                   sizeof(float) * K * V);
        result r = run(&one, LINA_FORM_CHUNK, 1, 0);
        ok = r.fwd == LINA_OK;
        for (size_t t = 0; t < tokens && ok; t++)
            ok = same_bits(r.o + t * V, all.o + (t * H + h) * V, V);
        for (int b = 0; b < d.B && ok; b++)
            ok = same_bits(r.ht + (size_t)b * K * V, all.ht + ((size_t)b * H + h) * K * V,
                           (size_t)K * V);
        result_free(&r);
        problem_free(&one);
    }
    test_report(ok, "17 vector-gate heads in lock-step == each head alone, bitwise",
                "o or ht of some head differs");
    result_free(&all);
    problem_free(&p);
}

/* The sequence fed as [0, cut) and [cut, T) with the state carried == the whole. */
static void pieces(void) {
    for (int gate = LINA_GATE_NONE; gate <= LINA_GATE_VECTOR; gate++) {
        lina_attn_desc d = lina_attn_desc_default();
        d.T = 300, d.H = 1, d.K = 64, d.V = 64, d.gate = (lina_gate)gate, d.form = LINA_FORM_CHUNK;
        problem p;
        problem_init(&p, d, 800 + gate, -1.0f);
        float *o_whole = alloc_floats(p.nv), *ht_whole = alloc_floats(p.ns);
        float *o = alloc_floats(p.nv), *state = alloc_floats(p.ns);
        lina_attn_fwd_args a = {p.q, p.k, p.v, p.g, NULL, p.h0, o_whole, ht_whole};
        lina_status st = lina_attn_forward(NULL, &d, &a);
        int cut = 101, K = d.K, V = d.V;
        lina_attn_desc d1 = d, d2 = d;
        d1.T = cut, d2.T = d.T - cut;
        size_t gk = gate == LINA_GATE_VECTOR ? (size_t)K : 1;
        const float *g2 = gate == LINA_GATE_CONST || gate == LINA_GATE_NONE ? p.g : p.g + cut * gk;
        lina_attn_fwd_args a1 = {p.q, p.k, p.v, p.g, NULL, p.h0, o, state};
        lina_attn_fwd_args a2 = {p.q + cut * K, p.k + cut * K, p.v + cut * V, g2, NULL, state,
                                 o + cut * V, state};
        if (st == LINA_OK) st = lina_attn_forward(NULL, &d1, &a1);
        if (st == LINA_OK) st = lina_attn_forward(NULL, &d2, &a2);
        char name[96];
        snprintf(name, sizeof name, "two pieces == whole: o [%s]", gate_name(d.gate));
        if (st != LINA_OK) test_report(0, name, "%s", lina_last_error());
        else check_close(name, o, o_whole, p.nv, TOL);
        snprintf(name, sizeof name, "two pieces == whole: state [%s]", gate_name(d.gate));
        check_close(name, state, ht_whole, p.ns, TOL);
        free(o_whole), free(ht_whole), free(o), free(state);
        problem_free(&p);
    }
}

/* No h0 and no dht (NULL): zeros. */
static void no_states(void) {
    lina_attn_desc d = lina_attn_desc_default();
    d.T = 130, d.H = 1, d.K = 64, d.V = 64, d.gate = LINA_GATE_SCALAR;
    problem p;
    problem_init(&p, d, 900, -1.0f);
    free(p.h0), free(p.dht);
    p.h0 = p.dht = NULL;
    compare_forms("no h0, no dht", &p, 1);
    problem_free(&p);
}

int main(void) {
    sweep();
    vector_paths();
    normalized();
    varlen();
    empty_alone();
    thread_independence();
    heads_lockstep();
    pieces();
    no_states();
    return test_finish();
}
