/* The CUDA backend's operations (lib/cuda/ops_cuda.cu) against the CPU ones
 * (lib/ops_cpu.c, ops_gemm.c, token_shift.c, sampler.c, rng.c) on random
 * inputs.
 *
 * Tolerances (|gpu - cpu| <= rel * |cpu| + abs):
 *   layer_norm, geglu, add_scaled, divide_max, softmax, quick_gelu, rotary,
 *   scale: rel 1e-5, abs 1e-6 (same formulas; only reduction orders and the
 *   GPU's expf / erf / exp, within 2 ulp, differ);
 *   kv_append, token_shift: exact (copies);
 *   embed (the transformer's, with and without positions, stable or not),
 *   fill (the logits mask), guidance: exact (the same roundings as
 *   lib/backend_cpu.c's operations, which are the reference);
 *   attention: rel 1e-5, abs 1e-5 (outputs are weighted means of values in
 *   [-1, 1]; the dot products and the weighted sum run in other orders);
 *   CLIP's operations (lib/clip_backend.c): gather_rows, patches, mean_rows,
 *   clip_scores exact (copies, or double sums in the CPU's order);
 *   clip_attend (key mask, causal) rel 1e-5, abs 1e-5; l2_normalize rel
 *   1e-5, abs 1e-6;
 *   gemm / linear (TF32 off): |gpu - cpu| <= 1e-5 * sum_l |a_il b_lj| (+
 *   |beta c|), the scale of a float dot product's rounding; a product whose
 *   exact answer TF32 would round must come out exact;
 *   RNG: the 64-bit words equal, the Gumbel noise within 1e-13;
 *   sampling: the same ids as sampler_pick on every row (continuous logits
 *   and the tie cases of tests/test_sampler.c).
 *   The VAEs' image operations (lib/conv.c): conv2d and conv_transpose2d
 *   (every geometry the VAEs use, whole and one-row im2col tiles) within
 *   1e-5 * the same convolution of |x|, |w| and |b| (a float sum's rounding
 *   scale); group_norm (+ swish) rel 1e-5, abs 1e-6; relu, residual, the
 *   poolings, upsampling, the id look-ups, the pixel maps but the sigmoid
 *   one, |z|² and the argmax (ties too): exact; the sigmoid map rel 1e-5,
 *   abs 1e-6; vq_scores within 1e-5 * (|z|² + |e|² + 2 Σ|z e|).
 *
 * Without a GPU: checks that a missing cuBLAS, or a library without its
 * symbols, fails cuda_ops_create with a message naming the library and the
 * symbol; that creating the backend fails cleanly (a status and a message,
 * no crash); then exits 77 (skipped), or 1 if any of that failed. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend_ops.h"
#include "check.h"
#include "conv.h"
#include "half.h"
#include "clip_model.h" /* CLIP's operations: clip_work for the CPU's attention scratch */
#include "cuda/ops_cuda.h"
#include "ops.h"
#include "rng.h"
#include "sampler.h"
#include "transformer_internal.h"

static uint64_t lcg_state = 0x2545F4914F6CDD1Dull;
static uint32_t lcg(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(lcg_state >> 33);
}

static float urand(float lo, float hi)
{
    return lo + (hi - lo) * ((float)(lcg() % 16777216u) / 16777216.0f);
}

static void fill(float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = urand(lo, hi);
}

/* n random 16-bit weights of dtype OPS_W_F16 or OPS_W_BF16 in about
 * [-1, 1] (every mantissa bit random; f16 also a few subnormals). */
static void random_half(uint16_t *h, size_t n, int dtype)
{
    for (size_t i = 0; i < n; i++) {
        const uint32_t r = lcg();
        if (dtype == OPS_W_BF16) {
            const uint32_t exp = 120 + r % 8; /* 2^-7 .. 1 */
            h[i] = (uint16_t)((r >> 31) << 15 | exp << 7 | (r >> 8 & 0x7f));
        } else {
            const uint32_t exp = i % 97 == 0 ? 0 : 8 + r % 8; /* 2^-7 .. 1, or subnormal */
            h[i] = (uint16_t)((r >> 31) << 15 | exp << 10 | (r >> 8 & 0x3ff));
        }
    }
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        printf("FAIL: out of host memory\n");
        exit(1);
    }
    return p;
}

static cuda_ops *ctx;
static int quick; /* `test_cuda_ops quick`: a smaller sweep, for compute-sanitizer */

/* A device copy of host data (the arena; reset per section). */
static void *dev_copy(const void *host, size_t bytes)
{
    void *d = NULL;
    if (cuda_ops_alloc(ctx, bytes, &d) != DALLE_OK ||
        (host && cuda_ops_upload(ctx, d, host, bytes) != DALLE_OK)) {
        printf("FAIL: device buffer of %zu bytes: %s\n", bytes, dalle_last_error());
        exit(1);
    }
    return d;
}

static void download(void *host, const void *dev, size_t bytes)
{
    if (cuda_ops_download(ctx, host, dev, bytes) != DALLE_OK) {
        printf("FAIL: download: %s\n", dalle_last_error());
        exit(1);
    }
}

/* The call succeeded (else a failed check with the message). */
#define CALL(call)                                                                             \
    do {                                                                                       \
        dalle_status call_st_ = (call);                                                        \
        if (call_st_ != DALLE_OK)                                                              \
            CHECK(0, "%s -> %d: %s", #call, (int)call_st_, dalle_last_error());                \
    } while (0)

/* Largest |got - want| / (rel * |want| + abs) over n values: <= 1 passes. */
static double err_ratio(const float *got, const float *want, size_t n, double rel, double abs)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double r = d / (rel * fabs((double)want[i]) + abs);
        if (!(r <= worst)) /* NaN counts as the worst */
            worst = isnan(r) ? INFINITY : r;
    }
    return worst;
}

static size_t count_diff_bits(const float *a, const float *b, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += memcmp(a + i, b + i, sizeof *a) != 0;
    return k;
}

/* ------------------------------------------------------------------------ */
/* Without a GPU too: cuBLAS loading and the failure paths                   */

static void check_without_gpu(void)
{
    cuda_ops_params p;
    cuda_ops *c = (cuda_ops *)&p; /* must come back NULL */
    cuda_ops_params_init(&p);
    p.cublas_library = "libdalle-test-no-such-cublas.so.0";
    dalle_status st = cuda_ops_create(&p, &c);
    const char *msg = dalle_last_error();
    CHECK(st == DALLE_ERR_UNSUPPORTED && c == NULL &&
              strstr(msg, "libdalle-test-no-such-cublas.so.0") && strstr(msg, "cuBLAS"),
          "missing cuBLAS -> %d (want %d), \"%s\"", (int)st, (int)DALLE_ERR_UNSUPPORTED, msg);

    c = (cuda_ops *)&p;
    p.cublas_library = "libm.so.6"; /* loads, but holds no cuBLAS */
    st = cuda_ops_create(&p, &c);
    msg = dalle_last_error();
    CHECK(st == DALLE_ERR_UNSUPPORTED && c == NULL && strstr(msg, "libm.so.6") &&
              strstr(msg, "cublasCreate_v2"),
          "library without cuBLAS symbols -> %d, \"%s\"", (int)st, msg);

    CHECK(strncmp(cuda_ops_default_cublas(), "libcublas.so.", 13) == 0,
          "default cuBLAS library: %s", cuda_ops_default_cublas());
    CHECK(cuda_ops_create(NULL, NULL) == DALLE_ERR_INVALID_ARGUMENT, "create(NULL, NULL) refused");
}

/* ------------------------------------------------------------------------ */
/* Row-wise and elementwise operations                                       */

static void check_layer_norm(void)
{
    const int64_t shapes[][2] = {{37, 1000}, {5, 64}, {3, 4099}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int64_t rows = shapes[si][0], dim = shapes[si][1];
        size_t mark = cuda_ops_arena_mark(ctx), n = (size_t)(rows * dim);
        float *x = xmalloc(n * 4), *g = xmalloc((size_t)dim * 4), *b = xmalloc((size_t)dim * 4);
        float *want = xmalloc(n * 4), *got = xmalloc(n * 4), *got2 = xmalloc(n * 4);
        fill(x, n, 2.0f, 8.0f); /* a large mean: the centring matters */
        fill(g, (size_t)dim, 0.5f, 1.5f);
        fill(b, (size_t)dim, -0.5f, 0.5f);
        ops_layer_norm(x, rows, dim, g, b, 1e-5f, want);
        float *dx = dev_copy(x, n * 4), *dg = dev_copy(g, (size_t)dim * 4),
              *db = dev_copy(b, (size_t)dim * 4), *dy = dev_copy(NULL, n * 4);
        CALL(cuda_layer_norm(ctx, dx, rows, dim, dg, db, 1e-5f, dy));
        download(got, dy, n * 4);
        double r = err_ratio(got, want, n, 1e-5, 1e-6);
        CHECK(r <= 1.0, "layer_norm [%lld][%lld]: error ratio %.3g (%zu of %zu bits differ)",
              (long long)rows, (long long)dim, r, count_diff_bits(got, want, n), n);
        CALL(cuda_layer_norm(ctx, dx, rows, dim, dg, db, 1e-5f, dx)); /* in place */
        download(got2, dx, n * 4);
        CHECK(count_diff_bits(got, got2, n) == 0, "layer_norm in place: the same bits");
        free(x), free(g), free(b), free(want), free(got), free(got2);
        cuda_ops_arena_reset(ctx, mark);
    }
}

