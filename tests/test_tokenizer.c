/* Byte-level BPE tokenizers against reference encodings:
 * - tiktoken's TestPlans.txt (../shared/data/tokenizers/tiktoken/): every
 *   r50k_base case through the tiktoken rank file AND through GPT-2's
 *   encoder.json + vocab.bpe (the merge-list algorithm tokenizer.json uses),
 *   every cl100k_base case through its rank file; decode(encode(x)) == x;
 * - the pre-tokenizer patterns on whitespace/newline/digit/contraction cases
 *   whose splits Python's re module produced for the ASCII form of each regex;
 * - NFC on decomposed, reordered and Hangul input (expected bytes from
 *   Python's unicodedata);
 * - Qwen3 and GPT-NeoX tokenizer.json: round trips, special tokens, NFC
 *   input, single-token words;
 * - bad files and ids give errors naming them;
 * - the tokenizer of a checkpoint directory (what `lina generate DIR --prompt`
 *   uses): tokenizer.json first, else the RWKV world vocabulary
 *   rwkv_vocab_v20230424.txt, whose ids are checked against the reference
 *   vectors of tests/test_rwkv_world.c; neither: an error naming the directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lina.h"
#include "lina/tokenizer.h"
#include "tokenizer/tok_internal.h"
#include "util/check.h"

static char data_dir[1024];

static void data_path(char *buf, size_t n, const char *rel) { snprintf(buf, n, "%s/%s", data_dir, rel); }

/* ---- pre-tokenizer ---- */

static void check_split(const char *name, lina_pretok p, const char *text, const int *want, int n_want) {
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text);
    int got[64] = {0}, n_got = 0;
    while (n > 0 && n_got < 64) {
        size_t piece = lina_pretok_next(p, s, n);
        got[n_got++] = (int)piece;
        s += piece;
        n -= piece;
    }
    int ok = n_got == n_want && !memcmp(got, want, (size_t)n_want * sizeof *want);
    char desc[256] = "";
    for (int i = 0; i < n_got && strlen(desc) < 200; i++) snprintf(desc + strlen(desc), 12, "%d ", got[i]);
    test_report(ok, name, "piece lengths %s", desc);
}

static void test_pretokenizers(void) {
    static const char *texts[] = {"Hello  world\n\n  foo\tbar   ", "I'M here, you'RE 12345 x\r\n\r\n end",
                                  "a \n b\n\n\nc  \t\n d",          "  leading\n",
                                  "x!!!\n\ny ...  \n",              "don't 1234567 ?? \t\n\t"};
    static const int gpt2[][16] = {{5, 1, 6, 3, 4, 1, 3, 3}, {1, 1, 1, 5, 1, 4, 1, 2, 6, 2, 4, 4},
                                   {1, 2, 2, 2, 1, 1, 4, 2}, {1, 8, 1}, {1, 3, 1, 1, 1, 4, 3}, {3, 2, 8, 3, 4}};
    static const int n_gpt2[] = {8, 12, 8, 3, 7, 5};
    static const int cl[][16] = {{5, 1, 6, 2, 1, 4, 4, 3}, {1, 2, 5, 1, 4, 3, 1, 3, 2, 2, 4, 4},
                                 {1, 2, 2, 3, 1, 4, 2}, {1, 8, 1}, {1, 5, 1, 4, 3}, {3, 2, 1, 3, 3, 1, 3, 3, 1}};
    static const int n_cl[] = {8, 12, 7, 3, 5, 9};
    static const int qw[][16] = {{5, 1, 6, 2, 1, 4, 4, 3}, {1, 2, 5, 1, 4, 3, 1, 1, 1, 1, 1, 1, 2, 4, 4},
                                 {1, 2, 2, 3, 1, 4, 2}, {1, 8, 1}, {1, 5, 1, 4, 3},
                                 {3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 1}};
    static const int n_qw[] = {8, 15, 7, 3, 5, 13};
    char name[64];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "pretok_gpt2_case%d", i);
        check_split(name, LINA_PRETOK_GPT2, texts[i], gpt2[i], n_gpt2[i]);
        snprintf(name, sizeof name, "pretok_cl100k_case%d", i);
        check_split(name, LINA_PRETOK_CL100K, texts[i], cl[i], n_cl[i]);
        snprintf(name, sizeof name, "pretok_qwen2_case%d", i);
        check_split(name, LINA_PRETOK_QWEN2, texts[i], qw[i], n_qw[i]);
    }
}

