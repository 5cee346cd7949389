/* The recurrent reference (the spec) and the dispatcher: closed forms, finite
 * differences of the backward, decoding steps, pieces, bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "util/check.h"

typedef struct {
    lina_attn_desc d;
    float *q, *k, *v, *g, *beta, *h0, *o, *ht, *dout, *dht;
    size_t nqk, nv, ng, nb, ns;
} problem;

static void problem_init(problem *p, lina_attn_desc d, uint64_t seed, float gmin) {
    test_rng r;
    rng_seed(&r, seed);
    p->d = d;
    int HV = d.HV ? d.HV : d.H;
    size_t tokens = (size_t)d.B * d.T;
    p->nqk = tokens * d.H * d.K;
    p->nv = tokens * HV * d.V;
    p->ng = lina_attn_gate_numel(&d);
    p->nb = tokens * HV;
    p->ns = (size_t)lina_attn_n_states(&d) * HV * d.K * lina_attn_state_cols(&d);
    p->q = alloc_floats(p->nqk);
    p->k = alloc_floats(p->nqk);
    p->v = alloc_floats(p->nv);
    p->g = alloc_floats(p->ng);
    p->beta = alloc_floats(p->nb);
    p->h0 = alloc_floats(p->ns);
    p->o = alloc_floats(p->nv);
    p->ht = alloc_floats(p->ns);
    p->dout = alloc_floats(p->nv);
    p->dht = alloc_floats(p->ns);
    fill_normal(&r, p->q, p->nqk, 1.0f);
    fill_normal(&r, p->k, p->nqk, 1.0f);
    if (d.update == LINA_UPDATE_DELTA) /* L2-normalized keys as DeltaNet uses them */
        for (size_t t = 0; t < p->nqk / d.K; t++) {
            double n = 0;
            for (int i = 0; i < d.K; i++) n += p->k[t * d.K + i] * p->k[t * d.K + i];
            for (int i = 0; i < d.K; i++) p->k[t * d.K + i] /= (float)sqrt(n);
        }
    if (d.normalize) /* positive features keep the denominator away from 0 */
        for (size_t i = 0; i < p->nqk; i++) p->q[i] = fabsf(p->q[i]) + 0.1f, p->k[i] = fabsf(p->k[i]) + 0.1f;
    fill_normal(&r, p->v, p->nv, 1.0f);
    fill_uniform(&r, p->g, p->ng, gmin, 0.0f);
    fill_uniform(&r, p->beta, p->nb, 0.05f, 0.95f);
    fill_normal(&r, p->h0, p->ns, 0.5f);
    if (d.normalize) /* z column of the state must stay positive */
        for (size_t i = d.V; i < p->ns; i += d.V + 1) p->h0[i] = fabsf(p->h0[i]) + 0.5f;
    fill_normal(&r, p->dout, p->nv, 1.0f);
    fill_normal(&r, p->dht, p->ns, 1.0f);
}

static void problem_free(problem *p) {
    free(p->q), free(p->k), free(p->v), free(p->g), free(p->beta), free(p->h0);
    free(p->o), free(p->ht), free(p->dout), free(p->dht);
}

static lina_status forward(problem *p) {
    lina_attn_fwd_args a = {p->q, p->k, p->v, p->g, p->beta, p->h0, p->o, p->ht};
    return lina_attn_forward(NULL, &p->d, &a);
}

/* L = sum(o * dout) + sum(ht * dht), in double */
static double loss(problem *p) {
    if (forward(p) != LINA_OK) return NAN;
    double l = 0;
    for (size_t i = 0; i < p->nv; i++) l += (double)p->o[i] * p->dout[i];
    for (size_t i = 0; i < p->ns; i++) l += (double)p->ht[i] * p->dht[i];
    return l;
}

/* Central differences of loss w.r.t. every element of x, compared with grad. */
static void fd_check(const char *name, problem *p, float *x, size_t n, const float *grad) {
    float *fd = alloc_floats(n);
    for (size_t i = 0; i < n; i++) {
        float save = x[i];
        float h = 1e-2f * fmaxf(1.0f, fabsf(save));
        if (x == p->g && save + h > 0) { /* keep log-gates <= 0 */
            x[i] = save - 2 * h;
            double lm2 = loss(p);
            x[i] = save - h;
            double lm = loss(p);
            x[i] = save;
            double l0 = loss(p);
            fd[i] = (float)((3 * l0 - 4 * lm + lm2) / (2 * h));
        } else {
            x[i] = save + h;
            double lp = loss(p);
            x[i] = save - h;
            double lm = loss(p);
            fd[i] = (float)((lp - lm) / (2 * h));
        }
        x[i] = save;
    }
    check_close(name, grad, fd, n, 2e-3);
    free(fd);
}

