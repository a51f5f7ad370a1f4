"""
tests/checks.py: the reporting shared by the Python test programs. Each check
prints "PASS: <name>" or "FAIL: <name>: <details>"; finish() prints the
program's summary line and exits 1 if any check failed.
    from checks import check, finish   (tests/ is the script's directory, so on sys.path)
Importing it also puts PACKAGE_DIR, tests/run_tests.sh's fallback install directory, on sys.path.
"""
import os
import sys

_counts = {"pass": 0, "fail": 0}

# where tests/run_tests.sh installs test packages (tiktoken, numpy, gguf, safetensors) when pip may
# not change this Python: on sys.path for every test that imports this module
PACKAGE_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ.get("HOME", "/tmp"), ".cache"),
                           "train_gpt2_1bit", "python%d.%d" % sys.version_info[:2])
if os.path.isdir(PACKAGE_DIR) and PACKAGE_DIR not in sys.path:
    sys.path.append(PACKAGE_DIR)


def check(name, ok, details=""):
    if ok:
        _counts["pass"] += 1
        print(f"PASS: {name}")
    else:
        _counts["fail"] += 1
        print(f"FAIL: {name}: {details}")
    sys.stdout.flush()
    return ok


def finish():
    program = os.path.basename(sys.argv[0])
    print(f"({program}: {_counts['pass']} checks passed, {_counts['fail']} checks failed)")
    sys.exit(1 if _counts["fail"] else 0)
