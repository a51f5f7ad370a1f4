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
   - the decoder's head screen (4-bit rows x int16 vector) equals its reference and int64 sums,
     at the largest inputs its bound allows
   - the trainer's fp32 matmul (llmc/matmul_cpu.h: forward, dinp, dweight) within the rounding bound
     of its spec (train_gpt2_1bit.c's loops), and bit-identical with 1 thread and with all
   - the float epilogue against a double-precision reference
 The kernel checks run once per SIMD path this CPU and build have (llmc/cpu_features.h: scalar,
 avx2, avx512), each named "[path] ..."; the last lines say which paths ran and which
 could not. Prints one PASS/FAIL line per check; exits 1 on any failure.

 Build and run (every path of this machine, then a build with the scalar path only):
   make tests/test_kernels && ./tests/test_kernels
   make tests/test_kernels_scalar && ./tests/test_kernels_scalar
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "../llmc/utils.h"           // defines: mallocCheck
#include "../llmc/sampler.h"         // defines: random_u32
#include "../llmc/ternary_kernels.h" // defines: pack2_rows, pack3_rows, matmul_i8_t2, matmul_i8_t3, dequant_epilogue
// the trainer's matmul_forward / matmul_backward: the spec of llmc/matmul_cpu.h (on the scalar path)
#define TESTING
#include "../train_gpt2_1bit.c"      // defines: matmul_forward, matmul_backward, matmul_scratch_size

static int num_passed = 0, num_failed = 0;
static const char *path_tag = ""; // "[avx512] " while a path's checks run: the name says which path
// details is printed after the name on failure only
static void check(int ok, const char *name, const char *details) {
    if (ok) { printf("PASS: %s%s\n", path_tag, name); num_passed++; }
    else { printf("FAIL: %s%s: %s\n", path_tag, name, details); num_failed++; }
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
// the trainer's int8 panels (TW_P8): matmul_i8_tw against the 2-bit reference on the same trits

// 1 if matmul_i8_tw(TW_P8) == matmul_i8_t2_ref for x (M,K) (x_fill: 0 random, else that value) and
// trits (N,K) (t_fill: 0 random, else that trit); the panels packed from the transpose as well
static int compare_p8(int M, int K, int N, int x_fill, int t_fill, char *details, size_t dlen) {
    int8_t *x = (int8_t *)mallocCheck((size_t)M * K), *t = (int8_t *)mallocCheck((size_t)N * K);
    int8_t *tt = (int8_t *)mallocCheck((size_t)N * K);
    uint8_t *w2 = (uint8_t *)mallocCheck(tw_bytes(TW_T2, N, K)), *w8 = (uint8_t *)mallocCheck(tw_bytes(TW_P8, N, K));
    uint8_t *w8b = (uint8_t *)mallocCheck(tw_bytes(TW_P8, N, K));
    int32_t *ref = (int32_t *)mallocCheck((size_t)M * N * 4), *fast = (int32_t *)mallocCheck((size_t)M * N * 4);
    if (x_fill) { memset(x, x_fill, (size_t)M * K); } else { random_x(x, (size_t)M * K); }
    if (t_fill) { memset(t, t_fill, (size_t)N * K); } else { random_trits(t, (size_t)N * K); }
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++) { tt[(size_t)k * N + n] = t[(size_t)n * K + k]; }
    }
    tw_pack(TW_T2, w2, t, N, K);
    tw_pack(TW_P8, w8, t, N, K);
    tw_pack_transposed(TW_P8, w8b, tt, K, N); // (K,N)^T = the same (N,K) matrix
    matmul_i8_t2_ref(ref, x, w2, M, K, N);
    memset(fast, 0x55, (size_t)M * N * 4);
    matmul_i8_tw(TW_P8, fast, x, w8, M, K, N);
    int ok = memcmp(w8, w8b, tw_bytes(TW_P8, N, K)) == 0;
    if (!ok) { snprintf(details, dlen, "M=%d K=%d N=%d: panels from the transpose differ", M, K, N); }
    for (size_t i = 0; i < (size_t)M * N && ok; i++) {
        if (fast[i] != ref[i]) {
            ok = 0;
            snprintf(details, dlen, "M=%d K=%d N=%d: out[%zu] p8 %d != ref %d", M, K, N, i, fast[i], ref[i]);
        }
    }
    free(x); free(t); free(tt); free(w2); free(w8); free(w8b); free(ref); free(fast);
    return ok;
}

