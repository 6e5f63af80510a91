/* dalle decode: image token ids → PNG (the VAE's decoder). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static const char usage[] =
    "usage: dalle decode -m MODEL -o OUT.png (ID... | --ids-file FILE)\n"
    "\n"
    "Decode image token ids into pixels with the VAE of MODEL and write them\n"
    "as a PNG. The ids (separated by spaces, commas or new lines) must be a\n"
    "whole number of images (image_seq_len ids each); several images are\n"
    "written as one grid. `dalle encode` prints ids in this form.\n"
    "\n"
    "  -m, --model FILE       a DALL-E bundle or a VAE (dvae, openai_dvae, vqgan)\n"
    "  -o, --output FILE      the PNG to write\n"
    "  --ids-file FILE        read the ids from FILE ('-': standard input)\n"
    CLI_COMPUTE_HELP;

/* "-5" is a (bad) id, not an option: let the library's range check name it */
static int is_number(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static int decode(const char *model, const char *out, const cli_compute *cc, const int32_t *ids,
                  size_t n)
{
    if (cli_check_kind("decode", "-m", model, CLI_KIND_DALLE | CLI_KIND_VAE, NULL))
        return CLI_FAIL;
    dalle_ctx *ctx = cli_load_dalle(model, cc, 0);
    if (!ctx)
        return CLI_FAIL;
    int rc = 0;
    size_t seq = (size_t)dalle_image_seq_len(ctx), size = (size_t)dalle_image_size(ctx);
    if (n % seq)
        rc = cli_error("decode: %zu ids: expected a multiple of %zu (the image tokens of %s)", n,
                       seq, model);
    else if (n / seq > 4096)
        rc = cli_error("decode: %zu images: at most 4096 go in one PNG", n / seq);
    float *pixels = NULL;
    if (!rc && !(pixels = malloc(n / seq * 3 * size * size * sizeof *pixels)))
        rc = cli_error("decode: out of memory");
    if (!rc && (dalle_decode(ctx, ids, (int)(n / seq), pixels) != DALLE_OK ||
                dalle_write_png(out, pixels, (int)(n / seq), (int)size, (int)size) != DALLE_OK))
        rc = cli_lib_error();
    if (!rc)
        printf("%s\n", out);
    free(pixels);
    dalle_ctx_free(ctx);
    return rc;
}

int cmd_decode(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, "decode", argc, argv);
    const char *model = NULL, *out = NULL, *ids_file = NULL;
    cli_compute cc = {0, DALLE_BACKEND_CPU, 0};
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = 0, kind;
    while (!rc && (kind = cli_next(&a)) != CLI_ARG_END) {
        if (kind == CLI_ARG_POSITIONAL || (kind == CLI_ARG_OPTION && is_number(a.arg)))
            rc = cli_parse_ids("decode", a.arg, "ids", &ids, &n, &cap);
        else if (cli_is(&a, "-h", "--help")) {
            free(ids);
            fputs(usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, "-m", "--model"))
            rc = cli_value(&a, &model);
        else if (cli_is(&a, "-o", "--output"))
            rc = cli_value(&a, &out);
        else if (cli_is(&a, NULL, "--ids-file"))
            rc = cli_value(&a, &ids_file);
        else if (cli_compute_option(&a, &cc, &rc))
            ;
        else
            rc = cli_unexpected(&a);
    }
    if (!rc && !model)
        rc = cli_usage(&a, "a model is needed: -m MODEL.dalle");
    else if (!rc && !out)
        rc = cli_usage(&a, "an output file is needed: -o OUT.png");
    else if (!rc && ids_file && n)
        rc = cli_usage(&a, "ids on the command line or --ids-file, not both");
    if (!rc && ids_file) {
        char *text = cli_read_file("decode", ids_file);
        rc = text ? cli_parse_ids("decode", text, ids_file, &ids, &n, &cap) : CLI_FAIL;
        free(text);
    }
    if (!rc && !n)
        rc = ids_file ? cli_error("decode: '%s' holds no ids", ids_file)
                      : cli_usage(&a, "image token ids are needed (or --ids-file FILE)");
    if (!rc)
        rc = cli_check_writable("decode", out);
    if (!rc)
        rc = decode(model, out, &cc, ids, n);
    free(ids);
    return rc;
}
