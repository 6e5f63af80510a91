// Device discovery for the CUDA backend, the only part of it that talks to
// the CUDA runtime directly. Compiled by nvcc (see lib/meson.build).
#include <cuda_runtime.h>

extern "C" int cudab_count_devices(const char **why)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        if (why)
            *why = cudaGetErrorString(err);
        return 0;
    }
    if (n == 0 && why)
        *why = "no CUDA device found";
    return n;
}
