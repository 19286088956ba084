use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::{ENTRY_OVERHEAD, MAX_KEY_LEN, ManualClock, TTL_OVERHEAD};

/// Bytes of an entry's header in the arena.
const HEADER_BYTES: u64 = 16;

fn store(capacity: Capacity, policy: Policy) -> Store {
    Store::new(StoreConfig {
        capacity,
        shards: 1,
        policy,
    })
    .unwrap()
}

fn clocked(capacity: Capacity) -> (Store, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    (
        store(capacity, Policy::default()).with_clock(clock.clone()),
        clock,
    )
}

fn set(store: &Store, key: &str, value: &str) -> SetOutcome {
    store
        .set(key.as_bytes(), value.as_bytes(), SetOptions::default())
        .unwrap()
}

fn value(store: &Store, key: &str) -> Option<String> {
    store
        .get(key.as_bytes())
        .map(|item| String::from_utf8(item.value).unwrap())
}

#[test]
fn set_get_delete_round_trip() {
    let store = store(Capacity::Bytes(1 << 20), Policy::default());
    assert_eq!(value(&store, "a"), None);
    set(&store, "a", "1");
    assert_eq!(value(&store, "a").as_deref(), Some("1"));
    assert!(store.delete(b"a"));
    assert!(!store.delete(b"a"));
    let stats = store.stats();
    assert_eq!(
        (
            stats.hits,
            stats.misses,
            stats.sets,
            stats.items,
            stats.used
        ),
        (1, 1, 1, 0, 0)
    );
}

#[test]
fn versions_grow_per_key_and_modes_are_honoured() {
    let store = store(Capacity::Bytes(1 << 20), Policy::default());
    let first = set(&store, "k", "a").version.unwrap();
    let second = set(&store, "k", "b").version.unwrap();
    assert!(second > first);
    let nx = store
        .set(b"k", b"c", SetOptions::mode(SetMode::IfAbsent))
        .unwrap();
    assert_eq!((nx.stored, nx.version), (false, Some(second)));
    let xx = store
        .set(b"missing", b"c", SetOptions::mode(SetMode::IfPresent))
        .unwrap();
    assert!(!xx.stored && !store.contains(b"missing"));
    let newer = store
        .set(
            b"doc",
            b"v10",
            SetOptions::mode(SetMode::IfNewerVersion(10)),
        )
        .unwrap();
    assert_eq!(newer.version, Some(10));
    let older = store
        .set(b"doc", b"v9", SetOptions::mode(SetMode::IfNewerVersion(9)))
        .unwrap();
    assert!(!older.stored);
    assert_eq!(store.get(b"doc").unwrap().value, b"v10");
    let same = SetOptions::mode(SetMode::IfNotOlderVersion(10));
    assert!(
        !store
            .set(
                b"doc",
                b"v10'",
                SetOptions::mode(SetMode::IfNewerVersion(10))
            )
            .unwrap()
            .stored
    );
    assert!(
        store.set(b"doc", b"v10'", same).unwrap().stored,
        "the same version is replaced"
    );
    let behind = SetOptions::mode(SetMode::IfNotOlderVersion(9));
    assert!(!store.set(b"doc", b"v9", behind).unwrap().stored);
    assert_eq!(store.get(b"doc").unwrap().value, b"v10'");
    let plain = set(&store, "doc", "v11");
    assert!(
        plain.version.unwrap() > 10,
        "assigned versions never go backwards"
    );
    let previous = store
        .set(
            b"doc",
            b"v12",
            SetOptions {
                return_previous: true,
                ..SetOptions::default()
            },
        )
        .unwrap();
    assert_eq!(previous.previous.unwrap().value, b"v11");
}

