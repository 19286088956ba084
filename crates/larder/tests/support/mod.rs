//! What the binary's process tests share: a `larder` process, killed when dropped, read until
//! its banner has named its addresses (the banner is printed once every listener is bound:
//! the readiness signal).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, ChildStdout, Command, Stdio};

/// The binary under test.
pub(crate) const LARDER: &str = env!("CARGO_BIN_EXE_larder");

/// A running `larder` process and the `host:port` addresses its banner named.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) addrs: Vec<String>,
    /// Kept open so the process never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Process {
    /// Starts `command` (a `larder` command line) and reads its banner until it has named
    /// `count` addresses.
    pub(crate) fn spawn(mut command: Command, count: usize) -> Self {
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut addrs = Vec::new();
        let mut line = String::new();
        while addrs.len() < count {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "{command:?} exited"
            );
            for word in line.split_whitespace() {
                let addr = word
                    .strip_prefix("redis://")
                    .or_else(|| word.strip_prefix("http://"))
                    .map(|rest| rest.split('/').next().unwrap_or(rest));
                if let Some(addr) = addr {
                    addrs.push(addr.to_owned());
                }
            }
        }
        Self {
            child,
            addrs,
            _stdout: stdout,
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free for both TCP and UDP right now (a node's gossip address takes both).
#[allow(dead_code, reason = "used by the tests that start cluster nodes")]
pub(crate) fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
