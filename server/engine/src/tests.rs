//! Behaviour of the engine as a user of the embedded cache sees it.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use proptest::prelude::*;

use super::*;

const START_MS: u64 = 1_700_000_000_000;

fn engine_at(clock: &ManualClock) -> Engine {
    let config = EngineConfig {
        shards_per_namespace: 4,
        ..EngineConfig::default()
    };
    Engine::with_parts(config, Arc::new(clock.clone()), None)
}

fn setup() -> (ManualClock, Engine, Arc<Namespace>) {
    let clock = ManualClock::new(START_MS);
    let engine = engine_at(&clock);
    let namespace = engine.namespace("test").expect("valid namespace");
    (clock, engine, namespace)
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn ttl(ms: i64) -> SetOptions {
    SetOptions {
        expiry: Expiry::AfterMs(ms),
        ..SetOptions::default()
    }
}

#[test]
fn set_then_get_returns_the_value_and_versions_grow() {
    let (_, _, ns) = setup();
    let first = ns
        .set(b"k", bytes("v1"), SetOptions::default())
        .expect("set");
    let second = ns
        .set(b"k", bytes("v2"), SetOptions::default())
        .expect("set");
    assert!(first.stored && second.stored);
    assert!(second.version > first.version);
    assert_eq!(ns.get(b"k").expect("get"), Some(bytes("v2")));
    assert_eq!(ns.get(b"missing").expect("get"), None);
    let stats = ns.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.sets, stats.keys),
        (1, 1, 2, 1)
    );
}

#[test]
fn conditions_decide_whether_a_write_happens() {
    let (_, _, ns) = setup();
    let absent = SetOptions {
        condition: Condition::IfAbsent,
        ..SetOptions::default()
    };
    let present = SetOptions {
        condition: Condition::IfPresent,
        ..SetOptions::default()
    };
    assert!(!ns.set(b"k", bytes("x"), present).expect("set").stored);
    assert_eq!(ns.get(b"k").expect("get"), None);
    let created = ns.set(b"k", bytes("a"), absent).expect("set");
    assert!(created.stored);
    let refused = ns.set(b"k", bytes("b"), absent).expect("set");
    assert!(!refused.stored);
    assert_eq!(refused.version, created.version);
    assert_eq!(ns.get(b"k").expect("get"), Some(bytes("a")));

    let stale = SetOptions {
        condition: Condition::IfVersion(created.version + 100),
        return_previous: true,
        ..SetOptions::default()
    };
    let outcome = ns.set(b"k", bytes("c"), stale).expect("set");
    assert!(!outcome.stored);
    assert_eq!(outcome.previous, Some(bytes("a")));
    let current = SetOptions {
        condition: Condition::IfVersion(created.version),
        return_previous: true,
        ..SetOptions::default()
    };
    let outcome = ns.set(b"k", bytes("c"), current).expect("set");
    assert!(outcome.stored);
    assert_eq!(outcome.previous, Some(bytes("a")));
    assert_eq!(ns.get(b"k").expect("get"), Some(bytes("c")));
}

#[test]
fn keys_expire_lazily_at_their_deadline() {
    let (clock, _, ns) = setup();
    ns.set(b"k", bytes("v"), ttl(1_000)).expect("set");
    let (_, meta) = ns.get_with_meta(b"k").expect("get").expect("present");
    assert_eq!(meta.ttl_ms, Some(1_000));
    assert_eq!(meta.expires_at_ms, Some(START_MS + 1_000));
    clock.advance_ms(999);
    assert!(ns.get(b"k").expect("get").is_some());
    clock.advance_ms(1);
    assert_eq!(ns.get(b"k").expect("get"), None);
    assert_eq!(ns.stats().expirations, 1);
    assert_eq!(ns.len(), 0);
}

#[test]
fn keep_ttl_keeps_and_plain_set_clears_the_deadline() {
    let (_, _, ns) = setup();
    ns.set(b"k", bytes("v"), ttl(5_000)).expect("set");
    let keep = SetOptions {
        expiry: Expiry::Keep,
        ..SetOptions::default()
    };
    ns.set(b"k", bytes("v2"), keep).expect("set");
    assert_eq!(
        ns.describe(b"k").expect("describe").and_then(|m| m.ttl_ms),
        Some(5_000)
    );
    ns.set(b"k", bytes("v3"), SetOptions::default())
        .expect("set");
    assert_eq!(
        ns.describe(b"k").expect("describe").and_then(|m| m.ttl_ms),
        None
    );
}

#[test]
fn a_write_over_an_expired_key_finds_it_gone_whatever_its_own_expiry() {
    let (clock, _, ns) = setup();
    for key in [&b"plain"[..], b"keep", b"nx"] {
        ns.set(key, bytes("old"), ttl(1_000)).expect("set");
    }
    clock.advance_ms(1_000);
    // No TTL of its own: the write must still read the clock to see that
    // the old entry is dead, and must not inherit its deadline.
    ns.set(b"plain", bytes("new"), SetOptions::default())
        .expect("set");
    let keep = SetOptions {
        expiry: Expiry::Keep,
        ..SetOptions::default()
    };
    ns.set(b"keep", bytes("new"), keep).expect("set");
    let if_absent = SetOptions {
        condition: Condition::IfAbsent,
        ..SetOptions::default()
    };
    assert!(ns.set(b"nx", bytes("new"), if_absent).expect("set").stored);
    for key in [&b"plain"[..], b"keep", b"nx"] {
        let (value, meta) = ns.get_with_meta(key).expect("get").expect("present");
        assert_eq!(value, bytes("new"));
        assert_eq!(meta.ttl_ms, None, "{key:?} kept a dead deadline");
    }
    assert_eq!(ns.stats().expirations, 3);
}

#[test]
fn an_absolute_deadline_in_the_past_removes_the_key() {
    let (_, _, ns) = setup();
    ns.set(b"k", bytes("v"), SetOptions::default())
        .expect("set");
    let past = SetOptions {
        expiry: Expiry::AtUnixMs(1),
        ..SetOptions::default()
    };
    assert!(ns.set(b"k", bytes("v2"), past).expect("set").stored);
    assert_eq!(ns.get(b"k").expect("get"), None);
    ns.set(b"j", bytes("v"), SetOptions::default())
        .expect("set");
    assert_eq!(
        ns.update_expiry(b"j", Expiry::AtUnixMs(1)).expect("expire"),
        Some(0)
    );
    assert_eq!(ns.get(b"j").expect("get"), None);
}

