#!/usr/bin/env bash
# A throwaway etcd cluster on loopback: the baseline dtx-paxos-bench compares
# dtx's Multi-Paxos replication against (load it with dtx-etcd-load).
#
# Runs Debian's etcd (3.4) binary by hand, not through its systemd unit, with
# default durability (every commit is fsync'ed), data in a fresh temporary
# folder and ports chosen free on 127.0.0.1.
#
#   bench/baselines/etcd.sh start [--members 3|1] [--base-port P] [--dir PARENT]
#       Starts the members, waits until every one is healthy and prints, on
#       stdout, lines a shell can eval:
#         ENDPOINTS=127.0.0.1:P,127.0.0.1:P+2,127.0.0.1:P+4
#         PIDS=pid1,pid2,pid3
#         ETCD_DIR=/tmp/dtx-etcd.XXXXXX
#       Member i listens for clients on P+2i and for peers on P+2i+1.
#   bench/baselines/etcd.sh stop [ETCD_DIR]
#       Kills the members by PID and removes the data folder (default:
#       $ETCD_DIR).
#   bench/baselines/etcd.sh run [start options] -- COMMAND [ARGS...]
#       Starts a cluster, runs COMMAND with ETCD_ENDPOINTS (and ETCD_DIR) set,
#       then stops the cluster and removes its data, whatever COMMAND does
#       (trap; INT and TERM stop COMMAND first). Exits with COMMAND's status.
#       COMMAND's stdin is /dev/null.
#
# Example (the 1/16/64/256-client sweep):
#   bench/baselines/etcd.sh run -- bash -c \
#     'for c in 1 16 64 256; do build/bin/dtx-etcd-load --clients $c --seconds 5; done'
#
# Options:
#   --members N     cluster size (default 3; 1 gives the single-member baseline)
#   --base-port P   first port (default: a free range picked at random in 20000-32000)
#   --dir PARENT    where the temporary data folder goes (default: ${TMPDIR:-/tmp});
#                   it must be on the disk under test, not tmpfs, or fsync is free
#   --timeout S     how long to wait for the cluster to become healthy (default 30)
set -euo pipefail

prog=$(basename "$0")
marker=.dtx-etcd-baseline

log() { echo "$prog: $*" >&2; }
die() {
  log "$*"
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- stopping -----------------------------------------------------------------

# Is $1 still a running etcd of the cluster in folder $2? (Guards against a
# recycled PID.)
is_member() {
  local pid=$1 dir=$2 cmdline
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmdline=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
  [[ $cmdline == *etcd* && $cmdline == *"$dir"* ]]
}

stop_cluster() {
  local dir=$1 pid pids=() alive i
  [ -n "$dir" ] || die "stop: no data folder given (argument or \$ETCD_DIR)"
  [ -d "$dir" ] || {
    log "stop: $dir does not exist (already stopped?)"
    return 0
  }
  [ -e "$dir/$marker" ] || die "stop: $dir is not a folder made by $prog; not touching it"
  if [ -r "$dir/pids" ]; then
    read -r -a pids <"$dir/pids" || true
  fi
  for pid in "${pids[@]}"; do
    if is_member "$pid" "$dir"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for ((i = 0; i < 100; i++)); do
    alive=0
    for pid in "${pids[@]}"; do
      if is_member "$pid" "$dir"; then alive=1; fi
    done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if is_member "$pid" "$dir"; then
      log "stop: member $pid ignored SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  # Reap our own children, if they are ours (run mode), so no zombie stays.
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf -- "$dir"
  if ((${#pids[@]})); then
    log "stopped ${#pids[@]} member(s) (pids ${pids[*]}) and removed $dir"
  else
    log "removed $dir"
  fi
}

# --- starting -----------------------------------------------------------------

members=3
base_port=
parent=${TMPDIR:-/tmp}
timeout=30

parse_start_options() {
  while (($#)); do
    case $1 in
      --members) members=${2:?--members needs a value}; shift 2 ;;
      --base-port) base_port=${2:?--base-port needs a value}; shift 2 ;;
      --dir) parent=${2:?--dir needs a value}; shift 2 ;;
      --timeout) timeout=${2:?--timeout needs a value}; shift 2 ;;
      -h | --help) usage ;;
      *) die "unknown option '$1' (try --help)" ;;
    esac
  done
  [[ $members =~ ^[1-9]$ ]] || die "--members must be 1..9, not '$members'"
  if [ -n "$base_port" ]; then
    if ! [[ $base_port =~ ^[0-9]+$ ]] || ((base_port < 1024 || base_port + 2 * members > 65536)); then
      die "--base-port must be a port in 1024..$((65536 - 2 * members))"
    fi
  fi
  [[ $timeout =~ ^[0-9]+$ ]] || die "--timeout must be whole seconds"
}

port_busy() {
  if command -v ss >/dev/null; then
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ] && return 0
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

range_free() {
  local p
  for ((p = $1; p < $1 + 2 * members; p++)); do
    if port_busy "$p"; then return 1; fi
  done
}

