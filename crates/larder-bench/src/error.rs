//! What `larder bench` can fail with: [`Error`], one variant per kind of failure, naming the
//! option, address or file it concerns; [`Usage`], options that cannot make a run; and the
//! failures of the pieces below them (an HTTP response this client cannot read, a `/proc`
//! entry, a line of a trace).
//!
//! A variant that wraps a cause shows only its own words and hands the cause on as its
//! `source()`, as `anyhow`'s context does: the binary prints the whole chain (`{:#}`), and
//! [`chain`] writes it out where a failed request is counted. This module imports no other
//! module of the crate, so that every one of them can import it.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::num::ParseIntError;
use std::path::PathBuf;

use larder_proto::resp::RespError;
use larder_store::{ConfigError, StoreError, UnknownPolicy};
use tokio::task::JoinError;
use tonic::metadata::errors::InvalidMetadataValue;

/// The result of the crate's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a `larder bench` run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options cannot make a run.
    #[error(transparent)]
    Usage(#[from] Usage),
    /// Nothing accepted a connection at an address.
    #[error("cannot connect to {addr}{}: is {peer} listening there?", after(*.opened))]
    Connect {
        /// The address as given.
        addr: String,
        /// What was expected there.
        peer: Peer,
        /// Connections already open to it when this one failed (bursts open many).
        opened: Option<usize>,
        /// Why the connection failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The load generator ran out of file descriptors while it connected its clients.
    #[error(
        "out of file descriptors after {opened} connections: raise the limit with `ulimit -n` \
         (the clients need one each, the node one per client too)"
    )]
    OutOfFiles {
        /// Connections open when it happened.
        opened: usize,
    },
    /// The node's admin port, read for its metrics, cannot be reached.
    #[error("cannot connect to {admin} for {url}: is it the admin port?")]
    Admin {
        /// The admin address as given.
        admin: String,
        /// The URL that was to be read.
        url: String,
        /// Why the connection failed.
        source: io::Error,
    },
    /// `/metrics` did not answer 200.
    #[error("GET {url}: {answer}")]
    Metrics {
        /// The URL read.
        url: String,
        /// Its status line, or what else came back.
        answer: String,
    },
    /// Reading or writing a connection or a file failed.
    #[error("{doing}")]
    Io {
        /// What was being done: `reading the response`, `opening FILE`, ….
        doing: Cow<'static, str>,
        /// The I/O error.
        source: io::Error,
    },
    /// The server closed a connection that still had requests to answer.
    #[error("the server closed the connection")]
    Closed,
    /// The server sent what its protocol does not allow at that point.
    #[error("{0}")]
    Protocol(&'static str),
    /// A reply that is not RESP.
    #[error(transparent)]
    Resp(#[from] RespError),
    /// An HTTP response this client cannot read.
    #[error(transparent)]
    Http(#[from] WireError),
    /// The server refused a request the run depends on (`AUTH`, a prefill write).
    #[error("{request} refused: {why}")]
    Refused {
        /// The request: `AUTH`, `MSET`, `SetMany`.
        request: &'static str,
        /// The server's error text.
        why: String,
    },
    /// A gRPC call the run depends on failed.
    #[error("{call}: {code:?}: {message}")]
    Call {
        /// The method called.
        call: &'static str,
        /// The status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// A step before the measurement failed. Its text includes the cause's whole chain, so
    /// that the one line `to_string()` gives already says why.
    #[error("{step}: {}", chain(.cause))]
    Setup {
        /// The step: `AUTH`, `prefill`.
        step: &'static str,
        /// What went wrong in it.
        cause: Box<Error>,
    },
    /// A load or client task panicked.
    #[error("{task} failed")]
    Task {
        /// Which kind of task.
        task: &'static str,
        /// How it ended.
        source: JoinError,
    },
    /// The async runtime could not start.
    #[error("starting the tokio runtime")]
    Runtime(#[source] io::Error),
    /// The process named by `--server-pid` cannot be read.
    #[error("--server-pid {pid}")]
    ServerPid {
        /// The pid given.
        pid: u32,
        /// Why its CPU time cannot be read.
        source: CpuError,
    },
    /// A trace file cannot be read.
    #[error("reading {}", .path.display())]
    Trace {
        /// The trace file.
        path: PathBuf,
        /// What is wrong with it.
        source: TraceError,
    },
    /// A replay's store refused its configuration.
    #[error(transparent)]
    StoreConfig(#[from] ConfigError),
    /// A replay's store refused an entry.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A state the code means never to reach.
    #[error("{0}")]
    Internal(&'static str),
    /// No request of a load run succeeded in the measured window (its summary was printed).
    #[error("no request succeeded in the measured window")]
    NothingSucceeded,
    /// Replies of a burst were errors (its outcome was printed).
    #[error("{errors} of {clients} replies were errors")]
    ErrorReplies {
        /// Replies that were errors.
        errors: u64,
        /// Clients in the burst.
        clients: usize,
    },
}

impl Error {
    /// An I/O failure while `doing` something.
    pub(crate) fn io(doing: impl Into<Cow<'static, str>>) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io {
            doing: doing.into(),
            source,
        }
    }

    /// Connecting to `addr`, where `peer` was expected, failed.
    pub(crate) fn connect<E>(addr: &str, peer: Peer) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |source| Self::Connect {
            addr: addr.to_owned(),
            peer,
            opened: None,
            source: Box::new(source),
        }
    }

    /// This failure, inside the setup step `step`.
    pub(crate) fn during(step: &'static str) -> impl FnOnce(Self) -> Self {
        move |cause| Self::Setup {
            step,
            cause: Box::new(cause),
        }
    }
}

fn after(opened: Option<usize>) -> String {
    opened.map_or_else(String::new, |n| format!(" after {n} connections"))
}

/// Options that cannot make a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Usage {
    /// An option outside its range.
    #[error("{option} must be {bound}")]
    Range {
        /// The option (or what it sets).
        option: &'static str,
        /// What it must be: `at least 1`, ….
        bound: &'static str,
    },
    /// `--keys`, `--key-prefix`, `--value-size` or `--read-ratio` given to `bench http`.
    #[error(
        "--keys, --key-prefix, --value-size and --read-ratio do not apply to `bench http`: \
         every request is a GET of --url (see --paths-from for distinct paths)"
    )]
    NotForHttp,
    /// `--url` is not a plain `http://` URL with a host.
    #[error("--url {url:?}: {problem}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A `--header` that is not one header field.
    #[error("--header {header:?}: {problem}")]
    Header {
        /// The header given.
        header: String,
        /// What is wrong with it.
        problem: String,
    },
    /// `--token` cannot be sent as a header value.
    #[error("--token must be printable ASCII")]
    Token(#[source] InvalidMetadataValue),
    /// An address that is neither `host:port` nor a URL.
    #[error("{addr:?} is neither host:port nor a URL")]
    Address {
        /// The address given.
        addr: String,
        /// Why it is not a URI.
        source: tonic::transport::Error,
    },
    /// A trace without known capacities, and no `--capacity`.
    #[error("no default capacities for {name}; pass --capacity N,N,…")]
    Capacities {
        /// The trace's file name.
        name: String,
    },
    /// A `--policy` that names no eviction policy.
    #[error(transparent)]
    Policy(#[from] UnknownPolicy),
    /// `--csv-columns` is not two column numbers counted from 1.
    #[error("--csv-columns takes two columns counted from 1: KEY,SIZE")]
    CsvColumns,
    /// `--sized` with a trace that has no object sizes.
    #[error("--sized needs a trace with object sizes (oracleGeneral or CSV)")]
    NoSizes,
}

impl Usage {
    /// `Ok` when `holds`; otherwise `option` must be `bound`.
    pub(crate) fn require(holds: bool, option: &'static str, bound: &'static str) -> Result<()> {
        if holds {
            Ok(())
        } else {
            Err(Self::Range { option, bound }.into())
        }
    }
}

/// What was expected at an address that could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A `larder cache` node (RESP or gRPC).
    CacheNode,
    /// Any HTTP/1.1 server.
    HttpServer,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CacheNode => "a cache node",
            Self::HttpServer => "an HTTP server",
        })
    }
}

