#!/usr/bin/env bash
# tests/test_bad_input.sh: every bad file and flag gets a one-line "error:"
# naming the file or flag, and a non-zero exit: never a crash (a signal), never
# training on garbage. Uses tests/ref/model.bin (V=250) and tiny shards.
# Run: bash tests/test_bad_input.sh   (after make train_gpt2_1bit)
set -u
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
python3 tests/make_tiny_shards.py "$tmp"
failed=0
M=tests/ref/model.bin
BASE=(-i "$tmp/train.bin" -j "$tmp/val.bin" -tf /nonexistent -b 4 -t 16 -x 2 -v 0 -s 0 -o "")

# expect_error NAME NEEDLE [args...]: the trainer must exit non-zero (not by a
# signal) with an "error:" line on stderr that contains NEEDLE
expect_error() {
    local name=$1 needle=$2; shift 2
    local err rc
    err=$(./train_gpt2_1bit "$@" 2>&1 >/dev/null)
    rc=$?
    local line
    line=$(grep -m1 '^error:' <<<"$err")
    if [ "$rc" -eq 0 ]; then
        echo "FAIL: $name: exited 0"; failed=1
    elif [ "$rc" -ge 128 ]; then
        echo "FAIL: $name: killed by a signal (status $rc): $err"; failed=1
    elif [ -z "$line" ] || ! grep -qF -- "$needle" <<<"$line"; then
        echo "FAIL: $name: no 'error:' line naming '$needle': $err"; failed=1
    else
        echo "PASS: $name -> $line"
    fi
}

# a model file = llm.c header + params; make broken copies of the reference model
python3 - "$M" "$tmp" <<'PY'
import struct, sys
src, out = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
def put(name, b): open(f"{out}/{name}", "wb").write(b)
h = list(struct.unpack("<256i", data[:1024]))
def with_header(**kv):
    hh = list(h)
    for k, v in kv.items(): hh[int(k[1:])] = v
    return struct.pack("<256i", *hh) + data[1024:]
