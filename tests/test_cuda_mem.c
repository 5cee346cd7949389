/* The device memory / timing / fill helpers of include/lina/cuda.h and
 * `lina bench ops --device cuda`, wherever the suite runs:
 *  - no usable GPU (CI, with or without CUDA compiled in): every helper returns
 *    an error status with a message naming the call (and the size), outputs are
 *    cleared, nothing crashes; the CLI refuses cleanly;
 *  - a GPU: copies round-trip, fills have the documented distributions and are
 *    deterministic, the timer measures, and the CLI times an op. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lina.h"
#include "util/check.h"
#include "util/fixture.h"

static int contains(const char *s, const char *needle) { return s && strstr(s, needle) != NULL; }

/* The message every helper gives when there is no GPU: names the call, and the
 * reason (this build: without CUDA, or CUDA without a usable device). */
static void check_refusal(const char *name, lina_status st, const char *call) {
    const char *msg = lina_last_error();
#ifdef LINA_HAVE_CUDA
    const int ok = st == LINA_ERR_CUDA && contains(msg, call);
#else
    const int ok = st == LINA_ERR_UNSUPPORTED && contains(msg, call) && contains(msg, "built without CUDA");
#endif
    test_report(ok, name, "status %s, message '%s'", lina_status_str(st), msg);
}

static void test_without_gpu(void) {
    lina_cuda_device dev;
    memset(&dev, 0x5a, sizeof dev);
    check_refusal("no GPU: lina_cuda_device_info refuses", lina_cuda_device_info(&dev), "lina_cuda_device_info");
    test_report(dev.name[0] == 0 && dev.sm_count == 0, "no GPU: device info is cleared", "name '%.20s'", dev.name);

    void *p = (void *)&dev;
    lina_status st = lina_cuda_malloc(&p, 1024);
    check_refusal("no GPU: lina_cuda_malloc refuses", st, "lina_cuda_malloc");
#ifdef LINA_HAVE_CUDA
    test_report(contains(lina_last_error(), "1024 bytes"), "no GPU: lina_cuda_malloc names the size", "'%s'",
                lina_last_error());
#endif
    test_report(p == NULL, "no GPU: lina_cuda_malloc leaves *p = NULL", "%p", p);
    lina_cuda_free(NULL);

    /* host pointers where device pointers belong: refused, never dereferenced as such */
    float host[4] = {1, 2, 3, 4}, back[4] = {0};
    check_refusal("no GPU: lina_cuda_memcpy_h2d refuses", lina_cuda_memcpy_h2d(back, host, sizeof host),
                  "lina_cuda_memcpy_h2d");
    check_refusal("no GPU: lina_cuda_memcpy_d2h refuses", lina_cuda_memcpy_d2h(back, host, sizeof host),
                  "lina_cuda_memcpy_d2h");
    check_refusal("no GPU: lina_cuda_memset refuses", lina_cuda_memset(back, 0, sizeof back, NULL),
                  "lina_cuda_memset");
    check_refusal("no GPU: lina_cuda_synchronize refuses", lina_cuda_synchronize(), "lina_cuda_synchronize");
    check_refusal("no GPU: lina_cuda_fill_random refuses",
                  lina_cuda_fill_random(back, 1, 4, LINA_DTYPE_F32, LINA_CUDA_RANDOM_NORMAL, 0, 0, 0, 1, NULL),
                  "lina_cuda_fill_random");

    lina_cuda_timer *t = (lina_cuda_timer *)&dev;
    check_refusal("no GPU: lina_cuda_timer_create refuses", lina_cuda_timer_create(&t), "lina_cuda_timer");
    test_report(t == NULL, "no GPU: lina_cuda_timer_create leaves *out = NULL", "%p", (void *)t);
    lina_cuda_timer_free(NULL);
}

/* ---- with a GPU ---- */

static double mean_of(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s / n;
}

