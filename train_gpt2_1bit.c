/*
 train_gpt2_1bit.c: train a 1-bit (ternary, BitNet b1.58) GPT-2 on the CPU.

 This file is the readable reference of the project and the oracle the CUDA
 trainer is tested against. Read it top to bottom:
   1. the layers of GPT-2, each as <op>_forward / <op>_backward in plain loops
   2. BitLinear: the one new layer of a 1-bit model, built from the quantizers
      of llmc/ternary.h and the ordinary matmul
   3. the model: one flat parameter buffer, forward, backward, AdamW
   4. checkpoints, diagnostics, and main(): the optimizer step, with gradient
      accumulation (-d); the bookkeeping around it (loaders, val loss, samples,
      checkpoints, main.log) is llmc/train_loop.h, shared with the CUDA trainer

 Build and run (trains a small model on tiny Shakespeare in a few minutes):
   make train_gpt2_1bit && ./train_gpt2_1bit
 Every flag with its default: ./train_gpt2_1bit -h

 The 1-bit recipe, in one paragraph (BitNet b1.58, arXiv 2402.17764; "The Era
 of 1-bit LLMs: Training Tips, Code and FAQ"): the four matrices of every
 block (qkv, attention projection, fc, fc projection) keep latent fp32 weights
 that the optimizer updates as usual, but the forward pass uses them only as
 ternary values {-1, 0, +1} times one per-tensor scale. Their inputs are
 RMS-normalised and rounded to int8 per token. Rounding has no useful
 derivative, so the backward pass pretends it was the identity (the
 straight-through estimator): the gradient computed for the quantized weights
 is applied to the latent ones. Embeddings, the tied output head and the norms
 stay in full precision. With -bq int8 the backward's dX = dY W_q takes the
 forward's integer form too: dY rounded to int8 per token, times the trits in
 exact int32 sums (bitlinear_backward_int8); dW stays float.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "llmc/utils.h"       // defines: fopenCheck, freadCheck, fwriteCheck, mallocCheck, ensure_writable_dir
#include "llmc/gpt2_config.h" // defines: GPT2Config, QuantConfig, ParameterTensors, fill_in_parameter_sizes
#include "llmc/ternary.h"     // defines: absmean_scale, ternarize, binarize, absmax_scale, quantize_int8
#include "llmc/checkpoint.h"  // defines: model_header_read, model_header_fill, safe_open, safe_close
#include "llmc/dataloader.h"  // defines: DataLoader, dataloaders_open, dataloader_next_batch
#include "llmc/tokenizer.h"   // defines: Tokenizer, tokenizer_init, tokenizer_print
#include "llmc/sampler.h"     // defines: random_u32, random_f32, random_normal, sample_logits
#include "llmc/schedulers.h"  // defines: Schedule, schedule_lr, schedule_wd
#include "llmc/logger.h"      // defines: Logger, logger_log_train, logger_log_val, logger_log_trit
#include "llmc/trit_stats.h"  // defines: TritStats, trit_stats_compute, trit_stats_print
#include "llmc/args.h"        // defines: TrainArgs, train_args_parse, train_args_usage
#include "llmc/hellaswag.h"   // defines: EvalLoader, evalloader_init, evalloader_accuracy, HELLASWAG_PATH
#include "llmc/ternary_kernels.h" // defines: tw_pack, tw_bytes, matmul_i8_tw, dequant_epilogue
#include "llmc/matmul_cpu.h"      // defines: matmul_cpu_forward, matmul_cpu_backward (this CPU's fast matmul)
#include "llmc/gelu_cpu.h"        // defines: gelu_expf (e^z that vectorizes, for the GELU)

// ----------------------------------------------------------------------------
// embeddings

// inp is (B,T) token ids; wte is (Vp,C), wpe is (maxT,C); out is (B,T,C)
void encoder_forward(float *out, const int *inp, const float *wte, const float *wpe, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *out_bt = out + (size_t)(b * T + t) * C;
            const float *wte_ix = wte + (size_t)inp[b * T + t] * C;
            const float *wpe_t = wpe + (size_t)t * C;
            for (int i = 0; i < C; i++) { out_bt[i] = wte_ix[i] + wpe_t[i]; }
        }
    }
}

void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *dout_bt = dout + (size_t)(b * T + t) * C;
            float *dwte_ix = dwte + (size_t)inp[b * T + t] * C;
            float *dwpe_t = dwpe + (size_t)t * C;
            for (int i = 0; i < C; i++) {
                dwte_ix[i] += dout_bt[i];
                dwpe_t[i] += dout_bt[i];
            }
        }
    }
}

// ----------------------------------------------------------------------------
// LayerNorm (with weight and bias: the pre-LN of GPT-2's blocks, full precision)

// inp, out are (N,C) with N = B*T rows; mean, rstd are (N) saved for the backward pass
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int N, int C) {
    const float eps = 1e-5f;
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float m = 0.0f;
        for (int i = 0; i < C; i++) { m += x[i]; }
        m = m / C;
        float v = 0.0f;
        for (int i = 0; i < C; i++) { float d = x[i] - m; v += d * d; }
        v = v / C;
        float s = 1.0f / sqrtf(v + eps);
        float *o = out + (size_t)n * C;
        for (int i = 0; i < C; i++) { o[i] = (s * (x[i] - m)) * weight[i] + bias[i]; }
        mean[n] = m;
        rstd[n] = s;
    }
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *dout_n = dout + (size_t)n * C;
        const float *inp_n = inp + (size_t)n * C;
        float *dinp_n = dinp + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        // two reductions: mean(dnorm) and mean(dnorm * norm)
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int i = 0; i < C; i++) {
            float norm_i = (inp_n[i] - m) * s;
            float dnorm_i = weight[i] * dout_n[i];
            dnorm_mean += dnorm_i;
            dnorm_norm_mean += dnorm_i * norm_i;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        for (int i = 0; i < C; i++) {
            float norm_i = (inp_n[i] - m) * s;
            float dnorm_i = weight[i] * dout_n[i];
            dbias[i] += dout_n[i];
            dweight[i] += norm_i * dout_n[i];
            dinp_n[i] += (dnorm_i - dnorm_mean - norm_i * dnorm_norm_mean) * s;
        }
    }
}

// ----------------------------------------------------------------------------
// matmul: the one kernel every product in the model goes through

// -mp: the precision of the matmuls' float operands. 0: fp32, the spec. 1: bf16, the CUDA trainer's
// default build's: both operands rounded to bf16 (llmc/matmul_cpu.h: bf16_round), their products
// (exact in fp32) summed in fp32; on a CPU with AVX512-BF16 at twice the fp32 rate (vdpbf16ps)
static int matmul_bf16 = 0;

// out (M,N) = inp (M,K) @ weight (N,K)^T (+ bias (N)); both operands are
// K-contiguous, so each output is a dot product along K. Blocking: a block of
// weight rows that fits in L2 is reused by every 4-row tile of inp, and each
// tile computes 4x2 outputs at once so every loaded value feeds several FMAs.
// A long K (the lm_head's backward has K = Vp) is cut into chunks that keep a
// tile in cache; chunks after the first add to out. bias may be NULL.
#define MATMUL_K_CHUNK 4096
static void matmul_chunk(float *out, const float *inp, const float *weight, const float *bias,
                         int M, int K, int N, int k0, int k1) {
    int KC = k1 - k0, accumulate = k0 > 0;
    int NB = 65536 / KC; // weight rows per block: about 256 KiB of L2
    NB = NB < 2 ? 2 : (NB & ~1);
    int nblocks = (N + NB - 1) / NB, mtiles = (M + 3) / 4;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int nb = 0; nb < nblocks; nb++) {
        for (int mt = 0; mt < mtiles; mt++) {
            int m0 = mt * 4, n = nb * NB;
            int n_end = n + NB < N ? n + NB : N;
            if (m0 + 4 <= M) { // a full tile of 4 rows: 4x2 outputs at a time
                const float *x0 = inp + (size_t)m0 * K + k0, *x1 = x0 + K, *x2 = x1 + K, *x3 = x2 + K;
                for (; n + 2 <= n_end; n += 2) {
                    const float *w0 = weight + (size_t)n * K + k0, *w1 = w0 + K;
                    float s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
                    #pragma omp simd reduction(+ : s00, s01, s10, s11, s20, s21, s30, s31)
                    for (int k = 0; k < KC; k++) {
                        s00 += x0[k] * w0[k]; s01 += x0[k] * w1[k];
                        s10 += x1[k] * w0[k]; s11 += x1[k] * w1[k];
                        s20 += x2[k] * w0[k]; s21 += x2[k] * w1[k];
                        s30 += x3[k] * w0[k]; s31 += x3[k] * w1[k];
                    }
                    float *o = out + (size_t)m0 * N + n;
                    if (accumulate) {
                        o[0] += s00; o[1] += s01; o += N;
                        o[0] += s10; o[1] += s11; o += N;
                        o[0] += s20; o[1] += s21; o += N;
                        o[0] += s30; o[1] += s31;
                    } else {
                        float b0 = bias ? bias[n] : 0.0f, b1 = bias ? bias[n + 1] : 0.0f;
                        o[0] = s00 + b0; o[1] = s01 + b1; o += N;
                        o[0] = s10 + b0; o[1] = s11 + b1; o += N;
                        o[0] = s20 + b0; o[1] = s21 + b1; o += N;
                        o[0] = s30 + b0; o[1] = s31 + b1;
                    }
                }
            }
            // what the tiles did not cover (an odd last column, or a last partial
            // tile of rows): plain dot products
            for (int m = m0; m < m0 + 4 && m < M; m++) {
                for (int j = n; j < n_end; j++) {
                    const float *x = inp + (size_t)m * K + k0, *w = weight + (size_t)j * K + k0;
                    float s = 0.0f;
                    #pragma omp simd reduction(+ : s)
                    for (int k = 0; k < KC; k++) { s += x[k] * w[k]; }
                    float *o = out + (size_t)m * N + j;
                    *o = accumulate ? *o + s : s + (bias ? bias[j] : 0.0f);
                }
            }
        }
    }
}

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int M, int K, int N) {
    // this CPU's fast path, when it has one (llmc/matmul_cpu.h: the same sums, register-blocked for
    // AVX2 or AVX-512); the loops below are the spec it is tested against, and the scalar path
    if (matmul_cpu_forward(out, inp, weight, bias, M, K, N, matmul_bf16)) { return; }
    float *rounded = NULL; // bf16: the same loops on rounded copies of the operands
    if (matmul_bf16) {
        rounded = (float *)mallocCheck(((size_t)M * K + (size_t)N * K) * sizeof(float));
        bf16_round_floats(rounded, inp, (size_t)M * K);
        bf16_round_floats(rounded + (size_t)M * K, weight, (size_t)N * K);
        inp = rounded;
        weight = rounded + (size_t)M * K;
    }
    for (int k0 = 0; k0 < K; k0 += MATMUL_K_CHUNK) {
        int k1 = k0 + MATMUL_K_CHUNK < K ? k0 + MATMUL_K_CHUNK : K;
        matmul_chunk(out, inp, weight, bias, M, K, N, k0, k1);
    }
    free(rounded);
}

// dst (cols, rows) = src (rows, cols)^T
// in 32x32 tiles, so both the reads and the writes stay within a few cache lines
void transpose(float *dst, const float *src, int rows, int cols) {
    #pragma omp parallel for collapse(2)
    for (int r0 = 0; r0 < rows; r0 += 32) {
        for (int c0 = 0; c0 < cols; c0 += 32) {
            for (int r = r0; r < r0 + 32 && r < rows; r++) {
                for (int c = c0; c < c0 + 32 && c < cols; c++) { dst[(size_t)c * rows + r] = src[(size_t)r * cols + c]; }
            }
        }
    }
}

// Backward of out = inp @ weight^T + bias, with inp (M,K), weight (N,K), dout (M,N).
// Both products are turned into the dot-product form of matmul_forward by
// transposing one operand:
//   dinp (M,K)    += dout (M,N) @ weight (N,K)         = dout @ (weight^T)^T
//   dweight (N,K) += dout^T (N,M) @ inp (M,K)          = dout^T @ (inp^T)^T
// scratch holds matmul_scratch_size(M, K, N) floats. dinp, dbias may be NULL.
static size_t matmul_scratch_size(int M, int K, int N) {
    size_t MK = (size_t)M * K, NK = (size_t)N * K, MN = (size_t)M * N;
    return (NK + MN) + (MK + MN) + (MK > NK ? MK : NK);
}
void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int M, int K, int N, float *scratch) {
    // the fast path accumulates both products in place, reading the operands as they lie
    if (!matmul_cpu_backward(dinp, dweight, dout, inp, weight, M, K, N, matmul_bf16)) { // (else: its spec)
        float *t_a = scratch;                     // a transposed operand
        float *t_b = t_a + (size_t)N * K + (size_t)M * N;
        float *prod = t_b + (size_t)M * K + (size_t)M * N; // a product before it is accumulated
        if (dinp != NULL) {
            transpose(t_a, weight, N, K);                  // (K,N)
            matmul_forward(prod, dout, t_a, NULL, M, N, K); // (M,K)
            size_t n = (size_t)M * K;
            #pragma omp parallel for
            for (size_t i = 0; i < n; i++) { dinp[i] += prod[i]; }
        }
        transpose(t_a, dout, M, N);                    // (N,M)
        transpose(t_b, inp, M, K);                     // (K,M)
        matmul_forward(prod, t_a, t_b, NULL, N, M, K); // (N,K)
        size_t n = (size_t)N * K;
        #pragma omp parallel for
        for (size_t i = 0; i < n; i++) { dweight[i] += prod[i]; }
    }
    if (dbias != NULL) {
        for (int m = 0; m < M; m++) {
            for (int j = 0; j < N; j++) { dbias[j] += dout[(size_t)m * N + j]; }
        }
    }
}

// ----------------------------------------------------------------------------
// BitLinear (BitNet b1.58): y = Quant_int8(RMSNorm(x)) @ Ternary(W)^T + b

// W_q as floats from its codes: wq = trit * scale (n values)
void weights_dequantize(float *wq, const int8_t *trits, float scale, size_t n) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) { wq[i] = trits[i] * scale; }
}

// Rebuild the quantized form of one latent weight matrix of n values:
// trits = the {-1,0,+1} codes (what the integer matmuls use, packed), and wq =
// W_q as floats (what the float matmuls use; may be NULL when none will).
// Returns the scale (gamma for ternary, beta for binary).
float weights_quantize(float *wq, int8_t *trits, const float *w, size_t n, int mode) {
    if (mode == WQ_TERNARY) {
        // BitNet b1.58 eq. 1-3: gamma = mean|W|, W_q = clamp(round(W / gamma), -1, 1) * gamma
        float gamma = absmean_scale(w, n);
        #pragma omp simd
        for (size_t i = 0; i < n; i++) { trits[i] = ternarize(w[i], gamma); }
        if (wq != NULL) { weights_dequantize(wq, trits, gamma, n); }
        return gamma;
    }
    // BitNet (b1) eq. 2-4: W_b = sign(W - mean(W)) * mean|W|
    float alpha = mean_value(w, n), beta = absmean_scale(w, n);
    #pragma omp simd
    for (size_t i = 0; i < n; i++) { trits[i] = binarize(w[i], alpha); }
    if (wq != NULL) { weights_dequantize(wq, trits, beta, n); }
    return beta;
}

// The input side of BitLinear, row by row. inp is (N,IC); xq (N,IC) receives
// what the matmul will see; rstd (N) keeps the inner norm's 1/rms for backward.
//   inner norm (parameter-free RMSNorm): x_n = x / sqrt(mean(x^2) + eps)
//   int8 (BitNet eq. 4, per token):      x_q = clamp(round(x_n * s), -128, 127) / s,  s = 127 / max|x_n|
// For the integer matmul, xi8 (N,IC) and inv_s (N) may receive the int8 codes
// and 1/s of each row (pass NULL when not needed).
void bitlinear_input_forward(float *xq, int8_t *xi8, float *inv_s, float *rstd, const float *inp, int N, int IC,
                             const QuantConfig *q) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * IC;
        float *o = xq + (size_t)n * IC;
        float r = 1.0f;
        if (q->inner_norm) {
            float ss = 0.0f;
            for (int i = 0; i < IC; i++) { ss += x[i] * x[i]; }
            r = 1.0f / sqrtf(ss / IC + RMSNORM_EPS);
        }
        rstd[n] = r;
        for (int i = 0; i < IC; i++) { o[i] = x[i] * r; }
        if (q->act_quant == AQ_INT8) {
            float s = absmax_scale(o, IC);
            for (int i = 0; i < IC; i++) {
                int8_t code = quantize_int8(o[i], s);
                o[i] = code / s;
                if (xi8 != NULL) { xi8[(size_t)n * IC + i] = code; }
            }
            if (inv_s != NULL) { inv_s[n] = 1.0f / s; }
        }
    }
}

// out (N,OC) = BitLinear(inp (N,IC)); wq is the (OC,IC) weight the forward uses:
// the quantized copy, or the latent weights themselves in fp mode
void bitlinear_forward(float *out, float *xq, float *rstd, const float *inp, const float *wq, const float *bias,
                       int N, int IC, int OC, const QuantConfig *q) {
    bitlinear_input_forward(xq, NULL, NULL, rstd, inp, N, IC, q);
    matmul_forward(out, xq, wq, bias, N, IC, OC);
}

// The same in BitNet b1.58's inference form, for int8 activations and ternary
// (or binary) weights: with x_q = q / s (q int8) and W_q = t * gamma (t a trit),
//   y = x_q W_q^T + b = (gamma / s) * (q t^T) + b
// where q t^T is an exact int32 product of int8 codes and packed trits (llmc/ternary_kernels.h:
// 2-bit rows, or int8 code panels on AVX-512), and the two scales are applied once per output.
// w2 is (OC, IC) packed by tw_pack in the form w_format; xi8 (N,IC), inv_s (N), acc (N,OC) are scratch.
void bitlinear_forward_int8(float *out, float *xq, float *rstd, int8_t *xi8, float *inv_s, int32_t *acc,
                            const float *inp, const uint8_t *w2, int w_format, float w_scale, const float *bias,
                            int N, int IC, int OC, const QuantConfig *q) {
    bitlinear_input_forward(xq, xi8, inv_s, rstd, inp, N, IC, q); // xq is still needed by the backward
    matmul_i8_tw(w_format, acc, xi8, w2, N, IC, OC);
    dequant_epilogue(out, acc, inv_s, w_scale, bias, N, OC);
}

// The inner norm's backward, row by row: dinp (N,IC) += the gradient through x_n = x * r, from
// dxn_buf (N,IC) = dx_n, with the RMSNorm derivative dx = r * (dx_n - x_n * mean(dx_n * x_n))
static void bitlinear_norm_backward(float *dinp, const float *dxn_buf, const float *inp, const float *rstd, int N,
                                    int IC) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * IC, *dxn = dxn_buf + (size_t)n * IC;
        float *dx = dinp + (size_t)n * IC;
        float r = rstd[n];
        float dot = 0.0f; // mean(dx_n * x_n)
        for (int i = 0; i < IC; i++) { dot += dxn[i] * x[i] * r; }
        dot /= IC;
        for (int i = 0; i < IC; i++) { dx[i] += r * (dxn[i] - x[i] * r * dot); }
    }
}

// Backward with the straight-through estimator (STE):
//   dW_latent += dout^T @ x_q       (the gradient of W_q, applied to the latent W)
//   dx_q = dout @ W_q;  dx_n = dx_q (rounding counts as the identity)
//   inner norm: dx = r * (dx_n - x_n * mean(dx_n * x_n)), the RMSNorm derivative
// dxn_buf holds N*IC floats; scratch as for matmul_backward.
void bitlinear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *xq, const float *rstd, const float *wq, int N, int IC, int OC,
                        const QuantConfig *q, float *dxn_buf, float *scratch) {
    if (!q->inner_norm) { // x_n = x: accumulate straight into dinp
        matmul_backward(dinp, dweight, dbias, dout, xq, wq, N, IC, OC, scratch);
        return;
    }
    memset(dxn_buf, 0, (size_t)N * IC * sizeof(float));
    matmul_backward(dxn_buf, dweight, dbias, dout, xq, wq, N, IC, OC, scratch);
    bitlinear_norm_backward(dinp, dxn_buf, inp, rstd, N, IC);
}

// dY (N,OC) to int8 per token, as the activations are (llmc/ternary.h: grad_absmax_scale, quantize_int8):
//   s_g = 127 / max|dy|,  q = clamp(round(dy * s_g), -128, 127);  qi8 (N,OC) gets q, inv_s (N) 1/s_g
void grad_quantize_rows(int8_t *qi8, float *inv_s, const float *dout, int N, int OC) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *g = dout + (size_t)n * OC;
        int8_t *q = qi8 + (size_t)n * OC;
        float s = grad_absmax_scale(g, OC);
        for (int i = 0; i < OC; i++) { q[i] = quantize_int8(g[i], s); }
        inv_s[n] = 1.0f / s;
    }
}

// The backward with dX in the integer form (-bq int8, issue 14). With dY quantized per token,
// dy = q / s_g (q int8), and W_q = t * gamma (t a trit, or a sign in binary mode):
//   dx_q (N,IC) = dy (N,OC) @ W_q (OC,IC) = (gamma / s_g) * (q @ t)      q @ t exact in int32 (|sum| <= 128 * OC)
// q @ t = q @ (t^T)^T is matmul_i8_tw on the trits packed transposed (w2t: IC rows of OC trits,
// tw_pack_transposed, in the form w_format), and the two scales are applied once per output. The one new rounding is
// dY's to int8; dW and db stay float (dW_latent += dout^T @ x_q), and after dx_q the chain is the
// float path's: dx_n = dx_q, then the inner norm's backward.
// qi8 (N,OC), inv_s (N), acc (N,IC) are scratch; dxn_buf holds N*IC floats.
void bitlinear_backward_int8(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *xq, const float *rstd, const uint8_t *w2t, int w_format, float w_scale, int8_t *qi8,
                             float *inv_s, int32_t *acc, int N, int IC, int OC, const QuantConfig *q,
                             float *dxn_buf, float *scratch) {
    matmul_backward(NULL, dweight, dbias, dout, xq, NULL, N, IC, OC, scratch); // dW and db only
    grad_quantize_rows(qi8, inv_s, dout, N, OC);
    matmul_i8_tw(w_format, acc, qi8, w2t, N, OC, IC);            // q @ t: (N,OC) x (OC,IC) -> (N,IC) int32
    dequant_epilogue(dxn_buf, acc, inv_s, w_scale, NULL, N, IC); // dx_q = acc * gamma / s_g
    if (!q->inner_norm) { // x_n = x: dx = dx_q
        size_t n = (size_t)N * IC;
        #pragma omp parallel for
        for (size_t i = 0; i < n; i++) { dinp[i] += dxn_buf[i]; }
        return;
    }
    bitlinear_norm_backward(dinp, dxn_buf, inp, rstd, N, IC);
}

// ----------------------------------------------------------------------------
// causal self-attention (full precision)

// inp is (B,T,3C) holding q,k,v; preatt, att are (B,NH,T,T); out is (B,T,C)
void attention_forward(float *out, float *preatt, float *att, const float *inp, int B, int T, int C, int NH) {
    int C3 = C * 3, hs = C / NH;
    float scale = 1.0f / sqrtf(hs);
    #pragma omp parallel for collapse(3)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < NH; h++) {
                const float *query_t = inp + (size_t)(b * T + t) * C3 + h * hs;
                float *preatt_bth = preatt + ((size_t)(b * NH + h) * T + t) * T;
                float *att_bth = att + ((size_t)(b * NH + h) * T + t) * T;
                // scores q.k / sqrt(hs) against positions 0..t (causal)
                float maxval = -1e30f;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *key_t2 = inp + (size_t)(b * T + t2) * C3 + h * hs + C;
                    float v = 0.0f;
                    for (int i = 0; i < hs; i++) { v += query_t[i] * key_t2[i]; }
                    v *= scale;
                    maxval = v > maxval ? v : maxval;
                    preatt_bth[t2] = v;
                }
                // softmax; positions after t get 0 so the backward can loop over all of them
                float expsum = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    float e = expf(preatt_bth[t2] - maxval);
                    expsum += e;
                    att_bth[t2] = e;
                }
                float inv = expsum == 0.0f ? 0.0f : 1.0f / expsum;
                for (int t2 = 0; t2 < T; t2++) { att_bth[t2] = t2 <= t ? att_bth[t2] * inv : 0.0f; }
                // weighted sum of the values
                float *out_bth = out + (size_t)(b * T + t) * C + h * hs;
                for (int i = 0; i < hs; i++) { out_bth[i] = 0.0f; }
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *value_t2 = inp + (size_t)(b * T + t2) * C3 + h * hs + 2 * C;
                    float a = att_bth[t2];
                    for (int i = 0; i < hs; i++) { out_bth[i] += a * value_t2[i]; }
                }
            }
        }
    }
}

void attention_backward(float *dinp, float *dpreatt, float *datt, const float *dout, const float *inp,
                        const float *att, int B, int T, int C, int NH) {
    int C3 = C * 3, hs = C / NH;
    float scale = 1.0f / sqrtf(hs);
    // parallel over (b, h): different heads write disjoint channels of dinp
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float *att_bth = att + ((size_t)(b * NH + h) * T + t) * T;
                float *datt_bth = datt + ((size_t)(b * NH + h) * T + t) * T;
                float *dpreatt_bth = dpreatt + ((size_t)(b * NH + h) * T + t) * T;
                const float *dout_bth = dout + (size_t)(b * T + t) * C + h * hs;
                const float *query_t = inp + (size_t)(b * T + t) * C3 + h * hs;
                float *dquery_t = dinp + (size_t)(b * T + t) * C3 + h * hs;
                // backward through the weighted sum of values
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *value_t2 = inp + (size_t)(b * T + t2) * C3 + h * hs + 2 * C;
                    float *dvalue_t2 = dinp + (size_t)(b * T + t2) * C3 + h * hs + 2 * C;
                    float d = 0.0f;
                    for (int i = 0; i < hs; i++) {
                        d += value_t2[i] * dout_bth[i];
                        dvalue_t2[i] += att_bth[t2] * dout_bth[i];
                    }
                    datt_bth[t2] = d;
                }
                // softmax backward: dpre = att * (datt - sum(att * datt))
                float dot = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) { dot += att_bth[t2] * datt_bth[t2]; }
                for (int t2 = 0; t2 <= t; t2++) { dpreatt_bth[t2] = att_bth[t2] * (datt_bth[t2] - dot); }
                // backward through q.k * scale
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *key_t2 = inp + (size_t)(b * T + t2) * C3 + h * hs + C;
                    float *dkey_t2 = dinp + (size_t)(b * T + t2) * C3 + h * hs + C;
                    float d = dpreatt_bth[t2] * scale;
                    for (int i = 0; i < hs; i++) {
                        dquery_t[i] += key_t2[i] * d;
                        dkey_t2[i] += query_t[i] * d;
                    }
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------
// GELU (tanh approximation, as GPT-2), residual, softmax + cross-entropy

// GELU, the tanh approximation GPT-2 uses (Hendrycks & Gimpel 2016, "Gaussian Error Linear Units"):
//   gelu(x) = 0.5 x (1 + tanh(u)),   u = sqrt(2/pi) (x + 0.044715 x^3)
// computed from e = e^(-2u) instead of tanhf (libm's, one value at a time: ~10% of a step at d12):
// 1 + tanh(u) = 2 e^u / (e^u + e^-u) = 2 / (1 + e), so gelu(x) = x / (1 + e). llmc/gelu_cpu.h's
// gelu_expf is an e^z that vectorizes (within 2 ulps; the GELU within a few, tests/test_units.c).
// For x < 0 this is also the more accurate form: 1 + tanh(u) cancels as tanh(u) -> -1, 1 + e does not.
#define GELU_SCALING_FACTOR 0.7978845608028654f // sqrt(2 / pi)
void gelu_forward(float *out, const float *inp, size_t N) {
    #pragma omp parallel for simd
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float cube = 0.044715f * x * x * x;
        float u = GELU_SCALING_FACTOR * (x + cube);
        out[i] = x / (1.0f + gelu_expf(-2.0f * u)); // 0.5 x (1 + tanh(u))
    }
}

// gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x sech^2(u) du/dx,   du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
// with e = e^(-2u): 0.5 (1 + tanh(u)) = 1 / (1 + e) and sech^2(u) = 1 - tanh^2(u) = 4 e / (1 + e)^2,
// both without the cancellation of 1 + tanh and 1 - tanh^2 in the tails (4 e <= 4 e^87 < FLT_MAX)
void gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
    #pragma omp parallel for simd
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float cube = 0.044715f * x * x * x;
        float u = GELU_SCALING_FACTOR * (x + cube);
        float e = gelu_expf(-2.0f * u);
        float half_1_tanh = 1.0f / (1.0f + e);                 // 0.5 (1 + tanh(u))
        float sech2 = 4.0f * e * half_1_tanh * half_1_tanh;    // sech^2(u)
        float local_grad = half_1_tanh +
                           x * 0.5f * sech2 * GELU_SCALING_FACTOR * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += local_grad * dout[i];
    }
}

void residual_forward(float *out, const float *inp1, const float *inp2, size_t N) {
    for (size_t i = 0; i < N; i++) { out[i] = inp1[i] + inp2[i]; }
}

void residual_backward(float *dinp1, float *dinp2, const float *dout, size_t N) {
    for (size_t i = 0; i < N; i++) {
        dinp1[i] += dout[i];
        dinp2[i] += dout[i];
    }
}

// logits, probs are (N,Vp); only the first V columns are real tokens
void softmax_forward(float *probs, const float *logits, int N, int V, int Vp) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * Vp;
        float *p = probs + (size_t)n * Vp;
        float maxval = -1e30f;
        for (int i = 0; i < V; i++) { maxval = l[i] > maxval ? l[i] : maxval; }
        float sum = 0.0f;
        for (int i = 0; i < V; i++) { p[i] = expf(l[i] - maxval); sum += p[i]; }
        for (int i = 0; i < V; i++) { p[i] /= sum; }
        for (int i = V; i < Vp; i++) { p[i] = 0.0f; }
    }
}

void crossentropy_forward(float *losses, const float *probs, const int *targets, int N, int Vp) {
    for (int n = 0; n < N; n++) { losses[n] = -logf(probs[(size_t)n * Vp + targets[n]]); }
}

// d(mean loss)/dlogits = (probs - onehot(target)) / N
void crossentropy_softmax_backward(float *dlogits, const float *probs, const int *targets, int N, int V, int Vp) {
    float dloss = 1.0f / N;
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        float *dl = dlogits + (size_t)n * Vp;
        const float *p = probs + (size_t)n * Vp;
        for (int i = 0; i < V; i++) { dl[i] += (p[i] - (i == targets[n] ? 1.0f : 0.0f)) * dloss; }
    }
}

// ----------------------------------------------------------------------------
// activations: what the forward pass keeps for the backward pass

#define NUM_ACTS 31
typedef struct {
    float *encoded;   // (B,T,C)
    float *ln1;       // (L,B,T,C)
    float *ln1_mean;  // (L,B,T)
    float *ln1_rstd;  // (L,B,T)
    float *qkv_xq;    // (L,B,T,C)  the qkv BitLinear's input as the matmul sees it (normed, quantized)
    float *qkv_rstd;  // (L,B,T)    its inner-norm 1/rms
    float *qkv;       // (L,B,T,3C)
    float *atty;      // (L,B,T,C)
    float *preatt;    // (L,B,NH,T,T)
    float *att;       // (L,B,NH,T,T)
    float *attproj_xq;   // (L,B,T,C)
    float *attproj_rstd; // (L,B,T)
    float *attproj;   // (L,B,T,C)
    float *residual2; // (L,B,T,C)
    float *ln2;       // (L,B,T,C)
    float *ln2_mean;  // (L,B,T)
    float *ln2_rstd;  // (L,B,T)
    float *fc_xq;     // (L,B,T,C)
    float *fc_rstd;   // (L,B,T)
    float *fch;       // (L,B,T,4C)
    float *fch_gelu;  // (L,B,T,4C)
    float *fcproj_xq;   // (L,B,T,4C)
    float *fcproj_rstd; // (L,B,T)
    float *fcproj;    // (L,B,T,C)
    float *residual3; // (L,B,T,C)
    float *lnf;       // (B,T,C)
    float *lnf_mean;  // (B,T)
    float *lnf_rstd;  // (B,T)
    float *logits;    // (B,T,Vp)
    float *probs;     // (B,T,Vp)
    float *losses;    // (B,T)
} ActivationTensors;

static void fill_in_activation_sizes(size_t *s, const GPT2Config *cfg, int B, int T) {
    size_t C = cfg->channels, NH = cfg->num_heads, L = cfg->num_layers, Vp = cfg->padded_vocab_size;
    size_t BT = (size_t)B * T;
    size_t sizes[NUM_ACTS] = {
        BT * C,                                       // encoded
        L * BT * C, L * BT, L * BT,                   // ln1, ln1_mean, ln1_rstd
        L * BT * C, L * BT, L * BT * 3 * C,           // qkv_xq, qkv_rstd, qkv
        L * BT * C, L * B * NH * T * T, L * B * NH * T * T, // atty, preatt, att
        L * BT * C, L * BT, L * BT * C, L * BT * C,   // attproj_xq, attproj_rstd, attproj, residual2
        L * BT * C, L * BT, L * BT,                   // ln2, ln2_mean, ln2_rstd
        L * BT * C, L * BT, L * BT * 4 * C, L * BT * 4 * C, // fc_xq, fc_rstd, fch, fch_gelu
        L * BT * 4 * C, L * BT, L * BT * C, L * BT * C, // fcproj_xq, fcproj_rstd, fcproj, residual3
        BT * C, BT, BT,                               // lnf, lnf_mean, lnf_rstd
        BT * Vp, BT * Vp, BT};                        // logits, probs, losses
    memcpy(s, sizes, sizeof(sizes));
}

static float *point_activations(ActivationTensors *acts, const size_t *sizes, float *memory) {
    float **ptrs[NUM_ACTS] = {
        &acts->encoded, &acts->ln1, &acts->ln1_mean, &acts->ln1_rstd, &acts->qkv_xq, &acts->qkv_rstd,
        &acts->qkv, &acts->atty, &acts->preatt, &acts->att, &acts->attproj_xq, &acts->attproj_rstd,
        &acts->attproj, &acts->residual2, &acts->ln2, &acts->ln2_mean, &acts->ln2_rstd, &acts->fc_xq,
        &acts->fc_rstd, &acts->fch, &acts->fch_gelu, &acts->fcproj_xq, &acts->fcproj_rstd,
        &acts->fcproj, &acts->residual3, &acts->lnf, &acts->lnf_mean, &acts->lnf_rstd, &acts->logits,
        &acts->probs, &acts->losses};
    for (int i = 0; i < NUM_ACTS; i++) { *(ptrs[i]) = memory; memory += sizes[i]; }
    return memory;
}

// ----------------------------------------------------------------------------
// the model

typedef struct {
    GPT2Config config;
    QuantConfig quant;
    // the latent weights: one flat buffer with named views into it
    ParameterTensors params;
    size_t param_sizes[NUM_PARAMETER_TENSORS];
    float *params_memory;
    size_t num_parameters;
    // gradients and AdamW moments share the layout
    ParameterTensors grads;
    float *grads_memory;
    float *m_memory;
    float *v_memory;
    // the quantized BitLinear weights, rebuilt from the latent ones after each
    // update: wq holds W_q as floats (L*4 matrices, tensor order qkv, attproj,
    // fc, fcproj, each (L,OC,IC)), trits their codes, scales (L,4) their gammas
    float *wq_memory;
    int8_t *trits;
    int8_t *trits_prev; // the trits at the last diagnostics report, for the flip rate
    float scales[4 * 64];
    size_t wq_offset[NUM_BITLINEAR]; // where each matrix kind starts in wq_memory / trits
    size_t num_bitlinear_weights;
    uint8_t *w2_memory; // the trits in their compute form, for the integer forward (llmc/ternary_kernels.h:
    size_t w2_offset[NUM_BITLINEAR]; // 2-bit rows, or int8 panels on AVX-512)
    int tw_format;      // that form, TW_T2 or TW_P8 (chosen by the CPU path at allocation)
    int int8_forward;   // 1: BitLinear forward as int8 x packed trits (int8 activations, ternary/binary weights)
    int8_t *xi8;        // scratch of the integer forward: int8 codes (B*T, 4C),
    float *inv_s;       // their 1/s per row (B*T),
    int32_t *acc;       // and the int32 products (B*T, 4C); the int8 backward (-bq int8) reuses all three
    uint8_t *w2t_memory; // -bq int8: the trits transposed (each matrix (IC,OC)), in the compute form, for dX = dY W_q
    size_t w2t_offset[NUM_BITLINEAR];
    int w2t_stale;      // 1 when the trits changed since w2t_memory was packed
    int wq_stale;       // 1 when the latent weights changed since the last quantization
    int wqf_stale;      // 1 when wq_memory (W_q as floats) is behind the trits: made when first needed
    int have_trits_prev;
    // activations and their gradients, for the B,T of the first forward pass
    ActivationTensors acts;
    size_t act_sizes[NUM_ACTS];
    float *acts_memory;
    size_t num_activations;
    ActivationTensors grads_acts;
    float *grads_acts_memory;
    float *scratch;     // matmul_backward's transposes and products
    float *dxn_buf;     // bitlinear_backward's dx_n
    int batch_size;
    int seq_len;
    int *inputs;
    int *targets;
    float mean_loss;    // -1 when the last forward pass had no targets
} GPT2;

// the BitLinear matrices of every layer packed in the compute form `format`, each (OC,IC), or
// (IC,OC) when transposed: where each kind k starts (offset, may be NULL), and the bytes of all
static size_t gpt2_tw_layout(const GPT2Config *cfg, int format, int transposed, size_t *offset) {
    size_t bytes = 0;
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(cfg, k, &OC, &IC);
        if (offset != NULL) { offset[k] = bytes; }
        bytes += (size_t)cfg->num_layers * (transposed ? tw_bytes(format, IC, OC) : tw_bytes(format, OC, IC));
    }
    return bytes;
}

// the compute form of the trits (llmc/ternary_kernels.h's tw_*): (re)allocates w2 for it, and the
// quantized weights are rebuilt before their next use. The decoder (run_gpt2_1bit) keeps TW_T2.
static void gpt2_set_weight_format(GPT2 *model, int format) {
    if (model->w2_memory != NULL && model->tw_format == format) { return; }
    model->tw_format = format;
    size_t w2_bytes = gpt2_tw_layout(&model->config, format, 0, model->w2_offset);
    free(model->w2_memory);
    model->w2_memory = (uint8_t *)mallocCheck(w2_bytes);
    for (int k = 0; k < NUM_BITLINEAR; k++) { model->w2t_offset[k] = 0; }
    free(model->w2t_memory);
    model->w2t_memory = NULL; // allocated by the first backward that needs it (-bq int8)
    model->w2t_stale = 1;
    model->wq_stale = 1;
}

// allocate the parameter-shaped buffers for model->config (params are left uninitialised)
static void gpt2_allocate(GPT2 *model) {
    GPT2Config *cfg = &model->config;
    if (cfg->num_layers > 64) {
        fprintf(stderr, "error: %d layers: this trainer supports at most 64\n", cfg->num_layers);
        exit(EXIT_FAILURE);
    }
    fill_in_parameter_sizes(model->param_sizes, cfg);
    model->num_parameters = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { model->num_parameters += model->param_sizes[i]; }
    model->params_memory = (float *)mallocCheck(model->num_parameters * sizeof(float));
    point_parameters(&model->params, model->param_sizes, model->params_memory);
    model->num_bitlinear_weights = 0;
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        model->wq_offset[k] = model->num_bitlinear_weights;
        model->num_bitlinear_weights += model->param_sizes[BITLINEAR_TENSOR[k]];
    }
    model->wq_memory = (float *)mallocCheck(model->num_bitlinear_weights * sizeof(float));
    model->w2_memory = NULL;
    model->w2t_memory = NULL;
    gpt2_set_weight_format(model, tw_format_of_path());
    model->int8_forward = 1;
    model->xi8 = NULL;
    model->inv_s = NULL;
    model->acc = NULL;
    model->trits = (int8_t *)callocCheck(model->num_bitlinear_weights, 1);
    model->trits_prev = (int8_t *)callocCheck(model->num_bitlinear_weights, 1);
    model->wq_stale = 1;
    model->wqf_stale = 0;
    model->have_trits_prev = 0;
    model->grads_memory = NULL;
    model->m_memory = NULL;
    model->v_memory = NULL;
    model->acts_memory = NULL;
    model->grads_acts_memory = NULL;
    model->scratch = NULL;
    model->dxn_buf = NULL;
    model->inputs = NULL;
    model->targets = NULL;
    model->batch_size = 0;
    model->seq_len = 0;
    model->mean_loss = -1.0f;
}

// Load a model file (ours or llm.c's); see model_file_open for how the modes
// of the file and of the flags combine.
void gpt2_build_from_checkpoint(GPT2 *model, const char *path, QuantConfig quant,
                                const int explicit_flags[NUM_MODE_FLAGS]) {
    FILE *fp = model_file_open_modes(path, quant, explicit_flags, &model->config, &model->quant);
    gpt2_allocate(model);
    freadCheck(model->params_memory, sizeof(float), model->num_parameters, fp, path);
    fclose(fp);
}

// A fresh model with GPT-2's init (gpt2_init_params in llmc/gpt2_config.h)
void gpt2_build_random(GPT2 *model, const GPT2Config *config, QuantConfig quant, uint64_t seed) {
    model->config = *config;
    model->quant = quant;
    gpt2_allocate(model);
    gpt2_init_params(model->params_memory, model->param_sizes, config, seed);
}

// rebuild the quantized weights from the latent ones (once per update)
void gpt2_quantize_weights(GPT2 *model) {
    if (!model->wq_stale) { return; }
    model->wq_stale = 0;
    if (model->quant.weight_quant == WQ_FP) { return; } // fp mode uses the latent weights directly
    int L = model->config.num_layers;
    // W_q as floats only for a float matmul: the float forward, or dX in float. With the integer
    // forward and -bq int8 every matmul on W_q is an integer one (dW does not read W), and a pass
    // writing 4 bytes a weight is skipped (gpt2_forward_weight still makes it if asked)
    int want_wq = !(model->int8_forward && model->quant.act_quant == AQ_INT8 && model->quant.backward_quant == BQ_INT8);
    model->wqf_stale = !want_wq;
    // one task per (matrix, layer): each tensor's scale is a serial sum, so the
    // result does not depend on the number of threads
    #pragma omp parallel for collapse(2) schedule(dynamic)
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        for (int l = 0; l < L; l++) {
            int OC, IC;
            bitlinear_shape(&model->config, k, &OC, &IC);
            size_t n = (size_t)OC * IC;
            const float *w = model->params_memory + bitlinear_tensor_offset(model->param_sizes, k) + l * n;
            size_t off = model->wq_offset[k] + l * n; // the latent tensor k of layer l, and its quantized copy
            model->scales[bitlinear_scale_index(l, k)] =
                weights_quantize(want_wq ? model->wq_memory + off : NULL, model->trits + off, w, n,
                                 model->quant.weight_quant);
            tw_pack(model->tw_format, model->w2_memory + model->w2_offset[k] + (size_t)l * tw_bytes(model->tw_format, OC, IC),
                    model->trits + off, OC, IC);
        }
    }
    model->w2t_stale = 1;
}

// -bq int8: pack the trits of every BitLinear matrix transposed, (IC,OC) (once per update, by the
// backward: an inference or eval forward does not need them)
static void gpt2_pack_trits_transposed(GPT2 *model) {
    if (!model->w2t_stale) { return; }
    model->w2t_stale = 0;
    int L = model->config.num_layers;
    if (model->w2t_memory == NULL) {
        model->w2t_memory = (uint8_t *)mallocCheck(gpt2_tw_layout(&model->config, model->tw_format, 1, model->w2t_offset));
    }
    #pragma omp parallel for collapse(2) schedule(dynamic)
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        for (int l = 0; l < L; l++) {
            int OC, IC;
            bitlinear_shape(&model->config, k, &OC, &IC);
            size_t off = model->wq_offset[k] + (size_t)l * OC * IC;
            tw_pack_transposed(model->tw_format,
                               model->w2t_memory + model->w2t_offset[k] + (size_t)l * tw_bytes(model->tw_format, IC, OC),
                               model->trits + off, OC, IC);
        }
    }
}

// the weight matrix BitLinear k of layer l uses in the forward pass
static const float *gpt2_forward_weight(GPT2 *model, int k, int l) {
    int OC, IC;
    bitlinear_shape(&model->config, k, &OC, &IC);
    size_t n = (size_t)OC * IC;
    if (model->quant.weight_quant == WQ_FP) {
        return model->params_memory + bitlinear_tensor_offset(model->param_sizes, k) + l * n;
    }
    if (model->wqf_stale) { // skipped by gpt2_quantize_weights: W_q = trit * scale, every matrix
        model->wqf_stale = 0;
        int L = model->config.num_layers;
        #pragma omp parallel for collapse(2) schedule(dynamic)
        for (int kk = 0; kk < NUM_BITLINEAR; kk++) {
            for (int ll = 0; ll < L; ll++) {
                int OCk, ICk;
                bitlinear_shape(&model->config, kk, &OCk, &ICk);
                size_t nk = (size_t)OCk * ICk, off = model->wq_offset[kk] + ll * nk;
                weights_dequantize(model->wq_memory + off, model->trits + off, model->scales[bitlinear_scale_index(ll, kk)], nk);
            }
        }
    }
    return model->wq_memory + model->wq_offset[k] + l * n;
}

// matmul_backward's scratch (floats) for the largest matmul of a (B*T)-token batch: the lm_head
// (M=BT, K=C, N=Vp) or one of the four BitLinear shapes
static size_t gpt2_matmul_scratch_size(const GPT2Config *cfg, int BT) {
    size_t s = matmul_scratch_size(BT, cfg->channels, cfg->padded_vocab_size);
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(cfg, k, &OC, &IC);
        size_t sk = matmul_scratch_size(BT, IC, OC);
        s = sk > s ? sk : s;
    }
    return s;
}

// the bytes a training run at (B,T) still allocates after the model is built: the
// activations and their gradients, the int8 scratch (codes, int32 products), the inner norm's
// buffer, the parameters' gradients and AdamW moments, and matmul_backward's scratch
static size_t gpt2_training_bytes(const GPT2 *model, int B, int T) {
    const GPT2Config *cfg = &model->config;
    size_t act_sizes[NUM_ACTS], num_acts = 0, BT = (size_t)B * T, C = cfg->channels;
    fill_in_activation_sizes(act_sizes, cfg, B, T);
    for (int i = 0; i < NUM_ACTS; i++) { num_acts += act_sizes[i]; }
    size_t w2t = model->quant.backward_quant == BQ_INT8 ? gpt2_tw_layout(cfg, model->tw_format, 1, NULL) : 0; // -bq int8's trits
    return 2 * num_acts * sizeof(float) + BT * 4 * C * (1 + sizeof(int32_t) + sizeof(float)) +
           3 * model->num_parameters * sizeof(float) + gpt2_matmul_scratch_size(cfg, (int)BT) * sizeof(float) + w2t;
}

// a training run at (B,T) that cannot fit in memory: a clear error before it starts, not the
// kernel's OOM killer at the first step
void gpt2_check_memory(const GPT2 *model, int B, int T) {
    size_t need = gpt2_training_bytes(model, B, T), avail = memory_available_bytes();
    if (avail > 0 && need > avail) {
        fprintf(stderr, "error: -b %d -t %d needs about %.1f GiB of memory to train this model, more than the %.1f GiB "
                "available\n---> HINT: lower -b or -t, or pick a smaller model (-e)\n", B, T, need / 1073741824.0,
                avail / 1073741824.0);
        exit(EXIT_FAILURE);
    }
}

// first use with a batch shape: allocate activations for it
static void gpt2_allocate_activations(GPT2 *model, int B, int T) {
    model->batch_size = B;
    model->seq_len = T;
    fill_in_activation_sizes(model->act_sizes, &model->config, B, T);
    model->num_activations = 0;
    for (int i = 0; i < NUM_ACTS; i++) { model->num_activations += model->act_sizes[i]; }
    model->acts_memory = (float *)mallocCheck(model->num_activations * sizeof(float));
    point_activations(&model->acts, model->act_sizes, model->acts_memory);
    model->inputs = (int *)mallocCheck((size_t)B * T * sizeof(int));
    model->targets = (int *)mallocCheck((size_t)B * T * sizeof(int));
    size_t n = (size_t)B * T * 4 * model->config.channels;
    model->xi8 = (int8_t *)mallocCheck(n);
    model->inv_s = (float *)mallocCheck((size_t)B * T * sizeof(float));
    model->acc = (int32_t *)mallocCheck(n * sizeof(int32_t));
}

// BitLinear k (0 qkv, 1 attproj, 2 fc, 3 fcproj) of layer l, by the integer
// path when the mode has one, else in float
static void gpt2_bitlinear_forward(GPT2 *model, int k, int l, float *out, float *xq, float *rstd, const float *inp,
                                   const float *bias, int N) {
    int OC, IC;
    bitlinear_shape(&model->config, k, &OC, &IC);
    const QuantConfig qk = quant_config_at(&model->quant, k), *q = &qk; // -rn 2: the norm before k = 1, 3 only
    if (model->int8_forward && q->act_quant == AQ_INT8 && q->weight_quant != WQ_FP) {
        const uint8_t *w2 = model->w2_memory + model->w2_offset[k] + (size_t)l * tw_bytes(model->tw_format, OC, IC);
        bitlinear_forward_int8(out, xq, rstd, model->xi8, model->inv_s, model->acc, inp, w2, model->tw_format,
                               model->scales[bitlinear_scale_index(l, k)], bias, N, IC, OC, q);
    } else {
        bitlinear_forward(out, xq, rstd, inp, gpt2_forward_weight(model, k, l), bias, N, IC, OC, q);
    }
}

// its backward: dX by the integer path with -bq int8 (the trits transposed), else in float; dW in float
static void gpt2_bitlinear_backward(GPT2 *model, int k, int l, float *dinp, float *dweight, float *dbias,
                                    const float *dout, const float *inp, const float *xq, const float *rstd, int N) {
    int OC, IC;
    bitlinear_shape(&model->config, k, &OC, &IC);
    const QuantConfig qk = quant_config_at(&model->quant, k), *q = &qk;
    if (q->backward_quant == BQ_INT8 && q->weight_quant != WQ_FP) {
        const uint8_t *w2t = model->w2t_memory + model->w2t_offset[k] + (size_t)l * tw_bytes(model->tw_format, IC, OC);
        float scale = model->scales[bitlinear_scale_index(l, k)];
        bitlinear_backward_int8(dinp, dweight, dbias, dout, inp, xq, rstd, w2t, model->tw_format, scale, model->xi8, model->inv_s,
                                model->acc, N, IC, OC, q, model->dxn_buf, model->scratch);
    } else {
        bitlinear_backward(dinp, dweight, dbias, dout, inp, xq, rstd, gpt2_forward_weight(model, k, l), N, IC, OC, q,
                           model->dxn_buf, model->scratch);
    }
}

// Forward pass over inputs (B,T); with targets (B,T) it also computes the mean
// loss. B*T may be smaller than at the first call (sampling uses B=1).
void gpt2_forward(GPT2 *model, const int *inputs, const int *targets, int B, int T) {
    GPT2Config *cfg = &model->config;
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size, L = cfg->num_layers;
    int NH = cfg->num_heads, C = cfg->channels;
    if (T > cfg->max_seq_len) {
        fprintf(stderr, "error: sequence length %d is above the model's maximum %d\n"
                "---> HINT: lower -t to at most %d\n", T, cfg->max_seq_len, cfg->max_seq_len);
        exit(EXIT_FAILURE);
    }
    for (int i = 0; i < B * T; i++) {
        if (inputs[i] < 0 || inputs[i] >= V || (targets != NULL && (targets[i] < 0 || targets[i] >= V))) {
            fprintf(stderr, "error: token id %d at position %d is outside the vocab (V = %d)\n",
                    targets != NULL && (targets[i] < 0 || targets[i] >= V) ? targets[i] : inputs[i], i, V);
            exit(EXIT_FAILURE);
        }
    }
    if (model->acts_memory == NULL) { gpt2_allocate_activations(model, B, T); }
    // B and T may change from call to call, but the buffers were sized by the
    // first call, so B*T and T must fit them
    if (B * T > model->batch_size * model->seq_len || T > model->seq_len) {
        fprintf(stderr, "error: batch (B=%d, T=%d) is larger than the first one (B=%d, T=%d)\n",
                B, T, model->batch_size, model->seq_len);
        exit(EXIT_FAILURE);
    }
    memcpy(model->inputs, inputs, (size_t)B * T * sizeof(int));
    if (targets != NULL) { memcpy(model->targets, targets, (size_t)B * T * sizeof(int)); }
    gpt2_quantize_weights(model);

    ParameterTensors p = model->params;
    ActivationTensors a = model->acts;
    int BT = B * T;
    encoder_forward(a.encoded, inputs, p.wte, p.wpe, B, T, C);
    float *residual;
    for (int l = 0; l < L; l++) {
        residual = l == 0 ? a.encoded : a.residual3 + (size_t)(l - 1) * BT * C;
        // the layer's views: weights
        const float *l_ln1w = p.ln1w + l * C, *l_ln1b = p.ln1b + l * C;
        const float *l_qkvb = p.qkvb + l * 3 * C, *l_attprojb = p.attprojb + l * C;
        const float *l_ln2w = p.ln2w + l * C, *l_ln2b = p.ln2b + l * C;
        const float *l_fcb = p.fcb + l * 4 * C, *l_fcprojb = p.fcprojb + l * C;
        // and activations
        float *l_ln1 = a.ln1 + (size_t)l * BT * C, *l_ln1_mean = a.ln1_mean + l * BT, *l_ln1_rstd = a.ln1_rstd + l * BT;
        float *l_qkv_xq = a.qkv_xq + (size_t)l * BT * C, *l_qkv_rstd = a.qkv_rstd + l * BT;
        float *l_qkv = a.qkv + (size_t)l * BT * 3 * C, *l_atty = a.atty + (size_t)l * BT * C;
        float *l_preatt = a.preatt + (size_t)l * B * NH * T * T, *l_att = a.att + (size_t)l * B * NH * T * T;
        float *l_attproj_xq = a.attproj_xq + (size_t)l * BT * C, *l_attproj_rstd = a.attproj_rstd + l * BT;
        float *l_attproj = a.attproj + (size_t)l * BT * C, *l_residual2 = a.residual2 + (size_t)l * BT * C;
        float *l_ln2 = a.ln2 + (size_t)l * BT * C, *l_ln2_mean = a.ln2_mean + l * BT, *l_ln2_rstd = a.ln2_rstd + l * BT;
        float *l_fc_xq = a.fc_xq + (size_t)l * BT * C, *l_fc_rstd = a.fc_rstd + l * BT;
        float *l_fch = a.fch + (size_t)l * BT * 4 * C, *l_fch_gelu = a.fch_gelu + (size_t)l * BT * 4 * C;
        float *l_fcproj_xq = a.fcproj_xq + (size_t)l * BT * 4 * C, *l_fcproj_rstd = a.fcproj_rstd + l * BT;
        float *l_fcproj = a.fcproj + (size_t)l * BT * C, *l_residual3 = a.residual3 + (size_t)l * BT * C;

        // attention half: x + attproj(attention(qkv(ln1(x))))
        layernorm_forward(l_ln1, l_ln1_mean, l_ln1_rstd, residual, l_ln1w, l_ln1b, BT, C);
        gpt2_bitlinear_forward(model, 0, l, l_qkv, l_qkv_xq, l_qkv_rstd, l_ln1, l_qkvb, BT);
        attention_forward(l_atty, l_preatt, l_att, l_qkv, B, T, C, NH);
        gpt2_bitlinear_forward(model, 1, l, l_attproj, l_attproj_xq, l_attproj_rstd, l_atty, l_attprojb, BT);
        residual_forward(l_residual2, residual, l_attproj, (size_t)BT * C);
        // MLP half: x + fcproj(gelu(fc(ln2(x))))
        layernorm_forward(l_ln2, l_ln2_mean, l_ln2_rstd, l_residual2, l_ln2w, l_ln2b, BT, C);
        gpt2_bitlinear_forward(model, 2, l, l_fch, l_fc_xq, l_fc_rstd, l_ln2, l_fcb, BT);
        gelu_forward(l_fch_gelu, l_fch, (size_t)BT * 4 * C);
        gpt2_bitlinear_forward(model, 3, l, l_fcproj, l_fcproj_xq, l_fcproj_rstd, l_fch_gelu, l_fcprojb, BT);
        residual_forward(l_residual3, l_residual2, l_fcproj, (size_t)BT * C);
    }
    residual = a.residual3 + (size_t)(L - 1) * BT * C;
    layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, residual, p.lnfw, p.lnfb, BT, C);
    // the tied lm_head in full precision: logits = lnf @ wte^T
    matmul_forward(a.logits, a.lnf, p.wte, NULL, BT, C, Vp);
    softmax_forward(a.probs, a.logits, BT, V, Vp);
    if (targets != NULL) {
        crossentropy_forward(a.losses, a.probs, targets, BT, Vp);
        double sum = 0.0;
        for (int i = 0; i < BT; i++) { sum += a.losses[i]; }
        model->mean_loss = (float)(sum / BT);
    } else {
        model->mean_loss = -1.0f;
    }
}

// zero the parameters' gradients, before the first backward pass of an optimizer step
void gpt2_zero_grad(GPT2 *model) {
    if (model->grads_memory != NULL) { memset(model->grads_memory, 0, model->num_parameters * sizeof(float)); }
}

// Backward pass of the last forward pass (which must have had targets): adds the gradient of
// its mean loss to the parameters' gradients, so the passes over several micro-batches sum up
// (gradient accumulation, -d). The activations' gradients belong to this pass alone: zeroed here.
void gpt2_backward(GPT2 *model) {
    if (model->mean_loss == -1.0f) {
        fprintf(stderr, "error: gpt2_backward needs a forward pass with targets first\n");
        exit(EXIT_FAILURE);
    }
    GPT2Config *cfg = &model->config;
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size, L = cfg->num_layers;
    int NH = cfg->num_heads, C = cfg->channels;
    int B = model->batch_size, T = model->seq_len, BT = B * T;
    if (model->grads_memory == NULL) { // lazily: inference never needs these
        model->grads_memory = (float *)callocCheck(model->num_parameters, sizeof(float));
        point_parameters(&model->grads, model->param_sizes, model->grads_memory);
        model->grads_acts_memory = (float *)callocCheck(model->num_activations, sizeof(float));
        point_activations(&model->grads_acts, model->act_sizes, model->grads_acts_memory);
        model->scratch = (float *)mallocCheck(gpt2_matmul_scratch_size(cfg, BT) * sizeof(float));
        model->dxn_buf = (float *)mallocCheck((size_t)BT * 4 * C * sizeof(float));
    }
    memset(model->grads_acts_memory, 0, model->num_activations * sizeof(float));
    ParameterTensors p = model->params, g = model->grads;
    ActivationTensors a = model->acts, da = model->grads_acts;
    if (model->quant.backward_quant == BQ_INT8 && model->quant.weight_quant != WQ_FP) {
        gpt2_pack_trits_transposed(model);
    }

    crossentropy_softmax_backward(da.logits, a.probs, model->targets, BT, V, Vp);
    matmul_backward(da.lnf, g.wte, NULL, da.logits, a.lnf, p.wte, BT, C, Vp, model->scratch);
    float *residual = a.residual3 + (size_t)(L - 1) * BT * C;
    float *dresidual = da.residual3 + (size_t)(L - 1) * BT * C;
    layernorm_backward(dresidual, g.lnfw, g.lnfb, da.lnf, residual, p.lnfw, a.lnf_mean, a.lnf_rstd, BT, C);

    for (int l = L - 1; l >= 0; l--) {
        residual = l == 0 ? a.encoded : a.residual3 + (size_t)(l - 1) * BT * C;
        dresidual = l == 0 ? da.encoded : da.residual3 + (size_t)(l - 1) * BT * C;
        size_t oC = (size_t)l * BT * C, oC3 = oC * 3, oC4 = oC * 4, oN = (size_t)l * BT;
        size_t oAtt = (size_t)l * B * NH * T * T;
        const float *l_ln1w = p.ln1w + l * C, *l_ln2w = p.ln2w + l * C;
        float *dl_ln1w = g.ln1w + l * C, *dl_ln1b = g.ln1b + l * C, *dl_ln2w = g.ln2w + l * C, *dl_ln2b = g.ln2b + l * C;
        float *dl_qkvw = g.qkvw + (size_t)l * 3 * C * C, *dl_qkvb = g.qkvb + l * 3 * C;
        float *dl_attprojw = g.attprojw + (size_t)l * C * C, *dl_attprojb = g.attprojb + l * C;
        float *dl_fcw = g.fcw + (size_t)l * 4 * C * C, *dl_fcb = g.fcb + l * 4 * C;
        float *dl_fcprojw = g.fcprojw + (size_t)l * 4 * C * C, *dl_fcprojb = g.fcprojb + l * C;

        // MLP half, in reverse
        residual_backward(da.residual2 + oC, da.fcproj + oC, da.residual3 + oC, (size_t)BT * C);
        gpt2_bitlinear_backward(model, 3, l, da.fch_gelu + oC4, dl_fcprojw, dl_fcprojb, da.fcproj + oC,
                                a.fch_gelu + oC4, a.fcproj_xq + oC4, a.fcproj_rstd + oN, BT);
        gelu_backward(da.fch + oC4, a.fch + oC4, da.fch_gelu + oC4, (size_t)BT * 4 * C);
        gpt2_bitlinear_backward(model, 2, l, da.ln2 + oC, dl_fcw, dl_fcb, da.fch + oC4, a.ln2 + oC, a.fc_xq + oC,
                                a.fc_rstd + oN, BT);
        layernorm_backward(da.residual2 + oC, dl_ln2w, dl_ln2b, da.ln2 + oC, a.residual2 + oC, l_ln2w,
                           a.ln2_mean + oN, a.ln2_rstd + oN, BT, C);
        // attention half, in reverse
        residual_backward(dresidual, da.attproj + oC, da.residual2 + oC, (size_t)BT * C);
        gpt2_bitlinear_backward(model, 1, l, da.atty + oC, dl_attprojw, dl_attprojb, da.attproj + oC, a.atty + oC,
                                a.attproj_xq + oC, a.attproj_rstd + oN, BT);
        attention_backward(da.qkv + oC3, da.preatt + oAtt, da.att + oAtt, da.atty + oC, a.qkv + oC3, a.att + oAtt,
                           B, T, C, NH);
        gpt2_bitlinear_backward(model, 0, l, da.ln1 + oC, dl_qkvw, dl_qkvb, da.qkv + oC3, a.ln1 + oC, a.qkv_xq + oC,
                                a.qkv_rstd + oN, BT);
        layernorm_backward(dresidual, dl_ln1w, dl_ln1b, da.ln1 + oC, residual, l_ln1w, a.ln1_mean + oN,
                           a.ln1_rstd + oN, BT, C);
    }
    encoder_backward(g.wte, g.wpe, da.encoded, model->inputs, B, T, C);
}

// global L2 norm of the gradients. The squares are summed in fixed chunks (float, 16 lanes: vector
// code; a chunk's 1024 terms a lane keep it to about 1e-4 relative), the chunks' sums in double in
// chunk order: the same bits whatever the number of threads (one double add chain took 5% of a step)
#define GRAD_NORM_CHUNK 16384
float gpt2_grad_norm(const GPT2 *model) {
    const size_t n = model->num_parameters, nchunks = (n + GRAD_NORM_CHUNK - 1) / GRAD_NORM_CHUNK;
    double *chunk_sum = (double *)mallocCheck(nchunks * sizeof(double));
    #pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nchunks; c++) {
        const float *g = model->grads_memory + c * GRAD_NORM_CHUNK;
        size_t len = n - c * GRAD_NORM_CHUNK < GRAD_NORM_CHUNK ? n - c * GRAD_NORM_CHUNK : GRAD_NORM_CHUNK;
        float lane[16] = {0.0f};
        size_t i = 0;
        for (; i + 16 <= len; i += 16) {
            for (int j = 0; j < 16; j++) { lane[j] += g[i + j] * g[i + j]; }
        }
        double s = 0.0;
        for (; i < len; i++) { s += (double)g[i] * g[i]; }
        for (int j = 0; j < 16; j++) { s += lane[j]; }
        chunk_sum[c] = s;
    }
    double sum = 0.0;
    for (size_t c = 0; c < nchunks; c++) { sum += chunk_sum[c]; }
    free(chunk_sum);
    return (float)sqrt(sum);
}

// AdamW (Loshchilov & Hutter), with the gradients first scaled by grad_scale
// (global-norm clipping). Weight decay only on the matrices. t counts from 1.
void gpt2_update(GPT2 *model, float learning_rate, float beta1, float beta2, float eps, float weight_decay,
                 float grad_scale, int t) {
    if (model->m_memory == NULL) {
        model->m_memory = (float *)callocCheck(model->num_parameters, sizeof(float));
        model->v_memory = (float *)callocCheck(model->num_parameters, sizeof(float));
    }
    float bc1 = 1.0f - powf(beta1, t), bc2 = 1.0f - powf(beta2, t);
    size_t start = 0;
    for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
        float wd = PARAMETER_IS_MATRIX[k] ? weight_decay : 0.0f;
        size_t end = start + model->param_sizes[k];
        #pragma omp parallel for schedule(dynamic, 65536) // (element by element: any split is the same)
        for (size_t i = start; i < end; i++) {
            float param = model->params_memory[i], grad = model->grads_memory[i] * grad_scale;
            float m = beta1 * model->m_memory[i] + (1.0f - beta1) * grad;
            float v = beta2 * model->v_memory[i] + (1.0f - beta2) * grad * grad;
            float m_hat = m / bc1, v_hat = v / bc2;
            model->m_memory[i] = m;
            model->v_memory[i] = v;
            model->params_memory[i] -= learning_rate * (m_hat / (sqrtf(v_hat) + eps) + wd * param);
        }
        start = end;
    }
    model->wq_stale = 1;
}

void gpt2_free(GPT2 *model) {
    free(model->params_memory);
    free(model->grads_memory);
    free(model->m_memory);
    free(model->v_memory);
    free(model->wq_memory);
    free(model->w2_memory);
    free(model->w2t_memory);
    free(model->xi8);
    free(model->inv_s);
    free(model->acc);
    free(model->trits);
    free(model->trits_prev);
    free(model->acts_memory);
    free(model->grads_acts_memory);
    free(model->scratch);
    free(model->dxn_buf);
    free(model->inputs);
    free(model->targets);
}

// ----------------------------------------------------------------------------
// trit diagnostics (llmc/trit_stats.h): per matrix, the fraction of zero trits,
// the fraction that flipped since the last report, and the scale

// stats has L*4 entries, [bitlinear_scale_index(l, k)]; returns 0 in fp mode (there are no trits)
int gpt2_trit_stats(GPT2 *model, TritStats *stats) {
    if (model->quant.weight_quant == WQ_FP) { return 0; }
    gpt2_quantize_weights(model);
    trit_stats_compute(stats, &model->config, model->trits, model->trits_prev, model->have_trits_prev, model->scales);
    memcpy(model->trits_prev, model->trits, model->num_bitlinear_weights);
    model->have_trits_prev = 1;
    return 1;
}

void print_trit_stats(GPT2 *model, Logger *logger, int step) {
    int L = model->config.num_layers;
    TritStats *stats = (TritStats *)mallocCheck((size_t)L * 4 * sizeof(TritStats));
    if (gpt2_trit_stats(model, stats)) { trit_stats_print(stats, L, logger, step); }
    free(stats);
}

// ----------------------------------------------------------------------------
// checkpoints (formats and writers in llmc/checkpoint.h)

void gpt2_write_model(const GPT2 *model, const char *path) {
    model_file_write(path, &model->config, &model->quant, model->params_memory, model->num_parameters);
}

// total_batch: the tokens of an optimizer step (-d; B*T without gradient accumulation)
void save_checkpoint(const GPT2 *model, const DataLoader *loader, uint64_t rng, int step, int total_batch,
                     const char *out_dir) {
    TrainState st = {step, model->batch_size, model->seq_len, rng, loader->shard_index, loader->pos, total_batch};
    checkpoint_write(out_dir, &model->config, &model->quant, model->params_memory, model->m_memory,
                     model->v_memory, model->num_parameters, &st);
}

// load the optimizer, data and RNG state of a checkpoint; returns its step
// (the state must have been saved with this loader's B, T and this total_batch)
int load_state(GPT2 *model, DataLoader *loader, uint64_t *rng, int total_batch, const char *path) {
    model->m_memory = (float *)mallocCheck(model->num_parameters * sizeof(float));
    model->v_memory = (float *)mallocCheck(model->num_parameters * sizeof(float));
    TrainState st;
    checkpoint_read_state(path, model->num_parameters, loader->B, loader->T, total_batch, model->m_memory,
                          model->v_memory, &st);
    *rng = st.rng;
    dataloader_resume(loader, st.shard_index, st.pos);
    return st.step;
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
        gpt2_forward(model, val_loader->inputs, val_loader->targets, val_loader->B, val_loader->T);
        sum += model->mean_loss;
    }
    return (float)(sum / n);
}

// the logits (Vp floats) of the last of len tokens, after a forward pass of them alone (B=1):
// what train_loop.h's sampler draws the next token from
const float *gpt2_last_logits(GPT2 *model, const int *tokens, int len) {
    gpt2_forward(model, tokens, NULL, 1, len);
    return model->acts.logits + (size_t)(len - 1) * model->config.padded_vocab_size;
}

// ----------------------------------------------------------------------------
// main training loop
#ifndef TESTING

// llmc/train_loop.h runs the bookkeeping of a training run over the functions above (gpt2_build_*,
// gpt2_check_memory, gpt2_validate, gpt2_last_logits, print_trit_stats, save_checkpoint, load_state,
// gpt2_free) and these two; train_gpt2_1bit.cu defines the same, with the same signatures, for the GPU.

// the forward pass HellaSwag's scoring borrows: the (B,T) per-position losses
static const float *gpt2_eval_losses(void *m, const int *inputs, const int *targets, int B, int T) {
    GPT2 *model = (GPT2 *)m;
    gpt2_forward(model, inputs, targets, B, T);
    return model->acts.losses;
}

// what the model runs on, printed after the model and its mode
static void gpt2_print_device(const GPT2 *model) {
    (void)model;
#ifdef _OPENMP
    printf("threads: %d (OpenMP)\n", omp_get_max_threads());
#endif
}

#include "llmc/train_loop.h" // defines: TrainRun, train_open_model/_data, train_eval_sample_save, train_log_step

int main(int argc, char **argv) {
    TrainArgs args; // every flag, with its default (llmc/args.h; ./train_gpt2_1bit -h lists them)
    train_args_read(&args, argc, argv);
    matmul_bf16 = strcmp(args.matmul_precision, "bf16") == 0;
    TrainRun run;   // the loaders, the schedule, main.log, the step counters (llmc/train_loop.h)
    GPT2 model;
    train_open_model(&run, &model, &args); // resumed (-y 1), loaded (-e FILE) or fresh (-e dN)
    train_open_data(&run, &model);         // loaders, tokenizer, a resumed run's state, main.log, schedule

    for (int step = run.start_step; step <= args.max_steps; step++) {
        train_eval_sample_save(&run, &model, step); // val loss, trit statistics, sample, checkpoint: as -v -s -n say
        if (step == args.max_steps) { break; }

        // One optimizer step over run.accum micro-batches of B x T (-d; 1 without it). Each backward pass
        // adds the gradient of its micro-batch's mean loss, so the sum is accum times the gradient of the
        // mean loss over the whole step: the norm and the update take it times 1/accum (exact for 1).
        double t0 = now_seconds();
        gpt2_zero_grad(&model);
        double loss = 0.0;
        for (int micro_step = 0; micro_step < run.accum; micro_step++) {
            dataloader_next_batch(&run.train_loader);
            gpt2_forward(&model, run.train_loader.inputs, run.train_loader.targets, args.B, args.T);
            gpt2_backward(&model);
            loss += model.mean_loss;
        }
        float mean_loss = (float)(loss / run.accum);
        float norm = gpt2_grad_norm(&model) / run.accum;
        // clip the global norm to -gc; the learning rate and weight decay of this step (llmc/schedulers.h)
        float clip = (args.grad_clip > 0.0f && norm > args.grad_clip) ? args.grad_clip / (norm + 1e-6f) : 1.0f;
        float lr = schedule_lr(&run.sched, step), wd = schedule_wd(&run.sched, step);
        gpt2_update(&model, lr, 0.9f, 0.95f, 1e-8f, wd, clip / run.accum, step + 1);
        train_log_step(&run, step, mean_loss, lr, norm, 1000.0 * (now_seconds() - t0));
    }
    train_close(&run, &model); // the average step; frees everything
    return 0;
}
#endif
