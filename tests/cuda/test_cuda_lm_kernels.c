/* GPU tests of the language model's device kernels (src/cuda/lm_kernels.cu, lm_kernels.h; the
 * softmax attention ones are in test_cuda_lm_softmax.c) against the CPU layer functions they
 * mirror (src/layers, src/training) or, where the CPU code is inline in a larger function
 * (mixer gates, the normalize ones column, AdamW), a copy of its loop here. Needs a CUDA device;
 * built by `make cuda-tests`, never by CI.
 *
 * Odd sizes throughout (D not a multiple of 32, odd head dims, more rows than one reduction
 * block). Outputs the functions overwrite are poisoned with NaN first, so unwritten elements fail;
 * accumulated outputs start from random values on both sides. Tolerances (relative RMS): 1e-5 for
 * elementwise and row ops, 1e-4 for sums over rows into parameter gradients (fp32 atomics in
 * another order than the CPU's sequential sums). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/lm_kernels.h"
#include "cuda_util.h"
#include "layers/layers.h"

#define TOL 1e-5
#define TOL_SUM 1e-4
/* A row of one element normalizes to +-1 and its input gradient is the cancellation
 * residue dy r (1 - y^2) ~ eps r dy: relative errors of ~1e-3 are rounding of that difference. */
#define TOL_D1 5e-3

/* ---- device buffers of one test (freed by free_all) ---- */
static void *track[64];
static int n_track;

static void *dalloc(size_t bytes) {
    void *d = NULL;
    CK(cudaMalloc(&d, bytes ? bytes : 4));
    if (n_track < 64) track[n_track++] = d;
    return d;
}
static void free_all(void) {
    for (int i = 0; i < n_track; i++) cudaFree(track[i]);
    n_track = 0;
}
static float *up(const float *h, size_t n) {
    float *d = dalloc(n * 4);
    if (n) CK(cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice));
    return d;
}
static int32_t *up_i32(const int32_t *h, size_t n) {
    int32_t *d = dalloc(n * 4);
    if (n) CK(cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice));
    return d;
}
static float *poison(size_t n) {
    float *d = dalloc(n * 4);
    CK(cudaMemset(d, 0xff, n ? n * 4 : 4)); /* NaN */
    return d;
}
/* sync, surface launch errors, copy back */
static void down(float *h, const float *d, size_t n) {
    CK(cudaDeviceSynchronize());
    CK(cudaGetLastError());
    if (n) CK(cudaMemcpy(h, d, n * 4, cudaMemcpyDeviceToHost));
}
static float *randn(test_rng *r, size_t n, float std) {
    float *x = alloc_floats(n + 1);
    fill_normal(r, x, n, std);
    return x;
}
static float *copy(const float *x, size_t n) {
    float *y = alloc_floats(n + 1);
    memcpy(y, x, n * 4);
    return y;
}

/* ---- embedding ---- */
static void test_embedding(int N, int D, int vocab) {
    test_rng r;
    rng_seed(&r, 1);
    char name[128];
    int32_t *tok = malloc(sizeof(int32_t) * N);
    for (int n = 0; n < N; n++) tok[n] = (int32_t)(rng_uniform(&r) * vocab) % vocab; /* repeats */
    float *E = randn(&r, (size_t)vocab * D, 1), *dx = randn(&r, (size_t)N * D, 1);
    float *dE = randn(&r, (size_t)vocab * D, 1), *x_ref = alloc_floats((size_t)N * D);
    float *x_gpu = alloc_floats((size_t)N * D), *dE_gpu = alloc_floats((size_t)vocab * D);
    int32_t *d_tok = up_i32(tok, N);
    float *d_E = up(E, (size_t)vocab * D), *d_x = poison((size_t)N * D), *d_dx = up(dx, (size_t)N * D);
    float *d_dE = up(dE, (size_t)vocab * D);
    lk_embedding_forward(N, D, d_tok, d_E, d_x, 0);
    lk_embedding_backward(N, D, d_tok, d_dx, d_dE, 0);
    lina_embedding_forward(N, D, tok, E, x_ref);
    lina_embedding_backward(N, D, tok, dx, dE);
    down(x_gpu, d_x, (size_t)N * D);
    down(dE_gpu, d_dE, (size_t)vocab * D);
    snprintf(name, sizeof name, "embedding forward N%d D%d", N, D);
    check_close(name, x_gpu, x_ref, (size_t)N * D, TOL);
    snprintf(name, sizeof name, "embedding backward dE (accumulated) N%d D%d vocab %d", N, D, vocab);
    check_close(name, dE_gpu, dE, (size_t)vocab * D, TOL_SUM);
    free(tok), free(E), free(dx), free(dE), free(x_ref), free(x_gpu), free(dE_gpu);
    free_all();
}

