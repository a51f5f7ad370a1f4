/*
 run_gpt2_1bit.c: inference for the models train_gpt2_1bit trains. It exports
 a training checkpoint to a packed model file (llmc/packed.h: 2 or 1.6 bits
 per BitLinear weight) and generates text from a prompt, token by token with a
 KV cache, the BitLinear layers running as int8 activations x packed trits
 with exact int32 accumulation (llmc/ternary_kernels.h).

 Build:  make run_gpt2_1bit
 Export: ./run_gpt2_1bit -e out/model_00000300.bin -x out/model.packed [-pf 2|3] [-ff 32|16]
 Export for llama.cpp (GGUF, llmc/gguf.h: TQ2_0, -pf 3: TQ1_0; models trained with -rn 0):
         ./run_gpt2_1bit -e out/model_00000300.bin -x out/model.gguf [-pf 2|3] [-ff 32|16]
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

 Decoding a token with the packed model is memory-bound: 21 MB of trits, and a
 77 MB tied head (fp16) that would dominate. For top-k sampling the int8 path
 scores the head's rows with an int8 copy first and computes in full only the
 rows that can be in the top k (see "the head, screened" below: a proven bound,
 so the logits it computes and the tokens it samples are the full head's).
*/
#define TESTING
#include "train_gpt2_1bit.c"  // defines: GPT2, gpt2_build_from_checkpoint, layernorm_forward, matmul_forward, ...
#include "llmc/ternary_kernels.h" // defines: matmul_i8_t2, pack2_rows, pack2_row_bytes
#include "llmc/packed.h"      // defines: packed_write, packed_read, PackedModel
#include "llmc/bpe.h"         // defines: BPEEncoder, bpe_init, bpe_encode

#include "llmc/gguf.h"        // defines: gguf_export, GGUFSizes
// ----------------------------------------------------------------------------
// the model for decoding

typedef struct {
    GPT2 gpt;                      // config, modes, params; BitLinear tensors hold latent W (checkpoint) or W_q (packed)
    int use_int8;                  // 1: BitLinear as int8 x packed trits; 0: fp32 matmul on W_q
    uint16_t *wte_half;            // (Vp, C) the tied head in fp16, when the packed file stores it so (else NULL)
    float *key_cache;              // (L, maxT, C)
    float *value_cache;            // (L, maxT, C)
    // one token's activations
    float *x, *ln, *mean_rstd, *qkv, *att, *atty, *proj, *fch, *xn, *logits; // att: (NH, maxT), a row per head
    // the int8 path's BitLinear input: x gathered for the GEMV (gemv_i8_t2_scratch_bytes(4C)), sum(x), 1/s
    uint8_t *xs;
    int32_t xsum;
    float inv_s, rstd;
    // the int8 path's screening copy of the head (head_screen_rows): row v of the head ~ step[v] * codes
    int8_t *head_q;                // (V, C) int8 codes, NULL where the full head is computed
    float *head_step;              // (V)
    float *approx;                 // (V) the screening logits of the current token
    int *groups;                   // (V/4 + 1) the 4-row groups of the head computed exactly
    int num_groups;
    long long exact_rows;          // rows of the head computed exactly, summed over tokens (statistics)
    long long screened_tokens;     // tokens whose head was screened
} Runner;

// which logits runner_forward computes, its argument logits_k:
#define LOGITS_NONE (-1) // none (a prompt token before the last: only the cache is needed)
#define LOGITS_ALL 0     // all V
// or k > 0: exact for a set of tokens that holds the k largest, -inf for the others (the int8
// path's screened head; the fp32 path computes all), enough for sample_logits with top-k k

