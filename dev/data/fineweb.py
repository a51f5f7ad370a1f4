"""
dev/data/fineweb.py: FineWeb or FineWeb-Edu (the 10B- or 100B-token samples on the Hugging Face hub), or
a local parquet, jsonl or text file, to llm.c's GPT-2 token shards.

Run (python3 -m pip install -r dev/data/requirements.txt first):
    python3 dev/data/fineweb.py                      # FineWeb sample-10BT   -> data/fineweb10B/
    python3 dev/data/fineweb.py -t edu               # FineWeb-Edu sample-10BT -> data/edu_fineweb10B/
    python3 dev/data/fineweb.py -v 100B --max-shards 321   # the first 32B tokens of sample-100BT
    python3 dev/data/fineweb.py --input docs.jsonl   # a local file        -> data/docs/
Then train on them, e.g.
    ./train_gpt2_1bitcu -e d12 -i "data/fineweb10B/fineweb_train_*.bin" -j "data/fineweb10B/fineweb_val_*.bin"

What it writes is what llm.c's dev/data/fineweb.py writes, byte for byte, so shards made by either
script work in both trainers:
  - every document becomes <|endoftext|> (50256) followed by tiktoken's "gpt2" encode_ordinary(text);
  - the documents, in order, form one token stream, cut into shards of --shard-size tokens
    (10^8 by default; a document that straddles a cut continues in the next shard); the last shard
    holds the remainder;
  - shard 0 is the val shard, NAME_val_000000.bin, the others NAME_train_000001.bin, ...;
  - each file: int32 header[256] = {20240520 magic, 1 version, number of tokens, 0...}, then the
    tokens as uint16, little-endian (llmc/dataloader.h reads it).

Resumable: every shard is written to NAME_*.bin.tmp and renamed, and then NAME_progress.json records
where in the documents the next shard starts. A run that is killed and started again with the same
options keeps the shards it finished, checks them, skips the documents they hold (without
tokenizing them) and goes on; the result is the same bytes as a run that was never interrupted.

Inputs (--input; the format comes from the name, or --format):
  .parquet                     the --text-column of every row (FineWeb's own files are parquet)
  .jsonl / .json (+ .gz)       one JSON object per line, its --text-column value
  .txt / .text / .md (+ .gz)   UTF-8 text; --doc-split says what a document is: blank (default:
                               a run of non-blank lines, i.e. documents are separated by blank
                               lines), line (each non-empty line), or file (the whole file)
Every bad input is a one-line error that names it and the fix.
"""

import argparse
import glob
import gzip
import json
import multiprocessing as mp
import os
import sys

SHARD_MAGIC = 20240520   # llm.c's token shard, version 1 = uint16 tokens
SHARD_VERSION = 1
HEADER_INTS = 256
EOT = 50256              # <|endoftext|> in GPT-2's vocabulary: every document starts with it
STATE_VERSION = 1
REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HINT_PIP = "---> HINT: python3 -m pip install -r dev/data/requirements.txt"

# (type, version) -> (output folder, hub repo, hub config, file name prefix): llm.c's names
HUB = {
    ("classic", "10B"): ("fineweb10B", "HuggingFaceFW/fineweb", "sample-10BT", "fineweb"),
    ("classic", "100B"): ("fineweb100B", "HuggingFaceFW/fineweb", "sample-100BT", "fineweb"),
    ("edu", "10B"): ("edu_fineweb10B", "HuggingFaceFW/fineweb-edu", "sample-10BT", "edu_fineweb"),
    ("edu", "100B"): ("edu_fineweb100B", "HuggingFaceFW/fineweb-edu", "sample-100BT", "edu_fineweb"),
}
FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
           ".txt": "text", ".text": "text", ".md": "text"}