put("badmagic.bin", with_header(s0=12345))
put("v5.bin", with_header(s1=5))
put("truncated.bin", data[:len(data) // 2])
put("trailing.bin", data + b"garbage")
put("tiny.bin", data[:100])
put("badquant.bin", with_header(s16=20261123, s17=1, s18=7))
put("badconfig.bin", with_header(s5=3))  # C=64 not divisible by 3 heads
def shard(name, toks, magic=20240520, version=1, n=None):
    hdr = [magic, version, len(toks) if n is None else n] + [0] * 253
    put(name, struct.pack("<256i", *hdr) + struct.pack(f"<{len(toks)}H", *toks))
shard("shard_badmagic.bin", [1] * 1000, magic=1)
shard("shard_v2.bin", [1] * 1000, version=2)
shard("shard_trunc.bin", [1] * 1000, n=5000)
shard("shard_oov.bin", [1] * 500 + [300] + [1] * 500)
shard("shard_short.bin", [1] * 20)
put("tok_bad.bin", struct.pack("<256I", *([1, 2, 3, 4] + [0] * 252)))
PY
: > "$tmp/empty.bin"

expect_error "missing checkpoint" "$tmp/nope.bin" -e "$tmp/nope.bin" "${BASE[@]}"
expect_error "checkpoint with wrong magic" "badmagic.bin" -e "$tmp/badmagic.bin" "${BASE[@]}"
expect_error "checkpoint version 5 (bf16)" "v5.bin" -e "$tmp/v5.bin" "${BASE[@]}"
expect_error "truncated checkpoint" "truncated.bin" -e "$tmp/truncated.bin" "${BASE[@]}"
expect_error "checkpoint with trailing garbage" "trailing.bin" -e "$tmp/trailing.bin" "${BASE[@]}"
expect_error "checkpoint shorter than a header" "tiny.bin" -e "$tmp/tiny.bin" "${BASE[@]}"
expect_error "empty checkpoint" "empty.bin" -e "$tmp/empty.bin" "${BASE[@]}"
expect_error "checkpoint with unknown quantization mode" "badquant.bin" -e "$tmp/badquant.bin" "${BASE[@]}"
expect_error "checkpoint with an impossible config" "badconfig.bin" -e "$tmp/badconfig.bin" "${BASE[@]}"
expect_error "-e neither file nor descriptor" "-e" -e dx12 "${BASE[@]}"
expect_error "missing train shards" "-i" -e $M "${BASE[@]}" -i "$tmp/none_*.bin"
expect_error "missing val shards" "-j" -e $M "${BASE[@]}" -j "$tmp/none.bin"
expect_error "shard with wrong magic" "shard_badmagic.bin" -e $M "${BASE[@]}" -i "$tmp/shard_badmagic.bin"
expect_error "shard version 2" "shard_v2.bin" -e $M "${BASE[@]}" -i "$tmp/shard_v2.bin"
expect_error "truncated shard" "shard_trunc.bin" -e $M "${BASE[@]}" -i "$tmp/shard_trunc.bin"
expect_error "shard with token id >= V" "shard_oov.bin" -e $M "${BASE[@]}" -j "$tmp/shard_oov.bin"
expect_error "shard shorter than one batch" "shard_short.bin" -e $M "${BASE[@]}" -i "$tmp/shard_short.bin"
expect_error "a file that is not a shard" "empty.bin" -e $M "${BASE[@]}" -i "$tmp/empty.bin"
expect_error "-t above the model's maxT" "-t 64" -e $M "${BASE[@]}" -t 64
expect_error "corrupt tokenizer file" "tok_bad.bin" -e $M "${BASE[@]}" -tf "$tmp/tok_bad.bin"
expect_error "unknown flag" "-zz" -e $M "${BASE[@]}" -zz 1
expect_error "flag without a value" "-b" -e $M "${BASE[@]}" -b
expect_error "malformed integer" "-b" -e $M "${BASE[@]}" -b abc
expect_error "integer with trailing junk" "-b" -e $M "${BASE[@]}" -b 3x
expect_error "malformed float" "-l" -e $M "${BASE[@]}" -l 1e-3x
expect_error "batch size 0" "-b" -e $M "${BASE[@]}" -b 0
expect_error "negative steps" "-x" -e $M "${BASE[@]}" -x -5
expect_error "unknown weight mode" "-wq" -e $M "${BASE[@]}" -wq quaternary
expect_error "unknown activation mode" "-aq" -e $M "${BASE[@]}" -aq int4
expect_error "inner norm 2" "-rn" -e $M "${BASE[@]}" -rn 2
expect_error "resume flag 2" "-y" -e $M "${BASE[@]}" -y 2
expect_error "final lr fraction 1.5" "-q" -e $M "${BASE[@]}" -q 1.5
expect_error "output dir under a file" "-o" -e $M "${BASE[@]}" -o "$M/sub"
mkdir "$tmp/ro" && chmod 555 "$tmp/ro"
if [ "$(id -u)" -ne 0 ]; then
    expect_error "unwritable output dir" "-o" -e $M "${BASE[@]}" -o "$tmp/ro"
else # root writes anywhere; a read-only place root cannot write to is /proc
    expect_error "unwritable output dir" "-o" -e $M "${BASE[@]}" -o /proc/train_gpt2_1bit_out
fi
mkdir "$tmp/empty_out"
expect_error "resume from a dir without checkpoints" "$tmp/empty_out" -e $M "${BASE[@]}" -o "$tmp/empty_out" -y 1

# a ternary checkpoint, then flags that contradict it
./train_gpt2_1bit -e $M "${BASE[@]}" -o "$tmp/run" > /dev/null 2>&1
expect_error "checkpoint mode disagrees with -wq" "-wq" -e "$tmp/run/model_00000002.bin" "${BASE[@]}" -wq fp
expect_error "checkpoint mode disagrees with -rn" "-rn" -e "$tmp/run/model_00000002.bin" "${BASE[@]}" -rn 0
if ./train_gpt2_1bit -e "$tmp/run/model_00000002.bin" "${BASE[@]}" > /dev/null 2>&1; then
    echo "PASS: the same checkpoint loads without mode flags"
else
    echo "FAIL: the checkpoint does not load without mode flags"; failed=1
fi
# resuming with a truncated state file, or another batch shape
cp -r "$tmp/run" "$tmp/run2"
head -c 2000 "$tmp/run/state_00000002.bin" > "$tmp/run/state_00000002.bin.cut" && mv "$tmp/run/state_00000002.bin.cut" "$tmp/run/state_00000002.bin"
expect_error "resume with a truncated state file" "state_00000002.bin" -e $M "${BASE[@]}" -x 4 -o "$tmp/run" -y 1
expect_error "resume with another batch size" "-b" -e $M "${BASE[@]}" -x 4 -b 2 -o "$tmp/run2" -y 1

# -h lists every flag of llmc/args.h with its default, and exits 0
help=$(./train_gpt2_1bit -h 2>&1); rc=$?
flags=$(grep -oE 'ARG\("-[a-z]+"' llmc/args.h | sed -E 's/ARG\("//; s/"//')
missing=""
for f in $flags; do grep -qE "^  $f +.*\(default " <<<"$help" || missing="$missing $f"; done
if [ "$rc" -eq 0 ] && [ -z "$missing" ] && [ "$(wc -w <<<"$flags")" -ge 25 ]; then
    echo "PASS: -h exits 0 and lists all $(wc -w <<<"$flags") flags with their defaults"
else
    echo "FAIL: -h (exit $rc) misses:$missing"; failed=1
fi
exit $failed
