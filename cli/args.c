#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int cli_int(const char *cmd, const char *flag, const char *s, long lo, long hi, int *out) {
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "%s: %s = '%s' must be an integer in [%ld, %ld]\n", cmd, flag,
                s ? s : "(missing)", lo, hi);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int cli_float(const char *cmd, const char *flag, const char *s, double lo, double hi, float *out) {
    char *end = NULL;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s: %s = '%s' must be a number in [%g, %g]\n", cmd, flag,
                s ? s : "(missing)", lo, hi);
        return 0;
    }
    *out = (float)v;
    return 1;
}
