#!/usr/bin/env python3
"""The cluster's figures, from real `larder cache` processes on loopback.

  detect     SIGKILL a node of three, ROUNDS times (each node in turn), and time until every
             survivor's table (admin /cluster) no longer lists it; the node is restarted with
             the same id and the cluster settles before the next kill.
  rebalance  Write KEYS keys through redis-py's RedisCluster into three nodes, start a fourth
             and time until every table is settled (four ready members, nothing moving); the
             fraction of keys whose owner changed, against the ideal 1/4, keys lost, and the
             same again for SIGTERM (drain) of the fourth.
  routing    Server CPU per GET: plain redis-benchmark against one standalone node and against
             a node that is a cluster of its own (the routing check on every command, nothing
             redirected), and redis-benchmark --cluster against three clustered nodes; every
             node pinned to core 0, the load to core 1; the rounds alternate and medians are
             compared.
  forward    Server CPU per gRPC GET (`larder bench grpc`) on a two-node cluster, every key
             in one slot ({hash tag}) owned by node B: sent to B (direct) or to A, which
             forwards each once to B. CPU of both nodes is counted.

Usage: bench/cluster.py [--larder BIN] [--rounds N] [--keys N] [--only PART,…]
Prints a human report and one `result part=… key=value` line per figure."""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BASE = {"resp": 17000, "grpc": 17100, "admin": 17200, "gossip": 17300}
STANDALONE = 17400


class Node:
    """One `larder cache` process, node-<index>, pinned to `core`."""

    def __init__(self, larder, index, seeds, core, logdir, cluster=True):
        self.index, self.id = index, f"node-{index}"
        self.resp = f"127.0.0.1:{BASE['resp'] + index}"
        self.grpc = f"127.0.0.1:{BASE['grpc'] + index}"
        self.admin = f"127.0.0.1:{BASE['admin'] + index}"
        self.gossip = f"127.0.0.1:{BASE['gossip'] + index}"
        if not cluster:
            self.resp = f"127.0.0.1:{STANDALONE}"
            self.grpc = f"127.0.0.1:{STANDALONE + 1}"
            self.admin = f"127.0.0.1:{STANDALONE + 2}"
        self.args = ["taskset", "-c", str(core), larder, "cache", f"--resp-addr={self.resp}",
                     f"--grpc-addr={self.grpc}", f"--admin-addr={self.admin}", "--max-memory=512mb"]
        if cluster:
            self.args += [f"--cluster-addr={self.gossip}", f"--node-id={self.id}"]
            if seeds:
                self.args.append("--seeds=" + ",".join(seeds))
        self.log = os.path.join(logdir, f"{self.id}{'' if cluster else '-alone'}.log")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=open(self.log, "a"),
                                     stderr=subprocess.STDOUT, env=clean_env())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"{self.id} exited:\n{open(self.log).read()[-3000:]}")
            try:
                if urllib.request.urlopen(f"http://{self.admin}/readyz", timeout=1).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        sys.exit(f"{self.id} never became ready:\n{open(self.log).read()[-3000:]}")

    @property
    def pid(self):
        return self.proc.pid

    def table(self):
        with urllib.request.urlopen(f"http://{self.admin}/cluster", timeout=1) as response:
            return json.loads(response.read())

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("LARDER_")}


def seeds_of(count):
    return [f"127.0.0.1:{BASE['gossip'] + i}" for i in range(count)]


