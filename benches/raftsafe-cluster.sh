# shellcheck shell=bash
# The caller's variables: this file reads bin, WORK, tls_dir and sets pids, api, leader_url,
# follower_url, leader_id, token.
# shellcheck disable=SC2034,SC2154
# Sourced by benches/compare.sh and benches/cpu-per-write.sh: a three-node raftsafe cluster on
# 127.0.0.1:97x0 (API) / 97x1 (Raft), no audit log, data under $WORK/raftsafe.
# Needs: $bin (the raftsafe binary), $WORK, an array `pids` (each node's PID goes to
# pids[ID-1], so the caller stops only what it started), curl and python3.
# Optional: tls_dir, a directory written by `raftsafe certs` for nodes 1-3 (ca.pem,
# node-ID.pem, node-ID.key): the API is then https and the nodes talk mutual TLS; without
# it, plain HTTP (dev mode).

# Sets: api (one URL per node, space-separated), leader_url, follower_url, leader_id, token.
start_raftsafe() {
  local dir="$WORK/raftsafe" scheme=http tls=()
  if [ -n "${tls_dir:-}" ]; then
    scheme=https tls=(--cacert "$tls_dir/ca.pem")
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  "$bin" gen-key >"$dir/master.key"
  "$bin" gen-token >"$dir/root.token"
  chmod 600 "$dir/master.key" "$dir/root.token"
  token="$(cat "$dir/root.token")"
  api=""
  for id in 1 2 3; do
    raftsafe_node "$id"
    api="$api $scheme://127.0.0.1:97${id}0"
  done
  local leader=""
  for _ in $(seq 1 150); do
    leader="$(curl -fsS "${tls[@]}" -H "Authorization: Bearer $token" "$scheme://127.0.0.1:9710/api/v1/cluster" 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader") or "")' 2>/dev/null || true)"
    [ -n "$leader" ] && [ "$leader" != "None" ] && break
    sleep 0.2
  done
  [ -n "$leader" ] || { echo "raftsafe cluster did not elect a leader; logs in $dir" >&2; exit 1; }
  leader_url="$scheme://127.0.0.1:97${leader}0"
  leader_id="$leader"
  local f=$(( leader % 3 + 1 ))
  follower_url="$scheme://127.0.0.1:97${f}0"
}

# Starts (or restarts) raftsafe node ID; its PID goes to pids[ID-1].
raftsafe_node() {
  local dir="$WORK/raftsafe" id="$1" peers="1=127.0.0.1:9711/127.0.0.1:9710,2=127.0.0.1:9721/127.0.0.1:9720,3=127.0.0.1:9731/127.0.0.1:9730" tls=()
  if [ -n "${tls_dir:-}" ]; then
    tls=(--tls-cert "$tls_dir/node-$id.pem" --tls-key "$tls_dir/node-$id.key" --tls-ca "$tls_dir/ca.pem")
  fi
  RAFTSAFE_MASTER_KEY_FILE="$dir/master.key" RAFTSAFE_ROOT_TOKEN_FILE="$dir/root.token" \
    "$bin" serve --node-id "$id" --api-addr "127.0.0.1:97${id}0" --raft-addr "127.0.0.1:97${id}1" \
    --data-dir "$dir/node-$id" --peers "$peers" "${tls[@]}" \
    --bootstrap "$([ "$id" = 1 ] && echo true || echo false)" >>"$dir/node-$id.log" 2>&1 &
  pids[id - 1]="$!"; disown "$!"
}
