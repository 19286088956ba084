//! Which node owns each partition: rendezvous (highest-random-weight) hashing over the ready
//! members, computed by every node from the member set alone, so nodes that see the same
//! members agree on the same [`Table`] without talking about it.
//!
//! A member's weight for a partition is `mix(h(id) ^ mix(partition + 1))`, where `h` is 64-bit
//! FNV-1a and `mix` MurmurHash3's `fmix64`; the partition's owner is the member with the
//! highest weight, the next ones its replicas. Only the member's id counts, not its process
//! generation, so a node restarted with the same id gets its partitions back. Adding a member
//! moves to it only the partitions it now wins; removing one moves only the partitions it
//! held: the minimum any placement can move.

use std::fmt;

use crate::slot::{PARTITIONS, key_slot, partition_of, slots_of};

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
#[must_use]
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fold(FNV_OFFSET, bytes)
}

fn fold(start: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(start, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's `fmix64`: a bijection in which every input bit affects every output bit.
#[must_use]
pub const fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A member's weight for a partition, from the hash of its id.
#[must_use]
pub const fn weight(id_hash: u64, partition: u16) -> u64 {
    mix(id_hash ^ mix(partition as u64 + 1))
}

/// What a member says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Started, not yet taking partitions.
    Joining,
    /// Takes partitions.
    Ready,
    /// Leaving: hands its partitions off, then stops.
    Draining,
}

impl Status {
    /// The word members publish and `/cluster` shows.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Joining => "joining",
            Self::Ready => "ready",
            Self::Draining => "draining",
        }
    }

    /// The status a published word names.
    #[must_use]
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "joining" => Some(Self::Joining),
            "ready" => Some(Self::Ready),
            "draining" => Some(Self::Draining),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cluster member: its stable id, the generation of its running process, its status and
/// the addresses it serves on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    /// Stable across restarts (`--node-id`).
    pub id: String,
    /// Different for every start of the process; higher is newer.
    pub generation: u64,
    /// What it says of itself.
    pub status: Status,
    /// Redis protocol address, `host:port`.
    pub resp: String,
    /// gRPC address, `host:port`.
    pub grpc: String,
    /// Admin HTTP address, `host:port`.
    pub admin: String,
}

/// One member per id, the newest generation of each, sorted by id: a restarted process
/// replaces the one it follows, never stands beside it.
#[must_use]
pub fn newest_per_id(members: impl IntoIterator<Item = Member>) -> Vec<Member> {
    let mut members: Vec<Member> = members.into_iter().collect();
    members.sort_by(|a, b| a.id.cmp(&b.id).then(b.generation.cmp(&a.generation)));
    members.dedup_by(|later, first| later.id == first.id);
    members
}

/// The placement of every partition over a member set, with the epoch that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    epoch: u64,
    /// Every live member, sorted by id; placed ones are `ready`.
    members: Vec<Member>,
    /// For each partition, the index in `members` of its owner (`u16::MAX`: none ready).
    owners: Vec<u16>,
}

/// No member is ready.
const NO_OWNER: u16 = u16::MAX;

