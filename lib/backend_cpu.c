/* The CPU backend's operations table (lib/backend_ops.h): the functions the
 * model called directly before the table existed, with the context's
 * thread pool (be->impl). The same calls in the same order, so every result
 * is the same bits as before, for any thread count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend_ops.h"
#include "clip_model.h" /* CLIP's operations (lib/clip_backend.c) */
#include "error.h"
#include "sampler.h"
#include "transformer_internal.h"

static struct tpool *pool_of(const backend *be) { return (struct tpool *)be->impl; }

/* A state's buffers (the KV cache, the workspace) of at least CPU_MAP_MIN
 * bytes are mapped from the kernel directly and unmapped when freed, not
 * taken from malloc: malloc keeps freed blocks below its (self-raising)
 * mmap threshold resident in its heap, so a prefix's workspace, given back
 * after the prefix (tf_state_set_chunk), stayed in the process beside the
 * KV cache that filled up after it. Mapped pages also count only once
 * touched (the KV cache of positions not reached yet). Each block starts
 * with a header of CPU_HDR bytes: the mapping's length, 0 for malloc's. */
#define CPU_MAP_MIN ((size_t)1 << 16)
#define CPU_HDR ((size_t)64)

static dalle_status cpu_alloc(backend *be, size_t bytes, void **ptr)
{
    (void)be;
    *ptr = NULL;
    if (!bytes)
        return DALLE_OK;
    if (bytes > SIZE_MAX - CPU_HDR)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "out of memory (%zu bytes)", bytes);
    const size_t total = bytes + CPU_HDR;
    char *base = NULL;
    size_t mapped = 0;
#ifdef MAP_ANONYMOUS
    if (bytes >= CPU_MAP_MIN) {
        void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED) {
            base = m;
            mapped = total;
        }
    }
#endif
    if (!base && !(base = malloc(total)))
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "out of memory (%zu bytes)", bytes);
    memcpy(base, &mapped, sizeof mapped);
    *ptr = base + CPU_HDR;
    return DALLE_OK;
}

static void cpu_free(backend *be, void *ptr)
{
    (void)be;
    if (!ptr)
        return;
    char *base = (char *)ptr - CPU_HDR;
    size_t mapped;
    memcpy(&mapped, base, sizeof mapped);
#ifdef MAP_ANONYMOUS
    if (mapped) {
        munmap(base, mapped);
        return;
    }
#endif
    free(base);
}

static void cpu_copy(backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes)
        memcpy(dst, src, bytes);
}

static void cpu_seal(backend *be) { (void)be; }

static dalle_status cpu_download(backend *be, void *host, const void *src, size_t bytes)
{
    if (host != src)
        cpu_copy(be, host, src, bytes);
    return DALLE_OK;
}

static void cpu_linear(backend *be, const float *x, int64_t rows, int64_t in, const ops_weight *w,
                       const float *b, int64_t out, float *y, int64_t ldy, float *scratch,
                       int slots)
{
    ops_linear_w(pool_of(be), x, rows, in, w, b, out, y, ldy, scratch, slots);
}

static void cpu_layer_norm(backend *be, const float *x, int64_t rows, int64_t dim,
                           const float *gain, const float *bias, float eps, float *y)
{
    (void)be;
    ops_layer_norm(x, rows, dim, gain, bias, eps, y);
}

static void cpu_geglu(backend *be, const float *h, int64_t rows, int64_t inner, float *y)
{
    ops_geglu_pool(pool_of(be), h, rows, inner, y);
}

static void cpu_add_scaled(backend *be, float *x, const float *y, const float *scale,
                           int64_t rows, int64_t dim)
{
    (void)be;
    ops_add_scaled(x, y, scale, rows, dim);
}

static void cpu_mean2(backend *be, float *x, const float *y, int64_t n)
{
    (void)be;
    for (int64_t i = 0; i < n; i++)
        x[i] = (x[i] + y[i]) / 2.0f;
}

static void cpu_divide_max(backend *be, float *x, int64_t rows, int64_t dim)
{
    (void)be;
    ops_divide_max(x, rows, dim);
}

