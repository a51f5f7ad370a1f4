#!/usr/bin/env bash
# tests/test_run_scripts.sh: the GPT-2 recipes in scripts/ (124M and 350M, b1.58 and fp), without a GPU.
#   - DRY_RUN=1 prints one command: every flag it passes is in llmc/args.h's flag table (parsed here),
#     once, with a value of the flag's type
#   - the numbers: tokens = steps x tokens a step (124M: ~10B, 350M: llm.c's 60,000 steps, 31.5B),
#     -d a multiple of -b x -t, T 1024, warmup 700, weight decay 0.1; the hours and GiB the script
#     prints are the ones its header comment gives
#   - the mode: 1-bit = ternary, int8, no inner norm (the default, dev/recipe_study.md), two-stage lr (-ld < 1), weight decay stopping
#     (-cs < 1); fp = plain, one cosine, decay throughout; each pair differs in nothing else
#   - HellaSwag: -h 1 exactly when the flag table has -h; -y 1 exactly when OUT holds a checkpoint;
#     extra arguments go last
#   - the run loop with a stand-in trainer that crashes after every few checkpoints: it restarts with
#     -y 1 until the last step, keeps the newest 3 checkpoints; a trainer that makes no progress stops
#     it; a missing trainer, shards or HellaSwag file are errors that name the fix
# Usage: bash tests/test_run_scripts.sh
cd "$(dirname "$0")/.." || exit 1
TEST_NAME=test_run_scripts
npass=0
nfail=0
pass() { echo "PASS: $1"; npass=$((npass + 1)); }
fail() { echo "FAIL: $1: $2"; nfail=$((nfail + 1)); }
check() { if eval "$2"; then pass "$1"; else fail "$1" "${3:-$2}"; fi; }
W=$(mktemp -d "${TMPDIR:-/tmp}/$TEST_NAME.XXXXXX") || exit 1
trap 'rm -rf "$W"' EXIT

# the flag table: ARG("-x", ARG_INT, ...) -> type[-x]=INT
declare -A type
while read -r flag t; do type[$flag]=$t; done < <(grep -oE 'ARG\("-[a-z]+", ARG_(INT|FLOAT|STR)' llmc/args.h |
                                                 sed -E 's/ARG\("(-[a-z]+)", ARG_([A-Z]+)/\1 \2/')
if [ "${#type[@]}" -ge 20 ]; then pass "llmc/args.h's flag table parses (${#type[@]} flags)"
else fail "llmc/args.h's flag table parses" "${#type[@]} flags found"; fi
has_h=0
[ -n "${type[-h]:-}" ] && has_h=1