#[test]
fn expired_entries_are_never_returned_and_are_reclaimed() {
    let (store, clock) = clocked(Capacity::Bytes(1 << 20));
    store
        .set(b"short", b"x", SetOptions::ttl(Duration::from_millis(100)))
        .unwrap();
    store
        .set(b"long", b"y", SetOptions::ttl(Duration::from_secs(100)))
        .unwrap();
    assert_eq!(store.ttl(b"short"), TtlState::ExpiresIn(100));
    clock.advance(Duration::from_millis(100));
    assert_eq!(store.get(b"short"), None);
    assert_eq!(store.ttl(b"short"), TtlState::Missing);
    for i in 0..50 {
        store
            .set(
                format!("t{i}").as_bytes(),
                b"z",
                SetOptions::ttl(Duration::from_secs(1)),
            )
            .unwrap();
    }
    clock.advance(Duration::from_secs(2));
    // Writes reclaim expired entries a few at a time, without anyone reading them.
    for i in 0..20 {
        set(&store, &format!("w{i}"), "v");
    }
    let stats = store.stats();
    assert_eq!(stats.items, 1 + 20, "all fifty expired entries are gone");
    assert_eq!(stats.expirations, 51);
    store.check();
}

#[test]
fn reclaim_expired_sweeps_idle_shards() {
    let (store, clock) = clocked(Capacity::Bytes(1 << 20));
    for i in 0..10 {
        store
            .set(
                format!("{i}").as_bytes(),
                b"v",
                SetOptions::ttl(Duration::from_secs(1)),
            )
            .unwrap();
    }
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.reclaim_expired(100), 10);
    assert_eq!(store.stats().used, 0);
}

#[test]
fn expire_persist_and_keepttl() {
    let (store, clock) = clocked(Capacity::Bytes(1 << 20));
    set(&store, "k", "v");
    assert_eq!(store.ttl(b"k"), TtlState::Persistent);
    assert!(
        store
            .expire(b"k", Expiry::In(Duration::from_secs(10)))
            .unwrap()
    );
    assert_eq!(store.ttl(b"k"), TtlState::ExpiresIn(10_000));
    store
        .set(
            b"k",
            b"w",
            SetOptions {
                expiry: Expiry::Keep,
                ..SetOptions::default()
            },
        )
        .unwrap();
    assert_eq!(store.ttl(b"k"), TtlState::ExpiresIn(10_000));
    assert!(store.persist(b"k"));
    assert!(!store.persist(b"k"));
    assert_eq!(store.ttl(b"k"), TtlState::Persistent);
    assert!(
        store.expire(b"k", Expiry::At(clock.now_ms() - 1)).unwrap(),
        "a past time deletes"
    );
    assert!(!store.contains(b"k"));
    assert!(
        !store
            .expire(b"nothing", Expiry::In(Duration::from_secs(1)))
            .unwrap()
    );
    store.check();
}

#[test]
fn byte_bound_holds_and_evicts_at_insert() {
    for policy in Policy::ALL {
        let capacity = 10 * (ENTRY_OVERHEAD + 2 + 100);
        let store = store(Capacity::Bytes(capacity), policy);
        for i in 0..100 {
            store
                .set(
                    format!("{i:02}").as_bytes(),
                    &[b'x'; 100],
                    SetOptions::default(),
                )
                .unwrap();
            assert!(store.stats().used <= capacity, "{policy}: over the bound");
        }
        let stats = store.stats();
        assert_eq!((stats.items, stats.evictions), (10, 90), "{policy}");
        store.check();
    }
}

#[test]
fn oversized_entries_and_keys_are_refused_without_change() {
    let store = store(Capacity::Bytes(1_000), Policy::default());
    set(&store, "keep", "me");
    let err = store
        .set(b"big", &[0; 1_000], SetOptions::default())
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::TooLarge {
            size: 1_000 + 3 + ENTRY_OVERHEAD,
            limit: 1_000
        }
    );
    assert!(err.to_string().contains("larger than the 1000-byte limit"));
    assert_eq!(value(&store, "keep").as_deref(), Some("me"));
    let long_key = vec![b'k'; MAX_KEY_LEN + 1];
    assert_eq!(
        store.set(&long_key, b"v", SetOptions::default()),
        Err(StoreError::KeyTooLong(MAX_KEY_LEN + 1))
    );
}

