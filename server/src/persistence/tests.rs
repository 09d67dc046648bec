//! Tests of the persistence files: formats, the writer and reader, hand-made
//! damage, and power losses on a disk that loses unsynced bytes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use proptest::prelude::*;

use super::fault_fs::FaultFs;
use super::frame::{FILE_HEADER_BYTES, FRAME_HEADER_BYTES};
use super::record::{encode_change, encode_entry};
use super::segment::segment_name;
use super::*;
use crate::engine::{
    ChangeKind, ChangeRecord, CollectionChange, FlushRecord, HashSnapshot, ListSnapshot,
    SetSnapshot, SnapshotEntry, SnapshotValue,
};

fn dir() -> PathBuf {
    PathBuf::from("/data")
}

fn record(key: &str, sequence: u64) -> ChangeRecord {
    ChangeRecord {
        namespace: Arc::from("ns"),
        shard: 3,
        sequence,
        key: Bytes::copy_from_slice(key.as_bytes()),
        kind: ChangeKind::Set {
            value: Bytes::from_static(b"value"),
            expires_at_ms: 1_700_000_000_000,
        },
    }
}

fn writer(fs: &FaultFs, fsync: FsyncPolicy, segment_bytes: u64) -> LogWriter {
    let mut config = LogConfig::new(dir(), fsync);
    config.segment_bytes = segment_bytes;
    LogWriter::open(Arc::new(fs.clone()), config, 1).expect("open log")
}

fn append(writer: &LogWriter, change: &ChangeRecord) -> LogPosition {
    writer
        .append(|out| encode_change(change, out))
        .expect("append")
}

/// Every record of the log in `fs`, and what reading found.
fn read_all(fs: &FaultFs, first: u64) -> Result<(Vec<LogRecord>, LogReport), PersistenceError> {
    let mut records = Vec::new();
    let report = read_log(fs, &dir(), first, |record| {
        records.push(record);
        Ok(())
    })?;
    Ok((records, report))
}

fn keys(records: &[LogRecord]) -> Vec<String> {
    records
        .iter()
        .filter_map(|record| match record {
            LogRecord::Change(change) => Some(String::from_utf8_lossy(&change.key).into_owned()),
            LogRecord::Flush(_) => None,
        })
        .collect()
}

fn bytes_strategy() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn change_strategy() -> impl Strategy<Value = ChangeRecord> {
    let collection = prop_oneof![
        proptest::collection::vec((bytes_strategy(), bytes_strategy()), 0..3)
            .prop_map(|fields| CollectionChange::HashSet { fields }),
        proptest::collection::vec(bytes_strategy(), 0..3)
            .prop_map(|fields| CollectionChange::HashDeleted { fields }),
        (
            any::<bool>(),
            proptest::collection::vec(bytes_strategy(), 0..3)
        )
            .prop_map(|(front, values)| CollectionChange::ListPushed { front, values }),
        (any::<bool>(), any::<u64>())
            .prop_map(|(front, count)| CollectionChange::ListPopped { front, count }),
        (any::<u64>(), bytes_strategy())
            .prop_map(|(index, value)| CollectionChange::ListSet { index, value }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(start, end)| CollectionChange::ListTrimmed { start, end }),
        (any::<i64>(), bytes_strategy())
            .prop_map(|(count, value)| CollectionChange::ListRemoved { count, value }),
        proptest::collection::vec(bytes_strategy(), 0..3)
            .prop_map(|members| CollectionChange::SetAdded { members }),
        proptest::collection::vec(bytes_strategy(), 0..3)
            .prop_map(|members| CollectionChange::SetRemoved { members }),
    ];
    let kind = prop_oneof![
        (bytes_strategy(), any::<u64>()).prop_map(|(value, expires_at_ms)| ChangeKind::Set {
            value,
            expires_at_ms
        }),
        any::<u64>().prop_map(|expires_at_ms| ChangeKind::ExpiryChanged { expires_at_ms }),
        (collection, any::<u64>()).prop_map(|(change, expires_at_ms)| ChangeKind::Collection {
            change,
            expires_at_ms
        }),
        Just(ChangeKind::Deleted),
        Just(ChangeKind::Expired),
        Just(ChangeKind::Evicted),
    ];
    (
        "[a-z:._-]{0,8}",
        any::<u32>(),
        any::<u64>(),
        bytes_strategy(),
        kind,
    )
        .prop_map(|(namespace, shard, sequence, key, kind)| ChangeRecord {
            namespace: Arc::from(namespace.as_str()),
            shard,
            sequence,
            key,
            kind,
        })
}

