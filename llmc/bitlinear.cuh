/*
 llmc/bitlinear.cuh: BitLinear (BitNet b1.58) forward and backward, from the quantizers of
 llmc/quantize.cuh and the matmuls of llmc/matmul.cuh.
 Spec: bitlinear_forward, bitlinear_forward_int8, bitlinear_backward and bitlinear_backward_int8
 in train_gpt2_1bit.c.

   forward (float path):   x_q = bitlinear_input_forward(inp); out (N,OC) = x_q @ W^T + bias
   forward (integer path): codes, 1/s = bitlinear_input_forward(inp);
                           acc = codes . trits^T (exact int32, cuBLAS);
                           out = acc * (gamma * inv_s[n]) + bias   (dequant_epilogue)
                           or, with GPT2_1BIT_INT8_GEMM=mma in the environment, both in one kernel
                           (bitlinear_matmul_int8_mma, variant 5 of dev/cuda/bitlinear_forward.cu:
                           mma.sync int8, the epilogue fused; the default stays cuBLAS, which was
                           measured on a GPU: this kernel has run only on the CPU emulator)
   backward (straight-through estimator), for dout (N,OC):
                           dW_latent += dout^T @ x_q; dx_q = dout @ W_q; dx_n = dx_q;
                           inner norm: dx = r * (dx_n - x_n * mean(dx_n * x_n))
   backward, dX in integers (-bq int8): codes, 1/s_g = grad_quantize_rows(dout);
                           acc (N,IC) = codes . trits_t^T (exact int32, cuBLAS or, as above, mma;
                           trits_t = trits^T (IC,OC));
                           dx_q = acc * (gamma * inv_s[n]) (dequant_epilogue); dW as above
 inp is (N,IC); W is (OC,IC) floatX: W_q, or the latent weights in fp mode; trits (OC,IC) int8
 and gamma = scales[scale_index] (llmc/quantize.cuh has the format). With neither int8
 activations nor the inner norm, inp goes to the matmul as it is. x_q is not kept: the
 backward recomputes it from inp with the forward's kernel, which gives the same bits.
 The input pre-op pre (llmc/quantize.cuh's BitLinearPreOp): BL_PRE_GELU makes the layer's input
 x = gelu(inp) as gelu_forward stores it (fcproj, with inp = fch): applied in registers by the
 input kernel, and by the inner norm's backward, which reads x; with neither int8 activations
 nor the norm, gelu_forward writes x into s->xq for the matmul (the two kernels as before).
*/
#ifndef LLMC_BITLINEAR_CUH
#define LLMC_BITLINEAR_CUH

#include <string.h>      // strcmp (GPT2_1BIT_INT8_GEMM)
#include "cuda_common.h" // defines: floatX, to_float, from_float, warp_reduce_sum, ceil_div, cudaCheck
#include "gpt2_config.h" // defines: QuantConfig, AQ_NONE, AQ_INT8
#include "quantize.cuh"  // defines: bitlinear_input_forward (rmsnorm_quant_kernel), grad_quantize_rows,
                         //          BitLinearPreOp, bitlinear_input_value
#include "gelu.cuh"      // defines: gelu_forward (the pre-op BL_PRE_GELU without quantizer or norm)
#include "matmul.cuh"    // defines: matmul_forward, matmul_backward, matmul_i8

// the scratch of a BitLinear call, shared by all layers, each sized for the largest (N, IC or OC)
typedef struct {
    floatX *xq;    // (N,IC) x_q: the float matmul's input, and the backward's; without quantizer or
                   // norm, the pre-op's output (gelu(inp)) for the matmul
    int8_t *codes; // (N,IC) int8 codes of the integer path; (N,OC) dY's in the int8 backward
    float *inv_s;  // (N) 1/s of each row (of x, or of dY in the int8 backward)
    float *rstd;   // (N) 1/rms of the inner norm (1 without it)
    int32_t *acc;  // (N,OC) the integer path's int32 products; (N,IC) the int8 backward's (cuBLAS only:
                   // NULL where every int8 GEMM runs the mma kernel, bitlinear_mma_fits_shape)
    floatX *dxn;   // (N,IC) dx_n, the gradient before the inner norm's backward
} BitLinearScratch;