// Load a training checkpoint (quantized here, as the training forward does) or
// a packed file (its trits and scales as stored). Returns 0 for a checkpoint,
// else the packed file's float format (32 or 16).
static int runner_load_model(GPT2 *gpt, const char *path) {
    // a directory (e.g. -e out): model_file_open's error names the newest checkpoint in it
    if (is_directory(path)) { model_file_open(path, quant_config_b158(), NULL, &gpt->config, &gpt->quant); }
    FILE *fp = fopenCheck(path, "rb");
    int magic = 0;
    if (fread(&magic, sizeof(int), 1, fp) != 1) { magic = 0; }
    fclose(fp);
    if (magic != PACKED_MAGIC && magic != MODEL_MAGIC) { // neither loader's hints would fit
        fprintf(stderr, "error: -e '%s' is neither a training checkpoint (magic %d) nor a packed model (magic %d); "
                "its magic is %d\n---> HINT: pass a model_*.bin written by train_gpt2_1bit (or llm.c), or a packed "
                "file written by run_gpt2_1bit -x\n", path, MODEL_MAGIC, PACKED_MAGIC, magic);
        exit(EXIT_FAILURE);
    }
    if (magic == MODEL_MAGIC) {
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

// ----------------------------------------------------------------------------
// the head, screened
// Decoding a token reads the whole tied head (V x C: 77 MB in fp16 for GPT-2, 4x the trits of
// all 48 BitLinear layers) to compute V logits of which top-k sampling keeps k (default 40).
// So the int8 path first scores every row with an int8 copy of the head (half the bytes), then
// computes in full precision only the rows that can be in the top k. Exactly those: row v of
// the head h_v (fp16 or fp32 values) is kept as codes q_v (int8) and a step d_v = max|h_v| / 127,
// q_v = round(h_v / d_v), so |h_vi - d_v q_vi| <= d_v / 2 and, for the token's final-norm output x,
//     |h_v . x - d_v (q_v . x)| <= (d_v / 2) ||x||_1.
// Both dot products are float sums of C terms each at most 127.5 d_v |x_i|; their rounding adds
// at most about C * 2^-24 * 128 d_v ||x||_1 each, under 2^-6 d_v ||x||_1 for C <= 4096. So with
//     err_v = HEAD_SCREEN_ERR * d_v * ||x||_1,   HEAD_SCREEN_ERR = 0.5 + 2 * 2^-6 + slack = 0.625,
// the logit the full head computes lies in [approx_v - err_v, approx_v + err_v]. Let theta be
// the k-th largest lower end: k rows have logits >= theta, so a row whose upper end is below theta
// is strictly below k others and cannot be in the top k. The rest (typically a few hundred of
// 50257) are computed by the full head's own code, in the same 4-row tiles, so their logits are
// bit-identical to the full head's; the others get -inf, and sample_logits (llmc/sampler.h)
// draws from the top k the same token it draws from the full logits. Argmax is k = 1.

#define HEAD_SCREEN_ERR 0.625f
#define HEAD_SCREEN_MAX_C 4096 // the rounding term above assumes C <= 4096

// where code i of row v is in head_q. When C % 8 == 0 the rows go in groups of 4 (the tile the
// kernel computes), interleaved 8 codes at a time: [row 0: codes 0..7][row 1: 0..7][row 2][row 3]
// [row 0: 8..15]..., so a tile reads one stream, not four (measured 15% faster); the last V % 4
// rows, and every row when C % 8 != 0, are stored one after the other.
static size_t head_q_index(int v, int i, int V, int C) {
    if (C % 8 != 0 || v >= V / 4 * 4) { return (size_t)v * C + i; }
    return (size_t)(v / 4) * 4 * C + (size_t)(i / 8) * 32 + (v % 4) * 8 + i % 8;
}

static void head_screen_init(Runner *r) {
    GPT2Config *c = &r->gpt.config;
    int V = c->vocab_size, C = c->channels;
    r->head_q = (int8_t *)mallocCheck((size_t)V * C);
    r->head_step = (float *)mallocCheck((size_t)V * sizeof(float));
    r->approx = (float *)mallocCheck((size_t)V * sizeof(float));
    r->groups = (int *)mallocCheck(((size_t)V / 4 + 1) * sizeof(int));
    #pragma omp parallel for
    for (int v = 0; v < V; v++) {
        // the values the full head multiplies by: fp16 (as stored) or fp32
        float h[HEAD_SCREEN_MAX_C];
        for (int i = 0; i < C; i++) {
            h[i] = r->wte_half ? half_to_float(r->wte_half[(size_t)v * C + i]) : r->gpt.params.wte[(size_t)v * C + i];
        }
        float amax = 0.0f;
        for (int i = 0; i < C; i++) { amax = fabsf(h[i]) > amax ? fabsf(h[i]) : amax; }
        float d = amax / 127.0f;
        r->head_step[v] = d;
        for (int i = 0; i < C; i++) {
            float qv = d > 0.0f ? roundf(h[i] / d) : 0.0f;
            r->head_q[head_q_index(v, i, V, C)] = (int8_t)(qv > 127.0f ? 127.0f : (qv < -127.0f ? -127.0f : qv));
        }
    }
}

// approx[v] = d_v * (q_v . x) for rows v0..v1 (v0 a multiple of 4): 4 rows at a time, their
// codes interleaved (head_q_index), widened to float 8 at a time
static void head_screen_rows(float *approx, const float *x, const int8_t *hq, const float *step, int V, int C,
                             int v0, int v1) {
    int v = v0;
#if defined(__AVX2__) && defined(__FMA__)
    if (C % 8 == 0) {
        for (; v + 4 <= v1; v += 4) {
            const int8_t *q = hq + (size_t)v * C; // the tile: 32 bytes = 8 codes of each row per step of i
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0; i < C; i += 8) {
                __m256 xv = _mm256_loadu_ps(x + i);
                const int8_t *qi = q + 4 * i;
                if (i % 16 == 0) { _mm_prefetch((const char *)qi + 2048, _MM_HINT_NTA); } // each 64-byte line once
                __m256i codes = _mm256_loadu_si256((const __m256i *)qi);
                __m128i lo = _mm256_castsi256_si128(codes), hi = _mm256_extracti128_si256(codes, 1);
                a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), xv, a0);
                a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), xv, a1);
                a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), xv, a2);
                a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), xv, a3);
            }
            __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            __m128 dots = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            _mm_storeu_ps(approx + v, _mm_mul_ps(dots, _mm_loadu_ps(step + v)));
        }
    }
