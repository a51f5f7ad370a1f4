"""
Tests dev/plot_loss.py with its stdlib backend (no matplotlib needed): reading main.log (a resumed
run's later lines win, the first report's flip of -1 and an unknown flip (nan) are left out, trits
are averaged over the matrices, HellaSwag "eval" lines), the learning-rate drop of the two-stage
schedule found from the trl lines' lr (and none in warmup, a plain cosine or its end at 0), the EMA,
lines clipped to the axes, a whole picture from two synthetic logs (PNG signature, size, not blank,
both run colours present), the drop drawn as a dashed line at its step, the HellaSwag row, and the
one-line errors for bad input.

Run (python3 standard library only):
    python3 tests/test_plot.py
Prints PASS: <name> or FAIL: <name>: <details> per check, then a summary line;
exits 1 if any check failed.
"""

import contextlib
import io
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_DIR, "dev", "plot_loss.py")
sys.dont_write_bytecode = True  # leave no __pycache__ in the repo
sys.path.insert(0, os.path.join(REPO_DIR, "dev"))
import plot_loss  # noqa: E402

# -----------------------------------------------------------------------------
# reporting

from checks import check, finish  # noqa: E402  (PASS/FAIL lines, the summary line)

# -----------------------------------------------------------------------------
# helpers


def write_log(path, ternary, steps=400, seed=0):
    """a log in llmc/logger.h's format: val and trits every 50 steps, train every step"""
    rng = random.Random(seed)
    lines = []
    for step in range(steps + 1):
        if step % 50 == 0:
            lines.append(f"s:{step} tel:{4.5 + 6 * math.exp(-step / 80) + rng.gauss(0, 0.03):.6f}")
            for layer in range(2) if ternary else ():
                for m in ("qkv", "attproj", "fc", "fcproj"):
                    flip = -1.0 if step == 0 else 0.05 * math.exp(-step / 150)
                    lines.append(f"s:{step} trit:{layer}.{m} zero:{0.31 + step / 1e4:.4f} flip:{flip:.6f} "
                                 f"scale:1.500000e-02")
        if step < steps:
            loss = 4.4 + 6 * math.exp(-(step + 1) / 80) + rng.gauss(0, 0.15)
            lines.append(f"s:{step + 1} trl:{loss:.6f} lr:1.500000e-03 norm:0.9123")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def read_png(path):
    """-> (width, height, rows of RGB bytes); only what Canvas.save_png writes (8-bit RGB, filter 0)"""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(tag + body), f"bad CRC in {tag}"
        if tag == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert (depth, ctype) == (8, 2), "not 8-bit RGB"
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = 1 + 3 * w
    assert len(raw) == h * stride, "IDAT size does not match IHDR"
    return w, h, [raw[y * stride + 1:(y + 1) * stride] for y in range(h)]


def run_script(*args):
    return subprocess.run([sys.executable, "-B", SCRIPT, *args], capture_output=True, text=True)


tmp = tempfile.mkdtemp(prefix="test_plot_")

# -----------------------------------------------------------------------------
# reading main.log

log = os.path.join(tmp, "resumed.log")
with open(log, "w") as f:
    f.write("s:0 tel:10.0\n"
            "s:0 trit:0.qkv zero:0.3000 flip:-1.000000 scale:1e-2\n"
            "s:0 trit:0.fc zero:0.4000 flip:-1.000000 scale:1e-2\n"
            "s:1 trl:9.0 lr:1e-3 norm:1.0\n"
            "s:2 trl:8.0 lr:1e-3 norm:1.0\n"
            "s:2 tel:8.5\n"
            "s:2 trit:0.qkv zero:0.3000 flip:0.010000 scale:1e-2\n"
            "s:2 trit:0.fc zero:0.4000 flip:0.030000 scale:1e-2\n"
            "s:3 trl:7.0 lr:1e-3 norm:1.0\n"
            "s:4 trl:6.0 lr:1e-3 norm:1.0\n"
            "s:5 trl:5.0 lr:1e-3 norm:1.0\n"    # the first run got to step 5 ...
            "s:2 tel:8.4\n"                      # ... and was resumed from its checkpoint at step 2
            "s:2 trit:0.qkv zero:0.3200 flip:-1.000000 scale:1e-2\n"
            "s:2 trit:0.fc zero:0.4200 flip:-1.000000 scale:1e-2\n"
            "s:3 trl:7.5 lr:1e-3 norm:1.0\n"
            "this line is not part of the format\n"
            "s:4 trl:6.5")                       # killed mid-line: the loss is there, so it counts
