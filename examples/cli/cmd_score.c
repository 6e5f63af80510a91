/* dalle score: how well images match a caption, by CLIP, best first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static const char usage[] =
    "usage: dalle score --clip CLIP.dalle CAPTION IMAGE...\n"
    "\n"
    "Score each PNG or JPEG file against the caption with a CLIP model and\n"
    "print 'SCORE<TAB>FILE' lines, best first. The score is CLIP's logit:\n"
    "the scaled cosine similarity of the caption and the image\n"
    "(exp(temperature) * cos for DALLE-pytorch's CLIP, logit_scale * cos for\n"
    "OpenAI's). Images are scaled so their shorter side fits the model and\n"
    "the centre square is kept. The caption is cut to the model's context.\n"
    "\n"
    "  --clip FILE            CLIP bundle (kind clip or openai_clip)\n"
    CLI_COMPUTE_HELP;

int cmd_score(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, "score", argc, argv);
    const char *clip = NULL, *caption = NULL;
    cli_compute cc = {0, DALLE_BACKEND_CPU, 0};
    int n_images = 0, rc = 0, kind;
    char **images = argv; /* positional arguments compacted to the front */
    while (!rc && (kind = cli_next(&a)) != CLI_ARG_END) {
        if (kind == CLI_ARG_POSITIONAL) {
            if (!caption)
                caption = a.arg;
            else
                images[n_images++] = (char *)a.arg;
        } else if (cli_is(&a, "-h", "--help")) {
            fputs(usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, "-m", "--clip")) {
            rc = cli_value(&a, &clip);
        } else if (cli_compute_option(&a, &cc, &rc)) {
        } else {
            return cli_unexpected(&a);
        }
    }
    if (rc)
        return rc;
    if (!clip)
        return cli_usage(&a, "a CLIP model is needed: --clip CLIP.dalle");
    if (!caption)
        return cli_usage(&a, "a caption is needed");
    if (!n_images)
        return cli_usage(&a, "an image file is needed");
    if (cli_check_readable("score", images, n_images))
        return CLI_FAIL;

    cli_clip c;
    if (cli_clip_open(&c, "score", clip, caption, &cc))
        return CLI_FAIL;
    size_t img = (size_t)3 * c.size * c.size;
    float *pixels = malloc((size_t)n_images * img * sizeof *pixels);
    float *scores = malloc((size_t)n_images * sizeof *scores);
    int *order = malloc((size_t)n_images * sizeof *order);
    if (!pixels || !scores || !order)
        rc = cli_error("score: out of memory");
    for (int i = 0; i < n_images && !rc; i++)
        if (dalle_read_image(images[i], c.size, pixels + (size_t)i * img) != DALLE_OK)
            rc = cli_lib_error();
    if (!rc)
        rc = cli_clip_rank(&c, pixels, n_images, c.size, scores, order);
    if (!rc) {
        for (int i = 0; i < n_images; i++)
            printf("%.4f\t%s\n", (double)scores[order[i]], images[order[i]]);
    }
    free(pixels);
    free(scores);
    free(order);
    cli_clip_close(&c);
    return rc;
}
