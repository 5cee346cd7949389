/* Command-line subcommands: each takes argv with argv[0] = its own name. */
#ifndef LINA_CLI_H
#define LINA_CLI_H

int cmd_version(int argc, char **argv);
int cmd_train(int argc, char **argv);    /* cli/cmd_train.c */
int cmd_generate(int argc, char **argv); /* cli/cmd_generate.c */
int cmd_bench(int argc, char **argv); /* lina bench ops (cli/cmd_bench.c) */
int cmd_icl(int argc, char **argv);
int cmd_mqar(int argc, char **argv); /* multi-query associative recall (cli/cmd_mqar.c) */
int cmd_listops(int argc, char **argv); /* LRA ListOps classification (cli/cmd_listops.c) */
/* generate for Hugging Face / fla checkpoint directories (cli/cmd_score.c) */
int cmd_generate_hf(int argc, char **argv);
int cmd_score(int argc, char **argv); /* logits of a Hugging Face checkpoint (cli/cmd_score.c) */
int cmd_tokenize(int argc, char **argv); /* byte-level BPE encode/decode (cli/cmd_tokenize.c) */
int cmd_convert(int argc, char **argv);  /* lina <-> fla checkpoints (cli/cmd_convert.c) */

#endif
