//! Cluster logic for larder cache nodes.
//!
//! Membership by gossip, a fixed number of partitions (key → partition by xxh3), partitions
//! placed on nodes by rendezvous hashing, a hybrid logical clock for last-write-wins, asynchronous
//! replication and anti-entropy. The state machines are synchronous and driven by a transport
//! trait so tests can simulate a network. Filled in by the cluster issue.
