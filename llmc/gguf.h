/*
 llmc/gguf.h: a trained model as a GGUF file, the format of llama.cpp and of what is built on it
 (ollama, LM Studio, llama-cpp-python): llama.cpp's `gpt2` architecture, its tensor names and
 metadata, GPT-2's tokenizer, and the four BitLinear matrices of every block in ggml's ternary types
     TQ2_0  2.0625 bits/weight: 256 trits at 2 bits + an fp16 scale       (block_tq2_0, 66 bytes)
     TQ1_0  1.6875 bits/weight: 256 trits, 5 a byte in base 3 + fp16 scale (block_tq1_0, 54 bytes)
 with our per-tensor scale (gamma) as every block's fp16 scale, so a weight reads back as
 trit * fp16(gamma). Embeddings go in F32 or F16; 1-D tensors (norms, biases) stay F32, as
 llama.cpp's own converter keeps them.

 What llama.cpp computes for the file equals our model only where its gpt2 graph has our ops:
   - it has no parameter-free RMSNorm inside BitLinear: a model trained with one (-rn 1, b1.58
     as published, or -rn 2) is refused with a message, never exported to compute another model;
   - it quantizes the input of a TQ matmul to int8 in blocks of 256 values (q8_K, one scale a
     block) where we use one scale a token (absmax over the C or 4C inputs): the same kind of
     rounding, a little finer, so the two agree up to that rounding, not bit for bit.
 Models trained with -rn 0 (the default; ternary or binary weights, int8 or fp activations) are exported;
 fp models (-wq fp: plain GPT-2) go out with F32/F16 matrices, which llama.cpp computes as we do.

 GGUF v3 (ggml's docs/gguf.md), little-endian:
   uint32 "GGUF" magic, uint32 version 3, uint64 tensor count, uint64 key/value count
   key/values: string key, uint32 value type, value        (string: uint64 length, bytes;
               array: uint32 element type, uint64 count, elements)
   tensor infos: string name, uint32 n_dims, uint64 ne[n_dims] (ne[0] = the row length),
               uint32 ggml type, uint64 offset of the data from the data section's start
   zero padding to 32 bytes, then the data section, every tensor 32-byte aligned
 Tensors, ggml's ne = {row length, rows}, so our (OC, IC) matrix is ne = {IC, OC}:
   token_embd.weight    {C, V}    wte's first V rows (the padding rows go); the gpt2 graph
                                  uses it as the output head too, as there is no output.weight
   position_embd.weight {C, maxT} wpe
   blk.N.attn_norm.weight/bias {C}                        ln1w, ln1b
   blk.N.attn_qkv.weight {C, 3C} TQ, attn_qkv.bias {3C}   qkvw, qkvb
   blk.N.attn_output.weight {C, C} TQ, .bias {C}          attprojw, attprojb
   blk.N.ffn_norm.weight/bias {C}                         ln2w, ln2b
   blk.N.ffn_up.weight {C, 4C} TQ, .bias {4C}             fcw, fcb
   blk.N.ffn_down.weight {4C, C} TQ, .bias {C}            fcprojw, fcprojb
   output_norm.weight/bias {C}                            lnfw, lnfb
 A TQ block covers 256 consecutive weights of a row, so the rows (C and 4C long) must be a
 multiple of 256: C = 256, 512, 768 (GPT-2 124M), 1024, 1280; not d2's 128, nor 1600 (GPT-2 XL).

 Tokenizer (tokenizer.ggml.*), from our tokenizer file (llmc/tokenizer.h) alone:
   tokens     the V tokens as GPT-2's byte-to-unicode strings ("Ġthe": a space is U+0120)
   token_type 1 (normal), 3 (control) for <|endoftext|>;  bos = eos = <|endoftext|>
   merges     "Ġ t" lines. GPT-2 made token 256 + m with merge m, so byte-level BPE on a token's
              bytes, using only the tokens below it, stops at the two parts of its merge: the
              same 50000 lines as GPT-2's vocab.bpe (tests/test_gguf.py compares them).
 A model with V below the tokenizer's (small test models) gets its first V tokens and the merges
 that make them.

 Usage (run_gpt2_1bit -e CKPT -x model.gguf [-pf 3] [-ff 16]):
   const char *why = gguf_export_refusal(&cfg, &quant);  // NULL, or why the file cannot be made
   gguf_export(path, &cfg, &quant, trits, scales, params, tokenizer_path, tq1, float_format, name);
 Tests: tests/test_gguf.c (packing, writing, refusals) and tests/test_gguf.py (the files read back
 by the gguf package from PyPI: types, shapes, metadata, every dequantized BitLinear weight).
*/
#ifndef LLMC_GGUF_H
#define LLMC_GGUF_H

