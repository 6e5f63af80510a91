/* Reduced-precision weights (issue 8: lib/ops_lowp.c, the converter's
 * --dtype, the transformer's typed weights).
 *
 *   test_lowp kernels
 *       ops_linear_w with f16 / bf16 / int8 weights (quantised here) against
 *       a float64 reference computed from the dequantised weights, for both
 *       paths (few rows: the matrix-vector kernel; many rows: widened tiles
 *       + sgemm) and both kernels (AVX2/FMA/F16C where the CPU has them, and
 *       plain C); the same bytes for 1, 2 and 3 threads and without a pool;
 *       the few-row path gives a row the same bytes whatever the number of
 *       rows; an f32 weight is exactly ops_linear_pool; ops_weight_row and
 *       ops_weight_rows. Always runs.
 *
 *   test_lowp golden GOLDEN_DIR TMP [CASE F32 F16 BF16 INT8]...
 *       for each golden DALLE case, the bundle converted with --dtype f16,
 *       bf16 and int8 against the f32 bundle: dalle_logits (teacher-forced:
 *       the many-row path) and dalle_logits_incremental (one token at a
 *       time: the few-row path), error per logits row = ||a - b||_2 /
 *       ||b||_2 over the unmasked entries (masked ones must be -FLT_MAX in
 *       both); the worst row must stay <= 1e-2 (f16, bf16) and <= 3e-2
 *       (int8). Printed: worst row, whole-tensor error, and the error
 *       against upstream's logits.npy. Then the int8 bundle gives the same
 *       bytes with 1, 2 and 3 threads (logits, guided logits, sampled
 *       tokens), and the loader refuses an int8 matrix without its scales
 *       or with a negative scale. Skips (77) without the golden cases. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dalle/dalle.h"
#include "npy.h"
#include "ops.h"
#include "threadpool.h"

/* ---- random numbers and the quantisers (written independently of the
 * converter's Python ones) --------------------------------------------------- */

static uint64_t rng = 0x1234567;

static uint32_t next_u32(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 32);
}

static float uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)((next_u32() >> 8) * (1.0 / 16777216.0));
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t to_bf16(float f)
{
    uint32_t u = bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)(u >> 16 | 0x40);
    return (uint16_t)((u + 0x7FFFu + (u >> 16 & 1)) >> 16);
}

static double bf16_value(uint16_t h) { return from_bits((uint32_t)h << 16); }

static uint16_t to_f16(float f)
{
    uint32_t u = bits(f), sign = u >> 16 & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u)
        return (uint16_t)(sign | 0x7E00u);
    if (a >= 0x477FF000u) /* >= 65520: rounds to infinity */
        return (uint16_t)(sign | 0x7C00u);
    if (a < 0x38800000u) /* below 2^-14: a subnormal, in units of 2^-24 */
        return (uint16_t)(sign | (uint32_t)nearbyintf(from_bits(a) * 16777216.0f));
    uint32_t m = a - 0x38000000u;
    return (uint16_t)(sign | (m + 0xFFFu + (m >> 13 & 1)) >> 13);
}

static double f16_value(uint16_t h)
{
    int e = h >> 10 & 0x1F, m = h & 0x3FF;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return h & 0x8000 ? -v : v;
}

/* A weight of one type made from w [out][in], and its dequantised values. */
typedef struct qweight {
    ops_weight w;
    void *data;
    float *scales;
    double *deq; /* [out][in]: the value the library must use */
} qweight;

