/* The few-row float32 kernel (lib/ops_few_rows.c: ops_linear_pool with
 * rows <= OPS_LINEAR_FEW_ROWS).
 *
 *   - against a double-precision loop (and OpenBLAS, the OPS_FEW_OFF path);
 *   - the AVX2/FMA code and the plain C code: the same bits (where the CPU
 *     has AVX2/FMA; otherwise only the plain code is checked);
 *   - the same bits with no pool and 1, 2, 3 and 7 threads;
 *   - a row computed in a batch is the same bits as that row alone, and
 *     ldy > out leaves the gap untouched;
 *   - rows > OPS_LINEAR_FEW_ROWS is not taken (ops_linear_few returns 0).
 * Shapes with awkward remainders (in % 8, out % 12) and the transformer's
 * own (512 -> 1536, 2048 -> 512, ...). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dalle/dalle.h"
#include "ops.h"
#include "threadpool.h"

static uint64_t rng_state = 0x243F6A8885A308D3u;

static float next_value(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 16) % 20001) / 10000.0f - 1.0f;
}

static void fill(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = next_value();
}

#define N_POOLS 5
static const int pool_threads[N_POOLS] = {0, 1, 2, 3, 7};

static void test_shape(tpool *const *pools, int64_t rows, int64_t in, int64_t out, int bias,
                       int have_simd)
{
    const int64_t ldy = out + 3;
    float *x = malloc(sizeof(float) * (size_t)(rows * in));
    float *w = malloc(sizeof(float) * (size_t)(out * in));
    float *b = malloc(sizeof(float) * (size_t)out);
    float *first = malloc(sizeof(float) * (size_t)(rows * ldy));
    float *y = malloc(sizeof(float) * (size_t)(rows * ldy));
    float *yrow = malloc(sizeof(float) * (size_t)ldy);
    fill(x, rows * in);
    fill(w, out * in);
    fill(b, out);
    const float *bp = bias ? b : NULL;
    char name[96];
    snprintf(name, sizeof name, "%lld rows x %lld -> %lld%s", (long long)rows, (long long)in,
             (long long)out, bias ? " + bias" : "");

    /* the reference code: SIMD where there is one, else plain */
    ops_few_rows_mode(have_simd ? OPS_FEW_SIMD : OPS_FEW_PLAIN);
    for (int64_t i = 0; i < rows * ldy; i++)
        first[i] = 1234.5f;
    ops_linear_pool(NULL, x, rows, in, w, bp, out, first, ldy);

    /* against double loops: |error| relative to the sum of |products| */
    double worst = 0.0;
    int gap_ok = 1;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t o = 0; o < out; o++) {
            double s = bp ? bp[o] : 0.0, mag = bp ? fabs(bp[o]) : 0.0;
            for (int64_t i = 0; i < in; i++) {
                s += (double)x[r * in + i] * w[o * in + i];
                mag += fabs((double)x[r * in + i] * w[o * in + i]);
            }
            const double e = fabs(first[r * ldy + o] - s) / (mag + 1e-30);
            worst = e > worst ? e : worst;
        }
        for (int64_t o = out; o < ldy; o++)
            gap_ok &= first[r * ldy + o] == 1234.5f;
    }
    CHECK(worst < 1e-6, "%s: vs double loops, worst relative error %.2e", name, worst);
    CHECK(gap_ok, "%s: the columns past out (ldy) untouched", name);

    /* the plain C code: the same bits */
    if (have_simd) {
        ops_few_rows_mode(OPS_FEW_PLAIN);
        memset(y, 0, sizeof(float) * (size_t)(rows * ldy));
        ops_linear_pool(NULL, x, rows, in, w, bp, out, y, ldy);
        int same = 1;
        for (int64_t r = 0; r < rows; r++)
            same &= !memcmp(y + r * ldy, first + r * ldy, sizeof(float) * (size_t)out);
        CHECK(same, "%s: plain C = AVX2/FMA, bit for bit", name);
        ops_few_rows_mode(OPS_FEW_SIMD);
    }

    /* any pool, and each row alone */
    int same_pools = 1, same_alone = 1;
    for (int p = 0; p < N_POOLS; p++) {
        memset(y, 0, sizeof(float) * (size_t)(rows * ldy));
        ops_linear_pool(pools[p], x, rows, in, w, bp, out, y, ldy);
        for (int64_t r = 0; r < rows; r++)
            same_pools &= !memcmp(y + r * ldy, first + r * ldy, sizeof(float) * (size_t)out);
    }
    for (int64_t r = 0; r < rows; r++) {
        ops_linear_pool(pools[2], x + r * in, 1, in, w, bp, out, yrow, ldy);
        same_alone &= !memcmp(yrow, first + r * ldy, sizeof(float) * (size_t)out);
    }
    CHECK(same_pools, "%s: the same bytes with no pool and 1, 2, 3, 7 threads", name);
    CHECK(same_alone, "%s: each row alone = that row of the batch", name);

    /* OpenBLAS (the OFF path) agrees within rounding */
    ops_few_rows_mode(OPS_FEW_OFF);
    ops_linear_pool(pools[2], x, rows, in, w, bp, out, y, ldy);
    double diff = 0.0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            const double d = fabs(y[r * ldy + o] - first[r * ldy + o]) /
                             (sqrt((double)in) + fabs(first[r * ldy + o]));
            diff = d > diff ? d : diff;
        }
    CHECK(diff < 1e-5, "%s: OpenBLAS path within %.2e", name, diff);
    ops_few_rows_mode(OPS_FEW_DEFAULT);

    free(x);
    free(w);
    free(b);
    free(first);
    free(y);
    free(yrow);
}

