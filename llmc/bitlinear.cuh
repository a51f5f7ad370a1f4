/*
 llmc/bitlinear.cuh: BitLinear (BitNet b1.58) forward and backward, from the quantizers of
 llmc/quantize.cuh and the matmuls of llmc/matmul.cuh.
 Spec: bitlinear_forward, bitlinear_forward_int8, bitlinear_backward and bitlinear_backward_int8
 in train_gpt2_1bit.c.

   forward (float path):   x_q = bitlinear_input_forward(inp); out (N,OC) = x_q @ W^T + bias
   forward (integer path): codes, 1/s = bitlinear_input_forward(inp);
                           acc = codes . trits^T (exact int32, cuBLAS);
                           out = acc * (gamma * inv_s[n]) + bias   (dequant_epilogue)
   backward (straight-through estimator), for dout (N,OC):
                           dW_latent += dout^T @ x_q; dx_q = dout @ W_q; dx_n = dx_q;
                           inner norm: dx = r * (dx_n - x_n * mean(dx_n * x_n))
   backward, dX in integers (-bq int8): codes, 1/s_g = grad_quantize_rows(dout);
                           acc (N,IC) = codes . trits_t^T (exact int32, cuBLAS; trits_t = trits^T (IC,OC));
                           dx_q = acc * (gamma * inv_s[n]) (dequant_epilogue); dW as above
 inp is (N,IC); W is (OC,IC) floatX: W_q, or the latent weights in fp mode; trits (OC,IC) int8
 and gamma = scales[scale_index] (llmc/quantize.cuh has the format). With neither int8
 activations nor the inner norm, inp goes to the matmul as it is. x_q is not kept: the
 backward recomputes it from inp with the forward's kernel, which gives the same bits.
*/
#ifndef LLMC_BITLINEAR_CUH
#define LLMC_BITLINEAR_CUH

#include "cuda_common.h" // defines: floatX, to_float, from_float, warp_reduce_sum, ceil_div, cudaCheck
#include "gpt2_config.h" // defines: QuantConfig, AQ_NONE, AQ_INT8
#include "quantize.cuh"  // defines: bitlinear_input_forward (rmsnorm_quant_kernel), grad_quantize_rows
#include "matmul.cuh"    // defines: matmul_forward, matmul_backward, matmul_i8

// the scratch of a BitLinear call, shared by all layers, each sized for the largest (N, IC or OC)
typedef struct {
    floatX *xq;    // (N,IC) x_q: the float matmul's input, and the backward's
    int8_t *codes; // (N,IC) int8 codes of the integer path; (N,OC) dY's in the int8 backward
    float *inv_s;  // (N) 1/s of each row (of x, or of dY in the int8 backward)
    float *rstd;   // (N) 1/rms of the inner norm (1 without it)
    int32_t *acc;  // (N,OC) the integer path's int32 products; (N,IC) the int8 backward's
    floatX *dxn;   // (N,IC) dx_n, the gradient before the inner norm's backward
} BitLinearScratch;

// ----------------------------------------------------------------------------
// kernels

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
// One element's operations, shared by both kernels below so that they give the same bits: the
// product rounded on its own, then the bias added (two roundings, as the one-output-a-thread
// kernel has always compiled: FMUL then FADD in its sm_90 SASS). Written a * b, nvcc fuses the
// two into an FFMA (one rounding, another last bit) in the 128-bit kernel and not in the scalar
// one, so the product is __fmul_rn, which is never contracted. The CPU emulator (g++ without FMA
// instructions) never contracts either
__device__ static inline float mul_no_fma(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
__device__ static inline floatX dequant_value(int32_t a, float scale, const float *bias, float b) {
    float v = mul_no_fma((float)a, scale);
    return from_float<floatX>(bias != NULL ? v + b : v);
}

// the fallback: one output a thread
__global__ void dequant_epilogue_kernel(floatX *out, const int32_t *acc, const float *inv_s, const float *scales,
                                        int scale_index, const float *bias, int N, int OC) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)N * OC) { return; }
    int n = (int)(idx / OC), j = (int)(idx % OC);
    out[idx] = dequant_value(acc[idx], scales[scale_index] * inv_s[n], bias, bias != NULL ? bias[j] : 0.0f);
}

// 128-bit: x128::size outputs of one row a thread (8 in bf16: two 128-bit loads of acc, one
// 128-bit store; 4 in fp32: one and one), the row's scale computed once. Needs OC a multiple of
// x128::size (a thread's outputs then lie in one row) and acc, out 16-byte aligned; bias_vec:
// bias is too (else its values are read one by one)
__global__ void dequant_epilogue_kernel_vec(floatX *out, const int32_t *acc, const float *inv_s, const float *scales,
                                            int scale_index, const float *bias, int bias_vec, int N, int OC) {
    size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size; // this thread's first output
    if (idx >= (size_t)N * OC) { return; }
    int n = (int)(idx / OC), j = (int)(idx % OC);
    float scale = scales[scale_index] * inv_s[n];
    x128 o;
    #pragma unroll
    for (int k = 0; k < x128::size; k += 4) { // 4 int32 (and 4 biases) a 128-bit load
        Packed128<int32_t> a = load128(acc + idx + k);
        f128 b = {};
        if (bias != NULL && bias_vec) {
            b = load128(bias + j + k);
        } else if (bias != NULL) {
            for (int i = 0; i < 4; i++) { b[i] = bias[j + k + i]; }
        }
        #pragma unroll
        for (int i = 0; i < 4; i++) { o[k + i] = dequant_value(a[i], scale, bias, b[i]); }
    }
    store128(out + idx, o);
}

