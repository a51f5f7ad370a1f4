/*
 llmc/quantize.cuh: the quantizers of BitLinear on the GPU: the weights once per step, the
 activations (with the parameter-free RMSNorm) at every BitLinear input.
 Spec: llmc/ternary.h, whose per-value functions these kernels call (ternarize, binarize,
 quantize_int8, absmean_from_sum, mean_from_sum, absmax_from_max), and in train_gpt2_1bit.c
 weights_quantize (one matrix) and bitlinear_input_forward (the rows).

 Weights (weights_quantize): the L tensors of one BitLinear kind k, back to back in w, each of
 n = OC*IC values, in three kernels:
   1. weight_sums_partial_kernel: QUANT_BLOCKS blocks per tensor sum |w| and w in double
   2. weight_scales_kernel: one thread per tensor adds its partials in order, in double:
      scales[l*4 + k] = gamma (ternary) or beta (binary), centres[l*4 + k] = mean(W)
   3. weight_quantize_kernel: one thread per weight: its trit, and W_q = trit * scale in floatX
 The GPU trit format (what the integer forward reads and the diagnostics download): one int8
 per weight, {-1, 0, +1} (binary: {-1, +1}), unpacked, row-major (OC, IC) per matrix, laid out
 as llmc/trit_stats.h's bitlinear_trit_offsets says (kind by kind, each kind (L, OC, IC));
 the scale of matrix (l, k) is scales[l*4 + k], the index trit_stats.h's TritStats use too.
 The packed 2-bit and 1.6-bit formats (llmc/ternary_kernels.h) are for files and the CPU.

 Activations (bitlinear_input_forward), one warp per row of inp (N,IC), the row held in the
 warp's registers (128-bit loads, one read of DRAM; rmsnorm_quant_kernel_reg4..32, 4 rows a block) where
 IC is whole aligned 128-bit vectors, at most 32 a lane (IC <= 8192 in bf16, 4096 in fp32), else
 lane-strided scalar passes over the row (rmsnorm_quant_kernel, 8 rows a block):
   r = 1 / sqrt(mean(x^2) + eps) (inner norm; else r = 1), x_n = x * r,
   s = absmax_from_max(max|x_n|), code = quantize_int8(x_n, s), x_q = code / s
 Outputs: xq (N,IC) floatX (the float path and the backward), codes (N,IC) int8 and
 inv_s (N) = 1/s (the integer path), rstd (N) = r; xq, or codes and inv_s, may be NULL.
 Input pre-op (BitLinearPreOp): BL_PRE_GELU reads inp = fch and takes x = gelu_stored(fch)
 (llmc/gelu.cuh: gelu_forward's stored floatX value) for each value as it is loaded, so that
 fcproj's input path is one kernel from fch, with the bits of gelu_forward then this kernel
 (dev/cuda/rmsnorm_quant.cu variant 5); BL_PRE_NONE reads x = inp.

 The int8 backward of dX (-bq int8, issue 14), as the CPU's bitlinear_backward_int8 has it:
   grad_quantize_rows: dY (N,OC) to int8 per row, one warp per row (CPU twin: grad_quantize_rows):
     s_g = grad_absmax_from_max(max|g|), code = quantize_int8(g, s_g), inv_s = 1/s_g
   trits_transpose: the trits of L matrices (OC,IC) to (IC,OC) each, once per update, so that
     dY . W_q is the "TN" int8 GEMM the forward uses (CPU: pack2_rows_transposed, packed)
*/
#ifndef LLMC_QUANTIZE_CUH
#define LLMC_QUANTIZE_CUH

#include <math.h>
#include "cuda_common.h" // defines: floatX, to_float, from_float, warp/block reductions, ceil_div, cudaCheck
#include "ternary.h"     // defines: ternarize, binarize, quantize_int8, absmean_from_sum, mean_from_sum,
                         //          absmax_from_max, grad_absmax_from_max, RMSNORM_EPS
                         //          (HOSTDEV: the spec, called on the device)
#include "gelu.cuh"      // defines: gelu_stored (the input pre-op BL_PRE_GELU)

// ----------------------------------------------------------------------------
// weights: ternary (b1.58 eq. 1-3): gamma = max(mean|W|, eps); W_q = clamp(round(W / gamma), -1, 1) * gamma
//          binary (BitNet eq. 2-4): alpha = mean(W), beta = max(mean|W|, eps); W_b = sign(W - alpha) * beta

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
    scales[l * 4 + k] = absmean_from_sum(sa, n);
    centres[l * 4 + k] = mean_from_sum(ss, n);
}

