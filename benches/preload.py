#!/usr/bin/env python3
"""Writes keys bench/k1..bench/kN once, in order, over a few keep-alive connections.

    benches/preload.py raftsafe|etcd|vault URL KEYS VALUE_BYTES [TOKEN]

vault: Vault's KV v2 API at secret/ (POST /v1/secret/data/bench/kN, token in X-Vault-Token),
for OpenBao and raftsafe's /v1/ dialect.

benches/compare.sh runs it before each measurement so that GETs find their keys and the RSS
reading reflects KEYS keys. Standard library only. Exits non-zero on any failed write.
"""
import base64
import http.client
import json
import sys
import threading
import urllib.parse

system, url, keys, value_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
token = sys.argv[5] if len(sys.argv) > 5 else ""
target = urllib.parse.urlparse(url)
value = "x" * value_bytes
WORKERS = 16
failures = []


def worker(first):
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    for i in range(first, keys + 1, WORKERS):
        key = f"bench/k{i}"
        if system == "etcd":
            body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                               "value": base64.b64encode(value.encode()).decode()})
            conn.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
        elif system == "vault":
            body = json.dumps({"data": {"v": value}})
            conn.request("POST", f"/v1/secret/data/{key}", body,
                         {"Content-Type": "application/json", "X-Vault-Token": token})
        else:
            body = json.dumps({"data": {"v": value}})
            conn.request("PUT", f"/api/v1/secrets/{key}", body,
                         {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            failures.append((key, resp.status))
            return


threads = [threading.Thread(target=worker, args=(w + 1,)) for w in range(WORKERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failures:
    sys.exit(f"preload failed: {failures[:5]}")
