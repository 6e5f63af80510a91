/* The few-row float32 linear kernel (ops_linear_pool with rows <=
 * OPS_LINEAR_FEW_ROWS: every generation step at batch 1 .. 16).
 *
 * y = x · wᵀ + b with w [out][in] as stored. OpenBLAS handles this shape
 * badly: sgemm re-packs the whole weight matrix on every call for only a
 * few rows (m = 8 spent ~40% of a batch-8 step packing), and sgemv (one
 * row) streams well below the machine's bandwidth. Here every weight row is
 * read from memory once per call and used, from registers and L1, for all
 * the rows of x:
 *
 *   - a task owns a range of output columns (weight rows), cut from the
 *     shape alone;
 *   - the rows of x are split into groups of at most 4 (balanced: 8 = 4 + 4,
 *     7 = 4 + 3); for each block of JT weight rows (JT = 3 when a group has
 *     4 rows, else 4: JT x R accumulators + JT weight vectors fit the 16
 *     AVX registers) every group runs a tile of JT x R accumulators; the
 *     first group streams the weights from memory with a software
 *     prefetch 4 KiB ahead (as lib/ops_lowp.c), the others find them in
 *     L1/L2.
 *
 * Each output element is one fixed sequence of operations that depends on
 * `in` alone: 8 lanes, lane l accumulating elements i = l (mod 8) of [0,
 * in8) in order with fused multiply-adds (in8 = in rounded down to 8), the
 * lanes added as ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)), then
 * the last in - in8 elements one by one (fused multiply-add), then the
 * bias. So the result does not depend on the pool, the split, the tile
 * shape or the number of rows (a row computed in a batch of 8 is the same
 * bits as that row alone), and the AVX2/FMA code and the plain C code
 * (fmaf, the same sequence) give the same bits.
 *
 * Which code runs (ops_few_rows_mode): the AVX2/FMA kernel where the CPU
 * has it (checked at run time); elsewhere the plain C kernel if fmaf is a
 * hardware instruction for this build (__FP_FAST_FMAF: aarch64, ...);
 * otherwise (an x86-64 CPU without FMA, where fmaf is a slow library
 * routine) OpenBLAS as for more rows. */
#include <math.h>
#include <stdatomic.h>

#include "cpu_simd.h"
#include "ops.h"
#include "threadpool.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FEW_X86 1
#include <immintrin.h>
#else
#define FEW_X86 0
#endif

/* A task takes at least this many weights (128 KiB of float32): below that
 * the hand-off costs more than the task streams. */
#define FEW_TASK_WORK ((int64_t)1 << 15)
#define FEW_TARGET_TASKS 32
/* A task's output range is a multiple of this (the tile widths 3 and 4
 * both divide it), so only a product's last task has a tail. */
#define FEW_TASK_ALIGN 12
/* How far ahead of the weights being read the kernel prefetches. */
#define FEW_PREFETCH 4096
/* Rows of x per group (the register tile's height). */
#define FEW_GROUP 4

/* ---- which kernel ------------------------------------------------------ */

/* -1: not decided yet; else OPS_FEW_* */
static atomic_int few_mode = -1;

static int few_default(void)
{
    if (ops_cpu_avx2_fma())
        return OPS_FEW_SIMD;
#ifdef __FP_FAST_FMAF
    return OPS_FEW_PLAIN;
#else
    return OPS_FEW_OFF;
#endif
}

int ops_few_rows_mode(int want)
{
    int s = atomic_load_explicit(&few_mode, memory_order_relaxed);
    if (want == OPS_FEW_SIMD)
        s = ops_cpu_avx2_fma() ? OPS_FEW_SIMD : OPS_FEW_PLAIN;
    else if (want == OPS_FEW_OFF || want == OPS_FEW_PLAIN)
        s = want;
    else if (want == OPS_FEW_DEFAULT || s < 0)
        s = few_default();
    else
        return s;
    atomic_store_explicit(&few_mode, s, memory_order_relaxed);
    return s;
}

/* ---- the job -------------------------------------------------------------- */

typedef struct few_job {
    const float *x, *w, *bias;
    int64_t rows, in, out, ldy, per_task;
    int n_groups, group_rows[OPS_LINEAR_FEW_ROWS / FEW_GROUP + 1];
    int group_row0[OPS_LINEAR_FEW_ROWS / FEW_GROUP + 1];
    int simd;
    float *y;
} few_job;

/* Plain C: output o for rows [r0, r0 + nr). */
static void few_plain(const few_job *j, int64_t o, int64_t r0, int64_t nr)
{
    const int64_t in = j->in, in8 = in & ~(int64_t)7;
    const float *w = j->w + o * in;
    for (int64_t r = r0; r < r0 + nr; r++) {
        const float *x = j->x + r * in;
        float a[8] = {0};
        for (int64_t i = 0; i < in8; i += 8)
            for (int l = 0; l < 8; l++)
                a[l] = fmaf(w[i + l], x[i + l], a[l]);
        float s = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
        for (int64_t i = in8; i < in; i++)
            s = fmaf(w[i], x[i], s);
        if (j->bias)
            s += j->bias[o];
        j->y[r * j->ldy + o] = s;
    }
}

#if FEW_X86
#define FEW_SIMD __attribute__((target("avx2,fma")))
#define FEW_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