static void cpu_fill(backend *be, float *x, int64_t rows, int64_t ld, int64_t col0, int64_t n,
                     float value)
{
    (void)be;
    for (int64_t r = 0; r < rows; r++) {
        float *o = x + r * ld + col0;
        for (int64_t j = 0; j < n; j++)
            o[j] = value;
    }
}

static void cpu_guidance(backend *be, float *cond, const float *uncond, int64_t rows, int64_t ld,
                         int64_t n, float scale)
{
    (void)be;
    for (int64_t r = 0; r < rows; r++) {
        float *c = cond + r * ld;
        const float *u = uncond + r * ld;
        for (int64_t i = 0; i < n; i++)
            c[i] = u[i] + (c[i] - u[i]) * scale;
    }
}

/* text_emb / image_emb rows (+ learned text positions and the axial image
 * embedding when rotary is off); `stable` rounding */
static void cpu_embed(backend *be, const transformer *tf, tf_state *st, const int32_t *tokens,
                      int m, float *x)
{
    (void)be;
    const tf_hparams *hp = &tf->hp;
    const int64_t d = hp->dim;
    for (int b = 0; b < st->batch; b++)
        for (int i = 0; i < m; i++) {
            int p = st->pos + i;
            int32_t id = tokens[(int64_t)b * m + i];
            float *xr = x + ((int64_t)b * m + i) * d;
            if (p < hp->text_len) {
                ops_weight_row(&tf->text_emb, d, id, xr);
                if (!hp->rotary_emb)
                    for (int64_t j = 0; j < d; j++)
                        xr[j] += tf->text_pos_emb[p * d + j];
            } else {
                ops_weight_row(&tf->image_emb, d, id, xr);
                if (!hp->rotary_emb) {
                    /* AxialPositionalEmbedding, summed: row part + column part */
                    int img = p - hp->text_len;
                    const float *ar = tf->axial_rows + (int64_t)(img / hp->fmap) * d;
                    const float *ac = tf->axial_cols + (int64_t)(img % hp->fmap) * d;
                    for (int64_t j = 0; j < d; j++)
                        xr[j] += ar[j] + ac[j];
                }
            }
            if (hp->stable)
                /* tokens * 0.1 + tokens.detach() * 0.9: the value only
                 * changes by rounding, reproduced here */
                for (int64_t j = 0; j < d; j++)
                    xr[j] = xr[j] * 0.1f + xr[j] * 0.9f;
        }
}

static void cpu_token_shift(backend *be, const transformer *tf, const tf_state *st, float *hist,
                            const float *h, int m, float *out)
{
    (void)be;
    token_shift(tf, st, hist, h, m, out);
}

static void cpu_attention(backend *be, const transformer *tf, tf_state *st, int l, int m)
{
    attention_chunk_cpu(pool_of(be), tf, st, l, m);
}

static void cpu_sample(backend *be, sampler *sm, const float *logits, int64_t ld, int rows, int n,
                       uint64_t stream0, uint64_t counter, int32_t *ids)
{
    sampler_pick_rows(sm, pool_of(be), logits, ld, rows, n, stream0, counter, ids);
}

/* --- the VAEs' image operations: lib/conv.c, as lib/vae.c called them ---- */

static void cpu_conv2d(backend *be, const conv_geom *g, const float *x, int h, int w,
                       const float *wt, const float *bias, float *y, float *col,
                       int64_t col_floats)
{
    conv2d(g, x, h, w, wt, bias, y, col, col_floats, pool_of(be));
}

static void cpu_conv_transpose2d(backend *be, const conv_geom *g, const float *x, int h, int w,
                                 const float *wt, const float *bias, float *y, float *col,
                                 int64_t col_floats)
{
    conv_transpose2d(g->cin, g->cout, g->k, g->stride, g->pad_top, x, h, w, wt, bias, y, col,
                     col_floats, pool_of(be));
}

static void cpu_relu(backend *be, const float *x, float *y, int64_t n)
{
    (void)be;
    conv_relu(x, y, n);
}

