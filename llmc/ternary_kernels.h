/*
 llmc/ternary_kernels.h: packed ternary weights and int8 x ternary matmuls for the CPU.

 The inference form of BitLinear (see llmc/ternary.h and /work/shared/BITNET.md):
     acc (M,N) = x_q (M,K) int8  @  trits (N,K)^T      exact in int32 (|acc| <= 128 * K)
     y   (M,N) = acc * gamma / s_x[m] + bias[n]         dequant_epilogue
 so a weight matrix is stored as trits plus one fp32 scale per tensor (kept by
 the caller), and the inner loop is integer only.

 Formats (one matrix (N,K) of trits {-1,0,+1}, row-major, each row packed on
 its own so that a row's dot product reads contiguous bytes):
   2-bit   ("t2", 2 bits/weight):   code = trit + 1 in {0,1,2}; byte j of a row
           holds trits 4j..4j+3 in bits [1:0],[3:2],[5:4],[7:6]; a row takes
           (K+3)/4 bytes; the codes past the end of a row are 1 (trit 0).
   base-3  ("t3", 1.6 bits/weight): 5 trits per byte (3^5 = 243 <= 256),
           byte j = sum_{k=0..4} (t_{5j+k} + 1) * 3^k, the first trit being the
           least significant digit; a row takes (K+4)/5 bytes; the digits past
           the end of a row are 1 (trit 0).

 Kernels (outputs first, then inputs, then dimensions):
   matmul_i8_t2(out, x, w, M, K, N)       out (M,N) int32 = x (M,K) int8 @ trits(w)^T, w = N packed rows of K
   matmul_i8_t3(out, x, w, M, K, N)       the same for base-3 rows
   matmul_i8_t2_ref / matmul_i8_t3_ref    the spec: unpack, then plain loops
   pack2_rows_transposed(dst, trits, rows, n)   the 2-bit rows of trits^T (for x @ trits: the int8 backward)
   dequant_epilogue(out, acc, row_scale, w_scale, bias, M, N)   (dequant_row: one row, or a slice of one)
   gemv_i8_t2_prepare(xs, x, K) -> sum(x),
   gemv_i8_t2_rows(out, xs, xsum, w, K, n0, n1)   matmul_i8_t2 at M = 1 in two steps, for a decoder
                                          that splits the rows between the threads of its own region
   gemv_n4x4_i16(dot, p, x, pat, C, v0, v1)   4-bit rows (4-row groups, n4_index) . int16 x, exact:
                                          the decoder's head screen (pat: n4_prepare(x))
   ternary_kernels_backend()              the path in use: "avx512", "avx2", "scalar" (as cpu_path())
   tw_bytes / tw_pack / tw_pack_transposed / matmul_i8_tw   the trainer's compute form of the trits:
                                          2-bit rows, or int8 code panels (TW_P8) on the avx512 path (below)

 Paths: chosen at run time by llmc/cpu_features.h (cpu_path(); TG1_CPU_PATH=... forces one), all
 compiled into one binary:
   scalar   the references above (any CPU, and every build: -DTG1_CPU_SCALAR_ONLY keeps only it)
   avx2     256-bit kernels: maddubs into int16 lanes (below)
   avx512   512-bit kernels with AVX512-VNNI for t2 (vpdpbusd: bytes straight into int32 lanes);
            t3 runs the 256-bit kernels (its decode is its cost, not the multiply)
 Every path equals the scalar reference exactly (tests/test_kernels.c runs each path the CPU has).

 How the AVX2 kernels work:
   - a block is 32 packed bytes of a row: 128 trits (t2) or 160 trits (t3),
     one 256-bit load, decoded in registers into P "planes" (P = 4 or 5 trits
     per byte) of 32 codes each, plane s holding the codes of trits P*j + s,
     j = 0..31 (t2: shift and mask, 7 ops; t3: repeated division by 3 in 16-bit
     lanes, 44 ops).
   - x is gathered once per call into the same order (xs, zero padded to whole
     blocks), so plane s multiplies 32 consecutive bytes of xs: no shuffles in
     the inner loop. The gather costs O(M*K), the matmul O(M*N*K).
   - _mm256_maddubs_epi16(codes, x) multiplies unsigned codes {0,1,2} by signed
     x and adds adjacent pairs into int16: |pair| <= 2*128 + 2*128 = 512, so it
     never saturates. Up to 32 such products are summed per int16 lane (|sum| <=
     16384 < 32767), then widened to int32 with _mm256_madd_epi16(., 1).
     Since code = trit + 1, dot(trits, x) = dot(codes, x) - sum(x): sum(x) is
     computed once per row of x. (psignb on trits would be one op cheaper but
     is wrong for x = -128: -(-128) does not fit in int8.)
   - tiles: 4 rows of x times 1 weight row (GEMM, M >= 4: each decoded block
     feeds 4 rows of x), or 1 row of x times 4 weight rows (GEMV, decoding:
     the four dot products share the x loads and one horizontal reduction).
     Rows of x left over by the 4-row tiles go through the GEMV path.
   - t3 GEMV skips the decode: with q_k = floor(byte / 3^k) (one mulhi each),
     sum_k digit_k x_k = sum_k q_k x'_k for x'_k = x_k - 3 x_{k-1} (gathered once,
     int16), so 10 madd replace 44 decode ops and 5 maddubs (tk_block_t3q_avx2).
     When 4 rows share the decode (GEMM), decoding to bytes is faster.
   Measured on one Zen 3 core (GOPS = 2 * MAC/s), K=768 N=2304: t2 GEMV ~145,
   t2 GEMM ~220, t3 GEMV ~75, t3 GEMM ~95; a 256-entry table (byte -> 5 codes)
   for the t3 decode reached ~15 in the GEMV: 32 scalar loads and stores per
   block, and the vector loads that follow wait on the stores.
 The AVX-512 kernels have the same tiles on 64-byte blocks (256 trits); see their section.

 Test:   make tests/test_kernels && ./tests/test_kernels   (every path this CPU has, against the reference)
         make tests/test_kernels_scalar && ./tests/test_kernels_scalar   (a build with the scalar path only)
 Bench:  make bench_kernels && ./bench_kernels   (TG1_CPU_PATH=avx2 ./bench_kernels: another path)
*/
#ifndef LLMC_TERNARY_KERNELS_H
#define LLMC_TERNARY_KERNELS_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <assert.h> // static_assert (C11 macro, C++11 keyword)
#include "utils.h"  // defines: mallocCheck
#include "cpu_features.h" // defines: cpu_path, CPU_PATH_*, TG1_CPU_X86 (when the SIMD paths are compiled)
#ifdef TG1_CPU_X86
#include <immintrin.h>
#endif

// built without -fopenmp the `#pragma omp` lines below are plain loops (still correct):
// no warning for each of them (in C; g++ warns regardless, GCC bug 53431)
#if defined(__GNUC__) && !defined(_OPENMP)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#endif

// ----------------------------------------------------------------------------
// packing formats

// 2-bit: 4 trits per byte, 2 bits/weight; code = trit + 1; trit 4j+s of a row
// sits in bits [2s+1:2s] of byte j (the first trit in the low bits)
#define T2_PER_BYTE 4
// base-3: 5 trits per byte, 1.6 bits/weight; byte j = sum_k (t_{5j+k} + 1) * 3^k
#define T3_PER_BYTE 5
static_assert(3 * 3 * 3 * 3 * 3 <= 256, "5 base-3 digits must fit in a byte");

// the unit the AVX2 kernels load and decode at once: 32 packed bytes of one row,
// 128 trits of t2 (2 bits/weight) or 160 trits of t3 (1.6 bits/weight), in the
// packing order above; rows are not padded to whole blocks (a last partial block
// is copied into one of these, zero filled)
typedef struct { uint8_t qs[32]; } TernaryBlock;
static_assert(sizeof(TernaryBlock) == 32, "a block is one 256-bit load");
#define T2_BLOCK_TRITS (32 * T2_PER_BYTE) // 128
#define T3_BLOCK_TRITS (32 * T3_PER_BYTE) // 160

static inline size_t pack2_row_bytes(int n) { return ((size_t)n + 3) / 4; }
static inline size_t pack3_row_bytes(int n) { return ((size_t)n + 4) / 5; }

// dst (rows, pack2_row_bytes(n)) <- trits (rows, n) in {-1,0,1}
static inline void pack2_rows(uint8_t *dst, const int8_t *trits, int rows, int n) {
    size_t rb = pack2_row_bytes(n);
    for (int r = 0; r < rows; r++) {
        const int8_t *t = trits + (size_t)r * n;
        uint8_t *d = dst + (size_t)r * rb;
        for (size_t j = 0; j < rb; j++) {
            unsigned byte = 0;
            for (int s = 0; s < 4; s++) {
                size_t i = 4 * j + s;
                unsigned code = i < (size_t)n ? (unsigned)(t[i] + 1) : 1u; // past the end: trit 0
                byte |= code << (2 * s);
            }
            d[j] = (uint8_t)byte;
        }
    }
}

// trits (rows, n) <- src (rows, pack2_row_bytes(n))
static inline void unpack2_rows(int8_t *trits, const uint8_t *src, int rows, int n) {
    size_t rb = pack2_row_bytes(n);
    for (int r = 0; r < rows; r++) {
        const uint8_t *s = src + (size_t)r * rb;
        int8_t *t = trits + (size_t)r * n;
        for (int i = 0; i < n; i++) { t[i] = (int8_t)(((s[i / 4] >> (2 * (i % 4))) & 3) - 1); }
    }
}

