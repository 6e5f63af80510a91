/* GEGLU with the exact (erf) GELU: y = x * gelu(g), gelu(g) = g·Φ(g),
 * Φ(g) = erfc(-g/√2) / 2, the feed-forward activation of every DALL·E
 * transformer layer (and CLIP's).
 *
 * It used to call libm's erf per element, in double: a step of DALLE-S at
 * batch 8 spent ~5% of its time there, on one thread. Here Φ is evaluated in
 * double from mul / add / div only (no fused multiply-add, no libm), four
 * elements at a time with AVX2 where the CPU has it, one at a time in plain
 * C otherwise, in the same order of the same IEEE operations: the two codes
 * give the same bits (tests/test_ops_geglu.c), chosen at run time
 * (ops_geglu_simd). ops_geglu_pool shares ranges of elements (across rows
 * and columns: a batch-1 step has one row) out to the pool.
 *
 * The math, z = |g|/√2 clamped to [0, GELU_ZMAX]:
 *   erfc(z) = exp(-z²) · erfcx(z), erfcx a degree-14 polynomial in
 *     v = (1/(z + 3) - WMID) / WHALF, v in [-1, 1] over z in [0, 10.5]
 *     (a Chebyshev fit, relative error 4e-12: erfcx is smooth in 1/(z + c),
 *     so one polynomial covers the whole range without a branch);
 *   exp(y), y = -z² in [-110.25, 0]: y = n·ln2 + r (n rounded to nearest
 *     by the 1.5·2^52 trick, ln2 in two parts, n·LN2_HI exact), exp(r) by
 *     its Taylor series to r^11 (|r| <= ln2/2: error < 1e-14), times 2^n
 *     built in the exponent bits;
 *   Φ(g) = erfc(z)/2 for g < 0 (a relative error: no cancellation in the
 *     tail), 1 - erfc(z)/2 for g >= 0; beyond z = 10.5 Φ(g) is 0 or 1 to
 *     far below float's smallest number.
 * gelu = g·Φ in double, rounded once to float: within 0.5000 ulp of the
 * exact value over a dense sweep of g (2 of 52,000 values not correctly
 * rounded), where libm's float erff path (as PyTorch's) loses the negative
 * tail to cancellation. Then y = x · gelu in float, as before. NaN in, NaN
 * out; gelu(-inf) is NaN, as F.gelu's formula gives. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "cpu_simd.h"
#include "ops.h"
#include "threadpool.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GELU_X86 1
#include <immintrin.h>
#else
#define GELU_X86 0
#endif

#define GELU_ZMAX 10.5
#define GELU_C 3.0
/* v = (1/(z + C) - WMID) * WINV maps z in [0, ZMAX] onto [-1, 1] */
#define GELU_WMID 0.2037037037037037
#define GELU_WINV 7.714285714285714
#define GELU_DEG 14
#define SQRT1_2 0.70710678118654752440
#define LOG2E 1.4426950408889634
#define MAGIC 0x1.8p52
#define EXP_DEG 11

/* erfcx(z) in v, highest power first */
static const double erfcx_poly[GELU_DEG + 1] = {
    2.2354125733982623e-08,  4.62417090121611e-08,    -3.862590833742403e-07,
    -6.676585733235854e-07,  5.35234276159875e-06,    1.1486563154568915e-05,
    -7.131803388488434e-05,  -0.00030280328382590086, 0.000517131745180664,
    0.008248284234118573,    0.037164375730294144,    0.10667478656440174,
    0.22366884999669032,     0.35862291746604447,     0.2654619219972814,
};

/* 1/k!, k = EXP_DEG .. 0 (rounded to double; the series' own error is
 * far below the fit's) */
static const double exp_poly[EXP_DEG + 1] = {
    1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
    1.0 / 5040.0,     1.0 / 720.0,     1.0 / 120.0,    1.0 / 24.0,
    1.0 / 6.0,        0.5,             1.0,            1.0,
};

