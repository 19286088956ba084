"""Real Python clients against a running `larder cache`: redis-py over RESP2 and RESP3, and
grpcio (with stubs generated from proto/ at test time), health checking and server reflection.

The node's addresses come from LARDER_RESP_ADDR and LARDER_GRPC_ADDR (set by .ci/run).
"""

import os
import sys
import tempfile
import time

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc

RESP_HOST, RESP_PORT = os.environ.get("LARDER_RESP_ADDR", "127.0.0.1:6380").rsplit(":", 1)
GRPC_ADDR = os.environ.get("LARDER_GRPC_ADDR", "127.0.0.1:7070")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def r(request):
    client = redis.Redis(host=RESP_HOST, port=int(RESP_PORT), protocol=request.param,
                         decode_responses=True)
    client.flushall()
    yield client
    client.close()


def test_strings_and_expiry(r):
    assert r.set("user:1", "ada") is True
    assert r.get("user:1") == "ada"
    assert r.get("missing") is None
    assert r.set("user:1", "bob", nx=True) is None
    assert r.set("user:1", "bob", xx=True, get=True) == "ada"
    assert r.mset({"a": "1", "b": "2"}) is True
    assert r.mget("a", "b", "c") == ["1", "2", None]
    assert r.incr("a") == 2
    assert r.incrbyfloat("a", 0.5) == 2.5
    assert r.append("b", "x") == 2
    assert r.expire("b", 100) is True
    assert 99 <= r.ttl("b") <= 100
    assert r.persist("b") is True
    assert r.ttl("b") == -1
    assert r.ttl("missing") == -2
    assert r.exists("a", "b", "missing") == 2
    assert r.type("a") == "string"
    assert r.delete("a", "b") == 2
    assert r.getdel("user:1") == "bob"
    assert r.dbsize() == 0


def test_errors_match_redis(r):
    r.set("text", "abc")
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r.incr("text")
    with pytest.raises(redis.ResponseError, match="unknown command"):
        r.execute_command("NOSUCHCOMMAND", "x")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get' command"):
        r.execute_command("GET")
    assert r.ping() is True, "the connection survives errors"


def test_pipelines_and_scan(r):
    with r.pipeline(transaction=False) as pipe:
        for i in range(500):
            pipe.set(f"scan:{i:03}", i)
        pipe.get("scan:499")
        results = pipe.execute()
    assert results[-1] == "499"
    assert sorted(r.scan_iter(match="scan:*", count=50)) == sorted(f"scan:{i:03}" for i in range(500))
    assert len(r.keys("scan:1?9")) == 10
    assert r.randomkey().startswith("scan:")


def test_server_introspection(r):
    info = r.info()
    assert info["redis_version"].startswith("7.")
    assert "used_memory" in r.info("memory")
    assert r.info("keyspace") == {}
    config = r.config_get("maxmemory*")
    assert int(config["maxmemory"]) > 0 and "maxmemory-policy" in config
    r.client_setname("pytest")
    assert r.client_getname() == "pytest"
    assert any(c["name"] == "pytest" for c in r.client_list())
    assert isinstance(r.time()[0], int)
    assert r.echo("hi") == "hi"


def grpc_stubs():
    out = tempfile.mkdtemp()
    proto_root = os.path.join(ROOT, "proto")
    import grpc_tools
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    status = protoc.main(["protoc", f"-I{proto_root}", f"-I{well_known}", f"--python_out={out}",
                          f"--grpc_python_out={out}", "larder/cache/v1/cache.proto"])
    assert status == 0
    sys.path.insert(0, out)
    from larder.cache.v1 import cache_pb2, cache_pb2_grpc
    return cache_pb2, cache_pb2_grpc


def test_grpc_contract():
    pb, pb_grpc = grpc_stubs()
    with grpc.insecure_channel(GRPC_ADDR) as channel:
        stub = pb_grpc.CacheStub(channel)
        stored = stub.Set(pb.SetRequest(key=b"py:1", value=b"hello", ttl_ms=60_000))
        assert stored.stored and stored.version > 0
        entry = stub.Get(pb.GetRequest(key=b"py:1")).entry
        assert entry.value == b"hello" and entry.version == stored.version
        assert 0 < entry.ttl_ms <= 60_000
        assert not stub.Get(pb.GetRequest(key=b"py:none")).HasField("entry")
        many = stub.GetMany(pb.GetManyRequest(keys=[b"py:1", b"py:none"])).results
        assert [m.HasField("entry") for m in many] == [True, False]
        older = pb.SetRequest(key=b"py:1", value=b"old", mode=pb.SET_MODE_IF_NEWER_VERSION,
                              version=1)
        assert not stub.Set(older).stored
        with pytest.raises(grpc.RpcError) as err:
            stub.Set(pb.SetRequest(key=b"k", mode=pb.SET_MODE_IF_NEWER_VERSION))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert stub.Incr(pb.IncrRequest(key=b"py:n", delta=5)).value == 5


def test_grpc_health_and_reflection():
    with grpc.insecure_channel(GRPC_ADDR) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "larder.cache.v1.Cache"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # grpcio-reflection ships only the v1alpha client; v1 is checked by the Rust tests.
        for version in ("v1alpha",):
            module = __import__(f"grpc_reflection.{version}.reflection_pb2", fromlist=["x"])
            module_grpc = __import__(f"grpc_reflection.{version}.reflection_pb2_grpc",
                                     fromlist=["x"])
            stub = module_grpc.ServerReflectionStub(channel)
            request = module.ServerReflectionRequest(list_services="")
            response = next(stub.ServerReflectionInfo(iter([request])))
            names = {s.name for s in response.list_services_response.service}
            assert {"larder.cache.v1.Cache", "grpc.health.v1.Health"} <= names, (version, names)


def test_client_side_caching_sees_another_connections_write(monkeypatch):
    """redis-py's client-side cache over RESP3 (CLIENT TRACKING, invalidate pushes): a value
    written by another connection replaces the cached copy.

    redis-py (5.1 to 6.x) enables its cache only for servers whose HELLO reports Redis 7.4 or
    later; larder reports 7.2.0, the command set it implements, and CLIENT TRACKING is Redis
    6's. The test lowers that gate rather than the node overstating its version."""
    from redis.cache import CacheConfig
    from redis.connection import CacheProxyConnection

    assert CacheProxyConnection.MIN_ALLOWED_VERSION == "7.4.0"
    monkeypatch.setattr(CacheProxyConnection, "MIN_ALLOWED_VERSION", "7.2.0")

    cached = redis.Redis(host=RESP_HOST, port=int(RESP_PORT), protocol=3,
                         cache_config=CacheConfig(), decode_responses=True)
    other = redis.Redis(host=RESP_HOST, port=int(RESP_PORT), decode_responses=True)
    try:
        other.set("csc:k", "v1")
        assert cached.get("csc:k") == "v1"
        cache = cached.get_cache()
        assert cache.size == 1, "the read was cached"
        assert cached.get("csc:k") == "v1"
        other.set("csc:k", "v2")
        # The push races the writer's reply; the client applies it before its next read.
        deadline = time.monotonic() + 5
        while cached.get("csc:k") != "v2":
            assert time.monotonic() < deadline, "the cached copy was never invalidated"
            time.sleep(0.01)
        other.delete("csc:k")
        deadline = time.monotonic() + 5
        while cached.get("csc:k") is not None:
            assert time.monotonic() < deadline, "the delete was never seen"
            time.sleep(0.01)
    finally:
        cached.close()
        other.close()
