"""Read-through and write-through with redis-py against a running `larder cache` whose config
(written by .ci/run) gives keys `doc/{collection}/{id}` a write-through SQLite origin over the
database in LARDER_ORIGIN_DB. Skipped when that variable is unset.
"""

import os
import sqlite3
import uuid

import pytest
import redis

DB = os.environ.get("LARDER_ORIGIN_DB")
RESP_HOST, RESP_PORT = os.environ.get("LARDER_RESP_ADDR", "127.0.0.1:6380").rsplit(":", 1)

pytestmark = pytest.mark.skipif(not DB, reason="LARDER_ORIGIN_DB is not set")


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def r(request):
    client = redis.Redis(host=RESP_HOST, port=int(RESP_PORT), protocol=request.param,
                         decode_responses=True)
    yield client
    client.close()


def db():
    return sqlite3.connect(DB, timeout=5)


def test_a_miss_is_loaded_once_and_then_served_from_memory(r):
    doc = uuid.uuid4().hex
    with db() as conn:
        conn.execute("INSERT INTO documents (collection, id, body, version) VALUES (?, ?, ?, 3)",
                     ("books", doc, '{"title": "Dune"}'))
    key = f"doc/books/{doc}"
    assert r.get(key) == '{"title": "Dune"}'
    assert r.get(key) == '{"title": "Dune"}'
    assert r.mget(key, "plain-key") == ['{"title": "Dune"}', None]
    with db() as conn:
        (reads,) = conn.execute("SELECT reads FROM documents WHERE id = ?", (doc,)).fetchone()
    assert reads == 1
    assert r.get(f"doc/books/{uuid.uuid4().hex}") is None


def test_writes_go_to_the_database_first(r):
    doc = uuid.uuid4().hex
    key = f"doc/notes/{doc}"
    assert r.set(key, "hello") is True
    with db() as conn:
        row = conn.execute("SELECT body, version FROM documents WHERE id = ?", (doc,)).fetchone()
    assert row == ("hello", 1)
    assert r.get(key) == "hello"
    with pytest.raises(redis.ResponseError, match="write-through"):
        r.append(key, "!")
    with pytest.raises(redis.ResponseError, match="write-through"):
        r.set(key, "x", ex=10)


def test_invalidate_reloads_a_changed_row(r):
    doc = uuid.uuid4().hex
    key = f"doc/books/{doc}"
    with db() as conn:
        conn.execute("INSERT INTO documents (collection, id, body, version) VALUES (?, ?, 'v1', 1)",
                     ("books", doc))
    assert r.get(key) == "v1"
    with db() as conn:
        conn.execute("UPDATE documents SET body = 'v2', version = 2 WHERE id = ?", (doc,))
    assert r.get(key) == "v1"
    assert r.execute_command("INVALIDATE", key) == 1
    assert r.get(key) == "v2"


def test_hostile_ids_are_parameters(r):
    doc = "x'; DROP TABLE documents; --" + uuid.uuid4().hex
    with db() as conn:
        conn.execute("INSERT INTO documents (collection, id, body, version) VALUES (?, ?, 'ok', 1)",
                     ("books", doc))
    assert r.get(f"doc/books/{doc}") == "ok"
    with db() as conn:
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] >= 1