# run a script in DRY_RUN mode; sets cmd (the words), flags (flag -> value), err (its stderr)
declare -A flags
cmd=()
dry() {
    local script=$1; shift
    local out
    out=$(DRY_RUN=1 OUT="$W/out" bash "$script" "$@" 2>"$W/err")
    dry_rc=$?
    err=$(cat "$W/err")
    dry_lines=$(printf '%s\n' "$out" | grep -c .)
    eval "cmd=($out)"
    flags=()
    dry_bad=""
    local i
    for ((i = 1; i < ${#cmd[@]}; i += 2)); do
        local f=${cmd[i]} v=${cmd[i + 1]-}
        if [ -z "${type[$f]:-}" ]; then dry_bad+=" $f: not in the table;"
        elif [ $((i + 1)) -ge ${#cmd[@]} ]; then dry_bad+=" $f: no value;"
        elif [ -n "${flags[$f]+x}" ] && [ $# -eq 0 ]; then dry_bad+=" $f: twice;"
        elif [ "${type[$f]}" = INT ] && ! [[ $v =~ ^-?[0-9]+$ ]]; then dry_bad+=" $f $v: not an integer;"
        elif [ "${type[$f]}" = FLOAT ] && ! [[ $v =~ ^-?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]]; then
            dry_bad+=" $f $v: not a number;"
        fi
        flags[$f]=$v
    done
}
fmul() { awk -v a="$1" -v b="$2" 'BEGIN { print a * b }'; }
flt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; } # a < b

declare -A pairs
for script in scripts/run_gpt2_124M_1bit.sh scripts/run_gpt2_124M_fp.sh scripts/run_gpt2_350M_1bit.sh \
              scripts/run_gpt2_350M_fp.sh; do
    name=$(basename "$script" .sh)
    if ! [ -f "$script" ]; then fail "$name" "$script is missing"; continue; fi
    check "$name: bash -n" "bash -n $script"
    rm -rf "$W/out"
    dry "$script"
    check "$name: DRY_RUN=1 prints one command and exits 0" "[ $dry_rc -eq 0 ] && [ $dry_lines -eq 1 ]" \
          "exit $dry_rc, $dry_lines lines; stderr: $err"
    check "$name: the command is the CUDA trainer's" "[ '${cmd[0]}' = ./train_gpt2_1bitcu ]" "${cmd[0]}"
    check "$name: every flag is in llmc/args.h's table, once, with a value of its type" "[ -z '$dry_bad' ]" "$dry_bad"
    # the numbers
    steps=${flags[-x]:-0}; total=${flags[-d]:-0}; B=${flags[-b]:-0}; T=${flags[-t]:-0}
    tokens=$(fmul "$steps" "$total")
    case $name in
        *124M*) check "$name: d12, $steps steps x $total tokens = $tokens ~ 10B tokens" \
                      "[ '${flags[-e]}' = d12 ] && flt 9.9e9 $tokens && flt $tokens 1.01e10" ;;
        *350M*) check "$name: d24, llm.c's 60,000 steps x $total tokens = $tokens (31.5B)" \
                      "[ '${flags[-e]}' = d24 ] && [ $steps = 60000 ] && flt 3.14e10 $tokens && flt $tokens 3.15e10" ;;
    esac
    check "$name: 524,288 tokens a step (-d), a whole number of -b x -t micro-batches, T = 1024" \
          "[ $total = 524288 ] && [ $T = 1024 ] && [ $((total % (B * T))) = 0 ]" "-d $total -b $B -t $T"
    check "$name: warmup 700, weight decay 0.1, grad clip 1, final lr 0 (llm.c's)" \
          "[ '${flags[-u]}' = 700 ] && [ '${flags[-c]}' = 0.1 ] && [ '${flags[-gc]}' = 1.0 ] &&
           [ '${flags[-q]}' = 0.0 ]"
    check "$name: checkpoints (-n), val loss (-v), the data from FineWeb shards" \
          "[ ${flags[-n]:-0} -gt 0 ] && [ ${flags[-v]:-0} -gt 0 ] && [[ '${flags[-i]}' == */fineweb_train_*.bin ]] &&
           [[ '${flags[-j]}' == */fineweb_val_*.bin ]]"
    # the mode
    case $name in
        *1bit) check "$name: ternary, int8, no inner norm (-rn 0), two-stage lr (-ls in (0,1), -ld < 1), decay stops" \
                     "[ '${flags[-wq]} ${flags[-aq]} ${flags[-rn]}' = 'ternary int8 0' ] && flt 0 ${flags[-ls]} &&
                      flt ${flags[-ls]} 1 && flt ${flags[-ld]} 1 && flt ${flags[-cs]} 1" ;;
        *fp) check "$name: fp (no quantization), one cosine (-ld 1), weight decay throughout (-cs 1)" \
                   "[ '${flags[-wq]} ${flags[-aq]} ${flags[-rn]}' = 'fp none 0' ] && [ '${flags[-ld]}' = 1 ] &&
                    [ '${flags[-cs]}' = 1 ]" ;;
    esac
    # what differs between the twins: only the mode, the schedule's lr and the output
    key=${name%_*}
    twin=""
    for f in $(printf '%s\n' "${!flags[@]}" | sort); do
        case $f in -wq|-aq|-rn|-l|-ld|-cs|-o) ;; *) twin+="$f=${flags[$f]} " ;; esac
    done
    if [ -n "${pairs[$key]:-}" ]; then
        check "$key: the b1.58 and fp runs differ only in mode, lr, -ld, -cs and -o" "[ '${pairs[$key]}' = '$twin' ]" \
              "${pairs[$key]} vs $twin"
    fi
    pairs[$key]=$twin
    # the summary line vs the header comment
    hours=$(sed -nE 's/.*~([0-9.]+) h on an H200.*/\1/p' <<<"$err")
    gib=$(sed -nE 's/.*, ([0-9.]+) GiB of GPU memory.*/\1/p' <<<"$err")
    want_tokens=$(awk -v t="$tokens" 'BEGIN { printf "%.2fB tokens", t / 1e9 }')
    check "$name: it prints the tokens ($want_tokens), the hours and the GPU memory" \
          "grep -q '= $want_tokens' <<<\"\$err\" && [ -n '$hours' ] && [ -n '$gib' ]" "$err"
    rounded=$(awk -v h="$hours" 'BEGIN { printf "%d", h + 0.5 }')
    check "$name: its header comment gives the same hours ($hours) and GPU memory ($gib GiB)" \
          "{ grep -q '^#.* $hours h' $script || grep -q '^#.*about $rounded h' $script; } &&
           grep -q '^#.*$gib GiB' $script"
    # HellaSwag, resume, extra flags
    if [ $has_h = 1 ]; then
        check "$name: HellaSwag on (-h 1): the trainers have -h" "[ '${flags[-h]:-}' = 1 ]" "${cmd[*]}"
    else
        check "$name: no -h while the trainers lack it, and a note saying so" \
              "[ -z '${flags[-h]:-}' ] && grep -q 'HellaSwag' <<<\"\$err\""
    fi
    check "$name: no -y 1 when OUT holds no checkpoint" "[ -z '${flags[-y]:-}' ]"
    mkdir -p "$W/out" && touch "$W/out/DONE_00002000"
    dry "$script" -l 1e-3 -s 0
    n=${#cmd[@]}
    check "$name: -y 1 when OUT holds a checkpoint; extra flags go last" \
          "[ '${flags[-y]:-}' = 1 ] && [ '${cmd[*]:n-4}' = '-l 1e-3 -s 0' ] && [ -z '$dry_bad' ]" "${cmd[*]} $dry_bad"
done

# -----------------------------------------------------------------------------
# the run loop, with a stand-in trainer: each start writes 3 checkpoints (every -n steps) and crashes,
# until the last step. It records its arguments, and fails a fresh start over checkpoints.
fake=$W/fake_trainer
cat >"$fake" <<'EOF'
#!/usr/bin/env bash
echo "$*" >>"$FAKE_LOG"
out=""; x=0; n=0; y=0
while [ $# -gt 0 ]; do
    case $1 in -o) out=$2 ;; -x) x=$2 ;; -n) n=$2 ;; -y) y=$2 ;; esac
    shift 2