proptest! {
    #[test]
    fn log_records_round_trip(change in change_strategy(), removed in any::<u64>()) {
        for record in [
            LogRecord::Change(change.clone()),
            LogRecord::Flush(FlushRecord { namespace: change.namespace.clone(), removed }),
        ] {
            let mut payload = Vec::new();
            record.encode(&mut payload);
            prop_assert_eq!(LogRecord::decode(Bytes::from(payload.clone())), Ok(record));
            // Every cut of a payload is refused, never a panic.
            for len in 0..payload.len() {
                prop_assert!(LogRecord::decode(Bytes::copy_from_slice(&payload[..len])).is_err());
            }
        }
    }

    #[test]
    fn garbage_payloads_are_refused_without_panicking(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let payload = Bytes::from(payload);
        let _ = LogRecord::decode(payload.clone());
        let _ = SnapshotRecord::decode(payload.clone());
        let _ = Manifest::decode(payload);
    }
}

#[test]
fn snapshot_records_and_manifests_round_trip() {
    let b = |text: &str| Bytes::copy_from_slice(text.as_bytes());
    let values = [
        SnapshotValue::String(b("text")),
        SnapshotValue::Hash(HashSnapshot::from_fields([
            (b("f"), b("1")),
            (b("g"), b("2")),
        ])),
        SnapshotValue::List(ListSnapshot::from_items([b("a"), b("b"), b("a")])),
        SnapshotValue::Set(SetSnapshot::from_members([b("x"), b("y")])),
    ];
    for value in values {
        let entry = SnapshotEntry {
            key: b("key"),
            value,
            expires_at_ms: 123,
            version: 456,
        };
        let mut payload = Vec::new();
        encode_entry(&entry, &mut payload);
        let Ok(SnapshotRecord::Entry(decoded)) = SnapshotRecord::decode(Bytes::from(payload))
        else {
            panic!("an entry decodes");
        };
        assert_eq!(format!("{:?}", decoded.value), format!("{:?}", entry.value));
        assert_eq!(
            (decoded.key, decoded.expires_at_ms, decoded.version),
            (entry.key, 123, 456)
        );
    }
    for record in [
        SnapshotRecord::Shard {
            namespace: Arc::from("ns"),
            shard: 7,
            shard_sequence: 99,
        },
        SnapshotRecord::End { entries: 12 },
    ] {
        let mut payload = Vec::new();
        record.encode(&mut payload);
        let decoded = SnapshotRecord::decode(Bytes::from(payload)).expect("decodes");
        assert_eq!(format!("{decoded:?}"), format!("{record:?}"));
    }
    let fs = FaultFs::new(1);
    assert!(matches!(read_manifest(&fs, &dir()), Ok(None)));
    for manifest in [
        Manifest::default(),
        Manifest {
            snapshot: Some("snapshot-00000000000000000004.snp".into()),
            first_segment: 4,
        },
    ] {
        write_manifest(&fs, &dir(), &manifest).expect("write");
        assert_eq!(read_manifest(&fs, &dir()).expect("read"), Some(manifest));
    }
}

