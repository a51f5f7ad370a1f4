/*
 llmc/fused_classifier.cuh: the classifier head's softmax, cross-entropy loss and, in the
 same kernel, the gradient of the logits written over the logits (no (B,T,Vp) probabilities);
 and the mean of the losses, kept on the device.
 Spec: softmax_forward, crossentropy_forward and crossentropy_softmax_backward in
 train_gpt2_1bit.c (the mean: gpt2_forward's mean_loss there).

   logits (N,Vp) floatX, of which the first V are real (the padding gets gradient 0)
   losses (N) = -log(softmax(logits)[target]) = max + log(sum) - logits[target]
   with write_dlogits: logits <- (softmax - onehot(target)) * dloss   (dloss = 1/(B*T) / accum)

 One block of CLASSIFIER_BLOCK threads per row (N = B*T rows), two passes over the row:
   1. max and sum together, online (Milakov & Gimelshein 2018, "Online normalizer calculation
      for softmax"): a running max m and sum s = sum exp(x - m), rescaled by exp(m_old - m_new)
      when the max grows; the threads' (m, s) pairs are merged the same way, in a fixed tree;
   2. (training only) dlogits written in place.
 A row is read twice and written once (the dlogits pass's read mostly hits L2: the rows of the
 blocks in flight, 264 x 100 KB at d12 on an H100, fit in its 50 MB). The earlier kernel read it
 three times (max, sum, dlogits). Accesses are 128-bit where the rows start 16-byte aligned
 (Vp a multiple of x128::size: 8 in bf16, 4 in fp32), with a scalar loop over a row's tail.
*/
#ifndef LLMC_FUSED_CLASSIFIER_CUH
#define LLMC_FUSED_CLASSIFIER_CUH

#include <math.h>
#include "cuda_common.h" // defines: floatX, x128, load128, store128, to_float, from_float, block_reduce_sum

#define CLASSIFIER_BLOCK 1024 // threads per row: Vp = 50304 in bf16 is 6288 vectors, about 6 a thread
#define LOSS_MEAN_BLOCK 1024  // the one block that averages the (B,T) losses

// ----------------------------------------------------------------------------
// the online softmax normalizer: (m, s) with s = sum over the values seen of exp(x - m)

struct SoftmaxParams {
    float m, s;
};

// (m, s) after the values with max mb and sum sb (relative to mb) join those of (m, s)
__device__ static inline SoftmaxParams softmax_merge(SoftmaxParams a, float mb, float sb) {
    float m = fmaxf(a.m, mb);
    if (m == -INFINITY) { return a; } // both empty: exp(-inf - -inf) would be NaN
    return SoftmaxParams{m, a.s * expf(a.m - m) + sb * expf(mb - m)};
}

// merge over the block (blockDim.x a multiple of 32) in a fixed tree; every thread gets the result
__device__ static inline SoftmaxParams block_softmax_merge(SoftmaxParams p, float *shared_m, float *shared_s) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    for (int off = 16; off > 0; off >>= 1) {
        float mo = __shfl_xor_sync(0xffffffffu, p.m, off), so = __shfl_xor_sync(0xffffffffu, p.s, off);
        p = softmax_merge(p, mo, so);
    }
    if (lane == 0) { shared_m[warp] = p.m; shared_s[warp] = p.s; }
    __syncthreads(); // every warp's pair written
    p = lane < nwarps ? SoftmaxParams{shared_m[lane], shared_s[lane]} : SoftmaxParams{-INFINITY, 0.0f};
    for (int off = 16; off > 0; off >>= 1) {
        float mo = __shfl_xor_sync(0xffffffffu, p.m, off), so = __shfl_xor_sync(0xffffffffu, p.s, off);
        p = softmax_merge(p, mo, so);
    }
    return p;
}

// ----------------------------------------------------------------------------
// kernels

