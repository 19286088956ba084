//! Types and service traits generated from `proto/larder/cache/v1/cache.proto` (the node's
//! `Cache` service), `cluster.proto` (the node's `Cluster` service: placement table, handoff)
//! and `origin.proto` (the `Origin` service an application implements for a
//! gRPC read-through origin), and the encoded descriptor set that server reflection serves.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// `larder.cache.v1`: the cache node's contract and the origin contract it calls.
pub mod cache {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("larder.cache.v1");
    }
}

/// The encoded `FileDescriptorSet` of every larder proto file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/larder_descriptor.bin"));

#[cfg(test)]
mod tests {
    #[test]
    fn reflection_describes_both_services() {
        for name in [
            &b"larder/cache/v1/cache.proto"[..],
            b"larder/cache/v1/cluster.proto",
            b"larder/cache/v1/origin.proto",
        ] {
            assert!(memchr::memmem::find(super::FILE_DESCRIPTOR_SET, name).is_some());
        }
    }
}

/// How long a `Watch` subscriber may serve its copies after its last answered ping, unless a
/// node is configured otherwise (`tracking_lease_ms`): the node's default and what a client
/// assumes before a node has announced its own.
pub const DEFAULT_TRACKING_LEASE_MS: u64 = 1_000;
