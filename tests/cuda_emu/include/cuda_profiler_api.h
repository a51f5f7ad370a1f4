// cuda_profiler_api.h for the emulator: cudaProfilerStart/Stop are in cuda_runtime.h
#pragma once
#include "cuda_runtime.h"
