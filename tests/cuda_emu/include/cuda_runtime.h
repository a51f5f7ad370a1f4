/*
 tests/cuda_emu/include/cuda_runtime.h: the part of the CUDA runtime API the
 project uses, on the CPU (see cuda_emu_core.h). Device memory is host memory.
*/
#ifndef CUDA_EMU_RUNTIME_H
#define CUDA_EMU_RUNTIME_H

#include "cuda_emu_core.h"

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

static inline cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    (void)kind;
    if (bytes > 0) { memmove(dst, src, bytes); }
    return cudaSuccess;
}
static inline cudaError_t cudaMemset(void *dst, int v, size_t bytes) { memset(dst, v, bytes); return cudaSuccess; }
static inline cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
static inline cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
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

#endif // CUDA_EMU_RUNTIME_H