// dst (n, pack2_row_bytes(rows)) <- trits (rows, n)^T in the 2-bit format: row i of dst is column i
// of trits, so matmul_i8_t2 on it computes x (M,rows) @ trits (rows,n), the product the int8
// backward needs (dX = dY W_q, -bq int8). Equal to transposing, then pack2_rows. In tiles of
// TR_J bytes x TR_I columns: the trits are read by rows (4 rows make a byte) and each dst row
// gets TR_J consecutive bytes at once (byte by byte down the columns took 2x as long at d12).
#define TR_J 8
#define TR_I 256
static inline void pack2_rows_transposed(uint8_t *dst, const int8_t *trits, int rows, int n) {
    size_t rb = pack2_row_bytes(rows);
    uint8_t tile[TR_J][TR_I]; // tile[jj][ii] = byte j0+jj of dst row i0+ii
    for (size_t j0 = 0; j0 < rb; j0 += TR_J) {
        size_t nj = rb - j0 < TR_J ? rb - j0 : TR_J;
        for (int i0 = 0; i0 < n; i0 += TR_I) {
            int ni = n - i0 < TR_I ? n - i0 : TR_I;
            for (size_t jj = 0; jj < nj; jj++) {
                memset(tile[jj], 0, (size_t)ni);
                for (int s = 0; s < 4; s++) { // trit row 4j+s goes to bits [2s+1:2s]
                    size_t r = 4 * (j0 + jj) + s;
                    if (r < (size_t)rows) {
                        const int8_t *t = trits + r * (size_t)n + i0;
                        for (int ii = 0; ii < ni; ii++) { tile[jj][ii] |= (uint8_t)((t[ii] + 1) << (2 * s)); }
                    } else {
                        for (int ii = 0; ii < ni; ii++) { tile[jj][ii] |= (uint8_t)(1 << (2 * s)); } // past the end: trit 0
                    }
                }
            }
            for (int ii = 0; ii < ni; ii++) {
                uint8_t *d = dst + (size_t)(i0 + ii) * rb + j0;
                for (size_t jj = 0; jj < nj; jj++) { d[jj] = tile[jj][ii]; }
            }
        }
    }
}

// dst (rows, pack3_row_bytes(n)) <- trits (rows, n); Horner from the last digit
// so that the first trit ends up least significant
static inline void pack3_rows(uint8_t *dst, const int8_t *trits, int rows, int n) {
    size_t rb = pack3_row_bytes(n);
    for (int r = 0; r < rows; r++) {
        const int8_t *t = trits + (size_t)r * n;
        uint8_t *d = dst + (size_t)r * rb;
        for (size_t j = 0; j < rb; j++) {
            unsigned byte = 0;
            for (int k = 4; k >= 0; k--) {
                size_t i = 5 * j + k;
                unsigned digit = i < (size_t)n ? (unsigned)(t[i] + 1) : 1u; // past the end: trit 0
                byte = byte * 3 + digit;
            }
            d[j] = (uint8_t)byte;
        }
    }
}

static inline void unpack3_rows(int8_t *trits, const uint8_t *src, int rows, int n) {
    size_t rb = pack3_row_bytes(n);
    for (int r = 0; r < rows; r++) {
        const uint8_t *s = src + (size_t)r * rb;
        int8_t *t = trits + (size_t)r * n;
        for (size_t j = 0; j < rb; j++) {
            unsigned byte = s[j];
            for (int k = 0; k < 5 && 5 * j + k < (size_t)n; k++) {
                t[5 * j + k] = (int8_t)(byte % 3) - 1;
                byte /= 3;
            }
        }
    }
}

// ----------------------------------------------------------------------------
// scalar references: the spec the fast kernels are tested against

// out (M,N) = x (M,K) @ trits(N,K)^T, trits unpacked from the P-per-byte rows of w
static inline void matmul_i8_ternary_ref(int32_t *out, const int8_t *x, const uint8_t *w,
                                         int M, int K, int N, int per_byte) {
    int8_t *t = (int8_t *)mallocCheck((size_t)N * K);
    if (per_byte == T2_PER_BYTE) { unpack2_rows(t, w, N, K); } else { unpack3_rows(t, w, N, K); }
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const int8_t *t_n = t + (size_t)n * K;
        for (int m = 0; m < M; m++) {
            const int8_t *x_m = x + (size_t)m * K;
            int32_t sum = 0;
            for (int k = 0; k < K; k++) { sum += (int32_t)x_m[k] * t_n[k]; }
            out[(size_t)m * N + n] = sum;
        }
    }
    free(t);
}

static inline void matmul_i8_t2_ref(int32_t *out, const int8_t *x, const uint8_t *w, int M, int K, int N) {
    matmul_i8_ternary_ref(out, x, w, M, K, N, T2_PER_BYTE);
}
static inline void matmul_i8_t3_ref(int32_t *out, const int8_t *x, const uint8_t *w, int M, int K, int N) {
    matmul_i8_ternary_ref(out, x, w, M, K, N, T3_PER_BYTE);
}

// ----------------------------------------------------------------------------
// float epilogue: out (M,N) = acc * gamma * row_scale[m] + bias[n]
// row_scale[m] = 1/s_x of row m of x, w_scale = gamma of the tensor; bias may be NULL

// one row: out (N) = acc (N) * s + bias (N), s = gamma * row_scale; also called on a slice
// of a row by the decoder's threads, so both compute each element the same way
static inline void dequant_row(float *out, const int32_t *acc, float s, const float *bias, int N) {
    if (bias) {
        #pragma omp simd
        for (int n = 0; n < N; n++) { out[n] = (float)acc[n] * s + bias[n]; }
    } else {
        #pragma omp simd
        for (int n = 0; n < N; n++) { out[n] = (float)acc[n] * s; }
    }
}

static inline void dequant_epilogue(float *out, const int32_t *acc, const float *row_scale, float w_scale,
                                    const float *bias, int M, int N) {
    #pragma omp parallel for
    for (int m = 0; m < M; m++) {
        float s = w_scale * row_scale[m]; // one product per row, then one per element
        dequant_row(out + (size_t)m * N, acc + (size_t)m * N, s, bias, N);
    }
}

// ----------------------------------------------------------------------------
// scratch for the gathered x: one buffer per calling thread, grown, never shrunk
// A malloc + free per call showed up when decoding (48 matmuls per token of a few us each)
// and, at training sizes (past glibc's mmap threshold), costs fresh page faults every call.
// The buffer lives until the process exits.

#ifdef __cplusplus
#define TK_THREAD_LOCAL thread_local
#else
#define TK_THREAD_LOCAL _Thread_local
#endif

static inline void *tk_scratch(size_t bytes) {
    static TK_THREAD_LOCAL void *buf = NULL;
    static TK_THREAD_LOCAL size_t cap = 0;
    if (bytes > cap) {
        free(buf);
        buf = mallocCheck(bytes);
        cap = bytes;
    }
    return buf;
}

// ----------------------------------------------------------------------------
// x86 kernels: AVX2 (also the base of the other paths) and AVX-512 VNNI
// Each group is compiled for its instruction set (CPU_TARGET_BEGIN_*), whatever -march says, and
// runs only when cpu_path() chose it (llmc/cpu_features.h), so one binary carries them all.

#ifdef TG1_CPU_X86

#define TK_ALWAYS_INLINE CPU_ALWAYS_INLINE

#define TK_TILE_MAX 4 // outputs per tile (4x1 or 1x4)
// The GEMV reads each weight byte once: decoding a token, the trits of a whole model (21 MB for
// GPT-2 124M) come from L3 or DRAM, and the hardware prefetcher alone left the GEMV waiting on
// memory (per token, GPT-2 124M, 2 threads: 2.1-2.8 ms warm in L3, 2.5-3.1 ms after a flush;
// with this 1.0-1.4 ms and 1.4-1.9 ms; distances from 2 to 16 KiB measured the same)
#define TK_PREFETCH_BYTES 4096
// fully unroll the loops over a tile's rows and columns early, so that gcc keeps the
// accumulator arrays in registers instead of on the stack
#if defined(__clang__)
#define TK_UNROLL _Pragma("unroll")
#else
#define TK_UNROLL _Pragma("GCC unroll 16")
#endif

CPU_TARGET_BEGIN_AVX2

// x rows -> xs, gathered once per call into the order of the decoded weights, in groups of R
// rows (R = 4 for the GEMM tiles, 1 for a GEMV row), zero padded to whole blocks of BW packed
// bytes (BW = 32 for the 256-bit kernels, 64 for the 512-bit ones; a block holds BW*P trits).
// Bytes (int8): plane s of block b of a weight row (the codes of trits P*j + s) meets
//     xs8[((b*P + s)*R + i)*BW + j] = x_i[b*BW*P + P*j + s]               j = 0..BW-1
// t3 GEMV rows (int16, BW = 32, see tk_block_t3q_avx2): vector (k, h) of block b meets
//     xs16[(b*10 + 2k + h)*16 + u] = x'[b*160 + 5(2u + h) + k]            u = 0..15
//     with x'[5j] = x[5j] and x'[5j+k] = x[5j+k] - 3 x[5j+k-1] (k = 1..4): |x'| <= 511
//     (h = 0: the even bytes of the block, h = 1: the odd bytes)
// xsum[i] = sum(x_i), the correction for code = trit + 1.
static inline void tk_gather_x(uint8_t *xs, int32_t *xsum, const int8_t *x, int R, int K, int nblk, int P, int BW) {
    const int BT = BW * P;
    for (int i = 0; i < R; i++) {
        const int8_t *x_i = x + (size_t)i * K;
        for (int b = 0; b < nblk; b++) {
            if (P == T3_PER_BYTE && R == 1) { // the t3 GEMV's x' (BW = 32)
                for (int v = 0; v < 10; v++) {
                    int k5 = v / 2, h = v % 2;
                    int16_t *dst = (int16_t *)xs + (size_t)(b * 10 + v) * 16;
                    for (int u = 0; u < 16; u++) {
                        int t = b * 160 + 5 * (2 * u + h) + k5; // the trit this lane multiplies
                        int cur = t < K ? x_i[t] : 0, prev = k5 > 0 && t - 1 < K ? x_i[t - 1] : 0;
                        dst[u] = (int16_t)(k5 == 0 ? cur : cur - 3 * prev);
                    }
                }
                continue;
            }
            // in pieces of 32 bytes of each plane (P*32 bytes of x)
            for (int h = 0; h < BW / 32; h++) {
                const int k0 = b * BT + h * 32 * P; // the first trit of the piece
                int8_t *dst0 = (int8_t *)xs + ((size_t)(b * P) * R + i) * BW + h * 32; // plane 0; plane s at + s*R*BW
                if (P == T2_PER_BYTE && k0 + 128 <= K) {
                    // a whole piece of t2 in registers: byte 4j+s of the 128 goes to plane s, position j.
                    // Per 32 bytes (j = 8q..8q+7): group each 128-bit lane by s (4 bytes per s),
                    // then the lanes' 4-byte groups side by side: 64-bit element s = plane s, j = 8q..8q+7
                    const __m256i by_s = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                                          0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
                    const __m256i lanes = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
                    __m256i u[4];
                    for (int q = 0; q < 4; q++) {
                        __m256i v = _mm256_loadu_si256((const __m256i *)(x_i + k0 + 32 * q));
                        u[q] = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, by_s), lanes);
                    }
                    // a 4x4 transpose of 64-bit elements: plane s = element s of u[0], u[1], u[2], u[3]
                    __m256i t0 = _mm256_unpacklo_epi64(u[0], u[1]), t1 = _mm256_unpackhi_epi64(u[0], u[1]);
                    __m256i t2 = _mm256_unpacklo_epi64(u[2], u[3]), t3 = _mm256_unpackhi_epi64(u[2], u[3]);
                    const size_t ps = (size_t)R * BW; // from one plane to the next
                    _mm256_storeu_si256((__m256i *)(dst0), _mm256_permute2x128_si256(t0, t2, 0x20));
                    _mm256_storeu_si256((__m256i *)(dst0 + ps), _mm256_permute2x128_si256(t1, t3, 0x20));
                    _mm256_storeu_si256((__m256i *)(dst0 + 2 * ps), _mm256_permute2x128_si256(t0, t2, 0x31));
                    _mm256_storeu_si256((__m256i *)(dst0 + 3 * ps), _mm256_permute2x128_si256(t1, t3, 0x31));
                } else {
                    for (int s = 0; s < P; s++) {
                        int8_t *dst = dst0 + (size_t)s * R * BW;
                        for (int j = 0; j < 32; j++) {
                            int k = k0 + P * j + s;
                            dst[j] = k < K ? x_i[k] : 0;
                        }
                    }
                }
            }
        }
        int32_t sum = 0;
        for (int k = 0; k < K; k++) { sum += x_i[k]; }
        xsum[i] = sum;
    }
}

