/* GPU tests of lina_cuda_attn_backward against lina's CPU backward
 * (lina_attn_backward, form RECURRENT: double-precision state) on the same
 * inputs rounded to the input dtype: relative RMS <= 1e-5 (fp32), <= 5e-3
 * (bf16, fp16) for dq, dk, dv, dg, dbeta, dh0. Gradient buffers are poisoned
 * with NaN first, so unwritten elements fail. Needs a CUDA device. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_util.h"

static void *dev_poisoned(size_t n, size_t elem) {
    void *p = NULL;
    if (!n) return NULL;
    CK(cudaMalloc(&p, n * elem));
    CK(cudaMemset(p, 0xff, n * elem)); /* NaN in every dtype */
    return p;
}

static int compare(const char *name, const char *what, const float *gpu, const float *ref, size_t n, double tol) {
    char sub[260];
    snprintf(sub, sizeof sub, "%s: %s", name, what);
    return check_close(sub, gpu, ref, n, tol);
}

/* want_dg = 0: dg passed as NULL (fixed gates), the other gradients still checked. */
static void run_case(const shape_t *s, lina_gate gate, lina_update upd, lina_dtype dt, int with_h0, int with_dht,
                     int want_dg, uint64_t seed) {
    lina_attn_desc d = lina_attn_desc_default();
    d.B = s->B, d.T = s->T, d.H = s->H, d.HV = s->HV, d.K = s->K, d.V = s->V;
    d.gate = gate, d.update = upd, d.cu_seqlens = s->cu, d.n_seqs = s->n_seqs;
    const int HV = s->HV ? s->HV : s->H, N = lina_attn_n_states(&d);
    const size_t tok = (size_t)s->B * s->T, nqk = tok * s->H * s->K, nv = tok * HV * s->V;
    const size_t ng = lina_attn_gate_numel(&d), nb = upd == LINA_UPDATE_DELTA ? tok * HV : 0;
    const size_t ns = (size_t)N * HV * s->K * s->V;
    test_rng r;
    rng_seed(&r, seed);
    float *q = alloc_floats(nqk + 1), *k = alloc_floats(nqk + 1), *v = alloc_floats(nv + 1), *dout = alloc_floats(nv + 1);
    float *g = alloc_floats(ng + 1), *beta = alloc_floats(nb + 1), *h0 = alloc_floats(ns + 1), *dht = alloc_floats(ns + 1);
    fill_normal(&r, q, nqk, 1.0f);
    fill_normal(&r, k, nqk, 1.0f);
    fill_normal(&r, v, nv, 1.0f);
    fill_normal(&r, dout, nv, 1.0f);
    if (upd == LINA_UPDATE_DELTA) {
        l2_normalize_rows(k, tok * s->H, s->K);
        fill_uniform(&r, beta, nb, 0.05f, 1.0f);
    }
    fill_gates(&r, g, ng);
    if (with_h0) fill_normal(&r, h0, ns, 0.5f);
    if (with_dht) fill_normal(&r, dht, ns, 0.5f);

    /* device inputs (rounding the host copies to dt), poisoned gradients */
    void *q_d = to_device(q, nqk, dt), *k_d = to_device(k, nqk, dt), *v_d = to_device(v, nv, dt);
    void *do_d = to_device(dout, nv, dt);
    float *g_d = dev_floats(g, ng), *b_d = dev_floats(beta, nb), *h0_d = with_h0 ? dev_floats(h0, ns) : NULL;
    float *dht_d = with_dht ? dev_floats(dht, ns) : NULL;
    void *dq_d = dev_poisoned(nqk, esize(dt)), *dk_d = dev_poisoned(nqk, esize(dt)), *dv_d = dev_poisoned(nv, esize(dt));
    float *dg_d = (float *)dev_poisoned(ng, 4), *db_d = (float *)dev_poisoned(nb, 4);
    float *dh0_d = (float *)dev_poisoned(ns, 4);

    /* CPU reference on the rounded inputs */
    float *rq = alloc_floats(nqk + 1), *rk = alloc_floats(nqk + 1), *rv = alloc_floats(nv + 1);
    float *rg = alloc_floats(ng + 1), *rb = alloc_floats(nb + 1), *rh0 = alloc_floats(ns + 1);
    lina_attn_desc ref = d;
    ref.form = LINA_FORM_RECURRENT;
    lina_attn_bwd_args ra = {q, k, v, ng ? g : NULL, nb ? beta : NULL, with_h0 ? h0 : NULL, dout,
                             with_dht ? dht : NULL, rq, rk, rv, ng ? rg : NULL, nb ? rb : NULL, rh0};
    lina_status st = lina_attn_backward(NULL, &ref, &ra);
    char name[200];
    const char *impl = getenv("LINA_CUDA_BWD_IMPL");
    snprintf(name, sizeof name, "bwd%s%s %s gate%d %s B%d T%d H%d/%d K%d V%d%s%s%s", impl ? "/" : "",
             impl ? impl : "", dname(dt), (int)gate, upd == LINA_UPDATE_DELTA ? "delta" : "add", s->B, s->T, s->H, HV, s->K,
             s->V, s->cu ? " varlen" : "", with_h0 ? " h0" : "", with_dht ? (want_dg ? " dht" : " dht no-dg") : (want_dg ? "" : " no-dg"));
    if (st != LINA_OK) {
        test_report(0, name, "CPU reference failed: %s", lina_last_error());
    } else {
        lina_cuda_attn_bwd_args ga = {q_d, k_d, v_d, g_d, b_d, h0_d, do_d, dht_d, dq_d, dk_d, dv_d,
                                      want_dg ? dg_d : NULL, db_d, dh0_d};
        st = lina_cuda_attn_backward(&d, dt, &ga, NULL);
        cudaError_t ce = cudaDeviceSynchronize();
        if (st != LINA_OK || ce != cudaSuccess) {
            test_report(0, name, "status %d (%s), cuda %s", st, lina_last_error(), cudaGetErrorString(ce));
        } else {
            const double tol = dt == LINA_DTYPE_F32 ? 1e-5 : 5e-3;
            float *x = alloc_floats((nqk > nv ? nqk : nv) + ns + ng + 1);
            if (nqk) {
                from_device(x, dq_d, nqk, dt);
                compare(name, "dq", x, rq, nqk, tol);
                from_device(x, dk_d, nqk, dt);
                compare(name, "dk", x, rk, nqk, tol);
            }
            if (nv) {
                from_device(x, dv_d, nv, dt);
                compare(name, "dv", x, rv, nv, tol);
            }
            if (ng && want_dg) { /* CONST: one number per head summing T K V products of fp32 states (1.4e-5 seen) */
                CK(cudaMemcpy(x, dg_d, ng * 4, cudaMemcpyDeviceToHost));
                compare(name, "dg", x, rg, ng, gate == LINA_GATE_CONST && dt == LINA_DTYPE_F32 ? 1e-4 : tol);
            }
            if (nb) {
                CK(cudaMemcpy(x, db_d, nb * 4, cudaMemcpyDeviceToHost));
                compare(name, "dbeta", x, rb, nb, tol);
            }
            CK(cudaMemcpy(x, dh0_d, ns * 4, cudaMemcpyDeviceToHost));
            compare(name, "dh0", x, rh0, ns, tol);
            free(x);
        }
    }
    cudaFree(q_d), cudaFree(k_d), cudaFree(v_d), cudaFree(do_d), cudaFree(g_d), cudaFree(b_d), cudaFree(h0_d);
    cudaFree(dht_d), cudaFree(dq_d), cudaFree(dk_d), cudaFree(dv_d), cudaFree(dg_d), cudaFree(db_d), cudaFree(dh0_d);
    free(q), free(k), free(v), free(dout), free(g), free(beta), free(h0), free(dht);
    free(rq), free(rk), free(rv), free(rg), free(rb), free(rh0);
}