def settled(nodes, ids, timeout=60):
    """Waits until every node's table lists exactly `ids`, all ready, nothing moving."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            tables = [n.table() for n in nodes]
            if all(sorted(m["id"] for m in t["members"]) == sorted(ids)
                   and all(m["status"] == "ready" for m in t["members"])
                   and t["partitions_moving"] == 0 for t in tables) \
                    and len({t["epoch"] for t in tables}) == 1:
                return
        except OSError:
            pass
        time.sleep(0.02)
    sys.exit(f"cluster never settled on {ids}: {[n.table() for n in nodes]}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def report(part, **figures):
    print("result part=" + part + " " + " ".join(f"{k}={v}" for k, v in figures.items()),
          flush=True)


def detect(opts, logdir):
    nodes = [Node(opts.larder, i, seeds_of(3), 0, logdir) for i in range(3)]
    try:
        for n in nodes:
            n.start()
        ids = [n.id for n in nodes]
        settled(nodes, ids)
        times = []
        for round_ in range(opts.rounds):
            victim = nodes[round_ % 3]
            survivors = [n for n in nodes if n is not victim]
            killed = time.monotonic()
            victim.kill()
            pending = set(n.id for n in survivors)
            while pending:
                for n in survivors:
                    if n.id in pending:
                        try:
                            if victim.id not in [m["id"] for m in n.table()["members"]]:
                                pending.discard(n.id)
                        except OSError:
                            pass
                if time.monotonic() - killed > 30:
                    sys.exit(f"{victim.id} still listed 30 s after SIGKILL")
                time.sleep(0.005)
            times.append(time.monotonic() - killed)
            print(f"  kill {round_ + 1:2}/{opts.rounds} {victim.id}: every table without it "
                  f"after {times[-1]:.3f} s", flush=True)
            victim.start()
            settled(nodes, ids)
        report("detect", kills=len(times), p50_s=f"{statistics.median(times):.3f}",
               p99_s=f"{percentile(times, 0.99):.3f}", max_s=f"{max(times):.3f}",
               min_s=f"{min(times):.3f}")
    finally:
        for n in nodes:
            n.stop()


def owners(client):
    """slot -> node address, from CLUSTER SLOTS."""
    table = {}
    for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
        host = primary[0].decode() if isinstance(primary[0], bytes) else primary[0]
        for slot in range(int(start), int(end) + 1):
            table[slot] = (host, int(primary[1]))
    return table


def rebalance(opts, logdir):
    import redis
    from redis.cluster import ClusterNode, RedisCluster
    from redis.crc import key_slot

    nodes = [Node(opts.larder, i, seeds_of(3), 0, logdir) for i in range(3)]
    try:
        for n in nodes:
            n.start()
        settled(nodes, [n.id for n in nodes])
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", BASE["resp"])])
        keys = [f"user:{i}" for i in range(opts.keys)]
        pipe = client.pipeline()
        for i, key in enumerate(keys):
            pipe.set(key, f"v{i}")
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        slots = [key_slot(k.encode()) for k in keys]
        before = owners(redis.Redis(port=BASE["resp"]))

        fourth = Node(opts.larder, 3, seeds_of(3), 0, logdir)
        joined = time.monotonic()
        fourth.start()
        nodes.append(fourth)
        settled(nodes, [n.id for n in nodes])
        took = time.monotonic() - joined
        after = owners(redis.Redis(port=BASE["resp"]))
        moved = sum(1 for s in slots if before[s] != after[s])
        to_fourth = sum(1 for s in slots if after[s] == ("127.0.0.1", BASE["resp"] + 3))
        time.sleep(2.5)  # lost partitions handed off in full are dropped within a second
        sizes = [redis.Redis(port=BASE["resp"] + n.index).dbsize() for n in nodes]
        fresh = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", BASE["resp"])])
        lost = count_missing(fresh, keys)
        fraction = moved / len(keys)
        print(f"  fourth node: {moved} of {len(keys)} keys changed owner ({fraction:.4f}, ideal "
              f"0.25), {to_fourth} to it; settled in {took:.2f} s; held per node {sizes}; "
              f"keys lost {lost}", flush=True)
        report("rebalance", keys=len(keys), moved=moved, fraction=f"{fraction:.4f}",
               off_ideal=f"{abs(fraction - 0.25) / 0.25:.3f}", settle_s=f"{took:.2f}",
               held=sum(sizes), lost=lost)

        drained = time.monotonic()
        fourth.stop()
        nodes.pop()
        settled(nodes, [n.id for n in nodes])
        took = time.monotonic() - drained
        lost = count_missing(RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", BASE["resp"])]),
                             keys)
        print(f"  fourth node drained (SIGTERM): exited and settled in {took:.2f} s; keys lost "
              f"{lost}", flush=True)
        report("drain", keys=len(keys), settle_s=f"{took:.2f}", lost=lost)
    finally:
        for n in nodes:
            n.stop()


def count_missing(client, keys):
    missing = 0
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        missing += sum(1 for v in client.mget_nonatomic(chunk) if v is None)
    return missing


def redis_benchmark(args, pids):
    before = sum(cpu_ticks(p) for p in pids)
    out = subprocess.run(["taskset", "-c", "1", "redis-benchmark", *args, "-q"],
                         capture_output=True, text=True, check=True).stdout
    spent = sum(cpu_ticks(p) for p in pids) - before
    rps = float(re.findall(r"(?:GET|SET): ([0-9.]+) requests per second",
                           out.replace("\r", "\n"))[-1])
    return rps, spent


# A standalone node; a node in a cluster of its own (every command goes through the routing
# check and is served here: the cost of routing alone); three clustered nodes, all on core 0,
# under the same 50 connections (redis-benchmark --cluster spreads them, about 17 a node) and
# under 150 (50 a node, as the standalone node has).
SHAPES = ("alone", "one", "cluster", "cluster150")


def routing(opts, logdir):
    hz = os.sysconf("SC_CLK_TCK")
    results = {}
    for round_ in range(opts.rounds_cpu):
        for shape in SHAPES:
            if shape == "alone":
                nodes = [Node(opts.larder, 0, [], 0, logdir, cluster=False)]
            elif shape == "one":
                nodes = [Node(opts.larder, 0, [], 0, logdir)]
            else:
                nodes = [Node(opts.larder, i, seeds_of(3), 0, logdir) for i in range(3)]
            try:
                for n in nodes:
                    n.start()
                if shape != "alone":
                    settled(nodes, [n.id for n in nodes])
                host, port = nodes[0].resp.rsplit(":", 1)
                conns = "150" if shape == "cluster150" else "50"
                common = ["-h", host, "-p", port, "-c", conns, "-r", "100000", "-d", "32"]
                if shape.startswith("cluster"):
                    common.append("--cluster")
                pids = [n.pid for n in nodes]
                redis_benchmark(common + ["-t", "set", "-n", "300000", "-P", "16"], pids)
                for pipe, n in ((1, opts.requests_p1), (16, opts.requests_p16)):
                    rps, ticks = redis_benchmark(
                        common + ["-t", "get", "-n", str(n), "-P", str(pipe)], pids)
                    us = ticks / hz * 1e6 / n
                    results.setdefault((shape, pipe), []).append((rps, us))
                    print(f"  round {round_ + 1} {shape:10} -P {pipe:2}: {rps:9.0f} GET/s, "
                          f"{us:.3f} µs server CPU per GET", flush=True)
            finally:
                for n in nodes:
                    n.stop()
    for pipe in (1, 16):
        us = {k: statistics.median(u for _, u in results[(k, pipe)]) for k in SHAPES}
        ops = {k: statistics.median(r for r, _ in results[(k, pipe)]) for k in SHAPES}
        report("routing", pipeline=pipe, alone_us=f"{us['alone']:.3f}",
               one_us=f"{us['one']:.3f}", cluster_us=f"{us['cluster']:.3f}",
               one_ratio=f"{us['one'] / us['alone']:.3f}",
               ratio=f"{us['cluster'] / us['alone']:.3f}",
               cluster150_us=f"{us['cluster150']:.3f}",
               ratio150=f"{us['cluster150'] / us['alone']:.3f}", alone_ops=f"{ops['alone']:.0f}",
               one_ops=f"{ops['one']:.0f}", cluster_ops=f"{ops['cluster']:.0f}",
               cluster150_ops=f"{ops['cluster150']:.0f}")


def grpc_bench(opts, addr, prefix, pids):
    out = subprocess.run(
        ["taskset", "-c", "1", opts.larder, "bench", "grpc", f"--addr={addr}",
         f"--key-prefix={prefix}", "--keys=10000", "--read-ratio=1", f"--duration={opts.seconds}",
         "--server-pid=" + ",".join(map(str, pids))],
        capture_output=True, text=True, check=True, env=clean_env()).stdout
    line = next(l for l in out.splitlines() if l.startswith("summary "))
    fields = dict(f.split("=", 1) for f in line.split()[1:])
    assert fields["errors"] == "0" and fields["misses"] == "0", line
    return float(fields["ops_per_sec"]), float(fields["server_cpu_us_per_op"])


def forward(opts, logdir):
    import redis

    nodes = [Node(opts.larder, i, seeds_of(2), 0, logdir) for i in range(2)]
    try:
        for n in nodes:
            n.start()
        settled(nodes, [n.id for n in nodes])
        a, b = nodes
        slots = owners(redis.Redis(port=BASE["resp"]))
        client = redis.Redis(port=BASE["resp"])
        tag = next(t for t in (f"t{i}" for i in range(1000))
                   if slots[client.cluster("keyslot", f"{{{t}}}")] == ("127.0.0.1", BASE["resp"] + 1))
        prefix = f"key:{{{tag}}}:"
        pids = [a.pid, b.pid]
        forwarded_before = metric(a, "larder_cluster_forwarded_total")
        results = {"direct": [], "forwarded": []}
        for round_ in range(opts.rounds_cpu):
            for shape, node in (("direct", b), ("forwarded", a)):
                ops, us = grpc_bench(opts, node.grpc, prefix, pids)
                results[shape].append((ops, us))
                print(f"  round {round_ + 1} {shape:9}: {ops:9.0f} GET/s, {us:.3f} µs server CPU "
                      f"per GET (both nodes)", flush=True)
        forwarded = metric(a, "larder_cluster_forwarded_total") - forwarded_before
        direct = statistics.median(us for _, us in results["direct"])
        fwd = statistics.median(us for _, us in results["forwarded"])
        report("forward", direct_us=f"{direct:.3f}", forwarded_us=f"{fwd:.3f}",
               ratio=f"{fwd / direct:.3f}",
               direct_ops=f"{statistics.median(o for o, _ in results['direct']):.0f}",
               forwarded_ops=f"{statistics.median(o for o, _ in results['forwarded']):.0f}",
               forwarded_by_a=int(forwarded))
    finally:
        for n in nodes:
            n.stop()


def metric(node, name):
    with urllib.request.urlopen(f"http://{node.admin}/metrics", timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--larder", default="target/release/larder")
    parser.add_argument("--rounds", type=int, default=20, help="kills for `detect`")
    parser.add_argument("--rounds-cpu", type=int, default=3, help="rounds for routing/forward")
    parser.add_argument("--keys", type=int, default=100_000, help="keys for `rebalance`")
    parser.add_argument("--requests-p1", type=int, default=300_000)
    parser.add_argument("--requests-p16", type=int, default=2_000_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="per `forward` run")
    parser.add_argument("--only", default="detect,rebalance,routing,forward")
    opts = parser.parse_args()
    if not shutil.which("redis-benchmark"):
        sys.exit("redis-benchmark is needed (apt-get install redis-tools)")
    parts = {"detect": detect, "rebalance": rebalance, "routing": routing, "forward": forward}
    with tempfile.TemporaryDirectory() as logdir:
        for name in opts.only.split(","):
            print(f"== {name}", flush=True)
            parts[name](opts, logdir)


if __name__ == "__main__":
    main()
