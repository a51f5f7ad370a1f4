/*
 encoder_backward: the gradients of the token and position embeddings,
     dwte[token] += sum of dout (B,T,C) over the positions holding that token     dwte (V,C) fp32
     dwpe[t]     += sum over b of dout[b,t]                                        dwpe (T,C) fp32
 deterministic (no float atomics: the same bits on every run). The spec is encoder_backward in
 train_gpt2_1bit.c. The hard case is a skewed batch: one token (a newline, padding) at most of
 the B*T positions, so that one token's row is a sum of tens of thousands of rows.

 Bandwidth-bound: it reads dout (B*T*C floatX) once; the measure is GB/s of that read plus dwpe's
 read and write, against the device's copy bandwidth.

 Build and run:
     make -C dev/cuda encoder_backward && ./dev/cuda/encoder_backward     all variants
     ./dev/cuda/encoder_backward 2                                        variant 2 only (and 1)
     DEV_CUDA_SMALL=1 ./dev/cuda/encoder_backward                         small mode (the emulator)

 Variants:
     1  one block per token (the trainer's kernel before issue 13): the positions bucketed by token
        on the host, each token's row summed serially by one block of 256 threads, a value a thread
        per step: a token at all B*T positions is B*T dependent loads in a row
     2  shipped (llmc/encoder.cuh, encoder_backward): each token's positions cut into chunks of at
        most ENCODER_CHUNK (64), one warp per chunk with 128-bit loads (stage 1, straight into dwte
        for a token with one chunk), a token's chunks' partial rows added in order (stage 2);
        dwpe with 128-bit loads

 Validation: exact. dout holds multiples of 1/128 in [-1, 1] (exact in bf16) and the gradients
 start at multiples of 1/128 too, so every partial sum is a multiple of 1/128 below 2^16: exact in
 fp32 in any order. A missing, doubled or misplaced row cannot hide in a tolerance.
 Batches: uniform random tokens; skewed (one token at 90% of the positions, plus tokens at exactly
 ENCODER_CHUNK and ENCODER_CHUNK + 1 positions, the edges of stage 2); and one token everywhere.
*/
#include "common.h"           // defines: harness (random inputs, validation, timing, results); includes llmc/ headers
#include "llmc/encoder.cuh"   // defines: encoder_backward, EncoderPlan, encoder_plan_* (variant 2, what the trainer runs)

// ----------------------------------------------------------------------------
// CPU reference: train_gpt2_1bit.c's encoder_backward, on floatX dout

static void encoder_backward_cpu(float *dwte, float *dwpe, const floatX *dout, const int *inp, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const floatX *dout_bt = dout + (size_t)(b * T + t) * C;
            float *dwte_ix = dwte + (size_t)inp[b * T + t] * C, *dwpe_t = dwpe + (size_t)t * C;
            for (int i = 0; i < C; i++) {
                dwte_ix[i] += to_float(dout_bt[i]);
                dwpe_t[i] += to_float(dout_bt[i]);
            }
        }
    }
}

// ----------------------------------------------------------------------------
// variant 1: one block per token, positions bucketed on the host

__global__ void encoder_backward_wte_kernel1(float *dwte, const floatX *dout, const int *bucket_token,
                                             const int *bucket_start, const int *bucket_pos, int C) {
    int b = blockIdx.x;
    int token = bucket_token[b], start = bucket_start[b], end = bucket_start[b + 1];
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float sum = 0.0f;
        for (int i = start; i < end; i++) { sum += to_float(dout[(size_t)bucket_pos[i] * C + c]); }
        dwte[(size_t)token * C + c] += sum;
    }
}

__global__ void encoder_backward_wpe_kernel1(float *dwpe, const floatX *dout, int B, int T, int C) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= T * C) { return; }
    float sum = 0.0f;
    for (int b = 0; b < B; b++) { sum += to_float(dout[(size_t)b * T * C + idx]); }
    dwpe[idx] += sum;
}