int main(void)
{
    tpool *pools[N_POOLS] = {0};
    for (int p = 0; p < N_POOLS; p++)
        if (pool_threads[p] && tpool_create(pool_threads[p], &pools[p]) != DALLE_OK) {
            CHECK(0, "tpool_create(%d)", pool_threads[p]);
            return check_summary();
        }
    const int have_simd = ops_few_rows_mode(OPS_FEW_SIMD) == OPS_FEW_SIMD;
    printf("# AVX2/FMA kernel: %s; default mode %d\n", have_simd ? "yes" : "no (plain C only)",
           ops_few_rows_mode(OPS_FEW_DEFAULT));

    static const int64_t shapes[][2] = {
        {1, 1}, {7, 5}, {8, 12}, {9, 13}, {17, 100}, {64, 1000}, {515, 37},
        {512, 1536}, {2048, 512}, {256, 2051}, {33, 3001},
    };
    static const int64_t row_counts[] = {1, 2, 3, 4, 5, 7, 8, 9, 12, 16};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t r = 0; r < sizeof row_counts / sizeof row_counts[0]; r++) {
            /* the big shapes with a few row counts only */
            if (shapes[s][0] * shapes[s][1] > 100000 && row_counts[r] != 1 &&
                row_counts[r] != 8 && row_counts[r] != 16)
                continue;
            test_shape(pools, row_counts[r], shapes[s][0], shapes[s][1], (int)((r + s) % 2),
                       have_simd);
        }

    /* more rows than the kernel takes: not taken, ops_linear_pool uses OpenBLAS */
    {
        float x[17 * 8], w[4 * 8], y[17 * 4];
        fill(x, 17 * 8);
        fill(w, 4 * 8);
        CHECK(ops_linear_few(NULL, x, OPS_LINEAR_FEW_ROWS + 1, 8, w, NULL, 4, y, 4) == 0,
              "%d rows: not the few-row kernel", OPS_LINEAR_FEW_ROWS + 1);
        ops_few_rows_mode(OPS_FEW_OFF);
        CHECK(ops_linear_few(NULL, x, 8, 8, w, NULL, 4, y, 4) == 0, "mode OFF: not taken");
        ops_few_rows_mode(OPS_FEW_DEFAULT);
    }

    for (int p = 0; p < N_POOLS; p++)
        tpool_free(pools[p]);
    return check_summary();
}
