#!/usr/bin/env bash
# tests/test_cuda_resources.sh: every CUDA kernel we ship against the largest block it is
# launched with: registers, shared memory, spills. Needs nvcc (compiles, runs nothing), no GPU.
#
# Why: a kernel whose registers a thread x threads a block exceed the block's 64K registers
# does not launch (cudaErrorLaunchOutOfResources). ptxas compiles it without a word, and the
# CPU emulator (tests/cuda_emu) knows nothing of registers, so only a GPU would tell, at run
# time. This script tells at compile time.
#
# What it does: compiles each translation unit (the seven dev/cuda programs and the trainer),
# in bf16 and fp32 (-DENABLE_FP32), for sm_90 and sm_80, to PTX (nvcc -ptx) and then to a cubin
# with ptxas -v, and reads for every kernel: registers a thread, static shared memory, stack
# frame and spills (ptxas -v), and its __launch_bounds__ (.maxntid in the PTX). Then, for each
# kernel, with B its largest launch:
#   - registers: ceil(B/32) warps x regs x 32 rounded up to 256 (registers are allocated a warp
#     at a time, in units of 256) <= 65536, the registers of a block (sm_80, sm_90);
#   - shared memory: static + dynamic <= 48 KiB, or for a kernel listed in OPTIN below (it opts
#     in with cudaFuncSetAttribute before its first launch) <= the GPU's opt-in maximum, 163 KiB
#     on sm_80 and 227 KiB on sm_90;
#   - B <= 1024, and B <= its __launch_bounds__ if it has one (a larger launch fails);
#   - no stack frame and no spills (a local array or a spill puts the kernel's data in local
#     memory, i.e. DRAM), unless ALLOW below lists the kernel with a reason;
#   - and, for the whole unit, no compiler warning (nvcc's front end or ptxas).
#
# B, the largest block a kernel is launched with, comes from the sources: every launch
# `kernel<<<grid, block[, smem]>>>` and every launch through a macro (`#define LAUNCH(kernel, n,
# block, ...)` whose body launches `kernel<<<...>>>`) whose block size is a number or a
# #define'd number is read, with its line. A kernel launched with a block size the script
# cannot read (a variable, a dim3, cudaLaunchCooperativeKernel, a function pointer) needs a
# row in LAUNCHES below; without one it FAILs, and so does a row for a kernel that no longer
# exists. B is the largest of the launches read and the row. A new kernel, or a launch made
# larger, is therefore checked against its registers without anyone remembering to.
#
# Output: the per-kernel table of each translation unit, then "PASS: <file>" or one
# "FAIL: <file> <kernel>: <why>" per problem; exit status 1 on any FAIL.
# Without nvcc: one "SKIP: ..." line (neither PASS nor FAIL) and exit status 0.
# Usage: bash tests/test_cuda_resources.sh     (NVCC=, PYTHON=, JOBS= override the defaults)
cd "$(dirname "$0")/.." || exit 1
NVCC=${NVCC:-nvcc}
PYTHON=${PYTHON:-python3}
if ! command -v "$NVCC" >/dev/null 2>&1; then
    echo "SKIP: nvcc not found: the CUDA kernels' registers and shared memory were not checked"
    exit 0
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then echo "FAIL: setup: $PYTHON not found"; exit 1; fi
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

