/* Convolutions (im2col + SGEMM), normalisation, pooling and resampling for
 * the VAEs. See conv.h for the contract. */
#include "conv.h"

#include <math.h>
#include <string.h>

#include "ops.h"
#include "threadpool.h"

/* The element-wise passes (im2col, col2im, GroupNorm) are split over the
 * context's pool when they have at least PAR_MIN_WORK elements per range:
 * smaller ones cost more to hand off than to compute. */
#ifndef PAR_MIN_WORK /* compile-time tunable, for benchmarks */
#define PAR_MIN_WORK ((int64_t)1 << 20)
#endif

/* fn over [0, n) items of `work` elements each, on the pool. */
static void parallel_for(tpool *pool, int64_t n, int64_t work, tpool_range fn, void *arg)
{
    int64_t min_items = work > 0 ? (PAR_MIN_WORK + work - 1) / work : n;
    tpool_for(pool, n, min_items, fn, arg);
}

conv_geom conv_geom_make(int cin, int cout, int k, int stride, int pad)
{
    conv_geom g = {cin, cout, k, stride, pad, pad, pad, pad};
    return g;
}

int conv_out_size(int in, int k, int stride, int pad_lo, int pad_hi)
{
    int span = in + pad_lo + pad_hi - k;
    return span < 0 ? 0 : span / stride + 1;
}

static int is_pointwise(const conv_geom *g)
{
    return g->k == 1 && g->stride == 1 && !g->pad_top && !g->pad_bottom && !g->pad_left &&
           !g->pad_right;
}

int64_t conv2d_col_need(const conv_geom *g, int h, int w, int64_t col_cap)
{
    if (is_pointwise(g))
        return 0;
    int ho = conv_out_size(h, g->k, g->stride, g->pad_top, g->pad_bottom);
    int wo = conv_out_size(w, g->k, g->stride, g->pad_left, g->pad_right);
    int64_t row = (int64_t)g->cin * g->k * g->k * wo;
    int64_t all = row * ho;
    if (all <= col_cap)
        return all;
    return row > col_cap ? row : (col_cap / row) * row;
}

/* Columns of output rows [r0, r1): col[(ci·k + ki)·k + kj][(r - r0)·wo + c]
 * is the input pixel under kernel tap (ki, kj) for output (r, c), 0 in the
 * padding. One call fills the rows of input channels [c0, c1). */
typedef struct im2col_args {
    const conv_geom *g;
    const float *x;
    int h, w, wo, r0, r1;
    float *col;
} im2col_args;

static void im2col_part(void *p, int64_t c0, int64_t c1)
{
    const im2col_args *a = p;
    const conv_geom *g = a->g;
    const int k = g->k, s = g->stride, h = a->h, w = a->w, wo = a->wo;
    const int64_t n = (int64_t)(a->r1 - a->r0) * wo;
    for (int64_t ci = c0; ci < c1; ci++) {
        const float *xc = a->x + ci * h * w;
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                float *dst = a->col + ((ci * k + ki) * k + kj) * n;
                for (int r = a->r0; r < a->r1; r++) {
                    int iy = r * s - g->pad_top + ki;
                    float *d = dst + (int64_t)(r - a->r0) * wo;
                    if (iy < 0 || iy >= h) {
                        memset(d, 0, sizeof(float) * (size_t)wo);
                        continue;
                    }
                    const float *xr = xc + (int64_t)iy * w;
                    int ix0 = kj - g->pad_left;
                    if (s == 1) {
                        /* contiguous run with zeros at the edges */
                        int c = 0;
                        for (; c < wo && ix0 + c < 0; c++)
                            d[c] = 0.0f;
                        int cend = w - ix0 < wo ? w - ix0 : wo;
                        if (cend > c) {
                            memcpy(d + c, xr + ix0 + c, sizeof(float) * (size_t)(cend - c));
                            c = cend;
                        }
                        for (; c < wo; c++)
                            d[c] = 0.0f;
                    } else {
                        for (int c = 0; c < wo; c++) {
                            int ix = c * s + ix0;
                            d[c] = (ix >= 0 && ix < w) ? xr[ix] : 0.0f;
                        }
                    }
                }
            }
    }
}

