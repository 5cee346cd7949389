/* Feature maps: every forward against a double-precision reference written
 * here from the papers' formulas, every backward (and Hedgehog's dW) against
 * central finite differences of that reference, plus the identities the maps
 * exist for (Taylor, FAVOR+, cosFormer), thread invariance and validation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "util/check.h"

/* ---- reference forward of one row (double) ---- */

static void ref_row(const lina_fmap_desc *d, const double *x, const double *W, double ang,
                    double *y) {
    int D = d->D, M = d->M;
    switch (d->kind) {
    case LINA_FMAP_IDENTITY:
        for (int i = 0; i < D; i++)
            y[i] = x[i];
        break;
    case LINA_FMAP_ELU1:
        for (int i = 0; i < D; i++)
            y[i] = x[i] > 0 ? x[i] + 1 : exp(x[i]);
        break;
    case LINA_FMAP_RELU:
        for (int i = 0; i < D; i++)
            y[i] = fmax(x[i], 0);
        break;
    case LINA_FMAP_L2NORM: {
        double s = 0;
        for (int i = 0; i < D; i++)
            s += x[i] * x[i];
        for (int i = 0; i < D; i++)
            y[i] = x[i] / sqrt(s + d->eps);
        break;
    }
    case LINA_FMAP_COSFORMER:
        for (int i = 0; i < D; i++) {
            y[i] = fmax(x[i], 0) * cos(ang);
            y[D + i] = fmax(x[i], 0) * sin(ang);
        }
        break;
    case LINA_FMAP_FAVOR: {
        double h = 0;
        for (int i = 0; i < D; i++)
            h += x[i] * x[i] / 2;
        for (int m = 0; m < M; m++) {
            double u = 0;
            for (int i = 0; i < D; i++)
                u += W[m * D + i] * x[i];
            y[m] = exp(u - h) / sqrt((double)M);
        }
        break;
    }
    case LINA_FMAP_TAYLOR:
        y[0] = 1;
        for (int i = 0; i < D; i++)
            y[1 + i] = x[i] / pow(D, 0.25);
        for (int i = 0; i < D; i++)
            for (int j = 0; j < D; j++)
                y[1 + D + i * D + j] = x[i] * x[j] / (sqrt(2.0) * sqrt(D));
        break;
    case LINA_FMAP_DPFP: {
        double xp[512];
        for (int i = 0; i < D; i++)
            xp[i] = fmax(x[i], 0), xp[D + i] = fmax(-x[i], 0);
        for (int j = 1; j <= d->nu; j++)
            for (int i = 0; i < 2 * D; i++)
                y[(j - 1) * 2 * D + i] = xp[i] * xp[(i - j + 2 * D) % (2 * D)];
        break;
    }
    case LINA_FMAP_HEDGEHOG:
        for (int s = 0; s < 2; s++) {
            double z[512], mx = -1e300, sum = 0;
            for (int m = 0; m < M; m++) {
                z[m] = 0;
                for (int i = 0; i < D; i++)
                    z[m] += x[i] * W[i * M + m];
                if (s) z[m] = -z[m];
                mx = fmax(mx, z[m]);
            }
            for (int m = 0; m < M; m++)
                sum += exp(z[m] - mx);
            for (int m = 0; m < M; m++)
                y[s * M + m] = exp(z[m] - mx) / sum;
        }
        break;
    }
}

/* sum over rows of w . phi(x_row) */
static double ref_loss(const lina_fmap_desc *d, int B, int T, int H, const double *x,
                       const double *W, const int32_t *pos, const double *w) {
    int out = lina_fmap_out_dim(d);
    double *y = malloc(sizeof(double) * out), L = 0;
    for (long r = 0; r < (long)B * T * H; r++) {
        int t = (int)((r / H) % T);
        double horizon = d->M > 0 ? d->M : T;
        double ang = M_PI * (pos ? pos[t] : t) / (2 * horizon);
        ref_row(d, x + r * d->D, W, ang, y);
        for (int c = 0; c < out; c++)
            L += w[r * out + c] * y[c];
    }
    free(y);
    return L;
}

static double *dup_double(const float *x, size_t n) {
    double *y = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
    return y;
}

