//! The Redis protocol over real sockets, with the `redis` crate as the client and raw bytes
//! for what a well-behaved client would never send.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use larder_cache::CacheConfig;
use support::{TestNode, admin_get, config, raw_exchange};

fn client(node: &TestNode) -> redis::Connection {
    redis::Client::open(format!("redis://{}/", node.resp))
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn a_redis_client_sets_gets_and_pipelines() {
    let node = TestNode::start();
    let mut con = client(&node);
    let _: () = redis::cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query(&mut con)
        .unwrap();
    let got: String = redis::cmd("GET").arg("greeting").query(&mut con).unwrap();
    assert_eq!(got, "hello");
    let missing: Option<String> = redis::cmd("GET").arg("nope").query(&mut con).unwrap();
    assert_eq!(missing, None);

    let mut pipe = redis::pipe();
    for i in 0..1_000 {
        pipe.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    pipe.cmd("MGET").arg("k0").arg("k999").arg("absent");
    let (values,): (Vec<Option<i64>>,) = pipe.query(&mut con).unwrap();
    assert_eq!(values, [Some(0), Some(999), None]);

    let err = redis::cmd("NOSUCHCMD")
        .arg("x")
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("unknown command"), "{err}");
    let still: String = redis::cmd("GET").arg("greeting").query(&mut con).unwrap();
    assert_eq!(
        still, "hello",
        "an unknown command does not cost the connection"
    );
}

#[test]
fn big_values_cross_many_reads_and_writes() {
    // One entry may fill one shard's share of the memory: two shards of 16 MiB here.
    let node = TestNode::with(CacheConfig {
        shards: 2,
        ..config()
    });
    let mut con = client(&node);
    let value: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut con)
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("big").query(&mut con).unwrap();
    assert_eq!(back, value);
}

#[test]
fn malformed_input_gets_redis_errors_and_a_close_and_others_are_unaffected() {
    let node = TestNode::start();
    let mut bystander = client(&node);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut bystander)
        .unwrap();
    let cases: [(&[u8], &str); 3] = [
        (
            b"*2\r\n$3\r\nGET\r\n+oops\r\n",
            "-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            b"*x\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"SET \"unbalanced\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (bytes, want) in cases {
        let (reply, closed) = raw_exchange(node.resp, bytes, Duration::from_secs(5));
        assert_eq!(String::from_utf8_lossy(&reply), want);
        assert!(closed, "the server closes after a protocol error");
    }
    let (reply, _) = raw_exchange(node.resp, b"GET k\r\n", Duration::from_millis(300));
    assert_eq!(reply, b"$1\r\nv\r\n", "inline commands work");
    let still: String = redis::cmd("GET").arg("k").query(&mut bystander).unwrap();
    assert_eq!(still, "v");
}

