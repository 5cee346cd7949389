/* GPU tests of the CUDA attention API (include/lina/cuda.h) against lina's
 * CPU recurrent reference (src/ops/attn_recurrent.c, double-precision state).
 * Needs a CUDA device; built by `make cuda-tests`, never by CI.
 *
 * For bf16/fp16 the reference runs on the same inputs rounded to 16 bits, so
 * the tolerance measures the kernels' arithmetic, not the input rounding:
 * relative RMS <= 1e-5 (fp32), <= 5e-3 (bf16, fp16). Outputs and final states
 * are poisoned with NaN before each call, so unwritten elements fail. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_util.h"

/* Multiplies the log gates of run_case (1: fill_gates' -e^{U(-7, 3)} down to -20). Milder gates
 * take the VECTOR output kernel's tensor-core diagonal tiles (decay range per 16 tokens below
 * e^60 in bf16, e^8 in fp16), the default ones mostly its exact fp32 sums. */
static float gate_scale = 1.0f;

/* One forward comparison; returns 1 on pass. */
static int run_case(const shape_t *s, lina_gate gate, lina_update upd, lina_dtype dt, lina_form form,
                    int with_h0, uint64_t seed) {
    lina_attn_desc d = lina_attn_desc_default();
    d.B = s->B, d.T = s->T, d.H = s->H, d.HV = s->HV, d.K = s->K, d.V = s->V;
    d.gate = gate, d.update = upd, d.cu_seqlens = s->cu, d.n_seqs = s->n_seqs;
    int HV = s->HV ? s->HV : s->H, N = lina_attn_n_states(&d);
    size_t tok = (size_t)s->B * s->T, nqk = tok * s->H * s->K, nv = tok * HV * s->V;
    size_t ng = lina_attn_gate_numel(&d);
    size_t nb = upd == LINA_UPDATE_DELTA ? tok * HV : 0, ns = (size_t)N * HV * s->K * s->V;
    test_rng r;
    rng_seed(&r, seed);
    float *q = alloc_floats(nqk + 1), *k = alloc_floats(nqk + 1), *v = alloc_floats(nv + 1);
    float *g = alloc_floats(ng + 1), *beta = alloc_floats(nb + 1), *h0 = alloc_floats(ns + 1);
    float *o_ref = alloc_floats(nv + 1), *ht_ref = alloc_floats(ns + 1);
    float *o_gpu = alloc_floats(nv + 1), *ht_gpu = alloc_floats(ns + 1);
    fill_normal(&r, q, nqk, 1.0f);
    fill_normal(&r, k, nqk, 1.0f);
    fill_normal(&r, v, nv, 1.0f);
    if (upd == LINA_UPDATE_DELTA) {
        l2_normalize_rows(k, tok * s->H, s->K);
        fill_uniform(&r, beta, nb, 0.05f, 1.0f);
    }
    fill_gates(&r, g, ng);
    for (size_t i = 0; i < ng; i++) g[i] *= gate_scale;
    if (with_h0) fill_normal(&r, h0, ns, 0.5f);

    void *dq = to_device(q, nqk, dt), *dk = to_device(k, nqk, dt), *dv = to_device(v, nv, dt);
    void *dout = NULL;
    CK(cudaMalloc(&dout, (nv + 1) * esize(dt)));
    CK(cudaMemset(dout, 0xff, (nv + 1) * esize(dt))); /* NaN in every dtype */
    float *dg = dev_floats(g, ng), *dbeta = dev_floats(beta, nb), *dh0 = with_h0 ? dev_floats(h0, ns) : NULL;
    float *dht = dev_floats(NULL, ns);
    CK(cudaMemset(dht, 0xff, ns * 4));

    lina_attn_desc ref = d;
    ref.form = LINA_FORM_RECURRENT;
    lina_attn_fwd_args ra = {q, k, v, ng ? g : NULL, nb ? beta : NULL, with_h0 ? h0 : NULL, o_ref, ht_ref};
    lina_status st = lina_attn_forward(NULL, &ref, &ra);
    char name[200];
    snprintf(name, sizeof name, "%s gate%d %s B%d T%d H%d/%d K%d V%d%s%s%s", dname(dt), (int)gate,
             upd == LINA_UPDATE_DELTA ? "delta" : "add", s->B, s->T, s->H, HV, s->K, s->V,
             s->cu ? " varlen" : "", with_h0 ? " h0" : "", form == LINA_FORM_RECURRENT ? " rec" : "");
    if (st != LINA_OK) {
        test_report(0, name, "CPU reference failed: %s", lina_last_error());
        return 0;
    }
    d.form = form;
    lina_cuda_attn_fwd_args ga = {dq, dk, dv, dg, dbeta, dh0, dout, dht};
    st = lina_cuda_attn_forward(&d, dt, &ga, NULL);
    cudaError_t ce = cudaDeviceSynchronize();
    if (st != LINA_OK || ce != cudaSuccess) {
        test_report(0, name, "status %d (%s), cuda %s", st, lina_last_error(), cudaGetErrorString(ce));
        return 0;
    }
    from_device(o_gpu, dout, nv, dt);
    CK(cudaMemcpy(ht_gpu, dht, ns * 4, cudaMemcpyDeviceToHost));
    double tol = dt == LINA_DTYPE_F32 ? 1e-5 : 5e-3;
    int ok = 1;
    char sub[240];
    if (nv) {
        snprintf(sub, sizeof sub, "%s: o", name);
        ok &= check_close(sub, o_gpu, o_ref, nv, tol);
    }
    snprintf(sub, sizeof sub, "%s: ht", name);
    ok &= check_close(sub, ht_gpu, ht_ref, ns, tol);

    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dout), cudaFree(dg), cudaFree(dbeta);
    cudaFree(dh0), cudaFree(dht);
    free(q), free(k), free(v), free(g), free(beta), free(h0), free(o_ref), free(ht_ref), free(o_gpu), free(ht_gpu);
    return ok;
}

