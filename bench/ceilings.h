/* The machine's own ceilings, measured in the run that reports against them:
 * OpenBLAS sgemm GFLOP/s at a large size and the streaming-read bandwidth of
 * a buffer far larger than the caches, each with one thread and with all.
 * Shared by bench_ceilings and bench_generate (bench/ceilings_lib.c). */
#ifndef DALLE_BENCH_CEILINGS_H
#define DALLE_BENCH_CEILINGS_H

#include <stddef.h>

/* Seconds on the monotonic clock. */
double bench_now(void);

/* The number of online cores. */
int bench_cores(void);

/* Best of `reps` n×n×n cblas_sgemm runs with OpenBLAS set to `threads`
 * threads (restored afterwards), in GFLOP/s (2n³ flops per product). */
double ceil_sgemm_gflops(int n, int threads, int reps);

/* Best of `reps` streaming reads (a vectorised sum) of a `mib` MiB buffer
 * split evenly over `threads` threads, in GB/s (10^9 bytes/s). The buffer
 * is written first (every page resident) and read whole in every repeat. */
double ceil_read_gbps(size_t mib, int threads, int reps);

/* openblas_get_config() and the OpenBLAS core name, or "unknown". */
const char *ceil_blas_config(void);
const char *ceil_blas_core(void);

typedef struct ceilings {
    int sgemm_n;
    size_t read_mib;
    int threads;          /* "all": bench_cores() unless told otherwise */
    double sgemm_1, sgemm_all; /* GFLOP/s */
    double read_1, read_all;   /* GB/s */
} ceilings;

/* Measure all four (sgemm at n, a read of mib MiB). */
void ceilings_measure(ceilings *c, int n, size_t mib, int threads);

#endif