#[test]
fn ttl_entries_are_charged_their_overhead() {
    let store = store(Capacity::Bytes(1 << 20), Policy::default());
    store
        .set(b"k", b"v", SetOptions::ttl(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(store.stats().used, 2 + ENTRY_OVERHEAD + TTL_OVERHEAD);
    assert!(store.persist(b"k"));
    assert_eq!(store.stats().used, 2 + ENTRY_OVERHEAD);
}

#[test]
fn incr_follows_redis_rules() {
    let store = store(Capacity::Bytes(1 << 20), Policy::default());
    assert_eq!(store.incr(b"n", 1), Ok(1));
    assert_eq!(store.incr(b"n", -11), Ok(-10));
    assert_eq!(value(&store, "n").as_deref(), Some("-10"));
    set(&store, "max", &i64::MAX.to_string());
    assert_eq!(store.incr(b"max", 1), Err(StoreError::Overflow));
    for bad in ["abc", " 1", "+1", "01", "1.5", "", "99999999999999999999"] {
        set(&store, "bad", bad);
        assert_eq!(
            store.incr(b"bad", 1),
            Err(StoreError::NotAnInteger),
            "{bad:?}"
        );
        assert_eq!(
            value(&store, "bad").as_deref(),
            Some(bad),
            "unchanged after the error"
        );
    }
}

#[test]
fn compare_and_set_checks_the_version() {
    let store = store(Capacity::Bytes(1 << 20), Policy::default());
    assert_eq!(
        store.compare_and_set(b"k", 1, b"v", Expiry::Never),
        Ok(CasOutcome::Mismatch(None))
    );
    let version = set(&store, "k", "a").version.unwrap();
    assert_eq!(
        store.compare_and_set(b"k", version + 5, b"b", Expiry::Never),
        Ok(CasOutcome::Mismatch(Some(version)))
    );
    let CasOutcome::Swapped(next) = store
        .compare_and_set(b"k", version, b"b", Expiry::Never)
        .unwrap()
    else {
        panic!("expected a swap");
    };
    assert!(next > version);
    assert_eq!(value(&store, "k").as_deref(), Some("b"));
}

#[test]
fn scan_visits_every_key_once_across_shards() {
    let store = Store::new(StoreConfig {
        capacity: Capacity::Bytes(64 << 20),
        shards: 8,
        ..StoreConfig::default()
    })
    .unwrap();
    let keys: HashSet<Vec<u8>> = (0..1_000)
        .map(|i| format!("key:{i}").into_bytes())
        .collect();
    for key in &keys {
        store.set(key, b"v", SetOptions::default()).unwrap();
    }
    let (mut cursor, mut seen, mut pages) = (0, Vec::new(), 0);
    loop {
        let (next, page) = store.scan(cursor, 37);
        assert!(page.len() <= 37);
        seen.extend(page);
        pages += 1;
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), keys.len());
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), keys);
    assert!(pages >= 1_000 / 37);
}

#[test]
fn custom_hook_pins_entries_and_reports_when_nothing_can_go() {
    struct PinAll;
    impl EvictionHook for PinAll {
        fn may_evict(&self, key: &[u8], _: &EntryRef<'_>) -> bool {
            !key.starts_with(b"pin")
        }
    }
    for policy in Policy::ALL {
        let config = StoreConfig {
            capacity: Capacity::Items(4),
            shards: 1,
            policy,
        };
        let store = Store::with_hook(config, PinAll).unwrap();
        for i in 0..3 {
            store
                .set(format!("pin{i}").as_bytes(), b"v", SetOptions::default())
                .unwrap();
        }
        for i in 0..20 {
            store
                .set(format!("free{i}").as_bytes(), b"v", SetOptions::default())
                .unwrap_or_else(|e| panic!("{policy}: {e}"));
        }
        assert!(
            (0..3).all(|i| store.contains(format!("pin{i}").as_bytes())),
            "{policy}"
        );
        store.set(b"pin3", b"v", SetOptions::default()).unwrap();
        let err = store.set(b"one-too-many", b"v", SetOptions::default());
        assert_eq!(err, Err(StoreError::AllPinned), "{policy}");
        assert_eq!(store.len(), 4);
        store.check();
    }
}

