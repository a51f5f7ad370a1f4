/*
 quantize_weights: a latent fp32 weight matrix W (OC, IC) to its ternary form, as
 the trainer does for every BitLinear matrix at every step (BitNet b1.58, eq. 1-3):
     gamma = max(mean|W|, 1e-5)                     one scale per tensor: a reduction over all of W
     trits = clamp(round(W / gamma), -1, 1)         int8, (OC, IC)
     packed = the trits at 2 bits each              (OC, IC/4) bytes, llmc/ternary_kernels.h layout:
                                                    code = trit + 1, trit 4j+s in bits [2s+1:2s] of byte j
 The spec is llmc/ternary.h (absmean_scale, ternarize) and pack2_rows.

 The op is bandwidth-bound: it reads 4 bytes and writes 1.25 bytes per weight, so the
 measure is GB/s against the device's copy bandwidth, measured in the same run. The
 catch is the per-tensor scale: every trit depends on a sum over the whole matrix.

 Build and run:
     make -C dev/cuda quantize_weights && ./dev/cuda/quantize_weights      all variants
     ./dev/cuda/quantize_weights 3                                         variant 3 only

 Variants:
     1  naive, four kernels: block partial sums of |W|, one block finishes gamma, one thread
        per trit, one thread per packed byte (reads W twice and the trits once more)
     2  fused, one cooperative kernel: partial sums, grid.sync(), every block finishes gamma
        itself, then trits and packed bytes, 4 weights per thread (the second read of W
        hits L2 when W fits there)
     3  as 2, vectorized: 16 weights per thread per step with 128-bit loads and stores; the
        first 16 weights of each thread stay in registers across grid.sync(), so a matrix
        that fits in one step of the grid (all of GPT-2 124M's) is read from memory once
     4  what the trainer runs (ships): llmc/quantize.cuh's weights_quantize, three kernels
        (partial sums in double, the scale, one thread per weight), int8 trits and W_q = trit *
        gamma in floatX, no packing (the trainer's integer forward reads the int8 trits); one
        launch configuration (256 threads), as in the trainer

 Validation: gamma against absmean_scale to GAMMA_RTOL (the CPU sums in double in one
 order, the GPU in float per thread and block, then double across blocks); then the CPU
 computes the trits and the packed bytes from the GPU's gamma with ternarize and
 pack2_rows, and they must be equal exactly (variant 4: the trits and W_q, which it makes
 instead of packed bytes). The kernels call llmc/ternary.h's ternarize and absmean_from_sum
 themselves: the spec, compiled for the device.
*/
#include <cooperative_groups.h>
#include "common.h" // defines: harness (random inputs, validation, timing, results); includes llmc/ headers
#include "llmc/quantize.cuh" // defines: weights_quantize (variant 4, what the trainer runs), QUANT_BLOCKS

namespace cg = cooperative_groups;

// |gamma_gpu - gamma_cpu| <= GAMMA_RTOL * gamma_cpu. Each GPU thread sums at most about
// 64 values in float (relative error <= 64 * 2^-24 ~ 4e-6 in the worst case, far less for
// values of one sign), the block tree adds 10 levels (~6e-7); the sum across blocks and the
// division are in double. 1e-5 leaves a margin over that worst case.
#define GAMMA_RTOL 1e-5

// ----------------------------------------------------------------------------
// CPU reference: the spec, from llmc/ternary.h and llmc/ternary_kernels.h

// gamma, trits (rows, cols) and packed (rows, cols/4) from w (rows, cols)
static float quantize_weights_cpu(int8_t *trits, uint8_t *packed, const float *w, int rows, int cols) {
    size_t n = (size_t)rows * cols;
    float gamma = absmean_scale(w, n);
    for (size_t i = 0; i < n; i++) { trits[i] = ternarize(w[i], gamma); }
    pack2_rows(packed, trits, rows, cols);
    return gamma;
}

// ----------------------------------------------------------------------------
// GPU kernels

// the trits are llmc/ternary.h's ternarize(w, gamma), called on the device: IEEE division (no
// --use_fast_math) and rintf (round half to even), so a trit lands where the CPU's does

// the 2-bit code of a trit, shifted to its place in a byte or word
__device__ static inline uint32_t code2(int trit, int pos) { return (uint32_t)(trit + 1) << (2 * pos); }

// gamma from the per-block partial sums, by one block; every block that calls this gets
// the same value: the same partials added in the same order
__device__ static inline float finish_gamma(const float *partial, int nparts, size_t n) {
    __shared__ double shared_d[32];
    double d = 0.0;
    for (int b = threadIdx.x; b < nparts; b += blockDim.x) { d += partial[b]; }
    d = block_reduce_sum(d, shared_d); // llmc/cuda_common.h, in double
    return absmean_from_sum(d, n);
}

