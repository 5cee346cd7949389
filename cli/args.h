/* Flag values for the subcommands. On a bad value they print
 * "CMD: FLAG = 'VALUE' must be ..." to stderr and return 0. */
#ifndef LINA_CLI_ARGS_H
#define LINA_CLI_ARGS_H

int cli_int(const char *cmd, const char *flag, const char *s, long lo, long hi, int *out);
int cli_float(const char *cmd, const char *flag, const char *s, double lo, double hi, float *out);

#endif