static double var_of(const float *x, size_t n) {
    double m = mean_of(x, n), s = 0;
    for (size_t i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return s / n;
}

static void test_with_gpu(void) {
    lina_cuda_device dev;
    lina_status st = lina_cuda_device_info(&dev);
    test_report(st == LINA_OK && dev.name[0] && dev.sm_count > 0 && dev.total_bytes > 0, "GPU: device info",
                "%s, %d SMs, %.1f GiB (%s)", dev.name, dev.sm_count, dev.total_bytes / 1073741824.0,
                st == LINA_OK ? "" : lina_last_error());

    /* odd sizes: n = 1e6 + 37 elements; the L2-row fill on 7919 rows of 100 */
    const size_t n = 1000037, rows = 7919, cols = 100;
    float *h = malloc(sizeof(float) * n), *h2 = malloc(sizeof(float) * n);
    uint16_t *h16 = malloc(2 * rows * cols);
    void *d = NULL, *d16 = NULL;
    if (!h || !h2 || !h16) {
        test_report(0, "GPU: host buffers", "out of memory");
        free(h), free(h2), free(h16);
        return;
    }
    st = lina_cuda_malloc(&d, sizeof(float) * n);
    if (st == LINA_OK) st = lina_cuda_malloc(&d16, 2 * rows * cols);
    test_report(st == LINA_OK && d && d16, "GPU: lina_cuda_malloc", "%s", st == LINA_OK ? "" : lina_last_error());
    if (st != LINA_OK) goto done;

    /* round trip */
    for (size_t i = 0; i < n; i++) h[i] = (float)i * 0.5f - 7.0f;
    st = lina_cuda_memcpy_h2d(d, h, sizeof(float) * n);
    if (st == LINA_OK) st = lina_cuda_memcpy_d2h(h2, d, sizeof(float) * n);
    test_report(st == LINA_OK && !memcmp(h, h2, sizeof(float) * n), "GPU: h2d then d2h round-trips", "%s",
                st == LINA_OK ? "" : lina_last_error());

    /* memset */
    st = lina_cuda_memset(d, 0, sizeof(float) * n, NULL);
    if (st == LINA_OK) st = lina_cuda_synchronize();
    if (st == LINA_OK) st = lina_cuda_memcpy_d2h(h2, d, sizeof(float) * n);
    double sum_abs = 0;
    for (size_t i = 0; i < n; i++) sum_abs += fabsf(h2[i]);
    test_report(st == LINA_OK && sum_abs == 0, "GPU: lina_cuda_memset zeroes", "sum |x| = %g", sum_abs);

    /* NORMAL: mean 0, variance 1 (standard errors 1e-3 and 1.4e-3 at n = 1e6) */
    st = lina_cuda_fill_random(d, n, 1, LINA_DTYPE_F32, LINA_CUDA_RANDOM_NORMAL, 0, 0, 0, 42, NULL);
    if (st == LINA_OK) st = lina_cuda_memcpy_d2h(h, d, sizeof(float) * n);
    double m = mean_of(h, n), v = var_of(h, n);
    test_report(st == LINA_OK && fabs(m) < 5e-3 && fabs(v - 1) < 1e-2, "GPU: fill NORMAL has mean 0, variance 1",
                "mean %.4f var %.4f", m, v);
    /* the same seed gives the same values, another seed others */
    st = lina_cuda_fill_random(d, n, 1, LINA_DTYPE_F32, LINA_CUDA_RANDOM_NORMAL, 0, 0, 0, 42, NULL);
    if (st == LINA_OK) st = lina_cuda_memcpy_d2h(h2, d, sizeof(float) * n);
    int same = st == LINA_OK && !memcmp(h, h2, sizeof(float) * n);
    st = lina_cuda_fill_random(d, n, 1, LINA_DTYPE_F32, LINA_CUDA_RANDOM_NORMAL, 0, 0, 0, 43, NULL);
    if (st == LINA_OK) st = lina_cuda_memcpy_d2h(h2, d, sizeof(float) * n);
    test_report(same && st == LINA_OK && memcmp(h, h2, sizeof(float) * n), "GPU: fill is deterministic per seed",
                "%s", "");

    /* UNIFORM in [lo, hi), mean (lo + hi) / 2 */
    st = lina_cuda_fill_random(d, n, 1, LINA_DTYPE_F32, LINA_CUDA_RANDOM_UNIFORM, -0.1f, 0.0f, 0, 7, NULL);
    if (st == LINA_OK) st = lina_cuda_memcpy_d2h(h, d, sizeof(float) * n);
    float lo = 1, hi = -1;
    for (size_t i = 0; i < n; i++) lo = h[i] < lo ? h[i] : lo, hi = h[i] > hi ? h[i] : hi;
    m = mean_of(h, n);
    test_report(st == LINA_OK && lo >= -0.1f && hi < 0.0f && fabs(m + 0.05) < 1e-3,
                "GPU: fill UNIFORM [-0.1, 0)", "min %g max %g mean %g", lo, hi, m);

    /* SIGMOID in (0, 1), mean 1/2 by symmetry */
    st = lina_cuda_fill_random(d, n, 1, LINA_DTYPE_F32, LINA_CUDA_RANDOM_SIGMOID, 0, 0, 0, 8, NULL);
    if (st == LINA_OK) st = lina_cuda_memcpy_d2h(h, d, sizeof(float) * n);
    lo = 1, hi = 0;
    for (size_t i = 0; i < n; i++) lo = h[i] < lo ? h[i] : lo, hi = h[i] > hi ? h[i] : hi;
    m = mean_of(h, n);
    test_report(st == LINA_OK && lo > 0 && hi < 1 && fabs(m - 0.5) < 2e-3, "GPU: fill SIGMOID in (0, 1)",
                "min %g max %g mean %g", lo, hi, m);

    /* bf16 rows of unit L2 norm (bf16 rounding: |norm - 1| <= ~ 2^-8) */
    st = lina_cuda_fill_random(d16, rows, (int)cols, LINA_DTYPE_BF16, LINA_CUDA_RANDOM_NORMAL, 0, 0, 1, 9, NULL);
    if (st == LINA_OK) st = lina_cuda_memcpy_d2h(h16, d16, 2 * rows * cols);
    double worst = 0;
    for (size_t r = 0; r < rows && st == LINA_OK; r++) {
        double ss = 0;
        for (size_t c = 0; c < cols; c++) {
            double x = lina_bf16_to_f32(h16[r * cols + c]);
            ss += x * x;
        }
        if (fabs(sqrt(ss) - 1) > worst) worst = fabs(sqrt(ss) - 1);
    }
    test_report(st == LINA_OK && worst < 4e-3, "GPU: fill bf16 l2_rows gives unit rows", "worst |norm - 1| %.2e",
                worst);

    /* the timer: 64 memsets of 4 MB take more than 0 ms */
    lina_cuda_timer *t = NULL;
    float ms = -1;
    st = lina_cuda_timer_create(&t);
    if (st == LINA_OK) st = lina_cuda_timer_start(t, NULL);
    for (int i = 0; i < 64 && st == LINA_OK; i++) st = lina_cuda_memset(d, i, sizeof(float) * n, NULL);
    if (st == LINA_OK) st = lina_cuda_timer_stop(t, NULL, &ms);
    test_report(st == LINA_OK && ms > 0 && ms < 1e4, "GPU: timer measures 64 memsets of 4 MB", "%g ms %s", ms,
                st == LINA_OK ? "" : lina_last_error());
    lina_cuda_timer_free(t);

    /* a failed allocation is LINA_ERR_OOM naming the size */
    void *huge = NULL;
    st = lina_cuda_malloc(&huge, (size_t)1 << 50);
    test_report(st == LINA_ERR_OOM && huge == NULL && contains(lina_last_error(), "1125899906842624 bytes"),
                "GPU: 1 PiB allocation is LINA_ERR_OOM naming the size", "%s: %s", lina_status_str(st),
                lina_last_error());
done:
    lina_cuda_free(d);
    lina_cuda_free(d16);
    free(h), free(h2), free(h16);
}

/* ---- the CLI (skipped if $BUILD/lina is absent) ---- */

static char tmp_dir[256];

/* Run `lina ARGS`, stdout and stderr into files; the exit status, -1 if killed. */
static int run_lina(const char *lina, const char *args, char *out, size_t out_n, char *err, size_t err_n) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s > %s/out.txt 2> %s/err.txt", lina, args, tmp_dir, tmp_dir);
    int rc = system(cmd);
    rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    const char *names[2] = {"out.txt", "err.txt"};
    char *bufs[2] = {out, err};
    size_t sizes[2] = {out_n, err_n};
    for (int i = 0; i < 2; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tmp_dir, names[i]);
        FILE *f = fopen(path, "r");
        size_t got = f ? fread(bufs[i], 1, sizes[i] - 1, f) : 0;
        while (got > 0 && (bufs[i][got - 1] == '\n' || bufs[i][got - 1] == ' ')) got--;
        bufs[i][got] = 0;
        if (f) fclose(f);
        unlink(path);
    }
    return rc;
}

