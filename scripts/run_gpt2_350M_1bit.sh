#!/usr/bin/env bash
# scripts/run_gpt2_350M_1bit.sh: GPT-2 350M (d24) in ternary (BitNet b1.58's BitLinear, without its inner norm: -rn 0, the default
# that dev/recipe_study.md measured; append -rn 1 for b1.58 as published) on 31.5B tokens of FineWeb: llm.c's
# 350M recipe (scripts/run_gpt2_350M.sh there) with the 1-bit schedule of shared/BITNET.md.
# Its fp twin is scripts/run_gpt2_350M_fp.sh; compare the two with
#   python3 dev/plot_loss.py out/gpt2_350M_fp/main.log out/gpt2_350M_1bit/main.log --labels fp,b1.58 -o cmp.png
#
# Recipe: 60,000 steps x 524,288 tokens (-d: -b 32 x -t 1024 x 16 micro-steps) = 31.5B tokens of
# FineWeb's 100B sample, AdamW (0.9, 0.95), grad clip 1, warmup 700 steps. 1-bit: peak lr 1.5e-3
# (BitNet b1.58's at 700M; fp uses 3e-4 here), cosine to 0 in two stages: at half the run (-ls 0.5)
# the rate drops to 2/3 of its curve (-ld), and weight decay 0.1 stops there (-cs 0.5). The lr is not
# tuned at this size yet: pass -l to change it. Val loss every 250 steps (20 batches), HellaSwag with
# it (-h 1: see below), a checkpoint every 2,000 steps, a sample at the end.
#
# Needs:
#   GPU memory  about 30 GiB at -b 32, about 53 GiB at -b 64 (an estimate, not measured at d24:
#               the measured 24.84 GiB at d12 -b 64, its activations scaled by L x C x B and its
#               parameter state by the parameter count): an 80 GB GPU takes -b 64 (an extra flag)
#   time        about 61 h (2.5 days) on an H200: an estimate, not a measurement: the 405,294 tok/s
#               measured at d12 in b1.58 (H200, 2026-11-28) over d24's 2.83x the FLOPs per token
#               = ~143,200 tok/s. Plus the evals. H100: not measured
#   disk        64 GB of shards (the first 321 of the 100B sample's: 32.1B tokens), 4.2 GB a
#               checkpoint (the newest KEEP_CHECKPOINTS = 3 are kept)
#   data        python3 dev/data/fineweb.py -v 100B --max-shards 321   (-> data/fineweb100B/)
#               python3 dev/data/hellaswag.py        (-> data/hellaswag/hellaswag_val.bin)
#   build       make train_gpt2_1bitcu
# Run:
#   bash scripts/run_gpt2_350M_1bit.sh             # restarts itself from the newest checkpoint (-y 1)
#   DRY_RUN=1 bash scripts/run_gpt2_350M_1bit.sh   # prints the command, runs nothing
#   bash scripts/run_gpt2_350M_1bit.sh -l 1.2e-3   # extra flags go last, so they win
# Environment: OUT (default out/gpt2_350M_1bit), DATA (default data/fineweb100B), TRAINER (default
# ./train_gpt2_1bitcu), KEEP_CHECKPOINTS (default 3; 0 keeps all), MAX_RESTARTS (default 20),
# RESTART_DELAY (seconds, default 10).
#
# HellaSwag (-h 1) is passed once llmc/args.h has the flag (the trainers' wiring of llmc/hellaswag.h,
# issue 15); until then the run goes without it and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=gpt2_350M_1bit
STEPS=60000; TOTAL_BATCH=524288; TOK_PER_S=143200; GPU_GIB=30   # tok/s: estimated (d12 measured / 2.83); GiB: estimated
OUT=${OUT:-out/$NAME}
DATA=${DATA:-data/fineweb100B}
TRAINER=${TRAINER:-./train_gpt2_1bitcu}
KEEP_CHECKPOINTS=${KEEP_CHECKPOINTS:-3}
MAX_RESTARTS=${MAX_RESTARTS:-20}
RESTART_DELAY=${RESTART_DELAY:-10}
HELLASWAG_FILE=${HELLASWAG_FILE:-data/hellaswag/hellaswag_val.bin} # where -h 1 reads it (llm.c: a fixed path)

