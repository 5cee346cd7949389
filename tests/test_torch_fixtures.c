/* lina_attn against an independent oracle: PyTorch autograd in float64 on the
 * naive recurrence (scripts/make_fixtures.py writes tests/data/attn_fixtures.safetensors).
 * Every case runs in every form (recurrent, chunk 64, chunk 16, parallel) and
 * checks o, ht (rel RMS <= 1e-5) and dq, dk, dv, dg, dbeta, dh0 (<= 1e-4). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "util/check.h"

#define FWD_TOL 1e-5
#define BWD_TOL 1e-4
#define N_EXPECTED_CASES 14

/* One fixture case: descriptor plus every tensor, all f32. */
typedef struct {
    char name[64];
    lina_attn_desc d;
    int64_t cu[16];
    int has_h0;
    int N, HV, Vs;                                /* states, value heads, state columns */
    size_t nqk, nv, ng, nb, ns;                   /* element counts */
    float *q, *k, *v, *g, *beta, *h0, *dout, *dht; /* inputs */
    float *o, *ht;                                /* reference forward */
    float *dq, *dk, *dv, *dg, *dbeta, *dh0;       /* reference gradients */
} fixture;

static const char *data_dir(void) {
    const char *d = getenv("LINA_TEST_DATA");
    return d && *d ? d : "tests/data";
}

static int json_int(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(x) ? x->valueint : -1;
}
static double json_num(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}
static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(x) ? x->valuestring : "";
}

static int parse_gate(const char *s, lina_gate *g) {
    static const char *names[] = {"none", "const", "scalar", "vector"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) return *g = (lina_gate)i, 1;
    return 0;
}

/* Fill the descriptor and counts from one JSON case. Returns 0 (and reports) if malformed. */
static int parse_case(const cJSON *c, fixture *f) {
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", json_str(c, "name"));
    lina_attn_desc d = lina_attn_desc_default();
    d.B = json_int(c, "B"), d.T = json_int(c, "T"), d.H = json_int(c, "H");
    d.HV = json_int(c, "HV"), d.K = json_int(c, "K"), d.V = json_int(c, "V");
    d.normalize = json_int(c, "normalize");
    d.eps = (float)json_num(c, "eps");
    d.scale = (float)json_num(c, "scale");
    f->has_h0 = json_int(c, "has_h0") == 1;
    const char *upd = json_str(c, "update");
    d.update = !strcmp(upd, "delta") ? LINA_UPDATE_DELTA : LINA_UPDATE_ADD;
    if (!parse_gate(json_str(c, "gate"), &d.gate) || (strcmp(upd, "delta") && strcmp(upd, "add")) ||
        d.B < 1 || d.T < 1 || d.H < 1 || d.HV < 1 || d.K < 1 || d.V < 1 || isnan(d.eps) ||
        isnan(d.scale)) {
        test_report(0, "fixture case parse", "case '%s' is malformed", f->name);
        return 0;
    }
    const cJSON *cu = cJSON_GetObjectItemCaseSensitive(c, "cu_seqlens");
    int n_cu = cJSON_GetArraySize(cu);
    if (n_cu > 16) {
        test_report(0, "fixture case parse", "case '%s': %d cu_seqlens entries > 16", f->name, n_cu);
        return 0;
    }
    if (n_cu >= 2) {
        for (int i = 0; i < n_cu; i++) f->cu[i] = (int64_t)cJSON_GetArrayItem(cu, i)->valuedouble;
        d.cu_seqlens = f->cu;
        d.n_seqs = n_cu - 1;
    }
    f->d = d;
    f->N = lina_attn_n_states(&d);
    f->HV = d.HV;
    f->Vs = lina_attn_state_cols(&d);
    size_t tokens = (size_t)d.B * d.T;
    f->nqk = tokens * d.H * d.K;
    f->nv = tokens * d.HV * d.V;
    f->ng = lina_attn_gate_numel(&d);
    f->nb = d.update == LINA_UPDATE_DELTA ? tokens * d.HV : 0;
    f->ns = (size_t)f->N * d.HV * d.K * f->Vs;
    return 1;
}

