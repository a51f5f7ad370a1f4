/*
 llmc/cuda_common.h: what every CUDA file of the project shares: error checks,
 the activation precision (floatX), checked device allocation with an
 out-of-memory hint, and small device helpers.

 Used by train_gpt2_1bit.cu, tests/test_gpt2_1bit.cu and dev/cuda/common.h.

 Precision: activations and matmul inputs are bf16 by default (floatX). Build
 with -DENABLE_FP32 (make PRECISION=FP32) to make them fp32, for tight tests.
 Master weights, gradients of the parameters and AdamW moments are always fp32.
*/
#ifndef LLMC_CUDA_COMMON_H
#define LLMC_CUDA_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include "utils.h" // defines: mallocCheck, fopenCheck, freadCheck, now_seconds, median

// ----------------------------------------------------------------------------
// error checks: report the expression, file and line, then exit non-zero

static inline void cuda_check(cudaError_t err, const char *expr, const char *file, int line) {
    if (err != cudaSuccess) {
        fprintf(stderr, "CUDA error: %s: %s  [%s:%d]\n", expr, cudaGetErrorString(err), file, line);
        exit(EXIT_FAILURE);
    }
}
#define cudaCheck(expr) cuda_check((expr), #expr, __FILE__, __LINE__)

static inline void cublas_check(cublasStatus_t status, const char *expr, const char *file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cuBLAS error %d: %s  [%s:%d]\n", (int)status, expr, file, line);
        exit(EXIT_FAILURE);
    }
}
#define cublasCheck(expr) cublas_check((expr), #expr, __FILE__, __LINE__)

// ----------------------------------------------------------------------------
// device memory: an allocation that does not fit is a user's problem (too big
// a batch), so it gets a hint instead of a bare CUDA error

static size_t cuda_allocated_bytes = 0; // all that cuda_malloc_check has allocated (never lowered by frees)

static inline void *cuda_malloc_check(size_t bytes, const char *what, const char *file, int line) {
    void *ptr = NULL;
    cudaError_t err = cudaMalloc(&ptr, bytes);
    if (err == cudaErrorMemoryAllocation) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError(); // clear the sticky-free error so cudaMemGetInfo answers
        cudaMemGetInfo(&free_b, &total_b);
        fprintf(stderr, "error: out of GPU memory allocating %s (%.1f MiB; %.1f of %.1f MiB free)  [%s:%d]\n"
                "---> HINT: lower the micro-batch size (-b) or the sequence length (-t); keep the total batch (-d) "
                "with gradient accumulation\n",
                what, bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0, file, line);
        exit(EXIT_FAILURE);
    }
    cuda_check(err, what, file, line);
    cuda_allocated_bytes += bytes;
    return ptr;
}
#define cudaMallocCheck(bytes, what) cuda_malloc_check((bytes), (what), __FILE__, __LINE__)

// ----------------------------------------------------------------------------
// precision of activations

#ifdef ENABLE_FP32
typedef float floatX;
#define PRECISION_NAME "fp32"
#define CUBLAS_FLOATX CUDA_R_32F
#else
typedef __nv_bfloat16 floatX;
#define PRECISION_NAME "bf16"
#define CUBLAS_FLOATX CUDA_R_16BF
#endif

__host__ __device__ static inline float to_float(float x) { return x; }
__host__ __device__ static inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __host__ __device__ static inline T from_float(float x);
template <> __host__ __device__ inline float from_float<float>(float x) { return x; }
template <> __host__ __device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

// ----------------------------------------------------------------------------
// 128-bit memory accesses (as llm.c's Packed128): 16 bytes of T, 8 bf16 or 4 floats, moved with one
// ld.global.v4 / st.global.v4 instead of 8 or 4 narrow ones. Legal only at a 16-byte aligned address:
// a kernel takes the vector path where its rows (or its whole array) start aligned and falls back
// to scalar accesses for the rest (a row's tail, an array's last N % X128 values).

template <class T> struct alignas(16) Packed128 {
    static constexpr int size = 16 / (int)sizeof(T);
    T payload[16 / sizeof(T)];
    __host__ __device__ T &operator[](int i) { return payload[i]; }
    __host__ __device__ const T &operator[](int i) const { return payload[i]; }
};
typedef Packed128<floatX> x128; // 8 bf16 (4 fp32 in the fp32 build): x128::size values
typedef Packed128<float> f128;  // 4 floats
static_assert(sizeof(x128) == 16 && sizeof(f128) == 16, "a Packed128 is one 128-bit vector");

template <class T> __device__ static inline Packed128<T> load128(const T *p) {
    return *reinterpret_cast<const Packed128<T> *>(p);
}
template <class T> __device__ static inline void store128(T *p, Packed128<T> v) {
    *reinterpret_cast<Packed128<T> *>(p) = v;
}
// 1 when p is 16-byte aligned, i.e. a 128-bit access from it is legal
__host__ __device__ static inline int is_aligned128(const void *p) { return ((uintptr_t)p & 15) == 0; }

