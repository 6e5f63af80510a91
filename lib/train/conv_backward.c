/* Batched convolutions and their backward passes (conv_backward.h). */
#include "conv_backward.h"

#include <string.h>

#include "../ops.h"
#include "../threadpool.h"

/* im2col / col2im are split over channels when a range gets at least this
 * many elements: below it the hand-off costs more than the copy. */
#define PAR_MIN_WORK ((int64_t)1 << 15)

bconv bconv_make(int cin, int cout, int k, int stride, int pad, int transposed, int batch, int h,
                 int w)
{
    bconv c = {cin, cout, k, stride, pad, transposed, batch, h, w, 0, 0};
    if (transposed) {
        c.ho = (h - 1) * stride - 2 * pad + k;
        c.wo = (w - 1) * stride - 2 * pad + k;
    } else if (h + 2 * pad >= k && w + 2 * pad >= k) {
        c.ho = (h + 2 * pad - k) / stride + 1;
        c.wo = (w + 2 * pad - k) / stride + 1;
    }
    if (c.ho < 1 || c.wo < 1)
        c.ho = c.wo = 0;
    return c;
}

static int pointwise(const bconv *c)
{
    return !c->transposed && c->k == 1 && c->stride == 1 && c->pad == 0;
}

/* The im2col geometry of a pass: the "big" side is the convolution's input
 * (or a transposed convolution's output), the "small" side the other; the
 * columns are indexed by the small side's rows. */
typedef struct colgeo {
    int ch, H, W;  /* big side: channels, rows, columns of one image */
    int sh, sw;    /* small side: rows, columns of one image */
    int64_t rows;  /* small-side rows of the whole batch: batch · sh */
    int64_t K;     /* rows of the column matrix: ch · k · k */
} colgeo;

static colgeo geo_of(const bconv *c)
{
    colgeo g;
    if (c->transposed) {
        g = (colgeo){c->cout, c->ho, c->wo, c->h, c->w, 0, 0};
    } else {
        g = (colgeo){c->cin, c->h, c->w, c->ho, c->wo, 0, 0};
    }
    g.rows = (int64_t)c->batch * g.sh;
    g.K = (int64_t)g.ch * c->k * c->k;
    return g;
}

int64_t bconv_col_need(const bconv *c, int64_t col_cap)
{
    if (pointwise(c) || !c->ho)
        return 0;
    colgeo g = geo_of(c);
    int64_t row = g.K * g.sw, all = row * g.rows;
    if (all <= col_cap)
        return all;
    return row > col_cap ? row : (col_cap / row) * row;
}

/* One tile: small-side rows [r0, r1) of the batch, the big-side tensor
 * [ch][batch][H][W] and the column matrix [K][(r1 - r0)·sw]. */
typedef struct tile_args {
    const bconv *c;
    const colgeo *g;
    int64_t r0, r1;
    const float *src; /* im2col: read from the big side */
    float *dst;       /* col2im: added into the big side */
    float *col;
} tile_args;

static void im2col_part(void *p, int64_t c0, int64_t c1)
{
    const tile_args *a = p;
    const colgeo *g = a->g;
    const int k = a->c->k, s = a->c->stride, pad = a->c->pad, B = a->c->batch;
    const int64_t n = (a->r1 - a->r0) * g->sw, img = (int64_t)g->H * g->W;
    for (int64_t ci = c0; ci < c1; ci++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                float *dst = a->col + ((ci * k + ki) * k + kj) * n;
                for (int64_t r = a->r0; r < a->r1; r++) {
                    const int64_t b = r / g->sh;
                    const int iy = (int)(r % g->sh) * s - pad + ki;
                    float *d = dst + (r - a->r0) * g->sw;
                    if (iy < 0 || iy >= g->H) {
                        memset(d, 0, sizeof(float) * (size_t)g->sw);
                        continue;
                    }
                    const float *xr = a->src + (ci * B + b) * img + (int64_t)iy * g->W;
                    for (int x = 0; x < g->sw; x++) {
                        int ix = x * s - pad + kj;
                        d[x] = (ix >= 0 && ix < g->W) ? xr[ix] : 0.0f;
                    }
                }
            }
}

/* The adjoint of im2col_part: every column entry is added back onto the
 * big-side pixel it was copied from. Each task owns whole channels, and an
 * element's contributions arrive in a fixed order (tap, then row). */
static void col2im_part(void *p, int64_t c0, int64_t c1)
{
    const tile_args *a = p;
    const colgeo *g = a->g;
    const int k = a->c->k, s = a->c->stride, pad = a->c->pad, B = a->c->batch;
    const int64_t n = (a->r1 - a->r0) * g->sw, img = (int64_t)g->H * g->W;
    for (int64_t ci = c0; ci < c1; ci++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                const float *src = a->col + ((ci * k + ki) * k + kj) * n;
                for (int64_t r = a->r0; r < a->r1; r++) {
                    const int64_t b = r / g->sh;
                    const int iy = (int)(r % g->sh) * s - pad + ki;
                    if (iy < 0 || iy >= g->H)
                        continue;
                    float *yr = a->dst + (ci * B + b) * img + (int64_t)iy * g->W;
                    const float *sr = src + (r - a->r0) * g->sw;
                    for (int x = 0; x < g->sw; x++) {
                        int ix = x * s - pad + kj;
                        if (ix >= 0 && ix < g->W)
                            yr[ix] += sr[x];
                    }
                }
            }
}

