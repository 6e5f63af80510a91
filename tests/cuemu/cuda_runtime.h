// cuemu: the CUDA runtime and CUDA C++'s device side, emulated on the CPU,
// so that lib/cuda/*.cu run in CI on machines without a GPU.
//
// The .cu files are compiled unchanged as C++ (tests/cuemu/*.cpp include
// them) with this directory first on the include path, so their
// `#include <cuda_runtime.h>` finds this header instead of CUDA's. It gives:
//
// - the device side: __global__ / __device__ / __shared__, threadIdx and
//   friends, __syncthreads, the warp shuffles and votes, atomics, the
//   rounding intrinsics (__fmul_rn, ...) as plain IEEE operations (the
//   emulator is compiled with -ffp-contract=off, so none is fused);
// - a kernel launch, LAUNCH(k, grid, block, smem, stream)(args...), that
//   checks every pointer argument is device memory and runs every block,
//   each CUDA thread a fiber with its own stack (tests/cuemu/cuemu.cpp):
//   barriers and warp operations really wait for the threads they name,
//   so a missing __syncthreads, a shuffle some lane never reaches, or a
//   barrier in divergent code shows up as a wrong result or a reported
//   deadlock, not as luck;
// - the runtime API the library uses (memory, streams, errors, device
//   properties, function attributes), over host memory that host code
//   cannot touch: device allocations are mapped PROT_NONE except while a
//   kernel, a copy or the emulated cuBLAS (tests/cuemu/cublas.c) runs.
//
// What it cannot tell: the GPU's own rounding of expf / erf / log (here
// glibc's), timing, occupancy, register limits, and races between blocks
// (blocks run one after another). docs/cuda.md says what a GPU run adds.
#ifndef CUEMU_CUDA_RUNTIME_H
#define CUEMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

#define CUEMU 1
#define CUDART_VERSION 13000 // the CUDA whose cuBLAS soname (libcublas.so.13) is emulated

// ---------------------------------------------------------------------------
// Types and constants of the runtime API (the subset the library uses).

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInsufficientDriver = 35,
    cudaErrorCallRequiresNewerDriver = 36,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorDevicesUnavailable = 46,
    cudaErrorStubLibrary = 34,
    cudaErrorNoKernelImageForDevice = 209,
    cudaErrorUnsupportedPtxVersion = 222,
    cudaErrorJitCompilerNotFound = 221,
    cudaErrorSystemDriverMismatch = 803,
    cudaErrorCompatNotSupportedOnDevice = 804,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
};
typedef enum cudaError_t cudaError;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01

typedef struct CUstream_st *cudaStream_t;

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int major, minor;
    int multiProcessorCount;
};

struct cudaFuncAttributes {
    size_t sharedSizeBytes;
    size_t constSizeBytes;
    size_t localSizeBytes;
    int maxThreadsPerBlock;
    int numRegs;
    int ptxVersion, binaryVersion;
    int maxDynamicSharedSizeBytes;
};

// ---------------------------------------------------------------------------
// The runtime API (tests/cuemu/cuemu.cpp).

extern "C" {
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDriverGetVersion(int *version);
cudaError_t cudaRuntimeGetVersion(int *version);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaMalloc(void **ptr, size_t bytes);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream);
cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaDeviceSynchronize(void);

// the emulator's own entries (also used by tests/cuemu/cublas.c)
cudaError_t cuemu_func_get_attributes(cudaFuncAttributes *attr, const void *func);
cudaError_t cuemu_func_set_attribute(const void *func, int attr, int value);
int cuemu_is_device(const void *ptr, size_t bytes); // [ptr, ptr + bytes) in one allocation
int cuemu_is_stream(cudaStream_t stream);
void cuemu_device_work_begin(void); // device memory accessible until _end
void cuemu_device_work_end(void);
void cuemu_fail(cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef void (*cuemu_thread_fn)(void *closure);
cudaError_t cuemu_launch(const char *name, const void *func, dim3 grid, dim3 block, size_t smem,
                         cudaStream_t stream, cuemu_thread_fn fn, void *closure);
}

template <class T> static inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, T *f)
{
    return cuemu_func_get_attributes(a, (const void *)f);
}
template <class T>
static inline cudaError_t cudaFuncSetAttribute(T *f, cudaFuncAttribute attr, int value)
{
    return cuemu_func_set_attribute((const void *)f, (int)attr, value);
}

// ---------------------------------------------------------------------------
// The device side.

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
// A block's shared variables: blocks run one after another on the
// launching OS thread, every CUDA thread of a block a fiber on it.
#define __shared__ static thread_local
// extern __shared__ T name[] (lib/cuda/ops_cuda_internal.cuh's DYNAMIC_SHARED)
#define DYNAMIC_SHARED(type, name) type *name = (type *)cuemu_dynamic_shared()

struct cuemu_thread {
    uint3 idx;
};
struct cuemu_block {
    uint3 idx;
    dim3 dim, grid;
};
extern "C" {
extern thread_local const cuemu_thread *cuemu_self;
extern thread_local const cuemu_block *cuemu_blk;
void *cuemu_dynamic_shared(void);
void __syncthreads(void);
// a warp operation: every lane of `mask` contributes `value`; returns the
// value of lane `src` (shuffles) or the ballot of the values' low bits
uint64_t cuemu_warp_shfl(unsigned mask, uint64_t value, int src, int op);
unsigned cuemu_warp_ballot(unsigned mask, int pred);
}

#define threadIdx (cuemu_self->idx)
#define blockIdx (cuemu_blk->idx)
#define blockDim (cuemu_blk->dim)
#define gridDim (cuemu_blk->grid)

