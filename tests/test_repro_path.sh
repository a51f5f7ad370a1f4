#!/usr/bin/env bash
# tests/test_repro_path.sh: the reproduction path of the README end to end, on small local
# data instead of FineWeb and the HellaSwag download: dev/data/fineweb.py on a local text ->
# token shards; dev/data/hellaswag.py on a local jsonl -> the eval file; the CPU trainer on
# them with -h 1 (HellaSwag with every val loss) -> main.log with val and eval lines;
# dev/plot_loss.py -> a PNG. Needs what dev/data/requirements.txt installs (tiktoken, numpy:
# tests/test_data_scripts.py installs them; without them this test fails naming the command).
# Usage: bash tests/test_repro_path.sh   (needs ./train_gpt2_1bit)
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
npass=0
nfail=0
pass() { echo "PASS: $1"; npass=$((npass + 1)); }
fail() { echo "FAIL: $1: $2"; nfail=$((nfail + 1)); }
finish() { echo "(test_repro_path.sh: $npass checks passed, $nfail checks failed)"; [ "$nfail" -eq 0 ]; exit; }
[ -x ./train_gpt2_1bit ] || { fail "setup" "./train_gpt2_1bit not found ---> HINT: make train_gpt2_1bit"; finish; }
if ! "$PYTHON" -c 'import tiktoken, numpy' 2>/dev/null; then
    fail "setup" "tiktoken or numpy missing ---> HINT: $PYTHON -m pip install -r dev/data/requirements.txt"
    finish
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/test_repro_path.XXXXXX") || exit 1
trap 'rm -rf "$W"' EXIT

# tiktoken offline (no network here or in CI): its cache holds the BPE files under
# sha1(url); fill it from the local GPT-2 files, as tests/test_prepro.py explains
export TIKTOKEN_CACHE_DIR=$W/tiktoken_cache
mkdir -p "$TIKTOKEN_CACHE_DIR"
if ! "$PYTHON" - "$TIKTOKEN_CACHE_DIR" <<'EOF'
import hashlib, os, shutil, sys
import prepro_tinyshakespeare as prepro
d = prepro.find_bpe_dir(None)
for name in prepro.BPE_FILES:
    url = prepro.BPE_BASE_URL + name
    shutil.copy(os.path.join(d, name), os.path.join(sys.argv[1], hashlib.sha1(url.encode()).hexdigest()))
EOF
then
    fail "setup" "cannot fill the tiktoken cache from the GPT-2 BPE files ---> HINT: python3 prepro_tinyshakespeare.py finds or downloads them"
    finish
fi

# a local text: tiny Shakespeare's first 60 kB, documents split at blank lines
TEXT=$W/small.txt
src=../shared/data/tinyshakespeare.txt
[ -f "$src" ] || src=data/tinyshakespeare/input.txt
if [ ! -f "$src" ]; then fail "setup" "no tiny Shakespeare text (../shared/data/tinyshakespeare.txt)"; finish; fi
head -c 60000 "$src" >"$TEXT"
if "$PYTHON" dev/data/fineweb.py -i "$TEXT" -o "$W/data/small" -n small -s 4096 -w 1 >"$W/fineweb.out" 2>&1 &&
   [ -f "$W/data/small/small_val_000000.bin" ] && [ -f "$W/data/small/small_train_000001.bin" ]; then
    pass "dev/data/fineweb.py: a local text -> $(ls "$W/data/small" | grep -c '\.bin$') shards"
else
    fail "dev/data/fineweb.py on a local text" "$(tail -2 "$W/fineweb.out" | tr '\n' ' ')"
    finish
fi

