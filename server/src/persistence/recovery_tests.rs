//! Tests of recovery end to end: an engine logging through the sink,
//! snapshots taken while it runs, and restarts that rebuild it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::fault_fs::FaultFs;
use super::snapshot::snapshot_name;
use super::*;
use crate::engine::{Engine, EngineConfig, Expiry, ManualClock, SetOptions, SnapshotValue};

const START_MS: u64 = 1_700_000_000_000;

fn dir() -> PathBuf {
    PathBuf::from("/data")
}

fn engine(clock: &ManualClock) -> Engine {
    let mut config = EngineConfig::default();
    config.shards_per_namespace = 4;
    Engine::with_parts(config, Arc::new(clock.clone()), None)
}

/// Starts the log of `engine` on `fs` from segment `first`.
fn logged(engine: &Engine, fs: &FaultFs, first: u64) -> Arc<LogWriter> {
    let config = LogConfig::new(dir(), FsyncPolicy::Always);
    start_log(Arc::new(fs.clone()), config, engine, first)
        .expect("start log")
        .0
}

type Dump = BTreeMap<(String, Bytes), (String, u64, u64)>;

/// Every live key: its content (collections in a canonical order), its
/// deadline and its version.
fn dump(engine: &Engine) -> Dump {
    let mut all = Dump::new();
    for namespace in engine.namespaces() {
        for chunk in namespace.snapshot_reader() {
            for entry in chunk.entries {
                let content = match &entry.value {
                    SnapshotValue::String(bytes) => format!("{bytes:?}"),
                    SnapshotValue::Hash(hash) => {
                        let mut fields: Vec<_> = hash.iter().collect();
                        fields.sort();
                        format!("{fields:?}")
                    }
                    SnapshotValue::List(list) => {
                        format!("{:?}", list.range(0, -1).collect::<Vec<_>>())
                    }
                    SnapshotValue::Set(set) => {
                        let mut members: Vec<_> = set.iter().collect();
                        members.sort();
                        format!("{members:?}")
                    }
                };
                all.insert(
                    (namespace.name().to_owned(), entry.key),
                    (content, entry.expires_at_ms, entry.version),
                );
            }
        }
    }
    all
}

/// `count` random commands on `engine`, each acknowledged as the server
/// will: after the log has its records.
fn workload(
    engine: &Engine,
    writer: &LogWriter,
    clock: &ManualClock,
    rng: &mut fastrand::Rng,
    count: usize,
) {
    for _ in 0..count {
        let ns = engine
            .namespace(["alpha", "beta"][rng.usize(..2)])
            .expect("namespace");
        let key = format!("k{}", rng.u8(..16)).into_bytes();
        let small = |rng: &mut fastrand::Rng| Bytes::from(vec![b'v'; rng.usize(..60)]);
        let ttl = if rng.bool() {
            Expiry::AfterMs(rng.i64(1..500))
        } else {
            Expiry::Never
        };
        let _ = match rng.u8(..14) {
            0 | 1 => ns
                .set(
                    &key,
                    small(rng),
                    SetOptions {
                        expiry: ttl,
                        ..SetOptions::default()
                    },
                )
                .map(drop),
            2 => ns
                .increment(&key, rng.i64(-5..5), None, Expiry::Keep)
                .map(drop),
            3 => ns.delete(&[&key]).map(drop),
            4 => ns.update_expiry(&key, ttl).map(drop),
            5 => ns
                .hset(
                    &key,
                    vec![(Bytes::from(vec![rng.u8(b'a'..b'e')]), small(rng))],
                    ttl,
                )
                .map(drop),
            6 => ns.hdel(&key, &[[rng.u8(b'a'..b'e')]]).map(drop),
            7 => ns
                .push(
                    &key,
                    vec![small(rng), small(rng)],
                    rng.bool(),
                    false,
                    Expiry::Keep,
                )
                .map(drop),
            8 => ns.pop(&key, rng.usize(1..3), rng.bool()).map(drop),
            9 => ns.ltrim(&key, rng.i64(-3..3), rng.i64(-3..3)).map(drop),
            10 => ns
                .sadd(
                    &key,
                    vec![Bytes::from(vec![rng.u8(b'a'..b'h')])],
                    Expiry::Keep,
                )
                .map(drop),
            11 => ns.spop(&key, 1).map(drop),
            12 => {
                clock.advance_ms(rng.u64(1..200));
                Ok(())
            }
            _ if rng.u8(..8) == 0 => {
                ns.flush();
                Ok(())
            }
            _ => {
                engine.sweep_expired(64);
                Ok(())
            }
        };
        if let Some(position) = LogSink::take_position() {
            writer.wait(position).expect("acknowledged");
        }
    }
}

