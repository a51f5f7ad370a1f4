"""
The PyTorch peer of our CUDA training benchmark (dev/bench_gpt2_1bit_cuda.sh): what a user would
run instead of train_gpt2_1bitcu. A standard GPT-2 124M written the nanoGPT way (pre-LN blocks,
GELU tanh, learned positions, biases, lm_head tied to wte, vocab padded 50257 -> 50304), trained
on our token shards with the usual fast settings: bf16 autocast, torch.compile,
F.scaled_dot_product_attention(is_causal=True) (flash attention on the GPU), fused AdamW
(lr 6e-4, betas 0.9/0.95, weight decay 0.1 on the 2-D weights only, grad-norm clip 1.0),
TF32 for the fp32 matmuls that remain. No lr schedule, no eval, no checkpoints: only steps.

Run (needs torch and numpy, see dev/requirements-bench.txt):
    python dev/bench_pytorch_gpt2.py                      # d12, B=64, T=1024, 20 steps, GPU
    python dev/bench_pytorch_gpt2.py -b 32                # if B=64 does not fit the GPU
    python dev/bench_pytorch_gpt2.py --device cpu --dtype fp32 --depth 2 --channels 64 \\
        --heads 2 -b 4 -t 64 -x 5                         # a CPU smoke test, seconds
    python dev/bench_pytorch_gpt2.py -h                   # every flag and its default

Prints the parameter count, one line per step (the same format as the trainer's):
    step    2/20 | loss 10.1234 | 345.6 ms | 189000 tok/s
and one closing line that scripts parse with
    sed -n 's/^pytorch: median step \\([0-9.]*\\) ms, \\([0-9]*\\) tok\\/s.*/\\1 \\2/p'
    pytorch: median step X.X ms, Y tok/s over steps 2..N (first step compiles); peak memory
             Z.ZZ GiB; torch A.B.C, device NAME                                   (one line)
The median leaves out step 1 (it compiles, and AdamW allocates its moments there) and every later
step during which torch.compile compiled again (a recompile is also reported on its step line).
A step is timed with the host clock from before the batch is copied to the device until after
torch.cuda.synchronize() that follows the optimizer step. Peak memory is
torch.cuda.max_memory_allocated() on the GPU, the process's peak RSS on the CPU.

Measured once (NVIDIA H200, torch 2.11.0+cu130, defaults): step 1 is 22.5 s (compile), no recompile
after it, median 121.8 ms = 538k tok/s, peak memory 28.5 GiB, 43.5 s for the whole run;
--compile 0: 171 ms and 59.1 GiB. Both peaks fit an 80 GB H100 at B=64.
"""
import argparse
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_MAGIC, DATA_VERSION = 20240520, 1  # llm.c's token shard header (dev/data/data_common.py)
HEADER_INTS = 256
VOCAB, VOCAB_PADDED = 50257, 50304  # padded to a multiple of 128 for the tensor cores
MAX_T = 1024  # GPT-2's context: the size of wpe


def die(msg):
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


# ----------------------------------------------------------------------------
# model: GPT-2 as in nanoGPT / llm.c's train_gpt2.py

class CausalSelfAttention(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.c_attn = nn.Linear(C, 3 * C)  # q, k, v for all heads in one matmul
        self.c_proj = nn.Linear(C, C)
        self.c_proj.RESIDUAL_SCALE = True

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B,T,C) -> (B,NH,T,hs); SDPA picks flash attention on the GPU for bf16 and is_causal
        q = q.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        k = k.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        v = v.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.c_fc = nn.Linear(C, 4 * C)
        self.c_proj = nn.Linear(4 * C, C)
        self.c_proj.RESIDUAL_SCALE = True

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C)
        self.attn = CausalSelfAttention(C, NH)
        self.ln_2 = nn.LayerNorm(C)
        self.mlp = MLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))  # pre-LN residual blocks
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, L, NH, C, Vp=VOCAB_PADDED, maxT=MAX_T):
        super().__init__()
        self.L = L
        self.wte = nn.Embedding(Vp, C)
        self.wpe = nn.Embedding(maxT, C)
        self.h = nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, Vp, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one (Vp,C) matrix
        self.apply(self._init_weights)

    def _init_weights(self, module):
        # GPT-2's init: N(0, 0.02), residual projections scaled by 1/sqrt(2L) (two per block)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            std = 0.02
            if getattr(module, "RESIDUAL_SCALE", False):
                std *= (2 * self.L) ** -0.5
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx, targets):
        # idx, targets are (B,T) int64; returns the mean cross-entropy over the Vp logits
        B, T = idx.size()
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # (B,T,Vp)
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1))


