#!/usr/bin/env bash
# tests/test_bad_input.sh: every kind of bad input a user can give the CPU
# trainer must end in a one-line "error: ..." that names the offending file or
# flag, a non-zero exit status, and no crash (no signal, no segfault).
#
# Each case runs ./train_gpt2_1bit once with a single thing wrong and prints
# "PASS: <name> -> <the error line>" or "FAIL: <name>: <details>"; the script
# exits 1 if any failed. A control run with nothing wrong goes first, so a
# failure is the bad input's. Self-contained: tiny shards from
# tests/make_tiny_data.py, the model tests/ref/model.bin (V=250, Vp=256,
# maxT=32, L=2, NH=4, C=64), everything written in a temp dir.
# The CUDA trainer's load-time checks (the same llmc/ code) run at the end on its CPU
# emulator, ./train_gpt2_1bitcu_emu (CUDA_EMU_BIN= another build).
# Usage: bash tests/test_bad_input.sh   (from anywhere; needs ./train_gpt2_1bit and
#        ./train_gpt2_1bitcu_emu built: make train_gpt2_1bit train_gpt2_1bitcu_emu)
set -u
cd "$(dirname "$0")/.." || exit 1
TEST_NAME=test_bad_input.sh
. tests/lib.sh  # PYTHON BIN MODEL W TRAIN VAL TIMEOUT, pass/fail/finish

# the small, fast configuration every case starts from; later flags override earlier ones
BASE=(-e "$MODEL" -i "$TRAIN" -j "$VAL" -tf /nonexistent -s 0 -b 4 -t 16 -x 2 -v 0)

# run the trainer; sets RC, OUT (stdout) and ERR (stderr)
run_trainer() {
    $TIMEOUT "$BIN" "$@" >"$W/stdout" 2>"$W/stderr"
    RC=$?
    OUT=$(cat "$W/stdout")
    ERR=$(cat "$W/stderr")
}

# signs of a crash rather than a clean exit, in either stream
CRASH_RE='Segmentation fault|core dumped|Aborted|stack smashing|double free|free\(\)|AddressSanitizer|Floating point exception|Bus error'

# expect_error NAME NEEDLE ARGS...: the run must fail cleanly with an "error:"
# line on stderr that contains NEEDLE (the file's path or the flag)
expect_error() {
    local name=$1 needle=$2
    shift 2
    run_trainer "$@"
    local first
    first=$(grep -m1 '^error:' <<<"$ERR")
    if [ "$RC" -eq 124 ] && [ -n "$TIMEOUT" ]; then
        fail "$name" "timed out after 60 s"
    elif [ "$RC" -ge 128 ]; then
        fail "$name" "killed by signal $((RC - 128)): $(tail -n 2 <<<"$ERR" | tr '\n' ' ')"
    elif [ "$RC" -eq 0 ]; then
        fail "$name" "exit status 0, expected an error; stderr: $(head -c 300 <<<"$ERR" | tr '\n' ' ')"
    elif grep -Eq "$CRASH_RE" <<<"$OUT$ERR"; then
        fail "$name" "crash message in the output: $(grep -Em1 "$CRASH_RE" <<<"$OUT$ERR")"
    elif [ -z "$first" ]; then
        fail "$name" "exit status $RC but no line starting with 'error:' on stderr: $(head -c 300 <<<"$ERR" | tr '\n' ' ')"
    elif ! awk -v s="$needle" 'index($0, "error:") == 1 && index($0, s) > 0 { f = 1 } END { exit !f }' <<<"$ERR"; then
        fail "$name" "the error does not name '$needle': $first"
    else
        pass "$name -> $first"
    fi
}

# expect_ok NAME ARGS...: the run must succeed (exit 0, no crash)
expect_ok() {
    local name=$1
    shift
    run_trainer "$@"
    if [ "$RC" -ne 0 ]; then
        fail "$name" "exit status $RC: $(grep -m1 '^error:' <<<"$ERR")"
    elif grep -Eq "$CRASH_RE" <<<"$OUT$ERR"; then
        fail "$name" "crash message in the output: $(grep -Em1 "$CRASH_RE" <<<"$OUT$ERR")"
    else
        pass "$name"
    fi
}

# put_i32 FILE INDEX VALUE: overwrite int32 number INDEX of FILE (little endian) in place
put_i32() {
    "$PYTHON" - "$1" "$2" "$3" <<'EOF'
import struct, sys
path, index, value = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "r+b") as f:
    f.seek(4 * index)
    f.write(struct.pack("<i", value))
EOF
}

# put_u16 FILE BYTE_OFFSET VALUE: overwrite one uint16 (a shard's token) in place
put_u16() {
    "$PYTHON" - "$1" "$2" "$3" <<'EOF'
import struct, sys
path, offset, value = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "r+b") as f:
    f.seek(offset)
    f.write(struct.pack("<H", value))
EOF
}

# put_f32 FILE INDEX VALUE: overwrite float32 number INDEX of FILE (VALUE may be nan, inf, -inf)
put_f32() {
    "$PYTHON" - "$1" "$2" "$3" <<'EOF'
import struct, sys
path, index, value = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with open(path, "r+b") as f:
    f.seek(4 * index)
    f.write(struct.pack("<f", value))
EOF
}

