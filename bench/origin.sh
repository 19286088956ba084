#!/usr/bin/env bash
# Read-through origins on this machine: `larder cache` pinned to core 0, the load pinned to
# core 1, an SQLite origin in a temporary directory.
#  a) Burst: N clients (100, 1000, 10000) read one missing key at once, over RESP and over
#     gRPC (`larder bench burst`), a fresh key per run. The origin's load query is
#     `UPDATE … SET reads = reads + 1 … RETURNING body, version`, so the database itself counts
#     the queries; both its count and larder_origin_loads_total are reported. Target: 1 load
#     per burst for every N.
#  b) Miss path: 1,000,000 rows of ~100-byte bodies, an open-loop run of uniform GETs over the
#     same million keys at 1000 requests/s (almost every one a miss that loads one row), a fresh
#     node per round. Target: p99 <= 2 ms. As a control, the same run against a node without
#     origins holding every key (prefilled), so all hits: the floor this machine gives.
#  c) Hit path: if BASELINE names a larder binary built before origins existed, the closed-loop
#     GET/SET run of BENCHMARKS.md (50 connections x pipeline 16, 100k keys, 90% GET) against
#     the baseline, the current node, and the current node with an origin whose pattern
#     (`doc/{id}`) matches none of the keys, taking turns; medians of ops/s and server CPU/op.
# Usage: [BASELINE=path/to/old/larder] bench/origin.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
port_resp=26390
port_grpc=27090
port_admin=27091
burst_sizes="100 1000 10000"
miss_rate=1000
miss_keys=1000000

for tool in python3 taskset curl; do
  command -v "$tool" >/dev/null || { echo "bench/origin.sh needs $tool" >&2; exit 1; }
done
# One descriptor per client on each side of a 10,000-client burst, and some to spare.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
  echo "the open-file limit is $(ulimit -n); a 10,000-client burst needs 10,100: raise ulimit -n" >&2
  exit 1
fi
cargo build --release --quiet -p larder
larder=target/release/larder
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

node=
start_node() { # binary [args…]: starts a node on core 0 and waits until it answers
  taskset -c 0 "$@" >"$out/node.log" 2>&1 &
  node=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port_admin/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$node" 2>/dev/null || break
    sleep 0.1
  done
  echo "the node did not come up:" >&2
  cat "$out/node.log" >&2
  return 1
}

stop_node() {
  kill "$node"
  wait "$node" 2>/dev/null || true
}

listen_flags=(--resp-addr "127.0.0.1:$port_resp" --grpc-addr "127.0.0.1:$port_grpc"
              --admin-addr "127.0.0.1:$port_admin" --max-memory 1gb)

write_config() { # file pattern db load-query
  cat >"$1" <<EOF
[cache]
max_clients = 12000
[[cache.origins]]
name = "docs"
pattern = "$2"
kind = "sql"
url = "sqlite://$3"
load = "$4"
fresh_ttl_ms = 600000
EOF
}

cpu_stat() { # total and steal jiffies of all CPUs
  awk '/^cpu /{ t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9 }' /proc/stat
}

steal_since() { # cpu_stat output: percent of CPU time the hypervisor took since then
  awk -v a="$1" -v b="$(cpu_stat)" \
    'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.1f", 100 * (y[2] - x[2]) / (y[1] - x[1] + 1e-9) }'
}

metric() { # name (+ optional label filter): the sum of its series at the admin port
  curl -sf "http://127.0.0.1:$port_admin/metrics" | python3 -c '
import sys
name, want = sys.argv[1], sys.argv[2:]
total = 0.0
for line in sys.stdin:
    if line.startswith(name + "{") and all(w in line for w in want):
        total += float(line.rsplit(" ", 1)[1])
print(f"{total:.9g}")' "$@"
}


# a) Burst ---------------------------------------------------------------------------------
echo "a) burst" >&2
burst_db="$out/burst.db"
python3 - "$burst_db" "$rounds" "$burst_sizes" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE docs(id TEXT PRIMARY KEY, body TEXT, version INTEGER, reads INTEGER DEFAULT 0)")
ids = [f"burst-{p}-{n}-{r}" for p in ("resp", "grpc") for n in sys.argv[3].split()
       for r in range(1, int(sys.argv[2]) + 1)]
db.executemany("INSERT INTO docs(id, body, version) VALUES (?, ?, 1)", ((i, "v" * 100) for i in ids))
db.commit()
PY
write_config "$out/burst.toml" 'key:{id}' "$burst_db" \
  'UPDATE docs SET reads = reads + 1 WHERE id = :id RETURNING body, version'
