"""
dev/plot_loss.py: turns one or more main.log files (written by llmc/logger.h) into one PNG.

Run (python3 standard library only; matplotlib is used if it is importable, for nicer output):
    python3 dev/plot_loss.py out/main.log -o loss.png
    python3 dev/plot_loss.py out_fp/main.log out_ternary/main.log --labels fp,ternary --smooth 0.9
Flags:
    -o PATH           the PNG to write (default loss.png)
    --labels A,B,...  one name per log for the legend (default: the log's directory name)
    --smooth BETA     EMA of the train loss, 0 <= BETA < 1 (default 0.0 = raw), e.g. 0.9
    --ylim LO,HI      the loss axis range (default: fit the data)
    --title TEXT      the figure title
    --backend B       auto (default: matplotlib if importable, else stdlib), matplotlib or stdlib

The picture: top panel, loss vs step, one colour per log (the legend names them): train loss
as a thin line, val loss as a thicker line with dots. Where a log's learning rate drops (the
second stage of the 1-bit schedule, -ls/-ld), a dashed vertical line in its colour marks the step.
If any log has trit lines, a row below with two panels in the same colours: the fraction of
trits that are zero, and (log scale) the fraction that flipped since the previous report, each
the plain mean over all ternary matrices. If any log has HellaSwag lines, a last row: acc_norm
in % vs step, with chance (25%) dotted.

The log, one event per line (llmc/logger.h):
    s:<step> trl:<train loss> lr:<lr> norm:<grad norm>
    s:<step> tel:<val loss>
    s:<step> trit:<layer>.<matrix> zero:<frac> flip:<frac> scale:<gamma>
    s:<step> eval:<HellaSwag acc_norm, a fraction>      (llm.c's logger_log_eval key)
flip is -1 at the first report (nothing to compare with) and nan where it is unknown (the first
report after a resume): both are left out. A resumed run appends to the same file, so steps may
go backwards where it starts: the later line wins, and the old run's records after that step are
dropped (the resumed run writes its own).

A learning-rate drop is a fall between two logged steps of more than 5% of the run's peak rate
and more than 5 times the median step-to-step change, which a smooth warmup or cosine never
makes (at 300 steps a cosine falls at most 0.6% of its peak a step); the mark is at the step the
lower rate starts (a trl line logs the rate of the step before it).

The stdlib backend is a small renderer: an RGB raster, anti-aliased lines (each pixel's
coverage is its distance to the segment), a 5x7 bitmap font (g, p, q, y, j descend 2 rows
more), and a PNG writer (zlib + struct). It draws the same picture as the matplotlib backend.
"""

import argparse
import math
import os
import struct
import sys
import zlib

# matplotlib's "tab10" colours, one per log, the same in both backends
COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)

# -----------------------------------------------------------------------------
# reading main.log


def parse_line(line):
    """'s:10 trl:7.1 lr:1e-3' -> (10, 'trl', (7.1, 1e-3)) (lr None if absent); (step, 'tel', loss);
    (step, 'eval', acc); (step, 'trit', (name, zero, flip)); None if unparseable"""
    try:
        f = dict(tok.split(":", 1) for tok in line.split())  # ValueError if a token has no ':'
        step = int(f["s"])
        if "trl" in f:
            return step, "trl", (float(f["trl"]), float(f["lr"]) if "lr" in f else None)
        if "tel" in f:
            return step, "tel", float(f["tel"])
        if "eval" in f:
            return step, "eval", float(f["eval"])
        if "trit" in f:
            return step, "trit", (f["trit"], float(f["zero"]), float(f["flip"]))
    except (ValueError, KeyError):
        pass
    return None


class Run:
    """One log: sorted (step, value) lists, the trit ones already averaged over the matrices."""

    def __init__(self, label, train, val, zero, flip, lr=(), hella=()):
        self.label, self.train, self.val, self.zero, self.flip = label, train, val, zero, flip
        self.lr, self.hella = list(lr), list(hella)  # (step, learning rate), (step, acc_norm fraction)
        self.drops = lr_drops(self.lr)               # (step, new rate / old rate)