#[test]
fn update_expiry_sets_and_removes_deadlines() {
    let (clock, _, ns) = setup();
    assert_eq!(
        ns.update_expiry(b"k", Expiry::AfterMs(10)).expect("expire"),
        None
    );
    let written = ns
        .set(b"k", bytes("v"), SetOptions::default())
        .expect("set");
    let version = ns
        .update_expiry(b"k", Expiry::AfterMs(100))
        .expect("expire")
        .expect("existed");
    assert!(version > written.version);
    assert_eq!(
        ns.update_expiry(b"k", Expiry::Never)
            .expect("persist")
            .map(|_| ()),
        Some(())
    );
    clock.advance_ms(1_000);
    assert!(ns.get(b"k").expect("get").is_some());
    assert!(ns.update_expiry(b"k", Expiry::Keep).is_err());
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let (_, _, ns) = setup();
    ns.set(b"k", bytes("v"), SetOptions::default())
        .expect("set");
    let before = ns.stats();
    let too_long = vec![b'x'; 64 * 1024 + 1];
    assert_eq!(ns.get(b""), Err(EngineError::EmptyKey));
    assert!(matches!(
        ns.set(&too_long, bytes("v"), SetOptions::default()),
        Err(EngineError::KeyTooLong { .. })
    ));
    let huge = Bytes::from(vec![0u8; 16 * 1024 * 1024 + 1]);
    assert!(matches!(
        ns.set(b"k", huge, SetOptions::default()),
        Err(EngineError::ValueTooLarge { .. })
    ));
    assert!(matches!(
        ns.set(b"k", bytes("x"), ttl(-1)),
        Err(EngineError::InvalidExpiry { .. })
    ));
    assert!(matches!(
        ns.set(b"k", bytes("x"), ttl(0)),
        Err(EngineError::InvalidExpiry { .. })
    ));
    assert!(matches!(
        ns.delete(&[&b"a"[..], b""]),
        Err(EngineError::EmptyKey)
    ));
    assert_eq!(ns.get(b"k").expect("get"), Some(bytes("v")));
    let after = ns.stats();
    assert_eq!(
        (before.keys, before.sets, before.deletes),
        (after.keys, after.sets, after.deletes)
    );
}

#[test]
fn increments_follow_redis_integer_rules() {
    let (_, _, ns) = setup();
    let created = ns.increment(b"c", 5, None, Expiry::Never).expect("incr");
    assert_eq!((created.value, created.created), (5, true));
    assert_eq!(
        ns.increment(b"c", -7, None, Expiry::Never)
            .expect("incr")
            .value,
        -2
    );
    assert_eq!(ns.get(b"c").expect("get"), Some(bytes("-2")));
    assert_eq!(
        ns.increment(b"from", 1, Some(100), Expiry::Never)
            .expect("incr")
            .value,
        101
    );

    ns.set(b"text", bytes("abc"), SetOptions::default())
        .expect("set");
    assert_eq!(
        ns.increment(b"text", 1, None, Expiry::Never),
        Err(EngineError::NotAnInteger)
    );
    ns.set(b"max", bytes(&i64::MAX.to_string()), SetOptions::default())
        .expect("set");
    assert_eq!(
        ns.increment(b"max", 1, None, Expiry::Never),
        Err(EngineError::IncrementOverflow)
    );
    assert_eq!(
        ns.get(b"max").expect("get"),
        Some(bytes(&i64::MAX.to_string()))
    );
}

#[test]
fn increment_keeps_an_existing_deadline_and_sets_one_on_create() {
    let (_, _, ns) = setup();
    ns.increment(b"c", 1, None, Expiry::AfterMs(500))
        .expect("incr");
    ns.increment(b"c", 1, None, Expiry::AfterMs(90_000))
        .expect("incr");
    assert_eq!(
        ns.describe(b"c").expect("describe").and_then(|m| m.ttl_ms),
        Some(500)
    );
}

#[test]
fn delete_counts_only_existing_keys() {
    let (_, _, ns) = setup();
    ns.set(b"a", bytes("1"), SetOptions::default())
        .expect("set");
    ns.set(b"b", bytes("2"), SetOptions::default())
        .expect("set");
    assert_eq!(ns.delete(&[&b"a"[..], b"b", b"c"]).expect("delete"), 2);
    assert!(ns.is_empty());
}

#[test]
fn flush_empties_only_its_namespace() {
    let (_, engine, ns) = setup();
    let other = engine.namespace("other").expect("namespace");
    for i in 0..100 {
        ns.set(
            format!("k{i}").as_bytes(),
            bytes("v"),
            SetOptions::default(),
        )
        .expect("set");
    }
    other
        .set(b"keep", bytes("v"), SetOptions::default())
        .expect("set");
    assert_eq!(ns.flush(), 100);
    assert_eq!(ns.len(), 0);
    assert_eq!(other.len(), 1);
    assert_eq!(ns.stats().flushed, 100);
}

#[test]
fn namespace_names_are_checked_and_bounded() {
    let clock = ManualClock::new(START_MS);
    let config = EngineConfig {
        max_namespaces: 2,
        ..EngineConfig::default()
    };
    let engine = Engine::with_parts(config, Arc::new(clock), None);
    assert_eq!(
        engine.namespace("").expect("default").name(),
        DEFAULT_NAMESPACE
    );
    assert!(matches!(
        engine.namespace("bad name"),
        Err(EngineError::InvalidNamespace { .. })
    ));
    assert!(matches!(
        engine.namespace(&"n".repeat(200)),
        Err(EngineError::InvalidNamespace { .. })
    ));
    engine.namespace("second").expect("namespace");
    assert_eq!(
        engine.namespace("third").err(),
        Some(EngineError::TooManyNamespaces { max: 2 })
    );
    assert!(engine.existing_namespace("third").expect("valid").is_none());
}

#[test]
fn scan_lists_every_key_once_across_pages() {
    let (_, _, ns) = setup();
    for i in 0..1_000 {
        ns.set(
            format!("user:{i}").as_bytes(),
            bytes("v"),
            SetOptions::default(),
        )
        .expect("set");
        ns.set(
            format!("order:{i}").as_bytes(),
            bytes("v"),
            SetOptions::default(),
        )
        .expect("set");
    }
    let filter = ScanFilter {
        pattern: Some(KeyPattern::new("user:*").expect("pattern")),
        key_type: None,
    };
    let mut cursor = ScanCursor::start();
    let mut seen = Vec::new();
    loop {
        let page = ns.scan(&cursor, &filter, 37);
        assert!(page.keys.len() <= 37);
        seen.extend(page.keys);
        match page.cursor {
            Some(next) => {
                cursor = ns
                    .decode_cursor(&ns.encode_cursor(&next))
                    .expect("own cursor")
            }
            None => break,
        }
    }
    seen.sort();
    let before = seen.len();
    seen.dedup();
    assert_eq!(before, seen.len(), "no key listed twice");
    assert_eq!(seen.len(), 1_000);
    assert!(seen.iter().all(|key| key.starts_with(b"user:")));
}

#[test]
fn scan_survives_writes_between_pages() {
    let (_, _, ns) = setup();
    for i in 0..500 {
        ns.set(
            format!("stable:{i}").as_bytes(),
            bytes("v"),
            SetOptions::default(),
        )
        .expect("set");
    }
    let mut cursor = ScanCursor::start();
    let mut seen = std::collections::HashSet::new();
    let mut round = 0;
    loop {
        let page = ns.scan(&cursor, &ScanFilter::default(), 50);
        seen.extend(page.keys);
        // Grow the table (forcing resizes) and delete other keys meanwhile.
        for i in 0..300 {
            ns.set(
                format!("churn:{round}:{i}").as_bytes(),
                bytes("v"),
                SetOptions::default(),
            )
            .expect("set");
        }
        ns.delete(&[format!("churn:{}:0", round.max(1) - 1)])
            .expect("delete");
        round += 1;
        match page.cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }
    for i in 0..500 {
        assert!(
            seen.contains(format!("stable:{i}").as_bytes()),
            "stable:{i} missing"
        );
    }
}

