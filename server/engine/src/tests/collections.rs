//! Hashes, lists and sets: types, memory, expiry, versions and snapshots.

use super::*;

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
fn a_version_left_behind_for_a_reader_is_reported_until_the_reader_lets_go() {
    let (_, _, ns) = setup();
    let fields: Vec<_> = (0..1_000)
        .map(|at| (b(&format!("field-{at}")), b("value")))
        .collect();
    ns.hset(b"h", fields, Expiry::Keep).expect("hset");
    ns.push(b"l", vec![b("a"), b("b")], false, false, Expiry::Keep)
        .expect("push");
    ns.sadd(b"s", vec![b("m"), b("n")], Expiry::Keep)
        .expect("sadd");
    assert_eq!(ns.stats().snapshot_bytes, 0);

    let hash = ns.hgetall(b"h").expect("hgetall").expect("exists");
    let list = ns.list_snapshot(b"l").expect("list").expect("exists");
    let set = ns.smembers(b"s").expect("smembers").expect("exists");
    assert_eq!(ns.stats().snapshot_bytes, 0, "reading alone copies nothing");

    ns.hset(b"h", vec![(b("field-0"), b("changed"))], Expiry::Keep)
        .expect("hset");
    let after_hash = ns.stats().snapshot_bytes;
    assert!(after_hash > 1_000 * 10, "{after_hash}");
    // Later writes change the new version in place.
    ns.hset(b"h", vec![(b("field-1"), b("changed"))], Expiry::Keep)
        .expect("hset");
    assert_eq!(ns.stats().snapshot_bytes, after_hash);
    ns.push(b"l", vec![b("c")], false, false, Expiry::Keep)
        .expect("push");
    ns.srem(b"s", &[b("m")]).expect("srem");
    assert!(ns.stats().snapshot_bytes > after_hash);

    assert_eq!(hash.get(0), Some((&b("field-0"), &b("value"))));
    drop(hash);
    drop(list);
    drop(set);
    assert_eq!(ns.stats().snapshot_bytes, 0);
}
