//! Every operation against real cache nodes over loopback sockets.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use larder_client::{BreakerState, Client, ClientConfig, Error, Lookup, SetOpts};
use support::{TestNode, client, client_config, closed_port, node_config, start_node};
use tonic::Code;

fn key(i: usize) -> Bytes {
    Bytes::from(format!("doc/items/{i}"))
}

#[tokio::test]
async fn get_set_get_many_delete_invalidate_round_trip() {
    let node = start_node();
    let c = client(&[&node]);

    assert_eq!(c.get("absent").await.unwrap(), None);
    let (stored, version) = c.set("a", "one", SetOpts::default()).await.unwrap();
    assert!(stored && version > 0);
    let entry = c.get("a").await.unwrap().unwrap();
    assert_eq!((&entry.value[..], entry.version), (&b"one"[..], version));
    assert_eq!((entry.ttl_ms, entry.stale), (0, false));

    let ttl = SetOpts {
        ttl: Some(Duration::from_secs(60)),
        ..SetOpts::default()
    };
    c.set("b", "two", ttl).await.unwrap();
    let ttl_ms = c.get("b").await.unwrap().unwrap().ttl_ms;
    assert!(ttl_ms > 0 && ttl_ms <= 60_000, "{ttl_ms}");

    let keys = [Bytes::from("b"), Bytes::from("nope"), Bytes::from("a")];
    let values: Vec<_> = c
        .get_many(&keys)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.map(|e| e.value))
        .collect();
    assert_eq!(
        values,
        [Some(Bytes::from("two")), None, Some(Bytes::from("one"))]
    );
    assert!(c.get_many(&[]).await.unwrap().is_empty());

    assert_eq!(
        c.delete(&[Bytes::from("a"), Bytes::from("nope")])
            .await
            .unwrap(),
        1
    );
    assert_eq!(c.get("a").await.unwrap(), None);
    assert_eq!(
        c.invalidate(&[Bytes::from("b"), Bytes::from("nope")])
            .await
            .unwrap(),
        1
    );
    assert_eq!(c.get("b").await.unwrap(), None);
    assert_eq!(c.delete(&[]).await.unwrap(), 0);
}

#[tokio::test]
async fn keys_spread_over_two_nodes_and_get_many_keeps_request_order() {
    let (a, b) = (start_node(), start_node());
    let c = client(&[&a, &b]);
    let names: HashSet<String> = [a.grpc.to_string(), b.grpc.to_string()].into();

    let mut per_node = std::collections::HashMap::<&str, usize>::new();
    for i in 0..100 {
        let k = key(i);
        c.set(k.clone(), format!("value {i}"), SetOpts::default())
            .await
            .unwrap();
        *per_node.entry(c.node_for(&k)).or_default() += 1;
    }
    assert_eq!(per_node.len(), 2, "{per_node:?}");
    assert!(per_node.keys().all(|n| names.contains(*n)));
    assert!(per_node.values().all(|&n| n >= 20), "{per_node:?}");

    // Each node holds exactly its own keys: a client of one node alone misses the others'.
    let only_a = client(&[&a]);
    for i in 0..100 {
        let k = key(i);
        let on_a = c.node_for(&k) == a.grpc.to_string();
        assert_eq!(only_a.get(k).await.unwrap().is_some(), on_a);
    }

    // Request order, interleaving nodes and misses (even indexes beyond 100 are absent).
    let keys: Vec<Bytes> = (0..150).rev().map(|i| key(i * 7 % 200)).collect();
    let got = c.get_many(&keys).await.unwrap();
    assert_eq!(got.len(), keys.len());
    for (k, entry) in keys.iter().zip(got) {
        let i: usize = std::str::from_utf8(&k[10..]).unwrap().parse().unwrap();
        let expected = (i < 100).then(|| Bytes::from(format!("value {i}")));
        assert_eq!(entry.map(|e| e.value), expected, "key {i}");
    }

    assert_eq!(
        c.delete(&(0..100).map(key).collect::<Vec<_>>())
            .await
            .unwrap(),
        100
    );
    assert!(c.get_many(&keys).await.unwrap().iter().all(Option::is_none));
}

