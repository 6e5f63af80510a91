/* dalle convert: run the Python converter (python3 -m dalle.convert).
 * The converter reads PyTorch checkpoints without PyTorch; it is Python
 * because pickle is. This command only finds it and hands over. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

static const char usage[] =
    "usage: dalle convert INPUT... -o OUT.dalle [converter options]\n"
    "\n"
    "Convert PyTorch checkpoints (DALLE-pytorch DALLE / DiscreteVAE / CLIP,\n"
    "OpenAI dVAE and CLIP, taming VQGAN) into a bundle: runs\n"
    "`python3 -m dalle.convert ARGS...` and exits with its status.\n"
    "`dalle convert --help` shows the converter's own options.\n"
    "\n"
    "The package is looked for in $DALLE_PYTHONPATH (when set, only there),\n"
    "then beside this program (../share/libdalle/python, or the source tree\n"
    "it was built in), else Python's own path (pip install ./bindings/python).\n"
    "$DALLE_PYTHON names the interpreter (default python3).\n";

#ifndef DALLE_SOURCE_PYTHONPATH
#define DALLE_SOURCE_PYTHONPATH ""
#endif

/* Whether dir holds the package (dir/dalle/convert.py). */
static int has_package(const char *dir)
{
    char path[PATH_MAX];
    if (!*dir || snprintf(path, sizeof path, "%s/dalle/convert.py", dir) >= (int)sizeof path)
        return 0;
    return access(path, R_OK) == 0;
}

/* The folder to put on PYTHONPATH, into buf; "" when Python's own path
 * must do (an installed package). */
static void find_package(char *buf, size_t cap)
{
    buf[0] = '\0';
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        /* installed: PREFIX/bin/dalle and PREFIX/share/libdalle/python;
         * built: SOURCE/BUILD/examples/dalle and SOURCE/bindings/python */
        static const char *rel[] = {"../share/libdalle/python", "../../bindings/python"};
        for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
            char cand[PATH_MAX];
            if (snprintf(cand, sizeof cand, "%s/%s", exe, rel[i]) < (int)sizeof cand &&
                has_package(cand)) {
                snprintf(buf, cap, "%s", cand);
                return;
            }
        }
    }
    /* a build folder outside the source tree */
    if (has_package(DALLE_SOURCE_PYTHONPATH))
        snprintf(buf, cap, "%s", DALLE_SOURCE_PYTHONPATH);
}

int cmd_convert(int argc, char **argv)
{
    if (argc == 0) {
        cli_error("convert: an input checkpoint and -o OUT.dalle are needed "
                  "(see dalle convert --help)");
        return CLI_USAGE;
    }
    if (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))
        fputs(usage, stdout), fputs("\n", stdout), fflush(stdout);

    const char *env = getenv("DALLE_PYTHONPATH");
    char dir[PATH_MAX];
    if (env) {
        /* a set but wrong DALLE_PYTHONPATH is a mistake to name, not to
         * work around with another copy of the converter */
        if (!has_package(env))
            return cli_error("convert: DALLE_PYTHONPATH='%s' holds no dalle/convert.py", env);
        snprintf(dir, sizeof dir, "%s", env);
    } else
        find_package(dir, sizeof dir);
    if (dir[0]) {
        /* ahead of an existing PYTHONPATH, so this build's converter wins */
        const char *old = getenv("PYTHONPATH");
        size_t len = strlen(dir) + (old ? strlen(old) + 1 : 0) + 1;
        char *pp = malloc(len);
        if (!pp)
            return cli_error("convert: out of memory");
        snprintf(pp, len, "%s%s%s", dir, old && *old ? ":" : "", old && *old ? old : "");
        setenv("PYTHONPATH", pp, 1);
        free(pp);
    }
    const char *python = getenv("DALLE_PYTHON");
    if (!python || !*python)
        python = "python3";
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (!args)
        return cli_error("convert: out of memory");
    args[0] = (char *)python;
    args[1] = "-m";
    args[2] = "dalle.convert";
    memcpy(args + 3, argv, (size_t)argc * sizeof *args);
    fflush(stdout);
    /* exec: the converter's exit status (and signals) become ours */
    execvp(python, args);
    int e = errno;
    free(args);
    cli_error("convert: cannot run '%s': %s (set DALLE_PYTHON to a Python 3)", python,
              strerror(e));
    return 127;
}
