/* Helpers shared by the GPU tests: device copies in fp32 / bf16 / fp16
 * (rounding the host copy the same way, so CPU references see the very
 * inputs the kernels see), shapes, gates. */
#ifndef LINA_TESTS_CUDA_UTIL_H
#define LINA_TESTS_CUDA_UTIL_H

#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime.h>

#include "lina.h"
#include "util/check.h"

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            printf("FAIL cuda: %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__);        \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

size_t esize(lina_dtype dt);
const char *dname(lina_dtype dt);
/* Round x in place to dtype's precision and return a device copy in dtype (NULL if n = 0). */
void *to_device(float *x, size_t n, lina_dtype dt);
void from_device(float *x, const void *d, size_t n, lina_dtype dt);
/* Device fp32 copy of x (or uninitialized if x is NULL); NULL if n = 0. */
float *dev_floats(const float *x, size_t n);

typedef struct {
    int B, T, H, HV, K, V;
    const int64_t *cu; /* host offsets or NULL */
    int n_seqs;
} shape_t;

/* Log gates from ~0 down to -20: -exp(u), u uniform in [-7, 3], clipped. */
void fill_gates(test_rng *r, float *g, size_t n);
void l2_normalize_rows(float *x, size_t rows, int K);

#endif