args=(-e d24 -wq ternary -aq int8 -rn 0
      -i "$DATA/fineweb_train_*.bin" -j "$DATA/fineweb_val_*.bin" -o "$OUT"
      -b 32 -t 1024 -d "$TOTAL_BATCH" -x "$STEPS"
      -l 1.5e-3 -u 700 -q 0.0 -ls 0.5 -ld 0.6667 -c 0.1 -cs 0.5 -gc 1.0
      -v 250 -m 20 -s 100000 -g 144 -n 2000)
hellaswag=0
if grep -q 'ARG("-h"' llmc/args.h; then
    hellaswag=1
    args+=(-h 1)
else
    echo "note: the trainers do not have -h (HellaSwag) yet: running without it" >&2
fi

newest_checkpoint() { # the step of the newest complete checkpoint in $OUT, or nothing
    local marks=("$OUT"/DONE_*) # in order: the steps are zero-padded
    local last=${marks[${#marks[@]} - 1]}
    if [ -e "$last" ]; then echo $((10#${last##*DONE_})); fi
}
command_line() { # the trainer's arguments for a (re)start: -y 1 once there is a checkpoint
    local resume=()
    if [ -n "$(newest_checkpoint)" ]; then resume=(-y 1); fi
    local line
    # ${resume[@]+...}: an empty array trips set -u in bash < 4.4
    line=$(printf '%q ' "$TRAINER" "${args[@]}" ${resume[@]+"${resume[@]}"} "$@")
    echo "${line% }"
}
hours=$(awk -v s="$STEPS" -v d="$TOTAL_BATCH" -v r="$TOK_PER_S" 'BEGIN { printf "%.1f", s * d / r / 3600 }')
tokens=$(awk -v s="$STEPS" -v d="$TOTAL_BATCH" 'BEGIN { printf "%.2f", s * d / 1e9 }')
echo "$NAME: $STEPS steps x $TOTAL_BATCH tokens = ${tokens}B tokens, ~$hours h on an H200 ($TOK_PER_S tok/s)," \
     "${GPU_GIB} GiB of GPU memory" >&2

if [ "${DRY_RUN:-0}" = 1 ]; then
    command_line "$@"
    exit 0
fi

# what the run needs, checked before it starts rather than hours in
fail() { echo "error: $1" >&2; echo "---> HINT: $2" >&2; exit 1; }
[ -x "$TRAINER" ] || fail "no trainer at $TRAINER" "make train_gpt2_1bitcu (or set TRAINER=)"
ls "$DATA"/fineweb_train_*.bin >/dev/null 2>&1 || fail "no shards in $DATA" "python3 dev/data/fineweb.py"
[ "$hellaswag" = 0 ] || [ -f "$HELLASWAG_FILE" ] || fail "no $HELLASWAG_FILE" "python3 dev/data/hellaswag.py"
mkdir -p "$OUT"

prune() { # keep the newest KEEP_CHECKPOINTS complete checkpoints; DONE_ goes first, so none is half there
    [ "$KEEP_CHECKPOINTS" -gt 0 ] || return 0
    local marks=("$OUT"/DONE_*) i
    [ -e "${marks[0]}" ] || return 0
    for ((i = 0; i < ${#marks[@]} - KEEP_CHECKPOINTS; i++)); do
        local step=${marks[i]##*DONE_}
        rm -f "${marks[i]}" && rm -f "$OUT/model_$step.bin" "$OUT/state_$step.bin"
    done
}
(while sleep 600; do prune; done) &
pruner=$!
trap 'kill "$pruner" 2>/dev/null || true' EXIT

# llm.c's loop: a crashed or killed run restarts from its newest checkpoint, until the last step's is there
done_file=$(printf '%s/DONE_%08d' "$OUT" "$STEPS")
restarts=0
while [ ! -f "$done_file" ]; do
    before=$(newest_checkpoint)
    cmd=$(command_line "$@")
    echo "$cmd" | tee -a "$OUT/commands.txt"
    eval "$cmd" || echo "the trainer exited with status $?" >&2
    prune
    [ -f "$done_file" ] && break
    restarts=$((restarts + 1))
    if [ "$(newest_checkpoint)" = "$before" ] && [ "$restarts" -gt 1 ]; then
        fail "no new checkpoint since the last restart: not restarting again" "see the trainer's error above"
    fi
    [ "$restarts" -le "$MAX_RESTARTS" ] || fail "$MAX_RESTARTS restarts" "see the trainer's errors above"
    echo "restarting from the newest checkpoint ($restarts)" >&2
    sleep "$RESTART_DELAY"
done
echo "done: $done_file"
