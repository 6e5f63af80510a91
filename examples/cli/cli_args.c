/* Option parsing shared by the subcommands. Hand-written rather than
 * getopt_long: options may follow positional arguments on every platform,
 * and every error becomes one line naming the command and the option. */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

void cli_args_init(cli_args *a, const char *cmd, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->argc = argc;
    a->argv = argv;
}

int cli_next(cli_args *a)
{
    if (a->i >= a->argc)
        return CLI_ARG_END;
    a->arg = a->argv[a->i++];
    a->name[0] = '\0';
    a->inline_value = NULL;
    if (!a->only_positional && !strcmp(a->arg, "--")) {
        a->only_positional = 1;
        return cli_next(a);
    }
    if (a->only_positional || a->arg[0] != '-' || !a->arg[1])
        return CLI_ARG_POSITIONAL;
    /* "--name=value": split; a short option never carries '=' */
    const char *eq = a->arg[1] == '-' ? strchr(a->arg, '=') : NULL;
    size_t len = eq ? (size_t)(eq - a->arg) : strlen(a->arg);
    if (len >= sizeof a->name)
        len = sizeof a->name - 1;
    memcpy(a->name, a->arg, len);
    a->name[len] = '\0';
    a->inline_value = eq ? eq + 1 : NULL;
    return CLI_ARG_OPTION;
}

int cli_is(const cli_args *a, const char *shortopt, const char *longopt)
{
    return (shortopt && !strcmp(a->name, shortopt)) || (longopt && !strcmp(a->name, longopt));
}

int cli_usage(const cli_args *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dalle: %s: ", a->cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_USAGE;
}

int cli_unexpected(const cli_args *a)
{
    if (a->name[0])
        return cli_usage(a, "unknown option '%s' (see dalle %s --help)", a->name, a->cmd);
    return cli_usage(a, "unexpected argument '%s' (see dalle %s --help)", a->arg, a->cmd);
}

int cli_flag(cli_args *a)
{
    if (a->inline_value)
        return cli_usage(a, "%s takes no value", a->name);
    return 0;
}

int cli_value(cli_args *a, const char **value)
{
    if (a->inline_value) {
        *value = a->inline_value;
        return 0;
    }
    if (a->i >= a->argc)
        return cli_usage(a, "%s needs a value", a->name);
    *value = a->argv[a->i++];
    return 0;
}

int cli_int_value(cli_args *a, long long lo, long long hi, long long *out)
{
    const char *v = NULL;
    if (cli_value(a, &v))
        return CLI_USAGE;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || end == v)
        return cli_usage(a, "%s: '%s' is not an integer", a->name, v);
    if (errno == ERANGE || x < lo || x > hi)
        return cli_usage(a, "%s: %s is out of range %lld..%lld", a->name, v, lo, hi);
    *out = x;
    return 0;
}

int cli_u64_value(cli_args *a, uint64_t *out)
{
    const char *v = NULL;
    if (cli_value(a, &v))
        return CLI_USAGE;
    char *end;
    errno = 0;
    /* strtoull accepts "-1" (as 2^64 - 1): refuse a sign instead */
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || end == v || strchr(v, '-') || strchr(v, '+'))
        return cli_usage(a, "%s: '%s' is not a non-negative integer", a->name, v);
    if (errno == ERANGE)
        return cli_usage(a, "%s: %s is out of range 0..%llu", a->name, v,
                         (unsigned long long)UINT64_MAX);
    *out = (uint64_t)x;
    return 0;
}

int cli_float_value(cli_args *a, double lo, int lo_open, double hi, int hi_open, double *out)
{
    const char *v = NULL;
    if (cli_value(a, &v))
        return CLI_USAGE;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || end == v || !isfinite(x))
        return cli_usage(a, "%s: '%s' is not a finite number", a->name, v);
    if (x < lo || (lo_open && x == lo) || x > hi || (hi_open && x == hi))
        return cli_usage(a, "%s: %s is out of range %s%g, %g%s", a->name, v, lo_open ? "(" : "[",
                         lo, hi, hi_open ? ")" : "]");
    *out = x;
    return 0;
}

int cli_parse_ids(const char *cmd, const char *text, const char *origin, int32_t **ids,
                  size_t *n, size_t *cap)
{
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',')
            p++;
        if (!*p)
            return 0;
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        size_t len = strcspn(p, " \t\n\r,");
        if (end == p || (size_t)(end - p) != len) {
            fprintf(stderr, "dalle: %s: %s: '%.*s' is not an integer token id\n", cmd, origin,
                    (int)(len > 40 ? 40 : len), p);
            return CLI_USAGE;
        }
        if (errno == ERANGE || x < INT32_MIN || x > INT32_MAX) {
            /* keep it an int32 the library can reject with its range message */
            x = x < 0 ? INT32_MIN : INT32_MAX;
        }
        if (*n == *cap) {
            size_t c = *cap ? *cap * 2 : 256;
            int32_t *m = realloc(*ids, c * sizeof *m);
            if (!m)
                return cli_error("%s: out of memory", cmd);
            *ids = m;
            *cap = c;
        }
        (*ids)[(*n)++] = (int32_t)x;
        p = end;
    }
}

char *cli_read_file(const char *cmd, const char *path)
{
    int is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        cli_error("%s: cannot open '%s': %s", cmd, path, strerror(errno));
        return NULL;
    }
    size_t n = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *m = realloc(buf, cap * 2);
            if (!m) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = m;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    int err = ferror(f);
    if (!is_stdin)
        fclose(f);
    if (!buf) {
        cli_error("%s: out of memory reading '%s'", cmd, path);
        return NULL;
    }
    if (err) {
        free(buf);
        cli_error("%s: cannot read '%s'", cmd, is_stdin ? "stdin" : path);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int cli_check_writable(const char *cmd, const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return cli_error("%s: out of memory", cmd);
    const char *dir = dirname(copy); /* may modify copy, hence the copy */
    int ok = access(dir, W_OK) == 0;
    int e = errno;
    if (!ok)
        cli_error("%s: cannot write '%s': folder '%s': %s", cmd, path, dir, strerror(e));
    free(copy);
    return ok ? 0 : CLI_FAIL;
}

int cli_check_readable(const char *cmd, char **paths, int n)
{
    for (int i = 0; i < n; i++)
        if (access(paths[i], R_OK) != 0)
            return cli_error("%s: cannot read '%s': %s", cmd, paths[i], strerror(errno));
    return 0;
}