static void fill_bias(float *y, const float *bias, int c, int64_t hw)
{
    for (int o = 0; o < c; o++) {
        float v = bias ? bias[o] : 0.0f;
        float *yo = y + (int64_t)o * hw;
        for (int64_t i = 0; i < hw; i++)
            yo[i] = v;
    }
}

void conv2d(const conv_geom *g, const float *x, int h, int w, const float *wt,
            const float *bias, float *y, float *col, int64_t col_floats, tpool *pool)
{
    int ho = conv_out_size(h, g->k, g->stride, g->pad_top, g->pad_bottom);
    int wo = conv_out_size(w, g->k, g->stride, g->pad_left, g->pad_right);
    if (ho < 1 || wo < 1)
        return;
    const int64_t hw = (int64_t)ho * wo;
    /* Bias first, then the GEMM accumulates onto it (beta = 1). */
    fill_bias(y, bias, g->cout, hw);
    if (is_pointwise(g)) {
        ops_gemm(pool, 0, 0, g->cout, hw, g->cin, 1.0f, wt, g->cin, x, hw, 1.0f, y, hw);
        return;
    }
    const int kk = g->cin * g->k * g->k;
    int64_t row = (int64_t)kk * wo;
    int tile = (int)(col_floats / row);
    if (tile < 1)
        tile = 1; /* the caller sized col with conv2d_col_need: never below one row */
    for (int r0 = 0; r0 < ho; r0 += tile) {
        int r1 = r0 + tile < ho ? r0 + tile : ho;
        int n = (r1 - r0) * wo;
        im2col_args a = {g, x, h, w, wo, r0, r1, col};
        parallel_for(pool, g->cin, (int64_t)g->k * g->k * n, im2col_part, &a);
        ops_gemm(pool, 0, 0, g->cout, n, kk, 1.0f, wt, kk, col, n, 1.0f, y + (int64_t)r0 * wo,
                 hw);
    }
}

int64_t conv_transpose2d_col_need(int cout, int k, int h, int w, int64_t col_cap)
{
    int64_t row = (int64_t)cout * k * k * w;
    int64_t all = row * h;
    if (all <= col_cap)
        return all;
    return row > col_cap ? row : (col_cap / row) * row;
}

/* col2im for input rows [r0, r1): adds every tap's contribution into y.
 * One call handles output channels [c0, c1). */
typedef struct col2im_args {
    int k, stride, pad, w, ho, wo, r0, r1;
    const float *col;
    float *y;
} col2im_args;

static void col2im_part(void *p, int64_t c0, int64_t c1)
{
    const col2im_args *a = p;
    const int k = a->k, w = a->w;
    const int64_t n = (int64_t)(a->r1 - a->r0) * w, ohw = (int64_t)a->ho * a->wo;
    for (int64_t co = c0; co < c1; co++) {
        float *yo = a->y + co * ohw;
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                const float *src = a->col + ((co * k + ki) * k + kj) * n;
                for (int i = a->r0; i < a->r1; i++) {
                    int oy = i * a->stride - a->pad + ki;
                    if (oy < 0 || oy >= a->ho)
                        continue;
                    float *yr = yo + (int64_t)oy * a->wo;
                    const float *sr = src + (int64_t)(i - a->r0) * w;
                    for (int j = 0; j < w; j++) {
                        int ox = j * a->stride - a->pad + kj;
                        if (ox >= 0 && ox < a->wo)
                            yr[ox] += sr[j];
                    }
                }
            }
    }
}