// stage 3: every weight to its trit (int8, for the integer forward and the
// diagnostics) and to W_q in floatX (for the float forward and the backward)
__global__ void weight_quantize_kernel(int8_t *trits, floatX *wq, const float *w, const float *scales,
                                       const float *centres, int k, size_t n, size_t total, int binary) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) { return; }
    int l = (int)(idx / n);
    float gamma = scales[l * 4 + k], wv = w[idx];
    int8_t t = binary ? binarize(wv, centres[l * 4 + k]) : ternarize(wv, gamma);
    trits[idx] = t;
    wq[idx] = from_float<floatX>(t * gamma);
}

// the L tensors of BitLinear kind k (n values each, back to back in w) to trits (L*n) and W_q
// (L*n), with their scales and centres at [l*4 + k]; pabs, psum: L * QUANT_BLOCKS doubles
static inline void weights_quantize(int8_t *trits, floatX *wq, float *scales, float *centres, double *pabs,
                                    double *psum, const float *w, int L, int k, size_t n, int binary) {
    weight_sums_partial_kernel<<<dim3(QUANT_BLOCKS, L), 256>>>(pabs, psum, w, n);
    cudaCheck(cudaGetLastError());
    weight_scales_kernel<<<ceil_div((long long)L, 64), 64>>>(scales, centres, pabs, psum, L, k, QUANT_BLOCKS, n);
    cudaCheck(cudaGetLastError());
    weight_quantize_kernel<<<ceil_div((long long)L * n, 256), 256>>>(trits, wq, w, scales, centres, k, n,
                                                                       (size_t)L * n, binary);
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// activations: parameter-free RMSNorm, then int8 per token (BitNet eq. 4)

// what a BitLinear's input path applies to each value of inp before anything else: nothing, or
// the MLP's GELU (fcproj reads fch and quantizes gelu(fch), which is then never stored). An int
// as a template argument below: tests/test_cuda_resources.sh reads integer arguments of kernel names
typedef enum { BL_PRE_NONE = 0, BL_PRE_GELU = 1 } BitLinearPreOp;

// value i of a row x of inp as the BitLinear sees it: x[i], or gelu_forward's stored value of it
__device__ static inline float bitlinear_input_value(const floatX *x, int i, int pre) {
    return pre == BL_PRE_GELU ? to_float(gelu_stored(to_float(x[i]))) : to_float(x[i]);
}

// the fallback (and the scheme of dev/cuda/rmsnorm_quant.cu variant 2): one warp per row,
// lane-strided scalar loads, the row read from memory once per pass (two or three passes; the
// pre-op, a run-time argument here, recomputed at each: the same bits every time)
__global__ void rmsnorm_quant_kernel(floatX *xq, int8_t *codes, float *inv_s, float *rstd, const floatX *inp,
                                     int pre, int N, int IC, int inner_norm, int act_int8) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) { return; }
    const floatX *x = inp + (size_t)row * IC;
    float r = 1.0f;
    if (inner_norm) {
        float ss = 0.0f;
        for (int i = lane; i < IC; i += 32) { float v = bitlinear_input_value(x, i, pre); ss += v * v; }
        r = 1.0f / sqrtf(warp_reduce_sum(ss) / IC + RMSNORM_EPS);
    }
    if (lane == 0) { rstd[row] = r; }
    floatX *o = xq != NULL ? xq + (size_t)row * IC : NULL; // NULL only with act_int8
    if (!act_int8) {
        for (int i = lane; i < IC; i += 32) { o[i] = from_float<floatX>(bitlinear_input_value(x, i, pre) * r); }
        return;
    }
    float m = 0.0f;
    for (int i = lane; i < IC; i += 32) { m = fmaxf(m, fabsf(bitlinear_input_value(x, i, pre) * r)); }
    m = warp_reduce_max(m);
    float s = absmax_from_max(m);
    for (int i = lane; i < IC; i += 32) {
        int8_t q = quantize_int8(bitlinear_input_value(x, i, pre) * r, s);
        if (xq != NULL) { o[i] = from_float<floatX>(q / s); }
        if (codes != NULL) { codes[(size_t)row * IC + i] = q; }
    }
    if (lane == 0 && inv_s != NULL) { inv_s[row] = 1.0f / s; }
}

