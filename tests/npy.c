#include "npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, int cap, const char *path, const char *what)
{
    snprintf(err, (size_t)cap, "%s: %s", path, what);
    return -1;
}

int npy_load(const char *path, npy *out, char *err, int err_cap)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, err_cap, path, "cannot open");
    unsigned char pre[10];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) || pre[6] != 1) {
        fclose(f);
        return fail(err, err_cap, path, "not a version 1.x .npy file");
    }
    size_t hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    char *hdr = calloc(1, hlen + 1);
    if (!hdr || fread(hdr, 1, hlen, f) != hlen) {
        free(hdr);
        fclose(f);
        return fail(err, err_cap, path, "truncated header");
    }
    int bad = 0;
    size_t esize = 0;
    if (strstr(hdr, "'descr': '<f4'")) {
        out->dtype = NPY_F32;
        esize = 4;
    } else if (strstr(hdr, "'descr': '<i8'")) {
        out->dtype = NPY_I64;
        esize = 8;
    } else {
        bad = 1;
    }
    if (!strstr(hdr, "'fortran_order': False"))
        bad = 1;
    const char *sh = strstr(hdr, "'shape': (");
    if (!sh)
        bad = 1;
    out->numel = 1;
    if (!bad) {
        const char *p = sh + 10;
        while (*p && *p != ')') {
            char *end;
            long long v = strtoll(p, &end, 10);
            if (end == p)
                break;
            if (out->ndim == 8 || v < 0) {
                bad = 1;
                break;
            }
            out->dims[out->ndim++] = v;
            out->numel *= v;
            p = end;
            while (*p == ',' || *p == ' ')
                p++;
        }
    }
    free(hdr);
    if (bad) {
        fclose(f);
        return fail(err, err_cap, path, "unsupported header (need <f4 or <i8, C order)");
    }
    out->data = malloc((size_t)out->numel * esize + 1);
    if (!out->data || fread(out->data, esize, (size_t)out->numel, f) != (size_t)out->numel) {
        fclose(f);
        npy_free(out);
        return fail(err, err_cap, path, "truncated data");
    }
    fclose(f);
    return 0;
}

void npy_free(npy *a)
{
    free(a->data);
    a->data = NULL;
}

int32_t *npy_to_i32(const npy *a)
{
    if (a->dtype != NPY_I64)
        return NULL;
    int32_t *r = malloc((size_t)a->numel * sizeof *r + 1);
    if (!r)
        return NULL;
    for (int64_t i = 0; i < a->numel; i++)
        r[i] = (int32_t)((const int64_t *)a->data)[i];
    return r;
}