/// Why received bytes are not an HTTP/1.1 response this client can read. Copied, never
/// allocated: it is found on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The head did not end within 64 KiB.
    #[error("response head over 64 KiB")]
    HeadTooLarge,
    /// The first line is not `HTTP/1.x NNN reason`.
    #[error("malformed status line")]
    BadStatusLine,
    /// A header line is not `Name: value`.
    #[error("malformed header field")]
    BadHeader,
    /// `Content-Length` is not a number, or appears twice with different numbers.
    #[error("malformed or conflicting Content-Length")]
    BadContentLength,
    /// A transfer coding other than `chunked` last.
    #[error("a Transfer-Encoding other than chunked")]
    UnsupportedTransferEncoding,
    /// A body that only the closing of the connection would end.
    #[error("a body framed by closing the connection (no Content-Length, not chunked)")]
    NoLength,
    /// A chunk size, chunk end or trailer that is not what chunked coding allows.
    #[error("malformed chunked body")]
    BadChunk,
    /// A body over 64 MiB.
    #[error("response body over 64 MiB")]
    BodyTooLarge,
}

/// Why a process's CPU time cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CpuError {
    /// `/proc/PID/stat` cannot be read (no such process, or not Linux).
    #[error("reading {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// `/proc/PID/stat` does not have the fields expected.
    #[error("parsing {path}")]
    Parse {
        /// The file.
        path: String,
    },
}

