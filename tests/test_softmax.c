/* Softmax attention: the streaming forward/backward against a naive O(T^2)
 * double-precision reference, finite differences, the KV-cache decode against
 * the full forward, thread-count invariance and input validation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "util/check.h"

/* ---- naive reference (double) ---- */

static int ref_allowed(const lina_softmax_desc *d, int t, int s) {
    if (d->causal && s > t) return 0;
    if (d->window > 0) {
        if (d->causal && s <= t - d->window) return 0;
        if (!d->causal && abs(t - s) >= d->window) return 0;
    }
    return 1;
}

static void ref_seq(const lina_softmax_desc *d, int n, long *bos, int *len) {
    if (d->cu_seqlens) {
        *bos = (long)d->cu_seqlens[n];
        *len = (int)(d->cu_seqlens[n + 1] - d->cu_seqlens[n]);
    } else {
        *bos = (long)n * d->T;
        *len = d->T;
    }
}

static double ref_scale(const lina_softmax_desc *d) {
    return d->scale != 0 ? d->scale : 1.0 / sqrt((double)d->K);
}

/* Probabilities of query t (local) of head h over keys of its sequence: p (len). */
static double ref_probs(const lina_softmax_desc *d, const double *q, const double *k, long bos,
                        int len, int t, int h, double *p) {
    int H = d->H, HKV = d->HKV ? d->HKV : d->H, hk = h / (H / HKV), K = d->K;
    double m = -INFINITY, sum = 0;
    for (int s = 0; s < len; s++) {
        p[s] = -INFINITY;
        if (!ref_allowed(d, t, s)) continue;
        double dot = 0;
        for (int i = 0; i < K; i++)
            dot += q[((bos + t) * H + h) * K + i] * k[((bos + s) * HKV + hk) * K + i];
        p[s] = ref_scale(d) * dot;
        if (p[s] > m) m = p[s];
    }
    for (int s = 0; s < len; s++) {
        p[s] = p[s] == -INFINITY ? 0 : exp(p[s] - m);
        sum += p[s];
    }
    for (int s = 0; s < len; s++)
        p[s] /= sum;
    return m + log(sum);
}

static int n_seqs_of(const lina_softmax_desc *d) { return d->cu_seqlens ? d->n_seqs : d->B; }

static void ref_forward(const lina_softmax_desc *d, const double *q, const double *k,
                        const double *v, double *o, double *lse) {
    int H = d->H, HKV = d->HKV ? d->HKV : d->H, V = d->V;
    double *p = malloc(sizeof(double) * (d->T + 1));
    for (int n = 0; n < n_seqs_of(d); n++) {
        long bos;
        int len;
        ref_seq(d, n, &bos, &len);
        for (int h = 0; h < H; h++)
            for (int t = 0; t < len; t++) {
                double l = ref_probs(d, q, k, bos, len, t, h, p);
                if (lse) lse[(bos + t) * H + h] = l;
                double *ot = o + ((bos + t) * H + h) * V;
                for (int c = 0; c < V; c++)
                    ot[c] = 0;
                for (int s = 0; s < len; s++)
                    for (int c = 0; c < V; c++)
                        ot[c] += p[s] * v[((bos + s) * HKV + h / (H / HKV)) * V + c];
            }
    }
    free(p);
}

