/*
 dev/bench_kernels.c: speed of the int8 x ternary CPU kernels of
 llmc/ternary_kernels.h against an fp32 matmul, measured in the same run.

 Build and run:
   gcc -O3 -march=native -fno-trapping-math -fno-math-errno -fopenmp -std=gnu11 -Wall -Wextra \
       dev/bench_kernels.c -lm -o bench_kernels && ./bench_kernels
 Flags:  ./bench_kernels [-cold]    -cold: evict the caches (read 64 MiB) before every timed call,
                                    as when a whole model's weights stream from DRAM
         OMP_NUM_THREADS=n          threads (default: all cores)

 Shapes: the four BitLinear matrices of GPT-2 124M, (K,N) = (768,2304) qkv,
 (768,768) attention projection, (768,3072) fc, (3072,768) fc projection, at
 M = 1 (one token: decoding, a GEMV) and M = 256 (a training batch B*T = 4*64).
 Variants, one line each:
   fp32     fp32 weights (N,K) times fp32 x: `omp parallel for` + `omp simd` dot
            products; for M > 1 in 4x2 register tiles over L2-sized blocks of
            weight rows (the scheme of the trainer's matmul_forward), the baseline
   ref      matmul_i8_t2_ref: unpack the whole 2-bit matrix, then plain int loops
            (which gcc -O3 auto-vectorizes; the unpack dominates at M = 1)
   t2       matmul_i8_t2: 2-bit packed weights, the fast path of this build
   t3       matmul_i8_t3: base-3 packed weights (1.6 bits/weight)
 Columns: ms = median over the repeats after 2 warm-up calls; GOPS = 2*M*N*K / time;
 GB/s = bytes of weights (in that variant's format) / time; x fp32 = fp32 time / this time.
 The int kernels are first checked against the reference (exact equality).

 Results on the 2-core AMD EPYC (Zen 3, AVX2) this was written on, shared with
 other jobs, so runs vary by up to ~1.5x: t2 GEMV 5-11x the fp32 GEMV with warm
 caches (fp32 reads 2.4-9.4 MB from L3, t2 reads 0.15-0.6 MB from L2 and is
 bound by its ~15 vector ops per 128 weights), 5-10x with -cold; t3 GEMV 3-5x
 warm, 5-9x cold; M = 256: t2 3.5-5x, t3 about 2x. Fork/join of the OpenMP
 threads (a few us) is a visible part of the 10 us GEMV at (768, 768).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "../llmc/utils.h"           // defines: mallocCheck
#include "../llmc/sampler.h"         // defines: random_u32, random_f32
#include "../llmc/ternary_kernels.h" // defines: pack2_rows, pack3_rows, matmul_i8_t2(_ref), matmul_i8_t3(_ref)

// ----------------------------------------------------------------------------
// fp32 baseline: the trainer's own matmul_forward, out (M,N) = x (M,K) @ w (N,K)^T
// (4x2 register tiles over L2-sized weight blocks; plain dot products for M < 4)

#define TESTING
#include "../train_gpt2_1bit.c" // defines: matmul_forward

static void matmul_f32(float *out, const float *x, const float *w, int M, int K, int N) {
    matmul_forward(out, x, w, NULL, M, K, N);
}

// ----------------------------------------------------------------------------
// timing



// -cold: read a buffer larger than the L3 (32 MiB here) so that the weights come from DRAM
#define FLUSH_BYTES (64u << 20)
static int cold = 0;
static uint8_t *flush_buf;
static volatile uint32_t flush_sink;
static void flush_caches(void) {
    uint32_t s = 0;
    #pragma omp parallel for reduction(+ : s)
    for (size_t i = 0; i < FLUSH_BYTES; i += 64) { s += flush_buf[i]++; }
    flush_sink = s;
}

typedef struct {
    float *out_f; const float *x_f, *w_f; // fp32
    int32_t *out_i; const int8_t *x_i; const uint8_t *w2, *w3; // int8 x ternary
    int M, K, N;
} Problem;

typedef void (*variant_fn)(const Problem *p);
static void run_fp32(const Problem *p) { matmul_f32(p->out_f, p->x_f, p->w_f, p->M, p->K, p->N); }
static void run_ref(const Problem *p) { matmul_i8_t2_ref(p->out_i, p->x_i, p->w2, p->M, p->K, p->N); }
static void run_t2(const Problem *p) { matmul_i8_t2(p->out_i, p->x_i, p->w2, p->M, p->K, p->N); }
static void run_t3(const Problem *p) { matmul_i8_t3(p->out_i, p->x_i, p->w3, p->M, p->K, p->N); }

// median ms of one call; repeats until about 0.3 s have passed (5 to 200 repeats; 3 to 30 for -cold)
static double time_variant(variant_fn fn, const Problem *p) {
    fn(p); fn(p); // warm-up
    double times[200];
    int reps = 0, max_reps = cold ? 30 : 200, min_reps = cold ? 3 : 5;
    double spent = 0.0;
    while (reps < max_reps && (reps < min_reps || spent < 0.3)) {
        if (cold) { flush_caches(); }
        double t0 = now_seconds();
        fn(p);
        times[reps] = now_seconds() - t0;
        spent += times[reps++];
    }
    return 1e3 * median(times, reps);
}

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-cold") == 0) { cold = 1; }
        else { fprintf(stderr, "usage: %s [-cold]\n", argv[0]); return 1; }
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    printf("backend: %s, %d threads, %s caches\n", ternary_kernels_backend(), threads,
           cold ? "cold (64 MiB read before each call)" : "warm (repeated calls)");
    if (cold) { flush_buf = (uint8_t *)callocCheck(FLUSH_BYTES, 1); }

    const int shapes[4][2] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}};
    const int Ms[2] = {1, 256};
    const char *names[4] = {"fp32", "ref", "t2", "t3"};
    variant_fn fns[4] = {run_fp32, run_ref, run_t2, run_t3};
    uint64_t rng = 42;
    int all_match = 1;

    printf("%5s %5s %5s  %-5s %9s %8s %8s %8s\n", "M", "K", "N", "var", "ms", "GOPS", "GB/s", "x fp32");
    for (int s = 0; s < 4; s++) {
        for (int mi = 0; mi < 2; mi++) {
            int K = shapes[s][0], N = shapes[s][1], M = Ms[mi];
            // random inputs, never zeros: x int8 over the full range, about a third of each trit
            float *x_f = (float *)mallocCheck((size_t)M * K * sizeof(float));
            float *w_f = (float *)mallocCheck((size_t)N * K * sizeof(float));
            int8_t *x_i = (int8_t *)mallocCheck((size_t)M * K), *trits = (int8_t *)mallocCheck((size_t)N * K);
            uint8_t *w2 = (uint8_t *)mallocCheck(N * pack2_row_bytes(K));
            uint8_t *w3 = (uint8_t *)mallocCheck(N * pack3_row_bytes(K));
            float *out_f = (float *)mallocCheck((size_t)M * N * sizeof(float));
            int32_t *out_i = (int32_t *)mallocCheck((size_t)M * N * sizeof(int32_t));
            int32_t *out_ref = (int32_t *)mallocCheck((size_t)M * N * sizeof(int32_t));
            for (size_t i = 0; i < (size_t)M * K; i++) {
                x_i[i] = (int8_t)(int)((random_u32(&rng) & 255) - 128);
                x_f[i] = random_f32(&rng) * 2.0f - 1.0f;
            }
            for (size_t i = 0; i < (size_t)N * K; i++) {
                trits[i] = (int8_t)(random_u32(&rng) % 3) - 1;
                w_f[i] = random_f32(&rng) * 0.04f - 0.02f;
            }
            pack2_rows(w2, trits, N, K);
            pack3_rows(w3, trits, N, K);
            Problem p = {out_f, x_f, w_f, out_i, x_i, w2, w3, M, K, N};

            // validate: exact equality with the reference
            matmul_i8_t2_ref(out_ref, x_i, w2, M, K, N);
            matmul_i8_t2(out_i, x_i, w2, M, K, N);
            int ok2 = memcmp(out_i, out_ref, (size_t)M * N * sizeof(int32_t)) == 0;
            matmul_i8_t3(out_i, x_i, w3, M, K, N);
            int ok3 = memcmp(out_i, out_ref, (size_t)M * N * sizeof(int32_t)) == 0;
            if (!ok2 || !ok3) {
                printf("MISMATCH at M=%d K=%d N=%d: t2 %s, t3 %s\n", M, K, N, ok2 ? "ok" : "WRONG", ok3 ? "ok" : "WRONG");
                all_match = 0;
            }

            double weight_bytes[4] = {(double)N * K * sizeof(float), (double)N * pack2_row_bytes(K),
                                      (double)N * pack2_row_bytes(K), (double)N * pack3_row_bytes(K)};
            double ms_fp32 = 0.0;
            for (int v = 0; v < 4; v++) {
                double ms = time_variant(fns[v], &p);
                if (v == 0) { ms_fp32 = ms; }
                printf("%5d %5d %5d  %-5s %9.4f %8.1f %8.2f %7.2fx\n", M, K, N, names[v], ms,
                       2.0 * M * N * K / (ms * 1e6), weight_bytes[v] / (ms * 1e6), ms_fp32 / ms);
            }
            free(x_f); free(w_f); free(x_i); free(trits); free(w2); free(w3);
            free(out_f); free(out_i); free(out_ref);
        }
    }
    printf(all_match ? "All results match\n" : "SOME RESULTS DO NOT MATCH\n");
    free(flush_buf);
    return all_match ? 0 : 1;
}