/// What is wrong with the contents of a trace file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// Its bytes cannot be read (or decompressed).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A line that is not a decimal key.
    #[error("line {line}: {text:?} is not a decimal key")]
    Key {
        /// The line's number, from 1.
        line: usize,
        /// The line, trimmed.
        text: String,
        /// Why it is not a `u64`.
        source: ParseIntError,
    },
    /// The file ends inside an oracleGeneral record.
    #[error("record {record}: the file ends {filled} bytes into a 24-byte oracleGeneral record")]
    TornRecord {
        /// The record's number, from 1.
        record: usize,
        /// Bytes of it present.
        filled: usize,
    },
    /// A CSV line without the key or the size column.
    #[error("line {line}: fewer than {needed} columns")]
    Columns {
        /// The line's number, from 1.
        line: usize,
        /// Columns the key and size columns need.
        needed: usize,
    },
    /// A CSV size that is not a whole number of bytes.
    #[error("line {line}: size {text:?} is not a whole number of bytes")]
    Size {
        /// The line's number, from 1.
        line: usize,
        /// The size field.
        text: String,
        /// Why it is not a `u32`.
        source: ParseIntError,
    },
}

/// An error and its causes, each after a colon, as `{:#}` shows an `anyhow::Error`: how a
/// failed request is told in the summary.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_reads_like_anyhow_context() {
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        let err = Error::io("reading the response")(reset);
        assert_eq!(err.to_string(), "reading the response");
        assert_eq!(chain(&err), "reading the response: reset by peer");
        let closed = Error::during("prefill")(Error::Closed);
        assert_eq!(
            closed.to_string(),
            "prefill: the server closed the connection"
        );
        assert_eq!(chain(&closed), closed.to_string(), "the cause is told once");
    }

    #[test]
    fn connect_errors_name_what_was_expected() {
        let refused = || Box::new(io::Error::from(io::ErrorKind::ConnectionRefused));
        let err = Error::Connect {
            addr: "127.0.0.1:1".into(),
            peer: Peer::HttpServer,
            opened: None,
            source: refused(),
        };
        assert_eq!(
            err.to_string(),
            "cannot connect to 127.0.0.1:1: is an HTTP server listening there?"
        );
        let err = Error::Connect {
            addr: "127.0.0.1:1".into(),
            peer: Peer::CacheNode,
            opened: Some(7),
            source: refused(),
        };
        assert_eq!(
            err.to_string(),
            "cannot connect to 127.0.0.1:1 after 7 connections: is a cache node listening there?"
        );
    }
}
