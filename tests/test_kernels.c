/*
 tests/test_kernels.c: unit tests of llmc/ternary_kernels.h, the packed ternary
 formats and the int8 x ternary matmuls.
   - pack/unpack round trips of both formats at many row lengths, packed sizes,
     the documented bit/digit order on hand-worked bytes, padding codes = trit 0
   - the scalar references equal a direct int8 x int8 loop on the unpacked trits
   - every fast kernel equals its scalar reference exactly (int32 equality) on
     random inputs over many shapes (M = 1, M not a multiple of the tile, K not a
     multiple of 4, 5 or the block, N odd), and on the extreme inputs
     (all x = -128 with all trits -1 or all +1: the largest sums and the largest
     int16 partial sums inside the kernels; x alternating 127, -128: the largest
     transformed activations of the base-3 GEMV)
   - the decoder's split GEMV (gemv_i8_t2_prepare, then gemv_i8_t2_rows on ranges of
     rows as threads take them) equals the reference exactly
   - the float epilogue against a double-precision reference
 Prints one PASS/FAIL line per check; exits 1 on any failure.

 Build and run (the fast path of this machine, then the scalar fallback):
   gcc -O3 -march=native -fno-trapping-math -fno-math-errno -fopenmp -std=gnu11 -Wall -Wextra \
       tests/test_kernels.c -lm -o tests/test_kernels && ./tests/test_kernels
   gcc -O2 -std=gnu11 -Wall -Wextra tests/test_kernels.c -lm -o tests/test_kernels_scalar && ./tests/test_kernels_scalar
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "../llmc/utils.h"           // defines: mallocCheck
#include "../llmc/sampler.h"         // defines: random_u32
#include "../llmc/ternary_kernels.h" // defines: pack2_rows, pack3_rows, matmul_i8_t2, matmul_i8_t3, dequant_epilogue

static int num_passed = 0, num_failed = 0;
// details is printed after the name on failure only
static void check(int ok, const char *name, const char *details) {
    if (ok) { printf("PASS: %s\n", name); num_passed++; }
    else { printf("FAIL: %s: %s\n", name, details); num_failed++; }
}

static uint64_t rng = 1337;
static void random_trits(int8_t *t, size_t n) {
    for (size_t i = 0; i < n; i++) { t[i] = (int8_t)(random_u32(&rng) % 3) - 1; }
}
// the full int8 range, -128 included
static void random_x(int8_t *x, size_t n) {
    for (size_t i = 0; i < n; i++) { x[i] = (int8_t)(int)((random_u32(&rng) & 255) - 128); }
}

typedef void (*matmul_fn)(int32_t *out, const int8_t *x, const uint8_t *w, int M, int K, int N);

// a format: its name, packed row size, packer and kernels
typedef struct {
    const char *name;
    size_t (*row_bytes)(int n);
    void (*pack)(uint8_t *dst, const int8_t *trits, int rows, int n);
    void (*unpack)(int8_t *trits, const uint8_t *src, int rows, int n);
    matmul_fn fast, ref;
} Format;

static const Format formats[2] = {
    {"t2 (2-bit)", pack2_row_bytes, pack2_rows, unpack2_rows, matmul_i8_t2, matmul_i8_t2_ref},
    {"t3 (base-3)", pack3_row_bytes, pack3_rows, unpack3_rows, matmul_i8_t3, matmul_i8_t3_ref},
};

// ----------------------------------------------------------------------------
// packing

static void test_packing(void) {
    char name[256], details[256] = "";
    int lengths[80], nlen = 0;
    for (int n = 1; n <= 70; n++) { lengths[nlen++] = n; }
    int big[] = {767, 768, 769, 3072, 3073};
    for (int i = 0; i < 5; i++) { lengths[nlen++] = big[i]; }
    const int rows = 3; // rows are packed independently: a row must not bleed into the next

    for (int f = 0; f < 2; f++) {
        const Format *F = &formats[f];
        int per_byte = f == 0 ? 4 : 5;
        int ok_size = 1, ok_trip = 1, ok_pad = 1;
        for (int l = 0; l < nlen; l++) {
            int n = lengths[l];
            size_t rb = F->row_bytes(n);
            if (rb != (size_t)(n + per_byte - 1) / per_byte) {
                ok_size = 0; snprintf(details, sizeof(details), "n=%d: %zu bytes", n, rb);
            }
            int8_t *t = (int8_t *)mallocCheck((size_t)rows * n), *back = (int8_t *)mallocCheck((size_t)rows * n);
            uint8_t *p = (uint8_t *)mallocCheck(rows * rb);
            random_trits(t, (size_t)rows * n);
            F->pack(p, t, rows, n);
            F->unpack(back, p, rows, n);
            if (memcmp(t, back, (size_t)rows * n) != 0) {
                ok_trip = 0; snprintf(details, sizeof(details), "n=%d: round trip differs", n);
            }
            // the codes past the end of each row are 1 (trit 0): unpacking the padded length
            // of the last byte gives zeros there
            int8_t tail[8];
            for (int r = 0; r < rows; r++) {
                uint8_t last = p[r * rb + rb - 1];
                F->unpack(tail, &last, 1, per_byte);
                for (int i = n - (int)(rb - 1) * per_byte; i < per_byte; i++) {
                    if (tail[i] != 0) { ok_pad = 0; snprintf(details, sizeof(details), "n=%d: padding not 0", n); }
                }
            }
            free(t); free(back); free(p);
        }
        snprintf(name, sizeof(name), "%s: packed row size is ceil(n / %d) at %d lengths", F->name, per_byte, nlen);
        check(ok_size, name, details);
        snprintf(name, sizeof(name), "%s: pack/unpack round trip, 3 rows, n = 1..70, 767..769, 3072, 3073", F->name);
        check(ok_trip, name, details);
        snprintf(name, sizeof(name), "%s: codes past the end of a row are trit 0", F->name);
        check(ok_pad, name, details);
    }

    // the documented order, on hand-worked bytes
    // t2: trits -1,0,+1,+1 -> codes 0,1,2,2 in bits [1:0],[3:2],[5:4],[7:6] = 0 + 1*4 + 2*16 + 2*64 = 164
    int8_t t4[4] = {-1, 0, 1, 1};
    uint8_t b = 0;
    pack2_rows(&b, t4, 1, 4);
    snprintf(details, sizeof(details), "got %d", b);
    check(b == 164, "t2: byte order: trits (-1,0,1,1) pack to 0b10100100 = 164", details);
    // t3: trits +1,-1,0,0,+1 -> digits 2,0,1,1,2, first least significant: 2 + 0*3 + 1*9 + 1*27 + 2*81 = 200
    int8_t t5[5] = {1, -1, 0, 0, 1};
    pack3_rows(&b, t5, 1, 5);
    snprintf(details, sizeof(details), "got %d", b);
    check(b == 200, "t3: digit order: trits (1,-1,0,0,1) pack to 2 + 9 + 27 + 162 = 200", details);
    // a row of 6 trits (-1 x 6) in t2: 0x00, then 0 0 1 1 -> 0b01010000 = 80
    int8_t t6[6] = {-1, -1, -1, -1, -1, -1};
    uint8_t b2[2];
    pack2_rows(b2, t6, 1, 6);
    snprintf(details, sizeof(details), "got %d %d", b2[0], b2[1]);
    check(b2[0] == 0 && b2[1] == 80, "t2: a partial last byte is padded with code 1", details);

    // t3: all 243 byte values decode to digits that re-encode to the same byte, and 243..255
    // never come out of the packer
    int ok = 1;
    for (int v = 0; v < 243; v++) {
        uint8_t in = (uint8_t)v, out;
        int8_t d[5];
        unpack3_rows(d, &in, 1, 5);
        pack3_rows(&out, d, 1, 5);
        ok &= out == in;
    }
    check(ok, "t3: all 243 byte values round trip", "a byte re-encodes differently");
}

// ----------------------------------------------------------------------------
// kernels

// out (M,N) = x (M,K) @ t (N,K)^T on unpacked trits: the definition, independent of any packing
static void matmul_i8_i8_direct(int32_t *out, const int8_t *x, const int8_t *t, int M, int K, int N) {
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            int32_t s = 0;
            for (int k = 0; k < K; k++) { s += (int32_t)x[(size_t)m * K + k] * t[(size_t)n * K + k]; }
            out[(size_t)m * N + n] = s;
        }
    }
}

// runs ref and fast (and the direct loop if direct) on one shape; 1 if all equal.
// x_fill / t_fill: 0 = random, otherwise that constant everywhere
#define X_ALTERNATE 1000 // x_fill: 127, -128, 127, ... (the largest |x[k] - 3 x[k-1]| = 511)
static int compare_shape(const Format *F, int M, int K, int N, int x_fill, int t_fill, int direct,
                         char *details, size_t dlen) {
    int8_t *x = (int8_t *)mallocCheck((size_t)M * K), *t = (int8_t *)mallocCheck((size_t)N * K);
    uint8_t *w = (uint8_t *)mallocCheck(N * F->row_bytes(K));
    int32_t *ref = (int32_t *)mallocCheck((size_t)M * N * sizeof(int32_t));
    int32_t *fast = (int32_t *)mallocCheck((size_t)M * N * sizeof(int32_t));
    int32_t *dir = (int32_t *)mallocCheck((size_t)M * N * sizeof(int32_t));
    if (x_fill == X_ALTERNATE) {
        for (size_t i = 0; i < (size_t)M * K; i++) { x[i] = (int8_t)(i % 2 ? -128 : 127); }
    } else if (x_fill) {
        memset(x, x_fill, (size_t)M * K);
    } else {
        random_x(x, (size_t)M * K);
    }
    if (t_fill) { memset(t, t_fill, (size_t)N * K); } else { random_trits(t, (size_t)N * K); }
    F->pack(w, t, N, K);
    F->ref(ref, x, w, M, K, N);
    memset(fast, 0x55, (size_t)M * N * sizeof(int32_t)); // garbage: every output must be written
    F->fast(fast, x, w, M, K, N);
    int ok = 1;
    for (size_t i = 0; i < (size_t)M * N && ok; i++) {
        if (fast[i] != ref[i]) {
            ok = 0;
            snprintf(details, dlen, "M=%d K=%d N=%d: out[%zu] fast %d != ref %d", M, K, N, i, fast[i], ref[i]);
        }
    }
    if (direct) {
        matmul_i8_i8_direct(dir, x, t, M, K, N);
        for (size_t i = 0; i < (size_t)M * N && ok; i++) {
            if (ref[i] != dir[i]) {
                ok = 0;
                snprintf(details, dlen, "M=%d K=%d N=%d: out[%zu] ref %d != direct %d", M, K, N, i, ref[i], dir[i]);
            }
        }
    }
    free(x); free(t); free(w); free(ref); free(fast); free(dir);
    return ok;
}

static void test_kernels(void) {
    char name[256], details[256] = "";
    // M: GEMV (1..3), whole 4-row tiles, tiles plus leftover rows
    int Ms[] = {1, 2, 3, 4, 5, 7, 8, 13};
    // K: below a byte, not a multiple of 4 or 5, around the 128/160-trit blocks and the
    // int16 chunks (1024 / 960 trits), the GPT-2 widths
    int Ks[] = {1, 3, 4, 5, 31, 32, 33, 100, 127, 128, 129, 159, 160, 161, 767, 768, 769, 1023, 1025, 3072, 3073};
    // N: below and around the 4-row GEMV tile, odd
    int Ns[] = {1, 3, 4, 5, 7, 33};
    const int nM = sizeof(Ms) / sizeof(Ms[0]), nK = sizeof(Ks) / sizeof(Ks[0]), nN = sizeof(Ns) / sizeof(Ns[0]);

    for (int f = 0; f < 2; f++) {
        const Format *F = &formats[f];
        // the scalar reference against the definition, on the unpacked trits
        int ok = 1;
        for (int k = 0; k < nK && ok; k++) {
            ok &= compare_shape(F, 3, Ks[k], 5, 0, 0, 1, details, sizeof(details));
        }
        snprintf(name, sizeof(name), "%s: ref == direct int8 x int8 loop on the unpacked trits, %d K", F->name, nK);
        check(ok, name, details);

        // fast == ref exactly, one check per K over all (M, N)
        for (int k = 0; k < nK; k++) {
            ok = 1;
            for (int m = 0; m < nM && ok; m++) {
                for (int n = 0; n < nN && ok; n++) {
                    ok &= compare_shape(F, Ms[m], Ks[k], Ns[n], 0, 0, 0, details, sizeof(details));
                }
            }
            snprintf(name, sizeof(name), "%s: fast == ref, K=%d, %d shapes (M in 1..13, N in 1..33)",
                     F->name, Ks[k], nM * nN);
            check(ok, name, details);
        }

        // GPT-2 shaped: many 4-row tiles, several weight-row blocks, leftover rows
        int big[][3] = {{64, 768, 96}, {37, 768, 65}, {6, 3072, 129}, {1, 768, 2304}, {2, 3072, 771}};
        for (int i = 0; i < 5; i++) {
            ok = compare_shape(F, big[i][0], big[i][1], big[i][2], 0, 0, 0, details, sizeof(details));
            snprintf(name, sizeof(name), "%s: fast == ref, M=%d K=%d N=%d", F->name, big[i][0], big[i][1], big[i][2]);
            check(ok, name, details);
        }

        // extreme inputs: the largest |sums| (128 * K) and the largest int16 partial sums
        // (every maddubs pair = 2*(-128) + 2*(-128) = -512 with trits +1)
        int extreme_K[] = {5, 768, 1024, 3072, 4099};
        for (int i = 0; i < 5; i++) {
            int K = extreme_K[i];
            int ok_neg = compare_shape(F, 5, K, 5, -128, -1, 1, details, sizeof(details)); // sum = +128 K
            int ok_pos = ok_neg && compare_shape(F, 5, K, 5, -128, 1, 1, details, sizeof(details)); // -128 K
            int ok_max = ok_pos && compare_shape(F, 5, K, 5, 127, 1, 1, details, sizeof(details));  // +127 K
            // alternating x: the extremes of the t3 GEMV's x[k] - 3 x[k-1], with random and all +1 trits
            int ok_alt = ok_max && compare_shape(F, 5, K, 5, X_ALTERNATE, 0, 1, details, sizeof(details)) &&
                         compare_shape(F, 5, K, 5, X_ALTERNATE, 1, 1, details, sizeof(details));
            snprintf(name, sizeof(name), "%s: extreme inputs, K=%d: x=-128 with trits -1 and +1, x=127 with +1, "
                     "x alternating 127/-128", F->name, K);
            check(ok_neg && ok_pos && ok_max && ok_alt, name, details);
        }
    }
}

// ----------------------------------------------------------------------------
// the decoder's split GEMV: gemv_i8_t2_prepare once, then gemv_i8_t2_rows on ranges of rows

// out = x @ trits^T by gemv_i8_t2_rows over the ranges [cut[i], cut[i+1]), against the
// reference; 1 if equal. The ranges cover 0..N in pieces, as threads would take them.
static int compare_gemv_split(int K, int N, const int *cut, int ncut, int x_fill, char *details, size_t dlen) {
    int8_t *x = (int8_t *)mallocCheck((size_t)K), *t = (int8_t *)mallocCheck((size_t)N * K);
    uint8_t *w = (uint8_t *)mallocCheck(N * pack2_row_bytes(K)), *xs = (uint8_t *)mallocCheck(gemv_i8_t2_scratch_bytes(K));
    int32_t *ref = (int32_t *)mallocCheck(N * sizeof(int32_t)), *fast = (int32_t *)mallocCheck(N * sizeof(int32_t));
    if (x_fill) { memset(x, x_fill, (size_t)K); } else { random_x(x, (size_t)K); }
    random_trits(t, (size_t)N * K);
    pack2_rows(w, t, N, K);
    matmul_i8_t2_ref(ref, x, w, 1, K, N);
    memset(fast, 0x55, N * sizeof(int32_t));
    memset(xs, 0x55, gemv_i8_t2_scratch_bytes(K)); // the padding must be written by prepare
    int32_t xsum = gemv_i8_t2_prepare(xs, x, K);
    for (int i = 0; i + 1 < ncut; i++) { gemv_i8_t2_rows(fast, xs, xsum, w, K, cut[i], cut[i + 1]); }
    int ok = 1;
    for (int n = 0; n < N && ok; n++) {
        if (fast[n] != ref[n]) {
            ok = 0;
            snprintf(details, dlen, "K=%d N=%d: out[%d] split %d != ref %d", K, N, n, fast[n], ref[n]);
        }
    }
    free(x); free(t); free(w); free(xs); free(ref); free(fast);
    return ok;
}

static void test_gemv_split(void) {
    char name[256], details[256] = "";
    int Ks[] = {1, 5, 127, 128, 129, 767, 768, 1025, 3072, 3073};
    const int nK = sizeof(Ks) / sizeof(Ks[0]);
    int ok = 1;
    for (int k = 0; k < nK && ok; k++) {
        int whole[] = {0, 33};                 // one range
        int halves[] = {0, 16, 33};            // two threads, cut at a multiple of 4
        int odd[] = {0, 1, 6, 7, 7, 30, 33};   // cuts off the 4-row tile, an empty range
        ok &= compare_gemv_split(Ks[k], 33, whole, 2, 0, details, sizeof(details));
        ok &= compare_gemv_split(Ks[k], 33, halves, 3, 0, details, sizeof(details));
        ok &= compare_gemv_split(Ks[k], 33, odd, 7, 0, details, sizeof(details));
        ok &= compare_gemv_split(Ks[k], 33, halves, 3, -128, details, sizeof(details)); // the largest sums
    }
    snprintf(name, sizeof(name), "t2 split GEMV (prepare + rows on ranges) == ref, %d K, whole / halves / odd cuts, "
             "random and x = -128", nK);
    check(ok, name, details);
    int gpt2[][2] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}};
    ok = 1;
    for (int i = 0; i < 4 && ok; i++) {
        int N = gpt2[i][1], cut[] = {0, N / 2, N};
        ok &= compare_gemv_split(gpt2[i][0], N, cut, 3, 0, details, sizeof(details));
    }
    check(ok, "t2 split GEMV == ref at GPT-2's four BitLinear shapes, two halves", details);
}

// ----------------------------------------------------------------------------
// epilogue

// float math against double: the kernel rounds (float)acc (exact for |acc| < 2^24), gamma*row_scale
// and the product (and may fuse the bias add into an FMA): a few float ulps, so rtol = 4 * 2^-23
#define EPILOGUE_RTOL 5e-7
#define EPILOGUE_ATOL 1e-6 // for outputs near 0 where bias and product cancel

static void test_epilogue(void) {
    const int M = 7, N = 37;
    int32_t acc[7 * 37];
    float row_scale[7], bias[37], out[7 * 37];
    for (int i = 0; i < M * N; i++) { acc[i] = (int32_t)(random_u32(&rng) % 786433) - 393216; } // |acc| <= 128*3072
    for (int m = 0; m < M; m++) { row_scale[m] = 1.0f / (1.0f + random_f32(&rng) * 100.0f); }
    for (int n = 0; n < N; n++) { bias[n] = random_f32(&rng) - 0.5f; }
    float gamma = 0.0123f;
    char details[256] = "";
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        dequant_epilogue(out, acc, row_scale, gamma, with_bias ? bias : NULL, M, N);
        int ok = 1;
        for (int m = 0; m < M; m++) {
            for (int n = 0; n < N; n++) {
                double ref = (double)acc[m * N + n] * gamma * row_scale[m] + (with_bias ? bias[n] : 0.0);
                double err = fabs(out[m * N + n] - ref);
                if (err > EPILOGUE_ATOL + EPILOGUE_RTOL * fabs(ref)) {
                    ok = 0;
                    snprintf(details, sizeof(details), "m=%d n=%d: %.9g vs %.9g", m, n, out[m * N + n], ref);
                }
            }
        }
        check(ok, with_bias ? "epilogue: acc * gamma * row_scale + bias equals a double reference"
                            : "epilogue: acc * gamma * row_scale (bias NULL) equals a double reference", details);
    }
}

int main(void) {
    printf("backend: %s\n", ternary_kernels_backend());
#ifdef __AVX2__
    check(strcmp(ternary_kernels_backend(), "avx2") == 0, "backend is avx2 in an AVX2 build", ternary_kernels_backend());
#else
    check(strcmp(ternary_kernels_backend(), "scalar") == 0, "backend is scalar without AVX2", ternary_kernels_backend());
#endif
    test_packing();
    test_kernels();
    test_gemv_split();
    test_epilogue();
    printf("(test_kernels: %d checks passed, %d checks failed)\n", num_passed, num_failed);
    return num_failed > 0 ? 1 : 0;
}
