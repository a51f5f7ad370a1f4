/*
 attention_backward: causal multi-head self-attention, backward, of one layer: dqkv (B,T,3C)
 (overwritten) from dout (B,T,C) and what the forward kept. With z = q.k / sqrt(HS), P = softmax(z)
 row by row (causal), out = P v:
     dv = P^T dout      dP = dout v^T      dz = P * (dP - D),  D = rowsum(P * dP) = rowsum(dout * out)
     dq = dz k / sqrt(HS)                  dk = dz^T q / sqrt(HS)
 The spec is train_gpt2_1bit.c's attention_backward; every variant here is llmc/attention.cuh's
 code (numbered there as here), each fed by its own forward (dev/cuda/attention_forward.cu).

 Build and run:
     make -C dev/cuda attention_backward && ./dev/cuda/attention_backward   all variants
     ./dev/cuda/attention_backward 4                                       variant 4 (and the baseline)
     (fp32 activations: nvcc ... -DENABLE_FP32 attention_backward.cu: variants 1 and 2 only)

 Variants:
     1  cuBLAS + softmax backward (attention_backward_cublas) from the probabilities att (B,NH,T,T)
        the forward kept: four batched GEMMs, the softmax backward, permutes (the baseline row)
     2  fused, SIMT fp32 (attention_backward2), from the forward's lse (B,NH,T): D by one kernel,
        then dk, dv by a kernel over key tiles walking the query tiles in order, and dq by one over
        query tiles walking the key tiles in order; P recomputed, no atomics
     3  the same scheme on the tensor cores (attention_backward3, bf16 build): mma.sync m16n8k16,
        fp32 accumulation, P and dS rounded to bf16 for their matmuls (the trainer's until variant 4)
     4  variant 3 with attention_forward.cu variant 4's loads (attention_backward4, bf16 build;
        what the trainer runs): ldmatrix.x4 fragments, K / Q / dO kept once by rows and read
        transposed by ldmatrix.trans where a matmul needs them so (variant 3 kept a second,
        transposed copy, stored one bf16 at a time), cp.async double-buffered tiles; fed by
        forward variant 4 (8 warps)
     5  variant 4 without its second recomputation (attention_backward5, bf16 build): the dk/dv
        kernel also writes dS^T (bf16, the causal 64 x 64 tiles) into a scratch, and dq = dS k is
        one matmul reading it back, where variant 4's dq kernel recomputes S, P, dP and dS
        (5 matmuls in all, not 7); fed by forward variant 4. Not yet run on a GPU

 Shape: one layer of GPT-2 124M at llm.c's batch, B=64, T=1024, NH=12, HS=64. Validation on
 three heads in full against a CPU reference in double, and determinism: two runs give the same
 bits (variants 2 and 3: every output element is written once, by one thread). The timing
 reports TFLOPS of the causal FLOPs of the 5 matmuls a backward needs (S recomputed, dP, dv,
 dk, dq: 2.5x the forward's; variant 1 does 4 of them in full, variants 3 and 4 do 7 as they
 recompute S and dP in both kernels, variant 5 does the 5). Variant 5's scratch starts as NaN
 bytes: a value its dq kernel read that the dk/dv kernel did not write would show.
*/
#include "common.h" // defines: harness (random inputs, validation, timing, results); includes llmc/ headers
#include "llmc/attention.cuh" // defines: attention_{forward,backward}_cublas (1), *2 (2), *3 (3), *4 (4), *5 (5)

// Tolerances, |gpu - cpu| <= ATOL_OF_RMS * rms(cpu) + RTOL |cpu|, rms over the heads' dq, dk, dv.
// bf16: the outputs are rounded to bf16 (2^-9 relative: RTOL), and dz = P (dP - D), a difference,
// enters the last matmuls rounded to bf16, as P does (variant 1 also rounds the scores and dP),
// which errs by a fraction of the rms wherever the true value is small. On the CPU emulator's
// small shapes the worst |diff| - RTOL |cpu| was 0.037 rms (variant 1), 0.018 (2), 0.015 (3);
// 0.1 rms leaves a margin of 3 over the baseline. A wrong index or a missing term is off by ~1 rms.
// fp32: sums in other orders only (~1e-6 relative).
#ifdef ENABLE_FP32
#define BWD_ATOL_OF_RMS 1e-4
#define BWD_RTOL 1e-4
#else
#define BWD_ATOL_OF_RMS 0.1
#define BWD_RTOL 2e-2
#endif

