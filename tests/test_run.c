/*
 tests/test_run.c: the packed model and the decoder of run_gpt2_1bit.c.
   - export -> load gives back the same trits and scales (2-bit and 1.6-bit)
   - the KV-cache decoder with int8 x packed-trit BitLinear gives the same
     next-token distribution as the training forward, at every position; also for
     a model trained with -rn 2 (the inner norm before attproj and fcproj only)
   - the 2-bit and the 1.6-bit files decode identically; fp16 stays close
   - the screened head: exact logits for a set holding the top k, -inf elsewhere, the same samples
   - every SIMD path this CPU has (llmc/cpu_features.h), and one thread instead of all, decode to
     bit-identical logits, screened and full (the integer kernels are exact, the threads' copies of
     the serial steps identical); the decoder's GELU bit-identical to the trainer's
   - packed sizes: 2 and 1.6 bits per BitLinear weight (GPT-2 124M: 21 / 17 MB)
 Prints one PASS/FAIL line per check; exits 1 on any failure.
 Build and run: make tests/test_run && ./tests/test_run
*/
#define RUN_TESTING
#include "../run_gpt2_1bit.c"

static int num_passed = 0, num_failed = 0;
static void check(int ok, const char *name) {
    if (ok) { printf("PASS: %s\n", name); num_passed++; }
    else { printf("FAIL: %s\n", name); num_failed++; }
}

// the probabilities of a row of logits over V
static void probs_of(float *p, const float *logits, int V) {
    float m = logits[0];
    for (int i = 1; i < V; i++) { m = logits[i] > m ? logits[i] : m; }
    double s = 0;
    for (int i = 0; i < V; i++) { p[i] = expf(logits[i] - m); s += p[i]; }
    for (int i = 0; i < V; i++) { p[i] /= (float)s; }
}

// max |p_decoder - p_training| over positions and tokens, decoding tokens[0..T)
static float compare_with_training(Runner *r, GPT2 *train, const int *tokens, int T) {
    int V = train->config.vocab_size, Vp = train->config.padded_vocab_size;
    gpt2_forward(train, tokens, NULL, 1, T);
    float *p1 = (float *)mallocCheck(V * sizeof(float)), *p2 = (float *)mallocCheck(V * sizeof(float));
    float md = 0;
    for (int t = 0; t < T; t++) {
        probs_of(p1, runner_forward(r, tokens[t], t, LOGITS_ALL), V);
        probs_of(p2, train->acts.logits + (size_t)t * Vp, V);
        for (int i = 0; i < V; i++) { md = fmaxf(md, fabsf(p1[i] - p2[i])); }
    }
    free(p1); free(p2);
    return md;
}

// Tolerance on probabilities. The int8 path sums q * t exactly and scales
// once; the training forward sums (q/s) * (t*gamma) in float: ~1e-6 apart.
// A rare int8 rounding flip downstream moves a probability by ~1e-4 at most
// on this tiny model; 1e-3 leaves room and catches any real mismatch (a
// wrong scale or trit moves probabilities by > 1e-2).
#define PROB_TOL 1e-3f

// the decoder's GELU (gelu_forward_fast, on one thread's slice) is the trainer's gelu_forward, written
// again without the parallel region: the same values bit for bit, so the MLP input codes the decoder
// quantizes are the training forward's. (gelu_forward against double precision: tests/test_units.c.)
static void test_gelu_fast(void) {
    enum { NG = 40001, N = NG + 2000 };
    static float x[N], y_fast[N], y_train[N];
    uint64_t rng = 7;
    for (int i = 0; i < NG; i++) { x[i] = -20.0f + 40.0f * i / (NG - 1); } // a fine grid over [-20, 20]
    for (int i = NG; i < NG + 1000; i++) { x[i] = (random_f32(&rng) - 0.5f) * 1e-3f; } // near 0
    for (int i = NG + 1000; i < N; i++) { x[i] = (random_f32(&rng) - 0.5f) * 2e3f; } // the clamped tails
    gelu_forward_fast(y_fast, x, N);
    gelu_forward(y_train, x, N);
    check(memcmp(y_fast, y_train, sizeof(y_fast)) == 0,
          "decoder GELU (gelu_forward_fast) bit-identical to the trainer's gelu_forward on [-20, 20], near 0, in +-1000");
}

