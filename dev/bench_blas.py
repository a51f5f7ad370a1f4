"""
dev/bench_blas.py: the trainer's fp32 matmuls beside a BLAS sgemm on the same machine, same run.

The peer is numpy's BLAS (OpenBLAS in the PyPI wheels, built for every x86 level and choosing
its kernels at run time, AVX-512 included). The shapes are those of dev/bench_kernels.c's
section 3, GPT-2 124M at a training batch of M = B*T = 256 tokens:
    forward   out (M,N) = inp (M,K) @ W (N,K)^T
    backward  dinp (M,K) += dout (M,N) @ W (N,K)   and   dW (N,K) += dout^T (N,M) @ inp (M,K)
for the four BitLinear matrices (qkv 768->2304, attention projection 768->768, fc 768->3072,
fc projection 3072->768) and the tied head (768->50304). The rounds alternate between ours
(./bench_kernels -s matmul, this CPU's best path or TG1_CPU_PATH's) and numpy, so a change in
the machine's load hits both; medians of the rounds are printed, and the ratio ours / BLAS in
GFLOP/s per shape and for one training step's matmuls (12 layers of the four, plus the head).

Usage:  make bench_kernels && python3 dev/bench_blas.py [--rounds 5] [--threads 2]
        (numpy: python3 -m pip install numpy)
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768), (768, 50304)]  # (K, N)
NAMES = ["qkv", "attn proj", "fc", "fc proj", "head"]
PER_STEP = [12, 12, 12, 12, 1]  # how often each shape runs in one training step of GPT-2 124M
M = 256


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    ap.add_argument("--ours", default="./bench_kernels", help="our benchmark binary (default ./bench_kernels)")
    a = ap.parse_args()
    if a.rounds < 1 or a.threads < 1:
        sys.exit("error: --rounds and --threads must be >= 1")
    return a


args = parse_args()
# the thread count must be set before numpy loads its BLAS
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "active")
try:
    import numpy as np
except ImportError:
    sys.exit("error: numpy is missing ---> HINT: python3 -m pip install numpy")


def blas_name():
    try:
        import threadpoolctl
        for info in threadpoolctl.threadpool_info():
            if info.get("user_api") == "blas":
                return "%s %s (%s kernels, %s threads)" % (info.get("internal_api"), info.get("version"),
                                                          info.get("architecture"), info.get("num_threads"))
    except ImportError:
        pass
    cfg = np.show_config(mode="dicts") if "mode" in np.show_config.__code__.co_varnames else {}
    blas = cfg.get("Build Dependencies", {}).get("blas", {}) if cfg else {}
    return "%s %s" % (blas.get("name", "numpy's BLAS"), blas.get("version", ""))


def time_call(f, reps):
    f(); f()  # warm-up, as bench_kernels
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def blas_round():
    rng = np.random.default_rng(9)
    res = []
    for K, N in SHAPES:
        x = rng.uniform(-1, 1, (M, K)).astype(np.float32)
        w = rng.uniform(-0.02, 0.02, (N, K)).astype(np.float32)
        dout = rng.uniform(-1, 1, (M, N)).astype(np.float32)
        dinp = np.zeros((M, K), np.float32)
        dw = np.zeros((N, K), np.float32)
        out = np.empty((M, N), np.float32)
        reps = 5 if N > 10000 else 20

        def fwd():
            np.matmul(x, w.T, out=out)

        def bwd():  # accumulated, as the trainer's backward: += of both products
            dinp[...] += dout @ w
            dw[...] += dout.T @ x

        res.append((time_call(fwd, reps), time_call(bwd, reps)))
    return res


def ours_round():
    cmd = [args.ours, "-s", "matmul"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("error: %s failed (%s) ---> HINT: make bench_kernels" % (" ".join(cmd), r.stderr.strip()[-200:]))
    path = re.search(r"matmuls?, M = B\*T = \d+ \(path (\w+)", r.stdout)
    # (the first line of each shape is this path's fp32 kernel; then -mp bf16's, then the spec's)
    res = []
    for K, N in SHAPES:
        m = re.search(r"^\s*%d\s+%d\s+%d\s+(\w+)\s+([\d.]+)\s+[\d.]+\s+([\d.]+)" % (M, K, N), r.stdout, re.M)
        if not m:
            sys.exit("error: no line for M=%d K=%d N=%d in %s's output" % (M, K, N, args.ours))
        res.append((float(m.group(2)), float(m.group(3))))
    cpu = re.search(r"^cpu: (.*)$", r.stdout, re.M)
    return res, (path.group(1) if path else "?"), (cpu.group(1) if cpu else "?")


if not os.path.exists(args.ours):
    sys.exit("error: %s not found ---> HINT: make bench_kernels" % args.ours)
model = "?"
try:
    with open("/proc/cpuinfo") as f:
        model = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
except (OSError, AttributeError):
    pass
print("cpu: %s, %d threads, M = %d; BLAS: %s" % (model, args.threads, M, blas_name()))
ours_all, blas_all = [], []
for rnd in range(args.rounds):
    o, path, feats = ours_round()
    ours_all.append(o)
    blas_all.append(blas_round())
    print("round %d/%d done" % (rnd + 1, args.rounds), file=sys.stderr)
print("features: %s; our path: %s; median of %d alternating rounds" % (feats, path, args.rounds))
print("%-10s %5s %5s  %9s %9s %9s  %9s %9s %9s" % ("matrix", "K", "N", "ours fwd", "BLAS fwd", "ratio",
                                                   "ours bwd", "BLAS bwd", "ratio"))
tot_o = tot_b = 0.0
for i, (K, N) in enumerate(SHAPES):
    of = statistics.median(r[i][0] for r in ours_all)
    ob = statistics.median(r[i][1] for r in ours_all)
    bf = statistics.median(r[i][0] for r in blas_all)
    bb = statistics.median(r[i][1] for r in blas_all)
    gf = 2.0 * M * N * K / 1e6
    print("%-10s %5d %5d  %9.1f %9.1f %8.2fx  %9.1f %9.1f %8.2fx   (GFLOP/s; ratio = ours / BLAS)" % (
        NAMES[i], K, N, gf / of, gf / bf, bf / of, 2 * gf / ob, 2 * gf / bb, bb / ob))
    tot_o += PER_STEP[i] * (of + ob)
    tot_b += PER_STEP[i] * (bf + bb)
flops = sum(PER_STEP[i] * 6.0 * M * K * N for i, (K, N) in enumerate(SHAPES)) / 1e9
print("one training step's matmuls (%.1f GFLOP): ours %.0f ms (%.1f GFLOP/s), BLAS %.0f ms (%.1f GFLOP/s): "
      "ours at %.2fx of BLAS" % (flops, tot_o, flops / tot_o * 1e3, tot_b, flops / tot_b * 1e3, tot_b / tot_o))
