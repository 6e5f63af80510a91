/* Built without CUDA: the CUDA backend is never available. */
#include "../backend.h"

int backend_cuda_device_count(const char **why)
{
    if (why)
        *why = "libdalle was built without CUDA (meson -Dcuda=enabled needs nvcc)";
    return 0;
}

#include "../backend_ops.h"
#include "../error.h"

dalle_status backend_cuda_create(const dalle_ctx_params *params, size_t arena_bytes,
                                 backend **out)
{
    (void)params;
    (void)arena_bytes;
    *out = NULL;
    return dalle_fail(DALLE_ERR_UNSUPPORTED,
                      "backend cuda: libdalle was built without CUDA (meson -Dcuda=enabled "
                      "needs nvcc)");
}

void backend_cuda_free(backend *be) { (void)be; }
