#!/usr/bin/env bash
# tests/run_tests.sh: runs every test program and prints one closing line,
# "N passed, N failed". Each program prints "PASS: <name>" or "FAIL: <name>: ..."
# per check and exits non-zero on any failure; a program that exits non-zero
# without a FAIL line (a crash) counts as one failure.
# Usage: bash tests/run_tests.sh   (make test builds what it needs first)
#        bash tests/run_tests.sh --setup-only   (only the set-up below; its exit status says if it worked)
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python3}

# ----------------------------------------------------------------------------
# set-up: the test dependencies a fresh machine lacks. tests/test_prepro.py compares prepro with
# tiktoken, tests/test_gguf.py and tests/test_convert_hf.py read files with gguf and safetensors;
# whatever is missing is installed here (as .ci/run does): with pip into the Python
# that runs the tests, or, where pip may not change that Python (a system Python, PEP 668), into a
# cache directory that goes on PYTHONPATH (tests/test_prepro.py looks there too). If both fail,
# tests/test_prepro.py fails with the command that fixes it: a check that cannot run is no pass.
tiktoken_dir() {
    local v
    v=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || v=unknown
    echo "${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/train_gpt2_1bit/python$v"
}
# setup_py WHAT MODULES PIP_ARGS...: import MODULES (space-separated), else install PIP_ARGS with pip,
# else into the cache directory (then on PYTHONPATH); returns non-zero if they still do not import
setup_py() {
    local what=$1 mods=$2
    shift 2
    local imp="import ${mods// /, }" dir
    "$PYTHON" -c "$imp" 2>/dev/null && return 0
    dir=$(tiktoken_dir)
    if [ -d "$dir" ] && PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c "$imp" 2>/dev/null; then
        export PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}"
        return 0
    fi
    echo "== set-up: $mods (for $what) missing: $PYTHON -m pip install $*"
    # (its own complaint, e.g. PEP 668's page of text, is not shown: the fallback below says what it does)
    if "$PYTHON" -m pip install -q "$@" >/dev/null 2>&1 && "$PYTHON" -c "$imp" 2>/dev/null; then return 0; fi
    echo "== set-up: that failed; trying $PYTHON -m pip install --target $dir $*"
    if "$PYTHON" -m pip install -q --target "$dir" "$@" &&
       PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c "$imp" 2>/dev/null; then
        export PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}"
        return 0
    fi
    echo "== set-up: could not install $mods, so $what will fail ---> HINT: $PYTHON -m pip install" \
         "$* (without pip: sudo apt-get install python3-pip first), then make test"
    return 1
}
setup_tiktoken() { setup_py tests/test_prepro.py tiktoken tiktoken; }
# the GGUF export's and the Hugging Face converter's tests read and write with these
setup_formats() {
    setup_py "tests/test_gguf.py and tests/test_convert_hf.py" "numpy gguf safetensors" \
        -r dev/requirements-gguf.txt -r dev/requirements-convert.txt
}
if [ "${1:-}" = "--setup-only" ]; then setup_tiktoken && setup_formats; exit $?; fi
setup_tiktoken
setup_formats
passed=0
failed=0
skipped=0
# run NAME CMD...: one test program; its PASS and FAIL lines are counted, and its time printed
run() {
    local name=$1; shift
    echo "== $name"
    local out rc t0=$(date +%s.%N)
    out=$("$@" 2>&1)
    rc=$?
    echo "$out"
    echo "-- $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
    local p f
    p=$(grep -c '^PASS' <<<"$out")
    f=$(grep -c '^FAIL' <<<"$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL: $name exited with status $rc and reported no failure"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
}
# run_slow NAME CMD...: a test that takes long (the emulator, training runs, Python set-ups): part of
# make test, skipped by make test-fast (FAST=1), the edit loop's tier that runs in about a minute
run_slow() {
    if [ "${FAST:-0}" = 1 ]; then
        echo "== skipped by make test-fast: $1"
        skipped=$((skipped + 1))
        return 0
    fi
    run "$@"
}
run "quantizers, layers, tokenizer (tests/test_units)" ./tests/test_units
run "model vs PyTorch reference (tests/test_gpt2_1bit)" ./tests/test_gpt2_1bit
# the same on the other SIMD paths of llmc/cpu_features.h (the run above took this CPU's best): the
# matmuls differ in rounding only, within the same tolerances. The AVX2 path only where it is not the best
run_slow "model vs PyTorch reference on the scalar path (TG1_CPU_PATH=scalar tests/test_gpt2_1bit)" env TG1_CPU_PATH=scalar ./tests/test_gpt2_1bit
if grep -qw avx512_vnni /proc/cpuinfo 2>/dev/null && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
    run_slow "model vs PyTorch reference on the AVX2 path (TG1_CPU_PATH=avx2 tests/test_gpt2_1bit)" env TG1_CPU_PATH=avx2 ./tests/test_gpt2_1bit
fi
run "bad input (tests/test_bad_input.sh)" bash tests/test_bad_input.sh
run "checkpoint and resume (tests/test_resume.sh)" bash tests/test_resume.sh
run "GPT-2 BPE encoder in C vs prepro (tests/test_bpe.sh)" bash tests/test_bpe.sh
run "int8 x ternary kernels vs scalar reference (tests/test_kernels)" ./tests/test_kernels
run_slow "the same, scalar build (tests/test_kernels_scalar)" ./tests/test_kernels_scalar
run "packed models and the decoder (tests/test_run)" ./tests/test_run
run_slow "the same, scalar build (tests/test_run_scalar)" ./tests/test_run_scalar
run "export and generation, bad input (tests/test_run.sh)" bash tests/test_run.sh
run_slow "preprocessing vs tiktoken (tests/test_prepro.py)" "$PYTHON" tests/test_prepro.py
run "loss plot (tests/test_plot.py)" "$PYTHON" tests/test_plot.py
run_slow "HellaSwag eval: batches and acc_norm vs the model's forward, bad files (tests/test_hellaswag)" ./tests/test_hellaswag
run_slow "dev/data: fineweb.py shards vs tiktoken, resume after kill, bad input; hellaswag.py eval file (tests/test_data_scripts.py)" "$PYTHON" tests/test_data_scripts.py
run "GPT-2 124M/350M recipes: flags vs llmc/args.h, numbers, the restart loop (tests/test_run_scripts.sh)" bash tests/test_run_scripts.sh
run_slow "the reproduction path on local data: fineweb.py -> hellaswag.py -> train -h 1 -> plot (tests/test_repro_path.sh)" bash tests/test_repro_path.sh
run "GGUF export read back by the gguf package, run_gpt2_1bit -x model.gguf (tests/test_gguf.py)" "$PYTHON" tests/test_gguf.py
run_slow "Hugging Face GPT-2 weights to our model file (tests/test_convert_hf.py)" "$PYTHON" tests/test_convert_hf.py
# the CUDA trainer's code, run on the CPU by tests/cuda_emu (no GPU needed; slow but exact in logic)
run_slow "CUDA trainer on the CPU emulator vs PyTorch reference, fp32 (tests/test_gpt2_1bitcu_emu_fp32)" ./tests/test_gpt2_1bitcu_emu_fp32
run_slow "CUDA trainer on the CPU emulator vs PyTorch reference, bf16 (tests/test_gpt2_1bitcu_emu)" ./tests/test_gpt2_1bitcu_emu
# the same with the int8 GEMMs (integer forward, -bq int8) by the fused mma.sync kernel instead of cuBLAS
run_slow "the same with GPT2_1BIT_INT8_GEMM=mma (llmc/bitlinear.cuh's bitlinear_matmul_int8_mma)" env GPT2_1BIT_INT8_GEMM=mma ./tests/test_gpt2_1bitcu_emu
# and with the attention backward's form 5 (dS kept for the dq kernel) instead of form 4
run_slow "the same with GPT2_1BIT_ATTENTION_BWD=5 (llmc/attention.cuh's attention_backward5)" env GPT2_1BIT_ATTENTION_BWD=5 ./tests/test_gpt2_1bitcu_emu
run_slow "CUDA trainer on the CPU emulator vs the CPU trainer, resume (tests/test_cuda_vs_cpu.sh)" env QUICK=1 CUDA_BIN=./train_gpt2_1bitcu_emu bash tests/test_cuda_vs_cpu.sh
run_slow "CUDA start-up errors: old driver, no GPU, no code for the GPU (tests/test_cuda_startup.sh)" bash tests/test_cuda_startup.sh
run_slow "the Makefile's CUDA builds: no data needed, architectures, rebuilt on PRECISION= (tests/test_build.sh)" bash tests/test_build.sh
run_slow "dev/gpu_check.sh's flow on the CPU emulator (tests/test_gpu_check_emu.sh)" bash tests/test_gpu_check_emu.sh
run_slow "CUDA kernels' registers and shared memory vs their launches (tests/test_cuda_resources.sh)" bash tests/test_cuda_resources.sh
# the dev/cuda kernel variants, validated on the emulator in small mode (DEV_CUDA_SMALL=1); variant 4 of
# quantize_weights, rmsnorm_quant and bitlinear_forward is the kernel the trainer ships (llmc/*.cuh), and
# bitlinear_forward 5 (bitlinear_backward 4) the one it runs with GPT2_1BIT_INT8_GEMM=mma; rmsnorm_quant 5
# the one it runs for fcproj (the GELU fused)
run_slow "dev/cuda quantize_weights on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh quantize_weights 1 2 3 4
run_slow "dev/cuda rmsnorm_quant on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh rmsnorm_quant 1 2 3 4 5
run_slow "dev/cuda bitlinear_forward on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh bitlinear_forward 0 1 2 3 4 5
run_slow "dev/cuda bitlinear_backward on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh bitlinear_backward 1 2 3 4
run_slow "dev/cuda ternary_gemv on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh ternary_gemv 0 1 2 3
# attention: 1 the cuBLAS form (make ATTENTION=cublas), 2 fused SIMT (the FP32 build's), 3 fused mma.sync bf16,
# 4 ldmatrix + cp.async (the bf16 build's), 5 (backward) as 4 with dS kept for dq (GPT2_1BIT_ATTENTION_BWD=5);
# the forward program first checks the bf16 mma.sync, ldmatrix and cp.async against plain references
run_slow "dev/cuda attention_forward on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh attention_forward 1 2 3 4
run_slow "dev/cuda attention_backward on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh attention_backward 1 2 3 4 5
run_slow "dev/cuda classifier on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh classifier 1 2
run_slow "dev/cuda encoder_backward on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh encoder_backward 1 2
run_slow "dev/cuda residual_layernorm on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh residual_layernorm 1 2 3
run_slow "dev/cuda gelu on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh gelu 1 2
if [ "$skipped" -gt 0 ]; then
    echo "(make test-fast: $skipped slow test programs skipped; make test runs them all)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
