/* lina: the command-line tool. `lina --help` lists the commands. */
#include <stdio.h>
#include <string.h>

#include "lina.h"
#include "cli.h"

static const struct {
    const char *name, *help;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"version", "print the version and build features", cmd_version},
    {"train", "train a byte-level language model on a text file (lina train --help)", cmd_train},
    {"generate", "generate text from a checkpoint directory (lina generate --help)", cmd_generate},
    {"bench", "time attention ops against the sgemm ceiling (lina bench ops --help)", cmd_bench},
    {"icl", "in-context linear regression with linear self-attention (Vladymyrov et al. 2024)", cmd_icl},
    {"mqar", "multi-query associative recall (Zoology, Arora et al. 2023) (lina mqar --help)", cmd_mqar},
    {"listops", "Long Range Arena ListOps with a bidirectional encoder (lina listops --help)", cmd_listops},
    {"score", "logits of an fla / Hugging Face checkpoint (lina score --help)", cmd_score},
    {"tokenize", "byte-level BPE encode/decode: tokenizer.json or tiktoken (lina tokenize --help)", cmd_tokenize},
    {"convert", "lina checkpoint <-> fla gated_deltanet/delta_net/gla layout (lina convert --help)", cmd_convert},
};

static void usage(FILE *f) {
    fprintf(f, "lina %s: linear transformers in C\n\nusage: lina COMMAND [options]   (lina COMMAND --help)\n\ncommands:\n",
            LINA_VERSION_STRING);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "lina: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("lina %s (%s)\n", LINA_VERSION_STRING, lina_features());
    return 0;
}
