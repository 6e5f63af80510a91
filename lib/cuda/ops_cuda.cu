// The CUDA backend's operations (lib/cuda/ops_cuda.h): lib/ops.h over
// device pointers, the context they run in, and cuBLAS loaded at run time.
//
// Host code here uses no C++ runtime (no new/delete, no exceptions: nvcc
// runs with -fno-exceptions), so the object links into libdalle with the C
// linker; cudart is the static one (lib/meson.build), cuBLAS is dlopen'ed
// by cuda_ops_create. CUDA 13's launch stubs keep each kernel's handle in
// a function-local static, which g++ would guard with libstdc++'s
// __cxa_guard_*; lib/meson.build compiles with -fno-threadsafe-statics
// instead, and warm_kernels() below runs every stub once under a mutex
// before any context launches anything, so those statics are never
// initialised concurrently. A new kernel gets a line there.
//
// Numerics: see ops_cuda.h. Where lib/ops_cpu.c rounds a product before an
// add, the kernels do too (__fmul_rn / __fadd_rn keep nvcc from fusing them
// into an FMA); reductions go through fixed shuffle trees and per-thread
// strided partial sums, so the same launch gives the same bits every time.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../half.h"
#include "ops_cuda.h"
#include "ops_cuda_internal.cuh"

extern "C" {
#include "../error.h"
}

// ---------------------------------------------------------------------------
// cuBLAS, declared here and resolved with dlsym: libdalle never links it, so
// the library loads where cuBLAS (or CUDA at all) is missing. The types are
// those of cublas_api.h (CUDA 11 .. 13): enums are ints, the handle is an
// opaque pointer.

typedef struct cublasContext *cublasHandle_t;
typedef int cublasStatus_t;
enum {
    DALLE_CUBLAS_STATUS_SUCCESS = 0,
    DALLE_CUBLAS_OP_N = 0,
    DALLE_CUBLAS_OP_T = 1,
    DALLE_CUBLAS_DEFAULT_MATH = 0,
    DALLE_CUBLAS_PEDANTIC_MATH = 2,
    DALLE_CUBLAS_TF32_TENSOR_OP_MATH = 3,
};

typedef cublasStatus_t (*cublasCreate_v2_fn)(cublasHandle_t *handle);
typedef cublasStatus_t (*cublasDestroy_v2_fn)(cublasHandle_t handle);
typedef cublasStatus_t (*cublasSetStream_v2_fn)(cublasHandle_t handle, cudaStream_t stream);
typedef cublasStatus_t (*cublasSetMathMode_fn)(cublasHandle_t handle, int mode);
typedef cublasStatus_t (*cublasSetWorkspace_v2_fn)(cublasHandle_t handle, void *workspace,
                                                   size_t bytes);
typedef cublasStatus_t (*cublasSgemm_v2_fn)(cublasHandle_t handle, int transa, int transb, int m,
                                            int n, int k, const float *alpha, const float *A,
                                            int lda, const float *B, int ldb, const float *beta,
                                            float *C, int ldc);

typedef struct cublas_api {
    void *lib;
    cublasCreate_v2_fn create;
    cublasDestroy_v2_fn destroy;
    cublasSetStream_v2_fn set_stream;
    cublasSetMathMode_fn set_math_mode;
    cublasSetWorkspace_v2_fn set_workspace;
    cublasSgemm_v2_fn sgemm;
} cublas_api;

// "libcublas.so.<major>" for the CUDA this file was compiled with: cuBLAS
// keeps its ABI within a major version, and the soname carries it.
struct soname_buf {
    char s[32];
};
static constexpr soname_buf make_default_cublas()
{
    soname_buf r{};
    const char *p = "libcublas.so.";
    int i = 0;
    for (; p[i]; i++)
        r.s[i] = p[i];
    const int major = CUDART_VERSION / 1000;
    if (major >= 10)
        r.s[i++] = (char)('0' + major / 10);
    r.s[i++] = (char)('0' + major % 10);
    r.s[i] = 0;
    return r;
}
static constexpr soname_buf default_cublas = make_default_cublas();

extern "C" const char *cuda_ops_default_cublas(void) { return default_cublas.s; }

static const char *cublas_status_name(cublasStatus_t s)
{
    switch (s) {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
    }
}

static dalle_status cublas_fail(cublasStatus_t s, const char *what)
{
    dalle_status st = DALLE_ERR_BACKEND;
    if (s == 3)
        st = DALLE_ERR_OUT_OF_MEMORY;
    else if (s == 8 || s == 15)
        st = DALLE_ERR_UNSUPPORTED;
    return dalle_fail(st, "cuda: %s: cuBLAS returned %s (%d)", what, cublas_status_name(s), s);
}

static void *cublas_symbol(void *lib, const char *name, const char *soname, dalle_status *st)
{
    dlerror();
    void *p = dlsym(lib, name);
    if (!p && *st == DALLE_OK) {
        const char *e = dlerror();
        *st = dalle_fail(DALLE_ERR_UNSUPPORTED,
                         "cuda: cuBLAS library %s has no symbol %s (%s): a cuBLAS of CUDA %d "
                         "is needed",
                         soname, name, e ? e : "not found", CUDART_VERSION / 1000);
    }
    return p;
}

static void cublas_unload(cublas_api *api)
{
    if (api->lib)
        dlclose(api->lib);
    memset(api, 0, sizeof *api);
}

static dalle_status cublas_load(cublas_api *api, const char *soname)
{
    memset(api, 0, sizeof *api);
    dlerror();
    api->lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!api->lib) {
        const char *e = dlerror();
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "cuda: cannot load cuBLAS library %s (%s): the CUDA backend needs "
                          "the cuBLAS of CUDA %d on the library path (LD_LIBRARY_PATH)",
                          soname, e ? e : "dlopen failed", CUDART_VERSION / 1000);
    }
    dalle_status st = DALLE_OK;
    // Each pointer is converted from dlsym's void * as POSIX allows.
    api->create = (cublasCreate_v2_fn)cublas_symbol(api->lib, "cublasCreate_v2", soname, &st);
    api->destroy = (cublasDestroy_v2_fn)cublas_symbol(api->lib, "cublasDestroy_v2", soname, &st);
    api->set_stream =
        (cublasSetStream_v2_fn)cublas_symbol(api->lib, "cublasSetStream_v2", soname, &st);
    api->set_math_mode =
        (cublasSetMathMode_fn)cublas_symbol(api->lib, "cublasSetMathMode", soname, &st);
    api->set_workspace =
        (cublasSetWorkspace_v2_fn)cublas_symbol(api->lib, "cublasSetWorkspace_v2", soname, &st);
    api->sgemm = (cublasSgemm_v2_fn)cublas_symbol(api->lib, "cublasSgemm_v2", soname, &st);
    if (st != DALLE_OK)
        cublas_unload(api);
    return st;
}

// ---------------------------------------------------------------------------
// The context.

struct cuda_ops {
    int device;
    cudaStream_t stream;
    cublas_api blas;
    cublasHandle_t handle;
    void *workspace; // cuBLAS's
    size_t workspace_bytes;
    char *arena;
    size_t arena_bytes, arena_used;
    size_t attend_smem_max; // dynamic shared memory an attention block may take
    char describe[384];
};

// CUDA errors as statuses: what cannot run here is UNSUPPORTED (the
// backend is unavailable, not broken), running out of memory is
// OUT_OF_MEMORY, the rest BACKEND.
dalle_status cuda_fail(cudaError_t e, const char *what)
{
    dalle_status st = DALLE_ERR_BACKEND;
    switch (e) {
    case cudaErrorMemoryAllocation:
        st = DALLE_ERR_OUT_OF_MEMORY;
        break;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorCallRequiresNewerDriver:
    case cudaErrorStubLibrary:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorJitCompilerNotFound:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
        st = DALLE_ERR_UNSUPPORTED;
        break;
    default:
        break;
    }
    // reported here: a runtime call's error is also CUDA's "last error", which
    // the next launch's check (LAUNCHED) would otherwise report again as its own
    cudaGetLastError();
    return dalle_fail(st, "cuda: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

cudaStream_t cuda_ops_stream(const cuda_ops *c) { return c->stream; }

// ---------------------------------------------------------------------------
// Device helpers (the shared ones are in ops_cuda_internal.cuh).

// lib/rng.c on the device: the same integer mixing, the same conversions.
__device__ __forceinline__ uint64_t d_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

__device__ __forceinline__ uint64_t d_rng_u64(uint64_t seed, uint64_t stream, uint64_t counter,
                                              uint64_t lane)
{
    return d_mix(d_mix(d_mix(d_mix(seed) ^ stream) ^ counter) ^ lane);
}

__device__ __forceinline__ double d_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter,
                                                uint64_t lane)
{
    const uint64_t x = d_rng_u64(seed, stream, counter, lane) >> 11;
    return __dmul_rn(__dadd_rn((double)x, 0.5), 1.1102230246251565404e-16); // 2^-53
}

__device__ __forceinline__ double d_rng_gumbel(uint64_t seed, uint64_t stream, uint64_t counter,
                                               uint64_t lane)
{
    return -log(-log(d_rng_uniform(seed, stream, counter, lane)));
}

// ---------------------------------------------------------------------------
// Kernels.

__global__ void k_probe(int *flag)
{
    if (threadIdx.x == 0)
        *flag = 1;
}

__global__ void k_layer_norm(const float *x, int64_t dim, const float *gain, const float *bias,
                             float eps, float *y)
{
    __shared__ double red[32];
    const float *xr = x + (int64_t)blockIdx.x * dim;
    float *yr = y + (int64_t)blockIdx.x * dim;
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        s = __dadd_rn(s, (double)xr[i]);
    const double mean = __ddiv_rn(block_reduce(s, add_d(), red), (double)dim);
    double v = 0.0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
        const double d = __dsub_rn((double)xr[i], mean);
        v = __dadd_rn(v, __dmul_rn(d, d));
    }
    const double var = __ddiv_rn(block_reduce(v, add_d(), red), (double)dim);
    const float rstd = (float)__ddiv_rn(1.0, __dsqrt_rn(__dadd_rn(var, (double)eps)));
    const float fmean = (float)mean;
    // every read of x is behind the reductions' barriers: y == x is fine
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        yr[i] = __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(xr[i], fmean), rstd), gain[i]), bias[i]);
}