#[test]
fn lru_evicts_the_least_recently_used() {
    let store = store(Capacity::Items(3), Policy::Lru);
    for key in ["a", "b", "c"] {
        set(&store, key, "v");
    }
    store.get(b"a");
    set(&store, "d", "v");
    assert!(store.contains(b"a") && !store.contains(b"b"));
}

#[test]
fn sieve_keeps_visited_entries() {
    let store = store(Capacity::Items(3), Policy::Sieve);
    for key in ["a", "b", "c"] {
        set(&store, key, "v");
    }
    store.get(b"a");
    set(&store, "d", "v");
    assert!(store.contains(b"a") && !store.contains(b"b") && store.contains(b"c"));
}

#[test]
fn frequency_aware_policies_resist_a_scan() {
    for policy in [Policy::S3Fifo, Policy::TinyLfu, Policy::Adaptive] {
        let store = store(Capacity::Items(100), policy);
        let hot: Vec<String> = (0..50).map(|i| format!("hot{i}")).collect();
        for _ in 0..5 {
            for key in &hot {
                if store.get(key.as_bytes()).is_none() {
                    set(&store, key, "v");
                }
            }
        }
        for i in 0..1_000 {
            set(&store, &format!("scan{i}"), "v");
        }
        let kept = hot
            .iter()
            .filter(|key| store.contains(key.as_bytes()))
            .count();
        assert!(
            kept >= 45,
            "{policy} kept only {kept} of 50 hot keys through a scan"
        );
        store.check();
    }
}

#[test]
fn clear_empties_but_keeps_counters() {
    let store = store(Capacity::Bytes(1 << 20), Policy::default());
    set(&store, "a", "1");
    store.clear();
    assert!(store.is_empty());
    assert_eq!((store.stats().sets, store.stats().used), (1, 0));
}

#[test]
fn parse_i64_matches_redis() {
    assert_eq!(parse_i64(b"0"), Some(0));
    assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [&b"-"[..], b"00", b"-0", b"1e3", b"\xff"] {
        assert_eq!(parse_i64(bad), None);
    }
}

#[test]
fn adaptive_keeps_part_of_a_loop_larger_than_the_cache() {
    let hit_ratio = |policy| {
        let store = store(Capacity::Items(100), policy);
        let mut hits = 0;
        for _lap in 0..50 {
            for key in 0..400u32 {
                let key = key.to_le_bytes();
                if store.get(&key).is_some() {
                    hits += 1;
                } else {
                    store.set(&key, b"", SetOptions::default()).unwrap();
                }
            }
        }
        f64::from(hits) / 20_000.0
    };
    assert_eq!(hit_ratio(Policy::Lru), 0.0);
    // The best any policy can do is about 100/400 once warm.
    assert!(
        hit_ratio(Policy::Adaptive) > 0.22,
        "adaptive: {}",
        hit_ratio(Policy::Adaptive)
    );
}

#[test]
fn update_reads_and_writes_atomically() {
    let store = small_store();
    store.set(b"k", b"ab", SetOptions::default()).unwrap();
    let len = store
        .update(b"k", |entry| {
            let mut value = entry.map(|e| e.value.to_vec()).unwrap_or_default();
            value.extend_from_slice(b"cd");
            let len = value.len();
            (
                Update::Write {
                    value,
                    expiry: Expiry::Keep,
                },
                len,
            )
        })
        .unwrap();
    assert_eq!(len, 4);
    assert_eq!(store.get(b"k").unwrap().value, b"abcd");
    let gone = store
        .update(b"k", |entry| {
            (Update::Delete, entry.map(|e| e.value.to_vec()))
        })
        .unwrap();
    assert_eq!(gone.as_deref(), Some(&b"abcd"[..]));
    assert!(store.get(b"k").is_none());
    let kept = store
        .update(b"absent", |entry| (Update::Keep, entry.is_some()))
        .unwrap();
    assert!(!kept);
    assert!(store.get(b"absent").is_none());
}

