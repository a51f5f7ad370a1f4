/*
 llmc/gelu_cpu.h: e^z written so that the compiler vectorizes it, for the GELU on the CPU
 (llmc/gelu.cuh is the CUDA trainer's GELU; it calls the GPU's tanhf).

 The GELU needs one transcendental, e = e^(-2u) (train_gpt2_1bit.c, gelu_forward and
 gelu_backward; run_gpt2_1bit.c, gelu_forward_fast). libm's tanhf and expf are calls the
 compiler cannot vectorize: with tanhf the GELU took ~10% of a CPU training step (d12). This
 is the same e^z in plain float operations, which gcc -O3 vectorizes in a `#pragma omp simd`
 loop (AVX-512 with -march=native on Zen 4, AVX2 with -march=x86-64-v3):
   - z = n ln2 + r, |r| <= ln2/2: n = rint(z / ln2); r = z - n ln2 in two parts (Cody-Waite):
     ln2 = 0.693145752 + 1.42860677e-6, the first part with 15 significant bits, so n times it
     is exact for |n| <= 126 and r takes one rounding
   - e^r by its degree-6 Taylor polynomial (Horner, one fmaf a term). The truncation is at most
     |r|^7 / 7! = 1.2e-7 for r < 0, 2 float ulps at r = -ln2/2 (e^r = 0.71), and r^7 / 7! e^r =
     1.7e-7 for r > 0, 1.4 ulps at r = ln2/2; far less inside
   - 2^n by writing n + 127 into the exponent field of a float
 z is clamped to [-87, 87] first, which keeps 2^n a normal float; outside that range e^z comes out
 as e^(+-87) (for the GELU: x / (1 + e) is then x within e^-87 relative, or under |x| e^-87 in
 magnitude, where the true value is smaller still).
 Accuracy: within 2.74 float ulps of e^z over every float z in [-87, 87] (measured against exp in
 double; tests/test_units.c checks a grid of them, bound 3). The result does not depend on the build:
 fmaf rounds once whether or not the CPU has an FMA unit (without one it is a libm call, slow but
 exact), the rest are single IEEE operations, so the scalar build (no -march) and the AVX2 and
 AVX-512 ones give the same bits (checked over all 2^32 inputs on Zen 4).
*/
#ifndef LLMC_GELU_CPU_H
#define LLMC_GELU_CPU_H

#include <math.h>
#include <stdint.h>

static inline float gelu_expf(float z) {
    z = z < -87.0f ? -87.0f : (z > 87.0f ? 87.0f : z); // (fminf/fmaxf, with their NaN rules, do not vectorize)
    float n = rintf(z * 1.44269504f);                       // z / ln2, to the nearest integer
    float t = fmaf(n, -0.693145752f, z);                    // z - n ln2 in two parts (Cody-Waite):
    t = fmaf(n, -1.42860677e-6f, t);                        // ln2 = 0.693145752 + 1.42860677e-6
    float p = fmaf(fmaf(fmaf(fmaf(fmaf(fmaf(1.0f / 720, t, 1.0f / 120), t, 1.0f / 24), t, 1.0f / 6), t, 0.5f), t, 1.0f), t, 1.0f);
    union { int32_t i; float f; } two_n;
    two_n.i = ((int32_t)n + 127) << 23;                     // 2^n: the exponent field
    return p * two_n.f;
}

#endif // LLMC_GELU_CPU_H
