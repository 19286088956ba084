//! Mechanisms that the cache node, the client and the gateway share, each written once:
//!
//! * [`auth`]: reading a bearer credential and comparing secrets in constant time;
//! * [`clock`]: the one source of wall-clock time, which tests move by hand;
//! * [`breaker`]: the circuit breaker in front of an origin or a cache node;
//! * [`flight`]: single-flight loads, one per key however many callers wait;
//! * [`reload`]: a value built from files and rebuilt when they change;
//! * [`tls`]: TLS configurations from PEM files (rustls, `ring`), rebuilt when they change.
//!
//! Time comes in as milliseconds from the caller's clock, so every piece is plain and testable.

pub mod auth;
pub mod breaker;
pub mod clock;
pub mod flight;
pub mod reload;
pub mod tls;
