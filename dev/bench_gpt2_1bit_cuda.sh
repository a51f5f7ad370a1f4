#!/usr/bin/env bash
# dev/bench_gpt2_1bit_cuda.sh: CUDA training benchmark, GPT-2 124M, fp vs ternary in one run.
#
# Trains d12 (124M) at T=1024 for STEPS steps in the fp mode and the b1.58 mode
# (each from the same random init, no val, no samples, no checkpoints) and
# prints, per mode, the median step time over the steps after the first,
# tokens/s, MFU against the GPU's dense bf16 peak, and ternary / fp.
#
# Usage: bash dev/bench_gpt2_1bit_cuda.sh [B] [STEPS]    (defaults: B=64, STEPS=20)
#   BIN=./train_gpt2_1bitcu (build it with make train_gpt2_1bitcu); needs a GPU.
#   KEEP_LOGS=DIR keeps each run's output as DIR/bench_<mode>.out.
#   MODES="fp ternary": the modes, from fp, ternary (the default flags), ternary_bq8 (-bq int8),
#   ternary_rn1 (-rn 1, b1.58 as published), and ternary_mma, ternary_bq8_mma: ternary and
#   ternary_bq8 with GPT2_1BIT_INT8_GEMM=mma (the int8 GEMMs by llmc/bitlinear.cuh's fused
#   mma.sync kernel instead of cuBLAS + the epilogue kernel; every other mode runs with
#   GPT2_1BIT_INT8_GEMM=cublas, whatever the caller's environment says), and ternary_att5:
#   ternary with GPT2_1BIT_ATTENTION_BWD=5 (llmc/attention.cuh's form 5 backward: dS kept for
#   dq; every other mode runs form 4, the default).
#   BENCH_MODEL=d12 and BENCH_T=1024: another model or sequence length (a check of this
#   script on the CPU emulator uses d1 and 32; MFU assumes d12's shape)
# MFU counts 6 N + 12 L C T FLOPs per token (PaLM's formula: the matmuls of the
# forward and backward passes, N without the position embeddings, plus attention)
# as if every product ran at the bf16 tensor-core peak, int8 ones included.
set -u
cd "$(dirname "$0")/.." || exit 1
B=${1:-64}
STEPS=${2:-20}
BIN=${BIN:-./train_gpt2_1bitcu}
MODEL=${BENCH_MODEL:-d12}
T=${BENCH_T:-1024}
MODES=${MODES:-fp ternary}
[ -x "$BIN" ] || { echo "error: $BIN not found ---> HINT: make train_gpt2_1bitcu"; exit 1; }
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
# dense bf16 tensor-core peaks (TFLOPS) from NVIDIA's datasheets
case "$gpu" in
    *H100*PCIe*) peak=756 ;;
    *H100*|*H200*|*GH200*) peak=989 ;;
    *A100*) peak=312 ;;
    *L40S*) peak=362 ;;
    *4090*) peak=165 ;;
    *) peak=0 ;;
esac
echo "GPU: ${gpu:-unknown} (bf16 peak ${peak} TFLOPS), $MODEL, B=$B, T=$T, $STEPS steps, $(date -u +%Y-%m-%d)"
W=$(mktemp -d "${TMPDIR:-/tmp}/bench_cuda.XXXXXX") || exit 1
trap 'rm -rf "$W"' EXIT
printf "%-15s %10s %12s %8s %12s\n" mode "ms/step" "tok/s" "MFU" "memory GiB"
for mode in $MODES; do
    # the mode's flags as one string, split on purpose: an empty array under set -u
    # is an error on bash < 4.4
    gemm=cublas # the int8 GEMM (llmc/bitlinear.cuh, GPT2_1BIT_INT8_GEMM)
    attbwd=4    # the attention backward (llmc/attention.cuh, GPT2_1BIT_ATTENTION_BWD)
    case $mode in
        fp) flags="-wq fp -aq none -rn 0" ;;
        ternary) flags="" ;;                  # the default: b1.58 weights and activations, -rn 0, -bq float
        ternary_bq8) flags="-bq int8" ;;      # with the int8 backward for dX
        ternary_rn1) flags="-rn 1" ;;         # b1.58 as published: the RMSNorm before every BitLinear
        ternary_mma) flags=""; gemm=mma ;;    # ternary, the int8 GEMMs by the fused mma.sync kernel
        ternary_bq8_mma) flags="-bq int8"; gemm=mma ;;
        ternary_att5) flags=""; attbwd=5 ;;  # ternary, the attention backward's form 5
        *) echo "error: unknown mode $mode in MODES ---> HINT: fp ternary ternary_bq8 ternary_rn1 ternary_mma" \
                "ternary_bq8_mma ternary_att5"; exit 1 ;;
    esac
    # shellcheck disable=SC2086
    if ! GPT2_1BIT_INT8_GEMM=$gemm GPT2_1BIT_ATTENTION_BWD=$attbwd "$BIN" -e "$MODEL" -b "$B" -t "$T" -x "$STEPS" \
        -v 0 -s 0 -o "" $flags >"$W/$mode.out" 2>&1; then
        echo "$mode: the run failed: $(grep -m1 'error' "$W/$mode.out")"
        [ -n "${KEEP_LOGS:-}" ] && cp "$W/$mode.out" "$KEEP_LOGS/bench_$mode.out"
        continue
    fi
    [ -n "${KEEP_LOGS:-}" ] && cp "$W/$mode.out" "$KEEP_LOGS/bench_$mode.out"
    mem=$(sed -n 's/^device memory: \([0-9.]*\) GiB allocated.*/\1/p' "$W/$mode.out")
    params=$(sed -n 's/^model: .*), \([0-9]*\) parameters.*/\1/p' "$W/$mode.out")
    # median ms of steps 2..STEPS (step 1 warms up cuBLAS)
    ms=$(sed -n 's/^step *\([0-9]*\)\/[0-9]* | .* | \([0-9.]*\) ms | .*/\1 \2/p' "$W/$mode.out" |
         awk '$1 > 1 { print $2 }' | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
    awk -v m="$mode" -v ms="$ms" -v B="$B" -v T="$T" -v N="$params" -v peak="$peak" -v mem="${mem:--}" 'BEGIN {
        tok = B * T / (ms / 1000); flops = 6 * (N - 1024 * 768) + 12 * 12 * 768 * T;
        mfu = peak > 0 ? sprintf("%.1f%%", 100 * tok * flops / (peak * 1e12)) : "-";
        printf "%-15s %10.1f %12.0f %8s %12s\n", m, ms, tok, mfu, mem }'
    echo "$ms" >"$W/$mode.ms"
done
for mode in $MODES; do
    if [ "$mode" != fp ] && [ -s "$W/fp.ms" ] && [ -s "$W/$mode.ms" ]; then
        awk -v m="$mode" -v f="$(cat "$W/fp.ms")" -v t="$(cat "$W/$mode.ms")" 'BEGIN { printf "%s / fp speed: %.2fx\n", m, f / t }'
    fi
done
# the kernels that are not the default yet, against the mode they would replace (above 1: faster)
for mode in $MODES; do
    base=${mode%_mma}
    base=${base%_att5}
    if [ "$base" != "$mode" ] && [ -s "$W/$base.ms" ] && [ -s "$W/$mode.ms" ]; then
        awk -v m="$mode" -v b="$base" -v f="$(cat "$W/$base.ms")" -v t="$(cat "$W/$mode.ms")" \
            'BEGIN { printf "%s / %s speed: %.3fx\n", m, b, f / t }'
    fi
done
