#!/usr/bin/env bash
# dev/gpu_check.sh: the whole GPU check in one command, for a machine that has a GPU and
# little time (a lent GPU, or your own). Build first, where nvcc is (no GPU needed):
#   make gpu-kit                  # into gpukit/: trainers, tests, dev/cuda, data, CPU runs
#   bash dev/gpu_check.sh OUTDIR  # on the GPU machine, from anywhere
# Every part runs under its own time limit, so one failure or hang does not stop the rest;
# full logs go to OUTDIR/<part>.log, and a summary table is printed last (and kept in
# OUTDIR/summary.txt). On an NVIDIA H200 (2026-11-28) the whole check took 378 s. On a lent
# machine whose results come back as a few files, tar OUTDIR afterwards:
#   timeout 530 env BUDGET=470 bash dev/gpu_check.sh /tmp/gc; tar czf $OUT/gc.tgz -C /tmp gc
#
# Parts, in order:
#   1. correctness, in parallel (timings would mean nothing here):
#      the CUDA model tests against the PyTorch reference (fp32 and bf16 builds, with their
#      determinism and gradient-accumulation checks; bf16 again with GPT2_1BIT_INT8_GEMM=mma, the
#      int8 GEMMs by the fused mma.sync kernel, and with GPT2_1BIT_ATTENTION_BWD=5, the attention
#      backward's form 5); the CUDA trainer against the CPU
#      trainer's runs kept in gpukit/cpu_ref, and resume bit for bit (tests/test_cuda_vs_cpu.sh);
#      compute-sanitizer memcheck and racecheck on a small training run in both modes (and in b1.58
#      with -bq int8 and GPT2_1BIT_INT8_GEMM=mma, and with GPT2_1BIT_ATTENTION_BWD=5), and on
#      each dev/cuda program in small mode (DEV_CUDA_SMALL=1)
#   2. speed, one at a time: the training benchmark (dev/bench_gpt2_1bit_cuda.sh: d12, B=64,
#      T=1024, fp and b1.58, the latter also with -bq int8, -rn 1, and with the int8 GEMMs by the
#      fused mma.sync kernel, GPT2_1BIT_INT8_GEMM=mma: modes ternary_mma, ternary_bq8_mma, and with
#      the attention backward's form 5: ternary_att5), llm.c's train_gpt2cu on the same configuration when its binary
#      is at peers/llm.c/train_gpt2cu (an ignored folder; build it by hand), the PyTorch bf16
#      torch.compile peer (dev/bench_pytorch_gpt2.py), the same benchmark with the trainer built
#      with the cuBLAS attention (make ATTENTION=cublas: the fused attention's price or gain),
#      one d12 step profiled kernel by kernel (ncu, dev/ncu_kernels.py) in fp and ternary,
#      then every dev/cuda program at full size, the attention programs first
#
# Environment: KIT=gpukit (the kit's folder); BUDGET=480 (seconds in all, 2400 with EMU=1: a
# speed part that would run past it gets the time left, or is skipped with under 20 s left); B=64, STEPS=20
# (the benchmarks); PYTHON=python3 (the PyTorch peer's); EMU=1 checks this script's flow on
# the CPU emulator's builds (make test builds them), with tiny sizes and no sanitizer.
# For a shorter second call: PROGS="attention_forward ..." (the dev/cuda programs, default all),
# PYTORCH=0 (skip that peer), MODES="fp ternary" (the benchmark's modes).
set -u
cd "$(dirname "$0")/.." || exit 1
if [ $# -ne 1 ] || [ "$1" = -h ]; then
    echo "usage: bash dev/gpu_check.sh OUTDIR   (after make gpu-kit; see the header of this file)"
    exit 1
fi
OUT=$1
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
KIT=${KIT:-gpukit}
BUDGET=${BUDGET:-}
B=${B:-64}
STEPS=${STEPS:-20}
PYTHON=${PYTHON:-python3}
EMU=${EMU:-0}
START=$(date +%s)
elapsed() { echo $(($(date +%s) - START)); }
ALL_PROGS="quantize_weights rmsnorm_quant bitlinear_forward bitlinear_backward ternary_gemv attention_forward attention_backward
       classifier encoder_backward residual_layernorm gelu"
PROGS=${PROGS-$ALL_PROGS} # PROGS="" runs none
NPROGS=$(wc -w <<<"$PROGS")

if [ "$EMU" = 1 ]; then # the emulator's builds (tests/cuda_emu), tiny sizes
    T_BIN=./train_gpt2_1bitcu_emu; T_BIN32=""; T_BIN_CUBLAS=""; TEST_BF16=./tests/test_gpt2_1bitcu_emu
    TEST_FP32=./tests/test_gpt2_1bitcu_emu_fp32; CPU_BIN=./train_gpt2_1bit; DEV=tests/cuda_emu/build/dev_cuda
    BENCH_ENV=(BENCH_MODEL=d1 BENCH_T=32); B=2; STEPS=3
    TEST_LIMIT=900 # emulated, the model tests take a minute on a quiet 2-core machine, and several on a busy one
    BUDGET=${BUDGET:-2400}
    PEER_ARGS=(--device cpu --depth 1 --channels 64 --heads 2 -b "$B" -t 32 -x "$STEPS" --compile 0)
else
    T_BIN=$KIT/train_gpt2_1bitcu; T_BIN32=$KIT/train_gpt2_1bitcu_fp32; TEST_BF16=$KIT/test_gpt2_1bitcu
    T_BIN_CUBLAS=$KIT/train_gpt2_1bitcu_cublasattn
    TEST_FP32=$KIT/test_gpt2_1bitcu_fp32; CPU_BIN=$KIT/train_gpt2_1bit; DEV=$KIT/dev_cuda
    BENCH_ENV=(); PEER_ARGS=(-b "$B" -x "$STEPS")
    TEST_LIMIT=150 # on an H200 each model test took 4 s, the CPU comparison 21 s
    BUDGET=${BUDGET:-480}
fi

# ----------------------------------------------------------------------------
# parts: each writes OUTDIR/<name>.log and a status line OUTDIR/<name>.status:
#   "<status> <seconds> <note>", status PASS, FAIL, TIMEOUT or SKIP

# part NAME LIMIT_S CMD...: run CMD with its output in NAME.log, at most LIMIT_S seconds
part() {
    local name=$1 limit=$2
    shift 2
    local t0 rc status
    t0=$(date +%s)
    echo "[$(elapsed) s] start $name (limit ${limit} s)"
    timeout -k 5 "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=PASS ;;
        124 | 137) status=TIMEOUT ;;
        *) status=FAIL ;;
    esac
    echo "$status $(($(date +%s) - t0)) $(note "$name" "$rc")" >"$OUT/$name.status"
    echo "[$(elapsed) s] $status $name"
}
skip() { echo "SKIP 0 $2" >"$OUT/$1.status"; echo "[$(elapsed) s] SKIP $1: $2"; }