static void ref_backward(const lina_softmax_desc *d, const double *q, const double *k,
                         const double *v, const double *dout, double *dq, double *dk, double *dv) {
    int H = d->H, HKV = d->HKV ? d->HKV : d->H, K = d->K, V = d->V;
    size_t tokens = (size_t)d->B * d->T;
    memset(dq, 0, sizeof(double) * tokens * H * K);
    memset(dk, 0, sizeof(double) * tokens * HKV * K);
    memset(dv, 0, sizeof(double) * tokens * HKV * V);
    double *p = malloc(sizeof(double) * (d->T + 1)), *dp = malloc(sizeof(double) * (d->T + 1));
    double sc = ref_scale(d);
    for (int n = 0; n < n_seqs_of(d); n++) {
        long bos;
        int len;
        ref_seq(d, n, &bos, &len);
        for (int h = 0; h < H; h++) {
            int hk = h / (H / HKV);
            for (int t = 0; t < len; t++) {
                ref_probs(d, q, k, bos, len, t, h, p);
                const double *dot = dout + ((bos + t) * H + h) * V;
                double pdp = 0;
                for (int s = 0; s < len; s++) {
                    const double *vs = v + ((bos + s) * HKV + hk) * V;
                    dp[s] = 0;
                    for (int c = 0; c < V; c++)
                        dp[s] += dot[c] * vs[c];
                    pdp += p[s] * dp[s];
                    for (int c = 0; c < V; c++)
                        dv[((bos + s) * HKV + hk) * V + c] += p[s] * dot[c];
                }
                for (int s = 0; s < len; s++) {
                    double ds = p[s] * (dp[s] - pdp) * sc;
                    if (ds == 0) continue;
                    for (int i = 0; i < K; i++) {
                        dq[((bos + t) * H + h) * K + i] += ds * k[((bos + s) * HKV + hk) * K + i];
                        dk[((bos + s) * HKV + hk) * K + i] += ds * q[((bos + t) * H + h) * K + i];
                    }
                }
            }
        }
    }
    free(p);
    free(dp);
}

/* ---- helpers ---- */

