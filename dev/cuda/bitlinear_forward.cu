/*
 bitlinear_forward: the matmul of BitLinear in its inference form (BitNet b1.58):
     acc (M,N) = x (M,K) int8  @  trits (N,K)^T         exact in int32: |acc| <= 128 * K
     out (M,N) = acc * gamma * inv_s[m] + bias[n]       both scales and the bias, once per output
 with x the per-token int8 codes of the activations (dev/cuda/rmsnorm_quant.cu), inv_s = 1/s_x
 their row scales, trits the ternary weights (int8 {-1,0,1}, dev/cuda/quantize_weights.cu) and
 gamma the weights' scale. M = B*T tokens, K = in features, N = out features. The spec is
 llmc/ternary_kernels.h (the integer product) plus the epilogue below, written once for the
 CPU and the GPU (bitlinear_epilogue) with a fused multiply-add on both, so integer variants
 must match the CPU to the bit: the int32 accumulators and the floatX outputs.

 Build and run:
     make -C dev/cuda bitlinear_forward && ./dev/cuda/bitlinear_forward    all variants
     ./dev/cuda/bitlinear_forward 3                                       variant 3 (and the baseline)

 Variants:
     0  cuBLASLt bf16 on dequantized operands (x * inv_s, trit * gamma), fp32 accumulate, bias in
        the epilogue: what a trainer without integer kernels runs (the baseline row)
     1  cuBLAS int8 GEMM (int32 accumulate, tensor cores) into an int32 buffer, then an epilogue
        kernel for the scales and bias: the library has no per-token-scale epilogue for int8
     2  naive dp4a: one thread per output, 4 int8 products per instruction, epilogue fused
     3  int8 tensor cores by hand: mma.sync m16n8k32 (s8 x s8 -> s32), 128x128 block tiles,
        64-deep K tiles in shared memory (padded: no bank conflicts on fragment loads), the next
        tile prefetched into registers, epilogue fused (no int32 round trip through memory)
     4  what the trainer runs (ships): llmc/bitlinear.cuh's bitlinear_matmul_int8, variant 1's scheme
        (cuBLAS int8 GEMM, then an epilogue kernel of 256 threads) with gamma read from the device's
        scale array and the epilogue written acc * (gamma * inv_s) + bias, which the compiler may or
        may not fuse into one fmaf: its outputs are checked to within one rounding (EPILOGUE_ULPS).
        The epilogue is 128-bit (dequant_epilogue_kernel_vec: 8 bf16 outputs a thread) where N
        allows, else one output a thread (dequant_epilogue_kernel); the two are checked equal to
        the bit, with and without bias, and timed alone ("4 epilogue" rows: GB/s of its int32
        read and floatX write against the copy bandwidth)
     5  int8 tensor cores, pipelined (llmc/bitlinear.cuh's bitlinear_matmul_int8_mma, what the trainer runs
        with GPT2_1BIT_INT8_GEMM=mma): mma.sync m16n8k32 from ldmatrix.x4 fragments, 64 x 64 warp tiles,
        a ring of 3-4 shared-memory K tiles filled by cp.async (16 bytes a copy) while the warps multiply,
        rows XOR-swizzled in 16-byte chunks (no bank conflicts, no padding), the shipped epilogue fused
        (dequant_value: outputs bit-equal to variant 4's scheme, checked exactly against the CPU's
        dequant_epilogue). Timed in four configurations of block tile, K tile and stages; rows and
        columns past the matrix and a K tail are zero-filled, so it takes any M, N a multiple of 8
        and K of 16. Also checked: bitlinear_matmul_int8 with the switch at mma, on every shape
        (the shapes the kernel does not take go to cuBLAS)

 Shapes: M = 65536 (B*T of a 124M step), the four BitLinear matrices of C = 768 and C = 2048.
 Validation is on 320 sampled rows (two whole 128-row tiles at the ends and 64 random rows),
 every column: the CPU reference for all of M would take minutes.
*/
#include "common.h" // defines: harness (random inputs, validation, timing, results); includes llmc/ headers
#include <cublasLt.h>
#include "llmc/bitlinear.cuh" // defines: bitlinear_matmul_int8 (variant 4, what the trainer runs), cublas_handle,
                              // bitlinear_matmul_int8_mma_launch (variant 5), bitlinear_int8_gemm (the switch)

// variant 0 against its CPU reference (double sums of the same bf16 operands): the output
// is rounded to floatX (2^-9 relative for bf16; 1e-2 leaves a 5x margin) and cuBLAS sums K
// products in fp32 in its own order (about K * 2^-24 * sum|terms| ~ 1e-3 at K = 3072 with
// the magnitudes here; 1e-2 absolute covers it)
#define FWD_BF16_RTOL 1e-2
#define FWD_BF16_ATOL 1e-2
#define NUM_SAMPLE_ROWS 320
// variant 4's outputs against the fmaf reference: a multiply and an add round twice where fmaf
// rounds once, so they may differ by one rounding of the product in fp32 (2^-24 of |acc * scale|)
// and then, rounded to floatX, by one floatX unit (2^-8 relative for bf16, 2^-23 for fp32) of
// the larger of the two terms; EPILOGUE_ULPS floatX units of (|acc * scale| + |bias|) covers both
#define EPILOGUE_ULPS 2.0

// ----------------------------------------------------------------------------
// CPU reference

// the epilogue, one definition for the CPU reference and the GPU kernels: fmaf is one
// rounding on both (host libm fmaf and the device fma instruction are both correctly rounded)
__host__ __device__ static inline floatX bitlinear_epilogue(int32_t acc, float inv_s_m, float gamma, float bias_n) {
    return from_float<floatX>(fmaf((float)acc, gamma * inv_s_m, bias_n));
}

