/* The CUDA backend's failures at context creation (issue 9), staged on the
 * CUDA emulator (tests/cuemu/cuemu.cpp's fault variables), through the
 * public API: no GPU, a driver older than the runtime, too little device
 * memory for the model, a GPU the build has no code for. For each, with
 * backend = cuda, dalle_ctx_create and clip_ctx_create fail with the right
 * status and a message that says what is wrong, leave *out NULL and do not
 * crash (*out is left as it was, as every failing call of the API leaves
 * the caller's data); with backend = auto both open on the CPU and say so through the
 * log callback. Then, the faults cleared, the same bundles open on the GPU
 * and generate.
 *
 *   test_cuda_errors DALLE_BUNDLE CLIP_BUNDLE */
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "context.h"

int cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes); /* tests/cuemu/cuemu.cpp */

typedef struct fault {
    const char *name, *var, *value;
    dalle_status status;   /* backend = cuda */
    const char *needle[2]; /* in its message */
} fault;

static void check_fault(const fault *f, const char *model, const char *clip)
{
    setenv(f->var, f->value, 1);
    dalle_ctx_params p = dalle_ctx_default_params();
    p.backend = DALLE_BACKEND_CUDA;
    p.max_batch = 2;
    dalle_ctx *const untouched = (dalle_ctx *)&p, *ctx = untouched;
    dalle_status s = dalle_ctx_create(model, &p, &ctx);
    const char *msg = dalle_last_error();
    CHECK(s == f->status && ctx == untouched && strstr(msg, f->needle[0]) &&
              (!f->needle[1] || strstr(msg, f->needle[1])),
          "%s: dalle_ctx_create(backend cuda) -> %d (want %d), \"%s\"", f->name, (int)s,
          (int)f->status, msg);
    if (s == DALLE_OK)
        dalle_ctx_free(ctx);
    clip_ctx *const cc_untouched = (clip_ctx *)&p;
    clip_ctx *cc = cc_untouched;
    s = clip_ctx_create(clip, &p, &cc);
    msg = dalle_last_error();
    CHECK(s == f->status && cc == cc_untouched && strstr(msg, f->needle[0]),
          "%s: clip_ctx_create(backend cuda) -> %d, \"%s\"", f->name, (int)s, msg);
    if (s == DALLE_OK)
        clip_ctx_free(cc);

    p.backend = DALLE_BACKEND_AUTO;
    check_log_start();
    s = dalle_ctx_create(model, &p, &ctx);
    CHECK(s == DALLE_OK && ctx && ctx->backend == DALLE_BACKEND_CPU &&
              strstr(check_log(), "using the CPU"),
          "%s: backend auto opens on the CPU and says so: \"%.200s\"", f->name, check_log());
    if (s == DALLE_OK) {
        int32_t text[256] = {0}, ids[4096];
        dalle_sample_params sp = dalle_sample_default_params();
        CHECK(dalle_text_seq_len(ctx) <= 256 && dalle_image_seq_len(ctx) <= 4096 &&
                  dalle_sample(ctx, text, 1, &sp, ids) == DALLE_OK,
              "%s: and samples there", f->name);
        dalle_ctx_free(ctx);
    }
    check_log_start();
    s = clip_ctx_create(clip, &p, &cc);
    CHECK(s == DALLE_OK && cc && strstr(check_log(), "CPU"),
          "%s: CLIP with backend auto opens on the CPU and says so: \"%.200s\"", f->name,
          check_log());
    clip_ctx_free(s == DALLE_OK ? cc : NULL);
    check_log_stop();
    unsetenv(f->var);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        printf("usage: test_cuda_errors DALLE_BUNDLE CLIP_BUNDLE\n");
        return 2;
    }
    const char *model = argv[1], *clip = argv[2];
    const fault faults[] = {
        {"no GPU", "CUEMU_DEVICES", "0", DALLE_ERR_UNSUPPORTED,
         {"no CUDA-capable device", "built with CUDA 13.0"}},
        {"a driver older than the runtime", "CUEMU_DRIVER", "12080", DALLE_ERR_UNSUPPORTED,
         {"the driver supports CUDA 12.8", "built with CUDA 13.0"}},
        {"a 1 MiB GPU", "CUEMU_MEMORY_MIB", "1", DALLE_ERR_OUT_OF_MEMORY,
         {"cannot reserve 32 MiB of device memory for cuBLAS's workspace", "1 MiB free of 1 MiB"}},
        {"a 33 MiB GPU (room for cuBLAS's 32, not for the arena)", "CUEMU_MEMORY_MIB", "33",
         DALLE_ERR_OUT_OF_MEMORY, {"MiB of device memory for the arena", "1 MiB free of 33 MiB"}},
        {"a GPU without code for this build", "CUEMU_NO_KERNEL_IMAGE", "1", DALLE_ERR_UNSUPPORTED,
         {"no kernel image", NULL}},
    };
    for (size_t i = 0; i < sizeof faults / sizeof *faults; i++)
        check_fault(&faults[i], model, clip);

    /* no fault: the same bundles on the (emulated) GPU */
    dalle_ctx_params p = dalle_ctx_default_params();
    p.backend = DALLE_BACKEND_CUDA;
    p.max_batch = 2;
    dalle_ctx *ctx = NULL;
    dalle_status s = dalle_ctx_create(model, &p, &ctx);
    CHECK(s == DALLE_OK && ctx->backend == DALLE_BACKEND_CUDA, "no fault: the model opens on the GPU: %s",
          s ? dalle_last_error() : "ok");
    if (s == DALLE_OK) {
        int32_t text[256] = {0}, ids[2 * 4096];
        dalle_sample_params sp = dalle_sample_default_params();
        CHECK(dalle_sample(ctx, text, 2, &sp, ids) == DALLE_OK, "and samples two images there: %s",
              dalle_last_error());
        dalle_ctx_free(ctx);
    }
    clip_ctx *cc = NULL;
    s = clip_ctx_create(clip, &p, &cc);
    CHECK(s == DALLE_OK, "no fault: CLIP opens on the GPU: %s", s ? dalle_last_error() : "ok");
    clip_ctx_free(cc);
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    CHECK(free_b == total_b, "every context, failed or freed, gave its device memory back (%zu "
          "bytes still allocated)", total_b - free_b);
    return check_summary();
}
