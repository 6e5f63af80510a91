/* The machine's own ceilings, which every benchmark reports against:
 * OpenBLAS sgemm GFLOP/s at a large size and streaming-read bandwidth of a
 * buffer much larger than the caches, with one thread and with all.
 *
 *   bench_ceilings [N] [MiB] [threads]    (defaults 2048, 1024, all cores)
 */
#include <stdio.h>
#include <stdlib.h>

#include "ceilings.h"

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2048;
    size_t mib = argc > 2 ? (size_t)atoi(argv[2]) : 1024;
    int threads = argc > 3 ? atoi(argv[3]) : 0;
    if (n < 16 || mib < 1) {
        fprintf(stderr, "usage: bench_ceilings [N >= 16] [MiB >= 1] [threads]\n");
        return 2;
    }
    ceilings c;
    ceilings_measure(&c, n, mib, threads);
    printf("OpenBLAS: %s (core %s)\n", ceil_blas_config(), ceil_blas_core());
    printf("sgemm %dx%dx%d:          %7.1f GFLOP/s (1 thread)  %7.1f GFLOP/s (%d threads)\n", n,
           n, n, c.sgemm_1, c.sgemm_all, c.threads);
    printf("streaming read %zu MiB: %7.1f GB/s     (1 thread)  %7.1f GB/s     (%d threads)\n",
           mib, c.read_1, c.read_all, c.threads);
    return 0;
}
