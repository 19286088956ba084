#!/usr/bin/env bash
# Invalidation lag on loopback: `larder cache` pinned to core 0, and on core 1 one process
# (crates/larder-client/examples/invalidation_lag.rs) with two clients of it: a reader that
# tracks KEYS keys it has read (as a gateway's near-cache does) and a writer that overwrites
# them in turn at RATE writes/s, open loop, for SECS seconds. The lag of a write is the time
# from its acknowledgement to the reader having dropped its copy; a negative lag is a copy
# dropped before the write was acknowledged, which `strong` (the writer awaits the
# invalidation, as a gateway's strong collections do) guarantees. `eventual` does not wait.
# Prints one JSON line per mode: writes acknowledged, lags measured, p50/p99/max in µs.
# Usage: bench/invalidation-lag.sh [RATE] [SECS] [KEYS]   (defaults 5000 10 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-5000}"
secs="${2:-10}"
keys="${3:-1000}"
# Two builds: with --example, cargo builds only the examples of the packages named.
cargo build --release --quiet -p larder
cargo build --release --quiet -p larder-client --example invalidation_lag
larder="${LARDER_BIN:-target/release/larder}"
unset LARDER_BIN
lag=target/release/examples/invalidation_lag
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

# shellcheck source=bench/http/common.sh
. bench/http/common.sh # wait_port

echo "date: $(date -u +%F)  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in strong eventual; do
  TOKIO_WORKER_THREADS=1 taskset -c 0 "$larder" cache --resp-addr 127.0.0.1:0 \
    --grpc-addr 127.0.0.1:17270 --admin-addr 127.0.0.1:0 --max-memory 256mb >/dev/null 2>&1 &
  pid=$!
  wait_port 17270
  TOKIO_WORKER_THREADS=1 taskset -c 1 "$lag" 127.0.0.1:17270 "$rate" "$secs" "$mode" "$keys"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done