static void quantise(int dtype, const float *w, int64_t out, int64_t in, int block, qweight *q)
{
    memset(q, 0, sizeof *q);
    q->deq = malloc(sizeof(double) * out * in);
    q->w.dtype = dtype;
    if (dtype == OPS_W_F32) {
        q->data = malloc(sizeof(float) * out * in);
        memcpy(q->data, w, sizeof(float) * out * in);
        for (int64_t i = 0; i < out * in; i++)
            q->deq[i] = w[i];
    } else if (dtype == OPS_W_BF16 || dtype == OPS_W_F16) {
        uint16_t *h = malloc(sizeof(uint16_t) * out * in);
        for (int64_t i = 0; i < out * in; i++) {
            h[i] = dtype == OPS_W_BF16 ? to_bf16(w[i]) : to_f16(w[i]);
            q->deq[i] = dtype == OPS_W_BF16 ? bf16_value(h[i]) : f16_value(h[i]);
        }
        q->data = h;
    } else {
        const int64_t nb = ops_weight_blocks(in, block);
        int8_t *d = malloc((size_t)(out * in));
        q->scales = malloc(sizeof(float) * out * nb);
        for (int64_t r = 0; r < out; r++)
            for (int64_t b = 0; b < nb; b++) {
                const int64_t i0 = b * block, i1 = i0 + block < in ? i0 + block : in;
                float amax = 0.0f;
                for (int64_t i = i0; i < i1; i++)
                    amax = fmaxf(amax, fabsf(w[r * in + i]));
                const float s = (float)(amax / 127.0);
                q->scales[r * nb + b] = s;
                for (int64_t i = i0; i < i1; i++) {
                    double k = s > 0.0f ? nearbyint(w[r * in + i] / (double)s) : 0.0;
                    k = k > 127 ? 127 : k < -127 ? -127 : k;
                    d[r * in + i] = (int8_t)k;
                    q->deq[r * in + i] = (float)((float)k * s); /* float32(q * scale) */
                }
            }
        q->data = d;
        q->w.scales = q->scales;
        q->w.block = block;
    }
    q->w.data = q->data;
}

static void qfree(qweight *q)
{
    free(q->data);
    free(q->scales);
    free(q->deq);
}

/* ---- the kernels ------------------------------------------------------------ */

static const char *const TYPE_NAMES[] = {"f32", "f16", "bf16", "int8"};

/* Largest error of y against the float64 reference, in units of the
 * rounding bound (steps + 8) * 2^-23 * (sum |w x| + |b|): <= 1 passes. */
static double ref_error(const qweight *q, const float *x, int64_t rows, int64_t in,
                        const float *b, int64_t out, const float *y, int64_t ldy, double steps)
{
    double worst = 0.0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0, mag = b ? fabs(b[o]) : 0.0;
            for (int64_t i = 0; i < in; i++) {
                s += q->deq[o * in + i] * x[r * in + i];
                mag += fabs(q->deq[o * in + i] * x[r * in + i]);
            }
            double bound = (steps + 8) * 1.1920928955078125e-7 * mag + 1e-30;
            double e = fabs(y[r * ldy + o] - s) / bound;
            if (!(e <= worst))
                worst = e; /* NaN counts as worst */
        }
    return worst;
}