#[test]
fn update_can_change_only_the_expiry() {
    let clock = Arc::new(ManualClock::new(1_000));
    let store = small_store().with_clock(clock.clone());
    store.set(b"k", b"v", SetOptions::default()).unwrap();
    store
        .update(b"k", |_| {
            (Update::Expire(Expiry::In(Duration::from_secs(5))), ())
        })
        .unwrap();
    assert_eq!(store.ttl(b"k"), TtlState::ExpiresIn(5_000));
    clock.advance(Duration::from_secs(6));
    assert!(store.get(b"k").is_none());
}

#[test]
fn set_all_if_absent_is_all_or_nothing() {
    let store = small_store();
    let pairs: Vec<(&[u8], &[u8])> = vec![(b"a", b"1"), (b"b", b"2"), (b"c", b"3")];
    assert_eq!(store.set_all_if_absent(&pairs), Ok(true));
    assert_eq!(store.get(b"b").unwrap().value, b"2");
    let again: Vec<(&[u8], &[u8])> = vec![(b"d", b"4"), (b"a", b"9")];
    assert_eq!(store.set_all_if_absent(&again), Ok(false));
    assert!(
        store.get(b"d").is_none(),
        "nothing written when one key exists"
    );
    assert_eq!(store.get(b"a").unwrap().value, b"1");
    let huge = vec![0u8; 10 << 20];
    let too_big: Vec<(&[u8], &[u8])> = vec![(b"e", b"5"), (b"f", &huge)];
    assert!(matches!(
        store.set_all_if_absent(&too_big),
        Err(StoreError::TooLarge { .. })
    ));
    assert!(
        store.get(b"e").is_none(),
        "size is checked before anything is written"
    );
}

/// Eight shards, 1 MiB each, so multi-key operations cross shards.
fn small_store() -> Store {
    Store::new(StoreConfig {
        capacity: Capacity::Bytes(8 << 20),
        shards: 8,
        policy: Policy::default(),
    })
    .unwrap()
}

/// Hit ratio (%) of a look-aside cache of `capacity` items replaying `keys`.
fn replay_hit_ratio(keys: &[u64], policy: Policy, capacity: u64) -> f64 {
    let store = store(Capacity::Items(capacity), policy);
    for key in keys {
        let key = key.to_le_bytes();
        if store.get_with(&key, |_| ()).is_none() {
            store.set(&key, b"", SetOptions::default()).unwrap();
        }
    }
    100.0 * store.stats().hits as f64 / keys.len() as f64
}

