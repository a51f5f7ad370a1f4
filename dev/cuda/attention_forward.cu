/*
 attention_forward: causal multi-head self-attention, forward, of one layer:
     out[b,t,h,:] = sum_{t2 <= t} softmax_t2(q[b,t,h,:] . k[b,t2,h,:] / sqrt(HS)) v[b,t2,h,:]
 from qkv (B,T,3C) = (B,T,3,NH,HS), into out (B,T,C) (what attproj reads); the fused variants
 also write lse (B,NH,T), each row's log-sum-exp, which is all their backward keeps. The spec is
 train_gpt2_1bit.c's attention_forward; every variant here is llmc/attention.cuh's code (the
 forms are numbered there as here).

 Build and run:
     make -C dev/cuda attention_forward && ./dev/cuda/attention_forward     all variants
     ./dev/cuda/attention_forward 4                                         variant 4 (and the baseline)
     (fp32 activations: nvcc ... -DENABLE_FP32 attention_forward.cu: variants 1 and 2 only)

 Variants:
     1  cuBLAS + softmax (attention_forward_cublas): permute q, k, v; scores (B,NH,T,T) by a batched
        GEMM; softmax kernel; att (B,NH,T,T) @ v by a batched GEMM; permute back. What the trainer
        runs with `make ATTENTION=cublas` (the baseline row)
     2  fused, SIMT fp32 (attention_forward2): tiles in shared memory, online softmax, masked tiles
        skipped, a lane per key; what the FP32 build runs (and the bf16 build for head sizes > 64)
     3  fused, tensor cores (attention_forward3, bf16 build): mma.sync m16n8k16 bf16 with fp32
        accumulation, 64 queries x 64 keys a tile; what the bf16 trainer ran until variant 4
     4  fused, tensor cores, tuned (attention_forward4, bf16 build; the trainer runs it at 128 threads):
        variant 3 with ldmatrix.x4 fragments (V read transposed by ldmatrix.trans instead of stored
        transposed), cp.async double-buffered K/V tiles (tile kt + 1 copied while kt is
        multiplied), Q through shared memory, 4 or 8 warps of 16 rows (block 128 or 256 threads)
 Before the variants, the bf16 build checks the inline PTX of variants 3 and 4 against plain
 references: mma_bf16_16816 on one 16x8x16 product against a plain matmul, and cp.async (with a
 zero-filled tail) + ldmatrix.x4 and .x4.trans against the PTX ISA's fragment table. On a GPU it
 checks the layouts the kernels assume, on the CPU emulator the emulator's model of them.

 Shape: one layer of GPT-2 124M at llm.c's batch: B=64, T=1024, NH=12, HS=64. Validation on
 three heads (b, h) in full, against a CPU reference in double; the timing reports TFLOPS of
 the causal FLOPs (2 matmuls x 2 x B NH HS T(T+1)/2: what a kernel that skips the masked half
 must do; variant 1 does twice that).
*/
#include "common.h" // defines: harness (random inputs, validation, timing, results); includes llmc/ headers
#include "llmc/attention.cuh" // defines: attention_forward_cublas (1), attention_forward2 (2), attention_forward3 (3),
                              //          attention_forward4 (4)

// Tolerances, |gpu - cpu| <= atol + rtol |cpu|. out: bf16 builds round out to bf16 (2^-9
// relative) and variant 1 also the scores and probabilities (a score z rounded to bf16 moves
// exp(z / sqrt(HS)) by up to 2^-9 |z| / sqrt(HS), ~0.5% here), variant 3 the probabilities:
// 2e-2 leaves a margin of about 4; fp32: sums of T products in another order, ~1e-6.
// lse: fp32 sums of exact products in every build, ~1e-6.
#ifdef ENABLE_FP32
#define OUT_ATOL 1e-4
#define OUT_RTOL 1e-4
#else
#define OUT_ATOL 2e-2
#define OUT_RTOL 2e-2
#endif
#define LSE_ATOL 1e-4
#define LSE_RTOL 1e-5
#define MMA_RTOL 1e-5 // the mma check: fp32 sums of 16 exact products, relative to the sum of |terms|