void conv_transpose2d(int cin, int cout, int k, int stride, int pad, const float *x, int h,
                      int w, const float *wt, const float *bias, float *y, float *col,
                      int64_t col_floats, tpool *pool)
{
    const int ho = (h - 1) * stride - 2 * pad + k, wo = (w - 1) * stride - 2 * pad + k;
    if (ho < 1 || wo < 1)
        return;
    fill_bias(y, bias, cout, (int64_t)ho * wo);
    const int m = cout * k * k;
    int64_t row = (int64_t)m * w;
    int tile = (int)(col_floats / row);
    if (tile < 1)
        tile = 1;
    /* A transposed convolution is the adjoint of im2col: each input pixel
     * scatters wᵀ·x over a k×k patch. One GEMM gives every tap's
     * contribution for a tile of input rows (col = Wᵀ · x_tile, W seen as
     * [cin][cout·k·k]), then col2im adds them into place. */
    for (int r0 = 0; r0 < h; r0 += tile) {
        int r1 = r0 + tile < h ? r0 + tile : h;
        int n = (r1 - r0) * w;
        ops_gemm(pool, 1, 0, m, n, cin, 1.0f, wt, m, x + (int64_t)r0 * w, (int64_t)h * w, 0.0f,
                 col, n);
        col2im_args a = {k, stride, pad, w, ho, wo, r0, r1, col, y};
        parallel_for(pool, cout, (int64_t)k * k * n, col2im_part, &a);
    }
}

void conv_relu(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void conv_swish(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] / (1.0f + expf(-x[i]));
}

void conv_sigmoid(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = 1.0f / (1.0f + expf(-x[i]));
}

void conv_residual(const float *x, float *y, float scale, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] + scale * y[i];
}

typedef struct gn_args {
    const float *x, *gain, *bias;
    int cg, swish;
    int64_t hw;
    float eps;
    float *y;
} gn_args;

static void gn_part(void *p, int64_t g0, int64_t g1)
{
    const gn_args *a = p;
    const int64_t n = (int64_t)a->cg * a->hw;
    for (int64_t g = g0; g < g1; g++) {
        const float *xg = a->x + g * n;
        float *yg = a->y + g * n;
        /* Two passes in double: the mean, then the centred variance. */
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < n; i++)
            mean += xg[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) {
            double d = xg[i] - mean;
            var += d * d;
        }
        var /= (double)n;
        const float rstd = (float)(1.0 / sqrt(var + (double)a->eps)), fmean = (float)mean;
        for (int j = 0; j < a->cg; j++) {
            const int64_t ch = g * a->cg + j;
            const float sc = rstd * a->gain[ch], sh = a->bias[ch] - fmean * sc;
            const float *xc = xg + j * a->hw;
            float *yc = yg + j * a->hw;
            if (a->swish)
                for (int64_t i = 0; i < a->hw; i++) {
                    float v = xc[i] * sc + sh;
                    yc[i] = v / (1.0f + expf(-v));
                }
            else
                for (int64_t i = 0; i < a->hw; i++)
                    yc[i] = xc[i] * sc + sh;
        }
    }
}

void conv_group_norm(const float *x, int c, int64_t hw, int groups, float eps, const float *gain,
                     const float *bias, int swish, float *y, tpool *pool)
{
    gn_args a = {x, gain, bias, c / groups, swish, hw, eps, y};
    parallel_for(pool, groups, (int64_t)(c / groups) * hw, gn_part, &a);
}

void conv_max_pool2(const float *x, int c, int h, int w, float *y)
{
    const int ho = h / 2, wo = w / 2;
    for (int ch = 0; ch < c; ch++) {
        const float *xc = x + (int64_t)ch * h * w;
        float *yc = y + (int64_t)ch * ho * wo;
        for (int i = 0; i < ho; i++) {
            const float *r0 = xc + (int64_t)(2 * i) * w, *r1 = r0 + w;
            for (int j = 0; j < wo; j++) {
                float m = r0[2 * j];
                if (r0[2 * j + 1] > m) m = r0[2 * j + 1];
                if (r1[2 * j] > m) m = r1[2 * j];
                if (r1[2 * j + 1] > m) m = r1[2 * j + 1];
                yc[(int64_t)i * wo + j] = m;
            }
        }
    }
}