/* ---- NFC ---- */

static void test_nfc(void) {
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"e\xcc\x81", "\xc3\xa9"},                            /* e + acute -> é */
        {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"}, /* Hangul L V T -> 각 */
        {"a\xcc\x81\xcc\xa3", "\xe1\xba\xa1\xcc\x81"},        /* a acute dot-below: reorder, compose dot */
        {"\xe2\x84\xab", "\xc3\x85"},                         /* Angstrom sign (singleton) -> Å */
        {"\xcd\x84", "\xcc\x88\xcc\x81"},                     /* U+0344 decomposes, does not recompose */
        {"q\xcc\x87\xcc\xa3", "q\xcc\xa3\xcc\x87"},           /* no composite: reorder only */
        {"plain ascii", "plain ascii"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        unsigned char *out = NULL;
        size_t n = 0;
        lina_status st = lina_nfc((const unsigned char *)cases[i].in, strlen(cases[i].in), &out, &n);
        const char *got = out ? (const char *)out : cases[i].in;
        size_t got_n = out ? n : strlen(cases[i].in);
        char name[32];
        snprintf(name, sizeof name, "nfc_case%zu", i);
        test_report(!st && got_n == strlen(cases[i].want) && !memcmp(got, cases[i].want, got_n), name, "%zu bytes",
                    got_n);
        free(out);
    }
}

/* ---- TestPlans.txt ---- */

typedef struct {
    char enc[32];
    char *sample;
    int64_t *ids;
    size_t n_ids;
} plan;

static int load_plans(plan **out) {
    char path[1200];
    data_path(path, sizeof path, "tiktoken/TestPlans.txt");
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    plan *p = NULL;
    int n = 0;
    static char line[65536];
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "EncodingName: ", 14)) {
            p = realloc(p, (size_t)(n + 1) * sizeof *p);
            memset(&p[n], 0, sizeof *p);
            snprintf(p[n].enc, sizeof p[n].enc, "%.31s", line + 14);
            n++;
        } else if (n && !strncmp(line, "Sample: ", 8)) {
            p[n - 1].sample = strdup(line + 8);
        } else if (n && !strncmp(line, "Encoded: [", 10)) {
            size_t cap = 16;
            plan *q = &p[n - 1];
            q->ids = malloc(cap * sizeof *q->ids);
            for (char *s = line + 10; *s && *s != ']';) {
                char *end;
                long long v = strtoll(s, &end, 10);
                if (end == s) break;
                if (q->n_ids == cap) q->ids = realloc(q->ids, (cap *= 2) * sizeof *q->ids);
                q->ids[q->n_ids++] = v;
                s = end + (*end == ',');
                while (*s == ' ') s++;
            }
        }
    }
    fclose(fp);
    *out = p;
    return n;
}

/* encode every plan of encoding `enc`; returns the number checked, reports the first failure */
static void run_plans(const char *name, const lina_tokenizer *t, const plan *p, int n, const char *enc) {
    int checked = 0, bad = -1, round_trip_bad = -1;
    for (int i = 0; i < n; i++) {
        if (strcmp(p[i].enc, enc) || !p[i].sample) continue;
        checked++;
        int64_t *ids = NULL;
        size_t n_ids = 0;
        lina_status st = lina_tokenizer_encode(t, p[i].sample, strlen(p[i].sample), 0, &ids, &n_ids);
        if (bad < 0 && (st || n_ids != p[i].n_ids || (n_ids && memcmp(ids, p[i].ids, n_ids * sizeof *ids)))) bad = i;
        char *text = NULL;
        size_t len = 0;
        if (!st && (lina_tokenizer_decode(t, ids, n_ids, &text, &len) || len != strlen(p[i].sample) ||
                    memcmp(text, p[i].sample, len)))
            if (round_trip_bad < 0) round_trip_bad = i;
        free(text);
        free(ids);
    }
    test_report(checked > 0 && bad < 0, name, "%d cases; first mismatch: %s", checked, bad >= 0 ? p[bad].sample : "none");
    char rt[96];
    snprintf(rt, sizeof rt, "%s_round_trip", name);
    test_report(checked > 0 && round_trip_bad < 0, rt, "first failure: %s",
                round_trip_bad >= 0 ? p[round_trip_bad].sample : "none");
}