static inline int cuemu_lane(void)
{
    const unsigned linear =
        (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    return (int)(linear & 31u);
}

template <class T> static inline uint64_t cuemu_bits(T v)
{
    static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    return u;
}
template <class T> static inline T cuemu_from_bits(uint64_t u)
{
    T v;
    memcpy(&v, &u, sizeof v);
    return v;
}

// width < 32 splits the warp into segments, as CUDA does
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    const int lane = cuemu_lane(), base = lane & ~(width - 1);
    int src = lane ^ lane_mask;
    if (src >= base + width)
        src = lane;
    return cuemu_from_bits<T>(cuemu_warp_shfl(mask, cuemu_bits(v), src, 0));
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    const int lane = cuemu_lane(), base = lane & ~(width - 1);
    const int src = (lane - base) + (int)d < width ? lane + (int)d : lane;
    return cuemu_from_bits<T>(cuemu_warp_shfl(mask, cuemu_bits(v), src, 1));
}
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    const int lane = cuemu_lane(), base = lane & ~(width - 1);
    const int src = (lane - base) >= (int)d ? lane - (int)d : lane;
    return cuemu_from_bits<T>(cuemu_warp_shfl(mask, cuemu_bits(v), src, 2));
}
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32)
{
    const int lane = cuemu_lane(), base = lane & ~(width - 1);
    const int src = base + (src_lane & (width - 1));
    return cuemu_from_bits<T>(cuemu_warp_shfl(mask, cuemu_bits(v), src, 3));
}
static inline unsigned __ballot_sync(unsigned mask, int pred) { return cuemu_warp_ballot(mask, pred); }
static inline int __any_sync(unsigned mask, int pred) { return cuemu_warp_ballot(mask, pred) != 0; }
static inline int __all_sync(unsigned mask, int pred)
{
    return (cuemu_warp_ballot(mask, pred) & mask) == mask;
}
static inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)cuemu_warp_ballot(mask, 0); }
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}

// Fibers switch only inside the functions above, so a read-modify-write is
// atomic here.
template <class T> static inline T atomicAdd(T *p, T v)
{
    const T old = *p;
    *p = old + v;
    return old;
}
template <class T> static inline T atomicMax(T *p, T v)
{
    const T old = *p;
    if (v > old)
        *p = v;
    return old;
}
template <class T> static inline T atomicMin(T *p, T v)
{
    const T old = *p;
    if (v < old)
        *p = v;
    return old;
}
template <class T> static inline T atomicExch(T *p, T v)
{
    const T old = *p;
    *p = v;
    return old;
}
template <class T> static inline T atomicCAS(T *p, T cmp, T v)
{
    const T old = *p;
    if (old == cmp)
        *p = v;
    return old;
}

static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline unsigned __float_as_uint(float f) { return cuemu_from_bits<unsigned>(cuemu_bits(f)); }
static inline float __uint_as_float(unsigned u) { return cuemu_from_bits<float>(cuemu_bits(u)); }
static inline int __float_as_int(float f) { return cuemu_from_bits<int>(cuemu_bits(f)); }
static inline float __int_as_float(int u) { return cuemu_from_bits<float>(cuemu_bits(u)); }

// Round-to-nearest operations, never fused (-ffp-contract=off).
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __dsqrt_rn(double a) { return sqrt(a); }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
#define __expf(a) expf(a) // glibc declares its own __expf and __logf
#define __logf(a) logf(a)
static inline float __saturatef(float a) { return a > 0.0f ? (a < 1.0f ? a : 1.0f) : 0.0f; }
static inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
template <class T> static inline T __ldg(const T *p) { return *p; }

// ---------------------------------------------------------------------------
// Kernel launches: LAUNCH(k, grid, block, smem, stream)(args...).

namespace cuemu {

template <size_t I, class Tuple> static inline bool pointers_ok(const char *name, const Tuple &t)
{
    if constexpr (I == std::tuple_size<Tuple>::value) {
        return true;
    } else {
        using T = typename std::tuple_element<I, Tuple>::type;
        if constexpr (std::is_pointer<T>::value) {
            const void *p = (const void *)std::get<I>(t);
            if (p && !cuemu_is_device(p, 1)) {
                cuemu_fail(cudaErrorIllegalAddress,
                           "kernel %s: argument %zu (%p) is not device memory", name, I + 1, p);
                return false;
            }
        }
        return pointers_ok<I + 1, Tuple>(name, t);
    }
}

template <class... P> struct launcher {
    void (*kernel)(P...);
    const char *name;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;

    struct closure {
        void (*kernel)(P...);
        std::tuple<P...> args;
    };
    static void run_thread(void *c)
    {
        closure *cl = (closure *)c;
        std::apply(cl->kernel, cl->args); // by value, as a kernel's parameters
    }

    template <class... A> void operator()(A &&...a) const
    {
        static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong arity");
        closure cl{kernel, std::tuple<P...>(std::forward<A>(a)...)};
        if (!pointers_ok<0>(name, cl.args))
            return;
        cuemu_launch(name, (const void *)kernel, grid, block, smem, stream, run_thread, &cl);
    }
};

template <class... P>
static inline launcher<P...> launch(void (*k)(P...), const char *name, dim3 grid, dim3 block,
                                    size_t smem, cudaStream_t stream)
{
    return launcher<P...>{k, name, grid, block, smem, stream};
}

} // namespace cuemu

#define LAUNCH(k, grid, block, smem, stream)                                                   \
    cuemu::launch((k), #k, dim3(grid), dim3(block), (size_t)(smem), (stream))

#endif
