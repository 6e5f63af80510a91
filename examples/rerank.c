/* Generate N images for a caption, rank them with CLIP, write them best
 * first: rank-0.png, rank-1.png, ...
 *
 *   cc rerank.c $(pkg-config --cflags --libs dalle) -o rerank
 *   ./rerank model.dalle clip.dalle "a red circle" 8
 */
#include <dalle/dalle.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Generated pixels [3][size][size] in [0, 1] → 8-bit RGB [size][size][3],
 * the form clip_preprocess takes (and what a PNG of the image holds). */
static void to_rgb8(const float *px, int size, uint8_t *rgb)
{
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < size * size; i++) {
            float v = px[c * size * size + i];
            rgb[i * 3 + c] = (uint8_t)(v <= 0 ? 0 : v >= 1 ? 255 : lrintf(v * 255.0f));
        }
}

int main(int argc, char **argv)
{
    if (argc != 5 || atoi(argv[4]) < 1) {
        fprintf(stderr, "usage: %s MODEL.dalle CLIP.dalle CAPTION N\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[4]), rc = 1;
    dalle_ctx *ctx = NULL;
    clip_ctx *clip = NULL;
    dalle_tokenizer *tok = NULL;
    if (dalle_ctx_create(argv[1], NULL, &ctx) || clip_ctx_create(argv[2], NULL, &clip) ||
        dalle_tokenizer_create(argv[2], &tok)) {
        fprintf(stderr, "rerank: %s\n", dalle_last_error());
        goto out;
    }
    int tl = dalle_text_seq_len(ctx), size = dalle_image_size(ctx);
    int ctl = clip_text_seq_len(clip), csize = clip_image_size(clip);
    int openai = !strcmp(dalle_bundle_kind(clip_ctx_bundle(clip)), "openai_clip");
    int32_t *text = malloc(sizeof *text * tl), *ctext = malloc(sizeof *ctext * ctl);
    int32_t *ids = malloc(sizeof *ids * n * dalle_image_seq_len(ctx));
    float *px = malloc(sizeof *px * n * 3 * size * size);
    float *cpx = malloc(sizeof *cpx * n * 3 * csize * csize);
    uint8_t *rgb = malloc((size_t)size * size * 3);
    float *scores = malloc(sizeof *scores * n);
    int *order = malloc(sizeof *order * n);
    dalle_sample_params sp = dalle_sample_default_params();
    sp.seed = 1;
    int ok = text && ctext && ids && px && cpx && rgb && scores && order &&
             !dalle_tokenize(ctx, argv[3], text, tl, 0) &&
             !(openai ? dalle_tokenizer_tokenize_clip(tok, argv[3], ctext, ctl, 0)
                      : dalle_tokenizer_tokenize(tok, argv[3], ctext, ctl, 0));
    int32_t *captions = malloc(sizeof *captions * n * tl);
    ok = ok && captions;
    for (int i = 0; ok && i < n; i++) /* one caption per image */
        memcpy(captions + (size_t)i * tl, text, sizeof *text * tl);
    ok = ok && !dalle_sample(ctx, captions, n, &sp, ids) && !dalle_decode(ctx, ids, n, px);
    for (int i = 0; ok && i < n; i++) {
        to_rgb8(px + (size_t)i * 3 * size * size, size, rgb);
        ok = !clip_preprocess(clip, rgb, size, size, cpx + (size_t)i * 3 * csize * csize);
    }
    ok = ok && !clip_rank(clip, ctext, cpx, n, scores, order);
    for (int r = 0; ok && r < n; r++) {
        char path[64];
        snprintf(path, sizeof path, "rank-%d.png", r);
        ok = !dalle_write_png(path, px + (size_t)order[r] * 3 * size * size, 1, size, size);
        printf("%s\timage %d\tscore %.4f\n", path, order[r], scores[order[r]]);
    }
    if (ok)
        rc = 0;
    else
        fprintf(stderr, "rerank: %s\n", dalle_last_error());
    free(text), free(ctext), free(ids), free(px), free(cpx), free(rgb), free(scores), free(order);
    free(captions);
out:
    dalle_tokenizer_free(tok);
    clip_ctx_free(clip);
    dalle_ctx_free(ctx);
    return rc;
}
