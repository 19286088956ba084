#!/usr/bin/env bash
# gRPC CPU per call: `larder cache` against the framework's floor (a bare tonic server for the
# same contract whose Get answers an empty message, crates/larder-cache/examples/grpc_floor.rs),
# each pinned to core 0 with `larder bench grpc` pinned to core 1, same run, same load. Also
# GetMany of 100 keys against unary Get, per key. Figures: server CPU µs per call (user+sys
# from /proc/PID/stat over the measured window) and calls/s.
# The servers take turns for several rounds and medians are compared: this VM's figures move
# by tens of percent from one run to the next.
# Usage: bench/compare-grpc.sh [ROUNDS] [SECONDS]   (defaults 3 and 10)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
secs="${2:-10}"
cargo build --release --quiet -p larder -p larder-cache --example grpc_floor
# LARDER_BIN runs a binary built elsewhere (an older commit, for a before/after comparison).
larder="${LARDER_BIN:-target/release/larder}"
# Not passed on: binaries before 4aa0b51 refuse to start beside an unknown LARDER_* variable.
unset LARDER_BIN
floor=target/release/examples/grpc_floor
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

# shellcheck source=bench/http/common.sh
. bench/http/common.sh # wait_port

load() { # label pid port batch read-ratio
  local out
  out=$(taskset -c 1 "$larder" bench grpc --addr "127.0.0.1:$3" --batch "$4" --read-ratio "$5" \
        --duration "$secs" --server-pid "$2" 2>/dev/null | grep '^summary')
  echo "$1 $out"
}

results=()
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  taskset -c 0 "$floor" 127.0.0.1:17170 >/dev/null &
  pid=$!; wait_port 17170
  results+=("$(load "floor Get" "$pid" 17170 1 1.0)")
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true

  taskset -c 0 "$larder" cache --resp-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:17070 \
    --admin-addr 127.0.0.1:0 --max-memory 1gb >/dev/null 2>&1 &
  pid=$!; wait_port 17070
  results+=("$(load "larder Get" "$pid" 17070 1 1.0)")
  results+=("$(load "larder GetMany100" "$pid" 17070 100 1.0)")
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

echo "date: $(date -u +%F)  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
runs = {}
for line in sys.stdin:
    server, method, rest = line.split(" ", 2)
    f = dict(p.split("=", 1) for p in rest.split() if "=" in p)
    runs.setdefault(f"{server} {method}", []).append((float(f["ops_per_sec"]), float(f["server_cpu_us_per_op"])))
med = {}
for name, rs in runs.items():
    med[name] = statistics.median(c for _, c in rs)
    print(f"{name:18} median ops/s {statistics.median(o for o, _ in rs):>10.0f}  median cpu {med[name]:.3f} µs/op  runs: "
          + " ".join(f"{c:.2f}" for _, c in rs))
floor, get, many = med["floor Get"], med["larder Get"], med["larder GetMany100"]
print(f"unary Get: larder {get:.2f} µs/call vs floor {floor:.2f} µs/call -> floor/larder = {floor/get:.2f} (target >= 0.85)")
print(f"GetMany: {many:.3f} µs/key vs unary Get {get:.2f} µs/key -> {get/many:.1f}x less per key (target >= 10x)")
'
