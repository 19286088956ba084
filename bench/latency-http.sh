#!/usr/bin/env bash
# Open-loop latency of HTTP GETs, corrected for coordinated omission: `larder bench http --rate`
# sends each request when it is due whether or not the last one was answered, and counts its
# latency from that time (as wrk2 would; wrk2 is not packaged in Debian). Two parts:
#  1. cache-hit GET of one JSON:API document at one fixed RATE for every server, the same
#     servers started the same way as bench/compare-http.sh:
#       nginx       the same document bytes as a static file (bench/http/nginx.conf: one worker)
#       go          shared/peers/go-fastjson-api (net/http, documents in a map), GOMAXPROCS=1
#       larder-api  `larder api` with its in-process cache (bench/http/api.toml)
#       larder-up   `larder up`: gateway and cache node in one process, GETs answered from
#                   the gateway's near-cache (a near miss is a gRPC Get)
#  2. cache-miss GET: `larder api` with its in-process cache over a SQLite file seeded with M
#     documents of `products` (ids 0…M-1); `--paths-from M` reads ids 0, 1, 2, … in order, so
#     every request is the first read of its id: a cache miss answered from SQLite (whose file
#     is in the page cache: this is the miss path's cost, not the disk's). M must exceed the
#     ids the run can ask for, so that no id is read twice.
# Each server is pinned to core 0 and the load generator to core 1; 32 connections, one request
# in flight each; SECS seconds measured after 2 s of warm-up (1 s for the misses); larder runs
# with TOKIO_WORKER_THREADS=1. CPU µs/req is the server's user+sys time over the measured
# window (nginx: its worker) divided by the requests answered in it: at a fixed rate below
# saturation it includes waking up for each request, so it is higher than under wrk's closed
# loop. "gen cpu" is the load generator's share of core 1 (to show it kept up); "steal" is the
# CPU time the hypervisor took from the two cores during the run (this VM's host is shared;
# tail latencies from runs with steal are not comparable).
# Any failed request fails the run: a status other than 2xx (a 404 for an id that was not
# seeded included), a malformed response or a lost connection in the measured window, and, for
# larder's servers, any GET their own /metrics counted with another status during the run.
# Before each server's run it waits (up to MAX_WAIT seconds, default 600) until nothing compiles
# or benchmarks and the cores are idle.
# Usage: bench/latency-http.sh [RATE] [SECS] [M] [MISS_RATE]  (defaults 5000 20 200000 1000;
# the environment variables of these names work too). PARTS="hits miss" (the default) picks
# the parts to run, and SERVERS="nginx go api up" (the default) the servers of the hit part.
# CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-${RATE:-5000}}"
secs="${2:-${SECS:-20}}"
docs="${3:-${M:-200000}}"
miss_rate="${4:-${MISS_RATE:-1000}}"
parts="${PARTS:-hits miss}"
servers="${SERVERS:-nginx go api up}"
for part in $parts; do
  case $part in
    hits | miss) ;;
    *) echo "PARTS: unknown part $part (hits, miss)" >&2; exit 2 ;;
  esac
done
for server in $servers; do
  case $server in
    nginx | go | api | up) ;;
    *) echo "SERVERS: unknown server $server (nginx, go, api, up)" >&2; exit 2 ;;
  esac
done
conns=32 warmup=2 miss_warmup=1
# Not compare-http.sh's ports, so that the two cannot measure each other's servers.
port_go=8190 port_api=8191 port_nginx=8192 port_up=8193 port_miss=8194
doc_path=/v1/products/42
doc='{"data":{"type":"products","id":"42","attributes":{"name":"product 42","price":42.99,"tags":["catalog","demo"]}}}'
peer_src="${PEER_DIR:-../shared/peers/go-fastjson-api}"
max_wait="${MAX_WAIT:-600}" # seconds to wait for a quiet machine before each server's run

# Ids the miss run can hand out: a lane never sends ahead of its schedule.
max_ids=$(awk -v r="$miss_rate" -v s="$secs" -v w="$miss_warmup" -v c="$conns" \
  'BEGIN { printf "%d", r * (s + w) + c + 1 }')
if [ "$docs" -le "$max_ids" ]; then
  echo "M=$docs documents are too few: the miss run may ask for $max_ids ids" >&2; exit 2
fi

# shellcheck source=bench/http/common.sh
. bench/http/common.sh
prepare sqlite3:sqlite3

cpu_stat() { # total and steal jiffies of all CPUs
  awk '/^cpu /{ t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9 }' /proc/stat
}

steal_since() { # cpu_stat output: percent of CPU time the hypervisor took since then
  awk -v a="$1" -v b="$(cpu_stat)" \
    'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.1f%%", 100 * (y[2] - x[2]) / (y[1] - x[1] + 1e-9) }'
}