#endif
    for (; v < v1; v++) {
        float sum = 0.0f;
        for (int i = 0; i < C; i++) { sum += (float)hq[head_q_index(v, i, V, C)] * x[i]; }
        approx[v] = step[v] * sum;
    }
}

// heap[0..k) of floats, smallest at the root: moves heap[i] down to where it belongs
static void min_heap_sift_down(float *heap, int k, int i) {
    for (;;) {
        int m = i, a = 2 * i + 1, b = a + 1;
        if (a < k && heap[a] < heap[m]) { m = a; }
        if (b < k && heap[b] < heap[m]) { m = b; }
        if (m == i) { return; }
        float t = heap[i]; heap[i] = heap[m]; heap[m] = t;
        i = m;
    }
}

// from approx (V) and x (C): the 4-row groups that can hold the top k, into r->groups
static void head_screen_select(Runner *r, const float *x, int k) {
    int V = r->gpt.config.vocab_size, C = r->gpt.config.channels;
    float l1 = 0.0f;
    for (int i = 0; i < C; i++) { l1 += fabsf(x[i]); }
    const float e = HEAD_SCREEN_ERR * l1;
    // theta = the k-th largest lower end approx_v - e d_v: a min-heap of the k largest so far
    float *heap = (float *)tk_scratch((size_t)k * sizeof(float));
    for (int v = 0; v < k; v++) { heap[v] = r->approx[v] - e * r->head_step[v]; }
    for (int i = k / 2 - 1; i >= 0; i--) { min_heap_sift_down(heap, k, i); }
    for (int v = k; v < V; v++) {
        float lo = r->approx[v] - e * r->head_step[v];
        if (lo > heap[0]) { heap[0] = lo; min_heap_sift_down(heap, k, 0); }
    }
    const float theta = heap[0];
    r->num_groups = 0;
    for (int v = 0; v < V; v++) {
        if (r->approx[v] + e * r->head_step[v] >= theta && (r->num_groups == 0 || r->groups[r->num_groups - 1] != v / 4)) {
            r->groups[r->num_groups++] = v / 4;
        }
    }
}

