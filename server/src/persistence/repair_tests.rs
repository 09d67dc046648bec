//! Repairs of hand-made damage: after each, recovery succeeds and holds
//! what was salvaged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::engine::{Engine, EngineConfig, SetOptions};
use crate::persistence::fault_fs::FaultFs;
use crate::persistence::frame::FORMAT_VERSION;
use crate::persistence::recovery::{recover, start_log, take_snapshot};
use crate::persistence::writer::{FsyncPolicy, LogConfig};

fn dir() -> PathBuf {
    PathBuf::from("/data")
}

fn engine() -> Engine {
    let mut config = EngineConfig::default();
    config.shards_per_namespace = 4;
    Engine::new(config)
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("value-{i}-{}", "x".repeat(i % 50)))
}

/// A data directory whose log holds `first` keys in segment 1 and
/// `second` more in segment 2, after a snapshot of the first ones when
/// `snapshot` is set.
fn data_dir(first: usize, second: usize, snapshot: bool) -> FaultFs {
    let fs = FaultFs::new(7);
    let engine = engine();
    let (writer, _) = start_log(
        Arc::new(fs.clone()),
        LogConfig::new(dir(), FsyncPolicy::Always),
        &engine,
        1,
    )
    .expect("start log");
    let namespace = engine.namespace("default").expect("namespace");
    for i in 0..first {
        namespace
            .set(&key(i), value(i), SetOptions::default())
            .expect("set");
    }
    if snapshot {
        take_snapshot(&fs, &dir(), &engine, &writer).expect("snapshot");
    } else {
        writer.roll().expect("roll");
    }
    for i in first..first + second {
        namespace
            .set(&key(i), value(i), SetOptions::default())
            .expect("set");
    }
    writer.close().expect("close");
    fs
}

/// The keys `fs` recovers, each checked against the value it was written
/// with.
fn recovered(fs: &FaultFs) -> Result<Vec<usize>, PersistenceError> {
    let engine = engine();
    recover(fs, &dir(), &engine)?;
    let namespace = engine.namespace("default").expect("namespace");
    let mut keys = Vec::new();
    for i in 0..1000 {
        if let Some(found) = namespace.get(&key(i)).expect("get") {
            assert_eq!(found, value(i), "key {i}");
            keys.push(i);
        }
    }
    Ok(keys)
}

fn segment(number: u64) -> PathBuf {
    dir().join(segment_name(number))
}

/// File offsets of the frames of a log segment.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = FILE_HEADER_BYTES;
    while let FrameRead::Frame { next, .. } = read_frame(bytes, at) {
        offsets.push(at);
        at = next;
    }
    offsets
}

fn repair(fs: &FaultFs) -> RepairPlan {
    let plan = plan_repair(fs, &dir()).expect("plan");
    apply_repair(fs, &plan).expect("repair");
    plan
}

fn action(plan: &RepairPlan, path: &Path) -> FileAction {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .expect("name");
    plan.files
        .iter()
        .find(|file| file.name == name)
        .map(|file| file.action.clone())
        .unwrap_or_else(|| panic!("{name} not in the plan: {plan}"))
}

#[test]
fn an_intact_directory_needs_no_repair() {
    let fs = data_dir(20, 20, true);
    let plan = plan_repair(&fs, &dir()).expect("plan");
    assert!(!plan.needs_repair(), "{plan}");
    assert_eq!(
        recovered(&fs).expect("recover"),
        (0..40).collect::<Vec<_>>()
    );
}

