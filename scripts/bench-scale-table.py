#!/usr/bin/env python3
"""bench-scale-table.py RESULTS.tsv [TMO] - markdown table of what scripts/bench-scale.sh measured:
the median of each config (every rep in brackets), then bucketfs's value divided by the raw
walk's and by each peer's (below 1: bucketfs took less time or memory), and where the commands
were timed over the same names in tmpfs (config local) by the raw walk plus that: the least any mount
could take. A step that did not
finish is "timeout"; a ratio to it is "<" bucketfs's value over TMO (default 300 s).
TSV columns: config#rep, workload, metric, value, load1."""
import collections
import statistics
import sys

path = sys.argv[1]
tmo = float(sys.argv[2]) if len(sys.argv) > 2 else 300.0
cols = ["raw", "local", "bfs", "bfs-listing", "base", "s3fs", "rcoff"]
names = {"raw": "raw walk", "local": "tmpfs dir", "bfs": "bucketfs", "base": "base build",
         "bfs-listing": "bucketfs --stat-from-listing",
         "s3fs": "s3fs 1.90", "rcoff": "rclone 1.60 cache off"}
vals = collections.defaultdict(list)  # (workload, metric, config) -> [value]
rows, loads = [], []
for line in open(path):
    p = line.rstrip("\n").split("\t")
    if len(p) < 4:
        continue
    cfg, _, _ = p[0].partition("#")
    cfg = "bfs" if cfg == "bfs-default" else cfg  # S's default mode is bucketfs's column
    if (p[1], p[2]) not in rows:
        rows.append((p[1], p[2]))
    vals[(p[1], p[2], cfg)].append(p[3])
    if len(p) > 4:
        loads.append(float(p[4]))


def num(v):
    try:
        return float(v)
    except ValueError:
        return None


def fmt(x):
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def fmt2(x):  # a ratio: three significant digits, no exponent
    return f"{x:.3g}" if 0.001 <= abs(x) < 100 else (f"{x:.0f}" if x >= 100 else f"{x:.1e}")


def median(vs):  # None if any rep did not give a number
    f = [num(v) for v in vs]
    return None if not f or None in f else statistics.median(f)


def cell(vs):
    if not vs:
        return "-"
    m = median(vs)
    shown = "/".join(fmt(num(v)) if num(v) is not None else v for v in vs)
    if m is None:
        return shown
    return f"**{fmt(m)}** ({shown})" if len(vs) > 1 else fmt(m)


def ratio(b, other, metric, bound=None):
    if not b or not other:
        return "-"
    mb, mo = median(b), median(other)
    if mb is None:
        return "-"
    if mo is None:  # the other did not finish (a time metric): it took more than TMO
        done = all(v == "timeout" for v in other) and metric in ("s", "s_per_1000")
        return "<" + fmt2(mb / bound) if done else "-"
    return fmt2(mb / mo) if mo else "-"


ratio_cols = ["raw", "base", "s3fs", "rcoff"]
floor = any(c == "local" for (_, _, c) in vals)
print("| workload | metric | " + " | ".join(names[c] for c in cols) + " | "
      + " | ".join(f"bucketfs ÷ {names[c].split()[0]}" for c in ratio_cols)
      + (" | bucketfs ÷ (raw + local)" if floor else "") + " |")
print("|---|---|" + "---|" * (len(cols) + len(ratio_cols) + floor))
for w, m in rows:
    cells = [cell(vals.get((w, m, c), [])) for c in cols]
    rs = []
    for c in ratio_cols:
        # what a step that timed out took at least: TMO, or per 1,000 files of the N it names
        bound = tmo * 1000 / int(w.rsplit("_", 1)[1]) if m == "s_per_1000" else tmo
        r = ratio(vals.get((w, m, "bfs")), vals.get((w, m, c)), m, bound)
        lst = vals.get((w, m, "bfs-listing"))
        if lst and r != "-":
            r += " / " + ratio(lst, vals.get((w, m, c)), m, bound)  # default / --stat-from-listing
        rs.append(r)
    if floor:  # the raw walk and the command's own time, medians added
        mr, ml = (median(vals.get((w, m, c), [])) for c in ("raw", "local"))
        mb = median(vals.get((w, m, "bfs"), []))
        rs.append(fmt2(mb / (mr + ml)) if None not in (mr, ml, mb) else "-")
    print(f"| {w} | {m} | " + " | ".join(cells) + " | " + " | ".join(rs) + " |")
if loads:
    print(f"\nload1 at the records: median {statistics.median(loads):.2f}, "
          f"min {min(loads):.2f}, max {max(loads):.2f}")
