// cuemu: the CUDA runtime on the CPU (tests/cuemu/cuda_runtime.h says what
// and why). One emulated device; every call runs at once on the calling
// thread (a stream's order is program order); kernels run block after block,
// each CUDA thread a fiber with its own stack, switched only in barriers and
// warp operations.
//
// Device memory is mmap'ed host memory, PROT_NONE whenever no device work
// runs, with a guard page after each allocation (its end is placed against
// it), filled with 0xff bytes (NaN floats, -1 integers) when allocated, as a
// GPU's memory is garbage. Errors are printed to stderr with the kernel,
// block and thread (this is a test tool) and returned as CUDA would: launch
// configuration and argument errors through cudaGetLastError, faults
// (a host pointer passed to a kernel, a deadlock in a block) sticky.
#include "cuda_runtime.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define CUEMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUEMU_ASAN 1
#endif
#endif
#ifdef CUEMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

// ---------------------------------------------------------------------------
// Errors.

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; // device state and device work
static thread_local cudaError_t last_error = cudaSuccess;
static cudaError_t sticky_error = cudaSuccess;

static bool is_fault(cudaError_t e) { return e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure; }

extern "C" void cuemu_fail(cudaError_t e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuemu: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " -> %s\n", cudaGetErrorName(e));
    va_end(ap);
    last_error = e;
    if (is_fault(e) && sticky_error == cudaSuccess)
        sticky_error = e;
}

static cudaError_t ret(cudaError_t e)
{
    if (e != cudaSuccess)
        last_error = e;
    return e;
}

#define STICKY()                                                                               \
    do {                                                                                       \
        if (sticky_error != cudaSuccess)                                                       \
            return ret(sticky_error);                                                          \
    } while (0)

extern "C" const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
#define N(x) case x: return #x;
        N(cudaSuccess) N(cudaErrorInvalidValue) N(cudaErrorMemoryAllocation)
        N(cudaErrorInitializationError) N(cudaErrorInsufficientDriver)
        N(cudaErrorCallRequiresNewerDriver) N(cudaErrorNoDevice) N(cudaErrorInvalidDevice)
        N(cudaErrorDevicesUnavailable) N(cudaErrorStubLibrary) N(cudaErrorNoKernelImageForDevice)
        N(cudaErrorUnsupportedPtxVersion) N(cudaErrorJitCompilerNotFound)
        N(cudaErrorSystemDriverMismatch) N(cudaErrorCompatNotSupportedOnDevice)
        N(cudaErrorInvalidConfiguration) N(cudaErrorInvalidDevicePointer)
        N(cudaErrorInvalidMemcpyDirection) N(cudaErrorInvalidResourceHandle)
        N(cudaErrorIllegalAddress) N(cudaErrorLaunchOutOfResources) N(cudaErrorLaunchFailure)
#undef N
    }
    return "cudaErrorUnknown";
}

extern "C" const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorInsufficientDriver:
        return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoKernelImageForDevice:
        return "no kernel image is available for execution on the device";
    default: return cudaGetErrorName(e);
    }
}

extern "C" cudaError_t cudaGetLastError(void)
{
    if (sticky_error != cudaSuccess)
        return sticky_error;
    const cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

extern "C" cudaError_t cudaPeekAtLastError(void)
{
    return sticky_error != cudaSuccess ? sticky_error : last_error;
}

// ---------------------------------------------------------------------------
// The device.

// Faults a test can stage (read at each call, so one process can try them
// in turn): CUEMU_DEVICES=0, a machine without a GPU; CUEMU_DRIVER=12080, a
// driver older than this runtime (the runtime then finds no device:
// cudaErrorInsufficientDriver); CUEMU_MEMORY_MIB=n, a device of n MiB;
// CUEMU_NO_KERNEL_IMAGE=1, a GPU this build has no code for (every launch
// fails with cudaErrorNoKernelImageForDevice).
static long env_long(const char *name, long def)
{
    const char *e = getenv(name);
    return e && *e ? atol(e) : def;
}

static int driver_version(void) { return (int)env_long("CUEMU_DRIVER", CUDART_VERSION); }

static int n_devices(void) { return (int)env_long("CUEMU_DEVICES", 1); }

static thread_local int current_device = 0;

extern "C" cudaError_t cudaGetDeviceCount(int *count)
{
    *count = 0;
    if (driver_version() < CUDART_VERSION)
        return ret(cudaErrorInsufficientDriver);
    *count = n_devices();
    return *count > 0 ? cudaSuccess : ret(cudaErrorNoDevice);
}

extern "C" cudaError_t cudaGetDevice(int *device)
{
    *device = current_device;
    return cudaSuccess;
}

extern "C" cudaError_t cudaSetDevice(int device)
{
    if (device < 0 || device >= n_devices())
        return ret(cudaErrorInvalidDevice);
    current_device = device;
    return cudaSuccess;
}

static size_t device_memory(void) { return (size_t)env_long("CUEMU_MEMORY_MIB", 80 << 10) << 20; }

// An H100's limits (sm_90): those a launch is checked against.
extern "C" cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device)
{
    if (device < 0 || device >= n_devices())
        return ret(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "cuemu (CUDA emulated on the CPU, H100 limits)");
    p->totalGlobalMem = device_memory();
    p->sharedMemPerBlock = 48 << 10;
    p->sharedMemPerBlockOptin = 227 << 10;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff;
    p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 132;
    return cudaSuccess;
}

