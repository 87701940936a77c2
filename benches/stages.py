#!/usr/bin/env python3
"""Where a write's time goes: the stage histograms of three raftsafe nodes, over a run.

    benches/stages.py snap OUT.json TOKEN URL...         # before / after a run
    benches/stages.py diff BEFORE.json AFTER.json         # one table, a row per stage and node

A PUT's latency, as the leader's and the followers' own histograms take it apart
(src/metrics.rs, "The stages of a write"):

    http      the whole request on the node that answered it (HTTP in to HTTP out)
    queue     waiting in the leader's group-commit queue for a log entry
    commit    the entry, from proposed to applied (append, replicate, commit, apply)
      fsync   the log append with its fsync, on each node
      rpc     the leader's append RPC to each follower, round trip
      serve   a follower taking in that RPC (decode, append with fsync)
      apply   applying a batch of entries to the state machine, on each node

Means are exact (sum / count). Quantiles are the upper bound of the bucket they fall in, as
Prometheus' histogram_quantile would bound them, so "p99 <= 25 ms" reads as "between 10 and
25 ms". The share above 50 ms counts the observations in buckets above 50 ms.
"""
import json
import re
import sys
import urllib.request

STAGES = [
    ("http", "raftsafe_http_request_duration_seconds", {"method": "PUT"}),
    ("queue", "raftsafe_write_queue_seconds", {}),
    ("commit", "raftsafe_write_commit_seconds", {}),
    ("fsync", "raftsafe_log_append_fsync_seconds", {}),
    ("rpc", "raftsafe_raft_append_rpc_seconds", {}),
    ("serve", "raftsafe_raft_append_serve_seconds", {}),
    ("apply", "raftsafe_apply_seconds", {}),
]
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrape(url, token):
    req = urllib.request.Request(url.rstrip("/") + "/metrics")
    req.add_header("Authorization", f"Bearer {token}")
    return urllib.request.urlopen(req, timeout=10).read().decode()


def parse(text):
    """{stage: {"sum": s, "count": n, "buckets": {le: cumulative}}} summed over label sets
    that match the stage's filter."""
    out = {stage: {"sum": 0.0, "count": 0.0, "buckets": {}} for stage, _, _ in STAGES}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))
        for stage, base, want in STAGES:
            if not name.startswith(base) or any(labels.get(k) != v for k, v in want.items()):
                continue
            rest = name[len(base):]
            h = out[stage]
            if rest == "_sum":
                h["sum"] += value
            elif rest == "_count":
                h["count"] += value
            elif rest == "_bucket":
                le = labels["le"]
                h["buckets"][le] = h["buckets"].get(le, 0.0) + value
    return out


def quantile(buckets, total, q):
    bounds = sorted(buckets, key=lambda le: float("inf") if le == "+Inf" else float(le))
    for le in bounds:
        if buckets[le] >= q * total:
            return le
    return "+Inf"


def share_above(buckets, total, seconds):
    below = max((v for le, v in buckets.items() if le != "+Inf" and float(le) <= seconds), default=0.0)
    return (total - below) / total if total else 0.0


def main():
    if sys.argv[1] == "snap":
        out, token, urls = sys.argv[2], sys.argv[3], sys.argv[4:]
        json.dump([parse(scrape(u, token)) for u in urls], open(out, "w"))
        return
    before, after = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
    print("| stage | node | count | mean ms | p50 <= ms | p99 <= ms | p99.9 <= ms | > 50 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for stage, _, _ in STAGES:
        for node, (b, a) in enumerate(zip(before, after), start=1):
            hb, ha = b[stage], a[stage]
            n = ha["count"] - hb["count"]
            if n <= 0:
                continue
            buckets = {le: v - hb["buckets"].get(le, 0.0) for le, v in ha["buckets"].items()}
            mean = (ha["sum"] - hb["sum"]) / n * 1000
            ms = lambda le: le if le == "+Inf" else f"{float(le) * 1000:g}"
            print(
                f"| {stage} | {node} | {n:.0f} | {mean:.3f} | {ms(quantile(buckets, n, 0.5))} "
                f"| {ms(quantile(buckets, n, 0.99))} | {ms(quantile(buckets, n, 0.999))} "
                f"| {share_above(buckets, n, 0.05) * 100:.2f}% |"
            )


if __name__ == "__main__":
    main()
