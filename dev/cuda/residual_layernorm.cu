/*
 residual_layernorm: the residual add and the LayerNorm after it, GPT-2's forward between blocks:
     residual (N,C) = inp1 + inp2                        (rounded to floatX: the residual stream)
     out (N,C)      = (residual - mean) * rstd * weight + bias,  mean, rstd (N) kept for the backward
 The spec is residual_forward and layernorm_forward in train_gpt2_1bit.c. Bandwidth-bound.

 Build and run:
     make -C dev/cuda residual_layernorm && ./dev/cuda/residual_layernorm     all variants
     DEV_CUDA_SMALL=1 ./dev/cuda/residual_layernorm                           small mode (the emulator)

 Variants:
     1  two kernels, scalar accesses: residual_forward, then layernorm_forward re-reading the
        residual from memory (the trainer before issue 13)
     2  the same two kernels with 128-bit accesses (llmc/residual.cuh, llmc/layernorm.cuh)
     3  shipped: one kernel (llmc/layernorm.cuh, fused_residual_layernorm_forward): the residual
        summed as it is written, then read back by the same lanes (L1/L2, not DRAM); one launch

 Validation: the residual exactly (the floatX rounding of the fp32 sum: one rounding, any
 kernel); mean, rstd and out against the CPU in double to tolerances; and variant 3's outputs
 bit for bit equal to variant 2's (the fused kernel changes where the residual is read from, not
 the arithmetic). Shapes (small mode): C = 64 (whole 128-bit vectors), 38 (neither bf16 nor fp32
 rows are whole vectors: the scalar path) and 768; N = 37 rows, so N * C has a tail for the
 flat residual_forward (37 * 38 = 1406 = 175 * 8 + 6).
 Timing: GB/s counts the least traffic of the pair: read inp1, inp2; write residual, out.
*/
#include "common.h"            // defines: harness (random inputs, validation, timing, results); includes llmc/ headers
#include "llmc/residual.cuh"   // defines: residual_forward (variant 2)
#include "llmc/layernorm.cuh"  // defines: layernorm_forward (variant 2), fused_residual_layernorm_forward (3)

#ifdef ENABLE_FP32
#define OUT_RTOL 1e-5 // fp32 outputs: the sums' order
#else
#define OUT_RTOL 8e-3 // bf16 outputs: 2^-9 relative rounding, and a residual rounded to bf16
#endif
#define OUT_ATOL 1e-5
#define STATS_RTOL 1e-5 // mean, rstd: fp32 sums of C values in another order than the CPU's

// ----------------------------------------------------------------------------
// CPU reference, in double from the floatX inputs (the residual rounded to floatX first, as the spec)

static void residual_layernorm_cpu(floatX *residual, double *out, double *mean, double *rstd, const floatX *inp1,
                                   const floatX *inp2, const float *weight, const float *bias, int N, int C) {
    for (int n = 0; n < N; n++) {
        const size_t o = (size_t)n * C;
        double m = 0.0, v = 0.0;
        for (int i = 0; i < C; i++) {
            residual[o + i] = from_float<floatX>(to_float(inp1[o + i]) + to_float(inp2[o + i]));
            m += to_float(residual[o + i]);
        }
        m /= C;
        for (int i = 0; i < C; i++) { double d = to_float(residual[o + i]) - m; v += d * d; }
        double s = 1.0 / sqrt(v / C + 1e-5);
        for (int i = 0; i < C; i++) { out[o + i] = (to_float(residual[o + i]) - m) * s * weight[i] + bias[i]; }
        mean[n] = m;
        rstd[n] = s;
    }
}

// ----------------------------------------------------------------------------
// variant 1: the scalar kernels of the trainer before issue 13

__global__ void residual_forward_kernel1(floatX *out, const floatX *inp1, const floatX *inp2, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) { return; }
    out[i] = from_float<floatX>(to_float(inp1[i]) + to_float(inp2[i]));
}

