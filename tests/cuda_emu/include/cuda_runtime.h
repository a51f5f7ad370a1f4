/*
 tests/cuda_emu/include/cuda_runtime.h: the part of the CUDA runtime API the
 project uses, on the CPU (see cuda_emu_core.h). Device memory is host memory.
*/
#ifndef CUDA_EMU_RUNTIME_H
#define CUDA_EMU_RUNTIME_H

#include "cuda_emu_core.h"

#define CUDART_VERSION 13000 // the toolkit the emulator stands in for

typedef enum { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice,
               cudaMemcpyDefault } cudaMemcpyKind;

struct cudaDeviceProp {
    char name[256];
    int major, minor, multiProcessorCount;
    size_t totalGlobalMem;
};

typedef struct EmuEvent *cudaEvent_t;
typedef struct EmuStream *cudaStream_t;

static inline const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoKernelImageForDevice: return "no kernel image is available for execution on the device";
    case cudaErrorUnsupportedPtxVersion: return "the provided PTX was compiled with an unsupported toolchain.";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorCooperativeLaunchTooLarge: return "too many blocks in cooperative launch";
    }
    return "unknown error";
}

static inline cudaError_t cudaGetLastError(void) {
    cudaError_t e = emu.last_error;
    emu.last_error = cudaSuccess;
    return e;
}

#define EMU_MEMORY_LIMIT (16ULL << 30) // what the emulated device pretends to hold
static size_t emu_allocated = 0;

static inline cudaError_t cudaMalloc(void **p, size_t bytes) {
    *p = NULL;
    if (bytes > EMU_MEMORY_LIMIT - emu_allocated) { emu.last_error = cudaErrorMemoryAllocation; return cudaErrorMemoryAllocation; }
    // malloc, not calloc: a kernel that reads memory nobody wrote should not see zeros
    // (valgrind reports such reads); the size is stored in front for cudaFree's accounting
    // 256-byte aligned, as cudaMalloc's pointers are; exactly `bytes` after the
    // header, so valgrind and ASan flag the first byte past the end
    char *raw = NULL;
    if (posix_memalign((void **)&raw, 256, bytes + 256) != 0) { raw = NULL; }
    if (raw == NULL) { emu.last_error = cudaErrorMemoryAllocation; return cudaErrorMemoryAllocation; }
    memcpy(raw, &bytes, sizeof(size_t));
    emu_allocated += bytes;
    *p = raw + 256;
    return cudaSuccess;
}
template <typename T> static inline cudaError_t cudaMalloc(T **p, size_t bytes) { return cudaMalloc((void **)p, bytes); }

static inline cudaError_t cudaFree(void *p) {
    if (p == NULL) { return cudaSuccess; }
    char *raw = (char *)p - 256;
    size_t bytes;
    memcpy(&bytes, raw, sizeof(size_t));
    emu_allocated -= bytes;
    free(raw);
    return cudaSuccess;
}

// pinned (page-locked) host memory: plain host memory here, as every copy is synchronous anyway
static inline cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = malloc(bytes > 0 ? bytes : 1);
    if (*p == NULL) { emu.last_error = cudaErrorMemoryAllocation; return cudaErrorMemoryAllocation; }
    return cudaSuccess;
}
static inline cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }

static inline cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    (void)kind;
    if (bytes > 0) { memmove(dst, src, bytes); }
    return cudaSuccess;
}
static inline cudaError_t cudaMemset(void *dst, int v, size_t bytes) { memset(dst, v, bytes); return cudaSuccess; }
// the emulated device is synchronous: the Async forms finish before they return
static inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                                          cudaStream_t stream = 0) {
    (void)stream;
    return cudaMemcpy(dst, src, bytes, kind);
}
static inline cudaError_t cudaMemsetAsync(void *dst, int v, size_t bytes, cudaStream_t stream = 0) {
    (void)stream;
    return cudaMemset(dst, v, bytes);
}
static inline cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
static inline cudaError_t cudaProfilerStart(void) { return cudaSuccess; } // profiling: nothing to do here
static inline cudaError_t cudaProfilerStop(void) { return cudaSuccess; }
// CUDA_EMU_DEVICE_ERROR=N (tests): cudaGetDeviceCount fails with N if N is 35 (driver too old) or
// 100 (no device); for another N the first launch does (209: no kernel image for this GPU)
static inline int emu_device_error(void) {
    const char *e = getenv("CUDA_EMU_DEVICE_ERROR");
    return e != NULL ? atoi(e) : 0;
}
static inline cudaError_t cudaGetDeviceCount(int *n) {
    int e = emu_device_error();
    *n = (e == 35 || e == 100) ? 0 : 1;
    return (e == 35 || e == 100) ? (cudaError_t)e : cudaSuccess;
}
// a kernel's resources: what the emulator knows of them; fails like a binary without code for
// this GPU when CUDA_EMU_DEVICE_ERROR names a launch error
struct cudaFuncAttributes {
    int maxThreadsPerBlock, numRegs;
    size_t sharedSizeBytes, localSizeBytes;
};
template <typename F> static inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, F f) {
    (void)f;
    memset(a, 0, sizeof(*a));
    a->maxThreadsPerBlock = 1024;
    int e = emu_device_error();
    return (e != 0 && e != 35 && e != 100) ? (cudaError_t)e : cudaSuccess;
}
// a kernel's opt-in to more than 48 KiB of dynamic shared memory a block, up to sm_90's 227 KiB
// (the only attribute emulated); the launch then checks against the largest opt-in (cuda_emu_core.h)
typedef enum {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
} cudaFuncAttribute;
template <typename F> static inline cudaError_t cudaFuncSetAttribute(F f, cudaFuncAttribute attr, int value) {
    (void)f;
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > EMU_DYNAMIC_SHARED_OPTIN) {
        return cudaErrorInvalidValue;
    }
    if ((size_t)value > emu.dyn_shared_optin) { emu.dyn_shared_optin = (size_t)value; }
    return cudaSuccess;
}
static inline cudaError_t cudaDriverGetVersion(int *v) { *v = emu_device_error() == 35 ? 12040 : 13000; return cudaSuccess; }
static inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
static inline cudaError_t cudaGetDevice(int *d) { *d = 0; return cudaSuccess; }
static inline cudaError_t cudaRuntimeGetVersion(int *v) { *v = 13000; return cudaSuccess; }
static inline cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *total_b = EMU_MEMORY_LIMIT;
    *free_b = EMU_MEMORY_LIMIT - emu_allocated;
    return cudaSuccess;
}
static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    (void)d;
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "CPU emulator (tests/cuda_emu)");
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 1;
    p->totalGlobalMem = EMU_MEMORY_LIMIT;
    return cudaSuccess;
}

// ----------------------------------------------------------------------------
// the emulated device: what cudaGetDeviceProperties says (an sm_90 with one SM, so
// that grids sized from the SM count stay small) and H100 per-SM limits for occupancy

#define EMU_SMS 1
#define EMU_L2_BYTES (50 << 20)               // an H100's L2
#define EMU_SM_MAX_THREADS 2048               // sm_80 / sm_90
#define EMU_SM_MAX_BLOCKS 32                  // sm_80 / sm_90
#define EMU_SM_SHARED_BYTES (228 * 1024)      // sm_90: 228 KiB per SM, 1 KiB of it reserved per block

typedef enum {
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrL2CacheSize = 38,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrCooperativeLaunch = 95,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
} cudaDeviceAttr;

static inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr attr, int dev) {
    if (dev != 0) { return cudaErrorInvalidValue; }
    switch (attr) {
    case cudaDevAttrMultiProcessorCount: *v = EMU_SMS; return cudaSuccess;
    case cudaDevAttrL2CacheSize: *v = EMU_L2_BYTES; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; return cudaSuccess;
    case cudaDevAttrCooperativeLaunch: *v = 1; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = EMU_DYNAMIC_SHARED_OPTIN; return cudaSuccess;
    }
    return cudaErrorInvalidValue;
}

// blocks of blockSize threads (and dynSmem bytes of dynamic shared memory) that fit on
// one SM by threads, blocks and shared memory. An upper bound: the emulator knows neither
// a kernel's registers nor its static shared memory, which can only lower the real answer
// (a cooperative grid sized from it may then be too large on a GPU: the launch says so there)
static inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, const void *func, int blockSize,
                                                                       size_t dynSmem) {
    if (func == NULL || blockSize < 1 || blockSize > EMU_MAX_THREADS) { return cudaErrorInvalidValue; }
    int warps = (blockSize + 31) / 32;
    int by_threads = EMU_SM_MAX_THREADS / 32 / warps;
    int by_smem = (int)(EMU_SM_SHARED_BYTES / (dynSmem + 1024));
    int r = by_threads < EMU_SM_MAX_BLOCKS ? by_threads : EMU_SM_MAX_BLOCKS;
    *n = by_smem < r ? by_smem : r;
    return cudaSuccess;
}

