/*
 rmsnorm_quant: the input side of BitLinear, fused: for each row x of (N, C) floatX
 activations (N = B*T tokens; bf16, or fp32 when built with -DENABLE_FP32):
     r     = 1 / sqrt(mean(x^2) + eps)                   parameter-free RMSNorm (kept as rstd for backward)
     x_n   = x * r
     s     = 127 / max(max|x_n|, 1e-5)                   per-token absmax scale (BitNet eq. 4)
     codes = clamp(round(x_n * s), -128, 127)            int8, what the integer matmul reads
     inv_s = 1 / s                                       the row scale its epilogue applies
 The spec is train_gpt2_1bit.c's bitlinear_input_forward with llmc/ternary.h's absmax_scale
 and quantize_int8. Since rounding is monotone, max|x_n| = max|x| * r exactly, so one read
 of the row gives both reductions.

 Bandwidth-bound (reads 2 bytes and writes 1 per bf16 value): the measure is GB/s
 against the device's copy bandwidth.

 fcproj's input is gelu(fch): variant 5 reads fch and applies the GELU to each value as it is
 loaded, rounded to floatX as gelu_forward stores it (llmc/gelu.cuh's gelu_stored), so that its
 outputs are those of gelu_forward then variant 4, the two kernels it replaces, to the bit,
 without gelu(fch) being written and read back (a (N, C) floatX tensor each way).

 Build and run:
     make -C dev/cuda rmsnorm_quant && ./dev/cuda/rmsnorm_quant          all variants
     ./dev/cuda/rmsnorm_quant 3                                          variant 3 only
     DEV_CUDA_SMALL=1 ./dev/cuda/rmsnorm_quant                           small mode (the emulator)
     (fp32 activations: nvcc ... -DENABLE_FP32 rmsnorm_quant.cu)

 Variants:
     1  one thread per row, scalar loads (neighbouring threads read addresses C apart: uncoalesced)
     2  one warp per row, lane-strided scalar loads (coalesced); the second pass re-reads the row
     3  one warp per row, the row held in registers from 128-bit loads (8 bf16 per load), codes
        stored 8 at a time: one read of the input, one write of the codes. Compiled for rows of
        up to 4, 8, 16, 32 vectors a lane, each with the largest block its registers allow (1024,
        1024, 512, 256 threads); the larger block sizes are skipped for the longer rows
     4  what the trainer runs (ships): llmc/quantize.cuh's bitlinear_input_forward, variant 3's
        scheme (the row in registers, compiled for 4, 8, 16, 32 vectors a lane, 128 threads) for
        any row of whole 128-bit vectors up to 32 a lane (a lane's last vector may lie past the
        row's end: C = 200), with the max taken of x_n = x * r itself and an optional x_q
        output; other rows (C = 203 here) take the fallback, variant 2's scheme (warp per row,
        two passes, 256 threads). Validated twice: codes and 1/s (the integer forward), then
        x_q = code / s (the backward's recomputation), with rstd the same to the bit in both
     5  what the trainer runs for fcproj (ships): variant 4 with the input pre-op BL_PRE_GELU,
        from fch: the row in registers goes through the GELU once, after the loads and before
        both reductions (the fallback applies it at each of its passes). Timed at the fcproj
        shapes (C = 3072, 8192) against the two kernels it replaces (gelu_forward, then variant 4)

 Validation:
     rstd against the trainer's CPU formula to RSTD_RTOL (the sums of squares are added in
     different orders); then codes and inv_s against the CPU spec evaluated with the GPU's
     rstd: exact. Finally the codes against the fully independent CPU reference: a code may
     differ by one, and only where the exact 127 x / max|x| lies within TIE_RTOL of a .5 tie.
     Variant 5: the same checks with x = gelu(fch) rounded to floatX, the CPU's GELU (float, as
     train_gpt2_1bit.c's gelu_forward) where the GPU's gelu_forward gives the same floatX value,
     the GPU's where its tanhf rounds to another (each within GELU_RTOL of the CPU's; counted,
     none on the emulator); then codes, inv_s, rstd and x_q equal to the two kernels' outputs.
 Timing: bytes moved (the input read, the codes, 1/s and rstd written) per second, against a
 device-to-device copy; the two kernels move the (N, C) floatX gelu(fch) twice more.
*/
#include "common.h" // defines: harness (random inputs, validation, timing, results); includes llmc/ headers
#include "llmc/quantize.cuh" // defines: bitlinear_input_forward (variants 4, 5: what the trainer runs), BL_PRE_*
#include "llmc/gelu.cuh"     // defines: gelu_forward (the two-kernel path variant 5 replaces), GELU_SCALING_FACTOR