__global__ void k_geglu(const float *h, int64_t rows, int64_t inner, float *y)
{
    const int64_t total = rows * inner;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = t / inner, i = t - r * inner;
        const float *xr = h + r * 2 * inner;
        const double g = (double)xr[inner + i];
        const double e = erf(__dmul_rn(g, 0.70710678118654752440));
        const float gelu = (float)__dmul_rn(__dmul_rn(0.5, g), __dadd_rn(1.0, e));
        y[t] = __fmul_rn(xr[i], gelu);
    }
}

__global__ void k_add_scaled(float *x, const float *y, const float *scale, int64_t rows,
                             int64_t dim)
{
    const int64_t total = rows * dim;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const float add = scale ? __fmul_rn(y[t], scale[t % dim]) : y[t];
        x[t] = __fadd_rn(x[t], add);
    }
}

__global__ void k_add_bias(float *y, int64_t rows, int64_t out, int64_t ldy, const float *b)
{
    const int64_t total = rows * out;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = t / out, j = t - r * out;
        y[r * ldy + j] = __fadd_rn(y[r * ldy + j], b[j]);
    }
}

// ---- products with reduced weights (f16, bf16, int8 + scales, as stored) ---

#define LINEAR_LOWP_WARPS 8 // output columns a block
#define LINEAR_LOWP_ROWS 8  // rows of x a pass over a weight row serves

// y[r][j] = sum_i x[r][i] * w[j][i] (+ b[j]): a warp per output column j,
// its lanes over the row (4 bytes a lane a step where the row's start is
// 4-byte aligned: two 16-bit or four int8 elements, which share a scale
// block), up to 8 rows of x per pass over the weight row, each accumulated
// in float by FMAs in a fixed lane order and reduced by a fixed xor tree;
// the bias added after, as the CPU. A warp exits whole (j is the warp's),
// so its shuffles never miss a lane.
// Each element is lib/ops.h's ops_weight_value, the CPU's (the 4-byte path
// unpacks the same conversions).
template <int DT>
__global__ void __launch_bounds__(LINEAR_LOWP_WARPS * 32)
    k_linear_lowp(const float *x, int64_t rows, int64_t in, ops_weight w, const float *b,
                  int64_t out, float *y, int64_t ldy)
{
    const int lane = threadIdx.x & 31;
    const int64_t j = (int64_t)blockIdx.x * LINEAR_LOWP_WARPS + (threadIdx.x >> 5);
    if (j >= out)
        return;
    const int per = DT == OPS_W_I8 ? 4 : 2; // elements in 4 bytes
    const int64_t blocks = DT == OPS_W_I8 ? ops_weight_blocks(in, w.block) : 0;
    for (int64_t r0 = 0; r0 < rows; r0 += LINEAR_LOWP_ROWS) {
        const int nr = rows - r0 < LINEAR_LOWP_ROWS ? (int)(rows - r0) : LINEAR_LOWP_ROWS;
        const float *xr = x + r0 * in;
        float acc[LINEAR_LOWP_ROWS];
#pragma unroll
        for (int r = 0; r < LINEAR_LOWP_ROWS; r++)
            acc[r] = 0.0f;
        if (in % per == 0) { // every row starts 4-byte aligned
            const uint32_t *wr = (const uint32_t *)((const char *)w.data + j * in * (4 / per));
            for (int64_t q = lane; q < in / per; q += 32) {
                const uint32_t word = wr[q];
                float wv[4];
                if (DT == OPS_W_I8) {
                    const float sc = w.scales[j * blocks + q * 4 / w.block];
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        wv[e] = (float)(int8_t)(word >> (8 * e)) * sc;
                } else {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const uint16_t h = (uint16_t)(word >> (16 * e));
                        wv[e] = DT == OPS_W_BF16 ? dalle_bf16_value(h) : dalle_f16_value(h);
                    }
                }
#pragma unroll
                for (int r = 0; r < LINEAR_LOWP_ROWS; r++)
                    if (r < nr) {
                        float a = acc[r];
#pragma unroll
                        for (int e = 0; e < per; e++)
                            a = fmaf(wv[e], xr[r * in + q * per + e], a);
                        acc[r] = a;
                    }
            }
        } else {
            for (int64_t i = lane; i < in; i += 32) {
                const float wv = ops_weight_value(&w, in, j, i);
#pragma unroll
                for (int r = 0; r < LINEAR_LOWP_ROWS; r++)
                    if (r < nr)
                        acc[r] = fmaf(wv, xr[r * in + i], acc[r]);
            }
        }
#pragma unroll
        for (int r = 0; r < LINEAR_LOWP_ROWS; r++) {
            float v = acc[r];
            for (int o = 16; o > 0; o >>= 1)
                v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0 && r < nr)
                y[(r0 + r) * ldy + j] = b ? __fadd_rn(v, b[j]) : v;
        }
    }
}

// DivideMax: the CPU keeps the first element that is greater than all
// before it, i.e. the lowest index holding the maximum: the same here.
__global__ void k_divide_max(float *x, int64_t dim)
{
    __shared__ float sv[32];
    __shared__ int64_t si[32];
    float *xr = x + (int64_t)blockIdx.x * dim;
    float m = 0.0f;
    int64_t mi = -1;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        if (mi < 0 || xr[i] > m) {
            m = xr[i];
            mi = i;
        }
    for (int o = 16; o > 0; o >>= 1) {
        const float om = __shfl_xor_sync(0xffffffffu, m, o);
        const int64_t oi = __shfl_xor_sync(0xffffffffu, mi, o);
        if (oi >= 0 && (mi < 0 || om > m || (om == m && oi < mi))) {
            m = om;
            mi = oi;
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) {
        sv[warp] = m;
        si[warp] = mi;
    }
    __syncthreads();
    m = sv[0];
    mi = si[0];
    for (int w = 1; w < nw; w++)
        if (si[w] >= 0 && (mi < 0 || sv[w] > m || (sv[w] == m && si[w] < mi))) {
            m = sv[w];
            mi = si[w];
        }
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        xr[i] = __fdiv_rn(xr[i], m);
}

__global__ void k_softmax(float *x, int64_t n)
{
    __shared__ float redf[32];
    __shared__ double redd[32];
    float *xr = x + (int64_t)blockIdx.x * n;
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        m = max_f()(m, xr[i]);
    m = block_reduce(m, max_f(), redf);
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float e = expf(__fsub_rn(xr[i], m));
        xr[i] = e;
        s = __dadd_rn(s, (double)e);
    }
    const float inv = (float)__ddiv_rn(1.0, block_reduce(s, add_d(), redd));
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        xr[i] = __fmul_rn(xr[i], inv);
}

__global__ void k_quick_gelu(float *x, int64_t n)
{
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x) {
        const double v = (double)x[t];
        x[t] = (float)__ddiv_rn(v, __dadd_rn(1.0, exp(__dmul_rn(-1.702, v))));
    }
}

// attention.c's chunk preparation: a thread per (row, head vector, pair of
// columns): rotary (ops_rotary's roundings: no FMA), q * scale, k and v
// into the caches.
__global__ void k_attn_prep(float *qkv, int64_t rows, int m, int64_t ld, int heads, int64_t dh,
                            int64_t rot_cols, const float *cos_t, const float *sin_t,
                            int64_t table_ld, int64_t pos0, float scale, float *kc, float *vc,
                            int64_t max_pos)
{
    const int64_t pairs = (dh + 1) / 2, per_row = 3 * (int64_t)heads * pairs;
    const int64_t total = rows * per_row;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = t / per_row, rem = t - r * per_row;
        const int64_t vec = rem / pairs, d = 2 * (rem - vec * pairs);
        const int64_t b = r / m, i = r - b * m, p = pos0 + i;
        float *tv = qkv + r * ld + vec * dh;
        const bool two = d + 1 < dh;
        float x0 = tv[d], x1 = two ? tv[d + 1] : 0.0f;
        if (d + 1 < rot_cols) {
            const float *cs = cos_t + p * table_ld, *sn = sin_t + p * table_ld;
            const float a = x0, bb = x1;
            x0 = __fadd_rn(__fmul_rn(a, cs[d]), __fmul_rn(-bb, sn[d]));
            x1 = __fadd_rn(__fmul_rn(bb, cs[d + 1]), __fmul_rn(a, sn[d + 1]));
        }
        const int part = (int)(vec / heads), h = (int)(vec - (int64_t)part * heads);
        if (part == 0) { // q, in place
            tv[d] = __fmul_rn(x0, scale);
            if (two)
                tv[d + 1] = __fmul_rn(x1, scale);
        } else { // k or v, into its cache
            float *row = (part == 1 ? kc : vc) + ((b * heads + h) * max_pos + p) * dh;
            row[d] = x0;
            if (two)
                row[d + 1] = x1;
        }
    }
}

__global__ void k_scale_vectors(float *x, int64_t rows, int64_t ld, int n_vec, int64_t vec_stride,
                                int64_t n_cols, float scale)
{
    const int64_t per_row = (int64_t)n_vec * n_cols, total = rows * per_row;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = t / per_row, rem = t - r * per_row;
        const int64_t v = rem / n_cols, d = rem - v * n_cols;
        float *e = x + r * ld + v * vec_stride + d;
        *e = __fmul_rn(*e, scale);
    }
}