// ----------------------------------------------------------------------------
// CPU reference: one head (b, h), in double from the floatX inputs

// out_bh (T,HS), lse_bh (T)
static void attention_forward_cpu(double *out_bh, double *lse_bh, const floatX *qkv, int b, int h, int T, int C,
                                  int NH) {
    const int HS = C / NH;
    const double scale = 1.0 / sqrt((double)HS);
    #pragma omp parallel
    {
        double *p = (double *)mallocCheck((size_t)T * sizeof(double));
        #pragma omp for
        for (int t = 0; t < T; t++) {
            const floatX *q = qkv + ((size_t)b * T + t) * 3 * C + h * HS;
            double mx = -1e300;
            for (int t2 = 0; t2 <= t; t2++) {
                const floatX *k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * HS;
                double s = 0.0;
                for (int d = 0; d < HS; d++) { s += (double)to_float(q[d]) * to_float(k[d]); }
                p[t2] = s * scale;
                mx = p[t2] > mx ? p[t2] : mx;
            }
            double sum = 0.0;
            for (int t2 = 0; t2 <= t; t2++) { p[t2] = exp(p[t2] - mx); sum += p[t2]; }
            for (int d = 0; d < HS; d++) {
                double o = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    o += p[t2] * to_float(qkv[((size_t)b * T + t2) * 3 * C + 2 * C + h * HS + d]);
                }
                out_bh[(size_t)t * HS + d] = o / sum;
            }
            lse_bh[t] = mx + log(sum);
        }
        free(p);
    }
}

// ----------------------------------------------------------------------------
// the mma check (bf16 build): D = A B + C for one 16x8x16 product, fragments placed by the
// PTX ISA's tables as the kernels of variant 3 place them

