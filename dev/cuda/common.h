/*
 dev/cuda/common.h: the harness the kernel-variant programs of dev/cuda share.
 Only the harness lives here; error checks, floatX and the block reductions come
 from llmc/cuda_common.h, the quantizers from llmc/ternary.h and the packing
 formats from llmc/ternary_kernels.h, so there is one definition of each.

   random inputs     rng_seed, rng_u32, rng_uniform, make_random_float, make_random_int8, make_random_trits
   device copies     to_device, from_device
   validation        validate_exact (integers, or the raw bits of floats), validate_close (atol + rtol*|ref|)
   timing            l2_flush_init / l2_flush, benchmark_ms: warm-up, L2 flush, CUDA events, median
   results           result_line (one line per configuration), print_results_table (the closing table)
   copy bandwidth    measure_copy_bandwidth: cudaMemcpy device-to-device, the roofline of the
                     bandwidth-bound ops
   small mode        small_mode(): DEV_CUDA_SMALL=1 in the environment. Each program then
                     validates small shapes (tails, several blocks and warps, every variant,
                     with the same checks) and skips the timing: what the CPU emulator
                     (tests/cuda_emu, make test) runs. Without it nothing changes.
*/
#ifndef DEV_CUDA_COMMON_H
#define DEV_CUDA_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <cuda_runtime.h>
#include "llmc/cuda_common.h"     // defines: cudaCheck, cublasCheck, floatX, to_float, from_float, ceil_div,
                                  //          warp/block reductions, print_device_line; (utils.h: mallocCheck, median)
#include "llmc/ternary.h"         // defines: absmean_scale, ternarize, absmax_scale, quantize_int8, TERNARY_EPS
#include "llmc/ternary_kernels.h" // defines: pack2_rows, pack3_rows, matmul_i8_t2_ref, matmul_i8_t3_ref, *_row_bytes

// ----------------------------------------------------------------------------
// random inputs with a fixed seed (xorshift64*: the same numbers on every machine)

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static inline void rng_seed(uint64_t seed) { rng_state = seed ? seed : 0x2545F4914F6CDD1DULL; }

static inline uint32_t rng_u32(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

// uniform in [lo, hi)
static inline float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * ((rng_u32() >> 8) * (1.0f / 16777216.0f));
}

static inline float *make_random_float(size_t n, float lo, float hi) {
    float *p = (float *)mallocCheck(n * sizeof(float));
    for (size_t i = 0; i < n; i++) { p[i] = rng_uniform(lo, hi); }
    return p;
}

// the full int8 range, -128 included: it is the one value whose negation does not fit
static inline int8_t *make_random_int8(size_t n) {
    int8_t *p = (int8_t *)mallocCheck(n);
    for (size_t i = 0; i < n; i++) { p[i] = (int8_t)(rng_u32() >> 24); }
    return p;
}

// trits uniform in {-1, 0, +1}
static inline int8_t *make_random_trits(size_t n) {
    int8_t *p = (int8_t *)mallocCheck(n);
    for (size_t i = 0; i < n; i++) { p[i] = (int8_t)((int)(rng_u32() % 3u) - 1); }
    return p;
}

// ----------------------------------------------------------------------------
// device copies

template <typename T> static inline T *to_device(const T *host, size_t n) {
    T *dev = (T *)cudaMallocCheck(n * sizeof(T), "dev/cuda input");
    cudaCheck(cudaMemcpy(dev, host, n * sizeof(T), cudaMemcpyHostToDevice));
    return dev;
}

