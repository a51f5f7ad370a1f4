# train_gpt2_1bit: build, data, tests and benchmarks.
#   make train_gpt2_1bit    CPU trainer (also prepares tiny Shakespeare if it is missing)
#   make train_gpt2_1bitcu  CUDA trainer (needs nvcc; skipped with a message otherwise)
#   make train_gpt2_1bitcu ATTENTION=cublas   ... with the plain cuBLAS attention (the fused one is the default)
#   make test-cuda          the CUDA tests (needs a GPU)
#   make gpu-kit            everything dev/gpu_check.sh runs on a GPU machine, built here into gpukit/
#   make test               every test; the last line is "N passed, N failed"
#   make test-fast          the same without the emulator and the long runs (38 s on 2 cores)
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

.PHONY: all data test test-fast test-cuda cuda gpu-kit gpu-kit-bins bench clean

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

# CUDA. GPU_COMPUTE_CAPABILITY lists the GPUs to build machine code for: 80 Ampere (A100),
# 89 Ada (L4, L40S, RTX 40xx), 90 Hopper (H100, H200); the last one also goes in as PTX,
# which the driver compiles at start-up for a newer GPU. One architecture builds faster:
#   make train_gpt2_1bitcu GPU_COMPUTE_CAPABILITY=90
# A GPU missing from the list gets a start-up error that names its number.
# PRECISION=FP32 keeps activations in fp32 (tests); the default is bf16.
# No --use_fast_math: the quantizers' rintf, division and sqrtf must round as
# the CPU spec (llmc/ternary.h) does, or codes flip at ties.
GPU_COMPUTE_CAPABILITY ?= 80 89 90
PRECISION ?= BF16
CUDA_ARCHS = $(strip $(GPU_COMPUTE_CAPABILITY))
cuda_gencode = $(foreach a,$(1),-gencode arch=compute_$(a),code=sm_$(a)) \
               -gencode arch=compute_$(lastword $(1)),code=compute_$(lastword $(1))
# -DCUDA_ARCH_LIST: the list, for that start-up error (llmc/cuda_common.h)
cuda_flags = -O3 -std=c++17 $(call cuda_gencode,$(1)) -DCUDA_ARCH_LIST='"$(1)"' \
             -Xcompiler -Wall,-Wno-unknown-pragmas
NVCC_FLAGS = $(call cuda_flags,$(CUDA_ARCHS))
PRECISION_FLAG =
ifeq ($(PRECISION),FP32)
  PRECISION_FLAG = -DENABLE_FP32
endif
# ATTENTION=cublas: the plain attention (cuBLAS scores, softmax, weighted sum; the T x T probabilities
# kept per layer, 18 GiB more at d12, B=64, T=1024) instead of the fused one (llmc/attention.cuh), so
# that a GPU session can time the two. It applies to the trainer, the CUDA tests and their emulator builds.
ATTENTION ?= fused
ifeq ($(filter $(ATTENTION),fused cublas),)
  $(error ATTENTION=$(ATTENTION): use ATTENTION=fused (the default) or ATTENTION=cublas)
endif
ATTENTION_FLAG =
ifeq ($(ATTENTION),cublas)
  ATTENTION_FLAG = -DATTENTION_CUBLAS
