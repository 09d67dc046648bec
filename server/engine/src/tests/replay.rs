//! Replay and snapshots: records and snapshot entries rebuild the keyspace.

use std::collections::{BTreeMap, HashMap};

use super::*;

/// A change record or a flush, in the order the engine emitted them.
#[derive(Debug, Clone)]
enum Logged {
    Change(ChangeRecord),
    Flush(FlushRecord),
}

#[derive(Default)]
struct OrderedSink(Mutex<Vec<Logged>>);

impl ChangeSink for OrderedSink {
    fn record(&self, change: ChangeRecord) {
        self.0.lock().push(Logged::Change(change));
    }
    fn flushed(&self, flush: FlushRecord) {
        self.0.lock().push(Logged::Flush(flush));
    }
}

impl OrderedSink {
    fn len(&self) -> usize {
        self.0.lock().len()
    }
    fn since(&self, from: usize) -> Vec<Logged> {
        self.0.lock()[from..].to_vec()
    }
}

/// A key's content, comparable across engines.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    String(Bytes),
    Hash(Vec<(Bytes, Bytes)>),
    List(Vec<Bytes>),
    Set(Vec<Bytes>),
}

type Dump = BTreeMap<(String, Bytes), (Content, u64, u64)>;

fn content(value: &SnapshotValue) -> Content {
    match value {
        SnapshotValue::String(bytes) => Content::String(bytes.clone()),
        SnapshotValue::Hash(hash) => {
            let mut fields: Vec<_> = hash.iter().map(|(f, v)| (f.clone(), v.clone())).collect();
            fields.sort();
            Content::Hash(fields)
        }
        SnapshotValue::List(list) => Content::List(list.range(0, -1).cloned().collect()),
        SnapshotValue::Set(set) => {
            let mut members: Vec<_> = set.iter().cloned().collect();
            members.sort();
            Content::Set(members)
        }
    }
}

/// Every live key of every namespace: content, deadline, version.
fn dump(engine: &Engine) -> Dump {
    let mut all = Dump::new();
    for namespace in engine.namespaces() {
        for chunk in namespace.snapshot_reader() {
            for entry in chunk.entries {
                all.insert(
                    (namespace.name().to_owned(), entry.key.clone()),
                    (content(&entry.value), entry.expires_at_ms, entry.version),
                );
            }
        }
    }
    all
}

fn recorded_engine(clock: &ManualClock, config: EngineConfig) -> (Engine, Arc<OrderedSink>) {
    let sink = Arc::new(OrderedSink::default());
    let engine = Engine::with_parts(config, Arc::new(clock.clone()), Some(sink.clone()));
    (engine, sink)
}

fn small_config() -> EngineConfig {
    EngineConfig {
        shards_per_namespace: 4,
        ..EngineConfig::default()
    }
}

fn replay(engine: &Engine, log: Vec<Logged>) {
    for logged in log {
        match logged {
            Logged::Change(record) => {
                engine.apply_change(record).expect("replayable record");
            }
            Logged::Flush(flush) => {
                engine.apply_flush(&flush).expect("replayable flush");
            }
        }
    }
}

