/* The progress bar of `dalle generate` and its Ctrl-C handling. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"

/* ---- Ctrl-C ------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

void cli_catch_sigint(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    /* SA_RESETHAND: a second Ctrl-C (say, while the finished images are
     * decoded) kills the process as usual. No SA_RESTART is needed: the
     * library's calls are compute, not blocking I/O. */
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
}

int cli_interrupted(void) { return interrupted != 0; }

int cli_abort_cb(void *user)
{
    (void)user;
    return interrupted != 0;
}

/* ---- the bar -------------------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_progress_init(cli_progress *p, int64_t total)
{
    memset(p, 0, sizeof *p);
    /* A bar is for a person watching: redirected stderr (a log file, a
     * test) gets nothing, so it never fills with carriage returns. */
    p->enabled = isatty(STDERR_FILENO);
    p->total = total;
    p->t0 = now();
}

void cli_format_duration(double s, char *buf, size_t cap)
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

static void draw(cli_progress *p, int64_t done)
{
    enum { WIDTH = 30 };
    double elapsed = now() - p->t0;
    double rate = elapsed > 0 ? (double)done / elapsed : 0.0;
    char eta[32];
    cli_format_duration(rate > 0 ? (double)(p->total - done) / rate : -1.0, eta, sizeof eta);
    int fill = p->total > 0 ? (int)(WIDTH * done / p->total) : WIDTH;
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    /* \r redraws the line; \033[K clears what a longer earlier line left */
    fprintf(stderr, "\r[%s] %lld/%lld tokens  %.1f tokens/s  ETA %s\033[K", bar,
            (long long)done, (long long)p->total, rate, eta);
    fflush(stderr);
    p->drawn = 1;
}

void cli_progress_cb(int64_t done, int64_t total, void *user)
{
    (void)total;
    cli_progress *p = user;
    if (!p->enabled)
        return;
    int64_t all = p->base + done;
    double t = now();
    if (all < p->total && t - p->last < 0.1)
        return;
    p->last = t;
    draw(p, all);
}

void cli_progress_end(cli_progress *p)
{
    if (p->drawn)
        fputc('\n', stderr);
    p->drawn = 0;
}
