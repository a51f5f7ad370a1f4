"""
An independent PyTorch implementation of the 1-bit GPT-2 of train_gpt2_1bit.c,
used to write the small reference files that tests/test_gpt2_1bit.c (and the
CUDA test) compare against. It uses torch autograd and the straight-through
estimator written the way "The Era of 1-bit LLMs: Training Tips, Code and FAQ"
writes it, x + (quant(x) - x).detach(): nothing here is a port of the C code.

Run (needs torch; CPU only, float32, fixed seeds, takes a few seconds):
    python dev/reference/gpt2_1bit_reference.py [--out-dir tests/ref] [--modes ternary_bq8,...]
(--modes: write only those state files, and model.bin only when it is missing; a newer torch
may round a last bit differently, and the files already in tests/ref stay as they are: the _bq8
files and state_ternary_rn2.bin were added with --modes by torch 2.15.0 on the CPU, which
writes model.bin byte for byte as it is and the four older state files up to last-bit rounding)

Model: GPT-2 as in llm.c (learned positions, pre-LayerNorm blocks, GELU tanh,
tied head over the V real rows of wte) with the four block matrices (qkv,
attproj, fc, fcproj) as BitLinear layers. Tiny config: maxT=32, V=250, Vp=256,
L=2, NH=4, C=64; batch B=4, T=16 (T < maxT: the unused wpe rows get zero
gradient). Modes (weight quant, activation quant, inner RMSNorm, backward of dX):
    fp                 fp,      none, 0, float   plain GPT-2
    ternary            ternary, int8, 1, float   BitNet b1.58
    binary             binary,  int8, 1, float   BitNet b1 weights
    ternary_wonly      ternary, none, 0, float   weights-only ternary
    ternary_bq8        ternary, int8, 1, int8    b1.58 with the int8 backward (-bq int8)
    ternary_wonly_bq8  ternary, none, 0, int8    weights-only ternary with the int8 backward
    ternary_rn2        ternary, int8, 2, float   b1.58 with the inner norm before attproj and fcproj only (-rn 2)
    fp_bf16            fp,      none, 0, float   plain GPT-2 with bf16 matmul operands (-mp bf16)
-mp bf16 (train_gpt2_1bit -mp bf16) rounds both operands of every float matmul to bf16 (ties to even)
and sums the exact products in float32, in the forward and in both products of the backward:
    y = bf(x) @ bf(W)^T,  dX = bf(dY) @ bf(W),  dW = bf(dY)^T @ bf(x)     (bias and its gradient in fp32)
Written as a torch.autograd.Function (Bf16Matmul below): the BitLinear matmuls and the head, not the
attention scores (the C trainer's attention is not a matmul).
The int8 backward (train_gpt2_1bit -bq int8, issue 14) computes dX = dY W_q of each BitLinear
with dY quantized per token to int8 (absmax, as SwitchBack does for its input gradient):
    s = 127 / max(max|dY_row|, 1e-30),  q = clamp(round(dY * s), -128, 127)
    dX = (q @ codes) * (scale * (1/s))     codes = the trits (or signs), scale = gamma (or beta)
where q @ codes is an integer sum (exact in float32 at these sizes: |sum| <= 128 * 4C < 2^24);
dW = dY^T x_q stays float. Written as a torch.autograd.Function (Int8BackwardMatmul below).
Each mode: forward + backward at the initial parameters, then 10 AdamW steps
(lr 1e-3, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on the matrices only,
global grad-norm clip 1.0) on the same batch.

Writes (all little-endian):
  model.bin          the initial model (the same for every mode), llm.c's format:
                     int32 header[256] = {20240326, 3, maxT, V, L, NH, C, Vp, 0...},
                     then the 16 parameter tensors as float32 in llmc/gpt2_config.h's
                     order and shapes. Slot 16 is 0: a plain llm.c file, so the test
                     also proves that llm.c files load.
  state_<mode>.bin   for each mode above:
                     int32 header[256] = {20261124, 1, B, T, weight_quant, act_quant,
                       inner_norm, nsteps, V, Vp, num_parameters, backward_quant, matmul_bf16, 0...}
                       (weight_quant 0 fp/1 ternary/2 binary, act_quant 0 none/1 int8,
                       backward_quant 0 float/1 int8: slot 11 is 0 in the files from before it;
                       matmul_bf16 1 for -mp bf16: slot 12, 0 in the files from before it)
                     int32 x[B*T], int32 y[B*T]              the batch
                     float32 logits[B*T*V], float32 loss     (at the initial parameters)
                     float32 grads[num_parameters]           (same, before clipping, padded layout)
                     float32 losses[nsteps]                  (losses[k]: step k, before its update)

Self-checks (an assert fails the run): in fp and ternary_wonly the model equals a
second implementation built from other ops (torch's fused attention, GELU and
LayerNorm vs. the hand-written ones); in ternary and binary the gradient of
every latent matrix equals the gradient w.r.t. its quantized copy (the STE
contract) and the quantized copy is trits (or signs) times one scale; the 10
losses fall at every step; the padded wte rows stay zero.
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
MODES = {  # name: (weight_quant, act_quant, inner_norm, backward_quant, matmul_bf16) with 0 fp/1 ternary/
    # 2 binary, 0 none/1 int8, the backward of dX 0 float/1 int8 (-bq), and -mp 0 fp32/1 bf16
    "fp": (0, 0, 0, 0, 0),
    "ternary": (1, 1, 1, 0, 0),
    "binary": (2, 1, 1, 0, 0),
    "ternary_wonly": (1, 0, 0, 0, 0),
    "ternary_bq8": (1, 1, 1, 1, 0),
    "ternary_wonly_bq8": (1, 0, 0, 1, 0),
    "ternary_rn2": (1, 1, 2, 0, 0),
    "fp_bf16": (0, 0, 0, 0, 1),
}
GRAD_EPS = 1e-30  # llmc/ternary.h: the floor of max|dY| only keeps the scale finite
# Tolerances of the self-check against the second implementation. Both run the
# same float32 math in other orders: measured differences are <= 2.4e-7 (logits),
# 4.8e-7 (loss: one ulp at 5.5) and <= 4.6e-7 relative (gradients). The bounds
# leave 4-20x room and are tight enough to catch erf GELU in place of tanh GELU
# (6.6e-6 logits, 6.4e-5 gradients); a missing causal mask or an unbiased
# LayerNorm variance shows as 1e-3..1e-1.
ALT_ATOL_LOGITS = 2e-6
ALT_ATOL_LOSS = 2e-6
ALT_RTOL_GRAD = 1e-5  # max |g - g_alt| / max |g|, per tensor
# modes where the alternative must agree; in the int8 modes a 1e-7 difference
# can move an activation across an int8 rounding boundary (in fp_bf16 across a
# bf16 one), so there the difference is printed, not asserted
ALT_ASSERT_MODES = ("fp", "ternary_wonly")


# -----------------------------------------------------------------------------
# quantizers with the straight-through estimator

def weight_scale(w):
    """absmean: gamma = max(mean|W|, 1e-5), one per layer matrix (BitNet b1.58 eq. 1-3)"""
    return w.abs().mean().clamp(min=1e-5)


def weight_codes(w, mode):
    """(codes, scale): the trits and gamma (mode 1, ternary) or the signs and beta (mode 2, binary)"""
    if mode == 1:
        gamma = weight_scale(w)
        return (w / gamma).round().clamp(-1, 1), gamma
    alpha = w.mean()
    beta = w.abs().mean().clamp(min=1e-5)
    return torch.where(w - alpha >= 0, 1.0, -1.0), beta


def quant_weight(w, mode):
    """BitNet b1.58 absmean ternary (mode 1) or BitNet b1 binary (mode 2), STE."""
    if mode == 0:
        return w
    codes, scale = weight_codes(w, mode)
    wq = codes * scale
    # forward: wq; backward: identity to the latent w, nothing into gamma/alpha/beta
    return w + (wq - w).detach()


class Int8BackwardMatmul(torch.autograd.Function):
    """y = x @ w^T, w the quantized weight (codes * scale, as quant_weight returns it). Backward of
    -bq int8: dY to int8 per token (absmax), times the codes as an integer sum, the two scales applied
    once: dX = (q @ codes) * (scale * (1/s)). dW = dY^T x stays float (and reaches the latent weight
    through quant_weight's STE)."""

    @staticmethod
    def forward(ctx, x, w, codes, scale):
        ctx.save_for_backward(x, codes, scale)
        return x @ w.t()

    @staticmethod
    def backward(ctx, dy):
        x, codes, scale = ctx.saved_tensors
        s = 127.0 / dy.abs().amax(dim=-1, keepdim=True).clamp(min=GRAD_EPS)  # one scale per token
        q = (dy * s).round().clamp(-128, 127)
        acc = q @ codes  # integers, |acc| <= 128 * OC: exact in float32
        dx = acc * (scale * (1.0 / s))
        dw = dy.reshape(-1, dy.shape[-1]).t() @ x.reshape(-1, x.shape[-1])
        return dx, dw, None, None


def bf(t):
    """t rounded to bf16 (ties to even), as float32"""
    return t.bfloat16().float()


class Bf16Matmul(torch.autograd.Function):
    """y = bf(x) @ bf(w)^T in float32 sums (-mp bf16); the backward rounds dY, W and x the same way:
    dX = bf(dY) @ bf(w), dW = bf(dY)^T @ bf(x)"""

    @staticmethod
    def forward(ctx, x, w):
        xb, wb = bf(x), bf(w)
        ctx.save_for_backward(xb, wb)
        return xb @ wb.t()

    @staticmethod
    def backward(ctx, dy):
        xb, wb = ctx.saved_tensors
        dyb = bf(dy)
        dw = dyb.reshape(-1, dyb.shape[-1]).t() @ xb.reshape(-1, xb.shape[-1])
        return dyb @ wb, dw


def matmul_wt(x, w, mp):
    """x @ w^T, in float32 or (mp) with bf16 operands"""
    return Bf16Matmul.apply(x, w) if mp else x @ w.t()


def quant_act(x):
    """per-token absmax int8, STE"""
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    xq = (x * s).round().clamp(-128, 127) / s
    return x + (xq - x).detach()


class BitLinear(nn.Module):
    """y = quant_act(rmsnorm(x)) @ quant_weight(W)^T + b; one weight scale per layer matrix"""

    def __init__(self, w, b, mode):
        super().__init__()
        self.weight = nn.Parameter(w)  # (OC, IC) latent fp32
        self.bias = nn.Parameter(b)    # (OC) full precision
        self.wq, self.aq, self.norm, self.bq, self.mp = mode
        self.keep_wq = False  # self-check: keep the quantized weight and its gradient
        self.last_wq = None

    def forward(self, x):
        if self.norm:  # parameter-free RMSNorm, autograd goes through it
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
        if self.aq:
            x = quant_act(x)
        w = quant_weight(self.weight, self.wq)
        if self.keep_wq and w is not self.weight:
            w.retain_grad()  # w is a non-leaf: ask autograd to keep dL/dW_q
            self.last_wq = w
        if self.bq:  # the int8 backward of dX (-bq int8); needs codes, so not in fp mode
            codes, scale = weight_codes(self.weight.detach(), self.wq)
            return Int8BackwardMatmul.apply(x, w, codes, scale) + self.bias
        return matmul_wt(x, w, self.mp) + self.bias


# -----------------------------------------------------------------------------
# GPT-2
# Two ways to compute the same model, for the self-check. alt=False (the one
# that writes the files): attention and GELU by hand, torch's LayerNorm and
# cross-entropy. alt=True: torch's fused attention and GELU, LayerNorm and
# cross-entropy by hand. Every op is thus computed two independent ways.

def layernorm_by_hand(x, ln):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)  # biased, as LayerNorm uses
    return (x - mean) * torch.rsqrt(var + ln.eps) * ln.weight + ln.bias