// --- variant 1: four plain kernels

// partial[b] = sum of |w| over block b's elements, one element per thread
__global__ void absmean_partial_kernel1(float *partial, const float *w, size_t n) {
    __shared__ float shared[32];
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? fabsf(w[i]) : 0.0f;
    v = block_reduce_sum(v, shared);
    if (threadIdx.x == 0) { partial[blockIdx.x] = v; }
}

// one block: gamma from the partial sums
__global__ void absmean_finish_kernel1(float *gamma, const float *partial, int nparts, size_t n) {
    float g = finish_gamma(partial, nparts, n);
    if (threadIdx.x == 0) { *gamma = g; }
}

// one thread per weight
__global__ void ternarize_kernel1(int8_t *trits, const float *w, const float *gamma, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { trits[i] = (int8_t)ternarize(w[i], *gamma); }
}

// one thread per packed byte: 4 trits in, codes in bits [1:0], [3:2], [5:4], [7:6]
__global__ void pack2_kernel1(uint8_t *packed, const int8_t *trits, size_t nbytes) {
    size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j < nbytes) {
        uint32_t byte = 0;
        for (int s = 0; s < 4; s++) { byte |= code2(trits[4 * j + s], s); }
        packed[j] = (uint8_t)byte;
    }
}

// --- variant 2: one cooperative kernel, 4 weights (one packed byte) per thread per step

__global__ void quantize_weights_kernel2(int8_t *trits, uint8_t *packed, float *gamma_out, float *partial,
                                         const float *w, size_t n) {
    cg::grid_group grid = cg::this_grid();
    __shared__ float shared[32];
    const size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x, nthreads = (size_t)gridDim.x * blockDim.x;
    float sum = 0.0f;
    for (size_t i = tid; i < n; i += nthreads) { sum += fabsf(w[i]); } // coalesced: neighbours read neighbours
    sum = block_reduce_sum(sum, shared);
    if (threadIdx.x == 0) { partial[blockIdx.x] = sum; }
    grid.sync(); // every block's partial sum is written and visible to all blocks
    const float gamma = finish_gamma(partial, gridDim.x, n);
    if (tid == 0) { *gamma_out = gamma; }
    const size_t nbytes = n / 4;
    for (size_t j = tid; j < nbytes; j += nthreads) {
        uint32_t byte = 0;
        for (int s = 0; s < 4; s++) {
            int t = ternarize(w[4 * j + s], gamma);
            trits[4 * j + s] = (int8_t)t;
            byte |= code2(t, s);
        }
        packed[j] = (uint8_t)byte;
    }
}

// --- variant 3: as 2, 16 weights per thread per step with 128-bit accesses

__global__ void quantize_weights_kernel3(int8_t *trits, uint8_t *packed, float *gamma_out, float *partial,
                                         const float *w, size_t n) {
    cg::grid_group grid = cg::this_grid();
    __shared__ float shared[32];
    const size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x, nthreads = (size_t)gridDim.x * blockDim.x;
    const size_t nchunks = n / 16; // chunk c = weights 16c..16c+15 = four float4
    const float4 *w4 = reinterpret_cast<const float4 *>(w);
    float4 keep[4]; // this thread's first chunk, kept for the second phase
    float sum = 0.0f;
    for (size_t c = tid; c < nchunks; c += nthreads) {
        float4 v[4];
        #pragma unroll
        for (int q = 0; q < 4; q++) {
            v[q] = w4[4 * c + q];
            sum += fabsf(v[q].x) + fabsf(v[q].y) + fabsf(v[q].z) + fabsf(v[q].w);
        }
        if (c == tid) {
            #pragma unroll
            for (int q = 0; q < 4; q++) { keep[q] = v[q]; }
        }
    }
    sum = block_reduce_sum(sum, shared);
    if (threadIdx.x == 0) { partial[blockIdx.x] = sum; }
    grid.sync(); // every block's partial sum is written and visible to all blocks
    const float gamma = finish_gamma(partial, gridDim.x, n);
    if (tid == 0) { *gamma_out = gamma; }
    for (size_t c = tid; c < nchunks; c += nthreads) {
        float4 v[4];
        #pragma unroll
        for (int q = 0; q < 4; q++) { v[q] = c == tid ? keep[q] : w4[4 * c + q]; } // the first chunk: no reload
        // trit i of the chunk (i = 0..15): byte i%4 of trit word i/4, and bits [2i+1:2i] of the
        // packed word (bytes 4c..4c+3, little-endian: byte j holds trits 4j..4j+3, the first lowest)
        uint32_t tw[4], pw = 0;
        #pragma unroll
        for (int q = 0; q < 4; q++) {
            int t0 = ternarize(v[q].x, gamma), t1 = ternarize(v[q].y, gamma);
            int t2 = ternarize(v[q].z, gamma), t3 = ternarize(v[q].w, gamma);
            tw[q] = (uint32_t)(t0 & 0xff) | (uint32_t)(t1 & 0xff) << 8 | (uint32_t)(t2 & 0xff) << 16 |
                    (uint32_t)(t3 & 0xff) << 24;
            pw |= code2(t0, 4 * q) | code2(t1, 4 * q + 1) | code2(t2, 4 * q + 2) | code2(t3, 4 * q + 3);
        }
        reinterpret_cast<uint4 *>(trits)[c] = make_uint4(tw[0], tw[1], tw[2], tw[3]);
        reinterpret_cast<uint32_t *>(packed)[c] = pw;
    }
}