endif
# -lcublasLt: llmc/matmul.cuh adds the forward bias in cuBLASLt's epilogue
NVCC_LIBS = -lcublas -lcublasLt
# llmc/*.cuh: the kernels, one op per header (with their launchers)
CUDA_HEADERS = $(wildcard llmc/*.cuh)
CUDA_DEPS = train_gpt2_1bit.cu $(HEADERS) $(CUDA_HEADERS)
CUDA_TEST_BINS = tests/test_gpt2_1bitcu tests/test_gpt2_1bitcu_fp32
DEV_CUDA_PROGS = quantize_weights rmsnorm_quant bitlinear_forward bitlinear_backward ternary_gemv \
                 attention_forward attention_backward classifier encoder_backward residual_layernorm gelu

# The flags a CUDA binary was built with, one file per build kind: rewritten only when they
# change, so `make train_gpt2_1bitcu PRECISION=FP32` after a bf16 build rebuilds the trainer
# instead of leaving the other precision's binary in place (ATTENTION= likewise).
.PHONY: FORCE
.cuda_flags_trainer: FORCE
	@echo '$(NVCC) $(CUDA_ARCHS) $(PRECISION) $(ATTENTION)' | cmp -s - $@ || echo '$(NVCC) $(CUDA_ARCHS) $(PRECISION) $(ATTENTION)' >$@
.cuda_flags_tests: FORCE
	@echo '$(NVCC) $(CUDA_ARCHS) $(ATTENTION)' | cmp -s - $@ || echo '$(NVCC) $(CUDA_ARCHS) $(ATTENTION)' >$@
.cuda_flags_emu: FORCE
	@echo '$(ATTENTION)' | cmp -s - $@ || echo '$(ATTENTION)' >$@

# The data the trainer's defaults read, made when it can be, but not a build dependency: a GPU
# machine with neither network nor ../shared must still build (the trainer names a missing file).
.PHONY: data-if-possible
data-if-possible:
	@for f in $(DATA); do [ -f $$f ] || { $(PYTHON) prepro_tinyshakespeare.py || \
	  echo "note: tiny Shakespeare could not be prepared (see above); the build goes on: run $(PYTHON) prepro_tinyshakespeare.py before training"; break; }; done

ifeq ($(shell which $(NVCC) 2>/dev/null),)
train_gpt2_1bitcu $(CUDA_TEST_BINS) test-cuda cuda gpu-kit gpu-kit-bins:
	@echo "nvcc not found: skipping CUDA targets"
else
train_gpt2_1bitcu: $(CUDA_DEPS) .cuda_flags_trainer | data-if-possible
	$(NVCC) $(NVCC_FLAGS) $(PRECISION_FLAG) $(ATTENTION_FLAG) $< $(NVCC_LIBS) -o $@

# the CUDA test in both precisions (the tolerances differ, see the file)
tests/test_gpt2_1bitcu: tests/test_gpt2_1bit.cu tests/ref_modes.h $(CUDA_DEPS) .cuda_flags_tests
	$(NVCC) $(NVCC_FLAGS) $(ATTENTION_FLAG) $< $(NVCC_LIBS) -o $@
tests/test_gpt2_1bitcu_fp32: tests/test_gpt2_1bit.cu tests/ref_modes.h $(CUDA_DEPS) .cuda_flags_tests
	$(NVCC) $(NVCC_FLAGS) -DENABLE_FP32 $(ATTENTION_FLAG) $< $(NVCC_LIBS) -o $@

# build everything CUDA (what CI can do without a GPU)
cuda: train_gpt2_1bitcu $(CUDA_TEST_BINS)

# run the CUDA tests: needs a GPU. Every program runs even when one fails.
test-cuda: train_gpt2_1bit train_gpt2_1bitcu $(CUDA_TEST_BINS)
	@rc=0; ./tests/test_gpt2_1bitcu_fp32 || rc=1; ./tests/test_gpt2_1bitcu || rc=1; \
	  bash tests/test_cuda_vs_cpu.sh || rc=1; exit $$rc

# ----------------------------------------------------------------------------
# The GPU kit: everything dev/gpu_check.sh runs, built here (nvcc, no GPU needed) into
# gpukit/ (ignored), so a GPU machine with no network, no ../shared and little time only
# runs it: the trainer in bf16 and fp32, the CUDA tests, the dev/cuda programs, the CPU
# trainer, the tiny Shakespeare files and the CPU side of tests/test_cuda_vs_cpu.sh
# (two d2 runs of 300 steps, about 10 minutes on 2 cores: done once, kept in gpukit/cpu_ref).
# KIT_ARCH is the GPU it is for (90: H100/H200). It prints what to carry to the GPU machine,
# and fails if that is more than the device tool carries (64 MiB, the working tree included).
# -Xfatbin -compress-all: the device code compressed too (by default only the PTX is; the
# driver unpacks it at load): the kit is 32 MiB with it, 72 MiB without (CUDA 13, sm_90).
KIT = gpukit
KIT_ARCH ?= 90
KIT_CARRY_MAX_MIB = 64
KIT_FATBIN = -Xfatbin -compress-all
KIT_FLAGS = $(call cuda_flags,$(KIT_ARCH)) $(KIT_FATBIN)
KIT_DEV_CUDA = $(addprefix $(KIT)/dev_cuda/,$(DEV_CUDA_PROGS))
KIT_BINS = $(KIT)/train_gpt2_1bitcu $(KIT)/train_gpt2_1bitcu_fp32 $(KIT)/test_gpt2_1bitcu \
           $(KIT)/test_gpt2_1bitcu_fp32 $(KIT)/train_gpt2_1bitcu_cublasattn $(KIT)/train_gpt2_1bit $(KIT_DEV_CUDA)
KIT_DATA = $(addprefix $(KIT)/,$(DATA))
$(KIT)/.flags: FORCE
	@mkdir -p $(@D)
	@echo '$(NVCC) $(KIT_ARCH) $(KIT_FATBIN)' | cmp -s - $@ || echo '$(NVCC) $(KIT_ARCH) $(KIT_FATBIN)' >$@
$(KIT)/train_gpt2_1bitcu: $(CUDA_DEPS) $(KIT)/.flags
	@mkdir -p $(@D)
	$(NVCC) $(KIT_FLAGS) $< $(NVCC_LIBS) -o $@
$(KIT)/train_gpt2_1bitcu_fp32: $(CUDA_DEPS) $(KIT)/.flags
	@mkdir -p $(@D)
	$(NVCC) $(KIT_FLAGS) -DENABLE_FP32 $< $(NVCC_LIBS) -o $@
# the trainer with the plain cuBLAS attention (ATTENTION=cublas), benchmarked beside the fused default
$(KIT)/train_gpt2_1bitcu_cublasattn: $(CUDA_DEPS) $(KIT)/.flags
	@mkdir -p $(@D)
	$(NVCC) $(KIT_FLAGS) -DATTENTION_CUBLAS $< $(NVCC_LIBS) -o $@
$(KIT)/test_gpt2_1bitcu: tests/test_gpt2_1bit.cu tests/ref_modes.h $(CUDA_DEPS) $(KIT)/.flags
	@mkdir -p $(@D)
	$(NVCC) $(KIT_FLAGS) $< $(NVCC_LIBS) -o $@
$(KIT)/test_gpt2_1bitcu_fp32: tests/test_gpt2_1bit.cu tests/ref_modes.h $(CUDA_DEPS) $(KIT)/.flags
	@mkdir -p $(@D)
	$(NVCC) $(KIT_FLAGS) -DENABLE_FP32 $< $(NVCC_LIBS) -o $@
# dev/cuda's own rules, with the kit's architecture, output into the kit (-B: this rule runs when
# the program is out of date here, the kit's flags included, which dev/cuda's rule does not see)
$(KIT)/dev_cuda/%: dev/cuda/%.cu dev/cuda/common.h $(HEADERS) $(CUDA_HEADERS) $(KIT)/.flags
	@mkdir -p $(@D)
	$(MAKE) --no-print-directory -B -C dev/cuda GPU_COMPUTE_CAPABILITY=$(KIT_ARCH) NVCC_EXTRA='$(KIT_FATBIN)' \
	  OUT_DIR=../../$(@D) ../../$@
# the CPU trainer for x86-64 with AVX2 (x86-64-v3), not -march=native: the GPU machine's CPU is another one
$(KIT)/train_gpt2_1bit: train_gpt2_1bit.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(subst -march=native,-march=x86-64-v3,$(CFLAGS)) $< $(LDLIBS) -o $@
$(KIT)/data/%: data/%
	@mkdir -p $(@D)
	cp $< $@
# the CPU side of tests/test_cuda_vs_cpu.sh (CPU_ONLY=1 runs just that, into CPU_LOGS)
$(KIT)/cpu_ref/DONE: train_gpt2_1bit tests/test_cuda_vs_cpu.sh | $(DATA)
	CPU_LOGS=$(KIT)/cpu_ref CPU_ONLY=1 bash tests/test_cuda_vs_cpu.sh
	touch $@
# the binaries alone (what dev/gpu_check.sh rebuilds on a GPU machine where the carried ones do not load)
gpu-kit-bins: $(KIT_BINS)
gpu-kit: $(KIT_BINS) $(KIT_DATA) $(KIT)/cpu_ref/DONE
	@peer=; [ -x peers/llm.c/train_gpt2cu ] && peer=peers/llm.c/train_gpt2cu; \
	  kit=$$(du -sb $(KIT) | cut -f1); peer_b=$$([ -n "$$peer" ] && du -sb $$peer | cut -f1 || echo 0); \
	  tree=$$(git ls-files -z -co --exclude-standard 2>/dev/null | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1); \
	  total=$$((kit + peer_b + $${tree:-0})); mib() { awk -v b=$$1 'BEGIN { printf "%.1f", b / 1048576 }'; }; \
	  echo "gpu-kit: $(KIT)/ $$(mib $$kit) MiB, $${peer:-no llm.c peer} $$(mib $$peer_b) MiB, the working tree $$(mib $${tree:-0}) MiB:" \
	    "$$(mib $$total) MiB to carry, of the device tool's $(KIT_CARRY_MAX_MIB)"; \
	  if [ $$total -gt $$(($(KIT_CARRY_MAX_MIB) * 1048576)) ]; then \
	    echo "error: gpu-kit: $$(mib $$total) MiB is more than the device tool carries ($(KIT_CARRY_MAX_MIB) MiB)" >&2 \
	      "---> HINT: see what grew: du -sh $(KIT)/* $(KIT)/dev_cuda/*"; \
	    exit 1; fi; \
	  printf 'carry: ["$(KIT)"'; [ -n "$$peer" ] && printf ', "%s"' $$peer; echo ']'
	@echo "then, on the GPU machine: bash dev/gpu_check.sh OUTDIR"
endif

# ----------------------------------------------------------------------------
# the CUDA code on the CPU (tests/cuda_emu): what make test runs of it without a GPU.
# cu2cpp.py rewrites the launches, g++ compiles the rest against the emulator's
# headers; -fopenmp only parallelises the emulated cuBLAS.
EMU_DIR = tests/cuda_emu/build
EMU_HEADERS = $(wildcard tests/cuda_emu/include/*.h)
EMU_CXX = $(CXX) -std=c++17 -O2 -g -fopenmp -Wall -Wno-unknown-pragmas -I tests/cuda_emu/include -I .
EMU_BINS = tests/test_gpt2_1bitcu_emu tests/test_gpt2_1bitcu_emu_fp32 train_gpt2_1bitcu_emu

$(EMU_DIR)/test_gpt2_1bit.cpp: tests/test_gpt2_1bit.cu tests/ref_modes.h $(CUDA_DEPS) tests/cuda_emu/cu2cpp.py
	@mkdir -p $(EMU_DIR)
	$(PYTHON) tests/cuda_emu/cu2cpp.py $< $@
$(EMU_DIR)/train_gpt2_1bit.cpp: $(CUDA_DEPS) tests/cuda_emu/cu2cpp.py
	@mkdir -p $(EMU_DIR)
	$(PYTHON) tests/cuda_emu/cu2cpp.py $< $@
tests/test_gpt2_1bitcu_emu: $(EMU_DIR)/test_gpt2_1bit.cpp $(EMU_HEADERS) .cuda_flags_emu
	$(EMU_CXX) $(ATTENTION_FLAG) $< -o $@
tests/test_gpt2_1bitcu_emu_fp32: $(EMU_DIR)/test_gpt2_1bit.cpp $(EMU_HEADERS) .cuda_flags_emu
	$(EMU_CXX) -DENABLE_FP32 $(ATTENTION_FLAG) $< -o $@
train_gpt2_1bitcu_emu: $(EMU_DIR)/train_gpt2_1bit.cpp $(EMU_HEADERS) .cuda_flags_emu
	$(EMU_CXX) $(ATTENTION_FLAG) $< -o $@

# the dev/cuda kernel variants on the emulator, run in small mode by tests/test_dev_cuda_emu.sh;
# -I dev/cuda: their "common.h", next to the .cu but not next to the rewritten .cpp
DEV_CUDA_EMU_BINS = $(addprefix $(EMU_DIR)/dev_cuda/,$(DEV_CUDA_PROGS))
EMU_BINS += $(DEV_CUDA_EMU_BINS)
.PRECIOUS: $(EMU_DIR)/dev_cuda/%.cpp
$(EMU_DIR)/dev_cuda/%.cpp: dev/cuda/%.cu dev/cuda/common.h $(HEADERS) $(CUDA_HEADERS) tests/cuda_emu/cu2cpp.py
	@mkdir -p $(EMU_DIR)/dev_cuda
	$(PYTHON) tests/cuda_emu/cu2cpp.py $< $@
$(EMU_DIR)/dev_cuda/%: $(EMU_DIR)/dev_cuda/%.cpp $(EMU_HEADERS)
	$(EMU_CXX) -I dev/cuda $< -o $@

# ----------------------------------------------------------------------------
# tests

tests/test_gpt2_1bit: tests/test_gpt2_1bit.c tests/ref_modes.h train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

tests/test_units: tests/test_units.c train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

tests/test_run: tests/test_run.c run_gpt2_1bit.c train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

# the GGUF export (llmc/gguf.h) driven as run_gpt2_1bit drives it; tests/test_gguf.py reads its files back
tests/test_gguf: tests/test_gguf.c train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

# HellaSwag: llmc/hellaswag.h's batches and scores against the CPU model's forward
tests/test_hellaswag: tests/test_hellaswag.c train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

tests/test_kernels: tests/test_kernels.c train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

# the scalar build of the kernel test: no -march, and -DTG1_CPU_SCALAR_ONLY compiles out the
# SIMD paths (llmc/cpu_features.h), as on a CPU or compiler without them: the fallback must stay
# correct too (tests/test_kernels itself runs every path this CPU has, scalar included)
tests/test_kernels_scalar: tests/test_kernels.c train_gpt2_1bit.c $(HEADERS)
	$(CC) -O2 -std=gnu11 -Wall -Wextra -Wno-unknown-pragmas -DTG1_CPU_SCALAR_ONLY $< $(LDLIBS) -o $@

# and of the decoder test: the screened head's scalar path and its interleaved layout
tests/test_run_scalar: tests/test_run.c run_gpt2_1bit.c train_gpt2_1bit.c $(HEADERS)
	$(CC) -O2 -std=gnu11 -Wall -Wextra -Wno-unknown-pragmas -DTG1_CPU_SCALAR_ONLY $< $(LDLIBS) -o $@

TEST_BINS = tests/test_gpt2_1bit tests/test_units tests/test_run tests/test_run_scalar tests/test_kernels tests/test_kernels_scalar \
            tests/test_hellaswag tests/test_gguf
test: train_gpt2_1bit run_gpt2_1bit $(TEST_BINS) $(EMU_BINS)
	@bash tests/run_tests.sh

# the edit loop's tier: the CPU tests without the emulator and the long runs (tests/run_tests.sh's
# run_slow lines), about a minute on 2 cores; make test stays the full suite
test-fast: train_gpt2_1bit run_gpt2_1bit $(TEST_BINS)
	@FAST=1 bash tests/run_tests.sh

# ----------------------------------------------------------------------------
# benchmarks

bench_gpt2_1bit: dev/bench_gpt2_1bit.c train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

bench_kernels: dev/bench_kernels.c train_gpt2_1bit.c $(HEADERS)
	$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

# OMP_WAIT_POLICY=active: idle OpenMP threads spin instead of sleeping; on
# virtual machines a sleeping thread can take milliseconds to wake
bench: bench_gpt2_1bit bench_kernels
	OMP_WAIT_POLICY=active ./bench_gpt2_1bit
	OMP_WAIT_POLICY=active ./bench_kernels

clean:
	rm -f train_gpt2_1bit train_gpt2_1bitcu run_gpt2_1bit bench_gpt2_1bit bench_kernels $(TEST_BINS) $(CUDA_TEST_BINS) $(EMU_BINS)
	rm -rf $(EMU_DIR) $(KIT)
	rm -f .cuda_flags_trainer .cuda_flags_tests .cuda_flags_emu $(KIT)/.flags