// The row in registers (dev/cuda/rmsnorm_quant.cu variant 3's scheme): one warp per row; lane l
// holds the row's 128-bit vectors l, l + 32, ... (V at most), loaded once, and both reductions
// and the outputs are computed from them: one read of the input from DRAM. The values and the
// order of operations per element are the fallback's (max|x * r|, quantize_int8(x * r, s),
// x_q = code / s); only the sum of squares is added in another order (per lane over its
// vectors, then across the warp), which the forward and the backward share, since the kernel
// is picked from IC and inp alone.
#define RQ_X128 x128::size // values per 128-bit vector: 8 bf16 or 4 fp32
#define RQ_MAX_VECS 32     // vectors a lane at most: 512 bytes of a row a lane, 128 registers
#define RQ_BLOCK 128       // threads a block (4 rows): dev/cuda/rmsnorm_quant.cu variant 3's best, H200
// the largest block for V vectors a lane, its __launch_bounds__ (ptxas keeps the registers to
// what that block can hold; 4V registers of row and about 20 more a thread): as variant 3's
#define RQ_MAX_BLOCK(V) ((V) <= 8 ? 1024 : (V) <= 16 ? 512 : 256)

__device__ static inline float float_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

// the RQ_X128 values of a 128-bit vector as floats, from its four 32-bit words (bf16: two a word,
// the first in the low half; a bf16 is the top half of a float, so this is to_float exactly).
// Held as x128 instead, the compiler keeps each word's high half in a register of its own from
// one pass to the next: 8 registers a vector, not 4
__device__ static inline void unpack128(float f[RQ_X128], int4 v) {
    const uint32_t w[4] = {(uint32_t)v.x, (uint32_t)v.y, (uint32_t)v.z, (uint32_t)v.w};
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        if constexpr (RQ_X128 == 8) {
            f[2 * i] = float_from_bits(w[i] << 16);
            f[2 * i + 1] = float_from_bits(w[i] & 0xffff0000u);
        } else {
            f[i] = float_from_bits(w[i]);
        }
    }
}

// the vector gelu_forward stores for a vector v of inp: each value through gelu_stored, the
// floatX results packed back into the four words unpack128 reads (bf16: the first in the low half)
__device__ static inline int4 gelu128(int4 v) {
    float f[RQ_X128];
    unpack128(f, v);
    x128 o;
    #pragma unroll
    for (int j = 0; j < RQ_X128; j++) { o[j] = gelu_stored(f[j]); }
    int4 r;
    memcpy(&r, &o, sizeof(r)); // x128 and int4: 16 bytes each, in the same order
    return r;
}

// x_q's vector e of the row (values e * RQ_X128 ...) from its floats, and the codes likewise:
// one 128-bit store of x_q and one 64-bit (bf16) or 32-bit (fp32) store of codes where the
// output is aligned for it (out_vec), else value by value
__device__ static inline void store_xq(floatX *o, int e, const float f[RQ_X128], int out_vec) {
    x128 v;
    #pragma unroll
    for (int j = 0; j < RQ_X128; j++) { v[j] = from_float<floatX>(f[j]); }
    if (out_vec) {
        store128(o + e * RQ_X128, v);
    } else {
        for (int j = 0; j < RQ_X128; j++) { o[e * RQ_X128 + j] = v[j]; }
    }
}
__device__ static inline void store_codes(int8_t *c, int e, const int q[RQ_X128], int out_vec) {
    uint32_t words[RQ_X128 / 4]; // 4 codes a word, the first in the low byte
    #pragma unroll
    for (int w = 0; w < RQ_X128 / 4; w++) {
        words[w] = 0;
        #pragma unroll
        for (int b = 0; b < 4; b++) { words[w] |= (uint32_t)(q[4 * w + b] & 0xff) << (8 * b); }
    }
    int8_t *p = c + e * RQ_X128;
    if (!out_vec) {
        for (int j = 0; j < RQ_X128; j++) { p[j] = (int8_t)q[j]; }
    } else if constexpr (RQ_X128 == 8) {
        *reinterpret_cast<uint2 *>(p) = make_uint2(words[0], words[1]);
    } else {
        *reinterpret_cast<uint32_t *>(p) = words[0];
    }
}

