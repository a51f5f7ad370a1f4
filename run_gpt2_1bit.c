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
         (beside llama.cpp on the same model: dev/bench_decode.sh)
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

#define RUNNER_MAX_THREADS 256 // the int8 path's threads (more are not used)

// one thread's copy of the int8 path's serial steps (see runner_forward_int8): every thread
// computes the residual stream, the norms and the BitLinear inputs itself, so no thread waits
typedef struct {
    float *x, *ln;                 // (C) the residual stream and a norm's output
    float *xn;                     // (4C) a BitLinear input, normalized (bitlinear_input_forward's xq)
    int8_t *xi8;                   // (4C) its int8 codes
    uint8_t *xs;                   // its codes gathered for the GEMV (gemv_i8_t2_scratch_bytes(4C))
    int32_t xsum;                  // sum of the codes
    float inv_s, rstd;             // 1/s of the codes, the inner norm's 1/rms
    float mean_rstd[2];            // layernorm's statistics (not used)
    int16_t *x16;                  // (C) the head screen's input: the final norm's output in int16
    int8_t *x16_pat;               // (n4_pattern_bytes(C)) the same, as the AVX-512 kernel reads it
    float *heap;                   // (k) the k largest lower ends of this thread's rows of the head
    int num_refined, num_groups;   // 4-row groups of the head this thread refined to 8 bits, computed exactly
    int num_pass1;                 // groups whose first interval reaches the final threshold (refine_all)
} RunnerThread;

typedef struct {
    GPT2 gpt;                      // config, modes, params; BitLinear tensors hold latent W (checkpoint) or W_q (packed)
    int use_int8;                  // 1: BitLinear as int8 x packed trits; 0: fp32 matmul on W_q
    uint16_t *wte_half;            // (V, C) the tied head in fp16 (head_half_index), when the packed file stores it so (else NULL)
    float *key_cache;              // (L, maxT, C)
    float *value_cache;            // (L, maxT, C)
    // one token's activations (fp32 path; the int8 path uses qkv, att, atty, proj, fch, logits, and th)
    float *x, *ln, *mean_rstd, *qkv, *att, *atty, *proj, *fch, *xn, *logits; // att: (NH, maxT), a row per head
    RunnerThread *th[RUNNER_MAX_THREADS]; // the int8 path's per-thread state, nth of them
    int nth;
    int heap_cap;                  // floats allocated in each th[t]->heap
    // the int8 path's screening copy of the head (head_screen_init): row v of the head ~ d_v * q_v, the
    // int8 codes q_v split as 16 (u - 8) + lo into two 4-bit matrices
    uint8_t *head_u, *head_lo;     // (V4, C/2) 4-bit codes packed by pack_n4x4, V4 = V / 4 * 4; NULL where the full head is computed
    float *head_step;              // (V) step d_v
    int32_t *head_qn;              // (V) ||q_v||_1, for the bound
    int32_t *dot, *dot_lo;         // (V) u_v . x16 and lo_v . x16 of the current token
    float *approx, *err;           // (V) the current token's screening logits and their error bounds
    int refine_all;                // 1: read both nibbles of every row (runner_head_screened)
    long long refined_rows;        // rows of the head screened with all 8 bits, summed over tokens (statistics)
    long long exact_rows;          // rows of the head computed exactly, summed over tokens
    long long screened_tokens;     // tokens whose head was screened
} Runner;

