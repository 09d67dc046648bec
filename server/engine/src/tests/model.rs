//! The engine against a simple model of strings with deadlines, on random operations.

use super::*;

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
