/* Minimal test helpers: every test binary prints "PASS name" / "FAIL name: why"
 * lines and exits non-zero if anything failed. tests/run.sh counts them. */
#ifndef LINA_TEST_CHECK_H
#define LINA_TEST_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int test_failures, test_passes;

/* Report one named check. */
void test_report(int ok, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Relative RMS error ||a - b|| / ||b|| (b the reference); if ||b|| == 0, ||a||. */
double rel_rms(const float *a, const float *b, size_t n);
/* Same, and report PASS/FAIL against tol (names the max error position on failure). */
int check_close(const char *name, const float *got, const float *ref, size_t n, double tol);
int check_finite(const char *name, const float *x, size_t n);
/* Deterministic RNG (splitmix64 -> uniform / normal). */
typedef struct { uint64_t s; } test_rng;
void rng_seed(test_rng *r, uint64_t seed);
float rng_uniform(test_rng *r);               /* [0, 1) */
float rng_normal(test_rng *r);
void fill_normal(test_rng *r, float *x, size_t n, float std);
void fill_uniform(test_rng *r, float *x, size_t n, float lo, float hi);
float *alloc_floats(size_t n); /* zeroed; aborts the test on OOM */
/* Call at the end of main: prints a summary line, returns exit code. */
int test_finish(void);

#endif