// V: the capacity, vectors a lane; a row of IC values has IC / RQ_X128 vectors, lane l the ones
// l + 32 v, at most V of them (the last v partly filled: lanes past the row's end skip it).
// PRE: the input pre-op (BitLinearPreOp), a template argument so that the plain instance is
// the code it was before there was one. xq_vec, codes_vec: whether those outputs are aligned
// for vector stores. A device function, and one kernel template of its own name per V below
template <int V, int PRE>
__device__ static inline void rmsnorm_quant_row_reg(floatX *xq, int8_t *codes, float *inv_s, float *rstd,
                                                    const floatX *inp, int N, int IC, int inner_norm, int act_int8,
                                                    int xq_vec, int codes_vec) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) { return; } // a whole warp leaves together: the shuffles below see all 32 lanes
    // this lane's vectors: 32 v + lane for v < mine (<= V), i.e. those below nvec = IC / RQ_X128
    const int mine = (IC / RQ_X128 - lane + 31) / 32;
    const int4 *x4 = reinterpret_cast<const int4 *>(inp + (size_t)row * IC);
    int4 vals[V];
    #pragma unroll
    for (int v = 0; v < V; v++) { // all loads first (fully unrolled, constant indices: vals[] stays in registers)
        if (v < mine) { vals[v] = x4[32 * v + lane]; }
    }
    if constexpr (PRE == BL_PRE_GELU) { // inp is fch: the row becomes gelu_forward's bits, in place
        #pragma unroll
        for (int v = 0; v < V; v++) {
            if (v < mine) { vals[v] = gelu128(vals[v]); }
        }
    }
    float r = 1.0f;
    if (inner_norm) {
        float ss = 0.0f;
        #pragma unroll
        for (int v = 0; v < V; v++) {
            if (v < mine) {
                float f[RQ_X128];
                unpack128(f, vals[v]);
                #pragma unroll
                for (int j = 0; j < RQ_X128; j++) { ss += f[j] * f[j]; }
            }
        }
        r = 1.0f / sqrtf(warp_reduce_sum(ss) / IC + RMSNORM_EPS);
    }
    if (lane == 0) { rstd[row] = r; }
    floatX *o = xq != NULL ? xq + (size_t)row * IC : NULL; // NULL only with act_int8
    if (!act_int8) {
        #pragma unroll
        for (int v = 0; v < V; v++) {
            int e = 32 * v + lane;
            if (v < mine) {
                float f[RQ_X128];
                unpack128(f, vals[v]);
                #pragma unroll
                for (int j = 0; j < RQ_X128; j++) { f[j] = f[j] * r; }
                store_xq(o, e, f, xq_vec);
            }
        }
        return;
    }
    float m = 0.0f;
    #pragma unroll
    for (int v = 0; v < V; v++) {
        if (v < mine) {
            float f[RQ_X128];
            unpack128(f, vals[v]);
            #pragma unroll
            for (int j = 0; j < RQ_X128; j++) { m = fmaxf(m, fabsf(f[j] * r)); }
        }
    }
    m = warp_reduce_max(m);
    float s = absmax_from_max(m);
    int8_t *c = codes != NULL ? codes + (size_t)row * IC : NULL;
    #pragma unroll
    for (int v = 0; v < V; v++) {
        int e = 32 * v + lane;
        if (v < mine) {
            float f[RQ_X128];
            int q[RQ_X128];
            unpack128(f, vals[v]);
            #pragma unroll
            for (int j = 0; j < RQ_X128; j++) {
                q[j] = quantize_int8(f[j] * r, s);
                f[j] = (int8_t)q[j] / s; // x_q = code / s, as the fallback's q / s
            }
            if (xq != NULL) { store_xq(o, e, f, xq_vec); }
            if (c != NULL) { store_codes(c, e, q, codes_vec); }
        }
    }
    if (lane == 0 && inv_s != NULL) { inv_s[row] = 1.0f / s; }
}

