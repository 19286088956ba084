//! Every node operation through both wires: one table of cases, each run once over RESP (a
//! real Redis client) and once over gRPC, on keys of their own. Both runs must agree on the
//! reply (the same value, or the same error code and text), on what the key holds afterwards,
//! and on the mutation records the node emitted. Keys under `wt/` have a write-through SQLite
//! origin, so the origin guards are compared too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use larder_cache::NodeOptions;
use larder_cache::config::OriginConfig;
use larder_cache::testing::{Recorded, Recorder, TestNode, config};
use larder_proto::ErrorCode;
use larder_proto::grpc::cache::v1 as pb;
use pb::cache_client::CacheClient;
use redis::aio::MultiplexedConnection;
use tonic::transport::Channel;

/// What an operation answered, in terms both wires can express.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    /// A value, or none.
    Value(Option<Vec<u8>>),
    /// Several values (`MGET`, `GetMany`).
    Values(Vec<Option<Vec<u8>>>),
    /// A count or a counter's value.
    Int(i64),
    /// Whether the operation took effect.
    Done(bool),
    /// A failure: its text (after the RESP prefix), and the codes it was given, which must
    /// both come from one [`ErrorCode`]: the RESP prefix over RESP, the gRPC code over gRPC.
    Error(String, Code),
}

/// The code half of a failure, as one wire shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Code {
    Resp(String),
    Grpc(tonic::Code),
}

impl Reply {
    /// The reply with the wire-specific code dropped, once checked against the other wire's.
    fn agreed(self, other: &Self) -> Self {
        match (self, other) {
            (Self::Error(text, mine), Self::Error(_, theirs)) => {
                let (prefix, grpc) = match (&mine, theirs) {
                    (Code::Resp(p), Code::Grpc(g)) | (Code::Grpc(g), Code::Resp(p)) => (p, *g),
                    _ => panic!("one reply from each wire"),
                };
                assert!(
                    ErrorCode::ALL
                        .iter()
                        .any(|c| c.resp_prefix() == prefix && c.grpc() == grpc),
                    "{prefix} and {grpc:?} come from no one code ({text})"
                );
                Self::Error(text, Code::Resp(String::new()))
            }
            (reply, _) => reply,
        }
    }
}

/// One operation, as each wire asks for it. `{k}` in the RESP words is the run's key.
struct Case {
    name: &'static str,
    /// Keys (suffixes of the run's key) and values set over RESP before the operation.
    before: &'static [(&'static str, &'static str)],
    /// The key's prefix: `plain/` or `wt/` (write-through origin).
    prefix: &'static str,
    resp: &'static [&'static str],
    grpc: fn(&str) -> Op,
    /// How a RESP reply reads as a [`Reply`].
    read: fn(redis::Value) -> Reply,
}

/// A gRPC call.
enum Op {
    Get(String),
    GetMany(Vec<String>),
    Set(pb::SetRequest),
    Delete(Vec<String>),
    Expire(String, u64),
    Incr(String, i64),
    Invalidate(Vec<String>),
}

fn set(key: &str, value: &str, mode: pb::SetMode, ttl_ms: u64, keep_ttl: bool) -> Op {
    Op::Set(pb::SetRequest {
        key: Bytes::from(key.to_owned()),
        value: Bytes::from(value.to_owned()),
        mode: mode as i32,
        ttl_ms,
        keep_ttl,
        version: 0,
        lease: 0,
        await_invalidation: false,
    })
}

fn value(v: redis::Value) -> Reply {
    match v {
        redis::Value::Nil => Reply::Value(None),
        redis::Value::BulkString(b) => Reply::Value(Some(b)),
        other => panic!("not a value: {other:?}"),
    }
}

fn int(v: redis::Value) -> Reply {
    match v {
        redis::Value::Int(n) => Reply::Int(n),
        other => panic!("not an integer: {other:?}"),
    }
}

/// `OK` or 1 is done; nil or 0 is not.
fn done(v: redis::Value) -> Reply {
    match v {
        redis::Value::Okay | redis::Value::Int(1) => Reply::Done(true),
        redis::Value::Nil | redis::Value::Int(0) => Reply::Done(false),
        other => panic!("not a yes or no: {other:?}"),
    }
}

fn values(v: redis::Value) -> Reply {
    match v {
        redis::Value::Array(items) => Reply::Values(
            items
                .into_iter()
                .map(|item| match value(item) {
                    Reply::Value(v) => v,
                    _ => unreachable!(),
                })
                .collect(),
        ),
        other => panic!("not an array: {other:?}"),
    }
}

