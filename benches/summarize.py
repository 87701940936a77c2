#!/usr/bin/env python3
"""Summarizes benches/compare.sh's results as Markdown tables.

    benches/summarize.py results.tsv
    benches/summarize.py --per-repeat results.tsv
    benches/summarize.py --stale stale.tsv

results.tsv, per case: each system's median and min-max over the repeats, and each other
system's ratio to etcd computed per repeat (the systems ran back to back within a repeat),
as median and min-max. For throughput a ratio above 1 favours that system over etcd; for
latency and memory, below 1. Systems appear in the order etcd, openbao, raftsafe,
raftsafe-vault (then any other, in order of appearance); without etcd in the run there are
no ratios.

--per-repeat: the same cells without the medians, one row per repeat (rps, p50, p99, RSS and
disk), so a reader can see each repeat's ratios rather than their spread.

stale.tsv (the `stale` case): per system and variant, the share of follower reads right after
an acknowledged write that returned an older value or a 404, per repeat.
"""
import csv
import statistics
import sys
from collections import defaultdict

ORDER = ["etcd", "openbao", "raftsafe", "raftsafe-vault"]
BASE = "etcd"


def span(values, fmt):
    values = sorted(values)
    return f"{fmt(statistics.median(values))} ({fmt(values[0])}–{fmt(values[-1])})"


def num(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"


def ordered(systems):
    return sorted(systems, key=lambda s: (ORDER.index(s) if s in ORDER else len(ORDER), s))


def results(path):
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    if not rows:
        print("(no throughput or memory cases in this run)")
        return
    by = defaultdict(dict)  # (case, metric) -> system -> {repeat: value}
    cases, seen = [], []
    for row in rows:
        if row["case"] not in cases:
            cases.append(row["case"])
        if row["system"] not in seen:
            seen.append(row["system"])
        metrics = ["rss_mb", "disk_mb"] if row["case"] == "rss" else ["rps", "p50_ms", "p99_ms", "p999_ms"]
        for m in metrics:
            by[(row["case"], m)].setdefault(row["system"], {})[row["repeat"]] = float(row[m])
    systems = ordered(seen)
    others = [s for s in systems if s != BASE] if BASE in systems else []

    head = ["case", "metric"] + [f"{s} median (min–max)" for s in systems] + [f"{s}/{BASE} median (min–max)" for s in others]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for case in cases:
        for m in (["rss_mb", "disk_mb"] if case == "rss" else ["rps", "p50_ms", "p99_ms", "p999_ms"]):
            got = by[(case, m)]
            cells = [span(got[s].values(), num) if s in got else "–" for s in systems]
            for s in others:
                ratio = "–"
                if s in got and BASE in got:
                    pairs = [got[s][r] / got[BASE][r] for r in got[s] if r in got[BASE] and got[BASE][r] > 0]
                    if pairs:
                        ratio = span(pairs, lambda v: f"{v:.2f}×")
                cells.append(ratio)
            print(f"| {case} | {m} | " + " | ".join(cells) + " |")
    n = len({r["repeat"] for r in rows})
    print(f"\n{n} repeat(s); load average at the start of each case: "
          f"{min(float(r['load1']) for r in rows):.2f}–{max(float(r['load1']) for r in rows):.2f}.")


def per_repeat(path):
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    if not rows:
        return
    val = {}  # (case, metric, repeat, system) -> value
    cases, seen, repeats = [], [], []
    for row in rows:
        for lst, v in ((cases, row["case"]), (seen, row["system"]), (repeats, row["repeat"])):
            if v not in lst:
                lst.append(v)
        for m in ("rps", "p50_ms", "p99_ms", "rss_mb", "disk_mb"):
            val[(row["case"], m, row["repeat"], row["system"])] = float(row[m])
    systems = ordered(seen)
    others = [s for s in systems if s != BASE] if BASE in systems else []
    print("\nPer repeat:\n")
    head = ["case", "metric", "repeat"] + systems + [f"{s}/{BASE}" for s in others]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for case in cases:
        for m in (["rss_mb", "disk_mb"] if case == "rss" else ["rps", "p50_ms", "p99_ms"]):
            for r in repeats:
                cells = [num(val[(case, m, r, s)]) if (case, m, r, s) in val else "–" for s in systems]
                base = val.get((case, m, r, BASE))
                for s in others:
                    v = val.get((case, m, r, s))
                    cells.append(f"{v / base:.2f}×" if v is not None and base else "–")
                print(f"| {case} | {m} | {r} | " + " | ".join(cells) + " |")


def stale(path):
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    if not rows:
        return
    print("\nFollower reads right after an acknowledged write (the `stale` case), per repeat:\n")
    print("| system | variant | repeat | rounds | fresh | older value | 404 | errors | stale share | catch-up p50 / max (ms) |")
    print("|" + " --- |" * 10)
    rank = {s: i for i, s in enumerate(ordered({r["system"] for r in rows}))}
    for row in sorted(rows, key=lambda r: (rank[r["system"]], r["variant"] != "plain", r["variant"], int(r["repeat"]))):
        print(f"| {row['system']} | {row['variant']} | {row['repeat']} | {row['rounds']} | {row['fresh']} | "
              f"{row['older']} | {row['missing']} | {row['errors']} | {float(row['share']) * 100:.1f}% | "
              f"{float(row['lag_p50_ms']):.2f} / {float(row['lag_max_ms']):.2f} |")


if sys.argv[1] == "--stale":
    stale(sys.argv[2])
elif sys.argv[1] == "--per-repeat":
    per_repeat(sys.argv[2])
else:
    results(sys.argv[1])
