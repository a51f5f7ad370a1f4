/*
 llmc/global_norm.cuh: the L2 norm of all the gradients (n fp32 values), for clipping.
 Spec: gpt2_grad_norm in train_gpt2_1bit.c (which sums in double in one pass).
 Stage 1: NORM_BLOCKS blocks of 256 threads, grid-stride over 128-bit vectors, each writes
 its float sum of squares; stage 2: one thread adds the NORM_BLOCKS partials in order in
 double and takes the square root. The grid is fixed, not sized from the GPU: the same bits on every GPU.
*/
#ifndef LLMC_GLOBAL_NORM_CUH
#define LLMC_GLOBAL_NORM_CUH

#include <math.h>
#include "cuda_common.h" // defines: f128, load128, block_reduce_sum, cudaCheck

// a fixed grid (the result must not depend on the GPU): about one block of 256 threads per SM
#define NORM_BLOCKS 128
// vec: g 16-byte aligned, read as f128 vectors (4 floats: four loads in flight a thread, not one),
// the last n % 4 values one by one
__global__ void sumsq_partial_kernel(float *partial, const float *g, size_t n, int vec) {
    __shared__ float shared[32];
    float s = 0.0f;
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    size_t nv = vec ? n / f128::size : 0;
    for (size_t v = tid; v < nv; v += stride) {
        f128 x = load128(g + v * f128::size);
        for (int k = 0; k < f128::size; k++) { s += x[k] * x[k]; }
    }
    for (size_t i = nv * f128::size + tid; i < n; i += stride) { s += g[i] * g[i]; }
    s = block_reduce_sum(s, shared);
    if (threadIdx.x == 0) { partial[blockIdx.x] = s; }
}

__global__ void sumsq_finalize_kernel(float *out, const float *partial, int n) {
    if (threadIdx.x != 0 || blockIdx.x != 0) { return; }
    double s = 0.0;
    for (int i = 0; i < n; i++) { s += partial[i]; }
    *out = (float)sqrt(s);
}

// the norm of g (n), on the host; partial (NORM_BLOCKS floats) and out (1 float) are device scratch
static inline float global_norm(float *partial, float *out, const float *g, size_t n) {
    sumsq_partial_kernel<<<NORM_BLOCKS, 256>>>(partial, g, n, is_aligned128(g));
    cudaCheck(cudaGetLastError());
    sumsq_finalize_kernel<<<1, 32>>>(out, partial, NORM_BLOCKS);
    cudaCheck(cudaGetLastError());
    float norm;
    cudaCheck(cudaMemcpy(&norm, out, sizeof(float), cudaMemcpyDeviceToHost));
    return norm;
}

#endif // LLMC_GLOBAL_NORM_CUH
