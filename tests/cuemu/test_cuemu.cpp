// The CUDA emulator's own checks (tests/cuemu/cuda_runtime.h): that it
// computes what CUDA computes (barriers, shuffles, votes, atomics, the
// column-major cuBLAS product) and that every error it claims to catch is
// caught: a missing barrier, a warp operation some lane never reaches, a
// deadlock, a host pointer given to a kernel, a copy of the wrong kind, a
// bad launch configuration, too much shared memory, host code touching
// device memory, a kernel running past an allocation, cuBLAS arguments.
// Fatal cases (sticky faults, signals) run in a child process each.
#include <cuda_runtime.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"

extern "C" {
typedef struct cublasContext *cublasHandle_t;
int cublasCreate_v2(cublasHandle_t *h);
int cublasDestroy_v2(cublasHandle_t h);
int cublasSetMathMode(cublasHandle_t h, int mode);
int cublasSgemm_v2(cublasHandle_t h, int ta, int tb, int m, int n, int k, const float *alpha,
                   const float *A, int lda, const float *B, int ldb, const float *beta, float *C,
                   int ldc);
}

// ---------------------------------------------------------------------------
// Kernels.

// out[t] = in[t + 1] after a barrier: right only if every write came first.
__global__ void k_neighbour(const int *in, int *out, int n, int barrier)
{
    DYNAMIC_SHARED(int, s);
    const int t = (int)threadIdx.x;
    s[t] = in[t];
    if (barrier)
        __syncthreads();
    out[t] = s[(t + 1) % n];
}

// Each warp operation's result, per thread: xor 5, down 3, up 2, idx 7, the
// xor 1 within 16-lane segments, the ballot of odd lanes, any, all.
__global__ void k_warp_ops(int *out)
{
    const int t = (int)threadIdx.x;
    int *o = out + t * 8;
    o[0] = __shfl_xor_sync(0xffffffffu, t, 5);
    o[1] = __shfl_down_sync(0xffffffffu, t, 3);
    o[2] = __shfl_up_sync(0xffffffffu, t, 2);
    o[3] = __shfl_sync(0xffffffffu, t, 7);
    o[4] = __shfl_xor_sync(0xffffffffu, t, 17, 16);
    o[5] = (int)__ballot_sync(0xffffffffu, t & 1);
    o[6] = __any_sync(0xffffffffu, t == 40);
    o[7] = __all_sync(0xffffffffu, t < 1000);
}

// A ballot of half the warp: only lanes 0..15 take part.
__global__ void k_half_ballot(unsigned *out)
{
    const int t = (int)threadIdx.x;
    if (t < 16)
        out[t] = __ballot_sync(0x0000ffffu, t % 3 == 0);
}

__global__ void k_block_sum(const int *in, int *out)
{
    __shared__ int total;
    if (threadIdx.x == 0)
        total = 0;
    __syncthreads();
    atomicAdd(&total, in[threadIdx.x]);
    __syncthreads();
    if (threadIdx.x == 0)
        out[blockIdx.x] = total;
}

// Half the block waits at a barrier, the other half in a shuffle that needs
// the first half: a deadlock.
__global__ void k_deadlock(int *out)
{
    const int t = (int)threadIdx.x;
    if (t < 16)
        __syncthreads();
    else
        out[t] = __shfl_xor_sync(0xffffffffu, t, 1);
}

// Lanes 16.. return before the shuffle their mask names.
__global__ void k_divergent_shuffle(int *out)
{
    const int t = (int)threadIdx.x;
    if (t >= 16)
        return;
    out[t] = __shfl_xor_sync(0xffffffffu, t, 1);
}

__global__ void k_write(float *p, int n)
{
    for (int i = (int)threadIdx.x; i < n; i += (int)blockDim.x)
        p[i] = (float)i;
}

__global__ void k_nothing(void) {}

// ---------------------------------------------------------------------------

static cudaStream_t stream;

