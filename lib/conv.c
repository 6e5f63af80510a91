/* Convolutions (im2col + SGEMM), normalisation, pooling and resampling for
 * the VAEs. See conv.h for the contract. */
#include "conv.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

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
 * padding. */
static void im2col(const conv_geom *g, const float *x, int h, int w, int wo, int r0, int r1,
                   float *col)
{
    const int k = g->k, s = g->stride;
    const int64_t n = (int64_t)(r1 - r0) * wo;
    for (int ci = 0; ci < g->cin; ci++) {
        const float *xc = x + (int64_t)ci * h * w;
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                float *dst = col + ((int64_t)(ci * k + ki) * k + kj) * n;
                for (int r = r0; r < r1; r++) {
                    int iy = r * s - g->pad_top + ki;
                    float *d = dst + (int64_t)(r - r0) * wo;
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
            const float *bias, float *y, float *col, int64_t col_floats)
{
    int ho = conv_out_size(h, g->k, g->stride, g->pad_top, g->pad_bottom);
    int wo = conv_out_size(w, g->k, g->stride, g->pad_left, g->pad_right);
    if (ho < 1 || wo < 1)
        return;
    const int64_t hw = (int64_t)ho * wo;
    /* Bias first, then the GEMM accumulates onto it (beta = 1). */
    fill_bias(y, bias, g->cout, hw);
    if (is_pointwise(g)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, (int)hw, g->cin, 1.0f, wt,
                    g->cin, x, (int)hw, 1.0f, y, (int)hw);
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
        im2col(g, x, h, w, wo, r0, r1, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, n, kk, 1.0f, wt, kk, col,
                    n, 1.0f, y + (int64_t)r0 * wo, (int)hw);
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

void conv_transpose2d(int cin, int cout, int k, int stride, int pad, const float *x, int h,
                      int w, const float *wt, const float *bias, float *y, float *col,
                      int64_t col_floats)
{
    const int ho = (h - 1) * stride - 2 * pad + k, wo = (w - 1) * stride - 2 * pad + k;
    if (ho < 1 || wo < 1)
        return;
    const int64_t ohw = (int64_t)ho * wo;
    fill_bias(y, bias, cout, ohw);
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
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, cin, 1.0f, wt, m,
                    x + (int64_t)r0 * w, h * w, 0.0f, col, n);
        for (int co = 0; co < cout; co++) {
            float *yo = y + (int64_t)co * ohw;
            for (int ki = 0; ki < k; ki++)
                for (int kj = 0; kj < k; kj++) {
                    const float *src = col + ((int64_t)(co * k + ki) * k + kj) * n;
                    for (int i = r0; i < r1; i++) {
                        int oy = i * stride - pad + ki;
                        if (oy < 0 || oy >= ho)
                            continue;
                        float *yr = yo + (int64_t)oy * wo;
                        const float *sr = src + (int64_t)(i - r0) * w;
                        for (int j = 0; j < w; j++) {
                            int ox = j * stride - pad + kj;
                            if (ox >= 0 && ox < wo)
                                yr[ox] += sr[j];
                        }
                    }
                }
        }
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

void conv_group_norm(const float *x, int c, int64_t hw, int groups, float eps, const float *gain,
                     const float *bias, int swish, float *y)
{
    const int cg = c / groups;
    const int64_t n = (int64_t)cg * hw;
    for (int g = 0; g < groups; g++) {
        const float *xg = x + (int64_t)g * n;
        float *yg = y + (int64_t)g * n;
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
        const float rstd = (float)(1.0 / sqrt(var + (double)eps)), fmean = (float)mean;
        for (int j = 0; j < cg; j++) {
            const int ch = g * cg + j;
            const float a = rstd * gain[ch], b = bias[ch] - fmean * a;
            const float *xc = xg + (int64_t)j * hw;
            float *yc = yg + (int64_t)j * hw;
            for (int64_t i = 0; i < hw; i++) {
                float v = xc[i] * a + b;
                yc[i] = swish ? v / (1.0f + expf(-v)) : v;
            }
        }
    }
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