static void check_elementwise(void)
{
    size_t mark = cuda_ops_arena_mark(ctx);
    /* GEGLU */
    {
        const int64_t rows = 13, inner = 777;
        size_t nh = (size_t)(rows * 2 * inner), ny = (size_t)(rows * inner);
        float *h = xmalloc(nh * 4), *want = xmalloc(ny * 4), *got = xmalloc(ny * 4);
        fill(h, nh, -4.0f, 4.0f);
        ops_geglu(h, rows, inner, want);
        float *dh = dev_copy(h, nh * 4), *dy = dev_copy(NULL, ny * 4);
        CALL(cuda_geglu(ctx, dh, rows, inner, dy));
        download(got, dy, ny * 4);
        double r = err_ratio(got, want, ny, 1e-5, 1e-6);
        CHECK(r <= 1.0, "geglu [%lld][%lld]: error ratio %.3g (%zu of %zu bits differ)",
              (long long)rows, (long long)inner, r, count_diff_bits(got, want, ny), ny);
        free(h), free(want), free(got);
    }
    /* add_scaled, with LayerScale and plain */
    for (int with_scale = 0; with_scale < 2; with_scale++) {
        const int64_t rows = 17, dim = 333;
        size_t n = (size_t)(rows * dim);
        float *x = xmalloc(n * 4), *y = xmalloc(n * 4), *s = xmalloc((size_t)dim * 4);
        float *got = xmalloc(n * 4);
        fill(x, n, -2.0f, 2.0f);
        fill(y, n, -2.0f, 2.0f);
        fill(s, (size_t)dim, 0.0f, 0.2f);
        float *dx = dev_copy(x, n * 4), *dy = dev_copy(y, n * 4),
              *ds = dev_copy(s, (size_t)dim * 4);
        ops_add_scaled(x, y, with_scale ? s : NULL, rows, dim);
        CALL(cuda_add_scaled(ctx, dx, dy, with_scale ? ds : NULL, rows, dim));
        download(got, dx, n * 4);
        double r = err_ratio(got, x, n, 1e-5, 1e-6);
        CHECK(r <= 1.0, "add_scaled (%s): error ratio %.3g (%zu of %zu bits differ)",
              with_scale ? "scale" : "no scale", r, count_diff_bits(got, x, n), n);
        free(x), free(y), free(s), free(got);
    }
    /* DivideMax: rows with a repeated maximum and a negative one too */
    {
        const int64_t rows = 9, dim = 513;
        size_t n = (size_t)(rows * dim);
        float *x = xmalloc(n * 4), *got = xmalloc(n * 4);
        fill(x, n, -3.0f, 5.0f);
        x[3 * dim + 10] = x[3 * dim + 400] = 9.0f;
        for (int64_t i = 0; i < dim; i++)
            x[5 * dim + i] = -1.0f - (float)i;
        float *dx = dev_copy(x, n * 4);
        ops_divide_max(x, rows, dim);
        CALL(cuda_divide_max(ctx, dx, rows, dim));
        download(got, dx, n * 4);
        double r = err_ratio(got, x, n, 1e-5, 1e-6);
        CHECK(r <= 1.0, "divide_max: error ratio %.3g (%zu of %zu bits differ)", r,
              count_diff_bits(got, x, n), n);
        free(x), free(got);
    }
    /* softmax rows, lengths from 1 to several thousand */
    {
        const int64_t lens[] = {1, 7, 1000, 5000};
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
            const int64_t rows = 5, len = lens[li];
            size_t n = (size_t)(rows * len);
            float *x = xmalloc(n * 4), *got = xmalloc(n * 4);
            fill(x, n, -10.0f, 10.0f);
            float *dx = dev_copy(x, n * 4);
            for (int64_t r = 0; r < rows; r++)
                ops_softmax(x + r * len, len);
            CALL(cuda_softmax(ctx, dx, rows, len));
            download(got, dx, n * 4);
            double r = err_ratio(got, x, n, 1e-5, 1e-12);
            CHECK(r <= 1.0, "softmax [%lld][%lld]: error ratio %.3g", (long long)rows,
                  (long long)len, r);
            free(x), free(got);
        }
    }
    /* QuickGELU */
    {
        const int64_t n = 10000;
        float *x = xmalloc((size_t)n * 4), *got = xmalloc((size_t)n * 4);
        fill(x, (size_t)n, -8.0f, 8.0f);
        float *dx = dev_copy(x, (size_t)n * 4);
        ops_quick_gelu(x, n);
        CALL(cuda_quick_gelu(ctx, dx, n));
        download(got, dx, (size_t)n * 4);
        double r = err_ratio(got, x, (size_t)n, 1e-5, 1e-12);
        CHECK(r <= 1.0, "quick_gelu: error ratio %.3g (%zu of %lld bits differ)", r,
              count_diff_bits(got, x, (size_t)n), (long long)n);
        free(x), free(got);
    }
    cuda_ops_arena_reset(ctx, mark);
}

/* ------------------------------------------------------------------------ */
/* Attention's pieces: rotary, q scaling, the KV-cache append, attend        */

static void check_rotary_and_cache(void)
{
    const int batch = 2, m = 3, heads = 4, P = 20, pos0 = 5;
    const int dims[][2] = {{48, 32}, {48, 0}, {33, 21}}; /* dim_head, rot_cols (odd too) */
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        const int dh = dims[di][0], rc = dims[di][1], tl = rc ? rc : 1;
        size_t mark = cuda_ops_arena_mark(ctx);
        const int64_t inner = (int64_t)heads * dh, ld = 3 * inner, rows = (int64_t)batch * m;
        size_t nq = (size_t)(rows * ld), nt = (size_t)P * tl, nc = (size_t)batch * heads * P * dh;
        float *qkv = xmalloc(nq * 4), *cs = xmalloc(nt * 4), *sn = xmalloc(nt * 4);
        float *got = xmalloc(nq * 4), *kc = xmalloc(nc * 4), *vc = xmalloc(nc * 4);
        float *kg = xmalloc(nc * 4), *vg = xmalloc(nc * 4);
        fill(qkv, nq, -2.0f, 2.0f);
        fill(kc, nc, -1.0f, 1.0f);
        fill(vc, nc, -1.0f, 1.0f);
        for (size_t i = 0; i < nt; i++) {
            float a = urand(-20.0f, 20.0f);
            cs[i] = cosf(a);
            sn[i] = sinf(a);
        }
        float *dq = dev_copy(qkv, nq * 4), *dc = dev_copy(cs, nt * 4), *ds = dev_copy(sn, nt * 4);
        float *dk = dev_copy(kc, nc * 4), *dv = dev_copy(vc, nc * 4);
        /* the CPU's steps: rotary of q, k and v, q *= scale, k and v copied
         * into the caches (attention.c's attn_task) */
        const float scale = 1.0f / sqrtf((float)dh);
        float *want = xmalloc(nq * 4);
        memcpy(want, qkv, nq * 4);
        for (int64_t r = 0; r < rows; r++) {
            const int64_t p = pos0 + r % m, b = r / m, i = r % m;
            for (int v = 0; v < 3 * heads; v++)
                if (rc)
                    ops_rotary(want + r * ld + (int64_t)v * dh, cs + p * rc, sn + p * rc, rc);
            for (int64_t j = 0; j < inner; j++)
                want[r * ld + j] *= scale;
            for (int h = 0; h < heads; h++) {
                memcpy(kc + ((b * heads + h) * P + pos0 + i) * dh,
                       want + r * ld + inner + (int64_t)h * dh, (size_t)dh * 4);
                memcpy(vc + ((b * heads + h) * P + pos0 + i) * dh,
                       want + r * ld + 2 * inner + (int64_t)h * dh, (size_t)dh * 4);
            }
        }
        CALL(cuda_attn_prep(ctx, dq, batch, m, ld, heads, dh, rc, dc, ds, rc, pos0, scale, dk, dv,
                            P));
        download(got, dq, nq * 4);
        download(kg, dk, nc * 4);
        download(vg, dv, nc * 4);
        double rq = 0.0;
        size_t kv_left = 0; /* the k and v parts of qkv: left as they came */
        for (int64_t r = 0; r < rows; r++) {
            const double e = err_ratio(got + r * ld, want + r * ld, (size_t)inner, 1e-5, 1e-6);
            rq = e > rq ? e : rq;
            kv_left += count_diff_bits(got + r * ld + inner, qkv + r * ld + inner,
                                       (size_t)(2 * inner));
        }
        const double rk = err_ratio(kg, kc, nc, 1e-5, 1e-6), rv = err_ratio(vg, vc, nc, 1e-5, 1e-6);
        CHECK(rq <= 1.0 && rk <= 1.0 && rv <= 1.0 && kv_left == 0,
              "attn_prep (dim_head %d, rotary on %d columns): q rotated and scaled, error ratio "
              "%.3g; the k / v caches %.3g / %.3g (other positions untouched); k, v of qkv kept",
              dh, rc, rq, rk, rv);
        CHECK(cuda_attn_prep(ctx, dq, batch, m, ld, heads, dh, rc, dc, ds, rc, P - 1, scale, dk,
                             dv, P) == DALLE_ERR_INVALID_ARGUMENT,
              "attn_prep past the cache refused: %s", dalle_last_error());
        free(qkv), free(cs), free(sn), free(got), free(kc), free(vc), free(kg), free(vg),
            free(want);
        cuda_ops_arena_reset(ctx, mark);
    }
    /* scale_vectors (also the model's `mean2` and VQGAN's scaling): the
     * same bits as x *= scale on the q part of rows of a wider buffer */
    size_t mark = cuda_ops_arena_mark(ctx);
    const int rows = 5, ld = 70, nv = 3, vs = 20, nc = 17;
    float *x = xmalloc((size_t)rows * ld * 4), *got = xmalloc((size_t)rows * ld * 4);
    fill(x, (size_t)rows * ld, -3, 3);
    float *dx = dev_copy(x, (size_t)rows * ld * 4);
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++)
            for (int d = 0; d < nc; d++)
                x[r * ld + v * vs + d] *= 0.37f;
    CALL(cuda_scale_vectors(ctx, dx, rows, ld, nv, vs, nc, 0.37f));
    download(got, dx, (size_t)rows * ld * 4);
    CHECK(count_diff_bits(got, x, (size_t)rows * ld) == 0,
          "scale_vectors: the same bits as x *= scale, the rest untouched");
    free(x), free(got);
    cuda_ops_arena_reset(ctx, mark);
}

/* Every query of a chunk at once, each with its type's keys, against
 * ops_attend per (sequence, head, query) over attn_key_spans' lists. */