/// One command of a random workload.
#[derive(Debug, Clone)]
enum Op {
    Set(u8, u8, Option<u16>),
    Incr(u8, i8),
    Delete(u8),
    Persist(u8),
    Expire(u8, u16),
    HSet(u8, u8, u8, Option<u16>),
    HDel(u8, u8),
    Push(u8, bool, Vec<u8>),
    Pop(u8, bool, u8),
    Trim(u8, i8, i8),
    LSet(u8, i8, u8),
    LRem(u8, i8, u8),
    SAdd(u8, Vec<u8>),
    SRem(u8, u8),
    SPop(u8, u8),
    Advance(u16),
    Sweep,
    Flush(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..12;
    let ttl = proptest::option::of(1u16..400);
    prop_oneof![
        (key.clone(), any::<u8>(), ttl.clone()).prop_map(|(k, v, t)| Op::Set(k, v, t)),
        (key.clone(), any::<i8>()).prop_map(|(k, d)| Op::Incr(k, d)),
        key.clone().prop_map(Op::Delete),
        key.clone().prop_map(Op::Persist),
        (key.clone(), 1u16..400).prop_map(|(k, t)| Op::Expire(k, t)),
        (key.clone(), 0u8..4, any::<u8>(), ttl).prop_map(|(k, f, v, t)| Op::HSet(k, f, v, t)),
        (key.clone(), 0u8..4).prop_map(|(k, f)| Op::HDel(k, f)),
        (
            key.clone(),
            any::<bool>(),
            proptest::collection::vec(0u8..4, 1..4)
        )
            .prop_map(|(k, front, values)| Op::Push(k, front, values)),
        (key.clone(), any::<bool>(), 1u8..3).prop_map(|(k, front, n)| Op::Pop(k, front, n)),
        (key.clone(), -4i8..4, -4i8..4).prop_map(|(k, start, stop)| Op::Trim(k, start, stop)),
        (key.clone(), -3i8..3, any::<u8>()).prop_map(|(k, i, v)| Op::LSet(k, i, v)),
        (key.clone(), -2i8..3, 0u8..4).prop_map(|(k, n, v)| Op::LRem(k, n, v)),
        (key.clone(), proptest::collection::vec(0u8..6, 1..4))
            .prop_map(|(k, members)| Op::SAdd(k, members)),
        (key.clone(), 0u8..6).prop_map(|(k, m)| Op::SRem(k, m)),
        (key, 1u8..3).prop_map(|(k, n)| Op::SPop(k, n)),
        (1u16..300).prop_map(Op::Advance),
        Just(Op::Sweep),
        (0u8..2).prop_map(Op::Flush),
    ]
}

/// Runs `op` on `engine`; errors (WRONGTYPE, not an integer) are part of
/// the workload and change nothing.
fn run(engine: &Engine, clock: &ManualClock, op: &Op) {
    let namespaces = ["alpha", "beta"];
    let key = |k: &u8| format!("k{k}").into_bytes();
    let ns = engine
        .namespace(namespaces[usize::from(op_key(op)) % 2])
        .expect("namespace");
    let expiry = |t: &Option<u16>| t.map_or(Expiry::Never, |t| Expiry::AfterMs(i64::from(t)));
    let _ = match op {
        Op::Set(k, v, t) => ns
            .set(
                &key(k),
                Bytes::from(vec![*v; usize::from(*v % 50)]),
                SetOptions {
                    expiry: expiry(t),
                    ..SetOptions::default()
                },
            )
            .map(drop),
        Op::Incr(k, d) => ns
            .increment(&key(k), i64::from(*d), None, Expiry::Keep)
            .map(drop),
        Op::Delete(k) => ns.delete(&[key(k)]).map(drop),
        Op::Persist(k) => ns.update_expiry(&key(k), Expiry::Never).map(drop),
        Op::Expire(k, t) => ns
            .update_expiry(&key(k), Expiry::AfterMs(i64::from(*t)))
            .map(drop),
        Op::HSet(k, f, v, t) => ns
            .hset(
                &key(k),
                vec![(Bytes::from(vec![b'f', *f]), Bytes::from(vec![*v]))],
                t.map_or(Expiry::Keep, |t| Expiry::AfterMs(i64::from(t))),
            )
            .map(drop),
        Op::HDel(k, f) => ns.hdel(&key(k), &[vec![b'f', *f]]).map(drop),
        Op::Push(k, front, values) => ns
            .push(
                &key(k),
                values.iter().map(|v| Bytes::from(vec![*v])).collect(),
                *front,
                false,
                Expiry::Keep,
            )
            .map(drop),
        Op::Pop(k, front, n) => ns.pop(&key(k), usize::from(*n), *front).map(drop),
        Op::Trim(k, start, stop) => ns
            .ltrim(&key(k), i64::from(*start), i64::from(*stop))
            .map(drop),
        Op::LSet(k, i, v) => ns
            .lset(&key(k), i64::from(*i), Bytes::from(vec![*v]))
            .map(drop),
        Op::LRem(k, n, v) => ns.lrem(&key(k), i64::from(*n), &[*v]).map(drop),
        Op::SAdd(k, members) => ns
            .sadd(
                &key(k),
                members.iter().map(|m| Bytes::from(vec![*m])).collect(),
                Expiry::Keep,
            )
            .map(drop),
        Op::SRem(k, m) => ns.srem(&key(k), &[[*m]]).map(drop),
        Op::SPop(k, n) => ns.spop(&key(k), usize::from(*n)).map(drop),
        Op::Advance(ms) => {
            clock.advance_ms(u64::from(*ms));
            Ok(())
        }
        Op::Sweep => {
            engine.sweep_expired(1024);
            Ok(())
        }
        Op::Flush(_) => {
            ns.flush();
            Ok(())
        }
    };
}

/// The key an op touches, to pick its namespace.
fn op_key(op: &Op) -> u8 {
    match op {
        Op::Set(k, ..)
        | Op::Incr(k, _)
        | Op::Delete(k)
        | Op::Persist(k)
        | Op::Expire(k, _)
        | Op::HSet(k, ..)
        | Op::HDel(k, _)
        | Op::Push(k, ..)
        | Op::Pop(k, ..)
        | Op::Trim(k, ..)
        | Op::LSet(k, ..)
        | Op::LRem(k, ..)
        | Op::SAdd(k, _)
        | Op::SRem(k, _)
        | Op::SPop(k, _)
        | Op::Flush(k) => *k,
        Op::Advance(_) | Op::Sweep => 0,
    }
}

/// A snapshot of every namespace of `engine` taken while `between` runs
/// after each chunk, and each shard's sequence when its reading began.
type Taken = (Vec<(String, SnapshotEntry)>, HashMap<(String, u32), u64>);

fn snapshot_while(engine: &Engine, chunk_keys: usize, mut between: impl FnMut()) -> Taken {
    let mut entries = Vec::new();
    let mut sequences = HashMap::new();
    for namespace in engine.namespaces() {
        for chunk in namespace.snapshot_reader_with(chunk_keys) {
            sequences.insert(
                (namespace.name().to_owned(), chunk.shard),
                chunk.shard_sequence,
            );
            entries.extend(
                chunk
                    .entries
                    .into_iter()
                    .map(|entry| (namespace.name().to_owned(), entry)),
            );
            between();
        }
    }
    (entries, sequences)
}

fn restore(engine: &Engine, entries: Vec<(String, SnapshotEntry)>) {
    for (namespace, entry) in entries {
        engine
            .restore_entry(&namespace, entry)
            .expect("restorable entry");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Replaying every record into an empty engine reproduces the
    /// keyspace: contents, deadlines and versions.
    #[test]
    fn replaying_the_records_reproduces_the_keyspace(ops in proptest::collection::vec(op(), 1..160)) {
        let clock = ManualClock::new(START_MS);
        let (a, log) = recorded_engine(&clock, small_config());
        for op in &ops {
            run(&a, &clock, op);
        }
        let b = Engine::with_parts(small_config(), Arc::new(clock.clone()), None);
        replay(&b, log.since(0));
        prop_assert_eq!(dump(&a), dump(&b));
        b.drop_expired();
        prop_assert_eq!(dump(&a), dump(&b));
    }

    /// A snapshot taken while writes go on, plus the records it may have
    /// missed, reproduces the final keyspace, whether only each shard's
    /// later records are replayed or every record since the snapshot began.
    #[test]
    fn a_snapshot_and_the_records_after_it_reproduce_the_keyspace(
        before in proptest::collection::vec(op(), 0..120),
        during in proptest::collection::vec(op(), 0..60),
        after in proptest::collection::vec(op(), 0..60),
        chunk_keys in 1usize..4,
    ) {
        // A flush during the snapshot is covered by replaying from where
        // the snapshot began (see the persistence docs), not per shard.
        let no_flush = |ops: &[Op]| ops.iter().filter(|op| !matches!(op, Op::Flush(_))).cloned().collect::<Vec<_>>();
        let (during, after) = (no_flush(&during), no_flush(&after));
        let clock = ManualClock::new(START_MS);
        let (a, log) = recorded_engine(&clock, small_config());
        for op in &before {
            run(&a, &clock, op);
        }
        let start = log.len();
        let mut pending = during.iter();
        let (entries, sequences) = snapshot_while(&a, chunk_keys, || {
            if let Some(op) = pending.next() {
                run(&a, &clock, op);
            }
        });
        for op in pending.chain(&after) {
            run(&a, &clock, op);
        }
        let expected = dump(&a);

        let later = Engine::with_parts(small_config(), Arc::new(clock.clone()), None);
        restore(&later, entries.clone());
        let newer: Vec<Logged> = log
            .since(start)
            .into_iter()
            .filter(|logged| match logged {
                Logged::Change(record) => sequences
                    .get(&(record.namespace.to_string(), record.shard))
                    .is_none_or(|seen| record.sequence > *seen),
                Logged::Flush(_) => true,
            })
            .collect();
        replay(&later, newer);
        prop_assert_eq!(&expected, &dump(&later));

        let every = Engine::with_parts(small_config(), Arc::new(clock.clone()), None);
        restore(&every, entries);
        replay(&every, log.since(0));
        prop_assert_eq!(&expected, &dump(&every));
    }
}

#[test]
fn records_older_than_the_stored_version_are_ignored() {
    let clock = ManualClock::new(START_MS);
    let (a, log) = recorded_engine(&clock, small_config());
    let ns = a.namespace("n").expect("namespace");
    ns.set(b"k", b("one"), SetOptions::default()).expect("set");
    ns.push(b"l", vec![b("x")], false, false, Expiry::Never)
        .expect("push");
    ns.set(b"k", b("two"), SetOptions::default()).expect("set");
    ns.push(b"l", vec![b("y")], false, false, Expiry::Never)
        .expect("push");
    let records = log.since(0);
    let b_engine = Engine::with_parts(small_config(), Arc::new(clock.clone()), None);
    replay(&b_engine, records.clone());
    let expected = dump(&b_engine);
    for logged in records {
        if let Logged::Change(record) = logged {
            assert_eq!(b_engine.apply_change(record), Ok(Applied::Stale));
        }
    }
    assert_eq!(dump(&b_engine), expected);
    assert_eq!(dump(&a), expected);
    let replayed = b_engine.namespace("n").expect("namespace");
    assert_eq!(
        replayed.lrange(b"l", 0, -1).expect("list"),
        vec![b("x"), b("y")]
    );
}

#[test]
fn writes_after_a_replay_get_versions_above_every_replayed_one() {
    let clock = ManualClock::new(START_MS);
    let (a, log) = recorded_engine(&clock, small_config());
    let ns = a.namespace("n").expect("namespace");
    for round in 0..50 {
        ns.set(b"k", Bytes::from(format!("{round}")), SetOptions::default())
            .expect("set");
    }
    ns.delete(&[b"k"]).expect("delete");
    let highest = log
        .since(0)
        .iter()
        .filter_map(|logged| match logged {
            Logged::Change(record) => Some(record.sequence),
            Logged::Flush(_) => None,
        })
        .max()
        .expect("records");
    let b_engine = Engine::with_parts(small_config(), Arc::new(clock.clone()), None);
    replay(&b_engine, log.since(0));
    // The key is gone, but its versions stay spent in its shard.
    let written = b_engine
        .namespace("n")
        .expect("namespace")
        .set(b"k", b("again"), SetOptions::default())
        .expect("set");
    assert!(written.version > highest);
}

#[test]
fn a_deadline_that_passed_before_the_replay_but_was_lifted_keeps_the_key() {
    let clock = ManualClock::new(START_MS);
    let (a, log) = recorded_engine(&clock, small_config());
    let ns = a.namespace("n").expect("namespace");
    ns.set(b"kept", b("v"), ttl(10)).expect("set");
    ns.set(b"gone", b("v"), ttl(10)).expect("set");
    ns.hset(b"h", vec![(b("f"), b("1"))], Expiry::AfterMs(10))
        .expect("hset");
    clock.advance_ms(5);
    ns.update_expiry(b"kept", Expiry::Never).expect("persist");
    ns.hset(b"h", vec![(b("g"), b("2"))], Expiry::AfterMs(1_000))
        .expect("hset");
    // The restart comes long after the first deadlines.
    clock.advance_ms(100);
    let b_engine = Engine::with_parts(small_config(), Arc::new(clock.clone()), None);
    replay(&b_engine, log.since(0));
    assert_eq!(b_engine.drop_expired(), 1);
    let replayed = b_engine.namespace("n").expect("namespace");
    assert_eq!(replayed.get(b"kept").expect("get"), Some(b("v")));
    assert_eq!(replayed.get(b"gone").expect("get"), None);
    let fields = replayed.hgetall(b"h").expect("hgetall").expect("hash");
    assert_eq!(fields.len(), 2);
    assert_eq!(dump(&a), dump(&b_engine));
}

#[test]
fn replay_emits_no_records_of_its_own() {
    let clock = ManualClock::new(START_MS);
    let (a, log) = recorded_engine(&clock, small_config());
    let ns = a.namespace("n").expect("namespace");
    ns.set(b"k", b("v"), SetOptions::default()).expect("set");
    ns.sadd(b"s", vec![b("m")], Expiry::Never).expect("sadd");
    ns.delete(&[b"k"]).expect("delete");
    let (b_engine, b_log) = recorded_engine(&clock, small_config());
    replay(&b_engine, log.since(0));
    assert_eq!(b_log.len(), 0);
    assert_eq!(dump(&a), dump(&b_engine));
}

#[test]
fn replay_keeps_to_the_budget() {
    let clock = ManualClock::new(START_MS);
    let (a, log) = recorded_engine(&clock, small_config());
    let ns = a.namespace("n").expect("namespace");
    for at in 0..200 {
        ns.set(format!("k{at}").as_bytes(), b("v"), SetOptions::default())
            .expect("set");
    }
    let bounded = EngineConfig {
        shards_per_namespace: 1,
        max_keys: 50,
        ..EngineConfig::default()
    };
    let (b_engine, b_log) = recorded_engine(&clock, bounded.clone());
    replay(&b_engine, log.since(0));
    assert!(b_engine.budget_usage().keys <= 50);
    // Evictions are real events of the replaying engine, announced as such.
    assert_eq!(b_log.len(), 150);

    let refusing = EngineConfig {
        eviction_policy: EvictionPolicy::NoEviction,
        ..bounded
    };
    let c_engine = Engine::with_parts(refusing, Arc::new(clock.clone()), None);
    let refused = log.since(0).into_iter().find_map(|logged| match logged {
        Logged::Change(record) => c_engine.apply_change(record).err(),
        Logged::Flush(_) => None,
    });
    assert!(matches!(
        refused,
        Some(ReplayError::Refused(EngineError::OutOfMemory { .. }))
    ));
}

#[test]
fn a_snapshot_reads_large_shards_in_chunks_and_reports_their_sequence() {
    let clock = ManualClock::new(START_MS);
    let (a, _log) = recorded_engine(
        &clock,
        EngineConfig {
            shards_per_namespace: 2,
            ..EngineConfig::default()
        },
    );
    let ns = a.namespace("n").expect("namespace");
    for at in 0..5_000 {
        ns.set(format!("k{at}").as_bytes(), b("v"), SetOptions::default())
            .expect("set");
    }
    ns.hset(b"h", vec![(b("f"), b("1"))], Expiry::Never)
        .expect("hset");
    let chunks: Vec<SnapshotChunk> = ns.snapshot_reader().collect();
    assert!(chunks.len() > 2);
    assert_eq!(chunks.iter().filter(|chunk| chunk.last_of_shard).count(), 2);
    let keys: usize = chunks.iter().map(|chunk| chunk.entries.len()).sum();
    assert_eq!(keys, 5_001);
    assert!(chunks.iter().all(|chunk| {
        chunk
            .entries
            .iter()
            .all(|e| e.version <= chunk.shard_sequence)
    }));
    // A write to a collection the snapshot holds copies it, and the copy
    // is counted while the snapshot lives.
    ns.hset(b"h", vec![(b("g"), b("2"))], Expiry::Never)
        .expect("hset");
    assert!(ns.stats().snapshot_bytes > 0);
    drop(chunks);
    assert_eq!(ns.stats().snapshot_bytes, 0);
}

#[test]
fn bad_records_are_refused_without_panicking() {
    let clock = ManualClock::new(START_MS);
    let engine = Engine::with_parts(small_config(), Arc::new(clock.clone()), None);
    let record = |key: &str, sequence: u64, kind: ChangeKind| ChangeRecord {
        namespace: Arc::from("n"),
        shard: 0,
        sequence,
        key: b(key),
        kind,
    };
    let set = ChangeKind::Set {
        value: b("v"),
        expires_at_ms: 0,
    };
    assert!(matches!(
        engine.apply_change(record("", 1, set.clone())),
        Err(ReplayError::Refused(EngineError::EmptyKey))
    ));
    assert!(matches!(
        engine.apply_change(record("k", u64::MAX, set.clone())),
        Err(ReplayError::OutOfRange { .. })
    ));
    assert_eq!(
        engine.apply_change(record("k", 1, set)),
        Ok(Applied::Changed)
    );
    let push = ChangeKind::Collection {
        change: CollectionChange::ListPushed {
            front: false,
            values: vec![b("x")],
        },
        expires_at_ms: 0,
    };
    assert!(matches!(
        engine.apply_change(record("k", 2, push)),
        Err(ReplayError::Refused(EngineError::WrongType { .. }))
    ));
    // A trim or a set out of range on another base than the original's
    // changes what it can and no more.
    let push = ChangeKind::Collection {
        change: CollectionChange::ListPushed {
            front: false,
            values: vec![b("x")],
        },
        expires_at_ms: 0,
    };
    engine.apply_change(record("l", 3, push)).expect("push");
    for (sequence, change) in [
        (4, CollectionChange::ListTrimmed { start: 7, end: 3 }),
        (
            5,
            CollectionChange::ListSet {
                index: u64::MAX,
                value: b("y"),
            },
        ),
    ] {
        let kind = ChangeKind::Collection {
            change,
            expires_at_ms: 0,
        };
        engine
            .apply_change(record("l", sequence, kind))
            .expect("applied");
    }
    assert_eq!(
        engine.namespace("n").expect("ns").llen(b"l").expect("llen"),
        0
    );
}

#[test]
fn a_flush_during_writes_replays_to_the_same_keyspace() {
    let clock = ManualClock::new(START_MS);
    // Many shards make a flush long enough for writes to meet it.
    let config = EngineConfig {
        shards_per_namespace: 1024,
        ..EngineConfig::default()
    };
    for _ in 0..20 {
        let (a, log) = recorded_engine(&clock, config.clone());
        let ns = a.namespace("n").expect("namespace");
        std::thread::scope(|scope| {
            for writer in 0..2 {
                let ns = &ns;
                scope.spawn(move || {
                    for at in 0..300 {
                        let key = format!("w{writer}-{}", at % 40);
                        ns.set(key.as_bytes(), b("v"), SetOptions::default())
                            .expect("set");
                    }
                });
            }
            for _ in 0..5 {
                ns.flush();
                std::thread::yield_now();
            }
        });
        let b_engine = Engine::with_parts(config.clone(), Arc::new(clock.clone()), None);
        replay(&b_engine, log.since(0));
        assert_eq!(dump(&a), dump(&b_engine));
    }
}

#[test]
fn a_restored_entry_keeps_nothing_of_the_buffer_it_was_sliced_from() {
    let clock = ManualClock::new(START_MS);
    let engine = engine_at(&clock);
    let ns = engine.namespace("n").expect("namespace");
    // One buffer holding a short value (kept in the slot) and a long one
    // (kept beside it), as a snapshot's read buffer holds many entries.
    let mut whole = vec![b's'; 16];
    whole.extend(std::iter::repeat_n(b'l', 4096));
    let block = Bytes::from(whole);
    for (key, value) in [("short", block.slice(..16)), ("long", block.slice(16..))] {
        let entry = SnapshotEntry {
            key: Bytes::from_static(key.as_bytes()),
            value: SnapshotValue::String(value),
            expires_at_ms: 0,
            version: 1,
        };
        assert_eq!(ns.restore_entry(entry), Ok(Applied::Changed));
    }
    assert!(
        block.is_unique(),
        "an entry still refers to the read buffer"
    );
    assert_eq!(ns.get(b"short").expect("get"), Some(block.slice(..16)));
    assert_eq!(ns.get(b"long").expect("get"), Some(block.slice(16..)));
}

#[test]
fn reserving_room_for_a_restore_is_bounded_whatever_the_hint() {
    let clock = ManualClock::new(START_MS);
    let engine = engine_at(&clock);
    let ns = engine.namespace("n").expect("namespace");
    let empty = ns.stats().memory_bytes;
    ns.reserve_keys(10_000);
    let reserved = ns.stats().memory_bytes;
    assert!(
        reserved > empty,
        "the index was not sized: {empty} -> {reserved}"
    );
    // A damaged or hostile count is capped by the budget, not allocated.
    let budgeted = Engine::with_parts(
        EngineConfig {
            shards_per_namespace: 4,
            max_memory_bytes: 1 << 20,
            ..EngineConfig::default()
        },
        Arc::new(clock.clone()),
        None,
    );
    let hostile = budgeted.namespace("m").expect("namespace");
    hostile.reserve_keys(u64::MAX);
    let capped = hostile.stats().memory_bytes;
    assert!(
        capped < 1 << 20,
        "{capped} bytes reserved under a 1 MiB budget"
    );
    for key in 0..1_000u32 {
        ns.set(&key.to_be_bytes(), b("v"), SetOptions::default())
            .expect("set");
    }
    assert_eq!(ns.len(), 1_000);
}