#[test]
fn damaged_manifests_are_errors() {
    let fs = FaultFs::new(2);
    let manifest = Manifest {
        snapshot: None,
        first_segment: 9,
    };
    write_manifest(&fs, &dir(), &manifest).expect("write");
    let path = dir().join("MANIFEST");
    let good = fs.contents(&path).expect("manifest");
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x10;
    let mut versioned = good.clone();
    versioned[8] = 2;
    for (damaged, offset) in [
        (flipped, Some(FILE_HEADER_BYTES as u64)),
        (
            good[..good.len() - 1].to_vec(),
            Some(FILE_HEADER_BYTES as u64),
        ),
        (Vec::new(), Some(0)),
        (versioned, None),
    ] {
        fs.put(&path, damaged);
        match read_manifest(&fs, &dir()) {
            Err(PersistenceError::Corrupt { offset: at, .. }) => assert_eq!(Some(at), offset),
            Err(PersistenceError::UnsupportedVersion { found, .. }) => {
                assert!(offset.is_none());
                assert_eq!(found, 2);
            }
            other => panic!("damage not reported: {other:?}"),
        }
    }
}

#[test]
fn records_come_back_in_order_under_every_policy() {
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Everysec, FsyncPolicy::No] {
        let fs = FaultFs::new(3);
        let log = writer(&fs, fsync, 512);
        for at in 0..100 {
            let position = append(&log, &record(&format!("k{at}"), at + 1));
            log.wait(position).expect("acknowledged");
        }
        log.append(|out| {
            LogRecord::Flush(FlushRecord {
                namespace: Arc::from("ns"),
                removed: 100,
            })
            .encode(out)
        })
        .expect("append");
        log.close().expect("close");
        let progress = log.progress();
        assert_eq!(progress.durable, progress.appended);
        assert!(progress.segment > 1, "small segments roll");
        let (records, report) = read_all(&fs, 1).expect("read");
        assert_eq!(report.torn_tail, None);
        assert_eq!(report.records, 101);
        assert_eq!(
            keys(&records),
            (0..100).map(|at| format!("k{at}")).collect::<Vec<_>>()
        );
        assert!(matches!(records.last(), Some(LogRecord::Flush(_))));
        assert!(matches!(log.append(|_| {}), Err(PersistenceError::Closed)));
    }
}

#[test]
fn a_roll_splits_the_log_where_it_was_asked() {
    let fs = FaultFs::new(4);
    let log = writer(&fs, FsyncPolicy::No, u64::MAX);
    for at in 0..5 {
        append(&log, &record(&format!("before{at}"), at + 1));
    }
    let next = log.roll().expect("roll");
    assert_eq!(next, 2);
    for at in 0..3 {
        append(&log, &record(&format!("after{at}"), at + 10));
    }
    log.close().expect("close");
    let (records, report) = read_all(&fs, next).expect("read");
    assert_eq!(report.segments, vec![2]);
    assert_eq!(keys(&records), vec!["after0", "after1", "after2"]);
    assert_eq!(read_all(&fs, 1).expect("read").0.len(), 8);
}

#[test]
fn a_restart_continues_in_a_new_segment() {
    let fs = FaultFs::new(5);
    let log = writer(&fs, FsyncPolicy::Always, u64::MAX);
    append(&log, &record("first", 1));
    log.close().expect("close");
    let (_, report) = read_all(&fs, 1).expect("read");
    let next = report.next_segment(1);
    assert_eq!(next, 2);
    let log = LogWriter::open(
        Arc::new(fs.clone()),
        LogConfig::new(dir(), FsyncPolicy::Always),
        next,
    )
    .expect("open");
    append(&log, &record("second", 2));
    log.close().expect("close");
    let (records, report) = read_all(&fs, 1).expect("read");
    assert_eq!(report.segments, vec![1, 2]);
    assert_eq!(keys(&records), vec!["first", "second"]);
}

