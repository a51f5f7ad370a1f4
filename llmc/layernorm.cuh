/*
 llmc/layernorm.cuh: GPT-2's LayerNorm (pre-LN, with weight and bias, full precision).
 Spec: layernorm_forward and layernorm_backward in train_gpt2_1bit.c.

   forward:  out (N,C) = (inp - mean) * rstd * weight + bias; mean, rstd (N) kept for backward
   backward: dinp (N,C) += d/dinp; dweight (C), dbias (C) += column sums, in a fixed order
 One warp per row (8 rows in a block of 256 threads); eps = 1e-5 as GPT-2.
*/
#ifndef LLMC_LAYERNORM_CUH
#define LLMC_LAYERNORM_CUH

#include "cuda_common.h" // defines: floatX, to_float, from_float, warp_reduce_sum, ceil_div, cudaCheck
#include "colsum.cuh"    // defines: colsum_finalize_kernel, COLSUM_ROWS

// ----------------------------------------------------------------------------
// kernels

// one warp per row: inp, out (N,C); mean, rstd (N) kept for the backward pass
__global__ void layernorm_forward_kernel(floatX *out, float *mean, float *rstd, const floatX *inp,
                                         const float *weight, const float *bias, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) { return; }
    const floatX *x = inp + (size_t)row * C;
    float sum = 0.0f;
    for (int i = lane; i < C; i += 32) { sum += to_float(x[i]); }
    float m = warp_reduce_sum(sum) / C;
    float var = 0.0f;
    for (int i = lane; i < C; i += 32) { float d = to_float(x[i]) - m; var += d * d; }
    float s = 1.0f / sqrtf(warp_reduce_sum(var) / C + 1e-5f);
    floatX *o = out + (size_t)row * C;
    for (int i = lane; i < C; i += 32) { o[i] = from_float<floatX>((s * (to_float(x[i]) - m)) * weight[i] + bias[i]); }
    if (lane == 0) { mean[row] = m; rstd[row] = s; }
}

// dinp += d(LayerNorm)/dinp; one warp per row (the weight and bias gradients
// are the column sums of layernorm_param_partial_kernel)
__global__ void layernorm_backward_kernel(floatX *dinp, const floatX *dout, const floatX *inp, const float *weight,
                                          const float *mean, const float *rstd, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) { return; }
    const floatX *dout_n = dout + (size_t)row * C, *inp_n = inp + (size_t)row * C;
    floatX *dinp_n = dinp + (size_t)row * C;
    float m = mean[row], s = rstd[row];
    // two reductions: mean(dnorm) and mean(dnorm * norm)
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float norm_i = (to_float(inp_n[i]) - m) * s, dnorm_i = weight[i] * to_float(dout_n[i]);
        dnorm_mean += dnorm_i;
        dnorm_norm_mean += dnorm_i * norm_i;
    }
    dnorm_mean = warp_reduce_sum(dnorm_mean) / C;
    dnorm_norm_mean = warp_reduce_sum(dnorm_norm_mean) / C;
    for (int i = lane; i < C; i += 32) {
        float norm_i = (to_float(inp_n[i]) - m) * s, dnorm_i = weight[i] * to_float(dout_n[i]);
        float d = (dnorm_i - dnorm_mean - norm_i * dnorm_norm_mean) * s;
        dinp_n[i] = from_float<floatX>(to_float(dinp_n[i]) + d);
    }
}

// the column sums of the LayerNorm parameter gradients, stage 1:
// pw[chunk, i] = sum norm_i * dout_i, pb[chunk, i] = sum dout_i over the chunk's rows
__global__ void layernorm_param_partial_kernel(float *pw, float *pb, const floatX *dout, const floatX *inp,
                                               const float *mean, const float *rstd, int N, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (i >= C) { return; }
    int r0 = chunk * COLSUM_ROWS, r1 = min(N, r0 + COLSUM_ROWS);
    float sw = 0.0f, sb = 0.0f;
    for (int r = r0; r < r1; r++) {
        float d = to_float(dout[(size_t)r * C + i]);
        sw += (to_float(inp[(size_t)r * C + i]) - mean[r]) * rstd[r] * d;
        sb += d;
    }
    pw[(size_t)chunk * C + i] = sw;
    pb[(size_t)chunk * C + i] = sb;
}

// ----------------------------------------------------------------------------
// launchers

static inline void layernorm_forward(floatX *out, float *mean, float *rstd, const floatX *inp, const float *weight,
                                     const float *bias, int N, int C) {
    layernorm_forward_kernel<<<ceil_div(N, 8), 256>>>(out, mean, rstd, inp, weight, bias, N, C);
    cudaCheck(cudaGetLastError());
}

// partial holds 2 * ceil(N / COLSUM_ROWS) * C floats (the weight's and the bias's chunk sums)
static inline void layernorm_backward(floatX *dinp, float *dweight, float *dbias, float *partial, const floatX *dout,
                                      const floatX *inp, const float *weight, const float *mean, const float *rstd,
                                      int N, int C) {
    int nchunks = ceil_div(N, COLSUM_ROWS);
    float *pw = partial, *pb = partial + (size_t)nchunks * C;
    layernorm_backward_kernel<<<ceil_div(N, 8), 256>>>(dinp, dout, inp, weight, mean, rstd, N, C);
    cudaCheck(cudaGetLastError());
    layernorm_param_partial_kernel<<<dim3(ceil_div(C, 256), nchunks), 256>>>(pw, pb, dout, inp, mean, rstd, N, C);
    cudaCheck(cudaGetLastError());
    colsum_finalize_kernel<<<ceil_div((long long)C, 256), 256>>>(dweight, pw, nchunks, C);
    cudaCheck(cudaGetLastError());
    colsum_finalize_kernel<<<ceil_div((long long)C, 256), 256>>>(dbias, pb, nchunks, C);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_LAYERNORM_CUH
