/* Moving a loaded transformer onto a backend with its own memory (CUDA):
 * every weight, norm, bias and table is copied once into the backend's
 * memory and the model's pointers are replaced by the copies, so the same
 * model code (transformer.c, attention.c) runs there. The bundle keeps the
 * host originals.
 *
 * Matrices keep their dtype: float32, f16, bf16 and int8 (+ its float32
 * scales) are copied as stored, and the backend's products widen them as
 * the CPU's ops_linear_w does (a 16-bit bundle takes half the device memory
 * of a float32 one, an int8 one about 28%, and a token reads that much).
 *
 * A tensor used twice (shared layers, to_logits rows as the embeddings) is
 * copied once: a pointer that lies inside an already copied host range of
 * the same dtype maps to the same offset in its copy. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "transformer_internal.h"

typedef struct copied {
    const char *host; /* the host tensor's first byte */
    size_t bytes;     /* its bytes as stored */
    int dtype;        /* OPS_W_* as stored */
    char *dev;        /* its copy, as stored */
} copied;

typedef struct uploader {
    backend *be;
    copied *list;
    int n, cap;
    dalle_status s;
} uploader;

static size_t dtype_bytes(int dtype)
{
    switch (dtype) {
    case OPS_W_F16:
    case OPS_W_BF16: return 2;
    case OPS_W_I8: return 1;
    default: return 4;
    }
}

/* The copy of n elements at host of `dtype` when already made, else NULL. */
static void *find_copy(const uploader *u, const void *host, int64_t n, int dtype)
{
    const char *p = host;
    const size_t es = dtype_bytes(dtype);
    for (int i = 0; i < u->n; i++) {
        const copied *c = &u->list[i];
        if (c->dtype == dtype && p >= c->host && p + (size_t)n * es <= c->host + c->bytes)
            return c->dev + (p - c->host);
    }
    return NULL;
}

static void *new_copy(uploader *u, const void *host, int64_t n, int dtype)
{
    if (u->n == u->cap) {
        int cap = u->cap ? 2 * u->cap : 64;
        copied *l = realloc(u->list, (size_t)cap * sizeof *l);
        if (!l) {
            u->s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "transformer upload: out of memory");
            return NULL;
        }
        u->list = l;
        u->cap = cap;
    }
    void *dev = NULL;
    if ((u->s = u->be->op->alloc(u->be, (size_t)n * dtype_bytes(dtype), &dev)))
        return NULL;
    u->list[u->n++] = (copied){host, (size_t)n * dtype_bytes(dtype), dtype, dev};
    return dev;
}

/* A float32 vector (norm, bias, scale, table) of n floats; NULL stays NULL. */
static void up_floats(uploader *u, const float **p, int64_t n)
{
    if (u->s || !*p || n <= 0)
        return;
    float *dev = find_copy(u, *p, n, OPS_W_F32);
    if (!dev) {
        if (!(dev = new_copy(u, *p, n, OPS_W_F32)))
            return;
        u->be->op->upload(u->be, dev, *p, (size_t)n * sizeof(float));
    }
    *p = dev;
}

/* A matrix [out][in] as stored; int8's scales [out][blocks] beside it. */
static void up_weight(uploader *u, ops_weight *w, int64_t out, int64_t in)
{
    if (u->s)
        return;
    void *dev = find_copy(u, w->data, out * in, w->dtype);
    if (!dev) {
        if (!(dev = new_copy(u, w->data, out * in, w->dtype)))
            return;
        u->be->op->upload(u->be, dev, w->data, (size_t)(out * in) * dtype_bytes(w->dtype));
    }
    const float *scales = w->scales;
    if (w->dtype == OPS_W_I8)
        up_floats(u, &scales, out * ops_weight_blocks(in, w->block));
    ops_weight kept = {w->dtype, dev, w->dtype == OPS_W_I8 ? scales : NULL, w->block};
    *w = kept;
}

static void up_norm(uploader *u, tf_norm *n, int64_t d)
{
    up_floats(u, &n->w, d);
    up_floats(u, &n->b, d);
}

/* Bytes of an [out][in] matrix on the backend (up_weight's copy). */
static size_t weight_bytes(const ops_weight *w, size_t out, size_t in)
{
    size_t bytes = out * in * dtype_bytes(w->dtype);
    if (w->dtype == OPS_W_I8)
        bytes += out * (size_t)ops_weight_blocks((int64_t)in, w->block) * sizeof(float) + 512;
    return bytes;
}

