#include "context.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_ops.h"
#include "bundle.h"
#include "error.h"
#include "params.h"
#include "threadpool.h"
#include "tokenizer.h"
#include "transformer.h"
#include "transformer_internal.h"
#include "vae.h"

/* Remember a failure in the context as well as in the thread's buffer, so
 * dalle_ctx_last_error() can be read later, from any thread. */
static dalle_status remember(dalle_ctx *ctx, dalle_status status)
{
    if (status != DALLE_OK && ctx)
        snprintf(ctx->last_error, sizeof ctx->last_error, "%s", dalle_last_error());
    return status;
}

void dalle_ctx_params_init(dalle_ctx_params *params, size_t struct_size)
{
    dalle_ctx_params p;
    memset(&p, 0, sizeof p);
    p.n_threads = 0;
    p.backend = DALLE_BACKEND_CPU;
    p.device = 0;
    p.max_batch = 8;
    params_fill(params, struct_size, &p, sizeof p);
}

static dalle_status check_ctx_params(const dalle_ctx_params *p)
{
    if (p->n_threads < 0 || p->n_threads > 1024)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "params.n_threads = %d: expected 0..1024",
                          p->n_threads);
    if (p->max_batch < 1 || p->max_batch > 4096)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "params.max_batch = %d: expected 1..4096",
                          p->max_batch);
    return DALLE_OK;
}

static int is_vae_kind(const char *kind)
{
    return !strcmp(kind, "dvae") || !strcmp(kind, "openai_dvae") || !strcmp(kind, "vqgan");
}

/* A positive int metadata value within [lo, hi]. */
static dalle_status shape_value(const dalle_bundle *b, const char *key, int64_t lo, int64_t hi,
                                int *out)
{
    int64_t v;
    dalle_status s = dalle_bundle_meta_i64(b, key, &v);
    if (s == DALLE_ERR_NOT_FOUND)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' missing", bundle_path(b), key);
    if (s != DALLE_OK)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' is not an integer",
                          bundle_path(b), key);
    if (v < lo || v > hi)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' = %lld: expected %lld..%lld",
                          bundle_path(b), key, (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return DALLE_OK;
}

static dalle_status read_vae_shapes(const dalle_bundle *b, model_shapes *m)
{
    int num_layers;
    dalle_status s;
    if ((s = shape_value(b, "vae.image_size", 1, 1 << 16, &m->image_size)) ||
        (s = shape_value(b, "vae.num_layers", 0, 16, &num_layers)) ||
        (s = shape_value(b, "vae.num_tokens", 1, 1 << 24, &m->num_image_tokens)))
        return s;
    m->image_fmap_size = m->image_size >> num_layers;
    if (m->image_fmap_size < 1 || (m->image_fmap_size << num_layers) != m->image_size)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: vae.image_size %d is not divisible by 2^vae.num_layers (%d)",
                          bundle_path(b), m->image_size, num_layers);
    m->image_seq_len = m->image_fmap_size * m->image_fmap_size;
    return DALLE_OK;
}

static dalle_status read_dalle_shapes(const dalle_bundle *b, model_shapes *m)
{
    dalle_status s;
    if ((s = shape_value(b, "dalle.text_seq_len", 1, 1 << 16, &m->text_seq_len)) ||
        (s = shape_value(b, "dalle.num_text_tokens", 1, 1 << 24, &m->num_text_tokens)))
        return s;
    m->total_tokens = m->num_text_tokens + m->text_seq_len + m->num_image_tokens;
    return DALLE_OK;
}

/* The CUDA backend (backend_select chose it) for the transformer and the
 * VAE: an arena for both models' weights and the largest call's data
 * (dalle_logits / dalle_sample with guidance: two states of max_batch
 * sequences, every position; or a dalle_decode / dalle_encode workspace
 * with the ids and pixels of max_batch images: never both at once), then
 * the weights copied into it. With backend = auto a CUDA backend that cannot
 * start (no cuBLAS, say) leaves the context on the CPU, said through the
 * log callback. (CLIP has a context of its own: clip_ctx_create.) */
