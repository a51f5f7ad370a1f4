/*
 llmc/gelu.cuh: GELU, tanh approximation (as GPT-2), forward and backward, elementwise.
 Spec: gelu_forward and gelu_backward in train_gpt2_1bit.c.
   forward:  out (N) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
   backward: dinp (N) = gelu'(inp) * dout (dinp may be dout: in place)
*/
#ifndef LLMC_GELU_CUH
#define LLMC_GELU_CUH

#include <math.h>
#include "cuda_common.h" // defines: floatX, to_float, from_float, ceil_div, cudaCheck

#define GELU_SCALING_FACTOR 0.7978845608028654f // sqrt(2 / pi)
__global__ void gelu_forward_kernel(floatX *out, const floatX *inp, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    float x = to_float(inp[i]);
    float cube = 0.044715f * x * x * x;
    out[i] = from_float<floatX>(0.5f * x * (1.0f + tanhf(GELU_SCALING_FACTOR * (x + cube))));
}

// dinp = gelu'(inp) * dout (dinp may be dout)
__global__ void gelu_backward_kernel(floatX *dinp, const floatX *inp, const floatX *dout, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    float x = to_float(inp[i]);
    float cube = 0.044715f * x * x * x;
    float tanh_out = tanhf(GELU_SCALING_FACTOR * (x + cube));
    float sech2 = 1.0f - tanh_out * tanh_out;
    float local_grad = 0.5f * (1.0f + tanh_out) + x * 0.5f * sech2 * GELU_SCALING_FACTOR * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = from_float<floatX>(local_grad * to_float(dout[i]));
}

static inline void gelu_forward(floatX *out, const floatX *inp, size_t N) {
    gelu_forward_kernel<<<ceil_div((long long)N, 256), 256>>>(out, inp, N);
    cudaCheck(cudaGetLastError());
}

static inline void gelu_backward(floatX *dinp, const floatX *inp, const floatX *dout, size_t N) {
    gelu_backward_kernel<<<ceil_div((long long)N, 256), 256>>>(dinp, inp, dout, N);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_GELU_CUH