size_t transformer_backend_bytes(const transformer *tf)
{
    const tf_hparams *hp = &tf->hp;
    const size_t f = sizeof(float), pad = 512;
    const size_t d = (size_t)hp->dim, inner = (size_t)hp->inner, ffi = (size_t)hp->ff_inner;
    size_t total = 0;
    for (int l = 0; l < hp->depth; l++) {
        const tf_layer *L = &tf->layers[l];
        total += weight_bytes(&L->to_qkv, 3 * inner, d) + weight_bytes(&L->to_out_w, d, inner) +
                 weight_bytes(&L->ff_w1, 2 * ffi, d) + weight_bytes(&L->ff_w2, d, ffi) +
                 (2 * d + 4 * d + 4 * d + d + 2 * ffi + d) * f + 16 * pad; /* + vectors */
    }
    total += weight_bytes(&tf->logits_w, (size_t)hp->total_tokens, d) +      /* to_logits */
             ((size_t)hp->total_tokens + 2 * d) * f + 4 * pad;
    total += weight_bytes(&tf->text_emb, (size_t)hp->text_vocab, d) +
             weight_bytes(&tf->image_emb, (size_t)hp->num_image_tokens, d) + 2 * pad;
    total += ((size_t)hp->text_len + 2 * hp->fmap) * d * f + 3 * pad;        /* positions */
    total += 2 * ((size_t)hp->max_pos + 1) * hp->rot_cols * f + 2 * pad;     /* rotary */
    return total;
}

dalle_status transformer_to_backend(transformer *tf, backend *be)
{
    const tf_hparams *hp = &tf->hp;
    const int64_t d = hp->dim, inner = hp->inner, ffi = hp->ff_inner;
    if (be->host_memory) {
        tf->be = be;
        return DALLE_OK;
    }
    uploader u = {.be = be};
    /* to_logits first: with share_io the embeddings are its rows */
    up_norm(&u, &tf->logits_norm, d);
    up_weight(&u, &tf->logits_w, hp->total_tokens, d);
    up_floats(&u, &tf->logits_b, hp->total_tokens);
    up_weight(&u, &tf->text_emb, hp->text_vocab, d);
    up_weight(&u, &tf->image_emb, hp->num_image_tokens, d);
    up_floats(&u, &tf->text_pos_emb, (int64_t)hp->text_len * d);
    up_floats(&u, &tf->axial_rows, (int64_t)hp->fmap * d);
    up_floats(&u, &tf->axial_cols, (int64_t)hp->fmap * d);
    for (int l = 0; l < hp->depth; l++) {
        tf_layer *L = &tf->layers[l];
        up_floats(&u, &L->attn_scale, d);
        up_norm(&u, &L->attn_norm, d);
        up_norm(&u, &L->attn_norm_out, d);
        up_weight(&u, &L->to_qkv, 3 * inner, d);
        up_weight(&u, &L->to_out_w, d, inner);
        up_floats(&u, &L->to_out_b, d);
        up_floats(&u, &L->ff_scale, d);
        up_norm(&u, &L->ff_norm, d);
        up_norm(&u, &L->ff_norm_out, d);
        up_weight(&u, &L->ff_w1, 2 * ffi, d);
        up_floats(&u, &L->ff_b1, 2 * ffi);
        up_weight(&u, &L->ff_w2, d, ffi);
        up_floats(&u, &L->ff_b2, d);
    }
    const float *cs = tf->rot_cos, *sn = tf->rot_sin;
    const int64_t rot = (int64_t)(hp->max_pos + 1) * hp->rot_cols;
    up_floats(&u, &cs, rot);
    up_floats(&u, &sn, rot);
    free(u.list);
    dalle_status s = backend_uploaded(be, u.s, "transformer");
    if (s)
        return s;
    /* the host tables are ours: the device copies replace them */
    free(tf->rot_cos);
    free(tf->rot_sin);
    tf->rot_cos = (float *)cs;
    tf->rot_sin = (float *)sn;
    be->op->seal(be); /* the weights stay; states come and go */
    /* every matrix keeps its dtype: states need the CPU's widening scratch
     * (tf->lowp, set by the loader) only if the backend's linear takes one
     * (the GPU widens in its kernel) */
    tf->lowp = tf->lowp && be->widen_scratch;
    tf->on_device = 1;
    tf->be = be;
    return DALLE_OK;
}
