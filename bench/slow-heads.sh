#!/usr/bin/env bash
# Server CPU time spent on request heads that arrive a byte at a time (a slow or hostile
# client): CONNS connections (default 20) each send a GET head with an X-Pad field of PAD bytes,
# one byte per TCP segment, round-robin, PACE bytes per second per connection (default 2000; 0
# sends as fast as the client can), so that a server that keeps up reads a byte at a time.
# Each server is pinned to core 0 and the client (bench/http/slow_heads.py) to core 1. A run's
# figure is the server's user+sys time (/proc/PID/stat) divided by the heads it answered; each
# server has REPEAT runs (default 3), and the table gives the median, the range and the median
# run's steal (CPU time the hypervisor took from the two cores: this VM's host is shared).
#   nginx       the document as a static file (bench/http/nginx.conf; its 8 KiB header buffers
#               refuse a longer field with 400, which the status column shows)
#   go          shared/peers/go-fastjson-api (net/http), GOMAXPROCS=1
#   larder-api  `larder api` (bench/http/api.toml), TOKIO_WORKER_THREADS=1
#   OTHER=path  also a second larder binary (say, an older build), labelled larder-other
# Usage: bench/slow-heads.sh [PAD…]  (default 7000 20000; CONNS, PACE, REPEAT and MAX_WAIT from
# the environment). Each head must arrive within the servers' client timeouts (larder: 30 s),
# so PAD / PACE must stay well under 30. CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
pads="${*:-7000 20000}"
conns="${CONNS:-20}"
pace="${PACE:-2000}"
repeat="${REPEAT:-3}"
port_go=8290 port_api=8291 port_nginx=8292 port_other=8293
doc_path=/v1/products/42
doc='{"data":{"type":"products","id":"42","attributes":{"name":"product 42","price":42.99,"tags":["catalog","demo"]}}}'
peer_src="${PEER_DIR:-../shared/peers/go-fastjson-api}"
max_wait="${MAX_WAIT:-600}"
# shellcheck source=bench/http/common.sh
. bench/http/common.sh
prepare python3:python3

cpu_ticks() { # pid: user+sys clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

steal_ticks() { # jiffies the hypervisor took from all cores
  awk '/^cpu / { print $9 }' /proc/stat
}

run_client() { # name port pid pad: REPEAT runs against one server, one result line
  local name=$1 port=$2 pid=$3 pad=$4 before after steal line runs=""
  for _ in $(seq 1 "$repeat"); do
    wait_quiet
    before=$(cpu_ticks "$pid") steal=$(steal_ticks)
    line=$(taskset -c 1 python3 bench/http/slow_heads.py "$port" "$doc_path" "$conns" "$pad" "$pace")
    after=$(cpu_ticks "$pid") steal=$(($(steal_ticks) - steal))
    runs="$runs$((after - before)) $steal $line"$'\n'
  done
  # Per run: server ticks, steal ticks, then the client's line. The median run by server CPU.
  sort -n <<<"${runs%$'\n'}" | awk -v name="$name" -v pad="$pad" -v hz="$hz" -v cores="$(nproc)" '
    { ticks[NR] = $1; stolen[NR] = $2; line[NR] = $0 }
    END {
      m = int((NR + 1) / 2)
      n = split(line[m], f, " "); for (i = 3; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
      per = hz / 1e6 * v["heads"]
      printf "%-13s %6d %6d %10.0f %13s %9.2f %6.1f%% %s\n", name, pad, v["heads"], ticks[m] / per,
        sprintf("%.0f-%.0f", ticks[1] / per, ticks[NR] / per), v["seconds"],
        100 * stolen[m] / (hz * cores * v["seconds"]), v["statuses"] }' >>"$out/results"
}

start_larder() { # binary dir port: `larder api` on core 0; sets $pid
  mkdir -p "$2"
  port_free "$3"
  TOKIO_WORKER_THREADS=1 taskset -c 0 "$1" --config bench/http/api.toml api \
    --listen "127.0.0.1:$3" --database "sqlite://$2/larder.db?mode=rwc" >>"$2/log" 2>&1 &
  pid=$!
  wait_port "$3"
  create_doc "$3"
}

printf '%-13s %6s %6s %10s %13s %9s %7s %s\n' server pad heads 'cpu µs/hd' range seconds steal statuses \
  >"$out/results"
echo "$doc" >"$out/doc.json"
for pad in $pads; do
  start_nginx "$out/nginx" "$port_nginx" "$out/doc.json"
  run_client nginx "$port_nginx" "$worker" "$pad"
  stop "$master"

  start_go "$port_go" 100
  run_client go "$port_go" "$pid" "$pad"
  stop "$pid"

  start_api "$larder" "$out/api-$pad" "$port_api"
  create_doc "$port_api"
  run_client larder-api "$port_api" "$pid" "$pad"
  stop "$pid"

  if [ -n "${OTHER:-}" ]; then
    start_api "$OTHER" "$out/other-$pad" "$port_other"
    create_doc "$port_other"
    run_client larder-other "$port_other" "$pid" "$pad"
    stop "$pid"
  fi
done
echo "$(date -u +%F) $(uname -m) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "CONNS=$conns PACE=$pace REPEAT=$repeat${OTHER:+ OTHER=$OTHER} bench/slow-heads.sh $pads"
cat "$out/results"