#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <assert.h>      // static_assert
#include "utils.h"       // defines: fopenCheck, fwriteCheck, mallocCheck
#include "gpt2_config.h" // defines: GPT2Config, QuantConfig, fill_in_parameter_sizes, bitlinear_shape, bitlinear_scale_index
#include "checkpoint.h"  // defines: SafeFile, safe_open, safe_close
#include "packed.h"      // defines: float_to_half, half_to_float
#include "tokenizer.h"   // defines: Tokenizer, tokenizer_init
#include "bpe.h"         // defines: BPEEncoder, bpe_init, bpe_lookup

// ----------------------------------------------------------------------------
// ggml's ternary block types (ggml-common.h); code = trit + 1 in {0, 1, 2}

#define QK_K 256 // weights per block, along a row

// TQ2_0, 2.0625 bits per weight (66 bytes per 256): 2-bit codes. The block is two halves of 128
// weights; byte m (0..31) of half h holds weights 128h + 32n + m in bits [2n+1:2n], n = 0..3, so
// one bit plane of 32 consecutive bytes is 32 consecutive weights.
typedef struct {
    uint8_t qs[QK_K / 4]; // 64 bytes of codes
    uint16_t d;           // the scale, IEEE fp16
} block_tq2_0;
static_assert(sizeof(block_tq2_0) == 66, "block_tq2_0 must be 66 bytes: 2.0625 bits per weight");

// TQ1_0, 1.6875 bits per weight (54 bytes per 256): 5 codes a byte in base 3 (3^5 = 243 <= 256).
//   qs[0..32):  byte m holds weights m + 32n,        n = 0..4  (weights 0..159)
//   qs[32..48): byte 32 + m holds 160 + m + 16n,     n = 0..4  (weights 160..239)
//   qh[0..4):   byte j holds 240 + j + 4n,           n = 0..3  (weights 240..255), a 5th digit 0
// In a byte the first weight is the most significant digit: v = sum_n code_n 3^(4-n), stored as
// ceil(v * 256 / 243), a fraction of 243 in 8 fixed-point bits, so that digit n comes out as
// ((uint8_t)(byte * 3^n) * 3) >> 8: a multiply and a shift, no division.
typedef struct {
    uint8_t qs[(QK_K - 4 * QK_K / 64) / 5]; // 48 bytes, 5 codes each
    uint8_t qh[QK_K / 64];                  // 4 bytes, 4 codes each
    uint16_t d;                             // the scale, IEEE fp16
} block_tq1_0;
static_assert(sizeof(block_tq1_0) == 54, "block_tq1_0 must be 54 bytes: 1.6875 bits per weight");

// blocks (n / QK_K) <- trits (n) in {-1,0,1}, each block with scale d (fp16 bits)
static inline void tq2_0_pack_row(block_tq2_0 *dst, const int8_t *trits, int n, uint16_t d) {
    assert(n % QK_K == 0); // a block never spans two rows
    for (int b = 0; b < n / QK_K; b++) {
        const int8_t *t = trits + (size_t)b * QK_K;
        for (int h = 0; h < 2; h++) {
            for (int m = 0; m < 32; m++) {
                uint8_t q = 0;
                for (int k = 0; k < 4; k++) { q |= (uint8_t)((t[128 * h + 32 * k + m] + 1) << (2 * k)); }
                dst[b].qs[32 * h + m] = q;
            }
        }
        dst[b].d = d;
    }
}

// trits (n) <- blocks (n / QK_K)
static inline void tq2_0_unpack_row(int8_t *trits, const block_tq2_0 *src, int n) {
    for (int b = 0; b < n / QK_K; b++) {
        int8_t *t = trits + (size_t)b * QK_K;
        for (int h = 0; h < 2; h++) {
            for (int m = 0; m < 32; m++) {
                uint8_t q = src[b].qs[32 * h + m];
                for (int k = 0; k < 4; k++) { t[128 * h + 32 * k + m] = (int8_t)(((q >> (2 * k)) & 3) - 1); }
            }
        }
    }
}

