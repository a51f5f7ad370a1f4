/*
 dev/bench_kernels.c: speed of the CPU kernels, each path against the others and against the
 trainer's float matmuls, measured in the same run.

 Build and run:  make bench_kernels && ./bench_kernels
 Flags:  ./bench_kernels [-cold] [-p all|PATH] [-s SECTIONS]
           -cold     evict the caches (read 64 MiB) before every timed call, as when a whole
                     model's weights stream from DRAM
           -p all    run every section on every SIMD path this CPU has (llmc/cpu_features.h), one
                     after the other; -p avx2 (or TG1_CPU_PATH=avx2) one path; default: the best
           -s ternary,screen,matmul   the sections to run (default all three; dev/bench_blas.py
                     runs -s matmul beside a BLAS)
         OMP_NUM_THREADS=n   threads (default: all cores); OMP_WAIT_POLICY=active for short calls

 Sections (each prints the path it ran on):
 1. int8 x ternary at the four BitLinear matrices of GPT-2 124M, (K,N) = (768,2304) qkv,
    (768,768) attention projection, (768,3072) fc, (3072,768) fc projection, at M = 1 (one token:
    decoding, a GEMV) and M = 256 (a training batch B*T = 4*64). Variants, one line each:
      fp32   the trainer's matmul_forward on fp32 weights (N,K): this path's register-blocked
             kernel for M = 256 (llmc/matmul_cpu.h), the spec's dot products for M = 1
      ref    matmul_i8_t2_ref: unpack the whole 2-bit matrix, then plain int loops
      t2     matmul_i8_t2: 2-bit packed weights, this path's kernel
      t3     matmul_i8_t3: base-3 packed weights (1.6 bits/weight)
    Columns: ms = median over the repeats after 2 warm-up calls; GOPS = 2*M*N*K / time;
    GB/s = bytes of weights (in that variant's format) / time; x fp32 = fp32 time / this time.
    The int kernels are first checked against the reference (exact equality).
 2. the decoder's head screen: gemv_n4x4_i16 over GPT-2's 50256 x 768 head in 4-bit codes
    (19.3 MB, read once per token): ms and GB/s.
 3. the trainer's float matmuls at B*T = 256 (forward, and backward: dinp and dweight): this path's
    kernel in fp32, the same with -mp bf16 (bf16 operands: vdpbf16ps where the CPU has AVX512-BF16,
    "avx512-bf16"), and the spec's fp32 loops (the scalar path): ms and GFLOP/s. Compare with a BLAS
    sgemm on the same machine, e.g. OpenBLAS through numpy (README, "Benchmark (CPU)").

 Results: README.md, "Benchmark (CPU)", with the CPU named.
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
// fp32 baseline: the trainer's own matmul_forward, out (M,N) = x (M,K) @ w (N,K)^T (this path's
// register-blocked kernel, llmc/matmul_cpu.h; the spec's 4x2 dot-product tiles on the scalar path
// and for M = 1)

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
    int32_t *out_i; const int8_t *x_i; const uint8_t *w2, *w3, *w8; // int8 x ternary (w8: the trainer's int8 panels)
    int M, K, N;
} Problem;

typedef void (*variant_fn)(const Problem *p);
static void run_fp32(const Problem *p) { matmul_f32(p->out_f, p->x_f, p->w_f, p->M, p->K, p->N); }
static void run_ref(const Problem *p) { matmul_i8_t2_ref(p->out_i, p->x_i, p->w2, p->M, p->K, p->N); }
static void run_t2(const Problem *p) { matmul_i8_t2(p->out_i, p->x_i, p->w2, p->M, p->K, p->N); }
static void run_t3(const Problem *p) { matmul_i8_t3(p->out_i, p->x_i, p->w3, p->M, p->K, p->N); }
static void run_p8(const Problem *p) { matmul_i8_tw(TW_P8, p->out_i, p->x_i, p->w8, p->M, p->K, p->N); }

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
// section 1: int8 x ternary against fp32, at GPT-2's BitLinear shapes

static int bench_ternary(void) {
    const int shapes[4][2] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}};
    const int Ms[2] = {1, 256};
    // p8: the trainer's compute form on the AVX-512 path (tw_format_of_path); elsewhere its reference
    const char *names[5] = {"fp32", "ref", "t2", "t3", "p8"};
    variant_fn fns[5] = {run_fp32, run_ref, run_t2, run_t3, run_p8};
    uint64_t rng = 42;
    int all_match = 1;
    printf("-- int8 x ternary (path %s; fp32: %s) --\n", ternary_kernels_backend(), matmul_cpu_backend(0));
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
            uint8_t *w8 = (uint8_t *)mallocCheck(tw_bytes(TW_P8, N, K));
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
            tw_pack(TW_P8, w8, trits, N, K);
            Problem p = {out_f, x_f, w_f, out_i, x_i, w2, w3, w8, M, K, N};

            // validate: exact equality with the reference
            matmul_i8_t2_ref(out_ref, x_i, w2, M, K, N);
            matmul_i8_t2(out_i, x_i, w2, M, K, N);
            int ok2 = memcmp(out_i, out_ref, (size_t)M * N * sizeof(int32_t)) == 0;
            matmul_i8_t3(out_i, x_i, w3, M, K, N);
            int ok3 = memcmp(out_i, out_ref, (size_t)M * N * sizeof(int32_t)) == 0;
            run_p8(&p);
            int ok8 = memcmp(out_i, out_ref, (size_t)M * N * sizeof(int32_t)) == 0;
            if (!ok2 || !ok3 || !ok8) {
                printf("MISMATCH at M=%d K=%d N=%d: t2 %s, t3 %s, p8 %s\n", M, K, N, ok2 ? "ok" : "WRONG",
                       ok3 ? "ok" : "WRONG", ok8 ? "ok" : "WRONG");
                all_match = 0;
            }

            double weight_bytes[5] = {(double)N * K * sizeof(float), (double)N * pack2_row_bytes(K),
                                      (double)N * pack2_row_bytes(K), (double)N * pack3_row_bytes(K),
                                      (double)tw_bytes(TW_P8, N, K)};
            double ms_fp32 = 0.0;
            for (int v = 0; v < 5; v++) {
                if (v == 4 && M == 1) { continue; } // (a training form: the decoder's GEMV reads t2, t3)
                double ms = time_variant(fns[v], &p);
                if (v == 0) { ms_fp32 = ms; }
                printf("%5d %5d %5d  %-5s %9.4f %8.1f %8.2f %7.2fx\n", M, K, N, names[v], ms,
                       2.0 * M * N * K / (ms * 1e6), weight_bytes[v] / (ms * 1e6), ms_fp32 / ms);
            }
            free(x_f); free(w_f); free(x_i); free(trits); free(w2); free(w3); free(w8);
            free(out_f); free(out_i); free(out_ref);
        }
    }
    return all_match;
}

// ----------------------------------------------------------------------------
// section 2: the decoder's head screen

static const uint8_t *screen_u;
static const int16_t *screen_x;
static const int8_t *screen_pat;
static int32_t *screen_dot;
static void run_screen(const Problem *p) {
    // the decoder splits the rows between its threads; here one parallel loop over the groups does
    #pragma omp parallel
    {
        int nt = 1, id = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads(); id = omp_get_thread_num();
#endif
        int groups = p->N / 4, g0 = groups * id / nt, g1 = groups * (id + 1) / nt;
        gemv_n4x4_i16(screen_dot, screen_u, screen_x, screen_pat, p->K, 4 * g0, 4 * g1);
    }
}

static void bench_screen(void) {
    const int V = 50256, C = 768; // GPT-2's head, whole 4-row groups
    uint8_t *u = (uint8_t *)mallocCheck((size_t)V * C), *pk = (uint8_t *)mallocCheck((size_t)V * C / 2);
    int16_t *x = (int16_t *)mallocCheck(C * sizeof(int16_t));
    uint64_t rng = 5;
    for (size_t i = 0; i < (size_t)V * C; i++) { u[i] = (uint8_t)(random_u32(&rng) % 16); }
    for (int i = 0; i < C; i++) { x[i] = (int16_t)((int)(random_u32(&rng) % 32639) - 16319); }
    int8_t *pat = (int8_t *)mallocCheck(n4_pattern_bytes(C));
    pack_n4x4(pk, u, V, C);
    n4_prepare(pat, x, C);
    screen_u = pk; screen_x = x; screen_pat = pat; screen_dot = (int32_t *)mallocCheck(V * sizeof(int32_t));
    Problem p = {0};
    p.K = C; p.N = V;
    double ms = time_variant(run_screen, &p);
    printf("-- head screen, 4-bit (path %s) --\n", ternary_kernels_backend());
    printf("  gemv_n4x4_i16 V=%d C=%d: %.3f ms, %.1f GB/s of codes (%.1f MB)\n", V, C, ms, V * C / 2.0 / (ms * 1e6),
           V * C / 2e6);
    free(u); free(pk); free(x); free(pat); free(screen_dot);
}

// ----------------------------------------------------------------------------
// section 3: the trainer's float matmuls (fp32, and -mp bf16) at a training batch

static float *mm_dinp, *mm_dw, *mm_scratch;
static void run_mm_fwd(const Problem *p) { matmul_forward(p->out_f, p->x_f, p->w_f, NULL, p->M, p->K, p->N); }
static void run_mm_bwd(const Problem *p) {
    matmul_backward(mm_dinp, mm_dw, NULL, p->out_f, p->x_f, p->w_f, p->M, p->K, p->N, mm_scratch);
}

static void bench_matmul_f32(void) {
    const int shapes[5][2] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}, {768, 50304}};
    const int M = 256;
    uint64_t rng = 9;
    const int path = cpu_path();
    printf("-- fp32 and bf16 matmuls, M = B*T = %d (path %s, -mp bf16 %s, against the spec's fp32 loops) --\n", M,
           matmul_cpu_backend(0), matmul_cpu_backend(1));
    printf("%5s %5s %5s  %-11s %10s %10s %10s %10s\n", "M", "K", "N", "kernel", "fwd ms", "GFLOP/s", "bwd ms", "GFLOP/s");
    for (int s = 0; s < 5; s++) {
        int K = shapes[s][0], N = shapes[s][1];
        float *x = (float *)mallocCheck((size_t)M * K * sizeof(float)), *w = (float *)mallocCheck((size_t)N * K * sizeof(float));
        float *out = (float *)mallocCheck((size_t)M * N * sizeof(float));
        mm_dinp = (float *)callocCheck((size_t)M * K, sizeof(float));
        mm_dw = (float *)callocCheck((size_t)N * K, sizeof(float));
        mm_scratch = (float *)mallocCheck(matmul_scratch_size(M, K, N) * sizeof(float));
        for (size_t i = 0; i < (size_t)M * K; i++) { x[i] = random_f32(&rng) * 2.0f - 1.0f; }
        for (size_t i = 0; i < (size_t)N * K; i++) { w[i] = random_f32(&rng) * 0.04f - 0.02f; }
        Problem p = {0};
        p.out_f = out; p.x_f = x; p.w_f = w; p.M = M; p.K = K; p.N = N;
        for (int v = 0; v < 3; v++) { // this path in fp32, in bf16 (-mp bf16), the spec's loops in fp32
            if (v == 2 && path == CPU_PATH_SCALAR) { break; } // the spec is what already ran
            cpu_path_set(v == 2 ? CPU_PATH_SCALAR : path);
            matmul_bf16 = v == 1;
            double f = time_variant(run_mm_fwd, &p), b = time_variant(run_mm_bwd, &p);
            printf("%5d %5d %5d  %-11s %10.2f %10.1f %10.2f %10.1f\n", M, K, N,
                   v == 2 ? "spec" : matmul_cpu_backend(v == 1), f, 2.0 * M * N * K / (f * 1e6), b, 4.0 * M * N * K / (b * 1e6));
            matmul_bf16 = 0;
        }
        cpu_path_set(path);
        free(x); free(w); free(out); free(mm_dinp); free(mm_dw); free(mm_scratch);
    }
}

int main(int argc, char **argv) {
    (void)gpt2_training_bytes; // the trainer's main() uses it; this program does not
    const char *paths = NULL, *sections = "ternary,screen,matmul";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-cold") == 0) { cold = 1; }
        else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) { paths = argv[++i]; }
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) { sections = argv[++i]; }
        else {
            fprintf(stderr, "usage: %s [-cold] [-p all|scalar|avx2|avx512] [-s ternary,screen,matmul]\n", argv[0]);
            return 1;
        }
    }
    // which sections: a comma-separated list of their names
    int run_ternary = 0, run_screen = 0, run_matmul = 0;
    for (const char *s = sections; *s != '\0';) {
        size_t n = strcspn(s, ",");
        if (n == 7 && strncmp(s, "ternary", n) == 0) { run_ternary = 1; }
        else if (n == 6 && strncmp(s, "screen", n) == 0) { run_screen = 1; }
        else if (n == 6 && strncmp(s, "matmul", n) == 0) { run_matmul = 1; }
        else {
            fprintf(stderr, "error: -s '%s': no such section ---> HINT: -s ternary,screen,matmul (any of them)\n", sections);
            return 1;
        }
        s += n + (s[n] == ',');
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    char buf[256];
    printf("cpu: %s\n", cpu_features_describe(buf, sizeof(buf)));
    printf("%d threads, %s caches\n", threads, cold ? "cold (64 MiB read before each call)" : "warm (repeated calls)");
    if (cold) { flush_buf = (uint8_t *)callocCheck(FLUSH_BYTES, 1); }
    int all_match = 1, ran = 0;
    for (int p = 0; p < CPU_NUM_PATHS; p++) {
        if (paths == NULL && p != cpu_path()) { continue; } // default: the path in use
        if (paths != NULL && strcmp(paths, "all") != 0 && strcmp(paths, cpu_path_name(p)) != 0) { continue; }
        if (!cpu_path_supported(p)) {
            if (paths != NULL && strcmp(paths, "all") != 0) { fprintf(stderr, "error: -p %s: not on this CPU or build\n", paths); return 1; }
            continue;
        }
        cpu_path_set(p);
        printf("\n== path %s\n", cpu_path_name(p));
        if (run_ternary) { all_match &= bench_ternary(); }
        if (run_screen) { bench_screen(); }
        if (run_matmul) { bench_matmul_f32(); }
        ran++;
    }
    if (ran == 0) { fprintf(stderr, "error: -p %s: no such path (all, scalar, avx2, avx512)\n", paths); return 1; }
    printf(all_match ? "All results match\n" : "SOME RESULTS DO NOT MATCH\n");
    free(flush_buf);
    return all_match ? 0 : 1;
}
