#include "check.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

int test_failures, test_passes;

void test_report(int ok, const char *name, const char *fmt, ...) {
    va_list ap;
    printf("%s %s", ok ? "PASS" : "FAIL", name);
    if (fmt && *fmt) {
        printf(": ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
    }
    printf("\n");
    fflush(stdout);
    if (ok) test_passes++;
    else test_failures++;
}

double rel_rms(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (den == 0) return sqrt(num);
    return sqrt(num / den);
}

int check_finite(const char *name, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            test_report(0, name, "non-finite value %g at %zu", x[i], i);
            return 0;
        }
    return 1;
}

int check_close(const char *name, const float *got, const float *ref, size_t n, double tol) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(got[i]) || !isfinite(ref[i])) {
            test_report(0, name, "non-finite at %zu: got %g ref %g", i, got[i], ref[i]);
            return 0;
        }
    double e = rel_rms(got, ref, n);
    int ok = e <= tol;
    if (ok) {
        test_report(1, name, "rel_rms %.2e <= %.0e", e, tol);
    } else {
        size_t worst = 0;
        double wd = -1;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)got[i] - ref[i]);
            if (d > wd) wd = d, worst = i;
        }
        test_report(0, name, "rel_rms %.3e > %.0e (worst at %zu: got %g ref %g)", e, tol, worst,
                    got[worst], ref[worst]);
    }
    return ok;
}

void rng_seed(test_rng *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 1; }

static uint64_t next_u64(test_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float rng_uniform(test_rng *r) { return (float)((next_u64(r) >> 40) * (1.0 / 16777216.0)); }

float rng_normal(test_rng *r) {
    double u1 = ((next_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (next_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void fill_normal(test_rng *r, float *x, size_t n, float std) {
    for (size_t i = 0; i < n; i++) x[i] = std * rng_normal(r);
}

void fill_uniform(test_rng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * rng_uniform(r);
}

float *alloc_floats(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "test: out of memory allocating %zu floats\n", n);
        exit(2);
    }
    return p;
}

int test_finish(void) {
    printf("# %d checks passed, %d failed\n", test_passes, test_failures);
    return test_failures ? 1 : 0;
}