#[test]
fn concurrent_writers_share_one_fdatasync() {
    let fs = FaultFs::new(6);
    let log = writer(&fs, FsyncPolicy::Always, u64::MAX);
    fs.hold_syncs();
    let first = append(&log, &record("first", 1));
    std::thread::scope(|scope| {
        let log = &log;
        scope.spawn(move || log.wait(first).expect("first acknowledged"));
        // The flusher is now inside the sync of the first record.
        while fs.held_syncs() == 0 {
            std::thread::yield_now();
        }
        let mut waiters = Vec::new();
        for at in 0..100 {
            let position = append(log, &record(&format!("k{at}"), at + 2));
            waiters.push(scope.spawn(move || log.wait(position)));
        }
        // Nothing is acknowledged before its sync returns.
        assert!(log.progress().durable < first);
        fs.release_syncs();
        for waiter in waiters {
            waiter.join().expect("waiter").expect("acknowledged");
        }
    });
    // One sync for the first record, one for the hundred that queued
    // behind it.
    assert_eq!(log.progress().syncs, 2);
}

#[test]
fn a_failed_fdatasync_fails_its_waiters_and_every_later_append() {
    let fs = FaultFs::new(7);
    let log = writer(&fs, FsyncPolicy::Always, u64::MAX);
    let kept = append(&log, &record("kept", 1));
    log.wait(kept).expect("acknowledged");
    fs.fail_sync(1);
    let lost = append(&log, &record("lost", 2));
    assert!(matches!(
        log.wait(lost),
        Err(PersistenceError::WriterFailed(_))
    ));
    assert!(matches!(
        log.append(|_| {}),
        Err(PersistenceError::WriterFailed(_))
    ));
    // An earlier acknowledgement stands.
    log.wait(kept).expect("still acknowledged");
    assert!(log.close().is_err());
}

/// Writes a log of `count` records and returns the segment's bytes and
/// each frame's offset.
fn one_segment(count: u64) -> (Vec<u8>, Vec<usize>) {
    let fs = FaultFs::new(8);
    let log = writer(&fs, FsyncPolicy::No, u64::MAX);
    for at in 0..count {
        append(&log, &record(&format!("k{at}"), at + 1));
    }
    log.close().expect("close");
    let bytes = fs.contents(&dir().join(segment_name(1))).expect("segment");
    let frame = FRAME_HEADER_BYTES + {
        let mut payload = Vec::new();
        encode_change(&record("k0", 1), &mut payload);
        payload.len()
    };
    let offsets = (0..count as usize)
        .map(|at| FILE_HEADER_BYTES + at * frame)
        .collect();
    (bytes, offsets)
}

fn disk_with(segments: &[Vec<u8>]) -> FaultFs {
    let fs = FaultFs::new(9);
    for (at, bytes) in segments.iter().enumerate() {
        fs.put(&dir().join(segment_name(at as u64 + 1)), bytes.clone());
    }
    fs
}