// PreShiftToken of a chunk, one block per sequence, token by token as
// token_shift.c: a token reads the ring, then records itself in its slot.
__global__ void k_token_shift(float *hist, int64_t C, const float *h, float *out, int m,
                              int64_t d, int64_t pos0, int text_len, int W)
{
    const int b = blockIdx.x;
    const int64_t R = W + 1;
    const int64_t half = (d + 1) / 2, q = (d + 3) / 4;
    const int64_t left = q < d - q ? q : d - q;
    float *ring = hist + (int64_t)b * R * C;
    for (int i = 0; i < m; i++) {
        const int64_t p = pos0 + i;
        const float *cur = h + ((int64_t)b * m + i) * d;
        const float *prev = ring + ((p + R - 1) % R) * C;
        float *o = out + ((int64_t)b * m + i) * d;
        if (p < text_len) {
            for (int64_t j = threadIdx.x; j < d; j += blockDim.x)
                o[j] = j < half ? (p > 0 ? prev[j] : 0.0f) : cur[j];
        } else {
            const int64_t img = p - text_len, r = img / W, c = img % W;
            const float *above = r > 0 ? ring + ((p - W) % R) * C : nullptr;
            for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
                float val;
                if (j < q)
                    val = above ? above[j] : 0.0f;
                else if (j < q + left)
                    val = c > 0 ? prev[j] : 0.0f;
                else
                    val = cur[j];
                o[j] = val;
            }
        }
        __syncthreads(); // every read of this token done before its slot is written
        float *slot = ring + (p % R) * C;
        for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
            slot[j] = cur[j];
        __syncthreads(); // the next token reads this slot
    }
}

// ---- the transformer's embedding, logits mask and guidance -----------------

// lib/backend_cpu.c's embed: row r = (b, i) of x is its id's row of
// text_emb (positions < text_len) or image_emb, plus the learned text
// position or the axial image embedding (row part + column part, summed
// first) when `positions`; `stable` rounds as tokens * 0.1 + tokens * 0.9.
__global__ void k_embed(float *x, const int32_t *ids, int64_t rows, int m, int64_t d,
                        int64_t pos0, int text_len, int fmap, ops_weight text_emb,
                        ops_weight image_emb, int positions, const float *text_pos,
                        const float *axial_rows, const float *axial_cols, int stable)
{
    const int64_t total = rows * d;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = t / d, j = t - r * d;
        const int64_t p = pos0 + r % m, id = ids[r];
        float v;
        if (p < text_len) {
            v = ops_weight_value(&text_emb, d, id, j);
            if (positions)
                v = __fadd_rn(v, text_pos[p * d + j]);
        } else {
            v = ops_weight_value(&image_emb, d, id, j);
            if (positions) {
                const int64_t img = p - text_len;
                v = __fadd_rn(v, __fadd_rn(axial_rows[(img / fmap) * d + j],
                                           axial_cols[(img % fmap) * d + j]));
            }
        }
        if (stable)
            v = __fadd_rn(__fmul_rn(v, 0.1f), __fmul_rn(v, 0.9f));
        x[t] = v;
    }
}

// x[r * ld + col0 + j] = value: the logits mask (-FLT_MAX).
__global__ void k_fill(float *x, int64_t rows, int64_t ld, int64_t col0, int64_t n, float value)
{
    const int64_t total = rows * n;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = t / n, j = t - r * n;
        x[r * ld + col0 + j] = value;
    }
}

// forward_with_cond_scale: cond = null + (cond - null) * scale, rounded as
// the CPU rounds it (no fused multiply-add).
__global__ void k_guidance(float *cond, const float *uncond, int64_t rows, int64_t ld, int64_t n,
                           float scale)
{
    const int64_t total = rows * n;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = t / n, i = t - r * n;
        float *c = cond + r * ld + i;
        const float u = uncond[r * ld + i];
        *c = __fadd_rn(u, __fmul_rn(__fsub_rn(*c, u), scale));
    }
}

// ---- attention: every query of a chunk over the KV cache -------------------

#define ATTEND_THREADS 128

// One block per (sequence b, head h) = blockIdx.x and query i = blockIdx.y,
// at position pos0 + i. Thread 0 lists the query's keys (attn_key_spans,
// the CPU's function) into shared memory; shared memory then holds q [dh],
// the scores [the query's keys], the partial outputs [groups][dh].
__global__ void __launch_bounds__(ATTEND_THREADS)
    k_attend(const float *q, int64_t q_row_ld, int64_t q_seq_ld, const float *k, const float *v,
             int64_t kv_head_ld, int heads, int dh, attn_keys keys, int64_t pos0, int groups,
             float *out, int64_t out_row_ld, int64_t out_seq_ld)
{
    DYNAMIC_SHARED(float, smem);
    __shared__ float redf[32];
    __shared__ double redd[32];
    __shared__ ops_span sp[CUDA_OPS_MAX_SPANS];
    __shared__ int64_t first[CUDA_OPS_MAX_SPANS]; // index of the span's first key in the list
    __shared__ int n_spans;
    __shared__ int64_t n_keys;
    const int bh = blockIdx.x, b = bh / heads, h = bh % heads, i = blockIdx.y;
    const int tid = threadIdx.x, bd = blockDim.x;
    if (tid == 0) {
        n_spans = attn_key_spans(&keys, pos0 + i, sp);
        int64_t total = 0;
        for (int s = 0; s < n_spans; s++) {
            first[s] = total;
            total += sp[s].count;
        }
        n_keys = total;
    }
    __syncthreads();
    const int64_t nk = n_keys;
    float *qs = smem, *sc = smem + dh, *part = sc + nk;
    const float *qp = q + (int64_t)b * q_seq_ld + (int64_t)i * q_row_ld + (int64_t)h * dh;
    const float *kp = k + (int64_t)bh * kv_head_ld, *vp = v + (int64_t)bh * kv_head_ld;
    float *op = out + (int64_t)b * out_seq_ld + (int64_t)i * out_row_ld + (int64_t)h * dh;
    if (nk == 0) { // nothing listed: zeros, as ops_attend (uniform across the block)
        for (int d = tid; d < dh; d += bd)
            op[d] = 0.0f;
        return;
    }
    for (int d = tid; d < dh; d += bd)
        qs[d] = qp[d];
    __syncthreads();

    // scores: one warp per key, the lanes over dim_head, a fixed xor tree
    const int warp = tid >> 5, lane = tid & 31, nw = bd >> 5;
    for (int s = 0; s < n_spans; s++)
        for (int64_t j = warp; j < sp[s].count; j += nw) {
            const float *kr = kp + (sp[s].start + j * sp[s].stride) * dh;
            float acc = 0.0f;
            for (int d = lane; d < dh; d += 32)
                acc = fmaf(qs[d], kr[d], acc);
            for (int o = 16; o > 0; o >>= 1)
                acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (lane == 0)
                sc[first[s] + j] = acc;
        }
    __syncthreads();

    // softmax as ops_softmax (max-subtracted, a double sum, one inverse), but
    // with CUDA's expf where the CPU has its polynomial (within an ulp of it:
    // lib/ops_attend.c)
    float m = -INFINITY;
    for (int64_t j = tid; j < nk; j += bd)
        m = max_f()(m, sc[j]);
    m = block_reduce(m, max_f(), redf);
    double sum = 0.0;
    for (int64_t j = tid; j < nk; j += bd) {
        const float e = expf(__fsub_rn(sc[j], m));
        sc[j] = e;
        sum = __dadd_rn(sum, (double)e);
    }
    const float inv = (float)__ddiv_rn(1.0, block_reduce(sum, add_d(), redd));
    for (int64_t j = tid; j < nk; j += bd)
        sc[j] = __fmul_rn(sc[j], inv);
    __syncthreads();

    // out = sum_j w_j v_j: group g sums the keys [g n / G, (g+1) n / G) in
    // key order for every column, then the groups are added in order
    const bool wide = bd >= dh; // one column per thread
    const int g = wide ? tid / dh : 0;
    if (g < groups) {
        const int64_t j0 = nk * g / groups, j1 = nk * (g + 1) / groups;
        for (int d = wide ? tid % dh : tid; d < dh; d += wide ? dh : bd) {
            int s = 0;
            while (s + 1 < n_spans && first[s + 1] <= j0)
                s++;
            int64_t jj = j0 - first[s];
            float acc = 0.0f;
            for (int64_t j = j0; j < j1; j++, jj++) {
                while (jj >= sp[s].count) { // past this span (or an empty one)
                    s++;
                    jj = 0;
                }
                const int64_t p = sp[s].start + jj * sp[s].stride;
                acc = __fadd_rn(acc, __fmul_rn(sc[j], vp[p * dh + d]));
            }
            part[(int64_t)g * dh + d] = acc;
        }
    }
    __syncthreads();
    for (int d = tid; d < dh; d += bd) {
        float o = part[d];
        for (int gg = 1; gg < groups; gg++)
            o = __fadd_rn(o, part[(int64_t)gg * dh + d]);
        op[d] = o;
    }
}

// ---- sampling: top-k + Gumbel, one block per row --------------------------

#define SAMPLE_THREADS 1024

