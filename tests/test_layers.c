/* Finite-difference checks of every layer's hand-written backward: the
 * primitives (RMSNorm, gated RMSNorm, L2 norm, short conv, rotary, SwiGLU MLP,
 * cross-entropy) and each token mixer as a whole (every parameter tensor and
 * the input). For L = sum(out * R) the analytic directional derivative
 * <grad, u> is compared with the central difference (L(p + h u) - L(p - h u)) / 2h
 * along a random direction u; relative error <= 1e-2 in fp32. Also: a
 * corrupted backward is detected (the check can fail). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "layers/mixer.h"
#include "models/lm_internal.h"
#include "util/check.h"

#define FD_TOL 1e-2

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static int fd_report(const char *name, double analytic, double numeric) {
    double err = fabs(analytic - numeric) / fmax(fabs(numeric), 1e-3);
    test_report(err <= FD_TOL, name, "analytic %.6g numeric %.6g rel err %.2g", analytic, numeric, err);
    return err <= FD_TOL;
}

/* ---- primitives: a generic harness over f(x) -> y with a backward ---- */

typedef void (*fwd_fn)(void *ctx, const float *x, float *y);
typedef void (*bwd_fn)(void *ctx, const float *x, const float *dy, float *dx);

static void check_primitive(const char *name, void *ctx, fwd_fn f, bwd_fn b, size_t nx, size_t ny,
                            float h, test_rng *r) {
    float *x = alloc_floats(nx), *u = alloc_floats(nx), *R = alloc_floats(ny), *y = alloc_floats(ny);
    float *dx = alloc_floats(nx), *xp = alloc_floats(nx);
    fill_normal(r, x, nx, 1.0f);
    fill_normal(r, u, nx, 1.0f);
    fill_normal(r, R, ny, 1.0f);
    f(ctx, x, y);
    b(ctx, x, R, dx);
    double analytic = dot(dx, u, nx), lp, lm;
    for (size_t i = 0; i < nx; i++) xp[i] = x[i] + h * u[i];
    f(ctx, xp, y);
    lp = dot(y, R, ny);
    for (size_t i = 0; i < nx; i++) xp[i] = x[i] - h * u[i];
    f(ctx, xp, y);
    lm = dot(y, R, ny);
    fd_report(name, analytic, (lp - lm) / (2 * h));
    free(x), free(u), free(R), free(y), free(dx), free(xp);
}

typedef struct {
    int N, D;
    float w[64], z[64 * 64], rstd[64], dw[64], dz[64 * 64];
    int gated;
} norm_ctx;

static void rms_f(void *c, const float *x, float *y) {
    norm_ctx *n = c;
    lina_gated_rmsnorm_forward(n->N, n->D, x, n->gated ? n->z : NULL, n->w, 1e-6f, y, n->rstd, 1);
}
static void rms_b(void *c, const float *x, const float *dy, float *dx) {
    norm_ctx *n = c;
    float y[64 * 64];
    rms_f(c, x, y);
    if (n->gated) {
        lina_gated_rmsnorm_backward(n->N, n->D, x, n->z, n->w, n->rstd, dy, dx, n->dz, n->dw, 1);
    } else {
        memset(dx, 0, sizeof(float) * n->N * n->D);
        lina_rmsnorm_backward(n->N, n->D, x, n->w, n->rstd, dy, dx, n->dw, 1);
    }
}
static void l2_f(void *c, const float *x, float *y) {
    norm_ctx *n = c;
    lina_l2norm_forward(n->N, n->D, x, 1e-6f, y, n->rstd, 1);
}
static void l2_b(void *c, const float *x, const float *dy, float *dx) {
    norm_ctx *n = c;
    float y[64 * 64];
    lina_l2norm_forward(n->N, n->D, x, 1e-6f, y, n->rstd, 1);
    lina_l2norm_backward(n->N, n->D, y, n->rstd, dy, dx, 1);
}