#[test]
fn sweeps_give_back_sparse_shards_one_at_a_time_and_keep_what_stays() {
    let (clock, engine, ns) = setup();
    for i in 0..100_000u32 {
        let options = if i % 10 == 0 {
            SetOptions::default()
        } else {
            ttl(1_000)
        };
        ns.set(&i.to_be_bytes(), Bytes::from_static(b"value"), options)
            .expect("set");
    }
    let full = ns.stats().memory_bytes;
    clock.advance_ms(1_000 + expiry_index::BUCKET_MS + 1);
    assert_eq!(engine.sweep_expired(1024), 90_000);
    let after_first = ns.stats().memory_bytes;
    assert!(
        after_first * 4 > full,
        "one sweep gives back one of the four shards: {after_first} of {full}"
    );
    for _ in 0..4 {
        assert_eq!(engine.sweep_expired(1024), 0);
    }
    let after_all = ns.stats().memory_bytes;
    assert!(
        after_all * 4 < full,
        "every sparse shard given back: {after_all} of {full}"
    );
    for i in (0..100_000u32).step_by(10) {
        assert_eq!(
            ns.get(&i.to_be_bytes()).expect("get"),
            Some(Bytes::from_static(b"value"))
        );
    }
}

#[test]
fn sweeper_reclaims_a_million_expired_keys_and_their_memory() {
    let (clock, engine, ns) = setup();
    let empty_memory = ns.stats().memory_bytes;
    for i in 0..1_000_000u32 {
        ns.set(&i.to_be_bytes(), Bytes::from_static(b"value"), ttl(1_000))
            .expect("set");
    }
    let full = ns.stats();
    assert_eq!(full.keys, 1_000_000);
    assert!(full.memory_bytes > 1_000_000 * 9);

    clock.advance_ms(999);
    assert_eq!(
        engine.sweep_expired(1024),
        0,
        "nothing is due before the deadline"
    );
    // Deadlines are reclaimed at most one bucket after they pass.
    clock.advance_ms(expiry_index::BUCKET_MS + 1);
    assert_eq!(engine.sweep_expired(1024), 1_000_000);
    let swept = ns.stats();
    assert_eq!(swept.keys, 0);
    assert_eq!(swept.expirations, 1_000_000);
    assert!(
        swept.memory_bytes <= empty_memory + 64 * 1024,
        "memory after sweep: {} bytes",
        swept.memory_bytes
    );
}

#[test]
fn sweeping_skips_keys_whose_deadline_moved() {
    let (clock, engine, ns) = setup();
    ns.set(b"moved", bytes("v"), ttl(100)).expect("set");
    ns.update_expiry(b"moved", Expiry::AfterMs(10_000))
        .expect("expire");
    ns.set(b"persisted", bytes("v"), ttl(100)).expect("set");
    ns.update_expiry(b"persisted", Expiry::Never)
        .expect("persist");
    ns.set(b"gone", bytes("v"), ttl(100)).expect("set");
    clock.advance_ms(1_000);
    assert_eq!(engine.sweep_expired(1024), 1);
    assert!(ns.get(b"moved").expect("get").is_some());
    assert!(ns.get(b"persisted").expect("get").is_some());
    clock.advance_ms(10_000);
    assert_eq!(engine.sweep_expired(1024), 1);
    assert!(ns.get(b"moved").expect("get").is_none());
}

#[test]
fn refreshing_a_ttl_forever_keeps_the_expiry_index_bounded() {
    let (clock, _, ns) = setup();
    ns.set(b"session", bytes("v"), ttl(60_000)).expect("set");
    let baseline = ns.stats().memory_bytes;
    for _ in 0..100_000 {
        clock.advance_ms(200);
        ns.update_expiry(b"session", Expiry::AfterMs(60_000))
            .expect("expire");
    }
    assert!(ns.stats().memory_bytes < baseline + 256 * 1024);
}

#[derive(Default)]
struct RecordingSink {
    records: Mutex<Vec<ChangeRecord>>,
    flushes: Mutex<Vec<FlushRecord>>,
}

impl ChangeSink for RecordingSink {
    fn record(&self, change: ChangeRecord) {
        self.records.lock().push(change);
    }
    fn flushed(&self, flush: FlushRecord) {
        self.flushes.lock().push(flush);
    }
}

#[test]
fn every_mutation_yields_one_change_record_with_its_effect() {
    let clock = ManualClock::new(START_MS);
    let sink = Arc::new(RecordingSink::default());
    let config = EngineConfig {
        shards_per_namespace: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::with_parts(config, Arc::new(clock.clone()), Some(sink.clone()));
    let ns = engine.namespace("feed").expect("namespace");
    ns.set(b"a", bytes("1"), ttl(1_000)).expect("set");
    ns.increment(b"a", 41, None, Expiry::Never).expect("incr");
    ns.update_expiry(b"a", Expiry::Never).expect("persist");
    ns.set(b"b", bytes("x"), ttl(10)).expect("set");
    ns.delete(&[b"a"]).expect("delete");
    clock.advance_ms(1_000);
    engine.sweep_expired(1024);
    ns.flush();

    let records = sink.records.lock().clone();
    let kinds: Vec<_> = records
        .iter()
        .map(|r| (r.key.clone(), r.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                bytes("a"),
                ChangeKind::Set {
                    value: bytes("1"),
                    expires_at_ms: START_MS + 1_000
                }
            ),
            (
                bytes("a"),
                ChangeKind::Set {
                    value: bytes("42"),
                    expires_at_ms: START_MS + 1_000
                }
            ),
            (bytes("a"), ChangeKind::ExpiryChanged { expires_at_ms: 0 }),
            (
                bytes("b"),
                ChangeKind::Set {
                    value: bytes("x"),
                    expires_at_ms: START_MS + 10
                }
            ),
            (bytes("a"), ChangeKind::Deleted),
            (bytes("b"), ChangeKind::Expired),
        ]
    );
    assert!(
        records
            .windows(2)
            .all(|pair| pair[0].sequence < pair[1].sequence)
    );
    assert_eq!(sink.flushes.lock().len(), 1);
}

/// One operation of the model-based property test.
#[derive(Debug, Clone)]
enum Op {
    Set {
        key: u8,
        value: u8,
        ttl: Option<u16>,
        condition: u8,
    },
    Get {
        key: u8,
    },
    Delete {
        key: u8,
    },
    Incr {
        key: u8,
        delta: i8,
    },
    Expire {
        key: u8,
        ttl: u16,
    },
    Persist {
        key: u8,
    },
    Advance {
        ms: u16,
    },
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0..8u8,
            any::<u8>(),
            proptest::option::of(1..3_000u16),
            0..3u8
        )
            .prop_map(|(key, value, ttl, condition)| Op::Set {
                key,
                value,
                ttl,
                condition
            }),
        (0..8u8).prop_map(|key| Op::Get { key }),
        (0..8u8).prop_map(|key| Op::Delete { key }),
        (0..8u8, any::<i8>()).prop_map(|(key, delta)| Op::Incr { key, delta }),
        (0..8u8, 1..3_000u16).prop_map(|(key, ttl)| Op::Expire { key, ttl }),
        (0..8u8).prop_map(|key| Op::Persist { key }),
        (0..2_000u16).prop_map(|ms| Op::Advance { ms }),
        Just(Op::Sweep),
    ]
}

