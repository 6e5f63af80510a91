/* The operations table: what a compute backend gives the models.
 *
 * The DALL·E transformer (lib/transformer.c, attention.c, sample.c) is
 * written once, against this table; a context picks the table when it is
 * created (lib/context.c):
 *
 *   lib/backend_cpu.c            the CPU: lib/ops.h (OpenBLAS, the thread
 *                                pool), token_shift.c, attention.c's CPU
 *                                attention, sampler.c. Bit-identical to the
 *                                code before the table existed.
 *   lib/cuda/backend_cuda_ops.c  CUDA: lib/cuda/ops_cuda.h over device
 *                                memory from one arena (docs/cuda.md).
 *
 * Tensor data pointers are opaque to the model: host memory on the CPU,
 * device memory on CUDA. The model does pointer arithmetic on them (a row,
 * a layer's part of the cache) but never reads or writes through them; it
 * moves data in and out with upload / download only.
 *
 * Errors. The math operations return nothing: a CUDA failure (they are
 * queued and may fail later anyway) is recorded in the backend, the first
 * one wins, and the next backend_status / download / finish reports it.
 * The CPU's operations cannot fail. Allocation returns its status at once.
 *
 * Cost: one indirect call per operation per chunk; the CPU's functions are
 * the ones the model called directly before.
 */
#ifndef DALLE_BACKEND_OPS_H
#define DALLE_BACKEND_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "context.h" /* DALLE_MESSAGE_CAP */
#include "conv.h"
#include "dalle/dalle.h"
#include "ops.h"

struct transformer;
struct tf_state;
struct sampler;
struct tpool;
struct clip_work;
typedef struct backend backend;

