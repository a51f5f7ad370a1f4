#!/usr/bin/env bash
# tests/test_resume.sh: checkpoints and resuming (-n, -y) of the CPU trainer.
#
# For each weight mode (fp, ternary, binary, ternary with -bq int8, ternary with gradient
# accumulation, -d, and ternary -bq int8 with -mp bf16): run A trains 8 steps in one go,
# writing checkpoints at steps 4 and 8. Run B trains the same 8 steps, then
# loses everything of step 8 (as if killed between the two checkpoints, with
# half-written leftovers) and resumes with -y 1. The resumed run must continue
# bit for bit: the same printed steps 5..8, the same main.log lines, and
# model_00000008.bin and state_00000008.bin identical to A's (cmp), and main.log
# equal to A's: cut at step 4, each step once (with trit reports too: the flip
# statistic is restored, or, where the checkpoint cannot restore it, says nan).
# Also checked: the checkpoint headers, that no .tmp file is left behind, that
# samples and val loss continue identically across a resume, that a checkpoint
# reloads with -e in its own mode, and that the loss falls on the tiny shard.
#
# Prints "PASS: <name>" or "FAIL: <name>: <details>" per check; exits 1 if any failed.
# Self-contained: tiny shards from tests/make_tiny_data.py, the model
# tests/ref/model.bin (V=250, Vp=256, maxT=32, L=2, NH=4, C=64), all in a temp dir.
# Usage: bash tests/test_resume.sh   (from anywhere; needs ./train_gpt2_1bit built)
set -u
cd "$(dirname "$0")/.." || exit 1
TEST_NAME=test_resume.sh
. tests/lib.sh  # PYTHON BIN MODEL W TRAIN VAL TIMEOUT, pass/fail/finish

# 8 steps, checkpoints at 4 and 8; a real learning rate so the AdamW moments
# matter, warmup 2 so steps 5..8 sit on the decaying part of the schedule
COMMON=(-e "$MODEL" -i "$W/data/train.bin" -j "$W/data/val.bin" -tf /nonexistent -b 4 -t 16
        -x 8 -n 4 -v 0 -s 0 -l 1e-2 -u 2)

# train NAME OUTFILE ARGS...: run the trainer, stdout to OUTFILE; fails the check NAME on a non-zero exit
train() {
    local name=$1 outfile=$2
    shift 2
    $TIMEOUT "$BIN" "$@" >"$outfile" 2>"$outfile.err"
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "$name" "exit status $rc: $(grep -m1 '^error:' "$outfile.err")"
        return 1
    fi
    return 0
}

# the per-step lines without the timing: "step N/M | loss X | lr Y | norm Z"
step_lines() { grep -E '^step +[0-9]+/[0-9]+ \| loss' "$1" | cut -d'|' -f1-4 | sed 's/ *$//'; }

# read_i32 FILE INDEX...: the int32s at those header indices, space separated
read_i32() {
    "$PYTHON" - "$@" <<'EOF'
import struct, sys
data = open(sys.argv[1], "rb").read(1024)
h = struct.unpack("<256i", data)
print(" ".join(str(h[int(i)]) for i in sys.argv[2:]))
EOF
}

fsize() { wc -c <"$1" | tr -d ' '; }

# leftover files of an interrupted write (and of the -o writability probe)
leftovers() { find "$1" -maxdepth 1 \( -name '*.tmp' -o -name '.write_probe' \) -printf '%f '; }

NPARAMS=$(( ($(fsize "$MODEL") - 1024) / 4 ))

# ----------------------------------------------------------------------------
# exact resume, one weight mode at a time
# resume_case MODE FLAGS QUANT_FIELDS LEFTOVER [BQ]: the mode's flags, the header
# fields [18..20] it must write, how run B's step 8 is lost, and the backward of dX (-bq) it
# must record: absent or 0 (float: quant fields version 1, slot 23 empty), 1 (int8: version 2, [23] = 1)

