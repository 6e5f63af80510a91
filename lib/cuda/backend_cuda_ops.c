/* The CUDA backend's operations table (lib/backend_ops.h) over
 * lib/cuda/ops_cuda.h: the transformer of lib/transformer.c on the GPU.
 *
 * Memory: one cuda_ops arena, sized by lib/context.c for the weights
 * (copied once by transformer_to_backend, float32) and the largest call's
 * states. Weights are allocated before `seal`; the states of a call after
 * it, and the arena goes back to the seal mark when the last of them is
 * freed, so nothing calls cudaMalloc after the context is made.
 *
 * A token step queues everything on the context's one stream; the only
 * copies are the chunk's ids going up (embed) and the sampled ids coming
 * back (download, which waits). Operations after a failure are skipped;
 * the failure is reported by the next download / backend_status.
 *
 * Plain C, compiled by the C compiler: only ops_cuda.h's functions touch
 * CUDA. */
#include <math.h>
#include <stdlib.h>

#include "../backend_ops.h"
#include "../error.h"
#include "../sampler.h"
#include "../transformer_internal.h"
#include "ops_cuda.h"

typedef struct cuda_backend {
    backend be;
    cuda_ops *c;
    size_t base; /* the arena's mark after the weights */
    int live;    /* allocations since then not yet freed */
} cuda_backend;

static cuda_backend *cb_of(backend *be) { return (cuda_backend *)be->impl; }
static cuda_ops *ctx_of(backend *be) { return cb_of(be)->c; }

/* Queue an operation unless an earlier one failed; remember a failure. */
#define RUN(be, call)                                                                          \
    do {                                                                                       \
        if ((be)->failed == DALLE_OK)                                                          \
            backend_note((be), (call));                                                        \
    } while (0)

/* ---- memory ------------------------------------------------------------- */

static dalle_status cu_alloc(backend *be, size_t bytes, void **ptr)
{
    *ptr = NULL;
    if (!bytes)
        return DALLE_OK;
    dalle_status s = cuda_ops_alloc(ctx_of(be), bytes, ptr);
    if (!s)
        cb_of(be)->live++;
    return s;
}

static void cu_free(backend *be, void *ptr)
{
    cuda_backend *cb = cb_of(be);
    if (!ptr || cb->live == 0)
        return;
    if (--cb->live == 0)
        cuda_ops_arena_reset(cb->c, cb->base);
}

static void cu_seal(backend *be)
{
    cuda_backend *cb = cb_of(be);
    cb->base = cuda_ops_arena_mark(cb->c);
    cb->live = 0;
}

static void cu_upload(backend *be, void *dst, const void *host, size_t bytes)
{
    RUN(be, cuda_ops_upload(ctx_of(be), dst, host, bytes));
}

static dalle_status cu_download(backend *be, void *host, const void *src, size_t bytes)
{
    dalle_status s = backend_status(be);
    if (s)
        return s;
    return cuda_ops_download(ctx_of(be), host, src, bytes);
}

static void cu_copy(backend *be, void *dst, const void *src, size_t bytes)
{
    RUN(be, cuda_ops_copy(ctx_of(be), dst, src, bytes));
}

/* ---- the operations of lib/ops.h ----------------------------------------- */

static void cu_linear(backend *be, const float *x, int64_t rows, int64_t in, const ops_weight *w,
                      const float *b, int64_t out, float *y, int64_t ldy, float *scratch,
                      int slots)
{
    (void)scratch; /* the GPU widens reduced weights in its kernel: no scratch */
    (void)slots;
    RUN(be, cuda_linear_w(ctx_of(be), x, rows, in, w, b, out, y, ldy));
}

static void cu_layer_norm(backend *be, const float *x, int64_t rows, int64_t dim,
                          const float *gain, const float *bias, float eps, float *y)
{
    RUN(be, cuda_layer_norm(ctx_of(be), x, rows, dim, gain, bias, eps, y));
}

static void cu_geglu(backend *be, const float *h, int64_t rows, int64_t inner, float *y)
{
    RUN(be, cuda_geglu(ctx_of(be), h, rows, inner, y));
}

