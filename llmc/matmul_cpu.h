/*
 llmc/matmul_cpu.h: the trainer's fp32 matmuls, register-blocked for AVX2 and AVX-512.

 train_gpt2_1bit.c's matmul_forward / matmul_backward are the spec (plain dot-product loops in
 4x2 tiles); they call these first, and run their own loops when these return 0 (the scalar
 path, and shapes too small to pay for the packing). The same products, summed in another order:
 each output is one float sum along K, so it differs from the spec's by rounding only (within
 2 * gamma_K * sum_k |a_k b_k|, the bound tests/test_kernels.c checks), and it does not depend on
 the number of threads (tests/test_resume.sh needs bit-identical runs).

   matmul_cpu_forward(out, inp, weight, bias, M, K, N)    out (M,N) = inp (M,K) @ weight (N,K)^T + bias
   matmul_cpu_backward(dinp, dweight, dout, inp, weight, M, K, N)
                          dinp (M,K) += dout (M,N) @ weight (N,K)    (dinp may be NULL)
                          dweight (N,K) += dout^T (N,M) @ inp (M,K)  (no transposed copies: the packing
                                                                      reads each operand in its layout)
   matmul_cpu_backend()   "avx512", "avx2" or "scalar" (the spec)

 How (the GotoBLAS / BLIS scheme): C (M,N) = A (M,K) B (K,N), with A and B given by strides.
   - K is cut in blocks of KC, N in blocks of NC, M in blocks of MC. For each (N block, K block)
     the threads pack B into panels of NR columns (KC x NR, k-major: row k of a panel is NR
     consecutive floats), for each M block the MR-row panels of A (KC x MR, k-major).
   - the micro-kernel computes an MR x NR tile of C in registers: per k, NR/W vector loads of B
     (W = 16 floats in a zmm, 8 in a ymm), MR broadcasts of A, MR * NR/W FMAs. AVX-512: 8 x 32
     (16 zmm accumulators, 2 B vectors: 10 loads per 16 FMAs); AVX2: 6 x 16 (12 ymm accumulators,
     2 B vectors, 1 broadcast register: 15 of the 16 registers).
   - the B panel (KC x NR: 96 KiB at KC = 768) stays in L2 next to the A panels of the M block
     (MC x KC: 768 KiB at MC = 256); each tile of C is read and written once per K block. Block
     sizes measured on Zen 4 (1 MiB L2): KC = 128 to 1024, MC = 96 to 256; KC = 768 (GPT-2's K in
     one block, the tile of C written once) was the fastest, 10-30% above KC = 192. The threads
     share the packed blocks and split the B panels between them.
   - the order of the sums: for each output, k = 0..K-1 in one register, K block after K block
     (C + block, in memory), then the bias: fixed by the shapes alone.
*/
#ifndef LLMC_MATMUL_CPU_H
#define LLMC_MATMUL_CPU_H

#include <stddef.h>
#include <string.h>
#include "utils.h"        // defines: mallocCheck
#include "cpu_features.h" // defines: cpu_path, CPU_PATH_*, CPU_TARGET_BEGIN_*
#ifdef TG1_CPU_X86
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && !defined(_OPENMP)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#endif

#ifndef MM_KC
#define MM_KC 768   // K block: GPT-2's K = 768 in one (each tile of C written once); measured 128..1024
#endif
#ifndef MM_MC
#define MM_MC 256   // M block: the packed A block (MC x KC floats) fits L2
#endif
#define MM_NC 3072  // N block: the packed B block (KC x NC floats, 9 MiB) is shared by the threads in L3
#define MM_MIN_M 16 // fewer rows of A (decoding: M = 1): the spec's dot products, which read B once

#ifdef TG1_CPU_X86

// a micro-kernel: C[0..mr) x [0..nr) (ldc) = (load_c ? C : 0) + Ap (kc x MR) Bp (kc x NR) (+ bias)
typedef void (*mm_kernel_fn)(int kc, const float *Ap, const float *Bp, float *C, size_t ldc, int load_c,
                             const float *bias, int mr, int nr);

