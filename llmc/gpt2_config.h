/*
 llmc/gpt2_config.h: the model's configuration, its quantization modes and the
 one parameter layout that the CPU trainer, the CUDA trainer, the checkpoint
 files and the PyTorch reference (dev/reference/gpt2_1bit_reference.py) share.

 Layout: all 16 parameter tensors live back to back in one flat fp32 buffer,
 in exactly the order of llm.c's train_gpt2.c, so an llm.c checkpoint loads as
 it is. Gradients and the AdamW moments use the same layout.
*/
#ifndef LLMC_GPT2_CONFIG_H
#define LLMC_GPT2_CONFIG_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include "sampler.h" // defines: random_normal

// ----------------------------------------------------------------------------
// quantization modes (BitNet b1.58 is ternary + int8 + inner norm)

typedef enum { WQ_FP = 0, WQ_TERNARY = 1, WQ_BINARY = 2 } WeightQuant;
typedef enum { AQ_NONE = 0, AQ_INT8 = 1 } ActQuant;
// the backward of dX = dY W_q in BitLinear (-bq): float (the reference), or int8 with dY per token
// to int8 times the trits in exact int32 sums (issue 14; needs -wq ternary or binary)
typedef enum { BQ_FLOAT = 0, BQ_INT8 = 1 } BackwardQuant;
// the inner RMSNorm (-rn): off, before every BitLinear (b1.58), or only before attproj and fcproj,
// the two matrices whose input GPT-2 does not normalise (qkv and fc already read ln1's and ln2's output)
typedef enum { RN_OFF = 0, RN_ALL = 1, RN_PROJ = 2 } InnerNorm;

typedef struct {
    int weight_quant; // WeightQuant: how the four block matrices are used in the forward pass
    int act_quant;    // ActQuant: how the input of those matrices is quantized
    int inner_norm;   // InnerNorm (-rn): where the BitLinear input gets a parameter-free RMSNorm
    int backward_quant; // BackwardQuant: how their backward computes dX (training only; 0 where not given)
} QuantConfig;

__attribute__((unused)) static const char *WEIGHT_QUANT_NAMES[] = {"fp", "ternary", "binary"};
__attribute__((unused)) static const char *ACT_QUANT_NAMES[] = {"none", "int8"};
__attribute__((unused)) static const char *BACKWARD_QUANT_NAMES[] = {"float", "int8"};

// 1 if the BitLinear matrix k (0 qkv, 1 attproj, 2 fc, 3 fcproj) normalises its input
static inline int inner_norm_at(int inner_norm, int k) {
    return inner_norm == RN_ALL || (inner_norm == RN_PROJ && (k == 1 || k == 3));
}

// the modes matrix k is computed in: q with inner_norm 0 or 1 for this matrix
static inline QuantConfig quant_config_at(const QuantConfig *q, int k) {
    QuantConfig r = *q;
    r.inner_norm = inner_norm_at(q->inner_norm, k);
    return r;
}

// the b1.58 recipe, the trainers' default
static inline QuantConfig quant_config_b158(void) {
    QuantConfig q = {WQ_TERNARY, AQ_INT8, 1, BQ_FLOAT};
    return q;
}

// plain GPT-2: computes what llm.c's train_gpt2.c computes
static inline QuantConfig quant_config_fp(void) {
    QuantConfig q = {WQ_FP, AQ_NONE, 0, BQ_FLOAT};
    return q;
}

// parse "fp|ternary|binary"; returns -1 when unknown
static inline int parse_weight_quant(const char *s) {
    for (int i = 0; i < 3; i++) { if (strcmp(s, WEIGHT_QUANT_NAMES[i]) == 0) { return i; } }
    return -1;
}
// parse "none|int8"; returns -1 when unknown
static inline int parse_act_quant(const char *s) {
    for (int i = 0; i < 2; i++) { if (strcmp(s, ACT_QUANT_NAMES[i]) == 0) { return i; } }
    return -1;
}
// parse "float|int8"; returns -1 when unknown
static inline int parse_backward_quant(const char *s) {
    for (int i = 0; i < 2; i++) { if (strcmp(s, BACKWARD_QUANT_NAMES[i]) == 0) { return i; } }
    return -1;
}

// (the backward is named only when it is int8: a model for inference has no backward)
static inline void quant_config_describe(const QuantConfig *q, char *buf, size_t n) {
    static const char *rn[] = {"off", "on", "before attproj and fcproj only"};
    snprintf(buf, n, "weights %s, activations %s, inner RMSNorm %s%s",
             WEIGHT_QUANT_NAMES[q->weight_quant], ACT_QUANT_NAMES[q->act_quant], rn[q->inner_norm],
             q->backward_quant == BQ_INT8 ? ", backward dX int8 (-bq int8)" : "");
}

