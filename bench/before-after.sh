#!/usr/bin/env bash
# Speed before and after a change, in one run: bench/compare-redis.sh, compare-grpc.sh and
# compare-http.sh, each first with BEFORE (a `larder` binary built from the older commit, e.g.
# `git worktree add /tmp/base <commit> && cargo build --release -p larder` there) and then with
# this checkout's release build, so both face the same machine within minutes. Each script's
# own report follows its heading; compare the larder rows (and their ratios to the peers, which
# run in the same script run and absorb the machine's drift).
# Usage: bench/before-after.sh BEFORE [ROUNDS]   (ROUNDS per script, default 3; SCRIPTS picks
# which of the three run, e.g. SCRIPTS=compare-redis)
set -euo pipefail
cd "$(dirname "$0")/.."
before="${1:?usage: bench/before-after.sh BEFORE_BINARY [ROUNDS]}"
rounds="${2:-3}"
[ -x "$before" ] || { echo "$before is not an executable" >&2; exit 1; }
before=$(realpath "$before")
# Two commands: with --example, cargo builds only examples of every package named.
cargo build --release --quiet -p larder
cargo build --release --quiet -p larder-cache --example grpc_floor
for script in ${SCRIPTS:-compare-redis compare-grpc compare-http}; do
  for side in before after; do
    echo "=== $script, $side ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
    if [ "$side" = before ]; then
      LARDER_BIN="$before" "bench/$script.sh" "$rounds"
    else
      "bench/$script.sh" "$rounds"
    fi
  done
done