resume_case() {
    local mode=$1 flags=$2 want_quant=$3 leftover=$4 bq=${5:-0}
    local A=$W/$mode/A B=$W/$mode/B
    mkdir -p "$W/$mode"
    # shellcheck disable=SC2086
    train "$mode: run A (8 steps)" "$W/$mode/a.txt" "${COMMON[@]}" $flags -o "$A" || return
    # shellcheck disable=SC2086
    train "$mode: run B (8 steps)" "$W/$mode/b1.txt" "${COMMON[@]}" $flags -o "$B" || return

    # the files of a normal run
    local missing=""
    for f in DONE_00000004 DONE_00000008 model_00000004.bin model_00000008.bin state_00000004.bin \
             state_00000008.bin main.log; do
        [ -f "$A/$f" ] || missing="$missing $f"
    done
    if [ -z "$missing" ]; then pass "$mode: checkpoints at steps 4 and 8 with DONE markers"
    else fail "$mode: checkpoints at steps 4 and 8 with DONE markers" "missing:$missing"; fi
    local tmps
    tmps=$(leftovers "$A")
    if [ -z "$tmps" ]; then pass "$mode: no .tmp files left after a normal run"
    else fail "$mode: no .tmp files left after a normal run" "left: $tmps"; fi

    # model header: llm.c's fields, then ours in slots 16..20, the checksum's marker in 21, -bq in 23
    local want="20240326 3 32 250 2 4 64 256 20261123 $((1 + bq)) $want_quant 20261128 $bq"
    local got
    got=$(read_i32 "$A/model_00000008.bin" 0 1 2 3 4 5 6 7 16 17 18 19 20 21 23)
    if [ "$got" = "$want" ] && [ "$(fsize "$A/model_00000008.bin")" = "$(fsize "$MODEL")" ]; then
        pass "$mode: model file header (magic, version, config, quant fields $want_quant, checksum, -bq $bq) and size"
    else
        fail "$mode: model file header (magic, version, config, quant fields $want_quant, checksum, -bq $bq) and size" \
            "header [0..7,16..21,23] = '$got', want '$want'; size $(fsize "$A/model_00000008.bin")"
    fi
    # state header: magic, version, num_parameters, step, B, T, tokens per step (-d; B*T = 64 without
    # it), the checksum's marker; then m and v
    local total=64
    if [[ $flags =~ -d\ ([0-9]+) ]]; then total=${BASH_REMATCH[1]}; fi
    want="20261125 1 $NPARAMS 8 4 16 $total 20261128"
    got=$(read_i32 "$A/state_00000008.bin" 0 1 2 3 4 5 10 11)
    if [ "$got" = "$want" ] && [ "$(fsize "$A/state_00000008.bin")" = "$((1024 + 8 * NPARAMS))" ]; then
        pass "$mode: state file header (magic, version, params, step, B, T, tokens per step, checksum) and size"
    else
        fail "$mode: state file header (magic, version, params, step, B, T, tokens per step, checksum) and size" \
            "header [0..5,10,11] = '$got', want '$want'; size $(fsize "$A/state_00000008.bin")"
    fi

    # run B loses step 8 the way a killed run would, then resumes
    rm -f "$B/DONE_00000008" "$B/state_00000008.bin"
    case $leftover in
        clean) rm -f "$B/model_00000008.bin" ;;
        # killed while writing the state: the model file is complete, the marker missing
        no_done) printf 'half a state file' >"$B/state_00000008.bin.tmp" ;;
        # killed while writing the model: a half-written .tmp
        dangling_tmp)
            rm -f "$B/model_00000008.bin"
            head -c 5000 "$A/model_00000008.bin" >"$B/model_00000008.bin.tmp" ;;
    esac
    # shellcheck disable=SC2086
    train "$mode: resumed run B" "$W/$mode/b2.txt" "${COMMON[@]}" $flags -y 1 -o "$B" || return

    if grep -q "resuming from $B/model_00000004.bin" "$W/$mode/b2.txt"; then
        pass "$mode: resume picks step 4, the newest complete checkpoint ($leftover)"
    else
        fail "$mode: resume picks step 4, the newest complete checkpoint ($leftover)" \
            "$(grep -m1 resuming "$W/$mode/b2.txt")"
    fi
    local a_steps b_steps
    a_steps=$(step_lines "$W/$mode/a.txt" | tail -n 4)
    b_steps=$(step_lines "$W/$mode/b2.txt")
    if [ -n "$b_steps" ] && [ "$a_steps" = "$b_steps" ]; then
        pass "$mode: resumed run prints steps 5..8 (loss, lr, norm) exactly as the uninterrupted run"
    else
        fail "$mode: resumed run prints steps 5..8 (loss, lr, norm) exactly as the uninterrupted run" \
            "diff: $(diff <(echo "$a_steps") <(echo "$b_steps") | tr '\n' ' ')"
    fi
    if cmp -s "$A/model_00000008.bin" "$B/model_00000008.bin"; then
        pass "$mode: resumed model_00000008.bin is byte-identical to the uninterrupted run's"
    else
        fail "$mode: resumed model_00000008.bin is byte-identical to the uninterrupted run's" \
            "$(cmp "$A/model_00000008.bin" "$B/model_00000008.bin" 2>&1)"
    fi
    if cmp -s "$A/state_00000008.bin" "$B/state_00000008.bin"; then
        pass "$mode: resumed state_00000008.bin (AdamW moments, RNG, data position) is byte-identical"
    else
        fail "$mode: resumed state_00000008.bin (AdamW moments, RNG, data position) is byte-identical" \
            "$(cmp "$A/state_00000008.bin" "$B/state_00000008.bin" 2>&1)"
    fi
    # main.log: cut at step 4 (the killed run's steps 5..8 go), the resumed steps 5..8 appended:
    # equal to the uninterrupted run's, each step once
    if cmp -s "$A/main.log" "$B/main.log"; then
        pass "$mode: main.log after the resume equals the uninterrupted run's (steps 5..8 once)"
    else
        fail "$mode: main.log after the resume equals the uninterrupted run's (steps 5..8 once)" \
            "$(wc -l <"$A/main.log") lines vs $(wc -l <"$B/main.log"); diff: $(diff "$A/main.log" "$B/main.log" | head -n 6 | tr '\n' ' ')"
    fi
    tmps=$(leftovers "$B")
    if [ -z "$tmps" ]; then pass "$mode: no .tmp files left after the resumed run"
    else fail "$mode: no .tmp files left after the resumed run" "left: $tmps"; fi
}

