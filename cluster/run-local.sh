#!/usr/bin/env bash
# Runs a three-node raftsafe cluster on 127.0.0.1 without Docker.
#
#   cluster/run-local.sh start   # build if needed, start nodes 1-3, bootstrap, print addresses
#   cluster/run-local.sh status  # ask node 1 for the cluster status
#   cluster/run-local.sh stop    # stop the nodes this script started (and only those)
#   cluster/run-local.sh wipe    # stop, then delete the local cluster's data
#
# State lives in cluster/local/: one data directory per node, logs, audit logs
# (node-N.audit.log), the shared master key, the root token (cluster/local/root.token) and
# the PIDs this script started. The nodes run
# in dev mode (plain HTTP on loopback); see README "Security model" for TLS.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
state="$here/local"
bin="${RAFTSAFE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/raftsafe}"
peers="1=127.0.0.1:8711/127.0.0.1:8710,2=127.0.0.1:8721/127.0.0.1:8720,3=127.0.0.1:8731/127.0.0.1:8730"

start() {
  if [ ! -x "$bin" ]; then
    (cd "$root" && cargo build --release --bin raftsafe)
  fi
  mkdir -p "$state"
  chmod 700 "$state"
  if [ ! -f "$state/master.key" ]; then
    (umask 077 && "$bin" gen-key > "$state/master.key")
  fi
  if [ ! -f "$state/root.token" ]; then
    (umask 077 && "$bin" gen-token > "$state/root.token")
  fi
  for id in 1 2 3; do
    pidfile="$state/node-$id.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "node $id already running (pid $(cat "$pidfile"))"
      continue
    fi
    RAFTSAFE_MASTER_KEY_FILE="$state/master.key" RAFTSAFE_ROOT_TOKEN_FILE="$state/root.token" "$bin" serve \
      --node-id "$id" \
      --api-addr "127.0.0.1:87${id}0" --raft-addr "127.0.0.1:87${id}1" \
      --data-dir "$state/node-$id" --peers "$peers" \
      --audit-log "$state/node-$id.audit.log" \
      --bootstrap "$([ "$id" = 1 ] && echo true || echo false)" \
      >>"$state/node-$id.log" 2>&1 &
    echo $! > "$pidfile"
    echo "node $id: pid $!, API http://127.0.0.1:87${id}0, log $state/node-$id.log"
  done
  for _ in $(seq 1 100); do
    # Ready once the bootstrap node has created the root token (it follows the keyring).
    if curl -fsS -H "Authorization: Bearer $(cat "$state/root.token")" \
        "http://127.0.0.1:8710/api/v1/cluster" >/dev/null 2>&1; then
      echo "cluster ready. Try:"
      echo "  export T=\$(cat $state/root.token)"
      echo "  curl -s -H \"Authorization: Bearer \$T\" -X PUT http://127.0.0.1:8720/api/v1/secrets/app/db -d '{\"data\":{\"password\":\"s3cret\"}}'"
      echo "  curl -s -H \"Authorization: Bearer \$T\" http://127.0.0.1:8730/api/v1/secrets/app/db"
      return 0
    fi
    sleep 0.2
  done
  echo "cluster not ready after 20 s; see $state/node-*.log" >&2
  return 1
}

stop() {
  for id in 1 2 3; do
    pidfile="$state/node-$id.pid"
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    # Only signal the process if it is still the raftsafe this script started.
    if kill -0 "$pid" 2>/dev/null && grep -q raftsafe "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "node $id stopped"
    fi
    rm -f "$pidfile"
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) curl -fsS -H "Authorization: Bearer $(cat "$state/root.token")" http://127.0.0.1:8710/api/v1/cluster; echo ;;
  wipe) stop; rm -rf "$state"; echo "wiped $state" ;;
  *) echo "usage: $0 start|status|stop|wipe" >&2; exit 2 ;;
esac
