"""
Tests prepro_tinyshakespeare.py against tiktoken's "gpt2" encoding: encode() token for token on
the whole TinyShakespeare text and on hard strings (digits, punctuation, contractions, whitespace
runs, non-ASCII, every assigned Unicode character), decode() round trips, and an end-to-end run
of the script whose shards and tokenizer file are parsed back.

Run (needs a python3 with tiktoken: pip install tiktoken; no network needed):
    python3 tests/test_prepro.py
Prints PASS: <name> or FAIL: <name>: <details> per check, then a summary line;
exits 1 if any check failed.

tiktoken runs offline: it caches downloads in $TIKTOKEN_CACHE_DIR under the name
sha1(url).hexdigest() and accepts a cached file whose sha256 is the one it expects
(tiktoken/load.py read_file_cached; URLs and hashes in tiktoken_ext/openai_public.py), so a
temp cache dir is filled with the local encoder.json and vocab.bpe before tiktoken is imported.
"""

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unicodedata
from array import array

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_DIR, "prepro_tinyshakespeare.py")
sys.dont_write_bytecode = True  # leave no __pycache__ in the repo
sys.path.insert(0, REPO_DIR)
import prepro_tinyshakespeare as prepro  # noqa: E402

# -----------------------------------------------------------------------------
# reporting

from checks import check, finish  # noqa: E402  (PASS/FAIL lines, the summary line)

