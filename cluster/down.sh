#!/usr/bin/env bash
# Stops the Docker cluster and removes its containers and network.
#
#   cluster/down.sh          # the data volumes stay: cluster/up.sh resumes with the same data
#   cluster/down.sh --wipe   # also delete the data volumes (cluster/secrets/ is kept; delete
#                            # that directory yourself to get new keys, certs and root token)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

args=(down --remove-orphans)
for arg in "$@"; do
  case "$arg" in
    --wipe) args+=(--volumes) ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

cluster/compose.sh "${args[@]}"