// horizontal sum of the 8 int32 lanes
static inline int32_t tk_hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2))); // + the other 64-bit half
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1))); // + the neighbour lane
    return _mm_cvtsi128_si32(s);
}

// the horizontal sums of 4 vectors at once: [sum a0, sum a1, sum a2, sum a3]
static inline __m128i tk_hsum4_i32(__m256i a0, __m256i a1, __m256i a2, __m256i a3) {
    // hadd works within each 128-bit half: after two rounds, half h holds
    // [a0, a1, a2, a3] summed over that half; then the two halves are added
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// decode one block (32 packed bytes) of a weight row into its P planes of 32 codes each:
// codes[s] byte j = code of trit P*j + s of the block, in {0,1,2}
static TK_ALWAYS_INLINE void tk_decode_avx2(__m256i *codes, const uint8_t *block, int P) {
    __m256i v = _mm256_loadu_si256((const __m256i *)block);
    if (P == T2_PER_BYTE) {
        const __m256i mask2 = _mm256_set1_epi8(3); // the low 2 bits of every byte
        TK_UNROLL
        for (int s = 0; s < 4; s++) {
            // bits [2s+1:2s] of every byte; the 16-bit shift moves bits of the high byte
            // into the low one, the byte mask removes them
            codes[s] = _mm256_and_si256(_mm256_srli_epi16(v, 2 * s), mask2);
        }
    } else {
        // base 3 in 16-bit lanes: the even bytes and the odd bytes, each as a value b in 0..242;
        // digit k = q_k - 3*q_{k+1} with q_k = floor(b / 3^k) and q_{k+1} = mulhi(q_k, 21846)
        // (floor(q * 21846 / 2^16) = floor(q / 3) exactly for q < 2^15); 3q as q + q + q: the
        // 16-bit mullo runs at a fifth of the rate of an add on Zen 3
        const __m256i lo8 = _mm256_set1_epi16(0x00FF), third = _mm256_set1_epi16(21846); // ceil(2^16 / 3)
        __m256i qe = _mm256_and_si256(v, lo8), qo = _mm256_srli_epi16(v, 8);
        TK_UNROLL
        for (int s = 0; s < 5; s++) {
            __m256i de = qe, dodd = qo; // the last digit: q_4 = floor(b / 81) <= 2
            if (s < 4) {
                __m256i ne = _mm256_mulhi_epu16(qe, third), no = _mm256_mulhi_epu16(qo, third);
                de = _mm256_sub_epi16(qe, _mm256_add_epi16(ne, _mm256_add_epi16(ne, ne)));
                dodd = _mm256_sub_epi16(qo, _mm256_add_epi16(no, _mm256_add_epi16(no, no)));
                qe = ne; qo = no;
            }
            // back to bytes: the even byte in the low half of its 16-bit lane, the odd one high
            codes[s] = _mm256_or_si256(de, _mm256_slli_epi16(dodd, 8));
        }
    }
}

// one block, decoded to codes: NR weight rows (blocks at wb[j]) against the MR rows of a
// group of xs (plane s of row i at xb + (s*MR + i)*32): acc[i*NR + j] += sum over the P
// planes of maddubs(codes, x), in int16 lanes (see the bound at the top of the file).
// Rows outer, planes inner: each row's sum is one short chain, which keeps gcc from
// holding all MR*P products at once (and spilling them)
static TK_ALWAYS_INLINE void tk_block_i8_avx2(__m256i *acc, const uint8_t *const *wb, const int8_t *xb,
                                              int P, int MR, int NR) {
    TK_UNROLL
    for (int j = 0; j < NR; j++) {
        __m256i codes[T3_PER_BYTE];
        tk_decode_avx2(codes, wb[j], P);
        TK_UNROLL
        for (int i = 0; i < MR; i++) {
            __m256i a = acc[i * NR + j];
            TK_UNROLL
            for (int s = 0; s < P; s++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xb + (s * MR + i) * 32));
                a = _mm256_add_epi16(a, _mm256_maddubs_epi16(codes[s], xv)); // |pair| <= 512
            }
            acc[i * NR + j] = a;
        }
    }
}

// t3 GEMV, one block, in int32 lanes, without decoding the digits. With b a packed byte,
// q_k = floor(b / 3^k) and the digits (codes) d_k = q_k - 3 q_{k+1} (q_5 = 0):
//     sum_k d_k x_k = q_0 x_0 + sum_{k=1..4} q_k (x_k - 3 x_{k-1}) = sum_k q_k x'_k
// so each q_k, one mulhi from the last, multiplies x' (gathered once) with madd (int16 x int16
// -> int32 pairs): 10 ops on top of the 20 of the products, against 44 for the decode to
// bytes. With 4 rows of x to share a decode (GEMM) the decode to bytes wins: maddubs does
// 32 products per op, madd 16. The lanes may wrap in int32 for huge K; the sum is still
// exact (modular), as the true result fits.
static TK_ALWAYS_INLINE void tk_block_t3q_avx2(__m256i *acc, const uint8_t *const *wb, const int16_t *xb,
                                               int NR) {
    const __m256i lo8 = _mm256_set1_epi16(0x00FF), third = _mm256_set1_epi16(21846); // ceil(2^16 / 3)
    TK_UNROLL
    for (int j = 0; j < NR; j++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)wb[j]);
        __m256i qe = _mm256_and_si256(v, lo8), qo = _mm256_srli_epi16(v, 8); // q_0 = b, per 16-bit lane
        __m256i a = acc[j];
        TK_UNROLL
        for (int k = 0; k < 5; k++) {
            a = _mm256_add_epi32(a, _mm256_madd_epi16(qe, _mm256_loadu_si256((const __m256i *)(xb + (2 * k) * 16))));
            a = _mm256_add_epi32(a, _mm256_madd_epi16(qo, _mm256_loadu_si256((const __m256i *)(xb + (2 * k + 1) * 16))));
            if (k < 4) { qe = _mm256_mulhi_epu16(qe, third); qo = _mm256_mulhi_epu16(qo, third); }
        }
        acc[j] = a;
    }
}

// one block of a tile, by the method its format and shape use
static TK_ALWAYS_INLINE void tk_block_avx2(__m256i *acc, const uint8_t *const *wb, const uint8_t *xb,
                                           int P, int MR, int NR) {
    if (P == T3_PER_BYTE && MR == 1) { tk_block_t3q_avx2(acc, wb, (const int16_t *)xb, NR); }
    else { tk_block_i8_avx2(acc, wb, (const int8_t *)xb, P, MR, NR); }
}

// one tile: the MR*NR dot products of the MR rows of a group of xs with the NR weight rows
// at w (stride ldw), over all of K, without the sum(x) correction: returned as
// [t0, t1, t2, t3] with t = i*NR + j when MR*NR = 4, or [t0, ...] when MR*NR = 1
static TK_ALWAYS_INLINE __m128i tk_tile_avx2(const uint8_t *xs, const uint8_t *w, size_t ldw, int K,
                                             int P, int MR, int NR) {
    const size_t rowbytes = ((size_t)K + P - 1) / P;
    const int nfull = (int)(rowbytes / 32), rem = (int)(rowbytes % 32);
    const int qtrick = P == T3_PER_BYTE && MR == 1;
    const size_t xblock = (size_t)(qtrick ? 320 : 32 * P) * MR; // bytes of xs per block of the group
    // int16 lanes (maddubs) are widened to int32 every 32/P blocks: at most 32 maddubs per
    // lane, |sum| <= 16384; the int32 lanes of the t3 GEMV need no widening: one chunk
    const int chunk = qtrick ? nfull + 1 : 32 / P;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[TK_TILE_MAX], acc32[TK_TILE_MAX];
    const uint8_t *wb[TK_TILE_MAX];
    TK_UNROLL
    for (int t = 0; t < MR * NR; t++) { acc32[t] = _mm256_setzero_si256(); }
    for (int b0 = 0; b0 < nfull + (rem > 0); b0 += chunk) {
        const int b1 = b0 + chunk < nfull ? b0 + chunk : nfull;
        TK_UNROLL
        for (int t = 0; t < MR * NR; t++) { acc[t] = _mm256_setzero_si256(); }
        for (int b = b0; b < b1; b++) {
            TK_UNROLL
            for (int j = 0; j < NR; j++) { wb[j] = w + j * ldw + 32 * (size_t)b; }
            tk_block_avx2(acc, wb, xs + b * xblock, P, MR, NR);
        }
        if (rem && b1 == nfull && b1 < b0 + chunk) {
            // the last partial block, in the chunk that has room for it, copied and zero
            // filled: zero codes (or q = 0) times zero-padded x
            TernaryBlock tail[TK_TILE_MAX];
            TK_UNROLL
            for (int j = 0; j < NR; j++) {
                memset(tail[j].qs, 0, 32);
                memcpy(tail[j].qs, w + j * ldw + 32 * (size_t)nfull, rem);
                wb[j] = tail[j].qs;
            }
            tk_block_avx2(acc, wb, xs + nfull * xblock, P, MR, NR);
        }
        TK_UNROLL
        for (int t = 0; t < MR * NR; t++) {
            acc32[t] = _mm256_add_epi32(acc32[t], qtrick ? acc[t] : _mm256_madd_epi16(acc[t], ones));
        }
    }
    if (MR * NR == 4) { return tk_hsum4_i32(acc32[0], acc32[1], acc32[2], acc32[3]); }
    return _mm_cvtsi32_si128(tk_hsum_i32(acc32[0]));
}

