#!/usr/bin/env python3
"""
tests/make_tiny_data.py: writes small token shards in llm.c's format for the
shell tests (tests/test_bad_input.sh, tests/test_resume.sh), so they never
need data/ or the GPT-2 tokenizer.

Shard format (llmc/dataloader.h):
  int32 header[256]: [0] 20240520 magic, [1] 1 version, [2] number of tokens
  uint16 tokens[number of tokens]

Tokens are ids below 250, the vocab size V of tests/ref/model.bin. The text is
a fixed-seed walk through a handful of short "sentences" (runs of 4..12 ids),
so the next token is mostly predictable and a model can overfit it quickly.

Usage: python3 tests/make_tiny_data.py OUTDIR [NTRAIN NVAL]
  writes OUTDIR/train.bin (default 20000 tokens) and OUTDIR/val.bin (4000)
Stdlib only.
"""
import os
import random
import struct
import sys

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
VOCAB = 250  # tests/ref/model.bin has V = 250


def write_shard(path, tokens):
    """write tokens (ints < 65536) as an llm.c shard"""
    header = [0] * 256
    header[0] = SHARD_MAGIC
    header[1] = SHARD_VERSION
    header[2] = len(tokens)
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack("<%dH" % len(tokens), *tokens))


def make_tokens(n, seed):
    """n ids in [0, VOCAB): sentences drawn from a small fixed set, with a little noise"""
    rng = random.Random(1234)  # the sentence set is the same for train and val
    sentences = [[rng.randrange(1, VOCAB) for _ in range(rng.randrange(4, 13))] for _ in range(12)]
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        out.append(0)  # a separator, like GPT-2's EOT
        for t in rng.choice(sentences):
            out.append(rng.randrange(VOCAB) if rng.random() < 0.02 else t)
    return out[:n]


def main():
    if len(sys.argv) not in (2, 4):
        sys.stderr.write("usage: %s OUTDIR [NTRAIN NVAL]\n" % sys.argv[0])
        sys.exit(2)
    outdir = sys.argv[1]
    ntrain, nval = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) == 4 else (20000, 4000)
    os.makedirs(outdir, exist_ok=True)
    write_shard(os.path.join(outdir, "train.bin"), make_tokens(ntrain, seed=1))
    write_shard(os.path.join(outdir, "val.bin"), make_tokens(nval, seed=2))


if __name__ == "__main__":
    main()