static void runner_init(Runner *r, const char *path, int use_int8) {
    memset(r, 0, sizeof(*r));
    int float_format = runner_load_model(&r->gpt, path);
    GPT2Config *c = &r->gpt.config;
    // int8 kernels need int8 activations and quantized weights; otherwise fp32
    int int8_path = use_int8 && r->gpt.quant.act_quant == AQ_INT8 && r->gpt.quant.weight_quant != WQ_FP;
    // A file with fp16 tensors: the int8 path keeps the tied head in fp16 too (its
    // values are fp16 already, so nothing changes but the bytes read per token: the
    // head is the largest matrix of the model, 50304 x 768 for GPT-2)
    if (int8_path && float_format == 16) {
        size_t n = (size_t)c->padded_vocab_size * c->channels;
        r->wte_half = (uint16_t *)mallocCheck(n * sizeof(uint16_t));
        for (size_t i = 0; i < n; i++) { r->wte_half[i] = float_to_half(r->gpt.params.wte[i]); }
    }
    int C = c->channels, L = c->num_layers;
    r->use_int8 = int8_path;
    r->gpt.int8_forward = r->use_int8;
    gpt2_allocate_activations(&r->gpt, 1, 1); // for the integer path's scratch: one token at a time
    size_t kv = (size_t)L * c->max_seq_len * C;
    r->key_cache = (float *)mallocCheck(kv * sizeof(float));
    r->value_cache = (float *)mallocCheck(kv * sizeof(float));
    r->x = (float *)mallocCheck(C * sizeof(float));
    r->ln = (float *)mallocCheck(C * sizeof(float));
    r->mean_rstd = (float *)mallocCheck(2 * sizeof(float));
    r->qkv = (float *)mallocCheck(3 * C * sizeof(float));
    r->att = (float *)mallocCheck((size_t)c->num_heads * c->max_seq_len * sizeof(float));
    r->atty = (float *)mallocCheck(C * sizeof(float));
    r->proj = (float *)mallocCheck(C * sizeof(float));
    r->fch = (float *)mallocCheck(4 * C * 2 * sizeof(float));
    r->xn = (float *)mallocCheck(4 * C * sizeof(float));
    r->logits = (float *)mallocCheck((size_t)c->padded_vocab_size * sizeof(float));
    r->xs = (uint8_t *)mallocCheck(gemv_i8_t2_scratch_bytes(4 * C));
    if (int8_path && C <= HEAD_SCREEN_MAX_C) { head_screen_init(r); }
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

// causal attention of head h of layer l for the token at `pos` over positions 0..pos: stores
// the head's k and v (from qkv) in the cache, then atty[h*hs..) = softmax(q k^T / sqrt(hs)) v.
// Heads touch disjoint channels of the cache, atty and att, so threads may run heads at once.
static void runner_attention_head(Runner *r, int l, int pos, int h) {
    GPT2Config *c = &r->gpt.config;
    int C = c->channels, hs = C / c->num_heads, maxT = c->max_seq_len;
    const float *k_cache = r->key_cache + (size_t)l * maxT * C + h * hs;   // position t at + t*C
    const float *v_cache = r->value_cache + (size_t)l * maxT * C + h * hs;
    memcpy((float *)k_cache + (size_t)pos * C, r->qkv + C + h * hs, hs * sizeof(float));
    memcpy((float *)v_cache + (size_t)pos * C, r->qkv + 2 * C + h * hs, hs * sizeof(float));
    const float *q = r->qkv + h * hs;
    float *att = r->att + (size_t)h * maxT;
    float scale = 1.0f / sqrtf(hs), maxv = -1e30f;
    for (int t = 0; t <= pos; t++) {
        const float *kt = k_cache + (size_t)t * C;
        float v = 0.0f;
        #pragma omp simd reduction(+ : v) // in 8 lanes: one sequential chain of hs FMAs was most of attention
        for (int i = 0; i < hs; i++) { v += q[i] * kt[i]; }
        att[t] = v * scale;
        maxv = att[t] > maxv ? att[t] : maxv;
    }
    float sum = 0.0f;
    for (int t = 0; t <= pos; t++) { att[t] = expf(att[t] - maxv); sum += att[t]; }
    float *y = r->atty + h * hs;
    for (int i = 0; i < hs; i++) { y[i] = 0.0f; }
    for (int t = 0; t <= pos; t++) {
        const float *vt = v_cache + (size_t)t * C;
        float a = att[t] / sum;
        for (int i = 0; i < hs; i++) { y[i] += a * vt[i]; }
    }
}

// ----------------------------------------------------------------------------
// the fp32 path: the training forward's functions, one token at a time

// the logits (Vp) of token `token` at position `pos`, given the cache of 0..pos-1
static float *runner_forward_fp32(Runner *r, int token, int pos, int logits_k) {
    GPT2 *g = &r->gpt;
    GPT2Config *c = &g->config;
    int C = c->channels, NH = c->num_heads;
    ParameterTensors p = g->params;
    for (int i = 0; i < C; i++) { r->x[i] = p.wte[(size_t)token * C + i] + p.wpe[(size_t)pos * C + i]; }
    for (int l = 0; l < c->num_layers; l++) {
        layernorm_forward(r->ln, r->mean_rstd, r->mean_rstd + 1, r->x, p.ln1w + l * C, p.ln1b + l * C, 1, C);
        runner_bitlinear(r, r->qkv, r->ln, 0, l);
        #pragma omp parallel for
        for (int h = 0; h < NH; h++) { runner_attention_head(r, l, pos, h); }
        runner_bitlinear(r, r->proj, r->atty, 1, l);
        for (int i = 0; i < C; i++) { r->x[i] += r->proj[i]; }
        layernorm_forward(r->ln, r->mean_rstd, r->mean_rstd + 1, r->x, p.ln2w + l * C, p.ln2b + l * C, 1, C);
        runner_bitlinear(r, r->fch, r->ln, 2, l);
        gelu_forward(r->fch + 4 * C, r->fch, (size_t)4 * C);
        runner_bitlinear(r, r->proj, r->fch + 4 * C, 3, l);
        for (int i = 0; i < C; i++) { r->x[i] += r->proj[i]; }
    }
    if (logits_k == LOGITS_NONE) { return r->logits; }
    layernorm_forward(r->ln, r->mean_rstd, r->mean_rstd + 1, r->x, p.lnfw, p.lnfb, 1, C);
    matmul_forward(r->logits, r->ln, p.wte, NULL, 1, C, c->padded_vocab_size); // tied head, fp32
    return r->logits;
}

// ----------------------------------------------------------------------------
// the int8 path: the whole token in one parallel region
// Per token the packed model does about 2 ms of work outside the head, split in ~300 steps
// (4 BitLinear x 12 layers, each an input quantization, a gather, a GEMV, an epilogue; the
// norms, GELU, attention). A fork/join of the OpenMP team per step costs ~2 us on the VM this
// was measured on, a barrier ~0.7 us: so the threads are started once per token, share each
// GEMV and the head by rows, and meet at barriers. The short serial steps (layernorm, the
// BitLinear input quantization: functions of the training forward, whose own `omp parallel`
// runs as a team of one inside this region) run on one thread in `omp single`.

// this thread's share [*n0, *n1) of n rows, cut at multiples of 4 (the GEMV tile)
static void thread_rows(int n, int *n0, int *n1) {
    int nt = 1, id = 0;
#ifdef _OPENMP
    nt = omp_get_num_threads();
    id = omp_get_thread_num();
#endif
    int quads = (n + 3) / 4;
    *n0 = (int)((long)quads * id / nt) * 4;
    *n1 = (int)((long)quads * (id + 1) / nt) * 4;
    *n1 = *n1 < n ? *n1 : n;
    *n0 = *n0 < n ? *n0 : n;
}

// BitLinear k of layer l, called by every thread of the region: one thread quantizes inp (IC)
// to int8 codes and gathers them (the training forward's bitlinear_input_forward, so the codes
// are the same), then each thread computes its rows of out (OC) = the exact int32 product,
// scaled as dequant_epilogue scales it, plus the bias. Ends without a barrier: the caller
// puts one before anything reads out.
static void runner_bitlinear_int8(Runner *r, float *out, const float *inp, int k, int l) {
    GPT2 *g = &r->gpt;
    int OC, IC;
    bitlinear_shape(&g->config, k, &OC, &IC);
    const size_t rb = pack2_row_bytes(IC);
    const uint8_t *w2 = g->w2_memory + g->w2_offset[k] + (size_t)l * OC * rb;
    int n0, n1;
    thread_rows(OC, &n0, &n1);
    int serial = 0;
    #pragma omp single nowait
    {
        bitlinear_input_forward(r->xn, g->xi8, &r->inv_s, &r->rstd, inp, 1, IC, &g->quant);
        r->xsum = gemv_i8_t2_prepare(r->xs, g->xi8, IC);
        serial = 1;
    }
    // meanwhile the other threads fetch their rows of the weights (at most 295 KB each for
    // GPT-2, within a core's L2): the trits come from DRAM, as the head streamed through the
    // caches since the last token, and the serial step would otherwise leave the memory idle
    if (!serial) {
        const char *p = (const char *)(w2 + (size_t)n0 * rb), *end = (const char *)(w2 + (size_t)n1 * rb);
        for (; p < end; p += 64) { __builtin_prefetch(p, 0, 3); }
    }
    #pragma omp barrier // xs is ready
    const float *bias = g->params_memory; // the tensor after the weight is its bias
    for (int i = 0; i <= BITLINEAR_TENSOR[k]; i++) { bias += g->param_sizes[i]; }
    bias += (size_t)l * OC;
    gemv_i8_t2_rows(g->acc, r->xs, r->xsum, w2, IC, n0, n1);
    dequant_row(out + n0, g->acc + n0, g->scales[l * 4 + k] * r->inv_s, bias + n0, n1 - n0);
}

// logits[v0..v1) = x (C) . rows v0..v1 of wte (fp16, (Vp, C)): 4 rows at a time, so each load
// of x feeds 4 FMAs and the 4 sums share one horizontal reduction; the halves are widened to
// floats 8 at a time (F16C). The head is the largest read of a token (77 MB for GPT-2), from DRAM.
static void head_rows_half(float *logits, const float *x, const uint16_t *wte_half, int C, int v0, int v1) {
    int v = v0;
#if defined(__F16C__) && defined(__AVX2__) && defined(__FMA__)
    if (C % 8 == 0) {
        for (; v + 4 <= v1; v += 4) {
            const uint16_t *w = wte_half + (size_t)v * C;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0; i < C; i += 8) {
                __m256 xv = _mm256_loadu_ps(x + i);
                if (i % 32 == 0) { // each 64-byte line once: 4 KiB ahead in each of the 4 rows
                    for (int j = 0; j < 4; j++) { _mm_prefetch((const char *)(w + j * C + i) + 4096, _MM_HINT_NTA); }
                }
                a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), xv, a0);
                a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + C + i))), xv, a1);
                a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * C + i))), xv, a2);
                a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 3 * C + i))), xv, a3);
            }
            // [a0 a1 a2 a3] summed within each 128-bit half by two hadds, then the halves added
            __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            _mm_storeu_ps(logits + v, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
        }
    }
