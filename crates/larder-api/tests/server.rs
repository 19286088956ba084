//! The gateway's server (hyper) over real sockets, spoken to as raw HTTP/1.1: pipelining,
//! chunked bodies and `100 Continue`, refusals of malformed and oversized requests, HTTP/1.0,
//! slow clients, the bearer token, the loopback rule, the connection cap, the listen backlog and
//! graceful shutdown. Where hyper answers differently from the server it replaced (and RFC 9112
//! allows both), the assertion says so; `docs/ARCHITECTURE.md` lists each one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::time::{Duration, Instant};

use larder_api::ApiConfig;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_deep_pipeline_is_answered_while_the_client_reads() {
    let gw = start(config()).await;
    assert_eq!(send(gw.addr, &create("p", "piped")).await.status, 201);
    let conn = TcpStream::connect(gw.addr).await.unwrap();
    let (mut rx, mut tx) = conn.into_split();
    // Far more answers than the server keeps waiting at once: all arrive, in order.
    let n = 20_000;
    let writer = tokio::spawn(async move {
        let one = b"GET /v1/products/p HTTP/1.1\r\nHost: t\r\n\r\n";
        for _ in 0..n / 100 {
            tx.write_all(&one.repeat(100)).await.unwrap();
        }
        tx
    });
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = Vec::new();
    while got < n {
        let k = tokio::time::timeout(Duration::from_secs(10), rx.read(&mut buf))
            .await
            .expect("answers keep coming")
            .unwrap();
        assert!(k > 0, "closed after {got} answers");
        seen.extend_from_slice(&buf[..k]);
        got += seen
            .windows(17)
            .filter(|w| w == b"HTTP/1.1 200 OK\r\n")
            .count();
        let keep = seen.len().saturating_sub(16);
        seen.drain(..keep);
    }
    assert_eq!(got, n);
    drop(writer.await.unwrap());
    gw.stop.cancel();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let gw = start(config()).await;
    assert_eq!(send(gw.addr, &create("1", "one")).await.status, 201);
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let batch = format!(
        "GET /v1/products/1 HTTP/1.1\r\nHost: t\r\n\r\n{}GET /v1/products/nope HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/products/2 HTTP/1.1\r\nHost: t\r\n\r\n",
        create("2", "two")
    );
    conn.write_all(batch.as_bytes()).await.unwrap();
    let replies = read_responses(&mut conn, 5).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 201, 404, 200, 200]);
    assert_eq!(
        replies[2].header("content-type"),
        Some("application/problem+json")
    );
    assert!(
        replies[4].text().contains("\"two\""),
        "{}",
        replies[4].text()
    );
    gw.stop.cancel();
}

#[tokio::test]
async fn chunked_bodies_and_expect_continue_are_read() {
    let gw = start(config()).await;
    let body = r#"{"data":{"type":"products","id":"c","attributes":{"name":"chunked"}}}"#;
    let (a, b) = body.split_at(20);
    let raw = format!(
        "POST /v1/products HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let reply = send(gw.addr, &raw).await;
    assert_eq!(reply.status, 201, "{}", reply.text());

    let body = r#"{"data":{"type":"products","id":"e","attributes":{"name":"expect"}}}"#;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/products HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    conn.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.write_all(body.as_bytes()).await.unwrap();
    let reply = read_responses(&mut conn, 1).await.pop().unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    let read = send(gw.addr, "GET /v1/products/c HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert!(read.text().contains("\"chunked\""), "{}", read.text());
    gw.stop.cancel();
}

