/*
 gelu: GELU (tanh approximation, as GPT-2), forward and backward, elementwise:
     forward:  out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
     backward: dinp = gelu'(x) * dout   (in place over dout, as the trainer calls it)
 The spec is gelu_forward and gelu_backward in train_gpt2_1bit.c. Bandwidth-bound: at d12,
 B = 64, T = 1024 the MLP's (B,T,4C) is 201M values a layer.

 Build and run:
     make -C dev/cuda gelu && ./dev/cuda/gelu          all variants
     DEV_CUDA_SMALL=1 ./dev/cuda/gelu                  small mode (the emulator)

 Variants:
     1  a thread per value, scalar accesses (the trainer before issue 13)
     2  shipped (llmc/gelu.cuh): a thread per 128-bit vector (8 bf16, 4 fp32), the last N % 8 (4)
        values one by one; unaligned pointers fall back to one value at a time

 Validation: against the CPU in double to atol + rtol (the floatX rounding of the output).
 Small mode: N = 1003 (a tail of 3 in bf16, 3 in fp32), aligned, and from pointers one value in
 (not 16-byte aligned: the scalar fallback); the backward in place (dinp = dout).
*/
#include "common.h"       // defines: harness (random inputs, validation, timing, results); includes llmc/ headers
#include "llmc/gelu.cuh"  // defines: gelu_forward, gelu_backward (variant 2)

#ifdef ENABLE_FP32
#define GELU_RTOL 1e-5
#else
#define GELU_RTOL 8e-3 // bf16 output: 2^-9 relative rounding
#endif
#define GELU_ATOL 1e-6

// ----------------------------------------------------------------------------
// CPU reference, in double