__global__ void layernorm_forward_kernel1(floatX *out, float *mean, float *rstd, const floatX *inp,
                                          const float *weight, const float *bias, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) { return; }
    const floatX *x = inp + (size_t)row * C;
    float sum = 0.0f;
    for (int i = lane; i < C; i += 32) { sum += to_float(x[i]); }
    float m = warp_reduce_sum(sum) / C;
    float var = 0.0f;
    for (int i = lane; i < C; i += 32) { float d = to_float(x[i]) - m; var += d * d; }
    float s = 1.0f / sqrtf(warp_reduce_sum(var) / C + 1e-5f);
    floatX *o = out + (size_t)row * C;
    for (int i = lane; i < C; i += 32) { o[i] = from_float<floatX>((s * (to_float(x[i]) - m)) * weight[i] + bias[i]); }
    if (lane == 0) { mean[row] = m; rstd[row] = s; }
}

static void residual_layernorm(int k, floatX *residual, floatX *out, float *mean, float *rstd, const floatX *inp1,
                               const floatX *inp2, const float *weight, const float *bias, int N, int C) {
    switch (k) {
    case 1:
        residual_forward_kernel1<<<ceil_div((long long)N * C, 256), 256>>>(residual, inp1, inp2, (size_t)N * C);
        cudaCheck(cudaGetLastError());
        layernorm_forward_kernel1<<<ceil_div(N, 8), 256>>>(out, mean, rstd, residual, weight, bias, N, C);
        cudaCheck(cudaGetLastError());
        break;
    case 2:
        residual_forward(residual, inp1, inp2, (size_t)N * C);
        layernorm_forward(out, mean, rstd, residual, weight, bias, N, C);
        break;
    case 3: fused_residual_layernorm_forward(residual, out, mean, rstd, inp1, inp2, weight, bias, N, C); break;
    default: fprintf(stderr, "no variant %d\n", k); exit(EXIT_FAILURE);
    }
}