static void test_cli(void) {
    char lina[1100], out[8192], err[8192];
    if (!fixture_lina_exe(lina, sizeof lina)) return;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/lina_test_cuda_mem_%d", (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmp_dir);
    if (system(cmd)) {}

    int rc = run_lina(lina, "bench ops --op delta --dtype bf16 --T 8", out, sizeof out, err, sizeof err);
    test_report(rc == 2 && contains(err, "--dtype bf16 needs --device cuda"), "CLI: --dtype bf16 without cuda refused",
                "rc %d, stderr '%s'", rc, err);
    rc = run_lina(lina, "bench ops --op softmax --device cuda --T 8", out, sizeof out, err, sizeof err);
    test_report(rc == 2 && contains(err, "not supported on cuda"), "CLI: softmax on cuda refused", "rc %d, stderr '%s'",
                rc, err);
    rc = run_lina(lina, "bench ops --op simple_gla --fixed-gates --backward --T 8", out, sizeof out, err, sizeof err);
    test_report(rc == 2 && contains(err, "--fixed-gates needs --device cuda"), "CLI: --fixed-gates without cuda refused",
                "rc %d, stderr '%s'", rc, err);
    rc = run_lina(lina, "bench ops --op gla --device tpu", out, sizeof out, err, sizeof err);
    test_report(rc == 2 && contains(err, "--device 'tpu'"), "CLI: unknown --device refused", "rc %d, stderr '%s'", rc,
                err);
    rc = run_lina(lina, "bench ops --op gla --T 40 --K 20 --V 12 --repeat 1 --warmup 0 --json", out, sizeof out, err,
                  sizeof err);
    test_report(rc == 0 && contains(out, "\"fwd_ms\"") && contains(out, "\"op\":\"gla\""),
                "CLI: --device cpu (default) still benches", "rc %d, stdout '%.200s' stderr '%.200s'", rc, out, err);

    const char *gpu_args = "bench ops --op gated_delta --device cuda --dtype bf16 --B 2 --T 100 --H 3 --K 64 --V 32 "
                           "--repeat 3 --warmup 1 --backward --json";
    rc = run_lina(lina, gpu_args, out, sizeof out, err, sizeof err);
    if (lina_cuda_available()) {
        test_report(rc == 0 && contains(out, "\"fwd_ms\"") && contains(out, "\"fwdbwd_ms\"") &&
                        contains(out, "\"dtype\":\"bf16\"") && contains(out, "\"device_name\""),
                    "CLI: --device cuda times gated_delta bf16 forward and backward", "rc %d, stdout '%.300s' stderr '%.300s'",
                    rc, out, err);
    } else {
#ifdef LINA_HAVE_CUDA
        const char *why = "no usable CUDA device";
#else
        const char *why = "built without CUDA";
#endif
        test_report(rc == 1 && contains(err, "--device cuda") && contains(err, why) && !out[0],
                    "CLI: --device cuda without a GPU fails cleanly", "rc %d, stderr '%s'", rc, err);
    }
    rmdir(tmp_dir);
}

int main(void) {
    if (lina_cuda_available()) test_with_gpu();
    else test_without_gpu();
    test_cli();
    return test_finish();
}