// acc and out of the sampled rows rows[0..nr) (row i of acc_ref and out_ref is row rows[i])
static void bitlinear_forward_cpu(int32_t *acc_ref, floatX *out_ref, const int8_t *x, const int8_t *trits,
                                  const float *inv_s, float gamma, const float *bias, const int *rows, int nr,
                                  int K, int N) {
    #pragma omp parallel for collapse(2)
    for (int i = 0; i < nr; i++) {
        for (int n = 0; n < N; n++) {
            const int8_t *x_m = x + (size_t)rows[i] * K, *t_n = trits + (size_t)n * K;
            int32_t sum = 0;
            for (int k = 0; k < K; k++) { sum += (int32_t)x_m[k] * t_n[k]; }
            acc_ref[(size_t)i * N + n] = sum;
            out_ref[(size_t)i * N + n] = bitlinear_epilogue(sum, inv_s[rows[i]], gamma, bias[n]);
        }
    }
}

// variant 0's reference: the dequantized operands as the GPU has them (rounded to floatX), in double
// the shipped epilogue's outputs from the exact int32 products: the CPU trainer's dequant_epilogue
// (llmc/ternary_kernels.h: the product rounded, then the bias added; no FMA in this host build, as in
// the GPU's dequant_value), rounded to floatX. nr rows of acc_ref, row i being row rows[i]
static void bitlinear_shipped_cpu(floatX *out_ref, const int32_t *acc_ref, const float *inv_s, float gamma,
                                  const float *bias, const int *rows, int nr, int N) {
    float *row = (float *)mallocCheck((size_t)N * sizeof(float));
    for (int i = 0; i < nr; i++) {
        dequant_epilogue(row, acc_ref + (size_t)i * N, &inv_s[rows[i]], gamma, bias, 1, N);
        for (int n = 0; n < N; n++) { out_ref[(size_t)i * N + n] = from_float<floatX>(row[n]); }
    }
    free(row);
}

static void bitlinear_forward_deq_cpu(double *out_ref, const floatX *xdeq, const floatX *wdeq, const floatX *bias_x,
                                      const int *rows, int nr, int K, int N) {
    #pragma omp parallel for collapse(2)
    for (int i = 0; i < nr; i++) {
        for (int n = 0; n < N; n++) {
            const floatX *x_m = xdeq + (size_t)rows[i] * K, *w_n = wdeq + (size_t)n * K;
            double sum = 0.0;
            for (int k = 0; k < K; k++) { sum += (double)to_float(x_m[k]) * to_float(w_n[k]); }
            out_ref[(size_t)i * N + n] = sum + to_float(bias_x[n]);
        }
    }
}

// ----------------------------------------------------------------------------
// GPU kernels

// operands of variant 0: xdeq (M,K) = x * inv_s[m], wdeq (N,K) = trit * gamma, bias in floatX
__global__ void dequantize_rows_kernel(floatX *out, const int8_t *q, const float *row_scale, float scale, int rows,
                                       int cols) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)rows * cols) {
        float s = row_scale ? row_scale[i / cols] : scale;
        out[i] = from_float<floatX>((float)q[i] * s);
    }
}

// variant 0's operands: x (M,K) = codes * inv_s[m], W (N,K) = trits * gamma, in floatX
static void dequantize_operands(floatX *xdeq, floatX *wdeq, const int8_t *x, const float *inv_s, const int8_t *trits,
                                float gamma, int M, int K, int N) {
    dequantize_rows_kernel<<<ceil_div((long long)M * K, 256), 256>>>(xdeq, x, inv_s, 0.0f, M, K);
    cudaCheck(cudaGetLastError());
    dequantize_rows_kernel<<<ceil_div((long long)N * K, 256), 256>>>(wdeq, trits, NULL, gamma, N, K);
    cudaCheck(cudaGetLastError());
}

// --- variant 1's epilogue: out = acc * gamma * inv_s[m] + bias[n], one thread per output

__global__ void bitlinear_epilogue_kernel1(floatX *out, const int32_t *acc, const float *inv_s, float gamma,
                                           const float *bias, int M, int N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)M * N) { out[i] = bitlinear_epilogue(acc[i], inv_s[i / N], gamma, bias[i % N]); }
}

// --- variant 2: one thread per output, dp4a over K/4 words

__global__ void bitlinear_forward_kernel2(floatX *out, int32_t *acc_out, const int8_t *x, const int8_t *trits,
                                          const float *inv_s, float gamma, const float *bias, int M, int K, int N) {
    int n = blockIdx.x * blockDim.x + threadIdx.x, m = blockIdx.y * blockDim.y + threadIdx.y;
    if (m >= M || n >= N) { return; }
    const int *x4 = reinterpret_cast<const int *>(x + (size_t)m * K); // K % 4 == 0: whole aligned words
    const int *w4 = reinterpret_cast<const int *>(trits + (size_t)n * K);
    int acc = 0;
    for (int k = 0; k < K / 4; k++) { acc = __dp4a(x4[k], w4[k], acc); } // 4 signed byte products + acc
    out[(size_t)m * N + n] = bitlinear_epilogue(acc, inv_s[m], gamma, bias[n]);
    if (acc_out) { acc_out[(size_t)m * N + n] = acc; }
}

// --- variant 3: mma.sync int8 tensor cores

#define BM 128      // block tile rows (tokens)
#define BN 128      // block tile columns (out features)
#define BK 64       // K per shared-memory tile: two m16n8k32 steps
#define SKEW 16     // bytes of padding per smem row: stride 80 bytes = 20 words, so the 8 rows a
                    // fragment load touches start in banks 0,20,8,28,16,4,24,12: conflict-free
#define LDS (BK + SKEW)
#define WM 64       // warp tile rows: 4 m16 tiles
#define WN 32       // warp tile columns: 4 n8 tiles
#define THREADS3 256 // 8 warps: 2 along M x 4 along N

