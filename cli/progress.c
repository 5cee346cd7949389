#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_format_duration(double s, char *buf, int n) {
    if (s < 0 || s != s) s = 0;
    if (s < 60) snprintf(buf, n, "%.1fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

void cli_progress_start(cli_progress *p, const char *label, long total) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total > 0 ? total : 1;
    p->t0 = cli_now();
    p->tty = isatty(2);
}

static void draw(cli_progress *p, long done, const char *info, int final) {
    double el = cli_now() - p->t0, frac = (double)done / p->total;
    char eta[32], elapsed[32], bar[31];
    cli_format_duration(done > 0 ? el * (p->total - done) / done : 0, eta, sizeof eta);
    cli_format_duration(el, elapsed, sizeof elapsed);
    int fill = (int)(frac * 30 + 0.5);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "%s%s [%s] %3.0f%% %ld/%ld | %.2f it/s | %s %s%s%s%s%s", p->tty ? "\r" : "",
            p->label, bar, 100 * frac, done, p->total, el > 0 ? done / el : 0.0,
            final ? "elapsed" : "ETA", final ? elapsed : eta, info ? " | " : "", info ? info : "",
            p->tty ? "\033[K" : "", (final || !p->tty) ? "\n" : "");
    fflush(stderr);
}

void cli_progress_update(cli_progress *p, long done, const char *info) {
    double t = cli_now();
    if (t - p->last_print < (p->tty ? 0.1 : 10.0) && done < p->total) return;
    p->last_print = t;
    draw(p, done, info, 0);
}

void cli_progress_finish(cli_progress *p, const char *info) { draw(p, p->total, info, 1); }
