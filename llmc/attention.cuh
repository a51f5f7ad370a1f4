/*
 llmc/attention.cuh: causal multi-head self-attention, forward and backward.
 Spec: attention_forward and attention_backward in train_gpt2_1bit.c.

   qkv (B,T,3C) = (B,T,3,NH,HS): q, k, v of every head; out (B,T,C) = (B,T,NH,HS), what attproj reads
   out[b,t,h,:] = sum_{t2 <= t} softmax_t2(scale * q[b,t,h,:] . k[b,t2,h,:]) v[b,t2,h,:],  scale = 1/sqrt(HS)

 Two forms, numbered as their dev/cuda variants (dev/cuda/attention_forward.cu, attention_backward.cu):

 1  the plain cuBLAS form (attention_forward_cublas, attention_backward_cublas): q, k, v permuted to
    (B,NH,T,HS), the scores (B,NH,T,T) by a batched GEMM, a causal softmax, the weighted sum by a
    batched GEMM, permuted back. The probabilities att (B,NH,T,T) are kept for the backward pass.
    Scratch: qkvr (3,B,NH,T,HS), preatt (B,NH,T,T) for the scores (backward: their gradient),
    vaccum (B,NH,T,HS), dqkvr (3,B,NH,T,HS). What the trainer runs with `make ATTENTION=cublas`.

 2, 3, 4  fused (attention_forward, attention_backward: what the trainer runs by default), after
    FlashAttention-2 (Dao, 2023): each block holds a tile of queries and walks the key/value tiles
    in shared memory with an online softmax (a running max m and sum l per row, in fp32; when m
    grows, what was summed is rescaled by exp(m_old - m_new)), so no T x T matrix is ever in
    memory. Key tiles wholly after a block's last query (masked by causality) are never loaded.
    Only the log-sum-exp of each row, lse (B,NH,T) = m + log(l) in natural-log units, is kept for
    the backward pass, which recomputes P = exp(scale * q.k - lse) from q, k and it. The backward
    (deterministic: every output element is written by one thread, sums in a fixed order, no
    atomics):
        D  (B,NH,T)   = rowsum(dout * out)                   (attention_delta_kernel)
        dS            = P * (dP - D),  dP = dout . v^T       (the softmax's backward, row by row)
        dk, dv        by a kernel over key tiles that walks the query tiles in order
        dq            by a kernel over query tiles that walks the key tiles in order
    Any T (tiles past T are zero-filled and masked), any head size up to 128.
    2  SIMT, fp32 arithmetic on floatX loads: one warp per query (or key) row at a time, a lane per
       key for the scores, a lane per channel for the sums. Every build; the FP32 build's form,
       and the bf16 build's for head sizes above 64.
    3  tensor cores: the two matmuls of each tile as mma.sync m16n8k16 (bf16 in, fp32 accumulate;
       sm_80+), 4 warps of 16 rows; P and dS are rounded to bf16 for their matmuls (as the
       cuBLAS form rounds att to floatX). Head sizes up to 64 (padded to 16, 32 or 64 with zeros);
       the bf16 build's form until form 4 replaced it.
 4  form 3 with the loads of a tuned FlashAttention-2 kernel (ldmatrix fragments, no transposed
    copies in shared memory, cp.async double-buffered tiles; the forward at 4 or 8 warps): what
    the bf16 build runs for head sizes up to 64 (attention_forward4 at 4 warps, attention_backward4).
    1.5x form 3 forward and backward on an H200; form 3 stays as its dev/cuda baseline.
 5  (backward only) form 4 without the second recomputation: the dk/dv kernel also writes dS^T
    into a scratch (the causal 64 x 64 tiles, bf16) and the dq kernel is one matmul, dQ = dS K,
    reading it back: 5 matmuls where form 4 does 7. With GPT2_1BIT_ATTENTION_BWD=5 in the
    environment (attention_backward_form); not yet run on a GPU, so form 4 stays the default.
 Memory at d12, B=64, T=1024 (bf16): form 1 keeps att, 12 x 64 x 12 x 1024^2 x 2 bytes = 18 GiB,
 plus 1.5 GiB of scores; the fused forms keep lse, 12 x 64 x 12 x 1024 x 4 bytes = 36 MiB.
*/
#ifndef LLMC_ATTENTION_CUH
#define LLMC_ATTENTION_CUH

#include <math.h>
#include <string.h>
#include "cuda_common.h" // defines: floatX, to_float, from_float, warp_reduce_sum/max, ceil_div, cudaCheck
#include "matmul.cuh"    // defines: cublas_handle, CUBLAS_COMPUTE

// ----------------------------------------------------------------------------
// form 1: cuBLAS + softmax

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

// out (B,T,C) = causal self-attention of qkv (B,T,3C); att (B,NH,T,T) keeps the probabilities
static inline void attention_forward_cublas(floatX *out, floatX *att, floatX *qkvr, floatX *preatt, floatX *vaccum,
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
static inline void attention_backward_cublas(floatX *dqkv, floatX *dqkvr, floatX *qkvr, floatX *preatt,
                                             floatX *vaccum, const floatX *dout, const floatX *qkv, const floatX *att,
                                             int B, int T, int C, int NH) {
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

// ----------------------------------------------------------------------------
// fused forms (2, 3): what they share
//
// Addressing: the (b, t) row of qkv starts at qkv + (b*T + t) * 3C; head h's q, k, v are its
// HS values at h*HS, C + h*HS, 2C + h*HS. out and dout rows: (b*T + t) * C + h*HS; lse and
// D: (b*NH + h) * T + t. A block is (tile, h, b) = (blockIdx.x, blockIdx.y, blockIdx.z).

#define ATT_WARPS 4                      // every fused kernel: 4 warps
#define ATT_THREADS (32 * ATT_WARPS)
#define ATT_MAX_HS 128                   // the largest head size the fused forms take
#define ATT_LOG2E 1.4426950408889634f
#define ATT_LN2 0.69314718055994531f

// D[b,h,t] = sum_d dout[b,t,h,d] * out[b,t,h,d]: one warp per (b, t, h), which are consecutive
// rows of HS values in both (B,T,C) tensors
__global__ void attention_delta_kernel(float *delta, const floatX *dout, const floatX *out, int B, int T, int NH,
                                       int HS) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= B * T * NH) { return; } // a whole warp leaves together: the shuffles see all 32 lanes
    int h = row % NH, bt = row / NH, b = bt / T, t = bt % T;
    const floatX *o = out + (size_t)row * HS, *d = dout + (size_t)row * HS;
    float s = 0.0f;
    for (int i = lane; i < HS; i += 32) { s += to_float(d[i]) * to_float(o[i]); }
    s = warp_reduce_sum(s);
    if (lane == 0) { delta[((size_t)b * NH + h) * T + t] = s; }
}

// the same with 128-bit loads: G = HS / x128::size lanes a row (a power of 2 up to 32), each
// reading one x128 of dout and of out, the row's sum over its G lanes by shuffles. The warp-a-row
// kernel above reads 2-byte values, 64 bytes a load instruction (1.1 TB/s on an H200 at B=64,
// T=1024, HS=64: 2.1 ms of the step); here a warp's load is 512 contiguous bytes
template <int G>
__global__ void attention_delta_kernel_vec(float *delta, const floatX *dout, const floatX *out, int B, int T, int NH) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; // this thread's x128 of the (rows, HS) tensors
    const size_t row = idx / G, rows = (size_t)B * T * NH;
    float s = 0.0f;
    if (row < rows) { // past the last row (the last block's tail): 0, but every lane takes part in the shuffles
        const x128 d = load128(dout + idx * x128::size), o = load128(out + idx * x128::size);
        #pragma unroll
        for (int i = 0; i < x128::size; i++) { s += to_float(d[i]) * to_float(o[i]); }
    }
    #pragma unroll
    for (int off = G / 2; off > 0; off /= 2) { s += __shfl_xor_sync(0xffffffffu, s, off); } // a row's G lanes
    if (row < rows && idx % G == 0) {
        const int h = (int)(row % NH), bt = (int)(row / NH), b = bt / T, t = bt % T;
        delta[((size_t)b * NH + h) * T + t] = s;
    }
}

