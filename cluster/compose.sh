#!/usr/bin/env bash
# Runs Docker Compose on the repo's docker-compose.yml with the project name `raftsafe`,
# whichever Compose is installed: `docker compose` (v2) if it works, else `docker-compose`
# (v1, e.g. Debian's 1.29). Any arguments are passed through:
#
#   cluster/compose.sh ps
#   cluster/compose.sh logs -f raftsafe-2
#   cluster/compose.sh kill raftsafe-3 && cluster/compose.sh start raftsafe-3
#
# It runs from the repo root (relative paths in arguments are taken from there) and exports
# RAFTSAFE_SECRETS_GID, the group that owns cluster/secrets/node-*/ (see gen-secrets.sh),
# which the compose file adds to the container user so it can read its mounted secrets.
# RAFTSAFE_COMPOSE_PROJECT (default raftsafe) names the project and prefixes the container
# names; see docker-compose.yml for the other variables that let two copies run at once.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

project="${RAFTSAFE_COMPOSE_PROJECT:-raftsafe}"
export COMPOSE_PROJECT_NAME="$project"
if [ -z "${RAFTSAFE_SECRETS_GID:-}" ]; then
  RAFTSAFE_SECRETS_GID="$(stat -c %g cluster/secrets/node-1 2>/dev/null \
    || stat -f %g cluster/secrets/node-1 2>/dev/null || echo 65532)"
fi
export RAFTSAFE_SECRETS_GID

if docker compose version >/dev/null 2>&1; then
  exec docker compose -p "$project" -f "$root/docker-compose.yml" "$@"
elif command -v docker-compose >/dev/null 2>&1; then
  exec docker-compose -p "$project" -f "$root/docker-compose.yml" "$@"
else
  echo "neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed" >&2
  exit 127
fi