# flip_byte FILE BYTE_OFFSET: invert one byte in place (a bit rot the header cannot see)
flip_byte() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import sys
path, offset = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(offset)
    b = f.read(1)[0]
    f.seek(offset)
    f.write(bytes([b ^ 0xFF]))
EOF
}

# crc_slot FILE SLOT [fix]: with "fix", rewrite header slot SLOT+1 as the CRC-32 (zlib's) of
# everything after the 1024-byte header, so a test can damage a payload and still reach the
# check behind the checksum; without, print "ok" when SLOT holds 20261128 and SLOT+1 that CRC
crc_slot() {
    "$PYTHON" - "$@" <<'EOF'
import struct, sys, zlib
path, slot = sys.argv[1], int(sys.argv[2])
data = open(path, "rb").read()
crc = zlib.crc32(data[1024:])
h = list(struct.unpack("<256i", data[:1024]))
if len(sys.argv) > 3:
    h[slot], h[slot + 1] = 20261128, struct.unpack("<i", struct.pack("<I", crc))[0]
    with open(path, "r+b") as f:
        f.write(struct.pack("<256i", *h))
else:
    got = (h[slot], h[slot + 1] & 0xFFFFFFFF)
    print("ok" if got == (20261128, crc) else "slots %d..%d = %s, want (20261128, %d)" % (slot, slot + 1, got, crc))
EOF
}

# expect_hint NAME TEXT: the last run's stderr has a "---> HINT:" line containing TEXT
expect_hint() {
    if grep -F -- "---> HINT:" <<<"$ERR" | grep -qF -- "$2"; then
        pass "$1 -> $(grep -F -- '---> HINT:' <<<"$ERR" | grep -m1 -F -- "$2")"
    else
        fail "$1" "no '---> HINT:' line with '$2'; stderr: $(head -c 400 <<<"$ERR" | tr '\n' ' ')"
    fi
}

# truncate_to FILE NBYTES
truncate_to() { "$PYTHON" -c 'import os, sys; os.truncate(sys.argv[1], int(sys.argv[2]))' "$1" "$2"; }

fsize() { wc -c <"$1" | tr -d ' '; }

# ----------------------------------------------------------------------------
# control: nothing wrong

expect_ok "control: a good run exits 0" "${BASE[@]}" -o "$W/out_ok"

# ----------------------------------------------------------------------------
# model file (-e)

expect_error "missing checkpoint file" "$W/no_such_model.bin" "${BASE[@]}" -e "$W/no_such_model.bin" -o ""

cp "$MODEL" "$W/bad_magic.bin" && put_i32 "$W/bad_magic.bin" 0 12345
expect_error "checkpoint with wrong magic" "$W/bad_magic.bin" "${BASE[@]}" -e "$W/bad_magic.bin" -o ""

cp "$MODEL" "$W/version5.bin" && put_i32 "$W/version5.bin" 1 5
expect_error "checkpoint with version 5 (bf16)" "$W/version5.bin" "${BASE[@]}" -e "$W/version5.bin" -o ""

cp "$MODEL" "$W/truncated.bin" && truncate_to "$W/truncated.bin" $(($(fsize "$MODEL") - 100))
expect_error "truncated checkpoint" "$W/truncated.bin" "${BASE[@]}" -e "$W/truncated.bin" -o ""

head -c 600 "$MODEL" >"$W/header_only.bin"
expect_error "checkpoint shorter than its header" "$W/header_only.bin" "${BASE[@]}" -e "$W/header_only.bin" -o ""

: >"$W/empty.bin"
expect_error "empty checkpoint file" "$W/empty.bin" "${BASE[@]}" -e "$W/empty.bin" -o ""

cp "$MODEL" "$W/trailing.bin" && printf 'garbage!' >>"$W/trailing.bin"
expect_error "checkpoint with trailing garbage" "$W/trailing.bin" "${BASE[@]}" -e "$W/trailing.bin" -o ""

cp "$MODEL" "$W/bad_heads.bin" && put_i32 "$W/bad_heads.bin" 5 3
expect_error "checkpoint with C not divisible by NH" "$W/bad_heads.bin" "${BASE[@]}" -e "$W/bad_heads.bin" -o ""

cp "$MODEL" "$W/slot16.bin" && put_i32 "$W/slot16.bin" 16 7
expect_error "checkpoint with an unknown value in header slot 16" "$W/slot16.bin" \
    "${BASE[@]}" -e "$W/slot16.bin" -o ""

cp "$MODEL" "$W/quantmode.bin" && put_i32 "$W/quantmode.bin" 16 20261123 && put_i32 "$W/quantmode.bin" 17 1 &&
    put_i32 "$W/quantmode.bin" 18 3
expect_error "checkpoint with an unknown weight quant mode" "$W/quantmode.bin" \
    "${BASE[@]}" -e "$W/quantmode.bin" -o ""

expect_error "checkpoint path is a directory: says so" "$W' is a directory" "${BASE[@]}" -e "$W" -o ""