// Order-preserving key of a float (no NaN): larger float, larger key; -0
// and +0 get the same key, as they compare equal.
__device__ __forceinline__ uint32_t float_key(float f)
{
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) == 0)
        u = 0;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float key_float(uint32_t k)
{
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// A candidate: the pick is the highest score, then the higher logit, then
// the lower id (sampler_pick's scan in id order with its tie rule).
struct cand {
    double score;
    float logit;
    int id; // -1: none
};

__device__ __forceinline__ bool cand_better(const cand &a, const cand &b)
{
    if (a.id < 0)
        return false;
    if (b.id < 0)
        return true;
    if (a.score != b.score)
        return a.score > b.score;
    if (a.logit != b.logit)
        return a.logit > b.logit;
    return a.id < b.id;
}

__global__ void __launch_bounds__(SAMPLE_THREADS)
    k_sample(const float *logits, int64_t ld, int n, int k, float temperature, uint64_t seed,
             uint64_t stream0, uint64_t counter, int32_t *ids)
{
    __shared__ unsigned hist[256];
    __shared__ int sel_bin, sel_want;
    __shared__ int redi[32];
    __shared__ int warp_eq[32];
    __shared__ cand wbest[32];
    const float *x = logits + (int64_t)blockIdx.x * ld;
    const uint64_t stream = stream0 + blockIdx.x;
    const int tid = threadIdx.x, bd = blockDim.x, lane = tid & 31, warp = tid >> 5;
    const int nw = bd >> 5;
    if (k > n)
        k = n;
    const bool greedy = k == 1, all = k >= n;

    // the k-th largest logit: a radix select over the keys, 8 bits a pass
    float thr = 0.0f;
    int ties = 0; // logits equal to thr still kept, lowest ids first
    if (!greedy && !all) {
        uint32_t prefix = 0, mask = 0;
        int want = k;
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int i = tid; i < 256; i += bd)
                hist[i] = 0;
            __syncthreads();
            for (int i = tid; i < n; i += bd) {
                const uint32_t key = float_key(x[i]);
                if ((key & mask) == prefix)
                    atomicAdd(&hist[(key >> shift) & 255u], 1u);
            }
            __syncthreads();
            if (tid == 0) {
                int cum = 0, bin = 255;
                for (; bin > 0; bin--) {
                    if (cum + (int)hist[bin] >= want)
                        break;
                    cum += (int)hist[bin];
                }
                sel_bin = bin;
                sel_want = want - cum;
            }
            __syncthreads();
            prefix |= (uint32_t)sel_bin << shift;
            mask |= 255u << shift;
            want = sel_want;
            __syncthreads(); // sel_* read by all before the next pass
        }
        thr = key_float(prefix);
        int above = 0;
        for (int i = tid; i < n; i += bd)
            above += x[i] > thr;
        ties = k - block_reduce(above, add_i(), redi);
    }

    // every kept candidate's score; the best one per thread
    cand best = {0.0, 0.0f, -1};
    int eq_before = 0; // logits == thr at lower ids, in earlier tiles
    for (int base = 0; base < n; base += bd) {
        const int i = base + tid;
        const bool in = i < n;
        const float xi = in ? x[i] : 0.0f;
        bool kept = in;
        if (!greedy && !all) {
            const bool eq = in && xi == thr;
            const unsigned bal = __ballot_sync(0xffffffffu, eq);
            const int rank_in_warp = __popc(bal & ((1u << lane) - 1u));
            if (lane == 0)
                warp_eq[warp] = __popc(bal);
            __syncthreads();
            int before = eq_before, tile = 0;
            for (int w = 0; w < nw; w++) {
                if (w < warp)
                    before += warp_eq[w];
                tile += warp_eq[w];
            }
            __syncthreads(); // warp_eq is rewritten by the next tile
            eq_before += tile;
            kept = in && (xi > thr || (eq && before + rank_in_warp < ties));
        }
        if (kept) {
            cand c;
            c.logit = xi;
            c.id = i;
            if (greedy)
                c.score = (double)xi;
            else
                c.score = __dadd_rn((double)__fdiv_rn(xi, temperature),
                                    d_rng_gumbel(seed, stream, counter, (uint64_t)i));
            if (cand_better(c, best))
                best = c;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        cand other;
        other.score = __shfl_xor_sync(0xffffffffu, best.score, o);
        other.logit = __shfl_xor_sync(0xffffffffu, best.logit, o);
        other.id = __shfl_xor_sync(0xffffffffu, best.id, o);
        if (cand_better(other, best))
            best = other;
    }
    if (lane == 0)
        wbest[warp] = best;
    __syncthreads();
    if (tid == 0) {
        cand b = wbest[0];
        for (int w = 1; w < nw; w++)
            if (cand_better(wbest[w], b))
                b = wbest[w];
        ids[blockIdx.x] = b.id;
    }
}

__global__ void k_rng_fill(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t lane0,
                           int64_t n, uint64_t *bits, double *gumbel)
{
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x) {
        if (bits)
            bits[t] = d_rng_u64(seed, stream, counter, lane0 + (uint64_t)t);
        if (gumbel)
            gumbel[t] = d_rng_gumbel(seed, stream, counter, lane0 + (uint64_t)t);
    }
}

// ---------------------------------------------------------------------------
// The context: create / destroy.

extern "C" void cuda_ops_params_init(cuda_ops_params *p)
{
    memset(p, 0, sizeof *p);
    p->device = 0;
    p->arena_bytes = (size_t)64 << 20;
}

// lib/cuda/cuda_device.cu
extern "C" int cudab_count_devices(const char **why);

extern "C" int cuda_ops_device_count(const char **why) { return cudab_count_devices(why); }

extern "C" void cuda_ops_destroy(cuda_ops *c)
{
    if (!c)
        return;
    {
        device_scope scope(c->device);
        if (c->stream)
            cudaStreamSynchronize(c->stream);
        if (c->handle)
            c->blas.destroy(c->handle);
        if (c->workspace)
            cudaFree(c->workspace);
        if (c->arena)
            cudaFree(c->arena);
        if (c->stream)
            cudaStreamDestroy(c->stream);
    }
    cublas_unload(&c->blas);
    free(c);
}

// Every kernel launched once, doing nothing (empty sizes), so that the
// stubs' statics are set before two threads could race on them; under a
// process-wide mutex, and only the first context pays (a few microseconds).
static void warm_clip_kernels(cudaStream_t s); // CLIP's section, at the end
static pthread_mutex_t warm_lock = PTHREAD_MUTEX_INITIALIZER;
static int warmed;

static dalle_status warm_kernels(cuda_ops *c)
{
    pthread_mutex_lock(&warm_lock);
    if (warmed) {
        pthread_mutex_unlock(&warm_lock);
        return DALLE_OK;
    }
    cudaStream_t s = c->stream;
    int *flag = (int *)c->workspace; // k_sample with n = 0 writes one id there
    // attention: position 0 of dim_head 1 over the workspace (one key)
    const attn_keys text_only = {ATTN_FULL, 1, 1, 1, 1};
    float *ws = (float *)c->workspace;
    LAUNCH(k_probe, 1, 32, 0, s)(flag);
    LAUNCH(k_layer_norm, 1, 32, 0, s)(nullptr, 0, nullptr, nullptr, 0.0f, nullptr);
    LAUNCH(k_geglu, 1, 32, 0, s)(nullptr, 0, 1, nullptr);
    LAUNCH(k_add_scaled, 1, 32, 0, s)(nullptr, nullptr, nullptr, 0, 1);
    LAUNCH(k_add_bias, 1, 32, 0, s)(nullptr, 0, 1, 1, nullptr);
    LAUNCH(k_divide_max, 1, 32, 0, s)(nullptr, 0);
    LAUNCH(k_softmax, 1, 32, 0, s)(nullptr, 0);
    LAUNCH(k_quick_gelu, 1, 32, 0, s)(nullptr, 0);
    LAUNCH(k_attn_prep, 1, 32, 0, s)(
        nullptr, 0, 1, 0, 1, 1, 0, nullptr, nullptr, 0, 0, 1.0f, nullptr, nullptr, 1);
    LAUNCH(k_scale_vectors, 1, 32, 0, s)(nullptr, 0, 0, 1, 0, 1, 1.0f);
    LAUNCH(k_token_shift, 1, 32, 0, s)(nullptr, 0, nullptr, nullptr, 0, 1, 0, 0, 1);
    LAUNCH(k_attend, 1, ATTEND_THREADS, (2 + ATTEND_THREADS) * sizeof(float), s)(
        ws, 0, 0, ws, ws, 1, 1, 1, text_only, 0, ATTEND_THREADS, ws, 0, 0);
    LAUNCH(k_sample, 1, 32, 0, s)(nullptr, 0, 0, 1, 1.0f, 0, 0, 0, flag);
    LAUNCH(k_rng_fill, 1, 32, 0, s)(0, 0, 0, 0, 0, nullptr, nullptr);
    const ops_weight no_w = {OPS_W_F32, nullptr, nullptr, 8};
    LAUNCH(k_embed, 1, 32, 0, s)(
        nullptr, nullptr, 0, 1, 1, 0, 0, 1, no_w, no_w, 0, nullptr, nullptr, nullptr, 0);
    LAUNCH(k_linear_lowp<OPS_W_F16>, 1, LINEAR_LOWP_WARPS * 32, 0, s)(
        nullptr, 0, 2, no_w, nullptr, 0, nullptr, 0);
    LAUNCH(k_linear_lowp<OPS_W_BF16>, 1, LINEAR_LOWP_WARPS * 32, 0, s)(
        nullptr, 0, 2, no_w, nullptr, 0, nullptr, 0);
    LAUNCH(k_linear_lowp<OPS_W_I8>, 1, LINEAR_LOWP_WARPS * 32, 0, s)(
        nullptr, 0, 8, no_w, nullptr, 0, nullptr, 0);
    LAUNCH(k_fill, 1, 32, 0, s)(nullptr, 0, 0, 0, 1, 0.0f);
    LAUNCH(k_guidance, 1, 32, 0, s)(nullptr, nullptr, 0, 0, 1, 1.0f);
    cuda_conv_warm(s); // --- the VAEs' image operations (ops_cuda_conv.cu)
    warm_clip_kernels(s); // --- CLIP's operations ---
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(s);
    if (e == cudaSuccess)
        warmed = 1;
    pthread_mutex_unlock(&warm_lock);
    // a driver or GPU that cannot run this build's code (no kernel image,
    // PTX too new for the driver) is found here, not in the token loop
    CU(e, "first kernel launches");
    return DALLE_OK;
}