def configure_optimizer(model, lr, weight_decay, fused):
    # decay the matrices (and wte/lm_head), not the biases and LayerNorm gains
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=fused)


# ----------------------------------------------------------------------------
# data: llm.c's token shards, read as consecutive (B, T+1) windows

def load_tokens(path, B, T):
    # int32 header[256] = {magic, version, ntok, 0...}, then ntok uint16 tokens
    hint = "---> HINT: run python3 prepro_tinyshakespeare.py (make data) to write it again"
    if not os.path.isfile(path):
        die(f"{path}: no such file ---> HINT: run python3 prepro_tinyshakespeare.py (make data), or pass -i")
    size = os.path.getsize(path)
    if size < HEADER_INTS * 4:
        die(f"{path}: {size} bytes, shorter than the {HEADER_INTS * 4}-byte header {hint}")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header[0] != DATA_MAGIC:
        die(f"{path}: bad magic {header[0]} (want {DATA_MAGIC}): not an llm.c token file {hint}")
    if header[1] != DATA_VERSION:
        die(f"{path}: version {header[1]}, this script reads version {DATA_VERSION} {hint}")
    ntok = int(header[2])
    if size != HEADER_INTS * 4 + 2 * ntok:
        die(f"{path}: {size} bytes but its header says {ntok} tokens "
            f"({HEADER_INTS * 4 + 2 * ntok} bytes): truncated or corrupt {hint}")
    if ntok < B * T + 1:
        die(f"{path}: {ntok} tokens, fewer than one batch of B*T+1 = {B * T + 1} "
            f"---> HINT: lower -b or -t, or pass a bigger file with -i")
    tokens = np.memmap(path, dtype="<u2", mode="r", offset=HEADER_INTS * 4, shape=(ntok,))
    if int(tokens.max()) >= VOCAB:
        die(f"{path}: token id {int(tokens.max())} >= vocab size {VOCAB} {hint}")
    return tokens


class DataLoader:
    def __init__(self, tokens, B, T):
        self.tokens, self.B, self.T, self.pos = tokens, B, T, 0

    def next_batch(self):
        # x = tokens[pos : pos+B*T], y = the same shifted by one; wrap when a window runs past the end
        B, T = self.B, self.T
        if self.pos + B * T + 1 > len(self.tokens):
            self.pos = 0
        buf = torch.from_numpy(self.tokens[self.pos:self.pos + B * T + 1].astype(np.int64))
        self.pos += B * T
        return buf[:-1].view(B, T), buf[1:].view(B, T)


# ----------------------------------------------------------------------------
# timing helpers

def compiles_so_far():
    # dynamo's count of graphs compiled in this process (a private counter; None if it moves)
    try:
        from torch._dynamo.utils import counters
        return counters["stats"]["unique_graphs"]
    except Exception:
        return None