impl Table {
    /// The table of `members`: one entry per id (of two generations of an id, the newer), the
    /// ready ones placed.
    #[must_use]
    pub fn new(members: impl IntoIterator<Item = Member>) -> Self {
        let members = newest_per_id(members);
        let ready: Vec<(usize, u64)> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.status == Status::Ready)
            .map(|(i, m)| (i, fnv1a(m.id.as_bytes())))
            .collect();
        let owners = (0..PARTITIONS)
            .map(|partition| {
                ready
                    .iter()
                    .max_by_key(|&&(_, hash)| weight(hash, partition))
                    .map_or(NO_OWNER, |&(index, _)| index as u16)
            })
            .collect();
        let epoch = members.iter().fold(FNV_OFFSET, |hash, m| {
            let hash = fold(hash, m.id.as_bytes());
            let hash = fold(hash, &m.generation.to_le_bytes());
            fold(hash, m.status.as_str().as_bytes())
        });
        Self {
            epoch: mix(epoch),
            members,
            owners,
        }
    }

    /// What names this table: equal on every node that sees the same members, different for
    /// any other member set, generation or status.
    #[must_use]
    pub const fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Every live member, sorted by id.
    #[must_use]
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with `id`.
    #[must_use]
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.index_of(id).map(|i| &self.members[i])
    }

    /// The index in [`Table::members`] of `id`.
    #[must_use]
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.members
            .binary_search_by(|m| m.id.as_str().cmp(id))
            .ok()
    }

    /// The index in [`Table::members`] of the owner of `partition`, if any member is ready.
    #[must_use]
    pub fn owner_index(&self, partition: u16) -> Option<usize> {
        match *self.owners.get(usize::from(partition))? {
            NO_OWNER => None,
            index => Some(usize::from(index)),
        }
    }

    /// The owner of `partition`, if any member is ready.
    #[must_use]
    pub fn owner(&self, partition: u16) -> Option<&Member> {
        self.members
            .get(usize::from(*self.owners.get(usize::from(partition))?))
    }

    /// The owner of the slot of `key`.
    #[must_use]
    pub fn owner_of_key(&self, key: &[u8]) -> Option<&Member> {
        self.owner(partition_of(key_slot(key)))
    }

    /// The ready members for `partition`, best first: the owner, then its replicas.
    #[must_use]
    pub fn ranked(&self, partition: u16) -> Vec<&Member> {
        let mut ready: Vec<(&Member, u64)> = self
            .members
            .iter()
            .filter(|m| m.status == Status::Ready)
            .map(|m| (m, weight(fnv1a(m.id.as_bytes()), partition)))
            .collect();
        ready.sort_by_key(|&(_, w)| std::cmp::Reverse(w));
        ready.into_iter().map(|(m, _)| m).collect()
    }

    /// The partitions `id` owns.
    #[must_use]
    pub fn partitions_of(&self, id: &str) -> Vec<u16> {
        (0..PARTITIONS)
            .filter(|&p| self.owner(p).is_some_and(|m| m.id == id))
            .collect()
    }

    /// Maximal runs of contiguous slots with one owner: `(first, last, owner)`, in slot order
    /// (the shape `CLUSTER SLOTS` answers in).
    #[must_use]
    pub fn slot_ranges(&self) -> Vec<(u16, u16, &Member)> {
        let mut ranges: Vec<(u16, u16, &Member)> = Vec::new();
        for partition in 0..PARTITIONS {
            let Some(owner) = self.owner(partition) else {
                continue;
            };
            let (first, last) = slots_of(partition);
            match ranges.last_mut() {
                Some(run) if run.2.id == owner.id && run.1 + 1 == first => run.1 = last,
                _ => ranges.push((first, last, owner)),
            }
        }
        ranges
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn member(id: &str, generation: u64, status: Status) -> Member {
        Member {
            id: id.to_owned(),
            generation,
            status,
            resp: format!("{id}:6380"),
            grpc: format!("{id}:7070"),
            admin: format!("{id}:7071"),
        }
    }

    fn ready(ids: &[String]) -> Vec<Member> {
        ids.iter().map(|id| member(id, 1, Status::Ready)).collect()
    }

    fn owners(table: &Table) -> Vec<String> {
        (0..PARTITIONS)
            .map(|p| table.owner(p).map(|m| m.id.clone()).unwrap_or_default())
            .collect()
    }

    fn ids() -> impl Strategy<Value = Vec<String>> {
        prop::collection::btree_set("[a-z0-9-]{1,12}", 2..12)
            .prop_map(|set| set.into_iter().collect())
    }

    proptest! {
        #[test]
        fn every_partition_has_one_owner_and_the_order_of_members_does_not_matter(
            ids in ids(),
        ) {
            let table = Table::new(ready(&ids));
            let mut reversed = ready(&ids);
            reversed.reverse();
            let other = Table::new(reversed);
            prop_assert_eq!(owners(&table), owners(&other));
            prop_assert_eq!(table.epoch(), other.epoch());
            prop_assert!(owners(&table).iter().all(|o| !o.is_empty()));
        }

        #[test]
        fn a_joiner_takes_partitions_only_for_itself(ids in ids(), joiner in "[A-Z]{1,8}") {
            let before = Table::new(ready(&ids));
            let mut more = ids.clone();
            more.push(joiner.clone());
            let after = Table::new(ready(&more));
            for (old, new) in owners(&before).iter().zip(owners(&after)) {
                prop_assert!(*old == new || new == joiner, "{old} -> {new}");
            }
        }

        #[test]
        fn a_leaver_gives_up_only_its_own_partitions(ids in ids(), which in any::<usize>()) {
            let leaver = ids[which % ids.len()].clone();
            let before = Table::new(ready(&ids));
            let rest: Vec<String> = ids.iter().filter(|id| **id != leaver).cloned().collect();
            let after = Table::new(ready(&rest));
            for (old, new) in owners(&before).iter().zip(owners(&after)) {
                prop_assert!(*old == new || *old == leaver, "{old} -> {new}");
            }
        }
    }

    #[test]
    fn partitions_spread_evenly() {
        // Binomial spread of 1024 partitions: within a few standard deviations of the mean
        // for every cluster size a deployment is likely to run.
        for n in [2usize, 3, 4, 5, 8, 16] {
            let ids: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
            let table = Table::new(ready(&ids));
            let mean = f64::from(PARTITIONS) / n as f64;
            let sd = (mean * (1.0 - 1.0 / n as f64)).sqrt();
            for id in &ids {
                let owned = table.partitions_of(id).len() as f64;
                assert!(
                    (owned - mean).abs() <= 4.0 * sd,
                    "{n} nodes: {id} owns {owned}, mean {mean:.0}"
                );
            }
        }
    }

    #[test]
    fn only_ready_members_are_placed_and_the_newer_generation_wins() {
        let table = Table::new([
            member("a", 1, Status::Ready),
            member("b", 1, Status::Joining),
            member("c", 1, Status::Draining),
        ]);
        assert!(owners(&table).iter().all(|o| o == "a"));
        assert_eq!(table.members().len(), 3);

        let restarted = Table::new([
            member("a", 1, Status::Ready),
            member("a", 2, Status::Joining),
        ]);
        assert_eq!(restarted.members().len(), 1);
        assert_eq!(restarted.members()[0].generation, 2);
        assert!(
            restarted.owner(0).is_none(),
            "the new generation is not ready yet"
        );
        assert_ne!(table.epoch(), restarted.epoch());
        assert!(Table::new([]).owner(7).is_none());
    }

    #[test]
    fn slot_ranges_cover_every_slot_once_in_order() {
        let table = Table::new(ready(&["a".into(), "b".into(), "c".into()]));
        let ranges = table.slot_ranges();
        assert_eq!(ranges[0].0, 0);
        assert_eq!(ranges.last().map(|r| r.1), Some(crate::slot::SLOTS - 1));
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].1 + 1, pair[1].0);
            assert_ne!(pair[0].2.id, pair[1].2.id, "runs are maximal");
        }
        let key = b"user:42";
        let slot = key_slot(key);
        let run = ranges.iter().find(|r| r.0 <= slot && slot <= r.1).unwrap();
        assert_eq!(run.2.id, table.owner_of_key(key).unwrap().id);
        assert_eq!(table.ranked(partition_of(slot))[0].id, run.2.id);
    }
}
