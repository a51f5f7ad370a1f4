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

// Samples an index in [0, n) from logits / temperature restricted to the
// top_k largest (top_k <= 0 or >= n: all of them). temperature <= 0 is argmax.
// coin is a uniform number in [0, 1). scratch holds n ints.
static inline int sample_logits(const float *logits, int n, float temperature, int top_k, float coin, int *scratch) {
    int argmax = 0;
    for (int i = 1; i < n; i++) { if (logits[i] > logits[argmax]) { argmax = i; } }
    if (temperature <= 0.0f) { return argmax; }
    int k = (top_k <= 0 || top_k > n) ? n : top_k;
    // the k largest by partial selection (k is small in practice)
    int count = 0;
    if (k == n) {
        for (int i = 0; i < n; i++) { scratch[i] = i; }
        count = n;
    } else {
        for (int i = 0; i < n; i++) {
            if (count < k) { scratch[count++] = i; }
            else {
                int min_j = 0; // smallest of the kept ones
                for (int j = 1; j < k; j++) { if (logits[scratch[j]] < logits[scratch[min_j]]) { min_j = j; } }
                if (logits[i] > logits[scratch[min_j]]) { scratch[min_j] = i; }
            }
        }
    }
    float maxv = logits[argmax];
    double sum = 0.0;
    for (int j = 0; j < count; j++) { sum += expf((logits[scratch[j]] - maxv) / temperature); }
    double cdf = 0.0;
    for (int j = 0; j < count; j++) {
        cdf += expf((logits[scratch[j]] - maxv) / temperature) / sum;
        if (coin < cdf) { return scratch[j]; }
    }
    return scratch[count - 1]; // rounding
}

#endif // LLMC_SAMPLER_H