template <typename T> static inline T *from_device(const T *dev, size_t n) {
    T *host = (T *)mallocCheck(n * sizeof(T));
    cudaCheck(cudaMemcpy(host, dev, n * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
}

// ----------------------------------------------------------------------------
// validation: a mismatch prints the first bad element and exits non-zero, so
// "All results match" is printed only when every check passed

static inline double as_double(int8_t v) { return v; }
static inline double as_double(uint8_t v) { return v; }
static inline double as_double(int32_t v) { return v; }
static inline double as_double(float v) { return v; }
static inline double as_double(double v) { return v; }
static inline double as_double(__nv_bfloat16 v) { return __bfloat162float(v); }

// exact equality; floats are compared by their bits (an identical computation must give identical bits)
template <typename T> static inline void validate_exact(const char *name, const T *gpu, const T *ref, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&gpu[i], &ref[i], sizeof(T)) != 0) {
            printf("MISMATCH %s at %zu: gpu %.9g, cpu %.9g (exact equality required)\n", name, i,
                   as_double(gpu[i]), as_double(ref[i]));
            exit(EXIT_FAILURE);
        }
    }
}

// |gpu - ref| <= atol + rtol * |ref| for every element (the float paths)
template <typename T>
static inline void validate_close(const char *name, const T *gpu, const double *ref, size_t n, double atol, double rtol) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double g = as_double(gpu[i]), d = fabs(g - ref[i]);
        if (!(d <= atol + rtol * fabs(ref[i]))) { // written so that a NaN fails too
            printf("MISMATCH %s at %zu: gpu %.9g, cpu %.9g, |diff| %.3g > atol %.3g + rtol %.3g * |cpu|\n", name, i,
                   g, ref[i], d, atol, rtol);
            exit(EXIT_FAILURE);
        }
        worst = d > worst ? d : worst;
    }
    printf("  %-40s ok (max |diff| %.3g over %zu values)\n", name, worst, n);
}

// ----------------------------------------------------------------------------
// timing: CUDA events around one call, after warm-up, with L2 flushed before
// each repeat so that the inputs come from DRAM as they would in a training step
// (a weight matrix of GPT-2 124M fits in the 50 MB L2 of an H100)

static void *l2_flush_buf = NULL;
static size_t l2_flush_bytes = 0;

static inline void l2_flush_init(void) {
    int dev = 0, l2 = 0;
    cudaCheck(cudaGetDevice(&dev));
    cudaCheck(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    l2_flush_bytes = 2 * (size_t)(l2 > 0 ? l2 : 64 << 20); // twice the L2: every line of it is evicted
    l2_flush_buf = cudaMallocCheck(l2_flush_bytes, "L2 flush buffer");
}

static inline void l2_flush(void) {
    if (l2_flush_buf == NULL) { l2_flush_init(); }
    cudaCheck(cudaMemsetAsync(l2_flush_buf, 0, l2_flush_bytes));
}

#define BENCH_WARMUP 3   // calls before timing: the first launch pays for module loading and cuBLAS heuristics
#define BENCH_REPEATS 21 // timed calls; the median is robust to a stray slow one (odd count: a real sample)

// median time in ms of fn() over BENCH_REPEATS calls
template <typename F> static inline double benchmark_ms(F &&fn) {
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    for (int i = 0; i < BENCH_WARMUP; i++) { fn(); }
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaDeviceSynchronize());
    double times[BENCH_REPEATS];
    for (int r = 0; r < BENCH_REPEATS; r++) {
        l2_flush();
        cudaCheck(cudaEventRecord(start));
        fn();
        cudaCheck(cudaEventRecord(stop));
        cudaCheck(cudaEventSynchronize(stop));
        float ms = 0.0f;
        cudaCheck(cudaEventElapsedTime(&ms, start, stop));
        times[r] = ms;
    }
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    return median(times, BENCH_REPEATS);
}

// the device's copy bandwidth in GB/s, counting bytes read plus bytes written, as the
// ops below count theirs: a cudaMemcpy device-to-device of `bytes` (large enough to
// leave L2 out of it)
static inline double measure_copy_bandwidth(size_t bytes) {
    void *a = cudaMallocCheck(bytes, "copy bandwidth source");
    void *b = cudaMallocCheck(bytes, "copy bandwidth destination");
    cudaCheck(cudaMemset(a, 1, bytes));
    double ms = benchmark_ms([&]() { cudaCheck(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); });
    cudaCheck(cudaFree(a));
    cudaCheck(cudaFree(b));
    double gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;
    printf("copy bandwidth: cudaMemcpy device-to-device of %.0f MiB: %.3f ms, %.1f GB/s (read + write)\n",
           bytes / 1048576.0, ms, gbs);
    return gbs;
}

