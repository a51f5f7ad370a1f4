/*
 bitlinear_backward: the two matmuls of BitLinear's backward pass, with the straight-through
 estimator (round and clamp count as identity, no gradient to the scales; ../shared/BITNET.md):
     dX (M,K)  = dY (M,N) @ W_q (N,K)          W_q = trit * gamma, dequantized to bf16
     dW (N,K) += dY^T (N,M) @ X_q (M,K)        X_q = q * inv_s[m], the forward's int8 activations
 dX goes on to the RMSNorm backward; dW (fp32) is the gradient of the latent weights.

 The option this file measures: the forward already has X as int8 codes q plus one scale per
 token, so the backward need not keep a bf16 copy of X_q. Since
     dW[n][k] = sum_m dY[m][n] * (q[m][k] * inv_s[m]) = sum_m (dY[m][n] * inv_s[m]) * q[m][k]
 the per-token scale can be folded into the rows of dY (an (M,N) elementwise pass), and q
 enters the GEMM as is: int8 -> bf16 is exact (|q| <= 128 < 2^8). The saved activation is then
 1 byte per value instead of 2. (The tensor cores need both operands in one type, so the codes
 are converted to bf16 before the GEMM: here by a staging kernel into a scratch buffer; a
 hand-written GEMM would convert them on the way from shared memory to the fragments.)

 Build and run:
     make -C dev/cuda bitlinear_backward && ./dev/cuda/bitlinear_backward   all variants
     ./dev/cuda/bitlinear_backward 2                                       variant 2 (and the baseline)

 Variants:
     1  cuBLAS bf16 (fp32 accumulate): dX = dY W_q and dW += dY^T X_q with X_q kept in bf16 (the baseline);
        it is llmc/matmul.cuh's matmul_backward, what the trainer runs (ships)
     2  the same dX; dW += (dY * inv_s)^T q: X kept as int8 codes, the scale folded into dY's rows,
        the codes converted to bf16 by a staging kernel
     3  the int8 backward of dX (-bq int8, issue 14; ships: llmc/bitlinear.cuh's bitlinear_dx_int8):
        dY to int8 per row (grad_quantize_rows), dX = (gamma / s_g) * (codes . trits) by cuBLAS's
        int8 GEMM on the trits transposed (IC,OC) (trits_transpose, once per update in the trainer,
        outside the timing here), exact int32 sums, the scales applied once; dW as variant 1.
        Another dX than variants 1-2 compute (dY is rounded): it is checked against its own spec
     4  variant 3 with its int8 GEMM and epilogue in one kernel: llmc/bitlinear.cuh's
        bitlinear_matmul_int8_mma (variant 5 of bitlinear_forward.cu; what -bq int8 runs with
        GPT2_1BIT_INT8_GEMM=mma), exact against the same spec; for the shapes it takes (OC a
        multiple of 16, IC of 8; the trainer runs variant 3 on the others); dW as variant 1

 Validation (at M = 4096, sampled rows and columns; timing at M = 65536): against a CPU
 reference in double from the exact operands, with |gpu - cpu| <= BWD_ATOL_OF_RMS * rms(cpu)
 + BWD_RTOL * |cpu|. Variant 3's dX exactly, bit for bit, against the CPU trainer's own path
 (train_gpt2_1bit.c's bitlinear_backward_int8: ternary.h's grad_absmax_scale and quantize_int8,
 matmul_i8_t2_ref on pack2_rows_transposed trits, dequant_epilogue): the codes, 1/s_g, the int32
 sums and dX; the transposed trits too. Row 0 of dY is scaled by 1e-6, under the activations'
 1e-5 floor: the gradient's floor (GRAD_EPS) must be the one applied.
*/
#include "common.h" // defines: harness (random inputs, validation, timing, results); includes llmc/ headers
#include "llmc/matmul.cuh" // defines: cublas_handle, matmul_backward (what the trainer runs: variant 1)
#include "llmc/bitlinear.cuh" // defines: BitLinearScratch, bitlinear_dx_int8 (variant 3, what -bq int8 runs),
                              // bitlinear_matmul_int8_mma (variant 4), bitlinear_int8_gemm
#include "llmc/quantize.cuh"  // defines: trits_transpose, grad_quantize_rows (variant 3)

