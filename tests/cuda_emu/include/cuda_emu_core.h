/*
 tests/cuda_emu/include/cuda_emu_core.h: runs CUDA kernels on the CPU, for
 testing without a GPU. Not a simulator of the hardware: it executes the
 CUDA C++ the project writes with CUDA's semantics for what that code uses:
   - threadIdx, blockIdx, blockDim, gridDim; launches <<<grid, block, smem>>> (rewritten
     by cu2cpp.py into emu_launch calls); launch-configuration errors
   - __syncthreads() and warp shuffles (__shfl_xor_sync, __shfl_down_sync, __shfl_sync), as real
     barriers: every CUDA thread is a fiber, the fibers of the blocks that are resident
     run round-robin on one OS thread and switch only at barriers, so the order of
     memory accesses between barriers is one legal order (races between barriers go unseen)
   - __shared__ memory, static and dynamic (extern __shared__), one copy per block
     (cu2cpp.py rewrites the declarations into emu_shared / emu_dynamic_shared calls);
     it starts filled with 0xA5 bytes, as real shared memory starts with garbage. Dynamic
     shared memory above 48 KiB needs cudaFuncSetAttribute(MaxDynamicSharedMemorySize) first,
     up to sm_90's 227 KiB (checked against the largest opt-in of any kernel, not per kernel)
   - a normal launch runs its blocks one after another; a cooperative launch
     (cudaLaunchCooperativeKernel, cuda_runtime.h) makes every block resident at once,
     so that cooperative_groups' grid.sync() (cooperative_groups.h) is a real barrier
     across the grid
   - mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 and
     mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (cu2cpp.py turns the asm statement
     into a call of emu_mma_m16n8k32_s8 / emu_mma_m16n8k16_bf16): the 32 lanes' fragments are
     gathered at a warp barrier and multiplied with the PTX ISA's fragment layout
   - ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 (emu_ldmatrix_x4[_trans]): the 32 lanes'
     row addresses gathered at a warp barrier, each lane given its words by the PTX ISA's table;
     cp.async.{ca,cg}.shared.global with a src-size, commit_group, wait_group, wait_all
     (emu_cp_async_*): a copy is queued by the thread that issues it and done only when a
     wait_group (or wait_all) of that thread covers its group, so a kernel that reads a buffer
     before its wait sees the stale bytes, as it could on a GPU. Shared addresses (the .shared
     state space, 32 bits) are __cvta_generic_to_shared's: variable and offset, checked on use
   - __dp4a, __vcmpgeu4; int4/uint4/float4/uint2 and their make_ functions
   - device memory is host memory (cudaMalloc = malloc), so out-of-bounds
     accesses are ordinary host bugs that valgrind or ASan can see
 What it cannot tell: speed, races, alignment faults, bank conflicts, register or
 shared-memory pressure, the GPU's own numerics beyond IEEE fp32 (no fast-math, no
 FMA contraction differences are modelled; the bf16 mma sums its 16 exact products in
 double and rounds once, where the tensor cores round in their own way). Inline PTX other
 than the instructions above (ldmatrix .x1/.x2, stmatrix, wgmma, ...) is refused by cu2cpp.py,
 not faked.
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
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// every __shared__ declaration must go through cu2cpp.py (one copy per block); one that
// did not (in a header cu2cpp.py does not rewrite) fails to compile instead of being shared
#define __shared__ __shared___declarations_must_be_rewritten_by_cu2cpp_py

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorNoKernelImageForDevice = 209,
    cudaErrorUnsupportedPtxVersion = 222,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorCooperativeLaunchTooLarge = 720,
} cudaError_t;

// ----------------------------------------------------------------------------
// the state of the running launch

#define EMU_MAX_THREADS 1024        // per block, as on every GPU since sm_20
#define EMU_MAX_WARPS (EMU_MAX_THREADS / 32)
#define EMU_STACK_BYTES (32 * 1024) // per CUDA thread
#define EMU_MAX_SHARED_VARS 16      // __shared__ declarations reached by one block
#define EMU_STATIC_SHARED_LIMIT (48 * 1024)  // static __shared__ per block (CUDA's limit)
#define EMU_DYNAMIC_SHARED_LIMIT (48 * 1024) // dynamic, without cudaFuncSetAttribute (cuda_runtime.h)
#define EMU_DYNAMIC_SHARED_OPTIN (227 * 1024) // dynamic, the most a kernel may opt in to (sm_90)

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

// a warp's exchange area for mma.sync: every lane's A, B, C registers in, D out
struct EmuMmaSlots {
    uint32_t a[32][4], b[32][2];
    int32_t c[32][4], d[32][4];
};

// one resident block: its barriers, warps and shared memory
struct EmuBlock {
    dim3 idx;
    int live;               // threads that have not returned
    int bar_count, bar_gen; // __syncthreads
    int warp_live[EMU_MAX_WARPS], warp_count[EMU_MAX_WARPS], warp_gen[EMU_MAX_WARPS];
    uint64_t warp_slot[EMU_MAX_WARPS][32];
    EmuMmaSlots *mma; // allocated at the first mma.sync of the block
    struct { const void *key; void *ptr; size_t bytes; } shared[EMU_MAX_SHARED_VARS];
    int nshared;
    size_t shared_bytes; // static shared memory in use
    char *dyn_shared;    // the launch's dynamic shared memory, exactly as many bytes as asked
};

// a cp.async queued by a thread: done at the wait that covers its group (-1: not yet committed)
#define EMU_CP_ASYNC_MAX 128 // copies a thread may have in flight
struct EmuCpAsync {
    void *dst;
    const void *src;
    int cp_size, src_size, group;
};

struct EmuThread {
    EmuCpAsync cp[EMU_CP_ASYNC_MAX];
    int ncp, cp_groups; // queued copies; groups committed so far
    ucontext_t ctx;
    void *sp;
    dim3 tid;
    EmuBlock *blk;
    int linear; // threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)
    int done;
};

struct EmuState {
    dim3 grid, block;
    EmuThread *threads; // nthreads per resident block, block after block
    int threads_cap;
    EmuBlock *blocks;   // the resident blocks: one, or the whole grid for a cooperative launch
    int blocks_cap, nresident;
    EmuThread *cur;
    ucontext_t sched;
    void *sched_sp;
    char *stacks;
    size_t stacks_cap; // in threads
    int nthreads;      // per block
    size_t dyn_shared_bytes;
    size_t dyn_shared_optin; // the largest cudaFuncSetAttribute(..MaxDynamicSharedMemorySize..) so far
    // the grid barrier of a cooperative launch
    int cooperative, grid_live, grid_exited, grid_bar_count, grid_bar_gen;
    void (*body)(void *);
    void *body_arg;
    cudaError_t last_error;
};
static EmuState emu;

#define threadIdx (emu.cur->tid)
#define blockIdx (emu.cur->blk->idx)
#define blockDim (emu.block)
#define gridDim (emu.grid)

// a kernel broke a rule the hardware would not forgive (a hang or undefined behaviour):
// say which and stop, as a crashed kernel would
static inline void emu_fatal(const char *what) {
    fprintf(stderr, "cuda_emu: %s (block (%u,%u,%u), thread (%u,%u,%u))\n", what, emu.cur ? blockIdx.x : 0,
            emu.cur ? blockIdx.y : 0, emu.cur ? blockIdx.z : 0, emu.cur ? threadIdx.x : 0, emu.cur ? threadIdx.y : 0,
            emu.cur ? threadIdx.z : 0);
    exit(EXIT_FAILURE);
}

static inline void emu_yield(void) {
#ifdef EMU_ASM_SWITCH
    emu_switch(&emu.cur->sp, emu.sched_sp);
#else
    swapcontext(&emu.cur->ctx, &emu.sched);
#endif
}

static inline void __syncthreads(void) {
    EmuBlock *b = emu.cur->blk;
    int gen = b->bar_gen;
    if (++b->bar_count == b->live) { b->bar_count = 0; b->bar_gen++; return; }
    while (b->bar_gen == gen) { emu_yield(); }
}

// arrive at warp w's barrier: 1 for the last lane to arrive, which must then call
// emu_warp_release (after doing what needs every lane's data); the others wait there
static inline int emu_warp_arrive(EmuBlock *b, int w) {
    if (++b->warp_count[w] == b->warp_live[w]) { return 1; }
    int gen = b->warp_gen[w];
    while (b->warp_gen[w] == gen) { emu_yield(); }
    return 0;
}
static inline void emu_warp_release(EmuBlock *b, int w) { b->warp_count[w] = 0; b->warp_gen[w]++; }

static inline void emu_warp_barrier(int w) {
    EmuBlock *b = emu.cur->blk;
    if (emu_warp_arrive(b, w)) { emu_warp_release(b, w); }
}

static inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)mask; emu_warp_barrier(emu.cur->linear / 32); }

// every lane of the warp must call it (as CUDA requires for a full mask)
template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    (void)mask;
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    EmuBlock *b = emu.cur->blk;
    int w = emu.cur->linear / 32, lane = emu.cur->linear % 32;
    memcpy(&b->warp_slot[w][lane], &v, sizeof(T));
    emu_warp_barrier(w); // every lane has written its value
    int src = lane ^ lane_mask;
    T r = v;
    if (src < 32 && w * 32 + src < emu.nthreads) { memcpy(&r, &b->warp_slot[w][src], sizeof(T)); }
    emu_warp_barrier(w); // every lane has read before the slots are reused
    return r;
}
// lane src_lane's value to every lane (src_lane taken modulo 32, as CUDA does for a width of 32)
template <typename T> static inline T __shfl_sync(unsigned mask, T v, int src_lane) {
    (void)mask;
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    EmuBlock *b = emu.cur->blk;
    int w = emu.cur->linear / 32, lane = emu.cur->linear % 32;
    memcpy(&b->warp_slot[w][lane], &v, sizeof(T));
    emu_warp_barrier(w);
    int src = src_lane & 31;
    T r = v;
    if (w * 32 + src < emu.nthreads) { memcpy(&r, &b->warp_slot[w][src], sizeof(T)); }
    emu_warp_barrier(w);
    return r;
}
template <typename T> static inline T __shfl_down_sync(unsigned mask, T v, int delta) {
    (void)mask;
    EmuBlock *b = emu.cur->blk;
    int w = emu.cur->linear / 32, lane = emu.cur->linear % 32;
    memcpy(&b->warp_slot[w][lane], &v, sizeof(T));
    emu_warp_barrier(w);
    T r = v;
    if (lane + delta < 32 && w * 32 + lane + delta < emu.nthreads) { memcpy(&r, &b->warp_slot[w][lane + delta], sizeof(T)); }
    emu_warp_barrier(w);
    return r;
}

// the grid barrier of cooperative_groups::this_grid().sync(): every thread of the grid,
// which is only possible when all blocks are resident (a cooperative launch)
static inline void emu_grid_sync(void) {
    if (!emu.cooperative) { emu_fatal("grid.sync() in a kernel not launched with cudaLaunchCooperativeKernel"); }
    if (emu.grid_exited > 0) { emu_fatal("grid.sync() after some threads of the grid returned: it would never complete"); }
    int gen = emu.grid_bar_gen;
    if (++emu.grid_bar_count == emu.grid_live) { emu.grid_bar_count = 0; emu.grid_bar_gen++; return; }
    while (emu.grid_bar_gen == gen) { emu_yield(); }
}

// a thread that returns stops counting at the barriers it would have reached
static inline void emu_cp_async_complete(EmuThread *t, int upto_group);

static inline void emu_thread_exit(void) {
    EmuThread *t = emu.cur;
    emu_cp_async_complete(t, 1 << 30); // copies never waited for still land (the shared memory outlives the thread)
    EmuBlock *b = t->blk;
    t->done = 1;
    b->live--;
    if (b->bar_count > 0 && b->bar_count == b->live) { b->bar_count = 0; b->bar_gen++; }
    int w = t->linear / 32;
    b->warp_live[w]--;
    if (b->warp_count[w] > 0 && b->warp_count[w] == b->warp_live[w]) { emu_warp_release(b, w); }
    if (emu.cooperative) {
        if (emu.grid_bar_count > 0) { emu_fatal("a thread returned while others wait at grid.sync(): a hang on a GPU"); }
        emu.grid_exited++;
    }
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

// ----------------------------------------------------------------------------
// shared memory, one copy per block. cu2cpp.py rewrites
//     __shared__ T name[N];     ->  static EmuSharedKey k; T (&name)[N] = *(T (*)[N])emu_shared(&k, sizeof(T[N]), alignof(T));
//     extern __shared__ T name[];  ->  T *name = (T *)emu_dynamic_shared();
// so every thread of a block gets the same address, and other blocks another one

typedef char EmuSharedKey;

static inline void *emu_shared(const void *key, size_t bytes, size_t align) {
    EmuBlock *b = emu.cur->blk;
    for (int i = 0; i < b->nshared; i++) {
        if (b->shared[i].key == key) { return b->shared[i].ptr; }
    }
    if (b->nshared == EMU_MAX_SHARED_VARS) { emu_fatal("more __shared__ declarations than EMU_MAX_SHARED_VARS"); }
    b->shared_bytes += bytes;
    if (b->shared_bytes > EMU_STATIC_SHARED_LIMIT) { emu_fatal("static __shared__ memory above 48 KiB per block"); }
    void *p = NULL;
    // exactly `bytes` (rounded up to the alignment), so ASan or valgrind flag an access past the end
    if (posix_memalign(&p, align < 16 ? 16 : align, bytes) != 0) { emu_fatal("out of host memory for __shared__"); }
    memset(p, 0xA5, bytes);
    b->shared[b->nshared].key = key;
    b->shared[b->nshared].ptr = p;
    b->shared[b->nshared].bytes = bytes;
    b->nshared++;
    return p;
}

static inline void *emu_dynamic_shared(void) { return emu.cur->blk->dyn_shared; }

static inline void emu_block_init(EmuBlock *b, dim3 idx) {
    b->idx = idx;
    b->live = emu.nthreads;
    b->bar_count = 0;
    for (int w = 0; w < (emu.nthreads + 31) / 32; w++) {
        b->warp_count[w] = 0;
        b->warp_live[w] = emu.nthreads - w * 32 < 32 ? emu.nthreads - w * 32 : 32;
    }
    b->nshared = 0;
    b->shared_bytes = 0;
    b->dyn_shared = (char *)malloc(emu.dyn_shared_bytes > 0 ? emu.dyn_shared_bytes : 1);
    memset(b->dyn_shared, 0xA5, emu.dyn_shared_bytes);
}

static inline void emu_block_free(EmuBlock *b) {
    for (int i = 0; i < b->nshared; i++) { free(b->shared[i].ptr); }
    b->nshared = 0;
    free(b->dyn_shared);
    b->dyn_shared = NULL;
}

// ----------------------------------------------------------------------------
// launches

// make thread i of the resident set (block i / nthreads) ready to start the body
static inline void emu_thread_init(int i, EmuBlock *b, int linear) {
    EmuThread *t = &emu.threads[i];
    t->linear = linear;
    t->blk = b;
    t->tid = dim3(linear % emu.block.x, (linear / emu.block.x) % emu.block.y, linear / (emu.block.x * emu.block.y));
    t->done = 0;
    t->ncp = t->cp_groups = 0;
#ifdef EMU_ASM_SWITCH
    // a stack that emu_switch "returns" into emu_thread_entry from: 6 saved registers
    // (zeros), then the entry's address, then a fake return address, so the entry
    // starts with the alignment of a call
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

// round-robin over the resident threads until every one has returned; a thread runs
// until it waits at a barrier or returns
static inline void emu_run_resident(int total) {
    int live = total;
    while (live > 0) {
        live = 0;
        for (int i = 0; i < total; i++) {
            if (emu.threads[i].done) { continue; }
            emu.cur = &emu.threads[i];
#ifdef EMU_ASM_SWITCH
            emu_switch(&emu.sched_sp, emu.threads[i].sp);
#else
            swapcontext(&emu.sched, &emu.threads[i].ctx);
#endif
            live += !emu.threads[i].done;
        }
    }
}

// room for `nres` resident blocks of emu.nthreads threads
static inline void emu_reserve(int nres) {
    size_t total = (size_t)nres * emu.nthreads;
    if (total > emu.stacks_cap) {
        free(emu.stacks);
        free(emu.threads);
        emu.stacks = (char *)malloc(total * EMU_STACK_BYTES);
        emu.threads = (EmuThread *)calloc(total, sizeof(EmuThread));
        if (emu.stacks == NULL || emu.threads == NULL) { emu_fatal("out of host memory for the threads' stacks"); }
        emu.stacks_cap = total;
    }
    if (nres > emu.blocks_cap) {
        for (int i = 0; i < emu.blocks_cap; i++) { free(emu.blocks[i].mma); }
        free(emu.blocks);
        emu.blocks = (EmuBlock *)calloc(nres, sizeof(EmuBlock));
        if (emu.blocks == NULL) { emu_fatal("out of host memory for the blocks"); }
        emu.blocks_cap = nres;
    }
}

// run f() as the body of every thread of a grid x block launch with `smem` bytes of
// dynamic shared memory; cooperative: all blocks resident at once (the caller checked
// that they fit, see cudaLaunchCooperativeKernel)
template <typename F> static void emu_launch_impl(dim3 grid, dim3 block, size_t smem, int cooperative, F f) {
    // CUDA_EMU_DEVICE_ERROR=N, N other than 35 and 100: every launch fails with N (see cuda_runtime.h)
    static const int launch_error = [] {
        const char *e = getenv("CUDA_EMU_DEVICE_ERROR");
        int n = e != NULL ? atoi(e) : 0;
        return (n == 35 || n == 100) ? 0 : n;
    }();
    if (launch_error != 0) {
        emu.last_error = (cudaError_t)launch_error;
        return;
    }
    long long nthreads = (long long)block.x * block.y * block.z;
    if (nthreads < 1 || nthreads > EMU_MAX_THREADS || block.z > 64 || grid.x < 1 || grid.y < 1 || grid.z < 1 ||
        grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u) {
        fprintf(stderr, "cuda_emu: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u)\n", grid.x, grid.y,
                grid.z, block.x, block.y, block.z);
        emu.last_error = cudaErrorInvalidConfiguration;
        return;
    }
    // above 48 KiB a kernel must have opted in (cudaFuncSetAttribute). The emulator does not know
    // which kernel a launch runs, so it checks against the largest opt-in of any kernel so far
    if (smem > EMU_DYNAMIC_SHARED_LIMIT && smem > emu.dyn_shared_optin) {
        fprintf(stderr, "cuda_emu: %zu bytes of dynamic shared memory: above 48 KiB needs cudaFuncSetAttribute\n", smem);
        emu.last_error = cudaErrorInvalidValue;
        return;
    }
    emu.grid = grid;
    emu.block = block;
    emu.nthreads = (int)nthreads;
    emu.dyn_shared_bytes = smem;
    emu.body = emu_call<F>;
    emu.body_arg = (void *)&f;
    long long nblocks = (long long)grid.x * grid.y * grid.z;
    emu.cooperative = cooperative;
    if (cooperative) {
        // every block resident: the fibers of the whole grid take turns
        emu_reserve((int)nblocks);
        emu.grid_live = (int)(nblocks * nthreads);
        emu.grid_exited = emu.grid_bar_count = 0;
        int i = 0;
        for (unsigned bz = 0; bz < grid.z; bz++) {
            for (unsigned by = 0; by < grid.y; by++) {
                for (unsigned bx = 0; bx < grid.x; bx++, i++) {
                    EmuBlock *b = &emu.blocks[i];
                    emu_block_init(b, dim3(bx, by, bz));
                    for (int t = 0; t < emu.nthreads; t++) { emu_thread_init(i * emu.nthreads + t, b, t); }
                }
            }
        }
        emu_run_resident((int)(nblocks * nthreads));
        for (int j = 0; j < (int)nblocks; j++) { emu_block_free(&emu.blocks[j]); }
    } else {
        // one block at a time
        emu_reserve(1);
        EmuBlock *b = &emu.blocks[0];
        for (unsigned bz = 0; bz < grid.z; bz++) {
            for (unsigned by = 0; by < grid.y; by++) {
                for (unsigned bx = 0; bx < grid.x; bx++) {
                    emu_block_init(b, dim3(bx, by, bz));
                    for (int t = 0; t < emu.nthreads; t++) { emu_thread_init(t, b, t); }
                    emu_run_resident(emu.nthreads);
                    emu_block_free(b);
                }
            }
        }
    }
    emu.cooperative = 0;
    emu.cur = NULL;
}

// kernel<<<grid, block>>>, <<<grid, block, smem>>> and <<<grid, block, smem, stream>>>
// (the emulated device is synchronous: a stream changes nothing)
template <typename F> static void emu_launch(dim3 grid, dim3 block, F f) { emu_launch_impl(grid, block, 0, 0, f); }
template <typename F> static void emu_launch(dim3 grid, dim3 block, size_t smem, F f) {
    emu_launch_impl(grid, block, smem, 0, f);
}
template <typename S, typename F> static void emu_launch(dim3 grid, dim3 block, size_t smem, S stream, F f) {
    (void)stream;
    emu_launch_impl(grid, block, smem, 0, f);
}

// ----------------------------------------------------------------------------
// device-side helpers CUDA provides

template <typename T> static inline T min(T a, T b) { return a < b ? a : b; }
template <typename T> static inline T max(T a, T b) { return a > b ? a : b; }
static inline float __fdividef(float a, float b) { return a / b; }
static inline int __float2int_rn(float x) { return (int)rintf(x); }

// c + the four products of the signed bytes of a and b (CUDA Math API, __dp4a);
// the sum wraps like the 32-bit integer add it is
static inline int __dp4a(int a, int b, int c) {
    uint32_t s = (uint32_t)c;
    for (int i = 0; i < 4; i++) { s += (uint32_t)((int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i))); }
    return (int)s;
}

// per byte, unsigned: 0xff where the byte of a >= the byte of b, else 0x00 (CUDA Math API, SIMD intrinsics)
static inline unsigned __vcmpgeu4(unsigned a, unsigned b) {
    unsigned r = 0;
    for (int i = 0; i < 4; i++) {
        if (((a >> (8 * i)) & 0xffu) >= ((b >> (8 * i)) & 0xffu)) { r |= 0xffu << (8 * i); }
    }
    return r;
}

// the built-in vector types: their sizes and alignments, which make 128-bit accesses legal
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(8) float2 { float x, y; };
static inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return int2{x, y}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
static inline float2 make_float2(float x, float y) { return float2{x, y}; }

// ----------------------------------------------------------------------------
// mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32  d, a, b, c:  D (16x8) = A (16x32) B (32x8) + C.
// Each lane holds fragments; where each element lives is the PTX ISA's table, section
// "Matrix Fragments for mma.m16n8k32" (9.7.14.5.10 in PTX ISA 8.x), with g = laneid >> 2
// (groupID) and t = laneid % 4 (threadID_in_group), element i of a fragment being byte
// i % 4 (lowest first) of register i / 4:
//   A, a0..a15:  row = g for i in [0,4) or [8,12), else g + 8;  col = 4t + (i & 3) + (i >= 8 ? 16 : 0)
//   B, b0..b7:   row = 4t + (i & 3) + (i >= 4 ? 16 : 0);         col = g
//   C/D, c0..c3: row = g for i < 2, else g + 8;                col = 2t + (i & 1)
// Without .satfinite the s32 sums wrap. .sync.aligned: all 32 lanes execute it together.

static inline int emu_mma_a_row(int g, int i) { return (i < 4 || (i >= 8 && i < 12)) ? g : g + 8; }
static inline int emu_mma_a_col(int t, int i) { return 4 * t + (i & 3) + (i >= 8 ? 16 : 0); }
static inline int emu_mma_b_row(int t, int i) { return 4 * t + (i & 3) + (i >= 4 ? 16 : 0); }
static inline int emu_mma_c_row(int g, int i) { return i < 2 ? g : g + 8; }
static inline int emu_mma_c_col(int t, int i) { return 2 * t + (i & 1); }

// the whole warp's D from every lane's fragments (run once, by the last lane to arrive)
static inline void emu_mma_m16n8k32_s8_warp(EmuMmaSlots *m) {
    int8_t A[16][32], B[32][8];
    int32_t C[16][8];
    for (int lane = 0; lane < 32; lane++) {
        int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 16; i++) { A[emu_mma_a_row(g, i)][emu_mma_a_col(t, i)] = (int8_t)(m->a[lane][i / 4] >> (8 * (i % 4))); }
        for (int i = 0; i < 8; i++) { B[emu_mma_b_row(t, i)][g] = (int8_t)(m->b[lane][i / 4] >> (8 * (i % 4))); }
        for (int i = 0; i < 4; i++) { C[emu_mma_c_row(g, i)][emu_mma_c_col(t, i)] = m->c[lane][i]; }
    }
    for (int lane = 0; lane < 32; lane++) {
        int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 4; i++) {
            int r = emu_mma_c_row(g, i), c = emu_mma_c_col(t, i);
            uint32_t s = (uint32_t)C[r][c];
            for (int k = 0; k < 32; k++) { s += (uint32_t)((int32_t)A[r][k] * (int32_t)B[k][c]); }
            m->d[lane][i] = (int32_t)s;
        }
    }
}

// the tables above give every element of A, B and C to exactly one (lane, i): checked once
static inline void emu_mma_check_layout(void) {
    static int checked = 0;
    if (checked) { return; }
    int a[16][32] = {}, b[32][8] = {}, c[16][8] = {};
    for (int lane = 0; lane < 32; lane++) {
        int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 16; i++) { a[emu_mma_a_row(g, i)][emu_mma_a_col(t, i)]++; }
        for (int i = 0; i < 8; i++) { b[emu_mma_b_row(t, i)][g]++; }
        for (int i = 0; i < 4; i++) { c[emu_mma_c_row(g, i)][emu_mma_c_col(t, i)]++; }
    }
    for (int i = 0; i < 16 * 32; i++) { if ((&a[0][0])[i] != 1) { emu_fatal("mma A layout is not a bijection"); } }
    for (int i = 0; i < 32 * 8; i++) { if ((&b[0][0])[i] != 1) { emu_fatal("mma B layout is not a bijection"); } }
    for (int i = 0; i < 16 * 8; i++) { if ((&c[0][0])[i] != 1) { emu_fatal("mma C layout is not a bijection"); } }
    checked = 1;
}

// one lane's part: its registers in, its D registers out. D may alias C (the usual
// "+r" accumulator): C is taken by value before D is written.
template <typename TD>
static inline void emu_mma_m16n8k32_s8(TD *d0, TD *d1, TD *d2, TD *d3, uint32_t a0, uint32_t a1, uint32_t a2,
                                       uint32_t a3, uint32_t b0, uint32_t b1, TD c0, TD c1, TD c2, TD c3) {
    static_assert(sizeof(TD) == 4, "mma operands are 32-bit registers");
    EmuBlock *blk = emu.cur->blk;
    int w = emu.cur->linear / 32, lane = emu.cur->linear % 32;
    if (blk->warp_live[w] != 32) { emu_fatal("mma.sync in a warp without 32 active lanes (undefined on a GPU)"); }
    emu_mma_check_layout();
    if (blk->mma == NULL) { blk->mma = (EmuMmaSlots *)malloc(EMU_MAX_WARPS * sizeof(EmuMmaSlots)); }
    EmuMmaSlots *m = &blk->mma[w];
    m->a[lane][0] = a0; m->a[lane][1] = a1; m->a[lane][2] = a2; m->a[lane][3] = a3;
    m->b[lane][0] = b0; m->b[lane][1] = b1;
    memcpy(&m->c[lane][0], &c0, 4); memcpy(&m->c[lane][1], &c1, 4);
    memcpy(&m->c[lane][2], &c2, 4); memcpy(&m->c[lane][3], &c3, 4);
    // the last lane to arrive computes D for the warp. The inputs are not read after
    // that and D is read by each lane before it can arrive at the next mma, so one
    // barrier is enough.
    if (emu_warp_arrive(blk, w)) {
        emu_mma_m16n8k32_s8_warp(m);
        emu_warp_release(blk, w);
    }
    memcpy(d0, &m->d[lane][0], 4); memcpy(d1, &m->d[lane][1], 4);
    memcpy(d2, &m->d[lane][2], 4); memcpy(d3, &m->d[lane][3], 4);
}

// ----------------------------------------------------------------------------
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32  d, a, b, c:  D (16x8) = A (16x16) B (16x8) + C,
// A and B bf16, C and D fp32. Where each element lives is the PTX ISA's table, section
// "Matrix Fragments for mma.m16n8k16 with floating point type" (9.7.14.5.8 in PTX ISA 8.x),
// with g = laneid >> 2 and t = laneid % 4; element i of A or B is half i % 2 (low half
// first) of register i / 2:
//   A, a0..a7:   row = g for i in {0,1,4,5}, else g + 8;   col = 2t + (i & 1) + (i >= 4 ? 8 : 0)
//   B, b0..b3:   row = 2t + (i & 1) + (i >= 2 ? 8 : 0);    col = g
//   C/D, c0..c3: row = g for i < 2, else g + 8;            col = 2t + (i & 1)   (as m16n8k32 above)
// The products of two bf16 are exact in fp32; the emulator adds the 16 of an element and C
// in double and rounds once (the hardware's own order and rounding differ in the last bits).

static inline int emu_mma16_a_row(int g, int i) { return (i < 2 || (i >= 4 && i < 6)) ? g : g + 8; }
static inline int emu_mma16_a_col(int t, int i) { return 2 * t + (i & 1) + (i >= 4 ? 8 : 0); }
static inline int emu_mma16_b_row(int t, int i) { return 2 * t + (i & 1) + (i >= 2 ? 8 : 0); }

static inline float emu_bf16_bits_to_float(uint32_t bits16) {
    uint32_t u = bits16 << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline void emu_mma_m16n8k16_bf16_warp(EmuMmaSlots *m) {
    float A[16][16], B[16][8], C[16][8];
    for (int lane = 0; lane < 32; lane++) {
        int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 8; i++) {
            uint32_t bits = (m->a[lane][i / 2] >> (16 * (i % 2))) & 0xffffu;
            A[emu_mma16_a_row(g, i)][emu_mma16_a_col(t, i)] = emu_bf16_bits_to_float(bits);
        }
        for (int i = 0; i < 4; i++) {
            uint32_t bits = (m->b[lane][i / 2] >> (16 * (i % 2))) & 0xffffu;
            B[emu_mma16_b_row(t, i)][g] = emu_bf16_bits_to_float(bits);
        }
        for (int i = 0; i < 4; i++) { memcpy(&C[emu_mma_c_row(g, i)][emu_mma_c_col(t, i)], &m->c[lane][i], 4); }
    }
    for (int lane = 0; lane < 32; lane++) {
        int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 4; i++) {
            int r = emu_mma_c_row(g, i), c = emu_mma_c_col(t, i);
            double s = C[r][c];
            for (int k = 0; k < 16; k++) { s += (double)A[r][k] * (double)B[k][c]; }
            float d = (float)s;
            memcpy(&m->d[lane][i], &d, 4);
        }
    }
}

// as emu_mma_check_layout, for the tables of m16n8k16 (C is m16n8k32's, checked there)
static inline void emu_mma16_check_layout(void) {
    static int checked = 0;
    if (checked) { return; }
    int a[16][16] = {}, b[16][8] = {};
    for (int lane = 0; lane < 32; lane++) {
        int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 8; i++) { a[emu_mma16_a_row(g, i)][emu_mma16_a_col(t, i)]++; }
        for (int i = 0; i < 4; i++) { b[emu_mma16_b_row(t, i)][g]++; }
    }
    for (int i = 0; i < 16 * 16; i++) {
        if ((&a[0][0])[i] != 1) { emu_fatal("mma m16n8k16 A layout is not a bijection"); }
    }
    for (int i = 0; i < 16 * 8; i++) {
        if ((&b[0][0])[i] != 1) { emu_fatal("mma m16n8k16 B layout is not a bijection"); }
    }
    emu_mma_check_layout();
    checked = 1;
}

// one lane's part, as emu_mma_m16n8k32_s8: A and B registers hold two bf16 each, C and D are
// fp32 registers ("f" operands); D may alias C
template <typename TD, typename TC>
static inline void emu_mma_m16n8k16_bf16(TD *d0, TD *d1, TD *d2, TD *d3, uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1, TC c0, TC c1, TC c2, TC c3) {
    static_assert(sizeof(TD) == 4 && sizeof(TC) == 4, "mma operands are 32-bit registers");
    EmuBlock *blk = emu.cur->blk;
    int w = emu.cur->linear / 32, lane = emu.cur->linear % 32;
    if (blk->warp_live[w] != 32) { emu_fatal("mma.sync in a warp without 32 active lanes (undefined on a GPU)"); }
    emu_mma16_check_layout();
    if (blk->mma == NULL) { blk->mma = (EmuMmaSlots *)malloc(EMU_MAX_WARPS * sizeof(EmuMmaSlots)); }
    EmuMmaSlots *m = &blk->mma[w];
    m->a[lane][0] = a0; m->a[lane][1] = a1; m->a[lane][2] = a2; m->a[lane][3] = a3;
    m->b[lane][0] = b0; m->b[lane][1] = b1;
    memcpy(&m->c[lane][0], &c0, 4); memcpy(&m->c[lane][1], &c1, 4); // the registers' bits, as the hardware
    memcpy(&m->c[lane][2], &c2, 4); memcpy(&m->c[lane][3], &c3, 4); // reads them
    if (emu_warp_arrive(blk, w)) { // the last lane computes the warp's D (see emu_mma_m16n8k32_s8)
        emu_mma_m16n8k16_bf16_warp(m);
        emu_warp_release(blk, w);
    }
    memcpy(d0, &m->d[lane][0], 4); memcpy(d1, &m->d[lane][1], 4);
    memcpy(d2, &m->d[lane][2], 4); memcpy(d3, &m->d[lane][3], 4);
}

// ----------------------------------------------------------------------------
// shared addresses: what __cvta_generic_to_shared gives and ldmatrix / cp.async take. On a GPU
// a 32-bit offset into the block's shared window; here the emulator's shared variables are
// separate host allocations, so an address is (variable + 1) << 20 | offset (a block has at most
// 227 KiB, so the offset fits 20 bits): arithmetic within a variable works, and every use is
// checked to fall inside the variable it started in.

#define EMU_SHARED_OFFSET_BITS 20
#define EMU_DYN_SHARED_VAR EMU_MAX_SHARED_VARS // the variable number of the dynamic shared memory

static inline size_t __cvta_generic_to_shared(const void *p) {
    EmuBlock *b = emu.cur->blk;
    const char *c = (const char *)p;
    for (int i = 0; i < b->nshared; i++) {
        const char *base = (const char *)b->shared[i].ptr;
        if (c >= base && c < base + b->shared[i].bytes) {
            return ((size_t)(i + 1) << EMU_SHARED_OFFSET_BITS) | (size_t)(c - base);
        }
    }
    if (c >= b->dyn_shared && c < b->dyn_shared + emu.dyn_shared_bytes) {
        return ((size_t)(EMU_DYN_SHARED_VAR + 1) << EMU_SHARED_OFFSET_BITS) | (size_t)(c - b->dyn_shared);
    }
    emu_fatal("__cvta_generic_to_shared of a pointer that is not in this block's shared memory");
    return 0;
}

// the host pointer of `bytes` bytes at shared address a (fatal when they leave its variable or
// are not aligned to `align`)
static inline char *emu_shared_at(uint32_t a, size_t bytes, size_t align, const char *what) {
    EmuBlock *b = emu.cur->blk;
    const int var = (int)(a >> EMU_SHARED_OFFSET_BITS) - 1;
    const size_t off = a & ((1u << EMU_SHARED_OFFSET_BITS) - 1);
    char *base = NULL;
    size_t size = 0;
    if (var >= 0 && var < b->nshared) { base = (char *)b->shared[var].ptr; size = b->shared[var].bytes; }
    if (var == EMU_DYN_SHARED_VAR) { base = b->dyn_shared; size = emu.dyn_shared_bytes; }
    if (base == NULL || off + bytes > size) {
        fprintf(stderr, "cuda_emu: %s: shared address 0x%x (+%zu bytes) is outside shared memory\n", what, a, bytes);
        emu_fatal("shared memory access out of bounds");
    }
    if (off % align != 0) {
        fprintf(stderr, "cuda_emu: %s: shared address 0x%x is not %zu-byte aligned\n", what, a, align);
        emu_fatal("misaligned shared memory access");
    }
    return base + off;
}

// ----------------------------------------------------------------------------
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16  {r0, r1, r2, r3}, [addr]: four 8x8 matrices of
// 16-bit elements, each row 16 contiguous bytes (16-byte aligned) anywhere in shared memory.
// PTX ISA, "Warp-level matrix load instruction: ldmatrix": lane 8i + j gives the address of row j
// of matrix i; register i of lane l receives matrix i's elements (l / 4, 2 (l % 4)) and
// (l / 4, 2 (l % 4) + 1), the lower column in the low half: the layout of an mma A or B fragment
// register. With .trans the matrix is read transposed: elements (2 (l % 4), l / 4) and
// (2 (l % 4) + 1, l / 4). All 32 lanes execute it together (.sync.aligned).

static inline void emu_ldmatrix_x4_impl(uint32_t *d[4], uint32_t addr, int trans) {
    EmuBlock *blk = emu.cur->blk;
    const int w = emu.cur->linear / 32, lane = emu.cur->linear % 32;
    if (blk->warp_live[w] != 32) { emu_fatal("ldmatrix in a warp without 32 active lanes (undefined on a GPU)"); }
    // check this lane's row, then publish its host pointer to the warp
    const char *row = emu_shared_at(addr, 16, 16, "ldmatrix");
    blk->warp_slot[w][lane] = (uint64_t)(uintptr_t)row;
    emu_warp_barrier(w); // every lane's row address is in
    uint32_t r[4];
    for (int i = 0; i < 4; i++) {
        uint16_t e[2];
        for (int k = 0; k < 2; k++) {
            // (matrix row, column) of element k of this lane's register i
            const int mr = trans ? 2 * (lane % 4) + k : lane / 4, mc = trans ? lane / 4 : 2 * (lane % 4) + k;
            const char *p = (const char *)(uintptr_t)blk->warp_slot[w][8 * i + mr];
            memcpy(&e[k], p + 2 * mc, 2);
        }
        r[i] = (uint32_t)e[0] | ((uint32_t)e[1] << 16);
    }
    emu_warp_barrier(w); // every lane has read before the slots are reused
    for (int i = 0; i < 4; i++) { memcpy(d[i], &r[i], 4); }
}

template <typename TD> static inline void emu_ldmatrix_x4(TD *d0, TD *d1, TD *d2, TD *d3, uint32_t addr) {
    static_assert(sizeof(TD) == 4, "ldmatrix destinations are 32-bit registers");
    uint32_t *d[4] = {(uint32_t *)d0, (uint32_t *)d1, (uint32_t *)d2, (uint32_t *)d3};
    emu_ldmatrix_x4_impl(d, addr, 0);
}
template <typename TD> static inline void emu_ldmatrix_x4_trans(TD *d0, TD *d1, TD *d2, TD *d3, uint32_t addr) {
    static_assert(sizeof(TD) == 4, "ldmatrix destinations are 32-bit registers");
    uint32_t *d[4] = {(uint32_t *)d0, (uint32_t *)d1, (uint32_t *)d2, (uint32_t *)d3};
    emu_ldmatrix_x4_impl(d, addr, 1);
}

// ----------------------------------------------------------------------------
// cp.async.{ca,cg}.shared.global [dst], [src], cp-size, src-size: copy src-size bytes of global
// memory to shared memory and fill the rest of the cp-size bytes (4, 8 or 16; .cg: 16) with
// zeros, asynchronously (PTX ISA, "Data Movement and Conversion Instructions: cp.async").
// cp.async.commit_group closes the thread's open group of copies; cp.async.wait_group N waits
// until at most the N most recent committed groups are pending; cp.async.wait_all waits for all.
// Per thread: another thread sees the bytes only after a barrier that follows the wait.

static inline void emu_cp_async_complete(EmuThread *t, int upto_group) {
    int kept = 0;
    for (int i = 0; i < t->ncp; i++) {
        EmuCpAsync *c = &t->cp[i];
        if (c->group >= 0 && c->group <= upto_group) {
            memcpy(c->dst, c->src, c->src_size);
            memset((char *)c->dst + c->src_size, 0, c->cp_size - c->src_size);
        } else {
            t->cp[kept++] = *c; // in issue order
        }
    }
    t->ncp = kept;
}

static inline void emu_cp_async(uint32_t dst, const void *src, int cp_size, int src_size, int cg) {
    EmuThread *t = emu.cur;
    if (cg ? cp_size != 16 : (cp_size != 4 && cp_size != 8 && cp_size != 16)) {
        emu_fatal("cp.async: cp-size must be 4, 8 or 16 (.cg: 16)");
    }
    if (src_size < 0 || src_size > cp_size) { emu_fatal("cp.async: src-size must be in [0, cp-size]"); }
    if ((uintptr_t)src % cp_size != 0) { emu_fatal("cp.async: the global address is not aligned to cp-size"); }
    char *d = emu_shared_at(dst, cp_size, cp_size, "cp.async");
    if (t->ncp == EMU_CP_ASYNC_MAX) { emu_fatal("cp.async: more copies in flight than EMU_CP_ASYNC_MAX"); }
    t->cp[t->ncp++] = EmuCpAsync{d, src, cp_size, src_size, -1};
}
template <typename TP> static inline void emu_cp_async_ca(uint32_t dst, TP src, int cp_size, int src_size) {
    emu_cp_async(dst, (const void *)src, cp_size, src_size, 0);
}
template <typename TP> static inline void emu_cp_async_cg(uint32_t dst, TP src, int cp_size, int src_size) {
    emu_cp_async(dst, (const void *)src, cp_size, src_size, 1);
}

static inline void emu_cp_async_commit_group(void) {
    EmuThread *t = emu.cur;
    for (int i = 0; i < t->ncp; i++) {
        if (t->cp[i].group < 0) { t->cp[i].group = t->cp_groups; }
    }
    t->cp_groups++; // an empty group counts too
}

static inline void emu_cp_async_wait_group(int n) { emu_cp_async_complete(emu.cur, emu.cur->cp_groups - 1 - n); }

static inline void emu_cp_async_wait_all(void) {
    emu_cp_async_commit_group(); // wait_all = commit_group + wait_group 0
    emu_cp_async_wait_group(0);
}

#endif // CUDA_EMU_CORE_H