def peak_memory_gib(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux: ru_maxrss in KiB


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


# ----------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description="GPT-2 training benchmark in PyTorch (the peer of "
                                "dev/bench_gpt2_1bit_cuda.sh)",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-b", type=int, default=64, help="micro-batch size B")
    p.add_argument("-t", type=int, default=1024, help="sequence length T (at most 1024)")
    p.add_argument("-x", type=int, default=20, help="number of training steps (at least 2)")
    p.add_argument("-i", default="data/tinyshakespeare/tiny_shakespeare_train.bin",
                   help="train token file (llm.c format)")
    p.add_argument("--compile", type=int, default=1, choices=[0, 1], help="torch.compile the model")
    p.add_argument("--depth", type=int, default=12, help="number of layers L")
    p.add_argument("--channels", type=int, default=768, help="channels C (smaller for a smoke test)")
    p.add_argument("--heads", type=int, default=12, help="attention heads NH")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cuda or cpu")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"],
                   help="bf16: autocast the forward pass to bf16; fp32: none")
    p.add_argument("--seed", type=int, default=1337, help="torch.manual_seed")
    args = p.parse_args()
    B, T, steps = args.b, args.t, args.x
    if not 1 <= T <= MAX_T:
        die(f"-t {T}: the sequence length must be in 1..{MAX_T} (the size of wpe)")
    if B < 1 or steps < 2:
        die(f"-b {B} -x {steps}: need B >= 1 and at least 2 steps (step 1 compiles and is not timed)")
    if args.channels % args.heads != 0:
        die(f"--channels {args.channels} is not a multiple of --heads {args.heads}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        die("--device cuda but torch sees no CUDA GPU ---> HINT: pass --device cpu")

    torch.manual_seed(args.seed)
    torch.set_float32_matmul_precision("high")  # TF32 for the matmuls autocast leaves in fp32
    torch.backends.cudnn.allow_tf32 = True

    tokens = load_tokens(args.i, B, T)
    loader = DataLoader(tokens, B, T)
    model = GPT(args.depth, args.heads, args.channels).to(device)
    nparams = sum(p.numel() for p in model.parameters())  # the tied wte/lm_head counted once
    print(f"model: GPT-2 L={args.depth} NH={args.heads} C={args.channels} Vp={VOCAB_PADDED} "
          f"maxT={MAX_T}, {nparams} parameters", flush=True)
    print(f"run: B={B} T={T} steps={steps} dtype={args.dtype} compile={args.compile} "
          f"device={device_name(device)} torch={torch.__version__} data={args.i} ({len(tokens)} tokens)",
          flush=True)
    optimizer = configure_optimizer(model, lr=6e-4, weight_decay=0.1, fused=device.type == "cuda")
    step_model = torch.compile(model) if args.compile else model
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times_ms, timed = [], []  # timed[k]: step k+1 counts toward the median
    for step in range(1, steps + 1):
        ncomp = compiles_so_far()
        sync()
        t0 = time.perf_counter()
        x, y = loader.next_batch()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast:
            loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        ms = (time.perf_counter() - t0) * 1000
        recompiled = args.compile and step > 1 and ncomp is not None and compiles_so_far() != ncomp
        times_ms.append(ms)
        timed.append(step > 1 and not recompiled)
        note = " | compiled again: not timed" if recompiled else ""
        print(f"step {step:4d}/{steps} | loss {loss.item():.4f} | {ms:.1f} ms | "
              f"{B * T / (ms / 1000):.0f} tok/s{note}", flush=True)

    kept = [ms for ms, keep in zip(times_ms, timed) if keep]
    if not kept:  # every step after the first compiled again: report the last one rather than nothing
        print("warning: every step compiled; the median is the last step alone", flush=True)
        kept, first = times_ms[-1:], steps
    else:
        first = 1 + timed.index(True)
    skipped = sum(1 for keep in timed[first - 1:] if not keep)
    med = statistics.median(kept)
    why = "first step compiles" if args.compile else "first step warms up"
    if first > 2:
        why = f"steps 1..{first - 1} compile"
    if skipped:
        why += f", {skipped} later recompiling steps left out"
    print(f"pytorch: median step {med:.1f} ms, {B * T / (med / 1000):.0f} tok/s over steps "
          f"{first}..{steps} ({why}); peak memory {peak_memory_gib(device):.2f} GiB; "
          f"torch {torch.__version__}, device {device_name(device)}", flush=True)


if __name__ == "__main__":
    main()
