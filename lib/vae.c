/* The VAE: loading by kind, the workspace, the per-image runner and the
 * batch loops behind dalle_decode / dalle_encode. The networks themselves
 * are in vae_dvae.c, vae_openai.c and vae_vqgan.c. */
#include "vae.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define VAE_WS_MMAP 1
#else
#define VAE_WS_MMAP 0
#endif

#include "bundle.h"
#include "error.h"
#include "ops.h"

/* im2col tiles stay under this many floats (16 MiB): large enough for every
 * GEMM to run at full speed, small enough to stay in the last-level cache's
 * neighbourhood and never to dominate the workspace. */
#define VAE_COL_CAP ((int64_t)4 << 20)

struct vae {
    const vae_family *fam;
    void *net;
    int image_size, grid, num_tokens;
    vae_run run;   /* the workspace: sized at load, mapped by each call */
    void *ws;      /* that mapping while a call runs, else NULL */
    size_t ws_bytes;
};

/* ---- weights --------------------------------------------------------------- */

dalle_status vae_load_conv(dalle_bundle *b, const char *wname, const char *bname, int cin,
                           int cout, int k, int stride, int pad, int transposed, vae_conv *out)
{
    int64_t wd[4] = {transposed ? cin : cout, transposed ? cout : cin, k, k};
    int64_t bd[1] = {cout};
    dalle_status s;
    if ((s = bundle_tensor_f32(b, wname, 4, wd, &out->w)) ||
        (s = bundle_tensor_f32(b, bname, 1, bd, &out->b)))
        return s;
    out->g = conv_geom_make(cin, cout, k, stride, pad);
    return DALLE_OK;
}

dalle_status vae_load_norm(dalle_bundle *b, const char *prefix, int c, vae_norm *out)
{
    char name[256];
    int64_t d[1] = {c};
    dalle_status s;
    snprintf(name, sizeof name, "%s.weight", prefix);
    if ((s = bundle_tensor_f32(b, name, 1, d, &out->gain)))
        return s;
    snprintf(name, sizeof name, "%s.bias", prefix);
    if ((s = bundle_tensor_f32(b, name, 1, d, &out->bias)))
        return s;
    out->c = c;
    return DALLE_OK;
}

dalle_status vae_meta_int(const dalle_bundle *b, const char *key, int64_t def, int64_t lo,
                          int64_t hi, int *out)
{
    int64_t v;
    dalle_status s = dalle_bundle_meta_i64(b, key, &v);
    if (s == DALLE_ERR_NOT_FOUND) {
        if (def < lo || def > hi)
            return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' missing", bundle_path(b),
                              key);
        v = def;
    } else if (s) {
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' is not an integer",
                          bundle_path(b), key);
    }
    if (v < lo || v > hi)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' = %lld: expected %lld..%lld",
                          bundle_path(b), key, (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return DALLE_OK;
}

/* ---- the runner -------------------------------------------------------------- */

static void need(int64_t *slot, int64_t v)
{
    if (v > *slot)
        *slot = v;
}

vae_act vae_new(vae_run *r, int slot, int c, int h, int w)
{
    vae_act a = {NULL, slot, c, h, w};
    if (r->measure) {
        need(&r->need_act[slot], (int64_t)c * h * w);
        if (slot + 1 > r->need_slots)
            r->need_slots = slot + 1;
    } else
        a.d = r->slot[slot];
    return a;
}

float *vae_aux(vae_run *r, int64_t floats)
{
    if (r->measure) {
        need(&r->need_aux, floats);
        return NULL;
    }
    return r->aux;
}

vae_act vae_conv_run(vae_run *r, const vae_conv *cv, vae_act x, int slot)
{
    const conv_geom *g = &cv->g;
    int ho = conv_out_size(x.h, g->k, g->stride, g->pad_top, g->pad_bottom);
    int wo = conv_out_size(x.w, g->k, g->stride, g->pad_left, g->pad_right);
    vae_act y = vae_new(r, slot, g->cout, ho, wo);
    if (r->measure)
        need(&r->need_col, conv2d_col_need(g, x.h, x.w, VAE_COL_CAP));
    else
        conv2d(g, x.d, x.h, x.w, cv->w, cv->b, y.d, r->col, r->col_cap, r->pool);
    return y;
}

