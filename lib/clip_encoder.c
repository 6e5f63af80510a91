/* The transformer encoder of both CLIP models, the CLIP workspace, and the
 * loading helpers both models use.
 *
 * DALLE-pytorch's CLIP builds its towers from DALLE-pytorch's Transformer
 * with causal=False, rotary off, token shift off (the defaults CLIP leaves
 * alone): per layer
 *     x += scale_a * to_out(attn(LN(x)))     attention sees every unmasked key
 *     x += scale_f * W2 GEGLU(W1 LN(x))
 * OpenAI's ResidualAttentionBlock is the same without LayerScale, with a
 * bias on the fused q/k/v projection (nn.MultiheadAttention's in_proj),
 * QuickGELU instead of GEGLU and, for the text tower, a causal mask. One
 * loop serves both. Unlike lib/transformer.c there is no KV cache and no
 * per-position state: a whole sequence goes through at once.
 *
 * Masked keys: upstream fills their scores with -FLT_MAX (DALLE-pytorch) or
 * adds -inf (OpenAI's causal mask); either way their softmax weight is
 * exactly 0 as long as one key is left, so ops_attend simply skips them.
 *
 * Every tensor operation goes through the backend table (w->be,
 * lib/backend_ops.h): the CPU's entries are the functions this file called
 * before (the same bits), CUDA's run the same model on the GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_ops.h"
#include "bundle.h"
#include "clip_model.h"
#include "error.h"

#define LN_EPS 1e-5f /* nn.LayerNorm's default, both upstreams */

/* ---- workspace ------------------------------------------------------------ */

dalle_status clip_work_reserve(clip_work *w, clip_slot s, size_t bytes)
{
    if (bytes <= w->cap[s])
        return DALLE_OK;
    /* free first: the old contents are not needed, and this keeps the peak
     * at one buffer */
    const int on_be = s < CW_BACKEND_SLOTS && w->be;
    if (on_be) {
        w->be->op->free(w->be, w->buf[s]);
        w->buf[s] = NULL;
        w->cap[s] = 0;
        dalle_status st = w->be->op->alloc(w->be, bytes, &w->buf[s]);
        if (st) {
            char why[DALLE_MESSAGE_CAP];
            snprintf(why, sizeof why, "%s", dalle_last_error());
            return dalle_fail(st, "CLIP workspace: %zu bytes on the %s backend: %s", bytes,
                              w->be->name, why);
        }
    } else {
        free(w->buf[s]);
        w->buf[s] = malloc(bytes);
        if (!w->buf[s]) {
            w->cap[s] = 0;
            return dalle_fail(DALLE_ERR_OUT_OF_MEMORY,
                              "CLIP workspace: out of memory (%zu bytes)", bytes);
        }
    }
    w->cap[s] = bytes;
    return DALLE_OK;
}

void clip_work_free(clip_work *w)
{
    for (int s = 0; s < CW_N; s++) {
        if (s < CW_BACKEND_SLOTS && w->be)
            w->be->op->free(w->be, w->buf[s]);
        else
            free(w->buf[s]);
        w->buf[s] = NULL;
        w->cap[s] = 0;
    }
}

/* ---- the encoder ------------------------------------------------------------ */

dalle_status clip_encoder_init(clip_encoder *e, int dim, int depth, int heads, int dim_head,
                               int ff_inner, int max_len, int causal, clip_act act)
{
    e->dim = dim;
    e->depth = depth;
    e->heads = heads;
    e->dim_head = dim_head;
    e->inner = heads * dim_head;
    e->ff_inner = ff_inner;
    e->max_len = max_len;
    e->causal = causal;
    e->act = act;
    e->layers = calloc((size_t)depth, sizeof *e->layers);
    if (!e->layers)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "CLIP encoder: out of memory");
    return DALLE_OK;
}

void clip_encoder_free(clip_encoder *e)
{
    free(e->layers);
    e->layers = NULL;
}

