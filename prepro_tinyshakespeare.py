"""
Tokenizes the TinyShakespeare text with the GPT-2 tokenizer and writes the token shards and the
tokenizer file that train_gpt2_1bit.c / .cu read. Python 3 standard library only: the GPT-2
byte-level BPE is written out here in full (the same algorithm as tiktoken's "gpt2" encoding,
token for token), so that it can be read, tested, and later ported to C.

Run (from anywhere; paths are relative to this script's directory):
    python3 prepro_tinyshakespeare.py                 # find or download inputs, write data/
    python3 prepro_tinyshakespeare.py --out-dir /tmp/d
    python3 prepro_tinyshakespeare.py -h              # every flag and its default

Inputs, first found wins (else downloaded into data/ with urllib):
    text:      --text PATH, ../shared/data/tinyshakespeare.txt, data/tinyshakespeare/input.txt
    BPE files: --bpe-dir DIR, ../shared/data/gpt2/, data/gpt2/   (encoder.json and vocab.bpe)

Writes (OUT = --out-dir, default data/):
    OUT/tinyshakespeare/tiny_shakespeare_val.bin     32,768 tokens
    OUT/tinyshakespeare/tiny_shakespeare_train.bin  305,260 tokens
    (another text is named after its file, or --name: --text corpora/kjv.txt writes OUT/kjv/kjv_val.bin
    and OUT/kjv/kjv_train.bin; the first 32,768 tokens are val, the rest train)
        int32 header[256] = {20240520 magic, 1 version, number of tokens, 0...}, then uint16 tokens
    OUT/gpt2_tokenizer.bin
        uint32 header[256] = {20240328 magic, 2 version, 50257 vocab size, 50256 EOT id, 0...},
        then for each token id: uint8 length, that many raw bytes
All integers little-endian; these are llm.c's formats (dev/data/data_common.py, train_gpt2.py).

As a library (tests/test_prepro.py does this):
    import prepro_tinyshakespeare as prepro
    prepro.load_bpe("path/to/gpt2")        # dir holding encoder.json and vocab.bpe
    ids = prepro.encode("Hello world")      # [15496, 995]
    prepro.decode(ids)                      # "Hello world"
"""

import argparse
import hashlib
import json
import os
import re
import struct
import sys
import time
import unicodedata
import urllib.request
from array import array

# -----------------------------------------------------------------------------
# constants

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))

TEXT_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
BPE_BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
BPE_FILES = ("encoder.json", "vocab.bpe")
# sha256 of the standard files; the BPE ones are the hashes tiktoken checks (tiktoken_ext/openai_public.py)
TEXT_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
BPE_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}

EOT = 50256             # <|endoftext|>, the one special token of GPT-2
VOCAB_SIZE = 50257
EOT_STRING = "<|endoftext|>"
VAL_TOKENS = 32768      # llm.c: the first 32,768 tokens are the validation split (~10%)
TRAIN_TOKENS = 305260   # what the rest comes to for the standard text

SHARD_MAGIC, SHARD_VERSION = 20240520, 1
TOKENIZER_MAGIC, TOKENIZER_VERSION = 20240328, 2
HEADER_INTS = 256

# -----------------------------------------------------------------------------
# byte-level alphabet: GPT-2 runs BPE on bytes, each shown as one printable unicode character