static void test_kernels(void)
{
    static const int64_t shapes[][2] = {{1, 1},  {7, 5},    {37, 48},  {100, 64},
                                        {3, 33}, {130, 200}, {257, 333}, {64, 1000},
                                        {1536, 256}};
    static const int64_t row_counts[] = {1, 2, 3, 4, 5, 8, 9, 17, 70};
    const int n_shapes = sizeof shapes / sizeof *shapes;
    const int n_rows = sizeof row_counts / sizeof *row_counts;
    const int have_simd = ops_lowp_simd(1);
    printf("# AVX2/FMA/F16C kernel: %s\n", have_simd ? "yes" : "no (plain C only)");
    tpool *pools[3] = {NULL, NULL, NULL};
    for (int t = 0; t < 3; t++)
        CHECK(tpool_create(t + 1, &pools[t]) == DALLE_OK, "pool of %d threads", t + 1);

    for (int si = 0; si < n_shapes; si++) {
        const int64_t out = shapes[si][0], in = shapes[si][1], ldy = out + 3;
        const int64_t max_rows = 70;
        float *w = malloc(sizeof(float) * out * in), *bias = malloc(sizeof(float) * out);
        float *x = malloc(sizeof(float) * max_rows * in);
        float *y = malloc(sizeof(float) * max_rows * ldy);
        float *y1 = malloc(sizeof(float) * max_rows * ldy);
        float *yrow = malloc(sizeof(float) * ldy);
        float *scratch = malloc(sizeof(float) * 3 * ops_linear_w_scratch(in));
        float *row = malloc(sizeof(float) * in), *row2 = malloc(sizeof(float) * in);
        for (int64_t i = 0; i < out * in; i++) /* rows of different magnitudes, a few zeros */
            w[i] = (i / in) % 11 == 5 && (i % in) < 40 ? 0.0f
                                                       : uniform(-1, 1) * (float)(1 + (i / in) % 7);
        for (int64_t i = 0; i < out; i++)
            bias[i] = uniform(-0.5f, 0.5f);
        for (int64_t i = 0; i < max_rows * in; i++)
            x[i] = uniform(-2, 2);
        for (int dt = OPS_W_F16; dt <= OPS_W_I8; dt++) {
            qweight q;
            quantise(dt, w, out, in, 32, &q);
            /* widened rows and row views */
            double row_err = 0.0;
            for (int64_t o = 0; o < out; o += 1 + out / 7) {
                ops_weight_row(&q.w, in, o, row);
                for (int64_t i = 0; i < in; i++)
                    row_err = fmax(row_err, fabs(row[i] - q.deq[o * in + i]));
                const ops_weight v = ops_weight_rows(&q.w, in, o);
                ops_weight_row(&v, in, 0, row2);
                CHECK(!memcmp(row, row2, sizeof(float) * in),
                      "%s %lldx%lld: ops_weight_rows(%lld) row 0 = row %lld", TYPE_NAMES[dt],
                      (long long)out, (long long)in, (long long)o, (long long)o);
            }
            CHECK(row_err == 0.0, "%s %lldx%lld: ops_weight_row equals the dequantised values",
                  TYPE_NAMES[dt], (long long)out, (long long)in);
            for (int simd = have_simd; simd >= 0; simd--) {
                ops_lowp_simd(simd);
                for (int ri = 0; ri < n_rows; ri++) {
                    const int64_t rows = row_counts[ri];
                    const int few = rows <= OPS_LINEAR_W_FEW_ROWS;
                    const float *b = ri % 2 ? bias : NULL;
                    memset(y1, 0xFF, sizeof(float) * max_rows * ldy);
                    ops_linear_w(NULL, x, rows, in, &q.w, b, out, y1, ldy, scratch, 1);
                    double e = ref_error(&q, x, rows, in, b, out, y1, ldy, few ? in / 8.0 + 3 : in);
                    CHECK(e <= 1.0, "%s %s %lldx%lld, %lld rows (%s path%s): error %.3g of the "
                          "float32 rounding bound", TYPE_NAMES[dt], simd ? "avx2" : "plain",
                          (long long)out, (long long)in, (long long)rows,
                          few ? "few-row" : "tiles", b ? ", bias" : "", e);
                    int same = 1;
                    for (int t = 0; t < 3; t++) {
                        memset(y, 0xFF, sizeof(float) * max_rows * ldy);
                        ops_linear_w(pools[t], x, rows, in, &q.w, b, out, y, ldy, scratch, t + 1);
                        for (int64_t r = 0; r < rows; r++)
                            same &= !memcmp(y + r * ldy, y1 + r * ldy, sizeof(float) * out);
                    }
                    CHECK(same, "%s %s %lldx%lld, %lld rows: the same bytes with no pool and "
                          "1, 2, 3 threads", TYPE_NAMES[dt], simd ? "avx2" : "plain",
                          (long long)out, (long long)in, (long long)rows);
                    if (few && rows > 1) {
                        /* a row alone gives the same bytes as inside the batch */
                        int alone = 1;
                        for (int64_t r = 0; r < rows; r++) {
                            ops_linear_w(pools[1], x + r * in, 1, in, &q.w, b, out, yrow, ldy,
                                         NULL, 0);
                            alone &= !memcmp(yrow, y1 + r * ldy, sizeof(float) * out);
                        }
                        CHECK(alone, "%s %s %lldx%lld: each of %lld rows computed alone gives "
                              "the same bytes", TYPE_NAMES[dt], simd ? "avx2" : "plain",
                              (long long)out, (long long)in, (long long)rows);
                    }
                    if (!few) {
                        /* without scratch the many rows go through the few-row kernel */
                        ops_linear_w(pools[2], x, rows, in, &q.w, b, out, y, ldy, NULL, 0);
                        e = ref_error(&q, x, rows, in, b, out, y, ldy, in / 8.0 + 3);
                        CHECK(e <= 1.0, "%s %s %lldx%lld, %lld rows without scratch: error %.3g",
                              TYPE_NAMES[dt], simd ? "avx2" : "plain", (long long)out,
                              (long long)in, (long long)rows, e);
                    }
                }
            }
            ops_lowp_simd(1);
            qfree(&q);
        }
        /* a float32 weight is ops_linear_pool, bit for bit */
        const ops_weight wf = ops_weight_f32(w);
        for (int ri = 0; ri < n_rows; ri += 3) {
            const int64_t rows = row_counts[ri];
            ops_linear_pool(pools[1], x, rows, in, w, bias, out, y1, ldy);
            ops_linear_w(pools[1], x, rows, in, &wf, bias, out, y, ldy, scratch, 2);
            int same = 1;
            for (int64_t r = 0; r < rows; r++)
                same &= !memcmp(y + r * ldy, y1 + r * ldy, sizeof(float) * out);
            CHECK(same, "f32 %lldx%lld, %lld rows: ops_linear_w is ops_linear_pool",
                  (long long)out, (long long)in, (long long)rows);
        }
        free(w);
        free(bias);
        free(x);
        free(y);
        free(y1);
        free(yrow);
        free(scratch);
        free(row);
        free(row2);
    }
    /* bf16 and f16 rounding of the quantisers above (ties to even) */
    CHECK(to_bf16(from_bits(0x3F808000u)) == 0x3F80 && to_bf16(from_bits(0x3F818000u)) == 0x3F82 &&
              to_bf16(from_bits(0x3F808001u)) == 0x3F81,
          "bf16: ties to even");
    CHECK(to_f16(1.0f + 0x1p-11f) == 0x3C00 && to_f16(1.0f + 3 * 0x1p-11f) == 0x3C02 &&
              to_f16(0x1p-24f) == 0x0001 && to_f16(65504.0f) == 0x7BFF,
          "f16: ties to even, subnormals, the largest value");
    for (int t = 0; t < 3; t++)
        tpool_free(pools[t]);
}

