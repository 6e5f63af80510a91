/* What the train-* commands share: the progress line (step, loss, speed,
 * ETA), the data-loading progress, the synthetic world's options, the
 * options every train-* command takes and the training loop
 * (train_common.h). */
#include "train_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    cli_format_duration(done > 0 ? el / done * (double)(p->target - step) : -1.0, eta, sizeof eta);
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

/* ---- the options every train-* command takes ------------------------------------- */

void cli_train_opts_init(cli_train_opts *o, unsigned groups, long long batch, double lr)
{
    memset(o, 0, sizeof *o);
    o->groups = groups;
    o->synthetic = -1;
    o->steps = 1000;
    o->save_every = 1000;
    o->log_every = 10;
    o->batch = batch;
    o->lr = lr;
    cli_world_init(&o->world);
}

/* Whether the current option is a shared one (then *rc: its parse result). */
static int shared_option(cli_args *a, cli_train_opts *o, int *rc)
{
    const int text = o->groups & CLI_TRAIN_TEXT, sched = o->groups & CLI_TRAIN_SCHEDULE;
    if (cli_is(a, NULL, "--data")) *rc = cli_value(a, &o->data);
    else if (cli_is(a, NULL, "--synthetic")) *rc = cli_int_value(a, 1, 1 << 24, &o->synthetic);
    else if (cli_is(a, "-o", "--output")) *rc = cli_value(a, &o->out);
    else if (cli_is(a, NULL, "--checkpoint")) *rc = cli_value(a, &o->ckpt);
    else if (cli_is(a, NULL, "--save-every")) *rc = cli_int_value(a, 0, INT64_MAX, &o->save_every);
    else if (cli_is(a, NULL, "--resume")) *rc = cli_value(a, &o->resume);
    else if (cli_is(a, NULL, "--steps")) *rc = cli_int_value(a, 1, INT64_MAX, &o->steps);
    else if (cli_is(a, NULL, "--batch")) *rc = cli_int_value(a, 1, 65536, &o->batch);
    else if (cli_is(a, NULL, "--lr")) *rc = cli_float_value(a, 0, 1, 1, 0, &o->lr);
    else if (cli_is(a, NULL, "--seed")) *rc = cli_u64_value(a, &o->seed);
    else if (cli_is(a, "-t", "--threads")) *rc = cli_int_value(a, 0, 4096, &o->threads);
    else if (cli_is(a, NULL, "--log-every")) *rc = cli_int_value(a, 1, INT64_MAX, &o->log_every);
    else if (text && cli_is(a, NULL, "--bpe")) *rc = cli_value(a, &o->bpe);
    else if (text && cli_is(a, NULL, "--truncate-captions")) *rc = cli_flag(a), o->truncate = 1;
    else if (text && cli_is(a, NULL, "--num-text-tokens")) *rc = cli_value(a, &o->ntt);
    else if (sched && cli_is(a, NULL, "--cosine")) *rc = cli_flag(a), o->cosine = 1;
    else if (sched && cli_is(a, NULL, "--warmup")) *rc = cli_int_value(a, 0, INT64_MAX, &o->warmup);
    else return 0;
    return 1;
}

int cli_train_next(cli_args *a, cli_train_opts *o, const char *usage, int *rc)
{
    int kind;
    while (!*rc && (kind = cli_next(a)) != CLI_ARG_END) {
        if (kind == CLI_ARG_POSITIONAL) {
            *rc = cli_unexpected(a);
            return 0;
        }
        if (cli_is(a, "-h", "--help")) {
            fputs(usage, stdout);
            fputs(cli_world_usage, stdout);
            *rc = -1;
            return 0;
        }
        if (!cli_world_option(a, &o->world, rc) && !shared_option(a, o, rc))
            return 1;
    }
    return 0;
}

int cli_train_check_io(const cli_args *a, const cli_train_opts *o, int have_source,
                       const char *need)
{
    if (!o->out)
        return cli_usage(a, "an output file is needed: -o OUT.dalle");
    if (need && !have_source && !o->resume)
        return cli_usage(a, "%s", need);
    if (!o->data == (o->synthetic < 0))
        return cli_usage(a, "give the training data: --data DIR or --synthetic N (one of them)");
    return 0;
}