def read_log(path, label):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}")
    train, val, trit = {}, {}, {}  # step -> loss, step -> loss, step -> {matrix: (zero, flip)}
    lr, hella = {}, {}             # step -> learning rate, step -> HellaSwag acc_norm
    last, n_bad = -1, 0
    for line in lines:
        rec = parse_line(line)
        if rec is None:
            n_bad += line.strip() != ""
            continue
        step, kind, value = rec
        if step < last:  # a resumed run starts here: forget what the old run logged after it
            for d in (train, val, trit, lr, hella):
                for s in [s for s in d if s > step]:
                    del d[s]
        last = step
        if kind == "trl":
            loss, rate = value
            if math.isfinite(loss):
                train[step] = loss
            if rate is not None and math.isfinite(rate):
                lr[step] = rate
        elif kind == "tel" and math.isfinite(value):
            val[step] = value
        elif kind == "eval" and math.isfinite(value):
            hella[step] = value
        elif kind == "trit" and math.isfinite(value[1]):
            name, z, fl = value  # a nan flip stays nan: left out of the flip mean below, the zero kept
            trit.setdefault(step, {})[name] = (z, fl)
    if not (train or val or trit or hella):
        die(f"{path}: no parseable lines (expected e.g. 's:10 trl:7.12 lr:1.5e-03 norm:0.91', "
            f"see llmc/logger.h)")
    if n_bad:
        print(f"warning: {path}: skipped {n_bad} unparseable line(s)", file=sys.stderr)
    # plain mean over the matrices (each counts once, whatever its size); flip < 0 = no previous report
    zero, flip = [], []
    for s in sorted(trit):
        mats = trit[s].values()
        zero.append((s, sum(z for z, _ in mats) / len(mats)))
        flips = [fl for _, fl in mats if fl >= 0]
        if flips:
            flip.append((s, sum(flips) / len(flips)))
    return Run(label, sorted(train.items()), sorted(val.items()), zero, flip, sorted(lr.items()), sorted(hella.items()))