# non-finite weights: an error at load naming the file and the tensor, not "training diverged,
# lower -l" after a NaN val loss. tests/ref/model.bin has no checksum (like llm.c's files), so the
# damage reaches the finite check. Its layout: wte 256*64, wpe 32*64, ln1w 2*64, ln1b 2*64, then
# qkvw (2, 192, 64) from float 18688 (layer 1 from 30976); lnfb's last value is the file's last.
NPARAMS=$(( ($(fsize "$MODEL") - 1024) / 4 ))
cp "$MODEL" "$W/nan_weight.bin" && put_f32 "$W/nan_weight.bin" $((256 + 30976 + 5)) nan
expect_error "checkpoint with a NaN weight: names the file and the tensor" \
    "'$W/nan_weight.bin' has a non-finite weight (nan) in tensor qkvw, layer 1" "${BASE[@]}" -e "$W/nan_weight.bin" -o ""
if grep -q "lower the learning rate" <<<"$ERR"; then
    fail "checkpoint with a NaN weight: no learning-rate hint" "$(grep -m1 HINT <<<"$ERR")"
else
    pass "checkpoint with a NaN weight: no learning-rate hint"
fi
cp "$MODEL" "$W/inf_weight.bin" && put_f32 "$W/inf_weight.bin" $((256 + NPARAMS - 1)) inf
expect_error "checkpoint with an inf weight in the last tensor" \
    "'$W/inf_weight.bin' has a non-finite weight (inf) in tensor lnfb" "${BASE[@]}" -e "$W/inf_weight.bin" -o ""
cp "$MODEL" "$W/ninf_weight.bin" && put_f32 "$W/ninf_weight.bin" 256 -inf
expect_error "checkpoint with a -inf weight in the first tensor" \
    "'$W/ninf_weight.bin' has a non-finite weight (-inf) in tensor wte" "${BASE[@]}" -e "$W/ninf_weight.bin" -o ""

expect_error "-e neither a file nor a descriptor" "d0" "${BASE[@]}" -e d0 -o ""

# ----------------------------------------------------------------------------
# token shards (-i, -j)

expect_error "missing train shard pattern" "$W/nomatch_*.bin" "${BASE[@]}" -i "$W/nomatch_*.bin" -o ""
# the val shards are read only when there are val losses to compute (-v > 0)
expect_error "missing val shard pattern" "-j" "${BASE[@]}" -v 1 -j "$W/nomatch_val_*.bin" -o ""

cp "$TRAIN" "$W/shard_magic.bin" && put_i32 "$W/shard_magic.bin" 0 20240326
expect_error "shard with wrong magic" "$W/shard_magic.bin" "${BASE[@]}" -i "$W/shard_magic.bin" -o ""

cp "$TRAIN" "$W/shard_version.bin" && put_i32 "$W/shard_version.bin" 1 2
expect_error "shard with version 2" "$W/shard_version.bin" "${BASE[@]}" -i "$W/shard_version.bin" -o ""

cp "$TRAIN" "$W/shard_trunc.bin" && truncate_to "$W/shard_trunc.bin" $(($(fsize "$TRAIN") - 1000))
expect_error "truncated shard" "$W/shard_trunc.bin" "${BASE[@]}" -i "$W/shard_trunc.bin" -o ""

head -c 100 "$TRAIN" >"$W/shard_tiny.bin"
expect_error "shard shorter than its header" "$W/shard_tiny.bin" "${BASE[@]}" -i "$W/shard_tiny.bin" -o ""
expect_error "empty file as a shard" "$W/empty.bin" "${BASE[@]}" -i "$W/empty.bin" -o ""

# token 300 >= V = 250, in the middle of the shard (the header is 1024 bytes)
cp "$TRAIN" "$W/shard_oov.bin" && put_u16 "$W/shard_oov.bin" $((1024 + 2 * 5000)) 300
expect_error "shard with a token id >= V (300 for V=250)" "$W/shard_oov.bin" "${BASE[@]}" -i "$W/shard_oov.bin" -o ""
cp "$VAL" "$W/val_oov.bin" && put_u16 "$W/val_oov.bin" $((1024 + 2 * 3999)) 65535
expect_error "val shard with token id 65535 at its very end" "$W/val_oov.bin" \
    "${BASE[@]}" -v 1 -j "$W/val_oov.bin" -o ""

# one batch of -b 4 -t 16 needs B*T+1 = 65 tokens
"$PYTHON" tests/make_tiny_data.py "$W/few" 50 50
expect_error "shard with too few tokens for one batch" "$W/few/train.bin" \
    "${BASE[@]}" -i "$W/few/train.bin" -o ""
expect_error "val shard with too few tokens for one batch, with val losses (-v 1)" "$W/few/val.bin" \
    "${BASE[@]}" -v 1 -j "$W/few/val.bin" -o ""
expect_ok "val shard with too few tokens for one batch, without val losses (-v 0): not read" \
    "${BASE[@]}" -v 0 -j "$W/few/val.bin" -o ""

expect_error "shard path is a directory: says so" "-i '$W/data' matches '$W/data', a directory" \
    "${BASE[@]}" -i "$W/data" -o ""
mkdir -p "$W/shards/sub" && cp "$TRAIN" "$W/shards/a.bin"
expect_error "-i glob that matches a directory too: names it" "-i '$W/shards/*' matches '$W/shards/sub', a directory" \
    "${BASE[@]}" -i "$W/shards/*" -o ""

# ----------------------------------------------------------------------------
# flags

