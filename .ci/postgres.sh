#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite: Debian's `postgresql` package (installed
# when missing), a cluster made by initdb in a temp dir, owned by an unprivileged user (the
# server refuses to run as root), listening on 127.0.0.1 only, on a free port. The user
# `memento` logs in with a random password, so that store URLs with a password are tested for
# real. The tests read the URL from the variable exported here; without it,
# tests/support/postgres.py starts a private cluster itself.
#
#   . .ci/postgres.sh && postgres_start   # exports MEMENTO_TEST_POSTGRES (password inside)
#   postgres_stop                         # stops the server, removes its directory
#
# The password is never printed. The server log: $MEMENTO_POSTGRES_DIR/postgres.log.

_postgres_log() { echo "[postgres] $*" >&2; }

_postgres_bin() {  # the folder of initdb and pg_ctl: on the PATH, else Debian's newest
  local found
  if found=$(command -v initdb) && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$found")"
    return 0
  fi
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$found" ] && [ -x "$found/initdb" ] && echo "$found"
}

_postgres_as() {  # run as the cluster's owner
  if [ "$(id -u)" = 0 ]; then
    runuser -u nobody -- "$@"
  else
    "$@"
  fi
}

postgres_start() {
  local bin port password
  if ! bin=$(_postgres_bin); then
    _postgres_log "apt-get install postgresql"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bin=$(_postgres_bin) || { _postgres_log "no initdb after installing postgresql"; return 1; }
  fi
  MEMENTO_POSTGRES_DIR=$(mktemp -d /tmp/memento-postgres.XXXXXX)
  export MEMENTO_POSTGRES_DIR
  if [ "$(id -u)" = 0 ]; then chown nobody "$MEMENTO_POSTGRES_DIR"; fi
  password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
  (umask 077 && printf '%s\n' "$password" >"$MEMENTO_POSTGRES_DIR/pwfile")
  if [ "$(id -u)" = 0 ]; then chown nobody "$MEMENTO_POSTGRES_DIR/pwfile"; fi
  if ! _postgres_as "$bin/initdb" -D "$MEMENTO_POSTGRES_DIR/data" -U memento \
    --pwfile="$MEMENTO_POSTGRES_DIR/pwfile" --auth-host=scram-sha-256 \
    --auth-local=scram-sha-256 -E UTF8 >"$MEMENTO_POSTGRES_DIR/initdb.log" 2>&1; then
    _postgres_log "initdb failed (see $MEMENTO_POSTGRES_DIR/initdb.log)"
    return 1
  fi
  rm -f "$MEMENTO_POSTGRES_DIR/pwfile"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # A server for tests only: durability off (fsync), so that the many small transactions and
  # CREATE DATABASE of the suite are quick. MEMENTO_POSTGRES_DURABLE=1 keeps PostgreSQL's
  # defaults (fsync on): what bench/bench_drivers.py should be measured against.
  local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  [ "${MEMENTO_POSTGRES_DURABLE:-0}" = 1 ] && durability=""
  if ! _postgres_as "$bin/pg_ctl" start -w -t 60 -D "$MEMENTO_POSTGRES_DIR/data" \
    -l "$MEMENTO_POSTGRES_DIR/postgres.log" \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $MEMENTO_POSTGRES_DIR $durability -c max_connections=200" \
    >/dev/null; then
    _postgres_log "the server did not start (see $MEMENTO_POSTGRES_DIR/postgres.log)"
    return 1
  fi
  echo "$bin" >"$MEMENTO_POSTGRES_DIR/bin"
  export MEMENTO_TEST_POSTGRES="postgresql://memento:$password@127.0.0.1:$port/postgres"
  _postgres_log "PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') up at 127.0.0.1:$port (user memento)"
}

postgres_stop() {
  local dir=${MEMENTO_POSTGRES_DIR:-}
  if [ -n "$dir" ] && [ -f "$dir/bin" ]; then
    _postgres_as "$(cat "$dir/bin")/pg_ctl" stop -D "$dir/data" -m fast -w -t 60 >/dev/null 2>&1 \
      || _postgres_log "pg_ctl stop failed"
  fi
  [ -n "$dir" ] && rm -rf "$dir"
  unset MEMENTO_TEST_POSTGRES MEMENTO_POSTGRES_DIR
  _postgres_log "stopped"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "usage: . $0 && postgres_start; ...; postgres_stop   (it exports a variable)" >&2
  exit 2
fi
