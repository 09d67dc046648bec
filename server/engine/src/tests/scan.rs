//! Key listing: cursors across pages and writes, and cursors only their namespace accepts.

use super::*;

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