static inline void attention_delta(float *delta, const floatX *dout, const floatX *out, int B, int T, int NH, int HS) {
    const long long vecs = (long long)B * T * NH * HS / x128::size; // x128s in each tensor
    const int G = HS % x128::size == 0 ? HS / x128::size : 0;
    if (is_aligned128(dout) && is_aligned128(out) && (G == 1 || G == 2 || G == 4 || G == 8 || G == 16 || G == 32)) {
        const int grid = (int)ceil_div(vecs, 256LL);
        switch (G) {
        case 1: attention_delta_kernel_vec<1><<<grid, 256>>>(delta, dout, out, B, T, NH); break;
        case 2: attention_delta_kernel_vec<2><<<grid, 256>>>(delta, dout, out, B, T, NH); break;
        case 4: attention_delta_kernel_vec<4><<<grid, 256>>>(delta, dout, out, B, T, NH); break;
        case 8: attention_delta_kernel_vec<8><<<grid, 256>>>(delta, dout, out, B, T, NH); break;
        case 16: attention_delta_kernel_vec<16><<<grid, 256>>>(delta, dout, out, B, T, NH); break;
        default: attention_delta_kernel_vec<32><<<grid, 256>>>(delta, dout, out, B, T, NH); break;
        }
    } else {
        attention_delta_kernel<<<ceil_div((long long)B * T * NH, 8), 256>>>(delta, dout, out, B, T, NH, HS);
    }
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// form 2: SIMT, fp32 arithmetic
//
// A warp takes one row at a time (a query in the forward and dq kernels, a key in the dk/dv
// kernel) against a tile of 32 partners, one per lane: the 32 dot products in parallel, then
// the row's sums over the tile with lane i's value broadcast by a shuffle and each lane adding
// its channels d = lane + 32 k (k < DPL: dims per lane, HS <= 32 DPL). Tiles live in shared
// memory as fp32; the tile a lane reads row by row has an odd stride (HM + 1 floats), so that
// the 32 lanes' reads of one column fall in 32 different banks. Rows per warp (RPW) are chosen
// per DPL so that a block's tiles fit the 48 KiB of static shared memory.

#define ATT2_TILE 32 // partners per tile: one per lane

// the fp32 tile of `rows` rows of one head (HS values of a row, zeros past HS and past row T - 1)
// starting at row r0 of the (., ld) matrix src, into dst[rows][ldd]
__device__ static inline void att2_load(float *dst, int ldd, int rows, int cols, const floatX *src, size_t ld, int r0,
                                        int T, int HS) {
    for (int e = threadIdx.x; e < rows * cols; e += blockDim.x) {
        int r = e / cols, d = e % cols;
        dst[r * ldd + d] = (r0 + r < T && d < HS) ? to_float(src[(size_t)(r0 + r) * ld + d]) : 0.0f;
    }
}

template <int DPL, int RPW>
__global__ void __launch_bounds__(ATT_THREADS)
attention_forward_kernel2(floatX *out, float *lse, const floatX *qkv, int T, int NH, int HS) {
    constexpr int HM = 32 * DPL, BQ = ATT_WARPS * RPW; // head size capacity, queries a block
    __shared__ float Qs[BQ][HM];             // read as broadcasts (a warp reads one row)
    __shared__ float Ks[ATT2_TILE][HM + 1];  // lane j reads row j: odd stride
    __shared__ float Vs[ATT2_TILE][HM];      // lane reads channel lane + 32k: contiguous
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, h = blockIdx.y, b = blockIdx.z;
    const int C = NH * HS, q0 = blockIdx.x * BQ;
    const size_t C3 = 3 * (size_t)C;
    const floatX *base = qkv + (size_t)b * T * C3 + h * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    att2_load(&Qs[0][0], HM, BQ, HM, base, C3, q0, T, HS);
    float m[RPW], l[RPW], o[RPW][DPL]; // running max, this lane's part of the running sum, output
    #pragma unroll
    for (int r = 0; r < RPW; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        #pragma unroll
        for (int k = 0; k < DPL; k++) { o[r][k] = 0.0f; }
    }
    // key tiles after the block's last query are masked for every row: not even loaded
    const int ntiles = (min(q0 + BQ, T) - 1) / ATT2_TILE + 1;
    for (int kt = 0; kt < ntiles; kt++) {
        const int k0 = kt * ATT2_TILE;
        __syncthreads(); // every warp is done with the previous tile (the first time: Qs is written)
        att2_load(&Ks[0][0], HM + 1, ATT2_TILE, HM, base + C, C3, k0, T, HS);
        att2_load(&Vs[0][0], HM, ATT2_TILE, HM, base + 2 * C, C3, k0, T, HS);
        __syncthreads(); // the tile is in shared memory
        #pragma unroll
        for (int r = 0; r < RPW; r++) {
            const int qr = warp * RPW + r, q = q0 + qr;
            if (q >= T || k0 > q) { continue; } // past T, or a tile wholly after q (warp-uniform)
            float s = 0.0f;
            for (int d = 0; d < HS; d++) { s += Qs[qr][d] * Ks[lane][d]; }
            s = k0 + lane <= q ? s * scale : -INFINITY; // causal mask
            // online softmax: m is finite from the first tile on (key 0 <= q), so corr and p are
            // never exp(-inf + inf); corr = 0 the first time
            const float mnew = fmaxf(m[r], warp_reduce_max(s));
            const float corr = expf(m[r] - mnew), p = expf(s - mnew);
            m[r] = mnew;
            l[r] = l[r] * corr + p;
            #pragma unroll
            for (int k = 0; k < DPL; k++) { o[r][k] *= corr; }
            for (int j = 0; j < ATT2_TILE; j++) {
                const float pj = __shfl_sync(0xffffffffu, p, j);
                #pragma unroll
                for (int k = 0; k < DPL; k++) { o[r][k] += pj * Vs[j][lane + 32 * k]; }
            }
        }
    }
    #pragma unroll
    for (int r = 0; r < RPW; r++) {
        const int q = q0 + warp * RPW + r;
        if (q >= T) { continue; }
        const float sum = warp_reduce_sum(l[r]), inv = 1.0f / sum;
        floatX *o_q = out + ((size_t)b * T + q) * C + h * HS;
        #pragma unroll
        for (int k = 0; k < DPL; k++) {
            if (lane + 32 * k < HS) { o_q[lane + 32 * k] = from_float<floatX>(o[r][k] * inv); }
        }
        if (lane == 0) { lse[((size_t)b * NH + h) * T + q] = m[r] + logf(sum); }
    }
}

// dk, dv of a tile of ATT_WARPS * KPW keys: a warp takes one key at a time against each tile of
// 32 queries (lane i: query i), from the first tile that reaches the block's first key to the last
template <int DPL, int KPW>
__global__ void __launch_bounds__(ATT_THREADS)
attention_backward_dkdv_kernel2(floatX *dqkv, const floatX *dout, const floatX *qkv, const float *lse,
                                const float *delta, int T, int NH, int HS) {
    constexpr int HM = 32 * DPL, BK = ATT_WARPS * KPW;
    __shared__ float Ks[BK][HM];               // broadcasts
    __shared__ float Vs[BK][HM];
    __shared__ float Qs[ATT2_TILE][HM + 1];    // lane i reads row i; and rows whole
    __shared__ float dOs[ATT2_TILE][HM + 1];
    __shared__ float lse_s[ATT2_TILE];
    __shared__ float dl_s[ATT2_TILE];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, h = blockIdx.y, b = blockIdx.z;
    const int C = NH * HS, k0 = blockIdx.x * BK;
    const size_t C3 = 3 * (size_t)C;
    const floatX *base = qkv + (size_t)b * T * C3 + h * HS, *dbase = dout + (size_t)b * T * C + h * HS;
    const float *lse_bh = lse + ((size_t)b * NH + h) * T, *dl_bh = delta + ((size_t)b * NH + h) * T;
    const float scale = 1.0f / sqrtf((float)HS);
    att2_load(&Ks[0][0], HM, BK, HM, base + C, C3, k0, T, HS);
    att2_load(&Vs[0][0], HM, BK, HM, base + 2 * C, C3, k0, T, HS);
    float dk[KPW][DPL], dv[KPW][DPL];
    #pragma unroll
    for (int r = 0; r < KPW; r++) {
        #pragma unroll
        for (int k = 0; k < DPL; k++) { dk[r][k] = dv[r][k] = 0.0f; }
    }
    for (int q0 = k0 / ATT2_TILE * ATT2_TILE; q0 < T; q0 += ATT2_TILE) { // queries before k0 see none of these keys
        __syncthreads(); // every warp is done with the previous query tile (the first time: Ks, Vs are written)
        att2_load(&Qs[0][0], HM + 1, ATT2_TILE, HM, base, C3, q0, T, HS);
        att2_load(&dOs[0][0], HM + 1, ATT2_TILE, HM, dbase, C, q0, T, HS);
        if (threadIdx.x < ATT2_TILE) {
            const int q = q0 + threadIdx.x;
            lse_s[threadIdx.x] = q < T ? lse_bh[q] : 0.0f;
            dl_s[threadIdx.x] = q < T ? dl_bh[q] : 0.0f;
        }
        __syncthreads(); // the query tile is in shared memory
        const int q = q0 + lane;
        #pragma unroll
        for (int r = 0; r < KPW; r++) {
            const int kr = warp * KPW + r, key = k0 + kr;
            if (key >= T || q0 + ATT2_TILE - 1 < key) { continue; } // past T, or every query of the tile before it
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < HS; d++) {
                s += Qs[lane][d] * Ks[kr][d];
                dp += dOs[lane][d] * Vs[kr][d];
            }
            const float p = (q >= key && q < T) ? expf(s * scale - lse_s[lane]) : 0.0f; // P recomputed
            const float ds = p * (dp - dl_s[lane]);
            for (int i = 0; i < ATT2_TILE; i++) { // in query order: the same sums every run
                const float pi = __shfl_sync(0xffffffffu, p, i), dsi = __shfl_sync(0xffffffffu, ds, i);
                #pragma unroll
                for (int k = 0; k < DPL; k++) {
                    dv[r][k] += pi * dOs[i][lane + 32 * k];
                    dk[r][k] += dsi * Qs[i][lane + 32 * k];
                }
            }
        }
    }
    #pragma unroll
    for (int r = 0; r < KPW; r++) {
        const int key = k0 + warp * KPW + r;
        if (key >= T) { continue; }
        floatX *dk_t = dqkv + ((size_t)b * T + key) * C3 + C + h * HS, *dv_t = dk_t + C;
        #pragma unroll
        for (int k = 0; k < DPL; k++) {
            if (lane + 32 * k < HS) {
                dk_t[lane + 32 * k] = from_float<floatX>(dk[r][k] * scale);
                dv_t[lane + 32 * k] = from_float<floatX>(dv[r][k]);
            }
        }
    }
}

// dq of a tile of ATT_WARPS * RPW queries: a warp takes one query at a time against each key
// tile up to its own position (lane j: key j)
template <int DPL, int RPW>
__global__ void __launch_bounds__(ATT_THREADS)
attention_backward_dq_kernel2(floatX *dqkv, const floatX *dout, const floatX *qkv, const float *lse,
                              const float *delta, int T, int NH, int HS) {
    constexpr int HM = 32 * DPL, BQ = ATT_WARPS * RPW;
    __shared__ float Qs[BQ][HM];               // broadcasts
    __shared__ float dOs[BQ][HM];
    __shared__ float Ks[ATT2_TILE][HM + 1];    // lane j reads row j; and rows whole
    __shared__ float Vs[ATT2_TILE][HM + 1];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, h = blockIdx.y, b = blockIdx.z;
    const int C = NH * HS, q0 = blockIdx.x * BQ;
    const size_t C3 = 3 * (size_t)C;
    const floatX *base = qkv + (size_t)b * T * C3 + h * HS, *dbase = dout + (size_t)b * T * C + h * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    att2_load(&Qs[0][0], HM, BQ, HM, base, C3, q0, T, HS);
    att2_load(&dOs[0][0], HM, BQ, HM, dbase, C, q0, T, HS);
    float dq[RPW][DPL], lse_r[RPW], dl_r[RPW];
    #pragma unroll
    for (int r = 0; r < RPW; r++) {
        const int q = q0 + warp * RPW + r;
        lse_r[r] = q < T ? lse[((size_t)b * NH + h) * T + q] : 0.0f;
        dl_r[r] = q < T ? delta[((size_t)b * NH + h) * T + q] : 0.0f;
        #pragma unroll
        for (int k = 0; k < DPL; k++) { dq[r][k] = 0.0f; }
    }
    const int ntiles = (min(q0 + BQ, T) - 1) / ATT2_TILE + 1;
    for (int kt = 0; kt < ntiles; kt++) {
        const int k0 = kt * ATT2_TILE;
        __syncthreads(); // every warp is done with the previous tile (the first time: Qs, dOs are written)
        att2_load(&Ks[0][0], HM + 1, ATT2_TILE, HM, base + C, C3, k0, T, HS);
        att2_load(&Vs[0][0], HM + 1, ATT2_TILE, HM, base + 2 * C, C3, k0, T, HS);
        __syncthreads(); // the key tile is in shared memory
        #pragma unroll
        for (int r = 0; r < RPW; r++) {
            const int qr = warp * RPW + r, q = q0 + qr;
            if (q >= T || k0 > q) { continue; }
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < HS; d++) {
                s += Qs[qr][d] * Ks[lane][d];
                dp += dOs[qr][d] * Vs[lane][d];
            }
            const float p = k0 + lane <= q ? expf(s * scale - lse_r[r]) : 0.0f;
            const float ds = p * (dp - dl_r[r]);
            for (int j = 0; j < ATT2_TILE; j++) { // in key order
                const float dsj = __shfl_sync(0xffffffffu, ds, j);
                #pragma unroll
                for (int k = 0; k < DPL; k++) { dq[r][k] += dsj * Ks[j][lane + 32 * k]; }
            }
        }
    }
    #pragma unroll
    for (int r = 0; r < RPW; r++) {
        const int q = q0 + warp * RPW + r;
        if (q >= T) { continue; }
        floatX *dq_t = dqkv + ((size_t)b * T + q) * C3 + h * HS;
        #pragma unroll
        for (int k = 0; k < DPL; k++) {
            if (lane + 32 * k < HS) { dq_t[lane + 32 * k] = from_float<floatX>(dq[r][k] * scale); }
        }
    }
}

// the instances: DPL 1, 2, 4 (HS up to 32, 64, 128) and rows a warp that fit 48 KiB (bytes of
// static shared memory: forward 12.3K / 24.3K / 40.5K, dk/dv 16.6K / 33.1K / 41.1K, dq 16.6K /
// 33.1K / 41.1K)
template <int DPL> struct Att2Rows {
    static constexpr int fwd = DPL == 4 ? 4 : 8, dkdv = DPL == 4 ? 2 : 8, dq = DPL == 4 ? 2 : 8;
};

static inline void attention_check_head_size(int HS) {
    if (HS > ATT_MAX_HS) {
        fprintf(stderr, "error: head size %d: the fused attention takes at most %d\n"
                "---> HINT: rebuild with the cuBLAS attention: make train_gpt2_1bitcu ATTENTION=cublas\n",
                HS, ATT_MAX_HS);
        exit(EXIT_FAILURE);
    }
}

template <int DPL>
static void attention_forward2_launch(floatX *out, float *lse, const floatX *qkv, int B, int T, int NH, int HS) {
    constexpr int RPW = Att2Rows<DPL>::fwd;
    attention_forward_kernel2<DPL, RPW><<<dim3(ceil_div(T, ATT_WARPS * RPW), NH, B), ATT_THREADS>>>(out, lse, qkv, T,
                                                                                                   NH, HS);
    cudaCheck(cudaGetLastError());
}

template <int DPL>
static void attention_backward2_launch(floatX *dqkv, const float *delta, const floatX *dout, const floatX *qkv,
                                       const float *lse, int B, int T, int NH, int HS) {
    constexpr int KPW = Att2Rows<DPL>::dkdv, RPW = Att2Rows<DPL>::dq;
    attention_backward_dkdv_kernel2<DPL, KPW><<<dim3(ceil_div(T, ATT_WARPS * KPW), NH, B), ATT_THREADS>>>(
        dqkv, dout, qkv, lse, delta, T, NH, HS);
    cudaCheck(cudaGetLastError());
    attention_backward_dq_kernel2<DPL, RPW><<<dim3(ceil_div(T, ATT_WARPS * RPW), NH, B), ATT_THREADS>>>(
        dqkv, dout, qkv, lse, delta, T, NH, HS);
    cudaCheck(cudaGetLastError());
}

// form 2: out (B,T,C), lse (B,NH,T) from qkv (B,T,3C)
static inline void attention_forward2(floatX *out, float *lse, const floatX *qkv, int B, int T, int C, int NH) {
    int HS = C / NH;
    attention_check_head_size(HS);
    if (HS <= 32) { attention_forward2_launch<1>(out, lse, qkv, B, T, NH, HS); }
    else if (HS <= 64) { attention_forward2_launch<2>(out, lse, qkv, B, T, NH, HS); }
    else { attention_forward2_launch<4>(out, lse, qkv, B, T, NH, HS); }
}