extern "C" cudaError_t cudaDriverGetVersion(int *v)
{
    *v = n_devices() > 0 ? driver_version() : 0;
    return cudaSuccess;
}

extern "C" cudaError_t cudaRuntimeGetVersion(int *v)
{
    *v = CUDART_VERSION;
    return cudaSuccess;
}

// ---------------------------------------------------------------------------
// Device memory.

struct allocation {
    char *ptr; // what cudaMalloc returned
    size_t bytes;
    char *map; // the whole mapping (munmap)
    size_t map_bytes;
    char *data; // the accessible pages [data, data + data_bytes), ending at ptr's rounded end
    size_t data_bytes;
};

static std::vector<allocation> allocations;
static size_t allocated_bytes;
static int work_depth; // device work in progress (memory accessible)
// CUEMU_PROTECT=0: device memory stays readable by the host (to debug)
static bool protect_memory(void)
{
    static const bool on = !(getenv("CUEMU_PROTECT") && !strcmp(getenv("CUEMU_PROTECT"), "0"));
    return on;
}

static size_t page_size(void)
{
    static size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

static void set_access(const allocation &a, bool on)
{
    if (protect_memory())
        mprotect(a.data, a.data_bytes, on ? PROT_READ | PROT_WRITE : PROT_NONE);
}

extern "C" void cuemu_device_work_begin(void)
{
    pthread_mutex_lock(&lock);
    if (work_depth++ == 0)
        for (const allocation &a : allocations)
            set_access(a, true);
}

extern "C" void cuemu_device_work_end(void)
{
    if (--work_depth == 0)
        for (const allocation &a : allocations)
            set_access(a, false);
    pthread_mutex_unlock(&lock);
}

static const allocation *find_allocation(const void *p)
{
    const char *c = (const char *)p;
    for (const allocation &a : allocations)
        if (c >= a.ptr && c < a.ptr + a.bytes)
            return &a;
    return nullptr;
}

extern "C" int cuemu_is_device(const void *p, size_t bytes)
{
    pthread_mutex_lock(&lock);
    const allocation *a = find_allocation(p);
    const int ok = a && bytes <= (size_t)(a->ptr + a->bytes - (const char *)p);
    pthread_mutex_unlock(&lock);
    return ok;
}

// Any byte of [p, p + bytes) in device memory?
static bool touches_device(const void *p, size_t bytes)
{
    const char *c = (const char *)p;
    for (const allocation &a : allocations)
        if (c < a.ptr + a.bytes && a.ptr < c + bytes)
            return true;
    return false;
}

extern "C" cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
    STICKY();
    *ptr = nullptr;
    if (bytes == 0)
        return cudaSuccess;
    pthread_mutex_lock(&lock);
    const size_t page = page_size();
    const size_t rounded = (bytes + 255) & ~(size_t)255;
    // large allocations in 2 MiB pages (transparent huge pages, where the
    // kernel gives them): protecting an arena on every launch then changes
    // a few page-table entries, not one per 4 KiB
    const size_t huge = (size_t)2 << 20, unit = rounded >= huge ? huge : page;
    const size_t data = (rounded + unit - 1) / unit * unit;
    const size_t total_memory = device_memory();
    if (allocated_bytes > total_memory || bytes > total_memory - allocated_bytes) {
        pthread_mutex_unlock(&lock);
        return ret(cudaErrorMemoryAllocation);
    }
    const size_t map_bytes = data + (unit > page ? unit : 0) + page;
    void *m = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        pthread_mutex_unlock(&lock);
        return ret(cudaErrorMemoryAllocation);
    }
    allocation a;
    a.map = (char *)m;
    a.map_bytes = map_bytes;
    a.data = (char *)(((uintptr_t)m + unit - 1) & ~(uintptr_t)(unit - 1));
    a.data_bytes = data;
    a.ptr = a.data + data - rounded;
    a.bytes = bytes;
    if (unit > page)
        madvise(a.data, data, MADV_HUGEPAGE);
    memset(a.ptr, 0xff, rounded); // a GPU's fresh memory is garbage, not zeros
    mprotect(a.data + data, page, PROT_NONE); // the guard page after the end
    if (work_depth == 0)
        set_access(a, false);
    allocations.push_back(a);
    allocated_bytes += bytes;
    pthread_mutex_unlock(&lock);
    *ptr = a.ptr;
    return cudaSuccess;
}

