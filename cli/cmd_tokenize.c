/* lina tokenize: byte-level BPE encode / decode from the command line.
 *
 *   lina tokenize tokenizer.json --text "Hello world"      ids, space-separated
 *   lina tokenize tokenizer.json --file input.txt
 *   lina tokenize tokenizer.json --decode 9707,1879        the text
 *   lina tokenize cl100k_base.tiktoken --pattern cl100k --text ...   (tiktoken rank file)
 * --special: added/special tokens written in the text become their ids. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lina.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: lina tokenize TOKENIZER (--text TEXT | --file FILE | --decode ID,ID,...) [--special]\n"
               "                    [--pattern gpt2|cl100k|qwen2]\n"
               "  TOKENIZER: a Hugging Face tokenizer.json, or a tiktoken rank file (*.tiktoken; --pattern, default gpt2)\n");
}

static char *read_all(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (size_t got = 1; buf && got;) {
        if (len == cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
        got = fread(buf + len, 1, cap - len, fp);
        len += got;
    }
    fclose(fp);
    *n = len;
    return buf;
}

int cmd_tokenize(int argc, char **argv) {
    const char *tok_path = NULL, *text = NULL, *file = NULL, *decode = NULL, *pattern = "gpt2";
    int special = 0;
    for (int i = 1; i < argc; i++) {
        int has = i + 1 < argc;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--text") && has) text = argv[++i];
        else if (!strcmp(argv[i], "--file") && has) file = argv[++i];
        else if (!strcmp(argv[i], "--decode") && has) decode = argv[++i];
        else if (!strcmp(argv[i], "--pattern") && has) pattern = argv[++i];
        else if (!strcmp(argv[i], "--special")) special = 1;
        else if (argv[i][0] != '-' && !tok_path) tok_path = argv[i];
        else {
            fprintf(stderr, "lina tokenize: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!tok_path || (!!text + !!file + !!decode) != 1) {
        usage(stderr);
        return 2;
    }
    lina_pretok pt;
    if (!strcmp(pattern, "gpt2")) pt = LINA_PRETOK_GPT2;
    else if (!strcmp(pattern, "cl100k")) pt = LINA_PRETOK_CL100K;
    else if (!strcmp(pattern, "qwen2")) pt = LINA_PRETOK_QWEN2;
    else {
        fprintf(stderr, "lina tokenize: --pattern '%s' is not gpt2, cl100k or qwen2\n", pattern);
        return 2;
    }
    size_t plen = strlen(tok_path);
    int tiktoken = plen > 9 && !strcmp(tok_path + plen - 9, ".tiktoken");
    lina_tokenizer *t = NULL;
    lina_status st = tiktoken ? lina_tokenizer_load_tiktoken(tok_path, pt, &t) : lina_tokenizer_load_hf(tok_path, &t);
    int rc = 1;
    char *buf = NULL, *out = NULL;
    int64_t *ids = NULL;
    size_t n = 0, len = 0;
    if (st) goto done;
    if (decode) {
        size_t cap = 1;
        for (const char *p = decode; *p; p++) cap += *p == ',';
        ids = malloc(cap * sizeof *ids);
        for (const char *p = decode; ids && *p;) {
            char *end;
            errno = 0;
            long long v = strtoll(p, &end, 10);
            if (errno || end == p || (*end && *end != ',')) {
                fprintf(stderr, "lina tokenize: --decode '%s' is not a comma-separated list of ids\n", decode);
                rc = 2;
                goto done;
            }
            ids[n++] = v;
            p = end + (*end == ',');
        }
        if ((st = lina_tokenizer_decode(t, ids, n, &out, &len))) goto done;
        fwrite(out, 1, len, stdout);
        printf("\n");
    } else {
        if (file && !(buf = read_all(file, &len))) {
            fprintf(stderr, "lina tokenize: cannot read '%s'\n", file);
            goto done;
        }
        if ((st = lina_tokenizer_encode(t, file ? buf : text, file ? len : strlen(text), special, &ids, &n))) goto done;
        for (size_t i = 0; i < n; i++) printf("%s%lld", i ? " " : "", (long long)ids[i]);
        printf("\n");
    }
    rc = 0;
done:
    if (st) fprintf(stderr, "lina tokenize: %s: %s\n", lina_status_str(st), lina_last_error());
    lina_tokenizer_free(t);
    free(buf);
    free(out);
    free(ids);
    return rc;
}
