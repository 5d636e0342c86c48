# shellcheck shell=bash
# Docker on this machine, for scripts that run dtx in containers (sourced by
# scripts/compose-check; scripts/fresh-check does the same steps inline):
#
#   docker_tools docker.io docker-compose   # Debian packages, installed with apt-get when missing
#   docker_engine                           # a dockerd that answers; starts one when none does
#   docker_stop_engine                      # stops only a dockerd docker_engine started
#   docker_base_image                       # debian:bookworm, made with debootstrap when missing
#   docker_network                          # prints bridge when a container reaches the mirror, else host
#
# No image registry is reachable here, so debian:bookworm is made with
# `debootstrap --variant=minbase bookworm` from the Debian mirror apt uses on
# this machine and `docker import`ed (kept for later runs; on a normal machine
# `docker pull debian:bookworm` gives the same base). Needs root. The caller
# defines die() and say() (messages with its name) before sourcing this.

DOCKER_BASE_IMAGE=debian:bookworm
DOCKERD_PID=""

docker_apt_install() {
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
    die "apt-get install $* failed"
}

# The Debian mirror apt uses for bookworm: one-line sources or deb822 .sources.
docker_apt_mirror() {
  local f uri=""
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == "bookworm") { print $i; exit }
      }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk 'BEGIN { RS = "" } {
        types = ""; uris = ""; suites = ""; enabled = "yes"
        n = split($0, line, "\n")
        for (k = 1; k <= n; k++) {
          if (line[k] ~ /^Types:/) types = substr(line[k], 7)
          else if (line[k] ~ /^URIs:/) uris = substr(line[k], 6)
          else if (line[k] ~ /^Suites:/) suites = substr(line[k], 8)
          else if (line[k] ~ /^Enabled:/) enabled = substr(line[k], 9)
        }
        if ((" " types " ") ~ /[ \t]deb[ \t]/ && (" " suites " ") ~ /[ \t]bookworm[ \t]/ && enabled !~ /no/) {
          split(uris, u, " "); print u[1]; exit
        }
      }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
}

# docker_tools PACKAGE...: docker.io gives docker and dockerd, docker-compose
# the docker-compose command.
docker_tools() {
  local missing=() p
  for p in "$@"; do
    case "$p" in
      docker.io) command -v dockerd >/dev/null && command -v docker >/dev/null || missing+=("$p") ;;
      docker-compose) command -v docker-compose >/dev/null || missing+=("$p") ;;
      *) command -v "$p" >/dev/null || missing+=("$p") ;;
    esac
  done
  if ((${#missing[@]})); then docker_apt_install "${missing[@]}"; fi
}

docker_engine() {
  docker info >/dev/null 2>&1 && return 0
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid # left by a dockerd that died; dockerd refuses to start over it
  fi
  local log=${TMPDIR:-/tmp}/dtx-dockerd-$$.log
  say "no Docker engine answers; starting dockerd (log: $log)"
  dockerd >"$log" 2>&1 &
  DOCKERD_PID=$!
  local _
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -n 30 "$log" >&2; DOCKERD_PID=""; die "dockerd exited (log above)"; }
    sleep 0.5
  done
  tail -n 30 "$log" >&2
  die "dockerd did not answer within 60 s (log above)"
}

docker_stop_engine() {
  [ -n "$DOCKERD_PID" ] || return 0
  say "stopping the dockerd it started (pid $DOCKERD_PID)"
  kill -TERM "$DOCKERD_PID" 2>/dev/null || true
  local _
  for _ in $(seq 1 150); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$DOCKERD_PID" 2>/dev/null; then
    echo "dockerd (pid $DOCKERD_PID) did not stop in 30 s; killing it" >&2
    kill -KILL "$DOCKERD_PID" 2>/dev/null || true
  fi
  DOCKERD_PID=""
}

docker_base_image() {
  docker image inspect "$DOCKER_BASE_IMAGE" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null || docker_apt_install debootstrap
  local mirror tmp
  mirror=$(docker_apt_mirror)
  [ -n "$mirror" ] || die "no bookworm Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/dtx-base.XXXXXX")
  say "no $DOCKER_BASE_IMAGE image; building one with debootstrap --variant=minbase from $mirror"
  if ! debootstrap --variant=minbase bookworm "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
    tail -n 30 "$tmp/debootstrap.log" >&2
    rm -rf "$tmp"
    die "debootstrap failed (log above)"
  fi
  if ! tar -C "$tmp/rootfs" -c . | docker import - "$DOCKER_BASE_IMAGE" >/dev/null; then
    rm -rf "$tmp"
    die "docker import failed"
  fi
  rm -rf "$tmp"
  say "imported $DOCKER_BASE_IMAGE"
}

# The network for builds: a bridge when a container on it reaches the
# mirror (apt-get inside a build must), else the host's.
docker_network() {
  local mirror host port=80
  mirror=$(docker_apt_mirror)
  host=$(sed -E 's|^[a-z+]+://([^/:]+).*|\1|' <<<"${mirror:-http://deb.debian.org/debian}")
  case "$mirror" in https://*) port=443 ;; esac
  if docker run --rm --network bridge "$DOCKER_BASE_IMAGE" \
    timeout 15 bash -c "exec 3<>/dev/tcp/$host/$port" >/dev/null 2>&1; then
    echo bridge
  else
    echo host
  fi
}