failed_gets() { # port: GETs larder's /metrics counted with a status other than 2xx
  curl -s "http://127.0.0.1:$1/metrics" | awk '
    /^larder_api_requests_total\{/ && /method="GET"/ && !/status="2[0-9][0-9]"/ { n += $NF }
    END { print n + 0 }'
}

bench_http() { # label pid url warmup rate [extra options]: runs the load, keeps its summary
  local label=$1 pid=$2 url=$3 warm=$4 at=$5 stat steal; shift 5
  stat=$(cpu_stat)
  if ! taskset -c 1 "$larder" bench http --url "$url" --connections "$conns" --rate "$at" \
      --duration "$secs" --warmup "$warm" --server-pid "$pid" "$@" >"$out/$label.txt" 2>"$out/$label.err"; then
    echo "$label: larder bench http failed:" >&2; cat "$out/$label.txt" "$out/$label.err" >&2; exit 1
  fi
  steal=$(steal_since "$stat")
  if ! grep -q '^summary .* errors=0 ' "$out/$label.txt"; then
    echo "$label: requests failed:" >&2; cat "$out/$label.txt" >&2; exit 1
  fi
  grep -q '^  note ' "$out/$label.txt" && grep '^  note ' "$out/$label.txt" | sed "s/^ */$label: /" >>"$out/notes"
  awk -v name="$label" -v steal="$steal" '/^summary / {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      gen = v["client_cpu_us_per_op"] == "na" ? "na" : sprintf("%.0f%%", v["client_cpu_us_per_op"] * v["ops_per_sec"] / 1e4)
      printf "%-11s %8s %8s %8s %8s %9s %10s %7s %6s\n", name, v["ops_per_sec"], v["p50_us"], v["p99_us"],
        v["p999_us"], v["max_us"], v["server_cpu_us_per_op"], gen, steal }' "$out/$label.txt" >>"$out/results"
}

measure() { # name port-or-empty pid (url from $url): checks the document, then the load
  local name=$1 port=$2 pid=$3 status
  status=$(fetch "$url" "$out/$name.body")
  if [ "${status% *}" != 200 ] || ! grep -q '"product 42"' "$out/$name.body"; then
    echo "$name: GET $url answered $status" >&2; cat "$out/$name.body" >&2; exit 1
  fi
  bench_http "$name" "$pid" "$url" "$warmup" "$rate"
  if [ -n "$port" ] && [ "$(failed_gets "$port")" != 0 ]; then
    echo "$name: the server counted failed GETs:" >&2; curl -s "http://127.0.0.1:$port/metrics" >&2; exit 1
  fi
}

run_nginx() {
  local master worker
  start_nginx "$out/nginx" "$port_nginx" "$out/doc.json"
  url="http://127.0.0.1:$port_nginx$doc_path"
  measure nginx "" "$worker"
  stop "$master"
}

run_go() {
  local pid
  start_go "$port_go" 10000
  url="http://127.0.0.1:$port_go$doc_path"
  measure go "" "$pid"
  stop "$pid"
}

run_api() {
  start_api "$larder" "$out/api" "$port_api"
  create_doc "$port_api"
  url="http://127.0.0.1:$port_api$doc_path"
  measure larder-api "$port_api" "$pid"
  stop "$pid"
}

run_up() {
  local dir="$out/up"
  mkdir -p "$dir"
  port_free "$port_up"
  TOKIO_WORKER_THREADS=1 LARDER_API_LISTEN="127.0.0.1:$port_up" LARDER_CACHE_RESP_ADDR=127.0.0.1:0 \
    LARDER_CACHE_GRPC_ADDR=127.0.0.1:0 LARDER_CACHE_ADMIN_ADDR=127.0.0.1:0 \
    taskset -c 0 "$larder" up --data "$dir" >"$dir/log" 2>&1 &
  local pid=$!
  wait_port "$port_up"
  create_doc "$port_up"
  url="http://127.0.0.1:$port_up$doc_path"
  measure larder-up "$port_up" "$pid"
  stop "$pid"
}