err = io.StringIO()
with contextlib.redirect_stderr(err):
    r = plot_loss.read_log(log, "x")
check("an unparseable line is skipped with a warning", "skipped 1 unparseable line" in err.getvalue(),
      err.getvalue())
check("train loss: the resumed run's lines win, the first run's step 2 stays, its step 5 goes",
      r.train == [(1, 9.0), (2, 8.0), (3, 7.5), (4, 6.5)], r.train)
check("val loss: the later line for a step wins", r.val == [(0, 10.0), (2, 8.4)], r.val)
check("zero fraction: mean over the matrices, later report wins",
      [(s, round(v, 6)) for s, v in r.zero] == [(0, 0.35), (2, 0.37)], r.zero)
check("flip fraction: -1 (no previous report) is left out", r.flip == [], r.flip)
write_log(os.path.join(tmp, "plain.log"), True, steps=100)
r = plot_loss.read_log(os.path.join(tmp, "plain.log"), "x")
check("flip fraction: mean over matrices from the second report on",
      [s for s, _ in r.flip] == [50, 100] and abs(r.flip[0][1] - 0.05 * math.exp(-50 / 150)) < 1e-6, r.flip)

with open(log, "w") as f:
    f.write("s:0 trit:0.qkv zero:0.3000 flip:-1.000000 scale:1e-2\n"
            "s:10 trit:0.qkv zero:0.3100 flip:0.020000 scale:1e-2\n"
            "s:20 trit:0.qkv zero:0.3200 flip:nan scale:1e-2\n"      # the first report after a resume
            "s:30 trit:0.qkv zero:0.3300 flip:0.010000 scale:1e-2\n")
r = plot_loss.read_log(log, "x")
check("an unknown flip (nan, after a resume) is left out, its zero fraction kept",
      [s_ for s_, _ in r.zero] == [0, 10, 20, 30] and r.flip == [(10, 0.02), (30, 0.01)], (r.zero, r.flip))

with open(log, "w") as f:
    f.write("s:0 eval:0.2500\n"
            "s:1 trl:9.0 lr:1e-3 norm:1.0\n"
            "s:100 eval:0.2700\n"
            "s:200 eval:0.2800\n"     # the first run got to step 200 ...
            "s:100 eval:0.2750\n")    # ... and was resumed from step 100
r = plot_loss.read_log(log, "x")
check("HellaSwag: 's:N eval:acc' lines (llm.c's key) are read, a resumed run's later line wins",
      r.hella == [(0, 0.25), (100, 0.275)], r.hella)
with open(log, "w") as f:
    f.write("s:0 eval:0.2500\ns:100 eval:0.2700\n")
check("a log of HellaSwag lines only is a log", plot_loss.read_log(log, "x").hella == [(0, 0.25), (100, 0.27)])

# -----------------------------------------------------------------------------
# the learning-rate drop of the two-stage schedule (llmc/schedulers.h, restated)


def schedule_lr(step, lr, warmup, max_steps, final_frac, stage2_frac, stage2_drop):
    if step < warmup:
        return lr * (step + 1) / warmup
    min_lr = lr * final_frac
    peak = max(lr * stage2_drop if step >= int(stage2_frac * max_steps) else lr, min_lr)
    progress = min((step - warmup) / (max_steps - warmup), 1.0)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (peak - min_lr)


def lr_log(path, **sched):
    """trl lines as the trainer writes them: s:step+1 carries the lr of step, in %.6e"""
    with open(path, "w") as f:
        for step in range(sched["max_steps"]):
            f.write(f"s:{step + 1} trl:5.0 lr:{schedule_lr(step, **sched):.6e} norm:1.0\n")
    return plot_loss.read_log(path, "x").drops


drops = lr_log(log, lr=1.5e-3, warmup=30, max_steps=300, final_frac=0.1, stage2_frac=0.5, stage2_drop=2 / 3)
check("the trainer's default b1.58 schedule (300 steps): one drop, at step 150 (-ls 0.5), to ~0.68x",
      len(drops) == 1 and drops[0][0] == 150 and abs(drops[0][1] - 0.68) < 0.01, drops)