static void at_least(size_t bytes[CW_N], clip_slot s, size_t n)
{
    if (n > bytes[s])
        bytes[s] = n;
}

void clip_encoder_sizes(const clip_encoder *e, int batch, size_t bytes[CW_N])
{
    const size_t f = sizeof(float), rows = (size_t)batch * e->max_len;
    const size_t fc1 = e->act == CLIP_ACT_GEGLU ? 2 * (size_t)e->ff_inner : (size_t)e->ff_inner;
    at_least(bytes, CW_X, rows * e->dim * f);
    at_least(bytes, CW_H, rows * e->dim * f);
    at_least(bytes, CW_QKV, rows * 3 * e->inner * f);
    at_least(bytes, CW_ATT, rows * e->inner * f);
    at_least(bytes, CW_Y, rows * e->dim * f);
    at_least(bytes, CW_FF_H, rows * fc1 * f);
    at_least(bytes, CW_FF_A, rows * e->ff_inner * f);
    /* the CPU attention's host scratch (a device needs none; it is small) */
    at_least(bytes, CW_K, (size_t)e->max_len * e->dim_head * f);
    at_least(bytes, CW_V, (size_t)e->max_len * e->dim_head * f);
    at_least(bytes, CW_SCORES, (size_t)e->max_len * f);
    at_least(bytes, CW_SPANS, 2 * (size_t)e->max_len * sizeof(ops_span));
}

/* The runs of allowed keys of one sequence as spans. */
static int key_spans(const uint8_t *mask, int n, ops_span *sp)
{
    if (!mask) {
        sp[0] = (ops_span){0, n, 1};
        return 1;
    }
    int count = 0;
    for (int j = 0; j < n;) {
        if (!mask[j]) {
            j++;
            continue;
        }
        int start = j;
        while (j < n && mask[j])
            j++;
        sp[count++] = (ops_span){start, j - start, 1};
    }
    return count;
}

/* The keys up to and including position i (the causal mask). */
static int clip_to(const ops_span *sp, int n_sp, int64_t i, ops_span *out)
{
    int count = 0;
    for (int s = 0; s < n_sp && sp[s].start <= i; s++) {
        out[count] = sp[s];
        if (sp[s].start + sp[s].count > i + 1)
            out[count].count = i + 1 - sp[s].start;
        count++;
    }
    return count;
}

void clip_attention_cpu(clip_work *w, float *qkv, int batch, int n, int heads, int64_t dim_head,
                        const uint8_t *key_mask, int causal, float scale, float *att)
{
    const int64_t dh = dim_head, inner = heads * dim_head, stride = 3 * inner;
    float *K = CW_F(w, CW_K), *V = CW_F(w, CW_V), *scores = CW_F(w, CW_SCORES);
    ops_span *base = w->buf[CW_SPANS], *sp = base + n;
    for (int b = 0; b < batch; b++) {
        const int n_base = key_spans(key_mask ? key_mask + (int64_t)b * n : NULL, n, base);
        float *seq = qkv + (int64_t)b * n * stride;
        for (int h = 0; h < heads; h++) {
            /* gather this head's keys and values: ops_attend wants them
             * contiguous, one dim_head vector per position */
            for (int64_t p = 0; p < n; p++) {
                memcpy(K + p * dh, seq + p * stride + inner + h * dh, (size_t)dh * sizeof *K);
                memcpy(V + p * dh, seq + p * stride + 2 * inner + h * dh, (size_t)dh * sizeof *V);
            }
            for (int64_t i = 0; i < n; i++) {
                float *q = seq + i * stride + h * dh;
                for (int64_t d = 0; d < dh; d++)
                    q[d] *= scale;
                const ops_span *use = base;
                int n_sp = n_base;
                if (causal) {
                    n_sp = clip_to(base, n_base, i, sp);
                    use = sp;
                }
                ops_attend(q, K, V, dh, use, n_sp, scores,
                           att + ((int64_t)b * n + i) * inner + h * dh);
            }
        }
    }
}