// ----------------------------------------------------------------------------
// CPU reference: one head (b, h), in double from the floatX inputs

// dq_bh, dk_bh, dv_bh (T,HS); p and dz: (T,T) scratch
static void attention_backward_cpu(double *dq_bh, double *dk_bh, double *dv_bh, double *p, double *dz,
                                   const floatX *qkv, const floatX *dout, int b, int h, int T, int C, int NH) {
    const int HS = C / NH;
    const double scale = 1.0 / sqrt((double)HS);
    auto q = [&](int t, int d) { return (double)to_float(qkv[((size_t)b * T + t) * 3 * C + h * HS + d]); };
    auto k = [&](int t, int d) { return (double)to_float(qkv[((size_t)b * T + t) * 3 * C + C + h * HS + d]); };
    auto v = [&](int t, int d) { return (double)to_float(qkv[((size_t)b * T + t) * 3 * C + 2 * C + h * HS + d]); };
    auto dy = [&](int t, int d) { return (double)to_float(dout[((size_t)b * T + t) * C + h * HS + d]); };
    #pragma omp parallel for
    for (int t = 0; t < T; t++) { // P and dz, row by row
        double *p_t = p + (size_t)t * T, *dz_t = dz + (size_t)t * T, mx = -1e300, sum = 0.0, dot = 0.0;
        for (int t2 = 0; t2 <= t; t2++) {
            double s = 0.0;
            for (int d = 0; d < HS; d++) { s += q(t, d) * k(t2, d); }
            p_t[t2] = s * scale;
            mx = p_t[t2] > mx ? p_t[t2] : mx;
        }
        for (int t2 = 0; t2 <= t; t2++) { p_t[t2] = exp(p_t[t2] - mx); sum += p_t[t2]; }
        for (int t2 = 0; t2 <= t; t2++) {
            p_t[t2] /= sum;
            double dp = 0.0;
            for (int d = 0; d < HS; d++) { dp += dy(t, d) * v(t2, d); }
            dz_t[t2] = dp;
            dot += p_t[t2] * dp;
        }
        for (int t2 = 0; t2 <= t; t2++) { dz_t[t2] = p_t[t2] * (dz_t[t2] - dot); }
        for (int d = 0; d < HS; d++) {
            double s = 0.0;
            for (int t2 = 0; t2 <= t; t2++) { s += dz_t[t2] * k(t2, d); }
            dq_bh[(size_t)t * HS + d] = s * scale;
        }
    }
    #pragma omp parallel for
    for (int t2 = 0; t2 < T; t2++) { // dk, dv: column t2 of dz and P
        for (int d = 0; d < HS; d++) {
            double sk = 0.0, sv = 0.0;
            for (int t = t2; t < T; t++) {
                sk += dz[(size_t)t * T + t2] * q(t, d);
                sv += p[(size_t)t * T + t2] * dy(t, d);
            }
            dk_bh[(size_t)t2 * HS + d] = sk * scale;
            dv_bh[(size_t)t2 * HS + d] = sv;
        }
    }
}

// ----------------------------------------------------------------------------
// one shape's buffers, launchers, dispatcher

typedef struct {
    int B, T, NH, HS, C;
    char name[40];
    floatX *qkv, *dout;                          // host
    floatX *d_qkv, *d_dout, *d_out, *d_dqkv;     // device
    float *d_lse, *d_delta;                      // fused forms
    floatX *d_ds;                                // variant 5's dS^T tiles
    floatX *qkvr, *preatt, *att, *vaccum, *dqkvr; // variant 1's scratch
} Problem;

