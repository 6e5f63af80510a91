// Device discovery for the CUDA backend (backend_select), compiled by nvcc
// (see lib/meson.build). Where no device can be used, *why says what the
// runtime found and which CUDA the driver and this build speak, so that a
// driver older than the runtime reads as such, not as "no GPU".
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int cudab_count_devices(const char **why)
{
    static thread_local char msg[320];
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err == cudaSuccess && n > 0)
        return n;
    int driver = 0;
    cudaDriverGetVersion(&driver);
    cudaGetLastError(); // reported through *why, not by a later launch
    char drv[96];
    if (driver == 0)
        snprintf(drv, sizeof drv, "no NVIDIA driver was found (libcuda.so.1)");
    else
        snprintf(drv, sizeof drv, "the driver supports CUDA %d.%d", driver / 1000,
                 driver % 1000 / 10);
    snprintf(msg, sizeof msg, "%s (%s); %s, libdalle was built with CUDA %d.%d",
             err == cudaSuccess ? "no CUDA device found" : cudaGetErrorString(err),
             err == cudaSuccess ? "0 devices" : cudaGetErrorName(err), drv,
             CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
    if (why)
        *why = msg;
    return 0;
}