/// SplitMix64 steps, for workloads that do not depend on a crate.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn adaptive_keeps_up_with_the_better_of_s3fifo_and_tinylfu() {
    let mut state = 7;
    // Frequency: a skewed popularity over 20,000 keys (the cube of a uniform draw), with a
    // one-off scan of new keys every 5,000 requests.
    let mut skewed = Vec::new();
    for i in 0..200_000u64 {
        let u = (next_random(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
        skewed.push((u * u * u * 20_000.0) as u64);
        if i % 5_000 == 0 {
            skewed.extend((0..300).map(|j| 1_000_000 + i + j));
        }
    }
    // Recency: a working set of 400 keys that drifts to new keys over time.
    let drifting: Vec<u64> = (0..200_000u64)
        .map(|i| i / 20 + next_random(&mut state) % 400)
        .collect();
    // Keys that come back two or three times, 100 to 450 requests apart: a cache of 500 keeps
    // them only if its main queue fills while it warms up.
    let mut returning = Vec::new();
    let mut due = std::collections::BinaryHeap::new();
    let mut fresh = 0u64;
    while returning.len() < 40_000 {
        let now = returning.len() as u64;
        match due.peek() {
            Some(&std::cmp::Reverse((at, key, left))) if at <= now => {
                due.pop();
                returning.push(key);
                if left > 0 {
                    due.push(std::cmp::Reverse((
                        now + 100 + next_random(&mut state) % 350,
                        key,
                        left - 1,
                    )));
                }
            }
            _ => {
                fresh += 1;
                returning.push(fresh);
                let left = 1 + next_random(&mut state) % 2;
                due.push(std::cmp::Reverse((
                    now + 100 + next_random(&mut state) % 350,
                    fresh,
                    left,
                )));
            }
        }
    }
    for (name, keys) in [
        ("skewed", &skewed),
        ("drifting", &drifting),
        ("returning", &returning),
    ] {
        let s3fifo = replay_hit_ratio(keys, Policy::S3Fifo, 500);
        let tinylfu = replay_hit_ratio(keys, Policy::TinyLfu, 500);
        let adaptive = replay_hit_ratio(keys, Policy::Adaptive, 500);
        let peer = if name == "passes" {
            s3fifo
        } else {
            s3fifo.max(tinylfu)
        };
        assert!(
            adaptive >= peer - 1.0,
            "{name}: adaptive {adaptive:.2}, s3fifo {s3fifo:.2}, tinylfu {tinylfu:.2}"
        );
    }
}

#[test]
fn an_entry_larger_than_a_shard_borrows_from_the_others_within_the_bound() {
    let store = small_store();
    for i in 0..20_000u32 {
        store
            .set(&i.to_le_bytes(), &[1; 300], SetOptions::default())
            .unwrap();
    }
    // Five times one shard's share, in a store of eight shards that are all full.
    let big = vec![7u8; 5 << 20];
    store.set(b"big", &big, SetOptions::default()).unwrap();
    assert_eq!(store.get(b"big").unwrap().value, big);
    let stats = store.stats();
    assert!(
        stats.used <= stats.capacity,
        "{} over {}",
        stats.used,
        stats.capacity
    );
    store.check();
    // Once it is gone, the other shards take their share back and fill up again.
    assert!(store.delete(b"big"));
    for i in 20_000..60_000u32 {
        store
            .set(&i.to_le_bytes(), &[1; 300], SetOptions::default())
            .unwrap();
    }
    let stats = store.stats();
    assert!(
        stats.used > stats.capacity / 10 * 9,
        "refilled only to {}",
        stats.used
    );
    store.check();
}

#[test]
fn values_beyond_the_maximum_or_the_bound_are_refused() {
    let store = small_store().with_max_value_bytes(1 << 20);
    let err = store
        .set(b"k", &vec![0; (1 << 20) + 1], SetOptions::default())
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    let store = small_store().with_max_value_bytes(64 << 20);
    assert_eq!(
        store.set(b"k", &vec![0; 9 << 20], SetOptions::default()),
        Err(StoreError::TooLarge {
            size: (HEADER_BYTES + 1 + (9 << 20)).next_multiple_of(4096) + 16,
            limit: 8 << 20
        })
    );
    store.check();
}

/// Keeps what a [`RemovalListener`] is told.
#[derive(Debug, Default)]
struct Removals(parking_lot::Mutex<Vec<(Vec<u8>, crate::Removal)>>);

impl crate::RemovalListener for Removals {
    fn removed(&self, key: &[u8], why: crate::Removal) {
        self.0.lock().push((key.to_vec(), why));
    }
}

#[test]
fn the_removal_listener_hears_of_evictions_and_expirations_only() {
    let removals = Arc::new(Removals::default());
    let (store, _clock) = clocked(Capacity::Items(2));
    let store = store.with_removal_listener(removals.clone());
    set(&store, "a", "1");
    set(&store, "b", "1");
    assert!(store.delete(b"b"));
    set(&store, "a", "2");
    assert!(
        removals.0.lock().is_empty(),
        "deletes and overwrites are not told"
    );
    set(&store, "b", "1");
    set(&store, "c", "1");
    let evicted = removals.0.lock().clone();
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].1, crate::Removal::Evicted);
    assert!(store.get(&evicted[0].0).is_none());

    let removals = Arc::new(Removals::default());
    let (store, clock) = clocked(Capacity::Items(10));
    let store = store.with_removal_listener(removals.clone());
    store
        .set(b"t", b"v", SetOptions::ttl(Duration::from_millis(10)))
        .unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.reclaim_expired(100), 1);
    assert_eq!(
        *removals.0.lock(),
        vec![(b"t".to_vec(), crate::Removal::Expired)]
    );
}
