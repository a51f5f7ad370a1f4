/*
 tests/cuda_emu/include/cuda_bf16.h: bfloat16 on the CPU, with CUDA's
 conversions: float -> bf16 rounds to nearest, ties to even; bf16 -> float is exact.
*/
#ifndef CUDA_EMU_BF16_H
#define CUDA_EMU_BF16_H

#include <stdint.h>
#include <string.h>
#include <math.h>

struct __nv_bfloat16 {
    uint16_t x;
};

static inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 b;
    if (isnan(f)) { b.x = 0x7fc0; return b; }
    u += 0x7fffu + ((u >> 16) & 1u); // round to nearest even on the 16 dropped bits
    b.x = (uint16_t)(u >> 16);
    return b;
}

static inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = (uint32_t)b.x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// two bf16 in one 32-bit word, .x in the low half (CUDA's __nv_bfloat162)
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
static inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
    return __nv_bfloat162{__float2bfloat16(lo), __float2bfloat16(hi)};
}

// the raw 16 bits and back (CUDA's __bfloat16_as_ushort / __ushort_as_bfloat16)
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) {
    __nv_bfloat16 b;
    b.x = u;
    return b;
}

#endif // CUDA_EMU_BF16_H
