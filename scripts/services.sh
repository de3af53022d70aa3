#!/usr/bin/env bash
# Starts a throw-away PostgreSQL and Redis on 127.0.0.1 for the test suite, from Debian's
# packages (installed if missing), with their data in a temp dir.
#
#   eval "$(scripts/services.sh start)"   # exports TASKLANE_TEST_DATABASE_URL, _REDIS_URL, ...
#   cargo test --workspace
#   scripts/services.sh stop
#
# Ports: TASKLANE_PG_PORT (55432), TASKLANE_REDIS_PORT (56379) and TASKLANE_REDIS_TLS_PORT
# (56380: the same Redis over TLS, with a certificate from a throw-away CA made by openssl),
# away from system defaults.
# Must run as root (to install, and to run PostgreSQL as the `postgres` user) or as a user who
# can run initdb and redis-server.
set -euo pipefail

PG_PORT=${TASKLANE_PG_PORT:-55432}
REDIS_PORT=${TASKLANE_REDIS_PORT:-56379}
REDIS_TLS_PORT=${TASKLANE_REDIS_TLS_PORT:-56380}
STATE=${TASKLANE_SERVICES_DIR:-/tmp/tasklane-services}

log() { echo "services: $*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

install() {
  if [ -n "$(pg_bin)" ] && command -v redis-server >/dev/null && command -v openssl >/dev/null; then return; fi
  log "installing postgresql, redis-server and openssl"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql redis-server openssl >&2
  # The packages start system-wide services on the default ports; the tests use their own.
  (service postgresql stop || true) >/dev/null 2>&1
  (service redis-server stop || true) >/dev/null 2>&1
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}

start() {
  install
  stop >/dev/null 2>&1 || true
  rm -rf "$STATE" && mkdir -p "$STATE/pg" "$STATE/redis"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$STATE/pg"
  local bin; bin=$(pg_bin)
  as_pg "$bin/initdb -D $STATE/pg/data -U postgres -A trust --no-sync >$STATE/pg/initdb.log 2>&1"
  # fsync off: a test cluster in a temp dir has nothing to lose, and CREATE DATABASE per test
  # is much faster without it. Benchmarks ask for PostgreSQL's durable defaults instead.
  local fast="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  [ -n "${TASKLANE_PG_DURABLE:-}" ] && fast=""
  as_pg "$bin/pg_ctl -D $STATE/pg/data -l $STATE/pg/server.log -w -t 60 start \
    -o '-c listen_addresses=127.0.0.1 -p $PG_PORT -k $STATE/pg $fast -c max_connections=300'" >&2
  tls_certificates "$STATE/redis/tls"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" --save '' --appendonly no \
    --tls-port "$REDIS_TLS_PORT" --tls-cert-file "$STATE/redis/tls/redis.crt" \
    --tls-key-file "$STATE/redis/tls/redis.key" --tls-ca-cert-file "$STATE/redis/tls/ca.crt" \
    --tls-auth-clients no \
    --daemonize yes --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log"
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$REDIS_PORT" ping >/dev/null
  log "PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT (TLS :$REDIS_TLS_PORT; data in $STATE)"
  echo "export TASKLANE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "export TASKLANE_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
  echo "export TASKLANE_TEST_REDIS_TLS_URL=rediss://localhost:$REDIS_TLS_PORT"
  echo "export TASKLANE_TEST_REDIS_TLS_CA=$STATE/redis/tls/ca.crt"
}

# A CA and a server certificate it signed, for localhost and 127.0.0.1, valid for a week.
tls_certificates() {
  local dir=$1
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=Tasklane test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/redis.key" -out "$dir/redis.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/san.cnf"
  openssl x509 -req -in "$dir/redis.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 7 -extfile "$dir/san.cnf" -out "$dir/redis.crt" 2>/dev/null
}

stop() {
  local bin; bin=$(pg_bin)
  if [ -n "$bin" ] && [ -f "$STATE/pg/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl -D $STATE/pg/data -m fast -w stop" >&2 || true
  fi
  if [ -f "$STATE/redis/redis.pid" ]; then
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$STATE/redis/redis.pid")" 2>/dev/null || true
  fi
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
