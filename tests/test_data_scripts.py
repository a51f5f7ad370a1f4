"""
Tests dev/data/fineweb.py and dev/data/hellaswag.py on small files this test writes (no network):
  fineweb.py
    - a jsonl, the same documents as text (blank-line and one-per-line), gzipped jsonl and parquet
      (two row groups): the shards are llm.c's (header, names, val shard first, 10^8 -> here 2,000
      tokens a shard, a document that straddles a cut continues in the next shard) and their tokens
      are tiktoken's encode_ordinary of the documents, each after <|endoftext|>; every format and
      one or two tokenizer processes give the same bytes
    - resumable: a run reading a FIFO is killed (SIGKILL) after its first shards; started again on
      the whole file it gives the same bytes as a run never interrupted, also when its last shard was
      damaged and a half-written .tmp is left; --max-shards stops and a later run goes on; a finished
      run started again does nothing; other options in the same folder are refused
    - bad input: a missing file, an unknown format, a line that is not JSON, a missing or non-string
      text column, a parquet file without the column, a file that is not parquet, text that is not
      UTF-8, an empty file, shards of unknown origin, a bad --shard-size: each exits 1 with one
      stderr line that names the input and the fix
  hellaswag.py
    - the eval file's layout, field by field, against tiktoken's tokens of each context and ending
      (llm.c's write_evalfile), and read back by llmc/hellaswag.h (tests/test_hellaswag.c, built here,
      prints what it read)
    - bad input: a missing file, a line that is not JSON, a missing label, three endings, a label past
      the endings: each exits 1 with one stderr line

Run:  python3 tests/test_data_scripts.py
It needs tiktoken, numpy, tqdm and pyarrow: whatever is missing is installed with pip from
dev/data/requirements.txt (its datasets line, the hub client, is not needed here). tiktoken runs
offline from GPT-2's encoder.json and vocab.bpe (../shared/data/gpt2 or data/gpt2), as in
tests/test_prepro.py. Prints PASS: <name> or FAIL: <name>: <details> per check, then a summary line;
exits 1 if any check failed.
"""

import gzip
import hashlib
import importlib
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from array import array

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINEWEB = os.path.join(REPO_DIR, "dev", "data", "fineweb.py")
HELLASWAG = os.path.join(REPO_DIR, "dev", "data", "hellaswag.py")
REQUIREMENTS = os.path.join(REPO_DIR, "dev", "data", "requirements.txt")
sys.dont_write_bytecode = True  # leave no __pycache__ in the repo
sys.path.insert(0, REPO_DIR)

from checks import check, finish  # noqa: E402  (PASS/FAIL lines, the summary line)

SHARD = 2000   # tokens per shard in these tests (llm.c's is 10^8)
EOT = 50256

# -----------------------------------------------------------------------------
# dependencies: install what is missing from dev/data/requirements.txt

NEEDED = {"tiktoken": "tiktoken", "numpy": "numpy", "tqdm": "tqdm", "pyarrow": "pyarrow"}  # pip name: module


def requirement_lines():
    """pip name -> its line in requirements.txt (e.g. 'numpy>=1.21')"""
    out = {}
    with open(REQUIREMENTS) as f:
        for line in f:
            spec = line.split("#", 1)[0].strip()
            m = re.match(r"[A-Za-z0-9_.-]+", spec)
            if m:
                out[m.group(0).lower()] = spec
    return out


reqs = requirement_lines()
check("dev/data/requirements.txt lists tiktoken, numpy, tqdm, pyarrow and datasets",
      all(k in reqs for k in ("tiktoken", "numpy", "tqdm", "pyarrow", "datasets")), sorted(reqs))
missing = [pip for pip, mod in NEEDED.items() if importlib.util.find_spec(mod) is None]
if missing:
    cmd = [sys.executable, "-m", "pip", "install", "-q", *(reqs.get(m, m) for m in missing)]
    print(f"installing {', '.join(missing)}: {' '.join(cmd)}", flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    importlib.invalidate_caches()
    still = [pip for pip, mod in NEEDED.items() if importlib.util.find_spec(mod) is None]
    if not check(f"installed {', '.join(missing)} from dev/data/requirements.txt", not still,
                 f"{' '.join(cmd)} failed: {(res.stderr or res.stdout).strip()[-400:]}"):
        finish()

import prepro_tinyshakespeare as prepro  # noqa: E402  (where GPT-2's BPE files are, their hashes)

# tiktoken offline: its cache holds the BPE files under sha1(url), see tests/test_prepro.py
tmp = tempfile.mkdtemp(prefix="test_data_scripts_")
cache_dir = os.path.join(tmp, "tiktoken_cache")
os.makedirs(cache_dir)
bpe_dir = prepro.find_bpe_dir(None)
for name in prepro.BPE_FILES:
    url = prepro.BPE_BASE_URL + name
    shutil.copy(os.path.join(bpe_dir, name), os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest()))