// the host bucketing of variant 1 (a counting sort by token); returns the number of buckets
static int bucket_tokens1(int *token, int *start, int *pos, const int *inp, int BT, int V, int *count) {
    memset(count, 0, ((size_t)V + 1) * sizeof(int));
    for (int i = 0; i < BT; i++) { count[inp[i] + 1]++; }
    for (int v = 0; v < V; v++) { count[v + 1] += count[v]; }
    int nb = 0;
    for (int v = 0; v < V; v++) {
        if (count[v + 1] > count[v]) { token[nb] = v; start[nb] = count[v]; nb++; }
    }
    start[nb] = BT;
    for (int i = 0; i < BT; i++) { pos[count[inp[i]]++] = i; }
    return nb;
}

typedef struct {
    int nb;                        // variant 1: buckets
    int *d_token, *d_start, *d_pos;
    EncoderPlan plan;              // variant 2: the device plan
    float *d_partial;
} Plans;

static void encoder_backward1(float *dwte, float *dwpe, const floatX *dout, const Plans *p, int B, int T, int C) {
    encoder_backward_wte_kernel1<<<p->nb, 256>>>(dwte, dout, p->d_token, p->d_start, p->d_pos, C);
    cudaCheck(cudaGetLastError());
    encoder_backward_wpe_kernel1<<<ceil_div((long long)T * C, 256), 256>>>(dwpe, dout, B, T, C);
    cudaCheck(cudaGetLastError());
}

static void encoder_backward2(float *dwte, float *dwpe, const floatX *dout, const Plans *p, int B, int T, int C) {
    encoder_backward(dwte, dwpe, p->d_partial, dout, &p->plan, B, T, C);
}

static void encoder_backward_variant(int k, float *dwte, float *dwpe, const floatX *dout, const Plans *p, int B,
                                     int T, int C) {
    switch (k) {
    case 1: encoder_backward1(dwte, dwpe, dout, p, B, T, C); break;
    case 2: encoder_backward2(dwte, dwpe, dout, p, B, T, C); break;
    default: fprintf(stderr, "no variant %d\n", k); exit(EXIT_FAILURE);
    }
}

static const char *variant_name(int k) { return k == 1 ? "1 block per token" : "2 shipped: chunks, 2 stages"; }

// ----------------------------------------------------------------------------
// batches

enum { BATCH_UNIFORM, BATCH_SKEWED, BATCH_ONE_TOKEN, NUM_BATCHES };
static const char *batch_name(int kind) {
    return kind == BATCH_UNIFORM ? "uniform" : kind == BATCH_SKEWED ? "90% one token" : "one token";
}

static void make_batch(int *inp, int kind, int BT, int V) {
    const int frequent = 198 % V; // GPT-2's newline, or what V allows
    for (int i = 0; i < BT; i++) {
        int r = (int)(rng_u32() % (uint32_t)V);
        if (kind == BATCH_ONE_TOKEN) { r = frequent; }
        if (kind == BATCH_SKEWED && rng_u32() % 10 != 0) { r = frequent; }
        inp[i] = r;
    }
    if (kind == BATCH_SKEWED && BT >= 4 * (ENCODER_CHUNK + 1)) {
        // two rarer tokens at exactly one chunk's worth and one more: the edge of stage 2
        int a = (frequent + 1) % V, b = (frequent + 2) % V, n = 0;
        for (int i = 0; i < BT && n < 2 * ENCODER_CHUNK + 1; i += 2, n++) { inp[i] = n < ENCODER_CHUNK ? a : b; }
        for (int i = 0; i < BT; i++) { // no stray a or b elsewhere
            if (i % 2 == 1 || i / 2 >= 2 * ENCODER_CHUNK + 1) {
                if (inp[i] == a || inp[i] == b) { inp[i] = frequent; }
            }
        }
    }
}

