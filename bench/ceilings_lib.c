/* See ceilings.h. */
#include "ceilings.h"

#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int bench_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

double ceil_sgemm_gflops(int n, int threads, int reps)
{
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(sizeof(float) * nn), *b = malloc(sizeof(float) * nn),
          *c = malloc(sizeof(float) * nn);
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0.0;
    }
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    int saved = openblas_get_num_threads();
    openblas_set_num_threads(threads);
    /* one warm-up product: OpenBLAS starts its threads, pages are touched */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t = bench_now() - t;
        best = t < best ? t : best;
    }
    openblas_set_num_threads(saved);
    free(a), free(b), free(c);
    return 2.0 * n * (double)n * (double)n / best / 1e9;
}

/* Eight lanes of float with the compiler's vector extension: the sum is
 * vectorised without -ffast-math, so the loop is limited by memory, not by
 * the latency of one scalar accumulator. */
typedef float v8f __attribute__((vector_size(32)));

typedef struct reader {
    const float *x;
    size_t n; /* floats, a multiple of 32 */
    pthread_barrier_t *start;
    float sum;
    double secs;
} reader;

static float read_span(const float *x, size_t n)
{
    v8f s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    for (size_t i = 0; i + 32 <= n; i += 32) {
        v8f a, b, c, d;
        memcpy(&a, x + i, sizeof a);
        memcpy(&b, x + i + 8, sizeof b);
        memcpy(&c, x + i + 16, sizeof c);
        memcpy(&d, x + i + 24, sizeof d);
        s0 += a, s1 += b, s2 += c, s3 += d;
    }
    v8f s = s0 + s1 + s2 + s3;
    float t = 0;
    for (int j = 0; j < 8; j++)
        t += s[j];
    return t;
}

static void *reader_main(void *arg)
{
    reader *r = arg;
    pthread_barrier_wait(r->start);
    double t = bench_now();
    r->sum = read_span(r->x, r->n);
    r->secs = bench_now() - t;
    return NULL;
}

double ceil_read_gbps(size_t mib, int threads, int reps)
{
    if (threads < 1)
        threads = 1;
    size_t n = mib * 1024 * 1024 / sizeof(float);
    n -= n % ((size_t)32 * threads);
    float *x = malloc(n * sizeof(float));
    if (!x)
        return 0.0;
    for (size_t i = 0; i < n; i++)
        x[i] = 1.0f;
    size_t per = n / threads;
    double best = 1e30;
    volatile float sink = 0;
    for (int r = 0; r < reps; r++) {
        pthread_t tid[256];
        reader rd[256];
        pthread_barrier_t bar;
        int nt = threads > 256 ? 256 : threads;
        pthread_barrier_init(&bar, NULL, (unsigned)nt + 1);
        for (int i = 0; i < nt; i++) {
            rd[i] = (reader){.x = x + per * i, .n = per, .start = &bar};
            pthread_create(&tid[i], NULL, reader_main, &rd[i]);
        }
        double t = bench_now();
        pthread_barrier_wait(&bar);
        float s = 0;
        for (int i = 0; i < nt; i++) {
            pthread_join(tid[i], NULL);
            s += rd[i].sum;
        }
        t = bench_now() - t;
        pthread_barrier_destroy(&bar);
        sink = sink + s;
        best = t < best ? t : best;
    }
    (void)sink;
    free(x);
    return (double)(per * threads) * sizeof(float) / best / 1e9;
}

const char *ceil_blas_config(void)
{
    const char *c = openblas_get_config();
    return c ? c : "unknown";
}

const char *ceil_blas_core(void)
{
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}

void ceilings_measure(ceilings *c, int n, size_t mib, int threads)
{
    memset(c, 0, sizeof *c);
    c->sgemm_n = n;
    c->read_mib = mib;
    c->threads = threads > 0 ? threads : bench_cores();
    c->sgemm_1 = ceil_sgemm_gflops(n, 1, 3);
    c->sgemm_all = c->threads > 1 ? ceil_sgemm_gflops(n, c->threads, 3) : c->sgemm_1;
    c->read_1 = ceil_read_gbps(mib, 1, 5);
    c->read_all = c->threads > 1 ? ceil_read_gbps(mib, c->threads, 5) : c->read_1;
}
