/*
 llmc/matmul.cuh: the matmuls, by cuBLAS and cuBLASLt: float forward and backward (floatX
 operands, fp32 accumulation, fp32 weight gradient), and the exact int8 x int8 -> int32 product
 of the BitLinear integer forward.
 Spec: matmul_forward and matmul_backward in train_gpt2_1bit.c; matmul_i8 is the int8 x trit
 product of llmc/ternary_kernels.h (matmul_i8_t2_ref) on unpacked int8 trits.

   matmul_forward:  out (M,N) = inp (M,K) @ weight (N,K)^T (+ bias (N))
   matmul_backward: dinp (M,K) = dout @ weight; dweight (N,K) += dout^T @ inp; dbias (N) += colsum(dout)
   matmul_i8:       acc (M,N) int32 = codes (M,K) int8 @ trits (N,K)^T int8
 cuBLAS is column-major: a row-major (R,C) matrix is its column-major transpose, so each
 call below is written as the transposed product (the comment at each call says which).

 What runs where:
   matmul_forward with a bias:   cublasLtMatmul with the BIAS epilogue: the bias, in floatX (the
                                 trainer's floatX copy of the parameters), is added to the fp32
                                 accumulator inside the GEMM, then D is rounded once to floatX (no
                                 separate bias pass over the output). cuBLASLt takes the bias in
                                 D's type only: an fp32 bias with bf16 D was refused on an H200.
   matmul_forward without bias:  cublasGemmEx (the logits); also, with add_bias_kernel after it,
                                 where cuBLASLt offers no algorithm for the epilogue (said once)
   matmul_backward, matmul_i8:   cublasGemmEx; the bias gradient by colsum_backward (colsum.cuh)
 The caller creates cublas_handle (cublasCreate) before the first call; the cuBLASLt handle and
 its workspace are made on the first matmul_forward with a bias, and matmul_lt_free releases
 them (call it before cublasDestroy; link -lcublasLt).
*/
#ifndef LLMC_MATMUL_CUH
#define LLMC_MATMUL_CUH

#include <string.h> // memcmp, memcpy: the plan cache
#include <cublas_v2.h>
#include <cublasLt.h>
#include "cuda_common.h" // defines: floatX, CUBLAS_FLOATX, cublasCheck, cudaCheck, ceil_div
#include "colsum.cuh"    // defines: colsum_backward, COLSUM_ROWS

static cublasHandle_t cublas_handle;
// fp32 accumulation in every float matmul; with fp32 operands cuBLAS's default
// math mode does not use TF32, so the fp32 build computes plain fp32 products
static const cublasComputeType_t CUBLAS_COMPUTE = CUBLAS_COMPUTE_32F;

// ----------------------------------------------------------------------------
// cuBLASLt: the forward matmul with its bias in the epilogue

static cublasLtHandle_t matmul_lt_handle = NULL;
static void *matmul_lt_workspace = NULL;
#define MATMUL_LT_WORKSPACE_BYTES ((size_t)32 << 20) // 32 MiB: cuBLAS's recommendation for Hopper

// One cuBLASLt plan (descriptors and the heuristic's algorithm) per problem. The heuristic picks an
// algorithm for the alignments it is told (default 256 bytes for A, B, C, D) and reads the bias
// pointer's own alignment, so a plan is keyed on the shape and the four pointers' alignments:
// views into the activation and parameter buffers are not all 256-byte aligned.
typedef struct {
    int M, K, N;
    uint32_t align[4]; // weight (A), inp (B), out (C = D), bias: bytes, a power of two <= 256
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    int fallback; // 1: cuBLASLt offered no algorithm; cublasGemmEx, then add_bias_kernel
} MatmulLtPlan;
#define MATMUL_LT_PLANS 32 // a model has 4 biased shapes x a few alignments; more only evicts
static MatmulLtPlan matmul_lt_plans[MATMUL_LT_PLANS];
static int matmul_lt_num_plans = 0, matmul_lt_evict = 0;

// the alignment a pointer guarantees: its largest power-of-two divisor, at most 256
static inline uint32_t matmul_lt_alignment(const void *p) {
    uint32_t a = 256;
    while (a > 1 && (uintptr_t)p % a != 0) { a /= 2; }
    return a;
}

static inline void matmul_lt_plan_free(MatmulLtPlan *p) {
    cublasCheck(cublasLtMatrixLayoutDestroy(p->la));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->ld));
    cublasCheck(cublasLtMatmulDescDestroy(p->desc));
}

// releases the plans, the workspace and the handle (before cublasDestroy; a later call makes them again)
static inline void matmul_lt_free(void) {
    for (int i = 0; i < matmul_lt_num_plans; i++) { matmul_lt_plan_free(&matmul_lt_plans[i]); }
    matmul_lt_num_plans = matmul_lt_evict = 0;
    if (matmul_lt_handle != NULL) {
        cudaCheck(cudaFree(matmul_lt_workspace));
        cublasCheck(cublasLtDestroy(matmul_lt_handle));
        matmul_lt_workspace = NULL;
        matmul_lt_handle = NULL;
    }
}