def lr_drops(lr):
    """[(step, ratio)]: where the learning rate falls more than a smooth schedule can (see the top)"""
    if len(lr) < 3:
        return []
    peak = max(v for _, v in lr)
    deltas = [a[1] - b[1] for a, b in zip(lr, lr[1:])]
    typical = sorted(abs(d) for d in deltas)[len(deltas) // 2]
    # the trl line at step s carries the rate of step s-1: the lower rate starts at (its step) - 1
    return [(b[0] - 1, b[1] / a[1]) for a, b, d in zip(lr, lr[1:], deltas)
            if d > 0.05 * peak and d > 5 * typical and a[1] > 0]


def ema(points, beta):
    """debiased exponential moving average: m_i = beta*m_{i-1} + (1-beta)*x_i, shown as m_i/(1-beta^i)"""
    if beta <= 0:
        return points
    out, m = [], 0.0
    for i, (s, v) in enumerate(points, 1):
        m = beta * m + (1 - beta) * v
        out.append((s, m / (1 - beta ** i)))
    return out

# -----------------------------------------------------------------------------
# matplotlib backend


def render_matplotlib(runs, path, ylim, title):
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    has_trit = any(r.zero for r in runs)
    has_hella = any(r.hella for r in runs)
    rgb = [tuple(c / 255 for c in col) for col in COLORS]
    ratios = [1.65] + [1] * (has_trit + has_hella)
    fig = plt.figure(figsize=(10, 5 + 3.2 * (has_trit + has_hella)))
    grid = fig.add_gridspec(len(ratios), 2, height_ratios=ratios)
    ax = fig.add_subplot(grid[0, :])
    for i, r in enumerate(runs):  # zorder: every val line above every train line
        if r.train:
            ax.plot(*zip(*r.train), color=rgb[i % len(rgb)], lw=0.8, zorder=2, label=f"{r.label} train")
        if r.val:
            ax.plot(*zip(*r.val), color=rgb[i % len(rgb)], lw=2.2, marker="o", ms=4, zorder=3,
                    label=f"{r.label} val")
        for step, ratio in r.drops:  # x in data, y in axes coordinates: the label stays at the top
            ax.axvline(step, color=rgb[i % len(rgb)], ls="--", lw=1.2, zorder=1)
            ax.text(step, 0.98 - 0.05 * i, f" stage 2: lr x{ratio:.2f}", color=rgb[i % len(rgb)], va="top",
                    fontsize=9, transform=ax.get_xaxis_transform())
    ax.set(xlabel="step", ylabel="loss", title=title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a log of trit lines only has no loss to name
        ax.legend(loc="best")
    row = 1
    if has_trit:
        for col, get, ylabel, log in ((0, lambda r: r.zero, "zero fraction", False),
                                      (1, lambda r: [p for p in r.flip if p[1] > 0], "flip fraction (log)", True)):
            # flip fraction: the trits that changed since the previous report; 0 has no place on a log axis
            a = fig.add_subplot(grid[row, col], sharex=ax)
            for i, r in enumerate(runs):
                if get(r):
                    a.plot(*zip(*get(r)), color=rgb[i % len(rgb)], lw=2, marker="o", ms=3)
            if log:
                a.set_yscale("log")
            a.set(xlabel="step", ylabel=ylabel, title="ternary weights, mean over matrices")
            a.grid(alpha=0.3)
        row += 1
    if has_hella:
        a = fig.add_subplot(grid[row, :], sharex=ax)
        for i, r in enumerate(runs):
            if r.hella:
                a.plot([s for s, _ in r.hella], [100 * v for _, v in r.hella], color=rgb[i % len(rgb)], lw=2,
                       marker="o", ms=3)
        a.axhline(CHANCE, color="gray", ls=":", lw=1)
        a.set(xlabel="step", ylabel="acc_norm (%)", title="HellaSwag (acc_norm; chance is 25%)")
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

# -----------------------------------------------------------------------------
# stdlib backend: font


# 5 columns x 9 rows per glyph (rows 7-8 are for descenders); two hex digits per row, from the
# top, bit 4 = the left column. Missing rows are blank.
FONT = {
    " ": "", "0": "0e11131519110e", "1": "040c040404040e", "2": "0e11010204081f", "3": "1f02040201110e",
    "4": "02060a121f0202", "5": "1f101e0101110e", "6": "0608101e11110e", "7": "1f010204080808",
    "8": "0e11110e11110e", "9": "0e11110f01020c",
    "A": "0e11111f111111", "B": "1e11111e11111e", "C": "0e11101010110e", "D": "1c12111111121c",
    "E": "1f10101e10101f", "F": "1f10101e101010", "G": "0e11101711110f", "H": "1111111f111111",
    "I": "0e04040404040e", "J": "0702020202120c", "K": "11121418141211", "L": "1010101010101f",
    "M": "111b1515111111", "N": "11111915131111", "O": "0e11111111110e", "P": "1e11111e101010",
    "Q": "0e11111115120d", "R": "1e11111e141211", "S": "0f10100e01011e", "T": "1f040404040404",
    "U": "1111111111110e", "V": "11111111110a04", "W": "1111111515150a",
    "X": "11110a040a1111", "Y": "1111110a040404", "Z": "1f01020408101f",
    "a": "00000e010f110f", "b": "1010161911111e", "c": "00000e1010110e",
    "d": "01010d1311110f", "e": "00000e111f100e", "f": "0609081c080808", "g": "00000f1111110f010e",
    "h": "10101619111111", "i": "04000c0404040e", "j": "02000602020202120c",
    "k": "10101214181412", "l": "0c04040404040e", "m": "00001a15151111", "n": "00001619111111",
    "o": "00000e1111110e", "p": "00001e1111111e1010", "q": "00000f1111110f0101", "r": "00001619101010",
    "s": "00000e100e011e", "t": "08081c08080906", "u": "0000111111130d", "v": "00001111110a04",
    "w": "0000111115150a", "x": "0000110a040a11", "y": "0000111111110f010e", "z": "00001f0204081f",
    ".": "00000000000c0c", ",": "00000000000c0408", "-": "0000001f000000", "+": "0004041f040400",
    ":": "000c0c000c0c00", ";": "000c0c000c0408", "_": "000000000000001f",
    "(": "02040808080402", ")": "08040202020408", "[": "0e08080808080e", "]": "0e02020202020e",
    "/": "00010204081000", "%": "18190204081303", "=": "00001f001f0000", "*": "0004150e150400",
    "?": "0e110102040004", "!": "04040404040004", "'": "0c040800000000", '"': "0a0a0a00000000",
    "<": "02040810080402", ">": "08040201020408", "#": "0a0a1f0a1f0a0a", "|": "04040404040404",
    "^": "040a1100000000", "~": "00000815020000", "@": "0e11171517100f", "&": "0c12140815120d",
}
BOX = "1f11111111111f"  # drawn for a character the font lacks
CAP = 7                  # rows above the baseline: text is centred on these


def glyph_rows(ch):
    h = FONT.get(ch, BOX)
    return [int(h[i:i + 2], 16) for i in range(0, len(h), 2)]

# -----------------------------------------------------------------------------
# stdlib backend: raster, lines, text, PNG


class Canvas:
    """An RGB raster, white, (0, 0) at the top left; a pixel (x, y) covers [x, x+1) x [y, y+1)."""

    def __init__(self, w, h):
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def blend(self, x, y, color, a):
        # out = a*color + (1-a)*what is there
        i = 3 * (y * self.w + x)
        for c in range(3):
            self.px[i + c] = int(self.px[i + c] + (color[c] - self.px[i + c]) * a + 0.5)

    def rect(self, x0, y0, x1, y1, color):
        """fill [x0, x1) x [y0, y1), clipped to the canvas"""
        x0, x1 = max(int(x0), 0), min(int(x1), self.w)
        if x0 >= x1:
            return
        row = bytes(color) * (x1 - x0)
        for y in range(max(int(y0), 0), min(int(y1), self.h)):
            i = 3 * (y * self.w + x0)
            self.px[i:i + len(row)] = row

    def line(self, x0, y0, x1, y1, color, width=1.0, clip=None):
        """anti-aliased: a pixel whose centre is d from the segment gets coverage width/2 + 0.5 - d"""
        r = width / 2
        cx0, cy0, cx1, cy1 = clip or (0, 0, self.w, self.h)
        xa, xb = max(int(min(x0, x1) - r - 1), cx0), min(int(max(x0, x1) + r + 2), cx1)
        ya, yb = max(int(min(y0, y1) - r - 1), cy0), min(int(max(y0, y1) + r + 2), cy1)
        dx, dy = x1 - x0, y1 - y0
        len2 = dx * dx + dy * dy
        for y in range(ya, yb):
            for x in range(xa, xb):
                px, py = x + 0.5, y + 0.5
                # t: where the closest point of the segment is, 0 at (x0, y0), 1 at (x1, y1)
                t = 0.0 if len2 == 0 else min(max(((px - x0) * dx + (py - y0) * dy) / len2, 0.0), 1.0)
                cov = r + 0.5 - math.hypot(px - x0 - t * dx, py - y0 - t * dy)
                if cov > 0:
                    self.blend(x, y, color, min(cov, 1.0))

    def polyline(self, pts, color, width=1.0, clip=None):
        if len(pts) == 1:
            self.line(*pts[0], *pts[0], color, width, clip)
        for (xa, ya), (xb, yb) in zip(pts, pts[1:]):
            self.line(xa, ya, xb, yb, color, width, clip)

    def text(self, x, y, s, color, scale=2, ha="left", va="top", vertical=False):
        """ha: left/center/right, va: top/center/bottom (of the capital letters); vertical reads upwards"""
        w, h = (len(s) * 6 - 1) * scale, CAP * scale
        along = {"left": 0, "center": -w // 2, "right": -w}[ha]  # offset along the text direction
        across = {"top": 0, "center": -h // 2, "bottom": -h}[va]
        for k, ch in enumerate(s):
            for gy, bits in enumerate(glyph_rows(ch)):
                for gx in range(5):
                    if bits >> (4 - gx) & 1:
                        a = along + (k * 6 + gx) * scale  # position along the text
                        b = across + gy * scale           # position across it (downwards in the glyph)
                        if vertical:  # rotated 90 degrees counter-clockwise: along -> up, across -> right
                            self.rect(x + b, y - a - scale, x + b + scale, y - a, color)
                        else:
                            self.rect(x + a, y + b, x + a + scale, y + b + scale, color)

    def save_png(self, path):
        # PNG = signature, IHDR (size, 8-bit RGB), IDAT (zlib of rows, each led by filter type 0), IEND
        def chunk(tag, data):
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
        stride = 3 * self.w
        raw = b"".join(b"\x00" + self.px[y * stride:(y + 1) * stride] for y in range(self.h))
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                    + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))

# -----------------------------------------------------------------------------
# stdlib backend: axes, ticks, legend


def nice_ticks(lo, hi, n=6):
    """about n ticks at multiples of 1, 2 or 5 x 10^k inside [lo, hi]; returns (ticks, decimals)"""
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))
    k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [k * step for k in range(k0, k1 + 1)], max(0, -math.floor(math.log10(step) + 1e-9))


