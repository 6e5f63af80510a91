/* The CLIP context: DALLE-pytorch's CLIP or OpenAI's, loaded from a bundle,
 * and the public clip_* calls.
 *
 * Every call validates all of its arguments first, then reserves the
 * workspace it needs (the only step that can fail afterwards), and only then
 * computes and writes its outputs: a failed call leaves them untouched.
 * Images and captions go through the towers in chunks of params.max_batch,
 * so the workspace is bounded by max_batch, not by the caller's batch (only
 * clip_logits_per_image keeps the features of all its captions, and
 * clip_rank its n (score, index) pairs). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
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
    dalle_backend backend; /* recorded; CLIP computes on the CPU */
    clip_model model;
    clip_work work;
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
    if (ctx->backend == DALLE_BACKEND_CUDA)
        dalle_log(DALLE_LOG_INFO, "clip: CLIP has no CUDA code yet: %s computes on the CPU",
                  path);
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
    ctx->work.pool = ctx->pool;
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
    clip_model_free(&ctx->model);
    clip_work_free(&ctx->work);
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

/* The workspace for n_images images and n_texts captions, plus feat_a /
 * feat_b floats in CW_FEAT_A / CW_FEAT_B. */
static dalle_status reserve(clip_ctx *ctx, int n_images, int n_texts, size_t feat_a,
                            size_t feat_b)
{
    dalle_status s;
    if ((s = clip_model_reserve(&ctx->model, &ctx->work, chunk_of(ctx, n_images),
                                chunk_of(ctx, n_texts))) ||
        (s = clip_work_reserve(&ctx->work, CW_FEAT_A, feat_a * sizeof(float))) ||
        (s = clip_work_reserve(&ctx->work, CW_FEAT_B, feat_b * sizeof(float))))
        return s;
    return DALLE_OK;
}

/* Features of n images into feat [n][embed], a chunk at a time. */
static void encode_images(clip_ctx *ctx, const float *images, int n, float *feat)
{
    const int64_t per = 3LL * ctx->model.image_size * ctx->model.image_size;
    const int chunk = ctx->params.max_batch, E = ctx->model.embed_dim;
    for (int i0 = 0; i0 < n; i0 += chunk) {
        int nb = n - i0 < chunk ? n - i0 : chunk;
        if (ctx->model.openai)
            clip_openai_encode_image(&ctx->model, &ctx->work, images + i0 * per, nb,
                                     feat + (int64_t)i0 * E);
        else
            clip_dalle_encode_image(&ctx->model, &ctx->work, images + i0 * per, nb,
                                    feat + (int64_t)i0 * E);
    }
}

static void encode_texts(clip_ctx *ctx, const int32_t *text, const uint8_t *mask, int n,
                         float *feat)
{
    const int64_t L = ctx->model.text_len;
    const int chunk = ctx->params.max_batch, E = ctx->model.embed_dim;
    for (int i0 = 0; i0 < n; i0 += chunk) {
        int nb = n - i0 < chunk ? n - i0 : chunk;
        if (ctx->model.openai)
            clip_openai_encode_text(&ctx->model, &ctx->work, text + i0 * L, nb,
                                    feat + (int64_t)i0 * E);
        else
            clip_dalle_encode_text(&ctx->model, &ctx->work, text + i0 * L,
                                   mask ? mask + i0 * L : NULL, nb, feat + (int64_t)i0 * E);
    }
}

/* v / max(||v||, 1e-12): F.normalize (DALLE-pytorch); OpenAI divides by the
 * bare norm, the same for any non-zero vector */
static void normalize(float *v, int n)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += (double)v[i] * v[i];
    float norm = (float)sqrt(ss);
    if (norm < 1e-12f)
        norm = 1e-12f;
    for (int i = 0; i < n; i++)
        v[i] /= norm;
}

/* scale · <img, txt> of normalised features, in upstream's order of
 * operations: DALLE-pytorch scales the dot product, OpenAI's forward scales
 * the image features first (logit_scale * image_features @ text.t()) */
static float pair_score(const clip_model *m, const float *img, const float *txt)
{
    double dot = 0.0;
    if (m->openai) {
        for (int k = 0; k < m->embed_dim; k++)
            dot += (double)(m->scale * img[k]) * txt[k];
        return (float)dot;
    }
    for (int k = 0; k < m->embed_dim; k++)
        dot += (double)img[k] * txt[k];
    return (float)dot * m->scale;
}

