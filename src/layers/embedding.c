/* Token embedding: x[n] = E[tok[n]]; backward dE[tok[n]] += dx[n] (rows in order). */
#include <string.h>

#include "layers.h"

void lina_embedding_forward(int N, int D, const int32_t *tok, const float *E, float *x) {
    for (int n = 0; n < N; n++) memcpy(x + (size_t)n * D, E + (size_t)tok[n] * D, sizeof(float) * D);
}

void lina_embedding_backward(int N, int D, const int32_t *tok, const float *dx, float *dE) {
    for (int n = 0; n < N; n++) {
        float *row = dE + (size_t)tok[n] * D;
        for (int i = 0; i < D; i++) row[i] += dx[(size_t)n * D + i];
    }
}