typedef struct {
    int B, T, C, W;
    float w[8 * 4], dw[8 * 4], c[2 * 9 * 8], dc[2 * 9 * 8];
} conv_ctx;
static void conv_f(void *p, const float *x, float *y) {
    conv_ctx *c = p;
    lina_conv_forward(c->B, c->T, c->C, c->W, x, c->w, NULL, c->c, y, 1);
}
static void conv_b(void *p, const float *x, const float *dy, float *dx) {
    conv_ctx *c = p;
    float y[2 * 9 * 8];
    conv_f(p, x, y);
    lina_conv_backward(c->B, c->T, c->C, c->W, x, c->w, NULL, c->c, dy, c->dc, dx, c->dw, 1);
}

typedef struct {
    int B, T, H, D;
} rope_ctx;
static void rope_f(void *p, const float *x, float *y) {
    rope_ctx *c = p;
    memcpy(y, x, sizeof(float) * c->B * c->T * c->H * c->D);
    lina_rotary_apply(c->B, c->T, c->H, c->D, 10000.0f, 3, y, 0, 1);
}
static void rope_b(void *p, const float *x, const float *dy, float *dx) {
    rope_ctx *c = p;
    memcpy(dx, dy, sizeof(float) * c->B * c->T * c->H * c->D);
    lina_rotary_apply(c->B, c->T, c->H, c->D, 10000.0f, 3, dx, 1, 1);
}

typedef struct {
    lina_mlp p;
    int N;
    float a[5 * 24], b[5 * 24], h[5 * 24], da[5 * 24], db[5 * 24];
} mlp_ctx;
static void mlp_f(void *p, const float *x, float *y) {
    mlp_ctx *c = p;
    lina_mlp_forward(&c->p, c->N, x, c->a, c->b, c->h, y, 1);
}
static void mlp_b(void *p, const float *x, const float *dy, float *dx) {
    mlp_ctx *c = p;
    float y[5 * 16];
    mlp_f(p, x, y);
    memset(dx, 0, sizeof(float) * c->N * c->p.D);
    lina_mlp_backward(&c->p, c->N, x, c->a, c->b, c->h, dy, c->da, c->db, dx, 1);
}

typedef struct {
    int N, V;
    int32_t tgt[6];
    float probs[6 * 11];
} ce_ctx;
static void ce_f(void *p, const float *x, float *y) {
    ce_ctx *c = p;
    int nv;
    y[0] = (float)lina_cross_entropy_forward(c->N, c->V, x, c->tgt, c->probs, &nv, 1);
}
static void ce_b(void *p, const float *x, const float *dy, float *dx) {
    ce_ctx *c = p;
    int nv;
    lina_cross_entropy_forward(c->N, c->V, x, c->tgt, c->probs, &nv, 1);
    lina_cross_entropy_backward(c->N, c->V, c->probs, c->tgt, nv, dy[0], dx, 1);
}

/* Input of tap s of row b (s < 0: the decoding history h, or zero without one). */
static float conv_x_ref(const float *x, const float *h, int b, int T, int C, int W, int s, int ch) {
    if (s >= 0) return x[((size_t)b * T + s) * C + ch];
    return h ? h[(size_t)(W - 1 + s) * C + ch] : 0.0f;
}

/* The short conv's W = 4 fast paths against the formula in its plain order (acc = 0, taps
 * ascending): bit-identical c, dx, dw, with and without a decoding history (B = 1), and the
 * general path (W = 3) too. */
