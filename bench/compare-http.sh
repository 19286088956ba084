#!/usr/bin/env bash
# HTTP cache-hit GET of one JSON:API document, ranked by server CPU time per request: wrk (one
# thread, 32 connections) shares this 2-core VM and can cap the throughput before a server
# does, so req/s alone would partly rank wrk. Servers, each pinned to core 0 with wrk pinned to
# core 1, same run:
#   nginx       the same document bytes as a static file (bench/http/nginx.conf: one worker)
#   go          shared/peers/go-fastjson-api (net/http, documents in a map), GOMAXPROCS=1
#   larder-api  `larder api` with its in-process cache (bench/http/api.toml)
#   larder-up   `larder up`: the gateway and a cache node in one process; GETs are answered
#               from the gateway's near-cache, kept fresh by the node's invalidation stream
#               (a near miss is a gRPC Get to the node); its CPU includes the node's work
# Larder runs with TOKIO_WORKER_THREADS=1. Each server gets a 2 s wrk warm-up, then a measured
# wrk run with --latency; CPU is user+sys from /proc/PID/stat over the measured run (nginx:
# master plus worker) divided by wrk's request count. Any non-2xx response or socket error
# fails the run. The servers take turns for several rounds (the first one moves each round)
# and medians are compared: this VM's figures move by tens of percent between runs.
# wrk is closed-loop; wrk2 (open loop) is not packaged in Debian, so there is no open-loop
# figure here.
# Before each server's turn it waits (up to MAX_WAIT seconds, default 600) until nothing
# compiles or benchmarks and the cores are idle; the "rest" column shows what ran beside it.
# Usage: bench/compare-http.sh [ROUNDS] [SECONDS]   (defaults 3 and 10)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
secs="${2:-10}"
conns=32
port_go=8090 port_api=8091 port_nginx=8092 port_up=8093
doc_path=/v1/products/42
doc='{"data":{"type":"products","id":"42","attributes":{"name":"product 42","price":42.99,"tags":["catalog","demo"]}}}'
peer_src="${PEER_DIR:-../shared/peers/go-fastjson-api}"
max_wait="${MAX_WAIT:-600}" # seconds to wait for a quiet machine before each server's run

# shellcheck source=bench/http/common.sh
. bench/http/common.sh
prepare wrk:wrk

