/* Loading models for the subcommands, and CLIP scoring with its
 * tokenizer and input preparation (shared by generate and score). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

int cli_lib_error(void) { return cli_error("%s", dalle_last_error()); }

static int kind_class(const char *kind)
{
    if (!strcmp(kind, "dalle"))
        return CLI_KIND_DALLE;
    if (!strcmp(kind, "dvae") || !strcmp(kind, "openai_dvae") || !strcmp(kind, "vqgan"))
        return CLI_KIND_VAE;
    if (!strcmp(kind, "clip") || !strcmp(kind, "openai_clip"))
        return CLI_KIND_CLIP;
    return 0;
}

static const char *wanted(int kinds)
{
    switch (kinds) {
    case CLI_KIND_DALLE: return "a DALL-E model (kind dalle)";
    case CLI_KIND_DALLE | CLI_KIND_VAE: return "a DALL-E model or a VAE (kind dalle, dvae, openai_dvae or vqgan)";
    case CLI_KIND_CLIP: return "a CLIP model (kind clip or openai_clip)";
    default: return "another kind of model";
    }
}

int cli_check_kind(const char *cmd, const char *option, const char *path, int kinds,
                   const char **kind_out)
{
    static char kind[32];
    dalle_bundle *b;
    if (dalle_bundle_open(path, &b) != DALLE_OK)
        return cli_lib_error();
    snprintf(kind, sizeof kind, "%s", dalle_bundle_kind(b));
    dalle_bundle_close(b);
    if (kind_out)
        *kind_out = kind;
    if (kind_class(kind) & kinds)
        return 0;
    const char *hint = kind_class(kind) == CLI_KIND_CLIP && cmd && !strcmp(cmd, "generate")
                           ? " (a CLIP model goes to --clip)"
                           : "";
    return cli_error("%s: %s: '%s' is a model of kind '%s'; %s wants %s%s", cmd, option, path,
                     kind, option, wanted(kinds), hint);
}

int cli_compute_option(cli_args *a, cli_compute *c, int *rc)
{
    if (cli_is(a, "-t", "--threads")) {
        *rc = cli_int_value(a, 0, 4096, &c->threads);
    } else if (cli_is(a, NULL, "--device")) {
        *rc = cli_int_value(a, 0, 1023, &c->device);
    } else if (cli_is(a, NULL, "--backend")) {
        const char *v = NULL;
        static const char *const names[] = {"cpu", "cuda", "auto"};
        static const int values[] = {DALLE_BACKEND_CPU, DALLE_BACKEND_CUDA, DALLE_BACKEND_AUTO};
        if ((*rc = cli_value(a, &v)))
            return 1;
        for (int i = 0; i < 3; i++)
            if (!strcmp(v, names[i])) {
                c->backend = values[i];
                return 1;
            }
        *rc = cli_usage(a, "%s: '%s': expected cpu, cuda or auto", a->name, v);
    } else {
        return 0;
    }
    return 1;
}

static dalle_ctx_params compute_params(const cli_compute *c)
{
    dalle_ctx_params p = dalle_ctx_default_params();
    p.n_threads = (int)c->threads;
    p.backend = (dalle_backend)c->backend;
    p.device = (int)c->device;
    return p;
}

dalle_ctx *cli_load_dalle(const char *path, const cli_compute *c, int max_batch)
{
    dalle_ctx_params p = compute_params(c);
    if (max_batch > 0)
        p.max_batch = max_batch;
    dalle_ctx *ctx;
    if (dalle_ctx_create(path, &p, &ctx) != DALLE_OK) {
        cli_lib_error();
        return NULL;
    }
    return ctx;
}

/* ---- CLIP ------------------------------------------------------------------ */

void cli_clip_close(cli_clip *c)
{
    clip_ctx_free(c->ctx);
    dalle_tokenizer_free(c->tok);
    free(c->text);
    memset(c, 0, sizeof *c);
}

int cli_clip_open(cli_clip *c, const char *cmd, const char *path, const char *caption,
                  const cli_compute *compute)
{
    memset(c, 0, sizeof *c);
    if (cli_check_kind(cmd, "--clip", path, CLI_KIND_CLIP, NULL))
        return CLI_FAIL;
    dalle_ctx_params p = compute_params(compute);
    if (clip_ctx_create(path, &p, &c->ctx) != DALLE_OK)
        goto fail;
    c->openai = !strcmp(dalle_bundle_kind(clip_ctx_bundle(c->ctx)), "openai_clip");
    c->size = clip_image_size(c->ctx);
    c->text_len = clip_text_seq_len(c->ctx);
    c->text = calloc((size_t)c->text_len, sizeof *c->text);
    if (!c->text) {
        cli_error("out of memory");
        cli_clip_close(c);
        return CLI_FAIL;
    }
    /* The bundle's own tokenizer (converted with --bpe), in the layout the
     * model was trained on: OpenAI's clip.tokenize adds <|startoftext|> and
     * <|endoftext|>, DALLE-pytorch's tokenize does not. A caption longer
     * than the model takes is cut, as CLIP reranking scripts do. */
    if (dalle_tokenizer_create(path, &c->tok) != DALLE_OK)
        goto fail;
    dalle_status s = c->openai
                         ? dalle_tokenizer_tokenize_clip(c->tok, caption, c->text, c->text_len, 1)
                         : dalle_tokenizer_tokenize(c->tok, caption, c->text, c->text_len, 1);
    if (s != DALLE_OK)
        goto fail;
    return 0;
fail:
    cli_lib_error();
    cli_clip_close(c);
    return CLI_FAIL;
}

/* [3][size][size] in [0, 1] → 8-bit interleaved RGB, rounded as
 * dalle_write_png rounds, so an image scores the same here as from the PNG
 * file written of it (`dalle score`). */
static void to_rgb8(const float *img, int size, uint8_t *rgb)
{
    size_t plane = (size_t)size * size;
    for (size_t k = 0; k < plane; k++)
        for (int c = 0; c < 3; c++) {
            float v = img[c * plane + k];
            rgb[k * 3 + c] = !(v > 0.0f) ? 0 : v >= 1.0f ? 255 : (uint8_t)lrintf(v * 255.0f);
        }
}

int cli_clip_rank(cli_clip *c, const float *pixels, int n, int size, float *scores, int *order)
{
    size_t in_img = (size_t)3 * c->size * c->size, img = (size_t)3 * size * size;
    uint8_t *rgb = malloc(img);
    float *in = malloc((size_t)n * in_img * sizeof *in);
    int rc = 0;
    if (!rgb || !in)
        rc = cli_error("out of memory for CLIP's input");
    /* clip_preprocess: CLIP's own transform (bicubic resize when the sizes
     * differ, centre crop, and OpenAI's normalisation) */
    for (int i = 0; i < n && !rc; i++) {
        to_rgb8(pixels + (size_t)i * img, size, rgb);
        if (clip_preprocess(c->ctx, rgb, size, size, in + (size_t)i * in_img) != DALLE_OK)
            rc = cli_lib_error();
    }
    if (!rc && clip_rank(c->ctx, c->text, in, n, scores, order) != DALLE_OK)
        rc = cli_lib_error();
    free(rgb);
    free(in);
    return rc;
}
