# shellcheck shell=bash
# The caller's variables: this file reads bao, WORK, tls_dir, ca_args and sets pids, api,
# leader_url, follower_url, leader_id, token.
# shellcheck disable=SC2034,SC2154
# Sourced by benches/compare.sh: a three-node OpenBao cluster with integrated storage (Raft)
# on 127.0.0.1:82x0 (API) / 82x1 (cluster port), data under $WORK/openbao, set up as an
# operator would by hand:
#   1. `bao server -config=…` per node: storage "raft" (its own data dir and node_id), one
#      tcp listener on 127.0.0.1 (plain HTTP, or https with tls_dir), api_addr and
#      cluster_addr; nothing else, so every performance setting is OpenBao's default
#      (log level info, no audit device, standby reads on: `disable_standby_reads` false);
#   2. `bao operator init -key-shares=1 -key-threshold=1` on node 1 (Shamir, one share),
#      then unseals node 1 (PUT sys/unseal, what `bao operator unseal` sends);
#   3. nodes 2 and 3: `bao operator raft join <node 1>`, then unseals them the same way;
#   4. waits until autopilot has made all three voters (a joined node starts as a
#      non-voter; a quorum of one would make writes look cheap);
#   5. `bao secrets enable -path=secret -version=2 kv` (KV v2 at secret/, as on raftsafe's
#      /v1/), and waits until a write there succeeds.
# The unseal key and the root token stay in shell variables and are passed on stdin, in
# the environment or in a request header, never written to a log. Every wait is bounded.
# Needs: $bao (the bao binary), $WORK, an array `pids` (each node's PID goes to pids[ID-1]),
# curl and python3. Optional: tls_dir, a directory written by `raftsafe certs` for nodes 1-3
# (ca.pem, node-ID.pem, node-ID.key): the API listener is then https with that certificate.
# The cluster port always speaks TLS with certificates OpenBao makes itself.

# Sets: api (one URL per node, space-separated), leader_url (the active node), follower_url
# (a standby), leader_id, token (the root token).
start_openbao() {
  local dir="$WORK/openbao" scheme=http id
  [ -n "${tls_dir:-}" ] && scheme=https
  rm -rf "$dir" && mkdir -p "$dir"
  api=""
  for id in 1 2 3; do
    openbao_node "$id"
    api="$api $scheme://127.0.0.1:82${id}0"
  done
  leader_id=1
  leader_url="$scheme://127.0.0.1:8210"
  follower_url="$scheme://127.0.0.1:8220"

  # 1. Node 1 answers (sys/health: 501 while not initialized).
  openbao_wait 150 "node 1 did not start" openbao_health "$leader_url" 501
  # 2. Init with one Shamir share; unseal node 1; wait until it is the active node.
  local init key
  init="$(bao_cli "$leader_url" operator init -key-shares=1 -key-threshold=1 -format=json)"
  key="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["unseal_keys_b64"][0])' <<<"$init")"
  token="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])' <<<"$init")"
  openbao_unseal "$leader_url" "$key"
  openbao_wait 150 "node 1 did not become active" openbao_health "$leader_url" 200
  # 3. Join nodes 2 and 3 to node 1's Raft cluster, and unseal them.
  local join=()
  [ -n "${tls_dir:-}" ] && join=(-leader-ca-cert="$(cat "$tls_dir/ca.pem")")
  for id in 2 3; do
    openbao_wait 150 "node $id did not start" openbao_health "$scheme://127.0.0.1:82${id}0" 501
    bao_cli "$scheme://127.0.0.1:82${id}0" operator raft join "${join[@]}" "$leader_url" >/dev/null
    openbao_unseal "$scheme://127.0.0.1:82${id}0" "$key"
  done
  for id in 2 3; do
    openbao_wait 150 "node $id did not become a standby" openbao_health "$scheme://127.0.0.1:82${id}0" 429
  done
  # 4. All three voters (autopilot promotes a joined node after server_stabilization_time,
  # 10 s by default).
  openbao_wait 600 "autopilot did not make all three nodes voters" openbao_voters 3
  # 5. KV v2 at secret/; its first write can fail while the mount is being set up.
  BAO_TOKEN="$token" bao_cli "$leader_url" secrets enable -path=secret -version=2 kv >/dev/null
  openbao_wait 150 "KV v2 at secret/ did not accept a write" openbao_put_ok
  # The active node is still node 1 (nothing has moved it, but check).
  openbao_wait 50 "node 1 is not the active node" openbao_health "$leader_url" 200
}

