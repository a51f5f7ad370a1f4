/*
 tests/test_gguf.c: the GGUF export of llmc/gguf.h, driven the way run_gpt2_1bit drives it (load
 a training checkpoint, quantize it as the training forward does, gguf_export).

   ./tests/test_gguf                      unit checks: TQ2_0/TQ1_0 packing round trips (every
                                          base-3 byte), block sizes, which models are refused
   ./tests/test_gguf write DIR [-tf TOK]  writes small checkpoints of each kind into DIR and their
                                          GGUF files, with NAME.expect (each BitLinear matrix's
                                          scale and trits) for tests/test_gguf.py to check against
   ./tests/test_gguf export CKPT OUT.gguf [-pf 2|3] [-ff 32|16] [-tf TOK]
                                          what `run_gpt2_1bit -e CKPT -x OUT.gguf` does
   ./tests/test_gguf probs CKPT OUT.bin TOKEN...
                                          our next-token distribution at every position of the
                                          tokens (float32, T x V), the training forward with
                                          run_gpt2_1bit's int8 BitLinear, for comparing with llama.cpp
 tests/test_gguf.py runs all of it and reads the files back with the gguf package.
 Prints one PASS/FAIL line per check; exits 1 on any failure.
 Build: make tests/test_gguf   (gcc -O3 -march=native -fopenmp -std=gnu11 tests/test_gguf.c -lm -o tests/test_gguf)
*/
#define TESTING
#include "../train_gpt2_1bit.c" // defines: GPT2, gpt2_build_from_checkpoint, gpt2_quantize_weights, gpt2_forward
#include "../llmc/gguf.h"       // defines: gguf_export, gguf_export_refusal, tq2_0_pack_row, tq1_0_pack_row

static int num_passed = 0, num_failed = 0;
static void check(int ok, const char *name) {
    if (ok) { printf("PASS: %s\n", name); num_passed++; }
    else { printf("FAIL: %s\n", name); num_failed++; }
}

// ----------------------------------------------------------------------------
// export, as run_gpt2_1bit does it

// a training checkpoint, quantized as the training forward does (runner_load_model for a checkpoint)
static void load_quantized(GPT2 *g, const char *path) {
    gpt2_build_from_checkpoint(g, path, quant_config_b158(), NULL);
    gpt2_quantize_weights(g);
}

static GGUFSizes export_gguf(const char *ckpt, const char *out, int tq1, int float_format, const char *tokenizer) {
    GPT2 g;
    load_quantized(&g, ckpt);
    const int8_t *trits[NUM_BITLINEAR];
    for (int k = 0; k < NUM_BITLINEAR; k++) { trits[k] = g.trits + g.wq_offset[k]; }
    GGUFSizes sz = gguf_export(out, &g.config, &g.quant, trits, g.scales, g.params_memory, tokenizer, tq1,
                               float_format, ckpt);
    gpt2_free(&g);
    return sz;
}

// ----------------------------------------------------------------------------
// unit checks

