/*
 run_gpt2_1bit.c: inference for the models train_gpt2_1bit trains. It exports
 a training checkpoint to a packed model file (llmc/packed.h: 2 or 1.6 bits
 per BitLinear weight) and generates text from a prompt, token by token with a
 KV cache, the BitLinear layers running as int8 activations x packed trits
 with exact int32 accumulation (llmc/ternary_kernels.h).

 Build:  make run_gpt2_1bit
 Export: ./run_gpt2_1bit -e out/model_00000300.bin -x out/model.packed [-pf 2|3] [-ff 32|16]
 Generate from a checkpoint or a packed file:
         ./run_gpt2_1bit -e out/model.packed -p "ROMEO:" -n 2 -g 64
 Decode speed, packed int8 path vs the fp32 path of the same model, same prompt:
         ./run_gpt2_1bit -e out/model.packed -bench 1
 Every flag with its default: ./run_gpt2_1bit -h

 One model code: the layers (layernorm, attention math, GELU, the lm_head
 matmul) and the loaders are train_gpt2_1bit.c's, included below; this file
 adds only what decoding one token at a time needs (the KV cache) and the
 integer BitLinear. tests/test_run.c checks that its next-token distribution
 equals the training forward's.
*/
#define TESTING
#include "train_gpt2_1bit.c"  // defines: GPT2, gpt2_build_from_checkpoint, layernorm_forward, matmul_forward, ...
#include "llmc/ternary_kernels.h" // defines: matmul_i8_t2, pack2_rows, pack2_row_bytes
#include "llmc/packed.h"      // defines: packed_write, packed_read, PackedModel
#include "llmc/bpe.h"         // defines: BPEEncoder, bpe_init, bpe_encode

// ----------------------------------------------------------------------------
// the model for decoding

typedef struct {
    GPT2 gpt;                      // config, modes, params; BitLinear tensors hold latent W (checkpoint) or W_q (packed)
    int use_int8;                  // 1: BitLinear as int8 x packed trits; 0: fp32 matmul on W_q
    uint16_t *wte_half;            // (Vp, C) the tied head in fp16, when the packed file stores it so (else NULL)
    float *key_cache;              // (L, maxT, C)
    float *value_cache;            // (L, maxT, C)
    // one token's activations
    float *x, *ln, *mean_rstd, *qkv, *att, *atty, *proj, *fch, *xn, *logits;
} Runner;

// Load a training checkpoint (quantized here, as the training forward does) or
// a packed file (its trits and scales as stored). Returns 0 for a checkpoint,
// else the packed file's float format (32 or 16).
static int runner_load_model(GPT2 *gpt, const char *path) {
    FILE *fp = fopenCheck(path, "rb");
    int magic = 0;
    if (fread(&magic, sizeof(int), 1, fp) != 1) { magic = 0; }
    fclose(fp);
    if (magic != PACKED_MAGIC) {
        gpt2_build_from_checkpoint(gpt, path, quant_config_b158(), NULL);
        gpt2_quantize_weights(gpt);
        return 0;
    }
    PackedModel pm;
    packed_read(&pm, path);
    gpt->config = pm.config;
    gpt->quant = pm.quant;
    gpt2_allocate(gpt);
    memcpy(gpt->params_memory, pm.params_memory, gpt->num_parameters * sizeof(float));
    // the quantized weights are the stored ones: fill wq, trits and scales
    // directly and mark them fresh, so nothing recomputes a scale from W_q
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(&gpt->config, k, &OC, &IC);
        size_t n = (size_t)gpt->config.num_layers * OC * IC;
        const float *src = gpt->params_memory;
        for (int i = 0; i < BITLINEAR_TENSOR[k]; i++) { src += gpt->param_sizes[i]; }
        memcpy(gpt->wq_memory + gpt->wq_offset[k], src, n * sizeof(float));
        int rows = gpt->config.num_layers * OC;
        if (pm.trit_format == 2) { unpack2_rows(gpt->trits + gpt->wq_offset[k], pm.packed[k], rows, IC); }
        else { unpack3_rows(gpt->trits + gpt->wq_offset[k], pm.packed[k], rows, IC); }
        pack2_rows(gpt->w2_memory + gpt->w2_offset[k], gpt->trits + gpt->wq_offset[k], rows, IC); // compute form
    }
    memcpy(gpt->scales, pm.scales, sizeof(float) * 4 * gpt->config.num_layers);
    gpt->wq_stale = 0;
    int float_format = pm.float_format;
    packed_free(&pm);
    return float_format;
}