// ----------------------------------------------------------------------------
// kernels

// The backward of the inner norm, with x_n = x * r:
//   dx = r * (dx_n - x_n * mean(dx_n * x_n)); one warp per row, dinp overwritten. x is inp read
//   through the pre-op (bitlinear_input_value: the forward's x, to the bit)
__global__ void rmsnorm_backward_kernel(floatX *dinp, const floatX *dxn, const floatX *inp, int pre,
                                        const float *rstd, int N, int IC) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) { return; }
    const floatX *x = inp + (size_t)row * IC, *d = dxn + (size_t)row * IC;
    float r = rstd[row], dot = 0.0f;
    for (int i = lane; i < IC; i += 32) { dot += to_float(d[i]) * bitlinear_input_value(x, i, pre) * r; }
    dot = warp_reduce_sum(dot) / IC;
    floatX *o = dinp + (size_t)row * IC;
    for (int i = lane; i < IC; i += 32) {
        o[i] = from_float<floatX>(r * (to_float(d[i]) - bitlinear_input_value(x, i, pre) * r * dot));
    }
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
// the integer matmul with its epilogue fused: variant 5 of dev/cuda/bitlinear_forward.cu
// (bitlinear_matmul_int8_mma; GPT2_1BIT_INT8_GEMM=mma selects it, see bitlinear_matmul_int8)
//
//   out (N,OC) = dequant_value(acc, gamma * inv_s[n], bias[j]),  acc = codes (N,IC) . trits (OC,IC)^T
//
// written as the Ampere-style int8 GEMMs are (both operands K-contiguous, "TN"): a block computes
// a TM x TN tile of out (TM tokens, TN output features) with (TM/64) x (TN/64) warps of 64 x 64,
// each warp 4 x 8 mma.sync m16n8k32 tiles (s8 x s8 -> s32, 128 accumulators a thread). The K
// dimension (IC) goes in tiles of TK bytes through a ring of STAGES shared-memory buffers filled
// by cp.async (16 bytes a copy, global -> shared without registers): while the warps multiply
// tile kt, the copies of tiles kt+1 .. kt+STAGES-1 are in flight. Fragments come from shared
// memory by ldmatrix.x4 (an int8 16x32 A fragment is four 8x8 b16 matrices of 8 rows of 16
// bytes; two n8 B fragments likewise), and the shared rows are XOR-swizzled in 16-byte chunks
// so that the 8 rows of one ldmatrix matrix, and the 8 chunks of 8 neighbouring cp.async,
// fall in 8 different 16-byte bank groups (no bank conflicts, no padding). The epilogue is
// dequant_epilogue's per element (dequant_value: the same bits as the cuBLAS path), straight
// from the accumulators: the int32 products never go to memory.
// Shapes: any N (token rows past N are zero-filled and not stored); OC a multiple of 8 and IC
// of 16 (rows past OC and the K tail past IC zero-filled); codes and trits 16-byte aligned, out
// aligned to two floatX (bitlinear_mma_fits). Not yet run on a GPU: only on the CPU emulator.

#define BL5_WM 64 // a warp's tile: 64 rows (4 m16 tiles) ...
#define BL5_WN 64 // ... by 64 columns (8 n8 tiles)

