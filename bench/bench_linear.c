/* The linear layers of one generation step, alone: the kernel-level A/B of
 * the few-row float32 kernel (lib/ops_few_rows.c) against OpenBLAS, and of
 * the reduced-precision few-row kernels (lib/ops_lowp.c).
 *
 *   bench_linear [S|XS] [reps] [threads...]
 *
 * Builds the transformer's matrices of DALLE-S (or XS) — per layer to_qkv,
 * to_out, the GEGLU feed-forward's two linears; then the image rows of
 * to_logits — as separate random arrays (151 MB of float32 for S: far out
 * of the caches, as in generation), and times one pass over all of them
 * (one "token step") with 1 and 8 rows of x, for each weight type and each
 * code, alternating the codes within each repetition so that they see the
 * same load. Prints the best and median wall ms per step, the best
 * process CPU ms (robust to other load with one thread), and the weights'
 * stream rate (GB/s) and GFLOP/s from the best wall time. Nothing here is
 * a test. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dalle/dalle.h"
#include "ops.h"
#include "threadpool.h"

typedef struct mat {
    int64_t in, out;
    float *w, *b;
    ops_weight q[3]; /* f32, bf16, int8 */
    void *qdata[2];
    float *scales;
} mat;

static uint64_t rng = 0x9E3779B97F4A7C15u;

static float rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 16) % 20001) / 10000.0f - 1.0f;
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }
/* CPU time of the whole process: with one thread, the time the step
 * really ran, whatever else the machine was doing (with more, it counts
 * the pool's spinning too) */
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static void make(mat *m, int64_t in, int64_t out)
{
    m->in = in;
    m->out = out;
    m->w = malloc(sizeof(float) * (size_t)(in * out));
    m->b = malloc(sizeof(float) * (size_t)out);
    for (int64_t i = 0; i < in * out; i++)
        m->w[i] = rnd() * 0.05f;
    for (int64_t i = 0; i < out; i++)
        m->b[i] = rnd() * 0.02f;
    m->q[0] = ops_weight_f32(m->w);
    uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(in * out));
    for (int64_t i = 0; i < in * out; i++)
        h[i] = to_bf16(m->w[i]);
    m->qdata[0] = h;
    m->q[1] = (ops_weight){OPS_W_BF16, h, NULL, 0};
    const int64_t nb = ops_weight_blocks(in, 32);
    int8_t *q = malloc((size_t)(in * out));
    m->scales = malloc(sizeof(float) * (size_t)(nb * out));
    for (int64_t o = 0; o < out; o++)
        for (int64_t k = 0; k < nb; k++) {
            float mx = 0.0f;
            const int64_t i0 = k * 32, i1 = i0 + 32 < in ? i0 + 32 : in;
            for (int64_t i = i0; i < i1; i++) {
                const float a = m->w[o * in + i] < 0 ? -m->w[o * in + i] : m->w[o * in + i];
                mx = a > mx ? a : mx;
            }
            const float s = mx > 0 ? mx / 127.0f : 1.0f;
            m->scales[o * nb + k] = s;
            for (int64_t i = i0; i < i1; i++) {
                float v = m->w[o * in + i] / s;
                q[o * in + i] = (int8_t)(v < 0 ? v - 0.5f : v + 0.5f);
            }
        }
    m->qdata[1] = q;
    m->q[2] = (ops_weight){OPS_W_I8, q, m->scales, 32};
}