start_node "$larder" cache --config "$out/burst.toml" "${listen_flags[@]}"
for round in $(seq 1 "$rounds"); do
  for protocol in resp grpc; do
    for n in $burst_sizes; do
      id="burst-$protocol-$n-$round"
      line=$(taskset -c 1 "$larder" bench burst --protocol "$protocol" --clients "$n" \
             --key "key:$id" --addr "127.0.0.1:$([ "$protocol" = resp ] && echo $port_resp || echo $port_grpc)" \
             --admin "127.0.0.1:$port_admin" | grep '^summary') || true
      reads=$(python3 -c 'import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT reads FROM docs WHERE id = ?", (sys.argv[2],)).fetchone()[0])' \
              "$burst_db" "$id")
      echo "$line db_reads=$reads" | tee -a "$out/burst" >&2
    done
  done
done
stop_node

# b) Miss path -----------------------------------------------------------------------------
echo "b) miss path: building a $miss_keys-row database" >&2
miss_db="$out/miss.db"
python3 - "$miss_db" "$miss_keys" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n = int(sys.argv[2])
width = len(str(n - 1))  # the load generator's key width: key:000000 … key:999999
db.execute("CREATE TABLE docs(id TEXT PRIMARY KEY, body TEXT, version INTEGER, reads INTEGER DEFAULT 0)")
db.executemany("INSERT INTO docs(id, body, version) VALUES (?, ?, 1)",
               ((f"{i:0{width}d}", f"document {i:0{width}d} ".ljust(100, "x")) for i in range(n)))
db.commit()
PY
write_config "$out/miss.toml" 'key:{id}' "$miss_db" 'SELECT body, version FROM docs WHERE id = :id'
for round in $(seq 1 "$rounds"); do
  echo "b) miss path, round $round of $rounds" >&2
  for kind in miss hit; do
    if [ "$kind" = miss ]; then
      start_node "$larder" cache --config "$out/miss.toml" "${listen_flags[@]}"
    else
      start_node "$larder" cache "${listen_flags[@]}"
    fi
    prefill=false; [ "$kind" = hit ] && prefill=true
    # The control's prefill runs before its window, which alone is timed.
    stat=$(cpu_stat)
    line=$(taskset -c 1 "$larder" bench resp --addr "127.0.0.1:$port_resp" --rate "$miss_rate" \
           --keys "$miss_keys" --read-ratio 1 --prefill "$prefill" --connections 50 --duration 30 \
           --warmup 2 --server-pid "$node" 2>/dev/null | grep '^summary')
    steal=$(steal_since "$stat")
    gets=$(metric larder_cache_requests_total 'command="get"')
    loads=$(metric larder_origin_loads_total)
    load_s=$(metric larder_origin_load_duration_seconds_sum)
    echo "$kind $line gets=$gets loads=$loads load_seconds=$load_s steal_pct=$steal" \
      | tee -a "$out/miss" >&2
    stop_node
  done
done

# c) Hit path ------------------------------------------------------------------------------
if [ -n "${BASELINE:-}" ]; then
  python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute(
    "CREATE TABLE IF NOT EXISTS docs(id TEXT PRIMARY KEY, body TEXT, version INTEGER)")' "$out/hit.db"
  write_config "$out/hit.toml" 'doc/{id}' "$out/hit.db" 'SELECT body, version FROM docs WHERE id = :id'
  for round in $(seq 1 "$rounds"); do
    for variant in baseline current current+origin; do
      echo "c) hit path, round $round of $rounds: $variant" >&2
      case $variant in
        baseline) start_node "$BASELINE" cache "${listen_flags[@]}" ;;
        current) start_node "$larder" cache "${listen_flags[@]}" ;;
        current+origin) start_node "$larder" cache --config "$out/hit.toml" "${listen_flags[@]}" ;;
      esac
      stat=$(cpu_stat)
      line=$(taskset -c 1 "$larder" bench resp --addr "127.0.0.1:$port_resp" --connections 50 \
             --pipeline 16 --keys 100000 --read-ratio 0.9 --duration 10 --server-pid "$node" \
             2>/dev/null | grep '^summary')
      echo "$variant $line steal_pct=$(steal_since "$stat")" | tee -a "$out/hit" >&2
      stop_node
    done
  done
else
  echo "c) hit path skipped: set BASELINE to a larder binary built before origins" >&2
fi

# Results ----------------------------------------------------------------------------------
echo
echo "### Read-through origins (bench/origin.sh $rounds)"
echo
echo "date: $(date -u +%F)  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "larder: $($larder --version) at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (with uncommitted changes)'); node on core 0, load on core 1, SQLite origin"
python3 - "$out" "$rounds" <<'PY'
import os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])