/* ln 2 = LN2_HI + LN2_LO, LN2_HI with 20 low zero bits: n·LN2_HI is exact
 * for the |n| <= 160 here */
static const double LN2_HI = 0x1.62e42fee00000p-1;
static const double LN2_LO = 0x1.a39ef35793c76p-33;

/* ---- which code ------------------------------------------------------------ */

static atomic_int simd_state = -1; /* -1: not decided yet */

int ops_geglu_simd(int want)
{
    return ops_simd_switch(&simd_state, want, OPS_CPU_AVX2);
}

/* ---- plain C --------------------------------------------------------------- */

static uint64_t bits_of(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double double_of(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* gelu(g) rounded to float: the sequence the vector code repeats lane by
 * lane */
static float gelu_plain(float gf)
{
    const double g = gf;
    const double z = (g < 0 ? -g : g) * SQRT1_2;
    const double zc = z > GELU_ZMAX ? GELU_ZMAX : z; /* NaN stays NaN, as minpd */
    /* erfcx(zc) */
    const double v = (1.0 / (zc + GELU_C) - GELU_WMID) * GELU_WINV;
    double q = erfcx_poly[0];
    for (int i = 1; i <= GELU_DEG; i++)
        q = q * v + erfcx_poly[i];
    /* exp(-zc²) */
    const double y = -(zc * zc);
    const double kd = y * LOG2E + MAGIC, n = kd - MAGIC;
    const double r = (y - n * LN2_HI) - n * LN2_LO;
    double p = exp_poly[0];
    for (int i = 1; i <= EXP_DEG; i++)
        p = p * r + exp_poly[i];
    const double scale = double_of((bits_of(kd) - bits_of(MAGIC) + 1023) << 52);
    double h = 0.5 * ((p * scale) * q); /* erfc(z) / 2 */
    if (z > GELU_ZMAX)
        h = 0.0;
    const double phi = g < 0 ? h : 1.0 - h;
    return (float)(g * phi);
}

/* Elements [lo, hi) of y [rows][inner], row by row: y = x · gelu(gate). */
static void geglu_part_plain(const float *h, int64_t inner, float *y, int64_t lo, int64_t hi)
{
    while (lo < hi) {
        const int64_t r = lo / inner, i0 = lo % inner;
        const int64_t i1 = hi - r * inner < inner ? hi - r * inner : inner;
        const float *xr = h + r * 2 * inner, *gr = xr + inner;
        float *yr = y + r * inner;
        for (int64_t i = i0; i < i1; i++)
            yr[i] = xr[i] * gelu_plain(gr[i]);
        lo += i1 - i0;
    }
}

/* ---- AVX2 ------------------------------------------------------------------ */

#if GELU_X86
/* avx2 only, not fma: the compiler must not fuse the multiplies and adds,
 * or the bits would differ from the plain code */
#define GELU_SIMD __attribute__((target("avx2")))

/* gelu of 4 floats, as gelu_plain lane by lane */
static GELU_SIMD __m128 gelu4(__m128 gf)
{
    const __m256d g = _mm256_cvtps_pd(gf);
    const __m256d sign = _mm256_set1_pd(-0.0);
    const __m256d z = _mm256_mul_pd(_mm256_andnot_pd(sign, g), _mm256_set1_pd(SQRT1_2));
    /* min(z, ZMAX) with a NaN z kept: minpd returns its second operand
     * when either is NaN */
    const __m256d zc = _mm256_min_pd(_mm256_set1_pd(GELU_ZMAX), z);
    const __m256d w = _mm256_div_pd(_mm256_set1_pd(1.0), _mm256_add_pd(zc, _mm256_set1_pd(GELU_C)));
    const __m256d v = _mm256_mul_pd(_mm256_sub_pd(w, _mm256_set1_pd(GELU_WMID)),
                                    _mm256_set1_pd(GELU_WINV));
    __m256d q = _mm256_set1_pd(erfcx_poly[0]);
    for (int i = 1; i <= GELU_DEG; i++)
        q = _mm256_add_pd(_mm256_mul_pd(q, v), _mm256_set1_pd(erfcx_poly[i]));
    const __m256d y = _mm256_xor_pd(_mm256_mul_pd(zc, zc), sign);
    const __m256d magic = _mm256_set1_pd(MAGIC);
    const __m256d kd = _mm256_add_pd(_mm256_mul_pd(y, _mm256_set1_pd(LOG2E)), magic);
    const __m256d n = _mm256_sub_pd(kd, magic);
    const __m256d r = _mm256_sub_pd(_mm256_sub_pd(y, _mm256_mul_pd(n, _mm256_set1_pd(LN2_HI))),
                                    _mm256_mul_pd(n, _mm256_set1_pd(LN2_LO)));
    __m256d p = _mm256_set1_pd(exp_poly[0]);
    for (int i = 1; i <= EXP_DEG; i++)
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(exp_poly[i]));
    const __m256i e = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_sub_epi64(_mm256_castpd_si256(kd), _mm256_castpd_si256(magic)),
                         _mm256_set1_epi64x(1023)),
        52);
    __m256d h = _mm256_mul_pd(_mm256_set1_pd(0.5),
                              _mm256_mul_pd(_mm256_mul_pd(p, _mm256_castsi256_pd(e)), q));
    /* z > ZMAX (ordered: a NaN lane keeps its NaN h) */
    h = _mm256_andnot_pd(_mm256_cmp_pd(z, _mm256_set1_pd(GELU_ZMAX), _CMP_GT_OQ), h);
    const __m256d neg = _mm256_cmp_pd(g, _mm256_setzero_pd(), _CMP_LT_OQ);
    const __m256d phi = _mm256_blendv_pd(_mm256_sub_pd(_mm256_set1_pd(1.0), h), h, neg);
    return _mm256_cvtpd_ps(_mm256_mul_pd(g, phi));
}

