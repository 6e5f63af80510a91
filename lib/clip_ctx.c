/* The CLIP context: DALLE-pytorch's CLIP or OpenAI's, loaded from a bundle,
 * and the public clip_* calls.
 *
 * Every call validates all of its arguments first, then reserves the
 * workspace it needs (the only step that can fail afterwards), and only then
 * computes and writes its outputs: a failed call leaves them untouched.
 * Images and captions go through the towers in chunks of params.max_batch,
 * so the workspace is bounded by max_batch, not by the caller's batch (only
 * clip_logits_per_image keeps the features of all its captions, and
 * clip_rank its n (score, index) pairs).
 *
 * The model computes through the backend table (lib/backend_ops.h) on
 * ctx->work.be: the CPU's, or with backend = cuda a CUDA backend holding
 * the weights (copied once at creation) and the workspace, sized for
 * max_batch at creation. Inputs go up a chunk at a time (images, ids,
 * mask), features are normalised and scored there, and only the outputs
 * come back. A GPU failure (not an argument error) is reported by the next
 * download, so it may leave the outputs of earlier chunks written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_ops.h"
#include "bundle.h"
#include "clip_model.h"
#include "context.h"
#include "error.h"
#include "params.h"
#include "threadpool.h"

#define MAX_COUNT (1 << 20) /* images or captions per call */

struct clip_ctx {
    dalle_bundle *bundle;
    dalle_ctx_params params;
    dalle_backend backend; /* where CLIP computes (backend_select's answer) */
    clip_model model;
    clip_work work;        /* work.be: &cpu, or device_backend */
    backend cpu;           /* the CPU's operations on pool */
    backend *device_backend; /* CUDA (owned), or NULL */
    struct tpool *pool; /* lib/threadpool.h: params.n_threads threads */
    char last_error[DALLE_MESSAGE_CAP];
};

/* clip.load()'s Normalize: OpenAI CLIP's training statistics */
static const float openai_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float openai_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

static dalle_status remember(clip_ctx *ctx, dalle_status status)
{
    if (status != DALLE_OK && ctx)
        snprintf(ctx->last_error, sizeof ctx->last_error, "%s", dalle_last_error());
    return status;
}

/* ---- creation ------------------------------------------------------------------ */

dalle_status clip_ctx_to_backend(clip_ctx *ctx, backend *be)
{
    dalle_status s = clip_model_to_backend(&ctx->model, be, NULL);
    if (s)
        return s;
    /* the workspace moves with the model, at its largest at once: a device
     * backend's memory is an arena that should not grow call by call */
    clip_work_free(&ctx->work);
    ctx->work.be = be;
    const int mb = ctx->params.max_batch;
    return clip_model_reserve(&ctx->model, &ctx->work, mb, mb);
}

backend *clip_ctx_backend(const clip_ctx *ctx) { return ctx ? ctx->work.be : NULL; }

/* CUDA (backend_select chose it): an arena for the weights as float32 and
 * the workspace of max_batch images and captions, then the weights copied.
 * With backend = auto a CUDA backend that cannot start (cuBLAS missing,
 * say) leaves the context on the CPU, said through the log. */
static dalle_status start_cuda(clip_ctx *ctx, const dalle_ctx_params *p, const char *path)
{
    size_t weights = 0, slots[CW_N], work = 0;
    clip_model_to_backend(&ctx->model, &ctx->cpu, &weights);
    clip_model_sizes(&ctx->model, 0, p->max_batch, p->max_batch, slots);
    for (int i = 0; i < CW_BACKEND_SLOTS; i++)
        work += (slots[i] + 255) / 256 * 256;
    const size_t bytes = weights + work + ((size_t)1 << 20);
    dalle_status s = backend_cuda_create(p, bytes, &ctx->device_backend);
    if (s && p->backend == DALLE_BACKEND_AUTO) {
        dalle_log(DALLE_LOG_INFO, "backend auto: a GPU is present but the CUDA backend cannot "
                                  "start (%s); CLIP computes on the CPU", dalle_last_error());
        ctx->backend = DALLE_BACKEND_CPU;
        return DALLE_OK;
    }
    if (s)
        return s;
    if ((s = clip_ctx_to_backend(ctx, ctx->device_backend)))
        return s;
    dalle_log(DALLE_LOG_INFO, "backend cuda: CLIP %s runs on the GPU (%zu MiB of weights, %zu MiB "
                              "of workspace for max_batch %d)",
              path, weights >> 20, work >> 20, p->max_batch);
    return DALLE_OK;
}