// ----------------------------------------------------------------------------
// AVX-512: 8 x 32

#define MM512_MR 8
#define MM512_NR 32
CPU_TARGET_BEGIN_AVX512
static void mm512_kernel(int kc, const float *Ap, const float *Bp, float *C, size_t ldc, int load_c,
                         const float *bias, int mr, int nr) {
    __m512 c[MM512_MR][2];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MM512_MR; r++) { c[r][0] = _mm512_setzero_ps(); c[r][1] = _mm512_setzero_ps(); }
    _Pragma("GCC unroll 2")
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(Bp + MM512_NR * k), b1 = _mm512_loadu_ps(Bp + MM512_NR * k + 16);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MM512_MR; r++) {
            __m512 a = _mm512_set1_ps(Ap[MM512_MR * k + r]);
            c[r][0] = _mm512_fmadd_ps(a, b0, c[r][0]);
            c[r][1] = _mm512_fmadd_ps(a, b1, c[r][1]);
        }
    }
    // the columns of the tile inside C: masks for a tile at the right edge
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : (nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0);
    __m512 bias0 = _mm512_setzero_ps(), bias1 = bias0;
    if (bias) { bias0 = _mm512_maskz_loadu_ps(m0, bias); bias1 = _mm512_maskz_loadu_ps(m1, bias + 16); }
    // (every loop over c unrolled, so that c stays in registers)
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MM512_MR; r++) {
        if (r < mr) {
            float *cr = C + r * ldc;
            __m512 v0 = c[r][0], v1 = c[r][1];
            if (load_c) { v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), v0); v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), v1); }
            if (bias) { v0 = _mm512_add_ps(v0, bias0); v1 = _mm512_add_ps(v1, bias1); }
            _mm512_mask_storeu_ps(cr, m0, v0);
            _mm512_mask_storeu_ps(cr + 16, m1, v1);
        }
    }
}
CPU_TARGET_END

// ----------------------------------------------------------------------------
// AVX2: 6 x 16

#define MM256_MR 6
#define MM256_NR 16
CPU_TARGET_BEGIN_AVX2
static void mm256_kernel(int kc, const float *Ap, const float *Bp, float *C, size_t ldc, int load_c,
                         const float *bias, int mr, int nr) {
    __m256 c[MM256_MR][2];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MM256_MR; r++) { c[r][0] = _mm256_setzero_ps(); c[r][1] = _mm256_setzero_ps(); }
    _Pragma("GCC unroll 2")
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(Bp + MM256_NR * k), b1 = _mm256_loadu_ps(Bp + MM256_NR * k + 8);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MM256_MR; r++) {
            __m256 a = _mm256_broadcast_ss(Ap + MM256_MR * k + r);
            c[r][0] = _mm256_fmadd_ps(a, b0, c[r][0]);
            c[r][1] = _mm256_fmadd_ps(a, b1, c[r][1]);
        }
    }
    // (every loop over c unrolled, so that c stays in registers)
    if (mr == MM256_MR && nr == MM256_NR) {
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MM256_MR; r++) {
            float *cr = C + r * ldc;
            __m256 v0 = c[r][0], v1 = c[r][1];
            if (load_c) { v0 = _mm256_add_ps(_mm256_loadu_ps(cr), v0); v1 = _mm256_add_ps(_mm256_loadu_ps(cr + 8), v1); }
            if (bias) { v0 = _mm256_add_ps(v0, _mm256_loadu_ps(bias)); v1 = _mm256_add_ps(v1, _mm256_loadu_ps(bias + 8)); }
            _mm256_storeu_ps(cr, v0);
            _mm256_storeu_ps(cr + 8, v1);
        }
        return;
    }
    // a tile at an edge: through memory, the same operations element by element
    float t[MM256_MR][MM256_NR];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MM256_MR; r++) { _mm256_storeu_ps(t[r], c[r][0]); _mm256_storeu_ps(t[r] + 8, c[r][1]); }
    for (int r = 0; r < mr; r++) {
        for (int j = 0; j < nr; j++) {
            float v = t[r][j];
            if (load_c) { v = C[r * ldc + j] + v; }
            if (bias) { v = v + bias[j]; }
            C[r * ldc + j] = v;
        }
    }
}
CPU_TARGET_END