/* CLIP's matrices are float32 (clip_weight, or the backend's float32 copies). */
static void linear(backend *be, const float *x, int64_t rows, int64_t in, const ops_weight *w,
                   const float *b, int64_t out, float *y)
{
    be->op->linear(be, x, rows, in, w, b, out, y, out, NULL, 0);
}

static void attention(const clip_encoder *e, const clip_layer *L, clip_work *w, int batch, int n,
                      const uint8_t *key_mask, const float *src, float *out)
{
    backend *be = w->be;
    const int64_t rows = (int64_t)batch * n;
    const float scale = (float)pow((double)e->dim_head, -0.5);
    float *qkv = CW_F(w, CW_QKV), *att = CW_F(w, CW_ATT);
    linear(be, src, rows, e->dim, &L->tf.to_qkv, L->qkv_b, 3LL * e->inner, qkv);
    be->op->clip_attention(be, w, qkv, batch, n, e->heads, e->dim_head, key_mask, e->causal,
                           scale, att);
    linear(be, att, rows, e->inner, &L->tf.to_out_w, L->tf.to_out_b, e->dim, out);
}

static void feed_forward(const clip_encoder *e, const clip_layer *L, clip_work *w, int64_t rows,
                         const float *src, float *out)
{
    backend *be = w->be;
    const int64_t ffi = e->ff_inner;
    float *a = CW_F(w, CW_FF_A);
    if (e->act == CLIP_ACT_GEGLU) {
        float *h = CW_F(w, CW_FF_H);
        linear(be, src, rows, e->dim, &L->tf.ff_w1, L->tf.ff_b1, 2 * ffi, h);
        be->op->geglu(be, h, rows, ffi, a);
    } else {
        linear(be, src, rows, e->dim, &L->tf.ff_w1, L->tf.ff_b1, ffi, a);
        be->op->quick_gelu(be, a, rows * ffi);
    }
    linear(be, a, rows, ffi, &L->tf.ff_w2, L->tf.ff_b2, e->dim, out);
}

/* x += scale * norm_out(y), as lib/transformer.c's residual */
static void residual(const clip_encoder *e, backend *be, int64_t rows, float *x, float *y,
                     const tf_norm *norm_out, const float *scale)
{
    if (norm_out->w)
        be->op->layer_norm(be, y, rows, e->dim, norm_out->w, norm_out->b, LN_EPS, y);
    be->op->add_scaled(be, x, y, scale, rows, e->dim);
}

void clip_encoder_forward(const clip_encoder *e, clip_work *w, int batch, int n,
                          const uint8_t *key_mask)
{
    backend *be = w->be;
    const int64_t rows = (int64_t)batch * n;
    float *x = CW_F(w, CW_X), *h = CW_F(w, CW_H), *y = CW_F(w, CW_Y);
    for (int l = 0; l < e->depth; l++) {
        const clip_layer *L = &e->layers[l];
        be->op->layer_norm(be, x, rows, e->dim, L->tf.attn_norm.w, L->tf.attn_norm.b, LN_EPS, h);
        attention(e, L, w, batch, n, key_mask, h, y);
        residual(e, be, rows, x, y, &L->tf.attn_norm_out, L->tf.attn_scale);

        be->op->layer_norm(be, x, rows, e->dim, L->tf.ff_norm.w, L->tf.ff_norm.b, LN_EPS, h);
        feed_forward(e, L, w, rows, h, y);
        residual(e, be, rows, x, y, &L->tf.ff_norm_out, L->tf.ff_scale);
    }
}

/* ---- what both models' loaders and callers share ---------------------------- */

dalle_status clip_hparam(const dalle_bundle *b, const char *key, int64_t def, int64_t lo,
                         int64_t hi, int *out)
{
    int64_t v;
    dalle_status s = dalle_bundle_meta_i64(b, key, &v);
    if (s == DALLE_ERR_NOT_FOUND && def >= 0)
        v = def;
    else if (s == DALLE_ERR_NOT_FOUND)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' missing", bundle_path(b), key);
    else if (s)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' is not an integer",
                          bundle_path(b), key);
    if (v < lo || v > hi)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' = %lld: expected %lld..%lld",
                          bundle_path(b), key, (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return DALLE_OK;
}

