//! Model test: the store and a plain `HashMap` receive the same random operations, TTLs and
//! clock jumps included, and must give the same answers while within capacity. A second
//! property drives a tiny store that must evict: it may forget entries, but never exceeds its
//! bound and never returns a value other than the last one written.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use larder_store::{
    Capacity, CasOutcome, Clock, Expiry, ManualClock, Policy, SetMode, SetOptions, Store,
    StoreConfig, StoreError, TtlState,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Get(u8),
    Set {
        key: u8,
        value: Vec<u8>,
        mode: u8,
        ttl_ms: Option<u16>,
        keep_ttl: bool,
    },
    Delete(u8),
    Expire(u8, u16),
    Persist(u8),
    Ttl(u8),
    Incr(u8, i8),
    Cas {
        key: u8,
        stale: bool,
        value: Vec<u8>,
    },
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..12;
    let value = prop::collection::vec(any::<u8>(), 0..24);
    prop_oneof![
        4 => key.clone().prop_map(Op::Get),
        4 => (key.clone(), value.clone(), 0u8..5, prop::option::of(1u16..500), any::<bool>())
            .prop_map(|(key, value, mode, ttl_ms, keep_ttl)| Op::Set { key, value, mode, ttl_ms, keep_ttl }),
        1 => key.clone().prop_map(Op::Delete),
        1 => (key.clone(), 0u16..500).prop_map(|(k, ms)| Op::Expire(k, ms)),
        1 => key.clone().prop_map(Op::Persist),
        1 => key.clone().prop_map(Op::Ttl),
        1 => (key.clone(), any::<i8>()).prop_map(|(k, d)| Op::Incr(k, d)),
        1 => (key.clone(), any::<bool>(), value).prop_map(|(key, stale, value)| Op::Cas { key, stale, value }),
        1 => (0u16..300).prop_map(Op::Advance),
    ]
}

#[derive(Debug, Clone)]
struct ModelEntry {
    value: Vec<u8>,
    version: u64,
    expires_at: Option<u64>,
}

struct Model {
    map: HashMap<Vec<u8>, ModelEntry>,
    clock: Arc<ManualClock>,
}