void conv_avg_pool2(const float *x, int c, int h, int w, float *y)
{
    const int ho = h / 2, wo = w / 2;
    for (int ch = 0; ch < c; ch++) {
        const float *xc = x + (int64_t)ch * h * w;
        float *yc = y + (int64_t)ch * ho * wo;
        for (int i = 0; i < ho; i++) {
            const float *r0 = xc + (int64_t)(2 * i) * w, *r1 = r0 + w;
            for (int j = 0; j < wo; j++)
                yc[(int64_t)i * wo + j] =
                    (r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1]) * 0.25f;
        }
    }
}

void conv_upsample2(const float *x, int c, int h, int w, float *y)
{
    const int wo = 2 * w;
    for (int ch = 0; ch < c; ch++) {
        const float *xc = x + (int64_t)ch * h * w;
        float *yc = y + (int64_t)ch * 4 * h * w;
        for (int i = 0; i < h; i++) {
            float *d = yc + (int64_t)(2 * i) * wo;
            const float *s = xc + (int64_t)i * w;
            for (int j = 0; j < w; j++)
                d[2 * j] = d[2 * j + 1] = s[j];
            memcpy(d + wo, d, sizeof(float) * (size_t)wo);
        }
    }
}

void conv_gather_ids(const float *table, int64_t id_stride, int64_t c_stride, const float *bias,
                     const int32_t *ids, int64_t n, int channels, float *x)
{
    for (int c = 0; c < channels; c++) {
        const float *tc = table + (int64_t)c * c_stride;
        float *xc = x + (int64_t)c * n;
        if (bias)
            for (int64_t p = 0; p < n; p++)
                xc[p] = tc[ids[p] * id_stride] + bias[c];
        else /* a copy: no "+ 0" that would turn -0 into +0 */
            for (int64_t p = 0; p < n; p++)
                xc[p] = tc[ids[p] * id_stride];
    }
}

static float clamp01(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; }

void conv_map_pixels(const conv_map *m, const float *x, int64_t n, float *y)
{
    for (int c = 0; c < 3; c++) {
        const float a = m->a[c], b = m->b[c];
        const float *xc = x + c * n;
        float *yc = y + c * n;
        for (int64_t i = 0; i < n; i++) {
            float v = xc[i];
            switch (m->kind) {
            case CONV_MAP_COPY: break;
            case CONV_MAP_NORMALISE: v = (v - a) / b; break;
            case CONV_MAP_AFFINE: v = a * v + b; break;
            case CONV_MAP_AFFINE_CLAMP: v = clamp01(v * a + b); break;
            case CONV_MAP_CLAMP: v = clamp01(v); break;
            case CONV_MAP_LAPLACE: v = clamp01((1.0f / (1.0f + expf(-v)) - a) / b); break;
            case CONV_MAP_SYMMETRIC:
                v = v > -1.0f ? (v < 1.0f ? v : 1.0f) : -1.0f; /* NaN → -1 */
                v = (v + 1.0f) * 0.5f;
                break;
            }
            yc[i] = v;
        }
    }
}

void conv_vq_scores(tpool *pool, const float *z, int dim, int64_t n, const float *codebook,
                    const float *code_sq, int k, float *zz, float *scores)
{
    for (int64_t p = 0; p < n; p++) {
        float acc = 0.0f;
        for (int d = 0; d < dim; d++) {
            float v = z[(int64_t)d * n + p];
            acc += v * v;
        }
        zz[p] = acc;
    }
    ops_gemm(pool, 0, 0, k, n, dim, 1.0f, codebook, dim, z, n, 0.0f, scores, n);
    for (int j = 0; j < k; j++) {
        float *sj = scores + (int64_t)j * n;
        for (int64_t p = 0; p < n; p++)
            sj[p] = -((zz[p] + code_sq[j]) - 2.0f * sj[p]);
    }
}

void conv_argmax_channels(const float *scores, int t, int64_t n, int32_t *ids)
{
    for (int64_t p = 0; p < n; p++) {
        int best = 0;
        float bv = scores[p];
        for (int j = 1; j < t; j++) {
            float s = scores[(int64_t)j * n + p];
            if (s > bv) {
                bv = s;
                best = j;
            }
        }
        ids[p] = best;
    }
}
