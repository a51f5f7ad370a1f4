/*
 ternary_gemv: the decode-time BitLinear, one token: a matrix-vector product of packed
 ternary weights with int8 activations,
     acc (N) = trits (N,K) @ x (K)                     exact in int32
     y   (N) = acc * gamma * inv_s + bias              float
 with the weights packed as in llmc/ternary_kernels.h (each row on its own):
     2-bit:   code = trit + 1, trit 4j+s in bits [2s+1:2s] of byte j          K/4 bytes per row
     base-3:  byte j = sum_k (t_{5j+k} + 1) * 3^k, 5 trits per byte           ceil(K/5) bytes per row,
              here with rows padded to a multiple of 16 bytes so that every row starts aligned
 The spec is matmul_i8_t2_ref / matmul_i8_t3_ref, run on the same packed bytes.

 Memory-bound: a GEMV reads every weight once and does 2 operations per weight. The
 measure is GB/s of packed weights read, and the speed-up over a bf16 GEMV (variant 0),
 which reads 16 bits per weight instead of 2 or 1.6.

 Build and run:
     make -C dev/cuda ternary_gemv && ./dev/cuda/ternary_gemv     all variants
     ./dev/cuda/ternary_gemv 2                                    variant 2 (and the baseline)

 Variants:
     0  cuBLAS bf16 GEMV (cublasGemmEx with n = 1) on dequantized weights: the baseline row
     1  2-bit, naive: one thread per row, one byte at a time (neighbouring threads read bytes K/4 apart)
     2  2-bit, one warp per row: 128-bit loads (64 trits), codes decoded 4 at a time into signed
        bytes and multiplied with __dp4a against x permuted once per block into shared memory
     3  1.6-bit base-3, one warp per row: 128-bit loads (80 trits), a 256-entry table in shared
        memory turns a byte into its first 4 trits, byte compares give the 5th; __dp4a as in 2

 Decoding codes to signed trits without a carry between bytes (c a byte in {0,1,2}):
     (c + 0x7f) ^ 0x80 = c - 1 as a signed byte      0x7f^0x80 = 0xff = -1, 0x80^0x80 = 0, 0x81^0x80 = 1
*/
#include "common.h" // defines: harness (random inputs, validation, timing, results); includes llmc/ headers

// variant 0 against its CPU reference (double sums of the same bf16 operands): the bf16 output
// rounding (2^-9 relative) and fp32 sums over K products; see bitlinear_forward.cu
#define GEMV_BF16_RTOL 1e-2
#define GEMV_BF16_ATOL 1e-2

// ----------------------------------------------------------------------------
// CPU reference

// y from acc, one definition for CPU and GPU: fmaf is one rounding on both
__host__ __device__ static inline float gemv_epilogue(int32_t acc, float inv_s, float gamma, float bias_n) {
    return fmaf((float)acc, gamma * inv_s, bias_n);
}

// acc (N) by the spec for one format (per_byte 4: 2-bit, 5: base-3, unpadded rows), then y
static void ternary_gemv_cpu(int32_t *acc, float *y, const int8_t *x, const uint8_t *packed, int per_byte,
                             float inv_s, float gamma, const float *bias, int K, int N) {
    if (per_byte == T2_PER_BYTE) { matmul_i8_t2_ref(acc, x, packed, 1, K, N); }
    else { matmul_i8_t3_ref(acc, x, packed, 1, K, N); }
    for (int n = 0; n < N; n++) { y[n] = gemv_epilogue(acc[n], inv_s, gamma, bias[n]); }
}

// ----------------------------------------------------------------------------
// GPU kernels

__global__ void dequantize_kernel(floatX *out, const int8_t *q, float scale, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { out[i] = from_float<floatX>((float)q[i] * scale); }
}

// 4 codes {0,1,2} in the bytes of c -> the 4 trits as signed bytes (see the header)
__device__ static inline int codes_to_trits(uint32_t c) { return (int)((c + 0x7f7f7f7fu) ^ 0x80808080u); }

__device__ static inline int warp_reduce_sum_int(int v) {
    for (int off = 16; off > 0; off >>= 1) { v += __shfl_xor_sync(0xffffffffu, v, off); }
    return v;
}

