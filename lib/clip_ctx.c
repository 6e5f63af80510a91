/* The CLIP context: DALLE-pytorch's CLIP or OpenAI's, loaded from a bundle. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bundle.h"
#include "context.h"
#include "error.h"
#include "params.h"

struct clip_ctx {
    dalle_bundle *bundle;
    dalle_ctx_params params;
    dalle_backend backend;
    int openai;           /* OpenAI CLIP (else DALLE-pytorch's) */
    int text_seq_len;
    int num_text_tokens;
    int image_size;
    char last_error[DALLE_MESSAGE_CAP];
};

static dalle_status remember(clip_ctx *ctx, dalle_status status)
{
    if (status != DALLE_OK && ctx)
        snprintf(ctx->last_error, sizeof ctx->last_error, "%s", dalle_last_error());
    return status;
}

static dalle_status meta_int(const dalle_bundle *b, const char *key, int *out)
{
    int64_t v;
    dalle_status s = dalle_bundle_meta_i64(b, key, &v);
    if (s != DALLE_OK || v < 1 || v > (1 << 24))
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' %s", bundle_path(b), key,
                          s == DALLE_ERR_NOT_FOUND ? "missing" : "is not a positive integer");
    *out = (int)v;
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
    clip_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "clip_ctx_create: out of memory");
    ctx->params = p;
    if ((s = backend_select(&p, &ctx->backend)) || (s = dalle_bundle_open(path, &ctx->bundle)))
        goto fail;
    const char *kind = dalle_bundle_kind(ctx->bundle);
    if (!strcmp(kind, "clip")) {
        if ((s = meta_int(ctx->bundle, "clip.text_seq_len", &ctx->text_seq_len)) ||
            (s = meta_int(ctx->bundle, "clip.num_text_tokens", &ctx->num_text_tokens)) ||
            (s = meta_int(ctx->bundle, "clip.visual_image_size", &ctx->image_size)))
            goto fail;
    } else if (!strcmp(kind, "openai_clip")) {
        ctx->openai = 1;
        if ((s = meta_int(ctx->bundle, "clip.context_length", &ctx->text_seq_len)) ||
            (s = meta_int(ctx->bundle, "clip.vocab_size", &ctx->num_text_tokens)) ||
            (s = meta_int(ctx->bundle, "clip.image_resolution", &ctx->image_size)))
            goto fail;
    } else {
        s = dalle_fail(DALLE_ERR_MISMATCH, "%s: a bundle of kind '%s' is not a CLIP model", path,
                       kind);
        goto fail;
    }
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
    dalle_bundle_close(ctx->bundle);
    free(ctx);
}

const char *clip_ctx_last_error(const clip_ctx *ctx) { return ctx ? ctx->last_error : ""; }
int clip_text_seq_len(const clip_ctx *ctx) { return ctx ? ctx->text_seq_len : 0; }
int clip_image_size(const clip_ctx *ctx) { return ctx ? ctx->image_size : 0; }

static dalle_status score(clip_ctx *ctx, const int32_t *text, const float *images, int batch,
                          float *out)
{
    if (!ctx || !text || !images || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "clip_score: %s is NULL",
                          !ctx ? "ctx" : !text ? "text" : !images ? "images" : "out");
    if (batch < 1 || batch > (1 << 20))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "clip_score: batch = %d: expected 1..%d",
                          batch, 1 << 20);
    for (int i = 0; i < ctx->text_seq_len; i++)
        if (text[i] < 0 || text[i] >= ctx->num_text_tokens)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                              "clip_score: text[%d] = %d is out of range [0, %d)", i, (int)text[i],
                              ctx->num_text_tokens);
    int64_t n = (int64_t)batch * 3 * ctx->image_size * ctx->image_size;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(images[i]))
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "clip_score: images[%lld] is not finite",
                              (long long)i);
    return dalle_fail(DALLE_ERR_NOT_IMPLEMENTED, "clip_score: CLIP is not in this version");
}

dalle_status clip_score(clip_ctx *ctx, const int32_t *text, const float *images, int batch,
                        float *out)
{
    return remember(ctx, score(ctx, text, images, batch, out));
}
