# tests/lib.sh: the shared start of the shell tests that run the trainer on tiny
# data (test_bad_input.sh, test_resume.sh). Source it after `cd` to the repo
# root with TEST_NAME set. It gives:
#   PYTHON BIN MODEL     python, the trainer (TRAIN_BIN= tests another build), tests/ref/model.bin
#   W TRAIN VAL          a temp dir removed on exit, tiny shards in it (tests/make_tiny_data.py)
#   pass NAME / fail NAME DETAILS, and finish: the summary line and the exit status
#   TIMEOUT              "timeout 60" where available: a hung run fails instead of stalling
PYTHON=${PYTHON:-python3}
BIN=${TRAIN_BIN:-./train_gpt2_1bit}
MODEL=tests/ref/model.bin

npass=0
nfail=0
pass() { echo "PASS: $1"; npass=$((npass + 1)); }
fail() { echo "FAIL: $1: $2"; nfail=$((nfail + 1)); }
finish() {
    echo "($TEST_NAME: $npass checks passed, $nfail checks failed)"
    [ "$nfail" -eq 0 ]
}

if [ ! -x "$BIN" ]; then fail "setup" "$BIN not found ---> HINT: build it (make train_gpt2_1bit)"; exit 1; fi
if [ ! -f "$MODEL" ]; then fail "setup" "$MODEL not found"; exit 1; fi

W=$(mktemp -d "${TMPDIR:-/tmp}/$TEST_NAME.XXXXXX") || exit 1
trap 'chmod -R u+w "$W" 2>/dev/null; rm -rf "$W"' EXIT
"$PYTHON" tests/make_tiny_data.py "$W/data" || { fail "setup" "tests/make_tiny_data.py failed"; exit 1; }
TRAIN=$W/data/train.bin
VAL=$W/data/val.bin

# OpenMP threads that spin-wait at barriers crawl when another job holds a core
# (0.07 s -> 0.5 s .. 10 s per tiny run); sleeping waits change no result
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
TIMEOUT=""
if command -v timeout >/dev/null 2>&1; then TIMEOUT="timeout 60"; fi
