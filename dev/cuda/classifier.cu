/*
 classifier: the classifier head's softmax, cross-entropy and logits gradient, fused, in place:
     losses[n]  = -log softmax(logits[n])[target[n]]                    logits (N, Vp) floatX, V real
     logits[n] <- (softmax(logits[n]) - onehot(target[n])) * dloss      (training; 0 in the padding)
 The spec is softmax_forward, crossentropy_forward and crossentropy_softmax_backward in
 train_gpt2_1bit.c. At GPT-2 124M (B = 64, T = 1024) the logits are 6.6 GB in bf16, the largest
 tensor of the step: the kernel is bandwidth-bound, and the number of passes over a row is the cost.

 Build and run:
     make -C dev/cuda classifier && ./dev/cuda/classifier           all variants
     ./dev/cuda/classifier 2                                        variant 2 (and 1)
     DEV_CUDA_SMALL=1 ./dev/cuda/classifier                         small mode (the emulator)

 Variants:
     1  three passes over the row (max; sum of exp; dlogits), scalar loads, one block of 512 threads
        a row (the trainer's kernel before issue 13)
     2  shipped (llmc/fused_classifier.cuh, fused_classifier): two passes, the max and the sum
        together by the online softmax (Milakov & Gimelshein 2018) and the dlogits pass; 128-bit
        loads and stores where the rows are whole aligned vectors, a scalar tail; 1024 threads

 Validation: against the CPU reference in double: the losses to LOSS_ATOL, the dlogits to
 atol + rtol * |ref| with the floatX rounding in rtol. Shapes (small mode): rows whose length is
 whole vectors plus a tail (V = 250 of Vp = 256), rows that are not 16-byte aligned (Vp = 61: the
 scalar path), and a longer row (V = 1000 of 1024); targets at the first, the last real and the
 tail's positions among random ones.
 Timing: training mode (dlogits written), at N = 8192 rows of GPT-2's vocabulary; GB/s counts
 one read and one write of the logits, the least any kernel can move.
*/
#include "common.h"                 // defines: harness (random inputs, validation, timing, results); includes llmc/ headers
#include "llmc/fused_classifier.cuh" // defines: fused_classifier (variant 2, what the trainer runs)

// the loss is ~log(V) <= 11 from fp32 sums of V exps: their rounding, with a margin
#define LOSS_ATOL 1e-5
#ifdef ENABLE_FP32
#define DLOGITS_RTOL 1e-4
#else
#define DLOGITS_RTOL 8e-3 // bf16 output: 2^-9 relative rounding, with the fp32 expf and sum errors
#endif
#define DLOGITS_ATOL 1e-8

// ----------------------------------------------------------------------------
// CPU reference, in double

static void classifier_cpu(double *losses, double *dlogits, const floatX *logits, const int *targets, int N, int V,
                           int Vp, double dloss) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const floatX *l = logits + (size_t)n * Vp;
        double m = -INFINITY, s = 0.0;
        for (int i = 0; i < V; i++) { m = fmax(m, (double)to_float(l[i])); }
        for (int i = 0; i < V; i++) { s += exp((double)to_float(l[i]) - m); }
        losses[n] = m + log(s) - to_float(l[targets[n]]);
        for (int i = 0; i < Vp; i++) {
            dlogits[(size_t)n * Vp + i] = i < V ? (exp((double)to_float(l[i]) - m) / s - (i == targets[n])) * dloss : 0.0;
        }
    }
}

// ----------------------------------------------------------------------------
// variant 1: three passes, 512 threads a row

