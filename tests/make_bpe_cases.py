"""
Writes the expected GPT-2 tokens that tests/test_bpe.c checks llmc/bpe.h against: the whole
TinyShakespeare text, hard strings (digits, punctuation, contractions, whitespace runs, non-ASCII,
invalid UTF-8), and a few hundred random strings. The expected tokens come from
prepro_tinyshakespeare.encode, which tests/test_prepro.py checks equals tiktoken's "gpt2"
encode_ordinary token for token, so this needs no tiktoken: Python 3 standard library only.

Run (tests/test_bpe.sh does this in a temp dir):
    python3 tests/make_bpe_cases.py --out /tmp/bpe_cases.bin [--text PATH] [--bpe-dir DIR]

Invalid UTF-8 has no tiktoken answer (it only takes valid strings). llmc/bpe.h makes each byte that
starts no valid sequence one character of class "other"; the Python equivalent is to decode with
errors="surrogateescape", which turns each such byte into a lone surrogate U+DC80..U+DCFF (category
Cs, so "other" for prepro.char_class), pre-tokenize that, and run BPE on each piece's bytes.

File format (little-endian):
    char magic[8] = "BPECASES"; uint32 version = 1; uint32 num_cases
    char unicode_version[16]         Python's unicodedata.unidata_version, NUL-padded
    uint8 classes[0x110000]          prepro.char_class of every code point: 0 letter, 1 number,
                                     2 whitespace, 3 other
    then per case: uint32 n, name (n bytes); uint32 n, text (n bytes, UTF-8 or not);
                   uint32 n, int32 tokens[n]
A case named "<group> #<k>" is one of a group of cases that test_bpe.c reports as one check.
"""

import argparse
import os
import random
import struct
import sys
import unicodedata
from array import array

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # leave no __pycache__ in the repo
sys.path.insert(0, REPO_DIR)
import prepro_tinyshakespeare as prepro  # noqa: E402

MAGIC = b"BPECASES"
VERSION = 1
SEED = 1337
NUM_RANDOM_STRINGS = 300
NUM_RANDOM_BYTE_STRINGS = 150

# -----------------------------------------------------------------------------
# expected tokens of any bytes

_piece_cache = {}  # piece -> its ids, as prepro.encode keeps (the whole text repeats its words)

def encode_bytes(data):
    """Tokens of any bytes: each byte that starts no valid UTF-8 sequence is one "other" char."""
    text = data.decode("utf-8", errors="surrogateescape")
    ids = []
    for piece in prepro.pretokenize(text):
        toks = _piece_cache.get(piece)
        if toks is None:
            toks = _piece_cache[piece] = prepro.bpe_bytes(piece.encode("utf-8", errors="surrogateescape"))
        ids.extend(toks)
    return ids