static void test_gradients(const char *tag, lina_attn_desc d) {
    problem p;
    problem_init(&p, d, 7, -1.0f);
    float *dq = alloc_floats(p.nqk), *dk = alloc_floats(p.nqk), *dv = alloc_floats(p.nv);
    float *dg = alloc_floats(p.ng), *db = alloc_floats(p.nb), *dh0 = alloc_floats(p.ns);
    lina_attn_bwd_args b = {p.q, p.k, p.v, p.g, p.beta, p.h0, p.dout, p.dht,
                            dq, dk, dv, dg, db, dh0};
    lina_status st = lina_attn_backward(NULL, &p.d, &b);
    char name[160];
    snprintf(name, sizeof name, "recurrent backward runs [%s]", tag);
    test_report(st == LINA_OK, name, "%s", lina_last_error());
#define FD(buf, n, grad)                                                                           \
    snprintf(name, sizeof name, "fd d%s [%s]", #buf, tag);                                         \
    fd_check(name, &p, p.buf, n, grad);
    FD(q, p.nqk, dq) FD(k, p.nqk, dk) FD(v, p.nv, dv) FD(h0, p.ns, dh0)
    if (d.gate != LINA_GATE_NONE) { FD(g, p.ng, dg) }
    if (d.update == LINA_UPDATE_DELTA) { FD(beta, p.nb, db) }
#undef FD
    free(dq), free(dk), free(dv), free(dg), free(db), free(dh0);
    problem_free(&p);
}

/* ADD without gate: o_t = scale sum_{s<=t} (q_t . k_s) v_s + scale h0^T q_t. */
static void test_closed_form(void) {
    lina_attn_desc d = lina_attn_desc_default();
    d.T = 37, d.H = 2, d.K = 5, d.V = 3, d.form = LINA_FORM_RECURRENT;
    problem p;
    problem_init(&p, d, 3, 0);
    forward(&p);
    float *ref = alloc_floats(p.nv);
    float scale = 1.0f / sqrtf(5.0f);
    for (int h = 0; h < 2; h++)
        for (int t = 0; t < 37; t++)
            for (int c = 0; c < 3; c++) {
                double acc = 0;
                for (int s = 0; s <= t; s++) {
                    double dot = 0;
                    for (int i = 0; i < 5; i++) dot += p.q[(t * 2 + h) * 5 + i] * p.k[(s * 2 + h) * 5 + i];
                    acc += dot * p.v[(s * 2 + h) * 3 + c];
                }
                for (int i = 0; i < 5; i++) acc += p.h0[(h * 5 + i) * 3 + c] * p.q[(t * 2 + h) * 5 + i];
                ref[(t * 2 + h) * 3 + c] = (float)(scale * acc);
            }
    check_close("recurrent == closed form (linear attention)", p.o, ref, p.nv, 1e-6);
    free(ref);
    problem_free(&p);
}

/* Single steps with the state carried == one forward over the sequence. */
static void test_steps(lina_update upd, lina_gate gate, const char *tag) {
    lina_attn_desc d = lina_attn_desc_default();
    d.B = 3, d.T = 9, d.H = 2, d.HV = 4, d.K = 6, d.V = 5, d.gate = gate, d.update = upd;
    problem p;
    problem_init(&p, d, 11, -2.0f);
    forward(&p);
    int HV = 4, N = 3;
    float *state = alloc_floats(p.ns), *o = alloc_floats(p.nv);
    memcpy(state, p.h0, sizeof(float) * p.ns);
    float *qt = alloc_floats(N * 2 * 6), *kt = alloc_floats(N * 2 * 6), *vt = alloc_floats(N * HV * 5);
    float *gt = alloc_floats(N * HV * 6), *bt = alloc_floats(N * HV), *ot = alloc_floats(N * HV * 5);
    int ok = 1;
    for (int t = 0; t < 9 && ok; t++) {
        for (int n = 0; n < N; n++) {
            size_t tok = (size_t)n * 9 + t;
            memcpy(qt + n * 12, p.q + tok * 12, 12 * sizeof(float));
            memcpy(kt + n * 12, p.k + tok * 12, 12 * sizeof(float));
            memcpy(vt + n * 20, p.v + tok * 20, 20 * sizeof(float));
            memcpy(bt + n * 4, p.beta + tok * 4, 4 * sizeof(float));
            if (gate == LINA_GATE_SCALAR) memcpy(gt + n * 4, p.g + tok * 4, 4 * sizeof(float));
            if (gate == LINA_GATE_VECTOR) memcpy(gt + n * 24, p.g + tok * 24, 24 * sizeof(float));
        }
        const float *gp = gate == LINA_GATE_CONST ? p.g : gt;
        ok = lina_attn_step(NULL, &d, qt, kt, vt, gp, bt, state, ot) == LINA_OK;
        for (int n = 0; n < N; n++) memcpy(o + ((size_t)n * 9 + t) * 20, ot + n * 20, 20 * sizeof(float));
    }
    char name[128];
    snprintf(name, sizeof name, "step x T == forward: o [%s]", tag);
    if (ok) check_close(name, o, p.o, p.nv, 1e-6);
    else test_report(0, name, "%s", lina_last_error());
    snprintf(name, sizeof name, "step x T == forward: state [%s]", tag);
    check_close(name, state, p.ht, p.ns, 1e-6);
    free(state), free(o), free(qt), free(kt), free(vt), free(gt), free(bt), free(ot);
    problem_free(&p);
}

static void expect_error(const char *name, lina_status got, lina_status want, const char *needle) {
    const char *msg = lina_last_error();
    test_report(got == want && strstr(msg, needle) != NULL, name, "status %d (%s), message \"%s\"",
                got, lina_status_str(got), msg);
}

static void test_bad_input(void) {
    lina_attn_desc d = lina_attn_desc_default();
    d.T = 4, d.H = 1, d.K = 2, d.V = 2, d.update = LINA_UPDATE_DELTA, d.gate = LINA_GATE_SCALAR;
    problem p;
    problem_init(&p, d, 5, -1.0f);
    lina_attn_fwd_args a = {p.q, p.k, p.v, p.g, p.beta, NULL, p.o, NULL};
    lina_attn_desc b = d;
    b.K = 0;
    expect_error("bad K rejected", lina_attn_forward(NULL, &b, &a), LINA_ERR_INVALID_ARG, "K = 0");
    b = d, b.T = -3;
    expect_error("bad T rejected", lina_attn_forward(NULL, &b, &a), LINA_ERR_INVALID_ARG, "T = -3");
    b = d, b.HV = 3, b.H = 2;
    expect_error("HV not a multiple of H rejected", lina_attn_forward(NULL, &b, &a),
                 LINA_ERR_INVALID_ARG, "HV = 3");
    b = d, b.B = 65536, b.T = 1 << 30, b.H = 64;
    expect_error("absurd size rejected", lina_attn_forward(NULL, &b, &a), LINA_ERR_OOM, "too large");
    lina_attn_fwd_args nb = a;
    nb.beta = NULL;
    expect_error("NULL beta rejected", lina_attn_forward(NULL, &d, &nb), LINA_ERR_INVALID_ARG, "beta");
    p.q[5] = NAN;
    expect_error("NaN q rejected", lina_attn_forward(NULL, &d, &a), LINA_ERR_NONFINITE, "q[5]");
    p.q[5] = 0.5f;
    p.g[2] = 0.25f;
    expect_error("positive log-gate rejected", lina_attn_forward(NULL, &d, &a), LINA_ERR_INVALID_ARG,
                 "g[2] = 0.25");
    p.g[2] = -0.5f;
    int64_t cu[4] = {0, 3, 2, 4};
    b = d, b.cu_seqlens = cu, b.n_seqs = 3;
    expect_error("non-monotonic cu_seqlens rejected", lina_attn_forward(NULL, &b, &a),
                 LINA_ERR_INVALID_ARG, "cu_seqlens[2] = 2");
    cu[2] = 3, cu[3] = 5;
    expect_error("cu_seqlens end != T rejected", lina_attn_forward(NULL, &b, &a),
                 LINA_ERR_INVALID_ARG, "must equal T = 4");
    b = d, b.normalize = 1;
    expect_error("normalize with delta unsupported", lina_attn_forward(NULL, &b, &a),
                 LINA_ERR_UNSUPPORTED, "normalize");
    test_report(lina_attn_forward(NULL, &d, &a) == LINA_OK, "valid input accepted after errors", "%s",
                lina_last_error());
    problem_free(&p);
}

/* Log-gates of -1e30 (a hard reset) give the same result in every form. */
static void test_huge_gates(void) {
    static const lina_form forms[] = {LINA_FORM_CHUNK, LINA_FORM_PARALLEL};
    for (int u = 0; u < 2; u++)
        for (int gk = LINA_GATE_SCALAR; gk <= LINA_GATE_VECTOR; gk++) {
            lina_attn_desc d = lina_attn_desc_default();
            d.T = 150, d.H = 2, d.K = 8, d.V = 6, d.update = u, d.gate = gk;
            d.form = LINA_FORM_RECURRENT;
            problem p;
            problem_init(&p, d, 21, -0.5f);
            for (size_t i = 0; i < p.ng; i += 7) p.g[i] = -1e30f;
            forward(&p);
            float *ref = alloc_floats(p.nv), *ref_ht = alloc_floats(p.ns);
            memcpy(ref, p.o, sizeof(float) * p.nv);
            memcpy(ref_ht, p.ht, sizeof(float) * p.ns);
            for (int f = 0; f < 2; f++) {
                p.d.form = forms[f];
                forward(&p);
                char name[128];
                snprintf(name, sizeof name, "log-gates of -1e30: %s == recurrent [%s/%s]",
                         forms[f] == LINA_FORM_CHUNK ? "chunk" : "parallel", u ? "delta" : "add",
                         gk == LINA_GATE_SCALAR ? "scalar" : "vector");
                check_close(name, p.o, ref, p.nv, 1e-5);
            }
            free(ref), free(ref_ht);
            problem_free(&p);
        }
}

int main(void) {
    test_huge_gates();
    test_closed_form();
    static const struct {
        lina_update u;
        lina_gate g;
        const char *tag;
    } combos[] = {
        {LINA_UPDATE_ADD, LINA_GATE_NONE, "add/none"},     {LINA_UPDATE_ADD, LINA_GATE_CONST, "add/const"},
        {LINA_UPDATE_ADD, LINA_GATE_SCALAR, "add/scalar"}, {LINA_UPDATE_ADD, LINA_GATE_VECTOR, "add/vector"},
        {LINA_UPDATE_DELTA, LINA_GATE_NONE, "delta/none"}, {LINA_UPDATE_DELTA, LINA_GATE_CONST, "delta/const"},
        {LINA_UPDATE_DELTA, LINA_GATE_SCALAR, "delta/scalar"},
        {LINA_UPDATE_DELTA, LINA_GATE_VECTOR, "delta/vector"},
    };
    for (size_t i = 0; i < sizeof combos / sizeof *combos; i++) {
        lina_attn_desc d = lina_attn_desc_default();
        d.B = 2, d.T = 7, d.H = 1, d.HV = 2, d.K = 3, d.V = 4, d.form = LINA_FORM_RECURRENT;
        d.update = combos[i].u, d.gate = combos[i].g;
        test_gradients(combos[i].tag, d);
        test_steps(combos[i].u, combos[i].g, combos[i].tag);
    }
    lina_attn_desc d = lina_attn_desc_default();
    d.B = 1, d.T = 6, d.H = 1, d.K = 3, d.V = 2, d.normalize = 1, d.gate = LINA_GATE_SCALAR;
    d.form = LINA_FORM_RECURRENT;
    test_gradients("add/scalar/normalize", d);
    /* varlen with an empty sequence */
    int64_t cu[4] = {0, 4, 4, 9};
    d = lina_attn_desc_default();
    d.T = 9, d.H = 1, d.K = 3, d.V = 2, d.update = LINA_UPDATE_DELTA, d.gate = LINA_GATE_VECTOR;
    d.cu_seqlens = cu, d.n_seqs = 3, d.form = LINA_FORM_RECURRENT;
    test_gradients("delta/vector/varlen", d);
    test_bad_input();
    return test_finish();
}
