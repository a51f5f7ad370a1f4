"""
tests/test_convert_hf.py: dev/convert_hf_gpt2.py on small GPT-2-shaped Hugging Face files that
this test writes (HF's names and Conv1D (in, out) layout, the causal-mask buffers, config.json):
  - every tensor of the converted model file equals the HF tensor, transposed where Conv1D
    stores (in, out); the vocab padded with zero rows to a multiple of 128; llm.c's header;
  - the trainer loads the file and, in fp mode (plain GPT-2), its loss on a batch equals a
    numpy GPT-2 forward of the original HF weights (Conv1D semantics: x @ W + b);
  - GPT2LMHeadModel's `transformer.` names with a tied lm_head, bfloat16 weights, the heads from
    --num-heads instead of config.json, and the default ternary mode load too;
  - bad input (not GPT-2, an untied head, a missing file): a one-line error, no file written.
Run (needs numpy and safetensors: python3 -m pip install -r dev/requirements-convert.txt; and
./train_gpt2_1bit: make train_gpt2_1bit):
    python3 tests/test_convert_hf.py
Prints PASS: <name> or FAIL: <name>: <details> per check, then a summary line; exits 1 on a failure.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # leave no __pycache__ in the repo
from checks import check, finish  # noqa: E402  (PASS/FAIL lines, the summary line; the test package dir on sys.path)

CONVERT = os.path.join(REPO_DIR, "dev", "convert_hf_gpt2.py")
TRAIN = os.path.join(REPO_DIR, "train_gpt2_1bit")
try:
    import numpy as np
    from safetensors.numpy import save_file
except ImportError as e:
    check("import numpy and safetensors", False, f"{e} ---> HINT: python3 -m pip install -r dev/requirements-convert.txt")
    finish()
if not os.path.exists(TRAIN):
    check("./train_gpt2_1bit exists", False, "not found ---> HINT: make train_gpt2_1bit")
    finish()

# the test model: GPT-2's shape, small (V = 250 is not a multiple of 128: the padding shows)
V, C, L, NH, MAXT = 250, 64, 2, 4, 64
T = 64  # the tokens of the loss check: one batch of B=1, T=64
# The trainer's fp32 forward vs numpy's float64 on the same weights: float32 rounding over
# 2 layers of 64 channels moves the loss by ~1e-6; it prints 4 decimals (+-5e-5)
LOSS_TOL = 2e-4


def hf_gpt2(seed):
    """HF GPT-2 tensors (GPT2Model's names, Conv1D weights (in, out)) with random values"""
    rng = np.random.default_rng(seed)
    r = lambda *shape: (0.05 * rng.standard_normal(shape)).astype(np.float32)  # noqa: E731
    sd = {"wte.weight": r(V, C), "wpe.weight": r(MAXT, C), "ln_f.weight": 1 + r(C), "ln_f.bias": r(C)}
    for l in range(L):
        h = f"h.{l}."
        sd.update({h + "ln_1.weight": 1 + r(C), h + "ln_1.bias": r(C),
                   h + "attn.c_attn.weight": r(C, 3 * C), h + "attn.c_attn.bias": r(3 * C),
                   h + "attn.c_proj.weight": r(C, C), h + "attn.c_proj.bias": r(C),
                   h + "ln_2.weight": 1 + r(C), h + "ln_2.bias": r(C),
                   h + "mlp.c_fc.weight": r(C, 4 * C), h + "mlp.c_fc.bias": r(4 * C),
                   h + "mlp.c_proj.weight": r(4 * C, C), h + "mlp.c_proj.bias": r(C),
                   # the causal mask, a buffer HF saves in older files: not a weight
                   h + "attn.bias": np.tril(np.ones((MAXT, MAXT), np.float32)).reshape(1, 1, MAXT, MAXT)})
    return sd


def hf_config(**over):
    cfg = {"model_type": "gpt2", "n_embd": C, "n_layer": L, "n_head": NH, "n_positions": MAXT,
           "vocab_size": V, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}
    cfg.update(over)
    return cfg


def write_hf(folder, sd, config=None, name="model.safetensors"):
    os.makedirs(folder, exist_ok=True)
    save_file(sd, os.path.join(folder, name))
    if config is not None:
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f)
    return folder


def convert(*args):
    return subprocess.run([sys.executable, CONVERT, *args], capture_output=True, text=True)


def read_model(path):
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(1024), dtype=np.int32)
        params = np.frombuffer(f.read(), dtype=np.float32)
    return header, params


