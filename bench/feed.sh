#!/usr/bin/env bash
# The change feed under load: `larder api` over a SQLite file (bench/http/api.toml, in-process
# cache) holds SUBSCRIBERS streams of GET /v1/products/changes while the load generator
# (crates/larder-api/examples/feed_load.rs) creates documents at a fixed RATE for SECS seconds
# on CONNECTIONS keep-alive connections, and measures, for every event at every stream, the
# time from the write's 201 to the event's arrival. It prints the generator's summary line
# (writes acknowledged, delivered events and rate, p50/p99/p99.9/max latency in ms, events that
# arrived before their write was acknowledged), the gateway's CPU (user+sys seconds per
# second of the run, in cores) and the load average before and after (the machine is shared).
# The issue's target: 10,000 changes/s to 100 subscribers with p99 <= 50 ms.
# Usage: bench/feed.sh [RATE] [SECS] [SUBSCRIBERS] [CONNECTIONS]  (defaults 10000 10 100 64; with
# 32 connections an open-loop write can wait for a free one, as each takes a group commit).
# PROFILE (default release; `fast` builds quicker) and CARGO_TARGET_DIR are honoured;
# TOKIO_WORKER_THREADS is passed to the gateway (default: one per core).
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-10000}" secs="${2:-10}" subscribers="${3:-100}" connections="${4:-64}"
profile="${PROFILE:-release}"
port="${PORT:-8195}"
cargo build --profile "$profile" --quiet -j2 -p larder
cargo build --profile "$profile" --quiet -j2 -p larder-api --example feed_load
dir="${CARGO_TARGET_DIR:-target}/$profile"
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$out"' EXIT
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "something already listens on port $port" >&2; exit 1
fi
"$dir/larder" --config bench/http/api.toml api --listen "127.0.0.1:$port" \
  --database "sqlite://$out/larder.db?mode=rwc" >"$out/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { echo "the gateway did not start" >&2; cat "$out/log" >&2; exit 1; }
  sleep 0.1
done
hz=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
echo "load before: $(uptime)"
before=$(cpu) started=$(date +%s.%N)
"$dir/examples/feed_load" "http://127.0.0.1:$port" products "$rate" "$secs" \
  "$subscribers" "$connections"
after=$(cpu) ended=$(date +%s.%N)
echo "load after: $(uptime)"
awk -v t=$((after - before)) -v hz="$hz" -v s="$started" -v e="$ended" \
  'BEGIN { printf "gateway cpu: %.2f cores over %.1f s\n", t / hz / (e - s), e - s }'
kill -TERM "$pid"
wait "$pid" || { echo "the gateway did not exit cleanly" >&2; tail -20 "$out/log" >&2; exit 1; }