vae_act vae_deconv_run(vae_run *r, const vae_conv *cv, vae_act x, int slot)
{
    const conv_geom *g = &cv->g;
    int ho = (x.h - 1) * g->stride - 2 * g->pad_top + g->k;
    int wo = (x.w - 1) * g->stride - 2 * g->pad_left + g->k;
    vae_act y = vae_new(r, slot, g->cout, ho, wo);
    if (r->measure)
        need(&r->need_col, conv_transpose2d_col_need(g->cout, g->k, x.h, x.w, VAE_COL_CAP));
    else
        conv_transpose2d(g->cin, g->cout, g->k, g->stride, g->pad_top, x.d, x.h, x.w, cv->w,
                         cv->b, y.d, r->col, r->col_cap, r->pool);
    return y;
}

vae_act vae_relu_run(vae_run *r, vae_act x, int slot)
{
    vae_act y = vae_new(r, slot, x.c, x.h, x.w);
    if (!r->measure)
        conv_relu(x.d, y.d, (int64_t)x.c * x.h * x.w);
    return y;
}

vae_act vae_norm_run(vae_run *r, const vae_norm *n, vae_act x, int swish, int slot)
{
    vae_act y = vae_new(r, slot, x.c, x.h, x.w);
    if (!r->measure)
        /* taming's Normalize: GroupNorm(num_groups=32, eps=1e-6) */
        conv_group_norm(x.d, x.c, (int64_t)x.h * x.w, 32, 1e-6f, n->gain, n->bias, swish, y.d,
                        r->pool);
    return y;
}

vae_act vae_pool_run(vae_run *r, vae_act x, int max, int slot)
{
    vae_act y = vae_new(r, slot, x.c, x.h / 2, x.w / 2);
    if (!r->measure) {
        if (max)
            conv_max_pool2(x.d, x.c, x.h, x.w, y.d);
        else
            conv_avg_pool2(x.d, x.c, x.h, x.w, y.d);
    }
    return y;
}

vae_act vae_upsample_run(vae_run *r, vae_act x, int slot)
{
    vae_act y = vae_new(r, slot, x.c, 2 * x.h, 2 * x.w);
    if (!r->measure)
        conv_upsample2(x.d, x.c, x.h, x.w, y.d);
    return y;
}

void vae_residual_run(vae_run *r, vae_act x, vae_act y, float scale)
{
    if (!r->measure)
        conv_residual(x.d, y.d, scale, (int64_t)x.c * x.h * x.w);
}

/* ---- loading --------------------------------------------------------------- */

static const char *vae_kind(const dalle_bundle *b)
{
    const char *kind = dalle_bundle_kind(b);
    if (strcmp(kind, "dalle") != 0)
        return kind;
    const char *inner = NULL;
    return dalle_bundle_meta_str(b, "vae.kind", &inner) == DALLE_OK ? inner : NULL;
}

/* Run both networks once in measuring mode: the workspace sizes. */
static dalle_status measure(struct vae *v)
{
    vae_run *r = &v->run;
    r->measure = 1;
    vae_act out = v->fam->decode_net(v->net, r, NULL, v->grid);
    if (out.c != v->fam->raw_channels || out.h != v->image_size || out.w != v->image_size)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s decoder: %d tokens per side give [%d][%d][%d], not [%d][%d][%d]",
                          v->fam->name, v->grid, out.c, out.h, out.w, v->fam->raw_channels,
                          v->image_size, v->image_size);
    out = v->fam->encode_net(v->net, r, NULL, v->image_size);
    if (out.c != v->num_tokens || out.h != v->grid || out.w != v->grid)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s encoder: %d px images give [%d][%d][%d] scores, not [%d][%d][%d]",
                          v->fam->name, v->image_size, out.c, out.h, out.w, v->num_tokens,
                          v->grid, v->grid);
    r->measure = 0;
    return DALLE_OK;
}

