/* The attention of one generation step, alone: the kernel-level A/B of the
 * attention kernel (lib/ops_attend.c) against the code it replaced.
 *
 *   bench_attend [reps] [threads]
 *
 * For DALLE-S (8 layers, 8 heads, dim_head 64, 577 keys: the mean position
 * of an image) and DALLE-XS (4 layers, 8 heads, dim_head 32, 161 keys), at
 * batch 1 and 8, builds a random KV cache in the library's layout
 * ([layer][batch][heads][max_pos][dim_head], K and V) and times one step's
 * attention: every (layer, sequence, head) attends one query over the
 * first `keys` positions (full attention, as the bench models), through
 *   - old:   lib/attention.c's attend() before the kernel (eight running
 *            sums per dot product, expf, out += w v), kept below;
 *   - plain: ops_attend's plain C code (ops_attend_simd(0));
 *   - simd:  ops_attend's AVX2/FMA code (the default);
 * alternating the codes within each repetition so that they see the same
 * load. Two cache states: "warm" (the step repeated: what fits stays in the
 * caches) and "cold" (a 64 MiB buffer read between steps, as generation's
 * weight stream does). With one thread (the default) a step runs on the
 * calling thread: the best thread CPU ms is what it cost whatever else ran;
 * with more, the (sequence, head) pairs of each layer go to a pool as
 * lib/attention.c does. Prints best and median ms per step and the KV read
 * rate from the best. Nothing here is a test. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ceilings.h"
#include "dalle/dalle.h"
#include "ops.h"
#include "rng.h"
#include "threadpool.h"

/* Uniform in [-1, 1): element i of array `which` (the library's
 * counter-based generator). */
static float rnd(uint64_t which, uint64_t i)
{
    return (float)(2.0 * rng_uniform(1, which, i, 0) - 1.0);
}

/* CPU seconds of the calling thread: what a one-thread step cost,
 * whatever else the machine ran. */
static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the code before the kernel (lib/attention.c at 1c55c58) -------------- */

static float old_dot(const float *restrict a, const float *restrict b, int64_t n)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += a[i + l] * b[i + l];
    float tail = 0.0f;
    for (; i < n; i++)
        tail += a[i] * b[i];
    return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) +
           tail;
}

static void old_softmax(float *x, int64_t n)
{
    float m = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > m)
            m = x[i];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

/* one contiguous span [0, n) */
static void old_attend(const float *restrict q, const float *k, const float *v, int64_t dh,
                       int64_t n, float *restrict scores, float *restrict out)
{
    for (int64_t j = 0; j < n; j++)
        scores[j] = old_dot(q, k + j * dh, dh);
    for (int64_t d = 0; d < dh; d++)
        out[d] = 0.0f;
    old_softmax(scores, n);
    for (int64_t j = 0; j < n; j++) {
        const float w = scores[j], *vp = v + j * dh;
        for (int64_t d = 0; d < dh; d++)
            out[d] += w * vp[d];
    }
}

/* ---- one step ---------------------------------------------------------------- */

typedef struct work {
    const char *name;
    int layers, heads, batch;
    int64_t dh, max_pos, keys;
    float *K, *V, *q, *out, *scores; /* scores: [batch * heads][max_pos] */
    int code;                        /* 0 old, 1 plain, 2 simd */
    int layer;                       /* the layer a pool job runs */
} work;

static void pair_task(void *arg, int64_t t)
{
    const work *w = arg;
    const int64_t dh = w->dh, P = w->max_pos;
    const int64_t pairs = (int64_t)w->batch * w->heads, at = (int64_t)w->layer * pairs + t;
    const float *K = w->K + at * P * dh, *V = w->V + at * P * dh;
    const float *q = w->q + at * dh;
    float *out = w->out + at * dh, *sc = w->scores + t * P;
    if (w->code == 0) {
        old_attend(q, K, V, dh, w->keys, sc, out);
    } else {
        const ops_span sp = {0, w->keys, 1};
        ops_attend(q, K, V, dh, &sp, 1, sc, out);
    }
}