# a local HellaSwag jsonl, 6 examples (the format of the real one: ctx, four endings, label)
"$PYTHON" - "$W/hs.jsonl" <<'EOF'
import json, sys
ex = [("The king rose from his throne and", ["spoke to the court.", "ate the moon.", "became a river.", "sang in fish."], 0),
      ("She opened the door and", ["the door was a cloud.", "walked into the garden.", "forty seven.", "blue blue blue."], 1),
      ("To make tea, first", ["paint the roof.", "sell the car.", "boil some water.", "read the sky."], 2),
      ("The soldiers marched", ["into the sea of jam.", "sideways through time.", "nowhere at all, loudly.", "toward the castle gates."], 3),
      ("He wrote a letter to", ["his brother in the north.", "the number nine.", "a spoon of rain.", "every cloud."], 0),
      ("After the storm the sailors", ["ate the anchor.", "repaired the torn sails.", "forgot the sea.", "became birds."], 1)]
with open(sys.argv[1], "w") as f:
    for i, (ctx, endings, label) in enumerate(ex):
        f.write(json.dumps({"ind": i, "ctx": ctx, "endings": endings, "label": label}) + "\n")
EOF
mkdir -p "$W/run/data/hellaswag"
if "$PYTHON" dev/data/hellaswag.py --jsonl "$W/hs.jsonl" -o "$W/run/data/hellaswag/hellaswag_val.bin" >"$W/hs.out" 2>&1; then
    pass "dev/data/hellaswag.py: a local jsonl -> the eval file"
else
    fail "dev/data/hellaswag.py on a local jsonl" "$(tail -2 "$W/hs.out" | tr '\n' ' ')"
    finish
fi

# train on them with -h 1 (the trainer reads the eval file from data/hellaswag/ of its directory)
cd "$W/run" || exit 1
if timeout 300 "$REPO/train_gpt2_1bit" -e d1 -i "$W/data/small/small_train_*.bin" -j "$W/data/small/small_val_*.bin" \
        -tf /nonexistent -b 4 -t 64 -x 4 -v 2 -m 1 -s 0 -h 1 -o out >"$W/train.out" 2>&1; then
    pass "the trainer on the shards with -h 1"
else
    fail "the trainer on the shards with -h 1" "$(grep -m1 error "$W/train.out")"
    finish
fi
n_eval=$(grep -c '^s:[0-9]* eval:0\.[0-9]*$\|^s:[0-9]* eval:1\.0000$' out/main.log)
n_val=$(grep -c '^s:[0-9]* tel:' out/main.log)
if [ "$n_eval" = 3 ] && [ "$n_val" = 3 ]; then pass "main.log: a HellaSwag line with each of the 3 val losses (steps 0, 2, 4)"
else fail "main.log's eval lines" "$n_eval eval and $n_val val lines, want 3 and 3"; fi
if grep -q "HellaSwag acc_norm" "$W/train.out"; then pass "the trainer prints HellaSwag acc_norm"
else fail "the trainer prints HellaSwag acc_norm" "no such line"; fi

# the CUDA trainer's HellaSwag path, on the CPU emulator's build when make test has built it
if [ -x "$REPO/train_gpt2_1bitcu_emu" ]; then
    if timeout 300 "$REPO/train_gpt2_1bitcu_emu" -e d1 -i "$W/data/small/small_train_*.bin" \
            -j "$W/data/small/small_val_*.bin" -tf /nonexistent -b 4 -t 64 -x 2 -v 2 -m 1 -s 0 -h 1 -o outcu \
            >"$W/traincu.out" 2>&1 && [ "$(grep -c '^s:[0-9]* eval:' outcu/main.log)" = 2 ]; then
        pass "the CUDA trainer (emulated) with -h 1: a HellaSwag line with each val loss"
    else
        fail "the CUDA trainer (emulated) with -h 1" "$(grep -m1 -i error "$W/traincu.out")"
    fi
fi

# the plot of that log
if "$PYTHON" "$REPO/dev/plot_loss.py" out/main.log -o plot.png >"$W/plot.out" 2>&1 && [ -s plot.png ]; then
    pass "dev/plot_loss.py draws the run"
else
    fail "dev/plot_loss.py on the run" "$(tail -2 "$W/plot.out" | tr '\n' ' ')"
fi
finish