static void test_tiktoken(const plan *p, int n) {
    char a[1200], b[1200];
    lina_tokenizer *t = NULL;
    data_path(a, sizeof a, "tiktoken/r50k_base.tiktoken");
    lina_status st = lina_tokenizer_load_tiktoken(a, LINA_PRETOK_GPT2, &t);
    test_report(st == LINA_OK && lina_tokenizer_vocab_size(t) == 50256, "load_r50k_tiktoken", "%s vocab %d",
                st ? lina_last_error() : "", lina_tokenizer_vocab_size(t));
    if (t) run_plans("testplans_r50k_tiktoken", t, p, n, "r50k_base");
    lina_tokenizer_free(t);

    t = NULL;
    data_path(a, sizeof a, "gpt2/encoder.json");
    data_path(b, sizeof b, "gpt2/vocab.bpe");
    st = lina_tokenizer_load_gpt2(a, b, &t);
    test_report(st == LINA_OK, "load_gpt2_merges", "%s", st ? lina_last_error() : "");
    if (t) run_plans("testplans_r50k_gpt2_merges", t, p, n, "r50k_base");
    lina_tokenizer_free(t);

    t = NULL;
    data_path(a, sizeof a, "tiktoken/cl100k_base.tiktoken");
    st = lina_tokenizer_load_tiktoken(a, LINA_PRETOK_CL100K, &t);
    test_report(st == LINA_OK, "load_cl100k_tiktoken", "%s", st ? lina_last_error() : "");
    if (t) run_plans("testplans_cl100k_tiktoken", t, p, n, "cl100k_base");
    lina_tokenizer_free(t);
}

/* ---- tokenizer.json ---- */

static int encode_count(const lina_tokenizer *t, const char *s, int special, int64_t *first) {
    int64_t *ids = NULL;
    size_t n = 0;
    if (lina_tokenizer_encode(t, s, strlen(s), special, &ids, &n)) return -1;
    if (first) *first = n ? ids[0] : -1;
    free(ids);
    return (int)n;
}

static int same_encoding(const lina_tokenizer *t, const char *a, const char *b) {
    int64_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int ok = !lina_tokenizer_encode(t, a, strlen(a), 0, &x, &nx) && !lina_tokenizer_encode(t, b, strlen(b), 0, &y, &ny) &&
             nx == ny && !memcmp(x, y, nx * sizeof *x);
    free(x);
    free(y);
    return ok;
}