/* scores[i] of images against one caption; reserve(ctx, batch, 1, E,
 * chunk * E) done. */
static void score_images(clip_ctx *ctx, const int32_t *text, const uint8_t *mask,
                         const float *images, int batch, float *out)
{
    const int E = ctx->model.embed_dim, chunk = ctx->params.max_batch;
    const int64_t per = 3LL * ctx->model.image_size * ctx->model.image_size;
    float *txt = CW_F(&ctx->work, CW_FEAT_A), *img = CW_F(&ctx->work, CW_FEAT_B);
    encode_texts(ctx, text, mask, 1, txt);
    normalize(txt, E);
    for (int i0 = 0; i0 < batch; i0 += chunk) {
        int nb = batch - i0 < chunk ? batch - i0 : chunk;
        encode_images(ctx, images + i0 * per, nb, img);
        for (int i = 0; i < nb; i++) {
            normalize(img + (int64_t)i * E, E);
            out[i0 + i] = pair_score(&ctx->model, img + (int64_t)i * E, txt);
        }
    }
}

/* ---- the public calls --------------------------------------------------------------------- */

static dalle_status score(clip_ctx *ctx, const char *fn, const int32_t *text,
                          const uint8_t *mask, const float *images, int batch, float *out)
{
    if (!ctx || !text || !images || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          !ctx ? "ctx" : !text ? "text" : !images ? "images" : "out");
    dalle_status s;
    const int E = ctx->model.embed_dim;
    if ((s = check_count(fn, "batch", batch)) || (s = check_text(ctx, fn, text, 1)) ||
        (s = check_mask(ctx, fn, mask, 1)) || (s = check_images(ctx, fn, images, batch)) ||
        (s = reserve(ctx, batch, 1, E, (size_t)chunk_of(ctx, batch) * E)))
        return s;
    score_images(ctx, text, mask, images, batch, out);
    return DALLE_OK;
}

dalle_status clip_score(clip_ctx *ctx, const int32_t *text, const float *images, int batch,
                        float *out)
{
    return remember(ctx, score(ctx, "clip_score", text, NULL, images, batch, out));
}

dalle_status clip_score_masked(clip_ctx *ctx, const int32_t *text, const uint8_t *text_mask,
                               const float *images, int batch, float *out)
{
    return remember(ctx, score(ctx, "clip_score_masked", text, text_mask, images, batch, out));
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
        (s = reserve(ctx, batch, 0, 0, 0)))
        return s;
    encode_images(ctx, images, batch, features);
    return DALLE_OK;
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
        (s = reserve(ctx, 0, n_texts, 0, 0)))
        return s;
    encode_texts(ctx, text, NULL, n_texts, features);
    return DALLE_OK;
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
        (s = reserve(ctx, n_images, n_texts, (size_t)n_texts * E,
                     (size_t)chunk_of(ctx, n_images) * E)))
        return s;
    const int chunk = ctx->params.max_batch;
    const int64_t per = 3LL * ctx->model.image_size * ctx->model.image_size;
    float *txt = CW_F(&ctx->work, CW_FEAT_A), *img = CW_F(&ctx->work, CW_FEAT_B);
    encode_texts(ctx, text, NULL, n_texts, txt);
    for (int j = 0; j < n_texts; j++)
        normalize(txt + (int64_t)j * E, E);
    for (int i0 = 0; i0 < n_images; i0 += chunk) {
        int nb = n_images - i0 < chunk ? n_images - i0 : chunk;
        encode_images(ctx, images + i0 * per, nb, img);
        for (int i = 0; i < nb; i++) {
            normalize(img + (int64_t)i * E, E);
            for (int j = 0; j < n_texts; j++)
                out[(int64_t)(i0 + i) * n_texts + j] =
                    pair_score(&ctx->model, img + (int64_t)i * E, txt + (int64_t)j * E);
        }
    }
    return DALLE_OK;
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
        (s = reserve(ctx, n, 1, E, (size_t)chunk_of(ctx, n) * E)) ||
        (s = clip_work_reserve(&ctx->work, CW_SORT, (size_t)n * sizeof(ranked))))
        return s;
    score_images(ctx, text, NULL, images, n, scores);
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