// GEMM panel: out rows 0..3 (stride ldo), columns [n0, n1), from a group of 4 rows of xs;
// the group (4*K bytes: 12 KiB at K = 3072) stays in L1 while the weight rows stream past it
static TK_ALWAYS_INLINE void tk_panel4_avx2(int32_t *out, size_t ldo, const uint8_t *xs, const int32_t *xsum,
                                            const uint8_t *w, size_t ldw, int K, int n0, int n1, int P) {
    const __m128i corr = _mm_loadu_si128((const __m128i *)xsum); // codes = trits + 1: minus sum(x)
    for (int n = n0; n < n1; n++) {
        __m128i r = _mm_sub_epi32(tk_tile_avx2(xs, w + n * ldw, ldw, K, P, 4, 1), corr);
        out[n] = _mm_extract_epi32(r, 0);
        out[ldo + n] = _mm_extract_epi32(r, 1);
        out[2 * ldo + n] = _mm_extract_epi32(r, 2);
        out[3 * ldo + n] = _mm_extract_epi32(r, 3);
    }
}

// GEMV panel: one row of xs (out row), weight rows [n0, n1), 4 at a time
static TK_ALWAYS_INLINE void tk_panel1_avx2(int32_t *out, const uint8_t *xs, int32_t xsum,
                                            const uint8_t *w, size_t ldw, int K, int n0, int n1, int P) {
    const __m128i corr = _mm_set1_epi32(xsum);
    // software prefetch TK_PREFETCH_BYTES ahead, within [n0, n1): see TK_PREFETCH_BYTES
    const char *pf_end = (const char *)(w + (size_t)n1 * ldw);
    for (const char *p = (const char *)(w + (size_t)n0 * ldw); p < pf_end && p < (const char *)(w + (size_t)n0 * ldw) + TK_PREFETCH_BYTES; p += 64) {
        _mm_prefetch(p, _MM_HINT_T0); // the start of the range, which nothing before prefetched
    }
    int n = n0;
    for (; n + 4 <= n1; n += 4) {
        const char *pf = (const char *)(w + (size_t)n * ldw) + TK_PREFETCH_BYTES;
        for (size_t o = 0; o < 4 * ldw && pf + o < pf_end; o += 64) { _mm_prefetch(pf + o, _MM_HINT_T0); }
        _mm_storeu_si128((__m128i *)(out + n), _mm_sub_epi32(tk_tile_avx2(xs, w + n * ldw, ldw, K, P, 1, 4), corr));
    }
    for (; n < n1; n++) { out[n] = _mm_cvtsi128_si32(tk_tile_avx2(xs, w + n * ldw, ldw, K, P, 1, 1)) - xsum; }
}

// the panels of each format, as functions with P constant (called through pointers by the driver)
typedef void (*tk_panel4_fn)(int32_t *out, size_t ldo, const uint8_t *xs, const int32_t *xsum,
                             const uint8_t *w, size_t ldw, int K, int n0, int n1);
typedef void (*tk_panel1_fn)(int32_t *out, const uint8_t *xs, int32_t xsum,
                             const uint8_t *w, size_t ldw, int K, int n0, int n1);
static inline void tk_t2_panel4(int32_t *out, size_t ldo, const uint8_t *xs, const int32_t *xsum,
                                const uint8_t *w, size_t ldw, int K, int n0, int n1) {
    tk_panel4_avx2(out, ldo, xs, xsum, w, ldw, K, n0, n1, T2_PER_BYTE);
}
static inline void tk_t3_panel4(int32_t *out, size_t ldo, const uint8_t *xs, const int32_t *xsum,
                                const uint8_t *w, size_t ldw, int K, int n0, int n1) {
    tk_panel4_avx2(out, ldo, xs, xsum, w, ldw, K, n0, n1, T3_PER_BYTE);
}
static inline void tk_t2_panel1(int32_t *out, const uint8_t *xs, int32_t xsum,
                                const uint8_t *w, size_t ldw, int K, int n0, int n1) {
    tk_panel1_avx2(out, xs, xsum, w, ldw, K, n0, n1, T2_PER_BYTE);
}
static inline void tk_t3_panel1(int32_t *out, const uint8_t *xs, int32_t xsum,
                                const uint8_t *w, size_t ldw, int K, int n0, int n1) {
    tk_panel1_avx2(out, xs, xsum, w, ldw, K, n0, n1, T3_PER_BYTE);
}

CPU_TARGET_END

// ----------------------------------------------------------------------------
// AVX-512 VNNI kernels (2-bit format)
// vpdpbusd multiplies 4 unsigned bytes by 4 signed bytes and adds the 4 products to an int32
// lane: no int16 stage, so no saturation and no widening. A block is 64 packed bytes of a row
// (256 trits), xs in the BW = 64 layout of tk_gather_x. Plane s is not shifted down: masking
// a packed byte with 3 << 2s leaves code_s * 4^s (at most 2 * 64 = 128, still an unsigned byte),
// so plane s is summed in its own accumulator, 4^s times too large, and divided by an exact
// arithmetic shift at the end: 1 op per plane instead of 2. |lane| <= 4 * 128 * 128 per block.
// The t3 format runs the AVX2 kernels on this path (its decode, not the multiply, is its cost).

CPU_TARGET_BEGIN_AVX512

// The two tiles below, 4 outputs each, written out with 16 named accumulators: in the loop form of
// the AVX2 tile (arrays indexed by tile position) gcc copied the accumulators between registers
// and the stack on every block (measured 2.5x slower).
// acc_is += plane s of the weight block . plane s of x row i (or of x, for weight row i)
#define TK512_ZERO4(a) __m512i a##0 = _mm512_setzero_si512(), a##1 = a##0, a##2 = a##0, a##3 = a##0
#define TK512_DOT4(a, v, x0, x1, x2, x3) {                                          \
        a##0 = _mm512_dpbusd_epi32(a##0, _mm512_and_si512(v, m0), x0);             \
        a##1 = _mm512_dpbusd_epi32(a##1, _mm512_and_si512(v, m1), x1);             \
        a##2 = _mm512_dpbusd_epi32(a##2, _mm512_and_si512(v, m2), x2);             \
        a##3 = _mm512_dpbusd_epi32(a##3, _mm512_and_si512(v, m3), x3); }