// form 2: dqkv (B,T,3C) (overwritten) from dout (B,T,C) and the forward's qkv, out and lse;
// delta (B,NH,T) is scratch
static inline void attention_backward2(floatX *dqkv, float *delta, const floatX *dout, const floatX *qkv,
                                       const floatX *out, const float *lse, int B, int T, int C, int NH) {
    int HS = C / NH;
    attention_check_head_size(HS);
    attention_delta(delta, dout, out, B, T, NH, HS);
    if (HS <= 32) { attention_backward2_launch<1>(dqkv, delta, dout, qkv, lse, B, T, NH, HS); }
    else if (HS <= 64) { attention_backward2_launch<2>(dqkv, delta, dout, qkv, lse, B, T, NH, HS); }
    else { attention_backward2_launch<4>(dqkv, delta, dout, qkv, lse, B, T, NH, HS); }
}

// ----------------------------------------------------------------------------
// form 3: tensor cores, bf16 (not in the FP32 build: the tensor cores would round its fp32
// activations to bf16)
#ifndef ENABLE_FP32

// D (16x8, fp32) += A (16x16, bf16, row-major) B (16x8, bf16, column-major): mma.sync m16n8k16.
// Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), with
// g = lane / 4, t = lane % 4, two bf16 a register (the lower column / row in the low half):
//   a[0]: A[g][2t, 2t+1]   a[1]: A[g+8][2t, 2t+1]   a[2]: A[g][2t+8, 2t+9]   a[3]: A[g+8][2t+8, 2t+9]
//   b0:   B[2t, 2t+1][g]   b1:   B[2t+8, 2t+9][g]   (B column-major: both values of a register
//                                                   are adjacent in memory when B^T is stored by rows)
//   d[i]: D[g + 8*(i>>1)][2t + (i&1)]
// So the accumulators of two neighbouring n8 tiles, (d of tile 2c, d of tile 2c+1) rounded to
// bf16 in pairs, are the A fragment of the k16 chunk c: a[0] = tile 2c's (d0, d1), a[1] = its
// (d2, d3), a[2], a[3] the same of tile 2c+1. That is how P and dS go from one matmul into the next.
__device__ static inline void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// two floats rounded to bf16 in one register, lo in the low half
__device__ static inline uint32_t att3_pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}

// two adjacent bf16 of shared memory (an even index) as one register
__device__ static inline uint32_t att3_lds(const floatX *p) {
    uint32_t u;
    memcpy(&u, p, 4);
    return u;
}

// columns col, col + 1 of a row in global memory (zeros past HS, or when the row is past T)
__device__ static inline uint32_t att3_ldg(const floatX *row, int col, int HS, bool valid) {
    const float lo = valid && col < HS ? to_float(row[col]) : 0.0f;
    const float hi = valid && col + 1 < HS ? to_float(row[col + 1]) : 0.0f;
    return att3_pack(lo, hi); // exact: the values are bf16 already
}

// the A fragments of a warp's 16 rows r0.. of one head (k16 chunks of the head dimension),
// straight from global memory (once per block, so plain loads do)
template <int HSP>
__device__ static inline void att3_ldg_frags(uint32_t (&f)[HSP / 16][4], const floatX *src, size_t ld, int r0, int T,
                                             int HS) {
    const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    const floatX *lo = src + (size_t)(r0 + g) * ld, *hi = lo + 8 * ld;
    const bool vlo = r0 + g < T, vhi = r0 + g + 8 < T;
    #pragma unroll
    for (int kk = 0; kk < HSP / 16; kk++) {
        f[kk][0] = att3_ldg(lo, kk * 16 + 2 * t, HS, vlo);
        f[kk][1] = att3_ldg(hi, kk * 16 + 2 * t, HS, vhi);
        f[kk][2] = att3_ldg(lo, kk * 16 + 2 * t + 8, HS, vlo);
        f[kk][3] = att3_ldg(hi, kk * 16 + 2 * t + 8, HS, vhi);
    }
}

// Rows r0 .. r0 + ROWS - 1 of one head (columns 0 .. HSP - 1; zeros past HS and past row T - 1)
// of the (., ld) matrix src into shared memory, row-major dst[ROWS][ldd] and/or transposed
// dstT[HSP][ldt] (either may be NULL). 16-byte loads of 8 values when HS % 8 == 0 (every row
// then starts 16-byte aligned: C = NH * HS is a multiple of 8 too), else one value at a time.
template <int ROWS, int HSP>
__device__ static inline void att3_load(floatX *dst, int ldd, floatX *dstT, int ldt, const floatX *src, size_t ld,
                                        int r0, int T, int HS) {
    if (HS % 8 == 0) {
        constexpr int CPR = HSP / 8; // 16-byte chunks a row
        for (int c = threadIdx.x; c < ROWS * CPR; c += blockDim.x) {
            const int r = c / CPR, col = c % CPR * 8;
            int4 v = make_int4(0, 0, 0, 0);
            if (r0 + r < T && col < HS) { v = *reinterpret_cast<const int4 *>(src + (size_t)(r0 + r) * ld + col); }
            if (dst != NULL) { *reinterpret_cast<int4 *>(dst + r * ldd + col) = v; }
            if (dstT != NULL) {
                floatX e[8];
                memcpy(e, &v, 16);
                #pragma unroll
                for (int j = 0; j < 8; j++) { dstT[(col + j) * ldt + r] = e[j]; }
            }
        }
    } else {
        for (int e = threadIdx.x; e < ROWS * HSP; e += blockDim.x) {
            const int r = e / HSP, col = e % HSP;
            const floatX v = (r0 + r < T && col < HS) ? src[(size_t)(r0 + r) * ld + col] : from_float<floatX>(0.0f);
            if (dst != NULL) { dst[r * ldd + col] = v; }
            if (dstT != NULL) { dstT[col * ldt + r] = v; }
        }
    }
}

// dQ / sqrt(HS) of this lane's rows (row0, row0 + 8; columns 2t, 2t + 1 of each n8 tile) into
// dqkv's q slots of head h; rows past T and columns past HS are not written
template <int ND>
__device__ static inline void att3_store_dq(floatX *dqkv, const float (&dq)[ND][4], int b, int h, int row0, int t,
                                            int T, int C, int HS) {
    const float scale = 1.0f / sqrtf((float)HS);
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row0 + 8 * r;
        if (row >= T) { continue; }
        floatX *dq_t = dqkv + ((size_t)b * T + row) * 3 * C + h * HS;
        #pragma unroll
        for (int nd = 0; nd < ND; nd++) {
            #pragma unroll
            for (int c = 0; c < 2; c++) {
                const int col = nd * 8 + 2 * t + c;
                if (col < HS) { dq_t[col] = from_float<floatX>(dq[nd][2 * r + c] * scale); }
            }
        }
    }
}

// Tiles: 64 queries a block (4 warps x 16 rows, the m16 of the mma), 64 keys a tile (the
// dk/dv kernel: 64 keys a block, 32 queries a tile, to hold its register count). Shared rows
// are padded by 8 bf16 (16 bytes): with row strides of 24, 40, 72 or 80 bf16 (12, 20, 36, 40
// words) the 8 rows g x 4 columns t of a fragment load fall in 32 different banks.
#define ATT3_BQ 64
#define ATT3_BK 64
#define ATT3_BQ_DKDV 32
#define ATT3_PAD 8

template <int HSP>
__global__ void __launch_bounds__(ATT_THREADS)
attention_forward_kernel3(floatX *out, float *lse, const floatX *qkv, int T, int NH, int HS) {
    constexpr int LDH = HSP + ATT3_PAD, LDK = ATT3_BK + ATT3_PAD;
    constexpr int NK = HSP / 16, ND = HSP / 8;          // k16 chunks and n8 tiles of the head dimension
    constexpr int NT = ATT3_BK / 8, NC = ATT3_BK / 16;   // n8 tiles and k16 chunks of a key tile
    __shared__ __align__(16) floatX Ks[ATT3_BK * LDH];  // keys by rows: S = Q K^T reads K[key][d pair]
    __shared__ __align__(16) floatX Vt[HSP * LDK];      // V transposed: O += P V reads V[key pair][d]
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    const int h = blockIdx.y, b = blockIdx.z, C = NH * HS;
    const int qt = gridDim.x - 1 - blockIdx.x; // the longest rows first: the grid's tail is the short blocks
    const int q0 = qt * ATT3_BQ, row0 = q0 + warp * 16 + g; // this lane's rows: row0, row0 + 8
    const size_t C3 = 3 * (size_t)C;
    const floatX *base = qkv + (size_t)b * T * C3 + h * HS;
    const float sl2 = ATT_LOG2E / sqrtf((float)HS); // scores in log2 units: exp(x) = exp2(x log2 e)
    uint32_t qa[NK][4];
    att3_ldg_frags<HSP>(qa, base, C3, q0 + warp * 16, T, HS);
    float o[ND][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; // l: this lane's part of the row sums
    #pragma unroll
    for (int nd = 0; nd < ND; nd++) { o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f; }
    for (int kt = 0; kt <= qt; kt++) { // key tiles after the query tile are masked: never loaded
        const int k0 = kt * ATT3_BK;
        __syncthreads(); // every warp is done with the previous tile
        att3_load<ATT3_BK, HSP>(Ks, LDH, NULL, 0, base + C, C3, k0, T, HS);
        att3_load<ATT3_BK, HSP>(NULL, 0, Vt, LDK, base + 2 * C, C3, k0, T, HS);
        __syncthreads(); // the tile is in shared memory
        // on the diagonal tile, the n8 tiles of keys after the warp's last row (16w + 15) are all masked
        const int nt_lim = kt == qt ? 2 * warp + 2 : NT, nc_lim = kt == qt ? warp + 1 : NC;
        float s[NT][4];
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            if (nt < nt_lim) {
                #pragma unroll
                for (int kk = 0; kk < NK; kk++) {
                    const floatX *p = &Ks[(nt * 8 + g) * LDH + kk * 16 + 2 * t];
                    mma_bf16_16816(s[nt], qa[kk], att3_lds(p), att3_lds(p + 8));
                }
            }
        }
        // mask, scale, the tile's row maxima (rows g, g + 8: the 4 lanes of a group hold a row)
        float mx[2] = {m[0], m[1]};
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                const int key = k0 + nt * 8 + 2 * t + (i & 1), row = row0 + 8 * (i >> 1);
                s[nt][i] = (nt < nt_lim && key <= row) ? s[nt][i] * sl2 : -INFINITY;
                mx[i >> 1] = fmaxf(mx[i >> 1], s[nt][i]);
            }
        }
        #pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        }
        // rescale what was summed (m finite from the first tile on: key 0 <= every row; corr = 0 the
        // first time), then P = exp2(s - m)
        const float corr[2] = {exp2f(m[0] - mx[0]), exp2f(m[1] - mx[1])};
        m[0] = mx[0];
        m[1] = mx[1];
        l[0] *= corr[0];
        l[1] *= corr[1];
        #pragma unroll
        for (int nd = 0; nd < ND; nd++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) { o[nd][i] *= corr[i >> 1]; }
        }
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                s[nt][i] = exp2f(s[nt][i] - m[i >> 1]);
                l[i >> 1] += s[nt][i];
            }
        }
        // O += P V: P's accumulators are the A fragments of the next mma (see mma_bf16_16816)
        #pragma unroll
        for (int kc = 0; kc < NC; kc++) {
            if (kc < nc_lim) {
                const uint32_t pa[4] = {att3_pack(s[2 * kc][0], s[2 * kc][1]), att3_pack(s[2 * kc][2], s[2 * kc][3]),
                                        att3_pack(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                        att3_pack(s[2 * kc + 1][2], s[2 * kc + 1][3])};
                #pragma unroll
                for (int nd = 0; nd < ND; nd++) {
                    const floatX *p = &Vt[(nd * 8 + g) * LDK + kc * 16 + 2 * t];
                    mma_bf16_16816(o[nd], pa, att3_lds(p), att3_lds(p + 8));
                }
            }
        }
    }
    #pragma unroll
    for (int r = 0; r < 2; r++) { // the row sums: the 4 lanes of the group
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row0 + 8 * r;
        if (row >= T) { continue; }
        const float inv = 1.0f / l[r];
        floatX *o_row = out + ((size_t)b * T + row) * C + h * HS;
        #pragma unroll
        for (int nd = 0; nd < ND; nd++) {
            const int col = nd * 8 + 2 * t;
            if (col < HS) { o_row[col] = from_float<floatX>(o[nd][2 * r] * inv); }
            if (col + 1 < HS) { o_row[col + 1] = from_float<floatX>(o[nd][2 * r + 1] * inv); }
        }
        if (t == 0) { lse[((size_t)b * NH + h) * T + row] = (m[r] + log2f(l[r])) * ATT_LN2; }
    }
}

