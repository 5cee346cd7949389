/* GPU tests of the causal softmax attention launchers lk_softmax_forward / lk_softmax_backward
 * (src/cuda/lm_softmax.cu) against lina's CPU lina_softmax_forward / lina_softmax_backward
 * (causal, HKV = H, scale 1/sqrt(K): the mixer_softmax.c case): relative RMS <= 1e-5 for o,
 * lse, dq, dk, dv. Outputs and the workspace are poisoned with NaN first, so unwritten or
 * unmasked elements fail; a guard zone after the workspace must come back untouched. The
 * backward gets the CPU's o and lse, so it is checked on its own. Needs a CUDA device. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>

#include "cuda/lm_kernels.h"
#include "cuda_util.h"

#define TOL 1e-5
#define GUARD 4096 /* floats after the workspace that must stay as written */

static float *dev_poisoned(size_t n) {
    float *p = NULL;
    CK(cudaMalloc((void **)&p, (n ? n : 1) * sizeof(float)));
    CK(cudaMemset(p, 0xff, (n ? n : 1) * sizeof(float))); /* NaN */
    return p;
}

static void fetch(float *x, const float *d, size_t n) { CK(cudaMemcpy(x, d, n * sizeof(float), cudaMemcpyDeviceToHost)); }

/* At T = 1 the exact dq and dk are 0 (P = 1, dS = dP - D = 0): both sides hold rounding noise,
 * so the relative check would compare noise with noise. There the error is measured against
 * unit-sized entries instead: ||got - ref|| / sqrt(n) <= tol. */
static void check_abs(const char *name, const float *got, const float *ref, size_t n, double tol) {
    double e = 0;
    for (size_t i = 0; i < n; i++) e += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
    e = n ? sqrt(e / (double)n) : 0;
    test_report(e <= tol, name, "rms |got - ref| = %.3g > %.3g", e, tol);
}

static int guard_intact(const float *ws_d, size_t ws) {
    float g[GUARD];
    fetch(g, ws_d + ws, GUARD);
    for (int i = 0; i < GUARD; i++)
        if (g[i] != 12345.0f) return 0;
    return 1;
}

