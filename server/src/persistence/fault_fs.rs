//! An in-memory file system that loses power on cue, for tests.
//!
//! It keeps, for every file, the bytes written and how many of them were
//! synced, and for the directory both the names as they are and as they
//! were at the last directory sync. [`FaultFs::lose_power_after`] makes the
//! chosen operation, and every one after it, fail as if the machine had
//! stopped (an append then lands only in part: a torn write);
//! [`FaultFs::after_power_loss`] gives the disk as a restart would find it:
//! synced bytes kept, unsynced bytes dropped or kept in part (sometimes
//! ending in zeros, as a file system that extended the file before its
//! data reached the disk leaves it), and names as of the last directory
//! sync or as they were. [`FaultFs::fail_sync`] makes one `fdatasync`
//! fail, leaving its bytes unsynced.
//!
//! Everything it does follows from a seed, so a failing case can be run
//! again.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::fs::{AppendFile, FileSystem};

/// See the module docs. Clones share the same disk.
#[derive(Clone)]
pub struct FaultFs {
    state: Arc<Mutex<Disk>>,
    gate: Arc<SyncGate>,
}

/// Holds `fdatasync` calls back while closed, to line writers up behind
/// one sync in a test of group commit.
#[derive(Default)]
struct SyncGate {
    closed: Mutex<bool>,
    opened: Condvar,
    waiting: std::sync::atomic::AtomicU64,
}

impl SyncGate {
    fn pass(&self) {
        let mut closed = self.closed.lock();
        if *closed {
            self.waiting
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            while *closed {
                self.opened.wait(&mut closed);
            }
            self.waiting
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl std::fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let disk = self.state.lock();
        f.debug_struct("FaultFs")
            .field("files", &disk.names.len())
            .field("operations", &disk.operations)
            .field("powered", &!disk.lost)
            .finish()
    }
}

#[derive(Debug, Default, Clone)]
struct MemFile {
    data: Vec<u8>,
    synced: usize,
}

struct Disk {
    files: HashMap<u64, MemFile>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    next_id: u64,
    operations: u64,
    lose_power_at: Option<u64>,
    lost: bool,
    syncs: u64,
    failing_sync: Option<u64>,
    rng: fastrand::Rng,
}

fn power_lost() -> io::Error {
    io::Error::other("power lost")
}

impl Disk {
    /// Counts an operation; fails it if the power is, or now goes, out.
    fn operate(&mut self) -> io::Result<()> {
        if self.lost {
            return Err(power_lost());
        }
        self.operations += 1;
        if self.lose_power_at.is_some_and(|at| self.operations >= at) {
            self.lost = true;
            return Err(power_lost());
        }
        Ok(())
    }

    fn file_mut(&mut self, id: u64) -> io::Result<&mut MemFile> {
        self.files
            .get_mut(&id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file removed"))
    }

    fn id_of(&self, path: &Path) -> io::Result<u64> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))
    }
}