def data_range(values, pad, log=False):
    """(lo, hi) around the values: padded by pad of the span, or whole decades on a log axis"""
    lo, hi = min(values), max(values)
    if log:
        lo, hi = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
        return 10.0 ** lo, 10.0 ** max(hi, lo + 1)
    span = hi - lo if hi > lo else (abs(hi) or 1.0) * 0.1
    return lo - pad * span, hi + pad * span


class Axes:
    """maps data to pixels inside rect = (left, top, right, bottom)"""

    def __init__(self, rect, xlim, ylim, ylog=False):
        self.rect, self.xlim, self.ylim, self.ylog = rect, xlim, ylim, ylog

    def px(self, x, y):
        l, t, r, b = self.rect
        y0, y1, yv = self.ylim + (y,)
        if self.ylog:
            y0, y1, yv = math.log10(y0), math.log10(y1), math.log10(y)
        return l + (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (r - l), b - (yv - y0) / (y1 - y0) * (b - t)


GRID, INK, FRAME = (225, 225, 225), (30, 30, 30), (90, 90, 90)


def axis_ticks(lo, hi, log, length, vertical):
    """(value, label) pairs for an axis of length pixels: decades on a log axis, else as many
    nice ticks as fit with room between the numbers (side by side on x, stacked on y)"""
    if log:
        e0, e1 = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
        return [(10.0 ** e, f"1e{e}") for e in range(e0, e1 + 1)]
    for n in range(max(length // 35, 2), 1, -1):
        vs, dec = nice_ticks(lo, hi, n)
        ticks = [(v, f"{v:.{dec}f}") for v in vs]
        room = 40 if vertical else max(len(s) for _, s in ticks) * 12 + 24  # pixels per tick
        if len(ticks) * room <= length:
            break
    return ticks


def draw_frame(cv, ax, xlabel, ylabel):
    """grid, frame, ticks with numbers (a log axis gets minor ticks too), axis labels"""
    l, t, r, b = ax.rect
    for v, label in axis_ticks(*ax.xlim, False, r - l, False):
        x = min(int(ax.px(v, ax.ylim[0])[0]), r - 1)
        cv.rect(x, t, x + 1, b, GRID)
        cv.rect(x, b, x + 1, b + 6, FRAME)
        cv.text(x, b + 10, label, INK, ha="center")
    yticks = axis_ticks(*ax.ylim, ax.ylog, b - t, True)
    for v, label in yticks:
        y = min(int(ax.px(ax.xlim[0], v)[1]), b - 1)
        cv.rect(l, y, r, y + 1, GRID)
        cv.rect(l - 7, y, l, y + 1, FRAME)
        cv.text(l - 11, y, label, INK, ha="right", va="center")
    if ax.ylog:  # minor ticks at 2..9 x 10^e
        e0, e1 = math.floor(math.log10(ax.ylim[0])), math.ceil(math.log10(ax.ylim[1]))
        for v in (m * 10.0 ** e for e in range(e0, e1) for m in range(2, 10)):
            if ax.ylim[0] <= v <= ax.ylim[1]:
                y = int(ax.px(ax.xlim[0], v)[1])
                cv.rect(l - 4, y, l, y + 1, FRAME)
    cv.rect(l - 1, t - 1, r + 1, t, FRAME)
    cv.rect(l - 1, b, r + 1, b + 1, FRAME)
    cv.rect(l - 1, t - 1, l, b + 1, FRAME)
    cv.rect(r, t - 1, r + 1, b + 1, FRAME)
    cv.text((l + r) // 2, b + 34, xlabel, INK, ha="center")
    wmax = max((len(s) * 6 - 1) * 2 for _, s in yticks)  # the widest number: the label goes beside it
    cv.text(l - 11 - wmax - 24, (t + b) // 2, ylabel, INK, ha="center", va="top", vertical=True)


def draw_legend(cv, ax, entries, occupied):
    """entries: (label, color, style); occupied: points on the drawn curves. Like matplotlib's
    loc="best", the box goes where it covers the fewest of them: a corner, an edge's middle, the centre."""
    l, t, r, b = ax.rect
    w = 16 + 36 + max(len(s) for s, _, _ in entries) * 12
    h = 10 + 22 * len(entries)
    xs = (r - w - 10, l + 10, (l + r - w) // 2)
    ys = (t + 10, b - h - 10, (t + b - h) // 2)
    spots = [(x, y) for y in ys for x in xs]  # top right first: min() keeps the first of equals

    def covered(c):
        return sum(c[0] - 4 <= x <= c[0] + w + 4 and c[1] - 4 <= y <= c[1] + h + 4 for x, y in occupied)
    x0, y0 = min(spots, key=covered)
    cv.rect(x0 - 1, y0 - 1, x0 + w + 1, y0 + h + 1, (160, 160, 160))
    cv.rect(x0, y0, x0 + w, y0 + h, (255, 255, 255))
    for i, (label, color, style) in enumerate(entries):
        y = y0 + 16 + 22 * i
        draw_series(cv, [(x0 + 8, y), (x0 + 40, y)], color, style, None, dots=False)
        if style == "val":
            draw_dot(cv, x0 + 24, y, color, None)
        cv.text(x0 + 50, y, label, INK, va="center")


def points_along(pts, every=4.0):
    """points every few pixels along a path, so that a long straight segment still counts as occupied"""
    out = list(pts[:1])
    for (xa, ya), (xb, yb) in zip(pts, pts[1:]):
        n = max(1, int(math.hypot(xb - xa, yb - ya) / every))
        out.extend((xa + (xb - xa) * k / n, ya + (yb - ya) * k / n) for k in range(1, n + 1))
    return out


def draw_dot(cv, x, y, color, clip):
    cv.line(x, y, x, y, (255, 255, 255), 9.0, clip)  # a white ring keeps neighbouring dots apart
    cv.line(x, y, x, y, color, 6.5, clip)


def draw_series(cv, pts, color, style, clip, dots=True):
    """train: a thin line; val: a thicker line with a dot at each point (if they are 16+ px apart)"""
    if style == "train":
        cv.polyline(pts, color, 1.0, clip)
        return
    cv.polyline(pts, color, 2.5, clip)
    if dots and (len(pts) == 1 or (pts[-1][0] - pts[0][0]) / (len(pts) - 1) >= 16):
        for x, y in pts:
            draw_dot(cv, x, y, color, clip)


def draw_dashed_vline(cv, ax, x, color, dash=7, gap=5):
    """a dashed vertical line across the axes at data x"""
    l, t, r, b = ax.rect
    px = int(ax.px(x, ax.ylim[0])[0]) + 0.5  # a pixel's centre: one crisp column, like the grid lines
    y = t
    while y < b:
        cv.line(px, y, px, min(y + dash, b), color, 1.5, ax.rect)
        y += dash + gap


def render_stdlib(runs, path, ylim, title):
    """draws the picture; returns its panels ({"loss", "zero", "flip", "hellaswag"}: Axes) for tests"""
    W, left, right = 1000, 110, 30
    has_trit = any(r.zero for r in runs)
    has_hella = any(r.hella for r in runs)
    top1, h1 = 50, 380                                  # loss panel
    bottom = top1 + h1
    top2, h2 = bottom + 100, 230                        # trit panels, below the loss panel's numbers
    if has_trit:
        bottom = top2 + h2
    top3, h3 = bottom + 100, 230                        # HellaSwag panel, below the one above it
    if has_hella:
        bottom = top3 + h3
    H = bottom + 60
    cv = Canvas(W, H)
    cv.text(W // 2, 16, title, INK, ha="center")
    panels = {}

    # top: loss, with the legend that names the colours of every row
    steps = [s for r in runs for pts in (r.train, r.val, r.zero, r.flip, r.hella) for s, _ in pts]
    xlim = data_range(steps, 0.02) if max(steps) - min(steps) >= 10 else (min(steps) - 5, max(steps) + 5)
    losses = [v for r in runs for pts in (r.train, r.val) for _, v in pts] or [0.0, 1.0]
    ax = panels["loss"] = Axes((left, top1, W - right, top1 + h1), xlim, ylim or data_range(losses, 0.05))
    draw_frame(cv, ax, "step", "loss")
    occupied = []  # points on the curves, for placing the legend
    for i, r in enumerate(runs):  # learning-rate drops first, under the curves
        for step, ratio in r.drops:
            draw_dashed_vline(cv, ax, step, COLORS[i % len(COLORS)])
            x = ax.px(step, ax.ylim[0])[0]
            label = f"stage 2: lr x{ratio:.2f}"
            cv.text(x + 5, ax.rect[1] + 8 + 18 * i, label, COLORS[i % len(COLORS)])
            occupied.extend((x + 5 + k * 12, ax.rect[1] + 12 + 18 * i) for k in range(len(label)))
    for style in ("train", "val"):  # every train line first, so none hides a val line
        for i, r in enumerate(runs):
            pts = r.train if style == "train" else r.val
            if pts:
                p = [ax.px(s, v) for s, v in pts]
                draw_series(cv, p, COLORS[i % len(COLORS)], style, ax.rect)
                occupied.extend(points_along(p))
    entries = [(f"{r.label} {style}", COLORS[i % len(COLORS)], style) for i, r in enumerate(runs)
               for style, pts in (("train", r.train), ("val", r.val)) if pts]
    if entries:
        draw_legend(cv, ax, entries, occupied)

    # below: zero fraction and flip fraction side by side, the same colours, no legend needed
    if has_trit:
        cv.text(W // 2, top2 - 34, "ternary weights, mean over matrices", INK, ha="center")
        mid = W // 2
        nonzero_flips = lambda r: [p for p in r.flip if p[1] > 0]  # noqa: E731 (0 has no place on a log axis)
        for key, rect, get, ylabel, log in (
                ("zero", (left, top2, mid - 20, top2 + h2), lambda r: r.zero, "zero fraction", False),
                ("flip", (mid + left - 10, top2, W - right, top2 + h2), nonzero_flips, "flip fraction (log)", True)):
            values = [v for r in runs for _, v in get(r)]
            a = panels[key] = Axes(rect, xlim, data_range(values, 0.1, log) if values else (1e-3, 1e-1), ylog=log)
            draw_frame(cv, a, "step", ylabel)
            for i, r in enumerate(runs):
                if get(r):
                    draw_series(cv, [a.px(s, v) for s, v in get(r)], COLORS[i % len(COLORS)], "val", rect)

    # last: HellaSwag acc_norm in %, chance (25%) dotted
    if has_hella:
        cv.text(W // 2, top3 - 34, "HellaSwag (acc_norm; chance is 25%)", INK, ha="center")
        values = [100 * v for r in runs for _, v in r.hella] + [CHANCE]
        a = panels["hellaswag"] = Axes((left, top3, W - right, top3 + h3), xlim, data_range(values, 0.1))
        draw_frame(cv, a, "step", "acc_norm (%)")
        y = a.px(xlim[0], CHANCE)[1]
        for x in range(a.rect[0], a.rect[2], 8):
            cv.rect(x, int(y), x + 3, int(y) + 2, FRAME)
        for i, r in enumerate(runs):
            if r.hella:
                draw_series(cv, [a.px(s, 100 * v) for s, v in r.hella], COLORS[i % len(COLORS)], "val", a.rect)
    cv.save_png(path)
    return panels


CHANCE = 25.0  # HellaSwag's 4 endings: a guess is right a quarter of the time

# -----------------------------------------------------------------------------
# main


def main(argv=None):
    p = argparse.ArgumentParser(description="main.log(s) -> one PNG of train/val loss, lr drops, trit statistics "
                                "and HellaSwag")
    p.add_argument("logs", nargs="+", help="main.log files written by the trainer")
    p.add_argument("-o", "--output", default="loss.png", help="the PNG to write (default loss.png)")
    p.add_argument("--labels", help="comma-separated legend names, one per log")
    p.add_argument("--smooth", type=float, default=0.0, help="EMA beta for the train loss (0 = raw)")
    p.add_argument("--ylim", help="LO,HI of the loss axis")
    p.add_argument("--title", help="figure title")
    p.add_argument("--backend", choices=["auto", "matplotlib", "stdlib"], default="auto")
    args = p.parse_args(argv)

    if args.labels is not None:
        labels = args.labels.split(",")
        if len(labels) != len(args.logs):
            die(f"--labels has {len(labels)} name(s) for {len(args.logs)} log(s)")
    else:  # out_fp/main.log -> out_fp; a log not called main.log goes by its own name
        labels = [os.path.basename(os.path.dirname(os.path.abspath(f))) if os.path.basename(f) == "main.log"
                  else os.path.basename(f) for f in args.logs]
    if not 0.0 <= args.smooth < 1.0:
        die(f"--smooth {args.smooth}: must be in [0, 1), e.g. 0.9")
    ylim = None
    if args.ylim:
        try:
            ylim = tuple(float(v) for v in args.ylim.split(","))
        except ValueError:
            ylim = ()
        if len(ylim) != 2 or not ylim[0] < ylim[1]:
            die(f"--ylim {args.ylim}: expected LO,HI with LO < HI, e.g. 3.5,7")

    runs = [read_log(f, lab) for f, lab in zip(args.logs, labels)]
    for r in runs:
        r.train = ema(r.train, args.smooth)
    title = args.title or "train_gpt2_1bit: " + " vs ".join(labels)
    if args.smooth > 0:
        title += f" (train EMA {args.smooth:g})"

    backend = args.backend
    if backend != "stdlib":
        try:
            import matplotlib  # noqa: F401
            backend = "matplotlib"
        except ImportError:
            if backend == "matplotlib":
                die("--backend matplotlib: matplotlib is not installed (pip install matplotlib)")
            backend = "stdlib"
    (render_matplotlib if backend == "matplotlib" else render_stdlib)(runs, args.output, ylim, title)
    print(f"wrote {args.output} ({backend} backend)")


if __name__ == "__main__":
    main()