static dalle_status create(const char *path, const dalle_ctx_params *params, clip_ctx **out)
{
    if (!path || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "clip_ctx_create: %s is NULL",
                          path ? "out" : "path");
    dalle_ctx_params p = dalle_ctx_default_params();
    dalle_status s = params_merge(params, sizeof p, sizeof p, "dalle_ctx_params", &p);
    if (s)
        return s;
    if (p.n_threads < 0 || p.n_threads > 1024)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "params.n_threads = %d: expected 0..1024",
                          p.n_threads);
    if (p.max_batch < 1 || p.max_batch > 4096)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "params.max_batch = %d: expected 1..4096",
                          p.max_batch);
    clip_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "clip_ctx_create: out of memory");
    ctx->params = p;
    if ((s = backend_select(&p, &ctx->backend)) || (s = dalle_bundle_open(path, &ctx->bundle)))
        goto fail;
    const char *kind = dalle_bundle_kind(ctx->bundle);
    if (!strcmp(kind, "clip")) {
        s = clip_dalle_load(ctx->bundle, &ctx->model);
    } else if (!strcmp(kind, "openai_clip")) {
        ctx->model.openai = 1;
        s = clip_openai_load(ctx->bundle, &ctx->model);
    } else {
        s = dalle_fail(DALLE_ERR_MISMATCH, "%s: a bundle of kind '%s' is not a CLIP model", path,
                       kind);
    }
    if (s || (s = tpool_create(p.n_threads, &ctx->pool)))
        goto fail;
    backend_cpu_init(&ctx->cpu, ctx->pool);
    ctx->work.be = &ctx->cpu;
    if (ctx->backend == DALLE_BACKEND_CUDA && (s = start_cuda(ctx, &p, path)))
        goto fail;
    *out = ctx;
    return DALLE_OK;
fail:
    clip_ctx_free(ctx);
    return s;
}

dalle_status clip_ctx_create(const char *path, const dalle_ctx_params *params, clip_ctx **out)
{
    return create(path, params, out);
}

void clip_ctx_free(clip_ctx *ctx)
{
    if (!ctx)
        return;
    clip_work_free(&ctx->work); /* before the backend its slots live on */
    clip_model_free(&ctx->model);
    backend_cuda_free(ctx->device_backend); /* after the model: its weights live there */
    tpool_free(ctx->pool);
    dalle_bundle_close(ctx->bundle);
    free(ctx);
}

const char *clip_ctx_last_error(const clip_ctx *ctx) { return ctx ? ctx->last_error : ""; }
int clip_text_seq_len(const clip_ctx *ctx) { return ctx ? ctx->model.text_len : 0; }
int clip_num_text_tokens(const clip_ctx *ctx) { return ctx ? ctx->model.vocab : 0; }
int clip_image_size(const clip_ctx *ctx) { return ctx ? ctx->model.image_size : 0; }
int clip_embed_dim(const clip_ctx *ctx) { return ctx ? ctx->model.embed_dim : 0; }
const dalle_bundle *clip_ctx_bundle(const clip_ctx *ctx) { return ctx ? ctx->bundle : NULL; }

/* ---- argument checks ---------------------------------------------------------------- */

static dalle_status check_count(const char *fn, const char *what, int n)
{
    if (n < 1 || n > MAX_COUNT)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s = %d: expected 1..%d", fn, what, n,
                          MAX_COUNT);
    return DALLE_OK;
}

static dalle_status check_text(const clip_ctx *ctx, const char *fn, const int32_t *text, int n)
{
    const int64_t len = (int64_t)n * ctx->model.text_len;
    for (int64_t i = 0; i < len; i++)
        if (text[i] < 0 || text[i] >= ctx->model.vocab)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                              "%s: text[%lld] = %d is out of range [0, %d)", fn, (long long)i,
                              (int)text[i], ctx->model.vocab);
    return DALLE_OK;
}

/* upstream's masked_mean divides by the number of kept tokens: a caption
 * must keep one */
static dalle_status check_mask(const clip_ctx *ctx, const char *fn, const uint8_t *mask, int n)
{
    if (!mask)
        return DALLE_OK;
    if (ctx->model.openai)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "%s: text_mask: OpenAI CLIP takes no mask (it reads the end-of-text "
                          "token); pass NULL",
                          fn);
    const int L = ctx->model.text_len;
    for (int b = 0; b < n; b++) {
        int kept = 0;
        for (int i = 0; i < L; i++)
            kept |= mask[(int64_t)b * L + i] != 0;
        if (!kept)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                              "%s: text_mask of caption %d keeps no token (the masked mean "
                              "would divide by zero)",
                              fn, b);
    }
    return DALLE_OK;
}