# every CUDA translation unit we ship (CUDA_SOURCES= checks others, e.g. a file of your own)
SOURCES=${CUDA_SOURCES:-"dev/cuda/quantize_weights.cu dev/cuda/rmsnorm_quant.cu dev/cuda/bitlinear_forward.cu
         dev/cuda/bitlinear_backward.cu dev/cuda/ternary_gemv.cu dev/cuda/attention_forward.cu
         dev/cuda/attention_backward.cu dev/cuda/classifier.cu dev/cuda/encoder_backward.cu
         dev/cuda/residual_layernorm.cu dev/cuda/gelu.cu train_gpt2_1bit.cu"}
ARCHS="90 80"

# Kernels whose largest launch the source scan cannot read: file (or * for any), kernel (as
# ptxas names it, template arguments included; name<*> is every instance of a template), its
# largest block, its largest dynamic shared memory in bytes, and where that comes from. The
# block is a number (0: never launched), or block_sizes: the largest of that file's
# `block_sizes[] = {...}` (the sizes a dev/cuda harness runs every variant at), or
# launch_bounds: the kernel's own __launch_bounds__, for a launcher that refuses larger blocks.
LAUNCHES='
*                              cuda_probe_kernel           0           0     never launched: cuda_device_init reads its attributes (cudaFuncGetAttributes) to load the module
dev/cuda/quantize_weights.cu   absmean_partial_kernel1     block_sizes 0     quantize_weights1: <<<grid, block>>>
dev/cuda/quantize_weights.cu   ternarize_kernel1           block_sizes 0     quantize_weights1: <<<grid, block>>>
dev/cuda/quantize_weights.cu   pack2_kernel1               block_sizes 0     quantize_weights1: <<<..., block>>>
dev/cuda/quantize_weights.cu   quantize_weights_kernel2    block_sizes 0     launch_cooperative: cudaLaunchCooperativeKernel(kernel, grid, block, args, 0, 0)
dev/cuda/quantize_weights.cu   quantize_weights_kernel3    block_sizes 0     launch_cooperative: cudaLaunchCooperativeKernel(kernel, grid, block, args, 0, 0)
dev/cuda/rmsnorm_quant.cu      rmsnorm_quant_kernel1       block_sizes 0     rmsnorm_quant1: <<<..., block>>>
dev/cuda/rmsnorm_quant.cu      rmsnorm_quant_kernel2       block_sizes 0     rmsnorm_quant2: <<<..., block>>>
dev/cuda/rmsnorm_quant.cu      rmsnorm_quant_kernel3<*>    launch_bounds 0   rmsnorm_quant3: kernels3[] pairs each instance with its bound, MAX_BLOCK3(V), and larger blocks are refused
dev/cuda/bitlinear_forward.cu  bitlinear_epilogue_kernel1  block_sizes 0     bitlinear_forward1: <<<..., block>>>
dev/cuda/bitlinear_forward.cu  bitlinear_forward_kernel2   block_sizes 0     bitlinear_forward2: dim3 threads(32, block / 32)
dev/cuda/bitlinear_backward.cu fold_scale_kernel2          block_sizes 0     bitlinear_backward2: <<<sms * 8, block>>>
dev/cuda/ternary_gemv.cu       ternary_gemv_kernel1        block_sizes 0     ternary_gemv1: <<<..., block>>>
dev/cuda/ternary_gemv.cu       ternary_gemv_kernel2        block_sizes 8192  ternary_gemv2: x of K = 8192 as 128 chunks of 4 int4
dev/cuda/ternary_gemv.cu       ternary_gemv_kernel3        block_sizes 11264 ternary_gemv3: 256-int LUT + 128 chunks x 20 ints (K = 8192: ld3 = 1648)
*                              attention_forward_kernel2<*>        launch_bounds 0  llmc/attention.cuh: kernel<DPL, RPW><<<grid, ATT_THREADS>>> in a template launcher
*                              attention_backward_dkdv_kernel2<*>  launch_bounds 0  llmc/attention.cuh: as above
*                              attention_backward_dq_kernel2<*>    launch_bounds 0  llmc/attention.cuh: as above
*                              attention_forward_kernel3<*>        launch_bounds 0  llmc/attention.cuh: kernel<HSP><<<grid, ATT_THREADS>>> in a template launcher
*                              attention_backward_dkdv_kernel3<*>  launch_bounds 0  llmc/attention.cuh: as above
*                              attention_backward_dq_kernel3<*>    launch_bounds 0  llmc/attention.cuh: as above
*                              attention_forward_kernel4<*>        launch_bounds 0  llmc/attention.cuh: kernel<HSP, WARPS><<<grid, 32 * WARPS>>> in a template launcher
*                              attention_backward_dkdv_kernel4<*>  launch_bounds 0  llmc/attention.cuh: kernel<HSP, STORE_DS><<<grid, ATT_THREADS>>> in a template launcher
*                              attention_backward_dq_kernel4<*>    launch_bounds 0  llmc/attention.cuh: as above
*                              attention_backward_dq_kernel5<*>    launch_bounds 0  llmc/attention.cuh: as above
*                              attention_delta_kernel_vec<*>       256 0            llmc/attention.cuh: kernel<G><<<grid, 256>>> in the switch of attention_delta
*                              rmsnorm_quant_kernel_reg4<*>       launch_bounds 0  llmc/quantize.cuh: kernel<PRE><<<grid, RQ_BLOCK>>> in a template launcher (rmsnorm_quant_reg_launch); RQ_BLOCK <= its bound (static_assert)
*                              rmsnorm_quant_kernel_reg8<*>       launch_bounds 0  llmc/quantize.cuh: kernel<PRE><<<grid, RQ_BLOCK>>> in a template launcher (rmsnorm_quant_reg_launch); RQ_BLOCK <= its bound (static_assert)
*                              rmsnorm_quant_kernel_reg16<*>      launch_bounds 0  llmc/quantize.cuh: kernel<PRE><<<grid, RQ_BLOCK>>> in a template launcher (rmsnorm_quant_reg_launch); RQ_BLOCK <= its bound (static_assert)
*                              rmsnorm_quant_kernel_reg32<*>      launch_bounds 0  llmc/quantize.cuh: kernel<PRE><<<grid, RQ_BLOCK>>> in a template launcher (rmsnorm_quant_reg_launch); RQ_BLOCK <= its bound (static_assert)
*                              bitlinear_matmul_int8_mma_kernel<*> launch_bounds 147456  llmc/bitlinear.cuh: kernel<TM, TN, TK, STAGES><<<grid, threads, smem>>> in a template launcher, threads = its bound; smem = STAGES x (TM + TN) x TK, at most 3 x 384 x 128 (the largest of dev/cuda/bitlinear_forward.cu)
'

# Kernels that opt in to more than 48 KiB of dynamic shared memory (cudaFuncSetAttribute(kernel,
# cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) before they are launched): file (or *), kernel, where
OPTIN='
*                              bitlinear_matmul_int8_mma_kernel<*> llmc/bitlinear.cuh: bitlinear_matmul_int8_mma_launch, once per instance
'

# Kernels allowed a stack frame or spills: file (or *), kernel, reason. None so far.
ALLOW='
'

W=$(mktemp -d "${TMPDIR:-/tmp}/test_cuda_resources.XXXXXX") || exit 1
trap 'rm -rf "$W"' EXIT

# one build: .cu -> PTX (kept: its .maxntid gives __launch_bounds__) -> cubin with ptxas -v.
# The flags that change device code are the Makefiles' (-O3, -std=c++17, no fast math).
build() { # src precision arch tag
    local def=""
    [ "$2" = fp32 ] && def=-DENABLE_FP32
    { "$NVCC" -ptx -O3 -std=c++17 -I. -arch="sm_$3" $def "$1" -o "$W/$4.ptx" &&
      "$NVCC" -cubin -arch="sm_$3" -Xptxas -v "$W/$4.ptx" -o "$W/$4.cubin"; } >"$W/$4.log" 2>&1
    echo $? >"$W/$4.rc"
}

: >"$W/builds"
for src in $SOURCES; do
    for arch in $ARCHS; do
        for prec in bf16 fp32; do
            tag=$(basename "$src" .cu)_${prec}_sm$arch
            echo "$src $prec $arch $tag" >>"$W/builds"
            build "$src" "$prec" "$arch" "$tag" &
            while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
        done
    done
done
wait

W="$W" LAUNCHES="$LAUNCHES" ALLOW="$ALLOW" OPTIN="$OPTIN" "$PYTHON" - <<'EOF'
import os
import re
import sys

REGS_PER_BLOCK = 65536  # sm_80 and sm_90: 64K 32-bit registers a block (and an SM)
REG_UNIT = 256          # registers are allocated a warp at a time, in units of 256
MAX_THREADS = 1024      # threads a block
SMEM_DEFAULT = 48 << 10 # static + dynamic shared memory a block without cudaFuncSetAttribute opt-in
SMEM_OPTIN = {"80": 163 << 10, "90": 227 << 10}  # with it: the most a block may have (CUDA C Guide, per arch)
W = os.environ["W"]
failures = []


def fail(name, why):
    failures.append(name)
    print(f"FAIL: {name}: {why}")


def table(text, ncols):
    rows = []
    for line in text.strip().splitlines():
        parts = line.split(None, ncols - 1)
        if len(parts) == ncols:
            rows.append(parts)
    return rows


LAUNCHES = table(os.environ["LAUNCHES"], 5)  # file kernel block smem why
ALLOW = table(os.environ["ALLOW"], 3)        # file kernel why
OPTIN = table(os.environ["OPTIN"], 3)        # file kernel where


def demangle(m):
    """_Z21rmsnorm_quant_kernel3ILi4EEvPa... -> rmsnorm_quant_kernel3<4>; an unmangled name is kept"""
    mm = re.match(r"_Z(\d+)", m)
    if not mm:
        return m
    n = int(mm.group(1))
    name, rest = m[mm.end():mm.end() + n], m[mm.end() + n:]
    if rest.startswith("I"):
        t = re.match(r"I((?:L[a-z]n?\d+E)+)E", rest)
        if not t:
            return m  # template arguments other than integers: the mangled name it is
        args = re.findall(r"L[a-z](n?)(\d+)E", t.group(1))
        name += "<" + ", ".join(("-" if neg else "") + v for neg, v in args) + ">"
    return name


def parse_ptxas(path):
    """{kernel: {regs, smem, stack, spill}} and {non-kernel function: {stack, spill}} from ptxas -v"""
    kernels, funcs, entry, props = {}, {}, None, None
    for line in open(path):
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            entry = demangle(m.group(1))
            kernels[entry] = {"regs": 0, "smem": 0, "stack": 0, "spill": 0}
            continue
        m = re.search(r"Function properties for (\w+)", line)
        if m:
            props = demangle(m.group(1))
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and props is not None:
            d = kernels.get(props) if props in kernels else funcs.setdefault(props, {})
            d["stack"] = int(m.group(1))
            d["spill"] = int(m.group(2)) + int(m.group(3))
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and entry is not None:
            kernels[entry]["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            kernels[entry]["smem"] = int(s.group(1)) if s else 0
    return kernels, funcs


def parse_ptx(path):
    """({kernel: threads} for the kernels with __launch_bounds__ (.maxntid x, y, z), [kernels in source order])"""
    text = open(path).read()
    bounds, order = {}, []
    for m in re.finditer(r"\.entry\s+(\w+)\s*\((.*?)\)([^{]*)\{", text, re.S):
        k = demangle(m.group(1))
        order.append(k)
        b = re.search(r"\.(?:maxntid|reqntid)\s+([\d\s,]+)", m.group(3))
        if b:
            n = 1
            for v in b.group(1).split(","):
                n *= int(v)
            bounds[k] = n
    return bounds, order


# ---- the sources: launches and their block sizes


def strip(text):
    """comments and string contents out, newlines kept (for line numbers)"""
    def repl(m):
        s = m.group(0)
        return '""' if s.startswith('"') else ("''" if s.startswith("'") else "\n" * s.count("\n") + " ")
    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', repl, text, flags=re.S)


def sources_of(main):
    """the file and the repository files it #includes, recursively"""
    seen, todo = [], [main]
    while todo:
        f = os.path.normpath(todo.pop())
        if f in seen:
            continue
        seen.append(f)
        for inc in re.findall(r'#\s*include\s+"([^"]+)"', open(f).read()):
            for cand in (os.path.join(os.path.dirname(f), inc), inc):
                if os.path.isfile(cand):
                    todo.append(cand)
                    break
    return seen


def split_args(s):
    out, depth, cur = [], 0, ""
    for ch in s:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def balanced(text, i):
    """the text inside the parentheses opening at text[i]"""
    depth, j = 0, i
    while j < len(text):
        depth += text[j] == "("
        depth -= text[j] == ")"
        if depth == 0:
            return text[i + 1:j]
        j += 1
    return text[i + 1:]


def evaluate(expr, defines):
    """an integer constant expression, #define'd names substituted; None if it is not one"""
    e = expr
    for _ in range(8):
        e2 = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: "(" + defines[m.group(0)] + ")" if m.group(0) in defines
                    else m.group(0), e)
        if e2 == e:
            break
        e = e2
    e = re.sub(r"\b(\d+)[uUlL]+\b", r"\1", e)
    if not re.fullmatch(r"[\d\s+\-*/%()]+", e):
        return None
    try:
        return int(eval(e.replace("/", "//"), {"__builtins__": {}}))
    except Exception:
        return None


def scan(main):
    """[(kernel as written, block or None, smem or None, 'file:line', block text)], block_sizes max"""
    defines, macros, texts = {}, {}, []
    for f in sources_of(main):
        t = strip(open(f).read())
        texts.append((f, t))
        for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+([^\n\\]+)$", t, re.M):
            defines[m.group(1)] = m.group(2).strip()
        for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+(\w+)\(([^)]*)\)((?:[^\n]*\\\n)*[^\n]*)", t, re.M):
            params = [p.strip() for p in m.group(2).split(",")]
            body = m.group(3).replace("\\\n", " ")
            for L in re.finditer(r"(\w+)\s*<<<(.*?)>>>", body, re.S):
                if L.group(1) in params:
                    macros[m.group(1)] = (params, L.group(1), split_args(L.group(2)))
    launches = []
    for f, t in texts:
        # the #define lines blanked: a launch in a macro body is read where the macro is used
        t = re.sub(r"^[ \t]*#[ \t]*define[^\n]*(?:\\\n[^\n]*)*", lambda m: "\n" * m.group(0).count("\n"), t,
                   flags=re.M)
        line = lambda pos: f"{f}:{t.count(chr(10), 0, pos) + 1}"
        for m in re.finditer(r"([A-Za-z_]\w*)\s*(<[^<>;()]*>)?\s*<<<(.*?)>>>", t, re.S):
            name = m.group(1) + re.sub(r"\s+", "", m.group(2) or "")
            cfg = split_args(m.group(3))
            smem = evaluate(cfg[2], defines) if len(cfg) > 2 else 0
            launches.append((name, evaluate(cfg[1], defines), smem, line(m.start()), cfg[1]))
        for mac, (params, kparam, cfg) in macros.items():
            for m in re.finditer(r"\b" + mac + r"\s*\(", t):
                args = split_args(balanced(t, m.end() - 1))
                if len(args) < len(params) - (params[-1] == "..."):
                    continue
                sub = lambda e: re.sub(r"\b\w+\b", lambda w: "(" + args[params.index(w.group(0))] + ")"
                                       if w.group(0) in params and w.group(0) != "..." else w.group(0), e)
                name = args[params.index(kparam)].replace(" ", "")
                smem = evaluate(sub(cfg[2]), defines) if len(cfg) > 2 else 0
                launches.append((name, evaluate(sub(cfg[1]), defines), smem, line(m.start()), sub(cfg[1])))
    bs = re.search(r"block_sizes\[\]\s*=\s*\{([^}]*)\}", texts[0][1])
    bs_max = max(int(v) for v in re.findall(r"\d+", bs.group(1))) if bs else None
    return launches, bs_max


