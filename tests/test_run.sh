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

# -h: exits 0 and lists every flag of run_gpt2_1bit.c's table (RUN_ARG_SPECS) with the default that
# run_args_defaults sets (a NULL string shows as none); --help too
help=$(./run_gpt2_1bit -h); rc=$?
problems=$(python3 - run_gpt2_1bit.c "$help" <<'PY'
import re, sys
src, help_lines = open(sys.argv[1]).read(), sys.argv[2].splitlines()
specs = re.findall(r'ARG_OF\(RunArgs, "(-[A-Za-z]+)",\s*(ARG_\w+),\s*(\w+),', src)
body = src[src.index("run_args_defaults(RunArgs"):]
defaults = dict(re.findall(r'a->(\w+)\s*=\s*([^;=][^;]*);', body[:body.index("\n}")]))
bad = [] if len(specs) >= 13 else ["parsed only %d flags out of run_gpt2_1bit.c" % len(specs)]
for flag, kind, field in specs:
    line = next((l for l in help_lines if l.split()[:1] == [flag]), None)
    m = re.search(r'\(default (.*)\)\s*$', line or "")
    want = defaults.get(field)
    if m is None or want is None:
        bad.append("%s: %s" % (flag, "not listed with a default" if m is None else "no default in run_args_defaults"))
        continue
    want = "none" if want == "NULL" else want.strip('"')
    ok = float(m.group(1)) == float(want.rstrip("f")) if kind == "ARG_FLOAT" else m.group(1) == want
    if not ok:
        bad.append("%s shows default %r, run_args_defaults says %s" % (flag, m.group(1), want))
print("; ".join(bad))
PY
)
if [ "$rc" -eq 0 ] && [ -z "$problems" ]; then pass "-h lists every flag with its default (from the table)"
else fail "-h lists every flag with its default: status $rc: $problems"; fi
./run_gpt2_1bit --help | grep -q -- "-bench" && pass "--help is -h" || fail "--help"

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
expect_error "malformed float" "flag -st expects a finite number" -e "$tmp/d1.packed" -st 1.0x
expect_error "flag missing its value" "flag -g needs a value" -e "$tmp/d1.packed" -g
expect_error "bad float format" "flag -ff must be 32 or 16" -e "$tmp/d1/model_00000001.bin" -x "$tmp/x.packed" -ff 8
expect_error "-n 0" "flag -n must be at least 1" -e "$tmp/d1.packed" -n 0
expect_error "-g 0" "flag -g must be at least 1" -e "$tmp/d1.packed" -g 0
expect_error "negative temperature" "flag -st must be 0 or more" -e "$tmp/d1.packed" -st -1
expect_error "negative top-k" "flag -tk must be 0 or more" -e "$tmp/d1.packed" -tk -1
expect_error "-bench 3" "flag -bench must be 0, 1 or 2" -e "$tmp/d1.packed" -bench 3

# numbers that parse but do not fit: no silent cast to int, no NaN or inf temperature
expect_error "-g beyond int's range" "flag -g expects an integer that fits an int" -e "$tmp/d1.packed" -g 99999999999
expect_error "-n beyond int's range" "flag -n" -e "$tmp/d1.packed" -n -99999999999
expect_error "-st nan" "flag -st expects a finite number" -e "$tmp/d1.packed" -st nan
expect_error "-st inf" "flag -st expects a finite number" -e "$tmp/d1.packed" -st inf

# the prompt limit is the context (1024 for d1) less <|endoftext|> and one new token: 1022
p1023=$(python3 -c "print('word' + ' word' * 1022)")  # 1023 tokens
p1022=$(python3 -c "print('word' + ' word' * 1021)")  # 1022 tokens
expect_error "a 1023-token prompt: the message gives the real limit, 1022" "-p is 1023 tokens long; at most 1022 fit" \
    -e "$tmp/d1.packed" -p "$p1023" -g 1