// Each product enters the GEMM with one bf16 rounding (2^-9 relative: X_q in variant 1, dY * inv_s
// in variant 2, nothing for dX's operands), summed in fp32: over M or N terms of random sign the
// error is ~2^-9 / sqrt(3) of the typical sum, ~1e-3 of its rms, and dX is rounded to bf16 on output
// (2^-9 of itself). 2e-2 of the rms plus 1e-2 of the value leaves a wide margin.
#define BWD_ATOL_OF_RMS 2e-2
#define BWD_RTOL 1e-2
#define M_VALIDATE 4096
#define NUM_SAMPLE_DX_ROWS 64
#define NUM_SAMPLE_DW_ROWS 32

// ----------------------------------------------------------------------------
// CPU reference: sampled rows of dX and of dW, in double from the exact operands

static void bitlinear_backward_cpu(double *dx_ref, double *dw_ref, const floatX *dy, const floatX *wdeq,
                                   const int8_t *q, const float *inv_s, const int *dx_rows, int ndx,
                                   const int *dw_rows, int ndw, int M, int K, int N) {
    // one sampled row per thread, accumulated over the sum's index with k innermost (contiguous)
    #pragma omp parallel for
    for (int i = 0; i < ndx; i++) {
        double *acc = dx_ref + (size_t)i * K;
        for (int k = 0; k < K; k++) { acc[k] = 0.0; }
        const floatX *dy_m = dy + (size_t)dx_rows[i] * N;
        for (int n = 0; n < N; n++) {
            double d = to_float(dy_m[n]);
            const floatX *w_n = wdeq + (size_t)n * K;
            for (int k = 0; k < K; k++) { acc[k] += d * to_float(w_n[k]); }
        }
    }
    #pragma omp parallel for
    for (int i = 0; i < ndw; i++) {
        double *acc = dw_ref + (size_t)i * K;
        for (int k = 0; k < K; k++) { acc[k] = 0.0; }
        const int n = dw_rows[i];
        for (int m = 0; m < M; m++) {
            double d = (double)to_float(dy[(size_t)m * N + n]) * inv_s[m]; // dY[m][n] * x_q[m][k] = d * q[m][k]
            const int8_t *q_m = q + (size_t)m * K;
            for (int k = 0; k < K; k++) { acc[k] += d * q_m[k]; }
        }
    }
}

// Variant 3's spec, the CPU trainer's path for sampled rows of dY: codes (nrows,N) and inv_s (nrows)
// of dY to int8, acc (nrows,K) = codes . trits (exact int32, the 2-bit packed trits transposed),
// dx (nrows,K) = acc * (gamma * inv_s) rounded to floatX; trits is (N,K)
static void bitlinear_dx_int8_cpu(int8_t *codes, float *inv_s, int32_t *acc, floatX *dx, const floatX *dy,
                                  const int8_t *trits, float gamma, const int *rows, int nrows, int K, int N) {
    float *g = (float *)mallocCheck((size_t)N * sizeof(float)), *dxf = (float *)mallocCheck((size_t)K * sizeof(float));
    for (int i = 0; i < nrows; i++) { // grad_quantize_rows of train_gpt2_1bit.c, on the floatX values
        for (int n = 0; n < N; n++) { g[n] = to_float(dy[(size_t)rows[i] * N + n]); }
        float s = grad_absmax_scale(g, N);
        for (int n = 0; n < N; n++) { codes[(size_t)i * N + n] = quantize_int8(g[n], s); }
        inv_s[i] = 1.0f / s;
    }
    uint8_t *w2t = (uint8_t *)mallocCheck((size_t)K * pack2_row_bytes(N)); // K rows of N trits
    pack2_rows_transposed(w2t, trits, N, K);
    matmul_i8_t2_ref(acc, codes, w2t, nrows, N, K);
    for (int i = 0; i < nrows; i++) {
        dequant_epilogue(dxf, acc + (size_t)i * K, &inv_s[i], gamma, NULL, 1, K);
        for (int k = 0; k < K; k++) { dx[(size_t)i * K + k] = from_float<floatX>(dxf[k]); }
    }
    free(g); free(dxf); free(w2t);
}

// ----------------------------------------------------------------------------
// GPU kernels

// out (rows, cols) = q * (row_scale ? row_scale[row] : scale), rounded to floatX
__global__ void dequantize_rows_kernel(floatX *out, const int8_t *q, const float *row_scale, float scale, int rows,
                                       int cols) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)rows * cols) {
        float s = row_scale ? row_scale[i / cols] : scale;
        out[i] = from_float<floatX>((float)q[i] * s);
    }
}