# a part in the speed phase: gets what is left of the budget, at most LIMIT_S
timed_part() {
    local name=$1 limit=$2 left
    left=$((BUDGET - $(elapsed)))
    if [ "$left" -lt 20 ]; then skip "$name" "budget of $BUDGET s spent"; return; fi
    [ "$left" -lt "$limit" ] && limit=$left
    shift 2
    part "$name" "$limit" "$@"
}

# the summary's note for a part: its key figures, read from its log
note() {
    local log=$OUT/$1.log rc=$2
    case $1 in
        test_*) grep -ho '^(test_gpt2_1bit.cu .*)$' "$log" | tail -1 ;;
        cuda_vs_cpu) grep -ho '^(test_cuda_vs_cpu.sh: .*)$' "$log" | tail -1 ;;
        sanitize_*_dev_cuda) echo "$(grep -cE 'SUMMARY: 0 (errors|hazards)' "$log") of $NPROGS programs clean" ;;
        sanitize_*) grep -hE -m1 '^========= (ERROR SUMMARY|RACECHECK SUMMARY).*' "$log" |
                        sed 's/^========= //' ;;
        bench | bench_cublas_attention) grep -hE '^(fp|ternary|ternary / fp)' "$log" | tr -s ' ' | paste -sd';' ;;
        llmc) grep -h '^llm.c:' "$log" | tail -1 ;;
        pytorch) grep -h '^pytorch:' "$log" | sed 's/; torch.*//' | tail -1 ;;
        dev_*) grep -hE '^(All results match|FAIL|error)' "$log" | head -1 ;;
        profile_*) grep -h '^all kernels' "$log" | tr -s ' ' ;;
    esac
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] && echo " (exit $rc: $(grep -m1 -iE 'error|fail' "$log" | cut -c1-120))"
}

