#include "backend.h"

#include "error.h"

dalle_status backend_select(const dalle_ctx_params *params, dalle_backend *chosen)
{
    const char *why = "";
    switch (params->backend) {
    case DALLE_BACKEND_CPU:
        *chosen = DALLE_BACKEND_CPU;
        return DALLE_OK;
    case DALLE_BACKEND_CUDA: {
        int n = backend_cuda_device_count(&why);
        if (n <= 0)
            return dalle_fail(DALLE_ERR_UNSUPPORTED, "backend cuda: %s", why);
        if (params->device < 0 || params->device >= n)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                              "params.device = %d: %d CUDA device(s) present", params->device, n);
        /* The CUDA model code lands with the CUDA issue; until then say so. */
        return dalle_fail(DALLE_ERR_NOT_IMPLEMENTED,
                          "backend cuda: %d device(s) found, but the CUDA kernels are not in this version",
                          n);
    }
    case DALLE_BACKEND_AUTO:
        if (backend_cuda_device_count(&why) > 0)
            dalle_log(DALLE_LOG_INFO, "backend auto: a GPU is present but the CUDA kernels are "
                                      "not in this version; using the CPU");
        else
            dalle_log(DALLE_LOG_INFO, "backend auto: using the CPU (%s)", why);
        *chosen = DALLE_BACKEND_CPU;
        return DALLE_OK;
    }
    return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "params.backend = %d is not a backend",
                      (int)params->backend);
}
