#!/usr/bin/env bash
# tests/test_gpu_check_emu.sh: dev/gpu_check.sh's own flow (parts, time limits, parsing,
# summary) on the CPU emulator's builds (EMU=1: tiny sizes, no sanitizer, no llm.c), so
# that the script a GPU session runs at once has run before. One PASS/FAIL line per part
# (a skipped part is printed, not counted), and the summary must hold the benchmark's figures.
# Usage: bash tests/test_gpu_check_emu.sh   (make test builds what it runs)
set -u
cd "$(dirname "$0")/.." || exit 1
W=$(mktemp -d "${TMPDIR:-/tmp}/test_gpu_check.XXXXXX") || exit 1
trap 'rm -rf "$W"' EXIT
EMU=1 bash dev/gpu_check.sh "$W/out" >"$W/log" 2>&1
rc=$?
nfail=0
for f in "$W"/out/*.status; do
    read -r status secs note <"$f"
    name="gpu_check part $(basename "$f" .status) (EMU=1): $status in $secs s${note:+, $note}"
    case $status in
        PASS) echo "PASS: $name" ;;
        SKIP) echo "skip: $name" ;;
        *) echo "FAIL: $name: see its log"; tail -5 "$W/out/$(basename "$f" .status).log"; nfail=$((nfail + 1)) ;;
    esac
done
if grep -q '^==== gpu_check summary' "$W/out/summary.txt" && grep -Eq '^ternary +[0-9.]+ +[0-9]+ ' "$W/out/summary.txt"; then
    echo "PASS: gpu_check's summary table holds the benchmark's figures"
else
    echo "FAIL: gpu_check's summary: no summary or no benchmark figures"; tail -20 "$W/log"; nfail=$((nfail + 1))
fi
if [ "$rc" -ne 0 ] && [ "$nfail" -eq 0 ]; then echo "FAIL: gpu_check exited with $rc but no part failed"; nfail=1; fi
[ "$nfail" -eq 0 ]
