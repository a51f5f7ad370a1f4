/*
 llmc/sampler.h: a small seeded random number generator and next-token sampling
 (temperature, top-k) from a row of logits.
*/
#ifndef LLMC_SAMPLER_H
#define LLMC_SAMPLER_H

#include <stdint.h>
#include <math.h>

// xorshift* (Vigna): 64 bits of state, the state is all a checkpoint needs to resume
static inline uint32_t random_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1DULL) >> 32);
}

// uniform in [0, 1)
static inline float random_f32(uint64_t *state) {
    return (random_u32(state) >> 8) / 16777216.0f;
}

// standard normal (Box-Muller), for the random init of fresh models
static inline float random_normal(uint64_t *state) {
    float u1 = random_f32(state), u2 = random_f32(state);
    if (u1 < 1e-12f) { u1 = 1e-12f; }
    return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}

// a before b in the order of sampling: larger logit first, then smaller index. A strict total
// order, so "the top k" is one well-defined set, listed in one well-defined order.
static inline int logit_before(const float *logits, int a, int b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
}

// heap[0..k) is a binary heap whose root is the last of its elements in logit_before order;
// moves heap[i] down to where it belongs
static inline void topk_sift_down(int *heap, int k, int i, const float *logits) {
    for (;;) {
        int last = i, l = 2 * i + 1, r = l + 1;
        if (l < k && logit_before(logits, heap[last], heap[l])) { last = l; }
        if (r < k && logit_before(logits, heap[last], heap[r])) { last = r; }
        if (last == i) { return; }
        int t = heap[i]; heap[i] = heap[last]; heap[last] = t;
        i = last;
    }
}

// Samples an index in [0, n) from logits / temperature restricted to the
// top_k largest (top_k <= 0 or >= n: all of them). temperature <= 0 is argmax.
// coin is a uniform number in [0, 1). scratch holds n ints.
// The result depends only on the top_k (index, logit) pairs, not on the other logits nor on
// the order they come in: the decoder (run_gpt2_1bit.c) relies on it, as it computes the
// logits outside a proven top-k candidate set only to within a bound, and passes -inf.
static inline int sample_logits(const float *logits, int n, float temperature, int top_k, float coin, int *scratch) {
    int argmax = 0;
    for (int i = 1; i < n; i++) { if (logits[i] > logits[argmax]) { argmax = i; } }
    if (temperature <= 0.0f) { return argmax; }
    int k = (top_k <= 0 || top_k > n) ? n : top_k;
    // the k first in logit_before order: a heap of k whose root is the one to drop next,
    // O(n log k), then sorted into that order by taking the root out k times
    for (int i = 0; i < k; i++) { scratch[i] = i; }
    for (int i = k / 2 - 1; i >= 0; i--) { topk_sift_down(scratch, k, i, logits); }
    for (int i = k; i < n; i++) {
        if (logit_before(logits, i, scratch[0])) { scratch[0] = i; topk_sift_down(scratch, k, 0, logits); }
    }
    for (int m = k - 1; m > 0; m--) { // the root is the last of m + 1: it goes to position m
        int t = scratch[0]; scratch[0] = scratch[m]; scratch[m] = t;
        topk_sift_down(scratch, m, 0, logits);
    }
    float maxv = logits[argmax];
    double sum = 0.0;
    for (int j = 0; j < k; j++) { sum += expf((logits[scratch[j]] - maxv) / temperature); }
    double cdf = 0.0;
    for (int j = 0; j < k; j++) {
        cdf += expf((logits[scratch[j]] - maxv) / temperature) / sum;
        if (coin < cdf) { return scratch[j]; }
    }
    return scratch[k - 1]; // rounding
}

#endif // LLMC_SAMPLER_H
