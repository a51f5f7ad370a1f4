"""
dev/ncu_kernels.py: where a training step's GPU time goes, from an Nsight Compute CSV.

dev/gpu_check.sh profiles one step of the trainer (GPT2_1BIT_PROFILE_STEP=k brackets step k with
cudaProfilerStart/Stop) with
    ncu --clock-control none --profile-from-start off --csv --metrics gpu__time_duration.sum ...
and this script sums the kernels' durations by name (template arguments and parameters dropped):
    python3 dev/ncu_kernels.py ncu.csv [TOP]
It prints one row per kernel name, the largest first: total ms, launches, share of the step.
ncu runs the kernels one at a time, so the sum is the step's kernel time without launch gaps or
overlap; compare it with the step time the trainer prints.
"""
import collections
import csv
import re
import sys


def short_name(name):
    """'void foo<128, bf16>(float*, int)' -> 'foo'; cuBLAS kernels keep their (long) names, shortened."""
    name = re.sub(r"^void ", "", name.strip())
    depth, out = 0, []
    for ch in name:  # drop everything inside <...> and (...)
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    name = "".join(out).strip()
    return name[:60]


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: python3 dev/ncu_kernels.py NCU_CSV [TOP]")
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    rows = [r for r in csv.reader(open(sys.argv[1], errors="replace")) if len(r) > 5]
    header = next((r for r in rows if "Kernel Name" in r and "Metric Value" in r), None)
    if header is None:
        sys.exit(f"error: {sys.argv[1]} has no ncu CSV header (Kernel Name, Metric Value): did ncu run?")
    ki, vi, ui = header.index("Kernel Name"), header.index("Metric Value"), header.index("Metric Unit")
    total = collections.defaultdict(float)
    count = collections.Counter()
    scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "second": 1e3}
    for r in rows[rows.index(header) + 1:]:
        try:
            v = float(r[vi].replace(",", "")) * scale.get(r[ui], 1e-6)
        except (ValueError, IndexError):
            continue
        name = short_name(r[ki])
        total[name] += v
        count[name] += 1
    s = sum(total.values())
    if s == 0:
        sys.exit("error: no kernel durations in the CSV")
    print(f"{'kernel':<60} {'ms':>8} {'launches':>8} {'share':>6}")
    for name, v in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{name:<60} {v:8.2f} {count[name]:8d} {100 * v / s:5.1f}%")
    print(f"{'all kernels (' + str(sum(count.values())) + ' launches)':<60} {s:8.2f}")


if __name__ == "__main__":
    main()