typedef struct backend_ops {
    /* --- memory ----------------------------------------------------------- */
    /* bytes of backend memory (*ptr NULL for 0 bytes); free(NULL) is fine */
    dalle_status (*alloc)(backend *be, size_t bytes, void **ptr);
    void (*free)(backend *be, void *ptr);
    /* host -> backend; `host` may be reused as soon as it returns */
    void (*upload)(backend *be, void *dst, const void *host, size_t bytes);
    /* backend -> host: waits for everything queued, reports the first error */
    dalle_status (*download)(backend *be, void *host, const void *src, size_t bytes);
    /* backend -> backend */
    void (*copy)(backend *be, void *dst, const void *src, size_t bytes);
    /* what was allocated so far (the weights) stays for the backend's life;
     * a device backend gives back everything allocated later at once when
     * the last of it is freed (the states of one call) */
    void (*seal)(backend *be);

    /* --- the operations of lib/ops.h --------------------------------------- */
    /* y = x · wᵀ + b (ops_linear_w). scratch / slots: the state's widening
     * areas for reduced weights (CPU; NULL elsewhere: a device backend gets
     * float32 weights, widened at upload) */
    void (*linear)(backend *be, const float *x, int64_t rows, int64_t in, const ops_weight *w,
                   const float *b, int64_t out, float *y, int64_t ldy, float *scratch,
                   int slots);
    void (*layer_norm)(backend *be, const float *x, int64_t rows, int64_t dim, const float *gain,
                       const float *bias, float eps, float *y);
    void (*geglu)(backend *be, const float *h, int64_t rows, int64_t inner, float *y);
    void (*add_scaled)(backend *be, float *x, const float *y, const float *scale, int64_t rows,
                       int64_t dim);
    /* x[i] = (x[i] + y[i]) / 2: the two reversible streams' mean */
    void (*mean2)(backend *be, float *x, const float *y, int64_t n);
    void (*divide_max)(backend *be, float *x, int64_t rows, int64_t dim);
    /* x[r * ld + col0 + j] = value for r < rows, j < n: the logits mask */
    void (*fill)(backend *be, float *x, int64_t rows, int64_t ld, int64_t col0, int64_t n,
                 float value);
    /* cond[r * ld + i] = uncond[..] + (cond[..] - uncond[..]) * scale, i < n:
     * classifier-free guidance (forward_with_cond_scale) */
    void (*guidance)(backend *be, float *cond, const float *uncond, int64_t rows, int64_t ld,
                     int64_t n, float scale);

    /* --- the transformer's own steps, on its state (transformer_internal.h) */
    /* x [batch * m][dim]: the embeddings of tokens [batch][m] (host ids,
     * checked) at positions st->pos .. + m - 1 (a device backend uploads
     * them to st->ids first) */
    void (*embed)(backend *be, const struct transformer *tf, struct tf_state *st,
                  const int32_t *tokens, int m, float *x);
    /* token_shift.c's PreShiftToken of h into out, history ring hist */
    void (*token_shift)(backend *be, const struct transformer *tf, const struct tf_state *st,
                        float *hist, const float *h, int m, float *out);
    /* layer l's attention between to_qkv and to_out: rotary on st->qkv,
     * q scaled, k and v appended to the cache, each of the chunk's m
     * queries over its keys (attention_spans) into st->att */
    void (*attention)(backend *be, const struct transformer *tf, struct tf_state *st, int l,
                      int m);

    /* --- sampling ------------------------------------------------------------ */
    /* ids[r] = sampler_pick(sm, logits + r * ld, n, stream0 + r, counter)
     * for r < rows; ids is backend memory */
    void (*sample)(backend *be, struct sampler *sm, const float *logits, int64_t ld, int rows,
                   int n, uint64_t stream0, uint64_t counter, int32_t *ids);

    /* --- the VAEs' image operations (lib/conv.h; lib/vae*.c) ------------------
     * One image [c][h][w] at a time, as lib/conv.h; every pointer is backend
     * memory. col: im2col scratch of col_floats (conv2d_col_need /
     * conv_transpose2d_col_need of the geometry). */
    void (*conv2d)(backend *be, const conv_geom *g, const float *x, int h, int w,
                   const float *wt, const float *bias, float *y, float *col, int64_t col_floats);
    /* nn.ConvTranspose2d: g->cin, cout, k, stride and pad_top (symmetric) */
    void (*conv_transpose2d)(backend *be, const conv_geom *g, const float *x, int h, int w,
                             const float *wt, const float *bias, float *y, float *col,
                             int64_t col_floats);
    void (*relu)(backend *be, const float *x, float *y, int64_t n);
    /* y = x + scale · y */
    void (*residual)(backend *be, const float *x, float *y, float scale, int64_t n);
    void (*group_norm)(backend *be, const float *x, int c, int64_t hw, int groups, float eps,
                       const float *gain, const float *bias, int swish, float *y);
    /* 2×2 max (max ≠ 0) or average pooling; nearest 2× upsampling */
    void (*pool2)(backend *be, const float *x, int c, int h, int w, int max, float *y);
    void (*upsample2)(backend *be, const float *x, int c, int h, int w, float *y);
    /* conv_gather_ids: codebook rows / one-hot columns of ids (backend memory) */
    void (*gather_ids)(backend *be, const float *table, int64_t id_stride, int64_t c_stride,
                       const float *bias, const int32_t *ids, int64_t n, int channels, float *x);
    /* conv_map_pixels: the VAEs' input normalisation and output mapping */
    void (*pixel_map)(backend *be, const conv_map *m, const float *x, int64_t n, float *y);
    /* ops_gemm (VQGAN's attention block) */
    void (*gemm)(backend *be, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                 float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                 float beta, float *c, int64_t ldc);
    /* each of `rows` rows of n: x *= scale, then ops_softmax */
    void (*softmax_scaled)(backend *be, float *x, int64_t rows, int64_t n, float scale);
    /* conv_vq_scores: minus the squared distances to a codebook */
    void (*vq_scores)(backend *be, const float *z, int dim, int64_t n, const float *codebook,
                      const float *code_sq, int k, float *zz, float *scores);
    /* conv_argmax_channels: ids (backend memory) of the first maximum */
    void (*argmax_channels)(backend *be, const float *scores, int t, int64_t n, int32_t *ids);
    /* --- CLIP's operations (lib/clip_*.c; CPU: lib/clip_backend.c) ------------ */
    /* x[i] = x[i] * sigmoid(1.702 x[i]), i < n (ops_quick_gelu) */
    void (*quick_gelu)(backend *be, float *x, int64_t n);
    /* out[r] = table[ids[r]] for r < rows, rows of dim floats; ids is
     * backend memory, already checked (the token embedding) */
    void (*gather_rows)(backend *be, const float *table, const int32_t *ids, int64_t rows,
                        int64_t dim, float *out);
    /* A stride = kernel convolution's input as matrix rows: images
     * [n][3][size][size] -> out [n][grid²][3 patch²] (grid = size / patch),
     * patch (gy, gx) in row gy * grid + gx, its values in (channel, y, x)
     * order (channels_last 0: OpenAI's conv1.weight) or (y, x, channel)
     * (1: DALLE-pytorch's 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)') */
    void (*patches)(backend *be, const float *images, int n, int size, int patch,
                    int channels_last, float *out);
    /* Self-attention of whole sequences: qkv [batch * n][3 * heads *
     * dim_head] (q, k, v rows), each query (times `scale`) over the keys j
     * of its sequence with key_mask[b][j] != 0 (key_mask: backend memory
     * [batch][n], or NULL: all) and, causal, j <= i, into att [batch *
     * n][heads * dim_head]. Every query keeps at least one key. The CPU
     * scales q in qkv in place and uses w's host scratch (CW_K, CW_V,
     * CW_SCORES, CW_SPANS); a device leaves qkv as it is and ignores w. */
    void (*clip_attention)(backend *be, struct clip_work *w, float *qkv, int batch, int n,
                           int heads, int64_t dim_head, const uint8_t *key_mask, int causal,
                           float scale, float *att);
    /* out[b] = the mean (in double) of the rows i of x[b] ([batch][n][dim])
     * with mask[b][i] != 0 (mask: backend memory, or NULL: every row) */
    void (*mean_rows)(backend *be, const float *x, int batch, int n, int64_t dim,
                      const uint8_t *mask, float *out);
    /* each row v of x [rows][dim] = v / max(||v||, 1e-12) (F.normalize) */
    void (*l2_normalize)(backend *be, float *x, int64_t rows, int64_t dim);
    /* out[i * ld + j] = scale · <img[i], txt[j]> for i < n_img, j < n_txt
     * (rows of dim floats), in upstream's order: scale_first (OpenAI)
     * (scale · img) · txt, else (img · txt) · scale; the dot in double */
    void (*clip_scores)(backend *be, const float *img, int n_img, const float *txt, int n_txt,
                        int64_t dim, float scale, int scale_first, float *out, int64_t ld);
    /* --- end of CLIP's operations --------------------------------------------- */
} backend_ops;