static void runner_init(Runner *r, const char *path, int use_int8) {
    memset(r, 0, sizeof(*r));
    int float_format = runner_load_model(&r->gpt, path);
    GPT2Config *c = &r->gpt.config;
    // A file with fp16 tensors: keep the tied head in fp16 too (its values are
    // fp16 already, so nothing changes but the bytes read per token: the head
    // is the largest matrix of the model, 50304 x 768 for GPT-2)
    if (use_int8 && float_format == 16) {
        size_t n = (size_t)c->padded_vocab_size * c->channels;
        r->wte_half = (uint16_t *)mallocCheck(n * sizeof(uint16_t));
        for (size_t i = 0; i < n; i++) { r->wte_half[i] = float_to_half(r->gpt.params.wte[i]); }
    }
    int C = c->channels, L = c->num_layers;
    // int8 kernels need int8 activations and quantized weights; otherwise fp32
    r->use_int8 = use_int8 && r->gpt.quant.act_quant == AQ_INT8 && r->gpt.quant.weight_quant != WQ_FP;
    r->gpt.int8_forward = r->use_int8;
    gpt2_allocate_activations(&r->gpt, 1, 1); // for the integer path's scratch: one token at a time
    size_t kv = (size_t)L * c->max_seq_len * C;
    r->key_cache = (float *)mallocCheck(kv * sizeof(float));
    r->value_cache = (float *)mallocCheck(kv * sizeof(float));
    r->x = (float *)mallocCheck(C * sizeof(float));
    r->ln = (float *)mallocCheck(C * sizeof(float));
    r->mean_rstd = (float *)mallocCheck(2 * sizeof(float));
    r->qkv = (float *)mallocCheck(3 * C * sizeof(float));
    r->att = (float *)mallocCheck((size_t)c->max_seq_len * sizeof(float));
    r->atty = (float *)mallocCheck(C * sizeof(float));
    r->proj = (float *)mallocCheck(C * sizeof(float));
    r->fch = (float *)mallocCheck(4 * C * 2 * sizeof(float));
    r->xn = (float *)mallocCheck(4 * C * sizeof(float));
    r->logits = (float *)mallocCheck((size_t)c->padded_vocab_size * sizeof(float));
}

// BitLinear k of layer l for one token: out (OC) = BitLinear(inp (IC)), by
// the training forward's own function (integer or fp32 path, as r->use_int8)
static void runner_bitlinear(Runner *r, float *out, const float *inp, int k, int l) {
    GPT2 *g = &r->gpt;
    int OC, IC;
    bitlinear_shape(&g->config, k, &OC, &IC);
    const float *bias = g->params_memory; // the tensor after the weight is its bias
    for (int i = 0; i <= BITLINEAR_TENSOR[k]; i++) { bias += g->param_sizes[i]; }
    bias += (size_t)l * OC;
    float rstd;
    gpt2_bitlinear_forward(g, k, l, out, r->xn, &rstd, inp, bias, 1);
}

// logits (Vp) = x (C) @ wte^T with wte stored in fp16: one dot product per row,
// the halves widened to floats 8 at a time (F16C) where the CPU has it
static void head_forward_half(float *logits, const float *x, const uint16_t *wte_half, int Vp, int C) {
    #pragma omp parallel for
    for (int v = 0; v < Vp; v++) {
        const uint16_t *w = wte_half + (size_t)v * C;
        float sum = 0.0f;
        int i = 0;
#if defined(__F16C__) && defined(__AVX2__)
        __m256 acc = _mm256_setzero_ps();
        for (; i + 8 <= C; i += 8) {
            __m256 wf = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i)));
            acc = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x + i), acc);
        }
        float lanes[8];
        _mm256_storeu_ps(lanes, acc);
        for (int j = 0; j < 8; j++) { sum += lanes[j]; }