/* Forward vs reference, backward (dx, dW) vs finite differences. */
static void check_map(const char *name, lina_fmap_desc d, float x_std, const int32_t *pos) {
    int B = 2, T = 5, H = 3, D = d.D, out = lina_fmap_out_dim(&d), np = lina_fmap_n_params(&d);
    size_t rows = (size_t)B * T * H;
    test_rng r;
    rng_seed(&r, 1000 + d.kind);
    float *x = alloc_floats(rows * D), *y = alloc_floats(rows * out),
          *yr = alloc_floats(rows * out);
    float *w = alloc_floats(rows * out), *dx = alloc_floats(rows * D),
          *fdx = alloc_floats(rows * D);
    float *W = np ? alloc_floats(np) : NULL, *dW = np ? alloc_floats(np) : NULL;
    float *fdW = np ? alloc_floats(np) : NULL;
    fill_normal(&r, x, rows * D, x_std);
    fill_normal(&r, w, rows * out, 1.0f);
    if (np) {
        lina_fmap_init_params(&d, 5, W);
        if (d.kind == LINA_FMAP_HEDGEHOG) /* move away from the near-identity init */
            for (int i = 0; i < np; i++)
                W[i] += 0.5f * rng_normal(&r);
    }
    char buf[128];
    lina_status st = lina_fmap_forward(NULL, &d, B, T, H, x, W, pos, y);
    snprintf(buf, sizeof buf, "%s forward", name);
    if (st != LINA_OK) {
        test_report(0, buf, "%s", lina_last_error());
        return;
    }
    double *xd = dup_double(x, rows * D), *Wd = dup_double(W, np), *wd = dup_double(w, rows * out);
    double *yd = malloc(sizeof(double) * out);
    for (size_t i = 0; i < rows; i++) {
        int t = (int)((i / H) % T);
        double horizon = d.M > 0 ? d.M : T;
        ref_row(&d, xd + i * D, Wd, M_PI * (pos ? pos[t] : t) / (2 * horizon), yd);
        for (int c = 0; c < out; c++)
            yr[i * out + c] = (float)yd[c];
    }
    check_close(buf, y, yr, rows * out, 1e-6);

    const float dw0 = 0.25f; /* dW must be accumulated onto this */
    for (int i = 0; i < np; i++)
        dW[i] = dw0;
    st = lina_fmap_backward(NULL, &d, B, T, H, x, W, pos, w, dx, dW);
    snprintf(buf, sizeof buf, "%s backward status", name);
    test_report(st == LINA_OK, buf, "%s", st ? lina_last_error() : "");
    double h = 1e-6;
    for (size_t i = 0; i < rows * D; i++) {
        double keep = xd[i];
        xd[i] = keep + h;
        double lp = ref_loss(&d, B, T, H, xd, Wd, pos, wd);
        xd[i] = keep - h;
        double lm = ref_loss(&d, B, T, H, xd, Wd, pos, wd);
        xd[i] = keep;
        fdx[i] = (float)((lp - lm) / (2 * h));
    }
    snprintf(buf, sizeof buf, "%s dx vs finite differences", name);
    check_close(buf, dx, fdx, rows * D, 1e-5);
    if (d.kind == LINA_FMAP_HEDGEHOG) {
        for (int i = 0; i < np; i++) {
            double keep = Wd[i];
            Wd[i] = keep + h;
            double lp = ref_loss(&d, B, T, H, xd, Wd, pos, wd);
            Wd[i] = keep - h;
            double lm = ref_loss(&d, B, T, H, xd, Wd, pos, wd);
            Wd[i] = keep;
            fdW[i] = (float)((lp - lm) / (2 * h)) + dw0;
        }
        snprintf(buf, sizeof buf, "%s dW (accumulated) vs finite differences", name);
        check_close(buf, dW, fdW, np, 1e-5);
    } else if (np) {
        int untouched = 1;
        for (int i = 0; i < np; i++)
            untouched &= dW[i] == dw0;
        snprintf(buf, sizeof buf, "%s leaves dW of its fixed W untouched", name);
        test_report(untouched, buf, "%s", "");
    }
    free(x), free(y), free(yr), free(w), free(dx), free(fdx), free(W), free(dW), free(fdW);
    free(xd), free(Wd), free(wd), free(yd);
}