static int selftest(void) {
    char name[256];
    uint64_t rng = 1234;
    // 1. sizes: 2.0625 and 1.6875 bits per weight
    check(sizeof(block_tq2_0) * 8.0 / QK_K == 2.0625 && sizeof(block_tq1_0) * 8.0 / QK_K == 1.6875,
          "block sizes: TQ2_0 66 bytes = 2.0625 bits/weight, TQ1_0 54 bytes = 1.6875 bits/weight");

    // 2. pack -> unpack round trips: random rows, and rows of all -1, all 0, all +1
    enum { N = 4 * QK_K };
    int8_t t[N], back[N];
    block_tq2_0 b2[N / QK_K];
    block_tq1_0 b1[N / QK_K];
    int ok2 = 1, ok1 = 1;
    for (int pattern = 0; pattern < 23; pattern++) {
        for (int i = 0; i < N; i++) { // 20 random rows, then all -1, all 0, all +1
            t[i] = pattern < 20 ? (int8_t)((int)(random_u32(&rng) % 3) - 1) : (int8_t)(pattern - 21);
        }
        uint16_t d = float_to_half(0.01f * (pattern + 1));
        tq2_0_pack_row(b2, t, N, d);
        tq2_0_unpack_row(back, b2, N);
        ok2 &= memcmp(t, back, N) == 0 && b2[N / QK_K - 1].d == d;
        tq1_0_pack_row(b1, t, N, d);
        tq1_0_unpack_row(back, b1, N);
        ok1 &= memcmp(t, back, N) == 0 && b1[N / QK_K - 1].d == d;
    }
    check(ok2, "TQ2_0: pack -> unpack gives back every trit (23 rows of 1024: random, all -1, all 0, all +1) "
          "and the scale");
    check(ok1, "TQ1_0: pack -> unpack gives back every trit (the same rows) and the scale");

    // 3. every base-3 byte: the 3^5 digit combinations of a qs byte and the 3^4 of a qh byte decode
    // to their digits, and the bytes are distinct (the fixed-point fraction loses nothing)
    int okd = 1, seen[256] = {0};
    for (int v = 0; v < 243; v++) {
        int8_t dg[5];
        for (int k = 0, x = v; k < 5; k++, x /= 3) { dg[4 - k] = (int8_t)(x % 3 - 1); } // dg[0] most significant
        uint8_t byte = tq1_0_byte(dg, 1, 5);
        okd &= !seen[byte];
        seen[byte] = 1;
        for (int k = 0; k < 5; k++) { okd &= tq1_0_digit(byte, k) == dg[k]; }
        if (v < 81) {
            uint8_t hb = tq1_0_byte(dg + 1, 1, 4);
            for (int k = 0; k < 4; k++) { okd &= tq1_0_digit(hb, k) == dg[k + 1]; }
        }
    }
    check(okd, "TQ1_0: all 243 five-digit bytes and 81 four-digit bytes decode to their digits");

    // 4. which models are refused: the inner norm always; C not a multiple of 256 for ternary weights
    GPT2Config c256 = {64, 512, 512, 2, 4, 256}, c128 = {64, 512, 512, 2, 2, 128};
    QuantConfig b158 = quant_config_b158(), rn0 = {WQ_TERNARY, AQ_INT8, 0, BQ_FLOAT}, bin0 = {WQ_BINARY, AQ_INT8, 0, BQ_FLOAT};
    QuantConfig fp = quant_config_fp();
    const char *why_rn = gguf_export_refusal(&c256, &b158), *why_c = gguf_export_refusal(&c128, &rn0);
    check(why_rn != NULL && strstr(why_rn, "-rn 0") != NULL && strstr(why_rn, "inner RMSNorm") != NULL,
          "a model with the inner RMSNorm (-rn 1) is refused, with the reason and -rn 0 as the fix");
    check(why_c != NULL && strstr(why_c, "256") != NULL,
          "a ternary model with C = 128 is refused: rows must be whole 256-trit blocks");
    snprintf(name, sizeof(name), "exportable: ternary -rn 0 (C=256), binary -rn 0, fp (any C)");
    check(gguf_export_refusal(&c256, &rn0) == NULL && gguf_export_refusal(&c256, &bin0) == NULL &&
          gguf_export_refusal(&c128, &fp) == NULL, name);
    printf("(test_gguf: %d checks passed, %d checks failed)\n", num_passed, num_failed);
    return num_failed == 0 ? 0 : 1;
}

// ----------------------------------------------------------------------------
// test models

// a model of cfg in mode q with every tensor random (so no two tensors look alike, and a
// swapped or misplaced tensor shows), written as a checkpoint at path
static void write_model(const char *path, GPT2Config cfg, QuantConfig q, uint64_t seed) {
    GPT2 g;
    gpt2_build_random(&g, &cfg, q, seed);
    uint64_t rng = seed * 77 + 5;
    for (size_t i = 0; i < g.num_parameters; i++) { g.params_memory[i] = 0.05f * random_normal(&rng); }
    for (int i = 0; i < cfg.num_layers * cfg.channels; i++) { g.params.ln1w[i] += 1.0f; g.params.ln2w[i] += 1.0f; }
    for (int i = 0; i < cfg.channels; i++) { g.params.lnfw[i] += 1.0f; }
    model_file_write(path, &g.config, &g.quant, g.params_memory, g.num_parameters);
    gpt2_free(&g);
}

// NAME.expect: for each BitLinear kind k, for each layer l: float32 scale, int8 trits (OC*IC)
static void write_expect(const char *ckpt, const char *path) {
    GPT2 g;
    load_quantized(&g, ckpt);
    FILE *fp = fopenCheck(path, "wb");
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(&g.config, k, &OC, &IC);
        for (int l = 0; l < g.config.num_layers; l++) {
            fwriteCheck(&g.scales[l * 4 + k], sizeof(float), 1, fp, path);
            fwriteCheck(g.trits + g.wq_offset[k] + (size_t)l * OC * IC, 1, (size_t)OC * IC, fp, path);
        }
    }
    fcloseCheck(fp, path);
    gpt2_free(&g);
}