// a batch of this kind into inp, and both variants' plans of it, uploaded
static void prepare_batch(Plans *p, EncoderPlan *h_plan, int *inp, int *count, int *h_token, int *h_start, int *h_pos,
                          int kind, int BT, int V) {
    make_batch(inp, kind, BT, V);
    p->nb = bucket_tokens1(h_token, h_start, h_pos, inp, BT, V, count);
    cudaCheck(cudaMemcpy(p->d_token, h_token, (size_t)p->nb * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(p->d_start, h_start, (size_t)(p->nb + 1) * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(p->d_pos, h_pos, (size_t)BT * sizeof(int), cudaMemcpyHostToDevice));
    encoder_plan_build(h_plan, inp, BT, V, count);
    encoder_plan_upload(&p->plan, h_plan, BT);
    cudaCheck(cudaDeviceSynchronize()); // the plan's host arrays are reused by the next batch
}

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    const int num_kernels = 3; // 1 the old kernel, 2 the shipped one
    int only = parse_kernel_num(argc, argv, num_kernels);
    common_start("encoder_backward: dwte, dwpe += the embedding gradients of dout (B,T,C) " PRECISION_NAME);
    rng_seed(1337);
    const int small = small_mode();
    // GPT-2 124M at B = 64, T = 1024; small: B*T = 4 x 97 (a partial last block of every grid), C = 64
    // (vector path), 38 (not whole x128 vectors in bf16 or fp32: the scalar path), V = 300
    const int B = small ? 4 : 64, T = small ? 97 : 1024, V = small ? 300 : 50257, BT = B * T;
    const int Cs_gpu[] = {768}, Cs_small[] = {64, 38};
    const int *Cs = small ? Cs_small : Cs_gpu;
    const int nC = small ? 2 : 1, Cmax = small ? 64 : 768;
    double copy_gbs = small ? 0.0 : measure_copy_bandwidth(256u << 20);

    // dout: multiples of 1/128 in [-1, 1]; the gradients' starting values: multiples of 1/128 in [-4, 4]
    floatX *dout = (floatX *)mallocCheck((size_t)BT * Cmax * sizeof(floatX));
    for (size_t i = 0; i < (size_t)BT * Cmax; i++) {
        dout[i] = from_float<floatX>((float)((int)(rng_u32() % 257u) - 128) / 128.0f);
    }
    float *wte0 = (float *)mallocCheck((size_t)V * Cmax * sizeof(float));
    float *wpe0 = (float *)mallocCheck((size_t)T * Cmax * sizeof(float));
    for (size_t i = 0; i < (size_t)V * Cmax; i++) { wte0[i] = (float)((int)(rng_u32() % 1025u) - 512) / 128.0f; }
    for (size_t i = 0; i < (size_t)T * Cmax; i++) { wpe0[i] = (float)((int)(rng_u32() % 1025u) - 512) / 128.0f; }
    floatX *d_dout = to_device(dout, (size_t)BT * Cmax);
    float *d_dwte = (float *)cudaMallocCheck((size_t)V * Cmax * sizeof(float), "dwte");
    float *d_dwpe = (float *)cudaMallocCheck((size_t)T * Cmax * sizeof(float), "dwpe");
    float *wte_ref = (float *)mallocCheck((size_t)V * Cmax * sizeof(float));
    float *wpe_ref = (float *)mallocCheck((size_t)T * Cmax * sizeof(float));

    // the plans of both variants, on the host and the device
    int *inp = (int *)mallocCheck((size_t)BT * sizeof(int)), *count = (int *)mallocCheck(((size_t)V + 1) * sizeof(int));
    int *h_token = (int *)mallocCheck((size_t)BT * sizeof(int)), *h_start = (int *)mallocCheck(((size_t)BT + 1) * sizeof(int));
    int *h_pos = (int *)mallocCheck((size_t)BT * sizeof(int));
    int *h_plan_mem = (int *)mallocCheck(encoder_plan_ints(BT) * sizeof(int));
    Plans p;
    p.d_token = (int *)cudaMallocCheck((size_t)BT * sizeof(int), "buckets");
    p.d_start = (int *)cudaMallocCheck(((size_t)BT + 1) * sizeof(int), "buckets");
    p.d_pos = (int *)cudaMallocCheck((size_t)BT * sizeof(int), "buckets");
    int *d_plan_mem = (int *)cudaMallocCheck(encoder_plan_ints(BT) * sizeof(int), "plan");
    p.d_partial = (float *)cudaMallocCheck((size_t)encoder_plan_max_slots(BT) * Cmax * sizeof(float), "partial");
    EncoderPlan h_plan;
    encoder_plan_point(&h_plan, h_plan_mem, BT);
    encoder_plan_point(&p.plan, d_plan_mem, BT);

    // validate every variant on every batch, at every C
    for (int kind = 0; kind < NUM_BATCHES; kind++) {
        prepare_batch(&p, &h_plan, inp, count, h_token, h_start, h_pos, kind, BT, V);
        for (int ci = 0; ci < nC; ci++) {
            int C = Cs[ci];
            memcpy(wte_ref, wte0, (size_t)V * C * sizeof(float));
            memcpy(wpe_ref, wpe0, (size_t)T * C * sizeof(float));
            encoder_backward_cpu(wte_ref, wpe_ref, dout, inp, B, T, C);
            for (int k = 1; k < num_kernels; k++) {
                if (only > 0 && k != only && k != 1) { continue; }
                cudaCheck(cudaMemcpy(d_dwte, wte0, (size_t)V * C * sizeof(float), cudaMemcpyHostToDevice));
                cudaCheck(cudaMemcpy(d_dwpe, wpe0, (size_t)T * C * sizeof(float), cudaMemcpyHostToDevice));
                encoder_backward_variant(k, d_dwte, d_dwpe, d_dout, &p, B, T, C);
                cudaCheck(cudaDeviceSynchronize());
                float *wte_gpu = from_device(d_dwte, (size_t)V * C), *wpe_gpu = from_device(d_dwpe, (size_t)T * C);
                validate_exact("dwte", wte_gpu, wte_ref, (size_t)V * C);
                validate_exact("dwpe", wpe_gpu, wpe_ref, (size_t)T * C);
                printf("  variant %d, %s batch (%d tokens; %d chunks, %d of them partial rows of %d tokens), C %d: "
                       "dwte and dwpe exact\n", k, batch_name(kind), p.nb, h_plan.num_chunks, h_plan.num_slots,
                       h_plan.num_multi, C);
                free(wte_gpu);
                free(wpe_gpu);
            }
        }
    }
    printf("All results match\n\n");

    // time each batch at C = 768: dout read once, dwpe read and written (dwte's touched rows not counted)
    for (int kind = 0; kind < (small ? 0 : NUM_BATCHES); kind++) {
        prepare_batch(&p, &h_plan, inp, count, h_token, h_start, h_pos, kind, BT, V);
        int C = Cs[0];
        char shape[40];
        snprintf(shape, sizeof(shape), "%dx%d C %d, %s", B, T, C, batch_name(kind));
        double bytes = (double)BT * C * sizeof(floatX) + 2.0 * T * C * sizeof(float);
        double ms1 = 0.0;
        for (int k = 1; k < num_kernels; k++) {
            if (only > 0 && k != only && k != 1) { continue; }
            double ms = benchmark_ms([&]() { encoder_backward_variant(k, d_dwte, d_dwpe, d_dout, &p, B, T, C); });
            if (k == 1) { ms1 = ms; }
            char ratio[24];
            snprintf(ratio, sizeof(ratio), "%.0f%% of copy, %.2fx v1", 100.0 * bytes / (ms * 1e-3) / 1e9 / copy_gbs,
                     ms1 / ms);
            result_line("encoder_backward", shape, variant_name(k), k == 1 ? 256 : 128, ms, bytes / (ms * 1e-3) / 1e9,
                        "GB/s", ratio);
        }
    }
    if (!small) { print_results_table(); }

    free(dout); free(wte0); free(wpe0); free(wte_ref); free(wpe_ref); free(inp); free(count);
    free(h_token); free(h_start); free(h_pos); free(h_plan_mem);
    cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_dwte)); cudaCheck(cudaFree(d_dwpe));
    cudaCheck(cudaFree(p.d_token)); cudaCheck(cudaFree(p.d_start)); cudaCheck(cudaFree(p.d_pos));
    cudaCheck(cudaFree(d_plan_mem)); cudaCheck(cudaFree(p.d_partial));
    return 0;
}