def cross_entropy_by_hand(logits, targets):
    m = logits.amax(-1, keepdim=True).detach()  # shift for exp; any constant is exact
    lse = m + (logits - m).exp().sum(-1, keepdim=True).log()
    return (lse - logits.gather(-1, targets.unsqueeze(-1))).mean()


def mode_at(mode, k):
    """the mode of BitLinear k (0 qkv, 1 attproj, 2 fc, 3 fcproj): inner norm 2 (-rn 2) means the norm
    only before attproj and fcproj, whose input GPT-2 does not normalise"""
    wq, aq, norm, bq, mp = mode
    return wq, aq, int(norm == 1 or (norm == 2 and k in (1, 3))), bq, mp


class Block(nn.Module):
    def __init__(self, p, l, mode):
        super().__init__()
        self.ln1 = nn.LayerNorm(C, eps=1e-5)
        self.ln2 = nn.LayerNorm(C, eps=1e-5)
        with torch.no_grad():
            self.ln1.weight.copy_(p["ln1w"][l]); self.ln1.bias.copy_(p["ln1b"][l])
            self.ln2.weight.copy_(p["ln2w"][l]); self.ln2.bias.copy_(p["ln2b"][l])
        self.qkv = BitLinear(p["qkvw"][l].clone(), p["qkvb"][l].clone(), mode_at(mode, 0))
        self.attproj = BitLinear(p["attprojw"][l].clone(), p["attprojb"][l].clone(), mode_at(mode, 1))
        self.fc = BitLinear(p["fcw"][l].clone(), p["fcb"][l].clone(), mode_at(mode, 2))
        self.fcproj = BitLinear(p["fcprojw"][l].clone(), p["fcprojb"][l].clone(), mode_at(mode, 3))

    def attention(self, x, alt):
        Bx, Tx, _ = x.shape
        hs = C // NH
        qkv = self.qkv(x)  # (B, T, 3C): q, k, v; head h of each is channels h*hs:(h+1)*hs
        if not alt:
            q, k, v = qkv.split(C, dim=2)
            q, k, v = (t.view(Bx, Tx, NH, hs).transpose(1, 2) for t in (q, k, v))  # (B, NH, T, hs)
        else:  # the same split as one reshape: (B, T, 3, NH, hs) -> (3, B, NH, T, hs)
            q, k, v = qkv.view(Bx, Tx, 3, NH, hs).permute(2, 0, 3, 1, 4)
        if not alt:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, NH, T, T)
            mask = torch.tril(torch.ones(Tx, Tx, dtype=torch.bool))
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = att @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.attproj(y.transpose(1, 2).contiguous().view(Bx, Tx, C))  # heads back to (B, T, C)

    def forward(self, x, alt=False):
        ln = layernorm_by_hand if alt else (lambda x, m: m(x))
        x = x + self.attention(ln(x, self.ln1), alt)
        h = self.fc(ln(x, self.ln2))
        if not alt:  # GELU, tanh approximation
            h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h.pow(3))))
        else:
            h = F.gelu(h, approximate="tanh")
        return x + self.fcproj(h)


