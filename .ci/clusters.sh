#!/usr/bin/env bash
# Clusters for the test suite, all on 127.0.0.1: a single-node Slurm (when
# ../shared/tools/slurm-up.sh exists), a Ray head (`ray start --head`) and a Dask scheduler
# with one worker. The tests read the addresses from the variables exported here; without
# them, tests/support/clusters.py starts private clusters itself, and Slurm tests skip.
#
#   . .ci/clusters.sh && clusters_start    # starts them; exports MEMENTO_TEST_* and RAY_*
#   clusters_stop                          # stops only what clusters_start started
#
# As a command: `eval "$(.ci/clusters.sh start)"` and `.ci/clusters.sh stop`.
# Logs and pid files: $MEMENTO_CLUSTERS_DIR (default /tmp/memento-clusters).

_clusters_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MEMENTO_CLUSTERS_DIR=${MEMENTO_CLUSTERS_DIR:-/tmp/memento-clusters}
SLURM_UP=${SLURM_UP:-$_clusters_root/../shared/tools/slurm-up.sh}

_clusters_log() { echo "[clusters] $*" >&2; }

_clusters_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_clusters_wait() {  # _clusters_wait SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2 end=$((SECONDS + $1))
  shift 2
  while ((SECONDS < end)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  _clusters_log "$what did not come up within ${seconds}s (logs in $MEMENTO_CLUSTERS_DIR)"
  return 1
}

_clusters_spawn() {  # _clusters_spawn NAME COMMAND...: own session, so the group can be stopped
  setsid "${@:2}" >"$MEMENTO_CLUSTERS_DIR/$1.log" 2>&1 </dev/null &
  echo $! >"$MEMENTO_CLUSTERS_DIR/$1.pid"
  disown $!  # no "Killed" line from this shell when the group is stopped
}

_clusters_kill() {  # _clusters_kill NAME: SIGTERM to the group, SIGKILL after 10 s
  local file="$MEMENTO_CLUSTERS_DIR/$1.pid" pid i
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  kill -TERM -- "-$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL -- "-$pid" 2>/dev/null || true  # whatever of the group is left
  rm -f "$file"
}

clusters_start() {
  mkdir -p "$MEMENTO_CLUSTERS_DIR"
  # tests/support and every test folder: the workers import test modules by name.
  local test_dirs
  test_dirs=$(find "$_clusters_root/tests" -mindepth 1 -maxdepth 1 -type d ! -name __pycache__ ! -name '.*' | sort | paste -sd: -)
  local tests_path="$test_dirs:$_clusters_root/src${PYTHONPATH:+:$PYTHONPATH}"
  # Ray: no token auth files in ~; every listener on 127.0.0.1 (see docs/cluster-notes.md).
  export RAY_AUTH_MODE=disabled RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0

  # Slurm (4 advertised CPUs: more 1-CPU test jobs at once on a 2-core machine).
  if [ -x "$SLURM_UP" ]; then
    if scontrol ping >/dev/null 2>&1; then
      _clusters_log "Slurm is already up; it will be left running"
    elif SLURM_CPUS=${SLURM_CPUS:-4} "$SLURM_UP" >"$MEMENTO_CLUSTERS_DIR/slurm-up.log" 2>&1; then
      touch "$MEMENTO_CLUSTERS_DIR/slurm.started"
      _clusters_log "Slurm up"
    else
      _clusters_log "slurm-up.sh failed (see $MEMENTO_CLUSTERS_DIR/slurm-up.log): Slurm tests will skip"
    fi
  else
    _clusters_log "no $SLURM_UP: Slurm tests will skip"
  fi

  # Dask: a scheduler and one worker process with 2 threads.
  if command -v dask >/dev/null 2>&1; then
    local port
    port=$(_clusters_port)
    DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0 _clusters_spawn dask-scheduler \
      dask scheduler --host 127.0.0.1 --port "$port" --dashboard-address 127.0.0.1:0 --no-dashboard
    PYTHONPATH=$tests_path _clusters_spawn dask-worker \
      dask worker "tcp://127.0.0.1:$port" --host 127.0.0.1 --dashboard-address 127.0.0.1:0 \
      --no-dashboard --nworkers 1 --nthreads 2 --memory-limit 2GiB \
      --local-directory "$MEMENTO_CLUSTERS_DIR/dask"
    if _clusters_wait 60 "Dask" python3 -c "from distributed import Client
with Client('tcp://127.0.0.1:$port', timeout='5s') as c: c.wait_for_workers(1, timeout=5)"; then
      export MEMENTO_TEST_DASK_ADDRESS="tcp://127.0.0.1:$port"
      _clusters_log "Dask up at $MEMENTO_TEST_DASK_ADDRESS"
    fi
  fi

  # Ray: a head in the foreground of its own session (--block), so stopping its process
  # group stops it alone; `ray stop` would stop every Ray cluster on the machine.
  if command -v ray >/dev/null 2>&1; then
    local port
    port=$(_clusters_port)
    PYTHONPATH=$tests_path _clusters_spawn ray-head \
      ray start --head --block --node-ip-address=127.0.0.1 --port="$port" --num-cpus=2 \
      --include-dashboard=false --disable-usage-stats --temp-dir="/tmp/ray-ci-$port"
    echo "/tmp/ray-ci-$port" >"$MEMENTO_CLUSTERS_DIR/ray-head.tmp"
    if _clusters_wait 120 "Ray" grep -q "block forever" "$MEMENTO_CLUSTERS_DIR/ray-head.log"; then
      export MEMENTO_TEST_RAY_ADDRESS="127.0.0.1:$port"
      _clusters_log "Ray up at $MEMENTO_TEST_RAY_ADDRESS"
    fi
  fi
}

clusters_stop() {
  _clusters_kill ray-head
  if [ -f "$MEMENTO_CLUSTERS_DIR/ray-head.tmp" ]; then
    rm -rf "$(cat "$MEMENTO_CLUSTERS_DIR/ray-head.tmp")" "$MEMENTO_CLUSTERS_DIR/ray-head.tmp"
  fi
  _clusters_kill dask-worker
  _clusters_kill dask-scheduler
  if [ -f "$MEMENTO_CLUSTERS_DIR/slurm.started" ]; then
    "$SLURM_UP" stop >/dev/null 2>&1 || _clusters_log "slurm-up.sh stop failed"
    rm -f "$MEMENTO_CLUSTERS_DIR/slurm.started"
  fi
  unset MEMENTO_TEST_DASK_ADDRESS MEMENTO_TEST_RAY_ADDRESS
  _clusters_log "stopped"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    start)
      clusters_start
      for name in MEMENTO_TEST_DASK_ADDRESS MEMENTO_TEST_RAY_ADDRESS RAY_AUTH_MODE \
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER; do
        if [ -n "${!name:-}" ]; then echo "export $name=${!name}"; fi
      done
      ;;
    stop) clusters_stop ;;
    *)
      echo "usage: $0 start|stop   (or: . $0 && clusters_start; ...; clusters_stop)" >&2
      exit 2
      ;;
  esac
fi