// dk, dv of 64 keys (warp w: keys k0 + 16w ..), walking the query tiles of 32 from k0 to T in
// order. The matmuls run transposed, keys as rows: S^T = K Q^T and dP^T = V dO^T (A = the
// warp's K and V rows, in registers), then dV += P^T dO and dK += dS^T Q (A = P^T, dS^T).
template <int HSP>
__global__ void __launch_bounds__(ATT_THREADS)
attention_backward_dkdv_kernel3(floatX *dqkv, const floatX *dout, const floatX *qkv, const float *lse,
                                const float *delta, int T, int NH, int HS) {
    constexpr int BQ = ATT3_BQ_DKDV, LDH = HSP + ATT3_PAD, LDQ = BQ + ATT3_PAD;
    constexpr int NK = HSP / 16, ND = HSP / 8, NT = BQ / 8, NC = BQ / 16;
    __shared__ __align__(16) floatX Qs[BQ * LDH];  // by rows: S^T, dP^T read Q[query][d pair]
    __shared__ __align__(16) floatX dOs[BQ * LDH];
    __shared__ __align__(16) floatX Qt[HSP * LDQ]; // transposed: dK, dV read Q[query pair][d]
    __shared__ __align__(16) floatX dOt[HSP * LDQ];
    __shared__ float lse_s[BQ];                    // in log2 units
    __shared__ float dl_s[BQ];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    const int h = blockIdx.y, b = blockIdx.z, C = NH * HS;
    const int k0 = blockIdx.x * ATT3_BK, krow0 = k0 + warp * 16 + g; // this lane's keys: krow0, krow0 + 8
    const size_t C3 = 3 * (size_t)C;
    const floatX *base = qkv + (size_t)b * T * C3 + h * HS, *dbase = dout + (size_t)b * T * C + h * HS;
    const float *lse_bh = lse + ((size_t)b * NH + h) * T, *dl_bh = delta + ((size_t)b * NH + h) * T;
    const float sl2 = ATT_LOG2E / sqrtf((float)HS);
    uint32_t ka[NK][4], va[NK][4];
    att3_ldg_frags<HSP>(ka, base + C, C3, k0 + warp * 16, T, HS);
    att3_ldg_frags<HSP>(va, base + 2 * C, C3, k0 + warp * 16, T, HS);
    float dk[ND][4], dv[ND][4];
    #pragma unroll
    for (int nd = 0; nd < ND; nd++) {
        #pragma unroll
        for (int i = 0; i < 4; i++) { dk[nd][i] = dv[nd][i] = 0.0f; }
    }
    for (int q0 = k0; q0 < T; q0 += BQ) { // queries before k0 see none of these keys
        __syncthreads(); // every warp is done with the previous query tile
        att3_load<BQ, HSP>(Qs, LDH, Qt, LDQ, base, C3, q0, T, HS);
        att3_load<BQ, HSP>(dOs, LDH, dOt, LDQ, dbase, C, q0, T, HS);
        if (threadIdx.x < BQ) {
            const int q = q0 + threadIdx.x;
            lse_s[threadIdx.x] = q < T ? lse_bh[q] * ATT_LOG2E : 0.0f;
            dl_s[threadIdx.x] = q < T ? dl_bh[q] : 0.0f;
        }
        __syncthreads(); // the query tile is in shared memory
        if (q0 + BQ - 1 < k0 + warp * 16) { continue; } // every query of the tile before the warp's keys (warp-uniform)
        float st[NT][4], dpt[NT][4];
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) { st[nt][i] = dpt[nt][i] = 0.0f; }
            #pragma unroll
            for (int kk = 0; kk < NK; kk++) {
                const floatX *pq = &Qs[(nt * 8 + g) * LDH + kk * 16 + 2 * t];
                const floatX *pd = &dOs[(nt * 8 + g) * LDH + kk * 16 + 2 * t];
                mma_bf16_16816(st[nt], ka[kk], att3_lds(pq), att3_lds(pq + 8));
                mma_bf16_16816(dpt[nt], va[kk], att3_lds(pd), att3_lds(pd + 8));
            }
        }
        // P^T and dS^T = P^T * (dP^T - D), element (key row, query column)
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                const int ql = nt * 8 + 2 * t + (i & 1), q = q0 + ql, key = krow0 + 8 * (i >> 1);
                const float p = (q >= key && q < T) ? exp2f(st[nt][i] * sl2 - lse_s[ql]) : 0.0f;
                st[nt][i] = p;
                dpt[nt][i] = p * (dpt[nt][i] - dl_s[ql]);
            }
        }
        // dV += P^T dO, dK += dS^T Q: k = the tile's queries, in order
        #pragma unroll
        for (int kc = 0; kc < NC; kc++) {
            const uint32_t pa[4] = {att3_pack(st[2 * kc][0], st[2 * kc][1]), att3_pack(st[2 * kc][2], st[2 * kc][3]),
                                    att3_pack(st[2 * kc + 1][0], st[2 * kc + 1][1]),
                                    att3_pack(st[2 * kc + 1][2], st[2 * kc + 1][3])};
            const uint32_t sa[4] = {att3_pack(dpt[2 * kc][0], dpt[2 * kc][1]),
                                    att3_pack(dpt[2 * kc][2], dpt[2 * kc][3]),
                                    att3_pack(dpt[2 * kc + 1][0], dpt[2 * kc + 1][1]),
                                    att3_pack(dpt[2 * kc + 1][2], dpt[2 * kc + 1][3])};
            #pragma unroll
            for (int nd = 0; nd < ND; nd++) {
                const floatX *pd = &dOt[(nd * 8 + g) * LDQ + kc * 16 + 2 * t];
                const floatX *pq = &Qt[(nd * 8 + g) * LDQ + kc * 16 + 2 * t];
                mma_bf16_16816(dv[nd], pa, att3_lds(pd), att3_lds(pd + 8));
                mma_bf16_16816(dk[nd], sa, att3_lds(pq), att3_lds(pq + 8));
            }
        }
    }
    const float scale = 1.0f / sqrtf((float)HS);
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        const int key = krow0 + 8 * r;
        if (key >= T) { continue; }
        floatX *dk_t = dqkv + ((size_t)b * T + key) * C3 + C + h * HS, *dv_t = dk_t + C;
        #pragma unroll
        for (int nd = 0; nd < ND; nd++) {
            #pragma unroll
            for (int c = 0; c < 2; c++) {
                const int col = nd * 8 + 2 * t + c;
                if (col < HS) {
                    dk_t[col] = from_float<floatX>(dk[nd][2 * r + c] * scale);
                    dv_t[col] = from_float<floatX>(dv[nd][2 * r + c]);
                }
            }
        }
    }
}

// dq of 64 queries (warp w: rows q0 + 16w ..), walking the key tiles from 0 to the diagonal in
// order: S = Q K^T and dP = dO V^T (A = the warp's Q and dO rows, in registers), dQ += dS K
template <int HSP>
__global__ void __launch_bounds__(ATT_THREADS)
attention_backward_dq_kernel3(floatX *dqkv, const floatX *dout, const floatX *qkv, const float *lse,
                              const float *delta, int T, int NH, int HS) {
    constexpr int LDH = HSP + ATT3_PAD, LDK = ATT3_BK + ATT3_PAD;
    constexpr int NK = HSP / 16, ND = HSP / 8, NT = ATT3_BK / 8, NC = ATT3_BK / 16;
    __shared__ __align__(16) floatX Ks[ATT3_BK * LDH]; // by rows: S, dP read [key][d pair]
    __shared__ __align__(16) floatX Vs[ATT3_BK * LDH];
    __shared__ __align__(16) floatX Kt[HSP * LDK];     // transposed: dQ reads K[key pair][d]
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    const int h = blockIdx.y, b = blockIdx.z, C = NH * HS;
    const int qt = gridDim.x - 1 - blockIdx.x; // the longest rows first
    const int q0 = qt * ATT3_BQ, row0 = q0 + warp * 16 + g;
    const size_t C3 = 3 * (size_t)C;
    const floatX *base = qkv + (size_t)b * T * C3 + h * HS, *dbase = dout + (size_t)b * T * C + h * HS;
    const float sl2 = ATT_LOG2E / sqrtf((float)HS);
    uint32_t qa[NK][4], da[NK][4];
    att3_ldg_frags<HSP>(qa, base, C3, q0 + warp * 16, T, HS);
    att3_ldg_frags<HSP>(da, dbase, C, q0 + warp * 16, T, HS);
    float lse2[2], dl[2], dq[ND][4];
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row0 + 8 * r;
        lse2[r] = row < T ? lse[((size_t)b * NH + h) * T + row] * ATT_LOG2E : 0.0f;
        dl[r] = row < T ? delta[((size_t)b * NH + h) * T + row] : 0.0f;
    }
    #pragma unroll
    for (int nd = 0; nd < ND; nd++) { dq[nd][0] = dq[nd][1] = dq[nd][2] = dq[nd][3] = 0.0f; }
    for (int kt = 0; kt <= qt; kt++) {
        const int k0 = kt * ATT3_BK;
        __syncthreads(); // every warp is done with the previous tile
        att3_load<ATT3_BK, HSP>(Ks, LDH, Kt, LDK, base + C, C3, k0, T, HS);
        att3_load<ATT3_BK, HSP>(Vs, LDH, NULL, 0, base + 2 * C, C3, k0, T, HS);
        __syncthreads(); // the tile is in shared memory
        const int nt_lim = kt == qt ? 2 * warp + 2 : NT, nc_lim = kt == qt ? warp + 1 : NC;
        float s[NT][4], dp[NT][4];
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) { s[nt][i] = dp[nt][i] = 0.0f; }
            if (nt < nt_lim) {
                #pragma unroll
                for (int kk = 0; kk < NK; kk++) {
                    const floatX *pk = &Ks[(nt * 8 + g) * LDH + kk * 16 + 2 * t];
                    const floatX *pv = &Vs[(nt * 8 + g) * LDH + kk * 16 + 2 * t];
                    mma_bf16_16816(s[nt], qa[kk], att3_lds(pk), att3_lds(pk + 8));
                    mma_bf16_16816(dp[nt], da[kk], att3_lds(pv), att3_lds(pv + 8));
                }
            }
        }
        // dS = P * (dP - D), P recomputed from the forward's lse, into s
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                const int key = k0 + nt * 8 + 2 * t + (i & 1), row = row0 + 8 * (i >> 1);
                const float p = (nt < nt_lim && key <= row) ? exp2f(s[nt][i] * sl2 - lse2[i >> 1]) : 0.0f;
                s[nt][i] = p * (dp[nt][i] - dl[i >> 1]);
            }
        }
        #pragma unroll
        for (int kc = 0; kc < NC; kc++) {
            if (kc < nc_lim) {
                const uint32_t sa[4] = {att3_pack(s[2 * kc][0], s[2 * kc][1]), att3_pack(s[2 * kc][2], s[2 * kc][3]),
                                        att3_pack(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                        att3_pack(s[2 * kc + 1][2], s[2 * kc + 1][3])};
                #pragma unroll
                for (int nd = 0; nd < ND; nd++) {
                    const floatX *pk = &Kt[(nd * 8 + g) * LDK + kc * 16 + 2 * t];
                    mma_bf16_16816(dq[nd], sa, att3_lds(pk), att3_lds(pk + 8));
                }
            }
        }
    }
    att3_store_dq<ND>(dqkv, dq, b, h, row0, t, T, C, HS);
}

#define ATT3_MAX_HS 64 // form 3's head sizes, padded to 16, 32 or 64

static inline void attention_check_head_size3(int HS) {
    if (HS > ATT3_MAX_HS) {
        fprintf(stderr, "error: head size %d: the tensor-core attention takes at most %d\n", HS, ATT3_MAX_HS);
        exit(EXIT_FAILURE);
    }
}

template <int HSP>
static void attention_forward3_launch(floatX *out, float *lse, const floatX *qkv, int B, int T, int NH, int HS) {
    attention_forward_kernel3<HSP><<<dim3(ceil_div(T, ATT3_BQ), NH, B), ATT_THREADS>>>(out, lse, qkv, T, NH, HS);
    cudaCheck(cudaGetLastError());
}