static void run_cols(struct tpool *pool, tpool_range fn, tile_args *a)
{
    int64_t work = (int64_t)a->c->k * a->c->k * (a->r1 - a->r0) * a->g->sw;
    int64_t min_items = work > 0 ? (PAR_MIN_WORK + work - 1) / work : a->g->ch;
    tpool_for(pool, a->g->ch, min_items, fn, a);
}

/* Rows of the small side per tile. */
static int64_t tile_rows(const colgeo *g, int64_t col_floats)
{
    int64_t t = col_floats / (g->K * g->sw);
    return t < 1 ? 1 : t;
}

static void fill_bias(float *y, const float *bias, int c, int64_t n)
{
    for (int o = 0; o < c; o++) {
        float v = bias ? bias[o] : 0.0f;
        float *yo = y + (int64_t)o * n;
        for (int64_t i = 0; i < n; i++)
            yo[i] = v;
    }
}

void bconv_forward(const bconv *c, const float *x, const float *wt, const float *bias, float *y,
                   float *col, int64_t col_floats, struct tpool *pool)
{
    if (!c->ho)
        return;
    const int64_t nin = (int64_t)c->batch * c->h * c->w, nout = (int64_t)c->batch * c->ho * c->wo;
    fill_bias(y, bias, c->cout, nout); /* the products accumulate onto it */
    if (pointwise(c)) {
        ops_gemm(pool, 0, 0, c->cout, nout, c->cin, 1.0f, wt, c->cin, x, nout, 1.0f, y, nout);
        return;
    }
    const colgeo g = geo_of(c);
    const int64_t t = tile_rows(&g, col_floats);
    for (int64_t r0 = 0; r0 < g.rows; r0 += t) {
        const int64_t r1 = r0 + t < g.rows ? r0 + t : g.rows, n = (r1 - r0) * g.sw;
        tile_args a = {c, &g, r0, r1, NULL, NULL, col};
        if (!c->transposed) {
            a.src = x;
            run_cols(pool, im2col_part, &a);
            ops_gemm(pool, 0, 0, c->cout, n, g.K, 1.0f, wt, g.K, col, n, 1.0f, y + r0 * g.sw,
                     nout);
        } else {
            /* every tap's contribution of these input rows, then scattered */
            ops_gemm(pool, 1, 0, g.K, n, c->cin, 1.0f, wt, g.K, x + r0 * g.sw, nin, 0.0f, col,
                     n);
            a.dst = y;
            run_cols(pool, col2im_part, &a);
        }
    }
}

void bconv_backward(const bconv *c, const float *x, const float *wt, const float *dy, float *dx,
                    float *dw, float *db, float *col, int64_t col_floats, struct tpool *pool)
{
    if (!c->ho)
        return;
    const int64_t nin = (int64_t)c->batch * c->h * c->w, nout = (int64_t)c->batch * c->ho * c->wo;
    if (db) {
        /* per channel over the whole batch, in double, in index order */
        for (int o = 0; o < c->cout; o++) {
            const float *d = dy + (int64_t)o * nout;
            double s = 0.0;
            for (int64_t i = 0; i < nout; i++)
                s += d[i];
            db[o] += (float)s;
        }
    }
    if (pointwise(c)) {
        if (dw)
            ops_gemm(pool, 0, 1, c->cout, c->cin, nout, 1.0f, dy, nout, x, nout, 1.0f, dw, c->cin);
        if (dx)
            ops_gemm(pool, 1, 0, c->cin, nout, c->cout, 1.0f, wt, c->cin, dy, nout, 1.0f, dx,
                     nout);
        return;
    }
    if (!dx && !dw)
        return;
    const colgeo g = geo_of(c);
    const int64_t t = tile_rows(&g, col_floats);
    for (int64_t r0 = 0; r0 < g.rows; r0 += t) {
        const int64_t r1 = r0 + t < g.rows ? r0 + t : g.rows, n = (r1 - r0) * g.sw;
        tile_args a = {c, &g, r0, r1, NULL, NULL, col};
        if (!c->transposed) {
            const float *dyt = dy + r0 * g.sw;
            if (dw) {
                a.src = x;
                run_cols(pool, im2col_part, &a);
                ops_gemm(pool, 0, 1, c->cout, g.K, n, 1.0f, dyt, nout, col, n, 1.0f, dw, g.K);
            }
            if (dx) {
                /* the same buffer now takes Wᵀ·dy, scattered back onto dx */
                ops_gemm(pool, 1, 0, g.K, n, c->cout, 1.0f, wt, g.K, dyt, nout, 0.0f, col, n);
                a.dst = dx;
                run_cols(pool, col2im_part, &a);
            }
        } else {
            /* the columns of dy under each input pixel's k×k patch */
            a.src = dy;
            run_cols(pool, im2col_part, &a);
            if (dx)
                ops_gemm(pool, 0, 0, c->cin, n, g.K, 1.0f, wt, g.K, col, n, 1.0f, dx + r0 * g.sw,
                         nin);
            if (dw)
                ops_gemm(pool, 0, 1, c->cin, g.K, n, 1.0f, x + r0 * g.sw, nin, col, n, 1.0f, dw,
                         g.K);
        }
    }
}

void bw_relu(const float *y, const float *dy, int64_t n, float *dx)
{
    for (int64_t i = 0; i < n; i++)
        if (y[i] > 0.0f)
            dx[i] += dy[i];
}

void bw_relu_mask(const float *y, float *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

void bw_image_norm(const float *dy, int c, int64_t n_per_channel, const float *std, float *dx)
{
    for (int ch = 0; ch < c; ch++)
        for (int64_t i = 0; i < n_per_channel; i++) {
            int64_t j = (int64_t)ch * n_per_channel + i;
            dx[j] += dy[j] / std[ch];
        }
}