static double *to_double(const float *x, size_t n) {
    double *y = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
    return y;
}
static float *to_float(const double *x, size_t n) {
    float *y = alloc_floats(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        y[i] = (float)x[i];
    return y;
}

typedef struct {
    size_t nq, nk, nv, no, nl;
} sizes_t;

static sizes_t sizes(const lina_softmax_desc *d) {
    sizes_t s;
    size_t tok = (size_t)d->B * d->T;
    int HKV = d->HKV ? d->HKV : d->H;
    s.nq = tok * d->H * d->K;
    s.nk = tok * HKV * d->K;
    s.nv = tok * HKV * d->V;
    s.no = tok * d->H * d->V;
    s.nl = tok * d->H;
    return s;
}

/* Forward and backward of one configuration against the reference. */
static void check_case(const char *name, lina_softmax_desc d, uint64_t seed) {
    sizes_t z = sizes(&d);
    test_rng r;
    rng_seed(&r, seed);
    float *q = alloc_floats(z.nq + 1), *k = alloc_floats(z.nk + 1), *v = alloc_floats(z.nv + 1);
    float *dout = alloc_floats(z.no + 1), *o = alloc_floats(z.no + 1),
          *lse = alloc_floats(z.nl + 1);
    float *dq = alloc_floats(z.nq + 1), *dk = alloc_floats(z.nk + 1), *dv = alloc_floats(z.nv + 1);
    fill_normal(&r, q, z.nq, 1.5f); /* peaky enough for the max subtraction to matter */
    fill_normal(&r, k, z.nk, 1.5f);
    fill_normal(&r, v, z.nv, 1.0f);
    fill_normal(&r, dout, z.no, 1.0f);
    double *qd = to_double(q, z.nq), *kd = to_double(k, z.nk), *vd = to_double(v, z.nv);
    double *dod = to_double(dout, z.no);
    double *o_ref = malloc(sizeof(double) * (z.no + 1)),
           *l_ref = malloc(sizeof(double) * (z.nl + 1));
    double *dq_ref = malloc(sizeof(double) * (z.nq + 1)),
           *dk_ref = malloc(sizeof(double) * (z.nk + 1));
    double *dv_ref = malloc(sizeof(double) * (z.nv + 1));
    ref_forward(&d, qd, kd, vd, o_ref, l_ref);
    ref_backward(&d, qd, kd, vd, dod, dq_ref, dk_ref, dv_ref);

    /* 1 thread: the fused backward; 16 threads: few (sequence, kv head) jobs
     * per thread, so the backward splits into key-block and query-block passes. */
    float *dq1 = alloc_floats(z.nq + 1), *dk1 = alloc_floats(z.nk + 1),
          *dv1 = alloc_floats(z.nv + 1);
    float *of = to_float(o_ref, z.no), *lf = to_float(l_ref, z.nl);
    float *dqf = to_float(dq_ref, z.nq), *dkf = to_float(dk_ref, z.nk),
          *dvf = to_float(dv_ref, z.nv);
    for (int pass = 0; pass < 2; pass++) {
        lina_ctx *ctx;
        lina_ctx_create(&ctx);
        lina_ctx_set_threads(ctx, pass ? 16 : 1);
        const char *tag = pass ? "16 threads" : "1 thread";
        char buf[160];
        lina_status st = lina_softmax_forward(ctx, &d, q, k, v, o, lse);
        snprintf(buf, sizeof buf, "%s (%s) forward status", name, tag);
        test_report(st == LINA_OK, buf, "%s", st ? lina_last_error() : "");
        snprintf(buf, sizeof buf, "%s (%s) o", name, tag);
        check_close(buf, o, of, z.no, 1e-5);
        snprintf(buf, sizeof buf, "%s (%s) lse", name, tag);
        check_close(buf, lse, lf, z.nl, 1e-5);

        st = lina_softmax_backward(ctx, &d, q, k, v, o, lse, dout, dq, dk, dv);
        snprintf(buf, sizeof buf, "%s (%s) backward status", name, tag);
        test_report(st == LINA_OK, buf, "%s", st ? lina_last_error() : "");
        snprintf(buf, sizeof buf, "%s (%s) dq", name, tag);
        check_close(buf, dq, dqf, z.nq, 1e-5);
        snprintf(buf, sizeof buf, "%s (%s) dk", name, tag);
        check_close(buf, dk, dkf, z.nk, 1e-5);
        snprintf(buf, sizeof buf, "%s (%s) dv", name, tag);
        check_close(buf, dv, dvf, z.nv, 1e-5);
        if (pass == 0) {
            memcpy(dq1, dq, sizeof(float) * z.nq);
            memcpy(dk1, dk, sizeof(float) * z.nk);
            memcpy(dv1, dv, sizeof(float) * z.nv);
        } else {
            int same = !memcmp(dq1, dq, sizeof(float) * z.nq) &&
                       !memcmp(dk1, dk, sizeof(float) * z.nk) &&
                       !memcmp(dv1, dv, sizeof(float) * z.nv);
            snprintf(buf, sizeof buf, "%s: 1 and 16 threads bit-identical gradients", name);
            test_report(same, buf, "%s", same ? "" : "differ");
        }
        lina_ctx_free(ctx);
    }
    free(dq1), free(dk1), free(dv1);

    free(q), free(k), free(v), free(dout), free(o), free(lse), free(dq), free(dk), free(dv);
    free(qd), free(kd), free(vd), free(dod), free(o_ref), free(l_ref), free(dq_ref), free(dk_ref);
    free(dv_ref), free(of), free(lf), free(dqf), free(dkf), free(dvf);
}

static lina_softmax_desc make(int B, int T, int H, int HKV, int K, int V, int causal, int window) {
    lina_softmax_desc d = lina_softmax_desc_default();
    d.B = B, d.T = T, d.H = H, d.HKV = HKV, d.K = K, d.V = V, d.causal = causal, d.window = window;
    return d;
}

static void test_reference_cases(void) {
    check_case("T1", make(2, 1, 2, 2, 60, 64, 1, 0), 1);
    check_case("T2", make(1, 2, 2, 1, 60, 64, 1, 0), 14);
    check_case("T66 (tail block of 2)", make(1, 66, 2, 2, 64, 60, 1, 0), 15);
    check_case("T63 gqa", make(1, 63, 4, 1, 64, 60, 1, 0), 2);
    check_case("T65 gqa2", make(2, 65, 4, 2, 100, 64, 1, 0), 3);
    check_case("T300", make(1, 300, 2, 2, 64, 100, 1, 0), 4);
    check_case("T65 bidirectional", make(1, 65, 2, 2, 60, 60, 0, 0), 5);
    check_case("T300 window50", make(1, 300, 2, 1, 64, 64, 1, 50), 6);
    check_case("T130 bidirectional window40", make(1, 130, 2, 2, 32, 48, 0, 40), 7);
    check_case("T200 window1", make(1, 200, 1, 1, 16, 16, 1, 1), 8);
    check_case("T100 K=V=128 gqa", make(1, 100, 4, 2, 128, 128, 1, 0), 12);
    check_case("T1000 gqa window300", make(1, 1000, 2, 1, 64, 64, 1, 300), 13);
    lina_softmax_desc d = make(1, 37, 4, 2, 60, 64, 1, 0);
    d.scale = 0.3f;
    check_case("T37 scale 0.3", d, 9);
    int64_t cu[] = {0, 70, 70, 71, 200};
    d = make(1, 200, 4, 2, 60, 64, 1, 0);
    d.cu_seqlens = cu;
    d.n_seqs = 4;
    check_case("varlen with empty sequence", d, 10);
    d.causal = 0;
    d.window = 20;
    check_case("varlen bidirectional window", d, 11);
    int64_t cu0[] = {0, 0, 0};
    d = make(1, 0, 2, 1, 8, 8, 1, 0);
    d.cu_seqlens = cu0;
    d.n_seqs = 2;
    lina_status s1 = lina_softmax_forward(NULL, &d, NULL, NULL, NULL, NULL, NULL);
    lina_status s2 =
        lina_softmax_backward(NULL, &d, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    test_report(s1 == LINA_OK && s2 == LINA_OK, "varlen batch of empty sequences (T = 0)", "%s",
                s1 || s2 ? lina_last_error() : "");
}

/* ---- finite differences of the double-precision reference loss ---- */

static double loss_of(const lina_softmax_desc *d, const double *q, const double *k, const double *v,
                      const double *w, size_t no) {
    double *o = malloc(sizeof(double) * no);
    ref_forward(d, q, k, v, o, NULL);
    double L = 0;
    for (size_t i = 0; i < no; i++)
        L += o[i] * w[i];
    free(o);
    return L;
}

static void fd_case(const char *name, lina_softmax_desc d) {
    sizes_t z = sizes(&d);
    test_rng r;
    rng_seed(&r, 42);
    float *q = alloc_floats(z.nq), *k = alloc_floats(z.nk), *v = alloc_floats(z.nv);
    float *w = alloc_floats(z.no), *o = alloc_floats(z.no), *lse = alloc_floats(z.nl);
    float *g[3] = {alloc_floats(z.nq), alloc_floats(z.nk), alloc_floats(z.nv)};
    fill_normal(&r, q, z.nq, 1.0f);
    fill_normal(&r, k, z.nk, 1.0f);
    fill_normal(&r, v, z.nv, 1.0f);
    fill_normal(&r, w, z.no, 1.0f);
    lina_softmax_forward(NULL, &d, q, k, v, o, lse);
    lina_status st = lina_softmax_backward(NULL, &d, q, k, v, o, lse, w, g[0], g[1], g[2]);
    double *x[3] = {to_double(q, z.nq), to_double(k, z.nk), to_double(v, z.nv)};
    double *wd = to_double(w, z.no);
    size_t n[3] = {z.nq, z.nk, z.nv};
    const char *names[3] = {"dq", "dk", "dv"};
    for (int a = 0; a < 3; a++) {
        float *fd = alloc_floats(n[a]);
        for (size_t i = 0; i < n[a]; i++) {
            double keep = x[a][i], h = 1e-5;
            x[a][i] = keep + h;
            double lp = loss_of(&d, x[0], x[1], x[2], wd, z.no);
            x[a][i] = keep - h;
            double lm = loss_of(&d, x[0], x[1], x[2], wd, z.no);
            x[a][i] = keep;
            fd[i] = (float)((lp - lm) / (2 * h));
        }
        char buf[128];
        snprintf(buf, sizeof buf, "finite differences %s %s", name, names[a]);
        if (st != LINA_OK)
            test_report(0, buf, "backward failed: %s", lina_last_error());
        else
            check_close(buf, g[a], fd, n[a], 1e-5);
        free(fd);
    }
    for (int a = 0; a < 3; a++)
        free(x[a]), free(g[a]);
    free(q), free(k), free(v), free(w), free(o), free(lse), free(wd);
}

static void test_finite_differences(void) {
    fd_case("causal gqa", make(1, 5, 2, 1, 3, 4, 1, 0));
    fd_case("window2", make(2, 6, 2, 2, 3, 2, 1, 2));
    fd_case("bidirectional", make(1, 4, 1, 1, 5, 3, 0, 0));
}

/* ---- decode ---- */

static void test_decode(void) {
    int N = 2, T = 70, H = 4, HKV = 2, K = 60, V = 64;
    lina_softmax_desc d = make(N, T, H, HKV, K, V, 1, 0);
    sizes_t z = sizes(&d);
    test_rng r;
    rng_seed(&r, 7);
    float *q = alloc_floats(z.nq), *k = alloc_floats(z.nk), *v = alloc_floats(z.nv);
    float *o = alloc_floats(z.no), *od = alloc_floats(z.no);
    float *qs = alloc_floats((size_t)N * H * K), *ks = alloc_floats((size_t)N * HKV * K);
    float *vs = alloc_floats((size_t)N * HKV * V), *os = alloc_floats((size_t)N * H * V);
    fill_normal(&r, q, z.nq, 1.5f);
    fill_normal(&r, k, z.nk, 1.5f);
    fill_normal(&r, v, z.nv, 1.0f);
    lina_softmax_forward(NULL, &d, q, k, v, o, NULL);

    lina_kv_cache *c = NULL;
    lina_status st = lina_kv_cache_create(N, HKV, K, V, T, &c);
    test_report(st == LINA_OK, "kv cache create", "%s", st ? lina_last_error() : "");
    if (st != LINA_OK) return;
    int ok = 1;
    for (int t = 0; t < T && ok; t++) {
        for (int n = 0; n < N; n++) {
            size_t tok = (size_t)n * T + t;
            memcpy(qs + (size_t)n * H * K, q + tok * H * K, sizeof(float) * H * K);
            memcpy(ks + (size_t)n * HKV * K, k + tok * HKV * K, sizeof(float) * HKV * K);
            memcpy(vs + (size_t)n * HKV * V, v + tok * HKV * V, sizeof(float) * HKV * V);
        }
        if (lina_softmax_decode(NULL, c, H, 0.0f, qs, ks, vs, os) != LINA_OK) ok = 0;
        for (int n = 0; n < N; n++)
            memcpy(od + ((size_t)n * T + t) * H * V, os + (size_t)n * H * V, sizeof(float) * H * V);
    }
    test_report(ok, "decode steps", "%s", ok ? "" : lina_last_error());
    check_close("decode token by token == forward", od, o, z.no, 1e-5);
    test_report(lina_kv_cache_len(c, 1) == T, "kv cache len", "len %d", lina_kv_cache_len(c, 1));
    st = lina_softmax_decode(NULL, c, H, 0.0f, qs, ks, vs, os);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "full"),
                "decode on a full cache is an error", "status %d: %s", st, lina_last_error());
    st = lina_kv_cache_append(c, 0, 1, ks, vs);
    test_report(st != LINA_OK && lina_kv_cache_len(c, 0) == T, "append to a full cache is an error",
                "%s", lina_last_error());

    /* prefill by append (first 50 tokens of sequence 0), then decode the rest */
    lina_kv_cache_reset(c);
    test_report(lina_kv_cache_len(c, 0) == 0, "kv cache reset", "len %d", lina_kv_cache_len(c, 0));
    int P = 50;
    lina_kv_cache *c1 = NULL;
    lina_kv_cache_create(1, HKV, K, V, T, &c1);
    st = lina_kv_cache_append(c1, 0, P, k, v);
    for (int t = P; t < T && st == LINA_OK; t++)
        st = lina_softmax_decode(NULL, c1, H, 0.0f, q + (size_t)t * H * K, k + (size_t)t * HKV * K,
                                 v + (size_t)t * HKV * V, od + (size_t)t * H * V);
    test_report(st == LINA_OK, "prefill + decode", "%s", st ? lina_last_error() : "");
    check_close("prefill + decode == forward", od + (size_t)P * H * V, o + (size_t)P * H * V,
                (size_t)(T - P) * H * V, 1e-5);
    lina_kv_cache_free(c1);
    lina_kv_cache_free(c);
    free(q), free(k), free(v), free(o), free(od), free(qs), free(ks), free(vs), free(os);
}