def expected_params(sd):
    """the 16 tensors in llm.c's order, from HF's: Conv1D weights transposed, wte padded"""
    g = lambda n: sd[n] if n in sd else sd["transformer." + n]  # noqa: E731
    Vp = (V + 127) // 128 * 128
    wte = np.zeros((Vp, C), np.float32)
    wte[:V] = g("wte.weight")
    per_layer = [("ln_1.weight", 0), ("ln_1.bias", 0), ("attn.c_attn.weight", 1), ("attn.c_attn.bias", 0),
                 ("attn.c_proj.weight", 1), ("attn.c_proj.bias", 0), ("ln_2.weight", 0), ("ln_2.bias", 0),
                 ("mlp.c_fc.weight", 1), ("mlp.c_fc.bias", 0), ("mlp.c_proj.weight", 1), ("mlp.c_proj.bias", 0)]
    out = [wte, g("wpe.weight")]
    for n, tr in per_layer:
        out.append(np.stack([g(f"h.{l}.{n}").T if tr else g(f"h.{l}.{n}") for l in range(L)]))
    return out + [g("ln_f.weight"), g("ln_f.bias")]


def numpy_gpt2_loss(sd, tokens):
    """GPT-2 as Hugging Face computes it (Conv1D: x @ W + b, gelu_new, eps 1e-5), float64"""
    g = lambda n: sd[n].astype(np.float64)  # noqa: E731
    def ln(x, w, b):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + 1e-5) * w + b
    inp, tgt = tokens[:-1], tokens[1:]
    n = len(inp)
    x = g("wte.weight")[inp] + g("wpe.weight")[:n]
    hs = C // NH
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for l in range(L):
        h = f"h.{l}."
        a = ln(x, g(h + "ln_1.weight"), g(h + "ln_1.bias")) @ g(h + "attn.c_attn.weight") + g(h + "attn.c_attn.bias")
        q, k, v = (a[:, i * C:(i + 1) * C].reshape(n, NH, hs).transpose(1, 0, 2) for i in range(3))
        att = q @ k.transpose(0, 2, 1) / np.sqrt(hs) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(1, 0, 2).reshape(n, C)
        x = x + y @ g(h + "attn.c_proj.weight") + g(h + "attn.c_proj.bias")
        f = ln(x, g(h + "ln_2.weight"), g(h + "ln_2.bias")) @ g(h + "mlp.c_fc.weight") + g(h + "mlp.c_fc.bias")
        f = 0.5 * f * (1 + np.tanh(np.sqrt(2 / np.pi) * (f + 0.044715 * f ** 3)))
        x = x + f @ g(h + "mlp.c_proj.weight") + g(h + "mlp.c_proj.bias")
    logits = ln(x, g("ln_f.weight"), g("ln_f.bias")) @ g("wte.weight").T
    logits -= logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return float(-logp[np.arange(n), tgt].mean())


def write_shard(path, tokens):
    """llm.c's token shard (llmc/dataloader.h)"""
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, len(tokens), *([0] * 253)))
        f.write(np.asarray(tokens, dtype=np.uint16).tobytes())


