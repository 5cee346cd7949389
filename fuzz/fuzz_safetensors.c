/* libFuzzer target for the safetensors reader: every input is written to an
 * in-memory file and opened; a file that opens is walked completely (find by
 * name, metadata, float conversion) so that any header the validator lets
 * through is also safe to use. Build and run: see fuzz/README.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lina/io.h"

static int mem_fd = -1;
static char mem_path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (mem_fd < 0) {
        mem_fd = memfd_create("fuzz_safetensors", 0);
        if (mem_fd < 0) abort();
        snprintf(mem_path, sizeof mem_path, "/proc/self/fd/%d", mem_fd);
    }
    if (ftruncate(mem_fd, 0) != 0 || pwrite(mem_fd, data, size, 0) != (ssize_t)size) abort();

    lina_st_file *f = NULL;
    if (lina_st_open(mem_path, &f) != LINA_OK) {
        if (f) abort();         /* failure must not hand out a file */
        if (!lina_last_error()[0]) abort(); /* and must say why */
        return 0;
    }
    int n = lina_st_count(f);
    for (int i = 0; i < n; i++) {
        const lina_tensor_view *t = lina_st_tensor(f, i);
        if (!t || lina_st_find(f, t->name) != t) abort();
        if (t->nbytes != (size_t)t->numel * lina_dtype_size(t->dtype)) abort();
        /* touch every byte the view claims (ASan catches reads past the mapping) */
        volatile uint8_t sink = 0;
        for (size_t b = 0; b < t->nbytes; b++) sink ^= ((const uint8_t *)t->data)[b];
        (void)sink;
        if (t->numel > 0 && t->numel <= (1 << 20)) {
            float *dst = malloc((size_t)t->numel * sizeof *dst);
            if (!dst) abort();
            lina_status st = lina_tensor_to_f32(t, dst, t->numel);
            int is_float = t->dtype == LINA_DTYPE_F32 || t->dtype == LINA_DTYPE_F16 || t->dtype == LINA_DTYPE_BF16 ||
                           t->dtype == LINA_DTYPE_F64;
            if ((st == LINA_OK) != is_float) abort();
            free(dst);
        }
    }
    (void)lina_st_metadata(f, "format");
    (void)lina_st_find(f, "");
    lina_st_close(f);
    return 0;
}