dalle_status vae_load(dalle_bundle *b, const model_shapes *shapes, struct vae **out)
{
    const char *kind = vae_kind(b);
    dalle_status (*load)(dalle_bundle *, const model_shapes *, void **, const vae_family **);
    if (!kind)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata 'vae.kind' missing", bundle_path(b));
    if (!strcmp(kind, "dvae"))
        load = vae_dvae_load;
    else if (!strcmp(kind, "openai_dvae"))
        load = vae_openai_load;
    else if (!strcmp(kind, "vqgan"))
        load = vae_vqgan_load;
    else
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: VAE kind '%s': expected 'dvae', 'openai_dvae' or 'vqgan'",
                          bundle_path(b), kind);
    struct vae *v = calloc(1, sizeof *v);
    if (!v)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory loading the VAE",
                          bundle_path(b));
    v->image_size = shapes->image_size;
    v->grid = shapes->image_fmap_size;
    v->num_tokens = shapes->num_image_tokens;
    dalle_status s = load(b, shapes, &v->net, &v->fam);
    if (!s && (s = measure(v)) != DALLE_OK) {
        char msg[DALLE_MESSAGE_CAP];
        snprintf(msg, sizeof msg, "%s", dalle_last_error());
        s = dalle_fail(s, "%s: %s", bundle_path(b), msg);
    }
    if (s) {
        vae_free(v);
        return s;
    }
    *out = v;
    return DALLE_OK;
}

static void end(struct vae *v);

void vae_free(struct vae *v)
{
    if (!v)
        return;
    if (v->fam && v->net)
        v->fam->free_net(v->net);
    end(v);
    free(v);
}

int vae_raw_channels(const struct vae *v) { return v->fam->raw_channels; }

/* ---- workspace and batch loops ----------------------------------------------- */

/* The workspace (activation slots, im2col tiles, auxiliary buffer: 67 MB
 * for the 256-px DiscreteVAE of DALLE-S) lives only for the duration of a
 * dalle_decode / dalle_encode call: one anonymous mapping, unmapped at the
 * end of the call, so its pages go back to the system at once. Kept for
 * the context's life (as before issue 8), it stayed resident next to the
 * weights and the KV cache of the next generation; and a free()d block of
 * that size is not reliably returned by the C library (glibc raises its
 * mmap threshold after the first such free and then serves it from the
 * heap). With 2 MiB pages a DALLE-S decode costs the same as before
 * (bench/README.md); with 4 KiB pages the faults cost ~25% on a VM. */
static void *ws_map(size_t bytes)
{
#if VAE_WS_MMAP
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    /* 2 MiB pages where the system allows them (512 times fewer page
     * faults); only advice, so failure is ignored */
    (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
#else
    return aligned_alloc(64, bytes);
#endif
}

static void ws_unmap(void *p, size_t bytes)
{
#if VAE_WS_MMAP
    if (p)
        munmap(p, bytes);
#else
    (void)bytes;
    free(p);
#endif
}

/* Floats rounded up to whole cache lines (64 bytes), at least one line. */
static size_t line_bytes(int64_t n)
{
    return ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
}

/* Map the workspace for one call, sized by the measuring pass at load. */
static dalle_status begin(struct vae *v, struct tpool *pool)
{
    vae_run *r = &v->run;
    r->pool = pool;
    /* each slot as large as the largest activation the networks put in it,
     * not as the largest of all (the DiscreteVAE rotates three slots, and
     * only one holds the full-resolution hidden activation) */
    size_t act[VAE_SLOTS], bytes = 0;
    for (int i = 0; i < r->need_slots; i++) {
        act[i] = line_bytes(r->need_act[i]);
        bytes += act[i];
    }
    const size_t col = line_bytes(r->need_col), aux = line_bytes(r->need_aux);
    v->ws_bytes = bytes + col + aux;
    char *p = ws_map(v->ws_bytes);
    if (!p)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "VAE workspace: out of memory (%lld MiB)",
                          (long long)(v->ws_bytes >> 20));
    v->ws = p;
    for (int i = 0; i < r->need_slots; i++) { /* only the slots the networks use */
        r->slot[i] = (float *)(void *)p;
        p += act[i];
    }
    r->col = (float *)(void *)p;
    r->aux = (float *)(void *)(p + col);
    r->col_cap = r->need_col;
    r->aux_cap = r->need_aux;
    return DALLE_OK;
}