static void problem_init(Problem *p, const int shape[4]) {
    p->B = shape[0]; p->T = shape[1]; p->NH = shape[2]; p->HS = shape[3]; p->C = p->NH * p->HS;
    snprintf(p->name, sizeof(p->name), "B%d T%d NH%d HS%d", p->B, p->T, p->NH, p->HS);
    const size_t n_qkv = (size_t)p->B * p->T * 3 * p->C, n_out = (size_t)p->B * p->T * p->C;
    const size_t n_lse = (size_t)p->B * p->NH * p->T, n_att = n_lse * p->T;
    // q and k in [-2, 2] (a softmax with a spread, as in attention_forward.cu), v and dout in [-1, 1]
    p->qkv = (floatX *)mallocCheck(n_qkv * sizeof(floatX));
    for (size_t i = 0; i < n_qkv; i++) {
        const int part = (int)(i / p->C % 3);
        p->qkv[i] = from_float<floatX>(part < 2 ? rng_uniform(-2.0f, 2.0f) : rng_uniform(-1.0f, 1.0f));
    }
    p->dout = (floatX *)mallocCheck(n_out * sizeof(floatX));
    for (size_t i = 0; i < n_out; i++) { p->dout[i] = from_float<floatX>(rng_uniform(-1.0f, 1.0f)); }
    p->d_qkv = to_device(p->qkv, n_qkv);
    p->d_dout = to_device(p->dout, n_out);
    p->d_out = (floatX *)cudaMallocCheck(n_out * sizeof(floatX), "out");
    p->d_dqkv = (floatX *)cudaMallocCheck(n_qkv * sizeof(floatX), "dqkv");
    p->d_lse = (float *)cudaMallocCheck(n_lse * sizeof(float), "lse");
    p->d_delta = (float *)cudaMallocCheck(n_lse * sizeof(float), "delta");
    p->qkvr = (floatX *)cudaMallocCheck(3 * n_out * sizeof(floatX), "qkvr");
    p->preatt = (floatX *)cudaMallocCheck(n_att * sizeof(floatX), "preatt");
    p->att = (floatX *)cudaMallocCheck(n_att * sizeof(floatX), "att");
    p->vaccum = (floatX *)cudaMallocCheck(n_out * sizeof(floatX), "vaccum");
    p->dqkvr = (floatX *)cudaMallocCheck(3 * n_out * sizeof(floatX), "dqkvr");
    p->d_ds = NULL;
#ifndef ENABLE_FP32
    const size_t n_ds = attention_backward5_scratch(p->B, p->T, p->NH);
    p->d_ds = (floatX *)cudaMallocCheck(n_ds * sizeof(floatX), "ds");
    cudaCheck(cudaMemset(p->d_ds, 0xff, n_ds * sizeof(floatX))); // NaN: what is read unwritten shows
#endif
}

static void problem_free(Problem *p) {
    free(p->qkv); free(p->dout);
    void *ptrs[] = {p->d_qkv, p->d_dout, p->d_out, p->d_dqkv, p->d_lse, p->d_delta, p->qkvr, p->preatt, p->att,
                    p->vaccum, p->dqkvr, p->d_ds};
    for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++) { cudaCheck(cudaFree(ptrs[i])); }
}

static int variant_applies(int k, int HS) {
#ifdef ENABLE_FP32
    return k == 1 || (k == 2 && HS <= ATT_MAX_HS);
#else
    return k == 1 || (k == 2 && HS <= ATT_MAX_HS) || (k >= 3 && HS <= ATT3_MAX_HS);
#endif
}

// the forward each variant's backward needs (what the trainer keeps from it: att, or out and lse)
static void forward_for(int k, const Problem *p) {
    switch (k) {
    case 1:
        attention_forward_cublas(p->d_out, p->att, p->qkvr, p->preatt, p->vaccum, p->d_qkv, p->B, p->T, p->C, p->NH);
        break;
    case 2: attention_forward2(p->d_out, p->d_lse, p->d_qkv, p->B, p->T, p->C, p->NH); break;
#ifndef ENABLE_FP32
    case 3: attention_forward3(p->d_out, p->d_lse, p->d_qkv, p->B, p->T, p->C, p->NH); break;
    case 4:
    case 5: attention_forward4(p->d_out, p->d_lse, p->d_qkv, p->B, p->T, p->C, p->NH, 256); break;
#endif
    default: fprintf(stderr, "no variant %d in this build\n", k); exit(EXIT_FAILURE);
    }
}