static void test_maps(void) {
    int D = 7;
    check_map("identity", lina_fmap_desc_default(LINA_FMAP_IDENTITY, D), 1.0f, NULL);
    check_map("elu1", lina_fmap_desc_default(LINA_FMAP_ELU1, D), 1.0f, NULL);
    check_map("relu", lina_fmap_desc_default(LINA_FMAP_RELU, D), 1.0f, NULL);
    check_map("l2norm", lina_fmap_desc_default(LINA_FMAP_L2NORM, D), 1.0f, NULL);
    lina_fmap_desc d = lina_fmap_desc_default(LINA_FMAP_COSFORMER, D);
    check_map("cosformer M=T", d, 1.0f, NULL);
    int32_t pos[5] = {3, 0, 9, 12, 7};
    d.M = 12;
    check_map("cosformer M=12 pos", d, 1.0f, pos);
    d = lina_fmap_desc_default(LINA_FMAP_FAVOR, D);
    d.M = 19;
    check_map("favor", d, 0.5f, NULL);
    check_map("taylor", lina_fmap_desc_default(LINA_FMAP_TAYLOR, D), 1.0f, NULL);
    d = lina_fmap_desc_default(LINA_FMAP_DPFP, D);
    check_map("dpfp nu=1", d, 1.0f, NULL);
    d.nu = 3;
    check_map("dpfp nu=3", d, 1.0f, NULL);
    d = lina_fmap_desc_default(LINA_FMAP_HEDGEHOG, D);
    d.M = 11;
    check_map("hedgehog", d, 1.0f, NULL);
}

static void test_out_dims(void) {
    int D = 6, ok = 1;
    lina_fmap_desc d;
    d = lina_fmap_desc_default(LINA_FMAP_IDENTITY, D), ok &= lina_fmap_out_dim(&d) == D;
    d = lina_fmap_desc_default(LINA_FMAP_L2NORM, D), ok &= lina_fmap_out_dim(&d) == D;
    d = lina_fmap_desc_default(LINA_FMAP_COSFORMER, D), ok &= lina_fmap_out_dim(&d) == 2 * D;
    d = lina_fmap_desc_default(LINA_FMAP_FAVOR, D), d.M = 33, ok &= lina_fmap_out_dim(&d) == 33;
    ok &= lina_fmap_n_params(&d) == 33 * D;
    d = lina_fmap_desc_default(LINA_FMAP_TAYLOR, D), ok &= lina_fmap_out_dim(&d) == 1 + D + D * D;
    d = lina_fmap_desc_default(LINA_FMAP_DPFP, D), d.nu = 3,
    ok &= lina_fmap_out_dim(&d) == 2 * D * 3;
    d = lina_fmap_desc_default(LINA_FMAP_HEDGEHOG, D), ok &= lina_fmap_out_dim(&d) == 2 * D;
    ok &= lina_fmap_n_params(&d) == D * D;
    d = lina_fmap_desc_default(LINA_FMAP_RELU, D), ok &= lina_fmap_n_params(&d) == 0;
    test_report(ok, "output dims and parameter counts", "%s", "");
    int all = 1;
    for (int k = LINA_FMAP_IDENTITY; k <= LINA_FMAP_HEDGEHOG; k++) {
        int parsed = 0;
        all &= lina_fmap_parse(lina_fmap_name((lina_fmap_kind)k), &parsed) == (lina_fmap_kind)k &&
               parsed;
    }
    int bad = 1;
    lina_fmap_parse("softmax", &bad);
    test_report(all && !bad && !strcmp(lina_fmap_name(LINA_FMAP_ELU1), "elu1"),
                "names round-trip, unknown name rejected", "%s", "");
}

/* ---- the identities the maps are built for ---- */

