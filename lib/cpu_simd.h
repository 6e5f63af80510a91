/* The vector code a CPU runs: a C-only header (the CUDA files include
 * lib/ops.h, not this). */
#ifndef DALLE_CPU_SIMD_H
#define DALLE_CPU_SIMD_H

#include <stdatomic.h>

/* The vector instructions this CPU runs (lib/cpu_simd.c; checked at run
 * time, 0 off x86-64), and whether it has AVX2 and FMA: the vector
 * kernels' condition. */
enum { OPS_CPU_AVX2 = 1, OPS_CPU_FMA = 2, OPS_CPU_F16C = 4 };
int ops_cpu_simd(void);
int ops_cpu_avx2_fma(void);
/* A vector kernel's switch (*state: -1 until decided, 0 plain C, 1 vector
 * code): want = -1 asks (deciding from the CPU the first time), 0 / 1 sets
 * it (1 only where the CPU has every OPS_CPU_* bit of `needs`). Returns
 * the code now in use. */
int ops_simd_switch(atomic_int *state, int want, int needs);

#endif
