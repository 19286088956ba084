//! A cluster of real `larder cache` processes on loopback: it forms by gossip, every node
//! agrees on who owns each slot and redirects the rest (`-MOVED`, `-CROSSSLOT`), gRPC requests
//! are forwarded once to their owner, `larder-client` routes by the table, a killed node leaves
//! every table within 2 s and takes its partitions back when restarted, a fourth node takes a
//! quarter of the keys with them, a draining node hands everything off, and a gateway over the
//! cluster serves every document through the kill of any one node.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_proto::grpc::cache::v1 as pb;

#[allow(dead_code, reason = "this file starts its nodes itself")]
mod support;

use support::{LARDER, free_port};

/// One node's addresses, fixed so that it can be restarted on them.
#[derive(Debug, Clone)]
struct Ports {
    id: String,
    resp: u16,
    grpc: u16,
    admin: u16,
    gossip: u16,
}

impl Ports {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            resp: free_port(),
            grpc: free_port(),
            admin: free_port(),
            gossip: free_port(),
        }
    }

    fn resp(&self) -> String {
        format!("127.0.0.1:{}", self.resp)
    }

    fn grpc(&self) -> String {
        format!("127.0.0.1:{}", self.grpc)
    }

    fn admin(&self) -> String {
        format!("127.0.0.1:{}", self.admin)
    }
}

/// A running node, killed when dropped.
struct Node {
    ports: Ports,
    child: Child,
    _stdout: BufReader<ChildStdout>,
}