static void attention_backward_variant(int k, const Problem *p) {
    switch (k) {
    case 1:
        attention_backward_cublas(p->d_dqkv, p->dqkvr, p->qkvr, p->preatt, p->vaccum, p->d_dout, p->d_qkv, p->att, p->B,
                                  p->T, p->C, p->NH);
        break;
    case 2:
        attention_backward2(p->d_dqkv, p->d_delta, p->d_dout, p->d_qkv, p->d_out, p->d_lse, p->B, p->T, p->C, p->NH);
        break;
#ifndef ENABLE_FP32
    case 3:
        attention_backward3(p->d_dqkv, p->d_delta, p->d_dout, p->d_qkv, p->d_out, p->d_lse, p->B, p->T, p->C, p->NH);
        break;
    case 4:
        attention_backward4(p->d_dqkv, p->d_delta, p->d_dout, p->d_qkv, p->d_out, p->d_lse, p->B, p->T, p->C, p->NH);
        break;
    case 5:
        attention_backward5(p->d_dqkv, p->d_delta, p->d_ds, p->d_dout, p->d_qkv, p->d_out, p->d_lse, p->B, p->T, p->C,
                            p->NH);
        break;
#endif
    default: fprintf(stderr, "no variant %d in this build\n", k); exit(EXIT_FAILURE);
    }
}

static const char *variant_name(int k) {
    switch (k) {
    case 1: return "1 cuBLAS + softmax (baseline)";
    case 2: return "2 fused, SIMT fp32";
    case 3: return "3 fused, mma.sync bf16";
    case 4: return "4 fused, ldmatrix + cp.async (ships)";
    default: return "5 as 4, dS kept, dq one matmul";
    }
}

