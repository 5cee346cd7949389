/* A progress bar on stderr with rate and ETA: redrawn in place on a terminal,
 * a plain line every ~10 s otherwise (logs, CI). */
#ifndef LINA_CLI_PROGRESS_H
#define LINA_CLI_PROGRESS_H

typedef struct {
    const char *label;
    long total;
    double t0, last_print;
    int tty;
} cli_progress;

double cli_now(void); /* monotonic seconds */
void cli_progress_start(cli_progress *p, const char *label, long total);
/* done: units finished; info: extra text (e.g. "loss 1.234 | 5.1k tok/s"), may be NULL. */
void cli_progress_update(cli_progress *p, long done, const char *info);
void cli_progress_finish(cli_progress *p, const char *info);
/* "1h02m", "3m05s", "12.3s" */
void cli_format_duration(double seconds, char *buf, int n);

#endif
