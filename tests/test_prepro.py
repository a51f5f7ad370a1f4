"""
Tests prepro_tinyshakespeare.py against tiktoken's "gpt2" encoding: encode() token for token on
the whole TinyShakespeare text and on hard strings (digits, punctuation, contractions, whitespace
runs, non-ASCII, every assigned Unicode character), decode() round trips, and an end-to-end run
of the script whose shards and tokenizer file are parsed back.

Also: prepro's bad input (a text shorter than the validation split, a text that is not UTF-8)
gets a one-line error naming the file and the fix; and make test's set-up (tests/run_tests.sh)
installs tiktoken when it is missing, or says how to, and without tiktoken this test fails
with that command (a check that cannot run is no pass).

Run (needs a python3 with tiktoken: make test installs it; by hand: python3 -m pip install tiktoken):
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

# where tests/run_tests.sh installs tiktoken when pip may not change this Python (its tiktoken_dir)
TIKTOKEN_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ.get("HOME", "/tmp"), ".cache"),
                            "train_gpt2_1bit", "python%d.%d" % sys.version_info[:2])
if os.path.isdir(TIKTOKEN_DIR):
    sys.path.append(TIKTOKEN_DIR)
# this test runs itself with tiktoken made unimportable, to check how it fails without it
WITHOUT_TIKTOKEN = os.environ.get("TEST_PREPRO_WITHOUT_TIKTOKEN") == "1"
if WITHOUT_TIKTOKEN:
    sys.modules["tiktoken"] = None  # `import tiktoken` now raises ImportError

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

# -----------------------------------------------------------------------------
# bad input to the script: one line "...error: ..." naming the file and the fix, exit 1, no
# traceback, and no shard written


def run_script_on(name, text_bytes):
    """runs prepro on a text with these bytes; returns (returncode, stderr, the out dir)"""
    d = os.path.join(tmp_root, name)
    os.makedirs(d)
    path = os.path.join(d, "input.txt")
    with open(path, "wb") as f:
        f.write(text_bytes)
    r = subprocess.run([sys.executable, SCRIPT, "--text", path, "--bpe-dir", bpe_dir, "--out-dir",
                        os.path.join(d, "out")], capture_output=True, text=True)
    return r.returncode, r.stderr, path, os.path.join(d, "out")


def check_one_line_error(name, rc, err, path, out, needles):
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith("warning:")]
    shards = [f for _, _, fs in os.walk(out) for f in fs] if os.path.isdir(out) else []
    check(name, rc == 1 and len(lines) == 1 and "error:" in lines[0] and path in lines[0] and "HINT" in lines[0]
          and all(n in lines[0] for n in needles) and "Traceback" not in err and not shards,
          f"exit {rc}, files written {shards}, stderr: {err[-500:]!r}")


if not WITHOUT_TIKTOKEN:
    rc, err, path, out = run_script_on("short", TEXT[:20000].encode("utf-8"))  # ~6k tokens < the 32,768 of val
    check_one_line_error("a text shorter than the validation split: one-line error naming the file, no shards",
                         rc, err, path, out, ["validation split", "train shard would be empty", "longer text"])
    rc, err, path, out = run_script_on("latin1", "Ein Mädchen, ein Bär\n\n".encode("latin-1") * 3000)
    check_one_line_error("a text that is not UTF-8: one-line error naming the file and the fix, no traceback",
                         rc, err, path, out, ["not UTF-8", "offset", "iconv"])

# another text's shards are named after it (issue 15), or after --name; tiny Shakespeare keeps llm.c's names
if not WITHOUT_TIKTOKEN:
    other = ("A text that is not tiny Shakespeare\n\n" + TEXT[:160000]).encode("utf-8")  # ~40k tokens
    for name, flags, folder in (("kjv_sample.txt", [], "kjv_sample"), ("notes.v2.txt", ["--name", "my-data"], "my-data")):
        d = os.path.join(tmp_root, "named_" + folder)
        os.makedirs(d)
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(other)
        r = subprocess.run([sys.executable, SCRIPT, "--text", path, "--bpe-dir", bpe_dir, "--out-dir",
                            os.path.join(d, "out")] + flags, capture_output=True, text=True)
        files = sorted(os.path.relpath(os.path.join(dp, f), os.path.join(d, "out"))
                       for dp, _, fs in os.walk(os.path.join(d, "out")) for f in fs)
        want = sorted(["gpt2_tokenizer.bin", f"{folder}/{folder}_train.bin", f"{folder}/{folder}_val.bin"])
        check(f"--text {name} {' '.join(flags)}: shards {folder}/{folder}_{{train,val}}.bin, not tiny_shakespeare_*",
              r.returncode == 0 and files == want, f"exit {r.returncode}, files {files}, stderr {r.stderr[-300:]!r}")
    rc = subprocess.run([sys.executable, SCRIPT, "--text", path, "--bpe-dir", bpe_dir, "--out-dir",
                         os.path.join(tmp_root, "badname"), "--name", "..."], capture_output=True, text=True)
    lines = [l for l in rc.stderr.splitlines() if l.strip() and not l.startswith("warning:")]
    check("--name with no usable character: a one-line error naming the flag, no files",
          rc.returncode == 1 and len(lines) == 1 and "--name" in lines[0] and "HINT" in lines[0]
          and not os.path.exists(os.path.join(tmp_root, "badname")), rc.stderr[-300:])

# -----------------------------------------------------------------------------
# make test on a fresh machine: tests/run_tests.sh's set-up against a stand-in python3 whose
# tiktoken is missing and whose pip works, refuses the plain install (PEP 668), or fails


FAKE_PYTHON = """#!/usr/bin/env bash
# a python3 without tiktoken: importable once a pip install succeeded (FAKE_PIP says which do)
case "$1 $2" in
    "-c import tiktoken") [ -f "$FAKE_STATE/installed" ]; exit $? ;;
    "-m pip")
        echo "${*:3}" >>"$FAKE_STATE/pip_calls"
        case "$FAKE_PIP:$*" in
            ok:*|pep668:*--target*) touch "$FAKE_STATE/installed"; exit 0 ;;
            *) echo "error: externally-managed-environment" >&2; exit 1 ;;
        esac ;;