/// The simplest possible model: a map from key to (value, deadline).
#[derive(Default)]
struct Model {
    entries: std::collections::HashMap<u8, (Vec<u8>, Option<u64>)>,
}

impl Model {
    fn live(&mut self, key: u8, now: u64) -> Option<&mut (Vec<u8>, Option<u64>)> {
        if self
            .entries
            .get(&key)
            .is_some_and(|(_, deadline)| deadline.is_some_and(|d| d <= now))
        {
            self.entries.remove(&key);
        }
        self.entries.get_mut(&key)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn engine_matches_a_simple_model(ops in proptest::collection::vec(op(), 1..200)) {
        let (clock, engine, ns) = setup();
        let mut model = Model::default();
        for op in ops {
            let now = clock.now_ms();
            match op {
                Op::Set { key, value, ttl, condition } => {
                    let condition = [Condition::Always, Condition::IfAbsent, Condition::IfPresent][condition as usize];
                    let expiry = ttl.map_or(Expiry::Never, |ms| Expiry::AfterMs(i64::from(ms)));
                    let options = SetOptions { expiry, condition, return_previous: true };
                    let outcome = ns.set(&[key], Bytes::from(vec![value]), options).expect("set");
                    let exists = model.live(key, now).is_some();
                    let previous = model.live(key, now).map(|(v, _)| Bytes::from(v.clone()));
                    let should_store = match condition {
                        Condition::IfAbsent => !exists,
                        Condition::IfPresent => exists,
                        _ => true,
                    };
                    prop_assert_eq!(outcome.stored, should_store);
                    prop_assert_eq!(outcome.previous, previous);
                    if should_store {
                        model.entries.insert(key, (vec![value], ttl.map(|ms| now + u64::from(ms))));
                    }
                }
                Op::Get { key } => {
                    let expected = model.live(key, now).map(|(v, _)| Bytes::from(v.clone()));
                    prop_assert_eq!(ns.get(&[key]).expect("get"), expected);
                }
                Op::Delete { key } => {
                    let expected = u64::from(model.live(key, now).is_some());
                    model.entries.remove(&key);
                    prop_assert_eq!(ns.delete(&[[key]]).expect("delete"), expected);
                }
                Op::Incr { key, delta } => {
                    let result = ns.increment(&[key], i64::from(delta), None, Expiry::Never);
                    match model.live(key, now) {
                        None => {
                            prop_assert_eq!(result.expect("incr").value, i64::from(delta));
                            model.entries.insert(key, (delta.to_string().into_bytes(), None));
                        }
                        Some((value, _)) => match std::str::from_utf8(value).ok().and_then(|t| t.parse::<i64>().ok()).filter(|n| n.to_string().as_bytes() == value.as_slice()) {
                            Some(n) => {
                                let sum = n + i64::from(delta);
                                prop_assert_eq!(result.expect("incr").value, sum);
                                *value = sum.to_string().into_bytes();
                            }
                            None => prop_assert_eq!(result, Err(EngineError::NotAnInteger)),
                        },
                    }
                }
                Op::Expire { key, ttl } => {
                    let existed = ns.update_expiry(&[key], Expiry::AfterMs(i64::from(ttl))).expect("expire").is_some();
                    let entry = model.live(key, now);
                    prop_assert_eq!(existed, entry.is_some());
                    if let Some((_, deadline)) = entry {
                        *deadline = Some(now + u64::from(ttl));
                    }
                }
                Op::Persist { key } => {
                    let existed = ns.update_expiry(&[key], Expiry::Never).expect("persist").is_some();
                    let entry = model.live(key, now);
                    prop_assert_eq!(existed, entry.is_some());
                    if let Some((_, deadline)) = entry {
                        *deadline = None;
                    }
                }
                Op::Advance { ms } => clock.advance_ms(u64::from(ms)),
                Op::Sweep => {
                    engine.sweep_expired(3);
                }
            }
            let now = clock.now_ms();
            let all: Vec<[u8; 1]> = (0..8u8).map(|key| [key]).collect();
            let read: Vec<Option<Bytes>> = ns
                .get_many(&all)
                .into_iter()
                .map(|found| found.map(|found| found.map(|(value, _)| value)))
                .collect::<Result<_, _>>()
                .expect("string keys");
            let expected: Vec<Option<Bytes>> = (0..8u8)
                .map(|key| model.live(key, now).map(|(v, _)| Bytes::from(v.clone())))
                .collect();
            prop_assert_eq!(read, expected);
            let live = (0..8u8).filter(|key| model.live(*key, now).is_some()).count();
            let mut cursor = ScanCursor::start();
            let mut listed = 0;
            loop {
                let page = ns.scan(&cursor, &ScanFilter::default(), 3);
                listed += page.keys.len();
                match page.cursor { Some(next) => cursor = next, None => break }
            }
            prop_assert_eq!(listed, live);
        }
    }
}

#[test]
fn a_batch_read_answers_every_key_in_order_each_with_its_own_outcome() {
    let (clock, _, ns) = setup();
    let long = Bytes::from(vec![b'x'; 3000]);
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for i in 0..40u32 {
        let key = format!("key:{i}").into_bytes();
        let value = if i % 2 == 0 {
            long.slice(..1000 + i as usize)
        } else {
            bytes(&format!("v{i}"))
        };
        ns.set(&key, value, SetOptions::default()).expect("set");
        keys.push(key);
    }
    ns.set(b"soon", bytes("gone"), ttl(10)).expect("set");
    ns.hset(b"hash", vec![(bytes("f"), bytes("v"))], Expiry::Never)
        .expect("hset");
    keys.extend([
        b"missing".to_vec(),
        Vec::new(),
        b"hash".to_vec(),
        b"soon".to_vec(),
    ]);
    keys.reverse();
    clock.advance_ms(10);
    let before = ns.stats();

    let found = ns.get_many(&keys);

    assert_eq!(found.len(), keys.len());
    assert_eq!(found[0].as_ref().expect("soon"), &None, "past its deadline");
    assert!(matches!(found[1], Err(EngineError::WrongType { .. })));
    assert_eq!(found[2], Err(EngineError::EmptyKey));
    assert_eq!(found[3].as_ref().expect("missing"), &None);
    for (key, found) in keys.iter().zip(&found).skip(4) {
        let (value, meta) = found.as_ref().expect("valid").clone().expect("present");
        let (single, single_meta) = ns.get_with_meta(key).expect("get").expect("present");
        assert_eq!((value, meta.version), (single, single_meta.version));
    }
    let after = ns.stats();
    assert_eq!(
        after.hits - before.hits,
        2 * 40,
        "40 in the batch, 40 single reads"
    );
    assert_eq!(
        after.misses - before.misses,
        2,
        "the missing key and the expired one"
    );
    assert_eq!(after.expirations - before.expirations, 1);
    assert_eq!(after.keys, before.keys - 1, "the expired key is gone");
}

#[test]
fn deleting_most_keys_gives_table_memory_back() {
    let (_, _, ns) = setup();
    let keys: Vec<Vec<u8>> = (0..100_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    for key in &keys {
        ns.set(key, Bytes::from_static(b"v"), SetOptions::default())
            .expect("set");
    }
    let full = ns.stats().memory_bytes;
    ns.delete(&keys[..99_000]).expect("delete");
    let after = ns.stats().memory_bytes;
    assert!(after * 10 < full, "memory {full} -> {after}");
    for key in &keys[99_000..] {
        assert!(ns.get(key).expect("get").is_some());
    }
}

fn b(text: &str) -> Bytes {
    bytes(text)
}

#[test]
fn commands_on_the_wrong_type_fail_and_change_nothing() {
    let (_, _, ns) = setup();
    ns.set(b"s", b("text"), SetOptions::default()).expect("set");
    ns.hset(b"h", vec![(b("f"), b("1"))], Expiry::Keep)
        .expect("hset");
    ns.push(b"l", vec![b("a")], false, false, Expiry::Keep)
        .expect("push");
    ns.sadd(b"z", vec![b("m")], Expiry::Keep).expect("sadd");
    let before = ns.stats();
    let wrong = |result: Result<(), EngineError>| {
        assert!(
            matches!(result, Err(EngineError::WrongType { .. })),
            "{result:?}"
        );
    };
    wrong(
        ns.hset(b"s", vec![(b("f"), b("v"))], Expiry::Keep)
            .map(drop),
    );
    wrong(
        ns.push(b"h", vec![b("x")], true, false, Expiry::Keep)
            .map(drop),
    );
    wrong(ns.sadd(b"l", vec![b("x")], Expiry::Keep).map(drop));
    wrong(ns.get(b"z").map(drop));
    wrong(ns.increment(b"h", 1, None, Expiry::Never).map(drop));
    wrong(ns.hincrby(b"l", b"f", 1, Expiry::Keep).map(drop));
    wrong(ns.lset(b"z", 0, b("x")).map(drop));
    wrong(
        ns.combine_sets(&[&b"z"[..], b"h"], SetOperation::Union)
            .map(drop),
    );
    wrong(
        ns.set(
            b"h",
            b("x"),
            SetOptions {
                return_previous: true,
                ..SetOptions::default()
            },
        )
        .map(drop),
    );
    let after = ns.stats();
    assert_eq!(
        (before.keys, before.sets, before.memory_bytes),
        (after.keys, after.sets, after.memory_bytes)
    );
    assert_eq!(ns.hget(b"h", b"f").expect("hget"), Some(b("1")));
    // A plain SET replaces a key of any type, as in Redis.
    ns.set(b"h", b("now a string"), SetOptions::default())
        .expect("set");
    assert_eq!(
        ns.describe(b"h").expect("describe").map(|m| m.key_type),
        Some(KeyType::String)
    );
}

#[test]
fn emptied_collections_disappear_and_give_their_memory_back() {
    let (_, _, ns) = setup();
    let empty = ns.stats().memory_bytes;
    ns.hset(b"h", vec![(b("a"), b("1")), (b("b"), b("2"))], Expiry::Keep)
        .expect("hset");
    ns.push(b"l", vec![b("x"), b("y")], false, false, Expiry::Keep)
        .expect("push");
    ns.sadd(b"s", vec![b("m"), b("n")], Expiry::Keep)
        .expect("sadd");
    assert_eq!(ns.len(), 3);
    assert!(ns.stats().memory_bytes > empty);
    assert_eq!(ns.hdel(b"h", &[&b"a"[..], b"b", b"c"]).expect("hdel"), 2);
    assert_eq!(ns.pop(b"l", 5, true).expect("pop"), vec![b("x"), b("y")]);
    assert_eq!(ns.srem(b"s", &[&b"m"[..], b"n"]).expect("srem"), 2);
    assert_eq!(ns.len(), 0);
    assert_eq!(ns.describe(b"h").expect("describe"), None);
    ns.push(b"l", vec![b("x")], false, false, Expiry::Keep)
        .expect("push");
    assert_eq!(ns.ltrim(b"l", 5, 10).expect("ltrim"), 0);
    assert_eq!(ns.len(), 0);
    // What remains is the tables' own (small) slot arrays.
    let left = ns.stats().memory_bytes;
    assert!(left < empty + 4096, "{left} bytes left, {empty} when new");
}

#[test]
fn collection_memory_follows_element_bytes() {
    let (_, _, ns) = setup();
    let empty = ns.stats().memory_bytes;
    let big = Bytes::from(vec![7u8; 100_000]);
    ns.push(
        b"l",
        vec![big.clone(), big.clone()],
        false,
        false,
        Expiry::Keep,
    )
    .expect("push");
    let two = ns.stats().memory_bytes - empty;
    assert!((200_000..210_000).contains(&two), "{two}");
    ns.lset(b"l", 0, b("small")).expect("lset");
    let one = ns.stats().memory_bytes - empty;
    assert!((100_000..110_000).contains(&one), "{one}");
    ns.hset(b"h", vec![(b("f"), big.clone())], Expiry::Keep)
        .expect("hset");
    ns.hset(b"h", vec![(b("f"), b("tiny"))], Expiry::Keep)
        .expect("hset");
    ns.sadd(b"s", vec![big.slice(..60_000)], Expiry::Keep)
        .expect("sadd");
    ns.spop(b"s", 1).expect("spop");
    let after = ns.stats().memory_bytes - empty;
    assert!(
        after < one + 4_096,
        "{after} vs {one}: replaced and popped elements are released"
    );
}

#[test]
fn collection_writes_keep_or_reset_the_expiry_as_asked() {
    let (clock, _, ns) = setup();
    ns.sadd(b"tags", vec![b("a")], Expiry::AfterMs(1_000))
        .expect("sadd");
    ns.sadd(b"tags", vec![b("b")], Expiry::Keep).expect("sadd");
    assert_eq!(
        ns.describe(b"tags")
            .expect("describe")
            .and_then(|m| m.ttl_ms),
        Some(1_000)
    );
    ns.sadd(b"tags", vec![b("a")], Expiry::AfterMs(5_000))
        .expect("sadd: no new member, new expiry");
    assert_eq!(
        ns.describe(b"tags")
            .expect("describe")
            .and_then(|m| m.ttl_ms),
        Some(5_000)
    );
    clock.advance_ms(5_000);
    assert_eq!(
        ns.scard(b"tags").expect("scard"),
        0,
        "expired collections read as missing"
    );
    assert_eq!(
        ns.sadd(b"tags", vec![b("c")], Expiry::Keep)
            .expect("sadd")
            .result,
        1
    );
    assert_eq!(
        ns.describe(b"tags")
            .expect("describe")
            .and_then(|m| m.ttl_ms),
        None
    );
}

#[test]
fn versions_bump_on_every_collection_write() {
    let (_, _, ns) = setup();
    let first = ns
        .push(b"l", vec![b("a")], false, false, Expiry::Keep)
        .expect("push")
        .version;
    let second = ns
        .push(b"l", vec![b("b")], false, false, Expiry::Keep)
        .expect("push")
        .version;
    let third = ns.lset(b"l", 0, b("z")).expect("lset");
    assert!(first < second && second < third);
    assert_eq!(
        ns.describe(b"l").expect("describe").map(|m| m.version),
        Some(third)
    );
    assert_eq!(
        ns.describe(b"l").expect("describe").map(|m| m.size),
        Some(2)
    );
}

#[test]
fn snapshots_do_not_see_later_writes() {
    let (_, _, ns) = setup();
    ns.hset(b"h", vec![(b("a"), b("1"))], Expiry::Keep)
        .expect("hset");
    let snapshot = ns.hgetall(b"h").expect("hgetall").expect("exists");
    ns.hset(b"h", vec![(b("a"), b("2")), (b("b"), b("3"))], Expiry::Keep)
        .expect("hset");
    let seen: Vec<_> = snapshot
        .iter()
        .map(|(f, v)| (f.clone(), v.clone()))
        .collect();
    assert_eq!(seen, vec![(b("a"), b("1"))]);
    assert_eq!(ns.hlen(b"h").expect("hlen"), 2);
}

#[test]
fn lset_reports_missing_keys_and_bad_indexes() {
    let (_, _, ns) = setup();
    assert_eq!(ns.lset(b"l", 0, b("x")), Err(EngineError::NoSuchKey));
    ns.push(b"l", vec![b("a"), b("b")], false, false, Expiry::Keep)
        .expect("push");
    assert_eq!(ns.lset(b"l", 2, b("x")), Err(EngineError::IndexOutOfRange));
    assert_eq!(ns.lset(b"l", -3, b("x")), Err(EngineError::IndexOutOfRange));
    ns.lset(b"l", -1, b("z")).expect("lset");
    assert_eq!(
        ns.lrange(b"l", 0, -1).expect("lrange"),
        vec![b("a"), b("z")]
    );
}

#[test]
fn hincrby_follows_integer_rules_and_changes_nothing_on_error() {
    let (_, _, ns) = setup();
    assert_eq!(ns.hincrby(b"h", b"n", 5, Expiry::Keep).expect("hincrby"), 5);
    ns.hset(
        b"h",
        vec![(b("text"), b("abc")), (b("max"), b(&i64::MAX.to_string()))],
        Expiry::Keep,
    )
    .expect("hset");
    assert_eq!(
        ns.hincrby(b"h", b"text", 1, Expiry::Keep),
        Err(EngineError::NotAnInteger)
    );
    assert_eq!(
        ns.hincrby(b"h", b"max", 1, Expiry::Keep),
        Err(EngineError::IncrementOverflow)
    );
    assert_eq!(ns.hget(b"h", b"n").expect("hget"), Some(b("5")));
    assert_eq!(
        ns.hget(b"h", b"max").expect("hget"),
        Some(b(&i64::MAX.to_string()))
    );
}

#[test]
fn random_members_follow_redis_counts() {
    let (_, _, ns) = setup();
    let members: Vec<Bytes> = (0..10).map(|i| b(&i.to_string())).collect();
    ns.sadd(b"s", members, Expiry::Keep).expect("sadd");
    let distinct = ns.srandmember(b"s", 4).expect("srandmember");
    let mut unique = distinct.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((distinct.len(), unique.len()), (4, 4));
    assert_eq!(ns.srandmember(b"s", 50).expect("srandmember").len(), 10);
    assert_eq!(ns.srandmember(b"s", -25).expect("srandmember").len(), 25);
    let popped = ns.spop(b"s", 3).expect("spop");
    assert_eq!(popped.len(), 3);
    assert_eq!(ns.scard(b"s").expect("scard"), 7);
    assert!(
        ns.smismember(b"s", &popped)
            .expect("smismember")
            .iter()
            .all(|member| !member)
    );
    assert_eq!(ns.spop(b"s", 100).expect("spop").len(), 7);
    assert_eq!(ns.len(), 0);
}

#[test]
fn set_algebra_treats_missing_keys_as_empty() {
    let (_, _, ns) = setup();
    ns.sadd(b"a", vec![b("1"), b("2"), b("3")], Expiry::Keep)
        .expect("sadd");
    ns.sadd(b"b", vec![b("2"), b("3"), b("4")], Expiry::Keep)
        .expect("sadd");
    let sorted = |mut members: Vec<Bytes>| {
        members.sort();
        members
    };
    let keys = [&b"a"[..], b"b"];
    assert_eq!(
        sorted(
            ns.combine_sets(&keys, SetOperation::Intersection)
                .expect("sinter")
        ),
        vec![b("2"), b("3")]
    );
    assert_eq!(
        sorted(ns.combine_sets(&keys, SetOperation::Union).expect("sunion")).len(),
        4
    );
    assert_eq!(
        sorted(
            ns.combine_sets(&keys, SetOperation::Difference)
                .expect("sdiff")
        ),
        vec![b("1")]
    );
    let with_missing = [&b"a"[..], b"missing"];
    assert!(
        ns.combine_sets(&with_missing, SetOperation::Intersection)
            .expect("sinter")
            .is_empty()
    );
    assert_eq!(
        ns.combine_sets(&with_missing, SetOperation::Difference)
            .expect("sdiff")
            .len(),
        3
    );
}

#[test]
fn collection_changes_are_recorded_with_their_resolved_effect() {
    let clock = ManualClock::new(START_MS);
    let sink = Arc::new(RecordingSink::default());
    let config = EngineConfig {
        shards_per_namespace: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::with_parts(config, Arc::new(clock), Some(sink.clone()));
    let ns = engine.namespace("feed").expect("namespace");
    ns.push(
        b"l",
        vec![b("a"), b("b"), b("c")],
        false,
        false,
        Expiry::Keep,
    )
    .expect("push");
    ns.ltrim(b"l", -2, -1).expect("ltrim");
    ns.sadd(b"s", vec![b("x"), b("y")], Expiry::AfterMs(1_000))
        .expect("sadd");
    let popped = ns.spop(b"s", 1).expect("spop");
    let kinds: Vec<_> = sink
        .records
        .lock()
        .iter()
        .map(|record| record.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        vec![
            ChangeKind::Collection {
                change: CollectionChange::ListPushed {
                    front: false,
                    values: vec![b("a"), b("b"), b("c")]
                },
                expires_at_ms: 0,
            },
            ChangeKind::Collection {
                change: CollectionChange::ListTrimmed { start: 1, end: 3 },
                expires_at_ms: 0
            },
            ChangeKind::Collection {
                change: CollectionChange::SetAdded {
                    members: vec![b("x"), b("y")]
                },
                expires_at_ms: START_MS + 1_000,
            },
            ChangeKind::Collection {
                change: CollectionChange::SetRemoved { members: popped },
                expires_at_ms: START_MS + 1_000,
            },
        ]
    );
}

fn bounded(
    policy: EvictionPolicy,
    max_keys: u64,
    max_memory_bytes: u64,
) -> (Engine, Arc<Namespace>) {
    let config = EngineConfig {
        shards_per_namespace: 1,
        max_keys,
        max_memory_bytes,
        eviction_policy: policy,
        ..EngineConfig::default()
    };
    let engine = Engine::with_parts(config, Arc::new(ManualClock::new(START_MS)), None);
    let ns = engine.namespace("bounded").expect("namespace");
    (engine, ns)
}

fn put(ns: &Namespace, key: &str) {
    ns.set(key.as_bytes(), b("v"), SetOptions::default())
        .expect("set");
}

fn present(ns: &Namespace, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .filter(|key| ns.describe(key.as_bytes()).expect("describe").is_some())
        .map(|key| key.to_string())
        .collect()
}

#[test]
fn s3fifo_evicts_one_hit_wonders_before_keys_read_again() {
    let (engine, ns) = bounded(EvictionPolicy::S3Fifo, 10, 0);
    for i in 0..10 {
        put(&ns, &format!("k{i}"));
    }
    // k0..k4 are read again (twice); k5..k9 never are.
    for _ in 0..2 {
        for i in 0..5 {
            ns.get(format!("k{i}").as_bytes()).expect("get");
        }
    }
    for i in 10..15 {
        put(&ns, &format!("k{i}"));
    }
    let keys: Vec<String> = (0..15).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let kept = present(&ns, &refs);
    assert_eq!(kept.len(), 10);
    for reread in ["k0", "k1", "k2", "k3", "k4"] {
        assert!(
            kept.contains(&reread.to_string()),
            "{reread} was read again and must stay: {kept:?}"
        );
    }
    let usage = engine.budget_usage();
    assert_eq!(usage.keys, 10);
    assert_eq!(ns.stats().evicted_for_keys, 5);
}

#[test]
fn lru_gives_recently_read_keys_a_second_chance() {
    let (_, ns) = bounded(EvictionPolicy::Lru, 3, 0);
    for key in ["a", "b", "c"] {
        put(&ns, key);
    }
    ns.get(b"a").expect("get");
    put(&ns, "d");
    assert_eq!(
        present(&ns, &["a", "b", "c", "d"]),
        vec!["a", "c", "d"],
        "b is the least recent"
    );
    put(&ns, "e");
    assert_eq!(
        present(&ns, &["a", "b", "c", "d", "e"]),
        vec!["a", "d", "e"]
    );
}

#[test]
fn lfu_keeps_the_most_read_key() {
    let (_, ns) = bounded(EvictionPolicy::Lfu, 3, 0);
    for key in ["hot", "warm", "cold"] {
        put(&ns, key);
    }
    for _ in 0..10 {
        ns.get(b"hot").expect("get");
    }
    ns.get(b"warm").expect("get");
    for key in ["x", "y", "z"] {
        put(&ns, key);
        ns.get(key.as_bytes()).expect("get");
    }
    assert!(
        present(&ns, &["hot"]) == vec!["hot"],
        "the most read key survives a stream of new keys"
    );
}

#[test]
fn noeviction_refuses_new_keys_but_serves_reads_updates_and_deletes() {
    let (_, ns) = bounded(EvictionPolicy::NoEviction, 2, 0);
    put(&ns, "a");
    put(&ns, "b");
    let refused = ns.set(b"c", b("v"), SetOptions::default());
    assert_eq!(refused, Err(EngineError::OutOfMemory { limit: "max_keys" }));
    assert!(matches!(
        ns.sadd(b"s", vec![b("m")], Expiry::Keep),
        Err(EngineError::OutOfMemory { .. })
    ));
    assert_eq!(ns.get(b"a").expect("get"), Some(b("v")));
    put(&ns, "a");
    ns.delete(&[b"b"]).expect("delete");
    put(&ns, "c");
    assert_eq!(ns.len(), 2);
}

/// An engine whose namespace `capped` has a budget of its own.
fn with_namespace_limits(
    policy: EvictionPolicy,
    engine_max_keys: u64,
    limits: NamespaceLimits,
) -> Engine {
    let mut config = EngineConfig {
        // More shards than the smallest budget below has keys: most writes
        // land in a shard with nothing to evict.
        shards_per_namespace: 16,
        max_keys: engine_max_keys,
        eviction_policy: policy,
        ..EngineConfig::default()
    };
    config.namespace_limits.insert("capped".into(), limits);
    Engine::with_parts(config, Arc::new(ManualClock::new(START_MS)), None)
}

#[test]
fn a_namespace_budget_bounds_that_namespace_only() {
    let limits = NamespaceLimits {
        max_keys: 20,
        max_memory_bytes: 0,
    };
    let engine = with_namespace_limits(EvictionPolicy::S3Fifo, 0, limits);
    let capped = engine.namespace("capped").expect("namespace");
    let free = engine.namespace("free").expect("namespace");
    for i in 0..200 {
        put(&capped, &format!("k{i}"));
        put(&free, &format!("k{i}"));
    }
    assert_eq!(
        capped.len(),
        20,
        "holds its budget exactly, evicting across shards"
    );
    assert_eq!(free.len(), 200, "a namespace without a budget is untouched");
    assert!(capped.stats().evicted_for_keys >= 180);
    let own = capped.own_budget().expect("capped has a budget of its own");
    assert_eq!((own.keys, own.max_keys), (capped.len(), 20));
    assert!(free.own_budget().is_none());
    assert_eq!(engine.budget_usage().max_keys, 0);
}

#[test]
fn a_namespace_budget_also_counts_toward_the_engine_budget() {
    let limits = NamespaceLimits {
        max_keys: 30,
        max_memory_bytes: 0,
    };
    let engine = with_namespace_limits(EvictionPolicy::Lru, 100, limits);
    let capped = engine.namespace("capped").expect("namespace");
    let other = engine.namespace("other").expect("namespace");
    for i in 0..100 {
        put(&capped, &format!("c{i}"));
    }
    assert!(capped.len() <= 30, "capped holds {}", capped.len());
    for i in 0..200 {
        put(&other, &format!("o{i}"));
    }
    let total = capped.len() + other.len();
    assert!(total <= 100, "the engine holds {total} keys");
    assert_eq!(engine.budget_usage().keys, total);
}

#[test]
fn under_noeviction_a_full_namespace_refuses_writes_and_others_go_on() {
    let limits = NamespaceLimits {
        max_keys: 2,
        max_memory_bytes: 0,
    };
    let engine = with_namespace_limits(EvictionPolicy::NoEviction, 0, limits);
    let capped = engine.namespace("capped").expect("namespace");
    let free = engine.namespace("free").expect("namespace");
    put(&capped, "a");
    put(&capped, "b");
    assert_eq!(
        capped.set(b"c", b("v"), SetOptions::default()),
        Err(EngineError::OutOfMemory {
            limit: "namespace max_keys"
        })
    );
    assert_eq!(capped.get(b"a").expect("get"), Some(b("v")));
    for i in 0..10 {
        put(&free, &format!("k{i}"));
    }
    assert_eq!((capped.len(), free.len()), (2, 10));
}

#[test]
fn a_memory_budget_holds_under_a_write_storm() {
    let budget = 1 << 20;
    let (engine, ns) = bounded(EvictionPolicy::S3Fifo, 0, budget);
    let value = Bytes::from(vec![0u8; 1_000]);
    for i in 0..5_000u32 {
        ns.set(&i.to_be_bytes(), value.clone(), SetOptions::default())
            .expect("set");
        let usage = engine.budget_usage();
        assert!(
            usage.charged_bytes <= budget,
            "over budget after write {i}: {usage:?}"
        );
    }
    let stats = ns.stats();
    assert!(stats.evicted_for_memory > 3_000, "{stats:?}");
    assert!(stats.keys > 500, "the cache stays useful: {stats:?}");
    // A collection growing past the budget evicts other keys, not itself.
    for chunk in 0..20 {
        let values = (0..50)
            .map(|i| Bytes::from(format!("{chunk}-{i}-{}", "x".repeat(1_000))))
            .collect();
        ns.push(b"log", values, false, false, Expiry::Keep)
            .expect("push");
    }
    assert!(engine.budget_usage().charged_bytes <= budget + 60_000);
    assert_eq!(ns.llen(b"log").expect("llen"), 1_000);
}

#[test]
fn without_limits_nothing_is_tracked_or_evicted() {
    let (engine, ns) = bounded(EvictionPolicy::S3Fifo, 0, 0);
    for i in 0..1_000 {
        put(&ns, &format!("k{i}"));
    }
    assert_eq!(ns.len(), 1_000);
    assert_eq!(engine.budget_usage().keys, 0);
}

#[test]
fn a_budget_smaller_than_the_shard_count_still_holds_after_every_write() {
    let limits = NamespaceLimits {
        max_keys: 5,
        max_memory_bytes: 0,
    };
    let engine = with_namespace_limits(EvictionPolicy::S3Fifo, 0, limits);
    let capped = engine.namespace("capped").expect("namespace");
    for i in 0..100 {
        put(&capped, &format!("k{i}"));
        assert!(capped.len() <= 5, "after write {i}: {} keys", capped.len());
    }
    assert_eq!(capped.len(), 5);
    assert_eq!(capped.stats().evicted_for_keys, 95);
}

#[test]
fn short_values_live_in_the_entry_without_growing_it() {
    assert_eq!(size_of::<super::value::Value>(), 40);
    let (_, _, ns) = setup();
    for len in [0, 1, 37, 38, 39, 200] {
        let key = format!("k{len}");
        let value = Bytes::from(vec![b'v'; len]);
        ns.set(key.as_bytes(), value.clone(), SetOptions::default())
            .expect("set");
        assert_eq!(ns.get(key.as_bytes()).expect("get"), Some(value.clone()));
        let previous = ns
            .set(
                key.as_bytes(),
                b("next"),
                SetOptions {
                    return_previous: true,
                    ..SetOptions::default()
                },
            )
            .expect("set");
        assert_eq!(previous.previous, Some(value));
    }
    ns.set(b"n", b("41"), SetOptions::default()).expect("set");
    let incremented = ns.increment(b"n", 1, None, Expiry::Keep).expect("incr");
    assert_eq!(incremented.value, 42);
    assert_eq!(ns.get(b"n").expect("get"), Some(b("42")));
    assert!(matches!(
        ns.hset(b"n", vec![(b("f"), b("1"))], Expiry::Keep),
        Err(EngineError::WrongType { .. })
    ));
}

#[test]
fn a_shard_spans_an_odd_number_of_cache_lines() {
    // See `Shard`: at an even number of lines, the shards' first lines
    // crowd into a few sets of the first-level cache.
    let size = std::mem::size_of::<super::shard::Shard>();
    assert_eq!(size % 64, 0, "a shard of {size} bytes shares a line");
    assert_eq!(
        size / 64 % 2,
        1,
        "a shard of {size} bytes is an even number of lines"
    );
}

#[test]
fn a_dropped_namespace_loses_its_keys_and_frees_its_slot() {
    let clock = ManualClock::new(START_MS);
    let config = EngineConfig {
        max_namespaces: 2,
        max_keys: 1000,
        ..EngineConfig::default()
    };
    let engine = Engine::with_parts(config, Arc::new(clock), None);
    let first = engine.namespace("first").expect("namespace");
    for key in ["a", "b", "c"] {
        first
            .set(key.as_bytes(), bytes("v"), SetOptions::default())
            .expect("set");
    }
    engine.namespace("second").expect("namespace");
    assert!(engine.namespace("third").is_err());

    assert_eq!(engine.drop_namespace("first"), Ok(Some(3)));
    assert_eq!(engine.drop_namespace("first"), Ok(None));
    assert!(matches!(
        engine.drop_namespace("bad name"),
        Err(EngineError::InvalidNamespace { .. })
    ));
    engine.namespace("third").expect("the slot is free");
    // Made again, the name starts empty.
    assert!(engine.drop_namespace("third").is_ok());
    let again = engine.namespace("first").expect("namespace");
    assert_eq!(again.get(b"a"), Ok(None));

    // A write through a handle taken before the drop lands in the dropped
    // namespace and is given back to the budget with it.
    first
        .set(b"late", bytes("v"), SetOptions::default())
        .expect("set");
    assert_eq!(engine.budget_usage().keys, 1);
    drop(first);
    assert_eq!(engine.budget_usage().keys, 0);
}

#[test]
fn empty_namespaces_are_reclaimed_after_the_grace_unless_held() {
    let clock = ManualClock::new(START_MS);
    let config = EngineConfig {
        empty_namespace_grace_ms: 1000,
        ..EngineConfig::default()
    };
    let engine = Engine::with_parts(config, Arc::new(clock.clone()), None);
    engine
        .namespace("emptied")
        .expect("namespace")
        .set(b"k", bytes("v"), SetOptions::default())
        .expect("set");
    engine
        .namespace("emptied")
        .expect("namespace")
        .delete(&[b"k"])
        .expect("delete");
    engine
        .namespace("full")
        .expect("namespace")
        .set(b"k", bytes("v"), SetOptions::default())
        .expect("set");
    let held = engine.namespace("held").expect("namespace");

    assert_eq!(engine.reclaim_empty_namespaces(), 0, "first seen empty");
    clock.advance_ms(999);
    assert_eq!(engine.reclaim_empty_namespaces(), 0, "within the grace");
    clock.advance_ms(1);
    assert_eq!(engine.reclaim_empty_namespaces(), 1);
    let names: Vec<String> = engine
        .namespaces()
        .iter()
        .map(|namespace| namespace.name().to_string())
        .collect();
    assert_eq!(names, ["full", "held"]);
    drop(held);
    assert_eq!(engine.reclaim_empty_namespaces(), 1, "once no one holds it");

    let off = Engine::with_parts(
        EngineConfig {
            empty_namespace_grace_ms: 0,
            ..EngineConfig::default()
        },
        Arc::new(clock.clone()),
        None,
    );
    off.namespace("kept").expect("namespace");
    clock.advance_ms(1_000_000);
    assert_eq!(off.reclaim_empty_namespaces(), 0);
    assert_eq!(off.namespaces().len(), 1);
}

#[test]
fn a_cursor_works_only_in_the_namespace_that_issued_it() {
    let (_clock, engine, ns) = setup();
    for key in 0..100 {
        ns.set(
            format!("k{key}").as_bytes(),
            bytes("v"),
            SetOptions::default(),
        )
        .expect("set");
    }
    let page = ns.scan(&ScanCursor::start(), &ScanFilter::default(), 10);
    let cursor = ns.encode_cursor(&page.cursor.expect("more"));
    assert!(ns.decode_cursor(&cursor).is_ok());

    let other = engine.namespace("other").expect("namespace");
    assert_eq!(
        other.decode_cursor(&cursor),
        Err(EngineError::InvalidCursor)
    );
    let mut edited = cursor.to_vec();
    let last = edited.len() - 1;
    edited[last] ^= 1;
    assert_eq!(ns.decode_cursor(&edited), Err(EngineError::InvalidCursor));

    engine.drop_namespace("test").expect("drop");
    let again = engine.namespace("test").expect("namespace");
    assert_eq!(
        again.decode_cursor(&cursor),
        Err(EngineError::InvalidCursor)
    );
}