static int *device_ints(const int *host, int n)
{
    void *d = nullptr;
    if (cudaMalloc(&d, (size_t)n * sizeof(int)) != cudaSuccess) {
        printf("FAIL: cudaMalloc\n");
        exit(1);
    }
    if (host)
        cudaMemcpyAsync(d, host, (size_t)n * sizeof(int), cudaMemcpyHostToDevice, stream);
    return (int *)d;
}

static void check_barriers(void)
{
    const int n = 96;
    int in[96], out[96];
    for (int i = 0; i < n; i++)
        in[i] = 1000 + i;
    int *din = device_ints(in, n), *dout = device_ints(nullptr, n);
    bool all = true;
    for (int launch = 0; launch < 2; launch++) { // both thread orders
        LAUNCH(k_neighbour, 1, n, n * sizeof(int), stream)(din, dout, n, 1);
        cudaMemcpyAsync(out, dout, sizeof out, cudaMemcpyDeviceToHost, stream);
        for (int i = 0; i < n; i++)
            all = all && out[i] == in[(i + 1) % n];
    }
    CHECK(all && cudaGetLastError() == cudaSuccess,
          "__syncthreads: every thread reads its neighbour's write (both thread orders)");
    int wrong = 0;
    for (int launch = 0; launch < 2; launch++) {
        LAUNCH(k_neighbour, 1, n, n * sizeof(int), stream)(din, dout, n, 0);
        cudaMemcpyAsync(out, dout, sizeof out, cudaMemcpyDeviceToHost, stream);
        for (int i = 0; i < n; i++)
            wrong += out[i] != in[(i + 1) % n];
    }
    CHECK(wrong > 0, "without the barrier, %d of %d reads see garbage (the missing barrier shows)",
          wrong, 2 * n);

    int ones[64], sums[3];
    for (int i = 0; i < 64; i++)
        ones[i] = i + 1;
    int *dones = device_ints(ones, 64), *dsums = device_ints(nullptr, 3);
    LAUNCH(k_block_sum, 3, 64, 0, stream)(dones, dsums);
    cudaMemcpyAsync(sums, dsums, sizeof sums, cudaMemcpyDeviceToHost, stream);
    CHECK(sums[0] == 2080 && sums[1] == 2080 && sums[2] == 2080,
          "__shared__ + atomicAdd: three blocks sum 1..64 = %d %d %d (want 2080)", sums[0],
          sums[1], sums[2]);
    cudaFree(din), cudaFree(dout), cudaFree(dones), cudaFree(dsums);
}

static void check_warp_ops(void)
{
    const int n = 64;
    int out[64 * 8];
    int *dout = device_ints(nullptr, n * 8);
    LAUNCH(k_warp_ops, 1, n, 0, stream)(dout);
    cudaMemcpyAsync(out, dout, sizeof out, cudaMemcpyDeviceToHost, stream);
    int bad = 0;
    for (int t = 0; t < n; t++) {
        const int lane = t & 31, base = t - lane;
        const int want[8] = {
            base + (lane ^ 5),
            lane + 3 < 32 ? t + 3 : t,
            lane >= 2 ? t - 2 : t,
            base + 7,
            // lane ^ 17 in a later 16-lane group: the lane's own value; in an
            // earlier one: that lane's (CUDA's rule for width < 32)
            (lane ^ 17) >= (lane & ~15) + 16 ? t : base + (lane ^ 17),
            (int)0xaaaaaaaau,
            t < 32 ? 0 : 1,
            1,
        };
        for (int j = 0; j < 8; j++)
            if (out[t * 8 + j] != want[j]) {
                if (bad++ < 4)
                    printf("     thread %d op %d: %d, want %d\n", t, j, out[t * 8 + j], want[j]);
            }
    }
    CHECK(bad == 0 && cudaGetLastError() == cudaSuccess,
          "warp shuffles (xor, down, up, idx, 16-lane xor), ballot, any, all: %d wrong", bad);

    unsigned half[32];
    unsigned *dhalf = (unsigned *)device_ints(nullptr, 32);
    LAUNCH(k_half_ballot, 1, 32, 0, stream)(dhalf);
    cudaMemcpyAsync(half, dhalf, 16 * sizeof(unsigned), cudaMemcpyDeviceToHost, stream);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int t = 0; t < 16; t++)
        ok = ok && half[t] == 0x9249u; // lanes 0, 3, 6, 9, 12, 15
    CHECK(ok, "a ballot of 16 lanes (mask 0xffff) while the others have exited: 0x%x", half[0]);
    cudaFree(dout), cudaFree(dhalf);
}

