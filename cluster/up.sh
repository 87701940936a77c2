#!/usr/bin/env bash
# Starts the three-node Docker cluster and waits until every node is healthy.
#
#   cluster/up.sh            # build the image / secrets only if missing, then start
#   cluster/up.sh --build    # rebuild the image first (after changing the code)
#
# Environment: RAFTSAFE_UP_TIMEOUT (seconds to wait for health, default 120), plus those of
# build-image.sh and gen-secrets.sh. Stop with cluster/down.sh (--wipe also deletes the data).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
image="${RAFTSAFE_IMAGE:-raftsafe:dev}"
timeout="${RAFTSAFE_UP_TIMEOUT:-120}"
project="${RAFTSAFE_COMPOSE_PROJECT:-raftsafe}"
nodes="$project-1 $project-2 $project-3"

build=0
for arg in "$@"; do
  case "$arg" in
    --build) build=1 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

if [ "$build" = 1 ] || ! docker image inspect "$image" >/dev/null 2>&1; then
  cluster/build-image.sh
fi
cluster/gen-secrets.sh
cluster/compose.sh up -d

echo "==> waiting up to ${timeout}s for $nodes to be healthy"
deadline=$((SECONDS + timeout))
while :; do
  states=""
  healthy=0
  for n in $nodes; do
    s="$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$n" 2>/dev/null || echo missing)"
    states="$states $n=$s"
    [ "$s" = "running/healthy" ] && healthy=$((healthy + 1))
  done
  [ "$healthy" = 3 ] && break
  # restart is "no", so a node that exited stays down: no point in waiting for it.
  if [ "$SECONDS" -ge "$deadline" ] || [[ "$states" == *=exited/* || "$states" == *=missing* ]]; then
    echo "not healthy after $((timeout - deadline + SECONDS))s:$states" >&2
    cluster/compose.sh ps >&2 || true
    cluster/compose.sh logs --tail=30 >&2 || true
    echo "stop it with cluster/down.sh (add --wipe to delete its data)" >&2
    exit 1
  fi
  sleep 2
done
echo "==> healthy after $((SECONDS - deadline + timeout))s:$states"

cat <<'EOF'

The cluster's client API is on https://127.0.0.1:18701, :18702 and :18703 (one per node;
any node serves reads and writes). The CA and the root token are in cluster/secrets/:

  export RAFTSAFE_CA=cluster/secrets/ca.pem RAFTSAFE_TOKEN="$(cat cluster/secrets/root.token)"
  curl --cacert "$RAFTSAFE_CA" -H "Authorization: Bearer $RAFTSAFE_TOKEN" \
       -X PUT https://127.0.0.1:18701/api/v1/secrets/app/db -d '{"data":{"password":"s3cret"}}'
  curl --cacert "$RAFTSAFE_CA" -H "Authorization: Bearer $RAFTSAFE_TOKEN" \
       https://127.0.0.1:18702/api/v1/secrets/app/db
  RAFTSAFE_ADDR=https://127.0.0.1:18703 raftsafe cluster status   # the CLI reads the same env

  cluster/compose.sh ps | logs -f raftsafe-2 | kill raftsafe-3 | start raftsafe-3
  cluster/down.sh            # stop (data kept);  cluster/down.sh --wipe  also deletes the data
EOF