// v is used 4 times: kept in a register (gcc otherwise folds the load into each use, and 4 zmm
// loads per block per row made the GEMV bound by loads: 32 per block of 4 rows, at most 1 a cycle
// on Zen 4; with this 8, and 1.9x the speed)
#define TK512_IN_REGISTER(v) __asm__("" : "+v"(v))
// a weight block: whole, or the last partial one of a row, zeros past its `rem` bytes
#define TK512_LOAD(p) _mm512_loadu_si512((const void *)(p))
#define TK512_LOAD_TAIL(p) _mm512_maskz_loadu_epi8(((__mmask64)1 << rem) - 1, (p))
// the 4 plane accumulators of one output -> one vector of partial sums of codes . x
#define TK512_PLANES(a) _mm512_add_epi32(_mm512_add_epi32(a##0, _mm512_srai_epi32(a##1, 2)), \
                                         _mm512_add_epi32(_mm512_srai_epi32(a##2, 4), _mm512_srai_epi32(a##3, 6)))

// [sum r0, sum r1, sum r2, sum r3] of 4 vectors: 512 -> 256 bits each, then hadd within 128-bit
// halves, then the halves added
static TK_ALWAYS_INLINE __m128i tk512_hsum4(__m512i r0, __m512i r1, __m512i r2, __m512i r3) {
    __m256i h0 = _mm256_add_epi32(_mm512_castsi512_si256(r0), _mm512_extracti64x4_epi64(r0, 1));
    __m256i h1 = _mm256_add_epi32(_mm512_castsi512_si256(r1), _mm512_extracti64x4_epi64(r1, 1));
    __m256i h2 = _mm256_add_epi32(_mm512_castsi512_si256(r2), _mm512_extracti64x4_epi64(r2, 1));
    __m256i h3 = _mm256_add_epi32(_mm512_castsi512_si256(r3), _mm512_extracti64x4_epi64(r3, 1));
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(h0, h1), _mm256_hadd_epi32(h2, h3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// GEMV tile: 1 row of xs (4 planes of 64 bytes per block) times the 4 weight rows at w (stride
// ldw), over nblk whole blocks (LOAD = TK512_LOAD), or over one last partial block (TK512_LOAD_TAIL,
// `rem` bytes): [codes . x for each row], without the sum(x) correction. The partial block is a
// call of its own: in the same loop, its masked loads left gcc short of registers (spills again).
#define TK512_TILE_1x4(name, LOAD)                                                                        \
static __attribute__((noinline)) __m128i name(const uint8_t *xs, const uint8_t *w, size_t ldw, int nblk, int rem) { \
    const __m512i m0 = _mm512_set1_epi8(3), m1 = _mm512_set1_epi8(12), m2 = _mm512_set1_epi8(48),        \
                  m3 = _mm512_set1_epi8((char)192); /* plane s: bits [2s+1:2s] of every byte */            \
    (void)rem;                                                                                            \
    TK512_ZERO4(a); TK512_ZERO4(b); TK512_ZERO4(c); TK512_ZERO4(d);                                       \
    for (int k = 0; k < nblk; k++) {                                                                      \
        const uint8_t *xb = xs + (size_t)k * 256, *wb = w + (size_t)k * 64;                               \
        __m512i x0 = _mm512_loadu_si512((const void *)xb), x1 = _mm512_loadu_si512((const void *)(xb + 64));       \
        __m512i x2 = _mm512_loadu_si512((const void *)(xb + 128)), x3 = _mm512_loadu_si512((const void *)(xb + 192)); \
        __m512i v0 = LOAD(wb), v1 = LOAD(wb + ldw), v2 = LOAD(wb + 2 * ldw), v3 = LOAD(wb + 3 * ldw);    \
        TK512_IN_REGISTER(v0); TK512_IN_REGISTER(v1); TK512_IN_REGISTER(v2); TK512_IN_REGISTER(v3);      \
        TK512_IN_REGISTER(x0); TK512_IN_REGISTER(x1); TK512_IN_REGISTER(x2); TK512_IN_REGISTER(x3);      \
        TK512_DOT4(a, v0, x0, x1, x2, x3);                                                                \
        TK512_DOT4(b, v1, x0, x1, x2, x3);                                                                \
        TK512_DOT4(c, v2, x0, x1, x2, x3);                                                                \
        TK512_DOT4(d, v3, x0, x1, x2, x3);                                                                \
    }                                                                                                     \
    return tk512_hsum4(TK512_PLANES(a), TK512_PLANES(b), TK512_PLANES(c), TK512_PLANES(d));              \
}
TK512_TILE_1x4(tk512_tile_1x4, TK512_LOAD)
TK512_TILE_1x4(tk512_tail_1x4, TK512_LOAD_TAIL)

// GEMM tile: a group of 4 rows of xs (plane s of row i at + (4s + i) * 64 per block of 1024 bytes)
// times the weight row at w: [codes . x_i for each row i of x], over nblk whole blocks or the tail
#define TK512_X(s, i) _mm512_loadu_si512((const void *)(xb + (4 * (s) + (i)) * 64))
#define TK512_TILE_4x1(name, LOAD)                                                                        \
static __attribute__((noinline)) __m128i name(const uint8_t *xs, const uint8_t *w, int nblk, int rem) {     \
    const __m512i m0 = _mm512_set1_epi8(3), m1 = _mm512_set1_epi8(12), m2 = _mm512_set1_epi8(48),        \
                  m3 = _mm512_set1_epi8((char)192);                                                       \
    (void)rem;                                                                                            \
    TK512_ZERO4(a); TK512_ZERO4(b); TK512_ZERO4(c); TK512_ZERO4(d);                                       \
    for (int k = 0; k < nblk; k++) {                                                                      \
        __m512i v = LOAD(w + (size_t)k * 64);                                                             \
        TK512_IN_REGISTER(v);                                                                             \
        const uint8_t *xb = xs + (size_t)k * 1024;                                                        \
        TK512_DOT4(a, v, TK512_X(0, 0), TK512_X(1, 0), TK512_X(2, 0), TK512_X(3, 0));                    \
        TK512_DOT4(b, v, TK512_X(0, 1), TK512_X(1, 1), TK512_X(2, 1), TK512_X(3, 1));                    \
        TK512_DOT4(c, v, TK512_X(0, 2), TK512_X(1, 2), TK512_X(2, 2), TK512_X(3, 2));                    \
        TK512_DOT4(d, v, TK512_X(0, 3), TK512_X(1, 3), TK512_X(2, 3), TK512_X(3, 3));                    \
    }                                                                                                     \
    return tk512_hsum4(TK512_PLANES(a), TK512_PLANES(b), TK512_PLANES(c), TK512_PLANES(d));              \
}
TK512_TILE_4x1(tk512_tile_4x1, TK512_LOAD)
TK512_TILE_4x1(tk512_tail_4x1, TK512_LOAD_TAIL)
#undef TK512_X

// GEMM tile, 4 rows of x times 4 weight rows: 16 outputs, so each block of a weight row is decoded
// once for 4 rows of x and each block of x loaded once for 4 weight rows. 16 accumulators (one per
// output), so the planes are shifted down to codes (7 ops per block and weight row) instead of
// kept in accumulators of their own; per block 64 vpdpbusd against 28 decode ops and 20 loads.
// Measured 1.6-1.9x the 4 x 1 tile at K = 768 (its 4 outputs paid a reduction every 3 blocks).
// acc_ij: x row i, weight row j. LOAD as for the tiles above (whole blocks, or the tail).
#define TK512_TILE_4x4(name, LOAD)                                                                        \
static __attribute__((noinline)) void name(__m128i *res, const uint8_t *xs, const uint8_t *w, size_t ldw, \
                                           int nblk, int rem) {                                          \
    const __m512i m = _mm512_set1_epi8(3);                                                                \
    (void)rem;                                                                                            \
    TK512_ZERO4(a0); TK512_ZERO4(a1); TK512_ZERO4(a2); TK512_ZERO4(a3); /* a<i><j> */                    \
    for (int k = 0; k < nblk; k++) {                                                                      \
        const uint8_t *wb = w + (size_t)k * 64, *xb = xs + (size_t)k * 1024;                              \
        __m512i v0 = LOAD(wb), v1 = LOAD(wb + ldw), v2 = LOAD(wb + 2 * ldw), v3 = LOAD(wb + 3 * ldw);    \
        TK512_IN_REGISTER(v0); TK512_IN_REGISTER(v1); TK512_IN_REGISTER(v2); TK512_IN_REGISTER(v3);      \
        for (int s = 0; s < 4; s++) { /* plane s: bits [2s+1:2s], shifted down */                          \
            const __m512i c0 = _mm512_and_si512(_mm512_srli_epi16(v0, 2 * s), m);                        \
            const __m512i c1 = _mm512_and_si512(_mm512_srli_epi16(v1, 2 * s), m);                        \
            const __m512i c2 = _mm512_and_si512(_mm512_srli_epi16(v2, 2 * s), m);                        \
            const __m512i c3 = _mm512_and_si512(_mm512_srli_epi16(v3, 2 * s), m);                        \
            TK512_DOT4X(a0, c0, c1, c2, c3, _mm512_loadu_si512((const void *)(xb + (4 * s + 0) * 64)));   \
            TK512_DOT4X(a1, c0, c1, c2, c3, _mm512_loadu_si512((const void *)(xb + (4 * s + 1) * 64)));   \
            TK512_DOT4X(a2, c0, c1, c2, c3, _mm512_loadu_si512((const void *)(xb + (4 * s + 2) * 64)));   \
            TK512_DOT4X(a3, c0, c1, c2, c3, _mm512_loadu_si512((const void *)(xb + (4 * s + 3) * 64)));   \
        }                                                                                                 \
    }                                                                                                     \
    res[0] = tk512_hsum4(a00, a01, a02, a03);                                                             \
    res[1] = tk512_hsum4(a10, a11, a12, a13);                                                             \
    res[2] = tk512_hsum4(a20, a21, a22, a23);                                                             \
    res[3] = tk512_hsum4(a30, a31, a32, a33);                                                             \
}
// acc_i<j> += codes of weight row j . x (one row of x, one plane), j = 0..3
#define TK512_DOT4X(a, c0, c1, c2, c3, xv) {                                                              \
        const __m512i x_ = (xv);                                                                          \
        a##0 = _mm512_dpbusd_epi32(a##0, c0, x_); a##1 = _mm512_dpbusd_epi32(a##1, c1, x_);               \
        a##2 = _mm512_dpbusd_epi32(a##2, c2, x_); a##3 = _mm512_dpbusd_epi32(a##3, c3, x_); }
TK512_TILE_4x4(tk512_tile_4x4, TK512_LOAD)
TK512_TILE_4x4(tk512_tail_4x4, TK512_LOAD_TAIL)

// one weight row (a GEMV row left over by the 4-row tiles): codes . x, the partial block included
static inline int32_t tk512_tile_1x1(const uint8_t *xs, const uint8_t *w, int nblk, int rem) {
    const __m512i m0 = _mm512_set1_epi8(3), m1 = _mm512_set1_epi8(12), m2 = _mm512_set1_epi8(48),
                  m3 = _mm512_set1_epi8((char)192);
    TK512_ZERO4(a);
    for (int k = 0; k <= nblk; k++) {
        if (k == nblk && rem == 0) { break; }
        const __mmask64 mask = k < nblk ? ~(__mmask64)0 : ((__mmask64)1 << rem) - 1;
        const uint8_t *xb = xs + (size_t)k * 256;
        const __m512i v = _mm512_maskz_loadu_epi8(mask, w + (size_t)k * 64);
        TK512_DOT4(a, v, _mm512_loadu_si512((const void *)xb), _mm512_loadu_si512((const void *)(xb + 64)),
                   _mm512_loadu_si512((const void *)(xb + 128)), _mm512_loadu_si512((const void *)(xb + 192)));
    }
    return _mm512_reduce_add_epi32(TK512_PLANES(a));
}

// GEMM panel: out rows 0..3 (stride ldo), columns [n0, n1), from a group of 4 rows of xs
static inline void tk512_t2_panel4(int32_t *out, size_t ldo, const uint8_t *xs, const int32_t *xsum,
                                   const uint8_t *w, size_t ldw, int K, int n0, int n1) {
    const int nfull = (int)(ldw / 64), rem = (int)(ldw % 64);
    (void)K;
    int n = n0;
    for (; n + 4 <= n1; n += 4) { // 4 x 4 tiles; out[i][n..n+3] = codes . x_i - sum(x_i) (codes = trits + 1)
        __m128i r[4], t[4];
        tk512_tile_4x4(r, xs, w + n * ldw, ldw, nfull, 0);
        if (rem) {
            tk512_tail_4x4(t, xs + (size_t)nfull * 1024, w + n * ldw + (size_t)nfull * 64, ldw, 1, rem);
            for (int i = 0; i < 4; i++) { r[i] = _mm_add_epi32(r[i], t[i]); }
        }
        for (int i = 0; i < 4; i++) { _mm_storeu_si128((__m128i *)(out + i * ldo + n), _mm_sub_epi32(r[i], _mm_set1_epi32(xsum[i]))); }
    }
    const __m128i corr = _mm_loadu_si128((const __m128i *)xsum);
    for (; n < n1; n++) { // the last weight rows, one at a time
        __m128i r = tk512_tile_4x1(xs, w + n * ldw, nfull, 0);
        if (rem) { r = _mm_add_epi32(r, tk512_tail_4x1(xs + (size_t)nfull * 1024, w + n * ldw + (size_t)nfull * 64, 1, rem)); }
        r = _mm_sub_epi32(r, corr);
        out[n] = _mm_extract_epi32(r, 0);
        out[ldo + n] = _mm_extract_epi32(r, 1);
        out[2 * ldo + n] = _mm_extract_epi32(r, 2);
        out[3 * ldo + n] = _mm_extract_epi32(r, 3);
    }
}

// GEMV panel: one row of xs, weight rows [n0, n1), 4 at a time, prefetched as tk_panel1_avx2 does
static inline void tk512_t2_panel1(int32_t *out, const uint8_t *xs, int32_t xsum,
                                   const uint8_t *w, size_t ldw, int K, int n0, int n1) {
    const __m128i corr = _mm_set1_epi32(xsum);
    const int nfull = (int)(ldw / 64), rem = (int)(ldw % 64);
    (void)K;
    const char *pf_end = (const char *)(w + (size_t)n1 * ldw);
    for (const char *p = (const char *)(w + (size_t)n0 * ldw); p < pf_end && p < (const char *)(w + (size_t)n0 * ldw) + TK_PREFETCH_BYTES; p += 64) {
        _mm_prefetch(p, _MM_HINT_T0);
    }
    int n = n0;
    for (; n + 4 <= n1; n += 4) {
        const char *pf = (const char *)(w + (size_t)n * ldw) + TK_PREFETCH_BYTES;
        for (size_t o = 0; o < 4 * ldw && pf + o < pf_end; o += 64) { _mm_prefetch(pf + o, _MM_HINT_T0); }
        __m128i r = tk512_tile_1x4(xs, w + n * ldw, ldw, nfull, 0);
        if (rem) { r = _mm_add_epi32(r, tk512_tail_1x4(xs + (size_t)nfull * 256, w + n * ldw + (size_t)nfull * 64, ldw, 1, rem)); }
        _mm_storeu_si128((__m128i *)(out + n), _mm_sub_epi32(r, corr));
    }
    for (; n < n1; n++) { out[n] = tk512_tile_1x1(xs, w + n * ldw, nfull, rem) - xsum; }
}

CPU_TARGET_END

#define TK_GEMV_ROWS 32 // weight rows per GEMV work item (a multiple of 4)

// out (M,N) = x (M,K) @ trits(w)^T for P trits per byte, with the panels of one format and path,
// whose blocks are BW packed bytes (32: 256-bit kernels, 64: 512-bit)
static inline void tk_matmul_x86(int32_t *out, const int8_t *x, const uint8_t *w, int M, int K, int N, int P, int BW,
                                 tk_panel4_fn panel4, tk_panel1_fn panel1) {
    const int BT = BW * P;
    const int nblk = (K + BT - 1) / BT; // blocks per row, the last maybe partial
    // bytes of xs per row: BW*4 per block for t2; for t3 160 in a GEMM group, 320 in a GEMV row
    const size_t xrow = (size_t)nblk * (P == T2_PER_BYTE ? 4 * BW : 320);
    const size_t ldw = ((size_t)K + P - 1) / P;
    const int groups = M / 4; // 4-row groups of x for the GEMM tiles; the rest are GEMV rows
    // xs then xsum in one scratch buffer (xrow is a multiple of 128: xsum stays aligned)
    uint8_t *xs = (uint8_t *)tk_scratch((size_t)M * xrow + (size_t)M * sizeof(int32_t));
    int32_t *xsum = (int32_t *)(xs + (size_t)M * xrow);
    #pragma omp parallel for
    for (int m = 0; m < M; m++) {
        if (m < groups * 4 && m % 4 == 0) { // a group of 4 rows starts here
            tk_gather_x(xs + m * xrow, xsum + m, x + (size_t)m * K, 4, K, nblk, P, BW);
        } else if (m >= groups * 4) {       // a GEMV row
            tk_gather_x(xs + m * xrow, xsum + m, x + (size_t)m * K, 1, K, nblk, P, BW);
        }
    }

    // GEMM: weight rows in blocks of about 64 KiB (L2) that every 4-row group of x reuses
    if (groups > 0) {
        int NB = (int)(65536 / ldw) & ~3; // a multiple of 4: the 4 x 4 tiles of the 512-bit panel
        NB = NB < 4 ? 4 : NB;
        const int nblocks = (N + NB - 1) / NB;
        // then the blocks evened out (at most 3 rows apart): with the largest NB first, N = 768 at
        // K = 768 was blocks of 340, 340 and 88 rows, and the threads' static shares 2 : 1
        NB = ((N + nblocks - 1) / nblocks + 3) & ~3;
        #pragma omp parallel for collapse(2) schedule(dynamic, 4) // (integer sums: exact in any order)
        for (int nb = 0; nb < nblocks; nb++) {
            for (int g = 0; g < groups; g++) {
                int n1 = (nb + 1) * NB < N ? (nb + 1) * NB : N;
                panel4(out + (size_t)g * 4 * N, N, xs + g * 4 * xrow, xsum + g * 4, w, ldw, K, nb * NB, n1);
            }
        }
    }
    // GEMV: each remaining row of x (all of them when M < 4), in slices of weight rows
    for (int m = groups * 4; m < M; m++) {
        const int slices = (N + TK_GEMV_ROWS - 1) / TK_GEMV_ROWS;
        #pragma omp parallel for schedule(static)
        for (int sl = 0; sl < slices; sl++) {
            int n0 = sl * TK_GEMV_ROWS, n1 = n0 + TK_GEMV_ROWS < N ? n0 + TK_GEMV_ROWS : N;
            panel1(out + (size_t)m * N, xs + m * xrow, xsum[m], w, ldw, K, n0, n1);
        }
    }
}

#endif // TG1_CPU_X86

// ----------------------------------------------------------------------------
// public kernels: the path cpu_path() chose

// out (M,N) = x (M,K) @ trits(w)^T, w = N rows of K trits in the 2-bit format
static inline void matmul_i8_t2(int32_t *out, const int8_t *x, const uint8_t *w, int M, int K, int N) {
    switch (cpu_path()) {
#ifdef TG1_CPU_X86
    case CPU_PATH_AVX512: tk_matmul_x86(out, x, w, M, K, N, T2_PER_BYTE, 64, tk512_t2_panel4, tk512_t2_panel1); return;
    case CPU_PATH_AVX2: tk_matmul_x86(out, x, w, M, K, N, T2_PER_BYTE, 32, tk_t2_panel4, tk_t2_panel1); return;
#endif
    default: matmul_i8_t2_ref(out, x, w, M, K, N);
    }
}

// out (M,N) = x (M,K) @ trits(w)^T, w = N rows of K trits in the base-3 format
static inline void matmul_i8_t3(int32_t *out, const int8_t *x, const uint8_t *w, int M, int K, int N) {
    switch (cpu_path()) {
#ifdef TG1_CPU_X86
    case CPU_PATH_AVX512: // the AVX2 kernels (see the AVX-512 section)
    case CPU_PATH_AVX2: tk_matmul_x86(out, x, w, M, K, N, T3_PER_BYTE, 32, tk_t3_panel4, tk_t3_panel1); return;
#endif
    default: matmul_i8_t3_ref(out, x, w, M, K, N);
    }
}

// ----------------------------------------------------------------------------
// GEMV for decoding, split between the caller's threads
// One token's BitLinear is a few microseconds of work, so the fork/join of OpenMP threads in
// matmul_i8_t2 (two per call) is a visible part of it. These are matmul_i8_t2 for M = 1 in two
// steps that a caller runs inside its own parallel region, with its own scratch:
//   xsum = gemv_i8_t2_prepare(xs, x, K)           once per x: x (K) int8 -> xs, returns sum(x);
//                                                 xs holds gemv_i8_t2_scratch_bytes(K) bytes
//   gemv_i8_t2_rows(out, xs, xsum, w, K, n0, n1)  any thread, any rows: out[n] for n in [n0, n1)
//                                                 = dot(x, trits of row n of w), w as for matmul_i8_t2
// Rows are computed 4 at a time; a range that starts at a multiple of 4 keeps that tiling.
// Both steps must run on the same path (xs's layout is the path's).

static inline size_t gemv_i8_t2_scratch_bytes(int K) {
    return (size_t)((K + 255) / 256) * 256; // whole blocks of every path's layout, zero padded
}

static inline int32_t gemv_i8_t2_prepare(uint8_t *xs, const int8_t *x, int K) {
    int32_t xsum = 0;
    switch (cpu_path()) {
#ifdef TG1_CPU_X86
    case CPU_PATH_AVX512: tk_gather_x(xs, &xsum, x, 1, K, (K + 255) / 256, T2_PER_BYTE, 64); break;
    case CPU_PATH_AVX2: tk_gather_x(xs, &xsum, x, 1, K, (K + 127) / 128, T2_PER_BYTE, 32); break;
#endif
    default:
        for (int k = 0; k < K; k++) { xsum += x[k]; }
        memcpy(xs, x, (size_t)K);
    }
    return xsum;
}

static inline void gemv_i8_t2_rows(int32_t *out, const uint8_t *xs, int32_t xsum, const uint8_t *w, int K,
                                   int n0, int n1) {
    switch (cpu_path()) {
#ifdef TG1_CPU_X86
    case CPU_PATH_AVX512: tk512_t2_panel1(out, xs, xsum, w, pack2_row_bytes(K), K, n0, n1); return;
    case CPU_PATH_AVX2: tk_t2_panel1(out, xs, xsum, w, pack2_row_bytes(K), K, n0, n1); return;
#endif
    default: break;
    }
    // the reference's arithmetic (sum of x * trit in int32), unpacking one row at a time
    (void)xsum;
    const int8_t *x = (const int8_t *)xs;
    const size_t rb = pack2_row_bytes(K);
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = w + (size_t)n * rb;
        int32_t sum = 0;
        for (int k = 0; k < K; k++) { sum += (int32_t)x[k] * (((row[k / 4] >> (2 * (k % 4))) & 3) - 1); }
        out[n] = sum;
    }
}

// ----------------------------------------------------------------------------
// int4 rows x int16 vector, exact: the decoder's head screen (run_gpt2_1bit.c)
//   dot[v] = u_v . x  (int32)   for the rows v of a matrix u (V,C) of 4-bit unsigned codes 0..15,
//                               x (C) int16 with |x_i| <= n4_xmax(C)
// exact: |u_v . x| <= 15 * xmax * C < 2^31, and so is every partial sum, in any order. (The
// decoder splits each int8 code of its head as q = 16 hi + lo, hi in -8..7, lo in 0..15, and keeps
// u = hi + 8 and lo in two such matrices: the first alone bounds a logit within 8 steps, both
// give q . x exactly; see run_gpt2_1bit.c.)
// Layout, for C % 16 == 0 and whole groups of 4 rows: group g (rows 4g..4g+3), columns 16b..16b+15
// take the 32 bytes at (g * C/16 + b) * 32; byte 8r + j holds row 4g+r's code of column 16b+j in
// its low nibble and of column 16b+8+j in its high nibble (n4_index). So the low nibbles of the 32
// bytes are 8 columns of 4 rows, the high nibbles the next 8: each widens to int16 against the
// same 8 values of x, and a group is one stream of bytes (4 streams measured 15% slower).
// AVX2: vpmovzxbw + vpmaddwd, 16 products per op; AVX-512: vpdpbusd (AVX512-VNNI) on the codes as
// they lie, against x split into two signed bytes (n4_prepare), 64 products per op.

// the byte of code (v, i) in the layout above; *shift = 0 (low nibble) or 4 (high)
static inline size_t n4_index(int v, int i, int C, int *shift) {
    *shift = (i % 16) / 8 * 4;
    return ((size_t)(v / 4) * (C / 16) + i / 16) * 32 + (v % 4) * 8 + i % 8;
}

// the largest |x_i| for which every sum is exact in int32, for codes up to 127 (so also for the
// 4-bit codes, and for q . x = 16 (u - 8) . x + lo . x when summed in int64), and at most 16319, so
// that x = 128 xh + xl with xh in -127..127 and xl in -64..63, two signed bytes (the AVX-512 kernel)
static inline int n4_xmax(int C) {
    long m = 2147483647L / (127L * C);
    return m < 16319 ? (int)m : 16319;
}

// x (C) -> the AVX-512 kernel's operands (n4_pattern_bytes(C) bytes): x = 128 xh + xl as signed
// bytes, laid out as the codes are, so that vpdpbusd multiplies 4 codes of a row by the 4 bytes of
// x they meet. Per pair of blocks (32 columns, 64 packed bytes) 4 vectors of 64 bytes: pattern t
// (0: xh for the low nibbles, 1: xl for the low nibbles, 2: xh high, 3: xl high), block b of the
// pair (bytes 32b..), row r: the 8 columns of that nibble, pat[((c/32)*4 + t)*64 + b*32 + r*8 + j]
static inline size_t n4_pattern_bytes(int C) { return (size_t)(C + 31) / 32 * 256; }
static inline void n4_prepare(int8_t *pat, const int16_t *x, int C) {
    for (int i = 0; i < C; i++) {
        int xh = (x[i] + 64) >> 7, xl = x[i] - 128 * xh; // floor: xl in -64..63
        int blk = i / 16, nibble = (i % 16) / 8, j = i % 8;
        for (int r = 0; r < 4; r++) {
            size_t base = (size_t)(blk / 2) * 256 + (blk % 2) * 32 + r * 8 + j;
            pat[base + (size_t)(2 * nibble) * 64] = (int8_t)xh;
            pat[base + (size_t)(2 * nibble + 1) * 64] = (int8_t)xl;
        }
    }
}

// u (V,C) of codes 0..15, row-major -> p in the layout above (V a multiple of 4, C of 16)
static inline void pack_n4x4(uint8_t *p, const uint8_t *u, int V, int C) {
    memset(p, 0, (size_t)V * C / 2);
    for (int v = 0; v < V; v++) {
        for (int i = 0; i < C; i++) {
            int shift;
            p[n4_index(v, i, C, &shift)] |= (uint8_t)((u[(size_t)v * C + i] & 15) << shift);
        }
    }
}

// the spec: plain loops over the layout, rows [v0, v1)
static inline void gemv_n4x4_i16_ref(int32_t *dot, const uint8_t *p, const int16_t *x, int C, int v0, int v1) {
    for (int v = v0; v < v1; v++) {
        int32_t s = 0;
        for (int i = 0; i < C; i++) {
            int shift;
            s += (int32_t)((p[n4_index(v, i, C, &shift)] >> shift) & 15) * x[i];
        }
        dot[v] = s;
    }
}

#ifdef TG1_CPU_X86
CPU_TARGET_BEGIN_AVX2
// groups of 4 rows [v0, v1), multiples of 4, C % 16 == 0
static inline void gemv_n4x4_i16_avx2(int32_t *dot, const uint8_t *p, const int16_t *x, int C, int v0, int v1) {
    const __m256i nib = _mm256_set1_epi8(15);
    for (int v = v0; v < v1; v += 4) {
        const uint8_t *g = p + (size_t)v * C / 2; // the group: C/16 blocks of 32 bytes
        __m256i a01 = _mm256_setzero_si256(), a23 = a01; // lanes 0-3: row 0 (or 2), lanes 4-7: row 1 (or 3)
        for (int i = 0; i < C; i += 16) {
            const uint8_t *blk = g + i * 2;
            if (i % 32 == 0) { _mm_prefetch((const char *)blk + 2048, _MM_HINT_NTA); } // each 64-byte line once
            __m256i b = _mm256_loadu_si256((const __m256i *)blk);
            __m256i lo = _mm256_and_si256(b, nib), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), nib);
            __m256i x0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(x + i)));
            __m256i x1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(x + i + 8)));
            a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(lo)), x0));
            a23 = _mm256_add_epi32(a23, _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(lo, 1)), x0));
            a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(hi)), x1));
            a23 = _mm256_add_epi32(a23, _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(hi, 1)), x1));
        }
        // hadd: [r0 r0 r2 r2 | r1 r1 r3 r3] in pairs, again: [r0 r2 . . | r1 r3 . .], then r0 r1 r2 r3
        __m256i h = _mm256_hadd_epi32(a01, a23);
        h = _mm256_hadd_epi32(h, h);
        h = _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
        _mm_storeu_si128((__m128i *)(dot + v), _mm256_castsi256_si128(h));
    }
}
CPU_TARGET_END

