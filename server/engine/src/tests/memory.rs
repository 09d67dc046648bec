//! Memory given back and the layout that keeps entries small.

use super::*;

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
