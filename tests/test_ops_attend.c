/* The attention kernel (lib/ops_attend.c: ops_attend, ops_attend_weights,
 * ops_softmax).
 *
 *   - against double-precision loops, for mild and peaky scores (q of
 *     magnitude 8 / sqrt(dim_head): scores of tens, where only the
 *     max-subtraction keeps exp finite);
 *   - the AVX2/FMA code and the plain C code: the same bits (where the CPU
 *     has AVX2/FMA; otherwise only the plain code is checked);
 *   - the key lists of generation: one contiguous span, a strided span (an
 *     axial column), many short spans (conv_like), empty spans among them,
 *     an empty list (zeros); key counts around the group of 8;
 *   - the bits depend on the key list only: the same keys cut into other
 *     spans give the same bytes; ops_attend_weights = the weights
 *     ops_attend leaves in its scratch;
 *   - ops_softmax against double loops, and its two codes bit for bit.
 * dim_head 1 .. 136: the multiples of 8 of the models and awkward tails. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static float next_value(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 16) % 20001) / 10000.0f - 1.0f;
}

static void fill(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * next_value();
}

/* Positions in the cache. */
#define P 1200

/* The key lists: {start, count, stride}. */
typedef struct span_set {
    const char *name;
    int n;
    ops_span sp[12];
} span_set;

static const span_set sets[] = {
    {"one key", 1, {{5, 1, 1}}},
    {"7 keys", 1, {{0, 7, 1}}},
    {"8 keys", 1, {{0, 8, 1}}},
    {"9 keys", 1, {{3, 9, 1}}},
    {"full, 577 keys", 1, {{0, 577, 1}}},
    {"full, 1088 keys", 1, {{0, 1088, 1}}},
    {"text + axial row", 2, {{0, 65, 1}, {65 + 9 * 32, 20, 1}}},
    {"text + axial column (stride 32)", 2, {{0, 65, 1}, {65 + 7, 30, 32}}},
    {"conv_like 5x5, dilation 2", 6,
     {{0, 65, 1}, {65 + 100, 5, 2}, {65 + 164, 5, 2}, {65 + 228, 5, 2}, {65 + 292, 5, 2},
      {65 + 356, 5, 2}}},
    {"empty spans among others", 5, {{0, 0, 1}, {10, 3, 7}, {40, 0, 3}, {50, 11, 1}, {900, 0, 1}}},
    {"no key", 0, {{0, 0, 1}}},
    {"only empty spans", 2, {{0, 0, 1}, {7, 0, 2}}},
};
#define N_SETS ((int)(sizeof sets / sizeof *sets))

static int64_t count_keys(const span_set *s)
{
    int64_t n = 0;
    for (int i = 0; i < s->n; i++)
        n += s->sp[i].count;
    return n;
}

/* The same keys, each span cut in two where it has two keys or more. */
static int split_spans(const span_set *s, ops_span *out)
{
    int n = 0;
    for (int i = 0; i < s->n; i++) {
        const ops_span a = s->sp[i];
        if (a.count < 2) {
            out[n++] = a;
            continue;
        }
        const int64_t c = a.count / 3 + 1;
        out[n++] = (ops_span){a.start, c, a.stride};
        out[n++] = (ops_span){a.start + c * a.stride, a.count - c, a.stride};
    }
    return n;
}

/* out in double: softmax(q · k_j) · v_j, and the scale of each column,
 * Σ_j w_j |v_j[d]| (what rounding errors are relative to). */
static void reference(const float *q, const float *k, const float *v, int64_t dh,
                      const span_set *s, double *out, double *mag)
{
    const int64_t n = count_keys(s);
    double *sc = malloc(sizeof(double) * (size_t)(n + 1));
    int64_t j = 0;
    double m = -INFINITY;
    for (int i = 0; i < s->n; i++)
        for (int64_t t = 0; t < s->sp[i].count; t++, j++) {
            const float *kp = k + (s->sp[i].start + t * s->sp[i].stride) * dh;
            double d = 0;
            for (int64_t c = 0; c < dh; c++)
                d += (double)q[c] * kp[c];
            sc[j] = d;
            m = d > m ? d : m;
        }
    double sum = 0;
    for (j = 0; j < n; j++)
        sum += sc[j] = exp(sc[j] - m);
    for (int64_t c = 0; c < dh; c++)
        out[c] = mag[c] = 0;
    j = 0;
    for (int i = 0; i < s->n; i++)
        for (int64_t t = 0; t < s->sp[i].count; t++, j++) {
            const float *vp = v + (s->sp[i].start + t * s->sp[i].stride) * dh;
            for (int64_t c = 0; c < dh; c++) {
                out[c] += sc[j] / sum * vp[c];
                mag[c] += sc[j] / sum * fabs(vp[c]);
            }
        }
    free(sc);
}

