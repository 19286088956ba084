//! `larder bench resp` and `larder bench grpc` as a script sees them: a `larder cache` child on
//! loopback ports the system picks, the bench commands run against it, their `summary` line
//! read back, and the exit code when no server is there.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

const LARDER: &str = env!("CARGO_BIN_EXE_larder");

/// A `larder cache` process, killed when dropped.
struct CacheNode {
    child: Child,
    resp: String,
    grpc: String,
    /// Kept open so the node never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl CacheNode {
    fn start() -> Self {
        let mut child = Command::new(LARDER)
            .args(["cache", "--resp-addr", "127.0.0.1:0"])
            .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (mut resp, mut grpc) = (None, None);
        let mut line = String::new();
        while resp.is_none() || grpc.is_none() {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "node exited");
            for word in line.split_whitespace() {
                if let Some(addr) = word.strip_prefix("redis://") {
                    resp = Some(addr.to_owned());
                } else if let Some(addr) = word.strip_prefix("http://") {
                    grpc = grpc.or(Some(addr.to_owned()));
                }
            }
        }
        Self {
            child,
            resp: resp.unwrap(),
            grpc: grpc.unwrap(),
            _stdout: stdout,
        }
    }
}

impl Drop for CacheNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(protocol: &str, addr: &str, extra: &[&str]) -> Output {
    Command::new(LARDER)
        .args(["bench", protocol, "--addr", addr, "--keys", "500"])
        .args(["--duration", "0.5", "--warmup", "0.1"])
        .args(extra)
        .output()
        .unwrap()
}

/// The `key=value` fields of the `summary` line.
fn summary(output: &Output) -> HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("summary "))
        .unwrap_or_else(|| panic!("no summary line in {stdout}"));
    line.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn assert_clean(output: &Output) {
    assert!(output.status.success(), "{output:?}");
    let fields = summary(output);
    let number = |key: &str| fields[key].parse::<f64>().unwrap();
    assert!(number("ops") > 0.0, "{fields:?}");
    assert_eq!(number("errors"), 0.0, "{fields:?}");
    assert!(number("ops_per_sec") > 0.0, "{fields:?}");
    assert!(number("p50_us") <= number("p999_us"), "{fields:?}");
    assert!(number("server_cpu_us_per_op") >= 0.0, "{fields:?}");
}

#[test]
fn both_benches_report_a_summary_line() {
    let node = CacheNode::start();
    let pid = node.child.id().to_string();
    let resp = bench(
        "resp",
        &node.resp,
        &["--connections", "2", "--server-pid", &pid],
    );
    assert_clean(&resp);
    let grpc = bench("grpc", &node.grpc, &["--batch", "4", "--server-pid", &pid]);
    assert_clean(&grpc);
}

#[test]
fn no_server_is_a_clear_failure() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    for protocol in ["resp", "grpc"] {
        let output = bench(protocol, &addr, &[]);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("cannot connect to"), "{stderr}");
    }
}