resume_case fp "-wq fp -aq none -rn 0" "0 0 0" clean
resume_case ternary "" "1 1 0" no_done      # the default: no inner norm
resume_case binary "-wq binary -rn 1" "2 1 1" dangling_tmp
# the int8 backward of dX (-bq int8): recorded in the checkpoint (quant fields version 2, slot 23)
resume_case ternary_bq8 "-bq int8 -rn 1" "1 1 1" no_done 1
# gradient accumulation: 128 tokens a step in 2 micro-batches of 4 x 16 (state header slot 10)
resume_case ternary_d128 "-d 128" "1 1 0" clean
# the float matmuls with bf16 operands (-mp bf16: a run-time choice, not in the checkpoint; the
# same -mp resumes bit for bit)
resume_case ternary_bq8_mp_bf16 "-bq int8 -mp bf16" "1 1 0" no_done 1

# resuming with another -d than the run was saved with is an error that names the one to pass
D=$W/ternary_d128/B
$TIMEOUT "$BIN" "${COMMON[@]}" -x 12 -y 1 -o "$D" >"$W/d64.txt" 2>"$W/d64.err"
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && grep -q "^error: .*saved with 128 tokens per step (-d)" "$W/d64.err" &&
   grep -q "HINT: pass -d 128" "$W/d64.err"; then
    pass "resuming a -d 128 run without -d (64 tokens a step) is an error that says to pass -d 128"
else
    fail "resuming a -d 128 run without -d (64 tokens a step) is an error that says to pass -d 128" \
        "exit $rc: $(head -n 2 "$W/d64.err" | tr '\n' ' ')"
fi

# ----------------------------------------------------------------------------
# gradient accumulation is one batch of the same tokens: -b 2 -d 128 (4 micro-batches) and -b 4
# -d 128 (2) train as -b 8 (the loader reads the micro-batches one after another from the same
# stream, so each step sees the same 128 tokens). Equal up to float rounding (the sums over rows
# run in another order; tests/test_units.c measures it at ~3e-7 of the gradients): the printed
# losses and norms agree to one unit of their last printed digit (compared at 1.5 units, so that
# a difference of exactly one unit is not failed by its own rounding). fp mode, where no trit can
# flip at a tie to make the runs part.

