#!/usr/bin/env bash
# The gateway's edge, ranked by server CPU time per request against nginx configured the same
# way: a cache-hit GET of one JSON:API document (the document bench/compare-http.sh uses) over
#   h1      HTTP/1.1 keep-alive, cleartext                   (wrk)
#   h2c     HTTP/2 by prior knowledge, cleartext             (h2load)
#   h1-tls  HTTP/1.1 over TLS 1.3                            (wrk)
#   h2-tls  HTTP/2 over TLS 1.3 (ALPN h2)                    (h2load)
# and the cost of credentials and rate limits on the gateway alone:
#   auth    HTTP/1.1 cleartext with an API key (Authorization: Bearer) and a rate limit too
#           high to reach on the route, against the same gateway without either (larder-open).
# nginx serves the same bytes as a static file (bench/http/nginx.conf, one worker; for TLS the
# same ECDSA P-256 certificate as larder, made here with openssl). Every server runs pinned to
# core 0 (larder with TOKIO_WORKER_THREADS=1), the load generator to core 1, 32 connections with
# one request in flight each (h2load -m1: one stream per connection, like wrk), SECS seconds
# measured after a 2 s warm-up; servers take turns for ROUNDS rounds and medians are compared.
# CPU per request = the server's user+sys time from /proc/PID/stat over the measured run (nginx:
# master plus worker) divided by the requests the load generator completed. Any failed request
# fails the run. Before each run it waits (up to MAX_WAIT seconds, default 600) for quiet cores.
# Usage: bench/compare-edge.sh [ROUNDS] [SECS]   (defaults 3 and 10); MODES="h1 h2c h1-tls
# h2-tls auth" (the default) picks the comparisons.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
secs="${2:-10}"
modes="${MODES:-h1 h2c h1-tls h2-tls auth}"
conns=32
port_nginx=8292 port_api=8291
doc_path=/v1/products/42
doc='{"data":{"type":"products","id":"42","attributes":{"name":"product 42","price":42.99,"tags":["catalog","demo"]}}}'
peer_src="${PEER_DIR:-../shared/peers/go-fastjson-api}"
max_wait="${MAX_WAIT:-600}"

# shellcheck source=bench/http/common.sh
. bench/http/common.sh
prepare wrk:wrk h2load:nghttp2-client openssl:openssl

cpu_ticks() { # summed utime + stime of processes, in clock ticks
  local pid sum=0
  for pid in "$@"; do
    sum=$((sum + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")))
  done
  echo "$sum"
}

# One certificate for every TLS server: ECDSA P-256, for localhost and 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null

key=lk_bench_0123456789abcdef0123456789abcdef
key_sha=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
cat >"$out/auth.toml" <<TOML
[[api.collections]]
name = "products"

[[api.keys]]
name = "bench"
sha256 = "$key_sha"
scopes = ["products:read", "products:write"]

[[api.rate_limits]]
scope = "products:read"
per_second = 100000000
burst = 100000000
TOML

nginx_conf() { # dir port tls(0/1) h2(0/1): bench/http/nginx.conf with its listen line changed
  local dir=$1 port=$2 tls=$3 h2=$4 listen="listen 127.0.0.1:$2"
  [ "$tls" = 1 ] && listen="$listen ssl"
  [ "$h2" = 1 ] && listen="$listen http2"
  local extra=""
  if [ "$tls" = 1 ]; then
    extra="ssl_certificate $out/cert.pem; ssl_certificate_key $out/key.pem; ssl_protocols TLSv1.3; ssl_session_cache off;"
  fi
  sed -e "s|@DIR@|$dir|g" -e "s|listen 127.0.0.1:@PORT@;|$listen; $extra|" bench/http/nginx.conf
}

run_nginx() { # mode round
  local mode=$1 dir="$out/nginx-$1-$2" tls=0 h2=0 master worker
  case $mode in h2c) h2=1 ;; h1-tls) tls=1 ;; h2-tls) tls=1; h2=1 ;; esac
  mkdir -p "$dir/www${doc_path%/*}"
  cp "$out/doc.json" "$dir/www$doc_path"
  chmod -R a+rX "$dir"
  nginx_conf "$dir" "$port_nginx" "$tls" "$h2" >"$dir/nginx.conf"
  port_free "$port_nginx"
  taskset -c 0 nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
  master=$!
  wait_port "$port_nginx"
  for _ in $(seq 1 100); do worker=$(pgrep -P "$master") && break; sleep 0.1; done
  measure nginx "$mode" "$2" "$port_nginx" "" "$worker" "$master"
  stop "$master"
}

run_larder() { # name mode round
  local name=$1 mode=$2 dir="$out/$1-$2-$3" config=bench/http/api.toml header="" pid
  local tls_args=()
  case $mode in h1-tls | h2-tls) tls_args=(--tls-cert "$out/cert.pem" --tls-key "$out/key.pem") ;; esac
  if [ "$name" = larder-auth ]; then
    config="$out/auth.toml"
    header="Authorization: Bearer $key"
  fi
  mkdir -p "$dir"
  port_free "$port_api"
  TOKIO_WORKER_THREADS=1 taskset -c 0 "$larder" --config "$config" api --listen "127.0.0.1:$port_api" \
    --database "sqlite://$dir/larder.db?mode=rwc" "${tls_args[@]}" >>"$dir/log" 2>&1 &
  pid=$!
  wait_port "$port_api"
  local scheme=http
  [ "${#tls_args[@]}" -gt 0 ] && scheme=https
  local status
  status=$(curl -sk -o "$dir/created" -w '%{http_code}' -X POST -H 'Content-Type: application/vnd.api+json' \
    ${header:+-H "$header"} -d "$doc" "$scheme://127.0.0.1:$port_api/v1/products")
  [ "$status" = 201 ] || { echo "$name: creating the document answered $status" >&2; cat "$dir/created" >&2; exit 1; }
  measure "$name" "$mode" "$3" "$port_api" "$header" "$pid"
  stop "$pid"
}