cpu_ticks() { # summed utime + stime of processes, in clock ticks (fields 14 and 15)
  local pid sum=0
  for pid in "$@"; do
    sum=$((sum + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")))
  done
  echo "$sum"
}

thread_ticks() { # one line per thread: tid name ticks
  local stat
  for stat in /proc/"$1"/task/*/stat; do
    awk '{ n = $0; sub(/^[^(]*\(/, "", n); sub(/\) .*$/, "", n); tid = $1
           sub(/^.*\) /, ""); print tid, n, $12 + $13 }' "$stat" 2>/dev/null || true
  done
}

check_wrk() { # wrk-output-file label
  if grep -q 'Non-2xx' "$1" || grep -q 'Socket errors' "$1"; then
    echo "$2: wrk saw non-2xx responses or socket errors:" >&2; cat "$1" >&2; exit 1
  fi
}

node_hits() { # admin-address
  curl -s "http://$1/metrics" | awk '$1 == "larder_cache_hits_total" { print $2 }'
}

measure() { # name round pid... (url from $url; $node_admin set for larder-up)
  local name=$1 round=$2; shift 2
  local tag="$out/$name-$round" status before after hits0=0 hits1=0 parsed wrk_cpu all0 all1
  status=$(fetch "$url" "$tag.body")
  if [ "${status% *}" != 200 ] || ! grep -q '"product 42"' "$tag.body"; then
    echo "$name: GET $url answered $status" >&2; cat "$tag.body" >&2; exit 1
  fi
  taskset -c 1 wrk -t1 -c"$conns" -d2s "$url" >"$tag.warm"
  check_wrk "$tag.warm" "$name warm-up"
  thread_ticks "$1" >"$tag.threads0"
  [ -n "${node_admin:-}" ] && hits0=$(node_hits "$node_admin")
  all0=$(busy_ticks)
  before=$(cpu_ticks "$@")
  { TIMEFORMAT='%U %S'; time taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "$url" >"$tag.wrk"; } 2>"$tag.time"
  after=$(cpu_ticks "$@")
  all1=$(busy_ticks)
  wrk_cpu=$(awk '{ print $1 + $2 }' "$tag.time")
  [ -n "${node_admin:-}" ] && hits1=$(node_hits "$node_admin")
  thread_ticks "$1" >"$tag.threads1"
  check_wrk "$tag.wrk" "$name"
  parsed=$(awk '
    function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; return v * 1e6 }
    /^ +50% / { p50 = us($2) } /^ +99% / { p99 = us($2) }
    / requests in / { n = $1 } /^Requests\/sec:/ { rps = $2 }
    END { print n, rps, p50, p99 }' "$tag.wrk")
  echo "$name $round ${status#* } $((after - before)) $parsed $((hits1 - hits0)) $wrk_cpu $((all1 - all0))" >>"$out/results"
}

run_nginx() { # round
  local master worker
  start_nginx "$out/nginx-$1" "$port_nginx" "$out/doc.json"
  url="http://127.0.0.1:$port_nginx$doc_path"
  measure nginx "$1" "$worker" "$master"
  stop "$master"
}

run_go() { # round
  local pid
  start_go "$port_go" 10000
  url="http://127.0.0.1:$port_go$doc_path"
  measure go "$1" "$pid"
  stop "$pid"
}

run_api() { # round
  local pid
  start_api "$larder" "$out/api-$1" "$port_api"
  create_doc "$port_api"
  url="http://127.0.0.1:$port_api$doc_path"
  measure larder-api "$1" "$pid"
  stop "$pid"
}

run_up() { # round
  local dir="$out/up-$1"
  mkdir -p "$dir"
  TOKIO_WORKER_THREADS=1 LARDER_API_LISTEN="127.0.0.1:$port_up" LARDER_CACHE_RESP_ADDR=127.0.0.1:0 \
    LARDER_CACHE_GRPC_ADDR=127.0.0.1:0 LARDER_CACHE_ADMIN_ADDR=127.0.0.1:0 \
    taskset -c 0 "$larder" up --data "$dir" >"$dir/log" 2>&1 &
  local pid=$!
  wait_port "$port_up"
  create_doc "$port_up"
  # The banner's node line: "cache  redis://… grpc http://… ops http://ADDR/metrics".
  node_admin=$(awk '/redis:\/\// { for (i = 1; i < NF; i++) if ($i == "ops" && $(i + 1) ~ /^http:/) {
    v = $(i + 1); sub(/^http:\/\//, "", v); sub(/\/.*$/, "", v); print v; exit } }' "$dir/log")
  url="http://127.0.0.1:$port_up$doc_path"
  measure larder-up "$1" "$pid"
  node_admin=
  stop "$pid"
}

# nginx serves the bytes larder's gateway answers with (278 bytes; only the timestamps differ
# between rounds), taken from a `larder api` started for that alone.
mkdir -p "$out/doc"
TOKIO_WORKER_THREADS=1 taskset -c 0 "$larder" --config bench/http/api.toml api \
  --listen "127.0.0.1:$port_api" --database "sqlite://$out/doc/larder.db?mode=rwc" >"$out/doc/log" 2>&1 &
pid=$!
wait_port "$port_api"
create_doc "$port_api"
fetch "http://127.0.0.1:$port_api$doc_path" "$out/doc.json" >/dev/null
stop "$pid"

servers=(nginx go api up)
for round in $(seq 1 "$rounds"); do
  for i in 0 1 2 3; do
    wait_quiet
    server=${servers[$(((round - 1 + i) % 4))]}
    echo "round $round of $rounds: $server" >&2
    "run_$server" "$round"
  done
done

echo "date: $(date -u +%F)  machine: $(nproc) cores, $(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2 }')"
echo "$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}') -t1 -c$conns, ${secs} s measured after 2 s warm-up, $rounds rounds; server on core 0, wrk on core 1"
echo "larder: $($larder --version)  go: $(go version | awk '{print $3}')  nginx: $(nginx -v 2>&1 | sed 's|.*/||')"
python3 - "$out" "$hz" <<'PY'
import glob, os, statistics, sys
out, hz = sys.argv[1], float(sys.argv[2])
runs = {}
for line in open(os.path.join(out, "results")):
    name, rnd, body, ticks, n, rps, p50, p99, hits, wrk, busy = line.split()
    secs = int(n) / float(rps)
    runs.setdefault(name, []).append(dict(
        round=rnd, body=int(body), cpu=float(ticks) / hz / int(n) * 1e6, rps=float(rps),
        p50=float(p50), p99=float(p99), hits=int(hits), n=int(n),
        srv=100 * float(ticks) / hz / secs, wrk=100 * float(wrk) / secs,
        rest=100 * ((float(busy) - float(ticks)) / hz - float(wrk)) / secs))
order = ["nginx", "go", "larder-api", "larder-up"]
med = {}
print(f"{'server':11} {'body B':>6} {'cpu µs/req':>10} {'req/s':>8} {'p50 µs':>7} {'p99 µs':>7} "
      f"{'srv cpu':>7} {'wrk cpu':>7} {'rest':>5}  runs (cpu µs/req)")
for name in order:
    rs = runs.get(name)
    if not rs:
        continue
    m = {k: statistics.median(r[k] for r in rs) for k in ("cpu", "rps", "p50", "p99", "srv", "wrk", "rest")}
    med[name] = m
    print(f"{name:11} {rs[0]['body']:>6} {m['cpu']:>10.2f} {m['rps']:>8.0f} {m['p50']:>7.0f} {m['p99']:>7.0f} "
          f"{m['srv']:>6.0f}% {m['wrk']:>6.0f}% {m['rest']:>4.0f}%  "
          + " ".join(f"{r['cpu']:.2f}" + ("!" if r["rest"] > 25 else "") for r in rs))
print("(medians over the rounds; p50/p99: wrk's closed-loop latency at 32 connections;\n"
      " srv/wrk cpu: share of one core used by the server and by wrk over the measured run;\n"
      " rest: the two cores' other busy time and steal, in the same unit: kernel work outside\n"
      " the two processes, and anything else that ran; a run marked ! had rest over 25%)")
print()
for larder in ("larder-api", "larder-up"):
    for peer in ("go", "nginx"):
        if larder in med and peer in med:
            l, p = med[larder], med[peer]
            print(f"{larder}/{peer}: cpu per request {l['cpu'] / p['cpu']:.2f}x  req/s {l['rps'] / p['rps']:.2f}x  "
                  f"p99 {l['p99'] / p['p99']:.2f}x")
if "larder-up" in med and "larder-api" in med:
    print(f"larder-up/larder-api: cpu per request {med['larder-up']['cpu'] / med['larder-api']['cpu']:.2f}x"
          f"  p99 {med['larder-up']['p99'] / med['larder-api']['p99']:.2f}x")
if "larder-up" in runs:
    print("larder-up node hits / wrk requests per round: "
          + " ".join(f"{r['hits'] / r['n']:.3f}" for r in runs["larder-up"]))
print()
for name in ("larder-api", "larder-up"):
    rs = runs.get(name)
    if not rs:
        continue
    tag = os.path.join(out, f"{name}-{rs[-1]['round']}")
    read = lambda f: {t: (n, int(c)) for t, n, c in (l.split() for l in open(f))}
    t0, t1 = read(tag + ".threads0"), read(tag + ".threads1")
    by = {}
    for tid, (tname, c) in t1.items():
        by.setdefault(tname, []).append(c - t0.get(tid, (tname, 0))[1])
    total = sum(sum(t) for t in by.values()) or 1
    share = lambda ts: "+".join(f"{100 * t / total:.1f}" for t in sorted(ts, reverse=True)) + "%"
    print(f"{name} threads, last round (cpu share of each thread by name): "
          + ", ".join(f"{k} {share(ts)}" for k, ts in sorted(by.items(), key=lambda kv: -sum(kv[1]))))
PY
