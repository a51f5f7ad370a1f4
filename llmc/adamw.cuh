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
#include "cuda_common.h" // defines: floatX, f128, load128, store128, from_float, ceil_div, cudaCheck

// AdamW on one value, exactly as gpt2_update in train_gpt2_1bit.c; returns the new parameter
__device__ static inline float adamw_value(float param, float grad, float *m, float *v, float lr, float beta1,
                                           float beta2, float bc1, float bc2, float eps, float wd) {
    *m = beta1 * *m + (1.0f - beta1) * grad;
    *v = beta2 * *v + (1.0f - beta2) * grad * grad;
    float m_hat = *m / bc1, v_hat = *v / bc2;
    return param - lr * (m_hat / (sqrtf(v_hat) + eps) + wd * param);
}

// AdamW on one tensor; also refreshes the floatX copy the matmuls read (NULL in the fp32 build).
// Thread i takes values [4i, 4i + 4): 128-bit accesses (f128) to the four fp32 arrays when they
// are 16-byte aligned (vec), the tail and unaligned tensors one by one
__global__ void adamw_kernel(float *params, floatX *params_x, float *m_mem, float *v_mem, const float *grads, size_t n,
                             float lr, float beta1, float beta2, float bc1, float bc2, float eps, float wd,
                             float grad_scale, int vec) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * f128::size;
    if (i >= n) { return; }
    if (vec && i + f128::size <= n) {
        f128 p = load128(params + i), g = load128(grads + i), m = load128(m_mem + i), v = load128(v_mem + i);
        for (int k = 0; k < f128::size; k++) {
            p[k] = adamw_value(p[k], g[k] * grad_scale, &m[k], &v[k], lr, beta1, beta2, bc1, bc2, eps, wd);
            if (params_x != NULL) { params_x[i + k] = from_float<floatX>(p[k]); }
        }
        store128(params + i, p);
        store128(m_mem + i, m);
        store128(v_mem + i, v);
    } else {
        for (size_t j = i; j < i + f128::size && j < n; j++) {
            float p = adamw_value(params[j], grads[j] * grad_scale, &m_mem[j], &v_mem[j], lr, beta1, beta2, bc1, bc2,
                                  eps, wd);
            params[j] = p;
            if (params_x != NULL) { params_x[j] = from_float<floatX>(p); }
        }
    }
}

__global__ void copy_to_floatx_kernel(floatX *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { dst[i] = from_float<floatX>(src[i]); }
}

// params_x: the floatX copy to refresh, or NULL (the fp32 build, where it is params itself)
static inline void adamw_update(float *params, floatX *params_x, float *m, float *v, const float *grads, size_t n,
                                float lr, float beta1, float beta2, float bc1, float bc2, float eps, float wd,
                                float grad_scale) {
    int vec = is_aligned128(params) && is_aligned128(m) && is_aligned128(v) && is_aligned128(grads);
    adamw_kernel<<<ceil_div(ceil_div((long long)n, f128::size), 256), 256>>>(params, params_x, m, v, grads, n, lr, beta1,
                                                                             beta2, bc1, bc2, eps, wd, grad_scale, vec);
    cudaCheck(cudaGetLastError());
}

static inline void copy_to_floatx(floatX *dst, const float *src, size_t n) {
    copy_to_floatx_kernel<<<ceil_div((long long)n, 256), 256>>>(dst, src, n);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_ADAMW_CUH
