//! Which node owns a key: rendezvous (highest-random-weight) hashing over the node names.
//!
//! Every gateway replica must send a key to the same node, so the hash is fixed here rather
//! than borrowed from a hasher whose output may change between crate versions or platforms:
//!
//! * `h(bytes)` is 64-bit FNV-1a (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`);
//! * `mix(x)` is the MurmurHash3 `fmix64` finalizer;
//! * a node's weight for a key is `mix(h(node) ^ h(key))`, where `node` is its normalized name
//!   (`host:port`, without a scheme), and the key goes to the node with the highest weight.
//!
//! The result depends only on the set of node names, not on their order. Because `mix` is a
//! bijection, distinct node hashes never tie. Removing a node moves only the keys it owned;
//! adding one takes about `1/n` of the keys, from every node alike.

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's `fmix64`: a bijection in which every input bit affects every output bit.
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The nodes' hashes, in configuration order; a key's owner is an index into it.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    node_hashes: Box<[u64]>,
}

impl Placement {
    /// Placement over nodes with these normalized names, or the first two names whose hashes
    /// collide (which would make their keys' owner depend on the order of the list).
    pub(crate) fn new<S: AsRef<str>>(names: &[S]) -> Result<Self, (String, String)> {
        let node_hashes: Box<[u64]> = names.iter().map(|n| fnv1a(n.as_ref().as_bytes())).collect();
        for (i, a) in node_hashes.iter().enumerate() {
            if let Some(j) = node_hashes[i + 1..].iter().position(|b| b == a) {
                let other = &names[i + 1 + j];
                return Err((names[i].as_ref().to_owned(), other.as_ref().to_owned()));
            }
        }
        Ok(Self { node_hashes })
    }

    /// The index of the node that owns `key`.
    pub(crate) fn owner(&self, key: &[u8]) -> usize {
        if self.node_hashes.len() == 1 {
            return 0;
        }
        let key_hash = fnv1a(key);
        let mut best = (0, 0);
        for (index, node_hash) in self.node_hashes.iter().enumerate() {
            let weight = mix(node_hash ^ key_hash);
            if weight > best.1 {
                best = (index, weight);
            }
        }
        best.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> String {
        format!("doc/users/{i}")
    }

    fn placement(names: &[&str]) -> Placement {
        Placement::new(names).unwrap()
    }

    #[test]
    fn hashes_are_the_documented_functions() {
        // Published FNV-1a 64 test vectors: replicas built from other code must agree.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(mix(0), 0);
        assert_eq!(mix(1), 0xb456_bcfc_34c2_cb2c);
    }

    #[test]
    fn owners_are_stable_and_do_not_depend_on_list_order() {
        let nodes = ["10.0.0.1:7070", "10.0.0.2:7070", "10.0.0.3:7070"];
        let forward = placement(&nodes);
        let backward = placement(&[nodes[2], nodes[1], nodes[0]]);
        // Pinned owners: a change here would split gateway replicas built from different
        // versions, so it must be deliberate.
        let pinned: Vec<&str> = ["doc/users/1", "doc/users/2", "doc/orders/42", "", "k"]
            .iter()
            .map(|k| nodes[forward.owner(k.as_bytes())])
            .collect();
        assert_eq!(pinned, PINNED);
        for i in 0..1_000 {
            let k = key(i);
            let a = nodes[forward.owner(k.as_bytes())];
            let b = [nodes[2], nodes[1], nodes[0]][backward.owner(k.as_bytes())];
            assert_eq!(a, b, "{k}");
            assert_eq!(forward.owner(k.as_bytes()), forward.owner(k.as_bytes()));
        }
    }

    /// Owners computed by an independent implementation of the documented functions.
    const PINNED: [&str; 5] = [
        "10.0.0.3:7070",
        "10.0.0.2:7070",
        "10.0.0.1:7070",
        "10.0.0.1:7070",
        "10.0.0.1:7070",
    ];

    #[test]
    fn three_nodes_share_keys_within_ten_percent() {
        let p = placement(&["cache-a:7070", "cache-b:7070", "cache-c:7070"]);
        let mut counts = [0usize; 3];
        let total = 10_000;
        for i in 0..total {
            counts[p.owner(key(i).as_bytes())] += 1;
        }
        let fair = total / 3;
        for count in counts {
            assert!(count.abs_diff(fair) * 10 <= fair, "{counts:?}");
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let all = [
            "cache-a:7070",
            "cache-b:7070",
            "cache-c:7070",
            "cache-d:7070",
        ];
        let before = placement(&all);
        let rest = [all[0], all[1], all[3]];
        let after = placement(&rest);
        let mut moved = 0;
        for i in 0..10_000 {
            let k = key(i);
            let old = all[before.owner(k.as_bytes())];
            let new = rest[after.owner(k.as_bytes())];
            if old == all[2] {
                moved += 1;
            } else {
                assert_eq!(old, new, "{k} moved off a node that stayed");
            }
        }
        assert!(moved > 2_000, "node c owned {moved} keys");
    }

    #[test]
    fn one_node_owns_everything_and_colliding_names_are_refused() {
        let p = placement(&["only:7070"]);
        assert_eq!(p.owner(b"anything"), 0);
        assert!(Placement::new(&["a:1", "b:2", "a:1"]).is_err());
    }
}
