/*
 tests/cuda_emu/include/cublas_v2.h: the cuBLAS calls the project makes, as
 plain loops on the CPU, written from cuBLAS's documented definition:
   C = alpha * op(A) op(B) + beta * C, all matrices column-major,
   op(A) is m x k: A[i + p*lda] (N) or A[p + i*lda] (T); op(B) is k x n likewise; C[i + j*ldc].
 Float products accumulate in fp32 (as CUBLAS_COMPUTE_32F), int8 products in
 int32, exactly. The argument rules of the real library that the project
 relies on are checked, and a violation is reported as an error status:
   int8 (CUDA_R_8I in, CUDA_R_32I out, CUBLAS_COMPUTE_32I): transa = T and transb = N
   ("TN"), lda and ldb multiples of 4, A and B 4-byte aligned.
*/
#ifndef CUDA_EMU_CUBLAS_H
#define CUDA_EMU_CUBLAS_H

#include "cuda_runtime.h"
#include "cuda_bf16.h"

typedef struct EmuCublas *cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_INVALID_VALUE = 7,
               CUBLAS_STATUS_NOT_SUPPORTED = 15 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14, CUDA_R_8I = 3, CUDA_R_32I = 10 } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_PEDANTIC = 69, CUBLAS_COMPUTE_32I = 72 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;

static struct EmuCublas { int dummy; } emu_cublas_handle;
static inline cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = &emu_cublas_handle; return CUBLAS_STATUS_SUCCESS; }
static inline cublasStatus_t cublasDestroy(cublasHandle_t h) { (void)h; return CUBLAS_STATUS_SUCCESS; }

static inline float emu_load_float(const void *p, cudaDataType t, size_t i) {
    if (t == CUDA_R_32F) { return ((const float *)p)[i]; }
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}
static inline void emu_store_float(void *p, cudaDataType t, size_t i, float v) {
    if (t == CUDA_R_32F) { ((float *)p)[i] = v; } else { ((__nv_bfloat16 *)p)[i] = __float2bfloat16(v); }
}