/* ---- thread invariance ---- */

static void test_threads(void) {
    int64_t cu[] = {0, 130, 130, 400};
    lina_softmax_desc d = make(1, 400, 3, 1, 64, 40, 1, 0);
    d.cu_seqlens = cu;
    d.n_seqs = 3;
    sizes_t z = sizes(&d);
    test_rng r;
    rng_seed(&r, 11);
    float *q = alloc_floats(z.nq), *k = alloc_floats(z.nk), *v = alloc_floats(z.nv);
    float *dout = alloc_floats(z.no);
    fill_normal(&r, q, z.nq, 1.0f);
    fill_normal(&r, k, z.nk, 1.0f);
    fill_normal(&r, v, z.nv, 1.0f);
    fill_normal(&r, dout, z.no, 1.0f);
    float *o[2], *lse[2], *dq[2], *dk[2], *dv[2];
    for (int i = 0; i < 2; i++) {
        lina_ctx *ctx;
        lina_ctx_create(&ctx);
        lina_ctx_set_threads(ctx, i + 1);
        o[i] = alloc_floats(z.no), lse[i] = alloc_floats(z.nl);
        dq[i] = alloc_floats(z.nq), dk[i] = alloc_floats(z.nk), dv[i] = alloc_floats(z.nv);
        lina_softmax_forward(ctx, &d, q, k, v, o[i], lse[i]);
        lina_softmax_backward(ctx, &d, q, k, v, o[i], lse[i], dout, dq[i], dk[i], dv[i]);
        lina_ctx_free(ctx);
    }
    int same = !memcmp(o[0], o[1], z.no * 4) && !memcmp(lse[0], lse[1], z.nl * 4) &&
               !memcmp(dq[0], dq[1], z.nq * 4) && !memcmp(dk[0], dk[1], z.nk * 4) &&
               !memcmp(dv[0], dv[1], z.nv * 4);
    test_report(same, "1 vs 2 threads bit-identical (forward and backward)", "%s",
                same ? "" : "differ");
    for (int i = 0; i < 2; i++)
        free(o[i]), free(lse[i]), free(dq[i]), free(dk[i]), free(dv[i]);
    free(q), free(k), free(v), free(dout);
}

