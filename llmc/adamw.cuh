/*
 llmc/adamw.cuh: AdamW (Loshchilov & Hutter) on one fp32 tensor of n values, with the
 gradient first scaled by grad_scale (global-norm clipping), and the floatX copy of the
 parameters (what the matmuls read) refreshed in the same pass.
 Spec: gpt2_update in train_gpt2_1bit.c (weight decay only on the matrices: the caller passes
 wd = 0 for the others; t counts from 1, bc1 = 1 - beta1^t, bc2 = 1 - beta2^t).
 Also copy_to_floatx: the floatX copy of fp32 parameters, after a load.
*/
#ifndef LLMC_ADAMW_CUH
#define LLMC_ADAMW_CUH

#include <math.h>
#include "cuda_common.h" // defines: floatX, from_float, ceil_div, cudaCheck

// AdamW on one tensor, exactly as gpt2_update in train_gpt2_1bit.c; also
// refreshes the floatX copy the matmuls read (NULL in the fp32 build)
__global__ void adamw_kernel(float *params, floatX *params_x, float *m_mem, float *v_mem, const float *grads, size_t n,
                             float lr, float beta1, float beta2, float bc1, float bc2, float eps, float wd,
                             float grad_scale) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) { return; }
    float param = params[i], grad = grads[i] * grad_scale;
    float m = beta1 * m_mem[i] + (1.0f - beta1) * grad;
    float v = beta2 * v_mem[i] + (1.0f - beta2) * grad * grad;
    float m_hat = m / bc1, v_hat = v / bc2;
    m_mem[i] = m;
    v_mem[i] = v;
    param -= lr * (m_hat / (sqrtf(v_hat) + eps) + wd * param);
    params[i] = param;
    if (params_x != NULL) { params_x[i] = from_float<floatX>(param); }
}

__global__ void copy_to_floatx_kernel(floatX *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { dst[i] = from_float<floatX>(src[i]); }
}

// params_x: the floatX copy to refresh, or NULL (the fp32 build, where it is params itself)
static inline void adamw_update(float *params, floatX *params_x, float *m, float *v, const float *grads, size_t n,
                                float lr, float beta1, float beta2, float bc1, float bc2, float eps, float wd,
                                float grad_scale) {
    adamw_kernel<<<ceil_div((long long)n, 256), 256>>>(params, params_x, m, v, grads, n, lr, beta1, beta2, bc1, bc2,
                                                         eps, wd, grad_scale);
    cudaCheck(cudaGetLastError());
}

static inline void copy_to_floatx(floatX *dst, const float *src, size_t n) {
    copy_to_floatx_kernel<<<ceil_div((long long)n, 256), 256>>>(dst, src, n);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_ADAMW_CUH
