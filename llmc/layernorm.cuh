/*
 llmc/layernorm.cuh: GPT-2's LayerNorm (pre-LN, with weight and bias, full precision).
 Spec: layernorm_forward and layernorm_backward in train_gpt2_1bit.c.

   forward:  out (N,C) = (inp - mean) * rstd * weight + bias; mean, rstd (N) kept for backward
   fused:    residual (N,C) = inp1 + inp2, then the forward of residual (residual_forward +
             layernorm_forward in one kernel: the residual add before each of GPT-2's LayerNorms)
   backward: dinp (N,C) += d/dinp; dweight (C), dbias (C) += column sums, in a fixed order
 One warp per row (8 rows in a block of 256 threads); eps = 1e-5 as GPT-2. The forwards use
 128-bit accesses (x128) where the rows are whole vectors and aligned.
*/
#ifndef LLMC_LAYERNORM_CUH
#define LLMC_LAYERNORM_CUH

#include "cuda_common.h" // defines: floatX, x128, f128, load128, store128, warp_reduce_sum, ceil_div, cudaCheck
#include "colsum.cuh"    // defines: colsum_finalize_kernel, COLSUM_ROWS

// ----------------------------------------------------------------------------
// kernels

// The forward of one row x (C) by one warp, from lane_sum (this lane's part of the row's sum):
// mean, the squared deviations (a second read of the row, from L1/L2), then the output (a third).
// vec: lane takes the x128 vectors lane, lane + 32, ... of the row (and of weight and bias, as
// f128); else the values lane, lane + 32, ...; the caller's lane_sum took the same ones.
__device__ static inline void layernorm_row_forward(floatX *o, float *mean, float *rstd, const floatX *x,
                                                    const float *weight, const float *bias, float lane_sum, int C,
                                                    int vec) {
    int lane = threadIdx.x % 32;
    float m = warp_reduce_sum(lane_sum) / C;
    float var = 0.0f;
    if (vec) {
        for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
            x128 v = load128(x + c);
            for (int k = 0; k < x128::size; k++) { float d = to_float(v[k]) - m; var += d * d; }
        }
    } else {
        for (int i = lane; i < C; i += 32) { float d = to_float(x[i]) - m; var += d * d; }
    }
    float s = 1.0f / sqrtf(warp_reduce_sum(var) / C + 1e-5f);
    if (vec) {
        for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
            x128 v = load128(x + c), out;
            for (int k = 0; k < x128::size; k += f128::size) {
                f128 w = load128(weight + c + k), b = load128(bias + c + k);
                for (int j = 0; j < f128::size; j++) {
                    out[k + j] = from_float<floatX>((s * (to_float(v[k + j]) - m)) * w[j] + b[j]);
                }
            }
            store128(o + c, out);
        }
    } else {
        for (int i = lane; i < C; i += 32) { o[i] = from_float<floatX>((s * (to_float(x[i]) - m)) * weight[i] + bias[i]); }
    }
    if (lane == 0) { *mean = m; *rstd = s; }
}

// one warp per row: inp, out (N,C); mean, rstd (N) kept for the backward pass
__global__ void layernorm_forward_kernel(floatX *out, float *mean, float *rstd, const floatX *inp,
                                         const float *weight, const float *bias, int N, int C, int vec) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) { return; }
    const floatX *x = inp + (size_t)row * C;
    float sum = 0.0f;
    if (vec) {
        for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
            x128 v = load128(x + c);
            for (int k = 0; k < x128::size; k++) { sum += to_float(v[k]); }
        }
    } else {
        for (int i = lane; i < C; i += 32) { sum += to_float(x[i]); }
    }
    layernorm_row_forward(out + (size_t)row * C, mean + row, rstd + row, x, weight, bias, sum, C, vec);
}

// residual = inp1 + inp2 (rounded to floatX, as residual_forward stores it) and out = LayerNorm
// of that residual, in one kernel: the residual's row is summed as it is written, then read back
// (L1/L2) by the same lanes. Replaces residual_forward + layernorm_forward: one launch, and the
// residual is not read back from DRAM. One warp per row; the same bits as the two kernels.
__global__ void fused_residual_layernorm_forward_kernel(floatX *residual, floatX *out, float *mean, float *rstd,
                                                        const floatX *inp1, const floatX *inp2, const float *weight,
                                                        const float *bias, int N, int C, int vec) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) { return; }
    size_t off = (size_t)row * C;
    float sum = 0.0f;
    if (vec) {
        for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
            x128 a = load128(inp1 + off + c), b = load128(inp2 + off + c), r;
            for (int k = 0; k < x128::size; k++) {
                r[k] = from_float<floatX>(to_float(a[k]) + to_float(b[k]));
                sum += to_float(r[k]);
            }
            store128(residual + off + c, r);
        }
    } else {
        for (int i = lane; i < C; i += 32) {
            floatX r = from_float<floatX>(to_float(inp1[off + i]) + to_float(inp2[off + i]));
            residual[off + i] = r;
            sum += to_float(r);
        }
    }
    // each lane reads back only what it wrote (the same vectors or values): program order suffices
    layernorm_row_forward(out + off, mean + row, rstd + row, residual + off, weight, bias, sum, C, vec);
}