static GELU_SIMD void geglu_part_simd(const float *h, int64_t inner, float *y, int64_t lo,
                                      int64_t hi)
{
    while (lo < hi) {
        const int64_t r = lo / inner, i0 = lo % inner;
        const int64_t i1 = hi - r * inner < inner ? hi - r * inner : inner;
        const float *xr = h + r * 2 * inner, *gr = xr + inner;
        float *yr = y + r * inner;
        int64_t i = i0;
        for (; i + 4 <= i1; i += 4)
            _mm_storeu_ps(yr + i, _mm_mul_ps(_mm_loadu_ps(xr + i), gelu4(_mm_loadu_ps(gr + i))));
        for (; i < i1; i++)
            yr[i] = xr[i] * gelu_plain(gr[i]);
        lo += i1 - i0;
    }
}
#endif

typedef struct geglu_job {
    const float *h;
    int64_t inner;
    float *y;
    int simd;
} geglu_job;

static void geglu_range(void *arg, int64_t lo, int64_t hi)
{
    const geglu_job *j = arg;
#if GELU_X86
    if (j->simd) {
        geglu_part_simd(j->h, j->inner, j->y, lo, hi);
        return;
    }
#endif
    geglu_part_plain(j->h, j->inner, j->y, lo, hi);
}

/* Below this many elements per task a hand-off costs more than the
 * elements (~2 ns each with AVX2). */
#define GEGLU_TASK_MIN 4096

void ops_geglu_pool(struct tpool *pool, const float *h, int64_t rows, int64_t inner, float *y)
{
    geglu_job j = {h, inner, y, ops_geglu_simd(-1)};
    tpool_for(pool, rows * inner, GEGLU_TASK_MIN, geglu_range, &j);
}

void ops_geglu(const float *h, int64_t rows, int64_t inner, float *y)
{
    ops_geglu_pool(NULL, h, rows, inner, y);
}
