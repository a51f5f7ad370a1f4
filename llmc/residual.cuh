/*
 llmc/residual.cuh: the residual stream's add, elementwise: out (N) = inp1 + inp2.
 Spec: residual_forward in train_gpt2_1bit.c. (Its backward is a copy of the gradient into
 both branches: the trainer's backward adds each branch's gradient into one buffer instead.)
 The trainer's forward adds with the next LayerNorm in one kernel
 (fused_residual_layernorm_forward, llmc/layernorm.cuh); this is the op alone.
 One thread per x128 vector when every pointer is 16-byte aligned, the tail one by one.
*/
#ifndef LLMC_RESIDUAL_CUH
#define LLMC_RESIDUAL_CUH

#include "cuda_common.h" // defines: floatX, x128, load128, store128, to_float, from_float, ceil_div, cudaCheck

// thread i takes values [i * x128::size, (i + 1) * x128::size) of N
__global__ void residual_forward_kernel(floatX *out, const floatX *inp1, const floatX *inp2, size_t N, int vec) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (i >= N) { return; }
    if (vec && i + x128::size <= N) {
        x128 a = load128(inp1 + i), b = load128(inp2 + i), o;
        for (int k = 0; k < x128::size; k++) { o[k] = from_float<floatX>(to_float(a[k]) + to_float(b[k])); }
        store128(out + i, o);
    } else { // the array's tail, or unaligned pointers
        for (size_t j = i; j < i + x128::size && j < N; j++) {
            out[j] = from_float<floatX>(to_float(inp1[j]) + to_float(inp2[j]));
        }
    }
}

static inline void residual_forward(floatX *out, const floatX *inp1, const floatX *inp2, size_t N) {
    int vec = is_aligned128(out) && is_aligned128(inp1) && is_aligned128(inp2);
    residual_forward_kernel<<<ceil_div(ceil_div((long long)N, x128::size), 256), 256>>>(out, inp1, inp2, N, vec);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_RESIDUAL_CUH