// The fp16 head, stored for its kernel: when C % 8 == 0 the rows go in groups of 4 (the tile the
// kernel computes), interleaved 8 values at a time: [row 0: cols 0..7][row 1: 0..7][row 2][row 3]
// [row 0: 8..15]..., so a tile reads one stream, not four (as the screen's codes); the last V % 4
// rows, and every row when C % 8 != 0, are stored one after the other.
static size_t head_half_index(int v, int i, int V, int C) {
    if (C % 8 != 0 || v >= V / 4 * 4) { return (size_t)v * C + i; }
    return (size_t)(v / 4) * 4 * C + (size_t)(i / 8) * 32 + (v % 4) * 8 + i % 8;
}

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
        gpt2_set_weight_format(gpt, TW_T2); // the decoder's GEMV kernels read 2-bit rows
        gpt2_quantize_weights(gpt);
        return 0;
    }
    PackedModel pm;
    packed_read(&pm, path);
    gpt->config = pm.config;
    gpt->quant = pm.quant;
    gpt2_allocate(gpt);
    gpt2_set_weight_format(gpt, TW_T2); // the decoder's GEMV kernels read 2-bit rows
    memcpy(gpt->params_memory, pm.params_memory, gpt->num_parameters * sizeof(float));
    // the quantized weights are the stored ones: fill wq, trits and scales
    // directly and mark them fresh, so nothing recomputes a scale from W_q
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(&gpt->config, k, &OC, &IC);
        size_t n = (size_t)gpt->config.num_layers * OC * IC;
        const float *src = gpt->params_memory + bitlinear_tensor_offset(gpt->param_sizes, k);
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
// So the int8 path first scores every row with a 4-bit copy of the head (a quarter of the bytes),
// refines the rows that may matter with 4 more bits, and computes in full precision only the rows
// that can be in the top k. Exactly those:
//   - row v of the head, h_v (fp16 or fp32 values), is kept as int8 codes q_v and a step
//     d_v = max|h_v| / 127, q_v = round(h_v / d_v): |h_vi - d_v q_vi| <= d_v / 2; each code is
//     split as q = 16 (u - 8) + lo, u and lo in 0..15 (two nibbles: 19.3 MB each for GPT-2);
//   - the token's final-norm output x (C floats) goes to int16: s = max|x| / X, X = n4_xmax(C)
//     (16319 for C = 768), x16_i = round(x_i / s): |x_i - s x16_i| <= s / 2 (+ float rounding);
//   - with S = sum(x16): D_v = q_v . x16 = 16 (u_v . x16 - 8 S) + lo_v . x16, exact integers
//     (llmc/ternary_kernels.h, gemv_n4x4_i16: VNNI, AVX2 or scalar, the same integers), and
//       h_v . x - d_v s D_v = (h_v - d_v q_v) . x + d_v q_v . (x - s x16)
//     |h_v . x - d_v s D_v| <= (d_v / 2) ||x||_1 + (d_v / 2) s ||q_v||_1.
// The full head's own float sum of the C terms (each <= 127.5 d_v |x_i|) rounds by at most
// C * 2^-24 * 128 d_v ||x||_1 < 2^-5 d_v ||x||_1 for C <= 4096; the screen's few float roundings,
// the quantizers' and ||x||_1's are below 2^-12 of the terms. So with
//     err_v = HEAD_SCREEN_ERR * d_v * (||x||_1 + s ||q_v||_1),   HEAD_SCREEN_ERR = 0.5 + 2^-5 + slack = 0.625,
// the logit the full head computes lies in [approx_v - err_v, approx_v + err_v], approx_v = d_v s D_v.
// (The int16 x keeps the second term small: s ||q_v||_1 is about max|x| for GPT-2, ||x||_1 ~ 150 max|x|.)
// First pass, the u nibbles only: lo_v . x16 = 7.5 S + sum (lo - 7.5) x16, within 7.5 ||x16||_1 of
// 7.5 S, so approx1_v = d_v s (16 (u_v . x16 - 8 S) + 7.5 S) is within err_v + 7.5 d_v s ||x16||_1.
// A row's logit lies in its interval; let theta be the k-th largest lower end: k rows have logits
// >= theta, so a row whose upper end is below theta is strictly below k others and cannot be in
// the top k. Pass 1: theta1 from the first intervals; the 4-row groups holding a row whose upper
// end reaches theta1 get their lo nibbles read (typically a few hundred rows of 50257 for a
// trained model) and the exact D_v. Pass 2: theta2, the k-th largest of the best lower ends (a
// refined one is never lower), and the groups holding a row whose best upper end reaches theta2
// are computed by the full head's own code, in the full head's tiles, so their logits are
// bit-identical to the full head's; the others get -inf, and sample_logits (llmc/sampler.h) draws
// from the top k the same token it draws from the full logits. Argmax is k = 1. The last V % 4
// rows are computed in full from the start (their exact logit is their interval).

#define HEAD_SCREEN_ERR 0.625f
#define HEAD_SCREEN_MAX_C 4096 // the rounding term above assumes C <= 4096

// the codes, steps and norms of the screening copy; the head must have C % 16 == 0 (the nibble
// layout), else the full head is computed for every token
static void head_screen_init(Runner *r) {
    GPT2Config *c = &r->gpt.config;
    int V = c->vocab_size, C = c->channels, V4 = V / 4 * 4;
    uint8_t *u = (uint8_t *)mallocCheck((size_t)V * C), *lo = (uint8_t *)mallocCheck((size_t)V * C);
    r->head_step = (float *)mallocCheck((size_t)V * sizeof(float));
    r->head_qn = (int32_t *)mallocCheck((size_t)V * sizeof(int32_t));
    r->dot = (int32_t *)mallocCheck((size_t)V * sizeof(int32_t));
    r->dot_lo = (int32_t *)mallocCheck((size_t)V * sizeof(int32_t));
    r->approx = (float *)mallocCheck((size_t)V * sizeof(float));
    r->err = (float *)mallocCheck((size_t)V * sizeof(float));
    #pragma omp parallel for
    for (int v = 0; v < V; v++) {
        // the values the full head multiplies by: fp16 (as stored) or fp32
        float h[HEAD_SCREEN_MAX_C];
        for (int i = 0; i < C; i++) {
            h[i] = r->wte_half ? half_to_float(r->wte_half[head_half_index(v, i, V, C)]) : r->gpt.params.wte[(size_t)v * C + i];
        }
        float amax = 0.0f;
        for (int i = 0; i < C; i++) { amax = fabsf(h[i]) > amax ? fabsf(h[i]) : amax; }
        float d = amax / 127.0f;
        r->head_step[v] = d;
        int32_t qn = 0;
        for (int i = 0; i < C; i++) {
            float qv = d > 0.0f ? roundf(h[i] / d) : 0.0f;
            int q = (int)(qv > 127.0f ? 127.0f : (qv < -127.0f ? -127.0f : qv));
            int hi = q >> 4; // floor(q / 16), in -8..7
            u[(size_t)v * C + i] = (uint8_t)(hi + 8);
            lo[(size_t)v * C + i] = (uint8_t)(q - 16 * hi);
            qn += q < 0 ? -q : q;
        }
        r->head_qn[v] = qn;
    }
    r->head_u = (uint8_t *)mallocCheck((size_t)V4 * C / 2);
    r->head_lo = (uint8_t *)mallocCheck((size_t)V4 * C / 2);
    pack_n4x4(r->head_u, u, V4, C);
    pack_n4x4(r->head_lo, lo, V4, C);
    free(u); free(lo);
}