/* ---- the golden cases ----------------------------------------------------------- */

typedef struct errs {
    double worst_row, whole;
    int mask_ok;
} errs;

/* a against b, row by row over the entries that are not masked */
static errs compare(const float *a, const float *b, int64_t n_rows, int64_t V)
{
    errs e = {0.0, 0.0, 1};
    double num = 0.0, den = 0.0;
    for (int64_t r = 0; r < n_rows; r++) {
        double rn = 0.0, rd = 0.0;
        for (int64_t j = 0; j < V; j++) {
            const float x = a[r * V + j], y = b[r * V + j];
            if (y == -FLT_MAX || x == -FLT_MAX) {
                e.mask_ok &= x == y;
                continue;
            }
            rn += ((double)x - y) * ((double)x - y);
            rd += (double)y * y;
        }
        num += rn;
        den += rd;
        const double rel = rd > 0.0 ? sqrt(rn / rd) : sqrt(rn);
        if (!(rel <= e.worst_row))
            e.worst_row = rel;
    }
    e.whole = den > 0.0 ? sqrt(num / den) : sqrt(num);
    return e;
}

static dalle_ctx *open_ctx(const char *path, int threads)
{
    dalle_ctx_params p = dalle_ctx_default_params();
    p.n_threads = threads;
    dalle_ctx *ctx = NULL;
    dalle_status s = dalle_ctx_create(path, &p, &ctx);
    CHECK(s == DALLE_OK, "dalle_ctx_create %s, %d threads: %s", path, threads,
          s ? dalle_last_error() : "ok");
    return s ? NULL : ctx;
}

typedef struct inputs {
    int32_t *text, *image;
    int B, n_img;
    npy expected; /* upstream's logits */
} inputs;

