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
    backend cpu;   /* the CPU's table on the calling context's pool */
    backend *be;   /* a device backend the weights were moved to (vae_to_backend), or NULL */
    int io_batch;  /* images whose ids and pixels a device call holds at once */
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
        r->be->op->conv2d(r->be, g, x.d, x.h, x.w, cv->w, cv->b, y.d, r->col, r->col_cap);
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
        r->be->op->conv_transpose2d(r->be, g, x.d, x.h, x.w, cv->w, cv->b, y.d, r->col,
                                    r->col_cap);
    return y;
}

vae_act vae_relu_run(vae_run *r, vae_act x, int slot)
{
    vae_act y = vae_new(r, slot, x.c, x.h, x.w);
    if (!r->measure)
        r->be->op->relu(r->be, x.d, y.d, (int64_t)x.c * x.h * x.w);
    return y;
}

vae_act vae_norm_run(vae_run *r, const vae_norm *n, vae_act x, int swish, int slot)
{
    vae_act y = vae_new(r, slot, x.c, x.h, x.w);
    if (!r->measure)
        /* taming's Normalize: GroupNorm(num_groups=32, eps=1e-6) */
        r->be->op->group_norm(r->be, x.d, x.c, (int64_t)x.h * x.w, 32, 1e-6f, n->gain, n->bias,
                              swish, y.d);
    return y;
}

vae_act vae_pool_run(vae_run *r, vae_act x, int max, int slot)
{
    vae_act y = vae_new(r, slot, x.c, x.h / 2, x.w / 2);
    if (!r->measure)
        r->be->op->pool2(r->be, x.d, x.c, x.h, x.w, max, y.d);
    return y;
}

vae_act vae_upsample_run(vae_run *r, vae_act x, int slot)
{
    vae_act y = vae_new(r, slot, x.c, 2 * x.h, 2 * x.w);
    if (!r->measure)
        r->be->op->upsample2(r->be, x.d, x.c, x.h, x.w, y.d);
    return y;
}

void vae_residual_run(vae_run *r, vae_act x, vae_act y, float scale)
{
    if (!r->measure)
        r->be->op->residual(r->be, x.d, y.d, scale, (int64_t)x.c * x.h * x.w);
}

vae_act vae_gather_run(vae_run *r, const float *table, int64_t id_stride, int64_t c_stride,
                       const float *bias, const int32_t *ids, int channels, int grid, int slot)
{
    vae_act x = vae_new(r, slot, channels, grid, grid);
    if (!r->measure)
        r->be->op->gather_ids(r->be, table, id_stride, c_stride, bias, ids,
                              (int64_t)grid * grid, channels, x.d);
    return x;
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
    out = v->fam->encode_net(v->net, r, vae_new(r, 0, 3, v->image_size, v->image_size));
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

/* The workspace's bytes (activation slots, im2col tiles, auxiliary buffer)
 * and, on a device, those of the ids and the [3][size][size] pixels of
 * `images` images, the only data that crosses to and from the host. */
static size_t slot_bytes(const vae_run *r, int i) { return line_bytes(r->need_act[i]); }

static size_t io_bytes(const struct vae *v, int images)
{
    const int64_t n = (int64_t)v->image_size * v->image_size, seq = (int64_t)v->grid * v->grid;
    return line_bytes(images * seq) /* int32 ids, as many bytes as floats */ +
           line_bytes(images * 3 * n);
}

static size_t ws_bytes(const struct vae *v)
{
    const vae_run *r = &v->run;
    size_t bytes = line_bytes(r->need_col) + line_bytes(r->need_aux);
    for (int i = 0; i < r->need_slots; i++)
        bytes += slot_bytes(r, i);
    return bytes;
}

/* A call's backend: the device one the weights were moved to, else the
 * CPU's on the caller's pool. */
static backend *call_backend(struct vae *v, struct tpool *pool)
{
    if (v->be)
        return v->be;
    backend_cpu_init(&v->cpu, pool);
    return &v->cpu;
}

/* Map the workspace for one call, sized by the measuring pass at load; on
 * a device backend it is one allocation of its memory (given back by end),
 * followed by the io buffers, returned in *io. */
static dalle_status begin(struct vae *v, backend *be, void **io)
{
    vae_run *r = &v->run;
    r->be = be;
    const size_t ws = ws_bytes(v);
    char *p;
    if (be->host_memory) {
        /* each slot as large as the largest activation the networks put in
         * it, not as the largest of all (the DiscreteVAE rotates three
         * slots, and only one holds the full-resolution hidden activation) */
        v->ws_bytes = ws;
        if (!(p = ws_map(v->ws_bytes)))
            return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "VAE workspace: out of memory (%lld MiB)",
                              (long long)(v->ws_bytes >> 20));
        *io = NULL;
    } else {
        v->ws_bytes = ws + io_bytes(v, v->io_batch);
        void *d = NULL;
        dalle_status s = be->op->alloc(be, v->ws_bytes, &d);
        if (s) {
            char why[DALLE_MESSAGE_CAP];
            snprintf(why, sizeof why, "%s", dalle_last_error());
            return dalle_fail(s, "VAE workspace on the %s backend (%lld MiB): %s", be->name,
                              (long long)(v->ws_bytes >> 20), why);
        }
        p = d;
        *io = p + ws;
    }
    v->ws = p;
    for (int i = 0; i < r->need_slots; i++) { /* only the slots the networks use */
        r->slot[i] = (float *)(void *)p;
        p += slot_bytes(r, i);
    }
    r->col = (float *)(void *)p;
    r->aux = (float *)(void *)(p + line_bytes(r->need_col));
    r->col_cap = r->need_col;
    r->aux_cap = r->need_aux;
    return DALLE_OK;
}