dalle_status clip_tensor(dalle_bundle *b, const char *name, int ndim, int64_t d0, int64_t d1,
                         int64_t d2, int64_t d3, const float **out)
{
    int64_t dims[4] = {d0, d1, d2, d3};
    return bundle_tensor_f32(b, name, ndim, dims, out);
}

dalle_status clip_weight(dalle_bundle *b, const char *name, int64_t out, int64_t in,
                         ops_weight *w)
{
    const float *p;
    int64_t dims[2] = {out, in};
    dalle_status s = bundle_tensor_f32(b, name, 2, dims, &p);
    if (!s)
        *w = ops_weight_f32(p);
    return s;
}

dalle_status clip_scale(dalle_bundle *b, const char *name, float *out)
{
    const float *t;
    dalle_status s = bundle_tensor_f32(b, name, 0, NULL, &t);
    if (s)
        return s;
    /* upstream: self.temperature.exp() / self.logit_scale.exp() in float32 */
    float v = expf(t[0]);
    if (!isfinite(v))
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: tensor '%s' = %g: exp() is not finite",
                          bundle_path(b), name, (double)t[0]);
    *out = v;
    return DALLE_OK;
}

void clip_model_sizes(const clip_model *m, int host_memory, int n_images, int n_texts,
                      size_t bytes[CW_N])
{
    const size_t f = sizeof(float);
    const size_t patches = (size_t)m->grid * m->grid, patch_dim = 3 * (size_t)m->patch * m->patch;
    const size_t most = (size_t)(n_images > n_texts ? n_images : n_texts);
    memset(bytes, 0, CW_N * sizeof *bytes);
    if (n_images > 0)
        clip_encoder_sizes(&m->vision, n_images, bytes);
    if (n_texts > 0)
        clip_encoder_sizes(&m->text, n_texts, bytes);
    bytes[CW_IN] = (size_t)n_images * patches * patch_dim * f;
    bytes[CW_POOL] = (size_t)n_images * m->vision.dim * f;
    at_least(bytes, CW_POOL, (size_t)n_texts * m->text.dim * f);
    bytes[CW_FEAT] = most * m->embed_dim * f;
    if (host_memory) /* the callers' buffers are used as they are */
        return;
    bytes[CW_IMG] = (size_t)n_images * 3 * m->image_size * m->image_size * f;
    bytes[CW_IDS] = (size_t)n_texts * m->text_len * sizeof(int32_t);
    bytes[CW_MASK] = (size_t)n_texts * m->text_len;
    bytes[CW_TXT] = (size_t)n_texts * m->embed_dim * f;
    bytes[CW_OUT] = (size_t)n_images * (size_t)(n_texts > 0 ? n_texts : 1) * f;
}

dalle_status clip_model_reserve(const clip_model *m, clip_work *w, int n_images, int n_texts)
{
    size_t bytes[CW_N];
    clip_model_sizes(m, w->be->host_memory, n_images, n_texts, bytes);
    for (int s = 0; s < CW_N; s++) {
        if (s == CW_FEAT_A || s == CW_SORT || s == CW_PRE_K || s == CW_PRE_T)
            continue; /* the calls' own host slots */
        dalle_status st = clip_work_reserve(w, (clip_slot)s, bytes[s]);
        if (st)
            return st;
    }
    return DALLE_OK;
}

void clip_model_free(clip_model *m)
{
    clip_encoder_free(&m->text);
    clip_encoder_free(&m->vision);
    if (!m->on_device) { /* else the backend's memory, given back with it */
        free(m->proj_t);
        free(m->text_proj_t);
    }
    m->proj_t = m->text_proj_t = NULL;
}
