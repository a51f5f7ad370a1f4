/*
 tests/cuda_emu/include/cublasLt.h: the cuBLASLt calls the project makes (a matmul
 with a bias epilogue: llmc/matmul.cuh's matmul_forward, dev/cuda/bitlinear_forward.cu
 variant 0), written from the cuBLASLt documentation (and the comments of cublasLt.h):
   D = alpha * op(A) op(B) + beta * C, then the epilogue; column-major layouts
   (rows, cols, ld); with CUBLASLT_EPILOGUE_BIAS, bias[i] (a packed vector with one
   element per row of D) is added to every column before D is rounded to its type; the
   bias has D's type (CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE may only repeat it here: another type is
   for fp8 matmuls, and an H200 refused an fp32 bias with bf16 D).
 Products accumulate in fp32 (CUBLAS_COMPUTE_32F) through the cuBLAS stand-in. Only what
 the project uses is supported: fp32 or bf16 A and B of one type, C and D of one type
 (fp32 or A's), compute and scale type fp32, epilogue DEFAULT or BIAS. The rules the real
 library enforces and the project relies on are checked, a violation reported as an error
 status: attribute sizes, layouts that agree with op(A) (m x k), op(B) (k x n), C and
 D (m x n), ld >= rows, a bias pointer for the BIAS epilogue, C == D only with equal layouts.
 Alignment: the heuristic may hand out an algorithm that assumes A, B, C and D are aligned to
 the CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES preferences (default 256), and the bias to
 the alignment of the bias pointer set when it was asked ("routines that don't dereference
 this pointer, like cublasLtMatmulAlgoGetHeuristic(), depend on its value to determine
 expected pointer alignment"). The stand-in's algorithm assumes exactly that and refuses a
 matmul whose pointers are less aligned, so a caller that asks with the defaults and then
 passes a view into a buffer fails here too, not only on a GPU. Its algorithm needs no
 workspace (workspaceSize 0).
*/
#ifndef CUDA_EMU_CUBLASLT_H
#define CUDA_EMU_CUBLASLT_H

#include "cublas_v2.h"

typedef struct EmuCublasLt *cublasLtHandle_t;
static struct EmuCublasLt { int dummy; } emu_cublaslt_handle;

typedef enum { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4 } cublasLtEpilogue_t;
typedef enum {
    CUBLASLT_MATMUL_DESC_TRANSA = 3,
    CUBLASLT_MATMUL_DESC_TRANSB = 4,
    CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
    CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,
} cublasLtMatmulDescAttributes_t;
typedef enum {
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
} cublasLtMatmulPreferenceAttributes_t;

struct EmuLtMatmulDesc {
    cublasComputeType_t compute;
    cudaDataType scale;
    int32_t transa, transb;
    uint32_t epilogue;
    const void *bias;
    int32_t bias_type; // -1: D's type
};
struct EmuLtLayout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};
struct EmuLtPreference {
    uint64_t max_workspace;
    uint32_t min_align[4]; // A, B, C, D in bytes (default 256)
};
typedef EmuLtMatmulDesc *cublasLtMatmulDesc_t;
typedef EmuLtLayout *cublasLtMatrixLayout_t;
typedef EmuLtPreference *cublasLtMatmulPreference_t;
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

static inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = &emu_cublaslt_handle; return CUBLAS_STATUS_SUCCESS; }
static inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    return h == NULL ? CUBLAS_STATUS_NOT_INITIALIZED : CUBLAS_STATUS_SUCCESS;
}

static inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                                      cudaDataType scale) {
    *d = (EmuLtMatmulDesc *)calloc(1, sizeof(EmuLtMatmulDesc));
    if (*d == NULL) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    (*d)->compute = compute;
    (*d)->scale = scale;
    (*d)->transa = (*d)->transb = CUBLAS_OP_N;
    (*d)->epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    (*d)->bias_type = -1;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { free(d); return CUBLAS_STATUS_SUCCESS; }

// every attribute has a type; a buffer of another size is an error, as in cuBLASLt
static inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                            const void *buf, size_t bytes) {
    if (d == NULL || buf == NULL) { return CUBLAS_STATUS_INVALID_VALUE; }
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
        if (bytes != sizeof(int32_t)) { return CUBLAS_STATUS_INVALID_VALUE; }
        int32_t op;
        memcpy(&op, buf, 4);
        if (op != CUBLAS_OP_N && op != CUBLAS_OP_T) { return CUBLAS_STATUS_INVALID_VALUE; }
        (a == CUBLASLT_MATMUL_DESC_TRANSA ? d->transa : d->transb) = op;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (bytes != sizeof(uint32_t)) { return CUBLAS_STATUS_INVALID_VALUE; }
        memcpy(&d->epilogue, buf, 4);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (bytes != sizeof(void *)) { return CUBLAS_STATUS_INVALID_VALUE; }
        memcpy(&d->bias, buf, sizeof(void *));
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        if (bytes != sizeof(int32_t)) { return CUBLAS_STATUS_INVALID_VALUE; }
        memcpy(&d->bias_type, buf, 4);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

static inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type, uint64_t rows,
                                                        uint64_t cols, int64_t ld) {
    *l = (EmuLtLayout *)calloc(1, sizeof(EmuLtLayout));
    if (*l == NULL) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    **l = EmuLtLayout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { free(l); return CUBLAS_STATUS_SUCCESS; }

static inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = (EmuLtPreference *)calloc(1, sizeof(EmuLtPreference));
    if (*p == NULL) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    for (int i = 0; i < 4; i++) { (*p)->min_align[i] = 256; }
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { free(p); return CUBLAS_STATUS_SUCCESS; }
static inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                                  cublasLtMatmulPreferenceAttributes_t a,
                                                                  const void *buf, size_t bytes) {
    if (p == NULL || buf == NULL) { return CUBLAS_STATUS_INVALID_VALUE; }
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) { // uint64_t
        if (bytes != sizeof(uint64_t)) { return CUBLAS_STATUS_INVALID_VALUE; }
        memcpy(&p->max_workspace, buf, 8);
        return CUBLAS_STATUS_SUCCESS;
    }
    if (a >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && a <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES) { // uint32_t
        uint32_t v;
        if (bytes != sizeof(uint32_t)) { return CUBLAS_STATUS_INVALID_VALUE; }
        memcpy(&v, buf, 4);
        if (v == 0 || (v & (v - 1)) != 0) { return CUBLAS_STATUS_INVALID_VALUE; } // a power of two
        p->min_align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = v;
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

// the largest power of two (at most 256) that divides a pointer: NULL is aligned to anything
static inline uint64_t emu_lt_alignment(const void *p) {
    uint64_t a = 256;
    while (a > 1 && (uintptr_t)p % a != 0) { a /= 2; }
    return a;
}

// the checks shared by the heuristic query and the matmul: dimensions and types
static inline cublasStatus_t emu_lt_check(cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                                          cublasLtMatrixLayout_t lc, cublasLtMatrixLayout_t ld) {
    if (d == NULL || la == NULL || lb == NULL || lc == NULL || ld == NULL) { return CUBLAS_STATUS_INVALID_VALUE; }
    uint64_t m = d->transa == CUBLAS_OP_N ? la->rows : la->cols, k = d->transa == CUBLAS_OP_N ? la->cols : la->rows;
    uint64_t kb = d->transb == CUBLAS_OP_N ? lb->rows : lb->cols, n = d->transb == CUBLAS_OP_N ? lb->cols : lb->rows;
    if (k != kb || lc->rows != m || lc->cols != n || ld->rows != m || ld->cols != n) {
        fprintf(stderr, "cuda_emu cuBLASLt: layouts disagree: op(A) %llux%llu, op(B) %llux%llu, C %llux%llu, D %llux%llu\n",
                (unsigned long long)m, (unsigned long long)k, (unsigned long long)kb, (unsigned long long)n,
                (unsigned long long)lc->rows, (unsigned long long)lc->cols, (unsigned long long)ld->rows,
                (unsigned long long)ld->cols);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const cublasLtMatrixLayout_t all[4] = {la, lb, lc, ld};
    for (int i = 0; i < 4; i++) {
        if (all[i]->ld < (int64_t)(all[i]->rows > 1 ? all[i]->rows : 1)) {
            fprintf(stderr, "cuda_emu cuBLASLt: ld %lld < rows %llu\n", (long long)all[i]->ld,
                    (unsigned long long)all[i]->rows);
            return CUBLAS_STATUS_INVALID_VALUE;
        }
    }
    if (d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F || (la->type != CUDA_R_32F && la->type != CUDA_R_16BF) ||
        lb->type != la->type || lc->type != ld->type || (ld->type != CUDA_R_32F && ld->type != la->type) ||
        (d->epilogue != CUBLASLT_EPILOGUE_DEFAULT && d->epilogue != CUBLASLT_EPILOGUE_BIAS)) {
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    // the bias in D's type: an fp32 bias with bf16 A, B and D was refused by the heuristic on an
    // H200 (cuBLAS of CUDA 13.0, 2026-11-28: CUBLAS_STATUS_INVALID_VALUE); the docs allow another
    // bias type for fp8 matmuls only
    if (d->bias_type != -1 && d->bias_type != (int32_t)ld->type) { return CUBLAS_STATUS_INVALID_VALUE; }
    return CUBLAS_STATUS_SUCCESS;
}

// one "algorithm" for every supported problem, needing no workspace; it records the alignments it
// assumes (data[1..4]: A, B, C, D from the preference; data[5]: the bias pointer's when asked)
static inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                                            cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                                                            cublasLtMatrixLayout_t lc, cublasLtMatrixLayout_t ld,
                                                            cublasLtMatmulPreference_t pref, int requested,
                                                            cublasLtMatmulHeuristicResult_t *results, int *returned) {
    if (h == NULL) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    if (pref == NULL || requested < 1 || results == NULL || returned == NULL) { return CUBLAS_STATUS_INVALID_VALUE; }
    *returned = 0;
    cublasStatus_t s = emu_lt_check(d, la, lb, lc, ld);
    if (s != CUBLAS_STATUS_SUCCESS) { return s; }
    memset(&results[0], 0, sizeof(results[0]));
    results[0].algo.data[0] = 0x454d55; // "EMU": marks an algorithm this stand-in handed out
    for (int i = 0; i < 4; i++) { results[0].algo.data[1 + i] = pref->min_align[i]; }
    results[0].algo.data[5] = emu_lt_alignment(d->bias);
    results[0].workspaceSize = 0;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.0f;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

static inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha,
                                            const void *A, cublasLtMatrixLayout_t la, const void *B,
                                            cublasLtMatrixLayout_t lb, const void *beta, const void *C,
                                            cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                                            const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes,
                                            cudaStream_t stream) {
    (void)workspace; (void)workspace_bytes; (void)stream; // the algorithm needs no workspace
    if (h == NULL) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    cublasStatus_t s = emu_lt_check(d, la, lb, lc, ld);
    if (s != CUBLAS_STATUS_SUCCESS) { return s; }
    if (alpha == NULL || beta == NULL || A == NULL || B == NULL || D == NULL) { return CUBLAS_STATUS_INVALID_VALUE; }
    if (algo != NULL && algo->data[0] != 0x454d55) { return CUBLAS_STATUS_INVALID_VALUE; }
    if (algo != NULL) { // the pointers must be as aligned as the algorithm was chosen for
        const void *ptrs[5] = {A, B, C, D, d->epilogue == CUBLASLT_EPILOGUE_BIAS ? d->bias : NULL};
        const char *names[5] = {"A", "B", "C", "D", "bias"};
        for (int i = 0; i < 5; i++) {
            if (ptrs[i] != NULL && emu_lt_alignment(ptrs[i]) < algo->data[1 + i]) {
                fprintf(stderr, "cuda_emu cuBLASLt: %s (%p) is %llu-byte aligned; the algorithm was chosen for %llu\n",
                        names[i], ptrs[i], (unsigned long long)emu_lt_alignment(ptrs[i]),
                        (unsigned long long)algo->data[1 + i]);
                return CUBLAS_STATUS_INVALID_VALUE;
            }
        }
    }
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS && d->bias == NULL) {
        fprintf(stderr, "cuda_emu cuBLASLt: the BIAS epilogue without CUBLASLT_MATMUL_DESC_BIAS_POINTER\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (C == (const void *)D && (lc->ld != ld->ld || lc->type != ld->type)) {
        fprintf(stderr, "cuda_emu cuBLASLt: C and D are one buffer with two layouts\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const int m = (int)ld->rows, n = (int)ld->cols, k = (int)(d->transa == CUBLAS_OP_N ? la->cols : la->rows);
    // alpha op(A) op(B) in fp32 (the cuBLAS stand-in), then beta C and the bias in fp32, one rounding to D's type
    float *acc = (float *)malloc(((size_t)m * n + 1) * sizeof(float));
    const float zero = 0.0f, be = *(const float *)beta;
    s = cublasGemmEx(&emu_cublas_handle, (cublasOperation_t)d->transa, (cublasOperation_t)d->transb, m, n, k, alpha, A,
                     la->type, (int)la->ld, B, lb->type, (int)lb->ld, &zero, acc, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) { free(acc); return s; }
    cudaDataType bias_type = d->bias_type == -1 ? ld->type : (cudaDataType)d->bias_type;
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            float v = acc[i + (size_t)j * m];
            if (be != 0.0f) { v += be * emu_load_float(C, lc->type, i + (size_t)j * lc->ld); } // beta = 0: C is not read
            if (d->epilogue == CUBLASLT_EPILOGUE_BIAS) { v += emu_load_float(d->bias, bias_type, i); }
            emu_store_float(D, ld->type, i + (size_t)j * ld->ld, v);
        }
    }
    free(acc);
    return CUBLAS_STATUS_SUCCESS;
}

#endif // CUDA_EMU_CUBLASLT_H