// variant 2's staging, one kernel for both: dys (M,N) = dy * inv_s[m]; qx (M,K) = q as floatX (exact)
__global__ void fold_scale_kernel2(floatX *dys, floatX *qx, const floatX *dy, const int8_t *q, const float *inv_s,
                                   int M, int K, int N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t j = i; j < (size_t)M * N; j += stride) { dys[j] = from_float<floatX>(to_float(dy[j]) * inv_s[j / N]); }
    for (size_t j = i; j < (size_t)M * K; j += stride) { qx[j] = from_float<floatX>((float)q[j]); }
}

// ----------------------------------------------------------------------------
// launchers

// dX (M,K) = dY (M,N) @ W (N,K). Column-major view: dX^T (K,M) = W^T (K,N) @ dY^T (N,M), where the
// row-major W is column-major (K,N) ld K and the row-major dY is column-major (N,M) ld N: no transposes
static void matmul_dx(floatX *dx, const floatX *dy, const floatX *w, int M, int K, int N) {
    const float alpha = 1.0f, beta = 0.0f;
    cublasCheck(cublasGemmEx(cublas_handle, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, &alpha, w, CUBLAS_FLOATX, K, dy,
                             CUBLAS_FLOATX, N, &beta, dx, CUBLAS_FLOATX, K, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// dW (N,K) += dY^T (N,M) @ X (M,K): llmc/matmul.cuh's matmul_backward with no dX and no bias
static void matmul_dw(float *dw, const floatX *dy, const floatX *x, const floatX *w, int M, int K, int N) {
    matmul_backward(NULL, dw, NULL, dy, x, w, M, K, N, NULL);
}

typedef struct {
    const floatX *dy, *wdeq, *xdeq; // xdeq: variant 1's bf16 copy of X_q
    const int8_t *q;                // variant 2's int8 codes
    const float *inv_s;
    floatX *dys, *qx;               // variant 2's scratch
    const int8_t *trits_t;          // variant 3: the trits transposed (K,N)
    const float *scales;            // variant 3: gamma at [0]
    BitLinearScratch bl;            // variant 3: dY's codes (M,N), 1/s_g (M), int32 sums (M,K)
    floatX *dx;
    float *dw;
} BwdArgs;

// variant 1 is what the trainer runs: llmc/matmul.cuh's matmul_backward (bitlinear_backward in
// llmc/bitlinear.cuh calls it with x_q recomputed in floatX)
static void bitlinear_backward1(const BwdArgs &a, int M, int K, int N) {
    matmul_backward(a.dx, a.dw, NULL, a.dy, a.xdeq, a.wdeq, M, K, N, NULL);
}

static void bitlinear_backward2(const BwdArgs &a, int M, int K, int N, int block) {
    matmul_dx(a.dx, a.dy, a.wdeq, M, K, N);
    int dev = 0, sms = 0;
    cudaCheck(cudaGetDevice(&dev));
    cudaCheck(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    fold_scale_kernel2<<<sms * 8, block>>>(a.dys, a.qx, a.dy, a.q, a.inv_s, M, K, N); // grid-stride: a few waves
    cudaCheck(cudaGetLastError());
    matmul_dw(a.dw, a.dys, a.qx, a.wdeq, M, K, N);
}

// variant 3 is what -bq int8 runs: llmc/bitlinear.cuh's bitlinear_dx_int8 (its IC = K, OC = N),
// and dW as variant 1 (bitlinear_backward in llmc/bitlinear.cuh calls matmul_backward without dX)
static void bitlinear_backward3(BwdArgs &a, int M, int K, int N) {
    matmul_dw(a.dw, a.dy, a.xdeq, a.wdeq, M, K, N);
    bitlinear_dx_int8(a.dx, a.dy, a.trits_t, a.scales, 0, &a.bl, M, K, N);
}

// variant 4: variant 3's two steps (bitlinear_dx_int8) with the fused kernel for the second;
// acc_out: the int32 sums too (validation only)
static int variant4_fits(const BwdArgs &a, int M, int K, int N) {
    return bitlinear_mma_fits(a.dx, a.bl.codes, a.trits_t, M, N, K);
}
static void bitlinear_backward4(BwdArgs &a, int M, int K, int N, int32_t *acc_out) {
    matmul_dw(a.dw, a.dy, a.xdeq, a.wdeq, M, K, N);
    grad_quantize_rows(a.bl.codes, a.bl.inv_s, a.dy, M, N);
    bitlinear_matmul_int8_mma(a.dx, acc_out, a.bl.codes, a.bl.inv_s, a.trits_t, a.scales, 0, NULL, M, N, K);
}

// dispatcher; validate: variant 4 also writes its int32 sums
static void bitlinear_backward(int kernel_num, BwdArgs &a, int M, int K, int N, int block, int validate) {
    switch (kernel_num) {
    case 1: bitlinear_backward1(a, M, K, N); break;
    case 2: bitlinear_backward2(a, M, K, N, block); break;
    case 3: bitlinear_backward3(a, M, K, N); break;
    case 4: bitlinear_backward4(a, M, K, N, validate ? a.bl.acc : NULL); break;
    default: fprintf(stderr, "no variant %d\n", kernel_num); exit(EXIT_FAILURE);
    }
}

static const char *variant_name(int k) {
    return k == 1 ? "1 cuBLAS " PRECISION_NAME ", X_q " PRECISION_NAME " (baseline)"
         : k == 2 ? "2 cuBLAS, X_q int8, scale in dY"
         : k == 3 ? "3 dX int8 x trits (-bq int8), dW as 1" : "4 dX int8 by mma.sync, fused, dW as 1";
}

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    const int num_kernels = 5; // variants 1 to 4 (no 0: variant 1 is the library baseline)
    int only = parse_kernel_num(argc, argv, num_kernels);
    common_start("bitlinear_backward: dX = dY W_q and dW += dY^T X_q");
    cublasCheck(cublasCreate(&cublas_handle));
    rng_seed(1337);
    bitlinear_int8_gemm = INT8_GEMM_CUBLAS; // variant 3 is the cuBLAS scheme whatever GPT2_1BIT_INT8_GEMM says

    const int small = small_mode();
    // B*T of a GPT-2 124M step; small mode (the CPU emulator): 300 tokens, all of them validated
    // (for variant 4's 128-row tiles: two whole and a partial one)
    const int M = small ? 300 : 65536, M_validate = small ? M : M_VALIDATE;
    // (N, K) of qkv, attproj, fc, fcproj for C = 768 and 2048 (N = out features, K = in features);
    // small mode: sizes that are no multiples of 32 or of the block, so the staging kernel's
    // grid-stride loop (8 blocks of 256 on the emulated 1-SM device) ends mid-block; for variant 4
    // (its GEMM's K is N here, its columns K): N = 200 is no multiple of 16 (variant 4 skips it),
    // N = 64 one K tile, N = 448 seven (its ring of 4 buffers wraps), K = 136 a partial column tile
    const int shapes_gpu[][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072},
                                 {6144, 2048}, {2048, 2048}, {8192, 2048}, {2048, 8192}};
    const int shapes_small[][2] = {{200, 96}, {64, 136}, {448, 136}};
    const int (*shapes)[2] = small ? shapes_small : shapes_gpu;
    const int nshapes = small ? sizeof(shapes_small) / sizeof(shapes_small[0]) : sizeof(shapes_gpu) / sizeof(shapes_gpu[0]);
    const int Kmax = small ? 256 : 8192, Nmax = small ? 512 : 8192;

    // inputs; the (M,N) dY of a shape is the first M*N values read as rows of N, and so on
    floatX *dy = (floatX *)mallocCheck((size_t)M * Nmax * sizeof(floatX));
    for (size_t i = 0; i < (size_t)M * Nmax; i++) { dy[i] = from_float<floatX>(rng_uniform(-1.0f, 1.0f)); }
    // row 0 of every shape's dY (the first N values) tiny: variant 3 must use the gradient's floor
    for (int i = 0; i < Nmax; i++) { dy[i] = from_float<floatX>(to_float(dy[i]) * 1e-6f); }
    int8_t *q = make_random_int8((size_t)M * Kmax);
    int8_t *trits = make_random_trits((size_t)Nmax * Kmax);
    float *inv_s = make_random_float(M, 0.005f, 0.05f);
    const float gamma = 0.0173f;

    BwdArgs a;
    floatX *d_dy = to_device(dy, (size_t)M * Nmax);
    int8_t *d_q = to_device(q, (size_t)M * Kmax), *d_trits = to_device(trits, (size_t)Nmax * Kmax);
    float *d_inv_s = to_device(inv_s, M);
    floatX *d_wdeq = (floatX *)cudaMallocCheck((size_t)Nmax * Kmax * sizeof(floatX), "wdeq");
    floatX *d_xdeq = (floatX *)cudaMallocCheck((size_t)M * Kmax * sizeof(floatX), "xdeq");
    a.dy = d_dy; a.wdeq = d_wdeq; a.xdeq = d_xdeq; a.q = d_q; a.inv_s = d_inv_s;
    a.dys = (floatX *)cudaMallocCheck((size_t)M * Nmax * sizeof(floatX), "dY * inv_s");
    a.qx = (floatX *)cudaMallocCheck((size_t)M * Kmax * sizeof(floatX), "q as floatX");
    a.dx = (floatX *)cudaMallocCheck((size_t)M * Kmax * sizeof(floatX), "dX");
    a.dw = (float *)cudaMallocCheck((size_t)Nmax * Kmax * sizeof(float), "dW");
    int8_t *d_trits_t = (int8_t *)cudaMallocCheck((size_t)Nmax * Kmax, "trits transposed");
    a.trits_t = d_trits_t;
    a.scales = to_device(&gamma, 1);
    memset(&a.bl, 0, sizeof(a.bl));
    a.bl.codes = (int8_t *)cudaMallocCheck((size_t)M * Nmax, "dY codes");
    a.bl.inv_s = (float *)cudaMallocCheck((size_t)M * sizeof(float), "1/s_g");
    a.bl.acc = (int32_t *)cudaMallocCheck((size_t)M * Kmax * sizeof(int32_t), "int32 sums");

    int dx_rows[NUM_SAMPLE_DX_ROWS], dw_rows[NUM_SAMPLE_DW_ROWS];
    double *dx_ref = (double *)mallocCheck((size_t)NUM_SAMPLE_DX_ROWS * Kmax * sizeof(double));
    double *dw_ref = (double *)mallocCheck((size_t)NUM_SAMPLE_DW_ROWS * Kmax * sizeof(double));
    floatX *dx_gpu = (floatX *)mallocCheck((size_t)NUM_SAMPLE_DX_ROWS * Kmax * sizeof(floatX));
    float *dw_gpu = (float *)mallocCheck((size_t)NUM_SAMPLE_DW_ROWS * Kmax * sizeof(float));
    // variant 3's exact checks, on the same sampled rows of dX
    const size_t nq = (size_t)NUM_SAMPLE_DX_ROWS * Nmax, nk = (size_t)NUM_SAMPLE_DX_ROWS * Kmax;
    int8_t *codes_ref = (int8_t *)mallocCheck(nq), *codes_gpu = (int8_t *)mallocCheck(nq);
    float *inv_s_ref = (float *)mallocCheck(NUM_SAMPLE_DX_ROWS * sizeof(float));
    float *inv_s_gpu = (float *)mallocCheck(NUM_SAMPLE_DX_ROWS * sizeof(float));
    int32_t *acc_ref = (int32_t *)mallocCheck(nk * sizeof(int32_t));
    int32_t *acc_gpu = (int32_t *)mallocCheck(nk * sizeof(int32_t));
    floatX *dx8_ref = (floatX *)mallocCheck(nk * sizeof(floatX));
    int8_t *trits_t_ref = (int8_t *)mallocCheck((size_t)Nmax * Kmax);

    for (int s = 0; s < nshapes; s++) {
        const int N = shapes[s][0], K = shapes[s][1], Mv = M_validate;
        dequantize_rows_kernel<<<ceil_div((long long)N * K, 256), 256>>>(d_wdeq, d_trits, NULL, gamma, N, K);
        cudaCheck(cudaGetLastError());
        dequantize_rows_kernel<<<ceil_div((long long)M * K, 256), 256>>>(d_xdeq, d_q, d_inv_s, 0.0f, M, K);
        cudaCheck(cudaGetLastError());
        trits_transpose(d_trits_t, d_trits, 1, N, K); // variant 3's operand (once per update in the trainer)
        int8_t *trits_t_gpu = from_device(d_trits_t, (size_t)N * K);
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < K; k++) { trits_t_ref[(size_t)k * N + n] = trits[(size_t)n * K + k]; }
        }
        validate_exact("trits transposed", trits_t_gpu, trits_t_ref, (size_t)N * K);
        free(trits_t_gpu);
        floatX *wdeq = from_device(d_wdeq, (size_t)N * K);
        // sampled rows: the first and last few, the rest random
        for (int i = 0; i < NUM_SAMPLE_DX_ROWS; i++) { dx_rows[i] = i < 4 ? i : i < 8 ? Mv - 1 - (i - 4) : (int)(rng_u32() % Mv); }
        for (int i = 0; i < NUM_SAMPLE_DW_ROWS; i++) { dw_rows[i] = i < 4 ? i : i < 8 ? N - 1 - (i - 4) : (int)(rng_u32() % N); }
        // the (Mv, N) dY of the validation problem is the first Mv*N values, as on the GPU
        bitlinear_backward_cpu(dx_ref, dw_ref, dy, wdeq, q, inv_s, dx_rows, NUM_SAMPLE_DX_ROWS, dw_rows,
                               NUM_SAMPLE_DW_ROWS, Mv, K, N);
        bitlinear_dx_int8_cpu(codes_ref, inv_s_ref, acc_ref, dx8_ref, dy, trits, gamma, dx_rows, NUM_SAMPLE_DX_ROWS,
                              K, N);
        double dx_rms = 0.0, dw_rms = 0.0;
        for (size_t i = 0; i < (size_t)NUM_SAMPLE_DX_ROWS * K; i++) { dx_rms += dx_ref[i] * dx_ref[i]; }
        for (size_t i = 0; i < (size_t)NUM_SAMPLE_DW_ROWS * K; i++) { dw_rms += dw_ref[i] * dw_ref[i]; }
        dx_rms = sqrt(dx_rms / ((double)NUM_SAMPLE_DX_ROWS * K));
        dw_rms = sqrt(dw_rms / ((double)NUM_SAMPLE_DW_ROWS * K));
        for (int k = 1; k < num_kernels; k++) {
            if (only > 0 && k != only && k != 1) { continue; }
            if (k == 4 && !variant4_fits(a, Mv, K, N)) {
                printf("  variant 4 dX, N %d K %d: not taken (N %% 16 = %d): -bq int8 runs variant 3 there\n", N, K,
                       N % 16);
                continue;
            }
            cudaCheck(cudaMemset(a.dx, 0x7f, (size_t)Mv * K * sizeof(floatX))); // stale output must not pass
            cudaCheck(cudaMemset(a.dw, 0, (size_t)N * K * sizeof(float)));       // dW accumulates: start at 0
            cudaCheck(cudaMemset(a.bl.acc, 0x7f, (size_t)Mv * K * sizeof(int32_t)));
            bitlinear_backward(k, a, Mv, K, N, 256, 1);
            cudaCheck(cudaDeviceSynchronize());
            for (int i = 0; i < NUM_SAMPLE_DX_ROWS; i++) {
                cudaCheck(cudaMemcpy(dx_gpu + (size_t)i * K, a.dx + (size_t)dx_rows[i] * K, K * sizeof(floatX),
                                     cudaMemcpyDeviceToHost));
            }
            for (int i = 0; i < NUM_SAMPLE_DW_ROWS; i++) {
                cudaCheck(cudaMemcpy(dw_gpu + (size_t)i * K, a.dw + (size_t)dw_rows[i] * K, K * sizeof(float),
                                     cudaMemcpyDeviceToHost));
            }
            char name[64];
            if (k == 3 || k == 4) { // the int8 dX: its codes, scales, int32 sums and dX bit for bit
                for (int i = 0; i < NUM_SAMPLE_DX_ROWS; i++) {
                    size_t r = (size_t)dx_rows[i];
                    cudaCheck(cudaMemcpy(codes_gpu + (size_t)i * N, a.bl.codes + r * N, N, cudaMemcpyDeviceToHost));
                    cudaCheck(cudaMemcpy(inv_s_gpu + i, a.bl.inv_s + r, sizeof(float), cudaMemcpyDeviceToHost));
                    cudaCheck(cudaMemcpy(acc_gpu + (size_t)i * K, a.bl.acc + r * K, K * sizeof(int32_t),
                                         cudaMemcpyDeviceToHost));
                }
                validate_exact("dY codes", codes_gpu, codes_ref, (size_t)NUM_SAMPLE_DX_ROWS * N);
                validate_exact("1/s_g", inv_s_gpu, inv_s_ref, NUM_SAMPLE_DX_ROWS);
                validate_exact("int32 sums", acc_gpu, acc_ref, (size_t)NUM_SAMPLE_DX_ROWS * K);
                validate_exact("dX", dx_gpu, dx8_ref, (size_t)NUM_SAMPLE_DX_ROWS * K);
                printf("  variant %d dX, N %d K %d: dY codes, 1/s_g, int32 sums and dX exact\n", k, N, K);
            } else {
                snprintf(name, sizeof(name), "variant %d dX, N %d K %d", k, N, K);
                validate_close(name, dx_gpu, dx_ref, (size_t)NUM_SAMPLE_DX_ROWS * K, BWD_ATOL_OF_RMS * dx_rms,
                               BWD_RTOL);
            }
            snprintf(name, sizeof(name), "variant %d dW, N %d K %d", k, N, K);
            validate_close(name, dw_gpu, dw_ref, (size_t)NUM_SAMPLE_DW_ROWS * K, BWD_ATOL_OF_RMS * dw_rms, BWD_RTOL);
        }
        free(wdeq);
    }
    printf("All results match\n\n");
    const int ntimed = small ? 0 : nshapes; // small mode: validation only

    const int block_sizes[] = {256, 512, 1024};
    for (int s = 0; s < ntimed; s++) {
        const int N = shapes[s][0], K = shapes[s][1];
        char shape[40];
        snprintf(shape, sizeof(shape), "%d x %d -> %d", M, K, N);
        dequantize_rows_kernel<<<ceil_div((long long)N * K, 256), 256>>>(d_wdeq, d_trits, NULL, gamma, N, K);
        cudaCheck(cudaGetLastError());
        dequantize_rows_kernel<<<ceil_div((long long)M * K, 256), 256>>>(d_xdeq, d_q, d_inv_s, 0.0f, M, K);
        cudaCheck(cudaGetLastError());
        trits_transpose(d_trits_t, d_trits, 1, N, K);
        const double flops = 2.0 * 2.0 * M * N * K; // two GEMMs
        double ms1 = 0.0;
        for (int k = 1; k < num_kernels; k++) {
            if (only > 0 && k != only && k != 1) { continue; }
            if (k == 4 && !variant4_fits(a, M, K, N)) { continue; }
            int nb = k == 2 ? 3 : 1;
            for (int b = 0; b < nb; b++) {
                int block = block_sizes[b];
                double ms = benchmark_ms([&]() { bitlinear_backward(k, a, M, K, N, block, 0); });
                if (k == 1) { ms1 = ms; }
                char ratio[24];
                snprintf(ratio, sizeof(ratio), "%.2fx v1", ms1 / ms);
                result_line("bitlinear_backward", shape, variant_name(k), k == 2 ? block : 0, ms,
                            flops / (ms * 1e-3) / 1e12, "TFLOPS", ratio);
            }
        }
    }
    if (!small) { print_results_table(); }

    free(dy); free(q); free(trits); free(inv_s); free(dx_ref); free(dw_ref); free(dx_gpu); free(dw_gpu);
    free(codes_ref); free(codes_gpu); free(inv_s_ref); free(inv_s_gpu); free(acc_ref); free(acc_gpu); free(dx8_ref);
    free(trits_t_ref);
    cudaCheck(cudaFree(d_trits_t)); cudaCheck(cudaFree((void *)a.scales)); cudaCheck(cudaFree(a.bl.codes));
    cudaCheck(cudaFree(a.bl.inv_s)); cudaCheck(cudaFree(a.bl.acc));
    cudaCheck(cudaFree(d_dy)); cudaCheck(cudaFree(d_q)); cudaCheck(cudaFree(d_trits)); cudaCheck(cudaFree(d_inv_s));
    cudaCheck(cudaFree(d_wdeq)); cudaCheck(cudaFree(d_xdeq)); cudaCheck(cudaFree(a.dys)); cudaCheck(cudaFree(a.qx));
    cudaCheck(cudaFree(a.dx)); cudaCheck(cudaFree(a.dw));
    cublasCheck(cublasDestroy(cublas_handle));
    return 0;
}