// the sum of C nonnegative squares, added in any order, is within (C-1) * 2^-24 of exact
// (every partial sum is at most the total); the CPU's and the GPU's may differ by twice
// that, and sqrt halves it: (C + 4) * 2^-24 covers it with the roundings of sqrt and 1/x
#define RSTD_RTOL(C) (((C) + 4) * 5.9604645e-8)
// codes of the independent CPU reference that may differ (by exactly one) from the GPU's:
// in exact arithmetic r cancels, x_n * s = 127 x / max|x|; the float x_n * s is that times
// four roundings (x*r, max*r, 127/., the product), within 4 * 2^-24 relative. Two r's can
// therefore round a code differently only where 127 x / max|x| is within that of a .5 tie;
// TIE_RTOL is twice it. With bf16 inputs exact ties are common (127 x / max|x| is a ratio
// of 8-bit mantissas: about 0.3% of the codes), so the number of such codes is not small
// and is not bounded; each one must be a tie.
#define TIE_RTOL (8 * 5.9604645e-8)
// the GPU's GELU against the CPU's, both rounded to floatX: tanhf on the GPU (CUDA: within 2 ulp)
// and in the C library can differ in the last bits, which floatX rounding mostly hides; where it
// does not, the values are one floatX rounding apart (2^-8 relative in bf16), as dev/cuda/gelu.cu's
#ifdef ENABLE_FP32
#define GELU_RTOL 1e-5
#else
#define GELU_RTOL 8e-3
#endif

// ----------------------------------------------------------------------------
// CPU reference

// one row with a given r = rstd: the spec's x_n, s, codes and 1/s
static void rmsnorm_quant_row_cpu(int8_t *codes, float *inv_s, float *xn, const floatX *x, float r, int C) {
    for (int i = 0; i < C; i++) { xn[i] = to_float(x[i]) * r; }
    float s = absmax_scale(xn, C);
    for (int i = 0; i < C; i++) { codes[i] = quantize_int8(xn[i], s); }
    *inv_s = 1.0f / s;
}

// gelu(x) as train_gpt2_1bit.c's gelu_forward computes it (float), rounded to floatX as the
// GPU's gelu_forward stores it: fcproj's input
static floatX gelu_stored_cpu(floatX xv) {
    float x = to_float(xv), cube = 0.044715f * x * x * x;
    return from_float<floatX>(0.5f * x * (1.0f + tanhf(GELU_SCALING_FACTOR * (x + cube))));
}

// the trainer's formula for r (a float sum in order), then the row
static void rmsnorm_quant_cpu(int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int C) {
    #pragma omp parallel
    {
        float *xn = (float *)mallocCheck(C * sizeof(float));
        #pragma omp for
        for (int n = 0; n < N; n++) {
            const floatX *x = inp + (size_t)n * C;
            float ss = 0.0f;
            for (int i = 0; i < C; i++) { float v = to_float(x[i]); ss += v * v; }
            float r = 1.0f / sqrtf(ss / C + RMSNORM_EPS);
            rstd[n] = r;
            rmsnorm_quant_row_cpu(codes + (size_t)n * C, inv_s + n, xn, x, r, C);
        }
        free(xn);
    }
}

// ----------------------------------------------------------------------------
// GPU kernels

// r from the sum of squares; IEEE sqrt and division (no --use_fast_math), as on the CPU
__device__ static inline float rstd_dev(float ss, int C) { return 1.0f / sqrtf(ss / C + RMSNORM_EPS); }

// s = 127 / max(max|x_n|, eps) from max|x|: max|x * r| = max|x| * r (rounding is monotone);
// llmc/ternary.h's absmax_from_max, the spec, called on the device
__device__ static inline float scale_dev(float absmax_x, float r) { return absmax_from_max(absmax_x * r); }

// clamp(round(x_n * s), -128, 127) with x_n = x * r rounded first, as the CPU does: llmc/ternary.h's
// quantize_int8
__device__ static inline int code_dev(float x, float r, float s) { return quantize_int8(x * r, s); }

// --- variant 1: one thread per row