static inline cublasStatus_t cublasGemmStridedBatchedEx(
    cublasHandle_t h, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, const void *alpha,
    const void *A, cudaDataType Atype, int lda, long long strideA, const void *B, cudaDataType Btype, int ldb,
    long long strideB, const void *beta, void *C, cudaDataType Ctype, int ldc, long long strideC, int batch,
    cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    (void)algo;
    if (h == NULL) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    if (m < 0 || n < 0 || k < 0 || batch < 0 || ldc < (m > 1 ? m : 1) ||
        lda < (transa == CUBLAS_OP_N ? (m > 1 ? m : 1) : (k > 1 ? k : 1)) ||
        ldb < (transb == CUBLAS_OP_N ? (k > 1 ? k : 1) : (n > 1 ? n : 1))) {
        fprintf(stderr, "cuda_emu cuBLAS: invalid dimensions m=%d n=%d k=%d lda=%d ldb=%d ldc=%d\n", m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (compute == CUBLAS_COMPUTE_32I) {
        if (Atype != CUDA_R_8I || Btype != CUDA_R_8I || Ctype != CUDA_R_32I) { return CUBLAS_STATUS_NOT_SUPPORTED; }
        if (transa != CUBLAS_OP_T || transb != CUBLAS_OP_N || lda % 4 || ldb % 4 || ((uintptr_t)A) % 4 ||
            ((uintptr_t)B) % 4) {
            fprintf(stderr, "cuda_emu cuBLAS: int8 GEMM needs the TN form, lda/ldb multiples of 4, aligned A/B\n");
            return CUBLAS_STATUS_NOT_SUPPORTED;
        }
        int32_t al = *(const int32_t *)alpha, be = *(const int32_t *)beta;
        for (int b = 0; b < batch; b++) {
            const int8_t *a = (const int8_t *)A + b * strideA, *bb = (const int8_t *)B + b * strideB;
            int32_t *c = (int32_t *)C + b * strideC;
            for (int j = 0; j < n; j++) {
                for (int i = 0; i < m; i++) {
                    int64_t s = 0;
                    for (int p = 0; p < k; p++) { s += (int32_t)a[p + (size_t)i * lda] * (int32_t)bb[p + (size_t)j * ldb]; }
                    int64_t r = (int64_t)al * s + (be != 0 ? (int64_t)be * c[i + (size_t)j * ldc] : 0);
                    c[i + (size_t)j * ldc] = (int32_t)r;
                }
            }
        }
        return CUBLAS_STATUS_SUCCESS;
    }
    if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_PEDANTIC) { return CUBLAS_STATUS_NOT_SUPPORTED; }
    if ((Atype != CUDA_R_32F && Atype != CUDA_R_16BF) || Btype != Atype || (Ctype != CUDA_R_32F && Ctype != Atype)) {
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    float al = *(const float *)alpha, be = *(const float *)beta;
    size_t ea = Atype == CUDA_R_32F ? 4 : 2, ec = Ctype == CUDA_R_32F ? 4 : 2;
    // op(A) packed as m rows of k contiguous floats, op(B) as n columns of k: every
    // dot product then walks two contiguous arrays
    float *ap = (float *)malloc(((size_t)m * k + 1) * sizeof(float));
    float *bp = (float *)malloc(((size_t)n * k + 1) * sizeof(float));
    for (int b = 0; b < batch; b++) {
        const char *a = (const char *)A + b * strideA * (long long)ea;
        const char *bb = (const char *)B + b * strideB * (long long)ea;
        char *c = (char *)C + b * strideC * (long long)ec;
        for (int i = 0; i < m; i++) {
            for (int p = 0; p < k; p++) {
                ap[(size_t)i * k + p] = emu_load_float(a, Atype, transa == CUBLAS_OP_N ? i + (size_t)p * lda : p + (size_t)i * lda);
            }
        }
        for (int j = 0; j < n; j++) {
            for (int p = 0; p < k; p++) {
                bp[(size_t)j * k + p] = emu_load_float(bb, Btype, transb == CUBLAS_OP_N ? p + (size_t)j * ldb : j + (size_t)p * ldb);
            }
        }
        // threads only for products big enough to pay for waking them
        #pragma omp parallel for schedule(static) if ((double)m * n * k > 1e7)
        for (int j = 0; j < n; j++) {
            const float *col = bp + (size_t)j * k;
            for (int i = 0; i < m; i++) {
                const float *row = ap + (size_t)i * k;
                float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}; // 8 partial sums: the compiler vectorizes them
                int p = 0;
                for (; p + 8 <= k; p += 8) {
                    for (int q = 0; q < 8; q++) { acc[q] += row[p + q] * col[p + q]; }
                }
                float s = 0.0f;
                for (; p < k; p++) { s += row[p] * col[p]; }
                s += ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
                size_t ci = i + (size_t)j * ldc;
                float v = al * s;
                if (be != 0.0f) { v += be * emu_load_float(c, Ctype, ci); } // beta = 0: C is not read (may be garbage)
                emu_store_float(c, Ctype, ci, v);
            }
        }
    }
    free(ap);
    free(bp);
    return CUBLAS_STATUS_SUCCESS;
}

static inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t transa, cublasOperation_t transb, int m,
                                          int n, int k, const void *alpha, const void *A, cudaDataType Atype, int lda,
                                          const void *B, cudaDataType Btype, int ldb, const void *beta, void *C,
                                          cudaDataType Ctype, int ldc, cublasComputeType_t compute,
                                          cublasGemmAlgo_t algo) {
    return cublasGemmStridedBatchedEx(h, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0, beta, C,
                                      Ctype, ldc, 0, 1, compute, algo);
}

#endif // CUDA_EMU_CUBLAS_H