static dalle_status start_cuda(dalle_ctx *ctx, const dalle_ctx_params *p)
{
    transformer *tf = ctx->transformer;
    size_t states = 0, work = 0, weights = vae_backend_bytes(ctx->vae, p->max_batch, &work);
    if (tf) {
        weights += transformer_backend_bytes(tf);
        states = 2 * tf_state_backend_bytes(tf, p->max_batch, transformer_max_positions(tf));
    }
    const size_t bytes = weights + (states > work ? states : work) + ((size_t)1 << 20);
    dalle_status s = backend_cuda_create(p, bytes, &ctx->device_backend);
    if (s && p->backend == DALLE_BACKEND_AUTO) {
        dalle_log(DALLE_LOG_INFO, "backend auto: a GPU is present but the CUDA backend cannot "
                                  "start (%s); using the CPU", dalle_last_error());
        ctx->backend = DALLE_BACKEND_CPU;
        return DALLE_OK;
    }
    if (s)
        return s;
    if ((tf && (s = transformer_to_backend(tf, ctx->device_backend))) ||
        (s = vae_to_backend(ctx->vae, ctx->device_backend, p->max_batch)))
        return s;
    dalle_log(DALLE_LOG_INFO, "backend cuda: %s on the GPU (%zu MiB of weights and %zu MiB for "
                              "a call reserved)",
              tf ? "the transformer and the VAE run" : "the VAE runs", weights >> 20,
              (bytes - weights) >> 20);
    return DALLE_OK;
}

static dalle_status ctx_create(const char *path, const dalle_ctx_params *params, dalle_ctx **out)
{
    if (!path || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_ctx_create: %s is NULL",
                          path ? "out" : "path");
    dalle_ctx_params p = dalle_ctx_default_params();
    dalle_status s = params_merge(params, sizeof p, sizeof p, "dalle_ctx_params", &p);
    if (s || (s = check_ctx_params(&p)))
        return s;
    dalle_backend backend;
    if ((s = backend_select(&p, &backend)))
        return s;

    dalle_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_ctx_create: out of memory");
    ctx->params = p;
    ctx->backend = backend;
    if ((s = dalle_bundle_open(path, &ctx->bundle)))
        goto fail;
    const char *kind = dalle_bundle_kind(ctx->bundle);
    if (!strcmp(kind, "dalle")) {
        ctx->has_transformer = 1;
        ctx->has_vae = 1;
    } else if (is_vae_kind(kind)) {
        ctx->has_vae = 1;
    } else {
        s = dalle_fail(DALLE_ERR_MISMATCH,
                       "%s: a bundle of kind '%s' is not a DALL-E model or a VAE%s", path, kind,
                       strstr(kind, "clip") ? " (open it with clip_ctx_create)" : "");
        goto fail;
    }
    if ((s = read_vae_shapes(ctx->bundle, &ctx->shapes)))
        goto fail;
    if ((s = vae_load(ctx->bundle, &ctx->shapes, &ctx->vae)))
        goto fail;
    if (ctx->has_transformer && (s = read_dalle_shapes(ctx->bundle, &ctx->shapes)))
        goto fail;
    if (ctx->has_transformer &&
        (s = transformer_load(ctx->bundle, &ctx->shapes, &ctx->transformer)))
        goto fail;
    /* the context's threads: every product of its models runs on them */
    if ((s = tpool_create(p.n_threads, &ctx->pool)))
        goto fail;
    if (ctx->transformer)
        transformer_set_pool(ctx->transformer, ctx->pool);
    if (ctx->backend == DALLE_BACKEND_CUDA && (s = start_cuda(ctx, &p)))
        goto fail;
    *out = ctx;
    return DALLE_OK;
fail:
    dalle_ctx_free(ctx);
    return s;
}

dalle_status dalle_ctx_create(const char *path, const dalle_ctx_params *params, dalle_ctx **out)
{
    return ctx_create(path, params, out);
}

void dalle_ctx_free(dalle_ctx *ctx)
{
    if (!ctx)
        return;
    transformer_free(ctx->transformer);
    backend_cuda_free(ctx->device_backend); /* after the model: its weights live there */
    vae_free(ctx->vae);
    dalle_tokenizer_free(ctx->tokenizer);
    dalle_bundle_close(ctx->bundle);
    tpool_free(ctx->pool);
    free(ctx);
}

