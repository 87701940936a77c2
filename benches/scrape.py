#!/usr/bin/env python3
"""Leader changes and log-fsync latency from the three nodes' Prometheus metrics, over a run.

    benches/scrape.py snap raftsafe|etcd OUT.json URL... [--token T]   # before / after a run
    benches/scrape.py diff raftsafe|etcd BEFORE.json AFTER.json         # one RESULT-style line

The same question asked of both systems through their own metrics:
- leader changes: raftsafe_raft_leader_changes_total / etcd_server_leader_changes_seen_total,
  the largest increase seen by any node (every node sees the same change);
- fsync latency of the log: raftsafe_log_append_fsync_seconds / etcd_disk_wal_fsync_duration_seconds,
  histogram buckets summed over the nodes; a quantile is the upper bound of the bucket it
  falls in (so "p99.9 <= X ms"), as Prometheus' histogram_quantile would bound it.
"""
import json
import re
import sys
import urllib.request

NAMES = {
    "raftsafe": ("raftsafe_raft_leader_changes_total", "raftsafe_log_append_fsync_seconds"),
    "etcd": ("etcd_server_leader_changes_seen_total", "etcd_disk_wal_fsync_duration_seconds"),
}
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def scrape(url, token):
    req = urllib.request.Request(url.rstrip("/") + "/metrics")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    return urllib.request.urlopen(req, timeout=10).read().decode()


def snap(system, out, urls, token):
    changes_name, hist = NAMES[system]
    nodes = []
    for u in urls:
        changes, buckets = 0.0, {}
        for line in scrape(u, token).splitlines():
            m = LINE.match(line)
            if not m:
                continue
            name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
            if name == changes_name:
                changes += value
            elif name == hist + "_bucket":
                le = re.search(r'le="([^"]+)"', labels).group(1)
                buckets[le] = buckets.get(le, 0.0) + value
        nodes.append({"changes": changes, "buckets": buckets})
    json.dump(nodes, open(out, "w"))


def diff(before, after):
    b, a = json.load(open(before)), json.load(open(after))
    changes = max(x["changes"] - y["changes"] for x, y in zip(a, b))
    buckets = {}
    for x, y in zip(a, b):
        for le, v in x["buckets"].items():
            buckets[le] = buckets.get(le, 0.0) + v - y["buckets"].get(le, 0.0)
    bounds = sorted(buckets, key=lambda le: float("inf") if le == "+Inf" else float(le))
    total = buckets.get("+Inf", 0.0)

    def q(p):
        for le in bounds:
            if total and buckets[le] >= p * total:
                return "inf" if le == "+Inf" else f"{float(le) * 1000:g}"
        return "nan"

    print(f"RESULT leader_changes={changes:.0f} fsyncs={total:.0f} fsync_p50_le_ms={q(0.5)} "
          f"fsync_p99_le_ms={q(0.99)} fsync_p999_le_ms={q(0.999)}")


if sys.argv[1] == "snap":
    args = sys.argv[4:]
    token = None
    if "--token" in args:
        i = args.index("--token")
        token = args[i + 1]
        args = args[:i] + args[i + 2:]
    snap(sys.argv[2], sys.argv[3], args, token)
else:
    diff(sys.argv[3], sys.argv[4])