static void test_conv_paths(test_rng *r) {
    enum { T = 11, C = 5, WMAX = 4 };
    for (int W = 3; W <= 4; W++)
        for (int B = 1; B <= 2; B++) {
            float x[2 * T * C], w[C * WMAX], hist[(WMAX - 1) * C], dy[2 * T * C];
            float c[2 * T * C], y[2 * T * C], dc[2 * T * C], dx[2 * T * C], dw[C * WMAX];
            float rc[2 * T * C], rdx[2 * T * C], rdw[C * WMAX];
            fill_normal(r, x, 2 * T * C, 1.0f);
            fill_normal(r, w, C * WMAX, 0.5f);
            fill_normal(r, hist, (WMAX - 1) * C, 1.0f);
            fill_normal(r, dy, 2 * T * C, 1.0f);
            fill_normal(r, dw, C * WMAX, 0.1f); /* gradients accumulate into dw */
            memcpy(rdw, dw, sizeof dw);
            const float *h = B == 1 ? hist : NULL;
            for (int b = 0; b < B; b++)
                for (int t = 0; t < T; t++)
                    for (int ch = 0; ch < C; ch++) {
                        float acc = 0;
                        for (int i = 0; i < W; i++)
                            acc += w[ch * W + i] * conv_x_ref(x, h, b, T, C, W, t - (W - 1) + i, ch);
                        rc[((size_t)b * T + t) * C + ch] = acc;
                    }
            lina_conv_forward(B, T, C, W, x, w, h, c, y, 1);
            lina_conv_backward(B, T, C, W, x, w, h, c, dy, dc, dx, dw, 1);
            for (int b = 0; b < B; b++)
                for (int t = 0; t < T; t++)
                    for (int ch = 0; ch < C; ch++) {
                        float acc = 0;
                        for (int i = 0; i < W; i++)
                            if (t + (W - 1) - i < T) acc += w[ch * W + i] * dc[((size_t)b * T + t + (W - 1) - i) * C + ch];
                        rdx[((size_t)b * T + t) * C + ch] = acc;
                        float d = dc[((size_t)b * T + t) * C + ch];
                        for (int i = 0; i < W; i++)
                            rdw[ch * W + i] += d * conv_x_ref(x, h, b, T, C, W, t - (W - 1) + i, ch);
                    }
            size_t n = (size_t)B * T * C;
            test_report(!memcmp(c, rc, n * sizeof(float)) && !memcmp(dx, rdx, n * sizeof(float)) &&
                            !memcmp(dw, rdw, (size_t)C * W * sizeof(float)),
                        "short conv paths", "W %d B %d: c, dx, dw equal the plain-order formula bit for bit", W, B);
        }
}

static void test_primitives(test_rng *r) {
    norm_ctx n = {.N = 7, .D = 13};
    fill_normal(r, n.w, 64, 1.0f);
    fill_normal(r, n.z, 64 * 64, 1.0f);
    check_primitive("rmsnorm dx", &n, rms_f, rms_b, 7 * 13, 7 * 13, 1e-2f, r);
    n.gated = 1;
    check_primitive("gated rmsnorm do", &n, rms_f, rms_b, 7 * 13, 7 * 13, 1e-2f, r);
    n.gated = 0;
    check_primitive("l2norm dx", &n, l2_f, l2_b, 7 * 13, 7 * 13, 1e-2f, r);
    conv_ctx c = {.B = 2, .T = 9, .C = 8, .W = 4};
    fill_normal(r, c.w, 32, 0.5f);
    check_primitive("short conv + silu dx", &c, conv_f, conv_b, 2 * 9 * 8, 2 * 9 * 8, 1e-2f, r);
    test_conv_paths(r);
    rope_ctx rc = {2, 5, 3, 6};
    check_primitive("rotary dx", &rc, rope_f, rope_b, 2 * 5 * 3 * 6, 2 * 5 * 3 * 6, 1e-2f, r);
    static float W[3][24 * 16], dW[3][24 * 16];
    for (int i = 0; i < 3; i++) fill_normal(r, W[i], 24 * 16, 0.3f);
    mlp_ctx m = {.p = {16, 24, W[0], W[1], W[2], dW[0], dW[1], dW[2]}, .N = 5};
    check_primitive("swiglu mlp dx", &m, mlp_f, mlp_b, 5 * 16, 5 * 16, 1e-2f, r);
    ce_ctx ce = {.N = 6, .V = 11, .tgt = {3, 0, 10, -1, 5, 7}};
    check_primitive("cross-entropy dlogits (one ignored row)", &ce, ce_f, ce_b, 6 * 11, 1, 1e-2f, r);
}

