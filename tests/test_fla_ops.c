/* lina's CPU op, forward and backward, against fla's own chunk kernels
 * (tests/data/fla_ops/make.py: fla's Triton kernels run on the CPU by Triton's
 * interpreter in fp32): simple GLA (scalar gate), GLA (vector gate), the delta
 * rule and the gated delta rule, B2 T70 H2 K32 V40 with h0 and a varlen batch
 * [17, 0, 73]; o, ht, dq, dk, dv, dg, dbeta, dh0 for the chunk and the
 * recurrent forms. Tolerance: relative RMS 1e-5 (fp32 throughout on both sides;
 * measured 5e-8 to 1e-6). */
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "util/check.h"
#include "util/fixture.h"

#define TOL 1e-5

typedef struct {
    const char *file;
    lina_gate gate;
    lina_update update;
} fla_case;

/* A malloc'ed fp32 copy of tensor `name` (the mapping may be unaligned), or NULL if absent. */
static float *load(const lina_st_file *f, const char *name, size_t *n) {
    const lina_tensor_view *t = lina_st_find(f, name);
    if (!t || t->dtype != LINA_DTYPE_F32) return NULL;
    float *p = alloc_floats((size_t)t->numel + 1);
    memcpy(p, t->data, (size_t)t->numel * sizeof(float));
    if (n) *n = (size_t)t->numel;
    return p;
}

static void run_file(const fla_case *c) {
    char path[512], name[128];
    snprintf(path, sizeof path, "%s/fla_ops/%s.safetensors", fixture_data_dir(), c->file);
    lina_st_file *f = NULL;
    if (lina_st_open(path, &f) != LINA_OK) {
        test_report(0, c->file, "cannot open %s: %s", path, lina_last_error());
        return;
    }
    const lina_tensor_view *tq = fixture_tensor(f, "q", LINA_DTYPE_F32, 4), *tv = fixture_tensor(f, "v", LINA_DTYPE_F32, 4);
    const lina_tensor_view *tcu = fixture_tensor(f, "cu_seqlens", LINA_DTYPE_I64, 1);
    if (!tq || !tv) {
        test_report(0, c->file, "q or v missing or not (B, T, H, D) fp32");
        lina_st_close(f);
        return;
    }
    lina_attn_desc d = lina_attn_desc_default();
    d.B = (int)tq->shape[0], d.T = (int)tq->shape[1], d.H = (int)tq->shape[2], d.K = (int)tq->shape[3];
    d.V = (int)tv->shape[3], d.gate = c->gate, d.update = c->update;
    int64_t *cu = tcu ? fixture_ids(tcu) : NULL;
    if (cu) d.cu_seqlens = cu, d.n_seqs = (int)tcu->numel - 1;
    size_t nqk, nv, ns, ng = 0, nb = 0;
    float *q = load(f, "q", &nqk), *k = load(f, "k", NULL), *v = load(f, "v", &nv), *dout = load(f, "do", NULL);
    float *h0 = load(f, "h0", &ns), *dht = load(f, "dht", NULL), *g = load(f, "g", &ng), *beta = load(f, "beta", &nb);
    float *o_ref = load(f, "o", NULL), *ht_ref = load(f, "ht", NULL), *dq_ref = load(f, "dq", NULL);
    float *dk_ref = load(f, "dk", NULL), *dv_ref = load(f, "dv", NULL), *dg_ref = load(f, "dg", NULL);
    float *db_ref = load(f, "dbeta", NULL), *dh0_ref = load(f, "dh0", NULL);
    if (!q || !k || !dout || !h0 || !dht || !o_ref || !ht_ref || !dq_ref || !dk_ref || !dv_ref || !dh0_ref ||
        (c->gate != LINA_GATE_NONE && (!g || !dg_ref)) || (c->update == LINA_UPDATE_DELTA && (!beta || !db_ref))) {
        test_report(0, c->file, "a tensor is missing from %s", path);
    } else {
        float *o = alloc_floats(nv), *ht = alloc_floats(ns), *dq = alloc_floats(nqk), *dk = alloc_floats(nqk);
        float *dv = alloc_floats(nv), *dg = alloc_floats(ng + 1), *db = alloc_floats(nb + 1), *dh0 = alloc_floats(ns);
        const lina_form forms[] = {LINA_FORM_CHUNK, LINA_FORM_RECURRENT};
        for (int fi = 0; fi < 2; fi++) {
            d.form = forms[fi];
            const char *form = fi ? "recurrent" : "chunk";
            lina_attn_fwd_args fa = {q, k, v, g, beta, h0, o, ht};
            lina_status st = lina_attn_forward(NULL, &d, &fa);
            snprintf(name, sizeof name, "fla %s %s forward", c->file, form);
            if (st != LINA_OK) {
                test_report(0, name, "%s", lina_last_error());
                continue;
            }
            snprintf(name, sizeof name, "fla %s %s: o", c->file, form);
            check_close(name, o, o_ref, nv, TOL);
            snprintf(name, sizeof name, "fla %s %s: ht", c->file, form);
            check_close(name, ht, ht_ref, ns, TOL);
            lina_attn_bwd_args ba = {q, k, v, g, beta, h0, dout, dht, dq, dk, dv,
                                     ng ? dg : NULL, nb ? db : NULL, dh0};
            st = lina_attn_backward(NULL, &d, &ba);
            snprintf(name, sizeof name, "fla %s %s backward", c->file, form);
            if (st != LINA_OK) {
                test_report(0, name, "%s", lina_last_error());
                continue;
            }
            const struct {
                const char *what;
                const float *got, *ref;
                size_t n;
            } cmp[] = {{"dq", dq, dq_ref, nqk}, {"dk", dk, dk_ref, nqk}, {"dv", dv, dv_ref, nv},
                       {"dg", dg, dg_ref, ng},  {"dbeta", db, db_ref, nb}, {"dh0", dh0, dh0_ref, ns}};
            for (size_t i = 0; i < sizeof cmp / sizeof *cmp; i++) {
                if (!cmp[i].n) continue;
                snprintf(name, sizeof name, "fla %s %s: %s", c->file, form, cmp[i].what);
                check_close(name, cmp[i].got, cmp[i].ref, cmp[i].n, TOL);
            }
        }
        free(o), free(ht), free(dq), free(dk), free(dv), free(dg), free(db), free(dh0);
    }
    free(q), free(k), free(v), free(dout), free(h0), free(dht), free(g), free(beta), free(o_ref), free(ht_ref);
    free(dq_ref), free(dk_ref), free(dv_ref), free(dg_ref), free(db_ref), free(dh0_ref), free(cu);
    lina_st_close(f);
}

int main(void) {
    static const fla_case cases[] = {
        {"simple_gla", LINA_GATE_SCALAR, LINA_UPDATE_ADD},
        {"simple_gla_varlen", LINA_GATE_SCALAR, LINA_UPDATE_ADD},
        {"gla", LINA_GATE_VECTOR, LINA_UPDATE_ADD},
        {"gla_varlen", LINA_GATE_VECTOR, LINA_UPDATE_ADD},
        {"delta_rule", LINA_GATE_NONE, LINA_UPDATE_DELTA},
        {"delta_rule_varlen", LINA_GATE_NONE, LINA_UPDATE_DELTA},
        {"gated_delta_rule", LINA_GATE_SCALAR, LINA_UPDATE_DELTA},
        {"gated_delta_rule_varlen", LINA_GATE_SCALAR, LINA_UPDATE_DELTA},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_file(&cases[i]);
    return test_finish();
}