def die(msg):
    print(f"fineweb.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


class InputError(Exception):
    """a bad document, raised where the documents are read (maybe a worker pool's feeder thread, where
    sys.exit would end only that thread); main() turns it into the one-line error"""


def require(module, why):
    """import a dependency, or stop with the one line that says how to install it"""
    try:
        return __import__(module)
    except ImportError:
        die(f"{why} needs the Python package '{module}', which is not installed {HINT_PIP}")

# -----------------------------------------------------------------------------
# documents: each source yields the texts from document number `skip` on


def format_of(path, flag):
    if flag:
        return flag
    name = path[:-3] if path.endswith(".gz") else path
    fmt = FORMATS.get(os.path.splitext(name)[1].lower())
    if fmt is None:
        die(f"--input {path}: cannot tell its format from the name ---> HINT: pass --format parquet, jsonl or text")
    return fmt


def open_text(path):
    opener = gzip.open if path.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8", newline=None)  # newline=None: \r\n and \r read as \n


def parquet_source(path, column):
    """(number of documents, generator(skip)) over the column of a parquet file"""
    require("pyarrow", "reading a .parquet file")
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid (or OSError) on anything that is not parquet
        die(f"--input {path} is not a parquet file ({str(e).splitlines()[0]}) "
            f"---> HINT: pass --format jsonl or text if it is one of those")
    names = pf.schema_arrow.names
    if column not in names:
        die(f"--input {path} has no column '{column}' (its columns: {', '.join(names)}) "
            f"---> HINT: pass --text-column NAME")
    meta = pf.metadata

    def docs(skip):
        # whole row groups before `skip` are not read at all; then rows are dropped from the first batch
        groups, first = [], 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if first + n <= skip:
                first += n
            else:
                groups.append(g)
        index = first
        if not groups:
            return
        batches = pf.iter_batches(batch_size=1024, columns=[column], row_groups=groups)
        while True:
            try:
                batch = next(batches, None)
            except Exception as e:  # a damaged file fails here, in the middle
                raise InputError(f"--input {path}: cannot read row {index} on ({str(e).splitlines()[0]})")
            if batch is None:
                return
            for text in batch.column(0).to_pylist():
                if index >= skip:
                    check_text(text, f"--input {path} row {index}", column)
                    yield text
                index += 1
    return meta.num_rows, docs


def check_text(text, where, column):
    if not isinstance(text, str):
        kind = "null" if text is None else type(text).__name__
        raise InputError(f"{where}: '{column}' is {kind}, not a string "
                         f"---> HINT: pass --text-column NAME for the column that holds the text")


def jsonl_source(path, column):
    """one JSON object per non-blank line; a blank line is not a document"""
    def docs(skip):
        index = 0
        with open_text(path) as f:
            try:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    if index >= skip:  # documents before `skip` are counted, not parsed
                        try:
                            obj = json.loads(line)
                        except json.JSONDecodeError as e:
                            raise InputError(f"--input {path} line {lineno} is not JSON ({e.msg}) ---> HINT: each "
                                             f"line must be one JSON object; for plain text pass --format text")
                        if not isinstance(obj, dict) or column not in obj:
                            keys = "its keys: " + ", ".join(obj) if isinstance(obj, dict) else \
                                f"it is a JSON {type(obj).__name__}"
                            raise InputError(f"--input {path} line {lineno} has no key '{column}' ({keys}) "
                                             f"---> HINT: pass --text-column NAME")
                        check_text(obj[column], f"--input {path} line {lineno}", column)
                        yield obj[column]
                    index += 1
            except UnicodeDecodeError as e:
                raise InputError(f"--input {path} is not UTF-8 text ({e.reason}) ---> HINT: convert it to UTF-8")
            except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
                raise InputError(f"--input {path}: cannot read it ({e})")
    return None, docs


def text_source(path, split):
    """documents of a text file: runs of non-blank lines (blank), non-empty lines (line), or the file"""
    def docs(skip):
        index = 0
        with open_text(path) as f:
            try:
                if split == "file":
                    text = f.read()
                    if skip == 0 and text:
                        yield text
                    return
                para = []
                for line in f:
                    line = line.rstrip("\n")
                    if split == "line":
                        if line:
                            if index >= skip:
                                yield line
                            index += 1
                    elif line.strip():
                        para.append(line)
                    elif para:
                        if index >= skip:
                            yield "\n".join(para)
                        index, para = index + 1, []
                if para and index >= skip:
                    yield "\n".join(para)
            except UnicodeDecodeError as e:
                raise InputError(f"--input {path} is not UTF-8 text ({e.reason}) ---> HINT: convert it to UTF-8")
            except (OSError, EOFError) as e:
                raise InputError(f"--input {path}: cannot read it ({e})")
    return None, docs


def hub_source(repo, config, column, streaming):
    """FineWeb from the Hugging Face hub, as llm.c loads it (the whole split, cached by datasets)"""
    datasets = require("datasets", "downloading FineWeb")
    try:
        ds = datasets.load_dataset(repo, name=config, split="train", streaming=streaming)
    except Exception as e:
        die(f"could not load {repo} ({config}) from the Hugging Face hub: {str(e).splitlines()[0] if str(e) else e!r} "
            f"---> HINT: check the network and disk space, or pass --input FILE for a local file")
    names = ds.column_names or []
    if names and column not in names:
        die(f"{repo} has no column '{column}' (its columns: {', '.join(names)}) ---> HINT: pass --text-column text")
    ds = ds.select_columns([column])
    total = None if streaming else len(ds)

    def docs(skip):
        # a map-style dataset skips by index without reading; a streamed one reads what it skips
        part = ds.skip(skip) if streaming else ds.select(range(skip, len(ds)))
        for batch in part.iter(batch_size=1024):
            for text in batch[column]:
                check_text(text, f"{repo} ({config})", column)
                yield text
    return total, docs

# -----------------------------------------------------------------------------
# tokenizing (in worker processes when -w > 1: tokens come back in document order)


ENC = None


def init_tokenizer():
    global ENC
    tiktoken = require("tiktoken", "tokenizing")
    try:
        ENC = tiktoken.get_encoding("gpt2")
    except Exception as e:  # tiktoken downloads its BPE files once, into its cache
        die(f"tiktoken cannot load the gpt2 encoding ({str(e).splitlines()[0] if str(e) else e!r}) ---> HINT: it "
            f"downloads its files once: run with network, or fill $TIKTOKEN_CACHE_DIR")
    assert ENC.eot_token == EOT, "tiktoken's gpt2 encoding has another <|endoftext|>"


def tokenize(text):
    import numpy as np
    ids = ENC.encode_ordinary(text)  # special-token text such as "<|endoftext|>" in a document is plain text
    tokens = np.empty(len(ids) + 1, dtype=np.uint16)  # every id < 50257 fits in uint16
    tokens[0] = EOT
    tokens[1:] = ids
    return tokens

# -----------------------------------------------------------------------------
# shards and the progress file


def shard_path(out_dir, name, index):
    return os.path.join(out_dir, f"{name}_{'val' if index == 0 else 'train'}_{index:06d}.bin")


def write_atomic(path, chunks):
    """write to path.tmp, flush it to disk, rename: a killed run never leaves a partial file under path"""
    with open(path + ".tmp", "wb") as f:
        for c in chunks:
            f.write(c)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def write_shard(path, tokens):
    import numpy as np
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, len(tokens)
    write_atomic(path, [header.tobytes(), tokens.astype("<u2", copy=False).tobytes()])


def shard_ok(path, ntok):
    """the file is a complete shard of ntok tokens (header and size; the tokens are trusted)"""
    try:
        with open(path, "rb") as f:
            header = f.read(12)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if len(header) < 12:
        return False
    magic, version, n = (int.from_bytes(header[i:i + 4], "little", signed=True) for i in (0, 4, 8))
    return (magic, version, n) == (SHARD_MAGIC, SHARD_VERSION, ntok) and size == 4 * HEADER_INTS + 2 * ntok


def load_progress(path, options, out_dir, name):
    """the shards already done: a list of {tokens, next_doc, next_offset}, and whether the run was complete"""
    if not os.path.exists(path):
        others = glob.glob(os.path.join(out_dir, f"{name}_val_*.bin")) + \
            glob.glob(os.path.join(out_dir, f"{name}_train_*.bin"))
        if others:
            die(f"{out_dir} already holds {len(others)} {name}_*.bin shard(s) but no {os.path.basename(path)}, so "
                f"this script cannot tell where they end ---> HINT: delete them, or pass another --out-dir")
        return [], False
    try:
        with open(path) as f:
            state = json.load(f)
        shards, complete = state["shards"], bool(state["complete"])
        same = state["version"] == STATE_VERSION and state["options"] == options
    except (OSError, ValueError, KeyError, TypeError) as e:
        die(f"{path} is unreadable ({e}) ---> HINT: delete {out_dir}'s {name}_* files to start over")
    if not same:
        was = ", ".join(f"{k}={v}" for k, v in state.get("options", {}).items())
        die(f"{out_dir} holds shards made with other options ({was}) ---> HINT: rerun with those options to "
            f"resume, or delete them / pass another --out-dir")
    # keep the longest prefix of shards that are still intact on disk
    for i, s in enumerate(shards):
        if not shard_ok(shard_path(out_dir, name, i), s["tokens"]):
            print(f"shard {i} is missing or incomplete: redoing it and everything after it", file=sys.stderr)
            return shards[:i], False
    return shards, complete


def save_progress(path, options, shards, complete):
    state = {"version": STATE_VERSION, "options": options, "shards": shards, "complete": complete}
    write_atomic(path, [json.dumps(state, indent=1).encode()])

# -----------------------------------------------------------------------------
# main


def parse_args(argv):
    p = argparse.ArgumentParser(description="FineWeb / FineWeb-Edu or a local file -> llm.c GPT-2 token shards")
    p.add_argument("-t", "--type", default="classic", choices=["classic", "edu"],
                   help="FineWeb (classic) or FineWeb-Edu (edu); default classic")
    p.add_argument("-v", "--version", default="10B", choices=["10B", "100B"],
                   help="the hub's sample: 10B or 100B tokens; default 10B")
    p.add_argument("-i", "--input", help="a local .parquet, .jsonl or .txt file instead of the hub")
    p.add_argument("--format", choices=["parquet", "jsonl", "text"], help="--input's format (default: from its name)")
    p.add_argument("--text-column", default="text", help="the column (parquet) or key (jsonl) of the text")
    p.add_argument("--doc-split", default="blank", choices=["blank", "line", "file"],
                   help="text input: documents are separated by blank lines (default), one per line, or the whole file")
    p.add_argument("-o", "--out-dir", help="where the shards go (default data/<fineweb10B, edu_fineweb10B, "
                   "..., or the input's name>)")
    p.add_argument("-n", "--name", help="file name prefix: NAME_val_000000.bin (default fineweb, edu_fineweb, "
                   "or the input's name)")
    p.add_argument("-s", "--shard-size", "--shard_size", type=int, default=10**8,
                   help="tokens per shard (default 10^8, llm.c's)")
    p.add_argument("--max-shards", type=int, default=0, help="stop after this many shards, val included (0 = all)")
    p.add_argument("-w", "--workers", type=int, default=max(1, (os.cpu_count() or 1) - 2),
                   help="tokenizer processes (default: the cores less two, as llm.c)")
    p.add_argument("--streaming", action="store_true",
                   help="hub only: stream the documents instead of downloading the whole sample first")
    args = p.parse_args(argv)
    if not 1 <= args.shard_size < 2**31:
        die(f"--shard-size {args.shard_size}: must be in [1, 2^31) (llm.c's header holds it in an int32)")
    if args.max_shards < 0 or args.workers < 1:
        die("--max-shards must be 0 or more and --workers 1 or more")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.input is not None:
        if not os.path.exists(args.input) or os.path.isdir(args.input):  # a FIFO or /dev/stdin is fine
            die(f"--input {args.input}: no such file")
        fmt = format_of(args.input, args.format)
        base = os.path.basename(args.input)
        stem = base.split(".")[0] or "data"
        name, out_dir = args.name or stem, args.out_dir or os.path.join(REPO_DIR, "data", stem)
        source = os.path.abspath(args.input)
        options = {"input": source, "format": fmt, "text_column": args.text_column, "shard_size": args.shard_size}
        if fmt == "text":
            options["doc_split"] = args.doc_split
    else:
        folder, repo, config, prefix = HUB[(args.type, args.version)]
        name, out_dir = args.name or prefix, args.out_dir or os.path.join(REPO_DIR, "data", folder)
        source = f"{repo} ({config})"
        options = {"input": f"{repo}/{config}", "text_column": args.text_column, "shard_size": args.shard_size}
    if not name or "/" in name or os.sep in name:
        die(f"--name {name!r}: must be a plain file name prefix such as fineweb")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        die(f"--out-dir {out_dir}: cannot create it ({e.strerror})")
    if not os.access(out_dir, os.W_OK):
        die(f"--out-dir {out_dir}: not writable ---> HINT: pass another --out-dir")

    np = require("numpy", "writing shards")
    progress_path = os.path.join(out_dir, f"{name}_progress.json")
    shards, complete = load_progress(progress_path, options, out_dir, name)
    for tmp in glob.glob(os.path.join(out_dir, f"{name}_*.tmp")):
        os.remove(tmp)  # a killed run's half-written file
    if complete or (args.max_shards and len(shards) >= args.max_shards):
        print(f"{out_dir}: all {len(shards)} shards are already there (delete its {name}_* files to redo them)")
        return
    if shards:
        print(f"resuming: {len(shards)} shard(s) done, going on from document {shards[-1]['next_doc']:,}")

    # the sources are opened after the checks above, so a bad option costs no download
    init_tokenizer()
    if args.input is None:
        total, docs = hub_source(repo, config, args.text_column, args.streaming)
    elif fmt == "parquet":
        total, docs = parquet_source(args.input, args.text_column)
    elif fmt == "jsonl":
        total, docs = jsonl_source(args.input, args.text_column)
    else:
        total, docs = text_source(args.input, args.doc_split)
    tqdm = require("tqdm", "the progress bar").tqdm

    # where the next shard starts: document next_doc, its token next_offset (0 = its EOT)
    next_doc, next_offset = (shards[-1]["next_doc"], shards[-1]["next_offset"]) if shards else (0, 0)
    buf = np.empty(args.shard_size, dtype=np.uint16)
    fill = 0
    # disable=None: a bar on a terminal only; the "wrote" lines go to stdout either way
    bar = tqdm(total=total, initial=next_doc, unit="doc", unit_scale=True, dynamic_ncols=True,
               desc=f"{name} -> {out_dir}", disable=None)

    def finish_shard(n, doc, offset):
        path = shard_path(out_dir, name, len(shards))
        write_shard(path, buf[:n])
        shards.append({"tokens": int(n), "next_doc": doc, "next_offset": offset})
        save_progress(progress_path, options, shards, False)  # after the rename: the shard is complete
        bar.write(f"wrote {path} ({n:,} tokens)")
        bar.set_postfix(shards=len(shards))

    pool = mp.Pool(args.workers, initializer=init_tokenizer) if args.workers > 1 else None
    stopped = False
    try:
        texts = docs(next_doc)
        tokens_iter = pool.imap(tokenize, texts, chunksize=16) if pool else map(tokenize, texts)
        doc = next_doc
        for tokens in tokens_iter:
            pos = next_offset if doc == next_doc else 0  # the first document may have begun in the last shard
            while pos < len(tokens):
                take = min(args.shard_size - fill, len(tokens) - pos)
                buf[fill:fill + take] = tokens[pos:pos + take]
                fill, pos = fill + take, pos + take
                if fill == args.shard_size:  # full: the next shard starts here (or at the next document)
                    finish_shard(fill, doc if pos < len(tokens) else doc + 1, pos if pos < len(tokens) else 0)
                    fill = 0
                    if args.max_shards and len(shards) >= args.max_shards:
                        stopped = True
                        break
            doc += 1
            bar.update(1)
            if stopped:
                break
        if fill > 0 and not stopped:  # the remainder: the last shard
            finish_shard(fill, doc, 0)
    except InputError as e:
        bar.close()  # so the error starts a line of its own
        die(str(e))
    except Exception as e:
        if args.input is not None:
            raise  # a local file that fails otherwise is a bug here: the traceback says where
        bar.close()
        die(f"reading {source} failed after {len(shards)} shard(s) ({str(e).splitlines()[0] if str(e) else e!r}) "
            f"---> HINT: run the same command again: it goes on after the last finished shard")
    finally:
        if pool:
            pool.terminate()
        bar.close()
    if not shards:
        die(f"{source} holds no documents")
    save_progress(progress_path, options, shards, not stopped)
    # shard files past the last one can only be left from a run on other data: they would join a glob
    for path in glob.glob(os.path.join(out_dir, f"{name}_train_*.bin")):
        suffix = path[-10:-4]
        if not stopped and suffix.isdigit() and int(suffix) >= len(shards):
            os.remove(path)
            print(f"removed {path}: past the last shard of this run")
    ntok = sum(s["tokens"] for s in shards)
    print(f"done: {len(shards)} shard(s), {ntok:,} tokens in {out_dir} "
          f"(val: {shards[0]['tokens']:,} tokens in {os.path.basename(shard_path(out_dir, name, 0))})")
    if len(shards) == 1:
        print(f"warning: only the val shard was written (no train shard): the input has fewer than "
              f"--shard-size {args.shard_size:,} tokens; pass a smaller --shard-size", file=sys.stderr)


if __name__ == "__main__":
    main()