/* ---- mixers: every parameter tensor and the input ---- */

typedef struct {
    lina_mixer *mx;
    lina_param_registry reg;
    float *params, *grads;
    size_t n;
} mixer_fixture;

static int make_mixer(lina_mixer_kind kind, mixer_fixture *f, test_rng *r) {
    memset(f, 0, sizeof *f);
    lina_model_config c = lina_model_config_default();
    c.dim = 16;
    c.n_heads = 2;
    c.n_layers = 1;
    c.mixer[0] = kind;
    c.gate_low_rank = 4;
    if (lina_model_config_validate(&c) != LINA_OK) return 0;
    if (lina_mixer_create(&c, 0, "attn.", &f->reg, &f->mx) != LINA_OK) return 0;
    f->n = f->reg.total;
    f->params = alloc_floats(f->n);
    f->grads = alloc_floats(f->n);
    for (int i = 0; i < f->reg.n; i++) {
        lina_tensor_entry *e = &f->reg.t[i];
        e->slot->w = f->params + e->offset;
        e->slot->g = f->grads + e->offset;
        float *w = f->params + e->offset;
        for (size_t j = 0; j < e->numel; j++) {
            float v = 0.3f * rng_normal(r);
            if (e->init == LINA_INIT_ONES) v += 1.0f;
            /* moderate decays keep the fp32 central differences well conditioned
             * (the oracle test in test_model covers strong ones) */
            if (e->init == LINA_INIT_A_LOG) v = logf(0.05f + 0.5f * rng_uniform(r));
            /* cosFormer: positive q/k projections of a positive input keep relu away from its
             * kink, where the normalized attention jumps (q -> 0+ gives o = S^T u / u.z, not 0);
             * the relu mask's gradient is checked in test_fmap and by test_model's oracle */
            if (kind == LINA_MIXER_COSFORMER && (strstr(e->name, "q_proj") || strstr(e->name, "k_proj")))
                v = fabsf(v);
            w[j] = v;
        }
    }
    return 1;
}

static void free_mixer(mixer_fixture *f) {
    lina_mixer_free(f->mx);
    free(f->reg.t);
    free(f->params);
    free(f->grads);
}

static double mixer_loss(mixer_fixture *f, int B, int T, const float *x, const float *R, float *out) {
    lina_mixer_forward(f->mx, NULL, B, T, x, out, NULL, 0);
    return dot(out, R, (size_t)B * T * 16);
}

/* Central difference along dir of L at p, Richardson-extrapolated:
 * (4 D(h/2) - D(h)) / 3 cancels the h^2 term (the output RMSNorm of a tiny o
 * makes the mixers strongly curved). */
static double fd_dir(mixer_fixture *f, int B, int T, const float *x, const float *R, float *out,
                     float *p, const float *dir, size_t n, float h) {
    float *p0 = alloc_floats(n);
    memcpy(p0, p, sizeof(float) * n);
    double d[2];
    for (int k = 0; k < 2; k++) {
        float hk = k ? h / 2 : h;
        for (size_t j = 0; j < n; j++) p[j] = p0[j] + hk * dir[j];
        double lp = mixer_loss(f, B, T, x, R, out);
        for (size_t j = 0; j < n; j++) p[j] = p0[j] - hk * dir[j];
        double lm = mixer_loss(f, B, T, x, R, out);
        d[k] = (lp - lm) / (2 * hk);
    }
    memcpy(p, p0, sizeof(float) * n);
    free(p0);
    return (4 * d[1] - d[0]) / 3;
}