#[tokio::test]
async fn oversized_and_malformed_requests_get_problems_and_lose_nothing() {
    let gw = start(config()).await;
    // A client that sends its whole oversized body anyway still reads the 413.
    let big = "x".repeat(100_000);
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let raw = format!(
        "POST /v1/products HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{big}",
        big.len()
    );
    conn.write_all(raw.as_bytes()).await.unwrap();
    let reply = read_responses(&mut conn, 1).await.pop().expect("413 read");
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    assert!(closes(&mut conn, Duration::from_secs(5)).await);

    // A refused HEAD gets the status and headers only.
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(b"HEAD /v1/products HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut raw)).await;
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 413 "), "{raw}");
    assert!(
        raw.ends_with("\r\n\r\n"),
        "a body after a HEAD answer: {raw}"
    );

    let chunked = format!(
        "POST /v1/products HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let reply = send(gw.addr, &chunked).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("connection"), Some("close"));

    // Refused by the gateway before routing: problem documents.
    for (bad, status) in [
        // (The chunked body is decoded when the handler reads it, after its media type is
        // checked: the request names one.)
        ("POST /v1/products HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_owned(), 400),
        ("GET /healthz HTTP/1.1\r\n\r\n".into(), 400),
        ("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400),
        ("GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n".into(), 400),
        ("GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n".into(), 417),
    ] {
        let reply = send(gw.addr, &bad).await;
        assert_eq!(reply.status, status, "{bad:.60}: {}", reply.text());
        assert_eq!(reply.header("connection"), Some("close"));
        let problem: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(problem["status"], status);
        let page = send(gw.addr, &format!("GET {} HTTP/1.1\r\nHost: t\r\n\r\n", problem["type"].as_str().unwrap())).await;
        assert_eq!(page.status, 200, "the problem type is documented");
    }
    // Refused by hyper while parsing: a bare status and a close (RFC 9112 asks for no body).
    // The old server answered a problem document, and 505 for a version it does not speak;
    // hyper's 400 for a request line that is not HTTP/1.x is as correct (ARCHITECTURE.md).
    for (bad, status) in [
        (
            "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: ten\r\n\r\n".to_owned(),
            400,
        ),
        ("GET /he\x01lthz HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
                "a".repeat(70_000)
            ),
            431,
        ),
        ("GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n".into(), 400),
    ] {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        let _ = conn.write_all(bad.as_bytes()).await;
        let reply = read_responses(&mut conn, 1).await.pop().expect("an answer");
        assert_eq!(reply.status, status, "{bad:.60}: {}", reply.text());
        assert_eq!(reply.header("connection"), Some("close"));
        assert!(closes(&mut conn, Duration::from_secs(5)).await);
    }
    // Both Content-Length and Transfer-Encoding: hyper frames by Transfer-Encoding and closes
    // after the answer (RFC 9112 §6.1 allows that or a 400, which the old server sent).
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .await
        .unwrap();
    let reply = read_responses(&mut conn, 1).await.pop().expect("an answer");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(closes(&mut conn, Duration::from_secs(5)).await);
    // Refusals the router never saw are counted too.
    let refused = |method: &str, status: u16| {
        format!(
            "larder_api_requests_total{{route=\"unrouted\",method=\"{method}\",status=\"{status}\"}}"
        )
    };
    assert_eq!(metric(gw.addr, &refused("POST", 413)).await, 1);
    assert_eq!(metric(gw.addr, &refused("HEAD", 413)).await, 1);
    assert_eq!(metric(gw.addr, &refused("GET", 400)).await, 3);
    assert_eq!(metric(gw.addr, &refused("GET", 417)).await, 1);
    // hyper's own refusals come without a method.
    assert_eq!(metric(gw.addr, &refused("OTHER", 400)).await, 3);
    assert_eq!(metric(gw.addr, &refused("OTHER", 431)).await, 1);
    // None of that lost the server, or a document.
    assert_eq!(send(gw.addr, &create("after", "ok")).await.status, 201);
    gw.stop.cancel();
}

#[tokio::test]
async fn http10_connections_close_unless_kept() {
    let gw = start(config()).await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let reply = read_responses(&mut conn, 1).await.pop().unwrap();
    // hyper does not say `connection: close` to an HTTP/1.0 client, which closes by default
    // (RFC 9112 §9.3); the old server said it. The connection closes either way.
    assert_ne!(reply.header("connection"), Some("keep-alive"));
    assert!(closes(&mut conn, Duration::from_secs(2)).await);

    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    for _ in 0..2 {
        conn.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let reply = read_responses(&mut conn, 1).await.pop().unwrap();
        assert_eq!(reply.header("connection"), Some("keep-alive"));
        assert_eq!(reply.text(), "ok\n");
    }
    gw.stop.cancel();
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let gw = start(ApiConfig {
        client_timeout_ms: 300,
        ..config()
    })
    .await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    assert!(closes(&mut silent, Duration::from_secs(3)).await);
    assert!(started.elapsed() >= Duration::from_millis(250));

    // Progress does not extend the time a head may take.
    let mut dribble = TcpStream::connect(gw.addr).await.unwrap();
    dribble
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..30 {
        if dribble.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        if closes(&mut dribble, Duration::from_millis(100)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "a head sent a byte at a time was never cut off");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(metric(gw.addr, "larder_api_client_timeouts_total").await, 2);
    gw.stop.cancel();
}

#[tokio::test]
async fn heads_in_pieces_are_answered_and_garbage_is_refused_at_once() {
    let gw = start(config()).await;
    // A byte per segment, line ends split across segments: answered, and more than once.
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.set_nodelay(true).unwrap();
    for _ in 0..2 {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Long: abcdefgh\r\n\r\n" {
            conn.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let reply = read_responses(&mut conn, 1).await.pop().unwrap();
        assert_eq!((reply.status, reply.text()), (200, "ok\n".to_owned()));
    }

    // The first bytes of a TLS handshake hold no line end: refused on arrival, not at the
    // client timeout.
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let hello = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    conn.write_all(&hello).await.unwrap();
    let started = Instant::now();
    let reply = read_responses(&mut conn, 1).await.pop().unwrap();
    assert_eq!(reply.status, 400);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A bad field sent after the request line is refused once the head ends (hyper parses a
    // head when it is whole; the old server refused at the end of the bad line).
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    conn.write_all(b"Bad Name: x").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    conn.write_all(b"\r\n\r\n").await.unwrap();
    let reply = read_responses(&mut conn, 1).await.pop().unwrap();
    assert_eq!(reply.status, 400);
    gw.stop.cancel();
}

#[tokio::test]
async fn a_token_guards_the_data_and_the_metrics() {
    let gw = start(ApiConfig {
        token: "s3cret".into(),
        ..config()
    })
    .await;
    let auth = "Authorization: Bearer s3cret\r\n";
    let create = create("t", "guarded").replacen("Host: t\r\n", &format!("Host: t\r\n{auth}"), 1);
    assert_eq!(send(gw.addr, &create).await.status, 201);
    for raw in [
        "GET /v1/products/t HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/products/t HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3creT\r\n\r\n",
        "GET /v1/products HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let reply = send(gw.addr, raw).await;
        assert_eq!(reply.status, 401, "{raw}");
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    }
    let hit = send(
        gw.addr,
        &format!("GET /v1/products/t HTTP/1.1\r\nHost: t\r\n{auth}\r\n"),
    )
    .await;
    assert_eq!(hit.status, 200, "{}", hit.text());
    // Without the token a body is not even asked for: 401 instead of `100 Continue`.
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(
        b"POST /v1/products HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3000\r\n\r\n",
    )
    .await
    .unwrap();
    let reply = read_responses(&mut conn, 1).await.pop().unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert!(closes(&mut conn, Duration::from_secs(5)).await);
    for open in ["/", "/healthz", "/openapi.json", "/problems/not-found"] {
        let reply = send(gw.addr, &format!("GET {open} HTTP/1.1\r\nHost: t\r\n\r\n")).await;
        assert_eq!(reply.status, 200, "{open}");
    }
    gw.stop.cancel();
}

#[tokio::test]
async fn listening_beyond_loopback_needs_a_token() {
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let refused = larder_api::run(config(), listener, CancellationToken::new()).await;
    let err = refused.expect_err("an open gateway on every interface");
    assert!(err.to_string().contains("token"), "{err}");

    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn(larder_api::run(
        ApiConfig {
            token: "t".into(),
            ..config()
        },
        listener,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!running.is_finished());
    stop.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let gw = start(config()).await;
    let mut idle = TcpStream::connect(gw.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_responses(&mut idle, 1).await[0].status, 200);
    gw.stop.cancel();
    assert!(closes(&mut idle, Duration::from_secs(2)).await);
    tokio::time::timeout(Duration::from_secs(5), gw.task)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(gw.addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn connections_past_the_limit_wait_for_a_free_slot() {
    let gw = start(ApiConfig {
        max_connections: 2,
        ..config()
    })
    .await;
    let health = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    // `start`'s probe connection may still hold a slot for a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(health).await.unwrap();
        assert_eq!(read_responses(&mut conn, 1).await[0].status, 200);
        held.push(conn);
    }
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    third.write_all(health).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "a third connection was served past the limit"
    );
    drop(held.pop());
    let reply = read_responses(&mut third, 1).await;
    assert_eq!(reply[0].status, 200, "served once a slot was free");
    gw.stop.cancel();
}

#[tokio::test]
async fn answers_are_sent_before_waiting_for_a_body() {
    let gw = start(config()).await;
    assert_eq!(send(gw.addr, &create("w", "waiting")).await.status, 201);
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    // A read, then a create whose body the client sends only after it has the read's answer.
    let body = r#"{"data":{"type":"products","id":"w2","attributes":{"name":"second"}}}"#;
    let raw = format!(
        "GET /v1/products/w HTTP/1.1\r\nHost: t\r\n\r\nPOST /v1/products HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(raw.as_bytes()).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(2), read_responses(&mut conn, 1))
        .await
        .expect("the read's answer came while the server waited for the body");
    assert_eq!(first[0].status, 200);
    conn.write_all(body.as_bytes()).await.unwrap();
    assert_eq!(read_responses(&mut conn, 1).await[0].status, 201);
    gw.stop.cancel();
}

#[tokio::test]
async fn answers_do_not_wait_behind_a_slow_router_call() {
    // A "cache node" that accepts and never answers: every read through the router waits for
    // the cache deadline before the database answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let gw = start(ApiConfig {
        cache_nodes: vec![node.to_string()],
        cache_deadline_ms: 1_500,
        ..config()
    })
    .await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    conn.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/products/slow HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await
    .unwrap();
    let first = read_responses(&mut conn, 1).await;
    assert_eq!(first[0].status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "the first answer waited {:?} for the second request's cache call",
        started.elapsed()
    );
    let second = read_responses(&mut conn, 1).await;
    assert_eq!(second[0].status, 404, "{}", second[0].text());
    gw.stop.cancel();
}

/// The gateway's listener queues more than a thousand connections nobody has accepted yet
/// (`larder_api::bind`'s backlog); `TcpListener::bind` queues 128 (std's backlog) and then
/// drops SYNs, which this test notices at the 129th.
#[tokio::test]
async fn the_listen_backlog_queues_over_a_thousand_connections() {
    const { assert!(larder_api::LISTEN_BACKLOG >= 1024) };
    let listener = larder_api::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for i in 0..1_100 {
        let conn = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connection {i} was not queued"))
            .unwrap();
        queued.push(conn);
    }
    drop(listener);
}