extern "C" cudaError_t cudaFree(void *ptr)
{
    STICKY();
    if (!ptr)
        return cudaSuccess;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < allocations.size(); i++)
        if (allocations[i].ptr == ptr) {
            munmap(allocations[i].map, allocations[i].map_bytes);
            allocated_bytes -= allocations[i].bytes;
            allocations.erase(allocations.begin() + (long)i);
            pthread_mutex_unlock(&lock);
            return cudaSuccess;
        }
    pthread_mutex_unlock(&lock);
    cuemu_fail(cudaErrorInvalidValue, "cudaFree(%p): not an allocation's start", ptr);
    return cudaErrorInvalidValue;
}

extern "C" cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    pthread_mutex_lock(&lock);
    const size_t total_memory = device_memory();
    *free_bytes = allocated_bytes < total_memory ? total_memory - allocated_bytes : 0;
    *total_bytes = total_memory;
    pthread_mutex_unlock(&lock);
    return cudaSuccess;
}

// A fault in device memory says what it was before the process dies: host
// code touching device memory (PROT_NONE outside device work), or a kernel,
// copy or product running past an allocation into its guard page. Then the
// previous handler (ASan's, or the default) takes the fault again.
static struct sigaction previous_segv;

static void on_segv(int sig, siginfo_t *info, void *uc)
{
    (void)uc;
    const char *a = (const char *)info->si_addr;
    char msg[256];
    int n = 0;
    for (const allocation &al : allocations) {
        if (a >= al.data && a < al.data + al.data_bytes)
            n = snprintf(msg, sizeof msg,
                         "cuemu: %s touched device memory at %p (allocation %p, %zu bytes)\n",
                         work_depth ? "device work" : "host code (no kernel or copy running)",
                         (const void *)a, (const void *)al.ptr, al.bytes);
        else if (a >= al.data + al.data_bytes && a < al.data + al.data_bytes + page_size())
            n = snprintf(msg, sizeof msg,
                         "cuemu: access at %p, past the end of allocation %p (%zu bytes)\n",
                         (const void *)a, (const void *)al.ptr, al.bytes);
    }
    if (n > 0 && write(2, msg, (size_t)n) < 0)
        n = 0;
    sigaction(sig, &previous_segv, nullptr);
}

__attribute__((constructor)) static void install_segv_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
}

// ---------------------------------------------------------------------------
// Streams: handles the library must create before use and not use after
// destroying; 0 is the default stream.

static std::vector<cudaStream_t> streams;

extern "C" int cuemu_is_stream(cudaStream_t s)
{
    if (!s)
        return 1;
    pthread_mutex_lock(&lock);
    int ok = 0;
    for (cudaStream_t t : streams)
        ok |= t == s;
    pthread_mutex_unlock(&lock);
    return ok;
}

extern "C" cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags)
{
    STICKY();
    (void)flags;
    pthread_mutex_lock(&lock);
    *s = (cudaStream_t)malloc(1);
    streams.push_back(*s);
    pthread_mutex_unlock(&lock);
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }

extern "C" cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < streams.size(); i++)
        if (streams[i] == s) {
            free(s);
            streams.erase(streams.begin() + (long)i);
            pthread_mutex_unlock(&lock);
            return cudaSuccess;
        }
    pthread_mutex_unlock(&lock);
    cuemu_fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy(%p): no such stream", (void *)s);
    return cudaErrorInvalidResourceHandle;
}

static cudaError_t check_stream(const char *what, cudaStream_t s)
{
    if (cuemu_is_stream(s))
        return cudaSuccess;
    cuemu_fail(cudaErrorInvalidResourceHandle, "%s: stream %p was never created or is destroyed",
               what, (void *)s);
    return cudaErrorInvalidResourceHandle;
}

