"""
Writes two small token shards in llm.c's format for the tests that run the
trainer on tests/ref/model.bin (V = 250): no dependence on data/.
    python3 tests/make_tiny_shards.py OUTDIR   -> OUTDIR/train.bin (20,000 tokens), OUTDIR/val.bin (4,000)
The tokens repeat a few random "sentences" so that a model can learn them.
Shard format: int32 header[256] = {20240520, 1, ntokens, 0...}, then uint16 tokens.
"""
import os
import random
import struct
import sys


def write_shard(path, tokens):
    header = [20240520, 1, len(tokens)] + [0] * 253
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack(f"<{len(tokens)}H", *tokens))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(1)
    sentences = [[rng.randrange(1, 250) for _ in range(rng.randrange(4, 12))] for _ in range(20)]
    stream = []
    while len(stream) < 24000:
        stream += [0] + rng.choice(sentences)  # 0 plays the end-of-text token
    write_shard(os.path.join(out, "train.bin"), stream[:20000])
    write_shard(os.path.join(out, "val.bin"), stream[20000:24000])


if __name__ == "__main__":
    main()