// the decoder's logits over 16 positions, screened (top-k 40) and full, on every path, and with
// one thread: all bit-identical to the first (the scalar path)
static void test_paths(const char *packed_path, const char *what, const int *tokens) {
    char name[256], ran[160] = "";
    int V = 0, same = 1, first = 1, saved = cpu_path();
    float *ref = NULL;
    for (int p = 0; p <= CPU_NUM_PATHS; p++) { // the last round: the default path on one thread
        int one_thread = p == CPU_NUM_PATHS;
        if (!one_thread && !cpu_path_supported(p)) { continue; }
        cpu_path_set(one_thread ? saved : p);
#ifdef _OPENMP
        int threads = omp_get_max_threads();
        if (one_thread) { omp_set_num_threads(1); }
#endif
        Runner r;
        runner_init(&r, packed_path, 1);
        V = r.gpt.config.vocab_size;
        if (first) { ref = (float *)mallocCheck((size_t)32 * V * sizeof(float)); }
        for (int t = 0; t < 16; t++) {
            for (int screened = 0; screened < 2; screened++) {
                const float *l = runner_forward(&r, tokens[t], t, screened ? 40 : LOGITS_ALL);
                float *dst = ref + (size_t)(2 * t + screened) * V;
                if (first) { memcpy(dst, l, (size_t)V * sizeof(float)); }
                else { same &= memcmp(dst, l, (size_t)V * sizeof(float)) == 0; }
            }
        }
        runner_free(&r);
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
        first = 0;
        snprintf(ran + strlen(ran), sizeof(ran) - strlen(ran), " %s%s", one_thread ? "1 thread on " : "",
                 cpu_path_name(cpu_path()));
    }
    cpu_path_set(saved);
    snprintf(name, sizeof(name), "decoder logits (%s, full and screened, 16 positions) bit-identical on:%s", what, ran);
    check(same, name);
    free(ref);
}

