/* The emulated device backend of the C tests (test_cuda_model, test_cuda_vae):
 * the CPU's operations, but a backend that says its memory is not the
 * host's, so the models run every device path of their code (weights copied
 * into backend allocations, data moved with upload / download only). Its
 * allocations are tracked, filled with 0xa5 (nothing may rely on zeroed
 * memory), and counted after `seal` so that a test can see every call's
 * allocations come back. Header-only, after check.h; one emulated backend
 * at a time. */
#ifndef DALLE_TEST_EMU_BACKEND_H
#define DALLE_TEST_EMU_BACKEND_H

#include <stdlib.h>
#include <string.h>

#include "backend_ops.h"
#include "check.h"
#include "error.h"

static backend_ops emu_ops;
static void *emu_live[4096];
static size_t emu_size[4096];
static int emu_n, emu_states; /* live allocations; those made since the last seal */
/* failure injection: the next allocation fails (emu_fail_alloc), the next
 * pixel_map records a backend failure as a device operation would
 * (emu_fail_op) */
static int emu_fail_alloc, emu_fail_op;

static dalle_status emu_alloc(backend *be, size_t bytes, void **ptr)
{
    (void)be;
    *ptr = NULL;
    if (!bytes)
        return DALLE_OK;
    if (emu_fail_alloc) {
        emu_fail_alloc = 0;
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "emulated backend: arena full (injected)");
    }
    if (emu_n == (int)(sizeof emu_live / sizeof *emu_live) || !(*ptr = malloc(bytes)))
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "emulated backend: out of memory");
    memset(*ptr, 0xa5, bytes); /* nothing may rely on zeroed memory */
    emu_size[emu_n] = bytes;
    emu_live[emu_n++] = *ptr;
    emu_states++;
    return DALLE_OK;
}

static void emu_free(backend *be, void *ptr)
{
    (void)be;
    if (!ptr)
        return;
    for (int i = 0; i < emu_n; i++)
        if (emu_live[i] == ptr) {
            emu_live[i] = emu_live[--emu_n];
            emu_size[i] = emu_size[emu_n];
            emu_states--;
            free(ptr);
            return;
        }
    printf("FAIL emulated backend: free of a pointer it never gave out\n");
    check_failures++;
}

static void emu_seal(backend *be)
{
    (void)be;
    emu_states = 0; /* what follows is the calls' */
}

/* p (n bytes from it; NULL is fine) lies in one of the backend's live
 * allocations: a model that passed host memory (a weight it forgot to
 * upload, the caller's ids) to an operation fails the test here, as it
 * would fault on a GPU. */
static void emu_owned(const char *op, const void *p, size_t n)
{
    if (!p)
        return;
    const char *c = p;
    for (int i = 0; i < emu_n; i++) {
        const char *a = emu_live[i];
        if (c >= a && c + n <= a + emu_size[i])
            return;
    }
    printf("FAIL emulated backend: %s got memory that is not the backend's\n", op);
    check_failures++;
}

/* The VAEs' operations, checking their pointers first (the sizes the
 * operation reads or writes, where they are simple). */
static const backend_ops *emu_cpu;

/* a convolution's operands (transposed or not: the same sizes) */
static void emu_conv_owned(const conv_geom *g, const float *x, int h, int w, const float *wt,
                           const float *bias, const float *y, const float *col,
                           int64_t col_floats)
{
    const size_t f = sizeof(float);
    emu_owned("conv x", x, f * (size_t)g->cin * h * w);
    emu_owned("conv weight", wt, f * (size_t)g->cout * g->cin * g->k * g->k);
    emu_owned("conv bias", bias, f * (size_t)g->cout);
    emu_owned("conv y", y, f);
    emu_owned("conv col", col_floats ? col : NULL, f * (size_t)col_floats);
}

static void emu_conv2d(backend *be, const conv_geom *g, const float *x, int h, int w,
                       const float *wt, const float *bias, float *y, float *col,
                       int64_t col_floats)
{
    emu_conv_owned(g, x, h, w, wt, bias, y, col, col_floats);
    emu_cpu->conv2d(be, g, x, h, w, wt, bias, y, col, col_floats);
}

static void emu_conv_transpose2d(backend *be, const conv_geom *g, const float *x, int h, int w,
                                 const float *wt, const float *bias, float *y, float *col,
                                 int64_t col_floats)
{
    emu_conv_owned(g, x, h, w, wt, bias, y, col, col_floats);
    emu_cpu->conv_transpose2d(be, g, x, h, w, wt, bias, y, col, col_floats);
}

