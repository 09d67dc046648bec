//! Salvaging a damaged data directory: what `shoal-server repair` does.
//!
//! Recovery refuses damage other than a torn tail, naming the file and the
//! offset, because carrying on silently could bring back deleted keys or
//! lose acknowledged ones. An operator who accepts losing what is damaged
//! runs the repair, with the server stopped. [`plan_repair`] only reads and
//! says what it would do; [`apply_repair`] does it. The rule for each kind
//! of file:
//!
//! - **Log segments** are kept up to the first damage and cut there; every
//!   later segment is dropped. Replaying records past a lost one could
//!   undo history (a lost delete brings a key back; a list change replayed
//!   on another base changes the wrong element), so what survives is a
//!   prefix of the history, consistent as of the damage. The frames are
//!   checksummed with their lengths, so the valid records past the damage
//!   can be found and counted; they are reported, not replayed.
//! - **Snapshots** hold one self-contained entry per key, so a damaged one
//!   is resynchronised: entries before the damage are kept, the damaged
//!   bytes skipped up to the next valid frame, and entries kept again from
//!   the next shard record on (the entries between belong to a namespace
//!   the damage may have hidden). The keys skipped are lost unless the log
//!   after the snapshot writes them again.
//! - **The manifest**, when damaged or naming a snapshot that is missing,
//!   is rebuilt from the files present: the newest snapshot that can be
//!   read, and the log from its number on.
//!
//! Nothing is deleted: every damaged original is renamed to
//! `NAME.damaged`, and a salvaged copy takes its name. Recovery ignores
//! files of that name. A damaged file is read whole to look past the
//! damage; intact ones are only streamed.

use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::error::PersistenceError;
use super::frame::{ChunkEnd, FILE_HEADER_BYTES, FileKind, FrameRead, FrameReader, HeaderCheck};
use super::frame::{OpenedFrames, append_frame, find_valid_frame_after, read_frame};
use super::fs::FileSystem;
use super::manifest::{read_manifest, write_manifest};
use super::record::{LogRecord, Manifest, SnapshotRecord};
use super::segment::{MANIFEST_NAME, parse_segment_name, segment_name, segment_numbers};
use super::snapshot::parse_snapshot_name;

/// The suffix a damaged original is renamed with.
pub const DAMAGED_SUFFIX: &str = ".damaged";

/// What the repair does to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAction {
    /// Intact: left as it is.
    Keep {
        /// Records it holds.
        records: u64,
    },
    /// Damaged at `offset`: a copy of what is kept replaces it.
    Salvage {
        /// Where the first damage is.
        offset: u64,
        /// What is wrong there.
        reason: String,
        /// Records the copy keeps.
        kept: u64,
        /// Valid records found after the damage and not kept.
        dropped: u64,
        /// Bytes not kept.
        dropped_bytes: u64,
    },
    /// Moved aside whole: nothing in it is kept.
    Drop {
        /// Why.
        reason: String,
    },
}

/// One file of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRepair {
    /// The file's name in the data directory.
    pub name: String,
    /// What happens to it.
    pub action: FileAction,
}

/// What a repair finds and does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairPlan {
    /// The data directory.
    pub dir: PathBuf,
    /// Every file the state is made of, and the ones dropped.
    pub files: Vec<FileRepair>,
    /// The manifest to write, when the current one is damaged or must
    /// change; `None` when it stays.
    pub new_manifest: Option<Manifest>,
    /// Why the manifest is rewritten.
    pub manifest_reason: Option<String>,
}

impl RepairPlan {
    /// Whether anything is damaged.
    pub fn needs_repair(&self) -> bool {
        self.new_manifest.is_some()
            || self
                .files
                .iter()
                .any(|file| !matches!(file.action, FileAction::Keep { .. }))
    }
}

impl fmt::Display for RepairPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            match &file.action {
                FileAction::Keep { records } => {
                    writeln!(f, "{}: intact, {records} records kept", file.name)?;
                }
                FileAction::Salvage {
                    offset,
                    reason,
                    kept,
                    dropped,
                    dropped_bytes,
                } => writeln!(
                    f,
                    "{}: damaged at offset {offset} ({reason}): keeps the {kept} records before \
                     it; drops {dropped_bytes} bytes, in which {dropped} valid records follow the \
                     damage",
                    file.name
                )?,
                FileAction::Drop { reason } => {
                    writeln!(f, "{}: dropped whole ({reason})", file.name)?;
                }
            }
        }
        if let (Some(manifest), Some(reason)) = (&self.new_manifest, &self.manifest_reason) {
            writeln!(
                f,
                "{MANIFEST_NAME}: rewritten ({reason}): snapshot {}, log from segment {}",
                manifest.snapshot.as_deref().unwrap_or("none"),
                manifest.first_segment
            )?;
        }
        Ok(())
    }
}

