//! Short runs of both load generators against a real cache node started in this process, on
//! loopback ports the system picks.

use std::net::SocketAddr;

use larder_cache::CacheConfig;
use larder_cache::testing::TestNode;

use super::report::{Progress, Summary};
use super::run::runtime;
use super::{grpc, resp};
use crate::args::{GrpcArgs, LoadArgs, RespArgs};

/// A cache node whose gRPC listener wants `token` (empty: none).
fn node(token: &str) -> TestNode {
    TestNode::with(CacheConfig {
        token: token.into(),
        shutdown_grace_ms: 1_000,
        ..larder_cache::testing::config()
    })
}

/// Half a second after a short warmup, 1000 keys, CPU measured on this very process.
fn load(rate: Option<f64>) -> LoadArgs {
    LoadArgs {
        keys: 1000,
        value_size: 16,
        read_ratio: 0.8,
        duration: 0.5,
        warmup: 0.2,
        rate,
        prefill: true,
        threads: 1,
        server_pid: Some(std::process::id()),
    }
}

fn resp_args(addr: SocketAddr, pipeline: usize, rate: Option<f64>) -> RespArgs {
    RespArgs {
        addr: addr.to_string(),
        connections: 4,
        pipeline,
        password: None,
        load: load(rate),
    }
}

fn grpc_args(addr: SocketAddr, batch: usize, rate: Option<f64>) -> GrpcArgs {
    GrpcArgs {
        addr: addr.to_string(),
        connections: 2,
        concurrency: 4,
        token: Some("s3cret".into()),
        batch,
        load: load(rate),
    }
}

fn run_resp(args: &RespArgs) -> crate::error::Result<Summary> {
    runtime(1)?.block_on(resp::bench(args, Progress::Quiet))
}

fn run_grpc(args: &GrpcArgs) -> crate::error::Result<Summary> {
    runtime(1)?.block_on(grpc::bench(args, Progress::Quiet))
}

fn assert_clean(summary: &Summary) {
    super::report::assert_sound(summary);
    assert_eq!(summary.misses, 0, "every key was prefilled: {summary}");
}

#[test]
fn resp_closed_and_open_loop() {
    let node = node("");
    let closed = run_resp(&resp_args(node.resp, 8, None)).unwrap();
    assert_clean(&closed);
    assert_eq!(closed.requests, closed.ops);

    let open = run_resp(&resp_args(node.resp, 2, Some(2000.0))).unwrap();
    assert_clean(&open);
    // 2000 requests/s for half a second, give or take the window's edges.
    assert!((800..=1200).contains(&open.ops), "{open}");
}

#[test]
fn grpc_single_and_batched_reads() {
    let node = node("s3cret");
    let single = run_grpc(&grpc_args(node.grpc, 1, None)).unwrap();
    assert_clean(&single);
    assert_eq!(single.requests, single.ops);

    let batched = run_grpc(&grpc_args(node.grpc, 10, Some(400.0))).unwrap();
    assert_clean(&batched);
    assert!((160..=240).contains(&batched.requests), "{batched}");
    assert!(
        batched.ops > batched.requests * 5,
        "reads count keys: {batched}"
    );
}

#[test]
fn a_wrong_token_fails_the_prefill_clearly() {
    let node = node("s3cret");
    let mut args = grpc_args(node.grpc, 1, None);
    args.token = Some("wrong".into());
    let err = run_grpc(&args).unwrap_err().to_string();
    assert!(err.contains("Unauthenticated"), "{err}");
}

#[test]
fn without_a_server_both_say_so() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let err = run_resp(&resp_args(closed, 1, None)).unwrap_err();
    assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
    let err = run_grpc(&grpc_args(closed, 1, None)).unwrap_err();
    assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
}
