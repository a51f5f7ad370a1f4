/*
 tests/test_gpt2_1bit.cu: the CUDA trainer against the PyTorch reference, in
 every mode, plus a determinism test. Needs a GPU.

 Part 1, as tests/test_gpt2_1bit.c does for the CPU trainer: for each
 tests/ref/state_<mode>.bin, load tests/ref/model.bin, run the forward pass on
 the saved batch, compare the logits, the loss and every gradient tensor, then
 take 10 AdamW steps on the same batch and compare the losses. The modes: fp,
 ternary, binary, ternary_wonly, ternary_bq8 and ternary_wonly_bq8 (the same
 with -bq int8: dX = dY W_q with dY in int8, the int32 GEMM on the trits
 transposed), ternary_rn2 (-rn 2). The int8 modes run twice: float BitLinear
 forward, and the integer forward (int8 x trits on the tensor cores) that
 training uses.

 Part 2, determinism: 3 steps, checkpoint, 3 more steps; reload the checkpoint
 and redo the 3 steps: the losses must be bit-identical. This is what makes
 resume exact (b1.58, b1.58 with -bq int8, fp).

 Build and run (the tolerances depend on the build):
   make tests/test_gpt2_1bitcu_fp32 && ./tests/test_gpt2_1bitcu_fp32    fp32 activations: tight
   make tests/test_gpt2_1bitcu && ./tests/test_gpt2_1bitcu              bf16 activations: looser
 or both: make test-cuda
*/
#define TESTING
#include "../train_gpt2_1bit.cu"
#include "ref_modes.h" // defines: REF_MODES, REF_MODE_INT8_ACTS

#define REF_MAGIC 20261124
#define REF_VERSION 1