def first_diff(a, b):
    """Index and values at the first difference of two token lists, for a FAIL message."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first difference at token {i}: prepro {a[i:i+5]} vs tiktoken {b[i:i+5]}"
    return f"lengths differ: prepro {len(a)} vs tiktoken {len(b)}"

# -----------------------------------------------------------------------------
# inputs, and tiktoken with an offline cache

text_path = prepro.find_text(None)      # same search (or download) as the script
bpe_dir = prepro.find_bpe_dir(None)
with open(text_path, "r", encoding="utf-8") as f:
    TEXT = f.read()

tmp_root = tempfile.mkdtemp(prefix="test_prepro_")
cache_dir = os.path.join(tmp_root, "tiktoken_cache")
os.makedirs(cache_dir)
for name in prepro.BPE_FILES:
    src = os.path.join(bpe_dir, name)
    # tiktoken would delete a cached file with another sha256 and try to download it again
    check(f"{name} sha256 is the one tiktoken expects", prepro.sha256_of(src) == prepro.BPE_SHA256[name],
          f"{src} differs from GPT-2's file")
    url = prepro.BPE_BASE_URL + name  # the URL tiktoken_ext/openai_public.py names
    shutil.copy(src, os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest()))
os.environ["TIKTOKEN_CACHE_DIR"] = cache_dir

try:
    import tiktoken
except ImportError:
    print("FAIL: tiktoken not installed (pip install tiktoken)")
    shutil.rmtree(tmp_root, ignore_errors=True)
    sys.exit(1)
try:
    enc = tiktoken.get_encoding("gpt2")
except Exception as e:
    check("tiktoken gpt2 loads from the offline cache", False, repr(e))
    shutil.rmtree(tmp_root, ignore_errors=True)
    finish()
check(f"tiktoken {tiktoken.__version__} gpt2 loads from the offline cache", enc.n_vocab == prepro.VOCAB_SIZE)

prepro.load_bpe(bpe_dir)

# -----------------------------------------------------------------------------
# encode() == tiktoken on hard strings

HARD_STRINGS = [
    ("empty string", ""),
    ("digit runs", "1234567 89 3.14159 0 00 007 12,345.67 1e10 2024-05-20"),
    ("punctuation runs", "Hello, world!!! ... ?!?! --- (a) [b] {c} <|endoftext|> @#$%^&*_+=~`|\\/"),
    ("contractions", "I'm they'll we'd 'S you're I've she's don't can't 's 'll 'Ve x'd 'x ''s"),
    ("contractions after punctuation and space", "!'s ,'re  'll \t'd \n'm .'t 'sa"),
    ("multiple spaces", "a  b   c    d     e"),
    ("tabs", "a\tb\t\tc \t d\t"),
    ("newlines", "a\nb\n\nc\n\n\nd\r\ne\r\n\r\n"),
    ("trailing spaces", "end with spaces   "),
    ("leading whitespace", "   \t\nstart"),
    ("blank lines, spaces and tab", "\n\n\n  \t x"),
    ("only whitespace", " \t\n \u00a0\u3000 "),
    ("unicode whitespace", "a\u00a0b\u2003c\u3000d\u2028e\x85f\u202fg\u205fh\u1680i"),
    # str.isspace() is true for U+001C..U+001F but \s is not: "\n\n" before one splits as "\n", "\n"
    ("not whitespace for \\s: U+001C..U+001F, ZWSP, U+180E",
     "a\x1c\x1db \x1e\x1f c\u200bd\u180ee\n\n\x1cx\n\n\x1d \n\n\x1e\n\n\x1f\n\n\u200b"),
    ("accents", "café naïve Ångström façade résumé Zürich"),
    ("decomposed accents (combining marks)", "cafe\u0301 n\u0303 a\u0308\u0308 \u0301x"),
    ("CJK", "日本語のテキスト 中文 한국어"),
    ("emoji", "hi 👋🏽 family 👨‍👩‍👧 flags 🇫🇷 ❤️"),
    ("number categories", "²½ ³⁄₄ Ⅻ ⑳ x² 10½"),
    ("arabic and devanagari digits", "٠١٢٣٤٥٦٧٨٩ ۱۲۳ १२३ مرحبا 123"),
    ("mixed scripts and classes", "abc123déf!!ghi ΑΒΓ δ1ε Привет,мир"),
    ("apostrophe-like characters", "it’s don‘t ʼs"),
    ("control characters", "a\x00b\x01\x7f\x1b[0m"),
    ("long repeated characters", "a" * 300 + " " + "!" * 300 + " " * 300 + "x"),
]

for name, s in HARD_STRINGS:
    got, want = prepro.encode(s), enc.encode_ordinary(s)
    check(f"encode == tiktoken: {name}", got == want, first_diff(got, want))
    check(f"decode(encode(x)) == x: {name}", prepro.decode(got) == s, repr(prepro.decode(got))[:80])

# every character whose Unicode category Python knows (assigned, not private use or surrogate),
# each placed where its class (letter / number / whitespace / other) decides the split: after a
# letter, after a space, after a digit, after "\n\n" (the only spot where U+001C, a control char in
# no merge, shows whether it is \s), after two spaces
PROBE = "x{c}{c} {c}7{c}\n\n{c}  {c}\n"
t0 = time.time()
chars = [chr(c) for c in range(0x110000)
         if unicodedata.category(chr(c)) not in ("Cn", "Co", "Cs")]
bad = []
for start in range(0, len(chars), 4096):
    probe = "".join(PROBE.format(c=c) for c in chars[start:start + 4096])
    if prepro.encode(probe) != enc.encode_ordinary(probe):
        # narrow the block down to the characters that differ
        bad += [c for c in chars[start:start + 4096]
                if prepro.encode(PROBE.format(c=c)) != enc.encode_ordinary(PROBE.format(c=c))]
check(f"encode == tiktoken on each of {len(chars):,} assigned characters "
      f"(Unicode {unicodedata.unidata_version}, {time.time() - t0:.1f} s)",
      not bad, f"{len(bad)} differ, e.g. " + ", ".join(f"U+{ord(c):04X} {unicodedata.category(c)}" for c in bad[:8]))

# -----------------------------------------------------------------------------
# encode() == tiktoken on the whole text

got, want = prepro.encode(TEXT), enc.encode_ordinary(TEXT)
check(f"encode == tiktoken: whole text at once ({len(want):,} tokens)", got == want, first_diff(got, want))
check("decode(encode(x)) == x: whole text", prepro.decode(got) == TEXT)

# the section procedure, against llm.c's dev/data/tinyshakespeare.py as written
sections = prepro.tokenize_sections(TEXT)
llmc = enc.encode("<|endoftext|>" + TEXT.replace("\n\n", "\n\n<|endoftext|>"),
                  allowed_special={"<|endoftext|>"})
check(f"sections == llm.c's tiktoken tokens ({len(llmc):,} tokens)", sections == llmc, first_diff(sections, llmc))

# -----------------------------------------------------------------------------
# the script end to end

out_dir = os.path.join(tmp_root, "out")
t0 = time.time()
r = subprocess.run([sys.executable, SCRIPT, "--out-dir", out_dir, "--text", text_path, "--bpe-dir", bpe_dir],
                   capture_output=True, text=True)
seconds = time.time() - t0
check(f"script runs ({seconds:.2f} s)", r.returncode == 0, (r.stdout + r.stderr)[-400:])

def read_shard(path):
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack("<256i", data[:1024])
    toks = array("H")
    toks.frombytes(data[1024:])
    if sys.byteorder == "big":
        toks.byteswap()
    return header, list(toks)

for split, lo, hi, n in (("val", 0, prepro.VAL_TOKENS, 32768),
                         ("train", prepro.VAL_TOKENS, len(llmc), 305260)):
    path = os.path.join(out_dir, "tinyshakespeare", f"tiny_shakespeare_{split}.bin")
    if not check(f"{split} shard exists", os.path.isfile(path), path):
        continue
    header, toks = read_shard(path)
    check(f"{split} shard header: magic 20240520, version 1, {n} tokens",
          header[:3] == (20240520, 1, n) and not any(header[3:]), str(header[:4]))
    check(f"{split} shard size is 1024 + 2 * {n} bytes", len(toks) == n, f"{len(toks)} tokens in file")
    check(f"{split} shard tokens == tiktoken", toks == llmc[lo:hi], first_diff(toks, llmc[lo:hi]))

path = os.path.join(out_dir, "gpt2_tokenizer.bin")
if check("tokenizer file exists", os.path.isfile(path), path):
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack("<256I", data[:1024])
    check("tokenizer header: magic 20240328, version 2, vocab 50257, EOT 50256",
          header[:4] == (20240328, 2, 50257, 50256) and not any(header[4:]), str(header[:4]))
    table, pos = [], 1024
    while pos < len(data):
        length = data[pos]
        table.append(data[pos + 1:pos + 1 + length])
        pos += 1 + length
    check("tokenizer file holds 50257 entries, nothing after", len(table) == 50257 and pos == len(data),
          f"{len(table)} entries, parsed to byte {pos} of {len(data)}")
    wrong = [i for i in range(min(len(table), enc.n_vocab)) if table[i] != enc.decode_single_token_bytes(i)]
    check("tokenizer entries == tiktoken's token bytes (EOT is b'<|endoftext|>')", not wrong and len(table) == 50257,
          f"{len(wrong)} differ, first ids {wrong[:5]}")
    sample = TEXT[:2000] + " café 日本語 👋🏽 ²½ ٣"
    joined = b"".join(table[i] for i in prepro.encode(sample))
    check("tokenizer bytes of a sample's tokens concatenate to its UTF-8", joined == sample.encode("utf-8"))

r = subprocess.run([sys.executable, SCRIPT, "-h"], capture_output=True, text=True)
check("-h lists --text, --bpe-dir, --out-dir with defaults",
      r.returncode == 0 and all(f in r.stdout for f in ("--text", "--bpe-dir", "--out-dir", "default")),
      r.stdout[-300:])

shutil.rmtree(tmp_root, ignore_errors=True)
finish()