def expected(data):
    """The tokens for data (bytes). For valid UTF-8 this is prepro.encode, the tiktoken-checked
    encoder; encode_bytes must agree with it there, which vouches for encode_bytes elsewhere."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return encode_bytes(data)
    ids = prepro.encode(text)
    assert encode_bytes(data) == ids, f"encode_bytes disagrees with prepro.encode on {data[:60]!r}"
    return ids

# -----------------------------------------------------------------------------
# the cases

HARD_STRINGS = [
    ("empty string", ""),
    ("digits", "0 1 12 123 1234 12345 1234567890123 007 3.14159 12,345.67 1e10 2024-05-20 -5 +7"),
    ("digits next to letters", "abc123def 4th 1st x2 2x GPT2 H2O 9am"),
    ("punctuation runs", "Hello, world!!! ... ?!?! --- (a) [b] {c} @#$%^&*_+=~`|\\/ ;:\"\"<>"),
    ("punctuation after a space", "a !b ,, c ... d -- e ?!"),
    ("contractions", "I'm they'll we'd you're I've she's don't can't"),
    ("uppercase contractions split", "IT'S I'M THEY'LL 'S 'T 'RE 'VE 'M 'LL 'D 'Ll 'lL"),
    ("contractions without a word", "'s 't 're 've 'm 'll 'd ''s '''ll 's's"),
    ("contraction lookalikes", "'x 'sa 'll' 're'd 'l 'r 'v ' s it' ''"),
    ("contractions after punctuation and whitespace", "!'s ,'re  'll \t'd \n'm .'t 'sa"),
    ("apostrophe at the end", "it'"),
    ("apostrophe alone", "'"),
    ("leading spaces before a word", "   x"),
    ("blank lines", "\n\n\n"),
    ("spaces around a newline", "a  \n  b"),
    ("trailing spaces", "end with spaces   "),
    ("trailing newline", "line\n"),
    ("only spaces", "     "),
    ("one space", " "),
    ("tabs", "a\tb\t\tc \t d\t"),
    ("tab before a word", "\tx \t\tx"),
    ("carriage returns", "a\r\nb\r\n\r\nc\r"),
    ("blank lines, spaces and tab", "\n\n\n  \t x"),
    ("space runs of every length", "a b  c   d    e     f      g       h"),
    ("accents", "café naïve Ångström façade résumé Zürich"),
    ("combining marks", "cafe\u0301 n\u0303 a\u0308\u0308 \u0301x \u0301\u0301"),
    ("CJK", "日本語のテキスト 中文 한국어"),
    ("emoji", "hi 👋🏽 family 👨‍👩‍👧 flags 🇫🇷 ❤️ 🎉🎉"),
    ("number categories: superscripts, fractions, roman numerals", "²½ ³⁄₄ Ⅻ ⑳ x² 10½ ½x"),
    ("Arabic-Indic and Devanagari digits", "٠١٢٣٤٥٦٧٨٩ ۱۲۳ १२३ مرحبا 123٣"),
    ("NBSP U+00A0", "a\u00a0b \u00a0c\u00a0\u00a0d\u00a0"),
    ("line separator U+2028 and friends", "a\u2028b\u2029c\x85d\u3000e\u1680f\u202fg\u205fh\u2003i"),
    ("unicode whitespace runs", " \u00a0\u3000 x\u2028\u2028\u2028y \t\u00a0"),
    ("not whitespace for \\s: U+001C..U+001F, ZWSP, U+180E",
     "a\x1c\x1db \x1e\x1f c\u200bd\u180ee\n\n\x1cx\n\n\x1d \n\n\u200b"),
    ("mixed scripts and classes", "abc123déf!!ghi ΑΒΓ δ1ε Привет,мир"),
    ("curly apostrophes are not contractions", "it’s don‘t ʼs"),
    ("control characters and NUL", "a\x00b\x01\x7f\x1b[0m\x00\x00 \x00"),
    ("<|endoftext|> is plain text", "<|endoftext|> a<|endoftext|>b <|endoftext|>"),
    ("every ASCII character", "".join(chr(c) for c in range(128))),
    ("long repeated characters", "a" * 300 + " " + "!" * 300 + " " * 300 + "x" + "\n" * 100 + "7" * 100),
    ("a long word", "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism"),
]

# bytes that are not valid UTF-8; each invalid byte is an "other" character
INVALID_UTF8 = [
    ("invalid UTF-8: a lone 0xFF", b"\xff"),
    ("invalid UTF-8: between letters", b"a\xffb"),
    ("invalid UTF-8: after a space", b" \xff\xfe x"),
    ("invalid UTF-8: stray continuation bytes", b"\x80\x80\x80 \xbf"),
    ("invalid UTF-8: truncated 3-byte sequence", b"\xe2\x82 \xe2\x82\xac"),
    ("invalid UTF-8: truncated emoji at the end", b"hi \xf0\x9f\x98"),
    ("invalid UTF-8: truncated emoji mid-text", b"x\xf0\x9f\x98 y"),
    ("invalid UTF-8: overlong NUL C0 80", b"a\xc0\x80b"),
    ("invalid UTF-8: overlong E0 80 80", b"\xe0\x80\x80"),
    ("invalid UTF-8: encoded surrogate ED A0 80", b"a\xed\xa0\x80b"),
    ("invalid UTF-8: above U+10FFFF", b"\xf4\x90\x80\x80 \xf5\x80\x80\x80"),
    ("invalid UTF-8: 5-byte form", b"\xf8\x88\x80\x80\x80"),
    ("invalid UTF-8: before a contraction", b"it\xe2's \xff'll"),
    ("invalid UTF-8: next to punctuation", b"!\xff! ,\xfe"),
    ("invalid UTF-8: after blank lines", b"\n\n\xff  \xfe"),
    ("invalid UTF-8: NBSP then a truncated NBSP", b"\xc2\xa0\xc2"),
    ("invalid UTF-8: next to digits", b"12\xff34"),
]

# characters assigned long ago, so that their classes agree across Unicode versions
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" + "sstmdlrveSTM" + "éÅçñßøΩжπ日本語中文한국ʼ"
DIGITS = "0123456789" + "²½٣१Ⅻ⑳"
SPACES = " " * 8 + "\t\n\n\r\u00a0\u2028\u3000\x85\u2003\x0b\x0c"
OTHERS = "'.,!?-_()[]{}\"<>|@#$%^&*/\\;:`~’“”…•€©\u0301\u0308\u200b\u200d\x1c\x00\x7f❤\ufe0f👋🏽🇫🇷"
APOSTROPHES = ["'", "'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'d", "''"]
GROUPS = [LETTERS, LETTERS, DIGITS, SPACES, SPACES, OTHERS, APOSTROPHES]

def random_string(rng, max_len):
    return "".join(rng.choice(rng.choice(GROUPS)) for _ in range(rng.randint(0, max_len)))

def random_bytes(rng, max_len):
    """A mix of valid characters, random bytes, and multi-byte characters cut short."""
    out = b""
    for _ in range(rng.randint(1, max_len)):
        r = rng.random()
        if r < 0.6:
            out += rng.choice(rng.choice(GROUPS)).encode("utf-8")
        elif r < 0.8:
            out += bytes([rng.randrange(256)])
        else:
            c = rng.choice("é日👋½\u00a0\u2028").encode("utf-8")
            out += c[:rng.randint(1, len(c) - 1)]
    return out

# -----------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description="Write the test cases of tests/test_bpe.c.")
    parser.add_argument("--out", required=True, metavar="PATH", help="the cases file to write")
    parser.add_argument("--text", default=None, metavar="PATH",
                        help="tinyshakespeare.txt (default: prepro_tinyshakespeare.py's search)")
    parser.add_argument("--bpe-dir", default=None, metavar="DIR",
                        help="dir with GPT-2's encoder.json and vocab.bpe (default: prepro's search)")
    args = parser.parse_args()

    prepro.load_bpe(prepro.find_bpe_dir(args.bpe_dir))
    with open(prepro.find_text(args.text), "rb") as f:
        text = f.read()   # bytes as they are: no newline translation

    cases = [(name, s.encode("utf-8")) for name, s in HARD_STRINGS] + INVALID_UTF8
    rng = random.Random(SEED)
    cases += [(f"random strings #{k}", random_string(rng, 40).encode("utf-8")) for k in range(NUM_RANDOM_STRINGS)]
    cases += [(f"random bytes, some not UTF-8 #{k}", random_bytes(rng, 30)) for k in range(NUM_RANDOM_BYTE_STRINGS)]
    cases.append(("a long random string", random_string(rng, 20000).encode("utf-8")))
    cases.append(("whole tinyshakespeare text", text))

    version = unicodedata.unidata_version.encode()
    assert len(version) < 16
    classes = bytes(map(prepro.char_class, map(chr, range(0x110000))))
    out = [MAGIC, struct.pack("<II", VERSION, len(cases)), version.ljust(16, b"\0"), classes]
    num_tokens = 0
    for name, data in cases:
        ids = expected(data)
        num_tokens += len(ids)
        toks = array("i", ids)
        if sys.byteorder == "big":
            toks.byteswap()
        name = name.encode("utf-8")
        out += [struct.pack("<I", len(name)), name, struct.pack("<I", len(data)), data,
                struct.pack("<I", len(ids)), toks.tobytes()]
    with open(args.out + ".tmp", "wb") as f:
        f.write(b"".join(out))
    os.replace(args.out + ".tmp", args.out)
    print(f"wrote {len(cases)} cases, {num_tokens:,} tokens, to {args.out} (Unicode {unicodedata.unidata_version})")

if __name__ == "__main__":
    main()
