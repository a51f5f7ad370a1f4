/*
 llmc/ternary.h: the quantizers of BitLinear, written once as plain scalar C.
 This is the spec: the CPU trainer calls it, CUDA kernels are tested against it.

 Weights, per tensor (BitNet b1.58, eq. 1-3):
     gamma = max(mean|W|, 1e-5)
     W_q   = clamp(round(W / gamma), -1, 1) * gamma          (ternary, trits {-1,0,+1})
 Weights, binary (BitNet b1, eq. 2-4), for comparison:
     alpha = mean(W), beta = max(mean|W|, 1e-5)
     W_b   = sign(W - alpha) * beta                         (sign(0) = +1: a binary weight is never 0)
 Activations, per token (one row x of C values, BitNet eq. 4 with Q_b = 128):
     s_x = 127 / max(max|x|, 1e-5)
     x_q = clamp(round(x * s_x), -128, 127) / s_x

 round() is round-half-to-even (rintf in the default rounding mode), the
 rounding of torch.round and of CUDA's __float2int_rn, so the C trainer, the
 CUDA trainer and the PyTorch reference land on the same side of every tie.

 Backward (straight-through estimator): round and clamp count as identity and
 no gradient flows into gamma or s_x, so dW_latent = dW_q and dx = dx_q.

 The same functions run in the CUDA kernels (llmc/quantize.cuh): the per-value ones and the
 scale from a finished reduction are marked HOSTDEV (__host__ __device__ under nvcc, nothing
 in plain C). The loops over a tensor (absmean_scale, mean_value, absmax_scale) stay host
 code: the GPU reduces in parallel, then calls the same *_from_sum / *_from_max step.
*/
#ifndef LLMC_TERNARY_H
#define LLMC_TERNARY_H

#include <math.h>
#include <stdint.h>
#include <stddef.h>

// __host__ __device__ under nvcc, so the kernels call these very functions; empty in plain C
#ifdef __CUDACC__
#define HOSTDEV __host__ __device__
#else
#define HOSTDEV
#endif

#define TERNARY_EPS 1e-5f  // floor of gamma and of max|x|: keeps all-zero tensors and rows finite
#define RMSNORM_EPS 1e-5f  // inside the parameter-free RMSNorm of the BitLinear input

// ----------------------------------------------------------------------------
// weights

// gamma = max(mean|W|, eps) from sum = sum|W| over n values
static HOSTDEV inline float absmean_from_sum(double sum, size_t n) {
    float gamma = (float)(sum / (double)n);
    return gamma > TERNARY_EPS ? gamma : TERNARY_EPS;
}

// gamma = max(mean|W|, eps) over n values; summed in double so the scale does
// not depend on the order of a parallel reduction
// (omp simd lets the compiler keep several partial sums in vector lanes: a fixed
// order for a given build, whatever the number of threads)
static inline float absmean_scale(const float *w, size_t n) {
    double sum = 0.0;
    #pragma omp simd reduction(+ : sum)
    for (size_t i = 0; i < n; i++) { sum += fabsf(w[i]); }
    return absmean_from_sum(sum, n);
}

// one weight to its trit: clamp(round(w / gamma), -1, 1)
// Plain compares, not fminf/fmaxf: they vectorize (one minps/maxps each). Written "r < hi ? r : hi"
// so that a NaN (a diverged run) clamps to a code: converting NaN to int8 is undefined behaviour.
static HOSTDEV inline int8_t ternarize(float w, float gamma) {
    float r = rintf(w / gamma);
    r = r < 1.0f ? r : 1.0f; // NaN -> 1
    r = r > -1.0f ? r : -1.0f;
    return (int8_t)r;
}

// mean(W) from sum = sum(W) over n values
static HOSTDEV inline float mean_from_sum(double sum, size_t n) { return (float)(sum / (double)n); }

// mean(W), the centre that binarization subtracts, summed in double as above
static inline float mean_value(const float *w, size_t n) {
    double sum = 0.0;
    #pragma omp simd reduction(+ : sum)
    for (size_t i = 0; i < n; i++) { sum += w[i]; }
    return mean_from_sum(sum, n);
}

// one weight to its sign bit: sign(w - alpha) with sign(0) = +1
static HOSTDEV inline int8_t binarize(float w, float alpha) {
    return (int8_t)((w - alpha) >= 0.0f ? 1 : -1);
}

// ----------------------------------------------------------------------------
// activations

// s_x = 127 / max(m, eps) from m = max|x| of a row
static HOSTDEV inline float absmax_from_max(float m) { return 127.0f / (m > TERNARY_EPS ? m : TERNARY_EPS); }

// s_x = 127 / max(max|x|, eps) for one row of n values
static inline float absmax_scale(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) { float a = fabsf(x[i]); m = a > m ? a : m; }
    return absmax_from_max(m);
}

// one activation to int8: clamp(round(x * s), -128, 127)
// (clamped as in ternarize: NaN -> 127, never an undefined conversion)
static HOSTDEV inline int8_t quantize_int8(float x, float s) {
    float r = rintf(x * s);
    r = r < 127.0f ? r : 127.0f;
    r = r > -128.0f ? r : -128.0f;
    return (int8_t)r;
}

// ----------------------------------------------------------------------------
// gradients: the int8 backward of dX (-bq int8, issue 14)
// BitLinear's output gradient dY, per token (a row g of OC values), to int8 as the activations are
// (SwitchBack's row-wise quantization of the gradient), with quantize_int8 above:
//     s_g = 127 / max(max|g|, GRAD_EPS),  g_q = clamp(round(g * s_g), -128, 127) / s_g
// The floor is not the activations' 1e-5: gradients have no natural scale (they shrink with
// 1/(B*T)), and that floor would round whole rows to 0. GRAD_EPS only keeps s_g finite when a row
// is all zeros (127 / 1e-30 fits a float).

#define GRAD_EPS 1e-30f

// s_g from m = max|g| of a row (a kernel reduces, then calls this)
static HOSTDEV inline float grad_absmax_from_max(float m) {
    return 127.0f / (m > GRAD_EPS ? m : GRAD_EPS);
}

// s_g for one row of n values
static inline float grad_absmax_scale(const float *g, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) { float a = fabsf(g[i]); m = a > m ? a : m; }
    return grad_absmax_from_max(m);
}

#endif // LLMC_TERNARY_H
