/* Where one generation step's time goes, operation by operation (issue 8:
 * the fixed part of the token loop).
 *
 *   bench_step MODEL.dalle [batch 8] [tokens 32] [threads 1] [reps 5] [prime 0]
 *
 * Loads the model through the public API, then wraps the CPU backend's
 * operations table (lib/backend_ops.h) of the context's transformer with
 * timing copies (internal API), and samples windows of `tokens` image
 * tokens of `batch` images through dalle_sample (stopped by the abort
 * callback), primed with `prime` random image tokens. Between the first
 * progress callback (after the prefix and the first pick) and the last,
 * every operation's wall time is summed; per step it prints each
 * operation's time (linears by shape), their count, the part of the step
 * outside every operation ("between": the loop itself, callbacks), and the
 * process CPU time per step. With one thread every time is the thread's
 * CPU time (what the step cost, whatever else the machine ran), else wall
 * time. The best window (lowest step time) is reported,
 * with the median step time of all windows beside it. Nothing here is a
 * test. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_ops.h"
#include "threadpool.h"
#include "context.h"
#include "dalle/dalle.h"
#include "transformer_internal.h"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}


/* What the operations are timed with: wall time, or with one thread the
 * thread's CPU time (what an operation cost, whatever else the machine
 * ran; a system call per reading, ~0.5 us, shows in "between") */
static clockid_t op_clock = CLOCK_MONOTONIC;
static double op_now(void) { return clock_s(op_clock); }

/* ---- the timed operations -------------------------------------------------- */

#define MAX_SLOTS 32

typedef struct slot {
    char name[48];
    int64_t in, out; /* linears: the shape that names them */
    double t;        /* seconds */
    int64_t n;       /* calls */
} slot;

static slot slots[MAX_SLOTS];
static int n_slots;
static int timing_on;
static const backend_ops *orig;

