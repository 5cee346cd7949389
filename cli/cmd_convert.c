/* lina convert SRC DST: a lina checkpoint to the fla layout of the same
 * architecture (gated_deltanet, delta_net, gla, retnet) or back (lina_hf_convert). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "lina/hf.h"

int cmd_convert(int argc, char **argv) {
    int help = argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    if (argc != 3 || help) {
        fprintf(help ? stdout : stderr,
                "usage: lina convert SRC DST\n"
                "  SRC model_type \"lina\" (one gated_deltanet, deltanet, gla or retnet mixer in every layer):\n"
                "      writes DST as an fla checkpoint (model_type gated_deltanet, delta_net, gla, retnet)\n"
                "  SRC an fla gated_deltanet, delta_net, gla or retnet checkpoint: writes DST as a lina checkpoint\n"
                "  Weights carry over unchanged (same tensor names); only config.json differs.\n");
        return help ? 0 : 2;
    }
    lina_status st = lina_hf_convert(argv[1], argv[2]);
    if (st) {
        fprintf(stderr, "lina convert: %s\n", lina_last_error());
        return 1;
    }
    printf("wrote %s/config.json and %s/model.safetensors\n", argv[2], argv[2]);
    return 0;
}