fn corrupt_offset(result: Result<(Vec<LogRecord>, LogReport), PersistenceError>) -> (PathBuf, u64) {
    match result {
        Err(PersistenceError::Corrupt { path, offset, .. }) => (path, offset),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_truncated_last_segment_is_a_torn_tail_cut_off() {
    let (bytes, offsets) = one_segment(5);
    for cut in [
        offsets[4] + 1,
        offsets[4] + FRAME_HEADER_BYTES + 2,
        bytes.len() - 1,
    ] {
        let fs = disk_with(&[bytes[..cut].to_vec()]);
        let (records, report) = read_all(&fs, 1).expect("a torn tail is no error");
        assert_eq!(records.len(), 4);
        let torn = report.torn_tail.expect("reported");
        assert_eq!(torn.offset, offsets[4] as u64);
        assert_eq!(torn.dropped_bytes, (cut - offsets[4]) as u64);
        // Cut off for good: the next read finds nothing torn.
        let (again, report) = read_all(&fs, 1).expect("read");
        assert_eq!((again.len(), report.torn_tail), (4, None));
    }
    // Zeros where the last record should be, as a file extended before
    // its data reached the disk reads.
    let mut zeroed = bytes.clone();
    zeroed[offsets[4]..].fill(0);
    let (records, report) = read_all(&disk_with(&[zeroed]), 1).expect("torn");
    assert_eq!(records.len(), 4);
    assert!(report.torn_tail.is_some());
}

#[test]
fn a_flipped_bit_before_valid_records_is_corruption_named_by_file_and_offset() {
    let (bytes, offsets) = one_segment(5);
    for target in [offsets[1], offsets[2] + FRAME_HEADER_BYTES + 3] {
        let mut flipped = bytes.clone();
        flipped[target] ^= 0x04;
        let (path, offset) = corrupt_offset(read_all(&disk_with(&[flipped]), 1));
        assert_eq!(path, dir().join(segment_name(1)));
        let frame = offsets
            .iter()
            .rev()
            .find(|at| **at <= target)
            .expect("frame");
        assert_eq!(offset, *frame as u64);
    }
    // In a segment before the last, even the last record's damage is
    // corruption: segments are synced before the next one begins.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let (path, offset) = corrupt_offset(read_all(&disk_with(&[flipped, bytes.clone()]), 1));
    assert_eq!(path, dir().join(segment_name(1)));
    assert_eq!(offset, offsets[4] as u64);
}

#[test]
fn wrong_versions_empty_files_and_gaps_are_told_apart() {
    let (bytes, _) = one_segment(2);
    let mut versioned = bytes.clone();
    versioned[8] = 7;
    match read_all(&disk_with(&[versioned]), 1) {
        Err(PersistenceError::UnsupportedVersion { found: 7, path, .. }) => {
            assert_eq!(path, dir().join(segment_name(1)));
        }
        other => panic!("expected a version error, got {other:?}"),
    }
    let mut foreign = bytes.clone();
    foreign[..8].copy_from_slice(b"NOTSHOAL");
    assert_eq!(corrupt_offset(read_all(&disk_with(&[foreign]), 1)).1, 0);

    // An empty last segment is one whose creation a crash cut short.
    let fs = disk_with(&[bytes.clone(), Vec::new()]);
    let (records, report) = read_all(&fs, 1).expect("torn");
    assert_eq!(records.len(), 2);
    assert_eq!(report.segments, vec![1]);
    assert_eq!(report.torn_tail.expect("reported").offset, 0);
    assert_eq!(fs.contents(&dir().join(segment_name(2))), None);
    // An empty segment before the last is not.
    let (path, offset) = corrupt_offset(read_all(&disk_with(&[Vec::new(), bytes.clone()]), 1));
    assert_eq!((path, offset), (dir().join(segment_name(1)), 0));

    let fs = disk_with(std::slice::from_ref(&bytes));
    fs.put(&dir().join(segment_name(3)), bytes.clone());
    let (path, _) = corrupt_offset(read_all(&fs, 1));
    assert_eq!(path, dir().join(segment_name(2)));
    // The first segment the manifest names is missing too.
    let fs = FaultFs::new(10);
    fs.put(&dir().join(segment_name(5)), bytes);
    let (path, _) = corrupt_offset(read_all(&fs, 4));
    assert_eq!(path, dir().join(segment_name(4)));
}

/// One run of writers against a disk that loses power at a random
/// moment; returns the keys acknowledged.
fn run_until_power_loss(fs: &FaultFs, seed: u64) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    fs.lose_power_after(rng.u64(1..150));
    if rng.u8(..4) == 0 {
        fs.fail_sync(rng.u64(1..8));
    }
    let mut config = LogConfig::new(dir(), FsyncPolicy::Always);
    config.segment_bytes = rng.u64(200..3_000);
    let Ok(log) = LogWriter::open(Arc::new(fs.clone()), config, 1) else {
        return Vec::new();
    };
    let acknowledged = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for writer in 0..3 {
            let (log, acknowledged) = (&log, &acknowledged);
            scope.spawn(move || {
                for at in 0..40u64 {
                    let key = format!("w{writer}-{at}");
                    let Ok(position) = log.append(|out| encode_change(&record(&key, at + 1), out))
                    else {
                        return;
                    };
                    if log.wait(position).is_err() {
                        return;
                    }
                    acknowledged.lock().push(key);
                }
            });
        }
    });
    let _ = log.close();
    acknowledged.into_inner()
}

