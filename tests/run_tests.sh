#!/usr/bin/env bash
# tests/run_tests.sh: runs every test program and prints one closing line,
# "N passed, N failed". Each program prints "PASS: <name>" or "FAIL: <name>: ..."
# per check and exits non-zero on any failure; a program that exits non-zero
# without a FAIL line (a crash) counts as one failure.
# Usage: bash tests/run_tests.sh   (make test builds what it needs first)
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python3}
passed=0
failed=0
run() {
    local name=$1; shift
    echo "== $name"
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    echo "$out"
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
run "quantizers, layers, tokenizer (tests/test_units)" ./tests/test_units
run "model vs PyTorch reference (tests/test_gpt2_1bit)" ./tests/test_gpt2_1bit
run "bad input (tests/test_bad_input.sh)" bash tests/test_bad_input.sh
run "checkpoint and resume (tests/test_resume.sh)" bash tests/test_resume.sh
run "GPT-2 BPE encoder in C vs prepro (tests/test_bpe.sh)" bash tests/test_bpe.sh
run "int8 x ternary kernels vs scalar reference (tests/test_kernels)" ./tests/test_kernels
run "the same, scalar build (tests/test_kernels_scalar)" ./tests/test_kernels_scalar
run "packed models and the decoder (tests/test_run)" ./tests/test_run
run "the same, scalar build (tests/test_run_scalar)" ./tests/test_run_scalar
run "export and generation, bad input (tests/test_run.sh)" bash tests/test_run.sh
run "preprocessing vs tiktoken (tests/test_prepro.py)" "$PYTHON" tests/test_prepro.py
run "loss plot (tests/test_plot.py)" "$PYTHON" tests/test_plot.py
# the CUDA trainer's code, run on the CPU by tests/cuda_emu (no GPU needed; slow but exact in logic)
run "CUDA trainer on the CPU emulator vs PyTorch reference, fp32 (tests/test_gpt2_1bitcu_emu_fp32)" ./tests/test_gpt2_1bitcu_emu_fp32
run "CUDA trainer on the CPU emulator vs PyTorch reference, bf16 (tests/test_gpt2_1bitcu_emu)" ./tests/test_gpt2_1bitcu_emu
run "CUDA trainer on the CPU emulator vs the CPU trainer, resume (tests/test_cuda_vs_cpu.sh)" env QUICK=1 CUDA_BIN=./train_gpt2_1bitcu_emu bash tests/test_cuda_vs_cpu.sh
run "CUDA start-up errors: old driver, no GPU, no code for the GPU (tests/test_cuda_startup.sh)" bash tests/test_cuda_startup.sh
run "the Makefile's CUDA builds: no data needed, architectures, rebuilt on PRECISION= (tests/test_build.sh)" bash tests/test_build.sh
run "dev/gpu_check.sh's flow on the CPU emulator (tests/test_gpu_check_emu.sh)" bash tests/test_gpu_check_emu.sh
run "CUDA kernels' registers and shared memory vs their launches (tests/test_cuda_resources.sh)" bash tests/test_cuda_resources.sh
# the dev/cuda kernel variants, validated on the emulator in small mode (DEV_CUDA_SMALL=1)
run "dev/cuda quantize_weights on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh quantize_weights 1 2 3
run "dev/cuda rmsnorm_quant on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh rmsnorm_quant 1 2 3
run "dev/cuda bitlinear_forward on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh bitlinear_forward 0 1 2 3
run "dev/cuda bitlinear_backward on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh bitlinear_backward 1 2
run "dev/cuda ternary_gemv on the CPU emulator (tests/test_dev_cuda_emu.sh)" bash tests/test_dev_cuda_emu.sh ternary_gemv 0 1 2 3
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
