#!/usr/bin/env bash
# Runs redis-server and `larder cache` one at a time, each pinned to core 0, under the same
# redis-benchmark load pinned to core 1 (50 clients, 100k keys, 32-byte values, SET then GET, at
# -P 1 and -P 16), and prints for each: ops/s, server CPU time per operation (user+sys from
# /proc/PID/stat over the run, divided by requests) and the larder/redis ratios.
# This VM's throughput moves by tens of percent from one run to the next, so the servers take
# turns for several rounds and the medians are compared.
# Then an open-loop run at a rate Redis sustains comfortably (`larder bench resp --rate`, 50
# connections, 90% GET, latency counted from each request's scheduled send time) for both.
# Usage: bench/compare-redis.sh [ROUNDS] [REQUESTS_P16] [REQUESTS_P1] [RATE]
#        (defaults 3, 2000000, 300000, 40000)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
n16="${2:-2000000}"
n1="${3:-300000}"
rate="${4:-40000}"
port_redis=16379
port_larder=16380

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
fi
# LARDER_BIN runs a binary built elsewhere (an older commit, for a before/after comparison).
if [ -z "${LARDER_BIN:-}" ]; then cargo build --release --quiet -p larder; fi
larder="${LARDER_BIN:-target/release/larder}"
# Not passed on: binaries before 4aa0b51 refuse to start beside an unknown LARDER_* variable.
unset LARDER_BIN
hz=$(getconf CLK_TCK)
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

cpu_ticks() { # utime + stime of a process, in clock ticks (fields 14 and 15 after the comm)
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

wait_port() {
  for _ in $(seq 1 100); do
    redis-cli -p "$1" PING >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $1 did not come up" >&2
  return 1
}

run_one() { # name pid port test pipeline requests
  local name=$1 pid=$2 port=$3 test=$4 pipe=$5 n=$6
  local before after rps
  before=$(cpu_ticks "$pid")
  rps=$(taskset -c 1 redis-benchmark -p "$port" -c 50 -n "$n" -r 100000 -d 32 -t "$test" -P "$pipe" -q \
        | tr '\r' '\n' | grep -i "^$test:" | tail -1 | awk '{print $2}')
  after=$(cpu_ticks "$pid")
  echo "$name $test $pipe $n $rps $((after - before))" >> "$out/results"
}

open_loop() { # name pid port
  local line
  line=$(taskset -c 1 "$larder" bench resp --addr "127.0.0.1:$3" --rate "$rate" --duration 10 \
         --server-pid "$2" 2>/dev/null | grep '^summary')
  echo "$1 $line" >> "$out/open"
}

bench_server() { # name pid port
  local name=$1 pid=$2 port=$3
  wait_port "$port"
  open_loop "$name" "$pid" "$port"
  for pipe in 16 1; do
    local n=$n16; [ "$pipe" = 1 ] && n=$n1
    run_one "$name" "$pid" "$port" set "$pipe" "$n"
    run_one "$name" "$pid" "$port" get "$pipe" "$n"
  done
}

for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  taskset -c 0 redis-server --port "$port_redis" --save '' --appendonly no --daemonize no \
    --loglevel warning >/dev/null &
  pid=$!
  bench_server redis "$pid" "$port_redis"
  kill "$pid"; wait "$pid" 2>/dev/null || true

  taskset -c 0 "$larder" cache --resp-addr "127.0.0.1:$port_larder" --grpc-addr 127.0.0.1:0 \
    --admin-addr 127.0.0.1:0 --max-memory 1gb >/dev/null 2>&1 &
  pid=$!
  bench_server larder "$pid" "$port_larder"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

echo "date: $(date -u +%F)  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "redis: $(redis-server --version | awk '{print $3}')  larder: $($larder --version)"
python3 - "$out/results" "$hz" <<'PY'
import statistics, sys
hz = float(sys.argv[2])
runs = {}
for name, test, pipe, n, rps, ticks in (l.split() for l in open(sys.argv[1])):
    runs.setdefault((name, test, pipe), []).append((float(rps), float(ticks) / hz / int(n) * 1e6))
print(f"{'server':8} {'test':4} {'-P':>3} {'median ops/s':>13} {'median cpu µs/op':>17}  runs (cpu µs/op)")
med = {}
for (name, test, pipe), rs in runs.items():
    med[(name, test, pipe)] = (statistics.median(r for r, _ in rs), statistics.median(c for _, c in rs))
    cpus = " ".join(f"{c:.3f}" for _, c in rs)
    print(f"{name:8} {test:4} {pipe:>3} {med[(name, test, pipe)][0]:>13.0f} {med[(name, test, pipe)][1]:>17.3f}  {cpus}")
print()
for test in ("set", "get"):
    for pipe in ("16", "1"):
        r, l = med.get(("redis", test, pipe)), med.get(("larder", test, pipe))
        if r and l:
            print(f"{test.upper()} -P {pipe}: larder CPU/op = {l[1]/r[1]:.2f}x redis's "
                  f"(redis/larder = {r[1]/l[1]:.2f}); ops/s larder/redis = {l[0]/r[0]:.2f}")
PY
echo
echo "open loop at $rate ops/s (90% GET, 50 connections), per round:"
python3 - "$out/open" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, _, rest = line.partition(" ")
    fields = dict(p.split("=", 1) for p in rest.split() if "=" in p)
    rows.setdefault(name, []).append(fields)
for name, runs in rows.items():
    for f in runs:
        print(f"  {name:7} ops/s={float(f['ops_per_sec']):.0f} p50={f['p50_us']}µs p99={f['p99_us']}µs "
              f"p99.9={f['p999_us']}µs cpu={f['server_cpu_us_per_op']}µs/op")
med = {n: statistics.median(float(f["p99_us"]) for f in r) for n, r in rows.items()}
if "redis" in med and "larder" in med:
    print(f"median p99: larder {med['larder']:.0f}µs, redis {med['redis']:.0f}µs "
          f"(larder/redis = {med['larder']/med['redis']:.2f}; target <= 1.00)")
PY
