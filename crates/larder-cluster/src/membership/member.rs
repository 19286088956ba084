//! A [`Member`] as chitchat key-values, and back: what a node publishes of itself, and which
//! of the nodes chitchat holds alive count as members. Plain functions, no I/O.
//!
//! The id and generation travel in chitchat's node id (`ChitchatId`); the rest as keys of
//! the node's state. A node whose keys are missing or do not parse is not a member (it may be
//! a node whose state has not reached us yet, or one of another version); a node that has
//! published [`LEFT`] has said goodbye and is not one either, before the failure detector
//! notices its silence.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chitchat::{ChitchatId, NodeState};

use crate::placement::{Member, Status, newest_per_id};

/// Key of the member's [`Status`] word.
pub(crate) const STATUS: &str = "status";
/// Key of the RESP address.
pub(crate) const RESP: &str = "resp";
/// Key of the gRPC address.
pub(crate) const GRPC: &str = "grpc";
/// Key of the admin HTTP address.
pub(crate) const ADMIN: &str = "admin";
/// Present once the node has left (shut down gracefully).
pub(crate) const LEFT: &str = "left";

/// The key-values `member` publishes at start.
pub(crate) fn key_values(member: &Member) -> Vec<(String, String)> {
    [
        (STATUS, member.status.as_str()),
        (RESP, member.resp.as_str()),
        (GRPC, member.grpc.as_str()),
        (ADMIN, member.admin.as_str()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

/// Whether `member` is one that peers will accept: what [`parse`] requires.
pub(crate) fn is_valid(member: &Member) -> bool {
    !member.id.is_empty()
        && [&member.resp, &member.grpc, &member.admin]
            .iter()
            .all(|a| is_host_port(a))
}

/// The member node `id` describes with the values `get` finds, if they are complete, parse,
/// and do not say it left.
pub(crate) fn parse<'a>(id: &ChitchatId, get: impl Fn(&str) -> Option<&'a str>) -> Option<Member> {
    if get(LEFT).is_some() {
        return None;
    }
    let address = |key| get(key).filter(|a| is_host_port(a)).map(str::to_owned);
    let member = Member {
        id: id.node_id.to_string(),
        generation: id.generation_id,
        status: Status::parse(get(STATUS)?)?,
        resp: address(RESP)?,
        grpc: address(GRPC)?,
        admin: address(ADMIN)?,
    };
    (!member.id.is_empty()).then_some(member)
}

/// The members among chitchat's live nodes, `me` standing for our own node (so that our
/// status shows the moment it changes), newest generation per id, sorted by id.
pub(crate) fn members_of(
    me: &Member,
    self_id: &ChitchatId,
    live: &BTreeMap<ChitchatId, NodeState>,
) -> Vec<Member> {
    let others = live
        .iter()
        .filter(|(id, _)| *id != self_id)
        .filter_map(|(id, state)| parse(id, |key| state.get(key)));
    newest_per_id(others.chain([me.clone()]))
}

/// Members in `new` and not in `old`, and the other way round (by id and generation).
pub(crate) fn changes<'a>(
    old: &'a [Member],
    new: &'a [Member],
) -> (Vec<&'a Member>, Vec<&'a Member>) {
    let same = |a: &Member, b: &Member| a.id == b.id && a.generation == b.generation;
    let joined = new
        .iter()
        .filter(|m| !old.iter().any(|o| same(o, m)))
        .collect();
    let left = old
        .iter()
        .filter(|o| !new.iter().any(|m| same(o, m)))
        .collect();
    (joined, left)
}

/// `host:port`, with a port number.
pub(crate) fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// The last generation handed out by this process.
static LAST_GENERATION: AtomicU64 = AtomicU64::new(0);

/// A generation for a process starting now: the wall-clock time in milliseconds, which a
/// later start of a process with the same id exceeds (the wall clock is the one clock that
/// outlives a process), and strictly above any generation this process handed out before,
/// so that two starts within one millisecond still differ.
pub(crate) fn next_generation() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let previous = LAST_GENERATION
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(after(last, now))
        })
        .unwrap_or_else(|last| last);
    after(previous, now)
}