template <int HSP>
static void attention_backward3_launch(floatX *dqkv, const float *delta, const floatX *dout, const floatX *qkv,
                                       const float *lse, int B, int T, int NH, int HS) {
    attention_backward_dkdv_kernel3<HSP><<<dim3(ceil_div(T, ATT3_BK), NH, B), ATT_THREADS>>>(dqkv, dout, qkv, lse,
                                                                                              delta, T, NH, HS);
    cudaCheck(cudaGetLastError());
    attention_backward_dq_kernel3<HSP><<<dim3(ceil_div(T, ATT3_BQ), NH, B), ATT_THREADS>>>(dqkv, dout, qkv, lse,
                                                                                            delta, T, NH, HS);
    cudaCheck(cudaGetLastError());
}

// form 3: out (B,T,C), lse (B,NH,T) from qkv (B,T,3C); HS <= 64
static inline void attention_forward3(floatX *out, float *lse, const floatX *qkv, int B, int T, int C, int NH) {
    int HS = C / NH;
    attention_check_head_size3(HS);
    if (HS <= 16) { attention_forward3_launch<16>(out, lse, qkv, B, T, NH, HS); }
    else if (HS <= 32) { attention_forward3_launch<32>(out, lse, qkv, B, T, NH, HS); }
    else { attention_forward3_launch<64>(out, lse, qkv, B, T, NH, HS); }
}

// form 3: dqkv (B,T,3C) (overwritten) from dout and the forward's qkv, out, lse; delta (B,NH,T) scratch
static inline void attention_backward3(floatX *dqkv, float *delta, const floatX *dout, const floatX *qkv,
                                       const floatX *out, const float *lse, int B, int T, int C, int NH) {
    int HS = C / NH;
    attention_check_head_size3(HS);
    attention_delta(delta, dout, out, B, T, NH, HS);
    if (HS <= 16) { attention_backward3_launch<16>(dqkv, delta, dout, qkv, lse, B, T, NH, HS); }
    else if (HS <= 32) { attention_backward3_launch<32>(dqkv, delta, dout, qkv, lse, B, T, NH, HS); }
    else { attention_backward3_launch<64>(dqkv, delta, dout, qkv, lse, B, T, NH, HS); }
}

// ----------------------------------------------------------------------------
// form 4 (dev/cuda only for now; the trainer runs form 3): form 3's forward, with the tile loads
// and fragment loads of a tuned FlashAttention-2 kernel. What variant 3's SASS shows and what
// this changes (head size 64):
//   - fragments: variant 3 reads every B fragment register with its own 32-bit LDS (128 LDS for
//     64 HMMA a tile); here ldmatrix.x4 gives a lane four fragment registers (32 LDSM for 64 HMMA)
//   - V: variant 3 stores it transposed into shared memory, one bf16 at a time (8 STS.U16 a
//     16-byte chunk, bank-conflicted); here V stays by rows and ldmatrix.trans transposes it
//   - loads: variant 3 loads a tile global -> registers -> shared between two barriers, the
//     tensor cores idle meanwhile; here cp.async copies tile kt + 1 into the second of two
//     buffers while tile kt is multiplied (one barrier a tile)
//   - Q: read once into shared memory (the second buffer, before its first use) and from there
//     by ldmatrix, instead of 2-byte global loads
//   - WARPS warps of 16 query rows (64 or 128 rows a block): at 128, half the K/V traffic from L2
//     a query; the softmax as variant 3's, with the scale folded into one FMA before exp2
// Shared rows are padded by 8 bf16 (row strides of 48, 80 or 144 bytes: odd multiples of 16),
// so the 8 row addresses of an ldmatrix phase fall in 8 different 16-byte bank groups.
#define ATT4_BK 64
#define ATT4_PAD 8

// the .shared state space address of a pointer into shared memory (ldmatrix, cp.async take it)
__device__ static inline uint32_t att4_smem(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// four 8x8 bf16 matrices: lane 8i + j gives the address of row j of matrix i (16 bytes,
// 16-byte aligned); r[i] is matrix i's (g, 2t .. 2t+1), with .trans its (2t .. 2t+1, g):
// the layout of an mma fragment register (PTX ISA, ldmatrix)
__device__ static inline void att4_ldsm_x4(uint32_t (&r)[4], const floatX *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(att4_smem(p)));
}
__device__ static inline void att4_ldsm_x4_trans(uint32_t (&r)[4], const floatX *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(att4_smem(p)));
}

// 16 bytes global -> shared without passing through registers; src_bytes < 16: the rest zeros
// (0: nothing is read)
__device__ static inline void att4_cp_async16(floatX *dst, const floatX *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(att4_smem(dst)), "l"(src), "r"(src_bytes)
                 : "memory");
}
__device__ static inline void att4_cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// this thread's copies are done but for its N most recent groups (others' need a barrier after)
template <int N> __device__ static inline void att4_cp_async_wait(void) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// rows r0 .. r0 + ROWS - 1 of one head (columns 0 .. HSP - 1; zeros past HS and past row T - 1)
// of the (., ld) matrix src into dst[ROWS][HSP + ATT4_PAD], by NTHREADS threads: cp.async of
// 16-byte chunks when HS % 8 == 0 (every row 16-byte aligned), else plain loads and stores one
// value at a time (done at once; either way visible to the block after a barrier)
template <int ROWS, int HSP, int NTHREADS>
__device__ static inline void att4_load_tile(floatX *dst, const floatX *src, size_t ld, int r0, int T, int HS) {
    constexpr int LDH = HSP + ATT4_PAD, CPR = HSP / 8; // 16-byte chunks a row
    if (HS % 8 == 0) {
        #pragma unroll
        for (int c = threadIdx.x; c < ROWS * CPR; c += NTHREADS) {
            const int r = c / CPR, col = c % CPR * 8;
            const bool valid = r0 + r < T && col < HS;
            // an invalid chunk reads nothing, but its address must still be a valid one: the head's row 0
            att4_cp_async16(dst + r * LDH + col, valid ? src + (size_t)(r0 + r) * ld + col : src, valid ? 16 : 0);
        }
    } else {
        for (int e = threadIdx.x; e < ROWS * HSP; e += NTHREADS) {
            const int r = e / HSP, col = e % HSP;
            dst[r * LDH + col] = (r0 + r < T && col < HS) ? src[(size_t)(r0 + r) * ld + col] : from_float<floatX>(0.0f);
        }
    }
}

// acc (16 rows x ND n8 tiles) += A R, A a 16 x 16 bf16 fragment (rows: the warp's, columns: the
// chunk kc's 16 keys) and R the chunk's rows of a matrix kept by rows in shared memory
// (Rs[key][LDH]: V in the forward's O += P V, K in dQ += dS K), read transposed by ldmatrix.trans
// into B fragments (matrices: keys 0-7 | 8-15 of the chunk x columns 8nd.. | 8nd+8..)
template <int ND, int LDH>
__device__ static inline void att4_mma_by_rows(float (&acc)[ND][4], const uint32_t (&a)[4], const floatX *Rs, int kc,
                                               int lane) {
    #pragma unroll
    for (int dp = 0; dp < ND / 2; dp++) {
        uint32_t rb[4];
        att4_ldsm_x4_trans(rb, &Rs[(kc * 16 + lane % 16) * LDH + (2 * dp + lane / 16) * 8]);
        mma_bf16_16816(acc[2 * dp], a, rb[0], rb[1]);
        mma_bf16_16816(acc[2 * dp + 1], a, rb[2], rb[3]);
    }
}

// __launch_bounds__: 16 warps an SM (2 blocks of 8 warps, 4 of 4) at most 128 registers a thread
// (ptxas: 128 at 8 warps without the bound, 142 at 4, i.e. 3 blocks of 4 warps an SM without it)
template <int HSP, int WARPS>
__global__ void __launch_bounds__(32 * WARPS, 16 / WARPS)
attention_forward_kernel4(floatX *out, float *lse, const floatX *qkv, int T, int NH, int HS) {
    constexpr int BQ = 16 * WARPS, BK = ATT4_BK, LDH = HSP + ATT4_PAD;
    constexpr int NK = HSP / 16, ND = HSP / 8;   // k16 chunks and n8 tiles of the head dimension
    constexpr int NT = BK / 8, NC = BK / 16;     // n8 tiles and k16 chunks of a key tile
    static_assert(BQ <= 2 * BK, "the Q tile is staged in the second K/V buffer");
    // two buffers, each a key tile's K (rows 0 .. BK-1) then V (rows BK .. 2BK-1), by rows
    __shared__ __align__(16) floatX kv[2][2 * BK * LDH];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    const int h = blockIdx.y, b = blockIdx.z, C = NH * HS;
    const int qt = gridDim.x - 1 - blockIdx.x; // the longest rows first: the grid's tail is the short blocks
    const int q0 = qt * BQ, wq0 = q0 + warp * 16, row0 = wq0 + g; // this lane's rows: row0, row0 + 8
    const int nkt = (min(q0 + BQ, T) - 1) / BK + 1;                // key tiles up to the block's last row
    const size_t C3 = 3 * (size_t)C;
    const floatX *base = qkv + (size_t)b * T * C3 + h * HS;
    const float sl2 = ATT_LOG2E / sqrtf((float)HS); // scores in log2 units: exp(x) = exp2(x log2 e)

    // Q into buffer 1, key tile 0 into buffer 0: one group
    att4_load_tile<BQ, HSP, 32 * WARPS>(kv[1], base, C3, q0, T, HS);
    att4_load_tile<BK, HSP, 32 * WARPS>(kv[0], base + C, C3, 0, T, HS);
    att4_load_tile<BK, HSP, 32 * WARPS>(kv[0] + BK * LDH, base + 2 * C, C3, 0, T, HS);
    att4_cp_async_commit();
    att4_cp_async_wait<0>();
    __syncthreads(); // every thread's part of Q is in shared memory
    // the warp's 16 rows as A fragments (matrices: rows 0-7 | 8-15 x columns 0-7 | 8-15 of the chunk)
    uint32_t qa[NK][4];
    #pragma unroll
    for (int kk = 0; kk < NK; kk++) { att4_ldsm_x4(qa[kk], &kv[1][(warp * 16 + lane % 16) * LDH + kk * 16 + lane / 16 * 8]); }

    float o[ND][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; // m in log2 units; l: this lane's part
    #pragma unroll
    for (int nd = 0; nd < ND; nd++) { o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f; }
    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * BK;
        att4_cp_async_wait<0>(); // this thread's copies of tile kt are done (the only group in flight)
        // tile kt is in shared memory for every warp; and every warp is done with tile kt - 1 (and,
        // the first time, with Q), so its buffer can take tile kt + 1
        __syncthreads();
        if (kt + 1 < nkt) { // prefetch: copied while this tile is multiplied
            floatX *nxt = kv[(kt + 1) % 2];
            att4_load_tile<BK, HSP, 32 * WARPS>(nxt, base + C, C3, k0 + BK, T, HS);
            att4_load_tile<BK, HSP, 32 * WARPS>(nxt + BK * LDH, base + 2 * C, C3, k0 + BK, T, HS);
            att4_cp_async_commit();
        }
        // keys all after the warp's last row, or a warp wholly past T: nothing to do (warp-uniform)
        if (k0 > wq0 + 15 || wq0 >= T) { continue; }
        const floatX *Ks = kv[kt % 2], *Vs = Ks + BK * LDH;
        // a tile reaching past the warp's first row needs the causal mask; its n8 tiles after the
        // warp's last row are all masked (an even number: wq0 - k0 is a multiple of 16)
        const bool diag = k0 + BK - 1 > wq0;
        const int nt_lim = diag ? min(NT, (wq0 + 15 - k0) / 8 + 1) : NT;
        // S = Q K^T: B fragments of two n8 tiles a ldmatrix.x4 (matrices: keys 8nt.. | 8nt+8.. x
        // columns 0-7 | 8-15 of the chunk; K by rows is B column-major)
        float s[NT][4];
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) { s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f; }
        #pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            if (2 * np < nt_lim) {
                #pragma unroll
                for (int kk = 0; kk < NK; kk++) {
                    uint32_t kb[4];
                    att4_ldsm_x4(kb, &Ks[(np * 16 + lane / 16 * 8 + lane % 8) * LDH + kk * 16 + (lane / 8) % 2 * 8]);
                    mma_bf16_16816(s[2 * np], qa[kk], kb[0], kb[1]);
                    mma_bf16_16816(s[2 * np + 1], qa[kk], kb[2], kb[3]);
                }
            }
        }
        // the causal mask, then the tile's row maxima (rows g, g + 8: the 4 lanes of a group hold a row)
        if (diag) {
            #pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                #pragma unroll
                for (int i = 0; i < 4; i++) {
                    const int key = k0 + nt * 8 + 2 * t + (i & 1), row = row0 + 8 * (i >> 1);
                    if (nt >= nt_lim || key > row) { s[nt][i] = -INFINITY; }
                }
            }
        }
        float mx[2] = {-INFINITY, -INFINITY};
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) { mx[i >> 1] = fmaxf(mx[i >> 1], s[nt][i]); }
        }
        #pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            mx[r] = fmaxf(m[r], mx[r] * sl2); // sl2 > 0: the max of the scaled scores
        }
        // rescale what was summed (m finite from the first tile on: key 0 <= every row, and key k0
        // <= every row of a tile the warp computes; corr = 0 the first time), then
        // P = exp2(s sl2 - m), one FMA and one MUFU.EX2 an element
        const float corr[2] = {exp2f(m[0] - mx[0]), exp2f(m[1] - mx[1])};
        m[0] = mx[0];
        m[1] = mx[1];
        l[0] *= corr[0];
        l[1] *= corr[1];
        #pragma unroll
        for (int nd = 0; nd < ND; nd++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) { o[nd][i] *= corr[i >> 1]; }
        }
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                s[nt][i] = nt < nt_lim ? exp2f(fmaf(s[nt][i], sl2, -m[i >> 1])) : 0.0f;
                l[i >> 1] += s[nt][i];
            }
        }
        // O += P V: P's accumulators are the A fragments (see mma_bf16_16816)
        #pragma unroll
        for (int kc = 0; kc < NC; kc++) {
            if (2 * kc < nt_lim) {
                const uint32_t pa[4] = {att3_pack(s[2 * kc][0], s[2 * kc][1]), att3_pack(s[2 * kc][2], s[2 * kc][3]),
                                        att3_pack(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                        att3_pack(s[2 * kc + 1][2], s[2 * kc + 1][3])};
                att4_mma_by_rows<ND, LDH>(o, pa, Vs, kc, lane);
            }
        }
    }
    #pragma unroll
    for (int r = 0; r < 2; r++) { // the row sums: the 4 lanes of the group
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row0 + 8 * r;
        if (row >= T) { continue; }
        const float inv = 1.0f / l[r];
        floatX *o_row = out + ((size_t)b * T + row) * C + h * HS;
        #pragma unroll
        for (int nd = 0; nd < ND; nd++) {
            const int col = nd * 8 + 2 * t;
            if (HS % 2 == 0 && col + 1 < HS) { // a pair in one 4-byte store (C, HS even: the address is aligned)
                const uint32_t v = att3_pack(o[nd][2 * r] * inv, o[nd][2 * r + 1] * inv);
                memcpy(&o_row[col], &v, 4);
            } else {
                if (col < HS) { o_row[col] = from_float<floatX>(o[nd][2 * r] * inv); }
                if (col + 1 < HS) { o_row[col + 1] = from_float<floatX>(o[nd][2 * r + 1] * inv); }
            }
        }
        if (t == 0) { lse[((size_t)b * NH + h) * T + row] = (m[r] + log2f(l[r])) * ATT_LN2; }
    }
}