static dalle_status check_images(const clip_ctx *ctx, const char *fn, const float *images, int n)
{
    const int64_t s = ctx->model.image_size, total = (int64_t)n * 3 * s * s;
    for (int64_t i = 0; i < total; i++)
        if (!isfinite(images[i]))
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: images[%lld] is not finite", fn,
                              (long long)i);
    return DALLE_OK;
}

/* ---- computing ------------------------------------------------------------------------ */

static int chunk_of(const clip_ctx *ctx, int n)
{
    return n < ctx->params.max_batch ? n : ctx->params.max_batch;
}

/* The workspace for n_images images and n_texts captions, plus feat_a
 * floats (host) in CW_FEAT_A. */
static dalle_status reserve(clip_ctx *ctx, int n_images, int n_texts, size_t feat_a)
{
    dalle_status s;
    if ((s = clip_model_reserve(&ctx->model, &ctx->work, chunk_of(ctx, n_images),
                                chunk_of(ctx, n_texts))) ||
        (s = clip_work_reserve(&ctx->work, CW_FEAT_A, feat_a * sizeof(float))))
        return s;
    return DALLE_OK;
}

/* A host input as a tensor of the backend: the host buffer itself where the
 * backend's memory is the host's, else uploaded into slot s. */
static const void *put(clip_ctx *ctx, clip_slot s, const void *host, size_t bytes)
{
    backend *be = ctx->work.be;
    if (be->host_memory)
        return host;
    be->op->upload(be, ctx->work.buf[s], host, bytes);
    return ctx->work.buf[s];
}

/* rows x cols floats of backend tensor t (row stride cols; on host memory
 * host_ld, t being `host` itself) into host (row stride host_ld): waits,
 * and reports the backend's first failure */
static dalle_status fetch(clip_ctx *ctx, float *host, int64_t host_ld, const float *t,
                          int64_t rows, int64_t cols)
{
    backend *be = ctx->work.be;
    if (be->host_memory)
        return backend_status(be);
    if (host_ld == cols)
        return be->op->download(be, host, t, (size_t)(rows * cols) * sizeof *host);
    for (int64_t r = 0; r < rows; r++) {
        dalle_status s = be->op->download(be, host + r * host_ld, t + r * cols,
                                          (size_t)cols * sizeof *host);
        if (s)
            return s;
    }
    return DALLE_OK;
}

/* Features of nb <= max_batch images into backend tensor f [nb][embed]. */
static void encode_image_chunk(clip_ctx *ctx, const float *images, int nb, float *f)
{
    const int64_t per = 3LL * ctx->model.image_size * ctx->model.image_size;
    const float *img = put(ctx, CW_IMG, images, (size_t)(nb * per) * sizeof *images);
    if (ctx->model.openai)
        clip_openai_encode_image(&ctx->model, &ctx->work, img, nb, f);
    else
        clip_dalle_encode_image(&ctx->model, &ctx->work, img, nb, f);
}

static void encode_text_chunk(clip_ctx *ctx, const int32_t *text, const uint8_t *mask, int nb,
                              float *f)
{
    const int64_t L = ctx->model.text_len;
    const int32_t *ids = put(ctx, CW_IDS, text, (size_t)(nb * L) * sizeof *text);
    if (ctx->model.openai) {
        clip_openai_encode_text(&ctx->model, &ctx->work, ids, text, nb, f);
    } else {
        const uint8_t *m = mask ? put(ctx, CW_MASK, mask, (size_t)(nb * L)) : NULL;
        clip_dalle_encode_text(&ctx->model, &ctx->work, ids, m, nb, f);
    }
}

/* Features of n images (images non-NULL) or n captions (text, mask) into
 * feat [n][embed] (host), a chunk at a time; normalised when asked. */
static dalle_status encode(clip_ctx *ctx, const float *images, const int32_t *text,
                           const uint8_t *mask, int n, float *feat, int normalise)
{
    backend *be = ctx->work.be;
    const int64_t per = 3LL * ctx->model.image_size * ctx->model.image_size;
    const int64_t L = ctx->model.text_len;
    const int chunk = ctx->params.max_batch, E = ctx->model.embed_dim;
    for (int i0 = 0; i0 < n; i0 += chunk) {
        int nb = n - i0 < chunk ? n - i0 : chunk;
        float *f = be->host_memory ? feat + (int64_t)i0 * E : CW_F(&ctx->work, CW_FEAT);
        if (images)
            encode_image_chunk(ctx, images + i0 * per, nb, f);
        else
            encode_text_chunk(ctx, text + i0 * L, mask ? mask + i0 * L : NULL, nb, f);
        if (normalise)
            be->op->l2_normalize(be, f, nb, E);
        dalle_status s = fetch(ctx, feat + (int64_t)i0 * E, E, f, nb, E);
        if (s)
            return s;
    }
    return DALLE_OK;
}