impl Model {
    fn live(&mut self, key: &[u8]) -> Option<&mut ModelEntry> {
        let now = self.clock.now_ms();
        if self
            .map
            .get(key)
            .is_some_and(|e| e.expires_at.is_some_and(|at| at <= now))
        {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }
}

fn key_bytes(key: u8) -> Vec<u8> {
    format!("key:{key}").into_bytes()
}

fn mode_of(code: u8, version: u64) -> SetMode {
    match code {
        0 => SetMode::Always,
        1 => SetMode::IfAbsent,
        2 => SetMode::IfPresent,
        3 => SetMode::IfNewerVersion(version),
        _ => SetMode::IfNotOlderVersion(version),
    }
}

fn run_against_model(policy: Policy, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = Arc::new(ManualClock::new(10_000));
    let config = StoreConfig {
        capacity: Capacity::Bytes(1 << 20),
        shards: 4,
        policy,
    };
    let store = Store::new(config)
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .with_clock(clock.clone());
    let mut model = Model {
        map: HashMap::new(),
        clock: clock.clone(),
    };
    let mut next_explicit_version = 1_000u64;
    for op in ops {
        match op {
            Op::Get(k) => {
                let key = key_bytes(k);
                let got = store
                    .get(&key)
                    .map(|item| (item.value, item.version, item.expires_at));
                let want = model
                    .live(&key)
                    .map(|e| (e.value.clone(), e.version, e.expires_at));
                prop_assert_eq!(got, want);
            }
            Op::Set {
                key: k,
                value,
                mode,
                ttl_ms,
                keep_ttl,
            } => {
                let key = key_bytes(k);
                next_explicit_version += 3;
                let mode = mode_of(mode, next_explicit_version);
                let expiry = match (keep_ttl, ttl_ms) {
                    (true, _) => Expiry::Keep,
                    (false, Some(ms)) => Expiry::In(Duration::from_millis(u64::from(ms))),
                    (false, None) => Expiry::Never,
                };
                let outcome = store
                    .set(
                        &key,
                        &value,
                        SetOptions {
                            mode,
                            expiry,
                            ..SetOptions::default()
                        },
                    )
                    .unwrap();
                let now = clock.now_ms();
                let current = model.live(&key).cloned();
                let allowed = match mode {
                    SetMode::Always => true,
                    SetMode::IfAbsent => current.is_none(),
                    SetMode::IfPresent => current.is_some(),
                    SetMode::IfNewerVersion(v) => current.as_ref().is_none_or(|e| e.version < v),
                    SetMode::IfNotOlderVersion(v) => {
                        current.as_ref().is_none_or(|e| e.version <= v)
                    }
                };
                prop_assert_eq!(outcome.stored, allowed);
                if allowed {
                    let version = outcome.version.unwrap();
                    if let Some(old) = &current {
                        prop_assert!(version > old.version, "versions grow per key");
                    }
                    let expires_at = match expiry {
                        Expiry::Keep => current.and_then(|e| e.expires_at),
                        Expiry::In(d) => Some(now + d.as_millis() as u64),
                        _ => None,
                    };
                    model.map.insert(
                        key,
                        ModelEntry {
                            value,
                            version,
                            expires_at,
                        },
                    );
                } else {
                    prop_assert_eq!(outcome.version, current.map(|e| e.version));
                }
            }
            Op::Delete(k) => {
                let key = key_bytes(k);
                let want = model.live(&key).is_some();
                model.map.remove(&key);
                prop_assert_eq!(store.delete(&key), want);
            }
            Op::Expire(k, ms) => {
                let key = key_bytes(k);
                let at = clock.now_ms() + u64::from(ms);
                let existed = store.expire(&key, Expiry::At(at)).unwrap();
                prop_assert_eq!(existed, model.live(&key).is_some());
                if ms == 0 {
                    model.map.remove(&key);
                } else if let Some(entry) = model.live(&key) {
                    entry.expires_at = Some(at);
                }
            }
            Op::Persist(k) => {
                let key = key_bytes(k);
                let had_ttl = model.live(&key).is_some_and(|e| e.expires_at.is_some());
                prop_assert_eq!(store.persist(&key), had_ttl);
                if let Some(entry) = model.live(&key) {
                    entry.expires_at = None;
                }
            }
            Op::Ttl(k) => {
                let key = key_bytes(k);
                let now = clock.now_ms();
                let want = match model.live(&key) {
                    None => TtlState::Missing,
                    Some(ModelEntry {
                        expires_at: None, ..
                    }) => TtlState::Persistent,
                    Some(ModelEntry {
                        expires_at: Some(at),
                        ..
                    }) => TtlState::ExpiresIn(*at - now),
                };
                prop_assert_eq!(store.ttl(&key), want);
            }
            Op::Incr(k, delta) => {
                let key = key_bytes(k);
                let got = store.incr(&key, i64::from(delta));
                let current = model.live(&key).cloned();
                let parsed = match &current {
                    None => Some(0i64),
                    Some(e) => std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .filter(|n| n.to_string().as_bytes() == e.value),
                };
                match parsed {
                    None => prop_assert_eq!(got, Err(StoreError::NotAnInteger)),
                    Some(n) => {
                        let next = n + i64::from(delta);
                        prop_assert_eq!(got.clone(), Ok(next));
                        let version = store.peek(&key).unwrap().version;
                        let expires_at = current.and_then(|e| e.expires_at);
                        model.map.insert(
                            key,
                            ModelEntry {
                                value: next.to_string().into_bytes(),
                                version,
                                expires_at,
                            },
                        );
                    }
                }
            }
            Op::Cas {
                key: k,
                stale,
                value,
            } => {
                let key = key_bytes(k);
                let current = model.live(&key).cloned();
                let expected = current
                    .as_ref()
                    .map_or(7, |e| if stale { e.version + 1 } else { e.version });
                let got = store
                    .compare_and_set(&key, expected, &value, Expiry::Never)
                    .unwrap();
                match current {
                    Some(e) if !stale => {
                        let CasOutcome::Swapped(version) = got else {
                            return Err(TestCaseError::fail(format!(
                                "expected a swap, got {got:?}"
                            )));
                        };
                        prop_assert!(version > e.version);
                        model.map.insert(
                            key,
                            ModelEntry {
                                value,
                                version,
                                expires_at: None,
                            },
                        );
                    }
                    other => prop_assert_eq!(got, CasOutcome::Mismatch(other.map(|e| e.version))),
                }
            }
            Op::Advance(ms) => clock.advance(Duration::from_millis(u64::from(ms))),
        }
        let stats = store.stats();
        prop_assert!(stats.used <= stats.capacity);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn store_matches_a_hashmap(policy in prop::sample::select(Policy::ALL.to_vec()), ops in prop::collection::vec(op(), 1..200)) {
        run_against_model(policy, ops)?;
    }

    #[test]
    fn a_full_store_forgets_but_never_lies(
        policy in prop::sample::select(Policy::ALL.to_vec()),
        ops in prop::collection::vec((0u16..200, prop::collection::vec(any::<u8>(), 0..300), any::<bool>()), 1..400),
    ) {
        let capacity = 2_000;
        let store = Store::new(StoreConfig { capacity: Capacity::Bytes(capacity), shards: 2, policy }).unwrap();
        let mut last: HashMap<u16, Vec<u8>> = HashMap::new();
        for (key, value, write) in ops {
            let key_bytes = key.to_be_bytes();
            if write {
                match store.set(&key_bytes, &value, SetOptions::default()) {
                    Ok(outcome) => {
                        prop_assert!(outcome.stored);
                        last.insert(key, value);
                    }
                    Err(StoreError::TooLarge { .. }) => {}
                    Err(other) => return Err(TestCaseError::fail(other.to_string())),
                }
            } else if let Some(item) = store.get(&key_bytes) {
                prop_assert_eq!(Some(&item.value), last.get(&key), "a hit returns the last value written");
            }
            let stats = store.stats();
            prop_assert!(stats.used <= capacity, "used {} over {}", stats.used, capacity);
        }
    }
}