/* ---- RMSNorm, gated RMSNorm (gated: 0 plain launchers, 1 gated with z, 2 gated with z NULL) ---- */
static void test_rmsnorm(int N, int D, int gated) {
    test_rng r;
    rng_seed(&r, 2 + N + D);
    char name[160];
    const char *kind = gated == 0 ? "rmsnorm" : gated == 1 ? "gated rmsnorm" : "gated rmsnorm (z NULL)";
    size_t nd = (size_t)N * D;
    const float eps = 1e-5f;
    float *x = randn(&r, nd, 1), *z = gated == 1 ? randn(&r, nd, 1.5f) : NULL, *w = randn(&r, D, 1);
    float *dy = randn(&r, nd, 1), *dx = randn(&r, nd, 1), *dz = alloc_floats(nd), *dw = randn(&r, D, 1);
    float *y_ref = alloc_floats(nd), *rstd_ref = alloc_floats(N);
    float *y_gpu = alloc_floats(nd), *rstd_gpu = alloc_floats(N), *dx_gpu = alloc_floats(nd);
    float *dz_gpu = alloc_floats(nd), *dw_gpu = alloc_floats(D);
    float *d_x = up(x, nd), *d_z = z ? up(z, nd) : NULL, *d_w = up(w, D), *d_y = poison(nd), *d_rstd = poison(N);
    float *d_dy = up(dy, nd), *d_dx = gated ? poison(nd) : up(dx, nd), *d_dz = poison(nd), *d_dw = up(dw, D);

    if (gated) lk_gated_rmsnorm_forward(N, D, d_x, d_z, d_w, eps, d_y, d_rstd, 0);
    else lk_rmsnorm_forward(N, D, d_x, d_w, eps, d_y, d_rstd, 0);
    down(y_gpu, d_y, nd);
    down(rstd_gpu, d_rstd, N);
    if (gated) lina_gated_rmsnorm_forward(N, D, x, z, w, eps, y_ref, rstd_ref, 1);
    else lina_rmsnorm_forward(N, D, x, w, eps, y_ref, rstd_ref, 1);
    snprintf(name, sizeof name, "%s forward y N%d D%d", kind, N, D);
    check_close(name, y_gpu, y_ref, nd, TOL);
    snprintf(name, sizeof name, "%s forward rstd N%d D%d", kind, N, D);
    check_close(name, rstd_gpu, rstd_ref, N, TOL);

    /* backward from the CPU's rstd, so it is tested on its own */
    CK(cudaMemcpy(d_rstd, rstd_ref, (size_t)N * 4, cudaMemcpyHostToDevice));
    if (gated) lk_gated_rmsnorm_backward(N, D, d_x, d_z, d_w, d_rstd, d_dy, d_dx, d_dz, d_dw, 0);
    else lk_rmsnorm_backward(N, D, d_x, d_w, d_rstd, d_dy, d_dx, d_dw, 0);
    down(dx_gpu, d_dx, nd);
    down(dw_gpu, d_dw, D);
    if (gated) lina_gated_rmsnorm_backward(N, D, x, z, w, rstd_ref, dy, dx, dz, dw, 1);
    else lina_rmsnorm_backward(N, D, x, w, rstd_ref, dy, dx, dw, 1);
    snprintf(name, sizeof name, "%s backward dx (%s) N%d D%d", kind, gated ? "overwritten" : "accumulated", N, D);
    check_close(name, dx_gpu, dx, nd, D == 1 ? TOL_D1 : TOL);
    snprintf(name, sizeof name, "%s backward dw (accumulated) N%d D%d", kind, N, D);
    check_close(name, dw_gpu, dw, D, TOL_SUM);
    if (z) {
        down(dz_gpu, d_dz, nd);
        snprintf(name, sizeof name, "%s backward dz N%d D%d", kind, N, D);
        check_close(name, dz_gpu, dz, nd, TOL);
    }
    free(x), free(z), free(w), free(dy), free(dx), free(dz), free(dw), free(y_ref), free(rstd_ref);
    free(y_gpu), free(rstd_gpu), free(dx_gpu), free(dz_gpu), free(dw_gpu);
    free_all();
}