int cli_train_check_schedule(const cli_args *a, const cli_train_opts *o)
{
    if (o->cosine && o->warmup >= o->steps)
        return cli_usage(a, "--cosine needs --warmup below --steps");
    if (o->ntt && strcmp(o->ntt, "auto")) {
        char *end;
        long v = strtol(o->ntt, &end, 10);
        if (*end || v < 1 || v > (1 << 24))
            return cli_usage(a, "--num-text-tokens: '%s' is not auto or a count 1..16777216",
                             o->ntt);
    }
    return 0;
}

int cli_train_num_text_tokens(const cli_train_opts *o)
{
    return o->ntt && strcmp(o->ntt, "auto") ? atoi(o->ntt) : 0;
}

int cli_train_auto_vocab(const cli_train_opts *o) { return o->ntt && !strcmp(o->ntt, "auto"); }

int cli_train_prepare(cli_train_opts *o, const char *cmd)
{
    if (!o->ckpt) {
        snprintf(o->ckpt_buf, sizeof o->ckpt_buf, "%s.ckpt", o->out);
        o->ckpt = o->ckpt_buf;
    }
    if (cli_check_writable(cmd, o->out) || cli_check_writable(cmd, o->ckpt))
        return CLI_FAIL;
    return 0;
}

dalle_status cli_train_load_images(const cli_train_opts *o, int size, dalle_image_data **out)
{
    dalle_image_data_params dp = dalle_image_data_default_params();
    cli_train_load l;
    cli_train_load_init(&l, "reading images");
    dp.image_size = size;
    dp.abort = cli_abort_cb;
    dp.world_colors = (int)o->world.colors, dp.world_shapes = (int)o->world.shapes;
    dp.world_max_objects = (int)o->world.objects, dp.world_layouts = (int)o->world.layouts;
    if (l.enabled) {
        dp.progress = cli_train_load_progress;
        dp.user = &l;
    }
    dalle_status s = o->data ? dalle_image_data_folder(o->data, &dp, out)
                             : dalle_image_data_synthetic(o->synthetic, &dp, out);
    cli_train_load_end(&l);
    return s;
}

/* ---- the training loop --------------------------------------------------------------- */

/* The checkpoint (with the optimiser) and OUT (without). */
static int save_both(const cli_trainer *t, const cli_train_opts *o)
{
    if (t->save(t->trainer, o->ckpt, 1) || t->save(t->trainer, o->out, 0))
        return cli_lib_error();
    return 0;
}

int cli_train_loop(const cli_trainer *t, const cli_train_opts *o)
{
    int rc = 0;
    cli_train_progress p;
    cli_train_progress_init(&p, t->steps(t->trainer), o->steps, o->log_every, t->unit);
    while (!rc && t->steps(t->trainer) < o->steps) {
        cli_train_step st;
        if (t->step(t->trainer, t->data, &st)) {
            cli_train_progress_end(&p);
            rc = cli_lib_error();
            break;
        }
        cli_train_progress_report(&p, st.step, st.epoch, st.units, st.metrics, st.skipped);
        if (cli_interrupted()) {
            cli_train_progress_end(&p);
            rc = save_both(t, o);
            if (!rc)
                fprintf(stderr, "%s: interrupted at step %lld; checkpoint '%s' "
                        "(continue with --resume)\n", t->cmd, (long long)st.step, o->ckpt);
            rc = rc ? rc : CLI_INTERRUPTED;
        } else if (o->save_every && st.step % o->save_every == 0 && st.step < o->steps &&
                   t->save(t->trainer, o->ckpt, 1)) {
            cli_train_progress_end(&p);
            rc = cli_lib_error();
        }
    }
    cli_train_progress_end(&p);
    if (!rc) {
        rc = save_both(t, o);
        if (!rc)
            fprintf(stderr, "%s: wrote '%s' (checkpoint '%s')\n", t->cmd, o->out, o->ckpt);
    }
    return rc;
}