def bytes_to_unicode():
    """Returns {byte: char}. Printable bytes map to themselves ('!' -> '!'); the other 68 bytes
    (control, space, 0x7F-0xA0, 0xAD) map to chr(256), chr(257), ... in byte order, so that a
    space shows as 'Ġ' (chr(288)) and a newline as 'Ċ' (chr(266)) in encoder.json and vocab.bpe."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table

BYTE_ENCODER = bytes_to_unicode()                           # byte -> char
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}      # char -> byte

# -----------------------------------------------------------------------------
# pre-tokenization: the GPT-2 regex, as a hand-written scanner
#
# GPT-2 first splits text into pieces with this regex, and BPE never merges across pieces:
#   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# (tiktoken writes it as '(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s
# which matches the same pieces.) Python's re has no \p{L}, so each character gets one of four
# classes and the alternatives are tried in order at each position, as the regex engine does.

LETTER, NUMBER, SPACE, OTHER = 0, 1, 2, 3

# \s in tiktoken's regex engine (Rust fancy-regex / regex, Unicode mode) is the Unicode White_Space
# property. Not str.isspace(): that is also true for U+001C..U+001F, which \s does not match.
WHITESPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000")

_class_cache = {}

def char_class(c):
    """LETTER for \\p{L} (categories L*), NUMBER for \\p{N} (N*), SPACE for \\s, else OTHER.
    Note the categories come from Python's unicodedata, whose Unicode version may trail the Rust
    regex crate's: a character assigned only in a newer Unicode can be classed differently."""
    k = _class_cache.get(c)
    if k is None:
        if c in WHITESPACE:
            k = SPACE
        else:
            cat = unicodedata.category(c)[0]
            k = LETTER if cat == "L" else NUMBER if cat == "N" else OTHER
        _class_cache[c] = k
    return k

def pretokenize(text):
    """Splits text into the pieces the GPT-2 regex finds, e.g.
    "I'm  here!\\n\\n" -> ["I", "'m", " ", " here", "!", "\\n\\n"]."""
    cls = [char_class(c) for c in text]
    pieces = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        # 's 't 're 've 'm 'll 'd (lowercase only: "'S" is "'" then "S")
        if c == "'":
            if text[i + 1:i + 3] in ("re", "ve", "ll"):
                pieces.append(text[i:i + 3])
                i += 3
                continue
            if text[i + 1:i + 2] in ("s", "t", "m", "d"):
                pieces.append(text[i:i + 2])
                i += 2
                continue
        # ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional single space (U+0020 only),
        # then the longest run of one class. A space followed by a non-space always starts one.
        j = i + 1 if (c == " " and i + 1 < n and cls[i + 1] != SPACE) else i
        k = cls[j]
        if k != SPACE:
            j += 1
            while j < n and cls[j] == k:
                j += 1
            pieces.append(text[i:j])
            i = j
            continue
        # whitespace run text[i:j]. '\s+(?!\S)' takes all of it at the end of the text, else all
        # but its last char (which then leads the next piece, e.g. " world"); when the run is a
        # single char before a non-space, that fails and '\s+' takes the one char.
        j = i + 1
        while j < n and cls[j] == SPACE:
            j += 1
        if j < n and j - i > 1:
            j -= 1
        pieces.append(text[i:j])
        i = j
    return pieces

# -----------------------------------------------------------------------------
# BPE: merge the byte-level characters of each piece, lowest rank first

_ranks = None           # byte-level string -> token id; an id is also the merge rank
_id_to_bytes = None     # token id -> raw bytes (list of VOCAB_SIZE)
_cache = {}             # piece -> list of token ids