expect_error "-t above the model's maxT (64 > 32)" "-t" "${BASE[@]}" -t 64 -o ""
expect_error "unknown flag" "-zz" "${BASE[@]}" -zz 1 -o ""
expect_error "flag missing its value" "-x" "${BASE[@]}" -o "" -x
expect_error "malformed integer -b abc" "-b" "${BASE[@]}" -b abc -o ""
expect_error "malformed integer -b 3x" "-b" "${BASE[@]}" -b 3x -o ""
expect_error "malformed integer -b ''" "-b" "${BASE[@]}" -b "" -o ""
expect_error "integer out of int range -x 99999999999" "-x" "${BASE[@]}" -x 99999999999 -o ""
expect_error "malformed float -l 1e-3x" "-l" "${BASE[@]}" -l 1e-3x -o ""
expect_error "float nan -l nan" "-l" "${BASE[@]}" -l nan -o ""
# inf got through: -l inf trained with a NaN learning rate and exited 0
expect_error "float inf -l inf" "flag -l expects a finite number" "${BASE[@]}" -l inf -o ""
expect_error "float -inf -l -inf" "flag -l expects a finite number" "${BASE[@]}" -l -inf -o ""
expect_error "float overflowing to inf -l 1e39" "-l" "${BASE[@]}" -l 1e39 -o ""
expect_error "float nan -st nan" "flag -st expects a finite number" "${BASE[@]}" -st nan -o ""
expect_error "float inf -st inf" "flag -st expects a finite number" "${BASE[@]}" -st inf -o ""
expect_error "float inf -gc inf" "flag -gc expects a finite number" "${BASE[@]}" -gc inf -o ""
expect_error "float inf -c INF" "flag -c expects a finite number" "${BASE[@]}" -c INF -o ""
expect_error "float nan -q NaN" "flag -q expects a finite number" "${BASE[@]}" -q NaN -o ""
expect_error "out of range -b 0" "-b" "${BASE[@]}" -b 0 -o ""
expect_error "out of range -t 0" "-t" "${BASE[@]}" -t 0 -o ""
expect_error "negative -d" "-d" "${BASE[@]}" -d -5 -o ""
# -d: tokens per optimizer step, in micro-batches of -b * -t (= 64 here)
expect_ok "-d 128: gradient accumulation over 2 micro-batches of -b 4 -t 16" "${BASE[@]}" -d 128 -o ""
expect_error "-d 100000, not a multiple of -b * -t" "-d 100000 is not a multiple of -b * -t = 64" "${BASE[@]}" \
    -d 100000 -o ""
expect_error "-d 32, below -b * -t" "-d 32 is not a multiple of -b * -t = 64" "${BASE[@]}" -d 32 -o ""
expect_error "out of range -x -1" "-x" "${BASE[@]}" -x -1 -o ""
expect_error "out of range -wq quaternary" "-wq" "${BASE[@]}" -wq quaternary -o ""
expect_error "out of range -aq int4" "-aq" "${BASE[@]}" -aq int4 -o ""
expect_error "out of range -rn 3" "-rn" "${BASE[@]}" -rn 3 -o ""
expect_error "out of range -bq int4" "-bq" "${BASE[@]}" -bq int4 -o ""
expect_error "-bq int8 with -wq fp (no trits to multiply by)" "-bq" "${BASE[@]}" -wq fp -aq none -rn 0 -bq int8 -o ""
expect_error "out of range -mp fp16" "-mp" "${BASE[@]}" -mp fp16 -o ""
expect_ok "-mp bf16 trains" "${BASE[@]}" -mp bf16 -o ""
if grep -q '^matmuls: bf16 operands' <<<"$OUT"; then pass "-mp bf16 says its precision"
else fail "-mp bf16 says its precision" "$(grep -m1 '^matmuls:' <<<"$OUT")"; fi
expect_error "out of range -y 2" "-y" "${BASE[@]}" -y 2 -o ""
expect_error "out of range -q 1.5" "-q" "${BASE[@]}" -q 1.5 -o ""
expect_error "out of range -ld 0" "-ld" "${BASE[@]}" -ld 0 -o ""
expect_error "-y 1 with no output directory" "-y" "${BASE[@]}" -y 1 -o ""

# ----------------------------------------------------------------------------
# output directory (-o)

expect_error "unwritable output dir /proc/forbidden" "/proc/forbidden" "${BASE[@]}" -o /proc/forbidden
expect_error "output dir under a file" "$TRAIN/sub" "${BASE[@]}" -o "$TRAIN/sub"
expect_error "output dir is a file" "$TRAIN" "${BASE[@]}" -o "$TRAIN"
if [ "$(id -u)" -ne 0 ]; then
    # root can write anywhere, so a read-only directory only tests something for other users
    mkdir -p "$W/readonly" && chmod 555 "$W/readonly"
    expect_error "read-only output dir" "$W/readonly" "${BASE[@]}" -o "$W/readonly"
    chmod 755 "$W/readonly"
fi

# ----------------------------------------------------------------------------
# resuming (-y 1) and checkpoint modes

mkdir -p "$W/empty"
expect_error "resume (-y 1) from an empty dir" "$W/empty" "${BASE[@]}" -y 1 -o "$W/empty"
expect_error "resume (-y 1) from a dir that does not exist" "$W/not_there" "${BASE[@]}" -y 1 -o "$W/not_there"