static void test_p8(void) {
    char name[256], details[256] = "";
    // M around the 8-row tile; K around the 4-column groups; N around the 16-row panels and their pairs
    int Ms[] = {1, 7, 8, 9, 17}, Ks[] = {1, 3, 4, 5, 63, 64, 65, 768, 771}, Ns[] = {1, 15, 16, 17, 31, 32, 33, 50};
    int ok = 1;
    for (int m = 0; m < 5 && ok; m++) {
        for (int k = 0; k < 9 && ok; k++) {
            for (int n = 0; n < 8 && ok; n++) { ok &= compare_p8(Ms[m], Ks[k], Ns[n], 0, 0, details, sizeof(details)); }
        }
    }
    check(ok, "int8 panels (TW_P8): matmul_i8_tw == the 2-bit reference, 360 shapes (M 1..17, K 1..771, N 1..50); "
          "panels packed from the transpose equal", details);
    int big[][3] = {{256, 768, 2304}, {37, 3072, 65}, {64, 768, 96}};
    ok = 1;
    for (int i = 0; i < 3 && ok; i++) { ok &= compare_p8(big[i][0], big[i][1], big[i][2], 0, 0, details, sizeof(details)); }
    check(ok, "int8 panels (TW_P8): matmul_i8_tw == the 2-bit reference at M=256 K=768 N=2304, M=37 K=3072 N=65, "
          "M=64 K=768 N=96", details);
    ok = compare_p8(9, 4099, 33, -128, -1, details, sizeof(details)) && compare_p8(9, 4099, 33, -128, 1, details, sizeof(details)) &&
         compare_p8(9, 4099, 33, 127, 1, details, sizeof(details));
    snprintf(name, sizeof(name), "int8 panels (TW_P8): extreme inputs, K=4099: x=-128 with trits -1 and +1, x=127 with +1");
    check(ok, name, details);
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
// 4-bit rows (4-row groups, nibble-packed) x int16 vector: the decoder's head screen

// u (V,C) random in 0..15 (or u_fill), x random in [-xmax, xmax] (or x_fill); dot over the
// ranges [cut[i], cut[i+1]) (multiples of 4) against the reference and int64 sums; 1 if equal
static int compare_n4x4(int V, int C, const int *cut, int ncut, int u_fill, int x_fill, char *details, size_t dlen) {
    uint8_t *u = (uint8_t *)mallocCheck((size_t)V * C), *p = (uint8_t *)mallocCheck((size_t)V * C / 2);
    int16_t *x = (int16_t *)mallocCheck((size_t)C * sizeof(int16_t));
    int32_t *ref = (int32_t *)mallocCheck((size_t)V * sizeof(int32_t)), *fast = (int32_t *)mallocCheck((size_t)V * sizeof(int32_t));
    int xmax = n4_xmax(C);
    for (size_t i = 0; i < (size_t)V * C; i++) { u[i] = (uint8_t)(u_fill >= 0 ? u_fill : (int)(random_u32(&rng) % 16)); }
    for (int i = 0; i < C; i++) { x[i] = (int16_t)(x_fill ? x_fill : (int)(random_u32(&rng) % (2 * xmax + 1)) - xmax); }
    int8_t *pat = (int8_t *)mallocCheck(n4_pattern_bytes(C));
    pack_n4x4(p, u, V, C);
    n4_prepare(pat, x, C);
    gemv_n4x4_i16_ref(ref, p, x, C, 0, V);
    memset(fast, 0x55, (size_t)V * sizeof(int32_t));
    for (int i = 0; i + 1 < ncut; i++) { gemv_n4x4_i16(fast, p, x, pat, C, cut[i], cut[i + 1]); }
    int ok = 1;
    for (int v = 0; v < V && ok; v++) {
        int64_t d = 0; // the definition, on the unpacked codes, in int64
        for (int i = 0; i < C; i++) { d += (int64_t)u[(size_t)v * C + i] * x[i]; }
        if (fast[v] != ref[v] || ref[v] != d) {
            ok = 0;
            snprintf(details, dlen, "V=%d C=%d: dot[%d] fast %d, ref %d, int64 %lld", V, C, v, fast[v], ref[v], (long long)d);
        }
    }
    free(u); free(p); free(x); free(ref); free(fast); free(pat);
    return ok;
}

static void test_n4x4(void) {
    char details[256] = "";
    int Cs[] = {16, 32, 48, 80, 768, 1024, 1600, 4096}; // C % 32 == 16 and == 0
    int Vs[] = {4, 8, 36};
    int ok = 1;
    for (int c = 0; c < 8 && ok; c++) {
        for (int vi = 0; vi < 3 && ok; vi++) {
            int V = Vs[vi];
            int whole[] = {0, V}, split[] = {0, V / 8 * 4, V};
            ok &= compare_n4x4(V, Cs[c], whole, 2, -1, 0, details, sizeof(details));
            ok &= compare_n4x4(V, Cs[c], split, 3, -1, 0, details, sizeof(details));
        }
    }
    check(ok, "head screen: 4-bit rows x int16 == ref == int64 sums, C in 16..4096, V in 4..36, whole and split", details);
    ok = 1;
    for (int c = 0; c < 8 && ok; c++) { // the largest sums: 15 * xmax * C, both signs
        int C = Cs[c], xm = n4_xmax(C), cut[] = {0, 8};
        ok &= compare_n4x4(8, C, cut, 2, 15, xm, details, sizeof(details));
        ok &= compare_n4x4(8, C, cut, 2, 15, -xm, details, sizeof(details));
    }
    check(ok, "head screen: extreme inputs, codes 15, x = +-n4_xmax(C): the largest sums are exact", details);
    // the decoder's split of an int8 code: q = 16 (u - 8) + lo with u = floor(q / 16) + 8, lo in 0..15
    ok = 1;
    for (int q = -127; q <= 127; q++) {
        int hi = q >> 4, lo = q - 16 * hi;
        ok &= hi + 8 >= 0 && hi + 8 <= 15 && lo >= 0 && lo <= 15 && 16 * hi + lo == q;
    }
    ok &= n4_xmax(768) == 16319 && n4_xmax(2048) == 8256 && 127LL * n4_xmax(4096) * 4096 <= 2147483647LL;
    // and every x within n4_xmax splits as 128 xh + xl, xh in -127..127, xl in -64..63 (n4_prepare)
    for (int x = -16319; x <= 16319; x++) {
        int xh = (x + 64) >> 7, xl = x - 128 * xh;
        ok &= xh >= -127 && xh <= 127 && xl >= -64 && xl <= 63;
    }
    check(ok, "head screen: every int8 code -127..127 splits as 16 (u - 8) + lo, u and lo in 0..15; every x in "
          "+-n4_xmax as 128 xh + xl in signed bytes; n4_xmax bounds", "");
}

// ----------------------------------------------------------------------------
// the fp32 matmul of the trainer (llmc/matmul_cpu.h) against its spec

// Both the fast kernel and the spec (matmul_forward's loops, on the scalar path) compute each
// output as a float sum of n = K + 1 terms (the products and the bias, or the value accumulated
// into) in some order; each is within gamma_n * S of the exact sum, S = the sum of the terms'
// magnitudes, gamma_n = n u / (1 - n u), u = 2^-24 (Higham, Accuracy and Stability, 3.1). So they
// differ by at most 2 gamma_n S, the bound checked for every output. (Typical differences are
// ~sqrt(K) u S; a wrong index or a missed block is of the order of S.)
static double gamma_n(int n) { double u = 1.0 / 16777216.0; return n * u / (1.0 - n * u); }

static void random_floats(float *v, size_t n) { for (size_t i = 0; i < n; i++) { v[i] = random_f32(&rng) * 2.0f - 1.0f; } }

// out = fast; ref = spec; S[i] = sum of |terms| of output i, n terms: 1 if every |out - ref| <= 2 gamma_n S
static int within_bound(const float *out, const float *ref, const double *S, size_t count, int n, const char *what,
                        int M, int K, int N, char *details, size_t dlen) {
    for (size_t i = 0; i < count; i++) {
        double d = fabs((double)out[i] - ref[i]);
        if (!(d <= 2.0 * gamma_n(n) * S[i])) { // (also catches NaN)
            snprintf(details, dlen, "%s M=%d K=%d N=%d: [%zu] fast %.9g spec %.9g, |diff| %.3g > bound %.3g", what,
                     M, K, N, i, out[i], ref[i], d, 2.0 * gamma_n(n) * S[i]);
            return 0;
        }
    }
    return 1;
}

// forward and backward at one shape, the current path against the scalar path's spec, in fp32 or with
// the operands rounded to bf16 (-mp bf16: the spec is the same loops on rounded copies, so the bound
// is the same with S summed over the rounded operands' products)
static int compare_matmul(int M, int K, int N, int bf16, char *details, size_t dlen) {
    const int path = cpu_path();
    float *inp = (float *)mallocCheck((size_t)M * K * sizeof(float)), *w = (float *)mallocCheck((size_t)N * K * sizeof(float));
    float *bias = (float *)mallocCheck((size_t)N * sizeof(float)), *dout = (float *)mallocCheck((size_t)M * N * sizeof(float));
    float *out = (float *)mallocCheck((size_t)M * N * sizeof(float)), *ref = (float *)mallocCheck((size_t)M * N * sizeof(float));
    float *dinp = (float *)mallocCheck((size_t)M * K * sizeof(float)), *dinp_ref = (float *)mallocCheck((size_t)M * K * sizeof(float));
    float *dw = (float *)mallocCheck((size_t)N * K * sizeof(float)), *dw_ref = (float *)mallocCheck((size_t)N * K * sizeof(float));
    float *scratch = (float *)mallocCheck(matmul_scratch_size(M, K, N) * sizeof(float));
    size_t big = (size_t)M * K > (size_t)N * K ? (size_t)M * K : (size_t)N * K;
    big = big > (size_t)M * N ? big : (size_t)M * N;
    double *S = (double *)mallocCheck(big * sizeof(double));
    random_floats(inp, (size_t)M * K); random_floats(w, (size_t)N * K); random_floats(bias, N); random_floats(dout, (size_t)M * N);
    random_floats(dinp, (size_t)M * K); random_floats(dw, (size_t)N * K); // gradients accumulate onto what is there
    memcpy(dinp_ref, dinp, (size_t)M * K * sizeof(float));
    memcpy(dw_ref, dw, (size_t)N * K * sizeof(float));
    int ok = 1;
    matmul_bf16 = bf16;
    // the spec
    cpu_path_set(CPU_PATH_SCALAR);
    matmul_forward(ref, inp, w, bias, M, K, N);
    matmul_backward(dinp_ref, dw_ref, NULL, dout, inp, w, M, K, N, scratch);
    cpu_path_set(path);
    // forward
    memset(out, 0x55, (size_t)M * N * sizeof(float)); // garbage: every output must be written
    ok &= matmul_cpu_forward(out, inp, w, bias, M, K, N, bf16) == (path != CPU_PATH_SCALAR);
    if (path == CPU_PATH_SCALAR) { matmul_forward(out, inp, w, bias, M, K, N); }
    const float *inp_s = inp, *w_s = w, *dout_s = dout; // the operands the products are of
    float *rounded = NULL;
    if (bf16) {
        rounded = (float *)mallocCheck(((size_t)M * K + (size_t)N * K + (size_t)M * N) * sizeof(float));
        bf16_round_floats(rounded, inp, (size_t)M * K);
        bf16_round_floats(rounded + (size_t)M * K, w, (size_t)N * K);
        bf16_round_floats(rounded + (size_t)M * K + (size_t)N * K, dout, (size_t)M * N);
        inp_s = rounded; w_s = rounded + (size_t)M * K; dout_s = w_s + (size_t)N * K;
    }
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            double s = fabs(bias[n]);
            for (int k = 0; k < K; k++) { s += fabs((double)inp_s[(size_t)m * K + k] * w_s[(size_t)n * K + k]); }
            S[(size_t)m * N + n] = s;
        }
    }
    ok = ok && within_bound(out, ref, S, (size_t)M * N, K + 1, "forward", M, K, N, details, dlen);
    // backward: dinp += dout @ w, dw += dout^T @ inp
    float *dinp0 = (float *)mallocCheck((size_t)M * K * sizeof(float)), *dw0 = (float *)mallocCheck((size_t)N * K * sizeof(float));
    memcpy(dinp0, dinp, (size_t)M * K * sizeof(float));
    memcpy(dw0, dw, (size_t)N * K * sizeof(float));
    if (path != CPU_PATH_SCALAR) { ok &= matmul_cpu_backward(dinp, dw, dout, inp, w, M, K, N, bf16); }
    else { matmul_backward(dinp, dw, NULL, dout, inp, w, M, K, N, scratch); }
    for (int m = 0; m < M; m++) {
        for (int k = 0; k < K; k++) {
            double s = fabs(dinp0[(size_t)m * K + k]);
            for (int n = 0; n < N; n++) { s += fabs((double)dout_s[(size_t)m * N + n] * w_s[(size_t)n * K + k]); }
            S[(size_t)m * K + k] = s;
        }
    }
    ok = ok && within_bound(dinp, dinp_ref, S, (size_t)M * K, N + 1, "dinp", M, K, N, details, dlen);
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++) {
            double s = fabs(dw0[(size_t)n * K + k]);
            for (int m = 0; m < M; m++) { s += fabs((double)dout_s[(size_t)m * N + n] * inp_s[(size_t)m * K + k]); }
            S[(size_t)n * K + k] = s;
        }
    }
    ok = ok && within_bound(dw, dw_ref, S, (size_t)N * K, M + 1, "dweight", M, K, N, details, dlen);
    free(inp); free(w); free(bias); free(dout); free(out); free(ref); free(dinp); free(dinp_ref); free(dw); free(dw_ref);
    free(scratch); free(S); free(dinp0); free(dw0); free(rounded);
    matmul_bf16 = 0;
    return ok;
}