template <int PRE> __global__ void __launch_bounds__(RQ_MAX_BLOCK(4))
rmsnorm_quant_kernel_reg4(floatX *xq, int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int IC,
                          int inner_norm, int act_int8, int xq_vec, int codes_vec) {
    rmsnorm_quant_row_reg<4, PRE>(xq, codes, inv_s, rstd, inp, N, IC, inner_norm, act_int8, xq_vec, codes_vec);
}
template <int PRE> __global__ void __launch_bounds__(RQ_MAX_BLOCK(8))
rmsnorm_quant_kernel_reg8(floatX *xq, int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int IC,
                          int inner_norm, int act_int8, int xq_vec, int codes_vec) {
    rmsnorm_quant_row_reg<8, PRE>(xq, codes, inv_s, rstd, inp, N, IC, inner_norm, act_int8, xq_vec, codes_vec);
}
template <int PRE> __global__ void __launch_bounds__(RQ_MAX_BLOCK(16))
rmsnorm_quant_kernel_reg16(floatX *xq, int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int IC,
                          int inner_norm, int act_int8, int xq_vec, int codes_vec) {
    rmsnorm_quant_row_reg<16, PRE>(xq, codes, inv_s, rstd, inp, N, IC, inner_norm, act_int8, xq_vec, codes_vec);
}
template <int PRE> __global__ void __launch_bounds__(RQ_MAX_BLOCK(32))
rmsnorm_quant_kernel_reg32(floatX *xq, int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int IC,
                          int inner_norm, int act_int8, int xq_vec, int codes_vec) {
    rmsnorm_quant_row_reg<32, PRE>(xq, codes, inv_s, rstd, inp, N, IC, inner_norm, act_int8, xq_vec, codes_vec);
}

// the capacity (vectors a lane) of the register kernel for rows of IC values from inp, or 0 for
// the fallback: IC whole 128-bit vectors, inp 16-byte aligned, at most RQ_MAX_VECS a lane. It
// depends on inp and IC only, so that the forward and the backward's recomputation of x_q (other
// outputs, same input) run the same kernel and get the same rstd and codes to the bit
static inline int rmsnorm_quant_capacity(const floatX *inp, int IC) {
    if (IC % RQ_X128 != 0 || !is_aligned128(inp)) { return 0; }
    int vpl = ceil_div(IC / RQ_X128, 32);
    static_assert(RQ_MAX_VECS == 32, "the largest instance launched below");
    return vpl <= 4 ? 4 : vpl <= 8 ? 8 : vpl <= 16 ? 16 : vpl <= RQ_MAX_VECS ? RQ_MAX_VECS : 0;
}

// the register kernel of capacity cap (4, 8, 16 or 32) with pre-op PRE, RQ_BLOCK threads a block
// (tests/test_cuda_resources.sh checks each instance at its __launch_bounds__, which RQ_BLOCK is within)
template <int PRE>
static inline void rmsnorm_quant_reg_launch(int cap, floatX *xq, int8_t *codes, float *inv_s, float *rstd,
                                            const floatX *inp, int N, int IC, int inner_norm, int act_int8, int xq_vec,
                                            int codes_vec) {
    static_assert(RQ_BLOCK <= RQ_MAX_BLOCK(RQ_MAX_VECS), "every instance takes RQ_BLOCK threads");
    int grid = ceil_div(N, RQ_BLOCK / 32);
    switch (cap) {
    case 4:
        rmsnorm_quant_kernel_reg4<PRE><<<grid, RQ_BLOCK>>>(xq, codes, inv_s, rstd, inp, N, IC, inner_norm, act_int8,
                                                             xq_vec, codes_vec);
        break;
    case 8:
        rmsnorm_quant_kernel_reg8<PRE><<<grid, RQ_BLOCK>>>(xq, codes, inv_s, rstd, inp, N, IC, inner_norm, act_int8,
                                                             xq_vec, codes_vec);
        break;
    case 16:
        rmsnorm_quant_kernel_reg16<PRE><<<grid, RQ_BLOCK>>>(xq, codes, inv_s, rstd, inp, N, IC, inner_norm, act_int8,
                                                              xq_vec, codes_vec);
        break;
    default:
        rmsnorm_quant_kernel_reg32<PRE><<<grid, RQ_BLOCK>>>(xq, codes, inv_s, rstd, inp, N, IC, inner_norm, act_int8,
                                                              xq_vec, codes_vec);
    }
}