#endif
        for (; i < C; i++) { sum += half_to_float(w[i]) * x[i]; }
        logits[v] = sum;
    }
}

// the logits (Vp) of token `token` at position `pos`, given the cache of 0..pos-1
static float *runner_forward(Runner *r, int token, int pos) {
    GPT2 *g = &r->gpt;
    GPT2Config *c = &g->config;
    int C = c->channels, NH = c->num_heads, hs = C / NH, maxT = c->max_seq_len;
    ParameterTensors p = g->params;
    for (int i = 0; i < C; i++) { r->x[i] = p.wte[(size_t)token * C + i] + p.wpe[(size_t)pos * C + i]; }
    for (int l = 0; l < c->num_layers; l++) {
        layernorm_forward(r->ln, r->mean_rstd, r->mean_rstd + 1, r->x, p.ln1w + l * C, p.ln1b + l * C, 1, C);
        runner_bitlinear(r, r->qkv, r->ln, 0, l);
        float *kc = r->key_cache + ((size_t)l * maxT + pos) * C, *vc = r->value_cache + ((size_t)l * maxT + pos) * C;
        memcpy(kc, r->qkv + C, C * sizeof(float));
        memcpy(vc, r->qkv + 2 * C, C * sizeof(float));
        // causal attention of this token over positions 0..pos, head by head
        float scale = 1.0f / sqrtf(hs);
        for (int h = 0; h < NH; h++) {
            const float *q = r->qkv + h * hs;
            float maxv = -1e30f;
            for (int t = 0; t <= pos; t++) {
                const float *kt = r->key_cache + ((size_t)l * maxT + t) * C + h * hs;
                float v = 0.0f;
                for (int i = 0; i < hs; i++) { v += q[i] * kt[i]; }
                r->att[t] = v * scale;
                maxv = r->att[t] > maxv ? r->att[t] : maxv;
            }
            float sum = 0.0f;
            for (int t = 0; t <= pos; t++) { r->att[t] = expf(r->att[t] - maxv); sum += r->att[t]; }
            float *y = r->atty + h * hs;
            for (int i = 0; i < hs; i++) { y[i] = 0.0f; }
            for (int t = 0; t <= pos; t++) {
                const float *vt = r->value_cache + ((size_t)l * maxT + t) * C + h * hs;
                float a = r->att[t] / sum;
                for (int i = 0; i < hs; i++) { y[i] += a * vt[i]; }
            }
        }
        runner_bitlinear(r, r->proj, r->atty, 1, l);
        for (int i = 0; i < C; i++) { r->x[i] += r->proj[i]; }
        layernorm_forward(r->ln, r->mean_rstd, r->mean_rstd + 1, r->x, p.ln2w + l * C, p.ln2b + l * C, 1, C);
        runner_bitlinear(r, r->fch, r->ln, 2, l);
        gelu_forward(r->fch + 4 * C, r->fch, (size_t)4 * C);
        runner_bitlinear(r, r->proj, r->fch + 4 * C, 3, l);
        for (int i = 0; i < C; i++) { r->x[i] += r->proj[i]; }
    }
    layernorm_forward(r->ln, r->mean_rstd, r->mean_rstd + 1, r->x, p.lnfw, p.lnfb, 1, C);
    if (r->wte_half != NULL) { head_forward_half(r->logits, r->ln, r->wte_half, c->padded_vocab_size, C); }
    else { matmul_forward(r->logits, r->ln, p.wte, NULL, 1, C, c->padded_vocab_size); } // tied head, fp32
    return r->logits;
}

static void runner_free(Runner *r) {
    free(r->wte_half);
    free(r->key_cache); free(r->value_cache); free(r->x); free(r->ln); free(r->mean_rstd); free(r->qkv);
    free(r->att); free(r->atty); free(r->proj); free(r->fch); free(r->xn);
    free(r->logits);
    gpt2_free(&r->gpt);
}

