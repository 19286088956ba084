//! The gRPC contract over a real socket with the generated tonic client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod support;

use larder_cache::CacheConfig;
use larder_proto::grpc::cache::v1 as pb;
use pb::cache_client::CacheClient;
use support::{TestNode, admin_get, config};
use tonic::Code;
use tonic::transport::Channel;

async fn connect(node: &TestNode) -> CacheClient<Channel> {
    CacheClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap()
}

fn set(key: &str, value: &str) -> pb::SetRequest {
    pb::SetRequest {
        key: key.as_bytes().to_vec().into(),
        value: value.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn get_set_and_versions() {
    let node = TestNode::start();
    let mut c = connect(&node).await;
    let first = c.set(set("k", "v1")).await.unwrap().into_inner();
    assert!(first.stored && first.version > 0);
    let got = c
        .get(pb::GetRequest {
            key: "k".into(),
            lease: false,
            track: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let entry = got.entry.unwrap();
    assert_eq!(&entry.value[..], b"v1");
    assert_eq!(entry.version, first.version);
    assert_eq!(entry.ttl_ms, 0);

    let missing = c
        .get(pb::GetRequest {
            key: "nope".into(),
            lease: false,
            track: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(missing.entry.is_none());

    // A set never replaces a newer version with an older one.
    let newer = pb::SetRequest {
        mode: pb::SetMode::IfNewerVersion as i32,
        version: 1_000,
        ..set("doc", "v1000")
    };
    assert!(c.set(newer).await.unwrap().into_inner().stored);
    let older = pb::SetRequest {
        mode: pb::SetMode::IfNewerVersion as i32,
        version: 999,
        ..set("doc", "v999")
    };
    let outcome = c.set(older).await.unwrap().into_inner();
    assert!(!outcome.stored);
    assert_eq!(outcome.version, 1_000);

    let bad = pb::SetRequest {
        mode: pb::SetMode::IfNewerVersion as i32,
        ..set("doc", "x")
    };
    assert_eq!(c.set(bad).await.unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn batch_calls_ttl_incr_cas_and_stats() {
    let node = TestNode::start();
    let mut c = connect(&node).await;
    let items = vec![
        set("a", "1"),
        pb::SetRequest {
            ttl_ms: 60_000,
            ..set("b", "2")
        },
    ];
    let results = c
        .set_many(pb::SetManyRequest { items })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 2);
    let keys = vec!["a".into(), "b".into(), "c".into()];
    let many = c
        .get_many(pb::GetManyRequest { keys })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(&many[0].entry.as_ref().unwrap().value[..], b"1");
    let ttl = many[1].entry.as_ref().unwrap().ttl_ms;
    assert!(ttl > 59_000 && ttl <= 60_000, "{ttl}");
    assert!(many[2].entry.is_none());

    assert_eq!(
        c.incr(pb::IncrRequest {
            key: "a".into(),
            delta: 41
        })
        .await
        .unwrap()
        .into_inner()
        .value,
        42
    );
    let err = c
        .incr(pb::IncrRequest {
            key: "b".into(),
            delta: i64::MAX,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    let _ = c.set(set("text", "abc")).await.unwrap();
    let err = c
        .incr(pb::IncrRequest {
            key: "text".into(),
            delta: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let version = c
        .get(pb::GetRequest {
            key: "a".into(),
            lease: false,
            track: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap()
        .version;
    let cas = pb::CompareAndSetRequest {
        key: "a".into(),
        expected_version: version + 7,
        value: "x".into(),
        ttl_ms: 0,
    };
    let lost = c.compare_and_set(cas).await.unwrap().into_inner();
    assert!(!lost.swapped);
    assert_eq!(lost.version, version);
    let cas = pb::CompareAndSetRequest {
        key: "a".into(),
        expected_version: version,
        value: "x".into(),
        ttl_ms: 0,
    };
    assert!(c.compare_and_set(cas).await.unwrap().into_inner().swapped);

    let found = c
        .expire(pb::ExpireRequest {
            key: "a".into(),
            ttl_ms: 5_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(found.found);
    let deleted = c
        .delete(pb::DeleteRequest {
            keys: vec!["a".into(), "zzz".into()],
            await_invalidation: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, 1);

    let stats = c.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert!(stats.items >= 2 && stats.max_bytes == 32 << 20 && stats.hits >= 3);

    let (status, body) = admin_get(&node, "/metrics", None);
    assert_eq!(status, 200);
    assert!(body.contains(r#"command="Get",result="ok""#), "{body}");
    assert!(
        body.contains(r#"command="Incr",result="error"} 2"#),
        "{body}"
    );
    assert!(
        body.contains(r#"larder_cache_connections_total{protocol="grpc"} 1"#),
        "{body}"
    );
}

#[tokio::test]
async fn values_too_large_are_refused_with_a_clear_status() {
    let node = TestNode::start();
    let mut c = connect(&node).await;
    // Larger than the node's whole bound (32 MB): an entry larger than one shard's share is
    // stored, with capacity lent by the other shards.
    let huge = pb::SetRequest {
        value: vec![0u8; 40 << 20].into(),
        ..set("k", "")
    };
    let err = c.set(huge).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("larger than"), "{}", err.message());
}

#[tokio::test]
async fn the_token_is_required_when_configured() {
    let node = TestNode::with(CacheConfig {
        token: "t0k".into(),
        ..config()
    });
    let mut c = connect(&node).await;
    let err = c
        .get(pb::GetRequest {
            key: "k".into(),
            lease: false,
            track: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let channel = Channel::from_shared(format!("http://{}", node.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut authed = CacheClient::with_interceptor(channel, |mut req: tonic::Request<()>| {
        req.metadata_mut()
            .insert("authorization", "Bearer t0k".parse().unwrap());
        Ok(req)
    });
    assert!(
        authed
            .get(pb::GetRequest {
                key: "k".into(),
                lease: false,
                track: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .entry
            .is_none()
    );
}

#[tokio::test]
async fn health_and_both_reflection_versions_answer() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::{v1, v1alpha};

    let node = TestNode::start();
    let channel = Channel::from_shared(format!("http://{}", node.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    let service = "larder.cache.v1.Cache".to_owned();
    // Serving from the very first call: the status is set before the server accepts.
    let status = health
        .check(HealthCheckRequest { service })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    let mut reflect = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1::ServerReflectionRequest {
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
        ..Default::default()
    };
    let mut replies = reflect
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        panic!("unexpected reflection reply");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"larder.cache.v1.Cache") && names.contains(&"grpc.health.v1.Health"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"larder.cache.v1.Origin"),
        "applications serve Origin, not the node: {names:?}"
    );

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "larder.cache.v1.Cache".into(),
            ),
        ),
        ..Default::default()
    };
    let mut replies = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    assert!(matches!(
        reply.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
}