static void check_attend(void)
{
    const int batch = 3, heads = 4;
    /* {type, conv_kernel, conv_dilation, text_len, fmap}: upstream's four
     * types, a dilated conv window (empty spans at the left edge), and a
     * long sequence (1104 keys) */
    const attn_keys rules[] = {
        {ATTN_FULL, 5, 1, 17, 8},      {ATTN_AXIAL_ROW, 5, 1, 17, 8},
        {ATTN_AXIAL_COL, 5, 1, 17, 8}, {ATTN_CONV_LIKE, 5, 1, 17, 8},
        {ATTN_CONV_LIKE, 3, 3, 9, 8},  {ATTN_FULL, 5, 1, 80, 32},
    };
    const int dims[] = {64, 48, 160};
    for (size_t ri = 0; ri < sizeof rules / sizeof *rules; ri++)
        for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
            const attn_keys *g = &rules[ri];
            const int dh = dims[di];
            const int64_t P = g->text_len + g->fmap * g->fmap;
            const int64_t inner = (int64_t)heads * dh, q_ld = 3 * inner;
            /* chunks {pos0, m}: the whole sequence (the first rule, or a
             * quick run: one dim), one crossing into the image, the last token */
            const int64_t chunks[][2] = {{0, P}, {g->text_len - 3, 9}, {P - 1, 1}};
            for (int ci = (ri == 0 && di == 0 && !quick) ? 0 : 1; ci < 3; ci++) {
                const int64_t pos0 = chunks[ci][0];
                const int m = (int)chunks[ci][1];
                if (P > 200 && ci == 0)
                    continue;
                size_t mark = cuda_ops_arena_mark(ctx);
                size_t nq = (size_t)batch * m * q_ld, nkv = (size_t)batch * heads * P * dh;
                size_t no = (size_t)batch * m * inner;
                float *q = xmalloc(nq * 4), *k = xmalloc(nkv * 4), *v = xmalloc(nkv * 4);
                float *want = xmalloc(no * 4), *got = xmalloc(no * 4), *again = xmalloc(no * 4);
                float *scores = xmalloc((size_t)P * 4);
                fill(k, nkv, -1.0f, 1.0f);
                fill(v, nkv, -1.0f, 1.0f);
                float *dk = dev_copy(k, nkv * 4), *dv = dev_copy(v, nkv * 4);
                float *dq = dev_copy(NULL, nq * 4), *dout = dev_copy(NULL, no * 4);
                for (int peaky = 0; peaky < 2; peaky++) {
                    /* q already scaled; peaky: scores of tens, where only the
                     * max-subtraction keeps expf finite */
                    const float qs = (peaky ? 8.0f : 1.0f) / sqrtf((float)dh);
                    fill(q, nq, -qs, qs);
                    CALL(cuda_ops_upload(ctx, dq, q, nq * 4));
                    for (int b = 0; b < batch; b++)
                        for (int i = 0; i < m; i++) {
                            ops_span sp[CUDA_OPS_MAX_SPANS];
                            const int n = attn_key_spans(g, pos0 + i, sp);
                            for (int h = 0; h < heads; h++)
                                ops_attend(q + ((int64_t)b * m + i) * q_ld + (int64_t)h * dh,
                                           k + ((int64_t)b * heads + h) * P * dh,
                                           v + ((int64_t)b * heads + h) * P * dh, dh, sp, n,
                                           scores,
                                           want + ((int64_t)b * m + i) * inner + (int64_t)h * dh);
                        }
                    CALL(cuda_attend(ctx, dq, q_ld, (int64_t)m * q_ld, dk, dv, P * dh, batch,
                                     heads, dh, g, pos0, m, dout, inner, (int64_t)m * inner));
                    download(got, dout, no * 4);
                    double r = err_ratio(got, want, no, 1e-5, 1e-5);
                    CALL(cuda_attend(ctx, dq, q_ld, (int64_t)m * q_ld, dk, dv, P * dh, batch,
                                     heads, dh, g, pos0, m, dout, inner, (int64_t)m * inner));
                    download(again, dout, no * 4);
                    CHECK(r <= 1.0 && count_diff_bits(got, again, no) == 0,
                          "attend type %d (kernel %d, dilation %d), dim_head %d, positions "
                          "%lld..%lld%s: error ratio %.3g, the same bits twice",
                          g->type, g->conv_kernel, g->conv_dilation, dh, (long long)pos0,
                          (long long)(pos0 + m - 1), peaky ? " (peaky)" : "", r);
                }
                free(q), free(k), free(v), free(want), free(got), free(again), free(scores);
                cuda_ops_arena_reset(ctx, mark);
            }
        }
    const attn_keys wide = {ATTN_CONV_LIKE, CUDA_OPS_MAX_SPANS, 1, 4, 64};
    CHECK(cuda_attend(ctx, NULL, 0, 0, NULL, NULL, 64 * 100, 1, 1, 64, &wide, 0, 1, NULL, 0, 0) ==
              DALLE_ERR_INVALID_ARGUMENT,
          "attend with a conv window of %d rows (more spans than %d) refused: %s",
          CUDA_OPS_MAX_SPANS, CUDA_OPS_MAX_SPANS, dalle_last_error());
    const attn_keys full = {ATTN_FULL, 5, 1, 4, 8};
    CHECK(cuda_attend(ctx, NULL, 0, 0, NULL, NULL, 64 * 10, 1, 1, 64, &full, 8, 3, NULL, 0, 0) ==
              DALLE_ERR_INVALID_ARGUMENT,
          "attend past the cache (positions 8..10 of 10) refused: %s", dalle_last_error());
}

/* ------------------------------------------------------------------------ */
/* Token shift: a whole sequence fed in chunks of several sizes             */

static void check_token_shift(void)
{
    const int cfg[][3] = {{10, 4, 5}, {64, 8, 17}, {7, 3, 2}}; /* dim, fmap, text_len */
    const int chunks[] = {3, 4, 1, 5, 1, 2, 7, 1};
    for (size_t ci = 0; ci < sizeof cfg / sizeof *cfg; ci++) {
        size_t mark = cuda_ops_arena_mark(ctx);
        transformer tf;
        memset(&tf, 0, sizeof tf);
        tf.hp.dim = cfg[ci][0];
        tf.hp.fmap = cfg[ci][1];
        tf.hp.text_len = cfg[ci][2];
        const int batch = 2, d = tf.hp.dim, total = tf.hp.text_len + tf.hp.fmap * tf.hp.fmap;
        const int R = tf_shift_ring(&tf.hp), C = tf_shift_cols(&tf.hp);
        size_t nh = (size_t)batch * R * C, nmax = (size_t)batch * total * d;
        float *hist = xmalloc(nh * 4), *hist_got = xmalloc(nh * 4);
        float *h = xmalloc(nmax * 4), *want = xmalloc(nmax * 4), *got = xmalloc(nmax * 4);
        memset(hist, 0, nh * 4);
        float *dhist = dev_copy(hist, nh * 4), *dh = dev_copy(NULL, nmax * 4),
              *dout = dev_copy(NULL, nmax * 4);
        tf_state st;
        memset(&st, 0, sizeof st);
        st.batch = batch;
        int pos = 0, ok = 1, n_chunks = 0;
        for (size_t k = 0; pos < total; k = (k + 1) % (sizeof chunks / sizeof *chunks)) {
            int m = chunks[k] < total - pos ? chunks[k] : total - pos;
            size_t n = (size_t)batch * m * d;
            fill(h, n, -1.0f, 1.0f);
            st.pos = pos;
            token_shift(&tf, &st, hist, h, m, want);
            CALL(cuda_ops_upload(ctx, dh, h, n * 4));
            CALL(cuda_token_shift(ctx, dhist, C, dh, dout, batch, m, d, pos, tf.hp.text_len,
                                  tf.hp.fmap));
            download(got, dout, n * 4);
            ok &= count_diff_bits(got, want, n) == 0;
            pos += m;
            n_chunks++;
        }
        download(hist_got, dhist, nh * 4);
        CHECK(ok && count_diff_bits(hist_got, hist, nh) == 0,
              "token_shift dim %d, fmap %d, text_len %d: %d positions in %d chunks, outputs and "
              "ring as the CPU's",
              d, tf.hp.fmap, tf.hp.text_len, total, n_chunks);
        free(hist), free(hist_got), free(h), free(want), free(got);
        cuda_ops_arena_reset(ctx, mark);
    }
}

/* ------------------------------------------------------------------------ */
/* The transformer's embedding, logits mask and guidance against the CPU     */
/* backend's operations (lib/backend_cpu.c)                                  */