static int write_all(const char *dir, const char *tokenizer) {
    char ck[4096], out[4096], ex[4096];
    GPT2Config small = {32, 300, 384, 2, 4, 256}; // V below the tokenizer's: its first 300 tokens
    GPT2Config narrow = {32, 300, 384, 2, 2, 128};
    GPT2Config vocab = {16, 50257, 50304, 1, 4, 256}; // GPT-2's whole vocab: the tokenizer check
    QuantConfig tern = {WQ_TERNARY, AQ_INT8, 0, BQ_FLOAT}, tern_fpact = {WQ_TERNARY, AQ_NONE, 0, BQ_FLOAT};
    QuantConfig bin = {WQ_BINARY, AQ_INT8, 0, BQ_FLOAT}, fp = quant_config_fp(), b158 = quant_config_b158();
    struct { const char *name; GPT2Config cfg; QuantConfig q; int tq1, ff; } ok[] = {
        {"tern_tq2_f32", small, tern, 0, 32},
        {"tern_tq1_f16", small, tern, 1, 16},
        {"tern_fpact_tq2_f32", small, tern_fpact, 0, 32},
        {"bin_tq2_f32", small, bin, 0, 32},
        {"fp_f32", narrow, fp, 0, 32},
        {"fp_f16", narrow, fp, 0, 16},
        {"vocab_tq2_f16", vocab, tern, 0, 16},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(ck, sizeof(ck), "%s/%s.bin", dir, ok[i].name);
        snprintf(out, sizeof(out), "%s/%s.gguf", dir, ok[i].name);
        snprintf(ex, sizeof(ex), "%s/%s.expect", dir, ok[i].name);
        write_model(ck, ok[i].cfg, ok[i].q, 100 + i);
        write_expect(ck, ex);
        GGUFSizes sz = export_gguf(ck, out, ok[i].tq1, ok[i].ff, tokenizer);
        printf("wrote %s: %zu bytes (matrices %zu, other tensors %zu, tokenizer %zu)\n", out, sz.total,
               sz.matrices, sz.other, sz.tokenizer);
    }
    // the models that are refused, for the error checks of tests/test_gguf.py
    snprintf(ck, sizeof(ck), "%s/refuse_rn1.bin", dir);
    write_model(ck, small, b158, 200);
    snprintf(ck, sizeof(ck), "%s/refuse_c128.bin", dir);
    write_model(ck, narrow, tern, 201);
    return 0;
}

// ----------------------------------------------------------------------------
// our next-token distribution, for the comparison with llama.cpp

static int write_probs(const char *ckpt, const char *out, const int *tokens, int T) {
    GPT2 g;
    load_quantized(&g, ckpt);
    g.int8_forward = 1; // run_gpt2_1bit's int8 BitLinear (equal to its decoder: tests/test_run.c)
    int V = g.config.vocab_size, Vp = g.config.padded_vocab_size;
    gpt2_forward(&g, tokens, NULL, 1, T);
    FILE *fp = fopenCheck(out, "wb");
    for (int t = 0; t < T; t++) { fwriteCheck(g.acts.probs + (size_t)t * Vp, sizeof(float), (size_t)V, fp, out); }
    fcloseCheck(fp, out);
    gpt2_free(&g);
    return 0;
}

static int parse_int_arg(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0') { fprintf(stderr, "error: expected an integer, got '%s'\n", s); exit(EXIT_FAILURE); }
    return (int)v;
}

int main(int argc, char **argv) {
    (void)gpt2_training_bytes; // the trainer's main() uses it; this program does not
    if (argc == 1) { return selftest(); }
    const char *tokenizer = "data/gpt2_tokenizer.bin";
    if (strcmp(argv[1], "write") == 0 && (argc == 3 || (argc == 5 && strcmp(argv[3], "-tf") == 0))) {
        if (argc == 5) { tokenizer = argv[4]; }
        return write_all(argv[2], tokenizer);
    }
    if (strcmp(argv[1], "export") == 0 && argc >= 4 && argc % 2 == 0) {
        int pf = 2, ff = 32;
        for (int i = 4; i + 1 < argc; i += 2) {
            if (strcmp(argv[i], "-pf") == 0) { pf = parse_int_arg(argv[i + 1]); }
            else if (strcmp(argv[i], "-ff") == 0) { ff = parse_int_arg(argv[i + 1]); }
            else if (strcmp(argv[i], "-tf") == 0) { tokenizer = argv[i + 1]; }
            else { fprintf(stderr, "error: unknown flag '%s'\n", argv[i]); return 1; }
        }
        if (pf != 2 && pf != 3) { fprintf(stderr, "error: -pf must be 2 (TQ2_0) or 3 (TQ1_0)\n"); return 1; }
        GGUFSizes sz = export_gguf(argv[2], argv[3], pf == 3, ff, tokenizer);
        printf("wrote %s: %.2f MB (BitLinear %.2f MB as %s, other tensors %.2f MB, tokenizer %.2f MB)\n", argv[3],
               sz.total / 1e6, sz.matrices / 1e6, pf == 3 ? "TQ1_0" : "TQ2_0", sz.other / 1e6, sz.tokenizer / 1e6);
        return 0;
    }
    if (strcmp(argv[1], "probs") == 0 && argc >= 5) {
        int T = argc - 4;
        int *tokens = (int *)mallocCheck((size_t)T * sizeof(int));
        for (int i = 0; i < T; i++) { tokens[i] = parse_int_arg(argv[4 + i]); }
        int rc = write_probs(argv[2], argv[3], tokens, T);
        free(tokens);
        return rc;
    }
    fprintf(stderr, "usage: %s | %s write DIR [-tf TOK] | %s export CKPT OUT.gguf [-pf 2|3] [-ff 32|16] [-tf TOK]"
            " | %s probs CKPT OUT.bin TOKEN...\n", argv[0], argv[0], argv[0], argv[0]);
    return 1;
}