// one TQ1_0 byte from `digits` codes t[0], t[stride], ... (first = most significant), padded to 5
static inline uint8_t tq1_0_byte(const int8_t *t, int stride, int digits) {
    uint32_t v = 0;
    for (int k = 0; k < 5; k++) { v = 3 * v + (k < digits ? (uint32_t)(t[k * stride] + 1) : 0u); }
    return (uint8_t)((v * 256 + 242) / 243); // ceil(v * 256 / 243) <= 255 for v <= 242
}

// code n (0 = most significant) of a TQ1_0 byte: the fraction times 3^n, the integer part of x3
static inline int8_t tq1_0_digit(uint8_t byte, int n) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    uint8_t q = (uint8_t)(byte * pow3[n]); // mod 256: drops the digits above n
    return (int8_t)((((uint16_t)q * 3) >> 8) - 1);
}

static inline void tq1_0_pack_row(block_tq1_0 *dst, const int8_t *trits, int n, uint16_t d) {
    assert(n % QK_K == 0);
    for (int b = 0; b < n / QK_K; b++) {
        const int8_t *t = trits + (size_t)b * QK_K;
        for (int m = 0; m < 32; m++) { dst[b].qs[m] = tq1_0_byte(t + m, 32, 5); }
        for (int m = 0; m < 16; m++) { dst[b].qs[32 + m] = tq1_0_byte(t + 160 + m, 16, 5); }
        for (int j = 0; j < 4; j++) { dst[b].qh[j] = tq1_0_byte(t + 240 + j, 4, 4); }
        dst[b].d = d;
    }
}

static inline void tq1_0_unpack_row(int8_t *trits, const block_tq1_0 *src, int n) {
    for (int b = 0; b < n / QK_K; b++) {
        int8_t *t = trits + (size_t)b * QK_K;
        for (int k = 0; k < 5; k++) {
            for (int m = 0; m < 32; m++) { t[m + 32 * k] = tq1_0_digit(src[b].qs[m], k); }
            for (int m = 0; m < 16; m++) { t[160 + m + 16 * k] = tq1_0_digit(src[b].qs[32 + m], k); }
            if (k < 4) { for (int j = 0; j < 4; j++) { t[240 + j + 4 * k] = tq1_0_digit(src[b].qh[j], k); } }
        }
    }
}

// ----------------------------------------------------------------------------
// GGUF v3: constants (ggml.h, gguf.h, llama.h)

#define GGUF_MAGIC 0x46554747u // "GGUF" read as a little-endian uint32
#define GGUF_VERSION 3
#define GGUF_ALIGNMENT 32
enum { GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
       GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9 };
enum { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_TQ1_0 = 34, GGML_TYPE_TQ2_0 = 35 };
// general.file_type: what most tensors are (llama_ftype)
enum { LLAMA_FTYPE_ALL_F32 = 0, LLAMA_FTYPE_MOSTLY_F16 = 1, LLAMA_FTYPE_MOSTLY_TQ1_0 = 36,
       LLAMA_FTYPE_MOSTLY_TQ2_0 = 37 };
enum { LLAMA_TOKEN_TYPE_NORMAL = 1, LLAMA_TOKEN_TYPE_CONTROL = 3 };
#define GPT2_LAYERNORM_EPS 1e-5f // layernorm_forward's eps (train_gpt2_1bit.c), as in GPT-2

// ----------------------------------------------------------------------------
// the key/value section, built in memory: its size and count come before it in the file

typedef struct {
    uint8_t *data;
    size_t len, cap;
    uint64_t count; // key/values written
} GGUFBuf;

static inline void gguf_put(GGUFBuf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) { cap *= 2; }
        uint8_t *grown = (uint8_t *)mallocCheck(cap);
        if (b->len) { memcpy(grown, b->data, b->len); }
        free(b->data); // a copy, not realloc: mallocCheck names the failing size
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
static inline void gguf_put_u32(GGUFBuf *b, uint32_t v) { gguf_put(b, &v, 4); }
static inline void gguf_put_u64(GGUFBuf *b, uint64_t v) { gguf_put(b, &v, 8); }
static inline void gguf_put_strn(GGUFBuf *b, const char *s, size_t n) { gguf_put_u64(b, n); gguf_put(b, s, n); }
static inline void gguf_put_str(GGUFBuf *b, const char *s) { gguf_put_strn(b, s, strlen(s)); }

