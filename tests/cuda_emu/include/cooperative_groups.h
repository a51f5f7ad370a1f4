/*
 tests/cuda_emu/include/cooperative_groups.h: the part of CUDA's cooperative groups
 the project uses: the grid group and its barrier (CUDA C++ Programming Guide,
 "Cooperative Groups", grid synchronization). grid.sync() waits until every thread of
 the grid has reached it; that needs a cooperative launch (cudaLaunchCooperativeKernel),
 and the emulator stops with a message otherwise, or when a thread of the grid has
 returned before it (both hang or fail on a GPU).
*/
#ifndef CUDA_EMU_COOPERATIVE_GROUPS_H
#define CUDA_EMU_COOPERATIVE_GROUPS_H

#include "cuda_runtime.h"

namespace cooperative_groups {

class grid_group {
  public:
    void sync() const { emu_grid_sync(); }
    bool is_valid() const { return emu.cooperative != 0; }
    unsigned long long size() const {
        return (unsigned long long)emu.grid.x * emu.grid.y * emu.grid.z * emu.block.x * emu.block.y * emu.block.z;
    }
    unsigned long long thread_rank() const {
        unsigned long long b = blockIdx.x + (unsigned long long)emu.grid.x * (blockIdx.y + (unsigned long long)emu.grid.y * blockIdx.z);
        return b * emu.nthreads + emu.cur->linear;
    }
};

static inline grid_group this_grid() { return grid_group(); }

} // namespace cooperative_groups

#endif // CUDA_EMU_COOPERATIVE_GROUPS_H
