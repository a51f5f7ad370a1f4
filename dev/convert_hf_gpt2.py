"""
dev/convert_hf_gpt2.py: Hugging Face GPT-2 weights -> a model file the trainers load
(llmc/checkpoint.h: llm.c's format, fp32), to fine-tune a pretrained GPT-2 to 1.58 bits.

    python3 dev/convert_hf_gpt2.py DIR_OR_FILE OUT.bin [--config config.json] [--num-heads N]

DIR_OR_FILE is a folder holding model.safetensors (or pytorch_model.bin) and config.json, as
Hugging Face's hub gives them for gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2 and GPT-2
fine-tunes, or the weights file itself. Needs numpy and safetensors
(python3 -m pip install -r dev/requirements-convert.txt); torch only for pytorch_model.bin.

What it does:
  - names: `h.N.attn.c_attn.weight` ... with or without the `transformer.` prefix of
    GPT2LMHeadModel; `lm_head.weight` must equal `wte.weight` (GPT-2 ties them, and so does our
    model); the causal-mask buffers (`attn.bias`, `attn.masked_bias`) are not weights and are skipped;
  - layout: GPT-2's Conv1D stores its weights as (in, out) and computes x @ W; ours (llm.c's) are
    (out, in) like nn.Linear, so the four matrices of every block are transposed;
  - the vocab is padded to a multiple of 128 with zero rows (V = 50257 -> Vp = 50304), as llm.c does;
  - the header is llm.c's, with no quantization fields: the file loads in whatever mode the
    trainer's flags ask for (-wq, -aq, -rn), which is what fine-tuning from it needs;
  - the number of heads is not in the weights: it comes from config.json (n_head), else
    --num-heads, else C / 64 (every GPT-2 size has 64-dim heads), said so on stderr.
  - dtypes: float32, float16 and bfloat16 (read by hand: numpy has no bfloat16) become float32.

Then fine-tune it, e.g. GPT-2 124M to ternary weights on tiny Shakespeare (README):
    ./train_gpt2_1bit -e gpt2_124M.bin -rn 0 -b 4 -t 256 -x 200 -l 3e-4
Tested by tests/test_convert_hf.py (a small GPT-2-shaped safetensors file, converted and
loaded by the trainer, whose loss equals a numpy GPT-2 forward of the original weights).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

MODEL_MAGIC = 20240326  # llmc/checkpoint.h
MODEL_VERSION_FP32 = 3
HEADER_INTS = 256


def die(msg, hint=None):
    print(f"error: {msg}" + (f"\n---> HINT: {hint}" if hint else ""), file=sys.stderr)
    sys.exit(1)


def load_safetensors(path):
    """{name: float32 array} from a .safetensors file (bf16 decoded by hand)"""
    try:
        from safetensors import safe_open
    except ImportError:
        die("reading .safetensors needs the safetensors package",
            "python3 -m pip install -r dev/requirements-convert.txt")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > 100_000_000:
            die(f"'{path}' is not a safetensors file (header length {n})")
        header = json.loads(f.read(n))
    data_start = 8 + n
    tensors = {}
    try:
        handle = safe_open(path, framework="numpy")
    except Exception as e:  # noqa: BLE001 (the package's own error says what is wrong with the file)
        die(f"'{path}' could not be read as safetensors: {e}")
    with handle as st:
        for name in st.keys():
            info = header[name]
            if info["dtype"] == "BF16":  # the top 16 bits of a float32
                a, b = info["data_offsets"]
                raw = np.fromfile(path, dtype=np.uint16, count=(b - a) // 2, offset=data_start + a)
                tensors[name] = (raw.astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])
            else:
                tensors[name] = st.get_tensor(name).astype(np.float32)
    return tensors


def load_pytorch(path):
    """{name: float32 array} from a pytorch_model.bin (needs torch)"""
    try:
        import torch
    except ImportError:
        die(f"'{path}' is a PyTorch file: reading it needs torch",
            "python3 -m pip install torch, or use the model's model.safetensors instead")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in state.items()}


def find_weights(src):
    """the weights file and the config.json beside it (or None)"""
    if os.path.isdir(src):
        for name in ("model.safetensors", "pytorch_model.bin"):
            if os.path.exists(os.path.join(src, name)):
                weights = os.path.join(src, name)
                break
        else:
            die(f"'{src}' holds neither model.safetensors nor pytorch_model.bin",
                "download a GPT-2 model's files from Hugging Face into it (e.g. gpt2: config.json and model.safetensors)")
    elif os.path.exists(src):
        weights = src
    else:
        die(f"'{src}' does not exist")
    config = os.path.join(os.path.dirname(weights), "config.json")
    return weights, config if os.path.exists(config) else None


def gpt2_params(tensors, num_heads, src):
    """(config dict, [16 float32 arrays in llmc/gpt2_config.h's order]) from HF GPT-2 tensors;
    num_heads None: C / 64"""
    sd = {}
    for k, v in tensors.items():
        k = k[len("transformer."):] if k.startswith("transformer.") else k
        if k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"):
            continue  # the causal mask, a buffer
        sd[k] = v
    for need in ("wte.weight", "wpe.weight", "ln_f.weight"):
        if need not in sd:
            die(f"'{src}' has no tensor {need} (nor transformer.{need}): not a GPT-2 model",
                "pass a GPT-2 checkpoint from Hugging Face (GPT2Model or GPT2LMHeadModel)")
    wte, wpe = sd.pop("wte.weight"), sd.pop("wpe.weight")
    V, C = wte.shape
    maxT = wpe.shape[0]
    head = sd.pop("lm_head.weight", None)
    if head is not None and not np.array_equal(head, wte):
        die(f"'{src}' has an lm_head.weight that is not wte.weight: our model ties them")
    L = 0
    while f"h.{L}.ln_1.weight" in sd:
        L += 1
    if num_heads is None:
        num_heads = max(C // 64, 1)
        print(f"note: no config.json nor --num-heads: assuming {num_heads} heads of 64 (C = {C})", file=sys.stderr)
    if num_heads < 1 or C % num_heads != 0:
        die(f"{num_heads} heads do not divide C = {C}", "pass --num-heads (config.json's n_head)")
    Vp = (V + 127) // 128 * 128
    cfg = dict(maxT=maxT, V=V, Vp=Vp, L=L, NH=num_heads, C=C)

    def take(name, shape, transpose=False):
        if name not in sd:
            die(f"'{src}' has no tensor {name}")
        a = sd.pop(name)
        a = a.T if transpose else a  # Conv1D (in, out) -> (out, in)
        if a.shape != shape:
            die(f"'{src}': {name} has shape {tuple(a.shape)}, expected {shape}{' after the transpose' if transpose else ''}")
        return a

    layers = {n: [] for n in ("ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
                              "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb")}
    for l in range(L):
        h = f"h.{l}."
        layers["ln1w"].append(take(h + "ln_1.weight", (C,)))
        layers["ln1b"].append(take(h + "ln_1.bias", (C,)))
        layers["qkvw"].append(take(h + "attn.c_attn.weight", (3 * C, C), transpose=True))
        layers["qkvb"].append(take(h + "attn.c_attn.bias", (3 * C,)))
        layers["attprojw"].append(take(h + "attn.c_proj.weight", (C, C), transpose=True))
        layers["attprojb"].append(take(h + "attn.c_proj.bias", (C,)))
        layers["ln2w"].append(take(h + "ln_2.weight", (C,)))
        layers["ln2b"].append(take(h + "ln_2.bias", (C,)))
        layers["fcw"].append(take(h + "mlp.c_fc.weight", (4 * C, C), transpose=True))
        layers["fcb"].append(take(h + "mlp.c_fc.bias", (4 * C,)))
        layers["fcprojw"].append(take(h + "mlp.c_proj.weight", (C, 4 * C), transpose=True))
        layers["fcprojb"].append(take(h + "mlp.c_proj.bias", (C,)))
    lnfw, lnfb = take("ln_f.weight", (C,)), take("ln_f.bias", (C,))
    if sd:
        die(f"'{src}' has tensors this converter does not know: {sorted(sd)[:5]}")
    wte_padded = np.zeros((Vp, C), dtype=np.float32)
    wte_padded[:V] = wte
    order = [wte_padded, wpe] + [np.stack(layers[n]) for n in ("ln1w", "ln1b", "qkvw", "qkvb", "attprojw",
                                                               "attprojb", "ln2w", "ln2b", "fcw", "fcb",
                                                               "fcprojw", "fcprojb")] + [lnfw, lnfb]
    return cfg, [np.ascontiguousarray(a, dtype=np.float32) for a in order]


def write_model(path, cfg, params):
    """llm.c's model file: int32 header[256], then the float32 parameters; written to .tmp, renamed"""
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[:8] = [MODEL_MAGIC, MODEL_VERSION_FP32, cfg["maxT"], cfg["V"], cfg["L"], cfg["NH"], cfg["C"], cfg["Vp"]]
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        for a in params:
            f.write(a.tobytes())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="Hugging Face GPT-2 weights -> a train_gpt2_1bit model file")
    ap.add_argument("src", help="a folder with model.safetensors (or pytorch_model.bin) and config.json, or the file")
    ap.add_argument("out", help="the model file to write, e.g. gpt2_124M.bin")
    ap.add_argument("--config", help="config.json (default: the one beside the weights)")
    ap.add_argument("--num-heads", type=int, help="number of attention heads (default: config.json's n_head, else C/64)")
    args = ap.parse_args()
    weights, config_path = find_weights(args.src)
    config_path = args.config or config_path
    hf = {}
    if config_path is not None:
        with open(config_path, encoding="utf-8") as f:
            hf = json.load(f)
        if hf.get("model_type", "gpt2") != "gpt2":
            die(f"'{config_path}' is a {hf.get('model_type')} model, not gpt2")
        act = hf.get("activation_function", "gelu_new")
        if act != "gelu_new":  # our GELU is the tanh form, GPT-2's gelu_new
            print(f"warning: {config_path}: activation {act}, ours is gelu_new (tanh): the model will differ",
                  file=sys.stderr)
    tensors = load_safetensors(weights) if weights.endswith(".safetensors") else load_pytorch(weights)
    num_heads = args.num_heads or hf.get("n_head")  # None: C / 64, decided once C is known
    cfg, params = gpt2_params(tensors, None if num_heads is None else int(num_heads), weights)
    for key, have in (("n_embd", cfg["C"]), ("n_layer", cfg["L"]), ("n_positions", cfg["maxT"]),
                      ("vocab_size", cfg["V"])):
        if key in hf and hf[key] != have:
            die(f"'{config_path}' says {key} = {hf[key]} but the weights have {have}")
    bad = [i for i, a in enumerate(params) if not np.all(np.isfinite(a))]
    if bad:
        die(f"'{weights}' holds non-finite values (tensor {bad[0]} of 16 in llm.c's order)")
    write_model(args.out, cfg, params)
    n = sum(a.size for a in params)
    print(f"wrote {args.out}: GPT-2 L={cfg['L']} NH={cfg['NH']} C={cfg['C']} maxT={cfg['maxT']} V={cfg['V']} "
          f"(Vp={cfg['Vp']}), {n} parameters, {os.path.getsize(args.out) / 1e6:.1f} MB")
    print(f"fine-tune it to ternary: ./train_gpt2_1bit -e {args.out} -rn 0   (-rn 1: with the inner RMSNorm, "
          "not exportable to GGUF)")


if __name__ == "__main__":
    main()