static inline void gguf_key(GGUFBuf *b, const char *key, uint32_t type) {
    gguf_put_str(b, key);
    gguf_put_u32(b, type);
    b->count++;
}
// one key/value each: the key, its type, the value
static inline void gguf_kv_u32(GGUFBuf *b, const char *key, uint32_t v) {
    gguf_key(b, key, GGUF_TYPE_UINT32);
    gguf_put_u32(b, v);
}
static inline void gguf_kv_f32(GGUFBuf *b, const char *key, float v) {
    gguf_key(b, key, GGUF_TYPE_FLOAT32);
    gguf_put(b, &v, 4);
}
static inline void gguf_kv_bool(GGUFBuf *b, const char *key, int v) {
    uint8_t x = v != 0;
    gguf_key(b, key, GGUF_TYPE_BOOL);
    gguf_put(b, &x, 1);
}
static inline void gguf_kv_str(GGUFBuf *b, const char *key, const char *v) {
    gguf_key(b, key, GGUF_TYPE_STRING);
    gguf_put_str(b, v);
}
// an array's header; its n elements follow (gguf_put_str / gguf_put_u32 ...)
static inline void gguf_kv_array(GGUFBuf *b, const char *key, uint32_t elem_type, uint64_t n) {
    gguf_key(b, key, GGUF_TYPE_ARRAY);
    gguf_put_u32(b, elem_type);
    gguf_put_u64(b, n);
}

// ----------------------------------------------------------------------------
// the tokenizer: GPT-2's byte-to-unicode strings and its merges

// GPT-2's bytes_to_unicode (encoder.py): the printable bytes '!'..'~', 0xA1..0xAC, 0xAE..0xFF
// stand for themselves; the other 68 (controls, space, 0x7F..0xA0, 0xAD) become U+0100 + i in
// byte order, so every byte is a visible character: a space is 'Ġ' (U+0120), a newline 'Ċ'.
static inline void gguf_byte_to_unicode(uint32_t table[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        table[b] = printable ? (uint32_t)b : 256u + (uint32_t)n++;
    }
}

// bytes[0..n) as GPT-2's unicode string, UTF-8 encoded into out (2n bytes at most: code points
// are below U+0800), appended at *len
static inline void gguf_token_string(char *out, size_t *len, const unsigned char *bytes, size_t n,
                                     const uint32_t table[256]) {
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = table[bytes[i]];
        if (cp < 0x80) { out[(*len)++] = (char)cp; }
        else { out[(*len)++] = (char)(0xC0 | (cp >> 6)); out[(*len)++] = (char)(0x80 | (cp & 0x3F)); }
    }
}

// The two parts of the merge that made token t: byte-level BPE on t's bytes, merging the adjacent
// pair that is the lowest token below t, until none is. Returns the length of the first part
// (the second is the rest), or 0 when that does not end in two parts: t is not a BPE merge.
static inline int gguf_merge_split(const BPEEncoder *enc, const unsigned char *bytes, int n, int t) {
    int start[256], np = n; // part i is bytes[start[i] .. start[i+1]); start[np] = n
    if (n < 2 || n > 255) { return 0; }
    for (int i = 0; i <= n; i++) { start[i] = i; }
    for (;;) {
        int best = -1, best_id = t;
        for (int i = 0; i + 1 < np; i++) {
            int id = bpe_lookup(enc, bytes + start[i], (size_t)(start[i + 2] - start[i]));
            if (id >= 0 && id < best_id) { best_id = id; best = i; } // strict <: the leftmost of equals
        }
        if (best < 0) { break; }
        memmove(start + best + 1, start + best + 2, (size_t)(np - best - 1) * sizeof(int));
        np--;
    }
    return np == 2 ? start[1] : 0;
}

// ----------------------------------------------------------------------------
// what can be exported

// NULL when the model can be written as a GGUF file that llama.cpp computes as we do
// (up to its activation rounding), else the reason and the fix, for an error message
static inline const char *gguf_export_refusal(const GPT2Config *cfg, const QuantConfig *q) {
    if (q->inner_norm) {
        return "it was trained with the inner RMSNorm (-rn 1, b1.58 as published, or -rn 2): llama.cpp's gpt2 graph has no "
               "norm inside BitLinear, so the GGUF file would compute another model than the one trained\n"
               "---> HINT: train with -rn 0 (the default) to export to GGUF (dev/recipe_study.md: it trains better at small scale), "
               "or export to our packed format (-x model.packed), which keeps the norm";
    }
    if (q->weight_quant != WQ_FP && cfg->channels % QK_K != 0) {
        return "GGUF's ternary types pack 256 weights a block along each row, and this model's rows are "
               "C and 4C long, C not a multiple of 256\n"
               "---> HINT: train with C a multiple of 256: -e d4, d8, d12 (GPT-2 124M), d24 or d36; "
               "or export to our packed format (-x model.packed)";
    }
    return NULL;
}

