/* Choosing a tokenizer: by file (tokenizer.json or an RWKV world vocabulary)
 * or by what a checkpoint directory ships, and the RWKV world vocabulary
 * behind the lina_tokenizer interface (tokenizer.c dispatches on t->world). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/internal.h"
#include "tok_internal.h"

/* fla-hub's RWKV-7 checkpoints and BlinkDL's releases ship the vocabulary under this name */
static const char *const RWKV_WORLD_FILE = "rwkv_vocab_v20230424.txt";

lina_status lina_tokenizer_load_rwkv_world(const char *vocab_txt, lina_tokenizer **out) {
    if (!vocab_txt || !out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_tokenizer_load_rwkv_world: NULL argument");
    *out = NULL;
    lina_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return lina_fail(LINA_ERR_OOM, "tokenizer: out of memory");
    lina_status st = lina_rwkv_tokenizer_load(vocab_txt, &t->world);
    if (st) {
        free(t);
        return st;
    }
    *out = t;
    return LINA_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

lina_status lina_tokenizer_load_file(const char *path, lina_tokenizer **out) {
    if (!path || !out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_tokenizer_load_file: NULL argument");
    return ends_with(path, ".txt") ? lina_tokenizer_load_rwkv_world(path, out) : lina_tokenizer_load_hf(path, out);
}

static int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

lina_status lina_tokenizer_load_dir(const char *dir, lina_tokenizer **out) {
    if (!dir || !out) return lina_fail(LINA_ERR_INVALID_ARG, "lina_tokenizer_load_dir: NULL argument");
    *out = NULL;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= (int)sizeof path)
        return lina_fail(LINA_ERR_INVALID_ARG, "tokenizer: directory name '%.64s...' is too long", dir);
    if (is_file(path)) return lina_tokenizer_load_hf(path, out);
    snprintf(path, sizeof path, "%s/%s", dir, RWKV_WORLD_FILE);
    if (is_file(path)) return lina_tokenizer_load_rwkv_world(path, out);
    return lina_fail(LINA_ERR_IO, "no tokenizer in '%s': neither tokenizer.json nor %s is there", dir,
                     RWKV_WORLD_FILE);
}