os.environ["TIKTOKEN_CACHE_DIR"] = cache_dir  # for this process and the scripts it runs
import tiktoken  # noqa: E402
enc = tiktoken.get_encoding("gpt2")

# -----------------------------------------------------------------------------
# helpers


def run(script, *args, timeout=300):
    return subprocess.run([sys.executable, "-B", script, *args], capture_output=True, text=True, timeout=timeout)


def read_shard(path):
    """(header ints, tokens) of an llm.c token shard"""
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack("<256i", data[:1024])
    toks = array("H", data[1024:])
    if sys.byteorder == "big":
        toks.byteswap()
    return header, toks.tolist(), len(data)


def shard_names(out_dir):
    """the .bin files in shard order (NAME_val_000000.bin, NAME_train_000001.bin, ...)"""
    return sorted((f for f in os.listdir(out_dir) if f.endswith(".bin")), key=lambda f: (f[-10:], f))


def dir_bytes(out_dir):
    out = {}
    for f in shard_names(out_dir):
        with open(os.path.join(out_dir, f), "rb") as fh:
            out[f] = fh.read()
    return out


def one_line_error(res, *needles):
    """exit 1, stderr one line starting with the script's error prefix, containing each needle"""
    lines = res.stderr.strip().splitlines()
    ok = res.returncode == 1 and len(lines) == 1 and ": error: " in lines[0] and all(n in lines[0] for n in needles)
    return ok, f"exit {res.returncode}, stderr: {res.stderr.strip()[:600]}"


def make_docs(n, seed):
    """documents with no blank line inside and no leading/trailing whitespace-only line, so that
    the text formats can hold them too; words, digits, contractions, non-ASCII, special-token text"""
    rng = random.Random(seed)
    words = ["the", "The", "king", "queen's", "don't", "we'll", "2024", "3.14", "naïve", "café", "日本語",
             "emoji🙂", "<|endoftext|>", "  spaced", "tab\there", "O'Neil", "x" * 30, "--", "(a)", "?!"]
    docs = []
    for i in range(n):
        lines = []
        for _ in range(rng.randint(1, 4)):
            lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 25))).strip() or "word")
        docs.append("\n".join(lines))
    docs.insert(7, " ".join(words[i % len(words)] for i in range(3000)))  # one document longer than a shard
    return docs


def expected_stream(docs):
    out = []
    for d in docs:
        out.append(EOT)
        out.extend(enc.encode_ordinary(d))
    return out


def check_shards(label, out_dir, name, stream):
    """the folder holds exactly llm.c's shards of the stream, val first"""
    chunks = [stream[i:i + SHARD] for i in range(0, len(stream), SHARD)]
    want = [f"{name}_{'val' if i == 0 else 'train'}_{i:06d}.bin" for i in range(len(chunks))]
    got = shard_names(out_dir)
    check(f"{label}: {len(want)} shards named {want[0]}, {want[1]}, ... (val first)", got == want, got[:5])
    ok_header, ok_tokens, detail = True, True, ""
    for fname, chunk in zip(want, chunks):
        if fname not in got:
            continue
        header, toks, size = read_shard(os.path.join(out_dir, fname))
        if header[:3] != (20240520, 1, len(chunk)) or any(header[3:]) or size != 1024 + 2 * len(chunk):
            ok_header, detail = False, f"{fname}: header {header[:4]}, size {size}"
        if toks != chunk:
            ok_tokens = False
            detail = detail or f"{fname}: tokens differ"
    check(f"{label}: headers are 20240520, 1, token count, then zeros; sizes match", ok_header, detail)
    check(f"{label}: tokens = <|endoftext|> + tiktoken encode_ordinary, per document, cut every {SHARD}",
          ok_tokens, detail)


docs = make_docs(400, seed=1)
stream = expected_stream(docs)
check(f"the test documents make {len(stream):,} tokens: {len(stream) // SHARD + 1} shards, one document spans "
      f"more than one", len(stream) > 5 * SHARD and len(enc.encode_ordinary(docs[7])) > SHARD)