static void check_model_kernels(void)
{
    backend cpu;
    backend_cpu_init(&cpu, NULL);
    const int dim = 37, fmap = 3, text_len = 5, vt = 11, vi = 9, batch = 3;
    const int total = text_len + fmap * fmap;
    /* variants 0..3: float32 tables, positions x stable; 4, 5: an f16 (4)
     * or int8 + scales (5) text table and a bf16 image table, kept as stored
     * on the GPU, positions 0 / 1 */
    for (int variant = 0; variant < 6; variant++) {
        const int positions = variant & 1, stable = variant < 4 && ((variant >> 1) & 1);
        const int half = variant >= 4, i8 = variant == 5;
        size_t mark = cuda_ops_arena_mark(ctx);
        float *temb = xmalloc((size_t)vt * dim * 4), *iemb = xmalloc((size_t)vi * dim * 4);
        float *tpos = xmalloc((size_t)text_len * dim * 4), *ar = xmalloc((size_t)fmap * dim * 4);
        float *ac = xmalloc((size_t)fmap * dim * 4);
        fill(temb, (size_t)vt * dim, -1, 1), fill(iemb, (size_t)vi * dim, -1, 1);
        fill(tpos, (size_t)text_len * dim, -1, 1), fill(ar, (size_t)fmap * dim, -1, 1);
        fill(ac, (size_t)fmap * dim, -1, 1);
        transformer tf;
        memset(&tf, 0, sizeof tf);
        tf.hp.dim = dim, tf.hp.fmap = fmap, tf.hp.text_len = text_len;
        tf.hp.rotary_emb = !positions, tf.hp.stable = stable;
        tf.text_emb = ops_weight_f32(temb), tf.image_emb = ops_weight_f32(iemb);
        uint16_t *temb16 = xmalloc((size_t)vt * dim * 2), *iemb16 = xmalloc((size_t)vi * dim * 2);
        random_half(temb16, (size_t)vt * dim, OPS_W_F16);
        random_half(iemb16, (size_t)vi * dim, OPS_W_BF16);
        /* int8: blocks of 8 over dim 37 (a last, partial block), scales > 0 */
        const int blk = 8, nblk = (int)ops_weight_blocks(dim, blk);
        int8_t *temb8 = xmalloc((size_t)vt * dim);
        float *tsc = xmalloc((size_t)vt * nblk * 4);
        for (size_t i = 0; i < (size_t)vt * dim; i++)
            temb8[i] = (int8_t)((int)(lcg() % 255) - 127);
        fill(tsc, (size_t)vt * nblk, 0.001f, 0.02f);
        if (half) {
            tf.text_emb = i8 ? (ops_weight){OPS_W_I8, temb8, tsc, blk}
                             : (ops_weight){OPS_W_F16, temb16, NULL, 0};
            tf.image_emb = (ops_weight){OPS_W_BF16, iemb16, NULL, 0};
        }
        float *dtsc = i8 ? dev_copy(tsc, (size_t)vt * nblk * 4) : NULL;
        tf.text_pos_emb = tpos, tf.axial_rows = ar, tf.axial_cols = ac;
        void *dtemb = i8     ? dev_copy(temb8, (size_t)vt * dim)
                      : half ? dev_copy(temb16, (size_t)vt * dim * 2)
                             : dev_copy(temb, (size_t)vt * dim * 4);
        void *diemb = half ? dev_copy(iemb16, (size_t)vi * dim * 2)
                           : dev_copy(iemb, (size_t)vi * dim * 4);
        float *dtpos = dev_copy(tpos, (size_t)text_len * dim * 4);
        float *dar = dev_copy(ar, (size_t)fmap * dim * 4), *dac = dev_copy(ac, (size_t)fmap * dim * 4);
        /* the whole sequence in chunks of 4 positions */
        int ok = 1;
        tf_state st;
        memset(&st, 0, sizeof st);
        st.batch = batch;
        for (int pos = 0; pos < total; pos += 4) {
            const int m = total - pos < 4 ? total - pos : 4;
            int32_t ids[3 * 4];
            for (int b = 0; b < batch; b++)
                for (int i = 0; i < m; i++)
                    ids[b * m + i] = (int32_t)(lcg() % (pos + i < text_len ? vt : vi));
            const size_t n = (size_t)batch * m * dim;
            float *want = xmalloc(n * 4), *got = xmalloc(n * 4);
            st.pos = pos;
            cpu.op->embed(&cpu, &tf, &st, ids, m, want);
            int32_t *dids = dev_copy(ids, sizeof ids);
            float *dx = dev_copy(NULL, n * 4);
            const ops_weight te = {tf.text_emb.dtype, dtemb, dtsc, tf.text_emb.block};
            const ops_weight ie = {tf.image_emb.dtype, diemb, NULL, 0};
            CALL(cuda_embed(ctx, dx, dids, batch, m, dim, pos, text_len, fmap, &te, &ie,
                            positions, dtpos, dar, dac, stable));
            download(got, dx, n * 4);
            ok &= count_diff_bits(got, want, n) == 0;
            free(want), free(got);
        }
        CHECK(ok, "embed (%s tables, positions %d, stable %d): %d positions of %d sequences, the "
              "CPU's bits", i8 ? "int8 / bf16" : half ? "f16 / bf16" : "float32", positions,
              stable, total, batch);
        free(temb), free(iemb), free(tpos), free(ar), free(ac), free(temb16), free(iemb16);
        free(temb8), free(tsc);
        cuda_ops_arena_reset(ctx, mark);
    }

    /* the logits mask and guidance on rows of a wider buffer */
    size_t mark = cuda_ops_arena_mark(ctx);
    const int rows = 5, ld = 301, col0 = 17, n = 250;
    const size_t all = (size_t)rows * ld;
    float *c = xmalloc(all * 4), *u = xmalloc(all * 4), *want = xmalloc(all * 4);
    float *got = xmalloc(all * 4);
    fill(c, all, -30, 30), fill(u, all, -30, 30);
    float *dc = dev_copy(c, all * 4), *du = dev_copy(u, all * 4);
    memcpy(want, c, all * 4);
    cpu.op->guidance(&cpu, want + col0, u + col0, rows, ld, n, 3.0f);
    CALL(cuda_guidance(ctx, dc + col0, du + col0, rows, ld, n, 3.0f));
    download(got, dc, all * 4);
    CHECK(count_diff_bits(got, want, all) == 0,
          "guidance null + (cond - null) * 3 on %d x %d of rows of %d: the CPU's bits", rows, n,
          ld);
    cpu.op->fill(&cpu, want, rows, ld, col0, n, -FLT_MAX);
    CALL(cuda_fill(ctx, dc, rows, ld, col0, n, -FLT_MAX));
    download(got, dc, all * 4);
    CHECK(count_diff_bits(got, want, all) == 0, "fill (the logits mask): the CPU's bits");
    CHECK(cuda_fill(ctx, dc, 1, 10, 5, 6, 0.0f) == DALLE_ERR_INVALID_ARGUMENT,
          "fill past the row refused: %s", dalle_last_error());
    free(c), free(u), free(want), free(got);
    cuda_ops_arena_reset(ctx, mark);
}

/* ------------------------------------------------------------------------ */
/* --- CLIP's operations: against lib/clip_backend.c (the CPU backend's      */
/* entries). gather, patches, mean_rows and scores exact (copies; double    */
/* sums in the CPU's order); attention and l2_normalize rel 1e-5, abs 1e-5  */
/* (other reduction orders)                                                  */

static void check_clip_kernels(void)
{
    backend cpu;
    backend_cpu_init(&cpu, NULL);
    size_t mark = cuda_ops_arena_mark(ctx);

    /* the token embedding's gather */
    {
        const int64_t vocab = 23, dim = 37, rows = 41;
        float *table = xmalloc((size_t)(vocab * dim) * 4), *want = xmalloc((size_t)(rows * dim) * 4);
        float *got = xmalloc((size_t)(rows * dim) * 4);
        int32_t ids[41];
        fill(table, (size_t)(vocab * dim), -1, 1);
        for (int r = 0; r < rows; r++)
            ids[r] = (int32_t)(lcg() % vocab);
        float *dt = dev_copy(table, (size_t)(vocab * dim) * 4), *dy = dev_copy(NULL, (size_t)(rows * dim) * 4);
        int32_t *di = dev_copy(ids, sizeof ids);
        cpu.op->gather_rows(&cpu, table, ids, rows, dim, want);
        CALL(cuda_gather_rows(ctx, dt, di, rows, dim, dy));
        download(got, dy, (size_t)(rows * dim) * 4);
        CHECK(count_diff_bits(got, want, (size_t)(rows * dim)) == 0,
              "gather_rows %lld rows of %lld: the CPU's bits", (long long)rows, (long long)dim);
        free(table), free(want), free(got);
    }

    /* patches, both orders */
    for (int order = 0; order < 2; order++) {
        const int n = 3, size = 12, patch = order ? 4 : 3;
        const size_t all = (size_t)n * 3 * size * size;
        float *img = xmalloc(all * 4), *want = xmalloc(all * 4), *got = xmalloc(all * 4);
        fill(img, all, -2, 2);
        float *di = dev_copy(img, all * 4), *dy = dev_copy(NULL, all * 4);
        cpu.op->patches(&cpu, img, n, size, patch, order, want);
        CALL(cuda_patches(ctx, di, n, size, patch, order, dy));
        download(got, dy, all * 4);
        CHECK(count_diff_bits(got, want, all) == 0, "patches %dx%d of %d px (%s): the CPU's bits",
              patch, patch, size, order ? "(y, x, channel)" : "(channel, y, x)");
        free(img), free(want), free(got);
    }
    CHECK(cuda_patches(ctx, NULL, 1, 10, 3, 0, NULL) == DALLE_ERR_INVALID_ARGUMENT,
          "patches of 3 px in 10 refused: %s", dalle_last_error());

    /* attention: no mask, a key mask, causal, both */
    clip_work w;
    memset(&w, 0, sizeof w);
    const int batch = 3, n = quick ? 9 : 21, heads = 2;
    const int64_t dhs[2] = {40, 64};
    for (int v = 0; v < 8; v++) {
        const int masked = v & 1, causal = (v >> 1) & 1;
        const int64_t dh = dhs[v >> 2], inner = heads * dh;
        const size_t nq = (size_t)batch * n * 3 * inner, na = (size_t)batch * n * inner;
        float *qkv = xmalloc(nq * 4), *want = xmalloc(na * 4), *got = xmalloc(na * 4);
        uint8_t mask[3 * 21];
        fill(qkv, nq, -1, 1);
        for (int i = 0; i < batch * n; i++)
            mask[i] = i % n == 0 || lcg() % 3 != 0; /* every query keeps key 0 */
        float *dq = dev_copy(qkv, nq * 4), *da = dev_copy(NULL, na * 4);
        uint8_t *dm = dev_copy(mask, sizeof mask);
        if (clip_work_reserve(&w, CW_K, (size_t)(n * dh) * 4) ||
            clip_work_reserve(&w, CW_V, (size_t)(n * dh) * 4) ||
            clip_work_reserve(&w, CW_SCORES, (size_t)n * 4) ||
            clip_work_reserve(&w, CW_SPANS, 2 * (size_t)n * sizeof(ops_span))) {
            printf("FAIL: host scratch\n");
            exit(1);
        }
        const float scale = (float)pow((double)dh, -0.5);
        cpu.op->clip_attention(&cpu, &w, qkv, batch, n, heads, dh, masked ? mask : NULL, causal,
                               scale, want);
        CALL(cuda_clip_attend(ctx, dq, batch, n, heads, dh, masked ? dm : NULL, causal, scale, da));
        download(got, da, na * 4);
        double r = err_ratio(got, want, na, 1e-5, 1e-5);
        CHECK(r <= 1.0, "clip_attend %d x %d positions, %d heads of %lld (mask %d, causal %d): "
              "error ratio %.3g", batch, n, heads, (long long)dh, masked, causal, r);
        free(qkv), free(want), free(got);
    }
    clip_work_free(&w);

    /* mean over rows, l2 normalise (with an all-zero row), scores */
    {
        const int b = 3, rows = 13;
        const int64_t dim = 70;
        const size_t nx = (size_t)b * rows * dim;
        float *x = xmalloc(nx * 4), want[3 * 70], got[3 * 70];
        uint8_t mask[3 * 13];
        fill(x, nx, -3, 3);
        for (int i = 0; i < b * rows; i++)
            mask[i] = i % rows == 0 || lcg() % 2;
        float *dx = dev_copy(x, nx * 4), *dy = dev_copy(NULL, sizeof got);
        uint8_t *dm = dev_copy(mask, sizeof mask);
        for (int masked = 0; masked < 2; masked++) {
            cpu.op->mean_rows(&cpu, x, b, rows, dim, masked ? mask : NULL, want);
            CALL(cuda_mean_rows(ctx, dx, b, rows, dim, masked ? dm : NULL, dy));
            download(got, dy, sizeof got);
            CHECK(count_diff_bits(got, want, (size_t)b * dim) == 0,
                  "mean_rows (mask %d): the CPU's bits", masked);
        }
        memset(x + dim, 0, (size_t)dim * 4); /* row 1: zeros */
        CALL(cuda_ops_upload(ctx, dx, x, nx * 4));
        float *wn = xmalloc(nx * 4), *gn = xmalloc(nx * 4);
        memcpy(wn, x, nx * 4);
        cpu.op->l2_normalize(&cpu, wn, b * rows, dim);
        CALL(cuda_l2_normalize(ctx, dx, b * rows, dim));
        download(gn, dx, nx * 4);
        double r = err_ratio(gn, wn, nx, 1e-5, 1e-6);
        CHECK(r <= 1.0, "l2_normalize %d rows of %lld (one of zeros): error ratio %.3g",
              b * rows, (long long)dim, r);
        /* scores of the normalised rows: 4 "images" against 5 "captions" */
        const int ni = 4, nt = 5;
        const int64_t ld = 7;
        float sw[4 * 7], sg[4 * 7];
        float *ds = dev_copy(NULL, sizeof sg);
        for (int first = 0; first < 2; first++) {
            memset(sw, 0, sizeof sw);
            CALL(cuda_ops_upload(ctx, ds, sw, sizeof sw));
            cpu.op->clip_scores(&cpu, wn, ni, wn + 4 * dim, nt, dim, 14.3f, first, sw, ld);
            CALL(cuda_ops_upload(ctx, dx, wn, nx * 4));
            CALL(cuda_clip_scores(ctx, dx, ni, dx + 4 * dim, nt, dim, 14.3f, first, ds, ld));
            download(sg, ds, sizeof sg);
            CHECK(count_diff_bits(sg, sw, 4 * 7) == 0,
                  "clip_scores %dx%d (scale first %d, ld %lld): the CPU's bits", ni, nt, first,
                  (long long)ld);
        }
        free(x), free(wn), free(gn);
    }
    cuda_ops_arena_reset(ctx, mark);
}
/* --- end of CLIP's operations */

