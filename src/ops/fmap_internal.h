/* Internal interface between the feature-map dispatcher (fmap.c) and the
 * families of maps. The dispatcher validates, then hands each family chunks of
 * consecutive rows of the (B*T*H, D) input; a family computes its rows in place
 * in the caller's layout. */
#ifndef LINA_FMAP_INTERNAL_H
#define LINA_FMAP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "lina/fmap.h"

#define LINA_FMAP_CHUNK 64 /* rows per chunk (one GEMM for the projection maps) */

typedef struct {
    const lina_fmap_desc *d;
    int rows, out;            /* rows in this chunk; output dim */
    const float *x;           /* (rows, D) */
    const float *W;           /* FAVOR (M, D), HEDGEHOG (D, M), else NULL */
    const float *cosv, *sinv; /* COSFORMER: (rows) cos / sin of the row's angle */
    float *y;                 /* (rows, out), forward */
    const float *dy;          /* (rows, out), backward */
    float *dx;                /* (rows, D), backward, overwritten */
    float *dz;                /* HEDGEHOG backward: (rows, M) d(x W), kept for dW */
    float *ws;                /* per-thread scratch of lina_fmap_ws_floats() */
} lina_fmap_chunk;

/* Scratch floats a chunk of the given map needs (per thread). */
size_t lina_fmap_ws_floats(const lina_fmap_desc *d);

/* identity, elu+1, relu, l2norm, cosFormer (fmap_elementwise.c) */
void lina_fmap_elementwise_forward(const lina_fmap_chunk *c);
void lina_fmap_elementwise_backward(const lina_fmap_chunk *c);

/* Taylor (Based) and DPFP: polynomial expansions (fmap_expand.c) */
void lina_fmap_expand_forward(const lina_fmap_chunk *c);
void lina_fmap_expand_backward(const lina_fmap_chunk *c);

/* FAVOR+ and Hedgehog: a projection then a nonlinearity (fmap_proj.c) */
void lina_fmap_proj_forward(const lina_fmap_chunk *c);
void lina_fmap_proj_backward(const lina_fmap_chunk *c);
size_t lina_fmap_proj_ws_floats(const lina_fmap_desc *d);
lina_status lina_fmap_proj_init(const lina_fmap_desc *d, uint64_t seed, float *W);

#endif
