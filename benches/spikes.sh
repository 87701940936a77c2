#!/usr/bin/env bash
# The single-client write tail, request by request (benches/spikes.py): a three-node raftsafe
# cluster on 127.0.0.1:97x0 (benches/raftsafe-cluster.sh), KEYS keys preloaded with the
# workload tool, then one client's PUTs to the leader for DURATION seconds, each slow one
# set beside the snapshot builds in the node logs and the flushes and compactions in each
# node's RocksDB LOG. Stops only the PIDs it started.
#
#   benches/spikes.sh
#   RAFTSAFE_BIN=/tmp/a/raftsafe DURATION=60 benches/spikes.sh
#
# Environment: RAFTSAFE_BIN (default $CARGO_TARGET_DIR/release/raftsafe), WORKLOAD_BIN
# (default the newest release/deps/workload-*), KEYS (10000), DURATION (40).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${CARGO_TARGET_DIR:-$(dirname "$here")/target}"
bin="${RAFTSAFE_BIN:-$target/release/raftsafe}"
# shellcheck disable=SC2010 # build artifacts: plain names; the newest one wins
workload="${WORKLOAD_BIN:-$(ls -t "$target"/release/deps/workload-* 2>/dev/null | grep -v '\.d$' | head -1 || true)}"
KEYS="${KEYS:-10000}" DURATION="${DURATION:-40}"
[ -x "$bin" ] || { echo "no raftsafe binary at $bin (cargo build --release, or set RAFTSAFE_BIN)" >&2; exit 2; }
[ -x "$workload" ] || { echo "no workload tool: cargo build --release --benches, or set WORKLOAD_BIN" >&2; exit 2; }
WORK="$(mktemp -d /tmp/raftsafe-spikes.XXXXXX)"
pids=()
trap 'for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
# shellcheck source=benches/raftsafe-cluster.sh
. "$here/raftsafe-cluster.sh"
start_raftsafe
RAFTSAFE_TOKEN="$token" "$workload" --addr "$leader_url" --op fill --keys "$KEYS" \
  --clients 64 --value-size 256 --format json >/dev/null
echo "leader: node $leader_id"
python3 "$here/spikes.py" "$leader_url" "$token" "$DURATION" "$WORK"/raftsafe/node-*.log \
  "$WORK"/raftsafe/node-*/db/LOG
curl -fsS -H "Authorization: Bearer $token" "$leader_url/metrics" |
  grep -E '^raftsafe_snapshot_build_seconds_(sum|count)' | sed 's/^/leader: /' || true