struct backend {
    const backend_ops *op;
    void *impl;          /* what the operations run with: the CPU's thread pool
                          * (struct tpool *, NULL: the calling thread only), the
                          * CUDA backend's state (lib/cuda/backend_cuda_ops.c) */
    const char *name;    /* "cpu", "cuda" */
    int host_memory;     /* tensors are plain host memory: callers' buffers may be
                          * written directly, no download needed */
    int widen_scratch;   /* its linear takes the CPU's widening scratch for many-row
                          * products of reduced weights (ops_linear_w); 0: none needed */
    dalle_status failed; /* the first failure not yet reported */
    char message[DALLE_MESSAGE_CAP];
};

/* The CPU backend on `pool` (NULL: the calling thread). Cannot fail. */
void backend_cpu_init(backend *be, struct tpool *pool);

/* The CUDA backend on params->device with an arena of arena_bytes
 * (lib/cuda/backend_cuda_ops.c; without CUDA, lib/cuda/backend_none.c
 * answers DALLE_ERR_UNSUPPORTED). The log callback gets the device line. */
dalle_status backend_cuda_create(const dalle_ctx_params *params, size_t arena_bytes,
                                 backend **out);
void backend_cuda_free(backend *be);

/* Record a failure of an operation (the message is dalle_last_error()'s);
 * the first one is kept. */
void backend_note(backend *be, dalle_status s);

/* The end of a model's weight upload: `s` (the upload's own status), else
 * the wait for the queued copies; a failure says "MODEL: copying the
 * weights to the NAME backend: why". */
dalle_status backend_uploaded(backend *be, dalle_status s, const char *model);

/* The first recorded failure, raised again with its message (so that
 * dalle_last_error() says it), and forgotten; DALLE_OK when none. Does not
 * wait for queued work: download does. */
dalle_status backend_status(backend *be);

#endif