/// How a file's frames check out.
struct Scan {
    /// Records of the valid prefix.
    records: u64,
    /// The first damage, if any: its offset and what it is.
    damage: Option<(u64, String)>,
}

/// Streams the frames of `path`, checking each record with `check`, up to
/// the first damage.
fn scan(
    fs: &dyn FileSystem,
    path: &Path,
    kind: FileKind,
    mut check: impl FnMut(Bytes) -> Result<(), String>,
) -> Result<Scan, PersistenceError> {
    let read_error = |error| PersistenceError::io("read", path, error);
    let OpenedFrames {
        mut frames, header, ..
    } = FrameReader::open(fs.open(path).map_err(read_error)?, kind).map_err(read_error)?;
    match header {
        HeaderCheck::Valid => {}
        HeaderCheck::WrongVersion(found) => {
            return Ok(Scan {
                records: 0,
                damage: Some((
                    0,
                    format!("format version {found}, which this build cannot read"),
                )),
            });
        }
        HeaderCheck::Missing | HeaderCheck::WrongMagic => {
            return Ok(Scan {
                records: 0,
                damage: Some((0, "no valid file header".into())),
            });
        }
    }
    let mut records = 0;
    loop {
        let chunk = frames.next_chunk().map_err(read_error)?;
        for payload in &chunk.payloads {
            if let Err(reason) = check(Bytes::copy_from_slice(&chunk.bytes[payload.clone()])) {
                return Ok(Scan {
                    records,
                    damage: Some((chunk.frame_offset(payload), reason)),
                });
            }
            records += 1;
        }
        match chunk.end {
            ChunkEnd::More => {}
            ChunkEnd::End => {
                return Ok(Scan {
                    records,
                    damage: None,
                });
            }
            ChunkEnd::Bad { offset, reason, .. } => {
                return Ok(Scan {
                    records,
                    damage: Some((offset, reason)),
                });
            }
        }
    }
}

/// Checks a snapshot's records: shard records before entries, one end
/// record, last, whose count agrees.
fn scan_snapshot(fs: &dyn FileSystem, path: &Path) -> Result<Scan, PersistenceError> {
    let mut entries = 0u64;
    let mut in_shard = false;
    let mut ended = false;
    let mut scanned = scan(fs, path, FileKind::Snapshot, |payload| {
        if ended {
            return Err("a record after the end record".into());
        }
        match SnapshotRecord::decode(payload)? {
            SnapshotRecord::Namespace { .. } => {}
            SnapshotRecord::Shard { .. } => in_shard = true,
            SnapshotRecord::Entry(_) if !in_shard => {
                return Err("an entry before any shard record".into());
            }
            SnapshotRecord::Entry(_) => entries += 1,
            SnapshotRecord::End { entries: counted } if counted != entries => {
                return Err(format!(
                    "the end record counts {counted} entries, {entries} were read"
                ));
            }
            SnapshotRecord::End { .. } => ended = true,
        }
        Ok(())
    })?;
    if scanned.damage.is_none() && !ended {
        let end = fs
            .read(path)
            .map_err(|error| PersistenceError::io("read", path, error))?
            .len();
        scanned.damage = Some((end as u64, "no end record".into()));
    }
    Ok(scanned)
}

fn read_whole(fs: &dyn FileSystem, path: &Path) -> Result<Vec<u8>, PersistenceError> {
    fs.read(path)
        .map_err(|error| PersistenceError::io("read", path, error))
}

/// Valid frames from `at` on, found by resynchronising past each bad one.
fn frames_after(bytes: &[u8], mut at: usize) -> u64 {
    let mut found = 0;
    while let Some(next) = find_valid_frame_after(bytes, at) {
        at = next;
        while let FrameRead::Frame { next, .. } = read_frame(bytes, at) {
            found += 1;
            at = next;
        }
    }
    found
}

/// The salvaged copy of a damaged log segment: its header and the frames
/// before `offset`.
fn salvage_log(bytes: &[u8], offset: u64) -> (Vec<u8>, u64) {
    let cut = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    if cut < FILE_HEADER_BYTES {
        return (Vec::new(), 0);
    }
    (bytes[..cut].to_vec(), frames_after(bytes, cut))
}

/// What a snapshot's salvaged copy holds.
struct SnapshotSalvage {
    file: Vec<u8>,
    kept: u64,
    dropped: u64,
    dropped_bytes: u64,
}