const char *dalle_ctx_last_error(const dalle_ctx *ctx) { return ctx ? ctx->last_error : ""; }
const dalle_bundle *dalle_ctx_bundle(const dalle_ctx *ctx) { return ctx ? ctx->bundle : NULL; }

int dalle_text_seq_len(const dalle_ctx *ctx) { return ctx ? ctx->shapes.text_seq_len : 0; }
int dalle_num_text_tokens(const dalle_ctx *ctx) { return ctx ? ctx->shapes.num_text_tokens : 0; }
int dalle_image_seq_len(const dalle_ctx *ctx) { return ctx ? ctx->shapes.image_seq_len : 0; }
int dalle_num_image_tokens(const dalle_ctx *ctx) { return ctx ? ctx->shapes.num_image_tokens : 0; }
int dalle_image_size(const dalle_ctx *ctx) { return ctx ? ctx->shapes.image_size : 0; }
int dalle_total_tokens(const dalle_ctx *ctx) { return ctx ? ctx->shapes.total_tokens : 0; }

/* ---- argument checks shared by the calls below ------------------------- */

static dalle_status need_ctx(const dalle_ctx *ctx, const char *fn)
{
    if (!ctx)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
    return DALLE_OK;
}

static dalle_status need_transformer(const dalle_ctx *ctx, const char *fn)
{
    if (!ctx->has_transformer)
        return dalle_fail(DALLE_ERR_UNSUPPORTED, "%s: %s is a '%s' bundle: it has no transformer",
                          fn, bundle_path(ctx->bundle), dalle_bundle_kind(ctx->bundle));
    return DALLE_OK;
}

static dalle_status need_batch(int batch, const char *fn)
{
    if (batch < 1 || batch > (1 << 20))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: batch = %d: expected 1..%d", fn,
                          batch, 1 << 20);
    return DALLE_OK;
}

static dalle_status need_ptr(const void *p, const char *fn, const char *arg)
{
    if (!p)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, arg);
    return DALLE_OK;
}

/* Every id in ids[0 .. n) within [0, limit). */
static dalle_status check_ids(const int32_t *ids, int64_t n, int32_t limit, const char *fn,
                              const char *what, int row_len)
{
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= limit)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                              "%s: %s[%lld][%lld] = %d is out of range [0, %d)", fn, what,
                              (long long)(i / row_len), (long long)(i % row_len), (int)ids[i],
                              (int)limit);
    return DALLE_OK;
}

static dalle_status check_text(const dalle_ctx *ctx, const int32_t *text, int batch,
                               const char *fn)
{
    const model_shapes *m = &ctx->shapes;
    return check_ids(text, (int64_t)batch * m->text_seq_len, m->num_text_tokens, fn, "text",
                     m->text_seq_len);
}

/* ---- tokenizer ------------------------------------------------------------ */

static dalle_status tokenize(dalle_ctx *ctx, const char *text, int32_t *out, int context_length,
                             int truncate)
{
    const char *fn = "dalle_tokenize";
    dalle_status s;
    if ((s = need_ctx(ctx, fn)) || (s = need_ptr(text, fn, "text")) ||
        (s = need_ptr(out, fn, "out")))
        return s;
    if (context_length < 1 || context_length > (1 << 16))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "%s: context_length = %d: expected 1..65536", fn, context_length);
    if (dalle_bundle_find_tensor(ctx->bundle, "tokenizer.bpe_merges") < 0)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "%s: %s has no tokenizer (convert it with --bpe MERGES.txt)", fn,
                          bundle_path(ctx->bundle));
    /* loaded on first use: most contexts never tokenize (callers pass ids) */
    if (!ctx->tokenizer && (s = tokenizer_from_bundle(ctx->bundle, &ctx->tokenizer)))
        return s;
    return dalle_tokenizer_tokenize(ctx->tokenizer, text, out, context_length, truncate);
}

dalle_status dalle_tokenize(dalle_ctx *ctx, const char *text, int32_t *out, int context_length,
                            int truncate)
{
    return remember(ctx, tokenize(ctx, text, out, context_length, truncate));
}

/* ---- sampling and logits ---------------------------------------------- */