healthy() {
  local endpoints=$1 ep reply
  if command -v etcdctl >/dev/null; then
    ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --dial-timeout=1s --command-timeout=2s \
      endpoint health >/dev/null 2>&1
    return
  fi
  # No etcdctl: ask each member's /health over plain HTTP.
  for ep in ${endpoints//,/ }; do
    reply=$(
      exec 3<>"/dev/tcp/${ep%:*}/${ep#*:}" || exit 1
      printf 'GET /health HTTP/1.0\r\nHost: %s\r\n\r\n' "$ep" >&3
      timeout 3 cat <&3
    ) 2>/dev/null || return 1
    [[ $reply == *'"health":"true"'* ]] || return 1
  done
}

# Starts members on ports base..base+2*members-1 in folder $dir. Sets
# endpoints and pids. Returns 1 if a member exits early (e.g. a port was
# taken meanwhile), 2 if the cluster does not become healthy in time.
launch() {
  local base=$1 i cport pport cluster='' token deadline
  endpoints=
  pids=()
  token="dtx-bench-$$-$RANDOM"
  for ((i = 0; i < members; i++)); do
    pport=$((base + 2 * i + 1))
    cluster+="${cluster:+,}m$i=http://127.0.0.1:$pport"
  done
  for ((i = 0; i < members; i++)); do
    cport=$((base + 2 * i))
    pport=$((base + 2 * i + 1))
    endpoints+="${endpoints:+,}127.0.0.1:$cport"
    rm -rf -- "$dir/m$i.etcd"
    (
      # Environment ETCD_* variables would configure etcd behind our back.
      while read -r v; do unset "$v"; done < <(compgen -e | grep '^ETCD' || true)
      exec etcd --name "m$i" --data-dir "$dir/m$i.etcd" \
        --listen-client-urls "http://127.0.0.1:$cport" \
        --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "$cluster" --initial-cluster-token "$token" \
        --initial-cluster-state new \
        --logger zap --log-outputs stderr
    ) </dev/null >"$dir/m$i.log" 2>&1 &
    pids+=("$!")
  done
  echo "${pids[*]}" >"$dir/pids"
  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    for ((i = 0; i < members; i++)); do
      if ! kill -0 "${pids[i]}" 2>/dev/null; then
        log "member m$i (pid ${pids[i]}) exited during start-up; last lines of its log:"
        tail -n 5 "$dir/m$i.log" >&2 || true
        return 1
      fi
    done
    if healthy "$endpoints"; then return 0; fi
    sleep 0.2
  done
  log "cluster not healthy after ${timeout}s; last lines of the members' logs:"
  for ((i = 0; i < members; i++)); do tail -n 3 "$dir/m$i.log" >&2 || true; done
  return 2
}

start_cluster() {
  local attempt base rc=1
  command -v etcd >/dev/null || die "etcd not found (apt-get install etcd-server, or scripts/setup)"
  mkdir -p -- "$parent"
  dir=$(mktemp -d "$parent/dtx-etcd.XXXXXX")
  touch "$dir/$marker"
  if [ "$(stat -f -c %T "$dir" 2>/dev/null)" = tmpfs ]; then
    log "warning: $dir is on tmpfs: fsync costs nothing there, figures will flatter etcd"
  fi
  # Whatever goes wrong from here on, leave nothing running and nothing on disk.
  trap 'if [ -d "$dir" ]; then stop_cluster "$dir" || true; fi' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  for ((attempt = 1; attempt <= 5; attempt++)); do
    base=$base_port
    if [ -z "$base" ]; then
      base=$((20000 + (RANDOM % 6000) * 2))
      range_free "$base" || continue
    elif ! range_free "$base"; then
      die "ports $base..$((base + 2 * members - 1)) are not all free"
    fi
    rc=0
    launch "$base" || rc=$?
    ((rc == 0)) && break
    stop_cluster "$dir" 2>/dev/null || true
    # A member that exits early most likely lost its port: try another range.
    if ((rc == 2)) || [ -n "$base_port" ]; then exit 1; fi
    mkdir -p -- "$dir"
    touch "$dir/$marker"
  done
  ((rc == 0)) || die "could not start the cluster"
  log "$members-member etcd $(etcd --version | sed -n 's/^etcd Version: //p') healthy on" \
    "$endpoints (pids ${pids[*]}, data in $dir)"
}

# --- main -----------------------------------------------------------------------

mode=${1:-}
shift || true
case $mode in
  start)
    parse_start_options "$@"
    start_cluster
    trap - EXIT INT TERM
    echo "ENDPOINTS=$endpoints"
    echo "PIDS=$(
      IFS=,
      echo "${pids[*]}"
    )"
    echo "ETCD_DIR=$dir"
    ;;
  stop)
    stop_cluster "${1:-${ETCD_DIR:-}}"
    ;;
  run)
    opts=()
    while (($#)) && [ "$1" != -- ]; do
      opts+=("$1")
      shift
    done
    [ "${1:-}" = -- ] || die "run: expected -- COMMAND"
    shift
    (($#)) || die "run: no COMMAND after --"
    parse_start_options "${opts[@]}"
    start_cluster # its EXIT trap stays armed: the cluster goes whatever happens
    log "ENDPOINTS=$endpoints PIDS=${pids[*]} ETCD_DIR=$dir"
    # In the background, so a signal to this script is handled at once: the
    # trap stops COMMAND, then the EXIT trap stops the cluster.
    ETCD_ENDPOINTS=$endpoints ETCD_DIR=$dir "$@" &
    child=$!
    trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 130' INT
    trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM
    rc=0
    wait "$child" || rc=$?
    trap - EXIT INT TERM
    stop_cluster "$dir"
    exit "$rc"
    ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