/// The salvaged copy of a damaged snapshot, resynchronised past each
/// damage (see the module docs), with an end record of its own.
fn salvage_snapshot(bytes: &[u8]) -> SnapshotSalvage {
    let mut file = Vec::with_capacity(bytes.len());
    file.extend_from_slice(&bytes[..FILE_HEADER_BYTES.min(bytes.len())]);
    let mut salvage = SnapshotSalvage {
        file: Vec::new(),
        kept: 0,
        dropped: 0,
        dropped_bytes: 0,
    };
    let mut at = FILE_HEADER_BYTES;
    let mut in_shard = false;
    while at < bytes.len() {
        let record = match read_frame(bytes, at) {
            FrameRead::Frame { payload, next } => {
                SnapshotRecord::decode(Bytes::copy_from_slice(&bytes[payload]))
                    .ok()
                    .map(|record| (record, next))
            }
            FrameRead::End => break,
            FrameRead::Bad { .. } => None,
        };
        match record {
            Some((SnapshotRecord::End { .. }, next)) => {
                salvage.dropped_bytes += (bytes.len() - next) as u64;
                break;
            }
            Some((record, next)) => {
                let keep = match record {
                    SnapshotRecord::Shard { .. } => {
                        in_shard = true;
                        true
                    }
                    // A hint, valid wherever it is.
                    SnapshotRecord::Namespace { .. } => true,
                    _ => in_shard,
                };
                if keep {
                    file.extend_from_slice(&bytes[at..next]);
                    if matches!(record, SnapshotRecord::Entry(_)) {
                        salvage.kept += 1;
                    }
                } else {
                    salvage.dropped += 1;
                    salvage.dropped_bytes += (next - at) as u64;
                }
                at = next;
            }
            None => {
                // The damaged bytes, up to the next valid frame: the
                // entries after it belong to a namespace the damage may
                // have hidden, until the next shard record.
                in_shard = false;
                let next = find_valid_frame_after(bytes, at).unwrap_or(bytes.len());
                salvage.dropped_bytes += (next - at) as u64;
                at = next;
            }
        }
    }
    let end = SnapshotRecord::End {
        entries: salvage.kept,
    };
    append_frame(&mut file, |out| end.encode(out));
    salvage.file = file;
    salvage
}

/// Looks at the data directory `dir` and says what a repair would do,
/// changing nothing.
///
/// # Errors
/// [`PersistenceError::Io`] when a file cannot be read.
pub fn plan_repair(fs: &dyn FileSystem, dir: &Path) -> Result<RepairPlan, PersistenceError> {
    let names = fs
        .list(dir)
        .map_err(|error| PersistenceError::io("list", dir, error))?;
    let mut plan = RepairPlan {
        dir: dir.to_path_buf(),
        files: Vec::new(),
        new_manifest: None,
        manifest_reason: None,
    };
    let (manifest, manifest_trouble) = match read_manifest(fs, dir) {
        Ok(Some(manifest)) => match &manifest.snapshot {
            Some(snapshot) if !names.contains(snapshot) => {
                (None, Some(format!("it names {snapshot}, which is missing")))
            }
            _ => (Some(manifest), None),
        },
        Ok(None) => (Some(Manifest::default()), None),
        Err(
            error
            @ (PersistenceError::Corrupt { .. } | PersistenceError::UnsupportedVersion { .. }),
        ) => (None, Some(format!("{error}"))),
        Err(error) => return Err(error),
    };
    let manifest = match manifest {
        Some(manifest) => manifest,
        None => {
            // The newest snapshot that holds anything, else the log alone.
            let mut snapshots: Vec<(u64, &String)> = names
                .iter()
                .filter_map(|name| parse_snapshot_name(name).map(|number| (number, name)))
                .collect();
            snapshots.sort_unstable_by(|a, b| b.cmp(a));
            let mut rebuilt = Manifest {
                snapshot: None,
                first_segment: segment_numbers(&names).first().copied().unwrap_or(1),
            };
            for (number, name) in snapshots {
                let scanned = scan_snapshot(fs, &dir.join(name))?;
                if scanned.damage.is_none() || scanned.records > 0 {
                    rebuilt = Manifest {
                        snapshot: Some(name.clone()),
                        first_segment: number,
                    };
                    break;
                }
            }
            plan.manifest_reason = manifest_trouble;
            plan.new_manifest = Some(rebuilt.clone());
            rebuilt
        }
    };

    if let Some(name) = &manifest.snapshot {
        let path = dir.join(name);
        let scanned = scan_snapshot(fs, &path)?;
        let action = match scanned.damage {
            None => FileAction::Keep {
                records: scanned.records,
            },
            // A header that is not this format's: nothing in it can be
            // trusted. The log after it still holds.
            Some((0, reason)) => {
                plan.new_manifest = Some(Manifest {
                    snapshot: None,
                    first_segment: manifest.first_segment,
                });
                plan.manifest_reason = Some(format!("{name} cannot be read"));
                FileAction::Drop { reason }
            }
            Some((offset, reason)) => {
                let salvage = salvage_snapshot(&read_whole(fs, &path)?);
                FileAction::Salvage {
                    offset,
                    reason,
                    kept: salvage.kept,
                    dropped: salvage.dropped,
                    dropped_bytes: salvage.dropped_bytes,
                }
            }
        };
        plan.files.push(FileRepair {
            name: name.clone(),
            action,
        });
    }

    let first = manifest.first_segment.max(1);
    let mut cut: Option<String> = None;
    let mut expected = first;
    for number in segment_numbers(&names)
        .into_iter()
        .filter(|number| *number >= first)
    {
        let name = segment_name(number);
        if let Some(reason) = &cut {
            plan.files.push(FileRepair {
                name,
                action: FileAction::Drop {
                    reason: reason.clone(),
                },
            });
            continue;
        }
        if number != expected {
            let reason = format!("segment {expected} before it is missing");
            plan.files.push(FileRepair {
                name,
                action: FileAction::Drop {
                    reason: reason.clone(),
                },
            });
            cut = Some(reason);
            continue;
        }
        expected += 1;
        let path = dir.join(&name);
        let scanned = scan(fs, &path, FileKind::Log, |payload| {
            LogRecord::decode(payload).map(drop)
        })?;
        let Some((offset, reason)) = scanned.damage else {
            plan.files.push(FileRepair {
                name,
                action: FileAction::Keep {
                    records: scanned.records,
                },
            });
            continue;
        };
        let bytes = read_whole(fs, &path)?;
        let (kept, dropped) = salvage_log(&bytes, offset);
        let action = if kept.is_empty() {
            FileAction::Drop {
                reason: format!("damaged at offset {offset}: {reason}"),
            }
        } else {
            FileAction::Salvage {
                offset,
                reason,
                kept: scanned.records,
                dropped,
                dropped_bytes: bytes.len() as u64 - offset,
            }
        };
        plan.files.push(FileRepair { name, action });
        cut = Some(format!(
            "it follows the damage in {}, and replaying it without the records lost there \
             could undo what they did",
            segment_name(number)
        ));
    }
    Ok(plan)
}