# the same documents in each format
jsonl = os.path.join(tmp, "docs.jsonl")
with open(jsonl, "w", encoding="utf-8") as f:
    for i, d in enumerate(docs):
        f.write(json.dumps({"id": i, "text": d, "lang": "en"}, ensure_ascii=i % 2 == 0) + "\n")
        if i == 3:
            f.write("\n")  # a blank line is not a document
jsonl_gz = os.path.join(tmp, "docs.jsonl.gz")
with open(jsonl, "rb") as fi, gzip.open(jsonl_gz, "wb") as fo:
    fo.write(fi.read())
text_blank = os.path.join(tmp, "docs.txt")
with open(text_blank, "w", encoding="utf-8") as f:
    f.write("\n\n".join(docs) + "\n")
line_docs = [d.replace("\n", " ") for d in docs]
text_line = os.path.join(tmp, "lines.txt")
with open(text_line, "w", encoding="utf-8") as f:
    f.write("\n".join(line_docs) + "\n")

# -----------------------------------------------------------------------------
# fineweb.py: every format gives llm.c's shards

ref = os.path.join(tmp, "ref")
res = run(FINEWEB, "--input", jsonl, "-o", ref, "-s", str(SHARD), "-w", "1")
check("fineweb.py on a jsonl runs", res.returncode == 0, res.stderr[-800:])
check_shards("jsonl", ref, "docs", stream)
check("a progress line per shard ('wrote ...'), no progress bar when stderr is not a terminal",
      res.stdout.count("wrote ") == len(shard_names(ref)) and res.stderr.strip() == "", res.stdout[-300:] + res.stderr)
ref_bytes = dir_bytes(ref)

out = os.path.join(tmp, "named")
res = run(FINEWEB, "--input", jsonl, "-o", out, "-s", str(SHARD), "-w", "2", "--name", "fineweb")
check("--name fineweb, 2 tokenizer processes: fineweb_val_000000.bin, fineweb_train_000001.bin, ... "
      "with the same bytes", res.returncode == 0 and
      dir_bytes(out) == {k.replace("docs_", "fineweb_"): v for k, v in ref_bytes.items()}, res.stderr[-500:])

for label, path, extra in (("gzipped jsonl", jsonl_gz, []), ("text, blank-line documents", text_blank, [])):
    out = os.path.join(tmp, label.split()[0].strip(","))
    res = run(FINEWEB, "--input", path, "-o", out, "-s", str(SHARD), "-w", "1", "--name", "docs", *extra)
    check(f"{label}: the same bytes as the jsonl", res.returncode == 0 and dir_bytes(out) == ref_bytes,
          res.stderr[-500:])
out = os.path.join(tmp, "lines")
res = run(FINEWEB, "--input", text_line, "-o", out, "-s", str(SHARD), "-w", "1", "--doc-split", "line")
check("text, --doc-split line: runs", res.returncode == 0, res.stderr[-500:])
check_shards("text, one document a line", out, "lines", expected_stream(line_docs))
whole = os.path.join(tmp, "whole.md")
with open(whole, "w", encoding="utf-8") as f:
    f.write("# Title\n\nsome text\n\n\nmore\n")
out = os.path.join(tmp, "whole")
res = run(FINEWEB, "--input", whole, "-o", out, "-s", str(SHARD), "-w", "1", "--doc-split", "file")
h, toks, _ = read_shard(os.path.join(out, "whole_val_000000.bin")) if res.returncode == 0 else ((), [], 0)
check("text, --doc-split file: the whole file is one document", toks == [EOT] + enc.encode_ordinary(
      "# Title\n\nsome text\n\n\nmore\n"), res.stderr[-300:])

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
parquet = os.path.join(tmp, "docs.parquet")
pq.write_table(pa.table({"id": list(range(len(docs))), "text": docs}), parquet, row_group_size=150)
check("the parquet file has 3 row groups (resuming skips whole ones)", pq.ParquetFile(parquet).num_row_groups == 3)
out = os.path.join(tmp, "parquet")
res = run(FINEWEB, "--input", parquet, "-o", out, "-s", str(SHARD), "-w", "1")
check("parquet: the same bytes as the jsonl", res.returncode == 0 and dir_bytes(out) == ref_bytes, res.stderr[-500:])

# -----------------------------------------------------------------------------
# resumable: killed after its first shards, started again