// the fast forward with 1 thread and with all of them: bit-identical (resumed runs must be)
static int matmul_threads_identical(int M, int K, int N) {
    float *inp = (float *)mallocCheck((size_t)M * K * sizeof(float)), *w = (float *)mallocCheck((size_t)N * K * sizeof(float));
    float *a = (float *)mallocCheck((size_t)M * N * sizeof(float)), *b = (float *)mallocCheck((size_t)M * N * sizeof(float));
    float *dw_a = (float *)callocCheck((size_t)N * K, sizeof(float)), *dw_b = (float *)callocCheck((size_t)N * K, sizeof(float));
    float *scratch = (float *)mallocCheck(matmul_scratch_size(M, K, N) * sizeof(float));
    random_floats(inp, (size_t)M * K); random_floats(w, (size_t)N * K);
#ifdef _OPENMP
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    matmul_forward(a, inp, w, NULL, M, K, N);
    matmul_backward(NULL, dw_a, NULL, a, inp, w, M, K, N, scratch);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    matmul_forward(b, inp, w, NULL, M, K, N);
    matmul_backward(NULL, dw_b, NULL, b, inp, w, M, K, N, scratch);
    int same = memcmp(a, b, (size_t)M * N * sizeof(float)) == 0 && memcmp(dw_a, dw_b, (size_t)N * K * sizeof(float)) == 0;
    free(inp); free(w); free(a); free(b); free(dw_a); free(dw_b); free(scratch);
    return same;
}