// the final norm's output x (C) -> x16 (C), |x16_i| <= n4_xmax(C); returns the step s
static float head_screen_input(int16_t *x16, const float *x, int C) {
    const int X = n4_xmax(C);
    float amax = 0.0f;
    for (int i = 0; i < C; i++) { amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax; }
    float s = amax / (float)X;
    for (int i = 0; i < C; i++) {
        float t = s > 0.0f ? rintf(x[i] / s) : 0.0f; // s rounded down can leave |x / s| a hair above X
        x16[i] = (int16_t)(t > X ? X : (t < -X ? -X : t));
    }
    return s;
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

// heap (k) <- the k largest of vals (n), -inf where n < k; heap[0] is the k-th largest
static void top_k_heap(float *heap, int k, const float *vals, int n) {
    for (int i = 0; i < k; i++) { heap[i] = i < n ? vals[i] : -INFINITY; }
    for (int i = k / 2 - 1; i >= 0; i--) { min_heap_sift_down(heap, k, i); }
    for (int i = k; i < n; i++) {
        if (vals[i] > heap[0]) { heap[0] = vals[i]; min_heap_sift_down(heap, k, 0); }
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
        int V = c->vocab_size, C = c->channels;
        r->wte_half = (uint16_t *)mallocCheck((size_t)V * C * sizeof(uint16_t));
        for (int v = 0; v < V; v++) {
            for (int i = 0; i < C; i++) { r->wte_half[head_half_index(v, i, V, C)] = float_to_half(r->gpt.params.wte[(size_t)v * C + i]); }
        }
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
    if (int8_path) {
        r->nth = 1;
#ifdef _OPENMP
        r->nth = omp_get_max_threads() < RUNNER_MAX_THREADS ? omp_get_max_threads() : RUNNER_MAX_THREADS;
#endif
        for (int t = 0; t < r->nth; t++) { // each its own allocations: no two threads write one cache line
            RunnerThread *th = (RunnerThread *)callocCheck(1, sizeof(RunnerThread) + 128);
            th->x = (float *)mallocCheck(C * sizeof(float));
            th->ln = (float *)mallocCheck(C * sizeof(float));
            th->xn = (float *)mallocCheck(4 * C * sizeof(float));
            th->xi8 = (int8_t *)mallocCheck(4 * C);
            th->xs = (uint8_t *)mallocCheck(gemv_i8_t2_scratch_bytes(4 * C));
            th->x16 = (int16_t *)mallocCheck(C * sizeof(int16_t));
            th->x16_pat = (int8_t *)mallocCheck(n4_pattern_bytes(C));
            r->th[t] = th;
        }
        if (C <= HEAD_SCREEN_MAX_C && C % 16 == 0) { head_screen_init(r); }
    }
}

// BitLinear k of layer l for one token: out (OC) = BitLinear(inp (IC)), by
// the training forward's own function (integer or fp32 path, as r->use_int8)
static void runner_bitlinear(Runner *r, float *out, const float *inp, int k, int l) {
    GPT2 *g = &r->gpt;
    int OC, IC;
    bitlinear_shape(&g->config, k, &OC, &IC);
    const float *bias = g->params_memory + bitlinear_bias_offset(g->param_sizes, k) + (size_t)l * OC;
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
// GEMV, the attention heads and the head by rows, and meet at barriers: 5 per layer, one after
// each step whose output all threads read next. The short serial steps between them (the
// residual adds, layernorm, the BitLinear input quantization and gather, all O(C)) are not
// run by one thread while the others wait at a barrier: every thread runs them, on its own
// copy (RunnerThread), with the same code on the same inputs, so the copies are bit-identical.
// layernorm_forward and bitlinear_input_forward are the training forward's functions (so the
// codes are the same); their own `omp parallel` runs as a team of one inside this region.

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

static RunnerThread *this_thread(Runner *r) {
#ifdef _OPENMP
    return r->th[omp_get_thread_num()];
#else
    return r->th[0];
#endif
}

// GELU on one thread's slice, inside the decoding region (gelu_forward would open a region of its own):
// the same expression as the trainer's gelu_forward, so the same values bit for bit (tests/test_run.c),
// x / (1 + e^(-2u)) with llmc/gelu_cpu.h's gelu_expf, in a loop the compiler vectorizes
static void gelu_forward_fast(float *out, const float *inp, int N) {
    #pragma omp simd
    for (int i = 0; i < N; i++) {
        float x = inp[i];
        float u = GELU_SCALING_FACTOR * (x + 0.044715f * x * x * x);
        out[i] = x / (1.0f + gelu_expf(-2.0f * u));
    }
}

// BitLinear k of layer l, first step, called by every thread of the region on the same input:
// inp (IC) -> this thread's int8 codes (the training forward's bitlinear_input_forward, so the
// codes are the same), gathered for the GEMV
static void runner_bitlinear_input(Runner *r, const float *inp, int k) {
    GPT2 *g = &r->gpt;
    RunnerThread *th = this_thread(r);
    int OC, IC;
    bitlinear_shape(&g->config, k, &OC, &IC);
    QuantConfig qk = quant_config_at(&g->quant, k);
    bitlinear_input_forward(th->xn, th->xi8, &th->inv_s, &th->rstd, inp, 1, IC, &qk);
    th->xsum = gemv_i8_t2_prepare(th->xs, th->xi8, IC);
}

// second step: this thread's rows of out (OC) = the exact int32 product, scaled as
// dequant_epilogue scales it, plus the bias. Ends without a barrier: the caller puts one
// before anything reads out.
static void runner_bitlinear_rows(Runner *r, float *out, int k, int l) {
    GPT2 *g = &r->gpt;
    RunnerThread *th = this_thread(r);
    int OC, IC;
    bitlinear_shape(&g->config, k, &OC, &IC);
    const uint8_t *w2 = g->w2_memory + g->w2_offset[k] + (size_t)l * OC * pack2_row_bytes(IC);
    int n0, n1;
    thread_rows(OC, &n0, &n1);
    const float *bias = g->params_memory + bitlinear_bias_offset(g->param_sizes, k) + (size_t)l * OC;
    gemv_i8_t2_rows(g->acc, th->xs, th->xsum, w2, IC, n0, n1);
    dequant_row(out + n0, g->acc + n0, g->scales[bitlinear_scale_index(l, k)] * th->inv_s, bias + n0, n1 - n0);
}

// logits[v0..v1) = x (C) . rows v0..v1 of the fp16 head (head_half_index): the rows of whole groups
// 4 at a time, each row in 8 lanes, lane j summing (with FMA) the columns i = j mod 8 in order, then
//     row = ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))
// the same float operations on every path (AVX2: F16C + FMA on 8 lanes; AVX-512: two rows per
// register; scalar: fmaf), so the logits are bit-identical whichever path runs; the other rows
// one plain sum each. The head is the largest read of a token (77 MB for GPT-2), from DRAM.
#ifdef TG1_CPU_X86
CPU_TARGET_BEGIN_AVX2
static void head_tiles_half_avx2(float *logits, const float *x, const uint16_t *hh, int C, int v0, int v1) {
    for (int v = v0; v < v1; v += 4) {
        const uint16_t *w = hh + (size_t)v * C; // 64 bytes per 8 columns of the 4 rows
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < C; i += 8) {
            const uint16_t *wi = w + 4 * i;
            _mm_prefetch((const char *)wi + 4096, _MM_HINT_NTA); // each 64-byte line once
            __m256 xv = _mm256_loadu_ps(x + i);
            a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wi)), xv, a0);
            a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wi + 8))), xv, a1);
            a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wi + 16))), xv, a2);
            a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wi + 24))), xv, a3);
        }
        // [a0 a1 a2 a3] summed within each 128-bit half by two hadds, then the halves added
        __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        _mm_storeu_ps(logits + v, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
    }
}
CPU_TARGET_END
CPU_TARGET_BEGIN_AVX512
static void head_tiles_half_avx512(float *logits, const float *x, const uint16_t *hh, int C, int v0, int v1) {
    for (int v = v0; v < v1; v += 4) {
        const uint16_t *w = hh + (size_t)v * C;
        __m512 a01 = _mm512_setzero_ps(), a23 = a01; // [row 0 lanes | row 1 lanes], [row 2 | row 3]
        for (int i = 0; i < C; i += 8) {
            const uint16_t *wi = w + 4 * i;
            _mm_prefetch((const char *)wi + 4096, _MM_HINT_NTA);
            __m512 xv = _mm512_broadcast_f32x8(_mm256_loadu_ps(x + i));
            a01 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)wi)), xv, a01);
            a23 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wi + 16))), xv, a23);
        }
        __m256 a0 = _mm512_castps512_ps256(a01), a1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a01), 1));
        __m256 a2 = _mm512_castps512_ps256(a23), a3 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a23), 1));
        __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        _mm_storeu_ps(logits + v, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
    }
}
CPU_TARGET_END
#endif

