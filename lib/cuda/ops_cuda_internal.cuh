// What the CUDA files of lib/cuda share (CUDA C++, included by the .cu
// files only): the error helpers, the device scope, launch sizing and the
// block reduction. ops_cuda.cu owns the context (struct cuda_ops); the
// other .cu files reach its stream through cuda_ops_stream.
#ifndef DALLE_OPS_CUDA_INTERNAL_CUH
#define DALLE_OPS_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>
#include <limits.h>
#include <stdint.h>

#include "ops_cuda.h"

extern "C" {
#include "../error.h"
}

// Kernel launches and dynamic shared memory go through two macros, so that
// tests/cuemu (the CUDA emulator the tests run these files on, on machines
// without a GPU; its cuda_runtime.h defines both) can run the same code:
//   LAUNCH(k, grid, block, smem, stream)(args...)  is  k<<<grid, block, smem, stream>>>(args...)
//   DYNAMIC_SHARED(T, name);                        is  extern __shared__ T name[];
#ifndef CUEMU
#define LAUNCH(k, grid, block, smem, stream) k<<<(grid), (block), (smem), (stream)>>>
#define DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

// CUDA errors as statuses (ops_cuda.cu): what cannot run here is
// UNSUPPORTED, running out of memory OUT_OF_MEMORY, the rest BACKEND.
dalle_status cuda_fail(cudaError_t e, const char *what);

// The context's one stream: every operation is queued on it.
cudaStream_t cuda_ops_stream(const cuda_ops *c);

// The VAEs' kernels (ops_cuda_conv.cu), each launched once on `s` with
// empty sizes by ops_cuda.cu's warm_kernels.
void cuda_conv_warm(cudaStream_t s);

#define CU(call, what)                                                                         \
    do {                                                                                       \
        cudaError_t cu_err_ = (call);                                                          \
        if (cu_err_ != cudaSuccess)                                                            \
            return cuda_fail(cu_err_, (what));                                                 \
    } while (0)

// After a launch: configuration errors now, or an earlier kernel's fault.
#define LAUNCHED(what) CU(cudaGetLastError(), (what))

// Makes the context's device current for one call and gives the caller's
// current device back after it (a library must not move the application's).
struct device_scope {
    int prev;
    bool restore;
    explicit device_scope(int dev) : prev(0), restore(false)
    {
        int cur = -1;
        if (cudaGetDevice(&cur) != cudaSuccess) {
            cudaGetLastError(); // as below
            return;
        }
        if (cur == dev)
            return;
        if (cudaSetDevice(dev) == cudaSuccess) {
            prev = cur;
            restore = true;
        } else {
            // the call that follows reports what is wrong with the device; a
            // stale "last error" would be taken for its launch's own
            cudaGetLastError();
        }
    }
    ~device_scope()
    {
        if (restore)
            cudaSetDevice(prev);
    }
    device_scope(const device_scope &) = delete;
    device_scope &operator=(const device_scope &) = delete;
};

static inline bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

static inline dalle_status bad_size(const char *op, const char *what, long long v)
{
    return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "cuda: %s: %s = %lld is out of range", op, what,
                      v);
}

// Grid of a grid-stride loop over `total` items, 256 threads a block.
static inline unsigned grid_for(int64_t total)
{
    int64_t blocks = (total + 255) / 256;
    const int64_t cap = 65535;
    return (unsigned)(blocks < cap ? blocks : cap);
}

// ---------------------------------------------------------------------------
// Device helpers.

// Reduce over a block whose size is a multiple of 32: a fixed xor tree in
// each warp, then the warps' values in warp order. Every thread returns the
// same value. `scratch` holds 32 values.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T *scratch)
{
    for (int o = 16; o > 0; o >>= 1)
        v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); // scratch may still be read by an earlier reduction
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = scratch[0];
    for (int w = 1; w < nw; w++)
        v = op(v, scratch[w]);
    return v;
}

struct add_d {
    __device__ double operator()(double a, double b) const { return __dadd_rn(a, b); }
};
struct add_i {
    __device__ int operator()(int a, int b) const { return a + b; }
};
struct max_f {
    __device__ float operator()(float a, float b) const { return b > a ? b : a; }
};


#endif