#[test]
fn limits_on_bulk_size_and_arguments_are_enforced_at_once() {
    let node = TestNode::with(CacheConfig {
        max_bulk: "1kb".into(),
        max_args: 8,
        ..config()
    });
    // The declared length alone is refused; the server does not wait for the payload.
    let (reply, closed) = raw_exchange(
        node.resp,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(reply, b"-ERR Protocol error: invalid bulk length\r\n");
    assert!(closed);
    let (reply, closed) = raw_exchange(node.resp, b"*100\r\n", Duration::from_secs(5));
    assert_eq!(reply, b"-ERR Protocol error: invalid multibulk length\r\n");
    assert!(closed);
}

#[test]
fn a_client_that_stalls_mid_request_is_disconnected_and_others_keep_going() {
    let node = TestNode::with(CacheConfig {
        request_timeout_ms: 300,
        ..config()
    });
    let mut staller = TcpStream::connect(node.resp).unwrap();
    staller.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk").unwrap();
    let mut con = client(&node);
    let started = Instant::now();
    for _ in 0..20 {
        let _: () = redis::cmd("SET").arg("x").arg("y").query(&mut con).unwrap();
    }
    staller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = staller.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the stalled client is closed");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn connections_past_max_clients_are_told_and_closed() {
    let node = TestNode::with(CacheConfig {
        max_clients: 2,
        ..config()
    });
    let mut a = client(&node);
    let mut b = client(&node);
    let _: () = redis::cmd("PING").query(&mut a).unwrap();
    let _: () = redis::cmd("PING").query(&mut b).unwrap();
    let (reply, closed) = raw_exchange(node.resp, b"", Duration::from_secs(5));
    assert_eq!(reply, b"-ERR max number of clients reached\r\n");
    assert!(closed);
    drop(a);
    // The slot frees once the server sees the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (reply, _) = raw_exchange(node.resp, b"PING\r\n", Duration::from_millis(300));
        if reply == b"+PONG\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {reply:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_password_is_required_when_configured() {
    let node = TestNode::with(CacheConfig {
        password: "s3cret".into(),
        ..config()
    });
    let (reply, _) = raw_exchange(node.resp, b"GET k\r\n", Duration::from_millis(300));
    assert_eq!(reply, b"-NOAUTH Authentication required.\r\n");
    let mut con = redis::Client::open(format!("redis://:s3cret@{}/", node.resp))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let wrong = redis::Client::open(format!("redis://:nope@{}/", node.resp))
        .unwrap()
        .get_connection();
    assert!(wrong.is_err());
}

#[test]
fn metrics_count_requests_and_shutdown_is_clean() {
    let mut node = TestNode::start();
    let mut con = client(&node);
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let _: Option<String> = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    let _: Option<String> = redis::cmd("GET").arg("missing").query(&mut con).unwrap();
    // A request is counted once its reply is written, which the client may see first: a
    // scrape right after the reply can be a moment behind, never wrong.
    let counted = r#"larder_cache_requests_total{protocol="resp",command="get",result="ok"} 2"#;
    let mut scrape = admin_get(&node, "/metrics", None);
    for _ in 0..50 {
        if scrape.1.contains(counted) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        scrape = admin_get(&node, "/metrics", None);
    }
    let (status, body) = scrape;
    assert_eq!(status, 200);
    assert!(body.contains(counted), "{body}");
    assert!(body.contains("larder_cache_hits_total 1"), "{body}");
    assert!(body.contains("larder_cache_misses_total 1"), "{body}");
    assert!(body.contains("larder_cache_items 1"), "{body}");
    assert!(
        body.contains(r#"larder_cache_connections{protocol="resp"} 1"#),
        "{body}"
    );
    assert_eq!(admin_get(&node, "/healthz", None).0, 200);
    assert_eq!(admin_get(&node, "/readyz", None).0, 200);
    assert_eq!(admin_get(&node, "/nope", None).0, 404);
    node.stop().expect("the node stopped cleanly");
    assert!(
        TcpStream::connect(node.resp).is_err(),
        "listener closed after shutdown"
    );
}

#[test]
fn metrics_need_the_token_when_one_is_set() {
    let node = TestNode::with(CacheConfig {
        token: "t0k".into(),
        ..config()
    });
    assert_eq!(admin_get(&node, "/metrics", None).0, 401);
    assert_eq!(admin_get(&node, "/metrics", Some("wrong")).0, 401);
    assert_eq!(admin_get(&node, "/metrics", Some("t0k")).0, 200);
    assert_eq!(admin_get(&node, "/healthz", None).0, 200);
}

#[test]
fn many_pipelining_clients_get_every_reply_without_stalls() {
    // Uneven pipelines, pauses and split writes on several connections and RESP threads: a
    // lost wake-up would leave a client waiting for a reply until the read timeout fails it.
    let node = TestNode::with(CacheConfig {
        resp_threads: 3,
        ..config()
    });
    let clients: Vec<_> = (0..8u64)
        .map(|c| {
            let addr = node.resp;
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut seed = c * 7919 + 1;
                let mut sent = 0u64;
                while sent < 3_000 {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let depth = 1 + (seed >> 60);
                    let mut batch = Vec::new();
                    for i in 0..depth {
                        let key = format!("c{c}:{}", sent + i);
                        batch.extend_from_slice(
                            format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1\r\nv\r\n", key.len())
                                .as_bytes(),
                        );
                    }
                    // Send some batches in two writes, so requests arrive split.
                    let cut = if seed & 1 == 0 {
                        batch.len() / 2
                    } else {
                        batch.len()
                    };
                    stream.write_all(&batch[..cut]).unwrap();
                    if seed & 6 == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    stream.write_all(&batch[cut..]).unwrap();
                    let want = b"+OK\r\n".repeat(depth as usize);
                    let mut got = vec![0u8; want.len()];
                    stream.read_exact(&mut got).expect("every reply arrives");
                    assert_eq!(got, want);
                    sent += depth;
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let mut con = client(&node);
    let n: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert!(n >= 8 * 3_000);
}

#[test]
fn trickling_a_request_a_byte_at_a_time_does_not_keep_it_open() {
    let node = TestNode::with(CacheConfig {
        request_timeout_ms: 400,
        ..config()
    });
    let mut stream = TcpStream::connect(node.resp).unwrap();
    let started = Instant::now();
    let request = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\n";
    let mut closed = false;
    for byte in request.iter().cycle().take(100) {
        std::thread::sleep(Duration::from_millis(50));
        if stream.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
    }
    if !closed {
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 16];
        closed = match stream.read(&mut buf) {
            Ok(0) => true,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            Ok(_) => false,
        };
    }
    assert!(closed, "the trickling client was not disconnected");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// A field of an `INFO` reply.
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .map(str::to_owned)
}

#[test]
fn config_resetstat_zeroes_what_info_counts_but_not_the_metrics() {
    let node = TestNode::start();
    let mut con = client(&node);
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg("v")
            .query(&mut con)
            .unwrap();
        let _: Option<String> = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query(&mut con)
            .unwrap();
    }
    let _: Option<String> = redis::cmd("GET").arg("missing").query(&mut con).unwrap();
    let info: String = redis::cmd("INFO").arg("all").query(&mut con).unwrap();
    assert_eq!(info_field(&info, "keyspace_hits").as_deref(), Some("50"));
    assert_eq!(info_field(&info, "keyspace_misses").as_deref(), Some("1"));
    let gets = info_field(&info, "cmdstat_get").unwrap();
    assert!(gets.starts_with("calls=51,usec="), "{gets}");
    let usec: u64 = gets["calls=51,usec=".len()..]
        .split(',')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(usec > 0, "commands are timed: {gets}");

    let ok: String = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    let info: String = redis::cmd("INFO").arg("all").query(&mut con).unwrap();
    assert_eq!(info_field(&info, "keyspace_hits").as_deref(), Some("0"));
    assert_eq!(info_field(&info, "keyspace_misses").as_deref(), Some("0"));
    assert_eq!(info_field(&info, "cmdstat_get"), None, "{info}");
    let processed: u64 = info_field(&info, "total_commands_processed")
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        processed <= 2,
        "only what came after the reset: {processed}"
    );

    // Prometheus counters never go backwards.
    let (_, metrics) = admin_get(&node, "/metrics", None);
    assert!(metrics.contains("larder_cache_hits_total 50"), "{metrics}");
}
