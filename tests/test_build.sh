#!/usr/bin/env bash
# tests/test_build.sh: the Makefile's CUDA build rules, with a stand-in for nvcc that
# writes its arguments into the binary it is asked for (no GPU and no CUDA toolkit needed),
# in a copy of the sources in a temp dir. Checks:
#  - the trainer builds where the tiny Shakespeare files cannot be made (no network, no
#    ../shared: a GPU machine), with a note, not an error;
#  - the default build has machine code for sm_80, sm_89 and sm_90, PTX for compute_90,
#    and passes that list to the code (its start-up error names it);
#  - make PRECISION=FP32 after a bf16 build rebuilds the trainer (and back), and so does
#    another GPU_COMPUTE_CAPABILITY; a make with nothing changed rebuilds nothing;
#  - the fused attention is the default, ATTENTION=cublas rebuilds with the cuBLAS one (and
#    back), another value is refused.
# Usage: bash tests/test_build.sh
set -u
cd "$(dirname "$0")/.." || exit 1
npass=0
nfail=0
pass() { echo "PASS: $1"; npass=$((npass + 1)); }
fail() { echo "FAIL: $1: $2"; nfail=$((nfail + 1)); }
W=$(mktemp -d "${TMPDIR:-/tmp}/test_build.XXXXXX") || exit 1
trap 'rm -rf "$W"' EXIT
cp -r Makefile train_gpt2_1bit.c train_gpt2_1bit.cu prepro_tinyshakespeare.py llmc "$W/" || exit 1
cat >"$W/fake_nvcc" <<'EOF'
#!/usr/bin/env bash
out=""; prev=""
for a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done
echo "$*" >"$out"
EOF
chmod +x "$W/fake_nvcc"
# PYTHON=false: making the data fails at once, as it does on a machine without network or ../shared
mk() { make -C "$W" NVCC="$W/fake_nvcc" PYTHON=false "$@" 2>&1; }

out=$(mk train_gpt2_1bitcu)
rc=$?
if [ "$rc" -eq 0 ] && [ -f "$W/train_gpt2_1bitcu" ] && grep -q 'note: tiny Shakespeare could not be prepared' <<<"$out"; then
    pass "the CUDA trainer builds without its data, with a note"
else
    fail "the CUDA trainer builds without its data, with a note" "exit status $rc: $(tail -2 <<<"$out" | tr '\n' ' ')"
fi
args=$(cat "$W/train_gpt2_1bitcu" 2>/dev/null)
ok=1
for want in "arch=compute_80,code=sm_80" "arch=compute_89,code=sm_89" "arch=compute_90,code=sm_90" \
            "arch=compute_90,code=compute_90" "-DCUDA_ARCH_LIST=\"80 89 90\""; do
    grep -qF -- "$want" <<<"$args" || { ok=0; fail "default architectures" "no '$want' in: $args"; }
done
[ "$ok" = 1 ] && pass "the default build: sm_80, sm_89, sm_90 and compute_90 PTX, the list passed to the code"
if grep -q ENABLE_FP32 <<<"$args"; then fail "the default precision is bf16" "-DENABLE_FP32 in: $args"; fi

# rebuilt: the binary's recorded arguments changed; not rebuilt: make printed no nvcc line
rebuilt_with() { # NAME EXPECTED_SUBSTRING MAKE_ARGS...
    local name=$1 want=$2
    shift 2
    local before out2
    before=$(cat "$W/train_gpt2_1bitcu")
    out2=$(mk train_gpt2_1bitcu "$@")
    if [ "$(cat "$W/train_gpt2_1bitcu")" != "$before" ] && grep -qF -- "$want" "$W/train_gpt2_1bitcu"; then pass "$name"
    else fail "$name" "not rebuilt with '$want': $(tail -1 <<<"$out2")"; fi
}
rebuilt_with "PRECISION=FP32 after a bf16 build rebuilds the trainer in fp32" "-DENABLE_FP32" PRECISION=FP32
out=$(mk train_gpt2_1bitcu PRECISION=FP32)
if grep -q fake_nvcc <<<"$out"; then fail "nothing changed: nothing rebuilt" "nvcc ran again: $out"
else pass "nothing changed: nothing rebuilt"; fi
rebuilt_with "back to bf16 rebuilds it again" "-DCUDA_ARCH_LIST" PRECISION=BF16
if grep -q ENABLE_FP32 "$W/train_gpt2_1bitcu"; then fail "back to bf16" "still -DENABLE_FP32"; fi
rebuilt_with "GPU_COMPUTE_CAPABILITY=90 rebuilds it for sm_90 alone" "-DCUDA_ARCH_LIST=\"90\"" GPU_COMPUTE_CAPABILITY=90
if grep -q ATTENTION_CUBLAS "$W/train_gpt2_1bitcu"; then fail "the default attention is the fused one" "-DATTENTION_CUBLAS"
else pass "the default attention is the fused one"; fi
rebuilt_with "ATTENTION=cublas rebuilds it with the cuBLAS attention" "-DATTENTION_CUBLAS" GPU_COMPUTE_CAPABILITY=90 \
    ATTENTION=cublas
rebuilt_with "ATTENTION=fused rebuilds it again" "-DCUDA_ARCH_LIST" GPU_COMPUTE_CAPABILITY=90 ATTENTION=fused
if grep -q ATTENTION_CUBLAS "$W/train_gpt2_1bitcu"; then fail "back to the fused attention" "still -DATTENTION_CUBLAS"; fi
out=$(mk train_gpt2_1bitcu ATTENTION=flash)
if [ $? -ne 0 ] && grep -q 'use ATTENTION=fused (the default) or ATTENTION=cublas' <<<"$out"; then
    pass "ATTENTION=flash: refused, with the two choices named"
else fail "ATTENTION=flash is refused" "$(tail -1 <<<"$out")"; fi

echo "(test_build.sh: $npass checks passed, $nfail checks failed)"
[ "$nfail" -eq 0 ]