# ----------------------------------------------------------------------------
# 0. the machine, and whether the kit's binaries load here

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "host: $(uname -srm), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu --format=csv 2>&1
    nvidia-smi 2>&1 | grep -m1 'CUDA Version'
    command -v nvcc >/dev/null && nvcc --version | tail -2
    command -v compute-sanitizer >/dev/null && compute-sanitizer --version | tail -1
    git log -1 --format='commit: %h %s' 2>/dev/null
} >"$OUT/machine.log" 2>&1
cat "$OUT/machine.log"

if [ "$EMU" != 1 ]; then
    if [ ! -x "$T_BIN" ]; then
        echo "error: $T_BIN not found ---> HINT: run make gpu-kit first (where nvcc is), and carry $KIT"
        exit 1
    fi
    # binaries built on another machine may not load here (other system libraries), or their
    # device code may not (the kit's is compressed, -Xfatbin -compress-all): rebuild then. The
    # trainer starts the GPU and loads a kernel before it opens its model, so with a missing
    # model file that file is the error it stops at
    load_msg=$("$T_BIN" -e /nonexistent/model.bin 2>&1)
    if ldd "$T_BIN" "$TEST_BF16" "$DEV/bitlinear_forward" 2>&1 | grep -q 'not found' ||
        ! grep -q "no such model file" <<<"$load_msg"; then
        echo "the kit's binaries do not load here: rebuilding them (make -B gpu-kit-bins, uncompressed: KIT_FATBIN=)"
        ldd "$T_BIN" | grep 'not found'
        echo "$load_msg" | head -3
        part rebuild 300 make -B -j "$(nproc)" gpu-kit-bins KIT_FATBIN=
        cat "$OUT/rebuild.status"
    fi
    # the default data paths the tests read (the kit carries a copy)
    if [ ! -f data/tinyshakespeare/tiny_shakespeare_train.bin ] && [ -d "$KIT/data" ]; then
        mkdir -p data && cp -r "$KIT/data/." data/
    fi
fi

# ----------------------------------------------------------------------------
# 1. correctness, in parallel

# tiny shards for the sanitizer runs (the small model tests/ref/model.bin has V=250)
python3 tests/make_tiny_data.py "$OUT/tiny" >/dev/null
SMALL=(-e tests/ref/model.bin -i "$OUT/tiny/train.bin" -j "$OUT/tiny/val.bin" -tf /nonexistent -b 4 -t 16 -x 2
       -v 1 -m 1 -s 0 -o "")
SAN=""
command -v compute-sanitizer >/dev/null && [ "$EMU" != 1 ] && SAN=compute-sanitizer

part test_fp32 "$TEST_LIMIT" "$TEST_FP32" &
part test_bf16 "$TEST_LIMIT" "$TEST_BF16" &
# the same with the int8 GEMMs by llmc/bitlinear.cuh's fused mma.sync kernel (not the default: its first GPU runs)
part test_bf16_mma "$TEST_LIMIT" env GPT2_1BIT_INT8_GEMM=mma "$TEST_BF16" &
# and with the attention backward's form 5 (dS kept for dq; not the default: its first GPU runs)
part test_bf16_att5 "$TEST_LIMIT" env GPT2_1BIT_ATTENTION_BWD=5 "$TEST_BF16" &
if [ "$EMU" = 1 ]; then
    part cuda_vs_cpu "$TEST_LIMIT" env QUICK=1 CUDA_BIN="$T_BIN" CPU_BIN="$CPU_BIN" bash tests/test_cuda_vs_cpu.sh &
else
    part cuda_vs_cpu 180 env CPU_LOGS="$KIT/cpu_ref" CUDA_BIN="$T_BIN" CPU_BIN="$CPU_BIN" bash tests/test_cuda_vs_cpu.sh &