#endif
    for (; v < v1; v++) {
        const uint16_t *w = wte_half + (size_t)v * C;
        float sum = 0.0f;
        for (int i = 0; i < C; i++) { sum += half_to_float(w[i]) * x[i]; }
        logits[v] = sum;
    }
}

// the same with wte in fp32 (a packed file with -ff 32)
static void head_rows_f32(float *logits, const float *x, const float *wte, int C, int v0, int v1) {
    int v = v0;
    for (; v + 4 <= v1; v += 4) {
        const float *w0 = wte + (size_t)v * C, *w1 = w0 + C, *w2 = w1 + C, *w3 = w2 + C;
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        #pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int i = 0; i < C; i++) { s0 += w0[i] * x[i]; s1 += w1[i] * x[i]; s2 += w2[i] * x[i]; s3 += w3[i] * x[i]; }
        logits[v] = s0; logits[v + 1] = s1; logits[v + 2] = s2; logits[v + 3] = s3;
    }
    for (; v < v1; v++) {
        const float *w = wte + (size_t)v * C;
        float s = 0.0f;
        #pragma omp simd reduction(+ : s)
        for (int i = 0; i < C; i++) { s += w[i] * x[i]; }
        logits[v] = s;
    }
}

static float *runner_forward_int8(Runner *r, int token, int pos, int logits_k) {
    GPT2 *g = &r->gpt;
    GPT2Config *c = &g->config;
    int C = c->channels, NH = c->num_heads, V = c->vocab_size, Vp = c->padded_vocab_size;
    ParameterTensors p = g->params;
    #pragma omp parallel
    {
        #pragma omp single
        for (int i = 0; i < C; i++) { r->x[i] = p.wte[(size_t)token * C + i] + p.wpe[(size_t)pos * C + i]; }
        for (int l = 0; l < c->num_layers; l++) {
            #pragma omp single
            layernorm_forward(r->ln, r->mean_rstd, r->mean_rstd + 1, r->x, p.ln1w + l * C, p.ln1b + l * C, 1, C);
            runner_bitlinear_int8(r, r->qkv, r->ln, 0, l);
            #pragma omp barrier
            #pragma omp for schedule(static)
            for (int h = 0; h < NH; h++) { runner_attention_head(r, l, pos, h); }
            runner_bitlinear_int8(r, r->proj, r->atty, 1, l);
            #pragma omp barrier
            #pragma omp single
            {
                for (int i = 0; i < C; i++) { r->x[i] += r->proj[i]; }
                layernorm_forward(r->ln, r->mean_rstd, r->mean_rstd + 1, r->x, p.ln2w + l * C, p.ln2b + l * C, 1, C);
            }
            runner_bitlinear_int8(r, r->fch, r->ln, 2, l);
            int n0, n1; // GELU on this thread's rows of fc, as they are ready
            thread_rows(4 * C, &n0, &n1);
            gelu_forward(r->fch + 4 * C + n0, r->fch + n0, (size_t)(n1 - n0));
            #pragma omp barrier
            runner_bitlinear_int8(r, r->proj, r->fch + 4 * C, 3, l);
            #pragma omp barrier
            #pragma omp single
            for (int i = 0; i < C; i++) { r->x[i] += r->proj[i]; }
        }
        #pragma omp single
        layernorm_forward(r->ln, r->mean_rstd, r->mean_rstd + 1, r->x, p.lnfw, p.lnfb, 1, C);
        // the tied head over the V real tokens; the padding rows V..Vp are never sampled
        int v0, v1;
        thread_rows(V, &v0, &v1);
        if (logits_k > 0 && logits_k < V && r->head_q != NULL) { // screened: see head_screen_init
            head_screen_rows(r->approx, r->ln, r->head_q, r->head_step, V, C, v0, v1);
            for (int v = v0; v < v1; v++) { r->logits[v] = -INFINITY; }
            #pragma omp barrier // all of approx is ready
            #pragma omp single
            head_screen_select(r, r->ln, logits_k);
            // (the single's barrier: groups are ready) each group as the full head computes it
            #pragma omp for schedule(static)
            for (int i = 0; i < r->num_groups; i++) {
                int g0 = 4 * r->groups[i], g1 = g0 + 4 < V ? g0 + 4 : V;
                if (r->wte_half != NULL) { head_rows_half(r->logits, r->ln, r->wte_half, C, g0, g1); }
                else { head_rows_f32(r->logits, r->ln, p.wte, C, g0, g1); }
            }
        } else if (logits_k >= 0) {
            if (r->wte_half != NULL) { head_rows_half(r->logits, r->ln, r->wte_half, C, v0, v1); }
            else { head_rows_f32(r->logits, r->ln, p.wte, C, v0, v1); }
        }
    }
    if (logits_k > 0 && logits_k < V && r->head_q != NULL) {
        r->screened_tokens++;
        r->exact_rows += (long long)4 * r->num_groups;
    }
    for (int v = V; v < Vp; v++) { r->logits[v] = 0.0f; }
    return r->logits;
}