static void cu_add_scaled(backend *be, float *x, const float *y, const float *scale, int64_t rows,
                          int64_t dim)
{
    RUN(be, cuda_add_scaled(ctx_of(be), x, y, scale, rows, dim));
}

/* (x + y) / 2 as x + y, then * 0.5: halving is exact, the same float */
static void cu_mean2(backend *be, float *x, const float *y, int64_t n)
{
    RUN(be, cuda_add_scaled(ctx_of(be), x, y, NULL, 1, n));
    RUN(be, cuda_scale_vectors(ctx_of(be), x, 1, n, 1, 0, n, 0.5f));
}

static void cu_divide_max(backend *be, float *x, int64_t rows, int64_t dim)
{
    RUN(be, cuda_divide_max(ctx_of(be), x, rows, dim));
}

static void cu_fill(backend *be, float *x, int64_t rows, int64_t ld, int64_t col0, int64_t n,
                    float value)
{
    RUN(be, cuda_fill(ctx_of(be), x, rows, ld, col0, n, value));
}

static void cu_guidance(backend *be, float *cond, const float *uncond, int64_t rows, int64_t ld,
                        int64_t n, float scale)
{
    RUN(be, cuda_guidance(ctx_of(be), cond, uncond, rows, ld, n, scale));
}

/* ---- the transformer's steps ---------------------------------------------- */

static void cu_embed(backend *be, const transformer *tf, tf_state *st, const int32_t *tokens,
                     int m, float *x)
{
    const tf_hparams *hp = &tf->hp;
    cuda_ops *c = ctx_of(be);
    /* the chunk's ids go up (4 bytes a token), the gather runs there */
    RUN(be, cuda_ops_upload(c, st->ids, tokens, (size_t)st->batch * m * sizeof *tokens));
    RUN(be, cuda_embed(c, x, st->ids, st->batch, m, hp->dim, st->pos, hp->text_len, hp->fmap,
                       &tf->text_emb, &tf->image_emb, !hp->rotary_emb, tf->text_pos_emb,
                       tf->axial_rows, tf->axial_cols, hp->stable));
}

static void cu_token_shift(backend *be, const transformer *tf, const tf_state *st, float *hist,
                           const float *h, int m, float *out)
{
    const tf_hparams *hp = &tf->hp;
    RUN(be, cuda_token_shift(ctx_of(be), hist, tf_shift_cols(hp), h, out, st->batch, m, hp->dim,
                             st->pos, hp->text_len, hp->fmap));
}

/* attention.c's attn_task as two launches for the whole chunk: rotary on
 * every q, k, v vector, q scaled, k and v appended to the layer's cache;
 * then every query of every sequence and head over its keys. */
static void cu_attention(backend *be, const transformer *tf, tf_state *st, int l, int m)
{
    const tf_hparams *hp = &tf->hp;
    cuda_ops *c = ctx_of(be);
    const int64_t dh = hp->dim_head, inner = hp->inner, P = hp->max_pos, rc = hp->rot_cols;
    const int64_t ld = 3 * inner;
    const int64_t layer = (int64_t)l * st->batch * hp->heads * P * dh;
    float *K = st->k + layer, *V = st->v + layer;
    const float scale = (float)pow((double)dh, -0.5);
    /* rotary, q scaled, k and v into the cache: one launch */
    RUN(be, cuda_attn_prep(c, st->qkv, st->batch, m, ld, hp->heads, dh, rc, tf->rot_cos,
                           tf->rot_sin, rc, st->pos, scale, K, V, P));
    /* every query of the chunk in one launch, its keys listed on the device */
    const attn_keys keys = attention_keys(hp, tf->layers[l].type);
    RUN(be, cuda_attend(c, st->qkv, ld, (int64_t)m * ld, K, V, P * dh, st->batch, hp->heads, dh,
                        &keys, st->pos, m, st->att, inner, (int64_t)m * inner));
}

/* ---- sampling ------------------------------------------------------------ */

static void cu_sample(backend *be, sampler *sm, const float *logits, int64_t ld, int rows, int n,
                      uint64_t stream0, uint64_t counter, int32_t *ids)
{
    RUN(be, cuda_sample_topk(ctx_of(be), logits, ld, rows, n, sm->k, sm->p->temperature,
                             sm->p->seed, stream0, counter, ids));
}

