/*
 llmc/encoder.cuh: the token + position embeddings, forward and backward, on the GPU.
 Spec: encoder_forward and encoder_backward in train_gpt2_1bit.c.

   forward:  out (B,T,C) = wte[inp[b,t]] + wpe[t]                 wte (V,C), wpe (maxT,C) fp32
   backward: dwte[token] += sum of dout over the positions holding that token
             dwpe[t]     += sum over b of dout[b,t]                 dout (B,T,C) floatX, dwte/dwpe fp32

 The wte gradient without atomics, balanced: on the host, encoder_plan_build groups the
 positions by token (a counting sort) and cuts each token's positions into chunks of at most
 ENCODER_CHUNK. On the GPU one warp sums a chunk's rows in order (stage 1): a token with one
 chunk (most of them) is added into dwte there; a token with several writes one partial row per
 chunk, and stage 2 adds its partials in order into dwte. So a token that is most of the batch
 (a newline, a batch of padding) is summed by many warps, not serially by one block as before,
 and the result is the same bits run after run.
*/
#ifndef LLMC_ENCODER_CUH
#define LLMC_ENCODER_CUH

#include <string.h>
#include "cuda_common.h" // defines: floatX, x128, f128, load128, store128, to_float, from_float, ceil_div, cudaCheck

#define ENCODER_CHUNK 64        // positions summed by one warp in stage 1
#define ENCODER_WARPS 4         // stage 1: chunks (warps) per block of 128 threads
#define ENCODER_FINAL_WARPS 8   // stage 2: warps sharing one token's partials, 32 columns a block

// ----------------------------------------------------------------------------
// the plan: which warp sums which positions, and where its sum goes

typedef struct {
    int num_chunks, num_multi, num_slots; // chunks; tokens with several chunks; their partial rows
    int *pos;          // (BT) the positions, grouped by token, increasing within a token
    int *chunk_start;  // (num_chunks + 1) chunk c sums the rows pos[chunk_start[c] .. chunk_start[c+1])
    int *chunk_dst;    // (num_chunks) >= 0: its token, added into dwte (the token's only chunk);
                       //              < 0: partial row -1 - chunk_dst[c] (the token has several)
    int *multi_token;  // (num_multi) the tokens with several chunks
    int *multi_start;  // (num_multi + 1) token m's partial rows: multi_start[m] .. multi_start[m+1]
} EncoderPlan;

// the plan for up to BT positions: its ints, and its partial rows. A token of n > ENCODER_CHUNK
// positions has ceil(n / ENCODER_CHUNK) < 2n / ENCODER_CHUNK chunks, hence the bounds.
static inline int encoder_plan_max_multi(int BT) { return BT / (ENCODER_CHUNK + 1) + 1; }
static inline int encoder_plan_max_slots(int BT) { return 2 * BT / ENCODER_CHUNK + 1; }
static inline size_t encoder_plan_ints(int BT) {
    return (size_t)BT + (BT + 1) + BT + encoder_plan_max_multi(BT) + (encoder_plan_max_multi(BT) + 1);
}

// the plan's arrays in mem (encoder_plan_ints(BT) ints): on the host and on the device alike
static inline void encoder_plan_point(EncoderPlan *p, int *mem, int BT) {
    p->pos = mem;
    p->chunk_start = p->pos + BT;
    p->chunk_dst = p->chunk_start + BT + 1;
    p->multi_token = p->chunk_dst + BT;
    p->multi_start = p->multi_token + encoder_plan_max_multi(BT);
    p->num_chunks = p->num_multi = p->num_slots = 0;
}

// the plan of the BT positions of inp (host, (B,T), ids < V), into the host arrays of p;
// count is host scratch of V + 1 ints
static inline void encoder_plan_build(EncoderPlan *p, const int *inp, int BT, int V, int *count) {
    memset(count, 0, ((size_t)V + 1) * sizeof(int));
    for (int i = 0; i < BT; i++) { count[inp[i]]++; }
    int nc = 0, nm = 0, ns = 0;
    for (int v = 0, start = 0; v < V; v++) {
        int n = count[v];
        count[v] = start; // from here on: the first slot of token v in pos (filled below)
        if (n > 0 && n <= ENCODER_CHUNK) { // one chunk, added into dwte directly
            p->chunk_start[nc] = start;
            p->chunk_dst[nc++] = v;
        } else if (n > ENCODER_CHUNK) {    // several: each into its partial row, summed by stage 2
            p->multi_token[nm] = v;
            p->multi_start[nm++] = ns;
            for (int s = start; s < start + n; s += ENCODER_CHUNK) {
                p->chunk_start[nc] = s;
                p->chunk_dst[nc++] = -1 - ns++;
            }
        }
        start += n;
    }
    p->chunk_start[nc] = BT;
    p->multi_start[nm] = ns;
    for (int i = 0; i < BT; i++) { p->pos[count[inp[i]]++] = i; } // stable: positions in increasing order
    p->num_chunks = nc;
    p->num_multi = nm;
    p->num_slots = ns;
}