impl FaultFs {
    /// An empty disk whose random choices follow `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(Disk {
                files: HashMap::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                next_id: 0,
                operations: 0,
                lose_power_at: None,
                lost: false,
                syncs: 0,
                failing_sync: None,
                rng: fastrand::Rng::with_seed(seed),
            })),
            gate: Arc::default(),
        }
    }

    /// Holds every `fdatasync` back until [`FaultFs::release_syncs`].
    pub fn hold_syncs(&self) {
        *self.gate.closed.lock() = true;
    }

    /// Lets held and later `fdatasync` calls go on.
    pub fn release_syncs(&self) {
        *self.gate.closed.lock() = false;
        self.gate.opened.notify_all();
    }

    /// How many `fdatasync` calls are being held back.
    pub fn held_syncs(&self) -> u64 {
        self.gate.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Loses power at the `operation`-th operation from now (1 = the next).
    pub fn lose_power_after(&self, operation: u64) {
        let mut disk = self.state.lock();
        disk.lose_power_at = Some(disk.operations + operation.max(1));
    }

    /// Makes the `nth` `fdatasync` from now (1 = the next) fail.
    pub fn fail_sync(&self, nth: u64) {
        let mut disk = self.state.lock();
        disk.failing_sync = Some(disk.syncs + nth.max(1));
    }

    /// Whether the power has gone out.
    pub fn is_powered_off(&self) -> bool {
        self.state.lock().lost
    }

    /// Operations performed so far.
    pub fn operations(&self) -> u64 {
        self.state.lock().operations
    }

    /// The disk as a restart after a power loss now would find it (see
    /// the module docs); the new disk has power.
    pub fn after_power_loss(&self) -> FaultFs {
        let mut disk = self.state.lock();
        let seed = disk.rng.u64(..);
        let names = if disk.rng.bool() {
            disk.durable_names.clone()
        } else {
            disk.names.clone()
        };
        let mut files = HashMap::new();
        for id in names.values() {
            let Some(file) = disk.files.get(id).cloned() else {
                continue;
            };
            let unsynced = file.data.len() - file.synced;
            let kept = match disk.rng.u8(..4) {
                0 => 0,
                _ => disk.rng.usize(..=unsynced),
            };
            let mut data = file.data[..file.synced + kept].to_vec();
            if kept > 0 && disk.rng.u8(..4) == 0 {
                let zeros = disk.rng.usize(1..=kept.min(16));
                let len = data.len();
                data[len - zeros..].fill(0);
            }
            let synced = data.len();
            files.insert(*id, MemFile { data, synced });
        }
        let next_id = disk.next_id;
        drop(disk);
        FaultFs {
            state: Arc::new(Mutex::new(Disk {
                files,
                durable_names: names.clone(),
                names,
                next_id,
                operations: 0,
                lose_power_at: None,
                lost: false,
                syncs: 0,
                failing_sync: None,
                rng: fastrand::Rng::with_seed(seed),
            })),
            gate: Arc::default(),
        }
    }

    /// The content of `path`, whatever was synced.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let disk = self.state.lock();
        let id = disk.names.get(path)?;
        disk.files.get(id).map(|file| file.data.clone())
    }

    /// Replaces the content of `path` (creating it), synced, to lay out a
    /// damaged file by hand.
    pub fn put(&self, path: &Path, data: Vec<u8>) {
        let mut disk = self.state.lock();
        let id = disk.next_id;
        disk.next_id += 1;
        let synced = data.len();
        disk.files.insert(id, MemFile { data, synced });
        disk.names.insert(path.to_path_buf(), id);
        disk.durable_names.insert(path.to_path_buf(), id);
    }
}

struct FaultFile {
    state: Arc<Mutex<Disk>>,
    gate: Arc<SyncGate>,
    id: u64,
}

impl AppendFile for FaultFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.state.lock();
        if let Err(error) = disk.operate() {
            if disk.lose_power_at == Some(disk.operations) {
                // The write under way when the power went lands in part.
                let torn = disk.rng.usize(..=bytes.len());
                if let Ok(file) = disk.file_mut(self.id) {
                    file.data.extend_from_slice(&bytes[..torn]);
                }
            }
            return Err(error);
        }
        disk.file_mut(self.id)?.data.extend_from_slice(bytes);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.gate.pass();
        let mut disk = self.state.lock();
        disk.operate()?;
        disk.syncs += 1;
        if disk.failing_sync == Some(disk.syncs) {
            return Err(io::Error::other("injected fdatasync failure"));
        }
        let file = disk.file_mut(self.id)?;
        file.synced = file.data.len();
        Ok(())
    }
}

impl FileSystem for FaultFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let mut disk = self.state.lock();
        disk.operate()?;
        let id = disk.next_id;
        disk.next_id += 1;
        disk.files.insert(id, MemFile::default());
        disk.names.insert(path.to_path_buf(), id);
        Ok(Box::new(FaultFile {
            state: Arc::clone(&self.state),
            gate: Arc::clone(&self.gate),
            id,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut disk = self.state.lock();
        disk.operate()?;
        let id = disk.id_of(path)?;
        Ok(disk.file_mut(id)?.data.clone())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut disk = self.state.lock();
        disk.operate()?;
        Ok(disk
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.state.lock();
        disk.operate()?;
        let id = disk.id_of(from)?;
        disk.names.remove(from);
        disk.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.state.lock();
        disk.operate()?;
        disk.id_of(path)?;
        disk.names.remove(path);
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut disk = self.state.lock();
        disk.operate()?;
        let id = disk.id_of(path)?;
        let file = disk.file_mut(id)?;
        file.data
            .truncate(usize::try_from(len).unwrap_or(usize::MAX));
        file.synced = file.data.len();
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.state.lock();
        disk.operate()?;
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        disk.durable_names.retain(|path, _| !in_dir(path));
        let current: Vec<(PathBuf, u64)> = disk
            .names
            .iter()
            .filter(|(path, _)| in_dir(path))
            .map(|(path, id)| (path.clone(), *id))
            .collect();
        disk.durable_names.extend(current);
        Ok(())
    }

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        self.state.lock().operate()
    }
}