#[tokio::test]
async fn if_newer_version_never_replaces_a_newer_version() {
    let node = start_node();
    let c = client(&[&node]);
    let newer = |v| SetOpts {
        if_newer_version: Some(v),
        ..SetOpts::default()
    };

    assert_eq!(c.set("doc", "v5", newer(5)).await.unwrap(), (true, 5));
    assert_eq!(c.set("doc", "v3", newer(3)).await.unwrap(), (false, 5));
    assert_eq!(
        c.set("doc", "v5 again", newer(5)).await.unwrap(),
        (false, 5)
    );
    let entry = c.get("doc").await.unwrap().unwrap();
    assert_eq!((&entry.value[..], entry.version), (&b"v5"[..], 5));
    assert_eq!(c.set("doc", "v7", newer(7)).await.unwrap(), (true, 7));
    assert_eq!(&c.get("doc").await.unwrap().unwrap().value[..], b"v7");

    match c.set("doc", "bad", newer(0)).await {
        Err(Error::Rejected { code, .. }) => assert_eq!(code, Code::InvalidArgument),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_token_is_sent_and_a_wrong_one_is_rejected_without_opening_the_breaker() {
    let node = TestNode::with(larder_cache::CacheConfig {
        token: "s3cret".into(),
        ..node_config()
    });
    let with = |token: Option<&str>| {
        Client::new(ClientConfig {
            token: token.map(str::to_owned),
            breaker_failures: 2,
            ..client_config(&[&node])
        })
        .unwrap()
    };

    let good = with(Some("s3cret"));
    assert!(good.set("k", "v", SetOpts::default()).await.unwrap().0);
    assert_eq!(&good.get("k").await.unwrap().unwrap().value[..], b"v");

    for token in [None, Some("wrong")] {
        let bad = with(token);
        for _ in 0..5 {
            match bad.get("k").await {
                Err(Error::Rejected { code, .. }) => assert_eq!(code, Code::Unauthenticated),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(bad.breaker_states()[0].1, BreakerState::Closed);
        assert!(bad.healthy());
    }
}

#[tokio::test]
async fn construction_does_not_connect() {
    let c = Client::new(ClientConfig {
        nodes: vec![
            format!("http://{}", closed_port()),
            closed_port().to_string(),
        ],
        ..ClientConfig::default()
    })
    .unwrap();
    assert!(c.healthy());
    assert!(c.get("k").await.unwrap_err().is_unavailable());
}

#[test]
fn construction_outside_a_runtime_is_a_config_error() {
    let result = Client::new(ClientConfig::default());
    assert!(matches!(result, Err(Error::Config(_))), "{result:?}");
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    let bad = [
        vec![],
        vec!["no-port".to_owned()],
        vec!["https://a:1".to_owned()],
        vec!["a:1".to_owned(), "http://a:1".to_owned()],
    ];
    for nodes in bad {
        let result = Client::new(ClientConfig {
            nodes: nodes.clone(),
            ..ClientConfig::default()
        });
        assert!(matches!(result, Err(Error::Config(_))), "{nodes:?}");
    }
    let result = Client::new(ClientConfig {
        token: Some("line\nbreak".into()),
        ..ClientConfig::default()
    });
    assert!(matches!(result, Err(Error::Config(_))));
}

#[tokio::test]
async fn a_fill_lease_holds_only_until_the_key_changes() {
    let node = start_node();
    let c = client(&[&node]);
    let fill = |lease| SetOpts {
        if_newer_version: Some(3),
        lease: Some(lease),
        ..SetOpts::default()
    };

    // One caller gets the lease; a second, while it is out, gets none.
    let Lookup::Miss(Some(lease)) = c.get_or_lease("doc/a").await.unwrap() else {
        panic!("a miss hands out a lease");
    };
    assert_eq!(c.get_or_lease("doc/a").await.unwrap(), Lookup::Miss(None));
    assert_eq!(c.set("doc/a", "v3", fill(lease)).await.unwrap(), (true, 3));
    let Lookup::Hit(entry) = c.get_or_lease("doc/a").await.unwrap() else {
        panic!("filled");
    };
    assert_eq!((&entry.value[..], entry.version), (&b"v3"[..], 3));
    assert!(
        !c.set("doc/a", "again", fill(lease)).await.unwrap().0,
        "a lease fills once"
    );

    // Any change of the key between the miss and the fill retires the lease: a delete, an
    // invalidation, or another write.
    for i in 0..3 {
        let k = Bytes::from(format!("doc/b{i}"));
        let Lookup::Miss(Some(lease)) = c.get_or_lease(k.clone()).await.unwrap() else {
            panic!("a lease for {k:?}");
        };
        match i {
            0 => drop(c.delete(std::slice::from_ref(&k)).await.unwrap()),
            1 => drop(c.invalidate(std::slice::from_ref(&k)).await.unwrap()),
            _ => drop(c.set(k.clone(), "newer", SetOpts::default()).await.unwrap()),
        }
        let (stored, _) = c.set(k.clone(), "stale", fill(lease)).await.unwrap();
        assert!(!stored, "change {i}: the fill after it is refused");
        let held = c.get(k).await.unwrap().map(|e| e.value);
        assert_ne!(held.as_deref(), Some(&b"stale"[..]), "change {i}");
    }
}