static int load_inputs(const char *golden, const char *name, inputs *in)
{
    char path[4096], err[256];
    npy t, im;
    memset(in, 0, sizeof *in);
    snprintf(path, sizeof path, "%s/%s/text.npy", golden, name);
    if (npy_load(path, &t, err, sizeof err)) {
        CHECK(0, "%s", err);
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s/image_tokens.npy", golden, name);
    if (npy_load(path, &im, err, sizeof err)) {
        CHECK(0, "%s", err);
        npy_free(&t);
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s/logits.npy", golden, name);
    if (npy_load(path, &in->expected, err, sizeof err)) {
        CHECK(0, "%s", err);
        npy_free(&t);
        npy_free(&im);
        return -1;
    }
    in->text = npy_to_i32(&t);
    in->image = npy_to_i32(&im);
    in->B = (int)t.dims[0];
    in->n_img = (int)im.dims[1];
    npy_free(&t);
    npy_free(&im);
    return 0;
}

/* logits of the inputs: [B][rows][V], malloc'ed (NULL on failure) */
static float *logits_of(dalle_ctx *ctx, const inputs *in, int incremental, float cond,
                        int64_t *rows, int64_t *V)
{
    *rows = dalle_logits_rows(ctx, in->n_img);
    *V = dalle_total_tokens(ctx);
    float *out = malloc(sizeof(float) * in->B * *rows * *V);
    dalle_status s = incremental
                         ? dalle_logits_incremental(ctx, in->text, in->image, in->B, in->n_img,
                                                    cond, out)
                         : dalle_logits(ctx, in->text, in->image, in->B, in->n_img, cond, out);
    if (s) {
        CHECK(0, "dalle_logits%s: %s", incremental ? "_incremental" : "", dalle_last_error());
        free(out);
        return NULL;
    }
    return out;
}

static void golden_case(const char *golden, const char *name, const char *const paths[4])
{
    static const char *const dts[4] = {"f32", "f16", "bf16", "int8"};
    static const double tol[4] = {0.0, 1e-2, 1e-2, 3e-2};
    inputs in;
    if (load_inputs(golden, name, &in))
        return;
    float *ref[2] = {NULL, NULL};
    int64_t rows = 0, V = 0;
    for (int d = 0; d < 4; d++) {
        dalle_ctx *ctx = open_ctx(paths[d], 2);
        if (!ctx)
            continue;
        if (d > 0) {
            dalle_bundle *bb = NULL;
            const char *v = NULL;
            CHECK(dalle_bundle_open(paths[d], &bb) == DALLE_OK &&
                      dalle_bundle_meta_str(bb, "weights.dtype", &v) == DALLE_OK && v &&
                      !strcmp(v, dts[d]),
                  "%s %s: metadata weights.dtype = %s", name, dts[d], v ? v : "(absent)");
            dalle_bundle_close(bb);
        }
        for (int inc = 0; inc < 2; inc++) {
            float *l = logits_of(ctx, &in, inc, 1.0f, &rows, &V);
            if (!l)
                continue;
            const int64_t n = (int64_t)in.B * rows;
            if (d == 0) {
                ref[inc] = l;
                if (!inc && in.expected.numel == n * V) {
                    errs g = compare(l, in.expected.data, n, V);
                    printf("# %-18s f32  vs upstream logits.npy: worst row %.2e, whole %.2e\n",
                           name, g.worst_row, g.whole);
                }
                continue;
            }
            if (!ref[inc]) {
                free(l);
                continue;
            }
            errs e = compare(l, ref[inc], n, V);
            char up[64] = "";
            if (!inc && in.expected.numel == n * V)
                snprintf(up, sizeof up, "; whole vs upstream %.2e",
                         compare(l, in.expected.data, n, V).whole);
            CHECK(e.mask_ok && e.worst_row <= tol[d],
                  "%s %-4s %-14s: logits vs the f32 bundle: worst row %.2e (<= %.0e), whole "
                  "%.2e%s%s",
                  name, dts[d], inc ? "incremental" : "teacher-forced", e.worst_row, tol[d],
                  e.whole, up, e.mask_ok ? "" : ", MASK DIFFERS");
            free(l);
        }
        dalle_ctx_free(ctx);
    }
    free(ref[0]);
    free(ref[1]);

    /* int8: the same bytes for any thread count (both paths, guidance, sampling) */
    const int64_t n_logits = (int64_t)in.B * rows * V;
    const int S = in.n_img;
    float *first[3] = {NULL, NULL, NULL};
    int32_t *tok1 = malloc(sizeof(int32_t) * in.B * S), *tok = malloc(sizeof(int32_t) * in.B * S);
    for (int nt = 1; nt <= 3 && n_logits > 0; nt++) {
        dalle_ctx *ctx = open_ctx(paths[3], nt);
        if (!ctx)
            continue;
        float *l[3];
        l[0] = logits_of(ctx, &in, 0, 1.0f, &rows, &V);
        l[1] = logits_of(ctx, &in, 1, 1.0f, &rows, &V);
        l[2] = logits_of(ctx, &in, 0, 3.0f, &rows, &V);
        dalle_sample_params sp = dalle_sample_default_params();
        sp.seed = 77;
        int ok = dalle_sample(ctx, in.text, in.B, &sp, nt == 1 ? tok1 : tok) == DALLE_OK;
        CHECK(ok, "%s int8: dalle_sample, %d threads", name, nt);
        if (nt > 1) {
            int same = l[0] && l[1] && l[2] && first[0] && first[1] && first[2];
            for (int k = 0; k < 3 && same; k++)
                same = !memcmp(l[k], first[k], sizeof(float) * n_logits);
            CHECK(same, "%s int8, %d threads: logits, incremental logits, guided logits the "
                  "same bytes as 1 thread", name, nt);
            CHECK(ok && !memcmp(tok, tok1, sizeof(int32_t) * in.B * S),
                  "%s int8, %d threads: the same sampled tokens as 1 thread", name, nt);
            for (int k = 0; k < 3; k++)
                free(l[k]);
        } else {
            for (int k = 0; k < 3; k++)
                first[k] = l[k];
        }
        dalle_ctx_free(ctx);
    }
    for (int k = 0; k < 3; k++)
        free(first[k]);
    free(tok);
    free(tok1);
    free(in.text);
    free(in.image);
    npy_free(&in.expected);
}

/* The int8 bundle re-written through the public writer with tensor `drop`
 * left out (and its aliases), or with the first scale of `negate` made
 * negative. */
static int rewrite(const char *src, const char *dst, const char *drop, const char *negate)
{
    dalle_bundle *b = NULL;
    dalle_bundle_writer *w = NULL;
    if (dalle_bundle_open(src, &b) || dalle_bundle_writer_create(dalle_bundle_kind(b), &w)) {
        dalle_bundle_close(b);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < dalle_bundle_n_meta(b) && !rc; i++) {
        const char *key;
        dalle_meta_type type;
        int64_t count;
        dalle_bundle_meta_info(b, i, &key, &type, &count);
        if (!strcmp(key, "general.kind"))
            continue;
        if (type == DALLE_META_I64 || type == DALLE_META_BOOL) {
            int64_t v; /* get_i64 also reads a bool */
            rc = dalle_bundle_meta_i64(b, key, &v) ||
                 (type == DALLE_META_I64 ? dalle_bundle_writer_set_i64(w, key, v)
                                         : dalle_bundle_writer_set_bool(w, key, (int)v));
        } else if (type == DALLE_META_F64) {
            double v;
            rc = dalle_bundle_meta_f64(b, key, &v) || dalle_bundle_writer_set_f64(w, key, v);
        } else if (type == DALLE_META_STRING) {
            const char *v;
            rc = dalle_bundle_meta_str(b, key, &v) || dalle_bundle_writer_set_str(w, key, v);
        } else if (type == DALLE_META_STRING_ARRAY) {
            const char *v[64];
            int64_t n = 0;
            rc = dalle_bundle_meta_str_array(b, key, v, 64, &n) || n > 64 ||
                 dalle_bundle_writer_set_str_array(w, key, v, n);
        } else if (type == DALLE_META_F64_ARRAY) {
            double v[64];
            int64_t n = 0;
            rc = dalle_bundle_meta_f64_array(b, key, v, 64, &n) || n > 64 ||
                 dalle_bundle_writer_set_f64_array(w, key, v, n);
        } else if (type == DALLE_META_I64_ARRAY) {
            int64_t v[64];
            int64_t n = 0;
            rc = dalle_bundle_meta_i64_array(b, key, v, 64, &n) || n > 64 ||
                 dalle_bundle_writer_set_i64_array(w, key, v, n);
        }
    }
    for (int i = 0; i < dalle_bundle_n_tensors(b) && !rc; i++) {
        dalle_tensor_info t;
        dalle_bundle_tensor_info(b, i, &t);
        const char *target = t.codec == DALLE_CODEC_ALIAS ? NULL : t.name;
        dalle_tensor_info tg = t;
        if (t.codec == DALLE_CODEC_ALIAS) {
            dalle_bundle_tensor_info(b, t.alias_of, &tg);
            target = tg.name;
        }
        if (drop && (!strcmp(t.name, drop) || !strcmp(target, drop)))
            continue;
        if (t.codec == DALLE_CODEC_ALIAS) {
            rc = dalle_bundle_writer_add_alias(w, t.name, tg.name, t.ndim, t.dims,
                                               t.alias_offset);
            continue;
        }
        void *data = malloc(t.nbytes);
        rc = dalle_bundle_read_tensor(b, i, data, t.nbytes);
        if (!rc && negate && !strcmp(t.name, negate))
            ((float *)data)[0] = -1.0f;
        if (!rc)
            rc = dalle_bundle_writer_add_tensor(w, t.name, t.dtype, t.ndim, t.dims, data, 0);
        free(data);
    }
    if (!rc)
        rc = dalle_bundle_writer_finish(w, dst);
    dalle_bundle_writer_free(w);
    dalle_bundle_close(b);
    return rc;
}

static void loader_errors(const char *int8_bundle, const char *tmp)
{
    const char *m = "transformer.layers.layers.0.0.fn.fn.fn.fn.fn.to_qkv.weight";
    char scale[256], path[4096];
    snprintf(scale, sizeof scale, "%s:scale", m);
    snprintf(path, sizeof path, "%s/lowp_no_scale.dalle", tmp);
    dalle_ctx *ctx = NULL;
    if (rewrite(int8_bundle, path, scale, NULL) == 0) {
        CHECK_FAILS(dalle_ctx_create(path, NULL, &ctx), DALLE_ERR_MISMATCH, "scales");
        dalle_ctx_free(ctx);
        ctx = NULL;
    } else {
        CHECK(0, "rewriting %s without %s: %s", int8_bundle, scale, dalle_last_error());
    }
    snprintf(path, sizeof path, "%s/lowp_negative_scale.dalle", tmp);
    if (rewrite(int8_bundle, path, NULL, scale) == 0) {
        CHECK_FAILS(dalle_ctx_create(path, NULL, &ctx), DALLE_ERR_MISMATCH, "expected a finite");
        dalle_ctx_free(ctx);
    } else {
        CHECK(0, "rewriting %s with a negative scale: %s", int8_bundle, dalle_last_error());
    }
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "kernels")) {
        test_kernels();
        return check_summary();
    }
    if (argc < 4 || strcmp(argv[1], "golden") || (argc - 4) % 5) {
        fprintf(stderr, "usage: test_lowp kernels | golden GOLDEN_DIR TMP [CASE F32 F16 BF16 "
                        "INT8]...\n");
        return 2;
    }
    if (argc == 4) /* meson passes the cases only when the golden directory exists */
        SKIP("no golden cases (%s)", argv[2]);
    const char *golden = argv[2], *tmp = argv[3];
    for (int a = 4; a + 5 <= argc; a += 5) {
        const char *paths[4] = {argv[a + 1], argv[a + 2], argv[a + 3], argv[a + 4]};
        golden_case(golden, argv[a], paths);
        if (!strcmp(argv[a], "dalle_full"))
            loader_errors(argv[a + 4], tmp);
    }
    return check_summary();
}
