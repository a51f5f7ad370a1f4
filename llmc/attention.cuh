/*
 llmc/attention.cuh: causal multi-head self-attention in full precision, the plain cuBLAS form:
 q, k, v permuted to (B,NH,T,HS), scores by a batched GEMM, causal softmax, the weighted sum by
 a batched GEMM, permuted back. The (T,T) probabilities are kept for the backward pass.
 Spec: attention_forward and attention_backward in train_gpt2_1bit.c.

   forward:  out (B,T,C) from qkv (B,T,3C) = (B,T,3,NH,HS); att (B,NH,T,T) the probabilities
   backward: dqkv (B,T,3C) (overwritten) from dout (B,T,C), the forward's qkv and att
 Scratch: qkvr (3,B,NH,T,HS) for q, k, v; preatt (B,NH,T,T) for the scores (and, backward,
 their gradient); vaccum (B,NH,T,HS); dqkvr (3,B,NH,T,HS) for dq, dk, dv.
 Softmax: one warp per row (b, h, t), 8 rows in a block of 256 threads. Needs cublas_handle.
*/
#ifndef LLMC_ATTENTION_CUH
#define LLMC_ATTENTION_CUH

#include <math.h>
#include "cuda_common.h" // defines: floatX, to_float, from_float, warp_reduce_sum/max, ceil_div, cudaCheck
#include "matmul.cuh"    // defines: cublas_handle, CUBLAS_COMPUTE

// ----------------------------------------------------------------------------
// kernels

// qkv (B,T,3,NH,HS) -> q, k, v (B,NH,T,HS)
__global__ void permute_kernel(floatX *q, floatX *k, floatX *v, const floatX *qkv, int B, int T, int NH, int HS) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T * HS) { return; }
    int d = idx % HS, t = (idx / HS) % T, h = (idx / ((size_t)HS * T)) % NH, b = (int)(idx / ((size_t)HS * T * NH));
    int C = NH * HS;
    size_t src = ((size_t)b * T + t) * 3 * C + h * HS + d;
    q[idx] = qkv[src];
    k[idx] = qkv[src + C];
    v[idx] = qkv[src + 2 * C];
}

// the reverse: dq, dk, dv (B,NH,T,HS) -> dqkv (B,T,3,NH,HS), overwritten
__global__ void permute_backward_kernel(floatX *dqkv, const floatX *dq, const floatX *dk, const floatX *dv, int B,
                                        int T, int NH, int HS) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T * HS) { return; }
    int d = idx % HS, t = (idx / HS) % T, h = (idx / ((size_t)HS * T)) % NH, b = (int)(idx / ((size_t)HS * T * NH));
    int C = NH * HS;
    size_t dst = ((size_t)b * T + t) * 3 * C + h * HS + d;
    dqkv[dst] = dq[idx];
    dqkv[dst + C] = dk[idx];
    dqkv[dst + 2 * C] = dv[idx];
}

// y (B,NH,T,HS) -> out (B,T,NH,HS) = (B,T,C); backward = 1 does the reverse (out -> y)
__global__ void unpermute_kernel(floatX *out, floatX *y, int B, int T, int NH, int HS, int backward) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * T * HS) { return; }
    int d = idx % HS, t = (idx / HS) % T, h = (idx / ((size_t)HS * T)) % NH, b = (int)(idx / ((size_t)HS * T * NH));
    size_t o = ((size_t)b * T + t) * NH * HS + h * HS + d;
    if (backward) { y[idx] = out[o]; } else { out[o] = y[idx]; }
}

// att[row] = softmax(scale * preatt[row]) over positions 0..t, zeros after t
// (rows are (b, h, t), each of length T); one warp per row
__global__ void softmax_forward_kernel(floatX *att, const floatX *preatt, int rows, int T, float scale) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) { return; }
    int t = row % T;
    const floatX *p = preatt + (size_t)row * T;
    floatX *a = att + (size_t)row * T;
    float maxval = -1e30f;
    for (int t2 = lane; t2 <= t; t2 += 32) { maxval = fmaxf(maxval, scale * to_float(p[t2])); }
    maxval = warp_reduce_max(maxval);
    float sum = 0.0f;
    for (int t2 = lane; t2 <= t; t2 += 32) { sum += expf(scale * to_float(p[t2]) - maxval); }
    sum = warp_reduce_sum(sum);
    float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
    for (int t2 = lane; t2 < T; t2 += 32) {
        a[t2] = from_float<floatX>(t2 <= t ? expf(scale * to_float(p[t2]) - maxval) * inv : 0.0f);
    }
}

// dpreatt = scale * att * (datt - sum(att * datt)) over 0..t, zeros after t;
// in place (dpreatt may be datt: each lane reads then writes only its own positions)
__global__ void softmax_backward_kernel(floatX *dpreatt, const floatX *datt, const floatX *att, int rows, int T,
                                        float scale) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) { return; }
    int t = row % T;
    const floatX *a = att + (size_t)row * T, *da = datt + (size_t)row * T;
    float dot = 0.0f;
    for (int t2 = lane; t2 <= t; t2 += 32) { dot += to_float(a[t2]) * to_float(da[t2]); }
    dot = warp_reduce_sum(dot);
    floatX *dp = dpreatt + (size_t)row * T;
    for (int t2 = lane; t2 < T; t2 += 32) {
        float v = t2 <= t ? scale * to_float(a[t2]) * (to_float(da[t2]) - dot) : 0.0f;
        dp[t2] = from_float<floatX>(v);
    }
}

// ----------------------------------------------------------------------------
// launchers

