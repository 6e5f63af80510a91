/* Convolutions over a whole batch, forward and backward, for training the
 * VAEs (lib/train/vae_train*.c).
 *
 * Layout: a batch of images is stored CHANNEL-MAJOR, [c][batch][h][w]
 * ("CBHW"), not PyTorch's [batch][c][h][w]. Then the images of one channel
 * are back to back, so
 *   - a 1×1 convolution of the whole batch is ONE GEMM on [cin][batch·h·w];
 *   - im2col of consecutive output rows, even across images (the batch's
 *     rows are numbered 0 .. batch·ho - 1), fills consecutive columns, and
 *     one GEMM covers a tile of rows of several images at once;
 *   - the weight gradient sums over the batch inside the GEMM's inner
 *     dimension: no per-image partial sums to reduce.
 * For batch = 1 the layout is lib/conv.h's [c][h][w], and the forward
 * computes what conv2d / conv_transpose2d compute (the sums may be grouped
 * differently by the GEMM, so the last bits can differ).
 *
 * One im2col (and its adjoint, col2im) serves all four passes:
 *   convolution    forward  im2col(x)  → y = W·col
 *                  backward im2col(x)  → dW += dy·colᵀ;  col = Wᵀ·dy → col2im → dx
 *   transposed     forward  col = Wᵀ·x → col2im → y
 *                  backward im2col(dy) → dx += W·col;    dW += x·colᵀ
 * (a transposed convolution is the adjoint of the convolution with the same
 * k, stride and padding, taking its output side to its input side). The
 * column buffer is tiled over rows so that it stays under a cap the caller
 * chooses; a tile holds at least one row.
 *
 * Determinism: im2col / col2im are split over channels on the pool (each
 * channel written by one task, in a fixed order), the products go through
 * ops_gemm (same bits for any pool) and the tiles follow one another in a
 * fixed order, so every result is bit-identical for any thread count.
 *
 * Like lib/train/ops_backward.h, every gradient ACCUMULATES (+=) into the
 * caller's buffer; nothing here allocates.
 */
#ifndef DALLE_TRAIN_CONV_BACKWARD_H
#define DALLE_TRAIN_CONV_BACKWARD_H

#include <stdint.h>

struct tpool;

/* A square-kernel convolution with symmetric padding over `batch` images of
 * h × w, giving ho × wo. Transposed (nn.ConvTranspose2d) when `transposed`:
 * weights [cin][cout][k][k], ho = (h - 1)·stride - 2·pad + k; otherwise
 * nn.Conv2d: weights [cout][cin][k][k], ho = (h + 2·pad - k) / stride + 1. */
typedef struct bconv {
    int cin, cout, k, stride, pad, transposed;
    int batch, h, w, ho, wo;
} bconv;

/* The geometry, or ho = wo = 0 when the kernel does not fit. */
bconv bconv_make(int cin, int cout, int k, int stride, int pad, int transposed, int batch, int h,
                 int w);

/* Floats of column scratch the passes need (0 for a 1×1 stride-1 unpadded
 * convolution): the whole batch when that is at most col_cap, else whole
 * rows up to col_cap, and never less than one row. Forward and backward
 * need the same amount. */
int64_t bconv_col_need(const bconv *c, int64_t col_cap);

/* y [cout][batch][ho][wo] = conv(x [cin][batch][h][w]) + bias (bias may be
 * NULL). y must not overlap x. */
void bconv_forward(const bconv *c, const float *x, const float *wt, const float *bias, float *y,
                   float *col, int64_t col_floats, struct tpool *pool);

/* Backward of bconv_forward given dy [cout][batch][ho][wo] and the
 * forward's input x: dx [cin][batch][h][w] += ∂/∂x, dw += ∂/∂W (weight
 * layout), db [cout] += Σ dy. Any of dx, dw, db may be NULL. */
void bconv_backward(const bconv *c, const float *x, const float *wt, const float *dy, float *dx,
                    float *dw, float *db, float *col, int64_t col_floats, struct tpool *pool);

/* ReLU backward from the forward's OUTPUT y (y > 0 exactly where x > 0):
 * dx += dy where y > 0. bw_relu_mask is the in-place form dy = dy·[y > 0],
 * for a gradient buffer the ReLU's input gradient can take over. */
void bw_relu(const float *y, const float *dy, int64_t n, float *dx);
void bw_relu_mask(const float *y, float *dy, int64_t n);

/* DiscreteVAE.norm, x' = (x - mean[c]) / std[c] over [c][batch·hw] (CBHW):
 * dx += dy / std[c]. (The trainer does not need it, pixels being data; it is
 * here for gradients with respect to images.) */
void bw_image_norm(const float *dy, int c, int64_t n_per_channel, const float *std, float *dx);

#endif