/* ---- the VAEs' image operations (lib/vae*.c through lib/backend_ops.h) ---- */

static void cu_conv2d(backend *be, const conv_geom *g, const float *x, int h, int w,
                      const float *wt, const float *bias, float *y, float *col, int64_t col_floats)
{
    RUN(be, cuda_conv2d(ctx_of(be), g, x, h, w, wt, bias, y, col, col_floats));
}

static void cu_conv_transpose2d(backend *be, const conv_geom *g, const float *x, int h, int w,
                                const float *wt, const float *bias, float *y, float *col,
                                int64_t col_floats)
{
    RUN(be, cuda_conv_transpose2d(ctx_of(be), g, x, h, w, wt, bias, y, col, col_floats));
}

static void cu_relu(backend *be, const float *x, float *y, int64_t n)
{
    RUN(be, cuda_relu(ctx_of(be), x, y, n));
}

static void cu_residual(backend *be, const float *x, float *y, float scale, int64_t n)
{
    RUN(be, cuda_residual(ctx_of(be), x, y, scale, n));
}

static void cu_group_norm(backend *be, const float *x, int c, int64_t hw, int groups, float eps,
                          const float *gain, const float *bias, int swish, float *y)
{
    RUN(be, cuda_group_norm(ctx_of(be), x, c, hw, groups, eps, gain, bias, swish, y));
}

static void cu_pool2(backend *be, const float *x, int c, int h, int w, int max, float *y)
{
    RUN(be, cuda_pool2(ctx_of(be), x, c, h, w, max, y));
}

static void cu_upsample2(backend *be, const float *x, int c, int h, int w, float *y)
{
    RUN(be, cuda_upsample2(ctx_of(be), x, c, h, w, y));
}

static void cu_gather_ids(backend *be, const float *table, int64_t id_stride, int64_t c_stride,
                          const float *bias, const int32_t *ids, int64_t n, int channels, float *x)
{
    RUN(be, cuda_gather_ids(ctx_of(be), table, id_stride, c_stride, bias, ids, n, channels, x));
}

static void cu_pixel_map(backend *be, const conv_map *m, const float *x, int64_t n, float *y)
{
    RUN(be, cuda_pixel_map(ctx_of(be), m, x, n, y));
}

static void cu_gemm(backend *be, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                    float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                    float beta, float *c, int64_t ldc)
{
    RUN(be, cuda_gemm(ctx_of(be), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc));
}

/* x *= scale over all rows at once (the CPU's product, rounded alike),
 * then the softmax of each row */
static void cu_softmax_scaled(backend *be, float *x, int64_t rows, int64_t n, float scale)
{
    RUN(be, cuda_scale_vectors(ctx_of(be), x, 1, rows * n, 1, 0, rows * n, scale));
    RUN(be, cuda_softmax(ctx_of(be), x, rows, n));
}

static void cu_vq_scores(backend *be, const float *z, int dim, int64_t n, const float *codebook,
                         const float *code_sq, int k, float *zz, float *scores)
{
    RUN(be, cuda_vq_scores(ctx_of(be), z, dim, n, codebook, code_sq, k, zz, scores));
}

static void cu_argmax_channels(backend *be, const float *scores, int t, int64_t n, int32_t *ids)
{
    RUN(be, cuda_argmax_channels(ctx_of(be), scores, t, n, ids));
}
/* --- CLIP's operations (lib/backend_ops.h) -------------------------------- */

static void cu_quick_gelu(backend *be, float *x, int64_t n)
{
    RUN(be, cuda_quick_gelu(ctx_of(be), x, n));
}

static void cu_gather_rows(backend *be, const float *table, const int32_t *ids, int64_t rows,
                           int64_t dim, float *out)
{
    RUN(be, cuda_gather_rows(ctx_of(be), table, ids, rows, dim, out));
}

static void cu_patches(backend *be, const float *images, int n, int size, int patch,
                       int channels_last, float *out)
{
    RUN(be, cuda_patches(ctx_of(be), images, n, size, patch, channels_last, out));
}

