#include "backend.h"

#include <stdio.h>

#include "backend_ops.h"
#include "error.h"

void backend_note(backend *be, dalle_status s)
{
    if (s == DALLE_OK || be->failed != DALLE_OK)
        return;
    be->failed = s;
    snprintf(be->message, sizeof be->message, "%s", dalle_last_error());
}

dalle_status backend_status(backend *be)
{
    dalle_status s = be->failed;
    if (s == DALLE_OK)
        return DALLE_OK;
    be->failed = DALLE_OK;
    return dalle_fail(s, "%s", be->message);
}

dalle_status backend_weights_uploaded(backend *be, dalle_status s, const char *model)
{
    if (!s) /* the uploads are queued: wait for them and hear of their errors */
        s = be->op->download(be, NULL, NULL, 0);
    if (!s)
        return DALLE_OK;
    char why[DALLE_MESSAGE_CAP];
    snprintf(why, sizeof why, "%s", dalle_last_error());
    return dalle_fail(s, "%s: copying the weights to the %s backend: %s", model, be->name, why);
}

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
        *chosen = DALLE_BACKEND_CUDA;
        return DALLE_OK;
    }
    case DALLE_BACKEND_AUTO: {
        int n = backend_cuda_device_count(&why);
        if (n > 0 && params->device >= 0 && params->device < n) {
            /* lib/context.c falls back to the CPU (and says so) if the CUDA
             * backend then cannot start (cuBLAS missing, say) */
            *chosen = DALLE_BACKEND_CUDA;
            return DALLE_OK;
        }
        if (n > 0)
            dalle_log(DALLE_LOG_INFO, "backend auto: using the CPU (params.device = %d: %d CUDA "
                                      "device(s) present)", params->device, n);
        else
            dalle_log(DALLE_LOG_INFO, "backend auto: using the CPU (%s)", why);
        *chosen = DALLE_BACKEND_CPU;
        return DALLE_OK;
    }
    }
    return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "params.backend = %d is not a backend",
                      (int)params->backend);
}
