/* Helpers shared by the GPU tests (cuda_util.h). */
#include "cuda_util.h"

#include <math.h>
#include <string.h>

size_t esize(lina_dtype dt) { return dt == LINA_DTYPE_F32 ? 4 : 2; }
const char *dname(lina_dtype dt) {
    return dt == LINA_DTYPE_F32 ? "f32" : dt == LINA_DTYPE_BF16 ? "bf16" : "f16";
}

/* Round x in place to dtype's precision and return a device copy in dtype. */
void *to_device(float *x, size_t n, lina_dtype dt) {
    void *d = NULL;
    if (!n) return NULL;
    CK(cudaMalloc(&d, n * esize(dt)));
    if (dt == LINA_DTYPE_F32) {
        CK(cudaMemcpy(d, x, n * 4, cudaMemcpyHostToDevice));
        return d;
    }
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        h[i] = dt == LINA_DTYPE_BF16 ? lina_f32_to_bf16(x[i]) : lina_f32_to_f16(x[i]);
        x[i] = dt == LINA_DTYPE_BF16 ? lina_bf16_to_f32(h[i]) : lina_f16_to_f32(h[i]);
    }
    CK(cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

void from_device(float *x, const void *d, size_t n, lina_dtype dt) {
    if (dt == LINA_DTYPE_F32) {
        CK(cudaMemcpy(x, d, n * 4, cudaMemcpyDeviceToHost));
        return;
    }
    uint16_t *h = malloc(n * 2);
    CK(cudaMemcpy(h, d, n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) x[i] = dt == LINA_DTYPE_BF16 ? lina_bf16_to_f32(h[i]) : lina_f16_to_f32(h[i]);
    free(h);
}

float *dev_floats(const float *x, size_t n) {
    float *d = NULL;
    if (!n) return NULL;
    CK(cudaMalloc((void **)&d, n * 4));
    if (x) CK(cudaMemcpy(d, x, n * 4, cudaMemcpyHostToDevice));
    return d;
}


void fill_gates(test_rng *r, float *g, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = -expf(-7.0f + 10.0f * rng_uniform(r));
        g[i] = x < -20.0f ? -20.0f : x;
    }
}

void l2_normalize_rows(float *x, size_t rows, int K) {
    for (size_t r = 0; r < rows; r++) {
        double s = 0;
        for (int i = 0; i < K; i++) s += (double)x[r * K + i] * x[r * K + i];
        float inv = (float)(1.0 / sqrt(s + 1e-12));
        for (int i = 0; i < K; i++) x[r * K + i] *= inv;
    }
}