// every applicable variant against the CPU reference on the heads picked (all in small mode, three else)
static void validate_shape(const Problem *p, int only, int num_kernels, int small) {
    const int B = p->B, T = p->T, NH = p->NH, HS = p->HS, C = p->C;
    int heads[64][2], nheads = 0;
    if (small) {
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) { heads[nheads][0] = b; heads[nheads][1] = h; nheads++; }
        }
    } else {
        const int pick[3][2] = {{0, 0}, {B / 2, NH / 2}, {B - 1, NH - 1}};
        for (int i = 0; i < 3; i++) { heads[i][0] = pick[i][0]; heads[i][1] = pick[i][1]; }
        nheads = 3;
    }
    // per head: dq, dk, dv (T,HS) each, back to back
    const size_t per_head = 3 * (size_t)T * HS, n_qkv = (size_t)B * T * 3 * C;
    double *ref = (double *)mallocCheck(nheads * per_head * sizeof(double));
    double *pm = (double *)mallocCheck((size_t)T * T * sizeof(double));
    double *dz = (double *)mallocCheck((size_t)T * T * sizeof(double));
    double rms = 0.0;
    for (int i = 0; i < nheads; i++) {
        double *r = ref + i * per_head;
        attention_backward_cpu(r, r + (size_t)T * HS, r + 2 * (size_t)T * HS, pm, dz, p->qkv, p->dout, heads[i][0],
                               heads[i][1], T, C, NH);
    }
    for (size_t j = 0; j < nheads * per_head; j++) { rms += ref[j] * ref[j]; }
    rms = sqrt(rms / (nheads * per_head));
    floatX *got = (floatX *)mallocCheck(nheads * per_head * sizeof(floatX));
    for (int k = 1; k < num_kernels; k++) {
        if ((only > 0 && k != only && k != 1) || !variant_applies(k, HS)) { continue; }
        forward_for(k, p);
        cudaCheck(cudaMemset(p->d_dqkv, 0x7f, n_qkv * sizeof(floatX))); // dqkv is overwritten: every element
        attention_backward_variant(k, p);
        cudaCheck(cudaDeviceSynchronize());
        floatX *dqkv = from_device(p->d_dqkv, n_qkv);
        for (int i = 0; i < nheads; i++) { // the head's dq, dk, dv slices
            const int b = heads[i][0], h = heads[i][1];
            for (int part = 0; part < 3; part++) {
                for (int t = 0; t < T; t++) {
                    memcpy(got + i * per_head + ((size_t)part * T + t) * HS,
                           dqkv + ((size_t)b * T + t) * 3 * C + part * C + h * HS, HS * sizeof(floatX));
                }
            }
        }
        char name[96];
        snprintf(name, sizeof(name), "variant %d, %s: dq, dk, dv", k, p->name);
        validate_close(name, got, ref, nheads * per_head, BWD_ATOL_OF_RMS * rms, BWD_RTOL);
        if (k > 1) { // no atomics, fixed order: the same bits again, every element of dqkv
            cudaCheck(cudaMemset(p->d_dqkv, 0, n_qkv * sizeof(floatX)));
            attention_backward_variant(k, p);
            cudaCheck(cudaDeviceSynchronize());
            floatX *again = from_device(p->d_dqkv, n_qkv);
            validate_exact("dqkv, second run", again, dqkv, n_qkv);
            printf("  variant %d, %s: deterministic (a second run gives the same bits)\n", k, p->name);
            free(again);
        }
        free(dqkv);
    }
    free(ref); free(pm); free(dz); free(got);
}

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    const int num_kernels = 6; // variants 1..5 (there is no 0)
    int only = parse_kernel_num(argc, argv, num_kernels);
    common_start("attention_backward: dqkv (B,T,3C) from dout (B,T,C) and the forward's att, or its out and lse");
    cublasCheck(cublasCreate(&cublas_handle));
    rng_seed(1337);
    const int small = small_mode();

    // (B, T, NH, HS); small mode: the shapes of attention_forward.cu, for the same paths (tiles cut
    // by T, T = 1, B and NH > 1, padded head sizes, 16-byte and single-value loads, 4 dims a lane),
    // plus T = 97 at HS = 32: the dk/dv kernel's query tiles of 32 cut by T; T = 300: variant 4's
    // double buffers over five key tiles and ten query tiles
    const int shapes_gpu[][4] = {{64, 1024, 12, 64}};
    const int shapes_small[][4] = {{2, 100, 3, 64}, {1, 1, 2, 64}, {1, 130, 1, 16}, {1, 300, 1, 64},
                                   {2, 45, 2, 24},  {1, 37, 2, 20},  {1, 97, 2, 32}, {1, 70, 2, 128}, {1, 40, 2, 80}};
    const int (*shapes)[4] = small ? shapes_small : shapes_gpu;
    const int nshapes = small ? (int)(sizeof(shapes_small) / sizeof(shapes_small[0]))
                              : (int)(sizeof(shapes_gpu) / sizeof(shapes_gpu[0]));

    for (int s = 0; s < nshapes; s++) {
        Problem p;
        problem_init(&p, shapes[s]);
        validate_shape(&p, only, num_kernels, small);
        problem_free(&p);
    }
    printf("All results match\n\n");

    for (int s = 0; s < (small ? 0 : nshapes); s++) { // small mode: validation only
        Problem p;
        problem_init(&p, shapes[s]);
        const double flops = 2.5 * 4.0 * p.B * p.NH * p.HS * ((double)p.T * (p.T + 1) / 2);
        double ms1 = 0.0;
        for (int k = 1; k < num_kernels; k++) {
            if ((only > 0 && k != only && k != 1) || !variant_applies(k, p.HS)) { continue; }
            forward_for(k, &p); // what the backward reads; not timed
            double ms = benchmark_ms([&]() { attention_backward_variant(k, &p); });
            if (k == 1) { ms1 = ms; }
            char ratio[24];
            snprintf(ratio, sizeof(ratio), "%.2fx v1", ms1 / ms);
            result_line("attention_backward", p.name, variant_name(k), k == 1 ? 0 : ATT_THREADS, ms,
                        flops / (ms * 1e-3) / 1e12, "TFLOPS", ratio);
        }
        problem_free(&p);
    }
    if (!small) { print_results_table(); }
    cublasCheck(cublasDestroy(cublas_handle));
    return 0;
}