/* ---- validation ---- */

static void expect_error(const char *name, lina_status st, lina_status want, const char *needle) {
    int ok = st == want && strstr(lina_last_error(), needle) != NULL;
    test_report(ok, name, "status %d (want %d), message \"%s\" (want \"%s\")", st, want,
                lina_last_error(), needle);
}

static void test_validation(void) {
    lina_softmax_desc d = make(1, 8, 4, 2, 8, 8, 1, 0);
    sizes_t z = sizes(&d);
    float *q = alloc_floats(z.nq), *k = alloc_floats(z.nk), *v = alloc_floats(z.nv);
    float *o = alloc_floats(z.no), *lse = alloc_floats(z.nl), *dq = alloc_floats(z.nq);
    float *dk = alloc_floats(z.nk), *dv = alloc_floats(z.nv);
    lina_softmax_desc b = d;
    b.HKV = 3;
    expect_error("H % HKV != 0 rejected", lina_softmax_forward(NULL, &b, q, k, v, o, lse),
                 LINA_ERR_INVALID_ARG, "HKV = 3");
    b = d, b.K = 0;
    expect_error("K = 0 rejected", lina_softmax_forward(NULL, &b, q, k, v, o, lse),
                 LINA_ERR_INVALID_ARG, "K = 0");
    b = d, b.V = 1 << 20;
    expect_error("absurd V rejected", lina_softmax_forward(NULL, &b, q, k, v, o, lse),
                 LINA_ERR_INVALID_ARG, "V = 1048576");
    b = d, b.T = -3;
    expect_error("T < 0 rejected", lina_softmax_forward(NULL, &b, q, k, v, o, lse),
                 LINA_ERR_INVALID_ARG, "T = -3");
    b = d, b.window = -1;
    expect_error("window < 0 rejected", lina_softmax_forward(NULL, &b, q, k, v, o, lse),
                 LINA_ERR_INVALID_ARG, "window = -1");
    b = d, b.scale = NAN;
    expect_error("NaN scale rejected", lina_softmax_forward(NULL, &b, q, k, v, o, lse),
                 LINA_ERR_INVALID_ARG, "scale");
    expect_error("NULL q rejected", lina_softmax_forward(NULL, &d, NULL, k, v, o, lse),
                 LINA_ERR_INVALID_ARG, "q is NULL");
    expect_error("NULL o rejected", lina_softmax_forward(NULL, &d, q, k, v, NULL, lse),
                 LINA_ERR_INVALID_ARG, "o is NULL");
    expect_error("NULL descriptor rejected", lina_softmax_forward(NULL, NULL, q, k, v, o, lse),
                 LINA_ERR_INVALID_ARG, "descriptor");
    k[5] = NAN;
    expect_error("NaN in k rejected", lina_softmax_forward(NULL, &d, q, k, v, o, lse),
                 LINA_ERR_NONFINITE, "k[5]");
    k[5] = 0;
    v[7] = INFINITY;
    expect_error("Inf in v rejected", lina_softmax_forward(NULL, &d, q, k, v, o, lse),
                 LINA_ERR_NONFINITE, "v[7]");
    v[7] = 0;
    int64_t cu_bad[] = {0, 5, 3, 8};
    b = d, b.cu_seqlens = cu_bad, b.n_seqs = 3;
    expect_error("non-monotonic cu_seqlens rejected",
                 lina_softmax_forward(NULL, &b, q, k, v, o, lse), LINA_ERR_INVALID_ARG,
                 "cu_seqlens[2] = 3");
    int64_t cu_short[] = {0, 5, 7};
    b = d, b.cu_seqlens = cu_short, b.n_seqs = 2;
    expect_error("cu_seqlens not ending at T rejected",
                 lina_softmax_forward(NULL, &b, q, k, v, o, lse), LINA_ERR_INVALID_ARG,
                 "cu_seqlens[2] = 7");
    int64_t cu_ok[] = {0, 8};
    b = d, b.cu_seqlens = cu_ok, b.n_seqs = 1, b.B = 2;
    expect_error("B > 1 with cu_seqlens rejected", lina_softmax_forward(NULL, &b, q, k, v, o, lse),
                 LINA_ERR_INVALID_ARG, "B = 2");
    expect_error("backward without lse rejected",
                 lina_softmax_backward(NULL, &d, q, k, v, o, NULL, o, dq, dk, dv),
                 LINA_ERR_INVALID_ARG, "lse");
    expect_error("backward without dk rejected",
                 lina_softmax_backward(NULL, &d, q, k, v, o, lse, o, dq, NULL, dv),
                 LINA_ERR_INVALID_ARG, "dk");
    lina_kv_cache *c = NULL;
    expect_error("kv cache capacity 0 rejected", lina_kv_cache_create(1, 2, 8, 8, 0, &c),
                 LINA_ERR_INVALID_ARG, "capacity = 0");
    lina_kv_cache_create(1, 2, 8, 8, 4, &c);
    expect_error("decode H not a multiple of HKV rejected",
                 lina_softmax_decode(NULL, c, 3, 0.0f, q, k, v, o), LINA_ERR_INVALID_ARG, "H = 3");
    expect_error("append beyond capacity rejected", lina_kv_cache_append(c, 0, 5, k, v),
                 LINA_ERR_INVALID_ARG, "n = 5");
    expect_error("append to a bad sequence rejected", lina_kv_cache_append(c, 1, 1, k, v),
                 LINA_ERR_INVALID_ARG, "seq = 1");
    q[2] = NAN;
    expect_error("decode with NaN q rejected", lina_softmax_decode(NULL, c, 4, 0.0f, q, k, v, o),
                 LINA_ERR_NONFINITE, "q[2]");
    test_report(lina_kv_cache_len(c, 0) == 0, "rejected decode leaves the cache unchanged",
                "len %d", lina_kv_cache_len(c, 0));
    lina_kv_cache_free(c);
    free(q), free(k), free(v), free(o), free(lse), free(dq), free(dk), free(dv);
}

int main(void) {
    test_reference_cases();
    test_finite_differences();
    test_decode();
    test_threads();
    test_validation();
    return test_finish();
}
