#!/usr/bin/env bash
# Builds the raftsafe:dev container image from a host-built binary, pulling nothing.
#
#   cluster/build-image.sh                # cargo build --release, then build the image
#   cluster/build-image.sh --no-cargo     # use the binary already in $CARGO_TARGET_DIR
#
# Environment:
#   CARGO_TARGET_DIR          build output (default ~/.cache/raftsafe-target, as .ci/run)
#   RAFTSAFE_IMAGE            image tag (default raftsafe:dev)
#   RAFTSAFE_IMAGE_KEEP_DEBUG=1  keep the binary's debug sections (~400 MB instead of ~25 MB;
#                             symbol names are kept either way, so backtraces show functions)
#   RAFTSAFE_IMAGE_IMPORT=1   skip `docker build` and use `docker import` directly
#
# The image is `FROM scratch` + the binary + the shared libraries `ldd` lists for it, so it
# runs only where the host's glibc build runs: Linux x86_64 (or whatever the host is).
# If `docker build` fails (no builder available), it falls back to `tar | docker import`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/raftsafe-target}"
image="${RAFTSAFE_IMAGE:-raftsafe:dev}"
ctx="$CARGO_TARGET_DIR/image-rootfs"
bin="$CARGO_TARGET_DIR/release/raftsafe"
uid=65532

cargo_build=1
for arg in "$@"; do
  case "$arg" in
    --no-cargo) cargo_build=0 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

if [ "$cargo_build" = 1 ]; then
  echo "==> cargo build --release --bin raftsafe (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --release --bin raftsafe
fi
[ -x "$bin" ] || { echo "no binary at $bin; run without --no-cargo" >&2; exit 1; }

echo "==> assembling $ctx"
rm -rf "$ctx"
mkdir -p "$ctx/fs/tmp" "$ctx/data"
chmod 1777 "$ctx/fs/tmp"
chmod 0755 "$ctx/fs" "$ctx/data"
if [ "${RAFTSAFE_IMAGE_KEEP_DEBUG:-0}" = 1 ]; then
  install -m 0755 "$bin" "$ctx/fs/raftsafe"
else
  # Debug info is ~95% of the file (mostly RocksDB's C++); the host keeps the full binary.
  objcopy --strip-debug "$bin" "$ctx/fs/raftsafe"
  chmod 0755 "$ctx/fs/raftsafe"
fi

# Every library the dynamic loader will map, at the path ldd resolved it to (the loader
# itself at /lib64/ld-linux-x86-64.so.2, which is baked into the binary). Without an
# ld.so.cache the loader searches /lib/<triplet> and /usr/lib/<triplet>, where these land.
if ldd "$bin" >/dev/null 2>&1; then
  if ldd "$bin" | grep -q 'not found'; then
    echo "ldd reports missing libraries:" >&2; ldd "$bin" >&2; exit 1
  fi
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    install -D -m 0755 "$(readlink -f "$lib")" "$ctx/fs$lib"
  done
else
  echo "note: $bin is not dynamically linked; copying it alone"
fi

# Refuse to produce an image that cannot start: the loader must be where the binary says.
interp="$(readelf -l "$bin" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')"
if [ -n "$interp" ] && [ ! -e "$ctx/fs$interp" ]; then
  echo "program interpreter $interp missing from the rootfs" >&2; exit 1
fi

build_with_docker_build() {
  # The Dockerfile names no base image, so the legacy builder and BuildKit pull nothing.
  docker build -t "$image" -f "$root/cluster/Dockerfile" "$ctx"
}

build_with_docker_import() {
  # Same filesystem and config as the Dockerfile, without any builder.
  local tarball="$CARGO_TARGET_DIR/image-rootfs.tar"
  tar --numeric-owner --owner=0 --group=0 -cf "$tarball" -C "$ctx/fs" .
  tar --numeric-owner --owner="$uid" --group="$uid" -rf "$tarball" -C "$ctx" ./data
  docker import \
    --change "USER $uid:$uid" \
    --change 'VOLUME /data' \
    --change 'EXPOSE 8700 8701' \
    --change 'ENTRYPOINT ["/raftsafe"]' \
    --change 'CMD ["--help"]' \
    "$tarball" "$image"
  rm -f "$tarball"
}

echo "==> building image $image"
if [ "${RAFTSAFE_IMAGE_IMPORT:-0}" = 1 ]; then
  build_with_docker_import
elif ! build_with_docker_build; then
  echo "warning: docker build failed; falling back to tar | docker import" >&2
  build_with_docker_import
fi

# Smoke test: the binary starts inside the image (loader and libraries resolve).
version="$(docker run --rm --network none "$image" --version)"
size="$(docker image inspect -f '{{.Size}}' "$image")"
echo "==> $image: $version, $((size / 1000000)) MB ($size bytes)"