// ----------------------------------------------------------------------------
// the writer

typedef struct {
    char name[64];
    uint32_t n_dims;
    uint64_t ne[2];   // ne[0] = the row length, ne[1] = the rows (2-D)
    uint32_t type;    // GGML_TYPE_*
    const float *src; // the values, for F32 and F16
    int k, l;         // a matrix: its BitLinear kind (0..3, else -1) and layer, to find its trits
    uint64_t offset, nbytes;
} GGUFTensor;

static inline void gguf_tensor_add(GGUFTensor *t, const char *name, uint32_t type, int ne0, int ne1,
                                   const float *src, int k, int l) {
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->n_dims = ne1 > 0 ? 2 : 1;
    t->ne[0] = (uint64_t)ne0;
    t->ne[1] = ne1 > 0 ? (uint64_t)ne1 : 1;
    t->type = type;
    t->src = src;
    t->k = k;
    t->l = l;
}

static inline uint64_t gguf_tensor_bytes(uint32_t type, uint64_t n) {
    switch (type) {
        case GGML_TYPE_F32: return 4 * n;
        case GGML_TYPE_F16: return 2 * n;
        case GGML_TYPE_TQ2_0: return n / QK_K * sizeof(block_tq2_0);
        default: return n / QK_K * sizeof(block_tq1_0);
    }
}

static inline void gguf_write_pad(FILE *fp, const char *path, uint64_t *pos) {
    static const uint8_t zeros[GGUF_ALIGNMENT] = {0};
    uint64_t pad = (GGUF_ALIGNMENT - *pos % GGUF_ALIGNMENT) % GGUF_ALIGNMENT;
    fwriteCheck(zeros, 1, pad, fp, path);
    *pos += pad;
}

// sizes of the parts of a GGUF file, for the export summary
typedef struct {
    size_t header;    // header, metadata and tensor infos, less the tokenizer
    size_t tokenizer; // tokens, types and merges
    size_t matrices;  // the four BitLinear matrices of every block (TQ2_0 / TQ1_0, or floats for fp models)
    size_t other;     // embeddings, norms, biases
    size_t total;     // the file
} GGUFSizes;

