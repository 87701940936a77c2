#!/usr/bin/env bash
# CPU per request of a three-node raftsafe cluster: the measure the write path was tuned by
# (BENCHMARKS.md, "The write path, profiled"). Throughput on this 2-core machine is bound by
# CPU, and CPU per request is steadier from run to run than req/s.
#
#   benches/cpu-per-write.sh                         # PUT, 1 and 64 connections to the leader
#   CONNS=64 OPS="put get" FOLLOWER=1 benches/cpu-per-write.sh
#   RAFTSAFE_BIN=/tmp/a/raftsafe LABEL=a benches/cpu-per-write.sh; RAFTSAFE_BIN=/tmp/b/raftsafe LABEL=b …
#   STAGES=1 CONNS="1 64" VALUE=4096 benches/cpu-per-write.sh   # and where each PUT's time went
#   SPIKES=1 DURATION=40 benches/cpu-per-write.sh   # one client's slow PUTs, one by one
#
# Per run: starts three nodes on 127.0.0.1:97x0 (benches/raftsafe-cluster.sh, as compare.sh),
# preloads KEYS keys with the workload tool, then for each connection count and operation runs
# wrk with benches/wrk/kv.lua for DURATION seconds against the leader (or, with FOLLOWER=1, a
# follower) and prints req/s, latency, the three nodes' user+system CPU (from /proc/<pid>/stat)
# per request, the leader's share, and each node's RSS at the end. With STAGES=1, also a table
# of the write's stages from the nodes' own histograms over that run (benches/stages.py).
# With SPIKES=1, instead of wrk: one client's PUTs to the leader for DURATION seconds, each
# slow one set beside the nodes' snapshot builds and RocksDB flushes and compactions
# (benches/spikes.py), and the leader's total build time.
# Stops only the PIDs it started.
#
# Environment: RAFTSAFE_BIN (default $CARGO_TARGET_DIR/release/raftsafe), WORKLOAD_BIN (default
# the newest release/deps/workload-*), LABEL, CONNS ("1 64"), OPS ("put"), KEYS (10000),
# VALUE (bytes, 256), DURATION (10), FOLLOWER (unset), STAGES (unset), SPIKES (unset).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${CARGO_TARGET_DIR:-$(dirname "$here")/target}"
bin="${RAFTSAFE_BIN:-$target/release/raftsafe}"
workload="${WORKLOAD_BIN:-$(ls -t "$target"/release/deps/workload-* 2>/dev/null | grep -v '\.d$' | head -1 || true)}"
LABEL="${LABEL:-raftsafe}" CONNS="${CONNS:-1 64}" OPS="${OPS:-put}" KEYS="${KEYS:-10000}" VALUE="${VALUE:-256}" DURATION="${DURATION:-10}"
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk curl)" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "no raftsafe binary at $bin (cargo build --release, or set RAFTSAFE_BIN)" >&2; exit 2; }
[ -x "$workload" ] || { echo "no workload tool: cargo build --release --benches, or set WORKLOAD_BIN" >&2; exit 2; }

WORK="$(mktemp -d /tmp/raftsafe-cpu.XXXXXX)"
pids=()
trap 'for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
. "$here/raftsafe-cluster.sh"
start_raftsafe
leader="$leader_id"
url="$leader_url"
[ -n "${FOLLOWER:-}" ] && url="$follower_url"
RAFTSAFE_TOKEN="$token" "$workload" --addr "$leader_url" --op fill --keys "$KEYS" \
  --clients 64 --value-size "$VALUE" --format json >/dev/null

ticks() { # user+system clock ticks of the given PIDs
  local s=0 p
  for p in "$@"; do set -- $(cut -d' ' -f14,15 "/proc/$p/stat"); s=$((s + $1 + $2)); done
  echo "$s"
}
if [ -n "${SPIKES:-}" ]; then
  echo "leader: node $leader"
  python3 "$here/spikes.py" "$leader_url" "$token" "$DURATION" "$WORK"/raftsafe/node-*.log \
    "$WORK"/raftsafe/node-*/db/LOG
  curl -fsS -H "Authorization: Bearer $token" "$leader_url/metrics" |
    grep -E '^raftsafe_snapshot_build_seconds_(sum|count)' | sed 's/^/leader: /' || true
  exit 0
fi
hz="$(getconf CLK_TCK)"
lpid="${pids[$((leader - 1))]}"
for c in $CONNS; do
  for op in $OPS; do
    [ -n "${STAGES:-}" ] && python3 "$here/stages.py" snap "$WORK/before.json" "$token" $api
    t0="$(ticks "${pids[@]}")"; l0="$(ticks "$lpid")"
    r="$(BENCH_SYSTEM=raftsafe BENCH_OP="$op" BENCH_KEYS="$KEYS" BENCH_VALUE="$VALUE" BENCH_TOKEN="$token" \
      wrk -t"$([ "$c" -lt 2 ] && echo 1 || echo 2)" -c"$c" -d"${DURATION}s" --timeout 10s -s "$here/wrk/kv.lua" "$url" | grep '^RESULT')"
    t1="$(ticks "${pids[@]}")"; l1="$(ticks "$lpid")"
    n="$(echo "$r" | sed 's/.*requests=\([0-9]*\).*/\1/')"
    echo "$LABEL $op c=$c $(echo "$r" | cut -d' ' -f2-6) cpu_us_per_req=$(( (t1 - t0) * 1000000 / hz / n )) leader_us_per_req=$(( (l1 - l0) * 1000000 / hz / n ))"
    if [ -n "${STAGES:-}" ]; then
      python3 "$here/stages.py" snap "$WORK/after.json" "$token" $api
      echo "stages of $LABEL $op c=$c (leader: node $leader)"
      python3 "$here/stages.py" diff "$WORK/before.json" "$WORK/after.json"
    fi
  done
done
echo "$LABEL rss_kb $(for p in "${pids[@]}"; do awk '/VmRSS/{print $2}' "/proc/$p/status"; done | tr '\n' ' ')"