static void test_dim(int64_t dh, int have_simd)
{
    float *k = malloc(sizeof(float) * (size_t)(P * dh));
    float *v = malloc(sizeof(float) * (size_t)(P * dh));
    float *q = malloc(sizeof(float) * (size_t)dh);
    float *first = malloc(sizeof(float) * (size_t)dh), *out = malloc(sizeof(float) * (size_t)dh);
    float *w_first = malloc(sizeof(float) * P), *w = malloc(sizeof(float) * P);
    double *ref = malloc(sizeof(double) * (size_t)dh), *mag = malloc(sizeof(double) * (size_t)dh);
    fill(k, P * dh, 1.0f);
    fill(v, P * dh, 1.0f);

    double worst = 0;
    int same_code = 1, same_split = 1, same_weights = 1, zeros = 1;
    for (int peaky = 0; peaky < 2; peaky++) {
        fill(q, dh, (peaky ? 8.0f : 1.0f) / sqrtf((float)dh));
        for (int si = 0; si < N_SETS; si++) {
            const span_set *s = &sets[si];
            const int64_t n = count_keys(s);
            ops_attend_simd(1);
            for (int64_t c = 0; c < dh; c++)
                first[c] = 1234.5f;
            ops_attend(q, k, v, dh, s->sp, s->n, w_first, first);
            if (n == 0) {
                for (int64_t c = 0; c < dh; c++)
                    zeros &= first[c] == 0.0f && !signbit(first[c]);
            } else {
                reference(q, k, v, dh, s, ref, mag);
                for (int64_t c = 0; c < dh; c++) {
                    const double e = fabs(first[c] - ref[c]) / mag[c];
                    worst = e > worst ? e : worst;
                }
            }
            /* the weights alone */
            const int64_t nw = ops_attend_weights(q, k, dh, s->sp, s->n, w);
            same_weights &= nw == n && !memcmp(w, w_first, sizeof(float) * (size_t)n);
            /* the plain C code */
            if (have_simd) {
                ops_attend_simd(0);
                ops_attend(q, k, v, dh, s->sp, s->n, w, out);
                same_code &= !memcmp(out, first, sizeof(float) * (size_t)dh) &&
                             !memcmp(w, w_first, sizeof(float) * (size_t)n);
                ops_attend_simd(1);
            }
            /* the same keys in other spans */
            ops_span cut[24];
            const int n_cut = split_spans(s, cut);
            ops_attend(q, k, v, dh, cut, n_cut, w, out);
            same_split &= !memcmp(out, first, sizeof(float) * (size_t)dh);
        }
    }
    /* rounding relative to Σ_j w_j |v_j[d]|: a few float ulps, growing with
     * the scores' magnitude (peaky: an error of e in a score is e in its
     * weight, relatively) */
    CHECK(worst < 2e-6, "dim_head %lld: vs double loops, worst error %.2e of Σ w |v|",
          (long long)dh, worst);
    CHECK(zeros, "dim_head %lld: no key listed: +0 in every column", (long long)dh);
    CHECK(same_weights, "dim_head %lld: ops_attend_weights = ops_attend's weights, bit for bit",
          (long long)dh);
    if (have_simd)
        CHECK(same_code, "dim_head %lld: plain C = AVX2/FMA, bit for bit (out and weights)",
              (long long)dh);
    CHECK(same_split, "dim_head %lld: the same keys cut into other spans: the same bits",
          (long long)dh);
    free(k), free(v), free(q), free(first), free(out), free(w_first), free(w), free(ref),
        free(mag);
}

static void test_softmax(int have_simd)
{
    static const int64_t lens[] = {1, 2, 7, 8, 9, 63, 1000, 4097};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        const int64_t n = lens[li];
        float *x = malloc(sizeof(float) * (size_t)n), *a = malloc(sizeof(float) * (size_t)n);
        float *b = malloc(sizeof(float) * (size_t)n);
        double worst = 0, total = 0;
        int same = 1;
        for (int range = 0; range < 3; range++) {
            /* [-1, 1], [-30, 30], and [-120, 0]: terms below the float range */
            const float scale = range == 0 ? 1.0f : range == 1 ? 30.0f : 60.0f;
            fill(x, n, scale);
            if (range == 2)
                for (int64_t i = 0; i < n; i++)
                    x[i] -= 60.0f;
            memcpy(a, x, sizeof(float) * (size_t)n);
            memcpy(b, x, sizeof(float) * (size_t)n);
            ops_attend_simd(1);
            ops_softmax(a, n);
            ops_attend_simd(0);
            ops_softmax(b, n);
            ops_attend_simd(1);
            same &= !memcmp(a, b, sizeof(float) * (size_t)n);
            /* x - max rounded to float as the kernel (and PyTorch) does: up
             * to half an ulp of 120, 2e-6 relative in the exp, is the
             * input's, not the softmax's error */
            float m = -INFINITY;
            double sum = 0, got = 0;
            for (int64_t i = 0; i < n; i++)
                m = x[i] > m ? x[i] : m;
            for (int64_t i = 0; i < n; i++)
                sum += exp((double)(x[i] - m));
            for (int64_t i = 0; i < n; i++) {
                const double p = exp((double)(x[i] - m)) / sum;
                /* relative, or absolute below FLT_MIN (flushed to 0) */
                const double e = fabs(a[i] - p) / (p > 1.2e-38 ? p : 1.0);
                worst = e > worst ? e : worst;
                got += a[i];
            }
            total = fmax(total, fabs(got - 1.0));
        }
        CHECK(worst < 3e-7 && total < 1e-6,
              "softmax of %lld: worst relative error %.2e, |Σ - 1| %.1e", (long long)n, worst,
              total);
        if (have_simd)
            CHECK(same, "softmax of %lld: plain C = AVX2/FMA, bit for bit", (long long)n);
        free(x), free(a), free(b);
    }
    float one = -3.0f;
    ops_softmax(&one, 1);
    CHECK(one == 1.0f, "softmax of one element = 1 (%g)", one);
    ops_softmax(&one, 0); /* n = 0: nothing, no read */
    CHECK(one == 1.0f, "softmax of nothing leaves the buffer");
}

int main(void)
{
    const int have_simd = ops_attend_simd(1);
    printf("# AVX2/FMA kernel: %s\n", have_simd ? "yes" : "no (plain C only)");
    static const int64_t dims[] = {1, 3, 8, 13, 16, 32, 40, 64, 72, 128, 136};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++)
        test_dim(dims[i], have_simd);
    test_softmax(have_simd);
    ops_attend_simd(1);
    return check_summary();
}