def load_bpe(bpe_dir=None):
    """Loads vocab.bpe (the merges, in rank order) and encoder.json (token -> id) from bpe_dir
    (default: search, else download, as the script does) and checks that they agree."""
    global _ranks, _id_to_bytes, _cache
    if bpe_dir is None:
        bpe_dir = find_bpe_dir(None)
    with open(os.path.join(bpe_dir, "vocab.bpe"), "r", encoding="utf-8") as f:
        # first line is "#version: 0.2", then one "first second" merge per line, best first
        merges = [tuple(line.split()) for line in f.read().split("\n")[1:-1]]
    with open(os.path.join(bpe_dir, "encoder.json"), "r", encoding="utf-8") as f:
        encoder = json.load(f)
    # ranks as tiktoken builds them: the 256 single bytes (printable ones first, i.e. in
    # bytes_to_unicode order), then merge number m creates token 256 + m
    ranks = {c: i for i, c in enumerate(BYTE_ENCODER.values())}
    for first, second in merges:
        ranks[first + second] = len(ranks)
    # encoder.json holds the same tokens with the same ids, plus <|endoftext|> = 50256
    eot = encoder.pop(EOT_STRING, None)
    assert eot == EOT, "encoder.json: <|endoftext|> is not 50256"
    assert ranks == encoder, "vocab.bpe and encoder.json disagree: are they both GPT-2's?"
    assert len(ranks) == EOT, f"expected {EOT} mergeable tokens, got {len(ranks)}"
    id_to_bytes = [b""] * VOCAB_SIZE
    for s, i in ranks.items():
        id_to_bytes[i] = bytes(BYTE_DECODER[c] for c in s)
    id_to_bytes[EOT] = EOT_STRING.encode("utf-8")
    _ranks, _id_to_bytes, _cache = ranks, id_to_bytes, {}

def bpe(piece):
    """Token ids of one pre-token, e.g. " Hello" -> [18435]."""
    return bpe_bytes(piece.encode("utf-8"))

def bpe_bytes(piece):
    """Token ids of one pre-token given as bytes (so it may hold invalid UTF-8). Like tiktoken:
    a piece that is already a token is returned whole; otherwise the adjacent pair whose
    concatenation has the lowest rank is merged (leftmost on ties), until no adjacent pair forms
    a token. (O(len^2) per piece: fine for text, slow for a megabyte of one repeated character.)"""
    word = "".join(BYTE_ENCODER[b] for b in piece)
    tok = _ranks.get(word)
    if tok is not None:
        return [tok]
    parts = list(word)
    while len(parts) > 1:
        best, best_i = None, -1
        for i in range(len(parts) - 1):
            r = _ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best):
                best, best_i = r, i
        if best_i < 0:
            break
        parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return [_ranks[p] for p in parts]

def encode(text):
    """GPT-2 token ids of text; equals tiktoken's get_encoding("gpt2").encode_ordinary(text)
    ("<|endoftext|>" in the text is plain text, not the EOT token)."""
    if _ranks is None:
        raise RuntimeError("call load_bpe(bpe_dir) before encode()")
    ids = []
    for piece in pretokenize(text):
        toks = _cache.get(piece)
        if toks is None:
            toks = _cache[piece] = bpe(piece)
        ids.extend(toks)
    return ids

def decode(ids):
    """Text of token ids; bytes that are not valid UTF-8 become U+FFFD (as tiktoken does)."""
    if _id_to_bytes is None:
        raise RuntimeError("call load_bpe(bpe_dir) before decode()")
    return b"".join(_id_to_bytes[i] for i in ids).decode("utf-8", errors="replace")

def token_bytes(i):
    """The raw bytes of token id i (what gpt2_tokenizer.bin stores)."""
    return _id_to_bytes[i]

# -----------------------------------------------------------------------------
# finding (or downloading) the inputs

def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()

def die(msg):
    print(f"prepro_tinyshakespeare.py: error: {msg}", file=sys.stderr)
    sys.exit(1)

def download(url, path):
    """Downloads url to path (via path.tmp, so a failed download leaves nothing behind)."""
    print(f"downloading {url} -> {path}")
    with urllib.request.urlopen(url, timeout=60) as r:
        data = r.read()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)

def find_text(flag):
    """Path of tinyshakespeare.txt: --text, ../shared/data, data/tinyshakespeare, else download."""
    if flag is not None:
        if not os.path.isfile(flag):
            die(f"--text {flag}: no such file")
        return flag
    candidates = [os.path.join(SCRIPT_DIR, "..", "shared", "data", "tinyshakespeare.txt"),
                  os.path.join(SCRIPT_DIR, "data", "tinyshakespeare", "input.txt")]
    for path in candidates:
        if os.path.isfile(path):
            return os.path.normpath(path)
    try:
        download(TEXT_URL, candidates[1])
    except Exception as e:
        die(f"tinyshakespeare.txt not found and download failed ({e}); ---> HINT: put it at "
            f"{os.path.normpath(candidates[1])} or pass --text PATH")
    return candidates[1]