static void cpu_residual(backend *be, const float *x, float *y, float scale, int64_t n)
{
    (void)be;
    conv_residual(x, y, scale, n);
}

static void cpu_group_norm(backend *be, const float *x, int c, int64_t hw, int groups, float eps,
                           const float *gain, const float *bias, int swish, float *y)
{
    conv_group_norm(x, c, hw, groups, eps, gain, bias, swish, y, pool_of(be));
}

static void cpu_pool2(backend *be, const float *x, int c, int h, int w, int max, float *y)
{
    (void)be;
    if (max)
        conv_max_pool2(x, c, h, w, y);
    else
        conv_avg_pool2(x, c, h, w, y);
}

static void cpu_upsample2(backend *be, const float *x, int c, int h, int w, float *y)
{
    (void)be;
    conv_upsample2(x, c, h, w, y);
}

static void cpu_gather_ids(backend *be, const float *table, int64_t id_stride, int64_t c_stride,
                           const float *bias, const int32_t *ids, int64_t n, int channels,
                           float *x)
{
    (void)be;
    conv_gather_ids(table, id_stride, c_stride, bias, ids, n, channels, x);
}

static void cpu_pixel_map(backend *be, const conv_map *m, const float *x, int64_t n, float *y)
{
    (void)be;
    conv_map_pixels(m, x, n, y);
}

static void cpu_gemm(backend *be, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                     float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                     float beta, float *c, int64_t ldc)
{
    ops_gemm(pool_of(be), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void cpu_softmax_scaled(backend *be, float *x, int64_t rows, int64_t n, float scale)
{
    (void)be;
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * n;
        for (int64_t j = 0; j < n; j++)
            xr[j] *= scale;
        ops_softmax(xr, n);
    }
}

static void cpu_vq_scores(backend *be, const float *z, int dim, int64_t n, const float *codebook,
                          const float *code_sq, int k, float *zz, float *scores)
{
    conv_vq_scores(pool_of(be), z, dim, n, codebook, code_sq, k, zz, scores);
}

static void cpu_argmax_channels(backend *be, const float *scores, int t, int64_t n, int32_t *ids)
{
    (void)be;
    conv_argmax_channels(scores, t, n, ids);
}

static const backend_ops cpu_ops = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_download,
    .copy = cpu_copy,
    .seal = cpu_seal,
    .linear = cpu_linear,
    .layer_norm = cpu_layer_norm,
    .geglu = cpu_geglu,
    .add_scaled = cpu_add_scaled,
    .mean2 = cpu_mean2,
    .divide_max = cpu_divide_max,
    .fill = cpu_fill,
    .guidance = cpu_guidance,
    .embed = cpu_embed,
    .token_shift = cpu_token_shift,
    .attention = cpu_attention,
    .sample = cpu_sample,
    /* the VAEs' image operations */
    .conv2d = cpu_conv2d,
    .conv_transpose2d = cpu_conv_transpose2d,
    .relu = cpu_relu,
    .residual = cpu_residual,
    .group_norm = cpu_group_norm,
    .pool2 = cpu_pool2,
    .upsample2 = cpu_upsample2,
    .gather_ids = cpu_gather_ids,
    .pixel_map = cpu_pixel_map,
    .gemm = cpu_gemm,
    .softmax_scaled = cpu_softmax_scaled,
    .vq_scores = cpu_vq_scores,
    .argmax_channels = cpu_argmax_channels,
    /* --- CLIP's operations (lib/clip_backend.c) --- */
    .quick_gelu = clip_cpu_quick_gelu,
    .gather_rows = clip_cpu_gather_rows,
    .patches = clip_cpu_patches,
    .clip_attention = clip_cpu_attention,
    .mean_rows = clip_cpu_mean_rows,
    .l2_normalize = clip_cpu_l2_normalize,
    .clip_scores = clip_cpu_scores,
    /* --- end of CLIP's operations --- */
};

void backend_cpu_init(backend *be, struct tpool *pool)
{
    memset(be, 0, sizeof *be);
    be->op = &cpu_ops;
    be->impl = pool;
    be->name = "cpu";
    be->host_memory = 1;
    be->widen_scratch = 1;
}
