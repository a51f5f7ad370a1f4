/*
 llmc/matmul_cpu.h: the trainer's float matmuls, register-blocked for AVX2 and AVX-512, with fp32
 operands or (-mp bf16) operands rounded to bf16.

 train_gpt2_1bit.c's matmul_forward / matmul_backward are the spec (plain dot-product loops in
 4x2 tiles); they call these first, and run their own loops when these return 0 (the scalar
 path, and shapes too small to pay for the packing). The same products, summed in another order:
 each output is one float sum along K, so it differs from the spec's by rounding only (within
 2 * gamma_K * sum_k |a_k b_k|, the bound tests/test_kernels.c checks), and it does not depend on
 the number of threads (tests/test_resume.sh needs bit-identical runs).

   matmul_cpu_forward(out, inp, weight, bias, M, K, N, bf16)    out (M,N) = inp (M,K) @ weight (N,K)^T + bias
   matmul_cpu_backward(dinp, dweight, dout, inp, weight, M, K, N, bf16)
                          dinp (M,K) += dout (M,N) @ weight (N,K)    (dinp may be NULL)
                          dweight (N,K) += dout^T (N,M) @ inp (M,K)  (no transposed copies: the packing
                                                                      reads each operand in its layout)
   matmul_cpu_backend(bf16)  "avx512", "avx2" or "scalar" (the spec); "avx512-bf16" for vdpbf16ps
   bf16_round(x), bf16_round_floats(dst, src, n)   x to the nearest bf16, as a float

 bf16 (bf16 = 1; the trainer's -mp bf16): the spec is the fp32 matmul of both operands rounded to
 bf16 (ties to even): each product is exact in fp32 (8 x 8 significant bits), the sums are fp32's, so
 the bound above holds with the rounded operands. Only the rounding of the inputs is new (the CUDA
 trainer's bf16 build rounds its matmul inputs to bf16 too, and keeps its activations in bf16). How:
   - with AVX512-BF16 (Zen 4, Sapphire Rapids) the panels hold pairs of bf16 (k and k + 1 in one 32-bit
     word, converted while packing: vcvtne2ps2bf16) and the 8 x 32 tile runs vdpbf16ps, 32 products an
     instruction instead of an FMA's 16: twice the rate on Zen 4 (bench_kernels: 300-410 GFLOP/s
     against 170-200 on 2 cores), and half the bytes of packed panels;
   - elsewhere (avx2, an avx512 CPU without it) the fp32 panels are rounded in place after packing
     and the fp32 tile runs as before: the same numbers, 1-30% slower than fp32 (the extra pass over
     the panels; avx2 on Zen 4): there -mp bf16 reproduces the GPU's rounding, it does not speed up.
   vdpbf16ps flushes denormal products and sums to zero; the spec keeps them (|x| < 1.2e-38: not met
   by a matmul that trains).

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
#include <stdint.h>
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


// ----------------------------------------------------------------------------
// bf16 operands (-mp bf16): the spec is the fp32 matmul of the operands rounded to bf16

// x rounded to the nearest bf16 (ties to even; 8 significant bits, fp32's exponent range), as a
// float: the bf16 value itself, so a product of two is exact in fp32. NaN stays NaN.
static inline float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof(u));
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u; // (Inf stays Inf, a large float rounds to Inf)
    u = (u & 0x7fffffffu) > 0x7f800000u ? (u | 0x00400000u) & 0xffff0000u : r;
    memcpy(&x, &u, sizeof(u));
    return x;
}

// dst[i] = bf16_round(src[i]) (dst may be src)
static inline void bf16_round_floats(float *dst, const float *src, size_t n) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) { dst[i] = bf16_round(src[i]); }
}

// 1 = the avx512 path's bf16 matmul rounds into fp32 panels, as on a CPU without AVX512-BF16 (the tests)
__attribute__((unused)) static int mm_bf16_pairs_off = 0;

// two bf16 in one 32-bit word of a packed panel, k even in the low half, as vdpbf16ps pairs them
static inline uint32_t bf16_pair(float even, float odd) {
    uint32_t e, o;
    float re = bf16_round(even), ro = bf16_round(odd);
    memcpy(&e, &re, sizeof(e));
    memcpy(&o, &ro, sizeof(o));
    return (e >> 16) | (o & 0xffff0000u);
}

#ifdef TG1_CPU_X86

// a micro-kernel: C[0..mr) x [0..nr) (ldc) = (load_c ? C : 0) + Ap (kc x MR) Bp (kc x NR) (+ bias)
typedef void (*mm_kernel_fn)(int kc, const float *Ap, const float *Bp, float *C, size_t ldc, int load_c,
                             const float *bias, int mr, int nr);

// ----------------------------------------------------------------------------
// AVX-512: 8 x 32

#define MM512_MR 8
#define MM512_NR 32
CPU_TARGET_BEGIN_AVX512
// C[0..mr) x [0..nr) (ldc) = (load_c ? C : 0) + the tile c (+ bias): the micro-kernels' last step
static CPU_ALWAYS_INLINE void mm512_store_tile(__m512 c[MM512_MR][2], float *C, size_t ldc, int load_c,
                                               const float *bias, int mr, int nr) {
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
    mm512_store_tile(c, C, ldc, load_c, bias, mr, nr);
}
CPU_TARGET_END

// bf16 (AVX512-BF16): the same 8 x 32 tile from panels of bf16 pairs (kw = ceil(kc / 2) words a row):
// per pair of k, 2 loads of B, 8 broadcasts of an A word, 16 vdpbf16ps (each 32 products, twice an
// fp32 FMA's 16, at the same rate on Zen 4: 230 against 115 GFLOP/s a core, measured). vdpbf16ps adds
// the exact products of a pair to its fp32 accumulator, rounding to nearest even and flushing
// denormals to zero: the sum of the spec's products in another order.
CPU_TARGET_BEGIN_AVX512BF16
static void mm512bf_kernel(int kw, const float *Ap, const float *Bp, float *C, size_t ldc, int load_c,
                           const float *bias, int mr, int nr) {
    const uint32_t *Aw = (const uint32_t *)Ap; // (the packed buffers are float arrays; pairs of bf16 here)
    __m512 c[MM512_MR][2];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MM512_MR; r++) { c[r][0] = _mm512_setzero_ps(); c[r][1] = _mm512_setzero_ps(); }
    _Pragma("GCC unroll 2")
    for (int k = 0; k < kw; k++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(Bp + MM512_NR * k);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(Bp + MM512_NR * k + 16);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MM512_MR; r++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)Aw[MM512_MR * k + r]);
            c[r][0] = _mm512_dpbf16_ps(c[r][0], a, b0);
            c[r][1] = _mm512_dpbf16_ps(c[r][1], a, b1);
        }
    }
    mm512_store_tile(c, C, ldc, load_c, bias, mr, nr);
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

// ----------------------------------------------------------------------------
// packing into bf16 pairs (mm512bf_kernel): word (kk, i) of a panel holds the operand's elements at
// k = 2kk (low half) and 2kk + 1 of its row or column i, kw = ceil(kc / 2) words deep (a missing
// k + 1, rows past the edge: zeros). One function per layout, as for the fp32 panels.

// 8 rows of src (lds apart), 16 floats each, as 8 x 8 words transposed: dst[kk * ldd + i] = the pair
// (src[i][2kk], src[i][2kk + 1]): the rows' pairs are already adjacent (A's rows, the forward's weight)
CPU_TARGET_BEGIN_AVX512BF16
static void mm_pairs_8x8(uint32_t *dst, size_t ldd, const float *src, size_t lds) {
    uint32_t t[8 * 8];
    for (int i = 0; i < 8; i++) { _mm256_storeu_si256((__m256i *)(t + 8 * i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i * lds))); }
    mm_transpose8x8((float *)dst, ldd, (const float *)t, 8);
}

// 16 words from two rows of src: dst[i] = the pair (x0[i], x1[i]) (the pairs lie in consecutive rows:
// dout^T in dW, dX's weight, dW's input)
static void mm_pairs_interleave16(uint32_t *dst, const float *x0, const float *x1) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x1), _mm512_loadu_ps(x0)); // x0's 16 low, x1's high
    _mm512_storeu_si512(dst, _mm512_permutexvar_epi16(idx, both));
}
CPU_TARGET_END

// S[i][k] at S + i*rs + k*cs, 0 past the edges (i >= ni or k >= kc): the pair at k, k + 1 of row i
static inline uint32_t mm_pair_at(const float *S, size_t rs, size_t cs, int i, int ni, int k, int kc) {
    if (i >= ni) { return 0; }
    float e = S[(size_t)i * rs + (size_t)k * cs], o = k + 1 < kc ? S[(size_t)i * rs + (size_t)(k + 1) * cs] : 0.0f;
    return bf16_pair(e, o);
}

// the packed block of panels (R = MR or NR rows each) of S[i0 .. i0+ni) x [k0 .. k0+kc) in pairs, S[i][k] at
// S + i*rs + k*cs (A: rows i of M; B^T: columns of B as rows), split between the threads of the
// enclosing parallel region (the barrier of its omp for)
static void mm_pack_pairs_block(float *P, const float *S, size_t rs, size_t cs, int i0, int ni, int k0, int kc, int R) {
    const int panels = (ni + R - 1) / R, kw = (kc + 1) / 2;
    uint32_t *Pw = (uint32_t *)P;
    S += (size_t)i0 * rs + (size_t)k0 * cs;
    if (rs == 1) { // the pairs lie in rows k, k + 1 of S: each thread interleaves pairs of whole rows
        #pragma omp for schedule(static)
        for (int kk = 0; kk < kw; kk++) {
            const float *x0 = S + (size_t)(2 * kk) * cs, *x1 = x0 + cs;
            int i = 0;
            if (2 * kk + 1 < kc) {
                for (; i + 16 <= ni; i += 16) { // 16 rows: R = 8 or 32, so within one panel or two
                    uint32_t w[16];
                    mm_pairs_interleave16(w, x0 + i, x1 + i);
                    for (int j = 0; j < 16; j += 8) { memcpy(Pw + ((size_t)((i + j) / R) * kw + kk) * R + (i + j) % R, w + j, 8 * sizeof(uint32_t)); }
                }
            }
            for (; i < panels * R; i++) { Pw[((size_t)(i / R) * kw + kk) * R + i % R] = mm_pair_at(S, rs, cs, i, ni, 2 * kk, kc); }
        }
        return;
    }
    // otherwise cs = 1: the pairs are adjacent in a row; 8 rows x 16 k at a time, transposed
    #pragma omp for schedule(static)
    for (int p = 0; p < panels; p++) {
        uint32_t *dst = Pw + (size_t)p * kw * R;
        for (int r0 = 0; r0 < R; r0 += 8) {
            int kk = 0;
            if (p * R + r0 + 8 <= ni) {
                for (; 2 * kk + 16 <= kc; kk += 8) { mm_pairs_8x8(dst + (size_t)kk * R + r0, (size_t)R, S + (size_t)(p * R + r0) * rs + 2 * kk, rs); }
            }
            for (; kk < kw; kk++) {
                for (int r = r0; r < r0 + 8; r++) { dst[(size_t)kk * R + r] = mm_pair_at(S, rs, cs, p * R + r, ni, 2 * kk, kc); }
            }
        }
    }
}

// the packed fp32 block's floats rounded to bf16 in place (-mp bf16 on a CPU without AVX512-BF16: the
// fp32 kernel then sums the same exact products), split between the threads
static void mm_round_block(float *P, size_t n) {
    const size_t chunk = 4096;
    #pragma omp for schedule(static)
    for (size_t c = 0; c < (n + chunk - 1) / chunk; c++) {
        size_t a = c * chunk, len = n - a < chunk ? n - a : chunk;
        bf16_round_floats(P + a, P + a, len);
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

// how the packed panels hold the operands: fp32; fp32 rounded to bf16 (-mp bf16 without AVX512-BF16);
// bf16 pairs (-mp bf16 with it, for mm512bf_kernel)
typedef enum { MM_FP32 = 0, MM_FP32_BF16 = 1, MM_BF16_PAIRS = 2 } MmPanels;

// C (M,N) (ldc) = (accumulate ? C : 0) + A (M,K) B (K,N) (+ bias (N)); A[i][k] at A + i*rsa + k*csa,
// B[k][j] at B + k*rsb + j*csb
static void mm_gemm(float *C, size_t ldc, const float *A, size_t rsa, size_t csa, const float *B, size_t rsb,
                    size_t csb, int M, int N, int K, int accumulate, const float *bias, mm_kernel_fn kernel, int MR,
                    int NR, MmPanels panels) {
    const int mc_max = M < MM_MC ? (M + MR - 1) / MR * MR : MM_MC / MR * MR;
    const int nc_max = N < MM_NC ? (N + NR - 1) / NR * NR : MM_NC / NR * NR;
    float *Ap = mm_buffer((size_t)mc_max * MM_KC, 0), *Bp = mm_buffer((size_t)nc_max * MM_KC, 1);
    #pragma omp parallel
    for (int n0 = 0; n0 < N; n0 += nc_max) {
        const int nc = N - n0 < nc_max ? N - n0 : nc_max, npanels = (nc + NR - 1) / NR;
        for (int k0 = 0; k0 < K; k0 += MM_KC) {
            const int kc = K - k0 < MM_KC ? K - k0 : MM_KC;
            const int kw = panels == MM_BF16_PAIRS ? (kc + 1) / 2 : kc; // a panel's depth in 32-bit words
            const int load_c = accumulate || k0 > 0, last = k0 + kc == K;
            if (panels == MM_BF16_PAIRS) { mm_pack_pairs_block(Bp, B, csb, rsb, n0, nc, k0, kc, NR); } // (B^T's rows)
            else { mm_pack_b_block(Bp, B, rsb, csb, n0, nc, k0, kc, NR); }
            if (panels == MM_FP32_BF16) { mm_round_block(Bp, (size_t)npanels * kc * NR); }
            for (int m0 = 0; m0 < M; m0 += mc_max) {
                const int mc = M - m0 < mc_max ? M - m0 : mc_max, mpanels = (mc + MR - 1) / MR;
                if (panels == MM_BF16_PAIRS) { mm_pack_pairs_block(Ap, A, rsa, csa, m0, mc, k0, kc, MR); }
                else { mm_pack_a_block(Ap, A, rsa, csa, m0, mc, k0, kc, MR); }
                if (panels == MM_FP32_BF16) { mm_round_block(Ap, (size_t)mpanels * kc * MR); }
                // the B panels split between the threads; each runs down all the A panels of the block
                // (dynamic: each tile of C is computed by one thread in the same order whatever the
                // schedule, and the two threads of a VM were measured 5-10% apart in speed)
                #pragma omp for schedule(dynamic, 1) // (its barrier: nobody repacks A or B while they are read)
                for (int q = 0; q < npanels; q++) {
                    const int nr = nc - q * NR < NR ? nc - q * NR : NR;
                    const float *bias_q = bias && last ? bias + n0 + q * NR : NULL;
                    for (int p = 0; p < mpanels; p++) {
                        const int mr = mc - p * MR < MR ? mc - p * MR : MR;
                        kernel(kw, Ap + (size_t)p * kw * MR, Bp + (size_t)q * kw * NR,
                               C + (size_t)(m0 + p * MR) * ldc + n0 + q * NR, ldc, load_c, bias_q, mr, nr);
                    }
                }
            }
        }
    }
}

// the micro-kernel of the current path for fp32 (bf16 = 0) or bf16 operands, 0 when it has none
static inline int mm_kernel_of_path(int bf16, mm_kernel_fn *kernel, int *MR, int *NR, MmPanels *panels) {
    *panels = bf16 ? MM_FP32_BF16 : MM_FP32;
    switch (cpu_path()) {
    case CPU_PATH_AVX512:
        *kernel = mm512_kernel; *MR = MM512_MR; *NR = MM512_NR;
        if (bf16 && cpu_features()->avx512bf16 && !mm_bf16_pairs_off) { *kernel = mm512bf_kernel; *panels = MM_BF16_PAIRS; }
        return 1;
    case CPU_PATH_AVX2: *kernel = mm256_kernel; *MR = MM256_MR; *NR = MM256_NR; return 1;
    default: return 0;
    }
}
#endif // TG1_CPU_X86

// ----------------------------------------------------------------------------
// the trainer's hooks

// out (M,N) = inp (M,K) @ weight (N,K)^T (+ bias), the operands rounded to bf16 if bf16; 1 if done, 0 if
// the caller must (scalar path, M small)
static inline int matmul_cpu_forward(float *out, const float *inp, const float *weight, const float *bias,
                                     int M, int K, int N, int bf16) {
#ifdef TG1_CPU_X86
    mm_kernel_fn kernel;
    int MR, NR;
    MmPanels panels;
    if (M < MM_MIN_M || !mm_kernel_of_path(bf16, &kernel, &MR, &NR, &panels)) { return 0; }
    // A = inp (rows of K), B (K,N) = weight^T: B[k][n] = weight[n*K + k]
    mm_gemm(out, (size_t)N, inp, (size_t)K, 1, weight, 1, (size_t)K, M, N, K, 0, bias, kernel, MR, NR, panels);
    return 1;
#else
    (void)out; (void)inp; (void)weight; (void)bias; (void)M; (void)K; (void)N; (void)bf16;
    return 0;
#endif
}

// dinp (M,K) += dout (M,N) @ weight (N,K) (unless dinp is NULL); dweight (N,K) += dout^T @ inp (M,K);
// the operands rounded to bf16 if bf16
static inline int matmul_cpu_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                                      const float *weight, int M, int K, int N, int bf16) {
#ifdef TG1_CPU_X86
    mm_kernel_fn kernel;
    int MR, NR;
    MmPanels panels;
    if (M < MM_MIN_M || !mm_kernel_of_path(bf16, &kernel, &MR, &NR, &panels)) { return 0; }
    if (dinp != NULL) { // A = dout (M,N), B = weight (N,K), both by rows
        mm_gemm(dinp, (size_t)K, dout, (size_t)N, 1, weight, (size_t)K, 1, M, K, N, 1, NULL, kernel, MR, NR, panels);
    }
    // A (N,M) = dout^T: A[n][m] = dout[m*N + n]; B = inp (M,K) by rows
    mm_gemm(dweight, (size_t)K, dout, 1, (size_t)N, inp, (size_t)K, 1, N, K, M, 1, NULL, kernel, MR, NR, panels);
    return 1;
#else
    (void)dinp; (void)dweight; (void)dout; (void)inp; (void)weight; (void)M; (void)K; (void)N; (void)bf16;
    return 0;
#endif
}

// "avx512", "avx2" or "scalar"; with bf16, "avx512-bf16" where the avx512 path has vdpbf16ps
static inline const char *matmul_cpu_backend(int bf16) {
#ifdef TG1_CPU_X86
    mm_kernel_fn kernel;
    int MR, NR;
    MmPanels panels;
    if (mm_kernel_of_path(bf16, &kernel, &MR, &NR, &panels)) {
        return panels == MM_BF16_PAIRS ? "avx512-bf16" : cpu_path_name(cpu_path());
    }
#endif
    (void)bf16;
    return "scalar";
}

#if defined(__GNUC__) && !defined(_OPENMP)
#pragma GCC diagnostic pop
#endif

#endif // LLMC_MATMUL_CPU_H