// the plan for out (M,N) = inp (M,K) @ weight (N,K)^T + bias (N), made on first use.
// Column-major, as in cublasGemmEx below: D = out^T (N,M) = op(A) op(B) with A = weight stored
// (K,N) ld K, op T; B = inp stored (K,M) ld K, op N; C = D = out stored (N,M) ld N (beta = 0).
// The BIAS epilogue adds bias[i] to row i of D (= column n of out) for every column (token),
// in fp32 before D is rounded to floatX; the bias has D's type (cuBLASLt's default, and the only
// type it took on an H200 for bf16 D).
static MatmulLtPlan *matmul_lt_plan(const floatX *out, const floatX *inp, const floatX *weight, const floatX *bias,
                                    int M, int K, int N) {
    const uint32_t align[4] = {matmul_lt_alignment(weight), matmul_lt_alignment(inp), matmul_lt_alignment(out),
                               matmul_lt_alignment(bias)};
    for (int i = 0; i < matmul_lt_num_plans; i++) {
        MatmulLtPlan *p = &matmul_lt_plans[i];
        if (p->M == M && p->K == K && p->N == N && memcmp(p->align, align, sizeof(align)) == 0) { return p; }
    }
    if (matmul_lt_handle == NULL) {
        cublasCheck(cublasLtCreate(&matmul_lt_handle));
        cudaCheck(cudaMalloc(&matmul_lt_workspace, MATMUL_LT_WORKSPACE_BYTES));
    }
    MatmulLtPlan *p;
    if (matmul_lt_num_plans < MATMUL_LT_PLANS) {
        p = &matmul_lt_plans[matmul_lt_num_plans++];
    } else { // full: replace the plans in turn
        p = &matmul_lt_plans[matmul_lt_evict];
        matmul_lt_evict = (matmul_lt_evict + 1) % MATMUL_LT_PLANS;
        matmul_lt_plan_free(p);
    }
    p->M = M; p->K = K; p->N = N;
    memcpy(p->align, align, sizeof(align));
    cublasCheck(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE, CUDA_R_32F));
    const int32_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(opT)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(opN)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    // the heuristic reads the bias pointer's alignment (it does not dereference it)
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->la, CUBLAS_FLOATX, K, N, K));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->lb, CUBLAS_FLOATX, K, M, K));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->ld, CUBLAS_FLOATX, N, M, N));

    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t workspace = MATMUL_LT_WORKSPACE_BYTES;
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                     sizeof(workspace)));
    const cublasLtMatmulPreferenceAttributes_t align_attr[3] = {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                                CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                                CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES};
    for (int i = 0; i < 3; i++) {
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, align_attr[i], &align[i], sizeof(align[i])));
    }
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align[2],
                                                     sizeof(align[2])));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(matmul_lt_handle, p->desc, p->la, p->lb, p->ld, p->ld, pref,
                                                           1, &heur, &found);
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    // none: the GEMM without epilogue, then the bias in a pass of its own (slower, still correct; said once)
    p->fallback = status != CUBLAS_STATUS_SUCCESS || found == 0;
    if (p->fallback) {
        static int said = 0;
        if (!said) {
            printf("note: cuBLASLt has no bias epilogue for out (%d,%d) = inp (%d,%d) @ weight (%d,%d)^T + bias "
                   "(%s; alignments weight %u inp %u out %u bias %u bytes; status %d): the bias is a separate pass\n",
                   M, N, M, K, N, K, CUBLAS_FLOATX == CUDA_R_32F ? "fp32" : "bf16", align[0], align[1], align[2],
                   align[3], (int)status);
            said = 1;
        }
    } else {
        p->algo = heur.algo;
    }
    return p;
}

// ----------------------------------------------------------------------------
// the matmuls

// out (N,OC) += bias (OC): only where cuBLASLt offers no bias epilogue (matmul_lt_plan says so)
__global__ void add_bias_kernel(floatX *out, const floatX *bias, int N, int OC) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)N * OC) { return; }
    out[idx] = from_float<floatX>(to_float(out[idx]) + to_float(bias[idx % OC]));
}

// out (M,N) = inp (M,K) @ weight (N,K)^T (+ bias (N)), floatX in and out, fp32 accumulation;
// the bias (floatX: the trainer passes its floatX copy) is added to the fp32 sum before the one
// rounding to floatX (cuBLASLt's epilogue).
// cuBLAS is column-major: the row-major out (M,N) is the column-major out^T (N,M) = weight . inp^T
static inline void matmul_forward(floatX *out, const floatX *inp, const floatX *weight, const floatX *bias, int M,
                                  int K, int N) {
    const float one = 1.0f, zero = 0.0f;
    MatmulLtPlan *p = bias != NULL ? matmul_lt_plan(out, inp, weight, bias, M, K, N) : NULL;
    if (p == NULL || p->fallback) {
        cublasCheck(cublasGemmEx(cublas_handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, weight, CUBLAS_FLOATX, K,
                                 inp, CUBLAS_FLOATX, K, &zero, out, CUBLAS_FLOATX, N, CUBLAS_COMPUTE,
                                 CUBLAS_GEMM_DEFAULT));
        if (p != NULL) {
            add_bias_kernel<<<ceil_div((long long)M * N, 256), 256>>>(out, bias, M, N);
            cudaCheck(cudaGetLastError());
        }
        return;
    }
    // the bias pointer is an attribute of the descriptor: set on every call (host only, no GPU work)
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    cublasCheck(cublasLtMatmul(matmul_lt_handle, p->desc, &one, weight, p->la, inp, p->lb, &zero, out, p->ld, out,
                               p->ld, &p->algo, matmul_lt_workspace, MATMUL_LT_WORKSPACE_BYTES, 0));
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
