#!/usr/bin/env bash
# tests/test_cuda_startup.sh: what the CUDA trainer says when it cannot start on a GPU,
# run on the CPU emulator's build (tests/cuda_emu), which CUDA_EMU_DEVICE_ERROR=N makes
# fail as a GPU machine would: 35 a driver older than the toolkit, 100 no GPU, 209 a
# binary without code for this GPU. Each must end in an "error:" line that names the
# cause, a HINT with the fix, and a non-zero exit (llmc/cuda_common.h: cuda_device_init).
# Usage: bash tests/test_cuda_startup.sh   (make test builds ./train_gpt2_1bitcu_emu)
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${CUDA_BIN:-./train_gpt2_1bitcu_emu}
npass=0
nfail=0
pass() { echo "PASS: $1"; npass=$((npass + 1)); }
fail() { echo "FAIL: $1: $2"; nfail=$((nfail + 1)); }
if [ ! -x "$BIN" ]; then echo "FAIL: setup: $BIN not found ---> HINT: make train_gpt2_1bitcu_emu"; exit 1; fi

# expect NAME ERRNO ERROR_TEXT HINT_TEXT
expect() {
    local err rc
    err=$(CUDA_EMU_DEVICE_ERROR=$2 "$BIN" -x 1 2>&1 >/dev/null)
    rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && grep -q "^error: .*$3" <<<"$err" && grep -q -- "---> HINT: .*$4" <<<"$err"; then
        pass "$1 -> $(head -1 <<<"$err")"
    else
        fail "$1" "exit status $rc, output: $(tr '\n' ' ' <<<"$err" | cut -c1-300)"
    fi
}
expect "a driver older than the toolkit is named as such" 35 "driver supports CUDA up to 12.4, older than the CUDA 13.0" "update the driver"
expect "no GPU" 100 "no CUDA GPU found (no CUDA-capable device" "run the CPU trainer instead"
expect "no code for this GPU names its compute capability and the make flag" 209 "has no code for the .*compute capability 90" "make GPU_COMPUTE_CAPABILITY=90"
echo "(test_cuda_startup.sh: $npass checks passed, $nfail checks failed)"
[ "$nfail" -eq 0 ]
