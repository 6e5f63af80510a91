/* Generate one image for a caption and write it as a PNG.
 *
 *   cc generate.c $(pkg-config --cflags --libs dalle) -o generate
 *   ./generate model.dalle "a green triangle on a yellow background" out.png
 */
#include <dalle/dalle.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(dalle_ctx *ctx)
{
    fprintf(stderr, "generate: %s\n", dalle_last_error());
    dalle_ctx_free(ctx);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.dalle CAPTION OUT.png\n", argv[0]);
        return 2;
    }
    dalle_ctx *ctx = NULL;
    if (dalle_ctx_create(argv[1], NULL, &ctx) != DALLE_OK)
        return fail(ctx);

    int text_len = dalle_text_seq_len(ctx), size = dalle_image_size(ctx);
    int32_t *text = malloc(sizeof *text * text_len);
    int32_t *ids = malloc(sizeof *ids * dalle_image_seq_len(ctx));
    float *pixels = malloc(sizeof *pixels * 3 * size * size);

    dalle_sample_params sp = dalle_sample_default_params();
    sp.seed = 42;
    sp.filter_thres = 0.9f; /* keep the top 10% of logits, as DALLE-pytorch's generate.py */

    int ok = text && ids && pixels &&
             dalle_tokenize(ctx, argv[2], text, text_len, 0) == DALLE_OK &&
             dalle_sample(ctx, text, 1, &sp, ids) == DALLE_OK &&
             dalle_decode(ctx, ids, 1, pixels) == DALLE_OK &&
             dalle_write_png(argv[3], pixels, 1, size, size) == DALLE_OK;
    free(text);
    free(ids);
    free(pixels);
    if (!ok)
        return fail(ctx);
    printf("wrote %s (%dx%d)\n", argv[3], size, size);
    dalle_ctx_free(ctx);
    return 0;
}
