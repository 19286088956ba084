//! The production shape, as a new user would run it: `larder cache` and `larder api
//! --cache-nodes` as separate processes, the node started with no configuration at all. Every
//! document in the database is served, whatever happened to the node's copy: flushed
//! (`FLUSHALL`), evicted (the node filled past its memory bound), or lost with the node
//! (restarted on the same address).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;

use support::{LARDER, Process};

const DOCS: usize = 40;

/// Starts `larder args…`; see [`support::Process::spawn`].
fn start(args: &[&str], count: usize) -> Process {
    let mut command = Command::new(LARDER);
    command.args(args).stderr(Stdio::null());
    Process::spawn(command, count)
}

/// A cache node on `grpc` (port 0: any), with `max_memory`; its RESP and gRPC addresses.
fn cache_node(grpc: &str, max_memory: &str) -> (Process, String, String) {
    let node = start(
        &[
            "cache",
            "--resp-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            grpc,
            "--admin-addr",
            "127.0.0.1:0",
            "--max-memory",
            max_memory,
        ],
        3,
    );
    let (resp, grpc) = (node.addrs[0].clone(), node.addrs[1].clone());
    (node, resp, grpc)
}

/// One HTTP/1.1 exchange on a new connection: (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/vnd.api+json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

/// Sends RESP commands (each a list of words) on one connection; the raw replies.
fn resp(addr: &str, commands: &[Vec<String>]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = String::new();
    for words in commands {
        out.push_str(&format!("*{}\r\n", words.len()));
        for word in words {
            out.push_str(&format!("${}\r\n{word}\r\n", word.len()));
        }
    }
    out.push_str("*1\r\n$4\r\nQUIT\r\n");
    stream.write_all(out.as_bytes()).unwrap();
    let mut replies = String::new();
    stream.read_to_string(&mut replies).unwrap();
    replies
}

fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// Reads every document through the gateway: each must be there, with its own title.
fn read_all(gateway: &str, ids: &[String], when: &str) {
    for (i, id) in ids.iter().enumerate() {
        let (status, body) = http(gateway, "GET", &format!("/v1/books/{id}"), "");
        assert_eq!(status, 200, "{when}: document {i} ({id}): {body}");
        assert!(
            body.contains(&format!("\"title\":\"book {i}\"")),
            "{when}: {body}"
        );
    }
}

/// How many of the documents the node holds.
fn held(resp_addr: &str, ids: &[String]) -> usize {
    let gets: Vec<_> = ids
        .iter()
        .map(|id| words(&["EXISTS", &format!("doc/books/{id}")]))
        .collect();
    resp(resp_addr, &gets).matches(":1\r\n").count()
}

#[test]
fn every_document_is_served_after_the_node_loses_it() {
    let dir = std::env::temp_dir().join(format!("larder-separate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("api.toml");
    std::fs::write(&config, "[[api.collections]]\nname = \"books\"\n").unwrap();
    let database = format!("sqlite://{}?mode=rwc", dir.join("larder.db").display());

    let (node, node_resp, node_grpc) = cache_node("127.0.0.1:0", "2mb");
    let gateway = start(
        &[
            "api",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--database",
            &database,
            "--cache-nodes",
            &node_grpc,
        ],
        1,
    );
    let api = gateway.addrs[0].clone();

    let ids: Vec<String> = (0..DOCS)
        .map(|i| {
            let body =
                format!(r#"{{"data":{{"type":"books","attributes":{{"title":"book {i}"}}}}}}"#);
            let (status, reply) = http(&api, "POST", "/v1/books", &body);
            assert_eq!(status, 201, "{reply}");
            let at = reply.find(r#""id":""#).unwrap() + 6;
            reply[at..].split('"').next().unwrap().to_owned()
        })
        .collect();
    read_all(&api, &ids, "after creating");
    assert_eq!(
        held(&node_resp, &ids),
        DOCS,
        "the node holds every document"
    );

    // Flushed.
    assert!(resp(&node_resp, &[words(&["FLUSHALL"])]).starts_with("+OK"));
    assert_eq!(held(&node_resp, &ids), 0);
    read_all(&api, &ids, "after FLUSHALL");
    assert_eq!(
        held(&node_resp, &ids),
        DOCS,
        "the reads filled the node again"
    );

    // Evicted: 4 MB of other values through a 2 MB node.
    let junk = "x".repeat(16 * 1024);
    let sets: Vec<_> = (0..256)
        .map(|i| words(&["SET", &format!("junk/{i}"), &junk]))
        .collect();
    resp(&node_resp, &sets);
    let left = held(&node_resp, &ids);
    assert!(left < DOCS, "the junk evicted documents ({left} left)");
    read_all(&api, &ids, "after eviction");

    // Lost with the node: a new one on the same address starts empty.
    drop(node); // killed and waited for
    let (node, node_resp, _) = cache_node(&node_grpc, "2mb");
    assert_eq!(held(&node_resp, &ids), 0);
    read_all(&api, &ids, "after the node restarted");
    drop(node);
    drop(gateway);
    let _ = std::fs::remove_dir_all(&dir);
}