__global__ void rmsnorm_quant_kernel1(int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int C) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) { return; }
    const floatX *x = inp + (size_t)n * C;
    float ss = 0.0f, m = 0.0f;
    for (int i = 0; i < C; i++) {
        float v = to_float(x[i]);
        ss += v * v;
        m = fmaxf(m, fabsf(v));
    }
    float r = rstd_dev(ss, C), s = scale_dev(m, r);
    for (int i = 0; i < C; i++) { codes[(size_t)n * C + i] = (int8_t)code_dev(to_float(x[i]), r, s); }
    inv_s[n] = 1.0f / s;
    rstd[n] = r;
}

// --- variant 2: one warp per row, coalesced scalar loads, two passes over the row

__global__ void rmsnorm_quant_kernel2(int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int C) {
    int lane = threadIdx.x % 32;
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; // this warp's row
    if (n >= N) { return; } // a whole warp leaves together: the shuffles below see all 32 lanes
    const floatX *x = inp + (size_t)n * C;
    float ss = 0.0f, m = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float v = to_float(x[i]);
        ss += v * v;
        m = fmaxf(m, fabsf(v));
    }
    ss = warp_reduce_sum(ss);
    m = warp_reduce_max(m);
    float r = rstd_dev(ss, C), s = scale_dev(m, r);
    for (int i = lane; i < C; i += 32) { codes[(size_t)n * C + i] = (int8_t)code_dev(to_float(x[i]), r, s); }
    if (lane == 0) {
        inv_s[n] = 1.0f / s;
        rstd[n] = r;
    }
}

// --- variant 3: one warp per row, held in registers, 128-bit loads
//
// The row stays in registers between the reductions and the codes: V 128-bit vectors a lane,
// 4 registers each. A block has 64K registers, allocated a warp at a time, so the more a thread
// holds, the fewer threads a block can have: 1024 threads get 64 registers each, 512 get 128,
// 256 get 255 (the most a thread can address). One kernel sized for the longest row (32
// vectors: 149 registers) would not launch at 512 threads (cudaErrorLaunchOutOfResources), and
// would allow an SM at most 13 warps, for rows of 3 vectors too. So the kernel is compiled for
// a few capacities V, each with the largest block it fits in as its __launch_bounds__ (ptxas
// keeps it to that block's registers; tests/test_cuda_resources.sh checks that it needs no
// spills to do so), and a row takes the smallest capacity that holds it.

#define X128 RQ_X128 // values per 128-bit load: 8 bf16 or 4 fp32 (llmc/quantize.cuh)
#define MAX_VECS 32                     // 128-bit vectors per lane: 512 bytes of a row per lane (128 registers)
// the largest block for V vectors a lane: 4V registers of row and about 20 more a thread
// (V = 4, 8, 16, 32: 36, 49, 81, 149 registers on sm_90, bf16 or fp32)
#define MAX_BLOCK3(V) ((V) <= 8 ? 1024 : (V) <= 16 ? 512 : 256)

// unpack128 (a 128-bit vector's values as floats, from its 32-bit words) is llmc/quantize.cuh's

template <int V> // the capacity: at most V vectors a lane; a row has nvec <= V of them
__global__ void __launch_bounds__(MAX_BLOCK3(V))
rmsnorm_quant_kernel3(int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int C) {
    int lane = threadIdx.x % 32;
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) { return; }
    const int nvec = C / (32 * X128); // vectors per lane; vector v of lane l = values (32v + l) * X128 ...
    const int4 *x4 = reinterpret_cast<const int4 *>(inp + (size_t)n * C);
    int4 row[V];
    float ss = 0.0f, m = 0.0f;
    #pragma unroll
    for (int v = 0; v < V; v++) {
        if (v < nvec) { // fully unrolled with constant indices: row[] stays in registers
            row[v] = x4[32 * v + lane];
            float f[X128];
            unpack128(f, row[v]);
            #pragma unroll
            for (int j = 0; j < X128; j++) {
                ss += f[j] * f[j];
                m = fmaxf(m, fabsf(f[j]));
            }
        }
    }
    ss = warp_reduce_sum(ss);
    m = warp_reduce_max(m);
    float r = rstd_dev(ss, C), s = scale_dev(m, r);
    int8_t *out = codes + (size_t)n * C;
    #pragma unroll
    for (int v = 0; v < V; v++) {
        if (v < nvec) {
            float f[X128];
            unpack128(f, row[v]);
            uint32_t words[X128 / 4]; // the X128 codes, 4 per word, the first in the low byte
            #pragma unroll
            for (int w = 0; w < X128 / 4; w++) {
                uint32_t word = 0;
                #pragma unroll
                for (int b = 0; b < 4; b++) { word |= (uint32_t)(code_dev(f[4 * w + b], r, s) & 0xff) << (8 * b); }
                words[w] = word;
            }
            size_t off = (size_t)(32 * v + lane) * X128; // byte offset of these codes in the row
            if constexpr (X128 == 8) {
                *reinterpret_cast<uint2 *>(out + off) = make_uint2(words[0], words[1]);
            } else {
                *reinterpret_cast<uint32_t *>(out + off) = words[0];
            }
        }
    }
    if (lane == 0) {
        inv_s[n] = 1.0f / s;
        rstd[n] = r;
    }
}

