/*
 dev/bench_gpt2_1bit.c: CPU training speed, fp mode vs ternary (b1.58) mode,
 measured in the same run on the same batch. The ternary mode runs three times:
   b1.58, float bwd       the trainer's default: BitLinear forward as int8 x packed trits,
                          backward in float
   b1.58, int8 bwd        the same with -bq int8: dX = dY W_q as int8 dY x packed trits too
                          (dW stays float)
   b1.58, float fwd+bwd   the float forward on W_q (the spec), to show what the integer kernels buy

 Build and run:  make bench            (= make bench_gpt2_1bit && ./bench_gpt2_1bit)
 Flags:          ./bench_gpt2_1bit [-e d12] [-b 4] [-t 64] [-r 5]
 All models are built from the same random init; the steps alternate
 between them so that a change in machine load hits all of them.
 One warm-up step each is not timed. Prints the CPU's features and the SIMD paths
 the matmuls take (llmc/cpu_features.h; TG1_CPU_PATH=avx2 ./bench_gpt2_1bit runs
 another), the median ms per step (forward, backward, AdamW update), tok/s and
 the ternary / fp time ratio.
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

int main(int argc, char **argv) {
    const char *desc = "d12";
    int B = 4, T = 64, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-e") == 0) { desc = argv[i + 1]; }
        else if (strcmp(argv[i], "-b") == 0) { B = atoi(argv[i + 1]); }
        else if (strcmp(argv[i], "-t") == 0) { T = atoi(argv[i + 1]); }
        else if (strcmp(argv[i], "-r") == 0) { reps = atoi(argv[i + 1]); }
        else { fprintf(stderr, "error: unknown flag '%s' (flags: -e -b -t -r)\n", argv[i]); return 1; }
    }
    GPT2Config cfg;
    if (!gpt2_config_from_descriptor(&cfg, desc) || B < 1 || T < 1 || T > cfg.max_seq_len || reps < 1) {
        fprintf(stderr, "error: bad flags (-e takes a descriptor such as d12; B, T, reps >= 1)\n");
        return 1;
    }
#define NMODES 4
    const char *names[NMODES] = {"fp (plain GPT-2)", "b1.58, float bwd", "b1.58, int8 bwd", "b1.58, float fwd+bwd"};
    QuantConfig modes[NMODES] = {quant_config_fp(), quant_config_b158(), quant_config_b158(), quant_config_b158()};
    modes[2].backward_quant = BQ_INT8; // -bq int8
    GPT2 models[NMODES];
    for (int m = 0; m < NMODES; m++) { gpt2_build_random(&models[m], &cfg, modes[m], 1337); }
    models[3].int8_forward = 0;
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
    double *ms[NMODES];
    for (int m = 0; m < NMODES; m++) {
        ms[m] = (double *)mallocCheck((size_t)reps * sizeof(double));
        train_step(&models[m], x, y, B, T, 0);
    }
    for (int r = 0; r < reps; r++) {
        for (int m = 0; m < NMODES; m++) {
            ms[m][r] = train_step(&models[m], x, y, B, T, r + 1);
            printf("  step %d %-20s %9.1f ms  loss %.4f\n", r + 1, names[m], ms[m][r], models[m].mean_loss);
            fflush(stdout);
        }
    }
    double med[NMODES];
    for (int m = 0; m < NMODES; m++) {
        med[m] = median(ms[m], reps);
    }
    printf("\n%-20s %12s %10s %14s\n", "mode", "ms/step", "tok/s", "time vs fp");
    for (int m = 0; m < NMODES; m++) {
        printf("%-20s %12.1f %10.1f %13.3fx\n", names[m], med[m], B * T / (med[m] / 1000.0), med[m] / med[0]);
    }
    printf("(medians of %d steps; time vs fp below 1 = faster than fp)\n", reps);
    printf("int8 backward of dX (-bq int8) vs float backward: %.3fx the time\n", med[2] / med[1]);
    for (int m = 0; m < NMODES; m++) { gpt2_free(&models[m]); free(ms[m]); }
    free(x); free(y);
    return 0;
}