/* ---- L2 norm ---- */
static void test_l2norm(int N, int D) {
    test_rng r;
    rng_seed(&r, 3 + D);
    char name[128];
    size_t nd = (size_t)N * D;
    const float eps = 1e-6f;
    float *x = randn(&r, nd, 1), *dy = randn(&r, nd, 1);
    float *y_ref = alloc_floats(nd), *rn_ref = alloc_floats(N), *dx_ref = alloc_floats(nd);
    float *y_gpu = alloc_floats(nd), *rn_gpu = alloc_floats(N), *dx_gpu = alloc_floats(nd);
    float *d_x = up(x, nd), *d_y = poison(nd), *d_rn = poison(N), *d_dy = up(dy, nd), *d_dx = poison(nd);
    lk_l2norm_forward(N, D, d_x, eps, d_y, d_rn, 0);
    down(y_gpu, d_y, nd);
    down(rn_gpu, d_rn, N);
    lina_l2norm_forward(N, D, x, eps, y_ref, rn_ref, 1);
    snprintf(name, sizeof name, "l2norm forward y N%d D%d", N, D);
    check_close(name, y_gpu, y_ref, nd, TOL);
    snprintf(name, sizeof name, "l2norm forward rnorm N%d D%d", N, D);
    check_close(name, rn_gpu, rn_ref, N, TOL);
    CK(cudaMemcpy(d_y, y_ref, nd * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_rn, rn_ref, (size_t)N * 4, cudaMemcpyHostToDevice));
    lk_l2norm_backward(N, D, d_y, d_rn, d_dy, d_dx, 0);
    down(dx_gpu, d_dx, nd);
    lina_l2norm_backward(N, D, y_ref, rn_ref, dy, dx_ref, 1);
    snprintf(name, sizeof name, "l2norm backward dx N%d D%d", N, D);
    check_close(name, dx_gpu, dx_ref, nd, D == 1 ? TOL_D1 : TOL);
    free(x), free(dy), free(y_ref), free(rn_ref), free(dx_ref), free(y_gpu), free(rn_gpu), free(dx_gpu);
    free_all();
}

/* ---- causal conv (no history) ---- */
static void test_conv(int B, int T, int C, int W) {
    test_rng r;
    rng_seed(&r, 4 + T + W);
    char name[160];
    size_t n = (size_t)B * T * C, nw = (size_t)C * W;
    float *x = randn(&r, n, 1), *w = randn(&r, nw, 0.5f), *dy = randn(&r, n, 1), *dw = randn(&r, nw, 1);
    float *c_ref = alloc_floats(n), *y_ref = alloc_floats(n), *dc_ref = alloc_floats(n), *dx_ref = alloc_floats(n);
    float *c_gpu = alloc_floats(n), *y_gpu = alloc_floats(n), *dc_gpu = alloc_floats(n), *dx_gpu = alloc_floats(n);
    float *dw_gpu = alloc_floats(nw);
    float *d_x = up(x, n), *d_w = up(w, nw), *d_c = poison(n), *d_y = poison(n), *d_dy = up(dy, n);
    float *d_dc = poison(n), *d_dx = poison(n), *d_dw = up(dw, nw);
    lk_conv_forward(B, T, C, W, d_x, d_w, d_c, d_y, 0);
    down(c_gpu, d_c, n);
    down(y_gpu, d_y, n);
    lina_conv_forward(B, T, C, W, x, w, NULL, c_ref, y_ref, 1);
    snprintf(name, sizeof name, "conv forward c B%d T%d C%d W%d", B, T, C, W);
    check_close(name, c_gpu, c_ref, n, TOL);
    snprintf(name, sizeof name, "conv forward y B%d T%d C%d W%d", B, T, C, W);
    check_close(name, y_gpu, y_ref, n, TOL);
    CK(cudaMemcpy(d_c, c_ref, n * 4, cudaMemcpyHostToDevice));
    lk_conv_backward(B, T, C, W, d_x, d_w, d_c, d_dy, d_dc, d_dx, d_dw, 0);
    down(dc_gpu, d_dc, n);
    down(dx_gpu, d_dx, n);
    down(dw_gpu, d_dw, nw);
    lina_conv_backward(B, T, C, W, x, w, NULL, c_ref, dy, dc_ref, dx_ref, dw, 1);
    snprintf(name, sizeof name, "conv backward dc B%d T%d C%d W%d", B, T, C, W);
    check_close(name, dc_gpu, dc_ref, n, TOL);
    snprintf(name, sizeof name, "conv backward dx B%d T%d C%d W%d", B, T, C, W);
    check_close(name, dx_gpu, dx_ref, n, TOL);
    snprintf(name, sizeof name, "conv backward dw (accumulated) B%d T%d C%d W%d", B, T, C, W);
    check_close(name, dw_gpu, dw, nw, TOL_SUM);
    free(x), free(w), free(dy), free(dw), free(c_ref), free(y_ref), free(dc_ref), free(dx_ref);
    free(c_gpu), free(y_gpu), free(dc_gpu), free(dx_gpu), free(dw_gpu);
    free_all();
}

/* ---- rotary ---- */
static void test_rotary(int B, int T, int H, int D, int pos0, int inverse) {
    test_rng r;
    rng_seed(&r, 5 + D);
    char name[160];
    size_t n = (size_t)B * T * H * D;
    float *x = randn(&r, n, 1), *ref = copy(x, n), *got = alloc_floats(n);
    float *d_x = up(x, n);
    lk_rotary_apply(B, T, H, D, 10000.0f, pos0, d_x, inverse, 0);
    down(got, d_x, n);
    lina_rotary_apply(B, T, H, D, 10000.0f, pos0, ref, inverse, 1);
    snprintf(name, sizeof name, "rotary%s B%d T%d H%d D%d pos0 %d", inverse ? " inverse" : "", B, T, H, D, pos0);
    check_close(name, got, ref, n, TOL);
    free(x), free(ref), free(got);
    free_all();
}