// ----------------------------------------------------------------------------
// packing and the blocked loops

// Ap (panel p of kc x MR) <- A[m0 + p*MR ..) x [k0 .. k0+kc), zero rows past mc, when the rows of A
// are contiguous (csa = 1: the forward's input, the backward's dout): on AVX-512 (MR = 8), 8 x 8 blocks
// transposed in registers (mm_transpose8x8, below; element by element they took 5% of an fp step). On
// AVX2 (MR = 6) element by element: through an 8 x 8 tile it was slower (bench_kernels)
static void mm_transpose8x8(float *dst, size_t ldd, const float *src, size_t lds);
static void mm_pack_a_rows(float *Ap, const float *A, size_t rsa, int m0, int mc, int k0, int kc, int MR, int p) {
    float *dst = Ap + (size_t)p * kc * MR;
    const int ni = mc - p * MR < MR ? mc - p * MR : MR;
    const float *src = A + (size_t)(m0 + p * MR) * rsa + k0;
    int k = 0;
    if (MR == 8 && ni == 8) {
        for (; k + 8 <= kc; k += 8) { mm_transpose8x8(dst + (size_t)k * MR, (size_t)MR, src + k, rsa); }
    }
    for (; k < kc; k++) { // the rest (and a panel at the bottom edge) element by element
        for (int r = 0; r < MR; r++) { dst[(size_t)k * MR + r] = r < ni ? src[(size_t)r * rsa + k] : 0.0f; }
    }
}

// the packed A block (every panel of A[m0 .. m0+mc) x [k0 .. k0+kc)), its work split between the
// threads of the enclosing parallel region (the barrier of its omp for: packed before anyone reads it)
static void mm_pack_a_block(float *Ap, const float *A, size_t rsa, size_t csa, int m0, int mc, int k0, int kc, int MR) {
    const int mpanels = (mc + MR - 1) / MR;
    if (rsa == 1) { // columns of A are contiguous (A = dout^T in dW): each thread sweeps whole rows of dout
        #pragma omp for schedule(static)
        for (int k = 0; k < kc; k++) {
            const float *src = A + (size_t)(k0 + k) * csa + m0;
            for (int p = 0; p < mpanels; p++) {
                float *dst = Ap + ((size_t)p * kc + k) * MR;
                const int ni = mc - p * MR < MR ? mc - p * MR : MR;
                for (int r = 0; r < MR; r++) { dst[r] = r < ni ? src[p * MR + r] : 0.0f; }
            }
        }
        return;
    }
    // otherwise csa = 1 (the hooks below pass no other layout of A)
    #pragma omp for schedule(static)
    for (int p = 0; p < mpanels; p++) { mm_pack_a_rows(Ap, A, rsa, m0, mc, k0, kc, MR, p); }
}

CPU_TARGET_BEGIN_AVX2
// dst[t * ldd + i] = src[i * lds + t] for an 8 x 8 block (the forward's weight rows into B panels):
// three rounds of shuffles, 24 ops for 64 floats
static void mm_transpose8x8(float *dst, size_t ldd, const float *src, size_t lds) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) { r[i] = _mm256_loadu_ps(src + i * lds); }
    for (int i = 0; i < 8; i += 2) { // pairs of rows: elements 2k, 2k+1 interleaved
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) { // groups of 4 rows: 4 elements of a column together per 128-bit lane
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) { // the two 128-bit lanes: columns i and i + 4
        _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}
CPU_TARGET_END

