//! Reads sent to a node that does not own their keys, over real gRPC between two nodes in one
//! process ([`TestNode`]): each is answered as its owner would, and reads going to one owner
//! at once share calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use larder_cluster::{Member, Status, Table};
use larder_proto::grpc::cache::v1 as pb;
use larder_store::SetOptions;
use pb::cache_client::CacheClient;
use pb::get_each_result::Result as One;
use tonic::transport::Channel;

use super::test_nodes::TestNode;

/// The index of `GetEach` in the node's gRPC method counts.
const GET_EACH: usize = 10;

async fn pair() -> (TestNode, TestNode, Table) {
    let a = TestNode::start("a", 0).await;
    let b = TestNode::start("b", 0).await;
    let both = Table::new([a.member(Status::Ready), b.member(Status::Ready)]);
    a.apply(&both);
    b.apply(&both);
    a.settled().await;
    b.settled().await;
    (a, b, both)
}

async fn client(node: &TestNode) -> CacheClient<Channel> {
    CacheClient::connect(format!("http://{}", node.me.grpc))
        .await
        .unwrap()
}

/// `n` keys the node `id` owns in `table`.
fn owned(table: &Table, id: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("item:{i}"))
        .filter(|k| table.owner_of_key(k.as_bytes()).unwrap().id == id)
        .take(n)
        .collect()
}

fn get(key: &str) -> pb::GetRequest {
    pb::GetRequest {
        key: key.as_bytes().to_vec().into(),
        lease: false,
        track: 0,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_reads_for_another_owner_are_answered_by_it_in_shared_calls() {
    let (a, b, both) = pair().await;
    let keys = owned(&both, "b", 400);
    // Every other key is on B; the rest B does not hold.
    for key in keys.iter().step_by(2) {
        b.node
            .set(key.as_bytes(), key.as_bytes(), SetOptions::default())
            .unwrap();
    }
    let to_a = client(&a).await;
    let reads: Vec<_> = keys
        .iter()
        .map(|key| {
            let mut to_a = to_a.clone();
            let request = get(key);
            tokio::spawn(async move { to_a.get(request).await })
        })
        .collect();
    for (i, (key, read)) in keys.iter().zip(reads).enumerate() {
        let reply = read.await.unwrap().unwrap().into_inner();
        let value = reply.entry.map(|e| e.value.to_vec());
        let expected = (i % 2 == 0).then(|| key.as_bytes().to_vec());
        assert_eq!(value, expected, "{key}");
    }
    let forwarded = a
        .view
        .metrics
        .forwarded
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(forwarded, keys.len() as u64);
    // Sent together: B served the 400 reads in far fewer calls.
    let calls = b.node.metrics.grpc_calls(GET_EACH);
    assert!(
        calls >= 1 && calls * 4 <= keys.len() as u64,
        "{calls} calls"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn get_each_answers_every_read_on_its_own_and_a_slow_one_holds_up_none() {
    // An origin whose server takes connections and never answers: its loads time out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = crate::config::OriginConfig {
        name: "silent".into(),
        pattern: "slow/{id}".into(),
        kind: "http".into(),
        url: format!("http://{}/{{id}}", silent.local_addr().unwrap()),
        load_timeout_ms: 1_500,
        ..crate::config::OriginConfig::default()
    };
    let _accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let a = TestNode::with_origins("a", 0, vec![origin.clone()]).await;
    let b = TestNode::with_origins("b", 0, vec![origin]).await;
    let both = Table::new([a.member(Status::Ready), b.member(Status::Ready)]);
    a.apply(&both);
    b.apply(&both);
    let on_a = owned(&both, "a", 1).remove(0);
    let on_b = owned(&both, "b", 2);
    a.node
        .set(on_a.as_bytes(), b"here", SetOptions::default())
        .unwrap();
    b.node
        .set(on_b[0].as_bytes(), b"there", SetOptions::default())
        .unwrap();
    let gets = vec![
        get("slow/1"),
        get(&on_a),
        get(&on_b[0]),
        get(&on_b[1]),
        pb::GetRequest {
            lease: true,
            ..get(&on_b[1])
        },
    ];
    let mut replies = client(&a)
        .await
        .get_each(pb::GetEachRequest { gets })
        .await
        .unwrap()
        .into_inner();
    let started = std::time::Instant::now();
    let mut results = vec![None; 5];
    let mut arrived = [std::time::Duration::ZERO; 5];
    while let Some(reply) = replies.message().await.unwrap() {
        for result in reply.results {
            let slot = &mut results[result.index as usize];
            assert!(slot.is_none(), "one result per read");
            *slot = result.result;
            arrived[result.index as usize] = started.elapsed();
        }
    }
    // The others did not wait for the slow load, which ran into its 1.5 s timeout.
    assert!(
        arrived[0] >= std::time::Duration::from_millis(1_400),
        "{arrived:?}"
    );
    assert!(
        arrived[1..].iter().all(|&t| t < arrived[0] / 2),
        "{arrived:?}"
    );
    assert!(
        matches!(&results[0], Some(One::Error(f)) if f.code == tonic::Code::Unavailable as i32),
        "{:?}",
        results[0]
    );
    let value = |i: usize| match &results[i] {
        Some(One::Ok(r)) => r.entry.as_ref().map(|e| e.value.to_vec()),
        other => panic!("read {i}: {other:?}"),
    };
    assert_eq!(value(1), Some(b"here".to_vec()));
    assert_eq!(value(2), Some(b"there".to_vec()));
    assert_eq!(value(3), None);
    // A lease asked through another node is granted by the owner.
    assert!(matches!(&results[4], Some(One::Ok(r)) if r.entry.is_none() && r.lease != 0));
}

#[tokio::test(flavor = "current_thread")]
async fn reads_for_an_unreachable_owner_fail_naming_it() {
    let a = TestNode::start("a", 0).await;
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = Member {
        id: "z".into(),
        grpc: gone.local_addr().unwrap().to_string(),
        ..a.member(Status::Ready)
    };
    drop(gone);
    let both = Table::new([a.member(Status::Ready), dead]);
    a.apply(&both);
    a.settled().await;
    let key = owned(&both, "z", 1).remove(0);
    let err = client(&a).await.get(get(&key)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().starts_with("owner z:"), "{}", err.message());
}