drops = lr_log(log, lr=1.5e-3, warmup=700, max_steps=19073, final_frac=0.0, stage2_frac=0.5, stage2_drop=2 / 3)
check("the 124M b1.58 schedule (19,073 steps, warmup 700, to 0): one drop, at step 9536",
      [d[0] for d in drops] == [9536], drops)
for steps, warm in ((19073, 700), (300, 30), (20, 2)):
    drops = lr_log(log, lr=6e-4, warmup=warm, max_steps=steps, final_frac=0.0, stage2_frac=0.5, stage2_drop=1.0)
    check(f"a plain cosine to 0 ({steps} steps, warmup {warm}) has no drop", drops == [], drops)

# -----------------------------------------------------------------------------
# EMA

pts = [(i, 5.0) for i in range(1, 20)]
check("EMA of a constant is that constant (debiased from the first step)",
      all(abs(v - 5.0) < 1e-12 for _, v in plot_loss.ema(pts, 0.9)))
check("EMA with beta 0 is the raw loss", plot_loss.ema(pts, 0.0) == pts)

# -----------------------------------------------------------------------------
# the raster: lines stay inside their clip rectangle

cv = plot_loss.Canvas(60, 40)
cv.line(-30, 5, 90, 35, (255, 0, 0), 3.0, clip=(10, 10, 50, 30))
outside = [(x, y) for y in range(40) for x in range(60) if not (10 <= x < 50 and 10 <= y < 30)
           and cv.px[3 * (y * 60 + x):3 * (y * 60 + x) + 3] != b"\xff\xff\xff"]
inside = sum(cv.px[3 * (y * 60 + x)] == 255 and cv.px[3 * (y * 60 + x) + 1] < 128
             for y in range(10, 30) for x in range(10, 50))
check("a line crossing the axes is drawn inside them and nowhere else", not outside and inside > 30,
      f"{len(outside)} pixels outside, {inside} red pixels inside")

# -----------------------------------------------------------------------------
# a whole picture: fp vs ternary

write_log(os.path.join(tmp, "fp.log"), False, seed=1)
write_log(os.path.join(tmp, "ternary.log"), True, seed=2)
png = os.path.join(tmp, "loss.png")
res = run_script(os.path.join(tmp, "fp.log"), os.path.join(tmp, "ternary.log"), "-o", png,
                 "--labels", "fp,ternary", "--smooth", "0.9", "--backend", "stdlib")
check("stdlib backend runs and says what it wrote", res.returncode == 0 and "wrote" in res.stdout,
      res.stdout + res.stderr)
try:
    w, h, rows = read_png(png)
    ok, msg = True, ""
except (OSError, AssertionError, zlib.error, struct.error) as e:
    ok, msg, w, h, rows = False, str(e), 0, 0, []
check("the PNG has a valid signature, chunks and CRCs, and decodes", ok, msg)
check("the PNG is 1000 wide and tall enough for both rows of panels", w == 1000 and h > 700, f"{w}x{h}")
pixels = [bytes(row[i:i + 3]) for row in rows for i in range(0, len(row), 3)]
ink = sum(p != b"\xff\xff\xff" for p in pixels)
check("the picture is not blank (2%+ of the pixels are drawn)", ink > 0.02 * max(len(pixels), 1),
      f"{ink} of {len(pixels)}")
for i, name in ((0, "fp (blue)"), (1, "ternary (orange)")):
    c = plot_loss.COLORS[i]  # near the colour: anti-aliased edges blend it with the white
    n = sum(sum(abs(a - b) for a, b in zip(p, c)) < 60 for p in pixels)
    check(f"the {name} run's colour is drawn", n > 500, f"{n} pixels")
res = run_script(os.path.join(tmp, "fp.log"), "-o", os.path.join(tmp, "fp.png"), "--backend", "stdlib")
w2, h2, _ = read_png(os.path.join(tmp, "fp.png")) if res.returncode == 0 else (0, 0, None)
check("an fp-only log (no trit lines) gets the loss panel only", 0 < h2 < h, f"{w2}x{h2} vs {w}x{h}")

# -----------------------------------------------------------------------------
# the drop and HellaSwag in the picture