// A context's device memory (cuBLAS's workspace, the arena): one cudaMalloc,
// and where it fails a message with how much was asked and what is free.
static dalle_status reserve(cuda_ops *c, size_t bytes, const char *what, void **out)
{
    *out = nullptr;
    const cudaError_t e = cudaMalloc(out, bytes);
    if (e == cudaSuccess)
        return DALLE_OK;
    *out = nullptr;
    if (e != cudaErrorMemoryAllocation)
        return cuda_fail(e, what);
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    cudaGetLastError();
    return dalle_fail(DALLE_ERR_OUT_OF_MEMORY,
                      "cuda: cannot reserve %zu MiB of device memory for %s on %s (%zu MiB free "
                      "of %zu MiB)",
                      (bytes + ((size_t)1 << 20) - 1) >> 20, what, c->describe, free_b >> 20,
                      total_b >> 20);
}

static dalle_status create_on_device(cuda_ops *c, const cuda_ops_params *p)
{
    cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, c->device), "cudaGetDeviceProperties");
    int driver = 0;
    cudaDriverGetVersion(&driver);
    snprintf(c->describe, sizeof c->describe, "%s, sm_%d%d, %zu MiB, %d SMs, driver CUDA %d.%d",
             prop.name, prop.major, prop.minor, prop.totalGlobalMem >> 20,
             prop.multiProcessorCount, driver / 1000, driver % 1000 / 10);

    device_scope scope(c->device);
    CU(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    c->workspace_bytes = p->blas_workspace_bytes ? p->blas_workspace_bytes : (size_t)32 << 20;
    dalle_status st = reserve(c, c->workspace_bytes, "cuBLAS's workspace", &c->workspace);
    if (st != DALLE_OK)
        return st;
    if (p->arena_bytes) {
        void *a = nullptr;
        if ((st = reserve(c, p->arena_bytes, "the arena (weights, states, workspaces)", &a)))
            return st;
        c->arena = (char *)a;
        c->arena_bytes = p->arena_bytes;
    }

    cublasStatus_t s = c->blas.create(&c->handle);
    if (s != DALLE_CUBLAS_STATUS_SUCCESS) {
        c->handle = nullptr;
        return cublas_fail(s, "cublasCreate_v2");
    }
    // the stream first: setting it resets cuBLAS to its own workspace pool
    if ((s = c->blas.set_stream(c->handle, c->stream)) != DALLE_CUBLAS_STATUS_SUCCESS)
        return cublas_fail(s, "cublasSetStream_v2");
    if ((s = c->blas.set_workspace(c->handle, c->workspace, c->workspace_bytes)) !=
        DALLE_CUBLAS_STATUS_SUCCESS)
        return cublas_fail(s, "cublasSetWorkspace_v2");
    const int mode = p->allow_tf32 ? DALLE_CUBLAS_TF32_TENSOR_OP_MATH
                     : p->pedantic ? DALLE_CUBLAS_PEDANTIC_MATH
                                   : DALLE_CUBLAS_DEFAULT_MATH;
    if ((s = c->blas.set_math_mode(c->handle, mode)) != DALLE_CUBLAS_STATUS_SUCCESS)
        return cublas_fail(s, "cublasSetMathMode");

    // attention keeps its scores in shared memory: allow all the device has
    cudaFuncAttributes fa;
    CU(cudaFuncGetAttributes(&fa, k_attend), "cudaFuncGetAttributes (attention)");
    size_t optin = prop.sharedMemPerBlockOptin > fa.sharedSizeBytes
                       ? prop.sharedMemPerBlockOptin - fa.sharedSizeBytes
                       : 0;
    if (optin > (size_t)INT_MAX)
        optin = (size_t)INT_MAX;
    CU(cudaFuncSetAttribute(k_attend, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)optin),
       "cudaFuncSetAttribute (attention)");
    c->attend_smem_max = optin;

    // every kernel once (the first context only), then one on this device
    st = warm_kernels(c);
    if (st != DALLE_OK)
        return st;
    LAUNCH(k_probe, 1, 32, 0, c->stream)((int *)c->workspace);
    LAUNCHED("probe kernel");
    CU(cudaStreamSynchronize(c->stream), "probe kernel");
    return DALLE_OK;
}

extern "C" dalle_status cuda_ops_create(const cuda_ops_params *p, cuda_ops **out)
{
    if (!out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "cuda_ops_create: out is NULL");
    *out = nullptr;
    cuda_ops_params defaults;
    if (!p) {
        cuda_ops_params_init(&defaults);
        p = &defaults;
    }
    cuda_ops *c = (cuda_ops *)calloc(1, sizeof *c);
    if (!c)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "cuda_ops_create: out of memory");
    c->device = p->device;

    const char *soname = p->cublas_library ? p->cublas_library : default_cublas.s;
    dalle_status st = cublas_load(&c->blas, soname);
    if (st != DALLE_OK) {
        free(c);
        return st;
    }

    // no usable device: what the runtime found, and the driver's and this
    // build's CUDA (lib/cuda/cuda_device.cu)
    const char *why = "";
    const int n = cudab_count_devices(&why);
    if (n <= 0) {
        st = dalle_fail(DALLE_ERR_UNSUPPORTED, "cuda: no usable CUDA device: %s", why);
        cuda_ops_destroy(c);
        return st;
    }
    if (p->device < 0 || p->device >= n) {
        cuda_ops_destroy(c);
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "cuda: device %d: %d CUDA device(s) present",
                          p->device, n);
    }
    st = create_on_device(c, p);
    if (st != DALLE_OK) {
        // keep the first error's message: teardown may fail as well
        cuda_ops_destroy(c);
        return st;
    }
    *out = c;
    return DALLE_OK;
}

extern "C" int cuda_ops_device(const cuda_ops *c) { return c->device; }
extern "C" const char *cuda_ops_describe(const cuda_ops *c) { return c->describe; }

extern "C" dalle_status cuda_ops_sync(cuda_ops *c)
{
    device_scope scope(c->device);
    CU(cudaStreamSynchronize(c->stream), "cudaStreamSynchronize");
    return DALLE_OK;
}

// ---------------------------------------------------------------------------
// Memory.

#define ARENA_ALIGN ((size_t)256)

extern "C" dalle_status cuda_ops_alloc(cuda_ops *c, size_t bytes, void **ptr)
{
    *ptr = nullptr;
    const size_t at = (c->arena_used + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (at > c->arena_bytes || bytes > c->arena_bytes - at)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY,
                          "cuda: arena: %zu bytes asked for, %zu of %zu free (raise "
                          "cuda_ops_params.arena_bytes)",
                          bytes, at <= c->arena_bytes ? c->arena_bytes - at : (size_t)0,
                          c->arena_bytes);
    *ptr = c->arena + at;
    c->arena_used = at + bytes;
    return DALLE_OK;
}

extern "C" size_t cuda_ops_arena_mark(const cuda_ops *c) { return c->arena_used; }

extern "C" void cuda_ops_arena_reset(cuda_ops *c, size_t mark)
{
    if (mark <= c->arena_used)
        c->arena_used = mark;
}

extern "C" size_t cuda_ops_arena_size(const cuda_ops *c) { return c->arena_bytes; }

extern "C" dalle_status cuda_ops_upload(cuda_ops *c, void *dev, const void *host, size_t bytes)
{
    if (!bytes)
        return DALLE_OK;
    device_scope scope(c->device);
    CU(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, c->stream), "upload");
    return DALLE_OK;
}

extern "C" dalle_status cuda_ops_download(cuda_ops *c, void *host, const void *dev, size_t bytes)
{
    device_scope scope(c->device);
    if (bytes)
        CU(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, c->stream), "download");
    CU(cudaStreamSynchronize(c->stream), "download");
    return DALLE_OK;
}

extern "C" dalle_status cuda_ops_copy(cuda_ops *c, void *dst, const void *src, size_t bytes)
{
    if (!bytes)
        return DALLE_OK;
    device_scope scope(c->device);
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream), "copy");
    return DALLE_OK;
}

extern "C" dalle_status cuda_ops_zero(cuda_ops *c, void *dev, size_t bytes)
{
    if (!bytes)
        return DALLE_OK;
    device_scope scope(c->device);
    CU(cudaMemsetAsync(dev, 0, bytes, c->stream), "memset");
    return DALLE_OK;
}

// ---------------------------------------------------------------------------
// Matrix products.

static dalle_status sgemm_colmajor(cuda_ops *c, const char *op, int ta, int tb, int64_t m,
                                   int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                                   const float *b, int64_t ldb, float beta, float *cm, int64_t ldc)
{
    if (!fits_int(m))
        return bad_size(op, "m", m);
    if (!fits_int(n))
        return bad_size(op, "n", n);
    if (!fits_int(k))
        return bad_size(op, "k", k);
    if (!fits_int(lda) || !fits_int(ldb) || !fits_int(ldc))
        return bad_size(op, "a leading dimension", lda > ldb ? (lda > ldc ? lda : ldc) : ldb);
    if (m == 0 || n == 0)
        return DALLE_OK;
    cublasStatus_t s = c->blas.sgemm(c->handle, ta, tb, (int)m, (int)n, (int)k, &alpha, a,
                                     (int)lda, b, (int)ldb, &beta, cm, (int)ldc);
    if (s != DALLE_CUBLAS_STATUS_SUCCESS)
        return cublas_fail(s, op);
    return DALLE_OK;
}

// Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ: the same
// memory, the operands swapped.
extern "C" dalle_status cuda_gemm(cuda_ops *c, int trans_a, int trans_b, int64_t m, int64_t n,
                                  int64_t k, float alpha, const float *a, int64_t lda,
                                  const float *b, int64_t ldb, float beta, float *cm, int64_t ldc)
{
    device_scope scope(c->device);
    return sgemm_colmajor(c, "gemm", trans_b ? DALLE_CUBLAS_OP_T : DALLE_CUBLAS_OP_N,
                          trans_a ? DALLE_CUBLAS_OP_T : DALLE_CUBLAS_OP_N, n, m, k, alpha, b, ldb,
                          a, lda, beta, cm, ldc);
}