#ifndef ENABLE_FP32
// A (16,16) row-major, Bt (8,16) = B^T row-major (B column-major), C and D (16,8) row-major
__global__ void mma_check_kernel(float *D, const floatX *A, const floatX *Bt, const float *C) {
    const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
    const uint32_t a[4] = {att3_lds(&A[g * 16 + 2 * t]), att3_lds(&A[(g + 8) * 16 + 2 * t]),
                           att3_lds(&A[g * 16 + 2 * t + 8]), att3_lds(&A[(g + 8) * 16 + 2 * t + 8])};
    float d[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
    mma_bf16_16816(d, a, att3_lds(&Bt[g * 16 + 2 * t]), att3_lds(&Bt[g * 16 + 2 * t + 8]));
    D[g * 8 + 2 * t] = d[0];
    D[g * 8 + 2 * t + 1] = d[1];
    D[(g + 8) * 8 + 2 * t] = d[2];
    D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

static void mma_check(void) {
    floatX A[16 * 16], Bt[8 * 16];
    float C[16 * 8];
    for (int i = 0; i < 16 * 16; i++) { A[i] = from_float<floatX>(rng_uniform(-2.0f, 2.0f)); }
    for (int i = 0; i < 8 * 16; i++) { Bt[i] = from_float<floatX>(rng_uniform(-2.0f, 2.0f)); }
    for (int i = 0; i < 16 * 8; i++) { C[i] = rng_uniform(-1.0f, 1.0f); }
    floatX *dA = to_device(A, 16 * 16), *dBt = to_device(Bt, 8 * 16);
    float *dC = to_device(C, 16 * 8), *dD = (float *)cudaMallocCheck(16 * 8 * sizeof(float), "mma D");
    mma_check_kernel<<<1, 32>>>(dD, dA, dBt, dC);
    cudaCheck(cudaGetLastError());
    float *D = from_device(dD, 16 * 8);
    double ref[16 * 8], mag[16 * 8];
    for (int r = 0; r < 16; r++) {
        for (int c = 0; c < 8; c++) {
            double s = C[r * 8 + c], m = fabs(s);
            for (int k = 0; k < 16; k++) {
                double p = (double)to_float(A[r * 16 + k]) * to_float(Bt[c * 16 + k]);
                s += p;
                m += fabs(p);
            }
            ref[r * 8 + c] = s;
            mag[r * 8 + c] = m;
        }
    }
    for (int i = 0; i < 16 * 8; i++) {
        if (!(fabs(D[i] - ref[i]) <= MMA_RTOL * mag[i])) {
            printf("MISMATCH mma.sync m16n8k16 bf16 at D[%d][%d]: gpu %.9g, plain matmul %.9g: the fragment layout "
                   "of mma_bf16_16816 is not the hardware's\n", i / 8, i % 8, D[i], ref[i]);
            exit(EXIT_FAILURE);
        }
    }
    printf("  mma.sync m16n8k16 bf16 (mma_bf16_16816): D = A B + C equals a plain matmul (16x8x16)\n");
    free(D);
    cudaCheck(cudaFree(dA)); cudaCheck(cudaFree(dBt)); cudaCheck(cudaFree(dC)); cudaCheck(cudaFree(dD));
}

// ----------------------------------------------------------------------------
// the cp.async and ldmatrix check (bf16 build): a 32 x 16 bf16 matrix M copied global -> shared
// by att4_cp_async16 (16-byte chunks into rows padded to 24; the last chunk with src-size 8, so
// its last 4 values must come out zeros), then read by att4_ldsm_x4 and att4_ldsm_x4_trans with
// lane l giving the address of row l, columns 8 ((l / 8) % 2) ..: matrix i is rows 8i .. 8i + 7,
// columns 8 (i % 2) .. + 7. Expected (PTX ISA, ldmatrix): register i of lane l holds matrix i's
// (l / 4, 2 (l % 4) + k), k = 0 in the low half, 1 in the high; .trans: (2 (l % 4) + k, l / 4).

#define LDSM_LD 24
__global__ void ldsm_check_kernel(uint32_t *R, uint32_t *Rt, const floatX *M) {
    __shared__ __align__(16) floatX Ms[32 * LDSM_LD];
    const int lane = threadIdx.x;
    for (int c = lane; c < 64; c += 32) { // 32 rows x 2 chunks
        const int r = c / 2, col = c % 2 * 8;
        att4_cp_async16(&Ms[r * LDSM_LD + col], M + r * 16 + col, c == 63 ? 8 : 16);
    }
    att4_cp_async_commit();
    att4_cp_async_wait<0>();
    __syncwarp(); // every lane's copies are visible to the warp
    uint32_t r[4], rt[4];
    att4_ldsm_x4(r, &Ms[lane * LDSM_LD + (lane / 8) % 2 * 8]);
    att4_ldsm_x4_trans(rt, &Ms[lane * LDSM_LD + (lane / 8) % 2 * 8]);
    for (int i = 0; i < 4; i++) {
        R[lane * 4 + i] = r[i];
        Rt[lane * 4 + i] = rt[i];
    }
}

static void ldsm_check(void) {
    floatX M[32 * 16], Mz[32 * 16]; // Mz: what shared memory holds (the zero-filled tail)
    for (int i = 0; i < 32 * 16; i++) {
        M[i] = from_float<floatX>(rng_uniform(-2.0f, 2.0f));
        Mz[i] = i >= 31 * 16 + 12 ? from_float<floatX>(0.0f) : M[i];
    }
    floatX *dM = to_device(M, 32 * 16);
    uint32_t *dR = (uint32_t *)cudaMallocCheck(2 * 128 * sizeof(uint32_t), "ldsm R");
    ldsm_check_kernel<<<1, 32>>>(dR, dR + 128, dM);
    cudaCheck(cudaGetLastError());
    uint32_t *R = from_device(dR, 2 * 128);
    for (int tr = 0; tr < 2; tr++) {
        for (int lane = 0; lane < 32; lane++) {
            for (int i = 0; i < 4; i++) {
                for (int k = 0; k < 2; k++) {
                    const int mr = tr ? 2 * (lane % 4) + k : lane / 4, mc = tr ? lane / 4 : 2 * (lane % 4) + k;
                    uint16_t want, got = (uint16_t)(R[tr * 128 + lane * 4 + i] >> (16 * k));
                    memcpy(&want, &Mz[(8 * i + mr) * 16 + 8 * (i % 2) + mc], 2);
                    if (got != want) {
                        printf("MISMATCH %s: lane %d register %d half %d: 0x%04x, expected 0x%04x (matrix %d "
                               "(%d, %d)): cp.async or the ldmatrix layout is not the hardware's\n",
                               tr ? "ldmatrix.x4.trans" : "ldmatrix.x4", lane, i, k, got, want, i, mr, mc);
                        exit(EXIT_FAILURE);
                    }
                }
            }
        }
    }
    printf("  cp.async (zero fill) + ldmatrix.x4, .x4.trans (att4_ldsm_x4*): every register as the PTX ISA's table\n");
    free(R);
    cudaCheck(cudaFree(dM)); cudaCheck(cudaFree(dR));
}
#endif

// ----------------------------------------------------------------------------
// launchers and dispatcher

// variant 1's scratch: q, k, v permuted, the scores, the probabilities, the permuted output
typedef struct {
    floatX *qkvr, *preatt, *att, *vaccum;
} CublasScratch;

static int variant_applies(int k, int HS) {
#ifdef ENABLE_FP32
    return k <= 2 && (k == 1 || HS <= ATT_MAX_HS);
#else
    return k == 1 || (k == 2 && HS <= ATT_MAX_HS) || (k >= 3 && HS <= ATT3_MAX_HS);
#endif
}

// the block sizes a variant runs at (validated and timed at each): variant 4's 4 or 8 warps
static const int blocks4[] = {128, 256};
static int variant_blocks(int k, const int **blocks) {
    static const int fixed[] = {ATT_THREADS};
    *blocks = k == 4 ? blocks4 : fixed;
    return k == 4 ? 2 : 1;
}

static void attention_forward_variant(int k, int block, floatX *out, float *lse, const CublasScratch &s,
                                      const floatX *qkv, int B, int T, int C, int NH) {
    switch (k) {
    case 1: attention_forward_cublas(out, s.att, s.qkvr, s.preatt, s.vaccum, qkv, B, T, C, NH); break;
    case 2: attention_forward2(out, lse, qkv, B, T, C, NH); break;
#ifndef ENABLE_FP32
    case 3: attention_forward3(out, lse, qkv, B, T, C, NH); break;
    case 4: attention_forward4(out, lse, qkv, B, T, C, NH, block); break;
#endif
    default: fprintf(stderr, "no variant %d in this build\n", k); exit(EXIT_FAILURE);
    }
}

static const char *variant_name(int k) {
    switch (k) {
    case 1: return "1 cuBLAS + softmax (baseline)";
    case 2: return "2 fused, SIMT fp32";
    case 3: return "3 fused, mma.sync bf16";
    default: return "4 fused, ldmatrix + cp.async (ships)";
    }
}

// ----------------------------------------------------------------------------
// one shape's buffers: random qkv on the host and the device, out, lse, variant 1's scratch

typedef struct {
    int B, T, NH, HS, C;
    char name[40];
    floatX *qkv, *d_qkv, *d_out;
    float *d_lse;
    CublasScratch cs;
} Problem;

static void problem_init(Problem *p, const int shape[4]) {
    p->B = shape[0]; p->T = shape[1]; p->NH = shape[2]; p->HS = shape[3]; p->C = p->NH * p->HS;
    snprintf(p->name, sizeof(p->name), "B%d T%d NH%d HS%d", p->B, p->T, p->NH, p->HS);
    const size_t n_qkv = (size_t)p->B * p->T * 3 * p->C, n_out = (size_t)p->B * p->T * p->C;
    // q and k in [-2, 2]: scores with a spread (std ~1.3 after the scale), so the softmax is not flat
    p->qkv = (floatX *)mallocCheck(n_qkv * sizeof(floatX));
    for (size_t i = 0; i < n_qkv; i++) {
        const int part = (int)(i / p->C % 3); // 0 q, 1 k, 2 v
        p->qkv[i] = from_float<floatX>(part < 2 ? rng_uniform(-2.0f, 2.0f) : rng_uniform(-1.0f, 1.0f));
    }
    p->d_qkv = to_device(p->qkv, n_qkv);
    p->d_out = (floatX *)cudaMallocCheck(n_out * sizeof(floatX), "out");
    p->d_lse = (float *)cudaMallocCheck((size_t)p->B * p->NH * p->T * sizeof(float), "lse");
    const size_t n_att = (size_t)p->B * p->NH * p->T * p->T;
    p->cs.qkvr = (floatX *)cudaMallocCheck(3 * n_out * sizeof(floatX), "qkvr");
    p->cs.preatt = (floatX *)cudaMallocCheck(n_att * sizeof(floatX), "preatt");
    p->cs.att = (floatX *)cudaMallocCheck(n_att * sizeof(floatX), "att");
    p->cs.vaccum = (floatX *)cudaMallocCheck(n_out * sizeof(floatX), "vaccum");
}

static void problem_free(Problem *p) {
    free(p->qkv);
    cudaCheck(cudaFree(p->d_qkv)); cudaCheck(cudaFree(p->d_out)); cudaCheck(cudaFree(p->d_lse));
    cudaCheck(cudaFree(p->cs.qkvr)); cudaCheck(cudaFree(p->cs.preatt)); cudaCheck(cudaFree(p->cs.att));
    cudaCheck(cudaFree(p->cs.vaccum));
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
    double *out_ref = (double *)mallocCheck((size_t)nheads * T * HS * sizeof(double));
    double *lse_ref = (double *)mallocCheck((size_t)nheads * T * sizeof(double));
    for (int i = 0; i < nheads; i++) {
        attention_forward_cpu(out_ref + (size_t)i * T * HS, lse_ref + (size_t)i * T, p->qkv, heads[i][0], heads[i][1],
                              T, C, NH);
    }
    floatX *out_head = (floatX *)mallocCheck((size_t)nheads * T * HS * sizeof(floatX));
    float *lse_head = (float *)mallocCheck((size_t)nheads * T * sizeof(float));
    const size_t n_out = (size_t)B * T * C, n_lse = (size_t)B * NH * T;
    for (int k = 1; k < num_kernels; k++) {
        if ((only > 0 && k != only && k != 1) || !variant_applies(k, HS)) { continue; }
        const int *blocks;
        const int nblocks = variant_blocks(k, &blocks);
        for (int bi = 0; bi < nblocks; bi++) {
            cudaCheck(cudaMemset(p->d_out, 0x7f, n_out * sizeof(floatX))); // stale output must not pass
            cudaCheck(cudaMemset(p->d_lse, 0x7f, n_lse * sizeof(float)));
            attention_forward_variant(k, blocks[bi], p->d_out, p->d_lse, p->cs, p->d_qkv, B, T, C, NH);
            cudaCheck(cudaDeviceSynchronize());
            floatX *out = from_device(p->d_out, n_out);
            float *lse = from_device(p->d_lse, n_lse);
            for (int i = 0; i < nheads; i++) { // the head's (T,HS) slice of out, and its lse row
                const int b = heads[i][0], h = heads[i][1];
                for (int t = 0; t < T; t++) {
                    memcpy(out_head + ((size_t)i * T + t) * HS, out + ((size_t)b * T + t) * C + h * HS,
                           HS * sizeof(floatX));
                }
                memcpy(lse_head + (size_t)i * T, lse + ((size_t)b * NH + h) * T, T * sizeof(float));
            }
            char name[96], blk[16] = "";
            if (nblocks > 1) { snprintf(blk, sizeof(blk), " block %d", blocks[bi]); }
            snprintf(name, sizeof(name), "variant %d,%s %s: out", k, blk, p->name);
            validate_close(name, out_head, out_ref, (size_t)nheads * T * HS, OUT_ATOL, OUT_RTOL);
            if (k > 1) { // variant 1 has no lse (it keeps att instead)
                snprintf(name, sizeof(name), "variant %d,%s %s: lse", k, blk, p->name);
                validate_close(name, lse_head, lse_ref, (size_t)nheads * T, LSE_ATOL, LSE_RTOL);
            }
            free(out);
            free(lse);
        }
    }
    free(out_ref); free(lse_ref); free(out_head); free(lse_head);
}

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    const int num_kernels = 5; // variants 1..4 (there is no 0)
    int only = parse_kernel_num(argc, argv, num_kernels);
    common_start("attention_forward: causal self-attention of qkv (B,T,3C) -> out (B,T,C), lse (B,NH,T)");
    cublasCheck(cublasCreate(&cublas_handle));
    rng_seed(1337);
    const int small = small_mode();
#ifndef ENABLE_FP32
    mma_check();
    ldsm_check();
#endif

    // (B, T, NH, HS). Small mode (the CPU emulator), each reaching a path: T = 100 (not a multiple of
    // any tile; B, NH > 1; HS = 64: variant 3's largest, 2's two dims a lane), T = 1, T = 130 (three
    // 64-tiles, the last of 2 rows; HS = 16; variant 4 at 8 warps: a block whose warps 1.. are past T),
    // T = 300 (variant 4's double buffer over five key tiles), HS = 24 (padded to 32, 16-byte loads with a partial
    // last chunk), HS = 20 (not a multiple of 8: one value at a time), HS = 128 and 80 (variant 2's
    // 4 dims a lane, 4 rows a warp; variant 3 takes at most 64)
    const int shapes_gpu[][4] = {{64, 1024, 12, 64}};
    const int shapes_small[][4] = {{2, 100, 3, 64}, {1, 1, 2, 64}, {1, 130, 1, 16}, {1, 300, 1, 64}, {2, 45, 2, 24},
                                   {1, 37, 2, 20},  {1, 70, 2, 128}, {1, 40, 2, 80}};
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
        const double flops = 4.0 * p.B * p.NH * p.HS * ((double)p.T * (p.T + 1) / 2);
        double ms1 = 0.0;
        for (int k = 1; k < num_kernels; k++) {
            if ((only > 0 && k != only && k != 1) || !variant_applies(k, p.HS)) { continue; }
            const int *blocks;
            const int nblocks = variant_blocks(k, &blocks);
            for (int bi = 0; bi < nblocks; bi++) {
                double ms = benchmark_ms([&]() {
                    attention_forward_variant(k, blocks[bi], p.d_out, p.d_lse, p.cs, p.d_qkv, p.B, p.T, p.C, p.NH);
                });
                if (k == 1) { ms1 = ms; }
                char ratio[24];
                snprintf(ratio, sizeof(ratio), "%.2fx v1", ms1 / ms);
                result_line("attention_forward", p.name, variant_name(k), k == 1 ? 0 : blocks[bi], ms,
                            flops / (ms * 1e-3) / 1e12, "TFLOPS", ratio);
            }
        }
        problem_free(&p);
    }
    if (!small) { print_results_table(); }
    cublasCheck(cublasDestroy(cublas_handle));
    return 0;
}