done
last=0
for d in "$out"/DONE_*; do [ -e "$d" ] && last=$((10#${d##*DONE_})); done
if [ "$y" = 1 ] && [ "$last" = 0 ]; then echo "error: -y 1 but no checkpoint" >&2; exit 1; fi
if [ "$y" = 0 ] && [ "$last" != 0 ]; then echo "FRESH START OVER CHECKPOINTS" >>"$FAKE_LOG"; exit 1; fi
[ "${FAKE_STUCK:-0}" = 1 ] && exit 1
step=$last
for k in 1 2 3; do
    step=$((step + n)); [ "$step" -gt "$x" ] && step=$x
    s=$(printf '%08d' "$step")
    touch "$out/model_$s.bin" "$out/state_$s.bin" "$out/DONE_$s"
    [ "$step" = "$x" ] && exit 0
done
exit 1
EOF
chmod +x "$fake"
mkdir -p "$W/data" && touch "$W/data/fineweb_train_000001.bin" "$W/data/fineweb_val_000000.bin" "$W/hellaswag_val.bin"
for script in scripts/run_gpt2_124M_1bit.sh scripts/run_gpt2_350M_fp.sh; do
    name=$(basename "$script" .sh)
    rm -rf "$W/run" "$W/fake.log"
    FAKE_LOG=$W/fake.log OUT=$W/run DATA=$W/data TRAINER=$fake HELLASWAG_FILE=$W/hellaswag_val.bin RESTART_DELAY=0 \
        bash "$script" >"$W/run.out" 2>&1
    rc=$?
    steps=$(grep -oE -- '-x [0-9]+' "$W/fake.log" | head -n 1 | cut -d' ' -f2)
    starts=$(wc -l <"$W/fake.log")
    resumed=$(grep -c -- '-y 1' "$W/fake.log")
    last_done=$W/run/DONE_$(printf '%08d' "${steps:-0}")
    check "$name: the loop restarts the crashing trainer until its last step ($starts starts) and says done" \
          "[ $rc = 0 ] && [ -n '$steps' ] && [ -f $last_done ] && tail -n 1 $W/run.out | grep -q '^done: '" \
          "exit $rc: $(tail -n 3 "$W/run.out")"
    check "$name: the first start is fresh, every restart has -y 1" \
          "[ $starts -gt 2 ] && [ $resumed = $((starts - 1)) ] && ! head -n 1 $W/fake.log | grep -q -- '-y 1' &&
           ! grep -q FRESH $W/fake.log" "$(cat "$W/fake.log" | cut -c1-60)"
    count() { local f n=0; for f in "$W/run"/"$1"*; do [ -e "$f" ] && n=$((n + 1)); done; echo $n; }
    kept=$(count DONE_); models=$(count model_); states=$(count state_)
    check "$name: the newest 3 checkpoints are kept (DONE, model, state), the older ones removed" \
          "[ $kept = 3 ] && [ $models = 3 ] && [ $states = 3 ]" "$(ls "$W/run" | tr '\n' ' ')"
    check "$name: each command is appended to OUT/commands.txt" "[ \$(wc -l <$W/run/commands.txt) = $starts ]"
done
script=scripts/run_gpt2_124M_1bit.sh
rm -rf "$W/run"
FAKE_LOG=$W/fake.log FAKE_STUCK=1 OUT=$W/run DATA=$W/data TRAINER=$fake HELLASWAG_FILE=$W/hellaswag_val.bin \
    RESTART_DELAY=0 bash "$script" >"$W/run.out" 2>&1
rc=$?
check "a trainer that makes no progress: the loop stops with an error, exit 1" \
      "[ $rc = 1 ] && grep -q 'no new checkpoint' $W/run.out" "exit $rc: $(tail -n 2 "$W/run.out")"
run_err() { # the preflight's error: exit 1, an error line and a HINT with the fix
    env OUT="$W/run" DATA="$W/data" TRAINER="$fake" HELLASWAG_FILE="$W/hellaswag_val.bin" "$@" bash "$script" \
        >"$W/run.out" 2>&1
}
run_err TRAINER=$W/none
check "no trainer: exit 1, the hint says make train_gpt2_1bitcu" \
      "[ $? = 1 ] && grep -q 'HINT: make train_gpt2_1bitcu' $W/run.out"
run_err DATA=$W/nodata
check "no shards: exit 1, the hint says python3 dev/data/fineweb.py" \
      "[ $? = 1 ] && grep -q 'HINT: python3 dev/data/fineweb.py' $W/run.out"
if [ $has_h = 1 ]; then
    run_err HELLASWAG_FILE=$W/none.bin
    check "-h 1 but no HellaSwag file: exit 1, the hint says python3 dev/data/hellaswag.py" \
          "[ $? = 1 ] && grep -q 'HINT: python3 dev/data/hellaswag.py' $W/run.out"
fi

echo "($TEST_NAME: $npass checks passed, $nfail checks failed)"
[ "$nfail" -eq 0 ]