/* one launch for every query of every sequence and head; the CPU's host
 * scratch (w) is not needed here */
static void cu_clip_attention(backend *be, struct clip_work *w, float *qkv, int batch, int n,
                              int heads, int64_t dim_head, const uint8_t *key_mask, int causal,
                              float scale, float *att)
{
    (void)w;
    RUN(be, cuda_clip_attend(ctx_of(be), qkv, batch, n, heads, dim_head, key_mask, causal, scale,
                             att));
}

static void cu_mean_rows(backend *be, const float *x, int batch, int n, int64_t dim,
                         const uint8_t *mask, float *out)
{
    RUN(be, cuda_mean_rows(ctx_of(be), x, batch, n, dim, mask, out));
}

static void cu_l2_normalize(backend *be, float *x, int64_t rows, int64_t dim)
{
    RUN(be, cuda_l2_normalize(ctx_of(be), x, rows, dim));
}

static void cu_clip_scores(backend *be, const float *img, int n_img, const float *txt, int n_txt,
                           int64_t dim, float scale, int scale_first, float *out, int64_t ld)
{
    RUN(be, cuda_clip_scores(ctx_of(be), img, n_img, txt, n_txt, dim, scale, scale_first, out,
                             ld));
}

/* --- end of CLIP's operations --- */

static const backend_ops cuda_table = {
    .alloc = cu_alloc,
    .free = cu_free,
    .upload = cu_upload,
    .download = cu_download,
    .copy = cu_copy,
    .seal = cu_seal,
    .linear = cu_linear,
    .layer_norm = cu_layer_norm,
    .geglu = cu_geglu,
    .add_scaled = cu_add_scaled,
    .mean2 = cu_mean2,
    .divide_max = cu_divide_max,
    .fill = cu_fill,
    .guidance = cu_guidance,
    .embed = cu_embed,
    .token_shift = cu_token_shift,
    .attention = cu_attention,
    .sample = cu_sample,
    /* the VAEs' image operations */
    .conv2d = cu_conv2d,
    .conv_transpose2d = cu_conv_transpose2d,
    .relu = cu_relu,
    .residual = cu_residual,
    .group_norm = cu_group_norm,
    .pool2 = cu_pool2,
    .upsample2 = cu_upsample2,
    .gather_ids = cu_gather_ids,
    .pixel_map = cu_pixel_map,
    .gemm = cu_gemm,
    .softmax_scaled = cu_softmax_scaled,
    .vq_scores = cu_vq_scores,
    .argmax_channels = cu_argmax_channels,
    /* --- CLIP's operations --- */
    .quick_gelu = cu_quick_gelu,
    .gather_rows = cu_gather_rows,
    .patches = cu_patches,
    .clip_attention = cu_clip_attention,
    .mean_rows = cu_mean_rows,
    .l2_normalize = cu_l2_normalize,
    .clip_scores = cu_clip_scores,
    /* --- end of CLIP's operations --- */
};

dalle_status backend_cuda_create(const dalle_ctx_params *params, size_t arena_bytes,
                                 backend **out)
{
    *out = NULL;
    cuda_ops_params cp;
    cuda_ops_params_init(&cp);
    cp.device = params->device;
    cp.arena_bytes = arena_bytes;
    cuda_backend *cb = calloc(1, sizeof *cb);
    if (!cb)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "backend cuda: out of memory");
    dalle_status s = cuda_ops_create(&cp, &cb->c);
    if (s) {
        free(cb);
        return s;
    }
    cb->be.op = &cuda_table;
    cb->be.impl = cb;
    cb->be.name = "cuda";
    cb->be.host_memory = 0;
    dalle_log(DALLE_LOG_INFO, "backend cuda: device %d, %s; arena %zu MiB", params->device,
              cuda_ops_describe(cb->c), arena_bytes >> 20);
    *out = &cb->be;
    return DALLE_OK;
}

void backend_cuda_free(backend *be)
{
    if (!be)
        return;
    cuda_backend *cb = cb_of(be);
    cuda_ops_destroy(cb->c);
    free(cb);
}