// the logits (Vp) of token `token` at position `pos`, given the cache of 0..pos-1; logits_k
// says which of them (LOGITS_NONE, LOGITS_ALL, or k: see the defines at the top)
static float *runner_forward(Runner *r, int token, int pos, int logits_k) {
    return r->use_int8 ? runner_forward_int8(r, token, pos, logits_k) : runner_forward_fp32(r, token, pos, logits_k);
}

static void runner_free(Runner *r) {
    free(r->wte_half);
    free(r->key_cache); free(r->value_cache); free(r->x); free(r->ln); free(r->mean_rstd); free(r->qkv);
    free(r->att); free(r->atty); free(r->proj); free(r->fch); free(r->xn);
    free(r->logits); free(r->xs);
    free(r->head_q); free(r->head_step); free(r->approx); free(r->groups);
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

// -x model.gguf: the model for llama.cpp (llmc/gguf.h): its gpt2 architecture, the BitLinear
// matrices as TQ2_0 (-pf 2) or TQ1_0 (-pf 3), the embeddings in fp32 or fp16 (-ff), GPT-2's
// tokenizer from -tf. From a checkpoint or a packed file (both hold the trits and scales);
// a model trained with the inner RMSNorm (-rn 1) is refused: llama.cpp's graph has no such norm.
static void export_gguf(const char *model_path, const char *out_path, int trit_format, int float_format,
                        const char *tokenizer_path) {
    GPT2 g;
    runner_load_model(&g, model_path);
    const int8_t *trits[NUM_BITLINEAR];
    for (int k = 0; k < NUM_BITLINEAR; k++) { trits[k] = g.trits + g.wq_offset[k]; }
    GGUFSizes sz = gguf_export(out_path, &g.config, &g.quant, trits, g.scales, g.params_memory, tokenizer_path,
                               trit_format == 3, float_format, model_path);
    double mb = 1e6;
    const char *type = g.quant.weight_quant == WQ_FP ? (float_format == 16 ? "F16" : "F32")
                                                     : (trit_format == 3 ? "TQ1_0, 1.6875" : "TQ2_0, 2.0625");
    printf("wrote %s (GGUF, llama.cpp's gpt2): %zu BitLinear weights as %s%s\n", out_path,
           g.num_bitlinear_weights, type, g.quant.weight_quant == WQ_FP ? "" : " bits/weight");
    printf("  BitLinear matrices  %10.2f MB  (fp32: %.2f MB)\n", sz.matrices / mb, g.num_bitlinear_weights * 4 / mb);
    printf("  other tensors       %10.2f MB  (embeddings fp%d, norms and biases fp32)\n", sz.other / mb, float_format);
    printf("  tokenizer           %10.2f MB  (tokens, merges)\n", sz.tokenizer / mb);
    printf("  total               %10.2f MB\n", sz.total / mb);
    gpt2_free(&g);
}

// ----------------------------------------------------------------------------
// generation

#ifndef RUN_TESTING
// the prompt's tokens into out (at most max_out); tok is the tokenizer main loaded
static int encode_prompt(const char *prompt, const Tokenizer *tok, int *out, int max_out) {
    BPEEncoder enc;
    bpe_init(&enc, tok);
    int n = bpe_encode(&enc, prompt, strlen(prompt), out, max_out);
    bpe_free(&enc);
    return n;
}


static void usage(const char *prog) {
    printf("usage: %s -e MODEL [flags]   (MODEL: a training checkpoint or a packed model)\n\n", prog);
    printf("  -e   model file                                              (required)\n");
    printf("  -x   export MODEL to this file and exit: a packed model, or for a name ending in .gguf\n"
           "       a GGUF file for llama.cpp (TQ2_0, -pf 3: TQ1_0; models trained with -rn 0)\n");
    printf("  -pf  packed trit format: 2 (2 bits/weight) or 3 (1.6 bits)    (default 2)\n");
    printf("  -ff  float format of the other tensors when exporting: 32|16 (default 32)\n");
    printf("  -p   prompt text                                             (default: start from <|endoftext|>)\n");
    printf("  -n   number of samples                                       (default 1)\n");
    printf("  -g   new tokens per sample                                   (default 64)\n");
    printf("  -st  temperature (0 = argmax)                                (default 1.0)\n");
    printf("  -tk  top-k (0 = all)                                         (default 40)\n");
    printf("       (with top-k, the int8 path computes in full only the rows of the head that can be in\n"
           "        the top k: the same samples, faster; -tk 0 computes them all)\n");
    printf("  -sd  random seed                                             (default 1337)\n");
    printf("  -tf  tokenizer file                                          (default data/gpt2_tokenizer.bin)\n");
    printf("  -k   BitLinear kernel: int8 (packed trits) | float (fp32)    (default int8)\n");
    printf("  -bench 1: time decoding with the int8 and the fp32 kernels, same prompt and length\n");
}

// an int flag: the whole value, within int's range (strtol's long is wider: no silent cast)
static int parse_int(const char *flag, const char *v) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0 || x < -2147483647L || x > 2147483647L) {
        fprintf(stderr, "error: flag %s expects an integer that fits an int, got '%s'\n"
                "---> HINT: run_gpt2_1bit -h lists every flag\n", flag, v);
        exit(EXIT_FAILURE);
    }
    return (int)x;
}

