#!/bin/bash
# The b1.58 recipe at proxy scale (issue 15): fp against b1.58, and the knobs of the 1-bit recipe
# that the papers disagree on at small scale, all on the same tokens, one OpenMP thread a run.
#
#   bash dev/recipe_study.sh run  MODEL DATA SEED ARM...   # train the arms (STUDY_JOBS at a time)
#   bash dev/recipe_study.sh table OUT_DIR                  # val loss of every finished run, a row each
#
# MODEL: d2, d4, ...; DATA: a folder with *_train.bin and *_val.bin (as prepro_tinyshakespeare.py
# writes them); SEED: the init (-sd; the data order is the same for every seed); ARM: one of the names
# below. Runs go to ${STUDY_OUT:-out/study}/MODEL_DATANAME_SEED_ARM (DATANAME: DATA without data/, / as
# -); a finished run is not run again. STUDY_STEPS (400), STUDY_B (4), STUDY_T (256) set the length,
# STUDY_TRAINER (./train_gpt2_1bit) the binary.
# Results and the commands that made them: dev/recipe_study.md.
set -euo pipefail
cd "$(dirname "$0")/.."

arm_flags() { # the flags of an arm: the mode flags are explicit, the rest is the trainer's default schedule
    case "$1" in                              # (lr 1.5e-3, warmup 30, two stages, wd 0.1 -> 0 at half)
        fp)         echo "-wq fp -aq none -rn 0" ;;      # plain GPT-2, the same schedule
        b158)       echo "-wq ternary -aq int8 -rn 1" ;; # BitNet b1.58 as published: the inner norm everywhere
        rn0)        echo "-wq ternary -aq int8 -rn 0" ;; # no inner norm
        rn2)        echo "-wq ternary -aq int8 -rn 2" ;; # inner norm only before attproj and fcproj
        lr3e-3)     echo "-wq ternary -aq int8 -rn 1 -l 3e-3" ;; # twice the peak lr
        nodrop)     echo "-wq ternary -aq int8 -rn 1 -ld 1" ;;   # one cosine, no second stage
        wdconst)    echo "-wq ternary -aq int8 -rn 1 -cs 1" ;;   # weight decay 0.1 to the end
        rn0_lr3e-3) echo "-wq ternary -aq int8 -rn 0 -l 3e-3" ;;
        rn0_lr6e-4) echo "-wq ternary -aq int8 -rn 0 -l 6e-4" ;; # llm.c's fp lr
        *) echo "error: unknown arm '$1' (fp b158 rn0 rn2 lr3e-3 nodrop wdconst rn0_lr3e-3 rn0_lr6e-4)" >&2; exit 2 ;;
    esac
}

cmd=${1:-}
case "$cmd" in
run)
    [ $# -ge 5 ] || { echo "usage: $0 run MODEL DATA SEED ARM..." >&2; exit 2; }
    model=$2; data=$3; seed=$4; shift 4
    train=$(ls "$data"/*_train.bin | head -1); val=$(ls "$data"/*_val.bin | head -1)
    out=${STUDY_OUT:-out/study}; mkdir -p "$out"
    steps=${STUDY_STEPS:-400}; B=${STUDY_B:-4}; T=${STUDY_T:-256}; jobs=${STUDY_JOBS:-2}
    for arm in "$@"; do
        flags=$(arm_flags "$arm")
        name=${data#data/}; name=${name%/}; name=${name//\//-}
        dir="$out/${model}_${name}_${seed}_${arm}"
        [ -f "$dir/DONE_$(printf %08d "$steps")" ] && { echo "done already: $dir"; continue; }
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 2; done
        echo "$(date +%T) start $dir: $flags"
        # shellcheck disable=SC2086
        (OMP_NUM_THREADS=1 "${STUDY_TRAINER:-./train_gpt2_1bit}" -e "$model" -b "$B" -t "$T" -x "$steps" -v 100 -m 20 -s 0 \
            -sd "$seed" -i "$train" -j "$val" -o "$dir" $flags > "$dir.log" 2>&1 \
            && echo "$(date +%T) done  $dir" || echo "$(date +%T) FAILED $dir (see $dir.log)") &
    done
    wait
    ;;
table)
    out=${2:-${STUDY_OUT:-out/study}}
    printf "%-40s %s\n" "run" "val loss at each val step"
    for log in "$out"/*/main.log; do
        printf "%-40s %s\n" "$(basename "$(dirname "$log")")" \
            "$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^tel:/) printf "%.4f ", substr($i, 5)}' "$log")"
    done
    ;;
*) sed -n 2,12p "$0"; exit 2 ;;
esac
