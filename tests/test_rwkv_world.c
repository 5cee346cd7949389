/* The RWKV "world" tokenizer against vectors from a SELF-WRITTEN Python greedy
 * longest-match over the vocabulary parsed by Python's own literal evaluation
 * (the procedure of BlinkDL/ChatRWKV's TRIE_TOKENIZER), round trips, errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "util/check.h"

static const char *vocab_path(void) {
    static char p[1024];
    const char *s = getenv("LINA_SHARED");
    snprintf(p, sizeof p, "%s/data/tokenizers/rwkv_vocab_v20230424.txt", s && *s ? s : "../shared");
    return p;
}

typedef struct {
    const char *text;
    int n;
    int64_t ids[16];
} vector;

static const vector vectors[] = {
    {"Hello world!", 3, {33155, 40213, 34}},
    {"\n\nUser: What is RWKV?\n\nAssistant:", 12, {261, 24281, 59, 30031, 4600, 4171, 1184, 64, 261, 5585, 41693, 59}},
    {"  indented\tcode();\r\n", 7, {267, 41621, 1843, 10, 25036, 5269, 263}},
    {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xbc\xd0\xb8\xd1\x80", 6, {27858, 27950, 27930, 45, 32732, 2810}},
    {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88", 7,
     {13053, 13205, 16592, 10138, 10199, 10177, 43480}},
    {"emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd end", 10,
     {34295, 33, 3319, 153, 129, 28333, 3319, 144, 190, 21616}},
    {"--------------------", 1, {65391}},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 5, {53739, 53739, 53739, 53739, 53739}},
    {"The quick brown fox jumps over the lazy dog. 1234567890", 15,
     {6699, 39418, 37917, 21704, 38828, 31601, 22590, 31261, 21551, 47, 3485, 654, 676, 698, 710}},
};

int main(void) {
    lina_rwkv_tokenizer *t = NULL;
    lina_status st = lina_rwkv_tokenizer_load(vocab_path(), &t);
    test_report(!st && lina_rwkv_tokenizer_vocab_size(t) == 65530, "rwkv world vocabulary loads (65,529 tokens)", "%s",
                st ? lina_last_error() : "");
    if (st) return test_finish();
    for (size_t v = 0; v < sizeof vectors / sizeof *vectors; v++) {
        const vector *x = &vectors[v];
        int64_t *ids = NULL;
        size_t n = 0;
        char name[96];
        snprintf(name, sizeof name, "rwkv world encode == reference, vector %zu", v);
        st = lina_rwkv_tokenizer_encode(t, x->text, strlen(x->text), &ids, &n);
        int ok = !st && n == (size_t)x->n && !memcmp(ids, x->ids, n * sizeof *ids);
        test_report(ok, name, "%s", st ? lina_last_error() : ok ? "" : "ids differ");
        char *back = NULL;
        size_t len = 0;
        snprintf(name, sizeof name, "rwkv world decode(encode(x)) == x, vector %zu", v);
        if (!st) st = lina_rwkv_tokenizer_decode(t, ids, n, &back, &len);
        test_report(!st && len == strlen(x->text) && !memcmp(back, x->text, len), name, "%s",
                    st ? lina_last_error() : "");
        free(ids);
        free(back);
    }
    /* every byte value round-trips (bytes 0x00-0xff, invalid UTF-8 included) */
    char all[256];
    for (int i = 0; i < 256; i++) all[i] = (char)i;
    int64_t *ids = NULL;
    size_t n = 0, len = 0;
    char *back = NULL;
    st = lina_rwkv_tokenizer_encode(t, all, 256, &ids, &n);
    if (!st) st = lina_rwkv_tokenizer_decode(t, ids, n, &back, &len);
    test_report(!st && len == 256 && !memcmp(back, all, 256), "rwkv world round trip of all 256 bytes", "%s",
                st ? lina_last_error() : "");
    free(ids);
    free(back);
    int64_t bad[2] = {33155, 70000};
    st = lina_rwkv_tokenizer_decode(t, bad, 2, &back, &len);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "70000"), "rwkv world decode rejects id 70000",
                "%s", lina_last_error());
    int64_t zero = 0;
    st = lina_rwkv_tokenizer_decode(t, &zero, 1, &back, &len);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "id 0"), "rwkv world decode rejects id 0", "%s",
                lina_last_error());
    lina_rwkv_tokenizer_free(t);
    st = lina_rwkv_tokenizer_load("/nonexistent/rwkv_vocab.txt", &t);
    test_report(st == LINA_ERR_IO && strstr(lina_last_error(), "nonexistent"), "rwkv world missing file reported", "%s",
                lina_last_error());
    return test_finish();
}