/* Unmap it again (or give it back to the device backend). */
static void end(struct vae *v)
{
    if (v->ws && v->run.be && !v->run.be->host_memory)
        v->run.be->op->free(v->run.be, v->ws);
    else
        ws_unmap(v->ws, v->ws_bytes);
    v->ws = NULL;
    v->ws_bytes = 0;
    v->run.be = NULL;
    for (int i = 0; i < VAE_SLOTS; i++)
        v->run.slot[i] = NULL;
    v->run.col = v->run.aux = NULL;
}

/* The end of a call: the backend's first failure (a device's operations
 * record them), the workspace given back either way. */
static dalle_status finish(struct vae *v, backend *be, dalle_status s)
{
    dalle_status b = backend_status(be);
    end(v);
    return s ? s : b;
}

/* Decode every image, then map (or copy, raw) its output. On the CPU that
 * goes straight into `out`, each image only after it is finished, so a
 * failure (none can happen after the workspace exists) never leaves half an
 * image. On a device the ids of up to io_batch images go up at once and
 * their pixels come down at once; raw outputs (the tests') image by image. */
static dalle_status decode_batch(struct vae *v, struct tpool *pool, const int32_t *ids, int batch,
                                 float *out, int raw)
{
    backend *be = call_backend(v, pool);
    void *io;
    dalle_status s = begin(v, be, &io);
    if (s)
        return s;
    const int64_t n = (int64_t)v->image_size * v->image_size, seq = (int64_t)v->grid * v->grid;
    const int oc = raw ? v->fam->raw_channels : 3;
    conv_map in, map;
    v->fam->maps(v->net, &in, &map);
    const int chunk = be->host_memory ? batch : v->io_batch;
    for (int i0 = 0; i0 < batch && !s; i0 += chunk) {
        const int nb = batch - i0 < chunk ? batch - i0 : chunk;
        const int32_t *dids = ids + i0 * seq;
        float *dpix = out + (int64_t)i0 * oc * n;
        if (!be->host_memory) { /* the io buffers: ids, then pixels */
            dids = io;
            dpix = (float *)(void *)((char *)io + line_bytes(nb * seq));
            be->op->upload(be, (void *)dids, ids + i0 * seq, sizeof(int32_t) * (size_t)(nb * seq));
        }
        for (int i = 0; i < nb && !s; i++) {
            vae_act a = v->fam->decode_net(v->net, &v->run, dids + i * seq, v->grid);
            float *host = out + (int64_t)(i0 + i) * oc * n;
            if (raw)
                s = be->op->download(be, host, a.d, sizeof(float) * (size_t)(oc * n));
            else
                be->op->pixel_map(be, &map, a.d, n, dpix + (int64_t)i * 3 * n);
        }
        if (!raw && !s && !be->host_memory)
            s = be->op->download(be, out + (int64_t)i0 * 3 * n, dpix,
                                 sizeof(float) * (size_t)(nb * 3 * n));
    }
    return finish(v, be, s);
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

/* Encode every image: the input map into slot 0, the encoder, then the
 * argmax over the token axis (or the scores themselves, for the tests). On
 * a device the pixels of up to io_batch images go up at once and their ids
 * come down at once; scores image by image. */
static dalle_status encode_batch(struct vae *v, struct tpool *pool, const float *pixels, int batch,
                                 int32_t *ids, float *scores)
{
    backend *be = call_backend(v, pool);
    void *io;
    dalle_status s = begin(v, be, &io);
    if (s)
        return s;
    const int64_t n = (int64_t)v->image_size * v->image_size, seq = (int64_t)v->grid * v->grid;
    conv_map in, map;
    v->fam->maps(v->net, &in, &map);
    const int chunk = be->host_memory ? batch : v->io_batch;
    for (int i0 = 0; i0 < batch && !s; i0 += chunk) {
        const int nb = batch - i0 < chunk ? batch - i0 : chunk;
        int32_t *dids = ids ? ids + i0 * seq : NULL;
        const float *dpix = pixels + (int64_t)i0 * 3 * n;
        if (!be->host_memory) { /* the io buffers: ids, then pixels */
            dids = io;
            dpix = (const float *)(const void *)((char *)io + line_bytes(nb * seq));
            be->op->upload(be, (void *)dpix, pixels + (int64_t)i0 * 3 * n,
                           sizeof(float) * (size_t)(nb * 3 * n));
        }
        for (int i = 0; i < nb && !s; i++) {
            vae_act x = vae_new(&v->run, 0, 3, v->image_size, v->image_size);
            be->op->pixel_map(be, &in, dpix + (int64_t)i * 3 * n, n, x.d);
            vae_act a = v->fam->encode_net(v->net, &v->run, x);
            if (scores)
                s = be->op->download(be, scores + (int64_t)(i0 + i) * v->num_tokens * seq, a.d,
                                     sizeof(float) * (size_t)(v->num_tokens * seq));
            if (ids)
                be->op->argmax_channels(be, a.d, v->num_tokens, seq, dids + i * seq);
        }
        if (ids && !s && !be->host_memory)
            s = be->op->download(be, ids + i0 * seq, dids, sizeof(int32_t) * (size_t)(nb * seq));
    }
    return finish(v, be, s);
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

/* ---- the weights on a device backend --------------------------------------- */

struct vae_upload {
    backend *be; /* NULL: only count the bytes */
    size_t bytes;
    dalle_status s;
};

/* The arena hands out 256-byte aligned pieces (lib/cuda/ops_cuda.h). */
#define VAE_UP_ALIGN ((size_t)256)

void vae_up(vae_upload *u, const float **p, int64_t n)
{
    if (u->s || !*p || n <= 0)
        return;
    const size_t bytes = (size_t)n * sizeof(float);
    u->bytes += (bytes + VAE_UP_ALIGN - 1) & ~(VAE_UP_ALIGN - 1);
    if (!u->be)
        return;
    void *dev = NULL;
    if ((u->s = u->be->op->alloc(u->be, bytes, &dev)))
        return;
    u->be->op->upload(u->be, dev, *p, bytes);
    *p = dev;
}

void vae_up_conv(vae_upload *u, vae_conv *cv)
{
    const conv_geom *g = &cv->g;
    vae_up(u, &cv->w, (int64_t)g->cout * g->cin * g->k * g->k);
    vae_up(u, &cv->b, g->cout);
}

void vae_up_norm(vae_upload *u, vae_norm *n)
{
    vae_up(u, &n->gain, n->c);
    vae_up(u, &n->bias, n->c);
}

size_t vae_backend_bytes(struct vae *v, int max_batch, size_t *work)
{
    vae_upload u = {0};
    v->fam->upload(v->net, &u);
    *work = ws_bytes(v) + io_bytes(v, max_batch < 1 ? 1 : max_batch) + VAE_UP_ALIGN;
    return u.bytes;
}

const backend *vae_backend(const struct vae *v) { return v->be; }

dalle_status vae_to_backend(struct vae *v, backend *be, int max_batch)
{
    if (be->host_memory)
        return DALLE_OK;
    vae_upload u = {.be = be};
    v->fam->upload(v->net, &u);
    dalle_status s = backend_uploaded(be, u.s, v->fam->name);
    if (s)
        return s;
    be->op->seal(be); /* the weights stay; a call's workspace comes and goes */
    v->be = be;
    v->io_batch = max_batch < 1 ? 1 : max_batch;
    return DALLE_OK;
}