extern "C" cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    STICKY();
    return check_stream("cudaStreamSynchronize", s);
}

extern "C" cudaError_t cudaDeviceSynchronize(void)
{
    STICKY();
    return cudaSuccess;
}

// ---------------------------------------------------------------------------
// Copies.

static const char *kind_name(cudaMemcpyKind k)
{
    switch (k) {
    case cudaMemcpyHostToHost: return "HostToHost";
    case cudaMemcpyHostToDevice: return "HostToDevice";
    case cudaMemcpyDeviceToHost: return "DeviceToHost";
    case cudaMemcpyDeviceToDevice: return "DeviceToDevice";
    default: return "Default";
    }
}

// A side of a copy: all of it device memory (want_device) or none of it.
static bool side_ok(const void *p, size_t bytes, bool want_device)
{
    if (want_device) {
        const allocation *a = find_allocation(p);
        return a && bytes <= (size_t)(a->ptr + a->bytes - (const char *)p);
    }
    return !touches_device(p, bytes);
}

extern "C" cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes,
                                       cudaMemcpyKind kind, cudaStream_t stream)
{
    STICKY();
    if (check_stream("cudaMemcpyAsync", stream) != cudaSuccess)
        return cudaErrorInvalidResourceHandle;
    if (bytes == 0)
        return cudaSuccess;
    cuemu_device_work_begin();
    bool ok = true;
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice)
        ok = ok && side_ok(dst, bytes, true);
    if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyHostToHost)
        ok = ok && side_ok(dst, bytes, false);
    if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice)
        ok = ok && side_ok(src, bytes, true);
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyHostToHost)
        ok = ok && side_ok(src, bytes, false);
    const char *d = (const char *)dst, *s = (const char *)src;
    const bool overlap = d < s + bytes && s < d + bytes;
    if (ok && !overlap)
        memcpy(dst, src, bytes);
    cuemu_device_work_end();
    if (!ok) {
        cuemu_fail(cudaErrorInvalidValue,
                   "cudaMemcpy%s(%p <- %p, %zu bytes): a side is not the memory the kind names "
                   "(or runs past its allocation)",
                   kind_name(kind), dst, src, bytes);
        return cudaErrorInvalidValue;
    }
    if (overlap) {
        cuemu_fail(cudaErrorInvalidValue, "cudaMemcpy%s(%p <- %p, %zu bytes): ranges overlap",
                   kind_name(kind), dst, src, bytes);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

extern "C" cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}