// ----------------------------------------------------------------------------
// results: one line per configuration as it is measured, and a closing table.
// Table rows start with "| " so that `make run_all` can collect them from every program.

typedef struct {
    char op[24], shape[40], variant[48], block[12], ms[16], value[24], ratio[24];
} ResultRow;

#define MAX_RESULT_ROWS 512
static ResultRow result_rows[MAX_RESULT_ROWS];
static int num_result_rows = 0;

// value and unit: e.g. 2750.3 "GB/s"; ratio: e.g. "82% of copy" or "1.53x v0" (the caller formats it)
static inline void result_line(const char *op, const char *shape, const char *variant, int block_size, double ms,
                               double value, const char *unit, const char *ratio) {
    char blk[12] = "-";
    if (block_size > 0) { snprintf(blk, sizeof(blk), "%d", block_size); }
    printf("%-18s %-22s %-34s block %4s | %9.4f ms | %9.1f %-6s | %s\n", op, shape, variant, blk, ms, value, unit,
           ratio);
    if (num_result_rows < MAX_RESULT_ROWS) {
        ResultRow *r = &result_rows[num_result_rows++];
        snprintf(r->op, sizeof(r->op), "%s", op);
        snprintf(r->shape, sizeof(r->shape), "%s", shape);
        snprintf(r->variant, sizeof(r->variant), "%s", variant);
        snprintf(r->block, sizeof(r->block), "%s", blk);
        snprintf(r->ms, sizeof(r->ms), "%.4f", ms);
        snprintf(r->value, sizeof(r->value), "%.1f %s", value, unit);
        snprintf(r->ratio, sizeof(r->ratio), "%s", ratio);
    }
}

static inline void print_results_table(void) {
    printf("\n| op | shape | variant | block | ms | achieved | vs baseline |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < num_result_rows; i++) {
        const ResultRow *r = &result_rows[i];
        printf("| %s | %s | %s | %s | %s | %s | %s |\n", r->op, r->shape, r->variant, r->block, r->ms, r->value,
               r->ratio);
    }
}

// ----------------------------------------------------------------------------
// command line: `./prog` runs every variant, `./prog N` only variant N (and the baseline)

static inline int parse_kernel_num(int argc, char **argv, int num_kernels) {
    if (argc < 2) { return -1; }
    int k = atoi(argv[1]);
    if (k < 0 || k >= num_kernels) {
        fprintf(stderr, "error: kernel %s does not exist\n---> HINT: pick one of 0..%d, or none to run them all\n",
                argv[1], num_kernels - 1);
        exit(EXIT_FAILURE);
    }
    return k;
}

// DEV_CUDA_SMALL=1: small shapes, validation only (see the header)
static inline int small_mode(void) {
    const char *s = getenv("DEV_CUDA_SMALL");
    return s != NULL && strcmp(s, "1") == 0;
}

static inline void common_start(const char *what) {
    printf("%s\n", what);
    cuda_device_init("these programs need a GPU; DEV_CUDA_SMALL=1 runs them on the CPU emulator (tests/cuda_emu)");
    print_device_line();
    if (small_mode()) { printf("small mode (DEV_CUDA_SMALL=1): small shapes, validation only, no timing\n"); }
    int dev = 0;
    cudaDeviceProp prop;
    cudaCheck(cudaGetDevice(&dev));
    cudaCheck(cudaGetDeviceProperties(&prop, dev));
    if (prop.major < 8) {
        fprintf(stderr, "error: these kernels need sm_80 or newer (int8 mma.sync, bf16); this GPU is sm_%d%d\n",
                prop.major, prop.minor);
        exit(EXIT_FAILURE);
    }
    if (!small_mode()) { l2_flush_init(); } // only the timing flushes L2
}

#endif // DEV_CUDA_COMMON_H
