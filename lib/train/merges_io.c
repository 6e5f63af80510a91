#include "merges_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bundle.h"
#include "../error.h"

int merges_path_is_bundle(const char *path)
{
    char magic[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    return got == sizeof magic && !memcmp(magic, "DALLEBND", 8);
}

static dalle_status read_whole(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dalle_fail(DALLE_ERR_IO, "%s: cannot open the tokenizer", path);
    size_t n = 0, cap = 1 << 16;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            uint8_t *m = cap < ((size_t)1 << 30) ? realloc(buf, cap * 2) : NULL;
            if (!m) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = m;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (!got)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        return dalle_fail(buf ? DALLE_ERR_IO : DALLE_ERR_OUT_OF_MEMORY, "%s: cannot read", path);
    }
    *data = buf;
    *size = n;
    return DALLE_OK;
}

dalle_status merges_from_bundle(dalle_bundle *b, uint8_t **data, size_t *size)
{
    int idx = dalle_bundle_find_tensor(b, "tokenizer.bpe_merges");
    dalle_tensor_info info;
    if (idx < 0)
        return DALLE_OK;
    dalle_status s = dalle_bundle_tensor_info(b, idx, &info);
    if (s)
        return s;
    uint8_t *buf = malloc(info.nbytes ? (size_t)info.nbytes : 1);
    if (!buf)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory for the tokenizer",
                          bundle_path(b));
    if ((s = dalle_bundle_read_tensor(b, idx, buf, (size_t)info.nbytes))) {
        free(buf);
        return s;
    }
    *data = buf;
    *size = (size_t)info.nbytes;
    return DALLE_OK;
}

dalle_status merges_from_path(const char *path, uint8_t **data, size_t *size)
{
    if (!merges_path_is_bundle(path))
        return read_whole(path, data, size);
    dalle_bundle *b;
    dalle_status s = dalle_bundle_open(path, &b);
    if (s)
        return s;
    s = merges_from_bundle(b, data, size);
    dalle_bundle_close(b);
    return s;
}