/* ------------------------------------------------------------------------ */
/* The RNG and the sampler                                                   */

static void check_rng(void)
{
    size_t mark = cuda_ops_arena_mark(ctx);
    const int64_t n = 4096;
    const uint64_t seed = 0xdeadbeefcafef00dull, stream = 3, counter = 1000,
                   lane0 = (uint64_t)1 << 40;
    uint64_t *bits = xmalloc((size_t)n * 8);
    double *g = xmalloc((size_t)n * 8);
    uint64_t *dbits = dev_copy(NULL, (size_t)n * 8);
    double *dg = dev_copy(NULL, (size_t)n * 8);
    CALL(cuda_rng_fill(ctx, seed, stream, counter, lane0, n, dbits, dg));
    download(bits, dbits, (size_t)n * 8);
    download(g, dg, (size_t)n * 8);
    int64_t bad_bits = 0;
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        bad_bits += bits[i] != rng_u64(seed, stream, counter, lane0 + (uint64_t)i);
        double d = fabs(g[i] - rng_gumbel(seed, stream, counter, lane0 + (uint64_t)i));
        if (!(d <= worst))
            worst = d;
    }
    CHECK(bad_bits == 0 && worst <= 1e-13,
          "device RNG: %lld of %lld words differ, Gumbel noise within %.3g of rng_gumbel",
          (long long)bad_bits, (long long)n, worst);
    free(bits), free(g);
    cuda_ops_arena_reset(ctx, mark);
}

/* The rows of tests/test_sampler.c: continuous, few levels (ties, also at
 * the k-th value), constant, huge and masked, signed zeros, +inf scores. */
static void fill_row(float *row, int n, int kind)
{
    for (int i = 0; i < n; i++) {
        float u = (float)(lcg() % 1000000) / 1000000.0f;
        switch (kind) {
        case 0: row[i] = 8.0f * u - 4.0f; break;
        case 1: row[i] = (float)(lcg() % 5) - 2.0f; break;
        case 2: row[i] = 1.25f; break;
        case 3: row[i] = lcg() % 7 == 0 ? -FLT_MAX : (lcg() % 11 == 0 ? 3e38f : u); break;
        case 4: row[i] = lcg() % 2 ? 0.0f : -0.0f; break;
        default: row[i] = lcg() % 3 == 0 ? 2e38f : (lcg() % 2 ? 3e38f : -FLT_MAX); break;
        }
    }
}

static void check_sampler(void)
{
    enum { MAX_N = 8192, ROWS = 4, PAD = 5 };
    size_t mark = cuda_ops_arena_mark(ctx);
    const float thres[] = {0.0f, 0.9f, 0.99999f, 0.5f, 0.99f, 0.999f, 0.9995f};
    const float temps[] = {1.0f, 0.5f, 1.7f};
    const int sizes[] = {1, 17, 8192, 2, 3, 100, 1000};
    const size_t n_thres = quick ? 3 : sizeof thres / sizeof *thres;
    const size_t n_temps = quick ? 1 : sizeof temps / sizeof *temps;
    const size_t n_sizes = quick ? 3 : sizeof sizes / sizeof *sizes;
    tf_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.total_tokens = 10000;
    float *rows = xmalloc((size_t)ROWS * (MAX_N + PAD) * 4);
    float *drows = dev_copy(NULL, (size_t)ROWS * (MAX_N + PAD) * 4);
    int32_t *dids = dev_copy(NULL, ROWS * 4), ids[ROWS];
    long n_rows = 0, mismatches = 0, mismatches_cont = 0;
    for (size_t ti = 0; ti < n_thres; ti++)
        for (size_t te = 0; te < n_temps; te++) {
            dalle_sample_params p;
            memset(&p, 0, sizeof p);
            p.filter_thres = thres[ti];
            p.temperature = temps[te];
            p.seed = 1234 + ti * 10 + te;
            sampler s;
            memset(&s, 0, sizeof s);
            if (sampler_init(&s, &hp, &p, MAX_N) != DALLE_OK) {
                CHECK(0, "sampler_init: %s", dalle_last_error());
                return;
            }
            for (size_t si = 0; si < n_sizes; si++)
                for (int kind = 0; kind < 6; kind++) {
                    const int n = sizes[si], ld = n + PAD;
                    for (int r = 0; r < ROWS; r++)
                        fill_row(rows + (size_t)r * ld, n, kind);
                    const uint64_t stream0 = 100, counter = (uint64_t)(kind * 100 + si);
                    CALL(cuda_ops_upload(ctx, drows, rows, (size_t)ROWS * ld * 4));
                    CALL(cuda_sample_topk(ctx, drows, ld, ROWS, n, s.k, p.temperature, p.seed,
                                          stream0, counter, dids));
                    download(ids, dids, sizeof ids);
                    for (int r = 0; r < ROWS; r++) {
                        int32_t want = sampler_pick(&s, rows + (size_t)r * ld, n,
                                                    stream0 + (uint64_t)r, counter);
                        n_rows++;
                        if (ids[r] != want) {
                            mismatches++;
                            mismatches_cont += kind == 0;
                            printf("  sample mismatch: thres %g temp %g n %d kind %d row %d: %d, "
                                   "cpu %d\n",
                                   (double)p.filter_thres, (double)p.temperature, n, kind, r,
                                   (int)ids[r], (int)want);
                        }
                    }
                }
            sampler_free(&s);
        }
    CHECK(mismatches_cont == 0, "top-k + Gumbel on continuous logits: the CPU's ids");
    CHECK(mismatches == 0, "top-k + Gumbel on %ld rows (ties, masked, huge, signed zeros "
                           "included): %ld differ from sampler_pick",
          n_rows, mismatches);
    free(rows);
    cuda_ops_arena_reset(ctx, mark);
}

/* ------------------------------------------------------------------------ */
/* Matrix products                                                           */

/* |gpu - cpu| <= 1e-5 * (|alpha| sum_l |a_il b_lj| + |beta c_ij|) + 1e-30 */
static double gemm_ratio(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                         const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                         const float *c0, const float *got, const float *want, int64_t ldc)
{
    double worst = 0.0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t l = 0; l < k; l++) {
                double av = ta ? a[l * lda + i] : a[i * lda + l];
                double bv = tb ? b[j * ldb + l] : b[l * ldb + j];
                s += fabs(av * bv);
            }
            double bound = 1e-5 * (fabs((double)alpha) * s +
                                   (c0 ? fabs((double)beta * c0[i * ldc + j]) : 0.0)) +
                           1e-30;
            double r = fabs((double)got[i * ldc + j] - (double)want[i * ldc + j]) / bound;
            if (!(r <= worst))
                worst = isnan(r) ? INFINITY : r;
        }
    return worst;
}

/* Products with reduced weights kept as stored on the GPU (cuda_linear_w)
 * against the CPU's ops_linear_w on the same weights: within 1e-5 of
 * sum_i |x w| (+ |b|); 1 to 64 rows, a wider ldy, rows whose length is
 * even, odd, a multiple of 4 or not (the kernel's 4-byte and 1-element
 * paths); int8 with scale blocks of 32 and of 8, a last partial block. */
