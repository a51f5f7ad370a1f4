"""
An independent PyTorch implementation of the 1-bit GPT-2 of train_gpt2_1bit.c,
used to write the small reference files that tests/test_gpt2_1bit.c (and the
CUDA test) compare against. It uses torch autograd and the straight-through
estimator written the way "The Era of 1-bit LLMs: Training Tips, Code and FAQ"
writes it, x + (quant(x) - x).detach(): nothing here is a port of the C code.

Run (needs torch; CPU is enough, takes a few seconds):
    python dev/reference/gpt2_1bit_reference.py [--out-dir tests/ref]

Writes (all little-endian):
  model.bin          the initial model, llm.c's format: int32 header[256] =
                     {20240326, 3, maxT, V, L, NH, C, Vp, 0...}, then the 16 parameter
                     tensors as float32 in llmc/gpt2_config.h's order. Slot 16 is 0:
                     a plain llm.c file, so the test also proves llm.c files load.
  state_<mode>.bin   for mode in fp, ternary, binary, ternary_wonly:
                     int32 header[256] = {20261124, 1, B, T, weight_quant, act_quant,
                       inner_norm, nsteps, V, Vp, num_parameters, 0...}
                     int32 x[B*T], int32 y[B*T]
                     float32 logits[B*T*V], float32 loss     (at the initial parameters)
                     float32 grads[num_parameters]           (same, before clipping)
                     float32 losses[nsteps]                  (loss at each of 10 AdamW steps)
"""
import argparse
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

# tiny config: small enough to commit the files, large enough to have every piece
MAXT, V, VP, L, NH, C = 32, 250, 256, 2, 4, 64
B, T = 4, 16  # T < maxT on purpose: the unused position rows must get zero gradient
NSTEPS = 10
MODES = {  # name: (weight_quant, act_quant, inner_norm) with 0 fp/1 ternary/2 binary, 0 none/1 int8
    "fp": (0, 0, 0),
    "ternary": (1, 1, 1),
    "binary": (2, 1, 1),
    "ternary_wonly": (1, 0, 0),
}


# -----------------------------------------------------------------------------
# quantizers with the straight-through estimator

def quant_weight(w, mode):
    """BitNet b1.58 absmean ternary (mode 1) or BitNet b1 binary (mode 2), STE."""
    if mode == 0:
        return w
    if mode == 1:
        gamma = w.abs().mean().clamp(min=1e-5)
        wq = (w / gamma).round().clamp(-1, 1) * gamma
    else:
        alpha = w.mean()
        beta = w.abs().mean().clamp(min=1e-5)
        wq = torch.where(w - alpha >= 0, 1.0, -1.0) * beta
    return w + (wq - w).detach()


def quant_act(x):
    """per-token absmax int8, STE"""
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    xq = (x * s).round().clamp(-128, 127) / s
    return x + (xq - x).detach()


class BitLinear(nn.Module):
    """y = quant_act(rmsnorm(x)) @ quant_weight(W)^T + b; one weight scale per layer matrix"""

    def __init__(self, w, b, mode):
        super().__init__()
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(b)
        self.wq, self.aq, self.norm = mode

    def forward(self, x):
        if self.norm:
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
        if self.aq:
            x = quant_act(x)
        return x @ quant_weight(self.weight, self.wq).t() + self.bias


# -----------------------------------------------------------------------------
# GPT-2

class Block(nn.Module):
    def __init__(self, p, l, mode):
        super().__init__()
        self.ln1 = nn.LayerNorm(C, eps=1e-5)
        self.ln2 = nn.LayerNorm(C, eps=1e-5)
        with torch.no_grad():
            self.ln1.weight.copy_(p["ln1w"][l]); self.ln1.bias.copy_(p["ln1b"][l])
            self.ln2.weight.copy_(p["ln2w"][l]); self.ln2.bias.copy_(p["ln2b"][l])
        self.qkv = BitLinear(p["qkvw"][l].clone(), p["qkvb"][l].clone(), mode)
        self.attproj = BitLinear(p["attprojw"][l].clone(), p["attprojb"][l].clone(), mode)
        self.fc = BitLinear(p["fcw"][l].clone(), p["fcb"][l].clone(), mode)
        self.fcproj = BitLinear(p["fcprojw"][l].clone(), p["fcprojb"][l].clone(), mode)

    def attention(self, x, manual):
        Bx, Tx, _ = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        hs = C // NH
        q, k, v = (t.view(Bx, Tx, NH, hs).transpose(1, 2) for t in (q, k, v))  # (B, NH, T, hs)
        if manual:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
            mask = torch.tril(torch.ones(Tx, Tx, dtype=torch.bool))
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = att @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.attproj(y.transpose(1, 2).contiguous().view(Bx, Tx, C))

    def forward(self, x, manual=True):
        x = x + self.attention(self.ln1(x), manual)
        h = self.fc(self.ln2(x))
        if manual:
            h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h.pow(3))))
        else:
            h = F.gelu(h, approximate="tanh")
        return x + self.fcproj(h)