// D (16x8, s32) += A (16x32, s8, row-major) * B (32x8, s8, column-major). Fragments (PTX ISA,
// "Matrix Fragments for mma.m16n8k32", .s8), with g = lane / 4 and t = lane % 4:
//   a[r]: 4 bytes A[g + 8*(r&1)][16*(r>>1) + 4t + 0..3]      r = 0..3
//   b[r]: 4 bytes B[16*r + 4t + 0..3][g]                       r = 0..1  (= W[n=g][k], k contiguous)
//   d[i]: D[g + 8*(i>>1)][2t + (i&1)]                          i = 0..3
__device__ static inline void mma_s8_16832(int (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// 4 bytes of shared memory as one word (4-byte aligned: LDS and all column offsets are multiples of 4)
__device__ static inline uint32_t lds32(const int8_t *p) { return *reinterpret_cast<const uint32_t *>(p); }

__global__ void __launch_bounds__(THREADS3)
bitlinear_forward_kernel3(floatX *out, int32_t *acc_out, const int8_t *x, const int8_t *trits, const float *inv_s,
                          float gamma, const float *bias, int M, int K, int N) {
    __shared__ __align__(16) int8_t As[BM * LDS]; // x tile: BM rows (m) of BK bytes (k)
    __shared__ __align__(16) int8_t Bs[BN * LDS]; // trits tile: BN rows (n) of BK bytes (k)
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int g = lane / 4, t = lane % 4;
    const int wm = warp / 4, wn = warp % 4; // this warp's tile: rows wm*64.., columns wn*32..
    const int bm = blockIdx.y * BM, bn = blockIdx.x * BN;
    const int8_t *xg = x + (size_t)bm * K, *wg = trits + (size_t)bn * K;

    // global -> registers: each tile is 128 rows x 64 bytes = 512 16-byte pieces, 2 per thread;
    // piece p is row p/4, bytes 16*(p%4)..: four neighbouring threads read one row's 64 bytes
    int4 ra[2], rb[2];
    auto load_tile = [&](int k0) {
        #pragma unroll
        for (int i = 0; i < 2; i++) {
            int p = tid + i * THREADS3, row = p / 4, c = (p % 4) * 16;
            ra[i] = *reinterpret_cast<const int4 *>(xg + (size_t)row * K + k0 + c);
            rb[i] = *reinterpret_cast<const int4 *>(wg + (size_t)row * K + k0 + c);
        }
    };
    auto store_tile = [&]() {
        #pragma unroll
        for (int i = 0; i < 2; i++) {
            int p = tid + i * THREADS3, row = p / 4, c = (p % 4) * 16;
            *reinterpret_cast<int4 *>(&As[row * LDS + c]) = ra[i];
            *reinterpret_cast<int4 *>(&Bs[row * LDS + c]) = rb[i];
        }
    };

    int acc[4][4][4] = {}; // [m16 tile][n8 tile][fragment]
    load_tile(0);
    for (int k0 = 0; k0 < K; k0 += BK) {
        store_tile();
        __syncthreads(); // the tile is in shared memory for all warps
        if (k0 + BK < K) { load_tile(k0 + BK); } // the next tile's loads overlap this tile's math
        #pragma unroll
        for (int ks = 0; ks < BK; ks += 32) {
            uint32_t a[4][4], b[4][2];
            #pragma unroll
            for (int mi = 0; mi < 4; mi++) {
                const int8_t *p = &As[(wm * WM + mi * 16 + g) * LDS + ks + 4 * t];
                a[mi][0] = lds32(p);                // row g,     k 4t..
                a[mi][1] = lds32(p + 8 * LDS);      // row g + 8, k 4t..
                a[mi][2] = lds32(p + 16);           // row g,     k 16 + 4t..
                a[mi][3] = lds32(p + 8 * LDS + 16); // row g + 8, k 16 + 4t..
            }
            #pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                const int8_t *p = &Bs[(wn * WN + ni * 8 + g) * LDS + ks + 4 * t];
                b[ni][0] = lds32(p);      // n g, k 4t..
                b[ni][1] = lds32(p + 16); // n g, k 16 + 4t..
            }
            #pragma unroll
            for (int mi = 0; mi < 4; mi++) {
                #pragma unroll
                for (int ni = 0; ni < 4; ni++) { mma_s8_16832(acc[mi][ni], a[mi], b[ni]); }
            }
        }
        __syncthreads(); // every warp is done reading this tile before the next store overwrites it
    }

    // epilogue: scales and bias straight from the accumulators
    #pragma unroll
    for (int mi = 0; mi < 4; mi++) {
        #pragma unroll
        for (int ni = 0; ni < 4; ni++) {
            #pragma unroll
            for (int i = 0; i < 4; i++) {
                int m = bm + wm * WM + mi * 16 + g + 8 * (i >> 1);
                int n = bn + wn * WN + ni * 8 + 2 * t + (i & 1);
                size_t o = (size_t)m * N + n;
                out[o] = bitlinear_epilogue(acc[mi][ni][i], inv_s[m], gamma, bias[n]);
                if (acc_out) { acc_out[o] = acc[mi][ni][i]; }
            }
        }
    }
}

// ----------------------------------------------------------------------------
// launchers

static cublasLtHandle_t cublaslt_handle;
static void *cublaslt_workspace = NULL;
#define CUBLASLT_WORKSPACE_BYTES (32u << 20) // cuBLASLt's recommendation for Hopper

// variant 0: out (M,N) = xdeq (M,K) @ wdeq (N,K)^T + bias_x, column-major view: out^T (N,M) =
// wdeq^T-op (N,K) x xdeq (K,M): A = wdeq stored (K,N) ld K with op T, B = xdeq stored (K,M) ld K,
// D stored (N,M) ld N; the BIAS epilogue adds bias[row of D] = bias[n] to every column (token)
// the cuBLASLt plan of the last shape: made once per shape, so the timed calls pay for the matmul only
typedef struct {
    int M, K, N;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
} LtPlan;
static LtPlan lt_plan = {0, 0, 0, NULL, NULL, NULL, NULL, {}};

static void lt_plan_free(void) {
    if (lt_plan.desc == NULL) { return; }
    cublasCheck(cublasLtMatrixLayoutDestroy(lt_plan.la));
    cublasCheck(cublasLtMatrixLayoutDestroy(lt_plan.lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(lt_plan.ld));
    cublasCheck(cublasLtMatmulDescDestroy(lt_plan.desc));
    lt_plan.desc = NULL;
}

static void bitlinear_forward0(floatX *out, const floatX *xdeq, const floatX *wdeq, const floatX *bias_x, int M,
                               int K, int N) {
    LtPlan *p = &lt_plan;
    if (p->desc == NULL || p->M != M || p->K != K || p->N != N) {
        lt_plan_free();
        p->M = M; p->K = K; p->N = N;
        cublasCheck(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(opT)));
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(opN)));
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
        cublasCheck(cublasLtMatrixLayoutCreate(&p->la, CUBLAS_FLOATX, K, N, K));
        cublasCheck(cublasLtMatrixLayoutCreate(&p->lb, CUBLAS_FLOATX, K, M, K));
        cublasCheck(cublasLtMatrixLayoutCreate(&p->ld, CUBLAS_FLOATX, N, M, N));
        cublasLtMatmulPreference_t pref;
        cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
        size_t ws = CUBLASLT_WORKSPACE_BYTES;
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                         sizeof(ws)));
        cublasLtMatmulHeuristicResult_t heur;
        int found = 0;
        cublasCheck(cublasLtMatmulAlgoGetHeuristic(cublaslt_handle, p->desc, p->la, p->lb, p->ld, p->ld, pref, 1,
                                                   &heur, &found));
        if (found == 0) {
            fprintf(stderr, "cuBLASLt: no algorithm for M %d K %d N %d with a bias epilogue\n", M, K, N);
            exit(EXIT_FAILURE);
        }
        p->algo = heur.algo;
        cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    }
    // the bias pointer is set on every call (it is an attribute of the descriptor)
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_x, sizeof(bias_x)));
    const float alpha = 1.0f, beta = 0.0f;
    cublasCheck(cublasLtMatmul(cublaslt_handle, p->desc, &alpha, wdeq, p->la, xdeq, p->lb, &beta, out, p->ld, out,
                               p->ld, &p->algo, cublaslt_workspace, CUBLASLT_WORKSPACE_BYTES, 0));
}