# the default mode is ternary, int8, no inner norm (-rn 0: dev/recipe_study.md)
expect_ok "the default mode is ternary weights, int8 activations, no inner norm" "${BASE[@]}" -x 0 -o ""
if grep -q 'mode: weights ternary, activations int8, inner RMSNorm off' <<<"$OUT"; then
    pass "the default mode says it is -rn 0"
else
    fail "the default mode says it is -rn 0" "$(grep -m1 '^mode:' <<<"$OUT")"
fi
# a checkpoint trained in b1.58 as published (ternary, int8, inner norm)
run_trainer "${BASE[@]}" -x 2 -rn 1 -o "$W/tern"
TERN=$W/tern/model_00000002.bin
if [ "$RC" -ne 0 ] || [ ! -f "$TERN" ] || [ ! -f "$W/tern/DONE_00000002" ]; then
    fail "setup: 2 ternary steps write a checkpoint" "exit $RC, files: $(find "$W/tern" -mindepth 1 -printf '%f ' 2>&1)"
else
    pass "setup: 2 ternary steps write a checkpoint"
fi
expect_error "ternary checkpoint loaded with -wq fp is refused" "-wq" "${BASE[@]}" -e "$TERN" -wq fp -o ""
expect_error "ternary checkpoint loaded with -aq none is refused" "-aq" "${BASE[@]}" -e "$TERN" -aq none -o ""
expect_error "ternary checkpoint loaded with -rn 0 is refused" "-rn" "${BASE[@]}" -e "$TERN" -rn 0 -o ""
expect_error "ternary checkpoint (-rn 1) loaded with -rn 2 is refused" "-rn" "${BASE[@]}" -e "$TERN" -rn 2 -o ""
expect_ok "ternary checkpoint loaded without -wq trains" "${BASE[@]}" -e "$TERN" -o ""
if grep -q 'mode: weights ternary, activations int8, inner RMSNorm on' <<<"$OUT"; then
    pass "ternary checkpoint loaded without -wq reports the checkpoint's mode"
else
    fail "ternary checkpoint loaded without -wq reports the checkpoint's mode" "$(grep -m1 '^mode:' <<<"$OUT")"
fi
expect_ok "ternary checkpoint loaded with the same -wq ternary trains" "${BASE[@]}" -e "$TERN" -wq ternary -o ""
expect_ok "an llm.c checkpoint (no quant fields) takes the flags' modes" "${BASE[@]}" -wq fp -aq none -rn 0 -o ""

# -rn 2 (the inner norm before attproj and fcproj only) is stored and comes back
run_trainer "${BASE[@]}" -x 2 -rn 2 -o "$W/rn2"
expect_ok "a -rn 2 checkpoint loaded without -rn trains" "${BASE[@]}" -e "$W/rn2/model_00000002.bin" -o ""
if grep -q 'mode: .*inner RMSNorm before attproj and fcproj only' <<<"$OUT"; then
    pass "a -rn 2 checkpoint reloads in its mode"
else
    fail "a -rn 2 checkpoint reloads in its mode" "$(grep -m1 '^mode:' <<<"$OUT")"
fi
expect_error "a -rn 2 checkpoint loaded with -rn 1 is refused" "-rn" "${BASE[@]}" -e "$W/rn2/model_00000002.bin" \
    -rn 1 -o ""

# a fp checkpoint resumed with an explicit other mode is refused too
run_trainer "${BASE[@]}" -x 2 -wq fp -aq none -rn 0 -o "$W/fp"
expect_error "resuming a fp run with -wq ternary is refused" "-wq" "${BASE[@]}" -x 4 -y 1 -wq ternary -o "$W/fp"

# -bq (the backward of dX) is a mode of the checkpoint like the others: a float-backward file (written
# as quant fields version 1, as before -bq existed) loads as -bq float, and -bq int8 on it is refused;
# an int8-backward run resumes in int8, and -bq float on it is refused
expect_error "ternary checkpoint (float backward) loaded with -bq int8 is refused" "-bq" \
    "${BASE[@]}" -e "$TERN" -bq int8 -o ""
expect_ok "ternary checkpoint loaded with the same -bq float trains" "${BASE[@]}" -e "$TERN" -bq float -o ""
run_trainer "${BASE[@]}" -x 2 -bq int8 -o "$W/bq8"
BQ8=$W/bq8/model_00000002.bin
if [ "$RC" -eq 0 ] && [ -f "$W/bq8/DONE_00000002" ] && grep -q '^mode: .*backward dX int8' <<<"$OUT"; then
    pass "setup: 2 steps with -bq int8 write a checkpoint and say the mode"
else
    fail "setup: 2 steps with -bq int8 write a checkpoint and say the mode" "exit $RC: $(grep -m1 '^mode:' <<<"$OUT")"
