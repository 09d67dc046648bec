//! String commands: reads, conditional writes, counters, deletes and batch reads.

use super::*;

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