CPU_TARGET_BEGIN_AVX512
// vpdpbusd: 4 codes (unsigned bytes) of a row times 4 bytes of x, into an int32 lane; x as two
// signed bytes (n4_prepare), so the sum is 128 (u . xh) + u . xl: 4 vpdpbusd per 64 packed bytes
// (128 codes), no widening (the vpmovzxbw + vpdpwssd form ran at half the speed on Zen 4)
static inline void gemv_n4x4_i16_avx512(int32_t *dot, const uint8_t *p, const int8_t *pat, int C, int v0, int v1) {
    const __m512i nib = _mm512_set1_epi8(15);
    for (int v = v0; v < v1; v += 4) {
        const uint8_t *g = p + (size_t)v * C / 2;
        __m512i ah = _mm512_setzero_si512(), al = _mm512_setzero_si512(); // lane l: row (l % 8) / 2
        int i = 0;
        for (; i + 32 <= C; i += 32) { // 64 bytes: two blocks of 16 columns
            const uint8_t *blk = g + i * 2;
            const int8_t *xp = pat + (size_t)i * 8;
            _mm_prefetch((const char *)blk + 2048, _MM_HINT_NTA); // each 64-byte line once
            __m512i w = _mm512_loadu_si512((const void *)blk);
            __m512i lo = _mm512_and_si512(w, nib), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), nib);
            ah = _mm512_dpbusd_epi32(ah, lo, _mm512_loadu_si512((const void *)xp));
            al = _mm512_dpbusd_epi32(al, lo, _mm512_loadu_si512((const void *)(xp + 64)));
            ah = _mm512_dpbusd_epi32(ah, hi, _mm512_loadu_si512((const void *)(xp + 128)));
            al = _mm512_dpbusd_epi32(al, hi, _mm512_loadu_si512((const void *)(xp + 192)));
        }
        __m512i t = _mm512_add_epi32(_mm512_slli_epi32(ah, 7), al); // exact: |t| <= 15 * 16319 * C
        __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(t), _mm512_extracti64x4_epi64(t, 1)); // the two blocks
        if (i < C) { // C % 32 == 16: the last block, on 256-bit registers
            const int8_t *xp = pat + (size_t)i * 8;
            __m256i w = _mm256_loadu_si256((const __m256i *)(g + i * 2)), n = _mm256_set1_epi8(15);
            __m256i lo = _mm256_and_si256(w, n), hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), n);
            __m256i bh = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, _mm256_loadu_si256((const __m256i *)xp));
            __m256i bl = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, _mm256_loadu_si256((const __m256i *)(xp + 64)));
            bh = _mm256_dpbusd_epi32(bh, hi, _mm256_loadu_si256((const __m256i *)(xp + 128)));
            bl = _mm256_dpbusd_epi32(bl, hi, _mm256_loadu_si256((const __m256i *)(xp + 192)));
            h = _mm256_add_epi32(h, _mm256_add_epi32(_mm256_slli_epi32(bh, 7), bl));
        }
        // lanes 2r, 2r+1 hold row r: pairs, then rows 0 1 (low half) and 2 3 (high half) side by side
        h = _mm256_hadd_epi32(h, h);
        h = _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 1, 4, 5, 0, 0, 0, 0));
        _mm_storeu_si128((__m128i *)(dot + v), _mm256_castsi256_si128(h));
    }
}
CPU_TARGET_END
#endif // TG1_CPU_X86

