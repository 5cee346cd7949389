#include "fixture.h"

#include "check.h"

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

void fixture_ref_close(fixture_ref *r) {
    lina_st_close(r->file);
    free(r->ids);
    free(r->logits);
    memset(r, 0, sizeof *r);
}

int fixture_ref_open(const char *path, int vocab, int greedy, fixture_ref *r) {
    memset(r, 0, sizeof *r);
    if (lina_st_open(path, &r->file) != LINA_OK) {
        snprintf(r->why, sizeof r->why, "%s", lina_last_error());
        return 0;
    }
    const lina_tensor_view *ids = fixture_tensor(r->file, "input_ids", LINA_DTYPE_I64, 2);
    const lina_tensor_view *ref = fixture_tensor(r->file, "logits", LINA_DTYPE_F32, 3);
    if (greedy) {
        r->prompt = fixture_tensor(r->file, "greedy_prompt", LINA_DTYPE_I64, 2);
        r->greedy = fixture_tensor(r->file, "greedy_output", LINA_DTYPE_I64, 2);
    }
    if (!ids || !ref || (greedy && (!r->prompt || !r->greedy)) || ref->shape[0] != ids->shape[0] ||
        ref->shape[1] != ids->shape[1] || ref->shape[2] != vocab) {
        fixture_ref_close(r);
        snprintf(r->why, sizeof r->why, "%s: unexpected tensors (want input_ids [B, T], logits [B, T, %d]%s)",
                 path, vocab, greedy ? ", greedy_prompt, greedy_output" : "");
        return 0;
    }
    r->B = (int)ids->shape[0], r->T = (int)ids->shape[1], r->vocab = vocab;
    const size_t n = (size_t)r->B * r->T * vocab;
    r->ids = fixture_ids(ids);
    r->logits = alloc_floats(n);
    lina_tensor_to_f32(ref, r->logits, (int64_t)n);
    if (!r->ids) {
        fixture_ref_close(r);
        snprintf(r->why, sizeof r->why, "%s: out of memory", path);
        return 0;
    }
    return 1;
}