# Starts OpenBao node ID; its PID goes to pids[ID-1].
openbao_node() {
  local dir="$WORK/openbao" id="$1" scheme=http tls='  tls_disable     = true'
  if [ -n "${tls_dir:-}" ]; then
    scheme=https
    tls="  tls_cert_file   = \"$tls_dir/node-$id.pem\"
  tls_key_file    = \"$tls_dir/node-$id.key\""
  fi
  mkdir -p "$dir/b$id"
  cat >"$dir/b$id.hcl" <<EOF
storage "raft" {
  path    = "$dir/b$id"
  node_id = "b$id"
}
listener "tcp" {
  address         = "127.0.0.1:82${id}0"
  cluster_address = "127.0.0.1:82${id}1"
$tls
}
api_addr     = "$scheme://127.0.0.1:82${id}0"
cluster_addr = "https://127.0.0.1:82${id}1"
EOF
  "$bao" server -config="$dir/b$id.hcl" >>"$dir/b$id.log" 2>&1 &
  pids[id - 1]="$!"; disown "$!"
}

# The bao CLI against URL, with no CLI config or token helper of this machine's user.
bao_cli() { # url args...
  local url="$1"
  shift
  HOME="$WORK/openbao" BAO_ADDR="$url" BAO_CACERT="${tls_dir:+$tls_dir/ca.pem}" "$bao" "$@"
}

# Unseals the node at URL with KEY, sent on curl's stdin (`bao operator unseal` would take it
# on its command line or from a terminal).
openbao_unseal() { # url key
  printf '%s' "$2" | python3 -c 'import json,sys; print(json.dumps({"key": sys.stdin.read()}))' |
    curl -fsS -o /dev/null "${ca_args[@]}" -X PUT --data-binary @- "$1/v1/sys/unseal"
}

# Runs COMMAND until it succeeds, every 0.2 s, at most N times; else says MESSAGE and exits.
openbao_wait() { # n message command...
  local n="$1" msg="$2" i
  shift 2
  for ((i = 0; i < n; i++)); do
    "$@" && return 0
    sleep 0.2
  done
  echo "openbao: $msg; logs in $WORK/openbao" >&2
  exit 1
}

# True if URL's sys/health answers CODE (200 active, 429 standby, 501 not initialized,
# 503 sealed).
openbao_health() { # url code
  [ "$(curl -sS -o /dev/null -w '%{http_code}' "${ca_args[@]}" "$1/v1/sys/health" 2>/dev/null)" = "$2" ]
}

# True if the Raft configuration lists N voters.
openbao_voters() { # n
  local n
  n="$(curl -fsS "${ca_args[@]}" -H "X-Vault-Token: $token" "$leader_url/v1/sys/storage/raft/configuration" 2>/dev/null |
    python3 -c 'import json,sys; print(sum(1 for s in json.load(sys.stdin)["data"]["config"]["servers"] if s["voter"]))' 2>/dev/null)" || return 1
  [ "$n" = "$1" ]
}

openbao_put_ok() {
  curl -fsS -o /dev/null "${ca_args[@]}" -H "X-Vault-Token: $token" -H 'Content-Type: application/json' \
    -X POST -d '{"data":{"v":"ready"}}' "$leader_url/v1/secret/data/bench/ready" 2>/dev/null
}