// ----------------------------------------------------------------------------
// events: the device is synchronous, so an event is the host's clock when it was
// recorded and elapsed times are the emulator's own (they say nothing of a GPU's speed)

#include <time.h>
struct EmuEvent {
    double t;
    int recorded;
};
static inline cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = (cudaEvent_t)calloc(1, sizeof(EmuEvent));
    return *e ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaEventDestroy(cudaEvent_t e) { free(e); return cudaSuccess; }
static inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream = 0) {
    (void)stream;
    if (e == NULL) { return cudaErrorInvalidResourceHandle; }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    e->t = ts.tv_sec + 1e-9 * ts.tv_nsec;
    e->recorded = 1;
    return cudaSuccess;
}
static inline cudaError_t cudaEventSynchronize(cudaEvent_t e) { return e ? cudaSuccess : cudaErrorInvalidResourceHandle; }
static inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t stop) {
    if (start == NULL || stop == NULL) { return cudaErrorInvalidResourceHandle; }
    if (!start->recorded || !stop->recorded) { return cudaErrorNotReady; }
    *ms = (float)((stop->t - start->t) * 1e3);
    return cudaSuccess;
}

// ----------------------------------------------------------------------------
// launches by function pointer (cudaLaunchCooperativeKernel): the runtime must call a
// kernel it knows only by address with arguments given as an array of pointers to them.
// As CUDA registers every kernel of a module with its parameters, cu2cpp.py registers
// each kernel of a file that launches this way: its address and a trampoline that
// unpacks args[] into a typed call.

#include <type_traits>
typedef void (*EmuTrampoline)(void **args);
struct EmuKernelEntry {
    const void *func;
    EmuTrampoline call;
    const char *name;
};
#define EMU_MAX_KERNELS 256
static EmuKernelEntry emu_kernels[EMU_MAX_KERNELS];
static int emu_nkernels = 0;
struct EmuKernelRegistration {
    EmuKernelRegistration(const void *func, EmuTrampoline call, const char *name) {
        if (emu_nkernels == EMU_MAX_KERNELS) { fprintf(stderr, "cuda_emu: too many kernels\n"); exit(EXIT_FAILURE); }
        emu_kernels[emu_nkernels++] = EmuKernelEntry{func, call, name};
    }
};
template <typename F, F f> struct EmuKernelTrampoline;
template <typename... A, void (*f)(A...)> struct EmuKernelTrampoline<void (*)(A...), f> {
    template <size_t... I> static void unpack(void **args, std::index_sequence<I...>) {
        f(*(typename std::remove_reference<A>::type *)args[I]...);
    }
    static void call(void **args) { unpack(args, std::index_sequence_for<A...>{}); }
};

// a cooperative launch: every block resident at once, so the grid must fit on the device
// (occupancy x SMs; cudaErrorCooperativeLaunchTooLarge otherwise, as on a GPU)
static inline cudaError_t cudaLaunchCooperativeKernel(const void *func, dim3 grid, dim3 block, void **args,
                                                      size_t smem = 0, cudaStream_t stream = 0) {
    (void)stream;
    EmuTrampoline call = NULL;
    for (int i = 0; i < emu_nkernels; i++) {
        if (emu_kernels[i].func == func) { call = emu_kernels[i].call; }
    }
    if (call == NULL) { return cudaErrorInvalidDeviceFunction; }
    int per_sm = 0;
    cudaError_t err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, func, (int)(block.x * block.y * block.z), smem);
    if (err != cudaSuccess) { return err; }
    if ((long long)grid.x * grid.y * grid.z > (long long)per_sm * EMU_SMS) { return cudaErrorCooperativeLaunchTooLarge; }
    cudaError_t before = emu.last_error; // a launch returns its own error only
    emu.last_error = cudaSuccess;
    emu_launch_impl(grid, block, smem, 1, [=]() { call(args); });
    err = emu.last_error;
    if (err == cudaSuccess) { emu.last_error = before; }
    return err;
}

#endif // CUDA_EMU_RUNTIME_H