/* Decode steps on the GPU == lina_attn_step on the CPU, 5 tokens in a row. */
static void run_step(lina_gate gate, lina_update upd, lina_dtype dt, int K, int V) {
    const int N = 3, H = 2, HV = 4, steps = 5;
    lina_attn_desc d = lina_attn_desc_default();
    d.B = N, d.T = 1, d.H = H, d.HV = HV, d.K = K, d.V = V, d.gate = gate, d.update = upd;
    size_t nqk = (size_t)N * H * K, nv = (size_t)N * HV * V, ns = (size_t)N * HV * K * V;
    size_t ng = lina_attn_gate_numel(&d); /* T = 1: one token per sequence */
    test_rng r;
    rng_seed(&r, 77 + gate * 10 + upd);
    float *S = alloc_floats(ns), *o = alloc_floats(nv), *og = alloc_floats(nv), *Sg = alloc_floats(ns);
    fill_normal(&r, S, ns, 0.3f);
    float *dS = dev_floats(S, ns);
    void *dout = NULL;
    CK(cudaMalloc(&dout, nv * esize(dt)));
    int ok = 1;
    char name[120];
    const char *impl = getenv("LINA_CUDA_STEP_IMPL");
    snprintf(name, sizeof name, "step %s gate%d %s K%d V%d%s", dname(dt), (int)gate, upd ? "delta" : "add", K, V,
             impl ? " (recurrent kernel)" : "");
    for (int t = 0; t < steps && ok; t++) {
        float *q = alloc_floats(nqk), *k = alloc_floats(nqk), *v = alloc_floats(nv);
        float *g = alloc_floats(ng + 1), *beta = alloc_floats(nv / V + 1);
        fill_normal(&r, q, nqk, 1), fill_normal(&r, k, nqk, 1), fill_normal(&r, v, nv, 1);
        if (upd == LINA_UPDATE_DELTA) l2_normalize_rows(k, (size_t)N * H, K);
        fill_uniform(&r, beta, (size_t)N * HV, 0.1f, 1.0f);
        fill_gates(&r, g, ng);
        void *dq = to_device(q, nqk, dt), *dk = to_device(k, nqk, dt), *dv = to_device(v, nv, dt);
        float *dg = dev_floats(g, ng), *db = dev_floats(beta, (size_t)N * HV);
        lina_status s1 = lina_attn_step(NULL, &d, q, k, v, ng ? g : NULL, beta, S, o);
        lina_status s2 = lina_cuda_attn_step(&d, dt, dq, dk, dv, dg, db, dS, dout, NULL);
        CK(cudaDeviceSynchronize());
        if (s1 != LINA_OK || s2 != LINA_OK) {
            test_report(0, name, "status %d / %d: %s", s1, s2, lina_last_error());
            ok = 0;
        }
        from_device(og, dout, nv, dt);
        double tol = dt == LINA_DTYPE_F32 ? 1e-5 : 5e-3;
        if (ok && rel_rms(og, o, nv) > tol) {
            test_report(0, name, "step %d: o rel_rms %.3e", t, rel_rms(og, o, nv));
            ok = 0;
        }
        cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dg), cudaFree(db);
        free(q), free(k), free(v), free(g), free(beta);
    }
    CK(cudaMemcpy(Sg, dS, ns * 4, cudaMemcpyDeviceToHost));
    if (ok) check_close(name, Sg, S, ns, dt == LINA_DTYPE_F32 ? 1e-5 : 5e-3);
    cudaFree(dS), cudaFree(dout);
    free(S), free(o), free(og), free(Sg);
}

