/* The `dalle` command: generate images, inspect and convert models.
 * One file per subcommand (cmd_*.c); this one only dispatches. */
#include <dalle/dalle.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const char usage[] =
    "usage: dalle COMMAND [ARGS]\n"
    "\n"
    "Text-to-image generation with DALL-E models converted from PyTorch.\n"
    "\n"
    "commands:\n"
    "  generate -m MODEL CAPTION    caption -> PNG images (optionally reranked by CLIP)\n"
    "  info BUNDLE                  kind, hyper-parameters and tensors of a model bundle\n"
    "  tokenize -m BUNDLE TEXT      the token ids of a caption\n"
    "  encode -m MODEL IMAGE...     image files -> image token ids\n"
    "  decode -m MODEL -o OUT ID... image token ids -> PNG\n"
    "  score --clip CLIP CAPTION IMAGE...\n"
    "                               CLIP scores of images for a caption, best first\n"
    "  convert INPUT... -o OUT      PyTorch checkpoints -> bundle (python3 -m dalle.convert)\n"
    "  train-dalle --vae VAE (--data DIR | --synthetic N) -o OUT\n"
    "                               train a DALL-E transformer on captioned images\n"
    "  train-bpe --synthetic N -o MERGES.txt\n"
    "                               learn a small BPE vocabulary from captions\n"
    "  judge -m MODEL [--clip CLIP]\n"
    "                               a synthetic-world model's accuracy on held-out captions\n"
    "  train-vae (--data DIR | --synthetic N) -o OUT\n"
    "                               train a discrete VAE (the image tokenizer)\n"
    "  train-clip --bpe MERGES (--data DIR | --synthetic N) -o OUT\n"
    "                               train a CLIP to rerank generated images\n"
    "\n"
    "options:\n"
    "  -h, --help       this help (COMMAND --help: help on a command)\n"
    "  --version        the library version\n"
    "\n"
    "Errors are one line on stderr; the exit status is 0 on success, 1 on\n"
    "failure, 2 for a usage error and 130 when Ctrl-C stopped a generation.\n";

int cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dalle: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_FAIL;
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"generate", cmd_generate}, {"info", cmd_info},     {"tokenize", cmd_tokenize},
    {"encode", cmd_encode},     {"decode", cmd_decode}, {"score", cmd_score},
    {"convert", cmd_convert},   {"train-dalle", cmd_train_dalle},
    {"train-bpe", cmd_train_bpe},     {"judge", cmd_judge},
    {"train-vae", cmd_train_vae}, {"train-clip", cmd_train_clip},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("dalle %s (libdalle ABI %d)\n", dalle_version(), DALLE_VERSION_MAJOR);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(cmd, commands[i].name))
            return commands[i].run(argc - 2, argv + 2);
    cli_error("unknown command '%s' (try dalle --help)", cmd);
    return CLI_USAGE;
}
