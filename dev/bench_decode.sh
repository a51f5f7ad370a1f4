#!/usr/bin/env bash
# dev/bench_decode.sh: decode speed of run_gpt2_1bit on packed files of one checkpoint, and, given a
# llama.cpp build, llama.cpp's on GGUF files of the same checkpoint, side by side on this machine.
#
# Usage: bash dev/bench_decode.sh CKPT [LLAMA_BIN_DIR]
#   CKPT           a training checkpoint (model_*.bin; for llama.cpp a -rn 0 model: llmc/gguf.h refuses
#                  models with the inner RMSNorm, which llama.cpp's gpt2 graph does not have)
#   LLAMA_BIN_DIR  a directory with llama.cpp's llama-bench (built by hand: cmake -B build
#                  -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON && cmake --build build --target
#                  llama-bench); without it only our numbers are printed
# Environment: ROUNDS (default 3) alternating rounds, THREADS (default 2), TOKENS (default 128),
#              OUT (default a temp dir) where the packed and GGUF files go (kept if given).
# What runs, per round, in turn:
#   ours  2-bit   -ff 16, top-k 40 (screened head: the same samples)    ./run_gpt2_1bit -bench 2
#   ours  2-bit   -ff 16, -tk 0 (the full head: every logit, as llama-bench computes)
#   ours  1.6-bit -ff 16, top-k 40 and -tk 0
#   llama.cpp TQ2_0 and TQ1_0, token embeddings (= the tied head) in F16: llama-bench -n TOKENS -p 0
# Each: TOKENS tokens from an empty context (positions 0..TOKENS-1), THREADS threads, the time of the
# forward passes only (llama-bench's tg; our -bench). Prints the median of the rounds and the ratios.
# The GGUF files come from run_gpt2_1bit -x FILE.gguf when it writes GGUF, else from tests/test_gguf.c.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${1:?usage: bash dev/bench_decode.sh CKPT [LLAMA_BIN_DIR]}
LLAMA=${2:-}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
TOKENS=${TOKENS:-128}
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; else OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT; fi
make -s run_gpt2_1bit
export OMP_NUM_THREADS=$THREADS OMP_WAIT_POLICY=active # an idle OpenMP thread can take ms to wake on a VM

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for pf in 2 3; do
    [ -f "$OUT/pf$pf.packed" ] || ./run_gpt2_1bit -e "$CKPT" -x "$OUT/pf$pf.packed" -pf $pf -ff 16 >/dev/null
done
have_llama=0
if [ -n "$LLAMA" ]; then
    [ -x "$LLAMA/llama-bench" ] || { echo "error: $LLAMA/llama-bench not found ---> HINT: pass the directory of llama.cpp's binaries (build/bin)"; exit 1; }
    for pf in 2 3; do
        [ -f "$OUT/pf$pf.gguf" ] && continue
        if ./run_gpt2_1bit -e "$CKPT" -x "$OUT/pf$pf.gguf" -pf $pf -ff 16 >/dev/null 2>&1 && [ -s "$OUT/pf$pf.gguf" ] &&
           [ "$(head -c 4 "$OUT/pf$pf.gguf")" = "GGUF" ]; then continue; fi
        [ -f tests/test_gguf.c ] || { echo "error: no GGUF export here (run_gpt2_1bit -x *.gguf, tests/test_gguf.c)"; exit 1; }
        [ -x "$OUT/test_gguf" ] || cc -O3 -march=native -fopenmp -fno-trapping-math -fno-math-errno -std=gnu11 \
            tests/test_gguf.c -lm -o "$OUT/test_gguf"
        "$OUT/test_gguf" export "$CKPT" "$OUT/pf$pf.gguf" -pf $pf -ff 16 >/dev/null
    done
    have_llama=1
fi

# tok/s of one run
ours() { # FILE TOPK
    ./run_gpt2_1bit -e "$1" -g "$TOKENS" -tk "$2" -bench 2 2>/dev/null | sed -n 's/.*int8 x packed trits *\([0-9.]*\) tok\/s.*/\1/p'
}
theirs() { # FILE
    "$LLAMA/llama-bench" -m "$1" -t "$THREADS" -n "$TOKENS" -p 0 -r 3 -o csv 2>/dev/null |
        python3 -c 'import csv,sys; r=list(csv.DictReader(sys.stdin)); print("%.1f" % float(r[-1]["avg_ts"]))'
}
declare -A T
names=("ours 2-bit top-k 40" "ours 2-bit -tk 0" "ours 1.6-bit top-k 40" "ours 1.6-bit -tk 0")
[ $have_llama = 1 ] && names+=("llama.cpp TQ2_0" "llama.cpp TQ1_0")
for ((round = 1; round <= ROUNDS; round++)); do
    T["ours 2-bit top-k 40"]+="$(ours "$OUT/pf2.packed" 40) "
    [ $have_llama = 1 ] && T["llama.cpp TQ2_0"]+="$(theirs "$OUT/pf2.gguf") "
    T["ours 2-bit -tk 0"]+="$(ours "$OUT/pf2.packed" 0) "
    T["ours 1.6-bit top-k 40"]+="$(ours "$OUT/pf3.packed" 40) "
    [ $have_llama = 1 ] && T["llama.cpp TQ1_0"]+="$(theirs "$OUT/pf3.gguf") "
    T["ours 1.6-bit -tk 0"]+="$(ours "$OUT/pf3.packed" 0) "
    echo "round $round done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done
med() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
echo "decode, $TOKENS tokens from an empty context, $THREADS threads, median of $ROUNDS rounds (tok/s; each round's in brackets)"
declare -A M
for n in "${names[@]}"; do
    M[$n]=$(med "${T[$n]}")
    printf "  %-24s %8.1f   [%s]\n" "$n" "${M[$n]}" "${T[$n]% }"
done
if [ $have_llama = 1 ]; then
    echo "ratios (ours / llama.cpp):"
    for pf in "2-bit:TQ2_0" "1.6-bit:TQ1_0"; do
        o=${pf%%:*}; l=${pf##*:}
        awk -v a="${M["ours $o top-k 40"]}" -v b="${M["ours $o -tk 0"]}" -v c="${M["llama.cpp $l"]}" -v o="$o" -v l="$l" \
            'BEGIN { printf "  %s vs %s: %.2fx (top-k 40), %.2fx (-tk 0, every logit)\n", o, l, a / c, b / c }'
    done
fi