fifo = os.path.join(tmp, "stream.jsonl")  # first a FIFO the test feeds slowly, then the whole file
os.mkfifo(fifo)
killed = os.path.join(tmp, "killed")
errf = open(os.path.join(tmp, "killed.stderr"), "w")
proc = subprocess.Popen([sys.executable, "-B", FINEWEB, "--input", fifo, "-o", killed, "-s", str(SHARD), "-w", "1"],
                        stdout=subprocess.DEVNULL, stderr=errf)
progress = os.path.join(killed, "stream_progress.json")


def shards_done():
    try:
        with open(progress) as f:
            return len(json.load(f)["shards"])
    except (OSError, ValueError):
        return 0


fed, deadline = 0, time.time() + 60
fd = -1
while fd < 0 and proc.poll() is None and time.time() < deadline:
    try:  # non-blocking: fails (ENXIO) until the script has opened the FIFO, so a script that died cannot hang us
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        time.sleep(0.05)
if fd < 0:
    check("the script opens a FIFO as its --input", False, open(errf.name).read()[-500:])
    proc.kill()
    finish()
os.set_blocking(fd, True)
writer = os.fdopen(fd, "w", encoding="utf-8")
with open(jsonl, encoding="utf-8") as f:
    lines = f.readlines()
while shards_done() < 2 and fed < len(lines) and time.time() < deadline:
    writer.write(lines[fed])
    writer.flush()
    fed += 1
    time.sleep(0.002)  # let the script keep up, so it is killed soon after its second shard
time.sleep(0.3)       # it now waits for more input, inside its third shard
proc.send_signal(signal.SIGKILL)
proc.wait()
try:
    writer.close()
except BrokenPipeError:  # nothing was left unwritten: each line was flushed
    pass
errf.close()
k = shards_done()
check(f"a run killed by SIGKILL after {k} shards (of {len(ref_bytes)}), fed {fed} of {len(lines)} lines, left "
      f"them complete", proc.returncode == -signal.SIGKILL and 2 <= k < len(ref_bytes) and
      all(dir_bytes(killed).get(n) == ref_bytes[n.replace("stream_", "docs_")] for n in
          [f"stream_{'val' if i == 0 else 'train'}_{i:06d}.bin" for i in range(k)]), f"shards {k}")
os.remove(fifo)
shutil.copy(jsonl, fifo)  # the same path, now the whole file
damaged = os.path.join(tmp, "damaged")
shutil.copytree(killed, damaged)
res = run(FINEWEB, "--input", fifo, "-o", killed, "-s", str(SHARD), "-w", "1")
renamed = {k_.replace("stream_", "docs_"): v for k_, v in dir_bytes(killed).items()}
check(f"started again, it resumes after shard {k - 1} and gives the same bytes as a run never interrupted",
      res.returncode == 0 and f"resuming: {k} shard(s) done" in res.stdout and renamed == ref_bytes,
      res.stdout[:300] + res.stderr[-300:])
last = os.path.join(damaged, f"stream_train_{k - 1:06d}.bin")
with open(last, "r+b") as f:
    f.truncate(1500)  # the last finished shard, damaged
with open(os.path.join(damaged, f"stream_train_{k:06d}.bin.tmp"), "wb") as f:
    f.write(b"half a shard")
res = run(FINEWEB, "--input", fifo, "-o", damaged, "-s", str(SHARD), "-w", "2")
renamed = {k_.replace("stream_", "docs_"): v for k_, v in dir_bytes(damaged).items()}
check("with its last shard damaged and a .tmp left behind: redoes that shard, the same bytes, no .tmp",
      res.returncode == 0 and f"resuming: {k - 1} shard(s) done" in res.stdout and renamed == ref_bytes and
      not [f for f in os.listdir(damaged) if f.endswith(".tmp")], res.stdout[:300] + res.stderr[-300:])

# --max-shards, then the rest; a finished run started again; other options
part = os.path.join(tmp, "part")
res = run(FINEWEB, "--input", parquet, "-o", part, "-s", str(SHARD), "-w", "1", "--max-shards", "3")
check("--max-shards 3 stops after 3 shards", res.returncode == 0 and len(shard_names(part)) == 3, res.stderr[-300:])
res = run(FINEWEB, "--input", parquet, "-o", part, "-s", str(SHARD), "-w", "1")
check("a later run without --max-shards goes on from there (skipping parquet row groups): the same bytes",
      res.returncode == 0 and "resuming: 3 shard(s) done" in res.stdout and dir_bytes(part) == ref_bytes,
      res.stdout[:300] + res.stderr[-300:])
