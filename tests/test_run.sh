#!/usr/bin/env bash
# tests/test_run.sh: run_gpt2_1bit end to end: export a checkpoint, generate
# from a prompt (GPT-2 tokenizer), and every bad input gets a one-line
# "error:" naming the file or flag and a non-zero exit, never a crash.
# Run: bash tests/test_run.sh   (after make run_gpt2_1bit train_gpt2_1bit data)
set -u
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npass=0; nfail=0
pass() { echo "PASS: $1"; npass=$((npass + 1)); }
fail() { echo "FAIL: $1"; nfail=$((nfail + 1)); }
expect_error() { # NAME NEEDLE args...
    local name=$1 needle=$2; shift 2
    local err rc line
    err=$(./run_gpt2_1bit "$@" 2>&1 >/dev/null); rc=$?
    line=$(grep -m1 '^error:' <<<"$err")
    if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && [ -n "$line" ] && grep -qF -- "$needle" <<<"$line"; then
        pass "$name -> $line"
    else
        fail "$name: status $rc, stderr: $err"
    fi
}

# a tiny model with GPT-2's vocab, trained one step, for prompts
./train_gpt2_1bit -e d1 -b 1 -t 16 -x 1 -v 0 -s 0 -o "$tmp/d1" > /dev/null 2>&1 \
    && pass "trained a d1 model for one step" || fail "could not train a d1 model"
out=$(./run_gpt2_1bit -e "$tmp/d1/model_00000001.bin" -x "$tmp/d1.packed" -pf 3 2>&1)
./run_gpt2_1bit -e "$tmp/d1/model_00000001.bin" -x "$tmp/d1_fp16.packed" -pf 3 -ff 16 > /dev/null 2>&1
s32=$(stat -c %s "$tmp/d1.packed"); s16=$(stat -c %s "$tmp/d1_fp16.packed")
[ "$((s16 * 100 / s32))" -le 52 ] && pass "export with fp16 tensors: $s16 bytes vs $s32 with fp32" \
    || fail "fp16 export: $s16 bytes vs $s32"
[ $? -eq 0 ] && grep -q "wrote $tmp/d1.packed" <<<"$out" && pass "export: $(grep -m1 'BitLinear trits' <<<"$out" | tr -s ' ')" \
    || fail "export failed: $out"
gen=$(./run_gpt2_1bit -e "$tmp/d1.packed" -p "ROMEO: Is the day" -n 2 -g 8 2>/dev/null)
[ $? -eq 0 ] && [ "$(grep -c '^--- sample' <<<"$gen")" -eq 2 ] && grep -q '^ROMEO: Is the day' <<<"$gen" \
    && pass "generate: 2 samples continue the prompt" || fail "generation: $gen"
g1=$(./run_gpt2_1bit -e "$tmp/d1.packed" -p "Hello" -g 8 -sd 7 2>/dev/null)
g2=$(./run_gpt2_1bit -e "$tmp/d1/model_00000001.bin" -p "Hello" -g 8 -sd 7 2>/dev/null)
[ -n "$g1" ] && [ "$g1" = "$g2" ] && pass "the packed file and its checkpoint generate the same text with the same seed" \
    || fail "packed vs checkpoint generations differ: '$g1' vs '$g2'"
./run_gpt2_1bit -h | grep -q -- "-bench" && pass "-h lists the flags" || fail "-h"

# bad input
python3 - "$tmp" <<'PY'
import struct, sys
d = sys.argv[1]
data = open(f"{d}/d1.packed", "rb").read()
h = list(struct.unpack("<256i", data[:1024]))
h[1] = 99
open(f"{d}/v99.packed", "wb").write(struct.pack("<256i", *h) + data[1024:])
open(f"{d}/trunc.packed", "wb").write(data[: len(data) - 10])
PY
expect_error "missing model file" "nope.bin" -e "$tmp/nope.bin"
expect_error "packed file of another version" "v99.packed" -e "$tmp/v99.packed"
expect_error "truncated packed file" "trunc.packed" -e "$tmp/trunc.packed"
expect_error "no -e" "-e" -g 4
expect_error "empty prompt" "-p" -e "$tmp/d1.packed" -p ""
long=$(python3 -c "print('word ' * 1200)")
expect_error "prompt longer than the context" "-p" -e "$tmp/d1.packed" -p "$long"
expect_error "prompt tokens outside a small vocab" "-p" -e tests/ref/model.bin -p "Hello world"
expect_error "exporting a packed file" "-e" -e "$tmp/d1.packed" -x "$tmp/again.packed"
./train_gpt2_1bit -e d1 -b 1 -t 16 -x 1 -v 0 -s 0 -wq fp -aq none -rn 0 -o "$tmp/fp" > /dev/null 2>&1
expect_error "exporting an fp model" "-wq fp" -e "$tmp/fp/model_00000001.bin" -x "$tmp/fp.packed"
expect_error "bad trit format" "-pf" -e "$tmp/d1/model_00000001.bin" -x "$tmp/x.packed" -pf 4
expect_error "bad kernel" "-k" -e "$tmp/d1.packed" -k int4
expect_error "unknown flag" "-zz" -e "$tmp/d1.packed" -zz 1
expect_error "malformed number" "-g" -e "$tmp/d1.packed" -g ten
echo "(test_run.sh: $npass checks passed, $nfail checks failed)"
[ "$nfail" -eq 0 ]