void dalle_sample_params_init(dalle_sample_params *params, size_t struct_size)
{
    dalle_sample_params p;
    memset(&p, 0, sizeof p);
    p.seed = 0;
    p.filter_thres = 0.5f;
    p.temperature = 1.0f;
    p.cond_scale = 1.0f;
    params_fill(params, struct_size, &p, sizeof p);
}

static dalle_status check_sample_params(const dalle_ctx *ctx, const dalle_sample_params *p,
                                        int batch)
{
    if (!(p->filter_thres >= 0.0f && p->filter_thres < 1.0f))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "dalle_sample: filter_thres = %g: expected 0 <= filter_thres < 1",
                          (double)p->filter_thres);
    if (!(p->temperature > 0.0f) || !isfinite(p->temperature))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "dalle_sample: temperature = %g: expected a finite value > 0",
                          (double)p->temperature);
    if (!isfinite(p->cond_scale))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_sample: cond_scale is not finite");
    if (p->first_image > ((uint64_t)1 << 62))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "dalle_sample: first_image = %llu: expected at most 2^62",
                          (unsigned long long)p->first_image);
    if (p->n_prime < 0 || p->n_prime > ctx->shapes.image_seq_len)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_sample: n_prime = %d: expected 0..%d",
                          p->n_prime, ctx->shapes.image_seq_len);
    if (p->n_prime > 0) {
        if (!p->prime)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                              "dalle_sample: n_prime = %d but prime is NULL", p->n_prime);
        return check_ids(p->prime, (int64_t)batch * p->n_prime, ctx->shapes.num_image_tokens,
                         "dalle_sample", "prime", p->n_prime);
    }
    return DALLE_OK;
}

static dalle_status sample(dalle_ctx *ctx, const int32_t *text, int batch,
                           const dalle_sample_params *params, int32_t *out)
{
    const char *fn = "dalle_sample";
    dalle_status s;
    if ((s = need_ctx(ctx, fn)) || (s = need_transformer(ctx, fn)) ||
        (s = need_ptr(text, fn, "text")) || (s = need_ptr(out, fn, "out")) ||
        (s = need_batch(batch, fn)))
        return s;
    dalle_sample_params p = dalle_sample_default_params();
    if ((s = params_merge(params, sizeof p, sizeof p, "dalle_sample_params", &p)) ||
        (s = check_sample_params(ctx, &p, batch)) || (s = check_text(ctx, text, batch, fn)))
        return s;
    return transformer_sample(ctx->transformer, &ctx->params, text, batch, &p, out);
}

dalle_status dalle_sample(dalle_ctx *ctx, const int32_t *text, int batch,
                          const dalle_sample_params *params, int32_t *out)
{
    return remember(ctx, sample(ctx, text, batch, params, out));
}

static dalle_status generate_text(dalle_ctx *ctx, const int32_t *prefix, int n_prefix,
                                  const dalle_sample_params *params, int32_t *out)
{
    const char *fn = "dalle_generate_text";
    dalle_status s;
    if ((s = need_ctx(ctx, fn)) || (s = need_transformer(ctx, fn)) ||
        (s = need_ptr(out, fn, "out")))
        return s;
    const model_shapes *m = &ctx->shapes;
    if (n_prefix < 0 || n_prefix > m->text_seq_len)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: n_prefix = %d: expected 0..%d", fn,
                          n_prefix, m->text_seq_len);
    if (n_prefix > 0 && (s = need_ptr(prefix, fn, "prefix")))
        return s;
    dalle_sample_params p = dalle_sample_default_params();
    if ((s = params_merge(params, sizeof p, sizeof p, "dalle_sample_params", &p)) ||
        (s = check_sample_params(ctx, &p, 1)))
        return s;
    if (p.cond_scale != 1.0f || p.n_prime != 0)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "%s: cond_scale and n_prime apply to images only (got %g, %d)", fn,
                          (double)p.cond_scale, p.n_prime);
    if ((s = check_ids(prefix, n_prefix, m->num_text_tokens + m->text_seq_len, fn, "prefix",
                       m->text_seq_len)))
        return s;
    return transformer_generate_text(ctx->transformer, &ctx->params, prefix, n_prefix, &p, out);
}

