/* Image-shaped tensor operations for the VAEs: convolutions, normalisation,
 * pooling and resampling of one image at a time.
 *
 * Like lib/ops.h, every function takes plain float pointers and sizes and
 * never allocates: the caller passes the scratch space it needs. An image is
 * planar, [channels][height][width] (PyTorch's NCHW without the batch), and
 * a weight tensor is laid out exactly as PyTorch stores it, so bundle
 * tensors are used as they are.
 *
 * Everything runs on the context's thread pool `pool` (lib/threadpool.h;
 * NULL: the calling thread only). The passes that are not GEMMs (im2col,
 * col2im, GroupNorm) are split into ranges of channels when they are large;
 * each output element is still computed by one thread in one fixed order.
 * The GEMMs are ops_gemm's fixed partition. So results do not depend on the
 * thread count (docs/threads.md).
 *
 * Convolutions are im2col + one SGEMM per tile of output rows: the im2col
 * buffer is bounded by the caller's `col_cap` (a few MiB), so a 3×3
 * convolution over a 256×256×256 activation does not need a 600 MB column
 * matrix, and every GEMM stays large enough to run at BLAS speed. 1×1
 * convolutions with stride 1 and no padding skip im2col altogether.
 */
#ifndef DALLE_CONV_H
#define DALLE_CONV_H

#include <stdint.h>

struct tpool;

/* A 2-D convolution's geometry: square k×k kernel, one stride for both
 * axes, and padding per side (taming's Downsample pads right/bottom only). */
typedef struct conv_geom {
    int cin, cout, k, stride;
    int pad_top, pad_bottom, pad_left, pad_right;
} conv_geom;

/* Symmetric padding p on every side. */
conv_geom conv_geom_make(int cin, int cout, int k, int stride, int pad);

/* Output side of a convolution: (in + lo + hi - k) / stride + 1, or 0 when
 * the kernel does not fit. */
int conv_out_size(int in, int k, int stride, int pad_lo, int pad_hi);

/* Floats of im2col scratch that conv2d needs for an h×w input, given the
 * cap the caller wants to stay under: at least one output row's columns
 * (0 for 1×1 / stride 1 / unpadded convolutions, which need none). */
int64_t conv2d_col_need(const conv_geom *g, int h, int w, int64_t col_cap);

/* nn.Conv2d: x [cin][h][w] → y [cout][ho][wo]. wt [cout][cin][k][k],
 * bias [cout] or NULL. col: scratch of col_floats ≥ conv2d_col_need(). y must
 * not overlap x. */
void conv2d(const conv_geom *g, const float *x, int h, int w, const float *wt,
            const float *bias, float *y, float *col, int64_t col_floats, struct tpool *pool);

/* nn.ConvTranspose2d with square kernel k, stride s and symmetric padding p:
 * x [cin][h][w] → y [cout][(h-1)s - 2p + k][(w-1)s - 2p + k].
 * wt [cin][cout][k][k] (PyTorch's layout for transposed convolutions),
 * bias [cout] or NULL. col: scratch of col_floats ≥ conv_transpose2d_col_need(). */
int64_t conv_transpose2d_col_need(int cout, int k, int h, int w, int64_t col_cap);
void conv_transpose2d(int cin, int cout, int k, int stride, int pad, const float *x, int h,
                      int w, const float *wt, const float *bias, float *y, float *col,
                      int64_t col_floats, struct tpool *pool);

/* Elementwise helpers over n floats (in place allowed where y == x). */
void conv_relu(const float *x, float *y, int64_t n);
void conv_swish(const float *x, float *y, int64_t n);   /* x · sigmoid(x) */
void conv_sigmoid(const float *x, float *y, int64_t n);
/* y = x + scale · y (the residual add of dall_e's blocks: id + post_gain · res). */
void conv_residual(const float *x, float *y, float scale, int64_t n);

/* nn.GroupNorm over x [c][hw] (biased variance, eps inside the square root),
 * then the swish when `swish` is non-zero. c must be a multiple of groups.
 * In place allowed. */
void conv_group_norm(const float *x, int c, int64_t hw, int groups, float eps, const float *gain,
                     const float *bias, int swish, float *y, struct tpool *pool);

/* nn.MaxPool2d(2) / F.avg_pool2d(2, 2): [c][h][w] → [c][h/2][w/2] (odd edges
 * dropped, as PyTorch floors). */
void conv_max_pool2(const float *x, int c, int h, int w, float *y);
void conv_avg_pool2(const float *x, int c, int h, int w, float *y);

/* Nearest-neighbour upsampling by 2: [c][h][w] → [c][2h][2w]. */
void conv_upsample2(const float *x, int c, int h, int w, float *y);

#endif
