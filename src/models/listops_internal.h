/* ListOps classifier internals (src/models/listops_*.c). */
#ifndef LINA_LISTOPS_INTERNAL_H
#define LINA_LISTOPS_INTERNAL_H

#include <stdint.h>

#include "lina/listops.h"

#define LISTOPS_MAX_HEAD 128 /* head dim limit of the linear-attention mixer */

/* Non-causal linear attention per sequence of a packed batch; fq, fk, v, o
 * (N, H, d) with fq/fk already feature-mapped; den (N, H) saved. */
void listops_linear_attn_forward(int B, const int64_t *cu, int H, int d, const float *fq,
                                 const float *fk, const float *v, float *den, float *o,
                                 int threads);
/* dfq, dfk, dv (N, H, d) overwritten. */
void listops_linear_attn_backward(int B, const int64_t *cu, int H, int d, const float *fq,
                                  const float *fk, const float *v, const float *den,
                                  const float *o, const float *dout, float *dfq, float *dfk,
                                  float *dv, int threads);

#endif
