/*
 llmc/encoder.cuh: the token + position embeddings, forward and backward, on the GPU.
 Spec: encoder_forward and encoder_backward in train_gpt2_1bit.c.

   forward:  out (B,T,C) = wte[inp[b,t]] + wpe[t]                 wte (V,C), wpe (maxT,C) fp32
   backward: dwte[token] += sum of dout over the positions holding that token
             dwpe[t]     += sum over b of dout[b,t]                 dout (B,T,C) floatX, dwte/dwpe fp32
 No atomics: encoder_bucket_tokens groups the positions by token on the host (a counting
 sort), and one block sums each token's rows in a fixed order, so the result is the same
 run after run.
*/
#ifndef LLMC_ENCODER_CUH
#define LLMC_ENCODER_CUH

#include <string.h>
#include "cuda_common.h" // defines: floatX, to_float, from_float, ceil_div, cudaCheck

// ----------------------------------------------------------------------------
// kernels

// out (B,T,C) = wte[inp[b,t]] + wpe[t], from the fp32 weights (one rounding, not three)
__global__ void encoder_forward_kernel(floatX *out, const int *inp, const float *wte, const float *wpe,
                                       int BT, int T, int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)BT * C) { return; }
    int bt = (int)(idx / C), c = (int)(idx % C), t = bt % T;
    out[idx] = from_float<floatX>(wte[(size_t)inp[bt] * C + c] + wpe[(size_t)t * C + c]);
}

// dwte[token] += the sum of dout over the positions holding that token. The
// positions are bucketed by token on the host (bucket_start, bucket_pos), so
// each token's row is summed by one block in a fixed order: no atomics.
__global__ void encoder_backward_wte_kernel(float *dwte, const floatX *dout, const int *bucket_token,
                                            const int *bucket_start, const int *bucket_pos, int C) {
    int b = blockIdx.x;
    int token = bucket_token[b], start = bucket_start[b], end = bucket_start[b + 1];
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float sum = 0.0f;
        for (int i = start; i < end; i++) { sum += to_float(dout[(size_t)bucket_pos[i] * C + c]); }
        dwte[(size_t)token * C + c] += sum;
    }
}

// dwpe[t] += sum over b of dout[b,t]
__global__ void encoder_backward_wpe_kernel(float *dwpe, const floatX *dout, int B, int T, int C) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= T * C) { return; }
    float sum = 0.0f;
    for (int b = 0; b < B; b++) { sum += to_float(dout[(size_t)b * T * C + idx]); }
    dwpe[idx] += sum;
}

// ----------------------------------------------------------------------------
// launchers

static inline void encoder_forward(floatX *out, const int *inp, const float *wte, const float *wpe, int B, int T,
                                   int C) {
    size_t n = (size_t)B * T * C;
    encoder_forward_kernel<<<ceil_div((long long)n, 256), 256>>>(out, inp, wte, wpe, B * T, T, C);
    cudaCheck(cudaGetLastError());
}

// Group the BT positions of inp (host, (B,T)) by token, positions in increasing order within
// a token, and upload them for encoder_backward. count (V+1) and work (3*BT+1) are host
// scratch; bucket_token (BT), bucket_start (BT+1), bucket_pos (BT) are on the device.
// Returns the number of buckets (distinct tokens).
static inline int encoder_bucket_tokens(int *bucket_token, int *bucket_start, int *bucket_pos, const int *inp,
                                        int BT, int V, int *count, int *work) {
    int *pos = work, *token = pos + BT, *start = token + BT;
    memset(count, 0, ((size_t)V + 1) * sizeof(int));
    for (int i = 0; i < BT; i++) { count[inp[i] + 1]++; }
    for (int v = 0; v < V; v++) { count[v + 1] += count[v]; } // count[v] = first slot of token v
    int nb = 0;
    for (int v = 0; v < V; v++) {
        if (count[v + 1] > count[v]) { token[nb] = v; start[nb] = count[v]; nb++; }
    }
    start[nb] = BT;
    for (int i = 0; i < BT; i++) { pos[count[inp[i]]++] = i; }
    cudaCheck(cudaMemcpy(bucket_pos, pos, (size_t)BT * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(bucket_token, token, (size_t)nb * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(bucket_start, start, (size_t)(nb + 1) * sizeof(int), cudaMemcpyHostToDevice));
    return nb;
}

// dwte, dwpe += the embeddings' gradients from dout (B,T,C), with the num_buckets buckets
// of encoder_bucket_tokens
static inline void encoder_backward(float *dwte, float *dwpe, const floatX *dout, const int *bucket_token,
                                    const int *bucket_start, const int *bucket_pos, int num_buckets, int B, int T,
                                    int C) {
    encoder_backward_wte_kernel<<<num_buckets, 256>>>(dwte, dout, bucket_token, bucket_start, bucket_pos, C);
    cudaCheck(cudaGetLastError());
    encoder_backward_wpe_kernel<<<ceil_div((long long)T * C, 256), 256>>>(dwpe, dout, B, T, C);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_ENCODER_CUH