// copy the host plan h up into the device plan d (asynchronous: h must be pinned and stay
// untouched until the copies are done), the parts in use only
static inline void encoder_plan_upload(EncoderPlan *d, const EncoderPlan *h, int BT) {
    cudaCheck(cudaMemcpyAsync(d->pos, h->pos, (size_t)BT * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpyAsync(d->chunk_start, h->chunk_start, (size_t)(h->num_chunks + 1) * sizeof(int),
                              cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpyAsync(d->chunk_dst, h->chunk_dst, (size_t)h->num_chunks * sizeof(int),
                              cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpyAsync(d->multi_token, h->multi_token, (size_t)h->num_multi * sizeof(int),
                              cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpyAsync(d->multi_start, h->multi_start, (size_t)(h->num_multi + 1) * sizeof(int),
                              cudaMemcpyHostToDevice));
    d->num_chunks = h->num_chunks;
    d->num_multi = h->num_multi;
    d->num_slots = h->num_slots;
}

// ----------------------------------------------------------------------------
// kernels

// out (B,T,C) = wte[inp[b,t]] + wpe[t], from the fp32 weights (one rounding, not three);
// one thread per x128 vector of out (vec: C a multiple of x128::size), else per value
__global__ void encoder_forward_kernel(floatX *out, const int *inp, const float *wte, const float *wpe,
                                       int BT, int T, int C, int vec) {
    int w = vec ? x128::size : 1; // values per thread
    size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * w;
    if (idx >= (size_t)BT * C) { return; }
    int bt = (int)(idx / C), c = (int)(idx % C), t = bt % T;
    const float *we = wte + (size_t)inp[bt] * C + c, *wp = wpe + (size_t)t * C + c;
    if (vec) {
        x128 o;
        for (int k = 0; k < x128::size; k += f128::size) {
            f128 a = load128(we + k), b = load128(wp + k);
            for (int j = 0; j < f128::size; j++) { o[k + j] = from_float<floatX>(a[j] + b[j]); }
        }
        store128(out + idx, o);
    } else {
        out[idx] = from_float<floatX>(we[0] + wp[0]);
    }
}

// stage 1: one warp per chunk sums the chunk's rows of dout (N,C) in order, into dwte[token]
// (+=, the token's only chunk) or into its partial row (=). vec: C a multiple of x128::size and
// the arrays 16-byte aligned: a lane takes x128 vectors lane, lane + 32, ...; else values
__global__ void __launch_bounds__(32 * ENCODER_WARPS)
encoder_backward_wte_kernel(float *dwte, float *partial, const floatX *dout, const int *pos,
                            const int *chunk_start, const int *chunk_dst, int num_chunks, int C, int vec) {
    int chunk = blockIdx.x * ENCODER_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (chunk >= num_chunks) { return; }
    int start = chunk_start[chunk], end = chunk_start[chunk + 1], dst = chunk_dst[chunk];
    float *out = dst >= 0 ? dwte + (size_t)dst * C : partial + (size_t)(-1 - dst) * C;
    if (vec) {
        for (int c = lane * x128::size; c < C; c += 32 * x128::size) {
            float acc[x128::size];
            for (int k = 0; k < x128::size; k++) { acc[k] = 0.0f; }
#pragma unroll 4
            for (int i = start; i < end; i++) { // rows in order: the loads may run ahead, the adds do not
                x128 d = load128(dout + (size_t)pos[i] * C + c);
                for (int k = 0; k < x128::size; k++) { acc[k] += to_float(d[k]); }
            }
            for (int k = 0; k < x128::size; k += f128::size) {
                f128 o = dst >= 0 ? load128(out + c + k) : f128{}; // a partial row is written, not added to
                for (int j = 0; j < f128::size; j++) { o[j] += acc[k + j]; }
                store128(out + c + k, o);
            }
        }
    } else {
        for (int c = lane; c < C; c += 32) {
            float acc = 0.0f;
            for (int i = start; i < end; i++) { acc += to_float(dout[(size_t)pos[i] * C + c]); }
            out[c] = (dst >= 0 ? out[c] : 0.0f) + acc;
        }
    }
}

// stage 2: dwte[token] += the token's partial rows, in order. Block (token m, 32 columns):
// warp w adds rows w, w + ENCODER_FINAL_WARPS, ... of each column; then warp 0 adds the warps'
// sums in order of w (the fixed order that makes the result the same on every run)
__global__ void __launch_bounds__(32 * ENCODER_FINAL_WARPS)
encoder_backward_wte_final_kernel(float *dwte, const float *partial, const int *multi_token,
                                  const int *multi_start, int C) {
    __shared__ float sums[ENCODER_FINAL_WARPS][32];
    int m = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int c = blockIdx.y * 32 + lane;
    int s0 = multi_start[m], s1 = multi_start[m + 1];
    float acc = 0.0f;
    if (c < C) {
#pragma unroll 4
        for (int s = s0 + warp; s < s1; s += ENCODER_FINAL_WARPS) { acc += partial[(size_t)s * C + c]; }
    }
    sums[warp][lane] = acc;
    __syncthreads(); // every warp's sums written
    if (warp == 0 && c < C) {
        float total = 0.0f;
        for (int w = 0; w < ENCODER_FINAL_WARPS; w++) { total += sums[w][lane]; }
        dwte[(size_t)multi_token[m] * C + c] += total;
    }
}

// dwpe[t] += sum over b of dout[b,t]; one thread per x128 vector of (T,C) (vec), else per value
__global__ void encoder_backward_wpe_kernel(float *dwpe, const floatX *dout, int B, int T, int C, int vec) {
    int w = vec ? x128::size : 1;
    size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * w, TC = (size_t)T * C;
    if (idx >= TC) { return; }
    if (vec) {
        float acc[x128::size];
        for (int k = 0; k < x128::size; k++) { acc[k] = 0.0f; }
#pragma unroll 4
        for (int b = 0; b < B; b++) {
            x128 d = load128(dout + b * TC + idx);
            for (int k = 0; k < x128::size; k++) { acc[k] += to_float(d[k]); }
        }
        for (int k = 0; k < x128::size; k += f128::size) {
            f128 o = load128(dwpe + idx + k);
            for (int j = 0; j < f128::size; j++) { o[j] += acc[k + j]; }
            store128(dwpe + idx + k, o);
        }
    } else {
        float sum = 0.0f;
        for (int b = 0; b < B; b++) { sum += to_float(dout[b * TC + idx]); }
        dwpe[idx] += sum;
    }
}

// ----------------------------------------------------------------------------
// launchers

// 128-bit accesses to rows of C floatX and fp32 values: whole vectors, aligned starts
static inline int encoder_vec(int C, const void *a, const void *b, const void *c) {
    return C % x128::size == 0 && is_aligned128(a) && is_aligned128(b) && is_aligned128(c);
}

static inline void encoder_forward(floatX *out, const int *inp, const float *wte, const float *wpe, int B, int T,
                                   int C) {
    int vec = encoder_vec(C, out, wte, wpe);
    size_t threads = (size_t)B * T * C / (vec ? x128::size : 1);
    encoder_forward_kernel<<<ceil_div((long long)threads, 256), 256>>>(out, inp, wte, wpe, B * T, T, C, vec);
    cudaCheck(cudaGetLastError());
}

// dwte, dwpe += the embeddings' gradients from dout (B,T,C), with the device plan of the batch
// (encoder_plan_build, encoder_plan_upload); partial holds encoder_plan_max_slots(B*T) * C floats
static inline void encoder_backward(float *dwte, float *dwpe, float *partial, const floatX *dout,
                                    const EncoderPlan *plan, int B, int T, int C) {
    int vec = encoder_vec(C, dout, dwte, partial);
    if (plan->num_chunks > 0) {
        encoder_backward_wte_kernel<<<ceil_div(plan->num_chunks, ENCODER_WARPS), 32 * ENCODER_WARPS>>>(
            dwte, partial, dout, plan->pos, plan->chunk_start, plan->chunk_dst, plan->num_chunks, C, vec);
        cudaCheck(cudaGetLastError());
    }
    if (plan->num_multi > 0) {
        encoder_backward_wte_final_kernel<<<dim3(plan->num_multi, ceil_div(C, 32)), 32 * ENCODER_FINAL_WARPS>>>(
            dwte, partial, plan->multi_token, plan->multi_start, C);
        cudaCheck(cudaGetLastError());
    }
    int vec_wpe = encoder_vec(C, dout, dwpe, dwpe);
    size_t threads = (size_t)T * C / (vec_wpe ? x128::size : 1);
    encoder_backward_wpe_kernel<<<ceil_div((long long)threads, 256), 256>>>(dwpe, dout, B, T, C, vec_wpe);
    cudaCheck(cudaGetLastError());
}

#endif // LLMC_ENCODER_CUH