def find_bpe_dir(flag):
    """Dir holding encoder.json and vocab.bpe: --bpe-dir, ../shared/data/gpt2, data/gpt2, else download."""
    def has_both(d):
        return all(os.path.isfile(os.path.join(d, name)) for name in BPE_FILES)
    if flag is not None:
        if not has_both(flag):
            die(f"--bpe-dir {flag}: needs both encoder.json and vocab.bpe")
        return flag
    candidates = [os.path.join(SCRIPT_DIR, "..", "shared", "data", "gpt2"),
                  os.path.join(SCRIPT_DIR, "data", "gpt2")]
    for d in candidates:
        if has_both(d):
            return os.path.normpath(d)
    d = candidates[1]
    try:
        for name in BPE_FILES:
            if not os.path.isfile(os.path.join(d, name)):
                download(BPE_BASE_URL + name, os.path.join(d, name))
    except Exception as e:
        die(f"GPT-2 encoder.json/vocab.bpe not found and download failed ({e}); ---> HINT: put "
            f"them in {os.path.normpath(d)} or pass --bpe-dir DIR")
    for name in BPE_FILES:
        if sha256_of(os.path.join(d, name)) != BPE_SHA256[name]:
            die(f"downloaded {name} has the wrong sha256; delete {os.path.join(d, name)} and retry")
    return d

# -----------------------------------------------------------------------------
# the llm.c split and the output files

def tokenize_sections(text):
    """Tokens as llm.c's dev/data/tinyshakespeare.py makes them: each blank-line separated
    section (a speaker's turn) is a document that starts with EOT. The "\\n\\n" stays at the end
    of every section but the last, since llm.c encodes
        "<|endoftext|>" + text.replace("\\n\\n", "\\n\\n<|endoftext|>")
    (and the older form of that script padded every section except the last with "\\n\\n")."""
    sections = text.split("\n\n")
    tokens = []
    for i, s in enumerate(sections):
        tokens.append(EOT)
        tokens.extend(encode(s + "\n\n" if i != len(sections) - 1 else s))
    return tokens

def write_atomic(path, data):
    """Writes path via path.tmp + os.replace, so a reader never sees half a file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)

def write_shard(path, tokens):
    # int32 header[256] = {magic, version, ntok}, then ntok uint16 tokens, little-endian
    assert all(0 <= t < 2**16 for t in tokens), "token id does not fit in uint16"
    header = [0] * HEADER_INTS
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, len(tokens)
    toks = array("H", tokens)
    if sys.byteorder == "big":
        toks.byteswap()
    write_atomic(path, struct.pack(f"<{HEADER_INTS}i", *header) + toks.tobytes())
    print(f"wrote {len(tokens):,} tokens to {path}")

def write_tokenizer(path):
    # uint32 header[256] = {magic, version, vocab size, EOT id}, then per id: uint8 len, bytes
    header = [0] * HEADER_INTS
    header[0], header[1], header[2], header[3] = TOKENIZER_MAGIC, TOKENIZER_VERSION, VOCAB_SIZE, EOT
    out = [struct.pack(f"<{HEADER_INTS}I", *header)]
    for i in range(VOCAB_SIZE):
        b = token_bytes(i)
        assert 1 <= len(b) <= 255, f"token {i} is {len(b)} bytes; the format allows 1..255"
        out.append(bytes([len(b)]) + b)
    write_atomic(path, b"".join(out))
    print(f"wrote {VOCAB_SIZE:,} tokens to {path}")

# -----------------------------------------------------------------------------

def shard_names(name, text_path, standard, text_given):
    """(folder, file stem) of the shards: llm.c's names for tiny Shakespeare (the standard text, or no
    --text), else --name or the text's file name without its extension, in [A-Za-z0-9_.-]"""
    if name is None and (standard or not text_given):
        return "tinyshakespeare", "tiny_shakespeare"
    if name is None:
        name = os.path.splitext(os.path.basename(text_path))[0]
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".")
    if not clean:
        die(f"--name {name!r} leaves no usable file name; ---> HINT: pass --name with letters or digits")
    return clean, clean