#[test]
fn snapshots_and_the_log_rebuild_the_keyspace_across_restarts() {
    for seed in 0..24 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let clock = ManualClock::new(START_MS);
        let fs = FaultFs::new(seed);
        let first = engine(&clock);
        let writer = logged(&first, &fs, 1);
        workload(&first, &writer, &clock, &mut rng, 150);
        for _ in 0..rng.usize(..3) {
            let report = take_snapshot(&fs, &dir(), &first, &writer).expect("snapshot");
            assert_eq!(report.entries as usize, dump(&first).len());
            workload(&first, &writer, &clock, &mut rng, 100);
        }
        writer.close().expect("close");

        let disk = fs.after_power_loss();
        let second = engine(&clock);
        let report = recover(&disk, &dir(), &second).expect("recover");
        assert_eq!(report.log.torn_tail, None, "seed {seed}");
        assert_eq!(dump(&first), dump(&second), "seed {seed}");

        // The second process goes on where the first stopped, and a third
        // finds what the second made.
        let writer = logged(&second, &disk, report.next_segment);
        workload(&second, &writer, &clock, &mut rng, 100);
        if rng.bool() {
            take_snapshot(&disk, &dir(), &second, &writer).expect("snapshot");
            workload(&second, &writer, &clock, &mut rng, 50);
        }
        writer.close().expect("close");
        let third = engine(&clock);
        recover(&disk.after_power_loss(), &dir(), &third).expect("recover again");
        assert_eq!(dump(&second), dump(&third), "seed {seed}");
    }
}

#[test]
fn a_snapshot_removes_the_files_it_covers() {
    let clock = ManualClock::new(START_MS);
    let fs = FaultFs::new(1);
    let engine = engine(&clock);
    let writer = logged(&engine, &fs, 1);
    let mut rng = fastrand::Rng::with_seed(1);
    workload(&engine, &writer, &clock, &mut rng, 50);
    take_snapshot(&fs, &dir(), &engine, &writer).expect("snapshot");
    workload(&engine, &writer, &clock, &mut rng, 50);
    let report = take_snapshot(&fs, &dir(), &engine, &writer).expect("snapshot");
    let mut names = fs.list(&dir()).expect("list");
    names.sort();
    assert_eq!(
        names,
        vec![
            "MANIFEST".to_string(),
            super::segment::segment_name(3),
            report.name.clone(),
        ]
    );
    assert_eq!(report.name, snapshot_name(3));
    writer.close().expect("close");
}

/// An engine after 200 random logged commands (seeded by `seed`) and a
/// snapshot of it, the log closed: the clock, the disk, the engine, the
/// snapshot's path and its bytes.
fn snapshot_of_a_workload(seed: u64) -> (ManualClock, FaultFs, Engine, PathBuf, Vec<u8>) {
    let clock = ManualClock::new(START_MS);
    let fs = FaultFs::new(seed);
    let engine_a = engine(&clock);
    let writer = logged(&engine_a, &fs, 1);
    let mut rng = fastrand::Rng::with_seed(seed);
    workload(&engine_a, &writer, &clock, &mut rng, 200);
    let report = take_snapshot(&fs, &dir(), &engine_a, &writer).expect("snapshot");
    writer.close().expect("close");
    let path = dir().join(&report.name);
    let bytes = fs.contents(&path).expect("snapshot file");
    (clock, fs, engine_a, path, bytes)
}

#[test]
fn a_damaged_or_unfinished_snapshot_stops_recovery() {
    let (clock, fs, _, path, good) = snapshot_of_a_workload(2);

    let mut flipped = good.clone();
    let middle = good.len() / 2;
    flipped[middle] ^= 0x20;
    let unfinished = good[..good.len() - 3].to_vec();
    for damaged in [flipped, unfinished] {
        fs.put(&path, damaged);
        match recover(&fs, &dir(), &engine(&clock)) {
            Err(PersistenceError::Corrupt { path: named, .. }) => assert_eq!(named, path),
            other => panic!("damage not reported: {other:?}"),
        }
    }
}

/// Runs the workload one command at a time until the disk loses power,
/// taking snapshots now and then; returns the keyspace after the last
/// acknowledged command and after the one in flight when the power went.
fn run_until_power_loss(
    engine: &Engine,
    writer: &LogWriter,
    fs: &FaultFs,
    clock: &ManualClock,
    rng: &mut fastrand::Rng,
) -> (Dump, Dump) {
    let mut acknowledged = dump(engine);
    for _ in 0..400 {
        if rng.u8(..40) == 0 && take_snapshot(fs, &dir(), engine, writer).is_err() {
            break;
        }
        workload_one(engine, clock, rng);
        let ok = LogSink::take_position().is_none_or(|position| writer.wait(position).is_ok());
        if !ok {
            return (acknowledged, dump(engine));
        }
        acknowledged = dump(engine);
    }
    (acknowledged.clone(), acknowledged)
}