fi
expect_error "resuming a -bq int8 run with -bq float is refused" "-bq" "${BASE[@]}" -x 4 -y 1 -bq float -o "$W/bq8"
cp -r "$W/bq8" "$W/bq8_resume"
expect_ok "resuming a -bq int8 run without -bq trains on" "${BASE[@]}" -x 4 -y 1 -o "$W/bq8_resume"
if grep -q '^mode: .*backward dX int8' <<<"$OUT"; then pass "a -bq int8 checkpoint resumes in -bq int8"
else fail "a -bq int8 checkpoint resumes in -bq int8" "$(grep -m1 '^mode:' <<<"$OUT")"; fi
cp "$BQ8" "$W/bq_slot.bin" && put_i32 "$W/bq_slot.bin" 23 7
expect_error "checkpoint with an unknown backward mode in header slot 23" "$W/bq_slot.bin" \
    "${BASE[@]}" -e "$W/bq_slot.bin" -o ""
cp "$TERN" "$W/quant_v3.bin" && put_i32 "$W/quant_v3.bin" 17 3
expect_error "checkpoint with quantization fields version 3" "$W/quant_v3.bin" "${BASE[@]}" -e "$W/quant_v3.bin" -o ""

# state files: copy the ternary run's dir and damage one file in each copy
cp -r "$W/tern" "$W/state_trunc"
truncate_to "$W/state_trunc/state_00000002.bin" $(($(fsize "$W/tern/state_00000002.bin") - 4096))
expect_error "resume from a truncated state file" "$W/state_trunc/state_00000002.bin" \
    "${BASE[@]}" -x 4 -y 1 -o "$W/state_trunc"

cp -r "$W/tern" "$W/state_magic"
put_i32 "$W/state_magic/state_00000002.bin" 0 0
expect_error "resume from a state file with wrong magic" "$W/state_magic/state_00000002.bin" \
    "${BASE[@]}" -x 4 -y 1 -o "$W/state_magic"

cp -r "$W/tern" "$W/state_missing"
rm "$W/state_missing/state_00000002.bin"
expect_error "resume with the state file missing" "$W/state_missing/state_00000002.bin" \
    "${BASE[@]}" -x 4 -y 1 -o "$W/state_missing"
expect_hint "resume with the state file missing: the hint names the DONE marker to delete" \
    "delete '$W/state_missing/DONE_00000002'"

cp -r "$W/tern" "$W/model_missing"
rm "$W/model_missing/model_00000002.bin"
expect_error "resume with the model file missing" "$W/model_missing/model_00000002.bin" \
    "${BASE[@]}" -x 4 -y 1 -o "$W/model_missing"
expect_hint "resume with the model file missing: the hint names the DONE marker to delete" \
    "delete '$W/model_missing/DONE_00000002'"

# checksums: our files carry a CRC-32 of their payload in spare header slots (model: 21..22, where
# llm.c's files have zeros; state: 11..12); a flipped byte in the body is an error naming the file
got=$(crc_slot "$TERN" 21)
if [ "$got" = ok ]; then pass "a checkpoint's model file carries the CRC-32 of its parameters (header slots 21..22)"
else fail "a checkpoint's model file carries the CRC-32 of its parameters (header slots 21..22)" "$got"; fi
got=$(crc_slot "$W/tern/state_00000002.bin" 11)
if [ "$got" = ok ]; then pass "a checkpoint's state file carries the CRC-32 of m and v (header slots 11..12)"
else fail "a checkpoint's state file carries the CRC-32 of m and v (header slots 11..12)" "$got"; fi

cp "$TERN" "$W/model_rot.bin" && flip_byte "$W/model_rot.bin" $((1024 + 4 * 20000 + 1))
expect_error "checkpoint with a corrupt byte in its body fails its checksum" "'$W/model_rot.bin' fails its checksum" \
    "${BASE[@]}" -e "$W/model_rot.bin" -o ""
cp "$TERN" "$W/model_nan_crc.bin" && put_f32 "$W/model_nan_crc.bin" $((256 + 18688)) nan &&
    crc_slot "$W/model_nan_crc.bin" 21 fix
expect_error "checkpoint with a NaN weight and a matching checksum (saved so): names the tensor" \
    "'$W/model_nan_crc.bin' has a non-finite weight (nan) in tensor qkvw, layer 0" \
    "${BASE[@]}" -e "$W/model_nan_crc.bin" -o ""
cp "$TERN" "$W/slot21.bin" && put_i32 "$W/slot21.bin" 21 5
expect_error "checkpoint with an unknown value in header slot 21" "$W/slot21.bin" "${BASE[@]}" -e "$W/slot21.bin" -o ""

cp -r "$W/tern" "$W/state_rot"
flip_byte "$W/state_rot/state_00000002.bin" $((1024 + 4 * 1000))
expect_error "resume from a state file with a corrupt byte fails its checksum" \
    "'$W/state_rot/state_00000002.bin' fails its checksum" "${BASE[@]}" -x 4 -y 1 -o "$W/state_rot"
cp -r "$W/tern" "$W/state_nan"
put_f32 "$W/state_nan/state_00000002.bin" $((256 + 7)) nan && crc_slot "$W/state_nan/state_00000002.bin" 11 fix
expect_error "resume from a state file with a NaN moment (checksum matching)" \
    "'$W/state_nan/state_00000002.bin' has an invalid AdamW moment m[7] = nan" "${BASE[@]}" -x 4 -y 1 -o "$W/state_nan"
