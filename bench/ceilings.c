/* The machine's own ceilings, which every benchmark reports against:
 * OpenBLAS sgemm GFLOP/s at a large size and streaming-read bandwidth of a
 * buffer much larger than the caches.
 *
 *   bench_ceilings [N] [MiB]    (defaults 2048, 1024)
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double sgemm_gflops(int n)
{
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    for (long i = 0; i < (long)n * n; i++)
        a[i] = b[i] = (float)(i % 7) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t = now() - t;
        best = t < best ? t : best;
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

static double read_gbps(size_t mib)
{
    size_t n = mib * 1024 * 1024 / sizeof(float);
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = 1.0f;
    double best = 1e30;
    volatile float sink = 0;
    for (int r = 0; r < 5; r++) {
        double t = now();
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = 0; i + 4 <= n; i += 4) {
            s0 += x[i], s1 += x[i + 1], s2 += x[i + 2], s3 += x[i + 3];
        }
        sink = s0 + s1 + s2 + s3;
        t = now() - t;
        best = t < best ? t : best;
    }
    (void)sink;
    free(x);
    return n * sizeof(float) / best / 1e9;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2048;
    size_t mib = argc > 2 ? (size_t)atoi(argv[2]) : 1024;
    printf("sgemm %dx%d: %.1f GFLOP/s (OpenBLAS, %d threads)\n", n, n, sgemm_gflops(n),
           openblas_get_num_threads());
    printf("streaming read of %zu MiB: %.1f GB/s (one thread)\n", mib, read_gbps(mib));
    return 0;
}