/* Read "<case>.<what>" with the given shape into a fresh buffer. */
static float *read_tensor(lina_st_file *st, const fixture *f, const char *what, int ndim,
                          const int64_t *shape, size_t n) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", f->name, what);
    float *x = alloc_floats(n ? n : 1);
    if (lina_st_read_f32(st, name, ndim, shape, x) != LINA_OK) {
        test_report(0, "fixture read", "%s: %s", name, lina_last_error());
        free(x);
        return NULL;
    }
    return x;
}

static int load_tensors(lina_st_file *st, fixture *f) {
    const lina_attn_desc *d = &f->d;
    int64_t qk[4] = {d->B, d->T, d->H, d->K}, v[4] = {d->B, d->T, f->HV, d->V};
    int64_t s[4] = {f->N, f->HV, d->K, f->Vs}, b[3] = {d->B, d->T, f->HV};
    int64_t gc[1] = {f->HV}, gv[4] = {d->B, d->T, f->HV, d->K};
    int ok = 1;
#define READ(field, what, nd, shape, n) ok &= (f->field = read_tensor(st, f, what, nd, shape, n)) != NULL
    READ(q, "q", 4, qk, f->nqk);
    READ(k, "k", 4, qk, f->nqk);
    READ(v, "v", 4, v, f->nv);
    READ(dout, "dout", 4, v, f->nv);
    READ(dht, "dht", 4, s, f->ns);
    READ(o, "o", 4, v, f->nv);
    READ(ht, "ht", 4, s, f->ns);
    READ(dq, "dq", 4, qk, f->nqk);
    READ(dk, "dk", 4, qk, f->nqk);
    READ(dv, "dv", 4, v, f->nv);
    if (d->gate != LINA_GATE_NONE) {
        int nd = d->gate == LINA_GATE_CONST ? 1 : d->gate == LINA_GATE_SCALAR ? 3 : 4;
        const int64_t *shape = d->gate == LINA_GATE_CONST ? gc : gv;
        READ(g, "g", nd, shape, f->ng);
        READ(dg, "dg", nd, shape, f->ng);
    }
    if (d->update == LINA_UPDATE_DELTA) {
        READ(beta, "beta", 3, b, f->nb);
        READ(dbeta, "dbeta", 3, b, f->nb);
    }
    if (f->has_h0) {
        READ(h0, "h0", 4, s, f->ns);
        READ(dh0, "dh0", 4, s, f->ns);
    }
#undef READ
    return ok;
}