impl Node {
    /// Starts a node that gossips through `seed` and waits for its banner.
    fn start(ports: &Ports, seed: u16) -> Self {
        let mut child = Command::new(LARDER)
            .args(["cache", "--max-memory", "64mb", "--node-id", &ports.id])
            .args(["--resp-addr", &ports.resp(), "--grpc-addr", &ports.grpc()])
            .args(["--admin-addr", &ports.admin()])
            .args(["--cluster-addr", &format!("127.0.0.1:{}", ports.gossip)])
            .args(["--seeds", &format!("127.0.0.1:{seed}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("admin") {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "node exited");
        }
        Self {
            ports: ports.clone(),
            child,
            _stdout: stdout,
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three nodes, the first the seed of the others.
fn three() -> Vec<Node> {
    let ports: Vec<Ports> = (0..3).map(|i| Ports::new(&format!("node-{i}"))).collect();
    let seed = ports[0].gossip;
    let nodes: Vec<Node> = ports.iter().map(|p| Node::start(p, seed)).collect();
    let admins: Vec<String> = nodes.iter().map(|n| n.ports.admin()).collect();
    until(
        "the three nodes see each other ready",
        Duration::from_secs(15),
        || admins.iter().all(|a| ready_members(a).len() == 3),
    );
    nodes
}

/// The ids of the ready members a node's `/cluster` lists.
fn ready_members(admin: &str) -> HashSet<String> {
    let (status, body) = http(admin, "GET", "/cluster", "");
    if status != 200 {
        return HashSet::new();
    }
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    value["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .filter(|m| m["status"] == "ready")
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A sample of a node's `/metrics`.
fn metric(admin: &str, name: &str) -> f64 {
    let (_, body) = http(admin, "GET", "/metrics", "");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits for `done`, failing after `limit`.
fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Sends one RESP command; its raw reply.
fn resp(addr: &str, words: &[&str]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = format!("*{}\r\n", words.len());
    for w in words {
        request.push_str(&format!("${}\r\n{w}\r\n", w.len()));
    }
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Sets `key` through whichever node owns it, following `-MOVED` as a cluster client does.
fn cluster_set(nodes: &[&str], key: &str, value: &str) -> String {
    let mut at = nodes[0].to_owned();
    for _ in 0..3 {
        let reply = resp(&at, &["SET", key, value]);
        match reply.strip_prefix("-MOVED ") {
            Some(rest) => at = rest.split_whitespace().nth(1).unwrap().to_owned(),
            None => return reply,
        }
    }
    panic!("{key}: too many redirects")
}

#[test]
fn three_nodes_agree_and_redirect_what_they_do_not_own() {
    let nodes = three();
    let resps: Vec<String> = nodes.iter().map(|n| n.ports.resp()).collect();
    // Seeing each other ready comes a moment before each node has installed the table of
    // three; from then on they agree.
    until(
        "every node gives the same slots",
        Duration::from_secs(5),
        || {
            let slots: Vec<String> = resps
                .iter()
                .map(|r| resp(r, &["CLUSTER", "SLOTS"]))
                .collect();
            slots.iter().all(|s| *s == slots[0])
        },
    );
    let info = resp(&resps[0], &["CLUSTER", "INFO"]);
    assert!(
        info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3"),
        "{info}"
    );

    let mut owners = HashSet::new();
    for i in 0..30 {
        let key = format!("user:{i}");
        assert_eq!(
            cluster_set(
                &resps.iter().map(String::as_str).collect::<Vec<_>>(),
                &key,
                "v"
            ),
            "+OK\r\n"
        );
        let replies: Vec<String> = resps.iter().map(|r| resp(r, &["GET", &key])).collect();
        let owner: Vec<usize> = (0..3).filter(|&n| replies[n] == "$1\r\nv\r\n").collect();
        assert_eq!(owner.len(), 1, "{key}: one owner, {replies:?}");
        let slot = resp(&resps[0], &["CLUSTER", "KEYSLOT", &key]);
        for (n, reply) in replies.iter().enumerate().filter(|(n, _)| *n != owner[0]) {
            let moved = format!(
                "-MOVED {} {}\r\n",
                slot.trim_start_matches(':').trim(),
                resps[owner[0]]
            );
            assert_eq!(reply, &moved, "{key} asked of node {n}");
        }
        owners.insert(owner[0]);
    }
    assert_eq!(owners.len(), 3, "keys spread over every node");
    let cross = resp(&resps[0], &["MGET", "user:1", "user:2"]);
    assert_eq!(
        cross,
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    let tagged = resp(&resps[0], &["MGET", "{user}:1", "{user}:2"]);
    assert!(!tagged.starts_with("-CROSSSLOT"), "{tagged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_is_forwarded_once_and_the_client_routes_by_the_table() {
    let nodes = tokio::task::spawn_blocking(three).await.unwrap();
    let first = nodes[0].ports.grpc();
    let mut plain = pb::cache_client::CacheClient::connect(format!("http://{first}"))
        .await
        .unwrap();
    for i in 0..60 {
        let set = pb::SetRequest {
            key: Bytes::from(format!("k{i}")),
            value: Bytes::from(format!("v{i}")),
            ..pb::SetRequest::default()
        };
        assert!(plain.set(set).await.unwrap().into_inner().stored);
    }
    let keys: Vec<Bytes> = (0..60).map(|i| Bytes::from(format!("k{i}"))).collect();
    let many = plain
        .get_many(pb::GetManyRequest { keys: keys.clone() })
        .await
        .unwrap()
        .into_inner();
    for (i, result) in many.results.iter().enumerate() {
        assert_eq!(result.entry.as_ref().unwrap().value, format!("v{i}"));
    }
    let admins: Vec<String> = nodes.iter().map(|n| n.ports.admin()).collect();
    let forwarded = |admins: &[String]| -> f64 {
        admins
            .iter()
            .map(|a| metric(a, "larder_cluster_forwarded_total"))
            .sum()
    };
    let before = forwarded(&admins);
    assert!(before > 0.0, "a plain client's requests were forwarded");

    // The client learns the table from one node and goes to each owner itself.
    let client = larder_client::Client::new(larder_client::ClientConfig {
        nodes: vec![first.clone()],
        ..larder_client::ClientConfig::default()
    })
    .unwrap();
    for _ in 0..200 {
        if client.cluster_epoch().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        client.cluster_epoch().is_some(),
        "the client follows the table"
    );
    let found = client.get_many(&keys).await.unwrap();
    assert!(found.iter().all(Option::is_some));
    for key in &keys {
        assert!(client.get(key.clone()).await.unwrap().is_some());
    }
    let owners: HashSet<String> = keys.iter().map(|k| client.node_for(k)).collect();
    assert_eq!(owners.len(), 3, "{owners:?}");
    assert_eq!(
        forwarded(&admins),
        before,
        "nothing the client sent needed forwarding"
    );
}

#[test]
fn a_killed_node_leaves_every_table_in_two_seconds_and_comes_back_as_a_new_generation() {
    let mut nodes = three();
    let killed = nodes.remove(2);
    let (ports, seed) = (killed.ports.clone(), nodes[0].ports.gossip);
    let admins: Vec<String> = nodes.iter().map(|n| n.ports.admin()).collect();
    killed.kill();
    let took = until(
        "the killed node leaves every table",
        Duration::from_secs(2),
        || admins.iter().all(|a| !ready_members(a).contains(&ports.id)),
    );
    eprintln!("killed node excluded after {took:?}");
    let resps: Vec<String> = nodes.iter().map(|n| n.ports.resp()).collect();
    let info = resp(&resps[0], &["CLUSTER", "INFO"]);
    assert!(
        info.contains("cluster_state:ok"),
        "every slot served again: {info}"
    );

    let back = Node::start(&ports, seed);
    let mut admins = admins;
    admins.push(back.ports.admin());
    until(
        "the restarted node is ready everywhere",
        Duration::from_secs(10),
        || admins.iter().all(|a| ready_members(a).contains(&ports.id)),
    );
    until("it owns partitions again", Duration::from_secs(10), || {
        metric(&back.ports.admin(), "larder_cluster_partitions_owned") > 200.0
    });
}

#[test]
fn a_fourth_node_takes_a_quarter_and_a_draining_node_hands_everything_back() {
    let mut nodes = three();
    let resps: Vec<String> = nodes.iter().map(|n| n.ports.resp()).collect();
    let at: Vec<&str> = resps.iter().map(String::as_str).collect();
    let total = 4_000;
    for i in 0..total {
        assert_eq!(cluster_set(&at, &format!("item:{i}"), "x"), "+OK\r\n");
    }
    let fourth = Node::start(&Ports::new("node-3"), nodes[0].ports.gossip);
    let admin = fourth.ports.admin();
    until(
        "the fourth node takes its partitions over",
        Duration::from_secs(20),
        || {
            metric(&admin, "larder_cluster_partitions_owned") > 0.0
                && metric(&admin, "larder_cluster_partitions_moving") == 0.0
                && metric(&admin, "larder_cluster_handoff_entries_total") > 0.0
        },
    );
    let moved = resp(&fourth.ports.resp(), &["DBSIZE"]);
    let moved: f64 = moved.trim_start_matches(':').trim().parse().unwrap();
    let fraction = moved / f64::from(total);
    eprintln!("the fourth node took {moved} of {total} keys ({fraction:.3})");
    assert!(
        (fraction - 0.25).abs() <= 0.025,
        "within 10% of a quarter: {fraction}"
    );

    // SIGTERM: it drains, its partitions are pulled back, and no key is lost.
    let status = fourth.terminate();
    assert!(status.success(), "{status:?}");
    let admins: Vec<String> = nodes.iter().map(|n| n.ports.admin()).collect();
    until(
        "the others own every partition again",
        Duration::from_secs(10),
        || {
            admins
                .iter()
                .map(|a| metric(a, "larder_cluster_partitions_owned"))
                .sum::<f64>()
                == 1024.0
        },
    );
    let mut missing = 0;
    for i in 0..total {
        let key = format!("item:{i}");
        let found = resps
            .iter()
            .any(|r| resp(r, &["GET", &key]) == "$1\r\nx\r\n");
        missing += usize::from(!found);
    }
    assert_eq!(missing, 0, "every key survived the drain");
    drop(nodes.drain(..));
}

/// A gateway process over the cluster.
struct Gateway {
    child: Child,
    addr: String,
    _stdout: BufReader<ChildStdout>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request: (status, body), or (0, "") when the server cannot be reached or
/// closes without an answer (a node being killed).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/vnd.api+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut raw = String::new();
    if stream.write_all(head.as_bytes()).is_err() || stream.read_to_string(&mut raw).is_err() {
        return (0, String::new());
    }
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

#[test]
fn a_gateway_over_the_cluster_serves_every_document_through_any_one_kill() {
    let mut nodes = three();
    let dir = std::env::temp_dir().join(format!("larder-cluster-gw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("api.toml"),
        "[[api.collections]]\nname = \"books\"\n",
    )
    .unwrap();
    let grpcs: Vec<String> = nodes.iter().map(|n| n.ports.grpc()).collect();
    let mut child = Command::new(LARDER)
        .args(["api", "--config", dir.join("api.toml").to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--cache-nodes", &grpcs.join(",")])
        .args([
            "--database",
            &format!("sqlite://{}?mode=rwc", dir.join("db").display()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while addr.is_none() {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "gateway exited");
        addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://"))
            .map(|rest| rest.split('/').next().unwrap().to_owned());
    }
    let gateway = Gateway {
        child,
        addr: addr.unwrap(),
        _stdout: stdout,
    };
    let ids: Vec<String> = (0..30)
        .map(|i| {
            let body = format!(r#"{{"data":{{"type":"books","attributes":{{"n":{i}}}}}}}"#);
            let (status, reply) = http(&gateway.addr, "POST", "/v1/books", &body);
            assert_eq!(status, 201, "{reply}");
            let at = reply.find(r#""id":""#).unwrap() + 6;
            reply[at..].split('"').next().unwrap().to_owned()
        })
        .collect();
    let read_all = |when: &str| {
        for (i, id) in ids.iter().enumerate() {
            let (status, body) = http(&gateway.addr, "GET", &format!("/v1/books/{id}"), "");
            assert_eq!(status, 200, "{when}: {id}: {body}");
            assert!(body.contains(&format!("\"n\":{i}")), "{when}: {body}");
        }
    };
    read_all("before");
    for victim in 0..3 {
        let node = nodes.remove(victim);
        let ports = node.ports.clone();
        node.kill();
        read_all(&format!("node {victim} killed"));
        let back = Node::start(&ports, nodes[0].ports.gossip);
        nodes.insert(victim, back);
        let admins: Vec<String> = nodes.iter().map(|n| n.ports.admin()).collect();
        until(
            "the node is back in every table",
            Duration::from_secs(10),
            || admins.iter().all(|a| ready_members(a).len() == 3),
        );
        read_all(&format!("node {victim} back"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
