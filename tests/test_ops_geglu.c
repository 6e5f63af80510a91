/* GEGLU's erf-GELU (lib/ops_geglu.c).
 *
 *   - against independent math: g · erfc(-g/√2) / 2 in long double
 *     (libm's erfcl), over a dense sweep of g in [-16, 9], the special
 *     values and random gates: gelu within 1 ulp of float everywhere its
 *     value is a normal float (in fact ~0.5), y = x · gelu within 1.5 ulp;
 *   - the AVX2 code and the plain C code give the same bits (where the CPU
 *     has AVX2; otherwise only the plain code is checked), over a stride
 *     through every float bit pattern (infinities, denormals included;
 *     NaN gates give NaN in both), with row lengths that leave every tail
 *     length;
 *   - a row's bits do not depend on the rows around it, nor on the pool
 *     that splits the elements (none, 1, 2, 3 threads). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops.h"
#include "threadpool.h"

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* gelu(g) alone through ops_geglu (x = 1) */
static float gelu_of(float g)
{
    float h[2] = {1.0f, g}, y;
    ops_geglu(h, 1, 1, &y);
    return y;
}

static long double gelu_ref(float g)
{
    const long double gl = g;
    return gl * erfcl(-gl * 0.707106781186547524400844362104849039L) / 2;
}

/* |got - want| in ulps of float at want (the spacing of floats there) */
static double ulps(float got, long double want)
{
    const float wf = (float)want;
    const float a = fabsf(wf);
    const double u = a < FLT_MIN ? ldexp(1.0, -149) : ldexp(1.0, ilogbf(a) - 23);
    return (double)(fabsl((long double)got - want) / u);
}

static void check_accuracy(void)
{
    double worst = 0;
    float worst_g = 0;
    int64_t n = 0;
    /* a dense sweep (every ~2^-12 of the range) and the special values */
    for (int64_t i = 0; i <= 100000; i++) {
        const float g = -16.0f + 25.0f * (float)i / 100000.0f;
        const long double r = gelu_ref(g);
        if (fabsl(r) < FLT_MIN)
            continue; /* denormal results: checked below as absolute */
        const double e = ulps(gelu_of(g), r);
        n++;
        if (e > worst)
            worst = e, worst_g = g;
    }
    printf("gelu: worst %.4f ulp at g = %.9g over %lld values\n", worst, worst_g, (long long)n);
    CHECK(worst <= 1.0, "gelu within 1 ulp of g·erfc(-g/√2)/2 on [-16, 9] (worst %.4f)", worst);
    /* the far tails: 0 or g itself; tiny results within one step of their
     * float (a denormal step below FLT_MIN) */
    int ok = 1;
    for (float g = -40.0f; g < -13.0f; g += 0.01f)
        ok &= ulps(gelu_of(g), gelu_ref(g)) <= 1.0;
    CHECK(ok, "gelu's negative tail (g in [-40, -13]) within one step of float");
    ok = 1;
    for (float g = 9.0f; g < 1e6f; g *= 1.01f)
        ok &= gelu_of(g) == g;
    CHECK(ok, "gelu(g) = g for g >= 9");
    CHECK(bits_of(gelu_of(0.0f)) == bits_of(0.0f) && bits_of(gelu_of(-0.0f)) == bits_of(-0.0f),
          "gelu(±0) = ±0");
    CHECK(gelu_of(INFINITY) == INFINITY && isnan(gelu_of(-INFINITY)) && isnan(gelu_of(NAN)),
          "gelu(inf) = inf, gelu(-inf) = NaN (as x·Φ(x)), gelu(NaN) = NaN");
    CHECK(gelu_of(1e-30f) == 0.5e-30f && gelu_of(-1e-30f) == -0.5e-30f,
          "gelu(g) = g/2 near 0");

    /* y = x · gelu(g) on random rows */
    enum { ROWS = 7, INNER = 333 };
    static float h[ROWS * 2 * INNER], y[ROWS * INNER];
    uint64_t s = 88172645463325252u;
    for (int i = 0; i < ROWS * 2 * INNER; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        h[i] = (float)((double)(s >> 11) * 0x1.0p-53 * 12.0 - 6.0);
    }
    ops_geglu(h, ROWS, INNER, y);
    double worst_y = 0;
    for (int r = 0; r < ROWS; r++)
        for (int i = 0; i < INNER; i++) {
            const float x = h[r * 2 * INNER + i], g = h[r * 2 * INNER + INNER + i];
            const long double want = (long double)x * gelu_ref(g);
            if (fabsl(want) < FLT_MIN)
                continue;
            const double e = ulps(y[r * INNER + i], want);
            worst_y = e > worst_y ? e : worst_y;
        }
    CHECK(worst_y <= 1.5, "y = x·gelu(g) within 1.5 ulp of the exact product (worst %.4f)",
          worst_y);
}