static void step(work *w, tpool *pool)
{
    const int64_t pairs = (int64_t)w->batch * w->heads;
    for (int l = 0; l < w->layers; l++) {
        w->layer = l;
        if (pool)
            tpool_run(pool, pairs, pair_task, w);
        else
            for (int64_t t = 0; t < pairs; t++)
                pair_task(w, t);
    }
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define MAX_REPS 64
static const char *const code_names[3] = {"old", "plain", "simd"};

static void run(work *w, tpool *pool, int reps, const float *flush, int64_t flush_n)
{
    const int64_t pairs = (int64_t)w->layers * w->batch * w->heads;
    const double bytes = (double)pairs * (double)w->keys * (double)w->dh * 4.0 * 2.0;
    float *ref = malloc(sizeof(float) * (size_t)(pairs * w->dh));
    volatile float sink = 0;
    for (int cold = 0; cold < 2; cold++) {
        double wall[3][MAX_REPS], cpu[3][MAX_REPS];
        for (int r = 0; r < reps; r++)
            for (int c = 0; c < 3; c++) {
                w->code = c;
                ops_attend_simd(c == 2);
                if (cold) {
                    float s = 0;
                    for (int64_t i = 0; i < flush_n; i += 16)
                        s += flush[i];
                    sink += s;
                } else {
                    step(w, pool); /* warm up */
                }
                const double t0 = bench_now();
                const double c0 = thread_cpu();
                step(w, pool);
                cpu[c][r] = thread_cpu() - c0;
                wall[c][r] = bench_now() - t0;
                if (c == 0 && r == 0 && !cold)
                    memcpy(ref, w->out, sizeof(float) * (size_t)(pairs * w->dh));
            }
        /* old vs new: equal up to rounding */
        double diff = 0;
        for (int64_t i = 0; i < pairs * w->dh; i++)
            diff = fmax(diff, fabs(w->out[i] - ref[i]));
        for (int c = 0; c < 3; c++) {
            qsort(wall[c], (size_t)reps, sizeof(double), cmp_double);
            qsort(cpu[c], (size_t)reps, sizeof(double), cmp_double);
            printf("%-9s b%d %4lld keys %-4s %-5s  wall best %8.3f ms  median %8.3f ms  "
                   "thread CPU best %8.3f ms  %6.2f GB/s   (x old: %.2f)\n",
                   w->name, w->batch, (long long)w->keys, cold ? "cold" : "warm", code_names[c],
                   wall[c][0] * 1e3, wall[c][reps / 2] * 1e3, cpu[c][0] * 1e3,
                   bytes / wall[c][0] * 1e-9, wall[0][0] / wall[c][0]);
        }
        printf("%-9s b%d          %s: new - old, max |difference| %.2e\n", w->name, w->batch,
               cold ? "cold" : "warm", diff);
    }
    free(ref);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 9, threads = argc > 2 ? atoi(argv[2]) : 1;
    if (reps < 1 || reps > MAX_REPS || threads < 1) {
        fprintf(stderr, "usage: bench_attend [reps 1..%d] [threads]\n", MAX_REPS);
        return 2;
    }
    tpool *pool = NULL;
    if (threads > 1 && tpool_create(threads, &pool) != DALLE_OK) {
        fprintf(stderr, "bench_attend: tpool_create(%d) failed\n", threads);
        return 1;
    }
    const int64_t flush_n = (int64_t)16 << 20; /* 64 MiB */
    float *flush = malloc(sizeof(float) * (size_t)flush_n);
    if (!flush)
        return 1;
    for (int64_t i = 0; i < flush_n; i++)
        flush[i] = (float)(i & 255);
    printf("bench_attend: %d repetitions, %d thread%s; AVX2/FMA kernel: %s\n", reps, threads,
           threads > 1 ? "s" : "", ops_attend_simd(1) ? "yes" : "no");
    /* name, layers, heads, dim_head, max_pos, keys */
    static const struct {
        const char *name;
        int layers, heads;
        int64_t dh, max_pos, keys;
    } shapes[] = {{"DALLE-S", 8, 8, 64, 1088, 577}, {"DALLE-XS", 4, 8, 32, 288, 161}};
    for (int si = 0; si < 2; si++)
        for (int batch = 1; batch <= 8; batch += 7) {
            work w = {.name = shapes[si].name, .layers = shapes[si].layers,
                      .heads = shapes[si].heads, .batch = batch, .dh = shapes[si].dh,
                      .max_pos = shapes[si].max_pos, .keys = shapes[si].keys};
            const int64_t pairs = (int64_t)w.layers * batch * w.heads;
            const size_t kv = (size_t)(pairs * w.max_pos * w.dh);
            w.K = malloc(sizeof(float) * kv);
            w.V = malloc(sizeof(float) * kv);
            w.q = malloc(sizeof(float) * (size_t)(pairs * w.dh));
            w.out = malloc(sizeof(float) * (size_t)(pairs * w.dh));
            w.scores = malloc(sizeof(float) * (size_t)(batch * w.heads * w.max_pos));
            if (!w.K || !w.V || !w.q || !w.out || !w.scores)
                return 1;
            for (size_t i = 0; i < kv; i++) {
                w.K[i] = rnd(0, i);
                w.V[i] = rnd(1, i);
            }
            const float qs = 1.0f / sqrtf((float)w.dh);
            for (int64_t i = 0; i < pairs * w.dh; i++)
                w.q[i] = qs * rnd(2, (uint64_t)i);
            printf("-- %s batch %d: %d layers x %d heads, dim_head %lld, %lld keys: %.1f MB of "
                   "K and V read a step\n",
                   w.name, batch, w.layers, w.heads, (long long)w.dh, (long long)w.keys,
                   (double)pairs * (double)w.keys * (double)w.dh * 8.0 * 1e-6);
            run(&w, pool, reps, flush, flush_n);
            free(w.K), free(w.V), free(w.q), free(w.out), free(w.scores);
        }
    ops_attend_simd(1);
    free(flush);
    tpool_free(pool);
    return 0;
}