const CASES: &[Case] = &[
    Case {
        name: "get of a missing key",
        before: &[],
        prefix: "plain/",
        resp: &["GET", "{k}"],
        grpc: |k| Op::Get(k.into()),
        read: value,
    },
    Case {
        name: "get of a present key",
        before: &[("", "v1")],
        prefix: "plain/",
        resp: &["GET", "{k}"],
        grpc: |k| Op::Get(k.into()),
        read: value,
    },
    Case {
        name: "get many",
        before: &[("a", "1"), ("c", "3")],
        prefix: "plain/",
        resp: &["MGET", "{k}a", "{k}b", "{k}c"],
        grpc: |k| Op::GetMany(vec![format!("{k}a"), format!("{k}b"), format!("{k}c")]),
        read: values,
    },
    Case {
        name: "plain set",
        before: &[],
        prefix: "plain/",
        resp: &["SET", "{k}", "v"],
        grpc: |k| set(k, "v", pb::SetMode::Always, 0, false),
        read: done,
    },
    Case {
        name: "set if absent, present",
        before: &[("", "old")],
        prefix: "plain/",
        resp: &["SET", "{k}", "new", "NX"],
        grpc: |k| set(k, "new", pb::SetMode::IfAbsent, 0, false),
        read: done,
    },
    Case {
        name: "set if present, absent",
        before: &[],
        prefix: "plain/",
        resp: &["SET", "{k}", "new", "XX"],
        grpc: |k| set(k, "new", pb::SetMode::IfPresent, 0, false),
        read: done,
    },
    Case {
        name: "set with a time to live",
        before: &[],
        prefix: "plain/",
        resp: &["SET", "{k}", "v", "PX", "600000"],
        grpc: |k| set(k, "v", pb::SetMode::Always, 600_000, false),
        read: done,
    },
    Case {
        name: "set keeping the time to live",
        before: &[],
        prefix: "plain/",
        resp: &["SET", "{k}", "v", "KEEPTTL"],
        grpc: |k| set(k, "v", pb::SetMode::Always, 0, true),
        read: done,
    },
    Case {
        name: "delete",
        before: &[("a", "1"), ("b", "2")],
        prefix: "plain/",
        resp: &["DEL", "{k}a", "{k}b", "{k}c"],
        grpc: |k| Op::Delete(vec![format!("{k}a"), format!("{k}b"), format!("{k}c")]),
        read: int,
    },
    Case {
        name: "expire a present key",
        before: &[("", "v")],
        prefix: "plain/",
        resp: &["PEXPIRE", "{k}", "600000"],
        grpc: |k| Op::Expire(k.into(), 600_000),
        read: done,
    },
    Case {
        name: "expire a missing key",
        before: &[],
        prefix: "plain/",
        resp: &["PEXPIRE", "{k}", "600000"],
        grpc: |k| Op::Expire(k.into(), 600_000),
        read: done,
    },
    Case {
        name: "increment",
        before: &[("", "40")],
        prefix: "plain/",
        resp: &["INCRBY", "{k}", "2"],
        grpc: |k| Op::Incr(k.into(), 2),
        read: int,
    },
    Case {
        name: "increment a value that is not an integer",
        before: &[("", "forty")],
        prefix: "plain/",
        resp: &["INCRBY", "{k}", "2"],
        grpc: |k| Op::Incr(k.into(), 2),
        read: int,
    },
    Case {
        name: "increment past the largest integer",
        before: &[("", "9223372036854775807")],
        prefix: "plain/",
        resp: &["INCRBY", "{k}", "1"],
        grpc: |k| Op::Incr(k.into(), 1),
        read: int,
    },
    Case {
        name: "invalidate",
        before: &[("a", "1")],
        prefix: "plain/",
        resp: &["INVALIDATE", "{k}a", "{k}b"],
        grpc: |k| Op::Invalidate(vec![format!("{k}a"), format!("{k}b")]),
        read: int,
    },
    Case {
        name: "plain set of a write-through key goes to the origin",
        before: &[],
        prefix: "wt/",
        resp: &["SET", "{k}", "through"],
        grpc: |k| set(k, "through", pb::SetMode::Always, 0, false),
        read: done,
    },
    Case {
        name: "set with options of a write-through key is refused",
        before: &[],
        prefix: "wt/",
        resp: &["SET", "{k}", "v", "PX", "600000"],
        grpc: |k| set(k, "v", pb::SetMode::Always, 600_000, false),
        read: done,
    },
    Case {
        name: "increment of a write-through key is refused",
        before: &[("", "1")],
        prefix: "wt/",
        resp: &["INCRBY", "{k}", "1"],
        grpc: |k| Op::Incr(k.into(), 1),
        read: int,
    },
    Case {
        name: "expire of a write-through key re-times the cached copy",
        before: &[("", "1")],
        prefix: "wt/",
        resp: &["PEXPIRE", "{k}", "600000"],
        grpc: |k| Op::Expire(k.into(), 600_000),
        read: done,
    },
    Case {
        name: "delete of a write-through key drops the cached copy",
        before: &[("", "1")],
        prefix: "wt/",
        resp: &["DEL", "{k}"],
        grpc: |k| Op::Delete(vec![k.into()]),
        read: int,
    },
];