template <int HSP, int WARPS>
static void attention_forward4_launch(floatX *out, float *lse, const floatX *qkv, int B, int T, int NH, int HS) {
    attention_forward_kernel4<HSP, WARPS><<<dim3(ceil_div(T, 16 * WARPS), NH, B), 32 * WARPS>>>(out, lse, qkv, T, NH,
                                                                                                HS);
    cudaCheck(cudaGetLastError());
}

template <int WARPS>
static void attention_forward4_hs(floatX *out, float *lse, const floatX *qkv, int B, int T, int NH, int HS) {
    if (HS <= 16) { attention_forward4_launch<16, WARPS>(out, lse, qkv, B, T, NH, HS); }
    else if (HS <= 32) { attention_forward4_launch<32, WARPS>(out, lse, qkv, B, T, NH, HS); }
    else { attention_forward4_launch<64, WARPS>(out, lse, qkv, B, T, NH, HS); }
}

// form 4: out (B,T,C), lse (B,NH,T) from qkv (B,T,3C); HS <= 64; block_size 128 or 256 threads
// (4 or 8 warps: 64 or 128 query rows a block)
static inline void attention_forward4(floatX *out, float *lse, const floatX *qkv, int B, int T, int C, int NH,
                                      int block_size) {
    int HS = C / NH;
    attention_check_head_size3(HS);
    if (block_size == 128) { attention_forward4_hs<4>(out, lse, qkv, B, T, NH, HS); }
    else if (block_size == 256) { attention_forward4_hs<8>(out, lse, qkv, B, T, NH, HS); }
    else {
        fprintf(stderr, "attention_forward4: block size %d: 128 or 256\n", block_size);
        exit(EXIT_FAILURE);
    }
}

// 4 bytes global -> shared (lse, D of a query tile); src_bytes 0: zeros
__device__ static inline void att4_cp_async4(float *dst, const float *src, int src_bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(att4_smem(dst)), "l"(src), "r"(src_bytes)
                 : "memory");
}

// a query tile for the dk/dv kernel: Q and dO rows q0 .. q0 + BQ - 1 into qd (Q rows 0 .. BQ-1,
// dO rows BQ ..), lse and D into ld_s (entries 0 .. BQ-1 and BQ ..), zeros past T
template <int BQ, int HSP>
__device__ static inline void att4_load_qtile(floatX *qd, float *ld_s, const floatX *base, const floatX *dbase,
                                              const float *lse_bh, const float *dl_bh, int C, int q0, int T, int HS) {
    att4_load_tile<BQ, HSP, ATT_THREADS>(qd, base, 3 * (size_t)C, q0, T, HS);
    att4_load_tile<BQ, HSP, ATT_THREADS>(qd + BQ * (HSP + ATT4_PAD), dbase, C, q0, T, HS);
    if (threadIdx.x < 2 * BQ) { // lse by the first BQ threads, D by the next
        const int q = q0 + threadIdx.x % BQ;
        const float *src = (threadIdx.x < BQ ? lse_bh : dl_bh) + (q < T ? q : 0);
        att4_cp_async4(&ld_s[threadIdx.x], src, q < T ? 4 : 0);
    }
}

// form 5's dS scratch (see form 5 below): per head (b, h), the 64 x 64 tiles (key tile kb, query
// tile qb) with qb >= kb, in the order (0,0) (0,1) .. (0,nb-1) (1,1) .. (nb-1,nb-1); in a tile,
// dS^T (keys x queries) as 8 x 8 blocks (key block kr, query block qc) in the order kr * 8 + qc,
// each block's 64 values by rows (key, then query). A block is what one warp-wide 4-byte store
// of an mma fragment register covers (lane 4g + t: row g, columns 2t, 2t + 1; 128 bytes in a
// row) and what one matrix of an ldmatrix reads (8 rows of 16 bytes, conflict-free)
#define ATT5_TILE 64
#define ATT5_TILE_ELEMS (ATT5_TILE * ATT5_TILE)
// (ceil_div of cuda_common.h is host code: the tile count is written out here)
__host__ __device__ static inline size_t att5_tiles_per_head(int T) {
    const size_t nb = (size_t)(T + ATT5_TILE - 1) / ATT5_TILE;
    return nb * (nb + 1) / 2;
}
// the offset in elements of tile (kb, qb), qb >= kb, of head (b, h)
__host__ __device__ static inline size_t att5_tile_offset(int b, int h, int NH, int T, int kb, int qb) {
    const size_t nb = (size_t)(T + ATT5_TILE - 1) / ATT5_TILE;
    const size_t in_head = (size_t)kb * nb - (size_t)kb * (kb - 1) / 2 + (size_t)(qb - kb);
    return (((size_t)b * NH + h) * att5_tiles_per_head(T) + in_head) * ATT5_TILE_ELEMS;
}

// dS^T of a warp's 16 keys (key tile kb, rows 16 warp ..) x 16 queries from q (a multiple of 16)
// into the scratch: sa is the A fragment (rows: keys, columns: queries, see mma_bf16_16816),
// whose four registers are the four 8 x 8 blocks (keys 0-7 | 8-15) x (queries 0-7 | 8-15)
__device__ static inline void att5_store_ds(floatX *ds, const uint32_t (&sa)[4], int b, int h, int NH, int T, int kb,
                                            int q, int warp, int lane) {
    floatX *tile = ds + att5_tile_offset(b, h, NH, T, kb, q / ATT5_TILE);
    const int kr = 2 * warp, qc = q % ATT5_TILE / 8;
    const int blk[4] = {kr * 8 + qc, (kr + 1) * 8 + qc, kr * 8 + qc + 1, (kr + 1) * 8 + qc + 1};
    #pragma unroll
    for (int i = 0; i < 4; i++) { memcpy(tile + blk[i] * 64 + 2 * lane, &sa[i], 4); } // (g, 2t): 8g + 2t = 2 lane
}

