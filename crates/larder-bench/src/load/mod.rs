//! `larder bench resp` and `larder bench grpc`: load generators for a cache node ([`resp`],
//! [`grpc`]); `larder bench burst`: one key read by many clients at once ([`burst`]); `larder
//! bench http`: GETs against any HTTP/1.1 server ([`http`]).
//!
//! What they share: the measured window and the open-loop schedule ([`window`]), the run's
//! driver ([`run`]), the counting and the summary ([`report`]), the keys and values ([`keys`]),
//! the read buffer of a connection ([`inbox`]) and the CPU-time samples ([`cpu`]). A module here
//! imports only modules below it; none imports this one.

pub(crate) mod burst;
pub(crate) mod cpu;
pub(crate) mod grpc;
pub(crate) mod http;
pub(crate) mod http_request;
pub(crate) mod http_response;
pub(crate) mod inbox;
pub(crate) mod keys;
pub(crate) mod metrics;
pub(crate) mod report;
pub(crate) mod resp;
pub(crate) mod resp_wire;
pub(crate) mod run;
pub(crate) mod window;

#[cfg(test)]
mod against_a_node;