/* ---- elementwise ---- */
static void test_elementwise(size_t n) {
    test_rng r;
    rng_seed(&r, 6);
    char name[128];
    float *a = randn(&r, n, 2), *b = randn(&r, n, 1), *dy = randn(&r, n, 1), *y = randn(&r, n, 1);
    float *ref = alloc_floats(n), *ref2 = alloc_floats(n), *got = alloc_floats(n), *got2 = alloc_floats(n);
    float *d_a = up(a, n), *d_b = up(b, n), *d_dy = up(dy, n), *d_out = poison(n), *d_out2 = poison(n);
    float *d_y = up(y, n);

#define EW_CHECK(label, tol)                                          \
    do {                                                              \
        down(got, d_out, n);                                          \
        snprintf(name, sizeof name, "%s n%zu", label, n);             \
        check_close(name, got, ref, n, tol);                          \
        CK(cudaMemset(d_out, 0xff, n * 4));                           \
    } while (0)

    lk_add(n, d_a, d_b, d_out, 0);
    for (size_t i = 0; i < n; i++) ref[i] = a[i] + b[i];
    EW_CHECK("add", TOL);
    CK(cudaMemcpy(d_out, a, n * 4, cudaMemcpyHostToDevice));
    lk_add(n, d_out, d_b, d_out, 0); /* y aliases a */
    EW_CHECK("add (y aliases a)", TOL);

    CK(cudaMemcpy(d_out, y, n * 4, cudaMemcpyHostToDevice));
    lk_scale(n, -0.37f, d_out, 0);
    for (size_t i = 0; i < n; i++) ref[i] = y[i] * -0.37f;
    EW_CHECK("scale", TOL);

    lk_swiglu_forward(n, d_a, d_b, d_out, 0);
    for (size_t i = 0; i < n; i++) ref[i] = lina_siluf(a[i]) * b[i];
    EW_CHECK("swiglu forward", TOL);

    /* backward with da aliasing dh, as mlp.c */
    CK(cudaMemcpy(d_out, dy, n * 4, cudaMemcpyHostToDevice));
    lk_swiglu_backward(n, d_a, d_b, d_out, d_out, d_out2, 0);
    for (size_t i = 0; i < n; i++) {
        ref2[i] = dy[i] * lina_siluf(a[i]);
        ref[i] = dy[i] * b[i] * lina_silu_grad(a[i]);
    }
    down(got2, d_out2, n);
    snprintf(name, sizeof name, "swiglu backward db n%zu", n);
    check_close(name, got2, ref2, n, TOL);
    EW_CHECK("swiglu backward da (aliases dh)", TOL);
    lk_swiglu_backward(n, d_a, d_b, d_dy, d_out, d_out2, 0);
    EW_CHECK("swiglu backward da", TOL);

    lk_sigmoid_forward(n, d_a, d_out, 0);
    for (size_t i = 0; i < n; i++) ref[i] = lina_sigmoidf(a[i]);
    EW_CHECK("sigmoid forward", TOL);
    for (size_t i = 0; i < n; i++) ref2[i] = lina_sigmoidf(a[i]);
    CK(cudaMemcpy(d_y, ref2, n * 4, cudaMemcpyHostToDevice));
    lk_sigmoid_backward(n, d_y, d_dy, d_out, 0);
    for (size_t i = 0; i < n; i++) ref[i] = dy[i] * ref2[i] * (1.0f - ref2[i]);
    EW_CHECK("sigmoid backward", TOL);

    lk_elu1_forward(n, d_a, d_out, 0);
    for (size_t i = 0; i < n; i++) ref[i] = a[i] > 0 ? a[i] + 1.0f : expf(a[i]);
    EW_CHECK("elu1 forward", TOL);
    lk_elu1_backward(n, d_a, d_dy, d_out, 0);
    for (size_t i = 0; i < n; i++) ref[i] = dy[i] * (a[i] > 0 ? 1.0f : expf(a[i]));
    EW_CHECK("elu1 backward", TOL);

    /* GLA gate: g = logsigmoid(gl) / 16, dgl = dg sigmoid(-gl) / 16 (mixer_linear.c); gl large
     * enough to reach the softplus cut at 20 */
    for (size_t i = 0; i < n; i++) ref2[i] = 15.0f * a[i];
    CK(cudaMemcpy(d_y, ref2, n * 4, cudaMemcpyHostToDevice));
    lk_gla_gate_forward(n, d_y, d_out, 0);
    for (size_t i = 0; i < n; i++) ref[i] = lina_logsigmoidf(ref2[i]) / 16.0f;
    EW_CHECK("gla gate forward", TOL);
    lk_gla_gate_backward(n, d_y, d_dy, d_out, 0);
    for (size_t i = 0; i < n; i++) ref[i] = dy[i] * lina_sigmoidf(-ref2[i]) / 16.0f;
    EW_CHECK("gla gate backward", TOL);
#undef EW_CHECK
    free(a), free(b), free(dy), free(y), free(ref), free(ref2), free(got), free(got2);
    free_all();
}