// the packed B block (every panel of B[k0 .. k0+kc) x [n0 .. n0+nc), zero columns past nc), its work
// split between the threads of the enclosing parallel region (the barrier of its omp for)
static void mm_pack_b_block(float *Bp, const float *B, size_t rsb, size_t csb, int n0, int nc, int k0, int kc, int NR) {
    const int npanels = (nc + NR - 1) / NR;
    if (csb == 1) { // rows of B are contiguous (dX's weight, dW's input): each thread sweeps whole rows
        #pragma omp for schedule(static)
        for (int k = 0; k < kc; k++) {
            const float *src = B + (size_t)(k0 + k) * rsb + n0;
            for (int q = 0; q < npanels; q++) {
                float *dst = Bp + ((size_t)q * kc + k) * NR;
                const int nj = nc - q * NR < NR ? nc - q * NR : NR;
                for (int j = 0; j < NR; j++) { dst[j] = j < nj ? src[q * NR + j] : 0.0f; }
            }
        }
        return;
    }
    // columns of B are contiguous (B = weight^T in the forward): 8 x 8 blocks transposed in
    // registers (element by element, the reads jump from row to row of the weight: 5x slower)
    #pragma omp for schedule(static)
    for (int q = 0; q < npanels; q++) {
        float *dst = Bp + (size_t)q * kc * NR;
        const int nj = nc - q * NR < NR ? nc - q * NR : NR;
        const float *src = B + (size_t)k0 * rsb + (size_t)(n0 + q * NR) * csb;
        for (int j0 = 0; j0 < NR; j0 += 8) {
            int k = 0;
            if (rsb == 1 && j0 + 8 <= nj) {
                for (; k + 8 <= kc; k += 8) { mm_transpose8x8(dst + (size_t)k * NR + j0, (size_t)NR, src + (size_t)j0 * csb + k, csb); }
            }
            for (; k < kc; k++) {
                for (int j = j0; j < j0 + 8; j++) { dst[k * NR + j] = j < nj ? src[(size_t)k * rsb + (size_t)j * csb] : 0.0f; }
            }
        }
    }
}

// the packed blocks, grown, never shrunk (shared by the threads of one call)
static float *mm_buffer(size_t floats, int which) {
    static float *buf[2] = {NULL, NULL};
    static size_t cap[2] = {0, 0};
    if (floats > cap[which]) {
        free(buf[which]);
        buf[which] = (float *)mallocCheck(floats * sizeof(float) + 64);
        cap[which] = floats;
    }
    return buf[which];
}

// C (M,N) (ldc) = (accumulate ? C : 0) + A (M,K) B (K,N) (+ bias (N)); A[i][k] at A + i*rsa + k*csa,
// B[k][j] at B + k*rsb + j*csb
static void mm_gemm(float *C, size_t ldc, const float *A, size_t rsa, size_t csa, const float *B, size_t rsb,
                    size_t csb, int M, int N, int K, int accumulate, const float *bias, mm_kernel_fn kernel, int MR,
                    int NR) {
    const int mc_max = M < MM_MC ? (M + MR - 1) / MR * MR : MM_MC / MR * MR;
    const int nc_max = N < MM_NC ? (N + NR - 1) / NR * NR : MM_NC / NR * NR;
    float *Ap = mm_buffer((size_t)mc_max * MM_KC, 0), *Bp = mm_buffer((size_t)nc_max * MM_KC, 1);
    #pragma omp parallel
    for (int n0 = 0; n0 < N; n0 += nc_max) {
        const int nc = N - n0 < nc_max ? N - n0 : nc_max, npanels = (nc + NR - 1) / NR;
        for (int k0 = 0; k0 < K; k0 += MM_KC) {
            const int kc = K - k0 < MM_KC ? K - k0 : MM_KC;
            const int load_c = accumulate || k0 > 0, last = k0 + kc == K;
            mm_pack_b_block(Bp, B, rsb, csb, n0, nc, k0, kc, NR);
            for (int m0 = 0; m0 < M; m0 += mc_max) {
                const int mc = M - m0 < mc_max ? M - m0 : mc_max, mpanels = (mc + MR - 1) / MR;
                mm_pack_a_block(Ap, A, rsa, csa, m0, mc, k0, kc, MR);
                // the B panels split between the threads; each runs down all the A panels of the block
                // (dynamic: each tile of C is computed by one thread in the same order whatever the
                // schedule, and the two threads of a VM were measured 5-10% apart in speed)
                #pragma omp for schedule(dynamic, 1) // (its barrier: nobody repacks A or B while they are read)
                for (int q = 0; q < npanels; q++) {
                    const int nr = nc - q * NR < NR ? nc - q * NR : NR;
                    const float *bias_q = bias && last ? bias + n0 + q * NR : NULL;
                    for (int p = 0; p < mpanels; p++) {
                        const int mr = mc - p * MR < MR ? mc - p * MR : MR;
                        kernel(kc, Ap + (size_t)p * kc * MR, Bp + (size_t)q * kc * NR,
                               C + (size_t)(m0 + p * MR) * ldc + n0 + q * NR, ldc, load_c, bias_q, mr, nr);
                    }
                }
            }
        }
    }
}