// variant 1: acc (M,N) int32 = x (M,K) @ trits (N,K)^T by cuBLAS, the same "TN" column-major
// view as variant 0 (int8 tensor-core GEMMs want exactly this: both operands K-contiguous),
// then the epilogue kernel. int8 GEMMs need K and the leading dimensions multiples of 4
// (asserted in main: all shapes here are multiples of 128)
static void bitlinear_forward1(floatX *out, int32_t *acc, const int8_t *x, const int8_t *trits, const float *inv_s,
                               float gamma, const float *bias, int M, int K, int N, int block) {
    const int32_t alpha = 1, beta = 0;
    cublasCheck(cublasGemmEx(cublas_handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, trits, CUDA_R_8I, K, x,
                             CUDA_R_8I, K, &beta, acc, CUDA_R_32I, N, CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT));
    bitlinear_epilogue_kernel1<<<ceil_div((long long)M * N, block), block>>>(out, acc, inv_s, gamma, bias, M, N);
    cudaCheck(cudaGetLastError());
}

static void bitlinear_forward2(floatX *out, int32_t *acc_out, const int8_t *x, const int8_t *trits,
                               const float *inv_s, float gamma, const float *bias, int M, int K, int N, int block) {
    dim3 threads(32, block / 32); // 32 columns (n) by block/32 rows (m)
    dim3 grid(ceil_div(N, threads.x), ceil_div(M, threads.y));
    bitlinear_forward_kernel2<<<grid, threads>>>(out, acc_out, x, trits, inv_s, gamma, bias, M, K, N);
    cudaCheck(cudaGetLastError());
}

// variant 3 takes whole tiles only: M, N multiples of 128, K of 64 (a general kernel would guard the edges)
static int variant3_fits(int M, int K, int N) { return M % BM == 0 && N % BN == 0 && K % BK == 0; }

static void bitlinear_forward3(floatX *out, int32_t *acc_out, const int8_t *x, const int8_t *trits,
                               const float *inv_s, float gamma, const float *bias, int M, int K, int N) {
    if (!variant3_fits(M, K, N)) { fprintf(stderr, "variant 3: M, N need multiples of 128, K of 64\n"); exit(1); }
    dim3 grid(N / BN, M / BM);
    bitlinear_forward_kernel3<<<grid, THREADS3>>>(out, acc_out, x, trits, inv_s, gamma, bias, M, K, N);
    cudaCheck(cudaGetLastError());
}

// variant 4: gamma from the device's scale array at index 0, as the trainer reads scales[l*4 + k]
static float *d_scales = NULL;
static void bitlinear_forward4(floatX *out, int32_t *acc, const int8_t *x, const int8_t *trits, const float *inv_s,
                               const float *bias, int M, int K, int N) {
    bitlinear_matmul_int8(out, acc, x, inv_s, trits, d_scales, 0, bias, M, K, N);
}

// variant 5: llmc/bitlinear.cuh's kernel in four configurations (block tile TM x TN, K tile TK bytes,
// STAGES shared buffers: 96, 96, 64 and 144 KiB of shared memory); the first is bitlinear_matmul_int8_mma's
typedef void (*Mma5Launch)(floatX *, int32_t *, const int8_t *, const float *, const int8_t *, const float *, int,
                           const float *, int, int, int);