/// Carries out `plan` (from [`plan_repair`] on the same directory, with
/// nothing written since): salvaged copies replace damaged files, the
/// originals are renamed to `NAME.damaged`, and the manifest is rewritten
/// if the plan says so, each step durable before the next.
///
/// # Errors
/// [`PersistenceError::Io`]; the files already handled stay so, and a
/// new plan picks up from there.
pub fn apply_repair(fs: &dyn FileSystem, plan: &RepairPlan) -> Result<(), PersistenceError> {
    let dir = &plan.dir;
    let sync_dir = || {
        fs.sync_dir(dir)
            .map_err(|error| PersistenceError::io("fsync directory", dir, error))
    };
    for file in &plan.files {
        let path = dir.join(&file.name);
        let aside = dir.join(format!("{}{DAMAGED_SUFFIX}", file.name));
        match &file.action {
            FileAction::Keep { .. } => {}
            FileAction::Drop { .. } => {
                fs.rename(&path, &aside)
                    .map_err(|error| PersistenceError::io("rename", &path, error))?;
                sync_dir()?;
            }
            FileAction::Salvage { offset, .. } => {
                let bytes = read_whole(fs, &path)?;
                let copy = if parse_segment_name(&file.name).is_some() {
                    salvage_log(&bytes, *offset).0
                } else {
                    salvage_snapshot(&bytes).file
                };
                let temp = dir.join(format!("{}.repair.tmp", file.name));
                let mut out = fs
                    .create(&temp)
                    .map_err(|error| PersistenceError::io("create", &temp, error))?;
                out.append(&copy)
                    .map_err(|error| PersistenceError::io("write", &temp, error))?;
                out.sync_data()
                    .map_err(|error| PersistenceError::io("fdatasync", &temp, error))?;
                drop(out);
                fs.rename(&path, &aside)
                    .map_err(|error| PersistenceError::io("rename", &path, error))?;
                fs.rename(&temp, &path)
                    .map_err(|error| PersistenceError::io("rename", &temp, error))?;
                sync_dir()?;
            }
        }
    }
    if let Some(manifest) = &plan.new_manifest {
        let path = dir.join(MANIFEST_NAME);
        match fs.rename(&path, &dir.join(format!("{MANIFEST_NAME}{DAMAGED_SUFFIX}"))) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(PersistenceError::io("rename", &path, error)),
        }
        write_manifest(fs, dir, manifest)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "repair_tests.rs"]
mod tests;