// dot[v] = u_v . x for the rows v in [v0, v1) (multiples of 4: whole groups), p in the layout of
// n4_index, C % 16 == 0, |x_i| <= n4_xmax(C), pat = n4_prepare(x) (what the AVX-512 kernel reads)
static inline void gemv_n4x4_i16(int32_t *dot, const uint8_t *p, const int16_t *x, const int8_t *pat, int C,
                                 int v0, int v1) {
    (void)pat;
    switch (cpu_path()) {
#ifdef TG1_CPU_X86
    case CPU_PATH_AVX512: gemv_n4x4_i16_avx512(dot, p, pat, C, v0, v1); return;
    case CPU_PATH_AVX2: gemv_n4x4_i16_avx2(dot, p, x, C, v0, v1); return;
#endif
    default: gemv_n4x4_i16_ref(dot, p, x, C, v0, v1);
    }
}

// ----------------------------------------------------------------------------
// the trainer's compute form of a trit matrix: 2-bit rows (t2, above), or on the AVX-512 path
// int8 code panels (p8), which its GEMM tile multiplies 1.4-1.7x as fast (dev/bench_kernels; at
// B*T = 256 and GPT-2's shapes, 600-730 GOPS against the t2 tiles' 400-460 on 2 Zen 4 cores)
//
// p8: the codes (trit + 1) one byte each, in panels of 16 rows, an even number of panels: panel
// p, group g of 4 columns is 64 bytes, byte 4r + j = the code of row 16p + r, column 4g + j (1,
// trit 0, past N or K). One vpdpbusd multiplies 4 codes of 16 rows by 4 int8 of a row of x
// broadcast: its 16 lanes are 16 outputs, so there is no decoding and no horizontal sum (the t2
// tiles spend about 30 ops a block on both). 4x the bytes of t2 (85 MB at d12, repacked once per
// update); the decoder keeps t2 and t3, its file formats.
//   tw_bytes(format, N, K)                       bytes of an (N,K) matrix
//   tw_pack(format, dst, trits, N, K)            trits (N,K) -> dst
//   tw_pack_transposed(format, dst, trits, rows, n)   trits (rows,n)^T, an (n,rows) matrix -> dst
//   matmul_i8_tw(format, out, x, w, M, K, N)     out (M,N) int32 = x (M,K) int8 @ trits(w)^T
// The trainer fixes the format when it allocates (tw_format_of_path()), so a path switched later
// (tests) still reads what was packed: p8 off the AVX-512 path runs its reference.
enum { TW_T2 = 0, TW_P8 = 1 };
static inline int tw_format_of_path(void) {
#ifdef TG1_CPU_X86
    if (cpu_path() == CPU_PATH_AVX512) { return TW_P8; }
#endif
    return TW_T2;
}
static inline size_t p8_groups(int K) { return ((size_t)K + 3) / 4; }
static inline size_t p8_panels(int N) { return ((size_t)N + 31) / 32 * 2; }
static inline size_t tw_bytes(int format, int N, int K) {
    return format == TW_P8 ? p8_panels(N) * p8_groups(K) * 64 : (size_t)N * pack2_row_bytes(K);
}

