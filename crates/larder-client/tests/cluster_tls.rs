//! A cluster of TLS nodes calls itself over mutual TLS: the node a client wrote to hands its
//! partitions to a joining node by `Pull`, writes and reads for another node's keys are
//! forwarded (`Set`, `GetEach`), each node presenting its certificate to the others; and a node
//! that does not trust the others' CA gets no answer from them (no plaintext fallback).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use larder_cache::CacheConfig;
use larder_cache::config::ClusterConfig;
use larder_cluster::{key_slot, partition_of};
use larder_proto::grpc::cache::v1 as pb;
use larder_util::tls::{Connector, TlsFiles, reloading_client};
use pb::cache_client::CacheClient;
use pb::cluster_client::ClusterClient;
use support::certs::{Ca, path, scratch};
use support::{TestNode, node_config};
use tonic::transport::{Channel, Endpoint};

const DEADLINE: Duration = Duration::from_secs(30);

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A clustered node `id` gossiping on `gossip` through `seed`, serving with `cert`, asking
/// clients (other nodes among them) for certificates from `ca`, and checking the other nodes'
/// certificates by `peer_ca` (empty: `ca`).
fn cluster_node(
    id: &str,
    cert: &(PathBuf, PathBuf),
    ca: &Path,
    peer_ca: &str,
    gossip: u16,
    seed: u16,
) -> TestNode {
    TestNode::with(CacheConfig {
        tls_cert: path(&cert.0),
        tls_key: path(&cert.1),
        tls_client_ca: path(ca),
        tls_ca: peer_ca.to_owned(),
        cluster: ClusterConfig {
            enabled: true,
            node_id: id.to_owned(),
            addr: format!("127.0.0.1:{gossip}"),
            seeds: vec![format!("127.0.0.1:{seed}")],
            drain_deadline_ms: 200,
            ..ClusterConfig::default()
        },
        ..node_config()
    })
}

/// The test's own channel to `node` over mutual TLS.
fn channel(node: SocketAddr, ca: &Path, cert: &(PathBuf, PathBuf)) -> Channel {
    let files = TlsFiles {
        cert: cert.0.clone(),
        key: cert.1.clone(),
        ca: ca.to_path_buf(),
    };
    let tls = reloading_client(files, &[b"h2"]).unwrap();
    Endpoint::from_shared(format!("http://{node}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect_with_connector_lazy(Connector::new(
            tls,
            Some("localhost".into()),
            Duration::from_secs(5),
        ))
}

/// Waits until `node`'s table has exactly the members `ids`, every one ready, and returns it.
async fn table_of(node: &Channel, ids: &[&str]) -> pb::TableReply {
    let mut cluster = ClusterClient::new(node.clone());
    let until = Instant::now() + DEADLINE;
    loop {
        if let Ok(reply) = cluster.table(pb::TableRequest {}).await {
            let reply = reply.into_inner();
            let members: Vec<&str> = reply.members.iter().map(|m| m.id.as_str()).collect();
            let ready = reply.members.iter().all(|m| m.status == "ready");
            if members == ids && ready && !reply.owners.is_empty() {
                return reply;
            }
        }
        assert!(Instant::now() < until, "no table with {ids:?} in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The id of the member that owns `key` in `table`.
fn owner<'t>(table: &'t pb::TableReply, key: &str) -> &'t str {
    let partition = partition_of(key_slot(key.as_bytes()));
    let index = table.owners[usize::from(partition)];
    &table.members[index as usize].id
}

fn set(key: &str) -> pb::SetRequest {
    pb::SetRequest {
        key: key.as_bytes().to_vec().into(),
        value: format!("value of {key}").into_bytes().into(),
        ..pb::SetRequest::default()
    }
}

fn get(key: &str) -> pb::GetRequest {
    pb::GetRequest {
        key: key.as_bytes().to_vec().into(),
        lease: false,
        track: 0,
    }
}

async fn value(client: &mut CacheClient<Channel>, key: &str) -> Option<Vec<u8>> {
    let reply = client.get(get(key)).await.unwrap().into_inner();
    reply.entry.map(|e| e.value.to_vec())
}

/// A counter of `node`'s `/metrics` (plaintext admin listener).
fn metric(node: &TestNode, name: &str) -> u64 {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(node.admin).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_nodes_pull_and_forward_to_each_other_over_mutual_tls() {
    let dir = scratch();
    let ca = Ca::new("cluster CA");
    let ca_pem = ca.write(&dir, "ca");
    let me = ca.leaf(&dir, "test-client", false);
    let a_gossip = free_udp();
    let a = cluster_node(
        "a",
        &ca.leaf(&dir, "a", false),
        &ca_pem,
        "",
        a_gossip,
        a_gossip,
    );
    let to_a = channel(a.grpc, &ca_pem, &me);
    table_of(&to_a, &["a"]).await;
    let mut cache_a = CacheClient::new(to_a.clone());
    let before: Vec<String> = (0..64).map(|i| format!("before:{i}")).collect();
    for key in &before {
        cache_a.set(set(key)).await.unwrap();
    }

    // B joins and pulls the partitions it now owns from A.
    let b = cluster_node(
        "b",
        &ca.leaf(&dir, "b", false),
        &ca_pem,
        &path(&ca_pem),
        free_udp(),
        a_gossip,
    );
    let to_b = channel(b.grpc, &ca_pem, &me);
    let table = table_of(&to_b, &["a", "b"]).await;
    table_of(&to_a, &["a", "b"]).await;
    let on_b = before.iter().filter(|k| owner(&table, k) == "b").count();
    assert!(on_b > 0 && on_b < before.len(), "{on_b} of the keys on b");
    let mut cache_b = CacheClient::new(to_b.clone());
    let until = Instant::now() + DEADLINE;
    for key in &before {
        // B serves its own keys from what it pulled and forwards A's to A (GetEach).
        while value(&mut cache_b, key).await.is_none() {
            assert!(Instant::now() < until, "{key} never readable at b");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            value(&mut cache_b, key).await.unwrap(),
            format!("value of {key}").into_bytes()
        );
    }
    assert!(metric(&b, "larder_cluster_handoff_entries_total") >= on_b as u64);

    // Writes sent to A for B's keys are forwarded to B; B answers them itself.
    let after: Vec<String> = (0..64).map(|i| format!("after:{i}")).collect();
    for key in &after {
        assert!(cache_a.set(set(key)).await.unwrap().into_inner().stored);
    }
    for key in after.iter().filter(|k| owner(&table, k) == "b") {
        let local = b.grpc;
        assert_eq!(
            value(&mut cache_b, key).await,
            Some(format!("value of {key}").into_bytes()),
            "{key} at {local}"
        );
    }
    assert!(metric(&a, "larder_cluster_forwarded_total") > 0);
    assert!(metric(&b, "larder_cluster_forwarded_total") > 0);

    // A node that checks the others by another CA gets nothing from them: its forwarded reads
    // fail as unavailable rather than going out in plaintext or unchecked.
    let stranger = Ca::new("stranger CA").write(&dir, "stranger");
    let c = cluster_node(
        "c",
        &ca.leaf(&dir, "c", false),
        &ca_pem,
        &path(&stranger),
        free_udp(),
        a_gossip,
    );
    let to_c = channel(c.grpc, &ca_pem, &me);
    let three = table_of(&to_c, &["a", "b", "c"]).await;
    let key = after
        .iter()
        .find(|k| owner(&three, k) == "a")
        .expect("a key a owns");
    let refused = CacheClient::new(to_c).get(get(key)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
}