// Write the model as a GGUF file at path (via path.tmp, renamed when complete).
//   trits[k]   the int8 trits of BitLinear kind k for all layers, (L, OC, IC) (GPT2.trits + wq_offset[k])
//   scales     (L*4) the per-tensor scales, layer l's kind k at bitlinear_scale_index(l, k)
//   params     the flat parameter buffer (llmc/gpt2_config.h's layout); its BitLinear tensors are
//              read only for fp models (-wq fp), whose matrices go out as floats
//   tq1        1: TQ1_0 (1.6875 bits/weight), 0: TQ2_0 (2.0625)
//   float_format 32 or 16: the embeddings (the 1-D tensors stay F32)
//   name       the model's file, for messages
// Exits with a one-line error (and a hint) when the model cannot be exported (gguf_export_refusal)
// or the tokenizer file is missing or does not fit the model.
static inline GGUFSizes gguf_export(const char *path, const GPT2Config *cfg, const QuantConfig *q,
                                    const int8_t *const trits[NUM_BITLINEAR], const float *scales,
                                    const float *params, const char *tokenizer_path, int tq1, int float_format,
                                    const char *name) {
    const char *why = gguf_export_refusal(cfg, q);
    if (why != NULL) {
        char mode[256];
        quant_config_describe(q, mode, sizeof(mode));
        fprintf(stderr, "error: cannot export '%s' (C = %d; %s) to GGUF: %s\n", name, cfg->channels, mode, why);
        exit(EXIT_FAILURE);
    }
    if (float_format != 32 && float_format != 16) {
        fprintf(stderr, "error: GGUF float format must be 32 or 16, got %d\n", float_format);
        exit(EXIT_FAILURE);
    }
    int L = cfg->num_layers, C = cfg->channels, V = cfg->vocab_size;
    FILE *tf = fopen(tokenizer_path, "rb"); // tokenizer_init only warns on a missing file: here it is needed
    if (tf == NULL) {
        fprintf(stderr, "error: GGUF export needs the GPT-2 tokenizer file '%s' (its tokens and merges go into "
                "the file)\n---> HINT: run python3 prepro_tinyshakespeare.py to write it, or pass its path with -tf\n",
                tokenizer_path);
        exit(EXIT_FAILURE);
    }
    fclose(tf);
    Tokenizer tok;
    tokenizer_init(&tok, tokenizer_path);
    if ((uint32_t)V > tok.vocab_size) {
        fprintf(stderr, "error: '%s' has a vocab of %d tokens but the tokenizer '%s' has %u\n"
                "---> HINT: pass the tokenizer the model was trained with (-tf)\n", name, V, tokenizer_path,
                tok.vocab_size);
        exit(EXIT_FAILURE);
    }
    BPEEncoder enc;
    bpe_init(&enc, &tok); // its table: token bytes -> id, for the merges

    // ---- key/values
    GGUFBuf kv = {0};
    int is_fp = q->weight_quant == WQ_FP;
    uint32_t mat_type = is_fp ? (float_format == 16 ? GGML_TYPE_F16 : GGML_TYPE_F32)
                              : (tq1 ? GGML_TYPE_TQ1_0 : GGML_TYPE_TQ2_0);
    uint32_t emb_type = float_format == 16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    uint32_t ftype = is_fp ? (float_format == 16 ? LLAMA_FTYPE_MOSTLY_F16 : LLAMA_FTYPE_ALL_F32)
                           : (tq1 ? LLAMA_FTYPE_MOSTLY_TQ1_0 : LLAMA_FTYPE_MOSTLY_TQ2_0);
    char text[256];
    gguf_kv_str(&kv, "general.architecture", "gpt2");
    snprintf(text, sizeof(text), "train_gpt2_1bit GPT-2 L%d C%d", L, C);
    gguf_kv_str(&kv, "general.name", text);
    gguf_kv_u32(&kv, "general.file_type", ftype);
    gguf_kv_u32(&kv, "general.quantization_version", 2); // GGML_QNT_VERSION
    gguf_kv_u32(&kv, "gpt2.context_length", (uint32_t)cfg->max_seq_len);
    gguf_kv_u32(&kv, "gpt2.embedding_length", (uint32_t)C);
    gguf_kv_u32(&kv, "gpt2.feed_forward_length", (uint32_t)(4 * C));
    gguf_kv_u32(&kv, "gpt2.block_count", (uint32_t)L);
    gguf_kv_u32(&kv, "gpt2.attention.head_count", (uint32_t)cfg->num_heads);
    gguf_kv_f32(&kv, "gpt2.attention.layer_norm_epsilon", GPT2_LAYERNORM_EPS);
    quant_config_describe(q, text, sizeof(text));
    gguf_kv_str(&kv, "train_gpt2_1bit.modes", text); // where the file came from, for people reading it
    size_t tok_start = kv.len;
    gguf_kv_str(&kv, "tokenizer.ggml.model", "gpt2");
    gguf_kv_str(&kv, "tokenizer.ggml.pre", "gpt-2");
    uint32_t table[256];
    gguf_byte_to_unicode(table);
    char *s = (char *)mallocCheck(2 * 256 + 2 * 256 + 2); // a token (or a merge's two parts) as UTF-8
    gguf_kv_array(&kv, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, (uint64_t)V);
    for (int t = 0; t < V; t++) {
        size_t n = 0;
        gguf_token_string(s, &n, (const unsigned char *)tok.token_table[t], (size_t)enc.token_lengths[t], table);
        gguf_put_strn(&kv, s, n);
    }
    gguf_kv_array(&kv, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, (uint64_t)V);
    for (int t = 0; t < V; t++) {
        gguf_put_u32(&kv, t == tok.eot_token ? LLAMA_TOKEN_TYPE_CONTROL : LLAMA_TOKEN_TYPE_NORMAL);
    }
    // merges: tokens 256.. below V, but not <|endoftext|> (a special token, no merge made it)
    int n_merges = 0;
    for (int t = 256; t < V; t++) { n_merges += t != tok.eot_token; }
    gguf_kv_array(&kv, "tokenizer.ggml.merges", GGUF_TYPE_STRING, (uint64_t)n_merges);
    for (int t = 256; t < V; t++) {
        if (t == tok.eot_token) { continue; }
        const unsigned char *bytes = (const unsigned char *)tok.token_table[t];
        int n = enc.token_lengths[t], split = gguf_merge_split(&enc, bytes, n, t);
        if (split == 0) {
            fprintf(stderr, "error: token %d of '%s' is not the merge of two tokens below it: not a GPT-2 BPE "
                    "tokenizer\n---> HINT: rerun python3 prepro_tinyshakespeare.py to write GPT-2's tokenizer file\n",
                    t, tokenizer_path);
            exit(EXIT_FAILURE);
        }
        size_t len = 0;
        gguf_token_string(s, &len, bytes, (size_t)split, table);
        s[len++] = ' ';
        gguf_token_string(s, &len, bytes + split, (size_t)(n - split), table);
        gguf_put_strn(&kv, s, len);
    }
    if (tok.eot_token < V) { // the model knows <|endoftext|>: it starts and ends a text, as in training
        gguf_kv_u32(&kv, "tokenizer.ggml.bos_token_id", (uint32_t)tok.eot_token);
        gguf_kv_u32(&kv, "tokenizer.ggml.eos_token_id", (uint32_t)tok.eot_token);
        gguf_kv_bool(&kv, "tokenizer.ggml.add_bos_token", 1); // run_gpt2_1bit starts from it too
    }
    size_t tok_bytes = kv.len - tok_start;
    free(s);
    bpe_free(&enc);
    tokenizer_free(&tok);

    // ---- tensor infos, in llama.cpp's names, in the order of its gpt2 loader
    size_t sizes[NUM_PARAMETER_TENSORS];
    fill_in_parameter_sizes(sizes, cfg);
    const float *p[NUM_PARAMETER_TENSORS]; // the 16 tensors of the flat buffer
    p[0] = params;
    for (int i = 1; i < NUM_PARAMETER_TENSORS; i++) { p[i] = p[i - 1] + sizes[i - 1]; }
    int nt = 0, cap = 2 + 12 * L + 2;
    GGUFTensor *ts = (GGUFTensor *)callocCheck((size_t)cap, sizeof(GGUFTensor));
    gguf_tensor_add(&ts[nt++], "token_embd.weight", emb_type, C, V, p[0], -1, 0); // first V of Vp rows
    gguf_tensor_add(&ts[nt++], "position_embd.weight", emb_type, C, cfg->max_seq_len, p[1], -1, 0);
    static const char *mat_names[NUM_BITLINEAR] = {"attn_qkv", "attn_output", "ffn_up", "ffn_down"};
    char nm[64];
    for (int l = 0; l < L; l++) {
        snprintf(nm, sizeof(nm), "blk.%d.attn_norm.weight", l);
        gguf_tensor_add(&ts[nt++], nm, GGML_TYPE_F32, C, 0, p[2] + (size_t)l * C, -1, l);
        snprintf(nm, sizeof(nm), "blk.%d.attn_norm.bias", l);
        gguf_tensor_add(&ts[nt++], nm, GGML_TYPE_F32, C, 0, p[3] + (size_t)l * C, -1, l);
        for (int k = 0; k < NUM_BITLINEAR; k++) {
            if (k == 2) { // the MLP half starts with its norm
                snprintf(nm, sizeof(nm), "blk.%d.ffn_norm.weight", l);
                gguf_tensor_add(&ts[nt++], nm, GGML_TYPE_F32, C, 0, p[8] + (size_t)l * C, -1, l);
                snprintf(nm, sizeof(nm), "blk.%d.ffn_norm.bias", l);
                gguf_tensor_add(&ts[nt++], nm, GGML_TYPE_F32, C, 0, p[9] + (size_t)l * C, -1, l);
            }
            int OC, IC;
            bitlinear_shape(cfg, k, &OC, &IC);
            int wi = BITLINEAR_TENSOR[k]; // the weight's index in the layout; its bias is the next one
            snprintf(nm, sizeof(nm), "blk.%d.%s.weight", l, mat_names[k]);
            gguf_tensor_add(&ts[nt++], nm, mat_type, IC, OC, p[wi] + (size_t)l * OC * IC, k, l); // (OC,IC) -> {IC,OC}
            snprintf(nm, sizeof(nm), "blk.%d.%s.bias", l, mat_names[k]);
            gguf_tensor_add(&ts[nt++], nm, GGML_TYPE_F32, OC, 0, p[wi + 1] + (size_t)l * OC, -1, l);
        }
    }
    gguf_tensor_add(&ts[nt++], "output_norm.weight", GGML_TYPE_F32, C, 0, p[14], -1, 0);
    gguf_tensor_add(&ts[nt++], "output_norm.bias", GGML_TYPE_F32, C, 0, p[15], -1, 0);
    assert(nt == cap);
    GGUFBuf info = {0};
    uint64_t offset = 0;
    GGUFSizes sz = {0};
    for (int i = 0; i < nt; i++) {
        GGUFTensor *t = &ts[i];
        t->offset = offset;
        t->nbytes = gguf_tensor_bytes(t->type, t->ne[0] * t->ne[1]);
        offset += (t->nbytes + GGUF_ALIGNMENT - 1) / GGUF_ALIGNMENT * GGUF_ALIGNMENT;
        if (t->k >= 0) { sz.matrices += t->nbytes; } else { sz.other += t->nbytes; }
        gguf_put_str(&info, t->name);
        gguf_put_u32(&info, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) { gguf_put_u64(&info, t->ne[d]); }
        gguf_put_u32(&info, t->type);
        gguf_put_u64(&info, t->offset);
    }

    // ---- the file: header, key/values, tensor infos, padding, data
    SafeFile f;
    safe_open(&f, path);
    uint32_t head[2] = {GGUF_MAGIC, GGUF_VERSION};
    uint64_t counts[2] = {(uint64_t)nt, kv.count};
    fwriteCheck(head, 4, 2, f.fp, f.tmp);
    fwriteCheck(counts, 8, 2, f.fp, f.tmp);
    fwriteCheck(kv.data, 1, kv.len, f.fp, f.tmp);
    fwriteCheck(info.data, 1, info.len, f.fp, f.tmp);
    uint64_t pos = 24 + kv.len + info.len;
    gguf_write_pad(f.fp, f.tmp, &pos);
    sz.tokenizer = tok_bytes;
    sz.header = pos - tok_bytes;
    const uint64_t data_start = pos;
    for (int i = 0; i < nt; i++) {
        GGUFTensor *t = &ts[i];
        assert(pos - data_start == t->offset); // the offsets written above are where the data goes
        uint64_t n = t->ne[0] * t->ne[1];
        if (t->type == GGML_TYPE_F32) {
            fwriteCheck(t->src, sizeof(float), n, f.fp, f.tmp);
        } else if (t->type == GGML_TYPE_F16) {
            uint16_t *h = (uint16_t *)mallocCheck(n * sizeof(uint16_t));
            for (uint64_t j = 0; j < n; j++) {
                h[j] = float_to_half(t->src[j]);
                if ((h[j] & 0x7c00u) == 0x7c00u) { // a finite weight above 65504 would load as inf
                    fprintf(stderr, "error: -ff 16: tensor %s holds %g, beyond fp16's range (65504)\n"
                            "---> HINT: export with -ff 32\n", t->name, t->src[j]);
                    fclose(f.fp);
                    remove(f.tmp);
                    exit(EXIT_FAILURE);
                }
            }
            fwriteCheck(h, sizeof(uint16_t), n, f.fp, f.tmp);
            free(h);
        } else { // a BitLinear matrix: each row's blocks with the tensor's scale
            int IC = (int)t->ne[0], OC = (int)t->ne[1];
            const int8_t *tr = trits[t->k] + (size_t)t->l * OC * IC;
            float gamma = scales[bitlinear_scale_index(t->l, t->k)];
            uint16_t d = float_to_half(gamma);
            float rel = fabsf(half_to_float(d) - gamma) / gamma;
            if (!(rel <= 1e-3f)) { // fp16 keeps 11 bits (rel <= 2^-11) down to 6.1e-5; below, fewer
                fprintf(stderr, "warning: %s: the scale %g is %g in fp16 (relative error %.1e)\n", t->name,
                        gamma, half_to_float(d), rel);
            }
            size_t rb = gguf_tensor_bytes(t->type, (uint64_t)IC);
            uint8_t *row = (uint8_t *)mallocCheck(rb);
            for (int r = 0; r < OC; r++) {
                if (t->type == GGML_TYPE_TQ2_0) { tq2_0_pack_row((block_tq2_0 *)row, tr + (size_t)r * IC, IC, d); }
                else { tq1_0_pack_row((block_tq1_0 *)row, tr + (size_t)r * IC, IC, d); }
                fwriteCheck(row, 1, rb, f.fp, f.tmp);
            }
            free(row);
        }
        pos += t->nbytes;
        gguf_write_pad(f.fp, f.tmp, &pos); // the last one too, as ggml's own writer does
    }
    safe_close(&f);
    sz.total = (size_t)pos;
    free(kv.data);
    free(info.data);
    free(ts);
    return sz;
}

#endif // LLMC_GGUF_H
