#!/usr/bin/env bash
# Fuzzes the live server against its own OpenAPI document with Schemathesis (from PyPI), with
# every check, authenticated as a registered user. The document must describe the server
# exactly: schema-valid requests accepted, schema-invalid ones refused, every status and header
# answered documented, problem JSON for errors, 405 + Allow for undeclared methods.
#
#   scripts/schemathesis.sh            # what .ci/run does after `cargo test --workspace`
#
# It builds the debug server, serves it on SQLite in a temp dir (rate limits off, so the fuzzer
# is not answered 429 for hammering login), registers a user with curl for a bearer token, runs
# Schemathesis from a venv in the same temp dir, and stops the server. Its exit code is
# Schemathesis's.
#
# Settings: SCHEMATHESIS_MAX_EXAMPLES (default 100 per operation and phase),
# SCHEMATHESIS_SEED (default fixed, so CI is reproducible; `random` for a fresh one),
# SCHEMATHESIS_VERSION (pinned: each release adds checks, which should be met on purpose),
# SCHEMATHESIS_VENV (a venv to install into and reuse across runs; default: a fresh one).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${SCHEMATHESIS_VERSION:-4.32.5}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-100}
SEED=${SCHEMATHESIS_SEED:-20261127}

log() { echo "schemathesis.sh: $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/tasklane-schemathesis.XXXXXX")
server=
cleanup() {
  local status=$?
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  if [ "$status" != 0 ] && [ -s "$work/server.log" ]; then
    log "server log (last 50 lines):"
    tail -n 50 "$work/server.log" >&2
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

venv=${SCHEMATHESIS_VENV:-$work/venv}
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $VERSION" ]; then
  log "installing schemathesis $VERSION into a venv in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi

cargo build -p tasklane-server
binary=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/tasklane-server

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
# A clean environment: nothing of the caller's (a DATABASE_URL, ROCKET_* settings) leaks in, and
# the working directory is the temp dir, so no .env file is read.
(cd "$work" && exec env -i PATH="$PATH" \
  DATABASE_URL="sqlite:$work/tasklane.db" \
  ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT="$port" \
  RATE_LIMIT_ACCOUNT_PER_MINUTE=0 RATE_LIMIT_ADDRESS_PER_MINUTE=0 \
  ACCESS_TOKEN_EXPIRE_MINUTES=240 \
  RUST_LOG=warn \
  "$binary" >"$work/server.log" 2>&1) &
server=$!

for _ in $(seq 300); do
  curl -sf "$base/health" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { log "the server exited at start"; exit 1; }
  sleep 0.2
done
curl -sf "$base/health" >/dev/null

token=$(curl -sf -X POST "$base/auth/register" -H 'Content-Type: application/json' \
  -d '{"username":"schemathesis","password":"correct horse battery"}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

seed_args=()
[ "$SEED" = random ] || seed_args=(--seed "$SEED")

log "fuzzing $base/openapi.json (max $MAX_EXAMPLES examples per operation)"
# Every check is on (`--checks all`); none is excluded (schemathesis.toml beside this script
# says which answers a server-issued cursor may get). Run from the temp dir, where Schemathesis
# keeps its cache.
config="$(pwd)/scripts/schemathesis.toml"
cd "$work"
"$venv/bin/schemathesis" --config-file "$config" run "$base/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "$MAX_EXAMPLES" \
  "${seed_args[@]}" \
  --request-timeout 30 \
  --generation-database none \
  --no-color