class GPT(nn.Module):
    def __init__(self, p, mode):
        super().__init__()
        self.wte = nn.Parameter(p["wte"].clone())  # (Vp, C): padded rows are zero and stay zero
        self.wpe = nn.Parameter(p["wpe"].clone())
        self.blocks = nn.ModuleList(Block(p, l, mode) for l in range(L))
        self.lnf = nn.LayerNorm(C, eps=1e-5)
        with torch.no_grad():
            self.lnf.weight.copy_(p["lnfw"]); self.lnf.bias.copy_(p["lnfb"])

    def forward(self, idx, targets, manual=True):
        x = self.wte[idx] + self.wpe[: idx.shape[1]]
        for blk in self.blocks:
            x = blk(x, manual)
        x = self.lnf(x)
        logits = x @ self.wte[:V].t()  # tied head over the real vocab only
        loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))
        return logits, loss

    def flat(self, what):
        """parameters (what='data') or gradients ('grad') in llmc/gpt2_config.h's order"""
        def g(t):
            t = t.grad if what == "grad" else t.data
            return t.detach().reshape(-1)
        bl = self.blocks
        per_layer = lambda f: torch.cat([g(f(b)) for b in bl])
        parts = [g(self.wte), g(self.wpe),
                 per_layer(lambda b: b.ln1.weight), per_layer(lambda b: b.ln1.bias),
                 per_layer(lambda b: b.qkv.weight), per_layer(lambda b: b.qkv.bias),
                 per_layer(lambda b: b.attproj.weight), per_layer(lambda b: b.attproj.bias),
                 per_layer(lambda b: b.ln2.weight), per_layer(lambda b: b.ln2.bias),
                 per_layer(lambda b: b.fc.weight), per_layer(lambda b: b.fc.bias),
                 per_layer(lambda b: b.fcproj.weight), per_layer(lambda b: b.fcproj.bias),
                 g(self.lnf.weight), g(self.lnf.bias)]
        return torch.cat(parts)

    def param_groups(self):
        """weight decay on the matrices only, as train_gpt2_1bit.c does"""
        matrices = [self.wte, self.wpe] + [p for b in self.blocks
                                           for p in (b.qkv.weight, b.attproj.weight, b.fc.weight, b.fcproj.weight)]
        ids = {id(p) for p in matrices}
        others = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}]


def init_params(seed=1234):
    """GPT-2's init, plus random norms and biases so that every gradient is exercised"""
    gen = torch.Generator().manual_seed(seed)
    n = lambda *shape, std: torch.randn(*shape, generator=gen) * std
    wte = torch.zeros(VP, C)
    wte[:V] = n(V, C, std=0.02)
    proj_std = 0.02 / math.sqrt(2 * L)
    return {
        "wte": wte, "wpe": n(MAXT, C, std=0.02),
        "ln1w": 1 + n(L, C, std=0.1), "ln1b": n(L, C, std=0.1),
        "qkvw": n(L, 3 * C, C, std=0.02), "qkvb": n(L, 3 * C, std=0.02),
        "attprojw": n(L, C, C, std=proj_std), "attprojb": n(L, C, std=0.02),
        "ln2w": 1 + n(L, C, std=0.1), "ln2b": n(L, C, std=0.1),
        "fcw": n(L, 4 * C, C, std=0.02), "fcb": n(L, 4 * C, std=0.02),
        "fcprojw": n(L, C, 4 * C, std=proj_std), "fcprojb": n(L, C, std=0.02),
        "lnfw": 1 + n(C, std=0.1), "lnfb": n(C, std=0.1),
    }