static int cmp_d(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const int xs = argc > 1 && !strcmp(argv[1], "XS");
    const int reps = argc > 2 ? atoi(argv[2]) : 7;
    int threads[8] = {1, 2}, n_threads = 2;
    if (argc > 3) {
        n_threads = 0;
        for (int a = 3; a < argc && n_threads < 8; a++)
            threads[n_threads++] = atoi(argv[a]);
    }
    const int64_t dim = xs ? 256 : 512, depth = xs ? 4 : 8, inner = xs ? 256 : 512;
    const int64_t n_img = xs ? 1024 : 8192;
    const int n_mats = (int)(4 * depth + 1);
    mat *m = calloc((size_t)n_mats, sizeof *m);
    double bytes32 = 0, flops1 = 0;
    for (int64_t l = 0; l < depth; l++) {
        make(&m[4 * l + 0], dim, 3 * inner);
        make(&m[4 * l + 1], inner, dim);
        make(&m[4 * l + 2], dim, 8 * dim);
        make(&m[4 * l + 3], 4 * dim, dim);
    }
    make(&m[n_mats - 1], dim, n_img);
    for (int i = 0; i < n_mats; i++) {
        bytes32 += 4.0 * (double)(m[i].in * m[i].out);
        flops1 += 2.0 * (double)(m[i].in * m[i].out);
    }
    const double bytes_of[3] = {bytes32, bytes32 / 2, bytes32 * (1.0 + 4.0 / 32) / 4};
    float *x = malloc(sizeof(float) * 16 * 4096), *y = malloc(sizeof(float) * 16 * 8192);
    for (int i = 0; i < 16 * 4096; i++)
        x[i] = rnd();
    FILE *la = fopen("/proc/loadavg", "r");
    char load[128] = "?";
    if (la) {
        if (!fgets(load, sizeof load, la))
            load[0] = 0;
        fclose(la);
    }
    printf("# DALLE-%s linears of one step: %.1f MB float32 weights, %.1f MFLOP per row; load %s",
           xs ? "XS" : "S", bytes32 / 1e6, flops1 / 1e6, load);
    printf("# %-6s %-5s %4s %3s %10s %10s %8s %8s %9s\n", "dtype", "code", "rows", "thr",
           "best ms", "median ms", "cpu ms", "GB/s", "GFLOP/s");
    static const char *dt_names[3] = {"f32", "bf16", "int8"};
    for (int ti = 0; ti < n_threads; ti++) {
        tpool *pool = NULL;
        if (tpool_create(threads[ti], &pool) != DALLE_OK)
            return 1;
        static const int row_counts[2] = {1, 8};
        for (int ri = 0; ri < 2; ri++) {
            const int rows = row_counts[ri];
            /* variants: f32 OpenBLAS, f32 kernel, bf16, int8 */
            enum { NV = 4 };
            double t[NV][64], cpu[NV];
            const int nrep = reps < 64 ? reps : 64;
            for (int v = 0; v < NV; v++)
                cpu[v] = 1e30;
            for (int r = 0; r < nrep; r++)
                for (int v = 0; v < NV; v++) {
                    const int dt = v < 2 ? 0 : v - 1;
                    ops_few_rows_mode(v == 0 ? OPS_FEW_OFF : OPS_FEW_DEFAULT);
                    const double t0 = now(), c0 = cpu_now();
                    for (int i = 0; i < n_mats; i++)
                        ops_linear_w(pool, x, rows, m[i].in, &m[i].q[dt], m[i].b, m[i].out, y,
                                     m[i].out, NULL, 0);
                    t[v][r] = now() - t0;
                    const double c = cpu_now() - c0;
                    cpu[v] = c < cpu[v] ? c : cpu[v];
                }
            ops_few_rows_mode(OPS_FEW_DEFAULT);
            for (int v = 0; v < NV; v++) {
                const int dt = v < 2 ? 0 : v - 1;
                qsort(t[v], (size_t)nrep, sizeof(double), cmp_d);
                const double best = t[v][0], med = t[v][nrep / 2];
                printf("  %-6s %-5s %4d %3d %10.3f %10.3f %8.3f %8.2f %9.2f\n", dt_names[dt],
                       v == 0 ? "blas" : (v == 1 ? "few" : "lowp"), rows, threads[ti],
                       best * 1e3, med * 1e3, cpu[v] * 1e3, bytes_of[dt] / best / 1e9,
                       flops1 * rows / best / 1e9);
            }
        }
        tpool_free(pool);
    }
    for (int i = 0; i < n_mats; i++) {
        free(m[i].w);
        free(m[i].b);
        free(m[i].qdata[0]);
        free(m[i].qdata[1]);
        free(m[i].scales);
    }
    free(m);
    free(x);
    free(y);
    return 0;
}
