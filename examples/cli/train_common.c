/* What the train-* commands share: the progress line (step, loss, speed,
 * ETA), the data-loading progress, and the synthetic world's options. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- loading ------------------------------------------------------------- */

void cli_train_load_progress(int64_t done, int64_t total, void *user)
{
    cli_train_load *l = user;
    double t = cli_now();
    if (done < total && t - l->last < 0.1)
        return;
    l->last = t;
    fprintf(stderr, "\r%s %lld/%lld\033[K", l->what, (long long)done, (long long)total);
    fflush(stderr);
    l->drawn = 1;
}

void cli_train_load_init(cli_train_load *l, const char *what)
{
    memset(l, 0, sizeof *l);
    l->what = what;
    l->enabled = isatty(STDERR_FILENO);
}

void cli_train_load_end(cli_train_load *l)
{
    if (l->drawn)
        fputc('\n', stderr);
    l->drawn = 0;
}

/* ---- the progress line ---------------------------------------------------- */

static void format_eta(double s, char *buf, size_t cap)
{
    if (!(s >= 0) || s > 360000.0) {
        snprintf(buf, cap, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

void cli_train_progress_init(cli_train_progress *p, int64_t first_step, int64_t target,
                             int64_t log_every, const char *unit)
{
    memset(p, 0, sizeof *p);
    p->tty = isatty(STDERR_FILENO);
    p->first_step = first_step;
    p->target = target;
    p->log_every = log_every > 0 ? log_every : 1;
    p->unit = unit;
    p->t0 = cli_now();
}

void cli_train_progress_report(cli_train_progress *p, int64_t step, int64_t epoch, double units,
                               const char *metrics, int skipped)
{
    p->units += units;
    double t = cli_now(), el = t - p->t0;
    int last = step >= p->target;
    /* a terminal: redrawn in place at most ten times a second; a log file:
     * one line every log_every steps */
    if (p->tty ? (!last && t - p->last < 0.1) : (step % p->log_every && !last))
        return;
    p->last = t;
    double done = (double)(step - p->first_step);
    char eta[32];
    format_eta(done > 0 ? el / done * (double)(p->target - step) : -1.0, eta, sizeof eta);
    fprintf(stderr, "%sstep %lld/%lld  epoch %lld  %s  %.0f %s/s  ETA %s%s%s", p->tty ? "\r" : "",
            (long long)step, (long long)p->target, (long long)epoch, metrics,
            el > 0 ? p->units / el : 0.0, p->unit, eta, skipped ? "  (skipped: not finite)" : "",
            p->tty ? "\033[K" : "\n");
    fflush(stderr);
    p->drawn = p->tty;
}

void cli_train_progress_end(cli_train_progress *p)
{
    if (p->drawn)
        fputc('\n', stderr);
    p->drawn = 0;
}

/* ---- the synthetic world ----------------------------------------------------- */

const char cli_world_usage[] =
    "synthetic world (--synthetic; docs/synthetic-world.md):\n"
    "  --world-colors N       the first N palette colours, 3..8 (default 8)\n"
    "  --world-shapes N       the first N shapes, 1..4 (default 4)\n"
    "  --world-objects N      at most N objects a scene, 1 or 2 (default 2)\n"
    "  --world-layouts 0|1    0: one large centred object; 1: sizes and positions (default 1)\n";

void cli_world_init(cli_world *w)
{
    w->colors = 8;
    w->shapes = 4;
    w->objects = 2;
    w->layouts = 1;
}

int cli_world_option(cli_args *a, cli_world *w, int *rc)
{
    if (cli_is(a, NULL, "--world-colors"))
        *rc = cli_int_value(a, 3, 8, &w->colors);
    else if (cli_is(a, NULL, "--world-shapes"))
        *rc = cli_int_value(a, 1, 4, &w->shapes);
    else if (cli_is(a, NULL, "--world-objects"))
        *rc = cli_int_value(a, 1, 2, &w->objects);
    else if (cli_is(a, NULL, "--world-layouts"))
        *rc = cli_int_value(a, 0, 1, &w->layouts);
    else
        return 0;
    return 1;
}
