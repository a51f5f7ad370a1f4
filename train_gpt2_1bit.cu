/*
 train_gpt2_1bit.cu: train a 1-bit (ternary, BitNet b1.58) GPT-2 on one GPU.

 The CUDA twin of train_gpt2_1bit.c: the same model, parameter layout, flags,
 checkpoint files and quantizer definitions (all from llmc/), so a checkpoint
 moves freely between the two and the CPU file is the oracle this one is
 tested against (tests/test_gpt2_1bit.cu).

 Build and run (trains a small model on tiny Shakespeare):
   make train_gpt2_1bitcu && ./train_gpt2_1bitcu
   make train_gpt2_1bitcu PRECISION=FP32     activations in fp32, for tests
   make train_gpt2_1bitcu ATTENTION=cublas   the plain cuBLAS attention instead of the fused one
 Every flag with its default: ./train_gpt2_1bitcu -h

 Precision: the latent (master) weights, their gradients and the AdamW moments
 are fp32. Activations and matmul inputs are floatX (bf16 by default, fp32
 with PRECISION=FP32); cuBLAS accumulates in fp32. The forward BitLinear in
 the b1.58 mode is exact integer arithmetic on the tensor cores: int8
 activation codes times trits stored as int8, summed in int32 by cuBLAS, then
 scaled once by gamma / s_x (BitNet b1.58's inference form). The backward
 runs in floatX through cuBLAS, with the straight-through estimator; with
 -bq int8 its dX = dY W_q takes the same integer form (dY rounded to int8 per
 token, times the trits transposed, int32 sums, scaled once), dW stays float.

 Every reduction that feeds the loss or the weights (LayerNorm and bias
 gradients, embedding gradients, the gradient norm, the weight scales) is done
 in a fixed order, so the same inputs give bit-identical results run after run:
 that is what makes resume exact and the determinism test possible.

 Attention is fused (llmc/attention.cuh): tiles of q, k, v in shared memory,
 an online softmax, the masked tiles skipped, bf16 tensor cores in the default
 build; only each row's log-sum-exp (L,B,NH,T) is kept for the backward, which
 recomputes the probabilities. ATTENTION=cublas builds the plain form instead
 (cuBLAS scores, softmax, weighted sum; the (T,T) probabilities kept per layer:
 18 GiB more at d12, B=64, T=1024), to time the two side by side.

 This file is the model: parameters and activations, forward, backward, update,
 checkpoints, main. The kernels and their launchers live in llmc/, one op per
 .cuh header, each named after its CPU twin in train_gpt2_1bit.c (the spec it is
 tested against): layernorm_forward here is layernorm_forward there.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include <cuda_runtime.h>
#include <cuda_profiler_api.h> // cudaProfilerStart/Stop: one step under ncu
#include "llmc/cuda_common.h" // defines: cudaCheck, cublasCheck, cudaMallocCheck, floatX, ceil_div, block_reduce_sum
#include "llmc/utils.h"       // defines: fopenCheck, freadCheck, mallocCheck, ensure_writable_dir, now_seconds
#include "llmc/gpt2_config.h" // defines: GPT2Config, QuantConfig, ParameterTensors, fill_in_parameter_sizes
#include "llmc/checkpoint.h"  // defines: model_file_open_modes, checkpoint_write, checkpoint_read_state
#include "llmc/dataloader.h"  // defines: DataLoader, dataloaders_open, dataloader_next_batch
#include "llmc/tokenizer.h"   // defines: Tokenizer, tokenizer_init, tokenizer_print
#include "llmc/sampler.h"     // defines: random_f32, sample_logits
#include "llmc/schedulers.h"  // defines: Schedule, schedule_lr, schedule_wd
#include "llmc/logger.h"      // defines: Logger, logger_log_train, logger_log_val
#include "llmc/args.h"        // defines: TrainArgs, train_args_parse, train_args_validate
#include "llmc/hellaswag.h"   // defines: EvalLoader, evalloader_init, evalloader_accuracy, HELLASWAG_PATH
#include "llmc/trit_stats.h"  // defines: TritStats, trit_stats_compute, trit_stats_print, bitlinear_trit_offsets
// the kernels, one op per header, each with its launcher (and the CPU function it is tested against)
#include "llmc/encoder.cuh"   // defines: encoder_forward, EncoderPlan, encoder_plan_build/upload, encoder_backward
#include "llmc/layernorm.cuh" // defines: layernorm_forward, fused_residual_layernorm_forward, layernorm_backward
#include "llmc/matmul.cuh"    // defines: cublas_handle, matmul_forward, matmul_backward, matmul_i8, COLSUM_ROWS
#include "llmc/quantize.cuh"  // defines: weights_quantize, trits_transpose, QUANT_BLOCKS (ternary.h: the spec)
#include "llmc/bitlinear.cuh" // defines: BitLinearScratch, bitlinear_forward, bitlinear_backward, bitlinear_int8_gemm_name
#include "llmc/attention.cuh" // defines: attention_forward, attention_backward (fused); *_cublas (ATTENTION=cublas)
#include "llmc/gelu.cuh"      // defines: gelu_backward (gelu_forward: fcproj's input pre-op, llmc/bitlinear.cuh)
#include "llmc/fused_classifier.cuh" // defines: fused_classifier (softmax + cross-entropy + dlogits), loss_mean
#include "llmc/global_norm.cuh"      // defines: global_norm, NORM_BLOCKS
#include "llmc/adamw.cuh"            // defines: adamw_update, copy_to_floatx

// ----------------------------------------------------------------------------
// the model: parameters and what the forward pass keeps

#define NUM_ACTS 19
typedef struct {
    floatX *encoded;   // (B,T,C)
    floatX *ln1;       // (L,B,T,C)
    float *ln1_mean;   // (L,B,T)
    float *ln1_rstd;   // (L,B,T)
    floatX *qkv;       // (L,B,T,3C)
    floatX *att;       // (L,B,NH,T,T) softmax probabilities (ATTENTION=cublas; else NULL)
    float *lse;        // (L,B,NH,T) log-sum-exp of each attention row (the fused attention; else NULL)
    floatX *atty;      // (L,B,T,C)
    floatX *residual2; // (L,B,T,C)
    floatX *ln2;       // (L,B,T,C)
    float *ln2_mean;   // (L,B,T)
    float *ln2_rstd;   // (L,B,T)
    floatX *fch;       // (L,B,T,4C); gelu(fch), fcproj's input, is never kept (see below)
    floatX *residual3; // (L,B,T,C)
    floatX *lnf;       // (B,T,C)
    float *lnf_mean;   // (B,T)
    float *lnf_rstd;   // (B,T)
    floatX *logits;    // (B,T,Vp), turned into dlogits in place by a training forward
    float *losses;     // (B,T)
} ActivationTensors;
// The inputs of the BitLinear matmuls (normed, quantized) are not kept: the
// backward pass recomputes them from the saved inputs (ln1, atty, ln2, fch)
// with the same kernel, which gives the same bits. fcproj reads fch with the
// GELU as its input pre-op (llmc/bitlinear.cuh, BL_PRE_GELU): where its input is
// quantized or normed, one kernel goes from fch to the codes or x_q, gelu(fch)
// applied in registers with gelu_forward's bits; with neither (fp mode),
// gelu_forward writes gelu(fch) into the BitLinear scratch for the matmul.

typedef struct {
    GPT2Config config;
    QuantConfig quant;
    // latent fp32 weights, gradients, AdamW moments: one layout (llmc/gpt2_config.h)
    ParameterTensors params;
    size_t param_sizes[NUM_PARAMETER_TENSORS];
    size_t num_parameters;
    float *params_memory;     // device
    floatX *params_x;         // device: floatX copy the matmuls read (= params_memory in the fp32 build)
    float *grads_memory;      // device
    float *m_memory, *v_memory; // device
    float *params_host;       // host copy, for checkpoints
    // the quantized BitLinear weights, rebuilt after each update: W_q in floatX
    // and the trits, both laid out as llmc/trit_stats.h says; scales, centres (L*4)
    size_t wq_offset[NUM_BITLINEAR];
    size_t num_bitlinear_weights;
    floatX *wq;
    int8_t *trits;
    int8_t *trits_t;          // -bq int8 only (else NULL): the trits transposed, each matrix (IC,OC), for dX = dY W_q
    float *scales, *centres;
    double *qpartial_abs, *qpartial_sum;
    int wq_stale;
    int int8_forward;         // 1: BitLinear forward as int8 x int8 trits (int8 activations, ternary/binary weights)
                              // (set it before the first forward: it decides which scratch is allocated)
    int8_t *trits_host, *trits_prev_host; // for the diagnostics
    int have_trits_prev;
    // activations, sized for the first forward pass's (B,T)
    ActivationTensors acts;
    int batch_size, seq_len;
    // scratch shared by all layers
    BitLinearScratch bl;      // x_q, codes (B,T,4C); inv_s, rstd (B,T); acc (B,T,4C); dx_n (B,T,4C)
    floatX *proj_out;         // (B,T,C) attproj / fcproj output before the residual add
    floatX *qkvr;             // (3,B,NH,T,HS) permuted q, k, v         (these three and dqkvr:
    floatX *preatt;           // (B,NH,T,T) scores, and their gradient     the cuBLAS attention's,
    floatX *vaccum;           // (B,NH,T,HS)                               NULL in the fused build)
    float *att_delta;         // (B,NH,T) the fused attention backward's rowsum(dout * out) (else NULL)
    floatX *att_ds;           // its dS tiles with GPT2_1BIT_ATTENTION_BWD=5 (llmc/attention.cuh form 5; else NULL)
    // backward scratch
    floatX *dresidual, *dbuf_c, *dbuf_3c, *dbuf_4c, *dqkvr;
    float *partial;           // column-sum partials
    float *norm_partial, *norm_out;
    int *inputs, *targets;    // device (B,T)
    // a forward's uploads (inputs, targets, the encoder plan) go from pinned memory with
    // asynchronous copies: the host queues the pass without waiting for the GPU
    int *stage_host;          // pinned: inputs (B,T), targets (B,T), the host plan's arrays
    cudaEvent_t stage_free;   // recorded after the uploads: stage_host may be refilled once it has passed
    EncoderPlan plan_host, plan; // the wte gradient's plan of the last training batch (llmc/encoder.cuh)
    int *plan_mem;            // device: the plan's arrays
    float *encoder_partial;   // device: its partial rows (encoder_plan_max_slots(B*T), C)
    int *count_host;          // host scratch (V+1) of encoder_plan_build
    float *losses_host;       // (B,T) per-position losses, filled from the device by gpt2_eval_losses (HellaSwag)
    // the loss stays on the device: every forward with targets writes its mean into loss_dev and
    // adds it to loss_sum (double) with loss_count++; gpt2_loss_mean reads their mean (one value)
    float *loss_dev;          // device: the mean loss of the last forward
    double *loss_sum;         // device: the sum of the mean losses since gpt2_loss_reset
    int loss_count;
    int loss_on_host;         // 1 (the default): each forward with targets also copies its mean loss into
                              // mean_loss (one float, a wait for the GPU), for callers that read it after
                              // every pass; the training loop sets 0 and reads gpt2_loss_mean once a step
    float mean_loss;          // with loss_on_host; -1 when the last forward pass had no targets
    int have_dlogits;         // 1 when the last forward pass left dlogits for gpt2_backward
    int last_B, last_T;       // the shape of the last forward pass
    float *logits_row_host;   // (Vp) for sampling
} GPT2;

static floatX *floatx_view(const GPT2 *model, const float *p) { // the floatX copy of a parameter
    return model->params_x + (p - model->params_memory);
}

// the backward of dX in integers (-bq int8): dY to int8 per token times the trits (llmc/bitlinear.cuh)
static int gpt2_uses_int8_backward(const GPT2 *model) {
    return model->quant.backward_quant == BQ_INT8 && model->quant.weight_quant != WQ_FP;
}

static void gpt2_allocate(GPT2 *model) {
    GPT2Config *cfg = &model->config;
    if (cfg->num_layers > 64) {
        fprintf(stderr, "error: %d layers: this trainer supports at most 64\n", cfg->num_layers);
        exit(EXIT_FAILURE);
    }
    fill_in_parameter_sizes(model->param_sizes, cfg);
    model->num_parameters = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { model->num_parameters += model->param_sizes[i]; }
    size_t np = model->num_parameters;
    model->params_memory = (float *)cudaMallocCheck(np * sizeof(float), "parameters");
    point_parameters(&model->params, model->param_sizes, model->params_memory);
#ifdef ENABLE_FP32
    model->params_x = model->params_memory;
#else
    model->params_x = (floatX *)cudaMallocCheck(np * sizeof(floatX), "bf16 parameters");
#endif
    model->grads_memory = (float *)cudaMallocCheck(np * sizeof(float), "gradients");
    model->m_memory = (float *)cudaMallocCheck(np * sizeof(float), "AdamW m");
    model->v_memory = (float *)cudaMallocCheck(np * sizeof(float), "AdamW v");
    cudaCheck(cudaMemset(model->grads_memory, 0, np * sizeof(float)));
    cudaCheck(cudaMemset(model->m_memory, 0, np * sizeof(float)));
    cudaCheck(cudaMemset(model->v_memory, 0, np * sizeof(float)));
    model->params_host = (float *)mallocCheck(np * sizeof(float));
    model->num_bitlinear_weights = bitlinear_trit_offsets(model->wq_offset, cfg);
    model->wq = (floatX *)cudaMallocCheck(model->num_bitlinear_weights * sizeof(floatX), "quantized weights");
    model->trits = (int8_t *)cudaMallocCheck(model->num_bitlinear_weights, "trits");
    model->trits_t = NULL;
    if (gpt2_uses_int8_backward(model)) {
        // cuBLAS's int8 GEMM needs K = OC and N = IC multiples of 4 (see int8_forward below); the
        // int8 backward has no float fallback: it would train another mode than the files say
        if (cfg->channels % 4 != 0) {
            fprintf(stderr, "error: -bq int8 needs the channels C to be a multiple of 4 in the CUDA trainer "
                    "(cuBLAS's int8 GEMM); this model has C = %d\n"
                    "---> HINT: train it with the CPU trainer (train_gpt2_1bit), or with -bq float\n", cfg->channels);
            exit(EXIT_FAILURE);
        }
        model->trits_t = (int8_t *)cudaMallocCheck(model->num_bitlinear_weights, "transposed trits (-bq int8)");
    }
    model->scales = (float *)cudaMallocCheck(64 * 4 * sizeof(float), "scales");
    model->centres = (float *)cudaMallocCheck(64 * 4 * sizeof(float), "centres");
    model->qpartial_abs = (double *)cudaMallocCheck(64 * QUANT_BLOCKS * sizeof(double), "scale partials");
    model->qpartial_sum = (double *)cudaMallocCheck(64 * QUANT_BLOCKS * sizeof(double), "scale partials");
    model->norm_partial = (float *)cudaMallocCheck(NORM_BLOCKS * sizeof(float), "norm partials");
    model->norm_out = (float *)cudaMallocCheck(sizeof(float), "norm");
    model->loss_dev = (float *)cudaMallocCheck(sizeof(float), "loss");
    model->loss_sum = (double *)cudaMallocCheck(sizeof(double), "loss sum");
    cudaCheck(cudaMemset(model->loss_sum, 0, sizeof(double)));
    model->loss_count = 0;
    model->loss_on_host = 1;
    cudaCheck(cudaEventCreate(&model->stage_free));
    model->trits_host = (int8_t *)mallocCheck(model->num_bitlinear_weights);
    model->trits_prev_host = (int8_t *)callocCheck(model->num_bitlinear_weights, 1);
    model->have_trits_prev = 0;
    model->wq_stale = 1;
    // cuBLAS's int8 GEMM needs K and N multiples of 4: every BitLinear shape is a
    // multiple of C, so C % 4 == 0 (true of every dN descriptor); else the float path
    model->int8_forward = cfg->channels % 4 == 0;
    model->acts.encoded = NULL;
    model->batch_size = model->seq_len = 0;
    model->mean_loss = -1.0f;
    model->have_dlogits = 0;
}

// after the host copy of the parameters is filled: upload, and make the floatX copy
static void gpt2_upload_params(GPT2 *model) {
    size_t np = model->num_parameters;
    cudaCheck(cudaMemcpy(model->params_memory, model->params_host, np * sizeof(float), cudaMemcpyHostToDevice));
#ifndef ENABLE_FP32
    copy_to_floatx(model->params_x, model->params_memory, np);
#endif
    model->wq_stale = 1;
}

void gpt2_build_from_checkpoint(GPT2 *model, const char *path, QuantConfig quant,
                                const int explicit_flags[NUM_MODE_FLAGS]) {
    FILE *fp = model_file_open_modes(path, quant, explicit_flags, &model->config, &model->quant);
    gpt2_allocate(model);
    freadCheck(model->params_host, sizeof(float), model->num_parameters, fp, path);
    fclose(fp);
    gpt2_upload_params(model);
}

void gpt2_build_random(GPT2 *model, const GPT2Config *config, QuantConfig quant, uint64_t seed) {
    model->config = *config;
    model->quant = quant;
    gpt2_allocate(model);
    gpt2_init_params(model->params_host, model->param_sizes, config, seed); // the CPU trainer's init
    gpt2_upload_params(model);
}

// rebuild trits, W_q and the scales from the latent weights (once per update); with -bq int8
// also the transposed trits the backward's dX reads
void gpt2_quantize_weights(GPT2 *model) {
    if (!model->wq_stale) { return; }
    model->wq_stale = 0;
    if (model->quant.weight_quant == WQ_FP) { return; } // fp mode uses the latent weights directly
    int L = model->config.num_layers;
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(&model->config, k, &OC, &IC);
        size_t n = (size_t)OC * IC;
        const float *w = model->params_memory + bitlinear_tensor_offset(model->param_sizes, k); // (L,OC,IC)
        weights_quantize(model->trits + model->wq_offset[k], model->wq + model->wq_offset[k], model->scales,
                         model->centres, model->qpartial_abs, model->qpartial_sum, w, L, k, n,
                         model->quant.weight_quant == WQ_BINARY);
        if (model->trits_t != NULL) {
            trits_transpose(model->trits_t + model->wq_offset[k], model->trits + model->wq_offset[k], L, OC, IC);
        }
    }
}

// the floatX weight matrix BitLinear k of layer l uses: W_q, or the latent weights in fp mode
static const floatX *gpt2_forward_weight(const GPT2 *model, int k, int l) {
    int OC, IC;
    bitlinear_shape(&model->config, k, &OC, &IC);
    size_t n = (size_t)OC * IC;
    if (model->quant.weight_quant == WQ_FP) {
        return model->params_x + bitlinear_tensor_offset(model->param_sizes, k) + l * n;
    }
    return model->wq + model->wq_offset[k] + l * n;
}

// the b1.58 forward in integers: int8 codes x trits, int32 sums (else the float path on x_q)
static int gpt2_uses_int8_matmul(const GPT2 *model) {
    return model->int8_forward && model->quant.act_quant == AQ_INT8 && model->quant.weight_quant != WQ_FP;
}

// whether every int8 GEMM of a (B*T = BT)-token pass runs the mma kernel, which writes no int32
// products (then acc is not allocated: 0.75 GiB at d12, B=64): GPT2_1BIT_INT8_GEMM=mma (read
// here, once, before the first GEMM: llmc/bitlinear.cuh keeps the choice) and every BitLinear
// shape fits it, the forward's (N, IC, OC) and, with -bq int8, the backward's dX (N, OC, IC).
// A later pass has at most BT tokens (gpt2_forward refuses more). The operands are aligned as
// the kernel needs by construction: codes and outputs are cudaMalloc'd buffers or whole rows
// into them, and the trits of a matrix start at a multiple of OC*IC bytes, 16 | OC*IC when the
// shapes fit; bitlinear_matmul_int8 stops with an error were one not to be
static int gpt2_int8_gemm_all_mma(const GPT2 *model, int BT) {
    if (bitlinear_int8_gemm_choice() != INT8_GEMM_MMA) { return 0; }
    for (int k = 0; k < NUM_BITLINEAR; k++) {
        int OC, IC;
        bitlinear_shape(&model->config, k, &OC, &IC);
        if (!bitlinear_mma_fits_shape(BT, IC, OC)) { return 0; }
        if (gpt2_uses_int8_backward(model) && !bitlinear_mma_fits_shape(BT, OC, IC)) { return 0; }
    }
    return 1;
}

static void gpt2_allocate_activations(GPT2 *model, int B, int T) {
    GPT2Config *cfg = &model->config;
    size_t C = cfg->channels, NH = cfg->num_heads, L = cfg->num_layers, Vp = cfg->padded_vocab_size;
    size_t BT = (size_t)B * T;
    model->batch_size = B;
    model->seq_len = T;
    ActivationTensors *a = &model->acts;
#define ALLOC(ptr, type, count, what) ptr = (type *)cudaMallocCheck((count) * sizeof(type), what)
    ALLOC(a->encoded, floatX, BT * C, "activations (encoded)");
    ALLOC(a->ln1, floatX, L * BT * C, "activations (ln1)");
    ALLOC(a->ln1_mean, float, L * BT, "activations");
    ALLOC(a->ln1_rstd, float, L * BT, "activations");
    ALLOC(a->qkv, floatX, L * BT * 3 * C, "activations (qkv)");
#ifdef ATTENTION_CUBLAS
    ALLOC(a->att, floatX, L * B * NH * T * T, "attention probabilities (L,B,NH,T,T)");
    a->lse = NULL;
#else // the fused attention keeps each row's log-sum-exp instead of its T probabilities
    ALLOC(a->lse, float, L * B * NH * T, "attention log-sum-exp (L,B,NH,T)");
    a->att = NULL;
#endif
    ALLOC(a->atty, floatX, L * BT * C, "activations (atty)");
    ALLOC(a->residual2, floatX, L * BT * C, "activations (residual2)");
    ALLOC(a->ln2, floatX, L * BT * C, "activations (ln2)");
    ALLOC(a->ln2_mean, float, L * BT, "activations");
    ALLOC(a->ln2_rstd, float, L * BT, "activations");
    ALLOC(a->fch, floatX, L * BT * 4 * C, "activations (fch)");
    ALLOC(a->residual3, floatX, L * BT * C, "activations (residual3)");
    ALLOC(a->lnf, floatX, BT * C, "activations (lnf)");
    ALLOC(a->lnf_mean, float, BT, "activations");
    ALLOC(a->lnf_rstd, float, BT, "activations");
    ALLOC(a->logits, floatX, BT * Vp, "logits (B,T,Vp)");
    ALLOC(a->losses, float, BT, "losses");
    // the BitLinear scratch each mode uses, and only that (cudaFree(NULL) is a no-op):
    // fp and weights-only without the inner norm use the input as it is (fcproj: gelu(fch),
    // written into x_q's buffer), the float path x_q, the integer path also the int8 codes and,
    // for cuBLAS's int8 GEMM, their int32 products (0.19 + 0.75 GiB at d12, B=64); the int8
    // backward (-bq int8) the same codes, 1/s and products, for dY (shared with the forward)
    const QuantConfig *q = &model->quant;
    int plain = q->act_quant == AQ_NONE && !q->inner_norm, int8 = gpt2_uses_int8_matmul(model);
    int int8_bwd = gpt2_uses_int8_backward(model);
    BitLinearScratch *bl = &model->bl;
    memset(bl, 0, sizeof(*bl));
    ALLOC(bl->xq, floatX, BT * 4 * C, plain ? "scratch (gelu(fch) for fcproj)" : "scratch (x_q)");
    if (!plain) { ALLOC(bl->rstd, float, BT, "scratch"); }
    if (!plain || int8_bwd) { ALLOC(bl->inv_s, float, BT, "scratch"); }
    if (int8 || int8_bwd) { ALLOC(bl->codes, int8_t, BT * 4 * C, "scratch (int8 codes)"); }
    if ((int8 || int8_bwd) && !gpt2_int8_gemm_all_mma(model, (int)BT)) {
        ALLOC(bl->acc, int32_t, BT * 4 * C, "int32 products");
    }
    if (q->inner_norm) { ALLOC(bl->dxn, floatX, BT * 4 * C, "backward scratch (dx_n)"); }
    ALLOC(model->proj_out, floatX, BT * C, "scratch");
#ifdef ATTENTION_CUBLAS
    ALLOC(model->qkvr, floatX, 3 * BT * C, "scratch (q, k, v)");
    ALLOC(model->preatt, floatX, B * NH * T * T, "attention scores (B,NH,T,T)");
    ALLOC(model->vaccum, floatX, BT * C, "scratch");
    model->att_delta = NULL;
    model->att_ds = NULL;
#else // the fused attention reads q, k, v in place and needs no T x T scratch (but form 5's dS tiles)
    model->qkvr = model->preatt = model->vaccum = model->dqkvr = NULL;
    ALLOC(model->att_delta, float, B * NH * T, "backward scratch (attention)");
    const size_t n_ds = attention_backward_scratch(B, T, C, NH);
    model->att_ds = NULL;
    if (n_ds > 0) { ALLOC(model->att_ds, floatX, n_ds, "backward scratch (attention dS, GPT2_1BIT_ATTENTION_BWD=5)"); }
#endif
    ALLOC(model->dresidual, floatX, BT * C, "backward scratch");
    ALLOC(model->dbuf_c, floatX, BT * C, "backward scratch");
    ALLOC(model->dbuf_3c, floatX, BT * 3 * C, "backward scratch");
    ALLOC(model->dbuf_4c, floatX, BT * 4 * C, "backward scratch");
#ifdef ATTENTION_CUBLAS
    ALLOC(model->dqkvr, floatX, 3 * BT * C, "backward scratch");
#endif
    // column sums: a bias of up to 4C, or LayerNorm's two of C (the lm_head has no bias)
    ALLOC(model->partial, float, (size_t)ceil_div(BT, COLSUM_ROWS) * 4 * C, "column-sum partials");
    ALLOC(model->inputs, int, BT, "inputs");
    ALLOC(model->targets, int, BT, "targets");
    ALLOC(model->plan_mem, int, encoder_plan_ints((int)BT), "encoder plan");
    ALLOC(model->encoder_partial, float, (size_t)encoder_plan_max_slots((int)BT) * C, "encoder partial rows");
#undef ALLOC
    encoder_plan_point(&model->plan, model->plan_mem, (int)BT);
    cudaCheck(cudaMallocHost((void **)&model->stage_host, (2 * BT + encoder_plan_ints((int)BT)) * sizeof(int)));
    encoder_plan_point(&model->plan_host, model->stage_host + 2 * BT, (int)BT);
    model->count_host = (int *)mallocCheck(((size_t)cfg->vocab_size + 1) * sizeof(int));
    model->losses_host = (float *)mallocCheck(BT * sizeof(float));
    model->logits_row_host = (float *)mallocCheck(Vp * sizeof(float));
}

// ----------------------------------------------------------------------------
// BitLinear k of layer l (llmc/bitlinear.cuh), with the model's weights and scratch

// out (N,OC) = BitLinear k of layer l applied to inp (N,IC) read through pre (BL_PRE_GELU: gelu(inp))
static void gpt2_bitlinear_forward(GPT2 *model, int k, int l, floatX *out, const floatX *inp, BitLinearPreOp pre,
                                   const float *bias, int N) {
    int OC, IC;
    bitlinear_shape(&model->config, k, &OC, &IC);
    const int8_t *trits = model->trits + model->wq_offset[k] + (size_t)l * OC * IC;
    const QuantConfig qk = quant_config_at(&model->quant, k); // -rn 2: the norm before k = 1, 3 only
    bitlinear_forward(out, inp, pre, gpt2_forward_weight(model, k, l), trits, model->scales,
                      bitlinear_scale_index(l, k), bias, floatx_view(model, bias), &model->bl, &qk,
                      gpt2_uses_int8_matmul(model), N, IC, OC);
}

// dinp (N,IC) overwritten (the gradient after the pre-op); dweight, dbias accumulated; dX in integers with -bq int8
static void gpt2_bitlinear_backward(GPT2 *model, int k, int l, floatX *dinp, float *dweight, float *dbias,
                                    const floatX *dout, const floatX *inp, BitLinearPreOp pre, int N) {
    int OC, IC;
    bitlinear_shape(&model->config, k, &OC, &IC);
    const int8_t *trits_t = model->trits_t != NULL ? model->trits_t + model->wq_offset[k] + (size_t)l * OC * IC : NULL;
    QuantConfig qk = quant_config_at(&model->quant, k);
    qk.backward_quant = trits_t != NULL ? BQ_INT8 : BQ_FLOAT; // (fp weights have no trits: float)
    bitlinear_backward(dinp, dweight, dbias, dout, inp, pre, gpt2_forward_weight(model, k, l), trits_t,
                       model->scales, bitlinear_scale_index(l, k), &model->bl, model->partial, &qk, N, IC, OC);
}

// ----------------------------------------------------------------------------
// forward, backward, update

// Forward pass over inputs (B,T) (host arrays). With targets it computes the
// losses and the mean loss; with write_dlogits also the gradient of the mean
// loss (scaled by dloss_scale, 1/grad_accum_steps) in place of the logits.
void gpt2_forward(GPT2 *model, const int *inputs, const int *targets, int B, int T, int write_dlogits,
                  float dloss_scale) {
    GPT2Config *cfg = &model->config;
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size, L = cfg->num_layers;
    int NH = cfg->num_heads, C = cfg->channels, BT = B * T;
    if (T > cfg->max_seq_len) {
        fprintf(stderr, "error: sequence length %d is above the model's maximum %d\n"
                "---> HINT: lower -t to at most %d\n", T, cfg->max_seq_len, cfg->max_seq_len);
        exit(EXIT_FAILURE);
    }
    for (int i = 0; i < BT; i++) {
        if (inputs[i] < 0 || inputs[i] >= V || (targets != NULL && (targets[i] < 0 || targets[i] >= V))) {
            fprintf(stderr, "error: token id %d at position %d is outside the vocab (V = %d)\n",
                    targets != NULL && (targets[i] < 0 || targets[i] >= V) ? targets[i] : inputs[i], i, V);
            exit(EXIT_FAILURE);
        }
    }
    if (model->acts.encoded == NULL) { gpt2_allocate_activations(model, B, T); }
    if (BT > model->batch_size * model->seq_len || T > model->seq_len) {
        fprintf(stderr, "error: batch (B=%d, T=%d) is larger than the first one (B=%d, T=%d)\n",
                B, T, model->batch_size, model->seq_len);
        exit(EXIT_FAILURE);
    }
    model->last_B = B;
    model->last_T = T;
    // the uploads, asynchronous from pinned memory (a cudaMemcpy from pageable memory would first wait
    // for all the work queued before it); the wait here is for the previous forward's uploads only
    cudaCheck(cudaEventSynchronize(model->stage_free));
    int *inputs_h = model->stage_host, *targets_h = inputs_h + model->batch_size * model->seq_len;
    memcpy(inputs_h, inputs, (size_t)BT * sizeof(int));
    cudaCheck(cudaMemcpyAsync(model->inputs, inputs_h, (size_t)BT * sizeof(int), cudaMemcpyHostToDevice));
    if (targets != NULL) {
        memcpy(targets_h, targets, (size_t)BT * sizeof(int));
        cudaCheck(cudaMemcpyAsync(model->targets, targets_h, (size_t)BT * sizeof(int), cudaMemcpyHostToDevice));
    }
    if (targets != NULL && write_dlogits) { // a training pass: the plan of its wte gradient
        encoder_plan_build(&model->plan_host, inputs, BT, V, model->count_host);
        encoder_plan_upload(&model->plan, &model->plan_host, BT);
    }
    cudaCheck(cudaEventRecord(model->stage_free));
    gpt2_quantize_weights(model);

    ParameterTensors p = model->params;
    ActivationTensors a = model->acts;
    size_t BTC = (size_t)BT * C;
    encoder_forward(a.encoded, model->inputs, p.wte, p.wpe, B, T, C);
    // layer 0's ln1; every later LayerNorm is computed with the residual add before it (below)
    layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, a.encoded, p.ln1w, p.ln1b, BT, C);
    for (int l = 0; l < L; l++) {
        floatX *residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BTC;
        floatX *l_ln1 = a.ln1 + l * BTC, *l_qkv = a.qkv + l * BTC * 3, *l_atty = a.atty + l * BTC;
        floatX *l_residual2 = a.residual2 + l * BTC;
        floatX *l_ln2 = a.ln2 + l * BTC, *l_fch = a.fch + l * BTC * 4;
        floatX *l_residual3 = a.residual3 + l * BTC;
        float *l_ln2_mean = a.ln2_mean + l * BT, *l_ln2_rstd = a.ln2_rstd + l * BT;
        // attention half: x + attproj(attention(qkv(ln1(x)))); ln1(x) is there already
        gpt2_bitlinear_forward(model, 0, l, l_qkv, l_ln1, BL_PRE_NONE, p.qkvb + l * 3 * C, BT);
#ifdef ATTENTION_CUBLAS
        attention_forward_cublas(l_atty, a.att + (size_t)l * B * NH * T * T, model->qkvr, model->preatt,
                                 model->vaccum, l_qkv, B, T, C, NH);
#else
        attention_forward(l_atty, a.lse + (size_t)l * B * NH * T, l_qkv, B, T, C, NH);
#endif
        gpt2_bitlinear_forward(model, 1, l, model->proj_out, l_atty, BL_PRE_NONE, p.attprojb + l * C, BT);
        // MLP half: x + fcproj(gelu(fc(ln2(x)))), x = residual2 and ln2(x) made by one kernel
        fused_residual_layernorm_forward(l_residual2, l_ln2, l_ln2_mean, l_ln2_rstd, residual, model->proj_out,
                                         p.ln2w + l * C, p.ln2b + l * C, BT, C);
        gpt2_bitlinear_forward(model, 2, l, l_fch, l_ln2, BL_PRE_NONE, p.fcb + l * 4 * C, BT);
        gpt2_bitlinear_forward(model, 3, l, model->proj_out, l_fch, BL_PRE_GELU, p.fcprojb + l * C, BT); // gelu(fch)
        // residual3 and the LayerNorm that reads it: the next layer's ln1, or lnf after the last layer
        if (l + 1 < L) {
            fused_residual_layernorm_forward(l_residual3, a.ln1 + (l + 1) * BTC, a.ln1_mean + (l + 1) * BT,
                                             a.ln1_rstd + (l + 1) * BT, l_residual2, model->proj_out,
                                             p.ln1w + (l + 1) * C, p.ln1b + (l + 1) * C, BT, C);
        } else {
            fused_residual_layernorm_forward(l_residual3, a.lnf, a.lnf_mean, a.lnf_rstd, l_residual2,
                                             model->proj_out, p.lnfw, p.lnfb, BT, C);
        }
    }
    // the tied lm_head in full precision: logits = lnf @ wte^T
    matmul_forward(a.logits, a.lnf, floatx_view(model, p.wte), NULL, BT, C, Vp);
    model->mean_loss = -1.0f;
    if (targets != NULL) {
        fused_classifier(a.logits, a.losses, model->targets, BT, V, Vp, dloss_scale / BT, write_dlogits);
        loss_mean(model->loss_dev, model->loss_sum, a.losses, BT);
        model->loss_count++;
        if (model->loss_on_host) {
            cudaCheck(cudaMemcpy(&model->mean_loss, model->loss_dev, sizeof(float), cudaMemcpyDeviceToHost));
        }
    }
    model->have_dlogits = targets != NULL && write_dlogits;
}

void gpt2_zero_grad(GPT2 *model) {
    cudaCheck(cudaMemset(model->grads_memory, 0, model->num_parameters * sizeof(float)));
}

// Backward pass of the last forward pass (which must have had targets and
// write_dlogits = 1); accumulates into the fp32 gradients.
void gpt2_backward(GPT2 *model) {
    if (!model->have_dlogits) {
        fprintf(stderr, "error: gpt2_backward needs a forward pass with targets and write_dlogits = 1 first\n");
        exit(EXIT_FAILURE);
    }
    GPT2Config *cfg = &model->config;
    int Vp = cfg->padded_vocab_size, L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels;
    int B = model->last_B, T = model->last_T, BT = B * T;
    size_t BTC = (size_t)BT * C;
    ParameterTensors p = model->params, g;
    point_parameters(&g, model->param_sizes, model->grads_memory);
    ActivationTensors a = model->acts;
    floatX *dresidual = model->dresidual;

    // lm_head: dlnf = dlogits @ wte, dwte += dlogits^T @ lnf
    matmul_backward(model->dbuf_c, g.wte, NULL, a.logits, a.lnf, floatx_view(model, p.wte), BT, C, Vp, model->partial);
    cudaCheck(cudaMemset(dresidual, 0, BTC * sizeof(floatX)));
    floatX *residual = a.residual3 + (L - 1) * BTC;
    layernorm_backward(dresidual, g.lnfw, g.lnfb, model->partial, model->dbuf_c, residual, p.lnfw, a.lnf_mean,
                       a.lnf_rstd, BT, C);

    // dresidual carries the gradient of the residual stream down the layers:
    // each half adds its branch's contribution to it
    for (int l = L - 1; l >= 0; l--) {
        residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BTC;
        floatX *l_ln1 = a.ln1 + l * BTC, *l_qkv = a.qkv + l * BTC * 3, *l_atty = a.atty + l * BTC;
        floatX *l_residual2 = a.residual2 + l * BTC;
        floatX *l_ln2 = a.ln2 + l * BTC, *l_fch = a.fch + l * BTC * 4;
        // MLP half, in reverse: residual3 = residual2 + fcproj(gelu(fc(ln2(residual2)))); fcproj's
        // input gelu(fch) recomputed from fch inside, with the forward's bits
        gpt2_bitlinear_backward(model, 3, l, model->dbuf_4c, g.fcprojw + (size_t)l * 4 * C * C, g.fcprojb + l * C,
                                dresidual, l_fch, BL_PRE_GELU, BT);
        gelu_backward(model->dbuf_4c, l_fch, model->dbuf_4c, BTC * 4);
        gpt2_bitlinear_backward(model, 2, l, model->dbuf_c, g.fcw + (size_t)l * 4 * C * C, g.fcb + l * 4 * C,
                                model->dbuf_4c, l_ln2, BL_PRE_NONE, BT);
        layernorm_backward(dresidual, g.ln2w + l * C, g.ln2b + l * C, model->partial, model->dbuf_c, l_residual2,
                           p.ln2w + l * C, a.ln2_mean + l * BT, a.ln2_rstd + l * BT, BT, C);
        // attention half, in reverse: residual2 = residual + attproj(attention(qkv(ln1(residual))))
        gpt2_bitlinear_backward(model, 1, l, model->dbuf_c, g.attprojw + (size_t)l * C * C, g.attprojb + l * C,
                                dresidual, l_atty, BL_PRE_NONE, BT);
#ifdef ATTENTION_CUBLAS
        attention_backward_cublas(model->dbuf_3c, model->dqkvr, model->qkvr, model->preatt, model->vaccum,
                                  model->dbuf_c, l_qkv, a.att + (size_t)l * B * NH * T * T, B, T, C, NH);
#else
        attention_backward(model->dbuf_3c, model->att_delta, model->att_ds, model->dbuf_c, l_qkv, l_atty,
                           a.lse + (size_t)l * B * NH * T, B, T, C, NH);
#endif
        gpt2_bitlinear_backward(model, 0, l, model->dbuf_c, g.qkvw + (size_t)l * 3 * C * C, g.qkvb + l * 3 * C,
                                model->dbuf_3c, l_ln1, BL_PRE_NONE, BT);
        layernorm_backward(dresidual, g.ln1w + l * C, g.ln1b + l * C, model->partial, model->dbuf_c, residual,
                           p.ln1w + l * C, a.ln1_mean + l * BT, a.ln1_rstd + l * BT, BT, C);
    }
    encoder_backward(g.wte, g.wpe, model->encoder_partial, dresidual, &model->plan, B, T, C);
}

// the losses since the last reset: gpt2_loss_mean is the mean of the forward passes' mean losses
// (a step's micro-batches, a validation's batches), one value copied from the device
void gpt2_loss_reset(GPT2 *model) {
    cudaCheck(cudaMemsetAsync(model->loss_sum, 0, sizeof(double)));
    model->loss_count = 0;
}

float gpt2_loss_mean(GPT2 *model) {
    double sum;
    cudaCheck(cudaMemcpy(&sum, model->loss_sum, sizeof(double), cudaMemcpyDeviceToHost));
    return model->loss_count > 0 ? (float)(sum / model->loss_count) : -1.0f;
}

// global L2 norm of the gradients (fixed-order reduction)
float gpt2_grad_norm(GPT2 *model) {
    return global_norm(model->norm_partial, model->norm_out, model->grads_memory, model->num_parameters);
}

// AdamW, as gpt2_update in train_gpt2_1bit.c: weight decay only on the matrices; t counts from 1
void gpt2_update(GPT2 *model, float learning_rate, float beta1, float beta2, float eps, float weight_decay,
                 float grad_scale, int t) {
    float bc1 = 1.0f - powf(beta1, t), bc2 = 1.0f - powf(beta2, t);
    size_t start = 0;
    for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
        float wd = PARAMETER_IS_MATRIX[k] ? weight_decay : 0.0f;
        size_t n = model->param_sizes[k];
#ifdef ENABLE_FP32
        floatX *px = NULL; // params_x is params_memory itself
#else
        floatX *px = model->params_x + start;
#endif
        adamw_update(model->params_memory + start, px, model->m_memory + start, model->v_memory + start,
                     model->grads_memory + start, n, learning_rate, beta1, beta2, bc1, bc2, eps, wd, grad_scale);
        start += n;
    }
    model->wq_stale = 1;
}

void gpt2_free(GPT2 *model) {
    cudaCheck(cudaFree(model->params_memory));
#ifndef ENABLE_FP32
    cudaCheck(cudaFree(model->params_x));
#endif
    cudaCheck(cudaFree(model->grads_memory));
    cudaCheck(cudaFree(model->m_memory));
    cudaCheck(cudaFree(model->v_memory));
    cudaCheck(cudaFree(model->wq));
    cudaCheck(cudaFree(model->trits));
    cudaCheck(cudaFree(model->trits_t));
    cudaCheck(cudaFree(model->scales));
    cudaCheck(cudaFree(model->centres));
    cudaCheck(cudaFree(model->qpartial_abs));
    cudaCheck(cudaFree(model->qpartial_sum));
    cudaCheck(cudaFree(model->norm_partial));
    cudaCheck(cudaFree(model->norm_out));
    cudaCheck(cudaFree(model->loss_dev));
    cudaCheck(cudaFree(model->loss_sum));
    cudaCheck(cudaEventDestroy(model->stage_free));
    free(model->params_host);
    free(model->trits_host);
    free(model->trits_prev_host);
    if (model->acts.encoded != NULL) {
        ActivationTensors *a = &model->acts;
        BitLinearScratch *bl = &model->bl;
        void *ptrs[] = {a->encoded, a->ln1, a->ln1_mean, a->ln1_rstd, a->qkv, a->att, a->lse, a->atty, a->residual2,
                        a->ln2, a->ln2_mean, a->ln2_rstd, a->fch, a->residual3, a->lnf, a->lnf_mean,
                        a->lnf_rstd, a->logits, a->losses, bl->xq, bl->codes, bl->inv_s, bl->rstd, bl->acc, bl->dxn,
                        model->proj_out, model->qkvr, model->preatt, model->vaccum, model->dresidual, model->dbuf_c,
                        model->dbuf_3c, model->dbuf_4c, model->dqkvr, model->att_delta, model->att_ds, model->partial,
                        model->inputs, model->targets, model->plan_mem, model->encoder_partial};
        for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++) { cudaCheck(cudaFree(ptrs[i])); }
        cudaCheck(cudaFreeHost(model->stage_host));
        free(model->count_host);
        free(model->losses_host);
        free(model->logits_row_host);
    }
}

// ----------------------------------------------------------------------------
// host copies: parameters (for checkpoints), AdamW moments, trits (diagnostics)

static void gpt2_download_params(GPT2 *model) {
    cudaCheck(cudaMemcpy(model->params_host, model->params_memory, model->num_parameters * sizeof(float),
                         cudaMemcpyDeviceToHost));
}

void save_checkpoint(GPT2 *model, const DataLoader *loader, uint64_t rng, int step, int total_batch,
                     const char *out_dir) {
    size_t np = model->num_parameters;
    float *m = (float *)mallocCheck(np * sizeof(float)), *v = (float *)mallocCheck(np * sizeof(float));
    gpt2_download_params(model);
    cudaCheck(cudaMemcpy(m, model->m_memory, np * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(v, model->v_memory, np * sizeof(float), cudaMemcpyDeviceToHost));
    TrainState st = {step, model->batch_size, model->seq_len, rng, loader->shard_index, loader->pos, total_batch};
    checkpoint_write(out_dir, &model->config, &model->quant, model->params_host, m, v, np, &st);
    free(m);
    free(v);
}

// load the optimizer, data and RNG state of a checkpoint; returns its step
int load_state(GPT2 *model, DataLoader *loader, uint64_t *rng, int total_batch, const char *path) {
    size_t np = model->num_parameters;
    float *m = (float *)mallocCheck(np * sizeof(float)), *v = (float *)mallocCheck(np * sizeof(float));
    TrainState st;
    checkpoint_read_state(path, np, loader->B, loader->T, total_batch, m, v, &st);
    cudaCheck(cudaMemcpy(model->m_memory, m, np * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(model->v_memory, v, np * sizeof(float), cudaMemcpyHostToDevice));
    free(m);
    free(v);
    *rng = st.rng;
    dataloader_resume(loader, st.shard_index, st.pos);
    return st.step;
}

void print_trit_stats(GPT2 *model, Logger *logger, int step) {
    if (model->quant.weight_quant == WQ_FP) { return; }
    gpt2_quantize_weights(model);
    int L = model->config.num_layers;
    float scales[64 * 4];
    cudaCheck(cudaMemcpy(model->trits_host, model->trits, model->num_bitlinear_weights, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(scales, model->scales, (size_t)L * 4 * sizeof(float), cudaMemcpyDeviceToHost));
    TritStats *stats = (TritStats *)mallocCheck((size_t)L * 4 * sizeof(TritStats));
    trit_stats_compute(stats, &model->config, model->trits_host, model->trits_prev_host, model->have_trits_prev,
                       scales);
    trit_stats_print(stats, L, logger, step);
    memcpy(model->trits_prev_host, model->trits_host, model->num_bitlinear_weights);
    model->have_trits_prev = 1;
    free(stats);
}

// ----------------------------------------------------------------------------
// evaluation and sampling

float gpt2_validate(GPT2 *model, DataLoader *val_loader, int max_batches) {
    int n = dataloader_num_batches(val_loader);
    n = n < max_batches ? n : max_batches;
    dataloader_reset(val_loader);
    int on_host = model->loss_on_host;
    model->loss_on_host = 0; // the batches' losses stay on the device: one value is read at the end
    gpt2_loss_reset(model);
    for (int i = 0; i < n; i++) {
        dataloader_next_batch(val_loader);
        gpt2_forward(model, val_loader->inputs, val_loader->targets, val_loader->B, val_loader->T, 0, 1.0f);
    }
    model->loss_on_host = on_host;
    return gpt2_loss_mean(model);
}

// the logits (Vp floats, copied into model->logits_row_host) of the last of len tokens, after a
// forward pass of them alone (B=1): what train_loop.h's sampler draws the next token from
const float *gpt2_last_logits(GPT2 *model, const int *tokens, int len) {
    gpt2_forward(model, tokens, NULL, 1, len, 0, 1.0f);
    int Vp = model->config.padded_vocab_size;
    floatX *tmp = (floatX *)mallocCheck((size_t)Vp * sizeof(floatX));
    cudaCheck(cudaMemcpy(tmp, model->acts.logits + (size_t)(len - 1) * Vp, (size_t)Vp * sizeof(floatX),
                         cudaMemcpyDeviceToHost));
    for (int i = 0; i < Vp; i++) { model->logits_row_host[i] = to_float(tmp[i]); }
    free(tmp);
    return model->logits_row_host;
}

// ----------------------------------------------------------------------------
// main training loop
#ifndef TESTING

// llmc/train_loop.h runs the bookkeeping of a training run over the functions above (gpt2_build_*,
// gpt2_allocate_activations, gpt2_validate, gpt2_last_logits, print_trit_stats, save_checkpoint, load_state,
// gpt2_free) and these three, with the signatures train_gpt2_1bit.c gives them for the CPU.

// the forward pass HellaSwag's scoring borrows: the (B,T) per-position losses, on the host
static const float *gpt2_eval_losses(void *m, const int *inputs, const int *targets, int B, int T) {
    GPT2 *model = (GPT2 *)m;
    gpt2_forward(model, inputs, targets, B, T, 0, 1.0f);
    cudaCheck(cudaMemcpy(model->losses_host, model->acts.losses, (size_t)B * T * sizeof(float),
                         cudaMemcpyDeviceToHost));
    return model->losses_host;
}

// nothing to estimate here: every buffer is allocated up front through cudaMallocCheck, whose
// out-of-memory error names the buffer and the fix (-b, -t) before the first step runs
static void gpt2_check_memory(const GPT2 *model, int B, int T) {
    (void)model;
    (void)B;
    (void)T;
}

// what the model runs on, printed after the model, its mode and the batch: the GPU, the precision
// of the activations, the BitLinear forward's arithmetic (and which int8 GEMM runs), and how close the
// allocations came to filling the device (everything is allocated up front, so a run that starts does not run out later)
static void gpt2_print_device(const GPT2 *model) {
    print_device_line();
    printf("precision: activations %s; BitLinear forward %s\n", PRECISION_NAME,
           gpt2_uses_int8_matmul(model) ? "int8 x trits (int32 sums)" : "float");
    if (gpt2_uses_int8_matmul(model) || gpt2_uses_int8_backward(model)) { // llmc/bitlinear.cuh: GPT2_1BIT_INT8_GEMM
        printf("int8 GEMM: %s\n", bitlinear_int8_gemm_name());
    }
    if (model->att_ds != NULL) { // llmc/attention.cuh: GPT2_1BIT_ATTENTION_BWD
        printf("attention backward: form 5, dS kept for dq (GPT2_1BIT_ATTENTION_BWD=5)\n");
    }
    size_t free_b = 0, total_b = 0;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    printf("device memory: %.2f GiB allocated, %.2f of %.2f GiB free\n", cuda_allocated_bytes / 1073741824.0,
           free_b / 1073741824.0, total_b / 1073741824.0);
}

#include "llmc/train_loop.h" // defines: TrainRun, train_open_model/_data, train_eval_sample_save, train_log_step

int main(int argc, char **argv) {
    TrainArgs args; // every flag, with its default (llmc/args.h; ./train_gpt2_1bitcu -h lists them)
    train_args_read(&args, argc, argv);
    // -mp: the matmuls' operands are this build's floatX; -mp, when given, must name it
    const char *build_precision = sizeof(floatX) == 4 ? "fp32" : "bf16";
    if (args.set_matmul_precision && strcmp(args.matmul_precision, build_precision) != 0) {
        fprintf(stderr, "error: -mp %s, but this build's matmuls are %s\n---> HINT: make train_gpt2_1bitcu PRECISION=%s, "
                "or drop -mp\n", args.matmul_precision, build_precision, sizeof(floatX) == 4 ? "BF16" : "FP32");
        exit(EXIT_FAILURE);
    }
    args.matmul_precision = build_precision;
    cuda_device_init("run the CPU trainer instead: make train_gpt2_1bit && ./train_gpt2_1bit");
    cublasCheck(cublasCreate(&cublas_handle));
    TrainRun run;   // the loaders, the schedule, main.log, the step counters (llmc/train_loop.h)
    GPT2 model;
    train_open_model(&run, &model, &args); // resumed (-y 1), loaded (-e FILE) or fresh (-e dN)
    train_open_data(&run, &model);         // loaders, tokenizer, a resumed run's state, main.log, schedule
    // GPT2_1BIT_PROFILE_STEP=k: only step k is profiled (ncu --profile-from-start off; dev/gpu_check.sh)
    const char *profile_env = getenv("GPT2_1BIT_PROFILE_STEP");
    int profile_step = profile_env != NULL ? atoi(profile_env) : -1;

    for (int step = run.start_step; step <= args.max_steps; step++) {
        train_eval_sample_save(&run, &model, step); // val loss, trit statistics, sample, checkpoint: as -v -s -n say
        if (step == args.max_steps) { break; }

        // One optimizer step over run.accum micro-batches of B x T (-d; 1 without it). Each forward writes
        // the gradient of its micro-batch's mean loss times 1/accum, so the backward passes sum to the
        // gradient of the mean loss over the whole step. The syncs bracket the step's GPU work for its time.
        cudaCheck(cudaDeviceSynchronize());
        int profiled = step == profile_step;
        if (profiled) { cudaCheck(cudaProfilerStart()); }
        double t0 = now_seconds();
        gpt2_zero_grad(&model);
        gpt2_loss_reset(&model);
        model.loss_on_host = 0; // the micro-steps' losses stay on the device: no wait for the GPU between them
        for (int micro_step = 0; micro_step < run.accum; micro_step++) {
            dataloader_next_batch(&run.train_loader);
            gpt2_forward(&model, run.train_loader.inputs, run.train_loader.targets, args.B, args.T, 1,
                         1.0f / run.accum);
            gpt2_backward(&model);
        }
        float mean_loss = gpt2_loss_mean(&model); // the mean of the micro-steps' losses, one float copied
        float norm = gpt2_grad_norm(&model);
        // clip the global norm to -gc; the learning rate and weight decay of this step (llmc/schedulers.h)
        float clip = (args.grad_clip > 0.0f && norm > args.grad_clip) ? args.grad_clip / (norm + 1e-6f) : 1.0f;
        float lr = schedule_lr(&run.sched, step), wd = schedule_wd(&run.sched, step);
        gpt2_update(&model, lr, 0.9f, 0.95f, 1e-8f, wd, clip, step + 1);
        cudaCheck(cudaDeviceSynchronize());
        if (profiled) { cudaCheck(cudaProfilerStop()); }
        train_log_step(&run, step, mean_loss, lr, norm, 1000.0 * (now_seconds() - t0));
    }
    train_close(&run, &model); // the average step; frees everything
    matmul_lt_free(); // the cuBLASLt handle, workspace and plans (llmc/matmul.cuh)
    cublasCheck(cublasDestroy(cublas_handle));
    return 0;
}
#endif