extern "C" dalle_status cuda_linear(cuda_ops *c, const float *x, int64_t rows, int64_t in,
                                    const float *w, const float *b, int64_t out, float *y,
                                    int64_t ldy)
{
    if (ldy < out)
        return bad_size("linear", "ldy", ldy);
    device_scope scope(c->device);
    // yᵀ [out][rows] (column-major, ld ldy) = W · xᵀ: W's row-major [out][in]
    // is a column-major [in][out], used transposed
    dalle_status st = sgemm_colmajor(c, "linear", DALLE_CUBLAS_OP_T, DALLE_CUBLAS_OP_N, out, rows,
                                     in, 1.0f, w, in, x, in, 0.0f, y, ldy);
    if (st != DALLE_OK || !b || rows == 0 || out == 0)
        return st;
    LAUNCH(k_add_bias, grid_for(rows * out), 256, 0, c->stream)(y, rows, out, ldy, b);
    LAUNCHED("linear (bias)");
    return DALLE_OK;
}

// An ops_weight (device pointers) the kernels can read: float32, f16,
// bf16, or int8 with scales in blocks of a multiple of 8 (the 4-byte path
// needs four elements to share a block).
static bool weight_ok(const ops_weight *w)
{
    if (w->dtype == OPS_W_I8)
        return w->block >= 8 && w->block % 8 == 0 && w->scales;
    return w->dtype == OPS_W_F32 || w->dtype == OPS_W_F16 || w->dtype == OPS_W_BF16;
}

extern "C" dalle_status cuda_linear_w(cuda_ops *c, const float *x, int64_t rows, int64_t in,
                                      const ops_weight *w, const float *b, int64_t out, float *y,
                                      int64_t ldy)
{
    if (w->dtype == OPS_W_F32)
        return cuda_linear(c, x, rows, in, (const float *)w->data, b, out, y, ldy);
    if (!weight_ok(w))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "cuda: linear: weights of dtype %d (block %d): the GPU takes float32, "
                          "f16, bf16 and int8 with scale blocks of a multiple of 8",
                          w->dtype, w->block);
    if (rows < 0 || in <= 0 || out < 0)
        return bad_size("linear", "rows, in or out", rows < 0 ? rows : in <= 0 ? in : out);
    if (ldy < out)
        return bad_size("linear", "ldy", ldy);
    if (rows == 0 || out == 0)
        return DALLE_OK;
    const int64_t blocks = (out + LINEAR_LOWP_WARPS - 1) / LINEAR_LOWP_WARPS;
    if (blocks > INT_MAX)
        return bad_size("linear", "out", out);
    device_scope scope(c->device);
    const unsigned g = (unsigned)blocks, t = LINEAR_LOWP_WARPS * 32;
    if (w->dtype == OPS_W_F16)
        LAUNCH(k_linear_lowp<OPS_W_F16>, g, t, 0, c->stream)(x, rows, in, *w, b, out, y, ldy);
    else if (w->dtype == OPS_W_BF16)
        LAUNCH(k_linear_lowp<OPS_W_BF16>, g, t, 0, c->stream)(x, rows, in, *w, b, out, y, ldy);
    else
        LAUNCH(k_linear_lowp<OPS_W_I8>, g, t, 0, c->stream)(x, rows, in, *w, b, out, y, ldy);
    LAUNCHED("linear (reduced weights)");
    return DALLE_OK;
}

// ---------------------------------------------------------------------------
// Row-wise and elementwise operations.

#define ROW_THREADS 256

// The arguments of a kernel launched with one block a row: rows within an
// int grid, a positive row length `n` (named `n_name` in the message).
static dalle_status row_args(const char *op, int64_t rows, const char *n_name, int64_t n)
{
    if (!fits_int(rows))
        return bad_size(op, "rows", rows);
    if (n <= 0)
        return bad_size(op, n_name, n);
    return DALLE_OK;
}

extern "C" dalle_status cuda_layer_norm(cuda_ops *c, const float *x, int64_t rows, int64_t dim,
                                        const float *gain, const float *bias, float eps, float *y)
{
    dalle_status s = row_args("layer_norm", rows, "dim", dim);
    if (s || rows == 0)
        return s;
    device_scope scope(c->device);
    LAUNCH(k_layer_norm, (unsigned)rows, ROW_THREADS, 0, c->stream)(x, dim, gain, bias, eps, y);
    LAUNCHED("layer_norm");
    return DALLE_OK;
}

extern "C" dalle_status cuda_geglu(cuda_ops *c, const float *h, int64_t rows, int64_t inner,
                                   float *y)
{
    if (rows < 0 || inner < 0)
        return bad_size("geglu", "rows * inner", rows * inner);
    if (rows == 0 || inner == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_geglu, grid_for(rows * inner), 256, 0, c->stream)(h, rows, inner, y);
    LAUNCHED("geglu");
    return DALLE_OK;
}

extern "C" dalle_status cuda_add_scaled(cuda_ops *c, float *x, const float *y, const float *scale,
                                        int64_t rows, int64_t dim)
{
    if (rows < 0 || dim < 0)
        return bad_size("add_scaled", "rows * dim", rows * dim);
    if (rows == 0 || dim == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_add_scaled, grid_for(rows * dim), 256, 0, c->stream)(x, y, scale, rows, dim);
    LAUNCHED("add_scaled");
    return DALLE_OK;
}

extern "C" dalle_status cuda_divide_max(cuda_ops *c, float *x, int64_t rows, int64_t dim)
{
    dalle_status s = row_args("divide_max", rows, "dim", dim);
    if (s || rows == 0)
        return s;
    device_scope scope(c->device);
    LAUNCH(k_divide_max, (unsigned)rows, ROW_THREADS, 0, c->stream)(x, dim);
    LAUNCHED("divide_max");
    return DALLE_OK;
}

extern "C" dalle_status cuda_softmax(cuda_ops *c, float *x, int64_t rows, int64_t n)
{
    dalle_status s = row_args("softmax", rows, "n", n);
    if (s || rows == 0)
        return s;
    device_scope scope(c->device);
    LAUNCH(k_softmax, (unsigned)rows, ROW_THREADS, 0, c->stream)(x, n);
    LAUNCHED("softmax");
    return DALLE_OK;
}

extern "C" dalle_status cuda_quick_gelu(cuda_ops *c, float *x, int64_t n)
{
    if (n < 0)
        return bad_size("quick_gelu", "n", n);
    if (n == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_quick_gelu, grid_for(n), 256, 0, c->stream)(x, n);
    LAUNCHED("quick_gelu");
    return DALLE_OK;
}

extern "C" dalle_status cuda_attn_prep(cuda_ops *c, float *qkv, int batch, int m, int64_t ld,
                                       int heads, int64_t dim_head, int64_t rot_cols,
                                       const float *cos, const float *sin, int64_t table_ld,
                                       int64_t pos0, float scale, float *k_cache, float *v_cache,
                                       int64_t max_pos)
{
    if (batch < 0 || m < 0 || heads < 0 || dim_head <= 0 || ld < 3 * (int64_t)heads * dim_head)
        return bad_size("attn_prep", "batch, m, heads, dim_head or ld", batch < 0 ? batch : m);
    if (rot_cols < 0 || rot_cols > dim_head || (rot_cols && (!cos || !sin || table_ld < rot_cols)))
        return bad_size("attn_prep", "rot_cols (or its tables)", rot_cols);
    if (pos0 < 0 || pos0 + m > max_pos)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "cuda: attn_prep: positions %lld .. %lld past the cache (%lld)",
                          (long long)pos0, (long long)(pos0 + m - 1), (long long)max_pos);
    const int64_t total = (int64_t)batch * m * 3 * heads * ((dim_head + 1) / 2);
    if (total == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_attn_prep, grid_for(total), 256, 0, c->stream)(
        qkv, (int64_t)batch * m, m, ld, heads, dim_head, rot_cols, cos, sin, table_ld, pos0, scale,
        k_cache, v_cache, max_pos);
    LAUNCHED("attn_prep");
    return DALLE_OK;
}

extern "C" dalle_status cuda_scale_vectors(cuda_ops *c, float *x, int64_t rows, int64_t ld,
                                           int n_vec, int64_t vec_stride, int64_t n_cols,
                                           float scale)
{
    if (rows < 0 || n_vec < 0 || n_cols < 0)
        return bad_size("scale_vectors", "rows, n_vec or n_cols", rows < 0 ? rows : n_cols);
    if (rows == 0 || n_vec == 0 || n_cols == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_scale_vectors, grid_for(rows * n_vec * n_cols), 256, 0, c->stream)(
        x, rows, ld, n_vec, vec_stride, n_cols, scale);
    LAUNCHED("scale_vectors");
    return DALLE_OK;
}