static void check_linear_lowp(void)
{
    const int shapes[][5] = { /* rows, in, out, ldy - out, bias */
        {1, 64, 37, 0, 1}, {3, 130, 50, 11, 0}, {8, 256, 33, 0, 1},
        {13, 96, 40, 5, 1}, {64, 200, 24, 0, 1}, {5, 33, 20, 0, 1},
    };
    static const char *const names[] = {"f32", "f16", "bf16", "int8 (block 32)", "int8 (block 8)"};
    for (int v = 1; v <= 4; v++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            const int dt = v == 4 ? OPS_W_I8 : v, block = v == 4 ? 8 : 32;
            const int rows = shapes[si][0], in = shapes[si][1], out = shapes[si][2];
            const int ldy = out + shapes[si][3], has_bias = shapes[si][4];
            const size_t es = dt == OPS_W_I8 ? 1 : 2;
            const int64_t nblk = ops_weight_blocks(in, block);
            size_t mark = cuda_ops_arena_mark(ctx);
            void *w = xmalloc((size_t)out * in * es);
            float *sc = xmalloc((size_t)out * nblk * 4);
            float *x = xmalloc((size_t)rows * in * 4), *b = xmalloc((size_t)out * 4);
            float *want = xmalloc((size_t)rows * ldy * 4), *got = xmalloc((size_t)rows * ldy * 4);
            float *scratch = xmalloc((size_t)ops_linear_w_scratch(in) * 4);
            float *wide = xmalloc((size_t)out * in * 4), *bias_c = xmalloc((size_t)rows * ldy * 4);
            if (dt == OPS_W_I8) {
                for (size_t i = 0; i < (size_t)out * in; i++)
                    ((int8_t *)w)[i] = (int8_t)((int)(lcg() % 255) - 127);
                fill(sc, (size_t)out * nblk, 0.001f, 0.02f);
            } else {
                random_half(w, (size_t)out * in, dt);
            }
            fill(x, (size_t)rows * in, -1, 1);
            fill(b, (size_t)out, -1, 1);
            fill(want, (size_t)rows * ldy, -1, 1);
            memcpy(got, want, (size_t)rows * ldy * 4);
            const ops_weight wt = {dt, w, dt == OPS_W_I8 ? sc : NULL, dt == OPS_W_I8 ? block : 0};
            ops_linear_w(NULL, x, rows, in, &wt, has_bias ? b : NULL, out, want, ldy, scratch, 1);
            void *dw = dev_copy(w, (size_t)out * in * es);
            float *dsc = dt == OPS_W_I8 ? dev_copy(sc, (size_t)out * nblk * 4) : NULL;
            float *dx = dev_copy(x, (size_t)rows * in * 4), *db = dev_copy(b, (size_t)out * 4);
            float *dy = dev_copy(got, (size_t)rows * ldy * 4);
            const ops_weight dwt = {dt, dw, dsc, wt.block};
            CALL(cuda_linear_w(ctx, dx, rows, in, &dwt, has_bias ? db : NULL, out, dy, ldy));
            download(got, dy, (size_t)rows * ldy * 4);
            /* the bound of gemm_ratio on the values the CPU multiplies with,
             * the bias as a beta * C term */
            for (int j = 0; j < out; j++)
                ops_weight_row(&wt, in, j, wide + (size_t)j * in);
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < ldy; j++)
                    bias_c[(size_t)r * ldy + j] = has_bias && j < out ? b[j] : 0.0f;
            const double worst = gemm_ratio(0, 1, rows, out, in, 1.0f, x, in, wide, in, 1.0f,
                                            bias_c, got, want, ldy);
            size_t untouched = 0;
            for (int r = 0; r < rows; r++)
                for (int j = out; j < ldy; j++) /* past `out`: the caller's, untouched */
                    untouched += got[(size_t)r * ldy + j] == want[(size_t)r * ldy + j];
            CHECK(worst <= 1.0 && untouched == (size_t)rows * (ldy - out),
                  "linear with %s weights kept as stored: %d x %d -> %d (ldy %d%s): error ratio "
                  "%.3g of 1e-5 sum |x w|",
                  names[v], rows, in, out, ldy, has_bias ? ", bias" : "", worst);
            free(w), free(sc), free(x), free(b), free(want), free(got), free(scratch), free(wide),
                free(bias_c);
            cuda_ops_arena_reset(ctx, mark);
        }
    const ops_weight odd = {OPS_W_I8, NULL, NULL, 12};
    CHECK(cuda_linear_w(ctx, NULL, 1, 24, &odd, NULL, 8, NULL, 8) == DALLE_ERR_INVALID_ARGUMENT,
          "linear with int8 blocks of 12 refused on the GPU: %s", dalle_last_error());
}

static void check_gemm(void)
{
    size_t mark = cuda_ops_arena_mark(ctx);
    const int64_t shapes[][3] = {{67, 45, 129}, {1, 300, 64}, {5, 3, 1}, {256, 256, 512}};
    const size_t n_shapes = sizeof shapes / sizeof *shapes - (quick ? 1 : 0);
    for (size_t si = 0; si < n_shapes; si++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                const int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
                const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
                const size_t na = (size_t)((ta ? k : m) * lda), nb = (size_t)((tb ? n : k) * ldb);
                const size_t nc = (size_t)(m * ldc);
                const float alpha = 0.75f, beta = si % 2 ? 0.0f : 0.5f;
                float *a = xmalloc(na * 4), *b = xmalloc(nb * 4), *c0 = xmalloc(nc * 4);
                float *want = xmalloc(nc * 4), *got = xmalloc(nc * 4);
                fill(a, na, -1.0f, 1.0f);
                fill(b, nb, -1.0f, 1.0f);
                fill(c0, nc, -1.0f, 1.0f);
                memcpy(want, c0, nc * 4);
                float *da = dev_copy(a, na * 4), *db = dev_copy(b, nb * 4),
                      *dc = dev_copy(c0, nc * 4);
                ops_gemm(NULL, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, want, ldc);
                CALL(cuda_gemm(ctx, ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc, ldc));
                download(got, dc, nc * 4);
                double r = gemm_ratio(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, got,
                                      want, ldc);
                /* the padding columns of C are left alone */
                size_t pad_changed = 0;
                for (int64_t i = 0; i < m; i++)
                    pad_changed += memcmp(got + i * ldc + n, c0 + i * ldc + n, 4) != 0;
                CHECK(r <= 1.0 && pad_changed == 0,
                      "gemm %c%c m %lld n %lld k %lld (beta %g): error ratio %.3g", ta ? 'T' : 'N',
                      tb ? 'T' : 'N', (long long)m, (long long)n, (long long)k, (double)beta, r);
                free(a), free(b), free(c0), free(want), free(got);
                cuda_ops_arena_reset(ctx, mark);
            }

    /* linear, with and without bias, into part of a wider row */
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        const int64_t rows = 33, in = 100, out = 70, ldy = 75;
        size_t nx = (size_t)(rows * in), nw = (size_t)(out * in), ny = (size_t)(rows * ldy);
        float *x = xmalloc(nx * 4), *w = xmalloc(nw * 4), *bias = xmalloc((size_t)out * 4);
        float *want = xmalloc(ny * 4), *got = xmalloc(ny * 4);
        fill(x, nx, -1.0f, 1.0f);
        fill(w, nw, -1.0f, 1.0f);
        fill(bias, (size_t)out, -1.0f, 1.0f);
        for (size_t i = 0; i < ny; i++)
            want[i] = 1234.0f;
        float *dx = dev_copy(x, nx * 4), *dw = dev_copy(w, nw * 4),
              *dbias = dev_copy(bias, (size_t)out * 4), *dy = dev_copy(want, ny * 4);
        ops_linear(x, rows, in, w, with_bias ? bias : NULL, out, want, ldy);
        CALL(cuda_linear(ctx, dx, rows, in, dw, with_bias ? dbias : NULL, out, dy, ldy));
        download(got, dy, ny * 4);
        /* bound: the product's, plus the bias add's rounding */
        double worst = 0.0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < ldy; j++) {
                double e = fabs((double)got[r * ldy + j] - (double)want[r * ldy + j]), s = 0.0;
                if (j >= out) {
                    if (e != 0.0)
                        worst = INFINITY;
                    continue;
                }
                for (int64_t i = 0; i < in; i++)
                    s += fabs((double)x[r * in + i] * w[j * in + i]);
                double q = e / (1e-5 * (s + (with_bias ? fabs((double)bias[j]) : 0.0)) + 1e-30);
                if (!(q <= worst))
                    worst = isnan(q) ? INFINITY : q;
            }
        CHECK(worst <= 1.0, "linear [%lld][%lld] -> [%lld] (ldy %lld, %s): error ratio %.3g",
              (long long)rows, (long long)in, (long long)out, (long long)ldy,
              with_bias ? "bias" : "no bias", worst);
        free(x), free(w), free(bias), free(want), free(got);
        cuda_ops_arena_reset(ctx, mark);
    }

    /* TF32 off: 1 + 2^-20 times 1 is exact in FP32; TF32 (10 mantissa
     * bits) would round it to 1 */
    {
        const int64_t s = 64;
        float *a = xmalloc((size_t)s * s * 4), *b = xmalloc((size_t)s * s * 4);
        float *got = xmalloc((size_t)s * s * 4);
        const float one_plus = 1.0f + 0x1p-20f;
        memset(a, 0, (size_t)s * s * 4);
        for (int64_t i = 0; i < s; i++) {
            a[i * s + i] = one_plus;
            for (int64_t j = 0; j < s; j++)
                b[i * s + j] = 1.0f;
        }
        float *da = dev_copy(a, (size_t)s * s * 4), *db = dev_copy(b, (size_t)s * s * 4);
        float *dc = dev_copy(NULL, (size_t)s * s * 4);
        CALL(cuda_gemm(ctx, 0, 0, s, s, s, 1.0f, da, s, db, s, 0.0f, dc, s));
        download(got, dc, (size_t)s * s * 4);
        int exact = 1;
        for (int64_t i = 0; i < s * s; i++)
            exact &= got[i] == one_plus;
        CHECK(exact, "gemm without TF32: (1 + 2^-20) * 1 exact");
        free(a), free(b), free(got);
        cuda_ops_arena_reset(ctx, mark);
    }
    CHECK(cuda_gemm(ctx, 0, 0, (int64_t)1 << 32, 1, 1, 1.0f, NULL, 1, NULL, 1, 0.0f, NULL, 1) ==
              DALLE_ERR_INVALID_ARGUMENT,
          "gemm with m = 2^32 refused: %s", dalle_last_error());
}

static void check_arena(void)
{
    size_t mark = cuda_ops_arena_mark(ctx), size = cuda_ops_arena_size(ctx);
    void *p = NULL, *q = NULL, *r = NULL;
    CHECK(cuda_ops_alloc(ctx, size + 1, &p) == DALLE_ERR_OUT_OF_MEMORY && p == NULL &&
              strstr(dalle_last_error(), "arena"),
          "arena: one byte more than it holds -> out of memory: %s", dalle_last_error());
    CALL(cuda_ops_alloc(ctx, 1000, &p));
    CALL(cuda_ops_alloc(ctx, 1, &q));
    CHECK(p && q && ((uintptr_t)p % 256) == 0 && ((uintptr_t)q % 256) == 0 &&
              (char *)q >= (char *)p + 1000,
          "arena: 256-byte aligned, disjoint pieces");
    CHECK(cuda_ops_alloc(ctx, size - 1024, &r) == DALLE_ERR_OUT_OF_MEMORY && r == NULL,
          "arena: what is left is less than asked -> out of memory: %s", dalle_last_error());
    cuda_ops_arena_reset(ctx, mark);
    CHECK(cuda_ops_arena_mark(ctx) == mark, "arena: reset to the mark");
}