// inp read through pre (BL_PRE_GELU: x = gelu_stored(inp), see the top); inner_norm: apply the
// RMSNorm (else r = 1); act_int8: quantize (else xq = x * r)
static inline void bitlinear_input_forward(floatX *xq, int8_t *codes, float *inv_s, float *rstd, const floatX *inp,
                                           BitLinearPreOp pre, int N, int IC, int inner_norm, int act_int8) {
    int cap = rmsnorm_quant_capacity(inp, IC);
    // vector stores: x_q 16-byte aligned; codes aligned to their RQ_X128 bytes (the rows are, then: IC % RQ_X128 == 0)
    int xq_vec = xq != NULL && is_aligned128(xq), codes_vec = codes != NULL && (uintptr_t)codes % RQ_X128 == 0;
    if (cap == 0) { // rows too long for a warp's registers, or not whole aligned vectors
        rmsnorm_quant_kernel<<<ceil_div(N, 8), 256>>>(xq, codes, inv_s, rstd, inp, pre, N, IC, inner_norm, act_int8);
    } else if (pre == BL_PRE_GELU) {
        rmsnorm_quant_reg_launch<BL_PRE_GELU>(cap, xq, codes, inv_s, rstd, inp, N, IC, inner_norm, act_int8, xq_vec,
                                              codes_vec);
    } else {
        rmsnorm_quant_reg_launch<BL_PRE_NONE>(cap, xq, codes, inv_s, rstd, inp, N, IC, inner_norm, act_int8, xq_vec,
                                              codes_vec);
    }
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// the int8 backward of dX (-bq int8): dY to int8 per token, and the trits transposed

// One warp per row of dout (N,OC): the row's max|g|, then every value to its int8 code with the
// gradient floor (ternary.h: grad_absmax_from_max, GRAD_EPS), as the activations are
__global__ void grad_quantize_kernel(int8_t *codes, float *inv_s, const floatX *dout, int N, int OC) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) { return; }
    const floatX *g = dout + (size_t)row * OC;
    float m = 0.0f;
    for (int i = lane; i < OC; i += 32) { m = fmaxf(m, fabsf(to_float(g[i]))); }
    float s = grad_absmax_from_max(warp_reduce_max(m));
    for (int i = lane; i < OC; i += 32) { codes[(size_t)row * OC + i] = quantize_int8(to_float(g[i]), s); }
    if (lane == 0) { inv_s[row] = 1.0f / s; }
}

// codes (N,OC) and inv_s (N) = 1/s_g of each row of dout (N,OC)
static inline void grad_quantize_rows(int8_t *codes, float *inv_s, const floatX *dout, int N, int OC) {
    grad_quantize_kernel<<<ceil_div(N, 8), 256>>>(codes, inv_s, dout, N, OC);
    cudaCheck(cudaGetLastError());
}

// dst (cols,rows) = src (rows,cols)^T for matrix blockIdx.z of a stack; one 32x32 tile a block of
// 256 threads (8 warps, a warp per tile row at a time), through shared memory so that both the
// reads and the writes go along rows
#define TRANSPOSE_TILE 32
__global__ void trits_transpose_kernel(int8_t *dst, const int8_t *src, int rows, int cols) {
    __shared__ int8_t tile[TRANSPOSE_TILE][TRANSPOSE_TILE + 1];
    size_t off = (size_t)blockIdx.z * rows * cols;
    int r0 = blockIdx.y * TRANSPOSE_TILE, c0 = blockIdx.x * TRANSPOSE_TILE;
    int x = threadIdx.x % TRANSPOSE_TILE, y = threadIdx.x / TRANSPOSE_TILE, ny = blockDim.x / TRANSPOSE_TILE;
    for (int j = y; j < TRANSPOSE_TILE; j += ny) { // tile[j][x] = src[r0 + j][c0 + x]
        int r = r0 + j, c = c0 + x;
        if (r < rows && c < cols) { tile[j][x] = src[off + (size_t)r * cols + c]; }
    }
    __syncthreads(); // every thread reads a column of the tile, which other threads loaded
    for (int j = y; j < TRANSPOSE_TILE; j += ny) { // dst[c0 + j][r0 + x] = tile[x][j]
        int c = c0 + j, r = r0 + x;
        if (r < rows && c < cols) { dst[off + (size_t)c * rows + r] = tile[x][j]; }
    }
}

// the L trit matrices (OC,IC) of one BitLinear kind, back to back, to (IC,OC) each in trits_t
static inline void trits_transpose(int8_t *trits_t, const int8_t *trits, int L, int OC, int IC) {
    dim3 grid(ceil_div(IC, TRANSPOSE_TILE), ceil_div(OC, TRANSPOSE_TILE), L);
    trits_transpose_kernel<<<grid, 256>>>(trits_t, trits, OC, IC);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_QUANTIZE_CUH