/* out [n_images][n_texts]: scale · cos of the images against the n_texts
 * normalised text features txt (host) in upstream's order of operations
 * (backend_ops.h's clip_scores); reserve(ctx, n_images, n_texts,
 * n_texts * embed) done. A device takes the captions max_batch at a time
 * (its workspace is sized for that). */
static dalle_status score(clip_ctx *ctx, const float *images, int n_images, const float *txt,
                          int n_texts, float *out)
{
    backend *be = ctx->work.be;
    const clip_model *m = &ctx->model;
    const int E = m->embed_dim, chunk = ctx->params.max_batch;
    const int tc = be->host_memory ? n_texts : chunk;
    const int64_t per = 3LL * m->image_size * m->image_size;
    float *f = CW_F(&ctx->work, CW_FEAT);
    for (int i0 = 0; i0 < n_images; i0 += chunk) {
        int nb = n_images - i0 < chunk ? n_images - i0 : chunk;
        encode_image_chunk(ctx, images + i0 * per, nb, f);
        be->op->l2_normalize(be, f, nb, E);
        for (int t0 = 0; t0 < n_texts; t0 += tc) {
            int nt = n_texts - t0 < tc ? n_texts - t0 : tc;
            float *o = out + (int64_t)i0 * n_texts + t0;
            const float *t = put(ctx, CW_TXT, txt + (int64_t)t0 * E, (size_t)nt * E * sizeof *txt);
            float *d = be->host_memory ? o : CW_F(&ctx->work, CW_OUT);
            be->op->clip_scores(be, f, nb, t, nt, E, m->scale, m->openai, d,
                                be->host_memory ? n_texts : nt);
            dalle_status s = fetch(ctx, o, n_texts, d, nb, nt);
            if (s)
                return s;
        }
    }
    return DALLE_OK;
}

/* scores[i] of images against one caption; reserve(ctx, batch, 1, E) done. */
static dalle_status score_images(clip_ctx *ctx, const int32_t *text, const uint8_t *mask,
                                 const float *images, int batch, float *out)
{
    float *txt = CW_F(&ctx->work, CW_FEAT_A);
    dalle_status s = encode(ctx, NULL, text, mask, 1, txt, 1);
    return s ? s : score(ctx, images, batch, txt, 1, out);
}

/* ---- the public calls --------------------------------------------------------------------- */

static dalle_status score_call(clip_ctx *ctx, const char *fn, const int32_t *text,
                               const uint8_t *mask, const float *images, int batch, float *out)
{
    if (!ctx || !text || !images || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          !ctx ? "ctx" : !text ? "text" : !images ? "images" : "out");
    dalle_status s;
    const int E = ctx->model.embed_dim;
    if ((s = check_count(fn, "batch", batch)) || (s = check_text(ctx, fn, text, 1)) ||
        (s = check_mask(ctx, fn, mask, 1)) || (s = check_images(ctx, fn, images, batch)) ||
        (s = reserve(ctx, batch, 1, E)))
        return s;
    return score_images(ctx, text, mask, images, batch, out);
}

dalle_status clip_score(clip_ctx *ctx, const int32_t *text, const float *images, int batch,
                        float *out)
{
    return remember(ctx, score_call(ctx, "clip_score", text, NULL, images, batch, out));
}

dalle_status clip_score_masked(clip_ctx *ctx, const int32_t *text, const uint8_t *text_mask,
                               const float *images, int batch, float *out)
{
    return remember(ctx, score_call(ctx, "clip_score_masked", text, text_mask, images, batch, out));
}

static dalle_status encode_image_call(clip_ctx *ctx, const float *images, int batch,
                                      float *features)
{
    const char *fn = "clip_encode_image";
    if (!ctx || !images || !features)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          !ctx ? "ctx" : !images ? "images" : "features");
    dalle_status s;
    if ((s = check_count(fn, "batch", batch)) || (s = check_images(ctx, fn, images, batch)) ||
        (s = reserve(ctx, batch, 0, 0)))
        return s;
    return encode(ctx, images, NULL, NULL, batch, features, 0);
}

dalle_status clip_encode_image(clip_ctx *ctx, const float *images, int batch, float *features)
{
    return remember(ctx, encode_image_call(ctx, images, batch, features));
}