load() { # mode port header seconds -> "requests p50_or_mean_us" (fails on any error)
  local mode=$1 port=$2 header=$3 s=$4 url tmp="$out/load.$$"
  case $mode in
    h1 | auth) url="http://127.0.0.1:$port$doc_path" ;;
    h1-tls) url="https://127.0.0.1:$port$doc_path" ;;
    h2c) url="http://127.0.0.1:$port$doc_path" ;;
    h2-tls) url="https://127.0.0.1:$port$doc_path" ;;
  esac
  case $mode in
    h2c | h2-tls)
      taskset -c 1 h2load -t1 -c"$conns" -m1 -D"$s" ${header:+-H "$header"} "$url" >"$tmp" 2>&1
      if ! grep -q ' 0 failed, 0 errored, 0 timeout' "$tmp" || grep -q 'status codes: [0-9]* 2xx, [1-9]' "$tmp"; then
        echo "h2load saw failures:" >&2; cat "$tmp" >&2; exit 1
      fi
      awk '/^requests:/ { n = $8 } /^time for request:/ { m = $6; u = m ~ /ms$/ ? m * 1000 : m + 0 } END { print n, u }' "$tmp"
      ;;
    *)
      taskset -c 1 wrk -t1 -c"$conns" -d"${s}s" --latency ${header:+-H "$header"} "$url" >"$tmp"
      if grep -q 'Non-2xx\|Socket errors' "$tmp"; then echo "wrk saw failures:" >&2; cat "$tmp" >&2; exit 1; fi
      awk 'function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; return v * 1e6 }
           / requests in / { n = $1 } /^ +50% / { p = us($2) } END { print n, p }' "$tmp"
      ;;
  esac
}

measure() { # name mode round port header pid...
  local name=$1 mode=$2 round=$3 port=$4 header=$5; shift 5
  local lmode=$mode before after result
  [ "$mode" = auth ] && lmode=h1
  load "$lmode" "$port" "$header" 2 >/dev/null
  before=$(cpu_ticks "$@")
  result=$(load "$lmode" "$port" "$header" "$secs")
  after=$(cpu_ticks "$@")
  echo "$mode $name $round $((after - before)) $result" >>"$out/results"
}

# The document's bytes, for nginx: from a `larder api` started for that alone.
mkdir -p "$out/doc"
TOKIO_WORKER_THREADS=1 taskset -c 0 "$larder" --config bench/http/api.toml api \
  --listen "127.0.0.1:$port_api" --database "sqlite://$out/doc/larder.db?mode=rwc" >"$out/doc/log" 2>&1 &
pid=$!
wait_port "$port_api"
create_doc "$port_api"
fetch "http://127.0.0.1:$port_api$doc_path" "$out/doc.json" >/dev/null
stop "$pid"

for round in $(seq 1 "$rounds"); do
  for mode in $modes; do
    if [ "$mode" = auth ]; then
      pair=(larder-open larder-auth)
    else
      pair=(nginx larder-api)
    fi
    # The pair's order alternates between rounds.
    [ $((round % 2)) = 0 ] && pair=("${pair[1]}" "${pair[0]}")
    for server in "${pair[@]}"; do
      wait_quiet
      echo "round $round of $rounds: $mode $server" >&2
      case $server in
        nginx) run_nginx "$mode" "$round" ;;
        *) run_larder "$server" "$mode" "$round" ;;
      esac
    done
  done
done

echo "date: $(date -u +%F)  machine: $(nproc) cores, $(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2 }')"
echo "$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(h2load --version | head -1); -c$conns, one request in flight per connection; ${secs} s after 2 s warm-up; $rounds rounds; server on core 0, load on core 1"
echo "larder: $($larder --version)  nginx: $(nginx -v 2>&1 | sed 's|.*/||')  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out/results" "$hz" <<'PY'
import statistics, sys
path, hz = sys.argv[1], float(sys.argv[2])
runs = {}
for line in open(path):
    mode, name, _round, ticks, n, lat = line.split()
    runs.setdefault((mode, name), []).append((float(ticks) / hz / int(n) * 1e6, int(n), float(lat)))
print(f"{'mode':7} {'server':12} {'cpu µs/req':>10} {'requests':>9} {'latency µs':>10}  runs (cpu µs/req)")
for (mode, name), rs in runs.items():
    cpu = statistics.median(r[0] for r in rs)
    print(f"{mode:7} {name:12} {cpu:10.2f} {statistics.median(r[1] for r in rs):9.0f} "
          f"{statistics.median(r[2] for r in rs):10.0f}  " + " ".join(f"{r[0]:.2f}" for r in rs))
print("(latency: wrk's p50 for HTTP/1.1, h2load's mean for HTTP/2; both closed loop)")
print()
for mode in ("h1", "h2c", "h1-tls", "h2-tls"):
    a, b = runs.get((mode, "larder-api")), runs.get((mode, "nginx"))
    if a and b:
        ratio = statistics.median(r[0] for r in a) / statistics.median(r[0] for r in b)
        print(f"{mode}: larder-api/nginx cpu per request {ratio:.2f}x")
a, b = runs.get(("auth", "larder-auth")), runs.get(("auth", "larder-open"))
if a and b:
    ratio = statistics.median(r[0] for r in a) / statistics.median(r[0] for r in b)
    print(f"auth: API key + rate limit / neither, cpu per request {ratio:.2f}x ({(ratio - 1) * 100:+.0f}%)")
PY