static void test_hf_json(const char *name, const char *rel, const char *special, int64_t special_id, const plan *p,
                         int n) {
    char path[1200], tname[96];
    data_path(path, sizeof path, rel);
    lina_tokenizer *t = NULL;
    lina_status st = lina_tokenizer_load_hf(path, &t);
    snprintf(tname, sizeof tname, "%s_load", name);
    test_report(st == LINA_OK, tname, "%s", st ? lina_last_error() : "");
    if (st) return;
    /* round trip on every TestPlans sample (all scripts, emoji) */
    int bad = -1;
    for (int i = 0; i < n && bad < 0; i++) {
        if (!p[i].sample) continue;
        int64_t *ids = NULL;
        size_t n_ids = 0, len = 0;
        char *text = NULL;
        if (lina_tokenizer_encode(t, p[i].sample, strlen(p[i].sample), 0, &ids, &n_ids) ||
            lina_tokenizer_decode(t, ids, n_ids, &text, &len) || len != strlen(p[i].sample) ||
            memcmp(text, p[i].sample, len))
            bad = i;
        free(ids);
        free(text);
    }
    snprintf(tname, sizeof tname, "%s_round_trip_testplans", name);
    test_report(bad < 0, tname, "first failure: %s", bad >= 0 ? p[bad].sample : "none");
    /* special token: one id when allowed, ordinary text otherwise */
    int64_t first = -1;
    int with = encode_count(t, special, 1, &first), without = encode_count(t, special, 0, NULL);
    snprintf(tname, sizeof tname, "%s_special_token", name);
    test_report(with == 1 && first == special_id && without > 1 && lina_tokenizer_token_id(t, special) == special_id,
                tname, "allowed: %d ids (first %lld), not allowed: %d ids", with, (long long)first, without);
    /* a word in the vocabulary is one token, with its vocabulary id */
    int64_t hello = lina_tokenizer_token_id(t, "Hello"), space_world = lina_tokenizer_token_id(t, " world");
    int64_t ids2[2];
    int64_t *got = NULL;
    size_t n_got = 0;
    lina_tokenizer_encode(t, "Hello world", 11, 0, &got, &n_got);
    ids2[0] = hello;
    ids2[1] = space_world;
    snprintf(tname, sizeof tname, "%s_hello_world", name);
    test_report(hello >= 0 && space_world >= 0 && n_got == 2 && !memcmp(got, ids2, sizeof ids2), tname,
                "Hello = %lld, ' world' = %lld, got %zu ids", (long long)hello, (long long)space_world, n_got);
    free(got);
    /* NFC normalizer: decomposed input encodes like composed input */
    snprintf(tname, sizeof tname, "%s_nfc_input", name);
    test_report(same_encoding(t, "Caf\x65\xcc\x81 na\xc3\xafve", "Caf\xc3\xa9 na\xc3\xafve") &&
                    !same_encoding(t, "Cafe na\xc3\xafve", "Caf\xc3\xa9 na\xc3\xafve"),
                tname, "%s", "");
    char *text = NULL;
    size_t len = 0;
    int64_t bad_id[2] = {1, 1 << 30};
    st = lina_tokenizer_decode(t, bad_id, 2, &text, &len);
    snprintf(tname, sizeof tname, "%s_decode_bad_id", name);
    test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "1073741824") && !text, tname, "%s",
                lina_last_error());
    lina_tokenizer_free(t);
}