// form 4's dk, dv: form 3's scheme (64 keys a block, warp w: keys k0 + 16w .., query tiles of 32
// from k0 to T in order; S^T = K Q^T, dP^T = V dO^T with the warp's K and V rows as A fragments,
// then dV += P^T dO, dK += dS^T Q) with form 4's loads: Q and dO stay by rows (B of S^T and dP^T
// by ldmatrix, B of dV and dK by ldmatrix.trans: variant 3 kept a second, transposed copy of each,
// stored one bf16 at a time), and the next query tile (Q, dO, lse, D) is copied by cp.async while
// this one is multiplied
// __launch_bounds__(.., 2): up to 255 registers a thread. Without it ptxas stops at 168 and spills
// 20 bytes on sm_80 (dk/dv, and dq bounded to 3 blocks an SM); with it, HS 64 takes ~200 on sm_80
// and sm_90, no spills: 2 blocks (8 warps) an SM, where variant 3's 158-165 leave room for 3.
// STORE_DS (form 5) also writes each dS^T chunk into ds (att5_store_ds); form 4's instance has no
// store (false: the code is compiled out, ds is not read)
template <int HSP, bool STORE_DS>
__global__ void __launch_bounds__(ATT_THREADS, 2)
attention_backward_dkdv_kernel4(floatX *dqkv, floatX *ds, const floatX *dout, const floatX *qkv, const float *lse,
                                const float *delta, int T, int NH, int HS) {
    constexpr int BQ = ATT3_BQ_DKDV, BK = ATT4_BK, LDH = HSP + ATT4_PAD;
    constexpr int NK = HSP / 16, ND = HSP / 8, NT = BQ / 8, NC = BQ / 16;
    static_assert(BK <= 2 * BQ, "K and V are staged in the two Q/dO buffers");
    // two buffers, each a query tile's Q (rows 0 .. BQ-1) then dO (rows BQ .. 2BQ-1), by rows;
    // and each tile's lse (entries 0 .. BQ-1) then D (BQ .. 2BQ-1)
    __shared__ __align__(16) floatX qd[2][2 * BQ * LDH];
    __shared__ __align__(16) float ld_s[2][2 * BQ];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    const int h = blockIdx.y, b = blockIdx.z, C = NH * HS;
    const int k0 = blockIdx.x * BK, wk0 = k0 + warp * 16, krow0 = wk0 + g; // this lane's keys: krow0, krow0 + 8
    const int nqt = (T - k0 - 1) / BQ + 1;                                // query tiles from k0 to T - 1
    const size_t C3 = 3 * (size_t)C;
    const floatX *base = qkv + (size_t)b * T * C3 + h * HS, *dbase = dout + (size_t)b * T * C + h * HS;
    const float *lse_bh = lse + ((size_t)b * NH + h) * T, *dl_bh = delta + ((size_t)b * NH + h) * T;
    const float sl2 = ATT_LOG2E / sqrtf((float)HS);

    // the block's K (rows 0 .. BK-1 of the two buffers, which are contiguous) and V (rows BK ..)
    att4_load_tile<BK, HSP, ATT_THREADS>(&qd[0][0], base + C, C3, k0, T, HS);
    att4_load_tile<BK, HSP, ATT_THREADS>(&qd[0][0] + BK * LDH, base + 2 * C, C3, k0, T, HS);
    att4_cp_async_commit();
    att4_cp_async_wait<0>();
    __syncthreads(); // K and V are in shared memory
    uint32_t ka[NK][4], va[NK][4];
    #pragma unroll
    for (int kk = 0; kk < NK; kk++) {
        att4_ldsm_x4(ka[kk], &qd[0][(warp * 16 + lane % 16) * LDH + kk * 16 + lane / 16 * 8]);
        att4_ldsm_x4(va[kk], &qd[0][(BK + warp * 16 + lane % 16) * LDH + kk * 16 + lane / 16 * 8]);
    }
    float dk[ND][4], dv[ND][4];
    #pragma unroll
    for (int nd = 0; nd < ND; nd++) {
        #pragma unroll
        for (int i = 0; i < 4; i++) { dk[nd][i] = dv[nd][i] = 0.0f; }
    }
    for (int j = 0; j < nqt; j++) {
        const int q0 = k0 + j * BQ;
        // every warp is done with the buffer of tile j - 1 (the first time: with K and V), so it can
        // take tile j + 1 (the first time: tile 0 too, a group of its own, which nothing overlaps)
        __syncthreads();
        if (j == 0) {
            att4_load_qtile<BQ, HSP>(qd[0], ld_s[0], base, dbase, lse_bh, dl_bh, C, k0, T, HS);
            att4_cp_async_commit();
        }
        if (j + 1 < nqt) {
            att4_load_qtile<BQ, HSP>(qd[(j + 1) % 2], ld_s[(j + 1) % 2], base, dbase, lse_bh, dl_bh, C, q0 + BQ, T, HS);
        }
        att4_cp_async_commit();  // tile j + 1's group (empty after the last tile): the most recent
        att4_cp_async_wait<1>(); // so this thread's copies of tile j are done; tile j + 1's may be in flight
        __syncthreads();         // tile j is in shared memory for every warp
        // every query of the tile before the warp's keys, or keys all past T (warp-uniform)
        if (q0 + BQ - 1 < wk0 || wk0 >= T) { continue; }
        const floatX *Qs = qd[j % 2], *dOs = Qs + BQ * LDH;
        const float *lse_s = ld_s[j % 2], *dl_s = lse_s + BQ;
        // S^T = K Q^T, dP^T = V dO^T: Q, dO by rows are B column-major (two n8 tiles a ldmatrix.x4)
        float st[NT][4], dpt[NT][4];
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) { st[nt][i] = dpt[nt][i] = 0.0f; }
        }
        #pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            #pragma unroll
            for (int kk = 0; kk < NK; kk++) {
                const int off = (np * 16 + lane / 16 * 8 + lane % 8) * LDH + kk * 16 + (lane / 8) % 2 * 8;
                uint32_t qb[4], ob[4];
                att4_ldsm_x4(qb, &Qs[off]);
                att4_ldsm_x4(ob, &dOs[off]);
                mma_bf16_16816(st[2 * np], ka[kk], qb[0], qb[1]);
                mma_bf16_16816(st[2 * np + 1], ka[kk], qb[2], qb[3]);
                mma_bf16_16816(dpt[2 * np], va[kk], ob[0], ob[1]);
                mma_bf16_16816(dpt[2 * np + 1], va[kk], ob[2], ob[3]);
            }
        }
        // P^T and dS^T = P^T * (dP^T - D), element (key row, query column)
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                const int ql = nt * 8 + 2 * t + (i & 1), q = q0 + ql, key = krow0 + 8 * (i >> 1);
                const float p =
                    (q >= key && q < T) ? exp2f(fmaf(st[nt][i], sl2, -lse_s[ql] * ATT_LOG2E)) : 0.0f;
                st[nt][i] = p;
                dpt[nt][i] = p * (dpt[nt][i] - dl_s[ql]);
            }
        }
        // dV += P^T dO, dK += dS^T Q: k = the tile's queries, in order; dO and Q by rows read
        // transposed give B (matrices: queries 0-7 | 8-15 of the chunk x columns 8nd.. | 8nd+8..)
        #pragma unroll
        for (int kc = 0; kc < NC; kc++) {
            const uint32_t pa[4] = {att3_pack(st[2 * kc][0], st[2 * kc][1]), att3_pack(st[2 * kc][2], st[2 * kc][3]),
                                    att3_pack(st[2 * kc + 1][0], st[2 * kc + 1][1]),
                                    att3_pack(st[2 * kc + 1][2], st[2 * kc + 1][3])};
            const uint32_t sa[4] = {att3_pack(dpt[2 * kc][0], dpt[2 * kc][1]),
                                    att3_pack(dpt[2 * kc][2], dpt[2 * kc][3]),
                                    att3_pack(dpt[2 * kc + 1][0], dpt[2 * kc + 1][1]),
                                    att3_pack(dpt[2 * kc + 1][2], dpt[2 * kc + 1][3])};
            if (STORE_DS) { // form 5: dS^T for the dq kernel, the warp's 16 keys x the chunk's 16 queries
                att5_store_ds(ds, sa, b, h, NH, T, blockIdx.x, q0 + kc * 16, warp, lane);
            }
            #pragma unroll
            for (int dp2 = 0; dp2 < ND / 2; dp2++) {
                const int off = (kc * 16 + lane % 16) * LDH + (2 * dp2 + lane / 16) * 8;
                uint32_t ob[4], qb[4];
                att4_ldsm_x4_trans(ob, &dOs[off]);
                att4_ldsm_x4_trans(qb, &Qs[off]);
                mma_bf16_16816(dv[2 * dp2], pa, ob[0], ob[1]);
                mma_bf16_16816(dv[2 * dp2 + 1], pa, ob[2], ob[3]);
                mma_bf16_16816(dk[2 * dp2], sa, qb[0], qb[1]);
                mma_bf16_16816(dk[2 * dp2 + 1], sa, qb[2], qb[3]);
            }
        }
    }
    const float scale = 1.0f / sqrtf((float)HS);
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        const int key = krow0 + 8 * r;
        if (key >= T) { continue; }
        floatX *dk_t = dqkv + ((size_t)b * T + key) * C3 + C + h * HS, *dv_t = dk_t + C;
        #pragma unroll
        for (int nd = 0; nd < ND; nd++) {
            #pragma unroll
            for (int c = 0; c < 2; c++) {
                const int col = nd * 8 + 2 * t + c;
                if (col < HS) {
                    dk_t[col] = from_float<floatX>(dk[nd][2 * r + c] * scale);
                    dv_t[col] = from_float<floatX>(dv[nd][2 * r + c]);
                }
            }
        }
    }
}

// form 4's dq: form 3's scheme (64 queries a block, warp w: rows q0 + 16w .., key tiles from 0
// to the diagonal in order; S = Q K^T and dP = dO V^T with the warp's Q and dO rows as A
// fragments, dQ += dS K) with form 4's loads: K by rows (B of S by ldmatrix, of dQ by
// ldmatrix.trans: variant 3 kept a transposed copy), V by rows, the next K/V tile copied by
// cp.async while this one is multiplied, Q and dO through shared memory
// __launch_bounds__(.., 2): see the dk/dv kernel
template <int HSP>
__global__ void __launch_bounds__(ATT_THREADS, 2)
attention_backward_dq_kernel4(floatX *dqkv, const floatX *dout, const floatX *qkv, const float *lse,
                              const float *delta, int T, int NH, int HS) {
    constexpr int BQ = ATT3_BQ, BK = ATT4_BK, LDH = HSP + ATT4_PAD;
    constexpr int NK = HSP / 16, ND = HSP / 8, NT = BK / 8, NC = BK / 16;
    static_assert(2 * BQ <= 2 * BK, "Q and dO are staged in the second K/V buffer");
    __shared__ __align__(16) floatX kv[2][2 * BK * LDH]; // K (rows 0 .. BK-1) then V (rows BK ..), by rows
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    const int h = blockIdx.y, b = blockIdx.z, C = NH * HS;
    const int qt = gridDim.x - 1 - blockIdx.x; // the longest rows first
    const int q0 = qt * BQ, wq0 = q0 + warp * 16, row0 = wq0 + g;
    const int nkt = (min(q0 + BQ, T) - 1) / BK + 1;
    const size_t C3 = 3 * (size_t)C;
    const floatX *base = qkv + (size_t)b * T * C3 + h * HS, *dbase = dout + (size_t)b * T * C + h * HS;
    const float sl2 = ATT_LOG2E / sqrtf((float)HS);

    // Q (rows 0 .. BQ-1) and dO (rows BQ ..) into buffer 1, key tile 0 into buffer 0: one group
    att4_load_tile<BQ, HSP, ATT_THREADS>(kv[1], base, C3, q0, T, HS);
    att4_load_tile<BQ, HSP, ATT_THREADS>(kv[1] + BQ * LDH, dbase, C, q0, T, HS);
    att4_load_tile<BK, HSP, ATT_THREADS>(kv[0], base + C, C3, 0, T, HS);
    att4_load_tile<BK, HSP, ATT_THREADS>(kv[0] + BK * LDH, base + 2 * C, C3, 0, T, HS);
    att4_cp_async_commit();
    att4_cp_async_wait<0>();
    __syncthreads(); // Q and dO are in shared memory
    uint32_t qa[NK][4], da[NK][4];
    #pragma unroll
    for (int kk = 0; kk < NK; kk++) {
        att4_ldsm_x4(qa[kk], &kv[1][(warp * 16 + lane % 16) * LDH + kk * 16 + lane / 16 * 8]);
        att4_ldsm_x4(da[kk], &kv[1][(BQ + warp * 16 + lane % 16) * LDH + kk * 16 + lane / 16 * 8]);
    }
    float lse2[2], dl[2], dq[ND][4];
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row0 + 8 * r;
        lse2[r] = row < T ? lse[((size_t)b * NH + h) * T + row] * ATT_LOG2E : 0.0f;
        dl[r] = row < T ? delta[((size_t)b * NH + h) * T + row] : 0.0f;
    }
    #pragma unroll
    for (int nd = 0; nd < ND; nd++) { dq[nd][0] = dq[nd][1] = dq[nd][2] = dq[nd][3] = 0.0f; }
    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * BK;
        att4_cp_async_wait<0>(); // this thread's copies of tile kt are done
        __syncthreads(); // tile kt is in for every warp; every warp is done with tile kt - 1 (and Q, dO)
        if (kt + 1 < nkt) {
            floatX *nxt = kv[(kt + 1) % 2];
            att4_load_tile<BK, HSP, ATT_THREADS>(nxt, base + C, C3, k0 + BK, T, HS);
            att4_load_tile<BK, HSP, ATT_THREADS>(nxt + BK * LDH, base + 2 * C, C3, k0 + BK, T, HS);
            att4_cp_async_commit();
        }
        if (k0 > wq0 + 15 || wq0 >= T) { continue; }
        const floatX *Ks = kv[kt % 2], *Vs = Ks + BK * LDH;
        const bool diag = k0 + BK - 1 > wq0;
        const int nt_lim = diag ? min(NT, (wq0 + 15 - k0) / 8 + 1) : NT;
        float s[NT][4], dp[NT][4];
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) { s[nt][i] = dp[nt][i] = 0.0f; }
        }
        #pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            if (2 * np < nt_lim) {
                #pragma unroll
                for (int kk = 0; kk < NK; kk++) {
                    const int off = (np * 16 + lane / 16 * 8 + lane % 8) * LDH + kk * 16 + (lane / 8) % 2 * 8;
                    uint32_t kb[4], vb[4];
                    att4_ldsm_x4(kb, &Ks[off]);
                    att4_ldsm_x4(vb, &Vs[off]);
                    mma_bf16_16816(s[2 * np], qa[kk], kb[0], kb[1]);
                    mma_bf16_16816(s[2 * np + 1], qa[kk], kb[2], kb[3]);
                    mma_bf16_16816(dp[2 * np], da[kk], vb[0], vb[1]);
                    mma_bf16_16816(dp[2 * np + 1], da[kk], vb[2], vb[3]);
                }
            }
        }
        // dS = P * (dP - D), P recomputed from the forward's lse, into s
        #pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                const int key = k0 + nt * 8 + 2 * t + (i & 1), row = row0 + 8 * (i >> 1);
                const float p = (nt < nt_lim && key <= row) ? exp2f(fmaf(s[nt][i], sl2, -lse2[i >> 1])) : 0.0f;
                s[nt][i] = p * (dp[nt][i] - dl[i >> 1]);
            }
        }
        // dQ += dS K
        #pragma unroll
        for (int kc = 0; kc < NC; kc++) {
            if (2 * kc < nt_lim) {
                const uint32_t sa[4] = {att3_pack(s[2 * kc][0], s[2 * kc][1]), att3_pack(s[2 * kc][2], s[2 * kc][3]),
                                        att3_pack(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                        att3_pack(s[2 * kc + 1][2], s[2 * kc + 1][3])};
                att4_mma_by_rows<ND, LDH>(dq, sa, Ks, kc, lane);
            }
        }
    }
    att3_store_dq<ND>(dqkv, dq, b, h, row0, t, T, C, HS);
}

