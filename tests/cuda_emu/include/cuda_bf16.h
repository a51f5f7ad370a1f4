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

#endif // CUDA_EMU_BF16_H
