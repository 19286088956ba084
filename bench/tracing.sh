#!/usr/bin/env bash
# What tracing costs the servers: bench/compare-redis.sh, compare-grpc.sh and compare-http.sh
# (SCRIPTS="…" picks some) each run three times in one go: with BEFORE (a binary without
# tracing, built from an older commit), with this build and tracing off (no OTLP endpoint, the
# default), and with this build exporting to a local OTLP/gRPC sink (bench/otlp_sink.py) at
# RATIO (default 0.01) of requests. Compare the larder rows (server CPU per operation) and
# their ratios to the peers, which run in the same script run and absorb the machine's drift.
# LARDER_AFTER=path uses a build made elsewhere instead of building this checkout.
# Usage: bench/tracing.sh BEFORE [ROUNDS] [RATIO]
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(realpath "${1:?usage: bench/tracing.sh BEFORE_BINARY [ROUNDS] [RATIO]}")
rounds="${2:-3}"
ratio="${3:-0.01}"
after="${LARDER_AFTER:-target/release/larder}"
[ -n "${LARDER_AFTER:-}" ] || cargo build --release --quiet -p larder
python3 -c 'import grpc' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check 'grpcio>=1.60'
sink_port=14317
python3 bench/otlp_sink.py "$sink_port" &
sink=$!
trap 'kill -TERM $sink 2>/dev/null || true; wait $sink 2>/dev/null || true' EXIT
for script in ${SCRIPTS:-compare-redis compare-grpc compare-http}; do
  for side in before off on; do
    echo "=== $script, $side ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
    case $side in
      before) LARDER_BIN="$before" "bench/$script.sh" "$rounds" ;;
      off) LARDER_BIN="$after" "bench/$script.sh" "$rounds" ;;
      on) OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" \
            LARDER_TELEMETRY_SAMPLE_RATIO="$ratio" LARDER_BIN="$after" "bench/$script.sh" "$rounds" ;;
    esac
  done
done
