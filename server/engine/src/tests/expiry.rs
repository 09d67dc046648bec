//! Deadlines: lazy expiry on read, TTL updates, and the sweeper that reclaims expired keys.

use super::*;

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