template <int HSP>
static void attention_backward4_launch(floatX *dqkv, const float *delta, const floatX *dout, const floatX *qkv,
                                       const float *lse, int B, int T, int NH, int HS) {
    attention_backward_dkdv_kernel4<HSP, false><<<dim3(ceil_div(T, ATT4_BK), NH, B), ATT_THREADS>>>(
        dqkv, NULL, dout, qkv, lse, delta, T, NH, HS);
    cudaCheck(cudaGetLastError());
    attention_backward_dq_kernel4<HSP><<<dim3(ceil_div(T, ATT3_BQ), NH, B), ATT_THREADS>>>(dqkv, dout, qkv, lse,
                                                                                            delta, T, NH, HS);
    cudaCheck(cudaGetLastError());
}

// form 4: dqkv (B,T,3C) (overwritten) from dout and the forward's qkv, out, lse; delta (B,NH,T) scratch
static inline void attention_backward4(floatX *dqkv, float *delta, const floatX *dout, const floatX *qkv,
                                       const floatX *out, const float *lse, int B, int T, int C, int NH) {
    int HS = C / NH;
    attention_check_head_size3(HS);
    attention_delta(delta, dout, out, B, T, NH, HS);
    if (HS <= 16) { attention_backward4_launch<16>(dqkv, delta, dout, qkv, lse, B, T, NH, HS); }
    else if (HS <= 32) { attention_backward4_launch<32>(dqkv, delta, dout, qkv, lse, B, T, NH, HS); }
    else { attention_backward4_launch<64>(dqkv, delta, dout, qkv, lse, B, T, NH, HS); }
}

// ----------------------------------------------------------------------------
// form 5: form 4's backward without the second recomputation. Form 4's dq kernel recomputes S,
// P, dP and dS, which the dk/dv kernel has just computed (7 matmuls in all where the backward
// needs 5). Here the dk/dv kernel (form 4's, given the scratch) also writes dS^T, rounded to
// bf16 as it enters its dK matmul, into ds (att5_tile_offset: the causal tiles only,
// 2 x 64 x 64 bytes a tile: at B=64, T=1024, NH=12 855 MB, reused by every layer), and the dq
// kernel is one matmul, dQ = dS K, reading dS^T back by ldmatrix.trans. Deterministic as form
// 4: every dS and dQ element written by one thread, the sums over key tiles in order. dS is
// the same function of Q, K, V, dO, lse and D as in form 4's dq kernel, computed as its
// transpose (S^T = K Q^T): sums in another order, last bits apart.
// Not yet measured on a GPU (dev/cuda/attention_backward.cu variant 5; written for the
// 2026-11-28 H200 profile, where form 4's dq kernel took 13.8 of the step's 154 ms)

static_assert(ATT4_BK == ATT5_TILE, "the dk/dv kernel's key tiles are the scratch's tiles");

// dQ of 64 queries (warp w: rows q0 + 16w ..), walking the key tiles from 0 to the diagonal in
// order: the tile's dS^T (8 KiB, contiguous) and K (by rows) copied by cp.async while the last
// tile is multiplied. In the diagonal tile, the key chunks wholly after the warp's rows are
// skipped and the chunk on the diagonal masked (key > row: 0), so the values the dk/dv kernel
// never wrote there (its warps skip the query tiles before their keys, and keys past T) are never used
template <int HSP>
__global__ void __launch_bounds__(ATT_THREADS)
attention_backward_dq_kernel5(floatX *dqkv, const floatX *ds, const floatX *qkv, int T, int NH, int HS) {
    constexpr int BQ = ATT5_TILE, BK = ATT5_TILE, LDH = HSP + ATT4_PAD;
    constexpr int ND = HSP / 8, NC = BK / 16, CHUNKS = ATT5_TILE_ELEMS * (int)sizeof(floatX) / 16;
    static_assert(BQ == 16 * ATT_WARPS, "a warp takes 16 of the tile's query rows");
    __shared__ __align__(16) floatX ks[2][BK * LDH];            // K of a key tile, by rows
    __shared__ __align__(16) floatX dss[2][ATT5_TILE_ELEMS];    // its dS^T tile, as stored
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    const int h = blockIdx.y, b = blockIdx.z, C = NH * HS;
    const int qb = gridDim.x - 1 - blockIdx.x; // the longest rows first
    const int q0 = qb * BQ, wq0 = q0 + warp * 16, row0 = wq0 + g;
    const size_t C3 = 3 * (size_t)C;
    const floatX *kbase = qkv + (size_t)b * T * C3 + C + h * HS;

    // key tile kb: K rows and the dS^T tile (kb, qb) into buffer kb % 2, one group
    auto load = [&](int kb) {
        att4_load_tile<BK, HSP, ATT_THREADS>(ks[kb % 2], kbase, C3, kb * BK, T, HS);
        const floatX *src = ds + att5_tile_offset(b, h, NH, T, kb, qb);
        #pragma unroll
        for (int c = threadIdx.x; c < CHUNKS; c += ATT_THREADS) {
            att4_cp_async16(&dss[kb % 2][c * 8], src + c * 8, 16);
        }
        att4_cp_async_commit();
    };
    load(0);
    float dq[ND][4];
    #pragma unroll
    for (int nd = 0; nd < ND; nd++) { dq[nd][0] = dq[nd][1] = dq[nd][2] = dq[nd][3] = 0.0f; }
    for (int kb = 0; kb <= qb; kb++) {
        att4_cp_async_wait<0>(); // this thread's copies of tile kb are done
        __syncthreads();         // tile kb is in for every warp; every warp is done with tile kb - 1's buffer
        if (kb < qb) { load(kb + 1); }
        if (wq0 >= T) { continue; } // a warp wholly past T (warp-uniform)
        const floatX *Ks = ks[kb % 2], *Ds = dss[kb % 2];
        const bool diag = kb == qb;
        #pragma unroll
        for (int kc = 0; kc < NC; kc++) {
            if (diag && kc > warp) { continue; } // keys 16 kc .. all after the warp's rows 16 warp ..
            // A = dS (rows: the warp's queries, columns: the chunk's keys) = the stored dS^T blocks
            // read transposed: a[0] (keys 0-7, queries 0-7), a[1] (keys 0-7, queries 8-15), a[2]
            // (keys 8-15, queries 0-7), a[3] (keys 8-15, queries 8-15); lane 8i + j: row j of a[i]
            const int kr = 2 * kc + lane / 16, qc = 2 * warp + lane / 8 % 2;
            uint32_t sa[4];
            att4_ldsm_x4_trans(sa, &Ds[(kr * 8 + qc) * 64 + lane % 8 * 8]);
            if (diag && kc == warp) { // the diagonal chunk: keep key <= row (row g or g + 8, keys 2t.. or 8 + 2t..)
                const uint32_t lo = 0x0000ffffu, hi = 0xffff0000u;
                sa[0] &= (2 * t > g ? 0u : lo) | (2 * t + 1 > g ? 0u : hi); // row g, keys 2t, 2t + 1
                sa[2] = 0u;                                                  // row g, keys 8 ..: all after
                sa[3] &= (2 * t > g ? 0u : lo) | (2 * t + 1 > g ? 0u : hi); // row g + 8, keys 8 + 2t ..
            }
            att4_mma_by_rows<ND, LDH>(dq, sa, Ks, kc, lane);
        }
    }
    att3_store_dq<ND>(dqkv, dq, b, h, row0, t, T, C, HS);
}

// the dS scratch of form 5, in floatX elements (attention_backward_scratch: the trainer's, 0 for form 4)
static inline size_t attention_backward5_scratch(int B, int T, int NH) {
    return (size_t)B * NH * att5_tiles_per_head(T) * ATT5_TILE_ELEMS;
}

template <int HSP>
static void attention_backward5_launch(floatX *dqkv, floatX *ds, const float *delta, const floatX *dout,
                                       const floatX *qkv, const float *lse, int B, int T, int NH, int HS) {
    attention_backward_dkdv_kernel4<HSP, true><<<dim3(ceil_div(T, ATT4_BK), NH, B), ATT_THREADS>>>(
        dqkv, ds, dout, qkv, lse, delta, T, NH, HS);
    cudaCheck(cudaGetLastError());
    attention_backward_dq_kernel5<HSP><<<dim3(ceil_div(T, ATT5_TILE), NH, B), ATT_THREADS>>>(dqkv, ds, qkv, T, NH,
                                                                                              HS);
    cudaCheck(cudaGetLastError());
}

// form 5: dqkv (B,T,3C) (overwritten) from dout and the forward's qkv, out, lse; delta (B,NH,T) and
// ds (attention_backward5_scratch(B, T, NH) floatX) scratch
static inline void attention_backward5(floatX *dqkv, float *delta, floatX *ds, const floatX *dout, const floatX *qkv,
                                       const floatX *out, const float *lse, int B, int T, int C, int NH) {
    int HS = C / NH;
    attention_check_head_size3(HS);
    attention_delta(delta, dout, out, B, T, NH, HS);
    if (HS <= 16) { attention_backward5_launch<16>(dqkv, ds, delta, dout, qkv, lse, B, T, NH, HS); }
    else if (HS <= 32) { attention_backward5_launch<32>(dqkv, ds, delta, dout, qkv, lse, B, T, NH, HS); }
    else { attention_backward5_launch<64>(dqkv, ds, delta, dout, qkv, lse, B, T, NH, HS); }
}

#endif // !ENABLE_FP32

// ----------------------------------------------------------------------------
// what the trainer calls: form 4 where it applies (bf16 build, HS <= 64), else form 2. On an
// H200 (2026-11-28, B=64 T=1024 NH=12 HS=64) form 4 took 0.906 ms forward (block 128; 0.927 at
// 256) and 2.84 ms backward, form 3 1.353 and 4.381 ms (dev/cuda/results_h200_fused.md)

// out (B,T,C) and lse (B,NH,T) from qkv (B,T,3C)
static inline void attention_forward(floatX *out, float *lse, const floatX *qkv, int B, int T, int C, int NH) {
#ifndef ENABLE_FP32
    if (C / NH <= ATT3_MAX_HS) {
        attention_forward4(out, lse, qkv, B, T, C, NH, 128);
        return;
    }
#endif
    attention_forward2(out, lse, qkv, B, T, C, NH);
}

// the backward's form in the bf16 build: 4 (the default, also when unset or empty) or, with
// GPT2_1BIT_ATTENTION_BWD=5 in the environment, form 5 (dS kept for dq, its scratch from
// attention_backward_scratch; so far run only on the CPU emulator: form 4 stays the default)
static int attention_bwd_form = -1; // -1: not read yet
static inline int attention_backward_form(void) {
    if (attention_bwd_form < 0) {
        const char *env = getenv("GPT2_1BIT_ATTENTION_BWD");
        if (env == NULL || env[0] == '\0' || strcmp(env, "4") == 0) {
            attention_bwd_form = 4;
        } else if (strcmp(env, "5") == 0) {
            attention_bwd_form = 5;
        } else {
            fprintf(stderr, "error: GPT2_1BIT_ATTENTION_BWD=%s: not an attention backward\n"
                    "---> HINT: 4 (the default) or 5 (dS kept for dq: llmc/attention.cuh form 5), or unset it\n", env);
            exit(EXIT_FAILURE);
        }
    }
    return attention_bwd_form;
}

// the floatX scratch attention_backward needs beside delta: form 5's dS tiles, else 0
static inline size_t attention_backward_scratch(int B, int T, int C, int NH) {
#ifndef ENABLE_FP32
    if (C / NH <= ATT3_MAX_HS && attention_backward_form() == 5) { return attention_backward5_scratch(B, T, NH); }
#endif
    (void)B; (void)T; (void)C; (void)NH;
    return 0;
}

// dqkv (B,T,3C) (overwritten) from dout (B,T,C) and the forward's qkv, out, lse; delta (B,NH,T)
// and ds (attention_backward_scratch elements; NULL where that is 0) scratch
static inline void attention_backward(floatX *dqkv, float *delta, floatX *ds, const floatX *dout, const floatX *qkv,
                                      const floatX *out, const float *lse, int B, int T, int C, int NH) {
#ifndef ENABLE_FP32
    if (C / NH <= ATT3_MAX_HS) {
        if (attention_backward_form() == 5) {
            attention_backward5(dqkv, delta, ds, dout, qkv, out, lse, B, T, C, NH);
        } else {
            attention_backward4(dqkv, delta, dout, qkv, out, lse, B, T, C, NH);
        }
        return;
    }
#endif
    (void)ds;
    attention_backward2(dqkv, delta, dout, qkv, out, lse, B, T, C, NH);
}

#endif // LLMC_ATTENTION_CUH