static void emu_group_norm(backend *be, const float *x, int c, int64_t hw, int groups, float eps,
                           const float *gain, const float *bias, int swish, float *y)
{
    emu_owned("group_norm x", x, sizeof(float) * (size_t)(c * hw));
    emu_owned("group_norm gain", gain, sizeof(float) * (size_t)c);
    emu_owned("group_norm bias", bias, sizeof(float) * (size_t)c);
    emu_owned("group_norm y", y, sizeof(float) * (size_t)(c * hw));
    emu_cpu->group_norm(be, x, c, hw, groups, eps, gain, bias, swish, y);
}

static void emu_gather_ids(backend *be, const float *table, int64_t id_stride, int64_t c_stride,
                           const float *bias, const int32_t *ids, int64_t n, int channels,
                           float *x)
{
    emu_owned("gather_ids table", table, sizeof(float));
    emu_owned("gather_ids bias", bias, sizeof(float) * (size_t)channels);
    emu_owned("gather_ids ids", ids, sizeof(int32_t) * (size_t)n);
    emu_owned("gather_ids x", x, sizeof(float) * (size_t)(channels * n));
    emu_cpu->gather_ids(be, table, id_stride, c_stride, bias, ids, n, channels, x);
}

static void emu_pixel_map(backend *be, const conv_map *m, const float *x, int64_t n, float *y)
{
    emu_owned("pixel_map x", x, sizeof(float) * (size_t)(3 * n));
    emu_owned("pixel_map y", y, sizeof(float) * (size_t)(3 * n));
    if (emu_fail_op) {
        emu_fail_op = 0;
        backend_note(be, dalle_fail(DALLE_ERR_BACKEND, "emulated backend: pixel_map failed "
                                                       "(injected)"));
        return;
    }
    emu_cpu->pixel_map(be, m, x, n, y);
}

static void emu_vq_scores(backend *be, const float *z, int dim, int64_t n, const float *codebook,
                          const float *code_sq, int k, float *zz, float *scores)
{
    emu_owned("vq_scores z", z, sizeof(float) * (size_t)(dim * n));
    emu_owned("vq_scores codebook", codebook, sizeof(float) * (size_t)k * dim);
    emu_owned("vq_scores code_sq", code_sq, sizeof(float) * (size_t)k);
    emu_owned("vq_scores zz", zz, sizeof(float) * (size_t)n);
    emu_owned("vq_scores scores", scores, sizeof(float) * (size_t)(k * n));
    emu_cpu->vq_scores(be, z, dim, n, codebook, code_sq, k, zz, scores);
}

static void emu_argmax_channels(backend *be, const float *scores, int t, int64_t n, int32_t *ids)
{
    emu_owned("argmax_channels scores", scores, sizeof(float) * (size_t)(t * n));
    emu_owned("argmax_channels ids", ids, sizeof(int32_t) * (size_t)n);
    emu_cpu->argmax_channels(be, scores, t, n, ids);
}

/* download reports a recorded failure first and copies nothing then, as
 * the CUDA backend's does */
static dalle_status emu_download(backend *be, void *host, const void *src, size_t bytes)
{
    dalle_status s = backend_status(be);
    return s ? s : emu_cpu->download(be, host, src, bytes);
}

/* The emulated backend on the CPU's operations with `pool`. */
static void emu_init(backend *be, struct tpool *pool)
{
    backend_cpu_init(be, pool);
    emu_cpu = be->op;
    emu_ops = *be->op;
    emu_ops.download = emu_download;
    emu_ops.conv2d = emu_conv2d;
    emu_ops.conv_transpose2d = emu_conv_transpose2d;
    emu_ops.group_norm = emu_group_norm;
    emu_ops.gather_ids = emu_gather_ids;
    emu_ops.pixel_map = emu_pixel_map;
    emu_ops.vq_scores = emu_vq_scores;
    emu_ops.argmax_channels = emu_argmax_channels;
    emu_ops.alloc = emu_alloc;
    emu_ops.free = emu_free;
    emu_ops.seal = emu_seal;
    be->op = &emu_ops;
    be->name = "emulated";
    be->host_memory = 0;
}

static void emu_release_all(void)
{
    for (int i = 0; i < emu_n; i++)
        free(emu_live[i]);
    emu_n = 0;
}

#endif
