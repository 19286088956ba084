//! Runs commands against a node without sockets, for the command tables' tests.

use std::net::SocketAddr;
use std::sync::Arc;

use larder_proto::resp::Protocol;

use crate::clients::ClientGuard;
use crate::config::CacheConfig;
use crate::metrics::{LocalCounts, Metrics};
use crate::node::{Node, NodeOptions};
use crate::resp::ctx::{Ctx, Session};
use crate::resp::execute;
use crate::resp::table::{COMMANDS, metric_names};

/// A node and one client session on it.
pub(crate) struct Harness {
    pub(crate) node: Arc<Node>,
    pub(crate) session: Session,
    guard: ClientGuard,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with_config(CacheConfig {
            max_memory: "16mb".into(),
            ..CacheConfig::default()
        })
    }

    pub(crate) fn with_config(config: CacheConfig) -> Self {
        let metrics = Metrics::new(metric_names(), crate::grpc::METHODS.to_vec());
        let node = Arc::new(Node::new(config, metrics, NodeOptions::default()).unwrap());
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let guard = node.clients.register(addr, addr, node.now_ms());
        let session = Session {
            protocol: Protocol::Resp2,
            authed: node.config.password.is_empty(),
            closing: false,
        };
        Self {
            node,
            session,
            guard,
        }
    }

    /// Runs one command given as words and returns the raw reply.
    pub(crate) fn run(&mut self, words: &[&str]) -> String {
        let argv: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        self.run_bytes(&argv)
    }

    pub(crate) fn run_bytes(&mut self, argv: &[&[u8]]) -> String {
        let mut out = Vec::new();
        let mut ctx = Ctx {
            node: &self.node,
            session: &mut self.session,
            client: &self.guard.entry,
            out: &mut out,
            table: &COMMANDS,
            deferred: None,
        };
        // Replies that wait for an origin are not run here; see tests/origin.rs.
        let _ = execute(&mut ctx, argv, &mut LocalCounts::default());
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Runs a table of `(command line, expected reply)` cases in order.
    pub(crate) fn check(&mut self, cases: &[(&str, &str)]) {
        for (line, want) in cases {
            let words: Vec<&str> = line.split(' ').collect();
            let got = self.run(&words);
            assert_eq!(got, *want, "command: {line}");
        }
    }
}