// Tolerances: the same fields as tests/test_gpt2_1bit.c.
typedef struct {
    float logits;       // max |logit - ref| over all B*T*V logits
    float loss;         // |loss - ref|
    float grad;         // max |g - ref| / max(max|ref|, 1e-3), per tensor
    float losses_early; // max |loss_k - ref_k| over optimizer steps 0-3
    float losses;       // max |loss_k - ref_k| over all optimizer steps
} Tolerance;
// Measured on an NVIDIA H200 (CUDA 13.0, driver 580.159, 2026-11-28, dev/gpu_check.sh),
// the worst mode of each group, in the order of the fields:
//   fp32 float (fp, ternary_wonly)     1.8e-7  4.8e-7  5.9e-7  4.8e-7  4.8e-5
//   fp32 int8 acts, float forward      4.4e-3  1.5e-5  3.0e-3  1.3e-3  2.4e-2  (binary)
//   fp32 int8 acts, integer forward    3.3e-7  4.8e-7  9.4e-7  2.8e-4  9.9e-3
//   bf16 float                         3.7e-3  9.4e-5  9.5e-3  4.0e-4  7.7e-4
//   bf16 int8 acts, float forward      1.6e-2  5.1e-4  2.2e-2  9.8e-3  1.2e-2
//   bf16 int8 acts, integer forward    1.4e-2  7.2e-4  2.5e-2  6.0e-3  2.9e-2
// The bounds are about 2-5x those; a real bug (a wrong sign, a missing term) is > 1e-1.
#ifdef ENABLE_FP32
// fp32 build: the GPU sums in other orders than both the CPU and the reference,
// a ~1e-7 rounding difference, except where it moves an int8 activation code
// across a rounding tie: then a whole quantization step (1/127 of the row's
// max) moves. The float forward of the binary mode (every weight +-gamma, none
// 0) showed that on the GPU: logits 4.4e-3, above the CPU test's 1e-3.
static const Tolerance TOL_FLOAT_ACTS = {1e-4f, 1e-5f, 1e-4f, 1e-4f, 1e-4f};
static const Tolerance TOL_INT8_ACTS = {1e-2f, 1e-4f, 1e-2f, 3e-3f, 5e-2f};
static const Tolerance TOL_INT8_KERNEL = {1e-2f, 1e-3f, 3e-2f, 3e-3f, 5e-2f};
// -bq int8 (the _bq8 files): dY is rounded to int8 per token, so a 1e-7 difference in dY can
// flip one of its codes too (by 1/127 of its row's max), and the flip travels down the layers.
// The bounds are tests/test_gpt2_1bit.c's for the CPU trainer (its paths: gradients within 6.4e-4
// with float activations, 2.4e-3 in b1.58). Not yet measured on a GPU; on the CPU emulator
// (2026-11-28): ternary_wonly_bq8 2.1e-7 0 4.5e-7 4.8e-7 4.3e-5, ternary_bq8 (either forward)
// 2.4e-7 4.8e-7 2.4e-3 2.0e-3 9.5e-3. They tell the int8 backward from the float one: the
// emulated trainer with the float backward fails 11 gradient checks of each of ternary_bq8,
// ternary_bq8/int8 (6.8e-3..2.2e-2 against 1e-2) and ternary_wonly_bq8 (7.1e-4..9.2e-3 against
// 2e-3), measured.
static const Tolerance TOL_INT8_BWD_FLOAT_ACTS = {1e-4f, 1e-5f, 2e-3f, 1e-4f, 1e-3f};
static const Tolerance TOL_INT8_BWD = {1e-2f, 1e-3f, 1e-2f, 5e-3f, 5e-2f};
#else
// bf16 build: every activation is rounded to 8 significant bits (relative
// error up to 2^-9 = 2e-3 per rounding, compounding over the layers). The CPU
// emulator (the same bf16 rounding, fp32 sums) gave about what the H200 gave.
static const Tolerance TOL_FLOAT_ACTS = {3e-2f, 5e-3f, 5e-2f, 1e-2f, 3e-2f};
static const Tolerance TOL_INT8_ACTS = {5e-2f, 1e-2f, 8e-2f, 2e-2f, 8e-2f};
static const Tolerance TOL_INT8_KERNEL = {5e-2f, 1e-2f, 8e-2f, 2e-2f, 8e-2f};
// -bq int8: the bounds of the same activations without it. On the CPU emulator (2026-11-28, not
// yet on a GPU): ternary_wonly_bq8 3.6e-3 9.4e-5 1.3e-2 3.5e-4 7.2e-4, ternary_bq8 (either forward)
// 1.3e-2 7.2e-4 3.3e-2 2.1e-3 2.6e-2. At bf16's noise these do not tell the int8 backward from
// the float one (the fp32 build's bounds do); they catch a wrong scale, sign or transpose.
static const Tolerance TOL_INT8_BWD_FLOAT_ACTS = {3e-2f, 5e-3f, 5e-2f, 1e-2f, 3e-2f};
static const Tolerance TOL_INT8_BWD = {5e-2f, 1e-2f, 8e-2f, 2e-2f, 8e-2f};
#endif
#define EARLY_STEPS 4

static int num_passed = 0, num_failed = 0;
// the larger of m and d, where a NaN counts as larger than anything (a plain
// d > m ? d : m would drop it, and a NaN gradient would pass)
static float max_nan(float m, float d) { return (d > m || d != d) ? d : m; }
static void check(int ok, const char *name, const char *fmt, double got, double tol) {
    if (ok) { printf("PASS: %s (", name); num_passed++; }
    else { printf("FAIL: %s: (", name); num_failed++; }
    printf(fmt, got);
    printf(", tolerance %.1e)\n", tol);
}