class GPT(nn.Module):
    def __init__(self, p, mode):
        super().__init__()
        self.wte = nn.Parameter(p["wte"].clone())  # (Vp, C): padded rows are zero and stay zero
        self.wpe = nn.Parameter(p["wpe"].clone())  # (maxT, C)
        self.blocks = nn.ModuleList(Block(p, l, mode) for l in range(L))
        self.mp = mode[4]  # -mp bf16: the head's matmul too
        self.lnf = nn.LayerNorm(C, eps=1e-5)
        with torch.no_grad():
            self.lnf.weight.copy_(p["lnfw"]); self.lnf.bias.copy_(p["lnfb"])

    def forward(self, idx, targets, alt=False):
        x = self.wte[idx] + self.wpe[: idx.shape[1]]
        for blk in self.blocks:
            x = blk(x, alt)
        x = layernorm_by_hand(x, self.lnf) if alt else self.lnf(x)
        logits = matmul_wt(x, self.wte[:V], self.mp)  # tied head over the real vocab only: (B, T, V)
        if alt:
            loss = cross_entropy_by_hand(logits.view(-1, V), targets.view(-1))
        else:
            loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))
        return logits, loss

    def bitlinears(self):
        """(name, module) of every BitLinear, e.g. ('qkv0', ...)"""
        return [(f"{n}{l}", getattr(b, n)) for l, b in enumerate(self.blocks)
                for n in ("qkv", "attproj", "fc", "fcproj")]

    def tensors(self, what):
        """the 16 parameters (what='data') or gradients ('grad') in llmc/gpt2_config.h's order,
        each flattened, per-layer ones stacked over the layers"""
        def g(t):
            t = t.grad if what == "grad" else t.data
            return t.detach().reshape(-1)
        bl = self.blocks
        per_layer = lambda f: torch.cat([g(f(b)) for b in bl])
        return [g(self.wte), g(self.wpe),
                per_layer(lambda b: b.ln1.weight), per_layer(lambda b: b.ln1.bias),
                per_layer(lambda b: b.qkv.weight), per_layer(lambda b: b.qkv.bias),
                per_layer(lambda b: b.attproj.weight), per_layer(lambda b: b.attproj.bias),
                per_layer(lambda b: b.ln2.weight), per_layer(lambda b: b.ln2.bias),
                per_layer(lambda b: b.fc.weight), per_layer(lambda b: b.fc.bias),
                per_layer(lambda b: b.fcproj.weight), per_layer(lambda b: b.fcproj.bias),
                g(self.lnf.weight), g(self.lnf.bias)]

    def flat(self, what):
        return torch.cat(self.tensors(what))

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
    proj_std = 0.02 / math.sqrt(2 * L)  # GPT-2's scaled init of the residual projections
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


