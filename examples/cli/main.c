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
    "  info BUNDLE      kind, hyper-parameters and tensors of a model bundle\n"
    "\n"
    "options:\n"
    "  -h, --help       this help (COMMAND --help: help on a command)\n"
    "  --version        the library version\n"
    "\n"
    "Convert PyTorch checkpoints with: python3 -m dalle.convert INPUT... -o OUT.dalle\n";

int cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dalle: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("dalle %s (libdalle ABI %d)\n", dalle_version(), DALLE_VERSION_MAJOR);
        return 0;
    }
    if (!strcmp(cmd, "info"))
        return cmd_info(argc - 2, argv + 2);
    cli_error("unknown command '%s' (try dalle --help)", cmd);
    return 2;
}