static slot *slot_named(const char *name, int64_t in, int64_t out)
{
    for (int i = 0; i < n_slots; i++)
        if (!strcmp(slots[i].name, name) && slots[i].in == in && slots[i].out == out)
            return &slots[i];
    if (n_slots == MAX_SLOTS)
        return &slots[MAX_SLOTS - 1];
    slot *s = &slots[n_slots++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->in = in;
    s->out = out;
    return s;
}

static void account(const char *name, int64_t in, int64_t out, double t0)
{
    if (!timing_on)
        return;
    slot *s = slot_named(name, in, out);
    s->t += op_now() - t0;
    s->n++;
}

static void t_linear(backend *be, const float *x, int64_t rows, int64_t in, const ops_weight *w,
                     const float *b, int64_t out, float *y, int64_t ldy, float *scratch,
                     int slots_)
{
    double t0 = op_now();
    orig->linear(be, x, rows, in, w, b, out, y, ldy, scratch, slots_);
    account("linear", in, out, t0);
}

static void t_layer_norm(backend *be, const float *x, int64_t rows, int64_t dim,
                         const float *gain, const float *bias, float eps, float *y)
{
    double t0 = op_now();
    orig->layer_norm(be, x, rows, dim, gain, bias, eps, y);
    account("layer_norm", 0, 0, t0);
}

static void t_geglu(backend *be, const float *h, int64_t rows, int64_t inner, float *y)
{
    double t0 = op_now();
    orig->geglu(be, h, rows, inner, y);
    account("geglu", 0, 0, t0);
}

static void t_add_scaled(backend *be, float *x, const float *y, const float *scale, int64_t rows,
                         int64_t dim)
{
    double t0 = op_now();
    orig->add_scaled(be, x, y, scale, rows, dim);
    account("add_scaled", 0, 0, t0);
}

static void t_divide_max(backend *be, float *x, int64_t rows, int64_t dim)
{
    double t0 = op_now();
    orig->divide_max(be, x, rows, dim);
    account("divide_max", 0, 0, t0);
}

static void t_fill(backend *be, float *x, int64_t rows, int64_t ld, int64_t col0, int64_t n,
                   float value)
{
    double t0 = op_now();
    orig->fill(be, x, rows, ld, col0, n, value);
    account("fill (logits mask)", 0, 0, t0);
}

static void t_guidance(backend *be, float *cond, const float *uncond, int64_t rows, int64_t ld,
                       int64_t n, float scale)
{
    double t0 = op_now();
    orig->guidance(be, cond, uncond, rows, ld, n, scale);
    account("guidance", 0, 0, t0);
}

static void t_embed(backend *be, const struct transformer *tf, struct tf_state *st,
                    const int32_t *tokens, int m, float *x)
{
    double t0 = op_now();
    orig->embed(be, tf, st, tokens, m, x);
    account("embed", 0, 0, t0);
}

static void t_token_shift(backend *be, const struct transformer *tf, const struct tf_state *st,
                          float *hist, const float *h, int m, float *out)
{
    double t0 = op_now();
    orig->token_shift(be, tf, st, hist, h, m, out);
    account("token_shift", 0, 0, t0);
}

static void t_attention(backend *be, const struct transformer *tf, struct tf_state *st, int l,
                        int m)
{
    double t0 = op_now();
    orig->attention(be, tf, st, l, m);
    account("attention", 0, 0, t0);
}

static void t_sample(backend *be, struct sampler *sm, const float *logits, int64_t ld, int rows,
                     int n, uint64_t stream0, uint64_t counter, int32_t *ids)
{
    double t0 = op_now();
    orig->sample(be, sm, logits, ld, rows, n, stream0, counter, ids);
    account("sample", 0, 0, t0);
}

/* ---- the windows ------------------------------------------------------------ */

typedef struct window {
    int64_t limit, done;
    int calls;
    double t_first, t_last, cpu_first, cpu_last;
} window;

static void on_progress(int64_t done, int64_t total, void *user)
{
    window *w = user;
    (void)total;
    w->done = done;
    double t = op_now(), c = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    if (w->calls++ == 0) {
        /* the prefix is behind us: count the token loop only */
        for (int i = 0; i < n_slots; i++)
            slots[i].t = 0, slots[i].n = 0;
        timing_on = 1;
        w->t_first = t;
        w->cpu_first = c;
    }
    w->t_last = t;
    w->cpu_last = c;
}

static int on_abort(void *user)
{
    const window *w = user;
    if (w->done >= w->limit) {
        timing_on = 0;
        return 1;
    }
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_step MODEL.dalle [batch 8] [tokens 32] [threads 1] "
                        "[reps 5] [prime 0]\n");
        return 2;
    }
    const int batch = argc > 2 ? atoi(argv[2]) : 8;
    const int tokens = argc > 3 ? atoi(argv[3]) : 32;
    const int threads = argc > 4 ? atoi(argv[4]) : 1;
    const int reps = argc > 5 ? atoi(argv[5]) : 5;
    const int prime = argc > 6 ? atoi(argv[6]) : 0;
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = threads;
    cp.max_batch = batch;
    dalle_ctx *ctx;
    if (dalle_ctx_create(argv[1], &cp, &ctx)) {
        fprintf(stderr, "bench_step: %s: %s\n", argv[1], dalle_last_error());
        return 1;
    }
    if (tpool_threads(ctx->pool) == 1)
        op_clock = CLOCK_THREAD_CPUTIME_ID;
    transformer *tf = ctx->transformer;
    if (!tf || tf->be != &tf->cpu) {
        fprintf(stderr, "bench_step: needs a transformer on the CPU backend\n");
        return 1;
    }
    static backend_ops timed;
    orig = tf->cpu.op;
    timed = *orig;
    timed.linear = t_linear;
    timed.layer_norm = t_layer_norm;
    timed.geglu = t_geglu;
    timed.add_scaled = t_add_scaled;
    timed.divide_max = t_divide_max;
    timed.fill = t_fill;
    timed.guidance = t_guidance;
    timed.embed = t_embed;
    timed.token_shift = t_token_shift;
    timed.attention = t_attention;
    timed.sample = t_sample;
    tf->cpu.op = &timed;

    const int T = dalle_text_seq_len(ctx), S = dalle_image_seq_len(ctx);
    const int ni = dalle_num_image_tokens(ctx);
    int32_t *text = calloc((size_t)batch * T, sizeof *text);
    int32_t *pr = malloc((size_t)batch * (prime + 1) * sizeof *pr);
    int32_t *out = malloc((size_t)batch * S * sizeof *out);
    uint64_t lcg = 1;
    for (int64_t i = 0; i < (int64_t)batch * T && i < 12; i++)
        text[i] = 1 + (int)(i * 7919 % 40000);
    for (int64_t i = 0; i < (int64_t)batch * prime; i++) {
        lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
        pr[i] = (int32_t)((lcg >> 33) % (uint64_t)ni);
    }
    slot best[MAX_SLOTS];
    int n_best = 0;
    double best_step = 1e30, best_cpu = 0, steps[64];
    const int nrep = reps < 64 ? reps : 64;
    for (int r = 0; r <= nrep; r++) { /* window 0 warms up */
        window w = {.limit = (int64_t)batch * tokens};
        dalle_sample_params sp = dalle_sample_default_params();
        sp.seed = 1234;
        sp.prime = prime ? pr : NULL;
        sp.n_prime = prime;
        sp.progress = on_progress;
        sp.abort = on_abort;
        sp.user = &w;
        dalle_status s = dalle_sample(ctx, text, batch, &sp, out);
        timing_on = 0;
        if (s && s != DALLE_ERR_ABORTED) {
            fprintf(stderr, "bench_step: %s\n", dalle_last_error());
            return 1;
        }
        if (r == 0 || w.calls < 2)
            continue;
        const double n = w.calls - 1, step = (w.t_last - w.t_first) / n;
        steps[r - 1] = step;
        if (step < best_step) {
            best_step = step;
            best_cpu = (w.cpu_last - w.cpu_first) / n;
            n_best = n_slots;
            for (int i = 0; i < n_slots; i++) {
                best[i] = slots[i];
                best[i].t /= n;
            }
            for (int i = 0; i < n_best; i++)
                best[i].n = (int64_t)(best[i].n / n + 0.5);
        }
    }
    qsort(steps, (size_t)nrep, sizeof *steps, cmp_d);
    FILE *la = fopen("/proc/loadavg", "r");
    char load[128] = "?\n";
    if (la) {
        if (!fgets(load, sizeof load, la))
            load[0] = 0;
        fclose(la);
    }
    printf("# %s batch %d, %d threads, %d-token windows primed with %d; load %s", argv[1], batch,
           tpool_threads(ctx->pool), tokens, prime, load);
    printf("# step (%s): best %.3f ms (median %.3f), %.3f ms/token; process CPU %.3f ms/step\n",
           op_clock == CLOCK_MONOTONIC ? "wall" : "thread CPU", best_step * 1e3,
           steps[nrep / 2] * 1e3, best_step * 1e3 / batch, best_cpu * 1e3);
    double sum = 0;
    for (int i = 0; i < n_best; i++) {
        char label[96];
        if (best[i].in)
            snprintf(label, sizeof label, "%.40s %lldx%lld", best[i].name, (long long)best[i].in,
                     (long long)best[i].out);
        else
            snprintf(label, sizeof label, "%.40s", best[i].name);
        printf("  %-24s %8.3f ms/step %5.1f%%  %3lld calls\n", label, best[i].t * 1e3,
               100 * best[i].t / best_step, (long long)best[i].n);
        sum += best[i].t;
    }
    printf("  %-24s %8.3f ms/step %5.1f%%\n", "between", (best_step - sum) * 1e3,
           100 * (best_step - sum) / best_step);
    free(text);
    free(pr);
    free(out);
    dalle_ctx_free(ctx);
    return 0;
}
