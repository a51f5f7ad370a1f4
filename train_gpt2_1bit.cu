/*
 train_gpt2_1bit.cu: train a 1-bit (ternary, BitNet b1.58) GPT-2 on one GPU.

 The CUDA twin of train_gpt2_1bit.c: the same model, parameter layout, flags,
 checkpoint files and quantizer definitions (all from llmc/), so a checkpoint
 moves freely between the two and the CPU file is the oracle this one is
 tested against (tests/test_gpt2_1bit.cu).

 Build and run (trains a small model on tiny Shakespeare):
   make train_gpt2_1bitcu && ./train_gpt2_1bitcu
   make train_gpt2_1bitcu PRECISION=FP32     activations in fp32, for tests
 Every flag with its default: ./train_gpt2_1bitcu -h

 Precision: the latent (master) weights, their gradients and the AdamW moments
 are fp32. Activations and matmul inputs are floatX (bf16 by default, fp32
 with PRECISION=FP32); cuBLAS accumulates in fp32. The forward BitLinear in
 the b1.58 mode is exact integer arithmetic on the tensor cores: int8
 activation codes times trits stored as int8, summed in int32 by cuBLAS, then
 scaled once by gamma / s_x (BitNet b1.58's inference form). The backward
 runs in floatX through cuBLAS, with the straight-through estimator.

 Every reduction that feeds the loss or the weights (LayerNorm and bias
 gradients, embedding gradients, the gradient norm, the weight scales) is done
 in a fixed order, so the same inputs give bit-identical results run after run:
 that is what makes resume exact and the determinism test possible.

 Attention is the plain cuBLAS form (scores, softmax, weighted sum; the
 (T,T) probabilities are kept per layer): simple and checked, not fused.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include "llmc/cuda_common.h" // defines: cudaCheck, cublasCheck, cudaMallocCheck, floatX, block_reduce_sum
#include "llmc/utils.h"       // defines: fopenCheck, freadCheck, mallocCheck, ensure_writable_dir, now_seconds
#include "llmc/gpt2_config.h" // defines: GPT2Config, QuantConfig, ParameterTensors, fill_in_parameter_sizes
#include "llmc/ternary.h"     // defines: TERNARY_EPS, RMSNORM_EPS (the spec the kernels below restate)
#include "llmc/checkpoint.h"  // defines: model_file_open, checkpoint_write, checkpoint_read_state
#include "llmc/dataloader.h"  // defines: DataLoader, dataloaders_open, dataloader_next_batch
#include "llmc/tokenizer.h"   // defines: Tokenizer, tokenizer_init, tokenizer_print
#include "llmc/sampler.h"     // defines: random_f32, sample_logits
#include "llmc/schedulers.h"  // defines: Schedule, schedule_lr, schedule_wd
#include "llmc/logger.h"      // defines: Logger, logger_log_train, logger_log_val
#include "llmc/args.h"        // defines: TrainArgs, train_args_parse, train_args_validate
#include "llmc/hellaswag.h"   // defines: EvalLoader, evalloader_init, evalloader_accuracy, HELLASWAG_PATH
#include "llmc/trit_stats.h"  // defines: TritStats, trit_stats_compute, trit_stats_print, bitlinear_trit_offsets

static cublasHandle_t cublas_handle;
// fp32 accumulation in every float matmul; with fp32 operands cuBLAS's default
// math mode does not use TF32, so the fp32 build computes plain fp32 products
static const cublasComputeType_t CUBLAS_COMPUTE = CUBLAS_COMPUTE_32F;

// ----------------------------------------------------------------------------
// encoder: token + position embeddings

// out (B,T,C) = wte[inp[b,t]] + wpe[t], from the fp32 weights (one rounding, not three)
__global__ void encoder_forward_kernel(floatX *out, const int *inp, const float *wte, const float *wpe,
                                       int BT, int T, int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)BT * C) { return; }
    int bt = (int)(idx / C), c = (int)(idx % C), t = bt % T;
    out[idx] = from_float<floatX>(wte[(size_t)inp[bt] * C + c] + wpe[(size_t)t * C + c]);
}

// dwte[token] += the sum of dout over the positions holding that token. The
// positions are bucketed by token on the host (bucket_start, bucket_pos), so
// each token's row is summed by one block in a fixed order: no atomics.
__global__ void encoder_backward_wte_kernel(float *dwte, const floatX *dout, const int *bucket_token,
                                            const int *bucket_start, const int *bucket_pos, int C) {
    int b = blockIdx.x;
    int token = bucket_token[b], start = bucket_start[b], end = bucket_start[b + 1];
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float sum = 0.0f;
        for (int i = start; i < end; i++) { sum += to_float(dout[(size_t)bucket_pos[i] * C + c]); }
        dwte[(size_t)token * C + c] += sum;
    }
}

// dwpe[t] += sum over b of dout[b,t]
__global__ void encoder_backward_wpe_kernel(float *dwpe, const floatX *dout, int B, int T, int C) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= T * C) { return; }
    float sum = 0.0f;
    for (int b = 0; b < B; b++) { sum += to_float(dout[(size_t)b * T * C + idx]); }
    dwpe[idx] += sum;
}

// ----------------------------------------------------------------------------
// column sums in a fixed order: bias gradients and LayerNorm weight gradients
// Stage 1 sums rows in chunks of COLSUM_ROWS into partial (nchunks, n); stage 2
// adds the chunks in order into the fp32 gradient. Threads of a block take
// consecutive columns, so every row read is coalesced.

#define COLSUM_ROWS 256
// partial[chunk, j] = sum over the chunk's rows of dout[row, j]; dout (N, n)
__global__ void colsum_partial_kernel(float *partial, const floatX *dout, int N, int n) {
    int j = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (j >= n) { return; }
    int r0 = chunk * COLSUM_ROWS, r1 = min(N, r0 + COLSUM_ROWS);
    float sum = 0.0f;
    for (int r = r0; r < r1; r++) { sum += to_float(dout[(size_t)r * n + j]); }
    partial[(size_t)chunk * n + j] = sum;
}

// out[j] += sum over chunks of partial[chunk, j]
__global__ void colsum_finalize_kernel(float *out, const float *partial, int nchunks, int n) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) { return; }
    float sum = 0.0f;
    for (int c = 0; c < nchunks; c++) { sum += partial[(size_t)c * n + j]; }
    out[j] += sum;
}

// ----------------------------------------------------------------------------
// LayerNorm (GPT-2's pre-LN, with weight and bias, full precision)

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
// BitLinear, part 1: the weights, quantized once per step (llmc/ternary.h is the spec)
// ternary (b1.58 eq. 1-3): gamma = max(mean|W|, eps); W_q = clamp(round(W / gamma), -1, 1) * gamma
// binary (BitNet eq. 2-4): alpha = mean(W), beta = max(mean|W|, eps); W_b = sign(W - alpha) * beta

#define QUANT_BLOCKS 32 // blocks per tensor in the absmean reduction (stage 1), 256 threads each

// stage 1: for each tensor l (blockIdx.y) of one kind (L tensors of n values,
// back to back in w), block b sums |w| and w over its slice into partials. In double, as the
// CPU's absmean_scale sums: gamma is then the CPU's to within a rounding of the last step, and a
// weight near a rounding boundary (|w| / gamma near 0.5) gets the same trit on both
__global__ void weight_sums_partial_kernel(double *pabs, double *psum, const float *w, size_t n) {
    __shared__ double shared[32];
    int l = blockIdx.y, b = blockIdx.x;
    const float *wl = w + (size_t)l * n;
    size_t per = (n + gridDim.x - 1) / gridDim.x, i0 = (size_t)b * per, i1 = min(n, i0 + per);
    double sa = 0.0, ss = 0.0;
    for (size_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) { sa += fabsf(wl[i]); ss += wl[i]; }
    sa = block_reduce_sum(sa, shared);
    ss = block_reduce_sum(ss, shared);
    if (threadIdx.x == 0) { pabs[l * gridDim.x + b] = sa; psum[l * gridDim.x + b] = ss; }
}

// stage 2: one thread per tensor adds its partials in order, in double, into
// scales[l*4 + k] and centres[l*4 + k]
__global__ void weight_scales_kernel(float *scales, float *centres, const double *pabs, const double *psum, int L,
                                     int k, int nblocks, size_t n) {
    int l = blockIdx.x * blockDim.x + threadIdx.x;
    if (l >= L) { return; }
    double sa = 0.0, ss = 0.0;
    for (int b = 0; b < nblocks; b++) { sa += pabs[l * nblocks + b]; ss += psum[l * nblocks + b]; }
    float gamma = (float)(sa / (double)n);
    scales[l * 4 + k] = gamma > TERNARY_EPS ? gamma : TERNARY_EPS;
    centres[l * 4 + k] = (float)(ss / (double)n);
}

// stage 3: every weight to its trit (int8, for the integer forward and the
// diagnostics) and to W_q in floatX (for the float forward and the backward)
__global__ void weight_quantize_kernel(int8_t *trits, floatX *wq, const float *w, const float *scales,
                                       const float *centres, int k, size_t n, size_t total, int binary) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) { return; }
    int l = (int)(idx / n);
    float gamma = scales[l * 4 + k], wv = w[idx];
    int8_t t;
    if (binary) {
        t = (wv - centres[l * 4 + k]) >= 0.0f ? 1 : -1; // sign(0) = +1
    } else {
        float r = rintf(wv / gamma); // round half to even, as rintf in llmc/ternary.h
        r = r > 1.0f ? 1.0f : (r < -1.0f ? -1.0f : r);
        t = (int8_t)r;
    }
    trits[idx] = t;
    wq[idx] = from_float<floatX>(t * gamma);
}

// ----------------------------------------------------------------------------
// BitLinear, part 2: the input, fused: parameter-free RMSNorm then int8 per token
//   x_n = x / sqrt(mean(x^2) + eps)                                (inner norm)
//   s = 127 / max(max|x_n|, eps); code = clamp(round(x_n * s), -128, 127); x_q = code / s  (BitNet eq. 4)
// One warp per row. xq (N,IC) is what a float matmul sees; codes (N,IC) and
// inv_s (N) feed the integer matmul; rstd (N) is the 1/rms. With int8 activations, xq or
// codes and inv_s may be NULL: the integer forward needs only the codes, the backward only xq.

__global__ void rmsnorm_quant_kernel(floatX *xq, int8_t *codes, float *inv_s, float *rstd, const floatX *inp,
                                     int N, int IC, int inner_norm, int act_int8) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) { return; }
    const floatX *x = inp + (size_t)row * IC;
    float r = 1.0f;
    if (inner_norm) {
        float ss = 0.0f;
        for (int i = lane; i < IC; i += 32) { float v = to_float(x[i]); ss += v * v; }
        r = 1.0f / sqrtf(warp_reduce_sum(ss) / IC + RMSNORM_EPS);
    }
    if (lane == 0) { rstd[row] = r; }
    floatX *o = xq != NULL ? xq + (size_t)row * IC : NULL; // NULL only with act_int8
    if (!act_int8) {
        for (int i = lane; i < IC; i += 32) { o[i] = from_float<floatX>(to_float(x[i]) * r); }
        return;
    }
    float m = 0.0f;
    for (int i = lane; i < IC; i += 32) { m = fmaxf(m, fabsf(to_float(x[i]) * r)); }
    m = warp_reduce_max(m);
    float s = 127.0f / (m > TERNARY_EPS ? m : TERNARY_EPS);
    for (int i = lane; i < IC; i += 32) {
        float q = rintf(to_float(x[i]) * r * s);
        q = q > 127.0f ? 127.0f : (q < -128.0f ? -128.0f : q);
        if (xq != NULL) { o[i] = from_float<floatX>(q / s); }
        if (codes != NULL) { codes[(size_t)row * IC + i] = (int8_t)q; }
    }
    if (lane == 0 && inv_s != NULL) { inv_s[row] = 1.0f / s; }
}

// The backward of the inner norm, with x_n = x * r:
//   dx = r * (dx_n - x_n * mean(dx_n * x_n)); one warp per row, dinp overwritten
__global__ void rmsnorm_backward_kernel(floatX *dinp, const floatX *dxn, const floatX *inp, const float *rstd,
                                        int N, int IC) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) { return; }
    const floatX *x = inp + (size_t)row * IC, *d = dxn + (size_t)row * IC;
    float r = rstd[row], dot = 0.0f;
    for (int i = lane; i < IC; i += 32) { dot += to_float(d[i]) * to_float(x[i]) * r; }
    dot = warp_reduce_sum(dot) / IC;
    floatX *o = dinp + (size_t)row * IC;
    for (int i = lane; i < IC; i += 32) { o[i] = from_float<floatX>(r * (to_float(d[i]) - to_float(x[i]) * r * dot)); }
}

// The integer matmul's epilogue, the two scales applied once per output:
//   out[n, j] = acc[n, j] * (gamma * inv_s[n]) + bias[j]  with acc = codes . trits (exact int32)
__global__ void dequant_epilogue_kernel(floatX *out, const int32_t *acc, const float *inv_s, const float *scales,
                                        int scale_index, const float *bias, int N, int OC) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)N * OC) { return; }
    int n = (int)(idx / OC), j = (int)(idx % OC);
    float v = (float)acc[idx] * (scales[scale_index] * inv_s[n]);
    out[idx] = from_float<floatX>(bias != NULL ? v + bias[j] : v);
}

// out (N,OC) += bias (OC)
__global__ void add_bias_kernel(floatX *out, const float *bias, int N, int OC) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)N * OC) { return; }
    out[idx] = from_float<floatX>(to_float(out[idx]) + bias[idx % OC]);
}

// ----------------------------------------------------------------------------
// attention (full precision): q,k,v permuted to (B,NH,T,HS), scores by cuBLAS,
// causal softmax, weighted sum by cuBLAS, permuted back

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
// GELU (tanh approximation, as GPT-2), residual

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

__global__ void residual_forward_kernel(floatX *out, const floatX *inp1, const floatX *inp2, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    out[i] = from_float<floatX>(to_float(inp1[i]) + to_float(inp2[i]));
}

// ----------------------------------------------------------------------------
// the classifier: softmax + cross-entropy (+ its gradient, in place), one block per row
// loss = -log(softmax(logits)[target]); dlogits = (softmax - onehot(target)) * dloss

__global__ void classifier_kernel(floatX *logits, float *losses, const int *targets, int V, int Vp, float dloss,
                                  int write_dlogits) {
    __shared__ float shared[32];
    int row = blockIdx.x;
    floatX *l = logits + (size_t)row * Vp;
    float maxval = -1e30f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) { maxval = fmaxf(maxval, to_float(l[i])); }
    maxval = block_reduce_max(maxval, shared);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) { sum += expf(to_float(l[i]) - maxval); }
    sum = block_reduce_sum(sum, shared);
    int target = targets[row];
    float p_target = expf(to_float(l[target]) - maxval) / sum;
    __syncthreads(); // every thread has read l[target] before the row is overwritten
    if (threadIdx.x == 0) { losses[row] = -logf(p_target); }
    if (!write_dlogits) { return; }
    for (int i = threadIdx.x; i < Vp; i += blockDim.x) {
        float g = 0.0f;
        if (i < V) { g = (expf(to_float(l[i]) - maxval) / sum - (i == target ? 1.0f : 0.0f)) * dloss; }
        l[i] = from_float<floatX>(g);
    }
}

// ----------------------------------------------------------------------------
// optimizer: gradient norm (fixed-order reduction) and AdamW

// a fixed grid (the result must not depend on the GPU): about one block of 256 threads per SM
#define NORM_BLOCKS 128
__global__ void sumsq_partial_kernel(float *partial, const float *g, size_t n) {
    __shared__ float shared[32];
    float s = 0.0f;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        s += g[i] * g[i];
    }
    s = block_reduce_sum(s, shared);
    if (threadIdx.x == 0) { partial[blockIdx.x] = s; }
}

__global__ void sumsq_finalize_kernel(float *out, const float *partial, int n) {
    if (threadIdx.x != 0 || blockIdx.x != 0) { return; }
    double s = 0.0;
    for (int i = 0; i < n; i++) { s += partial[i]; }
    *out = (float)sqrt(s);
}

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

// ----------------------------------------------------------------------------
// launchers

#define LAUNCH(kernel, n_threads, block, ...)                                      \
    do {                                                                           \
        kernel<<<ceil_div((long long)(n_threads), (block)), (block)>>>(__VA_ARGS__); \
        cudaCheck(cudaGetLastError());                                             \
    } while (0)
// kernels with one warp per row: 8 rows per block of 256 threads
#define LAUNCH_ROWS(kernel, rows, ...)                                         \
    do {                                                                       \
        kernel<<<ceil_div((rows), 8), 256>>>(__VA_ARGS__);                     \
        cudaCheck(cudaGetLastError());                                         \
    } while (0)

// out (M,N) = inp (M,K) @ weight (N,K)^T (+ bias (N)), floatX in and out, fp32 accumulation.
// cuBLAS is column-major: the row-major out (M,N) is the column-major out^T (N,M) = weight . inp^T
static void matmul_forward(floatX *out, const floatX *inp, const floatX *weight, const float *bias, int M, int K,
                           int N) {
    const float one = 1.0f, zero = 0.0f;
    cublasCheck(cublasGemmEx(cublas_handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, weight, CUBLAS_FLOATX, K, inp,
                             CUBLAS_FLOATX, K, &zero, out, CUBLAS_FLOATX, N, CUBLAS_COMPUTE, CUBLAS_GEMM_DEFAULT));
    if (bias != NULL) { LAUNCH(add_bias_kernel, (size_t)M * N, 256, out, bias, M, N); }
}

// The backward of out = inp @ weight^T + bias with inp (M,K), weight (N,K), dout (M,N):
//   dinp (M,K) = dout @ weight            (overwritten; skipped when dinp is NULL)
//   dweight (N,K) += dout^T @ inp         (fp32, accumulated)
//   dbias (N) += column sums of dout      (fixed order; skipped when NULL)
// partial holds ceil(M / COLSUM_ROWS) * N floats.
static void matmul_backward(floatX *dinp, float *dweight, float *dbias, const floatX *dout, const floatX *inp,
                            const floatX *weight, int M, int K, int N, float *partial) {
    const float one = 1.0f, zero = 0.0f;
    if (dinp != NULL) { // column-major: dinp^T (K,M) = weight^T (K,N) . dout^T (N,M)
        cublasCheck(cublasGemmEx(cublas_handle, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, &one, weight, CUBLAS_FLOATX, K,
                                 dout, CUBLAS_FLOATX, N, &zero, dinp, CUBLAS_FLOATX, K, CUBLAS_COMPUTE,
                                 CUBLAS_GEMM_DEFAULT));
    }
    // column-major: dweight^T (K,N) += inp^T (K,M) . dout (M,N)
    cublasCheck(cublasGemmEx(cublas_handle, CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, &one, inp, CUBLAS_FLOATX, K, dout,
                             CUBLAS_FLOATX, N, &one, dweight, CUDA_R_32F, K, CUBLAS_COMPUTE, CUBLAS_GEMM_DEFAULT));
    if (dbias != NULL) {
        int nchunks = ceil_div(M, COLSUM_ROWS);
        colsum_partial_kernel<<<dim3(ceil_div(N, 256), nchunks), 256>>>(partial, dout, M, N);
        cudaCheck(cudaGetLastError());
        LAUNCH(colsum_finalize_kernel, N, 256, dbias, partial, nchunks, N);
    }
}

// acc (M,N) = codes (M,K) . trits (N,K)^T, exact in int32 on the tensor cores.
// cuBLAS's int8 GEMM wants the "TN" form, which is what row-major operands give,
// and K and N multiples of 4 (true for every GPT-2 shape: C is a multiple of 64).
static void matmul_i8(int32_t *acc, const int8_t *codes, const int8_t *trits, int M, int K, int N) {
    const int32_t one = 1, zero = 0;
    cublasCheck(cublasGemmEx(cublas_handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, trits, CUDA_R_8I, K, codes,
                             CUDA_R_8I, K, &zero, acc, CUDA_R_32I, N, CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT));
}

// ----------------------------------------------------------------------------
// the model: parameters and what the forward pass keeps

#define NUM_ACTS 19
typedef struct {
    floatX *encoded;   // (B,T,C)
    floatX *ln1;       // (L,B,T,C)
    float *ln1_mean;   // (L,B,T)
    float *ln1_rstd;   // (L,B,T)
    floatX *qkv;       // (L,B,T,3C)
    floatX *att;       // (L,B,NH,T,T) softmax probabilities
    floatX *atty;      // (L,B,T,C)
    floatX *residual2; // (L,B,T,C)
    floatX *ln2;       // (L,B,T,C)
    float *ln2_mean;   // (L,B,T)
    float *ln2_rstd;   // (L,B,T)
    floatX *fch;       // (L,B,T,4C)
    floatX *fch_gelu;  // (L,B,T,4C)
    floatX *residual3; // (L,B,T,C)
    floatX *lnf;       // (B,T,C)
    float *lnf_mean;   // (B,T)
    float *lnf_rstd;   // (B,T)
    floatX *logits;    // (B,T,Vp), turned into dlogits in place by a training forward
    float *losses;     // (B,T)
} ActivationTensors;
// The inputs of the BitLinear matmuls (normed, quantized) are not kept: the
// backward pass recomputes them from the saved inputs (ln1, atty, ln2,
// fch_gelu) with the same kernel, which gives the same bits.

typedef struct {
    GPT2Config config;
    QuantConfig quant;
    // latent fp32 weights, gradients, AdamW moments: one layout (llmc/gpt2_config.h)
    ParameterTensors params;
    size_t param_sizes[NUM_PARAMETER_TENSORS];
    size_t num_parameters;
    float *params_memory;     // device
    floatX *params_x;         // device: floatX copy the matmuls read (= params_memory in the fp32 build)
    float *grads_memory;      // device
    float *m_memory, *v_memory; // device
    float *params_host;       // host copy, for checkpoints
    // the quantized BitLinear weights, rebuilt after each update: W_q in floatX
    // and the trits, both laid out as llmc/trit_stats.h says; scales, centres (L*4)
    size_t wq_offset[NUM_BITLINEAR];
    size_t num_bitlinear_weights;
    floatX *wq;
    int8_t *trits;
    float *scales, *centres;
    double *qpartial_abs, *qpartial_sum;
    int wq_stale;
    int int8_forward;         // 1: BitLinear forward as int8 x int8 trits (int8 activations, ternary/binary weights)
                              // (set it before the first forward: it decides which scratch is allocated)
    int8_t *trits_host, *trits_prev_host; // for the diagnostics
    int have_trits_prev;
    // activations, sized for the first forward pass's (B,T)
    ActivationTensors acts;
    int batch_size, seq_len;
    // scratch shared by all layers
    floatX *xq;               // (B,T,4C) a BitLinear's matmul input
    int8_t *codes;            // (B,T,4C) its int8 codes
    float *inv_s, *rstd;      // (B,T)
    int32_t *acc;             // (B,T,4C) int32 products
    floatX *proj_out;         // (B,T,C) attproj / fcproj output before the residual add
    floatX *qkvr;             // (3,B,NH,T,HS) permuted q, k, v
    floatX *preatt;           // (B,NH,T,T) scores, and in the backward their gradient
    floatX *vaccum;           // (B,NH,T,HS)
    // backward scratch
    floatX *dresidual, *dbuf_c, *dbuf_3c, *dbuf_4c, *dxn, *dqkvr;
    float *partial;           // column-sum partials
    float *norm_partial, *norm_out;
    int *inputs, *targets;    // device (B,T)
    int *inputs_host;
    int *bucket_token, *bucket_start, *bucket_pos; // device: positions grouped by token, for encoder_backward
    int *bucket_host, *count_host;                 // host work arrays of the bucketing
    int num_buckets;
    float *losses_host;
    float mean_loss;          // -1 when the last forward pass had no targets
    int have_dlogits;         // 1 when the last forward pass left dlogits for gpt2_backward
    int last_B, last_T;       // the shape of the last forward pass
    float *logits_row_host;   // (Vp) for sampling
} GPT2;

static floatX *floatx_view(const GPT2 *model, const float *p) { // the floatX copy of a parameter
    return model->params_x + (p - model->params_memory);
}

static void gpt2_allocate(GPT2 *model) {
    GPT2Config *cfg = &model->config;
    if (cfg->num_layers > 64) {
        fprintf(stderr, "error: %d layers: this trainer supports at most 64\n", cfg->num_layers);
        exit(EXIT_FAILURE);
    }
    fill_in_parameter_sizes(model->param_sizes, cfg);
    model->num_parameters = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { model->num_parameters += model->param_sizes[i]; }
    size_t np = model->num_parameters;
    model->params_memory = (float *)cudaMallocCheck(np * sizeof(float), "parameters");
    point_parameters(&model->params, model->param_sizes, model->params_memory);
#ifdef ENABLE_FP32
    model->params_x = model->params_memory;
#else
    model->params_x = (floatX *)cudaMallocCheck(np * sizeof(floatX), "bf16 parameters");
#endif
    model->grads_memory = (float *)cudaMallocCheck(np * sizeof(float), "gradients");
    model->m_memory = (float *)cudaMallocCheck(np * sizeof(float), "AdamW m");
    model->v_memory = (float *)cudaMallocCheck(np * sizeof(float), "AdamW v");
    cudaCheck(cudaMemset(model->grads_memory, 0, np * sizeof(float)));
    cudaCheck(cudaMemset(model->m_memory, 0, np * sizeof(float)));
    cudaCheck(cudaMemset(model->v_memory, 0, np * sizeof(float)));
    model->params_host = (float *)mallocCheck(np * sizeof(float));
    model->num_bitlinear_weights = bitlinear_trit_offsets(model->wq_offset, cfg);
    model->wq = (floatX *)cudaMallocCheck(model->num_bitlinear_weights * sizeof(floatX), "quantized weights");
    model->trits = (int8_t *)cudaMallocCheck(model->num_bitlinear_weights, "trits");
    model->scales = (float *)cudaMallocCheck(64 * 4 * sizeof(float), "scales");
    model->centres = (float *)cudaMallocCheck(64 * 4 * sizeof(float), "centres");
    model->qpartial_abs = (double *)cudaMallocCheck(64 * QUANT_BLOCKS * sizeof(double), "scale partials");
    model->qpartial_sum = (double *)cudaMallocCheck(64 * QUANT_BLOCKS * sizeof(double), "scale partials");
    model->norm_partial = (float *)cudaMallocCheck(NORM_BLOCKS * sizeof(float), "norm partials");
    model->norm_out = (float *)cudaMallocCheck(sizeof(float), "norm");
    model->trits_host = (int8_t *)mallocCheck(model->num_bitlinear_weights);
    model->trits_prev_host = (int8_t *)callocCheck(model->num_bitlinear_weights, 1);
    model->have_trits_prev = 0;
    model->wq_stale = 1;
    // cuBLAS's int8 GEMM needs K and N multiples of 4: every BitLinear shape is a
    // multiple of C, so C % 4 == 0 (true of every dN descriptor); else the float path
    model->int8_forward = cfg->channels % 4 == 0;
    model->acts.encoded = NULL;
    model->batch_size = model->seq_len = 0;
    model->mean_loss = -1.0f;
    model->have_dlogits = 0;
}

// after the host copy of the parameters is filled: upload, and make the floatX copy
static void gpt2_upload_params(GPT2 *model) {
    size_t np = model->num_parameters;
    cudaCheck(cudaMemcpy(model->params_memory, model->params_host, np * sizeof(float), cudaMemcpyHostToDevice));
#ifndef ENABLE_FP32
    LAUNCH(copy_to_floatx_kernel, np, 256, model->params_x, model->params_memory, np);
#endif
    model->wq_stale = 1;
}

void gpt2_build_from_checkpoint(GPT2 *model, const char *path, QuantConfig quant, const int explicit_flags[3]) {
    FILE *fp = model_file_open(path, quant, explicit_flags, &model->config, &model->quant);
    gpt2_allocate(model);
    freadCheck(model->params_host, sizeof(float), model->num_parameters, fp, path);
    fclose(fp);
    gpt2_upload_params(model);
}

void gpt2_build_random(GPT2 *model, const GPT2Config *config, QuantConfig quant, uint64_t seed) {
    model->config = *config;
    model->quant = quant;
    gpt2_allocate(model);
    gpt2_init_params(model->params_host, model->param_sizes, config, seed); // the CPU trainer's init
    gpt2_upload_params(model);
}

// the latent tensor of BitLinear kind k (all L layers, back to back)
static float *bitlinear_latent(const GPT2 *model, int k) {
    float *w = model->params_memory;
    for (int i = 0; i < BITLINEAR_TENSOR[k]; i++) { w += model->param_sizes[i]; }
    return w;
}

// rebuild trits, W_q and the scales from the latent weights (once per update)
void gpt2_quantize_weights(GPT2 *model) {
    if (!model->wq_stale) { return; }
    model->wq_stale = 0;
    if (model->quant.weight_quant == WQ_FP) { return; } // fp mode uses the latent weights directly
    int L = model->config.num_layers;
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(&model->config, k, &OC, &IC);
        size_t n = (size_t)OC * IC;
        const float *w = bitlinear_latent(model, k);
        weight_sums_partial_kernel<<<dim3(QUANT_BLOCKS, L), 256>>>(model->qpartial_abs, model->qpartial_sum, w, n);
        cudaCheck(cudaGetLastError());
        LAUNCH(weight_scales_kernel, L, 64, model->scales, model->centres, model->qpartial_abs, model->qpartial_sum, L,
               k, QUANT_BLOCKS, n);
        LAUNCH(weight_quantize_kernel, (size_t)L * n, 256, model->trits + model->wq_offset[k],
               model->wq + model->wq_offset[k], w, model->scales, model->centres, k, n, (size_t)L * n,
               model->quant.weight_quant == WQ_BINARY);
    }
}

// the floatX weight matrix BitLinear k of layer l uses: W_q, or the latent weights in fp mode
static const floatX *gpt2_forward_weight(const GPT2 *model, int k, int l) {
    int OC, IC;
    bitlinear_shape(&model->config, k, &OC, &IC);
    size_t n = (size_t)OC * IC;
    if (model->quant.weight_quant == WQ_FP) { return floatx_view(model, bitlinear_latent(model, k)) + l * n; }
    return model->wq + model->wq_offset[k] + l * n;
}

// the b1.58 forward in integers: int8 codes x trits, int32 sums (else the float path on x_q)
static int gpt2_uses_int8_matmul(const GPT2 *model) {
    return model->int8_forward && model->quant.act_quant == AQ_INT8 && model->quant.weight_quant != WQ_FP;
}

static void gpt2_allocate_activations(GPT2 *model, int B, int T) {
    GPT2Config *cfg = &model->config;
    size_t C = cfg->channels, NH = cfg->num_heads, L = cfg->num_layers, Vp = cfg->padded_vocab_size;
    size_t BT = (size_t)B * T, HS = C / NH;
    model->batch_size = B;
    model->seq_len = T;
    ActivationTensors *a = &model->acts;
#define ALLOC(ptr, type, count, what) ptr = (type *)cudaMallocCheck((count) * sizeof(type), what)
    ALLOC(a->encoded, floatX, BT * C, "activations (encoded)");
    ALLOC(a->ln1, floatX, L * BT * C, "activations (ln1)");
    ALLOC(a->ln1_mean, float, L * BT, "activations");
    ALLOC(a->ln1_rstd, float, L * BT, "activations");
    ALLOC(a->qkv, floatX, L * BT * 3 * C, "activations (qkv)");
    ALLOC(a->att, floatX, L * B * NH * T * T, "attention probabilities (L,B,NH,T,T)");
    ALLOC(a->atty, floatX, L * BT * C, "activations (atty)");
    ALLOC(a->residual2, floatX, L * BT * C, "activations (residual2)");
    ALLOC(a->ln2, floatX, L * BT * C, "activations (ln2)");
    ALLOC(a->ln2_mean, float, L * BT, "activations");
    ALLOC(a->ln2_rstd, float, L * BT, "activations");
    ALLOC(a->fch, floatX, L * BT * 4 * C, "activations (fch)");
    ALLOC(a->fch_gelu, floatX, L * BT * 4 * C, "activations (fch_gelu)");
    ALLOC(a->residual3, floatX, L * BT * C, "activations (residual3)");
    ALLOC(a->lnf, floatX, BT * C, "activations (lnf)");
    ALLOC(a->lnf_mean, float, BT, "activations");
    ALLOC(a->lnf_rstd, float, BT, "activations");
    ALLOC(a->logits, floatX, BT * Vp, "logits (B,T,Vp)");
    ALLOC(a->losses, float, BT, "losses");
    // the BitLinear scratch each mode uses, and only that (cudaFree(NULL) is a no-op):
    // fp and weights-only without the inner norm use the input as it is, the float path x_q,
    // the integer path also the int8 codes and their int32 products (0.94 GiB at d12, B=64)
    const QuantConfig *q = &model->quant;
    int plain = q->act_quant == AQ_NONE && !q->inner_norm, int8 = gpt2_uses_int8_matmul(model);
    model->xq = model->dxn = NULL;
    model->codes = NULL;
    model->inv_s = model->rstd = NULL;
    model->acc = NULL;
    if (!plain) {
        ALLOC(model->xq, floatX, BT * 4 * C, "scratch (x_q)");
        ALLOC(model->inv_s, float, BT, "scratch");
        ALLOC(model->rstd, float, BT, "scratch");
    }
    if (int8) {
        ALLOC(model->codes, int8_t, BT * 4 * C, "scratch (int8 codes)");
        ALLOC(model->acc, int32_t, BT * 4 * C, "int32 products");
    }
    if (q->inner_norm) { ALLOC(model->dxn, floatX, BT * 4 * C, "backward scratch (dx_n)"); }
    ALLOC(model->proj_out, floatX, BT * C, "scratch");
    ALLOC(model->qkvr, floatX, 3 * B * NH * T * HS, "scratch (q, k, v)");
    ALLOC(model->preatt, floatX, B * NH * T * T, "attention scores (B,NH,T,T)");
    ALLOC(model->vaccum, floatX, BT * C, "scratch");
    ALLOC(model->dresidual, floatX, BT * C, "backward scratch");
    ALLOC(model->dbuf_c, floatX, BT * C, "backward scratch");
    ALLOC(model->dbuf_3c, floatX, BT * 3 * C, "backward scratch");
    ALLOC(model->dbuf_4c, floatX, BT * 4 * C, "backward scratch");
    ALLOC(model->dqkvr, floatX, 3 * BT * C, "backward scratch");
    // column sums: a bias of up to 4C, or LayerNorm's two of C (the lm_head has no bias)
    ALLOC(model->partial, float, (size_t)ceil_div(BT, COLSUM_ROWS) * 4 * C, "column-sum partials");
    ALLOC(model->inputs, int, BT, "inputs");
    ALLOC(model->targets, int, BT, "targets");
    ALLOC(model->bucket_token, int, BT, "buckets");
    ALLOC(model->bucket_start, int, BT + 1, "buckets");
    ALLOC(model->bucket_pos, int, BT, "buckets");
#undef ALLOC
    model->inputs_host = (int *)mallocCheck(BT * sizeof(int));
    model->bucket_host = (int *)mallocCheck((3 * BT + 1) * sizeof(int));
    model->count_host = (int *)mallocCheck(((size_t)cfg->vocab_size + 1) * sizeof(int));
    model->losses_host = (float *)mallocCheck(BT * sizeof(float));
    model->logits_row_host = (float *)mallocCheck(Vp * sizeof(float));
}

// ----------------------------------------------------------------------------
// BitLinear forward and backward


// out (N,OC) = BitLinear k of layer l applied to inp (N,IC)
static void bitlinear_forward(GPT2 *model, int k, int l, floatX *out, const floatX *inp, const float *bias, int N) {
    int OC, IC;
    bitlinear_shape(&model->config, k, &OC, &IC);
    const QuantConfig *q = &model->quant;
    if (q->act_quant == AQ_NONE && !q->inner_norm) { // the input is used as it is (fp, and weights-only without norm)
        matmul_forward(out, inp, gpt2_forward_weight(model, k, l), bias, N, IC, OC);
        return;
    }
    int use_int8 = gpt2_uses_int8_matmul(model);
    // the integer path reads only the codes (and 1/s); the float path only x_q
    LAUNCH_ROWS(rmsnorm_quant_kernel, N, use_int8 ? NULL : model->xq, use_int8 ? model->codes : NULL, model->inv_s,
                model->rstd, inp, N, IC, q->inner_norm, q->act_quant == AQ_INT8);
    if (use_int8) {
        // y = (gamma / s) * (codes . trits^T) + b: exact int32 products, scaled once
        const int8_t *trits = model->trits + model->wq_offset[k] + (size_t)l * OC * IC;
        matmul_i8(model->acc, model->codes, trits, N, IC, OC);
        LAUNCH(dequant_epilogue_kernel, (size_t)N * OC, 256, out, model->acc, model->inv_s, model->scales, l * 4 + k,
               bias, N, OC);
    } else {
        matmul_forward(out, model->xq, gpt2_forward_weight(model, k, l), bias, N, IC, OC);
    }
}

// The backward with the straight-through estimator, for dout (N,OC):
//   dW_latent += dout^T @ x_q    (the gradient of W_q, applied to the latent W)
//   dx_q = dout @ W_q; dx_n = dx_q (rounding counts as the identity)
//   inner norm: dx = r * (dx_n - x_n * mean(dx_n * x_n))
// dinp (N,IC) is overwritten. x_q is recomputed from inp by the forward's kernel.
static void bitlinear_backward(GPT2 *model, int k, int l, floatX *dinp, float *dweight, float *dbias,
                               const floatX *dout, const floatX *inp, int N) {
    int OC, IC;
    bitlinear_shape(&model->config, k, &OC, &IC);
    const QuantConfig *q = &model->quant;
    const floatX *w = gpt2_forward_weight(model, k, l);
    if (q->act_quant == AQ_NONE && !q->inner_norm) {
        matmul_backward(dinp, dweight, dbias, dout, inp, w, N, IC, OC, model->partial);
        return;
    }
    LAUNCH_ROWS(rmsnorm_quant_kernel, N, model->xq, NULL, NULL, model->rstd, inp, N, IC, q->inner_norm,
                q->act_quant == AQ_INT8);
    if (!q->inner_norm) { // x_n = x: dx = dx_q
        matmul_backward(dinp, dweight, dbias, dout, model->xq, w, N, IC, OC, model->partial);
        return;
    }
    matmul_backward(model->dxn, dweight, dbias, dout, model->xq, w, N, IC, OC, model->partial);
    LAUNCH_ROWS(rmsnorm_backward_kernel, N, dinp, model->dxn, inp, model->rstd, N, IC);
}

// ----------------------------------------------------------------------------
// attention forward and backward (cuBLAS batched products)

// out (B,T,C) = causal self-attention of qkv (B,T,3C); att (B,NH,T,T) keeps the probabilities
static void attention_forward(GPT2 *model, floatX *out, floatX *att, const floatX *qkv, int B, int T, int C, int NH) {
    int HS = C / NH;
    size_t n = (size_t)B * NH * T * HS;
    floatX *q = model->qkvr, *k = q + n, *v = k + n;
    LAUNCH(permute_kernel, n, 256, q, k, v, qkv, B, T, NH, HS);
    const float one = 1.0f, zero = 0.0f;
    // preatt (T,T) = q (T,HS) . k^T per (b,h); column-major: preatt^T = k . q^T
    cublasCheck(cublasGemmStridedBatchedEx(cublas_handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, &one, k, CUBLAS_FLOATX,
                                           HS, (long long)T * HS, q, CUBLAS_FLOATX, HS, (long long)T * HS, &zero,
                                           model->preatt, CUBLAS_FLOATX, T, (long long)T * T, B * NH, CUBLAS_COMPUTE,
                                           CUBLAS_GEMM_DEFAULT));
    LAUNCH_ROWS(softmax_forward_kernel, B * NH * T, att, model->preatt, B * NH * T, T, 1.0f / sqrtf((float)HS));
    // y (T,HS) = att (T,T) . v (T,HS); column-major: y^T = v^T . att^T
    cublasCheck(cublasGemmStridedBatchedEx(cublas_handle, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, &one, v, CUBLAS_FLOATX,
                                           HS, (long long)T * HS, att, CUBLAS_FLOATX, T, (long long)T * T, &zero,
                                           model->vaccum, CUBLAS_FLOATX, HS, (long long)T * HS, B * NH,
                                           CUBLAS_COMPUTE, CUBLAS_GEMM_DEFAULT));
    LAUNCH(unpermute_kernel, n, 256, out, model->vaccum, B, T, NH, HS, 0);
}

// dqkv (B,T,3C) (overwritten) from dout (B,T,C), the forward's qkv and att
static void attention_backward(GPT2 *model, floatX *dqkv, const floatX *dout, const floatX *qkv, const floatX *att,
                               int B, int T, int C, int NH) {
    int HS = C / NH;
    size_t n = (size_t)B * NH * T * HS;
    floatX *q = model->qkvr, *k = q + n, *v = k + n;
    floatX *dq = model->dqkvr, *dk = dq + n, *dv = dk + n;
    floatX *dy = model->vaccum, *datt = model->preatt;
    const float one = 1.0f, zero = 0.0f;
    LAUNCH(permute_kernel, n, 256, q, k, v, qkv, B, T, NH, HS);
    LAUNCH(unpermute_kernel, n, 256, (floatX *)dout, dy, B, T, NH, HS, 1);
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
    LAUNCH_ROWS(softmax_backward_kernel, B * NH * T, datt, datt, att, B * NH * T, T, 1.0f / sqrtf((float)HS));
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
    LAUNCH(permute_backward_kernel, n, 256, dqkv, dq, dk, dv, B, T, NH, HS);
}

// ----------------------------------------------------------------------------
// forward, backward, update

// Forward pass over inputs (B,T) (host arrays). With targets it computes the
// losses and the mean loss; with write_dlogits also the gradient of the mean
// loss (scaled by dloss_scale, 1/grad_accum_steps) in place of the logits.
void gpt2_forward(GPT2 *model, const int *inputs, const int *targets, int B, int T, int write_dlogits,
                  float dloss_scale) {
    GPT2Config *cfg = &model->config;
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size, L = cfg->num_layers;
    int NH = cfg->num_heads, C = cfg->channels, BT = B * T;
    if (T > cfg->max_seq_len) {
        fprintf(stderr, "error: sequence length %d is above the model's maximum %d\n"
                "---> HINT: lower -t to at most %d\n", T, cfg->max_seq_len, cfg->max_seq_len);
        exit(EXIT_FAILURE);
    }
    for (int i = 0; i < BT; i++) {
        if (inputs[i] < 0 || inputs[i] >= V || (targets != NULL && (targets[i] < 0 || targets[i] >= V))) {
            fprintf(stderr, "error: token id %d at position %d is outside the vocab (V = %d)\n",
                    targets != NULL && (targets[i] < 0 || targets[i] >= V) ? targets[i] : inputs[i], i, V);
            exit(EXIT_FAILURE);
        }
    }
    if (model->acts.encoded == NULL) { gpt2_allocate_activations(model, B, T); }
    if (BT > model->batch_size * model->seq_len || T > model->seq_len) {
        fprintf(stderr, "error: batch (B=%d, T=%d) is larger than the first one (B=%d, T=%d)\n",
                B, T, model->batch_size, model->seq_len);
        exit(EXIT_FAILURE);
    }
    model->last_B = B;
    model->last_T = T;
    memcpy(model->inputs_host, inputs, (size_t)BT * sizeof(int));
    cudaCheck(cudaMemcpy(model->inputs, inputs, (size_t)BT * sizeof(int), cudaMemcpyHostToDevice));
    if (targets != NULL) {
        cudaCheck(cudaMemcpy(model->targets, targets, (size_t)BT * sizeof(int), cudaMemcpyHostToDevice));
    }
    gpt2_quantize_weights(model);

    ParameterTensors p = model->params;
    ActivationTensors a = model->acts;
    size_t BTC = (size_t)BT * C;
    LAUNCH(encoder_forward_kernel, BTC, 256, a.encoded, model->inputs, p.wte, p.wpe, BT, T, C);
    for (int l = 0; l < L; l++) {
        floatX *residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BTC;
        floatX *l_ln1 = a.ln1 + l * BTC, *l_qkv = a.qkv + l * BTC * 3, *l_atty = a.atty + l * BTC;
        floatX *l_att = a.att + (size_t)l * B * NH * T * T, *l_residual2 = a.residual2 + l * BTC;
        floatX *l_ln2 = a.ln2 + l * BTC, *l_fch = a.fch + l * BTC * 4, *l_fch_gelu = a.fch_gelu + l * BTC * 4;
        floatX *l_residual3 = a.residual3 + l * BTC;
        float *l_ln1_mean = a.ln1_mean + l * BT, *l_ln1_rstd = a.ln1_rstd + l * BT;
        float *l_ln2_mean = a.ln2_mean + l * BT, *l_ln2_rstd = a.ln2_rstd + l * BT;
        // attention half: x + attproj(attention(qkv(ln1(x))))
        LAUNCH_ROWS(layernorm_forward_kernel, BT, l_ln1, l_ln1_mean, l_ln1_rstd, residual, p.ln1w + l * C,
                    p.ln1b + l * C, BT, C);
        bitlinear_forward(model, 0, l, l_qkv, l_ln1, p.qkvb + l * 3 * C, BT);
        attention_forward(model, l_atty, l_att, l_qkv, B, T, C, NH);
        bitlinear_forward(model, 1, l, model->proj_out, l_atty, p.attprojb + l * C, BT);
        LAUNCH(residual_forward_kernel, BTC, 256, l_residual2, residual, model->proj_out, BTC);
        // MLP half: x + fcproj(gelu(fc(ln2(x))))
        LAUNCH_ROWS(layernorm_forward_kernel, BT, l_ln2, l_ln2_mean, l_ln2_rstd, l_residual2, p.ln2w + l * C,
                    p.ln2b + l * C, BT, C);
        bitlinear_forward(model, 2, l, l_fch, l_ln2, p.fcb + l * 4 * C, BT);
        LAUNCH(gelu_forward_kernel, BTC * 4, 256, l_fch_gelu, l_fch, BTC * 4);
        bitlinear_forward(model, 3, l, model->proj_out, l_fch_gelu, p.fcprojb + l * C, BT);
        LAUNCH(residual_forward_kernel, BTC, 256, l_residual3, l_residual2, model->proj_out, BTC);
    }
    LAUNCH_ROWS(layernorm_forward_kernel, BT, a.lnf, a.lnf_mean, a.lnf_rstd, a.residual3 + (L - 1) * BTC, p.lnfw,
                p.lnfb, BT, C);
    // the tied lm_head in full precision: logits = lnf @ wte^T
    matmul_forward(a.logits, a.lnf, floatx_view(model, p.wte), NULL, BT, C, Vp);
    model->mean_loss = -1.0f;
    if (targets != NULL) {
        classifier_kernel<<<BT, 512>>>(a.logits, a.losses, model->targets, V, Vp, dloss_scale / BT, write_dlogits);
        cudaCheck(cudaGetLastError());
        cudaCheck(cudaMemcpy(model->losses_host, a.losses, (size_t)BT * sizeof(float), cudaMemcpyDeviceToHost));
        double sum = 0.0;
        for (int i = 0; i < BT; i++) { sum += model->losses_host[i]; }
        model->mean_loss = (float)(sum / BT);
    }
    model->have_dlogits = targets != NULL && write_dlogits;
}

void gpt2_zero_grad(GPT2 *model) {
    cudaCheck(cudaMemset(model->grads_memory, 0, model->num_parameters * sizeof(float)));
}

// group the positions of the last batch by token (counting sort, positions in
// increasing order within a token) and upload them for encoder_backward_wte_kernel
static void gpt2_bucket_tokens(GPT2 *model, int BT) {
    int V = model->config.vocab_size;
    int *count = model->count_host, *pos = model->bucket_host, *token = pos + BT, *start = token + BT;
    memset(count, 0, ((size_t)V + 1) * sizeof(int));
    for (int i = 0; i < BT; i++) { count[model->inputs_host[i] + 1]++; }
    for (int v = 0; v < V; v++) { count[v + 1] += count[v]; } // count[v] = first slot of token v
    int nb = 0;
    for (int v = 0; v < V; v++) {
        if (count[v + 1] > count[v]) { token[nb] = v; start[nb] = count[v]; nb++; }
    }
    start[nb] = BT;
    for (int i = 0; i < BT; i++) { pos[count[model->inputs_host[i]]++] = i; }
    model->num_buckets = nb;
    cudaCheck(cudaMemcpy(model->bucket_pos, pos, (size_t)BT * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(model->bucket_token, token, (size_t)nb * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(model->bucket_start, start, (size_t)(nb + 1) * sizeof(int), cudaMemcpyHostToDevice));
}

// Backward pass of the last forward pass (which must have had targets and
// write_dlogits = 1); accumulates into the fp32 gradients.
void gpt2_backward(GPT2 *model) {
    if (!model->have_dlogits) {
        fprintf(stderr, "error: gpt2_backward needs a forward pass with targets and write_dlogits = 1 first\n");
        exit(EXIT_FAILURE);
    }
    GPT2Config *cfg = &model->config;
    int Vp = cfg->padded_vocab_size, L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels;
    int B = model->last_B, T = model->last_T, BT = B * T;
    size_t BTC = (size_t)BT * C;
    ParameterTensors p = model->params, g;
    point_parameters(&g, model->param_sizes, model->grads_memory);
    ActivationTensors a = model->acts;
    floatX *dresidual = model->dresidual;

    // lm_head: dlnf = dlogits @ wte, dwte += dlogits^T @ lnf
    matmul_backward(model->dbuf_c, g.wte, NULL, a.logits, a.lnf, floatx_view(model, p.wte), BT, C, Vp, model->partial);
    cudaCheck(cudaMemset(dresidual, 0, BTC * sizeof(floatX)));
    floatX *residual = a.residual3 + (L - 1) * BTC;
    int nchunks = ceil_div(BT, COLSUM_ROWS);
    float *pw = model->partial, *pb = model->partial + (size_t)nchunks * C;
#define LAYERNORM_BACKWARD(dinp, dw, db, dout, inp, w, mean, rstd)                                                 \
    do {                                                                                                        \
        LAUNCH_ROWS(layernorm_backward_kernel, BT, dinp, dout, inp, w, mean, rstd, BT, C);                      \
        layernorm_param_partial_kernel<<<dim3(ceil_div(C, 256), nchunks), 256>>>(pw, pb, dout, inp, mean, rstd, \
                                                                                 BT, C);                        \
        cudaCheck(cudaGetLastError());                                                                          \
        LAUNCH(colsum_finalize_kernel, C, 256, dw, pw, nchunks, C);                                             \
        LAUNCH(colsum_finalize_kernel, C, 256, db, pb, nchunks, C);                                             \
    } while (0)
    LAYERNORM_BACKWARD(dresidual, g.lnfw, g.lnfb, model->dbuf_c, residual, p.lnfw, a.lnf_mean, a.lnf_rstd);

    // dresidual carries the gradient of the residual stream down the layers:
    // each half adds its branch's contribution to it
    for (int l = L - 1; l >= 0; l--) {
        residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BTC;
        floatX *l_ln1 = a.ln1 + l * BTC, *l_qkv = a.qkv + l * BTC * 3, *l_atty = a.atty + l * BTC;
        floatX *l_att = a.att + (size_t)l * B * NH * T * T, *l_residual2 = a.residual2 + l * BTC;
        floatX *l_ln2 = a.ln2 + l * BTC, *l_fch = a.fch + l * BTC * 4, *l_fch_gelu = a.fch_gelu + l * BTC * 4;
        // MLP half, in reverse: residual3 = residual2 + fcproj(gelu(fc(ln2(residual2))))
        bitlinear_backward(model, 3, l, model->dbuf_4c, g.fcprojw + (size_t)l * 4 * C * C, g.fcprojb + l * C,
                           dresidual, l_fch_gelu, BT);
        LAUNCH(gelu_backward_kernel, BTC * 4, 256, model->dbuf_4c, l_fch, model->dbuf_4c, BTC * 4);
        bitlinear_backward(model, 2, l, model->dbuf_c, g.fcw + (size_t)l * 4 * C * C, g.fcb + l * 4 * C,
                           model->dbuf_4c, l_ln2, BT);
        LAYERNORM_BACKWARD(dresidual, g.ln2w + l * C, g.ln2b + l * C, model->dbuf_c, l_residual2, p.ln2w + l * C,
                           a.ln2_mean + l * BT, a.ln2_rstd + l * BT);
        // attention half, in reverse: residual2 = residual + attproj(attention(qkv(ln1(residual))))
        bitlinear_backward(model, 1, l, model->dbuf_c, g.attprojw + (size_t)l * C * C, g.attprojb + l * C, dresidual,
                           l_atty, BT);
        attention_backward(model, model->dbuf_3c, model->dbuf_c, l_qkv, l_att, B, T, C, NH);
        bitlinear_backward(model, 0, l, model->dbuf_c, g.qkvw + (size_t)l * 3 * C * C, g.qkvb + l * 3 * C,
                           model->dbuf_3c, l_ln1, BT);
        LAYERNORM_BACKWARD(dresidual, g.ln1w + l * C, g.ln1b + l * C, model->dbuf_c, residual, p.ln1w + l * C,
                           a.ln1_mean + l * BT, a.ln1_rstd + l * BT);
    }
#undef LAYERNORM_BACKWARD
    gpt2_bucket_tokens(model, BT);
    encoder_backward_wte_kernel<<<model->num_buckets, 256>>>(g.wte, dresidual, model->bucket_token,
                                                              model->bucket_start, model->bucket_pos, C);
    cudaCheck(cudaGetLastError());
    LAUNCH(encoder_backward_wpe_kernel, T * C, 256, g.wpe, dresidual, B, T, C);
}

// global L2 norm of the gradients (fixed-order reduction)
float gpt2_grad_norm(GPT2 *model) {
    sumsq_partial_kernel<<<NORM_BLOCKS, 256>>>(model->norm_partial, model->grads_memory, model->num_parameters);
    cudaCheck(cudaGetLastError());
    sumsq_finalize_kernel<<<1, 32>>>(model->norm_out, model->norm_partial, NORM_BLOCKS);
    cudaCheck(cudaGetLastError());
    float norm;
    cudaCheck(cudaMemcpy(&norm, model->norm_out, sizeof(float), cudaMemcpyDeviceToHost));
    return norm;
}

// AdamW, as gpt2_update in train_gpt2_1bit.c: weight decay only on the matrices; t counts from 1
void gpt2_update(GPT2 *model, float learning_rate, float beta1, float beta2, float eps, float weight_decay,
                 float grad_scale, int t) {
    float bc1 = 1.0f - powf(beta1, t), bc2 = 1.0f - powf(beta2, t);
    size_t start = 0;
    for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
        float wd = PARAMETER_IS_MATRIX[k] ? weight_decay : 0.0f;
        size_t n = model->param_sizes[k];
#ifdef ENABLE_FP32
        floatX *px = NULL; // params_x is params_memory itself
#else
        floatX *px = model->params_x + start;
#endif
        LAUNCH(adamw_kernel, n, 256, model->params_memory + start, px, model->m_memory + start,
               model->v_memory + start, model->grads_memory + start, n, learning_rate, beta1, beta2, bc1, bc2, eps, wd,
               grad_scale);
        start += n;
    }
    model->wq_stale = 1;
}

void gpt2_free(GPT2 *model) {
    cudaCheck(cudaFree(model->params_memory));
#ifndef ENABLE_FP32
    cudaCheck(cudaFree(model->params_x));
#endif
    cudaCheck(cudaFree(model->grads_memory));
    cudaCheck(cudaFree(model->m_memory));
    cudaCheck(cudaFree(model->v_memory));
    cudaCheck(cudaFree(model->wq));
    cudaCheck(cudaFree(model->trits));
    cudaCheck(cudaFree(model->scales));
    cudaCheck(cudaFree(model->centres));
    cudaCheck(cudaFree(model->qpartial_abs));
    cudaCheck(cudaFree(model->qpartial_sum));
    cudaCheck(cudaFree(model->norm_partial));
    cudaCheck(cudaFree(model->norm_out));
    free(model->params_host);
    free(model->trits_host);
    free(model->trits_prev_host);
    if (model->acts.encoded != NULL) {
        ActivationTensors *a = &model->acts;
        void *ptrs[] = {a->encoded, a->ln1, a->ln1_mean, a->ln1_rstd, a->qkv, a->att, a->atty, a->residual2, a->ln2,
                        a->ln2_mean, a->ln2_rstd, a->fch, a->fch_gelu, a->residual3, a->lnf, a->lnf_mean, a->lnf_rstd,
                        a->logits, a->losses, model->xq, model->codes, model->inv_s, model->rstd, model->acc,
                        model->proj_out, model->qkvr, model->preatt, model->vaccum, model->dresidual, model->dbuf_c,
                        model->dbuf_3c, model->dbuf_4c, model->dxn, model->dqkvr, model->partial, model->inputs,
                        model->targets, model->bucket_token, model->bucket_start, model->bucket_pos};
        for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++) { cudaCheck(cudaFree(ptrs[i])); }
        free(model->inputs_host);
        free(model->bucket_host);
        free(model->count_host);
        free(model->losses_host);
        free(model->logits_row_host);
    }
}

// ----------------------------------------------------------------------------
// host copies: parameters (for checkpoints), AdamW moments, trits (diagnostics)

static void gpt2_download_params(GPT2 *model) {
    cudaCheck(cudaMemcpy(model->params_host, model->params_memory, model->num_parameters * sizeof(float),
                         cudaMemcpyDeviceToHost));
}

void save_checkpoint(GPT2 *model, const DataLoader *loader, uint64_t rng, int step, int total_batch,
                     const char *out_dir) {
    size_t np = model->num_parameters;
    float *m = (float *)mallocCheck(np * sizeof(float)), *v = (float *)mallocCheck(np * sizeof(float));
    gpt2_download_params(model);
    cudaCheck(cudaMemcpy(m, model->m_memory, np * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(v, model->v_memory, np * sizeof(float), cudaMemcpyDeviceToHost));
    TrainState st = {step, model->batch_size, model->seq_len, rng, loader->shard_index, loader->pos, total_batch};
    checkpoint_write(out_dir, &model->config, &model->quant, model->params_host, m, v, np, &st);
    free(m);
    free(v);
}

// load the optimizer, data and RNG state of a checkpoint; returns its step
int load_state(GPT2 *model, DataLoader *loader, uint64_t *rng, int total_batch, const char *path) {
    size_t np = model->num_parameters;
    float *m = (float *)mallocCheck(np * sizeof(float)), *v = (float *)mallocCheck(np * sizeof(float));
    TrainState st;
    checkpoint_read_state(path, np, loader->B, loader->T, total_batch, m, v, &st);
    cudaCheck(cudaMemcpy(model->m_memory, m, np * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(model->v_memory, v, np * sizeof(float), cudaMemcpyHostToDevice));
    free(m);
    free(v);
    *rng = st.rng;
    dataloader_resume(loader, st.shard_index, st.pos);
    return st.step;
}

void print_trit_stats(GPT2 *model, Logger *logger, int step) {
    if (model->quant.weight_quant == WQ_FP) { return; }
    gpt2_quantize_weights(model);
    int L = model->config.num_layers;
    float scales[64 * 4];
    cudaCheck(cudaMemcpy(model->trits_host, model->trits, model->num_bitlinear_weights, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(scales, model->scales, (size_t)L * 4 * sizeof(float), cudaMemcpyDeviceToHost));
    TritStats *stats = (TritStats *)mallocCheck((size_t)L * 4 * sizeof(TritStats));
    trit_stats_compute(stats, &model->config, model->trits_host, model->trits_prev_host, model->have_trits_prev,
                       scales);
    trit_stats_print(stats, L, logger, step);
    memcpy(model->trits_prev_host, model->trits_host, model->num_bitlinear_weights);
    model->have_trits_prev = 1;
    free(stats);
}

// ----------------------------------------------------------------------------
// evaluation and sampling

float gpt2_validate(GPT2 *model, DataLoader *val_loader, int max_batches) {
    int n = dataloader_num_batches(val_loader);
    n = n < max_batches ? n : max_batches;
    dataloader_reset(val_loader);
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        dataloader_next_batch(val_loader);
        gpt2_forward(model, val_loader->inputs, val_loader->targets, val_loader->B, val_loader->T, 0, 1.0f);
        sum += model->mean_loss;
    }
    return (float)(sum / n);
}

// the logits (Vp floats, into model->logits_row_host) of position t of row 0 of the last forward pass
static const float *gpt2_logits_row(GPT2 *model, int t) {
    int Vp = model->config.padded_vocab_size;
    floatX *tmp = (floatX *)mallocCheck((size_t)Vp * sizeof(floatX));
    cudaCheck(cudaMemcpy(tmp, model->acts.logits + (size_t)t * Vp, (size_t)Vp * sizeof(floatX),
                         cudaMemcpyDeviceToHost));
    for (int i = 0; i < Vp; i++) { model->logits_row_host[i] = to_float(tmp[i]); }
    free(tmp);
    return model->logits_row_host;
}

// generate n tokens after an EOT, B=1, the whole prefix recomputed each token (as the CPU trainer)
void gpt2_sample(GPT2 *model, const Tokenizer *tokenizer, int n, int max_T, float temperature, int top_k,
                 uint64_t *rng) {
    int eot = tokenizer->init_ok ? tokenizer->eot_token : 50256;
    if (eot >= model->config.vocab_size) { eot = 0; }
    int *tokens = (int *)mallocCheck((size_t)(n + 1) * sizeof(int));
    int *scratch = (int *)mallocCheck((size_t)model->config.vocab_size * sizeof(int));
    tokens[0] = eot;
    printf("generating:\n---\n");
    for (int t = 1; t <= n; t++) {
        int start = t > max_T ? t - max_T : 0, len = t - start;
        gpt2_forward(model, tokens + start, NULL, 1, len, 0, 1.0f);
        const float *logits = gpt2_logits_row(model, len - 1);
        int next = sample_logits(logits, model->config.vocab_size, temperature, top_k, random_f32(rng), scratch);
        tokens[t] = next;
        tokenizer_print(tokenizer, next, stdout);
        fflush(stdout);
    }
    printf("\n---\n");
    free(tokens);
    free(scratch);
}

// ----------------------------------------------------------------------------
// main training loop
#ifndef TESTING

// the forward pass HellaSwag's scoring borrows: the (B,T) per-position losses, on the host
static const float *gpt2_eval_losses(void *m, const int *inputs, const int *targets, int B, int T) {
    GPT2 *model = (GPT2 *)m;
    gpt2_forward(model, inputs, targets, B, T, 0, 1.0f);
    return model->losses_host;
}


int main(int argc, char **argv) {
    TrainArgs args;
    train_args_defaults(&args);
    train_args_parse(&args, argc, argv);
    train_args_validate(&args, argv[0]);
    const char *out_dir = args.out_dir[0] ? args.out_dir : NULL;
    if (out_dir != NULL) { ensure_writable_dir(out_dir, "-o"); }
    // gradient accumulation: -d tokens per optimizer step, in micro-batches of B*T
    long long micro = (long long)args.B * args.T;
    long long total = args.total_batch > 0 ? args.total_batch : micro;
    if (total % micro != 0) {
        fprintf(stderr, "error: -d %lld is not a multiple of -b * -t = %lld tokens\n"
                "---> HINT: pass -d %lld (or another multiple)\n", total, micro, (total / micro + 1) * micro);
        exit(EXIT_FAILURE);
    }
    int accum = (int)(total / micro);

    cuda_device_init("run the CPU trainer instead: make train_gpt2_1bit && ./train_gpt2_1bit");
    print_device_line();
    cublasCheck(cublasCreate(&cublas_handle));

    // the model: resumed, loaded, or fresh
    QuantConfig quant = {parse_weight_quant(args.weight_quant), parse_act_quant(args.act_quant), args.inner_norm};
    const int explicit_flags[3] = {args.set_weight_quant, args.set_act_quant, args.set_inner_norm};
    GPT2 model;
    int resume_step = -1;
    char path[4096];
    if (args.resume) {
        resume_step = checkpoint_find_latest(out_dir);
        if (resume_step < 0) {
            fprintf(stderr, "error: -y 1 but '%s' has no complete checkpoint (DONE_* file)\n"
                    "---> HINT: drop -y to start a new run\n", out_dir);
            exit(EXIT_FAILURE);
        }
        if (resume_step > args.max_steps) {
            fprintf(stderr, "error: -x %d is below step %d of the newest checkpoint in '%s'\n"
                    "---> HINT: pass -x %d or more to continue that run\n",
                    args.max_steps, resume_step, out_dir, resume_step);
            exit(EXIT_FAILURE);
        }
        snprintf(path, sizeof(path), "%s/model_%08d.bin", out_dir, resume_step);
        gpt2_build_from_checkpoint(&model, path, quant, explicit_flags);
        printf("resuming from %s\n", path);
    } else {
        int old = out_dir != NULL ? checkpoint_find_latest(out_dir) : -1;
        if (old >= 0) {
            fprintf(stderr, "warning: -o '%s' already holds a run's checkpoints (newest: step %d); this new run "
                    "overwrites them\n---> HINT: pass -y 1 to resume that run instead, or another -o\n", out_dir, old);
        }
        GPT2Config cfg;
        if (gpt2_config_from_descriptor(&cfg, args.init)) {
            gpt2_build_random(&model, &cfg, quant, (uint64_t)args.seed);
        } else if (access(args.init, F_OK) == 0) {
            gpt2_build_from_checkpoint(&model, args.init, quant, explicit_flags);
        } else {
            fprintf(stderr, "error: -e '%s': no such model file, and not a descriptor such as d12\n"
                    "---> HINT: pass a model_*.bin path, or dN for a fresh model (d12 = GPT-2 124M)\n", args.init);
            exit(EXIT_FAILURE);
        }
    }
    GPT2Config *cfg = &model.config;
    if (args.T > cfg->max_seq_len) {
        fprintf(stderr, "error: -t %d is above the model's maximum sequence length %d\n"
                "---> HINT: pass -t %d or less\n", args.T, cfg->max_seq_len, cfg->max_seq_len);
        exit(EXIT_FAILURE);
    }
    gpt2_allocate_activations(&model, args.B, args.T);
    char mode[256];
    quant_config_describe(&model.quant, mode, sizeof(mode));
    printf("model: L=%d NH=%d C=%d maxT=%d V=%d (Vp=%d), %zu parameters (%zu in BitLinear matrices)\n",
           cfg->num_layers, cfg->num_heads, cfg->channels, cfg->max_seq_len, cfg->vocab_size,
           cfg->padded_vocab_size, model.num_parameters, model.num_bitlinear_weights);
    printf("mode: %s; activations %s; BitLinear forward %s\n", mode, PRECISION_NAME,
           gpt2_uses_int8_matmul(&model) ? "int8 x trits (int32 sums)" : "float");
    printf("batch: %d x %d tokens per micro-step, %d micro-steps, %lld tokens per step\n", args.B, args.T, accum,
           total);
    // everything is allocated up front (parameters, AdamW state, activations for this -b and -t), so a
    // run that starts does not run out of memory later; this says how close it came
    size_t free_b = 0, total_b = 0;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    printf("device memory: %.2f GiB allocated, %.2f of %.2f GiB free\n", cuda_allocated_bytes / 1073741824.0,
           free_b / 1073741824.0, total_b / 1073741824.0);

    DataLoader train_loader, val_loader;
    dataloaders_open(&train_loader, &val_loader, args.train_pattern, args.val_pattern, args.val_every > 0, args.B,
                     args.T, cfg->vocab_size); // the val shards only with -v > 0
    EvalLoader hellaswag; // -h 1: HellaSwag with every val loss (llmc/hellaswag.h)
    if (args.hellaswag) {
        evalloader_init(&hellaswag, HELLASWAG_PATH, args.B, args.T, cfg->vocab_size);
        printf("HellaSwag: %d examples, %d batches of %d x %d\n", hellaswag.num_examples, hellaswag.num_batches,
               hellaswag.B, hellaswag.T);
    }
    Tokenizer tokenizer;
    tokenizer_init(&tokenizer, args.tokenizer_path);
    if (tokenizer.init_ok && (int)tokenizer.vocab_size != cfg->vocab_size) {
        fprintf(stderr, "warning: tokenizer '%s' has %u tokens but the model has V = %d\n", args.tokenizer_path,
                tokenizer.vocab_size, cfg->vocab_size);
    }

    uint64_t rng = (uint64_t)args.seed * 0x2545F4914F6CDD1DULL + 7;
    int start_step = 0;
    if (resume_step >= 0) {
        snprintf(path, sizeof(path), "%s/state_%08d.bin", out_dir, resume_step);
        start_step = load_state(&model, &train_loader, &rng, (int)total, path);
    }
    Logger logger;
    logger_init(&logger, out_dir, resume_step >= 0);
    Schedule sched = {args.lr, args.warmup, args.max_steps, args.final_frac, args.stage2_frac, args.stage2_drop,
                      args.wd, args.wd_stop_frac};
    printf("schedule: lr %.2e, warmup %d, stage 2 from step %d at %.2e, final %.2e; weight decay %.2f until step %d\n",
           args.lr, args.warmup, schedule_stage2_step(&sched), args.lr * args.stage2_drop, args.lr * args.final_frac,
           args.wd, (int)(args.wd_stop_frac * args.max_steps));

    double total_ms = 0.0;
    int timed_steps = 0;
    for (int step = start_step; step <= args.max_steps; step++) {
        int last = step == args.max_steps;
        if (args.val_every > 0 && (step % args.val_every == 0 || last)) {
            float val_loss = gpt2_validate(&model, &val_loader, args.val_batches);
            printf("step %5d | val loss %.4f | val perplexity %.2f\n", step, val_loss, expf(val_loss));
            logger_log_val(&logger, step, val_loss);
            if (args.hellaswag) {
                float acc = evalloader_accuracy(&hellaswag, gpt2_eval_losses, &model);
                printf("step %5d | HellaSwag acc_norm %.4f\n", step, acc);
                logger_log_eval(&logger, step, acc);
            }
            print_trit_stats(&model, &logger, step);
        }
        int resumed_here = resume_step >= 0 && step == start_step; // see train_gpt2_1bit.c
        if (args.sample_every > 0 && !resumed_here && ((step > 0 && step % args.sample_every == 0) || last)) {
            gpt2_sample(&model, &tokenizer, args.gen_tokens, args.T, args.temperature, args.top_k, &rng);
        }
        if (out_dir != NULL && step > start_step && (last || (args.ckpt_every > 0 && step % args.ckpt_every == 0))) {
            save_checkpoint(&model, &train_loader, rng, step, (int)total, out_dir);
        }
        if (last) { break; }

        // one optimizer step over `accum` micro-batches
        cudaCheck(cudaDeviceSynchronize());
        double t0 = now_seconds();
        gpt2_zero_grad(&model);
        double loss = 0.0;
        for (int micro_step = 0; micro_step < accum; micro_step++) {
            dataloader_next_batch(&train_loader);
            gpt2_forward(&model, train_loader.inputs, train_loader.targets, args.B, args.T, 1, 1.0f / accum);
            gpt2_backward(&model);
            loss += model.mean_loss;
        }
        float mean_loss = (float)(loss / accum);
        float norm = gpt2_grad_norm(&model);
        float grad_scale = (args.grad_clip > 0.0f && norm > args.grad_clip) ? args.grad_clip / (norm + 1e-6f) : 1.0f;
        float lr = schedule_lr(&sched, step), wd = schedule_wd(&sched, step);
        gpt2_update(&model, lr, 0.9f, 0.95f, 1e-8f, wd, grad_scale, step + 1);
        cudaCheck(cudaDeviceSynchronize());
        double ms = 1000.0 * (now_seconds() - t0);
        if (step > start_step) { total_ms += ms; timed_steps++; } // the first step warms up cuBLAS
        if (!isfinite(mean_loss)) {
            fprintf(stderr, "error: the loss is %f at step %d: training diverged\n"
                    "---> HINT: lower the learning rate (-l)\n", mean_loss, step);
            exit(EXIT_FAILURE);
        }
        printf("step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %.1f ms | %.0f tok/s\n", step + 1, args.max_steps,
               mean_loss, lr, norm, ms, total / (ms / 1000.0));
        logger_log_train(&logger, step + 1, mean_loss, lr, norm);
    }
    if (timed_steps > 0) {
        printf("average step: %.1f ms, %.0f tok/s\n", total_ms / timed_steps,
               (double)total * timed_steps / (total_ms / 1000.0));
    }
    logger_free(&logger);
    tokenizer_free(&tokenizer);
    dataloader_free(&train_loader);
    dataloader_free(&val_loader);
    if (args.hellaswag) { evalloader_free(&hellaswag); }
    gpt2_free(&model);
    cublasCheck(cublasDestroy(cublas_handle));
    return 0;
}
#endif