ACC=(-e "$MODEL" -i "$W/data/train.bin" -j "$W/data/val.bin" -tf /nonexistent -t 16 -x 4 -v 0 -s 0 -l 1e-2 -u 2
     -wq fp -aq none -rn 0 -o "")
if train "accumulation: -b 8" "$W/acc_b8.txt" "${ACC[@]}" -b 8; then
    for b in 4 2; do
        name="accumulation: -b $b -d 128 ($((8 / b)) micro-batches) trains as -b 8 (4 steps: loss, norm)"
        train "$name" "$W/acc_b$b.txt" "${ACC[@]}" -b "$b" -d 128 || continue
        # each step line's loss and norm, both runs side by side: "loss_a loss_b norm_a norm_b"
        if paste -d'|' <(step_lines "$W/acc_b8.txt") <(step_lines "$W/acc_b$b.txt") |
           awk -F'|' '{ la = $2; lb = $6; na = $4; nb = $8
                        gsub(/[^0-9.]/, "", la); gsub(/[^0-9.]/, "", lb); gsub(/[^0-9.]/, "", na); gsub(/[^0-9.]/, "", nb)
                        d1 = la - lb; d2 = na - nb; n++
                        if (d1 > 1.5e-4 || d1 < -1.5e-4 || d2 > 1.5e-3 || d2 < -1.5e-3) bad = 1 }
                      END { exit !(n == 4 && !bad) }'; then
            pass "$name"
        else
            fail "$name" "diff: $(diff <(step_lines "$W/acc_b8.txt") <(step_lines "$W/acc_b$b.txt") | tr '\n' ' ')"
        fi
    done
fi

# ----------------------------------------------------------------------------
# main.log with trit reports across a resume (default b1.58 mode, val and trits every -v steps).
# -v 4: the report at step 4 was logged before checkpoint 4 was written, so the cut keeps it and
# the resumed run measures step 8's flip against step 4's trits: main.log equals run A's.
# -v 3: reports at 0, 3, 6, 8. The resumed run's first report (6) would compare with step 3's
# trits, which checkpoint 4 does not hold: its flip is unknown and must say so (nan, not -1, not a
# number); every other line equals run A's.

trit_case() {
    local v=$1 T=$W/trits_v$1
    mkdir -p "$T"
    train "trits -v $v: run A" "$T/a.txt" "${COMMON[@]}" -v "$v" -m 2 -o "$T/A" || return
    train "trits -v $v: run B" "$T/b1.txt" "${COMMON[@]}" -v "$v" -m 2 -o "$T/B" || return
    rm -f "$T/B/DONE_00000008" "$T/B/state_00000008.bin" "$T/B/model_00000008.bin"
    train "trits -v $v: resumed run B" "$T/b2.txt" "${COMMON[@]}" -v "$v" -m 2 -y 1 -o "$T/B" || return
    if [ "$v" -eq 4 ]; then
        if cmp -s "$T/A/main.log" "$T/B/main.log"; then
            pass "trits -v 4: main.log after a resume at a report step equals the uninterrupted run's (flips restored)"
        else
            fail "trits -v 4: main.log after a resume at a report step equals the uninterrupted run's (flips restored)" \
                "diff: $(diff "$T/A/main.log" "$T/B/main.log" | head -n 6 | tr '\n' ' ')"
        fi
        return
    fi
    # run A's log with step 6's flips replaced by nan must be run B's
    local want
    want=$(sed -E 's/^(s:6 trit:[^ ]+ zero:[^ ]+) flip:[^ ]+/\1 flip:nan/' "$T/A/main.log")
    if [ "$want" = "$(cat "$T/B/main.log")" ] && grep -q '^s:6 trit:.* flip:nan' "$T/B/main.log" &&
       grep -q '^s:6 trit:.* flip:0\.' "$T/A/main.log"; then
        pass "trits -v 3: the first report after a resume logs its flip as unknown (nan), the rest as the uninterrupted run"
    else
        fail "trits -v 3: the first report after a resume logs its flip as unknown (nan), the rest as the uninterrupted run" \
            "diff: $(diff <(echo "$want") "$T/B/main.log" | head -n 6 | tr '\n' ' ')"
    fi
}
trit_case 4
trit_case 3