static void test_mixer(lina_mixer_kind kind, test_rng *r, int corrupt) {
    mixer_fixture f;
    char name[256];
    if (!make_mixer(kind, &f, r)) {
        test_report(0, lina_mixer_name(kind), "create: %s", lina_last_error());
        return;
    }
    const int B = 2, T = 67, D = 16; /* T > 64: the chunkwise forms run */
    size_t nx = (size_t)B * T * D;
    float *x = alloc_floats(nx), *R = alloc_floats(nx), *out = alloc_floats(nx), *dx = alloc_floats(nx);
    float *xp = alloc_floats(nx), *u = alloc_floats(nx);
    fill_normal(r, x, nx, 1.0f);
    if (kind == LINA_MIXER_COSFORMER)
        for (size_t i = 0; i < nx; i++) x[i] = fabsf(x[i]);
    fill_normal(r, R, nx, 1.0f);
    lina_status st = lina_mixer_forward(f.mx, NULL, B, T, x, out, NULL, 0);
    if (st == LINA_OK) st = lina_mixer_backward(f.mx, NULL, R, dx);
    if (st != LINA_OK) {
        test_report(0, lina_mixer_name(kind), "%s", lina_last_error());
        goto done;
    }
    if (corrupt) /* a gradient 10% off must be caught */
        for (size_t j = 0; j < f.reg.t[0].numel; j++) f.grads[f.reg.t[0].offset + j] *= 1.1f;
    int bad = 0;
    const float h = 4e-3f;
    /* input */
    fill_normal(r, u, nx, 1.0f);
    double an = dot(dx, u, nx);
    memcpy(xp, x, sizeof(float) * nx);
    double num = fd_dir(&f, B, T, xp, R, out, xp, u, nx, h);
    double err = fabs(an - num) / fmax(fabs(num), 1e-3), worst = err;
    const char *worst_name = "input";
    bad += !(err <= FD_TOL);
    /* each tensor */
    for (int i = 0; i < f.reg.n; i++) {
        lina_tensor_entry *e = &f.reg.t[i];
        float *w = f.params + e->offset, *g = f.grads + e->offset;
        if (!lina_init_trained(e->init)) { /* fixed (Performer's projection): its gradient stays 0 */
            size_t nz = 0;
            for (size_t j = 0; j < e->numel; j++) nz += g[j] != 0.0f;
            if (nz) printf("  %s %s: fixed tensor got %zu gradient entries\n", lina_mixer_name(kind), e->name, nz);
            bad += nz > 0;
            continue;
        }
        float *dir = alloc_floats(e->numel);
        fill_normal(r, dir, e->numel, 1.0f);
        an = dot(g, dir, e->numel);
        num = fd_dir(&f, B, T, x, R, out, w, dir, e->numel, h);
        err = fabs(an - num) / fmax(fabs(num), 1e-3);
        if (!(err <= FD_TOL)) {
            if (!corrupt) printf("  %s %s: analytic %.6g numeric %.6g\n", lina_mixer_name(kind), e->name, an, num);
            bad++;
        }
        if (!(err <= worst)) {
            worst = err;
            worst_name = e->name;
        }
        free(dir);
    }
    if (corrupt) {
        snprintf(name, sizeof name, "%s: a corrupted gradient is detected", lina_mixer_name(kind));
        test_report(bad > 0, name, "worst %.2g (%s)", worst, worst_name);
    } else {
        snprintf(name, sizeof name, "%s mixer: input + %d tensors vs finite differences", lina_mixer_name(kind), f.reg.n);
        test_report(bad == 0, name, "worst rel err %.2g (%s)", worst, worst_name);
    }
done:
    free(x), free(R), free(out), free(dx), free(xp), free(u);
    free_mixer(&f);
}

int main(void) {
    test_rng r;
    rng_seed(&r, 7);
    test_primitives(&r);
    for (int k = 0; k < LINA_MIXER_COUNT; k++) test_mixer((lina_mixer_kind)k, &r, 0);
    test_mixer(LINA_MIXER_GATED_DELTANET, &r, 1);
    return test_finish();
}
