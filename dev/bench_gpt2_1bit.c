/*
 dev/bench_gpt2_1bit.c: CPU training speed, the fp mode against the ternary ones, measured in the
 same run on the same batch. Modes (-m, a comma-separated list; the default is all but b158_ffwd):
   fp            plain GPT-2 (-wq fp -aq none): every matmul in fp32
   ternary       the trainer's default (-rn 0): BitLinear forward as int8 codes x packed trits,
                 backward in float
   ternary_bq8   the same with -bq int8: dX = dY W_q as int8 dY x packed trits too (dW stays float)
   b158          BitNet b1.58 as published (-rn 1: the inner RMSNorm), backward in float
   b158_bq8      the same with -bq int8
   ternary_ffwd  the default's math with the float forward on W_q (the spec): what the integer
                 kernels buy
 Each step is forward, backward, gradient norm and AdamW update (gpt2_update), as the trainer's.

 Build and run:  make bench            (= make bench_gpt2_1bit && ./bench_gpt2_1bit)
 Flags:          ./bench_gpt2_1bit [-e d12] [-b 4] [-t 64] [-r 5] [-m fp,ternary,...]
 All models are built from the same random init; the steps alternate
 between them so that a change in machine load hits all of them.
 One warm-up step each is not timed. Prints the CPU's features and the SIMD paths
 the matmuls take (llmc/cpu_features.h; TG1_CPU_PATH=avx2 ./bench_gpt2_1bit runs
 another), the median ms per step, tok/s and each mode's time against fp's (when fp runs).
 Memory: each mode holds a model with its gradients and AdamW moments (about 2.5 GB at d12,
 7 GB at d24): at d24, pick two or three modes with -m.
*/
#define TESTING
#include "../train_gpt2_1bit.c"



static double train_step(GPT2 *model, const int *x, const int *y, int B, int T, int step) {
    double t0 = now_seconds();
    gpt2_forward(model, x, y, B, T);
    gpt2_zero_grad(model);
    gpt2_backward(model);
    float norm = gpt2_grad_norm(model);
    gpt2_update(model, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, norm > 1.0f ? 1.0f / norm : 1.0f, step + 1);
    return 1000.0 * (now_seconds() - t0);
}

typedef struct {
    const char *key, *name;
    QuantConfig quant;
    int int8_forward;
} BenchMode;

int main(int argc, char **argv) {
    const char *desc = "d12", *mode_list = "fp,ternary,ternary_bq8,b158,b158_bq8";
    int B = 4, T = 64, reps = 5;
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
        {"fp", "fp (plain GPT-2)", quant_config_fp(), 1},
        {"ternary", "ternary (default)", ternary, 1},
        {"ternary_bq8", "ternary, -bq int8", ternary_bq8, 1},
        {"b158", "b1.58 (-rn 1)", b158, 1},
        {"b158_bq8", "b1.58, -bq int8", b158_bq8, 1},
        {"ternary_ffwd", "ternary, float fwd", ternary, 0},
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
            fprintf(stderr, "error: -m: unknown mode '%s' (modes: fp ternary ternary_bq8 b158 b158_bq8 ternary_ffwd)\n", tok);
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
    printf("cpu: %s\npaths: fp32 matmul %s, int8 x trit %s (TG1_CPU_PATH=scalar|avx2|avx512 picks another)\n",
           cpu_features_describe(cpu, sizeof(cpu)), matmul_cpu_backend(), ternary_kernels_backend());
    double *ms[16];
    for (int m = 0; m < nmodes; m++) {
        ms[m] = (double *)mallocCheck((size_t)reps * sizeof(double));
        train_step(&models[m], x, y, B, T, 0);
    }
    for (int r = 0; r < reps; r++) {
        for (int m = 0; m < nmodes; m++) {
            ms[m][r] = train_step(&models[m], x, y, B, T, r + 1);
            printf("  step %d %-20s %9.1f ms  loss %.4f\n", r + 1, modes[m].name, ms[m][r], models[m].mean_loss);
            fflush(stdout);
        }
    }
    double med[16];
    for (int m = 0; m < nmodes; m++) { med[m] = median(ms[m], reps); }
    printf("\n%-20s %12s %10s %14s %12s\n", "mode", "ms/step", "tok/s", "time vs fp", "speed vs fp");
    for (int m = 0; m < nmodes; m++) {
        printf("%-20s %12.1f %10.1f", modes[m].name, med[m], B * T / (med[m] / 1000.0));
        if (fp_index >= 0) { printf(" %13.3fx %11.3fx", med[m] / med[fp_index], med[fp_index] / med[m]); }
        printf("\n");
    }
    printf("(medians of %d steps; time vs fp below 1 = faster than fp)\n", reps);
    for (int m = 0; m < nmodes; m++) { gpt2_free(&models[m]); free(ms[m]); }
    free(models);
    free(x); free(y);
    return 0;
}
