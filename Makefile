# train_gpt2_1bit: build, data, tests and benchmarks.
#   make train_gpt2_1bit    CPU trainer (also prepares tiny Shakespeare if it is missing)
#   make train_gpt2_1bitcu  CUDA trainer (needs nvcc; skipped with a message otherwise)
#   make test               every test; the last line is "N passed, N failed"
#   make bench              CPU benchmark: 124M, fp vs ternary, in one run
#   make -C dev/cuda        the CUDA kernel variants

CC ?= gcc
# -O3 -march=native: the matmul's inner loops need the vector units of this CPU.
# -fopenmp: the loops marked `#pragma omp` run on every core (and `omp simd`
# lets the dot products vectorize without -ffast-math, which would change the
# rounding the quantizers rely on).
# -fno-trapping-math -fno-math-errno: promise that nothing reads the FP exception
# flags or errno, which lets the quantizers' rint/clamp loops vectorize (5x
# faster); rounding itself is unchanged (round to nearest, ties to even).
CFLAGS ?= -O3 -march=native
CFLAGS += -fno-trapping-math -fno-math-errno -Wall -Wextra -std=gnu11
LDLIBS = -lm
PYTHON ?= python3
NVCC ?= nvcc

# OpenMP if the compiler has it, else a serial build (still correct, slower)
OMP_OK := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo yes)
ifeq ($(OMP_OK),yes)
  CFLAGS += -fopenmp
else
  $(info OpenMP not found: building single-threaded (install libgomp for multi-core))
endif

HEADERS = $(wildcard llmc/*.h)
DATA = data/tinyshakespeare/tiny_shakespeare_train.bin data/tinyshakespeare/tiny_shakespeare_val.bin data/gpt2_tokenizer.bin

.PHONY: all data test bench clean

all: train_gpt2_1bit run_gpt2_1bit train_gpt2_1bitcu

# the CPU trainer depends on the data so `make train_gpt2_1bit && ./train_gpt2_1bit`
# works on a fresh clone with no other step
train_gpt2_1bit: train_gpt2_1bit.c $(HEADERS) | $(DATA)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

# inference: export packed models, generate from a prompt
run_gpt2_1bit: run_gpt2_1bit.c train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

data: $(DATA)
$(DATA) &: prepro_tinyshakespeare.py
	$(PYTHON) prepro_tinyshakespeare.py

ifeq ($(shell which $(NVCC) 2>/dev/null),)
train_gpt2_1bitcu:
	@echo "nvcc not found: skipping CUDA targets"
else ifeq ($(wildcard train_gpt2_1bit.cu),)
train_gpt2_1bitcu:
	@echo "train_gpt2_1bit.cu is not written yet: skipping the CUDA trainer"
else
GPU_COMPUTE_CAPABILITY ?= 90
train_gpt2_1bitcu: train_gpt2_1bit.cu $(HEADERS) $(wildcard llmc/*.cuh) | $(DATA)
	$(NVCC) -O3 --use_fast_math -arch=sm_$(GPU_COMPUTE_CAPABILITY) -std=c++17 $< -lcublas -lcublasLt -o $@
endif

# ----------------------------------------------------------------------------
# tests

tests/test_gpt2_1bit: tests/test_gpt2_1bit.c train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

tests/test_units: tests/test_units.c train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

tests/test_run: tests/test_run.c run_gpt2_1bit.c train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

tests/test_kernels: tests/test_kernels.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

# the scalar build of the kernel test: the fallback path must stay correct too
tests/test_kernels_scalar: tests/test_kernels.c $(HEADERS)
	$(CC) -O2 -std=gnu11 -Wall -Wextra -Wno-unknown-pragmas $< $(LDLIBS) -o $@

TEST_BINS = tests/test_gpt2_1bit tests/test_units tests/test_run tests/test_kernels tests/test_kernels_scalar
test: train_gpt2_1bit run_gpt2_1bit $(TEST_BINS)
	@bash tests/run_tests.sh

# ----------------------------------------------------------------------------
# benchmarks

bench_gpt2_1bit: dev/bench_gpt2_1bit.c train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

bench_kernels: dev/bench_kernels.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

# OMP_WAIT_POLICY=active: idle OpenMP threads spin instead of sleeping; on
# virtual machines a sleeping thread can take milliseconds to wake
bench: bench_gpt2_1bit bench_kernels
	OMP_WAIT_POLICY=active ./bench_gpt2_1bit
	OMP_WAIT_POLICY=active ./bench_kernels

clean:
	rm -f train_gpt2_1bit train_gpt2_1bitcu run_gpt2_1bit bench_gpt2_1bit bench_kernels $(TEST_BINS)
