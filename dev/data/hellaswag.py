"""
dev/data/hellaswag.py: HellaSwag (Zellers et al. 2019) to llm.c's eval file, which llmc/hellaswag.h
reads and both trainers score with -h 1.

Run (python3 -m pip install -r dev/data/requirements.txt first; only tiktoken is used):
    python3 dev/data/hellaswag.py        # downloads hellaswag_val.jsonl -> data/hellaswag/hellaswag_val.bin
    python3 dev/data/hellaswag.py --jsonl my.jsonl -o my.bin     # a local file, no download

Each example (a line of the jsonl) has a context "ctx", four "endings" and the "label" of the right
one. As llm.c's dev/data/hellaswag.py renders it: the context is tiktoken "gpt2" encode(ctx), each
completion encode(" " + ending) (GPT-2 tokens carry their leading space). A model scores an example
by its mean loss over each completion's tokens after the context, and picks the lowest (acc_norm).

The eval file (llm.c's dev/data/data_common.py write_evalfile, byte for byte):
    int32 header[256] = {20240522 magic, 1 version, number of examples, longest example in bytes, 0...}
    then per example a run of uint16, little-endian:
        65535 (start of example), the example's size in bytes (this whole run), its index,
        label, number of completions (4),
        context length, context tokens,
        then for each completion: its length, its tokens
Every bad input is a one-line error that names it and the fix.
"""

import argparse
import json
import os
import struct
import sys
import urllib.request
from array import array

EVAL_MAGIC = 20240522
EVAL_VERSION = 1
HEADER_INTS = 256
START_EXAMPLE = 2**16 - 1    # the delimiter: no token may take this value
NUM_COMPLETIONS = 4          # llm.c's loader expects exactly 4
REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_{}.jsonl"
HINT_PIP = "---> HINT: python3 -m pip install -r dev/data/requirements.txt"


def die(msg):
    print(f"hellaswag.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


def download(url, path):
    """url -> path via path.tmp, so a failed download leaves nothing behind"""
    print(f"downloading {url} -> {path}")
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            data = r.read()
    except Exception as e:
        die(f"cannot download {url} ({e}) ---> HINT: download it by hand and pass --jsonl PATH")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def read_examples(path):
    """the jsonl's examples as (ctx, endings, label), checked; errors name the file and line"""
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        die(f"--jsonl {path}: {e.strerror} ---> HINT: run without --jsonl to download HellaSwag")
    examples = []
    with f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path} line {lineno}"
                try:
                    ex = json.loads(line)
                except json.JSONDecodeError as e:
                    die(f"{where} is not JSON ({e.msg}) ---> HINT: pass HellaSwag's hellaswag_val.jsonl, one example "
                        f"a line")
                if not isinstance(ex, dict):
                    die(f"{where} is a JSON {type(ex).__name__}, not an object with ctx, endings and label")
                for key in ("ctx", "endings", "label"):
                    if key not in ex:
                        hint = " (the test split has no labels: use val or train)" if key == "label" else ""
                        die(f"{where} has no key '{key}'{hint} ---> HINT: each line needs ctx, endings and label")
                ctx, endings, label = ex["ctx"], ex["endings"], ex["label"]
                if not isinstance(ctx, str) or not ctx:
                    die(f"{where}: ctx must be a non-empty string")
                if not (isinstance(endings, list) and len(endings) == NUM_COMPLETIONS
                        and all(isinstance(e, str) for e in endings)):
                    die(f"{where}: endings must be a list of {NUM_COMPLETIONS} strings (llm.c's loader "
                        f"takes {NUM_COMPLETIONS} completions)")
                if isinstance(label, str) and label.isdigit():
                    label = int(label)
                if not (isinstance(label, int) and 0 <= label < NUM_COMPLETIONS):
                    die(f"{where}: label must be 0..{NUM_COMPLETIONS - 1}, not {label!r}")
                examples.append((ctx, endings, label))
        except UnicodeDecodeError as e:
            die(f"{path} is not UTF-8 text ({e.reason}) ---> HINT: pass HellaSwag's jsonl file")
    if not examples:
        die(f"{path} holds no examples")
    if len(examples) >= 2**16:
        die(f"{path} holds {len(examples):,} examples; the eval file numbers them in uint16 (at most 65,535)")
    return examples


def render(enc, index, ctx, endings, label):
    """one example's uint16 run, as write_evalfile lays it out"""
    ctx_tokens = enc.encode_ordinary(ctx)
    run = [START_EXAMPLE, 0, index, label, len(endings), len(ctx_tokens), *ctx_tokens]
    for end in endings:
        end_tokens = enc.encode_ordinary(" " + end)  # the leading space: GPT-2 tokens carry it
        run += [len(end_tokens), *end_tokens]
    nbytes = 2 * len(run)
    if nbytes >= 2**16:
        die(f"example {index} takes {nbytes:,} bytes; the eval file stores its size in a uint16")
    run[1] = nbytes
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description="HellaSwag jsonl -> llm.c's eval file (for -h 1)")
    p.add_argument("--split", default="val", choices=["val", "train"], help="which split to download (default val)")
    p.add_argument("--jsonl", help="a local HellaSwag jsonl (default: download the split to data/hellaswag/)")
    p.add_argument("-o", "--out", help="the eval file to write (default data/hellaswag/hellaswag_<split>.bin)")
    args = p.parse_args(argv)
    data_dir = os.path.join(REPO_DIR, "data", "hellaswag")
    jsonl = args.jsonl
    if jsonl is None:
        jsonl = os.path.join(data_dir, f"hellaswag_{args.split}.jsonl")
        if not os.path.exists(jsonl):
            download(URL.format(args.split), jsonl)
    out = args.out or os.path.join(data_dir, f"hellaswag_{args.split}.bin")
    examples = read_examples(jsonl)

    try:
        import tiktoken
    except ImportError:
        die(f"tokenizing needs the Python package 'tiktoken', which is not installed {HINT_PIP}")
    try:
        enc = tiktoken.get_encoding("gpt2")
    except Exception as e:
        die(f"tiktoken cannot load the gpt2 encoding ({e}) ---> HINT: it downloads its files once: run with "
            f"network, or fill $TIKTOKEN_CACHE_DIR")

    stream, longest = array("H"), 0
    for i, (ctx, endings, label) in enumerate(examples):
        run = render(enc, i, ctx, endings, label)
        longest = max(longest, 2 * len(run))
        stream.extend(run)
    if sys.byteorder == "big":
        stream.byteswap()
    header = [0] * HEADER_INTS
    header[:4] = [EVAL_MAGIC, EVAL_VERSION, len(examples), longest]
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out + ".tmp", "wb") as f:
            f.write(struct.pack(f"<{HEADER_INTS}i", *header))
            f.write(stream.tobytes())
        os.replace(out + ".tmp", out)
    except OSError as e:
        die(f"-o {out}: cannot write it ({e.strerror})")
    print(f"wrote {len(examples):,} examples ({4 * HEADER_INTS + 2 * len(stream):,} bytes, longest example "
          f"{longest} bytes) to {out}")


if __name__ == "__main__":
    main()