// the .shared state space address of a pointer into shared memory (ldmatrix, cp.async take it)
__device__ static inline uint32_t bl5_smem(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared (.cg: cached in L2 only); src_bytes 0: nothing read, 16 zeros written
__device__ static inline void bl5_cp_async16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ static inline void bl5_cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// this thread's copies are done but for its N most recent groups (others' need a barrier after)
template <int N> __device__ static inline void bl5_cp_async_wait(void) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// four 8x8 b16 matrices (8 rows of 16 bytes each): lane 8i + j gives the address of row j of
// matrix i; r[i] of lane l is bytes 4(l%4) .. 4(l%4)+3 of row l/4 of matrix i, which for int8 is
// the layout of an m16n8k32 fragment register (PTX ISA, ldmatrix and "Matrix Fragments for
// mma.m16n8k32")
__device__ static inline void bl5_ldsm_x4(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

// D (16x8, s32) += A (16x32, s8, row-major) * B (32x8, s8, column-major), with g = lane / 4, t = lane % 4:
//   a[r]: A[g + 8*(r&1)][16*(r>>1) + 4t .. +3];  b[r]: B[16r + 4t .. +3][g];  d[i]: D[g + 8*(i>>1)][2t + (i&1)]
__device__ static inline void bl5_mma(int (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The swizzle: 16-byte chunk c of row r of a tile with rows of TK bytes lies at chunk c ^ x(r).
// TK = 128: a row spans the 32 banks, x = r % 8. TK = 64: two rows do, x = (r / 2) % 4. Either
// way 8 consecutive rows read at one logical chunk (an ldmatrix matrix) hit 8 different bank
// groups, and so do 8 consecutive chunks (neighbouring threads' cp.async)
template <int TK> __device__ static inline int bl5_swizzle(int r) { return TK == 128 ? (r & 7) : ((r >> 1) & 3); }

// a pair of adjacent outputs, one store
struct __align__(2 * sizeof(floatX)) bl5_pair { floatX v[2]; };

template <int TM, int TN, int TK, int STAGES>
__global__ void __launch_bounds__(TM * TN / 128, 1) // (TM/64) x (TN/64) warps, one block an SM (the registers)
bitlinear_matmul_int8_mma_kernel(floatX *out, int32_t *acc_out, const int8_t *codes, const float *inv_s,
                                 const int8_t *trits, const float *scales, int scale_index, const float *bias,
                                 int N, int IC, int OC) {
    constexpr int WARPS_N = TN / BL5_WN, THREADS = (TM / BL5_WM) * WARPS_N * 32;
    constexpr int CPR = TK / 16;                          // 16-byte chunks a tile row
    constexpr int A_COPIES = TM * CPR / THREADS, B_COPIES = TN * CPR / THREADS; // cp.async a thread a tile
    constexpr int STAGE_BYTES = (TM + TN) * TK;           // A tile (TM rows) then B tile (TN rows)
    constexpr int MI = BL5_WM / 16, NI = BL5_WN / 8;      // m16 and n8 tiles a warp
    static_assert(TK == 64 || TK == 128, "the swizzle is written for rows of 64 or 128 bytes");
    static_assert(TM % BL5_WM == 0 && TN % BL5_WN == 0, "whole warp tiles");
    static_assert(A_COPIES * THREADS == TM * CPR && B_COPIES * THREADS == TN * CPR, "whole copies a thread");
    static_assert(STAGES >= 2, "a ring of at least two buffers");
    extern __shared__ __align__(128) int8_t bl5_tiles[]; // STAGES x STAGE_BYTES
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int wm = warp / WARPS_N, wn = warp % WARPS_N; // this warp's 64 x 64 tile in the block's
    const int row0 = blockIdx.y * TM, col0 = blockIdx.x * TN;
    const uint32_t smem0 = bl5_smem(bl5_tiles);

    // this thread's copies: chunk p = tid + i * THREADS of a tile is row p / CPR, chunk p % CPR
    // (CPR neighbouring threads read one row's TK bytes). The same rows every K tile: their
    // global row pointers, shared offsets and bounds are computed once. A row past the matrix
    // copies nothing (src-size 0: zeros) from the matrix's first row (a valid, aligned address)
    const int8_t *a_src[A_COPIES], *b_src[B_COPIES];
    int a_dst[A_COPIES], b_dst[B_COPIES], a_chunk[A_COPIES], b_chunk[B_COPIES];
    #pragma unroll
    for (int i = 0; i < A_COPIES; i++) {
        int p = tid + i * THREADS, r = p / CPR;
        a_chunk[i] = p % CPR;
        a_src[i] = row0 + r < N ? codes + (size_t)(row0 + r) * IC : NULL;
        a_dst[i] = r * TK + 16 * (a_chunk[i] ^ bl5_swizzle<TK>(r));
    }
    #pragma unroll
    for (int i = 0; i < B_COPIES; i++) {
        int p = tid + i * THREADS, r = p / CPR;
        b_chunk[i] = p % CPR;
        b_src[i] = col0 + r < OC ? trits + (size_t)(col0 + r) * IC : NULL;
        b_dst[i] = TM * TK + r * TK + 16 * (b_chunk[i] ^ bl5_swizzle<TK>(r));
    }
    // K tile kt into ring slot s: the chunks past IC (a last, partial tile) are zeros too
    auto load_tile = [&](int s, int kt) {
        const uint32_t base = smem0 + s * STAGE_BYTES;
        #pragma unroll
        for (int i = 0; i < A_COPIES; i++) {
            int k = kt * TK + 16 * a_chunk[i], ok = a_src[i] != NULL && k < IC;
            bl5_cp_async16(base + a_dst[i], ok ? a_src[i] + k : codes, ok ? 16 : 0);
        }
        #pragma unroll
        for (int i = 0; i < B_COPIES; i++) {
            int k = kt * TK + 16 * b_chunk[i], ok = b_src[i] != NULL && k < IC;
            bl5_cp_async16(base + b_dst[i], ok ? b_src[i] + k : trits, ok ? 16 : 0);
        }
    };

    // this lane's ldmatrix rows. A, matrices 0..3 = (rows 0-7 | 8-15) x (k bytes 0-15 | 16-31) of
    // an m16 tile: registers a0..a3 of the fragment; lane l reads row l % 16, chunk l / 16.
    // B, matrices 0..3 = (n 0-7, k 0-15 | 16-31), (n 8-15, k 0-15 | 16-31) of two n8 tiles:
    // b0, b1 of the first, b0, b1 of the second; lane l reads row l % 8 + 8 (l / 16), chunk (l / 8) % 2.
    // All tile rows start at multiples of 8, so the swizzle of a lane's row is that of lane % 8
    const int x = bl5_swizzle<TK>(lane % 8);
    const int a_row = (wm * BL5_WM + lane % 16) * TK, a_half = lane / 16;
    const int b_row = TM * TK + (wn * BL5_WN + lane % 8 + 8 * (lane / 16)) * TK, b_half = (lane / 8) % 2;

    int acc[MI][NI][4];
    #pragma unroll
    for (int mi = 0; mi < MI; mi++) {
        #pragma unroll
        for (int ni = 0; ni < NI; ni++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) { acc[mi][ni][i] = 0; }
        }
    }

    // the pipeline: tiles 0 .. STAGES-2 in flight first; one commit group per tile (empty past the
    // last), so before iteration kt's wait exactly STAGES-2 groups newer than tile kt's exist
    const int KT = (IC + TK - 1) / TK;
    #pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < KT) { load_tile(s, s); }
        bl5_cp_async_commit();
    }
    for (int kt = 0; kt < KT; kt++) {
        bl5_cp_async_wait<STAGES - 2>(); // this thread's copies of tile kt have landed
        // every thread's copies of tile kt are visible, and every warp is done with tile kt-1,
        // whose slot ((kt-1) % STAGES = (kt + STAGES-1) % STAGES) the next copies overwrite
        __syncthreads();
        if (kt + STAGES - 1 < KT) { load_tile((kt + STAGES - 1) % STAGES, kt + STAGES - 1); }
        bl5_cp_async_commit();
        const uint32_t base = smem0 + (kt % STAGES) * STAGE_BYTES;
        #pragma unroll
        for (int ks = 0; ks < TK / 32; ks++) { // k bytes 32 ks .. 32 ks + 31 of the tile: chunks 2 ks, 2 ks + 1
            uint32_t a[MI][4], b[NI][2];
            #pragma unroll
            for (int mi = 0; mi < MI; mi++) {
                bl5_ldsm_x4(a[mi][0], a[mi][1], a[mi][2], a[mi][3],
                            base + a_row + mi * 16 * TK + 16 * ((2 * ks + a_half) ^ x));
            }
            #pragma unroll
            for (int nj = 0; nj < NI; nj += 2) {
                bl5_ldsm_x4(b[nj][0], b[nj][1], b[nj + 1][0], b[nj + 1][1],
                            base + b_row + nj * 8 * TK + 16 * ((2 * ks + b_half) ^ x));
            }
            #pragma unroll
            for (int mi = 0; mi < MI; mi++) {
                #pragma unroll
                for (int ni = 0; ni < NI; ni++) { bl5_mma(acc[mi][ni], a[mi], b[ni]); }
            }
        }
    }
    bl5_cp_async_wait<0>(); // only empty groups can be left; none outlives the block

    // epilogue: lane (g, t) holds rows g, g + 8 of each m16 tile at columns 2t, 2t + 1 of each n8
    // tile: two adjacent outputs a row, stored as one pair. OC is even, so a pair is whole or out
    const int g = lane / 4, t = lane % 4;
    const float gamma = scales[scale_index];
    #pragma unroll
    for (int mi = 0; mi < MI; mi++) {
        #pragma unroll
        for (int h = 0; h < 2; h++) {
            const int n = row0 + wm * BL5_WM + mi * 16 + g + 8 * h;
            if (n >= N) { continue; }
            const float scale = gamma * inv_s[n]; // as dequant_epilogue: the two scales multiplied first
            #pragma unroll
            for (int ni = 0; ni < NI; ni++) {
                const int j = col0 + wn * BL5_WN + ni * 8 + 2 * t;
                if (j >= OC) { continue; }
                const int a0 = acc[mi][ni][2 * h], a1 = acc[mi][ni][2 * h + 1];
                bl5_pair o;
                o.v[0] = dequant_value(a0, scale, bias, bias != NULL ? bias[j] : 0.0f);
                o.v[1] = dequant_value(a1, scale, bias, bias != NULL ? bias[j + 1] : 0.0f);
                const size_t idx = (size_t)n * OC + j;
                *reinterpret_cast<bl5_pair *>(out + idx) = o;
                if (acc_out != NULL) { *reinterpret_cast<int2 *>(acc_out + idx) = make_int2(a0, a1); }
            }
        }
    }
}

// whether the kernel takes these operands (else bitlinear_matmul_int8 runs cuBLAS): IC whole
// 16-byte chunks, OC whole n8 tiles, at most 65535 row tiles of 128 (the grid's y) (the shape:
// what a caller can know before it has the operands), and rows 16-byte aligned for cp.async,
// pairs of out aligned
static inline int bitlinear_mma_fits_shape(int N, int IC, int OC) {
    return N > 0 && IC > 0 && OC > 0 && IC % 16 == 0 && OC % 8 == 0 && N <= 65535 * 128;
}
static inline int bitlinear_mma_fits(const floatX *out, const int8_t *codes, const int8_t *trits, int N, int IC,
                                     int OC) {
    return bitlinear_mma_fits_shape(N, IC, OC) && is_aligned128(codes) && is_aligned128(trits) &&
           (uintptr_t)out % (2 * sizeof(floatX)) == 0;
}

// out (N,OC) = dequant_value(codes (N,IC) . trits (OC,IC)^T, scales[scale_index] * inv_s[n], bias)
// with block tiles TM x TN, K tiles of TK bytes and STAGES buffers; acc_out (N,OC): the int32
// products too, when not NULL (dev/cuda checks them; the trainer passes NULL)
template <int TM, int TN, int TK, int STAGES>
static inline void bitlinear_matmul_int8_mma_launch(floatX *out, int32_t *acc_out, const int8_t *codes,
                                                    const float *inv_s, const int8_t *trits, const float *scales,
                                                    int scale_index, const float *bias, int N, int IC, int OC) {
    if (!bitlinear_mma_fits(out, codes, trits, N, IC, OC)) { // the caller checks (bitlinear_matmul_int8 falls back)
        fprintf(stderr, "error: bitlinear_matmul_int8_mma: N %d IC %d OC %d: needs IC a multiple of 16, OC of 8, "
                "N <= 65535 x 128, 16-byte aligned operands (bitlinear_mma_fits)\n", N, IC, OC);
        exit(EXIT_FAILURE);
    }
    constexpr int threads = (TM / BL5_WM) * (TN / BL5_WN) * 32;
    constexpr size_t smem = (size_t)STAGES * (TM + TN) * TK;
    static_assert(smem <= 227 * 1024, "shared memory: at most 227 KiB a block (sm_80 164 KiB, sm_90 227 KiB)");
    static int smem_set = 0; // once per instantiation: above 48 KiB a kernel must opt in
    if (!smem_set) {
        cudaCheck(cudaFuncSetAttribute(bitlinear_matmul_int8_mma_kernel<TM, TN, TK, STAGES>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        smem_set = 1;
    }
    dim3 grid(ceil_div(OC, TN), ceil_div(N, TM)); // column tiles fastest: neighbouring blocks share codes rows
    bitlinear_matmul_int8_mma_kernel<TM, TN, TK, STAGES><<<grid, threads, smem>>>(out, acc_out, codes, inv_s, trits,
                                                                                  scales, scale_index, bias, N, IC, OC);
    cudaCheck(cudaGetLastError());
}

// the trainer's configuration: 128 x 256 block tiles (8 warps), K tiles of 64 bytes, 4 stages
// (96 KiB of shared memory). A first choice, not a measured one (dev/cuda times others)
static inline void bitlinear_matmul_int8_mma(floatX *out, int32_t *acc_out, const int8_t *codes, const float *inv_s,
                                             const int8_t *trits, const float *scales, int scale_index,
                                             const float *bias, int N, int IC, int OC) {
    bitlinear_matmul_int8_mma_launch<128, 256, 64, 4>(out, acc_out, codes, inv_s, trits, scales, scale_index, bias,
                                                      N, IC, OC);
}

// ----------------------------------------------------------------------------
// forward and backward

// GPT2_1BIT_INT8_GEMM, read once (at the first integer matmul): which int8 GEMM bitlinear_matmul_int8 runs
//   cublas (the default, also when unset or empty): cuBLAS's int8 GEMM into acc, then dequant_epilogue
//   mma: bitlinear_matmul_int8_mma (the epilogue fused, acc not written) for the shapes it takes
//        (bitlinear_mma_fits), cuBLAS for the others; not yet measured on a GPU
#define INT8_GEMM_CUBLAS 0
#define INT8_GEMM_MMA 1
static int bitlinear_int8_gemm = -1; // INT8_GEMM_*; -1: not read yet (dev/cuda sets it to run both)
static inline int bitlinear_int8_gemm_choice(void) {
    if (bitlinear_int8_gemm < 0) {
        const char *env = getenv("GPT2_1BIT_INT8_GEMM");
        if (env == NULL || env[0] == '\0' || strcmp(env, "cublas") == 0) {
            bitlinear_int8_gemm = INT8_GEMM_CUBLAS;
        } else if (strcmp(env, "mma") == 0) {
            bitlinear_int8_gemm = INT8_GEMM_MMA;
        } else {
            fprintf(stderr, "error: GPT2_1BIT_INT8_GEMM=%s: not an int8 GEMM\n"
                    "---> HINT: cublas (the default) or mma (the fused mma.sync kernel), or unset it\n", env);
            exit(EXIT_FAILURE);
        }
    }
    return bitlinear_int8_gemm;
}
// for the trainer's start-up lines
static inline const char *bitlinear_int8_gemm_name(void) {
    return bitlinear_int8_gemm_choice() == INT8_GEMM_MMA ? "mma.sync with the epilogue fused (GPT2_1BIT_INT8_GEMM=mma; "
                                                           "cuBLAS where the shape does not fit)"
                                                         : "cuBLAS + epilogue kernel (GPT2_1BIT_INT8_GEMM=cublas)";
}

// the integer path's matmul: acc (N,OC) = codes (N,IC) . trits (OC,IC)^T, exact in int32, then
// out (N,OC) = acc * (gamma * inv_s[n]) + bias[j] with gamma = scales[scale_index] (bias may be NULL).
// acc is scratch for the cuBLAS path; the mma path does not write it, and acc may be NULL where
// the caller knows the mma path takes every call (GPT2_1BIT_INT8_GEMM=mma, bitlinear_mma_fits_shape)
static inline void bitlinear_matmul_int8(floatX *out, int32_t *acc, const int8_t *codes, const float *inv_s,
                                         const int8_t *trits, const float *scales, int scale_index,
                                         const float *bias, int N, int IC, int OC) {
    if (bitlinear_int8_gemm_choice() == INT8_GEMM_MMA && bitlinear_mma_fits(out, codes, trits, N, IC, OC)) {
        bitlinear_matmul_int8_mma(out, NULL, codes, inv_s, trits, scales, scale_index, bias, N, IC, OC);
        return;
    }
    if (acc == NULL) { // a caller's bug: it left out the scratch of a call that the mma kernel does not take
        fprintf(stderr, "error: bitlinear_matmul_int8: N %d IC %d OC %d falls back to cuBLAS, but no int32 scratch "
                "was allocated (the operands are not aligned as bitlinear_mma_fits needs)\n", N, IC, OC);
        exit(EXIT_FAILURE);
    }
    matmul_i8(acc, codes, trits, N, IC, OC);
    dequant_epilogue(out, acc, inv_s, scales, scale_index, bias, N, OC);
}

// out (N,OC) = BitLinear(x (N,IC)), x = inp read through pre (BL_PRE_GELU: gelu(inp)); use_int8:
// the integer path (int8 activations, and weights that are trits: then w is not read, trits and
// scales[scale_index] are). The bias twice: bias (fp32) for the integer path's epilogue, bias_x
// (its floatX copy) for the float path's cuBLASLt epilogue, which takes the bias in the output's type only
static inline void bitlinear_forward(floatX *out, const floatX *inp, BitLinearPreOp pre, const floatX *w,
                                     const int8_t *trits, const float *scales, int scale_index, const float *bias,
                                     const floatX *bias_x, BitLinearScratch *s, const QuantConfig *q, int use_int8,
                                     int N, int IC, int OC) {
    if (q->act_quant == AQ_NONE && !q->inner_norm) { // x is used as it is (fp, and weights-only without norm)
        if (pre == BL_PRE_GELU) { // x = gelu(inp) written out for the matmul: gelu_forward
            gelu_forward(s->xq, inp, (size_t)N * IC);
            inp = s->xq;
        }
        matmul_forward(out, inp, w, bias_x, N, IC, OC);
        return;
    }
    // the integer path reads only the codes (and 1/s); the float path only x_q
    bitlinear_input_forward(use_int8 ? NULL : s->xq, use_int8 ? s->codes : NULL, s->inv_s, s->rstd, inp, pre, N, IC,
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

// dinp (N,IC) overwritten: the gradient w.r.t. x, the layer's input after the pre-op (for
// BL_PRE_GELU, d gelu(inp): the caller applies gelu's backward); dweight (OC,IC), dbias (OC)
// accumulated; inp, pre and w as the forward's (w: W_q); partial: matmul_backward's column-sum
// scratch. With q->backward_quant == BQ_INT8, dX takes the integer path (bitlinear_dx_int8) from
// trits_t, the matrix's trits transposed (IC,OC), and gamma = scales[scale_index]; w is then not
// read (dW stays float either way)
static inline void bitlinear_backward(floatX *dinp, float *dweight, float *dbias, const floatX *dout, const floatX *inp,
                                      BitLinearPreOp pre, const floatX *w, const int8_t *trits_t, const float *scales,
                                      int scale_index, BitLinearScratch *s, float *partial, const QuantConfig *q, int N,
                                      int IC, int OC) {
    int int8_dx = q->backward_quant == BQ_INT8;
    const floatX *xq = inp; // the matmul's input: x as it is, or x_q recomputed by the forward's kernel
    if (q->act_quant != AQ_NONE || q->inner_norm) {
        bitlinear_input_forward(s->xq, NULL, NULL, s->rstd, inp, pre, N, IC, q->inner_norm, q->act_quant == AQ_INT8);
        xq = s->xq;
    } else if (pre == BL_PRE_GELU) { // x = gelu(inp) again, as the forward wrote it
        gelu_forward(s->xq, inp, (size_t)N * IC);
        xq = s->xq;
    }
    floatX *dxq = q->inner_norm ? s->dxn : dinp; // without the norm x_n = x: dx = dx_q
    matmul_backward(int8_dx ? NULL : dxq, dweight, dbias, dout, xq, w, N, IC, OC, partial);
    if (int8_dx) { bitlinear_dx_int8(dxq, dout, trits_t, scales, scale_index, s, N, IC, OC); }
    if (q->inner_norm) {
        rmsnorm_backward_kernel<<<ceil_div(N, 8), 256>>>(dinp, s->dxn, inp, pre, s->rstd, N, IC);
        cudaCheck(cudaGetLastError());
    }
}

#endif // LLMC_BITLINEAR_CUH