__global__ void classifier_kernel1(floatX *logits, float *losses, const int *targets, int V, int Vp, float dloss,
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

static void classifier1(floatX *logits, float *losses, const int *targets, int N, int V, int Vp, float dloss,
                        int write_dlogits) {
    classifier_kernel1<<<N, 512>>>(logits, losses, targets, V, Vp, dloss, write_dlogits);
    cudaCheck(cudaGetLastError());
}

// dispatcher (variant 2: the trainer's launcher)
static void classifier(int k, floatX *logits, float *losses, const int *targets, int N, int V, int Vp, float dloss,
                       int write_dlogits) {
    switch (k) {
    case 1: classifier1(logits, losses, targets, N, V, Vp, dloss, write_dlogits); break;
    case 2: fused_classifier(logits, losses, targets, N, V, Vp, dloss, write_dlogits); break;
    default: fprintf(stderr, "no variant %d\n", k); exit(EXIT_FAILURE);
    }
}

static const char *variant_name(int k) { return k == 1 ? "1 three passes, scalar" : "2 shipped: online, x128"; }

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    const int num_kernels = 3;
    int only = parse_kernel_num(argc, argv, num_kernels);
    common_start("classifier: (N, Vp) " PRECISION_NAME " logits -> losses, dlogits in place");
    rng_seed(1337);
    const int small = small_mode();
    const int N = small ? 37 : 8192;
    const int Vs_small[] = {250, 61, 1000}, Vps_small[] = {256, 61, 1024};
    const int Vs_gpu[] = {50257}, Vps_gpu[] = {50304};
    const int *Vs = small ? Vs_small : Vs_gpu, *Vps = small ? Vps_small : Vps_gpu, nV = small ? 3 : 1;
    const int Vpmax = small ? 1024 : 50304;
    const float dloss = 1.0f / 64.0f; // 1/(B*T) in training; a power of two, so exact in any precision
    double copy_gbs = small ? 0.0 : measure_copy_bandwidth(256u << 20);

    size_t nmax = (size_t)N * Vpmax;
    floatX *logits = (floatX *)mallocCheck(nmax * sizeof(floatX));
    int *targets = (int *)mallocCheck(N * sizeof(int));
    double *loss_ref = (double *)mallocCheck(N * sizeof(double)), *dl_ref = (double *)mallocCheck(nmax * sizeof(double));
    floatX *d_logits = (floatX *)cudaMallocCheck(nmax * sizeof(floatX), "logits");
    float *d_losses = (float *)cudaMallocCheck(N * sizeof(float), "losses");
    int *d_targets = (int *)cudaMallocCheck(N * sizeof(int), "targets");

    for (int vi = 0; vi < nV; vi++) {
        int V = Vs[vi], Vp = Vps[vi];
        size_t n_el = (size_t)N * Vp;
        // logits of GPT-2's early-training scale (a few units), the padding garbage (must be ignored)
        for (size_t i = 0; i < n_el; i++) {
            logits[i] = from_float<floatX>(i % Vp < (size_t)V ? rng_uniform(-4.0f, 4.0f) : 1e4f);
        }
        for (int n = 0; n < N; n++) { targets[n] = (int)(rng_u32() % (uint32_t)V); }
        targets[0] = 0;
        targets[1] = V - 1;                       // the last real logit (in the tail when V % x128::size != 0)
        targets[2] = (V / x128::size) * x128::size < V ? (V / x128::size) * x128::size : V - 1; // the tail's first
        classifier_cpu(loss_ref, dl_ref, logits, targets, N, V, Vp, dloss);
        cudaCheck(cudaMemcpy(d_targets, targets, N * sizeof(int), cudaMemcpyHostToDevice));
        for (int k = 1; k < num_kernels; k++) {
            if (only > 0 && k != only && k != 1) { continue; }
            for (int write = 0; write <= 1; write++) {
                cudaCheck(cudaMemcpy(d_logits, logits, n_el * sizeof(floatX), cudaMemcpyHostToDevice));
                cudaCheck(cudaMemset(d_losses, 0, N * sizeof(float)));
                classifier(k, d_logits, d_losses, d_targets, N, V, Vp, dloss, write);
                cudaCheck(cudaDeviceSynchronize());
                float *losses = from_device(d_losses, N);
                validate_close(write ? "losses (training)" : "losses (eval)", losses, loss_ref, N, LOSS_ATOL, 0.0);
                floatX *out = from_device(d_logits, n_el);
                if (write) {
                    validate_close("dlogits", out, dl_ref, n_el, DLOGITS_ATOL, DLOGITS_RTOL);
                } else {
                    validate_exact("logits untouched (eval)", out, logits, n_el);
                }
                free(losses);
                free(out);
            }
            printf("  variant %d, N %d, V %d, Vp %d: losses and dlogits within tolerance, eval mode leaves the logits\n",
                   k, N, V, Vp);
        }
    }
    printf("All results match\n\n");

    for (int vi = 0; vi < (small ? 0 : nV); vi++) {
        int V = Vs[vi], Vp = Vps[vi];
        char shape[40];
        snprintf(shape, sizeof(shape), "(%d, %d) %s", N, Vp, PRECISION_NAME);
        double bytes = 2.0 * N * Vp * sizeof(floatX); // one read, one write: the floor
        double ms1 = 0.0;
        for (int k = 1; k < num_kernels; k++) {
            if (only > 0 && k != only && k != 1) { continue; }
            double ms = benchmark_ms([&]() { classifier(k, d_logits, d_losses, d_targets, N, V, Vp, dloss, 1); });
            if (k == 1) { ms1 = ms; }
            char ratio[24];
            snprintf(ratio, sizeof(ratio), "%.0f%% of copy, %.2fx v1", 100.0 * bytes / (ms * 1e-3) / 1e9 / copy_gbs,
                     ms1 / ms);
            result_line("classifier", shape, variant_name(k), k == 1 ? 512 : CLASSIFIER_BLOCK, ms,
                        bytes / (ms * 1e-3) / 1e9, "GB/s", ratio);
        }
    }
    if (!small) { print_results_table(); }

    free(logits); free(targets); free(loss_ref); free(dl_ref);
    cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_losses)); cudaCheck(cudaFree(d_targets));
    return 0;
}