// the p8 panels of the (N,K) matrix whose element (n,k) is trits[n*rs + k*cs]
static inline void p8_pack(uint8_t *dst, const int8_t *trits, size_t rs, size_t cs, int N, int K) {
    const size_t G = p8_groups(K), P = p8_panels(N);
    for (size_t p = 0; p < P; p++) {
        for (size_t g = 0; g < G; g++) {
            uint8_t *d = dst + (p * G + g) * 64;
            const int whole = (int)(16 * p + 16) <= N && (int)(4 * g + 4) <= K;
            if (whole && cs == 1) { // rows contiguous (the matrix): 4 bytes of each of 16 rows
                for (int r = 0; r < 16; r++) { memcpy(d + 4 * r, trits + (16 * p + r) * rs + 4 * g, 4); }
            } else if (whole && rs == 1) { // columns contiguous (the transpose): 16 bytes of each of 4 columns
                for (int r = 0; r < 16; r++) {
                    for (int j = 0; j < 4; j++) { d[4 * r + j] = (uint8_t)trits[(16 * p + r) + (4 * g + j) * cs]; }
                }
            } else {
                for (int r = 0; r < 16; r++) {
                    for (int j = 0; j < 4; j++) {
                        size_t n = 16 * p + (size_t)r, k = 4 * g + (size_t)j;
                        d[4 * r + j] = n < (size_t)N && k < (size_t)K ? (uint8_t)trits[n * rs + k * cs] : (uint8_t)0;
                    }
                }
            }
            for (int i = 0; i < 64; i++) { d[i] = (uint8_t)(d[i] + 1); } // trit -> code (0 -> 1 past the end)
        }
    }
}

// the spec of the p8 product: codes - 1 times x, plain loops
static inline void matmul_i8_p8_ref(int32_t *out, const int8_t *x, const uint8_t *w, int M, int K, int N) {
    const size_t G = p8_groups(K);
    #pragma omp parallel for
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            const uint8_t *panel = w + (size_t)(n / 16) * G * 64 + 4 * (n % 16);
            int32_t acc = 0;
            for (int k = 0; k < K; k++) { acc += ((int32_t)panel[(size_t)(k / 4) * 64 + k % 4] - 1) * x[(size_t)m * K + k]; }
            out[(size_t)m * N + n] = acc;
        }
    }
}

#ifdef TG1_CPU_X86
CPU_TARGET_BEGIN_AVX512
// acc_iv += codes of panel v (4 columns, 16 rows) . 4 int8 of row i of x, broadcast
#define P8_ROW(i) {                                                                                      \
        int32_t t_;                                                                                      \
        memcpy(&t_, xg + (i) * ldx, 4);                                                                  \
        const __m512i b_ = _mm512_set1_epi32(t_);                                                        \
        a##i##0 = _mm512_dpbusd_epi32(a##i##0, w0, b_);                                                  \
        a##i##1 = _mm512_dpbusd_epi32(a##i##1, w1, b_); }
#define P8_ZERO(i) __m512i a##i##0 = _mm512_setzero_si512(), a##i##1 = a##i##0
// the masks of a tile's two panels for the first `valid` of its 32 outputs
#define P8_MASKS()                                                                                       \
    const __mmask16 m0 = valid >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << valid) - 1);               \
    const __mmask16 m1 = valid >= 32 ? (__mmask16)0xFFFF : valid <= 16 ? (__mmask16)0 : (__mmask16)((1u << (valid - 16)) - 1)
// row i of the tile: sum(x_i) off (codes = trits + 1), 32 outputs stored under the masks
#define P8_STORE(i) {                                                                                    \
        const __m512i c_ = _mm512_set1_epi32(xsum[i]);                                                   \
        _mm512_mask_storeu_epi32(out + (i) * ldo, m0, _mm512_sub_epi32(a##i##0, c_));                    \
        _mm512_mask_storeu_epi32(out + (i) * ldo + 16, m1, _mm512_sub_epi32(a##i##1, c_)); }
// GEMM tile: 8 rows of x (stride ldx, 4G bytes each) times 2 panels (32 weight rows; ldp bytes
// apart): 16 accumulators. 8 x 3 panels left gcc short of registers (24 accumulators spilled to
// the stack on every group: 0.7x the t2 tile). `valid`: how many of the 32 outputs are in N.
static __attribute__((noinline)) void p8_tile_8x2(int32_t *out, size_t ldo, const int8_t *x, size_t ldx,
                                                  const int32_t *xsum, const uint8_t *w, size_t ldp, size_t G,
                                                  int valid) {
    P8_ZERO(0); P8_ZERO(1); P8_ZERO(2); P8_ZERO(3); P8_ZERO(4); P8_ZERO(5); P8_ZERO(6); P8_ZERO(7);
    for (size_t g = 0; g < G; g++) {
        const __m512i w0 = _mm512_loadu_si512((const void *)(w + g * 64));
        const __m512i w1 = _mm512_loadu_si512((const void *)(w + ldp + g * 64));
        const int8_t *xg = x + g * 4;
        P8_ROW(0); P8_ROW(1); P8_ROW(2); P8_ROW(3); P8_ROW(4); P8_ROW(5); P8_ROW(6); P8_ROW(7);
    }
    P8_MASKS();
    P8_STORE(0); P8_STORE(1); P8_STORE(2); P8_STORE(3); P8_STORE(4); P8_STORE(5); P8_STORE(6); P8_STORE(7);
}
// one row of x (the rows left over by the 8-row tiles)
static __attribute__((noinline)) void p8_tile_1x2(int32_t *out, size_t ldo, const int8_t *x, size_t ldx,
                                                  const int32_t *xsum, const uint8_t *w, size_t ldp, size_t G,
                                                  int valid) {
    P8_ZERO(0);
    for (size_t g = 0; g < G; g++) {
        const __m512i w0 = _mm512_loadu_si512((const void *)(w + g * 64));
        const __m512i w1 = _mm512_loadu_si512((const void *)(w + ldp + g * 64));
        const int8_t *xg = x + g * 4;
        P8_ROW(0);
    }
    P8_MASKS();
    P8_STORE(0);
}
#undef P8_ROW
#undef P8_MASKS
#undef P8_ZERO
#undef P8_STORE
CPU_TARGET_END

static inline void matmul_i8_p8_avx512(int32_t *out, const int8_t *x, const uint8_t *w, int M, int K, int N) {
    const size_t G = p8_groups(K), ldp = G * 64, ldx = G * 4;
    // sum(x) per row, and x itself when K is a multiple of 4; otherwise x with its rows padded to
    // 4G bytes (zeros: the codes past K then add nothing)
    const int pad = (size_t)K != ldx;
    uint8_t *scratch = (uint8_t *)tk_scratch((size_t)M * sizeof(int32_t) + (pad ? (size_t)M * ldx : 0));
    int32_t *xsum = (int32_t *)scratch;
    const int8_t *xp = pad ? (const int8_t *)(scratch + (size_t)M * sizeof(int32_t)) : x;
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const int8_t *xr = x + (size_t)m * K;
        int32_t s = 0;
        for (int k = 0; k < K; k++) { s += xr[k]; }
        xsum[m] = s;
        if (pad) {
            int8_t *d = (int8_t *)xp + (size_t)m * ldx;
            memcpy(d, xr, (size_t)K);
            memset(d + K, 0, ldx - (size_t)K);
        }
    }
    // tiles of 8 rows x 2 panels; a pair of panels (12-48 KiB at GPT-2's K) stays in L1/L2 while
    // the thread runs down the row groups of x (dynamic: integer sums, exact in any order)
    const int pairs = (int)(p8_panels(N) / 2), groups = (M + 7) / 8;
    #pragma omp parallel for collapse(2) schedule(dynamic, 4)
    for (int pp = 0; pp < pairs; pp++) {
        for (int gm = 0; gm < groups; gm++) {
            const int m0 = 8 * gm, n0 = 32 * pp, valid = N - n0 < 32 ? N - n0 : 32;
            int32_t *o = out + (size_t)m0 * N + n0;
            const uint8_t *wp = w + (size_t)(2 * pp) * ldp;
            if (M - m0 >= 8) {
                p8_tile_8x2(o, (size_t)N, xp + (size_t)m0 * ldx, ldx, xsum + m0, wp, ldp, G, valid);
            } else {
                for (int i = m0; i < M; i++) {
                    p8_tile_1x2(o + (size_t)(i - m0) * N, (size_t)N, xp + (size_t)i * ldx, ldx, xsum + i, wp, ldp, G, valid);
                }
            }
        }
    }
}
#endif // TG1_CPU_X86

static inline void tw_pack(int format, uint8_t *dst, const int8_t *trits, int N, int K) {
    if (format == TW_P8) { p8_pack(dst, trits, (size_t)K, 1, N, K); }
    else { pack2_rows(dst, trits, N, K); }
}
static inline void tw_pack_transposed(int format, uint8_t *dst, const int8_t *trits, int rows, int n) {
    if (format == TW_P8) { p8_pack(dst, trits, 1, (size_t)n, n, rows); }
    else { pack2_rows_transposed(dst, trits, rows, n); }
}
static inline void matmul_i8_tw(int format, int32_t *out, const int8_t *x, const uint8_t *w, int M, int K, int N) {
    if (format == TW_T2) { matmul_i8_t2(out, x, w, M, K, N); return; }
#ifdef TG1_CPU_X86
    if (cpu_path() == CPU_PATH_AVX512) { matmul_i8_p8_avx512(out, x, w, M, K, N); return; }
#endif
    matmul_i8_p8_ref(out, x, w, M, K, N);
}

// the path the int8 x trit kernels take now (cpu_path()'s name)
static inline const char *ternary_kernels_backend(void) { return cpu_path_name(cpu_path()); }

#if defined(__GNUC__) && !defined(_OPENMP)
#pragma GCC diagnostic pop
#endif

#endif // LLMC_TERNARY_KERNELS_H