/* ---- bias ---- */
static void test_bias(int N, int out) {
    test_rng r;
    rng_seed(&r, 7 + N);
    char name[128];
    size_t n = (size_t)N * out;
    float *b = randn(&r, out, 1), *y = randn(&r, n, 1), *dy = randn(&r, n, 1), *db = randn(&r, out, 1);
    float *y_gpu = alloc_floats(n), *db_gpu = alloc_floats(out), *db_ref = copy(db, out);
    float *d_b = up(b, out), *d_y = up(y, n), *d_dy = up(dy, n), *d_db = up(db, out);
    lk_add_bias(N, out, d_b, d_y, 0);
    lk_bias_backward(N, out, d_dy, d_db, 0);
    down(y_gpu, d_y, n);
    down(db_gpu, d_db, out);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < out; j++) {
            y[(size_t)i * out + j] += b[j];
            db_ref[j] += dy[(size_t)i * out + j];
        }
    snprintf(name, sizeof name, "add_bias N%d out%d", N, out);
    check_close(name, y_gpu, y, n, TOL);
    snprintf(name, sizeof name, "bias_backward (accumulated) N%d out%d", N, out);
    check_close(name, db_gpu, db_ref, out, TOL_SUM);
    free(b), free(y), free(dy), free(db), free(y_gpu), free(db_gpu), free(db_ref);
    free_all();
}

/* ---- Mamba2 / GDN scalar gate (mixer_linear.c) ---- */
static void test_scalar_gate(int N, int H) {
    test_rng r;
    rng_seed(&r, 8 + N);
    char name[128];
    size_t n = (size_t)N * H;
    float *a = randn(&r, n, 3), *dt_bias = randn(&r, H, 1), *A_log = randn(&r, H, 1), *dg = randn(&r, n, 1);
    float *dA_log = randn(&r, H, 1), *ddt = randn(&r, H, 1), *g = alloc_floats(n), *da = alloc_floats(n);
    for (int i = 0; i < 7 && (size_t)i < n; i++) a[i] = 25.0f - 2.0f * i; /* both sides of the softplus cut */
    float *a_gpu = alloc_floats(n), *g_gpu = alloc_floats(n), *da_gpu = alloc_floats(n);
    float *dA_gpu = alloc_floats(H), *ddt_gpu = alloc_floats(H);
    float *d_a = up(a, n), *d_dtb = up(dt_bias, H), *d_Alog = up(A_log, H), *d_g = poison(n), *d_dg = up(dg, n);
    float *d_da = poison(n), *d_dA = up(dA_log, H), *d_ddt = up(ddt, H);
    lk_scalar_gate_forward(N, H, d_a, d_dtb, d_Alog, d_g, 0);
    down(a_gpu, d_a, n);
    down(g_gpu, d_g, n);
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++) {
            float *ai = a + (size_t)i * H + h;
            *ai += dt_bias[h];
            g[(size_t)i * H + h] = -expf(A_log[h]) * lina_softplusf(*ai);
        }
    snprintf(name, sizeof name, "scalar gate forward a (in place) N%d H%d", N, H);
    check_close(name, a_gpu, a, n, TOL);
    snprintf(name, sizeof name, "scalar gate forward g N%d H%d", N, H);
    check_close(name, g_gpu, g, n, TOL);
    CK(cudaMemcpy(d_g, g, n * 4, cudaMemcpyHostToDevice));
    lk_scalar_gate_backward(N, H, d_dg, d_g, d_a, d_Alog, d_da, d_dA, d_ddt, 0);
    down(da_gpu, d_da, n);
    down(dA_gpu, d_dA, H);
    down(ddt_gpu, d_ddt, H);
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++) {
            size_t k = (size_t)i * H + h;
            dA_log[h] += dg[k] * g[k];
            da[k] = dg[k] * -expf(A_log[h]) * lina_sigmoidf(a[k]);
            ddt[h] += da[k];
        }
    snprintf(name, sizeof name, "scalar gate backward da N%d H%d", N, H);
    check_close(name, da_gpu, da, n, TOL);
    snprintf(name, sizeof name, "scalar gate backward dA_log (accumulated) N%d H%d", N, H);
    check_close(name, dA_gpu, dA_log, H, TOL_SUM);
    snprintf(name, sizeof name, "scalar gate backward ddt_bias (accumulated) N%d H%d", N, H);
    check_close(name, ddt_gpu, ddt, H, TOL_SUM);
    free(a), free(dt_bias), free(A_log), free(dg), free(dA_log), free(ddt), free(g), free(da);
    free(a_gpu), free(g_gpu), free(da_gpu), free(dA_gpu), free(ddt_gpu);
    free_all();
}