out=$(./run_gpt2_1bit -e "$tmp/d1.packed" -p "$p1022" -g 1 2>&1); rc=$?
[ "$rc" -eq 0 ] && grep -q '^--- sample 1' <<<"$out" && pass "a 1022-token prompt generates" \
    || fail "a 1022-token prompt generates: status $rc: $(grep -m1 error <<<"$out")"

# a prompt without the tokenizer: one message, the error, not a warning and the error twice over
err=$(./run_gpt2_1bit -e "$tmp/d1.packed" -p "Hello" -tf "$tmp/no_tok.bin" 2>&1 >/dev/null); rc=$?
if [ "$rc" -ne 0 ] && [ "$(grep -c "no_tok.bin" <<<"$err")" -eq 1 ] && grep -q "^error: -p needs the tokenizer" <<<"$err"; then
    pass "a prompt with a missing tokenizer: one error, no warning before it"
else
    fail "a prompt with a missing tokenizer: one error, no warning before it: status $rc, stderr: $err"
fi

# -e a directory: says so
expect_error "-e a directory" "'$tmp/d1' is a directory" -e "$tmp/d1" -g 4

# packed files: a CRC-32 of everything after the header in slots 13..14; a copy with one thing
# wrong and its checksum recomputed reaches the check behind it (scales finite and > 0, codes
# that are trits); a random body fails the checksum. The 2-bit file is exported here.
./run_gpt2_1bit -e "$tmp/d1/model_00000001.bin" -x "$tmp/d1_2bit.packed" > /dev/null 2>&1
python3 - "$tmp" <<'PY'
import os, struct, sys, zlib, random
d = sys.argv[1]
def load(name):
    data = bytearray(open(f"{d}/{name}", "rb").read())
    return list(struct.unpack("<256i", data[:1024])), data
def save(name, h, data, fix_crc=True):
    if fix_crc:
        h[13], h[14] = 20261128, struct.unpack("<i", struct.pack("<I", zlib.crc32(bytes(data[1024:]))))[0]
    data[:1024] = struct.pack("<256i", *h)
    open(f"{d}/{name}", "wb").write(data)
h, data = load("d1_2bit.packed")
print("crc_ok" if (h[13], h[14] & 0xFFFFFFFF) == (20261128, zlib.crc32(bytes(data[1024:]))) else "crc_missing",
      file=open(f"{d}/crc_status", "w"))
L = h[4]
scales_at, packed_at = 1024, 1024 + 16 * L
for name, value in (("scale_nan", float("nan")), ("scale_inf", float("inf")), ("scale_neg", -1e30), ("scale_zero", 0.0)):
    h, data = load("d1_2bit.packed")
    data[scales_at + 4:scales_at + 8] = struct.pack("<f", value)  # layer 0's attproj
    save(f"{name}.packed", h, data)
h, data = load("d1_2bit.packed")
data[packed_at + 100] = 0xFF  # four 2-bit codes 3
save("code3.packed", h, data)
h, data = load("d1.packed")  # the 1.6-bit file: a byte is 5 base-3 digits, at most 242
data[1024 + 16 * L + 100] = 250
save("byte250.packed", h, data)
h, data = load("d1_2bit.packed")
rng = random.Random(1)
data[1024:] = bytes(rng.randrange(256) for _ in range(len(data) - 1024))
save("random_body.packed", h, data, fix_crc=False)
h, data = load("d1_2bit.packed")
data[packed_at + 7] ^= 0x10  # one bit
save("bitrot.packed", h, data, fix_crc=False)
h, data = load("d1_2bit.packed")
h[0] = 12345
save("magic.packed", h, data, fix_crc=False)
h, data = load("d1_2bit.packed")
h[13] = 0
save("no_crc.packed", h, data, fix_crc=False)
# a checkpoint (model file) with a NaN weight, its checksum recomputed: slots 21..22 over the parameters
h, data = load("d1/model_00000001.bin")
data[1024 + 4 * 10:1024 + 4 * 11] = struct.pack("<f", float("nan"))  # wte
h[22] = struct.unpack("<i", struct.pack("<I", zlib.crc32(bytes(data[1024:]))))[0]
data[:1024] = struct.pack("<256i", *h)
open(f"{d}/nan_weight.bin", "wb").write(data)
# and one with a weight beyond fp16's range, for an -ff 16 export
h, data = load("d1/model_00000001.bin")
data[1024 + 4 * 10:1024 + 4 * 11] = struct.pack("<f", 1e6)
h[22] = struct.unpack("<i", struct.pack("<I", zlib.crc32(bytes(data[1024:]))))[0]
data[:1024] = struct.pack("<256i", *h)
open(f"{d}/big_weight.bin", "wb").write(data)
PY
[ "$(cat "$tmp/crc_status")" = crc_ok ] && pass "a packed file carries the CRC-32 of its payload (header slots 13..14)" \
    || fail "a packed file carries the CRC-32 of its payload (header slots 13..14)"
