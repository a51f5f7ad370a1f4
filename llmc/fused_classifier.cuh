/*
 llmc/fused_classifier.cuh: the classifier head's softmax, cross-entropy loss and, in the
 same pass, the gradient of the logits written over the logits (no (B,T,Vp) probabilities).
 Spec: softmax_forward, crossentropy_forward and crossentropy_softmax_backward in
 train_gpt2_1bit.c.

   logits (N,Vp) floatX, of which the first V are real (the padding gets gradient 0)
   losses (N) = -log(softmax(logits)[target])
   with write_dlogits: logits <- (softmax - onehot(target)) * dloss   (dloss = 1/(B*T) / accum)
 One block of 512 threads per row (N = B*T rows).
*/
#ifndef LLMC_FUSED_CLASSIFIER_CUH
#define LLMC_FUSED_CLASSIFIER_CUH

#include <math.h>
#include "cuda_common.h" // defines: floatX, to_float, from_float, block_reduce_sum/max, cudaCheck

__global__ void classifier_kernel(floatX *logits, float *losses, const int *targets, int V, int Vp, float dloss,
                                  int write_dlogits) {
    __shared__ float shared[32];
    int row = blockIdx.x;
    floatX *l = logits + (size_t)row * Vp;
    float maxval = -1e30f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) { maxval = fmaxf(maxval, to_float(l[i])); }
    maxval = block_reduce_max(maxval, shared);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) { sum += expf(to_float(l[i]) - maxval); }
    sum = block_reduce_sum(sum, shared);
    int target = targets[row];
    float p_target = expf(to_float(l[target]) - maxval) / sum;
    __syncthreads(); // every thread has read l[target] before the row is overwritten
    if (threadIdx.x == 0) { losses[row] = -logf(p_target); }
    if (!write_dlogits) { return; }
    for (int i = threadIdx.x; i < Vp; i += blockDim.x) {
        float g = 0.0f;
        if (i < V) { g = (expf(to_float(l[i]) - maxval) / sum - (i == target ? 1.0f : 0.0f)) * dloss; }
        l[i] = from_float<floatX>(g);
    }
}

static inline void fused_classifier(floatX *logits, float *losses, const int *targets, int N, int V, int Vp,
                                    float dloss, int write_dlogits) {
    classifier_kernel<<<N, 512>>>(logits, losses, targets, V, Vp, dloss, write_dlogits);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_FUSED_CLASSIFIER_CUH