static const char *variant_name(int k) {
    return k == 1 ? "1 two kernels, scalar" : k == 2 ? "2 two kernels, x128" : "3 shipped: fused, x128";
}

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    const int num_kernels = 4;
    int only = parse_kernel_num(argc, argv, num_kernels);
    common_start("residual_layernorm: residual = inp1 + inp2, out = LayerNorm(residual), (N, C) " PRECISION_NAME);
    rng_seed(1337);
    const int small = small_mode();
    const int N = small ? 37 : 65536;
    const int Cs_small[] = {64, 38, 768}, Cs_gpu[] = {768};
    const int *Cs = small ? Cs_small : Cs_gpu, nC = small ? 3 : 1, Cmax = 768;
    double copy_gbs = small ? 0.0 : measure_copy_bandwidth(256u << 20);

    size_t nmax = (size_t)N * Cmax;
    floatX *inp1 = (floatX *)mallocCheck(nmax * sizeof(floatX)), *inp2 = (floatX *)mallocCheck(nmax * sizeof(floatX));
    for (size_t i = 0; i < nmax; i++) {
        inp1[i] = from_float<floatX>(rng_uniform(-2.0f, 3.0f)); // a nonzero mean, as the residual stream has
        inp2[i] = from_float<floatX>(rng_uniform(-1.0f, 1.0f));
    }
    float *weight = make_random_float(Cmax, 0.5f, 1.5f), *bias = make_random_float(Cmax, -0.5f, 0.5f);
    floatX *d_inp1 = to_device(inp1, nmax), *d_inp2 = to_device(inp2, nmax);
    float *d_weight = to_device(weight, Cmax), *d_bias = to_device(bias, Cmax);
    floatX *d_res = (floatX *)cudaMallocCheck(nmax * sizeof(floatX), "residual");
    floatX *d_out = (floatX *)cudaMallocCheck(nmax * sizeof(floatX), "out");
    float *d_mean = (float *)cudaMallocCheck(N * sizeof(float), "mean"), *d_rstd = (float *)cudaMallocCheck(N * sizeof(float), "rstd");
    floatX *res_ref = (floatX *)mallocCheck(nmax * sizeof(floatX));
    double *out_ref = (double *)mallocCheck(nmax * sizeof(double));
    double *mean_ref = (double *)mallocCheck(N * sizeof(double)), *rstd_ref = (double *)mallocCheck(N * sizeof(double));

    for (int ci = 0; ci < nC; ci++) {
        int C = Cs[ci];
        size_t n_el = (size_t)N * C;
        residual_layernorm_cpu(res_ref, out_ref, mean_ref, rstd_ref, inp1, inp2, weight, bias, N, C);
        floatX *out2 = NULL, *res2 = NULL;
        for (int k = 1; k < num_kernels; k++) {
            if (only > 0 && k != only && k != 1 && !(only == 3 && k == 2)) { continue; }
            cudaCheck(cudaMemset(d_res, 0xff, n_el * sizeof(floatX))); // stale output must not pass
            cudaCheck(cudaMemset(d_out, 0xff, n_el * sizeof(floatX)));
            residual_layernorm(k, d_res, d_out, d_mean, d_rstd, d_inp1, d_inp2, d_weight, d_bias, N, C);
            cudaCheck(cudaDeviceSynchronize());
            floatX *res = from_device(d_res, n_el), *out = from_device(d_out, n_el);
            float *mean = from_device(d_mean, N), *rstd = from_device(d_rstd, N);
            validate_exact("residual", res, res_ref, n_el);
            validate_close("mean", mean, mean_ref, N, 1e-6, STATS_RTOL);
            validate_close("rstd", rstd, rstd_ref, N, 0.0, STATS_RTOL);
            validate_close("out", out, out_ref, n_el, OUT_ATOL, OUT_RTOL);
            if (k == 2) { out2 = out; res2 = res; }
            if (k == 3 && out2 != NULL) {
                validate_exact("out, fused = two x128 kernels", out, out2, n_el);
                validate_exact("residual, fused = two x128 kernels", res, res2, n_el);
            }
            printf("  variant %d, N %d, C %d: residual exact, mean, rstd, out within tolerance%s\n", k, N, C,
                   k == 3 && out2 != NULL ? ", bit for bit variant 2's" : "");
            if (k != 2) { free(out); free(res); }
            free(mean);
            free(rstd);
        }
        free(out2);
        free(res2);
    }
    printf("All results match\n\n");

    for (int ci = 0; ci < (small ? 0 : nC); ci++) {
        int C = Cs[ci];
        char shape[40];
        snprintf(shape, sizeof(shape), "(%d, %d) %s", N, C, PRECISION_NAME);
        double bytes = 4.0 * N * C * sizeof(floatX) + 8.0 * N; // inp1, inp2 in; residual, out, mean, rstd out
        double ms1 = 0.0;
        for (int k = 1; k < num_kernels; k++) {
            if (only > 0 && k != only && k != 1) { continue; }
            double ms = benchmark_ms([&]() {
                residual_layernorm(k, d_res, d_out, d_mean, d_rstd, d_inp1, d_inp2, d_weight, d_bias, N, C);
            });
            if (k == 1) { ms1 = ms; }
            char ratio[24];
            snprintf(ratio, sizeof(ratio), "%.0f%% of copy, %.2fx v1", 100.0 * bytes / (ms * 1e-3) / 1e9 / copy_gbs,
                     ms1 / ms);
            result_line("residual_layernorm", shape, variant_name(k), 256, ms, bytes / (ms * 1e-3) / 1e9, "GB/s", ratio);
        }
    }
    if (!small) { print_results_table(); }

    free(inp1); free(inp2); free(weight); free(bias); free(res_ref); free(out_ref); free(mean_ref); free(rstd_ref);
    cudaCheck(cudaFree(d_inp1)); cudaCheck(cudaFree(d_inp2)); cudaCheck(cudaFree(d_weight)); cudaCheck(cudaFree(d_bias));
    cudaCheck(cudaFree(d_res)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_mean)); cudaCheck(cudaFree(d_rstd));
    return 0;
}