def main():
    parser = argparse.ArgumentParser(
        description="Tokenize TinyShakespeare (or any UTF-8 text) with GPT-2 BPE into llm.c token shards and tokenizer file.")
    parser.add_argument("--text", default=None, metavar="PATH",
                        help="the text to tokenize (default: ../shared/data/tinyshakespeare.txt, "
                             "then data/tinyshakespeare/input.txt, else download there)")
    parser.add_argument("--bpe-dir", default=None, metavar="DIR",
                        help="dir with GPT-2's encoder.json and vocab.bpe (default: ../shared/data/gpt2, "
                             "then data/gpt2, else download there)")
    parser.add_argument("--out-dir", default=os.path.join(SCRIPT_DIR, "data"), metavar="DIR",
                        help="where NAME/NAME_{train,val}.bin and gpt2_tokenizer.bin go (default: data/ "
                             "next to this script)")
    parser.add_argument("--name", default=None, metavar="NAME",
                        help="the shards' name (default: tinyshakespeare, as tiny_shakespeare_*.bin, for the "
                             "tiny Shakespeare text; else the text's file name without its extension)")
    args = parser.parse_args()
    t0 = time.time()

    text_path = find_text(args.text)
    bpe_dir = find_bpe_dir(args.bpe_dir)
    standard = sha256_of(text_path) == TEXT_SHA256
    folder, stem = shard_names(args.name, text_path, standard, args.text is not None)
    print(f"text: {text_path}")
    print(f"bpe:  {bpe_dir}")
    load_bpe(bpe_dir)
    with open(text_path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        die(f"--text {text_path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            f"---> HINT: convert it first, e.g. iconv -f latin1 -t utf-8 {text_path} > text_utf8.txt")

    tokens = tokenize_sections(text)
    val, train = tokens[:VAL_TOKENS], tokens[VAL_TOKENS:]
    if not train:  # llm.c's split: the first VAL_TOKENS tokens are val, the rest train
        die(f"--text {text_path} is {len(tokens):,} tokens, not more than the {VAL_TOKENS:,} of the validation "
            f"split, so the train shard would be empty; ---> HINT: pass a longer text (tiny Shakespeare is "
            f"{VAL_TOKENS + TRAIN_TOKENS:,} tokens)")
    print(f"tokenized {len(text):,} chars into {len(tokens):,} tokens "
          f"({len(_cache):,} distinct pre-tokens)")
    if standard:
        assert (len(val), len(train)) == (VAL_TOKENS, TRAIN_TOKENS), \
            f"standard text gave val {len(val)} / train {len(train)}, expected {VAL_TOKENS} / {TRAIN_TOKENS}"
    else:
        print(f"warning: {text_path} is not the standard tinyshakespeare (sha256 differs); "
              f"got val {len(val):,} / train {len(train):,} tokens", file=sys.stderr)

    shard_dir = os.path.join(args.out_dir, folder)
    write_shard(os.path.join(shard_dir, f"{stem}_val.bin"), val)
    write_shard(os.path.join(shard_dir, f"{stem}_train.bin"), train)
    print(f"wrote {os.path.join(shard_dir, stem)}_{{val,train}}.bin")
    write_tokenizer(os.path.join(args.out_dir, "gpt2_tokenizer.bin"))
    print(f"done in {time.time() - t0:.2f} s")

if __name__ == "__main__":
    main()
