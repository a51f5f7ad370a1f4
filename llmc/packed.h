/*
 llmc/packed.h: the packed model file, a ternary (or binary) GPT-2 stored the
 way it is used at inference: the four BitLinear matrices of every block as
 packed trits plus one fp32 scale per tensor, everything else in fp32 or fp16.
 For GPT-2 124M the BitLinear part is 85M weights: 21 MB at 2 bits, 17 MB at
 1.6 bits, instead of 340 MB in fp32.

 File layout (little-endian):
   int32 header[256]
     [0] 20261126 PACKED_MAGIC   [1] 2 version (1: the same without the checksum; no longer read)
     [2] maxT  [3] V  [4] L  [5] NH  [6] C  [7] Vp
     [8] weight quant (1 ternary, 2 binary)  [9] act quant (0 none, 1 int8)  [10] inner RMSNorm
     [11] trit format: 2 = 2 bits/weight (llmc/ternary_kernels.h pack2_rows),
                       3 = 1.6 bits/weight, 5 trits per byte in base 3 (pack3_rows)
     [12] float format of the full-precision tensors: 32 or 16 (IEEE half)
     [13] 20261128 CRC_MAGIC  [14] CRC-32 (zlib's) of everything after the header
   float32 scales[L*4]: scale of layer l's matrix k (0 qkv, 1 attproj, 2 fc, 3 fcproj) at l*4 + k
                        (bitlinear_scale_index in llmc/gpt2_config.h)
   for k in 0..3, for l in 0..L-1: the (OC, IC) trits of that matrix, rows packed one by one
   the 12 other tensors of llmc/gpt2_config.h's layout, in its order, fp32 or fp16

 Written by `run_gpt2_1bit -e model.bin -x out.bin` from any training checkpoint.
 Loading checks the header, the exact size, the checksum, that every scale is finite and
 > 0, that every trit code is one (2-bit code 3 and base-3 bytes above 242 are none), and
 that every full-precision value is finite: a corrupt file is an error, never a model.
*/
#ifndef LLMC_PACKED_H
#define LLMC_PACKED_H

#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include "utils.h"            // defines: fopenCheck, freadCheck, fwriteCheck, mallocCheck
#include "gpt2_config.h"      // defines: GPT2Config, QuantConfig, fill_in_parameter_sizes, BITLINEAR_TENSOR
#include "ternary_kernels.h"  // defines: pack2_rows, pack3_rows, unpack2_rows, unpack3_rows, *_row_bytes
#include "checkpoint.h"       // defines: HEADER_INTS, SafeFile, CRC_MAGIC, params_finite_check, checksum_mismatch_error

#define PACKED_MAGIC 20261126
#define PACKED_VERSION 2
#define PACKED_CRC_SLOT 13 // [13] CRC_MAGIC, [14] the CRC

// ----------------------------------------------------------------------------
// IEEE half precision, by hand: no compiler extension needed

static inline uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xffu, mant = x & 0x7fffffu;
    if (exp == 0xffu) { return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0u)); } // inf, nan
    int e = (int)exp - 127 + 15;
    if (e >= 31) { return (uint16_t)(sign | 0x7c00u); } // too large: inf
    if (e <= 0) {                                        // subnormal half (or zero)
        if (e < -10) { return (uint16_t)sign; }
        mant |= 0x800000u;
        int shift = 14 - e;
        uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) { half++; } // round to nearest even
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) { half++; } // may carry into the exponent: fine
    return (uint16_t)half;
}