static void check_launch_errors(void)
{
    LAUNCH(k_nothing, 1, 2048, 0, stream)();
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration && cudaGetLastError() == cudaSuccess,
          "2048 threads a block: cudaErrorInvalidConfiguration, then cleared");
    LAUNCH(k_nothing, 0, 32, 0, stream)();
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "an empty grid refused");
    float *p = nullptr;
    cudaMalloc((void **)&p, 64 * 1024 * sizeof(float));
    LAUNCH(k_neighbour, 1, 32, 64 << 10, stream)(nullptr, nullptr, 32, 1);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue,
          "64 KiB of dynamic shared memory without opting in: refused");
    CHECK(cudaFuncSetAttribute(k_neighbour, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 << 10) ==
              cudaSuccess,
          "cudaFuncSetAttribute: 96 KiB");
    int in[32], out[32];
    for (int i = 0; i < 32; i++)
        in[i] = i;
    int *din = device_ints(in, 32), *dout = device_ints(nullptr, 32);
    LAUNCH(k_neighbour, 1, 32, 64 << 10, stream)(din, dout, 32, 1);
    cudaMemcpyAsync(out, dout, sizeof out, cudaMemcpyDeviceToHost, stream);
    CHECK(cudaGetLastError() == cudaSuccess && out[31] == 0, "then 64 KiB launches");
    CHECK(cudaFuncSetAttribute(k_neighbour, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 << 10) ==
              cudaErrorInvalidValue,
          "300 KiB: more than an H100 gives a block");
    cudaGetLastError();
    cudaStream_t gone;
    cudaStreamCreate(&gone);
    cudaStreamDestroy(gone);
    LAUNCH(k_nothing, 1, 32, 0, gone)();
    CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle, "a destroyed stream refused");
    cudaFree(p), cudaFree(din), cudaFree(dout);
}

static void check_memory(void)
{
    float *d = nullptr;
    CHECK(cudaMalloc((void **)&d, 1000 * sizeof(float)) == cudaSuccess && cuemu_is_device(d, 4000) &&
              !cuemu_is_device(d, 4001) && (uintptr_t)d % 256 == 0,
          "cudaMalloc: 4000 bytes, 256-byte aligned, known as device memory");
    float host[1000];
    cudaMemcpyAsync(host, d, sizeof host, cudaMemcpyDeviceToHost, stream);
    uint32_t bits;
    memcpy(&bits, &host[999], 4);
    CHECK(bits == 0xffffffffu && isnan(host[0]), "fresh device memory is garbage (0xff bytes)");
    float src[1000];
    for (int i = 0; i < 1000; i++)
        src[i] = (float)i;
    memset(host, 0, sizeof host);
    CHECK(cudaMemcpyAsync(d, src, sizeof src, cudaMemcpyDeviceToHost, stream) == cudaErrorInvalidValue,
          "a DeviceToHost copy into device memory refused");
    CHECK(cudaMemcpyAsync(host, d, sizeof host + 4, cudaMemcpyDeviceToHost, stream) ==
              cudaErrorInvalidValue,
          "a copy past the allocation refused");
    CHECK(cudaMemcpyAsync(d, d + 10, 100, cudaMemcpyDeviceToDevice, stream) == cudaErrorInvalidValue,
          "an overlapping copy refused");
    CHECK(cudaGetLastError() == cudaErrorInvalidValue && cudaGetLastError() == cudaSuccess,
          "argument errors are not sticky");
    CHECK(cudaMemcpyAsync(d, src, sizeof src, cudaMemcpyHostToDevice, stream) == cudaSuccess &&
              cudaMemcpyAsync(host, d, sizeof host, cudaMemcpyDeviceToHost, stream) == cudaSuccess &&
              host[999] == 999.0f,
          "a round trip");
    CHECK(cudaFree(d + 1) == cudaErrorInvalidValue && cudaFree(d) == cudaSuccess,
          "cudaFree takes an allocation's start only");
    cudaGetLastError();
}