def with_schedule_and_eval(src, dst, drop):
    """src's lines, each trl line given the 300-step schedule's lr (with or without the drop), and a
    HellaSwag line at every val step"""
    out = []
    with open(src) as f:
        for line in f:
            t = line.split()
            step = int(t[0][2:])
            if t[1].startswith("trl:"):
                lr = schedule_lr(step - 1, 1.5e-3, 30, 400, 0.1, 0.5, 2 / 3 if drop else 1.0)
                line = f"{t[0]} {t[1]} lr:{lr:.6e} {t[3]}\n"
            elif t[1].startswith("tel:"):
                line += f"s:{step} eval:{0.25 + 0.05 * step / 400 + 0.01 * drop:.4f}\n"
            out.append(line)
    with open(dst, "w") as f:
        f.write("".join(out))


with_schedule_and_eval(os.path.join(tmp, "fp.log"), os.path.join(tmp, "fp_h.log"), drop=False)
with_schedule_and_eval(os.path.join(tmp, "ternary.log"), os.path.join(tmp, "ternary_h.log"), drop=True)
runs = [plot_loss.read_log(os.path.join(tmp, n), lab) for n, lab in (("fp_h.log", "fp"), ("ternary_h.log", "b1.58"))]
check("the two logs: the fp one has no drop, the b1.58 one one at step 200",
      runs[0].drops == [] and [d[0] for d in runs[1].drops] == [200], (runs[0].drops, runs[1].drops))
png_h = os.path.join(tmp, "hella.png")
panels = plot_loss.render_stdlib(runs, png_h, None, "test")
w3, h3, rows3 = read_png(png_h)
check("a HellaSwag row is added below the trit row (taller picture)", "hellaswag" in panels and h3 > h,
      f"{sorted(panels)}, {w3}x{h3} vs {h}")


def px_at(rows, x, y):
    return tuple(rows[y][3 * x:3 * x + 3])


def near(p, c, tol=60):
    return sum(abs(a - b) for a, b in zip(p, c)) < tol


ax = panels["loss"]
x = int(ax.px(200, ax.ylim[0])[0])
l, t, r_, b = ax.rect
col = [near(px_at(rows3, x, y), plot_loss.COLORS[1]) or near(px_at(rows3, x + 1, y), plot_loss.COLORS[1])
       for y in range(t, b)]
runs_on = sum(1 for i in range(1, len(col)) if col[i] and not col[i - 1])
check("the drop is a dashed vertical line in the b1.58 colour at step 200, top to bottom of the loss panel",
      sum(col) > 0.4 * len(col) and runs_on > 10, f"{sum(col)} of {len(col)} rows, {runs_on} dashes")
x150 = int(ax.px(150, ax.ylim[0])[0])
col150 = sum(near(px_at(rows3, x150, y), plot_loss.COLORS[1]) for y in range(t, b))
check("and there is no such line where there is no drop (step 150)", col150 < 0.2 * len(col), col150)
a = panels["hellaswag"]
for i, name in ((0, "fp"), (1, "b1.58")):
    n = sum(near(px_at(rows3, xx, yy), plot_loss.COLORS[i])
            for yy in range(a.rect[1], a.rect[3]) for xx in range(a.rect[0], a.rect[2]))
    check(f"the HellaSwag panel draws the {name} run in its colour", n > 300, f"{n} pixels")
yc = int(a.px(0, plot_loss.CHANCE)[1])
check("the HellaSwag panel's axis holds chance (25%)", a.rect[1] <= yc < a.rect[3], (a.ylim, yc))
res = run_script(os.path.join(tmp, "fp_h.log"), os.path.join(tmp, "ternary_h.log"), "-o", png_h,
                 "--backend", "stdlib")
check("the command line draws the same picture", res.returncode == 0 and read_png(png_h)[:2] == (w3, h3),
      res.stdout + res.stderr)

# -----------------------------------------------------------------------------
# bad input: one line naming the file, exit status 1

missing = os.path.join(tmp, "no_such_dir", "main.log")
res = run_script(missing, "-o", os.path.join(tmp, "x.png"), "--backend", "stdlib")
check("a missing log: exit 1, one line naming it",
      res.returncode == 1 and missing in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr)
junk = os.path.join(tmp, "junk.log")
with open(junk, "w") as f:
    f.write("step 10 | loss 7.1\nnot a log\n")
res = run_script(os.path.join(tmp, "fp.log"), junk, "-o", os.path.join(tmp, "x.png"), "--backend", "stdlib")
check("a log with no parseable lines: exit 1, one line naming it",
      res.returncode == 1 and junk in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr)
check("no PNG is written after bad input", not os.path.exists(os.path.join(tmp, "x.png")))

shutil.rmtree(tmp, ignore_errors=True)
finish()
