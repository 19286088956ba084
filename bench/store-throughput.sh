#!/usr/bin/env bash
# Runs the store throughput criterion bench (larder-store vs quick_cache vs moka) several
# times and prints each run's ops/s and ratios, then the median ratio over runs. Repeating
# matters here: on a shared 2-core VM one run can move by ±30% from the next.
# Usage: bench/store-throughput.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
out=$(mktemp -d)
for i in $(seq 1 "$runs"); do
  echo "run $i of $runs" >&2
  cargo bench -q -p larder-store --bench throughput 2>/dev/null | grep -E '^zipf|thrpt:' > "$out/run$i.txt"
done
python3 - "$out" "$runs" <<'PY'
import re, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
unit = {"elem/s": 1, "Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9}
ratios = {}
for i in range(1, runs + 1):
    lines = open(f"{out}/run{i}.txt").read().splitlines()
    ops, name = {}, None
    for line in lines:
        if line.startswith("zipf"):
            name = line.split("/", 1)[1].strip()
        elif "thrpt:" in line and name and "%" not in line:
            m = re.findall(r"([\d.]+) (\w+/s)", line)
            value, u = m[1]
            ops[name] = float(value) * unit[u]
            name = None
    print(f"run {i}: " + "  ".join(f"{k}={v/1e6:.2f}M" for k, v in sorted(ops.items())))
    for t in ("1t", "2t"):
        for peer in ("quick_cache", "moka"):
            key = (t, peer)
            ratios.setdefault(key, []).append(ops[f"larder/{t}"] / ops[f"{peer}/{t}"])
for (t, peer), values in sorted(ratios.items()):
    print(f"larder/{peer} at {t}: median {statistics.median(values):.2f}x  (runs: {', '.join(f'{v:.2f}' for v in values)})")
PY