static void check_cublas(void)
{
    cublasHandle_t h;
    CHECK(cublasCreate_v2(&h) == 0, "cublasCreate_v2");
    // column-major A (m x k, lda 5), B (n x k used transposed, ldb 4), C (m x n, ldc 6)
    const int m = 3, n = 4, k = 2, lda = 5, ldb = 4, ldc = 6;
    float a[5 * 2], b[4 * 2], c[6 * 4];
    for (int i = 0; i < 10; i++)
        a[i] = (float)(i + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (float)(i % 3) - 1.0f;
    for (int i = 0; i < 24; i++)
        c[i] = 0.5f;
    float *da, *db, *dc;
    cudaMalloc((void **)&da, sizeof a), cudaMalloc((void **)&db, sizeof b),
        cudaMalloc((void **)&dc, sizeof c);
    cudaMemcpyAsync(da, a, sizeof a, cudaMemcpyHostToDevice, stream);
    cudaMemcpyAsync(db, b, sizeof b, cudaMemcpyHostToDevice, stream);
    cudaMemcpyAsync(dc, c, sizeof c, cudaMemcpyHostToDevice, stream);
    const float alpha = 2.0f, beta = 1.0f;
    CHECK(cublasSgemm_v2(h, 0, 1, m, n, k, &alpha, da, lda, db, ldb, &beta, dc, ldc) == 0,
          "cublasSgemm_v2 (N, T)");
    float got[24];
    cudaMemcpyAsync(got, dc, sizeof got, cudaMemcpyDeviceToHost, stream);
    double worst = 0.0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double want = 0.5;
            for (int l = 0; l < k; l++)
                want += 2.0 * a[l * lda + i] * b[l * ldb + j];
            worst = fmax(worst, fabs(got[j * ldc + i] - want));
        }
    CHECK(worst == 0.0 && got[3] == 0.5f, "C = 2 A Bᵀ + C, column-major, rows past m untouched (%g)",
          worst);
    CHECK(cublasSgemm_v2(h, 0, 1, m, n, k, &alpha, da, 2, db, ldb, &beta, dc, ldc) == 7,
          "lda below m: CUBLAS_STATUS_INVALID_VALUE");
    CHECK(cublasSgemm_v2(h, 0, 1, m, n, k, &alpha, a, lda, db, ldb, &beta, dc, ldc) == 13,
          "a host matrix: refused");
    CHECK(cublasSgemm_v2(h, 0, 0, m, n, k, &alpha, da, lda, db, ldb, &beta, dc, ldc) == 13,
          "B read past its allocation (N instead of T): refused");
    // TF32: 1 + 2^-12 rounds to 1
    float one[1] = {1.0f + 1.0f / 4096.0f}, r[1];
    float *d1;
    cudaMalloc((void **)&d1, 4);
    cudaMemcpyAsync(d1, one, 4, cudaMemcpyHostToDevice, stream);
    const float zero = 0.0f, unit = 1.0f;
    cublasSgemm_v2(h, 0, 0, 1, 1, 1, &unit, d1, 1, d1, 1, &zero, dc, 1);
    cudaMemcpyAsync(r, dc, 4, cudaMemcpyDeviceToHost, stream);
    const float fp32 = r[0];
    cublasSetMathMode(h, 3);
    cublasSgemm_v2(h, 0, 0, 1, 1, 1, &unit, d1, 1, d1, 1, &zero, dc, 1);
    cudaMemcpyAsync(r, dc, 4, cudaMemcpyDeviceToHost, stream);
    CHECK(fp32 == one[0] * one[0] && r[0] == 1.0f,
          "FP32 keeps 1 + 2^-12 (%.9g); TF32 rounds it to 1 (%.9g)", fp32, r[0]);
    cublasDestroy_v2(h);
    cudaFree(da), cudaFree(db), cudaFree(dc), cudaFree(d1);
    cudaGetLastError();
}