# -----------------------------------------------------------------------------
# self-checks

def check_alternative(name, p, x, y, logits, loss, grads):
    """the same model computed with the other set of ops (see GPT-2 above)"""
    alt = GPT(p, MODES[name])
    logits2, loss2 = alt(x, y, alt=True)
    loss2.backward()
    dlogits = (logits - logits2).abs().max().item()
    dloss = abs(loss.item() - loss2.item())
    rel = max(((g - g2).abs().max() / g.abs().max().clamp(min=1e-30)).item()
              for g, g2 in zip(grads, alt.tensors("grad")) if g.abs().max() > 0)
    ok = dlogits <= ALT_ATOL_LOGITS and dloss <= ALT_ATOL_LOSS and rel <= ALT_RTOL_GRAD
    print(f"  vs. second implementation: logits {dlogits:.1e}, loss {dloss:.1e}, "
          f"grads {rel:.1e} (max relative per tensor)" +
          ("" if name in ALT_ASSERT_MODES else "  (int8 or bf16 roundings: not asserted)"))
    if name in ALT_ASSERT_MODES:
        assert ok, f"{name}: the reference disagrees with its second implementation"


def check_ste(name, model):
    """STE contract, on the model's own backward: dL/dW_latent == dL/dW_q exactly,
    and W_q is trits (ternary) or signs (binary) times one scale"""
    wq_mode = MODES[name][0]
    n_off = n_all = 0
    for mname, m in model.bitlinears():
        assert torch.equal(m.weight.grad, m.last_wq.grad), f"STE: {mname} dW_latent != dW_q"
        w, wq = m.weight.detach(), m.last_wq.detach()
        scale = weight_scale(w)  # ternary gamma and binary beta are both mean|W|
        codes = (wq / scale).round()
        allowed = torch.tensor([-1.0, 0.0, 1.0] if wq_mode == 1 else [-1.0, 1.0])
        assert torch.isin(codes, allowed).all(), f"{mname}: W_q is not codes times one scale"
        # the FAQ form w + (wq - w).detach() rounds twice, so its forward value can
        # sit one float32 ulp away from codes * scale (~1e-7 relative); never more
        off = (wq - codes * scale).abs()
        assert off.max() <= 1e-6 * scale, f"{mname}: W_q off its grid by {off.max().item():.2e}"
        n_off += int((off > 0).sum())
        n_all += off.numel()
    print(f"  STE: dW_latent == dW_q exactly and W_q = codes * scale, for all {len(model.bitlinears())} matrices"
          f" ({n_off} of {n_all} values 1 ulp off from the detach() form)")