#[test]
fn with_always_no_acknowledged_record_is_lost_across_a_thousand_power_losses() {
    let (mut torn_tails, mut total) = (0, 0);
    for seed in 0..1_000 {
        let fs = FaultFs::new(seed);
        let acknowledged = run_until_power_loss(&fs, seed);
        let restarted = fs.after_power_loss();
        let (records, report) = read_all(&restarted, 1)
            .unwrap_or_else(|error| panic!("seed {seed}: recovery failed: {error}"));
        torn_tails += usize::from(report.torn_tail.is_some());
        total += acknowledged.len();
        let found: HashSet<String> = keys(&records).into_iter().collect();
        for key in &acknowledged {
            assert!(found.contains(key), "seed {seed}: acknowledged {key} lost");
        }
        // Recovery left a clean log: read again, it holds the same.
        let (again, report) = read_all(&restarted, 1).expect("read again");
        assert_eq!((again.len(), report.torn_tail), (records.len(), None));
    }
    // The runs did tear writes, or they tested little.
    assert!(torn_tails > 50, "only {torn_tails} torn tails");
    assert!(total > 10_000, "only {total} records acknowledged");
}

#[test]
fn the_real_file_system_round_trips_a_log_and_a_manifest() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir: &Path = temp.path();
    let fs: Arc<dyn FileSystem> = Arc::new(OsFileSystem);
    let log = LogWriter::open(Arc::clone(&fs), LogConfig::new(dir, FsyncPolicy::Always), 1)
        .expect("open");
    for at in 0..10 {
        let position = append(&log, &record(&format!("k{at}"), at + 1));
        log.wait(position).expect("durable");
    }
    log.sync().expect("sync");
    log.close().expect("close");
    let mut count = 0;
    let report = read_log(fs.as_ref(), dir, 1, |_| {
        count += 1;
        Ok(())
    })
    .expect("read");
    assert_eq!((count, report.torn_tail), (10, None));
    let manifest = Manifest {
        snapshot: None,
        first_segment: 1,
    };
    write_manifest(fs.as_ref(), dir, &manifest).expect("write manifest");
    assert_eq!(
        read_manifest(fs.as_ref(), dir).expect("read"),
        Some(manifest)
    );
}

#[test]
fn with_everysec_the_waiting_writer_writes_its_own_record() {
    let fs = FaultFs::new(8);
    let log = writer(&fs, FsyncPolicy::Everysec, u64::MAX);
    let position = append(&log, &record("mine", 1));
    // Handed to the kernel by this call, on this thread: no flusher
    // round trip, and nothing synced.
    assert!(log.write_through(position));
    assert!(log.progress().written >= position);
    assert_eq!(log.progress().durable, 0);
    let (records, _) = read_all(&fs, 1).expect("read");
    assert_eq!(keys(&records), vec!["mine"]);
}

#[test]
fn with_always_writing_through_only_looks() {
    let fs = FaultFs::new(9);
    let log = writer(&fs, FsyncPolicy::Always, u64::MAX);
    fs.hold_syncs();
    let position = append(&log, &record("synced", 1));
    // The flusher holds the record inside its sync: not acknowledged yet,
    // and the caller does not write or sync it itself.
    while fs.held_syncs() == 0 {
        std::thread::yield_now();
    }
    assert!(!log.write_through(position));
    fs.release_syncs();
    log.wait(position).expect("acknowledged after its sync");
    assert!(log.write_through(position));
}