# ----------------------------------------------------------------------------
# samples and val loss continue identically across a resume: the sampler's RNG
# state is part of the checkpoint

S=$W/sample
mkdir -p "$S"
SAMPLE_FLAGS=(-s 4 -g 16 -st 1 -tk 0 -v 4 -m 4)
# the last "generating:" block of a run's output: the sample at step 8
last_sample() {
    awk '/^generating:/ { s = ""; on = 1; n = 0; next }
         on && /^---$/ { if (++n == 2) on = 0; next }
         on { s = s $0 } END { print s }' "$1"
}
if train "sampling: run A" "$S/a.txt" "${COMMON[@]}" "${SAMPLE_FLAGS[@]}" -o "$S/A" &&
   train "sampling: run B" "$S/b1.txt" "${COMMON[@]}" "${SAMPLE_FLAGS[@]}" -o "$S/B"; then
    rm -f "$S/B/DONE_00000008" "$S/B/state_00000008.bin" "$S/B/model_00000008.bin"
    if train "sampling: resumed run B" "$S/b2.txt" "${COMMON[@]}" "${SAMPLE_FLAGS[@]}" -y 1 -o "$S/B"; then
        sa=$(last_sample "$S/a.txt")
        sb=$(last_sample "$S/b2.txt")
        if [ -n "$sa" ] && [ "$sa" = "$sb" ]; then
            pass "sampling: the step-8 sample after a resume equals the uninterrupted run's"
        else
            fail "sampling: the step-8 sample after a resume equals the uninterrupted run's" \
                "uninterrupted '$sa', resumed '$sb' (does the resumed run draw the RNG again for a sample at its first step?)"
        fi
        va=$(grep -E '^step +8 \| val loss' "$S/a.txt")
        vb=$(grep -E '^step +8 \| val loss' "$S/b2.txt")
        if [ -n "$va" ] && [ "$va" = "$vb" ]; then
            pass "sampling: the step-8 val loss after a resume equals the uninterrupted run's"
        else
            fail "sampling: the step-8 val loss after a resume equals the uninterrupted run's" "'$va' vs '$vb'"
        fi
    fi
    # a checkpoint reloads as -e in its own mode (no mode flags) and gives the val loss it had
    if train "a checkpoint reloads with -e" "$S/c.txt" -e "$S/A/model_00000008.bin" -i "$W/data/train.bin" \
            -j "$W/data/val.bin" -tf /nonexistent -b 4 -t 16 -x 0 -v 1 -m 4 -s 0 -o ""; then
        va=$(grep -E '^step +8 \| val loss' "$S/a.txt" | cut -d'|' -f2-)
        vc=$(grep -E '^step +0 \| val loss' "$S/c.txt" | cut -d'|' -f2-)
        if grep -q 'mode: weights ternary, activations int8, inner RMSNorm off' "$S/c.txt" &&
           [ -n "$va" ] && [ "$va" = "$vc" ]; then
            pass "a checkpoint reloads with -e in its own mode with the same val loss"
        else
            fail "a checkpoint reloads with -e in its own mode with the same val loss" \
                "'$vc' after reloading, '$va' at save time; $(grep -m1 '^mode:' "$S/c.txt")"
        fi
    fi
fi

# ----------------------------------------------------------------------------
# the loss falls: 4 steps of the default b1.58 mode overfitting the tiny shard

if train "loss falls from step 1 to step 4 (default modes, -l 1e-2)" "$W/fall.txt" \
        -e "$MODEL" -i "$W/data/train.bin" -j "$W/data/val.bin" -tf /nonexistent -b 4 -t 16 -x 4 -v 0 -s 0 \
        -l 1e-2 -u 0 -o ""; then
    losses=$(step_lines "$W/fall.txt" | awk -F'|' '{ gsub(/[^0-9.]/, "", $2); printf "%s ", $2 }')
    # 0.1 nats: well above float noise, well below the ~0.6 these 4 steps gain
    if awk -v l="$losses" 'BEGIN { n = split(l, a, " "); exit !(n == 4 && a[4] < a[1] - 0.1) }'; then
        pass "loss falls from step 1 to step 4 (default modes, -l 1e-2): $losses"
    else
        fail "loss falls from step 1 to step 4 (default modes, -l 1e-2)" "losses: $losses"
    fi
fi

finish