expect_error "packed file with a NaN scale" "'$tmp/scale_nan.packed' has an invalid scale nan for layer 0's attproj" \
    -e "$tmp/scale_nan.packed" -g 4
expect_error "packed file with an inf scale" "'$tmp/scale_inf.packed' has an invalid scale inf" -e "$tmp/scale_inf.packed" -g 4
expect_error "packed file with a scale of -1e30" "'$tmp/scale_neg.packed' has an invalid scale -1e+30" -e "$tmp/scale_neg.packed" -g 4
expect_error "packed file with a scale of 0" "'$tmp/scale_zero.packed' has an invalid scale 0" -e "$tmp/scale_zero.packed" -g 4
expect_error "2-bit packed file with a code 3 (no trit)" "'$tmp/code3.packed' has an invalid 2-bit byte 0xff in layer 0's qkv" \
    -e "$tmp/code3.packed" -g 4
expect_error "1.6-bit packed file with a byte above 242" "'$tmp/byte250.packed' has an invalid base-3 byte 0xfa" \
    -e "$tmp/byte250.packed" -g 4
expect_error "packed file with a valid header and a random body" "'$tmp/random_body.packed' fails its checksum" \
    -e "$tmp/random_body.packed" -g 4
expect_error "packed file with one flipped bit" "'$tmp/bitrot.packed' fails its checksum" -e "$tmp/bitrot.packed" -g 4
expect_error "packed file without its checksum" "'$tmp/no_crc.packed' has an invalid header: no checksum" -e "$tmp/no_crc.packed" -g 4
err=$(./run_gpt2_1bit -e "$tmp/magic.packed" -g 4 2>&1 >/dev/null); rc=$?
if [ "$rc" -eq 1 ] && grep -q "^error: -e '$tmp/magic.packed' is neither a training checkpoint" <<<"$err" &&
   grep -q -- "---> HINT: .*run_gpt2_1bit -x" <<<"$err" && ! grep -q -- "d12" <<<"$err"; then
    pass "a file of the wrong magic: names both kinds of model file, no -e d12 hint -> $(head -n 1 <<<"$err")"
else
    fail "a file of the wrong magic: names both kinds of model file, no -e d12 hint: status $rc, stderr: $err"
fi
expect_error "a checkpoint with a NaN weight" "'$tmp/nan_weight.bin' has a non-finite weight (nan) in tensor wte" \
    -e "$tmp/nan_weight.bin" -g 4
expect_error "exporting with -ff 16 a weight beyond fp16's range" "-ff 16: tensor wte holds 1e+06" \
    -e "$tmp/big_weight.bin" -x "$tmp/big.packed" -ff 16
[ ! -e "$tmp/big.packed" ] && [ ! -e "$tmp/big.packed.tmp" ] && pass "the failed export leaves no file" \
    || fail "the failed export leaves no file"
echo "(test_run.sh: $npass checks passed, $nfail checks failed)"
[ "$nfail" -eq 0 ]