static void test_bad_files(void) {
    lina_tokenizer *t = NULL;
    lina_status st = lina_tokenizer_load_hf("/nonexistent/tokenizer.json", &t);
    test_report(st == LINA_ERR_IO && !t && strstr(lina_last_error(), "/nonexistent/tokenizer.json"), "bad_missing_file",
                "%s", lina_last_error());
    char path[256];
    snprintf(path, sizeof path, "%s/lina_tok_%d.tiktoken", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    const char *bad = "IQ== 0\nIg== one\n";
    lina_write_file_atomic(path, bad, strlen(bad));
    st = lina_tokenizer_load_tiktoken(path, LINA_PRETOK_GPT2, &t);
    test_report(st == LINA_ERR_FORMAT && !t && strstr(lina_last_error(), "line 2"), "bad_tiktoken_line", "%s",
                lina_last_error());
    const char *few = "IQ== 0\nIg== 1\n"; /* not every byte has a token */
    lina_write_file_atomic(path, few, strlen(few));
    st = lina_tokenizer_load_tiktoken(path, LINA_PRETOK_GPT2, &t);
    test_report(st == LINA_ERR_FORMAT && !t && strstr(lina_last_error(), "byte"), "bad_not_byte_level", "%s",
                lina_last_error());
    remove(path);
}

/* ---- the tokenizer shipped in a checkpoint directory ---- */

static void check_world_ids(const char *name, const lina_tokenizer *t) {
    /* "Hello world!" -> 33155 40213 34 (tests/test_rwkv_world.c, from a Python reference) */
    static const int64_t want[3] = {33155, 40213, 34};
    int64_t *ids = NULL;
    size_t n = 0, len = 0;
    char *back = NULL;
    lina_status st = lina_tokenizer_encode(t, "Hello world!", 12, 1, &ids, &n);
    if (!st) st = lina_tokenizer_decode(t, ids, n, &back, &len);
    int ok = !st && n == 3 && !memcmp(ids, want, sizeof want) && len == 12 && !memcmp(back, "Hello world!", 12);
    test_report(ok, name, "%s", st ? lina_last_error() : ok ? "" : "ids or text differ");
    free(ids);
    free(back);
}

static void test_checkpoint_dir(void) {
    char dir[512], rel[2048], vocab[4096] = "", json[4096] = "", link[1024], json_link[1024];
    snprintf(dir, sizeof dir, "%s/lina_tokdir_%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    data_path(rel, sizeof rel, "rwkv_vocab_v20230424.txt"); /* symlinks need absolute targets */
    if (!realpath(rel, vocab)) snprintf(vocab, sizeof vocab, "%s", rel);
    data_path(rel, sizeof rel, "qwen3/tokenizer.json");
    if (!realpath(rel, json)) snprintf(json, sizeof json, "%s", rel);
    snprintf(link, sizeof link, "%s/rwkv_vocab_v20230424.txt", dir);
    snprintf(json_link, sizeof json_link, "%s/tokenizer.json", dir);
    if (mkdir(dir, 0700) != 0) {
        test_report(0, "checkpoint_dir_setup", "cannot create %s", dir);
        return;
    }
    lina_tokenizer *t = NULL;
    lina_status st = lina_tokenizer_load_dir(dir, &t); /* empty: an error naming the directory and both files */
    test_report(st == LINA_ERR_IO && !t && strstr(lina_last_error(), dir) && strstr(lina_last_error(), "tokenizer.json") &&
                    strstr(lina_last_error(), "rwkv_vocab_v20230424.txt"),
                "checkpoint_dir_none_names_dir", "%s", lina_last_error());
    int linked = symlink(vocab, link) == 0;
    st = linked ? lina_tokenizer_load_dir(dir, &t) : LINA_ERR_IO;
    test_report(!st && lina_tokenizer_vocab_size(t) == 65530, "checkpoint_dir_rwkv_world_loads", "%s",
                st ? lina_last_error() : "");
    if (!st) {
        check_world_ids("checkpoint_dir_rwkv_world_encode_decode", t);
        test_report(lina_tokenizer_token_id(t, "--------------------") == 65391 &&
                        lina_tokenizer_token_id(t, "Hello world!") == -1,
                    "checkpoint_dir_rwkv_world_token_id", "%lld", (long long)lina_tokenizer_token_id(t, "--------------------"));
        int64_t bad = 70000;
        char *text = NULL;
        size_t len = 0;
        st = lina_tokenizer_decode(t, &bad, 1, &text, &len);
        test_report(st == LINA_ERR_INVALID_ARG && strstr(lina_last_error(), "70000") && !text,
                    "checkpoint_dir_rwkv_world_bad_id", "%s", lina_last_error());
    }
    lina_tokenizer_free(t);
    t = NULL;
    st = lina_tokenizer_load_file(vocab, &t); /* --tokenizer FILE.txt */
    test_report(!st, "tokenizer_file_txt_is_rwkv_world", "%s", st ? lina_last_error() : "");
    if (!st) check_world_ids("tokenizer_file_txt_encode_decode", t);
    lina_tokenizer_free(t);
    t = NULL;
    /* tokenizer.json wins over the world vocabulary */
    st = symlink(json, json_link) == 0 ? lina_tokenizer_load_dir(dir, &t) : LINA_ERR_IO;
    test_report(!st && lina_tokenizer_token_id(t, "<|im_start|>") == 151644, "checkpoint_dir_prefers_tokenizer_json",
                "%s", st ? lina_last_error() : "");
    lina_tokenizer_free(t);
    remove(json_link);
    remove(link);
    rmdir(dir);
}

int main(void) {
    const char *shared = getenv("LINA_SHARED");
    snprintf(data_dir, sizeof data_dir, "%s/data/tokenizers", shared && *shared ? shared : "../shared");
    test_pretokenizers();
    test_nfc();
    test_bad_files();
    struct stat sb;
    if (stat(data_dir, &sb) != 0) {
        printf("SKIP tokenizer data: %s not found (set LINA_SHARED)\n", data_dir);
        return test_finish();
    }
    plan *p = NULL;
    int n = load_plans(&p);
    test_report(n == 313, "testplans_parsed", "%d cases", n);
    if (n > 0) {
        test_tiktoken(p, n);
        test_hf_json("qwen3", "qwen3/tokenizer.json", "<|im_start|>", 151644, p, n);
        test_hf_json("neox", "gpt-neox-20b.tokenizer.json", "<|endoftext|>", 0, p, n);
    }
    test_checkpoint_dir();
    for (int i = 0; i < n; i++) {
        free(p[i].sample);
        free(p[i].ids);
    }
    free(p);
    return test_finish();
}
