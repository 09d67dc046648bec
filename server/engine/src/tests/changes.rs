//! Change records: one per mutation, with its resolved effect.

use super::*;

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
