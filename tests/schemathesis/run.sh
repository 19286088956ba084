#!/usr/bin/env bash
# schemathesis with every check against `larder up` and its sample `products` collection, on
# non-default ports; any failure fails the run, and so does a server that does not exit 0 on
# SIGTERM. Usage: tests/schemathesis/run.sh [LARDER_BINARY]
# Environment: ST_MAX_EXAMPLES (default 200), ST_SEED (default 20261122), ST_PORT (gateway,
# default 28080; the cache node takes ST_PORT+1..+3), ST_DATA (default target/ci-up),
# ST_DATABASE (a postgres:// URL to run the stack on instead of its SQLite file; PostgreSQL
# refuses U+0000 in text, so the run then adds `--generation-allow-x00 false`), ST_EXTRA (more
# `schemathesis run` options). The gateway runs with credentials: an API key made for the run
# (its SHA-256 in the configuration, the key itself sent by schemathesis as a bearer token) with
# the scopes products:read, products:write and admin, and a rate limit too high to reach, so
# every guarded answer carries its RateLimit fields and schemathesis's ignored_auth check sees
# the 401s of requests without the key. ST_AUTH=0 runs without credentials.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
bin="${1:-target/release/larder}"
port="${ST_PORT:-28080}"
data="${ST_DATA:-target/ci-up}"
rm -rf "$data"
mkdir -p "$data"
log="$data/server.log"
# The server sees only these LARDER_* settings: `larder` refuses variables that name no
# setting (LARDER_TEST_POSTGRES_URL), and others could move it off the ports used here.
unset_larder=()
for name in $(compgen -e | grep '^LARDER_' || true); do unset_larder+=(-u "$name"); done
database=()
extra=()
if [ -n "${ST_DATABASE:-}" ]; then
  database=(LARDER_API_DATABASE="$ST_DATABASE")
  extra=(--generation-allow-x00 false)
fi
config=()
st_config="$here/schemathesis.toml"
if [ "${ST_AUTH:-1}" != 0 ]; then
  key="lk_$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
  hash=$(printf %s "$key" | python3 -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
  cat >"$data/larder.toml" <<TOML
[[api.keys]]
name = "schemathesis"
sha256 = "$hash"
scopes = ["products:read", "products:write", "admin"]

[[api.rate_limits]]
scope = "*"
per_second = 1000000
burst = 1000000
TOML
  config=(--config "$data/larder.toml")
  # The key as the document's `ApiKey` scheme, not as a header on every request: schemathesis
  # then knows it is the credential and leaves it out where it checks that a request without
  # it is refused (a plain --header would be sent there too).
  st_config="$data/schemathesis.toml"
  cat "$here/schemathesis.toml" >"$st_config"
  printf '\n[auth.openapi.ApiKey]\nbearer = "%s"\n' "$key" >>"$st_config"
fi
env "${unset_larder[@]}" "${database[@]}" \
  LARDER_API_LISTEN="127.0.0.1:$port" \
  LARDER_CACHE_RESP_ADDR="127.0.0.1:$((port + 1))" \
  LARDER_CACHE_GRPC_ADDR="127.0.0.1:$((port + 2))" \
  LARDER_CACHE_ADMIN_ADDR="127.0.0.1:$((port + 3))" \
  "$bin" "${config[@]}" up --data "$data" >"$log" 2>&1 &
server=$!
stop() { kill -TERM "$server" 2>/dev/null || true; }
trap stop EXIT
ready=""
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=1)" 2>/dev/null; then
    ready=1
    break
  fi
  kill -0 "$server" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "larder up did not become ready on port $port" >&2
  cat "$log" >&2
  exit 1
fi
status=0
SCHEMATHESIS_HOOKS="$here/hooks.py" python3 -m schemathesis.cli --no-color --config-file "$st_config" \
  run "http://127.0.0.1:$port/openapi.json" --checks all \
  --max-examples "${ST_MAX_EXAMPLES:-200}" --seed "${ST_SEED:-20261122}" \
  --workers 1 --request-timeout 10 --generation-database none "${extra[@]}" ${ST_EXTRA:-} \
  --report junit --report-junit-path "$data/schemathesis-junit.xml" || status=$?
trap - EXIT
kill -TERM "$server"
server_status=0
wait "$server" || server_status=$?
if [ "$server_status" -ne 0 ]; then
  echo "larder up exited with $server_status after SIGTERM" >&2
  tail -n 50 "$log" >&2
  exit 1
fi
echo "larder up exited cleanly on SIGTERM"
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed (exit $status); server log: $log" >&2
  exit "$status"
fi