static FEW_INLINE float few_hsum8(__m256 v)
{
    /* lanes (l, l + 4), then (0 + 2, 1 + 3), then the two: the tree above */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

/* Weight rows [o, o + JT) times rows [r0, r0 + R) of x: JT x R
 * accumulators in registers. JT and R are constants where this is
 * inlined; pf: prefetch the weights (the first group of rows). */
static FEW_INLINE void few_tile(int JT, int R, const few_job *j, int64_t o, int64_t r0, int pf)
{
    const int64_t in = j->in, in8 = in & ~(int64_t)7;
    const float *w = j->w + o * in, *x = j->x + r0 * in;
    __m256 acc[4][FEW_GROUP];
    for (int t = 0; t < JT; t++)
        for (int r = 0; r < R; r++)
            acc[t][r] = _mm256_setzero_ps();
    /* the tile's JT rows are contiguous and consumed at JT x 32 bytes a
     * step: prefetch that far (two lines) into what follows. An address
     * only: a prefetch past the matrix never faults. */
    const uintptr_t ahead = (uintptr_t)w + FEW_PREFETCH;
    for (int64_t i = 0; i < in8; i += 8) {
        if (pf) {
            const uintptr_t p = ahead + (uintptr_t)i * 4u * (uintptr_t)JT;
            _mm_prefetch((const char *)p, _MM_HINT_T0);
            if (JT > 2)
                _mm_prefetch((const char *)(p + 64), _MM_HINT_T0);
        }
        __m256 wv[4];
        for (int t = 0; t < JT; t++)
            wv[t] = _mm256_loadu_ps(w + t * in + i);
        for (int r = 0; r < R; r++) {
            const __m256 xv = _mm256_loadu_ps(x + r * in + i);
            for (int t = 0; t < JT; t++)
                acc[t][r] = _mm256_fmadd_ps(wv[t], xv, acc[t][r]);
        }
    }
    for (int t = 0; t < JT; t++)
        for (int r = 0; r < R; r++) {
            __m128 s = _mm_set_ss(few_hsum8(acc[t][r]));
            for (int64_t i = in8; i < in; i++)
                s = _mm_fmadd_ss(_mm_set_ss(w[t * in + i]), _mm_set_ss(x[r * in + i]), s);
            float v = _mm_cvtss_f32(s);
            if (j->bias)
                v += j->bias[o + t];
            j->y[(r0 + r) * j->ldy + o + t] = v;
        }
}

/* One tile with run-time JT (1, 3 or 4) and R (1 .. 4): the constant
 * instances. */
static FEW_SIMD void few_tile_any(int JT, int R, const few_job *j, int64_t o, int64_t r0,
                                  int pf)
{
#define FEW_CASE(jt, r)                                                                  \
    case (jt) * 8 + (r): few_tile(jt, r, j, o, r0, pf); break;
    switch (JT * 8 + R) {
        FEW_CASE(4, 1) FEW_CASE(4, 2) FEW_CASE(4, 3) FEW_CASE(4, 4)
        FEW_CASE(3, 1) FEW_CASE(3, 2) FEW_CASE(3, 3) FEW_CASE(3, 4)
        FEW_CASE(1, 1) FEW_CASE(1, 2) FEW_CASE(1, 3) FEW_CASE(1, 4)
    default: break;
    }
#undef FEW_CASE
}

static FEW_SIMD void few_simd(const few_job *j, int64_t j0, int64_t j1)
{
    int rmax = 0;
    for (int g = 0; g < j->n_groups; g++)
        rmax = j->group_rows[g] > rmax ? j->group_rows[g] : rmax;
    const int JT = rmax == 4 ? 3 : 4;
    int64_t o = j0;
    for (; o + JT <= j1; o += JT)
        for (int g = 0; g < j->n_groups; g++)
            few_tile_any(JT, j->group_rows[g], j, o, j->group_row0[g], g == 0);
    for (; o < j1; o++)
        for (int g = 0; g < j->n_groups; g++)
            few_tile_any(1, j->group_rows[g], j, o, j->group_row0[g], g == 0);
}
#endif

static void few_task(void *arg, int64_t t)
{
    const few_job *j = arg;
    const int64_t j0 = t * j->per_task;
    const int64_t j1 = j0 + j->per_task < j->out ? j0 + j->per_task : j->out;
#if FEW_X86
    if (j->simd) {
        few_simd(j, j0, j1);
        return;
    }
#endif
    for (int64_t o = j0; o < j1; o++)
        few_plain(j, o, 0, j->rows);
}

int ops_linear_few(struct tpool *pool, const float *x, int64_t rows, int64_t in,
                   const float *w, const float *b, int64_t out, float *y, int64_t ldy)
{
    const int mode = ops_few_rows_mode(-1);
    if (mode == OPS_FEW_OFF || rows > OPS_LINEAR_FEW_ROWS)
        return 0;
    if (rows <= 0 || out <= 0)
        return 1;
    few_job j = {.x = x, .w = w, .bias = b, .rows = rows, .in = in, .out = out, .ldy = ldy,
                 .simd = mode == OPS_FEW_SIMD, .y = y};
    /* groups of at most FEW_GROUP rows, as even as possible */
    j.n_groups = (int)((rows + FEW_GROUP - 1) / FEW_GROUP);
    for (int g = 0, r0 = 0; g < j.n_groups; g++) {
        const int n = (int)(rows / j.n_groups) + (g < (int)(rows % j.n_groups));
        j.group_row0[g] = r0;
        j.group_rows[g] = n;
        r0 += n;
    }
    /* output columns per task: from the shape alone */
    int64_t per = (out + FEW_TARGET_TASKS - 1) / FEW_TARGET_TASKS;
    const int64_t min_per = (FEW_TASK_WORK + in - 1) / (in > 0 ? in : 1);
    if (per < min_per)
        per = min_per;
    per = (per + FEW_TASK_ALIGN - 1) / FEW_TASK_ALIGN * FEW_TASK_ALIGN;
    j.per_task = per;
    tpool_run(pool, (out + per - 1) / per, few_task, &j);
    return 1;
}
