/* The temporary folder of the targets whose parser reads a path (fuzz.h). */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dalle/dalle.h"
#include "fuzz.h"

static char root[4096];
static char path_buf[4096 + 256];

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_root(void)
{
    if (root[0])
        remove_tree(root);
}

const char *fuzz_temp_dir(void)
{
    if (root[0])
        return root;
    const char *tmp = getenv("TMPDIR");
    int len = snprintf(root, sizeof root, "%s/dalle-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (len < 0 || (size_t)len >= sizeof root || !mkdtemp(root)) {
        root[0] = '\0';
        return NULL;
    }
    atexit(remove_root);
    return root;
}

static const char *full_path(const char *name)
{
    const char *dir = fuzz_temp_dir();
    if (!dir)
        return NULL;
    int len = snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
    return len > 0 && (size_t)len < sizeof path_buf ? path_buf : NULL;
}

const char *fuzz_write_file(const char *name, const void *data, size_t size)
{
    const char *path = full_path(name);
    FILE *f = path ? fopen(path, "wb") : NULL;
    if (!f)
        return NULL;
    size_t put = size ? fwrite(data, 1, size, f) : 0;
    int ok = fclose(f) == 0 && put == size;
    return ok ? path : NULL;
}

const char *fuzz_fresh_dir(const char *name)
{
    const char *path = full_path(name);
    if (!path)
        return NULL;
    remove_tree(path);
    return mkdir(path, 0700) == 0 ? path : NULL;
}

int fuzz_note(const char *call, int s)
{
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("DALLE_FUZZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "  %s: %s%s%s\n", call, s ? dalle_strerror(s) : "ok", s ? ": " : "",
                s ? dalle_last_error() : "");
    return s;
}