// ----------------------------------------------------------------------------
// launchers

static float *d_partial = NULL; // per-block partial sums, sized for the largest grid
#define MAX_PARTIALS (1 << 20)

static void quantize_weights1(int8_t *trits, uint8_t *packed, float *gamma, const float *w, size_t n, int block) {
    int grid = ceil_div((long long)n, block);
    // assert: one partial per block; n / 128 blocks of the largest matrix here is 131072
    if (grid > MAX_PARTIALS) { fprintf(stderr, "matrix too large for the partial buffer\n"); exit(EXIT_FAILURE); }
    absmean_partial_kernel1<<<grid, block>>>(d_partial, w, n);
    cudaCheck(cudaGetLastError());
    absmean_finish_kernel1<<<1, 1024>>>(gamma, d_partial, grid, n);
    cudaCheck(cudaGetLastError());
    ternarize_kernel1<<<grid, block>>>(trits, w, gamma, n);
    cudaCheck(cudaGetLastError());
    pack2_kernel1<<<ceil_div((long long)(n / 4), block), block>>>(packed, trits, n / 4);
    cudaCheck(cudaGetLastError());
}

// a cooperative launch: all blocks must be resident at once for grid.sync(), so the grid
// is at most (blocks per SM at this block size) * SMs, and no larger than the work needs
static void launch_cooperative(void *kernel, int8_t *trits, uint8_t *packed, float *gamma, const float *w,
                               size_t n, int block, size_t per_thread) {
    int dev = 0, sms = 0, per_sm = 0;
    cudaCheck(cudaGetDevice(&dev));
    cudaCheck(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    cudaCheck(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, block, 0));
    int grid = per_sm * sms, need = ceil_div(ceil_div((long long)n, (long long)per_thread), block);
    grid = need < grid ? need : grid;
    void *args[] = {&trits, &packed, &gamma, &d_partial, (void *)&w, &n};
    cudaCheck(cudaLaunchCooperativeKernel(kernel, grid, block, args, 0, 0));
    cudaCheck(cudaGetLastError());
}

static void quantize_weights2(int8_t *trits, uint8_t *packed, float *gamma, const float *w, size_t n, int block) {
    // whole packed bytes: n a multiple of 4 (a row length IC always is here)
    if (n % 4 != 0) { fprintf(stderr, "variant 2 needs a multiple of 4 weights\n"); exit(EXIT_FAILURE); }
    launch_cooperative((void *)quantize_weights_kernel2, trits, packed, gamma, w, n, block, 4);
}

static void quantize_weights3(int8_t *trits, uint8_t *packed, float *gamma, const float *w, size_t n, int block) {
    // 128-bit accesses: n a multiple of 16 (every shape here is) and 16-byte aligned buffers (cudaMalloc)
    if (n % 16 != 0) { fprintf(stderr, "variant 3 needs a multiple of 16 weights\n"); exit(EXIT_FAILURE); }
    launch_cooperative((void *)quantize_weights_kernel3, trits, packed, gamma, w, n, block, 16);
}

// variant 4, the trainer's: one tensor (L = 1) of kind 0, ternary; gamma is scales[0 * 4 + 0]
static floatX *d_wq = NULL;         // its W_q (n floatX)
static double *d_pabs = NULL, *d_psum = NULL; // its partial sums (QUANT_BLOCKS doubles each)
static float *d_centres = NULL;     // its centres (4 floats: unused in the ternary mode)
static void quantize_weights4(int8_t *trits, float *gamma, const float *w, size_t n) {
    weights_quantize(trits, d_wq, gamma, d_centres, d_pabs, d_psum, w, 1, 0, n, 0);
}