static void fixture_free(fixture *f) {
    float *all[] = {f->q, f->k, f->v, f->g, f->beta, f->h0, f->dout, f->dht,
                    f->o, f->ht, f->dq, f->dk, f->dv, f->dg, f->dbeta, f->dh0};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

typedef struct {
    const char *name;
    lina_form form;
    int chunk;
} form_case;

static const form_case FORMS[] = {
    {"recurrent", LINA_FORM_RECURRENT, 64},
    {"chunk64", LINA_FORM_CHUNK, 64},
    {"chunk16", LINA_FORM_CHUNK, 16},
    {"parallel", LINA_FORM_PARALLEL, 64},
};

static void check_grad(const fixture *f, const form_case *fc, const char *what, const float *got,
                       const float *ref, size_t n) {
    char label[160];
    snprintf(label, sizeof label, "fixture %s %s %s", f->name, fc->name, what);
    check_close(label, got, ref, n, BWD_TOL);
}

static void run_form(lina_ctx *ctx, const fixture *f, const form_case *fc) {
    lina_attn_desc d = f->d;
    d.form = fc->form;
    d.chunk = fc->chunk;
    char label[160];
    float *o = alloc_floats(f->nv), *ht = alloc_floats(f->ns);
    float *dq = alloc_floats(f->nqk), *dk = alloc_floats(f->nqk), *dv = alloc_floats(f->nv);
    float *dg = alloc_floats(f->ng + 1), *dbeta = alloc_floats(f->nb + 1), *dh0 = alloc_floats(f->ns);

    lina_attn_fwd_args fa = {f->q, f->k, f->v, f->g, f->beta, f->h0, o, ht};
    lina_status st = lina_attn_forward(ctx, &d, &fa);
    snprintf(label, sizeof label, "fixture %s %s forward", f->name, fc->name);
    if (st != LINA_OK) {
        test_report(0, label, "%s: %s", lina_status_str(st), lina_last_error());
    } else {
        snprintf(label, sizeof label, "fixture %s %s o", f->name, fc->name);
        check_close(label, o, f->o, f->nv, FWD_TOL);
        snprintf(label, sizeof label, "fixture %s %s ht", f->name, fc->name);
        check_close(label, ht, f->ht, f->ns, FWD_TOL);
    }

    lina_attn_bwd_args ba = {f->q, f->k, f->v, f->g, f->beta, f->h0, f->dout, f->dht,
                             dq, dk, dv,
                             f->ng ? dg : NULL, f->nb ? dbeta : NULL, f->has_h0 ? dh0 : NULL};
    st = lina_attn_backward(ctx, &d, &ba);
    snprintf(label, sizeof label, "fixture %s %s backward", f->name, fc->name);
    if (st != LINA_OK) {
        test_report(0, label, "%s: %s", lina_status_str(st), lina_last_error());
    } else {
        check_grad(f, fc, "dq", dq, f->dq, f->nqk);
        check_grad(f, fc, "dk", dk, f->dk, f->nqk);
        check_grad(f, fc, "dv", dv, f->dv, f->nv);
        if (f->ng) check_grad(f, fc, "dg", dg, f->dg, f->ng);
        if (f->nb) check_grad(f, fc, "dbeta", dbeta, f->dbeta, f->nb);
        if (f->has_h0) check_grad(f, fc, "dh0", dh0, f->dh0, f->ns);
    }
    free(o), free(ht), free(dq), free(dk), free(dv), free(dg), free(dbeta), free(dh0);
}

/* The tolerances must be able to see a real error: the reference output of a
 * case must differ from lina's output on inputs perturbed by 1e-3 relative. */
static void check_sensitivity(lina_ctx *ctx, const fixture *f) {
    float *q = alloc_floats(f->nqk), *o = alloc_floats(f->nv), *ht = alloc_floats(f->ns);
    for (size_t i = 0; i < f->nqk; i++) q[i] = f->q[i] * (1.0f + 1e-3f * (float)((int)(i % 7) - 3));
    lina_attn_desc d = f->d;
    d.form = LINA_FORM_RECURRENT;
    lina_attn_fwd_args fa = {q, f->k, f->v, f->g, f->beta, f->h0, o, ht};
    lina_status st = lina_attn_forward(ctx, &d, &fa);
    double e = rel_rms(o, f->o, f->nv);
    char label[128];
    snprintf(label, sizeof label, "fixture %s sensitivity", f->name);
    test_report(st == LINA_OK && e > 10 * FWD_TOL, label,
                "perturbed q gives rel_rms %.2e (must exceed %.0e)", e, 10 * FWD_TOL);
    free(q), free(o), free(ht);
}

int main(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/attn_fixtures.safetensors", data_dir());
    lina_st_file *st = NULL;
    if (lina_st_open(path, &st) != LINA_OK) {
        test_report(0, "fixture open", "%s: %s (regenerate with /usr/bin/python3 "
                    "scripts/make_fixtures.py)", path, lina_last_error());
        return test_finish();
    }
    const char *meta = lina_st_metadata(st, "cases");
    cJSON *cases = meta ? cJSON_Parse(meta) : NULL;
    int n_cases = cJSON_IsArray(cases) ? cJSON_GetArraySize(cases) : 0;
    test_report(n_cases == N_EXPECTED_CASES, "fixture cases", "%d cases in %s (expected %d)",
                n_cases, path, N_EXPECTED_CASES);

    lina_ctx *ctx = NULL;
    lina_ctx_create(&ctx);
    lina_ctx_set_threads(ctx, 2); /* exercises both the across-jobs and inside-job paths */
    for (int i = 0; i < n_cases; i++) {
        fixture f;
        if (parse_case(cJSON_GetArrayItem(cases, i), &f) && load_tensors(st, &f)) {
            check_sensitivity(ctx, &f);
            for (size_t k = 0; k < sizeof FORMS / sizeof *FORMS; k++) run_form(ctx, &f, &FORMS[k]);
        }
        fixture_free(&f);
    }
    lina_ctx_free(ctx);
    cJSON_Delete(cases);
    lina_st_close(st);
    return test_finish();
}
