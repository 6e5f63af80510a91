/* Backward passes of the operations in lib/ops.h, for training.
 *
 * The same contract as ops.h: plain float pointers, row-major, the caller
 * owns all memory, nothing is allocated. Every gradient output ACCUMULATES
 * (+=) into the caller's buffer: a tensor used twice (a residual stream,
 * a weight shared between layers, the rows of a batch) gets the sum of its
 * gradients without extra copies. Zero the buffers before a step.
 *
 * Each backward takes the forward's inputs (or what the forward saved) and
 * the gradient of the forward's output, dy; it recomputes cheap
 * intermediates (LayerNorm statistics, softmax weights, GELU) the same way
 * the forward computes them, so no extra state has to be kept.
 *
 * Determinism: every loop runs in one fixed order and the matrix products
 * go through ops_gemm, whose bits do not depend on the pool (see ops.h), so
 * the gradients are bit-identical for any thread count.
 */
#ifndef DALLE_OPS_BACKWARD_H
#define DALLE_OPS_BACKWARD_H

#include <stdint.h>

#include "ops.h"

/* ops_linear: y = x · wᵀ + b, x [rows][in], w [out][in], dy [rows][out]
 * with row stride ldy. dx [rows][in] += dy · w; dw [out][in] += dyᵀ · x;
 * db [out] += Σ_r dy[r]. Any of dx, dw, db may be NULL (not wanted). The
 * two products run on `pool` (NULL: the calling thread), same bits. */
void bw_linear(struct tpool *pool, const float *x, int64_t rows, int64_t in, const float *w,
               int64_t out, const float *dy, int64_t ldy, float *dx, float *dw, float *db);

/* ops_layer_norm: dx, dgain, dbias (each may be NULL) from x (the forward's
 * input, not its output) and dy. The statistics are recomputed in double
 * exactly as the forward computes them. */
void bw_layer_norm(const float *x, int64_t rows, int64_t dim, const float *gain, float eps,
                   const float *dy, float *dx, float *dgain, float *dbias);

/* ops_geglu: h [rows][2 * inner] = [x | gates], dy [rows][inner] ->
 * dh [rows][2 * inner]. */
void bw_geglu(const float *h, int64_t rows, int64_t inner, const float *dy, float *dh);

/* ops_add_scaled (x += y * scale): the residual passes dx through
 * unchanged (nothing to do); the branch gets dy += dx * scale and the
 * LayerScale parameter dscale [dim] += Σ_r dx * y (scale NULL: plain add,
 * dy += dx, dscale ignored). */
void bw_add_scaled(const float *y, const float *scale, int64_t rows, int64_t dim,
                   const float *dx, float *dy, float *dscale);

/* ops_softmax: p = softmax(x) (the forward's OUTPUT), dp -> dx += p ⊙ (dp - Σ p dp). */
void bw_softmax(const float *p, const float *dp, int64_t n, float *dx);

/* ops_rotary is a rotation of each channel pair; its backward is the
 * transposed (= inverse) rotation of the gradient, in place on dt. */
void bw_rotary(float *dt, const float *cos, const float *sin, int64_t n_cols);

/* ops_attend for one query: q (already scaled), k, v as in the forward,
 * dout [dim_head]. Accumulates dq [dim_head], and dk, dv at the listed
 * positions (same layout as k, v). scores: scratch for the number of listed
 * keys (the forward's softmax weights are recomputed there). Callers that
 * run queries concurrently must not share dk / dv; one fixed query order
 * gives fixed bits. */
void bw_attend(const float *q, const float *k, const float *v, int64_t dim_head,
               const ops_span *spans, int n_spans, const float *dout, float *scores, float *dq,
               float *dk, float *dv);

/* Embedding look-up y[r] = table[ids[r]]: scatter-add dtable[ids[r]] += dy[r]
 * (in row order, so repeated ids sum deterministically). */
void bw_embedding(const int32_t *ids, int64_t rows, int64_t dim, const float *dy,
                  float *dtable);

/* PreShiftToken on one whole sequence of n_pos positions starting at
 * position 0 (see lib/token_shift.c): h [n_pos][dim] -> out. The forward is
 * a fixed selection of channels from the same or an earlier position, so
 * the backward moves each gradient back to the channel it came from:
 * dh += shiftᵀ(dout). text_len = <bos> + caption positions, fmap = image
 * tokens per side. tshift_forward is the same map as token_shift() (which
 * works on the incremental state), for training on whole sequences. */
void tshift_forward(const float *h, int64_t n_pos, int64_t dim, int64_t text_len, int64_t fmap,
                    float *out);
void bw_token_shift(const float *dout, int64_t n_pos, int64_t dim, int64_t text_len,
                    int64_t fmap, float *dh);

/* Cross-entropy of rows of logits over the column range [lo, lo + n) (the
 * unmasked part: masked columns hold -FLT_MAX, have probability 0 and get
 * no gradient). targets[r] is a column index in [lo, lo + n). Returns
 * Σ_r -log softmax(row)[target] (in double); writes (not accumulates)
 * dlogits[r][lo + j] = scale · (p_j - [j == target]) when dlogits is not
 * NULL (other columns untouched). Rows are ld floats apart. */
double ce_rows(const float *logits, int64_t rows, int64_t ld, int64_t lo, int64_t n,
               const int32_t *targets, float scale, float *dlogits);

/* DALLE.forward(..., return_loss=True) on logits [batch][n_pos][V] (n_pos =
 * text_seq_len + image_seq_len, V = text_vocab + num_image_tokens): rows
 * p < text_seq_len predict text ids over columns [0, text_vocab), the
 * others image ids over [text_vocab, V). labels [batch][n_pos]: the
 * caption with its padding ids, then the image ids OFFSET by text_vocab
 * (upstream's labels tensor). loss = (loss_text + w · loss_img) / (w + 1),
 * each part the mean over its rows (F.cross_entropy's 'mean'). Writes
 * dlogits (whole rows; masked columns 0) when not NULL; returns the loss
 * and, when not NULL, the two parts. */
double dalle_loss(const float *logits, int64_t batch, int64_t n_pos, int64_t text_seq_len,
                  int64_t text_vocab, int64_t V, const int32_t *labels, double loss_img_weight,
                  float *dlogits, double *loss_text, double *loss_img);

#endif