/// A node whose `wt/{id}` keys write through to a fresh SQLite file.
async fn node(recorder: Arc<Recorder>) -> TestNode {
    sqlx::any::install_default_drivers();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("larder-wires-{}-{n}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::any::AnyPoolOptions::new()
        .connect(&url)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE docs (id TEXT PRIMARY KEY, body TEXT NOT NULL, version BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let origin = OriginConfig {
        name: "wt".into(),
        pattern: "wt/{id}".into(),
        kind: "sql".into(),
        url,
        load: "SELECT body, version FROM docs WHERE id = :id".into(),
        store: "INSERT INTO docs (id, body, version) VALUES (:id, :value, 1) \
                ON CONFLICT (id) DO UPDATE SET body = excluded.body, version = docs.version + 1 \
                RETURNING version"
            .into(),
        write_through: true,
        ..OriginConfig::default()
    };
    let options = NodeOptions {
        mutations: Some(recorder),
        ..NodeOptions::default()
    };
    let config = larder_cache::CacheConfig {
        origins: vec![origin],
        ..config()
    };
    tokio::task::spawn_blocking(move || TestNode::with_options(config, options))
        .await
        .unwrap()
}

async fn run_resp(con: &mut MultiplexedConnection, case: &Case, key: &str) -> Reply {
    let mut cmd = redis::cmd(case.resp[0]);
    for word in &case.resp[1..] {
        cmd.arg(word.replace("{k}", key));
    }
    match cmd.query_async::<redis::Value>(con).await {
        Ok(reply) => (case.read)(reply),
        Err(err) => Reply::Error(
            err.detail().unwrap_or_default().to_owned(),
            Code::Resp(err.code().expect("a server error").to_owned()),
        ),
    }
}

async fn run_grpc(client: &mut CacheClient<Channel>, op: Op) -> Reply {
    let failed = |status: tonic::Status| {
        Reply::Error(status.message().to_owned(), Code::Grpc(status.code()))
    };
    let bytes = |k: String| Bytes::from(k);
    match op {
        Op::Get(key) => match client
            .get(pb::GetRequest {
                key: bytes(key),
                lease: false,
                track: 0,
            })
            .await
        {
            Ok(r) => Reply::Value(r.into_inner().entry.map(|e| e.value.to_vec())),
            Err(s) => failed(s),
        },
        Op::GetMany(keys) => {
            let keys = keys.into_iter().map(bytes).collect();
            match client.get_many(pb::GetManyRequest { keys }).await {
                Ok(r) => Reply::Values(
                    r.into_inner()
                        .results
                        .into_iter()
                        .map(|r| r.entry.map(|e| e.value.to_vec()))
                        .collect(),
                ),
                Err(s) => failed(s),
            }
        }
        Op::Set(req) => match client.set(req).await {
            Ok(r) => Reply::Done(r.into_inner().stored),
            Err(s) => failed(s),
        },
        Op::Delete(keys) => {
            let keys = keys.into_iter().map(bytes).collect();
            match client
                .delete(pb::DeleteRequest {
                    keys,
                    await_invalidation: false,
                })
                .await
            {
                Ok(r) => Reply::Int(i64::try_from(r.into_inner().deleted).unwrap()),
                Err(s) => failed(s),
            }
        }
        Op::Expire(key, ttl_ms) => {
            let req = pb::ExpireRequest {
                key: bytes(key),
                ttl_ms,
            };
            match client.expire(req).await {
                Ok(r) => Reply::Done(r.into_inner().found),
                Err(s) => failed(s),
            }
        }
        Op::Incr(key, delta) => {
            let req = pb::IncrRequest {
                key: bytes(key),
                delta,
            };
            match client.incr(req).await {
                Ok(r) => Reply::Int(r.into_inner().value),
                Err(s) => failed(s),
            }
        }
        Op::Invalidate(keys) => {
            let keys = keys.into_iter().map(bytes).collect();
            match client
                .invalidate(pb::InvalidateRequest {
                    keys,
                    await_invalidation: false,
                })
                .await
            {
                Ok(r) => Reply::Int(i64::try_from(r.into_inner().invalidated).unwrap()),
                Err(s) => failed(s),
            }
        }
    }
}

/// Sets the case's keys up under `key`, and forgets the records that made.
async fn prepare(con: &mut MultiplexedConnection, recorder: &Recorder, case: &Case, key: &str) {
    for (suffix, value) in case.before {
        let _: () = redis::cmd("SET")
            .arg(format!("{key}{suffix}"))
            .arg(*value)
            .query_async(con)
            .await
            .unwrap_or_else(|e| panic!("{}: setting up: {e}", case.name));
    }
    recorder.take();
}

/// What a key holds after a case: its value and whether it expires.
async fn state(client: &mut CacheClient<Channel>, key: &str) -> Option<(Vec<u8>, bool)> {
    let req = pb::GetRequest {
        key: Bytes::from(key.to_owned()),
        lease: false,
        track: 0,
    };
    let entry = client.get(req).await.unwrap().into_inner().entry?;
    Some((entry.value.to_vec(), entry.ttl_ms > 0))
}

/// The records with the run's key taken out, so two runs can be compared.
fn records(recorder: &Recorder, key: &str) -> Vec<(String, String, bool, bool)> {
    recorder
        .take()
        .into_iter()
        .map(
            |Recorded {
                 key: k,
                 kind,
                 version,
                 expires_at,
             }| {
                let k = String::from_utf8(k).unwrap().replacen(key, "{k}", 1);
                (k, format!("{kind:?}"), version > 0, expires_at.is_some())
            },
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_has_the_same_outcome_over_resp_and_grpc() {
    let recorder = Recorder::new();
    let node = node(recorder.clone()).await;
    let redis = redis::Client::open(format!("redis://{}/", node.resp)).unwrap();
    let mut con = redis.get_multiplexed_async_connection().await.unwrap();
    let mut client = CacheClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap();

    for (i, case) in CASES.iter().enumerate() {
        let mut outcomes = Vec::new();
        for wire in ["resp", "grpc"] {
            let key = format!("{}{wire}-{i}-", case.prefix);
            prepare(&mut con, &recorder, case, &key).await;
            let reply = if wire == "resp" {
                run_resp(&mut con, case, &key).await
            } else {
                run_grpc(&mut client, (case.grpc)(&key)).await
            };
            let mut after = Vec::new();
            for suffix in ["", "a", "b", "c"] {
                after.push(state(&mut client, &format!("{key}{suffix}")).await);
            }
            outcomes.push((reply, after, records(&recorder, &key)));
        }
        let (resp, grpc) = (outcomes.remove(0), outcomes.remove(0));
        let (resp_reply, grpc_reply) = (resp.0.clone().agreed(&grpc.0), grpc.0.agreed(&resp.0));
        let resp = (resp_reply, resp.1, resp.2);
        let grpc = (grpc_reply, grpc.1, grpc.2);
        assert_eq!(resp, grpc, "{}: resp, then grpc", case.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cases_cover_refusals_and_every_record_kind() {
    // Guards against a table that would compare nothing: the RESP runs alone must include
    // errors of both guard kinds and records of every kind a client can cause.
    let recorder = Recorder::new();
    let node = node(recorder.clone()).await;
    let redis = redis::Client::open(format!("redis://{}/", node.resp)).unwrap();
    let mut con = redis.get_multiplexed_async_connection().await.unwrap();
    let (mut errors, mut kinds) = (Vec::<String>::new(), Vec::new());
    for (i, case) in CASES.iter().enumerate() {
        let key = format!("{}cover-{i}-", case.prefix);
        prepare(&mut con, &recorder, case, &key).await;
        if let Reply::Error(text, _) = run_resp(&mut con, case, &key).await {
            errors.push(text);
        }
        kinds.extend(records(&recorder, &key).into_iter().map(|r| r.1));
    }
    let guards = errors
        .iter()
        .filter(|t| t.contains("write-through"))
        .count();
    assert_eq!(guards, 2, "both guards refuse: {errors:?}");
    assert!(errors.len() >= 4, "store errors too: {errors:?}");
    for kind in ["Set", "Delete", "Expire", "Invalidate"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
}
