#!/usr/bin/env bash
# Creates the key material of the Docker cluster in cluster/secrets/ (gitignored), creating
# only what is missing, so it is safe to run again:
#
#   cluster/secrets/            0700, yours: everything below, for you and your clients
#     ca.pem ca.key             the cluster CA (`raftsafe certs`); ca.key stays here only
#     node-N.pem node-N.key     TLS cert/key of node N (server and client auth), N = 1..3
#     master.key                base64 32-byte master key, the same for every node
#     root.token                the root token node 1 creates when it bootstraps
#     node-N/                   0750, group = the container's group (see below): what node N
#       ca.pem node.pem node.key master.key [root.token: node 1 only]   (0640)
#                               sees, mounted read-only at /secrets in its container
#
# Permissions: the containers run as uid/gid 65532, not as you. Each node-N/ directory and
# its files are group-readable (0750/0640) and belong to a group the container user is put
# in with `group_add` (compose.sh passes it as RAFTSAFE_SECRETS_GID):
#   - run as root (CI): the group is 65532 itself, the container's own gid;
#   - run as a user: the group is your primary group, which the container joins.
# Nothing is world-readable, you keep reading your own files (root.token, ca.pem), no sudo
# is needed, and the CA key and the other nodes' keys never enter a container.
#
# Regenerating master.key or root.token would orphan existing data (sealed with the old
# key; root token created at first bootstrap), so the script refuses while the cluster's
# data volumes exist: restore the files, or run `cluster/down.sh --wipe` first.
#
# Uses $RAFTSAFE_BIN or $CARGO_TARGET_DIR/release/raftsafe (`certs`, `gen-key`, `gen-token`);
# without a host binary it runs the same subcommands in the raftsafe:dev image.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/raftsafe-target}"
bin="${RAFTSAFE_BIN:-$CARGO_TARGET_DIR/release/raftsafe}"
image="${RAFTSAFE_IMAGE:-raftsafe:dev}"
dir="$root/cluster/secrets"
nodes="1 2 3"
umask 077

# Subject alternative names per node: service name (= container name = hostname),
# localhost and 127.0.0.1 (the healthcheck inside the container, and clients on the host
# through the published port), and the fixed address on the compose network.
sans() { echo "raftsafe-$1,localhost,127.0.0.1,172.28.77.1$1"; }

mkdir -p "$dir"
chmod 0700 "$dir"

# Runs a raftsafe subcommand: the host binary if there is one, else the image (as you, with
# cluster/secrets mounted at /out). $out is where `certs --out` must write in either case.
if [ -x "$bin" ]; then
  rs() { "$bin" "$@"; }
  out="$dir"
else
  echo "note: no host binary at $bin; running $image instead"
  rs() { docker run --rm --network none --user "$(id -u):$(id -g)" -v "$dir:/out" "$image" "$@"; }
  out=/out
fi

volumes_exist() {
  [ -n "$(docker volume ls -q --filter label=com.docker.compose.project=${RAFTSAFE_COMPOSE_PROJECT:-raftsafe} 2>/dev/null)" ]
}
refuse_if_data() {
  if volumes_exist; then
    echo "cluster/secrets/$1 is missing but the cluster's data volumes exist:" >&2
    docker volume ls --filter label=com.docker.compose.project=${RAFTSAFE_COMPOSE_PROJECT:-raftsafe} >&2
    echo "a new $1 would not match that data. Restore the file, or run cluster/down.sh --wipe." >&2
    exit 1
  fi
}

# --- certificates: all or nothing (a new CA means new certs for every node) ---------------
certs_ok=1
for f in ca.pem ca.key; do [ -s "$dir/$f" ] || certs_ok=0; done
for n in $nodes; do for f in "node-$n.pem" "node-$n.key"; do [ -s "$dir/$f" ] || certs_ok=0; done; done
if [ "$certs_ok" = 0 ]; then
  echo "==> generating the CA and node certificates"
  rm -rf "$dir/.certs-new"
  args=()
  for n in $nodes; do args+=(--node "$n=$(sans "$n")"); done
  rs certs --out "$out/.certs-new" "${args[@]}" >/dev/null
  for f in ca.pem ca.key; do mv -f "$dir/.certs-new/$f" "$dir/$f"; done
  for n in $nodes; do
    for f in "node-$n.pem" "node-$n.key"; do mv -f "$dir/.certs-new/$f" "$dir/$f"; done
  done
  rm -rf "$dir/.certs-new"
fi
chmod 0600 "$dir"/*.key
chmod 0644 "$dir"/*.pem

# --- master key and root token ----------------------------------------------------------
if [ ! -s "$dir/master.key" ]; then
  refuse_if_data master.key
  echo "==> generating master.key"
  key="$(rs gen-key)"
  [ -n "$key" ] || { echo "gen-key printed nothing" >&2; exit 1; }
  printf '%s\n' "$key" > "$dir/master.key.new" && mv -f "$dir/master.key.new" "$dir/master.key"
fi
if [ ! -s "$dir/root.token" ]; then
  refuse_if_data root.token
  echo "==> generating root.token"
  token="$(rs gen-token)"
  [ -n "$token" ] || { echo "gen-token printed nothing" >&2; exit 1; }
  printf '%s\n' "$token" > "$dir/root.token.new" && mv -f "$dir/root.token.new" "$dir/root.token"
fi
chmod 0600 "$dir/master.key" "$dir/root.token"

# --- per-node views, readable by the container user ---------------------------------------
if [ "$(id -u)" = 0 ]; then gid=65532; else gid="$(id -g)"; fi
put() {  # put SRC DST: copy if different, then set group and mode 0640
  cmp -s "$1" "$2" 2>/dev/null || cp -f "$1" "$2"
  chgrp "$gid" "$2"
  chmod 0640 "$2"
}
for n in $nodes; do
  d="$dir/node-$n"
  mkdir -p "$d"
  chgrp "$gid" "$d"
  chmod 0750 "$d"
  put "$dir/ca.pem" "$d/ca.pem"
  put "$dir/node-$n.pem" "$d/node.pem"
  put "$dir/node-$n.key" "$d/node.key"
  put "$dir/master.key" "$d/master.key"
  if [ "$n" = 1 ]; then put "$dir/root.token" "$d/root.token"; else rm -f "$d/root.token"; fi
done

echo "==> cluster/secrets ready (container group $gid)"