extern "C" dalle_status cuda_attend(cuda_ops *c, const float *q, int64_t q_row_ld,
                                    int64_t q_seq_ld, const float *k, const float *v,
                                    int64_t kv_head_ld, int batch, int heads, int64_t dim_head,
                                    const attn_keys *keys, int64_t pos0, int m, float *out,
                                    int64_t out_row_ld, int64_t out_seq_ld)
{
    if (batch < 0 || heads < 0 || (int64_t)batch * heads > INT_MAX)
        return bad_size("attend", "batch * heads", (long long)batch * heads);
    if (m < 0 || m > 65535)
        return bad_size("attend", "m (queries in one launch)", m);
    if (dim_head <= 0 || dim_head > 65536)
        return bad_size("attend", "dim_head", dim_head);
    if (keys->type < ATTN_FULL || keys->type > ATTN_CONV_LIKE || keys->text_len < 0 ||
        keys->fmap < 1 || keys->conv_kernel < 1 || keys->conv_dilation < 1 ||
        ATTN_MAX_SPANS(keys->conv_kernel) > CUDA_OPS_MAX_SPANS)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "cuda: attend: attention type %d, text_len %lld, fmap %lld, conv "
                          "kernel %d, dilation %d: not a key rule this kernel takes (at most %d "
                          "spans)",
                          keys->type, (long long)keys->text_len, (long long)keys->fmap,
                          keys->conv_kernel, keys->conv_dilation, CUDA_OPS_MAX_SPANS);
    // every key is at a position <= the query's: the cache must hold them all
    if (pos0 < 0 || (pos0 + m) * dim_head > kv_head_ld)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "cuda: attend: positions %lld .. %lld past the cache (%lld)",
                          (long long)pos0, (long long)(pos0 + m - 1),
                          (long long)(kv_head_ld / dim_head));
    if (batch == 0 || heads == 0 || m == 0)
        return DALLE_OK;
    // the scores of the query with the most keys set the shared memory
    int64_t most = 0;
    ops_span sp[CUDA_OPS_MAX_SPANS];
    for (int i = 0; i < m; i++) {
        const int n = attn_key_spans(keys, pos0 + i, sp);
        int64_t total = 0;
        for (int s = 0; s < n; s++)
            total += sp[s].count;
        most = total > most ? total : most;
    }
    const int dh = (int)dim_head;
    const int groups = dh <= ATTEND_THREADS ? ATTEND_THREADS / dh : 1;
    const size_t smem = ((size_t)dh + (size_t)most + (size_t)groups * dh) * sizeof(float);
    if (smem > c->attend_smem_max)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "cuda: attend: %lld keys of dim_head %d need %zu bytes of shared "
                          "memory; this GPU gives a block %zu",
                          (long long)most, dh, smem, c->attend_smem_max);
    device_scope scope(c->device);
    LAUNCH(k_attend, dim3((unsigned)(batch * heads), (unsigned)m), ATTEND_THREADS, smem, c->stream)(
        q, q_row_ld, q_seq_ld, k, v, kv_head_ld, heads, dh, *keys, pos0, groups, out, out_row_ld,
        out_seq_ld);
    LAUNCHED("attend");
    return DALLE_OK;
}

extern "C" dalle_status cuda_token_shift(cuda_ops *c, float *hist, int64_t hist_cols,
                                         const float *h, float *out, int batch, int m,
                                         int64_t dim, int64_t pos0, int text_len, int fmap)
{
    if (batch < 0 || m < 0 || dim <= 0 || fmap <= 0 || pos0 < 0 || text_len < 0)
        return bad_size("token_shift", "batch, m, dim, fmap or pos0", batch < 0 ? batch : dim);
    const int64_t half = (dim + 1) / 2, q = (dim + 3) / 4;
    const int64_t img = 2 * q < dim ? 2 * q : dim;
    if (hist_cols < (half > img ? half : img) || hist_cols > dim)
        return bad_size("token_shift", "hist_cols", hist_cols);
    if (batch == 0 || m == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_token_shift, (unsigned)batch, ROW_THREADS, 0, c->stream)(
        hist, hist_cols, h, out, m, dim, pos0, text_len, fmap);
    LAUNCHED("token_shift");
    return DALLE_OK;
}

// ---------------------------------------------------------------------------
// Sampling.

extern "C" dalle_status cuda_sample_topk(cuda_ops *c, const float *logits, int64_t ld, int rows,
                                         int n, int k, float temperature, uint64_t seed,
                                         uint64_t stream0, uint64_t counter, int32_t *ids_dev)
{
    if (rows < 0 || n <= 0 || k < 1 || ld < n)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "cuda: sample: rows = %d, n = %d, k = %d, ld = %lld", rows, n, k,
                          (long long)ld);
    if (!(temperature > 0.0f))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "cuda: sample: temperature %g",
                          (double)temperature);
    if (rows == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_sample, (unsigned)rows, SAMPLE_THREADS, 0, c->stream)(
        logits, ld, n, k, temperature, seed, stream0, counter, ids_dev);
    LAUNCHED("sample");
    return DALLE_OK;
}

extern "C" dalle_status cuda_rng_fill(cuda_ops *c, uint64_t seed, uint64_t stream,
                                      uint64_t counter, uint64_t lane0, int64_t n, uint64_t *bits,
                                      double *gumbel)
{
    if (n < 0)
        return bad_size("rng_fill", "n", n);
    if (n == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_rng_fill, grid_for(n), 256, 0, c->stream)(
        seed, stream, counter, lane0, n, bits, gumbel);
    LAUNCHED("rng_fill");
    return DALLE_OK;
}

// ---------------------------------------------------------------------------
// The transformer's embedding, logits mask and guidance.

extern "C" dalle_status cuda_embed(cuda_ops *c, float *x, const int32_t *ids, int batch, int m,
                                   int64_t dim, int64_t pos0, int text_len, int fmap,
                                   const ops_weight *text_emb, const ops_weight *image_emb,
                                   int positions, const float *text_pos, const float *axial_rows,
                                   const float *axial_cols, int stable)
{
    if (!weight_ok(text_emb) || !weight_ok(image_emb))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "cuda: embed: tables of dtype %d / %d (float32, f16, bf16 or int8)",
                          text_emb->dtype, image_emb->dtype);
    if (batch < 0 || m < 0 || dim <= 0 || pos0 < 0 || fmap <= 0 || text_len < 0)
        return bad_size("embed", "batch, m, dim, fmap or pos0", batch < 0 ? batch : dim);
    if (positions && (!text_pos || !axial_rows || !axial_cols))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "cuda: embed: a position table is NULL");
    if (batch == 0 || m == 0)
        return DALLE_OK;
    const int64_t rows = (int64_t)batch * m;
    device_scope scope(c->device);
    LAUNCH(k_embed, grid_for(rows * dim), 256, 0, c->stream)(
        x, ids, rows, m, dim, pos0, text_len, fmap, *text_emb, *image_emb, positions, text_pos,
        axial_rows, axial_cols, stable);
    LAUNCHED("embed");
    return DALLE_OK;
}

extern "C" dalle_status cuda_fill(cuda_ops *c, float *x, int64_t rows, int64_t ld, int64_t col0,
                                  int64_t n, float value)
{
    if (rows < 0 || n < 0 || col0 < 0 || (rows > 0 && n > 0 && col0 + n > ld))
        return bad_size("fill", "rows, n or col0 + n > ld", rows < 0 ? rows : col0 + n);
    if (rows == 0 || n == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_fill, grid_for(rows * n), 256, 0, c->stream)(x, rows, ld, col0, n, value);
    LAUNCHED("fill");
    return DALLE_OK;
}

extern "C" dalle_status cuda_guidance(cuda_ops *c, float *cond, const float *uncond, int64_t rows,
                                      int64_t ld, int64_t n, float scale)
{
    if (rows < 0 || n < 0 || (rows > 1 && ld < n))
        return bad_size("guidance", "rows, n or ld", rows < 0 ? rows : ld);
    if (rows == 0 || n == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_guidance, grid_for(rows * n), 256, 0, c->stream)(cond, uncond, rows, ld, n, scale);
    LAUNCHED("guidance");
    return DALLE_OK;
}

// ---------------------------------------------------------------------------
// --- CLIP's operations (lib/backend_ops.h's CLIP section; lib/clip_*.c) ---
//
// The CPU counterparts are lib/clip_backend.c's. Copies (gather, patches)
// are exact; the mean over rows and the scores sum in double in the CPU's
// order, so they are the CPU's bits for the same inputs; attention and the
// norm reduce in other orders (within the tolerances of test_cuda_ops.c).

__global__ void k_gather_rows(const float *table, const int32_t *ids, int64_t rows, int64_t dim,
                              float *out)
{
    const int64_t total = rows * dim;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = t / dim, j = t - r * dim;
        out[t] = table[(int64_t)ids[r] * dim + j];
    }
}

// out [n][grid²][3 p²] from images [n][3][S][S]: one thread per output value
__global__ void k_patches(const float *images, int64_t total, int S, int p, int g,
                          int channels_last, float *out)
{
    const int64_t P = 3LL * p * p, T = (int64_t)g * g;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = t / P, k = t - row * P, b = row / T, tt = row - b * T;
        const int64_t gh = tt / g, gw = tt - gh * g;
        int64_t c, p1, p2;
        if (channels_last) { // (p1, p2, c)
            c = k % 3;
            p1 = k / 3 / p;
            p2 = k / 3 % p;
        } else { // (c, y, x)
            c = k / ((int64_t)p * p);
            p1 = k / p % p;
            p2 = k % p;
        }
        out[t] = images[((b * 3 + c) * S + gh * p + p1) * S + gw * p + p2];
    }
}

#define CLIP_ATTEND_THREADS 128