int main(void) {
    char name[256], buf[256];
    printf("cpu: %s; path %s\n", cpu_features_describe(buf, sizeof(buf)), cpu_path_name(cpu_path()));
    const char *ckpt = "tests/ref/model.bin"; // an llm.c file: loads in the b1.58 mode
    int tokens[16];
    for (int i = 0; i < 16; i++) { tokens[i] = (i * 37 + 11) % 250; }
    char p2[] = "/tmp/test_run_2bit_XXXXXX", p3[] = "/tmp/test_run_3bit_XXXXXX", p16[] = "/tmp/test_run_fp16_XXXXXX";
    close(mkstemp(p2)); close(mkstemp(p3)); close(mkstemp(p16));
    export_packed(ckpt, p2, 2, 32);
    export_packed(ckpt, p3, 3, 32);
    export_packed(ckpt, p16, 2, 16);

    // the training model, quantized as in training
    GPT2 train;
    gpt2_build_from_checkpoint(&train, ckpt, quant_config_b158(), NULL);
    gpt2_quantize_weights(&train);

    // 1. the packed files give back the same trits and scales
    for (int f = 0; f < 2; f++) {
        GPT2 g;
        runner_load_model(&g, f == 0 ? p2 : p3);
        int same = memcmp(g.trits, train.trits, train.num_bitlinear_weights) == 0 &&
                   memcmp(g.scales, train.scales, sizeof(float) * 4 * train.config.num_layers) == 0;
        for (size_t i = 0; i < train.num_bitlinear_weights; i++) { same &= g.wq_memory[i] == train.wq_memory[i]; } // -0 == +0
        snprintf(name, sizeof(name), "%s file: export -> load returns the same trits, scales and W_q",
                 f == 0 ? "2-bit" : "1.6-bit");
        check(same, name);
        gpt2_free(&g);
    }

    // 2. the decoder against the training forward, from the checkpoint and from the packed file
    const char *paths[2] = {ckpt, p2};
    for (int f = 0; f < 2; f++) {
        for (int int8 = 0; int8 < 2; int8++) {
            Runner r;
            runner_init(&r, paths[f], int8);
            float md = compare_with_training(&r, &train, tokens, 16);
            snprintf(name, sizeof(name), "decoder (%s, %s kernel) equals the training forward at 16 positions "
                     "(max prob diff %.1e)", f == 0 ? "checkpoint" : "2-bit file", r.use_int8 ? "int8" : "fp32", md);
            check(md <= PROB_TOL && r.use_int8 == int8, name);
            runner_free(&r);
        }
    }

    // 2b. a model trained with -rn 2 (the inner RMSNorm before attproj and fcproj only: the decoder's
    // BitLinear inputs go through quant_config_at): its checkpoint and its packed file decode as its
    // training forward does, in both kernels; and not as the b1.58 forward (-rn 1) of the same
    // weights: on this small random model the two forwards' probabilities differ by only ~6e-5
    // (below PROB_TOL), so the check also asks the decoder to be 100x nearer the -rn 2 forward than
    // the -rn 1 one (it is ~1e-9 from it): a decoder that norms every input, or none, fails that
    QuantConfig rn2 = quant_config_b158();
    rn2.inner_norm = RN_PROJ;
    char c_rn2[] = "/tmp/test_run_rn2_ckpt_XXXXXX", p_rn2[] = "/tmp/test_run_rn2_2bit_XXXXXX";
    close(mkstemp(c_rn2)); close(mkstemp(p_rn2));
    model_file_write(c_rn2, &train.config, &rn2, train.params_memory, train.num_parameters);
    export_packed(c_rn2, p_rn2, 2, 32);
    GPT2 train_rn2; // explicit flags NULL: the checkpoint's own mode, -rn 2
    gpt2_build_from_checkpoint(&train_rn2, c_rn2, quant_config_b158(), NULL);
    const char *paths_rn2[2] = {c_rn2, p_rn2};
    for (int f = 0; f < 2; f++) {
        for (int int8 = 0; int8 < 2; int8++) {
            Runner r;
            runner_init(&r, paths_rn2[f], int8);
            float md = compare_with_training(&r, &train_rn2, tokens, 16);
            float md_rn1 = compare_with_training(&r, &train, tokens, 16);
            snprintf(name, sizeof(name), "-rn 2: decoder (%s, %s kernel) equals the -rn 2 training forward at 16 "
                     "positions (max prob diff %.1e; %.1e from the -rn 1 forward)", f == 0 ? "checkpoint" : "2-bit file",
                     r.use_int8 ? "int8" : "fp32", md, md_rn1);
            check(train_rn2.quant.inner_norm == RN_PROJ && r.gpt.quant.inner_norm == RN_PROJ && md <= PROB_TOL &&
                  md_rn1 > 0.0f && md_rn1 >= 100.0f * md && r.use_int8 == int8, name);
            runner_free(&r);
        }
    }
    gpt2_free(&train_rn2);
    remove(c_rn2); remove(p_rn2);

    // 3. 2-bit and 1.6-bit files decode bit-identically; fp16 stays close
    Runner a, b, h;
    runner_init(&a, p2, 1);
    runner_init(&b, p3, 1);
    runner_init(&h, p16, 1);
    int identical = 1;
    float md16 = 0;
    int V = train.config.vocab_size;
    float *pa = (float *)mallocCheck(V * sizeof(float)), *ph = (float *)mallocCheck(V * sizeof(float));
    for (int t = 0; t < 16; t++) {
        float *la = runner_forward(&a, tokens[t], t, LOGITS_ALL), *lb = runner_forward(&b, tokens[t], t, LOGITS_ALL);
        identical &= memcmp(la, lb, V * sizeof(float)) == 0;
        probs_of(pa, la, V);
        probs_of(ph, runner_forward(&h, tokens[t], t, LOGITS_ALL), V);
        for (int i = 0; i < V; i++) { md16 = fmaxf(md16, fabsf(pa[i] - ph[i])); }
    }
    check(identical, "the 2-bit and the 1.6-bit files give bit-identical logits");
    snprintf(name, sizeof(name), "fp16 embeddings and norms change probabilities by %.1e (< 1e-2)", md16);
    check(md16 < 1e-2f, name);
    free(pa); free(ph);
    runner_free(&a); runner_free(&b); runner_free(&h);

    // 4. the screened head (top-k logits from the 4-bit and 8-bit copies of the head, the rest
    // -inf): the logits it computes are the full head's, bit for bit; they include the top k;
    // sampling from them draws the same tokens; and it does skip rows (else the test proves
    // nothing). Both of its modes: two passes (4 bits, then 8 for the rows that may matter) and
    // every row refined at once (refine_all), set before every token
    for (int f = 0; f < 2; f++) {
        const int ks[3] = {1, 5, 40};
        for (int ki = 0; ki < 6; ki++) {
            int k = ks[ki % 3], mode = ki / 3;
            long long refined = 0;
            Runner s;
            runner_init(&s, f == 0 ? p2 : p16, 1);
            float *full = (float *)mallocCheck(V * sizeof(float));
            int *order = (int *)mallocCheck(V * sizeof(int)), *scratch = (int *)mallocCheck(V * sizeof(int));
            int same_bits = 1, has_top = 1, same_samples = 1, skipped = 0;
            uint64_t rng = 42;
            for (int t = 0; t < 16; t++) {
                // the same token at the same position twice: the cache row is rewritten with the same values
                memcpy(full, runner_forward(&s, tokens[t], t, LOGITS_ALL), V * sizeof(float));
                s.refine_all = mode;
                refined -= s.refined_rows;
                float *scr = runner_forward(&s, tokens[t], t, k);
                refined += s.refined_rows;
                for (int i = 0; i < V; i++) {
                    if (scr[i] == -INFINITY) { skipped++; }
                    else { same_bits &= memcmp(&scr[i], &full[i], sizeof(float)) == 0; }
                }
                // the top k of the full logits by (logit desc, index asc): selection, k is small
                for (int i = 0; i < V; i++) { order[i] = i; }
                for (int j = 0; j < k; j++) {
                    for (int i = j + 1; i < V; i++) {
                        if (full[order[i]] > full[order[j]] || (full[order[i]] == full[order[j]] && order[i] < order[j])) {
                            int tmp = order[i]; order[i] = order[j]; order[j] = tmp;
                        }
                    }
                    has_top &= scr[order[j]] != -INFINITY;
                }
                for (int i = 0; i < 50; i++) {
                    float coin = random_f32(&rng);
                    same_samples &= sample_logits(full, V, 0.9f, k, coin, scratch) == sample_logits(scr, V, 0.9f, k, coin, scratch);
                }
                same_samples &= sample_logits(full, V, 0.0f, k, 0.5f, scratch) == sample_logits(scr, V, 0.0f, k, 0.5f, scratch);
            }
            snprintf(name, sizeof(name), "screened head (%s, top-k %d, %s): computed logits bit-identical to the full "
                     "head, the top k among them, same samples; %.0f%% of rows skipped, %.0f%% refined to 8 bits",
                     f == 0 ? "fp32 head" : "fp16 head", k, mode ? "all rows refined" : "two passes",
                     100.0 * skipped / (16.0 * V), 100.0 * refined / (16.0 * V));
            check(same_bits && has_top && same_samples && skipped > 0 && s.head_u != NULL, name);
            free(full); free(order); free(scratch);
            runner_free(&s);
        }
    }

    // 5. every path decodes the same; the GELU
    test_paths(p2, "fp32 head", tokens);
    test_paths(p16, "fp16 head", tokens);
    test_gelu_fast();

    // 6. sizes: files are exactly as big as the formats say, and GPT-2 124M's parts
    struct stat st2, st3, st16;
    stat(p2, &st2); stat(p3, &st3); stat(p16, &st16);
    size_t bl2 = 0, bl3 = 0;
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(&train.config, k, &OC, &IC);
        bl2 += (size_t)train.config.num_layers * OC * ((IC + 3) / 4);
        bl3 += (size_t)train.config.num_layers * OC * ((IC + 4) / 5);
    }
    size_t other = train.num_parameters - train.num_bitlinear_weights;
    size_t fixed = 1024 + 4 * 4 * train.config.num_layers;
    check((size_t)st2.st_size == fixed + bl2 + 4 * other && (size_t)st3.st_size == fixed + bl3 + 4 * other &&
          (size_t)st16.st_size == fixed + bl2 + 2 * other, "packed file sizes: 2 bits, 1.6 bits per trit; fp16 halves the rest");
    GPT2Config d12 = {0};
    gpt2_config_from_descriptor(&d12, "d12");
    double mb2 = 0, mb3 = 0, n = 0;
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(&d12, k, &OC, &IC);
        mb2 += 12.0 * OC * pack2_row_bytes(IC) / 1e6;
        mb3 += 12.0 * OC * pack3_row_bytes(IC) / 1e6;
        n += 12.0 * OC * IC;
    }
    snprintf(name, sizeof(name), "GPT-2 124M: %.1fM BitLinear weights pack to %.2f MB (2-bit) and %.2f MB (1.6-bit)",
             n / 1e6, mb2, mb3);
    check(fabs(mb2 - 21.2) < 0.1 && fabs(mb3 - 17.0) < 0.1, name);

    remove(p2); remove(p3); remove(p16);
    gpt2_free(&train);
    printf("(test_run: %d checks passed, %d checks failed)\n", num_passed, num_failed);
    return num_failed == 0 ? 0 : 1;
}