static void run_errors(void) {
    lina_attn_desc d = lina_attn_desc_default();
    d.B = 1, d.T = 8, d.H = 1, d.K = 64, d.V = 64, d.gate = LINA_GATE_SCALAR;
    void *buf = NULL;
    CK(cudaMalloc(&buf, 1 << 20));
    float host[64];
    lina_cuda_attn_bwd_args a = {buf, buf, buf, buf, NULL, NULL, buf, NULL, buf, buf, buf, buf, NULL, NULL};
    lina_status st = lina_cuda_attn_backward(&d, LINA_DTYPE_BF16, &a, NULL);
    test_report(st == LINA_OK, "bwd errors: valid call", "status %d %s", st, lina_last_error());
    a.g = NULL;
    st = lina_cuda_attn_backward(&d, LINA_DTYPE_BF16, &a, NULL);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "buffer g"), "bwd errors: gate without g",
                "%d %s", st, lina_last_error());
    a.g = buf;
    a.dq = host;
    st = lina_cuda_attn_backward(&d, LINA_DTYPE_BF16, &a, NULL);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "dq"), "bwd errors: host dq", "%d %s", st,
                lina_last_error());
    a.dq = buf;
    d.update = LINA_UPDATE_DELTA; /* beta and dbeta missing */
    st = lina_cuda_attn_backward(&d, LINA_DTYPE_BF16, &a, NULL);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "beta"), "bwd errors: delta without beta",
                "%d %s", st, lina_last_error());
    d.update = LINA_UPDATE_ADD;
    d.K = 300;
    st = lina_cuda_attn_backward(&d, LINA_DTYPE_BF16, &a, NULL);
    test_report(st == LINA_ERR_UNSUPPORTED && strstr(lina_last_error(), "300"), "bwd errors: K = 300", "%d %s", st,
                lina_last_error());
    d.K = 64;
    d.normalize = 1;
    st = lina_cuda_attn_backward(&d, LINA_DTYPE_BF16, &a, NULL);
    test_report(st == LINA_ERR_UNSUPPORTED, "bwd errors: normalize", "%d %s", st, lina_last_error());
    CK(cudaDeviceSynchronize());
    cudaFree(buf);
}