#[test]
fn records_nobody_waits_for_still_reach_the_kernel() {
    let fs = FaultFs::new(10);
    let log = writer(&fs, FsyncPolicy::No, u64::MAX);
    // Both appends land while the flusher ticks and after it fell asleep.
    for (at, key) in ["early", "late"].into_iter().enumerate() {
        let position = append(&log, &record(key, at as u64 + 1));
        eventually(|| log.progress().written >= position);
        eventually(|| log.flusher_is_asleep());
    }
    let (records, _) = read_all(&fs, 1).expect("read");
    assert_eq!(keys(&records), vec!["early", "late"]);
}

/// Waits for `condition`, failing the test after a minute rather than
/// hanging it.
fn eventually(condition: impl Fn() -> bool) {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !condition() {
        assert!(
            std::time::Instant::now() < give_up,
            "the condition never held"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn the_listener_hears_every_acknowledgement_and_the_end() {
    let fs = FaultFs::new(11);
    let heard = Arc::new(Mutex::new(Vec::new()));
    let listener: LogListener = {
        let heard = Arc::clone(&heard);
        Box::new(move |ack| heard.lock().push(ack))
    };
    let log = LogWriter::open_with_listener(
        Arc::new(fs.clone()),
        LogConfig::new(dir(), FsyncPolicy::Always),
        1,
        Some(listener),
    )
    .expect("open log");
    let first = append(&log, &record("first", 1));
    log.wait(first).expect("acknowledged");
    let second = append(&log, &record("second", 2));
    log.wait(second).expect("acknowledged");
    log.close().expect("close");
    let heard = heard.lock();
    let upto: Vec<u64> = heard
        .iter()
        .filter_map(|ack| match ack {
            LogAck::Upto(position) => Some(*position),
            LogAck::Stopped(_) => None,
        })
        .collect();
    assert!(upto.windows(2).all(|pair| pair[0] < pair[1]), "{upto:?}");
    assert!(upto.contains(&first) && upto.last() == Some(&second));
    assert!(matches!(
        heard.last(),
        Some(LogAck::Stopped(PersistenceError::Closed))
    ));
}

#[test]
fn a_failed_write_through_fails_its_waiter_the_listener_and_later_appends() {
    let fs = FaultFs::new(12);
    let stopped = Arc::new(Mutex::new(None));
    let listener: LogListener = {
        let stopped = Arc::clone(&stopped);
        Box::new(move |ack| {
            if let LogAck::Stopped(error) = ack {
                *stopped.lock() = Some(error);
            }
        })
    };
    let log = LogWriter::open_with_listener(
        Arc::new(fs.clone()),
        LogConfig::new(dir(), FsyncPolicy::Everysec),
        1,
        Some(listener),
    )
    .expect("open log");
    let kept = append(&log, &record("kept", 1));
    assert!(log.write_through(kept));
    fs.lose_power_after(1);
    let lost = append(&log, &record("lost", 2));
    assert!(matches!(
        log.wait(lost),
        Err(PersistenceError::WriterFailed(_))
    ));
    assert!(matches!(*stopped.lock(), Some(PersistenceError::Io { .. })));
    assert!(matches!(
        log.append(|_| {}),
        Err(PersistenceError::WriterFailed(_))
    ));
    log.wait(kept).expect("an earlier acknowledgement stands");
}

#[test]
fn namespace_key_counts_round_trip_and_sit_anywhere_in_a_repair() {
    let record = SnapshotRecord::Namespace {
        namespace: Arc::from("ns"),
        keys: 1 << 40,
    };
    let mut out = Vec::new();
    record.encode(&mut out);
    match SnapshotRecord::decode(Bytes::from(out)).expect("decodes") {
        SnapshotRecord::Namespace { namespace, keys } => {
            assert_eq!((&*namespace, keys), ("ns", 1 << 40));
        }
        other => panic!("decoded as {other:?}"),
    }
}