// dispatcher
static void quantize_weights(int kernel_num, int8_t *trits, uint8_t *packed, float *gamma, const float *w, size_t n,
                             int block) {
    switch (kernel_num) {
    case 1: quantize_weights1(trits, packed, gamma, w, n, block); break;
    case 2: quantize_weights2(trits, packed, gamma, w, n, block); break;
    case 3: quantize_weights3(trits, packed, gamma, w, n, block); break;
    case 4: quantize_weights4(trits, gamma, w, n); break;
    default: fprintf(stderr, "no variant %d\n", kernel_num); exit(EXIT_FAILURE);
    }
}

static const char *variant_name(int k) {
    switch (k) {
    case 1: return "1 naive, 4 kernels";
    case 2: return "2 fused, grid.sync";
    case 3: return "3 fused, vectorized";
    default: return "4 shipped: 3 kernels, + W_q";
    }
}

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    const int num_kernels = 5; // 0 is the copy bandwidth (the baseline), 1..4 the variants
    int only = parse_kernel_num(argc, argv, num_kernels);
    common_start("quantize_weights: fp32 W -> absmean gamma, int8 trits, 2-bit packed trits");
    rng_seed(1337);

    // (OC, IC) of the four BitLinear matrices of GPT-2 124M (C = 768) and of C = 2048:
    // qkv (3C, C), attproj (C, C), fc (4C, C), fcproj (C, 4C)
    const int shapes_gpu[][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072},
                                 {6144, 2048}, {2048, 2048}, {8192, 2048}, {2048, 8192}};
    // small mode (the CPU emulator): 7600 weights end in a partial block at every block size
    // (7600 = 59*128 + 48); 41600 weights are more than the largest cooperative grid of the
    // emulated device holds (1 SM: 2048 threads), so the grid-stride loops of variants 2 and 3
    // take more than one step (and 3 reloads the chunks it did not keep)
    const int shapes_small[][2] = {{100, 76}, {260, 160}};
    const int small = small_mode();
    const int (*shapes)[2] = small ? shapes_small : shapes_gpu;
    const int nshapes = small ? sizeof(shapes_small) / sizeof(shapes_small[0]) : sizeof(shapes_gpu) / sizeof(shapes_gpu[0]);
    const int block_sizes[] = {128, 256, 512, 1024};
    size_t nmax = 0;
    for (int s = 0; s < nshapes; s++) {
        size_t n = (size_t)shapes[s][0] * shapes[s][1];
        nmax = n > nmax ? n : nmax;
    }

    double copy_gbs = small ? 0.0 : measure_copy_bandwidth(256u << 20);

    d_partial = (float *)cudaMallocCheck(MAX_PARTIALS * sizeof(float), "partial sums");
    float *w = make_random_float(nmax, -0.1f, 0.1f); // latent weights around GPT-2's init scale
    float *d_w = to_device(w, nmax);
    int8_t *d_trits = (int8_t *)cudaMallocCheck(nmax, "trits");
    uint8_t *d_packed = (uint8_t *)cudaMallocCheck(nmax / 4, "packed");
    float *d_gamma = (float *)cudaMallocCheck(4 * sizeof(float), "gamma"); // variant 4: scales[l*4 + k]
    d_wq = (floatX *)cudaMallocCheck(nmax * sizeof(floatX), "W_q");
    d_pabs = (double *)cudaMallocCheck(QUANT_BLOCKS * sizeof(double), "partial sums");
    d_psum = (double *)cudaMallocCheck(QUANT_BLOCKS * sizeof(double), "partial sums");
    d_centres = (float *)cudaMallocCheck(4 * sizeof(float), "centres");
    int8_t *trits_ref = (int8_t *)mallocCheck(nmax);
    uint8_t *packed_ref = (uint8_t *)mallocCheck(nmax / 4);

    // validate every variant at every shape and block size first
    for (int s = 0; s < nshapes; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        size_t n = (size_t)rows * cols;
        float gamma_cpu = quantize_weights_cpu(trits_ref, packed_ref, w, rows, cols);
        for (int k = 1; k < num_kernels; k++) {
            if (only > 0 && k != only) { continue; }
            for (int b = 0; b < (k == 4 ? 1 : 4); b++) { // variant 4: the trainer's launch configuration only
                cudaCheck(cudaMemset(d_trits, 0x55, n)); // stale output from the previous variant must not pass
                cudaCheck(cudaMemset(d_packed, 0x55, n / 4));
                cudaCheck(cudaMemset(d_gamma, 0, sizeof(float)));
                quantize_weights(k, d_trits, d_packed, d_gamma, d_w, n, block_sizes[b]);
                cudaCheck(cudaDeviceSynchronize());
                float gamma_gpu;
                cudaCheck(cudaMemcpy(&gamma_gpu, d_gamma, sizeof(float), cudaMemcpyDeviceToHost));
                if (!(fabs((double)gamma_gpu - gamma_cpu) <= GAMMA_RTOL * gamma_cpu)) {
                    printf("MISMATCH gamma, variant %d, W %dx%d, block %d: gpu %.9g, cpu %.9g (rtol %g)\n", k, rows,
                           cols, block_sizes[b], gamma_gpu, gamma_cpu, GAMMA_RTOL);
                    exit(EXIT_FAILURE);
                }
                // the trits of the GPU's gamma, by the CPU spec: then equality is exact
                int8_t *trits_g = (int8_t *)mallocCheck(n);
                uint8_t *packed_g = (uint8_t *)mallocCheck(n / 4);
                for (size_t i = 0; i < n; i++) { trits_g[i] = ternarize(w[i], gamma_gpu); }
                pack2_rows(packed_g, trits_g, rows, cols);
                int8_t *t_gpu = from_device(d_trits, n);
                uint8_t *p_gpu = from_device(d_packed, n / 4);
                validate_exact("trits", t_gpu, trits_g, n);
                if (k == 4) { // no packed bytes: W_q = trit * gamma in floatX instead
                    floatX *wq_g = (floatX *)mallocCheck(n * sizeof(floatX)), *wq_gpu = from_device(d_wq, n);
                    for (size_t i = 0; i < n; i++) { wq_g[i] = from_float<floatX>(trits_g[i] * gamma_gpu); }
                    validate_exact("W_q", wq_gpu, wq_g, n);
                    free(wq_g); free(wq_gpu);
                } else {
                    validate_exact("packed", p_gpu, packed_g, n / 4);
                }
                free(trits_g); free(packed_g); free(t_gpu); free(p_gpu);
            }
            printf("  variant %d, W %dx%d: gamma within %g of the CPU's, trits and %s exact\n", k, rows, cols,
                   GAMMA_RTOL, k == 4 ? "W_q" : "packed bytes");
        }
    }
    printf("All results match\n\n");
    const int ntimed = small ? 0 : nshapes; // small mode: validation only

    // time
    for (int s = 0; s < ntimed; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        size_t n = (size_t)rows * cols;
        char shape[40];
        snprintf(shape, sizeof(shape), "W %dx%d", rows, cols);
        double bytes = 4.0 * n + n + n / 4.0; // read fp32 W; write int8 trits and 2-bit packed trits
        for (int k = 1; k < num_kernels; k++) {
            if (only > 0 && k != only) { continue; }
            if (k == 4) { bytes = 4.0 * n + n + (double)n * sizeof(floatX); } // variant 4 writes W_q, not packed
            for (int b = (k == 4 ? 1 : 0); b < (k == 4 ? 2 : 4); b++) { // variant 4: 256 threads, as in the trainer
                int block = block_sizes[b];
                double ms = benchmark_ms([&]() { quantize_weights(k, d_trits, d_packed, d_gamma, d_w, n, block); });
                double gbs = bytes / (ms * 1e-3) / 1e9;
                char ratio[24];
                snprintf(ratio, sizeof(ratio), "%.0f%% of copy", 100.0 * gbs / copy_gbs);
                result_line("quantize_weights", shape, variant_name(k), block, ms, gbs, "GB/s", ratio);
            }
        }
    }
    if (!small) {
        char copy_ratio[24];
        snprintf(copy_ratio, sizeof(copy_ratio), "100%% of copy");
        result_line("quantize_weights", "256 MiB", "0 cudaMemcpy D2D (baseline)", 0,
                    2.0 * (256u << 20) / copy_gbs / 1e6, copy_gbs, "GB/s", copy_ratio);
        print_results_table();
    }

    free(w); free(trits_ref); free(packed_ref);
    cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_trits)); cudaCheck(cudaFree(d_packed));
    cudaCheck(cudaFree(d_gamma)); cudaCheck(cudaFree(d_partial));
    cudaCheck(cudaFree(d_wq)); cudaCheck(cudaFree(d_pabs)); cudaCheck(cudaFree(d_psum)); cudaCheck(cudaFree(d_centres));
    return 0;
}
