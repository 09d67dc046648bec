//! Namespaces: names, flushes, drops and the reclaiming of empty ones.

use super::*;

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
