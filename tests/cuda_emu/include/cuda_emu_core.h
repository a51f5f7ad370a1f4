/*
 tests/cuda_emu/include/cuda_emu_core.h: runs CUDA kernels on the CPU, for
 testing without a GPU. Not a simulator of the hardware: it executes the
 CUDA C++ the project writes with CUDA's semantics for what that code uses:
   - threadIdx, blockIdx, blockDim, gridDim; launches <<<grid, block>>> (rewritten
     by cu2cpp.py into emu_launch calls); launch-configuration errors
   - __syncthreads() and warp shuffles (__shfl_xor_sync), as real barriers: every
     CUDA thread is a fiber (ucontext), a block's fibers run round-robin on one
     OS thread and switch only at barriers, so the order of memory accesses
     between barriers is one legal order (races between barriers go unseen)
   - __shared__ memory (a static: blocks run one after another)
   - device memory is host memory (cudaMalloc = malloc), so out-of-bounds
     accesses are ordinary host bugs that valgrind or ASan can see
 What it cannot tell: speed, races, alignment faults, the GPU's own numerics
 beyond IEEE fp32 (no fast-math, no FMA contraction differences are modelled).
*/
#ifndef CUDA_EMU_CORE_H
#define CUDA_EMU_CORE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <math.h>
#include <ucontext.h>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
} cudaError_t;

// ----------------------------------------------------------------------------
// the state of the running launch

#define EMU_MAX_THREADS 1024
#define EMU_STACK_BYTES (32 * 1024)

// Switching between fibers: on x86-64 a few instructions that save the
// callee-saved registers and swap stacks (swapcontext also saves the signal
// mask with a system call, 20x slower); elsewhere, or with -DEMU_UCONTEXT
// (for valgrind), ucontext.
#if defined(__x86_64__) && !defined(EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
extern "C" void emu_switch(void **save_sp, void *new_sp);
asm(".text\n"
    ".globl emu_switch\n"
    ".type emu_switch,@function\n"
    "emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n");
#endif

struct EmuThread {
    ucontext_t ctx;
    void *sp;
    dim3 tid;
    int linear; // threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)
    int done;
};

struct EmuState {
    dim3 grid, block, block_idx;
    EmuThread threads[EMU_MAX_THREADS];
    EmuThread *cur;
    ucontext_t sched;
    void *sched_sp;
    char *stacks;
    int nthreads, live;
    // the block barrier
    int bar_count, bar_gen;
    // warp barriers and shuffle slots
    int warp_live[EMU_MAX_THREADS / 32], warp_count[EMU_MAX_THREADS / 32], warp_gen[EMU_MAX_THREADS / 32];
    uint64_t warp_slot[EMU_MAX_THREADS / 32][32];
    void (*body)(void *);
    void *body_arg;
    cudaError_t last_error;
};
static EmuState emu;

#define threadIdx (emu.cur->tid)
#define blockIdx (emu.block_idx)
#define blockDim (emu.block)
#define gridDim (emu.grid)

static inline void emu_yield(void) {
#ifdef EMU_ASM_SWITCH
    emu_switch(&emu.cur->sp, emu.sched_sp);
#else
    swapcontext(&emu.cur->ctx, &emu.sched);
#endif
}

static inline void __syncthreads(void) {
    int gen = emu.bar_gen;
    if (++emu.bar_count == emu.live) { emu.bar_count = 0; emu.bar_gen++; return; }
    while (emu.bar_gen == gen) { emu_yield(); }
}

static inline void emu_warp_barrier(int w) {
    int gen = emu.warp_gen[w];
    if (++emu.warp_count[w] == emu.warp_live[w]) { emu.warp_count[w] = 0; emu.warp_gen[w]++; return; }
    while (emu.warp_gen[w] == gen) { emu_yield(); }
}

static inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)mask; emu_warp_barrier(emu.cur->linear / 32); }

// every lane of the warp must call it (as CUDA requires for a full mask)
template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    (void)mask;
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    int w = emu.cur->linear / 32, lane = emu.cur->linear % 32;
    memcpy(&emu.warp_slot[w][lane], &v, sizeof(T));
    emu_warp_barrier(w); // every lane has written its value
    int src = lane ^ lane_mask;
    T r = v;
    if (src < 32 && w * 32 + src < emu.nthreads) { memcpy(&r, &emu.warp_slot[w][src], sizeof(T)); }
    emu_warp_barrier(w); // every lane has read before the slots are reused
    return r;
}
template <typename T> static inline T __shfl_down_sync(unsigned mask, T v, int delta) {
    (void)mask;
    int w = emu.cur->linear / 32, lane = emu.cur->linear % 32;
    memcpy(&emu.warp_slot[w][lane], &v, sizeof(T));
    emu_warp_barrier(w);
    T r = v;
    if (lane + delta < 32 && w * 32 + lane + delta < emu.nthreads) { memcpy(&r, &emu.warp_slot[w][lane + delta], sizeof(T)); }
    emu_warp_barrier(w);
    return r;
}

