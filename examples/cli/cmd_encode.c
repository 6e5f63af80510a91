/* dalle encode: images → image token ids (the VAE's encoder). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static const char usage[] =
    "usage: dalle encode -m MODEL IMAGE...\n"
    "\n"
    "Print the image token ids of each PNG or JPEG file, one line per image\n"
    "(image_seq_len ids), as the VAE of MODEL encodes it. The image is scaled\n"
    "so its shorter side fits the model and the centre square is kept.\n"
    "The output is what `dalle decode --ids-file` reads.\n"
    "\n"
    "  -m, --model FILE       a DALL-E bundle or a VAE (dvae, openai_dvae, vqgan)\n"
    CLI_COMPUTE_HELP;

int cmd_encode(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, "encode", argc, argv);
    const char *model = NULL;
    cli_compute cc = {0, DALLE_BACKEND_CPU, 0};
    int n_images = 0, rc = 0, kind;
    /* positional arguments are compacted to the front of argv: they are
     * the image paths (argv is ours to reorder) */
    char **images = argv;
    while (!rc && (kind = cli_next(&a)) != CLI_ARG_END) {
        if (kind == CLI_ARG_POSITIONAL)
            images[n_images++] = (char *)a.arg;
        else if (cli_is(&a, "-h", "--help")) {
            fputs(usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, "-m", "--model"))
            rc = cli_value(&a, &model);
        else if (cli_compute_option(&a, &cc, &rc))
            ;
        else
            return cli_unexpected(&a);
    }
    if (rc)
        return rc;
    if (!model)
        return cli_usage(&a, "a model is needed: -m MODEL.dalle");
    if (!n_images)
        return cli_usage(&a, "an image file is needed");
    if (cli_check_readable("encode", images, n_images))
        return CLI_FAIL;
    if (cli_check_kind("encode", "-m", model, CLI_KIND_DALLE | CLI_KIND_VAE, NULL))
        return CLI_FAIL;
    dalle_ctx *ctx = cli_load_dalle(model, &cc, 0);
    if (!ctx)
        return CLI_FAIL;
    int size = dalle_image_size(ctx), seq = dalle_image_seq_len(ctx);
    float *pixels = malloc((size_t)3 * size * size * sizeof *pixels);
    int32_t *ids = malloc((size_t)seq * sizeof *ids);
    if (!pixels || !ids)
        rc = cli_error("encode: out of memory");
    /* one image at a time: each line is printed as soon as it is known */
    for (int i = 0; i < n_images && !rc; i++) {
        if (dalle_read_image(images[i], size, pixels) != DALLE_OK ||
            dalle_encode(ctx, pixels, 1, ids) != DALLE_OK) {
            rc = cli_lib_error();
            break;
        }
        for (int k = 0; k < seq; k++)
            printf(k ? " %d" : "%d", (int)ids[k]);
        printf("\n");
    }
    free(pixels);
    free(ids);
    dalle_ctx_free(ctx);
    return rc;
}
