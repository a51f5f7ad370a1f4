/*
 dev/bench_gpt2_1bit.c: CPU training speed, the fp mode against the ternary ones, measured in the
 same run on the same batch. Modes (-m, a comma-separated list; the default: all but
 b158, ternary_ffwd and b158_bq8_bf16):
   fp            plain GPT-2 (-wq fp -aq none): every matmul in fp32
   ternary       the trainer's default (-rn 0): BitLinear forward as int8 codes x packed trits,
                 backward in float
   ternary_bq8   the same with -bq int8: dX = dY W_q as int8 dY x packed trits too (dW stays float)
   b158          BitNet b1.58 as published (-rn 1: the inner RMSNorm), backward in float
   b158_bq8      the same with -bq int8
   ternary_ffwd  the default's math with the float forward on W_q (the spec): what the integer
                 kernels buy
   fp_bf16, ternary_bq8_bf16, b158_bq8_bf16
                 those modes with -mp bf16: the float matmuls' operands rounded to bf16, products
                 summed in fp32 (vdpbf16ps where the CPU has AVX512-BF16; the CUDA trainer's default)
 Each step is forward, backward, gradient norm and AdamW update (gpt2_update), as the trainer's.

 Build and run:  make bench            (= make bench_gpt2_1bit && ./bench_gpt2_1bit)
 Flags:          ./bench_gpt2_1bit [-e d12] [-b 4] [-t 64] [-r 5] [-m fp,ternary,...]
 All models are built from the same random init; the steps alternate
 between them so that a change in machine load hits all of them.
 One warm-up step each is not timed. Prints the CPU's features and the SIMD paths
 the matmuls take (llmc/cpu_features.h; TG1_CPU_PATH=avx2 ./bench_gpt2_1bit runs
 another), the median ms per step, tok/s and each mode's time against fp's (when fp runs).
 Memory: each mode holds a model with its gradients and AdamW moments (about 2.5-3 GB at d12,
 7 GB at d24; seven modes at d12 peaked at 20.7 GB): at d24, pick two or three modes with -m.
*/
#define TESTING
#include "../train_gpt2_1bit.c"



static double train_step(GPT2 *model, int bf16, const int *x, const int *y, int B, int T, int step) {
    matmul_bf16 = bf16; // -mp
    double t0 = now_seconds();
    gpt2_forward(model, x, y, B, T);
    gpt2_zero_grad(model);
    gpt2_backward(model);
    float norm = gpt2_grad_norm(model);
    gpt2_update(model, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, norm > 1.0f ? 1.0f / norm : 1.0f, step + 1);
    return 1000.0 * (now_seconds() - t0);
}

// The float matmuls of one training step at (B*T = M) tokens, timed alone on random operands, in
// two sets: all of them (what the fp mode runs: the four BitLinear matrices' forward, dX and dW in
// every layer, the head's forward and backward), and the ones a ternary step with the int8 forward
// and -bq int8 still runs in float (dW of the BitLinear matrices, the head). The second over the
// fp step's time bounds what the integer kernels can buy: the ternary step is at least that long.
// Returns ms of the two sets (median of reps) in all_ms and kept_ms; bf16: with -mp bf16.
static void time_float_matmuls(const GPT2Config *cfg, int M, int reps, int bf16, double *all_ms, double *kept_ms) {
    matmul_bf16 = bf16;
    int C = cfg->channels, Vp = cfg->padded_vocab_size, L = cfg->num_layers;
    size_t big = (size_t)M * (Vp > 4 * C ? Vp : 4 * C), wmax = (size_t)Vp * C > (size_t)12 * C * C ? (size_t)Vp * C : (size_t)12 * C * C;
    float *a = (float *)mallocCheck(big * sizeof(float)), *da = (float *)mallocCheck(big * sizeof(float));
    float *out = (float *)mallocCheck(big * sizeof(float)), *w = (float *)mallocCheck(wmax * sizeof(float));
    float *dw = (float *)mallocCheck(wmax * sizeof(float));
    float *scratch = (float *)mallocCheck(gpt2_matmul_scratch_size(cfg, M) * sizeof(float));
    uint64_t rng = 11;
    for (size_t i = 0; i < big; i++) { a[i] = random_f32(&rng) - 0.5f; out[i] = random_f32(&rng) - 0.5f; }
    for (size_t i = 0; i < wmax; i++) { w[i] = (random_f32(&rng) - 0.5f) * 0.04f; dw[i] = 0.0f; }
    double *t_all = (double *)mallocCheck((size_t)reps * sizeof(double)), *t_kept = (double *)mallocCheck((size_t)reps * sizeof(double));
    for (int r = -1; r < reps; r++) { // r = -1: warm-up
        double fwd = 0.0, bwd = 0.0, dwt = 0.0, head = 0.0, t0; // bwd: dX and dW; dwt: dW alone
        for (int k = 0; k < NUM_BITLINEAR; k++) {
            int OC, IC;
            bitlinear_shape(cfg, k, &OC, &IC);
            for (int l = 0; l < L; l++) {
                t0 = now_seconds(); matmul_forward(out, a, w, NULL, M, IC, OC); fwd += now_seconds() - t0;
                t0 = now_seconds(); matmul_backward(da, dw, NULL, out, a, w, M, IC, OC, scratch); bwd += now_seconds() - t0;
                t0 = now_seconds(); matmul_backward(NULL, dw, NULL, out, a, w, M, IC, OC, scratch); dwt += now_seconds() - t0;
            }
        }
        t0 = now_seconds();
        matmul_forward(out, a, w, NULL, M, C, Vp);
        matmul_backward(da, dw, NULL, out, a, w, M, C, Vp, scratch);
        head = now_seconds() - t0;
        if (r >= 0) {
            t_all[r] = 1000.0 * (fwd + bwd + head);
            t_kept[r] = 1000.0 * (dwt + head);
        }
    }
    *all_ms = median(t_all, reps);
    *kept_ms = median(t_kept, reps);
    matmul_bf16 = 0;
    free(a); free(da); free(out); free(w); free(dw); free(scratch); free(t_all); free(t_kept);
}