__global__ void __launch_bounds__(CLASSIFIER_BLOCK)
fused_classifier_kernel(floatX *logits, float *losses, const int *targets, int V, int Vp, float dloss,
                        int write_dlogits) {
    __shared__ float shared_m[32];
    __shared__ float shared_s[32];
    int row = blockIdx.x;
    floatX *l = logits + (size_t)row * Vp;
    // 128-bit accesses when every row starts aligned; nv whole vectors hold real logits
    int vec = is_aligned128(logits) && Vp % x128::size == 0;
    int nv = vec ? V / x128::size : 0;
    int target = targets[row];
    // read before the barriers of the merge, so before any thread overwrites the row
    float x_target = threadIdx.x == 0 ? to_float(l[target]) : 0.0f;

    // pass 1: max and sum, online; a vector's values are first reduced among themselves
    SoftmaxParams p = {-INFINITY, 0.0f};
    for (int v = threadIdx.x; v < nv; v += blockDim.x) {
        x128 in = load128(l + (size_t)v * x128::size);
        float mv = -INFINITY;
        for (int k = 0; k < x128::size; k++) { mv = fmaxf(mv, to_float(in[k])); }
        float sv = 0.0f;
        for (int k = 0; k < x128::size; k++) { sv += expf(to_float(in[k]) - mv); }
        p = softmax_merge(p, mv, sv);
    }
    for (int i = nv * x128::size + threadIdx.x; i < V; i += blockDim.x) { // the tail (all of it if !vec)
        p = softmax_merge(p, to_float(l[i]), 1.0f);
    }
    p = block_softmax_merge(p, shared_m, shared_s);
    if (threadIdx.x == 0) { losses[row] = p.m + logf(p.s) - x_target; }
    if (!write_dlogits) { return; }

    // pass 2: dlogits = (softmax - onehot(target)) * dloss over all Vp (0 in the padding), in place
    float inv_s = 1.0f / p.s;
    int nvp = vec ? Vp / x128::size : 0;
    for (int v = threadIdx.x; v < nvp; v += blockDim.x) {
        floatX *lv = l + (size_t)v * x128::size;
        x128 in = load128(lv), out;
        for (int k = 0; k < x128::size; k++) {
            int i = v * x128::size + k;
            float g = i < V ? (expf(to_float(in[k]) - p.m) * inv_s - (i == target ? 1.0f : 0.0f)) * dloss : 0.0f;
            out[k] = from_float<floatX>(g);
        }
        store128(lv, out);
    }
    for (int i = nvp * x128::size + threadIdx.x; i < Vp; i += blockDim.x) {
        float g = i < V ? (expf(to_float(l[i]) - p.m) * inv_s - (i == target ? 1.0f : 0.0f)) * dloss : 0.0f;
        l[i] = from_float<floatX>(g);
    }
}

// mean (1 float) = the mean of losses (N), summed in double in a fixed order (the result does not
// depend on the GPU); with sum != NULL also *sum += mean (double), the running sum of the means
// of the forward passes since the caller last zeroed it (a step's micro-batches, a validation)
__global__ void __launch_bounds__(LOSS_MEAN_BLOCK)
loss_mean_kernel(float *mean, double *sum, const float *losses, int N) {
    __shared__ double shared[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) { s += losses[i]; }
    s = block_reduce_sum(s, shared);
    if (threadIdx.x == 0) {
        float m = (float)(s / N);
        *mean = m;
        if (sum != NULL) { *sum += m; }
    }
}

// ----------------------------------------------------------------------------
// launchers

static inline void fused_classifier(floatX *logits, float *losses, const int *targets, int N, int V, int Vp,
                                    float dloss, int write_dlogits) {
    fused_classifier_kernel<<<N, CLASSIFIER_BLOCK>>>(logits, losses, targets, V, Vp, dloss, write_dlogits);
    cudaCheck(cudaGetLastError());
}

// *mean = the mean of losses (N), and *sum += it when sum is not NULL; all on the device, no sync
static inline void loss_mean(float *mean, double *sum, const float *losses, int N) {
    loss_mean_kernel<<<1, LOSS_MEAN_BLOCK>>>(mean, sum, losses, N);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_FUSED_CLASSIFIER_CUH