/// The generation after `last` at wall-clock `now`.
const fn after(last: u64, now: u64) -> u64 {
    if now > last { now } else { last + 1 }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn id(node: &str, generation: u64) -> ChitchatId {
        ChitchatId::new(node, generation, ([127, 0, 0, 1], 7946).into())
    }

    fn member(node: &str, generation: u64, status: Status) -> Member {
        Member {
            id: node.to_owned(),
            generation,
            status,
            resp: "127.0.0.1:6380".to_owned(),
            grpc: "127.0.0.1:7070".to_owned(),
            admin: "[::1]:7071".to_owned(),
        }
    }

    fn parse_map(id: &ChitchatId, map: &HashMap<String, String>) -> Option<Member> {
        parse(id, |key| map.get(key).map(String::as_str))
    }

    #[test]
    fn a_member_survives_its_key_values() {
        let me = member("a", 7, Status::Draining);
        let map: HashMap<String, String> = key_values(&me).into_iter().collect();
        assert_eq!(parse_map(&id("a", 7), &map), Some(me.clone()));
        assert!(is_valid(&me));
    }

    #[test]
    fn incomplete_unparsable_or_departed_nodes_are_not_members() {
        let full: HashMap<String, String> = key_values(&member("a", 1, Status::Ready))
            .into_iter()
            .collect();
        for key in [STATUS, RESP, GRPC, ADMIN] {
            let mut missing = full.clone();
            missing.remove(key);
            assert_eq!(parse_map(&id("a", 1), &missing), None, "without {key}");
        }
        for (key, bad) in [
            (STATUS, "sleeping"),
            (RESP, "6380"),
            (GRPC, "host:"),
            (ADMIN, ":7071"),
        ] {
            let mut wrong = full.clone();
            wrong.insert(key.to_owned(), bad.to_owned());
            assert_eq!(parse_map(&id("a", 1), &wrong), None, "{key} = {bad}");
        }
        let mut left = full.clone();
        left.insert(LEFT.to_owned(), "true".to_owned());
        assert_eq!(parse_map(&id("a", 1), &left), None);
        assert_eq!(parse_map(&id("", 1), &full), None);
        assert!(!is_valid(&Member {
            resp: "nowhere".to_owned(),
            ..member("a", 1, Status::Ready)
        }));
    }

    #[test]
    fn only_the_newest_generation_of_an_id_counts_and_we_are_always_in() {
        let me = member("me", 5, Status::Joining);
        let self_id = id("me", 5);
        let mut live = BTreeMap::new();
        for (node, generation) in [("b", 1), ("b", 3), ("b", 2)] {
            let mut state = NodeState::for_test();
            for (key, value) in key_values(&member(node, generation, Status::Ready)) {
                state.set(key, value);
            }
            live.insert(id(node, generation), state);
        }
        live.insert(id("half", 1), NodeState::for_test());
        let members = members_of(&me, &self_id, &live);
        let seen: Vec<(&str, u64)> = members
            .iter()
            .map(|m| (m.id.as_str(), m.generation))
            .collect();
        assert_eq!(seen, [("b", 3), ("me", 5)]);
        assert_eq!(members_of(&me, &self_id, &BTreeMap::new()), [me]);
    }

    #[test]
    fn changes_name_joiners_and_leavers_by_generation() {
        let old = [member("a", 1, Status::Ready), member("b", 1, Status::Ready)];
        let new = [
            member("a", 1, Status::Draining),
            member("b", 2, Status::Joining),
        ];
        let (joined, left) = changes(&old, &new);
        assert_eq!(joined, [&new[1]]);
        assert_eq!(left, [&old[1]]);
    }

    #[test]
    fn generations_only_grow() {
        assert_eq!(after(5, 9), 9);
        assert_eq!(after(9, 9), 10);
        assert_eq!(after(12, 9), 13);
        let first = next_generation();
        let second = next_generation();
        assert!(second > first);
        assert!(first > 1_700_000_000_000, "milliseconds since 1970");
    }
}