// a thread that returns stops counting at the barriers it would have reached
static inline void emu_thread_exit(void) {
    EmuThread *t = emu.cur;
    t->done = 1;
    emu.live--;
    if (emu.bar_count > 0 && emu.bar_count == emu.live) { emu.bar_count = 0; emu.bar_gen++; }
    int w = t->linear / 32;
    emu.warp_live[w]--;
    if (emu.warp_count[w] > 0 && emu.warp_count[w] == emu.warp_live[w]) { emu.warp_count[w] = 0; emu.warp_gen[w]++; }
}

static void emu_thread_entry(void) {
    emu.body(emu.body_arg);
    emu_thread_exit();
#ifdef EMU_ASM_SWITCH
    emu_yield(); // a finished thread is never resumed
    abort();
#endif
    // (ucontext) returning switches to emu.sched through uc_link
}

template <typename F> static void emu_call(void *f) { (*(F *)f)(); }

// run f() as the body of every thread of a grid x block launch
template <typename F> static void emu_launch(dim3 grid, dim3 block, F f) {
    long long nthreads = (long long)block.x * block.y * block.z;
    if (nthreads < 1 || nthreads > EMU_MAX_THREADS || block.z > 64 || grid.x < 1 || grid.y < 1 || grid.z < 1 ||
        grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u) {
        fprintf(stderr, "cuda_emu: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u)\n", grid.x, grid.y,
                grid.z, block.x, block.y, block.z);
        emu.last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (emu.stacks == NULL) { emu.stacks = (char *)malloc((size_t)EMU_MAX_THREADS * EMU_STACK_BYTES); }
    emu.grid = grid;
    emu.block = block;
    emu.nthreads = (int)nthreads;
    emu.body = emu_call<F>;
    emu.body_arg = (void *)&f;
    for (unsigned bz = 0; bz < grid.z; bz++) {
        for (unsigned by = 0; by < grid.y; by++) {
            for (unsigned bx = 0; bx < grid.x; bx++) {
                emu.block_idx = dim3(bx, by, bz);
                emu.live = emu.nthreads;
                emu.bar_count = 0;
                for (int w = 0; w < (emu.nthreads + 31) / 32; w++) {
                    emu.warp_count[w] = 0;
                    emu.warp_live[w] = emu.nthreads - w * 32 < 32 ? emu.nthreads - w * 32 : 32;
                }
                for (int i = 0; i < emu.nthreads; i++) {
                    EmuThread *t = &emu.threads[i];
                    t->linear = i;
                    t->tid = dim3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
                    t->done = 0;
#ifdef EMU_ASM_SWITCH
                    // a stack that emu_switch "returns" into emu_thread_entry from:
                    // 6 saved registers (zeros), then the entry's address, then a fake
                    // return address, so the entry starts with the alignment of a call
                    uintptr_t top = ((uintptr_t)(emu.stacks + (size_t)(i + 1) * EMU_STACK_BYTES)) & ~(uintptr_t)15;
                    void **frame = (void **)top;
                    frame[-1] = NULL;
                    frame[-2] = (void *)emu_thread_entry;
                    for (int r = 3; r <= 8; r++) { frame[-r] = NULL; }
                    t->sp = (void *)&frame[-8];
#else
                    getcontext(&t->ctx);
                    t->ctx.uc_stack.ss_sp = emu.stacks + (size_t)i * EMU_STACK_BYTES;
                    t->ctx.uc_stack.ss_size = EMU_STACK_BYTES;
                    t->ctx.uc_link = &emu.sched;
                    makecontext(&t->ctx, emu_thread_entry, 0);
#endif
                }
                // round-robin until every thread has returned; a thread runs until
                // it waits at a barrier or returns
                while (emu.live > 0) {
                    int progressed = 0;
                    for (int i = 0; i < emu.nthreads; i++) {
                        if (emu.threads[i].done) { continue; }
                        emu.cur = &emu.threads[i];
#ifdef EMU_ASM_SWITCH
                        emu_switch(&emu.sched_sp, emu.threads[i].sp);
#else
                        swapcontext(&emu.sched, &emu.threads[i].ctx);
#endif
                        progressed = 1;
                    }
                    if (!progressed) { break; }
                }
            }
        }
    }
    emu.cur = NULL;
}

// ----------------------------------------------------------------------------
// device-side helpers CUDA provides

template <typename T> static inline T min(T a, T b) { return a < b ? a : b; }
template <typename T> static inline T max(T a, T b) { return a > b ? a : b; }
static inline float __fdividef(float a, float b) { return a / b; }
static inline int __float2int_rn(float x) { return (int)rintf(x); }
static inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; i++) { c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i)); }
    return c;
}

#endif // CUDA_EMU_CORE_H