cp -r "$W/tern" "$W/state_negv"
put_f32 "$W/state_negv/state_00000002.bin" $((256 + NPARAMS + 3)) -1 && crc_slot "$W/state_negv/state_00000002.bin" 11 fix
expect_error "resume from a state file with a negative second moment v" \
    "'$W/state_negv/state_00000002.bin' has an invalid AdamW moment v[3] = -1" "${BASE[@]}" -x 4 -y 1 -o "$W/state_negv"

# -e a run's directory instead of one of its checkpoints: the hint names the newest one
expect_error "-e a run's directory" "'$W/tern' is a directory, not a model file" "${BASE[@]}" -e "$W/tern" -o ""
expect_hint "-e a run's directory: the hint names its newest checkpoint" "$W/tern/model_00000002.bin"

cp -r "$W/tern" "$W/model_trunc"
truncate_to "$W/model_trunc/model_00000002.bin" 5000
expect_error "resume from a truncated model file" "$W/model_trunc/model_00000002.bin" \
    "${BASE[@]}" -x 4 -y 1 -o "$W/model_trunc"

cp -r "$W/tern" "$W/state_bt"
expect_error "resume with another -b than the state was saved with" "-b" \
    "${BASE[@]}" -x 4 -y 1 -b 2 -o "$W/state_bt"

# the newest checkpoint is at step 2: -x 1 would silently train nothing
cp -r "$W/tern" "$W/past_x"
expect_error "resume with -x below the checkpoint's step" "-x" "${BASE[@]}" -x 1 -y 1 -o "$W/past_x"

# ----------------------------------------------------------------------------
# tokenizer (-tf): a missing file is only a warning, a corrupt one an error

expect_ok "missing tokenizer is only a warning" "${BASE[@]}" -tf "$W/no_tokenizer.bin" -o ""
if [ "$(grep -c "no_tokenizer.bin" <<<"$ERR")" -eq 1 ]; then pass "missing tokenizer is warned about once"
else fail "missing tokenizer is warned about once" "$(grep -c "no_tokenizer.bin" <<<"$ERR") lines name it"; fi
expect_error "tokenizer path is a directory" "tokenizer '$W' is a directory" "${BASE[@]}" -tf "$W" -o ""

"$PYTHON" - "$W/tok_magic.bin" "$W/tok_short.bin" <<'EOF'
import struct, sys
# wrong magic; otherwise a plausible file
h = [0] * 256
h[0], h[1], h[2], h[3] = 12345678, 2, 250, 0
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256I", *h))
    for i in range(250):
        f.write(bytes([1, 65 + i % 26]))
# right header, but the token table stops after 10 of 250 tokens
h[0] = 20240328
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack("<256I", *h))
    for i in range(10):
        f.write(bytes([1, 65 + i % 26]))
EOF
expect_error "corrupt tokenizer file (wrong magic)" "$W/tok_magic.bin" "${BASE[@]}" -tf "$W/tok_magic.bin" -o ""
expect_error "truncated tokenizer file" "$W/tok_short.bin" "${BASE[@]}" -tf "$W/tok_short.bin" -o ""

# ----------------------------------------------------------------------------
# the CUDA trainer loads through the same llmc/ code: the same checks, run here on the CPU
# emulator (tests/cuda_emu; make test builds it). The files are the CPU runs' from above.

CUDA_EMU=${CUDA_EMU_BIN:-./train_gpt2_1bitcu_emu}
if [ "${FAST:-0}" = 1 ]; then
    echo "(make test-fast: the CUDA trainer's load-time checks are left to make test)"
elif [ ! -x "$CUDA_EMU" ]; then
    fail "CUDA trainer (emulator): load-time checks" "$CUDA_EMU not found ---> HINT: make train_gpt2_1bitcu_emu"
