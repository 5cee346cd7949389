/* libFuzzer target for the byte-level BPE encoder: arbitrary bytes (invalid
 * UTF-8 included) go through the GPT-2 and cl100k pre-tokenizers and the BPE
 * merge loop of the tiktoken r50k/cl100k vocabularies; decoding the ids must
 * give back exactly the input bytes, and every piece must be non-empty.
 * Needs LINA_SHARED (default ../shared) for the rank files. See fuzz/README.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lina/tokenizer.h"

static lina_tokenizer *tok[2];

static lina_tokenizer *load(const char *file, lina_pretok p) {
    const char *shared = getenv("LINA_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/data/tokenizers/tiktoken/%s", shared ? shared : "../shared", file);
    lina_tokenizer *t = NULL;
    if (lina_tokenizer_load_tiktoken(path, p, &t) != LINA_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s (set LINA_SHARED)\n", path);
        abort();
    }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok[0]) {
        tok[0] = load("r50k_base.tiktoken", LINA_PRETOK_GPT2);
        tok[1] = load("cl100k_base.tiktoken", LINA_PRETOK_CL100K);
    }
    for (int k = 0; k < 2; k++) {
        int64_t *ids = NULL;
        size_t n = 0, len = 0;
        char *text = NULL;
        if (lina_tokenizer_encode(tok[k], (const char *)data, size, 0, &ids, &n) != LINA_OK) abort();
        if (n > size) abort(); /* every token covers at least one byte */
        if (lina_tokenizer_decode(tok[k], ids, n, &text, &len) != LINA_OK) abort();
        if (len != size || (size && memcmp(text, data, size))) abort();
        free(ids);
        free(text);
    }
    return 0;
}
