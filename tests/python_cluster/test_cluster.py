"""A cluster of three `larder cache` nodes (started by .ci/run; their RESP addresses in
LARDER_CLUSTER_RESP, comma-separated) used by the clients Redis Cluster users have: redis-py's
RedisCluster, which learns the slots from CLUSTER SLOTS and follows -MOVED, and `redis-cli -c`."""

import os
import shutil
import subprocess
import uuid

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

ADDRS = [a for a in os.environ.get("LARDER_CLUSTER_RESP", "").split(",") if a]
pytestmark = pytest.mark.skipif(len(ADDRS) < 3, reason="LARDER_CLUSTER_RESP names no cluster")


def node(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


@pytest.fixture()
def rc():
    host, port = node(ADDRS[0])
    client = RedisCluster(startup_nodes=[ClusterNode(host, port)], decode_responses=True)
    yield client
    client.close()


def test_ten_thousand_keys_round_trip(rc):
    prefix = uuid.uuid4().hex
    for i in range(10_000):
        assert rc.set(f"{prefix}:{i}", str(i)) is True
    for i in range(10_000):
        assert rc.get(f"{prefix}:{i}") == str(i)
    # Every node holds a share: the keys really are spread over the cluster.
    sizes = [redis.Redis(*node(a)).dbsize() for a in ADDRS]
    assert all(size > 1_000 for size in sizes), sizes
    keys = [f"{prefix}:{i}" for i in range(0, 10_000, 97)]
    assert rc.mget_nonatomic(keys) == [k.split(":")[1] for k in keys]


def test_slots_and_nodes_describe_three_masters(rc):
    slots = rc.cluster_slots()
    assert sum(end - start + 1 for (start, end) in slots) == 16384
    assert len({info["primary"] for info in slots.values()}) == 3
    info = redis.Redis(*node(ADDRS[1]), decode_responses=True).execute_command("CLUSTER", "INFO")
    text = info if isinstance(info, str) else str(info)
    assert "cluster_state:ok" in text and "cluster_known_nodes:3" in text, text
    plain = redis.Redis(*node(ADDRS[2]), decode_responses=True)
    assert plain.info("cluster")["cluster_enabled"] == 1


def test_hash_tags_keep_multi_key_commands_on_one_node(rc):
    tag = uuid.uuid4().hex
    rc.mset({f"{{{tag}}}:a": "1", f"{{{tag}}}:b": "2"})
    assert rc.mget(f"{{{tag}}}:a", f"{{{tag}}}:b") == ["1", "2"]
    plain = redis.Redis(*node(ADDRS[0]))
    with pytest.raises(redis.ResponseError, match="hash to the same slot|MOVED"):
        plain.mget("a-key", "another-key")


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli not installed")
def test_redis_cli_follows_redirects():
    key = uuid.uuid4().hex
    host, port = node(ADDRS[0])
    out = subprocess.run(["redis-cli", "-c", "-h", host, "-p", str(port), "set", key, "hello"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "OK"
    for addr in ADDRS:
        host, port = node(addr)
        out = subprocess.run(["redis-cli", "-c", "-h", host, "-p", str(port), "get", key],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "hello"