static void run_case(cublasHandle_t blas, cudaStream_t st, int B, int T, int H, int K, int V, uint64_t seed) {
    char name[160], sub[200];
    snprintf(name, sizeof name, "lm_softmax B%d T%d H%d K%d V%d", B, T, H, K, V);
    const size_t nq = (size_t)B * T * H * K, nv = (size_t)B * T * H * V, nl = (size_t)B * T * H;
    test_rng r;
    rng_seed(&r, seed);
    float *q = alloc_floats(nq), *k = alloc_floats(nq), *v = alloc_floats(nv), *dout = alloc_floats(nv);
    fill_normal(&r, q, nq, 1.0f);
    fill_normal(&r, k, nq, 1.0f);
    fill_normal(&r, v, nv, 1.0f);
    fill_normal(&r, dout, nv, 1.0f);

    /* CPU reference */
    lina_softmax_desc d = lina_softmax_desc_default();
    d.B = B, d.T = T, d.H = H, d.HKV = H, d.K = K, d.V = V;
    float *ro = alloc_floats(nv), *rl = alloc_floats(nl);
    float *rdq = alloc_floats(nq), *rdk = alloc_floats(nq), *rdv = alloc_floats(nv);
    lina_status s1 = lina_softmax_forward(NULL, &d, q, k, v, ro, rl);
    lina_status s2 = s1 == LINA_OK ? lina_softmax_backward(NULL, &d, q, k, v, ro, rl, dout, rdq, rdk, rdv) : s1;
    if (s2 != LINA_OK) {
        test_report(0, name, "CPU reference failed: %s", lina_last_error());
        free(q), free(k), free(v), free(dout), free(ro), free(rl), free(rdq), free(rdk), free(rdv);
        return;
    }

    /* device: inputs, poisoned outputs, workspace poisoned with a guard zone after it */
    const size_t ws = lk_softmax_ws_floats(B, T, H);
    float *q_d = dev_floats(q, nq), *k_d = dev_floats(k, nq), *v_d = dev_floats(v, nv), *do_d = dev_floats(dout, nv);
    float *o_d = dev_poisoned(nv), *l_d = dev_poisoned(nl), *ws_d = dev_poisoned(ws + GUARD);
    float *dq_d = dev_poisoned(nq), *dk_d = dev_poisoned(nq), *dv_d = dev_poisoned(nv);
    float *ro_d = dev_floats(ro, nv), *rl_d = dev_floats(rl, nl);
    {
        float g[GUARD];
        for (int i = 0; i < GUARD; i++) g[i] = 12345.0f;
        CK(cudaMemcpy(ws_d + ws, g, sizeof g, cudaMemcpyHostToDevice));
    }
    float *x = alloc_floats(nq > nv ? nq : nv);

    lk_softmax_forward(blas, B, T, H, K, V, q_d, k_d, v_d, o_d, l_d, ws_d, st);
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(st));
    fetch(x, o_d, nv);
    snprintf(sub, sizeof sub, "%s: o", name);
    check_close(sub, x, ro, nv, TOL);
    fetch(x, l_d, nl);
    snprintf(sub, sizeof sub, "%s: lse", name);
    check_close(sub, x, rl, nl, TOL);

    /* the backward must not rely on what the forward left in ws */
    CK(cudaMemset(ws_d, 0xff, ws * sizeof(float)));
    lk_softmax_backward(blas, B, T, H, K, V, q_d, k_d, v_d, ro_d, rl_d, do_d, dq_d, dk_d, dv_d, ws_d, st);
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(st));
    fetch(x, dq_d, nq);
    snprintf(sub, sizeof sub, "%s: dq", name);
    if (T == 1) check_abs(sub, x, rdq, nq, TOL);
    else check_close(sub, x, rdq, nq, TOL);
    fetch(x, dk_d, nq);
    snprintf(sub, sizeof sub, "%s: dk", name);
    if (T == 1) check_abs(sub, x, rdk, nq, TOL);
    else check_close(sub, x, rdk, nq, TOL);
    fetch(x, dv_d, nv);
    snprintf(sub, sizeof sub, "%s: dv", name);
    check_close(sub, x, rdv, nv, TOL);
    snprintf(sub, sizeof sub, "%s: workspace bound", name);
    test_report(guard_intact(ws_d, ws), sub, "wrote past lk_softmax_ws_floats = %zu floats", ws);

    free(x);
    cudaFree(q_d), cudaFree(k_d), cudaFree(v_d), cudaFree(do_d), cudaFree(o_d), cudaFree(l_d), cudaFree(ws_d);
    cudaFree(dq_d), cudaFree(dk_d), cudaFree(dv_d), cudaFree(ro_d), cudaFree(rl_d);
    free(q), free(k), free(v), free(dout), free(ro), free(rl), free(rdq), free(rdk), free(rdv);
}

int main(void) {
    if (!lina_cuda_available()) {
        printf("FAIL cuda: no CUDA device visible\n");
        return test_finish();
    }
    cublasHandle_t blas;
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(blas, st) != CUBLAS_STATUS_SUCCESS) {
        printf("FAIL cublas: no handle\n");
        return test_finish();
    }
    static const int shapes[][5] = {
        /* B, T, H, K, V */
        {1, 1, 1, 16, 16},   {1, 1, 2, 37, 37},   {2, 45, 3, 37, 37},  {3, 128, 2, 64, 64},
        {2, 33, 1, 16, 16},  {1, 100, 2, 48, 80}, {2, 64, 8, 128, 128}, {4, 257, 4, 32, 32},
        {32, 64, 4, 64, 64}, {32, 512, 8, 64, 64}, {1, 2048, 2, 64, 64},
    };
    uint64_t seed = 7000;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        run_case(blas, st, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4], seed++);
    /* the model's handle may be in TF32 mode for its projections (LINA_CUDA_TF32=1): attention
     * must stay fp32 (TF32 scores miss 1e-5 by far) and hand the mode back unchanged */
    cublasMath_t mode = CUBLAS_DEFAULT_MATH;
    if (cublasSetMathMode(blas, CUBLAS_TF32_TENSOR_OP_MATH) == CUBLAS_STATUS_SUCCESS) {
        printf("# handle in CUBLAS_TF32_TENSOR_OP_MATH:\n");
        run_case(blas, st, 3, 128, 2, 64, 64, seed++);
        cublasGetMathMode(blas, &mode);
    }
    test_report(mode == CUBLAS_TF32_TENSOR_OP_MATH, "lm_softmax: handle math mode restored", "mode %d", (int)mode);
    cublasDestroy(blas);
    cudaStreamDestroy(st);
    return test_finish();
}