/* ---- normalized attention's ones column (attn.c normalize_output and the backward's da) ---- */
static void test_normalize(int R, int V) {
    test_rng r;
    rng_seed(&r, 9 + V);
    char name[128];
    const float eps = 1e-6f;
    size_t nv = (size_t)R * V, na = (size_t)R * (V + 1);
    float *v = randn(&r, nv, 1), *oaug = randn(&r, na, 1), *dout = randn(&r, nv, 1);
    for (int i = 0; i < R; i++) oaug[(size_t)i * (V + 1) + V] = 0.5f + 2.0f * rng_uniform(&r); /* den > 0 */
    float *ref = alloc_floats(na), *got = alloc_floats(na), *o = alloc_floats(nv);
    float *d_v = up(v, nv), *d_vaug = poison(na), *d_oaug = up(oaug, na), *d_out = poison(nv);
    float *d_do = up(dout, nv), *d_doaug = poison(na);

    lk_append_ones(R, V, d_v, d_vaug, 0);
    down(got, d_vaug, na);
    for (int i = 0; i < R; i++)
        for (int c = 0; c <= V; c++) ref[(size_t)i * (V + 1) + c] = c < V ? v[(size_t)i * V + c] : 1.0f;
    snprintf(name, sizeof name, "append_ones R%d V%d", R, V);
    check_close(name, got, ref, na, TOL);

    lk_drop_last_column(R, V, d_oaug, d_out, 0);
    down(got, d_out, nv);
    for (int i = 0; i < R; i++)
        for (int c = 0; c < V; c++) ref[(size_t)i * V + c] = oaug[(size_t)i * (V + 1) + c];
    snprintf(name, sizeof name, "drop_last_column R%d V%d", R, V);
    check_close(name, got, ref, nv, TOL);

    CK(cudaMemset(d_out, 0xff, nv * 4));
    lk_normalize_forward(R, V, d_oaug, eps, d_out, 0);
    down(got, d_out, nv);
    for (int i = 0; i < R; i++) {
        float den = oaug[(size_t)i * (V + 1) + V] + eps;
        for (int c = 0; c < V; c++) o[(size_t)i * V + c] = oaug[(size_t)i * (V + 1) + c] / den;
    }
    snprintf(name, sizeof name, "normalize forward R%d V%d", R, V);
    check_close(name, got, o, nv, TOL);

    /* backward as attn.c: dnum = do / den, dden = -(do . num) / den^2 */
    CK(cudaMemcpy(d_out, o, nv * 4, cudaMemcpyHostToDevice));
    lk_normalize_backward(R, V, d_oaug, eps, d_out, d_do, d_doaug, 0);
    down(got, d_doaug, na);
    for (int i = 0; i < R; i++) {
        const float *num = oaug + (size_t)i * (V + 1);
        float den = num[V] + eps, dot = 0;
        for (int c = 0; c < V; c++) {
            ref[(size_t)i * (V + 1) + c] = dout[(size_t)i * V + c] / den;
            dot += dout[(size_t)i * V + c] * num[c];
        }
        ref[(size_t)i * (V + 1) + V] = -dot / (den * den);
    }
    snprintf(name, sizeof name, "normalize backward R%d V%d", R, V);
    check_close(name, got, ref, na, TOL);
    free(v), free(oaug), free(dout), free(ref), free(got), free(o);
    free_all();
}