fi
if [ -n "$SAN" ]; then
    for tool in memcheck racecheck; do
        part "sanitize_${tool}_b158" 150 $SAN --tool "$tool" --error-exitcode 1 "$T_BIN" "${SMALL[@]}" &
        # the fused int8 GEMM, forward and -bq int8 backward (cp.async into a ring of shared buffers)
        part "sanitize_${tool}_b158_mma" 150 env GPT2_1BIT_INT8_GEMM=mma $SAN --tool "$tool" --error-exitcode 1 \
            "$T_BIN" "${SMALL[@]}" -bq int8 &
        # the attention backward's form 5 (its dS scratch written by one kernel, read by the next)
        part "sanitize_${tool}_b158_att5" 150 env GPT2_1BIT_ATTENTION_BWD=5 $SAN --tool "$tool" --error-exitcode 1 \
            "$T_BIN" "${SMALL[@]}" &
        part "sanitize_${tool}_fp" 150 $SAN --tool "$tool" --error-exitcode 1 "$T_BIN" "${SMALL[@]}" -wq fp -aq none -rn 0 &
        if [ -n "$T_BIN32" ]; then
            part "sanitize_${tool}_b158_fp32" 150 $SAN --tool "$tool" --error-exitcode 1 "$T_BIN32" "${SMALL[@]}" &
        fi
    done
    # dev/cuda in small mode: one part per tool, the programs one after another
    san_dev() {
        local rc=0 p
        for p in $PROGS; do
            echo "==== $p"
            DEV_CUDA_SMALL=1 timeout 100 $SAN --tool "$1" --error-exitcode 1 "$DEV/$p" || { rc=1; echo "FAIL: $p"; }
        done
        return $rc
    }
    export -f san_dev
    export PROGS SAN DEV
    for tool in memcheck racecheck; do
        part "sanitize_${tool}_dev_cuda" 150 bash -c "san_dev $tool" &
    done
else
    skip sanitize "compute-sanitizer not found$([ "$EMU" = 1 ] && echo ' (EMU=1)')"
fi
wait
echo "[$(elapsed) s] correctness done"

# ----------------------------------------------------------------------------
# 2. speed, one at a time

# (seven runs of STEPS steps; the mma and att5 modes next to the ones they compare with, before a
# limit cuts the last)
timed_part bench 290 env "${BENCH_ENV[@]+"${BENCH_ENV[@]}"}" KEEP_LOGS="$OUT" BIN="$T_BIN" \
    MODES="${MODES:-fp ternary ternary_att5 ternary_mma ternary_bq8 ternary_bq8_mma ternary_rn1}" \
    bash dev/bench_gpt2_1bit_cuda.sh "$B" "$STEPS"

# llm.c's train_gpt2cu, the same model, batch and data (bf16, its defaults otherwise)
LLMC=${LLMC_BIN:-peers/llm.c/train_gpt2cu}
if [ "$EMU" = 1 ]; then
    skip llmc "EMU=1"
elif [ -x "$LLMC" ]; then
    run_llmc() {
        local TRAIN=data/tinyshakespeare/tiny_shakespeare_train.bin
        # -v above -x: val only at the first and last step (-v 0 would divide by zero), on the
        # train file (the val file is smaller than one batch); -s 0: no samples; -h 0: no HellaSwag
        "$LLMC" -i "$TRAIN" -j "$TRAIN" -e d12 -b "$B" -t 1024 -d $((B * 1024)) -x "$STEPS" -v 100000 -m 1 \
            -s 0 -h 0 -n 0 -y 0 || return 1
    }
    llmc_part() {
        run_llmc >"$OUT/llmc.raw" 2>&1
        local rc=$?
        cat "$OUT/llmc.raw"
        # median of steps 2..N, like the benchmark script's
        sed -n 's/^step *\([0-9]*\)\/[0-9]* | .* | \([0-9.]*\) ms | .*/\1 \2/p' "$OUT/llmc.raw" | awk '$1 > 1 { print $2 }' |
            sort -n | awk -v B="$B" '{ a[NR] = $1 } END { if (NR == 0) exit 1;
                m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2;
                printf "llm.c: median step %.1f ms, %.0f tok/s over steps 2..%d\n", m, B * 1024 / (m / 1000), NR + 1 }'
        return $rc
    }
    export -f run_llmc llmc_part
    export LLMC OUT B STEPS
    timed_part llmc 120 bash -c llmc_part
else
    skip llmc "no $LLMC (build llm.c's train_gpt2cu by hand in peers/llm.c, an ignored folder)"
fi

# the PyTorch peer (the GPU machines have torch; elsewhere: pip install -r dev/requirements-bench.txt)
if [ "${PYTORCH:-1}" = 0 ]; then
    skip pytorch "PYTORCH=0"
elif "$PYTHON" -c 'import torch, numpy' 2>/dev/null; then
    timed_part pytorch 150 env PYTHONUNBUFFERED=1 "$PYTHON" dev/bench_pytorch_gpt2.py "${PEER_ARGS[@]}"
else
    skip pytorch "$PYTHON has no torch or numpy"