/// One command of [`workload`], without its wait.
fn workload_one(engine: &Engine, clock: &ManualClock, rng: &mut fastrand::Rng) {
    let ns = engine
        .namespace(["alpha", "beta"][rng.usize(..2)])
        .expect("namespace");
    let key = format!("k{}", rng.u8(..16)).into_bytes();
    let value = Bytes::from(vec![b'v'; rng.usize(..60)]);
    let _ = match rng.u8(..8) {
        0..=2 => ns.set(&key, value, SetOptions::default()).map(drop),
        3 => ns.delete(&[&key]).map(drop),
        4 => ns
            .push(
                &key,
                vec![value],
                rng.bool(),
                false,
                Expiry::AfterMs(rng.i64(1..500)),
            )
            .map(drop),
        5 => ns
            .hset(&key, vec![(Bytes::from_static(b"f"), value)], Expiry::Keep)
            .map(drop),
        6 => {
            clock.advance_ms(rng.u64(1..200));
            Ok(())
        }
        _ => ns.update_expiry(&key, Expiry::Never).map(drop),
    };
}

#[test]
fn with_always_a_power_loss_keeps_every_acknowledged_command() {
    for seed in 0..200 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let clock = ManualClock::new(START_MS);
        let fs = FaultFs::new(seed);
        let first = engine(&clock);
        let writer = logged(&first, &fs, 1);
        fs.lose_power_after(rng.u64(1..600));
        let (acknowledged, in_flight) =
            run_until_power_loss(&first, &writer, &fs, &clock, &mut rng);
        let _ = writer.close();

        let restarted = engine(&clock);
        let report = recover(&fs.after_power_loss(), &dir(), &restarted)
            .unwrap_or_else(|error| panic!("seed {seed}: recovery failed: {error}"));
        let recovered = dump(&restarted);
        assert!(
            recovered == acknowledged || recovered == in_flight,
            "seed {seed}: recovered {recovered:?}\nacknowledged {acknowledged:?}\nreport {report:?}"
        );
    }
}

#[test]
fn a_write_through_a_handle_of_a_dropped_namespace_is_not_replayed() {
    let clock = ManualClock::new(START_MS);
    let fs = FaultFs::new(3);
    let first = engine(&clock);
    let writer = logged(&first, &fs, 1);
    let orders = first.namespace("orders").expect("namespace");
    orders
        .set(b"before", Bytes::from_static(b"1"), SetOptions::default())
        .expect("set");
    first.drop_namespace("orders").expect("drop");
    // A write that took its handle before the drop and lands after it: in
    // memory it went into the dropped keyspace and is gone.
    orders
        .set(b"late", Bytes::from_static(b"2"), SetOptions::default())
        .expect("set");
    drop(orders);
    // The namespace made again afterwards is a new, logged one.
    first
        .namespace("orders")
        .expect("namespace")
        .set(b"after", Bytes::from_static(b"3"), SetOptions::default())
        .expect("set");
    writer.sync().expect("sync");
    writer.close().expect("close");

    let second = engine(&clock);
    recover(&fs.after_power_loss(), &dir(), &second).expect("recover");
    assert_eq!(dump(&first), dump(&second));
    let orders = second.namespace("orders").expect("namespace");
    assert_eq!(orders.get(b"late").expect("get"), None);
    assert_eq!(orders.get(b"before").expect("get"), None);
    assert_eq!(
        orders.get(b"after").expect("get"),
        Some(Bytes::from_static(b"3"))
    );
}

#[test]
fn snapshots_of_format_1_still_load_and_newer_ones_are_refused() {
    let (clock, fs, engine_a, path, written) = snapshot_of_a_workload(3);
    assert_eq!(written[8], 2, "this build writes snapshot format 2");

    // Format 1 is format 2 without the namespace key counts, which are
    // only a hint: the same entries come back either way.
    let mut older = written.clone();
    older[8] = 1;
    fs.put(&path, older);
    let restored = engine(&clock);
    recover(&fs, &dir(), &restored).expect("format 1 loads");
    assert_eq!(dump(&restored), dump(&engine_a));

    let mut newer = written;
    newer[8] = 3;
    fs.put(&path, newer);
    match recover(&fs, &dir(), &engine(&clock)) {
        Err(PersistenceError::UnsupportedVersion {
            found: 3,
            supported: 2,
            ..
        }) => {}
        other => panic!("a newer format was not refused: {other:?}"),
    }
}
