# Shell functions the HTTP bench scripts (compare-http.sh, latency-http.sh, slow-heads.sh)
# share: waiting for a quiet machine and for a port, starting nginx, the Go peer and `larder
# api` on core 0, fetching one URL, stopping a server, creating the benchmark document.
# Sourced, not run; the caller sets `peer_src` (the Go peer's sources) and `max_wait` (seconds
# to wait for quiet before measuring anyway), calls `prepare`, and sets `doc` and `doc_path`
# for create_doc.

prepare() { # command:package…: installs the missing commands' packages (nginx, the Go
  # toolchain, curl and the given ones), builds larder, makes the scratch directory $out
  # (removed on exit) and the Go peer $out/peer from $peer_src; sets larder, hz and out
  local missing=() need
  for need in nginx:nginx go:golang-go curl:curl "$@"; do
    command -v "${need%%:*}" >/dev/null || missing+=("${need#*:}")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # LARDER_BIN runs a binary built elsewhere (an older commit, for a before/after comparison)
  if [ -z "${LARDER_BIN:-}" ]; then cargo build --release --quiet -j1 -p larder; fi
  larder="${LARDER_BIN:-${CARGO_TARGET_DIR:-target}/release/larder}"
  # Not passed on: binaries before 4aa0b51 refuse to start beside an unknown LARDER_* variable.
  unset LARDER_BIN
  hz=$(getconf CLK_TCK)
  out=$(mktemp -d)
  chmod 755 "$out" # nginx's worker runs as nobody and must reach the document
  trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$out"' EXIT
  (cd "$peer_src" && go build -o "$out/peer" main.go)
}

busy_ticks() { # ticks both cores spent on anything but idle and iowait, steal included
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

wait_quiet() { # the cores are shared: measure only while nobody compiles, benchmarks or
  # keeps the cores busy (over 0.3 of a core for 2 s); after $max_wait seconds, measure anyway
  local busy idle_from waited=0
  while :; do
    busy=$( (pgrep -ax 'cargo|rustc|wrk'; pgrep -af 'redis-benchmark|larder bench'; true) | cut -c1-80)
    idle_from=$(busy_ticks); sleep 2
    if [ -z "$busy" ] && [ $(($(busy_ticks) - idle_from)) -le $((hz * 2 * 3 / 10)) ]; then
      return 0
    fi
    if [ "$waited" -ge "$max_wait" ]; then
      echo "measuring although the machine is busy: ${busy:-other load}" >&2; return 0
    fi
    echo "waiting 30 s for: ${busy:-other load on the cores}" >&2
    sleep 28; waited=$((waited + 30))
  done
}

port_free() { # refuses to start a server where something already listens
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "something already listens on port $1" >&2; exit 1
  fi
}

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on $1" >&2; return 1
}

start_nginx() { # dir port file: nginx (bench/http/nginx.conf, one worker) on core 0, serving
  # file at $doc_path from dir/www; sets master and worker (the worker does the serving)
  local dir=$1 port=$2
  mkdir -p "$dir/www${doc_path%/*}"
  cp "$3" "$dir/www$doc_path"
  chmod -R a+rX "$dir"
  sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" bench/http/nginx.conf >"$dir/nginx.conf"
  port_free "$port"
  taskset -c 0 nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
  master=$!
  wait_port "$port"
  for _ in $(seq 1 100); do worker=$(pgrep -P "$master") && break; sleep 0.1; done
}

start_go() { # port preload: the Go peer ($out/peer) on core 0 with GOMAXPROCS=1 and documents
  # 0…preload-1; sets pid
  port_free "$1"
  GOMAXPROCS=1 taskset -c 0 "$out/peer" -addr "127.0.0.1:$1" -preload "$2" 2>>"$out/go.log" &
  pid=$!
  wait_port "$1"
}

start_api() { # binary dir port: `larder api` (bench/http/api.toml) on core 0 with
  # TOKIO_WORKER_THREADS=1, over dir/larder.db; sets pid
  mkdir -p "$2"
  port_free "$3"
  TOKIO_WORKER_THREADS=1 taskset -c 0 "$1" --config bench/http/api.toml api \
    --listen "127.0.0.1:$3" --database "sqlite://$2/larder.db?mode=rwc" >>"$2/log" 2>&1 &
  pid=$!
  wait_port "$3"
}

fetch() { # url file -> prints "status bytes"
  curl -s -o "$2" -w '%{http_code} %{size_download}' "$1"
}

stop() { # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

create_doc() { # port
  local status
  status=$(curl -s -o "$out/created" -w '%{http_code}' -X POST -H 'Content-Type: application/vnd.api+json' \
           -d "$doc" "http://127.0.0.1:$1/v1/products")
  if [ "$status" != 201 ]; then
    echo "creating the document on port $1 answered $status" >&2; cat "$out/created" >&2; exit 1
  fi
  curl -s -o /dev/null "http://127.0.0.1:$1$doc_path" # the first read fills the cache
}