else
    BIN_CPU=$BIN
    BIN=$CUDA_EMU
    expect_error "CUDA trainer (emulator): checkpoint with a NaN weight" \
        "'$W/nan_weight.bin' has a non-finite weight (nan) in tensor qkvw, layer 1" "${BASE[@]}" -e "$W/nan_weight.bin" -o ""
    expect_error "CUDA trainer (emulator): checkpoint that fails its checksum" "'$W/model_rot.bin' fails its checksum" \
        "${BASE[@]}" -e "$W/model_rot.bin" -o ""
    expect_error "CUDA trainer (emulator): state file that fails its checksum" \
        "'$W/state_rot/state_00000002.bin' fails its checksum" "${BASE[@]}" -x 4 -y 1 -o "$W/state_rot"
    expect_error "CUDA trainer (emulator): -e a run's directory" "'$W/tern' is a directory, not a model file" \
        "${BASE[@]}" -e "$W/tern" -o ""
    expect_error "CUDA trainer (emulator): -l inf" "flag -l expects a finite number" "${BASE[@]}" -l inf -o ""
    # -bq int8 (issue 14) is in both trainers: the CUDA one takes the flag, the CPU runs' files and
    # their resumption, in int8 (the "mode:" line says so), and refuses what the CPU trainer refuses
    expect_ok "CUDA trainer (emulator): -bq int8 trains" "${BASE[@]}" -bq int8 -o ""
    if grep -q '^mode: .*backward dX int8' <<<"$OUT"; then pass "CUDA trainer (emulator): -bq int8 says its mode"
    else fail "CUDA trainer (emulator): -bq int8 says its mode" "$(grep -m1 '^mode:' <<<"$OUT")"; fi
    expect_ok "CUDA trainer (emulator): a -bq int8 checkpoint of the CPU trainer trains" "${BASE[@]}" -e "$BQ8" -o ""
    name="CUDA trainer (emulator): the -bq int8 checkpoint loads in -bq int8"
    if grep -q '^mode: .*backward dX int8' <<<"$OUT"; then pass "$name"; else fail "$name" "$(grep -m1 '^mode:' <<<"$OUT")"; fi
    cp -r "$W/bq8" "$W/bq8_cuda"
    expect_ok "CUDA trainer (emulator): resuming a -bq int8 run of the CPU trainer trains on" \
        "${BASE[@]}" -x 4 -y 1 -o "$W/bq8_cuda"
    if grep -q '^mode: .*backward dX int8' <<<"$OUT" && [ -f "$W/bq8_cuda/DONE_00000004" ]; then
        pass "CUDA trainer (emulator): the resumed -bq int8 run stays in int8 and writes its step-4 checkpoint"
    else
        fail "CUDA trainer (emulator): the resumed -bq int8 run stays in int8 and writes its step-4 checkpoint" \
            "$(grep -m1 '^mode:' <<<"$OUT"); DONE_00000004 $([ -f "$W/bq8_cuda/DONE_00000004" ] || echo missing)"
    fi
    expect_error "CUDA trainer (emulator): resuming a -bq int8 run with -bq float is refused" "-bq" \
        "${BASE[@]}" -x 4 -y 1 -bq float -o "$W/bq8"
    expect_error "CUDA trainer (emulator): -bq int8 with -wq fp is refused" "-bq" \
        "${BASE[@]}" -wq fp -aq none -rn 0 -bq int8 -o ""
    # -mp: the CUDA trainer's matmul precision is its build's (bf16 here); another one is refused
    expect_error "CUDA trainer (emulator): -mp fp32 in a bf16 build is refused" \
        "-mp fp32, but this build's matmuls are bf16" "${BASE[@]}" -mp fp32 -o ""
    expect_ok "CUDA trainer (emulator): -mp bf16 in a bf16 build trains" "${BASE[@]}" -mp bf16 -o ""
    BIN=$BIN_CPU
fi

# ----------------------------------------------------------------------------
# -h: exits 0 and lists every flag of llmc/args.h's ARG_SPECS with its default

run_trainer -h
if [ "$RC" -eq 0 ]; then pass "-h exits 0"; else fail "-h exits 0" "exit status $RC"; fi
printf '%s\n' "$OUT" >"$W/help.txt"
# the flags and fields come from ARG("-x", ARG_INT, field, "help") lines, the
# defaults from train_args_defaults' "a->field = value;" lines; prints
# "<number of flags> <problems>" with an empty list when all is well
HELP_CHECK=$("$PYTHON" - llmc/args.h "$W/help.txt" <<'EOF'
import re, sys
src = open(sys.argv[1]).read()
help_lines = open(sys.argv[2]).read().splitlines()
specs = re.findall(r'ARG\("(-[A-Za-z]+)",\s*(ARG_\w+),\s*(\w+),', src)
body = src[src.index("train_args_defaults(TrainArgs"):]
body = body[:body.index("\n}")]
defaults = dict(re.findall(r'a->(\w+)\s*=\s*([^;=][^;]*);', body))
bad = []
for flag, kind, field in specs:
    line = next((l for l in help_lines if l.split()[:1] == [flag]), None)
    if line is None:
        bad.append("%s missing" % flag)
        continue
    m = re.search(r'\(default (.*)\)\s*$', line)
    if m is None:
        bad.append("%s has no default" % flag)
        continue
    shown, want = m.group(1), defaults.get(field)
    if want is None:
        bad.append("%s: no default for field %s in args.h" % (flag, field))
    elif kind == "ARG_STR":
        if shown != want.strip().strip('"'):
            bad.append("%s default %r, args.h says %s" % (flag, shown, want))
    elif kind == "ARG_INT":
        if int(shown) != int(want):
            bad.append("%s default %r, args.h says %s" % (flag, shown, want))
    else:
        value = eval(re.sub(r'(\d)f\b', r'\1', want))  # 2.0f / 3.0f -> 2.0 / 3.0
        if abs(float(shown) - value) > 1e-5 * max(1.0, abs(value)):  # -h prints %g: 6 digits
            bad.append("%s default %r, args.h says %s" % (flag, shown, want))
if len(specs) < 20:
    bad.append("parsed only %d flags out of llmc/args.h" % len(specs))
print("%d %s" % (len(specs), "; ".join(bad)))
EOF
)
nflags=${HELP_CHECK%% *}
problems=${HELP_CHECK#* }
if [ -z "$HELP_CHECK" ]; then
    fail "-h lists every flag of llmc/args.h with its default" "could not parse llmc/args.h"
elif [ -n "$problems" ] && [ "$problems" != "$HELP_CHECK" ]; then
    fail "-h lists every flag of llmc/args.h with its default" "$problems"
else
    pass "-h lists all $nflags flags of llmc/args.h with their defaults"
fi

finish