// ----------------------------------------------------------------------------
// model configuration

typedef struct {
    int max_seq_len;       // maxT, e.g. 1024
    int vocab_size;        // V, e.g. 50257
    int padded_vocab_size; // Vp, V padded up to a multiple of 128 (e.g. 50304) for faster matmuls
    int num_layers;        // L
    int num_heads;         // NH
    int channels;          // C
} GPT2Config;

// A descriptor such as "d12" names a fresh model in the GPT-2 family: depth L,
// width C = 64 * L, NH = C / 64 heads, GPT-2's vocab and context. "d12" is
// GPT-2 124M, "d24" 350M, "d36" 774M, "d48" 1558M. Small ones for quick runs:
// "d2".."d6" follow the same rule ("d4": L=4, C=256).
// Returns 1 and fills cfg when `s` is a descriptor, 0 when it is not one.
static inline int gpt2_config_from_descriptor(GPT2Config *cfg, const char *s) {
    if (s[0] != 'd') { return 0; }
    char *end;
    long depth = strtol(s + 1, &end, 10);
    if (end == s + 1 || *end != '\0' || depth < 1 || depth > 64) { return 0; }
    cfg->num_layers = (int)depth;
    cfg->channels = 64 * (int)depth;
    cfg->num_heads = (int)depth;
    if (depth == 48) { cfg->channels = 1600; cfg->num_heads = 25; } // GPT-2 XL's real shape
    if (depth == 36) { cfg->channels = 1280; cfg->num_heads = 20; } // GPT-2 L
    if (depth == 24) { cfg->channels = 1024; cfg->num_heads = 16; } // GPT-2 M
    cfg->max_seq_len = 1024;
    cfg->vocab_size = 50257;
    cfg->padded_vocab_size = 50304;
    return 1;
}

// ----------------------------------------------------------------------------
// the parameter layout

#define NUM_PARAMETER_TENSORS 16
typedef struct {
    float *wte;      // (Vp, C)  token embeddings, tied with the lm_head; full precision
    float *wpe;      // (maxT, C) position embeddings; full precision
    float *ln1w;     // (L, C)
    float *ln1b;     // (L, C)
    float *qkvw;     // (L, 3C, C)  BitLinear
    float *qkvb;     // (L, 3C)
    float *attprojw; // (L, C, C)   BitLinear
    float *attprojb; // (L, C)
    float *ln2w;     // (L, C)
    float *ln2b;     // (L, C)
    float *fcw;      // (L, 4C, C)  BitLinear
    float *fcb;      // (L, 4C)
    float *fcprojw;  // (L, C, 4C)  BitLinear
    float *fcprojb;  // (L, C)
    float *lnfw;     // (C)
    float *lnfb;     // (C)
} ParameterTensors;