static const struct {
    Mma5Launch launch;
    const char *name;
    int threads, smem_kib; // smem_kib: STAGES * (TM + TN) * TK / 1024
} mma5_configs[] = {
    {bitlinear_matmul_int8_mma_launch<128, 256, 64, 4>, "5 mma.sync 128x256, K 64, 4 stages (llmc)", 256, 96},
    {bitlinear_matmul_int8_mma_launch<256, 128, 64, 4>, "5 mma.sync 256x128, K 64, 4 stages", 256, 96},
    {bitlinear_matmul_int8_mma_launch<128, 128, 64, 4>, "5 mma.sync 128x128, K 64, 4 stages", 128, 64},
    {bitlinear_matmul_int8_mma_launch<128, 256, 128, 3>, "5 mma.sync 128x256, K 128, 3 stages", 256, 144},
};
static int mma5_smem_optin = 0; // the device's most shared memory a block (main reads it): 227 KiB on an
                                // H100, 163 on an A100, 99 on Ada, where the 144 KiB configuration is skipped
#define NUM_MMA5_CONFIGS ((int)(sizeof(mma5_configs) / sizeof(mma5_configs[0])))

// the operands of every variant
typedef struct {
    const int8_t *x, *trits;
    const float *inv_s, *bias;
    float gamma;
    const floatX *xdeq, *wdeq, *bias_x; // variant 0
    floatX *out;
    int32_t *acc; // variant 1's buffer; for 2, 3 and 5 the accumulators are written here only when validating
} FwdArgs;

// dispatcher; validate: also write the int32 accumulators of variants 2, 3 and 5; block: the block
// size of variants 1 and 2, the configuration (mma5_configs) of variant 5
static void bitlinear_forward(int kernel_num, const FwdArgs &a, int M, int K, int N, int block, int validate) {
    int32_t *acc_out = validate ? a.acc : NULL;
    switch (kernel_num) {
    case 0: bitlinear_forward0(a.out, a.xdeq, a.wdeq, a.bias_x, M, K, N); break;
    case 1: bitlinear_forward1(a.out, a.acc, a.x, a.trits, a.inv_s, a.gamma, a.bias, M, K, N, block); break;
    case 2: bitlinear_forward2(a.out, acc_out, a.x, a.trits, a.inv_s, a.gamma, a.bias, M, K, N, block); break;
    case 3: bitlinear_forward3(a.out, acc_out, a.x, a.trits, a.inv_s, a.gamma, a.bias, M, K, N); break;
    case 4: bitlinear_forward4(a.out, a.acc, a.x, a.trits, a.inv_s, a.bias, M, K, N); break;
    case 5: mma5_configs[block].launch(a.out, acc_out, a.x, a.inv_s, a.trits, d_scales, 0, a.bias, M, K, N); break;
    default: fprintf(stderr, "no variant %d\n", kernel_num); exit(EXIT_FAILURE);
    }
}

// b: variant 5's configuration
static const char *variant_name(int k, int b) {
    switch (k) {
    case 0: return "0 cuBLASLt " PRECISION_NAME " (baseline)";
    case 1: return "1 cuBLAS int8 + epilogue";
    case 2: return "2 naive dp4a";
    case 3: return "3 mma.sync int8";
    case 4: return "4 shipped: cuBLAS int8 + epilogue";
    default: return mma5_configs[b].name;
    }
}

// ----------------------------------------------------------------------------
// main