static void head_tiles_half_scalar(float *logits, const float *x, const uint16_t *hh, int C, int v0, int v1) {
    for (int v = v0; v < v1; v += 4) {
        const uint16_t *w = hh + (size_t)v * C;
        float a[4][8] = {{0.0f}};
        for (int i = 0; i < C; i += 8) {
            for (int r = 0; r < 4; r++) {
                for (int j = 0; j < 8; j++) { a[r][j] = fmaf(half_to_float(w[4 * i + 8 * r + j]), x[i + j], a[r][j]); }
            }
        }
        for (int r = 0; r < 4; r++) {
            logits[v + r] = ((a[r][0] + a[r][1]) + (a[r][2] + a[r][3])) + ((a[r][4] + a[r][5]) + (a[r][6] + a[r][7]));
        }
    }
}

static void head_rows_half(float *logits, const float *x, const uint16_t *hh, int V, int C, int v0, int v1) {
    int v = v0;
    if (C % 8 == 0 && v0 % 4 == 0) {
        int vend = v1 < V / 4 * 4 ? v1 : V / 4 * 4;
        int v4 = vend > v0 ? v0 + (vend - v0) / 4 * 4 : v0; // the whole groups in [v0, v1)
        switch (cpu_path()) {
#ifdef TG1_CPU_X86
        case CPU_PATH_AVX512: head_tiles_half_avx512(logits, x, hh, C, v0, v4); break;
        case CPU_PATH_AVX2: head_tiles_half_avx2(logits, x, hh, C, v0, v4); break;
#endif
        default: head_tiles_half_scalar(logits, x, hh, C, v0, v4);
        }
        v = v4;
    }
    for (; v < v1; v++) {
        float sum = 0.0f;
        for (int i = 0; i < C; i++) { sum += half_to_float(hh[head_half_index(v, i, V, C)]) * x[i]; }
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

// theta: the k-th largest of approx_v - err_v over all V rows, from this thread's rows [v0, v1):
// each thread keeps the k largest of its rows in its heap, then (after a barrier) every thread
// takes the k-th largest of the union of the heaps, the same value in all of them
static float head_screen_theta(Runner *r, int k, int v0, int v1) {
    RunnerThread *th = this_thread(r);
    float *heap = th->heap;
    int n = 0;
    for (int v = v0; v < v1; v++) {
        float lo = r->approx[v] - r->err[v];
        if (n < k) {
            heap[n++] = lo;
            if (n == k) { for (int i = k / 2 - 1; i >= 0; i--) { min_heap_sift_down(heap, k, i); } }
        } else if (lo > heap[0]) {
            heap[0] = lo;
            min_heap_sift_down(heap, k, 0);
        }
    }
    for (; n < k; n++) { heap[n] = -INFINITY; } // fewer than k rows here (any order: the merge re-heaps)
    #pragma omp barrier // every thread's heap is ready
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_num_threads();
#endif
    float *all = (float *)tk_scratch((size_t)(nt + 1) * k * sizeof(float));
    for (int t = 0; t < nt; t++) { memcpy(all + (size_t)t * k, r->th[t]->heap, (size_t)k * sizeof(float)); }
    float *top = all + (size_t)nt * k;
    top_k_heap(top, k, all, nt * k);
    #pragma omp barrier // (no thread refills its heap while another still reads it)
    return top[0];
}

// 1 if a row of the group [g0, g1) has its upper end at or above theta
static int head_group_reaches(const Runner *r, int g0, int g1, float theta) {
    int reach = 0;
    for (int v = g0; v < g1; v++) { reach |= r->approx[v] + r->err[v] >= theta; }
    return reach;
}

#define HEAD_CHUNK 256 // rows per chunk of the head's second and third steps, dealt out to the threads

// the exact D_v (both nibbles) of the rows [g0, g1) (whole groups) whose u nibbles' dot is in r->dot
static void head_refine(Runner *r, const RunnerThread *th, float s, float l1, int64_t S, int g0, int g1) {
    gemv_n4x4_i16(r->dot_lo, r->head_lo, th->x16, th->x16_pat, r->gpt.config.channels, g0, g1);
    for (int v = g0; v < g1; v++) {
        float d = r->head_step[v];
        int64_t D = 16 * ((int64_t)r->dot[v] - 8 * S) + r->dot_lo[v];
        r->approx[v] = d * (s * (float)D);
        r->err[v] = HEAD_SCREEN_ERR * d * (l1 + s * (float)r->head_qn[v]);
    }
}

// the screened head (see "the head, screened"), run by every thread on its rows [v0, v1)
// (multiples of 4) with its own copy of the final norm's output (th->ln): the logits of the rows
// that can be in the top k, -inf elsewhere. When the first pass let more than half of the groups
// through on the last token (a model whose logits are not yet spread, e.g. a fresh one), the
// second nibbles are read for every row at once (the bytes of an int8 screen, in two streams)
// until fewer than a quarter would have been let through.
static void runner_head_screened(Runner *r, int k, int v0, int v1) {
    GPT2Config *c = &r->gpt.config;
    int V = c->vocab_size, C = c->channels, V4 = V / 4 * 4;
    RunnerThread *th = this_thread(r);
    const float *wte = r->gpt.params.wte;
    float s = head_screen_input(th->x16, th->ln, C);
    float l1 = 0.0f;
    int64_t S = 0, X1 = 0; // sum(x16), ||x16||_1
    for (int i = 0; i < C; i++) { l1 += fabsf(th->ln[i]); S += th->x16[i]; X1 += th->x16[i] < 0 ? -th->x16[i] : th->x16[i]; }
    const int w1 = v1 < V4 ? v1 : V4; // this thread's whole groups [v0, w1); the last V % 4 rows in full
    if (w1 < v1) {
        if (r->wte_half != NULL) { head_rows_half(r->logits, th->ln, r->wte_half, V, C, w1, v1); }
        else { head_rows_f32(r->logits, th->ln, wte, C, w1, v1); }
        for (int v = w1; v < v1; v++) { r->approx[v] = r->logits[v]; r->err[v] = 0.0f; }
    }
    // pass 1: the u nibbles
    n4_prepare(th->x16_pat, th->x16, C);
    gemv_n4x4_i16(r->dot, r->head_u, th->x16, th->x16_pat, C, v0, w1);
    const float e16 = 7.5f * s * (float)X1; // the lo nibbles' part of the first interval, over d_v
    #define HEAD_APPROX1(v) (r->head_step[v] * (s * ((float)(16 * ((int64_t)r->dot[v] - 8 * S)) + 7.5f * (float)S)))
    #define HEAD_ERR1(v) (HEAD_SCREEN_ERR * r->head_step[v] * (l1 + s * (float)r->head_qn[v]) + r->head_step[v] * e16)
    th->num_refined = 0;
    if (!r->refine_all) {
        for (int v = v0; v < w1; v++) { r->approx[v] = HEAD_APPROX1(v); r->err[v] = HEAD_ERR1(v); }
        const float theta1 = head_screen_theta(r, k, v0, v1);
        // pass 2: the exact D_v of the groups that reach theta1, in runs of consecutive groups. How
        // many reach it depends on the rows, so the groups are dealt out in chunks as threads come free
        #pragma omp for schedule(dynamic, 1) // (its barrier: every approx is final before theta2)
        for (int chunk = 0; chunk < (V4 + HEAD_CHUNK - 1) / HEAD_CHUNK; chunk++) {
            const int c1 = (chunk + 1) * HEAD_CHUNK < V4 ? (chunk + 1) * HEAD_CHUNK : V4;
            for (int g0 = chunk * HEAD_CHUNK; g0 < c1;) {
                if (!head_group_reaches(r, g0, g0 + 4, theta1)) { g0 += 4; continue; }
                int g1 = g0 + 4;
                while (g1 < c1 && head_group_reaches(r, g1, g1 + 4, theta1)) { g1 += 4; }
                head_refine(r, th, s, l1, S, g0, g1);
                th->num_refined += (g1 - g0) / 4;
                g0 = g1;
            }
        }
    } else {
        head_refine(r, th, s, l1, S, v0, w1);
        th->num_refined = (w1 - v0) / 4;
        #pragma omp barrier // every approx is final before theta2
    }
    const float theta2 = head_screen_theta(r, k, v0, v1);
    // the groups that reach theta2, computed by the full head's code in the full head's tiles (dealt
    // out in chunks too; the region's end is the barrier after them)
    th->num_groups = 0;
    th->num_pass1 = 0; // (and how many groups the first pass alone would have let through theta2)
    #pragma omp for schedule(dynamic, 1) nowait
    for (int chunk = 0; chunk < (V4 + HEAD_CHUNK - 1) / HEAD_CHUNK; chunk++) {
        const int c1 = (chunk + 1) * HEAD_CHUNK < V4 ? (chunk + 1) * HEAD_CHUNK : V4;
        for (int g0 = chunk * HEAD_CHUNK; g0 < c1; g0 += 4) {
            if (head_group_reaches(r, g0, g0 + 4, theta2)) {
                if (r->wte_half != NULL) { head_rows_half(r->logits, th->ln, r->wte_half, V, C, g0, g0 + 4); }
                else { head_rows_f32(r->logits, th->ln, wte, C, g0, g0 + 4); }
                th->num_groups++;
            } else {
                for (int v = g0; v < g0 + 4; v++) { r->logits[v] = -INFINITY; }
            }
            if (r->refine_all) {
                int reach = 0;
                for (int v = g0; v < g0 + 4; v++) { reach |= HEAD_APPROX1(v) + HEAD_ERR1(v) >= theta2; }
                th->num_pass1 += reach;
            }
        }
    }
    #undef HEAD_APPROX1
    #undef HEAD_ERR1
}

static float *runner_forward_int8(Runner *r, int token, int pos, int logits_k) {
    GPT2 *g = &r->gpt;
    GPT2Config *c = &g->config;
    int C = c->channels, NH = c->num_heads, V = c->vocab_size, Vp = c->padded_vocab_size;
    ParameterTensors p = g->params;
    const int screened = logits_k > 0 && logits_k < V && r->head_u != NULL;
    if (screened && logits_k > r->heap_cap) { // grown before the region: each thread's heap holds k
        for (int t = 0; t < r->nth; t++) {
            free(r->th[t]->heap);
            r->th[t]->heap = (float *)mallocCheck((size_t)logits_k * sizeof(float));
        }
        r->heap_cap = logits_k;
    }
    int nthreads = r->nth; // at most as many threads as there are RunnerThreads
    #pragma omp parallel num_threads(nthreads)
    {
        RunnerThread *th = this_thread(r);
        float *fc = r->fch, *fc_gelu = r->fch + 4 * C;
        int n0, n1;
        for (int i = 0; i < C; i++) { th->x[i] = p.wte[(size_t)token * C + i] + p.wpe[(size_t)pos * C + i]; }
        for (int l = 0; l < c->num_layers; l++) {
            layernorm_forward(th->ln, th->mean_rstd, th->mean_rstd + 1, th->x, p.ln1w + l * C, p.ln1b + l * C, 1, C);
            runner_bitlinear_input(r, th->ln, 0);
            runner_bitlinear_rows(r, r->qkv, 0, l);
            #pragma omp barrier // 1: qkv is ready
            #pragma omp for schedule(static) nowait
            for (int h = 0; h < NH; h++) { runner_attention_head(r, l, pos, h); }
            #pragma omp barrier // 2: atty is ready
            runner_bitlinear_input(r, r->atty, 1);
            runner_bitlinear_rows(r, r->proj, 1, l);
            #pragma omp barrier // 3: proj is ready
            for (int i = 0; i < C; i++) { th->x[i] += r->proj[i]; }
            layernorm_forward(th->ln, th->mean_rstd, th->mean_rstd + 1, th->x, p.ln2w + l * C, p.ln2b + l * C, 1, C);
            runner_bitlinear_input(r, th->ln, 2);
            runner_bitlinear_rows(r, fc, 2, l);
            thread_rows(4 * C, &n0, &n1); // GELU on this thread's rows of fc, as they are ready
            gelu_forward_fast(fc_gelu + n0, fc + n0, n1 - n0);
            #pragma omp barrier // 4: the GELU output is ready
            runner_bitlinear_input(r, fc_gelu, 3);
            runner_bitlinear_rows(r, r->proj, 3, l);
            #pragma omp barrier // 5: proj is ready (and, as every thread is past 4, nobody reads fc_gelu)
            for (int i = 0; i < C; i++) { th->x[i] += r->proj[i]; }
        }
        // the tied head over the V real tokens; the padding rows V..Vp are never sampled
        if (logits_k != LOGITS_NONE) {
            layernorm_forward(th->ln, th->mean_rstd, th->mean_rstd + 1, th->x, p.lnfw, p.lnfb, 1, C);
            int v0, v1;
            thread_rows(V, &v0, &v1);
            if (screened) { // see "the head, screened"
                runner_head_screened(r, logits_k, v0, v1);
            } else if (r->wte_half != NULL) {
                head_rows_half(r->logits, th->ln, r->wte_half, V, C, v0, v1);
            } else {
                head_rows_f32(r->logits, th->ln, p.wte, C, v0, v1);
            }
        }
    }
    if (screened) {
        r->screened_tokens++;
        long long refined = 0, pass1 = 0, groups = V / 4;
        for (int t = 0; t < nthreads; t++) {
            refined += r->th[t]->num_refined;
            pass1 += r->th[t]->num_pass1;
            r->exact_rows += (long long)4 * r->th[t]->num_groups + (t == nthreads - 1 ? V % 4 : 0);
        }
        r->refined_rows += 4 * refined;
        // the next token's mode (see runner_head_screened): all rows when the first pass let more
        // than half through; back to two passes when it would let fewer than a quarter through
        r->refine_all = r->refine_all ? 4 * pass1 >= groups : 2 * refined > groups;
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
    free(r->logits);
    for (int t = 0; t < r->nth; t++) {
        RunnerThread *th = r->th[t];
        free(th->x); free(th->ln); free(th->xn); free(th->xi8); free(th->xs); free(th->x16); free(th->x16_pat); free(th->heap);
        free(th);
    }
    free(r->head_u); free(r->head_lo); free(r->head_step); free(r->head_qn); free(r->dot); free(r->dot_lo);
    free(r->approx); free(r->err);
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

#ifndef RUN_TESTING // (main calls it; the tests drive llmc/gguf.h through tests/test_gguf.c)
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
#endif

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


// ----------------------------------------------------------------------------
// flags: a table on llmc/args.h's machinery, as the trainers' (-h lists them with their defaults)

typedef struct {
    const char *model_path;     // -e
    const char *export_path;    // -x
    int trit_format;            // -pf
    int float_format;           // -ff
    const char *prompt;         // -p
    int n_samples;              // -n
    int n_new;                  // -g
    float temperature;          // -st
    int top_k;                  // -tk
    int seed;                   // -sd
    const char *tokenizer_path; // -tf
    const char *kernel;         // -k
    int bench;                  // -bench
} RunArgs;

static const ArgSpec RUN_ARG_SPECS[] = {
    ARG_OF(RunArgs, "-e", ARG_STR, model_path, "model file: a training checkpoint or a packed model (required)"),
    ARG_OF(RunArgs, "-x", ARG_STR, export_path, "export -e to this file and exit: packed, or GGUF (a name *.gguf)"),
    ARG_OF(RunArgs, "-pf", ARG_INT, trit_format, "packed trit format: 2 (2 bits/weight; GGUF TQ2_0) or 3 (1.6; TQ1_0)"),
    ARG_OF(RunArgs, "-ff", ARG_INT, float_format, "float format of the other tensors when exporting: 32 or 16"),
    ARG_OF(RunArgs, "-p", ARG_STR, prompt, "prompt text (none: start from <|endoftext|>)"),
    ARG_OF(RunArgs, "-n", ARG_INT, n_samples, "number of samples"),
    ARG_OF(RunArgs, "-g", ARG_INT, n_new, "new tokens per sample"),
    ARG_OF(RunArgs, "-st", ARG_FLOAT, temperature, "temperature (0 = argmax)"),
    ARG_OF(RunArgs, "-tk", ARG_INT, top_k, "top-k (0 = all; see below)"),
    ARG_OF(RunArgs, "-sd", ARG_INT, seed, "random seed"),
    ARG_OF(RunArgs, "-tf", ARG_STR, tokenizer_path, "GPT-2 tokenizer file"),
    ARG_OF(RunArgs, "-k", ARG_STR, kernel, "BitLinear kernel: int8 (int8 x packed trits) or float (fp32)"),
    ARG_OF(RunArgs, "-bench", ARG_INT, bench, "1: time decoding with the int8 and fp32 kernels; 2: int8 only (0 = off)"),
};
static const ArgTable RUN_ARGS = {RUN_ARG_SPECS, (int)(sizeof(RUN_ARG_SPECS) / sizeof(RUN_ARG_SPECS[0])),
    sizeof(RunArgs), "-e MODEL [flags]   (every flag takes one value)",
    "-x: GGUF for llama.cpp takes models trained with -rn 0.\n"
    "-tk: with top-k, the int8 path computes in full only the rows of the head that can be in the top k:\n"
    "the same samples, faster; -tk 0 computes them all. -bench 2 is what dev/bench_decode.sh runs."};

static void run_args_defaults(RunArgs *a) {
    memset(a, 0, sizeof(*a));
    a->model_path = NULL;
    a->export_path = NULL;
    a->trit_format = 2;
    a->float_format = 32;
    a->prompt = NULL;
    a->n_samples = 1;
    a->n_new = 64;
    a->temperature = 1.0f;
    a->top_k = 40;
    a->seed = 1337;
    a->tokenizer_path = "data/gpt2_tokenizer.bin";
    a->kernel = "int8";
    a->bench = 0;
}

// range checks; exits with a message naming the flag
static void run_args_validate(const RunArgs *a, const char *prog) {
    if (a->model_path == NULL) { args_error(prog, "-e MODEL is required%s%s", "", ""); }
    ARG_CHECK(a->trit_format == 2 || a->trit_format == 3, "-pf", "2 or 3");
    ARG_CHECK(a->float_format == 32 || a->float_format == 16, "-ff", "32 or 16");
    ARG_CHECK(strcmp(a->kernel, "int8") == 0 || strcmp(a->kernel, "float") == 0, "-k", "int8 or float");
    ARG_CHECK(a->n_samples >= 1, "-n", "at least 1");
    ARG_CHECK(a->n_new >= 1, "-g", "at least 1");
    ARG_CHECK(a->temperature >= 0.0f, "-st", "0 or more");
    ARG_CHECK(a->top_k >= 0, "-tk", "0 or more");
    ARG_CHECK(a->bench >= 0 && a->bench <= 2, "-bench", "0, 1 or 2");
    if (a->prompt != NULL && a->prompt[0] == '\0') {
        fprintf(stderr, "error: -p is empty\n---> HINT: leave -p out to start from <|endoftext|>\n");
        exit(EXIT_FAILURE);
    }
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
    RunArgs args;
    run_args_defaults(&args);
    args_parse(&RUN_ARGS, &args, argc, argv, NULL);
    run_args_validate(&args, argv[0]);
    const char *model_path = args.model_path, *export_path = args.export_path, *prompt = args.prompt;
    const char *tokenizer_path = args.tokenizer_path;
    int trit_format = args.trit_format, float_format = args.float_format, n_samples = args.n_samples;
    int n_new = args.n_new, top_k = args.top_k, bench = args.bench;
    float temperature = args.temperature;
    if (export_path != NULL) {
        size_t n = strlen(export_path);
        if (n > 5 && strcmp(export_path + n - 5, ".gguf") == 0) {
            export_gguf(model_path, export_path, trit_format, float_format, tokenizer_path);
        } else {
            export_packed(model_path, export_path, trit_format, float_format);
        }
        return 0;
    }
    // a prompt needs the tokenizer: an error before the model loads, not tokenizer_init's warning
    if (prompt != NULL && access(tokenizer_path, F_OK) != 0) {
        fprintf(stderr, "error: -p needs the tokenizer file, and -tf '%s' does not exist\n"
                "---> HINT: run python3 prepro_tinyshakespeare.py to write it, or pass -tf PATH\n", tokenizer_path);
        return 1;
    }

    Runner r;
    runner_init(&r, model_path, strcmp(args.kernel, "int8") == 0);
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
    uint64_t rng = (uint64_t)args.seed * 0x2545F4914F6CDD1DULL + 11;
    if (bench) {
        // the same model, prompt and length through both kernels, alternating, median of 3 (-bench 2:
        // the int8 kernel alone, for dev/bench_decode.sh)
        Runner rf;
        int nk = bench == 2 || !r.use_int8 ? 1 : 2;
        if (nk == 2) { runner_init(&rf, model_path, 0); }
        double t[2][3];
        for (int rep = 0; rep < 3; rep++) {
            for (int m = 0; m < nk; m++) {
                uint64_t rr = rng;
                t[m][rep] = generate(m == 0 ? &r : &rf, tokens, n_prompt, n_new, temperature, top_k, &rr, &tok, 0);
            }
        }
        int ntok = n_prompt + n_new - 1;
        double med[2];
        for (int m = 0; m < nk; m++) { med[m] = median(t[m], 3); }
        char cpu[256];
        printf("decode benchmark: %d tokens (prompt %d + %d new), top-k %d, median of 3; cpu: %s\n", ntok, n_prompt,
               n_new, top_k, cpu_features_describe(cpu, sizeof(cpu)));
        printf("  %-30s %8.1f tok/s   (path %s)\n", r.use_int8 ? "int8 x packed trits" : "fp32 (model has no int8 path)",
               ntok / med[0], ternary_kernels_backend());
        if (nk == 2) {
            printf("  %-30s %8.1f tok/s\n", "fp32 W_q (matmul_forward)", ntok / med[1]);
            printf("  speed-up: %.2fx\n", med[1] / med[0]);
        }
        if (r.screened_tokens > 0) {
            printf("  head: %.0f of %d rows computed in full per sampled token (screened by a 4-bit copy, %.0f rows "
                   "refined to 8 bits)\n", (double)r.exact_rows / r.screened_tokens, c->vocab_size,
                   (double)r.refined_rows / r.screened_tokens);
        }
        if (nk == 2) { runner_free(&rf); }
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