// ----------------------------------------------------------------------------
// export

static void export_packed(const char *model_path, const char *out_path, int trit_format, int float_format) {
    GPT2 g;
    if (runner_load_model(&g, model_path)) {
        fprintf(stderr, "error: -e '%s' is already a packed model; export takes a training checkpoint\n", model_path);
        exit(EXIT_FAILURE);
    }
    if (g.quant.weight_quant == WQ_FP) {
        fprintf(stderr, "error: -e '%s' was trained with -wq fp: there are no trits to pack\n"
                "---> HINT: export a model trained with -wq ternary or -wq binary\n", model_path);
        exit(EXIT_FAILURE);
    }
    const int8_t *trits[NUM_BITLINEAR];
    for (int k = 0; k < NUM_BITLINEAR; k++) { trits[k] = g.trits + g.wq_offset[k]; }
    PackedSizes sz = packed_write(out_path, &g.config, &g.quant, trit_format, float_format, trits, g.scales,
                                  g.params_memory);
    double mb = 1e6;
    printf("wrote %s: %zu BitLinear weights at %s bits/weight\n", out_path, g.num_bitlinear_weights,
           trit_format == 2 ? "2" : "1.6");
    printf("  BitLinear trits     %10.2f MB  (fp32: %.2f MB)\n", sz.bitlinear / mb, g.num_bitlinear_weights * 4 / mb);
    printf("  scales              %10.4f MB\n", sz.scales / mb);
    printf("  other tensors fp%d  %10.2f MB  (embeddings, norms, biases)\n", float_format, sz.other / mb);
    printf("  total               %10.2f MB  (training checkpoint: %.2f MB)\n",
           (sz.header + sz.scales + sz.bitlinear + sz.other) / mb, (1024 + g.num_parameters * 4) / mb);
    gpt2_free(&g);
}

// ----------------------------------------------------------------------------
// generation

#ifndef RUN_TESTING
static int encode_prompt(const char *prompt, const char *tokenizer_path, int *out, int max_out) {
    Tokenizer tok;
    tokenizer_init(&tok, tokenizer_path);
    if (!tok.init_ok) {
        fprintf(stderr, "error: a prompt needs the tokenizer file (-tf '%s')\n", tokenizer_path);
        exit(EXIT_FAILURE);
    }
    BPEEncoder enc;
    bpe_init(&enc, &tok);
    int n = bpe_encode(&enc, prompt, strlen(prompt), out, max_out);
    bpe_free(&enc);
    tokenizer_free(&tok);
    return n;
}


static void usage(const char *prog) {
    printf("usage: %s -e MODEL [flags]   (MODEL: a training checkpoint or a packed model)\n\n", prog);
    printf("  -e   model file                                              (required)\n");
    printf("  -x   export MODEL (a training checkpoint) to this packed file and exit\n");
    printf("  -pf  packed trit format: 2 (2 bits/weight) or 3 (1.6 bits)    (default 2)\n");
    printf("  -ff  float format of the other tensors when exporting: 32|16 (default 32)\n");
    printf("  -p   prompt text                                             (default: start from <|endoftext|>)\n");
    printf("  -n   number of samples                                       (default 1)\n");
    printf("  -g   new tokens per sample                                   (default 64)\n");
    printf("  -st  temperature (0 = argmax)                                (default 1.0)\n");
    printf("  -tk  top-k (0 = all)                                         (default 40)\n");
    printf("  -sd  random seed                                             (default 1337)\n");
    printf("  -tf  tokenizer file                                          (default data/gpt2_tokenizer.bin)\n");
    printf("  -k   BitLinear kernel: int8 (packed trits) | float (fp32)    (default int8)\n");
    printf("  -bench 1: time decoding with the int8 and the fp32 kernels, same prompt and length\n");
}

static int parse_int(const char *flag, const char *v) {
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end != '\0') { fprintf(stderr, "error: flag %s expects an integer, got '%s'\n", flag, v); exit(EXIT_FAILURE); }
    return (int)x;
}

