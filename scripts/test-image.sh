#!/usr/bin/env bash
# make test-image: build the image (cpu variant) on a local Python 3.11 base and
# run tests/image against it with a real Docker engine.
#   scripts/test-image.sh [--build-only] [pytest args...]
# --build-only: the engine, the base and the image, no tests (.ci/run builds it
# in the background while the unit tests run; the second call finds it cached).
# Env: VENV (default .venv), IMAGE (default tfodkit:test), BASE_IMAGE (default:
# a Debian 12 base built here with debootstrap and cached as tfodkit-base:bookworm).
#
# No image registry is needed: when BASE_IMAGE is not given, the base is built
# from Debian's packages with debootstrap and trusts this machine's CA bundle
# (TLS may pass a proxy with its own CA). When no Docker engine answers, Debian's
# docker.io is installed if missing and dockerd is started for this run only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tfodkit/lib.sh
source "$ROOT/tfodkit/lib.sh"
log() { printf '[test-image %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/tfodkit
DEFAULT_BASE=tfodkit-base:bookworm
dockerd_pid=""
rootfs=""

cleanup() {
  local rc=$?
  [[ -n "$rootfs" ]] && rm -rf "$rootfs"
  if [[ -n "$dockerd_pid" ]]; then
    log "stopping the dockerd this run started (pid $dockerd_pid)"
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  exit "$rc"
}

apt_install() {
  ((EUID == 0)) || die 2 "$* missing and not root (install it: apt-get install $*)"
  log "installing $* (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_daemon() {
  if docker info >/dev/null 2>&1; then log "using the running Docker engine"; return; fi
  command -v dockerd >/dev/null || apt_install docker.io
  command -v docker >/dev/null || die 2 "docker CLI not found after installing docker.io"
  mkdir -p "$CACHE"
  log "starting dockerd (log: $CACHE/dockerd.log)"
  dockerd >"$CACHE/dockerd.log" 2>&1 &
  dockerd_pid=$!
  local i
  for ((i = 0; i < 60; i++)); do
    docker info >/dev/null 2>&1 && return
    kill -0 "$dockerd_pid" 2>/dev/null || die 1 "dockerd exited: $(tail -n 3 "$CACHE/dockerd.log")"
    sleep 1
  done
  die 1 "dockerd did not answer within 60 s (see $CACHE/dockerd.log)"
}

ensure_base() {
  if docker image inspect "$DEFAULT_BASE" >/dev/null 2>&1; then log "base $DEFAULT_BASE is cached"; return; fi
  command -v debootstrap >/dev/null || apt_install debootstrap
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/tfodkit-rootfs.XXXXXX")
  log "building $DEFAULT_BASE with debootstrap (Debian 12, Python 3.11; about a minute)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" \
    >"$CACHE/debootstrap.log" 2>&1 || die 1 "debootstrap failed (see $CACHE/debootstrap.log)"
  # Trust what this machine trusts: pip and apt inside the build reach the
  # registries through the same TLS path as the host.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["/bin/bash"]' - "$DEFAULT_BASE" >/dev/null
  rm -rf "$rootfs"
  rootfs=""
}

main() {
  local venv=${VENV:-$ROOT/.venv} image=${IMAGE:-tfodkit:test} base=${BASE_IMAGE:-} t0=$SECONDS build_only=0
  if [[ "${1:-}" == --build-only ]]; then build_only=1; shift; fi
  trap cleanup EXIT
  mkdir -p "$CACHE"
  ensure_daemon
  if [[ -z "$base" ]]; then ensure_base; base=$DEFAULT_BASE; fi
  log "docker build --build-arg TF_VARIANT=cpu --build-arg BASE_IMAGE=$base -t $image"
  docker build --build-arg TF_VARIANT=cpu --build-arg BASE_IMAGE="$base" -t "$image" "$ROOT" \
    >"$CACHE/docker-build.log" 2>&1 || { tail -n 30 "$CACHE/docker-build.log" >&2; die 1 "docker build failed (full log: $CACHE/docker-build.log)"; }
  log "built $image in $((SECONDS - t0)) s: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1/1e9}')"
  ((build_only)) && return 0
  [[ -x "$venv/bin/python" ]] || die 2 "$venv/bin/python not found (run make install)"
  cd "$ROOT"
  TFODKIT_IMAGE=$image "$venv/bin/python" -m pytest -m image tests/image "$@"
  log "image test done in $((SECONDS - t0)) s"
}

main "$@"