// dinp += d(LayerNorm)/dinp; one warp per row (the weight and bias gradients
// are the column sums of layernorm_param_partial_kernel). Two reads of the row: the two means,
// then the gradient (the second from L1/L2, as in the forward). vec: 128-bit accesses, lane
// taking the vectors lane, lane + 32, ... (f128 for the weight); else the values lane, lane + 32, ...
__global__ void layernorm_backward_kernel(floatX *dinp, const floatX *dout, const floatX *inp, const float *weight,
                                          const float *mean, const float *rstd, int N, int C, int vec) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) { return; }
    const floatX *dout_n = dout + (size_t)row * C, *inp_n = inp + (size_t)row * C;
    floatX *dinp_n = dinp + (size_t)row * C;
    float m = mean[row], s = rstd[row];
    // two reductions: mean(dnorm) and mean(dnorm * norm), dnorm = weight * dout
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    if (vec) {
        for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
            x128 d = load128(dout_n + c), x = load128(inp_n + c);
            for (int k = 0; k < x128::size; k += f128::size) {
                f128 w = load128(weight + c + k);
                for (int j = 0; j < f128::size; j++) {
                    float norm = (to_float(x[k + j]) - m) * s, dnorm = w[j] * to_float(d[k + j]);
                    dnorm_mean += dnorm;
                    dnorm_norm_mean += dnorm * norm;
                }
            }
        }
    } else {
        for (int i = lane; i < C; i += 32) {
            float norm = (to_float(inp_n[i]) - m) * s, dnorm = weight[i] * to_float(dout_n[i]);
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
    }
    dnorm_mean = warp_reduce_sum(dnorm_mean) / C;
    dnorm_norm_mean = warp_reduce_sum(dnorm_norm_mean) / C;
    // dinp_i += (dnorm_i - mean(dnorm) - norm_i * mean(dnorm * norm)) * rstd
    if (vec) {
        for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
            x128 d = load128(dout_n + c), x = load128(inp_n + c), g = load128(dinp_n + c);
            for (int k = 0; k < x128::size; k += f128::size) {
                f128 w = load128(weight + c + k);
                for (int j = 0; j < f128::size; j++) {
                    float norm = (to_float(x[k + j]) - m) * s, dnorm = w[j] * to_float(d[k + j]);
                    g[k + j] = from_float<floatX>(to_float(g[k + j]) + (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s);
                }
            }
            store128(dinp_n + c, g);
        }
    } else {
        for (int i = lane; i < C; i += 32) {
            float norm = (to_float(inp_n[i]) - m) * s, dnorm = weight[i] * to_float(dout_n[i]);
            dinp_n[i] = from_float<floatX>(to_float(dinp_n[i]) + (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s);
        }
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

// 128-bit accesses: rows of whole vectors (C a multiple of x128::size, so of f128::size too),
// every array starting 16-byte aligned
static inline int layernorm_vec(int C, const void *a, const void *b, const void *c, const void *d, const void *e) {
    return C % x128::size == 0 && is_aligned128(a) && is_aligned128(b) && is_aligned128(c) && is_aligned128(d) &&
           is_aligned128(e);
}

static inline void layernorm_forward(floatX *out, float *mean, float *rstd, const floatX *inp, const float *weight,
                                     const float *bias, int N, int C) {
    int vec = layernorm_vec(C, out, inp, weight, bias, inp);
    layernorm_forward_kernel<<<ceil_div(N, 8), 256>>>(out, mean, rstd, inp, weight, bias, N, C, vec);
    cudaCheck(cudaGetLastError());
}

// residual (N,C) = inp1 + inp2, out (N,C) = layernorm(residual); mean, rstd (N) as layernorm_forward
static inline void fused_residual_layernorm_forward(floatX *residual, floatX *out, float *mean, float *rstd,
                                                    const floatX *inp1, const floatX *inp2, const float *weight,
                                                    const float *bias, int N, int C) {
    int vec = layernorm_vec(C, residual, out, inp1, inp2, weight) && is_aligned128(bias);
    fused_residual_layernorm_forward_kernel<<<ceil_div(N, 8), 256>>>(residual, out, mean, rstd, inp1, inp2, weight,
                                                                      bias, N, C, vec);
    cudaCheck(cudaGetLastError());
}

// partial holds 2 * ceil(N / COLSUM_ROWS) * C floats (the weight's and the bias's chunk sums)
static inline void layernorm_backward(floatX *dinp, float *dweight, float *dbias, float *partial, const floatX *dout,
                                      const floatX *inp, const float *weight, const float *mean, const float *rstd,
                                      int N, int C) {
    int nchunks = ceil_div(N, COLSUM_ROWS);
    float *pw = partial, *pb = partial + (size_t)nchunks * C;
    int vec = layernorm_vec(C, dinp, dout, inp, weight, dinp);
    layernorm_backward_kernel<<<ceil_div(N, 8), 256>>>(dinp, dout, inp, weight, mean, rstd, N, C, vec);
    cudaCheck(cudaGetLastError());
    layernorm_param_partial_kernel<<<dim3(ceil_div(C, 256), nchunks), 256>>>(pw, pb, dout, inp, mean, rstd, N, C);
    cudaCheck(cudaGetLastError());
    colsum_finalize_kernel<<<ceil_div((long long)C, 256), 256>>>(dweight, pw, nchunks, C);
    cudaCheck(cudaGetLastError());
    colsum_finalize_kernel<<<ceil_div((long long)C, 256), 256>>>(dbias, pb, nchunks, C);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_LAYERNORM_CUH
