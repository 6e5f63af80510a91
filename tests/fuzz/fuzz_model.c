/* Fuzz target for the model loaders: a bundle's metadata and tensors read
 * as a DALL·E transformer, a VAE (DALLE-pytorch's DiscreteVAE, OpenAI's
 * dVAE, VQGAN), a CLIP, and its tokenizer (lib/context.c, transformer_load.c,
 * vae*.c, clip_*.c, tokenizer.c tokenizer_from_bundle; the bundle container
 * itself is fuzz_bundle's).
 *
 * The input is a bundle, written to a temporary file and opened with
 * dalle_ctx_create, clip_ctx_create and dalle_tokenizer_create. A model that
 * loads and is small (the seeds are) then runs once: logits of an
 * all-padding caption, a decode of image tokens 0, CLIP's text features.
 * Anything else than an error status or a working model, a crash, a
 * sanitizer report, a leak or a hang is a bug. Seeds: corpus_model/
 * (make_corpus writes them). In the libFuzzer build the bundle's crc32s are
 * not checked (README.md).
 */
#include <stdint.h>
#include <stdlib.h>

#include "dalle/dalle.h"
#include "fuzz.h"

#define SMALL 64 /* run a model only when its sequences and images are this small */

static void run_dalle(dalle_ctx *ctx)
{
    const int T = dalle_text_seq_len(ctx), I = dalle_image_seq_len(ctx);
    const int size = dalle_image_size(ctx);
    if (T > 0 && T <= SMALL && I <= SMALL && dalle_total_tokens(ctx) <= 4096) {
        int32_t *text = calloc((size_t)T, sizeof *text);
        size_t rows = (size_t)dalle_logits_rows(ctx, 0);
        float *out = malloc(rows * (size_t)dalle_total_tokens(ctx) * sizeof *out + 1);
        if (text && out)
            (void)fuzz_note("dalle_logits", dalle_logits(ctx, text, NULL, 1, 0, 1.0f, out));
        free(text);
        free(out);
    }
    if (I > 0 && I <= SMALL && size > 0 && size <= SMALL) {
        int32_t *ids = calloc((size_t)I, sizeof *ids);
        float *px = malloc(sizeof(float) * 3 * (size_t)size * size);
        if (ids && px && fuzz_note("dalle_decode", dalle_decode(ctx, ids, 1, px)) == DALLE_OK) {
            int32_t *back = malloc(sizeof *back * (size_t)I);
            if (back && dalle_encode(ctx, px, 1, back) == DALLE_OK)
                for (int i = 0; i < I; i++)
                    if (back[i] < 0 || back[i] >= dalle_num_image_tokens(ctx))
                        FUZZ_BUG(); /* an image token outside the codebook */
            free(back);
        }
        free(ids);
        free(px);
    }
}

static void run_clip(clip_ctx *ctx)
{
    const int T = clip_text_seq_len(ctx), D = clip_embed_dim(ctx);
    if (T < 1 || T > SMALL || D < 1 || D > 4096)
        return;
    int32_t *text = calloc((size_t)T, sizeof *text);
    float *feat = malloc(sizeof *feat * (size_t)D);
    if (text && feat)
        (void)fuzz_note("clip_encode_text", clip_encode_text(ctx, text, 1, feat));
    free(text);
    free(feat);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("model.dalle", data, size);
    if (!path)
        return 0;
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = 1;
    cp.max_batch = 1;
    dalle_ctx *ctx = NULL;
    if (fuzz_note("dalle_ctx_create", dalle_ctx_create(path, &cp, &ctx)) == DALLE_OK) {
        run_dalle(ctx);
        dalle_ctx_free(ctx);
    } else if (ctx) {
        FUZZ_BUG(); /* a failed load wrote the caller's pointer */
    }
    clip_ctx *clip = NULL;
    if (fuzz_note("clip_ctx_create", clip_ctx_create(path, &cp, &clip)) == DALLE_OK) {
        run_clip(clip);
        clip_ctx_free(clip);
    } else if (clip) {
        FUZZ_BUG();
    }
    dalle_tokenizer *tok = NULL;
    if (fuzz_note("dalle_tokenizer_create", dalle_tokenizer_create(path, &tok)) == DALLE_OK) {
        int32_t ids[8];
        int n;
        (void)dalle_tokenizer_encode(tok, "a red circle", ids, 8, &n);
        dalle_tokenizer_free(tok);
    } else if (tok) {
        FUZZ_BUG();
    }
    return 0;
}