// One block per query (sequence b, head h, position i); shared memory: the
// scaled q [dh], then the scores [n]. A key j counts where mask[b][j] != 0
// (or no mask) and, causal, j <= i; the others get weight 0 and are left
// out of every sum, as ops_attend leaves out keys it is not given.
__global__ void __launch_bounds__(CLIP_ATTEND_THREADS)
    k_clip_attend(const float *qkv, int n, int heads, int dh, const uint8_t *mask, int causal,
                  float scale, float *att)
{
    DYNAMIC_SHARED(float, smem);
    __shared__ float redf[32];
    __shared__ double redd[32];
    float *qs = smem, *sc = smem + dh;
    const int i = (int)(blockIdx.x % (unsigned)n), bh = (int)(blockIdx.x / (unsigned)n);
    const int b = bh / heads, h = bh % heads, tid = threadIdx.x, bd = blockDim.x;
    const int64_t inner = (int64_t)heads * dh, ld = 3 * inner;
    const float *seq = qkv + (int64_t)b * n * ld;
    const uint8_t *mk = mask ? mask + (int64_t)b * n : nullptr;
    const int last = causal ? i : n - 1; // keys past it are never used
    for (int d = tid; d < dh; d += bd)
        qs[d] = __fmul_rn(seq[(int64_t)i * ld + (int64_t)h * dh + d], scale);
    __syncthreads();

    // scores: one warp per key, the lanes over dim_head, a fixed xor tree
    const int warp = tid >> 5, lane = tid & 31, nw = bd >> 5;
    for (int j = warp; j <= last; j += nw) {
        const float *kr = seq + (int64_t)j * ld + inner + (int64_t)h * dh;
        float acc = 0.0f;
        for (int d = lane; d < dh; d += 32)
            acc = fmaf(qs[d], kr[d], acc);
        for (int o = 16; o > 0; o >>= 1)
            acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0)
            sc[j] = (!mk || mk[j]) ? acc : -INFINITY;
    }
    __syncthreads();

    // softmax over the keys that count, as ops_softmax
    float m = -INFINITY;
    for (int j = tid; j <= last; j += bd)
        m = max_f()(m, sc[j]);
    m = block_reduce(m, max_f(), redf);
    if (m == -INFINITY) { // no key (the model never asks): zeros, as ops_attend
        for (int d = tid; d < dh; d += bd)
            att[((int64_t)b * n + i) * inner + (int64_t)h * dh + d] = 0.0f;
        return;
    }
    double sum = 0.0;
    for (int j = tid; j <= last; j += bd) {
        const bool use = !mk || mk[j];
        const float e = use ? expf(__fsub_rn(sc[j], m)) : 0.0f;
        sc[j] = e;
        sum = __dadd_rn(sum, (double)e);
    }
    const float inv = (float)__ddiv_rn(1.0, block_reduce(sum, add_d(), redd));
    for (int j = tid; j <= last; j += bd)
        sc[j] = __fmul_rn(sc[j], inv);
    __syncthreads();

    // out = sum_j w_j v_j in key order, a column per thread
    for (int d = tid; d < dh; d += bd) {
        const float *vc = seq + 2 * inner + (int64_t)h * dh + d;
        float acc = 0.0f;
        for (int j = 0; j <= last; j++)
            if (!mk || mk[j])
                acc = __fadd_rn(acc, __fmul_rn(sc[j], vc[(int64_t)j * ld]));
        att[((int64_t)b * n + i) * inner + (int64_t)h * dh + d] = acc;
    }
}

// one thread per (sequence, column): the rows summed in order, in double,
// as lib/clip_backend.c: the CPU's bits
__global__ void k_mean_rows(const float *x, int batch, int n, int64_t dim, const uint8_t *mask,
                            float *out)
{
    const int64_t total = (int64_t)batch * dim;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t b = t / dim, j = t - b * dim;
        const float *xb = x + b * n * dim + j;
        const uint8_t *mb = mask ? mask + b * n : nullptr;
        int count = 0;
        double sum = 0.0;
        for (int i = 0; i < n; i++)
            if (!mb || mb[i]) {
                count++;
                sum = __dadd_rn(sum, (double)xb[(int64_t)i * dim]);
            }
        out[t] = (float)__ddiv_rn(sum, (double)count);
    }
}

__global__ void k_l2_normalize(float *x, int64_t dim)
{
    __shared__ double red[32];
    float *v = x + (int64_t)blockIdx.x * dim;
    double ss = 0.0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        ss = __dadd_rn(ss, __dmul_rn((double)v[i], (double)v[i]));
    float norm = (float)__dsqrt_rn(block_reduce(ss, add_d(), red));
    if (norm < 1e-12f)
        norm = 1e-12f;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        v[i] = __fdiv_rn(v[i], norm);
}

// one thread per (image, caption), the dot in double in the CPU's order
// (a product of two floats is exact in double): the CPU's bits
__global__ void k_clip_scores(const float *img, int n_img, const float *txt, int n_txt,
                              int64_t dim, float scale, int scale_first, float *out, int64_t ld)
{
    const int64_t total = (int64_t)n_img * n_txt;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = t / n_txt, j = t - i * n_txt;
        const float *a = img + i * dim, *tx = txt + j * dim;
        double dot = 0.0;
        for (int64_t k = 0; k < dim; k++) {
            const float ak = scale_first ? __fmul_rn(scale, a[k]) : a[k];
            dot = __dadd_rn(dot, __dmul_rn((double)ak, (double)tx[k]));
        }
        out[i * ld + j] = scale_first ? (float)dot : __fmul_rn((float)dot, scale);
    }
}

static void warm_clip_kernels(cudaStream_t s)
{
    LAUNCH(k_gather_rows, 1, 32, 0, s)(nullptr, nullptr, 0, 1, nullptr);
    LAUNCH(k_patches, 1, 32, 0, s)(nullptr, 0, 1, 1, 1, 0, nullptr);
    // one position of dim_head 0: it writes its one score to shared memory
    LAUNCH(k_clip_attend, 1, CLIP_ATTEND_THREADS, sizeof(float), s)(
        nullptr, 1, 1, 0, nullptr, 1, 1.0f, nullptr);
    LAUNCH(k_mean_rows, 1, 32, 0, s)(nullptr, 0, 1, 1, nullptr, nullptr);
    LAUNCH(k_l2_normalize, 1, 32, 0, s)(nullptr, 0);
    LAUNCH(k_clip_scores, 1, 32, 0, s)(nullptr, 0, nullptr, 1, 1, 1.0f, 0, nullptr, 1);
}

extern "C" dalle_status cuda_gather_rows(cuda_ops *c, const float *table, const int32_t *ids,
                                         int64_t rows, int64_t dim, float *out)
{
    if (rows < 0 || dim < 0)
        return bad_size("gather_rows", "rows or dim", rows < 0 ? rows : dim);
    if (rows == 0 || dim == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_gather_rows, grid_for(rows * dim), 256, 0, c->stream)(table, ids, rows, dim, out);
    LAUNCHED("gather_rows");
    return DALLE_OK;
}

extern "C" dalle_status cuda_patches(cuda_ops *c, const float *images, int n, int size, int patch,
                                     int channels_last, float *out)
{
    if (n < 0 || patch <= 0 || size < patch || size % patch)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "cuda: patches: n = %d, size = %d, patch = %d", n, size, patch);
    const int g = size / patch;
    const int64_t total = (int64_t)n * g * g * 3 * patch * patch;
    if (total == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_patches, grid_for(total), 256, 0, c->stream)(
        images, total, size, patch, g, channels_last, out);
    LAUNCHED("patches");
    return DALLE_OK;
}

extern "C" dalle_status cuda_clip_attend(cuda_ops *c, const float *qkv, int batch, int n,
                                         int heads, int64_t dim_head, const uint8_t *key_mask,
                                         int causal, float scale, float *att)
{
    if (batch < 0 || n < 0 || heads < 0 || dim_head <= 0 || dim_head > 65536)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "cuda: clip_attend: batch = %d, n = %d, heads = %d, dim_head = %lld",
                          batch, n, heads, (long long)dim_head);
    const int64_t blocks = (int64_t)batch * heads * n;
    if (blocks > INT_MAX)
        return bad_size("clip_attend", "batch * heads * n", blocks);
    if (blocks == 0)
        return DALLE_OK;
    // the scores of a query in shared memory: without opting in, 48 KiB a
    // block, the kernel's own reduction scratch (384 bytes) included: some
    // 12 000 positions (CLIP's are 77 tokens, 577 patches)
    const size_t smem = ((size_t)dim_head + (size_t)n) * sizeof(float);
    if (smem > (size_t)47 * 1024)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "cuda: clip_attend: %d positions of dim_head %lld need %zu bytes of "
                          "shared memory a block (at most 47 KiB)",
                          n, (long long)dim_head, smem);
    device_scope scope(c->device);
    LAUNCH(k_clip_attend, (unsigned)blocks, CLIP_ATTEND_THREADS, smem, c->stream)(
        qkv, n, heads, (int)dim_head, key_mask, causal, scale, att);
    LAUNCHED("clip_attend");
    return DALLE_OK;
}

extern "C" dalle_status cuda_mean_rows(cuda_ops *c, const float *x, int batch, int n, int64_t dim,
                                       const uint8_t *mask, float *out)
{
    if (batch < 0 || n <= 0 || dim < 0)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "cuda: mean_rows: batch = %d, n = %d, dim = %lld", batch, n,
                          (long long)dim);
    if (batch == 0 || dim == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_mean_rows, grid_for((int64_t)batch * dim), 256, 0, c->stream)(
        x, batch, n, dim, mask, out);
    LAUNCHED("mean_rows");
    return DALLE_OK;
}

extern "C" dalle_status cuda_l2_normalize(cuda_ops *c, float *x, int64_t rows, int64_t dim)
{
    dalle_status s = row_args("l2_normalize", rows, "dim", dim);
    if (s || rows == 0)
        return s;
    device_scope scope(c->device);
    LAUNCH(k_l2_normalize, (unsigned)rows, ROW_THREADS, 0, c->stream)(x, dim);
    LAUNCHED("l2_normalize");
    return DALLE_OK;
}

extern "C" dalle_status cuda_clip_scores(cuda_ops *c, const float *img, int n_img,
                                         const float *txt, int n_txt, int64_t dim, float scale,
                                         int scale_first, float *out, int64_t ld)
{
    if (n_img < 0 || n_txt < 0 || dim < 0 || (n_img > 1 && ld < n_txt))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "cuda: clip_scores: n_img = %d, n_txt = %d, dim = %lld, ld = %lld",
                          n_img, n_txt, (long long)dim, (long long)ld);
    const int64_t total = (int64_t)n_img * n_txt;
    if (total == 0)
        return DALLE_OK;
    device_scope scope(c->device);
    LAUNCH(k_clip_scores, grid_for(total), 256, 0, c->stream)(
        img, n_img, txt, n_txt, dim, scale, scale_first, out, ld);
    LAUNCHED("clip_scores");
    return DALLE_OK;
}
// --- end of CLIP's operations ---
