#!/usr/bin/env bash
# tests/test_dev_cuda_emu.sh: one dev/cuda kernel-variant program, built for the CPU emulator
# (tests/cuda_emu, by make), run in small mode (DEV_CUDA_SMALL=1: small shapes, validation
# only). Passes when it exits 0, printed "All results match", and validated each variant
# named on the command line (a "variant N" line in its output).
# Usage: bash tests/test_dev_cuda_emu.sh PROGRAM VARIANT...
#   e.g. bash tests/test_dev_cuda_emu.sh bitlinear_forward 0 1 2 3
cd "$(dirname "$0")/.." || exit 1
prog=$1; shift
bin=tests/cuda_emu/build/dev_cuda/$prog
if [ ! -x "$bin" ]; then echo "FAIL: $prog: $bin not found ---> HINT: build it (make $bin)"; exit 1; fi
TIMEOUT=""
if command -v timeout >/dev/null 2>&1; then TIMEOUT="timeout 120"; fi # a hung kernel fails instead of stalling
out=$(DEV_CUDA_SMALL=1 $TIMEOUT "$bin" 2>&1)
rc=$?
echo "$out"
nfail=0
for v in "$@"; do
    if grep -q "^  variant $v[ ,]" <<<"$out"; then echo "PASS: $prog variant $v validated on the emulator"
    else echo "FAIL: $prog variant $v: no validation line"; nfail=$((nfail + 1)); fi
done
if [ "$rc" -eq 0 ] && grep -q '^All results match$' <<<"$out"; then echo "PASS: $prog: All results match"
else echo "FAIL: $prog: exit status $rc, no \"All results match\""; nfail=$((nfail + 1)); fi
[ "$nfail" -eq 0 ]