// --- variant 1: one thread per row

__global__ void ternary_gemv_kernel1(float *y, int32_t *acc_out, const uint8_t *packed, const int8_t *x, float inv_s,
                                     float gamma, const float *bias, int K, int N) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) { return; }
    const uint8_t *w = packed + (size_t)n * (K / 4);
    int acc = 0;
    for (int j = 0; j < K / 4; j++) {
        uint32_t b = w[j];
        for (int s = 0; s < 4; s++) { acc += ((int)((b >> (2 * s)) & 3u) - 1) * x[4 * j + s]; }
    }
    y[n] = gemv_epilogue(acc, inv_s, gamma, bias[n]);
    acc_out[n] = acc;
}

// --- variant 2: 2-bit, one warp per row, 128-bit loads, dp4a

// A row is K/64 chunks of 16 bytes; chunk c, word w (bytes 4w..4w+3 of the chunk) holds trits
// 64c + 16w + 4b + s in bits [2s+1:2s] of its byte b. Shifting the word by 2s and masking gives
// plane s: the codes of trits 64c + 16w + 4b + s, b = 0..3, one per byte, which meet the x word
//     xs(c, w, s) byte b = x[64c + 16w + 4b + s]
// stored at int4 xs4[((c / 32) * 4 + w) * 32 + c % 32], component s: for a given (w, s) the 32
// lanes (c = lane + 32i) read 32 consecutive 16-byte entries, a conflict-free pattern.
__device__ static inline int xs2_index(int c, int w) { return ((c >> 5) * 4 + w) * 32 + (c & 31); }

__global__ void ternary_gemv_kernel2(float *y, int32_t *acc_out, const uint8_t *packed, const int8_t *x, float inv_s,
                                     float gamma, const float *bias, int K, int N) {
    extern __shared__ int4 xs4[];
    const int nchunk = K / 64;
    // permute x into xs4, one 32-bit word (4 bytes of x) per thread per step
    int *xs32 = reinterpret_cast<int *>(xs4);
    for (int u = threadIdx.x; u < nchunk * 16; u += blockDim.x) {
        int c = u / 16, w = (u / 4) % 4, s = u % 4; // u = (c*4 + w)*4 + s
        const int8_t *xp = x + 64 * c + 16 * w + s;
        uint32_t word = (uint32_t)(uint8_t)xp[0] | (uint32_t)(uint8_t)xp[4] << 8 | (uint32_t)(uint8_t)xp[8] << 16 |
                        (uint32_t)(uint8_t)xp[12] << 24;
        xs32[xs2_index(c, w) * 4 + s] = (int)word;
    }
    __syncthreads(); // xs4 complete before any warp reads it
    const int lane = threadIdx.x % 32, n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) { return; } // after the barrier: every thread took part in building xs4
    const uint4 *row = reinterpret_cast<const uint4 *>(packed + (size_t)n * (K / 4)); // K/4 % 16 == 0: aligned
    int acc = 0;
    for (int c = lane; c < nchunk; c += 32) {
        uint4 v = row[c];
        uint32_t words[4] = {v.x, v.y, v.z, v.w};
        #pragma unroll
        for (int w = 0; w < 4; w++) {
            int4 xv = xs4[xs2_index(c, w)];
            acc = __dp4a(codes_to_trits((words[w] >> 0) & 0x03030303u), xv.x, acc);
            acc = __dp4a(codes_to_trits((words[w] >> 2) & 0x03030303u), xv.y, acc);
            acc = __dp4a(codes_to_trits((words[w] >> 4) & 0x03030303u), xv.z, acc);
            acc = __dp4a(codes_to_trits((words[w] >> 6) & 0x03030303u), xv.w, acc);
        }
    }
    acc = warp_reduce_sum_int(acc);
    if (lane == 0) {
        y[n] = gemv_epilogue(acc, inv_s, gamma, bias[n]);
        acc_out[n] = acc;
    }
}

// --- variant 3: base-3, one warp per row, table lookup