static float parse_float(const char *flag, const char *v) {
    char *end;
    float x = strtof(v, &end);
    if (end == v || *end != '\0') { fprintf(stderr, "error: flag %s expects a number, got '%s'\n", flag, v); exit(EXIT_FAILURE); }
    return x;
}

// decode n_new tokens after the prompt; returns the seconds spent in runner_forward
static double generate(Runner *r, const int *prompt, int n_prompt, int n_new, float temperature, int top_k,
                       uint64_t *rng, const Tokenizer *tok, int print) {
    GPT2Config *c = &r->gpt.config;
    int *scratch = (int *)mallocCheck((size_t)c->vocab_size * sizeof(int));
    int token = prompt[0];
    double t = 0.0;
    for (int pos = 0; pos < n_prompt + n_new - 1 && pos < c->max_seq_len; pos++) {
        double t0 = now_seconds();
        float *logits = runner_forward(r, token, pos);
        t += now_seconds() - t0;
        if (pos + 1 < n_prompt) { token = prompt[pos + 1]; continue; } // still reading the prompt
        token = sample_logits(logits, c->vocab_size, temperature, top_k, random_f32(rng), scratch);
        if (print) { tokenizer_print(tok, token, stdout); fflush(stdout); }
    }
    free(scratch);
    return t;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *export_path = NULL, *prompt = NULL, *tokenizer_path = "data/gpt2_tokenizer.bin";
    const char *kernel = "int8";
    int trit_format = 2, float_format = 32, n_samples = 1, n_new = 64, top_k = 40, seed = 1337, bench = 0;
    float temperature = 1.0f;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "-h") == 0) { usage(argv[0]); return 0; }
        if (i + 1 >= argc) { fprintf(stderr, "error: flag %s needs a value (or is unknown; -h lists them)\n", f); return 1; }
        const char *v = argv[++i];
        if (strcmp(f, "-e") == 0) { model_path = v; }
        else if (strcmp(f, "-x") == 0) { export_path = v; }
        else if (strcmp(f, "-pf") == 0) { trit_format = parse_int(f, v); }
        else if (strcmp(f, "-ff") == 0) { float_format = parse_int(f, v); }
        else if (strcmp(f, "-p") == 0) { prompt = v; }
        else if (strcmp(f, "-n") == 0) { n_samples = parse_int(f, v); }
        else if (strcmp(f, "-g") == 0) { n_new = parse_int(f, v); }
        else if (strcmp(f, "-st") == 0) { temperature = parse_float(f, v); }
        else if (strcmp(f, "-tk") == 0) { top_k = parse_int(f, v); }
        else if (strcmp(f, "-sd") == 0) { seed = parse_int(f, v); }
        else if (strcmp(f, "-tf") == 0) { tokenizer_path = v; }
        else if (strcmp(f, "-k") == 0) { kernel = v; }
        else if (strcmp(f, "-bench") == 0) { bench = parse_int(f, v); }
        else { fprintf(stderr, "error: unknown flag '%s'\n---> HINT: %s -h lists every flag\n", f, argv[0]); return 1; }
    }
    if (model_path == NULL) { fprintf(stderr, "error: -e MODEL is required\n---> HINT: %s -h\n", argv[0]); return 1; }
    if (trit_format != 2 && trit_format != 3) { fprintf(stderr, "error: flag -pf must be 2 or 3\n"); return 1; }
    if (float_format != 32 && float_format != 16) { fprintf(stderr, "error: flag -ff must be 32 or 16\n"); return 1; }
    if (strcmp(kernel, "int8") != 0 && strcmp(kernel, "float") != 0) {
        fprintf(stderr, "error: flag -k must be int8 or float\n"); return 1;
    }
    if (n_samples < 1 || n_new < 1 || temperature < 0.0f || top_k < 0) {
        fprintf(stderr, "error: -n and -g must be at least 1, -st and -tk at least 0\n"); return 1;
    }
    if (export_path != NULL) { export_packed(model_path, export_path, trit_format, float_format); return 0; }

    Runner r;
    runner_init(&r, model_path, strcmp(kernel, "int8") == 0);
    GPT2Config *c = &r.gpt.config;
    char mode[256];
    quant_config_describe(&r.gpt.quant, mode, sizeof(mode));
    fprintf(stderr, "model: L=%d C=%d V=%d maxT=%d; %s; BitLinear kernel: %s (%s)\n", c->num_layers, c->channels,
            c->vocab_size, c->max_seq_len, mode, r.use_int8 ? "int8 x packed trits" : "fp32",
            r.use_int8 ? ternary_kernels_backend() : "matmul_forward");
    // the prompt: <|endoftext|> then its tokens
    size_t cap = (size_t)c->max_seq_len + (prompt != NULL ? strlen(prompt) : 0) + 1; // a prompt of n bytes is <= n tokens
    int *tokens = (int *)mallocCheck(cap * sizeof(int));
    Tokenizer tok;
    tokenizer_init(&tok, tokenizer_path);
    tokens[0] = tok.init_ok && tok.eot_token < c->vocab_size ? tok.eot_token : 0; // 0 for models with a small vocab
    int n_prompt = 1;
    if (prompt != NULL) {
        if (prompt[0] == '\0') {
            fprintf(stderr, "error: -p is empty\n---> HINT: leave -p out to start from <|endoftext|>\n");
            return 1;
        }
        int n = encode_prompt(prompt, tokenizer_path, tokens + 1, (int)(cap - 1));
        if (n + 1 >= c->max_seq_len) {
            fprintf(stderr, "error: -p is %d tokens long; the model's context is %d tokens\n"
                    "---> HINT: shorten the prompt\n", n, c->max_seq_len);
            return 1;
        }
        for (int i = 1; i <= n; i++) {
            if (tokens[i] >= c->vocab_size) {
                fprintf(stderr, "error: -p encodes to token id %d, outside the model's vocab (V = %d)\n"
                        "---> HINT: this model was not trained with the GPT-2 tokenizer (-tf)\n", tokens[i], c->vocab_size);
                return 1;
            }
        }
        n_prompt += n;
    }
    if (n_prompt + n_new > c->max_seq_len) {
        n_new = c->max_seq_len - n_prompt;
        fprintf(stderr, "note: -g lowered to %d to fit the context of %d tokens\n", n_new, c->max_seq_len);
    }
    uint64_t rng = (uint64_t)seed * 0x2545F4914F6CDD1DULL + 11;
    if (bench) {
        // the same model, prompt and length through both kernels, alternating, median of 3
        Runner rf;
        runner_init(&rf, model_path, 0);
        double t[2][3];
        for (int rep = 0; rep < 3; rep++) {
            for (int m = 0; m < 2; m++) {
                uint64_t rr = rng;
                t[m][rep] = generate(m == 0 ? &r : &rf, tokens, n_prompt, n_new, temperature, top_k, &rr, &tok, 0);
            }
        }
        int ntok = n_prompt + n_new - 1;
        double med[2];
        for (int m = 0; m < 2; m++) { med[m] = median(t[m], 3); }
        printf("decode benchmark: %d tokens (prompt %d + %d new), median of 3\n", ntok, n_prompt, n_new);
        printf("  %-30s %8.1f tok/s\n", r.use_int8 ? "int8 x packed trits" : "fp32 (model has no int8 path)",
               ntok / med[0]);
        printf("  %-30s %8.1f tok/s\n", "fp32 W_q (matmul_forward)", ntok / med[1]);
        printf("  speed-up: %.2fx\n", med[1] / med[0]);
        runner_free(&rf);
    } else {
        for (int s = 0; s < n_samples; s++) {
            printf("--- sample %d\n", s + 1);
            if (prompt != NULL) { printf("%s", prompt); }
            double secs = generate(&r, tokens, n_prompt, n_new, temperature, top_k, &rng, &tok, 1);
            printf("\n");
            fprintf(stderr, "(%.1f tok/s)\n", (n_prompt + n_new - 1) / secs);
        }
    }
    free(tokens);
    tokenizer_free(&tok);
    runner_free(&r);
    return 0;
}
#endif
