#!/usr/bin/env python3
"""How often a follower's read misses a write the leader has just acknowledged.

    benches/stale.py raftsafe|etcd|vault LEADER_URL FOLLOWER_URL ROUNDS [TOKEN] [--index-forward]

One client, one keep-alive connection to each node. Each round writes a new value to
bench/stale/k<round % 50> through the leader and, as soon as the leader has answered 200,
reads the same key through the follower (a raftsafe follower, an etcd member that is not
the leader, an OpenBao standby). The answer is one of:
  fresh   the value just written;
  older   an earlier value of the key (the follower had not applied the write yet);
  missing 404, or no key (the first 50 rounds create their keys, so a lagging follower
          has nothing to return);
  error   anything else (counted, never retried).
For the first 50 older/missing answers the follower is polled again (every 1 ms, at most
2 s) until it returns the value; the time from the leader's acknowledgement until then is
that round's lag (a sample, so that a lagging follower does not make the run 50× longer).

--index-forward (vault only): the read carries OpenBao's consistency headers, the
X-Vault-Index the write returned and `X-Vault-Inconsistent: forward-active-node`, so a
standby that has not reached that index forwards the read to the active node. raftsafe
ignores both headers.

Prints one line that benches/compare.sh parses:
  STALE rounds=<n> fresh=<n> older=<n> missing=<n> errors=<n> share=<stale/(rounds-errors)>
        lag_p50_ms=<n> lag_max_ms=<n>   (over the lag sample; 0 when nothing was stale)
Standard library only. Dialects as benches/wrk/kv.lua's.
"""
import base64
import http.client
import json
import os
import sys
import time
import urllib.parse

args = [a for a in sys.argv[1:] if not a.startswith("--")]
index_forward = "--index-forward" in sys.argv[1:]
system, leader, follower, rounds = args[0], args[1], args[2], int(args[3])
token = args[4] if len(args) > 4 else ""
if index_forward and system != "vault":
    sys.exit("--index-forward is for the vault dialect only")


def connect(url):
    u = urllib.parse.urlparse(url)
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    return cls(u.hostname, u.port, timeout=10)


def b64(s):
    return base64.b64encode(s.encode()).decode()


def write(conn, key, value):
    """Returns (status, X-Vault-Index of the answer or None)."""
    if system == "etcd":
        conn.request("POST", "/v3/kv/put", json.dumps({"key": b64(key), "value": b64(value)}),
                     {"Content-Type": "application/json"})
    elif system == "vault":
        conn.request("POST", f"/v1/secret/data/{key}", json.dumps({"data": {"v": value}}),
                     {"Content-Type": "application/json", "X-Vault-Token": token})
    else:
        conn.request("PUT", f"/api/v1/secrets/{key}", json.dumps({"data": {"v": value}}),
                     {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    resp.read()
    return resp.status, resp.getheader("X-Vault-Index")


def read(conn, key, index):
    """Returns the value the node answers, None for not found, or raises on another answer."""
    if system == "etcd":
        conn.request("POST", "/v3/kv/range", json.dumps({"key": b64(key)}),
                     {"Content-Type": "application/json"})
    elif system == "vault":
        headers = {"X-Vault-Token": token}
        if index_forward and index:
            headers.update({"X-Vault-Index": index, "X-Vault-Inconsistent": "forward-active-node"})
        conn.request("GET", f"/v1/secret/data/{key}", headers=headers)
    else:
        conn.request("GET", f"/api/v1/secrets/{key}", headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status == 404:
        return None
    if resp.status != 200:
        raise RuntimeError(f"read answered {resp.status}: {body[:200]!r}")
    doc = json.loads(body)
    if system == "etcd":
        kvs = doc.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None
    if system == "vault":
        return ((doc.get("data") or {}).get("data") or {}).get("v")
    return (doc.get("data") or {}).get("v")


lc, fc = connect(leader), connect(follower)
run = f"{os.getpid()}-{int(time.time())}"
counts = {"fresh": 0, "older": 0, "missing": 0, "errors": 0}
lags = []
LAG_SAMPLES = 50
for i in range(rounds):
    key, value = f"bench/stale/k{i % 50}", f"{run}-{i}"
    try:
        status, index = write(lc, key, value)
        if status != 200:
            raise RuntimeError(f"write answered {status}")
        acked = time.monotonic()
        got = read(fc, key, index)
    except (OSError, RuntimeError, ValueError, http.client.HTTPException) as e:
        counts["errors"] += 1
        if counts["errors"] <= 3:
            print(f"round {i}: {e}", file=sys.stderr)
        lc.close(), fc.close()
        lc, fc = connect(leader), connect(follower)
        continue
    if got == value:
        counts["fresh"] += 1
        continue
    counts["missing" if got is None else "older"] += 1
    if len(lags) >= LAG_SAMPLES:
        continue
    # How long until the follower has it (bounded: 2 s).
    lag = None
    while time.monotonic() - acked < 2:
        time.sleep(0.001)
        try:
            if read(fc, key, index) == value:
                lag = time.monotonic() - acked
                break
        except (OSError, RuntimeError, ValueError, http.client.HTTPException):
            fc.close()
            fc = connect(follower)
    lags.append(lag if lag is not None else 2.0)

answered = rounds - counts["errors"]
stale = counts["older"] + counts["missing"]
lags.sort()
print("STALE rounds=%d fresh=%d older=%d missing=%d errors=%d share=%.4f lag_p50_ms=%.2f lag_max_ms=%.2f" % (
    rounds, counts["fresh"], counts["older"], counts["missing"], counts["errors"],
    stale / answered if answered else 0, lags[len(lags) // 2] * 1000 if lags else 0,
    lags[-1] * 1000 if lags else 0))