/* ------------------------------------------------------------------------ */
/* --- the VAEs' image operations (lib/conv.c; lib/cuda/ops_cuda_conv.cu) --- */

static void absolute(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = fabsf(x[i]);
}

/* max |got - want| / (1e-5 * bound + 1e-7): <= 1 passes */
static double bound_ratio(const float *got, const float *want, const float *bound, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)got[i] - want[i]) / (1e-5 * bound[i] + 1e-7);
        if (!(r <= worst))
            worst = isnan(r) ? INFINITY : r;
    }
    return worst;
}

/* One convolution (transposed or not) of x [cin][h][w] on the GPU against
 * lib/conv.c, with im2col tiles of `tiny` (one row) or whole images. */
static void check_one_conv(const conv_geom *g, int transposed, int h, int w, int tiny)
{
    size_t mark = cuda_ops_arena_mark(ctx);
    const int ho = transposed ? (h - 1) * g->stride - 2 * g->pad_top + g->k
                              : conv_out_size(h, g->k, g->stride, g->pad_top, g->pad_bottom);
    const int wo = transposed ? (w - 1) * g->stride - 2 * g->pad_left + g->k
                              : conv_out_size(w, g->k, g->stride, g->pad_left, g->pad_right);
    const size_t nx = (size_t)g->cin * h * w, nw = (size_t)g->cout * g->cin * g->k * g->k;
    const size_t ny = (size_t)g->cout * ho * wo;
    const int64_t cap = tiny ? 1 : (int64_t)1 << 22;
    const int64_t ncol = transposed ? conv_transpose2d_col_need(g->cout, g->k, h, w, cap)
                                    : conv2d_col_need(g, h, w, cap);
    float *x = xmalloc(nx * 4), *wt = xmalloc(nw * 4), *b = xmalloc((size_t)g->cout * 4);
    float *ax = xmalloc(nx * 4), *aw = xmalloc(nw * 4), *ab = xmalloc((size_t)g->cout * 4);
    float *want = xmalloc(ny * 4), *bound = xmalloc(ny * 4), *got = xmalloc(ny * 4);
    float *col = xmalloc((size_t)(ncol ? ncol : 1) * 4);
    fill(x, nx, -1.0f, 1.0f);
    fill(wt, nw, -1.0f, 1.0f);
    fill(b, (size_t)g->cout, -1.0f, 1.0f);
    absolute(x, ax, nx);
    absolute(wt, aw, nw);
    absolute(b, ab, (size_t)g->cout);
    float *dx = dev_copy(x, nx * 4), *dw = dev_copy(wt, nw * 4);
    float *db = dev_copy(b, (size_t)g->cout * 4), *dy = dev_copy(NULL, ny * 4);
    float *dcol = dev_copy(NULL, (size_t)(ncol ? ncol : 1) * 4);
    if (transposed) {
        conv_transpose2d(g->cin, g->cout, g->k, g->stride, g->pad_top, x, h, w, wt, b, want, col,
                         ncol, NULL);
        conv_transpose2d(g->cin, g->cout, g->k, g->stride, g->pad_top, ax, h, w, aw, ab, bound,
                         col, ncol, NULL);
        CALL(cuda_conv_transpose2d(ctx, g, dx, h, w, dw, db, dy, dcol, ncol));
    } else {
        conv2d(g, x, h, w, wt, b, want, col, ncol, NULL);
        conv2d(g, ax, h, w, aw, ab, bound, col, ncol, NULL);
        CALL(cuda_conv2d(ctx, g, dx, h, w, dw, db, dy, dcol, ncol));
    }
    download(got, dy, ny * 4);
    double r = bound_ratio(got, want, bound, ny);
    CHECK(r <= 1.0,
          "%s cin %d cout %d k %d stride %d pad %d,%d,%d,%d on %dx%d%s: error ratio %.3g",
          transposed ? "conv_transpose2d" : "conv2d", g->cin, g->cout, g->k, g->stride,
          g->pad_top, g->pad_bottom, g->pad_left, g->pad_right, h, w,
          tiny ? " (one-row tiles)" : "", r);
    free(x), free(wt), free(b), free(ax), free(aw), free(ab), free(want), free(bound), free(got);
    free(col);
    cuda_ops_arena_reset(ctx, mark);
}

static void check_convolutions(void)
{
    /* the VAEs' geometries: 3×3 same, DiscreteVAE's 4×4 stride 2, 1×1,
     * dall_e's 7×7, taming's Downsample (pad right/bottom), a strided 1×1 */
    const int geo[][8] = {{8, 16, 3, 1, 1, 1, 1, 1}, {8, 5, 4, 2, 1, 1, 1, 1},
                          {8, 16, 1, 1, 0, 0, 0, 0}, {3, 8, 7, 1, 3, 3, 3, 3},
                          {8, 8, 3, 2, 0, 1, 0, 1},  {8, 6, 1, 2, 0, 0, 0, 0},
                          {64, 96, 3, 1, 1, 1, 1, 1}};
    for (size_t i = 0; i < sizeof geo / sizeof *geo; i++)
        for (int tiny = 0; tiny < 2; tiny++) {
            conv_geom g = {geo[i][0], geo[i][1], geo[i][2], geo[i][3],
                           geo[i][4], geo[i][5], geo[i][6], geo[i][7]};
            check_one_conv(&g, 0, i == 6 ? 40 : 13, i == 6 ? 33 : 11, tiny);
        }
    /* DiscreteVAE's ConvTranspose2d(4, stride 2, pad 1), and others */
    const int tgeo[][4] = {{8, 6, 4, 2}, {16, 32, 4, 2}, {5, 3, 3, 1}};
    for (size_t i = 0; i < sizeof tgeo / sizeof *tgeo; i++)
        for (int tiny = 0; tiny < 2; tiny++) {
            conv_geom g = conv_geom_make(tgeo[i][0], tgeo[i][1], tgeo[i][2], tgeo[i][3],
                                         tgeo[i][2] == 4 ? 1 : 0);
            check_one_conv(&g, 1, 13, i == 1 ? 16 : 11, tiny);
        }
}

static void check_image_elementwise(void)
{
    size_t mark = cuda_ops_arena_mark(ctx);
    const int c = 6, h = 10, w = 14;
    const size_t n = (size_t)c * h * w;
    float *x = xmalloc(n * 4), *y = xmalloc(n * 4), *want = xmalloc(4 * n * 4);
    float *got = xmalloc(4 * n * 4);
    fill(x, n, -2.0f, 2.0f);
    fill(y, n, -2.0f, 2.0f);
    x[7] = -0.0f;
    float *dx = dev_copy(x, n * 4), *dy = dev_copy(y, n * 4), *dz = dev_copy(NULL, 4 * n * 4);
    conv_relu(x, want, (int64_t)n);
    CALL(cuda_relu(ctx, dx, dz, (int64_t)n));
    download(got, dz, n * 4);
    CHECK(count_diff_bits(got, want, n) == 0, "relu: the CPU's bits");
    memcpy(want, y, n * 4);
    conv_residual(x, want, 0.37f, (int64_t)n);
    CALL(cuda_residual(ctx, dx, dy, 0.37f, (int64_t)n));
    download(got, dy, n * 4);
    CHECK(count_diff_bits(got, want, n) == 0, "residual x + 0.37 y: the CPU's bits");
    for (int max = 0; max < 2; max++) {
        const int hh = h - max, ww = w - max; /* odd sides too: the last row / column dropped */
        const size_t no = (size_t)c * (hh / 2) * (ww / 2);
        if (max)
            conv_max_pool2(x, c, hh, ww, want);
        else
            conv_avg_pool2(x, c, hh, ww, want);
        CALL(cuda_pool2(ctx, dx, c, hh, ww, max, dz));
        download(got, dz, no * 4);
        CHECK(count_diff_bits(got, want, no) == 0, "%s pool 2x2 of %dx%d: the CPU's bits",
              max ? "max" : "average", hh, ww);
    }
    conv_upsample2(x, c, h, w, want);
    CALL(cuda_upsample2(ctx, dx, c, h, w, dz));
    download(got, dz, 4 * n * 4);
    CHECK(count_diff_bits(got, want, 4 * n) == 0, "upsample 2x: the CPU's bits");
    free(x), free(y), free(want), free(got);
    cuda_ops_arena_reset(ctx, mark);
}