# Seeds dir/larder.db with products 0…count-1. `larder api` creates the schema and stores
# products 0 and 1 itself; the rest are copies of product 0's row with its id (and name) put
# in, inserted by sqlite3 in one transaction. Product 1 proves the copies exact: made the same
# way from product 0, it must equal what the API stored, timestamps aside.
seed() { # dir count
  local dir=$1 count=$2 i status same
  start_api "$larder" "$dir" "$port_miss"
  for i in 0 1; do
    status=$(curl -s -o "$dir/created" -w '%{http_code}' -X POST -H 'Content-Type: application/vnd.api+json' \
      -d "{\"data\":{\"type\":\"products\",\"id\":\"$i\",\"attributes\":{\"name\":\"product $i\",\"price\":42.99,\"tags\":[\"catalog\",\"demo\"]}}}" \
      "http://127.0.0.1:$port_miss/v1/products")
    if [ "$status" != 201 ]; then
      echo "seeding: creating product $i answered $status" >&2; cat "$dir/created" >&2; exit 1
    fi
  done
  stop "$pid"
  local copy="replace(replace(replace(t.doc, '\"id\":\"0\"', '\"id\":\"' || i || '\"'),
      '/v1/products/0\"', '/v1/products/' || i || '\"'), '\"name\":\"product 0\"', '\"name\":\"product ' || i || '\"')"
  same=$(sqlite3 "$dir/larder.db" "
    WITH t AS (SELECT * FROM larder_documents WHERE collection = 'products' AND id = '0'),
         one AS (SELECT * FROM larder_documents WHERE collection = 'products' AND id = '1'),
         ids(i) AS (SELECT 1)
    SELECT $copy = replace(replace(one.doc, one.created_at, t.created_at), one.updated_at, t.updated_at)
           AND one.version = t.version
    FROM t, one, ids;")
  if [ "$same" != 1 ]; then
    echo "seeding: a copy of product 0 made for id 1 differs from what the API stored:" >&2
    sqlite3 "$dir/larder.db" "SELECT id, version, doc FROM larder_documents" >&2; exit 1
  fi
  sqlite3 -bail "$dir/larder.db" "
    BEGIN;
    WITH RECURSIVE ids(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM ids WHERE i < $count - 1)
    INSERT INTO larder_documents (collection, id, doc, version, created_at, updated_at)
    SELECT t.collection, CAST(i AS TEXT), $copy, t.version, t.created_at, t.updated_at
    FROM ids, (SELECT * FROM larder_documents WHERE collection = 'products' AND id = '0') AS t;
    COMMIT;"
  local stored
  stored=$(sqlite3 "$dir/larder.db" "SELECT count(*), min(CAST(id AS INTEGER)), max(CAST(id AS INTEGER))
                                      FROM larder_documents WHERE collection = 'products'")
  if [ "$stored" != "$count|0|$((count - 1))" ]; then
    echo "seeding: expected $count products 0…$((count - 1)), found count|min|max = $stored" >&2; exit 1
  fi
}

run_miss() {
  local dir="$out/miss" last status
  seed "$dir" "$docs"
  wait_quiet
  echo "cache-miss GET: larder-api over $docs products" >&2
  start_api "$larder" "$dir" "$port_miss"
  # The last id: beyond what the run asks for, so reading it now warms nothing the run reads.
  last=$((docs - 1))
  status=$(fetch "http://127.0.0.1:$port_miss/v1/products/$last" "$dir/last.body")
  if [ "${status% *}" != 200 ] || ! grep -q "\"id\":\"$last\"" "$dir/last.body"; then
    echo "miss: GET /v1/products/$last answered $status" >&2; cat "$dir/last.body" >&2; exit 1
  fi
  bench_http larder-miss "$pid" "http://127.0.0.1:$port_miss/v1/products/" "$miss_warmup" "$miss_rate" \
    --paths-from "$docs"
  if [ "$(failed_gets "$port_miss")" != 0 ]; then
    echo "miss: the server counted failed GETs:" >&2; curl -s "http://127.0.0.1:$port_miss/metrics" >&2; exit 1
  fi
  stop "$pid"
}

run_hits() {
  # nginx serves the bytes larder's gateway answers with, taken from a `larder api` started
  # for that alone.
  start_api "$larder" "$out/doc" "$port_api"
  create_doc "$port_api"
  fetch "http://127.0.0.1:$port_api$doc_path" "$out/doc.json" >/dev/null
  stop "$pid"
  for server in $servers; do
    wait_quiet
    echo "cache-hit GET: $server" >&2
    "run_$server"
  done
  mv "$out/results" "$out/hits"
}

case " $parts " in *" hits "*) run_hits ;; esac
case " $parts " in *" miss "*) run_miss ;; esac

header=$(printf "%-11s %8s %8s %8s %8s %9s %10s %7s %6s" server "req/s" "p50 µs" "p99 µs" "p99.9 µs" "max µs" \
  "cpu µs/req" "gen cpu" steal)
echo "date: $(date -u +%F)  machine: $(nproc) cores, $(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2 }')"
echo "larder: $($larder --version)  go: $(go version | awk '{print $3}')  nginx: $(nginx -v 2>&1 | sed 's|.*/||')"
echo "server on core 0, larder bench http on core 1: $conns connections, open loop, ${secs} s measured"
if [ -s "$out/hits" ]; then
  echo
  echo "cache-hit GET of one document at $rate req/s (after ${warmup} s warm-up)"
  echo "$header"
  cat "$out/hits"
fi
if [ -s "$out/results" ]; then
  echo
  echo "cache-miss GET: larder-api, $docs products in SQLite, each id read once, at $miss_rate req/s (after ${miss_warmup} s warm-up)"
  echo "$header"
  cat "$out/results"
fi
if [ -s "$out/notes" ]; then echo; cat "$out/notes"; fi
echo
echo "(latency from each request's scheduled send time; cpu µs/req: the server's user+sys time over"
echo " the measured window per request, from /proc in 10 ms ticks; gen cpu: the load generator's"
echo " share of core 1; steal: CPU time the hypervisor took from both cores over the run, warm-up"
echo " included: figures from runs with steal are not comparable)"