// the logits of the last forward pass on the host, (B*T, Vp) as floats
static float *download_logits(GPT2 *model, int BT) {
    size_t n = (size_t)BT * model->config.padded_vocab_size;
    floatX *tmp = (floatX *)mallocCheck(n * sizeof(floatX));
    float *out = (float *)mallocCheck(n * sizeof(float));
    cudaCheck(cudaMemcpy(tmp, model->acts.logits, n * sizeof(floatX), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) { out[i] = to_float(tmp[i]); }
    free(tmp);
    return out;
}

static void test_mode(const char *mode_name, int int8_forward) {
    char path[256];
    snprintf(path, sizeof(path), "tests/ref/state_%s.bin", mode_name);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        printf("FAIL: %s: reference file missing (run python dev/reference/gpt2_1bit_reference.py)\n", path);
        num_failed++;
        return;
    }
    int header[256];
    freadCheck(header, sizeof(int), 256, fp, path);
    if (header[0] != REF_MAGIC || header[1] != REF_VERSION) {
        printf("FAIL: %s: bad magic/version %d/%d\n", path, header[0], header[1]);
        num_failed++;
        fclose(fp);
        return;
    }
    int B = header[2], T = header[3], nsteps = header[7], V = header[8];
    QuantConfig quant = {header[4], header[5], header[6], header[11]}; // [11]: 0 (float) in the older files
    GPT2 model;
    gpt2_build_from_checkpoint(&model, "tests/ref/model.bin", quant, NULL);
    int Vp = model.config.padded_vocab_size;
    model.int8_forward = int8_forward;
    const Tolerance *tol = quant.act_quant == AQ_INT8 ? (int8_forward ? &TOL_INT8_KERNEL : &TOL_INT8_ACTS)
                                                      : &TOL_FLOAT_ACTS;
    if (quant.backward_quant == BQ_INT8) {
        tol = quant.act_quant == AQ_INT8 ? &TOL_INT8_BWD : &TOL_INT8_BWD_FLOAT_ACTS;
    }
    if (V != model.config.vocab_size || (size_t)(unsigned)header[10] != model.num_parameters) {
        printf("FAIL: %s does not match tests/ref/model.bin (V %d vs %d)\n", path, V, model.config.vocab_size);
        num_failed++;
        fclose(fp);
        return;
    }
    size_t np = model.num_parameters;
    int *x = (int *)mallocCheck((size_t)B * T * sizeof(int));
    int *y = (int *)mallocCheck((size_t)B * T * sizeof(int));
    float *ref_logits = (float *)mallocCheck((size_t)B * T * V * sizeof(float));
    float *ref_grads = (float *)mallocCheck(np * sizeof(float));
    float *grads = (float *)mallocCheck(np * sizeof(float));
    float *ref_losses = (float *)mallocCheck((size_t)nsteps * sizeof(float));
    float ref_loss;
    freadCheck(x, sizeof(int), (size_t)B * T, fp, path);
    freadCheck(y, sizeof(int), (size_t)B * T, fp, path);
    freadCheck(ref_logits, sizeof(float), (size_t)B * T * V, fp, path);
    freadCheck(&ref_loss, sizeof(float), 1, fp, path);
    freadCheck(ref_grads, sizeof(float), np, fp, path);
    freadCheck(ref_losses, sizeof(float), (size_t)nsteps, fp, path);
    fclose(fp);

    char name[256], label[64];
    snprintf(label, sizeof(label), "cuda-%s %s%s", PRECISION_NAME, mode_name, int8_forward ? "/int8" : "");
    printf("-- %s (weights %s, activations %s, inner norm %d; BitLinear forward %s, backward dX %s)\n", label,
           WEIGHT_QUANT_NAMES[quant.weight_quant], ACT_QUANT_NAMES[quant.act_quant], quant.inner_norm,
           gpt2_uses_int8_matmul(&model) ? "int8 x trits" : "float",
           gpt2_uses_int8_backward(&model) ? "int8 x trits" : "float");
    // forward without the in-place gradient, to read the logits
    gpt2_forward(&model, x, y, B, T, 0, 1.0f);
    float *logits = download_logits(&model, B * T);
    float maxdiff = 0.0f;
    for (int bt = 0; bt < B * T; bt++) {
        for (int v = 0; v < V; v++) {
            maxdiff = max_nan(maxdiff, fabsf(logits[(size_t)bt * Vp + v] - ref_logits[(size_t)bt * V + v]));
        }
    }
    free(logits);
    snprintf(name, sizeof(name), "%s logits", label);
    check(maxdiff <= tol->logits, name, "max diff %.2e", maxdiff, tol->logits);
    snprintf(name, sizeof(name), "%s loss %.6f vs ref %.6f", label, model.mean_loss, ref_loss);
    check(fabsf(model.mean_loss - ref_loss) <= tol->loss, name, "diff %.2e", fabsf(model.mean_loss - ref_loss),
          tol->loss);

    gpt2_forward(&model, x, y, B, T, 1, 1.0f);
    gpt2_zero_grad(&model);
    gpt2_backward(&model);
    cudaCheck(cudaMemcpy(grads, model.grads_memory, np * sizeof(float), cudaMemcpyDeviceToHost));
    for (int p = 0; p < NUM_GRAD_PARTS; p++) { // every tensor, then qkvw and qkvb by q, k, v (ref_modes.h)
        char part[32];
        float md, mref;
        grad_part_maxes(p, model.param_sizes, model.config.num_layers, model.config.channels, grads, ref_grads, part,
                        sizeof(part), &md, &mref);
        float rel = md / (mref > 1e-3f ? mref : 1e-3f);
        snprintf(name, sizeof(name), "%s grad %-8s (max |ref| %.2e, max diff %.2e)", label, part, mref, md);
        // max |ref| > 0 for each whole tensor; k's bias gradient is 0 in exact arithmetic. The thirds
        // take their tensor's bound; on the CPU emulator they came to at most 2.4e-2 (bf16), 6.3e-4 (fp32)
        check(rel <= tol->grad && (mref > 0.0f || p >= NUM_PARAMETER_TENSORS), name, "relative %.2e", rel, tol->grad);
    }

    // 10 AdamW steps on the same batch, as the reference takes them
    float maxloss = 0.0f, maxearly = 0.0f, first_loss = 0.0f;
    printf("   step   loss        ref\n");
    for (int step = 0; step < nsteps; step++) {
        if (step > 0) { gpt2_forward(&model, x, y, B, T, 1, 1.0f); }
        gpt2_zero_grad(&model);
        gpt2_backward(&model);
        float norm = gpt2_grad_norm(&model);
        float scale = norm > 1.0f ? 1.0f / (norm + 1e-6f) : 1.0f;
        gpt2_update(&model, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, scale, step + 1);
        float d = fabsf(model.mean_loss - ref_losses[step]);
        maxloss = max_nan(maxloss, d);
        if (step < EARLY_STEPS) { maxearly = max_nan(maxearly, d); }
        if (step == 0) { first_loss = model.mean_loss; }
        printf("   %4d   %.6f    %.6f\n", step, model.mean_loss, ref_losses[step]);
    }
    snprintf(name, sizeof(name), "%s losses of the first %d AdamW steps", label, EARLY_STEPS);
    check(maxearly <= tol->losses_early, name, "max diff %.2e", maxearly, tol->losses_early);
    snprintf(name, sizeof(name), "%s losses of %d AdamW steps, falling", label, nsteps);
    check(maxloss <= tol->losses && model.mean_loss < first_loss && ref_losses[nsteps - 1] < ref_losses[0], name,
          "max diff %.2e", maxloss, tol->losses);

    free(x); free(y); free(ref_logits); free(ref_grads); free(grads); free(ref_losses);
    gpt2_free(&model);
}