// A row is ld3/16 chunks of 16 bytes; chunk c, word w, byte b holds the 5 trits starting at
//     t0 = 80c + 20w + 5b      (digit j = trit t0 + j, the first digit least significant)
// lut[v] = the trits of digits 0..3 of v as signed bytes; digit 4 = v / 81 comes from two byte
// compares. They meet these x words, 5 per (c, w), q = 0..4:
//     q = b < 4:  bytes j = 0..3:  x[80c + 20w + 5b + j]
//     q = 4:      bytes b = 0..3:  x[80c + 20w + 5b + 4]
// stored at xs32[((c / 32) * 20 + w * 5 + q) * 32 + c % 32] (conflict-free as in variant 2),
// zero past K: padding trits meet zeros.
__device__ static inline int xs3_index(int c, int wq) { return ((c >> 5) * 20 + wq) * 32 + (c & 31); }

__global__ void ternary_gemv_kernel3(float *y, int32_t *acc_out, const uint8_t *packed, int ld3, const int8_t *x,
                                     float inv_s, float gamma, const float *bias, int K, int N) {
    extern __shared__ int smem3[];
    int *lut = smem3;           // 256 entries
    int *xs32 = smem3 + 256;
    const int nchunk = ld3 / 16;
    for (int v = threadIdx.x; v < 256; v += blockDim.x) {
        uint32_t word = 0, r = (uint32_t)v;
        for (int j = 0; j < 4; j++) {
            word |= (uint32_t)(uint8_t)((int)(r % 3) - 1) << (8 * j);
            r /= 3;
        }
        lut[v] = v < 243 ? (int)word : 0; // 243..255 never occur in valid data
    }
    for (int u = threadIdx.x; u < nchunk * 20; u += blockDim.x) {
        int c = u / 20, wq = u % 20, w = wq / 5, q = wq % 5;
        int t0 = 80 * c + 20 * w;
        uint32_t word = 0;
        for (int j = 0; j < 4; j++) {
            int t = q < 4 ? t0 + 5 * q + j : t0 + 5 * j + 4;
            word |= (uint32_t)(uint8_t)(t < K ? x[t] : 0) << (8 * j);
        }
        xs32[xs3_index(c, wq)] = (int)word;
    }
    __syncthreads(); // lut and xs32 complete before any warp reads them
    const int lane = threadIdx.x % 32, n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) { return; }
    const uint4 *row = reinterpret_cast<const uint4 *>(packed + (size_t)n * ld3); // ld3 % 16 == 0: aligned
    int acc = 0;
    for (int c = lane; c < nchunk; c += 32) {
        uint4 v = row[c];
        uint32_t words[4] = {v.x, v.y, v.z, v.w};
        #pragma unroll
        for (int w = 0; w < 4; w++) {
            uint32_t wd = words[w];
            #pragma unroll
            for (int b = 0; b < 4; b++) { acc = __dp4a(lut[(wd >> (8 * b)) & 0xffu], xs32[xs3_index(c, w * 5 + b)], acc); }
            // digit 4 of each byte: 0 below 81, 1 below 162, else 2; as a trit: -1, 0, +1
            uint32_t ge81 = __vcmpgeu4(wd, 0x51515151u), ge162 = __vcmpgeu4(wd, 0xa2a2a2a2u); // 0xff where true
            int e = (int)(~ge81 | (ge162 & 0x01010101u));
            acc = __dp4a(e, xs32[xs3_index(c, w * 5 + 4)], acc);
        }
    }
    acc = warp_reduce_sum_int(acc);
    if (lane == 0) {
        y[n] = gemv_epilogue(acc, inv_s, gamma, bias[n]);
        acc_out[n] = acc;
    }
}

// ----------------------------------------------------------------------------
// launchers

static cublasHandle_t cublas_handle;

typedef struct {
    const floatX *wdeq, *xdeq;         // variant 0
    floatX *y0;
    const uint8_t *packed2, *packed3;  // 2-bit rows (K/4 bytes), base-3 rows padded to ld3 bytes
    int ld3;
    const int8_t *x;
    float inv_s, gamma;
    const float *bias;
    float *y;
    int32_t *acc;
} GemvArgs;