// out (B,T,C) = causal self-attention of qkv (B,T,3C); att (B,NH,T,T) keeps the probabilities
static inline void attention_forward(floatX *out, floatX *att, floatX *qkvr, floatX *preatt, floatX *vaccum,
                                     const floatX *qkv, int B, int T, int C, int NH) {
    int HS = C / NH;
    size_t n = (size_t)B * NH * T * HS;
    floatX *q = qkvr, *k = q + n, *v = k + n;
    permute_kernel<<<ceil_div((long long)n, 256), 256>>>(q, k, v, qkv, B, T, NH, HS);
    cudaCheck(cudaGetLastError());
    const float one = 1.0f, zero = 0.0f;
    // preatt (T,T) = q (T,HS) . k^T per (b,h); column-major: preatt^T = k . q^T
    cublasCheck(cublasGemmStridedBatchedEx(cublas_handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, &one, k, CUBLAS_FLOATX,
                                           HS, (long long)T * HS, q, CUBLAS_FLOATX, HS, (long long)T * HS, &zero,
                                           preatt, CUBLAS_FLOATX, T, (long long)T * T, B * NH, CUBLAS_COMPUTE,
                                           CUBLAS_GEMM_DEFAULT));
    softmax_forward_kernel<<<ceil_div(B * NH * T, 8), 256>>>(att, preatt, B * NH * T, T,
                                                             1.0f / sqrtf((float)HS));
    cudaCheck(cudaGetLastError());
    // y (T,HS) = att (T,T) . v (T,HS); column-major: y^T = v^T . att^T
    cublasCheck(cublasGemmStridedBatchedEx(cublas_handle, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, &one, v, CUBLAS_FLOATX,
                                           HS, (long long)T * HS, att, CUBLAS_FLOATX, T, (long long)T * T, &zero,
                                           vaccum, CUBLAS_FLOATX, HS, (long long)T * HS, B * NH,
                                           CUBLAS_COMPUTE, CUBLAS_GEMM_DEFAULT));
    unpermute_kernel<<<ceil_div((long long)n, 256), 256>>>(out, vaccum, B, T, NH, HS, 0);
    cudaCheck(cudaGetLastError());
}

// dqkv (B,T,3C) (overwritten) from dout (B,T,C), the forward's qkv and att
static inline void attention_backward(floatX *dqkv, floatX *dqkvr, floatX *qkvr, floatX *preatt, floatX *vaccum,
                                      const floatX *dout, const floatX *qkv, const floatX *att, int B, int T, int C,
                                      int NH) {
    int HS = C / NH;
    size_t n = (size_t)B * NH * T * HS;
    floatX *q = qkvr, *k = q + n, *v = k + n;
    floatX *dq = dqkvr, *dk = dq + n, *dv = dk + n;
    floatX *dy = vaccum, *datt = preatt;
    const float one = 1.0f, zero = 0.0f;
    permute_kernel<<<ceil_div((long long)n, 256), 256>>>(q, k, v, qkv, B, T, NH, HS);
    cudaCheck(cudaGetLastError());
    unpermute_kernel<<<ceil_div((long long)n, 256), 256>>>((floatX *)dout, dy, B, T, NH, HS, 1);
    cudaCheck(cudaGetLastError());
    // datt (T,T) = dy (T,HS) . v^T
    cublasCheck(cublasGemmStridedBatchedEx(cublas_handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, &one, v, CUBLAS_FLOATX,
                                           HS, (long long)T * HS, dy, CUBLAS_FLOATX, HS, (long long)T * HS, &zero,
                                           datt, CUBLAS_FLOATX, T, (long long)T * T, B * NH, CUBLAS_COMPUTE,
                                           CUBLAS_GEMM_DEFAULT));
    // dv (T,HS) = att^T (T,T) . dy (T,HS); column-major: dv^T = dy^T . att
    cublasCheck(cublasGemmStridedBatchedEx(cublas_handle, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, &one, dy, CUBLAS_FLOATX,
                                           HS, (long long)T * HS, att, CUBLAS_FLOATX, T, (long long)T * T, &zero, dv,
                                           CUBLAS_FLOATX, HS, (long long)T * HS, B * NH, CUBLAS_COMPUTE,
                                           CUBLAS_GEMM_DEFAULT));
    // through the softmax, scale included: dpreatt in place of datt
    softmax_backward_kernel<<<ceil_div(B * NH * T, 8), 256>>>(datt, datt, att, B * NH * T, T, 1.0f / sqrtf((float)HS));
    cudaCheck(cudaGetLastError());
    // dq (T,HS) = dpreatt (T,T) . k (T,HS); column-major: dq^T = k^T . dpreatt^T
    cublasCheck(cublasGemmStridedBatchedEx(cublas_handle, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, &one, k, CUBLAS_FLOATX,
                                           HS, (long long)T * HS, datt, CUBLAS_FLOATX, T, (long long)T * T, &zero, dq,
                                           CUBLAS_FLOATX, HS, (long long)T * HS, B * NH, CUBLAS_COMPUTE,
                                           CUBLAS_GEMM_DEFAULT));
    // dk (T,HS) = dpreatt^T (T,T) . q (T,HS); column-major: dk^T = q^T . dpreatt
    cublasCheck(cublasGemmStridedBatchedEx(cublas_handle, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, &one, q, CUBLAS_FLOATX,
                                           HS, (long long)T * HS, datt, CUBLAS_FLOATX, T, (long long)T * T, &zero, dk,
                                           CUBLAS_FLOATX, HS, (long long)T * HS, B * NH, CUBLAS_COMPUTE,
                                           CUBLAS_GEMM_DEFAULT));
    permute_backward_kernel<<<ceil_div((long long)n, 256), 256>>>(dqkv, dq, dk, dv, B, T, NH, HS);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_ATTENTION_CUH