// ---------------------------------------------------------------------------
// Fatal cases, each in a child: what it printed and how it ended.

typedef void (*scenario)(void);

static void run_child(const char *what, scenario f, int want_signal, int want_exit,
                      const char *want_text)
{
    int pipefd[2];
    if (pipe(pipefd) != 0) {
        CHECK(0, "%s: pipe", what);
        return;
    }
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], 2);
        cudaStreamCreate(&stream);
        f();
        _exit(0);
    }
    close(pipefd[1]);
    char text[4096];
    size_t len = 0;
    ssize_t got;
    while (len + 1 < sizeof text && (got = read(pipefd[0], text + len, sizeof text - 1 - len)) > 0)
        len += (size_t)got;
    text[len] = 0;
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    // a fault ends the child by its signal, or (under AddressSanitizer, whose
    // handler takes it after cuemu's) by an error exit
    const bool ended =
        want_signal ? (WIFSIGNALED(status) && WTERMSIG(status) == want_signal) ||
                          (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) ||
                          (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 4)
                    : WIFEXITED(status) && WEXITSTATUS(status) == want_exit;
    char *nl = strchr(text, '\n');
    if (nl)
        *nl = 0;
    CHECK(ended && strstr(text, want_text), "%s: \"%s\"", what, text);
}

static void deadlock(void)
{
    int *d = device_ints(nullptr, 32);
    LAUNCH(k_deadlock, 1, 32, 0, stream)(d);
    cudaError_t e = cudaGetLastError(), again = cudaStreamSynchronize(stream);
    _exit(e == cudaErrorLaunchFailure && again == cudaErrorLaunchFailure ? 3 : 4);
}

static void divergent(void)
{
    int *d = device_ints(nullptr, 32);
    LAUNCH(k_divergent_shuffle, 1, 32, 0, stream)(d);
    _exit(cudaGetLastError() == cudaErrorLaunchFailure ? 3 : 4);
}

static void host_pointer(void)
{
    static float host[64];
    LAUNCH(k_write, 1, 32, 0, stream)(host, 64);
    // the fault is sticky: every later call fails
    void *p;
    _exit(cudaGetLastError() == cudaErrorIllegalAddress &&
                  cudaMalloc(&p, 16) == cudaErrorIllegalAddress
              ? 3
              : 4);
}

static void host_reads_device(void)
{
    float *d = nullptr;
    cudaMalloc((void **)&d, 4096);
    volatile float v = d[5]; // as if host code had taken a device pointer for its own
    (void)v;
    _exit(4);
}

static void kernel_overruns(void)
{
    float *d = nullptr;
    cudaMalloc((void **)&d, 1024 * sizeof(float));
    LAUNCH(k_write, 1, 32, 0, stream)(d, 1024 + 64); // 64 floats past the end
    _exit(4);
}

int main(void)
{
    cudaStreamCreate(&stream);
    check_barriers();
    check_warp_ops();
    check_launch_errors();
    check_memory();
    check_cublas();
    run_child("a deadlock is reported and sticky", deadlock, 0, 3, "deadlock");
    run_child("a warp operation naming an exited lane", divergent, 0, 3, "exited");
    run_child("a host pointer given to a kernel", host_pointer, 0, 3,
              "argument 1 (0x");
    run_child("host code reading device memory faults", host_reads_device, SIGSEGV, 0,
              "host code (no kernel or copy running) touched device memory");
    run_child("a kernel writing past its allocation faults", kernel_overruns, SIGSEGV, 0,
              "past the end of allocation");
    return check_summary();
}
