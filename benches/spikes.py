#!/usr/bin/env python3
"""The single-client write tail, request by request: which slow PUTs fell during a snapshot.

    benches/spikes.py LEADER_URL TOKEN SECONDS LOG...
    SPIKES=1 DURATION=40 benches/cpu-per-write.sh   # a cluster of its own, then this

One client, one keep-alive connection, PUTs of 256 bytes to bench/k<i % 10000> through the
leader for SECONDS, each request's start (wall clock) and latency kept. Then the "built
snapshot" lines of the node logs (raftsafe's own log format: RFC 3339 time first) give when
each node finished a build; a slow request (over 3× the median, and over 3 ms) counts as
"during a snapshot" if a build ended from 20 ms before it started to 100 ms after (a build
of 10k secrets takes 40–80 ms here; a wider window counts requests near a build by chance). A LOG argument whose name is `LOG` is a node's RocksDB
info log: its flushes and compactions (EVENT_LOG_v1 start and finish, paired by job) are
the second suspect, counted when one ran within 20 ms of the request. Prints the
percentiles, the counts per cause, and every slow request with the nearest build's end. The garbage collector is off, so that the client's
own pauses are not counted. Standard library only; plain HTTP (the benches' clusters).
"""
import datetime
import gc
import http.client
import json
import re
import sys
import time
import urllib.parse

gc.disable()
url, token, seconds, logs = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
u = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
body = json.dumps({"data": {"v": "x" * 256}})
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
requests = []  # (start, unix seconds; latency, ms)
errors = 0
until = time.time() + seconds
while time.time() < until:
    start, t0 = time.time(), time.perf_counter()
    conn.request("PUT", f"/api/v1/secrets/bench/k{len(requests) % 10000}", body, headers)
    r = conn.getresponse()
    r.read()
    requests.append((start, (time.perf_counter() - t0) * 1000))
    errors += r.status != 200

ms = sorted(d for _, d in requests)
q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]
print(f"requests={len(ms)} errors={errors} p50={q(.5):.3f} p90={q(.9):.3f} p99={q(.99):.3f} "
      f"p999={q(.999):.3f} max={ms[-1]:.3f} (ms)")

builds = []  # (end, unix seconds; node)
jobs = {}  # (node, job) -> [kind, start, end] of RocksDB's flushes and compactions
for path in logs:
    node = (re.search(r"node-(\d+)", path) or re.search(r"(.*)", path)).group(1)
    for line in open(path, errors="replace"):
        if path.endswith("LOG"):
            if "EVENT_LOG_v1" not in line:
                continue
            event = json.loads(line.split("EVENT_LOG_v1", 1)[1])
            kind, _, edge = event.get("event", "").rpartition("_")
            if kind in ("flush", "compaction") and edge in ("started", "finished"):
                job = jobs.setdefault((node, event["job"]), [kind, None, None])
                job[1 if edge == "started" else 2] = event["time_micros"] / 1e6
        elif "built snapshot" in line:
            at = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
            builds.append((at.timestamp(), node))
builds.sort()
background = [(k, a, b) for k, a, b in jobs.values() if a is not None and b is not None]
print(f"snapshot builds: {len(builds)} (all nodes); RocksDB flushes: "
      f"{sum(k == 'flush' for k, _, _ in background)}, compactions: "
      f"{sum(k == 'compaction' for k, _, _ in background)}")

threshold = max(3 * q(0.5), 3.0)
slow = [(t, d) for t, d in requests if d > threshold]
rows, causes = [], {}
for t, d in slow:
    end = min(builds, key=lambda b: abs(b[0] - t), default=None)
    delta = None if end is None else (end[0] - t) * 1000
    if delta is not None and -20 <= delta <= 100:
        cause = "snapshot build"
    else:
        ran = sorted({k for k, a, b in background if a - 0.02 <= t + d / 1000 and t <= b + 0.02})
        cause = " + ".join(f"RocksDB {k}" for k in ran) or "other"
    causes[cause] = causes.get(cause, 0) + 1
    rows.append((t, d, delta, end[1] if end else "-", cause))
print(f"slow (> {threshold:.2f} ms): {len(slow)}; "
      + "; ".join(f"{c}: {n}" for c, n in sorted(causes.items(), key=lambda x: -x[1])))
for t, d, delta, node, cause in rows:
    where = "-" if delta is None else f"{delta:+.0f} ms (node {node})"
    print(f"  start={t:.3f} latency={d:.2f} ms  nearest build end: {where}  {cause}")
