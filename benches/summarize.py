#!/usr/bin/env python3
"""Summarizes benches/compare.sh's results.tsv as a Markdown table.

    benches/summarize.py results.tsv

Per case: each system's median and min-max over the repeats, and the raftsafe/etcd ratio
computed per repeat (the two systems ran back to back within a repeat), as median and
min-max. For throughput a ratio above 1 favours raftsafe; for latency and memory, below 1.
"""
import csv
import statistics
import sys
from collections import defaultdict

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = defaultdict(dict)  # (case, metric) -> system -> {repeat: value}
cases = []
for row in rows:
    if row["case"] not in cases:
        cases.append(row["case"])
    metrics = ["rss_mb", "disk_mb"] if row["case"] == "rss" else ["rps", "p50_ms", "p99_ms", "p999_ms"]
    for m in metrics:
        by[(row["case"], m)].setdefault(row["system"], {})[row["repeat"]] = float(row[m])


def span(values, fmt):
    values = sorted(values)
    return f"{fmt(statistics.median(values))} ({fmt(values[0])}–{fmt(values[-1])})"


def num(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"


print("| case | metric | raftsafe median (min–max) | etcd median (min–max) | raftsafe/etcd median (min–max) |")
print("| --- | --- | --- | --- | --- |")
for case in cases:
    for m in (["rss_mb", "disk_mb"] if case == "rss" else ["rps", "p50_ms", "p99_ms", "p999_ms"]):
        systems = by[(case, m)]
        cells = []
        for s in ("raftsafe", "etcd"):
            cells.append(span(systems[s].values(), num) if s in systems else "–")
        ratio = "–"
        if "raftsafe" in systems and "etcd" in systems:
            pairs = [systems["raftsafe"][r] / systems["etcd"][r]
                     for r in systems["raftsafe"] if r in systems["etcd"] and systems["etcd"][r] > 0]
            if pairs:
                ratio = span(pairs, lambda v: f"{v:.2f}×")
        print(f"| {case} | {m} | {cells[0]} | {cells[1]} | {ratio} |")
n = len({r["repeat"] for r in rows})
print(f"\n{n} repeat(s); load average at the start of each case: "
      f"{min(float(r['load1']) for r in rows):.2f}–{max(float(r['load1']) for r in rows):.2f}.")