// a float flag: a finite number (strtof also reads "nan" and "inf")
static float parse_float(const char *flag, const char *v) {
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    if (end == v || *end != '\0' || errno != 0 || !isfinite(x)) {
        fprintf(stderr, "error: flag %s expects a finite number, got '%s'\n"
                "---> HINT: run_gpt2_1bit -h lists every flag\n", flag, v);
        exit(EXIT_FAILURE);
    }
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
        int reading_prompt = pos + 1 < n_prompt;
        // the logits sample_logits needs: none, those that can be in the top k, or all
        int logits_k = reading_prompt ? LOGITS_NONE : (temperature <= 0.0f ? 1 : (top_k > 0 ? top_k : LOGITS_ALL));
        float *logits = runner_forward(r, token, pos, logits_k);
        t += now_seconds() - t0;
        if (reading_prompt) { token = prompt[pos + 1]; continue; }
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
    if (export_path != NULL) {
        size_t n = strlen(export_path);
        if (n > 5 && strcmp(export_path + n - 5, ".gguf") == 0) {
            export_gguf(model_path, export_path, trit_format, float_format, tokenizer_path);
        } else {
            export_packed(model_path, export_path, trit_format, float_format);
        }
        return 0;
    }
    if (prompt != NULL && prompt[0] == '\0') {
        fprintf(stderr, "error: -p is empty\n---> HINT: leave -p out to start from <|endoftext|>\n");
        return 1;
    }
    // a prompt needs the tokenizer: an error before the model loads, not tokenizer_init's warning
    if (prompt != NULL && access(tokenizer_path, F_OK) != 0) {
        fprintf(stderr, "error: -p needs the tokenizer file, and -tf '%s' does not exist\n"
                "---> HINT: run python3 prepro_tinyshakespeare.py to write it, or pass -tf PATH\n", tokenizer_path);
        return 1;
    }

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
        int n = encode_prompt(prompt, &tok, tokens + 1, (int)(cap - 1));
        // the context holds <|endoftext|>, the prompt and at least one new token
        if (n + 2 > c->max_seq_len) {
            fprintf(stderr, "error: -p is %d tokens long; at most %d fit the model's context of %d tokens "
                    "(with <|endoftext|> before it and one new token after)\n"
                    "---> HINT: shorten the prompt to %d tokens or fewer\n", n, c->max_seq_len - 2, c->max_seq_len,
                    c->max_seq_len - 2);
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
        if (r.screened_tokens > 0) {
            printf("  head: %.0f of %d rows computed in full per sampled token (screened by its int8 copy)\n",
                   (double)r.exact_rows / r.screened_tokens, c->vocab_size);
        }
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