/* ---- LM head rows and cross-entropy ---- */
static void test_rows_ce(int N, int S, int D, int V) {
    test_rng r;
    rng_seed(&r, 10 + V);
    char name[128];
    int32_t *rows = malloc(sizeof(int32_t) * S), *targets = malloc(sizeof(int32_t) * S);
    for (int i = 0; i < S; i++) rows[i] = (int32_t)((size_t)i * N / S + (i % 2)); /* distinct, increasing */
    for (int i = 0; i < S; i++) targets[i] = (int32_t)(rng_uniform(&r) * V) % V;
    targets[0] = 0, targets[S - 1] = V - 1;
    size_t nx = (size_t)N * D, ns = (size_t)S * D, nl = (size_t)S * V;
    float *x = randn(&r, nx, 1), *xs = randn(&r, ns, 1), *ref = alloc_floats(nx), *got = alloc_floats(nx);
    int32_t *d_rows = up_i32(rows, S), *d_t = up_i32(targets, S);
    float *d_x = up(x, nx), *d_xs = poison(ns), *d_xz = dalloc(nx * 4);

    lk_gather_rows(S, D, d_rows, d_x, d_xs, 0);
    down(got, d_xs, ns);
    for (int i = 0; i < S; i++) memcpy(ref + (size_t)i * D, x + (size_t)rows[i] * D, (size_t)D * 4);
    snprintf(name, sizeof name, "gather_rows S%d D%d", S, D);
    check_close(name, got, ref, ns, TOL);

    CK(cudaMemset(d_xz, 0, nx * 4));
    CK(cudaMemcpy(d_xs, xs, ns * 4, cudaMemcpyHostToDevice));
    lk_scatter_rows(S, D, d_rows, d_xs, d_xz, 0);
    down(got, d_xz, nx);
    memset(ref, 0, nx * 4);
    for (int i = 0; i < S; i++) memcpy(ref + (size_t)rows[i] * D, xs + (size_t)i * D, (size_t)D * 4);
    snprintf(name, sizeof name, "scatter_rows S%d D%d", S, D);
    check_close(name, got, ref, nx, TOL);

    float *logits = randn(&r, nl, 3), *probs = alloc_floats(nl), *pg = alloc_floats(nl);
    float *loss = alloc_floats(S), *loss_ref = alloc_floats(S), *dl = alloc_floats(nl);
    float *d_l = up(logits, nl), *d_loss = poison(S);
    lk_cross_entropy_forward(S, V, d_l, d_t, d_loss, 0);
    down(pg, d_l, nl);
    down(loss, d_loss, S);
    int n_valid = 0;
    lina_cross_entropy_forward(S, V, logits, targets, probs, &n_valid, 1);
    for (int i = 0; i < S; i++) {
        float pt = probs[(size_t)i * V + targets[i]];
        loss_ref[i] = (float)-log(pt > 1e-30f ? (double)pt : 1e-30);
    }
    snprintf(name, sizeof name, "cross_entropy forward probs S%d V%d", S, V);
    check_close(name, pg, probs, nl, TOL);
    snprintf(name, sizeof name, "cross_entropy forward loss S%d V%d", S, V);
    check_close(name, loss, loss_ref, S, TOL);

    const float scale = 0.37f / S;
    CK(cudaMemcpy(d_l, probs, nl * 4, cudaMemcpyHostToDevice));
    lk_cross_entropy_backward(S, V, d_l, d_t, scale, 0);
    down(pg, d_l, nl);
    lina_cross_entropy_backward(S, V, probs, targets, 1, scale, dl, 1); /* n_valid 1: scale as is */
    snprintf(name, sizeof name, "cross_entropy backward S%d V%d", S, V);
    check_close(name, pg, dl, nl, TOL);
    free(rows), free(targets), free(x), free(xs), free(ref), free(got), free(logits), free(probs), free(pg);
    free(loss), free(loss_ref), free(dl);
    free_all();
}

/* ---- optimizer ---- */
static void test_sum_squares(size_t n) {
    test_rng r;
    rng_seed(&r, 11);
    char name[128];
    float *x = randn(&r, n, 1);
    double ref = 0, got = -1;
    for (size_t i = 0; i < n; i++) ref += (double)x[i] * x[i];
    float *d_x = up(x, n);
    double *d_out = dalloc(sizeof(double));
    CK(cudaMemset(d_out, 0xff, sizeof(double)));
    lk_sum_squares(n, n ? d_x : NULL, d_out, 0);
    CK(cudaDeviceSynchronize());
    CK(cudaGetLastError());
    CK(cudaMemcpy(&got, d_out, sizeof(double), cudaMemcpyDeviceToHost));
    double err = ref ? fabs(got - ref) / ref : fabs(got);
    snprintf(name, sizeof name, "sum_squares n%zu", n);
    test_report(err <= 1e-12, name, "got %.17g ref %.17g (rel %.1e, tol 1e-12)", got, ref, err);
    free(x);
    free_all();
}

static void test_adamw(size_t n) {
    test_rng r;
    rng_seed(&r, 12);
    char name[128];
    float *p = randn(&r, n, 1), *m = alloc_floats(n), *v = alloc_floats(n), *g = alloc_floats(n);
    uint8_t *decay = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) decay[i] = rng_uniform(&r) < 0.6f;
    float *got = alloc_floats(n);
    float *d_p = up(p, n), *d_m = up(m, n), *d_v = up(v, n), *d_g = dalloc(n * 4);
    uint8_t *d_decay = dalloc(n);
    CK(cudaMemcpy(d_decay, decay, n, cudaMemcpyHostToDevice));
    const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    for (int t = 1; t <= 3; t++) {
        fill_normal(&r, g, n, 0.1f);
        CK(cudaMemcpy(d_g, g, n * 4, cudaMemcpyHostToDevice));
        float bc1 = 1.0f - powf(b1, (float)t), bc2 = 1.0f - powf(b2, (float)t);
        lk_adamw_step(n, d_p, d_g, d_m, d_v, d_decay, lr, b1, b2, eps, wd, bc1, bc2, 0);
        for (size_t i = 0; i < n; i++) { /* adamw.c lina_adamw_step */
            float gi = g[i];
            float mi = m[i] = b1 * m[i] + (1.0f - b1) * gi;
            float vi = v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
            float upd = (mi / bc1) / (sqrtf(vi / bc2) + eps);
            if (decay[i]) upd += wd * p[i];
            p[i] -= lr * upd;
        }
    }
    down(got, d_p, n);
    snprintf(name, sizeof name, "adamw p after 3 steps n%zu", n);
    check_close(name, got, p, n, TOL);
    down(got, d_m, n);
    snprintf(name, sizeof name, "adamw m n%zu", n);
    check_close(name, got, m, n, TOL);
    down(got, d_v, n);
    snprintf(name, sizeof name, "adamw v n%zu", n);
    check_close(name, got, v, n, TOL);
    free(p), free(m), free(v), free(g), free(decay), free(got);
    free_all();
}

