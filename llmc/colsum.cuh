/*
 llmc/colsum.cuh: column sums of a (N, n) floatX matrix into fp32, in a fixed order: the bias
 gradients (matmul_backward) and the LayerNorm parameter gradients (layernorm_backward).
 Spec: the `dbias[o] += dout[...]` loops of matmul_backward and layernorm_backward in
 train_gpt2_1bit.c (which add the rows in order; here in chunks, then the chunks in order).

 Stage 1 sums rows in chunks of COLSUM_ROWS into partial (nchunks, n); stage 2 adds the
 chunks in order into the fp32 gradient. Threads of a block take consecutive columns, so
 every row read is coalesced. No atomics: the same inputs give the same bits.
*/
#ifndef LLMC_COLSUM_CUH
#define LLMC_COLSUM_CUH

#include "cuda_common.h" // defines: floatX, to_float, ceil_div, cudaCheck

#define COLSUM_ROWS 256
// partial[chunk, j] = sum over the chunk's rows of dout[row, j]; dout (N, n)
__global__ void colsum_partial_kernel(float *partial, const floatX *dout, int N, int n) {
    int j = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (j >= n) { return; }
    int r0 = chunk * COLSUM_ROWS, r1 = min(N, r0 + COLSUM_ROWS);
    float sum = 0.0f;
    for (int r = r0; r < r1; r++) { sum += to_float(dout[(size_t)r * n + j]); }
    partial[(size_t)chunk * n + j] = sum;
}

// out[j] += sum over chunks of partial[chunk, j]
__global__ void colsum_finalize_kernel(float *out, const float *partial, int nchunks, int n) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) { return; }
    float sum = 0.0f;
    for (int c = 0; c < nchunks; c++) { sum += partial[(size_t)c * n + j]; }
    out[j] += sum;
}

// out (n) += the column sums of dout (N, n); partial holds ceil(N / COLSUM_ROWS) * n floats
static inline void colsum_backward(float *out, float *partial, const floatX *dout, int N, int n) {
    int nchunks = ceil_div(N, COLSUM_ROWS);
    colsum_partial_kernel<<<dim3(ceil_div(n, 256), nchunks), 256>>>(partial, dout, N, n);
    cudaCheck(cudaGetLastError());
    colsum_finalize_kernel<<<ceil_div((long long)n, 256), 256>>>(out, partial, nchunks, n);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_COLSUM_CUH
