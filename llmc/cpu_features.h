/*
 llmc/cpu_features.h: what this CPU's vector units can do, and which SIMD path the CPU kernels
 take. The one dispatch point of llmc/ternary_kernels.h and llmc/matmul_cpu.h.

 Paths (the kernels of each are compiled into every x86-64 binary with gcc's or clang's target
 attributes, whatever -march says, and chosen once, at run time):
   scalar   plain C, any CPU: the spec every other path is tested against (exactly for the
            integer kernels, within a stated rounding bound for the float ones)
   avx2     AVX2 + FMA (x86-64-v3: Haswell and later, AMD Zen 1-5)
   avx512   AVX-512 F/BW/DQ/VL + AVX512-VNNI on 512-bit registers (Ice Lake and later Xeons,
            Sapphire Rapids, Zen 4, Zen 5)
 The default is the last of these the CPU has. The environment variable TG1_CPU_PATH=scalar|avx2|
 avx512 picks another one (to compare paths, or to run the tests as an AVX2-only machine would); a
 path this CPU cannot run is an error that names the ones it can.
 Not here: a path for AVX-VNNI (vpdpbusd on 256-bit registers, VEX: Alder Lake and later Intel
 clients, without AVX-512): no machine this was written on has it, and an untested path is not
 worth having; such CPUs take the avx2 path. It is detected and reported (cpu_features_describe).
 The avx512 path's bf16 matmul (llmc/matmul_cpu.h, -mp bf16) uses vdpbf16ps where the CPU has
 AVX512-BF16 (Zen 4, Sapphire Rapids; functions between CPU_TARGET_BEGIN_AVX512BF16 and CPU_TARGET_END).
 A build with -DTG1_CPU_SCALAR_ONLY (or for another architecture, or by nvcc) has the scalar path
 only, and runs it whatever TG1_CPU_PATH names. AMX (Sapphire Rapids' tile unit) is detected and
 reported, not used.

 Detection reads cpuid and, for the wide registers, XCR0 (xgetbv): a CPU can have AVX-512 while
 the operating system does not save the zmm registers, and then it must not be used.

 Usage:
   cpu_path()                   the path in use (CPU_PATH_*), detected on the first call
   cpu_path_name(p)             "scalar", "avx2", "avx512"
   cpu_path_supported(p)        1 if this CPU and this build can run p
   cpu_path_set(p)              use p from now on (the tests loop over the paths); p must be supported
   cpu_features_describe(buf)   the CPU's relevant features as text, e.g. for a benchmark's header
*/
#ifndef LLMC_CPU_FEATURES_H
#define LLMC_CPU_FEATURES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// the SIMD paths need x86 intrinsics and target attributes (gcc >= 8, clang >= 7 for AVX512-VNNI);
// nvcc's front end and other architectures get the scalar path
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__CUDACC__) && !defined(TG1_CPU_SCALAR_ONLY)
#define TG1_CPU_X86 1
#include <cpuid.h>
#endif

#ifdef TG1_CPU_X86
// the functions between a CPU_TARGET_BEGIN_* and CPU_TARGET_END are compiled for that instruction
// set, whatever -march says (they run only where cpu_path() chose it)
#if defined(__clang__)
#define CPU_TARGET_BEGIN_AVX2 _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
#define CPU_TARGET_BEGIN_AVX512 \
    _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni\"))), apply_to = function)")
#define CPU_TARGET_BEGIN_AVX512BF16 \
    _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512bf16\"))), apply_to = function)")
#define CPU_TARGET_END _Pragma("clang attribute pop")
#else
#define CPU_TARGET_BEGIN_AVX2 _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define CPU_TARGET_BEGIN_AVX512 _Pragma("GCC push_options") \
    _Pragma("GCC target(\"avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni\")")
#define CPU_TARGET_BEGIN_AVX512BF16 _Pragma("GCC push_options") \
    _Pragma("GCC target(\"avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512bf16\")")
#define CPU_TARGET_END _Pragma("GCC pop_options")
#endif
#define CPU_ALWAYS_INLINE inline __attribute__((always_inline))
#endif

typedef enum { CPU_PATH_SCALAR = 0, CPU_PATH_AVX2 = 1, CPU_PATH_AVX512 = 2 } CpuPath;
#define CPU_NUM_PATHS 3

static inline const char *cpu_path_name(int p) {
    static const char *names[CPU_NUM_PATHS] = {"scalar", "avx2", "avx512"};
    return p >= 0 && p < CPU_NUM_PATHS ? names[p] : "?";
}

// what cpuid and XCR0 say, read once
typedef struct {
    int avx2, fma, f16c, avx512f, avx512bw, avx512dq, avx512vl, avx512vnni, avx512bf16, avxvnni, amx;
} CpuFeatures;

