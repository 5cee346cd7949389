/* `lina bench ops`: the options and op table shared by the CPU path
 * (cli/cmd_bench.c) and the CUDA path (cli/bench_ops_cuda.c). */
#ifndef LINA_CLI_BENCH_OPS_H
#define LINA_CLI_BENCH_OPS_H

#include "lina.h"

typedef enum {
    OP_LINEAR,
    OP_RETENTION,
    OP_SIMPLE_GLA,
    OP_GLA,
    OP_DELTA,
    OP_GATED_DELTA,
    OP_KDA,
    OP_SOFTMAX,
    N_BENCH_OPS
} bench_op;

typedef struct {
    const char *name;
    lina_gate gate;
    lina_update update;
    const char *what;
} bench_op_info;

extern const bench_op_info BENCH_OPS[N_BENCH_OPS];
extern const char *const BENCH_FORM_NAMES[4]; /* indexed by lina_form */

typedef enum { BENCH_CPU, BENCH_CUDA } bench_device;

typedef struct {
    bench_op op;
    lina_form form;
    int B, T, H, HV, K, V, chunk;
    int threads, repeat, warmup, backward, json;
    int fixed_gates; /* CUDA backward without the gates' gradient (dg = NULL) */
    bench_device device;
    lina_dtype dtype; /* F32, or BF16 / F16 with BENCH_CUDA */
} bench_opts;

/* Element counts of the op's tensors: q/k (B,T,H,K), v/o (B,T,HV,V), gates
 * (CONST: HV, SCALAR: B*T*HV, VECTOR: B*T*HV*K, NONE: 0), beta (DELTA: B*T*HV). */
typedef struct {
    size_t nqk, nv, ng, nb;
} bench_sizes;
bench_sizes bench_op_sizes(const bench_opts *o);

/* The sizes B, T, H, HV, K, V into a JSON report. */
typedef struct cJSON cJSON;
void bench_json_sizes(cJSON *j, const bench_opts *o);

/* Median of x[0..n) (sorts x). */
double bench_median(double *x, int n);

/* The CUDA path: device buffers, CUDA-event timing; returns the exit code
 * (0 ok, 1 runtime error, 2 bad option), messages on stderr. */
int bench_ops_cuda(const bench_opts *o);

#endif