typedef struct {
    const char *key, *name;
    QuantConfig quant;
    int int8_forward;
    int bf16; // -mp bf16
} BenchMode;

int main(int argc, char **argv) {
    const char *desc = "d12", *mode_list = "fp,fp_bf16,ternary,ternary_bq8,ternary_bq8_bf16,b158_bq8";
    int B = 4, T = 64, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: %s [-e d12] [-b 4] [-t 64] [-r 5] [-m %s]\n"
                   "  -e model descriptor, -b batch, -t sequence length, -r timed steps per mode,\n"
                   "  -m modes: fp ternary ternary_bq8 b158 b158_bq8 ternary_ffwd fp_bf16 ternary_bq8_bf16 b158_bq8_bf16 (comma-separated)\n", argv[0], mode_list);
            return 0;
        }
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-e") == 0) { desc = argv[i + 1]; }
        else if (strcmp(argv[i], "-b") == 0) { B = atoi(argv[i + 1]); }
        else if (strcmp(argv[i], "-t") == 0) { T = atoi(argv[i + 1]); }
        else if (strcmp(argv[i], "-r") == 0) { reps = atoi(argv[i + 1]); }
        else if (strcmp(argv[i], "-m") == 0) { mode_list = argv[i + 1]; }
        else { fprintf(stderr, "error: unknown flag '%s' (flags: -e -b -t -r -m)\n", argv[i]); return 1; }
    }
    if (argc % 2 == 0) { fprintf(stderr, "error: flag '%s' has no value (flags: -e -b -t -r -m)\n", argv[argc - 1]); return 1; }
    GPT2Config cfg;
    if (!gpt2_config_from_descriptor(&cfg, desc) || B < 1 || T < 1 || T > cfg.max_seq_len || reps < 1) {
        fprintf(stderr, "error: bad flags (-e takes a descriptor such as d12; B, T, reps >= 1)\n");
        return 1;
    }
    // the modes, as the trainer's flags make them (llmc/gpt2_config.h, llmc/args.h)
    QuantConfig ternary = quant_config_b158(), b158 = quant_config_b158();
    ternary.inner_norm = 0; // the trainer's default -rn 0
    QuantConfig ternary_bq8 = ternary, b158_bq8 = b158;
    ternary_bq8.backward_quant = BQ_INT8;
    b158_bq8.backward_quant = BQ_INT8;
    const BenchMode all[] = {
        {"fp", "fp (plain GPT-2)", quant_config_fp(), 1, 0},
        {"ternary", "ternary (default)", ternary, 1, 0},
        {"ternary_bq8", "ternary, -bq int8", ternary_bq8, 1, 0},
        {"b158", "b1.58 (-rn 1)", b158, 1, 0},
        {"b158_bq8", "b1.58, -bq int8", b158_bq8, 1, 0},
        {"ternary_ffwd", "ternary, float fwd", ternary, 0, 0},
        {"fp_bf16", "fp, -mp bf16", quant_config_fp(), 1, 1},
        {"ternary_bq8_bf16", "ternary, bq8, bf16", ternary_bq8, 1, 1},
        {"b158_bq8_bf16", "b1.58, bq8, bf16", b158_bq8, 1, 1},
    };
    const int NALL = (int)(sizeof(all) / sizeof(all[0]));
    BenchMode modes[16];
    int nmodes = 0, fp_index = -1;
    char list[256];
    snprintf(list, sizeof(list), "%s", mode_list);
    for (char *tok = strtok(list, ","); tok != NULL; tok = strtok(NULL, ",")) {
        int found = -1;
        for (int a = 0; a < NALL; a++) { if (strcmp(tok, all[a].key) == 0) { found = a; } }
        if (found < 0 || nmodes == 16) {
            fprintf(stderr, "error: -m: unknown mode '%s' (modes: fp ternary ternary_bq8 b158 b158_bq8 ternary_ffwd fp_bf16 ternary_bq8_bf16 b158_bq8_bf16)\n", tok);
            return 1;
        }
        if (found == 0) { fp_index = nmodes; }
        modes[nmodes++] = all[found];
    }
    if (nmodes == 0) { fprintf(stderr, "error: -m: no mode given\n"); return 1; }
    GPT2 *models = (GPT2 *)mallocCheck((size_t)nmodes * sizeof(GPT2));
    for (int m = 0; m < nmodes; m++) {
        gpt2_build_random(&models[m], &cfg, modes[m].quant, 1337);
        models[m].int8_forward = modes[m].int8_forward;
    }
    int *x = (int *)mallocCheck((size_t)B * T * sizeof(int)), *y = (int *)mallocCheck((size_t)B * T * sizeof(int));
    uint64_t rng = 7;
    for (int i = 0; i < B * T; i++) { x[i] = random_u32(&rng) % cfg.vocab_size; y[i] = random_u32(&rng) % cfg.vocab_size; }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    char cpu[256];
    printf("benchmark: %s (%zu parameters), B=%d T=%d, %d timed steps per mode after 1 warm-up, %d threads\n",
           desc, models[0].num_parameters, B, T, reps, threads);
    printf("cpu: %s\npaths: fp32 matmul %s, bf16 matmul %s, int8 x trit %s (TG1_CPU_PATH=scalar|avx2|avx512 picks another)\n",
           cpu_features_describe(cpu, sizeof(cpu)), matmul_cpu_backend(0), matmul_cpu_backend(1), ternary_kernels_backend());
    double *ms[16];
    for (int m = 0; m < nmodes; m++) {
        ms[m] = (double *)mallocCheck((size_t)reps * sizeof(double));
        train_step(&models[m], modes[m].bf16, x, y, B, T, 0);
    }
    for (int r = 0; r < reps; r++) {
        for (int m = 0; m < nmodes; m++) {
            ms[m][r] = train_step(&models[m], modes[m].bf16, x, y, B, T, r + 1);
            printf("  step %d %-20s %9.1f ms  loss %.4f\n", r + 1, modes[m].name, ms[m][r], models[m].mean_loss);
            fflush(stdout);
        }
    }
    double med[16], fp32_all = 0.0;
    for (int m = 0; m < nmodes; m++) { med[m] = median(ms[m], reps); }
    printf("\n%-20s %12s %10s %14s %12s\n", "mode", "ms/step", "tok/s", "time vs fp", "speed vs fp");
    for (int m = 0; m < nmodes; m++) {
        printf("%-20s %12.1f %10.1f", modes[m].name, med[m], B * T / (med[m] / 1000.0));
        if (fp_index >= 0) { printf(" %13.3fx %11.3fx", med[m] / med[fp_index], med[fp_index] / med[m]); }
        printf("\n");
    }
    printf("(medians of %d steps; time vs fp below 1 = faster than fp)\n", reps);
    if (fp_index >= 0) {
        // what bounds the ternary modes: the float matmuls they keep, against the fp step
        for (int bf16 = 0; bf16 < 2; bf16++) {
            double all_ms, kept_ms;
            time_float_matmuls(&cfg, B * T, reps, bf16, &all_ms, &kept_ms);
            double fp = med[fp_index];
            if (bf16) { // against fp's step with the bf16 matmuls' time in place of fp32's
                printf("with -mp bf16: all of them %.1f ms, the ones kept %.1f ms: a ternary -bq int8 -mp bf16 step takes at\n"
                       "  least %.1f ms + its integer matmuls + the rest of the fp step, so at best %.3fx fp's time (%.2fx the\n"
                       "  speed); fp with -mp bf16 at best %.3fx (%.2fx)\n", all_ms, kept_ms, kept_ms,
                       (kept_ms + fp - fp32_all) / fp, fp / (kept_ms + fp - fp32_all), (all_ms + fp - fp32_all) / fp,
                       fp / (all_ms + fp - fp32_all));
                continue;
            }
            fp32_all = all_ms;
            printf("\nfloat matmuls alone (random operands, median of %d): all of a step's %.1f ms (%.0f%% of the fp step);\n"
                   "  the ones a ternary step with -bq int8 keeps (BitLinear dW, the head) %.1f ms: that step takes at\n"
                   "  least %.1f ms + its integer matmuls + the rest of the fp step (%.1f ms), so at best %.3fx fp's time\n"
                   "  with free integer matmuls (%.2fx the speed)\n",
                   reps, all_ms, 100.0 * all_ms / fp, kept_ms, kept_ms, fp - all_ms, (kept_ms + fp - all_ms) / fp,
                   fp / (kept_ms + fp - all_ms));
        }
    }
    for (int m = 0; m < nmodes; m++) { gpt2_free(&models[m]); free(ms[m]); }
    free(models);
    free(x); free(y);
    return 0;
}