def rows(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return []
    result = []
    for line in open(path):
        words = line.split()
        tag = words[0] if words and "=" not in words[0] and words[0] != "summary" else None
        fields = dict(w.split("=", 1) for w in words if "=" in w)
        result.append((tag, fields))
    return result

print()
print("a) Burst: N clients read one missing key at once (`larder bench burst`), a fresh key per run;")
print("   loads = larder_origin_loads_total growth, db = queries the database counted.")
print()
print("| protocol | clients | loads per run | db queries per run | coalesced | values/nils/errors | wall ms (median) | slowest reply ms (median) |")
print("|---|---:|---|---|---|---|---:|---:|")
burst = {}
for _, f in rows("burst"):
    burst.setdefault((f.get("protocol", "?"), int(f.get("clients", 0))), []).append(f)
ok = True
for (protocol, n), runs in sorted(burst.items()):
    loads = ",".join(f.get("loads", "?") for f in runs)
    db = ",".join(f.get("db_reads", "?") for f in runs)
    coalesced = ",".join(f.get("coalesced", "?") for f in runs)
    replies = ",".join(f"{f.get('values')}/{f.get('nils')}/{f.get('errors')}" for f in runs)
    wall = statistics.median(float(f.get("wall_ms", "nan")) for f in runs)
    slowest = statistics.median(float(f.get("max_ms", "nan")) for f in runs)
    ok &= all(f.get("loads") == "1" and f.get("db_reads") == "1" and f.get("errors") == "0" for f in runs)
    print(f"| {protocol} | {n} | {loads} | {db} | {coalesced} | {replies} | {wall:.1f} | {slowest:.1f} |")
print()
print(f"target: exactly 1 load per burst up to 10,000 clients: {'met' if ok else 'MISSED'}"
      + ("" if burst else " (no burst ran)"))

miss = rows("miss")
if miss:
    print()
    print("b) Miss path: open loop at 1000 GET/s over 1,000,000 keys, each loaded from a 1M-row SQLite")
    print("   table on a miss (50 connections, 30 s after 2 s warmup, a fresh node per round). Control:")
    print("   the same run against a node without origins holding every key (all hits). steal = CPU")
    print("   time the hypervisor took from this VM during the run.")
    print()
    print("| run | ops/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | misses (loads/GETs) | mean load µs | server CPU µs/op | steal % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, f in miss:
        gets, loads = float(f["gets"]), float(f["loads"])
        mean_load = f"{float(f['load_seconds']) / loads * 1e6:.0f}" if loads else "-"
        share = f"{loads / gets:.3f} ({loads:.0f}/{gets:.0f})" if kind == "miss" else "0 (all hits)"
        print(f"| {'misses' if kind == 'miss' else 'control: hits'} | {float(f['ops_per_sec']):.0f} "
              f"| {f['p50_us']} | {f['p90_us']} | {f['p99_us']} | {f['p999_us']} | {f['max_us']} | {share} "
              f"| {mean_load} | {f['server_cpu_us_per_op']} | {f['steal_pct']} |")
    print()
    for kind, label in (("miss", "misses"), ("hit", "control (all hits)")):
        runs = [f for k, f in miss if k == kind]
        if runs:
            p50 = statistics.median(float(f["p50_us"]) for f in runs)
            p99 = statistics.median(float(f["p99_us"]) for f in runs)
            cpu = statistics.median(float(f["server_cpu_us_per_op"]) for f in runs)
            print(f"median {label}: p50 {p50:.0f} µs, p99 {p99:.0f} µs, server CPU {cpu:.0f} µs/op")
    p99 = statistics.median(float(f["p99_us"]) for k, f in miss if k == "miss")
    print(f"target p99 <= 2000 µs at 1,000 misses/s: {'met' if p99 <= 2000 else 'MISSED'}")

hit = rows("hit")
if hit:
    print()
    print("c) Hit path: 50 connections x pipeline 16, 100k keys, 90% GET, 10 s, closed loop;")
    print(f"   medians of {rounds} alternating rounds (per-round values in brackets).")
    print()
    print("| node | ops/s | server CPU µs/op | p99 µs | steal % |")
    print("|---|---:|---:|---:|---:|")
    med = {}
    for variant in ("baseline", "current", "current+origin"):
        runs = [f for tag, f in hit if tag == variant]
        if not runs:
            continue
        ops = [float(f["ops_per_sec"]) for f in runs]
        cpu = [float(f["server_cpu_us_per_op"]) for f in runs]
        p99 = [float(f["p99_us"]) for f in runs]
        steal = ", ".join(f["steal_pct"] for f in runs)
        med[variant] = (statistics.median(ops), statistics.median(cpu))
        print(f"| {variant} | {med[variant][0]:.0f} [{', '.join(f'{o:.0f}' for o in ops)}] "
              f"| {med[variant][1]:.3f} [{', '.join(f'{c:.3f}' for c in cpu)}] "
              f"| {statistics.median(p99):.0f} | {steal} |")
    if "baseline" in med:
        print()
        for variant in ("current", "current+origin"):
            if variant in med:
                b, v = med["baseline"], med[variant]
                print(f"{variant}/baseline: ops/s {v[0] / b[0]:.3f}, CPU/op {v[1] / b[1]:.3f}")
PY
