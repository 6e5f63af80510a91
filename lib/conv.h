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

/* ---- the VAEs' inputs and outputs ------------------------------------------ */

/* x [channels][n]: x[c][p] = table[ids[p] · id_stride + c · c_stride]
 * (+ bias[c] when bias is not NULL). A codebook [tokens][channels] is
 * id_stride = channels, c_stride = 1; the columns of a 1×1 convolution's
 * weight [channels][tokens] on one-hot ids are id_stride = 1,
 * c_stride = tokens (+ its bias). ids are in range (checked by the caller). */
void conv_gather_ids(const float *table, int64_t id_stride, int64_t c_stride, const float *bias,
                     const int32_t *ids, int64_t n, int channels, float *x);

/* An elementwise map of an RGB image [3][n], per channel c (a, b: the
 * kind's constants, per channel; clamp01(v) = v > 0 ? min(v, 1) : 0, NaN → 0):
 *   COPY         y = x
 *   NORMALISE    y = (x - a[c]) / b[c]                  (DiscreteVAE input)
 *   AFFINE       y = a[c] · x + b[c]                    (dall_e, VQGAN input)
 *   AFFINE_CLAMP y = clamp01(x · a[c] + b[c])           (DiscreteVAE output)
 *   CLAMP        y = clamp01(x)
 *   LAPLACE      y = clamp01((sigmoid(x) - a[c]) / b[c]) (dall_e output)
 *   SYMMETRIC    y = (clamp(x, -1, 1) + 1) · 0.5         (VQGAN output; NaN → 0) */
typedef enum conv_map_kind {
    CONV_MAP_COPY,
    CONV_MAP_NORMALISE,
    CONV_MAP_AFFINE,
    CONV_MAP_AFFINE_CLAMP,
    CONV_MAP_CLAMP,
    CONV_MAP_LAPLACE,
    CONV_MAP_SYMMETRIC
} conv_map_kind;

typedef struct conv_map {
    conv_map_kind kind;
    float a[3], b[3];
} conv_map;

void conv_map_pixels(const conv_map *m, const float *x, int64_t n, float *y);

/* Minus the squared distance of each position's vector z[.][p] (z [dim][n])
 * to each codebook row e_j (codebook [k][dim], code_sq[j] = |e_j|²), in
 * taming's order of operations: scores[j][p] = -((|z_p|² + |e_j|²) - 2 z_p·e_j).
 * zz: scratch of n floats (|z_p|², summed in float in d order). */
void conv_vq_scores(struct tpool *pool, const float *z, int dim, int64_t n, const float *codebook,
                    const float *code_sq, int k, float *zz, float *scores);

/* ids[p] = the first j with the largest scores[j][p] (torch.argmax), for
 * scores [t][n]. */
void conv_argmax_channels(const float *scores, int t, int64_t n, int32_t *ids);

#endif