# ---- per translation unit


def check_unit(src, mine):
    """the table of one translation unit and its FAIL lines; True if it passed"""
    res = {}  # build label -> (kernels, non-kernel functions, maxntid, kernels in source order)
    warned = []  # compiler warnings already reported (each build repeats them)
    for _, prec, arch, tag in mine:
        label = f"{prec} sm_{arch}"
        if open(os.path.join(W, tag + ".rc")).read().strip() != "0":
            log = open(os.path.join(W, tag + ".log")).read().strip().splitlines() or ["(no output)"]
            fail(src, f"does not compile ({label}): " + next((l for l in log if "error" in l), log[-1]).strip())
            return False
        # a compiler warning fails the unit too: e.g. #20011-D, a __host__ function (cuda_common.h's
        # ceil_div) called from a __host__ __device__ one, compiled without a word beyond the warning
        for line in open(os.path.join(W, tag + ".log")):
            if re.search(r"warning #\d+|ptxas warning", line) and not any(line == w for w in warned):
                warned.append(line)
                fail(src, f"compiler warning ({label}): {line.strip()}")
        k, fn = parse_ptxas(os.path.join(W, tag + ".log"))
        res[label] = (k, fn) + parse_ptx(os.path.join(W, tag + ".ptx"))
    labels = list(res)
    names = list(dict.fromkeys(k for lab in labels for k in res[lab][3] + list(res[lab][0])))  # source order
    launches, bs_max = scan(src)
    base = lambda k: k.split("<")[0]
    matches = lambda pattern, k: pattern == k or (pattern.endswith("<*>") and "<" in k and base(k) == pattern[:-3])
    rows = [r for r in LAUNCHES if r[0] in ("*", src)]
    allow = [r for r in ALLOW if r[0] in ("*", src)]
    optin = [r for r in OPTIN if r[0] in ("*", src)]
    problems = []  # (kernel, why), printed after the table

    for r in rows + allow + optin:
        if r[0] == src and not any(matches(r[1], k) for k in names):
            problems.append((r[1], "tests/test_cuda_resources.sh has a row for it (LAUNCHES or ALLOW), but no "
                             "such kernel is compiled: remove or rename the row"))

    print(f"{src}: each kernel's largest launch and its resources (regs a thread: {', '.join(labels)};")
    print(f"  regs/block: the worst build, % of {REGS_PER_BLOCK}; smem: static + dynamic bytes; stack/spill: bytes)")
    print(f"  {'kernel':<30} {'block':>5} {'bound':>5}  {'regs':<15} {'regs/block':>10} {'smem':>6}  "
          f"{'stack/spill':<11} largest launch from")
    for k in names:
        # the largest block: the launches read from the sources, and the kernel's LAUNCHES row
        row = next((r for r in rows if matches(r[1], k)), None)
        bounds = [res[lab][2][k] for lab in labels if k in res[lab][2]]
        cands, unread = [], []  # (block, smem, where)
        for name, blk, smem, where, text in launches:
            if name == k and blk is not None and smem is not None:
                cands.append((blk, smem, where))
            elif name == k or ("<" in name + k and base(name) == base(k)):  # a variable, or template arguments
                unread.append((where, text))
        if row is not None:
            if row[2] == "block_sizes":
                blk = bs_max
            elif row[2] == "launch_bounds":
                blk = min(bounds) if bounds else None
            else:
                blk = int(row[2])
            if blk is None:
                problems.append((k, f"its LAUNCHES row says {row[2]}, but the " + ("file has no `block_sizes[] = "
                                 "{...}`" if row[2] == "block_sizes" else "kernel has no __launch_bounds__")))
                cands = []
            else:
                cands.append((blk, int(row[3]), "LAUNCHES: " + row[4]))
        elif unread:
            problems.append((k, f"launched at {unread[0][0]} with a block size or shared memory the script cannot "
                             f"read ({unread[0][1]}): add a row with its largest to LAUNCHES in "
                             "tests/test_cuda_resources.sh"))
            cands = []
        elif not cands:
            problems.append((k, "no launch of it found in the sources: add a row with its largest block to "
                             "LAUNCHES in tests/test_cuda_resources.sh"))
        # B None: the largest launch is unknown (a FAIL above); the checks that need it are skipped
        B = max(c[0] for c in cands) if cands else None
        smem_dyn = max(c[1] for c in cands) if cands else 0
        where = next(c[2] for c in cands if c[0] == B) if cands else "unknown: see its FAIL line"
        warps = (B + 31) // 32 if cands else 0
        regs_s, worst, smem_w, stack_w, spill_w = [], 0, 0, 0, 0
        for lab in labels:
            kern, _, maxntid, _ = res[lab]
            if k not in kern:
                regs_s.append("-")
                continue
            d = kern[k]
            regs_s.append(str(d["regs"]))
            per_warp = (d["regs"] * 32 + REG_UNIT - 1) // REG_UNIT * REG_UNIT
            need = warps * per_warp
            worst = max(worst, need)
            smem_w = max(smem_w, d["smem"] + smem_dyn)
            stack_w, spill_w = max(stack_w, d["stack"]), max(spill_w, d["spill"])
            if B is None:
                pass  # its largest launch is unknown: a FAIL already says so
            elif B > MAX_THREADS:
                problems.append((k, f"launched with {B} threads ({where}): a block has at most {MAX_THREADS}"))
            elif k in maxntid and B > maxntid[k]:
                problems.append((k, f"launched with {B} threads ({where}), but its __launch_bounds__ is "
                                 f"{maxntid[k]}: the launch fails"))
            elif need > REGS_PER_BLOCK:
                fits = REGS_PER_BLOCK // per_warp * 32
                problems.append((k, f"{d['regs']} registers a thread ({lab}) x {B} threads ({where}) = {need} "
                                 f"registers > {REGS_PER_BLOCK} a block (allocated {per_warp} a warp): the launch "
                                 f"fails with cudaErrorLaunchOutOfResources; {fits} threads would fit. Fix: fewer "
                                 f"registers, smaller blocks, or __launch_bounds__({B}) (ptxas then keeps it to "
                                 f"{REGS_PER_BLOCK // (warps * 32) // 8 * 8}, spilling if it must)"))
            opted = any(matches(r[1], k) for r in optin)
            limit = SMEM_OPTIN[lab.split("sm_")[1]] if opted else SMEM_DEFAULT
            if d["smem"] + smem_dyn > limit:
                problems.append((k, f"{d['smem']} bytes static + {smem_dyn} dynamic shared memory ({lab}) > "
                                 f"{limit} a block " + ("(the opt-in maximum)" if opted else "without "
                                 "cudaFuncSetAttribute(..., cudaFuncAttributeMaxDynamicSharedMemorySize, ...)")))
            if (d["stack"] or d["spill"]) and not any(matches(r[1], k) for r in allow):
                problems.append((k, f"{d['stack']} bytes stack frame, {d['spill']} bytes spilled ({lab}): local "
                                 "memory; keep it in registers, or list it in ALLOW in tests/test_cuda_resources.sh "
                                 "with a reason"))
        bound = str(min(bounds)) if bounds else "-"
        use = f"{100.0 * worst / REGS_PER_BLOCK:>9.0f}%" if B is not None else f"{'?':>10}"
        print(f"  {k:<30} {B if B is not None else '?':>5} {bound:>5}  {'/'.join(regs_s):<15} {use} "
              f"{smem_w:>6}  {stack_w:>4}/{spill_w:<6} {where}")
    # functions that are not kernels (not inlined), with a stack frame or spills of their own
    for lab in labels:
        for fn, d in res[lab][1].items():
            if (d.get("stack") or d.get("spill")) and not any(matches(r[1], fn) for r in allow):
                problems.append((fn, f"device function with {d.get('stack', 0)} bytes stack frame, "
                                 f"{d.get('spill', 0)} bytes spilled ({lab}): list it in ALLOW with a reason"))
    seen = []
    for k, why in problems:  # the same problem in several builds is reported once (the first build's numbers)
        key = (k, re.sub(r"\d+", "#", re.sub(r"\((?:bf16|fp32) sm_\d+\)", "", why)))
        if key not in seen:
            seen.append(key)
            fail(f"{src} {k}", why)
    if not problems and not warned:
        print(f"PASS: {src}: {len(names)} kernels, {len(labels)} builds ({', '.join(labels)}): each fits a block's "
              f"registers and shared memory at its largest launch; no spills, no stack; no compiler warnings")
    return not problems and not warned


builds = [l.split() for l in open(os.path.join(W, "builds"))]
for src in dict.fromkeys(b[0] for b in builds):
    check_unit(src, [b for b in builds if b[0] == src])
    print()

sys.exit(1 if failures else 0)
EOF