__attribute__((unused)) static const char *PARAMETER_NAMES[NUM_PARAMETER_TENSORS] = {
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"};

// indices of the tensors that get weight decay (the matrices) and of the
// four BitLinear matrices (quantized in the forward pass)
static const int PARAMETER_IS_MATRIX[NUM_PARAMETER_TENSORS] = {1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0};
#define NUM_BITLINEAR 4
static const int BITLINEAR_TENSOR[NUM_BITLINEAR] = {4, 6, 10, 12}; // qkvw, attprojw, fcw, fcprojw
__attribute__((unused)) static const char *BITLINEAR_NAMES[NUM_BITLINEAR] = {"qkv", "attproj", "fc", "fcproj"};

static inline void fill_in_parameter_sizes(size_t *param_sizes, const GPT2Config *config) {
    size_t Vp = config->padded_vocab_size, C = config->channels;
    size_t maxT = config->max_seq_len, L = config->num_layers;
    param_sizes[0] = Vp * C;          // wte
    param_sizes[1] = maxT * C;        // wpe
    param_sizes[2] = L * C;           // ln1w
    param_sizes[3] = L * C;           // ln1b
    param_sizes[4] = L * (3 * C) * C; // qkvw
    param_sizes[5] = L * (3 * C);     // qkvb
    param_sizes[6] = L * C * C;       // attprojw
    param_sizes[7] = L * C;           // attprojb
    param_sizes[8] = L * C;           // ln2w
    param_sizes[9] = L * C;           // ln2b
    param_sizes[10] = L * (4 * C) * C; // fcw
    param_sizes[11] = L * (4 * C);     // fcb
    param_sizes[12] = L * C * (4 * C); // fcprojw
    param_sizes[13] = L * C;           // fcprojb
    param_sizes[14] = C;               // lnfw
    param_sizes[15] = C;               // lnfb
}

// shapes of one layer's BitLinear matrix k (0..3): out_features x in_features
static inline void bitlinear_shape(const GPT2Config *config, int k, int *OC, int *IC) {
    int C = config->channels;
    static const int oc_mult[NUM_BITLINEAR] = {3, 1, 4, 1};
    static const int ic_mult[NUM_BITLINEAR] = {1, 1, 1, 4};
    *OC = oc_mult[k] * C;
    *IC = ic_mult[k] * C;
}

// where parameter tensor i starts in the flat buffer (in floats)
static inline size_t param_offset(const size_t *param_sizes, int i) {
    size_t off = 0;
    for (int j = 0; j < i; j++) { off += param_sizes[j]; }
    return off;
}

// where BitLinear matrix k's latent weights (all L layers, (L,OC,IC)) start in the flat buffer;
// its bias, (L,OC), is the tensor after it
static inline size_t bitlinear_tensor_offset(const size_t *param_sizes, int k) {
    return param_offset(param_sizes, BITLINEAR_TENSOR[k]);
}
static inline size_t bitlinear_bias_offset(const size_t *param_sizes, int k) {
    return param_offset(param_sizes, BITLINEAR_TENSOR[k] + 1);
}

// which BitLinear matrix parameter tensor i is (0..3), or -1 for the tensors in full precision
static inline int bitlinear_kind_of(int i) {
    for (int k = 0; k < NUM_BITLINEAR; k++) { if (BITLINEAR_TENSOR[k] == i) { return k; } }
    return -1;
}

// The per-matrix arrays (scales, the trit statistics, a packed file's scales) hold one entry per
// BitLinear matrix, layer by layer: layer l's matrix k (0 qkv, 1 attproj, 2 fc, 3 fcproj) is here
static inline int bitlinear_scale_index(int l, int k) { return l * NUM_BITLINEAR + k; }

// point the named views into one flat buffer laid out as above
static inline void point_parameters(ParameterTensors *params, const size_t *param_sizes, float *memory) {
    float **ptrs[] = {
        &params->wte, &params->wpe, &params->ln1w, &params->ln1b, &params->qkvw, &params->qkvb,
        &params->attprojw, &params->attprojb, &params->ln2w, &params->ln2b, &params->fcw, &params->fcb,
        &params->fcprojw, &params->fcprojb, &params->lnfw, &params->lnfb};
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        *(ptrs[i]) = memory;
        memory += param_sizes[i];
    }
}

// validate a config read from a file or built from flags; returns NULL when
// fine, else a message saying what is wrong
static inline const char *gpt2_config_check(const GPT2Config *c) {
    if (c->max_seq_len < 1 || c->vocab_size < 1 || c->num_layers < 1 || c->num_heads < 1 || c->channels < 1) {
        return "a dimension is zero or negative";
    }
    if (c->padded_vocab_size < c->vocab_size) { return "padded vocab size is below the vocab size"; }
    if (c->channels % c->num_heads != 0) { return "channels are not divisible by the number of heads"; }
    if ((long long)c->padded_vocab_size * c->channels > (1LL << 31)) { return "embedding is too large"; }
    return NULL;
}

// GPT-2's init of a fresh model, into params (the flat buffer, sizes from
// fill_in_parameter_sizes): N(0, 0.02) matrices, residual projections scaled by
// 1/sqrt(2L), LayerNorm weights 1, biases 0, padded vocab rows 0. The same seed
// gives the same model in both trainers.
static inline void gpt2_init_params(float *params, const size_t *param_sizes, const GPT2Config *config,
                                    uint64_t seed) {
    uint64_t rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    int L = config->num_layers;
    float *p = params;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = param_sizes[i];
        memset(p, 0, n * sizeof(float));
        if (PARAMETER_IS_MATRIX[i]) {
            float std = (i == 6 || i == 12) ? 0.02f / sqrtf(2.0f * L) : 0.02f; // attprojw, fcprojw
            size_t real = i == 0 ? (size_t)config->vocab_size * config->channels : n; // wte's padded rows stay 0
            for (size_t j = 0; j < real; j++) { p[j] = std * random_normal(&rng); }
        } else if (i == 2 || i == 8 || i == 14) { // ln1w, ln2w, lnfw
            for (size_t j = 0; j < n; j++) { p[j] = 1.0f; }
        }
        p += n;
    }
}

#endif // LLMC_GPT2_CONFIG_H