/* Bad input is refused with the right status and a message, never run. */
static void run_errors(void) {
    lina_attn_desc d = lina_attn_desc_default();
    d.B = 1, d.T = 8, d.H = 1, d.K = 64, d.V = 64;
    void *buf = NULL;
    CK(cudaMalloc(&buf, 1 << 20));
    float host[64];
    lina_cuda_attn_fwd_args a = {buf, buf, buf, NULL, NULL, NULL, buf, NULL};
    lina_status st = lina_cuda_attn_forward(&d, LINA_DTYPE_BF16, &a, NULL);
    test_report(st == LINA_OK, "errors: valid call", "status %d %s", st, lina_last_error());
    a.q = NULL;
    st = lina_cuda_attn_forward(&d, LINA_DTYPE_BF16, &a, NULL);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "q"), "errors: NULL q", "%d %s", st,
                lina_last_error());
    a.q = host;
    st = lina_cuda_attn_forward(&d, LINA_DTYPE_BF16, &a, NULL);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "host"), "errors: host q", "%d %s", st,
                lina_last_error());
    a.q = buf;
    d.K = 300;
    st = lina_cuda_attn_forward(&d, LINA_DTYPE_BF16, &a, NULL);
    test_report(st == LINA_ERR_UNSUPPORTED && strstr(lina_last_error(), "300"), "errors: K = 300", "%d %s", st,
                lina_last_error());
    d.K = 64;
    st = lina_cuda_attn_forward(&d, LINA_DTYPE_I32, &a, NULL);
    test_report(st == LINA_ERR_UNSUPPORTED, "errors: dtype I32", "%d %s", st, lina_last_error());
    d.normalize = 1;
    st = lina_cuda_attn_forward(&d, LINA_DTYPE_F32, &a, NULL);
    test_report(st == LINA_ERR_UNSUPPORTED, "errors: normalize", "%d %s", st, lina_last_error());
    d.normalize = 0;
    d.gate = LINA_GATE_SCALAR;
    st = lina_cuda_attn_forward(&d, LINA_DTYPE_F32, &a, NULL);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "g"), "errors: gate without g", "%d %s",
                st, lina_last_error());
    d.gate = LINA_GATE_NONE;
    int64_t cu[3] = {0, 5, 7};
    d.cu_seqlens = cu, d.n_seqs = 2;
    st = lina_cuda_attn_forward(&d, LINA_DTYPE_F32, &a, NULL);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "cu_seqlens"), "errors: cu_seqlens end",
                "%d %s", st, lina_last_error());
    d.cu_seqlens = NULL;
    d.B = 1 << 20, d.HV = 4096, d.H = 4096, d.T = 1;
    st = lina_cuda_attn_forward(&d, LINA_DTYPE_F32, &a, NULL);
    test_report(st == LINA_ERR_UNSUPPORTED && strstr(lina_last_error(), "grid"), "errors: grid overflow",
                "%d %s", st, lina_last_error());
    CK(cudaDeviceSynchronize());
    cudaFree(buf);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "quick"); /* for compute-sanitizer */
    if (!lina_cuda_available()) {
        printf("FAIL cuda: no CUDA device visible\n");
        return test_finish();
    }
    static const int64_t cu_var[] = {0, 37, 37, 200, 265};
    const shape_t shapes[] = {
        {2, 1, 2, 2, 64, 64, NULL, 0},      {1, 63, 2, 4, 100, 64, NULL, 0},
        {2, 65, 2, 2, 128, 128, NULL, 0},   {1, 1000, 1, 1, 64, 100, NULL, 0},
        {1, 265, 1, 2, 128, 128, cu_var, 4}, {1, 130, 1, 1, 256, 256, NULL, 0},
        {1, 4096, 1, 1, 128, 128, NULL, 0}, {2, 150, 2, 4, 40, 72, NULL, 0},
    };
    const int n_shapes = quick ? 3 : (int)(sizeof shapes / sizeof shapes[0]);
    const lina_dtype dts[] = {LINA_DTYPE_F32, LINA_DTYPE_BF16, LINA_DTYPE_F16};
    uint64_t seed = 1;
    for (int si = 0; si < n_shapes; si++)
        for (int di = 0; di < 3; di++)
            for (int upd = 0; upd < 2; upd++)
                for (int gate = 0; gate < 4; gate++) {
                    const shape_t *s = &shapes[si];
                    run_case(s, (lina_gate)gate, (lina_update)upd, dts[di], LINA_FORM_AUTO, (si + gate) % 2, seed++);
                }
    /* the cuBLAS chunk path (KDA, fp32 delta rules, fp32 VECTOR gates) with a workspace budget
     * that splits the batch into groups of sequences; then those cases on the previous kernels */
    for (int pass = 0; pass < 2; pass++) {
        setenv(pass ? "LINA_CUDA_BLAS_FWD" : "LINA_CUDA_CHUNK_WS_MB", pass ? "0" : "0.5", 1);
        const int multi[] = {0, 2, 4, 7};
        for (int pi = 0; pi < (quick ? 1 : 4); pi++)
            for (int gate = 0; gate < 4; gate++) {
                run_case(&shapes[multi[pi]], (lina_gate)gate, LINA_UPDATE_DELTA, LINA_DTYPE_F32, LINA_FORM_AUTO, pi % 2, seed++);
                if (gate == LINA_GATE_VECTOR) {
                    run_case(&shapes[multi[pi]], LINA_GATE_VECTOR, LINA_UPDATE_DELTA, LINA_DTYPE_BF16, LINA_FORM_AUTO, 1, seed++);
                    run_case(&shapes[multi[pi]], LINA_GATE_VECTOR, LINA_UPDATE_ADD, LINA_DTYPE_F32, LINA_FORM_AUTO, 0, seed++);
                }
            }
        unsetenv(pass ? "LINA_CUDA_BLAS_FWD" : "LINA_CUDA_CHUNK_WS_MB");
    }
    /* the one-pass kernel (the 16-bit default for K <= 128) with forced segments: states-only pass,
     * scan, outputs from the segment starts (odd segment lengths; varlen with an empty sequence) */
    for (int segs = 2; segs <= 7; segs += 5) {
        char val[8];
        snprintf(val, sizeof val, "%d", segs);
        setenv("LINA_CUDA_FUSED_SEGS", val, 1);
        const int picks[] = {2, 3, 4, 6, 7};
        for (int pi = 0; pi < (quick ? 1 : 5); pi++)
            for (int gate = 0; gate < 3; gate++)
                run_case(&shapes[picks[pi]], (lina_gate)gate, LINA_UPDATE_ADD, gate == 1 ? LINA_DTYPE_F16 : LINA_DTYPE_BF16,
                         LINA_FORM_AUTO, (pi + gate + 1) % 2, seed++);
    }
    unsetenv("LINA_CUDA_FUSED_SEGS");
    /* the one-pass delta rule on small shapes too (by default it needs >= 1.5 blocks per SM) */
    setenv("LINA_CUDA_FUSED", "1", 1);
    for (int si = 0; si < n_shapes; si++)
        for (int gate = 0; gate < 3; gate++)
            if (shapes[si].K <= 128)
                run_case(&shapes[si], (lina_gate)gate, LINA_UPDATE_DELTA, gate == 1 ? LINA_DTYPE_F16 : LINA_DTYPE_BF16,
                         LINA_FORM_AUTO, (si + gate) % 2, seed++);
    unsetenv("LINA_CUDA_FUSED");
    /* the split kernels (a state per chunk through global memory), kept selectable */
    setenv("LINA_CUDA_FUSED", "0", 1);
    /* the 16-bit additive states kernel with every value tile (small shapes pick 16 by themselves) */
    for (int bv = 32; bv <= 64; bv *= 2) {
        char val[8];
        snprintf(val, sizeof val, "%d", bv);
        setenv("LINA_CUDA_STATE_BV", val, 1);
        const int picks[] = {1, 3, 4, 5, 7};
        for (int pi = 0; pi < (quick ? 1 : 5); pi++)
            for (int gate = 0; gate < 3; gate++)
                run_case(&shapes[picks[pi]], (lina_gate)gate, LINA_UPDATE_ADD, gate == 1 ? LINA_DTYPE_F16 : LINA_DTYPE_BF16,
                         LINA_FORM_AUTO, (pi + gate) % 2, seed++);
    }
    unsetenv("LINA_CUDA_STATE_BV");
    /* the 16-bit delta rule's states pass with every value tile */
    for (int bv = 32; bv <= 64; bv *= 2) {
        char val[8];
        snprintf(val, sizeof val, "%d", bv);
        setenv("LINA_CUDA_DELTA_BV", val, 1);
        const int picks[] = {1, 3, 4, 5, 7};
        for (int pi = 0; pi < (quick ? 1 : 5); pi++)
            for (int gate = 0; gate < 3; gate++)
                run_case(&shapes[picks[pi]], (lina_gate)gate, LINA_UPDATE_DELTA,
                         gate == 1 ? LINA_DTYPE_F16 : LINA_DTYPE_BF16, LINA_FORM_AUTO, (pi + gate) % 2, seed++);
    }
    unsetenv("LINA_CUDA_DELTA_BV");
    /* the delta rule's overlapped schedule (WY, states, outputs per time segment on three
     * streams, the state carried between segments) with even and uneven segments; varlen falls back */
    for (int segs = 3; segs <= 7; segs += 4) {
        char val[8];
        snprintf(val, sizeof val, "%d", segs);
        setenv("LINA_CUDA_DELTA_SEGS", val, 1);
        setenv("LINA_CUDA_DELTA_UNROLL", segs == 7 ? "1" : "0", 1); /* both forms of the states pass's W S */
        if (segs == 7) /* uneven segments (seg_bounds), at least one chunk each */
            setenv("LINA_CUDA_DELTA_SEGW", "1,9,2,5,0.5,3,1", 1);
        const int picks[] = {2, 3, 4, 5, 6, 7};
        for (int pi = 0; pi < (quick ? 2 : 6); pi++)
            for (int gate = 0; gate < 3; gate++)
                run_case(&shapes[picks[pi]], (lina_gate)gate, LINA_UPDATE_DELTA,
                         gate == 1 ? LINA_DTYPE_F16 : LINA_DTYPE_BF16, LINA_FORM_AUTO, (pi + gate + segs) % 2, seed++);
    }
    unsetenv("LINA_CUDA_DELTA_SEGS");
    unsetenv("LINA_CUDA_DELTA_UNROLL");
    unsetenv("LINA_CUDA_DELTA_SEGW");
    /* states blocks of one 32-column tile (4 warps; the default at BV = 32 is two, with partial
     * second halves at V = 72 and 100 in the loops above), alone and in the overlapped windows */
    setenv("LINA_CUDA_DELTA_WH", "1", 1);
    setenv("LINA_CUDA_DELTA_BV", "32", 1);
    for (int segs = 1; segs <= 3; segs += 2) {
        setenv("LINA_CUDA_DELTA_SEGS", segs == 3 ? "3" : "1", 1);
        const int picks[] = {1, 3, 4, 6, 7};
        for (int pi = 0; pi < (quick ? 2 : 5); pi++)
            for (int gate = 0; gate < 3; gate++)
                run_case(&shapes[picks[pi]], (lina_gate)gate, LINA_UPDATE_DELTA,
                         gate == 1 ? LINA_DTYPE_F16 : LINA_DTYPE_BF16, LINA_FORM_AUTO, (pi + gate + segs) % 2, seed++);
    }
    unsetenv("LINA_CUDA_DELTA_SEGS");
    unsetenv("LINA_CUDA_DELTA_BV");
    unsetenv("LINA_CUDA_DELTA_WH");
    unsetenv("LINA_CUDA_FUSED");
    /* the fused one-block delta kernel for 16-bit inputs, kept selectable */
    setenv("LINA_CUDA_DELTA_IMPL", "fused", 1);
    for (int gate = 0; gate < 3; gate++)
        run_case(&shapes[quick ? 2 : 4], (lina_gate)gate, LINA_UPDATE_DELTA, LINA_DTYPE_BF16, LINA_FORM_AUTO, 1, seed++);
    unsetenv("LINA_CUDA_DELTA_IMPL");
    /* 16-bit VECTOR gates with milder decays: the output kernel's tensor-core diagonal tiles */
    for (int gs = 0; gs < 2; gs++) {
        gate_scale = gs == 0 ? 0.02f : 0.2f;
        for (int si = 0; si < n_shapes; si++)
            for (int di = 1; di < 3; di++)
                run_case(&shapes[si], LINA_GATE_VECTOR, LINA_UPDATE_ADD, dts[di], LINA_FORM_AUTO, (si + di + gs) % 2, seed++);
    }
    gate_scale = 1.0f;
    /* 16-bit VECTOR gates (GLA) through the token-by-token kernel (the chunk kernels are the default) */
    setenv("LINA_CUDA_VECTOR_IMPL", "recurrent", 1);
    for (int si = 0; si < (quick ? 1 : 4); si++)
        for (int di = 1; di < 3; di++)
            run_case(&shapes[si], LINA_GATE_VECTOR, LINA_UPDATE_ADD, dts[di], LINA_FORM_AUTO, (si + di) % 2, seed++);
    unsetenv("LINA_CUDA_VECTOR_IMPL");
    /* the previous 16-bit additive kernels (WMMA on shared memory), kept selectable */
    setenv("LINA_CUDA_ADD_IMPL", "wmma", 1);
    for (int gate = 0; gate < 3; gate++) {
        run_case(&shapes[2], (lina_gate)gate, LINA_UPDATE_ADD, LINA_DTYPE_BF16, LINA_FORM_AUTO, gate % 2, seed++);
        if (!quick) run_case(&shapes[4], (lina_gate)gate, LINA_UPDATE_ADD, LINA_DTYPE_F16, LINA_FORM_AUTO, 1, seed++);
    }
    unsetenv("LINA_CUDA_ADD_IMPL");
    /* the token-by-token kernel on the non-vector gates too */
    for (int gate = 0; gate < 3; gate++)
        run_case(&shapes[1], (lina_gate)gate, LINA_UPDATE_DELTA, LINA_DTYPE_F32, LINA_FORM_RECURRENT, 1, seed++);
    for (int di = 0; di < 3; di++)
        for (int upd = 0; upd < 2; upd++)
            for (int gate = 0; gate < 4; gate++) {
                /* the step kernel (K <= 128, V % 4 == 0; partial column blocks at V = 72), the
                 * general kernel where it does not apply (K = 256, V = 66) and forced */
                run_step((lina_gate)gate, (lina_update)upd, dts[di], 100, 72);
                run_step((lina_gate)gate, (lina_update)upd, dts[di], 128, 128);
                if (quick) continue;
                run_step((lina_gate)gate, (lina_update)upd, dts[di], 256, 66);
                setenv("LINA_CUDA_STEP_IMPL", "recurrent", 1);
                run_step((lina_gate)gate, (lina_update)upd, dts[di], 100, 72);
                unsetenv("LINA_CUDA_STEP_IMPL");
            }
    run_errors();
    return test_finish();
}