static void check_codes(void)
{
    if (!ops_geglu_simd(1)) {
        printf("no AVX2 here: only the plain code is checked\n");
        return;
    }
    /* gates: every 4099th float bit pattern (all signs, NaNs, infinities,
     * denormals), 1024 per row beside x = 1 and x = a value of its own */
    enum { INNER = 1021 }; /* odd: every tail length comes up */
    const int64_t n = ((int64_t)1 << 32) / 4099 + 1;
    const int64_t rows = (n + INNER - 1) / INNER;
    float *h = malloc(sizeof(float) * (size_t)(rows * 2 * INNER));
    float *ya = malloc(sizeof(float) * (size_t)(rows * INNER));
    float *yb = malloc(sizeof(float) * (size_t)(rows * INNER));
    if (!h || !ya || !yb) {
        CHECK(0, "out of memory");
        return;
    }
    for (int64_t i = 0; i < rows * INNER; i++) {
        const int64_t r = i / INNER, c = i % INNER;
        h[r * 2 * INNER + c] = (i & 1) ? 1.0f : (float)(i % 1000) * 0.01f - 5.0f;
        h[r * 2 * INNER + INNER + c] = float_of((uint32_t)((uint64_t)i * 4099u));
    }
    ops_geglu_simd(1);
    ops_geglu(h, rows, INNER, ya);
    ops_geglu_simd(0);
    ops_geglu(h, rows, INNER, yb);
    ops_geglu_simd(1);
    /* NaN gates give NaN in both, with a sign that follows the compiler's
     * operand order: a NaN's bits carry nothing */
    int64_t diff = 0;
    for (int64_t i = 0; i < rows * INNER; i++)
        diff += bits_of(ya[i]) != bits_of(yb[i]) && !(isnan(ya[i]) && isnan(yb[i]));
    CHECK(diff == 0, "AVX2 and plain C: the same bits (NaN: both NaN) over %lld gates (%lld differ)",
          (long long)(rows * INNER), (long long)diff);
    /* a row alone, and short rows (tails only) */
    int same = 1;
    for (int64_t len = 1; len <= 9; len++) {
        float a[9], b[9];
        ops_geglu_simd(1);
        ops_geglu(h + 5 * 2 * INNER, 1, len, a);
        ops_geglu_simd(0);
        ops_geglu(h + 5 * 2 * INNER, 1, len, b);
        for (int64_t i = 0; i < len; i++)
            same &= bits_of(a[i]) == bits_of(b[i]);
    }
    ops_geglu_simd(1);
    float row[INNER];
    ops_geglu(h + 3 * 2 * INNER, 1, INNER, row);
    same &= !memcmp(row, ya + 3 * INNER, sizeof row);
    CHECK(same, "short rows: the same bits in both codes; a row alone = that row in a batch");
    /* any pool: ranges of elements cut across rows */
    same = 1;
    for (int t = 1; t <= 3; t++) {
        tpool *pool = NULL;
        if (tpool_create(t, &pool) != DALLE_OK) {
            CHECK(0, "tpool_create(%d)", t);
            continue;
        }
        ops_geglu_pool(pool, h, rows, INNER, yb);
        /* the AVX2 code in both: NaNs too are the same bits */
        same &= !memcmp(ya, yb, sizeof(float) * (size_t)(rows * INNER));
        tpool_free(pool);
    }
    CHECK(same, "1, 2, 3 threads: the same bits as no pool");
    free(h);
    free(ya);
    free(yb);
}

int main(void)
{
    ops_geglu_simd(0);
    printf("-- plain C\n");
    check_accuracy();
    if (ops_geglu_simd(1)) {
        printf("-- AVX2\n");
        check_accuracy();
    }
    check_codes();
    return check_summary();
}
