/* Progress of a training run on stderr. */
#define _POSIX_C_SOURCE 200809L

#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void format_duration(double seconds, char *out, size_t size)
{
    long s = (long)(seconds + 0.5);
    if (s >= 60)
        snprintf(out, size, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(out, size, "%lds", s);
}

void progress_start(progress *p, const char *name, int epochs, int quiet)
{
    p->name = name;
    p->epochs = epochs;
    p->quiet = quiet;
    p->live = !quiet && isatty(STDERR_FILENO);
    p->start = now_seconds();
}

void progress_update(progress *p, int epoch, double fraction, double loss, double accuracy)
{
    if (p->quiet || (!p->live && fraction < 1.0))
        return;
    double elapsed = now_seconds() - p->start;
    double done = (epoch - 1 + fraction) / p->epochs;
    char spent[32], left[32];
    format_duration(elapsed, spent, sizeof spent);
    format_duration(done > 0 ? elapsed * (1.0 - done) / done : 0.0, left, sizeof left);
    fprintf(stderr, "%s[%s] epoch %d/%d %3.0f%%  loss %.4f  train accuracy %.2f%%  elapsed %s  left %s%s",
            p->live ? "\r\033[K" : "", p->name, epoch, p->epochs, 100.0 * fraction, loss,
            100.0 * accuracy, spent, left, p->live ? "" : "\n");
    fflush(stderr);
}

double progress_finish(progress *p)
{
    if (p->live)
        fputc('\n', stderr);
    return now_seconds() - p->start;
}