static double dot(const float *a, const float *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

static void test_taylor_identity(void) {
    int D = 16, n = 20, out;
    lina_fmap_desc d = lina_fmap_desc_default(LINA_FMAP_TAYLOR, D);
    out = lina_fmap_out_dim(&d);
    test_rng r;
    rng_seed(&r, 3);
    float *q = alloc_floats(n * D), *k = alloc_floats(n * D);
    float *pq = alloc_floats((size_t)n * out), *pk = alloc_floats((size_t)n * out);
    float got[20], want[20];
    fill_normal(&r, q, n * D, 1.0f);
    fill_normal(&r, k, n * D, 1.0f);
    lina_fmap_forward(NULL, &d, 1, n, 1, q, NULL, NULL, pq);
    lina_fmap_forward(NULL, &d, 1, n, 1, k, NULL, NULL, pk);
    for (int i = 0; i < n; i++) {
        double qk = dot(q + i * D, k + i * D, D);
        want[i] = (float)(1 + qk / sqrt(D) + qk * qk / (2 * D));
        got[i] = (float)dot(pq + (size_t)i * out, pk + (size_t)i * out, out);
    }
    check_close("taylor: phi(q).phi(k) = 1 + q.k/sqrt(D) + (q.k)^2/(2D)", got, want, n, 1e-5);
    free(q), free(k), free(pq), free(pk);
}

static void test_favor_kernel(void) {
    int D = 16, M = 4096, n = 24, seeds = 4;
    lina_fmap_desc d = lina_fmap_desc_default(LINA_FMAP_FAVOR, D);
    d.M = M;
    float *W = alloc_floats((size_t)M * D);
    test_rng r;
    rng_seed(&r, 9);
    float *q = alloc_floats(n * D), *k = alloc_floats(n * D);
    float *pq = alloc_floats((size_t)n * M), *pk = alloc_floats((size_t)n * M);
    fill_normal(&r, q, n * D, 0.25f); /* |q| ~ 1: exp(q.k) in [e^-2, e^2] */
    fill_normal(&r, k, n * D, 0.25f);
    float est[24] = {0}, want[24];
    for (int s = 0; s < seeds; s++) {
        lina_fmap_init_params(&d, 100 + s, W);
        lina_fmap_forward(NULL, &d, 1, n, 1, q, W, NULL, pq);
        lina_fmap_forward(NULL, &d, 1, n, 1, k, W, NULL, pk);
        for (int i = 0; i < n; i++)
            est[i] += (float)dot(pq + (size_t)i * M, pk + (size_t)i * M, M) / seeds;
    }
    for (int i = 0; i < n; i++)
        want[i] = (float)exp(dot(q + i * D, k + i * D, D));
    check_close("favor+: phi(q).phi(k) ~ exp(q.k) with 4 x 4096 features", est, want, n, 0.05);

    /* rows within a block of D are orthogonal, norms are chi(D) (mean ~ sqrt(D)) */
    lina_fmap_init_params(&d, 7, W);
    double worst = 0, mean_sq = 0;
    for (int i = 0; i < D; i++) {
        for (int j = 0; j < i; j++) {
            double c = dot(W + i * D, W + j * D, D) /
                       sqrt(dot(W + i * D, W + i * D, D) * dot(W + j * D, W + j * D, D));
            worst = fmax(worst, fabs(c));
        }
    }
    for (int m = 0; m < M; m++)
        mean_sq += dot(W + (size_t)m * D, W + (size_t)m * D, D) / M;
    test_report(worst < 1e-5 && fabs(mean_sq / D - 1) < 0.05,
                "favor+ init: orthogonal rows within a block, E|w|^2 = D",
                "max |cos| %.2e, mean |w|^2 / D = %.3f", worst, mean_sq / D);
    free(W), free(q), free(k), free(pq), free(pk);
}

/* cos(a_t - a_s) = cos a_t cos a_s + sin a_t sin a_s: phi(q_t).phi(k_s) =
 * relu(q_t).relu(k_s) cos(pi (t - s) / (2M)). */
static void test_cosformer_closed_form(void) {
    int D = 9, T = 40, M = 50;
    lina_fmap_desc d = lina_fmap_desc_default(LINA_FMAP_COSFORMER, D);
    d.M = M;
    test_rng r;
    rng_seed(&r, 21);
    float *q = alloc_floats(T * D), *k = alloc_floats(T * D);
    float *pq = alloc_floats(T * 2 * D), *pk = alloc_floats(T * 2 * D);
    float *got = alloc_floats(T * T), *want = alloc_floats(T * T);
    int32_t pos[40];
    for (int t = 0; t < T; t++)
        pos[t] = t + 10;
    fill_normal(&r, q, T * D, 1.0f);
    fill_normal(&r, k, T * D, 1.0f);
    lina_fmap_forward(NULL, &d, 1, T, 1, q, NULL, pos, pq);
    lina_fmap_forward(NULL, &d, 1, T, 1, k, NULL, pos, pk);
    for (int t = 0; t < T; t++)
        for (int s = 0; s < T; s++) {
            double rr = 0;
            for (int i = 0; i < D; i++)
                rr += fmax(q[t * D + i], 0) * fmax(k[s * D + i], 0);
            want[t * T + s] = (float)(rr * cos(M_PI * (t - s) / (2.0 * M)));
            got[t * T + s] = (float)dot(pq + t * 2 * D, pk + s * 2 * D, 2 * D);
        }
    check_close("cosformer: phi(q_t).phi(k_s) = relu(q).relu(k) cos(pi (t-s) / 2M)", got, want,
                (size_t)T * T, 1e-6);
    free(q), free(k), free(pq), free(pk), free(got), free(want);
}

/* Hedgehog's W starts near the identity (so phi starts as a softmax of x
 * itself), with seeded noise: same seed, same W; another seed, another W. */
static void test_hedgehog_init(void) {
    int D = 8, M = 12;
    lina_fmap_desc d = lina_fmap_desc_default(LINA_FMAP_HEDGEHOG, D);
    d.M = M;
    float *W1 = alloc_floats(D * M), *W2 = alloc_floats(D * M), *W3 = alloc_floats(D * M);
    lina_fmap_init_params(&d, 1, W1);
    lina_fmap_init_params(&d, 1, W2);
    lina_fmap_init_params(&d, 2, W3);
    double off = 0, diag = 0;
    for (int i = 0; i < D; i++)
        for (int m = 0; m < M; m++) {
            double e = W1[i * M + m] - (i == m ? 1.0 : 0.0);
            off = fmax(off, fabs(e));
            if (i == m) diag += W1[i * M + m] / D;
        }
    int seeded = !memcmp(W1, W2, sizeof(float) * D * M) && memcmp(W1, W3, sizeof(float) * D * M);
    test_report(off < 0.1 && off > 0 && fabs(diag - 1) < 0.05 && seeded,
                "hedgehog init: identity plus small seeded noise",
                "max |W - I| %.3f, mean diagonal %.3f, seeded %d", off, diag, seeded);
    free(W1), free(W2), free(W3);
}

/* ---- thread invariance (Hedgehog: GEMMs and the dW reduction) ---- */

static void test_threads(void) {
    int B = 2, T = 300, H = 3, D = 32, M = 100;
    lina_fmap_desc d = lina_fmap_desc_default(LINA_FMAP_HEDGEHOG, D);
    d.M = M;
    size_t rows = (size_t)B * T * H;
    test_rng r;
    rng_seed(&r, 77);
    float *x = alloc_floats(rows * D), *W = alloc_floats(D * M), *dy = alloc_floats(rows * 2 * M);
    float *y[2], *dx[2], *dW[2];
    fill_normal(&r, x, rows * D, 1.0f);
    fill_normal(&r, dy, rows * 2 * M, 1.0f);
    lina_fmap_init_params(&d, 1, W);
    for (int i = 0; i < 2; i++) {
        lina_ctx *ctx;
        lina_ctx_create(&ctx);
        lina_ctx_set_threads(ctx, i + 1);
        y[i] = alloc_floats(rows * 2 * M), dx[i] = alloc_floats(rows * D),
        dW[i] = alloc_floats(D * M);
        lina_fmap_forward(ctx, &d, B, T, H, x, W, NULL, y[i]);
        lina_fmap_backward(ctx, &d, B, T, H, x, W, NULL, dy, dx[i], dW[i]);
        lina_ctx_free(ctx);
    }
    int same = !memcmp(y[0], y[1], rows * 2 * M * 4) && !memcmp(dx[0], dx[1], rows * D * 4) &&
               !memcmp(dW[0], dW[1], (size_t)D * M * 4);
    test_report(same, "hedgehog 1 vs 2 threads bit-identical", "%s", same ? "" : "differ");
    for (int i = 0; i < 2; i++)
        free(y[i]), free(dx[i]), free(dW[i]);
    free(x), free(W), free(dy);
}

/* ---- validation ---- */

static void expect_error(const char *name, lina_status st, lina_status want, const char *needle) {
    int ok = st == want && strstr(lina_last_error(), needle) != NULL;
    test_report(ok, name, "status %d (want %d), message \"%s\" (want \"%s\")", st, want,
                lina_last_error(), needle);
}

static void test_validation(void) {
    float x[64] = {0}, y[512], W[64] = {0};
    lina_fmap_desc d = lina_fmap_desc_default(LINA_FMAP_RELU, 0);
    expect_error("D = 0 rejected", lina_fmap_forward(NULL, &d, 1, 2, 1, x, NULL, NULL, y),
                 LINA_ERR_INVALID_ARG, "D = 0");
    d = lina_fmap_desc_default(LINA_FMAP_DPFP, 4);
    d.nu = 8;
    expect_error("dpfp nu = 2D rejected", lina_fmap_forward(NULL, &d, 1, 2, 1, x, NULL, NULL, y),
                 LINA_ERR_INVALID_ARG, "nu = 8");
    d = lina_fmap_desc_default(LINA_FMAP_FAVOR, 4);
    d.M = 8;
    expect_error("favor without W rejected", lina_fmap_forward(NULL, &d, 1, 2, 1, x, NULL, NULL, y),
                 LINA_ERR_INVALID_ARG, "W is required");
    d = lina_fmap_desc_default(LINA_FMAP_ELU1, 4);
    x[6] = NAN;
    expect_error("NaN in x rejected", lina_fmap_forward(NULL, &d, 1, 2, 1, x, NULL, NULL, y),
                 LINA_ERR_NONFINITE, "x[6]");
    x[6] = 0;
    expect_error("T = 0 rejected", lina_fmap_forward(NULL, &d, 1, 0, 1, x, NULL, NULL, y),
                 LINA_ERR_INVALID_ARG, "T = 0");
    expect_error("NULL y rejected", lina_fmap_forward(NULL, &d, 1, 2, 1, x, NULL, NULL, NULL),
                 LINA_ERR_INVALID_ARG, "y is NULL");
    expect_error("NULL dx rejected",
                 lina_fmap_backward(NULL, &d, 1, 2, 1, x, NULL, NULL, y, NULL, NULL),
                 LINA_ERR_INVALID_ARG, "dx is NULL");
    d = lina_fmap_desc_default(LINA_FMAP_COSFORMER, 4);
    d.M = 5;
    int32_t pos[2] = {1, 6};
    expect_error("cosformer position beyond M rejected",
                 lina_fmap_forward(NULL, &d, 1, 2, 1, x, NULL, pos, y), LINA_ERR_INVALID_ARG,
                 "pos[1] = 6");
    d = lina_fmap_desc_default(LINA_FMAP_L2NORM, 4);
    d.eps = -1;
    expect_error("negative eps rejected", lina_fmap_forward(NULL, &d, 1, 2, 1, x, NULL, NULL, y),
                 LINA_ERR_INVALID_ARG, "eps = -1");
    d.kind = (lina_fmap_kind)42;
    expect_error("unknown kind rejected", lina_fmap_forward(NULL, &d, 1, 2, 1, x, NULL, NULL, y),
                 LINA_ERR_INVALID_ARG, "kind = 42");
    d = lina_fmap_desc_default(LINA_FMAP_HEDGEHOG, 4);
    W[3] = INFINITY;
    expect_error("Inf in W rejected", lina_fmap_forward(NULL, &d, 1, 2, 1, x, W, NULL, y),
                 LINA_ERR_NONFINITE, "W[3]");
}

int main(void) {
    test_maps();
    test_out_dims();
    test_taylor_identity();
    test_favor_kernel();
    test_cosformer_closed_form();
    test_hedgehog_init();
    test_threads();
    test_validation();
    return test_finish();
}