def trainer_val_loss(model, shard, *flags):
    """the step-0 val loss the trainer prints for the first batch (B=1, T) of shard"""
    r = subprocess.run([TRAIN, "-e", model, "-i", shard, "-j", shard, "-b", "1", "-t", str(T), "-x", "0",
                        "-v", "1", "-m", "1", "-s", "0", "-o", "", *flags],
                       capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    m = re.search(r"step\s+0 \| val loss ([0-9.naninf]+)", r.stdout)
    return (float(m.group(1)) if m else None), r


tmp = tempfile.mkdtemp(prefix="test_convert_hf_")
sd = hf_gpt2(1)
tokens = np.random.default_rng(2).integers(0, V, size=200).tolist()
shard = os.path.join(tmp, "tokens.bin")
write_shard(shard, tokens)

# 1. GPT2Model's names in model.safetensors, config.json beside it
src = write_hf(os.path.join(tmp, "gpt2-tiny"), sd, hf_config())
out = os.path.join(tmp, "converted.bin")
r = convert(src, out)
if check("converts a folder with model.safetensors and config.json", r.returncode == 0 and os.path.exists(out),
         f"exit {r.returncode}: {r.stderr.strip()}"):
    header, params = read_model(out)
    Vp = (V + 127) // 128 * 128
    want_header = [20240326, 3, MAXT, V, L, NH, C, Vp]
    check(f"llm.c's header (magic, version 3, maxT {MAXT}, V {V}, L {L}, NH {NH}, C {C}, Vp {Vp}), no quantization "
          "fields: it loads in the mode the flags ask for", header[:8].tolist() == want_header and not header[8:].any(),
          f"header {header[:24].tolist()}")
    want = np.concatenate([a.ravel() for a in expected_params(sd)])
    check("every tensor equals the HF one, Conv1D matrices transposed to (out, in), the vocab padded with zero rows",
          params.shape == want.shape and np.array_equal(params, want),
          f"sizes {params.shape} vs {want.shape}")

    # 2. the trainer loads it and computes GPT-2: fp mode against the numpy forward
    ref = numpy_gpt2_loss(sd, tokens[:T + 1])
    loss, r = trainer_val_loss(out, shard, "-wq", "fp", "-aq", "none", "-rn", "0")
    check(f"the trainer loads it and, in fp mode, its loss equals a numpy GPT-2 of the HF weights "
          f"({loss} vs {ref:.6f}, tolerance {LOSS_TOL})",
          loss is not None and abs(loss - ref) <= LOSS_TOL, f"exit {r.returncode}: {r.stderr.strip()[-500:]}")
    loss, r = trainer_val_loss(out, shard)
    check(f"... and starts in the default ternary mode (the fine-tuning start: loss {loss})",
          loss is not None and np.isfinite(loss) and r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip()[-500:]}")

# 3. GPT2LMHeadModel: transformer. prefix, lm_head tied; bf16; heads from --num-heads, no config.json
lm = {"transformer." + k: v for k, v in sd.items()}
lm["lm_head.weight"] = sd["wte.weight"].copy()
src_lm = write_hf(os.path.join(tmp, "gpt2-lmhead"), lm)
out_lm = os.path.join(tmp, "converted_lm.bin")
r = convert(os.path.join(src_lm, "model.safetensors"), out_lm, "--num-heads", str(NH))
ok = r.returncode == 0 and os.path.exists(out_lm)
check("GPT2LMHeadModel's names (transformer.*, tied lm_head), heads from --num-heads: the same file",
      ok and read_model(out_lm)[1].tobytes() == read_model(out)[1].tobytes() and read_model(out_lm)[0][5] == NH,
      f"exit {r.returncode}: {r.stderr.strip()}")
# bfloat16: write the top 16 bits of each float32 by hand (numpy has no bfloat16), as safetensors stores BF16
bf_dir = os.path.join(tmp, "gpt2-bf16")
os.makedirs(bf_dir)
names = sorted(sd)
header, off, blobs = {}, 0, []
for n in names:
    raw = (sd[n].view(np.uint32) >> 16).astype(np.uint16).tobytes()
    header[n] = {"dtype": "BF16", "shape": list(sd[n].shape), "data_offsets": [off, off + len(raw)]}
    off += len(raw)
    blobs.append(raw)
hjson = json.dumps(header).encode()
with open(os.path.join(bf_dir, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hjson)) + hjson + b"".join(blobs))
with open(os.path.join(bf_dir, "config.json"), "w") as f:
    json.dump(hf_config(), f)
out_bf = os.path.join(tmp, "converted_bf16.bin")
r = convert(bf_dir, out_bf)
truncated = {n: (sd[n].view(np.uint32) & 0xFFFF0000).view(np.float32) for n in sd}
want_bf = np.concatenate([a.ravel() for a in expected_params(truncated)])
check("bfloat16 weights are read (numpy has no bfloat16): each value its float32 with the low 16 bits zero",
      r.returncode == 0 and np.array_equal(read_model(out_bf)[1], want_bf), f"exit {r.returncode}: {r.stderr.strip()}")

# 4. bad input: one line "error: ...", exit 1, nothing written
def refused(name, args, words, out_path):
    r = convert(*args)
    err = r.stderr.strip()
    check(name, r.returncode != 0 and err.startswith("error:") and all(w in err for w in words)
          and "Traceback" not in err and not os.path.exists(out_path) and not os.path.exists(out_path + ".tmp"),
          f"exit {r.returncode}, stderr: {err[:400]}")


bad_out = os.path.join(tmp, "bad.bin")
untied = dict(lm)
untied["lm_head.weight"] = lm["lm_head.weight"] + 1
refused("an lm_head that is not tied to wte is refused (our model ties them)",
        [write_hf(os.path.join(tmp, "untied"), untied, hf_config()), bad_out], ["lm_head", "ties"], bad_out)
refused("a file that is not GPT-2 (no wte.weight) is refused, naming the tensor",
        [write_hf(os.path.join(tmp, "notgpt2"), {"foo.weight": np.zeros((2, 2), np.float32)}), bad_out],
        ["wte.weight"], bad_out)
empty = os.path.join(tmp, "empty")
os.makedirs(empty)
refused("a folder with no weights file says which files it looks for", [empty, bad_out],
        ["model.safetensors", "pytorch_model.bin"], bad_out)
refused("config.json that disagrees with the weights is refused",
        [write_hf(os.path.join(tmp, "badcfg"), sd, hf_config(n_layer=3)), bad_out], ["n_layer"], bad_out)

shutil.rmtree(tmp)
finish()