dalle_status dalle_generate_text(dalle_ctx *ctx, const int32_t *prefix, int n_prefix,
                                 const dalle_sample_params *params, int32_t *out)
{
    return remember(ctx, generate_text(ctx, prefix, n_prefix, params, out));
}

static dalle_status logits(dalle_ctx *ctx, const int32_t *text, const int32_t *image, int batch,
                           int n_image, float cond_scale, int incremental, float *out)
{
    const char *fn = incremental ? "dalle_logits_incremental" : "dalle_logits";
    dalle_status s;
    if ((s = need_ctx(ctx, fn)) || (s = need_transformer(ctx, fn)) ||
        (s = need_ptr(text, fn, "text")) || (s = need_ptr(out, fn, "out")) ||
        (s = need_batch(batch, fn)))
        return s;
    if (n_image < 0 || n_image > ctx->shapes.image_seq_len)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: n_image = %d: expected 0..%d", fn,
                          n_image, ctx->shapes.image_seq_len);
    if (n_image > 0 && (s = need_ptr(image, fn, "image")))
        return s;
    if (!isfinite(cond_scale))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: cond_scale is not finite", fn);
    if ((s = check_text(ctx, text, batch, fn)) ||
        (s = check_ids(image, (int64_t)batch * n_image, ctx->shapes.num_image_tokens, fn, "image",
                       n_image > 0 ? n_image : 1)))
        return s;
    return transformer_logits(ctx->transformer, &ctx->params, text, image, batch, n_image,
                              cond_scale, incremental, out);
}

dalle_status dalle_logits(dalle_ctx *ctx, const int32_t *text, const int32_t *image, int batch,
                          int n_image, float cond_scale, float *out)
{
    return remember(ctx, logits(ctx, text, image, batch, n_image, cond_scale, 0, out));
}

dalle_status dalle_logits_incremental(dalle_ctx *ctx, const int32_t *text, const int32_t *image,
                                      int batch, int n_image, float cond_scale, float *out)
{
    return remember(ctx, logits(ctx, text, image, batch, n_image, cond_scale, 1, out));
}

int dalle_logits_rows(const dalle_ctx *ctx, int n_image)
{
    if (!ctx || !ctx->transformer || n_image < 0 || n_image > ctx->shapes.image_seq_len)
        return 0;
    return transformer_logits_rows(ctx->transformer, n_image);
}

/* ---- VAE ----------------------------------------------------------------- */

static dalle_status decode(dalle_ctx *ctx, const int32_t *ids, int batch, float *pixels)
{
    const char *fn = "dalle_decode";
    dalle_status s;
    if ((s = need_ctx(ctx, fn)) || (s = need_ptr(ids, fn, "ids")) ||
        (s = need_ptr(pixels, fn, "pixels")) || (s = need_batch(batch, fn)) ||
        (s = check_ids(ids, (int64_t)batch * ctx->shapes.image_seq_len,
                       ctx->shapes.num_image_tokens, fn, "ids", ctx->shapes.image_seq_len)))
        return s;
    return vae_decode(ctx->vae, ctx->pool, ids, batch, pixels);
}

dalle_status dalle_decode(dalle_ctx *ctx, const int32_t *ids, int batch, float *pixels)
{
    return remember(ctx, decode(ctx, ids, batch, pixels));
}

static dalle_status encode(dalle_ctx *ctx, const float *pixels, int batch, int32_t *ids)
{
    const char *fn = "dalle_encode";
    dalle_status s;
    if ((s = need_ctx(ctx, fn)) || (s = need_ptr(pixels, fn, "pixels")) ||
        (s = need_ptr(ids, fn, "ids")) || (s = need_batch(batch, fn)))
        return s;
    int64_t n = (int64_t)batch * 3 * ctx->shapes.image_size * ctx->shapes.image_size;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(pixels[i]))
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: pixels[%lld] is not finite", fn,
                              (long long)i);
    return vae_encode(ctx->vae, ctx->pool, pixels, batch, ids);
}

dalle_status dalle_encode(dalle_ctx *ctx, const float *pixels, int batch, int32_t *ids)
{
    return remember(ctx, encode(ctx, pixels, batch, ids));
}