static inline const CpuFeatures *cpu_features(void) {
    static CpuFeatures f;
    static int done = 0;
    if (done) { return &f; }
#ifdef TG1_CPU_X86
    unsigned a = 0, b = 0, c = 0, d = 0;
    unsigned long long xcr0 = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) { c = 0; }
    if (c & (1u << 27)) { // OSXSAVE: xgetbv may be used
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0)); // XCR0: the register state the OS saves
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    int os_ymm = (xcr0 & 0x6) == 0x6;      // xmm and ymm state
    int os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0; // and the opmask, zmm0-15 upper halves, zmm16-31
    int os_amx = (xcr0 & 0x60000) == 0x60000; // XTILECFG, XTILEDATA
    int fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.avx2 = os_ymm && avx && ((b >> 5) & 1);
        f.fma = os_ymm && fma;
        f.f16c = os_ymm && f16c;
        f.avx512f = os_zmm && ((b >> 16) & 1);
        f.avx512dq = os_zmm && ((b >> 17) & 1);
        f.avx512bw = os_zmm && ((b >> 30) & 1);
        f.avx512vl = os_zmm && ((b >> 31) & 1);
        f.avx512vnni = os_zmm && ((c >> 11) & 1);
        f.amx = os_amx && ((d >> 24) & 1) && ((d >> 25) & 1); // AMX-TILE and AMX-INT8
        if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
            f.avxvnni = os_ymm && ((a >> 4) & 1);
            f.avx512bf16 = os_zmm && ((a >> 5) & 1);
        }
    }
#endif
    done = 1;
    return &f;
}

static inline int cpu_path_supported(int p) {
    const CpuFeatures *f = cpu_features();
    (void)f; // (a scalar-only build reads no feature)
    switch (p) {
    case CPU_PATH_SCALAR: return 1;
#ifdef TG1_CPU_X86
    case CPU_PATH_AVX2: return f->avx2 && f->fma;
    case CPU_PATH_AVX512: return f->avx2 && f->fma && f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl &&
                                 f->avx512vnni;
#endif
    default: return 0;
    }
}

// the path in use: -1 until the first call decides it
static int cpu_path_current = -1;

static inline void cpu_path_set(int p) {
    if (!cpu_path_supported(p)) {
        fprintf(stderr, "error: cpu_path_set(%s): this CPU or build cannot run that path\n", cpu_path_name(p));
        exit(EXIT_FAILURE);
    }
    cpu_path_current = p;
}

static inline int cpu_path(void) {
    if (cpu_path_current >= 0) { return cpu_path_current; }
    int best = CPU_PATH_SCALAR;
    for (int p = CPU_PATH_AVX2; p < CPU_NUM_PATHS; p++) { best = cpu_path_supported(p) ? p : best; }
    const char *env = getenv("TG1_CPU_PATH");
    if (env != NULL && env[0] != '\0') {
        int want = -1;
        for (int p = 0; p < CPU_NUM_PATHS; p++) { want = strcmp(env, cpu_path_name(p)) == 0 ? p : want; }
#ifndef TG1_CPU_X86
        if (want >= 0) { want = CPU_PATH_SCALAR; } // a build with the scalar path only runs it, whatever is asked
#endif
        if (want < 0 || !cpu_path_supported(want)) {
            fprintf(stderr, "error: TG1_CPU_PATH=%s: %s\n---> HINT: this CPU and build can run:", env,
                    want < 0 ? "not a path (scalar, avx2, avx512)" : "this CPU or build cannot run that path");
            for (int p = 0; p < CPU_NUM_PATHS; p++) {
                if (cpu_path_supported(p)) { fprintf(stderr, " %s", cpu_path_name(p)); }
            }
            fprintf(stderr, " (or unset TG1_CPU_PATH for the best: %s)\n", cpu_path_name(best));
            exit(EXIT_FAILURE);
        }
        best = want;
    }
    cpu_path_current = best;
    return best;
}

// e.g. "avx2 fma f16c avx512f/bw/dq/vl avx512vnni avx512bf16 (no avxvnni, no amx)"
static inline const char *cpu_features_describe(char *buf, size_t n) {
    const CpuFeatures *f = cpu_features();
    snprintf(buf, n, "%s%s%s%s%s%s%s%s(%s%s%s)", f->avx2 ? "avx2 " : "", f->fma ? "fma " : "", f->f16c ? "f16c " : "",
             f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl ? "avx512f/bw/dq/vl " : (f->avx512f ? "avx512f " : ""),
             f->avx512vnni ? "avx512vnni " : "", f->avx512bf16 ? "avx512bf16 " : "", f->avxvnni ? "avxvnni " : "",
             f->amx ? "amx-int8 " : "", f->avxvnni ? "" : "no avxvnni, ", f->amx ? "amx unused" : "no amx",
#ifdef TG1_CPU_X86
             ""
#else
             "; this build: scalar only"
#endif
             );
    return buf;
}

#endif // LLMC_CPU_FEATURES_H