fi

# the same benchmark, the trainer built with the cuBLAS attention (ATTENTION=cublas; the kit has it)
if [ -z "$T_BIN_CUBLAS" ]; then
    skip bench_cublas_attention "EMU=1: the emulator's trainer is built with the default attention only"
elif [ -x "$T_BIN_CUBLAS" ]; then
    mkdir -p "$OUT/cublas_attention"
    timed_part bench_cublas_attention 200 env KEEP_LOGS="$OUT/cublas_attention" BIN="$T_BIN_CUBLAS" \
        MODES="fp ternary" bash dev/bench_gpt2_1bit_cuda.sh "$B" "$STEPS"
else
    skip bench_cublas_attention "no $T_BIN_CUBLAS (make gpu-kit builds it)"
fi

# where one training step's GPU time goes, by kernel (Nsight Compute, one step: step 1, after the
# warm-up step 0), in the fp and the default ternary mode
if [ "$EMU" = 1 ]; then
    skip profile_fp "EMU=1"; skip profile_ternary "EMU=1"
elif command -v ncu >/dev/null; then
    profile() { # profile NAME FLAGS...
        local name=$1; shift
        GPT2_1BIT_PROFILE_STEP=1 ncu --clock-control none --profile-from-start off --csv \
            --metrics gpu__time_duration.sum "$T_BIN" -e d12 -b "$B" -t 1024 -x 3 -v 0 -s 0 -o "" "$@" \
            >"$OUT/ncu_$name.csv" 2>"$OUT/ncu_$name.err" || { tail -5 "$OUT/ncu_$name.err"; return 1; }
        "$PYTHON" dev/ncu_kernels.py "$OUT/ncu_$name.csv" 30
    }
    export -f profile
    export T_BIN OUT B PYTHON
    timed_part profile_fp 90 bash -c 'profile fp -wq fp -aq none -rn 0'
    timed_part profile_ternary 90 bash -c 'profile ternary'
else
    skip profile_fp "no ncu"; skip profile_ternary "no ncu"
fi

# dev/cuda at full size (validation, then timing), one program after another, the
# attention and the matrix products first (what the budget cuts is the last)
for p in attention_forward attention_backward bitlinear_backward classifier encoder_backward residual_layernorm gelu \
         bitlinear_forward quantize_weights rmsnorm_quant ternary_gemv; do
    grep -qw "$p" <<<"$PROGS" || continue
    if [ "$EMU" = 1 ]; then
        timed_part "dev_$p" 120 env DEV_CUDA_SMALL=1 "$DEV/$p"
    else
        timed_part "dev_$p" 100 "$DEV/$p"
    fi
done
grep -h '^| ' "$OUT"/dev_*.log 2>/dev/null | awk '!seen[$0]++' >"$OUT/dev_cuda_table.md"

# ----------------------------------------------------------------------------
# summary: one row per part, then the figures

npass=$(cat "$OUT"/*.status | grep -c '^PASS')
nother=$(cat "$OUT"/*.status | grep -vc '^PASS\|^SKIP')
{
    echo
    echo "==== gpu_check summary ($(elapsed) s; logs in $OUT)"
    grep -m1 '^device:' "$OUT/test_bf16.log" 2>/dev/null
    printf "%-28s %-8s %6s  %s\n" part status seconds note
    for f in "$OUT"/*.status; do
        read -r status secs rest <"$f"
        printf "%-28s %-8s %6s  %s\n" "$(basename "$f" .status)" "$status" "$secs" "$rest"
    done
    if [ -s "$OUT/bench.log" ]; then echo; grep -E '^(GPU|mode|fp|ternary)' "$OUT/bench.log"; fi
    if [ -s "$OUT/bench_cublas_attention.log" ]; then
        echo "the same, built with ATTENTION=cublas:"; grep -E '^(mode|fp|ternary)' "$OUT/bench_cublas_attention.log"
    fi
    for m in fp ternary; do
        if [ -s "$OUT/profile_$m.log" ]; then echo; echo "one d12 step's kernels, $m:"; head -16 "$OUT/profile_$m.log"; fi
    done
    if [ -s "$OUT/dev_cuda_table.md" ]; then echo; cat "$OUT/dev_cuda_table.md"; fi
    echo
    echo "gpu_check: $npass parts passed, $nother failed or timed out"
} | tee "$OUT/summary.txt"
[ "$nother" -eq 0 ]
