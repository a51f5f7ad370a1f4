/*
 llmc/matmul.cuh: the matmuls, by cuBLAS: float forward and backward (floatX operands, fp32
 accumulation, fp32 weight gradient), and the exact int8 x int8 -> int32 product of the
 BitLinear integer forward.
 Spec: matmul_forward and matmul_backward in train_gpt2_1bit.c; matmul_i8 is the int8 x trit
 product of llmc/ternary_kernels.h (matmul_i8_t2_ref) on unpacked int8 trits.

   matmul_forward:  out (M,N) = inp (M,K) @ weight (N,K)^T (+ bias (N))
   matmul_backward: dinp (M,K) = dout @ weight; dweight (N,K) += dout^T @ inp; dbias (N) += colsum(dout)
   matmul_i8:       acc (M,N) int32 = codes (M,K) int8 @ trits (N,K)^T int8
 cuBLAS is column-major: a row-major (R,C) matrix is its column-major transpose, so each
 call below is written as the transposed product (the comment at each call says which).
 The caller creates cublas_handle (cublasCreate) before the first call.
*/
#ifndef LLMC_MATMUL_CUH
#define LLMC_MATMUL_CUH

#include <cublas_v2.h>
#include "cuda_common.h" // defines: floatX, CUBLAS_FLOATX, cublasCheck, cudaCheck, ceil_div
#include "colsum.cuh"    // defines: colsum_backward, COLSUM_ROWS

static cublasHandle_t cublas_handle;
// fp32 accumulation in every float matmul; with fp32 operands cuBLAS's default
// math mode does not use TF32, so the fp32 build computes plain fp32 products
static const cublasComputeType_t CUBLAS_COMPUTE = CUBLAS_COMPUTE_32F;

// out (N,OC) += bias (OC)
__global__ void add_bias_kernel(floatX *out, const float *bias, int N, int OC) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)N * OC) { return; }
    out[idx] = from_float<floatX>(to_float(out[idx]) + bias[idx % OC]);
}

// out (M,N) = inp (M,K) @ weight (N,K)^T (+ bias (N)), floatX in and out, fp32 accumulation.
// cuBLAS is column-major: the row-major out (M,N) is the column-major out^T (N,M) = weight . inp^T
static inline void matmul_forward(floatX *out, const floatX *inp, const floatX *weight, const float *bias, int M,
                                  int K, int N) {
    const float one = 1.0f, zero = 0.0f;
    cublasCheck(cublasGemmEx(cublas_handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, weight, CUBLAS_FLOATX, K, inp,
                             CUBLAS_FLOATX, K, &zero, out, CUBLAS_FLOATX, N, CUBLAS_COMPUTE, CUBLAS_GEMM_DEFAULT));
    if (bias != NULL) {
        add_bias_kernel<<<ceil_div((long long)M * N, 256), 256>>>(out, bias, M, N);
        cudaCheck(cudaGetLastError());
    }
}

// The backward of out = inp @ weight^T + bias with inp (M,K), weight (N,K), dout (M,N):
//   dinp (M,K) = dout @ weight            (overwritten; skipped when dinp is NULL)
//   dweight (N,K) += dout^T @ inp         (fp32, accumulated)
//   dbias (N) += column sums of dout      (fixed order; skipped when NULL)
// partial holds ceil(M / COLSUM_ROWS) * N floats.
static inline void matmul_backward(floatX *dinp, float *dweight, float *dbias, const floatX *dout, const floatX *inp,
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
    if (dbias != NULL) { colsum_backward(dbias, partial, dout, M, N); }
}

// acc (M,N) = codes (M,K) . trits (N,K)^T, exact in int32 on the tensor cores.
// cuBLAS's int8 GEMM wants the "TN" form, which is what row-major operands give,
// and K and N multiples of 4 (true for every GPT-2 shape: C is a multiple of 64).
static inline void matmul_i8(int32_t *acc, const int8_t *codes, const int8_t *trits, int M, int K, int N) {
    const int32_t one = 1, zero = 0;
    cublasCheck(cublasGemmEx(cublas_handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, trits, CUDA_R_8I, K, codes,
                             CUDA_R_8I, K, &zero, acc, CUDA_R_32I, N, CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT));
}

#endif // LLMC_MATMUL_CUH
