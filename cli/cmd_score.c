/* TEMPORARY STUB: being written (checkpoint import helper). */
#include <stdio.h>
#include "cli.h"
int cmd_generate_hf(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "lina generate: checkpoint import not built yet\n"); return 1; }