#[test]
fn a_flipped_bit_keeps_the_records_before_it_and_drops_the_later_segments() {
    let fs = data_dir(100, 30, false);
    let bytes = fs.contents(&segment(1)).expect("segment");
    let offsets = frame_offsets(&bytes);
    let mut damaged = bytes.clone();
    damaged[offsets[40] + 20] ^= 0x04;
    fs.put(&segment(1), damaged.clone());
    assert!(matches!(
        recovered(&fs),
        Err(PersistenceError::Corrupt { offset, .. }) if offset == offsets[40] as u64
    ));

    // The plan changes nothing.
    let plan = plan_repair(&fs, &dir()).expect("plan");
    assert_eq!(fs.contents(&segment(1)), Some(damaged.clone()));
    assert!(plan.needs_repair());
    assert_eq!(
        action(&plan, &segment(1)),
        FileAction::Salvage {
            offset: offsets[40] as u64,
            reason: "payload checksum mismatch".into(),
            kept: 40,
            dropped: 59,
            dropped_bytes: (bytes.len() - offsets[40]) as u64,
        }
    );
    assert!(matches!(
        action(&plan, &segment(2)),
        FileAction::Drop { .. }
    ));

    repair(&fs);
    assert_eq!(
        recovered(&fs).expect("recover"),
        (0..40).collect::<Vec<_>>()
    );
    let aside = |path: &Path| PathBuf::from(format!("{}{DAMAGED_SUFFIX}", path.display()));
    assert_eq!(fs.contents(&aside(&segment(1))), Some(damaged));
    assert!(fs.contents(&aside(&segment(2))).is_some());
    assert!(!plan_repair(&fs, &dir()).expect("plan").needs_repair());
}

#[test]
fn a_truncated_segment_before_the_last_is_cut() {
    let fs = data_dir(60, 10, false);
    let bytes = fs.contents(&segment(1)).expect("segment");
    let offsets = frame_offsets(&bytes);
    fs.put(&segment(1), bytes[..offsets[25] + 7].to_vec());
    assert!(recovered(&fs).is_err());
    repair(&fs);
    assert_eq!(
        recovered(&fs).expect("recover"),
        (0..25).collect::<Vec<_>>()
    );
}

#[test]
fn a_wrong_version_or_an_empty_segment_is_dropped_with_what_follows() {
    for damage in ["version", "empty"] {
        let fs = data_dir(30, 10, false);
        let mut bytes = fs.contents(&segment(1)).expect("segment");
        if damage == "version" {
            bytes[8] = (FORMAT_VERSION + 1) as u8;
        } else {
            bytes.clear();
        }
        fs.put(&segment(1), bytes);
        assert!(recovered(&fs).is_err(), "{damage}");
        let plan = repair(&fs);
        assert!(
            matches!(action(&plan, &segment(1)), FileAction::Drop { .. }),
            "{plan}"
        );
        assert!(
            matches!(action(&plan, &segment(2)), FileAction::Drop { .. }),
            "{plan}"
        );
        assert_eq!(
            recovered(&fs).expect("recover"),
            Vec::<usize>::new(),
            "{damage}"
        );
    }
}

#[test]
fn a_damaged_snapshot_keeps_its_other_entries_and_the_log_after_it() {
    let fs = data_dir(200, 20, true);
    let name = snapshot_name_in(&fs);
    let path = dir().join(&name);
    let bytes = fs.contents(&path).expect("snapshot");
    let mut damaged = bytes.clone();
    let middle = bytes.len() / 2;
    damaged[middle] ^= 0x40;
    fs.put(&path, damaged);
    assert!(recovered(&fs).is_err());
    let plan = repair(&fs);
    let FileAction::Salvage { kept, .. } = action(&plan, &path) else {
        panic!("{plan}");
    };
    // One entry or one shard record's worth of entries is lost, no more
    // than the shard it was in: with 4 shards a shard holds about 50 of the
    // 200 keys (which shard depends on the process's hash seed), and more
    // than 100 is beyond eight standard deviations.
    assert!((100..200).contains(&kept), "{plan}");
    let keys = recovered(&fs).expect("recover");
    assert_eq!(keys.len() as u64, kept + 20);
    assert!(keys.ends_with(&(200..220).collect::<Vec<_>>()));
}

#[test]
fn a_damaged_manifest_is_rebuilt_from_the_files() {
    let fs = data_dir(50, 5, true);
    let path = dir().join(MANIFEST_NAME);
    let mut bytes = fs.contents(&path).expect("manifest");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs.put(&path, bytes);
    assert!(recovered(&fs).is_err());
    let plan = repair(&fs);
    assert_eq!(
        plan.new_manifest,
        Some(Manifest {
            snapshot: Some(snapshot_name_in(&fs)),
            first_segment: 2,
        })
    );
    assert_eq!(
        recovered(&fs).expect("recover"),
        (0..55).collect::<Vec<_>>()
    );
}

fn snapshot_name_in(fs: &FaultFs) -> String {
    fs.list(&dir())
        .expect("list")
        .into_iter()
        .find(|name| name.ends_with(".snp"))
        .expect("a snapshot")
}