// the micro-kernel of the current path, 0 when it has none
static inline int mm_kernel_of_path(mm_kernel_fn *kernel, int *MR, int *NR) {
    switch (cpu_path()) {
    case CPU_PATH_AVX512: *kernel = mm512_kernel; *MR = MM512_MR; *NR = MM512_NR; return 1;
    case CPU_PATH_AVX2: *kernel = mm256_kernel; *MR = MM256_MR; *NR = MM256_NR; return 1;
    default: return 0;
    }
}
#endif // TG1_CPU_X86

// ----------------------------------------------------------------------------
// the trainer's hooks

// out (M,N) = inp (M,K) @ weight (N,K)^T (+ bias); 1 if done, 0 if the caller must (scalar path, M small)
static inline int matmul_cpu_forward(float *out, const float *inp, const float *weight, const float *bias,
                                     int M, int K, int N) {
#ifdef TG1_CPU_X86
    mm_kernel_fn kernel;
    int MR, NR;
    if (M < MM_MIN_M || !mm_kernel_of_path(&kernel, &MR, &NR)) { return 0; }
    // A = inp (rows of K), B (K,N) = weight^T: B[k][n] = weight[n*K + k]
    mm_gemm(out, (size_t)N, inp, (size_t)K, 1, weight, 1, (size_t)K, M, N, K, 0, bias, kernel, MR, NR);
    return 1;
#else
    (void)out; (void)inp; (void)weight; (void)bias; (void)M; (void)K; (void)N;
    return 0;
#endif
}

// dinp (M,K) += dout (M,N) @ weight (N,K) (unless dinp is NULL); dweight (N,K) += dout^T @ inp (M,K)
static inline int matmul_cpu_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                                      const float *weight, int M, int K, int N) {
#ifdef TG1_CPU_X86
    mm_kernel_fn kernel;
    int MR, NR;
    if (M < MM_MIN_M || !mm_kernel_of_path(&kernel, &MR, &NR)) { return 0; }
    if (dinp != NULL) { // A = dout (M,N), B = weight (N,K), both by rows
        mm_gemm(dinp, (size_t)K, dout, (size_t)N, 1, weight, (size_t)K, 1, M, K, N, 1, NULL, kernel, MR, NR);
    }
    // A (N,M) = dout^T: A[n][m] = dout[m*N + n]; B = inp (M,K) by rows
    mm_gemm(dweight, (size_t)K, dout, 1, (size_t)N, inp, (size_t)K, 1, N, K, M, 1, NULL, kernel, MR, NR);
    return 1;
#else
    (void)dinp; (void)dweight; (void)dout; (void)inp; (void)weight; (void)M; (void)K; (void)N;
    return 0;
#endif
}

static inline const char *matmul_cpu_backend(void) {
#ifdef TG1_CPU_X86
    mm_kernel_fn kernel;
    int MR, NR;
    if (mm_kernel_of_path(&kernel, &MR, &NR)) { return cpu_path_name(cpu_path()); }
#endif
    return "scalar";
}

#if defined(__GNUC__) && !defined(_OPENMP)
#pragma GCC diagnostic pop
#endif

#endif // LLMC_MATMUL_CPU_H