def zero_trit_fractions(model):
    """fraction of zero trits per BitLinear matrix (ternary modes; near a third is typical)"""
    out = []
    for mname, m in model.bitlinears():
        w = m.weight.detach()
        out.append((mname, ((w / weight_scale(w)).round().clamp(-1, 1) == 0).float().mean().item()))
    return out


# -----------------------------------------------------------------------------
# one mode: forward/backward at init, self-checks, 10 AdamW steps

def run_mode(name, p, x, y):
    mode = MODES[name]
    print(f"{name} (weight_quant {mode[0]}, act_quant {mode[1]}, inner_norm {mode[2]}, backward_quant {mode[3]}, matmul_bf16 {mode[4]})")
    model = GPT(p, mode)
    for _, m in model.bitlinears():
        m.keep_wq = mode[0] != 0
    logits, loss = model(x, y)
    loss.backward()
    grads = model.tensors("grad")
    flat_grads = torch.cat(grads)
    print(f"  loss {loss.item():.6f}  grad norm {flat_grads.norm().item():.6f}")
    # rows nothing reads get exactly zero gradient: wte's padding, wpe past T
    assert grads[0].view(VP, C)[V:].abs().max() == 0 and grads[1].view(MAXT, C)[T:].abs().max() == 0
    check_alternative(name, p, x, y, logits.detach(), loss, grads)
    if mode[0] != 0:
        check_ste(name, model)
    for _, m in model.bitlinears():
        m.keep_wq, m.last_wq = False, None
    zeros_init = zero_trit_fractions(model) if mode[0] == 1 else []
    # 10 AdamW steps on the same batch; clip_grad_norm_ scales by min(1, 1 / (norm + 1e-6))
    opt = torch.optim.AdamW(model.param_groups(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for step in range(NSTEPS):
        opt.zero_grad(set_to_none=True)
        _, l = model(x, y)
        l.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(l.item())
    print("  losses " + " ".join(f"{v:.6f}" for v in losses))
    assert all(a > b for a, b in zip(losses, losses[1:])), f"{name}: the loss did not fall at every step"
    assert float(model.wte.data[V:].abs().max()) == 0.0, "padded wte rows moved"
    if zeros_init:
        zeros_end = zero_trit_fractions(model)
        print("  zero trits at init:       " + " ".join(f"{n} {f:.3f}" for n, f in zeros_init))
        print(f"  zero trits after {NSTEPS} steps: " + " ".join(f"{n} {f:.3f}" for n, f in zeros_end))
        assert all(0.2 < f < 0.45 for _, f in zeros_init + zeros_end), "zero-trit fraction far from a third"
    return logits.detach(), loss.item(), flat_grads, losses


# -----------------------------------------------------------------------------
# files

def write_model(path, p):
    header = [0] * 256
    header[:8] = [20240326, 3, MAXT, V, L, NH, C, VP]
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(torch.cat([p[k].reshape(-1) for k in ORDER]).numpy().astype("<f4").tobytes())
    os.replace(path + ".tmp", path)


def write_state(path, name, x, y, logits, loss, grads, losses):
    wq, aq, norm, bq, mp = MODES[name]
    header = [0] * 256
    header[:13] = [20261124, 1, B, T, wq, aq, norm, NSTEPS, V, VP, grads.numel(), bq, mp]
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
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated modes to write (default: all); with a subset, model.bin is "
                             "written only when missing")
    args = parser.parse_args()
    modes = args.modes.split(",")
    for name in modes:
        if name not in MODES:
            parser.error(f"unknown mode {name!r}: one of {', '.join(MODES)}")
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # the same summation order on every machine
    p = init_params()
    gen = torch.Generator().manual_seed(5678)
    x = torch.randint(0, V, (B, T), generator=gen)
    y = torch.randint(0, V, (B, T), generator=gen)
    model_path = os.path.join(args.out_dir, "model.bin")
    if len(modes) == len(MODES) or not os.path.exists(model_path):
        write_model(model_path, p)
    for name in modes:
        logits, loss, grads, losses = run_mode(name, p, x, y)
        write_state(os.path.join(args.out_dir, f"state_{name}.bin"), name, x, y, logits, loss, grads, losses)
    print(f"wrote {args.out_dir}: state_{{{','.join(modes)}}}.bin")


if __name__ == "__main__":
    main()
