#!/bin/bash
# Peak RSS of the server under a login storm on SQLite (scenario 4 of bench/run.py alone), for
# each binary given, in alternation, ROUNDS times: a before/after of the memory hashing takes.
#
#     bench/login_rss.sh target/release/tasklane-server /tmp/tasklane-server-before
#
# Each run starts the binary on a fresh SQLite database, registers one user, resets the peak
# (VmHWM), runs wrk with 64 connections for DURATION seconds against POST /auth/login, and
# prints the idle RSS after the registration, the peak, and the logins per second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-3} duration=${DURATION:-10} port=${BENCH_SERVER_PORT:-8790}
for round in $(seq "$rounds"); do
  for bin in "$@"; do
    dir=$(mktemp -d)
    SECRET_KEY=bench-secret-0123456789abcdef0123456789 DATABASE_URL="sqlite:$dir/bench.db" \
      ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT=$port RATE_LIMIT_ACCOUNT_PER_MINUTE=0 \
      RATE_LIMIT_ADDRESS_PER_MINUTE=0 RUST_LOG=error "$bin" >"$dir/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sf "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
    curl -sf -XPOST "127.0.0.1:$port/auth/register" -H 'content-type: application/json' \
      -d '{"username":"rss","password":"correct horse battery"}' >/dev/null
    idle=$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$pid/status")
    echo 5 >"/proc/$pid/clear_refs"
    rps=$(BENCH_LUA_DIR="$root/bench/lua" BENCH_USER=rss wrk -t2 -c64 -d"${duration}s" \
      -s "$root/bench/lua/login.lua" "http://127.0.0.1:$port" | awk '/Requests\/sec/ {print $2}')
    peak=$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$pid/status")
    printf 'round %s %s: idle %.1f MB, peak %.1f MB, %s logins/s\n' "$round" "$bin" "$idle" "$peak" "$rps"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
done
