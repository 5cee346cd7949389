/* Training data: a text file as byte tokens (vocab 256), split 90/10, and
 * random windows whose offsets depend only on (seed, stream), so a resumed
 * run sees exactly the batches of an uninterrupted one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/internal.h"
#include "lina/model.h"

struct lina_text_data {
    uint8_t *bytes;
    size_t n, n_train;
};

lina_status lina_text_data_load(const char *path, float val_frac, lina_text_data **out) {
    *out = NULL;
    if (!(val_frac >= 0 && val_frac < 1))
        return lina_fail(LINA_ERR_INVALID_ARG, "data: validation fraction %g must be in [0, 1)", val_frac);
    struct stat sb;
    if (stat(path, &sb) != 0) return lina_fail(LINA_ERR_IO, "data: cannot open %s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return lina_fail(LINA_ERR_IO, "data: %s is not a regular file", path);
    if (sb.st_size == 0) return lina_fail(LINA_ERR_FORMAT, "data: %s is empty", path);
    FILE *f = fopen(path, "rb");
    if (!f) return lina_fail(LINA_ERR_IO, "data: cannot open %s: %s", path, strerror(errno));
    lina_text_data *d = calloc(1, sizeof *d);
    if (d) d->bytes = malloc((size_t)sb.st_size);
    if (!d || !d->bytes) {
        fclose(f);
        lina_text_data_free(d);
        return lina_fail(LINA_ERR_OOM, "data: out of memory for %lld bytes", (long long)sb.st_size);
    }
    d->n = fread(d->bytes, 1, (size_t)sb.st_size, f);
    int err = ferror(f);
    fclose(f);
    if (err || d->n == 0) {
        lina_text_data_free(d);
        return lina_fail(LINA_ERR_IO, "data: reading %s failed", path);
    }
    d->n_train = (size_t)((double)d->n * (1.0 - val_frac));
    *out = d;
    return LINA_OK;
}

void lina_text_data_free(lina_text_data *d) {
    if (!d) return;
    free(d->bytes);
    free(d);
}

size_t lina_text_data_len(const lina_text_data *d, int split) {
    return split == 0 ? d->n_train : d->n - d->n_train;
}

static uint64_t mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

lina_status lina_text_data_batch(const lina_text_data *d, int split, int B, int T, uint64_t seed,
                                 uint64_t stream, int32_t *inputs, int32_t *targets) {
    size_t len = lina_text_data_len(d, split);
    const uint8_t *base = d->bytes + (split == 0 ? 0 : d->n_train);
    if (B < 1 || T < 1 || len < (size_t)T + 1)
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "data: the %s split has %zu bytes, fewer than seq + 1 = %d",
                         split == 0 ? "training" : "validation", len, T + 1);
    size_t range = len - (size_t)T; /* offsets 0 .. len - T - 1 */
    for (int b = 0; b < B; b++) {
        uint64_t r = mix(mix(mix(seed) ^ stream) + (uint64_t)b);
        size_t off = (size_t)(r % range);
        for (int t = 0; t < T; t++) {
            inputs[(size_t)b * T + t] = base[off + t];
            targets[(size_t)b * T + t] = base[off + t + 1];
        }
    }
    return LINA_OK;
}
