/* Which vector code this CPU runs, and the switch every vector kernel
 * keeps (ops_few_rows.c, ops_attend.c, ops_geglu.c, ops_lowp.c): decided
 * once from the CPU, settable by tests and benches to compare the plain C
 * code with the vector code, which give the same bits. */
#include "cpu_simd.h"
#include "ops.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SIMD_X86 1
#include <cpuid.h>
#else
#define SIMD_X86 0
#endif

/* The features, read once: cpuid is slow (a virtual machine traps it), and
 * a kernel asks which code to run on every call. -1: not read yet. */
static atomic_int cpu_features = -1;

static int read_features(void)
{
#if SIMD_X86
    /* F16C through cpuid: clang 14's __builtin_cpu_supports does not know it */
    unsigned eax, ebx, ecx, edx;
    const int f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
    __builtin_cpu_init();
    return (__builtin_cpu_supports("avx2") ? OPS_CPU_AVX2 : 0) |
           (__builtin_cpu_supports("fma") ? OPS_CPU_FMA : 0) | (f16c ? OPS_CPU_F16C : 0);
#else
    return 0;
#endif
}

int ops_cpu_simd(void)
{
    int f = atomic_load_explicit(&cpu_features, memory_order_relaxed);
    if (f < 0) {
        f = read_features();
        atomic_store_explicit(&cpu_features, f, memory_order_relaxed);
    }
    return f;
}

int ops_cpu_avx2_fma(void)
{
    const int need = OPS_CPU_AVX2 | OPS_CPU_FMA;
    return (ops_cpu_simd() & need) == need;
}

int ops_simd_switch(atomic_int *state, int want, int needs)
{
    int s = atomic_load_explicit(state, memory_order_relaxed);
    if (want < 0 && s >= 0)
        return s; /* the common case: decided */
    const int have = (ops_cpu_simd() & needs) == needs;
    s = want >= 0 ? want && have : have;
    atomic_store_explicit(state, s, memory_order_relaxed);
    return s;
}