int main(int argc, char **argv) {
    const int quick = argc > 1 && !strcmp(argv[1], "quick"); /* for compute-sanitizer */
    if (!lina_cuda_available()) {
        printf("FAIL cuda: no CUDA device visible\n");
        return test_finish();
    }
    static const int64_t cu_var[] = {0, 37, 37, 200, 265};
    const shape_t shapes[] = {
        {2, 1, 2, 2, 64, 64, NULL, 0},       {1, 63, 2, 4, 100, 64, NULL, 0},  {2, 65, 2, 2, 128, 128, NULL, 0},
        {1, 1000, 1, 1, 64, 100, NULL, 0},   {1, 265, 1, 2, 128, 128, cu_var, 4}, {1, 130, 1, 1, 256, 256, NULL, 0},
        {2, 150, 2, 4, 40, 72, NULL, 0},     {1, 4096, 1, 1, 128, 128, NULL, 0},
    };
    const int n_shapes = quick ? 3 : (int)(sizeof shapes / sizeof shapes[0]);
    const lina_dtype dts[] = {LINA_DTYPE_F32, LINA_DTYPE_BF16, LINA_DTYPE_F16};
    uint64_t seed = 1000;
    for (int si = 0; si < n_shapes; si++)
        for (int di = 0; di < 3; di++)
            for (int upd = 0; upd < 2; upd++)
                for (int gate = 0; gate < 4; gate++) {
                    if (shapes[si].T >= 4096 && di == 2) continue; /* the long shape: fp32 and bf16 */
                    run_case(&shapes[si], (lina_gate)gate, (lina_update)upd, dts[di], (si + gate) % 2,
                             (si + gate + upd) % 2, 1, seed++);
                }
    /* gates NONE/CONST/SCALAR take chunkwise paths by default (the additive update with
     * HV == H, and the delta rule); the token-by-token kernels on the same cases */
    setenv("LINA_CUDA_BWD_IMPL", "recurrent", 1);
    const int picks[] = {0, 3, 4, 5};
    for (int pi = 0; pi < (quick ? 1 : 4); pi++)
        for (int di = 0; di < 2; di++)
            for (int upd = 0; upd < 2; upd++)
                for (int gate = 0; gate < 3; gate++)
                    run_case(&shapes[picks[pi]], (lina_gate)gate, (lina_update)upd, dts[di], 1, 1, 1, seed++);
    unsetenv("LINA_CUDA_BWD_IMPL");
    /* the chunkwise (cuBLAS) backward with a workspace budget that splits the batch into groups
     * of sequences (a CONST dg sums over the groups) */
    setenv("LINA_CUDA_CHUNK_WS_MB", "0.5", 1);
    const int multi[] = {0, 2, 4, 6};
    for (int pi = 0; pi < (quick ? 1 : 4); pi++)
        for (int upd = 0; upd < 2; upd++)
            for (int gate = 0; gate < 4; gate++)
                run_case(&shapes[multi[pi]], (lina_gate)gate, (lina_update)upd, pi % 2 ? LINA_DTYPE_BF16 : LINA_DTYPE_F32,
                         pi % 2, 1, 1, seed++);
    unsetenv("LINA_CUDA_CHUNK_WS_MB");
    /* the previous SCALAR dg of the additive update (dq, dk from two extra fp32 runs), kept selectable */
    setenv("LINA_CUDA_ADD_DG", "runs", 1);
    for (int pi = 0; pi < (quick ? 1 : 4); pi++)
        run_case(&shapes[picks[pi]], LINA_GATE_SCALAR, LINA_UPDATE_ADD, LINA_DTYPE_BF16, 1, 1, 1, seed++);
    unsetenv("LINA_CUDA_ADD_DG");
    /* fixed gates (dg NULL): the chunkwise paths for CONST/SCALAR in every dtype, token by token
     * for VECTOR */
    for (int pi = 0; pi < (quick ? 1 : 4); pi++)
        for (int di = 0; di < 3; di++)
            for (int upd = 0; upd < 2; upd++)
                for (int gate = 1; gate < 4; gate++)
                    run_case(&shapes[picks[pi]], (lina_gate)gate, (lina_update)upd, dts[di], pi % 2, 1, 0, seed++);
    run_errors();
    return test_finish();
}