mtimes = {f: os.stat(os.path.join(ref, f)).st_mtime_ns for f in shard_names(ref)}
res = run(FINEWEB, "--input", jsonl, "-o", ref, "-s", str(SHARD), "-w", "1")
check("a finished run started again does nothing", res.returncode == 0 and "already there" in res.stdout and
      mtimes == {f: os.stat(os.path.join(ref, f)).st_mtime_ns for f in shard_names(ref)}, res.stdout + res.stderr)
res = run(FINEWEB, "--input", jsonl, "-o", ref, "-s", "3000", "-w", "1")
check("the same folder with another --shard-size: refused, one line naming the fix",
      *one_line_error(res, ref, "another --out-dir"))

# -----------------------------------------------------------------------------
# fineweb.py: bad input

bad = os.path.join(tmp, "bad")
os.makedirs(bad)


def write(name, data, mode="w"):
    path = os.path.join(bad, name)
    with open(path, mode) as f:
        f.write(data)
    return path


def fw_error(label, path, *needles, extra=()):
    res = run(FINEWEB, "--input", path, "-o", os.path.join(tmp, "bad_out", label.replace(" ", "_")), "-s",
              str(SHARD), "-w", "1", *extra)
    check(f"fineweb.py bad input: {label} -> exit 1, one line naming it and the fix",
          *one_line_error(res, path, *needles))


fw_error("a missing file", os.path.join(bad, "nope.jsonl"), "no such file")
fw_error("an unknown format", write("docs.csv", "a,b\n"), "--format")
fw_error("a line that is not JSON", write("notjson.jsonl", '{"text": "ok"}\n{"text": oops}\n'), "line 2", "HINT")
fw_error("no such text column", write("nokey.jsonl", '{"content": "hi"}\n'), "'text'", "content", "--text-column")
fw_error("a null text", write("null.jsonl", '{"text": null}\n'), "line 1", "null", "--text-column")
fw_error("a number as text", write("num.jsonl", '{"text": "a"}\n{"text": 5}\n'), "line 2", "int")
fw_error("a parquet file without the column", parquet, "no column 'body'", "id, text", "--text-column",
         extra=("--text-column", "body"))
fw_error("a .parquet that is not parquet", write("fake.parquet", "just text\n"), "not a parquet file", "--format")
fw_error("text that is not UTF-8", write("latin1.txt", "caf\xe9\n".encode("latin-1"), "wb"), "not UTF-8")
fw_error("an empty file", write("empty.jsonl", ""), "no documents")
stray = os.path.join(tmp, "stray")
os.makedirs(stray)
open(os.path.join(stray, "docs_val_000000.bin"), "wb").close()
res = run(FINEWEB, "--input", jsonl, "-o", stray, "-s", str(SHARD), "-w", "1")
check("fineweb.py: shards in --out-dir with no progress file (another program's?) -> refused, one line",
      *one_line_error(res, stray, "another --out-dir"))
res = run(FINEWEB, "--input", jsonl, "-o", os.path.join(tmp, "zero"), "-s", "0")
check("fineweb.py: --shard-size 0 -> one line", *one_line_error(res, "--shard-size"))
res = run(FINEWEB, "--help")
check("fineweb.py --help names the FineWeb choices and --input", res.returncode == 0 and "--input" in res.stdout and
      "edu" in res.stdout, res.stderr)

# -----------------------------------------------------------------------------
# hellaswag.py: llm.c's eval file

examples = [
    {"ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
     "ctx": "A man is sitting on a roof. he", "split": "val", "split_type": "indomain", "label": 3,
     "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                 "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
     "source_id": "activitynet~v_-JhWjGDPHMY"},
    {"ctx": "Café owners in Zürich", "label": 0,
     "endings": ["serve espresso.", "fly kites 🙂.", "don't sleep.", "count to 1,000,000."]},
    {"ctx": "[header] How to bake bread [title] Mix the flour.", "label": 1,
     "endings": ["Then knead.", "Knead it for ten minutes, folding it over itself again and again.", "x", "  two"]},
    {"ctx": "x", "label": 2, "endings": ["a", "b", "c", "d"]},
]
hs_jsonl = os.path.join(tmp, "hellaswag_val.jsonl")
with open(hs_jsonl, "w", encoding="utf-8") as f:
    f.write("".join(json.dumps(e) + "\n" for e in examples))