// ----------------------------------------------------------------------------
// launchers

static void rmsnorm_quant1(int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int C, int block) {
    rmsnorm_quant_kernel1<<<ceil_div(N, block), block>>>(codes, inv_s, rstd, inp, N, C);
    cudaCheck(cudaGetLastError());
}

static void rmsnorm_quant2(int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int C, int block) {
    rmsnorm_quant_kernel2<<<ceil_div(N, block / 32), block>>>(codes, inv_s, rstd, inp, N, C);
    cudaCheck(cudaGetLastError());
}

// variant 3's capacities, each with the largest block it fits in (its __launch_bounds__)
typedef void (*Kernel3)(int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int C);
static const struct { int vecs, max_block; Kernel3 kernel; } kernels3[] = {
    {4, MAX_BLOCK3(4), rmsnorm_quant_kernel3<4>},
    {8, MAX_BLOCK3(8), rmsnorm_quant_kernel3<8>},
    {16, MAX_BLOCK3(16), rmsnorm_quant_kernel3<16>},
    {MAX_VECS, MAX_BLOCK3(MAX_VECS), rmsnorm_quant_kernel3<MAX_VECS>},
};

// the capacity for rows of C values: whole 128-bit vectors for all 32 lanes, and the fewest
// registers that hold them; -1 if they do not fit (more than MAX_VECS vectors a lane)
static int variant3_pick(int C) {
    if (C % (32 * X128) != 0) { return -1; }
    for (int i = 0; i < (int)(sizeof(kernels3) / sizeof(kernels3[0])); i++) {
        if (C / (32 * X128) <= kernels3[i].vecs) { return i; }
    }
    return -1;
}

static int variant3_fits(int C) { return variant3_pick(C) >= 0; }

// the largest block variant 3 launches for rows of C values (C must fit), and why
static int variant3_max_block(int C) {
    int i = variant3_pick(C);
    return i < 0 ? 0 : kernels3[i].max_block;
}
static const char *variant3_limit(int C) {
    static char why[96];
    int i = variant3_pick(C);
    snprintf(why, sizeof(why), "rows of %d vectors a lane take the kernel for %d, at most %d threads a block",
             C / (32 * X128), i < 0 ? 0 : kernels3[i].vecs, variant3_max_block(C));
    return why;
}

static void rmsnorm_quant3(int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int C, int block) {
    int i = variant3_pick(C);
    if (i < 0) { fprintf(stderr, "variant 3: C = %d does not fit\n", C); exit(EXIT_FAILURE); }
    // a larger block than the kernel's __launch_bounds__ would fail to launch: refuse it here, with the reason
    if (block > kernels3[i].max_block) {
        fprintf(stderr, "variant 3: C = %d, block %d: %s\n", C, block, variant3_limit(C));
        exit(EXIT_FAILURE);
    }
    Kernel3 kernel = kernels3[i].kernel; // launched by a plain name, which tests/cuda_emu/cu2cpp.py can read
    kernel<<<ceil_div(N, block / 32), block>>>(codes, inv_s, rstd, inp, N, C);
    cudaCheck(cudaGetLastError());
}

// variant 4: the trainer's launcher (inner norm on, int8 on, no x_q), its own block size (128,
// or 256 in the fallback)
static void rmsnorm_quant4(int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int C) {
    bitlinear_input_forward(NULL, codes, inv_s, rstd, inp, BL_PRE_NONE, N, C, 1, 1);
}

// variant 5: the same launcher from fch, the GELU applied in the kernel (fcproj's input)
static void rmsnorm_quant5(int8_t *codes, float *inv_s, float *rstd, const floatX *fch, int N, int C) {
    bitlinear_input_forward(NULL, codes, inv_s, rstd, fch, BL_PRE_GELU, N, C, 1, 1);
}