/* Unmap it again. */
static void end(struct vae *v)
{
    ws_unmap(v->ws, v->ws_bytes);
    v->ws = NULL;
    v->ws_bytes = 0;
    for (int i = 0; i < VAE_SLOTS; i++)
        v->run.slot[i] = NULL;
    v->run.col = v->run.aux = NULL;
}

/* Decode every image, then copy or map the raw output: written to `out`
 * only after the image is finished, so a failure (none can happen after the
 * workspace exists) never leaves half an image. */
static dalle_status decode_batch(struct vae *v, struct tpool *pool, const int32_t *ids, int batch,
                                 float *out, int raw)
{
    dalle_status s = begin(v, pool);
    if (s)
        return s;
    const int64_t n = (int64_t)v->image_size * v->image_size, seq = (int64_t)v->grid * v->grid;
    const int oc = raw ? v->fam->raw_channels : 3;
    for (int i = 0; i < batch; i++) {
        vae_act a = v->fam->decode_net(v->net, &v->run, ids + i * seq, v->grid);
        float *dst = out + (int64_t)i * oc * n;
        if (raw)
            memcpy(dst, a.d, sizeof(float) * (size_t)(oc * n));
        else
            v->fam->to_pixels(v->net, a.d, n, dst);
    }
    end(v);
    return DALLE_OK;
}

dalle_status vae_decode(struct vae *v, struct tpool *pool, const int32_t *ids, int batch,
                        float *pixels)
{
    return decode_batch(v, pool, ids, batch, pixels, 0);
}

dalle_status vae_decode_raw(struct vae *v, struct tpool *pool, const int32_t *ids, int batch,
                            float *out)
{
    return decode_batch(v, pool, ids, batch, out, 1);
}

/* First maximum over the token axis, as torch.argmax. */
static void argmax_tokens(const float *scores, int t, int64_t n, int32_t *ids)
{
    for (int64_t p = 0; p < n; p++) {
        int best = 0;
        float bv = scores[p];
        for (int j = 1; j < t; j++) {
            float s = scores[(int64_t)j * n + p];
            if (s > bv) {
                bv = s;
                best = j;
            }
        }
        ids[p] = best;
    }
}

static dalle_status encode_batch(struct vae *v, struct tpool *pool, const float *pixels, int batch,
                                 int32_t *ids, float *scores)
{
    dalle_status s = begin(v, pool);
    if (s)
        return s;
    const int64_t n = (int64_t)v->image_size * v->image_size, seq = (int64_t)v->grid * v->grid;
    for (int i = 0; i < batch; i++) {
        vae_act a = v->fam->encode_net(v->net, &v->run, pixels + (int64_t)i * 3 * n,
                                       v->image_size);
        if (scores)
            memcpy(scores + (int64_t)i * v->num_tokens * seq, a.d,
                   sizeof(float) * (size_t)(v->num_tokens * seq));
        if (ids)
            argmax_tokens(a.d, v->num_tokens, seq, ids + i * seq);
    }
    end(v);
    return DALLE_OK;
}

dalle_status vae_encode(struct vae *v, struct tpool *pool, const float *pixels, int batch,
                        int32_t *ids)
{
    return encode_batch(v, pool, pixels, batch, ids, NULL);
}

dalle_status vae_encode_scores(struct vae *v, struct tpool *pool, const float *pixels, int batch,
                               float *out)
{
    return encode_batch(v, pool, pixels, batch, NULL, out);
}