static void test_matmul_f32(void) {
    char name[256], details[256] = "";
    // M at and around the tiles (6, 8) and the minimum the fast path takes (16); K around the
    // 8 x 8 blocks the packing transposes and past the 768-float K block; N around the 16 / 32-column
    // tiles; GPT-2's shapes at B*T = 64; M past the 256-row M block, N past the 3072-column N block
    int shapes[][3] = {{16, 1, 1}, {17, 7, 5}, {23, 191, 31}, {24, 192, 32}, {25, 193, 33}, {33, 385, 100},
                       {48, 768, 96}, {64, 768, 2304}, {64, 3072, 768}, {20, 1000, 47}, {300, 41, 70}, {18, 40, 3100}};
    int ok = 1;
    for (int i = 0; i < 12 && ok; i++) { ok &= compare_matmul(shapes[i][0], shapes[i][1], shapes[i][2], 0, details, sizeof(details)); }
    snprintf(name, sizeof(name), "fp32 matmul (%s): forward, dinp, dweight within 2 gamma_K sum|terms| of the spec, 12 shapes "
             "(M 16..300, K 1..3072, N 1..3100)", matmul_cpu_backend(0));
    check(ok, name, details);
    snprintf(name, sizeof(name), "fp32 matmul (%s): forward and dweight bit-identical with 1 thread and with all", matmul_cpu_backend(0));
    check(matmul_threads_identical(64, 768, 200) && matmul_threads_identical(40, 400, 1000), name, "results differ");
    // -mp bf16: the panels of bf16 pairs (AVX512-BF16), and the fp32 panels rounded (every other
    // path, and the avx512 path of a CPU without AVX512-BF16, which mm_bf16_pairs_off stands in for)
    for (int off = 0; off < 2; off++) {
        if (off && strcmp(matmul_cpu_backend(1), "avx512-bf16") != 0) { break; } // (it already ran the fp32 panels)
        mm_bf16_pairs_off = off;
        ok = 1;
        for (int i = 0; i < 12 && ok; i++) { ok &= compare_matmul(shapes[i][0], shapes[i][1], shapes[i][2], 1, details, sizeof(details)); }
        snprintf(name, sizeof(name), "bf16 matmul (%s): forward, dinp, dweight within 2 gamma_K sum|terms| of the spec on "
                 "rounded operands, 12 shapes", matmul_cpu_backend(1));
        check(ok, name, details);
        matmul_bf16 = 1;
        snprintf(name, sizeof(name), "bf16 matmul (%s): forward and dweight bit-identical with 1 thread and with all", matmul_cpu_backend(1));
        check(matmul_threads_identical(64, 768, 200) && matmul_threads_identical(40, 400, 1000), name, "results differ");
        matmul_bf16 = 0;
    }
    mm_bf16_pairs_off = 0;
}