static dalle_status encode_text_call(clip_ctx *ctx, const int32_t *text, int n_texts,
                                     float *features)
{
    const char *fn = "clip_encode_text";
    if (!ctx || !text || !features)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          !ctx ? "ctx" : !text ? "text" : "features");
    dalle_status s;
    if ((s = check_count(fn, "n_texts", n_texts)) || (s = check_text(ctx, fn, text, n_texts)) ||
        (s = reserve(ctx, 0, n_texts, 0)))
        return s;
    return encode(ctx, NULL, text, NULL, n_texts, features, 0);
}

dalle_status clip_encode_text(clip_ctx *ctx, const int32_t *text, int n_texts, float *features)
{
    return remember(ctx, encode_text_call(ctx, text, n_texts, features));
}

static dalle_status logits_call(clip_ctx *ctx, const float *images, int n_images,
                                const int32_t *text, int n_texts, float *out)
{
    const char *fn = "clip_logits_per_image";
    if (!ctx || !images || !text || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          !ctx ? "ctx" : !images ? "images" : !text ? "text" : "out");
    dalle_status s;
    const int E = ctx->model.embed_dim;
    if ((s = check_count(fn, "n_images", n_images)) || (s = check_count(fn, "n_texts", n_texts)) ||
        (s = check_text(ctx, fn, text, n_texts)) ||
        (s = check_images(ctx, fn, images, n_images)) ||
        (s = reserve(ctx, n_images, n_texts, (size_t)n_texts * E)))
        return s;
    float *txt = CW_F(&ctx->work, CW_FEAT_A);
    if ((s = encode(ctx, NULL, text, NULL, n_texts, txt, 1)))
        return s;
    return score(ctx, images, n_images, txt, n_texts, out);
}

dalle_status clip_logits_per_image(clip_ctx *ctx, const float *images, int n_images,
                                   const int32_t *text, int n_texts, float *out)
{
    return remember(ctx, logits_call(ctx, images, n_images, text, n_texts, out));
}

static dalle_status preprocess_call(clip_ctx *ctx, const uint8_t *rgb, int height, int width,
                                    float *out)
{
    if (!ctx || !rgb || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "clip_preprocess: %s is NULL",
                          !ctx ? "ctx" : !rgb ? "rgb" : "out");
    const int openai = ctx->model.openai;
    return clip_preprocess_image(&ctx->work, rgb, height, width, ctx->model.image_size,
                                 openai ? openai_mean : NULL, openai ? openai_std : NULL, out);
}

dalle_status clip_preprocess(clip_ctx *ctx, const uint8_t *rgb, int height, int width,
                             float *out)
{
    return remember(ctx, preprocess_call(ctx, rgb, height, width, out));
}

typedef struct ranked {
    float score;
    int index;
} ranked;

/* best first; equal scores keep their input order (the index breaks the
 * tie, which makes qsort stable); NaN, which finite inputs cannot produce
 * but a broken model could, sorts last */
static int by_score(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    int na = isnan(a->score), nb = isnan(b->score);
    if (na != nb)
        return na - nb;
    if (!na && a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

static dalle_status rank_call(clip_ctx *ctx, const int32_t *text, const float *images, int n,
                              float *scores, int *order)
{
    const char *fn = "clip_rank";
    if (!ctx || !text || !images || !scores || !order)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          !ctx      ? "ctx"
                          : !text   ? "text"
                          : !images ? "images"
                          : !scores ? "scores"
                                    : "order");
    dalle_status s;
    const int E = ctx->model.embed_dim;
    if ((s = check_count(fn, "n", n)) || (s = check_text(ctx, fn, text, 1)) ||
        (s = check_images(ctx, fn, images, n)) ||
        (s = reserve(ctx, n, 1, E)) ||
        (s = clip_work_reserve(&ctx->work, CW_SORT, (size_t)n * sizeof(ranked))) ||
        (s = score_images(ctx, text, NULL, images, n, scores)))
        return s;
    ranked *r = ctx->work.buf[CW_SORT];
    for (int i = 0; i < n; i++)
        r[i] = (ranked){scores[i], i};
    qsort(r, (size_t)n, sizeof *r, by_score);
    for (int i = 0; i < n; i++)
        order[i] = r[i].index;
    return DALLE_OK;
}

dalle_status clip_rank(clip_ctx *ctx, const int32_t *text, const float *images, int n,
                       float *scores, int *order)
{
    return remember(ctx, rank_call(ctx, text, images, n, scores, order));
}