// y0 (N) = wdeq (N,K) @ xdeq (K): column-major, wdeq is (K,N) ld K, transposed
static void ternary_gemv0(const GemvArgs &a, int K, int N) {
    const float alpha = 1.0f, beta = 0.0f;
    cublasCheck(cublasGemmEx(cublas_handle, CUBLAS_OP_T, CUBLAS_OP_N, N, 1, K, &alpha, a.wdeq, CUBLAS_FLOATX, K, a.xdeq,
                             CUBLAS_FLOATX, K, &beta, a.y0, CUBLAS_FLOATX, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static void ternary_gemv1(const GemvArgs &a, int K, int N, int block) {
    ternary_gemv_kernel1<<<ceil_div(N, block), block>>>(a.y, a.acc, a.packed2, a.x, a.inv_s, a.gamma, a.bias, K, N);
    cudaCheck(cudaGetLastError());
}

static void ternary_gemv2(const GemvArgs &a, int K, int N, int block) {
    int nchunk_pad = ceil_div(K / 64, 32) * 32;
    size_t smem = (size_t)nchunk_pad * 4 * sizeof(int4);
    ternary_gemv_kernel2<<<ceil_div(N, block / 32), block, smem>>>(a.y, a.acc, a.packed2, a.x, a.inv_s, a.gamma,
                                                                   a.bias, K, N);
    cudaCheck(cudaGetLastError());
}

static void ternary_gemv3(const GemvArgs &a, int K, int N, int block) {
    int nchunk_pad = ceil_div(a.ld3 / 16, 32) * 32;
    size_t smem = (256 + (size_t)nchunk_pad * 20) * sizeof(int);
    ternary_gemv_kernel3<<<ceil_div(N, block / 32), block, smem>>>(a.y, a.acc, a.packed3, a.ld3, a.x, a.inv_s,
                                                                   a.gamma, a.bias, K, N);
    cudaCheck(cudaGetLastError());
}

// dispatcher
static void ternary_gemv(int kernel_num, const GemvArgs &a, int K, int N, int block) {
    switch (kernel_num) {
    case 0: ternary_gemv0(a, K, N); break;
    case 1: ternary_gemv1(a, K, N, block); break;
    case 2: ternary_gemv2(a, K, N, block); break;
    case 3: ternary_gemv3(a, K, N, block); break;
    default: fprintf(stderr, "no variant %d\n", kernel_num); exit(EXIT_FAILURE);
    }
}

static const char *variant_name(int k) {
    switch (k) {
    case 0: return "0 cuBLAS " PRECISION_NAME " GEMV (baseline)";
    case 1: return "1 2-bit, thread per row";
    case 2: return "2 2-bit, warp per row, dp4a";
    default: return "3 1.6-bit base-3, LUT, dp4a";
    }
}

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    const int num_kernels = 4;
    int only = parse_kernel_num(argc, argv, num_kernels);
    common_start("ternary_gemv: packed ternary (N,K) @ int8 x (K) -> (N), one token");
    cublasCheck(cublasCreate(&cublas_handle));
    rng_seed(1337);

    const int small = small_mode();
    // (N, K) of qkv, attproj, fc, fcproj for C = 768 and 2048. Small mode (the CPU emulator):
    // row counts that leave the last block partial at every block size (2..16 rows per block);
    // K = 64: one 2-bit chunk and one base-3 chunk with padding trits past K; K = 320: fewer
    // chunks than lanes; K = 2752: more chunks than lanes (43 2-bit, 35 base-3: a second step)
    const int shapes_gpu[][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072},
                                 {6144, 2048}, {2048, 2048}, {8192, 2048}, {2048, 8192}};
    const int shapes_small[][2] = {{100, 64}, {37, 320}, {300, 2752}};
    const int (*shapes)[2] = small ? shapes_small : shapes_gpu;
    const int nshapes = small ? sizeof(shapes_small) / sizeof(shapes_small[0]) : sizeof(shapes_gpu) / sizeof(shapes_gpu[0]);
    const int block_sizes[] = {64, 128, 256, 512};
    const int Kmax = small ? 2752 : 8192, Nmax = small ? 300 : 8192;

    int8_t *x = make_random_int8(Kmax);
    int8_t *trits = make_random_trits((size_t)Nmax * Kmax);
    float *bias = make_random_float(Nmax, -0.1f, 0.1f);
    const float gamma = 0.0173f, inv_s = 0.0213f;

    GemvArgs a;
    a.ld3 = 0; a.inv_s = inv_s; a.gamma = gamma;
    int8_t *d_x = to_device(x, Kmax), *d_trits = to_device(trits, (size_t)Nmax * Kmax);
    float *d_bias = to_device(bias, Nmax);
    floatX *d_wdeq = (floatX *)cudaMallocCheck((size_t)Nmax * Kmax * sizeof(floatX), "wdeq");
    floatX *d_xdeq = (floatX *)cudaMallocCheck(Kmax * sizeof(floatX), "xdeq");
    uint8_t *d_packed2 = (uint8_t *)cudaMallocCheck((size_t)Nmax * Kmax / 4, "packed2");
    uint8_t *d_packed3 = (uint8_t *)cudaMallocCheck((size_t)Nmax * (Kmax / 5 + 16), "packed3");
    a.wdeq = d_wdeq; a.xdeq = d_xdeq; a.x = d_x; a.bias = d_bias; a.packed2 = d_packed2; a.packed3 = d_packed3;
    a.y0 = (floatX *)cudaMallocCheck(Nmax * sizeof(floatX), "y0");
    a.y = (float *)cudaMallocCheck(Nmax * sizeof(float), "y");
    a.acc = (int32_t *)cudaMallocCheck(Nmax * sizeof(int32_t), "acc");

    int32_t *acc_ref = (int32_t *)mallocCheck(Nmax * sizeof(int32_t)), *acc3_ref = (int32_t *)mallocCheck(Nmax * 4);
    float *y_ref = (float *)mallocCheck(Nmax * sizeof(float)), *y3_ref = (float *)mallocCheck(Nmax * sizeof(float));
    double *y0_ref = (double *)mallocCheck(Nmax * sizeof(double));
    uint8_t *packed2 = (uint8_t *)mallocCheck((size_t)Nmax * Kmax / 4);
    uint8_t *packed3 = (uint8_t *)mallocCheck((size_t)Nmax * (Kmax / 5 + 1));
    uint8_t *packed3_pad = (uint8_t *)mallocCheck((size_t)Nmax * (Kmax / 5 + 16));

    // per shape: pack on the CPU (the spec's packers), upload, validate, time
    for (int pass = 0; pass < 2; pass++) { // pass 0 validates every shape, pass 1 times them
        if (pass == 1) { printf("All results match\n\n"); }
        if (pass == 1 && small) { break; } // small mode: validation only
        for (int s = 0; s < nshapes; s++) {
            const int N = shapes[s][0], K = shapes[s][1];
            // 128-bit loads of whole 2-bit rows: K/4 a multiple of 16 bytes (all shapes here)
            if (K % 64 != 0) { fprintf(stderr, "K must be a multiple of 64\n"); exit(EXIT_FAILURE); }
            const size_t rb3 = pack3_row_bytes(K);
            a.ld3 = (int)((rb3 + 15) / 16 * 16); // base-3 rows padded to 16 bytes on the GPU
            pack2_rows(packed2, trits, N, K);    // the (N,K) trits are the first N*K of the array
            pack3_rows(packed3, trits, N, K);
            memset(packed3_pad, 0, (size_t)N * a.ld3);
            for (int n = 0; n < N; n++) { memcpy(packed3_pad + (size_t)n * a.ld3, packed3 + n * rb3, rb3); }
            cudaCheck(cudaMemcpy(d_packed2, packed2, (size_t)N * K / 4, cudaMemcpyHostToDevice));
            cudaCheck(cudaMemcpy(d_packed3, packed3_pad, (size_t)N * a.ld3, cudaMemcpyHostToDevice));
            dequantize_kernel<<<ceil_div((long long)N * K, 256), 256>>>(d_wdeq, d_trits, gamma, (size_t)N * K);
            cudaCheck(cudaGetLastError());
            dequantize_kernel<<<ceil_div(K, 256), 256>>>(d_xdeq, d_x, inv_s, (size_t)K);
            cudaCheck(cudaGetLastError());
            char shape[40];
            snprintf(shape, sizeof(shape), "%d -> %d", K, N);

            if (pass == 0) {
                ternary_gemv_cpu(acc_ref, y_ref, x, packed2, T2_PER_BYTE, inv_s, gamma, bias, K, N);
                ternary_gemv_cpu(acc3_ref, y3_ref, x, packed3, T3_PER_BYTE, inv_s, gamma, bias, K, N);
                validate_exact("CPU: 2-bit and base-3 references agree", acc3_ref, acc_ref, N);
                for (int n = 0; n < N; n++) { // variant 0: the same bf16 operands, in double
                    double sum = 0.0;
                    for (int k = 0; k < K; k++) {
                        sum += (double)to_float(from_float<floatX>((float)trits[(size_t)n * K + k] * gamma)) *
                               to_float(from_float<floatX>((float)x[k] * inv_s));
                    }
                    y0_ref[n] = sum;
                }
                for (int k = 0; k < num_kernels; k++) {
                    if (only > 0 && k != only && k != 0) { continue; }
                    for (int b = 0; b < (k == 0 ? 1 : 4); b++) {
                        cudaCheck(cudaMemset(a.y, 0x7f, N * sizeof(float))); // stale output must not pass
                        cudaCheck(cudaMemset(a.acc, 0x7f, N * sizeof(int32_t)));
                        ternary_gemv(k, a, K, N, block_sizes[b]);
                        cudaCheck(cudaDeviceSynchronize());
                        if (k == 0) {
                            floatX *y0 = from_device(a.y0, N);
                            validate_close("variant 0 y", y0, y0_ref, N, GEMV_BF16_ATOL, GEMV_BF16_RTOL);
                            free(y0);
                        } else {
                            int32_t *acc = from_device(a.acc, N);
                            float *y = from_device(a.y, N);
                            validate_exact("acc (int32)", acc, acc_ref, N);
                            validate_exact("y", y, y_ref, N);
                            free(acc); free(y);
                        }
                    }
                    if (k > 0) { printf("  variant %d, %s: int32 accumulators and outputs exact\n", k, shape); }
                }
                continue;
            }

            double ms0 = 0.0;
            for (int k = 0; k < num_kernels; k++) {
                if (only > 0 && k != only && k != 0) { continue; }
                // bytes of weights read: bf16, 2-bit, or base-3 rows with their padding
                double wbytes = k == 0 ? 2.0 * N * K : k < 3 ? N * K / 4.0 : (double)N * a.ld3;
                for (int b = 0; b < (k == 0 ? 1 : 4); b++) {
                    int block = block_sizes[b];
                    double ms = benchmark_ms([&]() { ternary_gemv(k, a, K, N, block); });
                    if (k == 0) { ms0 = ms; }
                    char ratio[24];
                    snprintf(ratio, sizeof(ratio), "%.2fx v0", ms0 / ms);
                    result_line("ternary_gemv", shape, variant_name(k), k == 0 ? 0 : block, ms,
                                wbytes / (ms * 1e-3) / 1e9, "GB/s", ratio);
                }
            }
        }
    }
    if (!small) { print_results_table(); }

    free(x); free(trits); free(bias); free(acc_ref); free(acc3_ref); free(y_ref); free(y3_ref); free(y0_ref);
    free(packed2); free(packed3); free(packed3_pad);
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_trits)); cudaCheck(cudaFree(d_bias)); cudaCheck(cudaFree(d_wdeq));
    cudaCheck(cudaFree(d_xdeq)); cudaCheck(cudaFree(d_packed2)); cudaCheck(cudaFree(d_packed3));
    cudaCheck(cudaFree(a.y0)); cudaCheck(cudaFree(a.y)); cudaCheck(cudaFree(a.acc));
    cublasCheck(cublasDestroy(cublas_handle));
    return 0;
}