static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, x;
    if (exp == 0) {
        if (mant == 0) { x = sign; }
        else { // subnormal: normalise
            int e = -1;
            do { mant <<= 1; e++; } while (!(mant & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        x = sign | 0x7f800000u | (mant << 13);
    } else {
        x = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

// ----------------------------------------------------------------------------
// the packed model in memory

typedef struct {
    GPT2Config config;
    QuantConfig quant;
    int trit_format;   // 2 or 3
    int float_format;  // 32 or 16 (as stored; in memory everything is fp32)
    float scales[4 * 64];
    uint8_t *packed[NUM_BITLINEAR];  // per matrix kind: L matrices of packed rows
    size_t packed_bytes[NUM_BITLINEAR];
    float *params_memory;            // the full layout; BitLinear tensors hold W_q = trit * scale
    size_t param_sizes[NUM_PARAMETER_TENSORS];
    size_t num_parameters;
} PackedModel;

static inline size_t packed_row_bytes(int format, int n) {
    return format == 2 ? pack2_row_bytes(n) : pack3_row_bytes(n);
}

// sizes of the parts of a packed file, for the export summary
typedef struct { size_t header, scales, bitlinear, other; } PackedSizes;

// Write a packed file from trits (the model's per-matrix int8 trits, same
// layout as the parameters of llmc/gpt2_config.h restricted to the 4 BitLinear
// tensors, each (L, OC, IC)), their scales and the full-precision params.
static inline PackedSizes packed_write(const char *path, const GPT2Config *cfg, const QuantConfig *q,
                                       int trit_format, int float_format, const int8_t *const trits[NUM_BITLINEAR],
                                       const float *scales, const float *params) {
    PackedSizes sz = {HEADER_INTS * sizeof(int), (size_t)cfg->num_layers * 4 * sizeof(float), 0, 0};
    int header[HEADER_INTS] = {0};
    header[0] = PACKED_MAGIC; header[1] = PACKED_VERSION;
    header[2] = cfg->max_seq_len; header[3] = cfg->vocab_size; header[4] = cfg->num_layers;
    header[5] = cfg->num_heads; header[6] = cfg->channels; header[7] = cfg->padded_vocab_size;
    header[8] = q->weight_quant; header[9] = q->act_quant; header[10] = q->inner_norm;
    header[11] = trit_format; header[12] = float_format;
    header[PACKED_CRC_SLOT] = CRC_MAGIC; // the CRC itself goes in when the payload is written
    SafeFile f;
    safe_open(&f, path);
    fwriteCheck(header, sizeof(int), HEADER_INTS, f.fp, f.tmp);
    uint32_t crc = crc32_update(0, scales, (size_t)cfg->num_layers * 4 * sizeof(float));
    fwriteCheck(scales, sizeof(float), (size_t)cfg->num_layers * 4, f.fp, f.tmp);
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(cfg, k, &OC, &IC);
        int rows = cfg->num_layers * OC; // all layers' rows in one go: rows are packed independently
        size_t nbytes = (size_t)rows * packed_row_bytes(trit_format, IC);
        uint8_t *buf = (uint8_t *)mallocCheck(nbytes);
        if (trit_format == 2) { pack2_rows(buf, trits[k], rows, IC); }
        else { pack3_rows(buf, trits[k], rows, IC); }
        crc = crc32_update(crc, buf, nbytes);
        fwriteCheck(buf, 1, nbytes, f.fp, f.tmp);
        sz.bitlinear += nbytes;
        free(buf);
    }
    size_t sizes[NUM_PARAMETER_TENSORS];
    fill_in_parameter_sizes(sizes, cfg);
    const float *p = params;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        int is_bitlinear = bitlinear_kind_of(i) >= 0;
        if (!is_bitlinear) {
            if (float_format == 32) {
                crc = crc32_update(crc, p, sizes[i] * sizeof(float));
                fwriteCheck(p, sizeof(float), sizes[i], f.fp, f.tmp);
                sz.other += sizes[i] * sizeof(float);
            } else {
                uint16_t *h = (uint16_t *)mallocCheck(sizes[i] * sizeof(uint16_t));
                for (size_t j = 0; j < sizes[i]; j++) {
                    h[j] = float_to_half(p[j]);
                    if ((h[j] & 0x7c00u) == 0x7c00u) { // a finite weight above 65504 would load as inf
                        fprintf(stderr, "error: -ff 16: tensor %s holds %g, beyond fp16's range (65504)\n"
                                "---> HINT: export with -ff 32\n", PARAMETER_NAMES[i], p[j]);
                        remove(f.tmp);
                        exit(EXIT_FAILURE);
                    }
                }
                crc = crc32_update(crc, h, sizes[i] * sizeof(uint16_t));
                fwriteCheck(h, sizeof(uint16_t), sizes[i], f.fp, f.tmp);
                sz.other += sizes[i] * sizeof(uint16_t);
                free(h);
            }
        }
        p += sizes[i];
    }
    header[PACKED_CRC_SLOT + 1] = (int)crc;
    fseekCheck(f.fp, 0, SEEK_SET, f.tmp);
    fwriteCheck(header, sizeof(int), HEADER_INTS, f.fp, f.tmp);
    safe_close(&f);
    return sz;
}

// Check what the checksum cannot: that the (checksummed) scales and codes mean something.
// scales (L*4) must be finite and > 0 (a NaN scale turns every product into NaN, a negative one
// flips the matrix); each 2-bit code must be 0..2 (3 is no trit) and each base-3 byte 0..242.
static inline void packed_validate(const PackedModel *m, const char *path) {
    const GPT2Config *c = &m->config;
    for (int i = 0; i < c->num_layers * 4; i++) {
        float sc = m->scales[i];
        if (!(sc > 0.0f && sc <= 3.402823466e38f)) {
            fprintf(stderr, "error: '%s' has an invalid scale %g for layer %d's %s matrix (must be finite and > 0): "
                    "the file is corrupt\n---> HINT: export it again (run_gpt2_1bit -e CHECKPOINT -x FILE)\n",
                    path, sc, i / 4, BITLINEAR_NAMES[i % 4]);
            exit(EXIT_FAILURE);
        }
    }
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(c, k, &OC, &IC);
        size_t row_bytes = packed_row_bytes(m->trit_format, IC);
        for (size_t j = 0; j < m->packed_bytes[k]; j++) {
            unsigned b = m->packed[k][j];
            // 2-bit: a field is 3 when both its bits are set; base 3: 5 digits reach at most 3^5 - 1 = 242
            int bad = m->trit_format == 2 ? (b & (b >> 1) & 0x55u) != 0 : b > 242u;
            if (bad) {
                size_t row = j / row_bytes;
                fprintf(stderr, "error: '%s' has an invalid %s byte 0x%02x in layer %d's %s matrix (row %zu): "
                        "it codes no trit; the file is corrupt\n"
                        "---> HINT: export it again (run_gpt2_1bit -e CHECKPOINT -x FILE)\n", path,
                        m->trit_format == 2 ? "2-bit" : "base-3", b, (int)(row / OC), BITLINEAR_NAMES[k], row % OC);
                exit(EXIT_FAILURE);
            }
        }
    }
}

// Read a packed file; exits with a one-line message on a file that is not one,
// of another version, truncated, padded, or corrupt (packed_validate and the checksum).
static inline void packed_read(PackedModel *m, const char *path) {
    memset(m, 0, sizeof(*m));
    FILE *fp = fopenCheck(path, "rb");
    long size = file_size(fp, path);
    int header[HEADER_INTS];
    if (size < (long)sizeof(header)) {
        fprintf(stderr, "error: '%s' is too short to be a packed model (%ld bytes)\n", path, size);
        exit(EXIT_FAILURE);
    }
    freadCheck(header, sizeof(int), HEADER_INTS, fp, path);
    if (header[0] != PACKED_MAGIC) {
        fprintf(stderr, "error: '%s' is not a packed model (bad magic %d, want %d)\n"
                "---> HINT: pass a file written by run_gpt2_1bit -x\n", path, header[0], PACKED_MAGIC);
        exit(EXIT_FAILURE);
    }
    if (header[1] != PACKED_VERSION) {
        fprintf(stderr, "error: '%s' is packed-model version %d; this program reads version %d\n"
                "---> HINT: export it again from its training checkpoint with this version\n",
                path, header[1], PACKED_VERSION);
        exit(EXIT_FAILURE);
    }
    GPT2Config *c = &m->config;
    c->max_seq_len = header[2]; c->vocab_size = header[3]; c->num_layers = header[4];
    c->num_heads = header[5]; c->channels = header[6]; c->padded_vocab_size = header[7];
    m->quant.weight_quant = header[8]; m->quant.act_quant = header[9]; m->quant.inner_norm = header[10];
    m->quant.backward_quant = BQ_FLOAT; // a training mode: a packed model is for inference
    m->trit_format = header[11];
    m->float_format = header[12];
    const char *bad = gpt2_config_check(c);
    if (bad == NULL && c->num_layers > 64) { bad = "more than 64 layers"; }
    if (bad == NULL && (m->quant.weight_quant < 1 || m->quant.weight_quant > 2 || m->quant.act_quant < 0 ||
                        m->quant.act_quant > 1 || m->quant.inner_norm < 0 || m->quant.inner_norm > 2)) {
        bad = "unknown quantization modes";
    }
    if (bad == NULL && m->trit_format != 2 && m->trit_format != 3) { bad = "unknown trit format"; }
    if (bad == NULL && m->float_format != 32 && m->float_format != 16) { bad = "unknown float format"; }
    if (bad == NULL && header[PACKED_CRC_SLOT] != CRC_MAGIC) { bad = "no checksum in slot 13"; }
    if (bad != NULL) {
        fprintf(stderr, "error: '%s' has an invalid header: %s\n", path, bad);
        exit(EXIT_FAILURE);
    }
    // the exact size the header implies, before reading anything else
    fill_in_parameter_sizes(m->param_sizes, c);
    m->num_parameters = 0;
    long want = (long)sizeof(header) + (long)c->num_layers * 4 * (long)sizeof(float);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        m->num_parameters += m->param_sizes[i];
        int is_bitlinear = bitlinear_kind_of(i) >= 0;
        if (!is_bitlinear) { want += (long)(m->param_sizes[i] * (m->float_format / 8)); }
    }
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(c, k, &OC, &IC);
        m->packed_bytes[k] = (size_t)c->num_layers * OC * packed_row_bytes(m->trit_format, IC);
        want += (long)m->packed_bytes[k];
    }
    if (size != want) {
        fprintf(stderr, "error: '%s' is %ld bytes but its header implies %ld: truncated or corrupt\n", path, size, want);
        exit(EXIT_FAILURE);
    }
    // the payload, in file order, with its CRC: scales, packed trits, the full-precision tensors
    freadCheck(m->scales, sizeof(float), (size_t)c->num_layers * 4, fp, path);
    uint32_t crc = crc32_update(0, m->scales, (size_t)c->num_layers * 4 * sizeof(float));
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        m->packed[k] = (uint8_t *)mallocCheck(m->packed_bytes[k]);
        freadCheck(m->packed[k], 1, m->packed_bytes[k], fp, path);
        crc = crc32_update(crc, m->packed[k], m->packed_bytes[k]);
    }
    m->params_memory = (float *)mallocCheck(m->num_parameters * sizeof(float));
    float *p = m->params_memory;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = m->param_sizes[i];
        int is_bitlinear = bitlinear_kind_of(i) >= 0;
        if (is_bitlinear) { // W_q = trit * scale, filled below once the codes and scales are validated
            p += n;
            continue;
        }
        if (m->float_format == 32) {
            freadCheck(p, sizeof(float), n, fp, path);
            crc = crc32_update(crc, p, n * sizeof(float));
        } else {
            uint16_t *h = (uint16_t *)mallocCheck(n * sizeof(uint16_t));
            freadCheck(h, sizeof(uint16_t), n, fp, path);
            crc = crc32_update(crc, h, n * sizeof(uint16_t));
            for (size_t j = 0; j < n; j++) { p[j] = half_to_float(h[j]); }
            free(h);
        }
        p += n;
    }
    fclose(fp);
    uint32_t want_crc = (uint32_t)header[PACKED_CRC_SLOT + 1];
    if (crc != want_crc) { checksum_mismatch_error(path, crc, want_crc); }
    packed_validate(m, path);
    // the BitLinear tensors get W_q = trit * scale; the others must be finite
    p = m->params_memory;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = m->param_sizes[i];
        int k = bitlinear_kind_of(i);
        if (k >= 0) {
            int OC, IC;
            bitlinear_shape(c, k, &OC, &IC);
            int8_t *t = (int8_t *)mallocCheck(n);
            int rows = c->num_layers * OC;
            if (m->trit_format == 2) { unpack2_rows(t, m->packed[k], rows, IC); }
            else { unpack3_rows(t, m->packed[k], rows, IC); }
            for (size_t j = 0; j < n; j++) {
                int l = (int)(j / ((size_t)OC * IC));
                p[j] = t[j] * m->scales[bitlinear_scale_index(l, k)];
            }
            free(t);
        } else {
            params_finite_check(p, n, (size_t)(p - m->params_memory), m->param_sizes, c->num_layers, path, "value");
        }
        p += n;
    }
}

static inline void packed_free(PackedModel *m) {
    for (int k = 0; k < NUM_BITLINEAR; k++) { free(m->packed[k]); }
    free(m->params_memory);
}

#endif // LLMC_PACKED_H