extern "C" cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream)
{
    STICKY();
    if (check_stream("cudaMemsetAsync", stream) != cudaSuccess)
        return cudaErrorInvalidResourceHandle;
    if (bytes == 0)
        return cudaSuccess;
    cuemu_device_work_begin();
    const bool ok = side_ok(dst, bytes, true);
    if (ok)
        memset(dst, value, bytes);
    cuemu_device_work_end();
    if (!ok) {
        cuemu_fail(cudaErrorInvalidValue, "cudaMemset(%p, %zu bytes): not device memory", dst,
                   bytes);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

// ---------------------------------------------------------------------------
// Function attributes: the dynamic shared memory a kernel may take.

struct func_attr {
    const void *func;
    int max_dynamic_smem;
};
static std::vector<func_attr> func_attrs;
static const int default_dynamic_smem = 48 << 10;

static int max_dynamic_smem(const void *f)
{
    for (const func_attr &a : func_attrs)
        if (a.func == f)
            return a.max_dynamic_smem;
    return default_dynamic_smem;
}

extern "C" cudaError_t cuemu_func_get_attributes(cudaFuncAttributes *a, const void *func)
{
    STICKY();
    memset(a, 0, sizeof *a);
    a->maxThreadsPerBlock = 1024;
    a->numRegs = 32;
    a->ptxVersion = a->binaryVersion = 90;
    pthread_mutex_lock(&lock);
    a->maxDynamicSharedSizeBytes = max_dynamic_smem(func);
    pthread_mutex_unlock(&lock);
    return cudaSuccess;
}

extern "C" cudaError_t cuemu_func_set_attribute(const void *func, int attr, int value)
{
    STICKY();
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
        return cudaSuccess;
    if (value < 0 || value > (227 << 10)) {
        cuemu_fail(cudaErrorInvalidValue,
                   "cudaFuncSetAttribute: %d bytes of dynamic shared memory (at most %d)", value,
                   227 << 10);
        return cudaErrorInvalidValue;
    }
    pthread_mutex_lock(&lock);
    bool found = false;
    for (func_attr &a : func_attrs)
        if (a.func == func) {
            a.max_dynamic_smem = value;
            found = true;
        }
    if (!found)
        func_attrs.push_back(func_attr{func, value});
    pthread_mutex_unlock(&lock);
    return cudaSuccess;
}

// ---------------------------------------------------------------------------
// Fibers: a context switch that saves the callee-saved registers on the
// stack it leaves (x86-64; elsewhere ucontext, slower: it saves the signal
// mask with a system call).

#if defined(__x86_64__)
asm(R"(
    .text
    .p2align 4
    .hidden cuemu_switch
    .type cuemu_switch,@function
cuemu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuemu_switch,.-cuemu_switch
)");
extern "C" void cuemu_switch(void **save_sp, void *to_sp);

struct fiber_ctx {
    void *sp;
};
static void ctx_switch(fiber_ctx *from, fiber_ctx *to) { cuemu_switch(&from->sp, to->sp); }
static void ctx_init(fiber_ctx *c, char *lo, size_t size, void (*entry)(void))
{
    uintptr_t top = ((uintptr_t)(lo + size)) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;          // entry's return address: it never returns
    *--sp = (void *)entry;    // where cuemu_switch's ret goes
    for (int i = 0; i < 6; i++)
        *--sp = nullptr;      // rbp rbx r12 r13 r14 r15
    c->sp = sp;
}
#else
struct fiber_ctx {
    ucontext_t uc;
};
static void ctx_switch(fiber_ctx *from, fiber_ctx *to) { swapcontext(&from->uc, &to->uc); }
static void ctx_init(fiber_ctx *c, char *lo, size_t size, void (*entry)(void))
{
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = lo;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, entry, 0);
}
#endif

#ifdef CUEMU_ASAN
static const size_t stack_bytes = (size_t)1 << 20;
#else
static const size_t stack_bytes = (size_t)256 << 10;
#endif

struct stack {
    char *lo; // above the guard page
    size_t size;
};

// ---------------------------------------------------------------------------
// A block's run.

enum thread_state { T_NEW, T_READY, T_WAIT_BLOCK, T_WAIT_WARP, T_DONE };

struct trec {
    cuemu_thread info;
    int state;
    int stack; // index into run::stacks, -1 before the thread starts
    fiber_ctx ctx;
    void *asan_fake;
};

struct warp {
    int arrived, op;
    unsigned mask, gen;
};

// the values of a warp operation's lanes, two generations (warp::gen & 1)
struct warp_slots {
    uint64_t slot[2][32];
};

struct run {
    const char *name;
    cuemu_thread_fn fn;
    void *closure;
    cuemu_block blk;
    std::vector<trec> threads;
    std::vector<warp> warps;
    std::vector<warp_slots> slots; // not cleared between blocks: written before read
    std::vector<int> ready; // threads to resume, in order from ready_head
    size_t ready_head;
    bool reverse;           // this block's thread order
    std::vector<stack> stacks;     // kept for the next blocks and launches
    std::vector<int> free_stacks;
    int live, block_arrived;
    trec *cur;
    fiber_ctx sched;
    const void *sched_stack_lo; // ASan: the scheduler's stack
    size_t sched_stack_size;
    bool aborted;
    char *smem;                 // dynamic shared memory, against a guard page
    size_t smem_bytes, smem_map_bytes;
    char *smem_map;
};

static thread_local run *cur_run;
extern "C" {
thread_local const cuemu_thread *cuemu_self;
thread_local const cuemu_block *cuemu_blk;
}

static void asan_start(void **fake, const void *lo, size_t size)
{
#ifdef CUEMU_ASAN
    __sanitizer_start_switch_fiber(fake, lo, size);
#else
    (void)fake, (void)lo, (void)size;
#endif
}
static void asan_finish(void *fake, const void **lo, size_t *size)
{
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(fake, lo, size);
#else
    (void)fake, (void)lo, (void)size;
#endif
}

// From a fiber back to the scheduler; returns when the scheduler resumes it.
static void yield(run *r, trec *t, bool dying)
{
    asan_start(dying ? nullptr : &t->asan_fake, r->sched_stack_lo, r->sched_stack_size);
    ctx_switch(&t->ctx, &r->sched);
    asan_finish(t->asan_fake, nullptr, nullptr);
}

static void block_error(run *r, trec *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void block_error(run *r, trec *t, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cuemu_fail(cudaErrorLaunchFailure, "kernel %s, block (%u, %u, %u), thread (%u, %u, %u): %s",
               r->name, r->blk.idx.x, r->blk.idx.y, r->blk.idx.z, t->info.idx.x, t->info.idx.y,
               t->info.idx.z, msg);
    r->aborted = true;
    yield(r, t, true); // never resumed: the scheduler abandons the block
    abort();           // unreachable
}

static void fiber_entry(void)
{
    run *r = cur_run;
    asan_finish(nullptr, &r->sched_stack_lo, &r->sched_stack_size);
    for (;;) { // a stack serves one thread after another
        r = cur_run;
        trec *t = r->cur;
        r->fn(r->closure);
        t->state = T_DONE;
        yield(r, t, true);
    }
}

static void make_ready(run *r, size_t i)
{
    r->threads[i].state = T_READY;
    r->ready.push_back((int)i);
}

static void release_block(run *r)
{
    r->block_arrived = 0;
    const size_t n = r->threads.size();
    for (size_t k = 0; k < n; k++) {
        const size_t i = r->reverse ? n - 1 - k : k;
        if (r->threads[i].state == T_WAIT_BLOCK)
            make_ready(r, i);
    }
}

extern "C" void __syncthreads(void)
{
    run *r = cur_run;
    trec *t = r->cur;
    if (++r->block_arrived == r->live) {
        release_block(r); // the last to arrive goes on
        return;
    }
    t->state = T_WAIT_BLOCK;
    yield(r, t, false);
}

extern "C" void *cuemu_dynamic_shared(void) { return cur_run->smem; }

static int lane_of(const run *r, const trec *t)
{
    return (int)((t - r->threads.data()) & 31);
}

// Every lane of `mask` takes part (and must exist and be running); the
// last to arrive releases the others. Returns the generation's buffer.
static int warp_arrive(run *r, trec *t, unsigned mask, int op, uint64_t value)
{
    const long index = t - r->threads.data();
    const int lane = (int)(index & 31);
    warp &w = r->warps[(size_t)(index >> 5)];
    const long first = index - lane;
    if (!(mask >> lane & 1u))
        block_error(r, t, "a warp operation whose mask 0x%08x leaves out the calling lane %d",
                    mask, lane);
    if (w.arrived == 0) { // the first lane checks the mask (an exit later: run_block)
        for (unsigned m = mask; m; m &= m - 1) {
            const int l = __builtin_ctz(m);
            if (first + l >= (long)r->threads.size())
                block_error(r, t, "warp operation mask 0x%08x names lane %d, past the block's %zu "
                            "threads", mask, l, r->threads.size());
            if (r->threads[(size_t)(first + l)].state == T_DONE)
                block_error(r, t, "warp operation mask 0x%08x names lane %d, which has exited",
                            mask, l);
        }
        w.mask = mask;
        w.op = op;
    } else if (w.mask != mask || w.op != op) {
        block_error(r, t, "lanes of one warp disagree: operation %d with mask 0x%08x here, %d "
                    "with 0x%08x in lanes already waiting", op, mask, w.op, w.mask);
    }
    const int buf = (int)(w.gen & 1u);
    r->slots[(size_t)(index >> 5)].slot[buf][lane] = value;
    if (++w.arrived == __builtin_popcount(mask)) {
        w.arrived = 0;
        w.gen++;
        for (int k = 0; k < 32; k++) {
            const int l = r->reverse ? 31 - k : k;
            if (mask >> l & 1u && first + l != index)
                make_ready(r, (size_t)(first + l));
        }
        return buf;
    }
    t->state = T_WAIT_WARP;
    yield(r, t, false);
    return buf;
}

extern "C" uint64_t cuemu_warp_shfl(unsigned mask, uint64_t value, int src, int op)
{
    run *r = cur_run;
    trec *t = r->cur;
    const int buf = warp_arrive(r, t, mask, op, value);
    const int lane = lane_of(r, t);
    if (src < 0 || src > 31 || !(mask >> src & 1u))
        block_error(r, t, "shuffle reads lane %d, not in mask 0x%08x", src, mask);
    const long first = (t - r->threads.data()) - lane;
    return r->slots[(size_t)(first >> 5)].slot[buf][src];
}

extern "C" unsigned cuemu_warp_ballot(unsigned mask, int pred)
{
    run *r = cur_run;
    trec *t = r->cur;
    const int buf = warp_arrive(r, t, mask, 4, pred != 0);
    const long first = (t - r->threads.data()) - lane_of(r, t);
    const warp_slots &w = r->slots[(size_t)(first >> 5)];
    unsigned b = 0;
    for (int l = 0; l < 32; l++)
        if (mask >> l & 1u && (w.slot[buf][l] & 1u))
            b |= 1u << l;
    return b;
}

static int take_stack(run *r)
{
    if (!r->free_stacks.empty()) {
        const int s = r->free_stacks.back();
        r->free_stacks.pop_back();
        return s;
    }
    const size_t page = page_size();
    char *m = (char *)mmap(nullptr, stack_bytes + page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    mprotect(m, page, PROT_NONE); // an overflow faults instead of corrupting
    r->stacks.push_back(stack{m + page, stack_bytes});
    return (int)r->stacks.size() - 1;
}

static void resume(run *r, trec *t)
{
    r->cur = t;
    cuemu_self = &t->info;
    const stack &s = r->stacks[(size_t)t->stack];
    void *fake = nullptr;
    asan_start(&fake, s.lo, s.size);
    ctx_switch(&r->sched, &t->ctx);
    asan_finish(fake, nullptr, nullptr);
}

// Runs one block to its end; false if it was abandoned (error, deadlock).
// Threads start in the block's order; a released barrier queues the
// threads it held in that order, behind those already queued.
static bool run_block(run *r, bool reverse)
{
    const dim3 bd = r->blk.dim;
    const size_t n = (size_t)bd.x * bd.y * bd.z;
    r->threads.resize(n);
    r->warps.assign((n + 31) / 32, warp{});
    if (r->slots.size() < r->warps.size())
        r->slots.resize(r->warps.size());
    r->ready.clear();
    r->ready_head = 0;
    r->reverse = reverse;
    for (size_t i = 0; i < n; i++) {
        trec &t = r->threads[i];
        t.info.idx.x = (unsigned)(i % bd.x);
        t.info.idx.y = (unsigned)(i / bd.x % bd.y);
        t.info.idx.z = (unsigned)(i / ((size_t)bd.x * bd.y));
        t.state = T_NEW;
        t.stack = -1;
        r->ready.push_back((int)(reverse ? n - 1 - i : i));
    }
    r->live = (int)n;
    r->block_arrived = 0;
    r->aborted = false;
    if (r->smem_bytes)
        memset(r->smem, 0xff, r->smem_bytes); // shared memory starts as garbage
    size_t done = 0;
    while (done < n && !r->aborted) {
        if (r->ready_head == r->ready.size()) {
            int at_block = 0, at_warp = 0;
            for (const trec &t : r->threads) {
                at_block += t.state == T_WAIT_BLOCK;
                at_warp += t.state == T_WAIT_WARP;
            }
            cuemu_fail(cudaErrorLaunchFailure,
                       "kernel %s, block (%u, %u, %u): deadlock: %d threads wait at "
                       "__syncthreads, %d in warp operations, %zu have exited",
                       r->name, r->blk.idx.x, r->blk.idx.y, r->blk.idx.z, at_block, at_warp, done);
            r->aborted = true;
            break;
        }
        const size_t i = (size_t)r->ready[r->ready_head++];
        if (r->ready_head == r->ready.size()) { // keep the queue short
            r->ready.clear();
            r->ready_head = 0;
        }
        trec &t = r->threads[i];
        if (t.state == T_NEW) {
            t.stack = take_stack(r);
            if (t.stack < 0) {
                cuemu_fail(cudaErrorLaunchOutOfResources, "kernel %s: no memory for a stack",
                           r->name);
                r->aborted = true;
                break;
            }
            const stack &s = r->stacks[(size_t)t.stack];
            ctx_init(&t.ctx, s.lo, s.size, fiber_entry);
        }
        resume(r, &t);
        if (r->aborted || t.state != T_DONE)
            continue;
        done++;
        r->free_stacks.push_back(t.stack);
        r->live--;
        const warp &w = r->warps[i >> 5];
        if (w.arrived > 0 && (w.mask >> (i & 31) & 1u)) {
            cuemu_fail(cudaErrorLaunchFailure,
                       "kernel %s, block (%u, %u, %u): thread %zu exited while lanes of its warp "
                       "wait for it in a warp operation (mask 0x%08x)",
                       r->name, r->blk.idx.x, r->blk.idx.y, r->blk.idx.z, i, w.mask);
            r->aborted = true;
            break;
        }
        // exited threads no longer count at the barrier
        if (r->block_arrived > 0 && r->block_arrived == r->live)
            release_block(r);
    }
    if (r->aborted) {
        // the abandoned fibers' stacks are free again
        r->free_stacks.clear();
        for (size_t k = 0; k < r->stacks.size(); k++) {
#ifdef CUEMU_ASAN
            __asan_unpoison_memory_region(r->stacks[k].lo, r->stacks[k].size);
#endif
            r->free_stacks.push_back((int)k);
        }
        return false;
    }
    return true;
}

// Thread schedule: forward or reverse thread order, alternating from block
// to block and launch to launch, so that a result that depends on which
// thread runs first (a missing barrier) differs from the CPU's somewhere;
// CUEMU_ORDER=forward|reverse fixes it.
static int order_mode(void)
{
    static int mode = -1;
    if (mode < 0) {
        const char *e = getenv("CUEMU_ORDER");
        mode = e && !strcmp(e, "forward") ? 1 : e && !strcmp(e, "reverse") ? 2 : 0;
    }
    return mode;
}

static unsigned long long launches;

extern "C" cudaError_t cuemu_launch(const char *name, const void *func, dim3 grid, dim3 block,
                                    size_t smem, cudaStream_t stream, cuemu_thread_fn fn,
                                    void *closure)
{
    STICKY();
    const int mode = order_mode();
    if (check_stream(name, stream) != cudaSuccess)
        return cudaErrorInvalidResourceHandle;
    if (env_long("CUEMU_NO_KERNEL_IMAGE", 0))
        return ret(cudaErrorNoKernelImageForDevice);
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (!grid.x || !grid.y || !grid.z || !threads || threads > 1024 || block.x > 1024 ||
        block.y > 1024 || block.z > 64 || grid.x > 0x7fffffffu || grid.y > 65535 ||
        grid.z > 65535) {
        cuemu_fail(cudaErrorInvalidConfiguration,
                   "kernel %s: grid (%u, %u, %u), block (%u, %u, %u)", name, grid.x, grid.y,
                   grid.z, block.x, block.y, block.z);
        return cudaErrorInvalidConfiguration;
    }
    pthread_mutex_lock(&lock);
    const size_t smem_max = (size_t)max_dynamic_smem(func);
    pthread_mutex_unlock(&lock);
    if (smem > smem_max) {
        cuemu_fail(cudaErrorInvalidValue,
                   "kernel %s: %zu bytes of dynamic shared memory, %zu allowed (cudaFuncSetAttribute)",
                   name, smem, smem_max);
        return cudaErrorInvalidValue;
    }

    static thread_local run *r = nullptr;
    if (!r)
        r = new run();
    r->name = name;
    r->fn = fn;
    r->closure = closure;
    r->blk.dim = block;
    r->blk.grid = grid;
    r->smem_bytes = smem;
    r->smem = nullptr;
    r->smem_map = nullptr;
    if (smem) {
        const size_t page = page_size(), data = (smem + page - 1) / page * page;
        r->smem_map_bytes = data + page;
        r->smem_map = (char *)mmap(nullptr, r->smem_map_bytes, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (r->smem_map == MAP_FAILED) {
            cuemu_fail(cudaErrorLaunchOutOfResources, "kernel %s: no memory for shared memory", name);
            return cudaErrorLaunchOutOfResources;
        }
        mprotect(r->smem_map + data, page, PROT_NONE);
        r->smem = r->smem_map + data - ((smem + 15) & ~(size_t)15); // its end against the guard
    }

    cuemu_device_work_begin();
    run *outer = cur_run;
    cur_run = r;
    const unsigned long long launch = launches++;
    bool ok = true;
    for (unsigned z = 0; z < grid.z && ok; z++)
        for (unsigned y = 0; y < grid.y && ok; y++)
            for (unsigned x = 0; x < grid.x && ok; x++) {
                r->blk.idx.x = x;
                r->blk.idx.y = y;
                r->blk.idx.z = z;
                cuemu_blk = &r->blk;
                const bool reverse = mode == 2 || (mode == 0 && ((launch + x + y + z) & 1));
                ok = run_block(r, reverse);
            }
    cur_run = outer;
    cuemu_self = nullptr;
    cuemu_blk = nullptr;
    cuemu_device_work_end();
    if (r->smem_map)
        munmap(r->smem_map, r->smem_map_bytes);
    return ok ? cudaSuccess : cudaErrorLaunchFailure;
}