// ----------------------------------------------------------------------------
// small helpers

static inline int ceil_div(long long a, long long b) { return (int)((a + b - 1) / b); }

// sum over a warp, every lane gets the result
template <typename T> __device__ static inline T warp_reduce_sum(T v) { // T: float or double
    for (int off = 16; off > 0; off >>= 1) { v += __shfl_xor_sync(0xffffffffu, v, off); }
    return v;
}
__device__ static inline float warp_reduce_max(float v) {
    for (int off = 16; off > 0; off >>= 1) { v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off)); }
    return v;
}

// sum over a block of up to 1024 threads (blockDim.x a multiple of 32); every
// thread gets the result. `shared` holds 32 values of T (float or double).
template <typename T> __device__ static inline T block_reduce_sum(T v, T *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_reduce_sum(v);
    __syncthreads(); // shared may still be read by a previous call
    if (lane == 0) { shared[warp] = v; }
    __syncthreads(); // all warp sums written
    v = lane < nwarps ? shared[lane] : (T)0;
    return warp_reduce_sum(v);
}
__device__ static inline float block_reduce_max(float v, float *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_reduce_max(v);
    __syncthreads();
    if (lane == 0) { shared[warp] = v; }
    __syncthreads();
    v = lane < nwarps ? shared[lane] : -INFINITY;
    return warp_reduce_max(v);
}

// ----------------------------------------------------------------------------
// start-up: pick GPU 0 and check that this binary can run on it. What goes wrong
// on a new machine gets named with its fix: no GPU, a driver older than the
// toolkit the binary was built with, no code for this GPU's architecture.

__global__ static void cuda_probe_kernel(void) {}

#ifndef CUDA_ARCH_LIST
#define CUDA_ARCH_LIST "an unknown list" // the Makefile passes the compute capabilities it built for, e.g. "80 89 90"
#endif

static inline void cuda_device_init(const char *no_gpu_hint) {
    int count = 0, driver = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    cudaDriverGetVersion(&driver); // 0 when no driver is installed
    if (err == cudaErrorInsufficientDriver) {
        fprintf(stderr, "error: the NVIDIA driver supports CUDA up to %d.%d, older than the CUDA %d.%d this program "
                "was built with\n---> HINT: update the driver, or rebuild with the CUDA toolkit that nvidia-smi "
                "names\n", driver / 1000, (driver % 1000) / 10, CUDART_VERSION / 1000, (CUDART_VERSION % 1000) / 10);
        exit(EXIT_FAILURE);
    }
    if (err != cudaSuccess || count == 0) {
        fprintf(stderr, "error: no CUDA GPU found (%s)\n---> HINT: %s\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "no device", no_gpu_hint);
        exit(EXIT_FAILURE);
    }
    cudaCheck(cudaSetDevice(0));
    // loads a kernel's code: fails here, not in the first real launch, when the binary has none for this GPU
    cudaFuncAttributes attr;
    err = cudaFuncGetAttributes(&attr, cuda_probe_kernel);
    if (err != cudaSuccess) {
        cudaDeviceProp prop;
        cudaCheck(cudaGetDeviceProperties(&prop, 0));
        if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidDeviceFunction ||
            err == cudaErrorUnsupportedPtxVersion) {
            fprintf(stderr, "error: this binary has no code for the %s (compute capability %d%d; built for %s): %s\n"
                    "---> HINT: rebuild for it: make clean && make GPU_COMPUTE_CAPABILITY=%d%d\n", prop.name,
                    prop.major, prop.minor, CUDA_ARCH_LIST, cudaGetErrorString(err), prop.major, prop.minor);
        } else {
            fprintf(stderr, "error: loading the first kernel on the %s failed: %s\n---> HINT: check the GPU with "
                    "nvidia-smi\n", prop.name, cudaGetErrorString(err));
        }
        exit(EXIT_FAILURE);
    }
}

// the GPU's name and memory, for benchmark lines
static inline void print_device_line(void) {
    int dev = 0;
    cudaDeviceProp prop;
    cudaCheck(cudaGetDevice(&dev));
    cudaCheck(cudaGetDeviceProperties(&prop, dev));
    int rt = 0, drv = 0;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    printf("device: %s, sm_%d%d, %d SMs, %.1f GiB, CUDA runtime %d.%d, driver supports CUDA %d.%d\n", prop.name,
           prop.major, prop.minor, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0, rt / 1000,
           (rt % 1000) / 10, drv / 1000, (drv % 1000) / 10);
}

#endif // LLMC_CUDA_COMMON_H
