/*
 llmc/residual.cuh: the residual stream's add, elementwise: out (N) = inp1 + inp2.
 Spec: residual_forward in train_gpt2_1bit.c. (Its backward is a copy of the gradient into
 both branches: the trainer's backward adds each branch's gradient into one buffer instead.)
*/
#ifndef LLMC_RESIDUAL_CUH
#define LLMC_RESIDUAL_CUH

#include "cuda_common.h" // defines: floatX, to_float, from_float, ceil_div, cudaCheck

__global__ void residual_forward_kernel(floatX *out, const floatX *inp1, const floatX *inp2, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    out[i] = from_float<floatX>(to_float(inp1[i]) + to_float(inp2[i]));
}

static inline void residual_forward(floatX *out, const floatX *inp1, const floatX *inp2, size_t N) {
    residual_forward_kernel<<<ceil_div((long long)N, 256), 256>>>(out, inp1, inp2, N);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_RESIDUAL_CUH