/* ---- empty sizes: no launch, no error ---- */
static void test_empty(void) {
    lk_embedding_forward(0, 8, NULL, NULL, NULL, 0);
    lk_embedding_backward(0, 8, NULL, NULL, NULL, 0);
    lk_rmsnorm_forward(0, 8, NULL, NULL, 1e-5f, NULL, NULL, 0);
    lk_rmsnorm_backward(0, 8, NULL, NULL, NULL, NULL, NULL, NULL, 0);
    lk_gated_rmsnorm_forward(0, 8, NULL, NULL, NULL, 1e-5f, NULL, NULL, 0);
    lk_gated_rmsnorm_backward(0, 8, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0);
    lk_l2norm_forward(0, 8, NULL, 1e-6f, NULL, NULL, 0);
    lk_l2norm_backward(0, 8, NULL, NULL, NULL, NULL, 0);
    lk_conv_forward(0, 5, 8, 4, NULL, NULL, NULL, NULL, 0);
    lk_conv_backward(2, 0, 8, 4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0);
    lk_rotary_apply(0, 5, 2, 8, 1e4f, 0, NULL, 0, 0);
    lk_add(0, NULL, NULL, NULL, 0);
    lk_scale(0, 2.0f, NULL, 0);
    lk_swiglu_forward(0, NULL, NULL, NULL, 0);
    lk_swiglu_backward(0, NULL, NULL, NULL, NULL, NULL, 0);
    lk_sigmoid_forward(0, NULL, NULL, 0);
    lk_sigmoid_backward(0, NULL, NULL, NULL, 0);
    lk_elu1_forward(0, NULL, NULL, 0);
    lk_elu1_backward(0, NULL, NULL, NULL, 0);
    lk_add_bias(0, 8, NULL, NULL, 0);
    lk_bias_backward(0, 8, NULL, NULL, 0);
    lk_scalar_gate_forward(0, 4, NULL, NULL, NULL, NULL, 0);
    lk_scalar_gate_backward(0, 4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0);
    lk_gla_gate_forward(0, NULL, NULL, 0);
    lk_gla_gate_backward(0, NULL, NULL, NULL, 0);
    lk_append_ones(0, 8, NULL, NULL, 0);
    lk_normalize_forward(0, 8, NULL, 1e-6f, NULL, 0);
    lk_normalize_backward(0, 8, NULL, 1e-6f, NULL, NULL, NULL, 0);
    lk_drop_last_column(0, 8, NULL, NULL, 0);
    lk_gather_rows(0, 8, NULL, NULL, NULL, 0);
    lk_scatter_rows(0, 8, NULL, NULL, NULL, 0);
    lk_cross_entropy_forward(0, 8, NULL, NULL, NULL, 0);
    lk_cross_entropy_backward(0, 8, NULL, NULL, 1.0f, 0);
    lk_adamw_step(0, NULL, NULL, NULL, NULL, NULL, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.1f, 0.05f, 0);
    cudaError_t e1 = cudaGetLastError(), e2 = cudaDeviceSynchronize();
    test_report(e1 == cudaSuccess && e2 == cudaSuccess, "empty sizes launch nothing", "%s / %s",
                cudaGetErrorString(e1), cudaGetErrorString(e2));
}

int main(void) {
    test_embedding(37, 100, 11);
    test_embedding(300, 33, 5);

    static const int nd[][2] = {{37, 100}, {300, 37}, {3, 1025}, {2000, 33}, {5, 1}};
    for (int i = 0; i < 5; i++) {
        for (int gated = 0; gated < 3; gated++) test_rmsnorm(nd[i][0], nd[i][1], gated);
        test_l2norm(nd[i][0], nd[i][1]);
    }

    test_conv(3, 45, 70, 4);
    test_conv(2, 2, 33, 3); /* T < W - 1 */
    test_conv(1, 300, 5, 4);

    for (int inv = 0; inv < 2; inv++) {
        test_rotary(2, 9, 3, 38, 5, inv);
        test_rotary(1, 45, 2, 37, 0, inv); /* odd D: the last column stays */
    }
    test_rotary(3, 4, 3, 38, 1000, 0);

    test_elementwise(1003);
    test_elementwise(1);
    test_bias(37, 100);
    test_bias(1000, 7);

    test_scalar_gate(37, 5);
    test_scalar_gate(3001, 3);

    test_normalize(111, 20);
    test_normalize(7, 65);

    test_rows_ce(100, 29, 70, 1001);
    test_rows_ce(40, 3, 5, 17);

    test_sum_squares(100003);
    test_sum_squares(7);
    test_sum_squares(0);
    test_adamw(1003);

    test_empty();
    return test_finish();
}
