#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *env_or(const char *var, const char *def) {
    const char *s = getenv(var);
    return s && *s ? s : def;
}

const char *fixture_data_dir(void) { return env_or("LINA_TEST_DATA", "tests/data"); }

const char *fixture_shared_dir(void) { return env_or("LINA_SHARED", "../shared"); }

const lina_tensor_view *fixture_tensor(const lina_st_file *f, const char *name, lina_dtype dt, int ndim) {
    const lina_tensor_view *t = lina_st_find(f, name);
    return t && t->dtype == dt && t->ndim == ndim ? t : NULL;
}

int64_t *fixture_ids(const lina_tensor_view *t) {
    int64_t *p = malloc((size_t)t->numel * sizeof *p);
    if (p) memcpy(p, t->data, (size_t)t->numel * sizeof *p);
    return p;
}

int fixture_lina_exe(char *buf, size_t size) {
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 0;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0; /* .../BUILD/tests */
    snprintf(buf, size, "%s/../lina", exe);
    if (access(buf, X_OK) != 0) {
        printf("(skipping CLI tests: %s not built)\n", buf);
        return 0;
    }
    return 1;
}