esac
exec "$REAL_PYTHON" "$@"
"""


def run_setup(pip_mode, preinstalled=False):
    d = tempfile.mkdtemp(dir=tmp_root, prefix=f"setup_{pip_mode}_")
    fake = os.path.join(d, "python3")
    with open(fake, "w") as f:
        f.write(FAKE_PYTHON)
    os.chmod(fake, 0o755)
    if preinstalled:
        open(os.path.join(d, "installed"), "w").close()
    env = dict(os.environ, PYTHON=fake, FAKE_STATE=d, FAKE_PIP=pip_mode, REAL_PYTHON=sys.executable,
               XDG_CACHE_HOME=os.path.join(d, "cache"))
    r = subprocess.run(["bash", os.path.join(REPO_DIR, "tests", "run_tests.sh"), "--setup-only"],
                       capture_output=True, text=True, env=env)
    calls = open(os.path.join(d, "pip_calls")).read().splitlines() if os.path.exists(os.path.join(d, "pip_calls")) else []
    return r.returncode, r.stdout + r.stderr, calls, fake, d


if not WITHOUT_TIKTOKEN:
    rc, out, calls, fake, d = run_setup("ok")
    check("make test's set-up installs a missing tiktoken with pip",
          rc == 0 and calls == ["install -q tiktoken"] and f"{fake} -m pip install tiktoken" in out,
          f"exit {rc}, pip calls {calls}, output {out[-300:]!r}")
    rc, out, calls, fake, d = run_setup("pep668")
    target = os.path.join(d, "cache", "train_gpt2_1bit", "python%d.%d" % sys.version_info[:2])
    check("make test's set-up: where pip may not change the system Python, it installs into a cache dir",
          rc == 0 and calls == ["install -q tiktoken", f"install -q --target {target} tiktoken"],
          f"exit {rc}, pip calls {calls}, output {out[-300:]!r}")
    rc, out, calls, fake, d = run_setup("none")
    check("make test's set-up: when pip cannot install tiktoken, it says the command that fixes it",
          rc != 0 and f"HINT: {fake} -m pip install tiktoken" in out, f"exit {rc}, output {out[-300:]!r}")
    rc, out, calls, fake, d = run_setup("none", preinstalled=True)
    check("make test's set-up: nothing to do when tiktoken is there", rc == 0 and calls == [] and out == "",
          f"exit {rc}, pip calls {calls}, output {out[-300:]!r}")
    # and this test without tiktoken: a FAIL with the command, never a pass or a skip
    r = subprocess.run([sys.executable, os.path.abspath(__file__)], capture_output=True, text=True,
                       env=dict(os.environ, TEST_PREPRO_WITHOUT_TIKTOKEN="1"))
    fails = [l for l in r.stdout.splitlines() if l.startswith("FAIL: tiktoken")]
    check("without tiktoken this test fails, naming the command that installs it",
          r.returncode == 1 and len(fails) == 1 and "-m pip install tiktoken" in fails[0],
          f"exit {r.returncode}, output {(r.stdout + r.stderr)[-400:]!r}")
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
except ImportError as e:
    check("tiktoken is importable", False, f"{e}: prepro cannot be compared with it ---> HINT: {sys.executable} -m pip "
          f"install tiktoken (make test does this itself; without pip: sudo apt-get install python3-pip first)")
    shutil.rmtree(tmp_root, ignore_errors=True)
    finish()
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
