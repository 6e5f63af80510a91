/* A small reader for the .npy files of the golden cases: format version
 * 1.0, little-endian float32 ('<f4') or int64 ('<i8'), C order. */
#ifndef DALLE_TESTS_NPY_H
#define DALLE_TESTS_NPY_H

#include <stdint.h>

typedef enum npy_dtype { NPY_F32 = 1, NPY_I64 = 2 } npy_dtype;

typedef struct npy {
    npy_dtype dtype;
    int ndim;
    int64_t dims[8];
    int64_t numel;
    void *data; /* float * or int64_t * */
} npy;

/* 0 on success; on failure -1 and a message in err. */
int npy_load(const char *path, npy *out, char *err, int err_cap);
void npy_free(npy *a);

/* The data as int32 (int64 arrays only; values must fit): malloc'ed. */
int32_t *npy_to_i32(const npy *a);

#endif