hs_bin = os.path.join(tmp, "hs", "hellaswag_val.bin")
res = run(HELLASWAG, "--jsonl", hs_jsonl, "-o", hs_bin)
check("hellaswag.py on a local jsonl runs", res.returncode == 0 and os.path.exists(hs_bin), res.stderr[-500:])
want_runs = []
for i, e in enumerate(examples):
    ctx = enc.encode(e["ctx"])  # llm.c's render_example: encode(ctx), encode(" " + ending)
    ends = [enc.encode(" " + end) for end in e["endings"]]
    run_ = [65535, 0, i, e["label"], 4, len(ctx), *ctx]
    for t in ends:
        run_ += [len(t), *t]
    run_[1] = 2 * len(run_)
    want_runs.append(run_)
if res.returncode == 0:
    with open(hs_bin, "rb") as f:
        data = f.read()
    header = struct.unpack("<256i", data[:1024])
    words = array("H", data[1024:])
    if sys.byteorder == "big":
        words.byteswap()
    longest = max(r[1] for r in want_runs)
    check("eval header: 20240522, 1, number of examples, longest example in bytes, then zeros",
          header[:4] == (20240522, 1, len(examples), longest) and not any(header[4:]), header[:5])
    got_runs, pos = [], 0
    words = words.tolist()
    while pos < len(words):
        n = words[pos + 1] // 2
        got_runs.append(words[pos:pos + n])
        pos += max(n, 1)
    check("each example: 65535, its size, index, label, 4, the context and the 4 endings with their lengths, "
          "the tokens of tiktoken encode(ctx) and encode(' ' + ending)", got_runs == want_runs,
          f"got {got_runs[:1]}, want {want_runs[:1]}")
    check("the file is the header and the examples, nothing more", len(data) == 1024 + 2 * sum(map(len, want_runs)))

    # read back by llmc/hellaswag.h (tests/test_hellaswag.c's dump mode), built here
    exe = os.path.join(tmp, "test_hellaswag")
    cc = os.environ.get("CC", "cc")
    build = subprocess.run([cc, "-O1", "-std=gnu11", os.path.join(REPO_DIR, "tests", "test_hellaswag.c"), "-lm",
                            "-o", exe], capture_output=True, text=True, cwd=REPO_DIR)
    if check("tests/test_hellaswag.c builds", build.returncode == 0, build.stderr[-500:]):
        dump = subprocess.run([exe, hs_bin], capture_output=True, text=True, cwd=REPO_DIR)
        got = [ln for ln in dump.stdout.splitlines() if ln.startswith("example ")]
        want = []
        for i, r in enumerate(want_runs):
            ctx_len = r[5]
            s = f"example {i} label {r[3]} ctx " + " ".join(map(str, r[6:6 + ctx_len]))
            p = 6 + ctx_len
            for _ in range(4):
                s += " | " + " ".join(map(str, r[p + 1:p + 1 + r[p]]))
                p += 1 + r[p]
            want.append(s)
        check("llmc/hellaswag.h reads the same labels, contexts and endings from it (GPT-2: V = 50257, T = 1024)",
              dump.returncode == 0 and got == want, (dump.stderr or "\n".join(got[:2]))[:500])


def hs_error(label, lines, *needles):
    path = os.path.join(bad, f"hs_{label.replace(' ', '_')}.jsonl")
    with open(path, "w") as f:
        f.write("".join(lines))
    res = run(HELLASWAG, "--jsonl", path, "-o", os.path.join(tmp, "hs_bad.bin"))
    check(f"hellaswag.py bad input: {label} -> exit 1, one line naming it", *one_line_error(res, path, *needles))


ok_line = json.dumps(examples[3]) + "\n"
res = run(HELLASWAG, "--jsonl", os.path.join(bad, "none.jsonl"), "-o", os.path.join(tmp, "hs_bad.bin"))
check("hellaswag.py bad input: a missing file -> exit 1, one line naming it and the fix",
      *one_line_error(res, os.path.join(bad, "none.jsonl"), "HINT"))
hs_error("a line that is not JSON", [ok_line, "{oops\n"], "line 2", "not JSON")
hs_error("no label (the test split)", [json.dumps({"ctx": "a", "endings": ["a", "b", "c", "d"]}) + "\n"],
         "line 1", "'label'", "test split")
hs_error("three endings", [json.dumps({"ctx": "a", "label": 0, "endings": ["a", "b", "c"]}) + "\n"], "4 strings")
hs_error("a label past the endings", [json.dumps({"ctx": "a", "label": 4, "endings": ["a", "b", "c", "d"]}) + "\n"],
         "label must be 0..3")
check("no eval file is left by a failed run", not os.path.exists(os.path.join(tmp, "hs_bad.bin")))

shutil.rmtree(tmp, ignore_errors=True)
finish()