// bf16_round (the spec of -mp bf16, plain C on every path): ties to even, NaN kept, Inf kept, overflow
// to Inf, exact values unchanged
static void test_bf16_round(void) {
    float vals[][2] = {{1.0f, 1.0f}, {1.00390625f, 1.0f}, {1.01171875f, 1.015625f}, {1.00390637f, 1.0078125f},
                       {-3.0f, -3.0f}, {3.4e38f, INFINITY}, {INFINITY, INFINITY}, {-INFINITY, -INFINITY}, {0.0f, 0.0f}};
    int ok = isnan(bf16_round(NAN));
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) { ok &= bf16_round(vals[i][0]) == vals[i][1]; }
    check(ok, "bf16_round: ties to even (1 + 2^-8 -> 1, 1 + 3 * 2^-8 -> 1 + 2^-6), above a tie up, Inf and NaN kept, "
          "3.4e38 -> Inf", "");
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
    (void)gpt2_training_bytes; // the trainer's main() uses it; this program does not
    char buf[256], tag[32], ran[128] = "", missing[128] = "";
    printf("cpu: %s\n", cpu_features_describe(buf, sizeof(buf)));
    // the path chosen by default is the best this CPU and build have (TG1_CPU_PATH unset)
    int best = CPU_PATH_SCALAR;
    for (int p = 0; p < CPU_NUM_PATHS; p++) { best = cpu_path_supported(p) ? p : best; }
    const char *env = getenv("TG1_CPU_PATH");
    if (env == NULL || env[0] == '\0') {
        snprintf(buf, sizeof(buf), "default path %s, best supported %s", ternary_kernels_backend(), cpu_path_name(best));
        check(cpu_path() == best, "the default path is the best one this CPU and build support", buf);
    }
#ifdef TG1_CPU_SCALAR_ONLY
    check(best == CPU_PATH_SCALAR, "a -DTG1_CPU_SCALAR_ONLY build has the scalar path only", cpu_path_name(best));
#endif
    test_packing();
    test_epilogue();
    test_bf16_round();
    // every path this CPU and build can run, each against the scalar reference
    for (int p = 0; p < CPU_NUM_PATHS; p++) {
        if (!cpu_path_supported(p)) {
            snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s", cpu_path_name(p));
            continue;
        }
        cpu_path_set(p);
        snprintf(tag, sizeof(tag), "[%s] ", cpu_path_name(p));
        path_tag = tag;
        printf("== path %s\n", cpu_path_name(p));
        test_kernels();
        test_p8();
        test_gemv_split();
        test_n4x4();
        test_matmul_f32();
        path_tag = "";
        snprintf(ran + strlen(ran), sizeof(ran) - strlen(ran), " %s", cpu_path_name(p));
    }
    printf("paths tested:%s; not on this CPU or build:%s\n", ran, missing[0] ? missing : " none");
    printf("(test_kernels: %d checks passed, %d checks failed)\n", num_passed, num_failed);
    return num_failed > 0 ? 1 : 0;
}