// ----------------------------------------------------------------------------
// determinism: a run, a checkpoint, a reload, the same steps again

// `steps` training steps on fixed random batches drawn from rng; losses out
static void train_steps(GPT2 *model, int B, int T, int steps, int first_step, uint64_t *rng, float *losses) {
    int V = model->config.vocab_size;
    int *x = (int *)mallocCheck((size_t)B * (T + 1) * sizeof(int));
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < B * (T + 1); i++) { x[i] = (int)(random_u32(rng) % (uint32_t)V); }
        gpt2_forward(model, x, x + B, B, T, 1, 1.0f); // targets: the same tokens shifted (any valid ids do)
        gpt2_zero_grad(model);
        gpt2_backward(model);
        float norm = gpt2_grad_norm(model);
        float scale = norm > 1.0f ? 1.0f / (norm + 1e-6f) : 1.0f;
        gpt2_update(model, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, scale, first_step + s + 1);
        losses[s] = model->mean_loss;
    }
    free(x);
}

static void test_determinism(const char *mode_name, QuantConfig quant) {
    const int B = 4, T = 32, N = 3;
    char dir[] = "/tmp/test_gpt2_1bitcu_XXXXXX";
    if (mkdtemp(dir) == NULL) { printf("FAIL: cannot make a temporary directory\n"); num_failed++; return; }
    GPT2Config cfg;
    gpt2_config_from_descriptor(&cfg, "d2");
    GPT2 a;
    gpt2_build_random(&a, &cfg, quant, 42);
    uint64_t rng = 7;
    float warm[N], first[N], again[N];
    train_steps(&a, B, T, N, 0, &rng, warm);
    // checkpoint after N steps (the loader position is not used here)
    size_t np = a.num_parameters;
    float *m = (float *)mallocCheck(np * sizeof(float)), *v = (float *)mallocCheck(np * sizeof(float));
    gpt2_download_params(&a);
    cudaCheck(cudaMemcpy(m, a.m_memory, np * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(v, a.v_memory, np * sizeof(float), cudaMemcpyDeviceToHost));
    TrainState st = {N, B, T, rng, 0, 0, B * T};
    checkpoint_write(dir, &a.config, &a.quant, a.params_host, m, v, np, &st);
    uint64_t rng_saved = rng;
    train_steps(&a, B, T, N, N, &rng, first);
    // reload and redo
    char path[512];
    snprintf(path, sizeof(path), "%s/model_%08d.bin", dir, N);
    GPT2 b;
    gpt2_build_from_checkpoint(&b, path, quant, NULL);
    snprintf(path, sizeof(path), "%s/state_%08d.bin", dir, N);
    TrainState st2;
    checkpoint_read_state(path, np, B, T, B * T, m, v, &st2);
    cudaCheck(cudaMemcpy(b.m_memory, m, np * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(b.v_memory, v, np * sizeof(float), cudaMemcpyHostToDevice));
    rng = rng_saved;
    train_steps(&b, B, T, N, N, &rng, again);
    int same = 1;
    for (int s = 0; s < N; s++) {
        printf("   step %d: loss %.9g, after reload %.9g\n", N + s + 1, first[s], again[s]);
        same &= memcmp(&first[s], &again[s], sizeof(float)) == 0 && isfinite(first[s]) && isfinite(warm[s]);
    }
    char name[256];
    snprintf(name, sizeof(name), "cuda-%s %s: save, run, reload, rerun: bit-identical losses", PRECISION_NAME,
             mode_name);
    check(same && st2.step == N, name, "%.0f steps compared", (double)N, 0.0);
    free(m);
    free(v);
    gpt2_free(&a);
    gpt2_free(&b);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) { printf("(could not remove %s)\n", dir); }
}


// ----------------------------------------------------------------------------
// gradient accumulation (-d): two micro-batches of B/2 with dloss scaled by 1/2
// must give the gradients and the mean loss of one batch of B. Each row's
// quantization depends on that row alone, so only float summation orders differ
// (cuBLAS may pick other kernels for the smaller batch); in the int8 modes such a
// difference can flip an int8 code, hence the mode's own tolerance.

static void test_grad_accumulation(QuantConfig quant, const char *mode_name) {
    const Tolerance *tol = quant.act_quant == AQ_INT8 ? &TOL_INT8_ACTS : &TOL_FLOAT_ACTS;
    const int B = 4, T = 16;
    GPT2 model;
    gpt2_build_from_checkpoint(&model, "tests/ref/model.bin", quant, NULL);
    int V = model.config.vocab_size;
    size_t np = model.num_parameters;
    int *x = (int *)mallocCheck((size_t)B * T * sizeof(int)), *y = (int *)mallocCheck((size_t)B * T * sizeof(int));
    uint64_t rng = 11;
    for (int i = 0; i < B * T; i++) { x[i] = (int)(random_u32(&rng) % V); y[i] = (int)(random_u32(&rng) % V); }
    float *g1 = (float *)mallocCheck(np * sizeof(float)), *g2 = (float *)mallocCheck(np * sizeof(float));
    gpt2_zero_grad(&model);
    gpt2_forward(&model, x, y, B, T, 1, 1.0f);
    gpt2_backward(&model);
    float loss1 = model.mean_loss;
    cudaCheck(cudaMemcpy(g1, model.grads_memory, np * sizeof(float), cudaMemcpyDeviceToHost));
    gpt2_zero_grad(&model);
    float loss2 = 0.0f;
    for (int half = 0; half < 2; half++) {
        size_t off = (size_t)half * (B / 2) * T;
        gpt2_forward(&model, x + off, y + off, B / 2, T, 1, 0.5f);
        gpt2_backward(&model);
        loss2 += 0.5f * model.mean_loss;
    }
    cudaCheck(cudaMemcpy(g2, model.grads_memory, np * sizeof(float), cudaMemcpyDeviceToHost));
    float md = 0.0f, mref = 0.0f;
    for (size_t i = 0; i < np; i++) {
        md = max_nan(md, fabsf(g1[i] - g2[i]));
        mref = max_nan(mref, fabsf(g1[i]));
    }
    float rel = md / (mref > 1e-3f ? mref : 1e-3f);
    char name[256];
    snprintf(name, sizeof(name), "cuda-%s %s: 2 micro-batches of B/2 = 1 batch of B (loss %.6f vs %.6f)",
             PRECISION_NAME, mode_name, loss2, loss1);
    check(rel <= tol->grad && fabsf(loss1 - loss2) <= tol->loss, name, "gradients relative %.2e", rel, tol->grad);
    free(x); free(y); free(g1); free(g2);
    gpt2_free(&model);
}

int main(void) {
    cuda_device_init("this test needs a GPU; make test runs its emulated build (tests/cuda_emu) instead");
    print_device_line();
    cublasCheck(cublasCreate(&cublas_handle));
    // every mode with the float BitLinear forward, then the modes with int8 activations
    // again with the integer forward that training uses
    for (int i = 0; i < NUM_REF_MODES; i++) { test_mode(REF_MODES[i], 0); }
    for (int i = 0; i < NUM_REF_MODES; i++) {
        if (REF_MODE_INT8_ACTS[i]) { test_mode(REF_MODES[i], 1); }
    }
    QuantConfig b158_bq8 = quant_config_b158();
    b158_bq8.backward_quant = BQ_INT8;
    test_grad_accumulation(quant_config_b158(), "b1.58");
    test_grad_accumulation(b158_bq8, "b1.58 -bq int8");
    test_grad_accumulation(quant_config_fp(), "fp");
    test_determinism("b1.58", quant_config_b158());
    test_determinism("b1.58 -bq int8", b158_bq8);
    test_determinism("fp", quant_config_fp());
    matmul_lt_free(); // the cuBLASLt handle, workspace and plans (llmc/matmul.cuh)
    cublasCheck(cublasDestroy(cublas_handle));
    printf("(test_gpt2_1bit.cu %s: %d checks passed, %d checks failed)\n", PRECISION_NAME, num_passed, num_failed);
    return num_failed == 0 ? 0 : 1;
}
