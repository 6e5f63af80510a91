/* Built without CUDA: the CUDA backend is never available. */
#include "../backend.h"

int backend_cuda_device_count(const char **why)
{
    if (why)
        *why = "libdalle was built without CUDA (meson -Dcuda=enabled needs nvcc)";
    return 0;
}