// what variant 5 replaces: gelu_forward writes g = gelu(fch) (N, C), variant 4 reads it
static void gelu_then_rmsnorm_quant(floatX *g, int8_t *codes, float *inv_s, float *rstd, const floatX *fch, int N,
                                    int C) {
    gelu_forward(g, fch, (size_t)N * C);
    rmsnorm_quant4(codes, inv_s, rstd, g, N, C);
}

// dispatcher
static void rmsnorm_quant(int kernel_num, int8_t *codes, float *inv_s, float *rstd, const floatX *inp, int N, int C,
                          int block) {
    switch (kernel_num) {
    case 1: rmsnorm_quant1(codes, inv_s, rstd, inp, N, C, block); break;
    case 2: rmsnorm_quant2(codes, inv_s, rstd, inp, N, C, block); break;
    case 3: rmsnorm_quant3(codes, inv_s, rstd, inp, N, C, block); break;
    case 4: rmsnorm_quant4(codes, inv_s, rstd, inp, N, C); break;
    case 5: rmsnorm_quant5(codes, inv_s, rstd, inp, N, C); break;
    default: fprintf(stderr, "no variant %d\n", kernel_num); exit(EXIT_FAILURE);
    }
}

static const char *variant_name(int k) {
    switch (k) {
    case 1: return "1 thread per row";
    case 2: return "2 warp per row, 2 passes";
    case 3: return "3 warp per row, in registers";
    case 4: return "4 shipped: in registers";
    default: return "5 shipped: gelu fused, from fch";
    }
}

