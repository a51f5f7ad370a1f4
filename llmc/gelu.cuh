/*
 llmc/gelu.cuh: GELU, tanh approximation (as GPT-2), forward and backward, elementwise.
 Spec: gelu_forward and gelu_backward in train_gpt2_1bit.c.
   forward:  out (N) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
   backward: dinp (N) = gelu'(inp) * dout (dinp may be dout: in place)
 One thread per x128 vector (8 bf16, 4 fp32) when every pointer is 16-byte aligned, the last
 N % x128::size values one by one; otherwise the same threads take their values one by one.
 gelu_stored is what gelu_forward writes for one value: llmc/quantize.cuh applies it in registers
 where a BitLinear reads gelu(fch) (fcproj), so that its input is these bits without the tensor
 being written (bitlinear_input_forward with BL_PRE_GELU).
*/
#ifndef LLMC_GELU_CUH
#define LLMC_GELU_CUH

#include <math.h>
#include "cuda_common.h" // defines: floatX, x128, load128, store128, to_float, from_float, ceil_div, cudaCheck

#define GELU_SCALING_FACTOR 0.7978845608028654f // sqrt(2 / pi)

__device__ static inline float gelu_value(float x) {
    float cube = 0.044715f * x * x * x;
    return 0.5f * x * (1.0f + tanhf(GELU_SCALING_FACTOR * (x + cube)));
}

// the value gelu_forward stores for an input x: GELU rounded to floatX. Every kernel that
// computes gelu(x) for the forward calls this, so that they all give gelu_forward's bits
__device__ static inline floatX gelu_stored(float x) { return from_float<floatX>(gelu_value(x)); }

__device__ static inline float gelu_grad(float x) {
    float cube = 0.044715f * x * x * x;
    float tanh_out = tanhf(GELU_SCALING_FACTOR * (x + cube));
    float sech2 = 1.0f - tanh_out * tanh_out;
    return 0.5f * (1.0f + tanh_out) + x * 0.5f * sech2 * GELU_SCALING_FACTOR * (1.0f + 3.0f * 0.044715f * x * x);
}

// thread i takes values [i * x128::size, (i + 1) * x128::size) of N
__global__ void gelu_forward_kernel(floatX *out, const floatX *inp, size_t N, int vec) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (i >= N) { return; }
    if (vec && i + x128::size <= N) {
        x128 x = load128(inp + i), o;
        for (int k = 0; k < x128::size; k++) { o[k] = gelu_stored(to_float(x[k])); }
        store128(out + i, o);
    } else { // the array's tail, or unaligned pointers
        for (size_t j = i; j < i + x128::size && j < N; j++) { out[j] = gelu_stored(to_float(inp[j])); }
    }
}

// dinp = gelu'(inp) * dout (dinp may be dout: each thread reads its values before writing them)
__global__ void gelu_backward_kernel(floatX *dinp, const floatX *inp, const floatX *dout, size_t N, int vec) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (i >= N) { return; }
    if (vec && i + x128::size <= N) {
        x128 x = load128(inp + i), d = load128(dout + i), o;
        for (int k = 0; k < x128::size; k++) { o[k] = from_float<floatX>(gelu_grad(to_float(x[k])) * to_float(d[k])); }
        store128(dinp + i, o);
    } else {
        for (size_t j = i; j < i + x128::size && j < N; j++) {
            dinp[j] = from_float<floatX>(gelu_grad(to_float(inp[j])) * to_float(dout[j]));
        }
    }
}

static inline void gelu_forward(floatX *out, const floatX *inp, size_t N) {
    int vec = is_aligned128(out) && is_aligned128(inp);
    gelu_forward_kernel<<<ceil_div(ceil_div((long long)N, x128::size), 256), 256>>>(out, inp, N, vec);
    cudaCheck(cudaGetLastError());
}

static inline void gelu_backward(floatX *dinp, const floatX *inp, const floatX *dout, size_t N) {
    int vec = is_aligned128(dinp) && is_aligned128(inp) && is_aligned128(dout);
    gelu_backward_kernel<<<ceil_div(ceil_div((long long)N, x128::size), 256), 256>>>(dinp, inp, dout, N, vec);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_GELU_CUH