static void check_group_norm(void)
{
    const int64_t shapes[][2] = {{64, 15}, {128, 4096}, {32, 1}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (int swish = 0; swish < 2; swish++) {
            size_t mark = cuda_ops_arena_mark(ctx);
            const int c = (int)shapes[si][0];
            const int64_t hw = shapes[si][1];
            const size_t n = (size_t)(c * hw);
            float *x = xmalloc(n * 4), *g = xmalloc((size_t)c * 4), *b = xmalloc((size_t)c * 4);
            float *want = xmalloc(n * 4), *got = xmalloc(n * 4);
            fill(x, n, 3.0f, 7.0f); /* a large mean: the centring matters */
            fill(g, (size_t)c, 0.5f, 1.5f);
            fill(b, (size_t)c, -0.5f, 0.5f);
            conv_group_norm(x, c, hw, 32, 1e-6f, g, b, swish, want, NULL);
            float *dx = dev_copy(x, n * 4), *dg = dev_copy(g, (size_t)c * 4);
            float *db = dev_copy(b, (size_t)c * 4);
            CALL(cuda_group_norm(ctx, dx, c, hw, 32, 1e-6f, dg, db, swish, dx)); /* in place */
            download(got, dx, n * 4);
            double r = err_ratio(got, want, n, 1e-5, 1e-6);
            CHECK(r <= 1.0, "group_norm(32)%s over [%d][%lld] in place: error ratio %.3g",
                  swish ? " + swish" : "", c, (long long)hw, r);
            free(x), free(g), free(b), free(want), free(got);
            cuda_ops_arena_reset(ctx, mark);
        }
}

static void check_vae_io(void)
{
    size_t mark = cuda_ops_arena_mark(ctx);
    /* the look-ups: codebook rows, and one-hot columns plus a bias */
    const int tokens = 37, ch = 12, np = 50;
    float *table = xmalloc((size_t)tokens * ch * 4), *bias = xmalloc((size_t)ch * 4);
    float *want = xmalloc((size_t)ch * np * 4), *got = xmalloc((size_t)ch * np * 4);
    int32_t ids[50];
    fill(table, (size_t)tokens * ch, -1.0f, 1.0f);
    fill(bias, (size_t)ch, -1.0f, 1.0f);
    for (int p = 0; p < np; p++)
        ids[p] = (int32_t)(lcg() % tokens);
    float *dt = dev_copy(table, (size_t)tokens * ch * 4), *db = dev_copy(bias, (size_t)ch * 4);
    int32_t *di = dev_copy(ids, sizeof ids);
    float *dx = dev_copy(NULL, (size_t)ch * np * 4);
    for (int onehot = 0; onehot < 2; onehot++) {
        conv_gather_ids(table, onehot ? 1 : ch, onehot ? tokens : 1, onehot ? bias : NULL, ids,
                        np, ch, want);
        CALL(cuda_gather_ids(ctx, dt, onehot ? 1 : ch, onehot ? tokens : 1, onehot ? db : NULL,
                             di, np, ch, dx));
        download(got, dx, (size_t)ch * np * 4);
        CHECK(count_diff_bits(got, want, (size_t)ch * np) == 0, "gather_ids (%s): the CPU's bits",
              onehot ? "one-hot columns + bias" : "codebook rows");
    }
    /* the pixel maps; the clamping ones over NaN, ±inf and out-of-range values too */
    const int64_t n = 300;
    float *px = xmalloc((size_t)n * 3 * 4), *pw = xmalloc((size_t)n * 3 * 4);
    float *pg = xmalloc((size_t)n * 3 * 4);
    float *dp = dev_copy(NULL, (size_t)n * 3 * 4), *dq = dev_copy(NULL, (size_t)n * 3 * 4);
    for (int kind = CONV_MAP_COPY; kind <= CONV_MAP_SYMMETRIC; kind++) {
        const int clamps = kind == CONV_MAP_AFFINE_CLAMP || kind == CONV_MAP_CLAMP ||
                           kind == CONV_MAP_LAPLACE || kind == CONV_MAP_SYMMETRIC;
        conv_map m = {(conv_map_kind)kind, {0.48f, 0.5f, 0.52f}, {0.26f, 0.25f, 0.27f}};
        fill(px, (size_t)n * 3, -3.0f, 3.0f);
        if (clamps) {
            px[1] = NAN;
            px[2] = INFINITY;
            px[n + 3] = -INFINITY;
        }
        conv_map_pixels(&m, px, n, pw);
        cuda_ops_upload(ctx, dp, px, (size_t)n * 3 * 4);
        CALL(cuda_pixel_map(ctx, &m, dp, n, dq));
        download(pg, dq, (size_t)n * 3 * 4);
        if (kind == CONV_MAP_LAPLACE) {
            double r = err_ratio(pg, pw, (size_t)n * 3, 1e-5, 1e-6);
            CHECK(r <= 1.0, "pixel_map LAPLACE (sigmoid): error ratio %.3g", r);
        } else {
            CHECK(count_diff_bits(pg, pw, (size_t)n * 3) == 0, "pixel_map kind %d: the CPU's bits",
                  kind);
        }
    }
    free(table), free(bias), free(want), free(got), free(px), free(pw), free(pg);
    cuda_ops_arena_reset(ctx, mark);
}

static void check_vq_and_argmax(void)
{
    size_t mark = cuda_ops_arena_mark(ctx);
    const int dim = 24, k = 70;
    const int64_t n = 64;
    float *z = xmalloc((size_t)dim * n * 4), *e = xmalloc((size_t)k * dim * 4);
    float *cs = xmalloc((size_t)k * 4), *zz = xmalloc((size_t)n * 4), *gzz = xmalloc((size_t)n * 4);
    float *want = xmalloc((size_t)k * n * 4), *got = xmalloc((size_t)k * n * 4);
    float *az = xmalloc((size_t)dim * n * 4), *ae = xmalloc((size_t)k * dim * 4);
    float *bound = xmalloc((size_t)k * n * 4);
    fill(z, (size_t)dim * n, -1.0f, 1.0f);
    fill(e, (size_t)k * dim, -1.0f, 1.0f);
    for (int j = 0; j < k; j++) {
        float acc = 0.0f;
        for (int d = 0; d < dim; d++)
            acc += e[j * dim + d] * e[j * dim + d];
        cs[j] = acc;
    }
    conv_vq_scores(NULL, z, dim, n, e, cs, k, zz, want);
    absolute(z, az, (size_t)dim * n);
    absolute(e, ae, (size_t)k * dim);
    ops_gemm(NULL, 0, 0, k, n, dim, 1.0f, ae, dim, az, n, 0.0f, bound, n);
    for (int j = 0; j < k; j++)
        for (int64_t p = 0; p < n; p++)
            bound[j * n + p] = zz[p] + cs[j] + 2.0f * bound[j * n + p];
    float *dz = dev_copy(z, (size_t)dim * n * 4), *de = dev_copy(e, (size_t)k * dim * 4);
    float *dc = dev_copy(cs, (size_t)k * 4), *dzz = dev_copy(NULL, (size_t)n * 4);
    float *ds = dev_copy(NULL, (size_t)k * n * 4);
    CALL(cuda_vq_scores(ctx, dz, dim, n, de, dc, k, dzz, ds));
    download(gzz, dzz, (size_t)n * 4);
    download(got, ds, (size_t)k * n * 4);
    CHECK(count_diff_bits(gzz, zz, (size_t)n) == 0, "vq_scores |z|²: the CPU's bits");
    double r = bound_ratio(got, want, bound, (size_t)k * n);
    CHECK(r <= 1.0, "vq_scores [%d][%lld] of dim %d: error ratio %.3g", k, (long long)n, dim, r);
    /* the argmax of the CPU's scores, with ties (first maximum wins) */
    want[5 * n + 3] = want[9 * n + 3] = 100.0f;
    want[2 * n + 7] = want[(k - 1) * n + 7] = 1e9f;
    int32_t *iw = xmalloc((size_t)n * 4), *ig = xmalloc((size_t)n * 4);
    conv_argmax_channels(want, k, n, iw);
    cuda_ops_upload(ctx, ds, want, (size_t)k * n * 4);
    int32_t *di = dev_copy(NULL, (size_t)n * 4);
    CALL(cuda_argmax_channels(ctx, ds, k, n, di));
    download(ig, di, (size_t)n * 4);
    CHECK(!memcmp(ig, iw, (size_t)n * 4) && iw[3] == 5 && iw[7] == 2,
          "argmax_channels: the CPU's ids, ties to the first");
    free(z), free(e), free(cs), free(zz), free(gzz), free(want), free(got), free(az), free(ae);
    free(bound), free(iw), free(ig);
    cuda_ops_arena_reset(ctx, mark);
}

static void check_image_ops(void)
{
    check_convolutions();
    check_image_elementwise();
    check_group_norm();
    check_vae_io();
    check_vq_and_argmax();
}

int main(int argc, char **argv)
{
    quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    check_without_gpu();

    const char *why = "";
    int n_dev = cuda_ops_device_count(&why);
    if (n_dev <= 0) {
        cuda_ops *c = NULL;
        dalle_status st = cuda_ops_create(NULL, &c);
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", dalle_last_error());
        CHECK(st == DALLE_ERR_UNSUPPORTED && c == NULL && msg[0],
              "no GPU: cuda_ops_create -> %d, \"%s\"", (int)st, msg);
        if (check_failures)
            return check_summary();
        (void)why;
        SKIP("no CUDA device, the kernels were not run (%s)", msg);
    }

    cuda_ops_params p;
    cuda_ops_params_init(&p);
    p.device = n_dev; /* one past the last */
    CHECK(cuda_ops_create(&p, &ctx) == DALLE_ERR_INVALID_ARGUMENT && ctx == NULL,
          "device %d of %d refused: %s", n_dev, n_dev, dalle_last_error());
    p.device = 0;
    p.arena_bytes = (size_t)256 << 20;
    dalle_status st = cuda_ops_create(&p, &ctx);
    if (st != DALLE_OK) {
        CHECK(0, "cuda_ops_create on device 0: %s", dalle_last_error());
        return check_summary();
    }
    printf("device: %s\n", cuda_ops_describe(ctx));

    check_arena();
    check_layer_norm();
    check_elementwise();
    check_rotary_and_cache();
    check_attend();
    check_token_shift();
    check_model_kernels();
    check_clip_kernels(); /* --- CLIP's operations */
    check_rng();
    check_sampler();
    check_gemm();
    check_linear_lowp();
    check_image_ops(); /* the VAEs' image operations */
    CALL(cuda_ops_sync(ctx));
    cuda_ops_destroy(ctx);

    /* TF32 allowed: still within TF32's accuracy (informational otherwise) */
    p.allow_tf32 = 1;
    p.arena_bytes = (size_t)16 << 20;
    st = cuda_ops_create(&p, &ctx);
    CHECK(st == DALLE_OK, "cuda_ops_create with TF32 allowed: %s",
          st ? dalle_last_error() : "ok");
    if (st == DALLE_OK) {
        const int64_t s = 256;
        float *a = xmalloc((size_t)s * s * 4), *b = xmalloc((size_t)s * s * 4);
        float *want = xmalloc((size_t)s * s * 4), *got = xmalloc((size_t)s * s * 4);
        fill(a, (size_t)s * s, -1.0f, 1.0f);
        fill(b, (size_t)s * s, -1.0f, 1.0f);
        float *da = dev_copy(a, (size_t)s * s * 4), *db = dev_copy(b, (size_t)s * s * 4);
        float *dc = dev_copy(NULL, (size_t)s * s * 4);
        ops_gemm(NULL, 0, 0, s, s, s, 1.0f, a, s, b, s, 0.0f, want, s);
        CALL(cuda_gemm(ctx, 0, 0, s, s, s, 1.0f, da, s, db, s, 0.0f, dc, s));
        download(got, dc, (size_t)s * s * 4);
        double r = gemm_ratio(0, 0, s, s, s, 1.0f, a, s, b, s, 0.0f, NULL, got, want, s);
        /* TF32 rounds each input to 11 significant bits: 2^-11 relative */
        CHECK(r <= 100.0, "gemm with TF32 allowed: error ratio %.3g of the FP32 bound (TF32 %s)",
              r, r > 1.0 ? "in use" : "not used for this shape");
        free(a), free(b), free(want), free(got);
        cuda_ops_destroy(ctx);
    }
    return check_summary();
}
