#!/usr/bin/env bash
# tests/test_bpe.sh: builds and runs tests/test_bpe.c, the C GPT-2 BPE encoder (llmc/bpe.h) token
# for token against prepro_tinyshakespeare.py. Writes the tokenizer file and the expected tokens
# into a temp dir (removed at exit), so it leaves nothing behind; needs python3 (stdlib) and gcc.
# Usage: bash tests/test_bpe.sh
# Prints test_bpe's PASS/FAIL lines; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CC=${CC:-gcc}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# prepro finds the text and GPT-2's BPE files (../shared/data when present) and writes
# $TMP/gpt2_tokenizer.bin; its output is shown only if it fails
if ! "$PYTHON" prepro_tinyshakespeare.py --out-dir "$TMP" >"$TMP/prepro.log" 2>&1; then
    cat "$TMP/prepro.log"
    echo "FAIL: prepro_tinyshakespeare.py could not write the tokenizer file"
    exit 1
fi
"$PYTHON" tests/make_bpe_cases.py --out "$TMP/bpe_cases.bin"
# built into the temp dir, not tests/, so that no binary is left in the work tree
"$CC" -O2 -std=gnu11 -Wall -Wextra tests/test_bpe.c -lm -o "$TMP/test_bpe"
"$TMP/test_bpe" "$TMP/gpt2_tokenizer.bin" "$TMP/bpe_cases.bin"