static double gelu_cpu(double x) { return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
static double gelu_grad_cpu(double x) {
    double t = tanh(0.7978845608028654 * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + x * 0.5 * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}

// ----------------------------------------------------------------------------
// variant 1: a thread per value

__global__ void gelu_forward_kernel1(floatX *out, const floatX *inp, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    float x = to_float(inp[i]);
    out[i] = from_float<floatX>(0.5f * x * (1.0f + tanhf(GELU_SCALING_FACTOR * (x + 0.044715f * x * x * x))));
}

__global__ void gelu_backward_kernel1(floatX *dinp, const floatX *inp, const floatX *dout, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    float x = to_float(inp[i]);
    float t = tanhf(GELU_SCALING_FACTOR * (x + 0.044715f * x * x * x));
    float g = 0.5f * (1.0f + t) + x * 0.5f * (1.0f - t * t) * GELU_SCALING_FACTOR * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = from_float<floatX>(g * to_float(dout[i]));
}

static void gelu_fwd(int k, floatX *out, const floatX *inp, size_t N) {
    if (k == 1) {
        gelu_forward_kernel1<<<ceil_div((long long)N, 256), 256>>>(out, inp, N);
        cudaCheck(cudaGetLastError());
    } else {
        gelu_forward(out, inp, N);
    }
}

static void gelu_bwd(int k, floatX *dinp, const floatX *inp, const floatX *dout, size_t N) {
    if (k == 1) {
        gelu_backward_kernel1<<<ceil_div((long long)N, 256), 256>>>(dinp, inp, dout, N);
        cudaCheck(cudaGetLastError());
    } else {
        gelu_backward(dinp, inp, dout, N);
    }
}

static const char *variant_name(int k) { return k == 1 ? "1 thread per value" : "2 shipped: x128"; }

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    const int num_kernels = 3;
    int only = parse_kernel_num(argc, argv, num_kernels);
    common_start("gelu: forward and backward, elementwise, " PRECISION_NAME);
    rng_seed(1337);
    const int small = small_mode();
    const size_t N = small ? 1003 : (size_t)64 * 1024 * 4 * 768; // (B,T,4C) of d12 at B = 64, T = 1024
    double copy_gbs = small ? 0.0 : measure_copy_bandwidth(256u << 20);

    // one spare value in front, for the unaligned runs
    floatX *inp = (floatX *)mallocCheck((N + 1) * sizeof(floatX)), *dout = (floatX *)mallocCheck((N + 1) * sizeof(floatX));
    for (size_t i = 0; i < N + 1; i++) {
        inp[i] = from_float<floatX>(rng_uniform(-5.0f, 5.0f));
        dout[i] = from_float<floatX>(rng_uniform(-1.0f, 1.0f));
    }
    double *fwd_ref = (double *)mallocCheck((N + 1) * sizeof(double)), *bwd_ref = (double *)mallocCheck((N + 1) * sizeof(double));
    for (size_t i = 0; i < N + 1; i++) {
        fwd_ref[i] = gelu_cpu(to_float(inp[i]));
        bwd_ref[i] = gelu_grad_cpu(to_float(inp[i])) * to_float(dout[i]);
    }
    floatX *d_inp = to_device(inp, N + 1), *d_dout0 = to_device(dout, N + 1);
    floatX *d_out = (floatX *)cudaMallocCheck((N + 1) * sizeof(floatX), "out");
    floatX *d_d = (floatX *)cudaMallocCheck((N + 1) * sizeof(floatX), "dout, dinp in place");

    for (int k = 1; k < num_kernels; k++) {
        if (only > 0 && k != only && k != 1) { continue; }
        for (int shift = 0; shift <= (small ? 1 : 0); shift++) { // 1: the arrays one value in, not aligned
            size_t n = N - shift;
            cudaCheck(cudaMemset(d_out, 0xff, (N + 1) * sizeof(floatX)));
            gelu_fwd(k, d_out + shift, d_inp + shift, n);
            cudaCheck(cudaMemcpy(d_d, d_dout0, (N + 1) * sizeof(floatX), cudaMemcpyDeviceToDevice));
            gelu_bwd(k, d_d + shift, d_inp + shift, d_d + shift, n); // in place, as the trainer
            cudaCheck(cudaDeviceSynchronize());
            floatX *out = from_device(d_out, N + 1), *din = from_device(d_d, N + 1);
            validate_close("forward", out + shift, fwd_ref + shift, n, GELU_ATOL, GELU_RTOL);
            validate_close("backward, in place", din + shift, bwd_ref + shift, n, GELU_ATOL, GELU_RTOL);
            printf("  variant %d, N %zu, %s: forward and backward within tolerance\n", k, n,
                   shift ? "unaligned" : "aligned");
            free(out);
            free(din);
        }
    }
    printf("All results match\n\n");

    if (!small) {
        char shape[40];
        snprintf(shape, sizeof(shape), "%zu %s", N, PRECISION_NAME);
        for (int dir = 0; dir < 2; dir++) {
            double bytes = (dir == 0 ? 2.0 : 3.0) * N * sizeof(floatX); // forward: in, out; backward: inp, dout, dinp
            double ms1 = 0.0;
            for (int k = 1; k < num_kernels; k++) {
                if (only > 0 && k != only && k != 1) { continue; }
                double ms = benchmark_ms([&]() {
                    if (dir == 0) { gelu_fwd(k, d_out, d_inp, N); } else { gelu_bwd(k, d_d, d_inp, d_d, N); }
                });
                if (k == 1) { ms1 = ms; }
                char ratio[24];
                snprintf(ratio, sizeof(ratio), "%.0f%% of copy, %.2fx v1", 100.0 * bytes / (ms * 1e-3) / 1e9 / copy_gbs,
                         ms1 / ms);
                result_line(dir == 0 ? "gelu_forward" : "gelu_backward", shape, variant_name(k), 256, ms,
                            bytes / (ms * 1e-3) / 1e9, "GB/s", ratio);
            }
        }
        print_results_table();
    }

    free(inp); free(dout); free(fwd_ref); free(bwd_ref);
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_dout0)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_d));
    return 0;
}