// out (N,OC) = acc (N,OC) * (scales[scale_index] * inv_s[n]) + bias[j] (bias may be NULL)
static inline void dequant_epilogue(floatX *out, const int32_t *acc, const float *inv_s, const float *scales,
                                    int scale_index, const float *bias, int N, int OC) {
    if (OC % x128::size == 0 && is_aligned128(acc) && is_aligned128(out)) {
        dequant_epilogue_kernel_vec<<<ceil_div((long long)N * OC / x128::size, 256), 256>>>(
            out, acc, inv_s, scales, scale_index, bias, bias != NULL && is_aligned128(bias), N, OC);
    } else {
        dequant_epilogue_kernel<<<ceil_div((long long)N * OC, 256), 256>>>(out, acc, inv_s, scales, scale_index,
                                                                             bias, N, OC);
    }
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// forward and backward

// the integer path's matmul: acc (N,OC) = codes (N,IC) . trits (OC,IC)^T, exact in int32, then
// out (N,OC) = acc * (gamma * inv_s[n]) + bias[j] with gamma = scales[scale_index] (bias may be NULL)
static inline void bitlinear_matmul_int8(floatX *out, int32_t *acc, const int8_t *codes, const float *inv_s,
                                         const int8_t *trits, const float *scales, int scale_index,
                                         const float *bias, int N, int IC, int OC) {
    matmul_i8(acc, codes, trits, N, IC, OC);
    dequant_epilogue(out, acc, inv_s, scales, scale_index, bias, N, OC);
}

// out (N,OC) = BitLinear(inp (N,IC)); use_int8: the integer path (int8 activations, and
// weights that are trits: then w is not read, trits and scales[scale_index] are). The bias twice:
// bias (fp32) for the integer path's epilogue, bias_x (its floatX copy) for the float path's
// cuBLASLt epilogue, which takes the bias in the output's type only
static inline void bitlinear_forward(floatX *out, const floatX *inp, const floatX *w, const int8_t *trits,
                                     const float *scales, int scale_index, const float *bias, const floatX *bias_x,
                                     BitLinearScratch *s, const QuantConfig *q, int use_int8, int N, int IC, int OC) {
    if (q->act_quant == AQ_NONE && !q->inner_norm) { // the input is used as it is (fp, and weights-only without norm)
        matmul_forward(out, inp, w, bias_x, N, IC, OC);
        return;
    }
    // the integer path reads only the codes (and 1/s); the float path only x_q
    bitlinear_input_forward(use_int8 ? NULL : s->xq, use_int8 ? s->codes : NULL, s->inv_s, s->rstd, inp, N, IC,
                            q->inner_norm, q->act_quant == AQ_INT8);
    if (use_int8) {
        // y = (gamma / s) * (codes . trits^T) + b: exact int32 products, scaled once
        bitlinear_matmul_int8(out, s->acc, s->codes, s->inv_s, trits, scales, scale_index, bias, N, IC, OC);
    } else {
        matmul_forward(out, s->xq, w, bias_x, N, IC, OC);
    }
}

// dx_q (N,IC) = dout (N,OC) @ W_q (OC,IC) in the integer form (-bq int8): with dout rounded to
// int8 per row, dy = q / s_g, and W_q = t * gamma, dx_q = (gamma / s_g) * (q . t), where q . t =
// q (N,OC) . trits_t (IC,OC)^T is the forward's int8 GEMM with IC and OC swapped: exact int32 sums
// (|sum| <= 128 * OC), the two scales applied once per output
static inline void bitlinear_dx_int8(floatX *dxq, const floatX *dout, const int8_t *trits_t, const float *scales,
                                     int scale_index, BitLinearScratch *s, int N, int IC, int OC) {
    grad_quantize_rows(s->codes, s->inv_s, dout, N, OC);
    bitlinear_matmul_int8(dxq, s->acc, s->codes, s->inv_s, trits_t, scales, scale_index, NULL, N, OC, IC);
}

// dinp (N,IC) overwritten; dweight (OC,IC), dbias (OC) accumulated; w as the forward's
// (W_q); partial: matmul_backward's column-sum scratch. With q->backward_quant == BQ_INT8, dX
// takes the integer path (bitlinear_dx_int8) from trits_t, the matrix's trits transposed (IC,OC),
// and gamma = scales[scale_index]; w is then not read (dW stays float either way)
static inline void bitlinear_backward(floatX *dinp, float *dweight, float *dbias, const floatX *dout, const floatX *inp,
                                      const floatX *w, const int8_t *trits_t, const float *scales, int scale_index,
                                      BitLinearScratch *s, float *partial, const QuantConfig *q, int N, int IC,
                                      int OC) {
    int int8_dx = q->backward_quant == BQ_INT8;
    const floatX *xq = inp; // the matmul's input: inp as it is, or x_q recomputed by the forward's kernel
    if (q->act_quant != AQ_NONE || q->inner_norm) {
        bitlinear_input_forward(s->xq, NULL, NULL, s->rstd, inp, N, IC, q->inner_norm, q->act_quant == AQ_INT8);
        xq = s->xq;
    }
    floatX *dxq = q->inner_norm ? s->dxn : dinp; // without the norm x_n = x: dx = dx_q
    matmul_backward(int8_dx ? NULL : dxq, dweight, dbias, dout, xq, w, N, IC, OC, partial);
    if (int8_dx) { bitlinear_dx_int8(dxq, dout, trits_t, scales, scale_index, s, N, IC, OC); }
    if (q->inner_norm) {
        rmsnorm_backward_kernel<<<ceil_div(N, 8), 256>>>(dinp, s->dxn, inp, s->rstd, N, IC);
        cudaCheck(cudaGetLastError());
    }
}

#endif // LLMC_BITLINEAR_CUH