ORDER = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
         "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]


def write_model(path, p):
    header = [0] * 256
    header[:8] = [20240326, 3, MAXT, V, L, NH, C, VP]
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(torch.cat([p[k].reshape(-1) for k in ORDER]).numpy().astype("<f4").tobytes())
    os.replace(path + ".tmp", path)


def run_mode(name, p, x, y):
    mode = MODES[name]
    model = GPT(p, mode)
    logits, loss = model(x, y)
    loss.backward()
    grads = model.flat("grad")
    # self-checks of the reference itself
    if name == "fp":  # the manual ops equal torch's fused ones
        ref = GPT(p, mode)
        logits2, _ = ref(x, y, manual=False)
        assert torch.allclose(logits, logits2, atol=1e-5), "manual attention/gelu disagree with torch's"
    if mode[0] == 1:  # STE contract: dW_latent equals the gradient with respect to W_q
        blk = model.blocks[0].fc
        w = blk.weight.detach()
        gamma = w.abs().mean().clamp(min=1e-5)
        wq = ((w / gamma).round().clamp(-1, 1) * gamma).requires_grad_(True)
        xq = quant_act(torch.randn(5, C, generator=torch.Generator().manual_seed(9))).detach()
        gw, = torch.autograd.grad((xq @ quant_weight(blk.weight, 1).t()).sum(), blk.weight)
        gq, = torch.autograd.grad((xq @ wq.t()).sum(), wq)
        assert torch.allclose(gw, gq), "STE: dW_latent != dW_q"
    # 10 AdamW steps on the same batch
    opt = torch.optim.AdamW(model.param_groups(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for step in range(NSTEPS):
        opt.zero_grad(set_to_none=True)
        _, l = model(x, y)
        l.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(l.item())
    assert losses[-1] < losses[0], f"{name}: loss did not fall"
    assert float(model.wte.data[V:].abs().max()) == 0.0, "padded wte rows moved"
    zeros = []
    if mode[0] == 1:
        for b in model.blocks:
            for m in (b.qkv, b.attproj, b.fc, b.fcproj):
                w = m.weight.data
                gamma = w.abs().mean().clamp(min=1e-5)
                zeros.append(float(((w / gamma).round().clamp(-1, 1) == 0).float().mean()))
    print(f"{name:14s} loss {loss.item():.6f}  grad norm {grads.norm().item():.4f}  "
          f"losses {losses[0]:.4f} -> {losses[-1]:.4f}" +
          (f"  zero trits {min(zeros):.3f}..{max(zeros):.3f}" if zeros else ""))
    return logits.detach(), loss.item(), grads, losses


def write_state(path, name, x, y, logits, loss, grads, losses):
    wq, aq, norm = MODES[name]
    header = [0] * 256
    header[:11] = [20261124, 1, B, T, wq, aq, norm, NSTEPS, V, VP, grads.numel()]
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(x.to(torch.int32).numpy().astype("<i4").tobytes())
        f.write(y.to(torch.int32).numpy().astype("<i4").tobytes())
        f.write(logits.numpy().astype("<f4").tobytes())
        f.write(struct.pack("<f", loss))
        f.write(grads.numpy().astype("<f4").tobytes())
        f.write(struct.pack(f"<{NSTEPS}f", *losses))
    os.replace(path + ".tmp", path)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default=os.path.join(here, "..", "..", "tests", "ref"),
                        help="where to write model.bin and state_*.bin (default: tests/ref)")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # the same summation order on every machine
    p = init_params()
    gen = torch.Generator().manual_seed(5678)
    x = torch.randint(0, V, (B, T), generator=gen)
    y = torch.randint(0, V, (B, T), generator=gen)
    write_model(os.path.join(args.out_dir, "model.bin"), p)
    for name in MODES:
        logits, loss, grads, losses = run_mode(name, p, x, y)
        write_state(os.path.join(args.out_dir, f"state_{name}.bin"), name, x, y, logits, loss, grads, losses)
    print(f"wrote {args.out_dir}/model.bin and state_{{{','.join(MODES)}}}.bin")


if __name__ == "__main__":
    main()