// the validated rows' outputs and accumulators, device -> host (rows[i] of the M, N to row i)
static void copy_sampled_rows(floatX *out_host, int32_t *acc_host, const FwdArgs &a, const int *rows, int nr, int N) {
    for (int i = 0; i < nr; i++) {
        cudaCheck(cudaMemcpy(out_host + (size_t)i * N, a.out + (size_t)rows[i] * N, N * sizeof(floatX),
                             cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(acc_host + (size_t)i * N, a.acc + (size_t)rows[i] * N, N * sizeof(int32_t),
                             cudaMemcpyDeviceToHost));
    }
}

int main(int argc, char **argv) {
    const int num_kernels = 6;
    int only = parse_kernel_num(argc, argv, num_kernels);
    common_start("bitlinear_forward: int8 x (M,K) @ ternary (N,K)^T -> (M,N) with scales and bias");
    cublasCheck(cublasCreate(&cublas_handle));
    cublasCheck(cublasLtCreate(&cublaslt_handle));
    cublaslt_workspace = cudaMallocCheck(CUBLASLT_WORKSPACE_BYTES, "cuBLASLt workspace");
    rng_seed(1337);
    bitlinear_int8_gemm = INT8_GEMM_CUBLAS; // variant 4 is the cuBLAS scheme whatever GPT2_1BIT_INT8_GEMM says
    int dev = 0;
    cudaCheck(cudaGetDevice(&dev));
    cudaCheck(cudaDeviceGetAttribute(&mma5_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));

    const int small = small_mode();
    // (N, K, M) of qkv (3C, C), attproj (C, C), fc (4C, C), fcproj (C, 4C), for C = 768 and 2048, at
    // M = 65536 (B*T of a GPT-2 124M step). Small mode (the CPU emulator): 2x2 tiles of variant 3 over
    // two K tiles, 1x2 tiles over three K tiles, and a shape that is no multiple of the tiles (N = 200:
    // a partial block of columns for variant 2, the epilogue's tail; K = 100: not a multiple of 64, nor
    // of 16, so variant 5 does not take it and bitlinear_matmul_int8 falls back to cuBLAS), which
    // variant 3 skips; for variant 5 (and skipped by 3): partial row and column tiles with five to
    // seven K tiles of 64 bytes (past its 4 stages: the ring of buffers wraps) and a K tail (400 is
    // 6 1/4 tiles of 64 and 3 1/8 of 128, 320 is 2 1/2 of 128), and a shape under one tile in every
    // dimension (M 40, N 72: whole warps past the matrix; K 48: one partial K tile)
    const int shapes_gpu[][3] = {{2304, 768, 65536}, {768, 768, 65536}, {3072, 768, 65536}, {768, 3072, 65536},
                                 {6144, 2048, 65536}, {2048, 2048, 65536}, {8192, 2048, 65536},
                                 {2048, 8192, 65536}};
    const int shapes_small[][3] = {{256, 128, 256}, {128, 192, 256}, {200, 100, 256},
                                   {200, 400, 200}, {512, 320, 256}, {72, 48, 40}};
    const int (*shapes)[3] = small ? shapes_small : shapes_gpu;
    const int nshapes = small ? sizeof(shapes_small) / sizeof(shapes_small[0]) : sizeof(shapes_gpu) / sizeof(shapes_gpu[0]);
    const int block_sizes[] = {128, 256, 512};
    const int Mmax = small ? 256 : 65536, Kmax = small ? 512 : 8192, Nmax = small ? 512 : 8192;
    const size_t MN_max = (size_t)Mmax * Nmax;
    for (int s = 0; s < nshapes; s++) {
        // int8 tensor-core GEMMs (cuBLAS and variant 3) want K and N multiples of 16, and every
        // shape of the GPU run fits variant 3's whole 128 x 128 x 64 tiles; dp4a (variant 2) and
        // cuBLAS int8 (variant 1) need K a multiple of 4 (whole 32-bit words, aligned rows)
        if ((!small && !variant3_fits(shapes[s][2], shapes[s][1], shapes[s][0])) || shapes[s][1] % 4 ||
            shapes[s][2] > Mmax) {
            fprintf(stderr, "shape not tile-aligned\n");
            exit(1);
        }
    }

    // inputs: codes over the full int8 range, row scales 1/s of normalised rows (max|x_n| ~ 0.6..6),
    // trits, a gamma near that of GPT-2's init, small biases. The (M,K) input of a shape is the
    // first M*K bytes of x read as M rows of K.
    int8_t *x = make_random_int8((size_t)Mmax * Kmax);
    int8_t *trits = make_random_trits((size_t)Nmax * Kmax);
    float *inv_s = make_random_float(Mmax, 0.005f, 0.05f);
    float *bias = make_random_float(Nmax, -0.1f, 0.1f);
    const float gamma = 0.0173f;
    floatX *bias_x = (floatX *)mallocCheck(Nmax * sizeof(floatX));
    for (int n = 0; n < Nmax; n++) { bias_x[n] = from_float<floatX>(bias[n]); }

    FwdArgs a;
    int8_t *d_x = to_device(x, (size_t)Mmax * Kmax), *d_trits = to_device(trits, (size_t)Nmax * Kmax);
    float *d_inv_s = to_device(inv_s, Mmax), *d_bias = to_device(bias, Nmax);
    floatX *d_bias_x = to_device(bias_x, Nmax);
    floatX *d_xdeq = (floatX *)cudaMallocCheck((size_t)Mmax * Kmax * sizeof(floatX), "xdeq");
    floatX *d_wdeq = (floatX *)cudaMallocCheck((size_t)Nmax * Kmax * sizeof(floatX), "wdeq");
    a.x = d_x; a.trits = d_trits; a.inv_s = d_inv_s; a.bias = d_bias; a.gamma = gamma;
    a.xdeq = d_xdeq; a.wdeq = d_wdeq; a.bias_x = d_bias_x;
    a.out = (floatX *)cudaMallocCheck(MN_max * sizeof(floatX), "out");
    a.acc = (int32_t *)cudaMallocCheck(MN_max * sizeof(int32_t), "acc");
    d_scales = to_device(&gamma, 1);

    int rows[NUM_SAMPLE_ROWS]; // the sampled rows of a shape (below)
    int32_t *acc_ref = (int32_t *)mallocCheck((size_t)NUM_SAMPLE_ROWS * Nmax * sizeof(int32_t));
    int32_t *acc_gpu = (int32_t *)mallocCheck((size_t)NUM_SAMPLE_ROWS * Nmax * sizeof(int32_t));
    floatX *out_ref = (floatX *)mallocCheck((size_t)NUM_SAMPLE_ROWS * Nmax * sizeof(floatX));
    floatX *out_gpu = (floatX *)mallocCheck((size_t)NUM_SAMPLE_ROWS * Nmax * sizeof(floatX));
    double *out0_ref = (double *)mallocCheck((size_t)NUM_SAMPLE_ROWS * Nmax * sizeof(double));
    floatX *out5_ref = (floatX *)mallocCheck((size_t)NUM_SAMPLE_ROWS * Nmax * sizeof(floatX));

    for (int s = 0; s < nshapes; s++) {
        const int N = shapes[s][0], K = shapes[s][1], M = shapes[s][2];
        char shape[40];
        snprintf(shape, sizeof(shape), "%d x %d -> %d", M, K, N);
        // sampled rows: the first and the last 128-row tile whole, and 64 random rows; small mode: every row
        const int nr = small ? M : NUM_SAMPLE_ROWS;
        if (small) {
            for (int i = 0; i < nr; i++) { rows[i] = i; }
        } else {
            for (int i = 0; i < 128; i++) { rows[i] = i; rows[128 + i] = M - 128 + i; }
            for (int i = 256; i < NUM_SAMPLE_ROWS; i++) { rows[i] = 128 + (int)(rng_u32() % (uint32_t)(M - 256)); }
        }
        // variant 0's operands for this shape, and their copies for its CPU reference
        dequantize_operands(d_xdeq, d_wdeq, d_x, d_inv_s, d_trits, gamma, M, K, N);
        floatX *xdeq = from_device(d_xdeq, (size_t)M * K), *wdeq = from_device(d_wdeq, (size_t)N * K);
        for (int i = 0; i < nr; i++) { // the GPU's dequantization, checked by the CPU's
            for (int k = 0; k < K; k++) {
                size_t j = (size_t)rows[i] * K + k;
                floatX want = from_float<floatX>((float)x[j] * inv_s[rows[i]]);
                if (memcmp(&want, &xdeq[j], sizeof(floatX)) != 0) { printf("MISMATCH xdeq at %zu\n", j); exit(1); }
            }
        }
        bitlinear_forward_cpu(acc_ref, out_ref, x, trits, inv_s, gamma, bias, rows, nr, K, N);
        bitlinear_forward_deq_cpu(out0_ref, xdeq, wdeq, bias_x, rows, nr, K, N);
        bitlinear_shipped_cpu(out5_ref, acc_ref, inv_s, gamma, bias, rows, nr, N);

        // validate
        for (int k = 0; k < num_kernels; k++) {
            if ((only > 0 && k != only && k != 0) || (k == 3 && !variant3_fits(M, K, N))) { continue; }
            if (k == 5 && !bitlinear_mma_fits(a.out, a.x, a.trits, M, K, N)) {
                printf("  variant 5, %s: not taken (K %% 16 = %d, N %% 8 = %d): bitlinear_matmul_int8 runs cuBLAS "
                       "(checked below)\n", shape, K % 16, N % 8);
                continue;
            }
            // block sizes matter for the elementwise/naive kernels only; variant 5: its configurations
            int nb = (k == 1 || k == 2) ? 3 : k == 5 ? NUM_MMA5_CONFIGS : 1;
            for (int b = 0; b < nb; b++) {
                if (k == 5 && mma5_configs[b].smem_kib * 1024 > mma5_smem_optin) { continue; }
                cudaCheck(cudaMemset(a.out, 0x7f, (size_t)M * N * sizeof(floatX))); // stale output must not pass
                cudaCheck(cudaMemset(a.acc, 0x7f, (size_t)M * N * sizeof(int32_t)));
                bitlinear_forward(k, a, M, K, N, k == 5 ? b : block_sizes[b], 1);
                cudaCheck(cudaDeviceSynchronize());
                copy_sampled_rows(out_gpu, acc_gpu, a, rows, nr, N);
                size_t n_el = (size_t)nr * N;
                if (k == 0) {
                    validate_close("variant 0 out", out_gpu, out0_ref, n_el, FWD_BF16_ATOL, FWD_BF16_RTOL);
                } else if (k == 4) { // the accumulators exactly; the outputs to within one rounding
                    validate_exact("acc (int32)", acc_gpu, acc_ref, n_el);
                    const double unit = sizeof(floatX) == 2 ? 1.0 / 256 : 1.0 / 8388608;
                    for (size_t j = 0; j < n_el; j++) {
                        int i = (int)(j / N), n = (int)(j % N);
                        double prod = fabs((double)acc_ref[j] * (gamma * inv_s[rows[i]]));
                        double d = fabs((double)to_float(out_gpu[j]) - to_float(out_ref[j]));
                        if (!(d <= EPILOGUE_ULPS * unit * (prod + fabs((double)bias[n])))) {
                            printf("MISMATCH variant 4 out at row %d, column %d: gpu %.9g, fmaf reference %.9g\n",
                                   rows[i], n, to_float(out_gpu[j]), to_float(out_ref[j]));
                            exit(EXIT_FAILURE);
                        }
                    }
                } else if (k == 5) { // the shipped epilogue: exact against the CPU's
                    validate_exact("acc (int32)", acc_gpu, acc_ref, n_el);
                    validate_exact("out", out_gpu, out5_ref, n_el);
                } else {
                    validate_exact("acc (int32)", acc_gpu, acc_ref, n_el);
                    validate_exact("out", out_gpu, out_ref, n_el);
                }
            }
            if (k == 4) { // the shipped epilogue (128-bit where N allows) against its one-output-a-thread fallback: bit for bit
                size_t mn = (size_t)M * N;
                floatX *d_out2 = (floatX *)cudaMallocCheck(mn * sizeof(floatX), "out2");
                for (int with_bias = 1; with_bias >= 0; with_bias--) {
                    const float *bias_k = with_bias ? a.bias : NULL;
                    cudaCheck(cudaMemset(a.out, 0x7f, mn * sizeof(floatX)));
                    cudaCheck(cudaMemset(d_out2, 0x55, mn * sizeof(floatX)));
                    dequant_epilogue(a.out, a.acc, a.inv_s, d_scales, 0, bias_k, M, N);
                    dequant_epilogue_kernel<<<ceil_div((long long)mn, 256), 256>>>(d_out2, a.acc, a.inv_s, d_scales, 0,
                                                                                   bias_k, M, N);
                    cudaCheck(cudaGetLastError());
                    cudaCheck(cudaDeviceSynchronize());
                    floatX *o1 = from_device(a.out, mn), *o2 = from_device(d_out2, mn);
                    validate_exact(with_bias ? "epilogue vs scalar" : "epilogue vs scalar, no bias", o1, o2, mn);
                    free(o1); free(o2);
                }
                cudaCheck(cudaFree(d_out2));
                printf("  variant 4, %s: int32 accumulators exact, outputs within one rounding; epilogue (%s) equal "
                       "to the scalar kernel's to the bit\n", shape, N % x128::size == 0 ? "128-bit" : "scalar");
            }
            else if (k == 5) {
                int nc = 0;
                for (int b = 0; b < NUM_MMA5_CONFIGS; b++) { nc += mma5_configs[b].smem_kib * 1024 <= mma5_smem_optin; }
                printf("  variant 5, %s: int32 accumulators and outputs (the shipped epilogue's) exact in %d of %d "
                       "configurations%s\n", shape, nc, NUM_MMA5_CONFIGS,
                       nc < NUM_MMA5_CONFIGS ? " (the others need more shared memory a block than this GPU has)" : "");
            }
            else if (k > 0) { printf("  variant %d, %s: int32 accumulators and outputs exact\n", k, shape); }
        }
        if (only <= 0 || only == 5) { // the trainer's dispatcher with the switch at mma: the kernel, or cuBLAS
            int taken = bitlinear_mma_fits(a.out, a.x, a.trits, M, K, N);
            cudaCheck(cudaMemset(a.out, 0x7f, (size_t)M * N * sizeof(floatX)));
            cudaCheck(cudaMemset(a.acc, 0x7f, (size_t)M * N * sizeof(int32_t)));
            bitlinear_int8_gemm = INT8_GEMM_MMA;
            bitlinear_matmul_int8(a.out, a.acc, a.x, a.inv_s, a.trits, d_scales, 0, a.bias, M, K, N);
            bitlinear_int8_gemm = INT8_GEMM_CUBLAS;
            cudaCheck(cudaDeviceSynchronize());
            copy_sampled_rows(out_gpu, acc_gpu, a, rows, nr, N);
            validate_exact("out (GPT2_1BIT_INT8_GEMM=mma)", out_gpu, out5_ref, (size_t)nr * N);
            if (!taken) { validate_exact("acc (int32, the fallback)", acc_gpu, acc_ref, (size_t)nr * N); }
            printf("  variant 5 via bitlinear_matmul_int8 (GPT2_1BIT_INT8_GEMM=mma), %s: %s exact\n", shape,
                   taken ? "the mma kernel, outputs" : "cuBLAS (the fallback), int32 accumulators and outputs");
        }
        free(xdeq); free(wdeq);
    }
    printf("All results match\n\n");
    const int ntimed = small ? 0 : nshapes; // small mode: validation only
    const double copy_gbs = small ? 0.0 : measure_copy_bandwidth(256u << 20); // the epilogue's roofline

    for (int s = 0; s < ntimed; s++) {
        const int N = shapes[s][0], K = shapes[s][1], M = shapes[s][2];
        char shape[40];
        snprintf(shape, sizeof(shape), "%d x %d -> %d", M, K, N);
        dequantize_operands(d_xdeq, d_wdeq, d_x, d_inv_s, d_trits, gamma, M, K, N);
        const double ops = 2.0 * M * N * K;
        double ms0 = 0.0;
        for (int k = 0; k < num_kernels; k++) {
            if (only > 0 && k != only && k != 0) { continue; }
            if (k == 5 && !bitlinear_mma_fits(a.out, a.x, a.trits, M, K, N)) { continue; }
            int nb = (k == 1 || k == 2) ? 3 : k == 5 ? NUM_MMA5_CONFIGS : 1;
            // variant 2 (naive dp4a) is ~2 TOPS, 117 ms a product on an H200: in a full run it is
            // timed on the first shape at one block size only (./bitlinear_forward 2 times it all)
            int naive_short = k == 2 && only != 2;
            if (naive_short && s > 0) { continue; }
            for (int b = naive_short ? 1 : 0; b < (naive_short ? 2 : nb); b++) {
                if (k == 5 && mma5_configs[b].smem_kib * 1024 > mma5_smem_optin) { continue; }
                int block = k == 5 ? b : block_sizes[b]; // variant 5: the configuration
                double ms = benchmark_ms([&]() { bitlinear_forward(k, a, M, K, N, block, 0); });
                if (k == 0) { ms0 = ms; }
                char ratio[24];
                snprintf(ratio, sizeof(ratio), "%.2fx v0", ms0 / ms);
                // 4: the epilogue's block; 5: the GEMM's
                int shown = k == 5 ? mma5_configs[b].threads : nb > 1 ? block : k == 3 ? THREADS3 : k == 4 ? 256 : 0;
                result_line("bitlinear_forward", shape, variant_name(k, b), shown, ms, ops / (ms * 1e-3) / 1e12,
                            k == 0 ? "TFLOPS" : "TOPS", ratio);
            }
            if (k == 4) { // the epilogue alone, the shipped launcher and its scalar fallback: bandwidth-bound
                const double bytes = (double)M * N * (sizeof(int32_t) + sizeof(floatX)); // the floor's traffic
                for (int e = 0; e < 2; e++) {
                    double ms = benchmark_ms([&]() {
                        if (e == 0) {
                            dequant_epilogue(a.out, a.acc, a.inv_s, d_scales, 0, a.bias, M, N);
                        } else {
                            dequant_epilogue_kernel<<<ceil_div((long long)M * N, 256), 256>>>(
                                a.out, a.acc, a.inv_s, d_scales, 0, a.bias, M, N);
                        }
                    });
                    double gbs = bytes / (ms * 1e-3) / 1e9;
                    char ratio[24];
                    snprintf(ratio, sizeof(ratio), "%.0f%% of copy", 100.0 * gbs / copy_gbs);
                    result_line("bitlinear_forward", shape, e == 0 ? "4 epilogue, shipped (128-bit)" :
                                "4 epilogue, scalar fallback", 256, ms, gbs, "GB/s", ratio);
                }
            }
        }
    }
    if (!small) { print_results_table(); }

    free(x); free(trits); free(inv_s); free(bias); free(bias_x);
    free(acc_ref); free(acc_gpu); free(out_ref); free(out_gpu); free(out0_ref); free(out5_ref);
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_trits)); cudaCheck(cudaFree(d_inv_s)); cudaCheck(cudaFree(d_bias));
    cudaCheck(cudaFree(d_bias_x)); cudaCheck(cudaFree(d_xdeq)); cudaCheck(cudaFree(d_wdeq));
    cudaCheck(cudaFree(a.out)); cudaCheck(cudaFree(a.acc)); cudaCheck(cudaFree(cublaslt_workspace));
    cudaCheck(cudaFree(d_scales));
    lt_plan_free();
    cublasCheck(cublasLtDestroy(cublaslt_handle));
    cublasCheck(cublasDestroy(cublas_handle));
    return 0;
}