// the rows fcproj reads: 4C of the two model widths timed (C = 768, 2048)
static int fcproj_shape(int C) { return C == 3072 || C == 8192; }

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    const int num_kernels = 6; // 0 is the copy bandwidth (the baseline), 1..5 the variants
    int only = parse_kernel_num(argc, argv, num_kernels);
    common_start("rmsnorm_quant: (N, C) " PRECISION_NAME " rows -> RMSNorm -> int8 codes + 1/s + rstd");
    rng_seed(1337);

    const int small = small_mode();
    // B*T of a GPT-2 124M step (B = 64, T = 1024); small mode (the CPU emulator): 301 rows, a
    // partial last block at every block size (4..32 rows per block)
    const int N = small ? 301 : 65536;
    // the BitLinear inputs: C for qkv, attproj and fc, 4C for fcproj; C = 768 and C = 2048.
    // Small mode: C = 200 (not a multiple of 32: lanes past the row's end; variant 3 skips it,
    // variant 4 takes it in registers, 25 bf16 vectors: lanes 25..31 hold none), 203 (no whole
    // 128-bit vectors: variant 4's fallback),
    // 256 (one 128-bit vector per lane), 2048 and 3072 (in bf16 8 and 12 vectors per lane: variant
    // 3's capacities 8 and 16, the second partly filled), 8192 (MAX_VECS vectors per lane in bf16:
    // the most variant 3 takes; in fp32 twice that: the fallback)
    const int Cs_gpu[] = {768, 3072, 2048, 8192}, Cs_small[] = {200, 203, 256, 2048, 3072, 8192};
    const int *Cs = small ? Cs_small : Cs_gpu;
    const int nC = small ? 6 : 4;
    const int block_sizes[] = {128, 256, 512, 1024};
    const int Cmax = 8192;
    const size_t nmax = (size_t)N * Cmax;

    double copy_gbs = small ? 0.0 : measure_copy_bandwidth(256u << 20);

    // random rows with a spread of scales (so that r and s vary from row to row), never zero;
    // as fch (variant 5's input) a spread of GELU's regions: its negative tail near 0, the bend, the line
    floatX *inp = (floatX *)mallocCheck(nmax * sizeof(floatX));
    for (size_t n = 0; n < (size_t)N; n++) {
        float scale = rng_uniform(0.1f, 10.0f);
        for (int i = 0; i < Cmax; i++) { inp[n * Cmax + i] = from_float<floatX>(scale * rng_uniform(-1.0f, 1.0f)); }
    }
    floatX *d_inp = to_device(inp, nmax);
    int8_t *d_codes = (int8_t *)cudaMallocCheck(nmax, "codes");
    floatX *d_xq = (floatX *)cudaMallocCheck(nmax * sizeof(floatX), "xq"); // variants 4 and 5's x_q output
    floatX *d_g = (floatX *)cudaMallocCheck(nmax * sizeof(floatX), "gelu(fch)"); // the two kernels' intermediate
    int8_t *d_codes2 = (int8_t *)cudaMallocCheck(nmax, "codes (two kernels)");
    float *d_inv_s = (float *)cudaMallocCheck(N * sizeof(float), "inv_s");
    float *d_rstd = (float *)cudaMallocCheck(N * sizeof(float), "rstd");
    float *d_inv_s2 = (float *)cudaMallocCheck(N * sizeof(float), "inv_s (two kernels)");
    float *d_rstd2 = (float *)cudaMallocCheck(N * sizeof(float), "rstd (two kernels)");
    int8_t *codes_ref = (int8_t *)mallocCheck(nmax), *codes_g = (int8_t *)mallocCheck(nmax);
    float *inv_s_ref = (float *)mallocCheck(N * sizeof(float)), *rstd_ref = (float *)mallocCheck(N * sizeof(float));
    float *inv_s_g = (float *)mallocCheck(N * sizeof(float));
    floatX *gelu_ref = (floatX *)mallocCheck(nmax * sizeof(floatX)); // variant 5's x = gelu(fch), the reference's

    // validate: the input of shape (N, C) is the first N*C values of inp, read as N rows of C
    for (int ci = 0; ci < nC; ci++) {
        int C = Cs[ci];
        size_t n_el = (size_t)N * C;
        rmsnorm_quant_cpu(codes_ref, inv_s_ref, rstd_ref, inp, N, C);
        for (int k = 1; k < num_kernels; k++) {
            if ((only > 0 && k != only) || (k == 3 && !variant3_fits(C))) { continue; }
            const floatX *x_ref = inp; // the rows x the CPU spec reads: inp, or for variant 5 gelu(inp)
            int8_t *codes2 = NULL;     // variant 5: the two kernels' outputs, which it must equal
            float *inv_s2 = NULL, *rstd2 = NULL;
            floatX *xq2 = NULL;
            if (k == 5) {
                // the two kernels on the GPU, codes then x_q (the backward's call), and their gelu(fch)
                gelu_then_rmsnorm_quant(d_g, d_codes2, d_inv_s2, d_rstd2, d_inp, N, C);
                bitlinear_input_forward(d_xq, NULL, NULL, d_rstd2, d_g, BL_PRE_NONE, N, C, 1, 1);
                cudaCheck(cudaDeviceSynchronize());
                codes2 = from_device(d_codes2, n_el); inv_s2 = from_device(d_inv_s2, N);
                rstd2 = from_device(d_rstd2, N); xq2 = from_device(d_xq, n_el);
                floatX *g_gpu = from_device(d_g, n_el);
                // the reference's x: the CPU's GELU, or the GPU's where tanhf rounds to another floatX
                #pragma omp parallel for
                for (size_t j = 0; j < n_el; j++) { gelu_ref[j] = gelu_stored_cpu(inp[j]); }
                size_t differ = 0;
                for (size_t j = 0; j < n_el; j++) {
                    float a = to_float(gelu_ref[j]), b = to_float(g_gpu[j]);
                    if (a != b) {
                        if (!(fabsf(a - b) <= 1e-6f + GELU_RTOL * fabsf(a))) {
                            printf("MISMATCH gelu(fch) at %zu (C %d): gpu %.9g, cpu %.9g (rtol %g)\n", j, C, b, a,
                                   GELU_RTOL);
                            exit(EXIT_FAILURE);
                        }
                        differ++;
                    }
                    gelu_ref[j] = g_gpu[j];
                }
                free(g_gpu);
                printf("  variant 5, C %d: gelu(fch): %zu of %zu values one rounding from the CPU's (within rtol %g)\n",
                       C, differ, n_el, GELU_RTOL);
                x_ref = gelu_ref;
                rmsnorm_quant_cpu(codes_ref, inv_s_ref, rstd_ref, x_ref, N, C);
            }
            for (int b = 0; b < (k >= 4 ? 1 : 4); b++) { // variants 4, 5: the trainer's launch configuration only
                if (k == 3 && block_sizes[b] > variant3_max_block(C)) { // more threads than its registers allow
                    printf("  variant 3, C %d: block %d skipped: %s\n", C, block_sizes[b], variant3_limit(C));
                    continue;
                }
                cudaCheck(cudaMemset(d_codes, 0x55, n_el)); // stale output must not pass
                cudaCheck(cudaMemset(d_inv_s, 0, N * sizeof(float)));
                cudaCheck(cudaMemset(d_rstd, 0, N * sizeof(float)));
                rmsnorm_quant(k, d_codes, d_inv_s, d_rstd, d_inp, N, C, block_sizes[b]);
                cudaCheck(cudaDeviceSynchronize());
                float *rstd_gpu = from_device(d_rstd, N), *inv_s_gpu = from_device(d_inv_s, N);
                int8_t *codes_gpu = from_device(d_codes, n_el);
                for (int n = 0; n < N; n++) {
                    if (!(fabsf(rstd_gpu[n] - rstd_ref[n]) <= RSTD_RTOL(C) * rstd_ref[n])) {
                        printf("MISMATCH rstd, variant %d, C %d, row %d: gpu %.9g, cpu %.9g (rtol %g)\n", k, C, n,
                               rstd_gpu[n], rstd_ref[n], RSTD_RTOL(C));
                        exit(EXIT_FAILURE);
                    }
                }
                // the spec evaluated with the GPU's r: exact
                #pragma omp parallel
                {
                    float *xn = (float *)mallocCheck(C * sizeof(float));
                    #pragma omp for
                    for (int n = 0; n < N; n++) {
                        rmsnorm_quant_row_cpu(codes_g + (size_t)n * C, inv_s_g + n, xn, x_ref + (size_t)n * C,
                                              rstd_gpu[n], C);
                    }
                    free(xn);
                }
                validate_exact("codes", codes_gpu, codes_g, n_el);
                validate_exact("inv_s", inv_s_gpu, inv_s_g, N);
                if (k >= 4) { // the backward's call: x_q alone, from the same kernel: the same rstd, x_q = code / s
                    cudaCheck(cudaMemset(d_xq, 0x55, n_el * sizeof(floatX)));
                    cudaCheck(cudaMemset(d_rstd, 0, N * sizeof(float)));
                    bitlinear_input_forward(d_xq, NULL, NULL, d_rstd, d_inp, k == 5 ? BL_PRE_GELU : BL_PRE_NONE, N, C,
                                            1, 1);
                    cudaCheck(cudaDeviceSynchronize());
                    float *rstd_xq = from_device(d_rstd, N);
                    floatX *xq_gpu = from_device(d_xq, n_el), *xq_ref = (floatX *)mallocCheck(n_el * sizeof(floatX));
                    validate_exact("rstd (x_q call vs codes call)", rstd_xq, rstd_gpu, N);
                    #pragma omp parallel for
                    for (int n = 0; n < N; n++) { // s = 127 / max|x_n| with the GPU's r, as the spec has it
                        float m = 0.0f;
                        for (int i = 0; i < C; i++) { m = fmaxf(m, fabsf(to_float(x_ref[(size_t)n * C + i]) * rstd_gpu[n])); }
                        float sc = absmax_from_max(m);
                        for (int i = 0; i < C; i++) {
                            xq_ref[(size_t)n * C + i] = from_float<floatX>(codes_g[(size_t)n * C + i] / sc);
                        }
                    }
                    validate_exact("xq", xq_gpu, xq_ref, n_el);
                    if (k == 5) { // the trainer's claim: one kernel from fch gives the two kernels' bits
                        validate_exact("codes (vs gelu_forward + variant 4)", codes_gpu, codes2, n_el);
                        validate_exact("inv_s (vs gelu_forward + variant 4)", inv_s_gpu, inv_s2, N);
                        validate_exact("rstd (vs gelu_forward + variant 4)", rstd_gpu, rstd2, N);
                        validate_exact("xq (vs gelu_forward + variant 4)", xq_gpu, xq2, n_el);
                    }
                    free(rstd_xq); free(xq_gpu); free(xq_ref);
                }
                // against the independent reference: off by one, at ties only
                size_t off = 0;
                for (int n = 0; n < N; n++) {
                    const floatX *x = x_ref + (size_t)n * C;
                    double m = 0.0;
                    for (int i = 0; i < C; i++) { m = fmax(m, fabs((double)to_float(x[i]))); }
                    for (int i = 0; i < C; i++) {
                        size_t j = (size_t)n * C + i;
                        int d = codes_gpu[j] - codes_ref[j];
                        if (d == 0) { continue; }
                        double q = 127.0 * to_float(x[i]) / m; // exact to 2^-52: far below TIE_RTOL
                        if (d > 1 || d < -1 || !(fabs(q - (floor(q) + 0.5)) <= TIE_RTOL * fabs(q))) {
                            printf("MISMATCH codes vs the independent reference at row %d, column %d: gpu %d, cpu %d, "
                                   "127 x / max|x| = %.9f is not at a tie\n", n, i, codes_gpu[j], codes_ref[j], q);
                            exit(EXIT_FAILURE);
                        }
                        off++;
                    }
                }
                if (b == 0) {
                    printf("  variant %d, C %d: rstd within rtol %.2g, codes and inv_s exact given rstd%s; "
                           "%zu of %zu codes off by one at ties vs the independent reference\n",
                           k, C, RSTD_RTOL(C), k == 5 ? " (x_q too), all four equal to gelu_forward + variant 4's"
                           : k == 4 ? " (x_q too)" : "", off, n_el);
                }
                free(rstd_gpu); free(inv_s_gpu); free(codes_gpu);
            }
            if (k == 5) { free(codes2); free(inv_s2); free(rstd2); free(xq2); }
        }
    }
    printf("All results match\n\n");
    const int ntimed = small ? 0 : nC; // small mode: validation only

    for (int ci = 0; ci < ntimed; ci++) {
        int C = Cs[ci];
        char shape[40];
        snprintf(shape, sizeof(shape), "(%d, %d) %s", N, C, PRECISION_NAME);
        // read the input; write the codes, inv_s and rstd
        double bytes = (double)N * C * sizeof(floatX) + (double)N * C + 8.0 * N;
        for (int k = 1; k < num_kernels; k++) {
            if (only > 0 && k != only) { continue; }
            if (k == 3 && !variant3_fits(C)) {
                printf("variant 3 skipped at C = %d: a row does not fit in one warp's registers\n", C);
                continue;
            }
            if (k == 5 && !fcproj_shape(C)) { continue; } // fcproj's rows only: 4C
            for (int b = 0; b < (k >= 4 ? 1 : 4); b++) { // variants 4, 5: their own block (128 at these C), shown as 128
                int block = block_sizes[b];
                if (k == 3 && block > variant3_max_block(C)) {
                    printf("variant 3 skipped at C = %d, block %d: %s\n", C, block, variant3_limit(C));
                    continue;
                }
                double ms = benchmark_ms([&]() { rmsnorm_quant(k, d_codes, d_inv_s, d_rstd, d_inp, N, C, block); });
                double gbs = bytes / (ms * 1e-3) / 1e9;
                char ratio[24];
                snprintf(ratio, sizeof(ratio), "%.0f%% of copy", 100.0 * gbs / copy_gbs);
                result_line("rmsnorm_quant", shape, variant_name(k), block, ms, gbs, "GB/s", ratio);
                if (k == 5) { // the two kernels it replaces: gelu(fch) written and read back besides
                    double ms2 = benchmark_ms([&]() { gelu_then_rmsnorm_quant(d_g, d_codes2, d_inv_s2, d_rstd2, d_inp,
                                                                              N, C); });
                    double bytes2 = bytes + 2.0 * N * C * sizeof(floatX), gbs2 = bytes2 / (ms2 * 1e-3) / 1e9;
                    snprintf(ratio, sizeof(ratio), "%.0f%% of copy", 100.0 * gbs2 / copy_gbs);
                    result_line("rmsnorm_quant", shape, "gelu_forward + 4 (two kernels)", block, ms2, gbs2, "GB/s",
                                ratio);
                    printf("C %d: variant 5 %.3f ms, gelu_forward + variant 4 %.3f ms (%.2fx)\n", C, ms, ms2, ms2 / ms);
                }
            }
        }
    }
    if (!small) {
        result_line("rmsnorm_quant", "256 MiB", "0 cudaMemcpy D2D (baseline)", 0, 2.0 * (256u << 20) / copy_gbs / 1e6,
                    copy_gbs, "GB/s", "100% of copy");
        print_results_table();
    }

    free(inp); free(codes_ref); free(codes_g); free(inv_s_ref); free(rstd_ref); free(inv_s_g); free(gelu_ref);
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_codes)); cudaCheck(cudaFree(d_xq)); cudaCheck(cudaFree(d_inv_s));
    cudaCheck(cudaFree(d_rstd)); cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_codes2)); cudaCheck(cudaFree(d_inv_s2));
    cudaCheck(cudaFree(d_rstd2));
    return 0;
}
