#!/usr/bin/env bash
# tests/test_cuda_vs_cpu.sh: the CUDA trainer against the CPU trainer on tiny
# Shakespeare, and its checkpoint/resume from the command line. Needs a GPU.
#
# 1. Both trainers train d2 from the same seed for 300 steps (the defaults) in
#    the b1.58 mode and in fp; their val losses (main.log, every 50 steps) must
#    agree: at step 0 (same init, no training yet) to VAL0_TOL, later to VAL_TOL.
#    Training is chaotic in the int8 mode (tests/test_gpt2_1bit.c explains why),
#    so later steps are compared as curves, not bit for bit.
# 2. Resume: 20 steps in one go (checkpoints at 10 and 20); a second run of the
#    same loses its step-20 checkpoint (as if killed after step 10's) and resumes
#    with -y 1: model_00000020.bin and state_00000020.bin must be identical (cmp).
#
# Usage: make test-cuda, or bash tests/test_cuda_vs_cpu.sh after building
# ./train_gpt2_1bit and ./train_gpt2_1bitcu (CUDA_BIN= picks another build).
# QUICK=1 (what make test runs with the CPU emulator, CUDA_BIN=./train_gpt2_1bitcu_emu):
# the small model tests/ref/model.bin on tiny synthetic shards, 40 steps, val every 10.
set -u
cd "$(dirname "$0")/.." || exit 1
CPU_BIN=./train_gpt2_1bit
CUDA_BIN=${CUDA_BIN:-./train_gpt2_1bitcu}
# bf16 activations round to 8 significant bits: at step 0 the val loss (about
# 10.8) of the same weights differs by that rounding only. After training the
# runs differ by the chaos of training as well; first estimates, to be replaced
# by measured bounds on the first GPU run.
VAL0_TOL=0.02
VAL_TOL=0.10
npass=0
nfail=0
pass() { echo "PASS: $1"; npass=$((npass + 1)); }
fail() { echo "FAIL: $1: $2"; nfail=$((nfail + 1)); }
for b in "$CPU_BIN" "$CUDA_BIN"; do
    if [ ! -x "$b" ]; then echo "FAIL: setup: $b not found ---> HINT: make train_gpt2_1bit train_gpt2_1bitcu"; exit 1; fi
done
W=$(mktemp -d "${TMPDIR:-/tmp}/test_cuda_vs_cpu.XXXXXX") || exit 1
trap 'rm -rf "$W"' EXIT
RUN=(-s 0)           # the defaults: d2 on tiny Shakespeare, 300 steps, val every 50
MIN_VALS=7
if [ "${QUICK:-0}" = 1 ]; then
    python3 tests/make_tiny_data.py "$W/data" >/dev/null || { echo "FAIL: setup: tests/make_tiny_data.py"; exit 1; }
    RUN=(-s 0 -e tests/ref/model.bin -i "$W/data/train.bin" -j "$W/data/val.bin" -tf /nonexistent -b 4 -t 16
         -x 40 -v 10 -m 4 -u 4)
    MIN_VALS=5
fi

# val losses "step loss" from a main.log
vals() { sed -n 's/^s:\([0-9]*\) tel:\([0-9.]*\)$/\1 \2/p' "$1"; }

for mode in b158 fp; do
    flags=()
    [ "$mode" = fp ] && flags=(-wq fp -aq none -rn 0)
    "$CPU_BIN" "${RUN[@]}" ${flags[@]+"${flags[@]}"} -o "$W/cpu_$mode" >"$W/cpu_$mode.out" 2>&1 || { fail "$mode: CPU run" "$(tail -1 "$W/cpu_$mode.out")"; continue; }
    "$CUDA_BIN" "${RUN[@]}" ${flags[@]+"${flags[@]}"} -o "$W/gpu_$mode" >"$W/gpu_$mode.out" 2>&1 || { fail "$mode: CUDA run" "$(tail -1 "$W/gpu_$mode.out")"; continue; }
    grep "average step" "$W/cpu_$mode.out" "$W/gpu_$mode.out" | sed "s|$W/||"
    paste <(vals "$W/cpu_$mode/main.log") <(vals "$W/gpu_$mode/main.log") >"$W/pairs"
    if [ "$(wc -l <"$W/pairs")" -lt "$MIN_VALS" ]; then fail "$mode: val losses" "fewer than $MIN_VALS val lines"; continue; fi
    while read -r s1 cpu s2 gpu; do
        tol=$VAL_TOL
        [ "$s1" = 0 ] && tol=$VAL0_TOL
        d=$(awk -v a="$cpu" -v b="$gpu" 'BEGIN { d = a - b; if (d < 0) d = -d; printf "%.4f", d }')
        name="$mode: val loss at step $s1: CPU $cpu, CUDA $gpu (diff $d, tolerance $tol)"
        if [ "$s1" = "$s2" ] && awk -v d="$d" -v t="$tol" 'BEGIN { exit !(d <= t) }'; then pass "$name"; else fail "$name" "too far apart"; fi
    done <"$W/pairs"
done

# resume from the command line, bit for bit
R=(-e d2 -b 4 -t 32 -v 0 -s 0 -n 10 -l 1e-3 -u 2)
if [ "${QUICK:-0}" = 1 ]; then
    R=(-e tests/ref/model.bin -i "$W/data/train.bin" -j "$W/data/val.bin" -tf /nonexistent -b 4 -t 16 -v 0 -s 0 -n 10 -l 1e-3 -u 2)
fi
"$CUDA_BIN" "${R[@]}" -x 20 -o "$W/a" >"$W/a.out" 2>&1 &&
"$CUDA_BIN" "${R[@]}" -x 20 -o "$W/b" >"$W/b1.out" 2>&1 &&
rm "$W/b/DONE_00000020" "$W/b/model_00000020.bin" "$W/b/state_00000020.bin" &&
"$CUDA_BIN" "${R[@]}" -x 20 -o "$W/b" -y 1 >"$W/b2.out" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
    fail "resume: runs" "exit status $rc"
else
    for f in model_00000020.bin state_00000020.bin; do
        if cmp -s "$W/a/$f" "$W/b/$f"; then pass "resume: $f identical to the uninterrupted run's"
        else fail "resume: $f" "differs from the uninterrupted run's"; fi
    done
fi
echo "(test_cuda_vs_cpu.sh: $npass checks passed, $nfail checks failed)"
[ "$nfail" -eq 0 ]
